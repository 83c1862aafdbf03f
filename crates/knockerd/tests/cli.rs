//! knockerd's command line: `check` on good and bad configurations, `--help`. Most need no
//! root; the refused starts run the daemon in a network namespace of its own (root).

use std::process::Command;

use knocker_lab::TempDir;

fn knockerd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_knockerd"))
        .args(args)
        .output()
        .expect("run knockerd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_config(name: &str, text: &str) -> (TempDir, String) {
    let dir = TempDir::new(&format!("knockerd-cli-{name}"));
    let path = dir.write("knockerd.toml", text);
    (dir, path.to_string_lossy().into_owned())
}

/// The installed example, as shipped.
fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/knockerd.toml"
    ))
    .expect("example")
}

/// The installed example with its commented `[door.ssh]` turned on, as an admin who follows the
/// comments would (keeping the published sequence, which `check` must warn about).
fn example_with_its_door() -> String {
    let mut out = String::new();
    let mut in_door = false;
    for line in example().lines() {
        if line == "# [door.ssh]" {
            in_door = true;
        } else if line.is_empty() {
            in_door = false;
        }
        let code = line
            .strip_prefix("# ")
            .filter(|l| {
                in_door
                    && (l.starts_with('[')
                        || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            })
            .filter(|l| !l.contains("_command") && !l.starts_with("stop_after"));
        out.push_str(code.unwrap_or(line));
        out.push('\n');
    }
    assert!(
        out.contains("\n[door.ssh]\n")
            && out.contains("\nsequence = [")
            && out.contains("\nopen = ["),
        "{out}"
    );
    out
}

#[test]
fn check_prints_what_the_daemon_will_do() {
    let (_d, path) = with_config("good", &example_with_its_door());
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("door ssh (line "), "{out}");
    assert!(out.contains("watches (dropped silently, logged to NFLOG group 4100): tcp/7113, tcp/7719, tcp/8222, udp/9431"), "{out}");
    assert!(
        out.contains("protects (dropped for everyone without a grant): tcp/22"),
        "{out}"
    );
    assert!(out.contains("add table inet knocker"), "{out}");
    assert!(out.contains("static sequence can be replayed"), "{out}");
    assert!(
        out.contains("uses a sequence printed in knocker's docs"),
        "the example's sequence is published: {out}"
    );
    assert!(
        out.contains("trusts no source: everyone must knock"),
        "{out}"
    );
    assert!(
        out.contains("an accept in your own firewall does not stop knocker's drop"),
        "{out}"
    );
}

#[test]
fn the_installed_example_has_no_door_and_nothing_starts() {
    let (_d, path) = with_config("nodoor", &example());
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!("{path}: no door yet, so nothing is protected and knockerd does not start: write a [door.NAME] of your own")),
        "{err}"
    );
    // the daemon refuses the same way, before it touches the firewall (in a network namespace
    // of its own, so that nothing here could reach the host's ruleset)
    let (code, err) = daemon_in_own_netns(&["--config", &path]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no door yet, so nothing is protected"),
        "{err}"
    );
}

#[test]
fn a_door_with_a_sequence_of_its_own_gets_no_published_warning() {
    let text = example_with_its_door().replace(
        "sequence = [\"7113\", \"9431:udp\", \"8222\", \"7719\"]",
        "sequence = [\"31337\", \"2749:udp\", \"40411\", \"16001\"]",
    );
    let (_d, path) = with_config("own", &text);
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tcp/31337"), "{out}");
    assert!(!out.contains("printed in knocker's docs"), "{out}");
}

const DOOR: &str =
    "[door.ssh]\nsequence = [\"31337\", \"2749:udp\", \"40411\"]\nopen = [\"tcp/22\"]\n";

