//! What a stealth-SYN door costs the server per SYN, with `keys` enrolled clients and the three
//! time steps a server accepts (previous, current, next):
//!
//! - **verify_garbage**: a SYN that parses (Linux's shape, random sequence number, TSval, ID,
//!   addresses and ports) but carries no one's marks: `parse`, then `verify` for every key and
//!   step, all of which fail. This is the flood: every SYN to the door port costs
//!   `3 × keys` HMAC-SHA256s.
//! - **verify_valid**: a real stealth SYN from the last key, in the current step, after every
//!   other key failed in all three steps (the worst case for a legitimate client).
//!
//! Half the SYNs are IPv4, half IPv6. `cargo bench -p knocker-wire --bench syn` (add `-- --test`
//! for a quick smoke run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use knocker_wire::syn::{build, choose, linux_shape, parse, verify, Marks, SynKey};

/// Distinct SYNs per case, cycled through.
const POOL: usize = 1024;
const KEYS: [usize; 3] = [1, 10, 100];
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

/// What a server does with one SYN: parse, then every key in the previous, current and next
/// step until one verifies.
fn check(keys: &[SynKey], packet: &[u8]) -> Option<(usize, u8)> {
    let seen = parse(packet)?;
    for (k, key) in keys.iter().enumerate() {
        for step in [STEP - 1, STEP, STEP + 1] {
            if let Some(slot) = verify(key, step, &seen) {
                return Some((k, slot));
            }
        }
    }
    None
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let all_keys: Vec<SynKey> = (0..*KEYS.iter().max().unwrap_or(&1))
        .map(|k| SynKey::from_bytes(core::array::from_fn(|i| (k * 31 + i) as u8)))
        .collect();
    let garbage: Vec<Vec<u8>> = (0..POOL).map(|i| garbage(&mut rng, i)).collect();

    let mut group = c.benchmark_group("syn");
    group.throughput(Throughput::Elements(1));
    for n in KEYS {
        let keys = &all_keys[..n];
        for p in &garbage {
            assert_eq!(check(keys, p), None);
        }
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("verify_garbage", n), &keys, |b, keys| {
            b.iter(|| {
                i = (i + 1) % POOL;
                black_box(check(keys, black_box(&garbage[i])))
            })
        });

        let last = &keys[n - 1];
        let pool: Vec<Vec<u8>> = (0..POOL).map(|i| valid(&mut rng, last, i)).collect();
        for (i, p) in pool.iter().enumerate() {
            assert_eq!(check(keys, p), Some((n - 1, (i % 16) as u8)));
        }
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("verify_valid", n), &keys, |b, keys| {
            b.iter(|| {
                i = (i + 1) % POOL;
                black_box(check(keys, black_box(&pool[i])))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
