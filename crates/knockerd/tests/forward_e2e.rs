//! End-to-end: doors that protect and open forwarded services.
//!
//! First, a container's port published on the server the way Docker publishes it (`docker run
//! -p 8080:80`). Docker's rules are built by hand here, with iptables-nft in the server
//! namespace, as Docker 20.10 (Debian's docker.io) writes them for a published port: `nat
//! PREROUTING -m addrtype --dst-type LOCAL -j DOCKER`, a DNAT in `nat DOCKER`, `filter FORWARD`
//! with policy DROP, its RELATED,ESTABLISHED accept and the `filter DOCKER` accept for the
//! container's address and port, and the MASQUERADE of the container's network. docker.io is
//! installable here, but its daemon is not run: dockerd needs cgroups, a storage driver and a
//! container runtime, and writes its rules into the namespace it starts in, which for a daemon
//! is the host's own ruleset, not a test's namespace. The rules, not the daemon, are what
//! knocker meets.
//!
//! Second, knockerd's own DNAT to an inner host (`nat = "ADDRESS:PORT"`, fwknop's FORCE_NAT):
//! alice knocks and reaches the inner host's sshd through the server; mallory never does.
//!
//! Third, a host behind the server reached by its own address, without DNAT, as behind a
//! router or VPN gateway (`forward = ["ADDRESS", ...]`).
//!
//! All with the parties of the usual lab, the server a router (`ip_forward=1` inside its own
//! namespace only), and an inner host (the "container") behind it. Real knockerd, real nftables
//! and iptables-nft, real sshd and ssh, real packets, in namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use knockerd::ruleset::{self, TableHealth};

/// The port Docker publishes on the server, and the container's own port behind it.
const PUBLISHED: u16 = 8080;
const INNER_PORT: u16 = 80;
const SERVER_FOR_INNER: &str = "10.200.3.1";
const INNER: &str = "10.200.3.2";
const SERVER_FOR_INNER6: &str = "fd00:200:3::1";
const INNER6: &str = "fd00:200:3::2";
/// The server's interface towards the inner host: Docker's `docker0`.
const BRIDGE: &str = "to-inner";
const OPEN_FOR: u64 = 8;
/// The port a `nat` door opens on the server, sent on to the inner host's sshd on port 22.
const NAT_PORT: u16 = 2222;

/// Docker's iptables-nft rules for one container at INNER (INNER6 for `ip6tables`, as Docker
/// writes them with `"ip6tables": true`) publishing INNER_PORT as PUBLISHED, one command each.
fn docker_rules(v6: bool) -> Vec<String> {
    let (p, i, b) = (PUBLISHED, INNER_PORT, BRIDGE);
    let (net, host, to) = if v6 {
        (
            "fd00:200:3::/64",
            format!("{INNER6}/128"),
            format!("[{INNER6}]:{i}"),
        )
    } else {
        (
            "10.200.3.0/24",
            format!("{INNER}/32"),
            format!("{INNER}:{i}"),
        )
    };
    vec![
        "-t nat -N DOCKER".into(),
        "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER".into(),
        format!("-t nat -A POSTROUTING -s {net} ! -o {b} -j MASQUERADE"),
        format!(
            "-t nat -A DOCKER ! -i {b} -p tcp -m tcp --dport {p} -j DNAT --to-destination {to}"
        ),
        "-P FORWARD DROP".into(),
        "-N DOCKER".into(),
        format!("-A FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        format!("-A FORWARD -o {b} -j DOCKER"),
        format!("-A FORWARD -i {b} ! -o {b} -j ACCEPT"),
        format!("-A DOCKER -d {host} ! -i {b} -o {b} -p tcp -m tcp --dport {i} -j ACCEPT"),
    ]
}

fn add_docker_rules(server: &Netns) {
    for (program, v6) in [("iptables", false), ("ip6tables", true)] {
        for r in docker_rules(v6) {
            let args: Vec<&str> = r.split_whitespace().collect();
            server
                .exec(program, &args)
                .expect("iptables (Docker's rule)");
        }
    }
}

/// The inner host, linked to the server, its default route through it; the server forwards
/// (in its own namespace only).
fn inner_namespace(lab: &Lab) -> Netns {
    inner_namespace_routed(lab, true)
}

/// [`inner_namespace`], with or without its default route through the server (without it, the
/// inner host reaches only its own link: it answers a client only if the server rewrote the
/// client's address to its own).
fn inner_namespace_routed(lab: &Lab, routed: bool) -> Netns {
    let inner = Netns::unique("fwd-inner").expect("inner namespace");
    lab::netns::link(
        &lab.server,
        BRIDGE,
        &[
            &format!("{SERVER_FOR_INNER}/24"),
            &format!("{SERVER_FOR_INNER6}/64"),
        ],
        &inner,
        "eth0",
        &[&format!("{INNER}/24"), &format!("{INNER6}/64")],
    )
    .expect("link");
    for via in [SERVER_FOR_INNER, SERVER_FOR_INNER6]
        .into_iter()
        .filter(|_| routed)
    {
        inner
            .ip(&["route", "add", "default", "via", via])
            .expect("route");
    }
    for forwarding in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        lab.server
            .exec("sysctl", &["-qw", forwarding])
            .expect("forwarding in the server namespace");
    }
    inner
}

