//! `knocker-flood spa`: Debian's fwknopd (as it ships, and with a larger PCAP_DISPATCH_COUNT)
//! and knockerd side by side, with the same access.conf, under a flood of UDP datagrams to the
//! SPA port that look like fwknop packets, while alice sends real ones (BENCHMARKS.md, "SPA
//! flood").
//!
//! For each flood (garbage; real fwknop packets made with a wrong key) and each daemon, in a
//! fresh lab: start the daemon on the same access.conf, let alice open the door a few times on
//! the idle server, then flood the SPA port from spoofed IPv4 sources (fwknop's format carries
//! IPv4 only, and fwknopd 2.6.10 captures IPv4 only) while alice sends further packets at even
//! points of the flood, and measure the daemon's CPU time and peak memory, how many flood
//! packets it examined, and how fast each of alice's packets opened the door.
//!
//! alice's packets are made by Debian's `fwknop` client (`-B FILE --test`: built and saved, not
//! sent), each for a further address of hers, just before they are needed (all of them well
//! inside the 120 s age window); the bench sends each one from its address and times it from
//! there.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::flood::Flood;
use crate::lab::{self, Daemon, FloodLab, Kind, SPA_PORT};
use crate::packets::{self, Family, Payload};
use crate::sender::SendArgs;
use crate::{
    fmt_median, fmt_ms, latency, mib, procfs, stopped, thousands, wait_open, IDLE_ATTEMPTS,
    SETTLE_LIMIT,
};

/// The door's keys, in the access.conf both daemons run and on alice's command line.
pub const KEY: &str = "knocker-bench-rijndael";
pub const HMAC_KEY: &str = "knocker-bench-hmac-key-0123456789";
/// FW_ACCESS_TIMEOUT: seconds a grant lasts.
pub const ACCESS_TIMEOUT: u32 = 30;

/// The access.conf both daemons run, unchanged.
pub fn access_conf() -> String {
    format!(
        "SOURCE ANY\nOPEN_PORTS tcp/{}\nKEY {KEY}\nHMAC_KEY {HMAC_KEY}\nFW_ACCESS_TIMEOUT {ACCESS_TIMEOUT}\n",
        lab::SERVICE
    )
}

/// Where knockerd's flood refusals are flushed from once the flood is over: the `net`
/// namespace's own address, which is neither alice's nor a spoofed source.
const FLUSH_SOURCE: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);

#[derive(clap::Args, Debug)]
pub struct SpaArgs {
    /// Short floods (3 s, 1 000 sources) for a quick check.
    #[arg(long)]
    quick: bool,
    /// Seconds each flood lasts at its rate: it sends rate x seconds datagrams (default 20;
    /// 3 with --quick).
    #[arg(long)]
    secs: Option<u64>,
    /// Datagrams per flood, instead of rate x seconds (a flood at full speed sends 1 000 000,
    /// 100 000 with --quick, unless told).
    #[arg(long)]
    packets: Option<u64>,
    /// Spoofed IPv4 sources, cycled (default 10 000; 1 000 with --quick; at most 39 936).
    #[arg(long)]
    sources: Option<u32>,
    /// Flood rates in datagrams per second, comma-separated: each flood runs once per rate,
    /// against each daemon. 0 floods as fast as the sender goes.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pps: Vec<u64>,
    /// alice's attempts during each flood.
    #[arg(long, default_value_t = 5)]
    attempts: u16,
    /// Hard time limit of each flood, in seconds.
    #[arg(long, default_value_t = 60.0)]
    max_secs: f64,
    /// Which floods: garbage (random base64, 180 to 300 characters), wrong-hmac (real fwknop
    /// packets made with another key, replayed).
    #[arg(long, value_delimiter = ',', default_value = "garbage,wrong-hmac")]
    floods: Vec<String>,
    /// Which daemons to run: fwknopd (as Debian ships it), fwknopd-tuned (PCAP_DISPATCH_COUNT
    /// 1000000: every waiting packet on each pass of its loop, not at most 100), knockerd (the
    /// same access.conf), knockerd-spa (knockerd's own SPA door on the same port, alice's
    /// packets sealed for it; the floods are garbage to it, both of them).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fwknopd,fwknopd-tuned,knockerd"
    )]
    daemons: Vec<String>,
    /// knockerd binary (default: next to this one).
    #[arg(long)]
    knockerd: Option<PathBuf>,
    /// fwknopd binary (default: from PATH).
    #[arg(long)]
    fwknopd: Option<PathBuf>,
    /// fwknop client, which makes alice's packets (default: from PATH).
    #[arg(long)]
    fwknop: Option<PathBuf>,
}

