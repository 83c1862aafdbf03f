//! The ledger: what knockerd has promised to undo and what it must never accept again, on disk.
//!
//! # What it keeps
//!
//! - **Pending stop commands** ([`Record::StopPending`]): the argv that closes a door, and when.
//!   After `kill -9`, a power cut or a clean stop, the next start runs every overdue stop at once
//!   and schedules the rest ([`State::pending_stops`]). The argv is stored exactly as it will be
//!   executed (`["/bin/sh", "-c", "..."]` for a shell command), so a stop runs as it was decided,
//!   even if the configuration changed in between. That is also why the file is trusted like the
//!   configuration: it must be owned by the daemon's user and not writable by anyone else, or
//!   [`Ledger::open`] refuses it.
//! - **Pending delayed commands** ([`Record::ActionPending`]): a door's `[[door.NAME.command]]`
//!   with a delay or `at = "end"`, kept and replayed like a stop command (the same `stop_moved`
//!   and `stop_done` records move and end it; [`State::pending_actions`]).
//! - **Used counters** ([`Record::Used`]): the highest one-time line, HOTP counter or TOTP time
//!   step a door has accepted, per `(door, key)`. Replay keeps the maximum, so a recorded knock
//!   never works again, after a restart or a crash. Deleting the ledger forgets them.
//! - **Replay memory** ([`Record::Seen`]): digests of authenticated messages, until they can no
//!   longer pass their age check. Bounded by [`Options::max_seen`].
//! - **Grants** ([`Record::Grant`]): what is open to whom until when, for `knockerd status` and
//!   audit. Bounded by [`Options::max_grants`].
//!
//! # On disk
//!
//! An append-only journal of JSON lines, one record per line, each with a sequence number that
//! strictly increases through the file (`seq`) and the wall-clock time it was written (`t`, unix
//! seconds):
//!
//! ```text
//! {"seq":1,"t":1767225600,"kind":"used","door":"vault","key":"hotp","value":17}
//! {"seq":2,"t":1767225600,"kind":"grant","door":"vault","addr":"203.0.113.7","services":["tcp/22"],"until_unix":1767225630}
//! {"seq":3,"t":1767225600,"kind":"stop_pending","door":"vault","addr":"203.0.113.7","command":["/bin/sh","-c","iptables -D INPUT -s 203.0.113.7 -j ACCEPT"],"due_unix":1767225630}
//! {"seq":4,"t":1767225610,"kind":"stop_moved","id":3,"due_unix":1767225640}
//! {"seq":5,"t":1767225640,"kind":"stop_done","id":3}
//! {"seq":6,"t":1767225641,"kind":"action_pending","door":"vault","addr":"203.0.113.7","command":["/usr/bin/logger","vault open 5m"],"due_unix":1767225941,"at_end":false}
//! {"seq":7,"t":1767225641,"kind":"seen","digest":"q1Xw...","until_unix":1767225761}
//! ```
//!
//! A pending stop is named by the sequence number of its `stop_pending` record (its *id*):
//! `stop_moved` reschedules it (a repeated knock extended the grant), `stop_done` ends it.
//!
//! # Durability
//!
//! [`Ledger::append`] and [`Ledger::append_batch`] return only after the records are on disk
//! (one `write`, then `fdatasync`). The caller writes *before* it acts: a used counter before the
//! grant is applied, a pending stop before the start command runs. A record counts once its line,
//! newline included, is complete: a crash mid-append leaves a torn last line, which the next open
//! drops (and truncates away) with a warning. Any other line that does not parse, or a sequence
//! number out of order, is an error naming the line, because silently dropping history could
//! re-enable a used counter or forget a stop; the admin must look.
//!
//! `stop_done` is written *after* the stop command was started, so stop commands run **at least
//! once**: a crash between the start and the `stop_done` record runs the command again at the
//! next start. For closing a door that is the right side to err on; stop commands should be
//! idempotent (`iptables -D` of a rule that is gone fails harmlessly).
//!
//! If a write fails the file is truncated back to its last complete record and the error is
//! returned. If that truncation, an `fdatasync` or the directory sync of a compaction fails, what
//! is on disk is uncertain: the ledger is *poisoned* and refuses every further record
//! ([`LedgerError::Poisoned`]) until knockerd restarts and replays the file. Either way the
//! caller must not apply the grant the record was for: knockerd fails closed.
//!
//! # Compaction and bounds
//!
//! The ledger mirrors the file in memory as a [`State`]: pending stops minus done ones (moves
//! folded in), the maximum used value per `(door, key)`, unexpired seen digests and grants. When
//! the file has at least [`Options::compact_min_records`] records or
//! [`Options::compact_min_bytes`] bytes and more than half of them are dead, [`Ledger::append`]
//! compacts: the live records are written, with their original `seq` and `t`, in order, to
//! `<path>.tmp` (0600), followed by a `compacted` marker that carries the sequence on, so numbers
//! are never reused; the file is synced, renamed over the journal and the directory synced. The
//! journal is therefore always either the old file or the new one, never missing or half
//! written; a `.tmp` left by a crash is removed at open. A compacted file is a replay of the
//! same state: every line of it was a line of the old file, except a pending stop carries its
//! latest due time.
//!
//! Seen digests and grants are bounded ([`Options::max_seen`], [`Options::max_grants`]): when
//! full, the entry that expires first is dropped (a warning is logged at the 1st, 2nd, 4th, ...
//! drop). Replay applies the same bound, so memory and the file stay bounded under a flood.
//! Pending stops are never dropped (that would leave a door open); the gatekeeper bounds how
//! many doors it opens. A file larger than [`Options::max_bytes`] is refused at open, and an
//! append that would grow it past that fails with [`LedgerError::Full`] after trying a
//! compaction, so the daemon never writes a ledger it would refuse to read.
//!
//! # One daemon per ledger
//!
//! [`Ledger::open`] takes an exclusive, non-blocking `flock` on the journal; a second daemon gets
//! [`LedgerError::Locked`]. Compaction locks the new file before renaming it into place, and
//! open checks after locking that the path still names the inode it locked (and retries if a
//! compaction replaced it in between), so the lock holds across compactions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The ledger's file name inside the daemon's state directory.
pub const FILE_NAME: &str = "ledger.jsonl";

/// Where the daemon keeps its ledger unless configured otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/knocker/ledger.jsonl";

/// The longest line the ledger writes or reads. Records are small (a door name, an address, a
/// configured argv); a longer line is not one of ours.
pub const MAX_LINE: usize = 64 * 1024;

/// The current wall-clock time in unix seconds (0 before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One entry of the journal. Times are unix seconds; an entry with `until_unix` is live while
/// `now < until_unix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A stop command to run at `due_unix`. Its id is the sequence number of this record.
    StopPending {
        door: String,
        addr: IpAddr,
        command: Vec<String>,
        due_unix: u64,
    },
    /// The pending stop or action `id` is now due at `due_unix` (a refreshed grant).
    StopMoved { id: u64, due_unix: u64 },
    /// The stop command or action `id` was started (written after the start: at least once).
    StopDone { id: u64 },
    /// A door's delayed command (`[[door.NAME.command]]`) to run at `due_unix`, `at_end` of the
    /// grant (a refresh moves it) or after a delay. Its id is the sequence number of this record.
    ActionPending {
        door: String,
        addr: IpAddr,
        command: Vec<String>,
        due_unix: u64,
        at_end: bool,
    },
    /// `value` of `key` ("onetime", "hotp", "totp", ...) was used by `door`; everything up to
    /// the highest recorded value is used.
    Used {
        door: String,
        key: String,
        value: u64,
    },
    /// A message digest (base64) that must not be accepted again before `until_unix`.
    Seen { digest: String, until_unix: u64 },
    /// `services` are open to `addr` through `door` until `until_unix`.
    Grant {
        door: String,
        addr: IpAddr,
        services: Vec<String>,
        until_unix: u64,
    },
    /// Written last by a compaction of `records` records down to `live`; it carries the
    /// sequence on. Never live itself.
    Compacted { records: u64, live: u64 },
}

