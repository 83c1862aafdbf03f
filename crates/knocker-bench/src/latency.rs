//! `knocker-flood latency`: how long knockerd takes from a knock to an open door, for each kind
//! of door it runs, beside knockd and fwknopd where they apply (BENCHMARKS.md, "Knock-to-open
//! latency"), on an idle server; one table.
//!
//! The incumbents run after knockerd, each in a fresh lab and with fewer samples (their knocks
//! take 45 to 105 ms): Debian's knockd with the same sequence (the flood bench's: its start
//! command adds the same kind of element with `nft`, so the same notification times it; the
//! set is flushed before each knock), and Debian's fwknopd with the access.conf that a second
//! knockerd runs as its fwknop door (the SPA flood bench's; fwknopd's iptables backend sends no
//! nftables notification, so its row is timed by its "Added access rule" line). Their fwknop
//! packets are made by Debian's fwknop client, outside the clock.
//!
//! One lab (the flood bench's: the server's `eth0` facing a `net` namespace where alice lives),
//! one knockerd with three doors opening the same service: a knock sequence, knocker's own SPA
//! datagram and a stealth SYN (`rate_limit = 0`: the per-source limit would refuse alice's
//! back-to-back samples). alice knocks from a further address of hers for each kind, so that
//! each grant is told apart by its address. Samples of the three kinds are interleaved, so that
//! the machine's noise falls on all of them alike.
//!
//! A sample is timed from just before alice's last packet leaves (the last knock of the
//! sequence, the datagram, the SYN) to the moment the grant is in the kernel: a thread inside the
//! server's namespace listens to nftables' own notifications (a `NETLINK_NETFILTER` socket in
//! group `NFNLGRP_NFTABLES`), which the kernel sends when it commits a transaction, and stamps
//! the `NFT_MSG_NEWSETELEM` that carries alice's address. No polling of `nft`, no log parsing.
//! Every sample needs a fresh grant: an element that is already there is refreshed by knockerd
//! with a delete and an add, which notifies too; a sequence can be knocked again, but SPA needs a
//! new datagram each time (a new nonce) and a SYN a new source port (the replay memory).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use knocker_lab::{Netns, ReadyKnock};
use knocker_wire::identity::PrivateKey;
use knocker_wire::{spa, syn, Service};

use crate::lab::{self, Daemon, FloodLab, Kind};
use crate::packets::Family;
use crate::spa::RemoveDir;
use crate::stopped;

/// knocker SPA's port (UDP) and the SYN door's port (TCP, nothing listens there).
const SPA_PORT: u16 = 62201;
const SYN_PORT: u16 = 4443;
/// How long one sample may take before it counts as not opened.
const SAMPLE_LIMIT: Duration = Duration::from_secs(2);
/// Unmeasured samples of each kind first (the first success proves the setup).
const WARMUP: u32 = 3;

/// nfnetlink: the nftables subsystem, its multicast group and the message type of a set
/// element added (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNLGRP_NFTABLES: u32 = 7;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
/// nla_type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

#[derive(clap::Args, Debug)]
pub struct LatencyArgs {
    /// Measured samples per door of knockerd's (after 3 unmeasured ones each).
    #[arg(long, default_value_t = 200)]
    samples: u32,
    /// Which of knockerd's doors: sequence, spa, syn (one knockerd, interleaved) and fwknop (a
    /// second knockerd running the fwknop access.conf, after the first).
    #[arg(long, value_delimiter = ',', default_value = "sequence,spa,syn,fwknop")]
    doors: Vec<String>,
    /// The incumbents beside them: knockd (Debian's knockd 0.8, the same sequence) and fwknopd
    /// (Debian's fwknopd 2.6.10, the same access.conf as knockerd's fwknop door); "none" for
    /// knockerd alone.
    #[arg(long, value_delimiter = ',', default_value = "knockd,fwknopd")]
    incumbents: Vec<String>,
    /// Measured samples of each incumbent (their knocks take 45 to 105 ms each; at most 150).
    #[arg(long, default_value_t = 100)]
    incumbent_samples: u32,
    /// Pause between two samples, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
    /// Hard time limit of each daemon's measurement, in seconds (it stops early and reports
    /// what it has).
    #[arg(long, default_value_t = 90.0)]
    max_secs: f64,
    /// Writes every sample to FILE: row, sample, CLOCK_MONOTONIC nanoseconds just before the
    /// last packet left, latency in nanoseconds (empty: not opened). For lining samples up with
    /// a trace of the daemon taken on the same clock (BENCHMARKS.md, "Where the tail comes
    /// from").
    #[arg(long)]
    samples_out: Option<PathBuf>,
    /// knockerd binary (default: next to this one).
    #[arg(long)]
    knockerd: Option<PathBuf>,
    /// knockd binary (default: from PATH).
    #[arg(long)]
    knockd: Option<PathBuf>,
    /// fwknopd binary (default: from PATH).
    #[arg(long)]
    fwknopd: Option<PathBuf>,
    /// fwknop client binary, which makes the fwknop doors' packets (default: from PATH).
    #[arg(long)]
    fwknop: Option<PathBuf>,
    /// Also times knockerd's sequence, SPA and SYN doors with a fleet's shared store
    /// (`[daemon] shared_state`): after the plain run, a second knockerd whose once-only claims
    /// go to Debian's redis-server in a namespace of its own, linked to the server; its rows are
    /// compared with the plain ones.
    #[arg(long)]
    shared_state: bool,
    /// redis-server binary, for --shared-state (default: from PATH).
    #[arg(long)]
    redis_server: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Sequence,
    Spa,
    Syn,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::Sequence => "sequence (3 TCP knocks)",
            Door::Spa => "spa (knocker SPA datagram)",
            Door::Syn => "syn (stealth SYN)",
        }
    }

    /// alice's address for this kind: 10.200.1.10, .11, .12.
    fn alice(self) -> Ipv4Addr {
        let k = match self {
            Door::Sequence => 0,
            Door::Spa => 1,
            Door::Syn => 2,
        };
        alice4(k)
    }
}

