//! End-to-end: something else touches the firewall while knockerd runs. A bare `nft flush
//! ruleset`, a Debian-style reload of /etc/nftables.conf (which begins with `flush ruleset`),
//! with and without knockerd's include file, and a rule slipped into knockerd's own chain. The
//! protection, the knock rules and every live grant (with the time it has left) come back, and
//! the log says what happened. Real knockerd, real nftables, real packets, in namespaces.

mod common;

use std::time::{Duration, Instant};

use common::*;
use knockerd::ruleset;

/// Waits until `cond` holds, up to `limit`; returns how long it took, or None.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn table_exists(w: &World) -> bool {
    w.lab
        .server
        .enter(ruleset::table_exists)
        .expect("enter")
        .expect("nft list tables")
}

/// Debian's /etc/nftables.conf as the nftables package ships it, plus `extra` at the end.
fn debian_nftables_conf(extra: &str) -> String {
    format!(
        "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {{\n\tchain input {{\n\t\ttype filter hook input priority filter;\n\t}}\n\tchain forward {{\n\t\ttype filter hook forward priority filter;\n\t}}\n\tchain output {{\n\t\ttype filter hook output priority filter;\n\t}}\n}}\n{extra}"
    )
}

/// Loads an nftables.conf in the server namespace as `systemctl restart nftables` does
/// (`nft -f /etc/nftables.conf`).
fn load_conf(w: &World, name: &str, text: &str) {
    let path = w
        .state_dir()
        .with_file_name(format!("knocker-e2e-{}-{name}.conf", w.lab.server.name()));
    std::fs::write(&path, text).expect("write nftables.conf");
    let out = w
        .lab
        .server
        .exec("nft", &["-f", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    out.expect("nft -f nftables.conf");
}

/// alice's one grant, with the seconds it has left in the kernel.
fn alice_grant_left(w: &World) -> Option<u64> {
    let g = w.grants();
    (g.len() == 1 && g[0].to == Lab::ALICE).then(|| g[0].expires_s)
}

#[test]
fn a_bare_flush_ruleset_is_undone_with_every_grant_and_its_time_left() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("flush", 30);
    w.alice_knocks_and_is_granted();
    std::thread::sleep(Duration::from_millis(1500));
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    let took = wait_for(Duration::from_secs(5), || {
        table_exists(&w) && alice_grant_left(&w).is_some()
    });
    eprintln!("flush ruleset: table and grant back within {took:?} (as seen by polling)");
    assert!(
        took.is_some(),
        "the table and alice's grant must come back; log:\n{}",
        w.daemon.log()
    );
    let left = alice_grant_left(&w).expect("alice's grant");
    assert!(
        (20..30).contains(&left),
        "restored with the time it had left, never more: {left}s"
    );
    w.daemon.wait_log(
        "table inet knocker was deleted by another program",
        Duration::from_secs(2),
    );
    assert!(
        w.daemon.log().contains("include \""),
        "the error says how to make reloads atomic:\n{}",
        w.daemon.log()
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "protected again"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Connected,
        "alice's grant is back"
    );
    // the knock rules are back too: mallory's own knock is seen and granted
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &ALICE_SEQ);
    assert_eq!(
        w.wait_grants(2, Duration::from_secs(3)).len(),
        2,
        "knocks are seen after the restore; log:\n{}",
        w.daemon.log()
    );
    let mut d = w;
    assert!(
        d.daemon.child.try_wait().expect("wait").is_none(),
        "knockerd keeps running"
    );
    d.finish();
}

