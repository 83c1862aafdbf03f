//! What knocker's SPA costs the server, for what a flood carries and for what a client sends:
//!
//! - **garbage_rejected**: random datagrams of random valid lengths (256 to 1200 bytes) through
//!   `check_tag`: one HMAC-SHA256 each, what a flood without the door key costs.
//! - **valid_opened**: real datagrams through `check_tag` and `open`: the HMAC, the Noise X
//!   handshake (two X25519, two ChaCha20-Poly1305), the low-order check on the client's key
//!   (a comparison with a list) and the parser, with the server's public key derived each time.
//! - **valid_received**: the same through a `Receiver` made once with the client enrolled, as
//!   the daemon's door runs it: `ss` comes from its table, so one X25519 per datagram.
//! - **unenrolled_received**: a client the receiver has no `ss` for: two X25519.
//! - **seal**: making a datagram as the client does (a fresh ephemeral key, random length).
//!
//! `cargo bench -p knocker-wire --bench spa` (add `-- --test` for a quick smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use knocker_wire::identity::{DoorKey, PrivateKey, PublicKey};
use knocker_wire::spa::{check_tag, open, seal, Receiver, Request, MAX_LEN, MIN_LEN};
use knocker_wire::Service;

/// Distinct datagrams per case, cycled through, so that caches and branch predictors see a
/// stream rather than one packet.
const POOL: usize = 256;

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

fn garbage(rng: &mut Rng) -> Vec<u8> {
    let len = MIN_LEN + (rng.next() % (MAX_LEN - MIN_LEN + 1) as u64) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

fn request(i: usize) -> Request {
    Request {
        timestamp: 1_795_260_671 + i as u64,
        nonce: core::array::from_fn(|j| (i + j) as u8),
        allow: None,
        services: vec![Service::tcp(22)],
        duration: None,
    }
}

struct Keys {
    client: PrivateKey,
    server: PrivateKey,
    server_pub: PublicKey,
    door: DoorKey,
}

fn bench(c: &mut Criterion) {
    let server = PrivateKey::from_bytes(core::array::from_fn(|i| 0x40 + i as u8));
    let k = Keys {
        client: PrivateKey::from_bytes(core::array::from_fn(|i| i as u8)),
        server_pub: server.public_key(),
        door: server.door_key("ssh"),
        server,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let garbage: Vec<Vec<u8>> = (0..POOL).map(|_| garbage(&mut rng)).collect();
    let valid: Vec<Vec<u8>> = (0..POOL)
        .map(|i| seal(&request(i), &k.client, &k.server_pub, &k.door).expect("seal"))
        .collect();
    for d in &garbage {
        assert!(!check_tag(&k.door, d));
    }
    for d in &valid {
        assert!(check_tag(&k.door, d) && open(d, &k.server, &k.door).is_ok());
    }

    let mut group = c.benchmark_group("spa");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("garbage_rejected", |b| {
        b.iter(|| {
            i = (i + 1) % POOL;
            black_box(check_tag(&k.door, black_box(&garbage[i])))
        })
    });
    let mut i = 0;
    group.bench_function("valid_opened", |b| {
        b.iter(|| {
            i = (i + 1) % POOL;
            let d = black_box(&valid[i]);
            check_tag(&k.door, d) && black_box(open(d, &k.server, &k.door)).is_ok()
        })
    });
    let receiver = Receiver::new(&k.server, &k.door, [&k.client.public_key()]).expect("receiver");
    let mut i = 0;
    group.bench_function("valid_received", |b| {
        b.iter(|| {
            i = (i + 1) % POOL;
            let d = black_box(&valid[i]);
            check_tag(&k.door, d) && black_box(receiver.open(d)).is_ok()
        })
    });
    let stranger = Receiver::new(&k.server, &k.door, []).expect("receiver");
    let mut i = 0;
    group.bench_function("unenrolled_received", |b| {
        b.iter(|| {
            i = (i + 1) % POOL;
            let d = black_box(&valid[i]);
            check_tag(&k.door, d) && black_box(stranger.open(d)).is_ok()
        })
    });
    let req = request(0);
    group.bench_function("seal", |b| {
        b.iter(|| seal(black_box(&req), &k.client, &k.server_pub, &k.door).expect("seal"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
