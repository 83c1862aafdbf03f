//! The flood's packets, built once before the flood so that the sender does nothing but system
//! calls while it runs: TCP SYNs (the knock flood), or UDP datagrams to an SPA port carrying
//! garbage that looks like an fwknop packet, or real fwknop packets made with another key.
//!
//! Every spoofed source lies inside the lab's ranges (10.200.0.0/16, fd00:200::/48) and outside
//! the addresses the lab's hosts really use, so no flood packet can be mistaken for alice's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// First spoofed IPv4 source: 10.200.100.0 (the lab's hosts live in 10.200.1.0/24).
pub const SPOOF4_BASE: Ipv4Addr = Ipv4Addr::new(10, 200, 100, 0);
/// IPv4 sources available from [`SPOOF4_BASE`] to 10.200.255.255.
pub const SPOOF4_MAX: u32 = 156 * 256;
/// Spoofed IPv6 sources: fd00:200:ff::/64, interface identifiers 1, 2, 3, ...
pub const SPOOF6_PREFIX: [u16; 4] = [0xfd00, 0x0200, 0x00ff, 0];
/// IPv6 sources available (kept to a round, generous bound).
pub const SPOOF6_MAX: u32 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    #[value(name = "ipv4")]
    V4,
    #[value(name = "ipv6")]
    V6,
}

impl Family {
    pub fn max_sources(self) -> u32 {
        match self {
            Family::V4 => SPOOF4_MAX,
            Family::V6 => SPOOF6_MAX,
        }
    }
}

/// The `i`-th spoofed source of a family (`i` < [`Family::max_sources`]).
pub fn spoofed_source(family: Family, i: u32) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::from(SPOOF4_BASE) + i)),
        Family::V6 => {
            let id = u64::from(i) + 1;
            let [a, b, c, d] = SPOOF6_PREFIX;
            IpAddr::V6(Ipv6Addr::new(
                a,
                b,
                c,
                d,
                (id >> 48) as u16,
                (id >> 32) as u16,
                (id >> 16) as u16,
                id as u16,
            ))
        }
    }
}

pub use knocker_lab::packet::{syn, udp};

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// TCP SYNs (knock floods).
    Syn,
    /// UDP datagrams whose payload is random base64 of [`GARBAGE_MIN`] to [`GARBAGE_MAX`]
    /// characters: it passes the cheap checks of fwknopd and knockerd (length, alphabet,
    /// prefix), so each one costs them an HMAC.
    Garbage,
    /// UDP datagrams carrying real fwknop packets made with keys the server does not have
    /// ([`WRONG_KEY`], [`WRONG_HMAC_KEY`]): [`WRONG_KEY_PACKETS`] of them, replayed from the
    /// spoofed sources.
    WrongHmac,
}

impl Payload {
    pub fn name(self) -> &'static str {
        match self {
            Payload::Syn => "syn",
            Payload::Garbage => "garbage",
            Payload::WrongHmac => "wrong-hmac",
        }
    }
}

/// Length bounds of a garbage payload. fwknop's Rijndael packets are 140 to 399 characters of
/// base64; the real ones are about 180 to 250.
pub const GARBAGE_MIN: usize = 180;
pub const GARBAGE_MAX: usize = 300;
/// The distinct packets a datagram flood cycles through (at least one per source): a memory
/// bound for the sender (about 330 bytes each).
pub const DISTINCT_MAX: usize = 1 << 16;
/// Distinct fwknop packets in the wrong-HMAC flood.
pub const WRONG_KEY_PACKETS: usize = 256;
/// The keys the wrong-HMAC flood's packets are made with (not the server's).
pub const WRONG_KEY: &str = "mallory-rijndael-key";
pub const WRONG_HMAC_KEY: &str = "mallory-hmac-key-0123456789";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A small deterministic generator (xorshift64*): the flood is the same from run to run, and
/// needs no entropy.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// Random base64 characters (no `=`), [`GARBAGE_MIN`] to [`GARBAGE_MAX`] of them, never starting
/// with the `U2FsdGVkX1` prefix both daemons drop before any HMAC.
pub fn garbage_payload(rng: &mut Rng) -> Vec<u8> {
    let len = rng.range(GARBAGE_MIN, GARBAGE_MAX);
    let mut p: Vec<u8> = (0..len).map(|_| B64[(rng.next() >> 58) as usize]).collect();
    if p.starts_with(knocker_wire::fwknop::SALTED_PREFIX.as_bytes()) {
        p[0] = b'A';
    }
    p
}

