//! End-to-end: a server with three interfaces (to alice, to mallory, to carol), doors that
//! listen on some of them. `[daemon] interface` as a list, a door's own `interfaces` over it,
//! and `protect_elsewhere`: a door's services protected on every interface by default (failing
//! closed: a source elsewhere cannot open them, and `check` says so), or only on the door's
//! interfaces, the others left to the admin's firewall. Knocks on an interface a door does not
//! listen on open nothing. Real knockerd, real nftables, real packets, in namespaces.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::*;

/// The second service, of the door that listens on the daemon's interfaces.
const WEB: u16 = SERVICE + 1;
const LAN_SEQ: [&str; 3] = ["7100", "9100:udp", "8100"];
const WEB_SEQ: [&str; 3] = ["7200", "9200:udp", "8200"];
const SERVER_FOR_CAROL: &str = "10.200.3.1";
const CAROL: &str = "10.200.3.2";

fn config() -> String {
    let seq = |s: [&str; 3]| format!("{s:?}");
    format!(
        "[daemon]\nnflog_group = 4100\ninterface = [\"to-alice\", \"to-carol\"]\n\n\
         # knocks on alice's and mallory's links; on carol's, the service is the admin's business\n\
         [door.lan]\nsequence = {}\nopen = [\"tcp/{SERVICE}\"]\nopen_for = 30\ninterfaces = [\"to-alice\", \"to-mallory\"]\nprotect_elsewhere = false\n\n\
         # knocks on the daemon's interfaces (alice's, carol's); protected on every one\n\
         [door.web]\nsequence = {}\nopen = [\"tcp/{WEB}\"]\nopen_for = 30\n",
        seq(LAN_SEQ),
        seq(WEB_SEQ),
    )
}

fn reach(from: &Netns, to: &str, port: u16) -> Reach {
    let addr = SocketAddr::new(ip(to), port);
    from.enter(move || {
        let end = Instant::now() + Duration::from_millis(1500);
        loop {
            let r = try_connect(addr, Duration::from_millis(300));
            if r == Reach::Connected || Instant::now() > end {
                return r;
            }
        }
    })
    .expect("enter")
}

#[test]
fn doors_listen_and_protect_on_their_own_interfaces_of_three() {
    if !e2e(&[]) {
        return;
    }
    let w = World::new("ifaces", &config());
    // the third interface: carol's namespace, linked to the server like alice and mallory
    let carol = Netns::create(&format!("{}-carol", w.lab.server.name())).expect("carol");
    lab::link(
        &w.lab.server,
        "to-carol",
        &[&format!("{SERVER_FOR_CAROL}/24")],
        &carol,
        "eth0",
        &[&format!("{CAROL}/24")],
    )
    .expect("link carol");
    // the second service, on every interface of the server
    let web = w
        .lab
        .server
        .enter(|| TcpListener::bind(("::", WEB)))
        .expect("enter")
        .expect("listen");
    std::thread::spawn(move || for _c in web.incoming() {});

    // before any knock: the lan door's service is left alone on carol's link only
    assert_eq!(
        reach(&carol, SERVER_FOR_CAROL, SERVICE),
        Reach::Connected,
        "protect_elsewhere = false: carol's interface is the admin's firewall's business"
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent
    );
    assert_eq!(
        w.connect(&w.lab.mallory, Lab::SERVER_FOR_MALLORY),
        Reach::Silent
    );
    assert_eq!(
        reach(&carol, SERVER_FOR_CAROL, WEB),
        Reach::Silent,
        "the web door protects on every interface"
    );

    // knocks on interfaces a door does not listen on are not seen
    w.knock(&carol, SERVER_FOR_CAROL, &LAN_SEQ);
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &WEB_SEQ);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        w.grants().is_empty(),
        "no door listens for those: {:?}\n{}",
        w.grants(),
        w.daemon.log()
    );
    assert_eq!(
        reach(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, WEB),
        Reach::Silent,
        "mallory's knock on her link does not open the web door"
    );

    // each door opens on the interfaces it listens on: the lan door's own (alice's, mallory's),
    // the web door's the daemon's (alice's, carol's)
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &LAN_SEQ);
    w.knock(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, &LAN_SEQ);
    w.knock(&carol, SERVER_FOR_CAROL, &WEB_SEQ);
    let g = w.wait_grants(3, Duration::from_secs(3));
    let mut to: Vec<(String, String)> = g
        .iter()
        .map(|g| (g.to.clone(), g.service.clone()))
        .collect();
    to.sort();
    let want = |a: &str, port: u16| (a.to_string(), format!("tcp/{port}"));
    assert_eq!(
        to,
        [
            want(Lab::ALICE, SERVICE),
            want(Lab::MALLORY, SERVICE),
            want(CAROL, WEB)
        ],
        "{}",
        w.daemon.log()
    );
    assert_eq!(
        reach(&w.lab.alice, Lab::SERVER_FOR_ALICE, SERVICE),
        Reach::Connected
    );
    assert_eq!(
        reach(&w.lab.mallory, Lab::SERVER_FOR_MALLORY, SERVICE),
        Reach::Connected
    );
    assert_eq!(reach(&carol, SERVER_FOR_CAROL, WEB), Reach::Connected);
    assert_eq!(
        reach(&w.lab.alice, Lab::SERVER_FOR_ALICE, WEB),
        Reach::Silent,
        "alice opened the lan door, not the web door"
    );

    let check = w.check();
    for want in [
        "counts knocks only on interfaces to-alice, to-mallory",
        "protects its services only on interfaces to-alice, to-mallory (protect_elsewhere = false)",
        "knocks are seen only on interfaces to-alice, to-carol, but protection applies on every interface",
    ] {
        assert!(check.contains(want), "check says {want:?}:\n{check}");
    }
    drop(carol);
    w.finish();
}
