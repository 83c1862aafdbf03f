//! The engine: feeds knocks to doors, keeps bounded per-source progress, emits grants.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::encoded::{self, Assembly, Outcome};
use crate::refusal::{Refusal, MAX_SEEN};
use crate::sequence::{step, Clock, DoorSpec, Failure, Kind, SequenceError, Step};
use crate::table::{Epoch, Progress, Src, Table, Ticks};
use crate::types::{Grant, Knock, Service, ServiceMap};
use knocker_wire::encoded::Reassembly;

/// Default bound on tracked partial knocks: about 6 MiB at the ~60 bytes each measured in
/// BENCHMARKS.md.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;
/// The most candidate sequences a rotating door offers at once (skew or lookahead).
pub const MAX_CANDIDATES: u64 = 64;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub doors: Vec<DoorSpec>,
    /// Hard bound on (source, door) progress entries kept at once.
    pub max_tracked: usize,
}

/// What the engine decided; drained with [`Engine::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A door was completed: the gatekeeper should open.
    Grant(Grant),
    /// A one-time line, counter or time step was used and must never work again. Comes just
    /// before its [`Event::Grant`]; the caller must make it durable first and drop the grant if
    /// it cannot (fail closed).
    Used {
        door: Arc<str>,
        index: usize,
        tag: u64,
    },
    /// A one-time door has no sequence left: it is closed for good.
    Exhausted { door: Arc<str> },
    /// An encoded request was granted: its digest must be remembered until `until_unix` (also
    /// across restarts). Comes just before its [`Event::Grant`]; make it durable first.
    Seen {
        door: Arc<str>,
        index: usize,
        digest: [u8; 32],
        until_unix: u64,
    },
    /// A complete encoded message was not granted, and why.
    Refused {
        door: Arc<str>,
        src: IpAddr,
        reason: Refusal,
    },
    /// A knock advanced a source through a door (for verbose logs).
    Progress {
        door: Arc<str>,
        src: IpAddr,
        matched: usize,
        of: usize,
    },
    /// A source's progress through a door was reset by a wrong port of that door.
    Reset { door: Arc<str>, src: IpAddr },
    /// A source's attempt at a sequence door failed, and why: at most one per attempt, and only
    /// for what the rule in the sequence module calls an attempt (a lone stray knock is not).
    Failed {
        door: Arc<str>,
        src: IpAddr,
        reason: Failure,
    },
    /// The table is full: the oldest partial knocks are being dropped to make room. Emitted once
    /// when this starts, and again only after the table has drained below half.
    TableFull { capacity: usize },
}

/// Why a set of doors cannot be used together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoorsError {
    #[error("door {door:?}: {error}")]
    Door { door: String, error: SequenceError },
    #[error("doors {0:?} and {1:?} have the same sequence: a knock could not tell them apart")]
    Identical(String, String),
    #[error("knocking the sequence of door {0:?} also opens door {1:?} (its knocks appear in that order within it): change one of them")]
    Overlap(String, String),
    #[error("knock port {0} of door {1:?} is a service opened by door {2:?}: knock ports are always dropped, so it could never be used")]
    KnockIsService(Service, String, String),
    #[error("too many doors ({0}); at most 65535")]
    TooMany(usize),
}

/// A door as the engine runs it.
struct DoorState {
    spec: DoorSpec,
    name: Arc<str>,
    /// The last tag used (one-time line, counter, time step), if any.
    used: Option<u64>,
    /// The sequences that open the door now, with their tags.
    candidates: Vec<(u64, Vec<Service>)>,
    /// The time step the candidates of a TOTP door were computed for.
    step: Option<u64>,
}

impl DoorState {
    fn refresh(&mut self, wall: u64) {
        let (candidates, step) = candidates(&self.spec, self.used, wall);
        self.candidates = candidates;
        self.step = step;
    }
}

