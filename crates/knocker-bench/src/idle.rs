//! `knocker-flood idle`: what each daemon costs on an idle server (BENCHMARKS.md, "Idle memory
//! and wake-ups"): its resident memory and how often it wakes up when nothing happens.
//!
//! For each daemon, in a fresh lab (the flood bench's namespaces, removed on success, failure and
//! Ctrl-C): start it with one door (knockerd: the example configuration, examples/knockerd.toml,
//! with its `[door.ssh]` uncommented; knockd: the same door in a knockd.conf; fwknopd: one
//! access.conf stanza opening one service), wait until it is ready and then `--settle` seconds
//! more, and read from /proc, for each of its processes (knockerd: the root parent and its packet
//! worker):
//!
//! - `VmRSS` (`/proc/PID/status`), `RssAnon` and `RssFile`;
//! - `Pss` (`/proc/PID/smaps_rollup`): shared pages (the binary's text, libc) split among the
//!   processes that map them, so parent and worker are not counted twice for the same page;
//! - the distinct physical pages the processes map, together (`/proc/PID/pagemap`, root only):
//!   what the daemon holds resident, each page once;
//! - wake-ups over a `--window` seconds idle window: the change in `voluntary_ctxt_switches` +
//!   `nonvoluntary_ctxt_switches` of every thread (`/proc/PID/task/*/status`).
//!
//! Nothing is sent to the daemons: an idle server is the point.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lab::{self, Daemon, FloodLab, Kind};
use crate::latency::loadavg;
use crate::{knockerd_binary, stopped};

/// The example configuration knockerd ships (README, packaging), as it is in the tree.
const EXAMPLE: &str = include_str!("../../../examples/knockerd.toml");

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    /// Seconds to wait after each daemon is ready before anything is read.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Seconds of the idle window over which wake-ups are counted.
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Which daemons: knockerd, knockd, fwknopd.
    #[arg(long, value_delimiter = ',', default_value = "knockerd,knockd,fwknopd")]
    daemons: Vec<String>,
    /// Runs of each daemon (each in a fresh lab); the table has one row per run.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// knockerd binary (default: next to this one).
    #[arg(long)]
    knockerd: Option<PathBuf>,
    /// A knockerd configuration instead of the example one (its state_dir is overridden).
    #[arg(long)]
    config: Option<PathBuf>,
    /// knockd binary (default: from PATH).
    #[arg(long)]
    knockd: Option<PathBuf>,
    /// fwknopd binary (default: from PATH).
    #[arg(long)]
    fwknopd: Option<PathBuf>,
}

