//! End-to-end: a client behind carrier-grade NAT, whose knock and connection leave from
//! different addresses of one pool. alice's second address is in the /24 (and the /64) of the
//! one she knocks from: a door with `grant_prefix` lets that address in, a door without it does
//! not, and mallory, outside the prefix, is never let in. The widened grant expires in the
//! kernel and comes back after `nft flush ruleset` with the time it has left. Real knockerd,
//! real nftables, real packets, in namespaces.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};

/// alice's second address, in the same /24 and /64 as `Lab::ALICE`/`Lab::ALICE6`.
const ALICE_OTHER: &str = "10.200.1.3";
const ALICE_OTHER6: &str = "fd00:200:1::3";
/// How long the widened door opens: short, so that the test sees the kernel expire it.
const WIDE_FOR: u64 = 6;
const NARROW_SEQ: [&str; 3] = ["7100", "9100:udp", "8100"];
const WIDE_SEQ: [&str; 3] = ["7200", "9200:udp", "8200"];

fn config() -> String {
    let seq = |s: [&str; 3]| format!("{s:?}");
    format!(
        "[daemon]\nnflog_group = 4100\n\n\
         [door.narrow]\nsequence = {}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\n\n\
         [door.wide]\nsequence = {}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = {WIDE_FOR}\ngrant_prefix = 24\ngrant_prefix6 = 64\n",
        seq(NARROW_SEQ),
        seq(WIDE_SEQ),
    )
}

/// A TCP connection to the service from `src` (an address of `from`'s), as a client whose
/// connection leaves from another address of its pool.
fn connect_from(from: &Netns, src: &str, to: &str, limit: Duration) -> Reach {
    let (src, to) = (
        SocketAddr::new(ip(src), 0),
        SocketAddr::new(ip(to), SERVICE),
    );
    from.enter(move || {
        let end = Instant::now() + limit;
        loop {
            let domain = if src.is_ipv4() {
                Domain::IPV4
            } else {
                Domain::IPV6
            };
            let s = Socket::new(domain, Type::STREAM, None).expect("socket");
            s.bind(&src.into()).expect("bind to the second address");
            let r = match s.connect_timeout(&to.into(), Duration::from_millis(300)) {
                Ok(()) => Reach::Connected,
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    Reach::Silent
                }
                Err(_) => Reach::Refused,
            };
            if r == Reach::Connected || Instant::now() > end {
                return r;
            }
        }
    })
    .expect("enter")
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn has_grant(w: &World, to: &str) -> bool {
    w.grants().iter().any(|g| g.to == to)
}

#[test]
fn a_widened_grant_lets_in_the_clients_other_address_and_nobody_outside_the_prefix() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("prefix", &config());
    for (addr, dev) in [
        (format!("{ALICE_OTHER}/24"), "eth0"),
        (format!("{ALICE_OTHER6}/64"), "eth0"),
    ] {
        let mut args = vec!["addr", "add", addr.as_str(), "dev", dev];
        if addr.contains(':') {
            args.push("nodad");
        }
        w.lab.alice.ip(&args).expect("alice's second address");
    }
    let short = Duration::from_millis(900);
    let reach = |src: &str, to: &str| connect_from(&w.lab.alice, src, to, short);

    // the door without grant_prefix: alice's own address alone
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &NARROW_SEQ);
    assert!(
        wait_for(Duration::from_secs(3), || has_grant(&w, Lab::ALICE)),
        "{:?}\n{}",
        w.grants(),
        w.daemon.log()
    );
    assert_eq!(
        reach(Lab::ALICE, Lab::SERVER_FOR_ALICE),
        Reach::Connected,
        "alice from the address she knocked from"
    );
    assert_eq!(
        reach(ALICE_OTHER, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "a grant without grant_prefix is for the address that knocked alone"
    );

    // the widened door: alice's /24 and /64
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &WIDE_SEQ);
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE6, &WIDE_SEQ);
    let knocked = Instant::now();
    assert!(
        wait_for(Duration::from_secs(3), || has_grant(&w, "10.200.1.0/24")
            && has_grant(&w, "fd00:200:1::/64")),
        "the kernel holds the networks: {:?}\n{}",
        w.grants(),
        w.daemon.log()
    );
    assert_eq!(
        reach(ALICE_OTHER, Lab::SERVER_FOR_ALICE),
        Reach::Connected,
        "alice's other address, in the /24 she knocked from"
    );
    assert_eq!(
        reach(ALICE_OTHER6, Lab::SERVER_FOR_ALICE6),
        Reach::Connected,
        "alice's other IPv6 address, in the /64 she knocked from"
    );
    w.mallory_is_silent("outside the prefix");
    let log = w.daemon.log();
    assert!(
        log.contains("door=wide src=10.200.1.2 grant tcp/2222 to 10.200.1.0/24 (grant_prefix)"),
        "the log says whom the grant lets in:\n{log}"
    );
    let check = w.check();
    assert!(
        check.contains("opens to the /24 around the address that knocked")
            && check.contains("everyone in that prefix gets in"),
        "check shows the widening and warns:\n{check}"
    );

    // something else flushes the firewall: the widened grants come back
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    assert!(
        wait_for(Duration::from_secs(5), || has_grant(&w, "10.200.1.0/24")
            && has_grant(&w, "fd00:200:1::/64")),
        "restored: {:?}\n{}",
        w.grants(),
        w.daemon.log()
    );
    assert_eq!(
        reach(ALICE_OTHER, Lab::SERVER_FOR_ALICE),
        Reach::Connected,
        "the widened grant is back"
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "protected again"
    );

    // the kernel ends it on time
    let expired = knocked + Duration::from_secs(WIDE_FOR) + Duration::from_millis(500);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    assert!(
        wait_for(Duration::from_secs(2), || !has_grant(&w, "10.200.1.0/24")),
        "expired in the kernel: {:?}",
        w.grants()
    );
    assert_eq!(
        reach(ALICE_OTHER, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "closed after open_for"
    );
    w.finish();
}
