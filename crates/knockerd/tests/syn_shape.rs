//! End-to-end: a stealth SYN looks like the SYN of a real `connect()`. In a lab, alice sends a
//! SYN with the kernel (a non-blocking `connect()`, as knock(1) does) and a stealth SYN with the
//! client's own code, to the same server port; an AF_PACKET socket in the server's namespace
//! captures both as they arrive, and every header field must be equal except the ones that are
//! random in every Linux SYN: sequence number, source port, IPv4 ID or IPv6 flow label, TSval,
//! and the checksums (which depend on those). The stealth SYN must verify with the key, step and
//! slot it was sent with; the kernel's must not.
//!
//! The stealth SYN is sent by the client library's own code (`knocker::syn::send`, what the
//! `knocker` binary calls), so what is sent here is exactly what `knocker` sends, read from
//! alice's namespace the same way (routing, `ip route get`, /proc/sys).
//!
//! Both an untouched host and a tuned one (MTU 1400, another tcp_rmem, TTL 61, hop limit 63) are
//! tried, over IPv4 and IPv6, so a shape that is right only by default cannot pass.
//!
//! Needs root and iproute2, like the other e2e tests; KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use knocker_engine::Service;
use knocker_wire::syn::{self, SynKey};
use socket2::{Domain, Protocol, Socket, Type};

/// The server port both SYNs go to (closed: the server answers both with a reset).
const DOOR: u16 = 443;
const SLOT: u8 = 5;

/// A capture of every packet in the current namespace, from the IP header on (SOCK_DGRAM packet
/// sockets drop the link-layer header).
fn open_capture() -> std::io::Result<Socket> {
    let all = Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
    let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(all))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s)
}

/// The SYNs to DOOR from `from` the capture sees within `limit`, until it has `n`.
fn captured_syns(cap: &Socket, from: IpAddr, n: usize, limit: Duration) -> Vec<Vec<u8>> {
    let end = Instant::now() + limit;
    let mut syns = Vec::new();
    let mut buf = [0u8; 2048];
    while syns.len() < n && Instant::now() < end {
        let Ok(len) = (&*cap).read(&mut buf) else {
            continue;
        };
        let packet = &buf[..len];
        if let Some(seen) = syn::parse(packet) {
            if seen.src == from && seen.dst_port == DOOR {
                syns.push(packet.to_vec());
            }
        }
    }
    syns
}

/// A header field: name, byte offset and a mask of the bits that belong to it.
struct Field {
    name: &'static str,
    at: usize,
    mask: &'static [u8],
    /// Random in every Linux SYN (or a checksum over such fields): not compared.
    random: bool,
}

const fn field(name: &'static str, at: usize, mask: &'static [u8], random: bool) -> Field {
    Field {
        name,
        at,
        mask,
        random,
    }
}

const B1: &[u8] = &[0xFF];
const B2: &[u8] = &[0xFF; 2];
const B4: &[u8] = &[0xFF; 4];
const B16: &[u8] = &[0xFF; 16];

const IPV4: &[Field] = &[
    field("IPv4 version and header length", 0, B1, false),
    field("IPv4 TOS", 1, B1, false),
    field("IPv4 total length", 2, B2, false),
    field("IPv4 ID", 4, B2, true),
    field("IPv4 flags and fragment offset", 6, B2, false),
    field("IPv4 TTL", 8, B1, false),
    field("IPv4 protocol", 9, B1, false),
    field("IPv4 header checksum", 10, B2, true),
    field("IPv4 source", 12, B4, false),
    field("IPv4 destination", 16, B4, false),
];

const IPV6: &[Field] = &[
    field("IPv6 version and traffic class", 0, &[0xFF, 0xF0], false),
    field("IPv6 flow label", 1, &[0x0F, 0xFF, 0xFF], true),
    field("IPv6 payload length", 4, B2, false),
    field("IPv6 next header", 6, B1, false),
    field("IPv6 hop limit", 7, B1, false),
    field("IPv6 source", 8, B16, false),
    field("IPv6 destination", 24, B16, false),
];

/// TCP, at its offset in the packet; the options are those of a Linux SYN (which the equality
/// of the data offset and of every option byte around TSval proves).
const TCP: &[Field] = &[
    field("TCP source port", 0, B2, true),
    field("TCP destination port", 2, B2, false),
    field("TCP sequence number", 4, B4, true),
    field("TCP acknowledgment number", 8, B4, false),
    field("TCP data offset and flags", 12, B2, false),
    field("TCP window", 14, B2, false),
    field("TCP checksum", 16, B2, true),
    field("TCP urgent pointer", 18, B2, false),
    field("TCP option MSS", 20, B4, false),
    field("TCP option SACK permitted", 24, B2, false),
    field("TCP option timestamps (kind, length)", 26, B2, false),
    field("TCP option timestamps TSval", 28, B4, true),
    field("TCP option timestamps TSecr", 32, B4, false),
    field("TCP option NOP", 36, B1, false),
    field("TCP option window scale", 37, &[0xFF; 3], false),
];

fn bits(packet: &[u8], at: usize, mask: &[u8]) -> Option<Vec<u8>> {
    let bytes = packet.get(at..at + mask.len())?;
    Some(bytes.iter().zip(mask).map(|(b, m)| b & m).collect())
}