/// A record as it is written: its place in the journal, its time, and the record.
#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    t: u64,
    #[serde(flatten)]
    record: &'a Record,
}

#[derive(Deserialize)]
struct LineIn {
    seq: u64,
    t: u64,
    #[serde(flatten)]
    record: Record,
}

/// Limits and compaction thresholds.
#[derive(Debug, Clone)]
pub struct Options {
    /// Live seen digests at most; when full, the one that expires first is dropped.
    pub max_seen: usize,
    /// Live grants at most; when full, the one that ends first is dropped.
    pub max_grants: usize,
    /// The largest file the ledger reads or writes.
    pub max_bytes: u64,
    /// Compact once the file has this many records (and more than half are dead) ...
    pub compact_min_records: u64,
    /// ... or this many bytes (and more than half of the records are dead).
    pub compact_min_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_seen: 65_536,
            max_grants: 65_536,
            max_bytes: 64 << 20,
            compact_min_records: 10_000,
            compact_min_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("another knockerd is using {0}")]
    Locked(PathBuf),
    #[error("ledger {0} is a symbolic link or not a regular file; refusing it")]
    NotAFile(PathBuf),
    #[error(
        "ledger {path} is writable by group or others (mode {mode:o}); it holds commands run as \
         root: check who changed it, then chmod 600 it"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error(
        "ledger {path} is owned by uid {owner}, not by knockerd's uid {me}; it holds commands run \
         as root: check who wrote it, then chown it"
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "directory {path} of the ledger is not safe (owner uid {owner}, mode {mode:o}): it must \
         belong to knockerd's user or root and not be writable by group or others"
    )]
    UnsafeDir {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error(
        "ledger {path} is {size} bytes, more than the limit of {max}; knockerd compacts its \
         ledger long before that, so look at it before moving it aside"
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error(
        "{path}:{line}: {reason}; the ledger is damaged in the middle, not just at the end, so \
         knockerd will not guess: look at that line"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("ledger {path}: a record of {len} bytes is longer than the limit of {MAX_LINE}")]
    RecordTooLong { path: PathBuf, len: usize },
    #[error(
        "ledger {path} is full ({bytes} bytes of at most {max}, even after compaction); raise \
         the limit or lower the bounds on seen digests and grants"
    )]
    Full { path: PathBuf, bytes: u64, max: u64 },
    #[error(
        "ledger {0}: an earlier write or sync failed, so what is on disk is uncertain; no more \
         records until knockerd restarts"
    )]
    Poisoned(PathBuf),
}

/// Where a live entry came from: the sequence number and time of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    seq: u64,
    t: u64,
}

/// A stop command that has not been started yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStop {
    /// The sequence number of its `stop_pending` record.
    pub id: u64,
    pub door: String,
    pub addr: IpAddr,
    /// The argv to execute.
    pub command: Vec<String>,
    pub due_unix: u64,
    /// When the stop was recorded.
    pub recorded_unix: u64,
}

/// A delayed command that has not been started yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAction {
    /// The sequence number of its `action_pending` record.
    pub id: u64,
    pub door: String,
    pub addr: IpAddr,
    /// The argv to execute.
    pub command: Vec<String>,
    pub due_unix: u64,
    /// Whether it runs when the grant ends (rather than after a delay).
    pub at_end: bool,
    /// When it was recorded.
    pub recorded_unix: u64,
}

/// What a grant record keeps apart: a refresh of the same door, address and services replaces
/// the earlier end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantKey {
    pub door: String,
    pub addr: IpAddr,
    pub services: Vec<String>,
}

/// Entries that end, at most `limit` of them; when full, the one ending first goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expiring<K: Ord + Clone> {
    by_key: BTreeMap<K, (u64, Origin)>,
    by_until: BTreeSet<(u64, K)>,
}

