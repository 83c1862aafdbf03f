//! `knocker connect` without privileges, on loopback: the relay (both ways, each direction
//! closed on its own, nothing else on standard output), failures and their messages, the
//! command line's mistakes, and, with profiles whose host is 127.0.0.1, that it knocks (each
//! kind's packets arrive on a loopback socket) before it connects and knocks again while the
//! port stays shut. Also `knocker knock`'s note of how long the door is asked to open, which is
//! for a terminal only. (Through a real door, in namespaces, see knockerd's connect_e2e.rs.)

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use knocker_lab::TempDir;
use knocker_wire::fwknop::{decode, key_from_base64, Digest, FwknopKeys};
use knocker_wire::Service;

const KNOCKER: &str = env!("CARGO_BIN_EXE_knocker");
/// A key for rotating and encoded profiles.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const B64_ENC: &str = "1W2Bh/GxHbKIvL2xV+bBG6AWYjHDvsWNzkAzewiinew=";
const B64_HMAC: &str =
    "ZGh1s5LX7t9Rswe+B1S+X0ToYeEpfa/crMFHzs671DzWS297Ik+kxQKBGGmGqG1952CByPKfv/Pxi2Lh5K0TPw==";

/// A config directory with a profiles file (and private files), removed when dropped.
fn config_dir(profiles: &str) -> TempDir {
    let config = TempDir::new("connect");
    config.private("profiles.toml", profiles);
    config
}

fn command(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(KNOCKER);
    c.arg("connect")
        .args(args)
        .env("KNOCKER_CONFIG_DIR", config)
        .env("HOME", config);
    c
}

/// Runs `knocker connect ARGS` with `input` on standard input, to the end.
fn connect(config: &Path, args: &[&str], input: &[u8]) -> Output {
    knocker_lab::child::run(&mut command(config, args), input, Duration::from_secs(20))
}

/// The child's output once it exits, or a panic if it does not within `limit`.
fn wait_output(child: Child, limit: Duration) -> Output {
    knocker_lab::child::wait_output(child, limit, "knocker connect")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "knocker connect failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// A loopback UDP socket to knock at.
fn udp() -> (UdpSocket, u16) {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

/// How many datagrams are waiting on `socket`, without waiting for more.
fn datagrams(socket: &UdpSocket) -> Vec<Vec<u8>> {
    datagrams_from(socket).into_iter().map(|(_, d)| d).collect()
}

/// The datagrams waiting on `socket`, each with the address it came from, without waiting for
/// more.
fn datagrams_from(socket: &UdpSocket) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        got.push((from, buf[..n].to_vec()));
    }
    socket.set_nonblocking(false).expect("blocking");
    got
}

/// What a test server saw: the bytes it received, and the knocks that had arrived when the
/// connection came.
type Seen = (Vec<u8>, Vec<Vec<u8>>);

/// A one-connection echo server: echoes what it reads and, once the client has closed its
/// sending side (a half-close), still sends `trailer` before closing. Returns its port and what
/// the server saw: the bytes received, and the datagrams `knocks` held when the connection came.
fn echo_server(
    trailer: &'static [u8],
    knocks: Option<UdpSocket>,
) -> (u16, thread::JoinHandle<Seen>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let knocked = knocks.as_ref().map(datagrams).unwrap_or_default();
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match c.read(&mut buf).expect("read") {
                0 => break,
                n => {
                    received.extend_from_slice(&buf[..n]);
                    c.write_all(&buf[..n]).expect("echo");
                }
            }
        }
        // The client's input has ended; the connection is still open our way.
        c.write_all(trailer).expect("trailer after the half-close");
        c.shutdown(Shutdown::Write).expect("close");
        (received, knocked)
    });
    (port, handle)
}

