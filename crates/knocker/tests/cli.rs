//! The `knocker` binary as a user meets it, without privileges: exit codes, error messages,
//! the profiles file on disk, and a real UDP knock on loopback. (What a knock puts on the wire
//! is proven in knock_netns.rs, which needs root.)

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use knocker_lab::TempDir;
use knocker_wire::encoded::{self, EncodedSpec, Push, Reassembly, Request};
use knocker_wire::identity::PrivateKey;
use knocker_wire::rotate::{self, RotateSpec};
use knocker_wire::spa;
use knocker_wire::{EncodedKey, Proto, RotateKey, Service};

const KNOCKER: &str = env!("CARGO_BIN_EXE_knocker");

/// The directory knocker keeps profiles in: below a scratch directory, so that knocker must
/// create it.
fn config_of(tmp: &TempDir) -> PathBuf {
    tmp.join("knocker")
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
    let tmp = TempDir::new("cli");
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
        let out = knocker(&config_of(&tmp), &["knock", "127.0.0.1", "7000", port]);
        assert_eq!(out.status.code(), Some(2), "{port}");
        assert_eq!(stderr(&out), message);
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn a_family_the_host_lacks_is_an_error() {
    let tmp = TempDir::new("cli");
    let out = knocker(&config_of(&tmp), &["knock", "-6", "127.0.0.1", "7000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "knocker: no IPv6 address for \"127.0.0.1\" (it has only 127.0.0.1)\n"
    );
    let out = knocker(&config_of(&tmp), &["knock", "-4", "::1", "7000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("knocker: no IPv4 address for \"::1\""),
        "{}",
        stderr(&out)
    );
    // -4 and -6 together is clap's usage error.
    let out = knocker(
        &config_of(&tmp),
        &["knock", "-4", "-6", "127.0.0.1", "7000"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_ports_and_no_such_profile_is_a_usage_error() {
    let tmp = TempDir::new("cli");
    let out = knocker(&config_of(&tmp), &["knock", "myserver"]);
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
    let tmp = TempDir::new("cli");
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = server.local_addr().expect("addr").port().to_string();
    let out = knocker(&config_of(&tmp), &["knock", "-v", "-u", "127.0.0.1", &port]);
    assert_ok(&out);
    assert_eq!(stdout(&out), format!("hitting udp 127.0.0.1:{port}\n"));
    assert_eq!(stderr(&out), "");
    let mut buf = [0xffu8; 16];
    let (n, _) = server.recv_from(&mut buf).expect("the knock");
    assert_eq!(&buf[..n], &[0u8]);

    // Without -v, nothing is printed.
    let out = knocker(
        &config_of(&tmp),
        &["knock", "127.0.0.1", &format!("{port}:udp")],
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), "");
    assert_eq!(server.recv_from(&mut buf).expect("the knock").0, 1);
}

#[test]
fn profile_commands_round_trip_through_the_file() {
    let tmp = TempDir::new("cli");
    let dir = config_of(&tmp);
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
    let tmp = TempDir::new("cli");
    let dir = config_of(&tmp);
    fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("profiles.toml");
    fs::write(
        &file,
        "# mine\n[profile.myserver]\nhost = \"server.example.org\"\nsequence = [\"7000\", \"9000:udp\", \"80000\"]\n",
    )
    .expect("write");
    let why = format!(
        "{}:4:33: profile \"myserver\": bad port \"80000\": a port is a number from 1 to 65535",
        file.display()
    );
    for args in [
        &["knock", "myserver"][..],
        &["profile", "add", "x", "h", "1"][..],
    ] {
        let out = knocker(&dir, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), format!("knocker: {why}\n"), "{args:?}");
    }
    // list shows what can be used, and says what cannot
    let out = knocker(&dir, &["profile", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!(
            "knocker: warning: {why} (profile \"myserver\" is skipped)\n\
             knocker: 1 entry in {} cannot be used: see the warnings above\n",
            file.display()
        )
    );
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
    // it points at the profiles' schema instead of repeating it
    assert!(help.contains("`knocker profile --help`"), "{help}");
    assert!(!help.contains("[profile.myserver]"), "{help}");
    // and -V prints the version, as knock's does
    let out = Command::new(KNOCKER)
        .args(["knock", "-V"])
        .output()
        .expect("run knocker");
    assert_ok(&out);
    assert!(
        stdout(&out).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        stdout(&out)
    );
}

// Rotating sequences, encoded knocks and keys.

/// The key `00 01 .. 1f`, as knocker-wire's known answers use it.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Writes a profiles file (0600, as knocker writes it: it may hold secrets) and a 0600 key
/// file `k` beside it; returns the config directory.
fn config_with(tmp: &TempDir, profiles: &str) -> PathBuf {
    let dir = config_of(tmp);
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("profiles.toml");
    fs::write(&path, profiles).expect("write profiles");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = dir.join("k");
    fs::write(&key, format!("{KEY}\n")).expect("write key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    dir
}

fn wire_sequence(spec: &RotateSpec, counter: u64) -> String {
    let key = RotateKey::from_base64(KEY).expect("key");
    let ports: Vec<String> = rotate::sequence(&key, spec, counter)
        .iter()
        .map(|s| match s.proto {
            Proto::Tcp => s.port.to_string(),
            Proto::Udp => format!("{}:udp", s.port),
            Proto::Icmp => unreachable!("rotating sequences are ports"),
        })
        .collect();
    format!("{}\n", ports.join(" "))
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let tmp = TempDir::new("cli");
    fs::create_dir_all(&tmp.0).expect("mkdir");
    let path = tmp.0.join("new.key");
    let out = knocker(
        &config_of(&tmp),
        &["keygen", "--out", path.to_str().expect("utf-8")],
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), "");
    assert_eq!(mode_of(&path), 0o600);
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(text.len(), 45, "{text:?}");
    assert!(text.ends_with('\n'));
    RotateKey::from_base64(&text).expect("a 32-byte base64 key");

    // Another run makes another key, elsewhere.
    let other = tmp.0.join("other.key");
    assert_ok(&knocker(
        &config_of(&tmp),
        &["keygen", "-o", other.to_str().expect("utf-8")],
    ));
    assert_ne!(fs::read_to_string(&other).expect("read"), text);

    // An existing file is never replaced.
    let out = knocker(
        &config_of(&tmp),
        &["keygen", "--out", path.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "knocker: {} already exists: knocker keygen never overwrites a key (remove the file first to replace it)\n",
            path.display()
        )
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), text);

    // A directory that does not exist is an error, not created.
    let nowhere = tmp.0.join("no/such/dir/k");
    let out = knocker(
        &config_of(&tmp),
        &["keygen", "--out", nowhere.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("knocker: cannot write key file"),
        "{}",
        stderr(&out)
    );
    // --out is required.
    assert_eq!(
        knocker(&config_of(&tmp), &["keygen"]).status.code(),
        Some(2)
    );
}

const TOTP: &str = "[profile.rot]\nhost = \"127.0.0.1\"\nkind = \"rotating\"\nkey_file = \"k\"\n\
                    knocks = 4\nports = \"40000-40999\"\n";

#[test]
fn exposed_key_files_are_refused_naming_the_file_and_the_fix() {
    let tmp = TempDir::new("cli");
    let dir = config_with(&tmp, TOTP);
    let key = dir.join("k");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    for args in [&["sequence", "rot"][..], &["knock", "rot"][..]] {
        let out = knocker(&dir, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "knocker: key file {} is accessible to other users (mode 0644): run `chmod 600 {}`\n",
                key.display(),
                key.display()
            ),
            "{args:?}"
        );
        assert_eq!(stdout(&out), "");
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_ok(&knocker(&dir, &["sequence", "rot"]));
}

#[test]
fn totp_sequence_is_knocker_wires_and_says_when_it_changes() {
    let tmp = TempDir::new("cli");
    let dir = config_with(&tmp, TOTP);
    let out = knocker(&dir, &["sequence", "rot", "--at", "1700000000"]);
    assert_ok(&out);
    let spec = RotateSpec::new(4, 40000..=40999, Proto::Tcp).expect("spec");
    // 1700000000 / 30 = 56666666, 10 seconds before the next step.
    assert_eq!(stdout(&out), wire_sequence(&spec, 56_666_666));
    assert_eq!(stdout(&out), "40461 40625 40237 40618\n");
    assert_eq!(stderr(&out), "totp step 56666666 (30s): changes in 10s\n");
    // The step before (it began at 1699999980) gives the sequence before.
    let out = knocker(&dir, &["sequence", "rot", "--at", "1699999979"]);
    assert_eq!(stdout(&out), wire_sequence(&spec, 56_666_665));
    // Without --at, it is the sequence of now.
    let out = knocker(&dir, &["sequence", "rot"]);
    assert_ok(&out);
    assert_eq!(stdout(&out).split_whitespace().count(), 4);

    // UDP knocks say so, in knock's syntax; a period of 1 minute.
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        "[profile.u]\nhost = \"h\"\nkind = \"rotating\"\nkey_file = \"k\"\nperiod = \"1m\"\n\
         knocks = 3\nports = \"1000-1063\"\nproto = \"udp\"\n",
    );
    let out = knocker(&dir, &["sequence", "u", "--at", "600"]);
    assert_ok(&out);
    let spec = RotateSpec::new(3, 1000..=1063, Proto::Udp).expect("spec");
    assert_eq!(stdout(&out), wire_sequence(&spec, 10));
    assert_eq!(stderr(&out), "totp step 10 (60s): changes in 60s\n");
}

#[test]
fn hotp_counters_persist_and_move_on_only_when_used() {
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        "[profile.hot]\nhost = \"127.0.0.1\"\nkind = \"rotating\"\nkey_file = \"k\"\n\
         mode = \"hotp\"\ncounter_file = \"hot.count\"\nknocks = 3\nports = \"1000-1063\"\n\
         proto = \"udp\"\n\n\
         [profile.six]\nhost = \"127.0.0.1\"\nfamily = \"6\"\nkind = \"rotating\"\n\
         key_file = \"k\"\nmode = \"hotp\"\ncounter_file = \"hot.count\"\nknocks = 3\n\
         ports = \"1000-1063\"\nproto = \"udp\"\n",
    );
    let counter = dir.join("hot.count");
    let spec = RotateSpec::new(3, 1000..=1063, Proto::Udp).expect("spec");

    // Looking does not use the counter up (and makes no file).
    for _ in 0..2 {
        let out = knocker(&dir, &["sequence", "hot"]);
        assert_ok(&out);
        assert_eq!(stdout(&out), wire_sequence(&spec, 0));
        assert!(
            stderr(&out).starts_with("hotp counter 0, not used up"),
            "{}",
            stderr(&out)
        );
        assert!(!counter.exists());
    }
    // --consume does, before printing.
    let out = knocker(&dir, &["sequence", "hot", "--consume"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), wire_sequence(&spec, 0));
    assert_eq!(
        stderr(&out),
        format!(
            "hotp counter 0, used up: {} now holds 1\n",
            counter.display()
        )
    );
    assert_eq!(fs::read_to_string(&counter).expect("counter"), "1\n");
    assert_eq!(mode_of(&counter), 0o600);
    assert_eq!(
        stdout(&knocker(&dir, &["sequence", "hot"])),
        wire_sequence(&spec, 1)
    );

    // Knocking uses the next one, and -v shows exactly its ports.
    let out = knocker(&dir, &["knock", "-v", "hot"]);
    assert_ok(&out);
    let hits: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            let port = l.rsplit(':').next().expect("port");
            format!("{port}:udp")
        })
        .collect();
    assert_eq!(format!("{}\n", hits.join(" ")), wire_sequence(&spec, 1));
    assert_eq!(fs::read_to_string(&counter).expect("counter"), "2\n");

    // A knock that fails before sending (no IPv6 address) leaves the counter alone.
    let out = knocker(&dir, &["knock", "six"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs::read_to_string(&counter).expect("counter"), "2\n");

    // A counter file that is not a number is an error, and is left as it is.
    fs::write(&counter, "two\n").expect("write");
    let out = knocker(&dir, &["knock", "hot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a counter"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&counter).expect("counter"), "two\n");
}

#[test]
fn sequence_refuses_what_has_no_sequence() {
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        &format!(
            "{TOTP}\n[profile.enc]\nhost = \"127.0.0.1\"\nkind = \"encoded\"\nkey_file = \"k\"\n\
             base = 40000\nbits = 12\nopen = [\"tcp/22\"]\n\n\
             [profile.seq]\nhost = \"h\"\nsequence = [\"7000\", \"9000:udp\"]\n"
        ),
    );
    let out = knocker(&dir, &["sequence", "enc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("knocker: profile \"enc\" is encoded"),
        "{}",
        stderr(&out)
    );
    let out = knocker(&dir, &["sequence", "rot", "--consume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--consume uses up a hotp counter"),
        "{}",
        stderr(&out)
    );
    // A static sequence is printed as it is.
    let out = knocker(&dir, &["sequence", "seq"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "7000 9000:udp\n");
    let out = knocker(&dir, &["sequence", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("knocker: no profile named \"nosuch\""));

    let out = knocker(&dir, &["profile", "list"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "enc  127.0.0.1  encoded: tcp 40000-44095 (12 bits), open tcp/22 for 30s\n\
         rot  127.0.0.1  rotating (totp, 30s): 4 tcp knocks in 40000-40999\n\
         seq  h          7000 9000:udp\n"
    );
}

#[test]
fn an_encoded_knock_decodes_to_the_profiles_request() {
    // The span starts at a UDP port this test holds, so the header knock (the first, at the
    // span's base for IPv4 and one service) arrives here.
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let base = server.local_addr().expect("addr").port();
    assert!(
        base <= 61440,
        "ephemeral port {base} leaves no room for the span"
    );
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        &format!(
            "[profile.enc]\nhost = \"127.0.0.1\"\nkind = \"encoded\"\nkey_file = \"k\"\n\
             base = {base}\nbits = 12\nproto = \"udp\"\nopen = [\"tcp/22\"]\nduration = \"5m\"\n"
        ),
    );
    let out = knocker(&dir, &["knock", "-v", "enc", "--at", "1700000000"]);
    assert_ok(&out);
    let ports: Vec<u16> = stdout(&out)
        .lines()
        .map(|l| {
            let rest = l.strip_prefix("hitting udp 127.0.0.1:").expect(l);
            rest.parse().expect("port")
        })
        .collect();
    assert_eq!(ports.len(), 63);
    assert_eq!(ports[0], base, "the header knock comes first");
    let mut buf = [0xffu8; 16];
    let (n, _) = server.recv_from(&mut buf).expect("the header knock");
    assert_eq!(&buf[..n], &[0u8]);

    let spec = EncodedSpec::new(base, 12, Proto::Udp).expect("spec");
    let mut reassembly = Reassembly::new(&spec);
    let mut messages = Vec::new();
    for p in &ports {
        if let Push::Complete(m) = reassembly.push(*p) {
            messages.push(m);
        }
    }
    assert_eq!(messages.len(), 1);
    let key = EncodedKey::from_base64(KEY).expect("key");
    let decoded = encoded::decode(&key, &spec, messages[0].as_bytes()).expect("authentic");
    assert_eq!(
        decoded.request,
        Request {
            allow: "127.0.0.1".parse().expect("ip"),
            services: vec![Service::tcp(22)],
            duration_secs: 300,
            unix_time: 1_700_000_000,
        }
    );

    // Every knock is a new message: another nonce, other ports.
    let again = knocker(&dir, &["knock", "-v", "enc", "--at", "1700000000"]);
    assert_ok(&again);
    assert_ne!(stdout(&again), stdout(&out));

    // An `allow` of the other family than the host's is refused before anything is sent: the
    // host is resolved in allow's family, or, with a family forced, the mismatch is named.
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        &format!(
            "[profile.enc]\nhost = \"127.0.0.1\"\nkind = \"encoded\"\nkey_file = \"k\"\n\
             base = {base}\nbits = 12\nopen = [\"tcp/22\"]\nallow = \"2001:db8::1\"\n"
        ),
    );
    let out = knocker(&dir, &["knock", "enc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("knocker: no IPv6 address for \"127.0.0.1\""),
        "{}",
        stderr(&out)
    );
    let out = knocker(&dir, &["knock", "-4", "enc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("both must be IPv4 or both IPv6"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_documents_rotating_and_encoded_profiles() {
    let out = Command::new(KNOCKER)
        .arg("--help")
        .output()
        .expect("run knocker");
    assert_ok(&out);
    let help = stdout(&out);
    for needle in [
        "kind = \"rotating\"",
        "kind = \"encoded\"",
        "key_file",
        "mode = \"totp\"",
        "counter_file",
        "ports = \"40000-40999\"",
        "open = [\"tcp/22\"]",
        "allow",
        "knocker keygen --out",
        "knocker sequence rot",
        "$(knocker sequence rot)",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    for sub in ["sequence", "keygen"] {
        let out = Command::new(KNOCKER)
            .args([sub, "--help"])
            .output()
            .expect("run knocker");
        assert_ok(&out);
        assert!(!stdout(&out).contains("--at"), "{sub} --help shows --at");
    }
}

// knocker's own SPA and stealth SYN: identities and spa profiles.

#[test]
fn keygen_identity_writes_a_private_key_and_prints_the_public_one() {
    let tmp = TempDir::new("cli");
    fs::create_dir_all(&tmp.0).expect("mkdir");
    let home = tmp.0.join("home");
    fs::create_dir_all(&home).expect("mkdir");
    let keygen = |args: &[&str]| {
        Command::new(KNOCKER)
            .args(["keygen", "--identity"])
            .args(args)
            .env("HOME", &home)
            .env("KNOCKER_CONFIG_DIR", config_of(&tmp))
            .output()
            .expect("run knocker")
    };

    // The default place, beside profiles.toml, in a directory knocker makes private.
    let out = keygen(&[]);
    assert_ok(&out);
    let path = config_of(&tmp).join("identity.key");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&config_of(&tmp)), 0o700);
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(text.len(), 45, "{text:?}");
    let private = PrivateKey::from_base64(&text).expect("an X25519 key");
    let public = private.public_key().to_base64();
    assert_eq!(stdout(&out), format!("{public}\n"));
    assert!(
        stderr(&out).contains("knockerd enroll NAME --public-key KEY"),
        "{}",
        stderr(&out)
    );

    // Never overwritten; the refusal says which public key the existing identity has.
    let out = keygen(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "knocker: {} already exists: knocker keygen never overwrites a key (remove the file \
             first to replace it); its public key is {public}\n",
            path.display()
        )
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(fs::read_to_string(&path).expect("read"), text);

    // Another file, named: another key.
    let other = tmp.0.join("other.key");
    let out = keygen(&[other.to_str().expect("utf-8")]);
    assert_ok(&out);
    assert_eq!(mode_of(&other), 0o600);
    let other_public = PrivateKey::from_base64(&fs::read_to_string(&other).expect("read"))
        .expect("key")
        .public_key();
    assert_eq!(stdout(&out), format!("{other_public}\n"));
    assert_ne!(other_public.to_base64(), public);
    let out = keygen(&[other.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // --identity and --out are two different keys.
    let out = keygen(&["--out", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A spa profile as `knockerd enroll` prints it, for a door on `port` of 127.0.0.1, and the
/// client's identity in the config directory.
fn spa_config(tmp: &TempDir, server: &PrivateKey, port: u16, extra: &str) -> (PathBuf, PrivateKey) {
    let client = PrivateKey::generate().expect("rng");
    let dir = config_with(
        tmp,
        &format!(
            "[profile.native]\nhost = \"127.0.0.1\"\nkind = \"spa\"\nport = {port}\n\
             server_key = \"{}\"\ndoor_key = \"{}\"\nkey_file = \"identity.key\"\n\
             open = [\"tcp/22\", \"tcp/443\"]\n{extra}",
            server.public_key(),
            server.door_key("ssh").to_base64().as_str(),
        ),
    );
    let key = dir.join("identity.key");
    fs::write(&key, format!("{}\n", client.to_base64().as_str())).expect("write key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, client)
}

/// A loopback UDP socket to knock at, and its port.
fn loopback_udp() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// A run that failed (exit status 1) saying exactly `want` on standard error.
fn assert_refused(out: &Output, want: String) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert_eq!(stderr(out), want);
}

#[test]
fn a_bad_profile_is_skipped_and_the_others_still_knock() {
    let (socket, port) = loopback_udp();
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        &format!(
            "[profile.bad]\nhost = \"h\"\nkind = \"spa\"\n\n\
             [profile.good]\nhost = \"127.0.0.1\"\nsequence = [\"{port}:udp\"]\n"
        ),
    );
    let file = dir.join("profiles.toml");
    let out = knocker(&dir, &["knock", "--quiet", "good"]);
    assert_ok(&out);
    let mut buf = [0u8; 16];
    assert_eq!(socket.recv_from(&mut buf).expect("the knock").0, 1);
    assert_eq!(
        stderr(&out),
        format!(
            "knocker: warning: {}:1:1: profile \"bad\": a spa profile needs `port` (see \
             `knocker --help`) (profile \"bad\" is skipped)\n",
            file.display()
        )
    );
    let out = knocker(&dir, &["knock", "bad"]);
    assert_refused(
        &out,
        format!(
            "knocker: {}:1:1: profile \"bad\": a spa profile needs `port` (see `knocker --help`)\n",
            file.display()
        ),
    );
}

#[test]
fn secrets_in_a_profiles_file_or_key_file_others_can_read_are_refused() {
    let (server_socket, port) = loopback_udp();
    let server = PrivateKey::generate().expect("rng");
    let tmp = TempDir::new("cli");
    let (dir, _) = spa_config(&tmp, &server, port, &format!("\n{TOTP}"));
    let file = dir.join("profiles.toml");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    // the spa profile holds the door's key in the file itself: refused, with the fix
    let out = knocker(&dir, &["knock", "native"]);
    assert_refused(
        &out,
        format!(
            "knocker: {0}:6:12: profile \"native\": its `door_key` is a secret, and this file is \
             accessible to other users (mode 0644): run `chmod 600 {0}`\n",
            file.display()
        ),
    );
    // the rotating profile only names its key file: it works, and the other is warned about
    let out = knocker(&dir, &["sequence", "rot"]);
    assert_ok(&out);
    assert_eq!(stdout(&out).split_whitespace().count(), 4);
    assert!(
        stderr(&out).contains("(profile \"native\" is skipped)"),
        "{}",
        stderr(&out)
    );
    // mended as the message says: the datagram is sent
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_ok(&knocker(&dir, &["knock", "native"]));
    let mut buf = [0u8; 2048];
    let (n, _) = server_socket.recv_from(&mut buf).expect("the datagram");
    assert!(spa::check_tag(&server.door_key("ssh"), &buf[..n]));
    // a key file the profile names, readable by others: refused when it is used
    let key = dir.join("identity.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = knocker(&dir, &["knock", "native"]);
    assert_refused(
        &out,
        format!(
            "knocker: key file {0} is accessible to other users (mode 0640): run `chmod 600 {0}`\n",
            key.display()
        ),
    );
}

#[test]
fn a_spa_knock_is_one_datagram_the_server_opens() {
    let (server_socket, port) = loopback_udp();
    let server = PrivateKey::generate().expect("rng");
    let tmp = TempDir::new("cli");
    let (dir, client) = spa_config(&tmp, &server, port, "duration = \"5m\"\n");
    let receive = || {
        let mut buf = [0u8; 2048];
        let (n, from) = server_socket.recv_from(&mut buf).expect("the datagram");
        assert_eq!(from.ip().to_string(), "127.0.0.1");
        buf[..n].to_vec()
    };

    let out = knocker(
        &dir,
        &[
            "knock",
            "-v",
            "native",
            "--at",
            "1700000000",
            "--time-offset",
            "-90",
        ],
    );
    assert_ok(&out);
    let datagram = receive();
    assert!(
        (spa::MIN_LEN..=spa::MAX_LEN).contains(&datagram.len()),
        "{}",
        datagram.len()
    );
    assert!(spa::check_tag(&server.door_key("ssh"), &datagram));
    assert!(!spa::check_tag(&server.door_key("web"), &datagram));
    let (sender, request) =
        spa::open(&datagram, &server, &server.door_key("ssh")).expect("sealed to the server");
    assert_eq!(sender, client.public_key());
    assert_eq!(request.timestamp, 1_700_000_000 - 90, "--time-offset -90");
    assert_eq!(request.services, [Service::tcp(22), Service::tcp(443)]);
    assert_eq!(request.allow, None, "the packet's source");
    assert_eq!(request.duration, Some(300));
    assert_eq!(
        stdout(&out),
        format!(
            "knocker SPA to 127.0.0.1:{port}/udp: open tcp/22,tcp/443 for 300s, {} bytes\n",
            datagram.len()
        )
    );
    assert_eq!(stderr(&out), "door open for up to 300s\n");

    // Every knock is a new request (another nonce); --open asks for some of the services.
    let out = knocker(
        &dir,
        &["knock", "native", "--open", "tcp/443", "--time-offset=+30"],
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), "");
    let (_, again) = spa::open(&receive(), &server, &server.door_key("ssh")).expect("sealed");
    assert_ne!(again.nonce, request.nonce);
    assert_eq!(again.services, [Service::tcp(443)]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        again.timestamp.abs_diff(now + 30) <= 5,
        "{}",
        again.timestamp
    );

    // -q: nothing said.
    let out = knocker(&dir, &["knock", "-q", "native"]);
    assert_ok(&out);
    assert_eq!(stderr(&out), "");
    spa::open(&receive(), &server, &server.door_key("ssh")).expect("sealed");

    // A service the profile does not list is a usage error, and nothing is sent.
    let out = knocker(&dir, &["knock", "native", "--open", "tcp/80"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "knocker: --open tcp/80: profile \"native\" opens only tcp/22, tcp/443\n"
    );
    // --open is for spa and syn profiles only.
    let out = knocker(&dir, &["knock", "127.0.0.1", "7000", "--open", "tcp/22"]);
    assert_eq!(out.status.code(), Some(2));

    let out = knocker(&dir, &["profile", "list"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "native  127.0.0.1  spa: udp/".to_string()
            + &format!("{port}, open tcp/22 tcp/443 for 300s\n")
    );
    let out = knocker(&dir, &["sequence", "native"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("one sealed SPA packet"),
        "{}",
        stderr(&out)
    );

    // Without a duration the door's default applies, and the note says so honestly.
    let tmp = TempDir::new("cli");
    let (dir, _) = spa_config(&tmp, &server, port, "");
    let out = knocker(&dir, &["knock", "native"]);
    assert_ok(&out);
    assert_eq!(
        stderr(&out),
        "door open for the door's default time: the profile asks for no duration, so the \
         server decides how long\n"
    );
    let (_, request) = spa::open(&receive(), &server, &server.door_key("ssh")).expect("sealed");
    assert_eq!(request.duration, None);

    // An exposed identity is refused, naming the fix.
    let key = dir.join("identity.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = knocker(&dir, &["knock", "native"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("chmod 600 {}", key.display())),
        "{}",
        stderr(&out)
    );
}

/// A syn profile sends one SYN per chosen service through a raw socket. As root the SYN is
/// caught on loopback and verified as knockerd does; otherwise the refusal says what is needed.
#[test]
fn a_syn_knock_carries_its_slot_or_says_it_needs_a_raw_socket() {
    use std::io::Read as _;
    let server = PrivateKey::generate().expect("rng");
    let client = PrivateKey::generate().expect("rng");
    // A loopback port nobody listens on: the kernel answers the SYN with a reset.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let tmp = TempDir::new("cli");
    let dir = config_with(
        &tmp,
        &format!(
            "[profile.y]\nhost = \"127.0.0.1\"\nkind = \"syn\"\nport = {port}\n\
             server_key = \"{}\"\nkey_file = \"identity.key\"\n\
             open = [\"tcp/22\", \"tcp/443\", \"udp/53\"]\n",
            server.public_key()
        ),
    );
    let key = dir.join("identity.key");
    fs::write(&key, format!("{}\n", client.to_base64().as_str())).expect("write key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    let args = [
        "knock",
        "-v",
        "y",
        "--open",
        "udp/53",
        "--at",
        "1700000000",
        "--time-offset",
        "-90",
    ];

    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| stdout(&o).trim() == "0");
    if !root {
        let out = knocker(&dir, &args);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("cap_net_raw"), "{}", stderr(&out));
        return;
    }
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::TCP),
    )
    .expect("raw socket");
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let out = knocker(&dir, &args);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with(&format!("SYN to 127.0.0.1:{port} from 127.0.0.1:")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("(slot 2: udp/53"), "{}", stdout(&out));
    assert_eq!(
        stderr(&out),
        "the server decides how long the door stays open: a syn knock carries no duration\n"
    );
    let syn_key = server.syn_key(&client.public_key()).expect("key");
    let step = knocker_wire::syn::step(1_700_000_000 - 90);
    let mut buf = [0u8; 2048];
    let seen = loop {
        let n = (&raw).read(&mut buf).expect("the SYN");
        match knocker_wire::syn::parse(&buf[..n]) {
            Some(seen) if seen.dst_port == port => break seen,
            _ => continue,
        }
    };
    assert_eq!(knocker_wire::syn::verify(&syn_key, step, &seen), Some(2));
    assert_eq!(
        knocker_wire::syn::verify(&syn_key, step + 1, &seen),
        None,
        "--time-offset moved the step"
    );
}
