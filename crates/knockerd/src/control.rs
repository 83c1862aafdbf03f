//! How the admin's commands find and talk to the running daemon: through files in its state
//! directory and signals, never through a socket of its own.
//!
//! - `knockerd.pid`: the daemon's pid, written at start and removed when it stops. The daemon
//!   holds an exclusive `flock` on it while it runs, so a pid file left by a crash (`kill -9`)
//!   is told apart from a live daemon: [`running`] probes the lock, it does not trust the number.
//! - `reload.json`: the verdict of the last reload attempt ([`ReloadVerdict`]), replaced
//!   atomically after each one. `knockerd reload` ([`request_reload`]) sends SIGHUP and waits
//!   for a verdict that began after its signal, so `systemctl reload` (`ExecReload=knockerd
//!   reload`) fails when the daemon refused the new configuration.
//!
//! The daemon side is [`Control`]: the pid file, the verdicts, and systemd's readiness
//! messages ([`crate::notify`]), so that the run loop makes one call at each point.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::loader::ConfigFile;
use crate::config::{Config, DEFAULT_STATE_DIR, TABLE};
use crate::notify::{monotonic_usec, Notifier};

/// The daemon's pid file, inside its state directory.
pub const PID_FILE: &str = "knockerd.pid";
/// The verdict of the last reload, inside the state directory.
pub const RELOAD_FILE: &str = "reload.json";
/// How long `knockerd reload` waits for the daemon's verdict.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// The state directory the admin's commands look in: `--state-dir`, else the native
/// configuration's `[daemon] state_dir`, else the default. The configuration is only looked
/// at for that key, so that `knockerd reload` still reaches the daemon when the rest of the
/// file is broken (the daemon then says what is wrong). knockd.conf and access.conf have no
/// such key: the daemon uses the default for them too.
pub fn state_dir(source: &ConfigFile, cli: Option<&Path>) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_owned();
    }
    crate::config::loader::state_dir(source).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// What an admin's command could not do with the running daemon, or the daemon with its files.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is locked by a running knockerd but holds no pid (it is being written?); try again", .0.display())]
    NoPid(PathBuf),
    #[error("cannot probe the lock on {}: {source}", path.display())]
    Probe { path: PathBuf, source: Errno },
    #[error("cannot write {}: {source}", path.display())]
    WritePid {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    LockPid { path: PathBuf, source: Errno },
    /// No daemon runs; the text says why and what to do ([`Running::why_not`]).
    #[error("{0}")]
    NotRunning(String),
    #[error("cannot signal knockerd (pid {pid}): {source}")]
    Signal { pid: i32, source: Errno },
    #[error("reload refused, the running configuration is kept: {0}")]
    ReloadRefused(String),
    #[error(
        "knockerd (pid {0}) stopped before it answered the reload; see `journalctl -u knockerd`"
    )]
    StoppedBeforeVerdict(i32),
    #[error("knockerd (pid {pid}) gave no verdict on the reload within {secs}s; see `journalctl -u knockerd`")]
    NoVerdict { pid: i32, secs: u64 },
    #[error(
        "knockerd is running (pid {0}): stop it first (`systemctl stop knockerd`), then tear down; \
         --force stops it (SIGTERM) and then removes the table"
    )]
    StillRunning(i32),
    #[error("cannot stop knockerd (pid {pid}): {source}")]
    Stop { pid: i32, source: Errno },
    #[error("knockerd (pid {pid}) did not stop within {secs}s: nothing was removed")]
    DidNotStop { pid: i32, secs: u64 },
    #[error(transparent)]
    Nft(#[from] crate::ruleset::NftError),
    /// The table is gone (`removed` says so) but its include file is not.
    #[error("{removed}, but cannot remove {}: {source}; a firewall reload that includes it brings the table back", path.display())]
    RemoveInclude {
        removed: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether a daemon runs with its state in `dir`, as the lock on its pid file tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    /// It runs, with this pid.
    Yes(i32),
    /// No pid file: it does not run (or uses another state directory).
    NoPidFile,
    /// A pid file nobody holds: the daemon that wrote it (pid, if readable) ended without
    /// removing it (killed, or crashed).
    Stale(Option<i32>),
}

impl Running {
    /// The pid of the running daemon.
    pub fn pid(&self) -> Option<i32> {
        match self {
            Running::Yes(pid) => Some(*pid),
            _ => None,
        }
    }

    /// Why it does not run, for the admin, or `None` when it does.
    pub fn why_not(&self, dir: &Path) -> Option<String> {
        let pid_file = dir.join(PID_FILE);
        match self {
            Running::Yes(_) => None,
            Running::NoPidFile => Some(format!(
                "knockerd is not running: there is no {} (start it with `systemctl start knockerd`; \
                 if it runs with another state directory, pass --state-dir)",
                pid_file.display()
            )),
            Running::Stale(pid) => Some(format!(
                "knockerd is not running: {} was left by {} that ended without removing it \
                 (killed or crashed; see `journalctl -u knockerd`); start it with `systemctl start knockerd`",
                pid_file.display(),
                pid.map_or("a daemon".to_string(), |p| format!("pid {p}"))
            )),
        }
    }
}

/// Looks for the daemon whose state is in `dir`. Only files are read: it needs no cooperation
/// from the daemon, and probing the lock (shared, for a moment) never disturbs it.
pub fn running(dir: &Path) -> Result<Running, ControlError> {
    let path = dir.join(PID_FILE);
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Running::NoPidFile),
        Err(source) => return Err(ControlError::Open { path, source }),
    };
    let mut text = String::new();
    let pid = std::io::Read::by_ref(&mut file)
        .take(64)
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| text.trim().parse::<i32>().ok())
        .filter(|p| *p > 0);
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // held: the daemon that wrote it runs
        Err((_, Errno::EWOULDBLOCK)) => match pid {
            Some(pid) => Ok(Running::Yes(pid)),
            None => Err(ControlError::NoPid(path)),
        },
        Err((_, source)) => Err(ControlError::Probe { path, source }),
        Ok(_unlocked_on_drop) => Ok(Running::Stale(pid)),
    }
}

