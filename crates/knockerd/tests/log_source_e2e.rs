//! The line sources end to end, in network namespaces, against the real knockerd and real
//! nftables: a sequence door opened through the kernel log (knockerd's table logs knock ports
//! with `log prefix "knocker: "`, knockerd reads them back from /dev/kmsg), and through a log
//! file with a format written for a router's deny lines, appended as syslog would, across a
//! rotation; a log file that every user may write to is refused by `check` and at start. Needs
//! root, iproute2 and nftables.
//!
//! Kernel logging from a network namespace other than the host's needs
//! `net.netfilter.nf_log_all_netns=1`, a machine-wide setting writable only from the initial
//! namespace. The kernel-log test sets it for its duration and puts the previous value back
//! when it ends, also when it fails ([`AllNetnsLogging`]). While it is set, /dev/kmsg carries
//! every namespace's netfilter lines; knockerd in this test's lab sees other labs' lines too
//! (same prefix, same lab addresses), so the door knocks ports no other test uses.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn knocker_table(w: &World) -> String {
    w.lab
        .server
        .exec("nft", &["list", "table", "inet", "knocker"])
        .expect("nft")
}

/// Ports no other test knocks, in an order no sweep walks.
const KLOG_SEQ: [&str; 3] = ["17311", "17377:udp", "17344"];
const FILE_SEQ: [&str; 3] = ["17522", "17588", "17555"];

#[test]
fn a_sequence_door_opens_through_the_kernel_log() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let _logging = AllNetnsLogging::on();
    let w = World::new(
        "klog",
        &format!(
            "{}\n[source]\nkind = \"kernel-log\"\n",
            door_config("", &format!("sequence = {KLOG_SEQ:?}\nopen_for = 30\n"))
        ),
    );
    w.daemon.wait_log(
        "watching the kernel log (/dev/kmsg)",
        Duration::from_secs(1),
    );
    let table = knocker_table(&w);
    assert!(
        table.contains("log prefix \"knocker: \" flags tcp sequence drop"),
        "knock ports are logged to the kernel log: {table}"
    );
    assert!(!table.contains("log group"), "{table}");
    // with every namespace logging, check says who could forge knocks then (the setting is
    // seen from the initial namespace only; check only reads there)
    let out = lab::child::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_knockerd")).args([
            "check",
            "--config",
            &w.daemon.config.display().to_string(),
        ]),
        b"",
        Duration::from_secs(10),
    );
    let (out, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.contains("nf_log_all_netns is 1: netfilter rules of every network namespace"),
        "{out}\n{err}"
    );
    assert_ne!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Connected,
        "protected before the knock"
    );
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &KLOG_SEQ);
    let g = w.wait_grants(1, Duration::from_secs(5));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE);
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    // IPv6 too: the kernel prints addresses in full, which the parser reads back
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE6, &KLOG_SEQ);
    let g = w.wait_grants(2, Duration::from_secs(5));
    assert!(
        g.iter()
            .any(|g| g.to.parse::<std::net::IpAddr>().ok() == Some(ip(Lab::ALICE6))),
        "{g:?}\n{}",
        w.daemon.log()
    );
    w.finish();
}

/// A Cisco ASA's deny line, as a router sends it to syslog.
fn asa_line(src: &str, dport: &str) -> String {
    format!("Dec  2 14:03:11 gw.example %ASA-4-106023: Deny tcp src outside:{src}/40211 dst inside:10.200.1.1/{dport} by access-group \"outside_in\" [0x0, 0x0]\n")
}

fn log_file_config(file: &Path) -> String {
    format!(
        "{}\n[source]\nkind = \"log-file\"\nfile = {:?}\n\n[[source.format]]\nname = \"asa\"\nrequired = '%ASA-\\d-106023: Deny '\npattern = 'Deny (?P<proto>tcp|udp) src [^:]+:(?P<src>[0-9a-fA-F.:]+)/(?P<sport>\\d+) dst [^:]+:(?P<dst>[0-9a-fA-F.:]+)/(?P<dport>\\d+)'\n",
        door_config(
            "",
            &format!("sequence = {FILE_SEQ:?}\nopen_for = 30\n")
        ),
        file.display().to_string()
    )
}

/// Appends lines the way syslog does: one write per line to a file opened for appending.
fn append(file: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .expect("open the log");
    for l in lines {
        f.write_all(l.as_bytes()).expect("append");
    }
}

