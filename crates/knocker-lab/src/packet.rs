//! Hand-made packets, IP header included, as a raw socket with IP_HDRINCL sends them: for
//! spoofed sources, flag-filter tests and floods. `src` and `dst` must be of the same family
//! (a mix is a bug in the caller, and panics).

use std::net::IpAddr;

use knocker_engine::TcpFlags;

fn ip(
    src: IpAddr,
    dst: IpAddr,
    what: &str,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), 64)
        }
        _ => panic!("{what}: {src} and {dst} are of different families"),
    }
}

/// One TCP segment (no options, no payload) with any flags.
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    flags: TcpFlags,
) -> Vec<u8> {
    let mut b = ip(src, dst, "tcp").tcp(src_port, dst_port, seq, 64240);
    if flags.contains(TcpFlags::FIN) {
        b = b.fin();
    }
    if flags.contains(TcpFlags::SYN) {
        b = b.syn();
    }
    if flags.contains(TcpFlags::RST) {
        b = b.rst();
    }
    if flags.contains(TcpFlags::PSH) {
        b = b.psh();
    }
    if flags.contains(TcpFlags::ACK) {
        b = b.ack(1);
    }
    if flags.contains(TcpFlags::URG) {
        b = b.urg(0);
    }
    let mut packet = Vec::with_capacity(b.size(0));
    b.write(&mut packet, &[])
        .expect("writing to a Vec cannot fail");
    packet
}

/// One TCP SYN (no options).
pub fn syn(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, seq: u32) -> Vec<u8> {
    tcp(src, dst, src_port, dst_port, seq, TcpFlags::SYN)
}

/// One UDP datagram.
pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let b = ip(src, dst, "udp").udp(src_port, dst_port);
    let mut packet = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut packet, payload)
        .expect("writing to a Vec cannot fail");
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_segment_carries_exactly_the_flags_asked_for() {
        for flags in [
            TcpFlags::SYN,
            TcpFlags::SYN.union(TcpFlags::ACK),
            TcpFlags::FIN.union(TcpFlags::PSH).union(TcpFlags::URG),
            TcpFlags::RST,
            TcpFlags(0),
        ] {
            let p = tcp(v4("10.200.9.9"), v4("10.200.1.1"), 40000, 7000, 7, flags);
            let s = etherparse::SlicedPacket::from_ip(&p).expect("parses");
            let Some(etherparse::TransportSlice::Tcp(t)) = s.transport else {
                panic!("not TCP: {p:?}");
            };
            let got = u8::from(t.fin())
                | u8::from(t.syn()) << 1
                | u8::from(t.rst()) << 2
                | u8::from(t.psh()) << 3
                | u8::from(t.ack()) << 4
                | u8::from(t.urg()) << 5;
            assert_eq!(got, flags.0, "{flags:?}");
            assert_eq!((t.source_port(), t.destination_port()), (40000, 7000));
            assert_eq!(t.sequence_number(), 7);
        }
    }

    #[test]
    fn datagrams_keep_their_payload_and_family() {
        let p = udp(
            "fd00:200:1::2".parse().expect("v6"),
            "fd00:200:1::1".parse().expect("v6"),
            5000,
            62201,
            b"spa",
        );
        let s = etherparse::SlicedPacket::from_ip(&p).expect("parses");
        assert!(matches!(s.net, Some(etherparse::NetSlice::Ipv6(_))));
        let Some(etherparse::TransportSlice::Udp(u)) = s.transport else {
            panic!("not UDP: {p:?}");
        };
        assert_eq!(u.payload(), b"spa");
        assert_eq!(u.destination_port(), 62201);
    }

    #[test]
    #[should_panic(expected = "different families")]
    fn mixed_families_are_a_bug() {
        syn(
            v4("10.200.1.2"),
            "fd00:200:1::1".parse().expect("v6"),
            1,
            2,
            0,
        );
    }
}