#[test]
fn check_shows_trusted_sources_and_refuses_bad_ones_with_file_line_and_fix() {
    let text = format!(
        "[daemon]\ntrusted = [\"192.0.2.0/24\", \"192.0.2.9\", \"2001:db8::/32\"]\n\n{DOOR}"
    );
    let (_d, path) = with_config("trusted", &text);
    let (code, out, err) = knockerd(&["check", "--config", &path, "--trusted", "198.51.100.7"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("trusts (knocker's protection never drops them; sets trusted4 and trusted6): 192.0.2.0/24, 198.51.100.7/32, 2001:db8::/32"),
        "{out}"
    );
    assert!(
        out.contains("add element inet knocker trusted4 { 192.0.2.0/24, 198.51.100.7/32 }"),
        "{out}"
    );
    assert!(
        out.contains("add rule inet knocker input ip saddr @trusted4 accept"),
        "{out}"
    );

    let bad =
        format!("[daemon]\ntrusted = [\n  \"192.0.2.0/24\",\n  \"192.0.2.1/24\",\n]\n\n{DOOR}");
    let (_d, path) = with_config("trusted-bad", &bad);
    let (code, _out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{path}:4: trusted: \"192.0.2.1/24\" has host bits set: write \"192.0.2.0/24\" for the network, or \"192.0.2.1/32\" for this one address")),
        "{err}"
    );
    // on the command line, under any configuration format
    let (code, _out, err) = knockerd(&["check", "--config", &path, "--trusted", "10.0.0.0/99"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--trusted") && err.contains("prefix length"),
        "{err}"
    );
}

#[test]
fn check_prints_the_lines_that_set_the_accept_mark() {
    let text = format!("[daemon]\naccept_mark = 0x4b410000\n\n{DOOR}");
    let (_d, path) = with_config("mark", &text);
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("lets through packets marked 0x4b410000 (accept_mark)"),
        "{out}"
    );
    assert!(
        out.contains("          type filter hook prerouting priority mangle; policy accept;\n          ip saddr 192.0.2.0/24 meta mark set meta mark | 0x4b410000\n"),
        "{out}"
    );
    assert!(
        out.contains("add rule inet knocker input meta mark & 0x4b410000 == 0x4b410000 accept"),
        "{out}"
    );
}

#[test]
fn check_fails_without_the_worker_user_and_so_does_the_start() {
    let text = format!("[daemon]\nworker_user = \"knocker-no-such-user\"\n\n{DOOR}");
    let (_d, path) = with_config("nouser", &text);
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("error: there is no user \"knocker-no-such-user\" for the packet worker to run as: create it"),
        "{err}"
    );
    assert!(err.contains("would stop knockerd from starting"), "{err}");
    assert!(
        out.contains("door ssh (line 4)"),
        "the rest is still shown: {out}"
    );
    // --worker-user counts as the daemon's does
    let (code, _out, err) = knockerd(&["check", "--config", &path, "--worker-user", "nobody"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = daemon_in_own_netns(&["--config", &path]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no user \"knocker-no-such-user\""), "{err}");
}

#[test]
fn check_fails_without_nft() {
    let text = format!("[daemon]\n\n{DOOR}");
    let (_d, path) = with_config("nonft", &text);
    let empty = TempDir::new("knockerd-cli-empty-path");
    let out = Command::new(env!("CARGO_BIN_EXE_knockerd"))
        .args(["check", "--config", &path])
        .env("PATH", &empty.0)
        .output()
        .expect("run knockerd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: the nft program is not installed (Debian: apt-get install nftables)"),
        "{err}"
    );
}

/// A config with one `spa` door whose server key and clients file live in `dir`.
fn spa_config(dir: &std::path::Path, key: &str) -> String {
    format!(
        "[daemon]\nserver_key = {:?}\nclients = {:?}\n\n[door.ssh]\nkind = \"spa\"\nport = 62201\nopen = [\"tcp/22\"]\n",
        dir.join(key).display().to_string(),
        dir.join("clients.toml").display().to_string()
    )
}

#[test]
fn check_fails_on_an_unreadable_server_key() {
    let d = TempDir::new("knockerd-cli-nokey");
    let path = d.0.join("knockerd.toml");
    std::fs::write(&path, spa_config(&d.0, "missing.key")).expect("config");
    let path = path.display().to_string();
    let (code, _out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{path}:2: server_key")), "{err}");
    assert!(err.contains("knockerd keygen"), "{err}");
}

#[test]
fn check_fails_without_a_clients_file_and_warns_when_nobody_is_enrolled() {
    let d = TempDir::new("knockerd-cli-noclients");
    let path = d.0.join("knockerd.toml");
    std::fs::write(&path, spa_config(&d.0, "server.key")).expect("config");
    let path = path.display().to_string();
    let (code, _public, err) = knockerd(&["--config", &path, "keygen"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 1, "{out}");
    let clients = d.0.join("clients.toml").display().to_string();
    assert!(
        err.contains(&format!(
            "error: {clients}: no clients file, so no client can open door \"ssh\""
        )),
        "{err}"
    );
    assert!(err.contains("knockerd enroll"), "{err}");
    let (code, err) = daemon_in_own_netns(&["--config", &path]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no clients file"), "{err}");
    // a clients file with nobody in it starts, with a warning that nobody can open the door
    std::fs::write(&clients, "").expect("clients");
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "warning: no client in {clients} is enrolled for door ssh"
        )),
        "{out}"
    );
}