struct Case {
    payload: Payload,
    pps: u64,
    sources: u32,
    packets: u64,
}

struct Bins {
    exe: PathBuf,
    knockerd: PathBuf,
    fwknopd: PathBuf,
    fwknop: PathBuf,
}

pub fn bench(a: &SpaArgs) -> Result<(), String> {
    knocker_lab::preflight()?;
    let secs = a.secs.unwrap_or(if a.quick { 3 } else { 20 });
    let packets_at = |pps: u64| match (a.packets, pps) {
        (Some(n), _) => n,
        (None, 0) => {
            if a.quick {
                100_000
            } else {
                1_000_000
            }
        }
        (None, pps) => pps.saturating_mul(secs),
    };
    if a.pps.iter().any(|&p| packets_at(p) == 0) {
        return Err("a flood of 0 datagrams: check --secs and --packets".into());
    }
    let sources = a.sources.unwrap_or(if a.quick { 1_000 } else { 10_000 });
    if sources == 0 || sources > Family::V4.max_sources() {
        return Err(format!(
            "--sources must be 1 to {}",
            Family::V4.max_sources()
        ));
    }
    if !(1..=50).contains(&a.attempts) {
        return Err("--attempts must be 1 to 50".into());
    }
    let mut floods = Vec::new();
    for f in &a.floods {
        floods.push(match f.as_str() {
            "garbage" => Payload::Garbage,
            "wrong-hmac" => Payload::WrongHmac,
            other => return Err(format!("unknown flood {other:?} (garbage, wrong-hmac)")),
        });
    }
    let mut kinds = Vec::new();
    for d in &a.daemons {
        kinds.push(match d.as_str() {
            "fwknopd" => Kind::Fwknopd,
            "fwknopd-tuned" => Kind::FwknopdTuned,
            "knockerd" => Kind::Knockerd,
            "knockerd-spa" => Kind::KnockerdSpa,
            other => {
                return Err(format!(
                    "unknown daemon {other:?} (fwknopd, fwknopd-tuned, knockerd, knockerd-spa)"
                ))
            }
        });
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let found = |given: &Option<PathBuf>, name: &str| {
        given
            .clone()
            .or_else(|| lab::which(name))
            .unwrap_or_else(|| PathBuf::from(format!("/usr/sbin/{name}")))
    };
    let bins = Bins {
        knockerd: match &a.knockerd {
            Some(p) => p.clone(),
            None => exe
                .parent()
                .map(|d| d.join("knockerd"))
                .ok_or("cannot locate knockerd")?,
        },
        fwknopd: found(&a.fwknopd, "fwknopd"),
        fwknop: found(&a.fwknop, "fwknop"),
        exe,
    };
    if kinds.iter().any(|k| k.is_knockerd()) && !bins.knockerd.is_file() {
        return Err(format!("knockerd not found at {}", bins.knockerd.display()));
    }
    let fwknopd = kinds.iter().any(|k| k.is_fwknopd());
    if fwknopd && !bins.fwknopd.is_file() {
        return Err(format!(
            "fwknopd not found at {} (Debian: fwknop-server)",
            bins.fwknopd.display()
        ));
    }
    if fwknopd && lab::which("iptables").is_none() {
        return Err("iptables not found (fwknopd's backend)".into());
    }
    if !bins.fwknop.is_file() {
        return Err(format!(
            "the fwknop client not found at {} (Debian: fwknop-client); it makes alice's packets",
            bins.fwknop.display()
        ));
    }
    let started = Instant::now();
    let load_before = crate::table::load_average();
    let mut rows = Vec::new();
    for &pps in &a.pps {
        for &payload in &floods {
            let case = Case {
                payload,
                pps,
                sources,
                packets: packets_at(pps),
            };
            for &kind in &kinds {
                stopped()?;
                eprintln!(
                    "== {}: {} flood, {} datagrams from {} sources at {}",
                    kind.name(),
                    payload.name(),
                    thousands(case.packets),
                    thousands(u64::from(sources)),
                    fmt_rate(pps)
                );
                let row = run_one(kind, &bins, &case, a)?;
                eprintln!("   {}", row.summary());
                rows.push(row);
            }
        }
    }
    print_report(&rows, a, started.elapsed(), &load_before);
    Ok(())
}

fn fmt_rate(pps: u64) -> String {
    if pps == 0 {
        "full speed".to_string()
    } else {
        format!("{} pps", thousands(pps))
    }
}

/// One flood against one daemon, in a fresh lab.
fn run_one(kind: Kind, bins: &Bins, case: &Case, a: &SpaArgs) -> Result<SpaRow, String> {
    let lab = FloodLab::new(IDLE_ATTEMPTS + a.attempts)?;
    let dir = std::env::temp_dir().join(format!("knocker-flood-{}", lab.server.name()));
    // the native door's keys: the server's, and alice's, enrolled in its clients file
    let native = match kind {
        Kind::KnockerdSpa => Some(NativeKeys::new()?),
        _ => None,
    };
    let mut daemon = match kind {
        Kind::Knockerd => Daemon::knockerd_fwknop(&lab, &bins.knockerd, dir, &access_conf())?,
        Kind::KnockerdSpa => {
            let keys = native.as_ref().ok_or("no keys")?;
            let args = keys.write_config(&dir)?;
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            Daemon::spawn_knockerd(&lab, &bins.knockerd, dir.clone(), &args)?
        }
        Kind::Fwknopd | Kind::FwknopdTuned => {
            Daemon::fwknopd(&lab, kind, &bins.fwknopd, dir, &access_conf())?
        }
        Kind::Knockd => return Err("knockd has no SPA door".into()),
    };
    let pid = daemon.pid();
    let packet_dir = std::env::temp_dir().join(format!("knocker-flood-{}", lab.net.name()));
    let _packet_dir = RemoveDir::create(packet_dir.clone())?;

    // alice on an idle server; the first success also proves the setup
    let mut idle = Vec::new();
    for k in 0..IDLE_ATTEMPTS {
        stopped()?;
        let src = alice(k);
        let pkt = match &native {
            Some(keys) => keys.seal()?,
            None => alice_packet(&lab, &bins.fwknop, &packet_dir, src)?,
        };
        let sent = send_spa(&lab, src, pkt)?;
        idle.push(wait_open(&daemon, IpAddr::V4(src), sent)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    if idle.iter().all(Option::is_none) {
        return Err(format!(
            "{}: alice's packets on the idle server never opened: the setup is broken; its output:\n{}",
            kind.name(),
            daemon.log()
        ));
    }
    // alice's packets for the flood, made now (well inside the age window of the flood)
    let mut ready = Vec::new();
    for k in 0..a.attempts {
        let src = alice(IDLE_ATTEMPTS + k);
        let pkt = match &native {
            Some(keys) => keys.seal()?,
            None => alice_packet(&lab, &bins.fwknop, &packet_dir, src)?,
        };
        ready.push((src, pkt));
    }
    let rss_start = procfs::tree_status_bytes(pid, "VmRSS").unwrap_or(0);
    let rx_before = procfs::rx_packets(lab.server.name(), lab::IFACE);
    let children_start = procfs::children_cpu_seconds(pid)?;
    // read before the sender starts: its first packets may reach the daemon at once
    let examined_start = daemon.examined();
    let cpu_start = procfs::tree_cpu_seconds(pid)?;
    let flood_start = Instant::now();

    let mut flood = Flood::spawn(
        &lab,
        &bins.exe,
        &SendArgs {
            dst: IpAddr::V4(lab::SERVER4),
            port: SPA_PORT,
            payload: case.payload,
            sources: case.sources,
            packets: case.packets,
            pps: case.pps,
            max_secs: a.max_secs,
            progress_every: (case.packets / 200).clamp(64, 8192),
            to_file: None,
            line_format: crate::sources::LineFormat::Kern,
        },
    )?;
    flood.wait_started()?;

    // alice's packets at even points of the flood, each from a further address
    let mut attempts: Vec<(IpAddr, Instant, bool)> = Vec::new();
    for (k, (src, pkt)) in ready.into_iter().enumerate() {
        let due = case.packets * (k as u64 + 1) / (u64::from(a.attempts) + 1);
        while flood.sent() < due && !flood.finished() {
            stopped()?;
            daemon.check_alive()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        let during = !flood.finished();
        let sent = send_spa(&lab, src, pkt)?;
        attempts.push((IpAddr::V4(src), sent, during));
    }
    let (sent, send_errors, send_secs) = flood.wait_done(a.max_secs + 30.0)?;
    let flood_end = Instant::now();
    let cpu_flood_end = procfs::tree_cpu_seconds(pid)?;

    // after the flood: until the daemon is idle (it may still be working through a backlog)
    // and every attempt has opened or run out of time
    // fwknopd works through its capture ring at 100 packets per pass of its loop, using very
    // little CPU: it is done when it stops logging packets (knockerd logs only some refusals,
    // so its CPU says when it is done)
    let mut busy_after = None;
    let mut cpu_idle = cpu_flood_end;
    let mut last = cpu_flood_end;
    let mut last_examined = daemon.examined();
    loop {
        stopped()?;
        std::thread::sleep(Duration::from_millis(250));
        daemon.check_alive()?;
        let now_cpu = procfs::tree_cpu_seconds(pid)?;
        let now_examined = daemon.examined();
        let draining = kind.is_fwknopd() && now_examined != last_examined;
        last_examined = now_examined;
        if busy_after.is_none() && now_cpu - last < 0.01 && !draining {
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
            .all(|(src, t, _)| daemon.opened_at(*src).is_some() || t.elapsed() > crate::OPEN_LIMIT);
        if (busy_after.is_some() && resolved) || flood_end.elapsed() > SETTLE_LIMIT {
            break;
        }
    }
    if busy_after.is_none() {
        cpu_idle = last;
    }
    let rss_peak = procfs::tree_status_bytes(pid, "VmHWM").unwrap_or(0);
    let children = procfs::children_cpu_seconds(pid)? - children_start;
    let opened_during = attempts
        .iter()
        .filter(|(src, _, _)| daemon.opened_at(*src).is_some())
        .count() as u64;
    let examined = match kind {
        Kind::Knockerd | Kind::KnockerdSpa => flush_refusals(&lab, &daemon)?
            .map(|total| total.saturating_sub(examined_start).saturating_sub(1)),
        // every packet fwknopd examined logs one line, alice's that opened too
        _ => Some(
            daemon
                .examined()
                .saturating_sub(examined_start)
                .saturating_sub(opened_during),
        ),
    };
    let rx_after = procfs::rx_packets(lab.server.name(), lab::IFACE);
    let drops = match kind {
        Kind::Knockerd | Kind::KnockerdSpa => procfs::netlink_drops(lab.server.name()),
        _ => None,
    };
    let during: Vec<Option<Duration>> = attempts
        .iter()
        .map(|(src, t, _)| latency(&daemon, *src, *t))
        .collect();
    let after_flood = attempts.iter().filter(|(_, _, d)| !d).count();
    drop(daemon);
    drop(lab);
    Ok(SpaRow {
        kind,
        payload: case.payload,
        pps_target: case.pps,
        sources: case.sources,
        sent,
        send_errors,
        send_secs,
        delivered: match (rx_before, rx_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        examined,
        cpu_flood: cpu_idle - cpu_start,
        children,
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

/// knockerd logs at most 10 refusals a second and reports the rest in its next logged second.
/// One more garbage packet, a second after the flood, makes it report them; returns its total
/// count of refusals (that packet's included), or None if it never logged that packet.
fn flush_refusals(lab: &FloodLab, daemon: &Daemon) -> Result<Option<u64>, String> {
    std::thread::sleep(Duration::from_millis(1100));
    let mut rng = packets::Rng::new(0xf1u64);
    let payload = packets::garbage_payload(&mut rng);
    send_spa(lab, FLUSH_SOURCE, payload)?;
    let mark = format!("src={FLUSH_SOURCE} refused");
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        stopped()?;
        if daemon.log().contains(&mark) {
            // the count is updated before the line is kept
            return Ok(Some(daemon.examined()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(None)
}

/// alice's `k`-th address (IPv4: fwknop's allow IP is IPv4 only).
fn alice(k: u16) -> Ipv4Addr {
    match lab::alice(Family::V4, k) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("alice(V4) is IPv4"),
    }
}

/// A fresh access request for tcp/2222 for `src`, made by Debian's fwknop client with the door's
/// keys (`-B FILE --test`: saved, not sent).
pub(crate) fn alice_packet(
    lab: &FloodLab,
    fwknop: &Path,
    dir: &Path,
    src: Ipv4Addr,
) -> Result<Vec<u8>, String> {
    let file = dir.join(format!("alice-{src}"));
    let _ = std::fs::remove_file(&file);
    let out = lab
        .net
        .command(&fwknop.display().to_string())
        .args(["-A", &format!("tcp/{}", lab::SERVICE)])
        .args(["-a", &src.to_string()])
        .args(["-D", &lab::SERVER4.to_string()])
        .args(["--key-rijndael", KEY, "--key-hmac", HMAC_KEY, "--use-hmac"])
        .arg("-B")
        .arg(&file)
        .args(["--test", "--no-save-args", "--no-rc-file"])
        .env("HOME", "/nonexistent")
        .output()
        .map_err(|e| format!("run {}: {e}", fwknop.display()))?;
    if !out.status.success() {
        return Err(format!(
            "fwknop could not make alice's packet: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let _ = std::fs::remove_file(&file);
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    if bytes.len() < knocker_wire::fwknop::MIN_PACKET {
        return Err(format!("fwknop saved a {}-byte packet", bytes.len()));
    }
    Ok(bytes)
}

/// Sends one datagram to the SPA port from `src` (an address of the `net` namespace) and
/// returns when it was sent.
fn send_spa(lab: &FloodLab, src: Ipv4Addr, payload: Vec<u8>) -> Result<Instant, String> {
    lab.net
        .enter(move || {
            let s = UdpSocket::bind((src, 0))?;
            s.send_to(&payload, (lab::SERVER4, SPA_PORT))?;
            Ok::<Instant, std::io::Error>(Instant::now())
        })?
        .map_err(|e| format!("sending from {src}: {e}"))
}

/// The native SPA door's keys (`--daemons knockerd-spa`): the server's and alice's, fresh for
/// each run. alice's packets are sealed with them (`knocker_wire::spa::seal`), as the `knocker`
/// client does, each just before it is needed.
struct NativeKeys {
    server: knocker_wire::identity::PrivateKey,
    alice: knocker_wire::identity::PrivateKey,
}

impl NativeKeys {
    fn new() -> Result<NativeKeys, String> {
        use knocker_wire::identity::PrivateKey;
        Ok(NativeKeys {
            server: PrivateKey::generate().map_err(|e| format!("server key: {e}"))?,
            alice: PrivateKey::generate().map_err(|e| format!("alice's key: {e}"))?,
        })
    }

    /// Writes the server key (0600), the clients file (alice) and a knockerd.toml with one door,
    /// `spa` on the SPA port opening the same service as the fwknop runs (the default rate
    /// limit), into `dir`; returns knockerd's arguments.
    fn write_config(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>, String> {
        let path = |name: &str| format!("{:?}", dir.join(name).display().to_string());
        let config = format!(
            "[daemon]\nstate_dir = {}\nserver_key = {}\nclients = {}\n\n\
             [door.spa]\nkind = \"spa\"\nport = {SPA_PORT}\nopen = [\"tcp/{}\"]\nopen_for = \"{ACCESS_TIMEOUT}s\"\n",
            path("state"),
            path("server.key"),
            path("clients.toml"),
            lab::SERVICE,
        );
        latency::write_config_with(dir, &self.server, &self.alice, &config)
    }

    /// One of alice's requests for the service, to be granted to the address it comes from.
    fn seal(&self) -> Result<Vec<u8>, String> {
        use knocker_wire::{spa, Service};
        let req = spa::Request {
            timestamp: latency::unix_now(),
            nonce: latency::random16()?,
            allow: None,
            services: vec![Service::tcp(lab::SERVICE)],
            duration: None,
        };
        spa::seal(
            &req,
            &self.alice,
            &self.server.public_key(),
            &self.server.door_key("spa"),
        )
        .map_err(|e| format!("sealing alice's datagram: {e}"))
    }
}

/// A directory removed when dropped.
pub(crate) struct RemoveDir(pub(crate) PathBuf);

impl RemoveDir {
    pub(crate) fn create(dir: PathBuf) -> Result<RemoveDir, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(RemoveDir(dir))
    }
}

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct SpaRow {
    kind: Kind,
    payload: Payload,
    pps_target: u64,
    sources: u32,
    sent: u64,
    send_errors: u64,
    send_secs: f64,
    delivered: Option<u64>,
    /// Flood packets the daemon examined and refused (from its log).
    examined: Option<u64>,
    /// Daemon CPU seconds from the flood's start until it went idle after it.
    cpu_flood: f64,
    /// CPU seconds of the daemon's children over the same time (fwknopd's iptables).
    children: f64,
    busy_during: f64,
    busy_after: Option<Duration>,
    drops: Option<u64>,
    rss_start: u64,
    rss_peak: u64,
    idle: Vec<Option<Duration>>,
    during: Vec<Option<Duration>>,
    after_flood: usize,
}

impl SpaRow {
    fn pps(&self) -> f64 {
        crate::rate(self.sent, self.send_secs)
    }

    fn cpu_per_million(&self) -> f64 {
        crate::per_million(self.cpu_flood, self.sent)
    }

    /// CPU per datagram the daemon really handled: its cost per packet, also when it lost most.
    fn cpu_per_million_examined(&self) -> String {
        match self.examined {
            Some(n) if n > 0 => format!("{:.2}", self.cpu_flood * 1e6 / n as f64),
            _ => "?".to_string(),
        }
    }

    fn examined_share(&self) -> String {
        match self.examined {
            Some(n) if self.sent > 0 => format!(
                "{} ({:.0}%)",
                thousands(n),
                n as f64 * 100.0 / self.sent as f64
            ),
            Some(n) => thousands(n),
            None => "?".to_string(),
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} datagrams in {:.1} s ({} pps); examined {}; daemon CPU {:.2} s ({:.2} s per M sent, {} per M examined, {:.0}% of a core during the flood); peak RSS {}; alice opened {}/{} during the flood, median {}",
            thousands(self.sent),
            self.send_secs,
            thousands(self.pps() as u64),
            self.examined_share(),
            self.cpu_flood,
            self.cpu_per_million(),
            self.cpu_per_million_examined(),
            self.busy_during * 100.0,
            mib(self.rss_peak),
            self.during.iter().flatten().count(),
            self.during.len(),
            fmt_median(&self.during),
        )
    }
}

/// The measures of the SPA flood table, in the order of [`SpaRow::cells`].
const MEASURES: [&str; 12] = [
    "datagrams sent (pps)",
    "examined by the daemon",
    "CPU us per datagram sent (CPU s per M)",
    "CPU us per datagram examined",
    "daemon CPU",
    "core busy during flood",
    "busy after flood",
    "NFLOG overruns",
    "RSS start -> peak",
    "alice idle: median open",
    "alice during flood: opened",
    "alice during flood: median open",
];

impl SpaRow {
    /// Its cells in the side-by-side table, as [`MEASURES`] lists them.
    fn cells(&self) -> Vec<crate::table::Cell> {
        use crate::table::Cell;
        let examined = match self.examined {
            Some(n) if n > 0 => Cell::num(
                self.cpu_per_million_examined(),
                self.cpu_flood * 1e6 / n as f64,
            ),
            _ => Cell::text(self.cpu_per_million_examined()),
        };
        vec![
            Cell::text(format!(
                "{} ({})",
                thousands(self.sent),
                thousands(self.pps() as u64)
            )),
            Cell::text(self.examined_share()),
            Cell::num(
                format!("{:.2}", self.cpu_per_million()),
                self.cpu_per_million(),
            ),
            examined,
            Cell::num(format!("{:.2} s", self.cpu_flood), self.cpu_flood),
            Cell::text(format!("{:.0}%", self.busy_during * 100.0)),
            Cell::text(self.busy_after.map_or_else(
                || format!(">= {} s", SETTLE_LIMIT.as_secs()),
                |d| format!("{:.1} s", d.as_secs_f64()),
            )),
            Cell::text(self.drops.map_or_else(|| "n/a".to_string(), thousands)),
            Cell::num(
                format!("{} -> {}", mib(self.rss_start), mib(self.rss_peak)),
                self.rss_peak as f64,
            ),
            crate::table::median_ms(&self.idle),
            crate::table::opened(&self.during, self.after_flood, "sent"),
            crate::table::median_ms(&self.during),
        ]
    }
}

fn print_report(rows: &[SpaRow], a: &SpaArgs, took: Duration, load_before: &str) {
    println!(
        "SPA flood: UDP datagrams to port {SPA_PORT} from spoofed IPv4 sources; both daemons run the same access.conf (SOURCE ANY, OPEN_PORTS tcp/{}, KEY, HMAC_KEY, FW_ACCESS_TIMEOUT {ACCESS_TIMEOUT}); alice sends {} packets made by Debian's fwknop client during each flood (5 s limit). Load average at the start: {load_before}; at the end: {}.\n",
        lab::SERVICE,
        a.attempts,
        crate::table::load_average(),
    );
    let runs: Vec<crate::table::Run> = rows
        .iter()
        .map(|r| crate::table::Run {
            case: format!("{} at {}", r.payload.name(), fmt_rate(r.pps_target)),
            daemon: r.kind.name().to_string(),
            cells: r.cells(),
        })
        .collect();
    print!("{}", crate::table::side_by_side(&MEASURES, &runs));
    println!("\nINCUMBENT / knockerd: the incumbent's figure over knockerd's (above 1: knockerd needs that many times less).");
    println!();
    println!("Examined: flood datagrams the daemon checked and refused, from its log (fwknopd: its \"received with access source match\" lines; knockerd: its refusals, logged or counted). Fewer than were sent: the rest was lost before the daemon (fwknopd's pcap ring, knockerd's NFLOG socket: overruns). n/a: fwknopd's pcap losses are counted only inside fwknopd.\n");
    println!("Each of alice's packets, sent -> door open (\"-\": not within 5 s):\n");
    for r in rows {
        let each = |v: &[Option<Duration>]| {
            v.iter()
                .map(|d| d.map_or_else(|| "-".to_string(), fmt_ms))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "- {} at {} / {} ({} sources): idle [{}], during the flood [{}]; sender: {} send errors; children's CPU {:.2} s",
            r.payload.name(),
            fmt_rate(r.pps_target),
            r.kind.name(),
            thousands(u64::from(r.sources)),
            each(&r.idle),
            each(&r.during),
            thousands(r.send_errors),
            r.children,
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
    fn both_daemons_get_the_same_access_conf() {
        let a = access_conf();
        assert!(a.starts_with("SOURCE ANY\n"));
        assert!(a.contains("OPEN_PORTS tcp/2222\n"));
        assert!(a.contains(&format!("KEY {KEY}\n")));
        assert!(a.contains(&format!("HMAC_KEY {HMAC_KEY}\n")));
        assert!(a.contains("FW_ACCESS_TIMEOUT 30\n"));
        // fwknop's limits: an encryption key of at most 32 bytes, keys that differ
        assert!(KEY.len() <= knocker_wire::fwknop::MAX_ENC_KEY);
        assert_ne!(KEY, HMAC_KEY);
        assert_ne!(KEY, packets::WRONG_KEY);
        assert_ne!(HMAC_KEY, packets::WRONG_HMAC_KEY);
    }

    #[test]
    fn alice_and_the_flush_never_look_like_the_flood() {
        for k in 0..20 {
            let a = alice(k);
            assert_eq!(&a.octets()[..3], &[10, 200, 1]);
            assert_ne!(a, FLUSH_SOURCE);
        }
        assert_eq!(&FLUSH_SOURCE.octets()[..3], &[10, 200, 1]);
    }
}
