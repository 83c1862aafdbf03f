//! knocker's own single-packet doors end to end, in network namespaces, against the real
//! knockerd and real nftables: an SPA datagram and a stealth SYN from alice open for alice
//! alone; mallory's replays (from her own address, spoofed as alice, after the grant expired,
//! after a restart) open nothing; a revoked client and an unenrolled key are refused; a client
//! whose clock is off is told by how much. Needs root, iproute2 and nftables.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use knocker_wire::identity::{DoorKey, PrivateKey, PublicKey};
use knocker_wire::{spa, syn, Service};
use nix::sys::signal::Signal;

const SPA_PORT: u16 = 62201;
const SYN_PORT: u16 = 4443;

/// The server's key, the clients file and the config, in a directory of the test's own.
struct Keys {
    dir: PathBuf,
    server: PrivateKey,
    alice: PrivateKey,
    carol: PrivateKey,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_0600(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn client_entry(name: &str, key: &PublicKey) -> String {
    format!("[client.{name}]\npublic_key = \"{key}\"\n\n")
}

impl Keys {
    fn new(tag: &str) -> Keys {
        let dir = std::env::temp_dir().join(format!("knocker-native-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let k = Keys {
            dir,
            server: PrivateKey::generate().expect("key"),
            alice: PrivateKey::generate().expect("key"),
            carol: PrivateKey::generate().expect("key"),
        };
        write_0600(&k.dir.join("server.key"), &k.server.to_base64());
        k.enroll(&["alice", "carol"]);
        k
    }

    /// Writes the clients file with these of alice and carol.
    fn enroll(&self, names: &[&str]) {
        let mut text = String::from("# enrolled clients\n");
        for n in names {
            let key = match *n {
                "alice" => self.alice.public_key(),
                _ => self.carol.public_key(),
            };
            text.push_str(&client_entry(n, &key));
        }
        std::fs::write(self.dir.join("clients.toml"), text).expect("clients");
    }

    fn config(&self, open_for: u64) -> String {
        format!(
            "[daemon]\nserver_key = {:?}\nclients = {:?}\n\n\
             [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = {open_for}\nmax_age = 60\n\n\
             [door.syn]\nkind = \"syn\"\nport = {SYN_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = {open_for}\n",
            self.dir.join("server.key").display().to_string(),
            self.dir.join("clients.toml").display().to_string(),
        )
    }

    fn door_key(&self) -> DoorKey {
        self.server.door_key("spa")
    }

    /// A sealed SPA request from `client`, made at `now + offset`.
    fn seal(&self, client: &PrivateKey, offset: i64) -> Vec<u8> {
        let req = spa::Request {
            timestamp: now().saturating_add_signed(offset),
            nonce: rand16(),
            allow: None,
            services: vec![Service::tcp(SERVICE)],
            duration: None,
        };
        spa::seal(&req, client, &self.server.public_key(), &self.door_key()).expect("seal")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn rand16() -> [u8; 16] {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).expect("random");
    n
}

/// Sends `payload` to the SPA port from a client's namespace, from its own address.
fn send_udp(from: &Netns, to: &str, payload: Vec<u8>) {
    common::send_udp(from, to, SPA_PORT, payload);
}

/// Sends a whole IP packet (a SYN, a spoofed datagram) from a namespace through a raw socket.
fn send_raw(from: &Netns, packet: Vec<u8>, dst: &str) {
    let dst = ip(dst);
    from.enter(move || knocker_lab::send_raw_ip(&packet, dst))
        .expect("enter")
        .expect("raw send");
}

/// A client's stealth SYN to the SYN door, as `knocker` builds it (Linux's SYN shape on a
/// veth), with the source port and marks it carries.
fn syn_packet(
    keys: &Keys,
    client: &PrivateKey,
    src: &str,
    dst: &str,
) -> (Vec<u8>, u16, syn::Marks) {
    let (src, dst) = (ip(src), ip(dst));
    let key = client.syn_key(&keys.server.public_key()).expect("syn key");
    let step = syn::step(now());
    let (sport, marks) = syn::choose(&key, step, src, dst, SYN_PORT, 0).expect("choose");
    (resyn(src, dst, sport, &marks), sport, marks)
}

/// The same header fields, sent between other addresses (checksums correct).
fn resyn(src: IpAddr, dst: IpAddr, sport: u16, marks: &syn::Marks) -> Vec<u8> {
    let shape = syn::linux_shape(dst.is_ipv6(), 1500);
    syn::build(src, dst, sport, SYN_PORT, marks, &shape)
}

fn world(tag: &str, keys: &Keys, open_for: u64) -> World {
    World::new(tag, &keys.config(open_for))
}

fn wait_refusals(w: &World, needle: &str, n: usize) {
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while w.daemon.log().matches(needle).count() < n && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        w.daemon.log().matches(needle).count() >= n,
        "expected {n} x {needle:?} in the log:\n{}",
        w.daemon.log()
    );
}

#[test]
fn spa_opens_for_alice_alone_and_no_replay_opens_anything() {
    if !e2e(&[]) {
        return;
    }
    let keys = Keys::new("spa");
    let mut w = world("nspa", &keys, 2);
    // the SPA and the SYN door's ports, as check lists them
    w.daemon.wait_log(
        "watching NFLOG group 4100 for 2 knock port(s)",
        Duration::from_secs(1),
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    let pkt = keys.seal(&keys.alice, 0);
    send_udp(&w.lab.alice, Lab::SERVER_FOR_ALICE, pkt.clone());
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, "tcp/2222")
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    // mallory replays it from her own address, then spoofed as alice
    send_udp(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, pkt.clone());
    w.daemon.wait_log(
        &format!("src={} refused: a replay", Lab::MALLORY),
        Duration::from_secs(2),
    );
    let spoof = udp4(Lab::ALICE, Lab::SERVER_FOR_MALLORY, &pkt);
    send_raw(&w.lab.mallory, spoof.clone(), Lab::SERVER_FOR_MALLORY);
    w.daemon.wait_log(
        &format!("src={} refused: a replay", Lab::ALICE),
        Duration::from_secs(2),
    );
    // after alice's grant expired: still a replay
    assert!(
        w.wait_grants(0, Duration::from_secs(4)).is_empty(),
        "expired"
    );
    send_raw(&w.lab.mallory, spoof.clone(), Lab::SERVER_FOR_MALLORY);
    wait_refusals(&w, &format!("src={} refused: a replay", Lab::ALICE), 2);
    // after a restart: the ledger remembers
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &keys.config(2));
    send_raw(&w.lab.mallory, spoof, Lab::SERVER_FOR_MALLORY);
    w.daemon
        .wait_log("refused: a replay", Duration::from_secs(2));
    // the same request with one bit flipped anywhere: not authentic
    let mut flipped = pkt.clone();
    flipped[pkt.len() / 2] ^= 0x10;
    send_udp(&w.lab.alice, Lab::SERVER_FOR_ALICE, flipped);
    w.daemon
        .wait_log("refused: not an authentic", Duration::from_secs(2));
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    // and a fresh packet still works, over IPv6 too
    send_udp(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE6,
        keys.seal(&keys.alice, 0),
    );
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(
        g.first().map(|g| g.to.as_str()),
        Some(Lab::ALICE6),
        "{}",
        w.daemon.log()
    );
    w.finish();
}

/// An IPv4 UDP datagram to the SPA port with any source address.
fn udp4(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    udp4_to(src, dst, SPA_PORT, payload)
}

/// An IPv4 UDP datagram to `port` with any source address.
fn udp4_to(src: &str, dst: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().expect("ip"), dst.parse().expect("ip"));
    lab::packet::udp(s.into(), d.into(), 40000, port, payload)
}

#[test]
fn revoked_and_unenrolled_keys_are_refused_and_skew_is_reported() {
    if !e2e(&[]) {
        return;
    }
    let keys = Keys::new("revoke");
    let w = world("nrev", &keys, 5);
    // carol is enrolled: she opens
    send_udp(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        keys.seal(&keys.carol, 0),
    );
    assert_eq!(
        w.wait_grants(1, Duration::from_secs(2)).len(),
        1,
        "{}",
        w.daemon.log()
    );
    // the admin removes her and reloads: her next packet is refused
    keys.enroll(&["alice"]);
    w.daemon.signal(Signal::SIGHUP);
    w.daemon.wait_log("reload", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(300));
    send_udp(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        keys.seal(&keys.carol, 0),
    );
    w.daemon.wait_log(
        &format!(
            "src={} refused: made with a client key that is not enrolled",
            Lab::MALLORY
        ),
        Duration::from_secs(2),
    );
    // a key that was never enrolled, even holding the door key
    let stranger = PrivateKey::generate().expect("key");
    send_udp(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        keys.seal(&stranger, 0),
    );
    wait_refusals(
        &w,
        "refused: made with a client key that is not enrolled",
        2,
    );
    // alice's clock is 500 s behind: refused, and the log says by how much
    send_udp(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        keys.seal(&keys.alice, -500),
    );
    w.daemon.wait_log("clock is 50", Duration::from_secs(2));
    assert!(
        w.daemon.log().contains("s behind the server's"),
        "{}",
        w.daemon.log()
    );
    let mallory_grants: Vec<_> = w
        .grants()
        .into_iter()
        .filter(|g| g.to == Lab::MALLORY)
        .collect();
    assert!(mallory_grants.is_empty(), "{mallory_grants:?}");
    w.finish();
}

/// Door B of [`two_doors_bind_each_datagram_to_its_own`]: its port and what it opens.
const SPA_B_PORT: u16 = 62202;
const SERVICE_B: u16 = 2223;

#[test]
fn two_doors_bind_each_datagram_to_its_own() {
    if !e2e(&[]) {
        return;
    }
    let keys = Keys::new("twodoors");
    // mallory is an insider enrolled for both doors (she holds both tag keys); dave only for A
    let mallory = PrivateKey::generate().expect("key");
    let dave = PrivateKey::generate().expect("key");
    std::fs::write(
        keys.dir.join("clients.toml"),
        format!(
            "{}{}[client.dave]\npublic_key = \"{}\"\ndoors = [\"spa\"]\n",
            client_entry("alice", &keys.alice.public_key()),
            client_entry("mallory", &mallory.public_key()),
            dave.public_key()
        ),
    )
    .expect("clients");
    let config = format!(
        "[daemon]\nserver_key = {:?}\nclients = {:?}\n\n\
         [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\nmax_age = 60\n\n\
         [door.spa-b]\nkind = \"spa\"\nport = {SPA_B_PORT}\nopen = [\"tcp/{SERVICE_B}\"]\nopen_for = 30\nmax_age = 60\n",
        keys.dir.join("server.key").display().to_string(),
        keys.dir.join("clients.toml").display().to_string(),
    );
    let w = World::new("n2door", &config);
    let door_b = keys.server.door_key("spa-b");
    // alice's datagram for door A, captured by mallory before it arrives (so unused), asking
    // for the packet's source: she re-tags it with door B's key (everything after the tag is
    // unchanged) and sends it to door B spoofed as alice
    let seal_for = |client: &PrivateKey, door: &DoorKey, service: u16| {
        let req = spa::Request {
            timestamp: now(),
            nonce: rand16(),
            allow: None,
            services: vec![Service::tcp(service)],
            duration: None,
        };
        spa::seal(&req, client, &keys.server.public_key(), door).expect("seal")
    };
    let captured = seal_for(&keys.alice, &keys.door_key(), SERVICE);
    let mut moved = captured.clone();
    assert!(
        spa::check_tag(&door_b, &seal_for(&mallory, &door_b, SERVICE)),
        "mallory holds door B's key"
    );
    spa::write_tag(&door_b, &mut moved);
    assert!(spa::check_tag(&door_b, &moved), "the tag passes at door B");
    assert_eq!(moved[spa::TAG_LEN..], captured[spa::TAG_LEN..]);
    let spoof = udp4_to(Lab::ALICE, Lab::SERVER_FOR_MALLORY, SPA_B_PORT, &moved);
    send_raw(&w.lab.mallory, spoof, Lab::SERVER_FOR_MALLORY);
    w.daemon.wait_log(
        &format!("door=spa-b src={} refused: not an authentic", Lab::ALICE),
        Duration::from_secs(2),
    );
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    // the captured datagram itself still opens door A for alice
    send_udp(&w.lab.alice, Lab::SERVER_FOR_ALICE, captured);
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(
        g.iter()
            .map(|g| (g.to.as_str(), g.service.as_str()))
            .collect::<Vec<_>>(),
        [(Lab::ALICE, "tcp/2222")],
        "{}",
        w.daemon.log()
    );
    // and door B opens for a datagram alice seals for it
    common::send_udp(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        SPA_B_PORT,
        seal_for(&keys.alice, &door_b, SERVICE_B),
    );
    let g = w.wait_grants(2, Duration::from_secs(2));
    assert!(
        g.iter()
            .any(|g| g.to == Lab::ALICE && g.service == "tcp/2223"),
        "{g:?}\n{}",
        w.daemon.log()
    );
    // dave is enrolled for door A only: door B says so (with a tag key he should not have)
    common::send_udp(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        SPA_B_PORT,
        seal_for(&dave, &door_b, SERVICE_B),
    );
    w.daemon.wait_log(
        "refused: client \"dave\" is not enrolled for this door",
        Duration::from_secs(2),
    );
    assert_eq!(w.grants().len(), 2, "{:?}", w.grants());
    w.finish();
}

#[test]
fn a_stealth_syn_opens_for_alice_alone_over_ipv4_and_ipv6_and_replays_open_nothing() {
    if !e2e(&[]) {
        return;
    }
    let keys = Keys::new("syn");
    let mut w = world("nsyn", &keys, 2);
    let (pkt, sport, marks) = syn_packet(&keys, &keys.alice, Lab::ALICE, Lab::SERVER_FOR_ALICE);
    send_raw(&w.lab.alice, pkt.clone(), Lab::SERVER_FOR_ALICE);
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, "tcp/2222")
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    // mallory sends the same header fields from her own address: not authentic
    let own = resyn(ip(Lab::MALLORY), ip(Lab::SERVER_FOR_MALLORY), sport, &marks);
    send_raw(&w.lab.mallory, own, Lab::SERVER_FOR_MALLORY);
    w.daemon.wait_log(
        &format!("src={} refused: not an authentic", Lab::MALLORY),
        Duration::from_secs(2),
    );
    // spoofed as alice (to the server's other address): the MAC covers the destination too
    let spoof = resyn(ip(Lab::ALICE), ip(Lab::SERVER_FOR_MALLORY), sport, &marks);
    send_raw(&w.lab.mallory, spoof, Lab::SERVER_FOR_MALLORY);
    wait_refusals(
        &w,
        &format!("src={} refused: not an authentic", Lab::ALICE),
        1,
    );
    // alice's own SYN again, after her grant expired: a replay
    assert!(
        w.wait_grants(0, Duration::from_secs(4)).is_empty(),
        "expired"
    );
    send_raw(&w.lab.alice, pkt.clone(), Lab::SERVER_FOR_ALICE);
    w.daemon.wait_log(
        &format!("src={} refused: a replay", Lab::ALICE),
        Duration::from_secs(2),
    );
    // after a restart, still a replay
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &keys.config(2));
    send_raw(&w.lab.alice, pkt, Lab::SERVER_FOR_ALICE);
    w.daemon
        .wait_log("refused: a replay", Duration::from_secs(2));
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    // IPv6
    let (pkt6, _, _) = syn_packet(&keys, &keys.alice, Lab::ALICE6, Lab::SERVER_FOR_ALICE6);
    send_raw(&w.lab.alice, pkt6, Lab::SERVER_FOR_ALICE6);
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(
        g.first().map(|g| g.to.as_str()),
        Some(Lab::ALICE6),
        "{}",
        w.daemon.log()
    );
    // a revoked client's SYN opens nothing
    keys.enroll(&["alice"]);
    w.daemon.signal(Signal::SIGHUP);
    w.daemon.wait_log("reload", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(300));
    let (carol, _, _) = syn_packet(&keys, &keys.carol, Lab::ALICE, Lab::SERVER_FOR_ALICE);
    send_raw(&w.lab.alice, carol, Lab::SERVER_FOR_ALICE);
    // (the log is this daemon's since the restart)
    wait_refusals(
        &w,
        &format!("src={} refused: not an authentic", Lab::ALICE),
        1,
    );
    assert!(
        w.grants().iter().all(|g| g.to != Lab::ALICE),
        "{:?}",
        w.grants()
    );
    w.finish();
}
