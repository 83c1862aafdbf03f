//! The NFLOG source and the nftables gatekeeper against the real kernel, each test inside network
//! namespaces of its own (knocker-lab's, `kn<pid>-nl<n>`), removed again even when a test fails.
//!
//! Needs root, `ip` and `nft`. Without them the tests fail with a message saying so;
//! `KNOCKER_SKIP_E2E=1` skips them on purpose (the one rule, `knocker_lab::e2e`). Traffic only flows between the
//! tests' own namespaces, on 10.200.0.0/16 and fd00:200::/48.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use knocker_engine::{Knock, Proto, Service, TcpFlags};
use knocker_lab::Netns;
use knockerd::nflog::{NflogSource, RecvStats};
use knockerd::nftset::NftSets;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

const GROUP: u16 = 4100;

const RULESET: &str = "
table inet knocker {
	set allow4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }
	set allow6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }
	chain input {
		type filter hook input priority filter - 10; policy accept;
		meta l4proto . th dport { tcp . 7000, udp . 9000 } log group 4100 drop
	}
}
";

/// A network namespace of its own (`kn<pid>-nl<n>`), deleted when dropped, panic or not.
fn netns() -> Netns {
    Netns::unique("nl").expect("network namespace")
}

/// What these tests do inside a namespace, as panics rather than errors.
trait Inside {
    /// Runs `f` on a thread that has entered this namespace; sockets it opens belong to it.
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T;
    /// Loads an nft script inside the namespace.
    fn load(&self, script: &str);
    /// The elements of `inet knocker <set>` as nft shows them: (`a . proto . port`, timeout s,
    /// expires s), sorted.
    fn elements(&self, set: &str) -> Vec<(String, u64, u64)>;
    fn elements_raw_is_empty(&self, set: &str) -> bool;
}

fn set_json(ns: &Netns, set: &str) -> serde_json::Value {
    let out = ns
        .exec("nft", &["-j", "list", "set", "inet", "knocker", set])
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).expect("nft json")
}

impl Inside for Netns {
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        Netns::enter(self, f).expect("enter the namespace")
    }

    fn load(&self, script: &str) {
        Netns::nft(self, script).unwrap_or_else(|e| panic!("{e}"));
    }

    fn elements(&self, set: &str) -> Vec<(String, u64, u64)> {
        let json = set_json(self, set);
        let mut elems = Vec::new();
        for item in json["nftables"].as_array().expect("nftables array") {
            let Some(list) = item["set"]["elem"].as_array() else {
                continue;
            };
            for e in list {
                let e = &e["elem"];
                let concat = e["val"]["concat"]
                    .as_array()
                    .unwrap_or_else(|| panic!("element without concat or timeout: {e}"));
                let val = concat
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" . ");
                let timeout = e["timeout"].as_u64().expect("timeout");
                let expires = e["expires"].as_u64().expect("expires");
                elems.push((val, timeout, expires));
            }
        }
        elems.sort();
        elems
    }

    fn elements_raw_is_empty(&self, set: &str) -> bool {
        set_json(self, set)["nftables"]
            .as_array()
            .expect("array")
            .iter()
            .all(|item| item["set"]["elem"].is_null())
    }
}

/// Two namespaces joined by a veth pair: `server` (10.200.k.1, fd00:200:k::1) with knocker's
/// ruleset and `client` (10.200.k.2, fd00:200:k::2).
struct Link {
    server: Netns,
    client: Netns,
    server4: Ipv4Addr,
    client4: Ipv4Addr,
    server6: Ipv6Addr,
    client6: Ipv6Addr,
}