/// The daemon's pid file, locked while the daemon runs; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    lock: Flock<File>,
}

impl PidFile {
    /// Writes this process's pid to `dir/knockerd.pid`, locked. The file is written and locked
    /// under a temporary name and then renamed into place, so a probe never sees a locked file
    /// without its pid, or a stale pid under a fresh lock. The ledger's lock, taken before,
    /// keeps a second daemon out of the directory.
    pub fn create(dir: &Path) -> Result<PidFile, ControlError> {
        let path = dir.join(PID_FILE);
        let tmp = dir.join(format!(".{PID_FILE}.{}.tmp", std::process::id()));
        let what = |source| ControlError::WritePid {
            path: path.clone(),
            source,
        };
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(what)?;
        let result = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, source)| ControlError::LockPid {
                path: path.clone(),
                source,
            })
            .and_then(|mut lock| {
                lock.write_all(format!("{}\n", std::process::id()).as_bytes())
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(what)?;
                Ok(lock)
            })
            .map(|lock| PidFile {
                path: path.clone(),
                lock,
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so a probe sees a live daemon or no file, never a stale
        // one; and only if the name is still ours (the ledger's lock may be gone already, and a
        // new daemon may have put its own file there).
        use std::os::unix::fs::MetadataExt as _;
        let ours = match (self.lock.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What became of one reload attempt, as the daemon writes it to `reload.json`.
///
/// `begun_monotonic_usec` is CLOCK_MONOTONIC when the daemon took the SIGHUP, before it read
/// the configuration: a verdict that begun after a client sent its signal judged the files as
/// they were after that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadVerdict {
    /// The daemon that reloaded.
    pub pid: u32,
    /// Its reload attempts so far, this one included.
    pub seq: u64,
    pub begun_monotonic_usec: u64,
    /// When it finished (unix seconds).
    pub finished_unix: u64,
    /// Whether the new configuration runs now; if not, the old one still does, whole.
    pub ok: bool,
    /// "reloaded", or why the new configuration was refused.
    pub message: String,
}

fn read_verdict(dir: &Path) -> Option<ReloadVerdict> {
    let text = std::fs::read(dir.join(RELOAD_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// `knockerd reload`: signals the daemon whose state is in `dir` and waits, up to `wait`, for
/// the verdict on the configuration as it is now. `Ok` with the daemon's message, or `Err` with
/// its reason for refusing (or why there was no answer).
pub fn request_reload(dir: &Path, wait: Duration) -> Result<String, ControlError> {
    let pid = match running(dir)? {
        Running::Yes(pid) => pid,
        other => {
            return Err(ControlError::NotRunning(
                other.why_not(dir).unwrap_or_default(),
            ))
        }
    };
    let sent = monotonic_usec();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|source| ControlError::Signal { pid, source })?;
    let end = Instant::now() + wait;
    loop {
        if let Some(v) = read_verdict(dir) {
            if i64::from(pid) == i64::from(v.pid) && v.begun_monotonic_usec >= sent {
                return if v.ok {
                    Ok(v.message)
                } else {
                    Err(ControlError::ReloadRefused(v.message))
                };
            }
        }
        if running(dir)?.pid() != Some(pid) {
            return Err(ControlError::StoppedBeforeVerdict(pid));
        }
        if Instant::now() >= end {
            return Err(ControlError::NoVerdict {
                pid,
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `knockerd teardown`: refuses while a daemon runs (it would be left guarding nothing), unless
/// `force`.
pub fn teardown(dir: &Path, force: bool) -> Result<String, ControlError> {
    let mut said = String::new();
    if let Running::Yes(pid) = running(dir)? {
        if !force {
            return Err(ControlError::StillRunning(pid));
        }
        // a running knockerd puts its table back the moment it is deleted: stop it first
        stop_daemon(pid, dir)?;
        said = format!("stopped knockerd (pid {pid})\n");
    }
    let removed = match crate::ruleset::teardown()? {
        true => format!("removed table inet {TABLE}"),
        false => format!("no table inet {TABLE}: nothing to remove"),
    };
    // a firewall reload that includes the file would otherwise bring the table back
    let include = match crate::ruleset::remove_include(dir) {
        Ok(true) => format!(
            "\nremoved {} (an `include` of it in /etc/nftables.conf now loads nothing)",
            crate::ruleset::include_path(dir).display()
        ),
        Ok(false) => String::new(),
        Err(source) => {
            return Err(ControlError::RemoveInclude {
                removed,
                path: crate::ruleset::include_path(dir),
                source,
            })
        }
    };
    Ok(format!("{said}{removed}{include}"))
}

/// How long `teardown --force` waits for a stopping knockerd (it runs its pending stop commands).
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Sends SIGTERM to the daemon and waits until it has let go of its pid file.
fn stop_daemon(pid: i32, dir: &Path) -> Result<(), ControlError> {
    use nix::sys::signal::{kill, Signal};
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM)
        .map_err(|source| ControlError::Stop { pid, source })?;
    let end = Instant::now() + STOP_WAIT;
    while Instant::now() < end {
        if !matches!(running(dir)?, Running::Yes(_)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ControlError::DidNotStop {
        pid,
        secs: STOP_WAIT.as_secs(),
    })
}

/// What stopping leaves behind, in words that hold: the table's ports stay closed only if the
/// table is still there.
pub fn closed_note() -> String {
    match crate::ruleset::table_exists() {
        Ok(true) => format!(
            "knock and protected ports stay closed (table inet {TABLE} stays; remove it with `knockerd teardown`)"
        ),
        Ok(false) => format!(
            "table inet {TABLE} is gone, so knocker closes nothing: knock and protected ports are open to whatever the rest of the firewall allows"
        ),
        Err(e) => format!("cannot tell whether table inet {TABLE} is still there ({e})"),
    }
}

/// The daemon's side: its pid file, its reload verdicts and its readiness messages.
pub struct Control {
    dir: PathBuf,
    notifier: Notifier,
    _pid_file: PidFile,
    reloads: u64,
    begun: u64,
}

impl Control {
    /// At start, once the ledger (and with it the state directory) is the daemon's.
    pub fn start(dir: &Path, notifier: Notifier) -> Result<Control, ControlError> {
        Ok(Control {
            dir: dir.to_owned(),
            notifier,
            _pid_file: PidFile::create(dir)?,
            reloads: 0,
            begun: 0,
        })
    }

    /// The table is loaded and the packet worker runs.
    pub fn ready(&self, config: &Config) {
        self.notifier.ready(&summary(config));
    }

    /// A SIGHUP was taken: the reload begins.
    pub fn reload_begins(&mut self) {
        self.begun = monotonic_usec();
        self.notifier.reloading();
    }

    /// The reload's verdict: written for `knockerd reload`, and the daemon is ready again
    /// (with the new configuration, or the old one).
    pub fn reload_ends(&mut self, config: &Config, verdict: &Result<(), impl std::fmt::Display>) {
        self.reloads += 1;
        let v = ReloadVerdict {
            pid: std::process::id(),
            seq: self.reloads,
            begun_monotonic_usec: self.begun,
            finished_unix: crate::ledger::unix_now(),
            ok: verdict.is_ok(),
            message: match verdict {
                Ok(()) => "reloaded".to_string(),
                Err(e) => e.to_string(),
            },
        };
        let written = serde_json::to_vec(&v)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                knocker_wire::files::replace_atomically(&self.dir.join(RELOAD_FILE), &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::error!(
                "cannot write {}: {e}; `knockerd reload` will not hear the verdict",
                self.dir.join(RELOAD_FILE).display()
            );
        }
        match verdict {
            Ok(()) => self.notifier.ready(&summary(config)),
            Err(e) => self
                .notifier
                .ready(&format!("reload refused ({e}); {}", summary(config))),
        }
    }

    /// The daemon stops.
    pub fn stopping(&self) {
        self.notifier.stopping("stopping");
    }
}

fn summary(config: &Config) -> String {
    format!("{} door(s), table inet {TABLE} loaded", config.doors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_file_tells_a_live_daemon_from_a_stale_file() {
        let dir = crate::TestDir::new("control-pid");
        std::fs::create_dir_all(&dir.0).unwrap();
        assert_eq!(running(&dir.0).unwrap(), Running::NoPidFile);
        let pid = PidFile::create(&dir.0).unwrap();
        // a probe from this process sees the lock as any other: flock locks belong to the open file
        assert_eq!(
            running(&dir.0).unwrap(),
            Running::Yes(std::process::id() as i32)
        );
        drop(pid);
        assert_eq!(running(&dir.0).unwrap(), Running::NoPidFile);
        // what a daemon killed with -9 leaves
        std::fs::write(dir.0.join(PID_FILE), "4242\n").unwrap();
        let r = running(&dir.0).unwrap();
        assert_eq!(r, Running::Stale(Some(4242)));
        assert!(r.why_not(&dir.0).unwrap().contains("pid 4242"), "{r:?}");
        // a new daemon takes the stale file over
        let _pid = PidFile::create(&dir.0).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.0.join(PID_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn the_state_dir_comes_from_the_command_line_then_the_file() {
        let dir = crate::TestDir::new("control-dir");
        std::fs::create_dir_all(&dir.0).unwrap();
        let good = dir.0.join("good.toml");
        std::fs::write(
            &good,
            "[daemon]\nstate_dir = \"/srv/k\"\n[door.x]\nbroken = \n",
        )
        .unwrap();
        let src = ConfigFile::Native(good.clone());
        // a file that does not parse as TOML: the default
        assert_eq!(state_dir(&src, None), PathBuf::from(DEFAULT_STATE_DIR));
        std::fs::write(
            &good,
            "[daemon]\nstate_dir = \"/srv/k\"\n[door.x]\nnonsense = 1\n",
        )
        .unwrap();
        assert_eq!(state_dir(&src, None), PathBuf::from("/srv/k"));
        assert_eq!(
            state_dir(&src, Some(Path::new("/elsewhere"))),
            PathBuf::from("/elsewhere")
        );
        let knockd = ConfigFile::Knockd(good);
        assert_eq!(state_dir(&knockd, None), PathBuf::from(DEFAULT_STATE_DIR));
    }
}