/// The inner host as a container: an echo service on INNER_PORT, published by Docker's rules.
fn container(lab: &Lab) -> Netns {
    let inner = inner_namespace(lab);
    for addr in [INNER, INNER6] {
        let listener = inner
            .enter(move || TcpListener::bind((addr, INNER_PORT)))
            .expect("enter")
            .expect("listen");
        echo_service(listener);
    }
    add_docker_rules(&lab.server);
    inner
}

/// Connects from `from` to the server's published port (see [`connect_within`]).
fn reach(from: &Netns, server: &str, limit: Duration) -> Reach {
    connect_within(from, SocketAddr::new(ip(server), PUBLISHED), limit)
}

/// The same to the port a `nat` door sends on.
fn reach_nat(from: &Netns, server: &str, limit: Duration) -> Reach {
    connect_within(from, SocketAddr::new(ip(server), NAT_PORT), limit)
}

/// A connection from alice through the published port, kept open; and one echo through it.
fn open_connection(from: &Netns, server: &str) -> TcpStream {
    let addr = SocketAddr::new(ip(server), PUBLISHED);
    let c = from
        .enter(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .expect("enter")
        .expect("alice's connection");
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    c
}

fn echoes(c: &mut TcpStream, text: &[u8]) -> bool {
    let mut buf = vec![0u8; text.len()];
    c.write_all(text).is_ok() && c.read_exact(&mut buf).is_ok() && buf == text
}

fn health(w: &World, config: &str) -> TableHealth {
    let c =
        knockerd::config::native::parse(std::path::Path::new("k.toml"), config).expect("config");
    let spec = ruleset::TableSpec::from_config(&c);
    w.lab
        .server
        .enter(move || ruleset::verify(&spec))
        .expect("enter")
        .expect("nft list table")
}

/// `nft flush ruleset` in the server; waits until knockerd has its table back, intact, with
/// alice's one grant.
fn flush_and_wait_for_restore(w: &World, config: &str) {
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    wait_for_restore(w, config);
    assert_eq!(w.wait_grants(1, Duration::from_secs(2)).len(), 1);
}

/// Waits until knockerd's table is intact again, up to 5 s, and says so.
fn wait_for_restore(w: &World, config: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    while health(w, config) != TableHealth::Intact && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(health(w, config), TableHealth::Intact, "{}", w.daemon.log());
}

#[test]
fn a_published_container_port_opens_for_alice_alone_and_closes_in_the_kernel() {
    if !e2e(&["iptables", "ip6tables", "sysctl"]) {
        return;
    }
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.web]\nsequence = {ALICE_SEQ:?}\nopen = [\"tcp/{PUBLISHED}\"]\nforward = true\nopen_for = {OPEN_FOR}\n"
    );
    let mut inner = None;
    let w = World::start_with("fwd", |lab| {
        inner = Some(container(lab));
        // Docker's path works before knockerd: whatever is silent below, knocker made so
        for to in [Lab::SERVER_FOR_MALLORY, Lab::SERVER_FOR_MALLORY6] {
            assert_eq!(
                reach(&lab.mallory, to, Duration::from_secs(2)),
                Reach::Connected,
                "the DNAT to the inner host must work without knocker ({to})"
            );
        }
        Knockerd::start(lab, &config)
    });
    assert_eq!(health(&w, &config), TableHealth::Intact);
    let check = w.check();
    assert!(
        check.contains("protects forwarded services") && check.contains("tcp/8080"),
        "{check}"
    );
    // closed to both, as the published port is never on the input hook
    for (who, to) in [
        (&w.lab.alice, Lab::SERVER_FOR_ALICE),
        (&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
    ] {
        assert_eq!(reach(who, to, Duration::ZERO), Reach::Silent);
    }

    w.alice_knocks_and_is_granted();
    assert_eq!(
        reach(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected,
        "{}",
        w.daemon.log()
    );
    let mut kept = open_connection(&w.lab.alice, Lab::SERVER_FOR_ALICE);
    assert!(echoes(&mut kept, b"through the DNAT"));
    assert_eq!(
        reach(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "alice's grant opened nothing for mallory"
    );

    // a flush of the whole ruleset takes Docker's rules and knocker's table; knockerd puts its
    // table back (the prerouting chain with it) and alice's grant; Docker's rules are then put
    // back as `systemctl restart docker` would, and the port is still closed to mallory
    flush_and_wait_for_restore(&w, &config);
    add_docker_rules(&w.lab.server);
    assert_eq!(
        reach(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "after the flush, the restored table protects the published port"
    );
    assert_eq!(
        reach(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected,
        "alice's grant came back with the table"
    );
    // the prerouting chain alone emptied, the input chain untouched: seen and put back too
    w.lab
        .server
        .exec("nft", &["flush", "chain", "inet", "knocker", "prerouting"])
        .expect("nft flush chain");
    wait_for_restore(&w, &config);
    assert_eq!(
        reach(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "the refilled prerouting chain protects the published port again"
    );

    // the grant ends in the kernel; the connection made meanwhile keeps working
    let g = w.wait_grants(0, Duration::from_secs(OPEN_FOR + 10));
    assert!(g.is_empty(), "the grant must expire: {g:?}");
    assert_eq!(
        reach(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::ZERO),
        Reach::Silent,
        "closed again once the grant is gone"
    );
    assert!(
        echoes(&mut kept, b"still established"),
        "an established connection outlives the grant"
    );
    drop(kept);

    // the same over IPv6, through Docker's ip6tables rules: alice's grant in allow6
    for (who, to) in [
        (&w.lab.alice, Lab::SERVER_FOR_ALICE6),
        (&w.lab.mallory, Lab::SERVER_FOR_MALLORY6),
    ] {
        assert_eq!(reach(who, to, Duration::ZERO), Reach::Silent);
    }
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE6, &ALICE_SEQ);
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(
        g.iter().map(|g| g.to.as_str()).collect::<Vec<_>>(),
        [Lab::ALICE6]
    );
    assert_eq!(
        reach(&w.lab.alice, Lab::SERVER_FOR_ALICE6, Duration::from_secs(2)),
        Reach::Connected
    );
    let mut six = open_connection(&w.lab.alice, Lab::SERVER_FOR_ALICE6);
    assert!(echoes(&mut six, b"over IPv6"));
    assert_eq!(
        reach(&w.lab.mallory, Lab::SERVER_FOR_MALLORY6, Duration::ZERO),
        Reach::Silent
    );
    drop(six);
    let names = inner.as_ref().map(|n| n.name().to_string());
    w.finish();
    drop(inner);
    lab::assert_removed(&names.into_iter().collect::<Vec<_>>());
}

/// sshd in the inner namespace on port 22, with a host key and alice's authorized key of the
/// test's own; stopped when dropped.
struct Sshd(std::process::Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Sshd {
    fn start(inner: &Netns, dir: &lab::TempDir) -> Sshd {
        for key in ["host_key", "id"] {
            let out = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .output()
                .expect("ssh-keygen");
            assert!(out.status.success(), "{out:?}");
        }
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        let config = dir.write(
            "sshd_config",
            &format!(
                "Port 22\nListenAddress {INNER}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
                dir.join("host_key").display(),
                dir.join("authorized_keys").display()
            ),
        );
        // sshd wants its privilege separation directory (the package makes it at boot)
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let sshd = Sshd(
            inner
                .command("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start sshd"),
        );
        let listening = connect_within(
            inner,
            SocketAddr::new(ip(INNER), 22),
            Duration::from_secs(5),
        );
        assert_eq!(
            listening,
            Reach::Connected,
            "sshd must listen in the inner namespace"
        );
        sshd
    }
}

/// Waits for alice's one grant to expire; then she is not sent on (no DNAT, no way in).
fn grant_expires_and_nat_closes(w: &World) {
    let g = w.wait_grants(0, Duration::from_secs(OPEN_FOR + 10));
    assert!(g.is_empty(), "the grant must expire: {g:?}");
    assert_eq!(
        reach_nat(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::ZERO),
        Reach::Silent,
        "no DNAT and no way in once the grant is gone"
    );
}

/// alice runs `ssh root@SERVER -p NAT_PORT CMD` with her key; its output.
fn alice_ssh(w: &World, dir: &lab::TempDir, cmd: &str) -> std::process::Output {
    alice_ssh_in(&w.lab, dir, cmd)
}

fn alice_ssh_in(lab: &Lab, dir: &lab::TempDir, cmd: &str) -> std::process::Output {
    ssh_batch(&lab.alice, &dir.join("id"))
        .args([
            "-o",
            "ConnectTimeout=5",
            "-p",
            &NAT_PORT.to_string(),
            &format!("root@{}", Lab::SERVER_FOR_ALICE),
            cmd,
        ])
        .output()
        .expect("run ssh")
}

#[test]
fn a_nat_door_sends_alice_alone_to_the_inner_hosts_ssh_and_ends_with_the_grant() {
    if !e2e(&["sysctl", "sshd", "ssh", "ssh-keygen"]) {
        return;
    }
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.inner]\nsequence = {ALICE_SEQ:?}\nopen = [\"tcp/{NAT_PORT}\"]\nnat = \"{INNER}:22\"\nopen_for = {OPEN_FOR}\n"
    );
    let dir = lab::TempDir::new("fwd-nat");
    let mut inner = None;
    let w = World::start_with("nat", |lab| {
        inner = Some(inner_namespace(lab));
        Knockerd::start(lab, &config)
    });
    let _sshd = Sshd::start(inner.as_ref().expect("inner"), &dir);
    assert_eq!(health(&w, &config), TableHealth::Intact);
    let check = w.check();
    assert!(
        check.contains("sends on to inner hosts")
            && check.contains(&format!("tcp/{NAT_PORT} -> {INNER}:22")),
        "{check}"
    );
    assert!(!check.contains("does not forward"), "{check}");
    // with forwarding off in the server's namespace, check says the door cannot work
    let forwarding = |on: &str| {
        w.lab
            .server
            .exec("sysctl", &["-qw", &format!("net.ipv4.ip_forward={on}")])
            .expect("sysctl");
    };
    forwarding("0");
    let off = w.check();
    forwarding("1");
    assert!(
        off.contains(&format!("/proc/sys/net/ipv4/ip_forward is 0: this host does not forward, so tcp/{NAT_PORT} is never sent on to {INNER}:22")),
        "{off}"
    );
    for (who, to) in [
        (&w.lab.alice, Lab::SERVER_FOR_ALICE),
        (&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
    ] {
        assert_eq!(reach_nat(who, to, Duration::ZERO), Reach::Silent);
    }

    w.alice_knocks_and_is_granted();
    let out = alice_ssh(
        &w,
        &dir,
        "echo on the inner host; cat /proc/net/dev | grep -c eth0",
    );
    assert!(
        out.status.success(),
        "alice's ssh through the server: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.daemon.log()
    );
    // the shell ran where eth0 is the inner host's only link (the server has none of that name)
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "on the inner host\n1\n"
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "alice's grant sends nobody else on"
    );
    // alice's connection was DNAT'd to the inner host; mallory's was dropped before any DNAT
    // and left no connection to it
    let table = w
        .lab
        .server
        .exec("cat", &["/proc/net/nf_conntrack"])
        .expect("the server's conntrack table");
    let sent_on = |who: &str| {
        table.lines().any(|l| {
            l.contains(&format!("src={who} "))
                && l.contains(&format!("dport={NAT_PORT} "))
                && l.contains(&format!("src={INNER} "))
        })
    };
    assert!(sent_on(Lab::ALICE), "{table}");
    assert!(!sent_on(Lab::MALLORY), "{table}");

    // a flush takes the nat chain too; it comes back with the table and alice's grant
    flush_and_wait_for_restore(&w, &config);
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent
    );
    let again = alice_ssh(&w, &dir, "echo again");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // the DNAT is the grant's: once the kernel removes the element, alice is not sent on
    grant_expires_and_nat_closes(&w);
    let names = inner.as_ref().map(|n| n.name().to_string());
    drop(_sshd);
    w.finish();
    drop(inner);
    lab::assert_removed(&names.into_iter().collect::<Vec<_>>());
}

#[test]
fn a_routed_door_protects_a_host_behind_the_server_by_its_own_address() {
    if !e2e(&["sysctl"]) {
        return;
    }
    const ROUTED_PORT: u16 = 2222;
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.lan]\nsequence = {ALICE_SEQ:?}\nopen = [\"tcp/{ROUTED_PORT}\"]\nforward = [\"{INNER}\", \"fd00:200:3::/64\"]\nopen_for = {OPEN_FOR}\n"
    );
    let at = |addr: &str| SocketAddr::new(ip(addr), ROUTED_PORT);
    let mut inner = None;
    let w = World::start_with("routed", |lab| {
        let host = inner_namespace(lab);
        for addr in [INNER, INNER6] {
            let listener = host
                .enter(move || TcpListener::bind((addr, ROUTED_PORT)))
                .expect("enter")
                .expect("listen");
            echo_service(listener);
        }
        // alice and mallory reach the inner network through the server, by routing alone
        for (client, via, via6) in [
            (&lab.alice, Lab::SERVER_FOR_ALICE, Lab::SERVER_FOR_ALICE6),
            (
                &lab.mallory,
                Lab::SERVER_FOR_MALLORY,
                Lab::SERVER_FOR_MALLORY6,
            ),
        ] {
            client
                .ip(&["route", "add", "10.200.3.0/24", "via", via])
                .expect("route");
            client
                .ip(&["-6", "route", "add", "fd00:200:3::/64", "via", via6])
                .expect("route");
        }
        for addr in [INNER, INNER6] {
            assert_eq!(
                connect_within(&lab.mallory, at(addr), Duration::from_secs(2)),
                Reach::Connected,
                "the route to the inner host must work without knocker ({addr})"
            );
        }
        inner = Some(host);
        Knockerd::start(lab, &config)
    });
    assert_eq!(health(&w, &config), TableHealth::Intact);
    let check = w.check();
    assert!(
        check.contains(&format!(
            "protects routed services (of hosts behind this one, reached without DNAT: dropped for everyone without a grant in chain prerouting at priority -110): tcp/{ROUTED_PORT} on {INNER}/32, fd00:200:3::/64"
        )),
        "{check}"
    );
    for who in [&w.lab.alice, &w.lab.mallory] {
        for addr in [INNER, INNER6] {
            assert_eq!(connect_within(who, at(addr), Duration::ZERO), Reach::Silent);
        }
    }
    // the door is the inner host's: the server's own port of that number is not its to close
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Connected
    );

    w.alice_knocks_and_is_granted();
    assert_eq!(
        connect_within(&w.lab.alice, at(INNER), Duration::from_secs(2)),
        Reach::Connected,
        "{}",
        w.daemon.log()
    );
    assert_eq!(
        connect_within(&w.lab.mallory, at(INNER), Duration::ZERO),
        Reach::Silent
    );
    // IPv6: alice's IPv4 grant opens nothing for her IPv6 address; her IPv6 knock does
    assert_eq!(
        connect_within(&w.lab.alice, at(INNER6), Duration::ZERO),
        Reach::Silent
    );
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE6, &ALICE_SEQ);
    assert_eq!(w.wait_grants(2, Duration::from_secs(2)).len(), 2);
    assert_eq!(
        connect_within(&w.lab.alice, at(INNER6), Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        connect_within(&w.lab.mallory, at(INNER6), Duration::ZERO),
        Reach::Silent
    );
    let names = inner.as_ref().map(|n| n.name().to_string());
    w.finish();
    drop(inner);
    lab::assert_removed(&names.into_iter().collect::<Vec<_>>());
}

const FWKNOP_KEY: &str = "fwknoptestkey123";
const FWKNOP_HMAC: &str = "fwknophmackey12345678";

/// An access.conf whose one stanza sends tcp/NAT_PORT on to the inner host's sshd (FORCE_NAT).
fn force_nat_access_conf(dir: &lab::TempDir) -> std::path::PathBuf {
    dir.private(
        "access.conf",
        &format!(
            "SOURCE ANY\nOPEN_PORTS tcp/{NAT_PORT}\nFORCE_NAT {INNER} 22\nKEY {FWKNOP_KEY}\nHMAC_KEY {FWKNOP_HMAC}\nFW_ACCESS_TIMEOUT {OPEN_FOR}\n"
        ),
    )
}

/// Runs a fwknop client (Debian's `fwknop`, or `knocker spa --fwknop`) from `from` to `server`
/// with the stanza's keys and these options; asserts it ran.
fn fwknop_client(from: &Netns, program: &str, server: &str, args: &[&str]) {
    let mut c = from.command(program);
    if program != "fwknop" {
        c.args(["spa", "--fwknop"]);
    } else {
        c.args(["--no-save-args", "--no-rc-file", "--use-hmac"]);
    }
    let out = c
        .args(["-D", server, "--key-rijndael", FWKNOP_KEY])
        .args(["--key-hmac", FWKNOP_HMAC])
        .args(args)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run the fwknop client");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_force_nat_stanza_sends_alice_alone_to_the_inner_hosts_ssh_for_fwknop_clients() {
    if !e2e(&["sysctl", "sshd", "ssh", "ssh-keygen", "fwknop"]) {
        return;
    }
    let dir = lab::TempDir::new("fwd-force-nat");
    let access = force_nat_access_conf(&dir).display().to_string();
    let mut inner = None;
    let w = World::start_with("fnat", |lab| {
        inner = Some(inner_namespace(lab));
        Knockerd::start_args(lab, &["--fwknop-access", &access])
    });
    let _sshd = Sshd::start(inner.as_ref().expect("inner"), &dir);
    let check = w
        .lab
        .server
        .exec(
            env!("CARGO_BIN_EXE_knockerd"),
            &["check", "--fwknop-access", &access],
        )
        .expect("knockerd check");
    assert!(
        check.contains(&format!("tcp/{NAT_PORT} -> {INNER}:22")),
        "{check}"
    );
    for (who, to) in [
        (&w.lab.alice, Lab::SERVER_FOR_ALICE),
        (&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
    ] {
        assert_eq!(reach_nat(who, to, Duration::ZERO), Reach::Silent);
    }

    // Debian's fwknop, asking for NAT to the inner host as fwknopd's users do
    let nat = format!("{INNER}:22");
    let port = format!("tcp/{NAT_PORT}");
    fwknop_client(
        &w.lab.alice,
        "fwknop",
        Lab::SERVER_FOR_ALICE,
        &["-A", &port, "-N", &nat, "-a", Lab::ALICE],
    );
    let g = w.wait_grants(1, Duration::from_secs(5));
    assert_eq!(
        g.iter()
            .map(|g| (g.to.as_str(), g.service.as_str()))
            .collect::<Vec<_>>(),
        [(Lab::ALICE, port.as_str())],
        "{}",
        w.daemon.log()
    );
    let out = alice_ssh(&w, &dir, "cat /proc/net/dev | grep -c eth0");
    assert!(
        out.status.success(),
        "alice's ssh through the server: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.daemon.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "on the inner host"
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "alice's grant sends nobody else on"
    );
    grant_expires_and_nat_closes(&w);

    // knocker's own client, naming another inner host: the stanza's FORCE_NAT decides where
    // the connection goes, never the packet
    let knocker = knocker_client().display().to_string();
    fwknop_client(
        &w.lab.alice,
        &knocker,
        Lab::SERVER_FOR_ALICE,
        &["-A", &port, "-N", "10.200.3.9:22", "-a", Lab::ALICE],
    );
    assert_eq!(w.wait_grants(1, Duration::from_secs(5)).len(), 1);
    let out = alice_ssh(&w, &dir, "echo again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent
    );
    let names = inner.as_ref().map(|n| n.name().to_string());
    drop(_sshd);
    w.finish();
    drop(inner);
    lab::assert_removed(&names.into_iter().collect::<Vec<_>>());
}

/// The same access.conf, unchanged, under Debian's fwknopd with ENABLE_IPT_FORWARDING: knocker's
/// `-N` is what fwknopd's users send, and it takes alice to the inner host's sshd there too.
#[test]
fn the_same_force_nat_access_conf_under_debians_fwknopd_takes_knockers_nat_request() {
    if !e2e(&["sysctl", "sshd", "ssh", "ssh-keygen", "fwknopd", "iptables"]) {
        return;
    }
    let dir = lab::TempDir::new("fwd-fwknopd-nat");
    let access = force_nat_access_conf(&dir);
    let conf = dir.private(
        "fwknopd.conf",
        "PCAP_INTF to-alice;\nENABLE_IPT_FORWARDING Y;\n",
    );
    let lab = Lab::new("fwdnat").expect("lab");
    let inner = inner_namespace(&lab);
    let _sshd = Sshd::start(&inner, &dir);
    let d = Fwknopd::start(
        &lab.server,
        &conf,
        &access,
        &dir.join("fwknopd"),
        "to-alice",
    );
    let to = |addr: &str| SocketAddr::new(ip(addr), NAT_PORT);
    assert_ne!(
        connect_within(&lab.alice, to(Lab::SERVER_FOR_ALICE), Duration::ZERO),
        Reach::Connected
    );
    let knocker = knocker_client().display().to_string();
    let port = format!("tcp/{NAT_PORT}");
    let nat = format!("{INNER}:22");
    fwknop_client(
        &lab.alice,
        &knocker,
        Lab::SERVER_FOR_ALICE,
        &["-A", &port, "-N", &nat, "-a", Lab::ALICE],
    );
    assert_eq!(
        connect_within(
            &lab.alice,
            to(Lab::SERVER_FOR_ALICE),
            Duration::from_secs(5)
        ),
        Reach::Connected,
        "fwknopd's DNAT: {}",
        lab.server
            .exec("iptables", &["-t", "nat", "-n", "-L"])
            .unwrap_or_default()
    );
    let out = alice_ssh_in(&lab, &dir, "cat /proc/net/dev | grep -c eth0");
    assert!(
        out.status.success(),
        "alice's ssh through fwknopd's DNAT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "on the inner host"
    );
    // fwknopd's DNAT is for alice's address alone
    assert_ne!(
        connect_within(&lab.mallory, to(Lab::SERVER_FOR_MALLORY), Duration::ZERO),
        Reach::Connected
    );
    drop(d);
    let names = [inner.name().to_string()];
    drop(inner);
    drop(lab);
    lab::assert_removed(&names);
}

#[test]
fn a_nat_door_that_masquerades_reaches_an_inner_host_with_no_route_back() {
    if !e2e(&["sysctl", "sshd", "ssh", "ssh-keygen"]) {
        return;
    }
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[door.inner]\nsequence = {ALICE_SEQ:?}\nopen = [\"tcp/{NAT_PORT}\"]\nnat = \"{INNER}:22\"\nnat_source = \"masquerade\"\nopen_for = {OPEN_FOR}\n"
    );
    let dir = lab::TempDir::new("fwd-masq");
    let mut inner = None;
    let w = World::start_with("masq", |lab| {
        // no route from the inner host to alice: only a rewritten source gets an answer
        inner = Some(inner_namespace_routed(lab, false));
        Knockerd::start(lab, &config)
    });
    let _sshd = Sshd::start(inner.as_ref().expect("inner"), &dir);
    assert_eq!(health(&w, &config), TableHealth::Intact);
    let check = w.check();
    assert!(
        check.contains("from the server's own address (masquerade)"),
        "check says how the connections leave: {check}"
    );
    w.alice_knocks_and_is_granted();
    let out = alice_ssh(&w, &dir, "echo $SSH_CLIENT");
    assert!(
        out.status.success(),
        "alice's ssh through the server to an inner host with no route back: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.daemon.log()
    );
    // the inner host saw the server's address on its link, not alice's
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.starts_with(&format!("{SERVER_FOR_INNER} ")),
        "the inner host saw {seen:?}, not the server's {SERVER_FOR_INNER}"
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "the source rewrite sends nobody on without a grant"
    );
    // a flush takes the postrouting chain with it; the restore puts it back
    flush_and_wait_for_restore(&w, &config);
    let out = alice_ssh(&w, &dir, "echo $SSH_CLIENT");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(SERVER_FOR_INNER),
        "after the restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = inner.as_ref().map(|n| n.name().to_string());
    drop(_sshd);
    drop(inner);
    w.finish();
    if let Some(n) = names {
        lab::assert_removed(&[n]);
    }
}

/// An access.conf whose one stanza opens tcp/NAT_PORT without FORCE_NAT: a client may name its
/// own inner host (fwknop -N) where the daemon allows it.
fn client_nat_access_conf(dir: &lab::TempDir) -> std::path::PathBuf {
    dir.private(
        "access.conf",
        &format!(
            "SOURCE ANY\nOPEN_PORTS tcp/{NAT_PORT}\nKEY {FWKNOP_KEY}\nHMAC_KEY {FWKNOP_HMAC}\nFW_ACCESS_TIMEOUT {OPEN_FOR}\n"
        ),
    )
}

/// fwknopd.conf with forwarding on (fwknopd's switch for NAT requests), for both daemons.
fn forwarding_conf(dir: &lab::TempDir) -> std::path::PathBuf {
    dir.private(
        "fwknopd.conf",
        "PCAP_INTF to-alice;\nENABLE_IPT_FORWARDING Y;\n",
    )
}

/// The networks knockerd may send a client's NAT request to, in the client NAT test.
const NAT_TARGETS: &str = "10.200.3.0/24";

/// Waits until knockerd's table for this access.conf is intact again, up to 5 s.
fn wait_for_fwknop_restore(w: &World, access: &str, conf: &str) {
    let c = knockerd::config::fwknop::doors::load(
        std::path::Path::new(access),
        Some(std::path::Path::new(conf)),
        knockerd::config::fwknop::Legacy::Refuse,
        &[NAT_TARGETS.parse().expect("net")],
    )
    .expect("config")
    .0;
    let health = || {
        let spec = ruleset::TableSpec::from_config(&c);
        w.lab
            .server
            .enter(move || ruleset::verify(&spec))
            .expect("enter")
            .expect("nft list table")
    };
    let end = Instant::now() + Duration::from_secs(5);
    while health() != TableHealth::Intact && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(health(), TableHealth::Intact, "{}", w.daemon.log());
}

/// The server's client NAT map for IPv4, as nft lists it.
fn client_nat_map(w: &World) -> String {
    w.lab
        .server
        .exec(
            "nft",
            &["list", "map", "inet", "knocker", ruleset::CLIENT_NAT4],
        )
        .expect("nft list map")
}

#[test]
fn a_client_named_inner_host_takes_alice_alone_to_its_ssh_within_the_listed_networks() {
    if !e2e(&["sysctl", "sshd", "ssh", "ssh-keygen", "fwknop"]) {
        return;
    }
    let dir = lab::TempDir::new("fwd-client-nat");
    let access = client_nat_access_conf(&dir).display().to_string();
    let conf = forwarding_conf(&dir).display().to_string();
    let mut inner = None;
    let mut w = World::start_with("cnat", |lab| {
        inner = Some(inner_namespace(lab));
        Knockerd::start_args(
            lab,
            &[
                "--fwknop-access",
                &access,
                "--fwknopd-conf",
                &conf,
                "--fwknop-nat-targets",
                NAT_TARGETS,
            ],
        )
    });
    let _sshd = Sshd::start(inner.as_ref().expect("inner"), &dir);
    let check = w
        .lab
        .server
        .exec(
            env!("CARGO_BIN_EXE_knockerd"),
            &[
                "check",
                "--fwknop-access",
                &access,
                "--fwknopd-conf",
                &conf,
                "--fwknop-nat-targets",
                NAT_TARGETS,
            ],
        )
        .expect("knockerd check");
    assert!(
        check.contains("sends a granted client on to the inner host it names itself")
            && check.contains(&format!("in {NAT_TARGETS} only (--fwknop-nat-targets")),
        "{check}"
    );
    for (who, to) in [
        (&w.lab.alice, Lab::SERVER_FOR_ALICE),
        (&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
    ] {
        assert_eq!(reach_nat(who, to, Duration::ZERO), Reach::Silent);
    }
    let port = format!("tcp/{NAT_PORT}");
    let nat_request = |to: &str| {
        fwknop_client(
            &w.lab.alice,
            "fwknop",
            Lab::SERVER_FOR_ALICE,
            &["-A", &port, "-N", to, "-a", Lab::ALICE],
        );
    };

    // a host outside the listed networks (refused by the worker's decoder), and the server's
    // own address on the inner link, inside them (refused by the gatekeeper): nothing opens
    nat_request("10.200.4.2:22");
    w.daemon.wait_log(
        &format!("10.200.4.2:22 is in none of the door's networks (nat_networks, --fwknop-nat-targets: {NAT_TARGETS})"),
        Duration::from_secs(5),
    );
    nat_request(&format!("{SERVER_FOR_INNER}:22"));
    w.daemon.wait_log(
        &format!("{SERVER_FOR_INNER} is one of this host's own addresses"),
        Duration::from_secs(5),
    );
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    assert!(!client_nat_map(&w).contains(Lab::ALICE));
    assert_eq!(
        reach_nat(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::ZERO),
        Reach::Silent
    );

    // the inner host: alice's grant element and her map entry, and her ssh reaches it
    nat_request(&format!("{INNER}:22"));
    let g = w.wait_grants(1, Duration::from_secs(5));
    assert_eq!(
        g.iter()
            .map(|g| (g.to.as_str(), g.service.as_str()))
            .collect::<Vec<_>>(),
        [(Lab::ALICE, port.as_str())],
        "{}",
        w.daemon.log()
    );
    let map = client_nat_map(&w);
    assert!(
        map.contains(&format!(
            "{} . tcp . {NAT_PORT} timeout {OPEN_FOR}s",
            Lab::ALICE
        )) && map.contains(&format!(": {INNER} . 22")),
        "{map}"
    );
    w.daemon
        .wait_log(&format!("sent on to {INNER}:22"), Duration::from_secs(2));
    let out = alice_ssh(&w, &dir, "cat /proc/net/dev | grep -c eth0");
    assert!(
        out.status.success(),
        "alice's ssh through the server: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.daemon.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "on the inner host"
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent,
        "alice's grant sends nobody else on"
    );

    // knockerd restarts (its grants kept, as on_stop says by default), takes over the live
    // entry, and after a flush, which takes the map and the nat chain, puts both back with
    // alice's grant
    w.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start_args(
        &w.lab,
        &[
            "--fwknop-access",
            &access,
            "--fwknopd-conf",
            &conf,
            "--fwknop-nat-targets",
            NAT_TARGETS,
        ],
    );
    w.daemon.wait_log(
        "1 client NAT entry(ies) still open from before the restart",
        Duration::from_secs(5),
    );
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    wait_for_fwknop_restore(&w, &access, &conf);
    assert_eq!(w.wait_grants(1, Duration::from_secs(2)).len(), 1);
    assert!(
        client_nat_map(&w).contains(&format!(": {INNER} . 22")),
        "{}",
        client_nat_map(&w)
    );
    let again = alice_ssh(&w, &dir, "echo again");
    assert!(
        again.status.success(),
        "after the restore: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent
    );

    // the kernel ends the map entry with the grant: alice is sent on no more
    grant_expires_and_nat_closes(&w);
    let map = client_nat_map(&w);
    assert!(!map.contains(Lab::ALICE), "the entry must expire: {map}");

    // knocker's own client sends the same NAT request
    let knocker = knocker_client().display().to_string();
    fwknop_client(
        &w.lab.alice,
        &knocker,
        Lab::SERVER_FOR_ALICE,
        &["-A", &port, "-N", &format!("{INNER}:22"), "-a", Lab::ALICE],
    );
    assert_eq!(w.wait_grants(1, Duration::from_secs(5)).len(), 1);
    let out = alice_ssh(&w, &dir, "cat /proc/net/dev | grep -c eth0");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "1\n",
        "knocker spa --fwknop -N: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = inner.as_ref().map(|n| n.name().to_string());
    drop(_sshd);
    w.finish();
    drop(inner);
    lab::assert_removed(&names.into_iter().collect::<Vec<_>>());
}

/// The same access.conf and fwknopd.conf under Debian's fwknopd: Debian's fwknop -N takes alice
/// to the inner host's sshd there too (fwknopd checks no network: it sends a client wherever
/// the packet says).
#[test]
fn the_same_client_nat_request_under_debians_fwknopd_reaches_the_inner_hosts_ssh() {
    if !e2e(&[
        "sysctl",
        "sshd",
        "ssh",
        "ssh-keygen",
        "fwknop",
        "fwknopd",
        "iptables",
    ]) {
        return;
    }
    let dir = lab::TempDir::new("fwd-fwknopd-cnat");
    let access = client_nat_access_conf(&dir);
    let conf = forwarding_conf(&dir);
    let lab = Lab::new("fwdcnat").expect("lab");
    let inner = inner_namespace(&lab);
    let _sshd = Sshd::start(&inner, &dir);
    let d = Fwknopd::start(
        &lab.server,
        &conf,
        &access,
        &dir.join("fwknopd"),
        "to-alice",
    );
    let to = |addr: &str| SocketAddr::new(ip(addr), NAT_PORT);
    assert_ne!(
        connect_within(&lab.alice, to(Lab::SERVER_FOR_ALICE), Duration::ZERO),
        Reach::Connected
    );
    let port = format!("tcp/{NAT_PORT}");
    let nat = format!("{INNER}:22");
    fwknop_client(
        &lab.alice,
        "fwknop",
        Lab::SERVER_FOR_ALICE,
        &["-A", &port, "-N", &nat, "-a", Lab::ALICE],
    );
    assert_eq!(
        connect_within(
            &lab.alice,
            to(Lab::SERVER_FOR_ALICE),
            Duration::from_secs(5)
        ),
        Reach::Connected,
        "fwknopd's DNAT: {}",
        lab.server
            .exec("iptables", &["-t", "nat", "-n", "-L"])
            .unwrap_or_default()
    );
    let out = alice_ssh_in(&lab, &dir, "cat /proc/net/dev | grep -c eth0");
    assert!(
        out.status.success(),
        "alice's ssh through fwknopd's DNAT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_ne!(
        connect_within(&lab.mallory, to(Lab::SERVER_FOR_MALLORY), Duration::ZERO),
        Reach::Connected
    );
    drop(d);
    let names = [inner.name().to_string()];
    drop(inner);
    drop(lab);
    lab::assert_removed(&names);
}

#[test]
fn a_force_masquerade_stanza_takes_debians_fwknop_client_to_an_inner_host_with_no_route_back() {
    if !e2e(&["sysctl", "sshd", "ssh", "ssh-keygen", "fwknop"]) {
        return;
    }
    let dir = lab::TempDir::new("fwd-fwknop-masq");
    let access = dir
        .private(
            "access.conf",
            &format!(
                "SOURCE ANY\nOPEN_PORTS tcp/{NAT_PORT}\nFORCE_NAT {INNER} 22\nFORCE_MASQUERADE Y\nKEY {FWKNOP_KEY}\nHMAC_KEY {FWKNOP_HMAC}\nFW_ACCESS_TIMEOUT {OPEN_FOR}\n"
            ),
        )
        .display()
        .to_string();
    let mut inner = None;
    let w = World::start_with("fmasq", |lab| {
        // no route from the inner host to alice: only a rewritten source gets an answer
        inner = Some(inner_namespace_routed(lab, false));
        Knockerd::start_args(lab, &["--fwknop-access", &access])
    });
    let _sshd = Sshd::start(inner.as_ref().expect("inner"), &dir);
    let port = format!("tcp/{NAT_PORT}");
    let nat = format!("{INNER}:22");
    fwknop_client(
        &w.lab.alice,
        "fwknop",
        Lab::SERVER_FOR_ALICE,
        &["-A", &port, "-N", &nat, "-a", Lab::ALICE],
    );
    assert_eq!(w.wait_grants(1, Duration::from_secs(5)).len(), 1);
    let out = alice_ssh(&w, &dir, "echo $SSH_CLIENT");
    assert!(
        out.status.success(),
        "alice's ssh to an inner host with no route back: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.daemon.log()
    );
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.starts_with(&format!("{SERVER_FOR_INNER} ")),
        "the inner host saw {seen:?}, not the server's {SERVER_FOR_INNER}"
    );
    assert_eq!(
        reach_nat(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, Duration::ZERO),
        Reach::Silent
    );
    let names = inner.as_ref().map(|n| n.name().to_string());
    drop(_sshd);
    drop(inner);
    w.finish();
    if let Some(n) = names {
        lab::assert_removed(&[n]);
    }
}
