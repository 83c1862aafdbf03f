//! knocker-flood: knockd and knockerd side by side under a spoofed-source SYN flood, and
//! (`knocker-flood spa`) fwknopd and knockerd side by side under a flood of SPA-looking UDP
//! datagrams, in network namespaces of their own (root only; nothing leaves them). See
//! BENCHMARKS.md, "Flood" and "SPA flood", and scripts/bench-flood.sh, which installs what it
//! needs, builds and runs this.
//!
//! For each flood (1 000 IPv4 sources, 1 000 000 IPv6 sources) and each daemon, in a fresh lab:
//! start the daemon with the same door, let alice knock a few times on an idle server, then flood
//! the door's first port with SYNs from the spoofed sources while alice knocks again at even
//! points of the flood, and measure the daemon's CPU time and peak memory and how fast each of
//! alice's knocks opened the door. The SPA mode does the same with fwknop packets (spa.rs).
//!
//! `knocker-flood latency` (latency.rs) measures knockerd's knock-to-open latency for a
//! sequence door, an SPA door and a stealth SYN door on an idle server.
//!
//! `knocker-flood idle` (idle.rs) measures the resident memory and wake-ups of knockerd, knockd
//! and fwknopd on an idle server.
//!
//! `knocker-flood soak` (soak.rs) runs knockerd's doors through SIGKILLs of its parent and its
//! packet worker and through `nft flush ruleset`, and checks what it promises (SECURITY.md,
//! "Soak").

mod flood;
mod idle;
mod lab;
mod latency;
mod packets;
mod procfs;
mod sender;
mod soak;
mod sources;
mod spa;
mod table;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use flood::Flood;
use lab::{Daemon, FloodLab, Kind};
use packets::{Family, Payload};
use sources::Via;

#[derive(Parser, Debug)]
#[command(
    name = "knocker-flood",
    about = "knockd and knockerd side by side under a spoofed-source SYN flood, in network namespaces (root)",
    after_help = "`knocker-flood spa --help`: fwknopd and knockerd under a flood of SPA-looking datagrams\n`knocker-flood latency --help`: knockerd's knock-to-open latency per kind of door\n`knocker-flood idle --help`: resident memory and wake-ups of knockerd, knockd and fwknopd when idle\n`knocker-flood soak --help`: knockerd's promises under SIGKILLs and ruleset flushes",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// fwknopd and knockerd side by side, with the same access.conf, under a flood of
    /// SPA-looking UDP datagrams (garbage, then real fwknop packets with a wrong key).
    Spa(spa::SpaArgs),
    /// knockerd's knock-to-open latency for a sequence, an SPA and a stealth SYN door on an
    /// idle server (median, p99), timed to nftables' own notification of each grant.
    Latency(latency::LatencyArgs),
    /// knockerd, knockd and fwknopd side by side on an idle server: resident memory (VmRSS,
    /// Pss, distinct pages) of every process and wake-ups over an idle window.
    Idle(idle::IdleArgs),
    /// knockerd's doors through SIGKILLs of its parent and packet worker and `nft flush
    /// ruleset`: no grant past its deadline, every stop command once, no answer to mallory
    /// outside a restore window, no replay opens.
    Soak(soak::SoakArgs),
    /// What the soak's doors run as start and stop commands (not for direct use).
    #[command(hide = true)]
    SoakCommand(soak::CommandArgs),
    /// The flood sender (the bench runs it inside the lab; not for direct use).
    #[command(hide = true)]
    Send(sender::SendArgs),
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Small floods (100 000 packets; 1 000 and 100 000 sources) for a quick check.
    #[arg(long)]
    quick: bool,
    /// Flood packets per run (default 1 000 000; 100 000 with --quick).
    #[arg(long)]
    packets: Option<u64>,
    /// Spoofed IPv6 sources of the large flood (default 1 000 000; 100 000 with --quick).
    #[arg(long)]
    sources: Option<u32>,
    /// The address family of the small flood's 1 000 sources (and of alice's knocks during
    /// it): ipv6 compares the two families' parse and hash at the same table size.
    #[arg(long, value_enum, default_value_t = Family::V4)]
    small_family: Family,
    /// Flood rate in packets per second, the same for both daemons; 0 floods as fast as the
    /// sender goes (which depends on the daemon: NFLOG work in the kernel slows the sender).
    #[arg(long, default_value_t = 80_000)]
    pps: u64,
    /// alice's knock attempts during each flood.
    #[arg(long, default_value_t = 5)]
    attempts: u16,
    /// Hard time limit of each flood, in seconds.
    #[arg(long, default_value_t = 60.0)]
    max_secs: f64,
    /// Which daemons to run: knockd, knockerd (NFLOG, its default source), and knockerd on its
    /// other sources: knockerd-packet (packet socket), knockerd-kmsg (/dev/kmsg; sets
    /// net.netfilter.nf_log_all_netns to 1 for the run), knockerd-kern-log (a kern.log file),
    /// knockerd-log-file (a log file of ASA deny lines); the file sources' floods are lines the
    /// sender appends to the file.
    #[arg(long, value_delimiter = ',', default_value = "knockd,knockerd")]
    daemons: Vec<String>,
    /// knockerd binary (default: next to this one).
    #[arg(long)]
    knockerd: Option<PathBuf>,
    /// knockd binary (default: from PATH).
    #[arg(long)]
    knockd: Option<PathBuf>,
}

