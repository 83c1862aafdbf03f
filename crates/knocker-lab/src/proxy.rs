//! `knocker proxy` as the tests run it: started with `--listen 127.0.0.1:0`, its port read from
//! the line it prints first, its standard error kept in a [`Log`], stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::log::Log;

/// The first line's beginning: `knocker: proxy listening on 127.0.0.1:PORT (...)`.
const LISTENING: &str = "knocker: proxy listening on 127.0.0.1:";

/// A running `knocker proxy`.
pub struct Proxy {
    pub child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// What it said on standard error.
    pub log: Log,
}

impl Proxy {
    /// Starts `command` (the knocker binary with `proxy --listen 127.0.0.1:0` and whatever else,
    /// in a namespace or not) and waits for it to say where it listens. Panics if it does not.
    pub fn start(command: &mut Command) -> Proxy {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start knocker proxy");
        let log = Log::echoed("proxy");
        log.capture(&mut child, |_| {});
        if let Err(e) = log.wait_for(LISTENING, Duration::from_secs(10), Some(&mut child)) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("knocker proxy {e}");
        }
        let text = log.text();
        let port = text
            .split_once(LISTENING)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text:?}"));
        Proxy { child, port, log }
    }

    /// Waits until it has said `needle` (panics with its log if it does not within 20 s).
    pub fn said(&mut self, needle: &str) {
        if let Err(e) = self
            .log
            .wait_for(needle, Duration::from_secs(20), Some(&mut self.child))
        {
            panic!("knocker proxy {e}");
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