/// The candidate sequences of a door, and the TOTP step they belong to.
fn candidates(
    spec: &DoorSpec,
    used: Option<u64>,
    wall: u64,
) -> (Vec<(u64, Vec<Service>)>, Option<u64>) {
    let after_used = |t: u64| used.is_none_or(|u| t > u);
    match &spec.kind {
        Kind::Sequence => (vec![(0, spec.sequence.clone())], None),
        // encoded doors have no sequences: their knocks are reassembled, not matched
        Kind::Encoded(_) | Kind::Spa(_) => (Vec::new(), None),
        Kind::OneTime { lines, .. } => {
            let next = used.map_or(0, |u| u.saturating_add(1));
            let line = usize::try_from(next).ok().and_then(|i| lines.get(i));
            (
                line.map(|l| vec![(next, l.clone())]).unwrap_or_default(),
                None,
            )
        }
        Kind::Rotating {
            derive,
            clock: Clock::Totp { period, skew },
            ..
        } => {
            let now = wall / (*period).max(1);
            let skew = (*skew).min(MAX_CANDIDATES / 2);
            let from = now.saturating_sub(skew);
            let to = now.saturating_add(skew);
            let c = (from..=to)
                .filter(|t| after_used(*t))
                .map(|t| (t, derive(t)))
                .collect();
            (c, Some(now))
        }
        Kind::Rotating {
            derive,
            clock: Clock::Hotp { lookahead },
            ..
        } => {
            let first = used.map_or(0, |u| u.saturating_add(1));
            let n = (*lookahead).clamp(1, MAX_CANDIDATES);
            let c = (first..first.saturating_add(n))
                .map(|t| (t, derive(t)))
                .collect();
            (c, None)
        }
    }
}

pub struct Engine {
    doors: Vec<DoorState>,
    /// Which (door, candidate tag) each knock port belongs to right now.
    by_service: ServiceMap<Vec<(u16, u64)>>,
    table: Table,
    /// The encoded doors, by index.
    encoded_doors: Vec<u16>,
    /// Per-source reassembly buffers of encoded doors, bounded like `table`.
    assemblies: Table<(IpAddr, u16), Assembly>,
    /// Replay digests of granted encoded requests, with the Unix time until which each must be
    /// remembered.
    seen: HashMap<[u8; 32], u64>,
    /// Per-source budgets for the expensive checks of single-packet doors.
    limiter: crate::spa::Limiter,
    events: VecDeque<Event>,
    /// What the deadlines in `table` and `assemblies` count from.
    epoch: Epoch,
    full_reported: bool,
    /// Wall-clock time in Unix seconds, for TOTP doors and encoded requests.
    wall: u64,
}

impl Engine {
    /// Builds an engine, refusing doors that break any rule.
    pub fn new(config: EngineConfig) -> Result<Self, DoorsError> {
        validate_doors(&config.doors)?;
        Ok(Engine::build(config))
    }

    /// Builds an engine for a knockd.conf: what knockd accepts runs, and the rules that only
    /// protect against sweeps, retransmissions and overlapping doors come back as warnings.
    pub fn new_compat(config: EngineConfig) -> Result<(Self, Vec<DoorsError>), DoorsError> {
        let warnings = validate_doors_compat(&config.doors)?;
        Ok((Engine::build(config), warnings))
    }

