//! Sequence doors: knocks on ports in a secret order.
//!
//! # Semantics (per source address and door)
//! A source's progress through a door is an index into the sequence plus the time of the first
//! knock. For every knock whose protocol and port appear in the door's sequence:
//! 1. a TCP knock that fails the door's flag filter is ignored (it neither advances nor resets);
//! 2. if the window has passed since the first knock, the progress is forgotten first;
//! 3. the expected next knock advances; the last one completes the door and yields a grant;
//! 4. a repeat of the knock just matched is ignored, so retransmitted SYNs and duplicated
//!    datagrams never break a legitimate knock;
//! 5. the first knock of the sequence restarts the progress (a user who starts over is not
//!    locked out until the window passes);
//! 6. any other port of this door resets the progress.
//!
//! Knocks on ports that are not part of a door never touch its progress, and progress is kept per
//! source address, so noise from other sources never disturbs a knock in progress.
//!
//! Validation makes a port sweep harmless: a sequence must have at least three knocks, its port
//! numbers must not be in ascending or descending order (a scan that sweeps every port upward or
//! downward would otherwise walk straight through it, see [`SequenceDoor::validate`]), and no
//! knock may follow itself (it could not be told from a retransmission).

use std::time::Duration;

use crate::types::{FlagFilter, Knock, Service};

/// The smallest number of knocks a sequence may have.
pub const MIN_KNOCKS: usize = 3;
/// The largest number of knocks a sequence may have (knockd's limit).
pub const MAX_KNOCKS: usize = 32;
/// The longest window a sequence may take: knocks are seconds apart, not hours.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The longest a door may stay open per knock.
pub const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 3600);

/// A configured sequence door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceDoor {
    pub name: String,
    pub sequence: Vec<Service>,
    /// How long, from the first knock, the whole sequence may take.
    pub window: Duration,
    /// Applies to TCP knocks only.
    pub tcp_flags: Option<FlagFilter>,
    pub open: Vec<Service>,
    pub open_for: Duration,
}

/// Why a sequence door cannot be used; each message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("the sequence has {0} knocks; it needs at least {MIN_KNOCKS} (a shorter one is always in ascending or descending order, which a port sweep completes)")]
    TooShort(usize),
    #[error("the sequence has {0} knocks; at most {MAX_KNOCKS} are allowed")]
    TooLong(usize),
    #[error("the sequence's ports are in {0} order, so a port scan sweeping {1} would open this door: reorder them, e.g. {2}")]
    Monotonic(&'static str, &'static str, String),
    #[error("knock {0} follows itself at position {1}: a retransmitted SYN could not be told from the second knock; put another port between them")]
    Repeated(Service, usize),
    #[error("knock port {0} is also opened or protected by a door: a knock port must only ever be dropped and logged")]
    KnockIsService(Service),
    #[error("the door opens nothing: give at least one service in `open`")]
    OpensNothing,
    #[error("the window must be from one second to one hour")]
    BadWindow,
    #[error("the door must stay open from one second to one day")]
    BadOpenFor,
}

impl SequenceDoor {
    /// Checks everything about a door that does not depend on other doors.
    pub fn validate(&self) -> Result<(), SequenceError> {
        let n = self.sequence.len();
        if n < MIN_KNOCKS {
            return Err(SequenceError::TooShort(n));
        }
        if n > MAX_KNOCKS {
            return Err(SequenceError::TooLong(n));
        }
        for (i, pair) in self.sequence.windows(2).enumerate() {
            if pair[0] == pair[1] {
                return Err(SequenceError::Repeated(pair[0], i + 2));
            }
        }
        let ports: Vec<u16> = self.sequence.iter().map(|s| s.port).collect();
        let ascending = ports.windows(2).all(|w| w[0] <= w[1]);
        let descending = ports.windows(2).all(|w| w[0] >= w[1]);
        if ascending || descending {
            let mut fixed = self.sequence.clone();
            // Swapping the first two breaks the order for any sequence of three or more
            // distinct-by-neighbour knocks; it is a suggestion, not the only fix.
            fixed.swap(0, 1);
            let fixed: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
            let (order, way) = if ascending {
                ("ascending", "upward")
            } else {
                ("descending", "downward")
            };
            return Err(SequenceError::Monotonic(order, way, fixed.join(", ")));
        }
        if self.open.is_empty() {
            return Err(SequenceError::OpensNothing);
        }
        if let Some(s) = self.sequence.iter().find(|s| self.open.contains(s)) {
            return Err(SequenceError::KnockIsService(*s));
        }
        if self.window < Duration::from_secs(1) || self.window > MAX_WINDOW {
            return Err(SequenceError::BadWindow);
        }
        if self.open_for < Duration::from_secs(1) || self.open_for > MAX_OPEN_FOR {
            return Err(SequenceError::BadOpenFor);
        }
        Ok(())
    }

