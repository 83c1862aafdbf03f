//! Stealth SYN: a door that opens on one TCP SYN that looks exactly like the SYN the client's
//! Linux kernel sends for `connect()`, whose random-looking fields carry an authenticator.
//!
//! A Linux SYN already has about 84 bits an observer cannot predict: the initial sequence number
//! (a keyed hash), the TCP timestamp (a keyed per-connection offset), and the IPv4 ID (random per
//! connection) or the IPv6 flow label (a hash). The client fills exactly those bits with keyed
//! values: a short hint that tells the server which client's key to try, and an HMAC over the
//! time step, the hint's index and the connection's addresses and ports. Everything else
//! (options and their order, window, window scale, TTL, DF) is what its own kernel would send,
//! so the knock is one ordinary connection attempt among others: nothing on the wire marks it.
//!
//! # The authenticator (version 2), for anyone writing another client
//!
//! ```text
//! step = unix time / 30, rounded down                      (hashed as 8 bytes, big-endian)
//! j    = 0, 1, 2 or 3, drawn at random for each SYN        (hashed as 1 byte)
//!
//! hint = HMAC-SHA256(syn key,  "knocker syn hint v2"       19 bytes, ASCII
//!                           || step                        8 bytes
//!                           || j)[0..2]                    1 byte; hint is 16 bits, big-endian
//!
//! H    = HMAC-SHA256(syn key,  "knocker syn v2"            14 bytes, ASCII
//!                           || step                        8 bytes
//!                           || source address              16 bytes, IPv4 as ::ffff:a.b.c.d
//!                           || destination address         16 bytes, likewise
//!                           || destination port            2 bytes, big-endian
//!                           || source port                 2 bytes, big-endian
//!                           || j)                          1 byte
//!
//! sequence number = H[0..4]          TSval = H[4..8]            (big-endian, as on the wire)
//! IPv4 ID         = hint             IPv6 flow label = (H[8] >> 4) << 16 | hint
//! slot            = H[8] & 0x0F      (which service of the door's `open` list)
//! ```
//!
//! The client draws `j` uniformly from 0 to 3, over IPv4 never one whose hint is 0 (a raw
//! socket replaces an ID of 0 with a random one); then it tries source ports until H names the
//! slot it wants ([`choose`]). A packet is IPv4 only if both its addresses are; [`build`] writes
//! any other pair as IPv6 (an IPv4 address mapped), which [`parse`] never accepts, since no stack
//! puts mapped addresses on the wire.
//!
//! The server knows every enrolled client's hints for the time steps it accepts (the previous,
//! the current and the next): [`HintTable`] indexes them by value, so a SYN's ID or flow label
//! names the few (client, step, j) whose hint it carries: on average `3 × 4 × clients / 65536`
//! besides the right one. For each it recomputes H and compares the packet's sequence number,
//! TSval and ID or flow label with it in constant time (64 bits of H over IPv4, 68 over IPv6, and
//! the hint); the slot is not compared (it is the message). So a SYN costs one table lookup and
//! that many HMACs, under two with 10 000 clients; the table costs `4 × clients` hint HMACs when
//! the step changes. [`verify`] is the same check for one key.
//!
//! Replays inside the accepted steps are the server's business: [`replay_id`] names a packet
//! by its authenticated fields, so the server accepts each one once.
//!
//! What the SYN's shape does not cover: a sender with `tcp_timestamps`, `tcp_sack` or
//! `tcp_window_scaling` turned off, or `tcp_ecn = 1`, sends SYNs without those options (or with
//! ECE|CWR); a stealth SYN always has them (the timestamp carries 32 bits of the authenticator).
//! Two SYNs of one client in one time step carry the same IPv4 ID (or the same 16 bits of flow
//! label) with probability 1/4, where Linux's IDs repeat with probability 1/65536 (SECURITY.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::key::{secret_key, KeyError};

secret_key! {
    /// The key of one client's stealth SYNs: both sides derive it
    /// ([`crate::identity::PrivateKey::syn_key`]); 32 bytes, as one line of base64 in a key file.
    SynKey
}

/// Seconds per time step: the authenticator changes every 30 seconds.
pub const STEP_SECS: u64 = 30;

/// The source ports a stealth SYN uses: Linux's default `ip_local_port_range`, where a
/// `connect()` takes its port from. [`choose`] only picks even ones, as `connect()` does first.
pub const SRC_PORTS: RangeInclusive<u16> = 32768..=60999;

/// The highest slot a SYN can name: the slot has 4 bits, so a door's `open` list may hold at
/// most 16 services.
pub const MAX_SLOT: u8 = 0x0F;

/// How many hints a client has per time step: the `j` of the module docs runs from 0 to
/// `HINTS - 1`.
pub const HINTS: u8 = 4;

/// How many draws [`choose`] makes before giving up. A draw names a port with probability 0.86
/// (rejection sampling keeps the ports equally likely) and a `j` whose hint can be sent (always
/// over IPv6; over IPv4 unless the hint is 0, a chance of 1 in 16384 per step that one of the four
/// is), which carries the wanted slot with probability 1/16: all 1024 fail with probability
/// about 10^-25.
pub const MAX_TRIES: u32 = 1024;

const LABEL: &[u8; 14] = b"knocker syn v2";
const HINT_LABEL: &[u8; 19] = b"knocker syn hint v2";
const REPLAY_LABEL: &[u8; 21] = b"knocker syn replay v1";

/// Length of the IPv4 header [`build`] writes (no options).
const IPV4_HEADER: usize = 20;
/// Length of the IPv6 header (no extension headers).
const IPV6_HEADER: usize = 40;
/// Length of the TCP header [`build`] writes: 20 bytes and Linux's 20 bytes of SYN options.
const TCP_HEADER: usize = 40;
/// The most IPv6 extension headers [`parse`] walks before it gives up.
const MAX_EXTENSIONS: usize = 8;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const PROTO_TCP: u8 = 6;

