//! Encoded doors in the engine: reassembly in any order, then the checks, on virtual time.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use knocker_engine::{
    DoorSpec, Encoded, Engine, EngineConfig, Event, Kind, Knock, Refusal, Service, TcpFlags,
};
use knocker_wire::encoded::{encode, EncodedSpec, Request};
use knocker_wire::{EncodedKey, Proto};

const ALICE: &str = "10.200.1.2";
const MALLORY: &str = "10.200.2.2";
const NOW: u64 = 1_795_260_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn key(b: u8) -> EncodedKey {
    EncodedKey::from_bytes([b; 32])
}

fn spec() -> EncodedSpec {
    EncodedSpec::new(50000, 12, Proto::Tcp).expect("spec")
}

fn engine(allow_other_address: bool) -> Engine {
    let door = DoorSpec {
        name: "enc".into(),
        open: vec![Service::tcp(22), Service::udp(53)],
        open_for: Duration::from_secs(60),
        window: Duration::from_secs(30),
        tcp_flags: Some("syn,!ack".parse().expect("flags")),
        kind: Kind::Encoded(Encoded {
            spec: spec(),
            key: Arc::new(key(7)),
            max_age: 120,
            allow_other_address,
        }),
        ..Default::default()
    };
    let mut e = Engine::new(EngineConfig {
        doors: vec![door],
        max_tracked: 1000,
    })
    .expect("valid");
    e.set_wall_clock(NOW);
    e
}

fn request(allow: &str, services: Vec<Service>, unix_time: u64) -> Request {
    Request {
        allow: ip(allow),
        services,
        duration_secs: 300,
        unix_time,
    }
}

fn ports(k: &EncodedKey, r: &Request, nonce: u8) -> Vec<u16> {
    encode(k, &spec(), r, [nonce; 12]).expect("encode")
}

fn send(e: &mut Engine, from: &str, ports: &[u16], flags: TcpFlags) -> Vec<Event> {
    let t = Instant::now();
    for p in ports {
        e.handle(
            t,
            &Knock {
                src: ip(from),
                dst: ip("10.200.1.1"),
                proto: Proto::Tcp,
                src_port: 41000,
                dst_port: *p,
                tcp_flags: flags,
            },
        );
    }
    std::iter::from_fn(|| e.poll_event()).collect()
}

