//! Properties of the engine over generated doors and knocks: port sweeps never open a valid door,
//! the right sequence always does (also duplicated, also under noise from other sources), the
//! engine agrees with a reference model of the documented semantics, and arbitrary input never
//! panics it or grows it past its bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use knocker_engine::{
    validate_doors, DoorSpec, Engine, EngineConfig, Event, Failure, Grant, Knock, Proto, Service,
    TcpFlags, DEFAULT_MAX_TRACKED,
};
use proptest::prelude::*;

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const ALICE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
/// Knock ports of generated doors lie in 1..=SMALL_PORTS, so doors share ports and sequences
/// repeat ports often; opened services lie above it so they never collide with a knock port.
const SMALL_PORTS: u16 = 40;

fn service(udp: bool, port: u16) -> Service {
    if udp {
        Service::udp(port)
    } else {
        Service::tcp(port)
    }
}

fn knock_flags(src: IpAddr, s: Service, tcp_flags: TcpFlags) -> Knock {
    Knock {
        src,
        dst: SERVER,
        proto: s.proto,
        src_port: 40_000,
        dst_port: s.port,
        tcp_flags,
    }
}

/// A knock as the `knock` client sends it (a bare SYN for TCP), which passes every filter that
/// the generated doors use.
fn knock(src: IpAddr, s: Service) -> Knock {
    let flags = match s.proto {
        Proto::Tcp => TcpFlags::SYN,
        Proto::Udp | Proto::Icmp => TcpFlags::default(),
    };
    knock_flags(src, s, flags)
}

