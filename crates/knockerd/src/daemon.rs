//! The daemon's loop: NFLOG in, engine, gatekeeper out; signals for stop and reload.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use knocker_engine::{Engine, EngineConfig, Event, Kind, Knock};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::{fmt_duration, Config, OnStop, TABLE};
use crate::gatekeeper::{Gatekeeper, Verdict};
use crate::ledger::{self, Ledger, Record};
use crate::nflog::NflogSource;
use crate::nftset::NftSets;
use crate::ruleset::{self, TableSpec, SET4, SET6};

/// The longest the loop sleeps, so that running commands are reaped and stop commands are not
/// late even when no knocks arrive.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Under a flood, being woken for every logged packet costs more than handling it (a context
/// switch and a poll per packet). After a read that found at least [`COALESCE_AT`] packets,
/// the loop pauses this long before it polls again, so that the next read takes many. An idle
/// server, and a single knock, never wait.
const COALESCE_PAUSE: Duration = Duration::from_micros(250);
const COALESCE_AT: usize = 8;

/// The engine for a validated configuration. Native configurations were already held to the
/// strict rules by `config::parse`; a knockd.conf runs as knockd would run it (its sweep and
/// overlap warnings were logged when it was loaded), so the engine is built in compat mode.
fn engine_for(config: &Config) -> Result<Engine, String> {
    Engine::new_compat(EngineConfig {
        doors: config.doors.iter().map(|d| d.spec.clone()).collect(),
        max_tracked: config.max_tracked,
    })
    .map(|(engine, _warnings)| engine)
    .map_err(|e| e.to_string())
}

/// Logs what the configuration makes knockerd do, once at start and after each reload.
fn announce(config: &Config) {
    for d in &config.doors {
        let open: Vec<String> = d.spec.open.iter().map(|s| s.to_string()).collect();
        let opens = if open.is_empty() {
            "runs its commands".to_string()
        } else {
            format!("opens {}", open.join(","))
        };
        // a single-packet door has no window between knocks
        let within = if d.spa_port.is_some() || d.syn_port.is_some() {
            String::new()
        } else {
            format!(" within {}", fmt_duration(d.spec.window))
        };
        tracing::info!(
            "door={} {}{within} {} for {}{}",
            d.spec.name,
            d.describe_knocks_for_log(),
            opens,
            fmt_duration(d.spec.open_for),
            d.spec
                .tcp_flags
                .map(|f| format!(" (tcp flags {f})"))
                .unwrap_or_default()
        );
        if d.replayable() {
            tracing::warn!(
                "door={}: a static sequence can be replayed by anyone who records it; prefer a one-time, rotating or SPA door where that matters",
                d.spec.name
            );
        }
        if d.one_time.as_ref().is_some_and(|f| f.entries.is_empty()) {
            tracing::warn!(
                "door={}: no one-time sequence left, the door is closed for good",
                d.spec.name
            );
        }
    }
}

/// What the command line sets over the configuration file, at start and at every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--state-dir`: where the ledger lives (a knockd.conf has no key for it).
    pub state_dir: Option<std::path::PathBuf>,
}

/// Loads the configuration and applies the command line's overrides.
pub fn load(
    config_source: &crate::knockd::Source,
    overrides: &Overrides,
) -> Result<Config, String> {
    let mut config = crate::knockd::load_source(config_source).map_err(|e| e.to_string())?;
    if let Some(dir) = &overrides.state_dir {
        config.state_dir = dir.clone();
    }
    Ok(config)
}