impl<K: Ord + Clone> Default for Expiring<K> {
    fn default() -> Self {
        Expiring {
            by_key: BTreeMap::new(),
            by_until: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Expiring<K> {
    /// Records `key` until `until`; returns whether an entry (this one or another) was dropped
    /// to stay within `limit`.
    fn insert(&mut self, key: K, until: u64, origin: Origin, limit: usize) -> bool {
        if let Some(&(old, _)) = self.by_key.get(&key) {
            if old >= until {
                return false;
            }
            self.by_until.remove(&(old, key.clone()));
        } else if self.by_key.len() >= limit {
            let first = self.by_until.first().cloned();
            match first {
                Some(first) if (until, &key) > (first.0, &first.1) => {
                    self.by_until.remove(&first);
                    self.by_key.remove(&first.1);
                }
                // The new entry is the one that ends first (or the limit is 0).
                _ => return true,
            }
            self.by_key.insert(key.clone(), (until, origin));
            self.by_until.insert((until, key));
            return true;
        }
        self.by_key.insert(key.clone(), (until, origin));
        self.by_until.insert((until, key));
        false
    }

    fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(first) = self.by_until.first() {
            if first.0 > now {
                break;
            }
            let first = self.by_until.pop_first();
            if let Some((_, key)) = first {
                self.by_key.remove(&key);
            }
            n += 1;
        }
        n
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The live content of the ledger, as replaying the file gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    stops: BTreeMap<u64, PendingStop>,
    actions: BTreeMap<u64, PendingAction>,
    used: BTreeMap<(String, String), (u64, Origin)>,
    seen: Expiring<String>,
    grants: Expiring<GrantKey>,
}

impl State {
    /// Every pending stop, the earliest due first.
    pub fn pending_stops(&self) -> Vec<&PendingStop> {
        let mut v: Vec<&PendingStop> = self.stops.values().collect();
        v.sort_by_key(|s| (s.due_unix, s.id));
        v
    }

    /// Every pending delayed command, the earliest due first.
    pub fn pending_actions(&self) -> Vec<&PendingAction> {
        let mut v: Vec<&PendingAction> = self.actions.values().collect();
        v.sort_by_key(|a| (a.due_unix, a.id));
        v
    }

    /// The pending stop `id`, if it is still pending.
    pub fn pending_stop(&self, id: u64) -> Option<&PendingStop> {
        self.stops.get(&id)
    }

    /// The pending stop for `door` and `addr`, if any (the latest recorded one).
    pub fn pending_stop_for(&self, door: &str, addr: IpAddr) -> Option<&PendingStop> {
        self.stops
            .values()
            .rev()
            .find(|s| s.door == door && s.addr == addr)
    }

    /// The highest used value of `key` for `door`.
    pub fn used(&self, door: &str, key: &str) -> Option<u64> {
        self.used
            .get(&(door.to_owned(), key.to_owned()))
            .map(|&(v, _)| v)
    }

    /// Every `(door, key, highest used value)`.
    pub fn used_all(&self) -> impl Iterator<Item = (&str, &str, u64)> + '_ {
        self.used
            .iter()
            .map(|((d, k), &(v, _))| (d.as_str(), k.as_str(), v))
    }

    /// When `digest` stops being remembered, if it is.
    pub fn seen(&self, digest: &str) -> Option<u64> {
        self.seen.by_key.get(digest).map(|&(u, _)| u)
    }

    /// Every remembered digest and its end, the earliest ending first.
    pub fn seen_all(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.seen.by_until.iter().map(|(u, d)| (d.as_str(), *u))
    }

    /// Every recorded grant and its end, the earliest ending first.
    pub fn grants(&self) -> impl Iterator<Item = (&GrantKey, u64)> + '_ {
        self.grants.by_until.iter().map(|(u, g)| (g, *u))
    }

    /// How many records a compacted file holds for this state (without the marker).
    pub fn live_records(&self) -> usize {
        self.stops.len()
            + self.actions.len()
            + self.used.len()
            + self.seen.len()
            + self.grants.len()
    }

    fn expire(&mut self, now: u64) -> usize {
        self.seen.expire(now) + self.grants.expire(now)
    }

    /// Applies one record; returns whether a seen digest or grant was dropped to stay within the
    /// bounds.
    fn apply(&mut self, seq: u64, t: u64, record: &Record, options: &Options) -> bool {
        let origin = Origin { seq, t };
        match record {
            Record::StopPending {
                door,
                addr,
                command,
                due_unix,
            } => {
                self.stops.insert(
                    seq,
                    PendingStop {
                        id: seq,
                        door: door.clone(),
                        addr: *addr,
                        command: command.clone(),
                        due_unix: *due_unix,
                        recorded_unix: t,
                    },
                );
                false
            }
            Record::StopMoved { id, due_unix } => {
                if let Some(s) = self.stops.get_mut(id) {
                    s.due_unix = *due_unix;
                }
                if let Some(a) = self.actions.get_mut(id) {
                    a.due_unix = *due_unix;
                }
                false
            }
            Record::StopDone { id } => {
                self.stops.remove(id);
                self.actions.remove(id);
                false
            }
            Record::ActionPending {
                door,
                addr,
                command,
                due_unix,
                at_end,
            } => {
                self.actions.insert(
                    seq,
                    PendingAction {
                        id: seq,
                        door: door.clone(),
                        addr: *addr,
                        command: command.clone(),
                        due_unix: *due_unix,
                        at_end: *at_end,
                        recorded_unix: t,
                    },
                );
                false
            }
            Record::Used { door, key, value } => {
                let slot = self
                    .used
                    .entry((door.clone(), key.clone()))
                    .or_insert((*value, origin));
                if *value > slot.0 {
                    *slot = (*value, origin);
                }
                false
            }
            Record::Seen { digest, until_unix } => {
                self.seen
                    .insert(digest.clone(), *until_unix, origin, options.max_seen)
            }
            Record::Grant {
                door,
                addr,
                services,
                until_unix,
            } => {
                let key = GrantKey {
                    door: door.clone(),
                    addr: *addr,
                    services: services.clone(),
                };
                self.grants
                    .insert(key, *until_unix, origin, options.max_grants)
            }
            Record::Compacted { .. } => false,
        }
    }

    /// The records a compacted file holds, in sequence order.
    fn live_lines(&self) -> Vec<(u64, u64, Record)> {
        let mut lines = Vec::with_capacity(self.live_records());
        for s in self.stops.values() {
            lines.push((
                s.id,
                s.recorded_unix,
                Record::StopPending {
                    door: s.door.clone(),
                    addr: s.addr,
                    command: s.command.clone(),
                    due_unix: s.due_unix,
                },
            ));
        }
        for a in self.actions.values() {
            lines.push((
                a.id,
                a.recorded_unix,
                Record::ActionPending {
                    door: a.door.clone(),
                    addr: a.addr,
                    command: a.command.clone(),
                    due_unix: a.due_unix,
                    at_end: a.at_end,
                },
            ));
        }
        for ((door, key), &(value, o)) in &self.used {
            let record = Record::Used {
                door: door.clone(),
                key: key.clone(),
                value,
            };
            lines.push((o.seq, o.t, record));
        }
        for (digest, &(until_unix, o)) in &self.seen.by_key {
            let record = Record::Seen {
                digest: digest.clone(),
                until_unix,
            };
            lines.push((o.seq, o.t, record));
        }
        for (g, &(until_unix, o)) in &self.grants.by_key {
            let record = Record::Grant {
                door: g.door.clone(),
                addr: g.addr,
                services: g.services.clone(),
                until_unix,
            };
            lines.push((o.seq, o.t, record));
        }
        lines.sort_by_key(|l| l.0);
        lines
    }
}

/// What [`Ledger::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The file did not exist and was created.
    pub created: bool,
    /// Complete records replayed.
    pub records: u64,
    /// Bytes of a torn last line that were cut off.
    pub torn_bytes: Option<u64>,
    /// A `.tmp` file of an interrupted compaction was removed.
    pub removed_tmp: bool,
    /// Seen digests and grants that had already ended.
    pub expired: usize,
    /// The file was compacted right away.
    pub compacted: bool,
}

/// The journal, open and locked, and the state it holds.
pub struct Ledger {
    path: PathBuf,
    dir: PathBuf,
    file: Flock<File>,
    options: Options,
    state: State,
    next_seq: u64,
    records: u64,
    bytes: u64,
    poisoned: bool,
    dropped: u64,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("next_seq", &self.next_seq)
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> LedgerError + 'a {
    move |source| LedgerError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `<path>.tmp`: where a compaction writes the new journal before renaming it into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    t: u64,
    record: &Record,
) -> Result<usize, serde_json::Error> {
    let start = out.len();
    serde_json::to_writer(&mut *out, &LineOut { seq, t, record })?;
    out.push(b'\n');
    Ok(out.len() - start)
}

/// Opens `path` for appending without following a symlink; `create` makes it (0600) and fails if
/// it exists.
fn open_journal(path: &Path, create: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).append(true).custom_flags(libc::O_NOFOLLOW);
    if create {
        o.create_new(true).mode(0o600);
    }
    o.open(path)
}

fn lock(file: File, path: &Path) -> Result<Flock<File>, LedgerError> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == Errno::EWOULDBLOCK {
            LedgerError::Locked(path.to_owned())
        } else {
            LedgerError::Io {
                path: path.to_owned(),
                what: "lock it",
                source: e.into(),
            }
        }
    })
}

