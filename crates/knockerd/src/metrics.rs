//! Metrics without a listener: counters per door and reason, written as a Prometheus
//! textfile-collector file.
//!
//! knockerd opens no port, so nothing scrapes it. Instead the root process keeps [`Counters`]
//! and a [`Writer`] writes them, in Prometheus' text format, to `metrics.prom` in the state
//! directory (what `knockerd status --metrics` prints) and to `[daemon] metrics_file` when it is
//! set (for node_exporter's textfile collector). Each file is replaced atomically (a temporary
//! file in the same directory, then a rename), only when a counter changed, and at most once a
//! second: an idle daemon writes nothing and is never woken to write.
//!
//! Where each count comes from: knocks seen and refusals are decided in the packet worker,
//! which sends what it counted at most once a second (`Report::Tally`, deltas); grants,
//! refreshes, expiries and stop commands are the gatekeeper's; worker restarts and table
//! restores the daemon's. Counters start at zero when knockerd starts (Prometheus' `rate()`
//! and `increase()` take restarts in their stride; `knockerd_start_time_seconds` says when).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The file in the state directory that `knockerd status --metrics` prints.
pub const FILE_NAME: &str = "metrics.prom";
/// The shortest time between two writes of the files.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Why a knock, an attempt or a request was not granted: the `reason` label of
/// `knockerd_refused_total`. The first three are a sequence door's failed attempts, the rest the
/// refusals of doors that judge a whole request (encoded, SPA, SYN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    WrongPort,
    Window,
    Flags,
    NotAuthentic,
    OtherAddress,
    Age,
    Replayed,
    NotOpened,
    MemoryFull,
    Unsupported,
    Username,
    Expired,
    Restricted,
    UnknownKey,
    NotEnrolledHere,
    RateLimited,
}

impl Reason {
    /// Every reason, in the order the file lists them.
    pub const ALL: [Reason; 16] = [
        Reason::WrongPort,
        Reason::Window,
        Reason::Flags,
        Reason::NotAuthentic,
        Reason::OtherAddress,
        Reason::Age,
        Reason::Replayed,
        Reason::NotOpened,
        Reason::MemoryFull,
        Reason::Unsupported,
        Reason::Username,
        Reason::Expired,
        Reason::Restricted,
        Reason::UnknownKey,
        Reason::NotEnrolledHere,
        Reason::RateLimited,
    ];

    /// The label value (the wire's name too).
    pub fn label(self) -> &'static str {
        match self {
            Reason::WrongPort => "wrong_port",
            Reason::Window => "window",
            Reason::Flags => "flags",
            Reason::NotAuthentic => "not_authentic",
            Reason::OtherAddress => "other_address",
            Reason::Age => "age",
            Reason::Replayed => "replayed",
            Reason::NotOpened => "not_opened",
            Reason::MemoryFull => "memory_full",
            Reason::Unsupported => "unsupported",
            Reason::Username => "username",
            Reason::Expired => "expired",
            Reason::Restricted => "restricted",
            Reason::UnknownKey => "unknown_key",
            Reason::NotEnrolledHere => "not_enrolled_here",
            Reason::RateLimited => "rate_limited",
        }
    }

    /// A sequence door's failed attempt.
    pub fn of_failure(f: &knocker_engine::Failure) -> Reason {
        use knocker_engine::Failure;
        match f {
            Failure::WrongPort { .. } => Reason::WrongPort,
            Failure::Window { .. } => Reason::Window,
            Failure::Flags { .. } => Reason::Flags,
        }
    }

    /// A refused request.
    pub fn of_refusal(r: &knocker_engine::Refusal) -> Reason {
        use knocker_engine::Refusal;
        match r {
            Refusal::NotAuthentic => Reason::NotAuthentic,
            Refusal::OtherAddress { .. } => Reason::OtherAddress,
            Refusal::Age { .. } => Reason::Age,
            Refusal::Replayed => Reason::Replayed,
            Refusal::NotOpened(_) => Reason::NotOpened,
            Refusal::MemoryFull => Reason::MemoryFull,
            Refusal::Unsupported(_) => Reason::Unsupported,
            Refusal::Username(_) => Reason::Username,
            Refusal::Expired => Reason::Expired,
            Refusal::Restricted(_) => Reason::Restricted,
            Refusal::UnknownKey => Reason::UnknownKey,
            Refusal::NotEnrolledHere { .. } => Reason::NotEnrolledHere,
            Refusal::RateLimited => Reason::RateLimited,
        }
    }
}

