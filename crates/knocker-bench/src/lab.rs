//! The bench's lab and the daemons under test (knockd and knockerd with a knock sequence;
//! fwknopd and knockerd with an fwknop access.conf).
//!
//! knockd and fwknopd capture on one interface, so the lab has one link: the server namespace's `eth0`
//! faces a `net` namespace that stands for the internet. alice lives there (several addresses,
//! one per knock attempt, so each attempt's opening is told apart by its source), and so does the
//! flood, whose sources are spoofed. Both daemons therefore see exactly the same packets on the
//! same interface. Namespaces go away when the lab drops, also on error or panic.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use knocker_lab::log::{knocks_read_in_all, READ_IN_ALL};
pub use knocker_lab::which;
use knocker_lab::{link, Log, Netns};
use knocker_wire::Service;

use crate::packets::Family;

pub const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 1);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 1);
/// The server's interface, where every packet arrives.
pub const IFACE: &str = "eth0";
/// The door: three TCP knocks, not monotonic (knockerd refuses sweepable sequences).
pub const SEQUENCE: [u16; 3] = [7000, 9000, 8000];
/// The service the door opens.
pub const SERVICE: u16 = 2222;
/// Seconds a partial knock is kept (knockd's Seq_Timeout, knockerd's window).
pub const SEQ_TIMEOUT: u32 = 10;

pub fn server(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(SERVER4),
        Family::V6 => IpAddr::V6(SERVER6),
    }
}

/// alice's `k`-th address: 10.200.1.(10+k) or fd00:200:1::1:k. Each knock attempt has its own.
pub fn alice(family: Family, k: u16) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 200, 1, 10 + k as u8)),
        Family::V6 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 1, k)),
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

pub struct FloodLab {
    // Field order is drop order: the client side first, then the server.
    pub net: Netns,
    pub server: Netns,
}

impl FloodLab {
    /// A server and the `net` namespace in front of it, with `alice_addrs` addresses for alice.
    /// Names are unique per process and call: `kf<pid>-<n>-srv`, `kf<pid>-<n>-net`.
    pub fn new(alice_addrs: u16) -> Result<FloodLab, String> {
        assert!(alice_addrs <= 200);
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let base = format!("kf{}-{n}", std::process::id());
        let server = Netns::create(&format!("{base}-srv"))?;
        let net = Netns::create(&format!("{base}-net"))?;
        let mut client: Vec<String> = vec!["10.200.1.2/24".into(), "fd00:200:1::2/64".into()];
        for k in 0..alice_addrs {
            client.push(format!("{}/24", alice(Family::V4, k)));
            client.push(format!("{}/64", alice(Family::V6, k)));
        }
        let client: Vec<&str> = client.iter().map(String::as_str).collect();
        link(
            &server,
            IFACE,
            &["10.200.1.1/24", "fd00:200:1::1/64"],
            &net,
            "eth0",
            &client,
        )?;
        // The spoofed sources are routed back the way they came, as on the internet, so that
        // reverse-path filtering (if any) lets them through.
        for args in [
            &["route", "add", "10.200.0.0/16", "via", "10.200.1.2"][..],
            &[
                "-6",
                "route",
                "add",
                "fd00:200::/48",
                "via",
                "fd00:200:1::2",
            ][..],
        ] {
            server.ip(args)?;
        }
        Ok(FloodLab { net, server })
    }
}

/// alice knocks the sequence from `src` the way knock(1) does (one SYN per port, from a
/// non-blocking connect closed at once) and returns when her last knock packet was sent. Must
/// run inside the `net` namespace.
pub fn knock(src: IpAddr, dst: IpAddr) -> std::io::Result<Instant> {
    for port in SEQUENCE {
        knocker_lab::send_knock_from(src, dst, Service::tcp(port))?;
    }
    Ok(Instant::now())
}

