//! The hardened systemd unit's restrictions, applied by hand to the real knockerd (no systemd
//! boots on the test machines): the sandbox is read from `packaging/knockerd.service` itself, so
//! the test follows the unit. In the lab's server namespace knockerd runs under
//! `unshare --mount --uts` (the filesystem view: ProtectSystem, ProtectHome, PrivateTmp,
//! ProtectKernelTunables/Modules/ControlGroups, ReadWritePaths; ProtectHostname) and `setpriv`
//! (CapabilityBoundingSet, NoNewPrivileges), with the unit's UMask; a wrong knock opens nothing,
//! the right one opens the port, and the packet worker is nobody. The settings this cannot apply
//! (system call, address family and IP filters, the device policy, ...) are listed in
//! [`NOT_BY_HAND`], with why; a setting the unit gains that is in neither list fails the test.
//! Needs root, iproute2, nftables, util-linux (unshare, setpriv), libcap2-bin (capsh).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// [Service] keys that are not a sandbox (what to run, when, how to restart).
const NOT_SANDBOX: &[&str] = &[
    "Type",
    "ExecStartPre",
    "ExecStart",
    "ExecReload",
    "Restart",
    "RestartSec",
    "StateDirectory",
    "StateDirectoryMode",
];

/// Settings the by-hand sandbox does not apply, and why.
const NOT_BY_HAND: &[(&str, &str)] = &[
    ("SystemCallFilter", "a seccomp filter from systemd's groups: systemd's own tables would have to be compiled into a filter installed right before exec"),
    ("SystemCallErrorNumber", "goes with SystemCallFilter"),
    ("SystemCallArchitectures", "a seccomp filter"),
    ("RestrictAddressFamilies", "a seccomp filter"),
    ("MemoryDenyWriteExecute", "a seccomp filter"),
    ("LockPersonality", "a seccomp filter"),
    ("RestrictRealtime", "a seccomp filter"),
    ("RestrictSUIDSGID", "a seccomp filter"),
    ("RestrictNamespaces", "a seccomp filter"),
    ("ProtectClock", "a seccomp filter and a device rule"),
    ("IPAddressDeny", "a BPF program on the service's cgroup"),
    ("DevicePolicy", "the cgroup's device controller"),
    ("DeviceAllow", "the cgroup's device controller"),
    ("ProtectProc", "a /proc of its own, mounted with hidepid"),
    ("PrivateMounts", "given: the sandbox is a mount namespace of its own"),
];

/// A [Service] setting's values, every line of it, in order.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn yes(unit: &str, key: &str) -> bool {
    values(unit, key).last().is_some_and(|v| *v == "yes")
}

/// The shell script that sets up the unit's filesystem view and umask in a fresh mount
/// namespace, then executes `setpriv` with the unit's capability settings and its own arguments.
fn sandbox_script(unit: &str) -> String {
    let mut read_only: Vec<&str> = Vec::new();
    let mut hidden: Vec<&str> = Vec::new();
    match values(unit, "ProtectSystem").last().copied() {
        None | Some("no") => {}
        Some("yes") => read_only.extend(["/usr", "/boot", "/efi"]),
        Some("full") => read_only.extend(["/usr", "/boot", "/efi", "/etc"]),
        Some(other) => panic!("ProtectSystem={other}: this test does not set that up by hand yet"),
    }
    match values(unit, "ProtectHome").last().copied() {
        None | Some("no") => {}
        Some("yes") => hidden.extend(["/home", "/root", "/run/user"]),
        Some("read-only") => read_only.extend(["/home", "/root", "/run/user"]),
        Some(other) => panic!("ProtectHome={other}: this test does not set that up by hand yet"),
    }
    if yes(unit, "ProtectKernelTunables") {
        read_only.extend(["/proc/sys", "/sys"]);
    }
    if yes(unit, "ProtectControlGroups") {
        read_only.push("/sys/fs/cgroup");
    }
    if yes(unit, "ProtectKernelModules") {
        hidden.extend(["/usr/lib/modules", "/lib/modules"]);
    }
    let mut s = String::from(
        "mount --make-rprivate /\n\
         ro() { [ -e \"$1\" ] || return 0; mount --rbind \"$1\" \"$1\"\n\
           for m in $(awk -v p=\"$1\" '$5 == p || index($5, p \"/\") == 1 { print $5 }' /proc/self/mountinfo); do\n\
             mount -o remount,bind,ro \"$m\"; done; }\n\
         hide() { [ -d \"$1\" ] || return 0; mount -t tmpfs -o ro,mode=000,nosuid,nodev,noexec tmpfs \"$1\"; }\n",
    );
    if yes(unit, "PrivateTmp") {
        s += "for t in /tmp /var/tmp; do mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs \"$t\"; done\n";
    }
    for p in &read_only {
        s += &format!("ro {p}\n");
    }
    for p in &hidden {
        s += &format!("hide {p}\n");
    }
    for line in values(unit, "ReadWritePaths") {
        for p in line.split_whitespace() {
            // a leading - : ignored when missing
            match p.strip_prefix('-') {
                Some(p) => s += &format!("if [ -e {p} ]; then mount --bind {p} {p}; fi\n"),
                None => s += &format!("mount --bind {p} {p}\n"),
            }
        }
    }
    if let Some(mask) = values(unit, "UMask").last() {
        s += &format!("umask {mask}\n");
    }
    let mut setpriv = String::from("exec setpriv --inh-caps=-all --ambient-caps=-all");
    let caps = bounding_set(unit);
    if !caps.is_empty() {
        let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
        setpriv += &format!(" --bounding-set=-all,{}", list.join(","));
    }
    if yes(unit, "NoNewPrivileges") {
        setpriv += " --no-new-privs";
    }
    s + &setpriv + " -- \"$@\"\n"
}

