//! A fleet of servers with one replay memory (`[daemon] shared_state`), end to end: two real
//! knockerd servers, A and B, with the same server key, clients and door keys, each in a lab
//! of its own (the same addresses in both, as behind anycast), and a real Debian
//! `redis-server` in a third namespace with an ACL user limited to knocker's keys. alice opens
//! A with knocker SPA, a stealth SYN, fwknop, HOTP, TOTP, one-time and encoded doors; the very
//! packets and knocks, replayed at B, open nothing there, and a HOTP counter, a TOTP step and a
//! one-time line used at A are refused at B. With redis-server killed,
//! a `refuse` door refuses and a `local` door opens on B's own memory with its warning; after
//! redis-server restarts empty, claims are fleet-wide again, and what the fresh store forgot
//! (a request used at A before the restart, never seen by B) opens B once, as SECURITY.md says.
//! Needs root, iproute2, nftables, fwknop-client, redis-server and (for TLS) openssl.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use knocker_lab::TempDir;
use knocker_wire::encoded::{self, EncodedSpec};
use knocker_wire::identity::PrivateKey;
use knocker_wire::rotate::{self, RotateSpec};
use knocker_wire::{spa, syn, EncodedKey, Proto, RotateKey, Service};
use knockerd::fleet::{Claim, Claimed, RedisStore, SharedState, Store};

const SPA_PORT: u16 = 62201;
const LOCAL_PORT: u16 = 62203;
const FWKNOP_PORT: u16 = 62202;
const SYN_PORT: u16 = 4443;
const KEY: &str = "fwknoptestkey123";
const HMAC: &str = "fwknophmackey12345678";
const ROTATE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PASSWORD: &str = "fleet-pw-7f3a9c";

/// Debian's redis-server in `netns`, with no persistence and one ACL user (`knocker`), killed
/// by its pid on drop.
struct Redis {
    child: Child,
    log: Log,
}

