//! Network-namespace labs for the demo and the end-to-end tests: a server, alice and mallory,
//! joined by veth pairs, with addresses only inside them (10.200.0.0/16, fd00:200::/48).
//!
//! Every namespace is removed when its guard drops, also when a test fails or panics. Nothing
//! here sends a packet anywhere but between the lab's own namespaces.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use knocker_engine::{Proto, Service};

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn run(cmd: &mut Command) -> Result<Output, String> {
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

impl Netns {
    pub fn create(name: &str) -> Result<Netns, String> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
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

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args)).map(|_| ())
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

    /// Runs `f` inside this namespace and waits for it.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        self.spawn(f)
            .join()
            .map_err(|_| "thread panicked".to_string())?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins two namespaces with a veth pair and gives each end its addresses (CIDR notation).
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

static LABS: AtomicU32 = AtomicU32::new(0);

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

    /// Creates the lab; names are unique per process and call (`kn<pid>-<n>-server`, ...).
    pub fn new(tag: &str) -> Result<Lab, String> {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let base = format!("kn{}-{tag}{n}", std::process::id());
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

/// Sends one knock the way knock(1) does: one SYN from a non-blocking connect that is closed at
/// once, or a one-byte UDP datagram. Must run inside the sender's namespace.
pub fn send_knock(host: IpAddr, service: Service) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let addr = SocketAddr::new(host, service.port);
    let domain = Domain::for_address(addr);
    match service.proto {
        Proto::Tcp => {
            let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            s.set_nonblocking(true)?;
            match s.connect(&SockAddr::from(addr)) {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Proto::Udp => {
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            s.send_to(&[0u8], &SockAddr::from(addr)).map(|_| ())
        }
    }
}

/// What a TCP connection attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Connected,
    /// No answer at all within the timeout: the port is filtered (dropped).
    Silent,
    /// An RST or ICMP error: the port answered, so it is not silent.
    Refused,
}

/// Tries a TCP connection from the current thread's namespace.
pub fn try_connect(addr: SocketAddr, timeout: Duration) -> Reach {
    match std::net::TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => Reach::Connected,
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Reach::Silent
        }
        Err(_) => Reach::Refused,
    }
}

/// Whether this process can build labs (root, `ip` and `nft`); the reason if not.
pub fn preflight() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (it creates network namespaces and nftables tables)".into());
    }
    for (prog, pkg) in [("ip", "iproute2"), ("nft", "nftables")] {
        if Command::new(prog).arg("-V").output().is_err()
            && Command::new(prog).arg("--version").output().is_err()
        {
            return Err(format!(
                "`{prog}` is not installed (Debian: apt-get install {pkg})"
            ));
        }
    }
    Ok(())
}

/// Sends one hand-made IPv4 TCP segment with any source address and flags through a raw socket
/// (root only): for flag-filter tests and spoofed knocks. Must run inside the sender's namespace.
pub fn send_raw_tcp4(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    flags: knocker_engine::TcpFlags,
) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let f = flags.0;
    let mut b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64).tcp(
        src_port,
        dst_port,
        0x1000_0000,
        64240,
    );
    if f & 0x01 != 0 {
        b = b.fin();
    }
    if f & 0x02 != 0 {
        b = b.syn();
    }
    if f & 0x04 != 0 {
        b = b.rst();
    }
    if f & 0x08 != 0 {
        b = b.psh();
    }
    if f & 0x10 != 0 {
        b = b.ack(1);
    }
    if f & 0x20 != 0 {
        b = b.urg(0);
    }
    let mut packet = Vec::with_capacity(b.size(0));
    b.write(&mut packet, &[]).map_err(std::io::Error::other)?;
    // IPPROTO_RAW implies IP_HDRINCL: the kernel sends our header as it is.
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )?;
    s.send_to(
        &packet,
        &SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0)),
    )
    .map(|_| ())
}

/// Sends one hand-made IPv4 UDP datagram with any source address through a raw socket (root
/// only): for spoofed SPA replays in tests. Must run inside the sender's namespace.
pub fn send_raw_udp4(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(src_port, dst_port);
    let mut packet = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut packet, payload)
        .map_err(std::io::Error::other)?;
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )?;
    s.send_to(
        &packet,
        &SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0)),
    )
    .map(|_| ())
}

/// Sends one complete IPv4 or IPv6 packet, header included, exactly as given (root only): for
/// stealth SYNs and spoofed replays in tests. Must run inside the sender's namespace.
pub fn send_raw_ip(packet: &[u8], dst: IpAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // IPPROTO_RAW implies IP_HDRINCL for IPv4 and (since Linux 4.5) IPV6_HDRINCL for IPv6
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    s.send_to(packet, &SockAddr::from(SocketAddr::new(dst, 0)))
        .map(|_| ())
}