impl Link {
    fn new() -> Link {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let k = NEXT.fetch_add(1, Ordering::SeqCst) % 256;
        let link = Link {
            server4: Ipv4Addr::new(10, 200, k as u8, 1),
            client4: Ipv4Addr::new(10, 200, k as u8, 2),
            server6: format!("fd00:200:{k:x}::1").parse().expect("v6"),
            client6: format!("fd00:200:{k:x}::2").parse().expect("v6"),
            server: netns(),
            client: netns(),
        };
        knocker_lab::link(
            &link.server,
            "kns",
            &[
                &format!("{}/24", link.server4),
                &format!("{}/64", link.server6),
            ],
            &link.client,
            "knc",
            &[
                &format!("{}/24", link.client4),
                &format!("{}/64", link.client6),
            ],
        )
        .expect("veth pair");
        link
    }
}

// ---------------------------------------------------------------------------------------------
// nftables sets

fn open_sets(ns: &Netns) -> NftSets {
    ns.inside(|| NftSets::open("knocker", "allow4", "allow6"))
        .expect("open nftables sets")
}

#[test]
fn grant_shows_in_nft_with_its_timeout_and_refreshes() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let ns = netns();
    ns.load(RULESET);
    let mut sets = open_sets(&ns);
    sets.check().expect("knocker's sets pass the check");

    let to: IpAddr = "10.200.7.2".parse().expect("addr");
    sets.grant(to, &[Service::tcp(22)], Duration::from_secs(100))
        .expect("grant");
    let elems = ns.elements("allow4");
    assert_eq!(elems.len(), 1, "{elems:?}");
    assert_eq!(elems[0].0, "10.200.7.2 . tcp . 22");
    assert_eq!(elems[0].1, 100, "timeout as set: {elems:?}");
    assert!((98..=100).contains(&elems[0].2), "{elems:?}");
    assert!(ns.elements("allow6").is_empty());

    // Let the clock run, then grant again: the timeout starts over, still one element.
    std::thread::sleep(Duration::from_millis(2200));
    let before = ns.elements("allow4");
    assert!(before[0].2 <= 98, "time passed: {before:?}");
    sets.grant(to, &[Service::tcp(22)], Duration::from_secs(100))
        .expect("second grant");
    let after = ns.elements("allow4");
    assert_eq!(after.len(), 1, "no duplicate: {after:?}");
    assert_eq!(after[0].0, "10.200.7.2 . tcp . 22");
    assert_eq!(after[0].1, 100);
    assert!(
        after[0].2 >= 99,
        "expiry refreshed: {before:?} -> {after:?}"
    );

    // A different duration replaces the timeout too; more services add elements.
    sets.grant(
        to,
        &[Service::tcp(22), Service::udp(53)],
        Duration::from_secs(250),
    )
    .expect("third grant");
    let elems = ns.elements("allow4");
    let shown: Vec<_> = elems.iter().map(|(v, t, _)| (v.as_str(), *t)).collect();
    assert_eq!(
        shown,
        [
            ("10.200.7.2 . tcp . 22", 250),
            ("10.200.7.2 . udp . 53", 250)
        ]
    );

    // Revoke removes, and revoking what is gone is fine.
    sets.revoke(to, &[Service::tcp(22), Service::udp(53)])
        .expect("revoke");
    assert!(ns.elements("allow4").is_empty());
    sets.revoke(to, &[Service::tcp(22)])
        .expect("revoking an absent element is not an error");
    assert!(ns.elements("allow4").is_empty());
}

/// The entries of `inet knocker <map>` as nft lists them, one line each (`key timeout ... : data`).
fn map_entries(ns: &Netns, map: &str) -> Vec<String> {
    let out = ns
        .exec("nft", &["list", "map", "inet", "knocker", map])
        .unwrap_or_else(|e| panic!("{e}"));
    let Some(elements) = out.split("elements = {").nth(1) else {
        return Vec::new();
    };
    elements
        .split('}')
        .next()
        .unwrap_or("")
        .split(',')
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect()
}

