//! The parent's handle on the packet worker: it starts the worker (the same binary, with the
//! hidden `packet-worker` subcommand), seeds it from the ledger, reads its reports without
//! blocking, pings it, and stops or kills it. What it reads is only parsed here; the daemon
//! checks every report against its own configuration ([`check`]) before acting on it.

use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::protocol::{
    take_reports, Digest, DoorRef, Name, ProtocolError, Reason, Report, RotatingMode, Seed,
    SourceCounts, MAX_REPORT_BYTES,
};
use super::worker::DEFAULT_USER;
use crate::config::Config;
use crate::ledger::Ledger;
use crate::nflog::BatchingHandle;
use crate::overrides::Overrides;

/// How often the parent pings the packet worker, and how long it waits for the pong before it
/// takes the worker for hung and replaces it.
const PING_EVERY: Duration = Duration::from_secs(5);
const PONG_WITHIN: Duration = Duration::from_secs(5);

/// Who the packet worker becomes: `--worker-user`, else `[daemon] worker_user`, else nobody.
pub(crate) fn worker_user(config: &Config) -> &str {
    config.worker_user.as_deref().unwrap_or(DEFAULT_USER)
}

/// What went wrong with the packet worker, as the parent sees it: the caller replaces it.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot find knockerd: {0}")]
    NoExe(#[source] std::io::Error),
    #[error("cannot start the packet worker: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the packet worker has no pipes")]
    NoPipes,
    #[error("{0}")]
    EncodeSeed(#[source] serde_json::Error),
    #[error("cannot seed the packet worker: {0}")]
    Seed(#[source] std::io::Error),
    #[error("cannot set up the packet worker's pipe: {0}")]
    Pipe(#[source] nix::Error),
    #[error("the packet worker was not ready within {0}s")]
    NotReady(u64),
    #[error("the packet worker reported {0:?} before it was ready")]
    EarlyReport(Box<Report>),
    /// It exited first; how it ended.
    #[error("the packet worker exited before it was ready ({0})")]
    ExitedEarly(String),
    #[error("reading its reports: {0}")]
    Read(#[source] std::io::Error),
    /// It wrote something that is not a report.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the packet worker did not answer a ping within {0}s (hung?)")]
    Hung(u64),
}

/// The packet worker, as the parent holds it: its standard input (the seed and the pings;
/// closing it stops the worker), a Unix socket on which the worker hands over its NFLOG socket,
/// its standard output (reports), read without blocking, and its NFLOG socket, on which the
/// parent turns the kernel's batching on and off when the worker reports a flood.
pub(crate) struct Worker {
    child: std::process::Child,
    stdin: Option<UnixStream>,
    /// The worker's NFLOG socket, if it handed it over (closed with the worker: the group stays
    /// bound while a copy is open, and the next worker binds it again).
    batching: Option<BatchingHandle>,
    stdout: std::process::ChildStdout,
    buf: Vec<u8>,
    /// When the unanswered ping was sent, if one is.
    pinged: Option<Instant>,
    next_ping: Instant,
}

impl Worker {
    /// Starts a worker for the configuration at `source` (loaded by the parent as `config`),
    /// seeds it, and waits until it has bound NFLOG and dropped its privileges.
    pub(crate) fn start(
        source: &crate::config::loader::ConfigFile,
        overrides: &Overrides,
        config: &Config,
        seed: &Seed,
    ) -> Result<Worker, WorkerError> {
        let user = worker_user(config);
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().map_err(WorkerError::NoExe)?;
        let mut cmd = Command::new(exe);
        match source {
            crate::config::loader::ConfigFile::Native(p) => cmd.arg("--config").arg(p),
            crate::config::loader::ConfigFile::Knockd(p) => cmd.arg("--knockd-conf").arg(p),
            crate::config::loader::ConfigFile::Knockknock { dir, kernel_log } => {
                cmd.arg("--knockknock-profiles").arg(dir);
                if let Some(k) = kernel_log {
                    cmd.arg("--kernel-log");
                    if let Some(f) = &k.file {
                        cmd.arg("--kernel-log-file").arg(f);
                    }
                    if let Some(p) = &k.prefix {
                        cmd.arg("--log-prefix").arg(p);
                    }
                }
                &mut cmd
            }
            crate::config::loader::ConfigFile::Fwknop {
                access,
                fwknopd_conf,
                allow_legacy,
                nat_networks,
            } => {
                cmd.arg("--fwknop-access").arg(access);
                if let Some(c) = fwknopd_conf {
                    cmd.arg("--fwknopd-conf").arg(c);
                }
                if *allow_legacy {
                    cmd.arg("--fwknop-allow-legacy");
                }
                for n in nat_networks {
                    cmd.arg("--fwknop-nat-targets").arg(n.to_string());
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
        .stdout(Stdio::piped());
        // its standard input is a Unix socket and not a pipe, so that it can hand over its
        // NFLOG socket (SCM_RIGHTS) before it reads a packet
        let (ours, theirs) = {
            use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(WorkerError::Pipe)?
        };
        cmd.stdin(Stdio::from(theirs));
        let spawned = cmd.spawn();
        // the worker's end, which the command holds, closes here: the worker sees its input
        // end only when the parent's closes
        drop(cmd);
        let mut child = spawned.map_err(WorkerError::Spawn)?;
        let mut stdin = UnixStream::from(ours);
        let Some(stdout) = child.stdout.take() else {
            return Err(WorkerError::NoPipes);
        };
        let mut line = serde_json::to_vec(seed).map_err(WorkerError::EncodeSeed)?;
        line.push(b'\n');
        stdin
            .write_all(&line)
            .and_then(|()| stdin.flush())
            .map_err(WorkerError::Seed)?;
        nix::fcntl::fcntl(
            &stdout,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(WorkerError::Pipe)?;
        let mut w = Worker {
            child,
            stdin: Some(stdin),
            batching: None,
            stdout,
            buf: Vec::new(),
            pinged: None,
            next_ping: Instant::now() + PING_EVERY,
        };
        if let Err(e) = w.wait_ready(Duration::from_secs(20)) {
            w.stop();
            return Err(e);
        }
        w.batching = w.take_batching(config.nflog_group);
        if w.batching.is_some() {
            tracing::debug!(
                "NFLOG: the packet worker handed over its socket (for the kernel's batching under a fast flood)"
            );
        }
        Ok(w)
    }

    /// The NFLOG socket the worker handed over before it was ready, if it did: one byte on its
    /// input socket with one descriptor, which must be a bound netlink socket. Anything else
    /// (no descriptor, several, another kind) is closed, logged, and the kernel does not batch.
    fn take_batching(&mut self, group: u16) -> Option<BatchingHandle> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::RawFd;
        let stdin = self.stdin.as_ref()?;
        let mut byte = [0u8; 1];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut fds: Vec<RawFd> = Vec::new();
        {
            let mut iov = [std::io::IoSliceMut::new(&mut byte)];
            let msg = recvmsg::<()>(
                stdin.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .ok()?;
            for c in msg.cmsgs().ok()? {
                if let ControlMessageOwned::ScmRights(received) = c {
                    fds.extend(received);
                }
            }
        }
        let handle = match fds.as_slice() {
            [fd] => BatchingHandle::new(*fd, group)
                .map_err(|e| {
                    tracing::warn!("the packet worker handed over a socket that is not its NFLOG socket ({e}); closed, no kernel batching under a flood")
                })
                .ok(),
            [] => None,
            more => {
                tracing::warn!("the packet worker handed over {} descriptors instead of its NFLOG socket; closed, no kernel batching under a flood", more.len());
                for fd in more {
                    let _ = nix::unistd::close(*fd);
                }
                None
            }
        };
        handle
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), WorkerError> {
        let end = Instant::now() + limit;
        let mut reports = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WorkerError::NotReady(limit.as_secs()));
            }
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                .unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut fds, timeout);
            let alive = self.read(&mut reports)?;
            match reports.first() {
                Some(Report::Ready) if reports.len() == 1 => return Ok(()),
                Some(other) => return Err(WorkerError::EarlyReport(Box::new(other.clone()))),
                None if !alive => return Err(WorkerError::ExitedEarly(self.stop())),
                None => {}
            }
        }
    }

    /// Reads what the worker wrote: complete lines become reports. `Ok(false)` once the worker
    /// has closed its output (it exited); an error for anything that is not a report.
    pub(crate) fn read(&mut self, out: &mut Vec<Report>) -> Result<bool, WorkerError> {
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
                Err(e) => return Err(WorkerError::Read(e)),
            }
        }
        let before = out.len();
        let parsed = take_reports(&mut self.buf, out);
        if out.contains(&Report::Pong) {
            self.pinged = None;
        }
        for r in &out[before..] {
            if let Report::Batching(on) = r {
                self.set_batching(*on);
            }
        }
        parsed.map(|()| alive).map_err(WorkerError::Protocol)
    }

    /// Reads the worker's reports into `out` (cleared first) and retires a worker that exited
    /// or misbehaved: it is stopped, the reason logged, and `worker` left empty for the caller
    /// to start another. Whatever reports it sent before are still in `out`, for the caller to
    /// act on. The daemon's and the dry run's loops share this.
    pub(crate) fn read_or_retire(worker: &mut Option<Worker>, out: &mut Vec<Report>) {
        out.clear();
        let Some(w) = worker.as_mut() else { return };
        match w.read(out) {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("the packet worker exited ({}); restarting it", w.stop());
                *worker = None;
            }
            Err(e) => {
                tracing::error!("the packet worker misbehaved ({e}); replacing it");
                w.stop();
                *worker = None;
            }
        }
    }

    /// Turns the kernel's batching on or off on the worker's NFLOG socket, as the worker
    /// reported a fast flood's start or end; nothing without its socket (another source). Only a
    /// change sends a request, so a worker repeating itself costs nothing; one that lies can only
    /// make the kernel batch its own packets, a tick's delay at most.
    fn set_batching(&mut self, on: bool) {
        let Some(b) = self.batching.as_mut() else {
            return;
        };
        let said = if on { "on" } else { "off" };
        match b.set(on) {
            Ok(true) => tracing::debug!("NFLOG: kernel batching {said} (the packet worker's word)"),
            Ok(false) => {}
            Err(e) => tracing::warn!("NFLOG: cannot turn kernel batching {said}: {e}"),
        }
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
    pub(crate) fn watchdog(&mut self, now: Instant) -> Result<(), WorkerError> {
        match self.pinged {
            Some(at) if now.duration_since(at) > PONG_WITHIN => {
                self.kill();
                return Err(WorkerError::Hung(PONG_WITHIN.as_secs()));
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
        self.batching = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the worker (closing its input; then SIGKILL if it lingers) and says how it ended.
    pub(crate) fn stop(&mut self) -> String {
        self.stdin = None;
        self.batching = None;
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return ended(status),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    return self
                        .child
                        .wait()
                        .map(ended)
                        .unwrap_or_else(|e| e.to_string());
                }
            }
        }
    }
}

/// How the worker ended, in words. A death by SIGSYS is its seccomp filter's doing (see
/// `sandbox`): a system call it is not allowed, from a bug or from someone who took over its
/// parsing; the log says so, apart from other deaths.
fn ended(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(libc::SIGSYS) => format!(
            "killed by SIGSYS: a system call outside its seccomp filter, refused by the kernel (a bug, or an attack on its parsing; the kernel's audit log names the call); {status}"
        ),
        _ => status.to_string(),
    }
}

impl AsFd for Worker {
    /// The worker's output, for the daemon's poll.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }
}

impl Seed {
    /// The ledger's used steps and counters, and its replay digests. Records that no door can
    /// use (another mode, a name or digest out of bounds) stay behind.
    pub fn from_ledger(ledger: &Ledger) -> Seed {
        let state = ledger.state();
        Seed {
            used: state
                .used_all()
                .filter_map(|(door, key, value)| {
                    Some((Name::new(door).ok()?, RotatingMode::parse(key)?, value))
                })
                .collect(),
            seen: state
                .seen_all()
                .filter_map(|(digest, until)| Some((Digest::from_hex(digest)?, until)))
                .collect(),
        }
    }
}

/// A report checked against the parent's own configuration: what the daemon may act on.
#[derive(Debug)]
pub enum Checked {
    /// Nothing to act on (ready, pong, kernel batching on or off).
    Nothing,
    /// Door `index` used the one-time line, counter or time step `tag`: make that durable
    /// before its grant.
    Used { index: usize, tag: u64 },
    /// A request's replay digest, for door `index` if it is one of ours: durable with the grant.
    Seen {
        index: Option<usize>,
        digest: Digest,
        until_unix: u64,
    },
    /// A grant for one of the configured doors, for the gatekeeper to validate and apply.
    Grant(knocker_engine::Grant),
    /// The worker's counts since its last tally: (door index, packets seen, refusals by
    /// reason) for the doors that are this process's, and what the source read.
    Tally {
        doors: Vec<TallyLine>,
        source: SourceCounts,
    },
}

/// A checked tally's line: (door index, packets seen, refusals by reason).
pub type TallyLine = (usize, u64, Vec<(Reason, u64)>);

/// A report the parent refuses: its door is not the parent's door.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error(
        "the packet worker reported {what} for door {} {:?}, but there is no door {} here \
         ({doors} configured; were the files changed without `knockerd reload`?); refused",
        door.index, door.name.as_str(), door.index
    )]
    NoSuchDoor {
        what: &'static str,
        door: DoorRef,
        doors: usize,
    },
    #[error(
        "the packet worker reported {what} for door {} {:?}, but door {} here is {here:?} \
         (were the files changed without `knockerd reload`?); refused",
        door.index, door.name.as_str(), door.index
    )]
    NotThatDoor {
        what: &'static str,
        door: DoorRef,
        here: String,
    },
}