fn alice4(k: u16) -> Ipv4Addr {
    match lab::alice(Family::V4, k) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("alice(V4) is IPv4"),
    }
}

/// The server's key and alice's, and what she needs to knock on each door.
struct Keys {
    server: PrivateKey,
    alice: PrivateKey,
    syn: syn::SynKey,
    /// SYNs already sent: (time step, source port). A SYN is fresh only with a new source port
    /// (the replay memory remembers the authenticated fields).
    syn_used: HashSet<(u64, u16)>,
}

/// One timed knock: when its last packet left, and how long until it was seen open (`None`:
/// not within [`SAMPLE_LIMIT`]).
#[derive(Debug, Clone, Copy)]
struct Sample {
    sent: Instant,
    took: Option<Duration>,
}

/// How a row's opening is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// The kernel's NFT_MSG_NEWSETELEM notification of the element.
    Notification,
    /// fwknopd's "Added access rule" line, stamped when the bench reads it (fwknopd writes it
    /// once its iptables command has returned).
    LogLine,
}

/// One line of the table: a daemon's door and its samples.
struct Row {
    daemon: &'static str,
    door: &'static str,
    /// A short name for `--samples-out`.
    tag: &'static str,
    clock: Clock,
    samples: Vec<Sample>,
    /// The tag of knockerd's row this one is compared with.
    against: Option<&'static str>,
}

impl Row {
    fn new(daemon: &'static str, door: &'static str, tag: &'static str, clock: Clock) -> Row {
        Row {
            daemon,
            door,
            tag,
            clock,
            samples: Vec::new(),
            against: None,
        }
    }

    fn opened(&self) -> Vec<Duration> {
        let mut ok: Vec<Duration> = self.samples.iter().filter_map(|s| s.took).collect();
        ok.sort();
        ok
    }
}

/// The binaries the bench runs.
struct Bins {
    knockerd: PathBuf,
    knockd: PathBuf,
    fwknopd: PathBuf,
    fwknop: PathBuf,
    redis: PathBuf,
}

/// What the run was asked for, checked.
struct Plan {
    doors: Vec<Door>,
    fwknop: bool,
    knockd: bool,
    fwknopd: bool,
}

fn plan(a: &LatencyArgs) -> Result<Plan, String> {
    if !(1..=10_000).contains(&a.samples) {
        return Err("--samples must be 1 to 10000".into());
    }
    if !(1..=150).contains(&a.incumbent_samples) {
        return Err("--incumbent-samples must be 1 to 150".into());
    }
    if a.pause_ms > 1000 {
        return Err("--pause-ms must be at most 1000".into());
    }
    let mut p = Plan {
        doors: Vec::new(),
        fwknop: false,
        knockd: false,
        fwknopd: false,
    };
    for d in &a.doors {
        let door = match d.as_str() {
            "sequence" => Door::Sequence,
            "spa" => Door::Spa,
            "syn" => Door::Syn,
            "fwknop" => {
                p.fwknop = true;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown door {other:?} (sequence, spa, syn, fwknop)"
                ))
            }
        };
        if !p.doors.contains(&door) {
            p.doors.push(door);
        }
    }
    for i in &a.incumbents {
        match i.as_str() {
            "knockd" => p.knockd = true,
            "fwknopd" => p.fwknopd = true,
            "none" => {}
            other => {
                return Err(format!(
                    "unknown incumbent {other:?} (knockd, fwknopd, none)"
                ))
            }
        }
    }
    if p.doors.is_empty() && !p.fwknop {
        return Err("--doors names no door".into());
    }
    Ok(p)
}

fn bins(a: &LatencyArgs, p: &Plan) -> Result<Bins, String> {
    let found = |given: &Option<PathBuf>, name: &str| {
        given
            .clone()
            .or_else(|| lab::which(name))
            .unwrap_or_else(|| PathBuf::from(format!("/usr/sbin/{name}")))
    };
    let b = Bins {
        knockerd: crate::knockerd_binary(&a.knockerd)?,
        knockd: found(&a.knockd, "knockd"),
        fwknopd: found(&a.fwknopd, "fwknopd"),
        fwknop: found(&a.fwknop, "fwknop"),
        redis: found(&a.redis_server, "redis-server"),
    };
    let need = [
        (true, &b.knockerd, "knockerd"),
        (p.knockd, &b.knockd, "knockd (Debian: knockd)"),
        (p.fwknopd, &b.fwknopd, "fwknopd (Debian: fwknop-server)"),
        (
            p.fwknop || p.fwknopd,
            &b.fwknop,
            "fwknop (Debian: fwknop-client)",
        ),
        (
            a.shared_state && !p.doors.is_empty(),
            &b.redis,
            "redis-server (Debian: redis-server)",
        ),
    ];
    for (needed, path, what) in need {
        if needed && !path.is_file() {
            return Err(format!("{what} not found at {}", path.display()));
        }
    }
    if p.fwknopd && lab::which("iptables").is_none() {
        return Err("iptables not found (fwknopd's backend)".into());
    }
    Ok(b)
}

