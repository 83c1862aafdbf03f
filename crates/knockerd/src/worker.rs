//! The packet worker: the half of knockerd that reads packets, and holds no privilege.
//!
//! knockerd runs as two processes. The parent (root) owns the firewall (the nft table, the
//! allow sets over netlink), the ledger, the door commands and the signals. The worker is the
//! same binary, started by the parent with the hidden `packet-worker` subcommand: it reads the
//! configuration and its keys and binds NFLOG while it is still root, then drops to an
//! unprivileged user (`nobody`: no supplementary groups, no capabilities, no_new_privs, killed
//! when the parent dies) before it reads a single packet. Every parser of hostile input (NFLOG
//! messages, IP headers, encoded knocks, fwknop and knocker SPA datagrams, stealth SYNs) and the
//! engine run there.
//!
//! The worker tells the parent what it decided, one JSON object per line on its standard output
//! ([`Report`]), and answers the parent's pings (a line on its standard input) with a pong, so
//! that a worker that hangs is noticed and replaced; the parent trusts none of it: it looks the door up by name in its own copy of
//! the configuration and the gatekeeper validates every grant (door, services, duration,
//! address) before touching the firewall. A worker that sends anything else, or dies, is
//! replaced; the engine's memory of replays and used steps comes back from the ledger, which
//! the parent sends in a [`Seed`] on the worker's standard input when it starts.

use std::io::{BufRead, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::Instant;

use knocker_engine::{Event, Kind, Knock};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use crate::daemon::{self, Overrides, RefusalLog};
use crate::knockd::Source;
use crate::ledger;
use crate::nflog::NflogSource;
use crate::ruleset;

/// The user the worker runs as once it has bound NFLOG.
pub const DEFAULT_USER: &str = "nobody";
/// The longest line either side accepts: a seed can hold 65 536 replay digests (~80 bytes each).
pub const MAX_SEED_BYTES: u64 = 8 << 20;
/// The longest report line the parent accepts.
pub const MAX_REPORT_BYTES: usize = 64 << 10;

/// What the worker reports to the parent, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Report {
    /// NFLOG is bound and privileges are dropped: packets are being read.
    Ready,
    /// The answer to a ping from the parent: the worker's loop is alive.
    Pong,
    /// A one-time line, counter or time step was used: make it durable before the grant.
    Used { door: String, tag: u64 },
    /// A request's replay digest: make it durable with the grant that follows.
    Seen {
        door: String,
        digest: String,
        until_unix: u64,
    },
    /// A door was opened: the gatekeeper validates it and applies it.
    Grant {
        door: String,
        to: IpAddr,
        open: Vec<String>,
        millis: u64,
        client: Option<String>,
    },
}

/// What the parent hands a new worker: the ledger's used steps and replay digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// (door, "totp" or "hotp", last used step or counter)
    pub used: Vec<(String, String, u64)>,
    /// (digest in hex, remembered until this Unix time)
    pub seen: Vec<(String, u64)>,
}

impl Seed {
    pub fn from_ledger(ledger: &ledger::Ledger) -> Seed {
        let state = ledger.state();
        Seed {
            used: state
                .used_all()
                .map(|(door, key, value)| (door.to_string(), key.to_string(), value))
                .collect(),
            seen: state
                .seen_all()
                .map(|(digest, until)| (digest.to_string(), until))
                .collect(),
        }
    }
}

