//! From a captured frame to what knockerd's NFLOG rules would have handed over: the link-layer
//! header is taken off (Ethernet with up to two VLAN tags, Linux cooked SLL and SLL2, raw IP),
//! and [`Watch`] picks the packets the table would log, as the table would log them.
//!
//! The packet source and `knockerd replay` see every packet, not only those knockerd's table
//! logs, so [`Watch`] does what the table's rules do: packets to a knock port become knocks, UDP
//! datagrams to an SPA port come with their payload, SYNs to a stealth SYN door's port with their
//! headers, each cut to the length NFLOG copies; everything else is not a knock (a sequence door
//! would take a stray packet from a knocking source for a wrong knock). The IP and transport
//! headers are parsed by [`crate::nflog`]'s functions, the ones the NFLOG source uses.
//!
//! Nothing here panics or allocates on hostile input beyond the copy of one SPA payload.

use knocker_engine::{Proto, Service, TcpFlags};

use crate::config::Config;
use crate::nflog::{self, Datagram};

/// The link types knockerd reads: pcap's LINKTYPE_* numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101) and LINKTYPE_IPV4/IPV6 (228, 229): the packet from its IP header on.
    RawIp,
    /// LINKTYPE_LINUX_SLL (113): what `tcpdump -i any` wrote before libpcap 1.10.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): what `tcpdump -i any` writes now.
    LinuxSll2,
}

impl LinkType {
    /// The link type of a pcap file's header or a pcapng interface, if knockerd reads it.
    pub fn from_pcap(linktype: u32) -> Option<LinkType> {
        match linktype {
            1 => Some(LinkType::Ethernet),
            101 | 228 | 229 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The cooked headers' packet type of a packet this host sent (linux/if_packet.h).
const PACKET_OUTGOING: u16 = 4;
/// ARPHRD_LOOPBACK: knockerd's table accepts `iif "lo"` before any knock rule.
const ARPHRD_LOOPBACK: u16 = 772;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The IPv4 or IPv6 packet in a captured frame, or `None` for anything else: another
/// ethertype, a frame cut short, a packet this host sent (the cooked headers say so) or one on
/// the loopback interface, which knockerd's table never logs.
pub fn l3(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    let (ethertype, rest) = match link {
        LinkType::RawIp => return ip_version_ok(frame),
        LinkType::Ethernet => {
            let mut ethertype = be16(frame, 12)?;
            let mut at = 14;
            // at most two tags (802.1ad outer, 802.1Q inner): a bound, not a loop over input
            for _ in 0..2 {
                if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
                    break;
                }
                ethertype = be16(frame, at + 2)?;
                at += 4;
            }
            (ethertype, frame.get(at..)?)
        }
        LinkType::LinuxSll => {
            let (pkttype, hatype) = (be16(frame, 0)?, be16(frame, 2)?);
            if pkttype == PACKET_OUTGOING || hatype == ARPHRD_LOOPBACK {
                return None;
            }
            (be16(frame, 14)?, frame.get(16..)?)
        }
        LinkType::LinuxSll2 => {
            let (hatype, pkttype) = (be16(frame, 8)?, u16::from(*frame.get(10)?));
            if pkttype == PACKET_OUTGOING || hatype == ARPHRD_LOOPBACK {
                return None;
            }
            (be16(frame, 0)?, frame.get(20..)?)
        }
    };
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => ip_version_ok(rest),
        _ => None,
    }
}

fn ip_version_ok(packet: &[u8]) -> Option<&[u8]> {
    match packet.first()? >> 4 {
        4 | 6 => Some(packet),
        _ => None,
    }
}

/// What a watched packet is to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A knock: `Engine::handle`.
    Knock(knocker_engine::Knock),
    /// An SPA datagram or a stealth SYN, with what the engine reads of it:
    /// `Engine::handle_datagram`.
    Datagram(Datagram),
}

