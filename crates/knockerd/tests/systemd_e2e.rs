//! knockerd under systemd, end to end: the real daemon in a lab's server namespace, its
//! readiness messages on a socket of the test's own, `knockerd reload`'s verdict, `knockerd
//! status` and `knockerd teardown` against a running daemon.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use knockerd::ruleset;
use nix::sys::signal::Signal;

/// Runs `knockerd ARGS --config CONFIG` in the lab's server namespace (where its table is).
fn knockerd(world: &World, args: &[&str]) -> Output {
    world
        .lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .args(args)
        .arg("--config")
        .arg(&world.daemon.config)
        .output()
        .expect("run knockerd")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that `knockerd ARGS` fails and says `needle` on stderr; returns the output.
fn fails_saying(world: &World, args: &[&str], needle: &str) -> Output {
    let out = knockerd(world, args);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(needle),
        "knockerd {args:?} should say {needle:?}: {}",
        text(&out)
    );
    out
}

fn table_exists(world: &World) -> bool {
    world
        .lab
        .server
        .enter(ruleset::table_exists)
        .expect("enter")
        .expect("nft")
}

/// Whether a packet worker of knockerd `parent` runs (its command line names its parent).
fn worker_of(parent: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.contains(&&b"packet-worker"[..])
            && args
                .windows(2)
                .any(|w| w[0] == b"--parent" && w[1] == parent.as_bytes())
    })
}

/// One readiness message, with what was true the moment it arrived.
#[derive(Debug)]
struct Heard {
    message: String,
    table: bool,
    worker: bool,
}

/// Receives knockerd's readiness messages on `socket`, in the lab's server namespace, and
/// checks at each one whether the table exists and the packet worker runs; ends after
/// STOPPING=1, or when nothing arrives for a minute.
fn listen(lab: &Lab, socket: UnixDatagram, state: PathBuf) -> mpsc::Receiver<Heard> {
    let (tx, rx) = mpsc::channel();
    let _ = lab.server.spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let table = ruleset::table_exists().unwrap_or(false);
            let pid = std::fs::read_to_string(state.join("knockerd.pid")).unwrap_or_default();
            let worker = worker_of(pid.trim());
            let stop = message.contains("STOPPING=1");
            if tx
                .send(Heard {
                    message,
                    table,
                    worker,
                })
                .is_err()
                || stop
            {
                break;
            }
        }
    });
    rx
}

fn next(rx: &mpsc::Receiver<Heard>, daemon: &Knockerd) -> Heard {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no readiness message ({e}); log:\n{}", daemon.log()))
}

/// The RELOADING=1 message systemd 253 and later want: with a plausible MONOTONIC_USEC.
fn assert_reloading(h: &Heard) {
    assert!(h.message.starts_with("RELOADING=1\n"), "{h:?}");
    let usec: u64 = h
        .message
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {h:?}"))
        .parse()
        .expect("a number");
    assert!(usec > 0, "{h:?}");
}

