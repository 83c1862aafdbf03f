//! Never locking the admin out, end to end in network namespaces with the real knockerd and real
//! nftables: trusted sources reach protected services without a knock (from the configuration
//! and from `--trusted`), the admin's own accept rule does not, the admin's mark (set with the
//! lines `knockerd check` prints) does, and knocks arriving on an interface other than
//! `interface` are not seen while protection stays on every interface. Needs root, iproute2 and
//! nftables.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// A sequence of the tests' own (not a published one, which `check` would warn about).
const SEQ: [&str; 3] = ["7001", "9002:udp", "8003"];

fn config(extra_daemon: &str) -> String {
    door_config(
        extra_daemon,
        &format!("sequence = {SEQ:?}\nopen_for = 30\n"),
    )
}

/// Rewrites the running daemon's configuration and waits until the reload is done.
fn reload(w: &World, extra_daemon: &str) {
    let before = w.daemon.log().matches("configuration reloaded").count();
    let text = std::fs::read_to_string(&w.daemon.config).expect("config");
    let state = text
        .lines()
        .find(|l| l.starts_with("state_dir"))
        .expect("state_dir");
    let new = config(extra_daemon).replacen("[daemon]\n", &format!("[daemon]\n{state}\n"), 1);
    std::fs::write(&w.daemon.config, new).expect("write config");
    w.daemon.signal(Signal::SIGHUP);
    let end = Instant::now() + Duration::from_secs(5);
    while w.daemon.log().matches("configuration reloaded").count() == before {
        assert!(Instant::now() < end, "no reload; log:\n{}", w.daemon.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `knockerd check` run in the server's namespace on the daemon's configuration.
fn check(w: &World, extra: &[&str]) -> String {
    let path = w.daemon.config.display().to_string();
    let mut args = vec!["check", "--config", &path];
    args.extend_from_slice(extra);
    w.lab
        .server
        .exec(env!("CARGO_BIN_EXE_knockerd"), &args)
        .expect("check passes")
}

/// Asserts what a connection from `from` to `to`'s protected service gets.
fn reach(w: &World, from: &Netns, to: &str, expected: Reach) {
    let got = w.connect(from, to);
    assert_eq!(got, expected, "{} to {to}\n{}", from.name(), w.daemon.log());
}

fn nft(w: &World, args: &[&str]) -> String {
    w.lab.server.exec("nft", args).expect("nft")
}

fn load_nft(w: &World, script: &str) {
    let path = std::env::temp_dir().join(format!("knocker-lockout-{}.nft", w.lab.server.name()));
    std::fs::write(&path, script).expect("script");
    let r = w
        .lab
        .server
        .exec("nft", &["-f", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    r.expect("the admin's nft script loads");
}

#[test]
fn trusted_sources_reach_protected_services_without_a_knock_and_others_do_not() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new(
        "trust",
        &config("trusted = [\"10.200.1.0/24\", \"fd00:200:1::/64\"]\n"),
    );
    let set = nft(&w, &["list", "set", "inet", "knocker", "trusted4"]);
    assert!(set.contains("10.200.1.0/24"), "{set}");
    let set = nft(&w, &["list", "set", "inet", "knocker", "trusted6"]);
    assert!(set.contains("fd00:200:1::/64"), "{set}");
    let out = check(&w, &[]);
    assert!(
        out.contains("trusts (knocker's protection never drops them; sets trusted4 and trusted6): 10.200.1.0/24, fd00:200:1::/64"),
        "{out}"
    );

    // alice's network is trusted: no knock, no grant, and she connects over IPv4 and IPv6
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE, Reach::Connected);
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE6, Reach::Connected);
    assert!(
        w.grants().is_empty(),
        "trust is not a grant: {:?}",
        w.grants()
    );
    // mallory is not: the protected service stays silent to her
    reach(&w, &w.lab.mallory, Lab::SERVER_FOR_MALLORY, Reach::Silent);
    reach(&w, &w.lab.mallory, Lab::SERVER_FOR_MALLORY6, Reach::Silent);

    // a knock from a trusted source still counts (the admin can test a door from there)
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &SEQ);
    let g = w.wait_grants(1, Duration::from_secs(3));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE, "{g:?}");

    // a reload that drops the trust takes it away at once: alice's IPv6 address, which has no
    // grant, gets nothing; her IPv4 address keeps its grant
    reload(&w, "");
    let set = nft(&w, &["list", "set", "inet", "knocker", "trusted6"]);
    assert!(!set.contains("fd00:200:1::/64"), "{set}");
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE6, Reach::Silent);
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE, Reach::Connected);
    w.finish();
}

