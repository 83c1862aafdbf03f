//! What a stealth-SYN door costs the server per SYN, with `keys` enrolled clients and the three
//! time steps a server accepts (previous, current, next), through [`HintTable`] as knockerd
//! uses it:
//!
//! - **verify_garbage**: a SYN that parses (Linux's shape, random sequence number, TSval, ID,
//!   addresses and ports) but carries no one's marks: `parse`, then `HintTable::find`, which
//!   tries only the (client, step, j) whose hint equals the SYN's (about `12 × keys / 65536`),
//!   one HMAC each. This is the flood.
//! - **verify_valid**: a real stealth SYN from the last key, in the current step: the same, plus
//!   the HMAC that matches.
//! - **step_change**: `HintTable::advance` by one step: the old step dropped and the new step's
//!   hints computed (`4 × keys` HMACs) and indexed. Paid once every 30 s, by the first SYN of a
//!   step.
//!
//! The tables are made before the timing. Half the SYNs are IPv4, half IPv6.
//! `cargo bench -p knocker-wire --bench syn` (add `-- --test` for a quick smoke run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use knocker_wire::syn::{build, choose, linux_shape, parse, HintTable, Marks, SynKey};

/// Distinct SYNs per case, cycled through.
const POOL: usize = 1024;
const KEYS: [usize; 4] = [1, 100, 10_000, 100_000];
/// Clients for the step-change case.
const REBUILD_KEYS: [usize; 2] = [10_000, 100_000];
const STEP: u64 = 57_000_000;

/// xorshift64*: reproducible garbage without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn addrs(rng: &mut Rng, i: usize) -> (IpAddr, IpAddr) {
    if i % 2 == 0 {
        (
            IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        )
    } else {
        let a = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 1;
        (
            IpAddr::V6(Ipv6Addr::from(a)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        )
    }
}

fn garbage(rng: &mut Rng, i: usize) -> Vec<u8> {
    let (src, dst) = addrs(rng, i);
    let marks = Marks {
        seq: rng.next() as u32,
        tsval: rng.next() as u32,
        id: rng.next() as u32 & if src.is_ipv4() { 0xFFFF } else { 0xF_FFFF },
        slot: 0,
    };
    let port = 32768 + (rng.next() % 28232) as u16;
    build(
        src,
        dst,
        port,
        443,
        &marks,
        &linux_shape(src.is_ipv6(), 1500),
    )
}

fn valid(rng: &mut Rng, key: &SynKey, i: usize) -> Vec<u8> {
    let (src, dst) = addrs(rng, i);
    let (port, marks) = choose(key, STEP, src, dst, 443, (i % 16) as u8).expect("choose");
    build(
        src,
        dst,
        port,
        443,
        &marks,
        &linux_shape(src.is_ipv6(), 1500),
    )
}

/// What a server does with one SYN: parse, then the table, in the current step.
fn check(table: &mut HintTable, packet: &[u8]) -> Option<(usize, u8)> {
    let seen = parse(packet)?;
    table.find(STEP, &seen).map(|f| (f.client, f.slot))
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let all_keys: Vec<SynKey> = (0..*KEYS.iter().max().unwrap_or(&1))
        .map(|k| {
            // Distinct for every k (the key's first 8 bytes are k).
            let mut bytes = [0x5a; 32];
            bytes[..8].copy_from_slice(&(k as u64).to_le_bytes());
            SynKey::from_bytes(bytes)
        })
        .collect();
    let garbage: Vec<Vec<u8>> = (0..POOL).map(|i| garbage(&mut rng, i)).collect();

    let mut group = c.benchmark_group("syn");
    group.throughput(Throughput::Elements(1));
    for n in KEYS {
        let mut table = HintTable::new(all_keys[..n].to_vec(), 1).expect("table");
        table.advance(STEP);
        for p in &garbage {
            assert_eq!(check(&mut table, p), None);
        }
        let mut i = 0;
        group.bench_function(BenchmarkId::new("verify_garbage", n), |b| {
            b.iter(|| {
                i = (i + 1) % POOL;
                black_box(check(&mut table, black_box(&garbage[i])))
            })
        });

        let last = &all_keys[n - 1];
        let pool: Vec<Vec<u8>> = (0..POOL).map(|i| valid(&mut rng, last, i)).collect();
        for (i, p) in pool.iter().enumerate() {
            assert_eq!(check(&mut table, p), Some((n - 1, (i % 16) as u8)));
        }
        let mut i = 0;
        group.bench_function(BenchmarkId::new("verify_valid", n), |b| {
            b.iter(|| {
                i = (i + 1) % POOL;
                black_box(check(&mut table, black_box(&pool[i])))
            })
        });
    }
    group.finish();

    // Tens to hundreds of milliseconds an iteration: ten equal samples.
    let mut group = c.benchmark_group("syn");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in REBUILD_KEYS {
        let mut table = HintTable::new(all_keys[..n].to_vec(), 1).expect("table");
        let mut now = STEP;
        table.advance(now);
        group.bench_function(BenchmarkId::new("step_change", n), |b| {
            b.iter(|| {
                now += 1;
                table.advance(black_box(now));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