pub fn bench(a: &LatencyArgs) -> Result<(), String> {
    knocker_lab::preflight()?;
    let p = plan(a)?;
    let b = bins(a, &p)?;
    let load_before = loadavg();
    eprintln!("load average before: {load_before}");
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    if !p.doors.is_empty() {
        rows.extend(knockerd_doors(a, &p.doors, &b, &mut errors, false)?);
        if a.shared_state {
            rows.extend(knockerd_doors(a, &p.doors, &b, &mut errors, true)?);
        }
    }
    if p.fwknop {
        rows.push(knockerd_fwknop(a, &b, &mut errors)?);
    }
    if p.knockd {
        rows.push(knockd(a, &b, &mut errors)?);
    }
    if p.fwknopd {
        rows.push(fwknopd(a, &b)?);
    }
    let load_after = loadavg();
    if let Some(path) = &a.samples_out {
        write_samples(path, &rows)?;
    }
    print_report(&rows, a, errors, &load_before, &load_after);
    eprintln!("whole run: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// How long each daemon's measurement may take.
fn phase_limit(a: &LatencyArgs) -> Duration {
    Duration::from_secs_f64(a.max_secs.clamp(1.0, 3600.0))
}

/// The shared store's address, on a link of its own to the server (`--shared-state`).
const STORE4: &str = "10.200.99.1";

/// Debian's redis-server in a namespace of its own, linked to the server, without persistence;
/// killed by its pid (and its namespace removed) on drop.
struct Store {
    child: std::process::Child,
    _ns: Netns,
}

impl Store {
    fn start(server: &Netns, redis: &Path) -> Result<Store, String> {
        let ns = Netns::unique("kfstore")?;
        knocker_lab::netns::link(
            &ns,
            "to-server",
            &[&format!("{STORE4}/24")],
            server,
            "to-store",
            &["10.200.99.2/24"],
        )?;
        let child = ns
            .command(&redis.display().to_string())
            .args([
                "--port",
                "6379",
                "--bind",
                STORE4,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", redis.display()))?;
        let store = Store { child, _ns: ns };
        let addr: SocketAddr = format!("{STORE4}:6379").parse().expect("address");
        let up = server
            .enter(move || {
                let end = Instant::now() + Duration::from_secs(5);
                while Instant::now() < end {
                    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100))
                        .is_ok()
                    {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            })
            .map_err(|e| format!("enter the server: {e}"))?;
        if !up {
            return Err(format!("redis-server does not answer on {addr}"));
        }
        Ok(store)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// knockerd with its sequence, SPA and SYN doors, the samples of the three interleaved, so that
/// the machine's noise falls on all of them alike; with `shared`, its once-only claims go to a
/// shared store too.
fn knockerd_doors(
    a: &LatencyArgs,
    doors: &[Door],
    b: &Bins,
    errors: &mut Vec<String>,
    shared: bool,
) -> Result<Vec<Row>, String> {
    let lab = FloodLab::new(3)?;
    let _store = if shared {
        Some(Store::start(&lab.server, &b.redis)?)
    } else {
        None
    };
    let dir = std::env::temp_dir().join(format!("knocker-latency-{}", lab.server.name()));
    let server = PrivateKey::generate().map_err(|e| format!("server key: {e}"))?;
    let alice = PrivateKey::generate().map_err(|e| format!("alice's key: {e}"))?;
    let syn_key = alice
        .syn_key(&server.public_key())
        .map_err(|e| format!("alice's SYN key: {e}"))?;
    let mut config = knockerd_config(&dir);
    if shared {
        config = config.replacen(
            "[daemon]\n",
            &format!("[daemon]\nshared_state = \"redis://{STORE4}:6379/\"\n"),
            1,
        );
    }
    let args = write_config_with(&dir, &server, &alice, &config)?;
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let mut daemon = Daemon::spawn_knockerd(&lab, &b.knockerd, dir, &args)?;
    let watch = Watch::start(&lab.server)?;
    let mut keys = Keys {
        server,
        alice,
        syn: syn_key,
        syn_used: HashSet::new(),
    };

    for &door in doors {
        for k in 0..WARMUP {
            stopped()?;
            let got = sample(&lab, &watch, &mut keys, door)?;
            if got.took.is_none() && k == 0 {
                return Err(format!(
                    "{}: alice's first knock never opened: the setup is broken; knockerd's output:\n{}",
                    door.name(),
                    daemon.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(a.pause_ms));
        }
    }
    eprintln!(
        "== knockerd{}: {} samples of each of {} doors, interleaved",
        if shared { " with shared_state" } else { "" },
        a.samples,
        doors.len()
    );
    let measure_start = Instant::now();
    let limit = phase_limit(a);
    let mut rows: Vec<Row> = doors
        .iter()
        .map(|d| {
            let (door, tag, shared_tag) = match d {
                Door::Sequence => ("sequence (3 TCP knocks)", "sequence", "sequence-shared"),
                Door::Spa => ("spa (knocker SPA datagram)", "spa", "spa-shared"),
                Door::Syn => ("syn (stealth SYN)", "syn", "syn-shared"),
            };
            if shared {
                let mut row = Row::new(
                    "knockerd, shared_state (redis)",
                    door,
                    shared_tag,
                    Clock::Notification,
                );
                row.against = Some(tag);
                row
            } else {
                Row::new("knockerd", door, tag, Clock::Notification)
            }
        })
        .collect();
    'samples: for i in 0..a.samples {
        for (d, &door) in doors.iter().enumerate() {
            stopped()?;
            if measure_start.elapsed() > limit {
                eprintln!("   cut short by --max-secs");
                break 'samples;
            }
            rows[d].samples.push(sample(&lab, &watch, &mut keys, door)?);
            std::thread::sleep(Duration::from_millis(a.pause_ms));
        }
        if (i + 1) % 100 == 0 {
            daemon.check_alive()?;
            eprintln!("   {} samples each", i + 1);
        }
    }
    daemon.check_alive()?;
    errors.extend(watch.errors());
    Ok(rows)
}

/// A second knockerd running fwknopd's access.conf as it is (`--fwknop-access`, the SPA flood
/// bench's), alice's packets made by Debian's fwknop client.
fn knockerd_fwknop(a: &LatencyArgs, b: &Bins, errors: &mut Vec<String>) -> Result<Row, String> {
    let lab = FloodLab::new(1)?;
    let dir = std::env::temp_dir().join(format!("knocker-latency-{}", lab.server.name()));
    let packets = RemoveDir::create(dir.join("packets"))?;
    let mut daemon = Daemon::knockerd_fwknop(
        &lab,
        &b.knockerd,
        dir.join("daemon"),
        &crate::spa::access_conf(),
    )?;
    let row = Row::new(
        "knockerd",
        "fwknop (fwknop SPA, access.conf)",
        "knockerd-fwknop",
        Clock::Notification,
    );
    let phase = Phase {
        lab: &lab,
        n: a.samples,
        what: "knockerd's fwknop door",
    };
    phase.run(a, row, &mut daemon, errors, |src, watch| {
        let packet = crate::spa::alice_packet(&lab, &b.fwknop, &packets.0, src)?;
        watch.clear();
        send_udp(&lab, src, packet, lab::SPA_PORT)
    })
}

/// A phase timed by the sets' notifications: `n` samples of alice's (`alice4(0)`), each sent by
/// `send`, which clears the watch just before it sends and returns when it sent.
struct Phase<'a> {
    lab: &'a FloodLab,
    n: u32,
    what: &'a str,
}

impl Phase<'_> {
    fn run(
        &self,
        a: &LatencyArgs,
        mut row: Row,
        daemon: &mut Daemon,
        errors: &mut Vec<String>,
        mut send: impl FnMut(Ipv4Addr, &Watch) -> Result<Instant, String>,
    ) -> Result<Row, String> {
        let watch = Watch::start(&self.lab.server)?;
        let src = alice4(0);
        eprintln!("== {}: {} samples", self.what, self.n);
        row.samples = measure(a, self.n, daemon, self.what, |_| {
            let sent = send(src, &watch)?;
            Ok(Sample {
                sent,
                took: watch.wait_for(IpAddr::V4(src), sent, SAMPLE_LIMIT)?,
            })
        })?;
        errors.extend(watch.errors());
        Ok(row)
    }
}

/// `WARMUP` unmeasured samples (the first must open: it proves the setup), then `n` measured
/// ones for at most `--max-secs`, `--pause-ms` apart; `one(k)` takes the `k`-th (from 0, warm-up
/// included).
fn measure(
    a: &LatencyArgs,
    n: u32,
    daemon: &mut Daemon,
    what: &str,
    mut one: impl FnMut(u32) -> Result<Sample, String>,
) -> Result<Vec<Sample>, String> {
    let limit = phase_limit(a);
    let mut measure_start: Option<Instant> = None;
    let mut out = Vec::new();
    for k in 0..WARMUP + n {
        stopped()?;
        if measure_start.is_some_and(|t| t.elapsed() > limit) {
            eprintln!("   cut short by --max-secs");
            break;
        }
        let s = one(k)?;
        if k < WARMUP {
            if k == 0 && s.took.is_none() {
                return Err(format!(
                    "{what}: alice's first knock never opened: the setup is broken; its output:\n{}",
                    daemon.log()
                ));
            }
            if k + 1 == WARMUP {
                measure_start = Some(Instant::now());
            }
        } else {
            out.push(s);
        }
        std::thread::sleep(Duration::from_millis(a.pause_ms));
    }
    daemon.check_alive()?;
    Ok(out)
}

/// Debian's knockd with the same sequence (the flood bench's knockd: its start command adds the
/// element with `nft`), timed by the same notification. The set is flushed before each knock,
/// outside the clock, so that each one adds its element anew.
fn knockd(a: &LatencyArgs, b: &Bins, errors: &mut Vec<String>) -> Result<Row, String> {
    let lab = FloodLab::new(1)?;
    let dir = std::env::temp_dir().join(format!("knocker-latency-{}", lab.server.name()));
    let mut daemon = Daemon::knockd(&lab, &b.knockd, dir)?;
    let mut row = Row::new(
        "knockd 0.8",
        "sequence (3 TCP knocks)",
        "knockd",
        Clock::Notification,
    );
    row.against = Some("sequence");
    let phase = Phase {
        lab: &lab,
        n: a.incumbent_samples,
        what: "knockd",
    };
    phase.run(a, row, &mut daemon, errors, |src, watch| {
        lab.server
            .nft("flush set inet kbench allow4\n")
            .map_err(|e| format!("flushing knockd's set: {e}"))?;
        watch.clear();
        let dst = lab::SERVER4;
        lab.net
            .enter(move || knock_sequence(src, dst))?
            .map_err(|e| format!("alice's knock on knockd: {e}"))
    })
}

/// Debian's fwknopd with the same access.conf and its iptables backend (the SPA flood bench's),
/// timed by its "Added access rule" log line. A further address of alice's for each packet, so
/// that each one adds a rule of its own.
fn fwknopd(a: &LatencyArgs, b: &Bins) -> Result<Row, String> {
    let n = u16::try_from(WARMUP + a.incumbent_samples).unwrap_or(u16::MAX);
    let lab = FloodLab::new(n)?;
    let dir = std::env::temp_dir().join(format!("knocker-latency-{}", lab.server.name()));
    let packets = RemoveDir::create(dir.join("packets"))?;
    let mut daemon = Daemon::fwknopd(
        &lab,
        Kind::Fwknopd,
        &b.fwknopd,
        dir.join("daemon"),
        &crate::spa::access_conf(),
    )?;
    let mut row = Row::new(
        "fwknopd 2.6.10",
        "fwknop (fwknop SPA, access.conf)",
        "fwknopd",
        Clock::LogLine,
    );
    row.against = Some("knockerd-fwknop");
    // the daemon is borrowed by `measure`; its log thread fills this
    let opened = daemon.opened.clone();
    eprintln!("== fwknopd: {} samples", a.incumbent_samples);
    let samples = measure(a, a.incumbent_samples, &mut daemon, "fwknopd", |k| {
        let src = alice4(u16::try_from(k).unwrap_or(u16::MAX));
        let packet = crate::spa::alice_packet(&lab, &b.fwknop, &packets.0, src)?;
        let sent = send_udp(&lab, src, packet, lab::SPA_PORT)?;
        let end = sent + SAMPLE_LIMIT;
        loop {
            if let Some(at) = daemon_opened(&opened, src) {
                return Ok(Sample {
                    sent,
                    took: Some(at.saturating_duration_since(sent)),
                });
            }
            if Instant::now() > end {
                return Ok(Sample { sent, took: None });
            }
            stopped()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    })?;
    row.samples = samples;
    Ok(row)
}

fn daemon_opened(opened: &lab::Opened, src: Ipv4Addr) -> Option<Instant> {
    opened.lock().ok()?.get(&IpAddr::V4(src)).copied()
}

/// Sends `payload` to `port` of the server from `src`; the clock starts just before the send.
fn send_udp(lab: &FloodLab, src: Ipv4Addr, payload: Vec<u8>, port: u16) -> Result<Instant, String> {
    lab.net
        .enter(move || {
            let s = UdpSocket::bind((src, 0))?;
            let at = Instant::now();
            s.send_to(&payload, (lab::SERVER4, port))?;
            Ok::<Instant, std::io::Error>(at)
        })?
        .map_err(|e| format!("sending from {src}: {e}"))
}

/// `--samples-out`: one line per sample, times on CLOCK_MONOTONIC (what `Instant` reads on
/// Linux, and ftrace's `mono` clock).
fn write_samples(path: &Path, rows: &[Row]) -> Result<(), String> {
    use nix::time::{clock_gettime, ClockId};
    let base_instant = Instant::now();
    let base = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(|e| format!("clock: {e}"))?;
    let base_ns = base.tv_sec() as i128 * 1_000_000_000 + base.tv_nsec() as i128;
    let mut out = String::from("row,sample,sent_mono_ns,latency_ns\n");
    for r in rows {
        for (i, s) in r.samples.iter().enumerate() {
            let before = base_instant.saturating_duration_since(s.sent).as_nanos() as i128;
            let took = s.took.map(|d| d.as_nanos().to_string()).unwrap_or_default();
            out.push_str(&format!("{},{i},{},{took}\n", r.tag, base_ns - before));
        }
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the server key (0600), the clients file (alice) and `config` as knockerd.toml into
/// `dir`, and returns knockerd's arguments (also the SPA flood's native door).
pub(crate) fn write_config_with(
    dir: &Path,
    server: &PrivateKey,
    alice: &PrivateKey,
    config_text: &str,
) -> Result<Vec<std::ffi::OsString>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let key = dir.join("server.key");
    std::fs::write(&key, server.to_base64().as_bytes()).map_err(|e| err(&key, e))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(&key, e))?;
    let clients = dir.join("clients.toml");
    std::fs::write(
        &clients,
        format!("[client.alice]\npublic_key = \"{}\"\n", alice.public_key()),
    )
    .map_err(|e| err(&clients, e))?;
    let config = dir.join("knockerd.toml");
    std::fs::write(&config, config_text).map_err(|e| err(&config, e))?;
    Ok(vec!["--config".into(), config.into_os_string()])
}

/// The three doors, all opening the same service for a minute.
fn knockerd_config(dir: &Path) -> String {
    let seq: Vec<String> = lab::SEQUENCE.iter().map(|p| format!("\"{p}\"")).collect();
    let path = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    format!(
        "[daemon]\nstate_dir = {}\nserver_key = {}\nclients = {}\n\n\
         [door.sequence]\nsequence = [{}]\ntcp_flags = \"syn,!ack\"\nwindow = \"{}s\"\n\
         open = [\"tcp/{service}\"]\nopen_for = \"60s\"\n\n\
         [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{service}\"]\nopen_for = \"60s\"\nrate_limit = 0\n\n\
         [door.syn]\nkind = \"syn\"\nport = {SYN_PORT}\nopen = [\"tcp/{service}\"]\nopen_for = \"60s\"\nrate_limit = 0\n",
        path("state"),
        path("server.key"),
        path("clients.toml"),
        seq.join(", "),
        lab::SEQ_TIMEOUT,
        service = lab::SERVICE,
    )
}

/// One knock of `door` from alice, timed until its grant is in the kernel; `None` when no
/// grant came within [`SAMPLE_LIMIT`].
fn sample(lab: &FloodLab, watch: &Watch, keys: &mut Keys, door: Door) -> Result<Sample, String> {
    let src = door.alice();
    let dst = lab::SERVER4;
    // made before the clock starts: what alice's client does before anything leaves
    let knock: Box<dyn FnOnce() -> std::io::Result<Instant> + Send> = match door {
        Door::Sequence => Box::new(move || knock_sequence(src, dst)),
        Door::Spa => {
            let req = spa::Request {
                timestamp: unix_now(),
                nonce: random16()?,
                allow: None,
                services: vec![Service::tcp(lab::SERVICE)],
                duration: None,
            };
            let datagram = spa::seal(
                &req,
                &keys.alice,
                &keys.server.public_key(),
                &keys.server.door_key("spa"),
            )
            .map_err(|e| format!("sealing alice's datagram: {e}"))?;
            Box::new(move || {
                let s = UdpSocket::bind((src, 0))?;
                let at = Instant::now();
                s.send_to(&datagram, (dst, SPA_PORT))?;
                Ok(at)
            })
        }
        Door::Syn => {
            let packet = fresh_syn(keys, src, dst)?;
            Box::new(move || {
                use socket2::{Domain, Protocol, SockAddr, Socket, Type};
                // IPPROTO_RAW: the kernel sends the header as it is (IP_HDRINCL)
                let s = Socket::new(
                    Domain::IPV4,
                    Type::RAW,
                    Some(Protocol::from(libc::IPPROTO_RAW)),
                )?;
                let to = SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0));
                let at = Instant::now();
                s.send_to(&packet, &to)?;
                Ok(at)
            })
        }
    };
    watch.clear();
    let sent = lab
        .net
        .enter(knock)?
        .map_err(|e| format!("alice's knock on the {} door: {e}", door.name()))?;
    Ok(Sample {
        sent,
        took: watch.wait_for(IpAddr::V4(src), sent, SAMPLE_LIMIT)?,
    })
}

/// alice knocks the sequence as knock(1) does (one SYN per port from a non-blocking connect,
/// closed at once); the clock starts just before the last knock's `connect`. Must run inside
/// the `net` namespace.
fn knock_sequence(src: Ipv4Addr, dst: Ipv4Addr) -> std::io::Result<Instant> {
    let mut at = Instant::now();
    for port in lab::SEQUENCE {
        let knock = ReadyKnock::new(Some(src.into()), dst.into(), Service::tcp(port))?;
        at = Instant::now();
        knock.send()?;
    }
    Ok(at)
}

/// A stealth SYN from alice with a source port not used before in this time step.
fn fresh_syn(keys: &mut Keys, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, String> {
    let (src, dst) = (IpAddr::V4(src), IpAddr::V4(dst));
    let step = syn::step(unix_now());
    for _ in 0..256 {
        let (sport, marks) = syn::choose(&keys.syn, step, src, dst, SYN_PORT, 0)
            .map_err(|e| format!("making alice's SYN: {e}"))?;
        if keys.syn_used.insert((step, sport)) {
            let shape = syn::linux_shape(false, 1500);
            return Ok(syn::build(src, dst, sport, SYN_PORT, &marks, &shape));
        }
    }
    Err("no unused source port left for alice's SYNs".into())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn random16() -> Result<[u8; 16], String> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|e| format!("random: {e}"))?;
    Ok(n)
}

/// nftables notifications in the server's namespace: a thread reads them and stamps each new
/// set element (its address) when it arrives.
struct Watch {
    rx: Receiver<(Instant, IpAddr)>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    _thread: Background,
}

impl Watch {
    fn start(server: &Netns) -> Result<Watch, String> {
        let (tx, rx) = mpsc::channel();
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let errors2 = errors.clone();
        let thread = Background::watch(server, subscribe, move |socket, stop| {
            listen(&socket, &tx, stop, &errors2)
        })?;
        Ok(Watch {
            rx,
            errors,
            _thread: thread,
        })
    }

    /// Forgets notifications already received (a previous sample's).
    fn clear(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Waits for a new element for `addr`; its delay after `sent`.
    fn wait_for(
        &self,
        addr: IpAddr,
        sent: Instant,
        limit: Duration,
    ) -> Result<Option<Duration>, String> {
        let end = sent + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok((at, a)) if a == addr => return Ok(Some(at.saturating_duration_since(sent))),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    stopped()?;
                    if left.is_zero() {
                        return Ok(None);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "the nftables watcher stopped: {}",
                        self.errors().join("; ")
                    ))
                }
            }
        }
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// A thread that runs until told to stop; stopped and joined when dropped.
pub(crate) struct Background {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Background {
    /// A netlink watcher: `listen` runs on a thread of `server`'s namespace with a socket from
    /// `subscribe` made there, until the flag it is given is set. Returns once the socket is
    /// subscribed, so nothing announced from then on is missed.
    pub(crate) fn watch(
        server: &Netns,
        subscribe: fn() -> Result<netlink_sys::Socket, String>,
        listen: impl FnOnce(netlink_sys::Socket, &AtomicBool) + Send + 'static,
    ) -> Result<Background, String> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = server.spawn(move || {
            let socket = match subscribe() {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            listen(socket, &stop2);
        });
        // dropped on an error: stopped and joined
        let watcher = Background {
            stop,
            thread: Some(thread),
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the nftables watcher did not start".to_string())??;
        Ok(watcher)
    }

    pub(crate) fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.end();
    }
}

/// A netfilter netlink socket in the calling thread's namespace, in the nftables group.
pub(crate) fn subscribe() -> Result<netlink_sys::Socket, String> {
    use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
    let mut s = Socket::new(NETLINK_NETFILTER).map_err(|e| format!("netlink socket: {e}"))?;
    s.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
    s.add_membership(NFNLGRP_NFTABLES)
        .map_err(|e| format!("joining NFNLGRP_NFTABLES: {e}"))?;
    // a few elements per sample: plenty, but a table load notifies a burst
    let _ = s.set_rx_buf_sz(1 << 20);
    Ok(s)
}

fn listen(
    socket: &netlink_sys::Socket,
    tx: &mpsc::Sender<(Instant, IpAddr)>,
    stop: &AtomicBool,
    errors: &std::sync::Mutex<Vec<String>>,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                if let Ok(mut v) = errors.lock() {
                    v.push(format!("poll: {e}"));
                }
                return;
            }
        }
        buf.clear();
        match socket.recv(&mut buf, libc::MSG_DONTWAIT) {
            Ok(_) => {
                let at = Instant::now();
                for addr in new_elements(&buf) {
                    if tx.send((at, addr)).is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // ENOBUFS: notifications were lost (a sample will time out and say so)
            Err(e) => {
                if let Ok(mut v) = errors.lock() {
                    v.push(format!("netlink recv: {e}"));
                }
            }
        }
    }
}

/// The addresses of the set elements added in one netlink datagram (NFT_MSG_NEWSETELEM
/// notifications; keys `addr . inet_proto . inet_service` as knockerd's sets hold them).
fn new_elements(buf: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            break;
        }
        // the nfgenmsg header (4 bytes), then attributes
        if kind == (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM) && len >= 20 {
            for (t, elements) in attrs(&buf[off + 20..off + len]) {
                if t != NFTA_SET_ELEM_LIST_ELEMENTS {
                    continue;
                }
                for (t, elem) in attrs(elements) {
                    if t != NFTA_LIST_ELEM {
                        continue;
                    }
                    for (t, key) in attrs(elem) {
                        if t != NFTA_SET_ELEM_KEY {
                            continue;
                        }
                        for (t, value) in attrs(key) {
                            if t == NFTA_DATA_VALUE {
                                out.extend(key_addr(value));
                            }
                        }
                    }
                }
            }
        }
        off += (len + 3) & !3;
    }
    out
}

/// Netlink attributes: (type, payload).
pub(crate) fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let t = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((t, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

/// The address of a key `addr . inet_proto . inet_service` (each part padded to 4 bytes).
fn key_addr(key: &[u8]) -> Option<IpAddr> {
    match key.len() {
        12 => <[u8; 4]>::try_from(&key[..4]).ok().map(IpAddr::from),
        24 => <[u8; 16]>::try_from(&key[..16]).ok().map(IpAddr::from),
        _ => None,
    }
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let v: Vec<&str> = l.split_whitespace().take(3).collect();
            (v.len() == 3).then(|| v.join(" "))
        })
        .unwrap_or_else(|| "?".to_string())
}

/// The value at quantile `q` of sorted `v` (nearest rank).
pub(crate) fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn fmt_us(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_string(),
        |d| format!("{:.3} ms", d.as_secs_f64() * 1e3),
    )
}