    fn build(config: EngineConfig) -> Self {
        let doors: Vec<DoorState> = config
            .doors
            .into_iter()
            .map(|spec| {
                let used = match &spec.kind {
                    Kind::Sequence | Kind::Encoded(_) | Kind::Spa(_) => None,
                    Kind::OneTime { used, .. } | Kind::Rotating { used, .. } => *used,
                };
                let mut d = DoorState {
                    name: Arc::from(spec.name.as_str()),
                    spec,
                    used,
                    candidates: Vec::new(),
                    step: None,
                };
                d.refresh(0);
                d
            })
            .collect();
        let encoded_doors = doors
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d.spec.kind, Kind::Encoded(_)))
            .map(|(i, _)| i as u16)
            .collect();
        let mut e = Engine {
            doors,
            by_service: ServiceMap::default(),
            table: Table::new(config.max_tracked),
            encoded_doors,
            // a reassembly buffer is about 300 bytes, a partial knock about 60
            assemblies: Table::new((config.max_tracked / 4).max(1)),
            seen: HashMap::new(),
            limiter: crate::spa::Limiter::new((config.max_tracked / 4).max(1)),
            events: VecDeque::new(),
            epoch: Epoch::default(),
            full_reported: false,
            wall: 0,
        };
        e.reindex();
        e
    }

    fn reindex(&mut self) {
        self.by_service.clear();
        for (i, door) in self.doors.iter().enumerate() {
            for (tag, seq) in &door.candidates {
                for s in seq {
                    let ids = self.by_service.entry(*s).or_default();
                    if !ids.contains(&(i as u16, *tag)) {
                        ids.push((i as u16, *tag));
                    }
                }
            }
        }
    }

    /// Tells the engine the wall-clock time (Unix seconds). TOTP doors derive their candidate
    /// sequences from it; call it before [`Engine::handle`] whenever the second changes.
    pub fn set_wall_clock(&mut self, unix_secs: u64) {
        self.wall = unix_secs;
        let mut changed = false;
        for d in &mut self.doors {
            if let Kind::Rotating {
                clock: Clock::Totp { period, .. },
                ..
            } = d.spec.kind
            {
                if d.step != Some(unix_secs / period.max(1)) {
                    d.refresh(unix_secs);
                    changed = true;
                }
            }
        }
        if changed {
            self.reindex();
        }
    }

    pub fn doors(&self) -> impl Iterator<Item = &DoorSpec> {
        self.doors.iter().map(|d| &d.spec)
    }

    /// The sequences that open door `index` right now, with their tags.
    pub fn candidates(&self, index: usize) -> &[(u64, Vec<Service>)] {
        self.doors.get(index).map_or(&[], |d| &d.candidates)
    }

    /// The last tag door `index` used.
    pub fn used(&self, index: usize) -> Option<u64> {
        self.doors.get(index).and_then(|d| d.used)
    }

    /// Every protocol and port that some door listens for right now.
    pub fn knock_services(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self.by_service.keys().copied().collect();
        v.sort();
        v
    }

    /// Number of (source, door) partial knocks held right now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Estimated bytes of state per tracked (source, door, candidate): its slab slot and its
    /// share of the index at 1 000 000 sources (BENCHMARKS.md has the measured figure).
    pub fn bytes_per_tracked() -> usize {
        Table::<crate::table::Key, Progress>::bytes_per_entry()
    }

    /// Reads, ahead of [`Engine::handle`] of each of `knocks`, the table's memory that those
    /// calls will look up first: the index buckets of their (source, door, candidate) keys, and
    /// of the oldest entries they would evict. A hint with no effect on what the engine decides:
    /// under a flood of new sources the cache misses of a whole batch then overlap instead of
    /// coming one after the other (BENCHMARKS.md, "Engine").
    pub fn prefetch(&self, knocks: &[Knock]) {
        self.table.touch_oldest(knocks.len());
        // the fingerprints first, then the loads back to back, so that they are in flight
        // together
        const CHUNK: usize = 16;
        for chunk in knocks.chunks(CHUNK) {
            let mut fps = [None; CHUNK];
            for (fp, knock) in fps.iter_mut().zip(chunk) {
                // a flood's knock has one door's candidate; more are looked up as they come
                *fp = self
                    .by_service
                    .get(&knock.service())
                    .and_then(|e| e.first())
                    .map(|&(id, tag)| self.table.fingerprint(&(knock.src.to_canonical(), id, tag)));
            }
            self.table.touch_all(fps.iter().flatten());
        }
    }

    /// Feeds one knock seen at `now`. O(number of candidate sequences sharing the knock's port),
    /// independent of how many sources are tracked.
    pub fn handle(&mut self, now: Instant, knock: &Knock) {
        // An IPv4-mapped IPv6 source is the IPv4 address it maps, not a second identity.
        let src = knock.src.to_canonical();
        let now_t = self.epoch.ticks(now);
        for i in 0..self.encoded_doors.len() {
            let id = self.encoded_doors[i];
            self.handle_encoded(now, now_t, id, src, knock);
        }
        let service = knock.service();
        let Some(entries) = self.by_service.get(&service) else {
            return;
        };
        // under a flood every knock may evict: start that miss now, beside the lookups' own
        self.table.touch_oldest(1);
        let mut completed: Vec<(u16, u64)> = Vec::new();
        // failed attempts of this knock, reported after the loop unless the knock opened a door
        let mut failures: Vec<Event> = Vec::new();
        let mut granted = false;
        for &(id, tag) in entries {
            let door = &self.doors[id as usize];
            if !door.spec.targets(knock) {
                continue;
            }
            let Some((_, seq)) = door.candidates.iter().find(|(t, _)| *t == tag) else {
                continue;
            };
            let key = (src, id, tag);
            // one hash of the key for every lookup below
            let fp = self.table.fingerprint(&key);
            if !door.spec.flags_match(knock) {
                // ignored, but remembered when it was the expected next knock
                if let Some(p) = self.table.get_mut_fp(fp, &key) {
                    if now_t < p.deadline && seq.get(p.matched as usize) == Some(&service) {
                        p.bad_flags.get_or_insert(knock.tcp_flags);
                    }
                }
                continue;
            }
            let matched = match self.table.get_fp(fp, &key) {
                Some(p) if now_t < p.deadline => p.matched as usize,
                Some(_) => {
                    if let Some(p) = self.table.remove_fp(fp, &key) {
                        failures.extend(failed(door, src, &p, None));
                    }
                    0
                }
                None => 0,
            };
            let of = seq.len();
            match step(seq, matched, service) {
                Step::Ignore => {}
                Step::Complete => {
                    self.table.remove_fp(fp, &key);
                    if matches!(door.spec.kind, Kind::Sequence) {
                        granted = true;
                        // in door order, like every other event of this knock
                        self.events.push_back(Event::Grant(Grant {
                            door: id as usize,
                            door_name: door.spec.name.clone(),
                            to: src,
                            open: door.spec.open.clone(),
                            duration: door.spec.open_for,
                            client: None,
                            spa: None,
                        }));
                    } else {
                        // using a tag changes the candidates and the index being iterated, so
                        // one-time and rotating doors complete after the loop
                        completed.push((id, tag));
                    }
                }
                Step::Advance(n) if matched > 0 => {
                    if let Some(p) = self.table.get_mut_fp(fp, &key) {
                        p.matched = n as u8;
                        p.bad_flags = None;
                    }
                    self.events.push_back(Event::Progress {
                        door: door.name.clone(),
                        src,
                        matched: n,
                        of,
                    });
                }
                Step::Advance(_) | Step::Restart => {
                    // validate() bounds the window; ticks_after keeps a hand-built door from
                    // panicking the engine all the same.
                    let Some(deadline) = self.epoch.ticks_after(now, door.spec.window) else {
                        continue;
                    };
                    let first = Progress::first(&key, deadline, of);
                    let evicted = self.table.insert_newest_fp(fp, key, first);
                    self.events.push_back(Event::Progress {
                        door: door.name.clone(),
                        src,
                        matched: 1,
                        of,
                    });
                    if evicted.is_some() && !self.full_reported {
                        self.full_reported = true;
                        self.events.push_back(Event::TableFull {
                            capacity: self.table.capacity(),
                        });
                    }
                }
                Step::Reset => {
                    if let Some(p) = self.table.remove_fp(fp, &key) {
                        self.events.push_back(Event::Reset {
                            door: door.name.clone(),
                            src,
                        });
                        failures.extend(failed(door, src, &p, Some(service)));
                    }
                }
            }
        }
        // A source that opens a door: its other partial knocks were side effects of a legitimate
        // knock. Quietened before a completion changes the candidates they were made on.
        if granted {
            self.quieten(src);
        }
        for (id, tag) in completed {
            let fresh = self.doors[id as usize].used.is_none_or(|u| tag > u);
            if fresh && !granted {
                self.quieten(src);
            }
            if self.complete(id as usize, tag, src) {
                granted = true;
            }
        }
        if !granted {
            self.events.extend(failures);
        }
        self.rearm_table_full();
    }

    /// Marks every partial knock of `src` as not an attempt of its own: its end is not reported.
    fn quieten(&mut self, src: IpAddr) {
        for (i, door) in self.doors.iter().enumerate() {
            for (tag, _) in &door.candidates {
                if let Some(p) = self.table.get_mut(&(src, i as u16, *tag)) {
                    p.quiet = true;
                }
            }
        }
    }

    /// A candidate was knocked in full: use its tag (once) and grant. Whether it granted.
    fn complete(&mut self, index: usize, tag: u64, src: IpAddr) -> bool {
        let wall = self.wall;
        let door = &mut self.doors[index];
        // static doors complete inline in `handle`; this stays correct for them too
        let dynamic = !matches!(door.spec.kind, Kind::Sequence);
        if dynamic {
            // A second completion of the same tag (two sources racing, or doors sharing a
            // knock) must not open twice: tags are used once.
            if door.used.is_some_and(|u| tag <= u) {
                return false;
            }
            door.used = Some(tag);
            self.events.push_back(Event::Used {
                door: door.name.clone(),
                index,
                tag,
            });
        }
        self.events.push_back(Event::Grant(Grant {
            door: index,
            door_name: door.spec.name.clone(),
            to: src,
            open: door.spec.open.clone(),
            duration: door.spec.open_for,
            client: None,
            spa: None,
        }));
        if dynamic {
            door.refresh(wall);
            if door.candidates.is_empty() {
                self.events.push_back(Event::Exhausted {
                    door: door.name.clone(),
                });
            }
            self.reindex();
        }
        true
    }

    /// One knock for encoded door `id`: reassemble, and judge a complete message.
    fn handle_encoded(&mut self, now: Instant, now_t: Ticks, id: u16, src: IpAddr, knock: &Knock) {
        let door = &self.doors[id as usize];
        let Kind::Encoded(e) = &door.spec.kind else {
            return;
        };
        if knock.proto != e.spec.proto()
            || !e.spec.span().contains(&knock.dst_port)
            || !door.spec.admits(knock)
        {
            return;
        }
        let key = (src, id);
        if self
            .assemblies
            .get(&key)
            .is_none_or(|a| a.deadline <= now_t)
        {
            let Some(deadline) = self.epoch.ticks_after(now, door.spec.window) else {
                return;
            };
            let fresh = Assembly {
                buf: Box::new(Reassembly::new(&e.spec)),
                deadline,
                src: Src::new(src),
                door: id,
            };
            if self.assemblies.insert_newest(key, fresh).is_some() && !self.full_reported {
                self.full_reported = true;
                self.events.push_back(Event::TableFull {
                    capacity: self.assemblies.capacity(),
                });
            }
        }
        let Some(a) = self.assemblies.get_mut(&key) else {
            return;
        };
        let Some(bytes) = encoded::push(&mut a.buf, knock.dst_port) else {
            return;
        };
        match encoded::judge(
            id as usize,
            &door.spec,
            e,
            &bytes,
            src,
            self.wall,
            &mut self.seen,
        ) {
            Outcome::Granted {
                grant,
                digest,
                until_unix,
            } => {
                self.assemblies.remove(&key);
                self.events.push_back(Event::Seen {
                    door: door.name.clone(),
                    index: id as usize,
                    digest,
                    until_unix,
                });
                self.events.push_back(Event::Grant(*grant));
            }
            // keep the buffer after an unauthentic message: the knocks of a retry may still
            // complete it (knocker-wire's reassembly rules)
            Outcome::Refused(reason @ Refusal::NotAuthentic) => {
                self.events.push_back(Event::Refused {
                    door: door.name.clone(),
                    src,
                    reason,
                });
            }
            Outcome::Refused(reason) => {
                self.assemblies.remove(&key);
                self.events.push_back(Event::Refused {
                    door: door.name.clone(),
                    src,
                    reason,
                });
            }
        }
    }

    /// One UDP datagram to an SPA port, with its payload: the doors on that port in order, the
    /// first whose sources admit the packet and whose key authenticates it decides.
    pub fn handle_datagram(&mut self, now: Instant, knock: &Knock, payload: &[u8]) {
        let src = knock.src.to_canonical();
        // The replay memory's key: a digest of the raw packet, made once, after the first
        // door's precheck has passed (a tag or an HMAC, both cheaper than the digest and both
        // without decrypting anything): noise costs no digest, a replay is refused before any
        // decryption or public-key work.
        let mut digest: Option<[u8; 32]> = None;
        let wall = self.wall;
        let mut tried: Option<usize> = None;
        for index in 0..self.doors.len() {
            let door = &self.doors[index];
            let Kind::Spa(spa) = &door.spec.kind else {
                continue;
            };
            if spa.proto != knock.proto
                || spa.port != knock.dst_port
                || !spa.admits(src, knock.dst.to_canonical())
            {
                continue;
            }
            let refuse = |reason| Event::Refused {
                door: door.name.clone(),
                src,
                reason,
            };
            if spa.precheck.as_ref().is_some_and(|check| !check(payload)) {
                tried = Some(index);
                continue;
            }
            let digest = *digest.get_or_insert_with(|| {
                use sha2::Digest as _;
                sha2::Sha256::digest(payload).into()
            });
            if self.seen.get(&digest).is_some_and(|until| *until >= wall) {
                self.events.push_back(refuse(Refusal::Replayed));
                return;
            }
            if let Some(limit) = spa.rate_limit {
                if !self.limiter.take(src, index, limit, now) {
                    self.events.push_back(refuse(Refusal::RateLimited));
                    return;
                }
            }
            tried = Some(index);
            let req = match (spa.decode)(payload, wall) {
                Err(crate::spa::SpaError::NotForThisKey) => continue,
                Err(crate::spa::SpaError::Unsupported(why)) => {
                    self.events.push_back(refuse(Refusal::Unsupported(why)));
                    return;
                }
                Err(crate::spa::SpaError::Refused(reason)) => {
                    self.events.push_back(refuse(reason));
                    return;
                }
                Ok(req) => req,
            };
            // a counter is used up once it authenticated, granted or not (knockknock does so),
            // and must be made durable by the caller before anything it opens
            if let Some(counter) = req.counter {
                let door = &mut self.doors[index];
                if door.used.is_some_and(|u| counter <= u) {
                    self.events.push_back(Event::Refused {
                        door: door.name.clone(),
                        src,
                        reason: Refusal::Replayed,
                    });
                    return;
                }
                door.used = Some(counter);
                self.events.push_back(Event::Used {
                    door: door.name.clone(),
                    index,
                    tag: counter,
                });
            }
            let door = &self.doors[index];
            let Kind::Spa(spa) = &door.spec.kind else {
                return;
            };
            let refuse = |reason| Event::Refused {
                door: door.name.clone(),
                src,
                reason,
            };
            if req
                .replay_id
                .and_then(|id| self.seen.get(&id))
                .is_some_and(|until| *until >= wall)
            {
                self.events.push_back(refuse(Refusal::Replayed));
                return;
            }
            let verdict = spa_verdict(
                index,
                &door.spec,
                spa,
                &req,
                (src, knock.dst.to_canonical()),
                wall,
            );
            let grant = match verdict {
                Ok(grant) => grant,
                Err(reason) => {
                    self.events.push_back(refuse(reason));
                    return;
                }
            };
            let needed = 1 + usize::from(req.replay_id.is_some());
            if self.seen.len() + needed > MAX_SEEN {
                self.seen.retain(|_, until| *until >= wall);
            }
            if self.seen.len() + needed > MAX_SEEN {
                self.events.push_back(refuse(Refusal::MemoryFull));
                return;
            }
            // remembered for as long as the packet could pass the age check
            let until_unix = match spa.max_age {
                Some(age) => req.timestamp.max(wall).saturating_add(age),
                None => u64::MAX,
            };
            let name = door.name.clone();
            for digest in std::iter::once(digest).chain(req.replay_id) {
                self.seen.insert(digest, until_unix);
                self.events.push_back(Event::Seen {
                    door: name.clone(),
                    index,
                    digest,
                    until_unix,
                });
            }
            self.events.push_back(Event::Grant(grant));
            return;
        }
        if let Some(index) = tried {
            let reason = Refusal::NotAuthentic;
            self.events.push_back(Event::Refused {
                door: self.doors[index].name.clone(),
                src,
                reason,
            });
        }
    }

    /// Remembers a replay digest from before a restart (from the ledger).
    pub fn add_seen(&mut self, digest: [u8; 32], until_unix: u64) {
        if self.seen.len() < MAX_SEEN {
            self.seen.insert(digest, until_unix);
        }
    }

    /// TableFull may be reported again once the table has drained below half its capacity.
    fn rearm_table_full(&mut self) {
        if self.full_reported && self.table.len() * 2 < self.table.capacity() {
            self.full_reported = false;
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the oldest partial knock runs out, if any. Later entries may expire earlier when
    /// doors have different windows; those are dropped lazily when touched or when they reach
    /// the head, which only delays freeing memory that the hard bound already caps.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.table.oldest().map(|p| p.deadline);
        let b = self.assemblies.oldest().map(|a| a.deadline);
        let t = a.into_iter().chain(b).min()?;
        self.epoch.instant(t)
    }

    /// Forgets partial knocks whose window has passed, reporting the failed attempts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_t = self.epoch.ticks(now);
        while let Some(p) = self.table.oldest() {
            if p.deadline > now_t {
                break;
            }
            let p = *p;
            self.table.pop_oldest();
            if let Some(door) = self.doors.get(usize::from(p.door)) {
                self.events.extend(failed(door, p.src.ip(), &p, None));
            }
        }
        while let Some(a) = self.assemblies.oldest() {
            if a.deadline > now_t {
                break;
            }
            self.assemblies.pop_oldest();
        }
        if self.seen.len() > MAX_SEEN / 2 {
            let wall = self.wall;
            self.seen.retain(|_, until| *until >= wall);
        }
        self.rearm_table_full();
    }
}