/// Runs the daemon until SIGTERM or SIGINT. Returns an error message for a failed start.
pub fn run(config_source: &crate::knockd::Source, overrides: &Overrides) -> Result<(), String> {
    let mut config = load(config_source, overrides)?;
    // Signals are taken synchronously through a signalfd, so they must be blocked before any
    // thread exists. Children get an empty mask from std::process.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot create signalfd: {e}"))?;

    let ledger_path = config.state_dir.join(ledger::FILE_NAME);
    let (ledger, recovery) =
        Ledger::open(&ledger_path, ledger::unix_now(), ledger::Options::default())
            .map_err(|e| format!("cannot open the ledger: {e}"))?;
    if let Some(bytes) = recovery.torn_bytes {
        tracing::warn!(
            "ledger {}: dropped a torn last record ({bytes} bytes) left by a crash",
            ledger_path.display()
        );
    }
    // rotating doors start from the last step or counter they used, so a recorded knock never
    // works again after a restart
    seed_used(&mut config, &ledger);
    let mut engine = engine_for(&config)?;
    engine.set_wall_clock(ledger::unix_now());
    // encoded requests seen before a restart stay replays
    seed_seen(&mut engine, &ledger);
    // Bind NFLOG before the table exists, so no logged knock is ever missed: once the table is
    // in place, knockerd is ready.
    let mut source = NflogSource::bind(config.nflog_group, ruleset::SPA_SNAPLEN)
        .map_err(|e| format!("cannot listen on NFLOG group {}: {e}", config.nflog_group))?;
    ruleset::apply(&TableSpec::from_config(&config))
        .map_err(|e| format!("cannot load table inet {TABLE}: {e}"))?;
    let mut sets =
        NftSets::open(TABLE, SET4, SET6).map_err(|e| format!("cannot open the allow sets: {e}"))?;
    // The kernel accepts an element into any set with the same key length, so a set left over
    // with another field order would silently grant the wrong thing: check the declaration.
    sets.check().map_err(|e| format!("table inet {TABLE} is not as knockerd declares it ({e}); remove it with `knockerd teardown` and start again"))?;
    let mut gate = Gatekeeper::new(&config, sets, Some(ledger));
    let (ran, scheduled) = gate.recover(Instant::now());
    if ran + scheduled > 0 {
        tracing::info!("ledger: ran {ran} overdue stop command(s), scheduled {scheduled}");
    }
    announce(&config);
    tracing::info!(
        "ready: table inet {TABLE} loaded, watching NFLOG group {} for {} knock port(s), protecting {}",
        config.nflog_group,
        config.knock_services().len(),
        config.protected().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
    );

    let mut knocks: Vec<Knock> = Vec::with_capacity(256);
    let mut datagrams: Vec<crate::nflog::Datagram> = Vec::new();
    let mut refusals = RefusalLog::default();
    let mut last_read = 0usize;
    let mut overrun_reported = false;
    loop {
        if last_read >= COALESCE_AT {
            std::thread::sleep(COALESCE_PAUSE);
        }
        last_read = 0;
        let now = Instant::now();
        let deadline = [
            engine.poll_timeout(),
            gate.poll_timeout(),
            Some(now + MAX_SLEEP),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + MAX_SLEEP);
        let wait = deadline.saturating_duration_since(now);
        let timeout = PollTimeout::try_from(wait.as_millis().min(60_000) as u32 + 1)
            .unwrap_or(PollTimeout::MAX);
        let (knock_ready, signal_ready) = {
            let mut fds = [
                PollFd::new(source.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("poll failed: {e}")),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };

        if signal_ready {
            let mut stop = false;
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGHUP) => {
                        reload(
                            config_source,
                            overrides,
                            &mut config,
                            &mut engine,
                            &mut source,
                            &mut gate,
                        );
                    }
                    Ok(s) => {
                        tracing::info!("{s} received, stopping");
                        stop = true;
                    }
                    Err(_) => {}
                }
            }
            if stop {
                break;
            }
        }

        if knock_ready {
            knocks.clear();
            datagrams.clear();
            match source.recv_batch_with(&mut knocks, &mut datagrams) {
                Ok(stats) => {
                    if stats.overruns > 0 && !overrun_reported {
                        overrun_reported = true;
                        tracing::warn!("the kernel dropped knock packets because knockerd fell behind (a flood?); reported once");
                    }
                }
                Err(e) => tracing::warn!("reading NFLOG: {e}"),
            }
            last_read = knocks.len() + datagrams.len();
            let now = Instant::now();
            // TOTP doors follow the wall clock (a cheap comparison unless the step changed)
            engine.set_wall_clock(ledger::unix_now());
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

        let now = Instant::now();
        engine.handle_timeout(now);
        // A door whose used sequence could not be recorded must not open (fail closed).
        let mut unrecorded: Option<usize> = None;
        let mut seen: Vec<Record> = Vec::new();
        let mut seen_door: Option<(std::sync::Arc<str>, usize)> = None;
        while let Some(ev) = engine.poll_event() {
            // a request's digests go into the ledger with its grant, in one batch and one sync
            if let (Event::Grant(g), Some((_, index))) = (&ev, &seen_door) {
                if g.door == *index && unrecorded != Some(g.door) {
                    seen_door = None;
                    handle_grant(g, &mut gate, now, &seen);
                    seen.clear();
                    continue;
                }
            }
            if !matches!(ev, Event::Seen { .. }) {
                if let Some((door, index)) = seen_door.take() {
                    if let Err(e) = record_seen(gate.ledger(), &seen) {
                        tracing::error!("door={door}: cannot record the request's digest ({e}); the grant is refused");
                        unrecorded = Some(index);
                    }
                    seen.clear();
                }
            }
            match ev {
                Event::Used { door, index, tag } => {
                    match record_used(&config, gate.ledger(), index, tag) {
                        Ok(what) => tracing::info!("door={door} used {what}; it never opens again"),
                        Err(e) => {
                            tracing::error!("door={door}: {e}; the grant is refused");
                            unrecorded = Some(index);
                        }
                    }
                }
                Event::Seen {
                    door,
                    index,
                    digest,
                    until_unix,
                } => {
                    // a request's digests come together, just before its grant
                    seen.push(Record::Seen {
                        digest: hex(&digest),
                        until_unix,
                    });
                    seen_door = Some((door, index));
                    continue;
                }
                Event::Grant(g) if unrecorded == Some(g.door) => {
                    unrecorded = None;
                    tracing::error!(
                        "door={} src={} grant refused: its use could not be recorded",
                        g.door_name,
                        g.to
                    );
                }
                Event::Refused { door, src, reason } => refusals.log(&door, src, &reason),
                ev => handle_event(ev, &mut gate, now),
            }
        }
        if !seen.is_empty() {
            // digests with no grant after them (none today): remembered all the same
            if let Err(e) = record_seen(gate.ledger(), &seen) {
                tracing::error!("cannot record replay digests: {e}");
            }
        }
        gate.handle_timeout(now);
    }

    match config.on_stop {
        OnStop::Withdraw => match ruleset::flush_grants() {
            Ok(()) => tracing::info!("on_stop = withdraw: every open grant was removed"),
            Err(e) => tracing::error!("on_stop = withdraw: could not remove grants: {e}"),
        },
        OnStop::Keep => {
            tracing::info!("open grants stay until their kernel timeouts (on_stop = keep)")
        }
    }
    gate.stop_all(Instant::now());
    gate.finish(Duration::from_secs(10));
    tracing::info!("stopped; knock and protected ports stay closed (remove the table with `knockerd teardown`)");
    Ok(())
}