/// The ratio of two medians, as "N.Nx".
fn ratio(of: Option<Duration>, to: Option<Duration>) -> String {
    match (of, to) {
        (Some(a), Some(b)) if !b.is_zero() => {
            let r = a.as_secs_f64() / b.as_secs_f64();
            if r >= 10.0 {
                format!("{r:.0}x")
            } else {
                format!("{r:.1}x")
            }
        }
        _ => "-".to_string(),
    }
}

fn print_report(
    rows: &[Row],
    a: &LatencyArgs,
    errors: Vec<String>,
    load_before: &str,
    load_after: &str,
) {
    println!(
        "Knock-to-open latency, idle server: from just before alice's last packet leaves until the door is open; knockerd's sequence, SPA and SYN doors {} samples each asked, interleaved; its fwknop door {} (a second knockerd); knockd and fwknopd {} each; {} ms between samples.\n",
        a.samples, a.samples, a.incumbent_samples, a.pause_ms
    );
    println!("| daemon | door | clock | samples | opened | min | median | p99 | max | median vs knockerd |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let median_of = |tag: &str| {
        rows.iter()
            .find(|r| r.tag == tag)
            .and_then(|r| quantile(&r.opened(), 0.5))
    };
    for r in rows {
        let ok = r.opened();
        let median = quantile(&ok, 0.5);
        let vs = match r.against {
            Some(tag) => ratio(median, median_of(tag)),
            None => "1x".to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {vs} |",
            r.daemon,
            r.door,
            match r.clock {
                Clock::Notification => "NFT_MSG_NEWSETELEM",
                Clock::LogLine => "its log line",
            },
            r.samples.len(),
            ok.len(),
            fmt_us(ok.first().copied()),
            fmt_us(median),
            fmt_us(quantile(&ok, 0.99)),
            fmt_us(ok.last().copied()),
        );
    }
    println!(
        "\nClocks: NFT_MSG_NEWSETELEM is the kernel's notification that the element is in the set (knockd's start command adds it with `nft`, as knockerd's netlink batch does); fwknopd opens with iptables, so its row is timed by its \"Added access rule\" line, which it writes once iptables has returned, stamped when the bench reads it. Ratios: knockd against knockerd's sequence door, fwknopd against knockerd's fwknop door, knockerd with shared_state against the same door without (a sequence door makes no claim)."
    );
    println!("Load average {load_before} before, {load_after} after.");
    if !errors.is_empty() {
        println!("Watcher errors: {}", errors.join("; "));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn nla(t: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
        v.extend_from_slice(&t.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn message(kind: u16, attrs: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&[0; 10]);
        v.extend_from_slice(&[1, 0, 0, 0]);
        v.extend_from_slice(attrs);
        v
    }

    fn element(key: &[u8]) -> Vec<u8> {
        const NESTED: u16 = 0x8000;
        let value = nla(NFTA_DATA_VALUE, key);
        let k = nla(NFTA_SET_ELEM_KEY | NESTED, &value);
        let mut e = k;
        e.extend(nla(4, &60_000u64.to_be_bytes()));
        nla(NFTA_LIST_ELEM | NESTED, &e)
    }

    #[test]
    fn new_set_elements_are_read_from_notifications() {
        let v4 = [10, 200, 1, 11, 6, 0, 0, 0, 0x08, 0xae, 0, 0];
        let mut v6 = vec![0xfd, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        v6.extend_from_slice(&[6, 0, 0, 0, 0x08, 0xae, 0, 0]);
        let mut list = element(&v4);
        list.extend(element(&v6));
        let mut a = nla(1, b"knocker\0");
        a.extend(nla(2, b"allow4\0"));
        a.extend(nla(NFTA_SET_ELEM_LIST_ELEMENTS | 0x8000, &list));
        let mut buf = message(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM, &a);
        // a deletion and a new generation in the same datagram are not grants
        buf.extend(message(NFNL_SUBSYS_NFTABLES << 8 | 14, &a));
        buf.extend(message(NFNL_SUBSYS_NFTABLES << 8 | 16, &[]));
        assert_eq!(
            new_elements(&buf),
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 200, 1, 11)),
                "fd00:200:1::1:1".parse::<IpAddr>().expect("addr"),
            ]
        );
        // truncated anywhere: never panics
        for n in 0..buf.len() {
            let _ = new_elements(&buf[..n]);
        }
    }

    #[test]
    fn ratios_of_medians_and_what_a_run_is_asked_for() {
        let ms = |m: u64| Some(Duration::from_millis(m));
        assert_eq!(ratio(ms(45), ms(1)), "45x");
        assert_eq!(ratio(ms(3), ms(2)), "1.5x");
        assert_eq!(ratio(None, ms(2)), "-");
        assert_eq!(ratio(ms(2), Some(Duration::ZERO)), "-");
        let args = |doors: &str, incumbents: &str| LatencyArgs {
            samples: 10,
            doors: doors.split(',').map(String::from).collect(),
            incumbents: incumbents.split(',').map(String::from).collect(),
            incumbent_samples: 5,
            pause_ms: 5,
            max_secs: 90.0,
            samples_out: None,
            knockerd: None,
            knockd: None,
            fwknopd: None,
            fwknop: None,
            shared_state: false,
            redis_server: None,
        };
        let p = plan(&args("syn,fwknop,syn", "none")).expect("plan");
        assert_eq!(p.doors, vec![Door::Syn]);
        assert!(p.fwknop && !p.knockd && !p.fwknopd);
        let p = plan(&args("fwknop", "knockd,fwknopd")).expect("plan");
        assert!(p.doors.is_empty() && p.knockd && p.fwknopd);
        assert!(plan(&args("ssh", "none")).is_err());
        assert!(plan(&args("sequence", "knockknock")).is_err());
        let mut a = args("sequence", "none");
        a.incumbent_samples = 151;
        assert!(plan(&a).is_err());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=200).map(Duration::from_micros).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_micros(100)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_micros(198)));
        assert_eq!(quantile(&v[..1], 0.99), Some(Duration::from_micros(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn three_doors_one_service_and_alice_apart_for_each() {
        let c = knockerd_config(Path::new("/tmp/x"));
        assert!(c.contains("[door.spa]\nkind = \"spa\"\nport = 62201"));
        assert!(c.contains("[door.syn]\nkind = \"syn\"\nport = 4443"));
        assert_eq!(c.matches("rate_limit = 0").count(), 2);
        assert_eq!(c.matches("open = [\"tcp/2222\"]").count(), 3);
        let a: HashSet<Ipv4Addr> = [Door::Sequence, Door::Spa, Door::Syn]
            .iter()
            .map(|d| d.alice())
            .collect();
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|a| a.octets()[..3] == [10, 200, 1]));
    }
}