/// The worker's main: runs until the parent closes its standard input (or dies).
pub fn run(source: &Source, overrides: &Overrides, user: &str, parent: u32) -> Result<(), String> {
    // Ctrl-C in a terminal reaches the whole process group: the parent decides when to stop.
    let mut mask = nix::sys::signal::SigSet::empty();
    mask.add(nix::sys::signal::Signal::SIGINT);
    mask.add(nix::sys::signal::Signal::SIGHUP);
    mask.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;

    let mut config = daemon::load(source, overrides)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_SEED_BYTES)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the seed: {e}"))?;
    let seed: Seed =
        serde_json::from_str(&line).map_err(|e| format!("the parent sent a bad seed: {e}"))?;
    // rotating doors start from the last step or counter they used, so a recorded knock never
    // works again after a restart
    for d in &mut config.doors {
        if let (Some(r), Kind::Rotating { used, .. }) = (&d.rotating, &mut d.spec.kind) {
            *used = seed
                .used
                .iter()
                .find(|(door, mode, _)| *door == d.spec.name && mode == r.mode)
                .map(|(_, _, v)| *v);
        }
    }
    let mut engine = daemon::engine_for(&config)?;
    engine.set_wall_clock(ledger::unix_now());
    for (digest, until) in &seed.seen {
        if let Some(d) = daemon::unhex32(digest) {
            engine.add_seen(d, *until);
        }
    }
    let mut nflog = NflogSource::bind(config.nflog_group, ruleset::SPA_SNAPLEN)
        .map_err(|e| format!("cannot listen on NFLOG group {}: {e}", config.nflog_group))?;
    drop_privileges(user, parent)?;
    let mut out = std::io::stdout().lock();
    send(&mut out, &[Report::Ready])?;

    let names: Vec<String> = config.doors.iter().map(|d| d.spec.name.clone()).collect();
    let mut knocks: Vec<Knock> = Vec::with_capacity(256);
    let mut datagrams: Vec<crate::nflog::Datagram> = Vec::new();
    let mut refusals = RefusalLog::default();
    let mut reports: Vec<Report> = Vec::new();
    let mut last_read = 0usize;
    let mut overrun_reported = false;
    let stdin = std::io::stdin();
    loop {
        if last_read >= daemon::COALESCE_AT {
            std::thread::sleep(daemon::COALESCE_PAUSE);
        }
        last_read = 0;
        let now = Instant::now();
        let deadline = engine
            .poll_timeout()
            .unwrap_or(now + daemon::MAX_SLEEP)
            .min(now + daemon::MAX_SLEEP);
        let wait = deadline.saturating_duration_since(now);
        let timeout = PollTimeout::try_from(wait.as_millis().min(60_000) as u32 + 1)
            .unwrap_or(PollTimeout::MAX);
        let (knock_ready, parent_ready) = {
            let mut fds = [
                PollFd::new(nflog.as_fd(), PollFlags::POLLIN),
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("poll failed: {e}")),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if parent_ready {
            // after the seed the parent writes only pings (one line each); end of input means
            // it closed the pipe: stop. (A buffer as large as stdin's own reads past it.)
            let mut buf = [0u8; 8192];
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    if buf[..n].contains(&b'\n') {
                        reports.push(Report::Pong);
                    }
                }
            }
        }
        if knock_ready {
            knocks.clear();
            datagrams.clear();
            match nflog.recv_batch_with(&mut knocks, &mut datagrams) {
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
        engine.handle_timeout(Instant::now());
        while let Some(ev) = engine.poll_event() {
            let door = |index: usize| names.get(index).cloned().unwrap_or_default();
            match ev {
                Event::Used { index, tag, .. } => reports.push(Report::Used {
                    door: door(index),
                    tag,
                }),
                Event::Seen {
                    index,
                    digest,
                    until_unix,
                    ..
                } => reports.push(Report::Seen {
                    door: door(index),
                    digest: daemon::hex(&digest),
                    until_unix,
                }),
                Event::Grant(g) => reports.push(Report::Grant {
                    door: g.door_name,
                    to: g.to,
                    open: g.open.iter().map(|s| s.to_string()).collect(),
                    millis: u64::try_from(g.duration.as_millis()).unwrap_or(u64::MAX),
                    client: g.client,
                }),
                Event::Refused { door, src, reason } => refusals.log(&door, src, &reason),
                Event::Failed { door, src, reason } => {
                    refusals.log_attempt(&door, src, &reason, Instant::now())
                }
                ev => daemon::log_event(ev),
            }
        }
        if !reports.is_empty() {
            send(&mut out, &reports)?;
            reports.clear();
        }
    }
}

/// Writes reports as JSON lines, in one write.
fn send(out: &mut impl Write, reports: &[Report]) -> Result<(), String> {
    let mut buf = Vec::new();
    for r in reports {
        serde_json::to_writer(&mut buf, r).map_err(|e| e.to_string())?;
        buf.push(b'\n');
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot report to the parent (is it gone?): {e}"))
}

/// Becomes `user`: no supplementary groups, its own uid and gid (real, effective and saved, so
/// no way back), no capabilities (they go with the uid), no_new_privs, and SIGKILL when the
/// parent dies (set after the uid change, which clears it).
fn drop_privileges(user: &str, parent: u32) -> Result<(), String> {
    use nix::sys::prctl;
    use nix::unistd::{geteuid, getppid, setgroups, setresgid, setresuid, setuid, Uid, User};
    if geteuid().is_root() {
        let u = User::from_name(user)
            .map_err(|e| format!("cannot look up user {user:?}: {e}"))?
            .ok_or_else(|| {
                format!("no user {user:?} to run the packet worker as (it reads packets with no privilege)")
            })?;
        if u.uid.is_root() {
            return Err(format!(
                "user {user:?} is root: the packet worker must not be"
            ));
        }
        setgroups(&[]).map_err(|e| format!("cannot drop supplementary groups: {e}"))?;
        setresgid(u.gid, u.gid, u.gid).map_err(|e| format!("cannot change group: {e}"))?;
        setresuid(u.uid, u.uid, u.uid).map_err(|e| format!("cannot change user: {e}"))?;
        if setuid(Uid::from_raw(0)).is_ok() {
            return Err("the packet worker could become root again after dropping it".into());
        }
    } else {
        tracing::warn!(
            "knockerd is not running as root: the packet worker keeps this user's privileges"
        );
    }
    std::env::set_current_dir("/").map_err(|e| format!("cannot chdir to /: {e}"))?;
    prctl::set_no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    if getppid().as_raw() != i32::try_from(parent).unwrap_or(-1) {
        return Err("the parent exited while the packet worker started".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_as_one_line_each() {
        let reports = vec![
            Report::Ready,
            Report::Used {
                door: "rot".into(),
                tag: 7,
            },
            Report::Seen {
                door: "spa".into(),
                digest: "ab".repeat(32),
                until_unix: 99,
            },
            Report::Grant {
                door: "ssh".into(),
                to: "10.200.1.2".parse().expect("ip"),
                open: vec!["tcp/22".into()],
                millis: 30_000,
                client: Some("alice".into()),
            },
        ];
        let mut buf = Vec::new();
        send(&mut buf, &reports).expect("send");
        let text = String::from_utf8(buf).expect("utf8");
        let back: Vec<Report> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("parse"))
            .collect();
        assert_eq!(back, reports);
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn unknown_reports_are_refused() {
        for bad in [
            r#"{"grant":{"door":"ssh","to":"10.0.0.1","open":[],"millis":1,"client":null,"extra":1}}"#,
            r#"{"run":{"command":"sh"}}"#,
            r#""ready2""#,
        ] {
            assert!(serde_json::from_str::<Report>(bad).is_err(), "{bad}");
        }
    }
}
