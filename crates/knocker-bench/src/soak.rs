//! `knocker-flood soak`: knockerd under faults (SECURITY.md, "Soak").
//!
//! One lab (knockerd's own: a server, alice and mallory, each in a namespace), one knockerd with
//! four kinds of door, each opening its own protected service and running a start and a stop
//! command: a static sequence, one-time sequences (a file whose used lines get `#`), a rotating
//! HOTP sequence and knocker's own SPA datagram. alice knocks from many addresses of hers
//! (IPv4 and IPv6), so that grants overlap, until `--grants` knocks have opened. At random
//! points between knocks the soak kills knockerd's parent or its packet worker with SIGKILL
//! (restarting the parent; every other parent kill lands the moment knockerd logs that a stop
//! command started, before the ledger records it done), or flushes the whole ruleset (`nft
//! flush ruleset`). Every knock that opened the one-time, HOTP or SPA door is replayed once,
//! from mallory or from the address of alice's that sent it.
//!
//! Meanwhile it watches:
//! - nftables' own notifications in the server's namespace (NFNLGRP_NFTABLES): every element
//!   added to knocker's sets, with the time it was given, and the table going and coming back;
//! - the sets themselves, sampled with `nft -j list set` (the kernel's own account of each
//!   element's time left);
//! - a prober in mallory's namespace that keeps trying to connect to every protected port, and
//!   one in alice's that does the same from her addresses;
//! - the commands' log: each command is this binary (`soak-command`, argv only, no shell), which
//!   appends one line `start|stop DOOR IP instance=N pid=P t=NS` to a file.
//!
//! Then it checks that no grant was open past its deadline (an element is only ever added for a
//! knock that was just sent, for at most the door's `open_for`; anything else, a restore, ends no
//! later than the grant it restores; the samples and alice's probes agree), that every start
//! command got exactly one stop command (a second one is allowed only where the ledger's
//! at-least-once rule says so: the parent was killed between starting it and recording it), that
//! no protected port answered mallory outside a flush's restore window (from the flush until the
//! kernel announces knocker's table again), and that no replay (a used one-time line, a used HOTP
//! counter, an SPA datagram already seen, sent again by mallory or by alice's own address) opened
//! anything. It prints its figures and exits non-zero on any violation.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use knocker_lab::{Lab, Netns};
use knocker_wire::identity::PrivateKey;
use knocker_wire::rotate::{self, RotateSpec};
use knocker_wire::{spa, Proto, RotateKey, Service};

use crate::latency::{attrs, loadavg, quantile, random16, unix_now, Background};
use crate::stopped;

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// The short version for CI: 60 grants, 2 parent kills, 2 worker kills, 3 flushes.
    #[arg(long)]
    short: bool,
    /// Knocks that must open before the soak ends (default 1 000; 60 with --short).
    #[arg(long)]
    grants: Option<u32>,
    /// SIGKILLs of knockerd's parent process, each followed by a restart (default 12; 2).
    #[arg(long)]
    parent_kills: Option<u32>,
    /// SIGKILLs of the packet worker, which knockerd replaces (default 12; 2).
    #[arg(long)]
    worker_kills: Option<u32>,
    /// `nft flush ruleset` in the server's namespace (default 20; 3).
    #[arg(long)]
    flushes: Option<u32>,
    /// alice's addresses, each as IPv4 and as IPv6 (4 to 100).
    #[arg(long, default_value_t = 32)]
    addresses: u16,
    /// Pause between two of alice's actions, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
    /// Hard time limit, in seconds (default 900; 90 with --short); reaching it is a failure.
    #[arg(long)]
    max_secs: Option<f64>,
    /// Seed of the soak's random choices (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// knockerd binary (default: next to this one).
    #[arg(long)]
    knockerd: Option<PathBuf>,
    /// Keep the working directory (configuration, logs) even when the soak passes.
    #[arg(long)]
    keep: bool,
}

/// `soak-command LOG start|stop DOOR IP`: what the soak's doors run (argv, no shell). Appends
/// one line, with knockerd's instance (from its environment) and this process's pid.
#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    log: PathBuf,
    what: String,
    door: String,
    ip: String,
}

pub fn command(a: &CommandArgs) -> Result<(), String> {
    if a.what != "start" && a.what != "stop" {
        return Err(format!(
            "soak-command: {:?} is neither start nor stop",
            a.what
        ));
    }
    let ip: IpAddr =
        a.ip.parse()
            .map_err(|_| format!("soak-command: {:?} is not an address", a.ip))?;
    let instance = std::env::var("KNOCKER_SOAK_INSTANCE").unwrap_or_else(|_| "?".into());
    let line = format!(
        "{} {} {ip} instance={instance} pid={} t={}\n",
        a.what,
        a.door,
        std::process::id(),
        now_ns()
    );
    // one write on an O_APPEND file: lines of concurrent commands never interleave
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&a.log)
        .map_err(|e| format!("{}: {e}", a.log.display()))?;
    f.write_all(line.as_bytes())
        .map_err(|e| format!("{}: {e}", a.log.display()))
}

/// Nanoseconds since 1970: every record of the soak (its own, the watcher's, the commands') is
/// stamped on the same clock.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// A grant notification belongs to a knock sent from its address to its door at most this long
/// before it.
const ATTRIBUTE_WITHIN: u64 = 2 * SEC;
/// Allowance for the soak's own stamps: the watcher stamps a notification when its thread reads
/// it, a little after the kernel committed it, and a restore puts many grants back one after the
/// other with the time each had left when the restore began.
const STAMP_SLACK: u64 = 250 * MS;
/// How long alice waits for a knock to open before she counts it as lost.
const GRANT_WAIT: Duration = Duration::from_millis(1500);
/// After a replay from alice's address, she does not knock on that door from there for this
/// long, so that anything it opened is told apart from her own grants.
const REPLAY_QUIET: u64 = 3 * SEC;
/// A stop command may come this late after its due time (knockerd's timer, a busy machine),
/// unless the parent was down then.
const STOP_LATE: u64 = SEC;
/// The parent's kill and a stop command it started count as one event this close together.
const KILL_NEAR: u64 = 2 * SEC;
/// A probe that gets no answer within this is silent (below TCP's first retransmission, 1 s:
/// each probe is exactly one SYN).
const PROBE_LIMIT: Duration = Duration::from_millis(500);
/// knockerd's NFLOG group here (one nothing else in the lab uses).
const NFLOG_GROUP: u16 = 4177;
const SPA_PORT: u16 = 62201;
const SEQUENCE: [u16; 3] = [7000, 9000, 8000];
const ONE_TIME_PORTS: std::ops::RangeInclusive<u16> = 20000..=20199;
const HOTP_PORTS: std::ops::RangeInclusive<u16> = 40000..=40999;
const HOTP_KNOCKS: usize = 4;
const HOTP_LOOKAHEAD: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Door {
    Sequence,
    OneTime,
    Hotp,
    Spa,
}

const DOORS: [Door; 4] = [Door::Sequence, Door::OneTime, Door::Hotp, Door::Spa];

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::Sequence => "seq",
            Door::OneTime => "onetime",
            Door::Hotp => "hotp",
            Door::Spa => "spa",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Door::Sequence => "sequence (3 TCP knocks)",
            Door::OneTime => "one-time sequences",
            Door::Hotp => "rotating HOTP (4 TCP knocks)",
            Door::Spa => "knocker SPA datagram",
        }
    }

    fn from_name(name: &str) -> Option<Door> {
        DOORS.into_iter().find(|d| d.name() == name)
    }

    /// The protected service each door opens (its own, so a grant names its door).
    fn service(self) -> u16 {
        2201 + self as u16
    }

    fn from_service(port: u16) -> Option<Door> {
        DOORS.into_iter().find(|d| d.service() == port)
    }

    fn open_for_s(self) -> u64 {
        match self {
            Door::Sequence | Door::Spa => 3,
            Door::OneTime => 4,
            Door::Hotp => 5,
        }
    }

    fn open_for(self) -> u64 {
        self.open_for_s() * SEC
    }
}

/// xorshift64*: the soak's choices, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// nftables' notifications

/// nfnetlink (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFPROTO_INET: u8 = 1;
const TABLE: &[u8] = b"knocker";

/// What the watcher saw, stamped when its thread read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    /// An element added to allow4/allow6: `addr . tcp . port`, for `life` ns.
    Element {
        t: u64,
        addr: IpAddr,
        port: u16,
        life: u64,
    },
    /// Table inet knocker created (true) or deleted (false).
    Table { t: u64, created: bool },
    /// The socket overran: notifications were lost, and the checks would be blind.
    Lost { t: u64 },
}

impl Note {
    fn t(&self) -> u64 {
        match *self {
            Note::Element { t, .. } | Note::Table { t, .. } | Note::Lost { t } => t,
        }
    }
}

fn name_is(value: &[u8], name: &[u8]) -> bool {
    let v = value.strip_suffix(&[0]).unwrap_or(value);
    v == name
}

