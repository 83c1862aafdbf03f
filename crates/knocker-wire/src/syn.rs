//! Stealth SYN: a door that opens on one TCP SYN that looks exactly like the SYN the client's
//! Linux kernel sends for `connect()`, whose random-looking fields carry an authenticator.
//!
//! A Linux SYN already has about 84 bits an observer cannot predict: the initial sequence number
//! (a keyed hash), the TCP timestamp (a keyed per-connection offset), and the IPv4 ID (random per
//! connection) or the IPv6 flow label (a hash). The client fills exactly those bits with an HMAC
//! over the time step and the connection's addresses and ports, and everything else (options and
//! their order, window, window scale, TTL, DF) with what its own kernel would send, so the knock
//! is one ordinary connection attempt among others: nothing on the wire marks it.
//!
//! # The authenticator (version 1), for anyone writing another client
//!
//! ```text
//! H = HMAC-SHA256(syn key,  "knocker syn v1"               14 bytes, ASCII
//!                        || step                           8 bytes, big-endian (unix time / 30)
//!                        || source address                 16 bytes, IPv4 as ::ffff:a.b.c.d
//!                        || destination address            16 bytes, likewise
//!                        || destination port               2 bytes, big-endian
//!                        || source port)                   2 bytes, big-endian
//! sequence number = H[0..4]     TSval = H[4..8]
//! IPv4 ID         = H[8..10]    IPv6 flow label = H[8..11] & 0xFFFFF
//! slot            = H[11] & 0x0F   (which service of the door's `open` list)
//! ```
//!
//! The server recomputes H for the packet's addresses and ports and compares the 80 (IPv4) or
//! 84 (IPv6) bits in constant time; the slot is not compared (it is the message), so the client
//! tries source ports until H names the slot it wants ([`choose`]). A packet is IPv4 only if
//! both its addresses are; [`build`] writes any other pair as IPv6 (an IPv4 address mapped),
//! which [`parse`] never accepts, since no stack puts mapped addresses on the wire.
//!
//! Replays inside the accepted steps are the server's business: [`replay_id`] names a packet
//! by its authenticated fields, so the server accepts each one once.
//!
//! What the SYN's shape does not cover: a sender with `tcp_timestamps`, `tcp_sack` or
//! `tcp_window_scaling` turned off, or `tcp_ecn = 1`, sends SYNs without those options (or with
//! ECE|CWR); a stealth SYN always has them (the timestamp carries 32 bits of the authenticator).

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

/// How many draws [`choose`] makes before giving up. A draw names a port with probability 0.86
/// (rejection sampling keeps the ports equally likely), which carries the wanted slot with
/// probability 1/16 (a little less for IPv4, whose ID must not be 0): all 1024 fail with
/// probability about 10^-25.
pub const MAX_TRIES: u32 = 1024;

const LABEL: &[u8; 14] = b"knocker syn v1";
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