/// Knock attempts on the idle server before each flood (they also prove the setup works).
pub(crate) const IDLE_ATTEMPTS: u16 = 3;
/// How long a knock may take to open the door before it counts as failed.
pub(crate) const OPEN_LIMIT: Duration = Duration::from_secs(5);
/// After the flood, how long the bench waits at most for the daemon to go idle.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(15);

static STOP: AtomicBool = AtomicBool::new(false);

pub(crate) fn stopped() -> Result<(), String> {
    if STOP.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Some(Cmd::Send(a)) => sender::run(a),
        Some(Cmd::Spa(a)) => {
            catch_signals();
            spa::bench(a)
        }
        Some(Cmd::Latency(a)) => {
            catch_signals();
            latency::bench(a)
        }
        Some(Cmd::Idle(a)) => {
            catch_signals();
            idle::bench(a)
        }
        Some(Cmd::Soak(a)) => {
            catch_signals();
            soak::soak(a)
        }
        Some(Cmd::SoakCommand(a)) => soak::command(a),
        None => {
            catch_signals();
            bench(&cli.bench)
        }
    };
    if let Err(e) = result {
        eprintln!("knocker-flood: {e}");
        std::process::exit(1);
    }
}

/// SIGINT/SIGTERM/SIGHUP set STOP, so that every wait loop returns and the labs' guards remove
/// the namespaces and stop the daemons. Blocked before any thread exists; children get an empty
/// mask from std::process.
fn catch_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if set.thread_block().is_ok() {
        std::thread::spawn(move || {
            if let Ok(s) = set.wait() {
                eprintln!("knocker-flood: {s} received, cleaning up");
                STOP.store(true, Ordering::Relaxed);
            }
        });
    }
}

/// The knockerd binary: `given`, or the one next to this binary (cargo builds them side by side).
pub(crate) fn knockerd_binary(given: &Option<PathBuf>) -> Result<PathBuf, String> {
    match given {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe()
            .map_err(|e| format!("own path: {e}"))?
            .parent()
            .map(|d| d.join("knockerd"))
            .ok_or_else(|| "cannot locate knockerd".to_string()),
    }
}

struct Case {
    name: String,
    family: Family,
    sources: u32,
    packets: u64,
}

