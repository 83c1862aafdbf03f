//! NFLOG source: the packets knocker's nftables rules log to a netlink group (`log group N`),
//! turned into [`Knock`]s.
//!
//! The socket is configured for latency, not throughput: the kernel flushes every logged packet at
//! once (queue threshold 1) instead of batching them for up to a second, and the receive buffer is
//! large so that a flood costs overruns (counted) rather than stalls. Reading never blocks: the
//! daemon polls the descriptor ([`AsFd`]) and drains it with [`NflogSource::recv_batch`].
//!
//! While a fast flood lasts (from 50 000 packets a second, the worker's pacer says) the kernel
//! batches instead ([`batching_request`]): up to
//! [`FLOOD_QTHRESH`] packets in one datagram, flushed at the next timer tick at the latest. Only
//! a sender with CAP_NET_ADMIN on the socket bound to the group may ask that, so the packet
//! worker, which has no privilege, hands a copy of its socket to the root parent before it
//! reads a packet, and the parent sends the request when the worker reports that batching is to
//! start or stop ([`BatchingHandle`]; ARCHITECTURE.md, "Kernel batching under a flood").
//!
//! Everything that comes from the network is parsed without panicking: a malformed message or
//! packet is counted and skipped.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use knocker_engine::{Knock, Proto, TcpFlags};
use netlink_packet_core::NLMSG_OVERRUN;
use netlink_packet_netfilter::nflog::{config_request, ConfigCmd, ConfigMode, ConfigNla, Timeout};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};

use crate::netlink::{
    ack_result, find_attr, set_receive_buffer, set_receive_timeout, NetlinkMessages, NFGENMSG_LEN,
    NLMSG_ERROR,
};

/// Receive buffer asked of the kernel: room for tens of thousands of small logged packets.
pub const RCVBUF_BYTES: usize = 4 << 20;

/// At most this many datagrams are read per [`NflogSource::recv_batch`] call, so that a flood that
/// refills the queue as fast as it is drained cannot keep the caller away from its timers. The socket
/// stays readable, so the next poll returns at once.
pub const MAX_DATAGRAMS_PER_BATCH: usize = 1024;

/// Largest datagram we expect: one packet of up to 64 KiB plus its NFLOG attributes.
const RECV_BUF_BYTES: usize = 128 << 10;

/// How long `bind` waits for the kernel to acknowledge a configuration request.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

// include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_log.h, linux/netlink.h
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFLOG_PACKET_TYPE: u16 = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// The log prefix of knockerd's rule for single-packet-authorization ports: packets logged with
/// it are handed over with their UDP payload, the rest as bare knocks.
pub const SPA_PREFIX: &str = "knocker-spa";
/// The log prefix of stealth SYN door rules: such packets come with their IP and TCP headers,
/// whose fields carry the authenticator.
pub const SYN_PREFIX: &str = "knocker-syn";
/// Bytes of each logged SPA datagram copied to knockerd: a whole SPA packet (fwknop's are at most
/// 1500 bytes of payload) with its headers. Also the copy range NFLOG is bound with.
pub const SPA_SNAPLEN: u16 = 1600;

/// Packets the kernel puts in one datagram while a flood lasts: the instance's queue threshold.
/// Each datagram then wakes the worker once and takes one `recv` for up to this many packets,
/// and holds them in far less receive-buffer memory than as many datagrams of one packet each.
/// 128: at 80 000 packets a second a batch fills in 1.6 ms (the timer flushes a slower flood's
/// at the next tick); 64 cost 0.2 us more a packet in wake-ups, 256 a median opening of up to
/// 3.8 ms under the flood (BENCHMARKS.md, "SYN flood").
pub const FLOOD_QTHRESH: u32 = 128;
/// The size of the datagrams the kernel builds while a flood lasts (the most it takes,
/// nfnetlink_log's limit): room for [`FLOOD_QTHRESH`] SPA datagrams of a few hundred bytes.
pub const FLOOD_NLBUFSIZ: u32 = 128 << 10;
/// The datagram size asked for again when a flood is over: a page, about the kernel's default
/// (an instance refuses less than its default, NLMSG_GOODSIZE, and then keeps its size).
const CALM_NLBUFSIZ: u32 = 4096;