#[test]
fn a_client_nat_entry_is_set_replaced_and_cleared_with_its_grant_in_one_batch() {
    use knockerd::nftset::NatChange;
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let ns = netns();
    ns.load(RULESET);
    ns.load(
        "add map inet knocker client_nat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; }\n\
         add map inet knocker client_nat6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; flags timeout; }\n",
    );
    let mut sets = open_sets(&ns);
    let to: IpAddr = "10.200.7.2".parse().expect("addr");
    let inner: SocketAddr = "10.200.3.2:22".parse().expect("target");
    let other: SocketAddr = "10.200.3.7:2200".parse().expect("target");
    let ssh = [Service::tcp(2222)];
    let grant = |sets: &mut NftSets, secs: u64, nat: NatChange| {
        sets.grant_nat(to, &ssh, Duration::from_secs(secs), nat, "client_nat4")
    };
    // a first target, twice (the second a refresh of the same)
    for _ in 0..2 {
        grant(
            &mut sets,
            100,
            NatChange::Set {
                to: inner,
                was: None,
            },
        )
        .expect("first");
        let e = map_entries(&ns, "client_nat4");
        assert!(
            e.len() == 1
                && e[0].starts_with("10.200.7.2 . tcp . 2222 timeout 1m40s")
                && e[0].ends_with(": 10.200.3.2 . 22"),
            "{e:?}"
        );
    }
    assert_eq!(ns.elements("allow4").len(), 1);
    // the kernel refuses a second target over the first unless the batch names the first
    assert!(grant(
        &mut sets,
        100,
        NatChange::Set {
            to: other,
            was: None
        }
    )
    .is_err());
    let e = map_entries(&ns, "client_nat4");
    assert!(
        e.len() == 1 && e[0].ends_with(": 10.200.3.2 . 22"),
        "refused whole: {e:?}"
    );
    grant(
        &mut sets,
        50,
        NatChange::Set {
            to: other,
            was: Some(inner),
        },
    )
    .expect("replaced");
    let e = map_entries(&ns, "client_nat4");
    assert!(
        e.len() == 1 && e[0].contains("timeout 50s") && e[0].ends_with(": 10.200.3.7 . 2200"),
        "{e:?}"
    );
    assert_eq!(
        ns.elements("allow4")[0].1,
        50,
        "the grant element in the same batch"
    );
    // a plain grant clears it; clearing what the kernel already dropped is no error
    grant(&mut sets, 60, NatChange::Clear { was: other }).expect("cleared");
    assert!(map_entries(&ns, "client_nat4").is_empty());
    assert_eq!(ns.elements("allow4")[0].1, 60);
    grant(&mut sets, 60, NatChange::Clear { was: other }).expect("cleared again");
    assert!(map_entries(&ns, "client_nat4").is_empty());
    // a target of the other family is refused before anything is sent
    let v6: SocketAddr = "[fd00:200:3::2]:22".parse().expect("target");
    assert!(grant(&mut sets, 60, NatChange::Set { to: v6, was: None }).is_err());
    assert!(map_entries(&ns, "client_nat4").is_empty());
    // IPv6 in its own map
    let to6: IpAddr = "fd00:200:7::2".parse().expect("addr");
    sets.grant_nat(
        to6,
        &ssh,
        Duration::from_secs(30),
        NatChange::Set { to: v6, was: None },
        "client_nat6",
    )
    .expect("v6");
    let e = map_entries(&ns, "client_nat6");
    assert!(
        e.len() == 1
            && e[0].starts_with("fd00:200:7::2 . tcp . 2222")
            && e[0].ends_with(": fd00:200:3::2 . 22"),
        "{e:?}"
    );
}