    /// Whether this door's flag filter lets the knock count at all.
    pub(crate) fn admits(&self, knock: &Knock) -> bool {
        match (knock.proto, self.tcp_flags) {
            (crate::Proto::Tcp, Some(filter)) => filter.matches(knock.tcp_flags),
            _ => true,
        }
    }

    /// The progress after `service` is knocked with `progress` knocks already matched.
    /// The caller has already checked the window and that `service` belongs to this door.
    pub(crate) fn step(&self, progress: usize, service: Service) -> Step {
        if self.sequence.get(progress) == Some(&service) {
            if progress + 1 == self.sequence.len() {
                Step::Complete
            } else {
                Step::Advance(progress + 1)
            }
        } else if progress > 0 && self.sequence[progress - 1] == service {
            Step::Ignore
        } else if self.sequence[0] == service {
            Step::Restart
        } else {
            Step::Reset
        }
    }
}

/// What one knock does to a source's progress through a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Now `n` knocks are matched.
    Advance(usize),
    /// The last knock matched: grant, and forget the progress.
    Complete,
    /// A duplicate of the knock just matched.
    Ignore,
    /// The first knock again: one knock matched, the window starts now.
    Restart,
    /// A wrong port of this door: forget the progress.
    Reset,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door(seq: &[u16]) -> SequenceDoor {
        SequenceDoor {
            name: "t".into(),
            sequence: seq.iter().map(|p| Service::tcp(*p)).collect(),
            window: Duration::from_secs(10),
            tcp_flags: None,
            open: vec![Service::tcp(22)],
            open_for: Duration::from_secs(30),
        }
    }

    #[test]
    fn validation() {
        assert_eq!(door(&[7000, 9000, 8000]).validate(), Ok(()));
        assert!(matches!(
            door(&[7000, 8000]).validate(),
            Err(SequenceError::TooShort(2))
        ));
        assert!(matches!(
            door(&[7000, 8000, 9000]).validate(),
            Err(SequenceError::Monotonic("ascending", _, _))
        ));
        assert!(matches!(
            door(&[9000, 8000, 8000, 7000]).validate(),
            Err(SequenceError::Repeated(_, 3))
        ));
        assert!(matches!(
            door(&[9000, 8000, 7000]).validate(),
            Err(SequenceError::Monotonic("descending", _, _))
        ));
        assert!(matches!(
            door(&[7000, 22, 8000]).validate(),
            Err(SequenceError::KnockIsService(_))
        ));
        let msg = door(&[7000, 8000, 9000])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tcp/8000, tcp/7000, tcp/9000"), "{msg}");
        // the suggested fix is itself valid
        assert_eq!(door(&[8000, 7000, 9000]).validate(), Ok(()));
    }

    #[test]
    fn steps() {
        let d = door(&[7000, 9000, 8000]);
        assert_eq!(d.step(0, Service::tcp(7000)), Step::Advance(1));
        assert_eq!(d.step(1, Service::tcp(7000)), Step::Ignore);
        assert_eq!(d.step(1, Service::tcp(9000)), Step::Advance(2));
        assert_eq!(d.step(2, Service::tcp(7000)), Step::Restart);
        assert_eq!(d.step(2, Service::tcp(8000)), Step::Complete);
        assert_eq!(d.step(1, Service::tcp(8000)), Step::Reset);
        assert_eq!(d.step(0, Service::tcp(8000)), Step::Reset);
    }
}
