//! The gatekeeper's handle on the kernel's allow sets: nftables set elements over netlink.
//!
//! A grant is an element `address . protocol . port` with a timeout in one of two sets of an `inet`
//! table (one for IPv4, one for IPv6), of type `ipv4_addr . inet_proto . inet_service` (or
//! `ipv6_addr . …`) with `flags timeout`. The kernel removes the element when the timeout runs out,
//! so access closes on time even if knockerd is gone.
//!
//! Every change is one nfnetlink batch, applied by the kernel atomically or not at all, and every
//! message in it is acknowledged and checked. A grant adds, deletes and re-adds each element in the
//! same batch: adding alone does not reset the timeout of an element that is already there (on
//! kernels before 6.10 not at all; on later ones only when the timeout value differs), while the
//! first add makes the delete safe when the element is absent. The result is exactly one element
//! with a fresh timeout, whatever was there before.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use knocker_engine::Service;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetAttribute, SetElementAttribute,
    SetElementList, SetElementMessage, SetMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};

use crate::netlink::{
    ack_result, find_attr, set_receive_timeout, NetlinkMessages, NFGENMSG_LEN, NLMSG_ERROR,
};

/// How long to wait for the kernel's acknowledgements before giving up on a batch. The kernel
/// answers a batch while processing the send, so this only bounds the pathological case.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

// include/uapi/linux/netfilter/nfnetlink.h, nf_tables.h, linux/netlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSET: u16 = 9;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFT_SET_TIMEOUT: u32 = 0x10;
/// nft's datatype ids and concatenation encoding (`type << 6 | subtype`), as stored in
/// NFTA_SET_KEY_TYPE: ipv4_addr = 7, ipv6_addr = 8, inet_proto = 12, inet_service = 13.
const KEY_TYPE_V4: u32 = ((7 << 6 | 12) << 6) | 13;
const KEY_TYPE_V6: u32 = ((8 << 6 | 12) << 6) | 13;
const KEY_LEN_V4: usize = 12;
const KEY_LEN_V6: usize = 24;
/// NFT_NAME_MAXLEN, including the terminating NUL.
const NAME_MAXLEN: usize = 256;

/// A netlink socket for updating one table's two allow sets.
#[derive(Debug)]
pub struct NftSets {
    socket: Socket,
    table: String,
    set4: String,
    set6: String,
    seq: u32,
    buf: Vec<u8>,
}

/// One message of a batch, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ElemOp {
    /// NEWSETELEM with NLM_F_CREATE (not EXCL: an existing element is fine), optional timeout in ms.
    Add(Option<u64>),
    /// The same in a map, with the elements' data ([`map_data`]).
    AddMapped(Option<u64>, Vec<u8>),
    /// DELSETELEM.
    Delete,
}

/// What a grant does to its source's entry in a client NAT map (`ruleset::CLIENT_NAT4`/`6`),
/// in the grant's own batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatChange {
    /// Nothing: a grant of a door without client NAT, whose source had no entry.
    Untouched,
    /// The grant sends its service on to `to` (an inner host the client named), with the
    /// grant's timeout. `was`: the entry this process last wrote for the same source and
    /// service, if any, so that a different target replaces it (the kernel refuses to add an
    /// element whose data differs from the one there).
    Set {
        to: SocketAddr,
        was: Option<SocketAddr>,
    },
    /// The grant is a plain one: the entry written earlier (with `was`) goes, so that the
    /// source's new connections reach this host's own service as the grant says.
    Clear { was: SocketAddr },
}

