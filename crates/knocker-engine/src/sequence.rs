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
//! # Failed attempts (reported as [`crate::Event::Failed`])
//! An *attempt* is a source's progress through a door, from the door's first knock. It ends in a
//! grant, or it fails, and a failure is reported (one event per attempt, with a [`Failure`]) when
//! the source sent the door at least two packets that count:
//! - a wrong port of the door after at least one knock matched (rule 6): the knock that failed;
//! - the window ran out after at least two knocks matched;
//! - a knock on the expected next port failed the flag filter (it is ignored, rule 1, but it is
//!   remembered): when the attempt then ends, that is the reason. A later knock with the right
//!   flags on that port advances as usual and forgets it.
//!
//! A window that ran out is reported when the engine forgets the progress: by
//! [`crate::Engine::handle_timeout`] at the window's end (later, when doors with different
//! windows queue it behind a longer one), or at the source's next knock on the door.
//!
//! Not reported: a lone first knock that nothing follows (one stray packet, or a port scan that
//! hit the first port), knocks with no progress (a port scan, however many ports it hits), a
//! restart with the first knock (the user starting over), progress evicted because the table is
//! full (reported once as [`crate::Event::TableFull`]), and any partial progress of a source that
//! has just opened a door (doors that share ports, or the other candidates of a rotating door,
//! see partial knocks of a legitimate user; they are not failures). So a port scan yields at
//! most one report per door per source, never one per port.
//!
//! Validation makes a port sweep harmless: a sequence must have at least three knocks, its port
//! numbers must not be in ascending or descending order (a scan that sweeps every port upward or
//! downward would otherwise walk straight through it, see [`DoorSpec::validate`]), and no
//! knock may follow itself (it could not be told from a retransmission).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::types::{FlagFilter, Knock, Proto, Service, TcpFlags};

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
pub struct DoorSpec {
    pub name: String,
    /// The sequence of a [`Kind::Sequence`] door; empty for the other kinds.
    pub sequence: Vec<Service>,
    /// How long, from the first knock, the whole sequence may take.
    pub window: Duration,
    /// Applies to TCP knocks only.
    pub tcp_flags: Option<FlagFilter>,
    pub open: Vec<Service>,
    pub open_for: Duration,
    /// Where the door's sequence comes from.
    pub kind: Kind,
    /// Count only knocks sent to this address (knockd's `Target`); any address when `None`.
    pub target: Option<std::net::IpAddr>,
}

impl Default for DoorSpec {
    /// A static door with no knocks and nothing to open: fill in at least `name`, `sequence`
    /// and `open` (or give it commands in the daemon's config).
    fn default() -> Self {
        DoorSpec {
            name: String::new(),
            sequence: Vec::new(),
            window: Duration::from_secs(15),
            tcp_flags: None,
            open: Vec::new(),
            open_for: Duration::from_secs(30),
            kind: Kind::Sequence,
            target: None,
        }
    }
}

/// Where a door's sequence comes from.
///
/// Only [`Kind::Sequence`] uses [`DoorSpec::sequence`]. The other kinds offer the engine a
/// few *candidate* sequences at a time, each with a tag (line number, counter or time step), and
/// accept each tag once: a tag at or below the last one used is never a candidate again, so a
/// recorded knock never opens twice. The caller persists [`crate::Event::Used`] and passes the
/// last used tag back in `used` after a restart.
#[derive(Clone)]
pub enum Kind {
    /// The same sequence every time (replayable by nature).
    Sequence,
    /// knockd's One_Time_Sequences: lines used in order, each once; the door closes for good
    /// when none is left. The tag is the line's index.
    OneTime {
        lines: Vec<Vec<Service>>,
        used: Option<u64>,
    },
    /// A sequence derived from a shared key and a counter (HOTP) or a time step (TOTP). The
    /// derivation is injected, so the engine holds no key material and does no crypto.
    Rotating {
        derive: Derive,
        clock: Clock,
        used: Option<u64>,
    },
    /// Encoded knocks: a request encrypted and authenticated with the door's key, spelled out
    /// as ports of a span, reassembled in any order (see `knocker_wire::encoded`).
    Encoded(Encoded),
    /// Single-packet authorization: one UDP datagram with an authenticated request.
    Spa(crate::spa::Spa),
}

