//! End-to-end: the real knockerd against real nftables and real packets, in namespaces.
//! Needs root, iproute2, nftables, Debian's `knock` (package knockd) and nmap; scripts/test.sh
//! installs them. KNOCKER_SKIP_E2E=1 skips on purpose; otherwise a missing prerequisite fails.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use knocker_engine::TcpFlags;
use nix::sys::signal::Signal;

const SEQ: &str = "sequence = [\"7000\", \"9000:udp\", \"8000\"]\nopen_for = 5\n";

#[test]
fn debian_knock_opens_for_alice_and_only_alice() {
    if !e2e(&["knock"]) {
        return;
    }
    let w = World::new("knock", &door_config("", SEQ));
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "protected before any knock"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "protected for alice too"
    );
    w.debian_knock(
        &w.lab.alice,
        &[Lab::SERVER_FOR_ALICE, "7000", "9000:udp", "8000"],
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "mallory still gets nothing"
    );
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].to, Lab::ALICE);
    assert_eq!(g[0].service, format!("tcp/{SERVICE}"));
    assert_eq!(g[0].timeout_s, 5);
    w.daemon.wait_log(
        &format!("door=ssh src={} grant tcp/{SERVICE} for 5s", Lab::ALICE),
        Duration::from_secs(1),
    );
    w.finish();
}

#[test]
fn knock_ports_and_protected_ports_never_answer() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("silent", &door_config("", SEQ));
    for port in [7000u16, 8000, SERVICE] {
        let addr = std::net::SocketAddr::new(ip(Lab::SERVER_FOR_MALLORY), port);
        let r = w
            .lab
            .mallory
            .enter(move || try_connect(addr, PROBE))
            .expect("enter");
        assert_eq!(r, Reach::Silent, "port {port} must look filtered");
    }
    // an unrelated closed port does answer (RST), so silence above is knocker's doing
    let addr = std::net::SocketAddr::new(ip(Lab::SERVER_FOR_MALLORY), 7999);
    assert_eq!(
        w.lab
            .mallory
            .enter(move || try_connect(addr, PROBE))
            .expect("enter"),
        Reach::Refused
    );
    w.finish();
}

#[test]
fn tcp_flag_filter_ignores_non_syn_knocks() {
    if !e2e(&[]) {
        return;
    }
    let conf = door_config(
        "",
        "sequence = [\"7000\", \"9000\", \"8000\"]\ntcp_flags = \"syn,!ack\"\nopen_for = 5\n",
    );
    let w = World::new("flags", &conf);
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (
        Lab::ALICE.parse().expect("ip"),
        Lab::SERVER_FOR_ALICE.parse().expect("ip"),
    );
    let send = |flags: TcpFlags, ports: &'static [u16]| {
        w.lab
            .alice
            .enter(move || {
                ports
                    .iter()
                    .try_for_each(|p| knocker_lab::send_raw_tcp4(src, dst, 40000, *p, flags))
            })
            .expect("enter")
            .expect("raw send");
    };
    let ack = TcpFlags::ACK;
    let synack = TcpFlags::SYN.union(TcpFlags::ACK);
    send(ack, &[7000, 9000, 8000]);
    send(synack, &[7000, 9000, 8000]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.grants().is_empty(),
        "ACK and SYN+ACK knocks must not open"
    );
    // filtered packets neither advance nor reset: SYNs interleaved with ACKs still open
    send(TcpFlags::SYN, &[7000]);
    send(ack, &[8000]);
    send(TcpFlags::SYN, &[9000]);
    send(synack, &[7000]);
    send(TcpFlags::SYN, &[8000]);
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(
        g.len(),
        1,
        "SYN knocks with ACK noise in between must open: {g:?}"
    );
    assert_eq!(g[0].to, Lab::ALICE);
    // knockerd handles packets in order: had the ACK or SYN+ACK knocks opened, however late,
    // that grant would be logged before this one, and this one would be a refresh
    let log = w.daemon.log();
    let opened = |what: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("door=ssh src={} {what} ", Lab::ALICE)))
            .count()
    };
    assert_eq!(
        (opened("grant"), opened("refresh")),
        (1, 0),
        "only the SYN knocks opened:\n{log}"
    );
    w.finish();
}