/// The parent's index of the door a report names: the door at that index in the parent's own
/// configuration, if it has the name the report gives it (see [`DoorRef`] for why both).
fn door_index(config: &Config, door: &DoorRef, what: &'static str) -> Result<usize, ReportError> {
    let found = usize::try_from(door.index)
        .ok()
        .and_then(|i| Some((i, config.doors.get(i)?)));
    match found {
        Some((i, d)) if d.spec.name == door.name.as_str() => Ok(i),
        Some((_, d)) => Err(ReportError::NotThatDoor {
            what,
            door: door.clone(),
            here: d.spec.name.clone(),
        }),
        None => Err(ReportError::NoSuchDoor {
            what,
            door: door.clone(),
            doors: config.doors.len(),
        }),
    }
}

/// Checks a report against the configuration. Its fields are in bounds already (they parsed);
/// here its door must be one of this process's doors, at the index the report gives and with
/// the name it gives. The error says what was refused.
pub fn check(config: &Config, report: &Report) -> Result<Checked, ReportError> {
    Ok(match report {
        // kernel batching is the worker's own business with its socket (`Worker::read`)
        Report::Ready | Report::Pong | Report::Batching(_) => Checked::Nothing,
        // counts only: a line for a door that is not this process's is left out
        Report::Tally { doors, source } => Checked::Tally {
            doors: doors
                .iter()
                .filter_map(|t| {
                    let index = door_index(config, &t.door, "a tally").ok()?;
                    Some((index, t.seen, t.refused.clone()))
                })
                .collect(),
            source: *source,
        },
        Report::Used { door, tag } => Checked::Used {
            index: door_index(config, door, "a used line or step")?,
            tag: *tag,
        },
        Report::Seen {
            door,
            digest,
            until_unix,
        } => Checked::Seen {
            index: door_index(config, door, "a replay digest").ok(),
            digest: *digest,
            until_unix: *until_unix,
        },
        Report::Grant {
            door,
            to,
            open,
            millis,
            client,
            spa,
        } => {
            let index = door_index(config, door, "a grant")?;
            Checked::Grant(knocker_engine::Grant {
                door: index,
                door_name: door.name.to_string(),
                to: *to,
                open: open.as_slice().to_vec(),
                duration: Duration::from_millis(*millis),
                client: client.as_ref().map(Name::to_string),
                spa: spa.map(Into::into),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privsep::protocol::parse_report;

    fn config() -> Config {
        crate::config::native::parse(
            std::path::Path::new("knockerd.toml"),
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\n\
             [door.web]\nsequence = [\"7100\", \"9100\", \"8100\"]\nopen = [\"443\"]\nopen_for = 30\n",
        )
        .expect("config")
    }

    fn checked(line: &str) -> Result<Checked, ReportError> {
        check(&config(), &parse_report(line.as_bytes()).expect("a report"))
    }

    fn grant(index: u64, door: &str) -> String {
        format!(
            r#"{{"grant":{{"door":{{"index":{index},"name":"{door}"}},"to":"10.200.1.2","open":["tcp/443"],"millis":30000,"client":null}}}}"#
        )
    }

    #[test]
    fn reports_name_the_parents_own_doors_or_are_refused() {
        let at = |door: &str| config().doors.iter().position(|d| d.spec.name == door);
        let web = at("web").expect("web") as u64;
        match checked(&grant(web, "web")) {
            Ok(Checked::Grant(g)) => {
                assert_eq!(Some(g.door), at("web"));
                assert_eq!(g.door_name, "web");
                assert_eq!(g.open, vec!["tcp/443".parse().expect("service")]);
                assert_eq!(g.duration, Duration::from_secs(30));
            }
            other => panic!("a grant for a configured door: {other:?}"),
        }
        let refused = checked(&grant(7, "vault")).expect_err("not configured");
        assert_eq!(
            refused,
            ReportError::NoSuchDoor {
                what: "a grant",
                door: DoorRef {
                    index: 7,
                    name: Name::new("vault").expect("name")
                },
                doors: 2
            }
        );
        let said = refused.to_string();
        assert!(
            said.contains("\"vault\"") && said.ends_with("refused"),
            "{said}"
        );
        assert!(matches!(
            checked(r#"{"used":{"door":{"index":9,"name":"vault"},"tag":1}}"#),
            Err(ReportError::NoSuchDoor { .. })
        ));
        assert!(matches!(
            checked(r#"{"used":{"door":{"index":0,"name":"ssh"},"tag":3}}"#),
            Ok(Checked::Used { index, tag: 3 }) if Some(index) == at("ssh")
        ));
        // a digest for no door of ours is still remembered: a replay stays a replay
        assert!(matches!(
            checked(&format!(r#"{{"seen":{{"door":{{"index":5,"name":"vault"}},"digest":"{}","until_unix":9}}}}"#, "0f".repeat(32))),
            Ok(Checked::Seen { index: None, until_unix: 9, digest }) if digest == Digest([0x0f; 32])
        ));
        assert!(matches!(checked(r#""pong""#), Ok(Checked::Nothing)));
    }

    #[test]
    fn an_index_is_taken_only_with_the_name_the_parent_has_there() {
        // the worker loaded other files than the parent (edited, then a worker replaced): its
        // door 0 is "web", the parent's is "ssh". Nothing it says of door 0 is taken.
        let wrong = checked(&grant(0, "web")).expect_err("not the parent's door 0");
        assert!(
            matches!(&wrong, ReportError::NotThatDoor { here, door, .. } if here == "ssh" && door.index == 0),
            "{wrong:?}"
        );
        assert!(wrong.to_string().contains("\"ssh\""), "{wrong}");
        assert!(matches!(
            checked(r#"{"used":{"door":{"index":1,"name":"ssh"},"tag":3}}"#),
            Err(ReportError::NotThatDoor { .. })
        ));
        assert!(matches!(
            checked(&format!(
                r#"{{"seen":{{"door":{{"index":1,"name":"ssh"}},"digest":"{}","until_unix":9}}}}"#,
                "0f".repeat(32)
            )),
            Ok(Checked::Seen { index: None, .. })
        ));
        // an index out of range, however far, is a refusal and never an out-of-bounds access
        for index in [2, u64::from(u32::MAX)] {
            assert!(
                matches!(
                    checked(&grant(index, "web")),
                    Err(ReportError::NoSuchDoor { .. })
                ),
                "{index}"
            );
        }
    }

    #[test]
    fn a_tally_keeps_only_the_lines_of_the_parents_own_doors() {
        let at = |door: &str| config().doors.iter().position(|d| d.spec.name == door);
        let (ssh, web) = (at("ssh").expect("ssh"), at("web").expect("web"));
        let line = format!(
            r#"{{"tally":{{"doors":[{{"door":{{"index":{ssh},"name":"ssh"}},"seen":4,"refused":[["window",1]]}},{{"door":{{"index":{ssh},"name":"web"}},"seen":9,"refused":[]}},{{"door":{{"index":7,"name":"vault"}},"seen":9,"refused":[]}},{{"door":{{"index":{web},"name":"web"}},"seen":2,"refused":[]}}],"source":{{"knocks":6,"not_understood":1,"not_for_knockerd":0,"too_long":0,"overruns":0}}}}}}"#
        );
        match checked(&line) {
            Ok(Checked::Tally { doors, source }) => {
                assert_eq!(
                    doors,
                    vec![(ssh, 4, vec![(Reason::Window, 1)]), (web, 2, vec![])],
                    "a line naming another door at an index is left out"
                );
                assert_eq!((source.knocks, source.not_understood), (6, 1));
            }
            other => panic!("a tally: {other:?}"),
        }
    }
}