fn bench(a: &BenchArgs) -> Result<(), String> {
    knocker_lab::preflight()?;
    let default_packets = if a.quick { 100_000 } else { 1_000_000 };
    let packets = a.packets.unwrap_or(default_packets);
    let big = a
        .sources
        .unwrap_or(if a.quick { 100_000 } else { 1_000_000 });
    let cases = [
        Case {
            name: format!(
                "{} {} sources",
                thousands(1000),
                match a.small_family {
                    Family::V4 => "IPv4",
                    Family::V6 => "IPv6",
                }
            ),
            family: a.small_family,
            sources: 1000,
            packets,
        },
        Case {
            name: format!("{} IPv6 sources", thousands(big as u64)),
            family: Family::V6,
            sources: big,
            packets,
        },
    ];
    if !(1..=50).contains(&a.attempts) {
        return Err("--attempts must be 1 to 50".into());
    }
    if big == 0 || big > Family::V6.max_sources() {
        return Err(format!(
            "--sources must be 1 to {}",
            Family::V6.max_sources()
        ));
    }
    let mut kinds = Vec::new();
    for d in &a.daemons {
        kinds.push(match (d.as_str(), Via::from_name(d)) {
            ("knockd", _) => (Kind::Knockd, Via::Nflog),
            (_, Some(via)) => (Kind::Knockerd, via),
            (other, None) => {
                let names: Vec<&str> = Via::NAMES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown daemon {other:?} (knockd, {})",
                    names.join(", ")
                ));
            }
        });
    }
    if kinds.iter().any(|&(_, v)| v == Via::Kmsg) {
        console_stays_quiet()?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let knockerd_bin = knockerd_binary(&a.knockerd)?;
    let knockd_bin = match &a.knockd {
        Some(p) => p.clone(),
        None => lab::which("knockd").unwrap_or_else(|| PathBuf::from("/usr/sbin/knockd")),
    };
    for (k, bin) in [(Kind::Knockerd, &knockerd_bin), (Kind::Knockd, &knockd_bin)] {
        if kinds.iter().any(|&(kind, _)| kind == k) && !bin.is_file() {
            return Err(format!("{} not found at {}", k.name(), bin.display()));
        }
    }
    let started = Instant::now();
    let load_before = table::load_average();
    let mut rows = Vec::new();
    for case in &cases {
        for &(kind, via) in &kinds {
            stopped()?;
            eprintln!(
                "== {}: flood of {} packets from {}",
                label(kind, via),
                thousands(case.packets),
                case.name
            );
            let bin = match kind {
                Kind::Knockerd | Kind::KnockerdSpa => &knockerd_bin,
                Kind::Knockd | Kind::Fwknopd | Kind::FwknopdTuned => &knockd_bin,
            };
            let row = run_one(kind, via, bin, &exe, case, a)?;
            eprintln!("   {}", row.summary());
            rows.push(row);
        }
    }
    print_report(&rows, a, started.elapsed(), &load_before);
    Ok(())
}

/// How the report names a daemon.
fn label(kind: Kind, via: Via) -> &'static str {
    match kind {
        Kind::Knockerd => via.label(),
        Kind::KnockerdSpa | Kind::Knockd | Kind::Fwknopd | Kind::FwknopdTuned => kind.name(),
    }
}

/// The kernel log source's flood puts every flood packet into the kernel log: refuse when the
/// console would print them (`kernel.printk`'s first field above 4, netfilter's `warn` level),
/// which could stall the machine on a serial console.
fn console_stays_quiet() -> Result<(), String> {
    let printk = std::fs::read_to_string("/proc/sys/kernel/printk")
        .map_err(|e| format!("/proc/sys/kernel/printk: {e}"))?;
    let level: u32 = printk
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("/proc/sys/kernel/printk: unexpected {printk:?}"))?;
    if level > 4 {
        return Err(format!(
            "the console log level is {level}: the knockerd-kmsg flood would print every packet to the console; lower it for the bench (`dmesg -n 4`) or leave knockerd-kmsg out"
        ));
    }
    Ok(())
}