impl Ledger {
    /// Opens (or creates) the journal at `path`, locks it, and replays it as of `now_unix`.
    ///
    /// The directory is created 0700 if missing and must belong to the daemon's user or root and
    /// not be writable by group or others; the file is created 0600 and must belong to the
    /// daemon's user and not be writable by group or others. A leftover `<path>.tmp` is removed,
    /// a torn last line is cut off, and the file is compacted at once if it is mostly dead.
    pub fn open(
        path: &Path,
        now_unix: u64,
        options: Options,
    ) -> Result<(Ledger, Recovery), LedgerError> {
        let path = path.to_owned();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let me = nix::unistd::geteuid().as_raw();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir, "create its directory"))?;
        let dm = fs::metadata(&dir).map_err(io_err(&dir, "read its directory"))?;
        if !dm.is_dir() || (dm.uid() != me && dm.uid() != 0) || dm.mode() & 0o022 != 0 {
            return Err(LedgerError::UnsafeDir {
                path: dir,
                owner: dm.uid(),
                mode: dm.mode() & 0o7777,
            });
        }

        let mut recovery = Recovery::default();
        let mut attempts = 0;
        let file = loop {
            attempts += 1;
            let (file, created) = match open_journal(&path, false) {
                Ok(f) => (f, false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match open_journal(&path, true) {
                    Ok(f) => (f, true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 5 => continue,
                    Err(e) => return Err(io_err(&path, "create it")(e)),
                },
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(LedgerError::NotAFile(path))
                }
                Err(e) => return Err(io_err(&path, "open it")(e)),
            };
            let m = file.metadata().map_err(io_err(&path, "read it"))?;
            if !m.is_file() {
                return Err(LedgerError::NotAFile(path));
            }
            if m.uid() != me {
                return Err(LedgerError::Owner {
                    path,
                    owner: m.uid(),
                    me,
                });
            }
            if m.mode() & 0o022 != 0 {
                return Err(LedgerError::Writable {
                    path,
                    mode: m.mode() & 0o7777,
                });
            }
            let file = lock(file, &path)?;
            // A compaction by the previous holder may have renamed a new file over the one we
            // opened before we got its lock: then the lock is on a dead inode.
            match fs::symlink_metadata(&path) {
                Ok(now) if now.dev() == m.dev() && now.ino() == m.ino() => {
                    recovery.created = created;
                    break file;
                }
                _ if attempts < 5 => continue,
                Ok(_) => return Err(LedgerError::Locked(path)),
                Err(e) => return Err(io_err(&path, "open it")(e)),
            }
        };
        if recovery.created {
            sync_dir(&dir).map_err(io_err(&dir, "sync its directory"))?;
        }

        // Only the lock holder may remove the temporary file: it could be another daemon's
        // compaction in progress otherwise.
        let tmp = tmp_path(&path);
        match fs::remove_file(&tmp) {
            Ok(()) => {
                tracing::warn!(
                    "ledger {}: removed {} left by an interrupted compaction; the journal is intact",
                    path.display(),
                    tmp.display()
                );
                recovery.removed_tmp = true;
                sync_dir(&dir).map_err(io_err(&dir, "sync its directory"))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, "remove it")(e)),
        }

        let size = file.metadata().map_err(io_err(&path, "read it"))?.len();
        if size > options.max_bytes {
            return Err(LedgerError::TooLarge {
                path,
                size,
                max: options.max_bytes,
            });
        }

        let mut ledger = Ledger {
            path,
            dir,
            file,
            options,
            state: State::default(),
            next_seq: 1,
            records: 0,
            bytes: 0,
            poisoned: false,
            dropped: 0,
        };
        ledger.replay(&mut recovery)?;
        recovery.records = ledger.records;
        recovery.expired = ledger.state.expire(now_unix);
        if ledger.should_compact() {
            ledger.compact(now_unix)?;
            recovery.compacted = true;
        }
        Ok((ledger, recovery))
    }

    fn replay(&mut self, recovery: &mut Recovery) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let corrupt = |line: u64, reason: String| LedgerError::Corrupt {
            path: path.clone(),
            line,
            reason,
        };
        // A second descriptor of the same open file, so that replaying can update `self`.
        let file = self
            .file
            .try_clone()
            .map_err(io_err(&self.path, "read it"))?;
        let mut reader = BufReader::new(file.take(self.options.max_bytes));
        let mut buf = Vec::new();
        let mut offset: u64 = 0;
        let mut line_no: u64 = 0;
        let mut last_seq: u64 = 0;
        let mut torn: Option<(u64, String)> = None;
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(io_err(&self.path, "read it"))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.last() != Some(&b'\n') {
                if n > MAX_LINE {
                    return Err(corrupt(
                        line_no,
                        format!("line longer than {MAX_LINE} bytes"),
                    ));
                }
                torn = Some((n as u64, "no newline at the end".into()));
                break;
            }
            match serde_json::from_slice::<LineIn>(&buf[..n - 1]) {
                Ok(line) => {
                    if line.seq <= last_seq {
                        return Err(corrupt(
                            line_no,
                            format!("sequence number {} does not follow {last_seq}", line.seq),
                        ));
                    }
                    last_seq = line.seq;
                    self.apply(line.seq, line.t, &line.record);
                    offset += n as u64;
                    self.records += 1;
                }
                Err(e) => {
                    let at_end = reader
                        .fill_buf()
                        .map_err(io_err(&self.path, "read it"))?
                        .is_empty();
                    if !at_end {
                        return Err(corrupt(line_no, e.to_string()));
                    }
                    torn = Some((n as u64, e.to_string()));
                    break;
                }
            }
        }
        self.bytes = offset;
        self.next_seq = last_seq + 1;
        if let Some((len, why)) = torn {
            tracing::warn!(
                "ledger {}: line {line_no} is torn ({why}): a crash interrupted that append; its \
                 {len} bytes are cut off",
                self.path.display()
            );
            self.file
                .set_len(offset)
                .map_err(io_err(&self.path, "cut off its torn last line"))?;
            self.file
                .sync_data()
                .map_err(io_err(&self.path, "sync it"))?;
            recovery.torn_bytes = Some(len);
        }
        Ok(())
    }

    fn apply(&mut self, seq: u64, t: u64, record: &Record) {
        if self.state.apply(seq, t, record, &self.options) {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    "ledger {}: dropped the earliest-ending seen digest or grant to stay within \
                     the bounds ({} so far); raise max_seen/max_grants if this is not a flood",
                    self.path.display(),
                    self.dropped
                );
            }
        }
    }

    /// How many seen digests and grants this process dropped to stay within the bounds
    /// (counting drops during the replay at open).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The live state, as a replay of the file gives it.
    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next record gets (and so the id of the next pending stop).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records in the file now (live and dead).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes in the file now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Forgets seen digests and grants that ended at or before `now_unix`, in memory; the next
    /// compaction leaves them out of the file. Returns how many were forgotten.
    pub fn expire(&mut self, now_unix: u64) -> usize {
        self.state.expire(now_unix)
    }

    /// Writes `record` and syncs it to disk; returns its sequence number (for a
    /// [`Record::StopPending`], its id). May compact afterwards.
    pub fn append(&mut self, now_unix: u64, record: Record) -> Result<u64, LedgerError> {
        self.append_batch(now_unix, std::slice::from_ref(&record))
            .map(|r| r.start)
    }

    /// Writes `records` with one write and one sync; returns their sequence numbers, in order.
    /// Either all of them count after a crash or, if the sync did not complete, possibly only a
    /// prefix of them: put the record that must not be lost first.
    pub fn append_batch(
        &mut self,
        now_unix: u64,
        records: &[Record],
    ) -> Result<Range<u64>, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned(self.path.clone()));
        }
        let first = self.next_seq;
        let mut buf = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let len = encode(&mut buf, first + i as u64, now_unix, r)
                .map_err(|e| io_err(&self.path, "encode a record")(e.into()))?;
            if len > MAX_LINE {
                return Err(LedgerError::RecordTooLong {
                    path: self.path.clone(),
                    len,
                });
            }
        }
        if buf.is_empty() {
            return Ok(first..first);
        }
        if self.bytes + buf.len() as u64 > self.options.max_bytes {
            self.state.expire(now_unix);
            // Compacting a file with nothing dead in it (but an old marker) gains nothing.
            if self.state.live_records() as u64 + 1 < self.records {
                self.compact(now_unix)?;
            }
            if self.bytes + buf.len() as u64 > self.options.max_bytes {
                return Err(LedgerError::Full {
                    path: self.path.clone(),
                    bytes: self.bytes,
                    max: self.options.max_bytes,
                });
            }
        }
        if let Err(e) = (&*self.file).write_all(&buf) {
            // Leave no partial line behind for the next append to follow: it would become a
            // corrupt line in the middle.
            if self.file.set_len(self.bytes).is_err() {
                self.poisoned = true;
            }
            return Err(io_err(&self.path, "append to it")(e));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: nobody knows
            // what is on disk.
            self.poisoned = true;
            return Err(io_err(&self.path, "sync it")(e));
        }
        self.bytes += buf.len() as u64;
        self.records += records.len() as u64;
        self.next_seq += records.len() as u64;
        for (i, r) in records.iter().enumerate() {
            self.apply(first + i as u64, now_unix, r);
        }
        let seqs = first..self.next_seq;
        self.maybe_compact(now_unix);
        Ok(seqs)
    }

    fn should_compact(&self) -> bool {
        (self.records >= self.options.compact_min_records
            || self.bytes >= self.options.compact_min_bytes)
            && (self.state.live_records() as u64) * 2 < self.records
    }

    fn maybe_compact(&mut self, now_unix: u64) {
        self.state.expire(now_unix);
        if self.should_compact() {
            if let Err(e) = self.compact(now_unix) {
                // The records are safe in the journal; only its size waits for the next try.
                tracing::warn!("{e}; the journal stays as it is");
            }
        }
    }

    /// Rewrites the journal to hold only the live state as of `now_unix` (see the module docs).
    /// On an error before the rename the old journal is untouched and still in use.
    pub fn compact(&mut self, now_unix: u64) -> Result<(), LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned(self.path.clone()));
        }
        self.state.expire(now_unix);
        let lines = self.state.live_lines();
        let mut buf = Vec::new();
        for (seq, t, r) in &lines {
            encode(&mut buf, *seq, *t, r)
                .map_err(|e| io_err(&self.path, "encode a record")(e.into()))?;
        }
        let marker = Record::Compacted {
            records: self.records,
            live: lines.len() as u64,
        };
        encode(&mut buf, self.next_seq, now_unix, &marker)
            .map_err(|e| io_err(&self.path, "encode a record")(e.into()))?;
        if buf.len() as u64 > self.options.max_bytes {
            return Err(LedgerError::Full {
                path: self.path.clone(),
                bytes: buf.len() as u64,
                max: self.options.max_bytes,
            });
        }

        let tmp = tmp_path(&self.path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, "remove it")(e)),
        }
        let written = (|| {
            let mut f = open_journal(&tmp, true)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            Ok(f)
        })();
        let new = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(&tmp, "write a compacted journal")(e));
            }
        };
        // Locked before it is visible, so a daemon that opens the path after the rename finds it
        // locked.
        let new = match lock(new, &tmp) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(
                &self.path,
                "rename the compacted journal into place",
            )(e));
        }
        // From here on the path names the new file, so appends must go there.
        self.file = new;
        let before = (self.records, self.bytes);
        self.records = lines.len() as u64 + 1;
        self.bytes = buf.len() as u64;
        self.next_seq += 1;
        if let Err(e) = sync_dir(&self.dir) {
            // The rename may not survive a crash, and records appended to the new file would
            // then be lost with it.
            self.poisoned = true;
            return Err(io_err(&self.dir, "sync its directory")(e));
        }
        tracing::info!(
            "ledger {}: compacted {} records ({} bytes) to {} live ({} bytes)",
            self.path.display(),
            before.0,
            before.1,
            lines.len(),
            self.bytes
        );
        Ok(())
    }
}