/// One door's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoorCounts {
    /// Packets to one of the door's knock ports (or its SPA or SYN port), from any source.
    pub seen: u64,
    pub refused: BTreeMap<Reason, u64>,
    /// New grants (a door opened for a source that had none from it).
    pub grants: u64,
    /// Knocks that renewed an open grant.
    pub refreshes: u64,
    /// Grants that ended because their time was up.
    pub expiries: u64,
    /// Stop commands started (knockd's `stop_command`, at the end of an opening).
    pub stop_commands: u64,
}

/// What the source read (`nflog::RecvStats`, summed over the worker's life).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCounts {
    pub knocks: u64,
    pub not_understood: u64,
    pub not_for_knockerd: u64,
    pub too_long: u64,
    /// Times the kernel said it dropped log messages (NFLOG's ENOBUFS): knockerd fell behind.
    pub overruns: u64,
}

impl SourceCounts {
    pub fn is_zero(&self) -> bool {
        *self == SourceCounts::default()
    }

    /// Adds `other`'s counts to these (saturating: the worker's word is not trusted to be sane).
    pub fn add(&mut self, other: &SourceCounts) {
        self.knocks = self.knocks.saturating_add(other.knocks);
        self.not_understood = self.not_understood.saturating_add(other.not_understood);
        self.not_for_knockerd = self.not_for_knockerd.saturating_add(other.not_for_knockerd);
        self.too_long = self.too_long.saturating_add(other.too_long);
        self.overruns = self.overruns.saturating_add(other.overruns);
    }
}

impl From<crate::nflog::RecvStats> for SourceCounts {
    fn from(s: crate::nflog::RecvStats) -> SourceCounts {
        SourceCounts {
            knocks: s.knocks,
            not_understood: s.malformed,
            not_for_knockerd: s.ignored,
            too_long: s.too_long,
            overruns: s.overruns,
        }
    }
}

/// Every counter of the running daemon. Each change moves [`Counters::generation`], so that the
/// writer knows whether there is anything new to write.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    doors: BTreeMap<String, DoorCounts>,
    source: SourceCounts,
    worker_restarts: u64,
    table_restores: u64,
    /// A fleet's shared store (`[daemon] shared_state`); `None`: none configured.
    shared: Option<SharedCounts>,
    generation: u64,
}

/// What the shared store of a fleet answered to the doors' claims.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SharedCounts {
    /// Claims made (a knock's set of claims, as one).
    pub claimed: u64,
    /// Refused: another host of the fleet made the claim first.
    pub taken: u64,
    /// Refused: the store was down and the door's policy is `refuse`.
    pub down_refused: u64,
    /// Let through on this host's memory alone: down, policy `local`.
    pub down_local: u64,
    /// Times the store went down.
    pub outages: u64,
    /// Whether it was up at its last use.
    pub up: bool,
}

