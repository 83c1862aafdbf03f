//! Harness for end-to-end tests: a lab of network namespaces, the real knockerd binary in the
//! server namespace, Debian's knock client and real TCP connections.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `e2e(&[tools])`: the workspace's one rule for prerequisites (knocker_lab::ready).
pub use knocker_lab::{self as lab, e2e, send_knock, try_connect, Lab, Log, Netns, Reach};
use knockerd::ruleset::{self, LiveGrant};

pub const SERVICE: u16 = 2222;
pub const PROBE: Duration = Duration::from_millis(800);
/// alice's usual sequence in the tests.
pub const ALICE_SEQ: [&str; 3] = ["7000", "9000:udp", "8000"];

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The lab's own state directory (ledger), removed with the World.
pub fn state_dir(lab: &Lab) -> PathBuf {
    std::env::temp_dir().join(format!("knocker-e2e-state-{}", lab.server.name()))
}

/// The real knockerd, running in the lab's server namespace, with its log captured.
pub struct Knockerd {
    pub child: Child,
    pub log: Log,
    pub config: PathBuf,
    dir: PathBuf,
}

impl Knockerd {
    /// Starts knockerd with `config`. Unless the config names a `state_dir`, the ledger lives in
    /// a directory of the lab's own ([`state_dir`]), kept across restarts within the lab.
    pub fn start(lab: &Lab, config: &str) -> Knockerd {
        Knockerd::start_env(lab, config, &[])
    }

