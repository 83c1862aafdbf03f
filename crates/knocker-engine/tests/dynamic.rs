//! Doors whose sequence changes: one-time lines, HOTP counters and TOTP time steps. Each tag
//! opens once, also across a restart (the caller passes the last used tag back).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use knocker_engine::{
    Clock, Derive, DoorSpec, DoorsError, Engine, EngineConfig, Event, Kind, Knock, Proto, Service,
    TcpFlags,
};

const ALICE: &str = "10.200.1.2";
const MALLORY: &str = "10.200.2.2";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn door(kind: Kind) -> DoorSpec {
    DoorSpec {
        name: "d".into(),
        sequence: Vec::new(),
        window: Duration::from_secs(10),
        tcp_flags: None,
        open: vec![Service::tcp(22)],
        open_for: Duration::from_secs(30),
        kind,
        target: None,
    }
}

fn engine(kind: Kind) -> Engine {
    Engine::new(EngineConfig {
        doors: vec![door(kind)],
        max_tracked: 1000,
    })
    .expect("valid door")
}

fn knock_all(e: &mut Engine, at: Instant, src: &str, seq: &[Service]) -> Vec<Event> {
    for s in seq {
        e.handle(
            at,
            &Knock {
                src: ip(src),
                dst: ip("10.200.1.1"),
                proto: s.proto,
                src_port: 40000,
                dst_port: s.port,
                tcp_flags: TcpFlags::SYN,
            },
        );
    }
    std::iter::from_fn(|| e.poll_event())
        .filter(|ev| !matches!(ev, Event::Progress { .. } | Event::Reset { .. }))
        .collect()
}

fn seq(ports: &[u16]) -> Vec<Service> {
    ports.iter().map(|p| Service::tcp(*p)).collect()
}

/// A stand-in derivation: distinct, non-monotonic, different for every tag.
fn derive() -> Derive {
    Arc::new(|t: u64| {
        let b = 20000 + (t % 1000) as u16 * 10;
        seq(&[b + 1, b + 5, b + 3])
    })
}

fn granted(events: &[Event], who: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Grant(g) if g.to == ip(who)))
}

fn used(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Used { tag, .. } => Some(*tag),
            _ => None,
        })
        .collect()
}

#[test]
fn one_time_lines_open_once_each_in_order_then_the_door_closes() {
    let lines = vec![
        seq(&[7000, 9000, 8000]),
        seq(&[6000, 6200, 6100]),
        seq(&[5000, 5200, 5100]),
    ];
    let mut e = engine(Kind::OneTime {
        lines: lines.clone(),
        used: None,
    });
    let t = Instant::now();
    // line 1 before line 0: lines are used in order
    assert!(knock_all(&mut e, t, ALICE, &lines[1]).is_empty());
    let ev = knock_all(&mut e, t, ALICE, &lines[0]);
    assert_eq!(used(&ev), vec![0]);
    assert!(granted(&ev, ALICE));
    assert!(
        matches!(ev[0], Event::Used { .. }),
        "Used comes before the Grant: {ev:?}"
    );
    // a replay of line 0 opens nothing
    assert!(knock_all(&mut e, t, MALLORY, &lines[0]).is_empty());
    let ev = knock_all(&mut e, t, ALICE, &lines[1]);
    assert_eq!(used(&ev), vec![1]);
    let ev = knock_all(&mut e, t, ALICE, &lines[2]);
    assert_eq!(used(&ev), vec![2]);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Exhausted { .. })),
        "{ev:?}"
    );
    assert!(e.candidates(0).is_empty());
    for l in &lines {
        assert!(
            knock_all(&mut e, t, ALICE, l).is_empty(),
            "an exhausted door never opens"
        );
    }
}

#[test]
fn one_time_lines_used_before_a_restart_stay_used() {
    let lines = vec![seq(&[7000, 9000, 8000]), seq(&[6000, 6200, 6100])];
    let mut e = engine(Kind::OneTime {
        lines: lines.clone(),
        used: Some(0),
    });
    let t = Instant::now();
    assert!(knock_all(&mut e, t, ALICE, &lines[0]).is_empty());
    assert_eq!(used(&knock_all(&mut e, t, ALICE, &lines[1])), vec![1]);
}

