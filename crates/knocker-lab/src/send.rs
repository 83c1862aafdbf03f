//! Packets from inside a namespace: knocks as knock(1) sends them, TCP connection probes, and
//! the spoofing sender (raw sockets, any source address; root only). Every function here must
//! run on a thread inside the sender's namespace ([`crate::Netns::enter`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use knocker_engine::{Proto, Service, TcpFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Sends one knock the way knock(1) does: one SYN from a non-blocking connect that is closed at
/// once, or a one-byte UDP datagram.
pub fn send_knock(host: IpAddr, service: Service) -> std::io::Result<()> {
    ReadyKnock::new(None, host, service)?.send()
}

/// [`send_knock`] from one of this namespace's own addresses (`src`), for hosts that have
/// several.
pub fn send_knock_from(src: IpAddr, host: IpAddr, service: Service) -> std::io::Result<()> {
    ReadyKnock::new(Some(src), host, service)?.send()
}

/// A knock whose socket is made (and bound) already, so that a timed sender starts its clock
/// just before the packet leaves.
pub struct ReadyKnock {
    socket: Socket,
    to: SocketAddr,
    proto: Proto,
}

impl ReadyKnock {
    pub fn new(src: Option<IpAddr>, host: IpAddr, service: Service) -> std::io::Result<ReadyKnock> {
        let to = SocketAddr::new(host, service.port);
        let domain = Domain::for_address(to);
        let socket = match service.proto {
            Proto::Tcp => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
            Proto::Udp => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
            Proto::Icmp => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "an ICMP step: send it with ping -s N or knocker knock",
                ))
            }
        };
        if let Some(src) = src {
            socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        }
        if service.proto == Proto::Tcp {
            socket.set_nonblocking(true)?;
        }
        Ok(ReadyKnock {
            socket,
            to,
            proto: service.proto,
        })
    }

    /// Sends it: the SYN of a connect that is not waited for, or the one-byte datagram; the
    /// socket closes when this returns.
    pub fn send(self) -> std::io::Result<()> {
        let to = SockAddr::from(self.to);
        match self.proto {
            Proto::Tcp => match self.socket.connect(&to) {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
                Err(e) => Err(e),
            },
            Proto::Udp => self.socket.send_to(&[0u8], &to).map(|_| ()),
            Proto::Icmp => Err(std::io::ErrorKind::Unsupported.into()),
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

/// Sends one complete IPv4 or IPv6 packet, header included, exactly as given (root only): for
/// stealth SYNs and spoofed replays.
pub fn send_raw_ip(packet: &[u8], dst: IpAddr) -> std::io::Result<()> {
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // IPPROTO_RAW implies IP_HDRINCL for IPv4 and (since Linux 4.5) IPV6_HDRINCL for IPv6: the
    // kernel sends our header as it is.
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    s.send_to(packet, &SockAddr::from(SocketAddr::new(dst, 0)))
        .map(|_| ())
}

/// Sends one hand-made IPv4 TCP segment with any source address and flags (root only): for
/// flag-filter tests and spoofed knocks.
pub fn send_raw_tcp4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    flags: TcpFlags,
) -> std::io::Result<()> {
    let packet = crate::packet::tcp(
        src.into(),
        dst.into(),
        src_port,
        dst_port,
        0x1000_0000,
        flags,
    );
    send_raw_ip(&packet, dst.into())
}

/// Sends one hand-made IPv4 UDP datagram with any source address (root only): for spoofed SPA
/// replays.
pub fn send_raw_udp4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> std::io::Result<()> {
    let packet = crate::packet::udp(src.into(), dst.into(), src_port, dst_port, payload);
    send_raw_ip(&packet, dst.into())
}
