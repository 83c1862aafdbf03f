//! The Debian packages, end to end: `cargo deb` makes `knockerd` and `knocker` from the release
//! build (scripts/test.sh builds it first; so does scripts/package.sh), their contents and
//! conffiles are what a sysadmin expects, Debian's `lintian` finds no error, and `dpkg`
//! installs them on this machine, the installed `knockerd check` reads the installed example
//! (and refuses it: it has no door, so nothing starts), and `dpkg -r` then `dpkg -P` leave
//! nothing behind. dpkg runs inside a network namespace of the test's own, so that the
//! package's scripts (the prerm's `knockerd teardown`) can only touch that namespace's firewall.
//!
//! It installs on the real filesystem, so it refuses to run where knocker is already installed
//! or configured (/etc/knocker, /var/lib/knocker, /usr/sbin/knockerd): that is a machine to
//! keep, not a test machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use knocker_lab::netns::Netns;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(out.status.success(), "{shown} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo deb`, installed with `cargo install --locked` when it is missing.
fn cargo_deb() {
    let has = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        ok(Command::new("cargo").args(["install", "cargo-deb", "--locked"]));
    }
}

/// Builds one package from the build that ships (Cargo.toml's `dist` profile) into `out`;
/// returns the .deb.
fn build(package: &str, out: &Path) -> PathBuf {
    let binary = workspace().join("target/dist").join(package);
    assert!(
        binary.exists(),
        "{} is missing: build it first with `cargo build --profile dist --locked -p knockerd -p knocker` (scripts/test.sh does)",
        binary.display()
    );
    ok(Command::new("cargo")
        .current_dir(workspace())
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dist",
            "--strip",
            "--locked",
            "-p",
            package,
            "--output",
        ])
        .arg(out));
    let deb = std::fs::read_dir(out)
        .expect("output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        });
    deb.unwrap_or_else(|| panic!("cargo deb made no {package}_*.deb in {}", out.display()))
}

/// The paths a package installs (`dpkg-deb -c`), without the leading `.`.
fn contents(deb: &Path) -> Vec<String> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .filter(|p| !p.ends_with('/'))
        .collect()
}

/// Purges both packages when the test ends, whatever happened.
struct Purge<'a>(&'a Netns);

impl Drop for Purge<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .command("dpkg")
            .args(["--purge", "knockerd", "knocker"])
            .output();
    }
}