/// The report of an attempt at `door` that ended without a grant, with `wrong` the port that
/// ended it (none when the window ran out), if the rule in the sequence module calls it a
/// failed attempt.
fn failed(door: &DoorState, src: IpAddr, p: &Progress, wrong: Option<Service>) -> Option<Event> {
    let (matched, of) = (usize::from(p.matched), usize::from(p.of));
    let reason = match (p.bad_flags, wrong) {
        _ if p.quiet => return None,
        (Some(got), _) => Failure::Flags {
            at: matched + 1,
            of,
            got,
            want: door.spec.tcp_flags.unwrap_or_default(),
        },
        (None, Some(got)) => Failure::WrongPort {
            at: matched + 1,
            of,
            got,
        },
        (None, None) if matched >= 2 => Failure::Window {
            matched,
            of,
            window: door.spec.window,
        },
        (None, None) => return None,
    };
    Some(Event::Failed {
        door: door.name.clone(),
        src,
        reason,
    })
}

/// The checks after an SPA packet authenticated, in fwknopd's order.
fn spa_verdict(
    index: usize,
    door: &DoorSpec,
    spa: &crate::spa::Spa,
    req: &crate::spa::SpaRequest,
    (src, dst): (IpAddr, IpAddr),
    wall: u64,
) -> Result<Grant, Refusal> {
    if let Some(max_age) = spa.max_age {
        let off_by = req.timestamp as i128 - wall as i128;
        if off_by.unsigned_abs() > u128::from(max_age) {
            let off_by_secs = off_by.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            return Err(Refusal::Age {
                off_by_secs,
                max_age,
            });
        }
    }
    let allow = req.allow.to_canonical();
    if allow.is_unspecified() && spa.require_source_address {
        return Err(Refusal::Unsupported(
            "the request does not name its address (0.0.0.0), and this door requires it".into(),
        ));
    }
    let to = if allow.is_unspecified() {
        src
    } else if allow == src || spa.allow_other_address {
        allow
    } else {
        return Err(Refusal::OtherAddress { allow });
    };
    if let Some(user) = &spa.require_username {
        if &req.username != user {
            return Err(Refusal::Username(req.username.clone()));
        }
    }
    if spa.expire.is_some_and(|e| wall >= e) {
        return Err(Refusal::Expired);
    }
    if let Some(s) = req.access.iter().find(|s| spa.restrict.contains(s)) {
        return Err(Refusal::Restricted(*s));
    }
    if let Some(s) = req
        .access
        .iter()
        .find(|s| !spa.open_any && !door.open.contains(s))
    {
        return Err(Refusal::NotOpened(*s));
    }
    if req.access.is_empty() {
        return Err(Refusal::Unsupported("the request opens nothing".into()));
    }
    let secs = match req.client_timeout {
        Some(t) => u64::from(t).min(spa.max_timeout),
        None => spa.access_timeout,
    };
    let duration = std::time::Duration::from_secs(secs.max(1)).min(door.open_for);
    Ok(Grant {
        door: index,
        door_name: door.name.clone(),
        to,
        // a NAT request sends one service on (the first, as fwknopd's DNAT does)
        open: if req.nat.is_some() {
            req.access[..1].to_vec()
        } else {
            req.access.clone()
        },
        duration,
        client: (!req.username.is_empty()).then(|| req.username.clone()),
        spa: Some(crate::types::SpaFacts {
            packet_source: src,
            destination: dst,
            timestamp: req.timestamp,
            client_timeout: req.client_timeout.map_or(0, u64::from),
            nat: req.nat,
        }),
    })
}