/// Which time step `unix_secs` falls in.
pub fn step(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The authenticated values of one SYN (module docs): what the client writes and the server
/// expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Marks {
    /// The TCP initial sequence number.
    pub seq: u32,
    /// The TCP timestamp option's TSval.
    pub tsval: u32,
    /// The IPv4 ID (16 bits) or, for IPv6, the flow label (20 bits).
    pub id: u32,
    /// Which service of the door's `open` list the SYN asks for (0 to [`MAX_SLOT`]).
    pub slot: u8,
}

/// The packet is IPv4 only if both addresses are (module docs).
fn both_v4(src: IpAddr, dst: IpAddr) -> Option<(Ipv4Addr, Ipv4Addr)> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some((s, d)),
        _ => None,
    }
}

/// An address as the authenticator hashes it: 16 bytes, IPv4 mapped (`::ffff:a.b.c.d`).
fn octets16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A keyed HMAC-SHA256, ready for the message.
fn mac(key: &SynKey) -> hmac::Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
        .expect("HMAC accepts any key length")
}

/// Hint `j` of `key` in `step` (module docs): what a SYN carries in its IPv4 ID or in the low 16
/// bits of its IPv6 flow label, so the server knows whose key to try.
pub fn hint(key: &SynKey, step: u64, j: u8) -> u16 {
    let mut mac = mac(key);
    mac.update(HINT_LABEL);
    mac.update(&step.to_be_bytes());
    mac.update(&[j]);
    let h = mac.finalize().into_bytes();
    u16::from_be_bytes([h[0], h[1]])
}

/// The authenticated values for a SYN from `src:src_port` to `dst:dst_port` in `step`, with
/// hint `j`.
pub fn marks(
    key: &SynKey,
    step: u64,
    src: IpAddr,
    dst: IpAddr,
    dst_port: u16,
    src_port: u16,
    j: u8,
) -> Marks {
    let flow = Flow {
        src,
        dst,
        dst_port,
        src_port,
    };
    marks_from(&tag(key, step, &flow, j), hint(key, step, j), flow.v4())
}

/// What H covers of a connection: both addresses and both ports.
struct Flow {
    src: IpAddr,
    dst: IpAddr,
    dst_port: u16,
    src_port: u16,
}

impl Flow {
    fn of(seen: &Observed) -> Flow {
        Flow {
            src: seen.src,
            dst: seen.dst,
            dst_port: seen.dst_port,
            src_port: seen.src_port,
        }
    }

    fn v4(&self) -> bool {
        both_v4(self.src, self.dst).is_some()
    }
}

/// H of the module docs.
fn tag(key: &SynKey, step: u64, flow: &Flow, j: u8) -> [u8; 32] {
    let mut mac = mac(key);
    mac.update(LABEL);
    mac.update(&step.to_be_bytes());
    mac.update(&octets16(flow.src));
    mac.update(&octets16(flow.dst));
    mac.update(&flow.dst_port.to_be_bytes());
    mac.update(&flow.src_port.to_be_bytes());
    mac.update(&[j]);
    mac.finalize().into_bytes().into()
}

/// The marks made of H and the hint (computed once by whoever already has it).
fn marks_from(h: &[u8; 32], hint: u16, v4: bool) -> Marks {
    let hint = u32::from(hint);
    Marks {
        seq: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        tsval: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        id: if v4 {
            hint
        } else {
            u32::from(h[8] >> 4) << 16 | hint
        },
        slot: h[8] & MAX_SLOT,
    }
}

/// Why no source port could be chosen, or no table made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynError {
    #[error("a stealth SYN names a slot from 0 to {MAX_SLOT} (a syn door opens at most 16 services), not {0}")]
    Slot(u8),
    #[error("no source port carried slot {0} after {MAX_TRIES} tries")]
    Exhausted(u8),
    #[error("a syn door takes at most {MAX_KEYS} clients, not {0}")]
    TooManyKeys(usize),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Client: draws a hint index `j` and an even source port in [`SRC_PORTS`] at random until their
/// marks carry `slot`, and returns the port with its marks.
///
/// Even, because Linux's `connect()` tries ports of the range's low parity first (odd ones are
/// for `bind(0)`): an odd source port would set the SYN apart. For IPv4 a `j` whose hint is 0
/// is never drawn: a raw socket fills a zero ID in with a random one.
pub fn choose(
    key: &SynKey,
    step: u64,
    src: IpAddr,
    dst: IpAddr,
    dst_port: u16,
    slot: u8,
) -> Result<(u16, Marks), SynError> {
    if slot > MAX_SLOT {
        return Err(SynError::Slot(slot));
    }
    let low = u32::from(*SRC_PORTS.start());
    let count = (u32::from(*SRC_PORTS.end()) - low) / 2 + 1;
    // Draws at or above the largest multiple of `count` would favour low ports: rejected.
    let limit = 65536 - 65536 % count;
    let v4 = both_v4(src, dst).is_some();
    let hints: [u16; HINTS as usize] = core::array::from_fn(|j| hint(key, step, j as u8));
    // Three random bytes a draw: two for the port, one for j (HINTS divides 256: no bias).
    let mut buf = [0u8; 63];
    let mut at = buf.len();
    for _ in 0..MAX_TRIES {
        if at == buf.len() {
            getrandom::fill(&mut buf).map_err(KeyError::Rng)?;
            at = 0;
        }
        let x = u32::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
        let j = buf[at + 2] % HINTS;
        at += 3;
        if x >= limit || (v4 && hints[usize::from(j)] == 0) {
            continue;
        }
        // low + 2 * (count - 1) = 60998 fits in a u16.
        let port = (low + 2 * (x % count)) as u16;
        let flow = Flow {
            src,
            dst,
            dst_port,
            src_port: port,
        };
        let m = marks_from(&tag(key, step, &flow, j), hints[usize::from(j)], v4);
        if m.slot == slot {
            return Ok((port, m));
        }
    }
    Err(SynError::Exhausted(slot))
}

