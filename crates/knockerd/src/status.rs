//! `knockerd status`: what is open, to whom, through which door, and for how long; what stop
//! commands are pending; whether knockerd runs. It reads only the kernel's sets and the
//! daemon's files (pid file, ledger, last reload verdict), so it needs no answer from the
//! daemon and works when the daemon is gone.
//!
//! `--json` prints one object, whose shape is stable (fields are only ever added; see
//! [`Status`]; README.md documents it).

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::config::TABLE;
use crate::control::{self, ReloadVerdict};
use crate::ledger::{self, State};

/// The `--json` shape's version; it changes only if a field changes meaning or goes away.
pub const VERSION: u32 = 1;

/// Everything `knockerd status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// [`VERSION`].
    pub version: u32,
    /// Where the pid file and the ledger were looked for.
    pub state_dir: String,
    /// Whether knockerd runs (its pid file is locked).
    pub running: bool,
    /// The running daemon's pid.
    pub pid: Option<i32>,
    /// Whether `table inet knocker` is in the kernel.
    pub table: bool,
    /// Open grants in the kernel's allow sets.
    pub grants: Vec<GrantStatus>,
    /// Openings of doors that open nothing in the firewall (they run commands), from the ledger.
    pub openings: Vec<Opening>,
    /// Stop commands not run yet, the earliest due first, from the ledger.
    pub pending_stops: Vec<PendingStop>,
    /// Delayed commands (`[[door.NAME.command]]`) not run yet, the earliest due first, from the
    /// ledger.
    pub pending_commands: Vec<PendingCommand>,
    /// The last reload attempt of the running daemon, if it made one.
    pub last_reload: Option<LastReload>,
    /// Why the exit status is non-zero (knockerd not running, table missing), with what to do.
    pub problems: Vec<String>,
    /// What could not be read (the ledger), without changing the exit status.
    pub notes: Vec<String>,
}

/// An open grant, as the kernel holds it, with its door as the ledger recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantStatus {
    /// The door that opened it; null if the ledger has no record of it.
    pub door: Option<String>,
    pub address: String,
    /// `tcp/22`, `udp/53`.
    pub service: String,
    /// Seconds until the kernel removes it.
    pub expires_in_s: u64,
    /// Seconds it was opened for.
    pub timeout_s: u64,
    /// For a grant of a door with `connections = N`: how many new connections it still admits
    /// (the kernel removes it when the last one is accepted); null for a grant without a limit.
    pub connections_left: Option<u8>,
}

/// An opening of a command-only door (knockd-style): its start command ran, and its grant
/// lasts until `until_unix`. What closes it is its stop command, if the door has one: see
/// `stop_pending` and [`Status::pending_stops`].
#[derive(Debug, Clone, Serialize)]
pub struct Opening {
    pub door: String,
    pub address: IpAddr,
    pub until_unix: u64,
    pub left_s: u64,
    /// Whether a stop command for this door and address is still to run.
    pub stop_pending: bool,
}

/// A stop command the daemon will run (or, if it is down, runs at its next start).
#[derive(Debug, Clone, Serialize)]
pub struct PendingStop {
    pub id: u64,
    pub door: String,
    pub address: IpAddr,
    /// The argv, exactly as it will be executed.
    pub command: Vec<String>,
    pub due_unix: u64,
    /// Seconds until it is due; 0 when it is overdue.
    pub due_in_s: u64,
}

/// A delayed command the daemon will run (or, if it is down, runs at its next start).
#[derive(Debug, Clone, Serialize)]
pub struct PendingCommand {
    pub id: u64,
    pub door: String,
    pub address: IpAddr,
    /// The argv, exactly as it will be executed.
    pub command: Vec<String>,
    /// Whether it runs when the grant ends (`at = "end"`; a refresh moves it) rather than after
    /// a delay.
    pub at_end: bool,
    pub due_unix: u64,
    /// Seconds until it is due; 0 when it is overdue.
    pub due_in_s: u64,
}

/// The running daemon's last reload attempt.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    pub ok: bool,
    pub message: String,
    pub finished_unix: u64,
}

