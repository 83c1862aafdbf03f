//! Sending knocks the way the `knock` client does, so that knockd (and knockerd's sequence doors)
//! see exactly what they expect: one TCP SYN, or one one-byte UDP datagram, per port.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use knocker_wire::{ParseError, Proto, Service};
use socket2::{Domain, Protocol, Socket, Type};

/// Which address family to use when HOST resolves to several addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    /// The first address the resolver returns, as `knock` does.
    #[default]
    Any,
    V4,
    V6,
}

impl Family {
    fn admits(self, addr: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }

    /// The spelling used in profiles.toml: `any`, `4` or `6`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Any => "any",
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Family::Any => "IP",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown address family {0:?}: use \"any\", \"4\" or \"6\"")]
pub struct BadFamily(pub String);

impl FromStr for Family {
    type Err = BadFamily;
    fn from_str(s: &str) -> Result<Self, BadFamily> {
        match s.trim().to_ascii_lowercase().as_str() {
            "any" | "" => Ok(Family::Any),
            "4" | "ipv4" | "inet" => Ok(Family::V4),
            "6" | "ipv6" | "inet6" => Ok(Family::V6),
            _ => Err(BadFamily(s.to_string())),
        }
    }
}

/// A port argument that is not `PORT[:tcp|:udp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPort {
    pub arg: String,
    pub source: ParseError,
}

impl fmt::Display for BadPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            // The engine's message already quotes the offending number: `bad port "70000": ...`.
            ParseError::Port(_) => write!(f, "{}", self.source),
            other => write!(f, "bad port {:?}: {other}", self.arg),
        }
    }
}

impl std::error::Error for BadPort {}

/// Parses one knock port in `knock`'s syntax (also `udp/7000` and `7000/udp`). A port that names
/// no protocol gets `default` (`-u` makes that UDP).
pub fn parse_port(arg: &str, default: Proto) -> Result<Service, BadPort> {
    let service: Service = arg.parse().map_err(|source| BadPort {
        arg: arg.to_string(),
        source,
    })?;
    if arg.contains([':', '/']) {
        Ok(service)
    } else {
        Ok(Service::new(default, service.port))
    }
}

pub fn parse_sequence<S: AsRef<str>>(args: &[S], default: Proto) -> Result<Vec<Service>, BadPort> {
    args.iter()
        .map(|a| parse_port(a.as_ref(), default))
        .collect()
}