/// Makes a request's replay digests durable, with one sync.
fn record_seen(ledger: Option<&mut Ledger>, records: &[Record]) -> Result<(), String> {
    match ledger {
        Some(l) => l
            .append_batch(ledger::unix_now(), records)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => Err("no ledger".to_string()),
    }
}

/// Applies a grant (with the records that must be durable with it) and logs the outcome.
fn handle_grant(
    g: &knocker_engine::Grant,
    gate: &mut Gatekeeper<NftSets>,
    now: Instant,
    first: &[Record],
) {
    match gate.apply_recording(g, now, first) {
        Ok(Verdict::Opened {
            to,
            open,
            duration,
            refreshed,
        }) => {
            let open: Vec<String> = open.iter().map(|s| s.to_string()).collect();
            let client = g
                .client
                .as_ref()
                .map(|c| format!(" client={c:?}"))
                .unwrap_or_default();
            tracing::info!(
                "door={} src={to}{client} {} {} for {}",
                g.door_name,
                if refreshed { "refresh" } else { "grant" },
                open.join(","),
                fmt_duration(duration)
            );
        }
        Err(e) => tracing::error!("door={} src={} grant refused: {e}", g.door_name, g.to),
    }
}

fn handle_event(ev: Event, gate: &mut Gatekeeper<NftSets>, now: Instant) {
    match ev {
        Event::Grant(g) => handle_grant(&g, gate, now, &[]),
        Event::Progress { door, src, matched, of } => {
            tracing::debug!("door={door} src={src} knock {matched}/{of}")
        }
        Event::Used { .. } | Event::Seen { .. } => {}
        Event::Refused { door, src, reason } => tracing::warn!("door={door} src={src} refused: {reason}"),
        Event::Exhausted { door } => {
            tracing::warn!("door={door}: no one-time sequence left, the door is closed for good")
        }
        Event::Reset { door, src } => tracing::debug!("door={door} src={src} wrong port, knock reset"),
        Event::TableFull { capacity } => tracing::warn!(
            "{capacity} partial knocks tracked (max_tracked): dropping the oldest to make room; a flood of spoofed sources? (reported once)"
        ),
    }
}