#[test]
fn hotp_accepts_counters_ahead_once_and_never_an_older_one() {
    let d = derive();
    let mut e = engine(Kind::Rotating {
        derive: d.clone(),
        clock: Clock::Hotp { lookahead: 3 },
        used: None,
    });
    let t = Instant::now();
    assert_eq!(
        e.candidates(0).iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // the client skipped counter 0 (a knock that never arrived): 1 still opens
    let ev = knock_all(&mut e, t, ALICE, &d(1));
    assert_eq!(used(&ev), vec![1]);
    assert!(granted(&ev, ALICE));
    assert!(
        knock_all(&mut e, t, MALLORY, &d(1)).is_empty(),
        "replayed counter"
    );
    assert!(
        knock_all(&mut e, t, ALICE, &d(0)).is_empty(),
        "older counter"
    );
    assert!(
        knock_all(&mut e, t, ALICE, &d(5)).is_empty(),
        "beyond the lookahead"
    );
    assert_eq!(used(&knock_all(&mut e, t, ALICE, &d(4))), vec![4]);
    // after a restart with the persisted counter, nothing at or below it opens
    let mut e = engine(Kind::Rotating {
        derive: d.clone(),
        clock: Clock::Hotp { lookahead: 3 },
        used: Some(4),
    });
    for c in 0..=4 {
        assert!(
            knock_all(&mut e, t, ALICE, &d(c)).is_empty(),
            "counter {c} after restart"
        );
    }
    assert_eq!(used(&knock_all(&mut e, t, ALICE, &d(5))), vec![5]);
}

#[test]
fn totp_accepts_the_steps_within_skew_once() {
    let d = derive();
    let kind = |used| Kind::Rotating {
        derive: d.clone(),
        clock: Clock::Totp {
            period: 30,
            skew: 1,
        },
        used,
    };
    let mut e = engine(kind(None));
    let t = Instant::now();
    let now = 1_795_260_000u64; // step 59_842_000
    let step = now / 30;
    e.set_wall_clock(now);
    assert_eq!(
        e.candidates(0).iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![step - 1, step, step + 1]
    );
    assert!(
        knock_all(&mut e, t, ALICE, &d(step - 2)).is_empty(),
        "outside the skew"
    );
    let ev = knock_all(&mut e, t, ALICE, &d(step));
    assert_eq!(used(&ev), vec![step]);
    assert!(granted(&ev, ALICE));
    assert!(
        knock_all(&mut e, t, MALLORY, &d(step)).is_empty(),
        "replayed within the same step"
    );
    assert!(
        knock_all(&mut e, t, MALLORY, &d(step - 1)).is_empty(),
        "an older step after a newer was used"
    );
    // a client whose clock runs one step ahead
    assert_eq!(
        used(&knock_all(&mut e, t, ALICE, &d(step + 1))),
        vec![step + 1]
    );
    // time moves on: the window follows it
    e.set_wall_clock(now + 60);
    assert_eq!(
        e.candidates(0).iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![step + 2, step + 3]
    );
    // a restart with the persisted step refuses the recorded knock
    let mut e = engine(kind(Some(step)));
    e.set_wall_clock(now);
    assert!(knock_all(&mut e, t, MALLORY, &d(step)).is_empty());
    assert_eq!(
        used(&knock_all(&mut e, t, ALICE, &d(step + 1))),
        vec![step + 1]
    );
}

#[test]
fn totp_progress_survives_a_step_change_while_its_step_is_still_a_candidate() {
    let d = derive();
    let mut e = engine(Kind::Rotating {
        derive: d.clone(),
        clock: Clock::Totp {
            period: 30,
            skew: 1,
        },
        used: None,
    });
    let t = Instant::now();
    let now = 1_795_260_029u64; // last second of a step
    let step = now / 30;
    e.set_wall_clock(now);
    let s = d(step);
    assert!(knock_all(&mut e, t, ALICE, &s[..2]).is_empty());
    e.set_wall_clock(now + 1); // next step: `step` is still within the skew
    let ev = knock_all(&mut e, t + Duration::from_secs(1), ALICE, &s[2..]);
    assert_eq!(used(&ev), vec![step], "{ev:?}");
}

#[test]
fn racing_sources_cannot_both_use_one_tag() {
    let d = derive();
    let t = Instant::now();
    let s = d(0);
    // mallory replays alice's knocks as they pass, interleaved with hers
    let mut e2 = engine(Kind::Rotating {
        derive: d.clone(),
        clock: Clock::Hotp { lookahead: 2 },
        used: None,
    });
    let mut all = Vec::new();
    for k in &s {
        all.extend(knock_all(&mut e2, t, ALICE, std::slice::from_ref(k)));
        all.extend(knock_all(&mut e2, t, MALLORY, std::slice::from_ref(k)));
    }
    assert_eq!(used(&all), vec![0], "one use of counter 0: {all:?}");
    assert!(granted(&all, ALICE));
    assert!(
        !granted(&all, MALLORY),
        "the second completion of a used tag opens nothing"
    );
}

#[test]
fn compat_mode_accepts_what_knockd_accepts_with_warnings() {
    let mut monotonic = door(Kind::Sequence);
    monotonic.sequence = seq(&[7000, 8000, 9000]);
    let config = EngineConfig {
        doors: vec![monotonic.clone()],
        max_tracked: 10,
    };
    assert!(matches!(
        Engine::new(config.clone()),
        Err(DoorsError::Door { .. })
    ));
    let (mut e, warnings) = Engine::new_compat(config).expect("knockd accepts it");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].to_string().contains("ascending"));
    let ev = knock_all(&mut e, Instant::now(), ALICE, &monotonic.sequence);
    assert!(granted(&ev, ALICE));
    // knockd's two identical doors: both open, with a warning
    let mut other = monotonic.clone();
    other.name = "e".into();
    let (mut e, warnings) = Engine::new_compat(EngineConfig {
        doors: vec![monotonic.clone(), other],
        max_tracked: 10,
    })
    .expect("compat");
    assert!(
        warnings
            .iter()
            .any(|w| matches!(w, DoorsError::Identical(..))),
        "{warnings:?}"
    );
    let ev = knock_all(&mut e, Instant::now(), ALICE, &monotonic.sequence);
    assert_eq!(
        ev.iter().filter(|e| matches!(e, Event::Grant(_))).count(),
        2
    );
    // an empty sequence is an error in both modes
    let mut empty = door(Kind::Sequence);
    empty.sequence.clear();
    assert!(Engine::new_compat(EngineConfig {
        doors: vec![empty],
        max_tracked: 10
    })
    .is_err());
}

