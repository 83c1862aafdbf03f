//! The flood's packets: TCP SYNs from spoofed sources, built once before the flood so that the
//! sender does nothing but system calls while it runs.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
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

/// One TCP SYN (no options), IP header included, as a raw socket with IP_HDRINCL sends it.
/// `src` and `dst` must be of the same family.
pub fn syn(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, seq: u32) -> Vec<u8> {
    let builder = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), 64)
        }
        _ => panic!("syn: {src} and {dst} are of different families"),
    };
    let builder = builder.tcp(src_port, dst_port, seq, 64240).syn();
    let mut packet = Vec::with_capacity(builder.size(0));
    builder
        .write(&mut packet, &[])
        .expect("writing to a Vec cannot fail");
    packet
}

/// The flood's distinct packets: one SYN to `dst_port` from each of `sources` spoofed sources,
/// with varying source ports and sequence numbers, laid out back to back (`stride` bytes each).
pub struct FloodPackets {
    pub bytes: Vec<u8>,
    pub stride: usize,
    pub count: usize,
}

impl FloodPackets {
    pub fn build(family: Family, sources: u32, dst: IpAddr, dst_port: u16) -> FloodPackets {
        assert!(sources >= 1 && sources <= family.max_sources());
        let stride = syn(spoofed_source(family, 0), dst, 1024, dst_port, 0).len();
        let mut bytes = Vec::with_capacity(stride * sources as usize);
        for i in 0..sources {
            let src_port = 1024 + (i.wrapping_mul(7919) % 64000) as u16;
            let seq = i.wrapping_mul(2_654_435_761);
            bytes.extend_from_slice(&syn(
                spoofed_source(family, i),
                dst,
                src_port,
                dst_port,
                seq,
            ));
        }
        FloodPackets {
            bytes,
            stride,
            count: sources as usize,
        }
    }

    pub fn packet(&self, i: usize) -> &[u8] {
        let i = i % self.count;
        &self.bytes[i * self.stride..(i + 1) * self.stride]
    }
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
            let f = FloodPackets::build(family, n, dst, 7000);
            assert_eq!(f.count, n as usize);
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
}