impl Redis {
    fn start(netns: &Netns, dir: &TempDir, bind: &[&str]) -> Redis {
        let conf = dir.write(
            "redis.conf",
            &format!(
                "port 6379\nbind {}\nprotected-mode no\nsave \"\"\nappendonly no\ndaemonize no\ndir {}\n\
                 user default off\n\
                 user knocker on >{PASSWORD} ~knocker:* -@all +get +set +exists +evalsha +eval +script|load +select\n",
                bind.join(" "),
                dir.path().display()
            ),
        );
        let mut child = netns
            .command("redis-server")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start redis-server");
        let log = Log::echoed("redis");
        log.capture(&mut child, |_| {});
        let mut r = Redis { child, log };
        if let Err(e) = r.log.wait_for(
            "Ready to accept connections",
            Duration::from_secs(10),
            Some(&mut r.child),
        ) {
            panic!("redis-server did not start: it {e}");
        }
        r
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn send_raw(from: &Netns, packet: Vec<u8>, dst: &str) {
    let dst = ip(dst);
    from.enter(move || knocker_lab::send_raw_ip(&packet, dst))
        .expect("enter")
        .expect("raw send");
}

fn knock_services(from: &Netns, host: &str, knocks: Vec<Service>) {
    let host = ip(host);
    from.enter(move || {
        for k in knocks {
            send_knock(host, k)?;
            std::thread::sleep(Duration::from_millis(15));
        }
        Ok::<(), std::io::Error>(())
    })
    .expect("enter")
    .expect("knock");
}

/// The files both servers share (as configuration management would give them): the server
/// key, the clients file, fwknop's and the HOTP door's keys, the store's password.
struct Fleet {
    dir: TempDir,
    server: PrivateKey,
    alice: PrivateKey,
}

impl Fleet {
    fn new() -> Fleet {
        use base64::Engine as _;
        let dir = TempDir::new("fleet");
        let server = PrivateKey::generate().expect("key");
        let alice = PrivateKey::generate().expect("key");
        dir.private("server.key", &server.to_base64());
        dir.write(
            "clients.toml",
            &format!("[client.alice]\npublic_key = \"{}\"\n", alice.public_key()),
        );
        let b64 = |k: &str| base64::engine::general_purpose::STANDARD.encode(k);
        dir.private("enc.key", &b64(KEY));
        dir.private("hmac.key", &b64(HMAC));
        dir.private("hotp.key", ROTATE_KEY);
        dir.private("redis.pass", &format!("{PASSWORD}\n"));
        // each server marks its own copy of the one-time lines
        for server in ["a", "b"] {
            dir.write(
                &format!("onetime-{server}.seq"),
                " 7000,9000:udp,8000\n 6000,6200,6100\n",
            );
        }
        Fleet { dir, server, alice }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Server A's or B's configuration: the same doors, the store at `redis`.
    fn config(&self, server: &str, redis: &str) -> String {
        format!(
            "[daemon]\nnflog_group = 4100\nserver_key = {:?}\nclients = {:?}\n\
             shared_state = \"redis://knocker@{redis}:6379/\"\nshared_state_password_file = {:?}\n\n\
             [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\nmax_age = 60\n\n\
             [door.spal]\nkind = \"spa\"\nport = {LOCAL_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\nmax_age = 60\nshared_state_down = \"local\"\n\n\
             [door.syn]\nkind = \"syn\"\nport = {SYN_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\n\n\
             [door.fwk]\nkind = \"fwknop\"\nport = {FWKNOP_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\nkey_file = {:?}\nhmac_key_file = {:?}\n\n\
             [door.hotp]\nkind = \"rotating\"\nmode = \"hotp\"\nkey_file = {:?}\nknocks = 4\nports = \"40000-40999\"\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\n\n\
             [door.totp]\nkind = \"rotating\"\nmode = \"totp\"\nkey_file = {:?}\nknocks = 4\nports = \"41000-41999\"\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\n\n\
             [door.once]\nkind = \"one-time\"\none_time_sequences = {:?}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\n\n\
             [door.enc]\nkind = \"encoded\"\nkey_file = {:?}\nbase = 50000\nbits = 12\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 60\n",
            self.path("server.key"),
            self.path("clients.toml"),
            self.path("redis.pass"),
            self.path("enc.key"),
            self.path("hmac.key"),
            self.path("hotp.key"),
            self.path("hotp.key"),
            self.path(&format!("onetime-{server}.seq")),
            self.path("hotp.key"),
        )
    }

    /// alice's encoded request for tcp/SERVICE, as the ports she knocks.
    fn encoded(&self) -> Vec<Service> {
        let key = EncodedKey::from_base64(ROTATE_KEY).expect("key");
        let spec = EncodedSpec::new(50000, 12, Proto::Tcp).expect("spec");
        let req = encoded::Request {
            allow: ip(Lab::ALICE),
            services: vec![Service::tcp(SERVICE)],
            duration_secs: 20,
            unix_time: now(),
        };
        encoded::encode(&key, &spec, &req, encoded::random_nonce().expect("nonce"))
            .expect("encode")
            .into_iter()
            .map(Service::tcp)
            .collect()
    }

    /// alice's SPA request for door `door`, sealed now.
    fn spa(&self, door: &str) -> Vec<u8> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("random");
        let req = spa::Request {
            timestamp: now(),
            nonce,
            allow: None,
            services: vec![Service::tcp(SERVICE)],
            duration: None,
        };
        spa::seal(
            &req,
            &self.alice,
            &self.server.public_key(),
            &self.server.door_key(door),
        )
        .expect("seal")
    }

    /// alice's stealth SYN to the SYN door, from alice's address to the server's.
    fn syn(&self) -> Vec<u8> {
        let (src, dst) = (ip(Lab::ALICE), ip(Lab::SERVER_FOR_ALICE));
        let key = self
            .alice
            .syn_key(&self.server.public_key())
            .expect("syn key");
        let (sport, marks) =
            syn::choose(&key, syn::step(now()), src, dst, SYN_PORT, 0).expect("choose");
        syn::build(
            src,
            dst,
            sport,
            SYN_PORT,
            &marks,
            &syn::linux_shape(false, 1500),
        )
    }

    /// The HOTP door's knocks for `counter`.
    fn hotp(&self, counter: u64) -> Vec<Service> {
        rotating("40000-40999", counter)
    }

    /// The TOTP door's knocks for time step `step`.
    fn totp(&self, step: u64) -> Vec<Service> {
        rotating("41000-41999", step)
    }
}

/// A rotating door's knocks over `ports` for `counter` (a HOTP counter or a TOTP step).
fn rotating(ports: &str, counter: u64) -> Vec<Service> {
    let key = RotateKey::from_base64(ROTATE_KEY).expect("key");
    let spec =
        RotateSpec::new(4, rotate::parse_ports(ports).expect("ports"), Proto::Tcp).expect("spec");
    rotate::sequence(&key, &spec, counter)
}

/// One server of the fleet: a lab of its own (alice, mallory and the server, at the usual
/// addresses) and its knockerd.
struct Server {
    daemon: Knockerd,
    lab: Lab,
}

impl Server {
    fn grants(&self) -> Vec<knockerd::ruleset::LiveGrant> {
        self.lab
            .server
            .enter(knockerd::ruleset::live_grants)
            .expect("enter")
            .expect("list grants")
    }

    fn wait_grants(&self, n: usize) -> Vec<knockerd::ruleset::LiveGrant> {
        let end = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let g = self.grants();
            if g.len() == n || std::time::Instant::now() > end {
                return g;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log holds `needle` `n` times.
    fn wait_count(&self, needle: &str, n: usize) {
        let end = std::time::Instant::now() + Duration::from_secs(3);
        while self.daemon.log().matches(needle).count() < n && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.daemon.log().matches(needle).count() >= n,
            "expected {n} x {needle:?} in the log:\n{}",
            self.daemon.log()
        );
    }

    /// Removes every grant (so that the next one is seen as a grant, not a refresh).
    fn flush(&self) {
        self.lab
            .server
            .nft("flush set inet knocker allow4\n")
            .expect("flush");
    }

    fn metrics(&self) -> String {
        std::fs::read_to_string(state_dir(&self.lab).join("metrics.prom")).unwrap_or_default()
    }

    fn wait_metric(&self, line: &str) {
        let end = std::time::Instant::now() + Duration::from_secs(4);
        while !self.metrics().contains(line) && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.metrics().contains(line),
            "{line} in\n{}",
            self.metrics()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(state_dir(&self.lab));
    }
}

/// A lab for one server, linked to the store's namespace at 10.200.`net`.1 (the store) and
/// .2 (the server).
fn server(tag: &str, store_ns: &Netns, net: u8, fleet: &Fleet) -> Server {
    let lab = Lab::new(tag).expect("lab");
    let store = format!("10.200.{net}.1");
    knocker_lab::netns::link(
        store_ns,
        &format!("to-{tag}"),
        &[&format!("{store}/24")],
        &lab.server,
        "to-store",
        &[&format!("10.200.{net}.2/24")],
    )
    .expect("link the store");
    let listener = lab
        .server
        .enter(|| std::net::TcpListener::bind(("::", SERVICE)))
        .expect("enter")
        .expect("listen");
    echo_service(listener);
    let daemon = Knockerd::start(&lab, &fleet.config(&tag[2..], &store));
    Server { daemon, lab }
}

#[test]
fn a_fleet_shares_one_replay_memory_and_each_policy_holds_while_the_store_is_down() {
    if !e2e(&["fwknop", "redis-server"]) {
        return;
    }
    let fleet = Fleet::new();
    let store_ns = Netns::unique("flr").expect("store namespace");
    let redis_dir = TempDir::new("fleet-redis");
    let store_addrs = ["10.200.60.1", "10.200.61.1"];
    // the links first: redis binds to their addresses
    let a = server("fla", &store_ns, 60, &fleet);
    let b = server("flb", &store_ns, 61, &fleet);
    let redis = Redis::start(&store_ns, &redis_dir, &store_addrs);
    assert!(
        a.daemon
            .log()
            .contains("shared_state redis://knocker:***@10.200.60.1:6379/0 (password from"),
        "{}",
        a.daemon.log()
    );
    assert!(
        !a.daemon.log().contains(PASSWORD),
        "the password is never logged"
    );
    let check = a
        .lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .args(["check", "--config"])
        .arg(&a.daemon.config)
        .output()
        .expect("check");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        said.contains("redis://knocker:***@10.200.60.1:6379/0"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");

    // knocker SPA: alice opens A; mallory replays the datagram at B from her own address
    let pkt = fleet.spa("spa");
    send_udp(&a.lab.alice, Lab::SERVER_FOR_ALICE, SPA_PORT, pkt.clone());
    let g = a.wait_grants(1);
    assert_eq!(g.len(), 1, "{g:?}\n{}", a.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE);
    send_udp(
        &b.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        SPA_PORT,
        pkt.clone(),
    );
    b.daemon.wait_log(
        &format!("door=spa src={} grant refused: replay digest", Lab::MALLORY),
        Duration::from_secs(3),
    );
    b.wait_count("was used on another server of the fleet", 1);
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    // a request of alice's own to B opens it: the store refuses only what was used
    send_udp(
        &b.lab.alice,
        Lab::SERVER_FOR_ALICE,
        SPA_PORT,
        fleet.spa("spa"),
    );
    assert_eq!(b.wait_grants(1).len(), 1, "{}", b.daemon.log());
    b.flush();
    a.flush();
    // a second request used at A only, for after the store's restart
    let unseen_by_b = fleet.spa("spa");
    send_udp(
        &a.lab.alice,
        Lab::SERVER_FOR_ALICE,
        SPA_PORT,
        unseen_by_b.clone(),
    );
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    a.flush();

    // the stealth SYN: the same packet, seen on its way to A, sent to B (same addresses)
    let synpkt = fleet.syn();
    send_raw(&a.lab.alice, synpkt.clone(), Lab::SERVER_FOR_ALICE);
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    send_raw(&b.lab.alice, synpkt, Lab::SERVER_FOR_ALICE);
    b.wait_count("was used on another server of the fleet", 2);
    assert!(b
        .daemon
        .log()
        .contains("door=syn src=10.200.1.2 grant refused: replay digest"));
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    a.flush();

    // fwknop, from Debian's client: the same bytes at B
    let fwk = fwknop_packet(
        &a.lab.alice,
        Lab::SERVER_FOR_ALICE,
        Lab::ALICE,
        &fleet.dir.join("fwknop-packet"),
        KEY,
        HMAC,
    );
    send_udp(
        &a.lab.alice,
        Lab::SERVER_FOR_ALICE,
        FWKNOP_PORT,
        fwk.clone(),
    );
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    send_udp(&b.lab.alice, Lab::SERVER_FOR_ALICE, FWKNOP_PORT, fwk);
    b.wait_count("was used on another server of the fleet", 3);
    assert!(b
        .daemon
        .log()
        .contains("door=fwk src=10.200.1.2 grant refused: replay digest"));
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    a.flush();

    // HOTP: counter 0 opens A; the same knocks at B are refused; counter 1 opens B
    knock_services(&a.lab.alice, Lab::SERVER_FOR_ALICE, fleet.hotp(0));
    a.daemon
        .wait_log("door=hotp used counter 0", Duration::from_secs(3));
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    knock_services(&b.lab.alice, Lab::SERVER_FOR_ALICE, fleet.hotp(0));
    b.daemon.wait_log(
        "door=hotp src=10.200.1.2 grant refused: hotp 0 was used on another server of the fleet",
        Duration::from_secs(3),
    );
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    knock_services(&b.lab.alice, Lab::SERVER_FOR_ALICE, fleet.hotp(1));
    b.daemon
        .wait_log("door=hotp used counter 1", Duration::from_secs(3));
    assert_eq!(b.wait_grants(1).len(), 1, "{}", b.daemon.log());
    b.flush();
    a.flush();

    // TOTP: the step used at A is refused at B (within the door's skew of one step either
    // side, so whatever step B is in); the next step opens B
    let step = rotate::time_step(now(), 30);
    knock_services(&a.lab.alice, Lab::SERVER_FOR_ALICE, fleet.totp(step));
    a.daemon.wait_log(
        &format!("door=totp used time step {step}"),
        Duration::from_secs(3),
    );
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    knock_services(&b.lab.alice, Lab::SERVER_FOR_ALICE, fleet.totp(step));
    b.daemon.wait_log(
        &format!("door=totp src=10.200.1.2 grant refused: totp {step} was used on another server of the fleet"),
        Duration::from_secs(3),
    );
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    knock_services(&b.lab.alice, Lab::SERVER_FOR_ALICE, fleet.totp(step + 1));
    b.daemon.wait_log(
        &format!("door=totp used time step {}", step + 1),
        Duration::from_secs(3),
    );
    assert_eq!(b.wait_grants(1).len(), 1, "{}", b.daemon.log());
    b.flush();
    a.flush();

    // a one-time line used at A is used up at B too; the next line opens B
    let line1: Vec<Service> = ["7000", "9000:udp", "8000"]
        .iter()
        .map(|s| s.parse().expect("knock"))
        .collect();
    knock_services(&a.lab.alice, Lab::SERVER_FOR_ALICE, line1.clone());
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    knock_services(&b.lab.mallory, Lab::SERVER_FOR_MALLORY, line1);
    b.daemon.wait_log(
        "door=once src=10.200.2.2 grant refused: one-time line 1 was used on another server of the fleet",
        Duration::from_secs(3),
    );
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    let line2: Vec<Service> = ["6000", "6200", "6100"]
        .iter()
        .map(|s| s.parse().expect("knock"))
        .collect();
    knock_services(&b.lab.alice, Lab::SERVER_FOR_ALICE, line2);
    assert_eq!(b.wait_grants(1).len(), 1, "{}", b.daemon.log());
    b.flush();
    a.flush();

    // an encoded request: the very knocks, replayed at B from alice's address
    let enc = fleet.encoded();
    knock_services(&a.lab.alice, Lab::SERVER_FOR_ALICE, enc.clone());
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    knock_services(&b.lab.alice, Lab::SERVER_FOR_ALICE, enc);
    b.daemon.wait_log(
        "door=enc src=10.200.1.2 grant refused: replay digest",
        Duration::from_secs(3),
    );
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    a.flush();
    b.wait_metric("knockerd_shared_state_claims_total{result=\"taken\"} 7");

    // the store dies: the refuse door refuses, the local door opens on B's own memory
    redis.kill();
    send_udp(
        &b.lab.alice,
        Lab::SERVER_FOR_ALICE,
        SPA_PORT,
        fleet.spa("spa"),
    );
    b.daemon.wait_log(
        "door=spa src=10.200.1.2 grant refused: cannot reach the shared store",
        Duration::from_secs(3),
    );
    b.daemon.wait_log(
        "shared store redis://knocker:***@10.200.61.1:6379/0",
        Duration::from_secs(1),
    );
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    let local = fleet.spa("spal");
    send_udp(
        &b.lab.alice,
        Lab::SERVER_FOR_ALICE,
        LOCAL_PORT,
        local.clone(),
    );
    b.daemon.wait_log(
        "door=spal: THE SHARED STORE IS DOWN: granting on this host's own replay memory alone",
        Duration::from_secs(3),
    );
    assert_eq!(b.wait_grants(1).len(), 1, "{}", b.daemon.log());
    b.flush();
    // per-host protection still holds: the same packet again is B's own replay
    send_udp(&b.lab.mallory, Lab::SERVER_FOR_MALLORY, LOCAL_PORT, local);
    b.daemon.wait_log(
        &format!("door=spal src={} refused: a replay", Lab::MALLORY),
        Duration::from_secs(3),
    );
    // a second local grant in the same outage: no second warning
    send_udp(
        &b.lab.alice,
        Lab::SERVER_FOR_ALICE,
        LOCAL_PORT,
        fleet.spa("spal"),
    );
    assert_eq!(b.wait_grants(1).len(), 1, "{}", b.daemon.log());
    assert_eq!(
        b.daemon.log().matches("THE SHARED STORE IS DOWN").count(),
        1
    );
    b.flush();
    // and the refuse door keeps refusing (a replay of A's, too)
    send_udp(&b.lab.mallory, Lab::SERVER_FOR_MALLORY, SPA_PORT, pkt);
    b.wait_count("door=spa src=10.200.2.2", 2);
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    b.wait_metric("knockerd_shared_state_up 0");
    b.wait_metric("knockerd_shared_state_claims_total{result=\"down_local\"} 2");
    b.wait_metric("knockerd_shared_state_outages_total 1");

    // the store restarts empty: after the breaker's second, claims are fleet-wide again
    let _redis = Redis::start(&store_ns, &redis_dir, &store_addrs);
    std::thread::sleep(Duration::from_millis(1200));
    let fresh = fleet.spa("spa");
    send_udp(&a.lab.alice, Lab::SERVER_FOR_ALICE, SPA_PORT, fresh.clone());
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    send_udp(&b.lab.mallory, Lab::SERVER_FOR_MALLORY, SPA_PORT, fresh);
    b.wait_count("was used on another server of the fleet", 8);
    b.daemon.wait_log("is back after", Duration::from_secs(1));
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    // What a fresh store forgets: a request used at A before the restart and never seen by B
    // opens B, once (within its max_age), as SECURITY.md says; B's own memory takes it then.
    send_udp(
        &b.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        SPA_PORT,
        unseen_by_b.clone(),
    );
    let g = b.wait_grants(1);
    assert_eq!(g.len(), 1, "{}", b.daemon.log());
    assert_eq!(g[0].to, Lab::MALLORY);
    b.flush();
    send_udp(
        &b.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        SPA_PORT,
        unseen_by_b,
    );
    b.daemon.wait_log(
        &format!("door=spa src={} refused: a replay", Lab::MALLORY),
        Duration::from_secs(3),
    );
    assert!(b.grants().is_empty(), "{:?}", b.grants());
    b.wait_metric("knockerd_shared_state_up 1");

    // a reload with a store URL that is wrong is refused, and the running store kept
    let conf = std::fs::read_to_string(&a.daemon.config).expect("config");
    std::fs::write(
        &a.daemon.config,
        conf.replace("redis://knocker@", "http://knocker@"),
    )
    .expect("write config");
    a.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    a.daemon.wait_log(
        "reload refused, keeping the running configuration",
        Duration::from_secs(3),
    );
    assert!(a
        .daemon
        .log()
        .contains("shared_state must start with redis://"));
    a.flush();
    let after = fleet.spa("spa");
    send_udp(&a.lab.alice, Lab::SERVER_FOR_ALICE, SPA_PORT, after.clone());
    assert_eq!(a.wait_grants(1).len(), 1, "{}", a.daemon.log());
    send_udp(&b.lab.alice, Lab::SERVER_FOR_ALICE, SPA_PORT, after);
    b.wait_count("was used on another server of the fleet", 9);
}

/// The claim script itself against the real redis-server: all of a set or none, digests once,
/// counters only forward (exactly, past 2^53), ACL user limited to knocker's keys.
#[test]
fn the_claim_script_claims_all_or_nothing_and_counters_only_move_forward() {
    if !e2e(&["redis-server"]) {
        return;
    }
    let ns = Netns::unique("flscript").expect("namespace");
    let dir = TempDir::new("fleet-script");
    let _redis = Redis::start(&ns, &dir, &["127.0.0.1"]);
    let ok = ns
        .enter(|| {
            let shared =
                SharedState::parse_url(&format!("redis://knocker:{PASSWORD}@127.0.0.1:6379/"))
                    .expect("url");
            let mut store = RedisStore::new(&shared).expect("store");
            let digest = |b: u8| Claim::Digest {
                door: "spa".into(),
                digest: [b; 32],
                until_unix: now() + 60,
            };
            let hotp = |value| Claim::Forward {
                door: "hotp".into(),
                what: "hotp",
                value,
            };
            let mut said = Vec::new();
            let mut claim = |claims: &[Claim]| {
                let r = store.claim(claims).map_err(|e| e.to_string());
                said.push(format!("{r:?}"));
                r
            };
            assert_eq!(claim(&[digest(1), digest(2)]), Ok(Claimed::Yes));
            // digest 2 was made: the set is refused, and digest 3 was not made with it
            assert_eq!(claim(&[digest(3), digest(2)]), Ok(Claimed::Taken(1)));
            assert_eq!(claim(&[digest(3)]), Ok(Claimed::Yes));
            assert_eq!(claim(&[hotp(5)]), Ok(Claimed::Yes));
            assert_eq!(claim(&[hotp(5)]), Ok(Claimed::Taken(0)));
            assert_eq!(claim(&[hotp(4)]), Ok(Claimed::Taken(0)));
            assert_eq!(claim(&[hotp(6)]), Ok(Claimed::Yes));
            let big = (1u64 << 53) + 1;
            assert_eq!(claim(&[hotp(big)]), Ok(Claimed::Yes));
            assert_eq!(
                claim(&[hotp(big - 1)]),
                Ok(Claimed::Taken(0)),
                "exact past 2^53"
            );
            assert_eq!(claim(&[hotp(big + 1)]), Ok(Claimed::Yes));
            let line = Claim::Once {
                door: "notes".into(),
                line: 3,
            };
            assert_eq!(claim(std::slice::from_ref(&line)), Ok(Claimed::Yes));
            assert_eq!(claim(&[line]), Ok(Claimed::Taken(0)));
            // a digest whose time is up already needs no claim
            let past = Claim::Digest {
                door: "spa".into(),
                digest: [9; 32],
                until_unix: 1,
            };
            assert_eq!(claim(&[past]), Ok(Claimed::Yes));
            // a wrong password: refused, and the error never shows the password
            let bad =
                SharedState::parse_url("redis://knocker:wrong-pw@127.0.0.1:6379/").expect("url");
            let e = RedisStore::new(&bad)
                .expect("store")
                .claim(&[digest(7)])
                .expect_err("wrong password");
            assert!(!e.to_string().contains("wrong-pw"), "{e}");
            said
        })
        .expect("enter");
    assert_eq!(ok.len(), 13, "{ok:?}");
}

/// Runs openssl with these arguments in `dir`, asserting that it succeeded.
fn openssl(dir: &TempDir, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rediss://`: the store's certificate is checked against `shared_state_ca_file`'s authority
/// (with rustls on AWS-LC); one that another authority signed is refused, so nothing is claimed.
#[test]
fn a_tls_store_is_checked_against_its_authority() {
    if !e2e(&["redis-server", "openssl"]) {
        return;
    }
    let dir = TempDir::new("fleet-tls");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (key, pem, subj) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN=knocker test {ca}"),
        );
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        openssl(&dir, &args);
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&dir, &args);
    dir.write(
        "ext.cnf",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let ns = Netns::unique("fltls").expect("namespace");
    let conf = dir.write(
        "redis.conf",
        &format!(
            "port 0\ntls-port 6380\nbind 127.0.0.1\nprotected-mode no\nsave \"\"\nappendonly no\ndir {0}\n\
             tls-cert-file {0}/srv.pem\ntls-key-file {0}/srv.key\ntls-ca-cert-file {0}/ca.pem\ntls-auth-clients no\n\
             user default off\nuser knocker on >{PASSWORD} ~knocker:* -@all +get +set +exists +evalsha +eval +script|load +select\n",
            dir.path().display()
        ),
    );
    let mut child = ns
        .command("redis-server")
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redis-server");
    let log = Log::echoed("redis");
    log.capture(&mut child, |_| {});
    let mut redis = Redis { child, log };
    if let Err(e) = redis.log.wait_for(
        "Ready to accept connections",
        Duration::from_secs(10),
        Some(&mut redis.child),
    ) {
        panic!("redis-server (TLS) did not start: it {e}");
    }
    let ca = std::fs::read(dir.join("ca.pem")).expect("ca");
    let other = std::fs::read(dir.join("other-ca.pem")).expect("other ca");
    let (good, bad) = ns
        .enter(move || {
            let store = |pem: Vec<u8>| {
                let mut s =
                    SharedState::parse_url(&format!("rediss://knocker:{PASSWORD}@127.0.0.1:6380/"))
                        .expect("url");
                s.ca_pem = Some(pem);
                RedisStore::new(&s).expect("store")
            };
            let claim = [Claim::Forward {
                door: "hotp".into(),
                what: "hotp",
                value: 1,
            }];
            let good = store(ca).claim(&claim).map_err(|e| e.to_string());
            let again = store(other).claim(&claim).map_err(|e| e.to_string());
            (good, again)
        })
        .expect("enter");
    assert_eq!(good, Ok(Claimed::Yes), "{}", redis.log.text());
    let e = bad.expect_err("another authority's certificate is refused");
    assert!(e.contains("cannot reach the shared store"), "{e}");
}
