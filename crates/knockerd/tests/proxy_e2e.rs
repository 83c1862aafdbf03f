//! End-to-end: `knocker proxy` with a real client, curl, against the real knockerd in
//! namespaces. The proxy and curl run in alice's namespace; a small HTTP server in the server's
//! namespace sits behind a sequence door, so it answers only after the knock. `curl
//! --socks5-hostname` through the proxy gets the page (the proxy knocked with alice's profile);
//! a host without a profile is refused (SOCKS reply 2) and nothing is knocked or granted. Needs
//! root, iproute2, nftables and curl (scripts/test.sh installs it), and the knocker binary.
//! KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

use common::*;
use lab::proxy::Proxy;

/// The web server's port, protected by the door.
const WEB: u16 = 2280;
const PAGE: &str = "behind the door\n";

/// A tiny HTTP/1.0 server on WEB in the server's namespace: every request gets PAGE.
fn web_server(w: &World) {
    let listener = w
        .lab
        .server
        .enter(|| TcpListener::bind(("::", WEB)))
        .expect("enter")
        .expect("listen");
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    c,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
            });
        }
    });
}

/// curl in alice's namespace through the proxy.
fn curl(w: &World, proxy: &Proxy, url: &str) -> Output {
    let mut cmd = w.lab.alice.command("curl");
    cmd.args(["-sS", "--max-time", "30", "--socks5-hostname"])
        .arg(format!("127.0.0.1:{}", proxy.port))
        .arg(url);
    lab::child::run(&mut cmd, b"", Duration::from_secs(40))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn curl_through_the_proxy_knocks_the_door_open_and_hosts_without_a_profile_are_refused() {
    if !e2e(&["curl"]) {
        return;
    }
    let w = World::new(
        "proxy",
        &format!(
            "[daemon]\nnflog_group = 4100\n\n[door.web]\nsequence = {ALICE_SEQ:?}\n\
             open = [\"tcp/{WEB}\"]\nopen_for = 30\n"
        ),
    );
    web_server(&w);
    let web = |from: &Netns, to: &str| {
        let addr = std::net::SocketAddr::new(ip(to), WEB);
        from.enter(move || try_connect(addr, PROBE)).expect("enter")
    };
    assert_eq!(
        web(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "the web server is behind the door"
    );
    let profiles = lab::TempDir::new("proxy-e2e");
    profiles.private(
        "profiles.toml",
        &format!(
            "[profile.lab]\nhost = \"{}\"\nsequence = {ALICE_SEQ:?}\n",
            Lab::SERVER_FOR_ALICE
        ),
    );
    let mut proxy = Proxy::start(
        w.lab
            .alice
            .command(&knocker_client().to_string_lossy())
            .args(["proxy", "-v", "--listen", "127.0.0.1:0"])
            .env("KNOCKER_CONFIG_DIR", &profiles.0),
    );

    // A host without a profile (the server's other address): refused, nothing knocked.
    let out = curl(
        &w,
        &proxy,
        &format!("http://{}:{WEB}/", Lab::SERVER_FOR_MALLORY),
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "");
    proxy.said(&format!(
        "-> {}:{WEB}: refused (reply 2): no profile for {}",
        Lab::SERVER_FOR_MALLORY,
        Lab::SERVER_FOR_MALLORY
    ));
    assert!(w.grants().is_empty(), "{:?}", w.grants());

    // By the profile's name, which only the proxy can resolve: knocked, opened, fetched.
    let out = curl(&w, &proxy, &format!("http://lab:{WEB}/"));
    assert!(
        out.status.success(),
        "curl through the proxy: {}\n{}",
        text(&out.stderr),
        w.daemon.log()
    );
    assert_eq!(text(&out.stdout), PAGE);
    proxy.said(&format!(
        "-> lab:{WEB}: connected to {}:{WEB}",
        Lab::SERVER_FOR_ALICE
    ));
    let g = w.grants();
    assert_eq!(g.len(), 1, "{g:?}\n{}", w.daemon.log());
    assert_eq!(
        (g[0].to.as_str(), g[0].service.as_str()),
        (Lab::ALICE, "tcp/2280")
    );

    // By the profile's host address: the same profile; the door is still open, so no knock.
    let out = curl(
        &w,
        &proxy,
        &format!("http://{}:{WEB}/", Lab::SERVER_FOR_ALICE),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), PAGE);
    proxy.said("profile lab: still open, no knock");
    assert_eq!(
        web(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent,
        "nothing opened for mallory"
    );
    drop(proxy);
    w.finish();
}