#[test]
fn udp_knocks_with_debian_knock() {
    if !e2e(&["knock"]) {
        return;
    }
    let w = World::new(
        "udp",
        &door_config(
            "",
            "sequence = [\"7000:udp\", \"9000:udp\", \"8000:udp\"]\nopen_for = 5\n",
        ),
    );
    w.debian_knock(
        &w.lab.alice,
        &["-u", Lab::SERVER_FOR_ALICE, "7000", "9000", "8000"],
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    w.finish();
}

#[test]
fn ipv6_knock_opens_over_ipv6_only_for_alice() {
    if !e2e(&["knock"]) {
        return;
    }
    let w = World::new("v6", &door_config("", SEQ));
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE6),
        Reach::Silent
    );
    w.debian_knock(
        &w.lab.alice,
        &["-6", Lab::SERVER_FOR_ALICE6, "7000", "9000:udp", "8000"],
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE6, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY6),
        Reach::Silent
    );
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].to, Lab::ALICE6);
    // the IPv6 grant does not open IPv4
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    w.finish();
}

/// Sends one SYN to every port, in order, from mallory.
fn syn_sweep(w: &World, ports: Vec<u16>) {
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (
        Lab::MALLORY.parse().expect("ip"),
        Lab::SERVER_FOR_MALLORY.parse().expect("ip"),
    );
    w.lab
        .mallory
        .enter(move || {
            for p in ports {
                knocker_lab::send_raw_tcp4(src, dst, 45000, p, TcpFlags::SYN)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .expect("enter")
        .expect("sweep");
}

/// Sends one UDP datagram to every port, in order, from mallory.
fn udp_sweep(w: &World, ports: Vec<u16>) {
    let dst = ip(Lab::SERVER_FOR_MALLORY);
    w.lab
        .mallory
        .enter(move || {
            ports
                .into_iter()
                .try_for_each(|p| send_knock(dst, knocker_engine::Service::udp(p)))
        })
        .expect("enter")
        .expect("sweep");
}

#[test]
fn port_sweeps_in_either_direction_never_open() {
    if !e2e(&["nmap"]) {
        return;
    }
    let w = World::new(
        "sweep",
        &door_config(
            "",
            "sequence = [\"7000\", \"9000\", \"8000\", \"7500:udp\"]\nopen_for = 5\n",
        ),
    );
    let up: Vec<u16> = (1..=65535).collect();
    let down: Vec<u16> = (1..=65535).rev().collect();
    syn_sweep(&w, up.clone());
    syn_sweep(&w, down.clone());
    udp_sweep(&w, up.clone());
    udp_sweep(&w, down);
    // a combined sweep: tcp then udp on each port, upward
    for chunk in up.chunks(4096) {
        syn_sweep(&w, chunk.to_vec());
        udp_sweep(&w, chunk.to_vec());
    }
    // nmap's sequential SYN scan over the knock range (-r: ports in order)
    w.lab
        .mallory
        .exec(
            "nmap",
            &[
                "-n",
                "-Pn",
                "-sS",
                "-r",
                "-T5",
                "--max-retries",
                "0",
                "-p",
                "6990-9010",
                Lab::SERVER_FOR_MALLORY,
            ],
        )
        .expect("nmap");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.grants().is_empty(),
        "a sweep opened the door: {:?}",
        w.grants()
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    // the knock did reach knockerd: it saw and reset progress (the test is not vacuous)
    assert!(
        w.daemon.log().contains("knock 1/4"),
        "knockerd saw no sweep packet at all"
    );
    w.finish();
}

#[test]
fn grant_closes_at_its_timeout_and_open_connections_survive() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("timeout", 2);
    w.alice_knocks_and_is_granted();
    let addr = std::net::SocketAddr::new(ip(Lab::SERVER_FOR_ALICE), SERVICE);
    let conn = w
        .lab
        .alice
        .enter(move || std::net::TcpStream::connect_timeout(&addr, PROBE))
        .expect("enter")
        .expect("connect");
    assert!(
        w.wait_grants(0, Duration::from_secs(5)).is_empty(),
        "the kernel must have removed the element"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "new connections fail after the timeout"
    );
    let mut c = conn;
    std::io::Write::write_all(&mut c, b"ping").expect("write on the open connection");
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 4];
    std::io::Read::read_exact(&mut c, &mut buf).expect("echo on the open connection");
    assert_eq!(&buf, b"ping");
    w.finish();
}

#[test]
fn kill_9_leaves_ports_closed_and_grants_still_expire() {
    if !e2e(&[]) {
        return;
    }
    let mut w = World::alice_door("kill", 3);
    w.alice_knocks_and_is_granted();
    w.daemon.signal(Signal::SIGKILL);
    assert_eq!(
        w.daemon.wait_exit(Duration::from_secs(5)),
        None,
        "killed by a signal"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Connected,
        "the open grant outlives knockerd"
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "fail closed: still protected"
    );
    assert!(
        w.wait_grants(0, Duration::from_secs(6)).is_empty(),
        "the kernel expired the grant with knockerd dead"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    w.finish();
}

#[test]
fn repeated_knock_refreshes_without_duplicates() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("refresh", 10);
    w.alice_knocks_and_is_granted();
    std::thread::sleep(Duration::from_millis(2200));
    let before = w.grants();
    assert!(before[0].expires_s <= 8, "{before:?}");
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    w.daemon.wait_log("refresh", Duration::from_secs(2));
    let after = w.grants();
    assert_eq!(after.len(), 1, "one element, not two: {after:?}");
    assert!(
        after[0].expires_s >= 9,
        "the timeout was refreshed: {after:?}"
    );
    w.finish();
}

#[test]
fn sigterm_exits_0_and_on_stop_decides_about_grants() {
    if !e2e(&[]) {
        return;
    }
    for (on_stop, kept) in [("keep", 1usize), ("withdraw", 0)] {
        let mut w = World::new(
            "stop",
            &door_config(&format!("on_stop = \"{on_stop}\""), SEQ),
        );
        w.alice_knocks_and_is_granted();
        w.daemon.signal(Signal::SIGTERM);
        assert_eq!(
            w.daemon.wait_exit(Duration::from_secs(10)),
            Some(0),
            "exit 0 on SIGTERM"
        );
        assert_eq!(w.grants().len(), kept, "on_stop = {on_stop}");
        assert_eq!(
            w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
            Reach::Silent,
            "fail closed after stop"
        );
        w.finish();
    }
}

#[test]
fn default_drop_ruleset_needs_the_mark_line_and_check_says_so() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("dflt", &door_config("", SEQ));
    // the admin's own default-drop firewall, as on a hardened Debian host
    let admin = "table inet filter {\n chain input {\n  type filter hook input priority filter; policy drop;\n  ct state established,related accept\n  iif lo accept\n }\n}\n";
    w.lab
        .server
        .enter(move || knockerd::ruleset::nft(&["-f", "-"], Some(admin)))
        .expect("enter")
        .expect("admin ruleset");
    let out = w.check();
    assert!(
        out.contains("warning: chain inet filter input")
            && out.contains("meta mark & 0x4b4e0000 == 0x4b4e0000 accept"),
        "{out}"
    );
    w.alice_knocks_and_is_granted();
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "granted, but the admin's chain drops it"
    );
    // the one line from the docs
    w.lab
        .server
        .exec(
            "nft",
            &[
                "add",
                "rule",
                "inet",
                "filter",
                "input",
                "meta",
                "mark",
                "&",
                "0x4b4e0000",
                "==",
                "0x4b4e0000",
                "accept",
            ],
        )
        .expect("add the mark line");
    let out = w.check();
    assert!(!out.contains("warning: chain"), "{out}");
    assert!(
        out.contains("no other chain would drop granted packets"),
        "{out}"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    w.finish();
}

