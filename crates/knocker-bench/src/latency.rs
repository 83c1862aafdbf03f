//! `knocker-flood latency`: how long knockerd takes from a knock to an open door, for each kind
//! of door it runs (BENCHMARKS.md, "Knock-to-open latency"), on an idle server.
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

use crate::lab::{self, Daemon, FloodLab};
use crate::packets::Family;
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
    /// Measured samples per kind of door (after 3 unmeasured ones each).
    #[arg(long, default_value_t = 200)]
    samples: u32,
    /// Which kinds of door: sequence, spa, syn.
    #[arg(long, value_delimiter = ',', default_value = "sequence,spa,syn")]
    doors: Vec<String>,
    /// Pause between two samples, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
    /// Hard time limit of the measurement, in seconds (it stops early and reports what it has).
    #[arg(long, default_value_t = 90.0)]
    max_secs: f64,
    /// knockerd binary (default: next to this one).
    #[arg(long)]
    knockerd: Option<PathBuf>,
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
        match lab::alice(Family::V4, k) {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!("alice(V4) is IPv4"),
        }
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

pub fn bench(a: &LatencyArgs) -> Result<(), String> {
    knocker_lab::preflight()?;
    if !(1..=10_000).contains(&a.samples) {
        return Err("--samples must be 1 to 10000".into());
    }
    if a.pause_ms > 1000 {
        return Err("--pause-ms must be at most 1000".into());
    }
    let mut doors = Vec::new();
    for d in &a.doors {
        let door = match d.as_str() {
            "sequence" => Door::Sequence,
            "spa" => Door::Spa,
            "syn" => Door::Syn,
            other => return Err(format!("unknown door {other:?} (sequence, spa, syn)")),
        };
        if !doors.contains(&door) {
            doors.push(door);
        }
    }
    if doors.is_empty() {
        return Err("--doors names no door".into());
    }
    let knockerd_bin = match &a.knockerd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("own path: {e}"))?
            .parent()
            .map(|d| d.join("knockerd"))
            .ok_or("cannot locate knockerd")?,
    };
    if !knockerd_bin.is_file() {
        return Err(format!("knockerd not found at {}", knockerd_bin.display()));
    }
    let load_before = loadavg();
    let started = Instant::now();

    let lab = FloodLab::new(3)?;
    let dir = std::env::temp_dir().join(format!("knocker-latency-{}", lab.server.name()));
    let server = PrivateKey::generate().map_err(|e| format!("server key: {e}"))?;
    let alice = PrivateKey::generate().map_err(|e| format!("alice's key: {e}"))?;
    let syn_key = alice
        .syn_key(&server.public_key())
        .map_err(|e| format!("alice's SYN key: {e}"))?;
    let args = write_config(&dir, &server, &alice)?;
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let mut daemon = Daemon::spawn_knockerd(&lab, &knockerd_bin, dir, &args)?;
    let watch = Watch::start(&lab.server)?;
    let mut keys = Keys {
        server,
        alice,
        syn: syn_key,
        syn_used: HashSet::new(),
    };

    for &door in &doors {
        for k in 0..WARMUP {
            stopped()?;
            let got = sample(&lab, &watch, &mut keys, door)?;
            if got.is_none() && k == 0 {
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
        "== {} samples of each of {} kinds of door, interleaved",
        a.samples,
        doors.len()
    );
    let measure_start = Instant::now();
    let limit = Duration::from_secs_f64(a.max_secs.clamp(1.0, 3600.0));
    let mut results: Vec<Vec<Option<Duration>>> = vec![Vec::new(); doors.len()];
    let mut cut_short = false;
    'samples: for i in 0..a.samples {
        for (d, &door) in doors.iter().enumerate() {
            stopped()?;
            if measure_start.elapsed() > limit {
                cut_short = true;
                break 'samples;
            }
            results[d].push(sample(&lab, &watch, &mut keys, door)?);
            std::thread::sleep(Duration::from_millis(a.pause_ms));
        }
        if (i + 1) % 50 == 0 {
            daemon.check_alive()?;
            eprintln!("   {} samples each", i + 1);
        }
    }
    daemon.check_alive()?;
    let took = measure_start.elapsed();
    let errors = watch.errors();
    drop(watch);
    drop(daemon);
    drop(lab);
    print_report(
        &doors,
        &results,
        a,
        took,
        cut_short,
        errors,
        load_before,
        loadavg(),
    );
    eprintln!("whole run: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Writes the server key (0600), the clients file (alice) and knockerd.toml into `dir`, and
/// returns knockerd's arguments.
fn write_config(
    dir: &Path,
    server: &PrivateKey,
    alice: &PrivateKey,
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
    std::fs::write(&config, knockerd_config(dir)).map_err(|e| err(&config, e))?;
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
fn sample(
    lab: &FloodLab,
    watch: &Watch,
    keys: &mut Keys,
    door: Door,
) -> Result<Option<Duration>, String> {
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
    watch.wait_for(IpAddr::V4(src), sent, SAMPLE_LIMIT)
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

#[allow(clippy::too_many_arguments)]
fn print_report(
    doors: &[Door],
    results: &[Vec<Option<Duration>>],
    a: &LatencyArgs,
    took: Duration,
    cut_short: bool,
    errors: Vec<String>,
    load_before: String,
    load_after: String,
) {
    println!(
        "Knock-to-open latency, idle server: from just before alice's last packet leaves to the NFT_MSG_NEWSETELEM notification of her grant in the server's namespace; {} samples per door asked, interleaved, {} ms apart{}.\n",
        a.samples,
        a.pause_ms,
        if cut_short { " (cut short by --max-secs)" } else { "" }
    );
    println!("| door | samples | opened | min | median | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (door, r) in doors.iter().zip(results) {
        let mut ok: Vec<Duration> = r.iter().flatten().copied().collect();
        ok.sort();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            door.name(),
            r.len(),
            ok.len(),
            fmt_us(ok.first().copied()),
            fmt_us(quantile(&ok, 0.5)),
            fmt_us(quantile(&ok, 0.99)),
            fmt_us(ok.last().copied()),
        );
    }
    println!(
        "\nMeasured in {:.1} s; load average {load_before} before, {load_after} after.",
        took.as_secs_f64()
    );
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