/// How a service is written in `knock`'s syntax: `7000` for TCP, `9000:udp` for UDP (and
/// `icmp/100` for an ICMP step, which `knock` does not have). This is the form profiles store,
/// so a saved sequence reads the same as a command line.
pub fn knock_syntax(service: Service) -> String {
    match service.proto {
        Proto::Tcp => service.port.to_string(),
        Proto::Udp => format!("{}:udp", service.port),
        Proto::Icmp => service.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KnockError {
    #[error("unknown host {host:?}: {source}")]
    UnknownHost { host: String, source: io::Error },
    #[error("no {} address for {host:?}{}", .family.describe(), found_note(.found))]
    NoAddress {
        host: String,
        family: Family,
        /// What the host did resolve to, to make the mismatch obvious.
        found: Vec<IpAddr>,
    },
    #[error("cannot send an ICMP echo request of {size} bytes to {ip}: {source} (an ICMP step needs root, CAP_NET_RAW, or a group in net.ipv4.ping_group_range)")]
    Echo {
        ip: IpAddr,
        size: u16,
        source: io::Error,
    },
    #[error("cannot knock {proto} {addr}: {source}")]
    Send {
        proto: Proto,
        addr: SocketAddr,
        source: io::Error,
    },
}

fn found_note(found: &[IpAddr]) -> String {
    if found.is_empty() {
        return String::new();
    }
    let list: Vec<String> = found.iter().map(IpAddr::to_string).collect();
    format!(" (it has only {})", list.join(", "))
}

/// Resolves HOST (a name, an IPv4 literal, or an IPv6 literal, bracketed or not) to the one
/// address every knock of a sequence goes to. Resolving once matters: a name with several
/// addresses must not spread one sequence over several servers.
pub fn resolve(host: &str, family: Family) -> Result<IpAddr, KnockError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let found: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (bare, 0)
            .to_socket_addrs()
            .map_err(|source| KnockError::UnknownHost {
                host: host.to_string(),
                source,
            })?
            .map(|sa| sa.ip())
            .collect(),
    };
    // getaddrinfo returns one entry per socket type; keep the first of each address.
    let mut unique: Vec<IpAddr> = Vec::new();
    for ip in found {
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    match unique.iter().copied().find(|ip| family.admits(*ip)) {
        Some(ip) => Ok(ip),
        None => Err(KnockError::NoAddress {
            host: host.to_string(),
            family,
            found: unique,
        }),
    }
}

/// Sends one knock. TCP: a non-blocking connect puts exactly one SYN on the wire, and closing the
/// socket at once (still in SYN-SENT) makes the kernel forget the attempt: it never retransmits the
/// SYN and sends no FIN (a server that does answer SYN-ACK gets the RST any stray segment gets).
/// UDP: one datagram holding a single zero byte, as `knock` sends. ICMP: one echo request with
/// `service.port` bytes of payload, as `ping -c1 -s N` sends it ([`echo_request`]).
pub fn knock_one(ip: IpAddr, service: Service) -> Result<(), KnockError> {
    let addr = SocketAddr::new(ip, service.port);
    let send_err = |source| KnockError::Send {
        proto: service.proto,
        addr,
        source,
    };
    match service.proto {
        Proto::Tcp => {
            let socket = Socket::new(
                Domain::for_address(addr),
                Type::STREAM.nonblocking(),
                Some(Protocol::TCP),
            )
            .map_err(send_err)?;
            match socket.connect(&addr.into()) {
                Ok(()) => {}
                // The SYN has left; the answer (if any) is not our business.
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                // A local listener may refuse synchronously; the SYN was still sent.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(send_err(e)),
            }
            drop(socket);
        }
        Proto::Udp => {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
                .map_err(send_err)?;
            socket.send_to(&[0u8], &addr.into()).map_err(send_err)?;
        }
        Proto::Icmp => {
            echo_request(ip, service.port).map_err(|source| KnockError::Echo {
                ip,
                size: service.port,
                source,
            })?;
        }
    }
    Ok(())
}

/// Sends one ICMP echo request (ICMPv6 to an IPv6 address) with `size` bytes of payload, laid
/// out as iputils' `ping -s size` lays it out (an 8-byte echo header, then the payload: a
/// 16-byte time stamp when it fits, then the bytes 0x10, 0x11, ...), so that an observer sees
/// a ping of an unusual size. Through an unprivileged ICMP datagram socket where
/// net.ipv4.ping_group_range allows it (the kernel then sets the identifier and the checksum),
/// else a raw socket (root or CAP_NET_RAW).
pub fn echo_request(ip: IpAddr, size: u16) -> io::Result<()> {
    let (domain, protocol, kind) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let mut message = vec![0u8; 8 + usize::from(size)];
    message[0] = kind;
    let id = std::process::id() as u16;
    message[4..6].copy_from_slice(&id.to_be_bytes());
    message[6..8].copy_from_slice(&1u16.to_be_bytes());
    let payload = &mut message[8..];
    let start = if payload.len() >= 16 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        payload[..8].copy_from_slice(&now.as_secs().to_le_bytes());
        payload[8..16].copy_from_slice(&u64::from(now.subsec_micros()).to_le_bytes());
        16
    } else {
        0
    };
    for (i, b) in payload.iter_mut().enumerate().skip(start) {
        *b = i as u8;
    }
    if ip.is_ipv4() {
        // A raw ICMPv4 socket sends what it is given; the kernel computes ICMPv6's itself.
        let sum = internet_checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol))
        .or_else(|_| Socket::new(domain, Type::RAW, Some(protocol)))?;
    socket.send_to(&message, &SocketAddr::new(ip, 0).into())?;
    Ok(())
}

