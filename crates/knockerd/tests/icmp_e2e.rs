//! End-to-end: a sequence door with an ICMP step (`icmp/100`: an echo request with 100 bytes of
//! payload, `ping -s 100`), against the real knockerd in namespaces. alice knocks tcp/7000, then
//! the stock `ping -c1 -s 100` (iputils), then udp/8000, and the door opens; the knock's echo
//! request gets no reply, while an ordinary ping, alice's or mallory's, still does. Over IPv6,
//! `knocker knock` sends the whole sequence, the ICMPv6 echo request itself. Needs root,
//! iproute2, nftables and ping (scripts/test.sh installs iputils-ping), and the knocker binary.
//! KNOCKER_SKIP_E2E=1 skips on purpose.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

const SEQ: [&str; 3] = ["7000", "icmp/100", "8000:udp"];

fn ping(from: &Netns, args: &[&str]) -> Output {
    from.command("ping")
        .args(["-n", "-c", "1", "-W", "1"])
        .args(args)
        .output()
        .expect("run ping")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An ordinary ping gets its reply.
fn answered(from: &Netns, args: &[&str]) {
    let out = ping(from, args);
    assert!(
        out.status.success(),
        "ping {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A knock's echo request gets none (ping exits 1: sent, nothing received).
fn unanswered(from: &Netns, args: &[&str]) {
    let out = ping(from, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ping {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 packets transmitted, 0 received"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_sequence_with_an_icmp_step_opens_with_stock_ping_and_with_knocker_knock() {
    if !e2e(&["ping"]) {
        return;
    }
    let w = World::new(
        "icmp",
        &door_config("", &format!("sequence = {SEQ:?}\nopen_for = 30\n")),
    );
    assert_eq!(
        w.connect(&w.lab.alice, Lab::SERVER_FOR_ALICE),
        Reach::Silent,
        "protected before any knock"
    );
    // knocker's table leaves ordinary pings alone, before and during a knock
    answered(&w.lab.alice, &[Lab::SERVER_FOR_ALICE]);
    answered(&w.lab.mallory, &["-s", "99", Lab::SERVER_FOR_MALLORY]);

    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &["7000"]);
    unanswered(&w.lab.alice, &["-s", "100", Lab::SERVER_FOR_ALICE]);
    answered(&w.lab.alice, &[Lab::SERVER_FOR_ALICE]);
    w.knock(&w.lab.alice, Lab::SERVER_FOR_ALICE, &["8000:udp"]);
    w.only_alice_is_let_in();
    // mallory's echo request of the step's size is dropped too, and opens nothing alone
    unanswered(&w.lab.mallory, &["-s", "100", Lab::SERVER_FOR_MALLORY]);

    // IPv6, with knocker's own sender: the ICMPv6 echo request is its own
    let out = w
        .lab
        .alice
        .command(&knocker_client().to_string_lossy())
        .args(["knock", "-v", Lab::SERVER_FOR_ALICE6])
        .args(SEQ)
        .output()
        .expect("run knocker knock");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "hitting icmp {} (an echo request, ping -s 100)",
            Lab::SERVER_FOR_ALICE6
        )),
        "{}",
        text(&out.stdout)
    );
    let g = w.wait_grants(2, Duration::from_secs(2));
    assert!(
        g.iter().any(|g| g.to == Lab::ALICE6),
        "{g:?}\n{}",
        w.daemon.log()
    );
    unanswered(&w.lab.alice, &["-6", "-s", "100", Lab::SERVER_FOR_ALICE6]);
    answered(&w.lab.alice, &["-6", Lab::SERVER_FOR_ALICE6]);
    w.finish();
}