/// One flood against one daemon, in a fresh lab.
fn run_one(
    kind: Kind,
    via: Via,
    bin: &std::path::Path,
    exe: &std::path::Path,
    case: &Case,
    a: &BenchArgs,
) -> Result<Row, String> {
    let lab = FloodLab::new(IDLE_ATTEMPTS + a.attempts)?;
    let dir = std::env::temp_dir().join(format!("knocker-flood-{}", lab.server.name()));
    // the file sources' log, created before knockerd follows it; kernel logging for /dev/kmsg
    let log_file = dir.join("knocks.log");
    let _logging = match via {
        Via::Kmsg => Some(knocker_lab::kernel_log::AllNetnsLogging::on()?),
        Via::Nflog | Via::Packet | Via::KernLog | Via::LogFile => None,
    };
    let mut daemon = match kind {
        Kind::Knockerd => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(&log_file, "").map_err(|e| format!("{}: {e}", log_file.display()))?;
            let config = via.knockerd_config(&dir.join("state"), &log_file);
            Daemon::knockerd(&lab, bin, dir, &config)?
        }
        Kind::Knockd => Daemon::knockd(&lab, bin, dir)?,
        Kind::Fwknopd | Kind::FwknopdTuned | Kind::KnockerdSpa => {
            return Err(format!("{} runs in `knocker-flood spa`", kind.name()))
        }
    };
    let pid = daemon.pid();
    let server = lab::server(case.family);
    let knock = |src: IpAddr| -> Result<Instant, String> {
        match via.line_format() {
            Some(format) => sources::knock_lines(&log_file, format, src, server),
            None => lab
                .net
                .enter(move || lab::knock(src, server))?
                .map_err(|e| format!("alice's knock: {e}")),
        }
    };

    // alice on an idle server; the first success also proves the setup
    let mut idle = Vec::new();
    for k in 0..IDLE_ATTEMPTS {
        stopped()?;
        let src = lab::alice(case.family, k);
        let sent = knock(src)?;
        idle.push(wait_open(&daemon, src, sent)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    if idle.iter().all(Option::is_none) {
        return Err(format!(
            "{}: alice's knocks on the idle server never opened: the setup is broken; its output:\n{}",
            label(kind, via),
            daemon.log()
        ));
    }
    let rss_start = procfs::tree_status_bytes(pid, "VmRSS").unwrap_or(0);
    let rx_before = procfs::rx_packets(lab.server.name(), lab::IFACE);

    let mut flood = Flood::spawn(
        &lab,
        exe,
        &sender::SendArgs {
            dst: server,
            port: lab::SEQUENCE[0],
            payload: Payload::Syn,
            sources: case.sources,
            packets: case.packets,
            pps: a.pps,
            max_secs: a.max_secs,
            progress_every: 8192,
            to_file: via.line_format().map(|_| log_file.clone()),
            line_format: via.line_format().unwrap_or(sources::LineFormat::Kern),
        },
    )?;
    flood.wait_started()?;
    let cpu_start = procfs::tree_cpu_seconds(pid)?;
    let flood_start = Instant::now();

    // alice knocks at even points of the flood, each time from a further address
    let mut attempts: Vec<(IpAddr, Instant, bool)> = Vec::new();
    for k in 0..a.attempts {
        let due = case.packets * (u64::from(k) + 1) / (u64::from(a.attempts) + 1);
        while flood.sent() < due && !flood.finished() {
            stopped()?;
            daemon.check_alive()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        let during = !flood.finished();
        let src = lab::alice(case.family, IDLE_ATTEMPTS + k);
        let sent = knock(src)?;
        attempts.push((src, sent, during));
    }
    let (sent, send_errors, send_secs) = flood.wait_done(a.max_secs + 30.0)?;
    let flood_end = Instant::now();
    let cpu_flood_end = procfs::tree_cpu_seconds(pid)?;

    // after the flood: until the daemon is idle (it may still be working through a backlog)
    // and every attempt has opened or run out of time
    let mut busy_after = None;
    let mut cpu_idle = cpu_flood_end;
    let mut last = cpu_flood_end;
    loop {
        stopped()?;
        std::thread::sleep(Duration::from_millis(250));
        daemon.check_alive()?;
        let now_cpu = procfs::tree_cpu_seconds(pid)?;
        if busy_after.is_none() && now_cpu - last < 0.01 {
            busy_after = Some(
                flood_end
                    .elapsed()
                    .saturating_sub(Duration::from_millis(250)),
            );
            cpu_idle = now_cpu;
        }
        last = now_cpu;
        let resolved = attempts
            .iter()
            .all(|(src, t, _)| daemon.opened_at(*src).is_some() || t.elapsed() > OPEN_LIMIT);
        if (busy_after.is_some() && resolved) || flood_end.elapsed() > SETTLE_LIMIT {
            break;
        }
    }
    if busy_after.is_none() {
        cpu_idle = last;
    }
    let rx_after = procfs::rx_packets(lab.server.name(), lab::IFACE);
    let rss_peak = procfs::tree_status_bytes(pid, "VmHWM").unwrap_or(0);
    // knockd's losses (its pcap ring overflowing) are counted only inside knockd, which never
    // reports them; knockerd's NFLOG socket overruns are visible in /proc/net/netlink
    let drops = match (kind, via) {
        (Kind::Knockerd, Via::Nflog) => procfs::netlink_drops(lab.server.name()),
        _ => None,
    };
    let during: Vec<Option<Duration>> = attempts
        .iter()
        .map(|(src, t, _)| latency(&daemon, *src, *t))
        .collect();
    let after_flood = attempts.iter().filter(|(_, _, d)| !d).count();
    let knocks_read = match kind {
        Kind::Knockerd => daemon.stop_knockerd(),
        Kind::KnockerdSpa | Kind::Knockd | Kind::Fwknopd | Kind::FwknopdTuned => None,
    };
    drop(daemon);
    drop(lab);
    Ok(Row {
        label: label(kind, via),
        knocks_read,
        lines: via.line_format().is_some(),
        case: case.name.clone(),
        sources: case.sources,
        sent,
        send_errors,
        send_secs,
        delivered: match (rx_before, rx_after, via.line_format()) {
            (Some(b), Some(a), None) => Some(a.saturating_sub(b)),
            _ => None,
        },
        cpu_flood: cpu_idle - cpu_start,
        busy_during: (cpu_flood_end - cpu_start)
            / flood_end.duration_since(flood_start).as_secs_f64(),
        busy_after,
        drops,
        rss_start,
        rss_peak,
        idle,
        during,
        after_flood,
    })
}

pub(crate) fn latency(d: &Daemon, src: IpAddr, knocked: Instant) -> Option<Duration> {
    let at = d.opened_at(src)?;
    let l = at.checked_duration_since(knocked).unwrap_or_default();
    (l <= OPEN_LIMIT).then_some(l)
}

pub(crate) fn wait_open(
    d: &Daemon,
    src: IpAddr,
    knocked: Instant,
) -> Result<Option<Duration>, String> {
    while knocked.elapsed() <= OPEN_LIMIT {
        stopped()?;
        if d.opened_at(src).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(latency(d, src, knocked))
}

struct Row {
    label: &'static str,
    /// The flood was log lines appended to a file, not packets.
    lines: bool,
    /// Knocks knockerd's worker read from its source in all (alice's and the flood's).
    knocks_read: Option<u64>,
    case: String,
    sources: u32,
    sent: u64,
    send_errors: u64,
    send_secs: f64,
    delivered: Option<u64>,
    /// Daemon CPU seconds from the flood's start until it went idle after it.
    cpu_flood: f64,
    /// Daemon CPU during the flood, as a share of one core.
    busy_during: f64,
    busy_after: Option<Duration>,
    drops: Option<u64>,
    rss_start: u64,
    rss_peak: u64,
    idle: Vec<Option<Duration>>,
    during: Vec<Option<Duration>>,
    after_flood: usize,
}

/// Packets per second over `secs` (0 when nothing was timed).
pub(crate) fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// CPU seconds per million packets (0 when there were none).
pub(crate) fn per_million(cpu: f64, count: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    cpu * 1e6 / count as f64
}

impl Row {
    fn pps(&self) -> f64 {
        rate(self.sent, self.send_secs)
    }

    fn cpu_per_million(&self) -> f64 {
        per_million(self.cpu_flood, self.sent)
    }

    fn summary(&self) -> String {
        format!(
            "{} packets in {:.1} s ({} pps); daemon CPU {:.2} s ({:.2} s per M packets, {:.0}% of a core during the flood); peak RSS {}; alice opened {}/{} during the flood, median {}",
            thousands(self.sent),
            self.send_secs,
            thousands(self.pps() as u64),
            self.cpu_flood,
            self.cpu_per_million(),
            self.busy_during * 100.0,
            mib(self.rss_peak),
            self.during.iter().flatten().count(),
            self.during.len(),
            fmt_median(&self.during),
        )
    }
}

pub(crate) fn median(v: &[Option<Duration>]) -> Option<Duration> {
    let mut ok: Vec<Duration> = v.iter().flatten().copied().collect();
    if ok.is_empty() {
        return None;
    }
    ok.sort();
    Some(ok[ok.len() / 2])
}

pub(crate) fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

pub(crate) fn fmt_median(v: &[Option<Duration>]) -> String {
    median(v).map_or_else(|| "-".to_string(), fmt_ms)
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The measures of the SYN flood table, in the order of [`Row::cells`].
const MEASURES: [&str; 11] = [
    "packets sent (pps)",
    "CPU us per packet (CPU s per M)",
    "daemon CPU",
    "core busy during flood",
    "busy after flood",
    "NFLOG overruns (knocks the kernel dropped)",
    "knocks the daemon read",
    "RSS start -> peak",
    "alice idle: median open",
    "alice during flood: opened",
    "alice during flood: median open",
];

impl Row {
    /// Its cells in the side-by-side table, as [`MEASURES`] lists them.
    fn cells(&self) -> Vec<table::Cell> {
        use table::Cell;
        vec![
            Cell::text(format!(
                "{} ({})",
                thousands(self.sent),
                thousands(self.pps() as u64)
            )),
            Cell::num(
                format!("{:.2}", self.cpu_per_million()),
                self.cpu_per_million(),
            ),
            Cell::num(format!("{:.2} s", self.cpu_flood), self.cpu_flood),
            Cell::text(format!("{:.0}%", self.busy_during * 100.0)),
            Cell::text(self.busy_after.map_or_else(
                || format!(">= {} s", SETTLE_LIMIT.as_secs()),
                |d| format!("{:.1} s", d.as_secs_f64()),
            )),
            Cell::text(self.drops.map_or_else(|| "n/a".to_string(), thousands)),
            Cell::text(
                self.knocks_read
                    .map_or_else(|| "n/a".to_string(), thousands),
            ),
            Cell::num(
                format!("{} -> {}", mib(self.rss_start), mib(self.rss_peak)),
                self.rss_peak as f64,
            ),
            table::median_ms(&self.idle),
            table::opened(&self.during, self.after_flood, "knocked"),
            table::median_ms(&self.during),
        ]
    }
}

fn print_report(rows: &[Row], a: &BenchArgs, took: Duration, load_before: &str) {
    println!(
        "Flood: SYNs to the door's first port from spoofed sources, {}; alice knocks {} times during each flood (5 s limit). Load average at the start: {load_before}; at the end: {}.\n",
        if a.pps == 0 {
            "as fast as the sender goes".to_string()
        } else {
            format!("paced at {} pps", thousands(a.pps))
        },
        a.attempts,
        table::load_average(),
    );
    let runs: Vec<table::Run> = rows
        .iter()
        .map(|r| table::Run {
            case: r.case.clone(),
            daemon: r.label.to_string(),
            cells: r.cells(),
        })
        .collect();
    print!("{}", table::side_by_side(&MEASURES, &runs));
    println!("\nINCUMBENT / knockerd: the incumbent's figure over knockerd's (above 1: knockerd needs that many times less).");
    println!();
    println!("n/a: knockd loses packets when its pcap ring is full, and only knockd could count them (it never does); knockerd's NFLOG socket overruns are read from /proc/net/netlink (its other sources count theirs inside the worker). Knocks the daemon read: knockerd's packet worker's own count, which it logs when it stops (alice's knocks and stray packets included).\n");
    if rows.iter().any(|r| r.lines) {
        println!("File sources (kern.log file, log file): their floods are log lines the sender appends to the file, one per knock, from the same spoofed sources and at the same pace as the packets; \"packets sent\" counts those lines.\n");
    }
    println!("Each of alice's attempts, last knock packet -> door open (\"-\": not within 5 s):\n");
    for r in rows {
        let each: Vec<String> = r
            .during
            .iter()
            .map(|d| d.map_or_else(|| "-".to_string(), fmt_ms))
            .collect();
        let idle: Vec<String> = r
            .idle
            .iter()
            .map(|d| d.map_or_else(|| "-".to_string(), fmt_ms))
            .collect();
        println!(
            "- {} / {} ({} distinct sources): idle [{}], during the flood [{}]; sender: {} send errors",
            r.case,
            r.label,
            thousands(u64::from(r.sources)),
            idle.join(", "),
            each.join(", "),
            thousands(r.send_errors),
        );
        if let Some(d) = r.delivered {
            println!("  server interface received {} packets", thousands(d));
        }
    }
    println!("\nWhole run: {:.0} s.", took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_for_reading() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1 000");
        assert_eq!(thousands(1_000_000), "1 000 000");
    }

    #[test]
    fn median_ignores_failures() {
        let ms = Duration::from_millis;
        assert_eq!(
            median(&[None, Some(ms(3)), Some(ms(1)), Some(ms(2))]),
            Some(ms(2))
        );
        assert_eq!(median(&[None, None]), None);
    }
}