fn knock_lines(src: &str) -> Vec<String> {
    FILE_SEQ.iter().map(|p| asa_line(src, p)).collect()
}

fn log_dir(tag: &str) -> (lab::TempDir, PathBuf) {
    let dir = lab::TempDir::new(tag);
    // the worker (nobody) opens the new file after a rotation
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = dir.write(
        "fw.log",
        "Dec  2 14:00:00 gw.example %ASA-6-302013: Built outbound TCP connection\n",
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    (dir, file)
}

#[test]
fn a_router_log_opens_a_door_across_a_rotation() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let (dir, file) = log_dir("logsrc");
    // written before knockerd starts: never read, so no restart replays old knocks
    append(&file, &knock_lines(Lab::MALLORY));
    let w = World::new("logfile", &log_file_config(&file));
    let table = knocker_table(&w);
    assert!(
        !table.contains(" log "),
        "no knock rule: the router logs, not us: {table}"
    );
    append(
        &file,
        &["Dec  2 14:03:10 gw.example sshd[99]: Connection closed\n".to_string()],
    );
    append(&file, &knock_lines(Lab::ALICE));
    let g = w.wait_grants(1, Duration::from_secs(5));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE, "mallory's old lines were not read");
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    // rotation as logrotate does it: rename, then a new file at the path
    std::fs::rename(&file, dir.join("fw.log.1")).expect("rotate");
    append(&file, &knock_lines(Lab::MALLORY));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let g = w.wait_grants(2, Duration::from_secs(5));
    assert!(
        g.iter().any(|g| g.to == Lab::MALLORY),
        "the new file is read from its start: {g:?}\n{}",
        w.daemon.log()
    );
    assert_eq!(
        w.connect_within(
            &w.lab.mallory,
            Lab::SERVER_FOR_MALLORY,
            Duration::from_secs(2)
        ),
        Reach::Connected
    );
    w.finish();
}

#[test]
fn a_log_file_anyone_can_write_is_refused() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let (dir, file) = log_dir("logsrc-open");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let config = dir.write(
        "knockerd.toml",
        &log_file_config(&file).replacen(
            "[daemon]\n",
            &format!(
                "[daemon]\nstate_dir = {:?}\n",
                dir.join("state").display().to_string()
            ),
            1,
        ),
    );
    let config = config.display().to_string();
    let run = |args: &[&str]| {
        let (code, _out, err) = knockerd_in_netns(args);
        (code, err)
    };
    for args in [
        &["check", "--config", &config][..],
        &["--config", &config][..],
    ] {
        let (code, err) = run(args);
        assert_ne!(code, Some(0), "{args:?}: {err}");
        assert!(
            err.contains("fw.log is writable by every user") && err.contains("chmod o-w"),
            "{args:?} says which file, why and the fix: {err}"
        );
    }
    // the fix works
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, err) = run(&["check", "--config", &config]);
    assert_eq!(code, Some(0), "{err}");
}

