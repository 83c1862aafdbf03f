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