/// What Linux puts in a SYN's variable fields: the MSS option, the window, the window scale
/// option and the IPv4 TTL or IPv6 hop limit. [`linux_shape`] gives the defaults; the client
/// reads its own host's (`knocker`'s `syn` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub mss: u16,
    pub window: u16,
    pub wscale: u8,
    pub ttl: u8,
}

/// The settings of a Linux host that decide its SYNs' shape, as `/proc/sys` and the route to the
/// destination hold them. [`LinuxTcp::DEFAULT`] is a host nobody tuned (kernels before 6.x; 6.x
/// raised `tcp_rmem`'s maximum to 32 MiB, which makes the window scale 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinuxTcp {
    /// `net.ipv4.tcp_rmem`: minimum, default (a new socket's receive buffer), maximum.
    pub tcp_rmem: [u32; 3],
    /// `net.core.rmem_max`.
    pub rmem_max: u32,
    /// `net.ipv4.tcp_workaround_signed_windows`: offer at most 32767.
    pub signed_windows: bool,
    /// The TTL or hop limit: the route's `hoplimit`, else `net.ipv4.ip_default_ttl` or the
    /// device's `net.ipv6.conf.DEV.hop_limit`.
    pub ttl: u8,
    /// The route's `advmss`, if it sets one (it overrides the MSS the MTU gives).
    pub advmss: Option<u32>,
}

impl LinuxTcp {
    pub const DEFAULT: LinuxTcp = LinuxTcp {
        tcp_rmem: [4096, 131_072, 6_291_456],
        rmem_max: 212_992,
        signed_windows: false,
        ttl: 64,
        advmss: None,
    };
}

impl Default for LinuxTcp {
    fn default() -> LinuxTcp {
        LinuxTcp::DEFAULT
    }
}

/// The shape of an untuned Linux host's SYN over a path with this MTU: MSS = MTU - 40 (IPv4)
/// or - 60 (IPv6), window 64240 for an MSS of 1460, window scale 7, TTL 64.
pub fn linux_shape(v6: bool, mtu: u32) -> Shape {
    linux_shape_with(v6, mtu, &LinuxTcp::DEFAULT)
}

/// The shape of the SYN a Linux host with these settings sends over a path with this MTU, as the
/// kernel computes it (`ipv4_default_advmss`/`ip6_default_advmss`, then
/// `tcp_select_initial_window` on a new socket's receive buffer, half of which is window).
/// Pure: the caller reads the values.
pub fn linux_shape_with(v6: bool, mtu: u32, tcp: &LinuxTcp) -> Shape {
    // IPv4: max(mtu - 40, ip_rt_min_advmss = 256), at most 65535 - 40. IPv6: max(mtu - 60,
    // ip6_rt_min_advmss = 1280 - 60), and anything above 65535 - 20 means 65535.
    let mss = match (tcp.advmss, v6) {
        (Some(advmss), _) => advmss.min(65535),
        (None, false) => mtu.saturating_sub(40).clamp(256, 65535 - 40),
        (None, true) => {
            let m = mtu.saturating_sub(60).max(1220);
            if m > 65535 - 20 {
                65535
            } else {
                m
            }
        }
    };
    // A new socket's receive buffer is tcp_rmem[1]; half of it is window (the default scaling
    // ratio, and tcp_adv_win_scale = 1 before 6.6), rounded down to whole segments.
    let window_clamp: u32 = 65535 << 14;
    let mut space = (tcp.tcp_rmem[1] / 2).min(window_clamp);
    if space > mss {
        space -= space % mss.max(1);
    }
    let mut rcv_wnd = space;
    if tcp.signed_windows {
        rcv_wnd = rcv_wnd.min(32767);
    }
    // The window scale is chosen for the largest window the socket could ever offer.
    let max_space = space
        .max(tcp.tcp_rmem[2])
        .max(tcp.rmem_max)
        .min(window_clamp);
    let log2 = 31u32.saturating_sub(max_space.max(1).leading_zeros());
    let wscale = log2.saturating_sub(15).min(14);
    Shape {
        mss: mss.min(65535) as u16,
        window: rcv_wnd.min(65535) as u16,
        wscale: wscale as u8,
        ttl: tcp.ttl,
    }
}

