//! knockd.conf doors end to end: the real knockerd runs a knockd.conf (`--knockd-conf`) in the
//! lab's server namespace, knocks are real packets from alice's namespace, and the doors'
//! commands append to a file of the test's own. Also `knockerd check` in the server namespace,
//! beside a live service on a knock port.
//!
//! Needs root, iproute2 and nftables; KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use knocker_lab::TempDir;

/// The lines the doors' commands wrote so far.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the file has at least `n` lines (or the deadline passes) and returns them.
fn wait_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    loop {
        let l = lines(path);
        if l.len() >= n || Instant::now() > end {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A world running `knockd.conf` with `--knockd-conf`.
fn knockd_world(tag: &str, conf: &str) -> World {
    let conf = conf.to_string();
    World::start_with(tag, move |lab| {
        Knockerd::start_args(lab, &["--knockd-conf", &conf])
    })
}

#[test]
fn every_one_time_line_runs_its_command_even_while_the_first_opening_counts() {
    if !e2e(&[]) {
        return;
    }
    let dir = TempDir::new("knockd-e2e-onetime");
    let out = dir.0.join("out");
    let seq = dir.write("sequences", "7103,7101:udp,7102\n7203,7201:udp,7202\n");
    let seq = seq.display();
    // no stop command: knockd runs the command on every successful knock
    let conf = dir.write(
        "knockd.conf",
        &format!(
            "[options]\n\tInterface = to-alice\n\n[wake]\n\tOne_Time_Sequences = {seq}\n\tSeq_Timeout = 5\n\tCommand = echo %IP% >> {}\n",
            out.display()
        ),
    );
    let w = knockd_world("kd1t", &conf.display().to_string());
    // the second line is knocked at once, well within the first opening's Cmd_Timeout (10 s)
    w.knock(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        &["7103", "7101:udp", "7102"],
    );
    w.knock(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        &["7203", "7201:udp", "7202"],
    );
    let got = wait_lines(&out, 2, Duration::from_secs(5));
    assert_eq!(
        got,
        [Lab::ALICE, Lab::ALICE],
        "each one-time line runs the command once\n{}",
        w.daemon.log()
    );
    let file = std::fs::read_to_string(dir.0.join("sequences")).expect("sequences");
    assert_eq!(
        file, "#103,7101:udp,7102\n#203,7201:udp,7202\n",
        "both lines are used"
    );
    w.finish();
}

#[test]
fn a_knockd_conf_watches_a_live_service_port_without_breaking_it() {
    if !e2e(&[]) {
        return;
    }
    const GAME: u16 = 25565;
    let dir = TempDir::new("knockd-e2e-wake");
    let out = dir.0.join("out");
    // wake-on-connect: the player's own connection is the knock, and knockd's `ack` sees only
    // the handshake's last packet and what follows, never the SYN
    let conf = dir.write(
        "knockd.conf",
        &format!(
            "[options]\n\tInterface = to-alice\n\n[game]\n\tSequence = {GAME}\n\tTCPFlags = ack\n\tCommand = echo %IP% >> {}\n",
            out.display()
        ),
    );
    let conf = conf.display().to_string();
    let w = knockd_world("kdwake", &conf);
    let game = w
        .lab
        .server
        .enter(|| TcpListener::bind(("0.0.0.0", GAME)))
        .expect("enter")
        .expect("listen");
    let addr = SocketAddr::new(ip(Lab::SERVER_FOR_ALICE), GAME);
    for _ in 0..2 {
        assert_eq!(
            w.lab
                .alice
                .enter(move || try_connect(addr, PROBE))
                .expect("enter"),
            Reach::Connected,
            "the service on the knock port must stay reachable\n{}",
            w.daemon.log()
        );
    }
    let got = wait_lines(&out, 1, Duration::from_secs(5));
    assert!(
        !got.is_empty() && got.iter().all(|l| l == Lab::ALICE),
        "the door fires for alice: {got:?}\n{}",
        w.daemon.log()
    );
    drop(game);

    // `check` on the same knockd.conf says the knocks are watched, not dropped
    let check = w
        .lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .args(["check", "--knockd-conf", &conf])
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("watches (logged to NFLOG group 4100, not dropped: your firewall decides, as under knockd): tcp/25565"),
        "{text}"
    );
    assert!(!text.contains("a local service listens on"), "{text}");
    w.finish();
}

#[test]
fn check_warns_when_a_native_knock_port_is_a_live_service() {
    if !e2e(&[]) {
        return;
    }
    let dir = TempDir::new("knockd-e2e-busy");
    let conf = dir.write(
        "knockerd.toml",
        "[door.ssh]\nsequence = [\"9000:udp\", \"25565\", \"7002\"]\nopen = [\"tcp/22\"]\n",
    );
    let conf = conf.display().to_string();
    let lab = Lab::new("kdbusy").expect("lab");
    let check = |lab: &Lab| {
        let o = lab
            .server
            .command(env!("CARGO_BIN_EXE_knockerd"))
            .args(["check", "--config", &conf])
            .output()
            .expect("check");
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let quiet = check(&lab);
    assert!(!quiet.contains("a local service listens on"), "{quiet}");
    let (tcp, udp) = lab
        .server
        .enter(|| {
            (
                TcpListener::bind(("::", 25565)).expect("listen"),
                UdpSocket::bind(("0.0.0.0", 9000)).expect("bind"),
            )
        })
        .expect("enter");
    let text = check(&lab);
    for port in ["tcp/25565", "udp/9000"] {
        assert!(
            text.contains(&format!("warning: a local service listens on {port}, a knock port: knockerd drops every packet to it, so the service cannot be reached")),
            "{port}: {text}"
        );
    }
    assert!(!text.contains("listens on tcp/7002"), "{text}");
    drop((tcp, udp));
}