#[test]
fn the_systemd_unit_checks_the_configuration_it_starts() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/knockerd.service"
    ))
    .expect("unit");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_string()
    };
    let start = value("ExecStart=");
    let pre = value("ExecStartPre=");
    // the same binary and configuration, with `check`: a non-zero exit stops the start
    let (bin, args) = start.split_once(' ').expect("arguments");
    assert_eq!(pre, format!("{bin} check {args}"), "{unit}");
    assert!(
        !pre.starts_with('-'),
        "a leading '-' would ignore check's failure"
    );
}

/// Runs the daemon in a new, empty network namespace and waits (bounded) for it to exit: for
/// starts that must be refused before anything is changed.
fn daemon_in_own_netns(args: &[&str]) -> (Option<i32>, String) {
    let child = Command::new("unshare")
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_knockerd"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs knockerd");
    let out = knocker_lab::child::wait_output(
        child,
        std::time::Duration::from_secs(10),
        &format!("knockerd {args:?} (it started instead of refusing)"),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_rejects_bad_configs_with_file_line_and_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("[door.ssh]\nsequence = [\"7000\", \"8000\", \"9000\"]\nopen = [\"22\"]\n", ":2:", "sweeping upward"),
        ("[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\ncolour = \"red\"\n", ":4:", "unknown field"),
        ("[door.ssh]\nsequence = [\"7000\", \"99999\", \"8000\"]\nopen = [\"22\"]\n", ":2:", "bad port"),
        ("[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nstart_command = \"iptables -I INPUT -s %IP% -j ACCEPT\"\n", ":4:", "shell = true"),
        ("[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n[door.b]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"23\"]\n", ":4:", "same sequence"),
        ("[door.ssh]\nsequence = [\"7000\", \"9000\", \"22\"]\nopen = [\"22\"]\n", ":2:", "knock port tcp/22"),
        ("[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\ntcp_flags = \"syn,!syn\"\n", ":4:", "both required and forbidden"),
    ];
    for (i, (text, line, what)) in cases.iter().enumerate() {
        let (_d, path) = with_config(&format!("bad{i}"), text);
        let (code, _out, err) = knockerd(&["check", "--config", &path]);
        assert_eq!(code, 1, "case {i} must fail: {err}");
        assert!(
            err.contains(&format!("{path}{line}")),
            "case {i}: file:line expected in {err:?}"
        );
        assert!(err.contains(what), "case {i}: {what:?} expected in {err:?}");
    }
}