/// The Internet checksum's one's-complement sum, not yet folded or inverted.
fn sum16(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// A complete SYN, IP header included, checksums filled: byte for byte what Linux's `connect()`
/// sends, but for the marks. IPv4: no options, TOS 0, DF, ID = `marks.id`. IPv6: traffic class 0,
/// flow label = `marks.id`. TCP: ack 0, SYN alone, options in Linux's order (MSS, SACK permitted,
/// timestamps with TSecr 0, NOP, window scale), 40 bytes.
pub fn build(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    marks: &Marks,
    shape: &Shape,
) -> Vec<u8> {
    let mut tcp = [0u8; TCP_HEADER];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&marks.seq.to_be_bytes());
    // ack 8..12 stays 0.
    tcp[12] = ((TCP_HEADER / 4) as u8) << 4;
    tcp[13] = TCP_SYN;
    tcp[14..16].copy_from_slice(&shape.window.to_be_bytes());
    // checksum 16..18 and urgent pointer 18..20 stay 0 for now.
    tcp[20..24].copy_from_slice(&[2, 4, 0, 0]);
    tcp[22..24].copy_from_slice(&shape.mss.to_be_bytes());
    tcp[24..28].copy_from_slice(&[4, 2, 8, 10]);
    tcp[28..32].copy_from_slice(&marks.tsval.to_be_bytes());
    // TSecr 32..36 stays 0.
    tcp[36..40].copy_from_slice(&[1, 3, 3, shape.wscale]);

    let tcp_len = TCP_HEADER as u32;
    let mut packet;
    let pseudo = match both_v4(src, dst) {
        Some((s, d)) => {
            packet = Vec::with_capacity(IPV4_HEADER + TCP_HEADER);
            let total = (IPV4_HEADER + TCP_HEADER) as u16;
            let id = (marks.id & 0xFFFF) as u16;
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&total.to_be_bytes());
            packet.extend_from_slice(&id.to_be_bytes());
            packet.extend_from_slice(&[0x40, 0, shape.ttl, PROTO_TCP, 0, 0]);
            packet.extend_from_slice(&s.octets());
            packet.extend_from_slice(&d.octets());
            let ip_sum = fold(sum16(0, &packet));
            packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
            let acc = sum16(0, &s.octets());
            let acc = sum16(acc, &d.octets());
            acc + u32::from(PROTO_TCP) + tcp_len
        }
        None => {
            let (s, d) = (v6(src).octets(), v6(dst).octets());
            packet = Vec::with_capacity(IPV6_HEADER + TCP_HEADER);
            let flow = marks.id & 0xF_FFFF;
            packet.extend_from_slice(&(0x6000_0000 | flow).to_be_bytes());
            packet.extend_from_slice(&(TCP_HEADER as u16).to_be_bytes());
            packet.extend_from_slice(&[PROTO_TCP, shape.ttl]);
            packet.extend_from_slice(&s);
            packet.extend_from_slice(&d);
            let acc = sum16(0, &s);
            let acc = sum16(acc, &d);
            acc + tcp_len + u32::from(PROTO_TCP)
        }
    };
    let tcp_sum = fold(sum16(pseudo, &tcp));
    tcp[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
    packet.extend_from_slice(&tcp);
    packet
}

/// What the server reads from a SYN: the authenticated fields and what they were computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Observed {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub tsval: u32,
    /// The IPv4 ID or the IPv6 flow label.
    pub id: u32,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Reads a SYN from its IP header on (an NFLOG payload): IPv4 or IPv6, SYN set, ACK, RST and FIN
/// clear, ack field 0, with a timestamp option anywhere among its options. `None` for anything
/// else, including fragments, truncated packets and IPv6 packets with IPv4-mapped addresses.
/// Never panics; the work is bounded by the header lengths (at most 8 IPv6 extension headers).
pub fn parse(l3: &[u8]) -> Option<Observed> {
    match l3.first()? >> 4 {
        4 => parse_v4(l3),
        6 => parse_v6(l3),
        _ => None,
    }
}

fn parse_v4(p: &[u8]) -> Option<Observed> {
    let ihl = usize::from(*p.first()? & 0x0F) * 4;
    let total = usize::from(be16(p, 2)?);
    if ihl < IPV4_HEADER || total < ihl {
        return None;
    }
    // Anything past the total length is link-layer padding; a shorter buffer is truncated.
    let p = p.get(..total)?;
    // More fragments, or not the first fragment: not a whole SYN.
    if be16(p, 6)? & 0x3FFF != 0 || *p.get(9)? != PROTO_TCP {
        return None;
    }
    let src = Ipv4Addr::from(be32(p, 12)?);
    let dst = Ipv4Addr::from(be32(p, 16)?);
    let id = u32::from(be16(p, 4)?);
    parse_tcp(p.get(ihl..)?, IpAddr::V4(src), IpAddr::V4(dst), id)
}

fn parse_v6(p: &[u8]) -> Option<Observed> {
    if p.len() < IPV6_HEADER {
        return None;
    }
    let payload = usize::from(be16(p, 4)?);
    let p = p.get(..IPV6_HEADER + payload)?;
    let flow = be32(p, 0)? & 0xF_FFFF;
    let mut src = [0u8; 16];
    src.copy_from_slice(p.get(8..24)?);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(p.get(24..40)?);
    let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
    if src.to_ipv4_mapped().is_some() || dst.to_ipv4_mapped().is_some() {
        return None;
    }
    let mut next = *p.get(6)?;
    let mut at = IPV6_HEADER;
    for _ in 0..MAX_EXTENSIONS {
        match next {
            PROTO_TCP => {
                return parse_tcp(p.get(at..)?, IpAddr::V6(src), IpAddr::V6(dst), flow);
            }
            // Hop-by-hop, routing, destination options: skip them. Fragments are refused.
            0 | 43 | 60 => {
                next = *p.get(at)?;
                at += (usize::from(*p.get(at + 1)?) + 1) * 8;
            }
            _ => return None,
        }
    }
    None
}

fn parse_tcp(seg: &[u8], src: IpAddr, dst: IpAddr, id: u32) -> Option<Observed> {
    let doff = usize::from(*seg.get(12)? >> 4) * 4;
    if doff < 20 {
        return None;
    }
    let flags = *seg.get(13)?;
    if flags & TCP_SYN == 0 || flags & (TCP_ACK | TCP_RST | TCP_FIN) != 0 || be32(seg, 8)? != 0 {
        return None;
    }
    let options = seg.get(20..doff)?;
    // At most 40 bytes of options; every step moves on by at least one.
    let mut at = 0;
    let mut tsval = None;
    while at < options.len() {
        match options[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1)?);
                if len < 2 {
                    return None;
                }
                let body = options.get(at..at + len)?;
                if kind == 8 {
                    if len != 10 {
                        return None;
                    }
                    tsval = be32(body, 2);
                    break;
                }
                at += len;
            }
        }
    }
    Some(Observed {
        src,
        dst,
        src_port: be16(seg, 0)?,
        dst_port: be16(seg, 2)?,
        seq: be32(seg, 4)?,
        tsval: tsval?,
        id,
    })
}

