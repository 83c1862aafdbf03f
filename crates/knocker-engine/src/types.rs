//! The vocabulary shared by every part of knocker: protocols, services, knocks and grants.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

// `Proto`, `Service` and `ParseError` are defined once, in knocker-wire (which the client
// shares without the engine), and re-exported here so that every crate speaks one vocabulary.
pub use knocker_wire::{ParseError, Proto, Service, ServiceMap};

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

    /// A flag by its name in any case (`syn`, `SYN`), as knockd's TCPFlags and logs write it.
    pub fn named(name: &str) -> Option<TcpFlags> {
        TcpFlags::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

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
            let flag = TcpFlags::named(name).ok_or_else(|| ParseError::Flag(word.to_string()))?;
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
    /// Who knocked, when the door knows: an enrolled client's name (knocker SPA and SYN doors)
    /// or the username in an fwknop packet. For the log.
    pub client: Option<String>,
    /// What the SPA packet said beyond the grant, for an SPA door's commands (fwknop's
    /// `CMD_CYCLE_OPEN` variables); `None` for every other kind of door.
    pub spa: Option<SpaFacts>,
}

/// The facts of an SPA packet that a grant carries to the gatekeeper, for commands: all typed,
/// so a command argument made of them is only ever digits, hex digits, dots and colons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaFacts {
    /// The packet's source address, from its IP header (fwknop's `$PKT_SRC`).
    pub packet_source: IpAddr,
    /// The packet's destination address (`$DST`).
    pub destination: IpAddr,
    /// The packet's own timestamp, Unix seconds (`$TIMEOUT` is it plus the timeout).
    pub timestamp: u64,
    /// The timeout the client asked for, in seconds, as it sent it; 0 when it asked for none
    /// (`$CLIENT_TIMEOUT`).
    pub client_timeout: u64,
    /// The inner host the packet asked its service to be sent on to (fwknop's `-N`), when its
    /// door lets the client choose one: untrusted, the gatekeeper checks it against the networks
    /// the door allows. `None` for every other request.
    pub nat: Option<std::net::SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