/// Gathers the status of the daemon whose state is in `dir`, and of the kernel's table in this
/// network namespace.
pub fn gather(dir: &Path) -> Status {
    let now = ledger::unix_now();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let running = match control::running(dir) {
        Ok(r) => {
            problems.extend(r.why_not(dir));
            r.pid()
        }
        Err(e) => {
            problems.push(format!(
                "cannot tell whether knockerd runs: {e} (run status as root)"
            ));
            None
        }
    };
    let table = match crate::ruleset::table_exists() {
        Ok(true) => true,
        Ok(false) => {
            problems.push(format!(
                "table inet {TABLE} is missing: knocker closes nothing and sees no knocks; {}",
                match running {
                    Some(_) => "restart knockerd (`systemctl restart knockerd`) to load it again",
                    None => "start knockerd (`systemctl start knockerd`) to load it",
                }
            ));
            false
        }
        Err(e) => {
            problems.push(format!("cannot look for table inet {TABLE}: {e}"));
            false
        }
    };
    let ledger_path = dir.join(ledger::FILE_NAME);
    let state = match ledger::read_state(&ledger_path, now, &ledger::Options::default()) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            notes.push(format!(
                "cannot read the ledger (doors and stop commands unknown): {e}"
            ));
            State::default()
        }
    };
    let grants = if table {
        let mut all = crate::ruleset::live_grants().unwrap_or_else(|e| {
            notes.push(format!("cannot list the grants: {e}"));
            Vec::new()
        });
        all.extend(crate::ruleset::live_counted_grants().unwrap_or_else(|e| {
            notes.push(format!(
                "cannot list the grants that count connections: {e}"
            ));
            Vec::new()
        }));
        all
    } else {
        Vec::new()
    };
    let grants = grants
        .into_iter()
        .map(|g| GrantStatus {
            door: door_of(&state, &g.to, &g.service),
            address: g.to,
            service: g.service,
            expires_in_s: g.expires_s,
            timeout_s: g.timeout_s,
            connections_left: g.connections_left,
        })
        .collect();
    let openings = state
        .grants()
        .filter(|(g, until)| g.services.is_empty() && *until > now)
        .map(|(g, until)| Opening {
            door: g.door.clone(),
            address: g.addr,
            until_unix: until,
            left_s: until - now,
            stop_pending: state.pending_stop_for(&g.door, g.addr).is_some(),
        })
        .collect();
    let pending_stops = state
        .pending_stops()
        .into_iter()
        .map(|s| PendingStop {
            id: s.id,
            door: s.door.clone(),
            address: s.addr,
            command: s.command.clone(),
            due_unix: s.due_unix,
            due_in_s: s.due_unix.saturating_sub(now),
        })
        .collect();
    let pending_commands = state
        .pending_actions()
        .into_iter()
        .map(|a| PendingCommand {
            id: a.id,
            door: a.door.clone(),
            address: a.addr,
            command: a.command.clone(),
            at_end: a.at_end,
            due_unix: a.due_unix,
            due_in_s: a.due_unix.saturating_sub(now),
        })
        .collect();
    let last_reload = running.and_then(|pid| {
        let v: ReloadVerdict =
            serde_json::from_slice(&std::fs::read(dir.join(control::RELOAD_FILE)).ok()?).ok()?;
        (i64::from(v.pid) == i64::from(pid)).then_some(LastReload {
            ok: v.ok,
            message: v.message,
            finished_unix: v.finished_unix,
        })
    });
    Status {
        version: VERSION,
        state_dir: dir.display().to_string(),
        running: running.is_some(),
        pid: running,
        table,
        grants,
        openings,
        pending_stops,
        pending_commands,
        last_reload,
        problems,
        notes,
    }
}

/// The door of the kernel's element for `address` and `service`: the ledger's grant record for
/// them that ends last.
fn door_of(state: &State, address: &str, service: &str) -> Option<String> {
    // a widened grant's network (`10.1.2.0/24`) was recorded as its first address
    let address: IpAddr = address.split('/').next()?.parse().ok()?;
    state
        .grants()
        .filter(|(g, _)| g.addr == address && g.services.iter().any(|s| s == service))
        .max_by_key(|(_, until)| *until)
        .map(|(g, _)| g.door.clone())
}