#[test]
fn trusted_on_the_command_line_adds_to_the_configuration() {
    if !e2e(&[]) {
        return;
    }
    let w = World::start_with("trustcli", |lab| {
        let dir = std::env::temp_dir().join(format!("knocker-lockout-cli-{}", lab.server.name()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("knockerd.toml");
        std::fs::write(&path, config("trusted = [\"fd00:200:2::2\"]\n")).expect("config");
        let path = path.display().to_string();
        Knockerd::start_args(lab, &["--trusted", "10.200.2.2", "--config", &path])
    });
    // mallory's IPv4 address from --trusted, her IPv6 address from the file; alice neither
    reach(
        &w,
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        Reach::Connected,
    );
    reach(
        &w,
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY6,
        Reach::Connected,
    );
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE, Reach::Silent);
    let set = nft(&w, &["list", "set", "inet", "knocker", "trusted4"]);
    assert!(set.contains("10.200.2.2"), "{set}");
    // what check refuses, a reload refuses too, and the running configuration (with the trust
    // from the command line) stays
    std::fs::write(
        &w.daemon.config,
        config("worker_user = \"knocker-no-such-user\"\n"),
    )
    .expect("config");
    w.daemon.signal(Signal::SIGHUP);
    w.daemon.wait_log(
        "reload refused, keeping the running configuration: there is no user \"knocker-no-such-user\"",
        Duration::from_secs(5),
    );
    reach(
        &w,
        &w.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        Reach::Connected,
    );
    let _ = std::fs::remove_dir_all(w.daemon.config.parent().expect("dir"));
    w.finish();
}

#[test]
fn the_admins_own_accept_does_not_override_knockers_drop_but_the_admins_mark_does() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("mark", &config("accept_mark = 0x4b410000\n"));
    // the admin's own table accepts alice: knocker's drop still wins, and check says why
    load_nft(
        &w,
        &format!(
            "table inet admin {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {} tcp dport {SERVICE} accept\n  }}\n}}\n",
            Lab::ALICE
        ),
    );
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE, Reach::Silent);
    let out = check(&w, &[]);
    assert!(
        out.contains("warning: chain inet admin input accepts some sources or ports itself, but an accept in your own firewall does not stop knocker's drop"),
        "{out}"
    );

    // the lines check prints, with alice's addresses for the documentation's networks
    let script: String = out
        .lines()
        .skip_while(|l| !l.starts_with("lets through packets marked 0x4b410000"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(script.contains("hook prerouting"), "{out}");
    let script = script
        .replace("192.0.2.0/24", Lab::ALICE)
        .replace("2001:db8::/32", Lab::ALICE6);
    load_nft(&w, &script);
    // marked by the admin: alice reaches the protected service with no knock and no grant
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE, Reach::Connected);
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE6, Reach::Connected);
    assert!(w.grants().is_empty(), "{:?}", w.grants());
    // not marked: mallory gets nothing
    reach(&w, &w.lab.mallory, Lab::SERVER_FOR_MALLORY, Reach::Silent);
    reach(&w, &w.lab.mallory, Lab::SERVER_FOR_MALLORY6, Reach::Silent);
    w.finish();
}

#[test]
fn knocks_on_another_interface_are_not_seen_and_protection_stays_on_it() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("iface", &config("interface = \"to-alice\"\n"));
    // a second link between alice and the server: the server's to-alice2 is not `interface`
    lab::link(
        &w.lab.server,
        "to-alice2",
        &["10.200.3.1/24"],
        &w.lab.alice,
        "eth1",
        &["10.200.3.2/24"],
    )
    .expect("second link");
    w.daemon.wait_log(
        "knocks are seen only on interface to-alice, but protection applies on every interface",
        Duration::from_secs(2),
    );
    let out = check(&w, &[]);
    assert!(
        out.contains("warning: knocks are seen only on interface to-alice, but protection applies on every interface (failing closed)"),
        "{out}"
    );

    // over the second link the service is dropped, and alice's right knock is not seen
    reach(&w, &w.lab.alice, "10.200.3.1", Reach::Silent);
    w.knock(&w.lab.alice, "10.200.3.1", &SEQ);
    // mallory's link is not `interface` either
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &SEQ);
    // NFLOG keeps the order of packets: once the knock on to-alice is granted, the knocks sent
    // before it were seen too, had they been logged at all
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &SEQ);
    let g = w.wait_grants(1, Duration::from_secs(3));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(g[0].to, Lab::ALICE, "{g:?}");
    assert!(
        !w.daemon.log().contains("src=10.200.3.2") && !w.daemon.log().contains("src=10.200.2.2"),
        "{}",
        w.daemon.log()
    );
    reach(&w, &w.lab.alice, Lab::SERVER_FOR_ALICE, Reach::Connected);
    // the grant is for alice's address on to-alice; her other address stays out
    reach(&w, &w.lab.alice, "10.200.3.1", Reach::Silent);
    reach(&w, &w.lab.mallory, Lab::SERVER_FOR_MALLORY, Reach::Silent);

    // the way in from elsewhere: trust that network
    reload(
        &w,
        "interface = \"to-alice\"\ntrusted = [\"10.200.3.0/24\"]\n",
    );
    reach(&w, &w.lab.alice, "10.200.3.1", Reach::Connected);
    reach(&w, &w.lab.mallory, Lab::SERVER_FOR_MALLORY, Reach::Silent);
    w.finish();
}
