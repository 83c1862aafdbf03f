//! End-to-end: knockknock's profiles, unchanged. The server's profile directory and the client's
//! `~/.knockknock/HOST/` are written as knockknock-genprofile writes them (the same keys, counter
//! 0, `[main] knock_port`), knockerd runs them (as a native `kind = "knockknock"` door, and with
//! `--knockknock-profiles` as knockknock would), and the real `knocker` binary knocks from
//! alice's namespace. The grant appears, the connection succeeds, both counter files move on;
//! the SYN captured on the server and sent again (as it was, spoofed as alice; and its knock from
//! mallory's own address, the attack knockknock's MAC cannot see) opens nothing. The same
//! through the kernel log (`[source] kind = "kernel-log"`: the SYN's line, from knocker's table
//! or from knockknock's own documented LOG rule, rebuilt into the SYN), with
//! `net.netfilter.nf_log_all_netns` set for the test's duration (see log_source_e2e.rs).
//!
//! Needs root, iproute2 and nft, like the other e2e tests; KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use knocker_wire::knockknock::{self as kk, Key};
use socket2::{Domain, Protocol, Socket, Type};

const KNOCK_PORT: u16 = 8888;

/// A profile directory as knockknock-genprofile writes it: keys as `b2a_base64` lines, counter
/// 0, the config as ConfigParser writes it, every file 0600.
fn genprofile(dir: &Path, cipher: &[u8; 16], mac: &[u8; 16], port: u16) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (file, text) in [
        (
            "cipher.key",
            Key::from_bytes(*cipher).to_base64_line().to_string(),
        ),
        (
            "mac.key",
            Key::from_bytes(*mac).to_base64_line().to_string(),
        ),
        ("counter", "0\n".to_string()),
        ("config", format!("[main]\nknock_port = {port}\n\n")),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("knocker-kk-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's /etc/knockknock.d (profile "alice") and alice's ~/.knockknock/SERVER/, with
/// knock port [`KNOCK_PORT`].
fn profiles(tag: &str) -> (Scratch, PathBuf, PathBuf) {
    profiles_on(tag, KNOCK_PORT)
}

/// [`profiles`] with another knock port.
fn profiles_on(tag: &str, port: u16) -> (Scratch, PathBuf, PathBuf) {
    let s = Scratch::new(tag);
    let mut keys = [0u8; 32];
    getrandom::fill(&mut keys).expect("random");
    let (cipher, mac) = (
        keys[..16].try_into().expect("16"),
        keys[16..].try_into().expect("16"),
    );
    let server = s.0.join("etc-knockknock.d");
    genprofile(&server.join("profiles/alice"), &cipher, &mac, port);
    std::fs::write(server.join("config"), "[main]\ndelay=15\nerror_window=20\n").expect("config");
    let home = s.0.join("home-alice");
    genprofile(
        &home.join(".knockknock").join(Lab::SERVER_FOR_ALICE),
        &cipher,
        &mac,
        port,
    );
    (s, server, home)
}

fn counter(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("counter")).expect("counter")
}

/// Every packet arriving in the server's namespace, from its IP header on.
fn capture(w: &World) -> Socket {
    let all = Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
    let cap = w
        .lab
        .server
        .enter(move || Socket::new(Domain::PACKET, Type::DGRAM, Some(all)))
        .expect("enter")
        .expect("packet socket");
    cap.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    cap
}

/// The first knockknock SYN to `port` the capture sees within a few seconds.
fn captured(cap: &Socket, port: u16) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        let Ok(n) = (&*cap).read(&mut buf) else {
            continue;
        };
        if kk::parse(&buf[..n]).is_some_and(|s| s.dst_port == port) {
            return buf[..n].to_vec();
        }
    }
    panic!("no knockknock SYN reached the server");
}

