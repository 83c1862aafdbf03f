//! The shipped systemd unit, read by systemd's own `systemd-analyze verify` (package systemd),
//! its ordering against nftables.service, and its exposure by `systemd-analyze security`.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/knockerd.service");
    std::fs::read_to_string(&path).expect("packaging/knockerd.service")
}

/// Runs `systemd-analyze ARGS` on a copy of the unit in a directory of its own, /usr/sbin/knockerd
/// replaced by the binary under test (systemd-analyze checks that it exists); returns whether it
/// succeeded and what it said (stderr, then stdout).
fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("knocker-unit-{}-{}", std::process::id(), args[0]));
    std::fs::create_dir_all(&dir).expect("dir");
    let unit = dir.join("knockerd.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/sbin/knockerd", env!("CARGO_BIN_EXE_knockerd")),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), said)
}

#[test]
fn systemd_analyze_verify_finds_nothing_to_say() {
    // Debian's systemd
    if !knocker_lab::needs(false, &["systemd-analyze"]) {
        return;
    }
    let (ok, said) = systemd_analyze(&["verify", "--man=no"]);
    assert!(ok, "systemd-analyze verify failed: {said}");
    // it exits 0 for unknown keys and bad values, which it only warns about
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}

#[test]
fn the_unit_scores_3_or_less_in_systemd_analyze_security() {
    if !knocker_lab::needs(false, &["systemd-analyze"]) {
        return;
    }
    let (ok, said) = systemd_analyze(&["security", "--offline=yes", "--no-pager"]);
    assert!(ok, "systemd-analyze security failed: {said}");
    // "→ Overall exposure level for knockerd.service: 2.8 OK 🙂"
    let score: f64 = said
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in: {said}"));
    assert!(
        score <= 3.0,
        "the unit's exposure is {score}, above 3.0 (issue 12):\n{said}"
    );
}

#[test]
fn the_unit_starts_after_the_firewall_and_does_not_stop_with_it() {
    let text = unit_text();
    let unit: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let has = |key: &str, word: &str| {
        unit.iter().any(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| v.split_whitespace().any(|w| w == word))
        })
    };
    assert!(
        has("After", "nftables.service"),
        "knockerd loads its table after the boot ruleset's `flush ruleset`"
    );
    assert!(
        !has("PartOf", "nftables.service") && !has("BindsTo", "nftables.service"),
        "stopping nftables (a flush) must not stop knockerd, which puts its table back"
    );
    assert!(has("Type", "notify"), "ready only once the table is loaded");
}
