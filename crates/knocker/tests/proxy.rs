//! `knocker proxy` without privileges, on loopback, spoken to byte by byte as RFC 1928 says: the
//! method negotiation, CONNECT by address and by name, the reply codes of what it refuses (no
//! profile, other commands, other address types, a client that offers only authentication),
//! `--pass-through`, a profile's knock before the connection (its UDP knocks arrive on a loopback
//! socket), and a listen address that is not loopback. (Through a real door, with curl, in
//! namespaces: knockerd's proxy_e2e.rs.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use knocker_lab::proxy::Proxy;
use knocker_lab::TempDir;

const KNOCKER: &str = env!("CARGO_BIN_EXE_knocker");

/// `knocker proxy` on a free loopback port, with `config` and `args`.
fn proxy(config: &Path, args: &[&str]) -> Proxy {
    Proxy::start(
        Command::new(KNOCKER)
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--wait",
                "1",
                "--tries",
                "2",
            ])
            .args(args)
            .env("KNOCKER_CONFIG_DIR", config)
            .env("HOME", config),
    )
}

/// A SOCKS5 client connection that has negotiated "no authentication".
fn client(p: &Proxy) -> TcpStream {
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, p.port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(&[5, 2, 0x02, 0x00]).expect("greeting");
    let mut answer = [0u8; 2];
    c.read_exact(&mut answer).expect("method");
    assert_eq!(answer, [5, 0], "no authentication chosen");
    c
}

fn connect_by_addr(port: u16) -> Vec<u8> {
    let mut r = vec![5, 1, 0, 1, 127, 0, 0, 1];
    r.extend_from_slice(&port.to_be_bytes());
    r
}

fn connect_by_name(name: &str, port: u16) -> Vec<u8> {
    let mut r = vec![5, 1, 0, 3, name.len() as u8];
    r.extend_from_slice(name.as_bytes());
    r.extend_from_slice(&port.to_be_bytes());
    r
}

/// The reply to a request: its code and, for IPv4, the bound address.
fn reply(c: &mut TcpStream) -> (u8, [u8; 6]) {
    let mut head = [0u8; 4];
    c.read_exact(&mut head).expect("reply");
    assert_eq!((head[0], head[2], head[3]), (5, 0, 1), "{head:?}");
    let mut addr = [0u8; 6];
    c.read_exact(&mut addr).expect("bound address");
    (head[1], addr)
}

/// A one-connection echo server on loopback.
fn echo() -> (u16, thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
    let port = l.local_addr().expect("addr").port();
    let h = thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).expect("read") {
                0 => break,
                n => {
                    all.extend_from_slice(&buf[..n]);
                    c.write_all(&buf[..n]).expect("echo");
                }
            }
        }
        c.write_all(b"after your end\n")
            .expect("after the half-close");
        all
    });
    (port, h)
}

/// Sends `data`, half-closes, and reads everything that comes back.
fn round_trip(mut c: TcpStream, data: &[u8]) -> Vec<u8> {
    c.write_all(data).expect("send");
    c.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("read");
    back
}