/// The example configuration with its `[door.ssh]` uncommented: the table header and its
/// settings (`key = value` lines), not the prose between them. `None` if the example no longer
/// has that door.
pub fn example_with_door() -> Option<String> {
    const KEYS: [&str; 8] = [
        "sequence",
        "window",
        "tcp_flags",
        "open",
        "open_for",
        "start_command",
        "stop_command",
        "stop_after",
    ];
    let mut out = String::new();
    let mut inside = false;
    let mut found = false;
    for line in EXAMPLE.lines() {
        if line == "# [door.ssh]" {
            inside = true;
            found = true;
            out.push_str("[door.ssh]\n");
            continue;
        }
        if inside && line.starts_with("# [") {
            inside = false;
        }
        let setting = line.strip_prefix("# ").filter(|rest| {
            rest.split_once(" = ")
                .is_some_and(|(k, _)| KEYS.contains(&k))
        });
        match setting {
            Some(rest) if inside => out.push_str(rest),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    found.then_some(out)
}

/// knockd.conf with the example's door: the same knocks, window, flags and commands (knockd
/// runs its commands through a shell; `Cmd_Timeout` is the example's `stop_after`). knockd has no
/// firewall of its own: its start command would add the rule; idle, it never runs.
pub fn knockd_conf() -> String {
    "[options]\n    Interface = eth0\n\n[ssh]\n    Sequence = 7113,9431:udp,8222,7719\n    \
     Seq_Timeout = 15\n    TCPFlags = syn,!ack\n    \
     Start_Command = /usr/bin/logger -t knocker ssh opened for %IP%\n    Cmd_Timeout = 30\n    \
     Stop_Command = /usr/bin/logger -t knocker ssh closed for %IP%\n"
        .to_string()
}

/// What one process holds and how often its threads were switched out, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub pid: u32,
    pub rss: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub pss: u64,
    pub threads: u32,
    /// voluntary + nonvoluntary context switches of every thread so far.
    pub switches: u64,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn sample(pid: u32) -> Result<Sample, String> {
    let status = read(&format!("/proc/{pid}/status")).ok_or(format!("/proc/{pid}/status"))?;
    let kb = |text: &str, key| crate::procfs::parse_status_kb(text, key).unwrap_or(0) * 1024;
    let rollup = read(&format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let mut switches = 0;
    let mut threads = 0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?;
    for t in tasks.flatten() {
        if let Some(s) = read(&format!("{}/status", t.path().display())) {
            threads += 1;
            switches += context_switches(&s);
        }
    }
    Ok(Sample {
        pid,
        rss: kb(&status, "VmRSS"),
        rss_anon: kb(&status, "RssAnon"),
        rss_file: kb(&status, "RssFile"),
        pss: kb(&rollup, "Pss"),
        threads,
        switches,
    })
}

/// voluntary + nonvoluntary context switches in a /proc/.../status text.
pub fn context_switches(status: &str) -> u64 {
    let field = |key: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    field("voluntary_ctxt_switches").unwrap_or(0) + field("nonvoluntary_ctxt_switches").unwrap_or(0)
}

/// The physical pages mapped by `pids`, each counted once (from /proc/PID/pagemap, whose frame
/// numbers only root sees), in bytes. `None` when no frame number could be read.
fn distinct_resident(pids: &[u32]) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let page = 4096u64;
    let mut frames: HashSet<u64> = HashSet::new();
    for &pid in pids {
        let maps = read(&format!("/proc/{pid}/maps"))?;
        let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok()?;
        for (start, end) in maps.lines().filter_map(map_range) {
            let mut at = start / page;
            let last = end / page;
            let mut buf = vec![0u8; 8 * 4096];
            while at < last {
                let n = ((last - at) as usize).min(4096);
                if pagemap.seek(SeekFrom::Start(at * 8)).is_err()
                    || pagemap.read_exact(&mut buf[..n * 8]).is_err()
                {
                    break; // [vsyscall] and the like
                }
                for e in buf[..n * 8].chunks_exact(8) {
                    let e = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
                    let present = e >> 63 == 1;
                    let pfn = e & ((1 << 55) - 1);
                    if present && pfn != 0 {
                        frames.insert(pfn);
                    }
                }
                at += n as u64;
            }
        }
    }
    (!frames.is_empty()).then(|| frames.len() as u64 * page)
}

/// The address range of a /proc/PID/maps line.
pub fn map_range(line: &str) -> Option<(u64, u64)> {
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// One daemon's idle run.
struct Row {
    name: &'static str,
    /// Each process at the end of the window.
    procs: Vec<Sample>,
    /// Each process's context switches during the window.
    wakeups: Vec<u64>,
    together: Option<u64>,
    window: Duration,
}

pub fn bench(a: &IdleArgs) -> Result<(), String> {
    knocker_lab::preflight()?;
    if !(1..=600).contains(&a.window) || a.settle > 600 || !(1..=10).contains(&a.runs) {
        return Err("--window must be 1 to 600 s, --settle at most 600 s, --runs 1 to 10".into());
    }
    let mut kinds = Vec::new();
    for d in &a.daemons {
        kinds.push(match d.as_str() {
            "knockerd" => Kind::Knockerd,
            "knockd" => Kind::Knockd,
            "fwknopd" => Kind::Fwknopd,
            other => {
                return Err(format!(
                    "unknown daemon {other:?} (knockerd, knockd, fwknopd)"
                ))
            }
        });
    }
    let config = match &a.config {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => example_with_door().ok_or("examples/knockerd.toml has no [door.ssh] any more")?,
    };
    let bin = |given: &Option<PathBuf>, name: &str| {
        given
            .clone()
            .or_else(|| lab::which(name))
            .unwrap_or_else(|| PathBuf::from("/usr/sbin").join(name))
    };
    let knockerd = knockerd_binary(&a.knockerd)?;
    let (knockd, fwknopd) = (bin(&a.knockd, "knockd"), bin(&a.fwknopd, "fwknopd"));
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = Vec::new();
    for _ in 0..a.runs {
        for &kind in &kinds {
            stopped()?;
            eprintln!(
                "== {}: ready, {} s to settle, {} s idle",
                kind.name(),
                a.settle,
                a.window
            );
            let path = match kind {
                Kind::Knockerd | Kind::KnockerdSpa => &knockerd,
                Kind::Knockd => &knockd,
                Kind::Fwknopd | Kind::FwknopdTuned => &fwknopd,
            };
            if !path.is_file() {
                return Err(format!("{} not found at {}", kind.name(), path.display()));
            }
            rows.push(run_one(kind, path, &config, a)?);
        }
    }
    print_report(&rows, a, &load_before, &loadavg(), started.elapsed());
    Ok(())
}

fn run_one(kind: Kind, bin: &Path, config: &str, a: &IdleArgs) -> Result<Row, String> {
    let lab = FloodLab::new(1)?;
    let dir = std::env::temp_dir().join(format!("knocker-idle-{}", lab.server.name()));
    let mut daemon = match kind {
        Kind::Knockerd | Kind::KnockerdSpa => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let file = dir.join("knockerd.toml");
            std::fs::write(&file, config).map_err(|e| format!("{}: {e}", file.display()))?;
            let state = dir.join("state");
            let args = [
                "--config".as_ref(),
                file.as_os_str(),
                "--state-dir".as_ref(),
                state.as_os_str(),
            ];
            Daemon::spawn_knockerd(&lab, bin, dir, &args)?
        }
        Kind::Knockd => Daemon::knockd_conf(&lab, bin, dir, &knockd_conf())?,
        Kind::Fwknopd | Kind::FwknopdTuned => {
            Daemon::fwknopd(&lab, Kind::Fwknopd, bin, dir, &crate::spa::access_conf())?
        }
    };
    wait(Duration::from_secs(a.settle), &mut daemon)?;
    let pid = daemon.pid();
    let pids = || {
        let mut p = vec![pid];
        p.extend(crate::procfs::children(pid));
        p
    };
    let before: Vec<Sample> = pids().into_iter().map(sample).collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    wait(Duration::from_secs(a.window), &mut daemon)?;
    let window = t0.elapsed();
    let after: Vec<Sample> = pids().into_iter().map(sample).collect::<Result<_, _>>()?;
    if after.iter().map(|s| s.pid).ne(before.iter().map(|s| s.pid)) {
        return Err(format!(
            "{}: its processes changed during the idle window ({:?} -> {:?}); its output:\n{}",
            kind.name(),
            before.iter().map(|s| s.pid).collect::<Vec<_>>(),
            after.iter().map(|s| s.pid).collect::<Vec<_>>(),
            daemon.log()
        ));
    }
    let together = distinct_resident(&pids());
    let wakeups = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.switches.saturating_sub(b.switches))
        .collect();
    drop(daemon);
    drop(lab);
    Ok(Row {
        name: kind.name(),
        procs: after,
        wakeups,
        together,
        window,
    })
}

/// Sleeps `d` in short steps, returning early on Ctrl-C or if the daemon died.
fn wait(d: Duration, daemon: &mut Daemon) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        stopped()?;
        daemon.check_alive()?;
        std::thread::sleep(Duration::from_millis(100).min(end - Instant::now()));
    }
    daemon.check_alive()
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn print_report(rows: &[Row], a: &IdleArgs, before: &str, after: &str, took: Duration) {
    println!(
        "Idle: each daemon ready, then {} s to settle, then {} s with no packet; memory read at the end of the window. MiB; per-process figures parent / worker for knockerd.\n",
        a.settle, a.window
    );
    println!("| daemon | processes | VmRSS | VmRSS, sum | Pss, sum | distinct resident pages, together | RssAnon | RssFile | threads | wake-ups in the window | wake-ups per minute |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let each =
            |f: &dyn Fn(&Sample) -> String| r.procs.iter().map(f).collect::<Vec<_>>().join(" / ");
        let total_wakeups: u64 = r.wakeups.iter().sum();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            r.name,
            r.procs.len(),
            each(&|s| mib(s.rss)),
            mib(r.procs.iter().map(|s| s.rss).sum()),
            mib(r.procs.iter().map(|s| s.pss).sum()),
            r.together.map_or_else(|| "n/a".to_string(), mib),
            each(&|s| mib(s.rss_anon)),
            each(&|s| mib(s.rss_file)),
            each(&|s| s.threads.to_string()),
            r.wakeups
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" / "),
            total_wakeups as f64 * 60.0 / r.window.as_secs_f64().max(1e-3),
        );
    }
    println!(
        "\nWake-ups: voluntary + nonvoluntary context switches of every thread of the daemon's processes during the window. Load average before: {before}, after: {after}. Whole run: {:.0} s.",
        took.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_door_is_uncommented_and_loads() {
        let text = example_with_door().expect("the example has [door.ssh]");
        assert!(text.contains("\n[door.ssh]\n"));
        assert!(text.contains("\nsequence = [\"7113\", \"9431:udp\", \"8222\", \"7719\"]\n"));
        assert!(text.contains("\nstop_after = \"30s\"\n"));
        // the prose stays a comment, and so do the other doors
        assert!(text.contains("\n# repeat_start_command = true runs it every time"));
        assert!(text.contains("\n# [door.ssh-spa]\n# kind = \"spa\""));
        let dir = std::env::temp_dir().join(format!("knocker-idle-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("knockerd.toml");
        std::fs::write(&path, &text).expect("write");
        let loaded = knockerd::config::loader::load(&knockerd::config::loader::ConfigFile::Native(
            path.clone(),
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let c = loaded.expect("the example with its door loads").config;
        assert_eq!(c.doors.len(), 1);
        assert_eq!(c.doors[0].spec.name, "ssh");
    }

    #[test]
    fn knockd_gets_the_same_door() {
        let k = knockd_conf();
        assert!(k.contains("Sequence = 7113,9431:udp,8222,7719"));
        assert!(k.contains("Seq_Timeout = 15"));
        assert!(k.contains("Cmd_Timeout = 30"));
    }

    #[test]
    fn procfs_fields() {
        let s = "Name:\tknockerd\nvoluntary_ctxt_switches:\t45\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(context_switches(s), 48);
        assert_eq!(context_switches("Name:\tx\n"), 0);
        assert_eq!(
            map_range("56451b741000-56451b914000 r--p 00000000 08:01 123 /usr/sbin/knockerd"),
            Some((0x5645_1b74_1000, 0x5645_1b91_4000))
        );
        assert_eq!(map_range(""), None);
    }
}
