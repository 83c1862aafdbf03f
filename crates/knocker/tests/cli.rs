//! The `knocker` binary as a user meets it, without privileges: exit codes, error messages,
//! the profiles file on disk, and a real UDP knock on loopback. (What a knock puts on the wire
//! is proven in knock_netns.rs, which needs root.)

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const KNOCKER: &str = env!("CARGO_BIN_EXE_knocker");

/// A scratch config directory (not created: knocker must create it), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "knocker-cli-{}-{}",
            process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    /// The directory knocker keeps profiles in, below the scratch directory so that knocker
    /// creates it.
    fn config(&self) -> PathBuf {
        self.0.join("knocker")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn knocker(config: &Path, args: &[&str]) -> Output {
    Command::new(KNOCKER)
        .args(args)
        .env("KNOCKER_CONFIG_DIR", config)
        .output()
        .expect("run knocker")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "knocker failed ({}): {}",
        out.status,
        stderr(out)
    );
}

#[test]
fn bad_ports_are_usage_errors_that_say_what_is_wrong() {
    let tmp = TempDir::new();
    for (port, message) in [
        (
            "70000",
            "knocker: bad port \"70000\": a port is a number from 1 to 65535\n",
        ),
        (
            "0",
            "knocker: bad port \"0\": a port is a number from 1 to 65535\n",
        ),
        (
            "22:sctp",
            "knocker: bad port \"22:sctp\": unknown protocol \"sctp\": use tcp or udp\n",
        ),
    ] {
        let out = knocker(&tmp.config(), &["knock", "127.0.0.1", "7000", port]);
        assert_eq!(out.status.code(), Some(2), "{port}");
        assert_eq!(stderr(&out), message);
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn a_family_the_host_lacks_is_an_error() {
    let tmp = TempDir::new();
    let out = knocker(&tmp.config(), &["knock", "-6", "127.0.0.1", "7000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "knocker: no IPv6 address for \"127.0.0.1\" (it has only 127.0.0.1)\n"
    );
    let out = knocker(&tmp.config(), &["knock", "-4", "::1", "7000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("knocker: no IPv4 address for \"::1\""),
        "{}",
        stderr(&out)
    );
    // -4 and -6 together is clap's usage error.
    let out = knocker(&tmp.config(), &["knock", "-4", "-6", "127.0.0.1", "7000"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_ports_and_no_such_profile_is_a_usage_error() {
    let tmp = TempDir::new();
    let out = knocker(&tmp.config(), &["knock", "myserver"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("knocker: no ports to knock on \"myserver\", and no profile of that name"),
        "{err}"
    );
    assert!(err.contains("knocker profile add"), "{err}");
}

#[test]
fn a_udp_knock_on_loopback_is_one_byte_and_verbose_says_so() {
    let tmp = TempDir::new();
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = server.local_addr().expect("addr").port().to_string();
    let out = knocker(&tmp.config(), &["knock", "-v", "-u", "127.0.0.1", &port]);
    assert_ok(&out);
    assert_eq!(stdout(&out), format!("hitting udp 127.0.0.1:{port}\n"));
    assert_eq!(stderr(&out), "");
    let mut buf = [0xffu8; 16];
    let (n, _) = server.recv_from(&mut buf).expect("the knock");
    assert_eq!(&buf[..n], &[0u8]);

    // Without -v, nothing is printed.
    let out = knocker(
        &tmp.config(),
        &["knock", "127.0.0.1", &format!("{port}:udp")],
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), "");
    assert_eq!(server.recv_from(&mut buf).expect("the knock").0, 1);
}

#[test]
fn profile_commands_round_trip_through_the_file() {
    let tmp = TempDir::new();
    let dir = tmp.config();
    assert_ok(&knocker(
        &dir,
        &[
            "profile",
            "add",
            "myserver",
            "server.example.org",
            "7000",
            "9000:udp",
            "8000",
        ],
    ));
    assert_ok(&knocker(
        &dir,
        &[
            "profile",
            "add",
            "-u",
            "-d",
            "250",
            "-6",
            "b",
            "2001:db8::1",
            "1",
            "2:tcp",
        ],
    ));

    let file = dir.join("profiles.toml");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir), 0o700);

    let out = knocker(&dir, &["profile", "list"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "b         2001:db8::1         1:udp 2\n\
         myserver  server.example.org  7000 9000:udp 8000\n"
    );

    let out = knocker(&dir, &["profile", "show", "b"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "[profile.b]\nhost = \"2001:db8::1\"\nsequence = [\"1:udp\", \"2\"]\ndelay_ms = 250\nfamily = \"6\"\n"
    );

    // Adding over an existing name needs --force.
    let out = knocker(&dir, &["profile", "add", "b", "h", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_ok(&knocker(
        &dir,
        &["profile", "add", "--force", "b", "h", "1"],
    ));
    assert!(stdout(&knocker(&dir, &["profile", "show", "b"])).contains("host = \"h\""));

    assert_ok(&knocker(&dir, &["profile", "remove", "b"]));
    let out = knocker(&dir, &["profile", "remove", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("knocker: no profile named \"b\""),
        "{}",
        stderr(&out)
    );
    let out = knocker(&dir, &["profile", "list"]);
    assert_eq!(
        stdout(&out),
        "myserver  server.example.org  7000 9000:udp 8000\n"
    );

    // Bad names and ports are refused before the file is touched.
    let before = fs::read_to_string(&file).expect("read");
    let out = knocker(&dir, &["profile", "add", "a b", "h", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad profile name"),
        "{}",
        stderr(&out)
    );
    let out = knocker(&dir, &["profile", "add", "c", "h", "99999"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fs::read_to_string(&file).expect("read"), before);
}

#[test]
fn a_hand_edited_file_with_a_mistake_is_reported_by_line() {
    let tmp = TempDir::new();
    let dir = tmp.config();
    fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("profiles.toml");
    fs::write(
        &file,
        "# mine\n[profile.myserver]\nhost = \"server.example.org\"\nsequence = [\"7000\", \"9000:udp\", \"80000\"]\n",
    )
    .expect("write");
    for args in [
        &["knock", "myserver"][..],
        &["profile", "list"][..],
        &["profile", "add", "x", "h", "1"][..],
    ] {
        let out = knocker(&dir, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "knocker: {}:4:33: profile \"myserver\": bad port \"80000\": a port is a number from 1 to 65535\n",
                file.display()
            ),
            "{args:?}"
        );
    }
    // With ports on the command line the profiles file is not read at all.
    let out = knocker(&dir, &["knock", "-6", "127.0.0.1", "1"]);
    assert!(stderr(&out).contains("no IPv6 address"), "{}", stderr(&out));
}

#[test]
fn help_documents_the_profiles_file_and_examples() {
    let out = Command::new(KNOCKER)
        .arg("--help")
        .output()
        .expect("run knocker");
    assert_ok(&out);
    let help = stdout(&out);
    for needle in [
        "[profile.myserver]",
        "sequence = [\"7000\", \"9000:udp\", \"8000\"]",
        "family = \"any\"",
        "KNOCKER_CONFIG_DIR",
        "XDG_CONFIG_HOME",
        "knocker knock myserver",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let out = Command::new(KNOCKER)
        .args(["knock", "--help"])
        .output()
        .expect("run knocker");
    let help = stdout(&out);
    for needle in [
        "--udp",
        "--delay <MS>",
        "--ipv4",
        "--ipv6",
        "--verbose",
        "Examples:",
    ] {
        assert!(
            help.contains(needle),
            "knock --help lacks {needle:?}:\n{help}"
        );
    }
}
