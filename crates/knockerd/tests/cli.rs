//! knockerd's command line without root: `check` on good and bad configurations, `--help`.

use std::process::Command;

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

fn with_config(name: &str, text: &str) -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new(name);
    let path = dir.0.join("knockerd.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path.to_string_lossy().into_owned())
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Dir {
            let p =
                std::env::temp_dir().join(format!("knockerd-cli-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn check_prints_what_the_daemon_will_do() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/knockerd.toml"
    ))
    .expect("example");
    let (_d, path) = with_config("good", &text);
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
