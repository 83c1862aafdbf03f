//! SPA doors in the engine, with a stand-in decoder: the policy (replay, sources, keys in door
//! order, age, address binding, username, expiry, ports and timeouts) on virtual time.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knocker_engine::{
    DoorSpec, Engine, EngineConfig, Event, Kind, Knock, Proto, RateLimit, Refusal, Service, Spa,
    SpaDecode, SpaError, SpaRequest, TcpFlags,
};

const NOW: u64 = 1_795_260_671;
const ALICE: &str = "10.200.1.2";
const MALLORY: &str = "10.200.2.2";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// "KEY|user|timestamp|allow|tcp/22,udp/53|timeout[|id[|counter]]" — `KEY` must equal the
/// door's key.
fn decoder(key: &'static str) -> SpaDecode {
    Arc::new(move |payload: &[u8], _wall: u64| {
        let text = std::str::from_utf8(payload).map_err(|_| SpaError::NotForThisKey)?;
        let f: Vec<&str> = text.split('|').collect();
        if !(6..=8).contains(&f.len()) || f[0] != key {
            return Err(SpaError::NotForThisKey);
        }
        if f[1] == "revoked" {
            return Err(SpaError::Refused(Refusal::UnknownKey));
        }
        if f[4] == "NAT" {
            return Err(SpaError::Unsupported(
                "NAT access messages are not supported yet".into(),
            ));
        }
        Ok(SpaRequest {
            username: f[1].into(),
            timestamp: f[2].parse().expect("ts"),
            allow: f[3].parse().expect("allow"),
            access: f[4]
                .split(',')
                .map(|s| s.parse().expect("service"))
                .collect(),
            client_timeout: f[5].parse().ok(),
            // a 7th field stands for what knocker SPA authenticates apart from the raw bytes
            replay_id: f.get(6).map(|id| {
                let mut d = [0u8; 32];
                d[..id.len().min(32)].copy_from_slice(&id.as_bytes()[..id.len().min(32)]);
                d
            }),
            // an 8th stands for a once-only counter (knockknock's)
            counter: f.get(7).and_then(|c| c.parse().ok()),
            nat: None,
        })
    })
}

fn door(name: &str, key: &'static str, tweak: impl FnOnce(&mut Spa)) -> DoorSpec {
    let mut spa = Spa {
        decode: decoder(key),
        precheck: None,
        rate_limit: None,
        proto: Proto::Udp,
        port: 62201,
        allowed: Vec::new(),
        max_age: Some(120),
        access_timeout: 30,
        max_timeout: 300,
        restrict: vec![Service::tcp(23)],
        require_username: None,
        expire: None,
        allow_other_address: false,
        require_source_address: false,
        destinations: Vec::new(),
        open_any: false,
    };
    tweak(&mut spa);
    DoorSpec {
        name: name.into(),
        open: vec![Service::tcp(22), Service::udp(53)],
        open_for: Duration::from_secs(3600),
        kind: Kind::Spa(spa),
        ..Default::default()
    }
}

fn engine(doors: Vec<DoorSpec>) -> Engine {
    let mut e = Engine::new(EngineConfig {
        doors,
        max_tracked: 100,
    })
    .expect("valid");
    e.set_wall_clock(NOW);
    e
}

fn send(e: &mut Engine, from: &str, payload: &str) -> Vec<Event> {
    send_at(e, Instant::now(), Proto::Udp, from, payload)
}

fn send_at(e: &mut Engine, now: Instant, proto: Proto, from: &str, payload: &str) -> Vec<Event> {
    let knock = Knock {
        src: ip(from),
        dst: ip("10.200.1.1"),
        proto,
        src_port: 55555,
        dst_port: 62201,
        tcp_flags: TcpFlags::default(),
    };
    e.handle_datagram(now, &knock, payload.as_bytes());
    std::iter::from_fn(|| e.poll_event()).collect()
}

fn granted(ev: &[Event]) -> Option<(String, IpAddr, Vec<Service>, Duration)> {
    ev.iter().find_map(|e| match e {
        Event::Grant(g) => Some((g.door_name.clone(), g.to, g.open.clone(), g.duration)),
        _ => None,
    })
}