/// The notes in one netlink datagram of nftables notifications.
fn parse_notes(buf: &[u8], t: u64) -> Vec<Note> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 20 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            break;
        }
        let family = buf[off + 16];
        let body = &buf[(off + 20).min(off + len)..off + len];
        let (subsys, msg) = (kind >> 8, kind & 0xff);
        if subsys == NFNL_SUBSYS_NFTABLES && len >= 20 {
            match msg {
                NFT_MSG_NEWTABLE | NFT_MSG_DELTABLE
                    if family == NFPROTO_INET
                        && attrs(body)
                            .iter()
                            .any(|(a, v)| *a == NFTA_TABLE_NAME && name_is(v, TABLE)) =>
                {
                    out.push(Note::Table {
                        t,
                        created: msg == NFT_MSG_NEWTABLE,
                    });
                }
                NFT_MSG_NEWSETELEM => out.extend(new_elements(body, t)),
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    out
}

/// Elements added to knocker's allow4/allow6 (keys `addr . inet_proto . inet_service`).
fn new_elements(body: &[u8], t: u64) -> Vec<Note> {
    let a = attrs(body);
    let table = a
        .iter()
        .any(|(k, v)| *k == NFTA_SET_ELEM_LIST_TABLE && name_is(v, TABLE));
    let set = a.iter().any(|(k, v)| {
        *k == NFTA_SET_ELEM_LIST_SET && (name_is(v, b"allow4") || name_is(v, b"allow6"))
    });
    if !table || !set {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, elements) in a {
        if k != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (k, elem) in attrs(elements) {
            if k != NFTA_LIST_ELEM {
                continue;
            }
            let (mut key, mut timeout, mut expiration) = (None, None, None);
            for (k, v) in attrs(elem) {
                match k {
                    NFTA_SET_ELEM_KEY => {
                        key = attrs(v)
                            .into_iter()
                            .find(|(k, _)| *k == NFTA_DATA_VALUE)
                            .and_then(|(_, v)| element_key(v))
                    }
                    NFTA_SET_ELEM_TIMEOUT => timeout = be64(v),
                    NFTA_SET_ELEM_EXPIRATION => expiration = be64(v),
                    _ => {}
                }
            }
            if let (Some((addr, port)), Some(ms)) = (key, expiration.or(timeout)) {
                out.push(Note::Element {
                    t,
                    addr,
                    port,
                    life: ms.saturating_mul(MS),
                });
            }
        }
    }
    out
}

fn be64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v.get(..8)?)
        .ok()
        .map(u64::from_be_bytes)
}

/// `addr . tcp . port` (each part padded to 4 bytes): the address and port of a TCP element.
fn element_key(key: &[u8]) -> Option<(IpAddr, u16)> {
    let (addr, rest): (IpAddr, &[u8]) = match key.len() {
        12 => (<[u8; 4]>::try_from(&key[..4]).ok()?.into(), &key[4..]),
        24 => (<[u8; 16]>::try_from(&key[..16]).ok()?.into(), &key[16..]),
        _ => return None,
    };
    (rest[0] == 6).then(|| (addr, u16::from_be_bytes([rest[4], rest[5]])))
}

/// The watcher: a thread in the server's namespace, reading nftables' notifications.
struct Watch {
    notes: Arc<Mutex<Vec<Note>>>,
    thread: Background,
}

impl Watch {
    fn start(server: &Netns) -> Result<Watch, String> {
        let notes = Arc::new(Mutex::new(Vec::new()));
        let notes2 = notes.clone();
        let thread = Background::watch(server, subscribe, move |socket, stop| {
            // real-time priority, so that a busy machine does not delay the stamps (best effort:
            // the stamps' slack is STAMP_SLACK)
            let tid = nix::unistd::gettid().to_string();
            let _ = std::process::Command::new("chrt")
                .args(["-f", "-p", "10", &tid])
                .output();
            listen(&socket, &notes2, stop);
        })?;
        Ok(Watch { notes, thread })
    }