/// The unit's capability bounding set, as setpriv and capsh name them (net_admin, ...).
fn bounding_set(unit: &str) -> BTreeSet<String> {
    values(unit, "CapabilityBoundingSet")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|c| {
            assert!(!c.starts_with('~'), "a ~ bounding set: extend the test");
            c.trim_start_matches("CAP_").to_lowercase()
        })
        .collect()
}

/// Every [Service] key the unit sets must be applied here, or listed as not.
fn assert_every_setting_is_accounted_for(unit: &str) {
    let applied = [
        "CapabilityBoundingSet",
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "ProtectKernelModules",
        "ProtectHostname",
        "ReadWritePaths",
        "UMask",
    ];
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') || line.is_empty() {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            applied.contains(&key)
                || NOT_SANDBOX.contains(&key)
                || NOT_BY_HAND.iter().any(|(k, _)| *k == key),
            "the unit sets {key}=, which this test neither applies by hand nor lists in NOT_BY_HAND"
        );
    }
}

/// The capabilities in a /proc/PID/status mask, by name (capsh --decode).
fn decode_caps(hex: &str) -> BTreeSet<String> {
    let out = Command::new("capsh")
        .arg(format!("--decode={hex}"))
        .output()
        .expect("capsh");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .split_once('=')
        .map(|(_, names)| names)
        .unwrap_or_default()
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| c.trim_start_matches("cap_").to_string())
        .collect()
}

/// The options of the mount at `point` in the process's own view (its last mount there).
fn mount_options(pid: i32, point: &str) -> Option<(String, String)> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(4) == Some(&point)).then(|| (f[5].to_string(), f[dash + 1].to_string()))
        })
        .next_back()
}

#[test]
fn knockerd_works_under_the_units_restrictions_applied_by_hand() {
    if !e2e(&["unshare", "setpriv", "capsh"]) {
        return;
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/knockerd.service"),
    )
    .expect("packaging/knockerd.service");
    assert_every_setting_is_accounted_for(&unit);
    let caps = bounding_set(&unit);

    // Not under /tmp, which PrivateTmp hides (and where a checkout, with the binary under
    // test, may be): the binary, the config (/etc/knocker under systemd) and the state
    // directory (StateDirectory, /var/lib/knocker) in a directory of the test's own under
    // /var/lib, which ProtectSystem=full leaves writable.
    let dir = Path::new("/var/lib").join(format!("knocker-unit-sandbox-{}", std::process::id()));
    let state = dir.join("state");
    let config = door_config(
        &format!("state_dir = {:?}", state.display().to_string()),
        &format!("sequence = {ALICE_SEQ:?}\nopen_for = 30\n"),
    );
    let mut wrapper: Vec<String> = ["unshare", "--mount"].map(String::from).to_vec();
    if yes(&unit, "ProtectHostname") {
        wrapper.push("--uts".into());
    }
    wrapper.extend(["--", "sh", "-euc"].map(String::from));
    wrapper.push(sandbox_script(&unit));
    wrapper.push("sh".into());
    let world = World::start_with("unitbox", |lab| {
        Knockerd::start_wrapped(lab, dir.clone(), &config, &wrapper)
    });
    let pid = world.daemon.pid();

    // the restrictions hold for the running daemon
    assert_eq!(
        decode_caps(&status_field(pid, "CapBnd")),
        caps,
        "bounding set"
    );
    assert_eq!(decode_caps(&status_field(pid, "CapEff")), caps, "effective");
    assert_eq!(status_field(pid, "CapInh"), "0000000000000000");
    if yes(&unit, "NoNewPrivileges") {
        assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    }
    if values(&unit, "ProtectSystem").last() == Some(&"full") {
        for p in ["/usr", "/etc"] {
            let (opts, _) = mount_options(pid, p).unwrap_or_else(|| panic!("no mount at {p}"));
            assert!(opts.split(',').any(|o| o == "ro"), "{p}: {opts}");
        }
    }
    if yes(&unit, "PrivateTmp") {
        assert_eq!(
            mount_options(pid, "/tmp").map(|m| m.1),
            Some("tmpfs".into())
        );
    }
    if let Some(mask) = values(&unit, "UMask").last() {
        let umask = status_field(pid, "Umask");
        assert_eq!(
            u32::from_str_radix(&umask, 8).ok(),
            u32::from_str_radix(mask, 8).ok()
        );
    }
    assert!(
        state.join("knockerd.pid").exists(),
        "the state directory is written"
    );

    // its packet worker dropped to nobody, with nothing
    let worker = worker_of(pid);
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("a user nobody")
        .uid
        .to_string();
    assert_eq!(
        status_field(worker, "Uid"),
        format!("{nobody}\t{nobody}\t{nobody}\t{nobody}")
    );
    assert_eq!(status_field(worker, "CapEff"), "0000000000000000");
    assert_eq!(status_field(worker, "Seccomp"), "2", "its own filter");

    // a wrong knock keeps the port shut, the right one opens it
    world.knock(
        &world.lab.mallory,
        Lab::SERVER_FOR_MALLORY,
        &["8000", "9000:udp", "7000"],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(world.grants().is_empty(), "{}", world.daemon.log());
    assert_eq!(
        world.connect(&world.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    world.knock(&world.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    world.only_alice_is_let_in();
    world.finish();
}
