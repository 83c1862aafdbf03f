//! End-to-end: the log that a real knockerd writes, read by Debian's `fail2ban-regex` with the
//! filter knocker ships (packaging/fail2ban/filter.d/knockerd.conf). mallory fails a sequence
//! in each way (a wrong port after progress, the window running out, TCP flags the door does
//! not accept) and sends SPA garbage over IPv4 and IPv6; she also sends stray knocks that are
//! no attempt. alice starts over, opens, refreshes, opens a command-only door, and her grants
//! end (expired, then withdrawn at stop). The filter must match each of mallory's refusals once
//! and never alice. Needs root, iproute2, nftables and fail2ban-regex (package fail2ban).

mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use knocker_engine::TcpFlags;
use knocker_wire::identity::PrivateKey;
use nix::sys::signal::Signal;

const SPA_PORT: u16 = 62201;
const WAIT: Duration = Duration::from_secs(5);

fn write_0600(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Sends hand-made TCP segments with these flags from a namespace, from its own address.
fn send_tcp(from: &Netns, src: &str, dst: &str, flags: TcpFlags, ports: &'static [u16]) {
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (src.parse().expect("ip"), dst.parse().expect("ip"));
    from.enter(move || {
        ports
            .iter()
            .try_for_each(|p| knocker_lab::send_raw_tcp4(src, dst, 40000, *p, flags))
    })
    .expect("enter")
    .expect("raw send");
}

/// How many lines of the log contain every one of `parts`.
fn lines_with(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

#[test]
fn fail2ban_regex_matches_each_of_mallorys_refusals_and_never_alice() {
    if !e2e(&["fail2ban-regex"]) {
        return;
    }
    let dir = knocker_lab::TempDir::new("f2b");
    let server = PrivateKey::generate().expect("key");
    let alice_key = PrivateKey::generate().expect("key");
    write_0600(&dir.0.join("server.key"), &server.to_base64());
    std::fs::write(
        dir.0.join("clients.toml"),
        format!(
            "[client.alice]\npublic_key = \"{}\"\n",
            alice_key.public_key()
        ),
    )
    .expect("clients");
    let config = format!(
        "[daemon]\nnflog_group = 4100\non_stop = \"withdraw\"\nserver_key = {:?}\nclients = {:?}\n\n\
         [door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\ntcp_flags = \"syn,!ack\"\nwindow = 2\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 3\n\n\
         [door.cmd]\nsequence = [\"7100\", \"9100\", \"8100\"]\nstart_command = [\"/bin/true\"]\nopen_for = 2\n\n\
         [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 3\nmax_age = 60\n",
        dir.0.join("server.key").display().to_string(),
        dir.0.join("clients.toml").display().to_string(),
    );
    let mut w = World::new("f2b", &config);
    let (m, m_srv) = (&w.lab.mallory, Lab::SERVER_FOR_MALLORY);
    let refused = |what: &str| format!("src={} refused: {what}", Lab::MALLORY);

    // stray knocks with no progress: no attempt, no line
    send_tcp(m, Lab::MALLORY, m_srv, TcpFlags::SYN, &[9000, 8000, 9000]);
    // 1. a wrong port after the first knock
    send_tcp(m, Lab::MALLORY, m_srv, TcpFlags::SYN, &[7000, 8000]);
    w.daemon.wait_log(
        &refused("knock 2 of 3 was on a wrong port (tcp/8000)"),
        WAIT,
    );
    // a lone first knock whose window runs out: no attempt, no line; and mallory's next line
    // must come after the per-source limit (2 s) anyway
    send_tcp(m, Lab::MALLORY, m_srv, TcpFlags::SYN, &[7000]);
    std::thread::sleep(Duration::from_millis(2500));
    // 2. the window runs out after two knocks
    send_tcp(m, Lab::MALLORY, m_srv, TcpFlags::SYN, &[7000, 9000]);
    w.daemon.wait_log(
        &refused("the window of 2s ran out after 2 of 3 knocks"),
        WAIT,
    );
    // 3. the second knock with flags the door does not accept (its line comes when the window
    // has run out, 2 s on: past the per-source limit)
    send_tcp(m, Lab::MALLORY, m_srv, TcpFlags::SYN, &[7000]);
    send_tcp(m, Lab::MALLORY, m_srv, TcpFlags::ACK, &[9000]);
    w.daemon.wait_log(
        &refused("knock 2 of 3 had TCP flags ack, the door wants syn,!ack"),
        WAIT,
    );
    // 4. SPA garbage, over IPv4 and IPv6 (SPA refusals have only the global limit)
    send_udp(
        m,
        m_srv,
        SPA_PORT,
        b"not an spa packet at all, just bytes".to_vec(),
    );
    send_udp(
        m,
        Lab::SERVER_FOR_MALLORY6,
        SPA_PORT,
        b"more bytes that authenticate nothing".to_vec(),
    );
    w.daemon
        .wait_log(&refused("not an authentic request"), WAIT);
    w.daemon.wait_log(
        &format!("src={} refused: not an authentic request", Lab::MALLORY6),
        WAIT,
    );

    // alice starts over once (no failure), opens, and refreshes before her grant runs out
    let (a, a_srv) = (&w.lab.alice, Lab::SERVER_FOR_ALICE);
    send_tcp(
        a,
        Lab::ALICE,
        a_srv,
        TcpFlags::SYN,
        &[7000, 9000, 7000, 9000, 8000],
    );
    let granted = format!("door=ssh src={} grant tcp/{SERVICE} for 3s", Lab::ALICE);
    w.daemon.wait_log(&granted, WAIT);
    // halfway through the grant: the refresh moves its end, which is then logged once
    std::thread::sleep(Duration::from_millis(1500));
    send_tcp(a, Lab::ALICE, a_srv, TcpFlags::SYN, &[7000, 9000, 8000]);
    let refreshed = format!("door=ssh src={} refresh tcp/{SERVICE} for 3s", Lab::ALICE);
    w.daemon.wait_log(&refreshed, WAIT);
    // a command-only door says what it ran
    send_tcp(a, Lab::ALICE, a_srv, TcpFlags::SYN, &[7100, 9100, 8100]);
    w.daemon.wait_log(
        &format!(
            "door=cmd src={} grant: ran start command /bin/true (opens nothing in the firewall) for 2s",
            Lab::ALICE
        ),
        WAIT,
    );
    let expired = format!("door=ssh src={} grant ended: expired", Lab::ALICE);
    w.daemon.wait_log(&expired, Duration::from_secs(10));
    let left = w.wait_grants(0, WAIT);
    assert!(left.is_empty(), "the kernel expired it too: {left:?}");
    // opened again, then withdrawn when knockerd stops
    send_tcp(a, Lab::ALICE, a_srv, TcpFlags::SYN, &[7000, 9000, 8000]);
    assert_eq!(w.wait_grants(1, WAIT).len(), 1, "{}", w.daemon.log());
    w.daemon.signal(Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    let log = w.daemon.log();
    assert_eq!(
        lines_with(&log, &[&expired]),
        1,
        "one end for the refreshed grant:\n{log}"
    );
    assert_eq!(
        lines_with(
            &log,
            &[&format!(
                "door=ssh src={} grant ended: withdrawn (on_stop = withdraw)",
                Lab::ALICE
            )]
        ),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &[&format!("src={} refused:", Lab::ALICE)]),
        0,
        "alice never failed:\n{log}"
    );
    let mallory_lines = lines_with(&log, &[&format!("src={} refused:", Lab::MALLORY)]);
    assert_eq!(mallory_lines, 4, "one line per attempt and packet:\n{log}");

    // fail2ban-regex on the log as knockerd wrote it (tracing's timestamps, no journal)
    assert!(
        log.lines()
            .next()
            .is_some_and(|l| l.starts_with("20") && l.contains('T')),
        "knockerd's lines start with a timestamp:\n{log}"
    );
    let file = dir.0.join("knockerd.log");
    std::fs::write(&file, &log).expect("write log");
    let filter = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/fail2ban/filter.d/knockerd.conf");
    let out = std::process::Command::new("fail2ban-regex")
        .args(["-o", "ip"])
        .arg(&file)
        .arg(&filter)
        .output()
        .expect("run fail2ban-regex");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fail2ban-regex failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let matched: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let count = |who: &str| matched.iter().filter(|ip| **ip == who).count();
    assert_eq!(count(Lab::MALLORY), 4, "matched: {matched:?}\n{log}");
    assert_eq!(count(Lab::MALLORY6), 1, "matched: {matched:?}\n{log}");
    assert_eq!(count(Lab::ALICE), 0, "alice is never matched: {matched:?}");
    assert_eq!(matched.len(), 5, "nothing else is matched: {matched:?}");
    w.finish();
}