#[test]
fn bytes_relay_both_ways_and_input_end_is_a_half_close() {
    let config = config_dir("");
    let (port, server) = echo_server(b"bye\n", None);
    let input: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let out = connect(&config.0, &["127.0.0.1", &port.to_string()], &input);
    assert_ok(&out);
    let (received, _) = server.join().expect("server");
    assert_eq!(received, input, "every byte reached the server");
    let mut want = input.clone();
    want.extend_from_slice(b"bye\n");
    assert!(
        out.stdout == want,
        "standard output is the echo and the trailer, nothing else"
    );
    assert_eq!(text(&out.stderr), "", "silent without -v");
}

#[test]
fn the_servers_end_does_not_end_what_the_client_still_sends() {
    let config = config_dir("");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        c.write_all(b"banner\n").expect("banner");
        c.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("read");
        got
    });
    let mut child = command(&config.0, &["-v", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run knocker");
    let mut banner = [0u8; 7];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut banner)
        .expect("banner");
    assert_eq!(&banner, b"banner\n");
    // The server has closed its side; knocker still relays ours.
    thread::sleep(Duration::from_millis(200));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"late\n").expect("write");
    drop(stdin);
    let out = wait_output(child, Duration::from_secs(10));
    assert_ok(&out);
    assert_eq!(server.join().expect("server"), b"late\n");
    assert_eq!(text(&out.stdout), "", "nothing after the banner");
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!("knocker: connected to 127.0.0.1:{port}\n")),
        "{said}"
    );
}

#[test]
fn when_the_reader_of_standard_output_goes_away_knocker_ends_quietly() {
    let config = config_dir("");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let chunk = [b'x'; 4096];
        while c.write_all(&chunk).is_ok() {}
    });
    let mut child = command(&config.0, &["127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run knocker");
    let mut first = [0u8; 10];
    let mut stdout = child.stdout.take().expect("stdout");
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    // Standard input stays open: knocker must not wait for it.
    let _stdin = child.stdin.take();
    let out = wait_output(child, Duration::from_secs(10));
    assert_ok(&out);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_closed_port_without_a_profile_fails_at_once_saying_why() {
    let config = config_dir("");
    let port = closed_port();
    let started = Instant::now();
    let out = connect(&config.0, &["127.0.0.1", &port.to_string()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "knocker: cannot connect to tcp/{port} on 127.0.0.1 (no profile for it, so no knock): \
             Connection refused (os error 111)\n"
        )
    );
    assert_eq!(text(&out.stdout), "");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a refusal is final for a plain host"
    );
    // No config directory at all is no profile either.
    let out = Command::new(KNOCKER)
        .args(["connect", "127.0.0.1", &port.to_string()])
        .env_remove("KNOCKER_CONFIG_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run knocker");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("so no knock"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_profile_knocks_before_connecting_and_stdout_is_only_the_relay() {
    let (knocks, knock_port) = udp();
    let config = config_dir(&format!(
        "[profile.lab]\nhost = \"127.0.0.1\"\nsequence = [\"{knock_port}:udp\"]\n"
    ));
    let (port, server) = echo_server(b"", Some(knocks));
    let out = connect(&config.0, &["-v", "lab", &port.to_string()], b"hello\n");
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "hello\n", "-v says nothing on stdout");
    let (received, knocked) = server.join().expect("server");
    assert_eq!(received, b"hello\n");
    assert_eq!(knocked, [vec![0u8]], "one knock, sent before connecting");
    let said = text(&out.stderr);
    for line in [
        "knocker: knock 1 of 3: profile lab (sequence) on 127.0.0.1\n".to_string(),
        format!("knocker: hitting udp 127.0.0.1:{knock_port}\n"),
        format!("knocker: connected to 127.0.0.1:{port}\n"),
    ] {
        assert!(said.contains(&line), "{line:?} in {said}");
    }
    assert!(
        !said.contains("door open"),
        "a sequence says no duration: {said}"
    );
}

#[test]
fn a_port_that_stays_shut_is_knocked_tries_times_then_named() {
    // On a loopback address of its own: the knocks of other tests' children go to 127.0.0.1,
    // and once one of them (or something else) reached this test's socket, a third datagram
    // when two were sent (one CI run in many).
    let own = Ipv4Addr::new(127, 0, 0, 29);
    let knocks = UdpSocket::bind((own, 0)).expect("bind");
    let knock_port = knocks.local_addr().expect("addr").port();
    let port = TcpListener::bind((own, 0))
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = config_dir(&format!(
        "[profile.lab]\nhost = \"{own}\"\nsequence = [\"{knock_port}:udp\"]\n"
    ));
    let started = Instant::now();
    let out = connect(
        &config.0,
        &["--tries", "2", "--wait", "0.5", "lab", &port.to_string()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "knocker: tcp/{port} on {own} did not open after 2 knocks \
             (last attempt: Connection refused (os error 111))\n"
        )
    );
    assert_eq!(text(&out.stdout), "");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "each knock waits --wait"
    );
    let got = datagrams_from(&knocks);
    assert_eq!(got.len(), 2, "two knocks, got (source, bytes) {got:?}");
}

