//! The daemon's loop: NFLOG in, engine, gatekeeper out; signals for stop and reload.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::{fmt_duration, Config, DoorKind, OnStop, RotatingMode, TABLE};
use crate::fleet::{Claim, Decision, Fleet};
use crate::gatekeeper::{Gatekeeper, Verdict};
use crate::ledger::{self, Ledger, Record};
use crate::metrics::Writer as MetricsWriter;
use crate::nftset::NftSets;
use crate::privsep::{self, engine_for, Checked, Report, Seed, Worker};
use crate::ruleset::{self, LiveGrant, TableHealth, TableSpec, SET4, SET6};
use crate::watch::{FirewallWatch, Touched};

pub use crate::overrides::{load, Overrides};

/// How soon the loop tries again to start a packet worker that could not be started. Every
/// other wake-up is a deadline (stop and delayed commands, grants' ends, reaping the commands
/// that run, the watchdog's pings, the metrics' next write, a restore to retry): an idle daemon
/// sleeps until its watchdog pings the worker.
const RESTART_RETRY: Duration = Duration::from_secs(1);

/// Logs what the configuration makes knockerd do, once at start and after each reload.
fn announce(config: &Config) {
    for d in &config.doors {
        // a single-packet door has no window between knocks
        let within = if d.single_packet() {
            String::new()
        } else {
            format!(" within {}", fmt_duration(d.spec.window))
        };
        tracing::info!(
            "door={} {}{within} {}{}",
            d.spec.name,
            d.describe_knocks_for_log(),
            d.describe_opening(),
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
        if d.one_time().is_some_and(|f| f.entries.is_empty()) {
            tracing::warn!(
                "door={}: no one-time sequence left, the door is closed for good",
                d.spec.name
            );
        }
    }
    for w in crate::lockout::warnings(config) {
        tracing::warn!("{w}");
    }
}

/// Why the daemon did not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// What `knockerd check` exits non-zero for (the worker user, `nft`, ...), one each.
    #[error("{}", .0.join("; "))]
    StartProblems(Vec<String>),
    #[error("cannot block signals: {0}")]
    BlockSignals(#[source] nix::Error),
    #[error("cannot create signalfd: {0}")]
    Signalfd(#[source] nix::Error),
    #[error("cannot open the ledger: {0}")]
    Ledger(#[source] ledger::LedgerError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Doors(#[from] knocker_engine::DoorsError),
    #[error(transparent)]
    Worker(#[from] privsep::WorkerError),
    #[error("cannot watch the firewall: {0}")]
    Watch(#[source] std::io::Error),
    #[error("cannot load table inet {TABLE}: {0}")]
    Table(#[source] ruleset::NftError),
    #[error("cannot open the allow sets: {0}")]
    Sets(#[source] std::io::Error),
    #[error("table inet {TABLE} is not as knockerd declares it ({0}); remove it with `knockerd teardown` and start again")]
    Declaration(#[source] std::io::Error),
    /// The packet worker kept failing; what stopping leaves behind.
    #[error("the packet worker failed {WORKER_RESTARTS} times within {}s: stopping ({closed})", WORKER_RESTART_WINDOW.as_secs())]
    WorkerRestarts { closed: String },
    #[error("poll failed: {0}")]
    Poll(#[source] nix::Error),
    #[error("shared_state: {0}")]
    Fleet(#[source] crate::fleet::StoreError),
}

/// Why a reload was refused (the running configuration is kept, whole).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Doors(#[from] knocker_engine::DoorsError),
    /// The first thing `knockerd check` exits non-zero for.
    #[error("{0}")]
    StartProblem(String),
    #[error(transparent)]
    Table(#[from] ruleset::NftError),
    #[error("shared_state: {0}")]
    Fleet(#[source] crate::fleet::StoreError),
}

/// Why a used step or a request's digests could not be made durable (the grant is refused).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no such door")]
    NoSuchDoor,
    #[error("bad one-time index")]
    OneTimeIndex,
    #[error(transparent)]
    OneTime(#[from] crate::onetime::MarkError),
    #[error("no ledger to record it in")]
    NoLedger,
    #[error("cannot record {what} in the ledger: {source}")]
    Ledger {
        what: String,
        source: ledger::LedgerError,
    },
    #[error("{0}")]
    Batch(#[source] ledger::LedgerError),
    #[error(transparent)]
    Counter(#[from] crate::config::knockknock::CounterError),
}

/// Runs the daemon until SIGTERM or SIGINT. Returns an error message for a failed start.
///
/// This is the privileged parent: it owns the table, the sets, the ledger and the commands, and
/// runs the packet worker ([`crate::privsep`]), which reads and judges packets with no privilege.
pub fn run(
    config_source: &crate::config::loader::ConfigFile,
    overrides: &Overrides,
) -> Result<(), DaemonError> {
    // before any key is read
    crate::privsep::sandbox::forbid_core_dumps();
    if overrides.dry_run {
        return crate::dryrun::run(config_source, overrides);
    }
    let notifier = crate::notify::Notifier::from_env();
    let mut config = load(config_source, overrides)?;
    // what `knockerd check` exits non-zero for stops the start too, before anything is changed
    let problems = crate::lockout::start_problems(&config);
    if !problems.is_empty() {
        return Err(DaemonError::StartProblems(problems));
    }
    // Signals are taken synchronously through a signalfd, so they must be blocked before any
    // thread exists. Children get an empty mask from std::process.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(DaemonError::BlockSignals)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::Signalfd)?;

    let ledger_path = config.state_dir.join(ledger::FILE_NAME);
    let (ledger, recovery) =
        Ledger::open(&ledger_path, ledger::unix_now(), ledger::Options::default())
            .map_err(DaemonError::Ledger)?;
    if let Some(bytes) = recovery.torn_bytes {
        tracing::warn!(
            "ledger {}: dropped a torn last record ({bytes} bytes) left by a crash",
            ledger_path.display()
        );
    }
    // the pid file, reload verdicts and systemd's readiness messages (knockerd reload, status)
    let mut control = crate::control::Control::start(&config.state_dir, notifier)?;
    // the doors are checked here too (the worker runs the engine), so that a bad configuration
    // stops the start at once
    engine_for(&config)?;
    // The worker binds NFLOG before the table exists, so no logged knock is ever missed: once
    // the table is in place, knockerd is ready. Rotating doors start from the last step or
    // counter they used and replay digests are remembered: the ledger is the worker's seed.
    let mut worker = Some(Worker::start(
        config_source,
        overrides,
        &config,
        &Seed::from_ledger(&ledger),
    )?);
    // Subscribed before the table is loaded, so that no change to it after that goes unseen.
    let mut watch = FirewallWatch::open(TABLE).map_err(DaemonError::Watch)?;
    ruleset::apply(&TableSpec::from_config(&config)).map_err(DaemonError::Table)?;
    write_include(&config);
    let mut sets = NftSets::open(TABLE, SET4, SET6).map_err(DaemonError::Sets)?;
    // The kernel accepts an element into any set with the same key length, so a set left over
    // with another field order would silently grant the wrong thing: check the declaration.
    sets.check().map_err(DaemonError::Declaration)?;
    let mut gate = Gatekeeper::new(&config, sets, Some(ledger));
    let mut fleet = start_fleet(&config).map_err(DaemonError::Fleet)?;
    gate.counters_mut()
        .shared_configured(config.shared_state.is_some());
    let (ran, scheduled) = gate.recover(Instant::now());
    if ran + scheduled > 0 {
        tracing::info!(
            "ledger: ran {ran} overdue stop or delayed command(s), scheduled {scheduled}"
        );
    }
    // grants still open from before a restart: the kernel's sets are the truth
    match ruleset::live_grants() {
        Ok(live) => {
            let live: Vec<_> = live.iter().filter_map(LiveGrant::parsed).collect();
            let n = gate.adopt(Instant::now(), &live);
            if n > 0 {
                tracing::info!("{n} grant element(s) still open from before the restart");
            }
        }
        Err(e) => tracing::warn!("cannot list the grants still open: {e}"),
    }
    // and the inner hosts their clients named (fwknop -N), beside them
    match ruleset::live_client_nat() {
        Ok(live) => {
            let n = gate.adopt_nat(Instant::now(), &live);
            if n > 0 {
                tracing::info!("{n} client NAT entry(ies) still open from before the restart");
            }
        }
        Err(e) => tracing::warn!("cannot list the client NAT entries still open: {e}"),
    }
    announce(&config);
    tracing::info!(
        "ready: table inet {TABLE} loaded, watching {} for {} knock port(s), protecting {}{}{}",
        config.source_description(),
        config.watched().iter().map(|w| w.ports()).sum::<usize>(),
        config
            .protected()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
        match config.forwarded() {
            f if f.is_empty() => String::new(),
            f => format!(
                ", forwarded {}",
                f.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        },
        match config.routed().len() {
            0 => String::new(),
            n => format!(", routed services of {n} door(s)"),
        }
    );
    control.ready(&config);
    let started_unix = ledger::unix_now();
    let mut metrics = MetricsWriter::new(&config.state_dir, config.metrics_file.as_deref());

    let mut reports: Vec<Report> = Vec::new();
    // when to look at the table again after a restore that failed
    let mut recheck: Option<Instant> = None;
    let mut restarts: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    loop {
        let now = Instant::now();
        if worker.is_none() {
            // a worker that died or misbehaved is replaced, a bounded number of times
            restarts.retain(|t| now.duration_since(*t) < WORKER_RESTART_WINDOW);
            if restarts.len() >= WORKER_RESTARTS {
                return Err(DaemonError::WorkerRestarts {
                    closed: crate::control::closed_note(),
                });
            }
            restarts.push_back(now);
            reread_one_time(&mut config);
            let seed = gate
                .ledger()
                .map(|l| Seed::from_ledger(l))
                .unwrap_or_default();
            match Worker::start(config_source, overrides, &config, &seed) {
                Ok(w) => {
                    tracing::info!("packet worker restarted");
                    gate.counters_mut().worker_restarted();
                    worker = Some(w);
                }
                Err(e) => tracing::error!("cannot restart the packet worker: {e}"),
            }
        }
        let watchdog = worker.as_ref().map(Worker::watchdog_due);
        let retry = worker.is_none().then(|| now + RESTART_RETRY);
        let deadline = [
            gate.poll_timeout(),
            watchdog,
            recheck,
            metrics.due(gate.counters()),
            retry,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = crate::privsep::poll_timeout(deadline, now);
        let (reports_ready, signal_ready, firewall_changed) = {
            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(watch.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(w) = &worker {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(DaemonError::Poll(e)),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (
                fds.get(2).is_some_and(ready),
                ready(&fds[0]),
                ready(&fds[1]),
            )
        };

        // Something changed the firewall: put knocker's table and its grants back first, before
        // anything else, so that protected ports are open for as short a time as possible.
        let mut touched = Touched::default();
        if firewall_changed {
            touched = watch.read().unwrap_or_else(|e| {
                tracing::error!("cannot read nftables' change notifications: {e}");
                Touched {
                    lost: true,
                    ..Touched::default()
                }
            });
        }
        if recheck.is_some_and(|at| at <= Instant::now()) {
            touched.changed = true;
        }
        if touched.any() {
            recheck = guard(&config, &mut gate, touched)
                .err()
                .map(|()| Instant::now() + RECHECK_AFTER);
        }

        if signal_ready {
            let mut stop = false;
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGHUP) => {
                        control.reload_begins();
                        let verdict = reload(
                            config_source,
                            overrides,
                            &mut config,
                            &mut worker,
                            &mut gate,
                            &mut fleet,
                        );
                        control.reload_ends(&config, &verdict);
                        metrics.set_files(&config.state_dir, config.metrics_file.as_deref());
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

        if reports_ready {
            Worker::read_or_retire(&mut worker, &mut reports);
            handle_reports(&config, &mut gate, fleet.as_mut(), &reports, Instant::now());
        }
        // the watchdog: a worker that does not answer its pings is hung, and replaced
        let now = Instant::now();
        if let Some(Err(e)) = worker.as_mut().map(|w| w.watchdog(now)) {
            tracing::error!("{e}; replacing it");
            worker = None;
        }
        gate.handle_timeout(now);
        metrics.write_if_due(gate.counters(), Instant::now(), || {
            gate.counters().render(started_unix, gate.grants_open())
        });
    }

    control.stopping();
    if let Some(mut w) = worker.take() {
        w.stop();
    }
    match config.on_stop {
        OnStop::Withdraw => match ruleset::flush_grants(&TableSpec::from_config(&config)) {
            Ok(()) => {
                gate.grants_ended("withdrawn (on_stop = withdraw)");
                tracing::info!("on_stop = withdraw: every open grant was removed")
            }
            Err(e) => tracing::error!("on_stop = withdraw: could not remove grants: {e}"),
        },
        OnStop::Keep => {
            tracing::info!("open grants stay until their kernel timeouts (on_stop = keep)")
        }
    }
    gate.stop_all(Instant::now());
    gate.finish(Duration::from_secs(10));
    // the last counts, whatever the interval
    metrics.flush(gate.counters(), || {
        gate.counters().render(started_unix, gate.grants_open())
    });
    tracing::info!("stopped; {}", crate::control::closed_note());
    Ok(())
}

/// The fleet's shared store, when the configuration names one (nothing is connected yet).
fn start_fleet(config: &Config) -> Result<Option<Fleet>, crate::fleet::StoreError> {
    let Some(shared) = &config.shared_state else {
        return Ok(None);
    };
    let fleet = Fleet::new(shared)?;
    tracing::info!("shared_state {shared}: once-only claims are made there too, before each grant");
    Ok(Some(fleet))
}

/// How soon the table is looked at again when putting it back failed.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Rewrites the include file for `/etc/nftables.conf` (see [`ruleset::write_include`]). A
/// failure is logged, not fatal: knockerd still restores its table itself after a reload.
fn write_include(config: &Config) {
    if let Err(e) = ruleset::write_include(&config.state_dir, &TableSpec::from_config(config)) {
        tracing::warn!(
            "cannot write {}: {e} (firewall reloads that include it would miss knocker's table)",
            ruleset::include_path(&config.state_dir).display()
        );
    }
}

/// After nftables announced a change to knockerd's table: looks at the table, puts it back if
/// it is missing or altered, and puts the live grants back if its sets were emptied. `Err` when
/// the table could not be restored (the caller tries again soon).
fn guard(config: &Config, gate: &mut Gatekeeper<NftSets>, touched: Touched) -> Result<(), ()> {
    let started = Instant::now();
    tracing::debug!("nftables announced a change to table inet {TABLE}: {touched:?}");
    let spec = TableSpec::from_config(config);
    let health = ruleset::verify(&spec).unwrap_or_else(|e| TableHealth::Differs(e.to_string()));
    let what = match health {
        TableHealth::Intact => {
            if touched.emptied || touched.lost {
                let n = gate.restore(Instant::now());
                gate.counters_mut().table_restored();
                if touched.emptied {
                    tracing::warn!(
                        "the firewall was reloaded with table inet {TABLE} in it (the include): its protection never lapsed; restored {n} live grant element(s) in {} ms",
                        started.elapsed().as_millis()
                    );
                }
            }
            return Ok(());
        }
        TableHealth::Missing => None,
        TableHealth::Differs(why) => Some(why),
    };
    let what = match &what {
        None => "deleted".to_string(),
        Some(why) => format!("changed ({why})"),
    };
    if let Err(e) = ruleset::apply(&spec) {
        tracing::error!(
            "table inet {TABLE} was {what} by another program, and knockerd cannot restore it: {e}; protected ports may be open to everyone, trying again in {}s",
            RECHECK_AFTER.as_secs()
        );
        return Err(());
    }
    let n = gate.restore(Instant::now());
    gate.counters_mut().table_restored();
    let ms = started.elapsed().as_millis();
    if what == "deleted" {
        tracing::error!(
            "table inet {TABLE} was deleted by another program (`nft flush ruleset`, `systemctl restart nftables`?): protected ports were open and knocks unseen until knockerd restored it, {ms} ms after the change, with {n} live grant element(s). Make firewall reloads atomic: add `{}` to /etc/nftables.conf after `flush ruleset` (see `knockerd check`)",
            ruleset::include_line(&config.state_dir)
        );
    } else {
        tracing::error!(
            "table inet {TABLE} was {what} by another program: knockerd put it back as it writes it, {ms} ms after the change ({n} live grant element(s) restored). Put rules of your own in a table of your own; knocker's table is rewritten whenever it changes"
        );
    }
    Ok(())
}

/// Re-reads the one-time files before a new packet worker starts. The worker numbers the lines
/// it reads from those still unused, and reports a used line by that number: the parent must
/// count from the same lines, or it would mark another line than the one knocked (and refuse
/// the grant, or worse, leave the knocked line usable).
fn reread_one_time(config: &mut Config) {
    for door in &mut config.doors {
        let DoorKind::OneTime { file } = &mut door.kind else {
            continue;
        };
        match crate::onetime::OneTimeFile::load(&file.path) {
            Ok(f) => *file = f,
            Err(e) => tracing::error!("door={}: {e}", door.spec.name),
        }
    }
}

/// How often the packet worker may be replaced within [`WORKER_RESTART_WINDOW`] before
/// knockerd gives up (and stays closed).
const WORKER_RESTARTS: usize = 5;
const WORKER_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Acts on what the worker decided. Nothing in a report is trusted: [`privsep::check`] takes
/// its door only if this process's door at that index has that name, and the gatekeeper
/// validates every grant.
///
/// With a fleet's shared store, a once-only use is claimed there first (the worker's own
/// memory, seeded from the ledger, already refused what this host saw): a claim another host
/// made refuses the grant, as a use that cannot be recorded does. It is recorded here all the
/// same (it was used). Order: store claim, ledger record, grant.
fn handle_reports(
    config: &Config,
    gate: &mut Gatekeeper<NftSets>,
    mut fleet: Option<&mut Fleet>,
    reports: &[Report],
    now: Instant,
) {
    // A door whose used sequence could not be recorded (or claimed) must not open (fail
    // closed): the door, and why.
    let mut refused: Option<(usize, String)> = None;
    // a request's digests come just before its grant: one batch, one sync, with the grant
    let mut seen: Vec<Record> = Vec::new();
    let mut seen_claims: Vec<Claim> = Vec::new();
    let mut seen_door: Option<usize> = None;
    for r in reports {
        match privsep::check(config, r) {
            Err(e) => tracing::error!("{e}"),
            Ok(Checked::Nothing) => {}
            Ok(Checked::Tally { doors, source }) => {
                let counters = gate.counters_mut();
                for (index, seen, refused) in doors {
                    let counts = counters.door(&config.doors[index].spec.name);
                    counts.seen = counts.seen.saturating_add(seen);
                    for (reason, n) in refused {
                        let r = counts.refused.entry(reason).or_default();
                        *r = r.saturating_add(n);
                    }
                }
                counters.add_source(&source);
            }
            Ok(Checked::Used { index, tag }) => {
                let door = &config.doors[index].spec.name;
                let claim = used_claim(config, index, tag);
                let fleet_says = match (fleet.as_deref_mut(), claim) {
                    (Some(f), Some(c)) => shared_claim(config, gate, f, index, &[c]),
                    _ => None,
                };
                match record_used(config, gate.ledger(), index, tag) {
                    Ok(what) => tracing::info!("door={door} used {what}; it never opens again"),
                    Err(e) => {
                        tracing::error!("door={door}: {e}; the grant is refused");
                        refused = Some((index, "its use could not be recorded".into()));
                    }
                }
                if let Some(why) = fleet_says {
                    refused = Some((index, why));
                }
            }
            Ok(Checked::Seen {
                index,
                digest,
                until_unix,
            }) => {
                seen.push(Record::Seen {
                    digest: digest.to_hex(),
                    until_unix,
                });
                if let Some(i) = index {
                    seen_claims.push(Claim::Digest {
                        door: config.doors[i].spec.name.clone(),
                        digest: digest.0,
                        until_unix,
                    });
                }
                seen_door = index;
            }
            Ok(Checked::Grant(grant)) => {
                if let Some((_, why)) = refused.take_if(|(door, _)| *door == grant.door) {
                    tracing::error!(
                        "door={} src={} grant refused: {why}",
                        grant.door_name,
                        grant.to
                    );
                    continue;
                }
                let (first, claims) = if seen_door == Some(grant.door) {
                    (std::mem::take(&mut seen), std::mem::take(&mut seen_claims))
                } else {
                    (Vec::new(), Vec::new())
                };
                let fleet_says = match fleet.as_deref_mut() {
                    Some(f) if !claims.is_empty() => {
                        shared_claim(config, gate, f, grant.door, &claims)
                    }
                    _ => None,
                };
                if let Some(why) = fleet_says {
                    tracing::error!(
                        "door={} src={} grant refused: {why}",
                        grant.door_name,
                        grant.to
                    );
                    // this host saw it: its own memory keeps it too
                    if let Err(e) = record_seen(gate.ledger(), &first) {
                        tracing::error!("cannot record replay digests: {e}");
                    }
                    continue;
                }
                handle_grant(&grant, gate, now, &first);
            }
        }
    }
    if !seen.is_empty() {
        // digests with no grant after them (none today): remembered all the same
        if let Err(e) = record_seen(gate.ledger(), &seen) {
            tracing::error!("cannot record replay digests: {e}");
        }
    }
}

/// The shared store's claim for a used one-time line, counter or time step of door `index`:
/// a one-time line by its line number in the file (the worker's tag counts the lines still
/// unused here, which differ from host to host), a counter or step by its value.
fn used_claim(config: &Config, index: usize, tag: u64) -> Option<Claim> {
    let door = config.doors.get(index)?;
    let name = door.spec.name.clone();
    if let Some(file) = door.one_time() {
        let line = file.entries.get(usize::try_from(tag).ok()?)?.line;
        return Some(Claim::Once {
            door: name,
            line: line as u64,
        });
    }
    if door.knockknock_counter().is_some() {
        return Some(Claim::Forward {
            door: name,
            what: "counter",
            value: tag,
        });
    }
    match door.kind {
        DoorKind::Rotating { mode, .. } => Some(Claim::Forward {
            door: name,
            what: mode.as_str(),
            value: tag,
        }),
        _ => None,
    }
}

/// Puts door `index`'s claims to the fleet's store, counts the answer, and says why the grant
/// is refused (None: it may go on).
fn shared_claim(
    config: &Config,
    gate: &mut Gatekeeper<NftSets>,
    fleet: &mut Fleet,
    index: usize,
    claims: &[Claim],
) -> Option<String> {
    let door = &config.doors[index].spec.name;
    let policy = config
        .shared_state
        .as_ref()
        .map(|s| s.policy(door))
        .unwrap_or_default();
    let decision = fleet.decide(door, policy, claims);
    let outages = fleet.outages;
    let up = !fleet.is_down();
    if let Some(c) = gate.counters_mut().shared_mut() {
        c.outages = outages;
        c.up = up;
        match &decision {
            Decision::Claimed => c.claimed += 1,
            Decision::Taken(_) => c.taken += 1,
            Decision::DownRefused(_) => c.down_refused += 1,
            Decision::DownLocal => c.down_local += 1,
        }
    }
    match decision {
        Decision::Claimed | Decision::DownLocal => None,
        Decision::Taken(what) => Some(format!(
            "{what} was used on another server of the fleet (shared_state)"
        )),
        Decision::DownRefused(why) => Some(format!(
            "{why}: no fleet-wide once-only claim (shared_state_down = \"refuse\")"
        )),
    }
}

/// Makes a request's replay digests durable, with one sync.
fn record_seen(ledger: Option<&mut Ledger>, records: &[Record]) -> Result<(), RecordError> {
    match ledger {
        Some(l) => l
            .append_batch(ledger::unix_now(), records)
            .map(|_| ())
            .map_err(RecordError::Batch),
        None => Err(RecordError::NoLedger),
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
            network,
            open,
            duration,
            refreshed,
            ran,
            connections,
        }) => {
            let open: Vec<String> = open.iter().map(|s| s.to_string()).collect();
            let counted = connections
                .map(|n| format!(", {n} new connection(s)"))
                .unwrap_or_default();
            let client = g
                .client
                .as_ref()
                .map(|c| format!(" client={c:?}"))
                .unwrap_or_default();
            // a door that only runs commands (knockd's kind) says what it ran
            let what = match (open.is_empty(), ran) {
                (false, _) => open.join(","),
                (true, Some(cmd)) => {
                    format!("ran start command {cmd} (opens nothing in the firewall)")
                }
                (true, None) if refreshed => {
                    "start command not run again (opens nothing in the firewall)".to_string()
                }
                (true, None) => "no start command (opens nothing in the firewall)".to_string(),
            };
            let sep = if open.is_empty() { ":" } else { "" };
            // a widened grant says whom it lets in
            let reach = network
                .map(|(net, len)| format!(" to {net}/{len} (grant_prefix)"))
                .unwrap_or_default();
            // a client-chosen inner host (fwknop -N), checked by the gatekeeper
            let reach = match g.spa.and_then(|f| f.nat) {
                Some(target) => format!("{reach} sent on to {target}"),
                None => reach,
            };
            tracing::info!(
                "door={} src={to}{client} {}{sep} {what}{reach} for {}{counted}",
                g.door_name,
                if refreshed { "refresh" } else { "grant" },
                fmt_duration(duration)
            );
        }
        Err(e) => tracing::error!("door={} src={} grant refused: {e}", g.door_name, g.to),
    }
}

/// Makes a used one-time line, counter or time step durable before its grant is applied.
fn record_used(
    config: &Config,
    ledger: Option<&mut Ledger>,
    index: usize,
    tag: u64,
) -> Result<String, RecordError> {
    let door = config.doors.get(index).ok_or(RecordError::NoSuchDoor)?;
    if let Some(file) = door.one_time() {
        let i = usize::try_from(tag).map_err(|_| RecordError::OneTimeIndex)?;
        file.mark_used(i)?;
        let line = file.entries.get(i).map_or(0, |e| e.line);
        return Ok(format!("one-time line {}:{line}", file.path.display()));
    }
    // knockknock's counter lives in its profile, as knockknock keeps it: next = used + 1
    if let Some(path) = door.knockknock_counter() {
        let next = crate::config::knockknock::write_counter(&path, tag.saturating_add(1))?;
        return Ok(format!(
            "counter {tag} ({} now holds {next})",
            path.display()
        ));
    }
    let mode = match door.kind {
        DoorKind::Rotating { mode, .. } => mode,
        _ => return Ok(format!("sequence {tag}")),
    };
    let ledger = ledger.ok_or(RecordError::NoLedger)?;
    let record = Record::Used {
        door: door.spec.name.clone(),
        key: mode.as_str().to_string(),
        value: tag,
    };
    ledger
        .append(ledger::unix_now(), record)
        .map_err(|source| RecordError::Ledger {
            what: format!("{} {tag}", mode.as_str()),
            source,
        })?;
    Ok(format!(
        "{} {}",
        if mode == RotatingMode::Totp {
            "time step"
        } else {
            "counter"
        },
        tag
    ))
}

/// Re-reads the configuration; a bad one is refused and the running one kept, whole. A good
/// one gets a new packet worker (the old one stops first: an NFLOG group has one reader).
/// Returns the verdict: why the new configuration was refused.
fn reload(
    config_source: &crate::config::loader::ConfigFile,
    overrides: &Overrides,
    config: &mut Config,
    worker: &mut Option<Worker>,
    gate: &mut Gatekeeper<NftSets>,
    fleet: &mut Option<Fleet>,
) -> Result<(), ReloadError> {
    let mut new = match load(config_source, overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return Err(e.into());
        }
    };
    // the ledger, the pid file and the include file stay where knockerd started with them
    if new.state_dir != config.state_dir {
        tracing::warn!(
            "state_dir changed to {}: that takes a restart; keeping {} until then",
            new.state_dir.display(),
            config.state_dir.display()
        );
        new.state_dir = config.state_dir.clone();
    }
    if let Err(e) = engine_for(&new) {
        tracing::error!("reload refused, keeping the running configuration: {e}");
        return Err(e.into());
    }
    if let Some(e) = crate::lockout::start_problems(&new).first() {
        tracing::error!("reload refused, keeping the running configuration: {e}");
        return Err(ReloadError::StartProblem(e.to_string()));
    }
    // a new store (and connection) only when shared_state changed
    let new_fleet = if new.shared_state != config.shared_state {
        match start_fleet(&new) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(
                    "reload refused, keeping the running configuration: shared_state: {e}"
                );
                return Err(ReloadError::Fleet(e));
            }
        }
    } else {
        None
    };
    if let Err(e) = ruleset::apply(&TableSpec::from_config(&new)) {
        tracing::error!("reload refused, keeping the running configuration: {e}");
        return Err(e.into());
    }
    if let Some(f) = new_fleet {
        *fleet = f;
        gate.counters_mut()
            .shared_configured(new.shared_state.is_some());
    }
    write_include(&new);
    if let Some(mut w) = worker.take() {
        w.stop();
    }
    let seed = gate
        .ledger()
        .map(|l| Seed::from_ledger(l))
        .unwrap_or_default();
    match Worker::start(config_source, overrides, &new, &seed) {
        Ok(w) => *worker = Some(w),
        // the loop starts another (the files were good a moment ago)
        Err(e) => tracing::error!("reload: cannot start the packet worker: {e}"),
    }
    gate.reconfigure(&new);
    *config = new;
    announce(config);
    tracing::info!("configuration reloaded from {config_source}");
    Ok(())
}