#[test]
fn systemd_hears_ready_only_with_the_table_then_reloading_ready_and_stopping() {
    if !e2e(&[]) {
        return;
    }
    let sockdir = std::env::temp_dir().join(format!("knocker-notify-{}", std::process::id()));
    std::fs::create_dir_all(&sockdir).expect("dir");
    let sock = sockdir.join("notify.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixDatagram::bind(&sock).expect("bind the notify socket");
    let sock_s = sock.display().to_string();
    let config = door_config("", &format!("sequence = {ALICE_SEQ:?}\nopen_for = 5\n"));
    let mut rx = None;
    let mut world = World::start_with("sdnotify", |lab| {
        rx = Some(listen(lab, listener, state_dir(lab)));
        Knockerd::start_env(lab, &config, &[("NOTIFY_SOCKET", &sock_s)])
    });
    let rx = rx.expect("listener");

    // the first message is READY=1, and when it came the table and the packet worker were there
    let ready = next(&rx, &world.daemon);
    assert!(ready.message.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.message.contains("STATUS="), "{ready:?}");
    assert!(
        ready.table,
        "READY=1 before table inet knocker existed: {ready:?}"
    );
    assert!(
        ready.worker,
        "READY=1 before the packet worker ran: {ready:?}"
    );

    // a good reload: RELOADING=1, then READY=1
    world.daemon.signal(Signal::SIGHUP);
    assert_reloading(&next(&rx, &world.daemon));
    let again = next(&rx, &world.daemon);
    assert!(again.message.starts_with("READY=1\n"), "{again:?}");
    assert!(again.table && again.worker, "{again:?}");
    assert!(!again.message.contains("refused"), "{again:?}");

    // a refused reload: still RELOADING=1 then READY=1 (the old configuration runs), and the
    // status line says it was refused
    let good = std::fs::read_to_string(&world.daemon.config).expect("config");
    std::fs::write(&world.daemon.config, format!("{good}no_such_key = 1\n")).expect("write");
    world.daemon.signal(Signal::SIGHUP);
    assert_reloading(&next(&rx, &world.daemon));
    let refused = next(&rx, &world.daemon);
    assert!(refused.message.starts_with("READY=1\n"), "{refused:?}");
    assert!(refused.message.contains("reload refused"), "{refused:?}");

    world.daemon.signal(Signal::SIGTERM);
    let stopping = next(&rx, &world.daemon);
    assert!(stopping.message.starts_with("STOPPING=1"), "{stopping:?}");
    assert_eq!(world.daemon.wait_exit(Duration::from_secs(20)), Some(0));
    let _ = std::fs::remove_dir_all(&sockdir);
    world.finish();
}

#[test]
fn knockerd_reload_reports_the_verdict_and_a_refused_config_keeps_the_running_one() {
    if !e2e(&[]) {
        return;
    }
    let world = World::alice_door("sdreload", 30);
    let config = world.daemon.config.clone();
    let good = std::fs::read_to_string(&config).expect("config");

    let ok = knockerd(&world, &["reload"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "reloaded");

    // broken: an unknown key on the last line
    let broken = format!("{good}open_for_typo = 3\n");
    let line = broken.lines().count();
    std::fs::write(&config, &broken).expect("write");
    let refused = fails_saying(&world, &["reload"], "reload refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("{}:{line}", config.display())),
        "the daemon's reason names the file and line: {}",
        text(&refused)
    );
    assert!(err.contains("open_for_typo"), "{}", text(&refused));

    // the running configuration keeps working: alice's knock still opens
    world.alice_knocks_and_is_granted();
    assert_eq!(
        world.connect_within(
            &world.lab.alice,
            Lab::SERVER_FOR_ALICE,
            Duration::from_secs(3)
        ),
        Reach::Connected
    );

    // fixed again: reloaded
    std::fs::write(&config, &good).expect("write");
    let ok = knockerd(&world, &["reload"]);
    assert!(ok.status.success(), "{}", text(&ok));
    world.finish();
}

#[test]
fn knockerd_status_shows_doors_grants_openings_and_stops_and_fails_when_knockerd_is_gone() {
    if !e2e(&[]) {
        return;
    }
    let web = "[door.web]\nsequence = [\"7300\", \"7100\", \"7200\"]\nopen = []\nstart_command = [\"/bin/true\"]\nstop_command = [\"/bin/echo\", \"stop\", \"%IP%\"]\nstop_after = 40\n";
    let config = door_config(
        "",
        &format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\n\n{web}"),
    );
    let mut world = World::new("sdstatus", &config);
    world.alice_knocks_and_is_granted();
    world.knock(
        &world.lab.alice,
        Lab::SERVER_FOR_ALICE,
        &["7300", "7100", "7200"],
    );
    // the command-only door's opening is in the ledger once its start command ran
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&knockerd(&world, &["status", "--json"]).stdout)
        .contains("\"openings\": [\n    {")
    {
        assert!(
            std::time::Instant::now() < end,
            "door web never opened; log:\n{}",
            world.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = knockerd(&world, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    let pid = world.daemon.pid();
    assert!(t.contains(&format!("running (pid {pid})")), "{t}");
    assert!(t.contains("table inet knocker: loaded"), "{t}");
    assert!(
        t.contains(&format!("door ssh {} tcp/{SERVICE} ", Lab::ALICE)),
        "{t}"
    );
    assert!(
        t.contains(&format!("door web {} opened: its grant lasts", Lab::ALICE))
            && t.contains("its stop command is pending"),
        "{t}"
    );
    assert!(
        t.contains(&format!("door web {} due in", Lab::ALICE))
            && t.contains("/bin/echo stop 10.200.1.2"),
        "{t}"
    );

    let out = knockerd(&world, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(j["version"], 1, "{j}");
    assert_eq!(j["running"], true, "{j}");
    assert_eq!(j["pid"], pid, "{j}");
    assert_eq!(j["table"], true, "{j}");
    assert_eq!(
        j["state_dir"],
        world.state_dir().display().to_string(),
        "{j}"
    );
    let g = &j["grants"][0];
    assert_eq!(j["grants"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(g["door"], "ssh", "{j}");
    assert_eq!(g["address"], Lab::ALICE, "{j}");
    assert_eq!(g["service"], format!("tcp/{SERVICE}"), "{j}");
    assert_eq!(g["timeout_s"], 30, "{j}");
    let left = g["expires_in_s"].as_u64().expect("expires_in_s");
    assert!(left > 0 && left <= 30, "{j}");
    assert_eq!(j["openings"][0]["door"], "web", "{j}");
    assert_eq!(j["openings"][0]["address"], Lab::ALICE, "{j}");
    assert_eq!(j["openings"][0]["stop_pending"], true, "{j}");
    let stop = &j["pending_stops"][0];
    assert_eq!(stop["door"], "web", "{j}");
    assert_eq!(
        stop["command"],
        serde_json::json!(["/bin/echo", "stop", Lab::ALICE]),
        "{j}"
    );
    assert!(
        stop["due_in_s"].as_u64().is_some_and(|s| s > 0 && s <= 40),
        "{j}"
    );
    assert_eq!(j["problems"], serde_json::json!([]), "{j}");

    // knockerd stops (the table stays: on_stop = keep): status says it is not running
    world.daemon.signal(Signal::SIGTERM);
    assert_eq!(world.daemon.wait_exit(Duration::from_secs(20)), Some(0));
    fails_saying(&world, &["status"], "knockerd is not running");
    let out = knockerd(&world, &["status", "--json"]);
    assert!(!out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(j["running"], false, "{j}");
    assert_eq!(j["pid"], serde_json::Value::Null, "{j}");
    assert_eq!(j["table"], true, "{j}");
    // a clean stop ran the stop command: nothing is pending, and the opening says so
    assert_eq!(j["pending_stops"], serde_json::json!([]), "{j}");
    assert_eq!(j["openings"][0]["stop_pending"], false, "{j}");
    // nobody to reload
    fails_saying(&world, &["reload"], "not running");

    // and with the table gone, status says that too
    let out = knockerd(&world, &["teardown"]);
    assert!(out.status.success(), "{}", text(&out));
    fails_saying(&world, &["status"], "table inet knocker is missing");
    world.finish();
}

#[test]
fn teardown_refuses_while_knockerd_runs_unless_forced_and_the_stop_message_tells_the_truth() {
    if !e2e(&[]) {
        return;
    }
    let mut world = World::alice_door("sdteardown", 5);
    let pid = format!("knockerd is running (pid {})", world.daemon.pid());
    fails_saying(&world, &["teardown"], &pid);
    fails_saying(&world, &["teardown"], "systemctl stop knockerd");
    assert!(table_exists(&world), "a refused teardown left the table");

    // --force stops it first (a running knockerd puts its table back at once), then removes
    // the table and the include file
    let include = knockerd::ruleset::include_path(&world.state_dir());
    assert!(include.exists(), "knockerd keeps its include file");
    let out = knockerd(&world, &["teardown", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("stopped knockerd (pid"), "{}", text(&out));
    assert!(
        said.contains("removed table inet knocker"),
        "{}",
        text(&out)
    );
    assert_eq!(world.daemon.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(!table_exists(&world), "teardown --force left the table");
    assert!(!include.exists(), "teardown removes the include file");

    // the stop line was true when it was written: the table was still there
    let log = world.daemon.log();
    let last = log
        .lines()
        .rfind(|l| l.contains("stopped;"))
        .unwrap_or_else(|| panic!("no stop line; log:\n{log}"))
        .to_string();
    assert!(last.contains("stay closed"), "{last}");
    world.finish();
}