#[test]
fn a_profile_is_found_by_its_host_and_several_must_be_told_apart() {
    let (knocks, knock_port) = udp();
    let config = config_dir(&format!(
        "[profile.one]\nhost = \"127.0.0.1\"\nsequence = [\"{knock_port}:udp\"]\n"
    ));
    let (port, server) = echo_server(b"", Some(knocks));
    let out = connect(&config.0, &["127.0.0.1", &port.to_string()], b"x");
    assert_ok(&out);
    assert_eq!(server.join().expect("server").1.len(), 1, "knocked");

    let config = config_dir(
        "[profile.a]\nhost = \"127.0.0.1\"\nsequence = [\"7000\"]\n\n\
         [profile.b]\nhost = \"127.0.0.1\"\nsequence = [\"8000\"]\n",
    );
    let out = connect(&config.0, &["127.0.0.1", "22"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "knocker: several profiles knock on 127.0.0.1 (a, b): name one, e.g. \
         `knocker connect a 22`\n"
    );
}

#[test]
fn a_bad_profile_costs_only_itself_and_hosts_without_one_still_connect() {
    // the documented `Host *` ProxyCommand runs `knocker connect` for every ssh: one typo in
    // one profile must not break them all
    let config = config_dir(
        "[profile.typo]\nhost = \"typo.example\"\nsequence = [\"7000\"]\nhots = 1\n\n\
         [profile.mine]\nhost = \"127.0.0.2\"\nsequence = [\"70000\"]\n",
    );
    let file = config.0.join("profiles.toml").display().to_string();
    let (port, server) = echo_server(b"", None);
    let out = connect(&config.0, &["127.0.0.1", &port.to_string()], b"hello");
    assert_ok(&out);
    assert_eq!(out.stdout, b"hello");
    assert_eq!(server.join().expect("server").0, b"hello");
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "knocker: warning: {file}:4:1: profile \"typo\": unknown field `hots`"
        )) && lines[0].ends_with("(profile \"typo\" is skipped)"),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!(
            "knocker: warning: {file}:8:13: profile \"mine\": bad port \"70000\": a port is a \
             number from 1 to 65535 (profile \"mine\" is skipped)"
        )
    );

    // A bad profile asked for by name, or by its host, is an error that says what is wrong
    // (not a connection without the knock it needs).
    let out = connect(&config.0, &["typo", &closed_port().to_string()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with(&format!(
            "knocker: {file}:4:1: profile \"typo\": unknown field `hots`"
        ))),
        "{err}"
    );
    assert!(
        !err.contains("typo\" is skipped"),
        "not warned about as well: {err}"
    );
    let out = connect(&config.0, &["127.0.0.2", &closed_port().to_string()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).ends_with(&format!(
            "knocker: {file}:8:13: profile \"mine\": bad port \"70000\": a port is a number \
             from 1 to 65535\n"
        )),
        "{}",
        text(&out.stderr)
    );

    // A file that is not TOML at all: said where, and a host without a profile still connects.
    let config = config_dir("[profile.a]\nhost = \"127.0.0.1\"\n[profile.b\nhost = 1\n");
    let file = config.0.join("profiles.toml").display().to_string();
    let (port, server) = echo_server(b"", None);
    let out = connect(&config.0, &["127.0.0.1", &port.to_string()], b"hi");
    assert_ok(&out);
    assert_eq!(server.join().expect("server").0, b"hi");
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("knocker: warning: {file}:3:"))
            && err.contains(": not valid TOML: ")
            && err.ends_with("(no profile in it can be used)\n")
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn each_knock_of_a_hotp_profile_uses_up_a_counter() {
    let config = config_dir(
        "[profile.hot]\nhost = \"127.0.0.1\"\nkind = \"rotating\"\nkey_file = \"k\"\n\
         mode = \"hotp\"\ncounter_file = \"c\"\nknocks = 3\nports = \"40000-40063\"\n\
         proto = \"udp\"\n",
    );
    config.private("k", &format!("{KEY}\n"));
    let port = closed_port();
    let out = connect(
        &config.0,
        &["--tries", "3", "--wait", "0.2", "hot", &port.to_string()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not open after 3 knocks"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(config.0.join("c")).expect("counter"),
        "3\n"
    );
}

#[test]
fn an_fwknop_profile_sends_its_packet_then_connects() {
    let (spa, spa_port) = udp();
    let config = config_dir(&format!(
        "[profile.fw]\nhost = \"127.0.0.1\"\nkind = \"fwknop\"\nkey_file = \"fw.key\"\n\
         hmac_key_file = \"fw.hmac\"\nopen = [\"tcp/22\"]\nduration = \"2m\"\n\
         port = {spa_port}\nuser = \"bob\"\n"
    ));
    config.private("fw.key", &format!("{B64_ENC}\n"));
    config.private("fw.hmac", &format!("{B64_HMAC}\n"));
    let (port, server) = echo_server(b"", Some(spa));
    let out = connect(&config.0, &["-v", "fw", &port.to_string()], b"ssh\n");
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "ssh\n");
    let (_, packets) = server.join().expect("server");
    assert_eq!(packets.len(), 1, "one SPA packet, before connecting");
    let keys = FwknopKeys::new(
        key_from_base64(B64_ENC).expect("key"),
        key_from_base64(B64_HMAC).expect("hmac key"),
        Digest::Sha256,
    )
    .expect("keys");
    let msg = decode(&keys, &packets[0]).expect("decodes");
    assert_eq!(msg.services(), &[Service::tcp(22)]);
    assert_eq!(msg.client_timeout, Some(120));
    let said = text(&out.stderr);
    assert!(
        said.contains("knocker: sent an fwknop SPA packet to 127.0.0.1\n"),
        "{said}"
    );
    assert!(
        said.contains("knocker: door open for up to 120s\n"),
        "{said}"
    );
}