/// Compares every field; returns the fields that differ (with both values) and those compared.
fn compare(real: &[u8], ours: &[u8], v6: bool) -> (Vec<String>, Vec<&'static str>) {
    let (ip, tcp_at) = if v6 { (IPV6, 40) } else { (IPV4, 20) };
    let mut differ = Vec::new();
    let mut compared = Vec::new();
    if real.len() != ours.len() {
        differ.push(format!(
            "length: real {} bytes, ours {}",
            real.len(),
            ours.len()
        ));
    }
    let all = ip
        .iter()
        .map(|f| (f, f.at))
        .chain(TCP.iter().map(|f| (f, tcp_at + f.at)));
    for (f, at) in all {
        if f.random {
            continue;
        }
        compared.push(f.name);
        let (a, b) = (bits(real, at, f.mask), bits(ours, at, f.mask));
        if a != b {
            differ.push(format!("{}: real {a:02x?}, ours {b:02x?}", f.name));
        }
    }
    (differ, compared)
}

/// The Internet checksum over `parts`, folded: 0 when a packet's checksum is right.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut acc = 0u32;
    for part in parts {
        for c in part.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// Our SYN's checksums are the real ones (the kernel's own are left partial by veth's offload,
/// so they are not checked).
fn assert_checksums(p: &[u8], v6: bool) {
    if v6 {
        let len = (p.len() as u32 - 40).to_be_bytes();
        let pseudo = [&p[8..40], &len[..], &[0, 0, 0, 6][..], &p[40..]];
        assert_eq!(checksum(&pseudo), 0, "TCP checksum");
    } else {
        assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header checksum");
        let len = (p.len() as u16 - 20).to_be_bytes();
        let pseudo = [&p[12..20], &[0, 6][..], &len[..], &p[20..]];
        assert_eq!(checksum(&pseudo), 0, "TCP checksum");
    }
}

fn hex(p: &[u8]) -> String {
    p.iter().map(|b| format!("{b:02x}")).collect()
}

/// alice sends a kernel SYN and a stealth SYN to `server`; the server's capture compares them.
fn same_shape(lab: &Lab, alice: &str, server: &str) {
    let (alice, server) = (ip(alice), ip(server));
    let v6 = server.is_ipv6();
    let cap = lab
        .server
        .enter(open_capture)
        .expect("enter")
        .expect("AF_PACKET socket in the server's namespace");

    lab.alice
        .enter(move || send_knock(server, Service::tcp(DOOR)))
        .expect("enter")
        .expect("connect()");
    let real = captured_syns(&cap, alice, 1, Duration::from_secs(3));
    assert_eq!(real.len(), 1, "the kernel's SYN was not captured");

    let key = SynKey::from_bytes(core::array::from_fn(|i| 0xA0 ^ i as u8));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let dst = SocketAddr::new(server, DOOR);
    let k = key.clone();
    let sent = lab
        .alice
        .enter(move || knocker::syn::send(&k, dst, SLOT, now))
        .expect("enter")
        .expect("stealth SYN");
    assert_eq!(sent.src, alice);
    assert!(
        sent.guessed.is_empty(),
        "read nothing of: {:?}",
        sent.guessed
    );
    let ours = captured_syns(&cap, alice, 1, Duration::from_secs(3));
    assert_eq!(ours.len(), 1, "the stealth SYN was not captured");
    let (real, ours) = (&real[0], &ours[0]);

    let (differ, compared) = compare(real, ours, v6);
    assert!(
        differ.is_empty(),
        "the stealth SYN differs from the kernel's ({}):\n  {}\nreal {}\nours {}\nshape {:?}",
        if v6 { "IPv6" } else { "IPv4" },
        differ.join("\n  "),
        hex(real),
        hex(ours),
        sent.shape,
    );
    assert_eq!(compared.len(), if v6 { 17 } else { 19 });
    assert_checksums(ours, v6);

    let seen = syn::parse(ours).expect("parses");
    assert_eq!(seen.src_port, sent.src_port);
    assert_eq!(syn::verify(&key, sent.step, &seen), Some(SLOT));
    assert_eq!(syn::verify(&key, sent.step + 1, &seen), None);
    let kernel = syn::parse(real).expect("parses");
    assert_eq!(syn::verify(&key, sent.step, &kernel), None);
    eprintln!(
        "{}: {} fields equal, shape {:?}, src port {}",
        if v6 { "IPv6" } else { "IPv4" },
        compared.len(),
        sent.shape,
        sent.src_port
    );
}

#[test]
fn stealth_syn_looks_like_connect() {
    if !e2e(&[]) {
        return;
    }
    let lab = Lab::new("synshape").expect("lab");
    same_shape(&lab, Lab::ALICE, Lab::SERVER_FOR_ALICE);
    same_shape(&lab, Lab::ALICE6, Lab::SERVER_FOR_ALICE6);
}

/// A host whose shape is not the default: what the client reads must be what the kernel uses.
#[test]
fn stealth_syn_looks_like_connect_on_a_tuned_host() {
    if !e2e(&[]) {
        return;
    }
    let lab = Lab::new("syntuned").expect("lab");
    lab.alice
        .exec("ip", &["link", "set", "eth0", "mtu", "1400"])
        .expect("alice's MTU");
    lab.server
        .exec("ip", &["link", "set", "to-alice", "mtu", "1400"])
        .expect("the server's MTU");
    lab.alice
        .enter(|| -> std::io::Result<()> {
            std::fs::write("/proc/sys/net/ipv4/tcp_rmem", "4096 87380 1048576")?;
            std::fs::write("/proc/sys/net/ipv4/ip_default_ttl", "61")?;
            std::fs::write("/proc/sys/net/ipv6/conf/eth0/hop_limit", "63")
        })
        .expect("enter")
        .expect("alice's sysctls");
    same_shape(&lab, Lab::ALICE, Lab::SERVER_FOR_ALICE);
    same_shape(&lab, Lab::ALICE6, Lab::SERVER_FOR_ALICE6);
}
