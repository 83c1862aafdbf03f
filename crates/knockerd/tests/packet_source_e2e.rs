//! The packet socket source and the dry run, end to end: the real knockerd, real knocks on
//! veths between network namespaces. With `[source] kind = "packet"` a sequence door opens from
//! knocks seen on its interface (and its table logs nothing), an fwknop SPA packet opens once
//! and its replay is refused; `--dry-run` reports "would grant" and loads no table, adds no set
//! element and writes no ledger. Needs root, iproute2, nftables and fwknop-client.

mod common;

use std::time::Duration;

use common::*;

fn packet_config(interface: &str) -> String {
    door_config("", &format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\n")).replace(
        "\n\n[door.ssh]",
        &format!("\n[source]\nkind = \"packet\"\ninterface = \"{interface}\"\n\n[door.ssh]"),
    )
}

#[test]
fn a_sequence_door_opens_from_knocks_seen_by_a_packet_socket() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("pkt", &packet_config("to-alice"));
    w.daemon.wait_log(
        "watching interface to-alice (packet socket)",
        Duration::from_secs(2),
    );
    // knockerd's table logs nothing: the packet socket sees the knocks
    let table = w
        .lab
        .server
        .exec("nft", &["list", "table", "inet", "knocker"])
        .expect("nft");
    assert!(!table.contains(" log "), "{table}");
    assert!(
        table.contains("tcp . 7000"),
        "knock ports are still dropped: {table}"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "protected before the knock"
    );
    // mallory knocks on another interface than the one watched: nothing
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &ALICE_SEQ);
    w.alice_knocks_and_is_granted();
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, "tcp/2222")
    );
    assert_eq!(
        w.connect_within(&w.lab.alice, Lab::SERVER_FOR_ALICE, Duration::from_secs(2)),
        Reach::Connected
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    // mallory's knocks never reached the engine (the filter checks the interface)
    assert!(
        !w.daemon.log().contains(&format!("src={}", Lab::MALLORY)),
        "{}",
        w.daemon.log()
    );
    assert!(
        w.daemon
            .log()
            .contains("door=ssh src=10.200.1.2 grant tcp/2222 for 30s"),
        "{}",
        w.daemon.log()
    );
    // stopped, the worker says what its source gave in all: alice's three knocks (mallory's
    // were filtered in the kernel), nothing it could not read
    let mut w = w;
    w.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(w.daemon.wait_exit(Duration::from_secs(5)), Some(0));
    w.daemon
        .wait_log(knocker_lab::log::READ_IN_ALL, Duration::from_secs(2));
    let log = w.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains(knocker_lab::log::READ_IN_ALL))
        .expect("the worker's totals");
    assert!(line.contains("the packet socket: "), "{line}");
    let read = knocker_lab::log::knocks_read_in_all(line)
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(
        (3..=6).contains(&read),
        "alice's knocks, maybe retransmitted: {line}"
    );
    assert!(line.contains("; 0 not understood, "), "{line}");
    w.finish();
}

#[test]
fn an_fwknop_packet_seen_by_a_packet_socket_opens_once() {
    if !e2e(&["fwknop"]) {
        return;
    }
    use base64::Engine as _;
    const KEY: &str = "fwknoptestkey123";
    const HMAC: &str = "fwknophmackey12345678";
    let dir = knocker_lab::TempDir::new("pktspa");
    let b64 = |k: &str| base64::engine::general_purpose::STANDARD.encode(k);
    let key = dir.private("enc.key", &b64(KEY));
    let hmac = dir.private("hmac.key", &b64(HMAC));
    let config = format!(
        "[daemon]\nnflog_group = 4100\n\n[source]\nkind = \"packet\"\ninterface = \"to-alice\"\n\n\
         [door.spa]\nkind = \"fwknop\"\nport = 62201\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 5\n\
         key_file = {:?}\nhmac_key_file = {:?}\n",
        key.display().to_string(),
        hmac.display().to_string()
    );
    let w = World::new("pktspa", &config);
    let spa = fwknop_packet(
        &w.lab.alice,
        Lab::SERVER_FOR_ALICE,
        Lab::ALICE,
        &dir.join("spa-packet"),
        KEY,
        HMAC,
    );
    send_udp(&w.lab.alice, Lab::SERVER_FOR_ALICE, 62201, spa.clone());
    let g = w.wait_grants(1, Duration::from_secs(2));
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, "tcp/2222")
    );
    // the same packet again: a replay, refused
    send_udp(&w.lab.alice, Lab::SERVER_FOR_ALICE, 62201, spa);
    w.daemon.wait_log(
        &format!("door=spa src={} refused: a replay", Lab::ALICE),
        Duration::from_secs(2),
    );
    w.finish();
}

#[test]
fn a_packet_source_on_a_missing_interface_stops_the_start_with_the_reason() {
    if !e2e(&[]) {
        return;
    }
    let lab = Lab::new("pktno").expect("lab");
    let dir = knocker_lab::TempDir::new("pktno");
    let config = dir.write(
        "knockerd.toml",
        &packet_config("nosuch0").replace(
            "[daemon]\n",
            &format!(
                "[daemon]\nstate_dir = {:?}\n",
                dir.join("state").display().to_string()
            ),
        ),
    );
    let out = lab
        .server
        .command(env!("CARGO_BIN_EXE_knockerd"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run knockerd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot listen on interface nosuch0 with a packet socket"),
        "{err}"
    );
}

#[test]
fn a_dry_run_reports_the_grant_and_changes_nothing() {
    if !e2e(&[]) {
        return;
    }
    let dir = knocker_lab::TempDir::new("dry");
    let config = dir.write(
        "knockerd.toml",
        &door_config("", &format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\n")),
    );
    let config_s = config.display().to_string();
    let w = World::start_with("dry", |lab| {
        // the admin's own logging rule: knockerd's table is not loaded in a dry run
        lab.server
            .nft(
                "add table inet admin\n\
                 add chain inet admin input { type filter hook input priority 0; policy accept; }\n\
                 add rule inet admin input meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 8000 } log group 4100\n",
            )
            .expect("admin's rule");
        Knockerd::start_args(lab, &["--dry-run", "--config", &config_s])
    });
    w.daemon.wait_log(
        "knocks are seen only through your own rules that log to NFLOG group 4100",
        Duration::from_secs(2),
    );
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    w.daemon.wait_log(
        "dry run: door=ssh src=10.200.1.2 would grant tcp/2222 for 30s (nothing changed)",
        Duration::from_secs(3),
    );
    // no table, so no set and no element; no ledger
    let tables = w.lab.server.exec("nft", &["list", "tables"]).expect("nft");
    assert!(!tables.contains("knocker"), "{tables}");
    assert!(
        !w.state_dir().join(knockerd::ledger::FILE_NAME).exists(),
        "a dry run wrote the ledger"
    );
    w.finish();
}