#[test]
fn reload_takes_a_good_config_and_keeps_the_running_one_on_a_bad_one() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("reload", &door_config("", SEQ));
    std::fs::write(
        &w.daemon.config,
        "[door.ssh]\nsequence = [\"1\", \"2\", \"3\"]\nopen = [\"22\"]\n",
    )
    .expect("write");
    w.daemon.signal(Signal::SIGHUP);
    w.daemon.wait_log(
        "reload refused, keeping the running configuration",
        Duration::from_secs(3),
    );
    assert!(
        w.daemon.log().contains(":2: door \"ssh\""),
        "file:line in the refusal: {}",
        w.daemon.log()
    );
    // still the old door
    w.alice_knocks_and_is_granted();
    // a good config with a new sequence replaces it
    std::fs::write(
        &w.daemon.config,
        door_config(
            "",
            "sequence = [\"6000\", \"6002\", \"6001\"]\nopen_for = 5\n",
        ),
    )
    .expect("write");
    w.daemon.signal(Signal::SIGHUP);
    w.daemon
        .wait_log("configuration reloaded", Duration::from_secs(3));
    assert_eq!(w.grants().len(), 1, "a reload keeps open grants");
    w.knock(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        &["6000", "6002", "6001"],
    );
    let g = w.wait_grants(2, Duration::from_secs(2));
    assert!(
        g.iter().any(|g| g.to == Lab::MALLORY),
        "new sequence works: {g:?}"
    );
    w.finish();
}

