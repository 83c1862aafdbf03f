//! knocker's own single-packet doors on the server, the whole path as the daemon runs it:
//! `Engine::handle_datagram` on an engine whose doors come from `knockerd::config::native::parse` of a
//! configuration with a `kind = "spa"` and a `kind = "syn"` door (server key and clients file
//! written to a temporary directory, `rate_limit = 0` so that the per-source limiter does not
//! hide the cost), events drained inside the loop. One element = one packet.
//!
//! - `spa/garbage`: random bytes of a valid length (refused at the door tag, one HMAC, after the
//!   replay memory's SHA-256 of the raw datagram).
//! - `spa/unenrolled`: datagrams holding the door key but sealed by a key that is not enrolled
//!   (the tag passes, Noise runs, the key is looked up and refused).
//! - `spa/valid`: fresh datagrams from an enrolled client, each granted once.
//! - `syn/garbage/N`: SYNs with a timestamp option and random marks, N enrolled clients (the
//!   door's hint table names about `12 × N / 65536` (client, step) to try, one HMAC each).
//! - `syn/valid/N`: fresh SYNs, each granted once, from the client enrolled last (one HMAC
//!   more; the position no longer matters).
//!
//! Fresh packets are made before the timing (a pool, sealed for a fixed wall clock the engine is
//! set to); each pass over the pool runs on a new engine, so that no packet is seen twice.
//!
//! `cargo bench -p knockerd --bench native` (add `-- --test` for a quick smoke run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use knocker_engine::{Engine, EngineConfig, Event, Knock, Proto, Refusal, TcpFlags};
use knocker_wire::identity::PrivateKey;
use knocker_wire::{spa, syn, Service};
use knockerd::config::Config;

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 1, 1));
const SPA_PORT: u16 = 62201;
const SYN_PORT: u16 = 4443;
const SERVICE: u16 = 2222;
/// The wall clock the engines run on and the packets are made for (2026-11-21).
const WALL: u64 = 1_795_255_200;
const CLIENTS: [usize; 3] = [1, 100, 10_000];
/// Packets per pool: distinct refused packets are cycled; granted ones go to a new engine
/// after each pass.
const GARBAGE_POOL: usize = 1024;
const UNENROLLED_POOL: usize = 64;
const SPA_VALID_POOL: usize = 512;
const SYN_VALID_POOL: usize = 4096;

/// The server's key, `n` enrolled clients (the last one is the client whose packets are
/// valid), and the configuration parsed from files in a temporary directory.
struct Setup {
    server: PrivateKey,
    client: PrivateKey,
    config: Config,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("random");
    b
}