fn drain(engine: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

fn grants(events: &[Event]) -> Vec<&Grant> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Grant(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// Events that concern `src`.
fn events_of(events: &[Event], who: IpAddr) -> Vec<Event> {
    events
        .iter()
        .filter(|e| match e {
            Event::Grant(g) => g.to == who,
            Event::Progress { src, .. } | Event::Reset { src, .. } | Event::Failed { src, .. } => {
                *src == who
            }
            Event::TableFull { .. }
            | Event::Used { .. }
            | Event::Exhausted { .. }
            | Event::Seen { .. }
            | Event::Refused { .. } => false,
        })
        .cloned()
        .collect()
}

fn engine(doors: &[DoorSpec], max_tracked: usize) -> Engine {
    Engine::new(EngineConfig {
        doors: doors.to_vec(),
        max_tracked,
    })
    .expect("generated doors are valid together")
}

fn service_in(max_port: u16) -> impl Strategy<Value = Service> {
    (any::<bool>(), 1..=max_port).prop_map(|(udp, port)| service(udp, port))
}

/// Any door that [`DoorSpec::validate`] accepts, with 3..=8 knocks on ports up to `max_port`.
fn door_with_ports(max_port: u16) -> impl Strategy<Value = DoorSpec> {
    (
        prop::collection::vec(service_in(max_port), 3..=8),
        prop::option::of(prop_oneof![Just("syn,!ack"), Just("syn"), Just("!ack")]),
        1u64..=20,
    )
        .prop_map(|(sequence, flags, window)| DoorSpec {
            name: String::new(),
            sequence,
            window: Duration::from_secs(window),
            tcp_flags: flags.map(|f| f.parse().expect("valid filter")),
            open: vec![Service::tcp(u16::MAX), Service::udp(u16::MAX)],
            open_for: Duration::from_secs(30),
            kind: knocker_engine::Kind::Sequence,
            target: None,
        })
        .prop_filter("door validates", |d| d.validate().is_ok())
}

/// One to three valid doors that are also valid together.
fn doors_with_ports(max_port: u16) -> impl Strategy<Value = Vec<DoorSpec>> {
    prop::collection::vec(door_with_ports(max_port), 1..=3)
        .prop_map(|mut doors| {
            for (i, d) in doors.iter_mut().enumerate() {
                d.name = format!("door{i}");
            }
            doors
        })
        .prop_filter("doors validate together", |d| validate_doors(d).is_ok())
}

fn doors() -> impl Strategy<Value = Vec<DoorSpec>> {
    doors_with_ports(SMALL_PORTS)
}

/// The sweeps a scanner makes over `ports`: tcp alone, udp alone, and each port in tcp then udp,
/// each both upward and downward.
fn sweeps(ports: std::ops::RangeInclusive<u16>) -> Vec<(&'static str, Vec<Service>)> {
    let up: Vec<u16> = ports.collect();
    let down: Vec<u16> = up.iter().rev().copied().collect();
    let one = |ports: &[u16], udp: bool| ports.iter().map(|p| service(udp, *p)).collect();
    let both = |ports: &[u16]| {
        ports
            .iter()
            .flat_map(|p| [Service::tcp(*p), Service::udp(*p)])
            .collect()
    };
    vec![
        ("tcp upward", one(&up, false)),
        ("tcp downward", one(&down, false)),
        ("udp upward", one(&up, true)),
        ("udp downward", one(&down, true)),
        ("tcp+udp upward", both(&up)),
        ("tcp+udp downward", both(&down)),
    ]
}

/// Sweeps from a fresh engine, all inside the shortest window (1 µs per knock), and returns the
/// grants it caused.
fn sweep_grants(doors: &[DoorSpec], sweep: &[Service]) -> Vec<Grant> {
    let t0 = Instant::now();
    let mut e = engine(doors, DEFAULT_MAX_TRACKED);
    let mut opened = Vec::new();
    for (i, s) in sweep.iter().enumerate() {
        e.handle(t0 + Duration::from_micros(i as u64), &knock(ALICE, *s));
        while let Some(ev) = e.poll_event() {
            if let Event::Grant(g) = ev {
                opened.push(g);
            }
        }
    }
    opened
}

fn assert_sweeps_never_open(
    doors: &[DoorSpec],
    ports: std::ops::RangeInclusive<u16>,
) -> Result<(), TestCaseError> {
    for d in doors {
        for s in &d.sequence {
            prop_assert!(ports.contains(&s.port), "the sweep covers every knock port");
        }
    }
    for (name, sweep) in sweeps(ports) {
        let opened = sweep_grants(doors, &sweep);
        prop_assert!(opened.is_empty(), "a {} sweep opened {:?}", name, opened);
    }
    Ok(())
}

/// Knocks `sequence` from `src`, 1 ms apart, each knock `copies` times.
fn knock_sequence(e: &mut Engine, t0: Instant, src: IpAddr, sequence: &[Service], copies: usize) {
    let mut now = t0;
    for s in sequence {
        for _ in 0..copies {
            e.handle(now, &knock(src, *s));
            now += Duration::from_millis(1);
        }
    }
}

fn noise_src(n: u8) -> IpAddr {
    if n % 4 == 3 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }
}

/// One step of an arbitrary run: a knock `dt_ms` after the previous step, or a timer callback.
#[derive(Clone, Debug)]
enum Op {
    Knock {
        src: u8,
        service: Service,
        flags: u8,
        dt_ms: u64,
    },
    Timeout {
        dt_ms: u64,
    },
}

/// Arbitrary runs against `doors`: mostly knocks on the doors' own ports (so that sources
/// advance, reset, start over and open), from a handful of sources, with time steps that often
/// land exactly on a window's end.
fn ops(doors: &[DoorSpec]) -> impl Strategy<Value = Vec<Op>> {
    let door_services: Vec<Service> = doors.iter().flat_map(|d| d.sequence.clone()).collect();
    let service = prop_oneof![
        6 => prop::sample::select(door_services),
        2 => service_in(SMALL_PORTS + 5),
        1 => (any::<bool>(), any::<u16>()).prop_map(|(udp, port)| service(udp, port)),
    ];
    // Flags mostly a plain SYN (so that TCP knocks count), sometimes anything at all.
    let flags = prop_oneof![4 => Just(TcpFlags::SYN.0), 1 => any::<u8>()];
    let dt = prop_oneof![
        2 => prop_oneof![Just(0u64), Just(250), Just(500)],
        2 => 0u64..500,
        1 => (0u64..=20).prop_map(|s| s * 1000),
        1 => 0u64..30_000,
    ];
    let op = prop_oneof![
        10 => (0u8..4, service, flags, dt.clone()).prop_map(|(src, service, flags, dt_ms)| {
            Op::Knock { src, service, flags, dt_ms }
        }),
        1 => dt.prop_map(|dt_ms| Op::Timeout { dt_ms }),
    ];
    prop::collection::vec(op, 0..300)
}

fn doors_and_ops() -> impl Strategy<Value = (Vec<DoorSpec>, Vec<Op>)> {
    doors().prop_flat_map(|doors| {
        let ops = ops(&doors);
        (Just(doors), ops)
    })
}

/// The semantics documented at the top of `sequence.rs` and on [`Event`], written from the
/// documentation rather than from the code, for a table that never fills.
#[derive(Default)]
struct Model {
    progress: HashMap<(usize, IpAddr), Partial>,
    /// Orders partial knocks by when they (re)started: the engine forgets expired ones oldest
    /// first, stopping at the first one that has not expired.
    started: u64,
}

#[derive(Clone, Copy)]
struct Partial {
    matched: usize,
    deadline: Instant,
    started: u64,
    /// Flags of an ignored knock on the expected next port since the last match.
    bad_flags: Option<TcpFlags>,
    /// The source opened a door since: not an attempt of its own.
    quiet: bool,
}

/// The failure report for a partial knock that ends, `wrong` the port that ended it, by the
/// rule in `sequence.rs`.
fn model_failed(
    door: &DoorSpec,
    src: IpAddr,
    p: &Partial,
    wrong: Option<Service>,
) -> Option<Event> {
    let of = door.sequence.len();
    let reason = if p.quiet {
        return None;
    } else if let Some(got) = p.bad_flags {
        Failure::Flags {
            at: p.matched + 1,
            of,
            got,
            want: door.tcp_flags.unwrap_or_default(),
        }
    } else if let Some(got) = wrong {
        Failure::WrongPort {
            at: p.matched + 1,
            of,
            got,
        }
    } else if p.matched >= 2 {
        Failure::Window {
            matched: p.matched,
            of,
            window: door.window,
        }
    } else {
        return None;
    };
    Some(Event::Failed {
        door: door.name.as_str().into(),
        src,
        reason,
    })
}

impl Model {
    fn handle(&mut self, doors: &[DoorSpec], now: Instant, k: &Knock) -> Vec<Event> {
        let s = k.service();
        let mut events = Vec::new();
        let mut failures = Vec::new();
        let mut granted = false;
        for (id, door) in doors.iter().enumerate() {
            if !door.sequence.contains(&s) {
                continue; // not a port of this door: never touches its progress
            }
            let key = (id, k.src);
            // 1. a TCP knock that fails the flag filter neither advances nor resets; on the
            // expected next port it is remembered as the reason, should the attempt fail
            if let (Proto::Tcp, Some(filter)) = (k.proto, door.tcp_flags) {
                if !filter.matches(k.tcp_flags) {
                    if let Some(p) = self.progress.get_mut(&key) {
                        if now < p.deadline && door.sequence[p.matched] == s {
                            p.bad_flags.get_or_insert(k.tcp_flags);
                        }
                    }
                    continue;
                }
            }
            // 2. progress older than the window is forgotten first (a failed attempt)
            let (matched, deadline) = match self.progress.get(&key).copied() {
                Some(p) if now < p.deadline => (p.matched, Some(p.deadline)),
                Some(p) => {
                    self.progress.remove(&key);
                    failures.extend(model_failed(door, k.src, &p, None));
                    (0, None)
                }
                None => (0, None),
            };
            let seq = &door.sequence;
            let progress = |matched| Event::Progress {
                door: door.name.as_str().into(),
                src: k.src,
                matched,
                of: seq.len(),
            };
            if seq[matched] == s {
                // 3. the expected knock advances, the last one opens
                if matched + 1 == seq.len() {
                    self.progress.remove(&key);
                    granted = true;
                    events.push(Event::Grant(Grant {
                        door: id,
                        door_name: door.name.clone(),
                        to: k.src,
                        open: door.open.clone(),
                        duration: door.open_for,
                        client: None,
                        spa: None,
                    }));
                } else if let (Some(p), true) = (self.progress.get_mut(&key), matched > 0) {
                    p.matched = matched + 1;
                    p.bad_flags = None;
                    events.push(progress(matched + 1));
                } else {
                    let deadline = deadline.unwrap_or(now + door.window);
                    self.start(key, deadline);
                    events.push(progress(1));
                }
            } else if matched > 0 && seq[matched - 1] == s {
                // 4. a repeat of the knock just matched is ignored
            } else if seq[0] == s {
                // 5. the first knock starts over, with a new window
                self.start(key, now + door.window);
                events.push(progress(1));
            } else {
                // 6. any other port of the door resets (reported when there was progress)
                if let Some(p) = self.progress.remove(&key) {
                    if matched > 0 {
                        events.push(Event::Reset {
                            door: door.name.as_str().into(),
                            src: k.src,
                        });
                        failures.extend(model_failed(door, k.src, &p, Some(s)));
                    }
                }
            }
        }
        if granted {
            // the other partial knocks of a source that opened a door are not attempts
            for ((_, src), p) in self.progress.iter_mut() {
                if *src == k.src {
                    p.quiet = true;
                }
            }
        } else {
            events.extend(failures);
        }
        events
    }

    /// A first knock: one matched, started now (the newest).
    fn start(&mut self, key: (usize, IpAddr), deadline: Instant) {
        self.started += 1;
        let p = Partial {
            matched: 1,
            deadline,
            started: self.started,
            bad_flags: None,
            quiet: false,
        };
        self.progress.insert(key, p);
    }

    /// The timer: expired partial knocks go, oldest first, up to the first that has not expired.
    fn handle_timeout(&mut self, doors: &[DoorSpec], now: Instant) -> Vec<Event> {
        let mut order: Vec<((usize, IpAddr), Partial)> =
            self.progress.iter().map(|(k, p)| (*k, *p)).collect();
        order.sort_by_key(|(_, p)| p.started);
        let mut events = Vec::new();
        for ((id, src), p) in order {
            if p.deadline > now {
                break;
            }
            self.progress.remove(&(id, src));
            events.extend(model_failed(&doors[id], src, &p, None));
        }
        events
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No sweep over the ports the doors use, in either direction, by tcp, udp or both, opens
    /// a valid door: that is what the ordering rule in `DoorSpec::validate` promises.
    #[test]
    fn sweeps_never_open_a_valid_door(doors in doors()) {
        assert_sweeps_never_open(&doors, 1..=SMALL_PORTS + 24)?;
    }

    /// The door's exact sequence from a fresh source always opens that door and no other,
    /// exactly once, to that source, also when every knock arrives several times.
    #[test]
    fn the_right_sequence_always_opens(doors in doors(), copies in 1usize..=3) {
        let t0 = Instant::now();
        for (id, d) in doors.iter().enumerate() {
            let mut e = engine(&doors, DEFAULT_MAX_TRACKED);
            knock_sequence(&mut e, t0, ALICE, &d.sequence, copies);
            let events = drain(&mut e);
            // Exactly this door opens: validate_doors refuses doors whose sequences overlap, and
            // a duplicated knock changes nothing for any door.
            let mine = grants(&events);
            prop_assert_eq!(mine.len(), 1, "door {} knocked {} times each: {:?}", id, copies, events);
            prop_assert_eq!(mine[0].door, id);
            prop_assert_eq!(mine[0].to, ALICE);
            prop_assert_eq!(&mine[0].door_name, &d.name);
            prop_assert_eq!(&mine[0].open, &d.open);
            prop_assert_eq!(mine[0].duration, d.open_for);
            let failed = events.iter().any(|e| matches!(e, Event::Failed { door, .. } if **door == *d.name));
            prop_assert!(!failed, "a legitimate knock is no failed attempt: {:?}", events);
            // its other partial knocks end quietly
            e.handle_timeout(t0 + Duration::from_secs(3600));
            prop_assert_eq!(drain(&mut e), vec![]);
        }
    }

    /// Knocks from other sources, on any port with any flags, interleaved anywhere, change
    /// nothing that the engine says about the legitimate source.
    #[test]
    fn noise_from_other_sources_never_changes_the_outcome(
        doors in doors(),
        door_pick in any::<prop::sample::Index>(),
        copies in 1usize..=2,
        noise in prop::collection::vec(
            (any::<prop::sample::Index>(), 0u8..64, service_in(SMALL_PORTS + 5), any::<u8>()),
            0..300,
        ),
    ) {
        let id = door_pick.index(doors.len());
        let legit: Vec<Service> = doors[id]
            .sequence
            .iter()
            .flat_map(|s| std::iter::repeat_n(*s, copies))
            .collect();
        let t0 = Instant::now();
        let at = |i: usize| t0 + Duration::from_millis(i as u64);

        let mut quiet = engine(&doors, DEFAULT_MAX_TRACKED);
        for (i, s) in legit.iter().enumerate() {
            quiet.handle(at(i), &knock(ALICE, *s));
        }
        let expected = events_of(&drain(&mut quiet), ALICE);

        let mut slots: Vec<Vec<Knock>> = vec![Vec::new(); legit.len() + 1];
        for (slot, src, s, flags) in &noise {
            slots[slot.index(legit.len() + 1)].push(knock_flags(noise_src(*src), *s, TcpFlags(*flags)));
        }
        let mut noisy = engine(&doors, DEFAULT_MAX_TRACKED);
        for (i, slot) in slots.iter().enumerate() {
            for k in slot {
                noisy.handle(at(i), k);
            }
            if let Some(s) = legit.get(i) {
                noisy.handle(at(i), &knock(ALICE, *s));
            }
        }
        let got = events_of(&drain(&mut noisy), ALICE);
        prop_assert_eq!(&got, &expected);
        prop_assert!(
            grants(&got).iter().any(|g| g.door == id),
            "the legitimate knock opened its door: {:?}", got
        );
    }

    /// The engine reports exactly what the documented semantics say (every progress, reset and
    /// grant, in order, and never a full table) on arbitrary knocks and timer callbacks.
    #[test]
    fn the_engine_agrees_with_the_documented_semantics((doors, ops) in doors_and_ops()) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut e = engine(&doors, 10_000);
        let mut model = Model::default();
        for op in &ops {
            match *op {
                Op::Knock { src, service, flags, dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    let k = knock_flags(noise_src(src), service, TcpFlags(flags));
                    e.handle(now, &k);
                    let expected = model.handle(&doors, now, &k);
                    prop_assert_eq!(drain(&mut e), expected, "after {:?} at {:?}", k, now - t0);
                }
                Op::Timeout { dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    e.handle_timeout(now);
                    let expected = model.handle_timeout(&doors, now);
                    prop_assert_eq!(drain(&mut e), expected, "timeout at {:?}", now - t0);
                }
            }
        }
    }

    /// Arbitrary knocks, flags, timing and table sizes never panic the engine, never hold more
    /// than `max_tracked` partial knocks, and every grant is one that a door describes.
    #[test]
    fn arbitrary_input_never_panics_or_exceeds_the_bound(
        (doors, ops) in doors_and_ops(),
        max_tracked in 0usize..=8,
    ) {
        let bound = max_tracked.max(1);
        let t0 = Instant::now();
        let mut now = t0;
        let mut e = engine(&doors, max_tracked);
        // TableFull is reported once per episode: again only after the table has drained
        // below half of `bound`.
        let mut armed = true;
        for op in &ops {
            match *op {
                Op::Knock { src, service, flags, dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    e.handle(now, &knock_flags(noise_src(src), service, TcpFlags(flags)));
                }
                Op::Timeout { dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    e.handle_timeout(now);
                    if let Some(deadline) = e.poll_timeout() {
                        prop_assert!(deadline > now, "handle_timeout left an expired head");
                    }
                }
            }
            prop_assert!(e.tracked() <= bound, "tracked {} > {}", e.tracked(), bound);
            for ev in drain(&mut e) {
                match ev {
                    Event::Grant(g) => {
                        let d = &doors[g.door];
                        prop_assert_eq!(&g.door_name, &d.name);
                        prop_assert_eq!(&g.open, &d.open);
                        prop_assert_eq!(g.duration, d.open_for);
                    }
                    Event::Progress { matched, of, .. } => {
                        prop_assert!(matched >= 1 && matched < of);
                    }
                    Event::TableFull { capacity } => {
                        prop_assert_eq!(capacity, bound);
                        prop_assert!(armed, "TableFull reported twice in one episode");
                        armed = false;
                    }
                    Event::Reset { .. } => {}
                    Event::Failed { reason, .. } => match reason {
                        Failure::WrongPort { at, of, .. } | Failure::Flags { at, of, .. } => {
                            prop_assert!(at >= 2 && at <= of, "{:?}", reason);
                        }
                        Failure::Window { matched, of, .. } => {
                            prop_assert!(matched >= 2 && matched < of, "{:?}", reason);
                        }
                    },
                    Event::Used { .. } | Event::Exhausted { .. } | Event::Seen { .. } | Event::Refused { .. } => {
                        prop_assert!(false, "a static door never uses or exhausts a sequence: {:?}", ev);
                    }
                }
            }
            if e.tracked() * 2 < bound {
                armed = true;
            }
        }
    }
}

proptest! {
    // Each case sweeps all 65535 ports six ways: a few cases, on doors anywhere in the port
    // range or crowded into a few ports.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn full_port_sweeps_never_open_a_valid_door(
        doors in prop_oneof![doors_with_ports(u16::MAX - 1), doors_with_ports(SMALL_PORTS)],
    ) {
        assert_sweeps_never_open(&doors, 1..=u16::MAX)?;
    }
}