/// `knocker knock SERVER --open tcp/PORT` in alice's namespace, with her knockknock profile.
fn knocker_knocks(w: &World, home: &Path, port: u16) {
    let out = w
        .lab
        .alice
        .command(&knocker_client().to_string_lossy())
        .env("HOME", home)
        .args([
            "knock",
            "-v",
            Lab::SERVER_FOR_ALICE,
            "--open",
            &format!("tcp/{port}"),
        ])
        .output()
        .expect("run knocker");
    assert!(
        out.status.success(),
        "knocker knock: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn send_raw(from: &Netns, packet: Vec<u8>, dst: &str) {
    let dst = ip(dst);
    from.enter(move || knocker_lab::send_raw_ip(&packet, dst))
        .expect("enter")
        .expect("raw send");
}

/// alice's knock (through `knocker knock`, to knock port `port`) opens the service once, her
/// connection succeeds, and both counter files move on; the SYN as captured on the server.
fn alice_opens(w: &World, home: &Path, profile: &Path, port: u16) -> Vec<u8> {
    // the service is protected until alice knocks
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    let cap = capture(w);
    knocker_knocks(w, home, SERVICE);
    let knock = captured(&cap, port);
    let g = w.wait_all_grants(1, Duration::from_secs(3));
    assert_eq!(g.len(), 1, "one grant: {g:?}\n{}", w.daemon.log());
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, format!("tcp/{SERVICE}").as_str()),
        "{g:?}"
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    // both counters moved past the one used, in place, as knockknock keeps them
    assert_eq!(counter(profile), "1\n");
    assert_eq!(
        counter(&home.join(".knockknock").join(Lab::SERVER_FOR_ALICE)),
        "1\n"
    );
    w.daemon
        .wait_log("door=alice used counter 0", Duration::from_secs(2));
    knock
}

/// mallory resends the captured SYN `knock` as it was (spoofed as alice), then its knock from
/// her own address: knockknock's MAC covers neither address, the counter refuses both.
fn replays_are_refused(w: &World, knock: &[u8], port: u16, profile: &Path) {
    send_raw(&w.lab.mallory, knock.to_vec(), Lab::SERVER_FOR_MALLORY);
    let seen = kk::parse(knock).expect("a knock");
    let own = kk::build(
        Lab::MALLORY.parse().expect("ip"),
        Lab::SERVER_FOR_MALLORY.parse().expect("ip"),
        seen.src_port,
        port,
        &seen.knock,
        64,
    );
    send_raw(&w.lab.mallory, own, Lab::SERVER_FOR_MALLORY);
    w.daemon.wait_log(
        &format!("door=alice src={} refused: a replay", Lab::MALLORY),
        Duration::from_secs(3),
    );
    let log = w.daemon.log();
    assert!(
        log.contains(&format!("door=alice src={} refused: a replay", Lab::ALICE)),
        "{log}"
    );
    let live = w.all_grants();
    assert!(
        live.iter().all(|g| g.to != Lab::MALLORY),
        "mallory is never granted: {live:?}"
    );
    assert_eq!(counter(profile), "1\n", "a replay uses no counter");
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
}

#[test]
fn a_knockknock_profile_opens_once_and_its_replays_do_not() {
    if !e2e(&[]) {
        return;
    }
    let (_scratch, server, home) = profiles("native");
    let profile = server.join("profiles/alice");
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.alice]\nkind = \"knockknock\"\nprofile = {:?}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 15\n",
        profile.display().to_string()
    );
    let w = World::new("kk", &config);
    let knock = alice_opens(&w, &home, &profile, KNOCK_PORT);
    replays_are_refused(&w, &knock, KNOCK_PORT, &profile);
    w.finish();
}

/// `nft list table inet NAME` in the server's namespace.
fn inet_table(w: &World, name: &str) -> String {
    w.lab
        .server
        .exec("nft", &["list", "table", "inet", name])
        .expect("nft")
}

/// A knock port no other test knocks: under the kernel log, every namespace's lines are seen.
const KLOG_KNOCK_PORT: u16 = 17688;