/// An encoded door: what it decodes with and what it accepts.
#[derive(Clone)]
pub struct Encoded {
    pub spec: knocker_wire::encoded::EncodedSpec,
    pub key: Arc<knocker_wire::EncodedKey>,
    /// How far a request's timestamp may be from the server's clock, either way, in seconds;
    /// also how long its replay digest is remembered.
    pub max_age: u64,
    /// Grant the address inside the request even when the knocks came from another one (a
    /// client behind carrier-grade NAT that knows its public address). Off by default: a
    /// request opens only for the address it came from.
    pub allow_other_address: bool,
}

/// The derivation of a rotating door's sequence for a counter or time step.
pub type Derive = Arc<dyn Fn(u64) -> Vec<Service> + Send + Sync>;

/// What a rotating door counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Time steps of `period` seconds since the Unix epoch, `skew` steps either way.
    Totp { period: u64, skew: u64 },
    /// A counter: the `lookahead` counters after the last one used.
    Hotp { lookahead: u64 },
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Sequence => f.write_str("Sequence"),
            Kind::OneTime { lines, used } => {
                write!(f, "OneTime {{ lines: {}, used: {used:?} }}", lines.len())
            }
            Kind::Rotating { clock, used, .. } => {
                write!(f, "Rotating {{ clock: {clock:?}, used: {used:?} }}")
            }
            Kind::Spa(spa) => write!(f, "{spa:?}"),
            Kind::Encoded(e) => write!(
                f,
                "Encoded {{ spec: {:?}, max_age: {}, allow_other_address: {} }}",
                e.spec, e.max_age, e.allow_other_address
            ),
        }
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Kind::Sequence, Kind::Sequence) => true,
            (Kind::OneTime { lines: a, used: u }, Kind::OneTime { lines: b, used: v }) => {
                a == b && u == v
            }
            (
                Kind::Rotating {
                    derive: d,
                    clock: c,
                    used: u,
                },
                Kind::Rotating {
                    derive: e,
                    clock: k,
                    used: v,
                },
            ) => Arc::ptr_eq(d, e) && c == k && u == v,
            (Kind::Spa(a), Kind::Spa(b)) => {
                Arc::ptr_eq(&a.decode, &b.decode) && a.port == b.port && a.allowed == b.allowed
            }
            (Kind::Encoded(a), Kind::Encoded(b)) => {
                a.spec == b.spec
                    && Arc::ptr_eq(&a.key, &b.key)
                    && a.max_age == b.max_age
                    && a.allow_other_address == b.allow_other_address
            }
            _ => false,
        }
    }
}

impl Eq for Kind {}

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
    #[error("the window must be from one second to one hour")]
    BadWindow,
    #[error("the door must stay open from one second to one day")]
    BadOpenFor,
    #[error("a sequence is empty")]
    Empty,
    #[error("an encoded or SPA door needs `open`: the services a request may ask for")]
    EncodedOpensNothing,
    #[error("icmp/{0}: an ICMP step's size (ping -s N) must be from {MIN_ICMP_SIZE} to {MAX_ICMP_SIZE} and not {sizes}, the sizes ordinary pings send (knocker leaves those alone)", sizes = ORDINARY_PING_SIZES.map(|n| n.to_string()).join(" or "))]
    IcmpSize(u16),
    #[error("{0} is an ICMP knock step, not a service: a door opens tcp and udp ports")]
    IcmpOpened(Service),
}

/// The smallest payload of an ICMP step (`icmp/N`, `ping -s N`).
pub const MIN_ICMP_SIZE: u16 = 1;
/// The largest: an echo request of this payload fits a 1500-byte IPv6 packet unfragmented
/// (1500 - 40 - 8).
pub const MAX_ICMP_SIZE: u16 = 1452;
/// The payload sizes of ordinary pings (Linux, BSD and macOS 56; Windows 32): never a step.
pub const ORDINARY_PING_SIZES: [u16; 2] = [56, 32];