    /// [`Knockerd::start`] with these environment variables set (e.g. `NOTIFY_SOCKET`).
    pub fn start_env(lab: &Lab, config: &str, env: &[(&str, &str)]) -> Knockerd {
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("knocker-e2e-{}-{n}", lab.server.name()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("knockerd.toml");
        let config = if config.contains("state_dir") {
            config.to_string()
        } else {
            config.replacen(
                "[daemon]\n",
                &format!(
                    "[daemon]\nstate_dir = {:?}\n",
                    state_dir(lab).display().to_string()
                ),
                1,
            )
        };
        assert!(
            config.contains("state_dir"),
            "test configs have a [daemon] table"
        );
        std::fs::write(&path, config).expect("write config");
        let path_s = path.display().to_string();
        Knockerd::spawn(lab, dir, path.clone(), &["-v", "--config", &path_s], env)
    }

    /// Starts `WRAPPER... DIR/knockerd -v --config DIR/knockerd.toml` (e.g. a sandbox set up
    /// by hand, which ends by executing its last arguments), `config` written there as it is
    /// and the binary under test copied there (the checkout may be under /tmp, which the
    /// sandbox can hide); `dir` is removed with the Knockerd.
    pub fn start_wrapped(lab: &Lab, dir: PathBuf, config: &str, wrapper: &[String]) -> Knockerd {
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("knockerd.toml");
        std::fs::write(&path, config).expect("write config");
        let binary = dir.join("knockerd");
        std::fs::copy(env!("CARGO_BIN_EXE_knockerd"), &binary).expect("copy knockerd");
        let mut args: Vec<String> = wrapper[1..].to_vec();
        args.push(binary.display().to_string());
        args.extend(["-v".to_string(), "--config".to_string()]);
        args.push(path.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Knockerd::spawn_program(lab, &wrapper[0], dir, path, &args, &[])
    }

    /// Starts knockerd with these arguments (e.g. `--fwknop-access FILE`), its ledger in the
    /// lab's state directory.
    pub fn start_args(lab: &Lab, args: &[&str]) -> Knockerd {
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("knocker-e2e-args-{}-{n}", lab.server.name()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let state = state_dir(lab).display().to_string();
        let mut all = vec!["-v", "--state-dir", &state];
        all.extend_from_slice(args);
        let config = PathBuf::from(args.last().copied().unwrap_or_default());
        Knockerd::spawn(lab, dir, config, &all, &[])
    }

    fn spawn(
        lab: &Lab,
        dir: PathBuf,
        path: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Knockerd {
        Knockerd::spawn_program(lab, env!("CARGO_BIN_EXE_knockerd"), dir, path, args, env)
    }

    fn spawn_program(
        lab: &Lab,
        program: &str,
        dir: PathBuf,
        path: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Knockerd {
        let mut child = lab
            .server
            .command(program)
            .args(args)
            .envs(env.iter().copied())
            // timestamps in the log, as without systemd (fail2ban_e2e reads them)
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start knockerd");
        let log = Log::echoed("knockerd");
        log.capture(&mut child, |_| {});
        let mut d = Knockerd {
            child,
            log,
            config: path,
            dir,
        };
        if let Err(e) = d
            .log
            .wait_for("ready:", Duration::from_secs(10), Some(&mut d.child))
        {
            panic!("knockerd {e}");
        }
        d
    }

    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Waits until the log contains `needle`; panics with the log if it does not in time.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        if let Err(e) = self.log.wait_for(needle, limit, None) {
            panic!("knockerd {e}");
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("signal knockerd");
    }

    /// Waits for knockerd to exit and returns its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < end,
                "knockerd did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Knockerd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A lab with knockerd and a TCP service on port SERVICE in the server namespace.
pub struct World {
    pub daemon: Knockerd,
    pub lab: Lab,
    names: [String; 3],
}

impl World {
    pub fn new(tag: &str, config: &str) -> World {
        World::start_with(tag, |lab| Knockerd::start(lab, config))
    }

    /// A world whose knockerd is started by `start` (e.g. with `--fwknop-access`).
    pub fn start_with(tag: &str, start: impl FnOnce(&Lab) -> Knockerd) -> World {
        let lab = Lab::new(tag).expect("lab");
        let names = lab.names();
        let listener = lab
            .server
            .enter(|| TcpListener::bind(("::", SERVICE)))
            .expect("enter")
            .expect("listen");
        echo_service(listener);
        let daemon = start(&lab);
        World { daemon, lab, names }
    }

    pub fn connect(&self, from: &Netns, to: &str) -> Reach {
        let addr = SocketAddr::new(ip(to), SERVICE);
        from.enter(move || try_connect(addr, PROBE)).expect("enter")
    }

    /// Connects, retrying for up to `limit` (a grant takes effect within milliseconds of the
    /// last knock, but the test must not depend on how many).
    pub fn connect_within(&self, from: &Netns, to: &str, limit: Duration) -> Reach {
        connect_within(from, SocketAddr::new(ip(to), SERVICE), limit)
    }

    /// A world whose door is alice's usual sequence (tcp/7000, udp/9000, tcp/8000), open for
    /// `open_for` seconds.
    pub fn alice_door(tag: &str, open_for: u64) -> World {
        World::new(
            tag,
            &door_config(
                "",
                &format!("sequence = {ALICE_SEQ:?}\nopen_for = {open_for}\n"),
            ),
        )
    }

    /// alice knocks the usual sequence with knocker's own sender; exactly one grant follows.
    pub fn alice_knocks_and_is_granted(&self) {
        self.knock(&self.lab.alice, Lab::SERVER_FOR_ALICE, &ALICE_SEQ);
        let g = self.wait_grants(1, Duration::from_secs(2));
        assert_eq!(
            g.len(),
            1,
            "alice's knock must be granted once: {g:?}\n{}",
            self.daemon.log()
        );
    }

    /// After alice's knock: one grant, hers, within 2 s; she connects, mallory does not.
    pub fn only_alice_is_let_in(&self) {
        let g = self.wait_grants(1, Duration::from_secs(2));
        assert_eq!(g.len(), 1, "{g:?}\n{}", self.daemon.log());
        assert_eq!(g[0].to, Lab::ALICE);
        assert_eq!(
            self.connect_within(
                &self.lab.alice,
                Lab::SERVER_FOR_ALICE,
                Duration::from_secs(2)
            ),
            Reach::Connected
        );
        assert_eq!(
            self.connect(&self.lab.mallory, Lab::SERVER_FOR_MALLORY),
            Reach::Silent,
            "alice's knock opened nothing for mallory"
        );
    }

    /// mallory, who has no grant, reaches the service over neither family (`why` says whose
    /// grants she must stay out of).
    pub fn mallory_is_silent(&self, why: &str) {
        for to in [Lab::SERVER_FOR_MALLORY, Lab::SERVER_FOR_MALLORY6] {
            assert_eq!(
                self.connect(&self.lab.mallory, to),
                Reach::Silent,
                "mallory to {to}: {why}"
            );
        }
    }

    /// Runs Debian's knock client in a namespace.
    pub fn debian_knock(&self, from: &Netns, args: &[&str]) {
        from.exec("knock", args).expect("knock");
    }

    /// Sends knocks with knocker's own sender.
    pub fn knock(&self, from: &Netns, host: &str, seq: &[&str]) {
        let host = ip(host);
        let seq: Vec<knocker_engine::Service> =
            seq.iter().map(|s| s.parse().expect("service")).collect();
        from.enter(move || seq.iter().try_for_each(|s| send_knock(host, *s)))
            .expect("enter")
            .expect("knock");
    }

    /// The grants in the server's kernel sets right now.
    pub fn grants(&self) -> Vec<LiveGrant> {
        self.lab
            .server
            .enter(ruleset::live_grants)
            .expect("enter")
            .expect("list grants")
    }

    /// Every grant in the server's kernel sets: unlimited ones, and those that count
    /// connections (a door's `connections`, knockknock's by default), one per address and service.
    pub fn all_grants(&self) -> Vec<LiveGrant> {
        let mut g = self.grants();
        g.extend(
            self.lab
                .server
                .enter(ruleset::live_counted_grants)
                .expect("enter")
                .expect("list counted grants"),
        );
        g
    }

    /// Waits until the grant count matches.
    pub fn wait_grants(&self, n: usize, limit: Duration) -> Vec<LiveGrant> {
        self.wait_grants_of(n, limit, World::grants)
    }

    /// Waits until the count of [`World::all_grants`] matches.
    pub fn wait_all_grants(&self, n: usize, limit: Duration) -> Vec<LiveGrant> {
        self.wait_grants_of(n, limit, World::all_grants)
    }

    fn wait_grants_of(
        &self,
        n: usize,
        limit: Duration,
        list: fn(&World) -> Vec<LiveGrant>,
    ) -> Vec<LiveGrant> {
        let end = Instant::now() + limit;
        loop {
            let g = list(self);
            if g.len() == n || Instant::now() > end {
                return g;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `knockerd check` on the daemon's configuration, in the server namespace (where it
    /// inspects the live ruleset): its output, after asserting that it succeeded.
    pub fn check(&self) -> String {
        let out = self
            .lab
            .server
            .command(env!("CARGO_BIN_EXE_knockerd"))
            .arg("check")
            .arg("--config")
            .arg(&self.daemon.config)
            .output()
            .expect("check");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lab's ledger directory (see [`state_dir`]).
    pub fn state_dir(&self) -> PathBuf {
        state_dir(&self.lab)
    }

    /// Tears everything down and checks that no namespace is left behind.
    pub fn finish(self) {
        let names = self.names.clone();
        drop(self);
        lab::assert_removed(&names);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(state_dir(&self.lab));
    }
}

/// Serves `listener` as an echo service on threads of its own; accepted connections stay open
/// until the peer closes.
pub fn echo_service(listener: TcpListener) {
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = std::io::Read::read(&mut c, &mut buf) {
                    if n == 0 || std::io::Write::write_all(&mut c, &buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Connects from `from` to `addr`, retrying for up to `limit` while the answer is not
/// `Connected` (a grant takes effect within milliseconds of the last knock, but the test must
/// not depend on how many).
pub fn connect_within(from: &Netns, addr: SocketAddr, limit: Duration) -> Reach {
    from.enter(move || {
        let end = Instant::now() + limit;
        loop {
            let r = try_connect(addr, Duration::from_millis(300));
            if r == Reach::Connected || Instant::now() > end {
                return r;
            }
        }
    })
    .expect("enter")
}

/// `ssh` in `from` with the key `key` and no prompts, config or known hosts of the machine's:
/// the caller adds its options, destination and command.
pub fn ssh_batch(from: &Netns, key: &std::path::Path) -> std::process::Command {
    let mut c = from.command("ssh");
    c.args(["-F", "/dev/null", "-i"]).arg(key).args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ]);
    c.stdin(Stdio::null());
    c
}

/// The `knocker` client binary, built by `cargo test --workspace` next to knockerd.
pub fn knocker_client() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_knockerd")).with_file_name("knocker");
    assert!(
        path.exists(),
        "{} is missing: build the client first (cargo build -p knocker, or cargo test --workspace)",
        path.display()
    );
    path
}

/// Debian's fwknopd, run in `netns` with its iptables backend on `conf` and `access`, its own
/// files in `state`, capturing on `iface`; started (it said so, and its capture is open) and
/// killed on drop.
pub struct Fwknopd {
    pub child: std::process::Child,
    pub log: Log,
}

impl Fwknopd {
    pub fn start(
        netns: &Netns,
        conf: &std::path::Path,
        access: &std::path::Path,
        state: &std::path::Path,
        iface: &str,
    ) -> Fwknopd {
        let mut child = netns
            .command("fwknopd")
            .args(knocker_lab::fwknopd::args(conf, access, state).expect("fwknopd's files"))
            .args(["-i", iface])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fwknopd");
        let log = Log::echoed("fwknopd");
        log.capture(&mut child, |_| {});
        let mut d = Fwknopd { child, log };
        // pcap is open once fwknopd enters its loop (a fixed wait lost packets under load)
        if let Err(e) = d.log.wait_for(
            "Starting fwknopd main event loop",
            Duration::from_secs(10),
            Some(&mut d.child),
        ) {
            panic!("fwknopd did not start: it {e}");
        }
        std::thread::sleep(Duration::from_millis(100));
        d
    }
}

impl Drop for Fwknopd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A door config for tests.
pub fn door_config(extra_daemon: &str, door: &str) -> String {
    format!("[daemon]\nnflog_group = 4100\n{extra_daemon}\n\n[door.ssh]\nopen = [\"tcp/{SERVICE}\"]\n{door}\n")
}

/// Sends one UDP datagram (an SPA packet) from a client's namespace, from its own address, to
/// `to`:`port`.
pub fn send_udp(from: &Netns, to: &str, port: u16, payload: Vec<u8>) {
    let dst = SocketAddr::new(ip(to), port);
    from.enter(move || {
        let bind = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        std::net::UdpSocket::bind(bind).and_then(|s| s.send_to(&payload, dst))
    })
    .expect("enter")
    .expect("send");
}

/// Makes an fwknop SPA packet with Debian's client in `from` (for `server`, granting tcp/SERVICE
/// to `allow`, with these Rijndael and HMAC keys) without sending it (`-B FILE --test`).
pub fn fwknop_packet(
    from: &Netns,
    server: &str,
    allow: &str,
    file: &std::path::Path,
    key: &str,
    hmac: &str,
) -> Vec<u8> {
    let out = from
        .command("fwknop")
        .args(["-D", server, "--no-save-args", "--no-rc-file"])
        .args(["-A", &format!("tcp/{SERVICE}"), "-a", allow, "--test", "-B"])
        .arg(file)
        .args(["--key-rijndael", key, "--key-hmac", hmac, "--use-hmac"])
        .env("HOME", "/nonexistent")
        .output()
        .expect("run fwknop");
    assert!(
        out.status.success(),
        "fwknop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bytes = std::fs::read(file).expect("packet file");
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// Turns on kernel logging in every network namespace for a test's duration (knocker-lab's
/// guard; the test fails loudly when it cannot).
pub struct AllNetnsLogging {
    _guard: knocker_lab::kernel_log::AllNetnsLogging,
}

impl AllNetnsLogging {
    pub fn on() -> AllNetnsLogging {
        AllNetnsLogging {
            _guard: knocker_lab::kernel_log::AllNetnsLogging::on()
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// The packet worker of knockerd `pid` (its one child).
pub fn worker_of(pid: i32) -> i32 {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kids: Vec<i32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.len() == 1 {
            return kids[0];
        }
        assert!(
            Instant::now() < end,
            "knockerd {pid} should have exactly one child, its packet worker: {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A field of /proc/PID/status, e.g. "Uid".
pub fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
