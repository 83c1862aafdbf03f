//! The packet socket source (`[source] kind = "packet"`): an AF_PACKET socket that sees knocks
//! on one interface without any logging rule, for hosts where knockerd must not own logging
//! (as knockd does with pcap).
//!
//! The socket is `SOCK_DGRAM` (the kernel hands over the packet from its IP header on) for every
//! protocol, with a classic BPF filter attached before it is used, so that the kernel queues
//! only what a door watches: packets that arrived on the configured interface, addressed to this
//! host (not sent by it), IPv4 or IPv6, TCP or UDP (IPv4: first fragments only; IPv6: without
//! extension headers), to a watched port; and of each, at most [`nflog::SPA_SNAPLEN`] bytes. What
//! was queued before the filter was attached is read and dropped at once. Userspace checks the
//! interface and the packet type again ([`nix::sys::socket::LinkAddr`]), and [`Watch`] picks
//! what knockerd's table would log, exactly as for NFLOG and replays.
//!
//! The socket needs CAP_NET_RAW to be opened, not to be read: the worker opens it as root and
//! then drops privilege, as it does for NFLOG. Everything on the wire that passes the filter is
//! hostile input, parsed by the same bounded code as NFLOG's ([`crate::nflog::parse_l3`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use knocker_engine::{Knock, Proto};
use nix::sys::socket::LinkAddr;
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use super::frame::{Seen, Watch};
use crate::nflog::{self, Datagram, RecvStats, MAX_DATAGRAMS_PER_BATCH};

/// Receive buffer asked of the kernel: room for a burst of knocks.
const RCVBUF_BYTES: usize = 4 << 20;
/// Bytes read of each packet: the filter already cuts them to [`nflog::SPA_SNAPLEN`].
const RECV_BUF_BYTES: usize = 2048;
/// linux/if_ether.h
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
/// linux/if_packet.h: a packet addressed to this host.
const PACKET_HOST: u8 = 0;

// Classic BPF (linux/filter.h, linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IMM: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;
/// The kernel's limit on a classic BPF program's length.
const BPF_MAXINSNS: usize = 4096;
/// Ancillary loads: SKF_AD_OFF (-0x1000) plus the field.
const SKF_AD_PROTOCOL: u32 = 0xffff_f000;
const SKF_AD_PKTTYPE: u32 = 0xffff_f004;
const SKF_AD_IFINDEX: u32 = 0xffff_f008;

/// A classic BPF instruction as (code, jump if true, jump if false, k); jumps count the
/// instructions skipped.
type Insn = (u16, u8, u8, u32);

/// The filter for a packet socket of type `SOCK_DGRAM` (offset 0 is the IP header): accepts, cut
/// to [`nflog::SPA_SNAPLEN`] bytes, TCP and UDP packets that arrived on interface `ifindex`,
/// addressed to this host, to one of the `(protocol, first port, last port)` spans; rejects
/// everything else. With more spans than a program can hold, it accepts every TCP and UDP
/// packet of the interface (userspace still picks the watched ones).
///
/// No scratch memory is used (the kernel's checker would follow a `ret` into the next
/// instruction and refuse a load it cannot prove stored): A holds the transport protocol and
/// then the port, X the transport header's offset. Long jumps are `ja`, whose offset is 32 bits.
pub fn filter(ifindex: u32, spans: &[(Proto, u16, u16)]) -> Vec<Insn> {
    let accept: Insn = (BPF_RET | BPF_K, 0, 0, u32::from(nflog::SPA_SNAPLEN));
    let reject: Insn = (BPF_RET | BPF_K, 0, 0, 0);
    let mut p: Vec<Insn> = vec![
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_IFINDEX),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 13, ifindex), // else reject (15)
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_PKTTYPE),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 11, u32::from(PACKET_HOST)),
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_AD_PROTOCOL),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 5, ETH_P_IP), // else to IPv6 (11)
        // IPv4: a first fragment; X = header length, A = protocol
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 6),
        (BPF_JMP | BPF_JSET | BPF_K, 7, 0, 0x1fff),
        (BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 9),
        (BPF_JMP | BPF_JA, 0, 0, 5), // to the transport (16)
        // IPv6 without extension headers: X = 40, A = next header
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 3, ETH_P_IPV6),
        (BPF_LDX | BPF_W | BPF_IMM, 0, 0, 40),
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 6),
        (BPF_JMP | BPF_JA, 0, 0, 1),
        reject, // 15
        // 16: TCP or UDP, each to its own block of spans
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 6),
        (BPF_JMP | BPF_JA, 0, 0, 0), // to the TCP block, set below
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 17),
        (BPF_JMP | BPF_JA, 0, 0, 0), // to the UDP block, set below
        reject,
    ];
    let room = (BPF_MAXINSNS - p.len() - 4) / 3;
    for (proto, ja) in [(Proto::Tcp, 17), (Proto::Udp, 19)] {
        let at = p.len();
        p[ja].3 = u32::try_from(at - ja - 1).unwrap_or(0);
        if spans.len() > room {
            p.push(accept);
            continue;
        }
        // A = destination port; each span is first <= port <= last, its jumps within its own
        // three instructions
        p.push((BPF_LD | BPF_H | BPF_IND, 0, 0, 2));
        for &(_, first, last) in spans.iter().filter(|s| s.0 == proto) {
            p.push((BPF_JMP | BPF_JGE | BPF_K, 0, 2, u32::from(first)));
            p.push((BPF_JMP | BPF_JGT | BPF_K, 1, 0, u32::from(last)));
            p.push(accept);
        }
        p.push(reject);
    }
    p
}

