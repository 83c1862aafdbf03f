//! Single-packet-authorization doors (fwknop's format; knocker's own later): one UDP datagram
//! carries an authenticated, encrypted request.
//!
//! The decoder is injected ([`SpaDecode`]), so the engine holds no keys; the engine owns the
//! policy, in the order fwknopd applies it, cheapest first: the replay memory (a digest of the
//! raw packet, before any key is used), the door's sources, the decoder (which checks the HMAC in
//! constant time *before* decrypting), then age, address binding, username, expiry, and what may
//! be opened for how long.

use std::net::IpAddr;
use std::sync::Arc;

use crate::types::Service;

/// What a decoded SPA packet asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaRequest {
    pub username: String,
    /// The client's clock when it made the packet (Unix seconds).
    pub timestamp: u64,
    /// The address to open for; unspecified (0.0.0.0) means the packet's source.
    pub allow: IpAddr,
    pub access: Vec<Service>,
    /// A timeout the client asked for (fwknop's message types 3 and 4).
    pub client_timeout: Option<u32>,
}

/// Why the decoder did not return a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpaError {
    /// The authenticator does not match this door's key: another door's key may match.
    NotForThisKey,
    /// Authentic, but not a request this door can grant (a NAT or command message, a malformed
    /// field): refused with the reason.
    Unsupported(String),
}

/// Decodes one SPA payload with a door's keys.
pub type SpaDecode = Arc<dyn Fn(&[u8]) -> Result<SpaRequest, SpaError> + Send + Sync>;

/// A single-packet-authorization door.
#[derive(Clone)]
pub struct Spa {
    pub decode: SpaDecode,
    /// The UDP port packets are sent to.
    pub port: u16,
    /// Where packets may come from: (network, prefix length); empty means anywhere.
    pub sources: Vec<(IpAddr, u8)>,
    /// How far the packet's timestamp may be from the server's clock, either way (seconds);
    /// `None` turns the age check off (fwknopd's ENABLE_SPA_PACKET_AGING N).
    pub max_age: Option<u64>,
    /// How long an access request opens for (fwknopd's FW_ACCESS_TIMEOUT).
    pub access_timeout: u64,
    /// The most a client-requested timeout may be (fwknopd's MAX_FW_TIMEOUT).
    pub max_timeout: u64,
    /// Services never opened, whatever is asked (RESTRICT_PORTS).
    pub restrict: Vec<Service>,
    pub require_username: Option<String>,
    /// After this Unix time the door opens nothing (ACCESS_EXPIRE).
    pub expire: Option<u64>,
    /// Grant the address inside the request even when it differs from the packet's source.
    pub allow_other_address: bool,
    /// Refuse requests whose allow IP is unspecified (fwknopd's REQUIRE_SOURCE_ADDRESS).
    pub require_source_address: bool,
    /// Where packets must be sent to: (network, prefix length); empty means anywhere.
    pub destinations: Vec<(IpAddr, u8)>,
    /// Open whatever service the request names (fwknopd's access.conf without OPEN_PORTS);
    /// otherwise only the door's `open` services.
    pub open_any: bool,
}

impl Spa {
    /// Whether `src` is one of the door's sources.
    pub fn admits_source(&self, src: IpAddr) -> bool {
        self.sources.is_empty()
            || self
                .sources
                .iter()
                .any(|(net, len)| in_net(src, *net, *len))
    }

    /// Whether a packet from `src` to `dst` is for this door.
    pub fn admits(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.admits_source(src)
            && (self.destinations.is_empty()
                || self
                    .destinations
                    .iter()
                    .any(|(net, len)| in_net(dst, *net, *len)))
    }
}

/// Whether `ip` lies in `net/len` (IPv4 and IPv6; mapped addresses compared as IPv4).
pub fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip.to_canonical(), net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl std::fmt::Debug for Spa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spa")
            .field("port", &self.port)
            .field("sources", &self.sources)
            .field("max_age", &self.max_age)
            .field("access_timeout", &self.access_timeout)
            .field("max_timeout", &self.max_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(in_net(ip("10.200.1.2"), ip("10.200.0.0"), 16));
        assert!(!in_net(ip("10.201.1.2"), ip("10.200.0.0"), 16));
        assert!(in_net(ip("10.200.1.2"), ip("0.0.0.0"), 0));
        assert!(in_net(ip("::ffff:10.200.1.2"), ip("10.200.1.2"), 32));
        assert!(in_net(ip("fd00:200:1::2"), ip("fd00:200::"), 32));
        assert!(
            !in_net(ip("fd00:200:1::2"), ip("fd00:200::"), 48),
            "fd00:200:1::/48 is another /48"
        );
        assert!(!in_net(ip("fd00:201::2"), ip("fd00:200::"), 48));
        assert!(
            !in_net(ip("10.200.1.2"), ip("fd00:200::"), 0),
            "families never mix"
        );
    }
}