/// Whether knocking `knocks`, in order and from one source, completes the sequence `door`: the
/// door's own state machine run over them. This is exact, so it catches every way one door's
/// sequence can contain another's (a prefix, a suffix, or the other's ports in order with
/// foreign ports between them, which a door ignores).
fn opens_with(door: &[Service], knocks: &[Service]) -> bool {
    let mut matched = 0;
    for k in knocks {
        if !door.contains(k) {
            continue;
        }
        match step(door, matched, *k) {
            Step::Complete => return true,
            Step::Advance(n) => matched = n,
            Step::Ignore => {}
            Step::Restart => matched = 1,
            Step::Reset => matched = 0,
        }
    }
    false
}

/// Checks each door and the doors against each other.
pub fn validate_doors(doors: &[DoorSpec]) -> Result<(), DoorsError> {
    for d in doors {
        d.validate().map_err(|error| DoorsError::Door {
            door: d.name.clone(),
            error,
        })?;
    }
    match cross_check(doors)?.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// knockd's rules: only what knockd itself refuses is an error; the rest are warnings.
pub fn validate_doors_compat(doors: &[DoorSpec]) -> Result<Vec<DoorsError>, DoorsError> {
    let mut warnings = Vec::new();
    for d in doors {
        let w = d.validate_compat().map_err(|error| DoorsError::Door {
            door: d.name.clone(),
            error,
        })?;
        warnings.extend(w.into_iter().map(|error| DoorsError::Door {
            door: d.name.clone(),
            error,
        }));
    }
    warnings.extend(cross_check(doors)?);
    Ok(warnings)
}

/// Rules between doors: hard errors are returned as `Err`, ambiguities as the `Ok` list.
fn cross_check(doors: &[DoorSpec]) -> Result<Vec<DoorsError>, DoorsError> {
    if doors.len() > u16::MAX as usize {
        return Err(DoorsError::TooMany(doors.len()));
    }
    for a in doors {
        for b in doors {
            if let Some(s) = a.fixed_knocks().find(|s| b.open.contains(s)) {
                return Err(DoorsError::KnockIsService(
                    *s,
                    a.name.clone(),
                    b.name.clone(),
                ));
            }
        }
    }
    let mut ambiguous = Vec::new();
    let fixed = |d: &DoorSpec| matches!(d.kind, Kind::Sequence).then_some(d.sequence.clone());
    for (i, a) in doors.iter().enumerate() {
        for b in &doors[i + 1..] {
            if let (Some(x), Some(y)) = (fixed(a), fixed(b)) {
                if x == y {
                    ambiguous.push(DoorsError::Identical(a.name.clone(), b.name.clone()));
                }
            }
        }
    }
    for a in doors {
        for b in doors {
            if std::ptr::eq(a, b) {
                continue;
            }
            if let (Some(x), Some(y)) = (fixed(a), fixed(b)) {
                if x != y && opens_with(&y, &x) {
                    ambiguous.push(DoorsError::Overlap(a.name.clone(), b.name.clone()));
                }
            }
        }
    }
    Ok(ambiguous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Proto, TcpFlags};
    use std::time::Duration;

    /// An engine with one door, 7000, 9000, 8000 within 10 s.
    fn ssh_engine() -> Engine {
        let door = DoorSpec {
            name: "ssh".into(),
            sequence: vec![Service::tcp(7000), Service::tcp(9000), Service::tcp(8000)],
            window: Duration::from_secs(10),
            tcp_flags: None,
            open: vec![Service::tcp(22)],
            open_for: Duration::from_secs(30),
            kind: crate::Kind::Sequence,
            target: None,
        };
        Engine::new(EngineConfig {
            doors: vec![door],
            max_tracked: 10,
        })
        .expect("valid")
    }

    fn syn(src: &str, port: u16) -> Knock {
        Knock {
            src: src.parse().expect("ip"),
            dst: "10.0.0.1".parse().expect("ip"),
            proto: Proto::Tcp,
            src_port: 40000,
            dst_port: port,
            tcp_flags: TcpFlags::SYN,
        }
    }

    #[test]
    fn prefetch_changes_no_decision() {
        // a flood past max_tracked (10) with a legitimate knock inside it, read by read (7
        // knocks a read), once with prefetch and once without: the same events in the same order
        let mut knocks: Vec<Knock> = (0..40)
            .map(|n| syn(&format!("10.200.{}.{}", n / 200, n % 200), 7000))
            .collect();
        for (at, port) in [(30, 7000), (33, 9000), (36, 8000)] {
            knocks.insert(at, syn("10.200.9.9", port));
        }
        let t0 = Instant::now();
        let run = |prefetch: bool| {
            let mut e = ssh_engine();
            let mut events = Vec::new();
            for read in knocks.chunks(7) {
                if prefetch {
                    e.prefetch(read);
                }
                for k in read {
                    e.handle(t0, k);
                }
                events.extend(std::iter::from_fn(|| e.poll_event()));
            }
            (events, e.tracked())
        };
        let (with, tracked) = run(true);
        assert_eq!((with.clone(), tracked), run(false));
        assert_eq!(tracked, 10, "the flood filled the table");
        assert!(with.iter().any(|ev| matches!(ev, Event::TableFull { .. })));
        assert!(
            with.iter()
                .any(|ev| matches!(ev, Event::Grant(g) if g.to.to_string() == "10.200.9.9")),
            "the legitimate knock opened"
        );
    }

    #[test]
    fn ipv4_mapped_sources_are_the_ipv4_address() {
        let mut e = ssh_engine();
        let t0 = Instant::now();
        e.handle(t0, &syn("::ffff:10.200.1.2", 7000));
        e.handle(t0, &syn("10.200.1.2", 9000));
        e.handle(t0, &syn("::ffff:10.200.1.2", 8000));
        assert_eq!(e.tracked(), 0);
        let grants: Vec<IpAddr> = std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                Event::Grant(g) => Some(g.to),
                _ => None,
            })
            .collect();
        assert_eq!(grants, vec!["10.200.1.2".parse::<IpAddr>().expect("ip")]);
    }

    #[test]
    fn deadlines_stay_exact_long_after_the_first_knock() {
        // deadlines count nanoseconds from the engine's first instant: 60 days later (beyond a
        // u32 of milliseconds) a window still runs out exactly when it should
        let mut e = ssh_engine();
        let knock = |port| syn("10.200.1.2", port);
        let t0 = Instant::now();
        e.handle(t0, &knock(7000));
        e.handle_timeout(t0 + Duration::from_secs(11));
        assert_eq!(e.tracked(), 0);
        let later = t0 + Duration::from_secs(60 * 86_400);
        e.handle(later, &knock(7000));
        e.handle(later, &knock(9000));
        assert_eq!(e.poll_timeout(), Some(later + Duration::from_secs(10)));
        let just_before = later + Duration::from_secs(10) - Duration::from_nanos(1);
        e.handle_timeout(just_before);
        assert_eq!(e.tracked(), 1, "not yet run out");
        e.handle_timeout(later + Duration::from_secs(10));
        assert_eq!(e.tracked(), 0);
        let failed: Vec<IpAddr> = std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                Event::Failed { src, .. } => Some(src),
                _ => None,
            })
            .collect();
        assert_eq!(failed, vec!["10.200.1.2".parse::<IpAddr>().expect("ip")]);
    }
}