impl NftSets {
    /// Opens a netfilter netlink socket in the calling thread's network namespace for the sets
    /// `set4` and `set6` of table `inet <table>`. Nothing is checked against the kernel yet: see
    /// [`NftSets::check`].
    pub fn open(table: &str, set4: &str, set6: &str) -> io::Result<NftSets> {
        for name in [table, set4, set6] {
            if name.is_empty() || name.len() >= NAME_MAXLEN || name.contains('\0') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid nftables name {name:?}"),
                ));
            }
        }
        let socket = netfilter_socket()?;
        // Acknowledgements and errors carry only the request's header, not the whole request.
        let _ = socket.set_cap_ack(true);
        set_receive_timeout(&socket, ACK_TIMEOUT)?;
        Ok(NftSets {
            socket,
            table: table.to_string(),
            set4: set4.to_string(),
            set6: set6.to_string(),
            seq: 1,
            buf: vec![0; 64 << 10],
        })
    }

    /// Verifies that both sets exist and have the layout [`NftSets::grant`] writes: key
    /// `ipv4_addr . inet_proto . inet_service` (resp. `ipv6_addr . …`) and `flags timeout`.
    pub fn check(&mut self) -> io::Result<()> {
        for (set, key_len, key_type, addr) in [
            (self.set4.clone(), KEY_LEN_V4, KEY_TYPE_V4, "ipv4_addr"),
            (self.set6.clone(), KEY_LEN_V6, KEY_TYPE_V6, "ipv6_addr"),
        ] {
            let reply = self.get_set(&set).map_err(|e| self.explain(e, &set))?;
            let attrs = reply.get(NFGENMSG_LEN..).unwrap_or(&[]);
            let be32 = |kind| {
                find_attr(attrs, kind)
                    .and_then(|v| v.get(..4))
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
            };
            let wrong = |what: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "nftables set inet {} {set} {what}: declare it as \
                         `type {addr} . inet_proto . inet_service; flags timeout;`",
                        self.table
                    ),
                )
            };
            if be32(NFTA_SET_KEY_LEN) != Some(key_len as u32)
                || be32(NFTA_SET_KEY_TYPE).is_some_and(|t| t != key_type)
            {
                return Err(wrong("has the wrong type"));
            }
            if be32(NFTA_SET_FLAGS).unwrap_or(0) & NFT_SET_TIMEOUT == 0 {
                return Err(wrong("lacks `flags timeout`"));
            }
        }
        Ok(())
    }

    /// Opens `services` to `to` for `timeout`, in one atomic batch. A repeated grant refreshes the
    /// timeout and never duplicates an element. The timeout is rounded up to whole milliseconds and
    /// must not be zero (an element without a timeout would never close).
    pub fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        let ms = timeout_ms(timeout)?;
        self.apply(
            to,
            services,
            &[ElemOp::Add(None), ElemOp::Delete, ElemOp::Add(Some(ms))],
        )
    }

    /// [`NftSets::grant`], with `nat` applied to the client NAT map of `to`'s family for every
    /// service, in the same batch: the grant element and its inner host come and go together.
    /// A target of the other family than `to` is refused (there is no NAT between families).
    pub fn grant_nat(
        &mut self,
        to: IpAddr,
        services: &[Service],
        timeout: Duration,
        nat: NatChange,
        map: &str,
    ) -> io::Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        let ms = timeout_ms(timeout)?;
        let set = self.set_for(to).to_string();
        let mut ops: Vec<(&str, ElemOp)> =
            [ElemOp::Add(None), ElemOp::Delete, ElemOp::Add(Some(ms))]
                .map(|op| (set.as_str(), op))
                .to_vec();
        let data = |at: SocketAddr| map_data(to, at);
        match nat {
            NatChange::Untouched => {}
            NatChange::Set { to: target, was } => {
                // the first add makes the delete safe; with the old target, it is a no-op on an
                // entry still there, so the delete removes whichever of the two it is
                let first = data(was.unwrap_or(target))?;
                ops.push((map, ElemOp::AddMapped(None, first)));
                ops.push((map, ElemOp::Delete));
                ops.push((map, ElemOp::AddMapped(Some(ms), data(target)?)));
            }
            NatChange::Clear { was } => {
                ops.push((map, ElemOp::AddMapped(None, data(was)?)));
                ops.push((map, ElemOp::Delete));
            }
        }
        self.apply_in(to, services, &ops)
    }

    /// Opens `services` to `to` for `timeout` in each of `sets` (sets of `to`'s family, with the
    /// allow sets' key), in one atomic batch: a grant that counts connections holds one element
    /// per connection it admits, each in a set of its own. A repeated grant refreshes every one.
    pub fn grant_in(
        &mut self,
        to: IpAddr,
        services: &[Service],
        timeout: Duration,
        sets: &[String],
    ) -> io::Result<()> {
        if services.is_empty() || sets.is_empty() {
            return Ok(());
        }
        let ms = timeout_ms(timeout)?;
        let ops: Vec<(&str, ElemOp)> = sets
            .iter()
            .flat_map(|set| {
                [ElemOp::Add(None), ElemOp::Delete, ElemOp::Add(Some(ms))]
                    .map(|op| (set.as_str(), op))
            })
            .collect();
        self.apply_in(to, services, &ops)
    }

    /// Closes `services` to `to` now, in one atomic batch. Elements that are already gone (expired
    /// or never granted) are not an error.
    pub fn revoke(&mut self, to: IpAddr, services: &[Service]) -> io::Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        // Adding first makes the delete succeed whether or not the element still exists.
        self.apply(to, services, &[ElemOp::Add(None), ElemOp::Delete])
    }

    /// The set an address's elements live in.
    pub fn set_for(&self, to: IpAddr) -> &str {
        match to.to_canonical() {
            IpAddr::V4(_) => &self.set4,
            IpAddr::V6(_) => &self.set6,
        }
    }

    fn apply(&mut self, to: IpAddr, services: &[Service], ops: &[ElemOp]) -> io::Result<()> {
        let set = self.set_for(to).to_string();
        let ops: Vec<(&str, ElemOp)> = ops.iter().map(|op| (set.as_str(), op.clone())).collect();
        self.apply_in(to, services, &ops)
    }

    /// One batch of `(set, op)` messages, each carrying every service's key for `to`.
    fn apply_in(
        &mut self,
        to: IpAddr,
        services: &[Service],
        ops: &[(&str, ElemOp)],
    ) -> io::Result<()> {
        let keys: Vec<Vec<u8>> = services.iter().map(|s| element_key(to, *s)).collect();
        let first_seq = self.seq;
        let batch = encode_ops(&self.table, &keys, ops, first_seq);
        // begin, one message per op, end
        self.seq = self.seq.wrapping_add(ops.len() as u32 + 2);
        let named = ops
            .first()
            .map(|(set, _)| set.to_string())
            .unwrap_or_default();
        self.transact(&batch, first_seq, ops.len())
            .map_err(|e| self.explain(e, &named))
    }

    /// Sends a batch and collects the acknowledgement of each of its `n` messages (sequence numbers
    /// `first_seq + 1 ..= first_seq + n`). The first error wins; the kernel has then rolled back the
    /// whole batch.
    fn transact(&mut self, batch: &[u8], first_seq: u32, n: usize) -> io::Result<()> {
        send_all(&self.socket, batch)?;
        let begin = first_seq;
        let end = first_seq.wrapping_add(n as u32 + 1);
        let mut acked = vec![false; n];
        let mut remaining = n;
        let mut first_error: Option<io::Error> = None;
        while remaining > 0 {
            let len = self.recv()?;
            for msg in NetlinkMessages::new(&self.buf[..len]) {
                let Ok(msg) = msg else { break };
                if msg.ty != NLMSG_ERROR {
                    continue;
                }
                let result = ack_result(msg.payload);
                if msg.seq == begin || msg.seq == end {
                    // The batch as a whole was refused (it never reached the messages).
                    return Err(result.err().unwrap_or_else(|| {
                        io::Error::other("the kernel acknowledged a batch marker unasked")
                    }));
                }
                let index = msg.seq.wrapping_sub(first_seq).wrapping_sub(1) as usize;
                if index >= n || acked[index] {
                    continue; // a stale answer from an earlier, timed-out batch
                }
                acked[index] = true;
                remaining -= 1;
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends a GETSET request and returns the NEWSET reply's payload.
    fn get_set(&mut self, set: &str) -> io::Result<Vec<u8>> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
                NfTablesMessage::GetSet(SetMessage {
                    attributes: vec![
                        SetAttribute::Table(self.table.clone()),
                        SetAttribute::Name(set.to_string()),
                    ],
                }),
            )),
        );
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut bytes = vec![0; msg.buffer_len()];
        msg.serialize(&mut bytes);
        send_all(&self.socket, &bytes)?;

        let mut reply = None;
        loop {
            let len = self.recv()?;
            for msg in NetlinkMessages::new(&self.buf[..len]) {
                let Ok(msg) = msg else { break };
                if msg.seq != seq {
                    continue;
                }
                if msg.ty == NLMSG_ERROR {
                    ack_result(msg.payload)?;
                    return reply.ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "GETSET answered without a set")
                    });
                }
                if msg.ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSET {
                    reply = Some(msg.payload.to_vec());
                }
            }
        }
    }

    fn recv(&mut self) -> io::Result<usize> {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the kernel did not answer an nftables request within {} ms",
                            ACK_TIMEOUT.as_millis()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Turns a kernel errno into an error that says what to do about it.
    fn explain(&self, e: io::Error, set: &str) -> io::Error {
        let what = format!("nftables set inet {} {set}", self.table);
        let msg = match e.raw_os_error() {
            Some(libc::ENOENT) => {
                format!("{what} does not exist: is knockerd's table loaded?")
            }
            Some(libc::EPERM) | Some(libc::EACCES) => {
                format!("not allowed to change {what}: knockerd needs CAP_NET_ADMIN ({e})")
            }
            Some(libc::ERANGE) => format!("{what} refused the timeout: it is too long ({e})"),
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => format!(
                "{what} refused the element ({e}): it must be declared with \
                 `type ipv4_addr . inet_proto . inet_service` (or ipv6_addr) and `flags timeout`"
            ),
            Some(libc::ENFILE) | Some(libc::ENOSPC) => format!("{what} is full ({e})"),
            _ => format!("cannot update {what}: {e}"),
        };
        io::Error::new(e.kind(), msg)
    }
}

