//! fwknop clients work unchanged: Debian's `fwknop` client from alice opens a door on knockerd
//! running an unchanged access.conf; replays, stale packets, wrong keys, flipped bytes and
//! truncated packets open nothing. Needs root, iproute2, nftables and fwknop-client.

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const KEY: &str = "fwknoptestkey123";
const HMAC: &str = "fwknophmackey12345678";

struct Setup {
    dir: PathBuf,
    access: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(tag: &str, access_conf: &str) -> Setup {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("knocker-fwknop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let access = dir.join("access.conf");
    std::fs::write(&access, access_conf).expect("access.conf");
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    Setup { dir, access }
}

fn world(tag: &str, s: &Setup) -> World {
    let access = s.access.display().to_string();
    World::start_with(tag, |lab| {
        Knockerd::start_args(lab, &["--fwknop-access", &access])
    })
}

fn basic_access() -> String {
    format!("SOURCE ANY\nOPEN_PORTS tcp/{SERVICE}, udp/53\nKEY {KEY}\nHMAC_KEY {HMAC}\nFW_ACCESS_TIMEOUT 5\n")
}

/// Runs Debian's fwknop client in alice's namespace with these options (plus the server and no
/// rc file), returning its output.
fn fwknop(w: &World, args: &[&str]) -> String {
    let out = w
        .lab
        .alice
        .command("fwknop")
        .args([
            "-D",
            Lab::SERVER_FOR_ALICE,
            "--no-save-args",
            "--no-rc-file",
        ])
        .args(args)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run fwknop");
    assert!(
        out.status.success(),
        "fwknop {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys() -> Vec<&'static str> {
    vec!["--key-rijndael", KEY, "--key-hmac", HMAC, "--use-hmac"]
}

#[test]
fn debian_fwknop_opens_for_alice_only_with_an_unchanged_access_conf() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let s = setup("basic", &basic_access());
    let w = world("fwk", &s);
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "protected: OPEN_PORTS"
    );
    let mut args = vec!["-A", "tcp/2222", "-a", Lab::ALICE];
    args.extend(keys());
    fwknop(&w, &args);
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str(), g[0].timeout_s),
        (Lab::ALICE, "tcp/2222", 5)
    );
    w.finish();
}

#[test]
fn a_nat_request_to_a_stanza_without_force_nat_opens_nothing() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let s = setup("nat", &basic_access());
    let w = world("fwknat", &s);
    // fwknopd with ENABLE_IPT_FORWARDING would send alice wherever the packet says
    let mut args = vec!["-A", "tcp/2222", "-N", "10.200.3.2:22", "-a", Lab::ALICE];
    args.extend(keys());
    fwknop(&w, &args);
    w.daemon.wait_log(
        "which this stanza does not take: fwknopd.conf has no ENABLE_IPT_FORWARDING Y",
        Duration::from_secs(5),
    );
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    w.finish();
}

#[test]
fn debian_fwknop_option_sets() {
    if !e2e(&["fwknop"]) {
        return;
    }
    // several ports, a client timeout, and -s (allow the packet's source)
    let s = setup(
        "opts",
        &basic_access().replace(
            "FW_ACCESS_TIMEOUT 5",
            "FW_ACCESS_TIMEOUT 5\nMAX_FW_TIMEOUT 8",
        ),
    );
    let w = world("fwkopt", &s);
    let mut args = vec!["-A", "tcp/2222,udp/53", "-s", "-f", "7"];
    args.extend(keys());
    fwknop(&w, &args);
    let g = w.wait_grants(2, Duration::from_secs(2));
    let mut got: Vec<(String, String, u64)> = g
        .iter()
        .map(|g| (g.to.clone(), g.service.clone(), g.timeout_s))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (Lab::ALICE.into(), "tcp/2222".into(), 7),
            (Lab::ALICE.into(), "udp/53".into(), 7)
        ],
        "{}",
        w.daemon.log()
    );
    drop(w);
    // base64 keys and another HMAC digest
    let s = setup(
        "b64",
        "SOURCE ANY\nOPEN_PORTS tcp/2222\nKEY_BASE64 7DEa1rlrtY85doBUqXNmDQiNabn9gsdxPgBVJBlm9Us=\nHMAC_KEY_BASE64 wTDOAXDe3ufkW5fFJxXzQznxSQBTK+9HhE6BIs9pYCq6vAVZs54yiwKLZd8N1UzkCQOYUxVMzyo97QjKmhbEkA==\nHMAC_DIGEST_TYPE sha512\n",
    );
    let w = world("fwkb64", &s);
    fwknop(
        &w,
        &[
            "-A",
            "tcp/2222",
            "-a",
            Lab::ALICE,
            "--key-base64-rijndael",
            "7DEa1rlrtY85doBUqXNmDQiNabn9gsdxPgBVJBlm9Us=",
            "--key-base64-hmac",
            "wTDOAXDe3ufkW5fFJxXzQznxSQBTK+9HhE6BIs9pYCq6vAVZs54yiwKLZd8N1UzkCQOYUxVMzyo97QjKmhbEkA==",
            "--hmac-digest-type",
            "sha512",
            "--use-hmac",
        ],
    );
    assert_eq!(
        w.wait_grants(1, Duration::from_secs(2)).len(),
        1,
        "{}",
        w.daemon.log()
    );
    w.finish();
}