#[test]
fn a_debian_reload_without_the_include_is_undone_and_with_it_never_opens() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("include", 30);
    let include = ruleset::include_line(&w.state_dir());
    let file = ruleset::include_path(&w.state_dir());
    let text = std::fs::read_to_string(&file).expect("knockerd wrote its include file");
    assert!(text.contains("add table inet knocker"), "{text}");
    // check prints the line to add
    let check = w
        .lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .args(["check", "--config", &w.daemon.config.display().to_string()])
        .output()
        .expect("knockerd check");
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains(&include),
        "check prints `{include}`:\n{check}"
    );
    w.alice_knocks_and_is_granted();

    // 1. the stock nftables.conf: knocker's table goes, knockerd puts it back
    load_conf(&w, "stock", &debian_nftables_conf(""));
    assert!(
        wait_for(Duration::from_secs(5), || table_exists(&w)
            && alice_grant_left(&w).is_some())
        .is_some(),
        "restored after a reload without the include; log:\n{}",
        w.daemon.log()
    );
    w.daemon.wait_log(
        "table inet knocker was deleted by another program",
        Duration::from_secs(2),
    );
    let errors_before = w.daemon.log().matches("was deleted by another").count();

    // 2. with the include after `flush ruleset`: the table is there the moment nft returns,
    // in the same transaction, and the grants follow at once
    load_conf(
        &w,
        "include",
        &debian_nftables_conf(&format!("{include}\n")),
    );
    assert!(
        table_exists(&w),
        "the reload itself recreated knocker's table: no gap"
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "protected across the reload"
    );
    assert!(
        wait_for(Duration::from_secs(5), || alice_grant_left(&w).is_some()).is_some(),
        "alice's grant comes back right after; log:\n{}",
        w.daemon.log()
    );
    w.daemon
        .wait_log("its protection never lapsed", Duration::from_secs(2));
    assert_eq!(
        w.daemon.log().matches("was deleted by another").count(),
        errors_before,
        "an atomic reload is no error"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Connected
    );
    // the admin's own table is there too: knockerd touched nothing of theirs
    let tables = w
        .lab
        .server
        .exec("nft", &["list", "tables"])
        .expect("list tables");
    assert!(tables.contains("table inet filter"), "{tables}");
    w.finish();
}

#[test]
fn a_rule_slipped_into_knockers_chain_is_removed() {
    if !e2e(&[]) {
        return;
    }
    let w = World::alice_door("slip", 30);
    // an accept-all rule at the top of knocker's chain would open every protected port
    w.lab
        .server
        .exec(
            "nft",
            &["insert", "rule", "inet", "knocker", "input", "accept"],
        )
        .expect("insert rule");
    assert!(
        wait_for(Duration::from_secs(5), || {
            w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY) == Reach::Silent
        })
        .is_some(),
        "the chain is put back as knockerd writes it; log:\n{}",
        w.daemon.log()
    );
    w.daemon.wait_log(
        "table inet knocker was changed (chain input has",
        Duration::from_secs(2),
    );
    // the slipped rule itself is gone from the chain, not merely outweighed
    let chain = w
        .lab
        .server
        .exec("nft", &["list", "chain", "inet", "knocker", "input"])
        .expect("list chain");
    assert!(
        chain
            .lines()
            .any(|l| l.contains("ct state established,related accept")),
        "knocker's own chain is there:\n{chain}"
    );
    assert!(
        !chain.lines().any(|l| l.trim() == "accept"),
        "the accept-all rule was removed:\n{chain}"
    );
    w.finish();
}

#[test]
fn grants_from_before_a_restart_come_back_after_a_flush_and_withdrawn_ones_do_not() {
    if !e2e(&[]) {
        return;
    }
    let door = format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\n");
    let keep = door_config("", &door);
    let mut w = World::new("adopt", &keep);
    w.alice_knocks_and_is_granted();
    w.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &keep);
    w.daemon.wait_log(
        "1 grant element(s) still open from before the restart",
        Duration::from_secs(2),
    );
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    assert!(
        wait_for(Duration::from_secs(5), || table_exists(&w)
            && alice_grant_left(&w).is_some())
        .is_some(),
        "the grant from before the restart is restored; log:\n{}",
        w.daemon.log()
    );
    assert!(alice_grant_left(&w).expect("grant") < 30);

    // on_stop = withdraw: the grant is gone at the stop, and a flush after the next start must
    // not bring it back, although the ledger still remembers it
    let withdraw = door_config("on_stop = \"withdraw\"", &door);
    w.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    w.daemon = Knockerd::start(&w.lab, &withdraw);
    w.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(w.grants().is_empty(), "withdrawn at the stop");
    w.daemon = Knockerd::start(&w.lab, &withdraw);
    w.lab
        .server
        .exec("nft", &["flush", "ruleset"])
        .expect("nft flush ruleset");
    w.daemon.wait_log(
        "table inet knocker was deleted by another program",
        Duration::from_secs(5),
    );
    assert!(
        wait_for(Duration::from_secs(5), || table_exists(&w)).is_some(),
        "the table is back"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.grants().is_empty(),
        "a withdrawn grant never comes back: {:?}",
        w.grants()
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    w.finish();
}
