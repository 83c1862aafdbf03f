//! Network namespaces, veth pairs and their addresses, and the usual three-party [`Lab`].
//!
//! Every namespace is removed when its guard drops, also when a test fails or panics.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Runs `cmd` to its end: its output, or an error with its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes names unique per process and call, for namespaces and labs alike.
static NAMES: AtomicU32 = AtomicU32::new(0);

fn unique_base(tag: &str) -> String {
    let n = NAMES.fetch_add(1, Ordering::SeqCst);
    format!("kn{}-{tag}{n}", std::process::id())
}

impl Netns {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Netns, String> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace whose name is unique per process and call (`kn<pid>-<tag><n>`).
    pub fn unique(tag: &str) -> Result<Netns, String> {
        Netns::create(&unique_base(tag))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a program in the namespace and returns its stdout, or an error with its stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ip -n NAME ARGS`: addresses, links and routes of this namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args)).map(|_| ())
    }

    /// Loads an nft script (`nft -f -`) inside the namespace.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        self.feed("nft", &["-f", "-"], script)
            .map(|_| ())
            .map_err(|e| format!("{e}\n{script}"))
    }

    /// Runs a program in the namespace with `input` on its standard input (e.g. `nft -f -`,
    /// `ip -batch -`): its stdout, or an error with its stderr.
    pub fn feed(&self, program: &str, args: &[&str], input: &str) -> Result<String, String> {
        let what = format!("{program} {} in {}", args.join(" "), self.name);
        let mut child = self
            .command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // dropped at the end of this block: the end of its input
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| format!("cannot write to {what}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Runs `f` on a new thread that has joined this namespace: sockets it creates live here.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, String>> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {path}: {e}"))?;
            Ok(f())
        })
    }

    /// Runs `f` inside this namespace and waits for it. A panic in `f` goes on in the caller,
    /// with its own message.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        match self.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins two namespaces with a veth pair and gives each end its addresses (CIDR notation; IPv6
/// ones without duplicate address detection, so that they are usable at once).
pub fn link(
    a: &Netns,
    a_if: &str,
    a_addrs: &[&str],
    b: &Netns,
    b_if: &str,
    b_addrs: &[&str],
) -> Result<(), String> {
    run(Command::new("ip").args([
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]))?;
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", ifname];
            if addr.contains(':') {
                args.push("nodad");
            }
            ns.ip(&args)?;
        }
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// Panics if any of these namespaces still exists: for tests that check their own cleanup.
pub fn assert_removed(names: &[String]) {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.contains(n.as_str()), "namespace {n} left behind");
    }
}

/// A server with two clients on separate links: alice (10.200.1.2, fd00:200:1::2) and mallory
/// (10.200.2.2, fd00:200:2::2). The server is 10.200.1.1 / fd00:200:1::1 towards alice and
/// 10.200.2.1 / fd00:200:2::1 towards mallory.
pub struct Lab {
    // Field order is drop order: clients first, then the server.
    pub alice: Netns,
    pub mallory: Netns,
    pub server: Netns,
}

impl Lab {
    pub const SERVER_FOR_ALICE: &'static str = "10.200.1.1";
    pub const SERVER_FOR_ALICE6: &'static str = "fd00:200:1::1";
    pub const SERVER_FOR_MALLORY: &'static str = "10.200.2.1";
    pub const SERVER_FOR_MALLORY6: &'static str = "fd00:200:2::1";
    pub const ALICE: &'static str = "10.200.1.2";
    pub const ALICE6: &'static str = "fd00:200:1::2";
    pub const MALLORY: &'static str = "10.200.2.2";
    pub const MALLORY6: &'static str = "fd00:200:2::2";

    /// Creates the lab; names are unique per process and call (`kn<pid>-<tag><n>-server`, ...).
    pub fn new(tag: &str) -> Result<Lab, String> {
        let base = unique_base(tag);
        let server = Netns::create(&format!("{base}-server"))?;
        let alice = Netns::create(&format!("{base}-alice"))?;
        let mallory = Netns::create(&format!("{base}-mallory"))?;
        link(
            &server,
            "to-alice",
            &["10.200.1.1/24", "fd00:200:1::1/64"],
            &alice,
            "eth0",
            &["10.200.1.2/24", "fd00:200:1::2/64"],
        )?;
        link(
            &server,
            "to-mallory",
            &["10.200.2.1/24", "fd00:200:2::1/64"],
            &mallory,
            "eth0",
            &["10.200.2.2/24", "fd00:200:2::2/64"],
        )?;
        Ok(Lab {
            alice,
            mallory,
            server,
        })
    }

    pub fn names(&self) -> [String; 3] {
        [
            self.server.name().to_string(),
            self.alice.name().to_string(),
            self.mallory.name().to_string(),
        ]
    }
}