/// The ports knockerd's table logs, and how: [`Watch::classify`] hands over what NFLOG would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    knock: Vec<Service>,
    ranges: Vec<(Proto, u16, u16)>,
    spa: Vec<u16>,
    syn: Vec<u16>,
}

impl Watch {
    /// Knock ports, port spans (protocol, first, last), SPA (UDP) and SYN door (TCP) ports.
    pub fn new(
        knock: Vec<Service>,
        ranges: Vec<(Proto, u16, u16)>,
        spa: Vec<u16>,
        syn: Vec<u16>,
    ) -> Watch {
        Watch {
            knock,
            ranges,
            spa,
            syn,
        }
    }

    pub fn from_config(c: &Config) -> Watch {
        Watch {
            knock: c.knock_services(),
            ranges: c.knock_ranges(),
            spa: c.spa_ports(),
            syn: c.syn_ports(),
        }
    }

    /// Every (protocol, first port, last port) watched, for the packet socket's BPF filter.
    pub fn spans(&self) -> Vec<(Proto, u16, u16)> {
        let mut v: Vec<(Proto, u16, u16)> = self
            .knock
            .iter()
            .map(|s| (s.proto, s.port, s.port))
            .chain(self.ranges.iter().copied())
            .chain(self.spa.iter().map(|p| (Proto::Udp, *p, *p)))
            .chain(self.syn.iter().map(|p| (Proto::Tcp, *p, *p)))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// What the table's rules would log of this packet (from its IP header on), in their
    /// order: a knock port's packet as a knock, an SPA port's UDP datagram with its payload, a
    /// stealth SYN door's SYN with its headers; `None` for a packet no rule logs.
    pub fn classify(&self, packet: &[u8]) -> Option<Seen> {
        let head = packet.get(..usize::from(crate::ruleset::SNAPLEN).min(packet.len()))?;
        let knock = nflog::parse_l3(head)?;
        let service = knock.service();
        let in_range =
            |&(p, a, b): &(Proto, u16, u16)| p == service.proto && (a..=b).contains(&service.port);
        if self.knock.contains(&service) || self.ranges.iter().any(in_range) {
            return Some(Seen::Knock(knock));
        }
        if service.proto == Proto::Udp && self.spa.contains(&service.port) {
            let copied = packet.get(..usize::from(nflog::SPA_SNAPLEN).min(packet.len()))?;
            let (knock, payload) = nflog::parse_l3_udp_payload(copied)?;
            return Some(Seen::Datagram(Datagram {
                knock,
                payload: payload.to_vec(),
            }));
        }
        // `tcp flags & (syn | ack) == syn`, as the SYN door's rule says
        let syn_only = knock.tcp_flags.0 & (TcpFlags::SYN.0 | TcpFlags::ACK.0) == TcpFlags::SYN.0;
        if service.proto == Proto::Tcp && self.syn.contains(&service.port) && syn_only {
            return Some(Seen::Datagram(Datagram {
                knock,
                payload: head.to_vec(),
            }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn watch() -> Watch {
        Watch {
            knock: vec![Service::tcp(7000), Service::udp(9000)],
            ranges: vec![(Proto::Tcp, 40000, 40999)],
            spa: vec![62201],
            syn: vec![2222],
        }
    }

    fn tcp4(dport: u16, syn: bool, ack: bool) -> Vec<u8> {
        let mut b =
            PacketBuilder::ipv4([10, 200, 1, 2], [10, 200, 1, 1], 64).tcp(40000, dport, 1, 64240);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(5);
        }
        let mut v = Vec::new();
        b.write(&mut v, b"").expect("write");
        v
    }

    fn udp6(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5353, dport)
            .write(&mut v, payload)
            .expect("write");
        v
    }

    fn ethernet(ethertype: u16, tags: &[u16], packet: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02; 12];
        for t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0, 7]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    #[test]
    fn link_layers_are_taken_off() {
        let p = tcp4(7000, true, false);
        assert_eq!(l3(LinkType::RawIp, &p), Some(&p[..]));
        assert_eq!(
            l3(LinkType::Ethernet, &ethernet(ETHERTYPE_IPV4, &[], &p)),
            Some(&p[..])
        );
        let tagged = ethernet(ETHERTYPE_IPV4, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN], &p);
        assert_eq!(l3(LinkType::Ethernet, &tagged), Some(&p[..]));
        assert_eq!(
            l3(LinkType::Ethernet, &ethernet(0x0806, &[], &p)),
            None,
            "ARP"
        );
        // SLL: pkttype 0 (to us), hatype 1, halen 6, address, protocol
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&p);
        assert_eq!(l3(LinkType::LinuxSll, &sll), Some(&p[..]));
        sll[1] = 4;
        assert_eq!(l3(LinkType::LinuxSll, &sll), None, "outgoing");
        // SLL2: protocol, reserved, ifindex, hatype, pkttype, halen, address
        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0,
        ];
        let q = udp6(9000, b"x");
        sll2.extend_from_slice(&q);
        assert_eq!(l3(LinkType::LinuxSll2, &sll2), Some(&q[..]));
        sll2[8..10].copy_from_slice(&ARPHRD_LOOPBACK.to_be_bytes());
        assert_eq!(l3(LinkType::LinuxSll2, &sll2), None, "loopback");
        // cut short anywhere: no packet, no panic
        for cut in 0..20 {
            assert_eq!(l3(LinkType::LinuxSll2, &sll2[..cut]), None);
            assert_eq!(l3(LinkType::LinuxSll, &sll[..cut.min(16)]), None);
            assert_eq!(l3(LinkType::Ethernet, &tagged[..cut.min(22)]), None);
        }
        assert_eq!(l3(LinkType::RawIp, &[0x11, 0, 0]), None, "not IP");
    }

    #[test]
    fn only_what_the_table_logs_is_a_knock() {
        let w = watch();
        let knock = |p: &[u8]| match w.classify(p) {
            Some(Seen::Knock(k)) => Some(k.service()),
            _ => None,
        };
        assert_eq!(knock(&tcp4(7000, true, false)), Some(Service::tcp(7000)));
        assert_eq!(knock(&tcp4(40500, true, false)), Some(Service::tcp(40500)));
        assert_eq!(knock(&udp6(9000, b"")), Some(Service::udp(9000)));
        assert_eq!(w.classify(&tcp4(22, true, false)), None, "not a knock port");
        assert_eq!(
            w.classify(&udp6(7000, b"")),
            None,
            "knock port of another protocol"
        );
        let spa = b"an spa packet".to_vec();
        match w.classify(&udp6(62201, &spa)) {
            Some(Seen::Datagram(d)) => assert_eq!(d.payload, spa),
            other => panic!("{other:?}"),
        }
        let syn = tcp4(2222, true, false);
        match w.classify(&syn) {
            Some(Seen::Datagram(d)) => assert_eq!(d.payload, syn, "the SYN with its headers"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            w.classify(&tcp4(2222, true, true)),
            None,
            "a SYN-ACK is no SYN knock"
        );
        assert_eq!(w.classify(&tcp4(2222, false, true)), None);
    }

    #[test]
    fn an_spa_payload_is_cut_where_nflog_cuts_it() {
        let p = udp6(62201, &[7; 3000]);
        match watch().classify(&p) {
            Some(Seen::Datagram(d)) => {
                assert_eq!(d.payload.len(), usize::from(nflog::SPA_SNAPLEN) - 48)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spans_cover_every_watched_port() {
        assert_eq!(
            watch().spans(),
            vec![
                (Proto::Tcp, 2222, 2222),
                (Proto::Tcp, 7000, 7000),
                (Proto::Tcp, 40000, 40999),
                (Proto::Udp, 9000, 9000),
                (Proto::Udp, 62201, 62201)
            ]
        );
    }
}