impl Counters {
    /// Makes sure every door of the configuration is listed, with zeros until something
    /// happens: a series that appears only at its first event hides the first event from
    /// `rate()`. Doors a reload removed keep their counts (counters never go back).
    pub fn know_doors<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            if !self.doors.contains_key(name) {
                self.doors.insert(name.to_string(), DoorCounts::default());
                self.generation += 1;
            }
        }
    }

    /// A door's counters, to change one.
    pub fn door(&mut self, name: &str) -> &mut DoorCounts {
        self.generation += 1;
        if !self.doors.contains_key(name) {
            self.doors.insert(name.to_string(), DoorCounts::default());
        }
        self.doors.get_mut(name).expect("just inserted")
    }

    pub fn doors(&self) -> &BTreeMap<String, DoorCounts> {
        &self.doors
    }

    pub fn add_source(&mut self, s: &SourceCounts) {
        if s.is_zero() {
            return;
        }
        self.source.add(s);
        self.generation += 1;
    }

    pub fn worker_restarted(&mut self) {
        self.worker_restarts += 1;
        self.generation += 1;
    }

    pub fn table_restored(&mut self) {
        self.table_restores += 1;
        self.generation += 1;
    }

    /// A fleet's store is configured (or no longer is, after a reload): its counts are kept.
    pub fn shared_configured(&mut self, configured: bool) {
        if configured && self.shared.is_none() {
            self.shared = Some(SharedCounts {
                up: true,
                ..SharedCounts::default()
            });
            self.generation += 1;
        }
    }

    /// The shared store's counts, to change them (nothing when none is configured).
    pub fn shared_mut(&mut self) -> Option<&mut SharedCounts> {
        self.generation += 1;
        self.shared.as_mut()
    }

    /// Moves on every change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The counters in Prometheus' text format (version 0.0.4), with `grants_open` (the grants
    /// open now) and the start time.
    pub fn render(&self, started_unix: u64, grants_open: usize) -> String {
        let mut out = String::with_capacity(2048);
        let door_rows = |f: &dyn Fn(&DoorCounts) -> u64| -> Vec<(String, u64)> {
            self.doors
                .iter()
                .map(|(d, c)| (format!("door=\"{}\"", escape(d)), f(c)))
                .collect()
        };
        let families: Vec<Family> = vec![
            (
                "knockerd_start_time_seconds",
                "gauge",
                "When this knockerd started, in seconds since 1970.",
                vec![(String::new(), started_unix)],
            ),
            (
                "knockerd_knocks_seen_total",
                "counter",
                "Packets seen on a door's knock ports (or its SPA or SYN port), from any source.",
                door_rows(&|c| c.seen),
            ),
            (
                "knockerd_refused_total",
                "counter",
                "Failed knock attempts and refused requests, by door and reason.",
                self.doors
                    .iter()
                    .flat_map(|(d, c)| {
                        c.refused.iter().map(move |(r, n)| {
                            (
                                format!("door=\"{}\",reason=\"{}\"", escape(d), r.label()),
                                *n,
                            )
                        })
                    })
                    .collect(),
            ),
            (
                "knockerd_grants_total",
                "counter",
                "Grants made: a door opened for a source that had no open grant from it.",
                door_rows(&|c| c.grants),
            ),
            (
                "knockerd_refreshes_total",
                "counter",
                "Knocks that renewed a grant still open.",
                door_rows(&|c| c.refreshes),
            ),
            (
                "knockerd_expiries_total",
                "counter",
                "Grants that ended because their time was up.",
                door_rows(&|c| c.expiries),
            ),
            (
                "knockerd_stop_commands_total",
                "counter",
                "Stop commands started (knockd-style doors).",
                door_rows(&|c| c.stop_commands),
            ),
            (
                "knockerd_grants_open",
                "gauge",
                "Grants open now (door and source pairs).",
                vec![(String::new(), grants_open as u64)],
            ),
            (
                "knockerd_source_packets_total",
                "counter",
                "What the knock source read, by kind: knocks, not understood, not for knockerd, too long.",
                vec![
                    ("kind=\"knock\"".to_string(), self.source.knocks),
                    ("kind=\"not_understood\"".to_string(), self.source.not_understood),
                    ("kind=\"not_for_knockerd\"".to_string(), self.source.not_for_knockerd),
                    ("kind=\"too_long\"".to_string(), self.source.too_long),
                ],
            ),
            (
                "knockerd_source_overruns_total",
                "counter",
                "Times the kernel dropped knock packets because knockerd fell behind (NFLOG's ENOBUFS).",
                vec![(String::new(), self.source.overruns)],
            ),
            (
                "knockerd_worker_restarts_total",
                "counter",
                "Packet workers replaced after one died, hung or sent what is not a report.",
                vec![(String::new(), self.worker_restarts)],
            ),
            (
                "knockerd_table_restores_total",
                "counter",
                "Times knockerd put its nftables table or its grants back after something else changed them.",
                vec![(String::new(), self.table_restores)],
            ),
        ];
        let mut families = families;
        if let Some(sh) = &self.shared {
            families.extend([
                (
                    "knockerd_shared_state_claims_total",
                    "counter",
                    "Knocks' once-only claims put to the fleet's shared store, by result: claimed, taken (by another host first: refused), down_refused, down_local (granted on this host's memory alone).",
                    vec![
                        ("result=\"claimed\"".to_string(), sh.claimed),
                        ("result=\"taken\"".to_string(), sh.taken),
                        ("result=\"down_refused\"".to_string(), sh.down_refused),
                        ("result=\"down_local\"".to_string(), sh.down_local),
                    ],
                ),
                (
                    "knockerd_shared_state_outages_total",
                    "counter",
                    "Times the fleet's shared store went from answering to not.",
                    vec![(String::new(), sh.outages)],
                ),
                (
                    "knockerd_shared_state_up",
                    "gauge",
                    "Whether the fleet's shared store answered its last claim (1) or not (0).",
                    vec![(String::new(), u64::from(sh.up))],
                ),
            ]);
        }
        for (name, kind, help, rows) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}

