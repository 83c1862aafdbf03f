//! `knockerd replay` on real recordings: tcpdump captures, in the server's namespace, alice's
//! right sequence, mallory's wrong one and an fwknop SPA packet sent twice (`-i any`: Linux
//! cooked SLL2; on the veth: Ethernet, nanosecond timestamps); the real knockerd binary replays
//! them, as an unprivileged user, and prints the grants and refusals. A replay loads no table
//! and writes no ledger. Needs root, iproute2, nftables, tcpdump and fwknop-client.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use knocker_engine::Service;

const KEY: &str = "fwknoptestkey123";
const HMAC: &str = "fwknophmackey12345678";

/// A directory of the test's own, removed when dropped; readable by the unprivileged replay.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("knocker-replay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// tcpdump writing `file` in `ns`, once it says it listens.
struct Tcpdump(Child);

impl Tcpdump {
    fn start(ns: &Netns, args: &[&str], file: &Path) -> Tcpdump {
        let mut child = ns
            .command("tcpdump")
            .args(["-n", "-U", "-s", "0", "-Z", "root", "-w"])
            .arg(file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        let log = Log::echoed("tcpdump");
        log.capture(&mut child, |_| {});
        if let Err(e) = log.wait_for("listening on", Duration::from_secs(10), Some(&mut child)) {
            panic!("tcpdump {e}");
        }
        Tcpdump(child)
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.0.wait();
    }
}

/// Waits until `file` holds at least `n` packets that `config`'s doors watch (tcpdump writes
/// each packet as it sees it, `-U`).
fn wait_watched(config: &knockerd::config::Config, file: &Path, n: u64) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let watched = std::fs::read(file).ok().and_then(|bytes| {
            knockerd::source::replay::replay(
                config,
                &bytes[..],
                &mut std::io::sink(),
                &mut |_, _| {},
            )
            .ok()
            .map(|s| s.watched)
        });
        if watched.is_some_and(|w| w >= n) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} has {watched:?} watched packets, not {n}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `knockerd ARGS replay FILE` in `ns` (as `nobody` when `unprivileged`): its output, and
/// what it said on standard error.
fn replay(ns: &Netns, args: &[&str], file: &Path, unprivileged: bool) -> (String, String) {
    let knockerd = env!("CARGO_BIN_EXE_knockerd");
    let mut cmd = if unprivileged {
        let mut c = ns.command("setpriv");
        c.args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            knockerd,
        ]);
        c
    } else {
        ns.command(knockerd)
    };
    let out = cmd
        .args(args)
        .arg("replay")
        .arg(file)
        .output()
        .expect("run knockerd replay");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "knockerd replay failed:\n{stdout}{stderr}"
    );
    (stdout, stderr)
}

fn knock(from: &Netns, host: &str, seq: &[&str]) {
    let host = ip(host);
    let seq: Vec<Service> = seq.iter().map(|s| s.parse().expect("service")).collect();
    from.enter(move || seq.iter().try_for_each(|s| send_knock(host, *s)))
        .expect("enter")
        .expect("knock");
}

fn load(source: knockerd::config::loader::ConfigFile) -> knockerd::config::Config {
    knockerd::config::loader::load(&source)
        .expect("config")
        .config
}