/// A netfilter netlink socket bound to an address of its own, in the calling thread's network
/// namespace.
pub(crate) fn netfilter_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open a netfilter netlink socket: {e}"),
        )
    })?;
    socket.bind_auto()?;
    Ok(socket)
}

fn send_all(socket: &Socket, bytes: &[u8]) -> io::Result<()> {
    let sent = socket.send(bytes, 0)?;
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write on the netfilter netlink socket",
        ));
    }
    Ok(())
}

/// A timeout in whole milliseconds, rounded up; zero is refused.
fn timeout_ms(timeout: Duration) -> io::Result<u64> {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    match u64::try_from(ms) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a grant needs a timeout: an element without one would never expire",
        )),
        Ok(ms) => Ok(ms),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("grant timeout {timeout:?} is out of range"),
        )),
    }
}

/// The key of element `to . proto . port` for a set of type `ipv4_addr . inet_proto .
/// inet_service` (12 bytes) or `ipv6_addr . inet_proto . inet_service` (24 bytes): each field of a
/// concatenation takes a multiple of 4 bytes, zero-padded; the port is in network byte order.
pub fn element_key(to: IpAddr, service: Service) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_LEN_V6);
    match to.to_canonical() {
        IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
    }
    key.extend_from_slice(&[service.proto.number(), 0, 0, 0]);
    key.extend_from_slice(&service.port.to_be_bytes());
    key.extend_from_slice(&[0, 0]);
    key
}