/// One metric family of the file: its name, type, help and (labels, value) rows.
type Family = (&'static str, &'static str, &'static str, Vec<(String, u64)>);

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the counters to their files when they changed, at most once per [`MIN_INTERVAL`].
#[derive(Debug)]
pub struct Writer {
    files: Vec<PathBuf>,
    /// The generation last written (`None`: nothing written yet).
    written: Option<u64>,
    /// When the files were last written, or when the writer was made.
    last: Instant,
    /// Each file's last failure was logged (so that a full disk is one line, not one a second).
    failing: Vec<bool>,
}

impl Writer {
    /// Writes `metrics.prom` in `state_dir`, and `extra` (`[daemon] metrics_file`) when set.
    pub fn new(state_dir: &Path, extra: Option<&Path>) -> Writer {
        let mut files = vec![state_dir.join(FILE_NAME)];
        files.extend(extra.map(Path::to_path_buf));
        let failing = vec![false; files.len()];
        Writer {
            files,
            written: None,
            last: Instant::now(),
            failing,
        }
    }

    /// A new set of files after a reload (`metrics_file` may have changed): the next check
    /// writes them.
    pub fn set_files(&mut self, state_dir: &Path, extra: Option<&Path>) {
        let new = Writer::new(state_dir, extra);
        if new.files != self.files {
            self.files = new.files;
            self.failing = new.failing;
            self.written = None;
        }
    }

    /// When the files should next be written: `None` when nothing changed since the last
    /// write (so that an idle daemon is never woken for metrics).
    pub fn due(&self, counters: &Counters) -> Option<Instant> {
        if self.written == Some(counters.generation()) {
            return None;
        }
        Some(match self.written {
            Some(_) => self.last + MIN_INTERVAL,
            None => self.last,
        })
    }

    /// Writes the files if they are due at `now`; `render` makes their text.
    pub fn write_if_due(
        &mut self,
        counters: &Counters,
        now: Instant,
        render: impl FnOnce() -> String,
    ) {
        if self.due(counters).is_some_and(|at| at <= now) {
            self.write(counters, now, render);
        }
    }

    /// Writes the files now if anything changed since the last write, whatever the interval
    /// (the last counts, at a stop).
    pub fn flush(&mut self, counters: &Counters, render: impl FnOnce() -> String) {
        if self.due(counters).is_some() {
            self.write(counters, Instant::now(), render);
        }
    }

    fn write(&mut self, counters: &Counters, now: Instant, render: impl FnOnce() -> String) {
        let text = render();
        for (path, failing) in self.files.iter().zip(self.failing.iter_mut()) {
            match write_atomically(path, text.as_bytes()) {
                Ok(()) => *failing = false,
                Err(e) => {
                    if !*failing {
                        tracing::warn!(
                            "cannot write the metrics to {}: {e} (tried again at the next change)",
                            path.display()
                        );
                    }
                    *failing = true;
                }
            }
        }
        self.written = Some(counters.generation());
        self.last = now;
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never half of
/// one: a temporary file beside it, then a rename. Mode 0644: a textfile collector runs as its
/// own user.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    // a leading dot and no .prom ending: node_exporter reads only `*.prom`
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `knockerd status --metrics`: the last metrics the daemon wrote in `state_dir`.
pub fn read(state_dir: &Path) -> Result<String, MetricsError> {
    let path = state_dir.join(FILE_NAME);
    std::fs::read_to_string(&path).map_err(|source| MetricsError::Read { path, source })
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read {}: {source} (knockerd writes it once it runs; is this its state_dir?)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_door_is_listed_from_the_start_and_counts_add_up() {
        let mut c = Counters::default();
        c.know_doors(["ssh", "web"]);
        c.door("ssh").seen += 3;
        *c.door("ssh").refused.entry(Reason::WrongPort).or_default() += 2;
        c.door("web").grants += 1;
        c.add_source(&SourceCounts {
            knocks: 4,
            overruns: 1,
            ..SourceCounts::default()
        });
        c.worker_restarted();
        c.table_restored();
        let text = c.render(1_767_225_600, 1);
        for line in [
            "knockerd_start_time_seconds 1767225600",
            "knockerd_knocks_seen_total{door=\"ssh\"} 3",
            "knockerd_knocks_seen_total{door=\"web\"} 0",
            "knockerd_refused_total{door=\"ssh\",reason=\"wrong_port\"} 2",
            "knockerd_grants_total{door=\"web\"} 1",
            "knockerd_grants_total{door=\"ssh\"} 0",
            "knockerd_grants_open 1",
            "knockerd_source_packets_total{kind=\"knock\"} 4",
            "knockerd_source_overruns_total 1",
            "knockerd_worker_restarts_total 1",
            "knockerd_table_restores_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(
            !text.contains("door=\"web\",reason"),
            "no reason row before a refusal"
        );
    }

    #[test]
    fn the_shared_store_s_families_appear_only_when_one_is_configured() {
        let mut c = Counters::default();
        assert!(c.shared_mut().is_none());
        assert!(!c.render(0, 0).contains("shared_state"));
        c.shared_configured(true);
        if let Some(s) = c.shared_mut() {
            s.taken += 2;
            s.down_local += 1;
            s.outages = 1;
            s.up = false;
        }
        let text = c.render(0, 0);
        for line in [
            "knockerd_shared_state_claims_total{result=\"claimed\"} 0",
            "knockerd_shared_state_claims_total{result=\"taken\"} 2",
            "knockerd_shared_state_claims_total{result=\"down_refused\"} 0",
            "knockerd_shared_state_claims_total{result=\"down_local\"} 1",
            "knockerd_shared_state_outages_total 1",
            "knockerd_shared_state_up 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        // a second call keeps the counts (a reload that keeps the store)
        c.shared_configured(true);
        assert!(c.render(0, 0).contains("{result=\"taken\"} 2"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut c = Counters::default();
        c.know_doors(["a \"door\"\\\nname"]);
        let text = c.render(0, 0);
        assert!(
            text.contains("knockerd_grants_total{door=\"a \\\"door\\\"\\\\\\nname\"} 0"),
            "{text}"
        );
        assert!(text.lines().all(|l| !l.is_empty()));
    }

    #[test]
    fn the_writer_writes_on_change_at_most_once_a_second_and_never_when_idle() {
        let dir = crate::TestDir::new("metrics");
        std::fs::create_dir_all(&dir.0).expect("dir");
        let extra = dir.0.join("textfile").join("knockerd.prom");
        std::fs::create_dir_all(extra.parent().expect("parent")).expect("dir");
        let mut w = Writer::new(&dir.0, Some(&extra));
        let mut c = Counters::default();
        let t0 = Instant::now();
        assert!(
            w.due(&c).is_some_and(|at| at <= t0),
            "the first write is due at once"
        );
        w.write_if_due(&c, t0, || c.render(1, 0));
        assert_eq!(read(&dir.0).expect("written"), c.render(1, 0));
        assert_eq!(
            std::fs::read_to_string(&extra).expect("extra"),
            c.render(1, 0)
        );
        assert_eq!(w.due(&c), None, "idle: nothing due, no wake-up");
        c.door("ssh").grants += 1;
        assert_eq!(
            w.due(&c),
            Some(t0 + MIN_INTERVAL),
            "a change waits out the second"
        );
        w.write_if_due(&c, t0 + Duration::from_millis(500), || c.render(1, 0));
        assert!(!read(&dir.0).expect("read").contains("ssh"), "not yet");
        w.write_if_due(&c, t0 + MIN_INTERVAL, || c.render(1, 0));
        assert!(read(&dir.0)
            .expect("read")
            .contains("knockerd_grants_total{door=\"ssh\"} 1"));
        assert_eq!(w.due(&c), None);
        // a stop writes the last change at once, whatever the interval
        c.door("ssh").grants += 1;
        w.flush(&c, || c.render(1, 0));
        assert!(read(&dir.0)
            .expect("read")
            .contains("knockerd_grants_total{door=\"ssh\"} 2"));
        assert_eq!(w.due(&c), None);
        let names: Vec<_> = std::fs::read_dir(&dir.0)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".tmp")),
            "no temporary file left: {names:?}"
        );
    }

    #[test]
    fn a_file_that_cannot_be_written_is_logged_once_and_the_others_still_are() {
        let dir = crate::TestDir::new("metrics-fail");
        std::fs::create_dir_all(&dir.0).expect("dir");
        let mut w = Writer::new(&dir.0, Some(&dir.0.join("missing-dir").join("k.prom")));
        let c = Counters::default();
        w.write_if_due(&c, Instant::now(), || c.render(0, 0));
        assert!(
            read(&dir.0).is_ok(),
            "the state directory's file is written"
        );
        assert_eq!(w.failing, vec![false, true]);
    }

    #[test]
    fn every_reason_has_its_own_label() {
        let labels: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        for r in Reason::ALL {
            let wire = serde_json::to_string(&r).expect("json");
            assert_eq!(
                wire,
                format!("\"{}\"", r.label()),
                "the wire's name is the label"
            );
        }
    }
}