/// For a kernel-log test: kernel logging on in every namespace (while the guard lives), and
/// profiles whose knock port is `port`.
fn klog_profiles(tag: &str, port: u16) -> (AllNetnsLogging, Scratch, PathBuf, PathBuf) {
    let logging = AllNetnsLogging::on();
    let (scratch, server, home) = profiles_on(tag, port);
    (logging, scratch, server, home)
}

/// knockknock's documented LOG rule (prefix "REJECT ", `--log-tcp-sequence`, with `flags` more
/// of iptables' LOG options), then a reset, in a table of the admin's that runs ahead of
/// knocker's.
fn knockknock_log_rule(w: &World, port: u16, flags: &str) {
    w.lab
        .server
        .nft(&format!("table inet admin {{\n chain input {{\n  type filter hook input priority -20;\n  tcp dport {port} tcp flags & (syn | ack) == syn counter log prefix \"REJECT \" level debug flags tcp sequence{flags} reject with tcp reset\n }}\n}}\n"))
        .expect("the admin's LOG rule");
}

#[test]
fn a_knockknock_door_opens_through_the_kernel_log_and_its_replays_do_not() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let (_logging, _scratch, server, home) = klog_profiles("klog", KLOG_KNOCK_PORT);
    let profile = server.join("profiles/alice");
    let config = format!(
        "[daemon]\n\n[door.alice]\nkind = \"knockknock\"\nprofile = {:?}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 15\n\n[source]\nkind = \"kernel-log\"\nprefix = \"REJECT \"\n",
        profile.display().to_string()
    );
    let w = World::new("kkklog", &config);
    w.daemon.wait_log(
        "watching the kernel log (/dev/kmsg)",
        Duration::from_secs(1),
    );
    let table = inet_table(&w, "knocker");
    assert!(
        table.contains(&format!("meta l4proto . th dport {{ tcp . {KLOG_KNOCK_PORT} }} tcp flags syn / syn,ack log prefix \"knocker: \" flags tcp sequence drop")),
        "the knock port's SYNs are logged to the kernel log with their sequence numbers: {table}"
    );
    let knock = alice_opens(&w, &home, &profile, KLOG_KNOCK_PORT);
    replays_are_refused(&w, &knock, KLOG_KNOCK_PORT, &profile);

    // knockknock's documented rule (a LOG with --log-tcp-sequence, --log-tcp-options and
    // --log-ip-options at level debug, prefix "REJECT ", then a reset), here ahead of knocker's
    // table: its lines open the door as knocker's own do
    knockknock_log_rule(&w, KLOG_KNOCK_PORT, ",options flags ip options");
    knocker_knocks(&w, &home, SERVICE);
    w.daemon
        .wait_log("door=alice used counter 1", Duration::from_secs(3));
    assert_eq!(counter(&profile), "2\n");
    let admin = inet_table(&w, "admin");
    assert!(
        admin.contains("counter packets 1 "),
        "the admin's rule logged the knock (and knocker's table never saw it): {admin}"
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    w.finish();
}

#[test]
fn knockknock_profiles_run_as_they_are() {
    if !e2e(&[]) {
        return;
    }
    let (_scratch, server, home) = profiles("dropin");
    let server_s = server.display().to_string();
    let w = World::start_with("kkdrop", |lab| {
        Knockerd::start_args(lab, &["--knockknock-profiles", &server_s])
    });
    w.daemon
        .wait_log("opens whatever TCP port", Duration::from_secs(1));
    // knockknock opens whatever port the knock asks for: here one nothing protects
    any_port_opens_once(&w, &home, &server);
    // a second knock uses the next counter
    knocker_knocks(&w, &home, SERVICE);
    w.daemon.wait_log("used counter 1", Duration::from_secs(3));
    assert_eq!(counter(&server.join("profiles/alice")), "2\n");
    w.finish();
}

/// The drop-in's knock port under the kernel log (no other test knocks it).
const DROPIN_KLOG_KNOCK_PORT: u16 = 17689;

