//! End-to-end: grants that close behind you (`connections = N`) and delayed commands
//! (`[[door.NAME.command]]`), with the real knockerd, real nftables and real connections in
//! namespaces. Needs root, iproute2 and nftables; KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use knockerd::ruleset::{self, LiveGrant};

/// The server's grants that count connections, as the kernel holds them now.
fn counted(w: &World) -> Vec<LiveGrant> {
    w.lab
        .server
        .enter(ruleset::live_counted_grants)
        .expect("enter")
        .expect("list counted grants")
}

/// Waits until alice's counted grant is there and admits `n` connections.
fn wait_counted(w: &World, n: u8) -> Vec<LiveGrant> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let g = counted(w);
        if g.iter().any(|g| g.connections_left == Some(n)) || Instant::now() > end {
            return g;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP connection from alice to the echo service, kept open; `None` when nothing answers.
fn open_from_alice(w: &World) -> Option<TcpStream> {
    let addr = SocketAddr::new(ip(Lab::SERVER_FOR_ALICE), SERVICE);
    w.lab
        .alice
        .enter(move || TcpStream::connect_timeout(&addr, PROBE).ok())
        .expect("enter")
}

/// Sends `text` over an open connection and reads the echo back.
fn echo(c: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    c.write_all(text).expect("send over the open connection");
    let mut back = vec![0u8; text.len()];
    c.read_exact(&mut back)
        .expect("the echo over the open connection");
    back
}

fn door(connections: u8) -> String {
    door_config(
        "",
        &format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\nconnections = {connections}\n"),
    )
}

#[test]
fn a_grant_of_one_connection_closes_behind_it_and_the_connection_keeps_working() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("conn1", &door(1));
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    let g = wait_counted(&w, 1);
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE);
    assert_eq!(g[0].service, format!("tcp/{SERVICE}"));
    assert!(
        w.grants().is_empty(),
        "a counted grant is not an unlimited one"
    );
    w.daemon.wait_log(
        &format!(
            "door=ssh src={} grant tcp/{SERVICE} for 30s, 1 new connection(s)",
            Lab::ALICE
        ),
        Duration::from_secs(1),
    );

    let mut first = open_from_alice(&w).expect("the grant admits one connection");
    assert_eq!(echo(&mut first, b"one"), b"one");
    // the kernel spent the slot when it accepted the first connection
    assert!(counted(&w).is_empty(), "{:?}", counted(&w));
    assert!(
        open_from_alice(&w).is_none(),
        "a second connection is dropped: the door closed behind the first"
    );
    // the first one is established and goes on working after the second was refused
    assert_eq!(echo(&mut first, b"still here"), b"still here");
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    drop(first);
    w.finish();
}

#[test]
fn an_ipv6_grant_of_one_connection_closes_behind_it_too() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("conn6", &door(1));
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE6, &ALICE_SEQ);
    let g = wait_counted(&w, 1);
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE6);
    let addr = SocketAddr::new(ip(Lab::SERVER_FOR_ALICE6), SERVICE);
    let connect = move || TcpStream::connect_timeout(&addr, PROBE).ok();
    let mut first = w.lab.alice.enter(connect).expect("enter").expect("one");
    assert!(
        w.lab.alice.enter(connect).expect("enter").is_none(),
        "a second is dropped"
    );
    assert_eq!(echo(&mut first, b"six"), b"six");
    w.finish();
}

#[test]
fn a_grant_of_two_connections_admits_exactly_two() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("conn2", &door(2));
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    let g = wait_counted(&w, 2);
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].connections_left, Some(2), "{g:?}");

    let mut one = open_from_alice(&w).expect("first of two");
    assert_eq!(counted(&w)[0].connections_left, Some(1));
    let mut two = open_from_alice(&w).expect("second of two");
    assert!(counted(&w).is_empty());
    assert!(open_from_alice(&w).is_none(), "a third is dropped");
    assert_eq!(echo(&mut one, b"1"), b"1");
    assert_eq!(echo(&mut two, b"2"), b"2");

    // a new knock grants two again
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    assert_eq!(wait_counted(&w, 2)[0].connections_left, Some(2));
    assert!(open_from_alice(&w).is_some());
    w.finish();
}

#[test]
fn after_a_flush_a_counted_grant_is_not_handed_out_again() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("connflush", &door(2));
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    assert_eq!(wait_counted(&w, 2).len(), 1, "{}", w.daemon.log());
    let mut one = open_from_alice(&w).expect("first of two");
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("flush ruleset");
    w.daemon
        .wait_log("was deleted by another program", Duration::from_secs(5));
    // the table is back, and the grant is not: how many connections it had left went with
    // its sets, and a guess could admit more than were granted
    assert!(counted(&w).is_empty(), "{:?}", counted(&w));
    w.daemon.wait_log(
        "a grant that counts connections is not put back",
        Duration::from_secs(1),
    );
    assert!(
        open_from_alice(&w).is_none(),
        "protected again, no slot left"
    );
    assert_eq!(echo(&mut one, b"kept"), b"kept", "conntrack keeps it");
    w.finish();
}