fn setup(n: usize) -> Setup {
    let dir = std::env::temp_dir().join(format!(
        "knocker-bench-native-{}-{n}-{}",
        std::process::id(),
        u32::from_be_bytes(random())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // the keys are read when the configuration is parsed: the files can go at once after
    let _cleanup = RemoveDir(dir.clone());
    let server = PrivateKey::generate().expect("key");
    let key_file = dir.join("server.key");
    std::fs::write(&key_file, server.to_base64().as_bytes()).expect("write key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut clients = String::new();
    let mut client = None;
    for i in 0..n {
        let key = PrivateKey::generate().expect("key");
        clients.push_str(&format!(
            "[client.c{i}]\npublic_key = \"{}\"\n\n",
            key.public_key()
        ));
        client = Some(key);
    }
    let clients_file = dir.join("clients.toml");
    std::fs::write(&clients_file, clients).expect("write clients");
    let text = format!(
        "[daemon]\nserver_key = {:?}\nclients = {:?}\nstate_dir = {:?}\n\n\
         [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{SERVICE}\"]\nrate_limit = 0\n\n\
         [door.syn]\nkind = \"syn\"\nport = {SYN_PORT}\nopen = [\"tcp/{SERVICE}\"]\nrate_limit = 0\n",
        key_file.display().to_string(),
        clients_file.display().to_string(),
        dir.join("state").display().to_string(),
    );
    let config =
        knockerd::config::native::parse(&dir.join("knockerd.toml"), &text).expect("config");
    Setup {
        server,
        client: client.expect("at least one client"),
        config,
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new engine on the configuration's doors, as the daemon builds it, at [`WALL`].
fn engine(config: &Config) -> Engine {
    let (mut engine, _warnings) = Engine::new_compat(EngineConfig {
        doors: config.doors.iter().map(|d| d.spec.clone()).collect(),
        max_tracked: config.max_tracked,
    })
    .expect("engine");
    engine.set_wall_clock(WALL);
    engine
}

/// One packet as the daemon hands it to the engine: the knock (addresses, ports) and the
/// payload (an SPA datagram's UDP payload, a SYN from its IP header on).
struct Packet {
    knock: Knock,
    payload: Vec<u8>,
}

/// A source address in 10.200.0.0/16 for packet `i`.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 200, 2 + (i >> 8) as u8 % 250, i as u8))
}

fn udp(i: usize, payload: Vec<u8>) -> Packet {
    Packet {
        knock: Knock {
            src: source(i),
            dst: SERVER,
            proto: Proto::Udp,
            src_port: 40_000 + (i % 20_000) as u16,
            dst_port: SPA_PORT,
            tcp_flags: TcpFlags::default(),
        },
        payload,
    }
}

fn tcp(l3: Vec<u8>) -> Packet {
    let knock = knockerd::nflog::parse_l3(&l3).expect("a TCP packet");
    Packet { knock, payload: l3 }
}

fn seal(s: &Setup, client: &PrivateKey) -> Vec<u8> {
    let req = spa::Request {
        timestamp: WALL,
        nonce: random(),
        allow: None,
        services: vec![Service::tcp(SERVICE)],
        duration: None,
    };
    spa::seal(
        &req,
        client,
        &s.server.public_key(),
        &s.server.door_key("spa"),
    )
    .expect("seal")
}

fn garbage_spa() -> Vec<Packet> {
    (0..GARBAGE_POOL)
        .map(|i| {
            let r: [u8; 4] = random();
            let len =
                spa::MIN_LEN + (u32::from_be_bytes(r) as usize) % (spa::MAX_LEN - spa::MIN_LEN + 1);
            let mut d = vec![0u8; len];
            getrandom::fill(&mut d).expect("random");
            udp(i, d)
        })
        .collect()
}

fn unenrolled_spa(s: &Setup) -> Vec<Packet> {
    let stranger = PrivateKey::generate().expect("key");
    (0..UNENROLLED_POOL)
        .map(|i| udp(i, seal(s, &stranger)))
        .collect()
}

fn valid_spa(s: &Setup) -> Vec<Packet> {
    (0..SPA_VALID_POOL)
        .map(|i| udp(i, seal(s, &s.client)))
        .collect()
}

fn garbage_syn() -> Vec<Packet> {
    let shape = syn::linux_shape(false, 1500);
    (0..GARBAGE_POOL)
        .map(|i| {
            let r: [u8; 12] = random();
            let marks = syn::Marks {
                seq: u32::from_be_bytes([r[0], r[1], r[2], r[3]]),
                tsval: u32::from_be_bytes([r[4], r[5], r[6], r[7]]),
                id: u32::from(u16::from_be_bytes([r[8], r[9]])),
                slot: 0,
            };
            let sport = 32768 + u16::from_be_bytes([r[10], r[11]]) % 28_000;
            tcp(syn::build(
                source(i),
                SERVER,
                sport,
                SYN_PORT,
                &marks,
                &shape,
            ))
        })
        .collect()
}

/// Distinct valid SYNs from the last enrolled client: each from its own source address.
fn valid_syn(s: &Setup) -> Vec<Packet> {
    let key = s.client.syn_key(&s.server.public_key()).expect("syn key");
    let shape = syn::linux_shape(false, 1500);
    (0..SYN_VALID_POOL)
        .map(|i| {
            let src = source(i);
            let (sport, marks) =
                syn::choose(&key, syn::step(WALL), src, SERVER, SYN_PORT, 0).expect("choose");
            tcp(syn::build(src, SERVER, sport, SYN_PORT, &marks, &shape))
        })
        .collect()
}

fn drain(engine: &mut Engine) {
    while let Some(event) = engine.poll_event() {
        black_box(event);
    }
}

/// What a packet makes a fresh engine decide: checked once, outside the timing, so that each
/// case measures the path it names.
fn outcome(config: &Config, p: &Packet) -> String {
    let mut e = engine(config);
    e.handle_datagram(Instant::now(), &p.knock, &p.payload);
    let mut last = String::from("nothing");
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Grant(g) => last = format!("grant {}", g.to),
            Event::Refused { reason, .. } => {
                last = match reason {
                    Refusal::NotAuthentic => "not authentic".into(),
                    Refusal::UnknownKey => "unknown key".into(),
                    other => format!("refused: {other}"),
                }
            }
            _ => {}
        }
    }
    last
}

fn expect_all(config: &Config, pool: &[Packet], want: &str) {
    for p in pool.iter().take(8) {
        let got = outcome(config, p);
        assert!(got.starts_with(want), "expected {want:?}, got {got:?}");
    }
}

/// Refused packets, cycled on one engine (nothing is remembered of them).
fn bench_refused(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    config: &Config,
    pool: &[Packet],
) {
    let mut engine = engine(config);
    let now = Instant::now();
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            let p = &pool[i % pool.len()];
            i = i.wrapping_add(1);
            engine.handle_datagram(now, black_box(&p.knock), black_box(&p.payload));
            drain(&mut engine);
        });
    });
}

/// Packets granted once each: every pass over the pool runs on a new engine (built outside the
/// timing).
fn bench_granted(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    config: &Config,
    pool: &[Packet],
) {
    let now = Instant::now();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(pool.len() as u64) as usize;
                let mut engine = engine(config);
                let start = Instant::now();
                for p in &pool[..n] {
                    engine.handle_datagram(now, black_box(&p.knock), black_box(&p.payload));
                    drain(&mut engine);
                }
                total += start.elapsed();
                left -= n as u64;
            }
            total
        });
    });
}

fn native(c: &mut Criterion) {
    let mut group = c.benchmark_group("native");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    // SPA: one lookup in a map of enrolled keys, whatever their number
    let s = setup(1);
    let pool = garbage_spa();
    expect_all(&s.config, &pool, "not authentic");
    bench_refused(&mut group, "spa/garbage", &s.config, &pool);
    let pool = unenrolled_spa(&s);
    expect_all(&s.config, &pool, "unknown key");
    bench_refused(&mut group, "spa/unenrolled", &s.config, &pool);
    let pool = valid_spa(&s);
    expect_all(&s.config, &pool, "grant");
    bench_granted(&mut group, "spa/valid", &s.config, &pool);
    drop(s);

    let garbage = garbage_syn();
    for n in CLIENTS {
        let s = setup(n);
        expect_all(&s.config, &garbage, "not authentic");
        bench_refused(&mut group, &format!("syn/garbage/{n}"), &s.config, &garbage);
        let pool = valid_syn(&s);
        expect_all(&s.config, &pool, "grant");
        bench_granted(&mut group, &format!("syn/valid/{n}"), &s.config, &pool);
    }
    group.finish();
}

criterion_group!(benches, native);
criterion_main!(benches);