/// Makes alice's packet with the client without sending it (`-B FILE --test`).
fn packet(w: &World, s: &Setup, extra: &[&str]) -> Vec<u8> {
    let file = s.dir.join(format!("pkt-{}", extra.len()));
    let file_s = file.display().to_string();
    let mut args = vec!["-A", "tcp/2222", "-a", Lab::ALICE, "-B", &file_s, "--test"];
    args.extend(keys());
    args.extend_from_slice(extra);
    fwknop(w, &args);
    let mut bytes = std::fs::read(&file).expect("packet file");
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// Sends a datagram to the SPA port from a client's namespace, as a replaying client would.
fn send_udp(from: &common::Netns, payload: Vec<u8>) {
    let server = if from.name().ends_with("mallory") {
        Lab::SERVER_FOR_MALLORY
    } else {
        Lab::SERVER_FOR_ALICE
    };
    common::send_udp(from, server, 62201, payload);
}

#[test]
fn replays_stale_and_damaged_packets_open_nothing_also_after_a_restart() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let s = setup("replay", &basic_access());
    let mut w = world("fwkrep", &s);
    let pkt = packet(&w, &s, &[]);
    // alice sends her packet: it opens
    send_udp(&w.lab.alice, pkt.clone());
    assert_eq!(
        w.wait_grants(1, Duration::from_secs(2)).len(),
        1,
        "{}",
        w.daemon.log()
    );
    // mallory replays it from her own address, and spoofed as alice
    send_udp(&w.lab.mallory, pkt.clone());
    w.daemon.wait_log(
        &format!("src={} refused: a replay", Lab::MALLORY),
        Duration::from_secs(2),
    );
    let spoof = pkt.clone();
    w.lab
        .mallory
        .enter(move || {
            knocker_lab::send_raw_udp4(
                Lab::ALICE.parse::<Ipv4Addr>().expect("ip"),
                Lab::SERVER_FOR_MALLORY.parse().expect("ip"),
                40000,
                62201,
                &spoof,
            )
        })
        .expect("enter")
        .expect("spoof");
    w.daemon.wait_log(
        &format!("src={} refused: a replay", Lab::ALICE),
        Duration::from_secs(2),
    );
    // a restart keeps the replay memory (the ledger)
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    let access = s.access.display().to_string();
    w.daemon = Knockerd::start_args(&w.lab, &["--fwknop-access", &access]);
    send_udp(&w.lab.alice, pkt.clone());
    w.daemon
        .wait_log("refused: a replay", Duration::from_secs(2));
    // a packet outside the age window: refused, with how far off the clock is
    let stale = packet(&w, &s, &["--time-offset-minus", "300s"]);
    send_udp(&w.lab.alice, stale);
    w.daemon
        .wait_log("s behind the server's", Duration::from_secs(2));
    // a flipped byte, a truncated packet, a wrong key: refused, one line each
    let mut flipped = packet(&w, &s, &["-v"]);
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let fresh = packet(&w, &s, &["-v", "-v"]);
    let truncated = fresh[..fresh.len() - 20].to_vec();
    // made by the real client with keys the server does not know
    let wrong_file = s.dir.join("wrong-key.pkt");
    let wrong_file_s = wrong_file.display().to_string();
    fwknop(
        &w,
        &[
            "-A",
            "tcp/2222",
            "-a",
            Lab::ALICE,
            "-B",
            &wrong_file_s,
            "--test",
            "--key-rijndael",
            "not-the-right-key",
            "--key-hmac",
            "not-the-right-hmac-key",
            "--use-hmac",
        ],
    );
    let mut wrong = std::fs::read(&wrong_file).expect("packet");
    while wrong.last() == Some(&b'\n') {
        wrong.pop();
    }
    let before = w.daemon.log().matches("refused: not an authentic").count();
    send_udp(&w.lab.alice, flipped);
    send_udp(&w.lab.alice, truncated);
    send_udp(&w.lab.alice, wrong);
    let end = std::time::Instant::now() + Duration::from_secs(2);
    while w.daemon.log().matches("refused: not an authentic").count() < before + 3
        && std::time::Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        w.daemon.log().matches("refused: not an authentic").count(),
        before + 3,
        "a flipped byte, a truncated packet and a wrong key: refused, one line each\n{}",
        w.daemon.log()
    );
    assert_eq!(
        w.grants().len(),
        1,
        "only alice's one packet opened: {:?}",
        w.grants()
    );
    w.finish();
}