#[test]
fn knocker_client_profile_opens_the_door() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("client", 5);
    let dir = std::env::temp_dir().join(format!("knocker-e2e-client-{}", std::process::id()));
    let client = knocker_client();
    let run = |args: &[&str]| {
        let out = w
            .lab
            .alice
            .command(&client.to_string_lossy())
            .args(args)
            .env("KNOCKER_CONFIG_DIR", &dir)
            .output()
            .expect("run knocker");
        assert!(
            out.status.success(),
            "knocker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "profile",
        "add",
        "lab",
        Lab::SERVER_FOR_ALICE,
        "7000",
        "9000:udp",
        "8000",
    ]);
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    run(&["knock", "lab"]);
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}

#[test]
fn teardown_removes_only_knockers_table_and_status_lists_grants() {
    if !e2e(&[]) {
        return;
    }
    let mut w = World::alice_door("teardown", 30);
    let admin = "table inet filter {\n chain input {\n  type filter hook input priority filter; policy accept;\n }\n}\n";
    w.lab
        .server
        .enter(move || knockerd::ruleset::nft(&["-f", "-"], Some(admin)))
        .expect("enter")
        .expect("admin ruleset");
    w.alice_knocks_and_is_granted();
    let knockerd_cmd = |args: &[&str]| {
        let out = w
            .lab
            .server
            .command(env!("CARGO_BIN_EXE_knockerd"))
            .args(args)
            .output()
            .expect("run knockerd");
        assert!(
            out.status.success(),
            "knockerd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let config = w.daemon.config.display().to_string();
    let status = knockerd_cmd(&["status", "--config", &config]);
    assert!(
        status.contains(&format!("door ssh {} tcp/{SERVICE} ", Lab::ALICE)),
        "{status}"
    );
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "stopped knockerd still protects"
    );
    let include = knockerd::ruleset::include_path(&w.state_dir());
    assert!(include.exists(), "knockerd keeps its include file");
    assert_eq!(
        knockerd_cmd(&["teardown", "--config", &config]).trim(),
        format!(
            "removed table inet knocker\nremoved {} (an `include` of it in /etc/nftables.conf now loads nothing)",
            include.display()
        )
    );
    assert!(!include.exists(), "teardown removes the include file");
    let tables = w
        .lab
        .server
        .exec("nft", &["list", "tables"])
        .expect("nft list tables");
    assert_eq!(
        tables.trim(),
        "table inet filter",
        "only the admin's table is left"
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Connected,
        "teardown stops protecting"
    );
    assert_eq!(
        knockerd_cmd(&["teardown"]).trim(),
        "no table inet knocker: nothing to remove"
    );
    // knockerd stopped and its table gone: status says both, and fails
    let out = w
        .lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .args(["status", "--config", &config])
        .output()
        .expect("run knockerd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("table inet knocker is missing"), "{err}");
    w.finish();
}

#[test]
fn one_time_lines_open_once_are_marked_and_stay_used_across_a_restart() {
    if !e2e(&[]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("knocker-e2e-onetime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let seq_file = dir.join("ssh.seq");
    std::fs::write(&seq_file, " 7000,9000:udp,8000\n 6000,6200,6100\n").expect("write");
    let conf = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.ssh]\nkind = \"one-time\"\none_time_sequences = {:?}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 5\n",
        seq_file.display().to_string()
    );
    let mut w = World::new("onetime", &conf);
    w.knock(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        &["7000", "9000:udp", "8000"],
    );
    assert_eq!(w.wait_grants(1, Duration::from_secs(2)).len(), 1);
    assert_eq!(
        std::fs::read_to_string(&seq_file).expect("read"),
        "#7000,9000:udp,8000\n 6000,6200,6100\n",
        "the used line is marked in place, as knockd does"
    );
    // mallory replays the recorded line: nothing opens for her
    w.knock(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        &["7000", "9000:udp", "8000"],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.grants().len(), 1, "{:?}", w.grants());
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    // a restart reads the file again: the used line stays used, the next one works
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &conf);
    w.knock(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        &["7000", "9000:udp", "8000"],
    );
    w.knock(
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        &["6000", "6200", "6100"],
    );
    let g = w.wait_grants(2, Duration::from_secs(2));
    assert!(
        g.iter().any(|g| g.to == Lab::MALLORY),
        "the second line opens: {g:?}"
    );
    w.daemon
        .wait_log("no one-time sequence left", Duration::from_secs(2));
    assert_eq!(
        std::fs::read_to_string(&seq_file).expect("read"),
        "#7000,9000:udp,8000\n#6000,6200,6100\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}

#[test]
fn a_stop_command_pending_when_knockerd_is_killed_runs_at_the_next_start() {
    if !e2e(&[]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("knocker-e2e-stopcmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("commands.log");
    let conf = door_config(
        "",
        &format!(
            "sequence = [\"7000\", \"9000:udp\", \"8000\"]\nopen_for = 2\nshell = true\nstart_command = \"echo start %IP% >> {0}\"\nstop_command = \"echo stop %IP% >> {0}\"\nstop_after = 2\n",
            log.display()
        ),
    );
    let mut w = World::new("stopcmd", &conf);
    w.alice_knocks_and_is_granted();
    w.daemon
        .wait_log("start command for", Duration::from_secs(2));
    // the same knock again while open: no second start command
    w.alice_knocks_and_is_granted();
    w.daemon.wait_log("refresh", Duration::from_secs(2));
    w.daemon.signal(Signal::SIGKILL);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(5)), None);
    std::thread::sleep(Duration::from_millis(2500));
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        read(),
        format!("start {}\n", Lab::ALICE),
        "killed before its stop command ran"
    );
    w.daemon = Knockerd::start(&w.lab, &conf);
    w.daemon.wait_log("running it now", Duration::from_secs(2));
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while read().lines().count() < 2 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        read(),
        format!("start {0}\nstop {0}\n", Lab::ALICE),
        "the overdue stop command ran once"
    );
    // and not again after another restart
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &conf);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(), format!("start {0}\nstop {0}\n", Lab::ALICE));
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}

