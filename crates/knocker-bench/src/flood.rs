//! The flood sender as the bench sees it: `knocker-flood send ...` started in the lab's `net`
//! namespace, its progress read from its stdout.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knocker_lab::log::{read_lines, Log};

use crate::lab::FloodLab;
use crate::sender::SendArgs;
use crate::stopped;

/// The sender process (`knocker-flood send`) in the lab's `net` namespace, under `nice` so the
/// daemon and the bench's measuring threads get the CPU first. Killed by its PID when dropped.
pub struct Flood {
    child: Child,
    sent: Arc<AtomicU64>,
    started: Arc<AtomicBool>,
    done: Arc<Mutex<Option<(u64, u64, f64)>>>,
    errors: Log,
}

impl Flood {
    /// Starts `exe send ARGS` (this program) in the lab's `net` namespace.
    pub fn spawn(lab: &FloodLab, exe: &Path, args: &SendArgs) -> Result<Flood, String> {
        let mut child = lab
            .net
            .command("nice")
            .args(["-n", "10"])
            .arg(exe)
            .arg("send")
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the flood sender: {e}"))?;
        child.stdin.take();
        let mut f = Flood {
            child,
            sent: Arc::new(AtomicU64::new(0)),
            started: Arc::new(AtomicBool::new(false)),
            done: Arc::new(Mutex::new(None)),
            errors: Log::bounded(1 << 20),
        };
        if let Some(out) = f.child.stdout.take() {
            let (sent, started, done) = (f.sent.clone(), f.started.clone(), f.done.clone());
            read_lines(out, move |line| {
                let w: Vec<&str> = line.split_whitespace().collect();
                match w.as_slice() {
                    ["start", _] => started.store(true, Ordering::Relaxed),
                    ["progress", n] => {
                        sent.store(n.parse().unwrap_or(0), Ordering::Relaxed);
                    }
                    ["done", n, e, s] => {
                        let n = n.parse().unwrap_or(0);
                        sent.store(n, Ordering::Relaxed);
                        if let Ok(mut d) = done.lock() {
                            *d = Some((n, e.parse().unwrap_or(0), s.parse().unwrap_or(0.0)));
                        }
                    }
                    _ => {}
                }
            });
        }
        if let Some(err) = f.child.stderr.take() {
            f.errors.read(err, |_| {});
        }
        Ok(f)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn finished(&self) -> bool {
        self.done.lock().map(|d| d.is_some()).unwrap_or(true)
    }

    fn exited(&mut self) -> Result<bool, String> {
        match self.child.try_wait() {
            Ok(Some(st)) if !st.success() => Err(format!(
                "the flood sender failed ({st}): {}",
                self.errors.text()
            )),
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            Err(e) => Err(format!("waiting for the flood sender: {e}")),
        }
    }

    pub fn wait_started(&mut self) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(60);
        while !self.started.load(Ordering::Relaxed) {
            stopped()?;
            if self.exited()? || Instant::now() > end {
                return Err(format!(
                    "the flood sender did not start: {}",
                    self.errors.text()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub fn wait_done(&mut self, limit_secs: f64) -> Result<(u64, u64, f64), String> {
        let end = Instant::now() + Duration::from_secs_f64(limit_secs);
        loop {
            stopped()?;
            if let Some(d) = self.done.lock().ok().and_then(|d| *d) {
                let _ = self.child.wait();
                return Ok(d);
            }
            if self.exited()? {
                // the reader may not have parsed the last line yet
                std::thread::sleep(Duration::from_millis(50));
                return self
                    .done
                    .lock()
                    .ok()
                    .and_then(|d| *d)
                    .ok_or_else(|| "the flood sender exited without its summary".to_string());
            }
            if Instant::now() > end {
                return Err("the flood sender overran its time limit".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