/// The rules that make a sequence safe against port sweeps and retransmissions.
pub fn sequence_rules(seq: &[Service]) -> Result<(), SequenceError> {
    let n = seq.len();
    if n == 0 {
        return Err(SequenceError::Empty);
    }
    if n > MAX_KNOCKS {
        return Err(SequenceError::TooLong(n));
    }
    if n < MIN_KNOCKS {
        return Err(SequenceError::TooShort(n));
    }
    if let Some(s) = seq.iter().find(|s| {
        s.proto == Proto::Icmp
            && (!(MIN_ICMP_SIZE..=MAX_ICMP_SIZE).contains(&s.port)
                || ORDINARY_PING_SIZES.contains(&s.port))
    }) {
        return Err(SequenceError::IcmpSize(s.port));
    }
    for (i, pair) in seq.windows(2).enumerate() {
        if pair[0] == pair[1] {
            return Err(SequenceError::Repeated(pair[0], i + 2));
        }
    }
    // A port sweep sends no echo requests of a step's size: a sequence with an ICMP step
    // cannot be walked by one, whatever the order of its ports.
    let ports_only = seq.iter().all(|s| s.proto != Proto::Icmp);
    let ascending = seq.windows(2).all(|w| w[0].port <= w[1].port);
    let descending = seq.windows(2).all(|w| w[0].port >= w[1].port);
    if ports_only && (ascending || descending) {
        let mut fixed = seq.to_vec();
        // Swapping the first two breaks the order of any sequence of three or more knocks
        // without repeats; it is a suggestion, not the only fix.
        fixed.swap(0, 1);
        let fixed: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        let (order, way) = if ascending {
            ("ascending", "upward")
        } else {
            ("descending", "downward")
        };
        return Err(SequenceError::Monotonic(order, way, fixed.join(", ")));
    }
    Ok(())
}

impl DoorSpec {
    /// Checks everything about a door that does not depend on other doors.
    pub fn validate(&self) -> Result<(), SequenceError> {
        self.validate_with(true).map(|_| ())
    }

    /// Like [`DoorSpec::validate`], but the rules that only protect against port sweeps and
    /// retransmissions (at least three knocks, not in order, no knock twice in a row) come back
    /// as warnings instead of errors: knockd accepts such sequences, and a knockd.conf must run
    /// as it is.
    pub fn validate_compat(&self) -> Result<Vec<SequenceError>, SequenceError> {
        self.validate_with(false)
    }

    fn validate_with(&self, strict: bool) -> Result<Vec<SequenceError>, SequenceError> {
        let mut warnings = Vec::new();
        let mut check = |seq: &[Service]| match sequence_rules(seq) {
            Ok(()) => Ok(()),
            Err(
                e @ (SequenceError::TooLong(_) | SequenceError::Empty | SequenceError::IcmpSize(_)),
            ) => Err(e),
            Err(e) if strict => Err(e),
            Err(e) => {
                warnings.push(e);
                Ok(())
            }
        };
        match &self.kind {
            Kind::Sequence => check(&self.sequence)?,
            Kind::OneTime { lines, .. } => lines.iter().try_for_each(|l| check(l))?,
            // derived sequences are made valid by the derivation (knocker-wire guarantees it)
            Kind::Rotating { .. } => {}
            // a request names what it wants from `open`: a door with nothing to open is useless
            Kind::Encoded(_) if self.open.is_empty() => {
                return Err(SequenceError::EncodedOpensNothing)
            }
            Kind::Encoded(_) => {}
            Kind::Spa(spa) if self.open.is_empty() && !spa.open_any => {
                return Err(SequenceError::EncodedOpensNothing)
            }
            Kind::Spa(_) => {}
        }
        if let Some(s) = self.open.iter().find(|s| s.proto == Proto::Icmp) {
            return Err(SequenceError::IcmpOpened(*s));
        }
        if let Some(s) = self.fixed_knocks().find(|s| self.open.contains(s)) {
            return Err(SequenceError::KnockIsService(*s));
        }
        if self.window < Duration::from_secs(1) || self.window > MAX_WINDOW {
            return Err(SequenceError::BadWindow);
        }
        if self.open_for < Duration::from_secs(1) || self.open_for > MAX_OPEN_FOR {
            return Err(SequenceError::BadOpenFor);
        }
        Ok(warnings)
    }

