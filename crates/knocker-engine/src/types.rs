//! The vocabulary shared by every part of knocker: protocols, services, knocks and grants.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// A transport protocol that knocks and grants speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IANA protocol number, as nftables' `inet_proto` stores it.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a port, protocol or flag specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown protocol {0:?}: use tcp or udp")]
    Proto(String),
    #[error("bad port {0:?}: a port is a number from 1 to 65535")]
    Port(String),
    #[error("unknown TCP flag {0:?}: use fin, syn, rst, psh, ack, urg, ece or cwr, each optionally prefixed with '!'")]
    Flag(String),
    #[error("TCP flag {0} is both required and forbidden")]
    FlagConflict(String),
}

impl FromStr for Proto {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(ParseError::Proto(s.to_string())),
        }
    }
}

/// One protocol and port: what a knock hits or what a grant opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    pub proto: Proto,
    pub port: u16,
}

impl Service {
    pub fn new(proto: Proto, port: u16) -> Self {
        Service { proto, port }
    }
    pub fn tcp(port: u16) -> Self {
        Service::new(Proto::Tcp, port)
    }
    pub fn udp(port: u16) -> Self {
        Service::new(Proto::Udp, port)
    }
}

/// Displays as `tcp/22`, the form every log line and config uses.
impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto, self.port)
    }
}

fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ParseError::Port(s.to_string())),
    }
}

/// Accepts `22` (tcp), `22:udp` (knock's syntax), `udp/22` and `22/udp`.
impl FromStr for Service {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once(':') {
            return Ok(Service::new(b.parse()?, parse_port(a)?));
        }
        if let Some((a, b)) = s.split_once('/') {
            // `tcp/22` or `22/tcp`
            return match a.parse::<Proto>() {
                Ok(proto) => Ok(Service::new(proto, parse_port(b)?)),
                Err(_) => Ok(Service::new(b.parse()?, parse_port(a)?)),
            };
        }
        Ok(Service::tcp(parse_port(s)?))
    }
}

/// TCP header flags, bit for bit as on the wire (FIN is bit 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    const NAMES: [(&'static str, TcpFlags); 8] = [
        ("fin", TcpFlags::FIN),
        ("syn", TcpFlags::SYN),
        ("rst", TcpFlags::RST),
        ("psh", TcpFlags::PSH),
        ("ack", TcpFlags::ACK),
        ("urg", TcpFlags::URG),
        ("ece", TcpFlags::ECE),
        ("cwr", TcpFlags::CWR),
    ];

    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = TcpFlags::NAMES
            .iter()
            .filter(|(_, flag)| self.contains(*flag))
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// A TCP flag filter in knockd's syntax: `syn,!ack` means SYN set and ACK clear; flags not listed
/// are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlagFilter {
    pub set: TcpFlags,
    pub clear: TcpFlags,
}

impl FlagFilter {
    pub fn matches(&self, flags: TcpFlags) -> bool {
        flags.contains(self.set) && flags.0 & self.clear.0 == 0
    }
}

impl FromStr for FlagFilter {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut filter = FlagFilter::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (negated, name) = match word.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, word),
            };
            let flag = TcpFlags::NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, f)| *f)
                .ok_or_else(|| ParseError::Flag(word.to_string()))?;
            if negated {
                filter.clear = filter.clear.union(flag);
            } else {
                filter.set = filter.set.union(flag);
            }
        }
        if filter.set.0 & filter.clear.0 != 0 {
            return Err(ParseError::FlagConflict(
                TcpFlags(filter.set.0 & filter.clear.0).to_string(),
            ));
        }
        Ok(filter)
    }
}

impl fmt::Display for FlagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        for (name, flag) in TcpFlags::NAMES {
            if self.set.contains(flag) {
                parts.push(name.to_string());
            }
            if self.clear.contains(flag) {
                parts.push(format!("!{name}"));
            }
        }
        f.write_str(&parts.join(","))
    }
}

/// One packet as a source saw it: everything a door may look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knock {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags; empty for UDP.
    pub tcp_flags: TcpFlags,
}

impl Knock {
    pub fn service(&self) -> Service {
        Service::new(self.proto, self.dst_port)
    }
}

/// A decision to open: which services, to which source address, for how long, and why.
/// The gatekeeper validates it against the configuration before applying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Index of the door in the engine's configuration.
    pub door: usize,
    pub door_name: String,
    pub to: IpAddr,
    pub open: Vec<Service>,
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_syntaxes() {
        assert_eq!("22".parse::<Service>(), Ok(Service::tcp(22)));
        assert_eq!("53:udp".parse::<Service>(), Ok(Service::udp(53)));
        assert_eq!("53:UDP".parse::<Service>(), Ok(Service::udp(53)));
        assert_eq!("udp/53".parse::<Service>(), Ok(Service::udp(53)));
        assert_eq!("53/udp".parse::<Service>(), Ok(Service::udp(53)));
        assert_eq!(Service::udp(53).to_string(), "udp/53");
        assert!("0".parse::<Service>().is_err());
        assert!("65536".parse::<Service>().is_err());
        assert!("22:sctp".parse::<Service>().is_err());
        assert!("".parse::<Service>().is_err());
        assert!("-1".parse::<Service>().is_err());
    }

    #[test]
    fn flag_filter() {
        let f: FlagFilter = "syn,!ack".parse().expect("valid");
        assert!(f.matches(TcpFlags::SYN));
        assert!(f.matches(TcpFlags::SYN.union(TcpFlags::ECE)));
        assert!(!f.matches(TcpFlags::SYN.union(TcpFlags::ACK)));
        assert!(!f.matches(TcpFlags::RST));
        assert_eq!(f.to_string(), "syn,!ack");
        assert!("syn,!syn".parse::<FlagFilter>().is_err());
        assert!("syn,bogus".parse::<FlagFilter>().is_err());
        assert!(FlagFilter::default().matches(TcpFlags(0xff)));
    }
}