/// The authenticated values for a SYN from `src:src_port` to `dst:dst_port` in `step`.
pub fn marks(
    key: &SynKey,
    step: u64,
    src: IpAddr,
    dst: IpAddr,
    dst_port: u16,
    src_port: u16,
) -> Marks {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
        .expect("HMAC accepts any key length");
    mac.update(LABEL);
    mac.update(&step.to_be_bytes());
    mac.update(&octets16(src));
    mac.update(&octets16(dst));
    mac.update(&dst_port.to_be_bytes());
    mac.update(&src_port.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let id = if both_v4(src, dst).is_some() {
        u32::from(u16::from_be_bytes([h[8], h[9]]))
    } else {
        u32::from_be_bytes([0, h[8], h[9], h[10]]) & 0xF_FFFF
    };
    Marks {
        seq: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        tsval: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        id,
        slot: h[11] & MAX_SLOT,
    }
}

/// Why no source port could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynError {
    #[error("a stealth SYN names a slot from 0 to {MAX_SLOT} (a syn door opens at most 16 services), not {0}")]
    Slot(u8),
    #[error("no source port carried slot {0} after {MAX_TRIES} tries")]
    Exhausted(u8),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Client: picks a random even source port in [`SRC_PORTS`] whose marks carry `slot`, and
/// returns it with its marks.
///
/// Even, because Linux's `connect()` tries ports of the range's low parity first (odd ones are
/// for `bind(0)`): an odd source port would set the SYN apart. For IPv4 a port whose ID would be
/// 0 is skipped too: a raw socket fills a zero ID in with a random one.
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
    let mut buf = [0u8; 64];
    let mut at = buf.len();
    for _ in 0..MAX_TRIES {
        if at == buf.len() {
            getrandom::fill(&mut buf).map_err(KeyError::Rng)?;
            at = 0;
        }
        let x = u32::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
        at += 2;
        if x >= limit {
            continue;
        }
        // low + 2 * (count - 1) = 60998 fits in a u16.
        let port = (low + 2 * (x % count)) as u16;
        let m = marks(key, step, src, dst, dst_port, port);
        if m.slot == slot && !(v4 && m.id == 0) {
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

/// Server: whether `seen` carries the marks of `key` for `step` (this step only: the caller
/// tries the steps it accepts). Returns the slot it asks for. The 80 or 84 authenticated bits are
/// compared in constant time.
pub fn verify(key: &SynKey, step: u64, seen: &Observed) -> Option<u8> {
    let want = marks(key, step, seen.src, seen.dst, seen.dst_port, seen.src_port);
    let mut expected = [0u8; 12];
    expected[0..4].copy_from_slice(&want.seq.to_be_bytes());
    expected[4..8].copy_from_slice(&want.tsval.to_be_bytes());
    expected[8..12].copy_from_slice(&want.id.to_be_bytes());
    let mut got = [0u8; 12];
    got[0..4].copy_from_slice(&seen.seq.to_be_bytes());
    got[4..8].copy_from_slice(&seen.tsval.to_be_bytes());
    got[8..12].copy_from_slice(&seen.id.to_be_bytes());
    if bool::from(expected.ct_eq(&got)) {
        Some(want.slot)
    } else {
        None
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
            assert_eq!(marks(&key(1), 0, a, a, 22, port), m);
            assert!(m.id <= 0xF_FFFF);
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_syn() {
        let src: IpAddr = "10.0.0.1".parse().expect("addr");
        let dst: IpAddr = "10.0.0.2".parse().expect("addr");
        let m = marks(&key(1), 5, src, dst, 22, 40000);
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
        let m = marks(&key(1), 5, src, dst, 22, 40000);
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
        let m = marks(&key(1), 5, src, dst, 22, 40000);
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

    /// Pins the derivation (module docs) so another client can check itself against it.
    #[test]
    fn derivation_vector() {
        let k = SynKey::from_bytes(core::array::from_fn(|i| i as u8));
        let src: IpAddr = "192.0.2.1".parse().expect("addr");
        let dst: IpAddr = "198.51.100.2".parse().expect("addr");
        let mut mac =
            <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(k.bytes()).expect("any key length");
        let mut msg = Vec::new();
        msg.extend_from_slice(b"knocker syn v1");
        msg.extend_from_slice(&57_000_000u64.to_be_bytes());
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]);
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2]);
        msg.extend_from_slice(&443u16.to_be_bytes());
        msg.extend_from_slice(&40000u16.to_be_bytes());
        assert_eq!(msg.len(), 58);
        mac.update(&msg);
        let h = mac.finalize().into_bytes();
        let m = marks(&k, 57_000_000, src, dst, 443, 40000);
        assert_eq!(m.seq.to_be_bytes(), h[0..4]);
        assert_eq!(m.tsval.to_be_bytes(), h[4..8]);
        assert_eq!(m.id, u32::from(u16::from_be_bytes([h[8], h[9]])));
        assert_eq!(m.slot, h[11] & 0x0F);
        let v6m = marks(
            &k,
            57_000_000,
            IpAddr::V6(v6(src)),
            IpAddr::V6(v6(dst)),
            443,
            40000,
        );
        assert_eq!((v6m.seq, v6m.tsval, v6m.slot), (m.seq, m.tsval, m.slot));
        assert_eq!(v6m.id, u32::from_be_bytes([0, h[8] & 0x0F, h[9], h[10]]));
        assert_eq!(step(57_000_000 * 30 + 29), 57_000_000);
    }
}