#[test]
fn recorded_knocks_replay_to_the_same_grants_and_refusals() {
    if !e2e(&["tcpdump", "fwknop", "setpriv"]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new("rec");
    let lab = Lab::new("rpl").expect("lab");
    let names = lab.names();
    let native = dir.0.join("knockerd.toml");
    let state = dir.0.join("state");
    std::fs::write(
        &native,
        format!(
            "[daemon]\nstate_dir = {:?}\n\n[door.ssh]\nsequence = {ALICE_SEQ:?}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\n",
            state.display().to_string()
        ),
    )
    .expect("config");
    let access = dir.0.join("access.conf");
    std::fs::write(
        &access,
        format!("SOURCE ANY\nOPEN_PORTS tcp/{SERVICE}\nKEY {KEY}\nHMAC_KEY {HMAC}\nFW_ACCESS_TIMEOUT 5\n"),
    )
    .expect("access.conf");
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let any = dir.0.join("any.pcap");
    let veth = dir.0.join("veth.pcap");
    {
        let _a = Tcpdump::start(&lab.server, &["-i", "any", "tcp or udp"], &any);
        let _b = Tcpdump::start(
            &lab.server,
            &[
                "-i",
                "to-alice",
                "--time-stamp-precision=nano",
                "tcp or udp",
            ],
            &veth,
        );
        knock(&lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
        // mallory's second knock is on a wrong port of the door
        knock(
            &lab.mallory,
            Lab::SERVER_FOR_MALLORY,
            &["7000", "8000", "9000:udp"],
        );
        let spa = fwknop_packet(
            &lab.alice,
            Lab::SERVER_FOR_ALICE,
            Lab::ALICE,
            &dir.0.join("spa-packet"),
            KEY,
            HMAC,
        );
        send_udp(&lab.alice, Lab::SERVER_FOR_ALICE, 62201, spa.clone());
        // the same packet again: a replay
        send_udp(&lab.alice, Lab::SERVER_FOR_ALICE, 62201, spa);
        let c = load(knockerd::config::loader::ConfigFile::Native(native.clone()));
        wait_watched(&c, &any, 6);
        wait_watched(&c, &veth, 3);
        let f = load(knockerd::config::loader::ConfigFile::Fwknop {
            access: access.clone(),
            fwknopd_conf: None,
            allow_legacy: false,
            nat_networks: Vec::new(),
        });
        wait_watched(&f, &any, 2);
        wait_watched(&f, &veth, 2);
    }

    let config = ["--config", native.to_str().expect("path")];
    // -i any: SLL2 (or SLL with an older libpcap); the sequence door, as nobody
    let (out, err) = replay(&lab.server, &config, &any, true);
    let grant = format!(
        " grant door=ssh src={} open=tcp/{SERVICE} for=30s\n",
        Lab::ALICE
    );
    assert_eq!(out.matches(&grant).count(), 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            " refuse door=ssh src={} reason=\"knock 2 of 3 was on a wrong port (tcp/8000)\"",
            Lab::MALLORY
        )),
        "{out}{err}"
    );
    assert_eq!(out.matches(" grant ").count(), 1, "{out}");
    assert!(out.lines().all(|l| l.starts_with("t=")), "{out}");
    assert!(err.contains("1 grants, 1 refusals"), "{err}");
    // the capture on the veth (Ethernet, nanoseconds) holds alice's knocks only
    let (out, err) = replay(&lab.server, &config, &veth, true);
    assert_eq!(out.matches(&grant).count(), 1, "{out}{err}");
    assert!(!out.contains(Lab::MALLORY), "{out}");

    // the fwknop door: the packet opens once, its second copy is a replay
    let fwknop = ["--fwknop-access", access.to_str().expect("path")];
    for file in [&any, &veth] {
        let (out, err) = replay(&lab.server, &fwknop, file, false);
        let grants: Vec<&str> = out.lines().filter(|l| l.contains(" grant ")).collect();
        assert_eq!(grants.len(), 1, "{out}{err}");
        assert!(
            grants[0].contains(&format!(" src={} open=tcp/{SERVICE} for=5s", Lab::ALICE)),
            "{out}"
        );
        let refusals: Vec<&str> = out.lines().filter(|l| l.contains(" refuse ")).collect();
        assert_eq!(refusals.len(), 1, "{out}{err}");
        assert!(
            refusals[0].ends_with("reason=\"a replay of a request already seen\""),
            "{out}"
        );
    }

    // nothing was touched: no table, no ledger
    let tables = lab.server.exec("nft", &["list", "tables"]).expect("nft");
    assert!(!tables.contains("knocker"), "{tables}");
    assert!(!state.exists(), "a replay wrote its state directory");
    drop(lab);
    lab::assert_removed(&names);
}

/// A classic pcap file (raw IP) of these packets, one second apart.
fn pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    f
}

#[test]
fn a_replay_touches_no_firewall_and_no_ledger() {
    if !e2e(&[]) {
        return;
    }
    let dir = Dir::new("none");
    let ns = Netns::unique("rplfw").expect("netns");
    let state = dir.0.join("state");
    let config = dir.0.join("knockerd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = {:?}\n\n[door.ssh]\nsequence = [\"8000\", \"7000\", \"9000\"]\nopen = [\"tcp/22\"]\nstart_command = [\"touch\", {:?}]\n",
            state.display().to_string(),
            dir.0.join("started").display().to_string()
        ),
    )
    .expect("config");
    let (a, b) = (ip("10.200.9.2"), ip("10.200.9.1"));
    let file = dir.0.join("k.pcap");
    std::fs::write(
        &file,
        pcap(&[
            lab::packet::syn(a, b, 40000, 8000, 1),
            lab::packet::syn(a, b, 40001, 7000, 1),
            lab::packet::syn(a, b, 40002, 9000, 1),
        ]),
    )
    .expect("pcap");
    let (out, _) = replay(
        &ns,
        &["--config", config.to_str().expect("path")],
        &file,
        false,
    );
    assert_eq!(
        out,
        "t=1700000000.000000 progress door=ssh src=10.200.9.2 knock=1/3\n\
         t=1700000001.000000 progress door=ssh src=10.200.9.2 knock=2/3\n\
         t=1700000002.000000 grant door=ssh src=10.200.9.2 open=tcp/22 for=30s\n",
        "the door opens in the replay, on the recorded time"
    );
    let tables = ns.exec("nft", &["list", "tables"]).expect("nft");
    assert!(
        tables.trim().is_empty(),
        "a replay loaded a table: {tables}"
    );
    assert!(!state.exists(), "a replay wrote its state directory");
    assert!(
        !dir.0.join("started").exists(),
        "a replay ran the start command"
    );
}

#[test]
fn a_file_that_is_no_capture_is_refused_with_the_reason() {
    let dir = Dir::new("bad");
    let config = dir.0.join("knockerd.toml");
    std::fs::write(
        &config,
        "[door.ssh]\nsequence = [\"8000\", \"7000\", \"9000\"]\nopen = [\"tcp/22\"]\n",
    )
    .expect("config");
    let file = dir.0.join("not.pcap");
    std::fs::write(&file, "GIF89a, not a capture").expect("file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knockerd"))
        .arg("--config")
        .arg(&config)
        .arg("replay")
        .arg(&file)
        .output()
        .expect("run knockerd replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}: not a pcap or pcapng file", file.display())),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
