//! Encoded doors in the engine: per-source reassembly, then the checks that make a request
//! count, cheapest first once the authenticator has passed.
//!
//! Order of checks for a complete message: the AEAD tag (in `knocker_wire::encoded::decode`:
//! nothing of an unauthentic message is believed, and no other work is done for it), then the
//! address binding, the age window, the replay memory, and what the door allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use knocker_wire::encoded::{decode, Push, Reassembly};

use crate::refusal::{Refusal, MAX_SEEN};
use crate::sequence::Encoded;
use crate::table::{Entry, Src, Ticks};
use crate::types::Grant;

/// A source's reassembly buffer for one encoded door.
pub(crate) struct Assembly {
    pub buf: Box<Reassembly>,
    /// When the buffer is forgotten: its first knock + the door's window.
    pub deadline: Ticks,
    /// The key, (source, door): fingerprints replace keys in the table.
    pub src: Src,
    pub door: u16,
}

impl Entry<(IpAddr, u16)> for Assembly {
    fn is_for(&self, key: &(IpAddr, u16)) -> bool {
        self.door == key.1 && self.src == Src::new(key.0)
    }
}

/// What one complete message came to.
pub(crate) enum Outcome {
    Granted {
        /// Boxed: a grant is far larger than a refusal (its SPA facts, a NAT target among them).
        grant: Box<Grant>,
        digest: [u8; 32],
        until_unix: u64,
    },
    Refused(Refusal),
}

/// Checks a complete message from `src` at wall-clock `wall` against the door and the replay
/// memory; records the digest when it grants.
pub(crate) fn judge(
    door_index: usize,
    door: &crate::DoorSpec,
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
        spa: None,
    };
    Outcome::Granted {
        grant: Box::new(grant),
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