#[test]
fn knockknock_profiles_run_as_they_are_through_the_kernel_log() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let (_logging, _scratch, server, home) = klog_profiles("dropinklog", DROPIN_KLOG_KNOCK_PORT);
    let server_s = server.display().to_string();
    let w = World::start_with("kkdropk", |lab| {
        Knockerd::start_args(
            lab,
            &[
                "--knockknock-profiles",
                &server_s,
                "--kernel-log",
                "--log-prefix",
                "REJECT ",
            ],
        )
    });
    w.daemon.wait_log(
        "watching the kernel log (/dev/kmsg)",
        Duration::from_secs(1),
    );
    // a knockknock server as knockknock's INSTALL sets it up: its LOG rule (prefix "REJECT ",
    // --log-tcp-sequence) ahead of everything, then a reset; knockerd reads that rule's lines
    knockknock_log_rule(&w, DROPIN_KLOG_KNOCK_PORT, "");
    any_port_opens_once(&w, &home, &server);
    let admin = inet_table(&w, "admin");
    assert!(
        admin.contains("counter packets 1 "),
        "the admin's rule logged the knock (knocker's table never saw it): {admin}"
    );
    // without that rule, knockerd's own table logs the knock port's SYNs to the kernel log
    w.lab
        .server
        .nft("delete table inet admin\n")
        .expect("remove the admin's rule");
    let table = inet_table(&w, "knocker");
    assert!(
        table.contains("log prefix \"knocker: \" flags tcp sequence drop"),
        "{table}"
    );
    knocker_knocks(&w, &home, SERVICE);
    w.daemon.wait_log("used counter 1", Duration::from_secs(3));
    assert_eq!(counter(&server.join("profiles/alice")), "2\n");
    w.finish();
}

#[test]
fn the_kernel_log_options_need_knockknocks_profiles() {
    let (ok, _, err) = knockerd(&["--kernel-log", "check"]);
    assert!(!ok);
    assert!(err.contains("--knockknock-profiles"), "{err}");
    let (ok, _, err) = knockerd(&[
        "--knockknock-profiles",
        "/nonexistent",
        "--log-prefix",
        "REJECT ",
        "check",
    ]);
    assert!(!ok);
    assert!(err.contains("--kernel-log"), "{err}");
}

/// Run as they are, a profile opens whatever port the knock asks for (here 4242, which nothing
/// protects): one grant, and the profile's counter moves on.
fn any_port_opens_once(w: &World, home: &Path, server: &Path) {
    knocker_knocks(w, home, 4242);
    let g = w.wait_all_grants(1, Duration::from_secs(3));
    assert_eq!(g.len(), 1, "one grant: {g:?}\n{}", w.daemon.log());
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, "tcp/4242"),
        "{g:?}"
    );
    assert_eq!(counter(&server.join("profiles/alice")), "1\n");
}

fn knockerd(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knockerd"))
        .args(args)
        .output()
        .expect("run knockerd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn import_knockknock_prints_doors_that_run_once_open_is_listed() {
    let (scratch, server, _home) = profiles("import");
    let dir = server.display().to_string();
    let (ok, toml, err) = knockerd(&["import-knockknock", &dir]);
    assert!(ok, "{err}");
    assert!(
        toml.contains("[door.alice]\nkind = \"knockknock\""),
        "{toml}"
    );
    // as printed, `open` is still to be filled in: check says where and how
    let path = scratch.0.join("knockerd.toml");
    std::fs::write(&path, &toml).expect("write");
    let path_s = path.display().to_string();
    let (ok, _, err) = knockerd(&["--config", &path_s, "check"]);
    assert!(!ok, "no open list: refused");
    assert!(
        err.contains(&format!("{path_s}:")) && err.contains("list in `open`"),
        "{err}"
    );
    let filled = toml.replace("# open = [\"tcp/22\"]", "open = [\"tcp/22\"]");
    std::fs::write(&path, filled).expect("write");
    let (ok, out, err) = knockerd(&["--config", &path_s, "check"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("knockknock SYNs on tcp/8888"), "{out}");
    assert!(out.contains("opens tcp/22 for 15s"), "{out}");
}