/// The NFULNL_MSG_CONFIG request that turns the kernel's batching for `group` on (a flood:
/// [`FLOOD_QTHRESH`] packets a datagram, flushed by the instance's timer at the next tick at the
/// latest, so that a lone packet waits a tick, 1 to 10 ms, and no more) or off (every packet
/// at once, as [`NflogSource::bind`] sets it). Asks for no acknowledgement: the socket's reader
/// is the packet worker, which drops what is not a packet, and an error changes nothing.
pub fn batching_request(group: u16, on: bool) -> Vec<u8> {
    let nlas: Vec<ConfigNla> = if on {
        vec![
            ConfigNla::NlBufSiz(FLOOD_NLBUFSIZ),
            // hundredths of a second; 0 is the next tick of the kernel's timer
            Timeout::new(0).into(),
            ConfigNla::QThresh(FLOOD_QTHRESH),
        ]
    } else {
        vec![
            ConfigNla::NlBufSiz(CALM_NLBUFSIZ),
            Timeout::new(1).into(),
            ConfigNla::QThresh(1),
        ]
    };
    let mut msg = config_request(NetfilterProtoFamily::Unspec, group, nlas);
    msg.header.flags = netlink_packet_core::NLM_F_REQUEST;
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    bytes
}

/// The root parent's copy of the packet worker's NFLOG socket, on which it sends
/// [`batching_request`]s (the kernel takes them only from the socket bound to the group, and
/// only from a sender with CAP_NET_ADMIN). It never reads from it. Closed when dropped, which
/// the parent does before it starts another worker: the group stays bound while any copy of
/// the socket is open.
#[derive(Debug)]
pub struct BatchingHandle {
    fd: RawFd,
    group: u16,
    on: bool,
}

impl BatchingHandle {
    /// Takes `fd`, received from the packet worker, if it is a bound netlink socket; else it is
    /// closed and the error says what it was. (The kernel refuses a configuration request on
    /// any other socket than the group's, so a netlink socket that is not the group's changes
    /// nothing either.)
    pub fn new(fd: RawFd, group: u16) -> io::Result<BatchingHandle> {
        use nix::sys::socket::{getsockname, NetlinkAddr};
        let bound = getsockname::<NetlinkAddr>(fd).map(|a| a.pid());
        match bound {
            Ok(pid) if pid != 0 => Ok(BatchingHandle {
                fd,
                group,
                on: false,
            }),
            other => {
                let _ = nix::unistd::close(fd);
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a bound netlink socket ({other:?})"),
                ))
            }
        }
    }

    /// Turns the kernel's batching on or off, if that changes it; `Ok(false)` when it was so.
    pub fn set(&mut self, on: bool) -> io::Result<bool> {
        if on == self.on {
            return Ok(false);
        }
        let request = batching_request(self.group, on);
        nix::sys::socket::send(self.fd, &request, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
            .map_err(io::Error::from)?;
        self.on = on;
        Ok(true)
    }
}

impl Drop for BatchingHandle {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.fd);
    }
}

/// A UDP datagram to an SPA port, with its payload (the SPA packet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub knock: Knock,
    pub payload: Vec<u8>,
}

/// What one [`NflogSource::recv_batch`] call saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvStats {
    /// Knocks parsed and pushed to the output.
    pub knocks: u64,
    /// Logged packets that were not a parseable IPv4/IPv6 TCP or UDP packet, and netlink messages
    /// that were cut short or malformed.
    pub malformed: u64,
    /// Times the kernel reported that it dropped log messages because the receive buffer was full
    /// (ENOBUFS). Each report may stand for many lost packets.
    pub overruns: u64,
    /// Log lines longer than a line source's limit, dropped (line sources only).
    pub too_long: u64,
    /// Log lines or records that were not for knockerd: another prefix, another program's line,
    /// a line no format selects (line sources only).
    pub ignored: u64,
    /// NFLOG datagrams that carried more than one logged packet: the kernel was batching (a
    /// flood, [`batching_request`]). Always 0 from the other sources.
    pub batched: u64,
}

impl RecvStats {
    /// Adds another call's counts to these.
    pub fn add(&mut self, other: RecvStats) {
        self.knocks += other.knocks;
        self.malformed += other.malformed;
        self.overruns += other.overruns;
        self.too_long += other.too_long;
        self.ignored += other.ignored;
        self.batched += other.batched;
    }
}

/// A netlink socket bound to one NFLOG group, non-blocking.
#[derive(Debug)]
pub struct NflogSource {
    socket: Socket,
    group: u16,
    buf: Vec<u8>,
}

