//! Stealth SYN, the sending side: one TCP SYN through a raw socket, shaped like the SYN this
//! host's kernel would send for `connect()` to the same destination, with the authenticator of
//! [`knocker_wire::syn`] in its sequence number and timestamp, and the key's hint in its IPv4 ID
//! or IPv6 flow label.
//!
//! The shape is read where the kernel reads it:
//!
//! - the source address: the kernel's route choice (a UDP socket connected to the destination
//!   says which local address it would use);
//! - the MTU, and the route's `advmss` and `hoplimit` if it sets them: `ip -o route get DST`
//!   (the device and the route's metrics), then the device's MTU (`ip -o link show dev DEV`, or
//!   `/proc/sys/net/ipv6/conf/DEV/mtu` for IPv6). Without `unsafe` this crate cannot ask the
//!   socket for `IP_MTU`, and `/sys/class/net` belongs to the namespace sysfs was mounted in, so
//!   the `ip` program is asked; if it cannot answer, 1500 is assumed (listed in [`Sent::guessed`]);
//! - the window and window scale: `/proc/sys/net/ipv4/tcp_rmem`, `/proc/sys/net/core/rmem_max`
//!   and `tcp_workaround_signed_windows`, computed as `tcp_select_initial_window` does
//!   ([`knocker_wire::syn::linux_shape_with`]);
//! - the TTL: `/proc/sys/net/ipv4/ip_default_ttl`; the IPv6 hop limit:
//!   `/proc/sys/net/ipv6/conf/DEV/hop_limit` (the kernel uses the device's), else `conf/all`.
//!
//! A source port the host uses right now is no problem: the kernel answers the server's SYN-ACK,
//! if any, with a reset, as for any port without a socket. Network address translation between
//! client and server rewrites the source address and port, which the authenticator covers: a
//! stealth SYN only works without NAT.
//!
//! knockerd's end-to-end test (`crates/knockerd/tests/syn_shape.rs`) sends with [`send`], so the
//! test sends exactly what the client sends.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};

use knocker_wire::syn::{self, LinuxTcp, Shape, SynError, SynKey};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What [`send`] sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The source address the kernel's routing chose, which the authenticator covers.
    pub src: IpAddr,
    pub src_port: u16,
    /// The time step the authenticator is for.
    pub step: u64,
    pub shape: Shape,
    /// Values that could not be read and were assumed (e.g. `"mtu"`): the SYN may differ from
    /// this host's own there.
    pub guessed: Vec<&'static str>,
}

/// The message a permission error gets: raw sockets need root or CAP_NET_RAW.
pub const PERMISSION_HINT: &str = "sending a stealth SYN needs a raw socket: run as root or `sudo setcap cap_net_raw+ep $(command -v knocker)`";

/// Sends one stealth SYN for `slot` (the index of the wanted service in the door's `open` list)
/// to `dst` (the door's TCP port) in the time step of `now_unix`.
pub fn send(key: &SynKey, dst: SocketAddr, slot: u8, now_unix: u64) -> io::Result<Sent> {
    // The socket first: without the privilege nothing else is worth doing.
    let socket = raw_socket(dst.ip())?;
    let (packet, sent) = prepare(key, dst, slot, now_unix)?;
    let to = match dst {
        SocketAddr::V4(a) => SockAddr::from(SocketAddr::new(IpAddr::V4(*a.ip()), 0)),
        // A raw IPv6 socket takes the port field as the protocol: 0 means its own.
        SocketAddr::V6(a) => SockAddr::from(SocketAddrV6::new(*a.ip(), 0, 0, a.scope_id())),
    };
    let n = socket.send_to(&packet, &to).map_err(permission_hint)?;
    if n != packet.len() {
        return Err(io::Error::other(format!(
            "the kernel took {n} of the SYN's {} bytes",
            packet.len()
        )));
    }
    Ok(sent)
}

/// The SYN [`send`] would send, and what it is: the packet from its IP header on.
pub fn prepare(
    key: &SynKey,
    dst: SocketAddr,
    slot: u8,
    now_unix: u64,
) -> io::Result<(Vec<u8>, Sent)> {
    let host = read_host(dst)?;
    let step = syn::step(now_unix);
    let (src_port, marks) =
        syn::choose(key, step, host.src, dst.ip(), dst.port(), slot).map_err(|e| match e {
            SynError::Slot(_) => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            other => io::Error::other(other.to_string()),
        })?;
    let packet = syn::build(
        host.src,
        dst.ip(),
        src_port,
        dst.port(),
        &marks,
        &host.shape,
    );
    Ok((
        packet,
        Sent {
            src: host.src,
            src_port,
            step,
            shape: host.shape,
            guessed: host.guessed,
        },
    ))
}

/// The source address and the shape of this host's SYNs to `dst`, read as the module docs say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub src: IpAddr,
    pub shape: Shape,
    pub guessed: Vec<&'static str>,
}