#[test]
fn grant_ipv6_and_mapped_ipv4() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let ns = netns();
    ns.load(RULESET);
    let mut sets = open_sets(&ns);

    let to: IpAddr = "fd00:200:7::2".parse().expect("addr");
    sets.grant(
        to,
        &[Service::tcp(22), Service::udp(9999)],
        Duration::from_secs(60),
    )
    .expect("grant v6");
    let elems = ns.elements("allow6");
    let shown: Vec<_> = elems.iter().map(|(v, t, _)| (v.as_str(), *t)).collect();
    assert_eq!(
        shown,
        [
            ("fd00:200:7::2 . tcp . 22", 60),
            ("fd00:200:7::2 . udp . 9999", 60)
        ]
    );
    assert!(ns.elements("allow4").is_empty());

    // An IPv4-mapped IPv6 address is an IPv4 client.
    let mapped: IpAddr = "::ffff:10.200.7.9".parse().expect("addr");
    sets.grant(mapped, &[Service::tcp(443)], Duration::from_millis(30_500))
        .expect("grant mapped");
    let elems = ns.elements("allow4");
    assert_eq!(elems.len(), 1);
    assert_eq!(elems[0].0, "10.200.7.9 . tcp . 443");
    assert_eq!(elems[0].1, 30, "nft shows whole seconds: {elems:?}");

    sets.revoke(to, &[Service::tcp(22), Service::udp(9999)])
        .expect("revoke v6");
    assert!(ns.elements("allow6").is_empty());
}

#[test]
fn missing_table_is_a_clear_error_not_a_hang() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let ns = netns(); // no ruleset at all
    let mut sets = open_sets(&ns);
    let started = Instant::now();
    let err = sets
        .grant(
            "10.200.7.2".parse().expect("addr"),
            &[Service::tcp(22)],
            Duration::from_secs(10),
        )
        .expect_err("no table, no grant");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "nftables set inet knocker allow4 does not exist: is knockerd's table loaded?"
    );
    let err = sets
        .revoke("fd00:200::2".parse().expect("addr"), &[Service::tcp(22)])
        .expect_err("no table, no revoke");
    assert!(
        err.to_string()
            .contains("set inet knocker allow6 does not exist"),
        "{err}"
    );
    let err = sets.check().expect_err("check fails");
    assert!(err.to_string().contains("does not exist"), "{err}");

    // The socket is still usable once the table appears.
    ns.load(RULESET);
    sets.grant(
        "10.200.7.2".parse().expect("addr"),
        &[Service::tcp(22)],
        Duration::from_secs(10),
    )
    .expect("grant after the table was loaded");
    assert_eq!(ns.elements("allow4").len(), 1);
}

#[test]
fn check_catches_sets_of_the_wrong_shape() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let ns = netns();
    ns.load(
        "table inet knocker {
            set allow4 { type ipv4_addr . inet_service . inet_proto; flags timeout; }
            set good4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }
            set allow6 { type ipv6_addr . inet_proto . inet_service; }
        }",
    );
    let mut sets = open_sets(&ns);
    let err = sets.check().expect_err("wrong key order");
    assert!(
        err.to_string().contains("allow4 has the wrong type"),
        "{err}"
    );

    let mut sets = ns
        .inside(|| NftSets::open("knocker", "good4", "allow6"))
        .expect("open");
    let err = sets.check().expect_err("no timeout flag");
    assert!(
        err.to_string().contains("allow6 lacks `flags timeout`"),
        "{err}"
    );
    // And the kernel refuses a timeout on such a set, with an error rather than a forever element.
    let err = sets
        .grant(
            "fd00:200::2".parse().expect("addr"),
            &[Service::tcp(22)],
            Duration::from_secs(5),
        )
        .expect_err("set without timeouts");
    assert!(err.to_string().contains("flags timeout"), "{err}");
    assert!(ns.elements_raw_is_empty("allow6"));
}

// ---------------------------------------------------------------------------------------------
// NFLOG

