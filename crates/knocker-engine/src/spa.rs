//! Single-packet doors: one packet carries an authenticated request. fwknop's format and
//! knocker's own SPA are one UDP datagram; a stealth SYN door's packet is one TCP SYN whose
//! header fields carry the authenticator (the "payload" is then the packet from its IP header on).
//!
//! The decoder is injected ([`SpaDecode`]), so the engine holds no keys; the engine owns the
//! policy, cheapest first: the networks the door allows, the door's cheap pre-check (knocker
//! SPA's door tag, a fwknop door's HMAC, a SYN's shape), the replay memory (a digest of the raw
//! packet, made only once a pre-check has passed: noise costs none), the per-source rate limit
//! on what is expensive, the decoder (which checks the authenticator in constant time
//! *before* decrypting or any public-key math), the replay memory again (the request's own
//! identity, which bit flips outside the authenticated part cannot change), then age, address
//! binding, username, expiry, and what may be opened for how long.

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
    /// A timeout the client asked for (fwknop's message types 3 and 4; knocker SPA's duration).
    pub client_timeout: Option<u32>,
    /// What makes this request unique, independent of the bytes that carried it (knocker SPA:
    /// client key and nonce). Remembered with the raw packet's digest; `None` for fwknop, whose
    /// whole packet is authenticated.
    pub replay_id: Option<[u8; 32]>,
    /// A once-only counter the request was made with (knockknock's): the engine refuses it as
    /// a replay at or below the door's last used counter, and uses it up ([`crate::Event::Used`],
    /// before anything else is judged) when it is newer. `None` for the other formats.
    pub counter: Option<u64>,
    /// The inner host the client asked its service to be sent on to (fwknop's `-N`), when the
    /// door's decoder accepts client-chosen targets: the engine opens only the first service for
    /// it (as fwknopd DNATs only the first), and the gatekeeper validates it. `None` otherwise.
    pub nat: Option<std::net::SocketAddr>,
}

/// Why the decoder did not return a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpaError {
    /// The authenticator does not match this door's key: another door's key may match.
    NotForThisKey,
    /// Authentic, but not a request this door can grant (a NAT or command message, a malformed
    /// field): refused with the reason.
    Unsupported(String),
    /// Authentic, and refused for this reason (a key that is not enrolled, a service this
    /// client may not open).
    Refused(crate::refusal::Refusal),
}

/// Decodes one SPA payload with a door's keys, at the given wall-clock time (Unix seconds; a
/// SYN door's authenticator is made for a time step).
pub type SpaDecode = Arc<dyn Fn(&[u8], u64) -> Result<SpaRequest, SpaError> + Send + Sync>;

/// A check cheap enough to run on every packet before anything expensive (knocker SPA's
/// per-door tag, a keyed hash of the datagram; a fwknop door's HMAC): `false` means not for
/// this door. It runs before the replay memory's digest of the packet, so it must never be
/// costlier than a SHA-256 of it, and it decrypts nothing.
pub type SpaPrecheck = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// How many expensive checks (public-key math, a SYN door's per-client MACs) one source may
/// cause: `burst` at once, refilled at `per_sec`. Past it, packets are dropped with a
/// (rate-limited) log line until the bucket refills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_sec: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        // two a second, bursts of five seconds' worth: plenty for a person, nothing for a flood
        RateLimit {
            burst: 10,
            per_sec: 2,
        }
    }
}

/// A single-packet-authorization door.
#[derive(Clone)]
pub struct Spa {
    pub decode: SpaDecode,
    /// Run before the replay memory and `decode` on every packet; `None` for a fwknop legacy
    /// door (no HMAC: the digest is its first check, as in fwknopd).
    pub precheck: Option<SpaPrecheck>,
    /// Per-source limit on calls to `decode`; `None`: unlimited (fwknop's HMAC is cheap).
    pub rate_limit: Option<RateLimit>,
    /// UDP for SPA datagrams, TCP for a stealth SYN door.
    pub proto: crate::Proto,
    /// The port packets are sent to.
    pub port: u16,
    /// Where packets may come from: (network, prefix length); empty means anywhere.
    pub allowed: Vec<(IpAddr, u8)>,
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
    /// Whether `src` is in one of the networks the door allows.
    pub fn admits_source(&self, src: IpAddr) -> bool {
        self.allowed.is_empty()
            || self
                .allowed
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

/// Token buckets, one per (source, door), in a bounded table: when it is full the least recently
/// seen source is forgotten (it starts again with a full bucket, which costs at most one burst).
pub(crate) struct Limiter {
    buckets: crate::table::Table<(IpAddr, usize), Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths, so slow refill rates lose nothing to rounding.
    milli: u64,
    at: std::time::Instant,
    /// The key, (source, door): fingerprints replace keys in the table.
    src: IpAddr,
    door: usize,
}

impl crate::table::Entry<(IpAddr, usize)> for Bucket {
    fn is_for(&self, key: &(IpAddr, usize)) -> bool {
        self.src == key.0 && self.door == key.1
    }
}

impl Limiter {
    pub(crate) fn new(capacity: usize) -> Limiter {
        Limiter {
            buckets: crate::table::Table::new(capacity),
        }
    }

    /// Takes one token from the bucket of `src` at door `door`; `false` when it is empty.
    pub(crate) fn take(
        &mut self,
        src: IpAddr,
        door: usize,
        limit: RateLimit,
        now: std::time::Instant,
    ) -> bool {
        let full = u64::from(limit.burst.max(1)) * 1000;
        let key = (src, door);
        let mut bucket = self.buckets.get(&key).copied().unwrap_or(Bucket {
            milli: full,
            at: now,
            src,
            door,
        });
        let elapsed = now.saturating_duration_since(bucket.at);
        let refill = elapsed
            .as_millis()
            .saturating_mul(u128::from(limit.per_sec));
        bucket.milli = u64::try_from(u128::from(bucket.milli).saturating_add(refill))
            .unwrap_or(u64::MAX)
            .min(full);
        bucket.at = now;
        let granted = bucket.milli >= 1000;
        if granted {
            bucket.milli -= 1000;
        }
        self.buckets.insert_newest(key, bucket);
        granted
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
            .field("proto", &self.proto)
            .field("port", &self.port)
            .field("rate_limit", &self.rate_limit)
            .field("allowed", &self.allowed)
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