impl NflogSource {
    /// Opens a `NETLINK_NETFILTER` socket in the calling thread's network namespace and binds it to
    /// NFLOG `group`, copying up to `copy_range` bytes of each packet (from the IP header on; 0 means
    /// the whole packet). Every configuration request is acknowledged by the kernel or fails here.
    pub fn bind(group: u16, copy_range: u16) -> io::Result<NflogSource> {
        let mut socket = Socket::new(NETLINK_NETFILTER)
            .map_err(|e| with_context(e, "cannot open a netfilter netlink socket"))?;
        socket
            .bind_auto()
            .map_err(|e| with_context(e, "cannot bind the netfilter netlink socket"))?;
        set_receive_buffer(&socket, RCVBUF_BYTES);
        // Acknowledgements carry only the request's header, not the whole request.
        let _ = socket.set_cap_ack(true);
        set_receive_timeout(&socket, ACK_TIMEOUT)?;

        let mut source = NflogSource {
            socket,
            group,
            buf: vec![0; RECV_BUF_BYTES],
        };
        // No NFULNL_CFG_CMD_PF_BIND: `log group N` reaches the group without it (nft's log
        // expression names the NFLOG logger itself), and on current kernels PF_BIND still makes
        // nfnetlink_log the namespace's *default* IPv4/IPv6 logger in place of nf_log_syslog
        // (see /proc/net/netfilter/nf_log), which would divert other users' kernel logging.
        let mut seq: u32 = 1;
        let nlas: Vec<ConfigNla> = vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(u32::from(copy_range)).into(),
            // Deliver every packet at once: the default threshold holds them for up to a second.
            ConfigNla::QThresh(1),
            // Flush timer in hundredths of a second; with a threshold of 1 it never has to fire.
            Timeout::new(1).into(),
        ];
        source
            .config(NetfilterProtoFamily::Unspec, group, nlas, &mut seq)
            .map_err(|e| match e.raw_os_error() {
                // nfnetlink answers EPERM both to a sender without CAP_NET_ADMIN and when the
                // group has an instance owned by another socket; only the first is ours to fix
                Some(libc::EPERM) | Some(libc::EACCES) if has_net_admin() != Some(true) => {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "binding NFLOG group {group} needs root or CAP_NET_ADMIN, which this \
                             process lacks (run knockerd as root, as its systemd unit does): {e}"
                        ),
                    )
                }
                // EBUSY: already bound on this socket's side
                Some(libc::EPERM) | Some(libc::EBUSY) => io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "NFLOG group {group} is already bound by another process \
                         (is another knockerd or ulogd running?): {e}"
                    ),
                ),
                _ => with_context(e, &format!("cannot bind NFLOG group {group}")),
            })?;

        source
            .socket
            .set_non_blocking(true)
            .map_err(|e| with_context(e, "cannot make the NFLOG socket non-blocking"))?;
        Ok(source)
    }

    /// The NFLOG group this source is bound to.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Sends one NFULNL_MSG_CONFIG request and waits for the kernel's acknowledgement.
    fn config(
        &mut self,
        family: NetfilterProtoFamily,
        group: u16,
        nlas: Vec<ConfigNla>,
        seq: &mut u32,
    ) -> io::Result<()> {
        let mut msg = config_request(family, group, nlas);
        let expected = *seq;
        msg.header.sequence_number = expected;
        *seq = seq.wrapping_add(1);
        let mut bytes = vec![0; msg.buffer_len()];
        msg.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;

        loop {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the kernel did not acknowledge an NFLOG configuration request",
                    ))
                }
                Err(e) => return Err(e),
            };
            let datagram = &self.buf[..n.min(self.buf.len())];
            for msg in NetlinkMessages::new(datagram) {
                let Ok(msg) = msg else { break };
                if msg.ty == NLMSG_ERROR && msg.seq == expected {
                    return ack_result(msg.payload);
                }
                // Anything else (a packet logged before the bind was acknowledged) is dropped.
            }
        }
    }

    /// Reads every datagram queued on the socket without blocking, appending the knocks it carries
    /// to `out`. Returns when the queue is empty (EAGAIN) or after [`MAX_DATAGRAMS_PER_BATCH`]
    /// datagrams. Kernel drops (ENOBUFS) and unparseable packets are counted, never returned as
    /// errors; an error is returned only when the socket itself fails.
    pub fn recv_batch(&mut self, out: &mut Vec<Knock>) -> io::Result<RecvStats> {
        let mut spa = Vec::new();
        self.recv_batch_with(out, &mut spa)
    }

    /// Like [`NflogSource::recv_batch`], and datagrams logged with [`SPA_PREFIX`] go to `spa`
    /// with their payload.
    pub fn recv_batch_with(
        &mut self,
        out: &mut Vec<Knock>,
        spa: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        let mut stats = RecvStats::default();
        let mut datagrams = 0;
        while datagrams < MAX_DATAGRAMS_PER_BATCH {
            // MSG_TRUNC: learn the real length of a datagram that did not fit.
            let n = match self
                .socket
                .recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stats.overruns += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            datagrams += 1;
            if n > self.buf.len() {
                stats.malformed += 1;
            }
            parse_datagram_with(&self.buf[..n.min(self.buf.len())], out, spa, &mut stats);
        }
        Ok(stats)
    }
}