#[test]
fn missing_config_is_a_clear_error() {
    let (code, _out, err) = knockerd(&["check", "--config", "/nonexistent/knockerd.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/knockerd.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn help_lists_every_subcommand() {
    let (code, out, _) = knockerd(&["--help"]);
    assert_eq!(code, 0);
    for sub in [
        "run",
        "check",
        "status",
        "reload",
        "teardown",
        "demo",
        "--config",
        "--verbose",
    ] {
        assert!(out.contains(sub), "--help lacks {sub}: {out}");
    }
}

#[test]
fn check_shows_connections_and_delayed_commands() {
    let text = format!(
        "{DOOR}connections = 1\n\n[[door.ssh.command]]\nrun = [\"/usr/bin/logger\", \"five minutes %IP%\"]\nafter = \"5m\"\n\n[[door.ssh.command]]\nrun = [\"/usr/bin/logger\", \"closed\"]\nat = \"end\"\n"
    );
    let (_d, path) = with_config("delayed", &text);
    let (code, out, err) = knockerd(&["check", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "each grant admits 1 new connection(s), then the kernel closes it",
        "runs [\"/usr/bin/logger\", \"five minutes %IP%\"] after 5m",
        "runs [\"/usr/bin/logger\", \"closed\"] at the end of the grant",
        "delete @conn4_1 { ip saddr . meta l4proto . th dport }",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let (code, _, err) = knockerd(&[
        "check",
        "--config",
        &with_config("conn9", &format!("{DOOR}connections = 9\n")).1,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(":4: connections = 9 is out of range"), "{err}");
}

/// The long options a `--help` lists.
fn options_in_help(args: &[&str]) -> Vec<String> {
    let (code, out, err) = knockerd(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    let mut options: Vec<String> = out
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.']).to_string())
        .collect();
    options.sort();
    options.dedup();
    options
}

#[test]
fn each_subcommand_lists_only_the_options_it_takes() {
    let config = [
        "--config",
        "--knockd-conf",
        "--fwknop-access",
        "--fwknopd-conf",
        "--knockknock-profiles",
        "--kernel-log",
        "--kernel-log-file",
        "--log-prefix",
    ];
    let help = options_in_help(&["check", "--help"]);
    for o in config
        .iter()
        .chain(&["--state-dir", "--worker-user", "--trusted", "--log-sample"])
    {
        assert!(
            help.iter().any(|h| h == o),
            "check --help lacks {o}: {help:?}"
        );
    }
    assert!(!help.iter().any(|h| h == "--dry-run"), "check: {help:?}");
    for sub in ["status", "reload", "teardown"] {
        let help = options_in_help(&[sub, "--help"]);
        assert!(help.iter().any(|h| h == "--state-dir"), "{sub}: {help:?}");
        for o in ["--worker-user", "--trusted", "--dry-run", "--log-sample"] {
            assert!(
                !help.iter().any(|h| h == o),
                "{sub} --help lists {o}: {help:?}"
            );
        }
    }
    for sub in ["import-knockd", "import-knockknock", "demo"] {
        let help = options_in_help(&[sub, "--help"]);
        for o in config
            .iter()
            .chain(&["--state-dir", "--worker-user", "--trusted"])
        {
            assert!(
                !help.iter().any(|h| h == o),
                "{sub} --help lists {o}: {help:?}"
            );
        }
    }
    // keygen and enroll read knockerd's own TOML only
    for sub in ["keygen", "enroll"] {
        let help = options_in_help(&[sub, "--help"]);
        assert!(help.iter().any(|h| h == "--config"), "{sub}: {help:?}");
        for o in ["--knockd-conf", "--state-dir", "--worker-user"] {
            assert!(
                !help.iter().any(|h| h == o),
                "{sub} --help lists {o}: {help:?}"
            );
        }
    }
    let help = options_in_help(&["import-fwknop", "--help"]);
    assert_eq!(
        help,
        ["--fwknopd-conf", "--help", "--verbose"],
        "import-fwknop"
    );
    // the daemon's own options stay at the top level, where running is the default
    let help = options_in_help(&["--help"]);
    for o in [
        "--config",
        "--state-dir",
        "--worker-user",
        "--trusted",
        "--dry-run",
    ] {
        assert!(help.iter().any(|h| h == o), "--help lacks {o}: {help:?}");
    }
}

#[test]
fn an_option_before_the_subcommand_counts_unless_the_subcommand_does_not_take_it() {
    let (_dir, path) = with_config("order", "[daemon]\nnflog_group = 70000\n");
    // the same error, whichever side of `check` --config is on
    for args in [["--config", &path, "check"], ["check", "--config", &path]] {
        let (code, _, err) = knockerd(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("nflog_group must be 0 to 65535"),
            "{args:?}: {err}"
        );
    }
    let (code, _, err) = knockerd(&["--config", &path, "check", "--config", &path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--config is given both before and after `check`"),
        "{err}"
    );
    let (code, _, err) = knockerd(&["--worker-user", "nobody", "status"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`knockerd status` does not take --worker-user: remove it"),
        "{err}"
    );
    let (code, _, err) = knockerd(&["--knockd-conf", "/etc/knockd.conf", "keygen"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`knockerd keygen` does not take --knockd-conf"),
        "{err}"
    );
    let (code, _, err) = knockerd(&["--dry-run", "import-knockd", "/dev/null"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not take --dry-run"), "{err}");
}

#[test]
fn import_fwknop_reads_the_fwknopd_conf_it_is_given() {
    let dir = TempDir::new("knockerd-cli-import-fwknop");
    let access = dir.write(
        "access.conf",
        "SOURCE ANY\nKEY_BASE64 c2VjcmV0c2VjcmV0c2VjcmV0\nHMAC_KEY_BASE64 aG1hY2htYWNobWFjaG1hY2htYWM=\n",
    );
    let fwknopd = dir.write("fwknopd.conf", "PCAP_FILTER udp port 40001\n");
    let (code, out, err) = knockerd(&[
        "import-fwknop",
        &access.to_string_lossy(),
        "--fwknopd-conf",
        &fwknopd.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("port = 40001"), "{out}");
}