/// Whether `seen` carries the marks of `key` for `step` with hint `j`, whose value the caller
/// knows is `hint`: the slot it asks for. The 64 (IPv4) or 68 (IPv6) bits of H, and the hint,
/// are compared in constant time. One HMAC.
fn check(key: &SynKey, step: u64, j: u8, hint: u16, seen: &Observed) -> Option<u8> {
    let flow = Flow::of(seen);
    let want = marks_from(&tag(key, step, &flow, j), hint, flow.v4());
    let mut expected = [0u8; 12];
    expected[0..4].copy_from_slice(&want.seq.to_be_bytes());
    expected[4..8].copy_from_slice(&want.tsval.to_be_bytes());
    expected[8..12].copy_from_slice(&want.id.to_be_bytes());
    let mut got = [0u8; 12];
    got[0..4].copy_from_slice(&seen.seq.to_be_bytes());
    got[4..8].copy_from_slice(&seen.tsval.to_be_bytes());
    got[8..12].copy_from_slice(&seen.id.to_be_bytes());
    bool::from(expected.ct_eq(&got)).then_some(want.slot)
}

/// The hint a SYN carries: its IPv4 ID, or the low 16 bits of its IPv6 flow label.
fn carried_hint(seen: &Observed) -> u16 {
    (seen.id & 0xFFFF) as u16
}

/// Server, one key: whether `seen` carries the marks of `key` for `step` (this step only: the
/// caller tries the steps it accepts). Returns the slot it asks for. Costs the key's 4 hint
/// HMACs, and one more for a hint that matches; a server with many clients uses [`HintTable`].
pub fn verify(key: &SynKey, step: u64, seen: &Observed) -> Option<u8> {
    let carried = carried_hint(seen);
    (0..HINTS)
        .filter(|&j| bool::from(hint(key, step, j).ct_eq(&carried)))
        .find_map(|j| check(key, step, j, carried, seen))
}

/// The most clients a [`HintTable`] takes: every (client, j) is numbered in 32 bits.
pub const MAX_KEYS: usize = (u32::MAX / HINTS as u32) as usize;

/// The server's index of its clients' hints: for each accepted time step, which (client, j)
/// have which hint, so that a SYN is checked against the few keys its hint names and not
/// against every enrolled one (module docs).
///
/// Memory: per accepted step, 65 537 offsets and one entry per (client, j), 4 bytes each: with
/// a skew of 1 step (3 steps), `3 × (256 KiB + 16 × clients)` bytes, 5.5 MiB for 100 000 clients.
/// Bounded by the configuration, never by what arrives.
pub struct HintTable {
    keys: Vec<SynKey>,
    skew: u64,
    /// One index per accepted step, in order of step; at most `2 × skew + 1`.
    steps: Vec<StepHints>,
}

/// One step's hints, grouped by value: the entries whose hint is `h` are
/// `entries[starts[h]..starts[h + 1]]`, each `client × HINTS + j`.
struct StepHints {
    step: u64,
    starts: Box<[u32]>,
    entries: Box<[u32]>,
}

impl StepHints {
    fn build(keys: &[SynKey], step: u64) -> StepHints {
        let hints: Vec<u16> = keys
            .iter()
            .flat_map(|key| (0..HINTS).map(move |j| hint(key, step, j)))
            .collect();
        // A counting sort by hint: counts, their running sum, then each entry in its place.
        let mut starts = vec![0u32; 65537];
        for &h in &hints {
            starts[usize::from(h) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut entries = vec![0u32; hints.len()];
        // At most MAX_KEYS × HINTS entries (HintTable::new): every index fits a u32.
        for (e, &h) in hints.iter().enumerate() {
            let at = &mut next[usize::from(h)];
            entries[*at as usize] = e as u32;
            *at += 1;
        }
        StepHints {
            step,
            starts: starts.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
        }
    }

    /// The (client, j) whose hint in this step is `h`.
    fn candidates(&self, h: u16) -> impl Iterator<Item = (usize, u8)> + '_ {
        let from = self.starts.get(usize::from(h)).copied().unwrap_or(0) as usize;
        let to = self.starts.get(usize::from(h) + 1).copied().unwrap_or(0) as usize;
        self.entries
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|&e| {
                (
                    (e / u32::from(HINTS)) as usize,
                    (e % u32::from(HINTS)) as u8,
                )
            })
    }
}

/// Who sent a SYN, as [`HintTable::find`] tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The client's index in the keys the table was made with.
    pub client: usize,
    /// The time step the SYN was made for.
    pub step: u64,
    /// The slot it asks for.
    pub slot: u8,
}

impl HintTable {
    /// A table for these clients' keys, accepting SYNs made up to `skew` steps either side of
    /// the server's. Nothing is computed until the first [`HintTable::advance`] or
    /// [`HintTable::find`].
    pub fn new(keys: Vec<SynKey>, skew: u8) -> Result<HintTable, SynError> {
        if keys.len() > MAX_KEYS {
            return Err(SynError::TooManyKeys(keys.len()));
        }
        Ok(HintTable {
            keys,
            skew: u64::from(skew),
            steps: Vec::new(),
        })
    }

    /// How many clients' keys the table holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The steps accepted when the server's is `now`.
    fn accepted(&self, now: u64) -> RangeInclusive<u64> {
        now.saturating_sub(self.skew)..=now.saturating_add(self.skew)
    }

