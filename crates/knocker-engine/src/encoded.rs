//! Encoded doors in the engine: per-source reassembly, then the checks that make a request
//! count, cheapest first once the authenticator has passed.
//!
//! Order of checks for a complete message: the AEAD tag (in `knocker_wire::encoded::decode`:
//! nothing of an unauthentic message is believed, and no other work is done for it), then the
//! address binding, the age window, the replay memory, and what the door allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use knocker_wire::encoded::{decode, Push, Reassembly};

use crate::sequence::Encoded;
use crate::types::{Grant, Service};

/// How many replay digests are remembered at most. Only authentic requests add one, so only key
/// holders can fill it; when it is full, new requests are refused (fail closed) rather than an
/// unexpired digest forgotten.
pub const MAX_SEEN: usize = 65_536;

/// A source's reassembly buffer for one encoded door.
pub(crate) struct Assembly {
    pub buf: Box<Reassembly>,
    pub deadline: Instant,
}

/// Why an encoded request was not granted.
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

/// What one complete message came to.
pub(crate) enum Outcome {
    Granted {
        grant: Grant,
        digest: [u8; 32],
        until_unix: u64,
    },
    Refused(Refusal),
}

/// Checks a complete message from `src` at wall-clock `wall` against the door and the replay
/// memory; records the digest when it grants.
pub(crate) fn judge(
    door_index: usize,
    door: &crate::SequenceDoor,
    e: &Encoded,
    bytes: &[u8],
    src: IpAddr,
    wall: u64,
    seen: &mut HashMap<[u8; 32], u64>,
) -> Outcome {
    let Ok(decoded) = decode(&e.key, &e.spec, bytes) else {
        return Outcome::Refused(Refusal::NotAuthentic);
    };
    let req = &decoded.request;
    let allow = req.allow.to_canonical();
    if allow != src && !e.allow_other_address {
        return Outcome::Refused(Refusal::OtherAddress { allow });
    }
    let off_by = req.unix_time as i128 - wall as i128;
    if off_by.unsigned_abs() > u128::from(e.max_age) {
        let off_by_secs = off_by.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        return Outcome::Refused(Refusal::Age {
            off_by_secs,
            max_age: e.max_age,
        });
    }
    let digest = decoded.replay_id();
    if seen.get(&digest).is_some_and(|until| *until >= wall) {
        return Outcome::Refused(Refusal::Replayed);
    }
    if let Some(s) = req.services.iter().find(|s| !door.open.contains(s)) {
        return Outcome::Refused(Refusal::NotOpened(*s));
    }
    if seen.len() >= MAX_SEEN {
        seen.retain(|_, until| *until >= wall);
        if seen.len() >= MAX_SEEN {
            return Outcome::Refused(Refusal::MemoryFull);
        }
    }
    // the message passes the age check until unix_time + max_age: remember it that long
    let until_unix = req.unix_time.saturating_add(e.max_age);
    seen.insert(digest, until_unix);
    let duration = Duration::from_secs(u64::from(req.duration_secs)).min(door.open_for);
    let grant = Grant {
        door: door_index,
        door_name: door.name.clone(),
        to: allow,
        open: req.services.clone(),
        duration,
        client: None,
    };
    Outcome::Granted {
        grant,
        digest,
        until_unix,
    }
}

/// Feeds one knock port into a source's buffer; returns the message bytes once complete.
pub(crate) fn push(buf: &mut Reassembly, port: u16) -> Option<Vec<u8>> {
    match buf.push(port) {
        Push::Complete(msg) => Some(msg.as_bytes().to_vec()),
        Push::Incomplete | Push::Invalid(_) => None,
    }
}
