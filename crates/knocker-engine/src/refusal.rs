//! Why a single-packet or encoded request was refused: one reason type for every door that
//! judges a whole request, shared by the encoded and SPA paths (a leaf module, so that neither
//! imports the other for it).

use std::net::IpAddr;

use crate::types::Service;

/// How many replay digests are remembered at most. Only authentic requests add one, so only key
/// holders can fill it; when it is full, new requests are refused (fail closed) rather than an
/// unexpired digest forgotten.
pub const MAX_SEEN: usize = 65_536;

/// Why a request (encoded knocks, an SPA datagram, a stealth SYN) was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The knocks did not form an authentic message for this door.
    NotAuthentic,
    /// The request was made for another address than the one it came from.
    OtherAddress { allow: IpAddr },
    /// The request's time is off the server's clock by more than the door allows.
    Age { off_by_secs: i64, max_age: u64 },
    /// The same message was seen before.
    Replayed,
    /// The request asks for a service the door does not open.
    NotOpened(Service),
    /// The replay memory is full.
    MemoryFull,
    /// Authentic, but not a request the door can grant.
    Unsupported(String),
    /// The request names a user the door does not accept.
    Username(String),
    /// The door's access expired.
    Expired,
    /// The request asks for a service the door never opens.
    Restricted(Service),
    /// Made with a key that is not enrolled (never was, or was revoked).
    UnknownKey,
    /// Made with the key of a client that is enrolled, but not for this door.
    NotEnrolledHere { client: String },
    /// The source sent more packets needing expensive checks than the door's rate limit allows.
    RateLimited,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAuthentic => f.write_str("not an authentic request for this door"),
            Refusal::OtherAddress { allow } => write!(f, "the request is for {allow}, not for the address it came from"),
            Refusal::Age { off_by_secs, max_age } => write!(
                f,
                "the client's clock is {} s {} the server's (at most {max_age} s either way): check its time or use --time-offset",
                off_by_secs.unsigned_abs(),
                if *off_by_secs < 0 { "behind" } else { "ahead of" }
            ),
            Refusal::Replayed => f.write_str("a replay of a request already seen"),
            Refusal::NotOpened(s) => write!(f, "the request asks for {s}, which the door does not open"),
            Refusal::MemoryFull => write!(f, "the replay memory is full ({MAX_SEEN} requests within the age window)"),
            Refusal::Unsupported(why) => write!(f, "{why}"),
            Refusal::Username(u) => write!(f, "user {u:?} is not the one this door requires"),
            Refusal::Expired => f.write_str("the door's access has expired"),
            Refusal::Restricted(s) => write!(f, "{s} is restricted on this door"),
            Refusal::UnknownKey => f.write_str("made with a client key that is not enrolled (never enrolled, or revoked)"),
            Refusal::NotEnrolledHere { client } => write!(f, "client {client:?} is not enrolled for this door (its `doors` in the clients file do not list it)"),
            Refusal::RateLimited => f.write_str("too many packets needing expensive checks from this source: dropped until its rate limit refills"),
        }
    }
}
