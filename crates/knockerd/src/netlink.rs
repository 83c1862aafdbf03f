//! The netlink plumbing every kernel interface of knockerd shares: NFLOG (`nflog`), the allow
//! sets (`nftset`) and the firewall watch (`watch`) read the kernel's datagrams with the same
//! message iterator and attribute lookup, and set up their sockets the same way.
//!
//! What the kernel sends is parsed without trusting it: a message whose header is cut short or
//! inconsistent ends the iteration, an attribute that runs past its buffer is not found, and
//! nothing here panics on any input.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

// include/uapi/linux/netlink.h, linux/netfilter/nfnetlink.h
pub(crate) const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
pub(crate) const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Asks for a large receive buffer: SO_RCVBUFFORCE (which may exceed `rmem_max`, needs
/// CAP_NET_ADMIN), else SO_RCVBUF (capped by `rmem_max`). Failure is not fatal: the default buffer
/// works, it only overruns sooner.
pub(crate) fn set_receive_buffer(fd: &impl AsFd, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(fd, sockopt::RcvBufForce, &bytes).is_err() {
        if let Err(e) = setsockopt(fd, sockopt::RcvBuf, &bytes) {
            tracing::warn!("cannot enlarge the netlink receive buffer to {bytes} bytes: {e}");
        }
    }
}

pub(crate) fn set_receive_timeout(fd: &impl AsFd, timeout: Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    use nix::sys::time::TimeVal;
    let tv = TimeVal::new(
        timeout.as_secs().try_into().unwrap_or(i64::MAX),
        timeout.subsec_micros().into(),
    );
    setsockopt(fd, sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
}

/// The result an NLMSG_ERROR payload carries: `Ok` for an acknowledgement, else the kernel's errno.
pub(crate) fn ack_result(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "truncated netlink ack"))?;
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code.saturating_abs()))
    }
}

/// One netlink message inside a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NetlinkMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Iterates over the netlink messages of a datagram; yields one `Err(())` at the first message
/// whose header is cut short or inconsistent, then stops.
pub(crate) struct NetlinkMessages<'a> {
    rest: &'a [u8],
}

impl<'a> NetlinkMessages<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        NetlinkMessages { rest: datagram }
    }
}

impl<'a> Iterator for NetlinkMessages<'a> {
    type Item = Result<NetlinkMsg<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let Some(header) = rest.get(..NLMSG_HDRLEN) else {
            return Some(Err(()));
        };
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Some(Err(()));
        }
        let msg = NetlinkMsg {
            ty: u16::from_ne_bytes([header[4], header[5]]),
            flags: u16::from_ne_bytes([header[6], header[7]]),
            seq: u32::from_ne_bytes([header[8], header[9], header[10], header[11]]),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        self.rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// Finds attribute `kind` among the netlink attributes in `attrs` (flags masked off).
pub(crate) fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= NLA_HDRLEN {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > attrs.len() {
            return None;
        }
        if ty == kind {
            return Some(&attrs[NLA_HDRLEN..len]);
        }
        attrs = attrs.get(align4(len)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_codes() {
        assert!(ack_result(&0i32.to_ne_bytes()).is_ok());
        let e = ack_result(&(-libc::EBUSY).to_ne_bytes()).expect_err("error");
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        assert!(ack_result(&[0, 0]).is_err());
    }
}