/// `n` real fwknop access requests (tcp/2222, for the packet's source) made with [`WRONG_KEY`]
/// and [`WRONG_HMAC_KEY`], stamped `now_unix`: what a client with an old or wrong key sends.
pub fn wrong_key_payloads(n: usize, now_unix: u64) -> Result<Vec<Vec<u8>>, String> {
    use knocker_wire::fwknop::{self, Digest, FwknopKeys, SpaMessage};
    let keys = FwknopKeys::new(
        fwknop::key_from_text(WRONG_KEY),
        fwknop::key_from_text(WRONG_HMAC_KEY),
        Digest::Sha256,
    )
    .map_err(|e| format!("the wrong-HMAC flood's keys: {e}"))?;
    let msg = SpaMessage::access(
        "mallory",
        now_unix,
        Ipv4Addr::UNSPECIFIED,
        vec![knocker_wire::Service::tcp(2222)],
        None,
    );
    (0..n)
        .map(|_| {
            fwknop::encode(&keys, &msg, getrandom::fill)
                .map(String::into_bytes)
                .map_err(|e| format!("building a wrong-HMAC packet: {e}"))
        })
        .collect()
}

/// The flood's distinct packets, laid out back to back; the sender cycles through them.
pub struct FloodPackets {
    bytes: Vec<u8>,
    /// Where each packet ends in `bytes`.
    ends: Vec<usize>,
}

impl FloodPackets {
    fn with_capacity(count: usize, bytes: usize) -> FloodPackets {
        FloodPackets {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, packet: &[u8]) {
        self.bytes.extend_from_slice(packet);
        self.ends.push(self.bytes.len());
    }

    /// One SYN to `dst_port` from each of `sources` spoofed sources, with varying source ports
    /// and sequence numbers.
    pub fn syns(family: Family, sources: u32, dst: IpAddr, dst_port: u16) -> FloodPackets {
        assert!(sources >= 1 && sources <= family.max_sources());
        let size = syn(spoofed_source(family, 0), dst, 1024, dst_port, 0).len();
        let mut f = FloodPackets::with_capacity(sources as usize, size * sources as usize);
        for i in 0..sources {
            let seq = i.wrapping_mul(2_654_435_761);
            f.push(&syn(
                spoofed_source(family, i),
                dst,
                source_port(i),
                dst_port,
                seq,
            ));
        }
        f
    }

    /// `distinct` UDP datagrams to `dst_port`, the `i`-th from spoofed source `i % sources`
    /// with the payload `payload(i)`.
    pub fn datagrams(
        family: Family,
        sources: u32,
        dst: IpAddr,
        dst_port: u16,
        distinct: usize,
        mut payload: impl FnMut(usize) -> Vec<u8>,
    ) -> FloodPackets {
        assert!(sources >= 1 && sources <= family.max_sources() && distinct >= 1);
        let mut f = FloodPackets::with_capacity(distinct, distinct * (GARBAGE_MAX + 48));
        for i in 0..distinct {
            let src = spoofed_source(family, (i % sources as usize) as u32);
            f.push(&udp(src, dst, source_port(i as u32), dst_port, &payload(i)));
        }
        f
    }

    /// The flood's packets for `payload`: SYNs, or datagrams (for at most `packets` packets,
    /// between `sources` and [`DISTINCT_MAX`] distinct ones).
    pub fn build(
        payload: Payload,
        family: Family,
        sources: u32,
        packets: u64,
        dst: IpAddr,
        dst_port: u16,
    ) -> Result<FloodPackets, String> {
        let distinct = (packets.min(DISTINCT_MAX as u64) as usize).max(sources as usize);
        Ok(match payload {
            Payload::Syn => FloodPackets::syns(family, sources, dst, dst_port),
            Payload::Garbage => {
                let mut rng = Rng::new(0x006b_6e6f_636b_6572);
                FloodPackets::datagrams(family, sources, dst, dst_port, distinct, |_| {
                    garbage_payload(&mut rng)
                })
            }
            Payload::WrongHmac => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let made = wrong_key_payloads(WRONG_KEY_PACKETS, now)?;
                FloodPackets::datagrams(family, sources, dst, dst_port, distinct, |i| {
                    made[i % made.len()].clone()
                })
            }
        })
    }