    fn snapshot_from(&self, from: usize) -> Vec<Note> {
        self.notes
            .lock()
            .map(|n| n.get(from..).map(<[Note]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.notes.lock().map(|n| n.len()).unwrap_or(0)
    }

    /// Waits up to `limit` for a note after index `from` that `want` accepts.
    fn wait(&self, from: usize, limit: Duration, want: impl Fn(&Note) -> bool) -> Option<Note> {
        let end = Instant::now() + limit;
        let mut seen = from;
        loop {
            let new = self.snapshot_from(seen);
            seen += new.len();
            if let Some(n) = new.iter().find(|n| want(n)) {
                return Some(*n);
            }
            if Instant::now() >= end || stopped().is_err() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn finish(mut self) -> Vec<Note> {
        self.thread.end();
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// latency.rs's subscription, with a larger buffer: a table load announces every rule and
/// element at once (root may force the size past rmem_max).
fn subscribe() -> Result<netlink_sys::Socket, String> {
    let s = crate::latency::subscribe()?;
    let _ = nix::sys::socket::setsockopt(
        &s.as_fd(),
        nix::sys::socket::sockopt::RcvBufForce,
        &(8 << 20),
    );
    Ok(s)
}

fn listen(socket: &netlink_sys::Socket, notes: &Mutex<Vec<Note>>, stop: &AtomicBool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                push(notes, vec![Note::Lost { t: now_ns() }]);
                return;
            }
        }
        loop {
            buf.clear();
            match socket.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(_) => {
                    let t = now_ns();
                    push(notes, parse_notes(&buf, t));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ENOBUFS: the kernel dropped notifications
                Err(_) => push(notes, vec![Note::Lost { t: now_ns() }]),
            }
        }
    }
}

fn push<T>(to: &Mutex<Vec<T>>, items: Vec<T>) {
    if items.is_empty() {
        return;
    }
    if let Ok(mut v) = to.lock() {
        v.extend(items);
    }
}

// ---------------------------------------------------------------------------------------------
// probes and listeners

/// One answered connection attempt: its SYN left between `t` (just before `connect`) and `t2`
/// (just after it returned), from `src` to `port`.
#[derive(Debug, Clone, Copy)]
struct Answer {
    t: u64,
    t2: u64,
    src: IpAddr,
    port: u16,
}

#[derive(Debug, Default, Clone)]
struct ProbeLog {
    attempts: u64,
    silent: u64,
    errors: u64,
    answered: Vec<Answer>,
}

/// A thread in `ns` that keeps trying new TCP connections from `sources` to the protected
/// ports, one every `every`, and records which were answered (SYN-ACK, RST or ICMP error).
struct Prober {
    log: Arc<Mutex<ProbeLog>>,
    thread: Background,
}

impl Prober {
    fn start(
        ns: &Netns,
        sources: Vec<IpAddr>,
        servers: (IpAddr, IpAddr),
        every: Duration,
        seed: u64,
    ) -> Prober {
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = ns.spawn(move || probe_loop(&sources, servers, every, seed, &log2, &stop2));
        Prober {
            log,
            thread: Background {
                stop,
                thread: Some(thread),
            },
        }
    }

    fn finish(mut self) -> ProbeLog {
        self.thread.end();
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn probe_loop(
    sources: &[IpAddr],
    (server4, server6): (IpAddr, IpAddr),
    every: Duration,
    seed: u64,
    log: &Mutex<ProbeLog>,
    stop: &AtomicBool,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let mut rng = Rng(seed | 1);
    let mut open: Vec<(Socket, Instant, Answer)> = Vec::new();
    let mut next = Instant::now();
    let (mut attempts, mut silent, mut errors) = (0u64, 0u64, 0u64);
    let mut answered = Vec::new();
    let ports: Vec<u16> = DOORS.iter().map(|d| d.service()).collect();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            next += every;
            let src = *rng.pick(sources);
            let port = *rng.pick(&ports);
            let dst = SocketAddr::new(if src.is_ipv4() { server4 } else { server6 }, port);
            let made = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
                    Ok(s)
                });
            let t = now_ns();
            let mut a = Answer {
                t,
                t2: t,
                src,
                port,
            };
            match made {
                Ok(s) => {
                    attempts += 1;
                    let r = s.connect(&SockAddr::from(dst));
                    a.t2 = now_ns();
                    match r {
                        Ok(()) => answered.push(a),
                        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                            open.push((s, Instant::now(), a))
                        }
                        Err(_) => answered.push(a),
                    }
                }
                Err(_) => errors += 1,
            }
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .map(|(s, _, _)| PollFd::new(s.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(1u16));
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let now = Instant::now();
        let mut i = 0;
        open.retain(|(_, at, a)| {
            let r = ready[i];
            i += 1;
            if r {
                // writable: connected, or refused / unreachable: either way it answered
                answered.push(*a);
                false
            } else if now.duration_since(*at) > PROBE_LIMIT {
                silent += 1;
                false
            } else {
                true
            }
        });
        if let Ok(mut l) = log.lock() {
            l.attempts = attempts;
            l.silent = silent;
            l.errors = errors;
            l.answered.append(&mut answered);
        }
    }
}

/// Listeners on every protected port in the server's namespace, so that a port that lets a
/// SYN through answers it.
fn listen_services(server: &Netns, stop: Arc<AtomicBool>) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let _ = server.spawn(move || {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut listeners = Vec::new();
        for d in DOORS {
            match std::net::TcpListener::bind(("::", d.service())).and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(l)
            }) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    let _ = tx.send(Err(format!("listen on {}: {e}", d.service())));
                    return;
                }
            }
        }
        let _ = tx.send(Ok(()));
        while !stop.load(Ordering::Relaxed) {
            let mut fds: Vec<PollFd> = listeners
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            for l in &listeners {
                while l.accept().is_ok() {}
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .map_err(|_| "the listeners did not start".to_string())?
}

/// Samples of the kernel's sets: when the sample began, and each element's address, port and
/// whole seconds left (`nft -j` rounds down).
struct Sample {
    t: u64,
    elements: Vec<(IpAddr, u16, u64)>,
}

fn sample_sets(server: &str) -> Option<Vec<(IpAddr, u16, u64)>> {
    let mut out = Vec::new();
    for set in ["allow4", "allow6"] {
        let o = std::process::Command::new("ip")
            .args([
                "netns", "exec", server, "nft", "-j", "list", "set", "inet", "knocker", set,
            ])
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        for item in v.get("nftables")?.as_array()? {
            let Some(elems) = item
                .get("set")
                .and_then(|s| s.get("elem"))
                .and_then(|e| e.as_array())
            else {
                continue;
            };
            for e in elems {
                let e = e.get("elem")?;
                let concat = e.get("val")?.get("concat")?.as_array()?;
                let addr: IpAddr = concat.first()?.as_str()?.parse().ok()?;
                let port = u16::try_from(concat.get(2)?.as_u64()?).ok()?;
                let expires = e.get("expires").and_then(|x| x.as_u64()).unwrap_or(0);
                out.push((addr, port, expires));
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// knockerd, killed and restarted

/// Whether process `pid` has exited: gone, or a zombie (an orphan waits for init to reap it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state follows the command name in parentheses
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// One knockerd parent; `instance` counts starts (its commands log it).
struct Knockerd {
    child: Child,
    instance: u32,
}

struct Daemon {
    bin: PathBuf,
    config: PathBuf,
    server: String,
    /// Every line knockerd wrote, tagged with its instance.
    log: Arc<Mutex<Vec<(u32, String)>>>,
    log_file: PathBuf,
    current: Option<Knockerd>,
    starts: u32,
    /// Armed: knockerd's log reader SIGKILLs the parent the moment it logs that a stop command
    /// started (before the ledger records it done), and notes when.
    arm: Arc<AtomicBool>,
    fired: Arc<Mutex<Option<u64>>>,
    /// For each parent kill, how long from the kill until the new parent was ready (ns).
    downtime: Vec<u64>,
}

impl Daemon {
    fn start(&mut self) -> Result<(), String> {
        self.starts += 1;
        let instance = self.starts;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.server])
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .env("KNOCKER_SOAK_INSTANCE", instance.to_string())
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.bin.display()))?;
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            let file = self.log_file.clone();
            let (arm, fired) = (self.arm.clone(), self.fired.clone());
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&file)
                .ok();
            knocker_lab::log::read_lines(stderr, move |line| {
                if line.contains(" stop command for ")
                    && line.contains(": started pid ")
                    && arm.swap(false, Ordering::SeqCst)
                {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    if let Ok(mut f) = fired.lock() {
                        *f = Some(now_ns());
                    }
                }
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "[{instance}] {line}");
                }
                if let Ok(mut l) = log.lock() {
                    l.push((instance, line));
                }
            });
        }
        self.current = Some(Knockerd { child, instance });
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            stopped()?;
            if self.lines_of(instance).iter().any(|l| l.contains("ready:")) {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > end {
                return Err(format!("knockerd (start {instance}) not ready after 20 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn lines_of(&self, instance: u32) -> Vec<String> {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(i, _)| *i == instance)
                    .map(|(_, s)| s.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.current.as_ref().map(|k| k.child.id())
    }

    fn check_alive(&mut self) -> Result<(), String> {
        let Some(k) = self.current.as_mut() else {
            return Err("knockerd is not running".into());
        };
        let instance = k.instance;
        match k.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "knockerd (start {instance}) exited by itself ({st}); its last lines:\n{}",
                self.tail(30)
            )),
            Err(e) => Err(format!("waiting for knockerd: {e}")),
        }
    }

    fn tail(&self, n: usize) -> String {
        let l = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        l[l.len().saturating_sub(n)..]
            .iter()
            .map(|(i, s)| format!("[{i}] {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The packet worker: the child of the parent that runs `packet-worker`.
    fn worker_pid(&self) -> Option<u32> {
        let parent = self.pid()?;
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace() {
                let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
                if cmdline.split(|b| *b == 0).any(|a| a == b"packet-worker") {
                    return c.parse().ok();
                }
            }
        }
        None
    }

    /// SIGKILLs the parent (`aim`: as it logs that a stop command started, if one does within
    /// 6 s), waits until it and its worker are gone, and starts it again. Returns when it was
    /// killed, and whether the aim was met.
    fn kill_parent(&mut self, aim: bool) -> Result<(u64, bool), String> {
        let worker = self.worker_pid();
        let mut aimed = None;
        if aim {
            if let Ok(mut f) = self.fired.lock() {
                *f = None;
            }
            self.arm.store(true, Ordering::SeqCst);
            let end = Instant::now() + Duration::from_secs(6);
            while aimed.is_none() && Instant::now() < end {
                stopped()?;
                aimed = self.fired.lock().ok().and_then(|f| *f);
                std::thread::sleep(Duration::from_millis(1));
            }
            // disarmed: if it fired meanwhile, that is the kill
            if !self.arm.swap(false, Ordering::SeqCst) {
                aimed = self.fired.lock().ok().and_then(|f| *f);
            }
        }
        let Some(mut k) = self.current.take() else {
            return Err("knockerd is not running".into());
        };
        let pid = nix::unistd::Pid::from_raw(k.child.id() as i32);
        let t = match aimed {
            Some(t) => t,
            None => {
                let t = now_ns();
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
                    .map_err(|e| format!("kill knockerd: {e}"))?;
                t
            }
        };
        let _ = k.child.wait();
        // the worker dies with its parent; an NFLOG group has one reader, so wait for it
        let end = Instant::now() + Duration::from_secs(10);
        while let Some(w) = worker {
            if gone(w) || Instant::now() > end {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.start()?;
        self.downtime.push(now_ns().saturating_sub(t));
        Ok((t, aimed.is_some()))
    }

    /// SIGKILLs the packet worker and waits until the parent has started a new one.
    fn kill_worker(&mut self) -> Result<Option<u64>, String> {
        let Some(w) = self.worker_pid() else {
            return Ok(None);
        };
        let t = now_ns();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(|e| format!("kill the packet worker: {e}"))?;
        let end = Instant::now() + Duration::from_secs(25);
        loop {
            stopped()?;
            self.check_alive()?;
            if self.worker_pid().is_some_and(|n| n != w) {
                return Ok(Some(t));
            }
            if Instant::now() > end {
                return Err(format!(
                    "knockerd did not replace its killed packet worker within 25 s:\n{}",
                    self.tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, as at the end of the soak: knockerd runs what stop commands are pending.
    fn stop(&mut self) -> Result<(), String> {
        let Some(mut k) = self.current.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(k.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            match k.child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("knockerd exited with {st} on SIGTERM")),
                Ok(None) if Instant::now() > end => {
                    let _ = k.child.kill();
                    let _ = k.child.wait();
                    return Err("knockerd did not stop within 15 s of SIGTERM".into());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for knockerd: {e}")),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut k) = self.current.take() {
            let _ = k.child.kill();
            let _ = k.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the soak

/// What the soak did, as it did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Parent,
    Worker,
    Flush,
}

#[derive(Debug, Clone, Copy)]
struct FaultAt {
    t: u64,
    fault: Fault,
}

/// A knock alice sent (legitimately, or a replay), with when it started.
#[derive(Debug, Clone, Copy)]
struct Sent {
    t: u64,
    src: IpAddr,
    door: Door,
    replay: bool,
    from_mallory: bool,
}

/// Something that opened once and may be replayed.
#[derive(Debug, Clone)]
enum Used {
    Knocks {
        door: Door,
        src: IpAddr,
        services: Vec<Service>,
        t: u64,
    },
    Datagram {
        src: IpAddr,
        bytes: Vec<u8>,
        t: u64,
    },
}

impl Used {
    fn door(&self) -> Door {
        match self {
            Used::Knocks { door, .. } => *door,
            Used::Datagram { .. } => Door::Spa,
        }
    }
    fn src(&self) -> IpAddr {
        match self {
            Used::Knocks { src, .. } | Used::Datagram { src, .. } => *src,
        }
    }
    fn t(&self) -> u64 {
        match self {
            Used::Knocks { t, .. } | Used::Datagram { t, .. } => *t,
        }
    }
}

const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 1);
const SERVER4_M: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 1);
const SERVER6_M: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 1);
/// mallory's addresses, each as IPv4 and as IPv6.
const MALLORY_ADDRS: u16 = 8;

fn alice_addrs(n: u16) -> Vec<IpAddr> {
    let mut v = Vec::new();
    for k in 0..n {
        v.push(IpAddr::V4(Ipv4Addr::new(10, 200, 1, 10 + k as u8)));
        v.push(IpAddr::V6(Ipv6Addr::new(
            0xfd00, 0x200, 1, 0, 0, 0, 0x10, k,
        )));
    }
    v
}

fn mallory_addrs() -> Vec<IpAddr> {
    let mut v = Vec::new();
    for k in 0..MALLORY_ADDRS {
        v.push(IpAddr::V4(Ipv4Addr::new(10, 200, 2, 10 + k as u8)));
        v.push(IpAddr::V6(Ipv6Addr::new(
            0xfd00, 0x200, 2, 0, 0, 0, 0x10, k,
        )));
    }
    v
}

/// Adds addresses to a namespace's `eth0` in one `ip -batch`.
fn add_addrs(ns: &Netns, addrs: &[IpAddr]) -> Result<(), String> {
    let mut batch = String::new();
    for a in addrs {
        match a {
            IpAddr::V4(a) => batch.push_str(&format!("addr add {a}/24 dev eth0\n")),
            IpAddr::V6(a) => batch.push_str(&format!("addr add {a}/64 dev eth0 nodad\n")),
        }
    }
    ns.feed("ip", &["-batch", "-"], &batch).map(|_| ())
}

fn server_for(src: IpAddr, mallory: bool) -> IpAddr {
    match (src, mallory) {
        (IpAddr::V4(_), false) => IpAddr::V4(SERVER4),
        (IpAddr::V6(_), false) => IpAddr::V6(SERVER6),
        (IpAddr::V4(_), true) => IpAddr::V4(SERVER4_M),
        (IpAddr::V6(_), true) => IpAddr::V6(SERVER6_M),
    }
}

/// Knocks `services` from `src` as knock(1) does (a SYN per TCP port from a non-blocking
/// connect closed at once, a one-byte datagram per UDP port). Must run inside the sender's
/// namespace.
fn knock_from(src: IpAddr, dst: IpAddr, services: &[Service]) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    for s in services {
        let to = SocketAddr::new(dst, s.port);
        match s.proto {
            Proto::Tcp => {
                let sock = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
                sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
                sock.set_nonblocking(true)?;
                match sock.connect(&SockAddr::from(to)) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
            }
            Proto::Udp => {
                UdpSocket::bind(SocketAddr::new(src, 0))?.send_to(&[0], to)?;
            }
            Proto::Icmp => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "the soak knocks ports, not ICMP steps",
                ))
            }
        }
    }
    Ok(())
}

fn send_datagram(src: IpAddr, dst: IpAddr, bytes: &[u8]) -> std::io::Result<()> {
    UdpSocket::bind(SocketAddr::new(src, 0))?
        .send_to(bytes, SocketAddr::new(dst, SPA_PORT))
        .map(|_| ())
}

/// Random one-time lines of 3 knocks from [`ONE_TIME_PORTS`], never in ascending or descending
/// order (knockerd refuses those).
fn one_time_lines(rng: &mut Rng, n: u32) -> String {
    let span = u64::from(ONE_TIME_PORTS.end() - ONE_TIME_PORTS.start()) + 1;
    let mut text = String::new();
    for _ in 0..n {
        loop {
            let p: Vec<u16> = (0..3)
                .map(|_| ONE_TIME_PORTS.start() + rng.below(span) as u16)
                .collect();
            let up = p[0] < p[1] && p[1] < p[2];
            let down = p[0] > p[1] && p[1] > p[2];
            if !up && !down && p[0] != p[1] && p[1] != p[2] {
                text.push_str(&format!("{},{},{}\n", p[0], p[1], p[2]));
                break;
            }
        }
    }
    text
}

/// The first line of the one-time file that knockerd has not marked used.
fn next_one_time(path: &Path) -> Result<Option<Vec<Service>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let s: Result<Vec<Service>, _> =
            l.split(',').map(|p| p.trim().parse::<Service>()).collect();
        return s.map(Some).map_err(|e| format!("{}: {e}", path.display()));
    }
    Ok(None)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn knockerd_config(dir: &Path, exe: &Path) -> String {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let log = dir.join("commands.log");
    let cmd = |what: &str, door: Door| {
        format!(
            "[{}, \"soak-command\", {}, \"{what}\", \"{}\", \"%IP%\"]",
            q(exe.to_path_buf()),
            q(log.clone()),
            door.name()
        )
    };
    let mut c = format!(
        "[daemon]\nnflog_group = {NFLOG_GROUP}\nstate_dir = {}\nserver_key = {}\nclients = {}\n\n",
        q(dir.join("state")),
        q(dir.join("server.key")),
        q(dir.join("clients.toml"))
    );
    for d in DOORS {
        c.push_str(&format!("[door.{}]\n", d.name()));
        match d {
            Door::Sequence => {
                let seq: Vec<String> = SEQUENCE.iter().map(|p| format!("\"{p}\"")).collect();
                c.push_str(&format!(
                    "sequence = [{}]\ntcp_flags = \"syn,!ack\"\nwindow = \"5s\"\n",
                    seq.join(", ")
                ));
            }
            Door::OneTime => c.push_str(&format!(
                "kind = \"one-time\"\none_time_sequences = {}\ntcp_flags = \"syn,!ack\"\nwindow = \"5s\"\n",
                q(dir.join("onetime.seq"))
            )),
            Door::Hotp => c.push_str(&format!(
                "kind = \"rotating\"\nkey_file = {}\nmode = \"hotp\"\nlookahead = {HOTP_LOOKAHEAD}\nknocks = {HOTP_KNOCKS}\nports = \"{}-{}\"\nwindow = \"5s\"\n",
                q(dir.join("hotp.key")),
                HOTP_PORTS.start(),
                HOTP_PORTS.end()
            )),
            Door::Spa => c.push_str(&format!(
                "kind = \"spa\"\nport = {SPA_PORT}\nrate_limit = 0\n"
            )),
        }
        c.push_str(&format!(
            "open = [\"tcp/{}\"]\nopen_for = \"{}s\"\nstart_command = {}\nstop_command = {}\n\n",
            d.service(),
            d.open_for_s(),
            cmd("start", d),
            cmd("stop", d)
        ));
    }
    c
}

struct Plan {
    grants: u32,
    faults: Vec<(u32, Fault)>,
    max: Duration,
}

fn plan(a: &SoakArgs, rng: &mut Rng) -> Result<Plan, String> {
    let (g, p, w, f, max) = if a.short {
        (60, 2, 2, 3, 90.0)
    } else {
        (1000, 12, 12, 20, 900.0)
    };
    let grants = a.grants.unwrap_or(g);
    if !(10..=100_000).contains(&grants) {
        return Err("--grants must be 10 to 100000".into());
    }
    let mut bag = Vec::new();
    for (n, fault) in [
        (a.parent_kills.unwrap_or(p), Fault::Parent),
        (a.worker_kills.unwrap_or(w), Fault::Worker),
        (a.flushes.unwrap_or(f), Fault::Flush),
    ] {
        bag.extend(std::iter::repeat_n(fault, n as usize));
    }
    if bag.len() as u32 > grants / 3 {
        return Err(format!(
            "{} faults for {grants} grants: at most one per 3 grants",
            bag.len()
        ));
    }
    // shuffled, at random points spread over the run (none in the first and last tenth)
    for i in (1..bag.len()).rev() {
        bag.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let n = bag.len() as u32;
    let lo = grants / 10;
    let span = grants - 2 * lo;
    let mut faults: Vec<(u32, Fault)> = bag
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let slot = span / n.max(1);
            (
                lo + i as u32 * slot + rng.below(u64::from(slot.max(1))) as u32,
                f,
            )
        })
        .collect();
    faults.sort_by_key(|(g, _)| *g);
    Ok(Plan {
        grants,
        faults,
        max: Duration::from_secs_f64(a.max_secs.unwrap_or(max).clamp(10.0, 7200.0)),
    })
}

/// Everything recorded during the run, for the checks.
#[derive(Default)]
struct Record {
    sent: Vec<Sent>,
    faults: Vec<FaultAt>,
    /// (when the flush command began, ...)
    flushes: Vec<u64>,
    granted: HashMap<Door, u32>,
    lost: HashMap<Door, u32>,
    replays: HashMap<(Door, bool), u32>,
    /// When knockerd's parent instance N was SIGKILLed.
    parent_killed: HashMap<u32, u64>,
    /// Faults skipped (a worker kill when knockerd had replaced its worker too often lately).
    deferred: u32,
    /// Parent kills that landed as a stop command had started (before it was recorded done).
    aimed: u32,
}

struct Alice {
    lab: Lab,
    addrs: Vec<IpAddr>,
    mallory: Vec<IpAddr>,
    hotp_key: RotateKey,
    hotp_spec: RotateSpec,
    hotp_counter: u64,
    server_key: PrivateKey,
    alice_key: PrivateKey,
    one_time: PathBuf,
    /// The last legitimate knock per (address, door), and until when replays keep it quiet.
    last_knock: HashMap<(IpAddr, Door), u64>,
    quiet_until: HashMap<(IpAddr, Door), u64>,
    /// What opened and is still to be replayed, and whether from mallory.
    used: Vec<(Used, bool)>,
    /// When each (door, address) was last granted: its stop command is due open_for later.
    last_grant: HashMap<(Door, IpAddr), u64>,
}

impl Alice {
    /// One knock on `door` from a free address; `Some(note time)` once it opened.
    fn knock(
        &mut self,
        door: Door,
        rng: &mut Rng,
        watch: &Watch,
        rec: &mut Record,
    ) -> Result<bool, String> {
        let now = now_ns();
        let free: Vec<IpAddr> = self
            .addrs
            .iter()
            .copied()
            .filter(|a| self.quiet_until.get(&(*a, door)).is_none_or(|q| *q <= now))
            .collect();
        if free.is_empty() {
            // every address of alice's is quiet after a replay on this door
            return Ok(false);
        }
        let src = *rng.pick(&free);
        let dst = server_for(src, false);
        let mark = watch.len();
        let t = now_ns();
        let used = match door {
            Door::Sequence => {
                let services: Vec<Service> = SEQUENCE.iter().map(|p| Service::tcp(*p)).collect();
                self.send_knocks(src, dst, &services)?;
                None
            }
            Door::OneTime => {
                let Some(services) = next_one_time(&self.one_time)? else {
                    return Err("the one-time file has no line left: more lines needed".into());
                };
                self.send_knocks(src, dst, &services)?;
                Some(Used::Knocks {
                    door,
                    src,
                    services,
                    t,
                })
            }
            Door::Hotp => {
                let services = rotate::sequence(&self.hotp_key, &self.hotp_spec, self.hotp_counter);
                self.hotp_counter += 1;
                self.send_knocks(src, dst, &services)?;
                Some(Used::Knocks {
                    door,
                    src,
                    services,
                    t,
                })
            }
            Door::Spa => {
                let req = spa::Request {
                    timestamp: unix_now(),
                    nonce: random16()?,
                    allow: None,
                    services: vec![Service::tcp(Door::Spa.service())],
                    duration: None,
                };
                let bytes = spa::seal(
                    &req,
                    &self.alice_key,
                    &self.server_key.public_key(),
                    &self.server_key.door_key(Door::Spa.name()),
                )
                .map_err(|e| format!("sealing alice's datagram: {e}"))?;
                let b = bytes.clone();
                self.lab
                    .alice
                    .enter(move || send_datagram(src, dst, &b))?
                    .map_err(|e| format!("alice's datagram: {e}"))?;
                Some(Used::Datagram { src, bytes, t })
            }
        };
        rec.sent.push(Sent {
            t,
            src,
            door,
            replay: false,
            from_mallory: false,
        });
        self.last_knock.insert((src, door), t);
        let port = door.service();
        let got = watch.wait(mark, GRANT_WAIT, |n| {
            matches!(*n, Note::Element { addr, port: p, t: nt, .. } if addr == src && p == port && nt >= t)
        });
        if let Some(n) = got {
            *rec.granted.entry(door).or_default() += 1;
            self.last_grant.insert((door, src), n.t());
            let from_mallory = rng.chance(50);
            self.used.extend(used.map(|u| (u, from_mallory)));
            Ok(true)
        } else {
            *rec.lost.entry(door).or_default() += 1;
            Ok(false)
        }
    }

    fn send_knocks(&self, src: IpAddr, dst: IpAddr, services: &[Service]) -> Result<(), String> {
        let s = services.to_vec();
        self.lab
            .alice
            .enter(move || knock_from(src, dst, &s))?
            .map_err(|e| format!("alice's knock from {src}: {e}"))
    }

    /// Replays something that opened before: from mallory, or from the address it came from.
    /// Replays up to `max` of the knocks that opened and were not replayed yet, once each, as
    /// soon as they may be: from mallory, or from the address of alice's that used it once she
    /// has not knocked on that door from there for 2 s. Returns how many are still waiting.
    fn replay(&mut self, max: usize, rng: &mut Rng, rec: &mut Record) -> Result<usize, String> {
        for _ in 0..max {
            let now = now_ns();
            let ready = self.used.iter().position(|(u, from_mallory)| {
                now.saturating_sub(u.t()) > ATTRIBUTE_WITHIN
                    && (*from_mallory
                        || self
                            .last_knock
                            .get(&(u.src(), u.door()))
                            .is_none_or(|t| now.saturating_sub(*t) > ATTRIBUTE_WITHIN))
            });
            let Some(i) = ready else { break };
            let (u, from_mallory) = self.used.swap_remove(i);
            self.replay_one(&u, from_mallory, rng, rec)?;
        }
        Ok(self.used.len())
    }

    fn replay_one(
        &mut self,
        u: &Used,
        from_mallory: bool,
        rng: &mut Rng,
        rec: &mut Record,
    ) -> Result<(), String> {
        let (ns, src) = if from_mallory {
            let family: Vec<IpAddr> = self
                .mallory
                .iter()
                .copied()
                .filter(|m| m.is_ipv4() == u.src().is_ipv4())
                .collect();
            (&self.lab.mallory, *rng.pick(&family))
        } else {
            (&self.lab.alice, u.src())
        };
        let dst = server_for(src, from_mallory);
        let t = now_ns();
        if !from_mallory {
            self.quiet_until.insert((src, u.door()), t + REPLAY_QUIET);
        }
        match u {
            Used::Knocks { services, .. } => {
                let s = services.clone();
                ns.enter(move || knock_from(src, dst, &s))?
            }
            Used::Datagram { bytes, .. } => {
                let b = bytes.clone();
                ns.enter(move || send_datagram(src, dst, &b))?
            }
        }
        .map_err(|e| format!("replay from {src}: {e}"))?;
        rec.sent.push(Sent {
            t,
            src,
            door: u.door(),
            replay: true,
            from_mallory,
        });
        *rec.replays.entry((u.door(), from_mallory)).or_default() += 1;
        Ok(())
    }
}

pub fn soak(a: &SoakArgs) -> Result<(), String> {
    knocker_lab::preflight()?;
    if !(4..=100).contains(&a.addresses) {
        return Err("--addresses must be 4 to 100".into());
    }
    if a.pause_ms > 1000 {
        return Err("--pause-ms must be at most 1000".into());
    }
    let seed = match a.seed {
        Some(s) => s,
        None => u64::from_le_bytes(random16()?[..8].try_into().map_err(|_| "random")?),
    };
    let mut rng = Rng(seed | 1);
    let plan = plan(a, &mut rng)?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let knockerd_bin = crate::knockerd_binary(&a.knockerd)?;
    if !knockerd_bin.is_file() {
        return Err(format!("knockerd not found at {}", knockerd_bin.display()));
    }
    let load_before = loadavg();
    let started = Instant::now();

    let lab = Lab::new("soak")?;
    let dir = std::env::temp_dir().join(format!("knocker-soak-{}", lab.server.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run(
        a,
        &plan,
        seed,
        &mut rng,
        lab,
        &dir,
        &exe,
        &knockerd_bin,
        started,
    );
    match &result {
        Ok(true) if !a.keep => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => eprintln!(
            "soak: its files (configuration, knockerd's log, the commands' log) are in {}",
            dir.display()
        ),
    }
    eprintln!(
        "whole run: {:.1} s; load average {load_before} before, {} after",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err("the soak found violations (above)".into()),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    a: &SoakArgs,
    plan: &Plan,
    seed: u64,
    rng: &mut Rng,
    lab: Lab,
    dir: &Path,
    exe: &Path,
    knockerd_bin: &Path,
    started: Instant,
) -> Result<bool, String> {
    let addrs = alice_addrs(a.addresses);
    let mallory = mallory_addrs();
    add_addrs(&lab.alice, &addrs)?;
    add_addrs(&lab.mallory, &mallory)?;

    // keys, the clients file, the one-time file, the configuration
    let server_key = PrivateKey::generate().map_err(|e| format!("server key: {e}"))?;
    let alice_key = PrivateKey::generate().map_err(|e| format!("alice's key: {e}"))?;
    let hotp_key = RotateKey::generate().map_err(|e| format!("HOTP key: {e}"))?;
    write_private(&dir.join("server.key"), &server_key.to_base64())?;
    write_private(&dir.join("hotp.key"), &hotp_key.to_base64())?;
    std::fs::write(
        dir.join("clients.toml"),
        format!(
            "[client.alice]\npublic_key = \"{}\"\n",
            alice_key.public_key()
        ),
    )
    .map_err(|e| format!("clients file: {e}"))?;
    let one_time = dir.join("onetime.seq");
    std::fs::write(&one_time, one_time_lines(rng, plan.grants + 50))
        .map_err(|e| format!("{}: {e}", one_time.display()))?;
    let config = dir.join("knockerd.toml");
    std::fs::write(&config, knockerd_config(dir, exe)).map_err(|e| format!("config: {e}"))?;
    let commands_log = dir.join("commands.log");

    let stop = Arc::new(AtomicBool::new(false));
    listen_services(&lab.server, stop.clone())?;
    let watch = Watch::start(&lab.server)?;
    let mut daemon = Daemon {
        bin: knockerd_bin.to_path_buf(),
        config,
        server: lab.server.name().to_string(),
        log: Arc::new(Mutex::new(Vec::new())),
        log_file: dir.join("knockerd.log"),
        current: None,
        starts: 0,
        arm: Arc::new(AtomicBool::new(false)),
        fired: Arc::new(Mutex::new(None)),
        downtime: Vec::new(),
    };
    daemon.start()?;

    let mallory_probe = Prober::start(
        &lab.mallory,
        mallory.clone(),
        (IpAddr::V4(SERVER4_M), IpAddr::V6(SERVER6_M)),
        Duration::from_millis(4),
        rng.next(),
    );
    let alice_probe = Prober::start(
        &lab.alice,
        addrs.clone(),
        (IpAddr::V4(SERVER4), IpAddr::V6(SERVER6)),
        Duration::from_millis(8),
        rng.next(),
    );
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (samples, stop, server) =
            (samples.clone(), stop.clone(), lab.server.name().to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = now_ns();
                if let Some(elements) = sample_sets(&server) {
                    push(&samples, vec![Sample { t, elements }]);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    eprintln!(
        "== soak: {} grants over 4 doors from {} of alice's addresses; {} faults; seed {seed}",
        plan.grants,
        addrs.len(),
        plan.faults.len()
    );
    let hotp_spec = RotateSpec::new(HOTP_KNOCKS, HOTP_PORTS, Proto::Tcp)
        .map_err(|e| format!("HOTP spec: {e}"))?;
    let mut alice = Alice {
        lab,
        addrs,
        mallory,
        hotp_key,
        hotp_spec,
        hotp_counter: 0,
        server_key,
        alice_key,
        one_time,
        last_knock: HashMap::new(),
        quiet_until: HashMap::new(),
        used: Vec::new(),
        last_grant: HashMap::new(),
    };
    let mut rec = Record::default();
    let mut faults = plan.faults.clone();
    faults.reverse();
    let mut worker_kills_since: Vec<u64> = Vec::new();
    let mut granted = 0u32;
    let mut parent_kills = 0u32;
    let driven: Result<(), String> =
        (|| {
            while granted < plan.grants {
                stopped()?;
                if started.elapsed() > plan.max {
                    return Err(format!(
                        "time limit: only {granted} of {} grants within {:.0} s",
                        plan.grants,
                        plan.max.as_secs_f64()
                    ));
                }
                daemon.check_alive()?;
                while faults.last().is_some_and(|(g, _)| *g <= granted) {
                    let Some((_, fault)) = faults.pop() else {
                        break;
                    };
                    match fault {
                        Fault::Parent => {
                            // every other parent kill aims at the moment a stop command has
                            // started and is not yet recorded done
                            let aim = parent_kills % 2 == 1;
                            parent_kills += 1;
                            let instance = daemon.starts;
                            let (t, aimed) = daemon.kill_parent(aim)?;
                            rec.aimed += u32::from(aimed);
                            rec.parent_killed.insert(instance, t);
                            rec.faults.push(FaultAt { t, fault });
                            worker_kills_since.clear();
                            eprintln!(
                            "   {granted} grants: parent killed (start {instance}{}), restarted",
                            if aimed { ", as it started a stop command" } else { "" }
                        );
                        }
                        Fault::Worker => {
                            // knockerd replaces its worker at most 5 times a minute (then stops,
                            // closed): stay below it
                            let now = now_ns();
                            worker_kills_since.retain(|t| now - t < 65 * SEC);
                            if worker_kills_since.len() >= 3 {
                                rec.deferred += 1;
                                faults.push((granted + 5, fault));
                                faults.sort_by_key(|(g, _)| std::cmp::Reverse(*g));
                                break;
                            }
                            if let Some(t) = daemon.kill_worker()? {
                                worker_kills_since.push(t);
                                rec.faults.push(FaultAt { t, fault });
                                eprintln!("   {granted} grants: packet worker killed, replaced");
                            }
                        }
                        Fault::Flush => {
                            let mark = watch.len();
                            let t = now_ns();
                            alice
                                .lab
                                .server
                                .exec("nft", &["flush", "ruleset"])
                                .map_err(|e| format!("nft flush ruleset: {e}"))?;
                            rec.flushes.push(t);
                            rec.faults.push(FaultAt { t, fault });
                            // wait for the table to be back before anything else happens
                            let back = watch.wait(mark, Duration::from_secs(5), |n| {
                                matches!(n, Note::Table { created: true, .. })
                            });
                            eprintln!(
                                "   {granted} grants: ruleset flushed; table back {}",
                                back.map_or("NOT within 5 s".to_string(), |n| format!(
                                    "after {:.1} ms",
                                    n.t().saturating_sub(t) as f64 / 1e6
                                ))
                            );
                        }
                    }
                }
                let door = *rng.pick(&DOORS);
                if alice.knock(door, rng, &watch, &mut rec)? {
                    granted += 1;
                    if granted % 100 == 0 {
                        eprintln!("   {granted} grants");
                    }
                }
                alice.replay(2, rng, &mut rec)?;
                std::thread::sleep(Duration::from_millis(
                    a.pause_ms + rng.below(a.pause_ms + 1),
                ));
            }
            Ok(())
        })();
    // the last grants and their stop commands run out, then knockerd stops cleanly
    let last_due = alice
        .last_grant
        .iter()
        .map(|((d, _), t)| t + d.open_for())
        .max()
        .unwrap_or(0);
    // and every knock that opened is replayed (they wait until they may be)
    if driven.is_ok() {
        let mut waiting = alice.used.len();
        let mut last_replay = 0;
        let limit = now_ns() + 30 * SEC;
        while now_ns() < last_due + 2 * SEC
            || (waiting > 0 && now_ns() < limit)
            || now_ns() < last_replay + SEC
        {
            stopped()?;
            daemon.check_alive()?;
            let before = waiting;
            waiting = alice.replay(usize::MAX, rng, &mut rec)?;
            if waiting < before {
                last_replay = now_ns();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if waiting > 0 {
            return Err(format!(
                "{waiting} knocks could not be replayed within 30 s"
            ));
        }
    }
    let end_t = now_ns();
    let stopped_cleanly = daemon.stop();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let mallory_log = mallory_probe.finish();
    let alice_log = alice_probe.finish();
    let notes = watch.finish();
    driven?;
    stopped_cleanly?;
    std::thread::sleep(Duration::from_millis(200));
    let commands = std::fs::read_to_string(&commands_log).unwrap_or_default();
    let samples = samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let log = daemon.log.lock().map(|l| l.clone()).unwrap_or_default();
    let checks = Checks {
        notes: &notes,
        rec: &rec,
        samples: &samples,
        mallory: &mallory_log,
        alice: &alice_log,
        commands: &commands,
        mallory_addrs: &alice.mallory,
        end_t,
    };
    let outcome = checks.run();
    let mut downtime: Vec<f64> = daemon.downtime.iter().map(|d| *d as f64 / 1e6).collect();
    downtime.sort_by(f64::total_cmp);
    print_report(
        &outcome,
        &rec,
        &log,
        plan,
        seed,
        started.elapsed(),
        (daemon.starts, &downtime),
    );
    Ok(outcome.violations.is_empty())
}

// ---------------------------------------------------------------------------------------------
// the checks

struct Checks<'a> {
    notes: &'a [Note],
    rec: &'a Record,
    samples: &'a [Sample],
    mallory: &'a ProbeLog,
    alice: &'a ProbeLog,
    commands: &'a str,
    mallory_addrs: &'a [IpAddr],
    end_t: u64,
}

#[derive(Default, Debug)]
struct Outcome {
    violations: Vec<String>,
    /// Restore windows: from the flush to the table announced again (ns), and from the deletion
    /// notification to it.
    windows: Vec<(u64, u64)>,
    restore_ms: Vec<f64>,
    grant_notes: usize,
    restore_notes: usize,
    /// The most a restored element outlived the grant it restored (ns; negative: ended before).
    max_restore_overshoot: i64,
    mallory_attempts: u64,
    mallory_silent: u64,
    alice_attempts: u64,
    mallory_inside: usize,
    mallory_outside: usize,
    alice_answered_granted: usize,
    alice_answered_window: usize,
    alice_answered_closed: usize,
    sampled_elements: usize,
    most_at_once: usize,
    samples: usize,
    replays_opened: usize,
    starts: usize,
    stops: usize,
    duplicate_stops_at_kill: usize,
    orphan_stops_at_kill: usize,
    late_stops_at_kill: usize,
    max_stop_late_ms: f64,
}

/// A command line of the log: `start|stop DOOR IP instance=N pid=P t=NS`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CommandLine {
    start: bool,
    door: Door,
    ip: IpAddr,
    instance: Option<u32>,
    t: u64,
}

fn parse_command_line(line: &str) -> Option<CommandLine> {
    let mut w = line.split_whitespace();
    let start = match w.next()? {
        "start" => true,
        "stop" => false,
        _ => return None,
    };
    let door = Door::from_name(w.next()?)?;
    let ip = w.next()?.parse().ok()?;
    let (mut instance, mut t) = (None, None);
    for kv in w {
        if let Some(v) = kv.strip_prefix("instance=") {
            instance = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("t=") {
            t = v.parse().ok();
        }
    }
    Some(CommandLine {
        start,
        door,
        ip: ip_canonical(ip),
        instance,
        t: t?,
    })
}

fn ip_canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The deadlines of one element (address, port): when each grant or restore of it was
/// announced, and when it ends by then.
#[derive(Default)]
struct Lives(Vec<(u64, u64)>);

impl Lives {
    /// The latest end of what was announced up to `t` (plus the stamp slack).
    fn end_at(&self, t: u64) -> Option<u64> {
        self.0
            .iter()
            .filter(|(at, _)| *at <= t + STAMP_SLACK)
            .map(|(_, end)| *end)
            .max()
    }
}

impl Checks<'_> {
    /// Whether an answered SYN may have met a restore window (it left between `a.t` and `a.t2`).
    fn in_window(&self, windows: &[(u64, u64)], a: &Answer) -> bool {
        windows.iter().any(|(from, to)| a.t <= *to && *from <= a.t2)
    }

    fn run(&self) -> Outcome {
        let mut o = Outcome::default();
        let mut v = Vec::new();
        if let Some(Note::Lost { t }) = self.notes.iter().find(|n| matches!(n, Note::Lost { .. })) {
            v.push(format!(
                "the watcher lost nftables notifications at {}: the checks below are blind there",
                fmt_t(*t)
            ));
        }

        // 1. restore windows: each flush until the kernel announces knocker's table again
        for &f in &self.rec.flushes {
            let deleted = self
                .notes
                .iter()
                .find(|n| matches!(n, Note::Table { created: false, t } if *t >= f));
            let back = deleted.and_then(|d| {
                self.notes
                    .iter()
                    .find(|n| matches!(n, Note::Table { created: true, t } if *t >= d.t()))
            });
            match (deleted, back) {
                (Some(d), Some(b)) if b.t() - f < 5 * SEC => {
                    o.windows.push((f, b.t()));
                    o.restore_ms.push((b.t() - d.t()) as f64 / 1e6);
                }
                (None, _) => v.push(format!(
                    "the flush at {} was never announced as deleting table inet knocker",
                    fmt_t(f)
                )),
                _ => v.push(format!(
                    "after the flush at {} table inet knocker did not come back within 5 s",
                    fmt_t(f)
                )),
            }
        }
        // any other deletion of the table (knockerd never deletes it itself)
        let deletions = self
            .notes
            .iter()
            .filter(|n| matches!(n, Note::Table { created: false, .. }))
            .count();
        if deletions > self.rec.flushes.len() {
            v.push(format!(
                "table inet knocker was deleted {deletions} times for {} flushes",
                self.rec.flushes.len()
            ));
        }

        // 2. every element added: for a knock just sent, for at most its door's open_for;
        // otherwise a restore, ending no later than what it restores
        let mut lives: HashMap<(IpAddr, u16), Lives> = HashMap::new();
        let mut max_over: i64 = i64::MIN;
        for n in self.notes {
            let Note::Element {
                t,
                addr,
                port,
                life,
            } = *n
            else {
                continue;
            };
            let addr = ip_canonical(addr);
            let Some(door) = Door::from_service(port) else {
                v.push(format!(
                    "{}: {addr} granted tcp/{port}, which no door opens",
                    fmt_t(t)
                ));
                continue;
            };
            if self.mallory_addrs.contains(&addr) {
                v.push(format!(
                    "{}: mallory's address {addr} was granted door {} (tcp/{port}) for {} ms",
                    fmt_t(t),
                    door.name(),
                    life / MS
                ));
                continue;
            }
            let knocked = self.rec.sent.iter().any(|s| {
                !s.replay
                    && s.src == addr
                    && s.door == door
                    && s.t <= t
                    && t - s.t <= ATTRIBUTE_WITHIN
            });
            let l = lives.entry((addr, port)).or_default();
            if knocked {
                o.grant_notes += 1;
                if life > door.open_for() {
                    v.push(format!(
                        "{}: {addr} granted door {} for {} ms, more than its open_for ({} s)",
                        fmt_t(t),
                        door.name(),
                        life / MS,
                        door.open_for_s()
                    ));
                }
                l.0.push((t, t + life));
            } else {
                o.restore_notes += 1;
                match l.end_at(t) {
                    Some(end) => {
                        let over = (t + life) as i64 - end as i64;
                        max_over = max_over.max(over);
                        if t + life > end + STAMP_SLACK {
                            let replayed = self.rec.sent.iter().any(|s| {
                                s.replay
                                    && !s.from_mallory
                                    && s.src == addr
                                    && s.door == door
                                    && s.t <= t
                                    && t - s.t <= ATTRIBUTE_WITHIN
                            });
                            if replayed {
                                o.replays_opened += 1;
                            }
                            v.push(format!(
                                "{}: {addr}'s element for door {} was put in for {} ms, {} ms past the end of its grant{}",
                                fmt_t(t),
                                door.name(),
                                life / MS,
                                (t + life - end) / MS,
                                if replayed { " (right after a replay: the replay opened it)" } else { " with no knock for it" }
                            ));
                        }
                    }
                    None => v.push(format!(
                        "{}: {addr} was granted door {} for {} ms with no knock for it",
                        fmt_t(t),
                        door.name(),
                        life / MS
                    )),
                }
                l.0.push((t, (t + life).min(l.end_at(t).unwrap_or(t + life))));
            }
        }
        if max_over != i64::MIN {
            o.max_restore_overshoot = max_over;
        }

        // 3. the kernel's own account: no element outlives its grant
        for s in self.samples {
            o.samples += 1;
            o.most_at_once = o.most_at_once.max(s.elements.len());
            for &(addr, port, expires) in &s.elements {
                o.sampled_elements += 1;
                let addr = ip_canonical(addr);
                let end = lives.get(&(addr, port)).and_then(|l| l.end_at(s.t + SEC));
                match end {
                    // nft -j rounds the seconds left down: the element ends at least this late
                    Some(end) if s.t + expires * SEC <= end + STAMP_SLACK => {}
                    Some(end) => v.push(format!(
                        "{}: nft lists {addr} . tcp . {port} with {expires} s left, {} ms past the end of its grant",
                        fmt_t(s.t),
                        (s.t + expires * SEC - end) / MS
                    )),
                    None => v.push(format!(
                        "{}: nft lists {addr} . tcp . {port}, which was never granted",
                        fmt_t(s.t)
                    )),
                }
            }
        }

        // 4. mallory never reached a protected port outside a restore window
        o.mallory_attempts = self.mallory.attempts;
        o.mallory_silent = self.mallory.silent;
        o.alice_attempts = self.alice.attempts;
        if self.mallory.errors > 0 || self.alice.errors > 0 {
            v.push(format!(
                "the probers could not make {} (mallory) and {} (alice) connection attempts",
                self.mallory.errors, self.alice.errors
            ));
        }
        for ans in &self.mallory.answered {
            if self.in_window(&o.windows, ans) {
                o.mallory_inside += 1;
            } else {
                o.mallory_outside += 1;
                if o.mallory_outside <= 20 {
                    v.push(format!(
                        "{}: tcp/{} answered mallory ({}) outside any restore window",
                        fmt_t(ans.t),
                        ans.port,
                        ans.src
                    ));
                }
            }
        }
        if o.mallory_outside > 20 {
            v.push(format!(
                "... {} answers to mallory outside restore windows in all",
                o.mallory_outside
            ));
        }
        // ... and alice only while granted
        for ans in &self.alice.answered {
            let src = ip_canonical(ans.src);
            let live = lives.get(&(src, ans.port)).is_some_and(|l| {
                l.0.iter()
                    .any(|(at, end)| *at <= ans.t2 + STAMP_SLACK && ans.t <= end + STAMP_SLACK)
            });
            if live {
                o.alice_answered_granted += 1;
            } else if self.in_window(&o.windows, ans) {
                o.alice_answered_window += 1;
            } else {
                o.alice_answered_closed += 1;
                if o.alice_answered_closed <= 20 {
                    v.push(format!(
                        "{}: tcp/{} answered alice's {src}, which had no live grant for it",
                        fmt_t(ans.t),
                        ans.port
                    ));
                }
            }
        }

        // 5. every start command got exactly one stop command
        self.check_commands(&lives, &mut o, &mut v);
        o.violations = v;
        o
    }

    fn check_commands(
        &self,
        lives: &HashMap<(IpAddr, u16), Lives>,
        o: &mut Outcome,
        v: &mut Vec<String>,
    ) {
        let mut by_pair: HashMap<(Door, IpAddr), Vec<CommandLine>> = HashMap::new();
        for line in self.commands.lines() {
            match parse_command_line(line) {
                Some(c) => by_pair.entry((c.door, c.ip)).or_default().push(c),
                None => v.push(format!(
                    "the commands' log has a line it cannot read: {line:?}"
                )),
            }
        }
        let kill_of = |instance: Option<u32>| {
            instance
                .and_then(|i| self.rec.parent_killed.get(&i))
                .copied()
        };
        let parent_kills: Vec<u64> = self
            .rec
            .faults
            .iter()
            .filter(|f| f.fault == Fault::Parent)
            .map(|f| f.t)
            .collect();
        let mut pairs: Vec<_> = by_pair.into_iter().collect();
        pairs.sort_by_key(|((d, ip), _)| (*d, *ip));
        for ((door, ip), mut lines) in pairs {
            lines.sort_by_key(|c| c.t);
            let mut open: Option<&CommandLine> = None;
            let mut last_stop: Option<&CommandLine> = None;
            for c in &lines {
                if c.start {
                    o.starts += 1;
                    if let Some(s) = open {
                        v.push(format!(
                            "door {} {ip}: a second start command at {} while the one at {} had no stop yet",
                            door.name(),
                            fmt_t(c.t),
                            fmt_t(s.t)
                        ));
                    }
                    open = Some(c);
                    continue;
                }
                o.stops += 1;
                match open.take() {
                    Some(s) => {
                        // due open_for after the last grant of this opening (a refresh moves it)
                        let last = lives
                            .get(&(ip, door.service()))
                            .map(|l| {
                                l.0.iter()
                                    .filter(|(at, _)| *at + STAMP_SLACK >= s.t && *at <= c.t)
                                    .map(|(at, _)| *at)
                                    .max()
                                    .unwrap_or(s.t)
                            })
                            .unwrap_or(s.t);
                        let due = last.max(s.t) + door.open_for();
                        if c.t > due + STOP_LATE {
                            let killed = parent_kills
                                .iter()
                                .any(|k| *k + KILL_NEAR >= due && *k <= c.t);
                            let late = (c.t - due) as f64 / 1e6;
                            if killed {
                                o.late_stops_at_kill += 1;
                            } else {
                                v.push(format!(
                                    "door {} {ip}: the stop command ran {late:.0} ms after it was due ({})",
                                    door.name(),
                                    fmt_t(due)
                                ));
                            }
                        } else {
                            o.max_stop_late_ms =
                                o.max_stop_late_ms.max(c.t.saturating_sub(due) as f64 / 1e6);
                        }
                        last_stop = Some(c);
                    }
                    None => {
                        // the ledger's rule: a stop command is recorded done after it starts, so
                        // a parent killed in between runs it again at its next start
                        let dup = last_stop.is_some_and(|prev| {
                            kill_of(prev.instance).is_some_and(|k| prev.t.abs_diff(k) <= KILL_NEAR)
                                && c.instance > prev.instance
                        });
                        // a parent killed after journaling a grant, before its start command
                        let orphan = !dup
                            && kill_of(c.instance.map(|i| i.saturating_sub(1))).is_some_and(|k| {
                                self.rec.sent.iter().any(|s| {
                                    !s.replay
                                        && s.src == ip
                                        && s.door == door
                                        && s.t <= k
                                        && k - s.t <= KILL_NEAR
                                })
                            });
                        if dup {
                            o.duplicate_stops_at_kill += 1;
                        } else if orphan {
                            o.orphan_stops_at_kill += 1;
                        } else {
                            v.push(format!(
                                "door {} {ip}: a stop command at {} (knockerd start {}) with no start command open{}",
                                door.name(),
                                fmt_t(c.t),
                                c.instance.map_or("?".into(), |i| i.to_string()),
                                last_stop.map_or(String::new(), |p| format!(
                                    "; the previous stop ran at {} (start {})",
                                    fmt_t(p.t),
                                    p.instance.map_or("?".into(), |i| i.to_string())
                                ))
                            ));
                        }
                    }
                }
            }
            if let Some(s) = open {
                v.push(format!(
                    "door {} {ip}: the start command at {} (knockerd start {}) never got its stop command (the soak ended {})",
                    door.name(),
                    fmt_t(s.t),
                    s.instance.map_or("?".into(), |i| i.to_string()),
                    fmt_t(self.end_t)
                ));
            }
        }
    }
}

/// A time of the run as the clock of the day, to the millisecond (UTC).
fn fmt_t(t: u64) -> String {
    let s = t / SEC;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        (t % SEC) / MS
    )
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1} ms"))
}

fn print_report(
    o: &Outcome,
    rec: &Record,
    log: &[(u32, String)],
    plan: &Plan,
    seed: u64,
    took: Duration,
    (starts, downtime): (u32, &[f64]),
) {
    let count = |f: Fault| rec.faults.iter().filter(|x| x.fault == f).count();
    let mut restore: Vec<f64> = o.restore_ms.clone();
    restore.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let d: Vec<Duration> = restore
            .iter()
            .map(|m| Duration::from_secs_f64(m / 1e3))
            .collect();
        quantile(&d, p).map(|d| d.as_secs_f64() * 1e3)
    };
    // knockerd's own figure: "restored it, N ms after the change"
    let mut own: Vec<f64> = log
        .iter()
        .filter(|(_, l)| l.contains("was deleted by another program"))
        .filter_map(|(_, l)| {
            let i = l.find(" ms after the change")?;
            l[..i]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    own.sort_by(f64::total_cmp);
    let errors: Vec<&String> = log
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l.contains("ERROR"))
        .filter(|l| {
            !l.contains("was deleted by another program") && !l.contains("the packet worker exited")
        })
        .collect();
    let replays_seen = log.iter().filter(|(_, l)| l.contains(" refused: ")).count();

    println!(
        "Soak: {} grants asked for, seed {seed}, {:.1} s.\n",
        plan.grants,
        took.as_secs_f64()
    );
    println!("| door | grants | knocks lost (faults) |");
    println!("|---|---|---|");
    for d in DOORS {
        println!(
            "| {} | {} | {} |",
            d.describe(),
            rec.granted.get(&d).copied().unwrap_or(0),
            rec.lost.get(&d).copied().unwrap_or(0)
        );
    }
    println!(
        "\nFaults: {} parent kills (SIGKILL, restarted; knockerd started {starts} times; {} of them the moment a stop command had started), {} worker kills (SIGKILL; replaced), {} `nft flush ruleset`{}.",
        count(Fault::Parent),
        rec.aimed,
        count(Fault::Worker),
        count(Fault::Flush),
        if rec.deferred > 0 { format!(" (a worker kill put off {} times by 5 grants: knockerd replaces its worker at most 5 times a minute)", rec.deferred) } else { String::new() }
    );
    println!(
        "The parent was down (SIGKILL to the new one's `ready:`) for median {}, max {}.",
        fmt_ms(downtime.get(downtime.len() / 2).copied()),
        fmt_ms(downtime.last().copied())
    );
    println!(
        "Restore window (from nftables' notifications: table deleted -> table back): median {}, max {} over {} flushes; knockerd's own figure (\"N ms after the change\"): median {}, max {}.",
        fmt_ms(q(0.5)),
        fmt_ms(restore.last().copied()),
        restore.len(),
        fmt_ms(own.get(own.len() / 2).copied()),
        fmt_ms(own.last().copied()),
    );
    println!(
        "Element additions announced: {} for knocks (a refresh announces two), {} by restores (the most one outlived its grant: {:.1} ms); {} nft samples with {} elements, at most {} at once.",
        o.grant_notes,
        o.restore_notes,
        o.max_restore_overshoot as f64 / 1e6,
        o.samples,
        o.sampled_elements,
        o.most_at_once
    );
    println!(
        "mallory's prober: {} connection attempts, {} answered inside restore windows, {} answered outside them, {} silent.",
        o.mallory_attempts, o.mallory_inside, o.mallory_outside, o.mallory_silent
    );
    println!(
        "alice's prober: {} connection attempts, answered {} times while granted, {} inside restore windows, {} with no live grant.",
        o.alice_attempts,
        o.alice_answered_granted, o.alice_answered_window, o.alice_answered_closed
    );
    let replays = |d: Door, m: bool| rec.replays.get(&(d, m)).copied().unwrap_or(0);
    println!(
        "Replays of the {} knocks that opened on these doors (from mallory / from alice's own address): one-time lines {} / {}, HOTP counters {} / {}, SPA datagrams {} / {}; opened: {}; knockerd logged {replays_seen} refusals (its log names SPA replays; a used sequence is just not a knock).",
        [Door::OneTime, Door::Hotp, Door::Spa].iter().map(|d| rec.granted.get(d).copied().unwrap_or(0)).sum::<u32>(),
        replays(Door::OneTime, true),
        replays(Door::OneTime, false),
        replays(Door::Hotp, true),
        replays(Door::Hotp, false),
        replays(Door::Spa, true),
        replays(Door::Spa, false),
        o.replays_opened
    );
    println!(
        "Commands: {} start, {} stop; duplicate stops where the parent was killed between starting one and recording it (the ledger's at-least-once rule): {}; stops without a start where it was killed between the journal and the start command: {}; stops late because the parent was down: {}; latest stop otherwise {:.0} ms after its due time.",
        o.starts,
        o.stops,
        o.duplicate_stops_at_kill,
        o.orphan_stops_at_kill,
        o.late_stops_at_kill,
        o.max_stop_late_ms
    );
    if !errors.is_empty() {
        println!("\nknockerd's other ERROR lines ({}):", errors.len());
        for e in errors.iter().take(10) {
            println!("  {e}");
        }
    }
    if o.violations.is_empty() {
        println!("\nNo violations.");
    } else {
        println!("\nVIOLATIONS ({}):", o.violations.len());
        for x in &o.violations {
            println!("  {x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::tests::nla;

    fn message(kind: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | kind).to_ne_bytes());
        v.extend_from_slice(&[0; 10]);
        v.extend_from_slice(&[family, 0, 0, 0]);
        v.extend_from_slice(attrs);
        v
    }

    fn element(key: &[u8], timeout_ms: u64, expiration_ms: Option<u64>) -> Vec<u8> {
        const NESTED: u16 = 0x8000;
        let mut e = nla(NFTA_SET_ELEM_KEY | NESTED, &nla(NFTA_DATA_VALUE, key));
        e.extend(nla(NFTA_SET_ELEM_TIMEOUT, &timeout_ms.to_be_bytes()));
        if let Some(x) = expiration_ms {
            e.extend(nla(NFTA_SET_ELEM_EXPIRATION, &x.to_be_bytes()));
        }
        nla(NFTA_LIST_ELEM | NESTED, &e)
    }

    fn setelems(table: &[u8], set: &[u8], list: &[u8]) -> Vec<u8> {
        let mut a = nla(NFTA_SET_ELEM_LIST_TABLE, table);
        a.extend(nla(NFTA_SET_ELEM_LIST_SET, set));
        a.extend(nla(NFTA_SET_ELEM_LIST_ELEMENTS | 0x8000, list));
        message(NFT_MSG_NEWSETELEM, NFPROTO_INET, &a)
    }

    #[test]
    fn notifications_name_grants_with_their_life_and_the_table_coming_and_going() {
        let v4 = [10, 200, 1, 11, 6, 0, 0, 0, 0x08, 0x99, 0, 0];
        let mut v6 = vec![0xfd, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 1];
        v6.extend_from_slice(&[6, 0, 0, 0, 0x08, 0x9a, 0, 0]);
        let mut list = element(&v4, 3000, Some(2990));
        list.extend(element(&v6, 4000, None));
        let mut buf = setelems(b"knocker\0", b"allow4\0", &list);
        // another table's set, an anonymous set, and a UDP element are not grants
        buf.extend(setelems(b"filter\0", b"allow4\0", &list));
        buf.extend(setelems(b"knocker\0", b"__set0\0", &list));
        let udp = [10, 200, 1, 11, 17, 0, 0, 0, 0x08, 0x99, 0, 0];
        buf.extend(setelems(
            b"knocker\0",
            b"allow4\0",
            &element(&udp, 1000, None),
        ));
        buf.extend(message(
            NFT_MSG_DELTABLE,
            NFPROTO_INET,
            &nla(1, b"knocker\0"),
        ));
        buf.extend(message(
            NFT_MSG_NEWTABLE,
            NFPROTO_INET,
            &nla(1, b"knocker\0"),
        ));
        // ip knocker (family 2) and inet filter are not knocker's table
        buf.extend(message(NFT_MSG_DELTABLE, 2, &nla(1, b"knocker\0")));
        buf.extend(message(
            NFT_MSG_DELTABLE,
            NFPROTO_INET,
            &nla(1, b"filter\0"),
        ));
        let notes = parse_notes(&buf, 7);
        assert_eq!(
            notes,
            vec![
                Note::Element {
                    t: 7,
                    addr: "10.200.1.11".parse().expect("addr"),
                    port: 2201,
                    life: 2990 * MS
                },
                Note::Element {
                    t: 7,
                    addr: "fd00:200:1::10:1".parse().expect("addr"),
                    port: 2202,
                    life: 4000 * MS
                },
                Note::Table {
                    t: 7,
                    created: false
                },
                Note::Table {
                    t: 7,
                    created: true
                },
            ]
        );
        for n in 0..buf.len() {
            let _ = parse_notes(&buf[..n], 7);
        }
    }

    #[test]
    fn command_lines_are_read_back() {
        let c = parse_command_line("stop hotp 10.200.1.12 instance=3 pid=77 t=1234").expect("line");
        assert_eq!(
            c,
            CommandLine {
                start: false,
                door: Door::Hotp,
                ip: "10.200.1.12".parse().expect("addr"),
                instance: Some(3),
                t: 1234
            }
        );
        assert!(parse_command_line("start nosuch 10.200.1.12 t=1").is_none());
        assert!(parse_command_line("start seq 10.200.1.12 instance=1").is_none());
        assert!(parse_command_line("open seq 10.200.1.12 t=1").is_none());
    }

    #[test]
    fn lives_end_at_the_latest_grant_announced_by_then() {
        let l = Lives(vec![(10 * SEC, 13 * SEC), (12 * SEC, 15 * SEC)]);
        assert_eq!(l.end_at(11 * SEC), Some(13 * SEC));
        assert_eq!(l.end_at(12 * SEC), Some(15 * SEC));
        assert_eq!(l.end_at(9 * SEC), None);
    }

    #[test]
    fn the_plan_spreads_its_faults_and_knockerd_accepts_the_config() {
        let a = SoakArgs {
            short: true,
            grants: None,
            parent_kills: None,
            worker_kills: None,
            flushes: None,
            addresses: 8,
            pause_ms: 20,
            max_secs: None,
            seed: Some(1),
            knockerd: None,
            keep: false,
        };
        let mut rng = Rng(3);
        let p = plan(&a, &mut rng).expect("plan");
        assert_eq!(p.grants, 60);
        assert_eq!(p.faults.len(), 7);
        assert!(p.faults.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(p.faults.iter().all(|(g, _)| (6..54).contains(g)));
        let count = |f: Fault| p.faults.iter().filter(|(_, x)| *x == f).count();
        assert_eq!(
            (
                count(Fault::Parent),
                count(Fault::Worker),
                count(Fault::Flush)
            ),
            (2, 2, 3)
        );

        let dir = std::env::temp_dir().join(format!("knocker-soak-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let server = PrivateKey::generate().expect("key");
        let alice = PrivateKey::generate().expect("key");
        write_private(&dir.join("server.key"), &server.to_base64()).expect("key");
        write_private(
            &dir.join("hotp.key"),
            &RotateKey::generate().expect("key").to_base64(),
        )
        .expect("key");
        std::fs::write(
            dir.join("clients.toml"),
            format!("[client.alice]\npublic_key = \"{}\"\n", alice.public_key()),
        )
        .expect("clients");
        std::fs::write(dir.join("onetime.seq"), one_time_lines(&mut rng, 200)).expect("lines");
        let path = dir.join("knockerd.toml");
        std::fs::write(&path, knockerd_config(&dir, Path::new("/usr/bin/soak"))).expect("config");
        let c = knockerd::config::loader::load(&knockerd::config::loader::ConfigFile::Native(path))
            .expect("knockerd accepts the soak's config")
            .config;
        assert_eq!(c.doors.len(), 4);
        for d in &c.doors {
            let door = Door::from_name(&d.spec.name).expect("a soak door");
            assert_eq!(d.spec.open, vec![Service::tcp(door.service())]);
            assert!(d.start_command.is_some() && d.stop_command.is_some());
            let argv = d
                .stop_command
                .as_ref()
                .expect("stop")
                .argv_for("10.200.1.10".parse().expect("addr"));
            assert_eq!(argv[0], "/usr/bin/soak");
            assert_eq!(&argv[3..], ["stop", door.name(), "10.200.1.10"]);
        }
        let one_time = c.doors.iter().find_map(|d| d.one_time()).expect("one-time");
        assert_eq!(
            one_time.entries.len(),
            200,
            "every generated line is a valid sequence"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