    /// Makes the table ready for SYNs at the server's step `now`: drops the steps no longer
    /// accepted and computes the hints of those newly accepted (when the step moves on by one,
    /// only the next step's, `4 × clients` HMACs). Nothing to do if `now` has not changed.
    pub fn advance(&mut self, now: u64) {
        let accepted = self.accepted(now);
        if self.keys.is_empty()
            || (self.steps.first().map(|s| s.step) == Some(*accepted.start())
                && self.steps.last().map(|s| s.step) == Some(*accepted.end()))
        {
            return;
        }
        // Dropped before the new ones are made: at most 2 × skew + 1 are held at any time.
        self.steps.retain(|s| accepted.contains(&s.step));
        for step in accepted {
            if let Err(at) = self.steps.binary_search_by_key(&step, |s| s.step) {
                self.steps.insert(at, StepHints::build(&self.keys, step));
            }
        }
    }

    /// Server: which client sent `seen`, in one of the steps accepted at `now`, and which slot
    /// it asks for; `None` if no one's marks are on it. Checks only the (client, step, j) whose
    /// hint the SYN carries, each with one HMAC compared in constant time.
    pub fn find(&mut self, now: u64, seen: &Observed) -> Option<Found> {
        self.advance(now);
        let carried = carried_hint(seen);
        for hints in &self.steps {
            for (client, j) in hints.candidates(carried) {
                let Some(key) = self.keys.get(client) else {
                    continue;
                };
                // The entry sits under the hint the SYN carries: that is its hint.
                if let Some(slot) = check(key, hints.step, j, carried, seen) {
                    return Some(Found {
                        client,
                        step: hints.step,
                        slot,
                    });
                }
            }
        }
        None
    }

    /// How many (client, step, j) a SYN carrying `hint` would be checked against at `now`: the
    /// cost [`HintTable::find`] pays, in HMACs.
    pub fn candidates(&mut self, now: u64, hint: u16) -> usize {
        self.advance(now);
        self.steps.iter().map(|s| s.candidates(hint).count()).sum()
    }
}