impl AsFd for NflogSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for NflogSource {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// CAP_NET_ADMIN's bit in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process holds CAP_NET_ADMIN; `None` when /proc does not say.
fn has_net_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    effective_capability(&status, CAP_NET_ADMIN)
}

/// Whether the `CapEff:` line of a /proc/PID/status text has capability `bit`.
fn effective_capability(status: &str, bit: u32) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let set = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(set.checked_shr(bit)? & 1 == 1)
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Parses one datagram read from an NFLOG socket: every NFULNL_MSG_PACKET in it becomes a knock or
/// a count in `stats.malformed`.
#[cfg(test)]
pub(crate) fn parse_datagram(datagram: &[u8], out: &mut Vec<Knock>, stats: &mut RecvStats) {
    parse_datagram_with(datagram, out, &mut Vec::new(), stats)
}

/// [`parse_datagram`], with SPA datagrams (logged with [`SPA_PREFIX`]) going to `spa`.
pub fn parse_datagram_with(
    datagram: &[u8],
    out: &mut Vec<Knock>,
    spa: &mut Vec<Datagram>,
    stats: &mut RecvStats,
) {
    let mut packets = 0u32;
    for msg in NetlinkMessages::new(datagram) {
        let Ok(msg) = msg else {
            stats.malformed += 1;
            break;
        };
        match msg.ty {
            NFLOG_PACKET_TYPE => {
                packets += 1;
                if packets == 2 {
                    stats.batched += 1;
                }
                let attrs = msg.payload.get(NFGENMSG_LEN..).unwrap_or(&[]);
                let prefix =
                    find_attr(attrs, NFULA_PREFIX).and_then(|p| p.split(|b| *b == 0).next());
                if prefix == Some(SYN_PREFIX.as_bytes()) {
                    let packet = find_attr(attrs, NFULA_PAYLOAD).unwrap_or(&[]);
                    match parse_l3(packet).filter(|k| k.proto == Proto::Tcp) {
                        Some(knock) => {
                            spa.push(Datagram {
                                knock,
                                payload: packet.to_vec(),
                            });
                            stats.knocks += 1;
                        }
                        None => stats.malformed += 1,
                    }
                    continue;
                }
                if prefix == Some(SPA_PREFIX.as_bytes()) {
                    match find_attr(attrs, NFULA_PAYLOAD).and_then(parse_l3_udp_payload) {
                        Some((knock, payload)) => {
                            spa.push(Datagram {
                                knock,
                                payload: payload.to_vec(),
                            });
                            stats.knocks += 1;
                        }
                        None => stats.malformed += 1,
                    }
                    continue;
                }
                let knock = find_attr(attrs, NFULA_PAYLOAD).and_then(parse_l3);
                match knock {
                    Some(knock) => {
                        out.push(knock);
                        stats.knocks += 1;
                    }
                    None => stats.malformed += 1,
                }
            }
            NLMSG_OVERRUN => stats.overruns += 1,
            // the only requests on this socket after its bind are the parent's batching
            // requests, which ask no acknowledgement: an NLMSG_ERROR here is the kernel
            // refusing one (nothing changed, so it is said and nothing else)
            NLMSG_ERROR => {
                if let Err(e) = ack_result(msg.payload) {
                    tracing::warn!("NFLOG: the kernel refused a batching request: {e}");
                }
            }
            // NLMSG_DONE closes a multi-message datagram; other types carry no packet.
            _ => {}
        }
    }
}

/// Parses a UDP packet (from its IP header on) into its knock and its payload. A payload cut short
/// by the snap length is returned as far as it was copied; the SPA decoder refuses it.
pub fn parse_l3_udp_payload(packet: &[u8]) -> Option<(Knock, &[u8])> {
    let knock = parse_l3(packet)?;
    if knock.proto != Proto::Udp {
        return None;
    }
    let sliced = LaxSlicedPacket::from_ip(packet).ok()?;
    match sliced.transport? {
        TransportSlice::Udp(udp) => Some((knock, udp.payload())),
        _ => None,
    }
}