/// When each source address was first seen opened by the daemon.
pub type Opened = Arc<Mutex<HashMap<IpAddr, Instant>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Knockd,
    Knockerd,
    /// knockerd with knocker's own SPA door (`kind = "spa"`) on the SPA port, in the SPA flood.
    KnockerdSpa,
    /// Debian's fwknopd as it ships.
    Fwknopd,
    /// Debian's fwknopd with [`TUNED_DISPATCH_COUNT`]: each pass of its loop takes every packet
    /// waiting in the capture ring instead of at most 100 (the compiled default; Debian's
    /// fwknopd.conf says the default is 0, which fwknopd 2.6.10 refuses), still sleeping 100 ms
    /// between passes.
    FwknopdTuned,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Knockd => "knockd 0.8",
            Kind::Knockerd => "knockerd",
            Kind::KnockerdSpa => "knockerd, native spa door",
            Kind::Fwknopd => "fwknopd 2.6.10",
            Kind::FwknopdTuned => "fwknopd, PCAP_DISPATCH_COUNT 1000000",
        }
    }

    pub fn is_fwknopd(self) -> bool {
        matches!(self, Kind::Fwknopd | Kind::FwknopdTuned)
    }

    pub fn is_knockerd(self) -> bool {
        matches!(self, Kind::Knockerd | Kind::KnockerdSpa)
    }
}

/// PCAP_DISPATCH_COUNT of [`Kind::FwknopdTuned`]: more than its ring can hold.
pub const TUNED_DISPATCH_COUNT: u32 = 1_000_000;

/// The SPA port (fwknopd's default).
pub const SPA_PORT: u16 = knocker_wire::fwknop::DEFAULT_PORT;

/// A daemon running in the lab's server namespace; killed (by its PID) when dropped, with its
/// working directory removed.
pub struct Daemon {
    pub kind: Kind,
    child: Child,
    pub opened: Opened,
    /// SPA packets the daemon has examined and refused, from its log: knockerd's refusals
    /// (logged, and counted in its "N more refusals were not logged" lines), or fwknopd's "SPA
    /// Packet from IP: ... received" lines (one per packet that passed its cheap checks).
    examined: Arc<AtomicU64>,
    /// The knocks knockerd's packet worker says it read from its source, in all (logged when it
    /// stops); `u64::MAX` until then.
    knocks_read: Arc<AtomicU64>,
    log: Log,
    stop: Arc<AtomicBool>,
    dir: PathBuf,
}

impl Daemon {
    pub fn examined(&self) -> u64 {
        self.examined.load(Ordering::Relaxed)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.text()
    }

    pub fn opened_at(&self, addr: IpAddr) -> Option<Instant> {
        self.opened.lock().ok()?.get(&addr).copied()
    }