    /// Every knock this door can ever expect that is known in advance (not derived).
    pub fn fixed_knocks(&self) -> impl Iterator<Item = &Service> + '_ {
        let lines: &[Vec<Service>] = match &self.kind {
            Kind::OneTime { lines, .. } => lines,
            _ => &[],
        };
        let own: &[Service] = match &self.kind {
            Kind::Sequence => &self.sequence,
            _ => &[],
        };
        own.iter().chain(lines.iter().flatten())
    }

    /// Whether this door's target and flag filter let the knock count at all.
    pub(crate) fn admits(&self, knock: &Knock) -> bool {
        self.targets(knock) && self.flags_match(knock)
    }

    /// Whether the knock was sent to this door's target address (any address without one).
    pub(crate) fn targets(&self, knock: &Knock) -> bool {
        self.target
            .is_none_or(|t| t.to_canonical() == knock.dst.to_canonical())
    }

    /// Whether the knock passes this door's TCP flag filter (UDP knocks always do).
    pub(crate) fn flags_match(&self, knock: &Knock) -> bool {
        match (knock.proto, self.tcp_flags) {
            (crate::Proto::Tcp, Some(filter)) => filter.matches(knock.tcp_flags),
            _ => true,
        }
    }
}

/// Why a source's attempt at a sequence door failed (see "Failed attempts" above). Knocks are
/// counted from 1; the expected ports are never named, so a log of failures does not reveal the
/// sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Knock `at` of `of` came on a port of the door that was not the expected one.
    WrongPort { at: usize, of: usize, got: Service },
    /// The window ran out with `matched` of `of` knocks matched.
    Window {
        matched: usize,
        of: usize,
        window: Duration,
    },
    /// Knock `at` of `of` came on the expected port with TCP flags the door does not accept,
    /// and the attempt then ended (the window ran out, or a wrong port).
    Flags {
        at: usize,
        of: usize,
        got: TcpFlags,
        want: FlagFilter,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::WrongPort { at, of, got } => {
                write!(f, "knock {at} of {of} was on a wrong port ({got})")
            }
            Failure::Window {
                matched,
                of,
                window,
            } => write!(
                f,
                "the window of {}s ran out after {matched} of {of} knocks",
                window.as_secs()
            ),
            Failure::Flags { at, of, got, want } => {
                let got = if got.0 == 0 {
                    "none".to_string()
                } else {
                    got.to_string()
                };
                write!(
                    f,
                    "knock {at} of {of} had TCP flags {got}, the door wants {want}"
                )
            }
        }
    }
}

/// The progress after `service` is knocked on `seq` with `progress` knocks already matched.
/// The caller has already checked the window and that `service` belongs to the sequence.
pub(crate) fn step(seq: &[Service], progress: usize, service: Service) -> Step {
    if seq.get(progress) == Some(&service) {
        if progress + 1 == seq.len() {
            Step::Complete
        } else {
            Step::Advance(progress + 1)
        }
    } else if progress > 0 && seq.get(progress - 1) == Some(&service) {
        Step::Ignore
    } else if seq.first() == Some(&service) {
        Step::Restart
    } else {
        Step::Reset
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

    fn door(seq: &[u16]) -> DoorSpec {
        DoorSpec {
            name: "t".into(),
            sequence: seq.iter().map(|p| Service::tcp(*p)).collect(),
            window: Duration::from_secs(10),
            tcp_flags: None,
            open: vec![Service::tcp(22)],
            open_for: Duration::from_secs(30),
            kind: Kind::Sequence,
            target: None,
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
        assert_eq!(step(&d.sequence, 0, Service::tcp(7000)), Step::Advance(1));
        assert_eq!(step(&d.sequence, 1, Service::tcp(7000)), Step::Ignore);
        assert_eq!(step(&d.sequence, 1, Service::tcp(9000)), Step::Advance(2));
        assert_eq!(step(&d.sequence, 2, Service::tcp(7000)), Step::Restart);
        assert_eq!(step(&d.sequence, 2, Service::tcp(8000)), Step::Complete);
        assert_eq!(step(&d.sequence, 1, Service::tcp(8000)), Step::Reset);
        assert_eq!(step(&d.sequence, 0, Service::tcp(8000)), Step::Reset);
    }
}