/// Parses the payload NFLOG hands over for a rule in an `ip`, `ip6` or `inet` table: the packet
/// from its IPv4 or IPv6 header on. Returns `None` for anything but a TCP or UDP packet whose
/// transport header is complete (including non-first fragments), or an ICMP or ICMPv6 echo
/// request (see [`echo_request_size`]). Never panics.
pub fn parse_l3(payload: &[u8]) -> Option<Knock> {
    let packet = LaxSlicedPacket::from_ip(payload).ok()?;
    let (src, dst) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => {
            let h = ip.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let h = ip.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
            )
        }
        _ => return None,
    };
    match packet.transport.as_ref() {
        Some(TransportSlice::Tcp(tcp)) => Some(Knock {
            src,
            dst,
            proto: Proto::Tcp,
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            // Byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN.
            tcp_flags: TcpFlags(tcp.header_slice().get(13).copied().unwrap_or(0)),
        }),
        Some(TransportSlice::Udp(udp)) => Some(Knock {
            src,
            dst,
            proto: Proto::Udp,
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            tcp_flags: TcpFlags::default(),
        }),
        _ => echo_request_size(&packet).map(|size| Knock {
            src,
            dst,
            proto: Proto::Icmp,
            src_port: 0,
            dst_port: size,
            tcp_flags: TcpFlags::default(),
        }),
    }
}