#[test]
fn an_encoded_profile_knocks_and_says_its_duration() {
    let config = config_dir(
        "[profile.enc]\nhost = \"127.0.0.1\"\nkind = \"encoded\"\nkey_file = \"k\"\n\
         base = 40000\nbits = 12\nproto = \"udp\"\nopen = [\"tcp/22\"]\nduration = \"5m\"\n",
    );
    config.private("k", &format!("{KEY}\n"));
    let (port, server) = echo_server(b"", None);
    let out = connect(&config.0, &["-v", "enc", &port.to_string()], b"e");
    assert_ok(&out);
    server.join().expect("server");
    assert_eq!(text(&out.stdout), "e");
    let said = text(&out.stderr);
    assert_eq!(
        said.matches("knocker: hitting udp 127.0.0.1:").count(),
        63,
        "{said}"
    );
    assert!(
        said.contains("knocker: door open for up to 300s\n"),
        "{said}"
    );
}

#[test]
fn command_line_mistakes_are_usage_errors() {
    let config = config_dir("");
    for args in [
        &["127.0.0.1"][..],
        &["127.0.0.1", "0"],
        &["127.0.0.1", "70000"],
        &["127.0.0.1", "ssh"],
        &["--tries", "0", "127.0.0.1", "22"],
        &["--tries", "101", "127.0.0.1", "22"],
        &["--wait", "0", "127.0.0.1", "22"],
        &["--wait", "soon", "127.0.0.1", "22"],
        &["-4", "-6", "127.0.0.1", "22"],
        &["127.0.0.1", "22", "extra"],
    ] {
        let out = connect(&config.0, args, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "", "{args:?}");
        assert!(text(&out.stderr).contains("error:"), "{args:?}");
    }
    // A family the address does not have.
    let out = connect(&config.0, &["-6", "127.0.0.1", "22"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "knocker: no IPv6 address for \"127.0.0.1\" (it has only 127.0.0.1)\n"
    );
    // A broken profiles file is not quietly taken for no profile.
    let config = config_dir("[profile.x]\nhost = \n");
    let out = connect(&config.0, &["x", "22"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("profiles.toml:2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_explains_proxycommand_and_the_door_note() {
    let help = |args: &[&str]| {
        let out = Command::new(KNOCKER).args(args).output().expect("help");
        assert_ok(&out);
        text(&out.stdout)
    };
    let connect = help(&["connect", "--help"]);
    for needle in [
        "ProxyCommand='knocker connect %h %p'",
        "--tries <N>",
        "--wait <SECS>",
        "did not open after N knocks",
        "shuts down its sending side",
    ] {
        assert!(connect.contains(needle), "{needle:?} in {connect}");
    }
    let knock = help(&["knock", "--help"]);
    assert!(knock.contains("door open for up to 30s"), "{knock}");
    assert!(help(&["--help"]).contains("knocker connect %h %p"));
}

/// `knocker knock` says on standard error how long the door stays open, as far as the client
/// knows, on a terminal or not; -q keeps it quiet. `script` (util-linux) gives it a terminal.
#[test]
fn knock_notes_the_duration_unless_quiet() {
    // `script` (util-linux, Debian package bsdutils) gives knocker a terminal
    if !knocker_lab::needs(false, &["script"]) {
        return;
    }
    let config = config_dir(
        "[profile.enc]\nhost = \"127.0.0.1\"\nkind = \"encoded\"\nkey_file = \"k\"\n\
         base = 40000\nbits = 12\nproto = \"udp\"\nopen = [\"tcp/22\"]\nduration = \"5m\"\n\n\
         [profile.seq]\nhost = \"127.0.0.1\"\nsequence = [\"40000:udp\"]\n",
    );
    config.private("k", &format!("{KEY}\n"));
    let on_terminal = |name: &str| {
        let out = Command::new("script")
            .args(["-qec", &format!("{KNOCKER} knock {name}"), "/dev/null"])
            .env("KNOCKER_CONFIG_DIR", &config.0)
            .stdin(Stdio::null())
            .output()
            .expect("script");
        assert_ok(&out);
        text(&out.stdout)
    };
    assert_eq!(on_terminal("enc").trim(), "door open for up to 300s");
    assert_eq!(
        on_terminal("seq").trim(),
        "the server decides how long the door stays open: a sequence knock carries no duration",
    );
    assert_eq!(on_terminal("-q enc").trim(), "");

    let knock = |args: &[&str]| {
        let out = Command::new(KNOCKER)
            .arg("knock")
            .args(args)
            .env("KNOCKER_CONFIG_DIR", &config.0)
            .output()
            .expect("knock");
        assert_ok(&out);
        assert_eq!(text(&out.stdout), "");
        text(&out.stderr)
    };
    assert_eq!(knock(&["enc"]), "door open for up to 300s\n");
    assert_eq!(knock(&["--quiet", "enc"]), "");
    // Ports on the command line: nothing, as `knock` prints nothing.
    assert_eq!(knock(&["127.0.0.1", "40000:udp"]), "");
}