/// A name for one SYN, for the server's replay memory: SHA-256 over its authenticated fields
/// (and each address's family, so an IPv4 SYN and an IPv6 one with the mapped address differ).
pub fn replay_id(seen: &Observed) -> [u8; 32] {
    let family = |a: IpAddr| if a.is_ipv4() { 4u8 } else { 6u8 };
    let mut d = Sha256::new();
    d.update(REPLAY_LABEL);
    d.update([family(seen.src), family(seen.dst)]);
    d.update(octets16(seen.src));
    d.update(octets16(seen.dst));
    d.update(seen.src_port.to_be_bytes());
    d.update(seen.dst_port.to_be_bytes());
    d.update(seen.seq.to_be_bytes());
    d.update(seen.tsval.to_be_bytes());
    d.update(seen.id.to_be_bytes());
    d.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SynKey {
        SynKey::from_bytes([b; 32])
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Real SYNs from `connect()` on Linux 6.18 (veth, MTU 1500, default sysctls but tcp_rmem's
    /// maximum of 32 MiB: window scale 10), captured with tcpdump. The TCP checksum in a capture
    /// is the offloaded partial one; tcpdump computed the real one.
    const LINUX_V4: &str = "4500 003c 0fbb 4000 4006 16ed 0a09 0001 0a09 0002 e694 0016 2d00 c1b0
        0000 0000 a002 faf0 1443 0000 0204 05b4 0402 080a 561b c85b 0000 0000 0103 030a";
    const LINUX_V4_TCP_SUM: u16 = 0x4525;
    const LINUX_V6: &str = "6002 04ce 0028 0640 fd00 0009 0000 0000 0000 0000 0000 0001 fd00 0009
        0000 0000 0000 0000 0000 0002 a432 0016 1c24 e05e 0000 0000 a002 fd20 fa44 0000 0204 05a0
        0402 080a b4cc fc52 0000 0000 0103 030a";
    const LINUX_V6_TCP_SUM: u16 = 0xfeee;

    fn linux_6_18() -> LinuxTcp {
        LinuxTcp {
            tcp_rmem: [4096, 131_072, 33_554_432],
            rmem_max: 4_194_304,
            ..LinuxTcp::DEFAULT
        }
    }

    #[test]
    fn build_reproduces_linux_connect_syns() {
        for (text, sum, v6, tcp_at) in [
            (LINUX_V4, LINUX_V4_TCP_SUM, false, 20),
            (LINUX_V6, LINUX_V6_TCP_SUM, true, 40),
        ] {
            let mut real = hex(text);
            real[tcp_at + 16..tcp_at + 18].copy_from_slice(&sum.to_be_bytes());
            let seen = parse(&real).expect("a Linux SYN parses");
            let shape = linux_shape_with(v6, 1500, &linux_6_18());
            assert_eq!(shape.wscale, 10);
            let marks = Marks {
                seq: seen.seq,
                tsval: seen.tsval,
                id: seen.id,
                slot: 0,
            };
            let ours = build(
                seen.src,
                seen.dst,
                seen.src_port,
                seen.dst_port,
                &marks,
                &shape,
            );
            assert_eq!(ours, real, "v6: {v6}");
        }
    }

    #[test]
    fn linux_shapes() {
        assert_eq!(
            linux_shape(false, 1500),
            Shape {
                mss: 1460,
                window: 64240,
                wscale: 7,
                ttl: 64
            }
        );
        assert_eq!(linux_shape(true, 1500).mss, 1440);
        assert_eq!(linux_shape(true, 1500).window, 64800);
        // Loopback: MSS 65495, one segment of window.
        assert_eq!(linux_shape(false, 65536).mss, 65495);
        assert_eq!(linux_shape(false, 65536).window, 65495);
        assert_eq!(linux_shape(true, 65536).mss, 65476);
        // An MSS that divides 65536: the window is 65536, offered as 65535 (seen on Linux 6.18
        // with MTU 1064).
        assert_eq!(linux_shape(false, 1064).window, 65535);
        // Half of tcp_rmem[1], whole segments: 32120 for 64 KiB (seen on Linux 6.18).
        let small = LinuxTcp {
            tcp_rmem: [4096, 65536, 33_554_432],
            ..LinuxTcp::DEFAULT
        };
        assert_eq!(linux_shape_with(false, 1500, &small).window, 32120);
        assert_eq!(linux_shape_with(false, 1500, &small).wscale, 10);
        // Window scale from the largest of tcp_rmem[2] and rmem_max (seen: 7).
        let big = LinuxTcp {
            tcp_rmem: [4096, 1_000_000, 1_000_000],
            rmem_max: 4_194_304,
            ..LinuxTcp::DEFAULT
        };
        assert_eq!(linux_shape_with(false, 1500, &big).window, 65535);
        assert_eq!(linux_shape_with(false, 1500, &big).wscale, 7);
        // Nonsense stays total.
        let zero = LinuxTcp {
            tcp_rmem: [0; 3],
            rmem_max: 0,
            signed_windows: true,
            ttl: 1,
            advmss: Some(0),
        };
        let s = linux_shape_with(true, 0, &zero);
        assert_eq!((s.window, s.wscale), (0, 0));
        assert_eq!(
            linux_shape_with(false, u32::MAX, &LinuxTcp::DEFAULT).mss,
            65495
        );
    }

    #[test]
    fn round_trip_and_verify() {
        let k = key(7);
        let src: IpAddr = "192.0.2.7".parse().expect("addr");
        let dst: IpAddr = "198.51.100.1".parse().expect("addr");
        let (port, m) = choose(&k, 1000, src, dst, 443, 3).expect("choose");
        assert!(SRC_PORTS.contains(&port) && port % 2 == 0);
        assert_eq!(m.slot, 3);
        assert_ne!(m.id, 0);
        let packet = build(src, dst, port, 443, &m, &linux_shape(false, 1500));
        let seen = parse(&packet).expect("parses");
        assert_eq!(verify(&k, 1000, &seen), Some(3));
        assert_eq!(verify(&k, 1001, &seen), None);
        assert_eq!(verify(&key(8), 1000, &seen), None);
    }

    #[test]
    fn choose_refuses_slots_past_15() {
        let a: IpAddr = "::1".parse().expect("addr");
        assert_eq!(choose(&key(1), 0, a, a, 22, 16), Err(SynError::Slot(16)));
        for slot in 0..=MAX_SLOT {
            let (port, m) = choose(&key(1), 0, a, a, 22, slot).expect("choose");
            assert!((0..HINTS).any(|j| marks(&key(1), 0, a, a, 22, port, j) == m));
            assert!(m.id <= 0xF_FFFF);
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_syn() {
        let src: IpAddr = "10.0.0.1".parse().expect("addr");
        let dst: IpAddr = "10.0.0.2".parse().expect("addr");
        let m = marks(&key(1), 5, src, dst, 22, 40000, 1);
        let good = build(src, dst, 40000, 22, &m, &linux_shape(false, 1500));
        assert!(parse(&good).is_some());
        // Every truncation.
        for n in 0..good.len() {
            assert_eq!(parse(&good[..n]), None, "{n}");
        }
        // Trailing padding is ignored.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse(&padded), parse(&good));
        let with = |at: usize, v: u8| {
            let mut p = good.clone();
            p[at] = v;
            parse(&p)
        };
        assert_eq!(with(20 + 13, TCP_SYN | TCP_ACK), None);
        assert_eq!(with(20 + 13, TCP_SYN | TCP_RST), None);
        assert_eq!(with(20 + 13, 0), None);
        assert_eq!(with(20 + 11, 1), None, "ack field");
        assert_eq!(with(9, 17), None, "UDP");
        assert_eq!(with(6, 0x60), None, "more fragments");
        assert_eq!(with(7, 1), None, "fragment offset");
        // No timestamp: the TS option overwritten with NOPs.
        let mut no_ts = good.clone();
        no_ts[20 + 24..20 + 36].fill(1);
        assert_eq!(parse(&no_ts), None);
        // An option with length 0 or 1 would loop forever elsewhere.
        assert_eq!(with(20 + 21, 0), None);
        assert_eq!(with(20 + 21, 1), None);
        // IPv4-mapped addresses in IPv6 are refused, which is what build makes of a mixed pair.
        let mixed = build(
            src,
            "::1".parse().expect("addr"),
            40000,
            22,
            &m,
            &linux_shape(true, 1500),
        );
        assert_eq!(mixed.len(), 80);
        assert_eq!(parse(&mixed), None);
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let src: IpAddr = "fd00::1".parse().expect("addr");
        let dst: IpAddr = "fd00::2".parse().expect("addr");
        let m = marks(&key(1), 5, src, dst, 22, 40000, 1);
        let plain = build(src, dst, 40000, 22, &m, &linux_shape(true, 1500));
        // Insert a destination-options header (8 bytes, PadN).
        let mut p = plain[..40].to_vec();
        p[4..6].copy_from_slice(&48u16.to_be_bytes());
        p[6] = 60;
        p.extend_from_slice(&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&plain[40..]);
        assert_eq!(parse(&p), parse(&plain));
        assert_eq!(
            verify(&key(1), 5, &parse(&p).expect("parses")),
            Some(m.slot)
        );
        // A fragment header is refused.
        p[6] = 44;
        assert_eq!(parse(&p), None);
    }

    #[test]
    fn replay_ids_name_packets() {
        let src: IpAddr = "10.0.0.1".parse().expect("addr");
        let dst: IpAddr = "10.0.0.2".parse().expect("addr");
        let m = marks(&key(1), 5, src, dst, 22, 40000, 1);
        let seen =
            parse(&build(src, dst, 40000, 22, &m, &linux_shape(false, 1500))).expect("parses");
        assert_eq!(replay_id(&seen), replay_id(&seen.clone()));
        let mapped = Observed {
            src: IpAddr::V6(v6(src)),
            dst: IpAddr::V6(v6(dst)),
            ..seen
        };
        assert_ne!(replay_id(&seen), replay_id(&mapped));
        assert_ne!(
            replay_id(&seen),
            replay_id(&Observed {
                tsval: seen.tsval ^ 1,
                ..seen
            })
        );
    }

    /// Pins the derivation (module docs) so another client can check itself against it: the
    /// messages written out byte by byte, apart from the code under test.
    #[test]
    fn derivation_vector() {
        let k = SynKey::from_bytes(core::array::from_fn(|i| i as u8));
        let src: IpAddr = "192.0.2.1".parse().expect("addr");
        let dst: IpAddr = "198.51.100.2".parse().expect("addr");
        let hmac = |msg: &[u8]| {
            let mut mac =
                <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(k.bytes()).expect("any key length");
            mac.update(msg);
            mac.finalize().into_bytes()
        };
        let mut hint_msg = b"knocker syn hint v2".to_vec();
        hint_msg.extend_from_slice(&57_000_000u64.to_be_bytes());
        hint_msg.push(2);
        assert_eq!(hint_msg.len(), 28);
        let hint_h = hmac(&hint_msg);
        assert_eq!(
            hint(&k, 57_000_000, 2),
            u16::from_be_bytes([hint_h[0], hint_h[1]])
        );
        let mut msg = b"knocker syn v2".to_vec();
        msg.extend_from_slice(&57_000_000u64.to_be_bytes());
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]);
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2]);
        msg.extend_from_slice(&443u16.to_be_bytes());
        msg.extend_from_slice(&40000u16.to_be_bytes());
        msg.push(2);
        assert_eq!(msg.len(), 59);
        let h = hmac(&msg);
        let m = marks(&k, 57_000_000, src, dst, 443, 40000, 2);
        assert_eq!(m.seq.to_be_bytes(), h[0..4]);
        assert_eq!(m.tsval.to_be_bytes(), h[4..8]);
        assert_eq!(m.id, u32::from(u16::from_be_bytes([hint_h[0], hint_h[1]])));
        assert_eq!(m.slot, h[8] & 0x0F);
        let v6m = marks(
            &k,
            57_000_000,
            IpAddr::V6(v6(src)),
            IpAddr::V6(v6(dst)),
            443,
            40000,
            2,
        );
        assert_eq!((v6m.seq, v6m.tsval, v6m.slot), (m.seq, m.tsval, m.slot));
        assert_eq!(v6m.id, u32::from(h[8] >> 4) << 16 | m.id);
        assert_eq!(step(57_000_000 * 30 + 29), 57_000_000);
    }

    fn keys(n: usize) -> Vec<SynKey> {
        (0..n)
            .map(|k| SynKey::from_bytes(core::array::from_fn(|i| (k * 31 + i) as u8)))
            .collect()
    }

    /// The table finds each client's SYN in every accepted step, and only there.
    #[test]
    fn the_table_finds_the_sender_in_each_accepted_step() {
        let mut table = HintTable::new(keys(40), 1).expect("table");
        let src: IpAddr = "fd00::7".parse().expect("addr");
        let dst: IpAddr = "fd00::1".parse().expect("addr");
        let now = 1000;
        for client in [0, 17, 39] {
            let key = keys(40).swap_remove(client);
            for step in [now - 2, now - 1, now, now + 1, now + 2] {
                let (port, m) = choose(&key, step, src, dst, 443, 9).expect("choose");
                let seen = parse(&build(src, dst, port, 443, &m, &linux_shape(true, 1500)))
                    .expect("parses");
                let found = table.find(now, &seen);
                if step.abs_diff(now) <= 1 {
                    assert_eq!(
                        found,
                        Some(Found {
                            client,
                            step,
                            slot: 9
                        })
                    );
                } else {
                    assert_eq!(found, None, "step {step}");
                }
            }
        }
    }

    /// A step change computes only the new step's hints; a jump recomputes what it must; an
    /// empty table computes nothing.
    #[test]
    fn the_table_is_rebuilt_step_by_step() {
        let mut table = HintTable::new(keys(3), 1).expect("table");
        let held = |t: &HintTable| t.steps.iter().map(|s| s.step).collect::<Vec<_>>();
        table.advance(10);
        assert_eq!(held(&table), [9, 10, 11]);
        let before: Vec<*const u32> = table.steps.iter().map(|s| s.entries.as_ptr()).collect();
        table.advance(11);
        assert_eq!(held(&table), [10, 11, 12]);
        // 10 and 11 were kept, not made again.
        assert_eq!(table.steps[0].entries.as_ptr(), before[1]);
        assert_eq!(table.steps[1].entries.as_ptr(), before[2]);
        table.advance(5);
        assert_eq!(held(&table), [4, 5, 6]);
        table.advance(0);
        assert_eq!(held(&table), [0, 1]);
        table.advance(u64::MAX);
        assert_eq!(held(&table), [u64::MAX - 1, u64::MAX]);
        for s in &table.steps {
            assert_eq!(s.entries.len(), 3 * usize::from(HINTS));
            assert_eq!(s.starts.last().copied(), Some(3 * u32::from(HINTS)));
            // Every entry sits under its own hint.
            for h in 0..=u16::MAX {
                for (client, j) in s.candidates(h) {
                    assert_eq!(hint(&keys(3)[client], s.step, j), h);
                }
            }
        }
        let mut empty = HintTable::new(Vec::new(), 1).expect("table");
        empty.advance(10);
        assert!(empty.steps.is_empty() && empty.is_empty());
        assert_eq!(empty.candidates(10, 0), 0);
    }
}
