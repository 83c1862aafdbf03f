//! The vocabulary every wire format speaks: protocols and services.
//!
//! These are the definitions `knocker-engine` used to hold in its `types.rs`, moved here (with the
//! same names, methods, parsing and error messages) because the engine's doors call into this
//! crate, so this crate cannot depend on the engine. The engine re-exports them.

use std::fmt;
use std::str::FromStr;

/// A transport protocol that knocks and grants speak; and ICMP, for knocks only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    /// An ICMP echo request (ICMPv6 over IPv6), as `ping -s N` sends it: a sequence step,
    /// never a service a door opens. Its [`Service::port`] is the echo's payload size N (the
    /// ICMP message is 8 + N bytes), written `icmp/N`.
    Icmp,
}

impl Proto {
    /// The IANA protocol number, as nftables' `inet_proto` stores it.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a port, protocol or flag specification was refused. (The flag variants are for the
/// engine's TCP flag filters, which share this error type.)
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

/// Only `tcp` and `udp`: the protocols of ports. An ICMP step is written `icmp/N` as a
/// [`Service`].
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

/// A map keyed by [`Service`] and hashed without a key ([`ServiceHasher`]), for the maps that
/// hold a configuration's services and are looked up once or more a packet (the engine's and
/// the packet worker's port indexes). A keyed hash is there to keep an attacker from growing a
/// map's probe chains with keys of his choosing; a packet only looks these maps up and never
/// adds to them, so whatever port it carries, a lookup probes at most the configured entries.
/// SipHash, the default, took three hashes a packet and about a tenth of the packet worker's
/// time under a flood (BENCHMARKS.md, "SYN flood").
pub type ServiceMap<V> =
    std::collections::HashMap<Service, V, std::hash::BuildHasherDefault<ServiceHasher>>;

/// The hash of [`ServiceMap`]: a multiply and a rotate per word written (the one rustc's
/// FxHash uses), no key. Only for maps whose keys no packet chooses.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceHasher(u64);

impl ServiceHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for ServiceHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }
    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }
    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Displays as `tcp/22`, the form every log line and config uses (`icmp/100` for an echo step).
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

/// Accepts `22` (tcp), `22:udp` (knock's syntax), `udp/22` and `22/udp`; and `icmp/N`, an
/// ICMP echo step of payload size N (`ping -s N`), in that one spelling.
impl FromStr for Service {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if let Some(size) = s.get(..5).filter(|p| p.eq_ignore_ascii_case("icmp/")) {
            return Ok(Service::new(Proto::Icmp, parse_port(&s[size.len()..])?));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_its_own_hash_and_a_service_map_finds_it() {
        use std::hash::BuildHasher as _;
        let hasher = std::hash::BuildHasherDefault::<ServiceHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
            for port in 0..=u16::MAX {
                let service = Service::new(proto, port);
                assert!(seen.insert(hasher.hash_one(service)), "{service} collides");
            }
        }
        let mut map: ServiceMap<u16> = ServiceMap::default();
        for port in [22, 7000, 8000, 9000] {
            map.insert(Service::tcp(port), port);
        }
        assert_eq!(map.get(&Service::tcp(7000)), Some(&7000));
        assert_eq!(map.get(&Service::udp(7000)), None);
        assert_eq!(map.get(&Service::tcp(7001)), None);
    }

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
    fn icmp_steps_have_one_spelling() {
        assert_eq!(
            "icmp/100".parse::<Service>(),
            Ok(Service::new(Proto::Icmp, 100))
        );
        assert_eq!(
            " ICMP/100".parse::<Service>(),
            Ok(Service::new(Proto::Icmp, 100))
        );
        assert_eq!(Service::new(Proto::Icmp, 100).to_string(), "icmp/100");
        for bad in ["100:icmp", "100/icmp", "icmp/0", "icmp/", "icmp/x", "icmp"] {
            assert!(bad.parse::<Service>().is_err(), "{bad}");
        }
        assert!("icmp".parse::<Proto>().is_err(), "not a protocol of ports");
    }
}