/// Logs refused requests (SPA packets, encoded knocks) one line each, but at most
/// [`RefusalLog::PER_SECOND`] a second: a flood of garbage must not flood the journal. What was
/// held back is counted and reported in the next second that logs.
#[derive(Default)]
struct RefusalLog {
    second: u64,
    logged: u32,
    suppressed: u64,
}

impl RefusalLog {
    const PER_SECOND: u32 = 10;

    fn log(&mut self, door: &str, src: std::net::IpAddr, reason: &knocker_engine::Refusal) {
        let now = ledger::unix_now();
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
        tracing::warn!("door={door} src={src} refused: {reason}");
    }
}

/// Sets each rotating door's last used step or counter from the ledger.
fn seed_used(config: &mut Config, ledger: &Ledger) {
    for d in &mut config.doors {
        if let (Some(r), Kind::Rotating { used, .. }) = (&d.rotating, &mut d.spec.kind) {
            *used = ledger.state().used(&d.spec.name, r.mode);
        }
    }
}

/// Lower-case hex, for replay digests in the ledger.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads back what [`hex`] wrote; `None` for anything else.
fn unhex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Gives the engine the replay digests the ledger still remembers.
fn seed_seen(engine: &mut Engine, ledger: &Ledger) {
    for (digest, until) in ledger.state().seen_all() {
        match unhex32(digest) {
            Some(d) => engine.add_seen(d, until),
            None => tracing::warn!("ledger: ignoring a replay digest that is not 64 hex digits"),
        }
    }
}

/// Makes a used one-time line, counter or time step durable before its grant is applied.
fn record_used(
    config: &Config,
    ledger: Option<&mut Ledger>,
    index: usize,
    tag: u64,
) -> Result<String, String> {
    let door = config.doors.get(index).ok_or("no such door")?;
    if let Some(file) = &door.one_time {
        let i = usize::try_from(tag).map_err(|_| "bad one-time index".to_string())?;
        file.mark_used(i)?;
        let line = file.entries.get(i).map_or(0, |e| e.line);
        return Ok(format!("one-time line {}:{line}", file.path.display()));
    }
    let Some(r) = &door.rotating else {
        return Ok(format!("sequence {tag}"));
    };
    let ledger = ledger.ok_or("no ledger to record it in")?;
    let record = Record::Used {
        door: door.spec.name.clone(),
        key: r.mode.to_string(),
        value: tag,
    };
    ledger
        .append(ledger::unix_now(), record)
        .map_err(|e| format!("cannot record {} {tag} in the ledger: {e}", r.mode))?;
    Ok(format!(
        "{} {}",
        if r.mode == "totp" {
            "time step"
        } else {
            "counter"
        },
        tag
    ))
}

/// Re-reads the configuration; a bad one is refused and the running one kept, whole.
fn reload(
    config_source: &crate::knockd::Source,
    overrides: &Overrides,
    config: &mut Config,
    engine: &mut Engine,
    source: &mut NflogSource,
    gate: &mut Gatekeeper<NftSets>,
) {
    let mut new = match load(config_source, overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return;
        }
    };
    if let Some(ledger) = gate.ledger() {
        seed_used(&mut new, ledger);
    }
    let new_engine = match engine_for(&new) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return;
        }
    };
    let new_source = if new.nflog_group != config.nflog_group {
        match NflogSource::bind(new.nflog_group, ruleset::SPA_SNAPLEN) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(
                    "reload refused, keeping the running configuration: NFLOG group {}: {e}",
                    new.nflog_group
                );
                return;
            }
        }
    } else {
        None
    };
    if let Err(e) = ruleset::apply(&TableSpec::from_config(&new)) {
        tracing::error!("reload refused, keeping the running configuration: {e}");
        return;
    }
    if let Some(s) = new_source {
        *source = s;
    }
    *engine = new_engine;
    engine.set_wall_clock(ledger::unix_now());
    if let Some(ledger) = gate.ledger() {
        seed_seen(engine, ledger);
    }
    gate.reconfigure(&new);
    *config = new;
    announce(config);
    tracing::info!("configuration reloaded from {config_source}");
}