/// RFC 1071's checksum: the ones' complement of the ones' complement sum of 16-bit words.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Knocks every service of `sequence` on `ip`, in order, waiting `delay` after each one (also
/// after the last, as `knock` does, which gives the server time to open before the caller
/// connects). `before_each` sees every knock just before it is sent (for `-v`).
pub fn knock_sequence(
    ip: IpAddr,
    sequence: &[Service],
    delay: Duration,
    mut before_each: impl FnMut(Proto, SocketAddr),
) -> Result<(), KnockError> {
    for service in sequence {
        before_each(service.proto, SocketAddr::new(ip, service.port));
        knock_one(ip, *service)?;
        if !delay.is_zero() {
            thread::sleep(delay);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

    #[test]
    fn ports_take_the_default_protocol_only_when_they_name_none() {
        assert_eq!(parse_port("7000", Proto::Tcp), Ok(Service::tcp(7000)));
        assert_eq!(parse_port("7000", Proto::Udp), Ok(Service::udp(7000)));
        assert_eq!(parse_port("7000:tcp", Proto::Udp), Ok(Service::tcp(7000)));
        assert_eq!(parse_port("9000:udp", Proto::Tcp), Ok(Service::udp(9000)));
        assert_eq!(parse_port("udp/9000", Proto::Tcp), Ok(Service::udp(9000)));
        assert_eq!(parse_port("9000/tcp", Proto::Udp), Ok(Service::tcp(9000)));
        assert_eq!(
            parse_sequence(&["1", "2:udp", "3"], Proto::Tcp),
            Ok(vec![Service::tcp(1), Service::udp(2), Service::tcp(3)])
        );
    }

    #[test]
    fn bad_ports_say_what_is_wrong() {
        let e = parse_port("70000", Proto::Tcp).expect_err("out of range");
        assert!(
            e.to_string()
                .starts_with("bad port \"70000\": a port is a number"),
            "{e}"
        );
        let e = parse_port("0", Proto::Tcp).expect_err("zero");
        assert!(e.to_string().starts_with("bad port \"0\""), "{e}");
        let e = parse_port("22:sctp", Proto::Tcp).expect_err("protocol");
        assert_eq!(
            e.to_string(),
            "bad port \"22:sctp\": unknown protocol \"sctp\": use tcp or udp"
        );
        assert!(parse_port("", Proto::Tcp).is_err());
        assert!(parse_port("ssh", Proto::Tcp).is_err());
        assert!(parse_sequence(&["1", "x"], Proto::Tcp).is_err());
    }

    #[test]
    fn echo_checksums_are_rfc_1071s() {
        // an echo request with id 1, seq 1 and no payload: 0800 0000 0001 0001
        assert_eq!(internet_checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
        // an odd length is padded with a zero byte
        assert_eq!(internet_checksum(&[0xff]), 0x00ff);
        let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3];
        let sum = internet_checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            internet_checksum(&m),
            0,
            "a message with its checksum sums to zero"
        );
    }

    #[test]
    fn knock_syntax_round_trips() {
        assert_eq!(
            parse_port("icmp/100", Proto::Udp),
            Ok(Service::new(Proto::Icmp, 100))
        );
        assert_eq!(knock_syntax(Service::new(Proto::Icmp, 100)), "icmp/100");
        for s in [
            Service::tcp(7000),
            Service::udp(9000),
            Service::tcp(1),
            Service::new(Proto::Icmp, 100),
        ] {
            assert_eq!(knock_syntax(s).parse::<Service>(), Ok(s));
        }
        assert_eq!(knock_syntax(Service::tcp(7000)), "7000");
        assert_eq!(knock_syntax(Service::udp(9000)), "9000:udp");
    }

    #[test]
    fn families() {
        assert_eq!("any".parse(), Ok(Family::Any));
        assert_eq!("4".parse(), Ok(Family::V4));
        assert_eq!("IPv6".parse(), Ok(Family::V6));
        assert!("5".parse::<Family>().is_err());
        for f in [Family::Any, Family::V4, Family::V6] {
            assert_eq!(f.as_str().parse(), Ok(f));
        }
    }

    #[test]
    fn literals_resolve_without_a_resolver_and_respect_the_family() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 200, 1, 1));
        let v6: IpAddr = "fd00:200:1::1".parse().expect("literal");
        assert_eq!(resolve("10.200.1.1", Family::Any).expect("v4"), v4);
        assert_eq!(resolve("10.200.1.1", Family::V4).expect("v4"), v4);
        assert_eq!(resolve("fd00:200:1::1", Family::V6).expect("v6"), v6);
        assert_eq!(resolve("[fd00:200:1::1]", Family::Any).expect("v6"), v6);

        let e = resolve("10.200.1.1", Family::V6).expect_err("family");
        assert_eq!(
            e.to_string(),
            "no IPv6 address for \"10.200.1.1\" (it has only 10.200.1.1)"
        );
        let e = resolve("fd00:200:1::1", Family::V4).expect_err("family");
        assert!(e.to_string().starts_with("no IPv4 address for"), "{e}");
    }

    #[test]
    fn localhost_resolves_by_name() {
        // Every sane /etc/hosts names localhost; this exercises the getaddrinfo path.
        assert_eq!(
            resolve("localhost", Family::V4).expect("localhost"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn a_udp_knock_is_one_byte() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = server.local_addr().expect("addr").port();
        knock_one(IpAddr::V4(Ipv4Addr::LOCALHOST), Service::udp(port)).expect("knock");
        let mut buf = [0xffu8; 16];
        let (n, _) = server.recv_from(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], &[0u8]);
    }

    #[test]
    fn a_tcp_knock_to_a_closed_port_is_not_an_error() {
        // Bind-then-drop finds a port with nobody listening; the kernel answers RST, which the
        // knock never waits for.
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        knock_one(IpAddr::V4(Ipv4Addr::LOCALHOST), Service::tcp(port)).expect("knock");
        if let Ok(sock) = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
            let port = sock.local_addr().expect("addr").port();
            drop(sock);
            knock_one(IpAddr::V6(Ipv6Addr::LOCALHOST), Service::tcp(port)).expect("knock v6");
        }
    }
}