/// `knockerd status --json` for the lab's daemon, parsed.
fn status_json(w: &World) -> serde_json::Value {
    let out = w
        .lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .args(["status", "--json", "--config"])
        .arg(&w.daemon.config)
        .output()
        .expect("run knockerd status");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits for `path` to exist.
fn wait_file(path: &std::path::Path, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while !path.exists() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn delayed_commands_survive_a_kill_and_status_lists_them_while_pending() {
    if !e2e(&[]) {
        return;
    }
    let dir = lab::TempDir::new("delayed");
    let (later, end) = (dir.join("after-2s"), dir.join("at-end"));
    let config = door_config(
        "",
        &format!(
            "sequence = {ALICE_SEQ:?}\nopen_for = 3\n\n[[door.ssh.command]]\nrun = [\"/usr/bin/touch\", {:?}]\nafter = \"2s\"\n\n[[door.ssh.command]]\nrun = [\"/usr/bin/touch\", {:?}]\nat = \"end\"\n",
            later.display().to_string(),
            end.display().to_string()
        ),
    );
    let mut w = World::new("delayed", &config);
    w.alice_knocks_and_is_granted();
    let s = status_json(&w);
    let pending = s["pending_commands"].as_array().expect("pending_commands");
    assert_eq!(pending.len(), 2, "{s:#}");
    assert_eq!(pending[0]["command"][1], later.display().to_string());
    assert_eq!(pending[0]["address"], Lab::ALICE);
    assert_eq!(pending[0]["at_end"], false);
    assert_eq!(pending[1]["at_end"], true);

    // killed before either is due: the ledger has them, the next start runs them
    w.daemon.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(5)), None);
    assert!(!later.exists() && !end.exists(), "nothing ran early");
    w.daemon = Knockerd::start(&w.lab, &config);
    assert!(
        wait_file(&later, Duration::from_secs(5)),
        "the 2 s command ran after the restart\n{}",
        w.daemon.log()
    );
    assert!(
        wait_file(&end, Duration::from_secs(5)),
        "the end command ran\n{}",
        w.daemon.log()
    );
    w.daemon
        .wait_log("door=ssh delayed command for", Duration::from_secs(1));
    let s = status_json(&w);
    assert_eq!(s["pending_commands"], serde_json::json!([]), "{s:#}");
    w.finish();
}

#[test]
fn a_flow_admitted_once_needs_no_second_slot_but_a_new_flow_does() {
    if !e2e(&[]) {
        return;
    }
    // UDP, with a service that never answers: every datagram of alice's flow stays `new` in
    // conntrack, as a retransmitted SYN does
    const PORT: u16 = 2223;
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.quiet]\nsequence = {ALICE_SEQ:?}\nopen = [\"udp/{PORT}\"]\nopen_for = 30\nconnections = 1\n"
    );
    let w = World::new("connudp", &config);
    let server = w
        .lab
        .server
        .enter(|| std::net::UdpSocket::bind(("0.0.0.0", PORT)))
        .expect("enter")
        .expect("bind");
    server
        .set_read_timeout(Some(Duration::from_millis(600)))
        .expect("timeout");
    let received = || {
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok((n, _)) = server.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    };
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    assert_eq!(wait_counted(&w, 1).len(), 1, "{}", w.daemon.log());
    let to = SocketAddr::new(ip(Lab::SERVER_FOR_ALICE), PORT);
    let flow = w
        .lab
        .alice
        .enter(|| std::net::UdpSocket::bind("0.0.0.0:0"))
        .expect("enter")
        .expect("bind");
    flow.send_to(b"a1", to).expect("send");
    flow.send_to(b"a2", to).expect("send");
    assert_eq!(
        received(),
        [b"a1".to_vec(), b"a2".to_vec()],
        "one flow, one slot"
    );
    assert!(counted(&w).is_empty());
    send_udp(&w.lab.alice, Lab::SERVER_FOR_ALICE, PORT, b"b1".to_vec());
    assert!(received().is_empty(), "a new flow found no slot left");
    flow.send_to(b"a3", to).expect("send");
    assert_eq!(received(), [b"a3".to_vec()], "the admitted flow goes on");
    w.finish();
}

#[test]
fn a_counted_grant_outlives_a_restart_and_a_withdraw_removes_it() {
    if !e2e(&[]) {
        return;
    }
    let withdraw = door_config(
        "on_stop = \"withdraw\"",
        &format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\nconnections = 2\n"),
    );
    let mut w = World::new("connrestart", &withdraw);
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    assert_eq!(wait_counted(&w, 2).len(), 1, "{}", w.daemon.log());
    let _one = open_from_alice(&w).expect("first of two");
    // killed and started again: the table is updated, not replaced, so the slot left stays
    w.daemon.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(5)), None);
    w.daemon = Knockerd::start(&w.lab, &withdraw);
    assert_eq!(
        counted(&w)[0].connections_left,
        Some(1),
        "{:?}",
        counted(&w)
    );
    let _two = open_from_alice(&w).expect("the second, after the restart");
    assert!(open_from_alice(&w).is_none(), "and no third");
    // a new grant, then a clean stop with on_stop = "withdraw" takes it away
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    assert_eq!(wait_counted(&w, 2).len(), 1, "{}", w.daemon.log());
    w.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(counted(&w).is_empty(), "{:?}", counted(&w));
    assert!(open_from_alice(&w).is_none(), "withdrawn");
    w.finish();
}
