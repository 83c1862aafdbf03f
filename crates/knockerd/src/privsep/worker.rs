//! The packet worker's loop: the half of knockerd that reads packets, and holds no privilege.
//!
//! It reads the configuration and its keys and binds its source (NFLOG, or the packet socket of
//! `[source] kind = "packet"`) while it is still root, then drops to an unprivileged user before
//! it reads a single packet, and puts itself in its sandbox (`sandbox`: Landlock and a seccomp
//! filter). Every parser of hostile input
//! (NFLOG messages, IP headers, encoded knocks, fwknop and knocker SPA datagrams, stealth SYNs)
//! and the engine run here; what the engine decides goes to the parent as [`Report`]s.

use std::io::{BufRead, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use knocker_engine::{Engine, EngineConfig, Event, Grant, Kind, Knock};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::protocol::{
    send, Digest, DoorRef, DoorTally, Name, ProtocolError, Reason, Report, Seed, SendError,
    Services, SourceCounts, MAX_REPORT_BYTES, MAX_SEED_BYTES,
};
use crate::config::loader::ConfigFile;
use crate::config::{Config, DoorKind};
use crate::nflog;
use crate::overrides::Overrides;

/// The user the worker runs as once it has bound NFLOG.
pub const DEFAULT_USER: &str = "nobody";

/// Why the worker's loop could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot block signals: {0}")]
    BlockSignals(#[source] nix::Error),
    /// The configuration did not load (it says where and why).
    #[error("{0}")]
    Config(#[source] crate::config::ConfigError),
    #[error("cannot read the seed: {0}")]
    ReadSeed(#[source] std::io::Error),
    #[error("the parent sent a bad seed: {0}")]
    BadSeed(#[source] serde_json::Error),
    #[error(transparent)]
    Doors(#[from] knocker_engine::DoorsError),
    #[error(transparent)]
    Source(#[from] crate::source::OpenError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Sandbox(#[from] super::sandbox::SandboxError),
    #[error(transparent)]
    Report(#[from] SendError),
    #[error("a door's name does not fit the worker's reports: {0}")]
    DoorName(#[source] ProtocolError),
    #[error("{0} doors do not fit the worker's reports")]
    TooManyDoors(usize),
    #[error("poll failed: {0}")]
    Poll(#[source] nix::Error),
}

/// Why the worker could not become its unprivileged user, or could still become root.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot look up user {user:?}: {source}")]
    LookUp { user: String, source: nix::Error },
    #[error("no user {0:?} to run the packet worker as (it reads packets with no privilege)")]
    NoUser(String),
    #[error("user {0:?} is root: the packet worker must not be")]
    UserIsRoot(String),
    #[error("cannot drop supplementary groups: {0}")]
    Groups(#[source] nix::Error),
    #[error("cannot change group: {0}")]
    Group(#[source] nix::Error),
    #[error("cannot change user: {0}")]
    User(#[source] nix::Error),
    #[error("the packet worker could become root again after dropping it")]
    RootAgain,
    #[error("cannot chdir to /: {0}")]
    Chdir(#[source] std::io::Error),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(#[source] nix::Error),
    #[error("cannot set the parent-death signal: {0}")]
    DeathSignal(#[source] nix::Error),
    #[error("the parent exited while the packet worker started")]
    ParentGone,
}

/// The engine for a validated configuration. Native configurations were already held to the
/// strict rules by `config::native::parse`; a knockd.conf runs as knockd would run it (its sweep and
/// overlap warnings were logged when it was loaded), so the engine is built in compat mode.
pub(crate) fn engine_for(config: &Config) -> Result<Engine, knocker_engine::DoorsError> {
    Engine::new_compat(EngineConfig {
        doors: config.doors.iter().map(|d| d.spec.clone()).collect(),
        max_tracked: config.max_tracked,
    })
    .map(|(engine, _warnings)| engine)
}

/// The worker's main: runs until the parent closes its standard input (or dies).
pub fn run(
    source: &ConfigFile,
    overrides: &Overrides,
    user: &str,
    parent: u32,
) -> Result<(), RunError> {
    // before any key is read (the parent's mark does not survive the exec that started this)
    crate::privsep::sandbox::forbid_core_dumps();
    // Ctrl-C in a terminal reaches the whole process group: the parent decides when to stop.
    let mut mask = nix::sys::signal::SigSet::empty();
    mask.add(nix::sys::signal::Signal::SIGINT);
    mask.add(nix::sys::signal::Signal::SIGHUP);
    mask.thread_block().map_err(RunError::BlockSignals)?;

    let mut config = crate::overrides::load(source, overrides).map_err(RunError::Config)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_SEED_BYTES)
        .read_line(&mut line)
        .map_err(RunError::ReadSeed)?;
    let seed: Seed = serde_json::from_str(&line).map_err(RunError::BadSeed)?;
    // rotating doors start from the last step or counter they used, so a recorded knock never
    // works again after a restart
    for d in &mut config.doors {
        if let (DoorKind::Rotating { mode: m, .. }, Kind::Rotating { used, .. }) =
            (&d.kind, &mut d.spec.kind)
        {
            *used = seed
                .used
                .iter()
                .find(|(door, mode, _)| door.as_str() == d.spec.name && mode == m)
                .map(|(_, _, v)| *v);
        }
    }
    let mut engine = engine_for(&config)?;
    engine.set_wall_clock(unix_now());
    for (digest, until) in &seed.seen {
        engine.add_seen(digest.0, *until);
    }
    // opened while root: NFLOG, /dev/kmsg or a log file that only root may open
    let mut source = crate::source::open(&config)?;
    hand_over_batching(source.as_ref());
    drop_privileges(user, parent)?;
    // what is left to it from here on: privsep/sandbox.rs
    super::sandbox::enter(super::sandbox::Needs {
        follows: source.follows(),
        syslog: crate::config::knockd::log::seal(),
    })?;
    let trip = super::sandbox::TestTrip::from_env();
    let mut out = std::io::stdout().lock();
    send(&mut out, &[Report::Ready])?;

    // how reports name the doors: their index in this configuration, and their name in it
    let doors: Vec<DoorRef> = config
        .doors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Ok(DoorRef {
                index: u32::try_from(i).map_err(|_| RunError::TooManyDoors(config.doors.len()))?,
                name: Name::new(d.spec.name.clone()).map_err(RunError::DoorName)?,
            })
        })
        .collect::<Result<_, RunError>>()?;
    let mut tally = Tally::new(&config);
    let mut knocks: Vec<Knock> = Vec::with_capacity(256);
    let mut datagrams: Vec<nflog::Datagram> = Vec::new();
    let mut refusals = RefusalLog::default();
    let mut reports: Vec<Report> = Vec::new();
    // under a flood the kernel does not batch, a pause before each poll so that one wake-up
    // takes many packets
    let mut pacer = super::pacer::Pacer::default();
    let mut overrun_reported = false;
    let mut too_long_reported = false;
    // what the source gave in all, logged when the worker stops
    let mut totals = nflog::RecvStats::default();
    // a followed file is read at least this often (rotation), whether or not it woke us
    let recheck = source.recheck_every();
    let mut next_recheck = recheck.map(|r| Instant::now() + r);
    let stdin = std::io::stdin();
    loop {
        trip.check();
        if let Some(pause) = pacer.pause() {
            std::thread::sleep(pause);
        }
        let mut read = 0;
        let mut batched = false;
        // Deadline-driven: the engine's next expiry, a followed file's re-check, the next tally.
        // With none of them the worker sleeps until a knock or the parent (its pings) wakes it.
        let deadline = [engine.poll_timeout(), next_recheck, tally.due()]
            .into_iter()
            .flatten()
            .min();
        let timeout = poll_timeout(deadline, Instant::now());
        let (knock_ready, parent_ready) = {
            let mut fds = [
                PollFd::new(source.fd(), PollFlags::POLLIN),
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(RunError::Poll(e)),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if parent_ready {
            // after the seed the parent writes only pings (one line each); end of input means
            // it closed the pipe: stop. (A buffer as large as stdin's own reads past it.)
            let mut buf = [0u8; 8192];
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    tracing::info!(
                        "{}: {} knock(s) read in all; {} not understood, {} not for knockerd, {} too long, {} overrun(s) reported by the kernel",
                        source.name(),
                        totals.knocks,
                        totals.malformed,
                        totals.ignored,
                        totals.too_long,
                        totals.overruns
                    );
                    return Ok(());
                }
                Ok(n) => {
                    if buf[..n].contains(&b'\n') {
                        reports.push(Report::Pong);
                    }
                }
            }
        }
        let recheck_due = next_recheck.is_some_and(|t| Instant::now() >= t);
        if recheck_due {
            next_recheck = recheck.map(|r| Instant::now() + r);
        }
        if knock_ready || recheck_due {
            knocks.clear();
            datagrams.clear();
            match source.recv_batch(&mut knocks, &mut datagrams) {
                Ok(stats) => {
                    batched = stats.batched > 0;
                    totals.add(stats);
                    tally.source(stats);
                    if stats.overruns > 0 && !overrun_reported {
                        overrun_reported = true;
                        tracing::warn!("the kernel dropped knock packets because knockerd fell behind (a flood?); reported once");
                    }
                    if stats.too_long > 0 && !too_long_reported {
                        too_long_reported = true;
                        tracing::warn!(
                            "{}: dropped a line longer than {} bytes (more are counted, not reported)",
                            source.name(),
                            crate::source::MAX_LINE_BYTES
                        );
                    }
                    if stats.malformed > 0 {
                        tracing::debug!(
                            "{}: {} line(s) or packet(s) not understood",
                            source.name(),
                            stats.malformed
                        );
                    }
                }
                Err(e) => tracing::warn!("reading {}: {e}", source.name()),
            }
            read = knocks.len() + datagrams.len();
            let now = Instant::now();
            // TOTP doors follow the wall clock (a cheap comparison unless the step changed)
            engine.set_wall_clock(unix_now());
            tally.seen(knocks.iter().chain(datagrams.iter().map(|d| &d.knock)));
            // the read's table lookups, started together (a flood of new sources misses cache)
            engine.prefetch(&knocks);
            for k in &knocks {
                tracing::trace!(
                    "knock {} -> {} {} flags {}",
                    k.src,
                    k.dst,
                    k.service(),
                    k.tcp_flags
                );
                engine.handle(now, k);
            }
            for d in &datagrams {
                engine.handle_datagram(now, &d.knock, &d.payload);
            }
        }
        pacer.read(Instant::now(), read);
        if read > 0 {
            pacer.kernel_batches(batched);
        }
        if let Some(on) = pacer.change() {
            reports.push(Report::Batching(on));
        }
        engine.handle_timeout(Instant::now());
        while let Some(ev) = engine.poll_event() {
            // the engine's doors are the configuration's, in order: every index is one of them
            let door = |index: usize| doors.get(index).cloned();
            match ev {
                Event::Used { index, tag, .. } => {
                    reports.extend(door(index).map(|door| Report::Used { door, tag }))
                }
                Event::Seen {
                    index,
                    digest,
                    until_unix,
                    ..
                } => reports.extend(door(index).map(|door| Report::Seen {
                    door,
                    digest: Digest(digest),
                    until_unix,
                })),
                Event::Grant(g) => {
                    let name = g.door_name.clone();
                    match door(g.door).map(|door| grant_report(door, g)) {
                        Some(Ok(r)) => reports.push(r),
                        Some(Err(e)) => tracing::warn!(
                            "door={name}: a grant that cannot be reported ({e}); dropped"
                        ),
                        None => tracing::warn!(
                            "door={name}: a grant for no door of the configuration; dropped"
                        ),
                    }
                }
                Event::Refused { door, src, reason } => {
                    tally.refused(&door, Reason::of_refusal(&reason));
                    refusals.log(&door, src, &reason)
                }
                Event::Failed { door, src, reason } => {
                    tally.refused(&door, Reason::of_failure(&reason));
                    refusals.log_attempt(&door, src, &reason, Instant::now())
                }
                ev => log_event(ev),
            }
        }
        reports.extend(tally.take_if_due(&doors, Instant::now()));
        if !reports.is_empty() {
            send(&mut out, &reports)?;
            reports.clear();
        }
    }
}

/// Hands a copy of the source's socket (NFLOG) to the parent, which may then turn the kernel's
/// batching on and off on it while a flood lasts (`nflog::BatchingHandle`): one byte with the
/// descriptor attached, on standard input, which the parent made a Unix socket for that. Done
/// while still root and before a single packet is read. Without it (a parent that gave a pipe,
/// another source) the kernel never batches, and nothing else changes.
fn hand_over_batching(source: &dyn crate::source::KnockSource) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    use std::os::fd::AsRawFd as _;
    let Some(fd) = source.batching_fd() else {
        return;
    };
    let fds = [fd.as_raw_fd()];
    let sent = sendmsg::<UnixAddr>(
        std::io::stdin().as_raw_fd(),
        &[std::io::IoSlice::new(b"b")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    );
    if let Err(e) = sent {
        tracing::debug!(
            "{}: no kernel batching under a flood (cannot hand the socket to the parent: {e})",
            source.name()
        );
    }
}

/// How long `poll` may sleep until `deadline` (rounded up to the next millisecond, so that a
/// wake-up is never early), or without end when there is none.
pub(crate) fn poll_timeout(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    let Some(deadline) = deadline else {
        return PollTimeout::NONE;
    };
    let wait = deadline.saturating_duration_since(now);
    PollTimeout::try_from(wait.as_millis().min(60_000) as u32 + 1).unwrap_or(PollTimeout::MAX)
}

/// What the worker counted for the metrics since its last [`Report::Tally`]: sent at most once
/// per [`crate::metrics::MIN_INTERVAL`], only after a change, so an idle worker sends nothing.
struct Tally {
    /// The doors (by index) each port is watched for, looked up once per knock: a door's fixed
    /// ports (sequence knocks, SPA and SYN ports) by service, its span (if any) in `spans`;
    /// never both for one door and one port, so a door is counted once per knock.
    by_service: knocker_engine::ServiceMap<Vec<usize>>,
    /// Each span of ports (rotating and encoded doors), with its door's index.
    spans: Vec<(knocker_engine::Proto, u16, u16, usize)>,
    /// Door names to indexes (the engine's refusals name their door).
    index: std::collections::HashMap<String, usize>,
    seen: Vec<u64>,
    refused: Vec<std::collections::BTreeMap<Reason, u64>>,
    source: SourceCounts,
    changed: bool,
    /// When the last tally was sent (`None`: none yet, the first is due at once).
    last: Option<Instant>,
    made: Instant,
}

impl Tally {
    fn new(config: &Config) -> Tally {
        let n = config.doors.len();
        let mut index = std::collections::HashMap::new();
        for (i, d) in config.doors.iter().enumerate() {
            index.entry(d.spec.name.clone()).or_insert(i);
        }
        let (by_service, spans) = watched_index(config);
        Tally {
            by_service,
            spans,
            index,
            seen: vec![0; n],
            refused: vec![Default::default(); n],
            source: SourceCounts::default(),
            changed: false,
            last: None,
            made: Instant::now(),
        }
    }

    /// Counts each knock for every door one of whose ports it came to: one hash lookup per
    /// knock, whatever the number of doors and ports (plus one comparison per span).
    fn seen<'a>(&mut self, knocks: impl Iterator<Item = &'a Knock>) {
        for k in knocks {
            let service = k.service();
            if let Some(doors) = self.by_service.get(&service) {
                for &i in doors {
                    self.seen[i] += 1;
                    self.changed = true;
                }
            }
            for &(proto, first, last, i) in &self.spans {
                if service.proto == proto && (first..=last).contains(&service.port) {
                    self.seen[i] += 1;
                    self.changed = true;
                }
            }
        }
    }

    fn refused(&mut self, door: &str, reason: Reason) {
        if let Some(&i) = self.index.get(door) {
            *self.refused[i].entry(reason).or_default() += 1;
            self.changed = true;
        }
    }

    fn source(&mut self, stats: nflog::RecvStats) {
        let s = SourceCounts::from(stats);
        if !s.is_zero() {
            self.source.add(&s);
            self.changed = true;
        }
    }

    /// When the next tally is due: `None` when nothing changed.
    fn due(&self) -> Option<Instant> {
        self.changed.then(|| match self.last {
            Some(last) => last + crate::metrics::MIN_INTERVAL,
            None => self.made,
        })
    }

    /// The tally, if one is due at `now`, with the counts since the last one, in as many
    /// reports as keep each line well within the parent's bound (door names may be long); the
    /// counts start again from zero.
    fn take_if_due(&mut self, doors: &[DoorRef], now: Instant) -> Vec<Report> {
        if self.due().is_none_or(|at| at > now) {
            return Vec::new();
        }
        let mut reports = Vec::new();
        let mut lines: Vec<DoorTally> = Vec::new();
        let mut bytes = 0;
        for (i, door) in doors.iter().enumerate() {
            if self.seen[i] == 0 && self.refused[i].is_empty() {
                continue;
            }
            // a name's bytes may each become six in JSON (\u0001), and the rest of a line is
            // at most a few hundred bytes
            let size = door.name.as_str().len() * 6 + 600;
            if bytes + size > MAX_REPORT_BYTES / 2 && !lines.is_empty() {
                reports.push(std::mem::take(&mut lines));
                bytes = 0;
            }
            bytes += size;
            lines.push(DoorTally {
                door: door.clone(),
                seen: std::mem::take(&mut self.seen[i]),
                refused: std::mem::take(&mut self.refused[i]).into_iter().collect(),
            });
        }
        reports.push(lines);
        let mut source = std::mem::take(&mut self.source);
        let reports = reports
            .into_iter()
            .map(|doors| Report::Tally {
                doors,
                source: std::mem::take(&mut source),
            })
            .collect();
        self.changed = false;
        self.last = Some(now);
        reports
    }
}

/// [`Tally`]'s index of the configuration's watched ports: each door's fixed ports by service
/// (a door once per service, and not where its own span already covers the port), and its
/// span apart.
#[allow(clippy::type_complexity)]
fn watched_index(
    config: &Config,
) -> (
    knocker_engine::ServiceMap<Vec<usize>>,
    Vec<(knocker_engine::Proto, u16, u16, usize)>,
) {
    use crate::config::Watched;
    let mut by_service: knocker_engine::ServiceMap<Vec<usize>> = Default::default();
    let mut spans = Vec::new();
    for (i, d) in config.doors.iter().enumerate() {
        let watched = d.watched();
        let own_spans: Vec<Watched> = watched
            .iter()
            .copied()
            .filter(|w| matches!(w, Watched::Range(..)))
            .collect();
        for w in &watched {
            let service = match *w {
                Watched::Range(p, a, b) => {
                    spans.push((p, a, b, i));
                    continue;
                }
                Watched::Knock(s) => s,
                Watched::Spa(port) => knocker_engine::Service::udp(port),
                Watched::Syn(port) => knocker_engine::Service::tcp(port),
            };
            if own_spans.iter().any(|r| r.contains(service)) {
                continue;
            }
            let doors = by_service.entry(service).or_default();
            if !doors.contains(&i) {
                doors.push(i);
            }
        }
    }
    (by_service, spans)
}

/// The report of a grant. Its fields are the engine's, within bounds that a knock cannot reach
/// (a client name is shorter than the packet that carried it), so the error is never expected.
fn grant_report(door: DoorRef, g: Grant) -> Result<Report, ProtocolError> {
    Ok(Report::Grant {
        door,
        to: g.to,
        open: Services::new(g.open)?,
        millis: u64::try_from(g.duration.as_millis()).unwrap_or(u64::MAX),
        client: g.client.map(Name::new).transpose()?,
        spa: g.spa.map(Into::into),
    })
}

/// The wall clock in Unix seconds (0 before 1970): TOTP steps and the replay memory follow it.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Becomes `user`: no supplementary groups, its own uid and gid (real, effective and saved, so
/// no way back), no capabilities (they go with the uid), no_new_privs, and SIGKILL when the
/// parent dies (set after the uid change, which clears it).
fn drop_privileges(user: &str, parent: u32) -> Result<(), PrivilegeError> {
    use nix::sys::prctl;
    use nix::unistd::{geteuid, getppid, setgroups, setresgid, setresuid, setuid, Uid, User};
    if geteuid().is_root() {
        let u = User::from_name(user)
            .map_err(|source| PrivilegeError::LookUp {
                user: user.to_string(),
                source,
            })?
            .ok_or_else(|| PrivilegeError::NoUser(user.to_string()))?;
        if u.uid.is_root() {
            return Err(PrivilegeError::UserIsRoot(user.to_string()));
        }
        setgroups(&[]).map_err(PrivilegeError::Groups)?;
        setresgid(u.gid, u.gid, u.gid).map_err(PrivilegeError::Group)?;
        setresuid(u.uid, u.uid, u.uid).map_err(PrivilegeError::User)?;
        if setuid(Uid::from_raw(0)).is_ok() {
            return Err(PrivilegeError::RootAgain);
        }
    } else {
        tracing::warn!(
            "knockerd is not running as root: the packet worker keeps this user's privileges"
        );
    }
    std::env::set_current_dir("/").map_err(PrivilegeError::Chdir)?;
    prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)?;
    prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(PrivilegeError::DeathSignal)?;
    if getppid().as_raw() != i32::try_from(parent).unwrap_or(-1) {
        return Err(PrivilegeError::ParentGone);
    }
    Ok(())
}

/// Logs the engine's events that need no action.
fn log_event(ev: Event) {
    match ev {
        Event::Progress { door, src, matched, of } => {
            tracing::debug!("door={door} src={src} knock {matched}/{of}")
        }
        Event::Grant(_) | Event::Used { .. } | Event::Seen { .. } => {}
        Event::Refused { door, src, reason } => tracing::warn!("door={door} src={src} refused: {reason}"),
        Event::Exhausted { door } => {
            tracing::warn!("door={door}: no one-time sequence left, the door is closed for good")
        }
        Event::Reset { door, src } => tracing::debug!("door={door} src={src} wrong port, knock reset"),
        // the worker rate-limits these through RefusalLog::log_attempt
        Event::Failed { door, src, reason } => tracing::warn!("door={door} src={src} refused: {reason}"),
        Event::TableFull { capacity } => tracing::warn!(
            "{capacity} partial knocks tracked (max_tracked): dropping the oldest to make room; a flood of spoofed sources? (reported once)"
        ),
    }
}

/// Logs refused requests (SPA packets, encoded knocks) and failed sequence attempts one line
/// each, but at most [`RefusalLog::PER_SECOND`] a second: a flood of garbage must not flood the
/// journal. What was held back is counted and reported in the next second that logs.
///
/// A failed sequence attempt is also limited per source: at most one line per source every
/// [`RefusalLog::PER_SOURCE`], and that line counts the attempts held back since the source's
/// last one. Sources are remembered in a fixed table of [`RefusalLog::SOURCES`] slots, indexed by
/// a randomly keyed hash of the address, so a flood of spoofed sources cannot grow it; a source
/// whose slot another source took may log again sooner, and the cap over all refusals holds.
#[derive(Default)]
struct RefusalLog {
    second: u64,
    logged: u32,
    suppressed: u64,
    /// The per-source table of failed attempts, allocated at the first one.
    sources: Vec<Option<SourceSlot>>,
    hasher: std::collections::hash_map::RandomState,
}

/// When a source's last failed attempt was logged, and how many were held back since.
struct SourceSlot {
    src: std::net::IpAddr,
    last: Instant,
    held: u32,
}

impl RefusalLog {
    const PER_SECOND: u32 = 10;
    const PER_SOURCE: Duration = Duration::from_secs(2);
    const SOURCES: usize = 1024;

    /// Logs a failed sequence attempt, limited per source and over all refusals.
    fn log_attempt(
        &mut self,
        door: &str,
        src: std::net::IpAddr,
        reason: &knocker_engine::Failure,
        now: Instant,
    ) {
        let Some(held) = self.per_source(src, now) else {
            return;
        };
        let more = if held > 0 {
            format!(" ({held} more failed attempt(s) from this source since its last line)")
        } else {
            String::new()
        };
        self.emit(format_args!(
            "door={door} src={src} refused: {reason}{more}"
        ));
    }

    /// Whether a failed attempt from `src` at `now` may be logged: `Some(held)`, with the
    /// attempts held back since its last line, or `None` (counted) within [`Self::PER_SOURCE`].
    fn per_source(&mut self, src: std::net::IpAddr, now: Instant) -> Option<u32> {
        use std::hash::BuildHasher as _;
        if self.sources.is_empty() {
            self.sources = (0..Self::SOURCES).map(|_| None).collect();
        }
        let i = (self.hasher.hash_one(src) % Self::SOURCES as u64) as usize;
        let slot = &mut self.sources[i];
        let held = match slot {
            Some(s) if s.src == src && now.saturating_duration_since(s.last) < Self::PER_SOURCE => {
                s.held = s.held.saturating_add(1);
                return None;
            }
            Some(s) if s.src == src => s.held,
            _ => 0,
        };
        *slot = Some(SourceSlot {
            src,
            last: now,
            held: 0,
        });
        Some(held)
    }

    fn log(&mut self, door: &str, src: std::net::IpAddr, reason: &knocker_engine::Refusal) {
        self.emit(format_args!("door={door} src={src} refused: {reason}"));
    }

    /// One refusal line, under the cap of [`Self::PER_SECOND`].
    fn emit(&mut self, line: std::fmt::Arguments<'_>) {
        let now = unix_now();
        if now != self.second {
            self.second = now;
            self.logged = 0;
        }
        if self.logged >= Self::PER_SECOND {
            self.suppressed += 1;
            return;
        }
        self.logged += 1;
        if self.suppressed > 0 {
            tracing::warn!(
                "{} more refusals were not logged (more than {} a second)",
                self.suppressed,
                Self::PER_SECOND
            );
            self.suppressed = 0;
        }
        tracing::warn!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knock_to(port: u16) -> Knock {
        Knock {
            src: "10.200.1.2".parse().expect("ip"),
            dst: "10.200.1.1".parse().expect("ip"),
            proto: knocker_engine::Proto::Tcp,
            src_port: 40000,
            dst_port: port,
            tcp_flags: knocker_engine::TcpFlags::default(),
        }
    }

    fn tally_config(names: [&str; 2]) -> Config {
        crate::config::native::parse(
            std::path::Path::new("k.toml"),
            &format!(
                "[door.{}]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\n\
                 [door.{}]\nsequence = [\"7000\", \"9100\", \"8100\"]\nopen = [\"443\"]\nopen_for = 30\n",
                names[0], names[1]
            ),
        )
        .expect("config")
    }

    fn refs(config: &Config) -> Vec<DoorRef> {
        config
            .doors
            .iter()
            .enumerate()
            .map(|(i, d)| DoorRef {
                index: i as u32,
                name: Name::new(d.spec.name.clone()).expect("name"),
            })
            .collect()
    }

    #[test]
    fn a_tally_counts_each_doors_ports_and_goes_at_most_once_a_second() {
        let config = tally_config(["ssh", "web"]);
        let doors = refs(&config);
        let mut t = Tally::new(&config);
        let t0 = t.made;
        assert!(
            t.take_if_due(&doors, t0).is_empty(),
            "nothing counted: nothing sent"
        );
        assert_eq!(t.due(), None, "an idle worker is not woken for tallies");
        // 7000 is both doors' first knock, 9100 only web's, 8500 neither's
        t.seen([knock_to(7000), knock_to(9100), knock_to(8500)].iter());
        t.refused("web", Reason::WrongPort);
        t.refused("no such door", Reason::Window);
        let sent = t.take_if_due(&doors, t0);
        let [Report::Tally { doors: lines, .. }] = &sent[..] else {
            panic!("one tally: {sent:?}");
        };
        let by_name: Vec<String> = lines
            .iter()
            .map(|l| format!("{} {} {:?}", l.door.name, l.seen, l.refused))
            .collect();
        assert_eq!(by_name, ["ssh 1 []", "web 2 [(WrongPort, 1)]"]);
        t.seen([knock_to(9000)].iter());
        assert_eq!(
            t.due(),
            Some(t0 + crate::metrics::MIN_INTERVAL),
            "the next waits out the second"
        );
        assert!(t
            .take_if_due(&doors, t0 + Duration::from_millis(999))
            .is_empty());
        let sent = t.take_if_due(&doors, t0 + crate::metrics::MIN_INTERVAL);
        assert!(
            matches!(&sent[..], [Report::Tally { doors, .. }] if doors.len() == 1 && doors[0].seen == 1),
            "counts since the last tally only: {sent:?}"
        );
    }

    #[test]
    fn the_tallys_index_counts_as_the_doors_watched_ports_say_once_per_door() {
        let mut config = tally_config(["ssh", "web"]);
        // web watches a span too, which covers its own knock 9100: counted once, not twice
        config.doors[1].kind = DoorKind::Encoded {
            span: crate::config::PortSpan {
                proto: knocker_engine::Proto::Tcp,
                first: 9000,
                last: 9200,
            },
        };
        // a third door on the same ports as ssh: both count
        let mut third = config.doors[0].clone();
        third.spec.name = "ssh2".into();
        config.doors.push(third);
        let mut t = Tally::new(&config);
        let mut expected = vec![0u64; config.doors.len()];
        let mut knocks = Vec::new();
        for port in 6990..9300 {
            for proto in [knocker_engine::Proto::Tcp, knocker_engine::Proto::Udp] {
                let k = Knock {
                    proto,
                    ..knock_to(port)
                };
                // the definition: a door counts a knock to any of its watched ports, once
                for (i, d) in config.doors.iter().enumerate() {
                    if d.watched().iter().any(|w| w.contains(k.service())) {
                        expected[i] += 1;
                    }
                }
                knocks.push(k);
            }
        }
        t.seen(knocks.iter());
        assert_eq!(t.seen, expected);
        // ssh: 7000, 9000, 8000; web: 7000, 8100 and the 201 ports of its span (9100 among
        // them, once); ssh2: as ssh
        assert_eq!(expected, [3, 203, 3]);
    }

    #[test]
    fn a_tally_of_doors_with_long_names_is_split_into_lines_the_parent_takes() {
        let long = ["a".repeat(4000), "b".repeat(4000)];
        let mut config = tally_config(["x", "y"]);
        for (d, n) in config.doors.iter_mut().zip(&long) {
            d.spec.name = n.clone();
        }
        // as many doors as make one line too long for the parent
        let one = config.doors[0].clone();
        config.doors = (0..20).map(|_| one.clone()).collect();
        let doors = refs(&config);
        let mut t = Tally::new(&config);
        for i in 0..20 {
            t.seen[i] = 1;
        }
        t.changed = true;
        let sent = t.take_if_due(&doors, t.made);
        assert!(sent.len() > 1, "split");
        let mut buf = Vec::new();
        send(&mut buf, &sent).expect("send");
        let mut back = Vec::new();
        super::super::protocol::take_reports(&mut buf, &mut back)
            .expect("every line within the bound");
        let lines: usize = back
            .iter()
            .map(|r| match r {
                Report::Tally { doors, .. } => doors.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(lines, 20, "no door lost");
    }

    #[test]
    fn failed_attempts_are_limited_per_source_in_bounded_memory() {
        let mut log = RefusalLog::default();
        let (a, b): (std::net::IpAddr, std::net::IpAddr) = (
            "10.200.1.2".parse().expect("ip"),
            "fd00:200::9".parse().expect("ip"),
        );
        let t0 = Instant::now();
        assert_eq!(log.per_source(a, t0), Some(0));
        assert_eq!(
            log.per_source(b, t0),
            Some(0),
            "each source has its own limit"
        );
        let almost = t0 + RefusalLog::PER_SOURCE - Duration::from_millis(1);
        assert_eq!(log.per_source(a, t0 + Duration::from_millis(10)), None);
        assert_eq!(log.per_source(a, almost), None);
        assert_eq!(
            log.per_source(a, t0 + RefusalLog::PER_SOURCE),
            Some(2),
            "the next line counts what was held back"
        );
        assert_eq!(log.per_source(a, t0 + RefusalLog::PER_SOURCE), None);
        // a flood of spoofed sources reuses the fixed table
        for n in 0..100_000u32 {
            let src = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            log.per_source(src, t0);
        }
        assert_eq!(log.sources.len(), RefusalLog::SOURCES);
    }
}
