//! End-to-end: grants under the firewall front-ends admins run, the real ufw and the real
//! firewalld, each in the server namespace, with the one step the README gives for each, and
//! `knockerd check` naming the front-end and its step until it is in place.
//!
//! Neither may touch the host's files: ufw runs in a private mount namespace with copies of
//! /etc/ufw and /etc/default/ufw bound over the real ones (and its lock files in a tmpfs
//! /run); firewalld reads and writes a copy of /etc/firewalld (`--system-config`), its
//! /run/firewalld is a private tmpfs, and it talks over a D-Bus system bus of the test's own
//! (a dbus-daemon listening in the test's directory, `DBUS_SYSTEM_BUS_ADDRESS`). Their
//! rules live in the server namespace only. Needs root, iproute2, nftables, ufw, firewalld and
//! dbus; scripts/test.sh installs them. KNOCKER_SKIP_E2E=1 skips on purpose; otherwise a
//! missing prerequisite fails.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use knocker_lab::TempDir;

/// A grant mark of the test's own, so that every step printed and taken is the configured one.
const MARK: &str = "0x00420000";

fn config() -> String {
    door_config(
        &format!("grant_mark = {MARK}\n"),
        &format!("sequence = {ALICE_SEQ:?}\nopen_for = 60\n"),
    )
}

/// Runs `cmd` and returns its stdout; panics with its stderr if it fails.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// alice knocks over IPv4 and IPv6 and holds a grant on each, but the front-end (`by`) still
/// keeps her out (silently, or with an ICMP error: firewalld's reject answers IPv4 with one,
/// where over IPv6 the attempt timed out in this lab).
fn alice_is_granted_but_kept_out(w: &World, by: &str) {
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE6, &ALICE_SEQ);
    let g = w.wait_grants(2, Duration::from_secs(2));
    assert_eq!(g.len(), 2, "{g:?}\n{}", w.daemon.log());
    for to in [Lab::SERVER_FOR_ALICE, Lab::SERVER_FOR_ALICE6] {
        assert_ne!(
            w.connect(&w.lab.alice, to),
            Reach::Connected,
            "granted, but {by} keeps alice from {to}"
        );
    }
}

/// alice connects over both families; mallory, who knocked nothing, over neither.
fn only_alice_connects(w: &World) {
    for to in [Lab::SERVER_FOR_ALICE, Lab::SERVER_FOR_ALICE6] {
        assert_eq!(
            w.connect_within(&w.lab.alice, to, Duration::from_secs(2)),
            Reach::Connected,
            "alice to {to}"
        );
    }
    w.mallory_is_silent("no grant, still dropped");
}

/// The handle of knocker's table in the server namespace: a table deleted and put back gets a
/// new one.
fn knocker_table_handle(w: &World) -> u64 {
    let json = w
        .lab
        .server
        .enter(|| knockerd::ruleset::nft(&["-j", "list", "tables"], None))
        .expect("enter")
        .expect("nft list tables");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let handle = knockerd::frontends::items(&v, "table")
        .find(|t| t["family"] == "inet" && t["name"] == "knocker")
        .and_then(|t| t["handle"].as_u64());
    handle.unwrap_or_else(|| panic!("no table inet knocker: {json}"))
}

/// Copies a file or directory of the host into `to`, attributes kept.
fn copy(from: &str, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to), "cp -a");
}

/// ufw, run in the server namespace and a private mount namespace in which /etc/ufw and
/// /etc/default/ufw are the test's copies.
struct Ufw {
    netns: String,
    dir: TempDir,
}

/// Binds the copies over the real files and runs ufw with the remaining arguments. Only the
/// test's own fixed arguments reach it.
const UFW_SH: &str = "set -e; d=$1; shift; mount --make-rprivate /; \
    mount --bind \"$d/ufw\" /etc/ufw; mount --bind \"$d/default-ufw\" /etc/default/ufw; \
    mount -t tmpfs tmpfs /run; exec ufw \"$@\"";

