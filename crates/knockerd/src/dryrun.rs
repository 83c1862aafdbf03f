//! `knockerd --dry-run`: the live daemon, deciding but not acting.
//!
//! The packet worker runs exactly as it does for the daemon: it binds its source (NFLOG or the
//! packet socket) as root, drops privilege, and the engine judges every knock. The parent checks
//! each report against its configuration as the daemon does ([`privsep::check`]), and then only
//! logs it: "would grant". It loads no table, adds no set element, opens no ledger, writes no pid
//! file and runs no command. Refusals are logged by the worker, as in the daemon.
//!
//! What a dry run can see: knockerd's table is not loaded, so its `log group N` rules are not
//! there. With the NFLOG source, only the admin's own rules that log to the configured group
//! (`nflog_group`, e.g. `tcp dport 7000 log group 4100`) reach it; single-packet doors need the
//! prefixes knockerd's rules use (`log prefix "knocker-spa"`, `"knocker-syn"`). The packet
//! source sees knocks by itself.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::{fmt_duration, Config};
use crate::daemon::DaemonError;
use crate::overrides::{load, Overrides};
use crate::privsep::{self, Checked, Report, Seed, Worker};

/// How many times the worker may fail before the dry run gives up.
const WORKER_STARTS: usize = 5;

/// Runs until SIGTERM or SIGINT; SIGHUP re-reads the configuration and starts a new worker.
pub fn run(
    config_source: &crate::config::loader::ConfigFile,
    overrides: &Overrides,
) -> Result<(), DaemonError> {
    let mut config = load(config_source, overrides)?;
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(DaemonError::BlockSignals)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::Signalfd)?;
    privsep::engine_for(&config)?;
    let start = |config: &Config| Worker::start(config_source, overrides, config, &Seed::default());
    let mut worker = Some(start(&config)?);
    tracing::info!(
        "dry run ready: {}; nothing is granted, no table loaded, no ledger written, no command run",
        seen_by(&config)
    );
    let mut starts = 1;
    let mut reports: Vec<Report> = Vec::new();
    loop {
        if worker.is_none() {
            if starts >= WORKER_STARTS {
                return Err(DaemonError::StartProblems(vec![format!(
                    "dry run: the packet worker failed {starts} times"
                )]));
            }
            starts += 1;
            match start(&config) {
                Ok(w) => worker = Some(w),
                Err(e) => tracing::error!("dry run: cannot start the packet worker: {e}"),
            }
        }
        let now = Instant::now();
        let deadline = worker
            .as_ref()
            .map_or(now + Duration::from_secs(1), Worker::watchdog_due);
        // the watchdog's next ping, or a retry of a worker that could not start: no other tick
        let timeout = crate::privsep::poll_timeout(Some(deadline), now);
        let (signal_ready, reports_ready) = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(w) = &worker {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(DaemonError::Poll(e)),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGHUP) => match load(config_source, overrides) {
                        Ok(new) => {
                            if let Some(mut w) = worker.take() {
                                w.stop();
                            }
                            config = new;
                            starts = 0;
                            tracing::info!("dry run: configuration reloaded from {config_source}");
                        }
                        Err(e) => tracing::error!("dry run: reload refused: {e}"),
                    },
                    Ok(s) => {
                        tracing::info!("{s} received, stopping the dry run");
                        if let Some(mut w) = worker.take() {
                            w.stop();
                        }
                        return Ok(());
                    }
                    Err(_) => {}
                }
            }
        }
        if reports_ready {
            Worker::read_or_retire(&mut worker, &mut reports);
            for r in &reports {
                log_report(&config, r);
            }
        }
        if let Some(Err(e)) = worker.as_mut().map(|w| w.watchdog(Instant::now())) {
            tracing::error!("{e}; replacing it");
            worker = None;
        }
    }
}

/// What the worker's source sees in a dry run, for the first line of its log.
fn seen_by(config: &Config) -> String {
    let source = config.source.describe(config.nflog_group);
    match &config.source {
        crate::config::SourceSpec::Nflog => format!(
            "knocks are seen only through your own rules that log to {source} (knockerd's table is not loaded)"
        ),
        crate::config::SourceSpec::KernelLog { .. } => format!(
            "knocks are seen only in lines your own LOG rules write to {source} (knockerd's table is not loaded)"
        ),
        crate::config::SourceSpec::Packet { .. } | crate::config::SourceSpec::LogFile { .. } => {
            format!("knocks are seen on {source}")
        }
    }
}

/// Logs what the daemon would do for one report.
fn log_report(config: &Config, r: &Report) {
    match privsep::check(config, r) {
        Err(e) => tracing::error!("{e}"),
        Ok(Checked::Nothing) | Ok(Checked::Seen { .. }) | Ok(Checked::Tally { .. }) => {}
        Ok(Checked::Used { index, tag }) => tracing::info!(
            "dry run: door={} would record used {tag} (not recorded)",
            config.doors[index].spec.name
        ),
        Ok(Checked::Grant(g)) => {
            let open: Vec<String> = g.open.iter().map(|s| s.to_string()).collect();
            let open = if open.is_empty() {
                "its start command (opens nothing in the firewall)".to_string()
            } else {
                open.join(",")
            };
            let client = g
                .client
                .as_ref()
                .map(|c| format!(" client={c:?}"))
                .unwrap_or_default();
            tracing::info!(
                "dry run: door={} src={}{client} would grant {open} for {} (nothing changed)",
                g.door_name,
                g.to,
                fmt_duration(g.duration)
            );
        }
    }
}