    /// Stops knockerd (SIGTERM, as dropping it does) and returns how many knocks its packet
    /// worker read from its source in all, as it logs when it stops (`None`: it said nothing).
    pub fn stop_knockerd(&mut self) -> Option<u64> {
        knocker_lab::child::stop(&mut self.child, Duration::from_secs(3));
        let _ = self
            .log
            .wait_for(READ_IN_ALL, Duration::from_secs(2), Some(&mut self.child));
        Some(self.knocks_read.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }

    /// Exits early if the daemon died.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "{} exited ({st}); its output:\n{}",
                self.kind.name(),
                self.log()
            )),
            Err(e) => Err(format!("waiting for {}: {e}", self.kind.name())),
        }
    }

    /// knockerd from `binary` with `config` (the door, its ledger in a directory of its own, and
    /// the default bound on tracked partial knocks). Ready once it logs `ready:`.
    pub fn knockerd(
        lab: &FloodLab,
        binary: &Path,
        dir: PathBuf,
        config: &str,
    ) -> Result<Daemon, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("knockerd.toml");
        std::fs::write(&file, config).map_err(|e| format!("{}: {e}", file.display()))?;
        Daemon::spawn_knockerd(lab, binary, dir, &["--config".as_ref(), file.as_os_str()])
    }

    /// knockerd from `binary` running the fwknop `access.conf` as it is (`--fwknop-access`),
    /// its ledger in a directory of its own.
    pub fn knockerd_fwknop(
        lab: &FloodLab,
        binary: &Path,
        dir: PathBuf,
        access: &str,
    ) -> Result<Daemon, String> {
        let access = write_access_conf(&dir, access)?;
        let state = dir.join("state");
        Daemon::spawn_knockerd(
            lab,
            binary,
            dir,
            &[
                "--fwknop-access".as_ref(),
                access.as_os_str(),
                "--state-dir".as_ref(),
                state.as_os_str(),
            ],
        )
    }

    pub fn spawn_knockerd(
        lab: &FloodLab,
        binary: &Path,
        dir: PathBuf,
        args: &[&std::ffi::OsStr],
    ) -> Result<Daemon, String> {
        let child = lab
            .server
            .command(&binary.display().to_string())
            .args(args)
            // without it knockerd leaves the timestamps to the journal
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let mut d = Daemon::new(Kind::Knockerd, child, dir);
        let (opened, examined, read) =
            (d.opened.clone(), d.examined.clone(), d.knocks_read.clone());
        d.log.capture(&mut d.child, move |line| {
            if let Some(n) = knocks_read_in_all(line) {
                read.store(n, Ordering::Relaxed);
            }
            // The grant line is logged once the kernel has acknowledged the set update. Its
            // own timestamp says when, so a busy machine delaying this thread does not count
            // against knockerd.
            if line.contains(" grant ") || line.contains(" refresh ") {
                if let Some(addr) = grant_source(line) {
                    let now = Instant::now();
                    let lag = line
                        .split_whitespace()
                        .next()
                        .and_then(parse_rfc3339_utc)
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    if let Ok(mut o) = opened.lock() {
                        o.entry(addr).or_insert(now.checked_sub(lag).unwrap_or(now));
                    }
                }
            }
            let refused = knockerd_refusals(line);
            if refused > 0 {
                examined.fetch_add(refused, Ordering::Relaxed);
            }
        });
        d.log
            .wait_for("ready:", Duration::from_secs(10), Some(&mut d.child))
            .map_err(|e| format!("knockerd {e}"))?;
        Ok(d)
    }

    /// Debian's fwknopd (`kind`: as it ships, or tuned) on the server's
    /// interface with the same access.conf and its iptables backend, run as the fwknop e2e test
    /// runs it (`-f`: its log goes to stderr, not syslog).
    /// The SPA port is dropped by an iptables rule first, as a host firewall would: otherwise
    /// the kernel would answer each flood datagram with an ICMP port unreachable, which
    /// knockerd's table never does. fwknopd captures before the firewall, so it still sees them.
    pub fn fwknopd(
        lab: &FloodLab,
        kind: Kind,
        binary: &Path,
        dir: PathBuf,
        access: &str,
    ) -> Result<Daemon, String> {
        let access = write_access_conf(&dir, access)?;
        let iptables = which("iptables").ok_or("iptables not found")?;
        lab.server.exec(
            &iptables.display().to_string(),
            &[
                "-A",
                "INPUT",
                "-p",
                "udp",
                "--dport",
                &SPA_PORT.to_string(),
                "-j",
                "DROP",
            ],
        )?;
        let conf = dir.join("fwknopd.conf");
        write_private(&conf, &fwknopd_config(kind))?;
        let child = lab
            .server
            .command(&binary.display().to_string())
            .args(knocker_lab::fwknopd::args(&conf, &access, &dir)?)
            .args(["-i", IFACE])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let mut d = Daemon::new(kind, child, dir);
        let (opened, examined) = (d.opened.clone(), d.examined.clone());
        d.log.capture(&mut d.child, move |line| {
            // fwknopd writes no timestamps: the door is open when the line is read (fwknopd
            // flushes each line, once its iptables command has returned)
            if let Some(addr) = fwknopd_grant_source(line) {
                let now = Instant::now();
                if let Ok(mut o) = opened.lock() {
                    o.entry(addr).or_insert(now);
                }
            }
            if line.contains(FWKNOPD_RECEIVED) {
                examined.fetch_add(1, Ordering::Relaxed);
            }
        });
        d.log
            .wait_for(
                "Starting fwknopd",
                Duration::from_secs(10),
                Some(&mut d.child),
            )
            .map_err(|e| format!("fwknopd {e}"))?;
        // pcap is open once it logs its main loop; the first idle knock proves it works
        std::thread::sleep(Duration::from_millis(300));
        d.check_alive()?;
        Ok(d)
    }

    /// Debian's knockd on the server's interface, with the same door. Its start command adds the
    /// same kind of set element knockerd adds (to a table shaped like knockerd's, loaded first),
    /// then appends the address to a file that the bench polls every millisecond.
    pub fn knockd(lab: &FloodLab, binary: &Path, dir: PathBuf) -> Result<Daemon, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let nft = which("nft").ok_or("nft not found")?;
        lab.server
            .nft(&knockd_table())
            .map_err(|e| format!("loading the knockd bench table: {e}"))?;
        let marker = dir.join("opened");
        std::fs::write(&marker, "").map_err(|e| format!("{}: {e}", marker.display()))?;
        let mut d = Daemon::knockd_conf(lab, binary, dir, &knockd_config(&nft, &marker))?;
        let (opened, stop) = (d.opened.clone(), d.stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&marker) {
                    if text.len() > seen {
                        let now = Instant::now();
                        // only whole lines: the shell may be between write calls
                        let upto = text.rfind('\n').map_or(0, |i| i + 1);
                        if upto > seen {
                            if let Ok(mut o) = opened.lock() {
                                for l in text[seen..upto].lines() {
                                    if let Ok(a) = l.trim().parse::<IpAddr>() {
                                        o.entry(a).or_insert(now);
                                    }
                                }
                            }
                            seen = upto;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // knockd says nothing when it is ready (without -v); pcap opens within milliseconds.
        // The bench's first idle knock proves it works.
        std::thread::sleep(Duration::from_millis(500));
        d.check_alive()?;
        Ok(d)
    }

    /// Debian's knockd on the server's interface with the knockd.conf `text` (written into
    /// `dir`), its output captured. Not waited on: knockd says nothing when it is ready.
    pub fn knockd_conf(
        lab: &FloodLab,
        binary: &Path,
        dir: PathBuf,
        text: &str,
    ) -> Result<Daemon, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("knockd.conf");
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let child = lab
            .server
            .command(&binary.display().to_string())
            .args(["-i", IFACE, "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let mut d = Daemon::new(Kind::Knockd, child, dir);
        d.log.capture(&mut d.child, |_| {});
        Ok(d)
    }

    fn new(kind: Kind, child: Child, dir: PathBuf) -> Daemon {
        Daemon {
            kind,
            child,
            opened: Arc::new(Mutex::new(HashMap::new())),
            examined: Arc::new(AtomicU64::new(0)),
            knocks_read: Arc::new(AtomicU64::new(u64::MAX)),
            // up to 1 MiB of log: a flood can make fwknopd write gigabytes
            log: Log::bounded(1 << 20),
            stop: Arc::new(AtomicBool::new(false)),
            dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // knockd and knockerd both exit cleanly on SIGTERM
        knocker_lab::child::stop(&mut self.child, Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes an access.conf (mode 0600, as both daemons want it) into `dir`.
fn write_access_conf(dir: &Path, text: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("access.conf");
    write_private(&path, text)?;
    Ok(path)
}

/// Writes a file with mode 0600 (fwknopd warns about any other).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// fwknopd.conf for the bench: Debian's defaults (the file's settings all commented out) but
/// for the interface, and no forwarding (the e2e test's two lines); for
/// [`Kind::FwknopdTuned`], also PCAP_DISPATCH_COUNT.
pub fn fwknopd_config(kind: Kind) -> String {
    let mut c = format!("PCAP_INTF {IFACE};\nENABLE_IPT_FORWARDING N;\n");
    if kind == Kind::FwknopdTuned {
        c.push_str(&format!("PCAP_DISPATCH_COUNT {TUNED_DISPATCH_COUNT};\n"));
    }
    c
}

/// What fwknopd logs for every packet that passed its cheap checks (length, prefix, base64)
/// and matched a stanza's SOURCE, before the stanza's keys are tried.
const FWKNOPD_RECEIVED: &str = "received with access source match";

/// The address in fwknopd's `Added access rule to FWKNOP_INPUT for ADDR, ...` line.
pub fn fwknopd_grant_source(line: &str) -> Option<IpAddr> {
    const MARK: &str = "Added access rule to FWKNOP_INPUT for ";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    rest.split(|c: char| c == ',' || c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// How many refused requests one line of knockerd's log stands for: 1 for a `refused:` line,
/// N for its `N more refusals were not logged` line (refusals are logged at most 10 a second).
pub fn knockerd_refusals(line: &str) -> u64 {
    if let Some(i) = line.find(" more refusals were not logged") {
        return line[..i]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
    }
    u64::from(line.contains(" refused: ") && !line.contains(" grant refused: "))
}

/// The address in knockerd's `door=... src=ADDR grant ...` line.
pub fn grant_source(line: &str) -> Option<IpAddr> {
    let rest = &line[line.find("src=")? + 4..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A timestamp as tracing writes it, `2026-11-21T10:00:00.123456Z` (UTC).
pub fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<u64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's days_from_civil)
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + min * 60 + sec;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let n: u64 = digits.parse().ok()?;
        n * 10u64.pow(9 - digits.len() as u32)
    };
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// The bench's door for knockerd (`tcp_flags`: asks for knockd's `syn,!ack`, as knockd's does).
pub fn knockerd_config(state_dir: &Path, tcp_flags: bool) -> String {
    let seq: Vec<String> = SEQUENCE.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[daemon]\nnflog_group = 4100\nstate_dir = {:?}\nmax_tracked = 100000\n\n\
         [door.bench]\nsequence = [{}]\n{}window = \"{SEQ_TIMEOUT}s\"\n\
         open = [\"tcp/{SERVICE}\"]\nopen_for = \"60s\"\n",
        state_dir.display().to_string(),
        seq.join(", "),
        if tcp_flags {
            "tcp_flags = \"syn,!ack\"\n"
        } else {
            ""
        }
    )
}

/// A table shaped like knockerd's `inet knocker` (same hook, priority, conntrack rule, sets and
/// drops), minus the NFLOG logging: the kernel does the same work for both daemons, except
/// handing packets to knockerd. knockd captures with pcap before any of it.
pub fn knockd_table() -> String {
    let knock: Vec<String> = SEQUENCE.iter().map(|p| format!("tcp . {p}")).collect();
    format!(
        "table inet kbench {{\n\
         \x20 set allow4 {{ type ipv4_addr . inet_proto . inet_service; flags timeout; }}\n\
         \x20 set allow6 {{ type ipv6_addr . inet_proto . inet_service; flags timeout; }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority -10; policy accept;\n\
         \x20   iif \"lo\" accept\n\
         \x20   ct state established,related accept\n\
         \x20   ip saddr . meta l4proto . th dport @allow4 accept\n\
         \x20   ip6 saddr . meta l4proto . th dport @allow6 accept\n\
         \x20   meta l4proto . th dport {{ {} }} drop\n\
         \x20   meta l4proto . th dport {{ tcp . {SERVICE} }} drop\n\
         \x20 }}\n}}\n",
        knock.join(", ")
    )
}

pub fn knockd_config(nft: &Path, marker: &Path) -> String {
    let seq: Vec<String> = SEQUENCE.iter().map(u16::to_string).collect();
    let cmd = |set: &str| {
        format!(
            "{} add element inet kbench {set} {{ %IP% . tcp . {SERVICE} timeout 60s }} && echo %IP% >> {}",
            nft.display(),
            marker.display()
        )
    };
    format!(
        "[options]\n    Interface = {IFACE}\n\n[bench]\n    Sequence = {}\n    Seq_Timeout = {SEQ_TIMEOUT}\n    \
         TCPFlags = syn,!ack\n    Start_Command = {}\n    Start_Command_6 = {}\n",
        seq.join(","),
        cmd("allow4"),
        cmd("allow6")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_lines_name_the_source() {
        let l = "2026-11-21T10:00:00.000001Z  INFO door=bench src=fd00:200:1::1:3 grant tcp/2222 for 60s";
        assert_eq!(
            grant_source(l),
            Some("fd00:200:1::1:3".parse().expect("addr"))
        );
        assert_eq!(grant_source("ready: table loaded"), None);
    }

    #[test]
    fn fwknopd_grants_and_knockerd_refusals_are_read_from_the_logs() {
        assert_eq!(
            fwknopd_grant_source(
                "Added access rule to FWKNOP_INPUT for 10.200.1.13 -> 0.0.0.0/0 tcp/2222, expires at 1795255230"
            ),
            Some("10.200.1.13".parse().expect("addr"))
        );
        assert_eq!(
            fwknopd_grant_source("Added access rule to FWKNOP_INPUT for 10.200.1.4, tcp/2222"),
            Some("10.200.1.4".parse().expect("addr"))
        );
        assert_eq!(
            fwknopd_grant_source(
                "(stanza #1) SPA Packet from IP: 10.200.1.3 received with access source match"
            ),
            None
        );
        let w = "2026-11-21T10:00:01.000001Z  WARN";
        assert_eq!(
            knockerd_refusals(&format!(
                "{w} door=fwknop-1 src=10.200.100.7 refused: not an authentic request for this door"
            )),
            1
        );
        assert_eq!(
            knockerd_refusals(&format!(
                "{w} 12345 more refusals were not logged (more than 10 a second)"
            )),
            12345
        );
        assert_eq!(
            knockerd_refusals(&format!(
                "{w} door=fwknop-1 src=10.200.1.3 grant refused: the firewall refused: x"
            )),
            0
        );
        assert_eq!(knockerd_refusals("ready: table loaded"), 0);
        assert!(fwknopd_config(Kind::Fwknopd).contains("PCAP_INTF eth0;"));
        assert!(!fwknopd_config(Kind::Fwknopd).contains("PCAP_DISPATCH_COUNT"));
        assert!(fwknopd_config(Kind::FwknopdTuned).contains("PCAP_DISPATCH_COUNT 1000000;"));
    }

    #[test]
    fn log_timestamps_are_read_as_utc() {
        let t = parse_rfc3339_utc("2026-11-21T10:00:01.250000Z").expect("parses");
        let d = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970");
        assert_eq!(d, Duration::from_millis(1_795_255_201_250));
        let t = parse_rfc3339_utc("1970-01-01T00:00:00Z").expect("parses");
        assert_eq!(t, SystemTime::UNIX_EPOCH);
        let t = parse_rfc3339_utc("2000-03-01T00:00:00.000000001Z").expect("parses");
        let d = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970");
        assert_eq!(d, Duration::new(951_868_800, 1));
        assert_eq!(parse_rfc3339_utc("ready:"), None);
        assert_eq!(parse_rfc3339_utc("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn alice_addresses_are_distinct_and_in_the_lab() {
        let mut seen = std::collections::HashSet::new();
        for k in 0..20 {
            for f in [Family::V4, Family::V6] {
                let a = alice(f, k);
                assert!(seen.insert(a));
                assert!(
                    a.to_string().starts_with("10.200.1.")
                        || a.to_string().starts_with("fd00:200:1::")
                );
            }
        }
    }

    #[test]
    fn both_daemons_get_the_same_door() {
        let k = knockerd_config(Path::new("/tmp/x"), true);
        assert!(k.contains("sequence = [\"7000\", \"9000\", \"8000\"]"));
        assert!(k.contains("window = \"10s\""));
        let d = knockd_config(Path::new("/usr/sbin/nft"), Path::new("/tmp/m"));
        assert!(d.contains("Sequence = 7000,9000,8000"));
        assert!(d.contains("Seq_Timeout = 10"));
        assert!(d.contains("TCPFlags = syn,!ack"));
        assert!(d.contains("allow6 { %IP% . tcp . 2222 timeout 60s } && echo %IP% >> /tmp/m"));
        assert!(knockd_table().contains("{ tcp . 7000, tcp . 9000, tcp . 8000 } drop"));
    }
}
