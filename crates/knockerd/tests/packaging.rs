//! The shipped systemd unit, read by systemd's own `systemd-analyze verify` (package systemd),
//! and its ordering against nftables.service.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/knockerd.service");
    std::fs::read_to_string(&path).expect("packaging/knockerd.service")
}

#[test]
fn systemd_analyze_verify_finds_nothing_to_say() {
    // Debian's systemd
    if !knocker_lab::needs(false, &["systemd-analyze"]) {
        return;
    }
    // the unit names /usr/sbin/knockerd, which systemd-analyze checks exists: point it at the
    // binary under test
    let dir = std::env::temp_dir().join(format!("knocker-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let unit = dir.join("knockerd.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/sbin/knockerd", env!("CARGO_BIN_EXE_knockerd")),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    // it exits 0 for unknown keys and bad values, which it only warns about
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
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