/// Waits (up to 2 s) until `want` shows up among the knocks read from `source`.
fn wait_for(
    source: &mut NflogSource,
    seen: &mut Vec<Knock>,
    stats: &mut RecvStats,
    want: impl Fn(&Knock) -> bool,
) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(2);
    loop {
        if seen.iter().any(&want) {
            return started.elapsed();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "knock not seen within 2 s; saw {seen:?} ({stats:?})"
        );
        let mut fds = [PollFd::new(source.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        poll(&mut fds, timeout).expect("poll");
        stats.add(source.recv_batch(seen).expect("recv_batch"));
    }
}

/// Starts a TCP connection from the calling thread's namespace without waiting for it: one SYN.
fn send_syn(to: SocketAddr) -> OwnedFd {
    let (family, addr): (AddressFamily, Box<dyn nix::sys::socket::SockaddrLike>) = match to {
        SocketAddr::V4(a) => (AddressFamily::Inet, Box::new(SockaddrIn::from(a))),
        SocketAddr::V6(a) => (AddressFamily::Inet6, Box::new(SockaddrIn6::from(a))),
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    use std::os::fd::AsRawFd;
    match connect(fd.as_raw_fd(), addr.as_ref()) {
        Err(nix::errno::Errno::EINPROGRESS) | Ok(()) => {}
        Err(e) => panic!("connect {to}: {e}"),
    }
    fd
}

#[test]
fn nflog_delivers_tcp_syn_and_udp_knocks_v4_and_v6() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let link = Link::new();
    link.server.load(RULESET);
    let mut source = link
        .server
        .inside(|| NflogSource::bind(GROUP, 0))
        .expect("bind NFLOG group");
    assert_eq!(source.group(), GROUP);
    let mut seen = Vec::new();
    let mut stats = RecvStats::default();

    // UDP over IPv4
    let (c4, s4) = (link.client4, link.server4);
    let udp_port = link.client.inside(move || {
        let sock = UdpSocket::bind(SocketAddrV4::new(c4, 0)).expect("bind udp");
        sock.send_to(b"knock", SocketAddrV4::new(s4, 9000))
            .expect("send udp");
        sock.local_addr().expect("local").port()
    });
    let took = wait_for(&mut source, &mut seen, &mut stats, |k| {
        k.proto == Proto::Udp && k.src == IpAddr::V4(c4)
    });
    eprintln!("udp/ipv4 knock arrived after {took:?}");
    let k = seen
        .iter()
        .find(|k| k.proto == Proto::Udp && k.src == IpAddr::V4(c4))
        .expect("seen");
    assert_eq!(
        *k,
        Knock {
            src: IpAddr::V4(c4),
            dst: IpAddr::V4(s4),
            proto: Proto::Udp,
            src_port: udp_port,
            dst_port: 9000,
            tcp_flags: TcpFlags::default(),
        }
    );

    // TCP SYN over IPv4; the socket is kept open until the knock is seen.
    let syn = link
        .client
        .inside(move || send_syn(SocketAddr::V4(SocketAddrV4::new(s4, 7000))));
    let took = wait_for(&mut source, &mut seen, &mut stats, |k| {
        k.proto == Proto::Tcp && k.src == IpAddr::V4(c4)
    });
    eprintln!("tcp/ipv4 knock arrived after {took:?}");
    drop(syn);
    let k = seen
        .iter()
        .find(|k| k.proto == Proto::Tcp && k.src == IpAddr::V4(c4))
        .expect("seen");
    assert_eq!((k.dst, k.dst_port), (IpAddr::V4(s4), 7000));
    assert_ne!(k.src_port, 0);
    assert!(
        k.tcp_flags.contains(TcpFlags::SYN) && !k.tcp_flags.contains(TcpFlags::ACK),
        "{k:?}"
    );

    // The same over IPv6.
    let (c6, s6) = (link.client6, link.server6);
    let udp_port = link.client.inside(move || {
        let sock = UdpSocket::bind(SocketAddrV6::new(c6, 0, 0, 0)).expect("bind udp6");
        sock.send_to(b"knock", SocketAddrV6::new(s6, 9000, 0, 0))
            .expect("send udp6");
        sock.local_addr().expect("local").port()
    });
    let took = wait_for(&mut source, &mut seen, &mut stats, |k| {
        k.proto == Proto::Udp && k.src == IpAddr::V6(c6)
    });
    eprintln!("udp/ipv6 knock arrived after {took:?}");
    let k = seen
        .iter()
        .find(|k| k.proto == Proto::Udp && k.src == IpAddr::V6(c6))
        .expect("seen");
    assert_eq!(
        *k,
        Knock {
            src: IpAddr::V6(c6),
            dst: IpAddr::V6(s6),
            proto: Proto::Udp,
            src_port: udp_port,
            dst_port: 9000,
            tcp_flags: TcpFlags::default(),
        }
    );

    let syn = link
        .client
        .inside(move || send_syn(SocketAddr::V6(SocketAddrV6::new(s6, 7000, 0, 0))));
    let took = wait_for(&mut source, &mut seen, &mut stats, |k| {
        k.proto == Proto::Tcp && k.src == IpAddr::V6(c6)
    });
    eprintln!("tcp/ipv6 knock arrived after {took:?}");
    drop(syn);
    let k = seen
        .iter()
        .find(|k| k.proto == Proto::Tcp && k.src == IpAddr::V6(c6))
        .expect("seen");
    assert_eq!((k.dst, k.dst_port), (IpAddr::V6(s6), 7000));
    assert!(
        k.tcp_flags.contains(TcpFlags::SYN) && !k.tcp_flags.contains(TcpFlags::ACK),
        "{k:?}"
    );

    assert_eq!(stats.malformed, 0, "{stats:?}");
    assert_eq!(stats.overruns, 0, "{stats:?}");
    assert_eq!(stats.knocks as usize, seen.len());
    // Nothing else is queued: no blocking, no error.
    let mut more = Vec::new();
    let extra = source.recv_batch(&mut more).expect("empty read");
    assert_eq!(extra.overruns, 0);
}

#[test]
fn nflog_group_taken_by_another_socket_is_a_clear_error() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let ns = netns();
    let (first, second) =
        ns.inside(|| (NflogSource::bind(GROUP, 128), NflogSource::bind(GROUP, 128)));
    let _first = first.expect("first bind");
    let err = second.expect_err("second bind must fail");
    assert!(
        err.to_string()
            .contains("NFLOG group 4100 is already bound by another process"),
        "{err}"
    );
    // Once the owner is gone, the group is free again.
    drop(_first);
    let again = ns.inside(|| NflogSource::bind(GROUP, 128));
    again.expect("bind after the first socket closed");
}

