//! How many fwknop payloads per second `fwknop::decode` gets through, for what a flood carries and
//! for what a legitimate client sends:
//!
//! - **garbage**: random bytes of a plausible length (140 to 399). Almost all are refused by
//!   the precheck (not base64), at the first byte that is not a base64 character.
//! - **garbage_base64**: random base64 characters of a plausible length: past the precheck, so
//!   each costs one HMAC (the flood a careful attacker sends).
//! - **wrong_hmac**: a real packet with its last HMAC character changed: one HMAC, no decryption.
//! - **valid**: a real packet: HMAC, key derivation, decryption, digest and parsing.
//! - **encode**: building a packet as the client does (random digits and salt from the OS).
//!
//! HMAC-SHA256 (fwknop's default), packets of fwknop's usual size (226 bytes).
//!
//! Then the same for a legacy door (no HMAC key: fwknop's legacy mode), where a base64 payload
//! is decrypted as far as its first two blocks: **garbage_base64** (most lengths are refused
//! before any key is used, not being whole AES blocks), **wrong_key** (a real legacy packet made
//! with another key: what a flood of noise of the right lengths costs), **valid**.
//!
//! `cargo bench -p knocker-wire --bench fwknop` (add `-- --test` for a quick smoke run).

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use knocker_wire::fwknop::{decode, encode, key_from_text, Digest, FwknopKeys, SpaMessage};
use knocker_wire::Service;

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Distinct payloads per case, cycled through, so that branch predictors and caches see a
/// stream rather than one packet.
const POOL: usize = 1024;

fn keys() -> FwknopKeys {
    FwknopKeys::new(
        key_from_text("fwknoptestkey123"),
        key_from_text("fwknophmackey12345678"),
        Digest::Sha256,
    )
    .expect("keys")
}

/// xorshift64*: reproducible garbage without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn len(&mut self) -> usize {
        140 + (self.next() % 260) as usize
    }
}

fn garbage(rng: &mut Rng) -> Vec<u8> {
    let len = rng.len();
    (0..len).map(|_| rng.next() as u8).collect()
}

fn garbage_base64(rng: &mut Rng) -> Vec<u8> {
    let len = rng.len();
    (0..len)
        .map(|_| BASE64[(rng.next() % 64) as usize])
        .collect()
}

fn valid(keys: &FwknopKeys, i: usize) -> Vec<u8> {
    let msg = SpaMessage::access(
        "testuser",
        1_795_260_671 + i as u64,
        Ipv4Addr::new(10, 200, 0, 2),
        vec![Service::tcp(22)],
        None,
    );
    encode(keys, &msg, getrandom::fill)
        .expect("encode")
        .into_bytes()
}

fn wrong_hmac(keys: &FwknopKeys, i: usize) -> Vec<u8> {
    let mut p = valid(keys, i);
    let last = p.len() - 1;
    p[last] = if p[last] == b'A' { b'B' } else { b'A' };
    p
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cases: Vec<(&str, Vec<Vec<u8>>, bool)> = vec![
        (
            "garbage",
            (0..POOL).map(|_| garbage(&mut rng)).collect(),
            false,
        ),
        (
            "garbage_base64",
            (0..POOL).map(|_| garbage_base64(&mut rng)).collect(),
            false,
        ),
        (
            "wrong_hmac",
            (0..POOL).map(|i| wrong_hmac(&keys, i)).collect(),
            false,
        ),
        ("valid", (0..POOL).map(|i| valid(&keys, i)).collect(), true),
    ];

    let mut group = c.benchmark_group("fwknop_decode");
    group.throughput(Throughput::Elements(1));
    for (name, pool, ok) in &cases {
        for p in pool {
            assert_eq!(decode(&keys, p).is_ok(), *ok, "{name}");
        }
        let mut i = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 1) % POOL;
                black_box(decode(&keys, black_box(&pool[i]))).is_ok()
            })
        });
    }
    group.finish();

    // legacy mode (no HMAC): every base64 payload is decrypted before anything can refuse it
    let legacy = FwknopKeys::legacy(key_from_text("fwknoptestkey123")).expect("legacy keys");
    let other = FwknopKeys::legacy(key_from_text("anotherlegacykey")).expect("legacy keys");
    let legacy_cases: Vec<(&str, Vec<Vec<u8>>, bool)> = vec![
        (
            "garbage_base64",
            (0..POOL).map(|_| garbage_base64(&mut rng)).collect(),
            false,
        ),
        (
            "wrong_key",
            (0..POOL).map(|i| valid(&other, i)).collect(),
            false,
        ),
        (
            "valid",
            (0..POOL).map(|i| valid(&legacy, i)).collect(),
            true,
        ),
    ];
    let mut group = c.benchmark_group("fwknop_decode_legacy");
    group.throughput(Throughput::Elements(1));
    for (name, pool, ok) in &legacy_cases {
        for p in pool {
            assert_eq!(decode(&legacy, p).is_ok(), *ok, "legacy {name}");
        }
        let mut i = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 1) % POOL;
                black_box(decode(&legacy, black_box(&pool[i]))).is_ok()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fwknop_encode");
    group.throughput(Throughput::Elements(1));
    let msg = SpaMessage::access(
        "testuser",
        1_795_260_671,
        Ipv4Addr::new(10, 200, 0, 2),
        vec![Service::tcp(22)],
        None,
    );
    group.bench_function("encode", |b| {
        b.iter_batched(
            || msg.clone(),
            |m| encode(&keys, &m, getrandom::fill).expect("encode"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