#[test]
fn the_packages_build_pass_lintian_install_check_and_leave_nothing_when_purged() {
    if !knocker_lab::needs(true, &["dpkg", "dpkg-deb", "lintian", "cargo", "nft", "ip"]) {
        return;
    }
    for path in [
        "/etc/knocker",
        "/var/lib/knocker",
        "/usr/sbin/knockerd",
        "/usr/bin/knocker",
    ] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists: knocker is installed or configured on this machine, and this test installs and purges the packages; run it on a test machine"
        );
    }
    cargo_deb();
    let out = std::env::temp_dir().join(format!("knocker-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output dir");
    let server = build("knockerd", &out);
    let client = build("knocker", &out);

    // what each package holds
    let files = contents(&server);
    let has = |files: &[String], want: &str| {
        assert!(
            files
                .iter()
                .any(|f| f == want || f.strip_suffix(".gz") == Some(want)),
            "{want} is not in the package: {files:#?}"
        )
    };
    for want in [
        "/usr/sbin/knockerd",
        "/lib/systemd/system/knockerd.service",
        "/etc/knocker/knockerd.toml",
        "/usr/share/man/man8/knockerd.8",
        "/usr/share/man/man8/knockerd-check.8",
        "/usr/share/man/man5/knockerd.toml.5",
        "/usr/share/bash-completion/completions/knockerd",
        "/usr/share/zsh/vendor-completions/_knockerd",
        "/usr/share/fish/vendor_completions.d/knockerd.fish",
        "/etc/fail2ban/filter.d/knockerd.conf",
        "/usr/share/doc/knockerd/examples/fail2ban/knockerd.local",
        "/usr/share/doc/knockerd/README.md",
        "/usr/share/doc/knockerd/SECURITY.md",
        "/usr/share/doc/knockerd/knockerd.toml.md",
        "/usr/share/doc/knockerd/copyright",
    ] {
        has(&files, want);
    }
    // the daemon's package holds no client, and the client's no daemon
    assert!(
        !files.iter().any(|f| f.contains("/bin/knocker")),
        "{files:#?}"
    );
    let client_files = contents(&client);
    for want in [
        "/usr/bin/knocker",
        "/usr/share/man/man1/knocker.1",
        "/usr/share/man/man1/knocker-knock.1",
        "/usr/share/bash-completion/completions/knocker",
        "/usr/share/doc/knocker/copyright",
    ] {
        has(&client_files, want);
    }
    assert!(
        !client_files.iter().any(|f| f.contains("knockerd")),
        "{client_files:#?}"
    );
    let control = out.join("control");
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&server)
        .arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap_or_default();
    for want in [
        "/etc/knocker/knockerd.toml",
        "/etc/fail2ban/filter.d/knockerd.conf",
    ] {
        assert!(
            conffiles.lines().any(|l| l == want),
            "{want} is not a conffile: {conffiles:?}"
        );
    }
    let depends = ok(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&server)
        .arg("Depends"));
    assert!(depends.contains("nftables"), "Depends: {depends}");

    // Debian's own checker: no error (warnings are printed, not fatal)
    for deb in [&server, &client] {
        let out = run(Command::new("lintian")
            .args(["--fail-on", "error", "--tag-display-limit", "0"])
            .arg(deb));
        println!("lintian {}:\n{}", deb.display(), text(&out));
        assert!(out.status.success(), "lintian: {}", text(&out));
    }

    // install, in a namespace of the test's own (the maintainer scripts' firewall)
    let ns = Netns::unique("deb").expect("namespace");
    let _purge = Purge(&ns);
    let install = ns
        .command("dpkg")
        .arg("-i")
        .arg(&server)
        .arg(&client)
        .output()
        .expect("dpkg -i");
    assert!(install.status.success(), "dpkg -i: {}", text(&install));
    // the postinst made the state directory and started nothing
    let state = std::fs::metadata("/var/lib/knocker").expect("/var/lib/knocker");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    assert!(
        text(&install).contains("installed, not started"),
        "{}",
        text(&install)
    );
    let table = ns
        .command("nft")
        .args(["list", "table", "inet", "knocker"])
        .output()
        .expect("nft");
    assert!(!table.status.success(), "the install loaded a table");
    // the installed binaries, pages and example
    let version = ok(Command::new("/usr/bin/knocker").arg("--version"));
    assert!(version.starts_with("knocker "), "{version}");
    let check = run(ns.command("/usr/sbin/knockerd").arg("check"));
    assert_eq!(
        check.status.code(),
        Some(1),
        "check of the installed example: {}",
        text(&check)
    );
    assert!(
        text(&check).contains("/etc/knocker/knockerd.toml") && text(&check).contains("no door yet"),
        "{}",
        text(&check)
    );
    let page = ok(Command::new("man").args(["-w", "5", "knockerd.toml"]));
    assert!(page.contains("/usr/share/man/man5/"), "{page}");

    // remove: binaries go, the conffiles stay; purge: nothing stays
    ok(ns.command("dpkg").args(["-r", "knockerd", "knocker"]));
    assert!(!Path::new("/usr/sbin/knockerd").exists());
    assert!(!Path::new("/usr/bin/knocker").exists());
    assert!(
        Path::new("/etc/knocker/knockerd.toml").exists(),
        "dpkg -r removed a conffile"
    );
    ok(ns.command("dpkg").args(["-P", "knockerd", "knocker"]));
    let mut left: Vec<String> = files
        .iter()
        .chain(&client_files)
        .filter(|f| Path::new(f).exists() || Path::new(&format!("{f}.gz")).exists())
        .cloned()
        .collect();
    for dir in [
        "/etc/knocker",
        "/var/lib/knocker",
        "/usr/share/doc/knockerd",
        "/usr/share/doc/knocker",
    ] {
        if Path::new(dir).exists() {
            left.push(dir.to_string());
        }
    }
    assert!(left.is_empty(), "left after dpkg -P: {left:#?}");
    for package in ["knockerd", "knocker"] {
        let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
        let said = text(&status);
        assert!(
            !status.status.success() || said.contains("not-installed"),
            "{package} is still known to dpkg: {said}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