/// The state of the journal at `path` as of `now_unix`, read without the lock and without
/// changing anything: for `knockerd status` while the daemon holds the ledger. The last line
/// may be an append in progress, so an incomplete or unreadable last line is left out; any
/// other bad line is an error, as at open. `Ok(None)` when there is no journal.
pub fn read_state(
    path: &Path,
    now_unix: u64,
    options: &Options,
) -> Result<Option<State>, LedgerError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(LedgerError::NotAFile(path.to_owned()))
        }
        Err(e) => return Err(io_err(path, "open it")(e)),
    };
    let mut text = Vec::new();
    file.take(options.max_bytes)
        .read_to_end(&mut text)
        .map_err(io_err(path, "read it"))?;
    let corrupt = |index: usize, reason: String| LedgerError::Corrupt {
        path: path.to_owned(),
        line: index as u64 + 1,
        reason,
    };
    let mut state = State::default();
    let mut last_seq = 0;
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let parsed = line
            .strip_suffix(b"\n")
            .ok_or_else(|| "no newline at the end".to_string())
            .and_then(|l| serde_json::from_slice::<LineIn>(l).map_err(|e| e.to_string()));
        let line = match parsed {
            Ok(line) if line.seq > last_seq => line,
            Ok(line) => {
                let reason = format!("sequence number {} does not follow {last_seq}", line.seq);
                return Err(corrupt(i, reason));
            }
            Err(_) if i + 1 == lines.len() => break,
            Err(reason) => return Err(corrupt(i, reason)),
        };
        last_seq = line.seq;
        state.apply(line.seq, line.t, &line.record, options);
    }
    state.expire(now_unix);
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DIRS: AtomicUsize = AtomicUsize::new(0);

    /// A fresh directory for one test, removed when dropped.
    pub(super) struct TempDir(PathBuf);
    impl TempDir {
        pub(super) fn new(name: &str) -> TempDir {
            let n = DIRS.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("knocker-ledger-{name}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            DirBuilder::new().mode(0o700).create(&p).expect("temp dir");
            TempDir(p)
        }
        pub(super) fn ledger(&self) -> PathBuf {
            self.0.join("ledger.jsonl")
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn stop(door: &str, addr: &str, due: u64) -> Record {
        Record::StopPending {
            door: door.into(),
            addr: ip(addr),
            command: vec!["/bin/sh".into(), "-c".into(), format!("close {addr}")],
            due_unix: due,
        }
    }

    fn seen(d: &str, until: u64) -> Record {
        Record::Seen {
            digest: d.into(),
            until_unix: until,
        }
    }

    fn used(door: &str, key: &str, value: u64) -> Record {
        Record::Used {
            door: door.into(),
            key: key.into(),
            value,
        }
    }

    fn grant(addr: &str, until: u64) -> Record {
        Record::Grant {
            door: "ssh".into(),
            addr: ip(addr),
            services: vec!["tcp/22".into()],
            until_unix: until,
        }
    }

    fn open(path: &Path, now: u64) -> (Ledger, Recovery) {
        Ledger::open(path, now, Options::default()).expect("open")
    }

    #[test]
    fn a_pending_action_is_moved_kept_through_a_compaction_and_ended() {
        let d = TempDir::new("actions");
        let action = Record::ActionPending {
            door: "ssh".into(),
            addr: ip("203.0.113.7"),
            command: vec!["/usr/bin/touch".into(), "/tmp/x".into()],
            due_unix: 160,
            at_end: true,
        };
        {
            let (mut l, _) = open(&d.ledger(), 100);
            let batch = [
                grant("203.0.113.7", 160),
                action,
                stop("ssh", "203.0.113.7", 170),
            ];
            let ids = l.append_batch(100, &batch).expect("append");
            let id = ids.start + 1;
            l.append(110, Record::StopMoved { id, due_unix: 190 })
                .expect("moved");
            assert_eq!(l.state().pending_actions().len(), 1);
            assert_eq!(
                l.state().pending_stops().len(),
                1,
                "an action is not a stop command"
            );
            l.compact(110).expect("compact");
        }
        let (mut l, _) = open(&d.ledger(), 120);
        let a = l.state().pending_actions()[0].clone();
        assert_eq!(
            (a.id, a.due_unix, a.at_end, a.recorded_unix),
            (2, 190, true, 100)
        );
        assert_eq!(a.command, ["/usr/bin/touch", "/tmp/x"]);
        l.append(190, Record::StopDone { id: a.id }).expect("done");
        assert!(l.state().pending_actions().is_empty());
        assert_eq!(l.state().pending_stops().len(), 1);
    }

    #[test]
    fn every_record_kind_round_trips() {
        let d = TempDir::new("roundtrip");
        let all = vec![
            stop("ssh", "2001:db8::7", 130),
            Record::StopMoved {
                id: 1,
                due_unix: 140,
            },
            Record::StopDone { id: 99 },
            used("vault", "hotp", u64::MAX),
            seen("q1Xw+/==", 220),
            grant("203.0.113.7", 130),
            Record::Compacted {
                records: 5,
                live: 2,
            },
        ];
        {
            let (mut l, r) = open(&d.ledger(), 100);
            assert!(r.created);
            assert_eq!(l.append_batch(100, &all).expect("append"), 1..8);
        }
        let text = fs::read_to_string(d.ledger()).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), all.len());
        assert_eq!(
            lines[0],
            r#"{"seq":1,"t":100,"kind":"stop_pending","door":"ssh","addr":"2001:db8::7","command":["/bin/sh","-c","close 2001:db8::7"],"due_unix":130}"#
        );
        for (i, (line, rec)) in lines.iter().zip(&all).enumerate() {
            let back: LineIn = serde_json::from_str(line).expect("parses");
            assert_eq!((back.seq, back.t), (i as u64 + 1, 100));
            assert_eq!(&back.record, rec);
        }
        let (l, r) = open(&d.ledger(), 100);
        assert!(!r.created);
        assert_eq!(r.records, 7);
        assert_eq!(l.next_seq(), 8);
        let s = l.state();
        let stops = s.pending_stops();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].due_unix, 140, "moved");
        assert_eq!(stops[0].addr, ip("2001:db8::7"));
        assert_eq!(s.used("vault", "hotp"), Some(u64::MAX));
        assert_eq!(s.seen("q1Xw+/=="), Some(220));
        assert_eq!(s.grants().count(), 1);
    }

    #[test]
    fn recovery_keeps_what_is_live() {
        let d = TempDir::new("recovery");
        {
            let (mut l, _) = open(&d.ledger(), 100);
            let a = l.append(100, stop("ssh", "10.0.0.1", 300)).expect("a");
            let b = l.append(101, stop("ssh", "10.0.0.2", 200)).expect("b");
            let c = l.append(102, stop("web", "10.0.0.3", 250)).expect("c");
            l.append(103, Record::StopDone { id: b }).expect("done");
            l.append(
                104,
                Record::StopMoved {
                    id: c,
                    due_unix: 400,
                },
            )
            .expect("moved");
            for v in [5, 9, 7] {
                l.append(105, used("vault", "hotp", v)).expect("used");
            }
            l.append(105, used("vault", "totp", 3)).expect("used");
            l.append(105, used("other", "hotp", 1)).expect("used");
            l.append(106, seen("old", 150)).expect("seen");
            l.append(106, seen("new", 500)).expect("seen");
            l.append(106, seen("new", 450))
                .expect("an earlier end does not shorten");
            l.append(107, grant("10.0.0.1", 150)).expect("grant");
            l.append(107, grant("10.0.0.2", 600)).expect("grant");
            let _ = a;
        }
        let (l, r) = open(&d.ledger(), 200);
        assert_eq!(r.expired, 2, "old seen and the first grant ended");
        let s = l.state();
        let stops: Vec<(u64, &str, u64)> = s
            .pending_stops()
            .iter()
            .map(|p| (p.id, p.door.as_str(), p.due_unix))
            .collect();
        assert_eq!(stops, vec![(1, "ssh", 300), (3, "web", 400)], "by due");
        assert_eq!(s.pending_stop(1).map(|p| p.recorded_unix), Some(100));
        assert_eq!(
            s.pending_stop_for("web", ip("10.0.0.3")).map(|p| p.id),
            Some(3)
        );
        assert_eq!(s.used("vault", "hotp"), Some(9));
        assert_eq!(s.used("vault", "totp"), Some(3));
        assert_eq!(s.used("other", "hotp"), Some(1));
        assert_eq!(s.used("vault", "onetime"), None);
        assert_eq!(s.used_all().count(), 3);
        assert_eq!(s.seen_all().collect::<Vec<_>>(), vec![("new", 500)]);
        let g: Vec<(IpAddr, u64)> = s.grants().map(|(k, u)| (k.addr, u)).collect();
        assert_eq!(g, vec![(ip("10.0.0.2"), 600)]);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let d = TempDir::new("torn");
        {
            let (mut l, _) = open(&d.ledger(), 100);
            l.append(100, used("vault", "hotp", 4)).expect("used");
        }
        let good = fs::metadata(d.ledger()).expect("meta").len();
        for tail in [
            &br#"{"seq":2,"t":100,"kind":"used","door":"vault","ke"#[..],
            br#"{"seq":2,"t":100,"kind":"used","door":"vault","key":"hotp","value":5}"#,
            b"\0\0\0\0\0\0\0\0",
            b"{\"seq\":2,\"t\n",
        ] {
            let mut f = OpenOptions::new()
                .append(true)
                .open(d.ledger())
                .expect("open");
            f.write_all(tail).expect("write");
            drop(f);
            let (mut l, r) = open(&d.ledger(), 100);
            assert_eq!(r.torn_bytes, Some(tail.len() as u64));
            assert_eq!(r.records, 1);
            assert_eq!(l.state().used("vault", "hotp"), Some(4));
            assert_eq!(fs::metadata(d.ledger()).expect("meta").len(), good);
            assert_eq!(l.next_seq(), 2);
            // appending after the repair gives a clean file
            l.append(101, used("vault", "hotp", 6)).expect("used");
            drop(l);
            let (l, r) = open(&d.ledger(), 100);
            assert_eq!(r.torn_bytes, None);
            assert_eq!(l.state().used("vault", "hotp"), Some(6));
            drop(l);
            // back to the one-record file for the next case
            let f = OpenOptions::new()
                .write(true)
                .open(d.ledger())
                .expect("open");
            f.set_len(good).expect("truncate");
        }
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_with_its_number() {
        let d = TempDir::new("corrupt");
        {
            let (mut l, _) = open(&d.ledger(), 100);
            for v in 1..=4 {
                l.append(100, used("vault", "hotp", v)).expect("used");
            }
        }
        let text = fs::read_to_string(d.ledger()).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[2] = lines[2].replace("\"used\"", "\"usd\"");
        fs::write(d.ledger(), lines.join("\n") + "\n").expect("write");
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("corrupt");
        assert!(matches!(e, LedgerError::Corrupt { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("ledger.jsonl:3:"), "{e}");
        // and the file was not touched
        assert_eq!(
            fs::read_to_string(d.ledger()).expect("read"),
            lines.join("\n") + "\n"
        );

        // sequence numbers must increase
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.swap(1, 2);
        fs::write(d.ledger(), lines.join("\n") + "\n").expect("write");
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("order");
        assert!(matches!(e, LedgerError::Corrupt { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("does not follow"), "{e}");

        // an overlong line is not read into memory as a whole
        let mut big = text.lines().next().expect("line").to_owned();
        big.push_str(&" ".repeat(MAX_LINE + 10));
        fs::write(d.ledger(), format!("{big}\n{}", text)).expect("write");
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("long");
        assert!(matches!(e, LedgerError::Corrupt { line: 1, .. }), "{e}");
    }

    #[test]
    fn unsafe_files_and_directories_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = TempDir::new("perms");
        drop(open(&d.ledger(), 100));
        let mode = fs::metadata(d.ledger()).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "created 0600");

        fs::set_permissions(d.ledger(), fs::Permissions::from_mode(0o666)).expect("chmod");
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("0666");
        assert!(
            matches!(e, LedgerError::Writable { mode: 0o666, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::set_permissions(d.ledger(), fs::Permissions::from_mode(0o620)).expect("chmod");
        assert!(Ledger::open(&d.ledger(), 100, Options::default()).is_err());
        fs::set_permissions(d.ledger(), fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(Ledger::open(&d.ledger(), 100, Options::default()).is_ok());

        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(d.ledger(), Some(65534), None).expect("chown");
            let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("owner");
            assert!(matches!(e, LedgerError::Owner { owner: 65534, .. }), "{e}");
            std::os::unix::fs::chown(d.ledger(), Some(0), None).expect("chown");
        }

        // a symlink in place of the journal is not followed
        let target = d.0.join("elsewhere");
        fs::write(&target, "").expect("write");
        let link = d.0.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let e = Ledger::open(&link, 100, Options::default()).expect_err("symlink");
        assert!(matches!(e, LedgerError::NotAFile(_)), "{e}");

        // a directory others can write to is refused
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("dir");
        assert!(matches!(e, LedgerError::UnsafeDir { .. }), "{e}");
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o700)).expect("chmod");

        // a missing directory is created 0700
        let deep = d.0.join("a/b/ledger.jsonl");
        drop(open(&deep, 100));
        let mode = fs::metadata(d.0.join("a/b"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_second_daemon_cannot_open_it() {
        let d = TempDir::new("flock");
        let (mut l, _) = open(&d.ledger(), 100);
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("locked");
        assert!(matches!(e, LedgerError::Locked(_)), "{e}");
        assert!(
            e.to_string().starts_with("another knockerd is using "),
            "{e}"
        );
        // still locked after a compaction replaced the file
        l.append(100, used("vault", "hotp", 1)).expect("used");
        l.compact(100).expect("compact");
        let e = Ledger::open(&d.ledger(), 100, Options::default()).expect_err("locked");
        assert!(matches!(e, LedgerError::Locked(_)), "{e}");
        drop(l);
        assert!(Ledger::open(&d.ledger(), 100, Options::default()).is_ok());
    }

    #[test]
    fn compaction_keeps_exactly_the_live_state_and_shrinks_the_file() {
        let d = TempDir::new("compact");
        let (mut l, _) = open(&d.ledger(), 100);
        for i in 0..200u64 {
            let id = l
                .append(100 + i, stop("ssh", "10.0.0.1", 1000 + i))
                .expect("stop");
            if i % 10 != 0 {
                l.append(100 + i, Record::StopDone { id }).expect("done");
            }
            l.append(100 + i, used("vault", "hotp", i)).expect("used");
            l.append(100 + i, seen(&format!("d{i}"), 100 + i + 50))
                .expect("seen");
        }
        let before_state = {
            let mut s = l.state().clone();
            s.expire(400);
            s
        };
        let before_bytes = l.bytes();
        let before_seq = l.next_seq();
        let old_text = fs::read_to_string(d.ledger()).expect("read");
        l.compact(400).expect("compact");
        assert_eq!(l.state(), &before_state);
        assert_eq!(l.next_seq(), before_seq + 1);
        let text = fs::read_to_string(d.ledger()).expect("read");
        assert_eq!(text.len() as u64, l.bytes());
        assert!(
            l.bytes() * 10 < before_bytes,
            "{} of {before_bytes}",
            l.bytes()
        );
        // 20 pending stops, one used value, no seen digest (all ended by 400), the marker
        assert_eq!(text.lines().count(), 22);
        assert_eq!(l.records(), 22);
        // every line but a marker is a line of the old file
        let old: BTreeSet<&str> = old_text.lines().collect();
        let (last, rest) = text
            .lines()
            .collect::<Vec<_>>()
            .split_last()
            .map(|(a, b)| (*a, b.to_vec()))
            .expect("lines");
        assert!(rest.iter().all(|l| old.contains(l)));
        assert!(
            last.contains(r#""kind":"compacted","records":780,"live":21"#),
            "{last}"
        );
        assert!(!tmp_path(&d.ledger()).exists());
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(d.ledger()).expect("meta").permissions().mode()
        };
        assert_eq!(mode & 0o777, 0o600);
        // the ledger goes on appending to the new file, and a replay agrees
        l.append(401, used("vault", "hotp", 500)).expect("used");
        let mut mem = l.state().clone();
        drop(l);
        let (l, _) = open(&d.ledger(), 400);
        mem.expire(400);
        assert_eq!(l.state(), &mem);
        assert_eq!(l.state().used("vault", "hotp"), Some(500));
        assert_eq!(l.next_seq(), before_seq + 2);
    }

    #[test]
    fn compaction_happens_by_itself_when_mostly_dead() {
        let d = TempDir::new("auto");
        let options = Options {
            compact_min_records: 100,
            ..Options::default()
        };
        let (mut l, _) = Ledger::open(&d.ledger(), 100, options.clone()).expect("open");
        for i in 0..1000u64 {
            l.append(100, used("vault", "hotp", i)).expect("used");
            assert!(l.records() < 101, "compacted at 100 records");
        }
        assert_eq!(l.state().used("vault", "hotp"), Some(999));
        // a live state larger than half the file is not compacted over and over
        for i in 0..300u64 {
            l.append(100, seen(&format!("d{i}"), 1000)).expect("seen");
        }
        let n = l.records();
        assert!(n >= 300, "{n}");
        drop(l);
        let (l, r) = Ledger::open(&d.ledger(), 100, options).expect("open");
        assert!(!r.compacted);
        assert_eq!(l.state().seen_all().count(), 300);
        assert_eq!(l.state().used("vault", "hotp"), Some(999));
    }

    #[test]
    fn an_interrupted_compaction_leaves_the_journal_whole() {
        let d = TempDir::new("crash");
        {
            let (mut l, _) = open(&d.ledger(), 100);
            l.append(100, used("vault", "hotp", 7)).expect("used");
            l.append(100, stop("ssh", "10.0.0.1", 200)).expect("stop");
        }
        // a crash while writing the new file, before the rename
        fs::write(tmp_path(&d.ledger()), "{\"seq\":1,\"t\":1,\"kind\":\"us").expect("tmp");
        let (mut l, r) = open(&d.ledger(), 100);
        assert!(r.removed_tmp);
        assert!(!tmp_path(&d.ledger()).exists());
        assert_eq!(l.state().used("vault", "hotp"), Some(7));
        assert_eq!(l.state().pending_stops().len(), 1);

        // a compaction that fails before the rename leaves the old journal in use
        fs::create_dir(tmp_path(&d.ledger())).expect("dir in the way");
        let e = l.compact(100).expect_err("cannot write tmp");
        assert!(matches!(e, LedgerError::Io { .. }), "{e}");
        l.append(100, used("vault", "hotp", 8))
            .expect("still appends");
        fs::remove_dir(tmp_path(&d.ledger())).expect("rmdir");
        drop(l);
        let (l, _) = open(&d.ledger(), 100);
        assert_eq!(l.state().used("vault", "hotp"), Some(8));
        assert_eq!(l.records(), 3);
    }

    #[test]
    fn seen_digests_and_grants_stay_within_their_bounds() {
        let d = TempDir::new("bound");
        let options = Options {
            max_seen: 10,
            max_grants: 3,
            compact_min_records: 50,
            ..Options::default()
        };
        let (mut l, _) = Ledger::open(&d.ledger(), 100, options.clone()).expect("open");
        for i in 0..1000u64 {
            // later digests end later, except every 7th, which ends first of all
            let until = if i % 7 == 0 { 150 } else { 1000 + i };
            l.append(100, seen(&format!("d{i}"), until)).expect("seen");
            assert!(l.state().seen_all().count() <= 10);
            assert!(l.records() <= 2 * 10 + 50, "the file stays bounded too");
        }
        let kept: Vec<&str> = l.state().seen_all().map(|(d, _)| d).collect();
        assert_eq!(
            kept,
            vec!["d989", "d990", "d991", "d992", "d993", "d995", "d996", "d997", "d998", "d999"]
        );
        assert!(l.dropped() >= 990);
        for i in 0..10u8 {
            l.append(100, grant(&format!("10.0.0.{i}"), 500 + u64::from(i)))
                .expect("grant");
        }
        let g: Vec<String> = l
            .state()
            .grants()
            .map(|(k, _)| k.addr.to_string())
            .collect();
        assert_eq!(g, vec!["10.0.0.7", "10.0.0.8", "10.0.0.9"]);
        let mem = l.state().clone();
        drop(l);
        let (l, _) = Ledger::open(&d.ledger(), 100, options).expect("open");
        assert_eq!(
            l.state().seen_all().collect::<Vec<_>>(),
            mem.seen_all().collect::<Vec<_>>()
        );
        assert_eq!(l.state().grants().count(), 3);
    }

    #[test]
    fn the_size_limits_hold() {
        let d = TempDir::new("size");
        let options = Options {
            max_bytes: 4096,
            ..Options::default()
        };
        let (mut l, _) = Ledger::open(&d.ledger(), 100, options.clone()).expect("open");
        let mut full = None;
        for i in 0..1000u64 {
            match l.append(100, seen(&format!("digest-{i}"), 1000)) {
                Ok(_) => {}
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(full, Some(LedgerError::Full { .. })), "{full:?}");
        assert!(l.bytes() <= 4096);
        // a record nobody should write
        let e = l
            .append(100, seen(&"x".repeat(MAX_LINE), 1000))
            .expect_err("long");
        assert!(matches!(e, LedgerError::RecordTooLong { .. }), "{e}");
        drop(l);
        assert!(Ledger::open(&d.ledger(), 100, options.clone()).is_ok());
        // a file larger than the limit is refused as a whole
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.ledger())
            .expect("open");
        f.write_all(&vec![b' '; 4096]).expect("write");
        drop(f);
        let e = Ledger::open(&d.ledger(), 100, options).expect_err("large");
        assert!(matches!(e, LedgerError::TooLarge { .. }), "{e}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append(u64, Vec<Record>),
            Expire(u64),
            Compact(u64),
            Reopen(u64),
        }

        fn record() -> impl Strategy<Value = Record> {
            let door = prop::sample::select(vec!["ssh", "web", "vault"]);
            let addr = prop::sample::select(vec!["10.0.0.1", "10.0.0.2", "2001:db8::1"]);
            prop_oneof![
                (door.clone(), addr.clone(), 0..2000u64).prop_map(|(d, a, due)| stop(d, a, due)),
                (1..60u64, 0..2000u64)
                    .prop_map(|(id, due_unix)| Record::StopMoved { id, due_unix }),
                (1..60u64).prop_map(|id| Record::StopDone { id }),
                (
                    door.clone(),
                    prop::sample::select(vec!["hotp", "totp", "onetime"]),
                    any::<u64>()
                )
                    .prop_map(|(d, k, v)| used(d, k, v)),
                (0..12u8, 0..2000u64).prop_map(|(d, u)| seen(&format!("d{d}"), u)),
                (door, addr, 0..2000u64).prop_map(|(d, a, u)| Record::Grant {
                    door: d.into(),
                    addr: ip(a),
                    services: vec!["tcp/22".into()],
                    until_unix: u,
                }),
            ]
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                8 => (0..1000u64, prop::collection::vec(record(), 1..4)).prop_map(|(t, r)| Op::Append(t, r)),
                1 => (0..1000u64).prop_map(Op::Expire),
                1 => (0..1000u64).prop_map(Op::Compact),
                1 => (0..1000u64).prop_map(Op::Reopen),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            /// Whatever was appended, expired and compacted, a replay of the file gives the state
            /// the ledger held in memory (as of a time after every expiry).
            #[test]
            fn replay_gives_the_state_in_memory(ops in prop::collection::vec(op(), 1..40)) {
                let d = TempDir::new("prop");
                let options = Options {
                    max_seen: 4,
                    max_grants: 3,
                    compact_min_records: 12,
                    ..Options::default()
                };
                let end = 1000;
                let (mut l, _) = Ledger::open(&d.ledger(), 0, options.clone()).expect("open");
                let mut model = State::default();
                let mut seq = 1;
                for op in ops {
                    match op {
                        Op::Append(t, records) => {
                            let r = l.append_batch(t, &records).expect("append");
                            prop_assert_eq!(r.clone(), seq..seq + records.len() as u64);
                            for (i, rec) in records.iter().enumerate() {
                                model.apply(seq + i as u64, t, rec, &options);
                            }
                        }
                        Op::Expire(t) => {
                            l.expire(t);
                        }
                        Op::Compact(t) => {
                            l.compact(t).expect("compact");
                        }
                        Op::Reopen(t) => {
                            drop(l);
                            l = Ledger::open(&d.ledger(), t, options.clone()).expect("reopen").0;
                        }
                    }
                    seq = l.next_seq();
                    let text = fs::read(d.ledger()).expect("read");
                    prop_assert_eq!(text.len() as u64, l.bytes());
                    prop_assert_eq!(text.iter().filter(|&&b| b == b'\n').count() as u64, l.records());
                }
                let mut mem = l.state().clone();
                mem.expire(end);
                model.expire(end);
                let next = l.next_seq();
                drop(l);
                let (l, r) = Ledger::open(&d.ledger(), end, options).expect("replay");
                prop_assert_eq!(l.state(), &mem);
                // a compaction at open writes its marker
                prop_assert_eq!(l.next_seq(), next + u64::from(r.compacted));
                // and the model that never saw a file, an expiry or a compaction agrees too
                prop_assert_eq!(l.state(), &model);
            }
        }
    }
}