fn refusal(events: &[Event]) -> Option<Refusal> {
    events.iter().find_map(|e| match e {
        Event::Refused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn an_encoded_request_opens_once_in_any_order_for_its_own_address() {
    let mut e = engine(false);
    let r = request(ALICE, vec![Service::tcp(22)], NOW - 5);
    let mut p = ports(&key(7), &r, 1);
    p.reverse(); // reordered on the way
    let ev = send(&mut e, ALICE, &p, TcpFlags::SYN);
    let g = ev
        .iter()
        .find_map(|e| {
            if let Event::Grant(g) = e {
                Some(g.clone())
            } else {
                None
            }
        })
        .expect("granted");
    assert_eq!(g.to, ip(ALICE));
    assert_eq!(g.open, vec![Service::tcp(22)]);
    assert_eq!(
        g.duration,
        Duration::from_secs(60),
        "clamped to the door's open_for"
    );
    let seen = ev
        .iter()
        .position(|e| matches!(e, Event::Seen { .. }))
        .expect("seen");
    let grant = ev
        .iter()
        .position(|e| matches!(e, Event::Grant(_)))
        .expect("grant");
    assert!(
        seen < grant,
        "the digest comes first, to be made durable before the grant"
    );
    assert!(matches!(ev[seen], Event::Seen { until_unix, .. } if until_unix == NOW - 5 + 120));
    // the very same knocks again, from alice or anyone: a replay
    assert_eq!(
        refusal(&send(&mut e, ALICE, &p, TcpFlags::SYN)),
        Some(Refusal::Replayed)
    );
    assert_eq!(
        refusal(&send(&mut e, MALLORY, &p, TcpFlags::SYN)),
        Some(Refusal::OtherAddress { allow: ip(ALICE) })
    );
}

#[test]
fn a_replay_digest_from_before_a_restart_is_honoured() {
    let r = request(ALICE, vec![Service::tcp(22)], NOW);
    let p = ports(&key(7), &r, 2);
    let mut first = engine(false);
    let ev = send(&mut first, ALICE, &p, TcpFlags::SYN);
    let (digest, until) = ev
        .iter()
        .find_map(|e| {
            if let Event::Seen {
                digest, until_unix, ..
            } = e
            {
                Some((*digest, *until_unix))
            } else {
                None
            }
        })
        .expect("seen");
    let mut after_restart = engine(false);
    after_restart.add_seen(digest, until);
    assert_eq!(
        refusal(&send(&mut after_restart, ALICE, &p, TcpFlags::SYN)),
        Some(Refusal::Replayed)
    );
}

#[test]
fn clock_skew_is_refused_with_how_far_off_the_client_is() {
    let mut e = engine(false);
    let p = ports(
        &key(7),
        &request(ALICE, vec![Service::tcp(22)], NOW - 500),
        3,
    );
    let r = refusal(&send(&mut e, ALICE, &p, TcpFlags::SYN)).expect("refused");
    assert_eq!(
        r,
        Refusal::Age {
            off_by_secs: -500,
            max_age: 120
        }
    );
    assert!(r.to_string().contains("500 s behind"), "{r}");
    let p = ports(
        &key(7),
        &request(ALICE, vec![Service::tcp(22)], NOW + 121),
        4,
    );
    assert!(matches!(
        refusal(&send(&mut e, ALICE, &p, TcpFlags::SYN)),
        Some(Refusal::Age {
            off_by_secs: 121,
            ..
        })
    ));
}

#[test]
fn wrong_keys_unopened_services_and_failed_flag_filters_never_open() {
    let mut e = engine(false);
    let p = ports(&key(8), &request(ALICE, vec![Service::tcp(22)], NOW), 5);
    assert_eq!(
        refusal(&send(&mut e, ALICE, &p, TcpFlags::SYN)),
        Some(Refusal::NotAuthentic)
    );
    let mut e = engine(false);
    let p = ports(&key(7), &request(ALICE, vec![Service::tcp(23)], NOW), 6);
    assert_eq!(
        refusal(&send(&mut e, ALICE, &p, TcpFlags::SYN)),
        Some(Refusal::NotOpened(Service::tcp(23)))
    );
    // knocks that fail the door's flag filter are not part of any message
    let mut e = engine(false);
    let p = ports(&key(7), &request(ALICE, vec![Service::tcp(22)], NOW), 7);
    let ev = send(&mut e, ALICE, &p, TcpFlags::SYN.union(TcpFlags::ACK));
    assert!(
        ev.iter()
            .all(|e| !matches!(e, Event::Grant(_) | Event::Refused { .. })),
        "{ev:?}"
    );
}

#[test]
fn allow_other_address_grants_the_address_inside_the_request() {
    let mut e = engine(true);
    let p = ports(
        &key(7),
        &request("10.200.9.9", vec![Service::udp(53)], NOW),
        8,
    );
    let ev = send(&mut e, ALICE, &p, TcpFlags::SYN);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Grant(g) if g.to == ip("10.200.9.9"))),
        "{ev:?}"
    );
}

#[test]
fn reassembly_state_is_bounded_and_expires() {
    let mut e = engine(false);
    // 10k sources each start a message and never finish it
    let t = Instant::now();
    for i in 0..10_000u32 {
        let src = IpAddr::V4(std::net::Ipv4Addr::from(0x0a64_0000 + i));
        e.handle(
            t,
            &Knock {
                src,
                dst: ip("10.200.1.1"),
                proto: Proto::Tcp,
                src_port: 1,
                dst_port: 50001,
                tcp_flags: TcpFlags::SYN,
            },
        );
    }
    let full = std::iter::from_fn(|| e.poll_event())
        .filter(|e| matches!(e, Event::TableFull { .. }))
        .count();
    assert_eq!(full, 1, "reported once");
    let deadline = e.poll_timeout().expect("a deadline");
    assert!(deadline <= t + Duration::from_secs(30));
    e.handle_timeout(t + Duration::from_secs(31));
    assert!(e.poll_timeout().is_none(), "every buffer expired");
}
