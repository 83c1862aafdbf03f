//! CPU per flood packet of what the packet worker does in user space with one NFLOG read: the
//! datagram's messages walked and each packet parsed (`nflog::parse_datagram_with`), the read's
//! table lookups started (`Engine::prefetch`), every knock handled (`Engine::handle`) and the
//! events drained, for BENCHMARKS.md's SYN flood. One iteration = one datagram of 128 SYNs to
//! the door's first port (a kernel batch under a flood, `nflog::FLOOD_QTHRESH`), one element =
//! one packet; the engine has the daemon's default `max_tracked` (100 000).
//!
//! - `worker_path/ipv4_1000`: from 1 000 IPv4 sources over and over (the bench's small flood).
//! - `worker_path/ipv6_1000`: the same from 1 000 IPv6 sources (IPv6's parse and key).
//! - `worker_path/ipv6_new`: every packet from a further IPv6 source (cycling through 256 000,
//!   more than the table holds, so each one is new and evicts the oldest: the large flood).
//!
//! What it leaves out: the `recv` and the wake-up (the kernel's side), the worker's tally.
//! Deterministic under `valgrind --tool=callgrind` (instructions, not time), which is how the
//! SYN flood's candidates were compared.
//!
//! `cargo bench -p knockerd --bench worker_path` (add `-- --test` for a quick smoke run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use knocker_engine::{DoorSpec, Engine, EngineConfig, Service};
use knockerd::nflog::{parse_datagram_with, RecvStats};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{PacketNla, ULogMessage};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

/// Packets per datagram: the kernel's batch under a flood.
const PER_DATAGRAM: u32 = 128;
/// Datagrams prepared per case (cycled).
const DATAGRAMS: u32 = 2_000;
const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 1);

/// One NFLOG packet message as the kernel sends it for knockerd's knock rule.
fn message(packet: Vec<u8>) -> Vec<u8> {
    let mut msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 4100),
            ULogMessage::Packet(vec![
                PacketNla::HwType(1),
                PacketNla::Mark(0),
                PacketNla::Payload(packet),
                PacketNla::Prefix(c"knocker".to_owned()),
            ]),
        )),
    );
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    bytes
}

fn syn(src: IpAddr) -> Vec<u8> {
    let builder = match src {
        IpAddr::V4(a) => PacketBuilder::ipv4(a.octets(), SERVER4.octets(), 64),
        IpAddr::V6(a) => PacketBuilder::ipv6(a.octets(), SERVER6.octets(), 64),
    };
    let mut v = Vec::new();
    builder
        .tcp(40_000, 7000, 1, 64_240)
        .syn()
        .write(&mut v, b"")
        .expect("a SYN");
    v
}

/// The `n`-th spoofed source of a family.
fn source(v6: bool, n: u32) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x200,
            0xff,
            0,
            0,
            0,
            (n >> 16) as u16,
            n as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(10, 200, 100, 0)) + n,
        ))
    }
}

fn datagrams(v6: bool, sources: u32) -> Vec<Vec<u8>> {
    (0..DATAGRAMS)
        .map(|d| {
            (0..PER_DATAGRAM)
                .flat_map(|i| message(syn(source(v6, (d * PER_DATAGRAM + i) % sources))))
                .collect()
        })
        .collect()
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        doors: vec![DoorSpec {
            name: "ssh".to_string(),
            sequence: [7000, 9000, 8000].into_iter().map(Service::tcp).collect(),
            window: Duration::from_secs(10),
            tcp_flags: Some("syn,!ack".parse().expect("valid filter")),
            open: vec![Service::tcp(22)],
            open_for: Duration::from_secs(30),
            kind: knocker_engine::Kind::Sequence,
            target: None,
        }],
        max_tracked: 100_000,
    })
    .expect("valid door")
}

fn worker_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_path");
    g.throughput(Throughput::Elements(u64::from(PER_DATAGRAM)));
    for (name, v6, sources) in [
        ("ipv4_1000", false, 1_000),
        ("ipv6_1000", true, 1_000),
        ("ipv6_new", true, 256_000),
    ] {
        let input = datagrams(v6, sources);
        let mut engine = engine();
        // virtual time: nothing expires while the bench runs
        let now = Instant::now();
        let (mut knocks, mut spa) = (Vec::with_capacity(256), Vec::new());
        let mut next = input.iter().cycle();
        g.bench_function(name, |b| {
            b.iter(|| {
                let datagram = next.next().expect("cycled");
                knocks.clear();
                let mut stats = RecvStats::default();
                parse_datagram_with(black_box(datagram), &mut knocks, &mut spa, &mut stats);
                engine.prefetch(&knocks);
                for k in &knocks {
                    engine.handle(now, k);
                }
                while let Some(event) = engine.poll_event() {
                    black_box(event);
                }
                stats.knocks
            })
        });
    }
    g.finish();
}

criterion_group!(benches, worker_path);
criterion_main!(benches);