impl Ufw {
    fn new(w: &World) -> Ufw {
        let dir = TempDir::new("ufw");
        copy("/etc/ufw", &dir.join("ufw"));
        copy("/etc/default/ufw", &dir.join("default-ufw"));
        Ufw {
            netns: w.lab.server.name().to_string(),
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> String {
        run(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.netns,
                    "unshare",
                    "-m",
                    "sh",
                    "-c",
                    UFW_SH,
                    "sh",
                ])
                .arg(self.dir.path())
                .args(args),
            &format!("ufw {}", args.join(" ")),
        )
    }

    /// Puts `line` on the line after `# End required lines` of ufw's rules file `name`, as the
    /// README says.
    fn add_rule(&self, name: &str, line: &str) {
        let path = self.dir.join("ufw").join(name);
        let text = std::fs::read_to_string(&path).expect("read rules");
        let anchor = "# End required lines\n";
        assert!(text.contains(anchor), "{name}: {text}");
        let text = text.replacen(anchor, &format!("{anchor}{line}\n"), 1);
        std::fs::write(&path, text).expect("write rules");
    }
}

#[test]
fn under_ufw_a_grant_needs_the_before_rules_line_and_check_prints_it() {
    if !e2e(&["ufw", "iptables", "unshare"]) {
        return;
    }
    let w = World::new("ufw", &config());
    let ufw = Ufw::new(&w);
    let iptables = run(Command::new("iptables").arg("-V"), "iptables -V");
    assert!(
        iptables.contains("nf_tables"),
        "ufw's rules must be visible to nft (iptables-nft): {iptables}"
    );
    ufw.run(&["--force", "enable"]);
    ufw.run(&["default", "deny", "incoming"]);
    assert!(
        ufw.run(&["status", "verbose"])
            .contains("Default: deny (incoming)"),
        "ufw active and denying"
    );
    let out = w.check();
    assert!(out.contains("front-end: ufw"), "{out}");
    for (file, line) in [
        (
            "before.rules",
            "-A ufw-before-input -m mark --mark 0x420000/0x420000 -j ACCEPT",
        ),
        (
            "before6.rules",
            "-A ufw6-before-input -m mark --mark 0x420000/0x420000 -j ACCEPT",
        ),
    ] {
        assert!(
            out.contains(&format!("add `{line}` to /etc/ufw/{file}")),
            "{out}"
        );
    }
    assert!(
        out.contains(
            "warning: chain ip filter INPUT (hook input, priority 0, policy drop) is ufw's"
        ) && out.contains(
            "warning: chain ip6 filter INPUT (hook input, priority 0, policy drop) is ufw's"
        ),
        "{out}"
    );
    alice_is_granted_but_kept_out(&w, "ufw's default deny");
    // the one step from the README, in ufw's own files
    ufw.add_rule(
        "before.rules",
        "-A ufw-before-input -m mark --mark 0x420000/0x420000 -j ACCEPT",
    );
    ufw.add_rule(
        "before6.rules",
        "-A ufw6-before-input -m mark --mark 0x420000/0x420000 -j ACCEPT",
    );
    ufw.run(&["reload"]);
    let out = w.check();
    assert!(out.contains("front-end: ufw"), "{out}");
    assert!(!out.contains("warning: chain"), "{out}");
    assert!(
        out.contains("live ruleset: no other chain would drop granted packets"),
        "{out}"
    );
    only_alice_connects(&w);
    // ufw's reload replaced its own tables only
    assert_eq!(w.grants().len(), 2, "{}", w.daemon.log());
    drop(ufw);
    w.finish();
}

/// firewalld, its own D-Bus system bus, and their files, in the test's directory; both daemons
/// run in the server namespace and are stopped by their pids on drop.
struct Firewalld {
    netns: String,
    bus: String,
    dir: TempDir,
    dbus: Child,
    daemon: Child,
}

/// firewalld in a private mount namespace whose /run (its /run/firewalld) is a tmpfs.
const FIREWALLD_SH: &str = "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /run; \
    exec firewalld --nofork --nopid --log-target console --system-config \"$1\"";