/// The data of a client NAT map's element for source `from`: `address . port` of the inner
/// host, each field padded to 4 bytes (8 bytes for IPv4, 20 for IPv6), the port in network byte
/// order. The inner host must be of `from`'s family.
pub fn map_data(from: IpAddr, to: SocketAddr) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(20);
    match (from.to_canonical(), to.ip().to_canonical()) {
        (IpAddr::V4(_), IpAddr::V4(a)) => data.extend_from_slice(&a.octets()),
        (IpAddr::V6(_), IpAddr::V6(a)) => data.extend_from_slice(&a.octets()),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{from} cannot be sent on to {to}: no NAT between IPv4 and IPv6"),
            ))
        }
    }
    data.extend_from_slice(&to.port().to_be_bytes());
    data.extend_from_slice(&[0, 0]);
    Ok(data)
}

/// [`encode_ops`] with every message for the one set `set`.
#[cfg(test)]
fn encode_batch(
    table: &str,
    set: &str,
    keys: &[Vec<u8>],
    ops: &[ElemOp],
    first_seq: u32,
) -> Vec<u8> {
    let ops: Vec<(&str, ElemOp)> = ops.iter().map(|op| (set, op.clone())).collect();
    encode_ops(table, keys, &ops, first_seq)
}

/// Encodes BATCH_BEGIN, one set-element message per `(set, op)` (each carrying every key),
/// BATCH_END, with sequence numbers from `first_seq` on.
fn encode_ops(table: &str, keys: &[Vec<u8>], ops: &[(&str, ElemOp)], first_seq: u32) -> Vec<u8> {
    let mut msgs = Vec::with_capacity(ops.len() + 2);
    let marker = |m: ControlMessage| {
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
                m,
            )),
        );
        msg.header.flags = NLM_F_REQUEST;
        msg
    };
    msgs.push(marker(ControlMessage::BatchBegin));
    for (set, op) in ops {
        let elements = keys
            .iter()
            .map(|key| {
                let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(key.clone()))];
                if let ElemOp::Add(Some(ms)) | ElemOp::AddMapped(Some(ms), _) = op {
                    attrs.push(SetElementAttribute::Timeout(*ms));
                }
                if let ElemOp::AddMapped(_, data) = op {
                    attrs.push(SetElementAttribute::Data(DataAttribute::Value(
                        data.clone(),
                    )));
                }
                ListAttribute::Element(attrs)
            })
            .collect();
        let body = SetElementMessage {
            attributes: vec![
                SetElementList::Table(table.to_string()),
                SetElementList::Set(set.to_string()),
                SetElementList::Elements(elements),
            ],
        };
        let (inner, flags) = match op {
            ElemOp::Add(_) | ElemOp::AddMapped(..) => (
                NfTablesMessage::NewSetElement(body),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            ),
            ElemOp::Delete => (
                NfTablesMessage::DeleteSetElement(body),
                NLM_F_REQUEST | NLM_F_ACK,
            ),
        };
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
                inner,
            )),
        );
        msg.header.flags = flags;
        msgs.push(msg);
    }
    msgs.push(marker(ControlMessage::BatchEnd));

    let mut out = Vec::new();
    for (i, mut msg) in msgs.into_iter().enumerate() {
        msg.header.sequence_number = first_seq.wrapping_add(i as u32);
        msg.finalize();
        let start = out.len();
        out.resize(start + msg.buffer_len(), 0);
        msg.serialize(&mut out[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn map_data_layout() {
        let v4: IpAddr = "10.200.1.2".parse().unwrap();
        let v6: IpAddr = "fd00:200:1::2".parse().unwrap();
        assert_eq!(
            map_data(v4, "10.200.3.2:22".parse().unwrap()).unwrap(),
            [10, 200, 3, 2, 0, 22, 0, 0]
        );
        let d = map_data(v6, "[fd00:200:3::2]:2222".parse().unwrap()).unwrap();
        assert_eq!(d.len(), 20);
        assert_eq!(&d[16..], [0x08, 0xae, 0, 0]);
        assert!(map_data(v4, "[fd00:200:3::2]:22".parse().unwrap()).is_err());
        assert!(map_data(v6, "10.200.3.2:22".parse().unwrap()).is_err());
    }

    #[test]
    fn key_layout_v4() {
        let key = element_key(IpAddr::V4(Ipv4Addr::new(10, 200, 3, 2)), Service::tcp(22));
        assert_eq!(key, [10, 200, 3, 2, 6, 0, 0, 0, 0, 22, 0, 0]);
        let key = element_key(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), Service::udp(0x1234));
        assert_eq!(key, [1, 2, 3, 4, 17, 0, 0, 0, 0x12, 0x34, 0, 0]);
    }

    #[test]
    fn key_layout_v6_and_mapped() {
        let a: Ipv6Addr = "fd00:200::2".parse().expect("addr");
        let key = element_key(IpAddr::V6(a), Service::udp(9000));
        assert_eq!(key.len(), KEY_LEN_V6);
        assert_eq!(&key[..16], &a.octets());
        assert_eq!(&key[16..], &[17, 0, 0, 0, 0x23, 0x28, 0, 0]);
        // An IPv4-mapped address is an IPv4 client: it goes to the IPv4 set, as IPv4.
        let mapped: IpAddr = "::ffff:10.200.0.2".parse().expect("addr");
        assert_eq!(
            element_key(mapped, Service::tcp(22)),
            element_key(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)), Service::tcp(22))
        );
    }

    #[test]
    fn timeouts() {
        assert!(timeout_ms(Duration::ZERO).is_err());
        assert_eq!(timeout_ms(Duration::from_nanos(1)).expect("ms"), 1);
        assert_eq!(timeout_ms(Duration::from_millis(1500)).expect("ms"), 1500);
        assert_eq!(timeout_ms(Duration::from_micros(1500)).expect("ms"), 2);
        assert!(timeout_ms(Duration::MAX).is_err());
    }

    #[test]
    fn batch_layout() {
        let keys = vec![
            element_key(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)), Service::tcp(22)),
            element_key(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)), Service::udp(53)),
        ];
        let ops = [ElemOp::Add(None), ElemOp::Delete, ElemOp::Add(Some(60_000))];
        let batch = encode_batch("knocker", "allow4", &keys, &ops, 41);
        let msgs: Vec<_> = NetlinkMessages::new(&batch)
            .collect::<Result<_, _>>()
            .expect("well-formed");
        let shape: Vec<_> = msgs.iter().map(|m| (m.ty, m.flags, m.seq)).collect();
        let newelem = (NFNL_SUBSYS_NFTABLES << 8) | 12;
        let delelem = (NFNL_SUBSYS_NFTABLES << 8) | 14;
        assert_eq!(
            shape,
            [
                (0x10, NLM_F_REQUEST, 41),
                (newelem, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, 42),
                (delelem, NLM_F_REQUEST | NLM_F_ACK, 43),
                (newelem, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, 44),
                (0x11, NLM_F_REQUEST, 45),
            ]
        );
        // nfgenmsg: batch markers carry the subsystem in res_id; element messages family inet.
        assert_eq!(msgs[0].payload, [0, 0, 0, 10]);
        assert_eq!(&msgs[1].payload[..4], &[1, 0, 0, 0]);
        // The last add carries a 64-bit big-endian timeout per element; the first does not.
        let needle = {
            let mut v = vec![12, 0, 4, 0];
            v.extend_from_slice(&60_000u64.to_be_bytes());
            v
        };
        let count = |p: &[u8]| p.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(msgs[1].payload), 0);
        assert_eq!(count(msgs[3].payload), 2);
        // The keys are there, byte for byte.
        for key in &keys {
            assert!(msgs[2]
                .payload
                .windows(key.len())
                .any(|w| w == key.as_slice()));
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(NftSets::open("", "a", "b").is_err());
        assert!(NftSets::open("t", "a\0", "b").is_err());
        assert!(NftSets::open("t", "a", &"x".repeat(300)).is_err());
    }
}