#[test]
fn nflog_overrun_is_counted_not_an_error() {
    if !knocker_lab::e2e(&[]) {
        return;
    }
    let link = Link::new();
    link.server.load(RULESET);
    let mut source = link
        .server
        .inside(|| NflogSource::bind(GROUP, 0))
        .expect("bind NFLOG group");
    // Far more knocks than the receive buffer holds, while nobody reads.
    let (c4, s4) = (link.client4, link.server4);
    let sent = link.client.inside(move || {
        let sock = UdpSocket::bind(SocketAddrV4::new(c4, 0)).expect("bind udp");
        let mut sent = 0u64;
        for _ in 0..60_000 {
            if sock.send_to(b"flood", SocketAddrV4::new(s4, 9000)).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    let mut total = RecvStats::default();
    let mut calls = 0;
    loop {
        let mut out = Vec::new();
        let stats = source
            .recv_batch(&mut out)
            .expect("an overrun is not an error");
        assert_eq!(stats.knocks as usize, out.len());
        calls += 1;
        total.add(stats);
        if stats == RecvStats::default() {
            break;
        }
    }
    eprintln!("sent {sent}, read in {calls} calls: {total:?}");
    assert!(
        total.overruns >= 1,
        "the kernel must have dropped some: {total:?}"
    );
    assert!(total.knocks > 0 && total.knocks < sent, "{total:?}");
    assert!(calls > 2, "reads are bounded per call");
    assert_eq!(total.malformed, 0);

    // The source keeps working afterwards.
    let mut seen = Vec::new();
    let mut stats = RecvStats::default();
    link.client.inside(move || {
        let sock = UdpSocket::bind(SocketAddrV4::new(c4, 4242)).expect("bind udp");
        sock.send_to(b"after", SocketAddrV4::new(s4, 9000))
            .expect("send");
    });
    wait_for(&mut source, &mut seen, &mut stats, |k| k.src_port == 4242);
}