/// An AF_PACKET socket on one interface, filtered for the watched ports, non-blocking.
pub struct PacketSource {
    socket: Socket,
    ifindex: u32,
    interface: String,
    watch: Watch,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PacketSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSource")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .finish_non_exhaustive()
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl PacketSource {
    /// Opens the socket on `interface` (needs CAP_NET_RAW), attaches the filter for what
    /// `watch` watches, and drops whatever was queued before the filter was in place.
    pub fn bind(interface: &str, watch: Watch) -> io::Result<PacketSource> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| with_context(e.into(), &format!("no interface {interface:?}")))?;
        let socket = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => io::Error::new(
                e.kind(),
                format!("opening a packet socket needs root or CAP_NET_RAW (run knockerd as root, as its systemd unit does): {e}"),
            ),
            _ => with_context(e, "cannot open a packet socket"),
        })?;
        let program: Vec<SockFilter> = filter(ifindex, &watch.spans())
            .into_iter()
            .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
            .collect();
        socket
            .attach_filter(&program)
            .map_err(|e| with_context(e, "cannot attach the packet filter"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| with_context(e, "cannot make the packet socket non-blocking"))?;
        // a larger buffer is a wish; the default is enough for knocks
        let _ = socket.set_recv_buffer_size(RCVBUF_BYTES);
        let mut source = PacketSource {
            socket,
            ifindex,
            interface: interface.to_string(),
            watch,
            buf: vec![0; RECV_BUF_BYTES],
        };
        // packets queued between socket() and the filter were not filtered: drop them
        loop {
            match source.recv_one() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(with_context(e, "cannot read the packet socket")),
            }
        }
        Ok(source)
    }

    /// The interface it listens on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// One packet: its length in `buf` and where it came from; `None` when none is queued.
    fn recv_one(&mut self) -> io::Result<Option<(usize, Option<LinkAddr>)>> {
        loop {
            match nix::sys::socket::recvfrom::<LinkAddr>(self.socket.as_raw_fd(), &mut self.buf) {
                Ok(r) => return Ok(Some(r)),
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads every queued packet without blocking (at most [`MAX_DATAGRAMS_PER_BATCH`]), pushing
    /// the knocks to `out` and SPA datagrams and stealth SYNs to `spa`, as
    /// [`crate::nflog::NflogSource::recv_batch_with`] does. A packet no door watches, from
    /// another interface or not to this host is counted as malformed and dropped.
    pub fn recv_batch_with(
        &mut self,
        out: &mut Vec<Knock>,
        spa: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        let mut stats = RecvStats::default();
        for _ in 0..MAX_DATAGRAMS_PER_BATCH {
            let Some((n, from)) = self.recv_one()? else {
                break;
            };
            let ours = from.is_some_and(|a| {
                u32::try_from(a.ifindex()) == Ok(self.ifindex) && a.pkttype() == PACKET_HOST
            });
            let packet = &self.buf[..n.min(self.buf.len())];
            match ours.then(|| self.watch.classify(packet)).flatten() {
                Some(Seen::Knock(k)) => {
                    out.push(k);
                    stats.knocks += 1;
                }
                Some(Seen::Datagram(d)) => {
                    spa.push(d);
                    stats.knocks += 1;
                }
                None => stats.malformed += 1,
            }
        }
        Ok(stats)
    }
}

impl AsFd for PacketSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump lands inside the program, and it ends in a return (what the kernel's checker
    /// also demands; the e2e test attaches it for real).
    fn well_formed(p: &[Insn]) {
        assert!(p.len() <= BPF_MAXINSNS);
        for (i, &(code, jt, jf, k)) in p.iter().enumerate() {
            if code & 0x07 == BPF_JMP {
                let targets = if code == BPF_JMP | BPF_JA {
                    vec![i + 1 + k as usize]
                } else {
                    vec![i + 1 + usize::from(jt), i + 1 + usize::from(jf)]
                };
                assert!(targets.iter().all(|t| *t < p.len()), "jump at {i}");
            }
        }
        assert_eq!(p.last().map(|i| i.0), Some(BPF_RET | BPF_K));
    }

    /// A tiny interpreter of the instructions the filter uses, over a packet and its metadata.
    fn run(p: &[Insn], packet: &[u8], ifindex: u32, pkttype: u32, protocol: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: u32, size: usize| -> Option<u32> {
            match at {
                SKF_AD_IFINDEX => Some(ifindex),
                SKF_AD_PKTTYPE => Some(pkttype),
                SKF_AD_PROTOCOL => Some(protocol),
                _ => {
                    let b = packet.get(at as usize..at as usize + size)?;
                    Some(b.iter().fold(0, |v, b| (v << 8) | u32::from(*b)))
                }
            }
        };
        loop {
            let (code, jt, jf, k) = p[pc];
            pc += 1;
            let size = match code & 0x18 {
                BPF_H => 2,
                BPF_B => 1,
                _ => 4,
            };
            match code & 0x07 {
                BPF_RET => return k,
                BPF_LDX if code & 0xe0 == BPF_MSH => match packet.get(k as usize) {
                    Some(b) => x = 4 * (u32::from(*b) & 0xf),
                    None => return 0,
                },
                BPF_LDX => x = k,
                BPF_LD => {
                    let at = if code & 0xe0 == BPF_IND { x + k } else { k };
                    match load(at, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                BPF_JMP => {
                    let taken = match code & 0xf0 {
                        BPF_JA => {
                            pc += k as usize;
                            continue;
                        }
                        BPF_JEQ => a == k,
                        BPF_JGT => a > k,
                        BPF_JGE => a >= k,
                        BPF_JSET => a & k != 0,
                        _ => panic!("unexpected jump {code:#x}"),
                    };
                    pc += usize::from(if taken { jt } else { jf });
                }
                _ => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    fn packet(v6: bool, udp: bool, dport: u16) -> Vec<u8> {
        let b = if v6 {
            etherparse::PacketBuilder::ipv6([1; 16], [2; 16], 64)
        } else {
            etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        };
        let mut v = Vec::new();
        if udp {
            b.udp(5000, dport).write(&mut v, b"payload").expect("write");
        } else {
            b.tcp(5000, dport, 1, 100)
                .syn()
                .write(&mut v, b"")
                .expect("write");
        }
        v
    }

    #[test]
    fn the_filter_passes_watched_ports_on_the_interface_only() {
        let spans = [
            (Proto::Tcp, 7000, 7000),
            (Proto::Udp, 9000, 9000),
            (Proto::Tcp, 40000, 40999),
        ];
        let p = filter(3, &spans);
        well_formed(&p);
        let keep = u32::from(nflog::SPA_SNAPLEN);
        for v6 in [false, true] {
            let proto = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
            let go = |udp, port| run(&p, &packet(v6, udp, port), 3, 0, proto);
            assert_eq!(go(false, 7000), keep, "v6={v6}");
            assert_eq!(go(true, 9000), keep);
            assert_eq!(go(false, 40000), keep);
            assert_eq!(go(false, 40999), keep);
            assert_eq!(go(false, 41000), 0);
            assert_eq!(go(false, 39999), 0);
            assert_eq!(go(true, 7000), 0, "the wrong protocol");
            assert_eq!(go(false, 9000), 0);
            assert_eq!(go(false, 22), 0);
            // another interface, a packet this host sent, not IP
            assert_eq!(run(&p, &packet(v6, false, 7000), 4, 0, proto), 0);
            assert_eq!(run(&p, &packet(v6, false, 7000), 3, 4, proto), 0);
            assert_eq!(run(&p, &packet(v6, false, 7000), 3, 0, 0x0806), 0);
        }
        // a later IPv4 fragment has no transport header
        let mut frag = packet(false, false, 7000);
        frag[7] = 8;
        assert_eq!(run(&p, &frag, 3, 0, ETH_P_IP), 0);
        // IPv4 options move the transport header (IHL 6)
        let mut opts = packet(false, false, 7000);
        opts[0] = 0x46;
        opts.splice(20..20, [1, 1, 1, 1]);
        assert_eq!(run(&p, &opts, 3, 0, ETH_P_IP), keep);
        // a short packet is rejected, not read past its end
        assert_eq!(
            run(&p, &packet(false, false, 7000)[..21], 3, 0, ETH_P_IP),
            0
        );
    }

    #[test]
    fn too_many_spans_fall_back_to_every_tcp_and_udp_packet() {
        let spans: Vec<(Proto, u16, u16)> = (0..2000).map(|i| (Proto::Tcp, i * 2, i * 2)).collect();
        let p = filter(1, &spans);
        well_formed(&p);
        assert_eq!(
            run(&p, &packet(false, false, 1), 1, 0, ETH_P_IP),
            u32::from(nflog::SPA_SNAPLEN)
        );
        assert_eq!(
            run(&p, &packet(true, true, 1), 1, 0, ETH_P_IPV6),
            u32::from(nflog::SPA_SNAPLEN)
        );
        assert_eq!(run(&p, &packet(true, true, 1), 2, 0, ETH_P_IPV6), 0);
    }
}