/// Reads the source address and the SYN shape for `dst` in the current network namespace.
pub fn read_host(dst: SocketAddr) -> io::Result<Host> {
    let src = source_address(dst)?;
    let v6 = dst.is_ipv6();
    let mut guessed = Vec::new();
    let route = route_get(dst.ip());
    let dev = route.as_ref().and_then(|r| r.dev.clone());
    let mtu = route
        .as_ref()
        .and_then(|r| r.mtu)
        .or_else(|| dev.as_deref().and_then(|d| device_mtu(d, v6)));
    let mtu = mtu.unwrap_or_else(|| {
        guessed.push("mtu");
        1500
    });
    let mut tcp = LinuxTcp::DEFAULT;
    match read_numbers::<3>("/proc/sys/net/ipv4/tcp_rmem") {
        Some(v) => tcp.tcp_rmem = v,
        None => guessed.push("tcp_rmem"),
    }
    match read_numbers::<1>("/proc/sys/net/core/rmem_max") {
        Some([v]) => tcp.rmem_max = v,
        None => guessed.push("rmem_max"),
    }
    if let Some([v]) = read_numbers::<1>("/proc/sys/net/ipv4/tcp_workaround_signed_windows") {
        tcp.signed_windows = v != 0;
    }
    tcp.advmss = route.as_ref().and_then(|r| r.advmss);
    let ttl = route.as_ref().and_then(|r| r.hoplimit).or_else(|| {
        let path = if v6 {
            dev.as_deref()
                .filter(|d| safe_name(d))
                .map(|d| format!("/proc/sys/net/ipv6/conf/{d}/hop_limit"))
                .filter(|p| Path::new(p).exists())
                .unwrap_or_else(|| "/proc/sys/net/ipv6/conf/all/hop_limit".to_string())
        } else {
            "/proc/sys/net/ipv4/ip_default_ttl".to_string()
        };
        read_numbers::<1>(&path).and_then(|[t]| u8::try_from(t).ok())
    });
    tcp.ttl = ttl.unwrap_or_else(|| {
        guessed.push("ttl");
        64
    });
    Ok(Host {
        src,
        shape: syn::linux_shape_with(v6, mtu, &tcp),
        guessed,
    })
}

/// The local address the kernel would send from to `dst`: connecting a UDP socket sends
/// nothing, it only routes.
pub(crate) fn source_address(dst: SocketAddr) -> io::Result<IpAddr> {
    let any = match dst {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let udp = UdpSocket::bind(any)?;
    // Port 0 cannot be connected to; the port plays no part in routing.
    let mut to = dst;
    if to.port() == 0 {
        to.set_port(9);
    }
    udp.connect(to)
        .map_err(|e| io::Error::new(e.kind(), format!("no route to {}: {e}", dst.ip())))?;
    Ok(udp.local_addr()?.ip())
}

pub(crate) fn raw_socket(dst: IpAddr) -> io::Result<Socket> {
    let raw = Some(Protocol::from(libc::IPPROTO_RAW));
    let socket = match dst {
        // IPPROTO_RAW implies IP_HDRINCL: the kernel sends our header as it is (it fills in
        // only a zero ID, which `syn::choose` never leaves, and the checksum).
        IpAddr::V4(_) => Socket::new(Domain::IPV4, Type::RAW, raw),
        IpAddr::V6(_) => Socket::new(Domain::IPV6, Type::RAW, raw),
    }
    .map_err(permission_hint)?;
    if dst.is_ipv6() {
        // IPV6_HDRINCL (36): implied by IPPROTO_RAW on current kernels, set to be sure.
        socket.set_header_included_v6(true)?;
    }
    Ok(socket)
}

pub(crate) fn permission_hint(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            io::Error::new(io::ErrorKind::PermissionDenied, PERMISSION_HINT)
        }
        _ => e,
    }
}

/// What `ip -o route get` says about the route to an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Route {
    dev: Option<String>,
    mtu: Option<u32>,
    advmss: Option<u32>,
    hoplimit: Option<u8>,
}

/// Where the `ip` program may be: a user's PATH often lacks the sbin directories.
const IP_PROGRAMS: [&str; 5] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip", "ip"];

/// Runs `ip` with fixed arguments (the address is printed by Rust, never taken from text);
/// its stdout if it succeeded.
fn run_ip(args: &[&str]) -> Option<String> {
    for program in IP_PROGRAMS {
        if program.starts_with('/') && !Path::new(program).exists() {
            continue;
        }
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        return out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
    }
    None
}

fn route_get(dst: IpAddr) -> Option<Route> {
    let addr = dst.to_string();
    run_ip(&["-o", "route", "get", &addr]).map(|out| parse_route(&out))
}

/// Reads `ip -o route get` output: `10.0.0.2 dev eth0 src 10.0.0.1 uid 0 \    cache mtu 1400`.
fn parse_route(out: &str) -> Route {
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut route = Route::default();
    let mut i = 0;
    while i < words.len() {
        let next = |n: usize| words.get(i + n).copied().unwrap_or_default();
        // Metrics may be locked: `mtu lock 1400`.
        let value = || {
            if next(1) == "lock" {
                next(2)
            } else {
                next(1)
            }
        };
        match words[i] {
            "dev" if route.dev.is_none() => route.dev = Some(next(1).to_string()),
            "mtu" => route.mtu = value().parse().ok(),
            "advmss" => route.advmss = value().parse().ok(),
            "hoplimit" => route.hoplimit = value().parse().ok(),
            _ => {}
        }
        i += 1;
    }
    route
}

