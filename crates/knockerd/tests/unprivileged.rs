//! What knockerd says when it cannot bind NFLOG: run as `nobody` it lacks the permission, and only
//! a group another process holds is blamed on another process. The real binary in a network
//! namespace of the test's own.
//!
//! Needs root (to create the namespace and become nobody), iproute2 and util-linux's setpriv;
//! KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use common::*;
use knocker_lab::{Netns, TempDir};

fn setup(tag: &str) -> (Netns, TempDir, String) {
    let ns = Netns::unique(tag).expect("netns");
    // a directory nobody may write to (the ledger's)
    let dir = TempDir::new(&format!("knockerd-{tag}"));
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("a nobody user");
    nix::unistd::chown(&dir.0, Some(nobody.uid), None).expect("chown");
    let config = dir.0.join("knockerd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = {:?}\nnflog_group = 4100\n\n[door.ssh]\nsequence = [\"7000\", \"9000:udp\", \"8000\"]\nopen = [\"tcp/22\"]\n",
            dir.0.join("state").display().to_string()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    (ns, dir, config)
}

/// Runs knockerd in `ns` (as nobody when `as_nobody`) and returns its exit code and stderr.
fn run(ns: &Netns, config: &str, as_nobody: bool) -> (Option<i32>, String) {
    let exe = env!("CARGO_BIN_EXE_knockerd");
    let mut cmd = if as_nobody {
        let mut c = ns.command("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", exe]);
        c
    } else {
        ns.command(exe)
    };
    let out = cmd
        .args(["--config", config])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run knockerd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_privilege_it_says_so_and_blames_no_other_process() {
    if !e2e(&["setpriv"]) {
        return;
    }
    let (ns, _dir, config) = setup("unpriv");
    let (code, err) = run(&ns, &config, true);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "binding NFLOG group 4100 needs root or CAP_NET_ADMIN, which this process lacks"
        ),
        "{err}"
    );
    assert!(!err.contains("another process"), "{err}");
}

#[test]
fn a_group_another_process_holds_is_blamed_on_it() {
    if !e2e(&[]) {
        return;
    }
    let (ns, _dir, config) = setup("busy");
    // the test holds the group, as another knockerd or ulogd would
    let held = ns
        .enter(|| knockerd::nflog::NflogSource::bind(4100, 128))
        .expect("enter")
        .expect("bind NFLOG");
    let (code, err) = run(&ns, &config, false);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("NFLOG group 4100 is already bound by another process"),
        "{err}"
    );
    assert!(!err.contains("CAP_NET_ADMIN"), "{err}");
    drop(held);
}