fn knocker_spa(w: &World, extra: &[&str]) {
    let out = w
        .lab
        .alice
        .command(&knocker_client().display().to_string())
        .args([
            "spa",
            "--fwknop",
            "-D",
            Lab::SERVER_FOR_ALICE,
            "--key-rijndael",
            KEY,
            "--key-hmac",
            HMAC,
        ])
        .args(extra)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run knocker");
    assert!(
        out.status.success(),
        "knocker spa: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn knockers_own_fwknop_packets_open_knockerd() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let s = setup("own", &basic_access());
    let w = world("fwkown", &s);
    knocker_spa(&w, &["-A", "tcp/2222", "-a", Lab::ALICE]);
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    w.finish();
}

#[test]
fn knockers_fwknop_packets_open_debians_fwknopd() {
    if !e2e(&["fwknop", "fwknopd", "iptables"]) {
        return;
    }
    let s = setup("fwknopd", &basic_access());
    let conf = s.dir.join("fwknopd.conf");
    std::fs::write(&conf, "PCAP_INTF to-alice;\nENABLE_IPT_FORWARDING N;\n").expect("fwknopd.conf");
    let lab = Lab::new("fwkd").expect("lab");
    let mut d = Fwknopd::start(&lab.server, &conf, &s.access, &s.dir, "to-alice");
    let out = lab
        .alice
        .command(&knocker_client().display().to_string())
        .args([
            "spa",
            "--fwknop",
            "-D",
            Lab::SERVER_FOR_ALICE,
            "--key-rijndael",
            KEY,
            "--key-hmac",
            HMAC,
        ])
        .args(["-A", "tcp/2222", "-a", Lab::ALICE])
        .env("HOME", "/nonexistent")
        .output()
        .expect("run knocker");
    assert!(
        out.status.success(),
        "knocker spa: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Err(e) = d.log.wait_for(
        &format!("Added access rule to FWKNOP_INPUT for {}", Lab::ALICE),
        Duration::from_secs(10),
        Some(&mut d.child),
    ) {
        panic!("fwknopd did not grant knocker's packet: it {e}");
    }
    let rules = lab
        .server
        .exec("iptables", &["-n", "-L", "FWKNOP_INPUT"])
        .expect("iptables");
    assert!(
        rules.contains(Lab::ALICE) && rules.contains("dpt:2222"),
        "{rules}"
    );
    drop(d);
}

#[test]
fn import_fwknop_gives_a_native_door_that_debian_fwknop_opens() {
    if !e2e(&["fwknop"]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let s = setup("import", &basic_access());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knockerd"))
        .arg("import-fwknop")
        .arg(&s.access)
        .output()
        .expect("import-fwknop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8_lossy(&out.stdout)
        .replace("/etc/knocker/", &format!("{}/", s.dir.display()));
    assert!(
        !toml.contains(KEY) && !toml.contains(HMAC),
        "key material never goes into the TOML:\n{toml}"
    );
    // the keys go where the notes say, as one line of base64 each
    for (file, key) in [
        ("fwknop-1.fwknop.key", KEY),
        ("fwknop-1.fwknop.hmac.key", HMAC),
    ] {
        let path = s.dir.join(file);
        let b64 =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes());
        std::fs::write(&path, format!("{b64}\n")).expect("key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let native = s.dir.join("native.toml");
    std::fs::write(&native, format!("[daemon]\nnflog_group = 4100\n{toml}")).expect("toml");
    let native_s = native.display().to_string();
    let w = World::start_with("fwkimp", |lab| {
        Knockerd::start_args(lab, &["--config", &native_s])
    });
    let mut args = vec!["-A", "tcp/2222", "-a", Lab::ALICE];
    args.extend(keys());
    fwknop(&w, &args);
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected,
        "{}",
        w.daemon.log()
    );
    w.finish();
}

/// Waits until `f` holds (checked every 50 ms), up to `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

const KEY2: &str = "fwknopsecondkey1";
const HMAC2: &str = "fwknopsecondhmac12345";

/// CMD_CYCLE stanzas as people write them: every variable fwknopd documents substituted, the
/// command run without a shell; one stanza records them in a file name, the other feeds an
/// nftables set, as people wire fwknop to ipset and nft sets. Debian's fwknop client on the
/// other end, a client timeout of 7 s.
#[test]
fn debian_fwknop_runs_command_cycles_with_every_variable() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("knocker-fwknop-cycle-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.display();
    let s = setup(
        "cycle",
        &format!(
            "SOURCE ANY\nKEY {KEY}\nHMAC_KEY {HMAC}\n\
             CMD_CYCLE_OPEN /usr/bin/touch {out}/open_$SRC_$PKT_SRC_$DST_$PROTO_$PORT_$CLIENT_TIMEOUT_$TIMEOUT_$X\n\
             CMD_CYCLE_CLOSE /usr/bin/touch {out}/close_$IP_$PORT\n\
             CMD_CYCLE_TIMER 2\n\n\
             SOURCE ANY\nKEY {KEY2}\nHMAC_KEY {HMAC2}\n\
             CMD_CYCLE_OPEN /usr/sbin/nft add element inet fwknopcycle allow {{ $SRC . $PROTO . $PORT timeout $CLIENT_TIMEOUTs }}\n\
             CMD_CYCLE_CLOSE /usr/sbin/nft delete element inet fwknopcycle allow {{ $SRC . $PROTO . $PORT }}\n\
             CMD_CYCLE_TIMER 30\n"
        ),
    );
    let w = world("fwkcyc", &s);
    assert!(
        !w.daemon.log().contains("refused"),
        "both stanzas run: {}",
        w.daemon.log()
    );
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut args = vec!["-A", "tcp/2222", "-a", Lab::ALICE, "-f", "7"];
    args.extend(keys());
    fwknop(&w, &args);
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .expect("read dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert!(
        wait_until(Duration::from_secs(3), || names().len() == 1),
        "the open command ran: {:?}\n{}",
        names(),
        w.daemon.log()
    );
    let open = names().remove(0);
    let prefix = format!(
        "open_{a}_{a}_{srv}_6_2222_7_",
        a = Lab::ALICE,
        srv = Lab::SERVER_FOR_ALICE
    );
    let timeout: u64 = open
        .strip_prefix(&prefix)
        .and_then(|t| t.strip_suffix("_X"))
        .unwrap_or_else(|| panic!("{open:?} is not {prefix}TIMEOUT_X"))
        .parse()
        .expect("a number");
    // the packet's timestamp plus the client's 7 s; the client stamped it after `sent`
    assert!(
        (sent + 7..sent + 7 + 60).contains(&timeout),
        "$TIMEOUT {timeout} is not the packet's time + 7 (sent at {sent})"
    );
    // the close command runs after the client's timeout (7 s), not CMD_CYCLE_TIMER (2 s)
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(names().len(), 1, "{:?}: closed too early", names());
    assert!(
        wait_until(Duration::from_secs(6), || names().len() == 2),
        "the close command ran: {:?}\n{}",
        names(),
        w.daemon.log()
    );
    assert_eq!(
        names()[0],
        format!("close_{}_2222", Lab::ALICE),
        "{:?}",
        names()
    );

    // the nftables set, as ipset users write it
    let nft = |args: &[&str]| {
        let o = w
            .lab
            .server
            .command("nft")
            .args(args)
            .output()
            .expect("nft");
        assert!(
            o.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    nft(&["add", "table", "inet", "fwknopcycle"]);
    nft(&[
        "add",
        "set",
        "inet",
        "fwknopcycle",
        "allow",
        "{ type ipv4_addr . inet_proto . inet_service; flags timeout; }",
    ]);
    let mut args = vec!["-A", "udp/53", "-a", Lab::ALICE, "-f", "9"];
    args.extend(["--key-rijndael", KEY2, "--key-hmac", HMAC2, "--use-hmac"]);
    fwknop(&w, &args);
    let set = || nft(&["list", "set", "inet", "fwknopcycle", "allow"]);
    let element = format!("{} . udp . 53 timeout 9s", Lab::ALICE);
    assert!(
        wait_until(Duration::from_secs(3), || set().contains(&element)),
        "{element:?} not in the set:\n{}\n{}",
        set(),
        w.daemon.log()
    );
    nft(&["delete", "table", "inet", "fwknopcycle"]);
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}

/// fwknop's legacy mode: a stanza without an HMAC key, and Debian's fwknop client without
/// `--use-hmac`. Refused by default, with the reason and the opt-in; with
/// `--fwknop-allow-legacy` it opens, with a warning at start and for the packet, and replays
/// (also one written differently: base64 text after a `=`) open nothing.
#[test]
fn legacy_stanzas_open_only_when_allowed_and_replays_still_fail() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let s = setup(
        "legacy",
        &format!(
            "{}\nSOURCE ANY\nOPEN_PORTS tcp/{SERVICE}\nKEY {KEY2}\nFW_ACCESS_TIMEOUT 5\n",
            basic_access()
        ),
    );
    let access = s.access.display().to_string();
    let legacy_packet = |w: &World, name: &str| -> Vec<u8> {
        let file = s.dir.join(name);
        let file_s = file.display().to_string();
        fwknop(
            w,
            &[
                "-A",
                "tcp/2222",
                "-a",
                Lab::ALICE,
                "--key-rijndael",
                KEY2,
                "-B",
                &file_s,
                "--test",
            ],
        );
        let mut p = std::fs::read(&file).expect("packet");
        while p.last() == Some(&b'\n') {
            p.pop();
        }
        p
    };
    let mut w = world("fwkleg", &s);
    w.daemon
        .wait_log("--fwknop-allow-legacy", Duration::from_secs(2));
    assert!(
        w.daemon.log().contains("stanza #2"),
        "the refusal names the stanza: {}",
        w.daemon.log()
    );
    let p = legacy_packet(&w, "refused.pkt");
    send_udp(&w.lab.alice, p);
    w.daemon
        .wait_log("refused: not an authentic", Duration::from_secs(2));
    assert!(w.grants().is_empty(), "{:?}", w.grants());

    // opted in
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start_args(
        &w.lab,
        &["--fwknop-allow-legacy", "--fwknop-access", &access],
    );
    assert!(
        w.daemon.log().contains("LEGACY MODE"),
        "a warning at start: {}",
        w.daemon.log()
    );
    let p = legacy_packet(&w, "allowed.pkt");
    send_udp(&w.lab.alice, p.clone());
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected,
        "{}",
        w.daemon.log()
    );
    w.daemon
        .wait_log("decrypted in fwknop's legacy mode", Duration::from_secs(2));
    let g = w.grants();
    assert_eq!(
        (g.len(), g[0].to.as_str(), g[0].timeout_s),
        (1, Lab::ALICE, 5),
        "{g:?}"
    );
    // the same packet, and the same ciphertext written with more text after a `=`
    let replays = w.daemon.log().matches("refused: a replay").count();
    send_udp(&w.lab.mallory, p.clone());
    let mut padded = p.clone();
    padded.extend_from_slice(b"=AAAA");
    send_udp(&w.lab.alice, padded);
    let count = || w.daemon.log().matches("refused: a replay").count();
    wait_until(Duration::from_secs(3), || count() >= replays + 2);
    assert_eq!(count(), replays + 2, "{}", w.daemon.log());
    // an HMAC client still opens the stanza with keys
    let mut args = vec!["-A", "tcp/2222", "-a", Lab::ALICE];
    args.extend(keys());
    fwknop(&w, &args);
    w.finish();
}

/// ENABLE_CMD_EXEC: the stanza is refused with the native setting to use instead, and a command
/// message from Debian's client (`fwknop -C`) runs nothing, whichever stanza's keys made it.
#[test]
fn command_messages_run_nothing_and_the_refusal_names_the_setting() {
    if !e2e(&["fwknop"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("knocker-fwknop-cmdexec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let marker = dir.join("ran");
    let s = setup(
        "cmdexec",
        &format!(
            "{}\nSOURCE ANY\nKEY {KEY2}\nHMAC_KEY {HMAC2}\nENABLE_CMD_EXEC Y\n",
            basic_access()
        ),
    );
    let w = world("fwkcmd", &s);
    w.daemon.wait_log(
        "CMD_CYCLE_OPEN /path/to/command $SRC with CMD_CYCLE_CLOSE NONE",
        Duration::from_secs(2),
    );
    let cmd = format!("/usr/bin/touch {}", marker.display());
    for (key, hmac) in [(KEY2, HMAC2), (KEY, HMAC)] {
        fwknop(
            &w,
            &[
                "-C",
                &cmd,
                "-a",
                Lab::ALICE,
                "--key-rijndael",
                key,
                "--key-hmac",
                hmac,
                "--use-hmac",
            ],
        );
    }
    w.daemon.wait_log(
        "(Command msg) messages are not supported: knockerd runs no command from a packet",
        Duration::from_secs(2),
    );
    w.daemon
        .wait_log("refused: not an authentic", Duration::from_secs(2));
    assert!(!marker.exists(), "a command from a packet ran");
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}