/// Runs knockerd with `args` in a namespace of its own; its exit code, stdout and stderr.
fn knockerd_in_netns(args: &[&str]) -> (Option<i32>, String, String) {
    let ns = Netns::unique("logsrc-cli").expect("netns");
    let out = lab::child::run(
        ns.command(env!("CARGO_BIN_EXE_knockerd")).args(args),
        b"",
        Duration::from_secs(10),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_log_sample_says_per_line_what_each_yields() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let (dir, file) = log_dir("logsrc-sample");
    let config = dir.write("knockerd.toml", &log_file_config(&file));
    let sample = dir.write(
        "sample.log",
        &format!(
            "{}Dec  2 14:03:12 gw.example %ASA-4-106023: Deny tcp src outside:10.200.1.2/1 dst inside:10.200.1.1/99999 by access-group \"x\"\nDec  2 14:03:13 gw.example sshd[7]: hello\n",
            asa_line(Lab::ALICE, FILE_SEQ[0])
        ),
    );
    let (config, sample) = (config.display().to_string(), sample.display().to_string());
    let (code, out, err) =
        knockerd_in_netns(&["check", "--config", &config, "--log-sample", &sample]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "line 1: knock 10.200.1.2 -> 10.200.1.1 tcp/{} (format \"asa\")",
            FILE_SEQ[0]
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "line 2: no knock: format \"asa\": dport \"99999\" is not a number of 0 to 65535"
        ),
        "{out}"
    );
    assert!(
        out.contains("line 3: no knock: no format's `required` matches it"),
        "{out}"
    );
    assert!(out.contains("1 knock(s)"), "{out}");

    // the kernel-log source reads kern.log lines and dmesg's bare ones
    let klog = dir.write(
        "klog.toml",
        &format!(
            "{}\n[source]\nkind = \"kernel-log\"\nprefix = \"FW-DROP \"\n",
            door_config("", &format!("sequence = {KLOG_SEQ:?}\n"))
        ),
    );
    let kern = dir.write("kern.sample", "2026-12-02T14:03:11.512345+00:00 srv kernel: [21548.744736] knocker: IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=15358 DF PROTO=TCP SPT=60142 DPT=7000 SEQ=2768744136 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 \nFW-DROP IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=30 TOS=0x00 PREC=0x00 TTL=64 ID=56477 DF PROTO=UDP SPT=42678 DPT=9000 LEN=10 \nDec  2 14:03:11 srv mallory: knocker: IN=eth0 SRC=10.0.0.1 DST=10.0.0.2 PROTO=TCP SPT=1 DPT=2\n");
    let (klog, kern) = (klog.display().to_string(), kern.display().to_string());
    let (code, out, err) = knockerd_in_netns(&["check", "--config", &klog, "--log-sample", &kern]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("line 1: knock 10.200.77.2 -> 10.200.77.1 tcp/7000 flags syn id=15358 seq=2768744136 ack=0 window=64240"), "{out}");
    assert!(
        out.contains("line 2: knock 10.200.77.2 -> 10.200.77.1 udp/9000 id=56477"),
        "{out}"
    );
    assert!(
        out.contains("line 3: no knock: not a netfilter line"),
        "{out}"
    );
}

/// netfilter's text for a knock, in the kernel's layout (nf_log_syslog.c), as the kernel-log
/// test reads it back from /dev/kmsg.
fn netfilter_text(src: &str, dst: &str, knock: &str) -> String {
    let s: knocker_engine::Service = knock.parse().expect("service");
    let transport = match s.proto {
        knocker_engine::Proto::Tcp => format!(
            "PROTO=TCP SPT=40123 DPT={} SEQ=2768744136 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 ",
            s.port
        ),
        knocker_engine::Proto::Udp => format!("PROTO=UDP SPT=40123 DPT={} LEN=9 ", s.port),
        knocker_engine::Proto::Icmp => panic!("this test knocks TCP and UDP ports only: {knock}"),
    };
    format!("IN=to-alice OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=15358 DF {transport}")
}

#[test]
fn a_kern_log_file_is_followed_and_only_kernel_lines_count() {
    if !e2e(&["ip", "nft"]) {
        return;
    }
    let (dir, _) = log_dir("logsrc-kern");
    let kern = dir.write("kern.log", "");
    std::fs::set_permissions(&kern, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let w = World::new(
        "kernfile",
        &format!(
            "{}\n[source]\nkind = \"kernel-log\"\nfile = {:?}\nprefix = \"FW-KNOCK \"\n",
            door_config("", &format!("sequence = {KLOG_SEQ:?}\n")),
            kern.display().to_string()
        ),
    );
    w.daemon.wait_log(
        &format!("watching the kernel log ({})", kern.display()),
        Duration::from_secs(1),
    );
    let line = |tag: &str, prefix: &str, src: &str, knock: &str| {
        format!(
            "2026-12-02T14:03:11.512345+00:00 srv {tag}: [ 8812.123456] {prefix}{}\n",
            netfilter_text(src, Lab::SERVER_FOR_ALICE, knock)
        )
    };
    // a local user's lines through syslog (`logger -t mallory`): not the kernel's
    let forged: Vec<String> = KLOG_SEQ
        .iter()
        .map(|k| line("mallory", "knocker: ", Lab::MALLORY, k))
        .collect();
    append(&kern, &forged);
    // the admin's own LOG rule's prefix, and knockerd's
    let real: Vec<String> = KLOG_SEQ
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let prefix = if i == 0 { "FW-KNOCK " } else { "knocker: " };
            line("kernel", prefix, Lab::ALICE, k)
        })
        .collect();
    append(&kern, &real);
    let g = w.wait_grants(1, Duration::from_secs(5));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE, "{g:?}");
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    w.finish();
}
