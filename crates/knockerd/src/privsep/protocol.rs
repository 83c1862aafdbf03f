//! The worker's protocol: everything that crosses the privilege boundary, and its bounds.
//!
//! One JSON object per line. The worker writes [`Report`]s on its standard output; the parent
//! writes one [`Seed`] and then pings (any line) on the worker's standard input. Nothing the
//! parent reads is trusted: it reads at most [`MAX_REPORT_BYTES`] per line, and whatever parses
//! is checked again against its own configuration before anything is done with it.

use std::io::Write;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

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

/// Writes reports as JSON lines, in one write.
pub(crate) fn send(out: &mut impl Write, reports: &[Report]) -> Result<(), String> {
    let mut buf = Vec::new();
    for r in reports {
        serde_json::to_writer(&mut buf, r).map_err(|e| e.to_string())?;
        buf.push(b'\n');
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot report to the parent (is it gone?): {e}"))
}

/// Takes the complete lines out of `buf` as reports. An error for a line that is not a report,
/// or for a partial line already longer than any report.
pub(crate) fn take_reports(buf: &mut Vec<u8>, out: &mut Vec<Report>) -> Result<(), String> {
    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        let report = serde_json::from_slice::<Report>(&line[..end])
            .map_err(|e| format!("a report that is not one: {e}"))?;
        out.push(report);
    }
    if buf.len() > MAX_REPORT_BYTES {
        return Err("a report line longer than any report".into());
    }
    Ok(())
}

/// Lower-case hex, for replay digests in the ledger.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads back what [`hex`] wrote; `None` for anything else.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
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