/// Writes a key file (mode 0600) and the client's profile for a rotating door; returns the dir.
fn rotating_setup(tag: &str, mode: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("knocker-e2e-rot-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("door.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let extra = if mode == "hotp" {
        "counter_file = \"door.count\"\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("profiles.toml"),
        format!(
            "[profile.lab]\nhost = \"{}\"\nkind = \"rotating\"\nkey_file = \"door.key\"\nmode = \"{mode}\"\n{extra}knocks = 4\nports = \"40000-40999\"\n",
            Lab::SERVER_FOR_ALICE
        ),
    )
    .expect("profile");
    dir
}

fn rotating_config(dir: &std::path::Path, mode: &str) -> String {
    door_config(
        "",
        &format!(
            "kind = \"rotating\"\nkey_file = {:?}\nmode = \"{mode}\"\nknocks = 4\nports = \"40000-40999\"\nopen_for = 30\n",
            dir.join("door.key").display().to_string()
        ),
    )
}

/// Runs the client in alice's namespace with the lab profile directory.
fn client(w: &World, dir: &std::path::Path, args: &[&str]) -> String {
    let out = w
        .lab
        .alice
        .command(&knocker_client().to_string_lossy())
        .args(args)
        .env("KNOCKER_CONFIG_DIR", dir)
        .output()
        .expect("run knocker");
    assert!(
        out.status.success(),
        "knocker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn rotating_totp_door_opens_once_per_step_and_replays_fail_also_after_a_restart() {
    if !e2e(&[]) {
        return;
    }
    let dir = rotating_setup("totp", "totp");
    let conf = rotating_config(&dir, "totp");
    let mut w = World::new("totp", &conf);
    // stay clear of a step boundary, so the printed sequence is the one knocked
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    };
    if now() % 30 > 24 {
        std::thread::sleep(Duration::from_secs(30 - now() % 30 + 1));
    }
    let at = now().to_string();
    let printed = client(&w, &dir, &["sequence", "lab", "--at", &at]);
    client(&w, &dir, &["knock", "lab"]);
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(
        g.len(),
        1,
        "alice's rotating knock opens: {g:?}\n{}",
        w.daemon.log()
    );
    assert_eq!(g[0].to, Lab::ALICE);
    let ports: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(ports.len(), 4, "{printed}");
    // mallory replays the very ports alice sent
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &ports);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.grants().iter().all(|g| g.to != Lab::MALLORY),
        "replay within the step: {:?}",
        w.grants()
    );
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &conf);
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &ports);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.grants().iter().all(|g| g.to != Lab::MALLORY),
        "replay after a restart: {:?}",
        w.grants()
    );
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}

