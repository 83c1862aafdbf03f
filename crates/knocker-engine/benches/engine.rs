//! Throughput of `Engine::handle` with a table already holding 1 000 and 1 000 000 partial knocks
//! from spoofed sources, for a flood of further spoofed sources and for a legitimate knock, and
//! the real memory held per tracked source.
//!
//! `cargo bench -p knocker-engine --bench engine` (add `-- --test` for a quick smoke run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use knocker_engine::{DoorSpec, Engine, EngineConfig, Knock, Service, TcpFlags, MAX_WINDOW};

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const ALICE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
/// Prefilled sources are 10.0.0.0 upward (up to 10.15.66.63 for a million).
const PREFILL_BASE: u32 = u32::from_be_bytes([10, 0, 0, 0]);
/// The flood cycles through 100.64.0.0/10: 4 Mi addresses, more than any table here holds, so
/// in the steady state every flood knock creates an entry and evicts the oldest.
const FLOOD_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
const FLOOD_RANGE: u32 = 1 << 22;
const SIZES: [usize; 2] = [1_000, 1_000_000];
const MEMORY_SOURCES: usize = 1_000_000;
const SEQUENCE: [u16; 3] = [7000, 9000, 8000];
/// Knocks per batch of the batched flood: about what one read of the packet worker gives under
/// an 80 000 packets/s flood (one read per 500 us pause).
const BATCH: usize = 32;

fn door() -> DoorSpec {
    DoorSpec {
        name: "ssh".to_string(),
        sequence: SEQUENCE.iter().map(|p| Service::tcp(*p)).collect(),
        // Long enough that nothing expires while a benchmark runs on virtual time.
        window: MAX_WINDOW,
        tcp_flags: Some("syn,!ack".parse().expect("valid filter")),
        open: vec![Service::tcp(22)],
        open_for: Duration::from_secs(30),
        kind: knocker_engine::Kind::Sequence,
        target: None,
    }
}

fn syn(src: IpAddr, port: u16) -> Knock {
    Knock {
        src,
        dst: SERVER,
        proto: knocker_engine::Proto::Tcp,
        src_port: 40_000,
        dst_port: port,
        tcp_flags: TcpFlags::SYN,
    }
}

fn drain(engine: &mut Engine) {
    while let Some(event) = engine.poll_event() {
        black_box(event);
    }
}

/// An engine holding `n` partial knocks (the first knock of the door) from `n` distinct spoofed
/// sources, with room for as many again.
fn prefilled(n: usize, t0: Instant) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        doors: vec![door()],
        max_tracked: 2 * n,
    })
    .expect("valid door");
    for i in 0..n {
        let src = IpAddr::V4(Ipv4Addr::from(PREFILL_BASE + i as u32));
        engine.handle(t0, &syn(src, SEQUENCE[0]));
        drain(&mut engine);
    }
    assert_eq!(engine.tracked(), n);
    engine
}

/// Checks, outside the timing, that the legitimate knock really opens on this engine.
fn assert_legit_opens(engine: &mut Engine, now: Instant) {
    for port in SEQUENCE {
        engine.handle(now, &syn(ALICE, port));
    }
    let opened = std::iter::from_fn(|| engine.poll_event())
        .any(|e| matches!(e, knocker_engine::Event::Grant(g) if g.to == ALICE));
    assert!(opened, "the legitimate knock must open");
}

/// Resident set size of this process, from `VmRSS` in /proc/self/status.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs first, before any other engine has been built and freed, so that the allocator hands
/// out fresh pages and the RSS difference is the table's own.
fn memory(_c: &mut Criterion) {
    let t0 = Instant::now();
    let before = rss_bytes();
    let engine = prefilled(MEMORY_SOURCES, t0);
    let after = rss_bytes();
    match (before, after) {
        (Some(before), Some(after)) => {
            let grown = after.saturating_sub(before);
            println!(
                "memory: {} tracked sources grew RSS by {:.1} MiB: {:.1} bytes per tracked source \
                 measured, {} estimated by Engine::bytes_per_tracked()",
                engine.tracked(),
                grown as f64 / (1024.0 * 1024.0),
                grown as f64 / MEMORY_SOURCES as f64,
                Engine::bytes_per_tracked(),
            );
        }
        _ => println!(
            "memory: /proc/self/status has no VmRSS here; estimate {} bytes per tracked source",
            Engine::bytes_per_tracked()
        ),
    }
    drop(black_box(engine));
}

fn handle(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for n in SIZES {
        // (a) The flood: each knock is the door's first port from the next spoofed source, so
        // it creates an entry (evicting the oldest once the table is full). Engines are built
        // lazily so that a filtered run does not pay for them.
        let t0 = Instant::now();
        let mut engine = None;
        let mut i: u32 = 0;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("flood/{n}"), |b| {
            let engine = engine.get_or_insert_with(|| prefilled(n, t0));
            b.iter(|| {
                i = i.wrapping_add(1);
                let src = IpAddr::V4(Ipv4Addr::from(FLOOD_BASE + i % FLOOD_RANGE));
                let now = t0 + Duration::from_micros(u64::from(i));
                engine.handle(now, black_box(&syn(src, SEQUENCE[0])));
                drain(engine);
            });
        });
        drop(engine);

        // (a') The same flood in batches of BATCH knocks, each batch prefetched first
        // (`Engine::prefetch`), as knockerd's packet worker hands the engine what one read gave.
        let mut engine = None;
        let mut i: u32 = 0;
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("flood_batch/{n}"), |b| {
            let engine = engine.get_or_insert_with(|| prefilled(n, t0));
            b.iter(|| {
                let batch: [Knock; BATCH] = std::array::from_fn(|_| {
                    i = i.wrapping_add(1);
                    syn(
                        IpAddr::V4(Ipv4Addr::from(FLOOD_BASE + i % FLOOD_RANGE)),
                        SEQUENCE[0],
                    )
                });
                let now = t0 + Duration::from_micros(u64::from(i));
                engine.prefetch(black_box(&batch));
                for k in &batch {
                    engine.handle(now, k);
                }
                drain(engine);
            });
        });
        drop(engine);

        // (b) A legitimate source completing the door: one iteration is the whole sequence.
        let mut engine = None;
        let mut round: u64 = 0;
        group.throughput(Throughput::Elements(SEQUENCE.len() as u64));
        group.bench_function(format!("legit/{n}"), |b| {
            let engine = engine.get_or_insert_with(|| {
                let mut engine = prefilled(n, t0);
                assert_legit_opens(&mut engine, t0);
                engine
            });
            b.iter(|| {
                round += 1;
                let now = t0 + Duration::from_micros(round);
                for port in SEQUENCE {
                    engine.handle(now, black_box(&syn(ALICE, port)));
                }
                drain(engine);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, memory, handle);
criterion_main!(benches);