#[test]
fn udp_and_tcp_candidates_are_distinct_services() {
    let d: Derive = Arc::new(|t: u64| {
        let b = 30000 + t as u16 * 10;
        vec![
            Service::udp(b + 2),
            Service::tcp(b + 1),
            Service::udp(b + 3),
        ]
    });
    let mut e = engine(Kind::Rotating {
        derive: d.clone(),
        clock: Clock::Hotp { lookahead: 1 },
        used: None,
    });
    let t = Instant::now();
    let wrong: Vec<Service> = d(0)
        .iter()
        .map(|s| Service::new(Proto::Tcp, s.port))
        .collect();
    assert!(knock_all(&mut e, t, ALICE, &wrong).is_empty());
    assert_eq!(used(&knock_all(&mut e, t, ALICE, &d(0))), vec![0]);
}

#[test]
fn a_target_door_counts_only_knocks_to_its_address() {
    let mut d = door(Kind::Sequence);
    d.sequence = seq(&[7000, 9000, 8000]);
    d.target = Some(ip("10.200.9.9"));
    let mut e = Engine::new(EngineConfig {
        doors: vec![d.clone()],
        max_tracked: 10,
    })
    .expect("valid");
    // knock_all sends to 10.200.1.1: not the target
    assert!(knock_all(&mut e, Instant::now(), ALICE, &d.sequence).is_empty());
    for s in &d.sequence {
        e.handle(
            Instant::now(),
            &Knock {
                src: ip(ALICE),
                dst: ip("10.200.9.9"),
                proto: s.proto,
                src_port: 1,
                dst_port: s.port,
                tcp_flags: TcpFlags::SYN,
            },
        );
    }
    assert!(std::iter::from_fn(|| e.poll_event()).any(|ev| matches!(ev, Event::Grant(_))));
}

#[test]
fn a_door_may_open_nothing_in_the_firewall_and_only_trigger_commands() {
    let mut d = door(Kind::Sequence);
    d.sequence = seq(&[7000, 9000, 8000]);
    d.open.clear();
    let mut e = Engine::new(EngineConfig {
        doors: vec![d.clone()],
        max_tracked: 10,
    })
    .expect("valid");
    let ev = knock_all(&mut e, Instant::now(), ALICE, &d.sequence);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Grant(g) if g.open.is_empty())),
        "{ev:?}"
    );
}

#[test]
fn a_legitimate_knock_leaves_no_failure_on_the_other_candidates() {
    // counters 0 and 1 share their first two knocks: alice's knock of counter 0 also gets two
    // knocks into counter 1, which then runs out; mallory's same two knocks are a failure
    let derive: Derive = Arc::new(|t: u64| match t {
        0 => seq(&[20001, 20005, 20003]),
        1 => seq(&[20001, 20005, 20009]),
        t => seq(&[
            30001 + t as u16 * 10,
            30005 + t as u16 * 10,
            30003 + t as u16 * 10,
        ]),
    });
    let mut e = engine(Kind::Rotating {
        derive,
        clock: Clock::Hotp { lookahead: 2 },
        used: None,
    });
    let t0 = Instant::now();
    let failures = |events: &[Event]| {
        events
            .iter()
            .filter(|ev| matches!(ev, Event::Failed { .. }))
            .count()
    };
    let events = knock_all(&mut e, t0, ALICE, &seq(&[20001, 20005, 20003]));
    assert!(granted(&events, ALICE));
    let events = knock_all(&mut e, t0, MALLORY, &seq(&[20001, 20005]));
    assert_eq!(failures(&events), 0);
    e.handle_timeout(t0 + Duration::from_secs(10));
    let events: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Failed {
            door: "d".into(),
            src: ip(MALLORY),
            reason: knocker_engine::Failure::Window {
                matched: 2,
                of: 3,
                window: Duration::from_secs(10)
            }
        }],
        "mallory's attempt failed; alice's partial knock on counter 1 was no attempt"
    );
}
