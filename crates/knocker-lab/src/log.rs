//! A child's output, read line by line as it comes: each line handed to the caller's hook,
//! echoed to the test's stderr under the program's name if asked, kept (up to a bound), and
//! waited on. The daemons the tests, the benches and the soak start all log this way.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What knockerd's packet worker logs when it stops, after the number of knocks its source gave
/// (`SOURCE: N knock(s) read in all; ...`).
pub const READ_IN_ALL: &str = " knock(s) read in all";

/// The number of knocks in knockerd's "SOURCE: N knock(s) read in all; ..." line, if `line` is
/// that line.
pub fn knocks_read_in_all(line: &str) -> Option<u64> {
    let before = &line[..line.find(READ_IN_ALL)?];
    before.rsplit(' ').next()?.parse().ok()
}

/// Reads `stream` on a thread of its own, handing each line to `on_line`, until it ends.
pub fn read_lines(
    stream: impl Read + Send + 'static,
    mut on_line: impl FnMut(String) + Send + 'static,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            on_line(line);
        }
    })
}

/// The lines a child wrote so far; clones share them.
#[derive(Clone, Debug)]
pub struct Log {
    text: Arc<Mutex<String>>,
    /// Streams still being read: once a child has exited, its last lines are in when this is 0.
    open: Arc<AtomicUsize>,
    /// Lines past this many bytes are not kept (a flood can make a daemon write gigabytes).
    limit: usize,
    /// Each kept line is also written to stderr as `echo| line`.
    echo: Option<String>,
}

impl Log {
    /// A log that keeps everything and echoes each line as `echo| line` (a test's output shows
    /// the daemon's log when it fails).
    pub fn echoed(echo: &str) -> Log {
        Log {
            text: Arc::default(),
            open: Arc::default(),
            limit: usize::MAX,
            echo: Some(echo.to_string()),
        }
    }

    /// A silent log that keeps lines until it holds `limit` bytes.
    pub fn bounded(limit: usize) -> Log {
        Log {
            text: Arc::default(),
            open: Arc::default(),
            limit,
            echo: None,
        }
    }

    /// Everything kept so far.
    pub fn text(&self) -> String {
        self.text.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.text.lock().is_ok_and(|l| l.contains(needle))
    }

    /// Keeps one line (and echoes it).
    pub fn keep(&self, line: &str) {
        if let Some(name) = &self.echo {
            eprintln!("{name}| {line}");
        }
        if let Ok(mut l) = self.text.lock() {
            if l.len() < self.limit {
                l.push_str(line);
                l.push('\n');
            }
        }
    }

    /// Reads `stream` into the log on a thread of its own, each line handed to `on_line` first.
    pub fn read(
        &self,
        stream: impl Read + Send + 'static,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> JoinHandle<()> {
        let log = self.clone();
        self.open.fetch_add(1, Ordering::SeqCst);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                on_line(&line);
                log.keep(&line);
            }
            log.open.fetch_sub(1, Ordering::SeqCst);
        })
    }

    /// Takes `child`'s piped stdout and stderr (whichever are piped) and reads both into the
    /// log, each line handed to a copy of `on_line` first.
    pub fn capture(&self, child: &mut Child, on_line: impl FnMut(&str) + Clone + Send + 'static) {
        if let Some(out) = child.stdout.take() {
            self.read(out, on_line.clone());
        }
        if let Some(err) = child.stderr.take() {
            self.read(err, on_line);
        }
    }

    /// Waits until the log contains `needle`. An error, with the log, if `limit` passes first
    /// or if `child` (when given) exits first.
    pub fn wait_for(
        &self,
        needle: &str,
        limit: Duration,
        mut child: Option<&mut Child>,
    ) -> Result<(), String> {
        let end = Instant::now() + limit;
        loop {
            if self.contains(needle) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
                // what it wrote before it exited may still be in the pipes
                while self.open.load(Ordering::SeqCst) > 0 && Instant::now() < end {
                    thread::sleep(Duration::from_millis(10));
                }
                if self.contains(needle) {
                    return Ok(());
                }
                return Err(format!(
                    "exited ({status}) before it logged {needle:?}; log:\n{}",
                    self.text()
                ));
            }
            if Instant::now() > end {
                return Err(format!(
                    "never logged {needle:?} within {limit:?}; log:\n{}",
                    self.text()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workers_count_is_read_from_its_last_line() {
        let line = "2026-12-02T19:00:00.000000Z  INFO knockerd: the packet socket: 100018 knock(s) read in all; 0 not understood, 3 not for knockerd, 0 too long, 0 overrun(s) reported by the kernel";
        assert_eq!(super::knocks_read_in_all(line), Some(100_018));
        assert_eq!(
            super::knocks_read_in_all("grant 10.200.1.10 tcp/2222"),
            None
        );
    }

    use super::*;
    use std::process::{Command, Stdio};

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh")
    }

    #[test]
    fn both_streams_are_kept_and_each_line_reaches_the_hook() {
        let mut child = sh("echo out; echo err >&2; echo ready; sleep 30");
        let log = Log::echoed("sh");
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let hook = seen.clone();
        log.capture(&mut child, move |l| {
            hook.lock().expect("lock").push(l.to_string())
        });
        log.wait_for("ready", Duration::from_secs(10), Some(&mut child))
            .expect("ready");
        log.wait_for("err", Duration::from_secs(10), None)
            .expect("stderr too");
        let _ = child.kill();
        let _ = child.wait();
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort();
        assert_eq!(seen, ["err", "out", "ready"]);
        assert!(log.text().contains("out\n"), "{}", log.text());
    }

    #[test]
    fn waiting_ends_with_the_log_when_the_child_exits_or_time_is_up() {
        let mut child = sh("echo bye; exit 3");
        let log = Log::bounded(1 << 20);
        log.capture(&mut child, |_| {});
        let e = log
            .wait_for("ready", Duration::from_secs(10), Some(&mut child))
            .expect_err("exited");
        assert!(e.starts_with("exited (exit status: 3)"), "{e}");
        assert!(e.contains("bye"), "{e}");
        let e = log
            .wait_for("ready", Duration::from_millis(50), None)
            .expect_err("no child to notice: the deadline ends it");
        assert!(e.starts_with("never logged \"ready\""), "{e}");
    }

    #[test]
    fn a_bounded_log_stops_keeping_at_its_bound() {
        let log = Log::bounded(6);
        for line in ["12345", "678", "9"] {
            log.keep(line);
        }
        assert_eq!(log.text(), "12345\n");
    }
}