/// The status for a person.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = match s.pid {
        Some(pid) => writeln!(
            out,
            "knockerd: running (pid {pid}), state in {}",
            s.state_dir
        ),
        None => writeln!(
            out,
            "knockerd: NOT running (state looked for in {})",
            s.state_dir
        ),
    };
    let _ = writeln!(
        out,
        "table inet {TABLE}: {}",
        if s.table { "loaded" } else { "MISSING" }
    );
    if let Some(r) = &s.last_reload {
        let _ = writeln!(
            out,
            "last reload: {}",
            if r.ok {
                r.message.clone()
            } else {
                format!("refused ({})", r.message)
            }
        );
    }
    if s.grants.is_empty() {
        let _ = writeln!(out, "no open grants");
    } else {
        let _ = writeln!(out, "open grants ({}):", s.grants.len());
    }
    for g in &s.grants {
        let counted = g
            .connections_left
            .map(|n| format!(", admits {n} more new connection(s)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  door {} {} {} {}s left (of {}s){counted}",
            g.door.as_deref().unwrap_or("?"),
            g.address,
            g.service,
            g.expires_in_s,
            g.timeout_s
        );
    }
    if !s.openings.is_empty() {
        let _ = writeln!(
            out,
            "openings of command-only doors ({}):",
            s.openings.len()
        );
    }
    for o in &s.openings {
        let _ = writeln!(
            out,
            "  door {} {} opened: its grant lasts {}s more, {}",
            o.door,
            o.address,
            o.left_s,
            if o.stop_pending {
                "its stop command is pending (below)"
            } else {
                "no stop command is pending"
            }
        );
    }
    if !s.pending_stops.is_empty() {
        let _ = writeln!(out, "pending stop commands ({}):", s.pending_stops.len());
    }
    for p in &s.pending_stops {
        let _ = writeln!(
            out,
            "  door {} {} {}: {}",
            p.door,
            p.address,
            due_in(p.due_in_s),
            shown(&p.command)
        );
    }
    if !s.pending_commands.is_empty() {
        let _ = writeln!(
            out,
            "pending delayed commands ({}):",
            s.pending_commands.len()
        );
    }
    for p in &s.pending_commands {
        let end = if p.at_end {
            " (at the grant's end)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  door {} {} {}{end}: {}",
            p.door,
            p.address,
            due_in(p.due_in_s),
            shown(&p.command)
        );
    }
    for n in &s.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// "due in 5s", or "overdue".
fn due_in(s: u64) -> String {
    if s == 0 {
        "overdue".to_string()
    } else {
        format!("due in {s}s")
    }
}

/// An argv as a person reads it: arguments with spaces or quotes quoted.
fn shown(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.contains([' ', '\'', '"']) || a.is_empty() {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why `knockerd status` exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// What is wrong (knockerd not running, its table missing...), one item each.
    #[error("{}", .0.join("\nknockerd: "))]
    Problems(Vec<String>),
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// `knockerd status --metrics`: prints the metrics knockerd last wrote in `dir`; an error, for
/// the exit status, when knockerd is not running (the counts printed are then its last ones).
pub fn run_metrics(dir: &Path) -> Result<(), StatusError> {
    use std::io::Write as _;
    let text = crate::metrics::read(dir)?;
    let problems: Vec<String> = match control::running(dir) {
        Ok(r) => r
            .why_not(dir)
            .into_iter()
            .map(|p| format!("{p}; the metrics above are the last it wrote"))
            .collect(),
        Err(e) => vec![format!(
            "cannot tell whether knockerd runs: {e} (run status as root)"
        )],
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    match problems.is_empty() {
        true => Ok(()),
        false => Err(StatusError::Problems(problems)),
    }
}

/// `knockerd status [--json]`: prints the status to stdout; an error, for the exit status, when
/// knockerd is not running or its table is missing.
pub fn run(dir: &Path, json: bool) -> Result<(), StatusError> {
    use std::io::Write as _;
    let s = gather(dir);
    let text = if json {
        serde_json::to_string_pretty(&s).map_err(StatusError::Json)? + "\n"
    } else {
        render(&s)
    };
    // a closed pipe (`knockerd status | head`) ends the output quietly
    let _ = std::io::stdout().write_all(text.as_bytes());
    match s.problems.is_empty() {
        true => Ok(()),
        false => Err(StatusError::Problems(s.problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ledger, Record};

    #[test]
    fn the_ledger_is_read_while_the_daemon_holds_it() {
        let dir = crate::TestDir::new("status-ledger");
        let path = dir.0.join(ledger::FILE_NAME);
        let now = ledger::unix_now();
        let (mut l, _) = Ledger::open(&path, now, ledger::Options::default()).unwrap();
        let addr: IpAddr = "203.0.113.7".parse().unwrap();
        let grant = |door: &str, services: &[&str], until_unix| Record::Grant {
            door: door.into(),
            addr,
            services: services.iter().map(|s| s.to_string()).collect(),
            until_unix,
        };
        l.append(now, grant("ssh", &["tcp/22"], now + 30)).unwrap();
        l.append(now, grant("web", &[], now + 60)).unwrap();
        l.append(now, grant("old", &[], now - 1)).unwrap();
        l.append(
            now,
            Record::StopPending {
                door: "web".into(),
                addr,
                command: vec!["/bin/echo".into(), "stop 203.0.113.7".into()],
                due_unix: now + 60,
            },
        )
        .unwrap();
        // an append in progress: a last line without its newline is left out
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(b"{\"seq\":99,\"t\":1,\"kind\":\"stop_do")
                .unwrap();
        }
        let state = ledger::read_state(&path, now, &ledger::Options::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            door_of(&state, "203.0.113.7", "tcp/22").as_deref(),
            Some("ssh")
        );
        assert_eq!(door_of(&state, "203.0.113.7", "tcp/23"), None);
        assert_eq!(door_of(&state, "203.0.113.8", "tcp/22"), None);
        let stops = state.pending_stops();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].command[1], "stop 203.0.113.7");
        // the expired opening is gone, the live one stays
        let openings: Vec<_> = state
            .grants()
            .filter(|(g, _)| g.services.is_empty())
            .collect();
        assert_eq!(openings.len(), 1, "{openings:?}");
        assert_eq!(openings[0].0.door, "web");
        drop(l);
        assert!(
            ledger::read_state(&dir.0.join("none"), now, &ledger::Options::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_damaged_middle_line_is_an_error_not_a_guess() {
        let dir = crate::TestDir::new("status-corrupt");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(ledger::FILE_NAME);
        std::fs::write(
            &path,
            "{\"seq\":1,\"t\":1,\"kind\":\"stop_done\",\"id\":3}\ngarbage\n{\"seq\":3,\"t\":1,\"kind\":\"stop_done\",\"id\":4}\n",
        )
        .unwrap();
        let e = ledger::read_state(&path, 1, &ledger::Options::default()).unwrap_err();
        assert!(e.to_string().contains(":2:"), "{e}");
    }

    #[test]
    fn the_text_names_door_address_and_time_left() {
        let s = Status {
            version: VERSION,
            state_dir: "/var/lib/knocker".into(),
            running: true,
            pid: Some(77),
            table: true,
            grants: vec![GrantStatus {
                door: Some("ssh".into()),
                address: "10.200.1.2".into(),
                service: "tcp/22".into(),
                expires_in_s: 12,
                timeout_s: 30,
                connections_left: None,
            }],
            openings: vec![],
            pending_stops: vec![PendingStop {
                id: 4,
                door: "web".into(),
                address: "10.200.1.2".parse().unwrap(),
                command: vec!["/bin/sh".into(), "-c".into(), "echo stop".into()],
                due_unix: 0,
                due_in_s: 0,
            }],
            pending_commands: vec![PendingCommand {
                id: 5,
                door: "web".into(),
                address: "10.200.1.2".parse().unwrap(),
                command: vec!["/usr/bin/logger".into(), "five minutes in".into()],
                at_end: false,
                due_unix: 0,
                due_in_s: 240,
            }],
            last_reload: None,
            problems: vec![],
            notes: vec![],
        };
        let t = render(&s);
        assert!(t.contains("running (pid 77)"), "{t}");
        assert!(
            t.contains("door ssh 10.200.1.2 tcp/22 12s left (of 30s)"),
            "{t}"
        );
        assert!(
            t.contains("door web 10.200.1.2 overdue: /bin/sh -c \"echo stop\""),
            "{t}"
        );
        assert!(
            t.contains("pending delayed commands (1):\n  door web 10.200.1.2 due in 240s: /usr/bin/logger \"five minutes in\""),
            "{t}"
        );
    }
}