fn refused(ev: &[Event]) -> Option<Refusal> {
    ev.iter().find_map(|e| match e {
        Event::Refused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn a_valid_packet_opens_for_its_source_once() {
    let mut e = engine(vec![door("ssh", "K", |_| {})]);
    let p = format!("K|alice|{NOW}|0.0.0.0|tcp/22|-");
    let ev = send(&mut e, ALICE, &p);
    assert_eq!(
        granted(&ev),
        Some((
            "ssh".into(),
            ip(ALICE),
            vec![Service::tcp(22)],
            Duration::from_secs(30)
        ))
    );
    let seen = ev
        .iter()
        .position(|e| matches!(e, Event::Seen { .. }))
        .expect("seen");
    assert!(
        seen < ev
            .iter()
            .position(|e| matches!(e, Event::Grant(_)))
            .expect("grant")
    );
    assert_eq!(refused(&send(&mut e, ALICE, &p)), Some(Refusal::Replayed));
    assert_eq!(
        refused(&send(&mut e, MALLORY, &p)),
        Some(Refusal::Replayed),
        "a replay from anywhere"
    );
}

#[test]
fn the_allow_ip_must_be_the_source_unless_the_door_permits_another() {
    let mut e = engine(vec![door("ssh", "K", |_| {})]);
    let p = format!("K|alice|{NOW}|{ALICE}|tcp/22|-");
    assert_eq!(
        refused(&send(&mut e, MALLORY, &p)),
        Some(Refusal::OtherAddress { allow: ip(ALICE) })
    );
    let mut e = engine(vec![door("cgn", "K", |s| s.allow_other_address = true)]);
    let p = format!("K|alice|{NOW}|203.0.113.7|tcp/22|-");
    assert_eq!(
        granted(&send(&mut e, ALICE, &p)).map(|g| g.1),
        Some(ip("203.0.113.7"))
    );
}

#[test]
fn doors_on_one_port_are_tried_in_order_by_source_and_key() {
    let mut e = engine(vec![
        door("lan", "L", |s| s.allowed = vec![(ip("10.200.1.0"), 24)]),
        door("any", "A", |_| {}),
    ]);
    assert_eq!(
        granted(&send(&mut e, ALICE, &format!("L|a|{NOW}|0.0.0.0|tcp/22|-"))).map(|g| g.0),
        Some("lan".into())
    );
    assert_eq!(
        granted(&send(&mut e, ALICE, &format!("A|a|{NOW}|0.0.0.0|tcp/22|-"))).map(|g| g.0),
        Some("any".into())
    );
    // mallory is not in lan's sources: lan's key does not even get tried
    assert_eq!(
        refused(&send(
            &mut e,
            MALLORY,
            &format!("L|m|{NOW}|0.0.0.0|tcp/22|-")
        )),
        Some(Refusal::NotAuthentic)
    );
    assert_eq!(
        refused(&send(&mut e, ALICE, &format!("X|a|{NOW}|0.0.0.0|tcp/22|-"))),
        Some(Refusal::NotAuthentic)
    );
}

#[test]
fn age_username_expiry_ports_and_timeouts() {
    let mut e = engine(vec![door("ssh", "K", |s| {
        s.require_username = Some("alice".into())
    })]);
    let r = refused(&send(
        &mut e,
        ALICE,
        &format!("K|alice|{}|0.0.0.0|tcp/22|-", NOW - 200),
    ))
    .expect("old");
    assert_eq!(
        r,
        Refusal::Age {
            off_by_secs: -200,
            max_age: 120
        }
    );
    assert_eq!(
        refused(&send(
            &mut e,
            ALICE,
            &format!("K|bob|{NOW}|0.0.0.0|tcp/22|-")
        )),
        Some(Refusal::Username("bob".into()))
    );
    assert_eq!(
        refused(&send(
            &mut e,
            ALICE,
            &format!("K|alice|{}|0.0.0.0|tcp/23|-", NOW + 1)
        )),
        Some(Refusal::Restricted(Service::tcp(23)))
    );
    assert_eq!(
        refused(&send(
            &mut e,
            ALICE,
            &format!("K|alice|{}|0.0.0.0|tcp/80|-", NOW + 2)
        )),
        Some(Refusal::NotOpened(Service::tcp(80)))
    );
    assert_eq!(
        refused(&send(
            &mut e,
            ALICE,
            &format!("K|alice|{}|0.0.0.0|NAT|-", NOW + 3)
        )),
        Some(Refusal::Unsupported(
            "NAT access messages are not supported yet".into()
        ))
    );
    let g = granted(&send(
        &mut e,
        ALICE,
        &format!("K|alice|{}|0.0.0.0|tcp/22,udp/53|9999", NOW + 4),
    ))
    .expect("granted");
    assert_eq!(
        g.3,
        Duration::from_secs(300),
        "a client timeout is capped by max_timeout"
    );
    let mut e = engine(vec![door("old", "K", |s| s.expire = Some(NOW - 1))]);
    assert_eq!(
        refused(&send(&mut e, ALICE, &format!("K|a|{NOW}|0.0.0.0|tcp/22|-"))),
        Some(Refusal::Expired)
    );
}

#[test]
fn the_replay_memory_survives_a_restart_through_add_seen() {
    let mut e = engine(vec![door("ssh", "K", |_| {})]);
    let p = format!("K|alice|{NOW}|0.0.0.0|tcp/22|-");
    let ev = send(&mut e, ALICE, &p);
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
    assert_eq!(until, NOW + 120);
    let mut restarted = engine(vec![door("ssh", "K", |_| {})]);
    restarted.add_seen(digest, until);
    assert_eq!(
        refused(&send(&mut restarted, ALICE, &p)),
        Some(Refusal::Replayed)
    );
}

/// A decoder that counts its calls (the expensive part a pre-check and a rate limit guard).
fn counted(key: &'static str, calls: Arc<AtomicUsize>) -> SpaDecode {
    let inner = decoder(key);
    Arc::new(move |payload: &[u8], wall: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        inner(payload, wall)
    })
}

#[test]
fn a_failed_precheck_never_reaches_the_decoder() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut e = engine(vec![door("ssh", "K", |spa| {
        spa.decode = counted("K", c);
        spa.precheck = Some(Arc::new(|p: &[u8]| p.starts_with(b"K|")));
    })]);
    let ev = send(&mut e, MALLORY, &format!("X|alice|{NOW}|0.0.0.0|tcp/22|-"));
    assert_eq!(refused(&ev), Some(Refusal::NotAuthentic));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "garbage costs no decode");
    let ev = send(&mut e, ALICE, &format!("K|alice|{NOW}|0.0.0.0|tcp/22|-"));
    assert!(granted(&ev).is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn expensive_checks_are_rate_limited_per_source() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut e = engine(vec![door("ssh", "K", |spa| {
        spa.decode = counted("K", c);
        spa.rate_limit = Some(RateLimit {
            burst: 3,
            per_sec: 1,
        });
    })]);
    let t0 = Instant::now();
    // authentic-looking to the pre-check (there is none), but not for this key
    let junk = "K|too|few|fields";
    for _ in 0..3 {
        let ev = send_at(&mut e, t0, Proto::Udp, MALLORY, junk);
        assert_eq!(refused(&ev), Some(Refusal::NotAuthentic));
    }
    for _ in 0..5 {
        let ev = send_at(&mut e, t0, Proto::Udp, MALLORY, junk);
        assert_eq!(refused(&ev), Some(Refusal::RateLimited));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the burst, then nothing");
    // another source has its own bucket
    let ok = format!("K|alice|{NOW}|0.0.0.0|tcp/22|-");
    assert!(granted(&send_at(&mut e, t0, Proto::Udp, ALICE, &ok)).is_some());
    // one token back after a second
    let t1 = t0 + Duration::from_millis(1000);
    let ev = send_at(&mut e, t1, Proto::Udp, MALLORY, junk);
    assert_eq!(refused(&ev), Some(Refusal::NotAuthentic));
    let ev = send_at(&mut e, t1, Proto::Udp, MALLORY, junk);
    assert_eq!(refused(&ev), Some(Refusal::RateLimited));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[test]
fn the_request_identity_is_remembered_apart_from_its_bytes() {
    let mut e = engine(vec![door("ssh", "K", |_| {})]);
    let first = format!("K|alice|{NOW}|0.0.0.0|tcp/22|-|nonce-1");
    let ev = send(&mut e, ALICE, &first);
    assert!(granted(&ev).is_some());
    let seen = ev
        .iter()
        .filter(|e| matches!(e, Event::Seen { .. }))
        .count();
    assert_eq!(seen, 2, "the raw digest and the request's identity");
    // other bytes (another timeout field), same identity: a replay
    let again = format!("K|alice|{NOW}|0.0.0.0|tcp/22|5|nonce-1");
    assert_eq!(
        refused(&send(&mut e, ALICE, &again)),
        Some(Refusal::Replayed)
    );
    let fresh = format!("K|alice|{NOW}|0.0.0.0|tcp/22|5|nonce-2");
    assert!(granted(&send(&mut e, ALICE, &fresh)).is_some());
}

#[test]
fn a_refusal_from_the_decoder_is_reported_as_it_is() {
    let mut e = engine(vec![door("ssh", "K", |_| {})]);
    let ev = send(&mut e, ALICE, &format!("K|revoked|{NOW}|0.0.0.0|tcp/22|-"));
    assert_eq!(refused(&ev), Some(Refusal::UnknownKey));
    assert!(granted(&ev).is_none());
}

#[test]
fn a_syn_door_sees_only_tcp_and_a_datagram_door_only_udp() {
    let mut e = engine(vec![door("syn", "K", |spa| spa.proto = Proto::Tcp)]);
    let p = format!("K|alice|{NOW}|0.0.0.0|tcp/22|-");
    let ev = send_at(&mut e, Instant::now(), Proto::Udp, ALICE, &p);
    assert!(
        ev.is_empty(),
        "UDP to a SYN door's port is not for it: {ev:?}"
    );
    let ev = send_at(&mut e, Instant::now(), Proto::Tcp, ALICE, &p);
    assert!(granted(&ev).is_some());
}

#[test]
fn a_counter_is_used_once_before_its_grant_and_never_again() {
    let mut e = engine(vec![door("kk", "K", |_| {})]);
    let knock = |id: &str, counter: u64| format!("K|alice|{NOW}|0.0.0.0|tcp/22|-|{id}|{counter}");
    let ev = send(&mut e, ALICE, &knock("a", 5));
    let used = ev
        .iter()
        .position(|e| matches!(e, Event::Used { tag: 5, .. }));
    let grant = ev.iter().position(|e| matches!(e, Event::Grant(_)));
    assert!(
        matches!((used, grant), (Some(u), Some(g)) if u < g),
        "used before the grant: {ev:?}"
    );
    // the same counter again, from another address and in other bytes: a replay
    let ev = send(&mut e, MALLORY, &knock("b", 5));
    assert_eq!(granted(&ev), None);
    assert_eq!(refused(&ev), Some(Refusal::Replayed));
    // an older one too; a newer one opens
    assert_eq!(
        refused(&send(&mut e, ALICE, &knock("c", 4))),
        Some(Refusal::Replayed)
    );
    let ev = send(&mut e, ALICE, &knock("d", 9));
    assert!(ev.iter().any(|e| matches!(e, Event::Used { tag: 9, .. })));
    assert!(granted(&ev).is_some());
    // a counter that authenticated is used up even when the door refuses what it asks for
    let ev = send(
        &mut e,
        ALICE,
        &format!("K|alice|{NOW}|0.0.0.0|tcp/23|-|e|10"),
    );
    assert!(ev.iter().any(|e| matches!(e, Event::Used { tag: 10, .. })));
    assert_eq!(granted(&ev), None);
    assert_eq!(
        refused(&send(&mut e, ALICE, &knock("f", 10))),
        Some(Refusal::Replayed)
    );
}
