//! What knockd's global options ask of the running daemon: its `PidFile`, and `LogFile` and
//! `UseSyslog` as a log layer that [`Loaded::announce`](crate::config::loader::Loaded::announce)
//! reconfigures on reload.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::*;

// ---- PidFile --------------------------------------------------------------------------------------

/// knockd's `PidFile`: the daemon's pid, written at start, removed at a clean exit (on drop).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// Why knockd's `PidFile` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("PidFile {} names no file", .0.display())]
    NoFile(PathBuf),
    #[error("cannot write PidFile {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Writes this process's pid to `path` (atomically: a temporary file renamed over it). Keep the
/// returned guard alive while the daemon runs; dropping it removes the file.
pub fn write_pid_file(path: &Path) -> Result<PidFile, PidFileError> {
    let pid = std::process::id();
    let name = path
        .file_name()
        .ok_or_else(|| PidFileError::NoFile(path.to_path_buf()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{pid}.tmp"));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        writeln!(f, "{pid}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        PidFileError::Write {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(PidFile {
        path: path.to_path_buf(),
        pid,
    })
}

impl PidFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // only our own: another knockerd may have taken the file over since
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.pid.to_string()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

// ---- LogFile and UseSyslog ------------------------------------------------------------------------

/// The syslog socket of the local host.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// The longest message sent to syslog (knockd formats into 1024 bytes).
const SYSLOG_MAX: usize = 1024;
/// syslog facility user, as knockd's `openlog("knockd", 0, LOG_USER)`.
const FACILITY_USER: u8 = 1;

/// knockd's `LogFile` and `UseSyslog` as a `tracing` layer: every event at INFO or above is
/// appended to the log file (`[YYYY-MM-DD HH:MM:SS UTC] message`) and sent to syslog (RFC 3164
/// over the `/dev/log` datagram socket, facility user, tag `knockerd[pid]`; INFO is sent as
/// notice, as knockd logs). Clones share one state, so the daemon can keep one to reconfigure.
/// Writing never blocks the daemon and never fails it: a message that cannot be written is
/// dropped and counted.
#[derive(Clone)]
pub struct KnockdLog {
    inner: Arc<Mutex<Sinks>>,
}

struct Sinks {
    syslog_path: PathBuf,
    file: Option<(PathBuf, File)>,
    syslog: Option<UnixDatagram>,
    use_syslog: bool,
    dropped: u64,
}

pub(in crate::config) static REGISTERED_LOG: OnceLock<KnockdLog> = OnceLock::new();

/// Set in the packet worker once it is sandboxed: syslog is never connected again (that takes
/// a new socket, which the worker's seccomp filter refuses); a message that cannot be sent on
/// the socket it holds is dropped and counted.
static SEALED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For the packet worker's sandbox, before it is installed: no more syslog connections from
/// now on. Whether the registered log sends to syslog on a socket it already holds (the
/// worker's filter then lets it send on connected sockets).
pub fn seal() -> bool {
    SEALED.store(true, std::sync::atomic::Ordering::SeqCst);
    REGISTERED_LOG
        .get()
        .is_some_and(|log| log.sinks().syslog.is_some())
}

/// Makes [`Loaded::announce`](crate::config::loader::Loaded::announce) reconfigure `log` each
/// time the daemon loads a knockd.conf (at start and on SIGHUP): the log file is reopened (after
/// logrotate, say) and UseSyslog follows the file, as knockd does on reload. Only the first
/// registration counts.
pub fn register_log(log: &KnockdLog) {
    let _ = REGISTERED_LOG.set(log.clone());
}

impl KnockdLog {
    /// A log writing where `options` say; returns what could not be opened, to be logged (knockd
    /// warns and runs on).
    pub fn new(options: &KnockdOptions) -> (KnockdLog, Vec<String>) {
        Self::with_syslog_socket(options, Path::new(SYSLOG_SOCKET))
    }

    /// Like [`KnockdLog::new`], with another syslog socket (for tests).
    pub fn with_syslog_socket(options: &KnockdOptions, socket: &Path) -> (KnockdLog, Vec<String>) {
        let log = KnockdLog {
            inner: Arc::new(Mutex::new(Sinks {
                syslog_path: socket.to_path_buf(),
                file: None,
                syslog: None,
                use_syslog: false,
                dropped: 0,
            })),
        };
        let problems = log.reconfigure(options);
        (log, problems)
    }

    fn sinks(&self) -> std::sync::MutexGuard<'_, Sinks> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies (new) options: reopens the log file, connects or disconnects syslog.
    pub fn reconfigure(&self, options: &KnockdOptions) -> Vec<String> {
        let mut problems = Vec::new();
        let mut s = self.sinks();
        s.file = match &options.log_file {
            None => None,
            Some(path) => match OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(path)
            {
                Ok(f) => Some((path.clone(), f)),
                Err(e) => {
                    problems.push(format!(
                        "cannot open LogFile {}: {e}; logging without it",
                        path.display()
                    ));
                    None
                }
            },
        };
        s.use_syslog = options.use_syslog;
        s.syslog = None;
        if options.use_syslog {
            match connect_syslog(&s.syslog_path) {
                Ok(sock) => s.syslog = Some(sock),
                Err(e) => problems.push(format!(
                    "cannot reach syslog at {}: {e}; will retry with each message",
                    s.syslog_path.display()
                )),
            }
        }
        problems
    }

    /// Messages that could not be written so far.
    pub fn dropped(&self) -> u64 {
        self.sinks().dropped
    }

    /// Writes one message at `level` to the log file and syslog, as an event would.
    pub fn write(&self, level: Level, message: &str) {
        if level > Level::INFO {
            return;
        }
        let message = message.replace(['\n', '\r'], " ");
        let mut s = self.sinks();
        let mut dropped = 0;
        if let Some((_, f)) = &mut s.file {
            let prefix = match level {
                Level::ERROR => "error: ",
                Level::WARN => "warning: ",
                _ => "",
            };
            if writeln!(f, "[{}] {prefix}{message}", utc_stamp(SystemTime::now())).is_err() {
                dropped += 1;
            }
        }
        if s.use_syslog {
            let severity: u8 = match level {
                Level::ERROR => 3,
                Level::WARN => 4,
                _ => 5,
            };
            let mut datagram = format!(
                "<{}>knockerd[{}]: ",
                FACILITY_USER * 8 + severity,
                std::process::id()
            );
            let mut end = SYSLOG_MAX.min(message.len());
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            datagram.push_str(&message[..end]);
            let sealed = SEALED.load(std::sync::atomic::Ordering::Relaxed);
            if s.syslog.is_none() && !sealed {
                s.syslog = connect_syslog(&s.syslog_path).ok();
            }
            let sent = match &s.syslog {
                Some(sock) => match sock.send(datagram.as_bytes()) {
                    Ok(_) => true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                    Err(_) if sealed => false,
                    // the syslog daemon restarted: reconnect once
                    Err(_) => match connect_syslog(&s.syslog_path) {
                        Ok(sock) => {
                            let ok = sock.send(datagram.as_bytes()).is_ok();
                            s.syslog = Some(sock);
                            ok
                        }
                        Err(_) => {
                            s.syslog = None;
                            false
                        }
                    },
                },
                None => false,
            };
            if !sent {
                dropped += 1;
            }
        }
        s.dropped += dropped;
    }
}

fn connect_syslog(path: &Path) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// `YYYY-MM-DD HH:MM:SS UTC` (no time zone database is read: the daemon logs in UTC).
fn utc_stamp(t: SystemTime) -> String {
    crate::config::utc_date(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Collects an event's message and fields into one line.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push_str(&format!(" {}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?}"));
        } else {
            self.fields
                .push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for KnockdLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        self.write(level, &format!("{}{}", line.message, line.fields));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(utc_stamp(t), "2000-02-29 01:01:01 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_747_699_199); // 2025-05-19 23:59:59
        assert_eq!(utc_stamp(t), "2025-05-19 23:59:59 UTC");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("knockerd-knockd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn pid_file_is_written_and_removed() {
        let dir = scratch("pid");
        let path = dir.join("knockd.pid");
        {
            let guard = write_pid_file(&path).expect("write");
            assert_eq!(guard.path(), path);
            let text = std::fs::read_to_string(&path).expect("read");
            assert_eq!(text, format!("{}\n", std::process::id()));
        }
        assert!(!path.exists());
        // a file another process took over is left alone
        {
            let _guard = write_pid_file(&path).expect("write");
            std::fs::write(&path, "1\n").expect("overwrite");
        }
        assert!(path.exists());
        assert!(write_pid_file(&dir.join("no/such/dir/pid")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_file_and_syslog() {
        use tracing_subscriber::layer::SubscriberExt;
        let dir = scratch("log");
        let sock_path = dir.join("log.sock");
        let server = UnixDatagram::bind(&sock_path).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let log_path = dir.join("knockd.log");
        let options = KnockdOptions {
            use_syslog: true,
            log_file: Some(log_path.clone()),
            pid_file: None,
        };
        let (log, problems) = KnockdLog::with_syslog_socket(&options, &sock_path);
        assert!(problems.is_empty(), "{problems:?}");
        let subscriber = tracing_subscriber::registry().with(log.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("door=ssh src=192.0.2.7 grant for 10s");
            tracing::warn!(door = "ssh", "something odd");
            tracing::debug!("not logged");
        });
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).expect("first datagram");
        let pid = std::process::id();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).expect("text"),
            format!("<13>knockerd[{pid}]: door=ssh src=192.0.2.7 grant for 10s")
        );
        let n = server.recv(&mut buf).expect("second datagram");
        assert_eq!(
            std::str::from_utf8(&buf[..n]).expect("text"),
            format!("<12>knockerd[{pid}]: something odd door=ssh")
        );
        let text = std::fs::read_to_string(&log_path).expect("log file");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with('[')
                && lines[0].ends_with(" UTC] door=ssh src=192.0.2.7 grant for 10s"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("] warning: something odd door=ssh"),
            "{text}"
        );
        assert_eq!(log.dropped(), 0);

        // reload: the file is reopened (after logrotate moved it), syslog turned off
        std::fs::rename(&log_path, dir.join("knockd.log.1")).expect("rotate");
        let problems = log.reconfigure(&KnockdOptions {
            use_syslog: false,
            ..options.clone()
        });
        assert!(problems.is_empty(), "{problems:?}");
        log.write(Level::INFO, "after\nrotation");
        assert!(std::fs::read_to_string(&log_path)
            .expect("new file")
            .ends_with("] after rotation\n"));
        server.set_nonblocking(true).expect("nonblocking");
        assert!(server.recv(&mut buf).is_err(), "syslog is off");

        // an unreachable syslog and an unwritable file are reported, never fatal
        let (log, problems) = KnockdLog::with_syslog_socket(
            &KnockdOptions {
                use_syslog: true,
                log_file: Some(dir.join("no/such/dir/log")),
                pid_file: None,
            },
            &dir.join("nobody-listens"),
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        log.write(Level::ERROR, "lost");
        assert_eq!(log.dropped(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