#[test]
fn hosts_without_a_profile_are_refused_and_other_requests_get_their_codes() {
    let config = TempDir::new("proxy-refuse");
    config.private("profiles.toml", "");
    let (port, _never) = echo();
    let mut p = proxy(&config.0, &[]);

    let mut c = client(&p);
    c.write_all(&connect_by_addr(port)).expect("request");
    assert_eq!(reply(&mut c).0, 2, "not allowed: no profile");
    assert_eq!(c.read(&mut [0u8; 1]).expect("closed"), 0, "then closed");
    p.said(&format!(
        "-> 127.0.0.1:{port}: refused (reply 2): no profile for 127.0.0.1"
    ));

    // BIND and UDP ASSOCIATE: command not supported
    for cmd in [2u8, 3] {
        let mut c = client(&p);
        c.write_all(&[5, cmd, 0, 1, 127, 0, 0, 1, 0, 80])
            .expect("request");
        assert_eq!(reply(&mut c).0, 7, "command {cmd}");
    }
    // an address type that does not exist
    let mut c = client(&p);
    c.write_all(&[5, 1, 0, 2, 0, 0]).expect("request");
    assert_eq!(reply(&mut c).0, 8);
    // a name with a space in it
    let mut c = client(&p);
    c.write_all(&connect_by_name("a b", 80)).expect("request");
    assert_eq!(reply(&mut c).0, 1);

    // a client that offers only username/password: no acceptable method, and closed
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, p.port)).expect("connect");
    c.write_all(&[5, 1, 2]).expect("greeting");
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).expect("read");
    assert_eq!(answer, [5, 0xff]);
    // SOCKS4: closed without a word (a reset, as the rest of the request is left unread)
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, p.port)).expect("connect");
    c.write_all(&[4, 1, 0, 80, 127, 0, 0, 1, 0])
        .expect("socks4");
    let mut answer = [0u8; 16];
    match c.read(&mut answer) {
        Ok(n) => assert_eq!(n, 0, "{:?}", &answer[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    p.said("not SOCKS version 5 (version byte 4)");
}

#[test]
fn pass_through_connects_and_relays_both_ways() {
    let config = TempDir::new("proxy-pass");
    config.private("profiles.toml", "");
    let (port, server) = echo();
    let mut p = proxy(&config.0, &["--pass-through", "-v"]);
    let mut c = client(&p);
    // the request and the first data in one write, as optimistic clients send them
    let mut first = connect_by_addr(port);
    first.extend_from_slice(b"hello ");
    c.write_all(&first).expect("request");
    let (code, bound) = reply(&mut c);
    assert_eq!(code, 0, "succeeded");
    assert_eq!(
        &bound[..4],
        &[127, 0, 0, 1],
        "bound to the outgoing connection's address"
    );
    assert_ne!(u16::from_be_bytes([bound[4], bound[5]]), 0);
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let back = round_trip(c, &body);
    let sent = server.join().expect("server");
    let mut want = b"hello ".to_vec();
    want.extend_from_slice(&body);
    assert!(
        sent == want,
        "the server got every byte, the early ones too"
    );
    want.extend_from_slice(b"after your end\n");
    assert!(
        back == want,
        "the echo, and what the server sent after the half-close"
    );
    p.said("no profile: connecting without a knock");
}

#[test]
fn a_profile_is_knocked_before_the_connection() {
    let knocks = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp");
    knocks
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let kport = knocks.local_addr().expect("addr").port();
    let config = TempDir::new("proxy-knock");
    config.private(
        "profiles.toml",
        &format!("[profile.lab]\nhost = \"127.0.0.1\"\nsequence = [\"{kport}:udp\"]\n"),
    );
    let (port, server) = echo();
    let mut p = proxy(&config.0, &["-v"]);
    // by the profile's name, as a browser with "proxy DNS" sends a host name
    let mut c = client(&p);
    c.write_all(&connect_by_name("lab", port)).expect("request");
    assert_eq!(reply(&mut c).0, 0);
    let mut buf = [0xffu8; 8];
    let (n, _) = knocks.recv_from(&mut buf).expect("the knock arrived");
    assert_eq!(&buf[..n], &[0], "a knock's one-byte datagram");
    assert_eq!(round_trip(c, b"x"), b"xafter your end\n");
    server.join().expect("server");
    p.said(&format!("-> lab:{port}: connected to 127.0.0.1:{port}"));

    // a port that does not open after the knocks: host unreachable... or refused, as loopback
    // answers a closed port with a reset
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut c = client(&p);
    c.write_all(&connect_by_name("lab", closed))
        .expect("request");
    assert_eq!(reply(&mut c).0, 5, "connection refused");
    p.said(&format!(
        "refused (reply 5): tcp/{closed} on 127.0.0.1 did not open after 2 knocks"
    ));
}

#[test]
fn only_loopback_is_listened_on() {
    let out = Command::new(KNOCKER)
        .args(["proxy", "--listen", "0.0.0.0:1080"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("knocker: --listen 0.0.0.0:1080: not a loopback address"),
        "{err}"
    );
}

#[test]
fn an_ipv6_address_is_connected_to_and_the_reply_names_an_ipv6_address() {
    let listener =
        TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).expect("an IPv6 loopback (::1)");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        c.write_all(b"over v6\n").expect("write");
    });
    let config = TempDir::new("proxy-v6");
    config.private("profiles.toml", "");
    let p = proxy(&config.0, &["--pass-through"]);
    let mut c = client(&p);
    let mut req = vec![5, 1, 0, 4];
    req.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    req.extend_from_slice(&port.to_be_bytes());
    c.write_all(&req).expect("request");
    let mut head = [0u8; 4];
    c.read_exact(&mut head).expect("reply");
    assert_eq!(head, [5, 0, 0, 4], "succeeded, bound to an IPv6 address");
    let mut bound = [0u8; 18];
    c.read_exact(&mut bound).expect("bound address");
    assert_eq!(&bound[..16], &std::net::Ipv6Addr::LOCALHOST.octets());
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("read");
    assert_eq!(back, b"over v6\n");
    server.join().expect("server");
}
