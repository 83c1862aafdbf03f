//! The parent's handle on the packet worker: it starts the worker (the same binary, with the
//! hidden `packet-worker` subcommand), seeds it from the ledger, reads its reports without
//! blocking, pings it, and stops or kills it. What it reads is only parsed here; the daemon
//! checks every report against its own configuration before acting on it.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::protocol::{take_reports, Report, Seed, MAX_REPORT_BYTES};
use super::worker::DEFAULT_USER;
use crate::config::Config;
use crate::ledger::Ledger;
use crate::overrides::Overrides;

/// How often the parent pings the packet worker, and how long it waits for the pong before it
/// takes the worker for hung and replaces it.
const PING_EVERY: Duration = Duration::from_secs(5);
const PONG_WITHIN: Duration = Duration::from_secs(5);

/// Who the packet worker becomes: `--worker-user`, else `[daemon] worker_user`, else nobody.
pub(crate) fn worker_user(config: &Config) -> &str {
    config.worker_user.as_deref().unwrap_or(DEFAULT_USER)
}

/// The packet worker, as the parent holds it: its standard input (the seed; closing it stops
/// the worker) and its standard output (reports), read without blocking.
pub(crate) struct Worker {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
    buf: Vec<u8>,
    /// When the unanswered ping was sent, if one is.
    pinged: Option<Instant>,
    next_ping: Instant,
}

impl Worker {
    /// Starts a worker for the configuration at `source`, seeds it, and waits until it has
    /// bound NFLOG and dropped its privileges.
    pub(crate) fn start(
        source: &crate::knockd::Source,
        overrides: &Overrides,
        user: &str,
        seed: &Seed,
    ) -> Result<Worker, String> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().map_err(|e| format!("cannot find knockerd: {e}"))?;
        let mut cmd = Command::new(exe);
        match source {
            crate::knockd::Source::Native(p) => cmd.arg("--config").arg(p),
            crate::knockd::Source::Knockd(p) => cmd.arg("--knockd-conf").arg(p),
            crate::knockd::Source::Fwknop {
                access,
                fwknopd_conf,
            } => {
                cmd.arg("--fwknop-access").arg(access);
                if let Some(c) = fwknopd_conf {
                    cmd.arg("--fwknopd-conf").arg(c);
                }
                &mut cmd
            }
        };
        if let Some(d) = &overrides.state_dir {
            cmd.arg("--state-dir").arg(d);
        }
        for _ in 0..overrides.verbose {
            cmd.arg("-v");
        }
        cmd.args([
            "packet-worker",
            "--parent",
            &std::process::id().to_string(),
            "--user",
            user,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the packet worker: {e}"))?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the packet worker has no pipes".into());
        };
        let mut line = serde_json::to_vec(seed).map_err(|e| e.to_string())?;
        line.push(b'\n');
        stdin
            .write_all(&line)
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot seed the packet worker: {e}"))?;
        nix::fcntl::fcntl(
            &stdout,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| format!("cannot set up the packet worker's pipe: {e}"))?;
        let mut w = Worker {
            child,
            stdin: Some(stdin),
            stdout,
            buf: Vec::new(),
            pinged: None,
            next_ping: Instant::now() + PING_EVERY,
        };
        if let Err(e) = w.wait_ready(Duration::from_secs(20)) {
            w.stop();
            return Err(e);
        }
        Ok(w)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        let mut reports = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the packet worker was not ready within {}s",
                    limit.as_secs()
                ));
            }
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                .unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut fds, timeout);
            let alive = self.read(&mut reports)?;
            match reports.first() {
                Some(Report::Ready) if reports.len() == 1 => return Ok(()),
                Some(other) => {
                    return Err(format!(
                        "the packet worker reported {other:?} before it was ready"
                    ))
                }
                None if !alive => {
                    return Err(format!(
                        "the packet worker exited before it was ready ({})",
                        self.stop()
                    ))
                }
                None => {}
            }
        }
    }

    /// Reads what the worker wrote: complete lines become reports. `Ok(false)` once the worker
    /// has closed its output (it exited); an error for anything that is not a report.
    pub(crate) fn read(&mut self, out: &mut Vec<Report>) -> Result<bool, String> {
        use std::io::Read as _;
        let mut alive = true;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stdout.read(&mut chunk) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.len() > 64 * MAX_REPORT_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading its reports: {e}")),
            }
        }
        let parsed = take_reports(&mut self.buf, out);
        if out.contains(&Report::Pong) {
            self.pinged = None;
        }
        parsed.map(|()| alive)
    }

    /// When [`Worker::watchdog`] has something to do: the next ping, or the end of the wait for
    /// the pong.
    pub(crate) fn watchdog_due(&self) -> Instant {
        match self.pinged {
            Some(at) => at + PONG_WITHIN,
            None => self.next_ping,
        }
    }

    /// The watchdog: a ping every [`PING_EVERY`]; no pong within [`PONG_WITHIN`] means a hung
    /// worker, which is killed (the error says so; the caller replaces it).
    pub(crate) fn watchdog(&mut self, now: Instant) -> Result<(), String> {
        match self.pinged {
            Some(at) if now.duration_since(at) > PONG_WITHIN => {
                self.kill();
                return Err(format!(
                    "the packet worker did not answer a ping within {}s (hung?)",
                    PONG_WITHIN.as_secs()
                ));
            }
            None if now >= self.next_ping => {
                // an error means its input is closed: it exited, and its output says so
                let _ = self.ping();
                self.pinged = Some(now);
                self.next_ping = now + PING_EVERY;
            }
            _ => {}
        }
        Ok(())
    }

    /// Asks the worker to answer (a line on its input).
    fn ping(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        match self.stdin.as_mut() {
            Some(i) => i.write_all(b"ping\n").and_then(|()| i.flush()),
            None => Ok(()),
        }
    }

    /// Kills a worker that no longer answers, at once.
    fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the worker (closing its input; then SIGKILL if it lingers) and says how it ended.
    pub(crate) fn stop(&mut self) -> String {
        self.stdin = None;
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    return self
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string());
                }
            }
        }
    }
}

impl AsFd for Worker {
    /// The worker's output, for the daemon's poll.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }
}

impl Seed {
    /// The ledger's used steps and counters, and its replay digests.
    pub fn from_ledger(ledger: &Ledger) -> Seed {
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