/// An interface name that can go into a /proc path: no slashes, no dots-only names.
fn safe_name(dev: &str) -> bool {
    !dev.is_empty()
        && dev.len() <= 15
        && dev != "."
        && dev != ".."
        && dev.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// The device's MTU for this family: IPv6 keeps its own (it may be lower than the link's).
fn device_mtu(dev: &str, v6: bool) -> Option<u32> {
    if !safe_name(dev) {
        return None;
    }
    if v6 {
        if let Some([mtu]) = read_numbers::<1>(&format!("/proc/sys/net/ipv6/conf/{dev}/mtu")) {
            return Some(mtu);
        }
    }
    run_ip(&["-o", "link", "show", "dev", dev]).and_then(|out| parse_link_mtu(&out))
}

/// Reads `ip -o link show` output: `2: eth0: <...> mtu 1500 qdisc ...`.
fn parse_link_mtu(out: &str) -> Option<u32> {
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

/// Reads a /proc/sys file of N whitespace-separated numbers (a few bytes; read bounded).
fn read_numbers<const N: usize>(path: &str) -> Option<[u32; N]> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    parse_numbers(&text)
}

fn parse_numbers<const N: usize>(text: &str) -> Option<[u32; N]> {
    let mut out = [0u32; N];
    let mut words = text.split_whitespace();
    for slot in &mut out {
        *slot = words.next()?.parse().ok()?;
    }
    words.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_output() {
        let r = parse_route("10.9.0.2 dev v0 src 10.9.0.1 uid 0 \\    cache \n");
        assert_eq!(
            r,
            Route {
                dev: Some("v0".into()),
                ..Route::default()
            }
        );
        let r = parse_route(
            "203.0.113.1 via 10.0.0.1 dev eth0 src 10.0.0.2 uid 1000 \\    cache expires 590sec mtu lock 1400 advmss 1360 hoplimit 32",
        );
        assert_eq!(r.dev.as_deref(), Some("eth0"));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.advmss, Some(1360));
        assert_eq!(r.hoplimit, Some(32));
        let r = parse_route(
            "fd00:9::2 from :: dev v0 proto kernel src fd00:9::1 metric 256 pref medium",
        );
        assert_eq!(r.dev.as_deref(), Some("v0"));
        assert_eq!(r.mtu, None);
        assert_eq!(parse_route(""), Route::default());
        assert_eq!(
            parse_route("dev"),
            Route {
                dev: Some(String::new()),
                ..Route::default()
            }
        );
    }

    #[test]
    fn link_output() {
        assert_eq!(
            parse_link_mtu(
                "2: eth0@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP"
            ),
            Some(1500)
        );
        assert_eq!(parse_link_mtu("2: eth0: <UP> qdisc noqueue"), None);
        assert_eq!(parse_link_mtu("mtu"), None);
    }

    #[test]
    fn proc_numbers() {
        assert_eq!(
            parse_numbers::<3>("4096\t131072\t6291456\n"),
            Some([4096, 131072, 6291456])
        );
        assert_eq!(parse_numbers::<1>("64\n"), Some([64]));
        assert_eq!(parse_numbers::<3>("4096 131072"), None);
        assert_eq!(parse_numbers::<1>("1 2"), None);
        assert_eq!(parse_numbers::<1>("-1"), None);
    }

    #[test]
    fn interface_names() {
        assert!(safe_name("eth0"));
        assert!(safe_name("veth-a.10"));
        assert!(!safe_name(".."));
        assert!(!safe_name("a/b"));
        assert!(!safe_name(""));
        assert!(!safe_name("a-very-long-interface-name"));
    }

    /// Reads this host's values (whatever they are) without sending anything.
    #[test]
    fn reads_the_loopback_shape() {
        let host = read_host("127.0.0.1:443".parse().expect("addr")).expect("route to loopback");
        assert_eq!(host.src, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(host.shape.mss >= 256, "{host:?}");
        assert!(host.shape.ttl > 0);
    }

    #[test]
    fn bad_slots_are_refused_before_anything_is_sent() {
        let key = SynKey::from_bytes([1; 32]);
        let e = prepare(&key, "127.0.0.1:443".parse().expect("addr"), 16, 0).expect_err("slot 16");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let (packet, sent) =
            prepare(&key, "127.0.0.1:443".parse().expect("addr"), 5, 3000).expect("prepare");
        let seen = syn::parse(&packet).expect("parses");
        assert_eq!(syn::verify(&key, sent.step, &seen), Some(5));
        assert_eq!(seen.src_port, sent.src_port);
        assert_eq!(sent.step, 100);
    }
}