    pub fn count(&self) -> usize {
        self.ends.len()
    }

    /// The `i`-th packet, cycling.
    pub fn packet(&self, i: usize) -> &[u8] {
        let i = i % self.ends.len();
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// Source ports vary from packet to packet (1024 and up).
pub fn source_port(i: u32) -> u16 {
    1024 + (i.wrapping_mul(7919) % 64000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn parse(p: &[u8]) -> (IpAddr, IpAddr, u16, u16, bool, bool) {
        let s = SlicedPacket::from_ip(p).expect("parses");
        let (src, dst) = match s.net.expect("ip") {
            NetSlice::Ipv4(h) => (
                IpAddr::V4(h.header().source_addr()),
                IpAddr::V4(h.header().destination_addr()),
            ),
            NetSlice::Ipv6(h) => (
                IpAddr::V6(h.header().source_addr()),
                IpAddr::V6(h.header().destination_addr()),
            ),
            _ => panic!("not ip"),
        };
        match s.transport.expect("transport") {
            TransportSlice::Tcp(t) => (
                src,
                dst,
                t.source_port(),
                t.destination_port(),
                t.syn(),
                t.ack(),
            ),
            _ => panic!("not tcp"),
        }
    }

    #[test]
    fn flood_packets_are_syns_from_distinct_sources_in_the_lab_ranges() {
        for (family, dst, n) in [
            (Family::V4, "10.200.1.1", 1000u32),
            (Family::V6, "fd00:200:1::1", 3000),
        ] {
            let dst: IpAddr = dst.parse().expect("addr");
            let f =
                FloodPackets::build(Payload::Syn, family, n, 1_000_000, dst, 7000).expect("builds");
            assert_eq!(f.count(), n as usize);
            let mut seen = std::collections::HashSet::new();
            for i in 0..n as usize {
                let (src, d, _sport, dport, syn, ack) = parse(f.packet(i));
                assert_eq!(d, dst);
                assert_eq!(dport, 7000);
                assert!(syn && !ack);
                match src {
                    IpAddr::V4(a) => {
                        assert_eq!(&a.octets()[..2], &[10, 200]);
                        assert!(a.octets()[2] >= 100, "never a lab host's /24: {a}");
                    }
                    IpAddr::V6(a) => {
                        assert_eq!(&a.segments()[..3], &[0xfd00, 0x0200, 0x00ff]);
                    }
                }
                assert!(seen.insert(src), "duplicate source {src}");
            }
            // the packets cycle
            assert_eq!(f.packet(0), f.packet(n as usize));
        }
    }

    #[test]
    fn the_last_sources_stay_inside_the_ranges() {
        let a = spoofed_source(Family::V4, SPOOF4_MAX - 1);
        assert_eq!(a, "10.200.255.255".parse::<IpAddr>().expect("addr"));
        let b = spoofed_source(Family::V6, 999_999);
        assert_eq!(b, "fd00:200:ff::f:4240".parse::<IpAddr>().expect("addr"));
    }

    /// The source, destination, ports and payload of a UDP datagram.
    fn parse_udp(p: &[u8]) -> (IpAddr, IpAddr, u16, u16, Vec<u8>) {
        let s = SlicedPacket::from_ip(p).expect("parses");
        let (src, dst) = match s.net.expect("ip") {
            NetSlice::Ipv4(h) => (
                IpAddr::V4(h.header().source_addr()),
                IpAddr::V4(h.header().destination_addr()),
            ),
            NetSlice::Ipv6(h) => (
                IpAddr::V6(h.header().source_addr()),
                IpAddr::V6(h.header().destination_addr()),
            ),
            _ => panic!("not ip"),
        };
        match s.transport.expect("transport") {
            TransportSlice::Udp(u) => (
                src,
                dst,
                u.source_port(),
                u.destination_port(),
                u.payload().to_vec(),
            ),
            _ => panic!("not udp"),
        }
    }

    fn door_keys() -> knocker_wire::fwknop::FwknopKeys {
        use knocker_wire::fwknop;
        fwknop::FwknopKeys::new(
            fwknop::key_from_text("the-servers-key"),
            fwknop::key_from_text("the-servers-hmac-key"),
            fwknop::Digest::Sha256,
        )
        .expect("keys")
    }

    #[test]
    fn garbage_passes_the_cheap_checks_and_fails_the_hmac() {
        use knocker_wire::fwknop::{self, FwknopError};
        let mut rng = Rng::new(7);
        let keys = door_keys();
        let mut lengths = std::collections::HashSet::new();
        for _ in 0..2000 {
            let p = garbage_payload(&mut rng);
            assert!((GARBAGE_MIN..=GARBAGE_MAX).contains(&p.len()));
            assert!(!p.contains(&b'='));
            lengths.insert(p.len());
            // what both daemons check before any key: length, alphabet, prefix
            fwknop::precheck(&p).expect("passes the prechecks");
            // and then costs an HMAC, which fails
            let e = fwknop::decode(&keys, &p).expect_err("never authentic");
            assert_eq!(e, FwknopError::BadHmac);
        }
        assert!(lengths.len() > 100, "lengths vary: {}", lengths.len());
    }

    #[test]
    fn wrong_key_packets_are_real_fwknop_packets_that_fail_the_servers_hmac() {
        use knocker_wire::fwknop;
        let made = wrong_key_payloads(8, 1_795_255_200).expect("built");
        let theirs = fwknop::FwknopKeys::new(
            fwknop::key_from_text(WRONG_KEY),
            fwknop::key_from_text(WRONG_HMAC_KEY),
            fwknop::Digest::Sha256,
        )
        .expect("keys");
        let distinct: std::collections::HashSet<&Vec<u8>> = made.iter().collect();
        assert_eq!(
            distinct.len(),
            8,
            "each packet has its own salt and random digits"
        );
        for p in &made {
            let m = fwknop::decode(&theirs, p).expect("a real packet under its own keys");
            assert_eq!(m.timestamp, 1_795_255_200);
            let e = fwknop::decode(&door_keys(), p).expect_err("not under the server's");
            assert_eq!(e, fwknop::FwknopError::BadHmac);
        }
    }

    #[test]
    fn datagram_floods_come_from_the_spoofed_sources_to_the_spa_port() {
        let dst: IpAddr = "10.200.1.1".parse().expect("addr");
        for payload in [Payload::Garbage, Payload::WrongHmac] {
            let f =
                FloodPackets::build(payload, Family::V4, 1000, 5000, dst, 62201).expect("builds");
            assert_eq!(f.count(), 5000);
            let mut sources = std::collections::HashSet::new();
            let mut payloads = std::collections::HashSet::new();
            for i in 0..f.count() {
                let (src, d, _sport, dport, body) = parse_udp(f.packet(i));
                assert_eq!((d, dport), (dst, 62201));
                match src {
                    IpAddr::V4(a) => {
                        assert_eq!(&a.octets()[..2], &[10, 200]);
                        assert!(a.octets()[2] >= 100, "never a lab host's /24: {a}");
                    }
                    IpAddr::V6(a) => panic!("an IPv4 flood: {a}"),
                }
                knocker_wire::fwknop::precheck(&body).expect("looks like SPA");
                sources.insert(src);
                payloads.insert(body);
            }
            assert_eq!(sources.len(), 1000);
            match payload {
                Payload::Garbage => assert_eq!(payloads.len(), 5000),
                _ => assert_eq!(payloads.len(), WRONG_KEY_PACKETS),
            }
            assert_eq!(f.packet(0), f.packet(f.count()));
        }
        // a short flood still covers every source once
        let f =
            FloodPackets::build(Payload::Garbage, Family::V4, 300, 10, dst, 62201).expect("builds");
        assert_eq!(f.count(), 300);
    }
}