/// The payload size of an ICMP echo request (type 8, code 0) or ICMPv6 echo request (type
/// 128, code 0), an `icmp/N` step: N = the ICMP message's length from the IP header (IPv4: total
/// length less the header; IPv6: the payload length, with ICMPv6 as the first next header) less
/// the 8 bytes of the echo header, which is what `ping -s N` sets. Taken from the IP header, not
/// from what NFLOG copied (a snaplen cuts the payload short). Unfragmented packets only.
pub fn echo_request_size(packet: &LaxSlicedPacket) -> Option<u16> {
    let (len, payload) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => {
            let h = ip.header();
            let p = ip.payload();
            if p.ip_number != etherparse::IpNumber::ICMP || p.fragmented {
                return None;
            }
            (
                h.total_len().checked_sub(u16::from(h.ihl()) * 4)?,
                (p.payload, 8u8),
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let h = ip.header();
            let p = ip.payload();
            if h.next_header() != etherparse::IpNumber::IPV6_ICMP || p.fragmented {
                return None;
            }
            (h.payload_length(), (p.payload, 128u8))
        }
        _ => return None,
    };
    let (bytes, echo_request) = payload;
    match bytes {
        [kind, 0, ..] if *kind == echo_request => len.checked_sub(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_netfilter::nflog::{PacketNla, ULogMessage};
    use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The u32 attributes of a configuration request (NFULA_CFG_*: 3 NLBUFSIZ, 4 TIMEOUT,
    /// 5 QTHRESH, network byte order), its message type, flags and group.
    fn config_of(request: &[u8]) -> (u16, u16, u16, [Option<u32>; 3]) {
        let mut msgs = crate::netlink::NetlinkMessages::new(request);
        let msg = msgs.next().expect("one message").expect("well formed");
        assert!(msgs.next().is_none(), "only one");
        let group = u16::from_be_bytes([msg.payload[2], msg.payload[3]]);
        let attrs = &msg.payload[NFGENMSG_LEN..];
        let u32_attr =
            |kind| find_attr(attrs, kind).map(|v| u32::from_be_bytes(v.try_into().expect("a u32")));
        (
            msg.ty,
            msg.flags,
            group,
            [u32_attr(3), u32_attr(4), u32_attr(5)],
        )
    }

    #[test]
    fn batching_requests_say_what_the_kernel_is_to_do_and_ask_no_ack() {
        const NFULNL_MSG_CONFIG: u16 = (NFNL_SUBSYS_ULOG << 8) | 1;
        let (ty, flags, group, [bufsiz, timeout, qthresh]) =
            config_of(&batching_request(4100, true));
        assert_eq!((ty, group), (NFULNL_MSG_CONFIG, 4100));
        assert_eq!(
            flags,
            netlink_packet_core::NLM_F_REQUEST,
            "no NLM_F_ACK: the worker reads the socket"
        );
        assert_eq!(qthresh, Some(FLOOD_QTHRESH));
        assert_eq!(bufsiz, Some(FLOOD_NLBUFSIZ));
        assert_eq!(timeout, Some(0), "flushed at the next tick");
        let (ty, flags, group, [_, timeout, qthresh]) = config_of(&batching_request(7, false));
        assert_eq!((ty, flags, group), (NFULNL_MSG_CONFIG, 1, 7));
        assert_eq!(qthresh, Some(1), "every packet at once again");
        assert_eq!(timeout, Some(1));
    }

    #[test]
    fn a_batching_handle_takes_only_a_bound_netlink_socket() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        use std::os::fd::IntoRawFd as _;
        let (a, _b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let refused = BatchingHandle::new(a.into_raw_fd(), 4100).expect_err("a Unix socket");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        assert!(BatchingHandle::new(file.into_raw_fd(), 4100).is_err());
    }

    fn tcp4(flags_syn: bool, payload: &[u8]) -> Vec<u8> {
        let mut b =
            PacketBuilder::ipv4([10, 200, 1, 2], [10, 200, 1, 1], 64).tcp(40000, 7000, 1, 64240);
        if flags_syn {
            b = b.syn();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("write");
        v
    }

    fn udp6(payload: &[u8]) -> Vec<u8> {
        let src: [u8; 16] = "fd00:200:1::2".parse::<Ipv6Addr>().expect("addr").octets();
        let dst: [u8; 16] = "fd00:200:1::1".parse::<Ipv6Addr>().expect("addr").octets();
        let b = PacketBuilder::ipv6(src, dst, 64).udp(5353, 9000);
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("write");
        v
    }

    #[test]
    fn echo_requests_are_icmp_knocks_of_their_payload_size() {
        let v6 = |a: &str| a.parse::<Ipv6Addr>().expect("addr").octets();
        let mut v4 = Vec::new();
        PacketBuilder::ipv4([10, 200, 1, 2], [10, 200, 1, 1], 64)
            .icmpv4_echo_request(7, 1)
            .write(&mut v4, &[0xa5; 100])
            .expect("write");
        let k = parse_l3(&v4).expect("knock");
        assert_eq!((k.proto, k.src_port, k.dst_port), (Proto::Icmp, 0, 100));
        assert_eq!(k.service().to_string(), "icmp/100");
        assert_eq!(k.src, IpAddr::V4(Ipv4Addr::new(10, 200, 1, 2)));
        // NFLOG's snaplen cuts the payload: the size is the IP header's
        assert_eq!(parse_l3(&v4[..40]).map(|k| k.dst_port), Some(100));
        let mut six = Vec::new();
        PacketBuilder::ipv6(v6("fd00:200:1::2"), v6("fd00:200:1::1"), 64)
            .icmpv6_echo_request(7, 1)
            .write(&mut six, &[0; 1452])
            .expect("write");
        let k = parse_l3(&six).expect("knock");
        assert_eq!((k.proto, k.dst_port), (Proto::Icmp, 1452));
        assert_eq!(parse_l3(&six[..60]).map(|k| k.dst_port), Some(1452));
        // replies, other ICMP messages, and an ICMPv4 echo request type inside IPv6: none
        let mut reply = Vec::new();
        PacketBuilder::ipv4([10, 200, 1, 2], [10, 200, 1, 1], 64)
            .icmpv4_echo_reply(7, 1)
            .write(&mut reply, &[0; 100])
            .expect("write");
        assert_eq!(parse_l3(&reply), None);
        let mut reply6 = Vec::new();
        PacketBuilder::ipv6(v6("fd00:200:1::2"), v6("fd00:200:1::1"), 64)
            .icmpv6_echo_reply(7, 1)
            .write(&mut reply6, &[0; 100])
            .expect("write");
        assert_eq!(parse_l3(&reply6), None);
        let mut odd = six.clone();
        odd[40] = 8;
        assert_eq!(parse_l3(&odd), None);
        // an echo code other than 0
        let mut coded = v4.clone();
        coded[21] = 1;
        assert_eq!(parse_l3(&coded), None);
        // cut inside the ICMP type and code: nothing to tell
        assert_eq!(parse_l3(&v4[..21]), None);
    }

    #[test]
    fn tcp_syn_v4() {
        let k = parse_l3(&tcp4(true, b"")).expect("knock");
        assert_eq!(k.src, IpAddr::V4(Ipv4Addr::new(10, 200, 1, 2)));
        assert_eq!(k.dst, IpAddr::V4(Ipv4Addr::new(10, 200, 1, 1)));
        assert_eq!(k.proto, Proto::Tcp);
        assert_eq!((k.src_port, k.dst_port), (40000, 7000));
        assert_eq!(k.tcp_flags, TcpFlags::SYN);
    }

    #[test]
    fn tcp_flags_byte_is_verbatim() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .tcp(1, 2, 3, 4)
            .syn()
            .ack(9)
            .fin()
            .psh()
            .urg(0)
            .ece()
            .cwr()
            .rst()
            .write(&mut v, &[])
            .expect("write");
        assert_eq!(parse_l3(&v).expect("knock").tcp_flags, TcpFlags(0xff));
    }

    #[test]
    fn udp_v6() {
        let k = parse_l3(&udp6(b"hello")).expect("knock");
        assert_eq!(k.src, "fd00:200:1::2".parse::<IpAddr>().expect("addr"));
        assert_eq!(k.dst, "fd00:200:1::1".parse::<IpAddr>().expect("addr"));
        assert_eq!(k.proto, Proto::Udp);
        assert_eq!((k.src_port, k.dst_port), (5353, 9000));
        assert_eq!(k.tcp_flags, TcpFlags::default());
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        // Hop-by-hop options header (PadN) in front of the UDP header.
        let mut inner = Vec::new();
        PacketBuilder::ipv6([0; 16], [0; 16], 1)
            .udp(1234, 9000)
            .write(&mut inner, b"x")
            .expect("write");
        let udp = &inner[40..];
        let mut p = inner[..40].to_vec();
        p[6] = 0; // next header: hop-by-hop
        let plen = (8 + udp.len()) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // next: UDP, len 8, PadN(4)
        p.extend_from_slice(udp);
        let k = parse_l3(&p).expect("knock");
        assert_eq!((k.proto, k.src_port, k.dst_port), (Proto::Udp, 1234, 9000));
    }

    #[test]
    fn copy_range_truncated_payload_still_parses() {
        // The kernel copies only `copy_range` bytes: the IP total length exceeds what we get.
        let full = udp6(&[0xab; 1000]);
        let k = parse_l3(&full[..64]).expect("knock from a truncated copy");
        assert_eq!(k.dst_port, 9000);
        let full = tcp4(true, &[0xcd; 500]);
        assert_eq!(parse_l3(&full[..40]).expect("knock").dst_port, 7000);
    }

    #[test]
    fn truncated_and_foreign_inputs_are_refused() {
        let p = tcp4(true, b"");
        for cut in 0..40 {
            assert_eq!(parse_l3(&p[..cut]), None, "cut at {cut}");
        }
        let p = udp6(b"");
        for cut in 0..48 {
            assert_eq!(parse_l3(&p[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_l3(&[]), None);
        // ICMP other than an echo request (an echo request is an ICMP step's knock)
        let mut v = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .icmpv4_echo_reply(1, 1)
            .write(&mut v, b"ping")
            .expect("write");
        assert_eq!(parse_l3(&v), None);
        // Not IP at all (an Ethernet frame would start with a MAC address).
        assert_eq!(parse_l3(&[0xff; 60]), None);
    }

    #[test]
    fn non_first_fragment_is_not_a_transport_header() {
        let mut p = tcp4(true, b"");
        // fragment offset 8 (64 bytes): the bytes after the IP header are not a TCP header.
        p[6] = 0;
        p[7] = 8;
        // fix the header checksum is not needed: etherparse does not verify it.
        assert_eq!(parse_l3(&p), None);
    }

    fn nflog_message(seq: u32, payload: Vec<u8>) -> Vec<u8> {
        nflog_message_with_prefix(seq, payload, c"knock")
    }

    fn nflog_message_with_prefix(seq: u32, payload: Vec<u8>, prefix: &std::ffi::CStr) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 4100),
                ULogMessage::Packet(vec![
                    PacketNla::HwType(1),
                    PacketNla::Mark(0),
                    PacketNla::Payload(payload),
                    PacketNla::Prefix(prefix.to_owned()),
                ]),
            )),
        );
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut bytes = vec![0; msg.buffer_len()];
        msg.serialize(&mut bytes);
        bytes
    }

    #[test]
    fn spa_datagrams_come_with_their_payload_and_knocks_without() {
        let spa_packet = b"an SPA packet, as many bytes as the client sent".to_vec();
        let mut datagram = nflog_message_with_prefix(1, udp6(&spa_packet), c"knocker-spa");
        datagram.extend(nflog_message(2, udp6(b"x")));
        // an SPA-prefixed packet that is TCP is not an SPA datagram
        datagram.extend(nflog_message_with_prefix(
            3,
            tcp4(true, b""),
            c"knocker-spa",
        ));
        let (mut out, mut spa, mut stats) = (Vec::new(), Vec::new(), RecvStats::default());
        parse_datagram_with(&datagram, &mut out, &mut spa, &mut stats);
        assert_eq!(spa.len(), 1);
        assert_eq!(spa[0].payload, spa_packet);
        assert_eq!(spa[0].knock.proto, Proto::Udp);
        assert_eq!(out.len(), 1, "the plain UDP knock stays a knock");
        assert_eq!(stats.malformed, 1);
    }

    #[test]
    fn datagram_with_several_messages() {
        let mut datagram = nflog_message(1, tcp4(true, b""));
        datagram.extend(nflog_message(2, udp6(b"spa")));
        datagram.extend(nflog_message(3, vec![0x45, 0, 0])); // garbage packet
                                                             // NLMSG_DONE trailer, as the kernel appends to multi-message datagrams.
        let mut done = vec![0u8; 20];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&3u16.to_ne_bytes());
        datagram.extend(done);
        let mut out = Vec::new();
        let mut stats = RecvStats::default();
        parse_datagram(&datagram, &mut out, &mut stats);
        assert_eq!(
            stats,
            RecvStats {
                knocks: 2,
                malformed: 1,
                batched: 1,
                ..RecvStats::default()
            }
        );
        assert_eq!(out[0].dst_port, 7000);
        assert_eq!(out[1].dst_port, 9000);
    }

    #[test]
    fn a_datagram_of_several_packets_is_the_kernel_batching() {
        let mut stats = RecvStats::default();
        parse_datagram(
            &nflog_message(1, tcp4(true, b"")),
            &mut Vec::new(),
            &mut stats,
        );
        assert_eq!(stats.batched, 0, "one packet: not batched");
        let mut datagram = Vec::new();
        for seq in 0..3 {
            datagram.extend(nflog_message(seq, tcp4(true, b"")));
        }
        parse_datagram(&datagram, &mut Vec::new(), &mut stats);
        assert_eq!(
            (stats.knocks, stats.batched),
            (4, 1),
            "counted once a datagram"
        );
    }

    #[test]
    fn truncated_datagram_counts_once() {
        let mut datagram = nflog_message(1, tcp4(true, b""));
        let second = nflog_message(2, udp6(b"spa"));
        datagram.extend_from_slice(&second[..second.len() - 7]);
        let mut out = Vec::new();
        let mut stats = RecvStats::default();
        parse_datagram(&datagram, &mut out, &mut stats);
        assert_eq!((stats.knocks, stats.malformed), (1, 1));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut datagram = nflog_message(1, udp6(b"spa"));
        datagram.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut out = Vec::new();
        let mut stats = RecvStats::default();
        parse_datagram(&datagram, &mut out, &mut stats);
        assert_eq!((stats.knocks, stats.malformed), (1, 1));
    }

    #[test]
    fn reads_the_effective_capabilities() {
        let status = |eff: &str| {
            format!("Name:\tknockerd\nCapInh:\t0000000000000000\nCapEff:\t{eff}\nCapBnd:\t000001ffffffffff\n")
        };
        assert_eq!(
            effective_capability(&status("000001ffffffffff"), CAP_NET_ADMIN),
            Some(true)
        );
        assert_eq!(
            effective_capability(&status("0000000000001000"), CAP_NET_ADMIN),
            Some(true)
        );
        assert_eq!(
            effective_capability(&status("0000000000000000"), CAP_NET_ADMIN),
            Some(false)
        );
        assert_eq!(effective_capability(&status("zz"), CAP_NET_ADMIN), None);
        assert_eq!(effective_capability("Name:\tx\n", CAP_NET_ADMIN), None);
    }

    proptest! {
        #[test]
        fn parse_l3_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_l3(&bytes);
        }

        #[test]
        fn parse_l3_never_panics_on_ip_looking_input(
            version in prop_oneof![Just(0x45u8), Just(0x46u8), Just(0x60u8)],
            proto in prop_oneof![Just(6u8), Just(17u8), Just(0u8), Just(44u8), any::<u8>()],
            mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            if !bytes.is_empty() { bytes[0] = version; }
            if bytes.len() > 9 { bytes[if version == 0x60 { 6 } else { 9 }] = proto; }
            let _ = parse_l3(&bytes);
        }

        #[test]
        fn parse_datagram_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            let mut stats = RecvStats::default();
            parse_datagram(&bytes, &mut out, &mut stats);
        }
    }
}