#[test]
fn rotating_hotp_door_accepts_each_counter_once() {
    if !e2e(&[]) {
        return;
    }
    let dir = rotating_setup("hotp", "hotp");
    let conf = rotating_config(&dir, "hotp");
    let w = World::new("hotp", &conf);
    let first = client(&w, &dir, &["sequence", "lab"]);
    client(&w, &dir, &["knock", "lab"]);
    assert_eq!(
        w.wait_grants(1, Duration::from_secs(2)).len(),
        1,
        "{}",
        w.daemon.log()
    );
    // replaying counter 0 from mallory opens nothing
    let ports: Vec<&str> = first.split_whitespace().collect();
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &ports);
    std::thread::sleep(Duration::from_millis(300));
    assert!(w.grants().iter().all(|g| g.to != Lab::MALLORY));
    // the client moved on to counter 1: its next knock opens again (a refresh)
    let second = client(&w, &dir, &["sequence", "lab"]);
    assert_ne!(first, second, "the counter moved on");
    client(&w, &dir, &["knock", "lab"]);
    w.daemon.wait_log("used counter 1", Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}

#[test]
fn encoded_knocks_open_for_their_sender_once_and_replays_fail_also_after_a_restart() {
    if !e2e(&[]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("knocker-e2e-enc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("door.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(
        dir.join("profiles.toml"),
        format!(
            "[profile.lab]\nhost = \"{}\"\nkind = \"encoded\"\nkey_file = \"door.key\"\nbase = 50000\nbits = 12\nopen = [\"tcp/{SERVICE}\"]\nduration = \"20s\"\n",
            Lab::SERVER_FOR_ALICE
        ),
    )
    .expect("profile");
    let conf = door_config(
        "",
        &format!(
            "kind = \"encoded\"\nkey_file = {:?}\nbase = 50000\nbits = 12\nopen_for = 60\n",
            key.display().to_string()
        ),
    );
    let mut w = World::new("enc", &conf);
    let out = client(&w, &dir, &["knock", "-v", "lab"]);
    let g = w.wait_grants(1, Duration::from_secs(3));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE);
    assert_eq!(g[0].timeout_s, 20, "the duration the request asked for");
    // the knocks alice sent, as a recording would have them
    let ports: Vec<String> = out
        .lines()
        .filter_map(|l| l.rsplit(':').next())
        .filter(|p| p.parse::<u16>().is_ok())
        .map(|p| p.to_string())
        .collect();
    assert!(ports.len() > 40, "the client printed its knocks: {out}");
    let ports: Vec<&str> = ports.iter().map(|s| s.as_str()).collect();
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &ports);
    w.daemon.wait_log(
        &format!(
            "src={} refused: the request is for {}",
            Lab::MALLORY,
            Lab::ALICE
        ),
        Duration::from_secs(3),
    );
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ports);
    w.daemon
        .wait_log("refused: a replay", Duration::from_secs(3));
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &conf);
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ports);
    w.daemon
        .wait_log("refused: a replay", Duration::from_secs(3));
    assert_eq!(w.grants().len(), 1, "nothing new opened: {:?}", w.grants());
    let _ = std::fs::remove_dir_all(&dir);
    w.finish();
}