impl Firewalld {
    fn start(w: &World) -> Firewalld {
        let dir = TempDir::new("firewalld");
        copy("/etc/firewalld", &dir.join("etc"));
        let bus = format!("unix:path={}", dir.join("bus").display());
        let conf = dir.write(
            "bus.conf",
            &format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  \
                 <type>system</type>\n  <listen>{bus}</listen>\n  <auth>EXTERNAL</auth>\n  \
                 <policy user=\"root\">\n    <allow own=\"*\"/>\n    <allow send_destination=\"*\"/>\n    \
                 <allow receive_sender=\"*\"/>\n  </policy>\n</busconfig>\n"
            ),
        );
        let netns = w.lab.server.name().to_string();
        let dbus = w
            .lab
            .server
            .command("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let daemon = w
            .lab
            .server
            .command("unshare")
            .args(["-m", "sh", "-c", FIREWALLD_SH, "sh"])
            .arg(dir.join("etc"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start firewalld");
        let mut f = Firewalld {
            netns,
            bus,
            dir,
            dbus,
            daemon,
        };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let state = f.cmd(&["--state"]).output().expect("firewall-cmd");
            if state.status.success() {
                break;
            }
            assert!(
                matches!(f.daemon.try_wait(), Ok(None)) && Instant::now() < end,
                "firewalld did not come up: {}",
                String::from_utf8_lossy(&state.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        f
    }

    fn cmd(&mut self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "firewall-cmd"])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus);
        c
    }

    fn run(&mut self, args: &[&str]) -> String {
        run(
            &mut self.cmd(args),
            &format!("firewall-cmd {}", args.join(" ")),
        )
    }
}

impl Drop for Firewalld {
    fn drop(&mut self) {
        // firewalld first: with CleanupOnExit it removes its table over the bus it still has
        knocker_lab::child::stop(&mut self.daemon, Duration::from_secs(10));
        knocker_lab::child::stop(&mut self.dbus, Duration::from_secs(2));
    }
}

#[test]
fn under_firewalld_a_grant_needs_the_port_opened_and_check_says_which() {
    if !e2e(&["firewalld", "firewall-cmd", "dbus-daemon", "unshare"]) {
        return;
    }
    let w = World::new("fwd", &config());
    let handle = knocker_table_handle(&w);
    let mut fw = Firewalld::start(&w);
    assert!(
        fw.run(&["--get-default-zone"]).contains("public"),
        "Debian's firewalld.conf: the public zone"
    );
    let step = format!(
        "warning: firewalld rejects tcp/{SERVICE} even for a granted source: `firewall-cmd --permanent --add-port={SERVICE}/tcp && firewall-cmd --reload`"
    );
    let out = w.check();
    assert!(
        out.contains("front-end: firewalld (table inet firewalld)"),
        "{out}"
    );
    assert!(out.contains(&step), "{out}");
    assert!(
        !out.contains("no other chain would drop granted packets"),
        "{out}"
    );
    // firewalld's zone ends with `reject with icmpx admin-prohibited`
    alice_is_granted_but_kept_out(&w, "firewalld's reject");
    // the one step from the README
    fw.run(&["--permanent", &format!("--add-port={SERVICE}/tcp")]);
    fw.run(&["--reload"]);
    let zone = std::fs::read_to_string(fw.dir.join("etc/zones/public.xml")).expect("zone file");
    assert!(
        zone.contains(&format!("port=\"{SERVICE}\"")),
        "the permanent change is in the test's copy: {zone}"
    );
    let out = w.check();
    assert!(!out.contains("warning: firewalld"), "{out}");
    assert!(
        out.contains("live ruleset: no other chain would drop granted packets"),
        "{out}"
    );
    only_alice_connects(&w);
    assert_eq!(
        knocker_table_handle(&w),
        handle,
        "firewalld's start and reload leave knocker's table alone; log:\n{}",
        w.daemon.log()
    );
    drop(fw);
    w.finish();
}
