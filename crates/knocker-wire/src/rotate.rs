//! Rotating sequences: a port sequence derived from a shared key and a counter, so that a
//! recorded knock is worthless once its counter is used up.
//!
//! The counter is the time step for TOTP ([`time_step`]: Unix time divided by the period) or an
//! event counter for HOTP, kept by the client and the server. Both sides compute
//! [`sequence`]`(key, spec, counter)`; the server accepts each counter once.
//!
//! # The derivation (version 1), for anyone writing another client
//!
//! ```text
//! block(b) = HMAC-SHA256(key,  "knocker rotate v1"            17 bytes, ASCII
//!                            || knocks                        1 byte
//!                            || first port || last port       2 + 2 bytes, big-endian
//!                            || protocol number               1 byte (tcp 6, udp 17)
//!                            || counter                       8 bytes, big-endian
//!                            || b)                            4 bytes, big-endian, from 0
//! draws  = block(0) || block(1) || ...  read as big-endian u16s (16 per block)
//! ```
//!
//! With `n` ports in the range, a draw `x` is used only if `x < 65536 - 65536 % n`, and then
//! names port `first + x % n`: rejection sampling, so every port is equally likely. Used draws
//! fill the sequence in order, skipping a port the sequence already holds (so every knock is
//! distinct, and a retransmission is never ambiguous). A complete sequence whose ports are in
//! ascending or descending order is thrown away and the next draws start a new one, so the result
//! satisfies the engine's rules for a sequence door (at least three knocks, no knock repeating the
//! previous one, not monotonic: a port sweep never completes it).
//!
//! Draws are bounded to [`MAX_BLOCKS`] blocks so the function is total; running out needs more than
//! eight thousand rejected draws in a row, each rejected with probability below one half. Should
//! it ever happen, the sequence is `first+1, first, first+2, first+3, ...`.

use std::fmt;
use std::ops::RangeInclusive;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::key::secret_key;
use crate::{Proto, Service};

/// The fewest knocks a rotating sequence may have (the engine's minimum for any sequence).
pub const MIN_KNOCKS: usize = 3;
/// The most knocks a rotating sequence may have.
pub const MAX_KNOCKS: usize = 16;
/// The fewest ports a range may hold: below that, guessing a sequence gets too easy.
pub const MIN_PORTS: u32 = 64;
/// The bound on HMAC blocks one sequence may use (see the module docs).
pub const MAX_BLOCKS: u32 = 1024;

const LABEL: &[u8; 17] = b"knocker rotate v1";

secret_key! {
    /// The shared key of a rotating door: 32 bytes, as one line of base64 in a key file.
    RotateKey
}

/// A rotating door's shape: how many knocks, drawn from which ports, over which protocol.
/// Valid by construction (see [`RotateSpec::new`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RotateSpec {
    knocks: usize,
    ports: RangeInclusive<u16>,
    proto: Proto,
}

/// Why a rotating door's shape was refused; each message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("a rotating sequence has from {MIN_KNOCKS} to {MAX_KNOCKS} knocks, not {0}")]
    Knocks(usize),
    #[error("the port range {0}-{1} is empty: write it first-last, e.g. 40000-40999")]
    Empty(u16, u16),
    #[error("port 0 cannot be knocked: the range must start at 1 or above")]
    PortZero,
    #[error("the port range {0}-{1} holds {2} ports; it needs at least {MIN_PORTS}")]
    TooFewPorts(u16, u16, u32),
    #[error("bad port range {0:?}: write first-last, e.g. 40000-40999")]
    Syntax(String),
}

impl RotateSpec {
    /// `knocks` from 3 to 16, a range of at least 64 ports that does not contain port 0.
    pub fn new(
        knocks: usize,
        ports: RangeInclusive<u16>,
        proto: Proto,
    ) -> Result<RotateSpec, SpecError> {
        if !(MIN_KNOCKS..=MAX_KNOCKS).contains(&knocks) {
            return Err(SpecError::Knocks(knocks));
        }
        let (first, last) = (*ports.start(), *ports.end());
        if first > last {
            return Err(SpecError::Empty(first, last));
        }
        if first == 0 {
            return Err(SpecError::PortZero);
        }
        let count = u32::from(last) - u32::from(first) + 1;
        if count < MIN_PORTS {
            return Err(SpecError::TooFewPorts(first, last, count));
        }
        Ok(RotateSpec {
            knocks,
            ports,
            proto,
        })
    }

    pub fn knocks(&self) -> usize {
        self.knocks
    }

    pub fn ports(&self) -> RangeInclusive<u16> {
        self.ports.clone()
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// How many ports the range holds.
    pub fn port_count(&self) -> u32 {
        u32::from(*self.ports.end()) - u32::from(*self.ports.start()) + 1
    }
}

impl fmt::Display for RotateSpec {
    /// `4 tcp knocks in 40000-40999`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} knocks in {}-{}",
            self.knocks,
            self.proto,
            self.ports.start(),
            self.ports.end()
        )
    }
}

/// Parses a port range as configs write it: `40000-40999` (spaces around the dash allowed).
/// Only the syntax is checked here; [`RotateSpec::new`] checks the rest.
pub fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, SpecError> {
    let syntax = || SpecError::Syntax(text.to_string());
    let (a, b) = text.split_once('-').ok_or_else(syntax)?;
    let first: u16 = a.trim().parse().map_err(|_| syntax())?;
    let last: u16 = b.trim().parse().map_err(|_| syntax())?;
    Ok(first..=last)
}

/// The TOTP counter: which `period_secs`-long step `unix_secs` falls in. A period of 0 counts
/// as 1 second (configs refuse it; this function just never divides by zero).
pub fn time_step(unix_secs: u64, period_secs: u64) -> u64 {
    unix_secs / period_secs.max(1)
}

/// Seconds from `unix_secs` until the TOTP step changes (from 1 to `period_secs`).
pub fn secs_until_next_step(unix_secs: u64, period_secs: u64) -> u64 {
    let period = period_secs.max(1);
    period - unix_secs % period
}

/// The HMAC-SHA256 stream of the module docs, read as u16 draws, bounded to [`MAX_BLOCKS`].
struct Draws<'a> {
    key: &'a RotateKey,
    prefix: [u8; 31],
    block: u32,
    buf: [u8; 32],
    at: usize,
}

impl<'a> Draws<'a> {
    fn new(key: &'a RotateKey, spec: &RotateSpec, counter: u64) -> Draws<'a> {
        let mut prefix = [0u8; 31];
        prefix[..17].copy_from_slice(LABEL);
        // knocks <= MAX_KNOCKS, so it fits in a byte.
        prefix[17] = spec.knocks as u8;
        prefix[18..20].copy_from_slice(&spec.ports.start().to_be_bytes());
        prefix[20..22].copy_from_slice(&spec.ports.end().to_be_bytes());
        prefix[22] = spec.proto.number();
        prefix[23..31].copy_from_slice(&counter.to_be_bytes());
        Draws {
            key,
            prefix,
            block: 0,
            buf: [0; 32],
            at: 32,
        }
    }

    fn next(&mut self) -> Option<u16> {
        if self.at == self.buf.len() {
            if self.block == MAX_BLOCKS {
                return None;
            }
            // HMAC takes keys of any length: this cannot fail.
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.key.bytes())
                .expect("HMAC accepts any key length");
            mac.update(&self.prefix);
            mac.update(&self.block.to_be_bytes());
            self.buf.copy_from_slice(&mac.finalize().into_bytes());
            self.block += 1;
            self.at = 0;
        }
        let x = u16::from_be_bytes([self.buf[self.at], self.buf[self.at + 1]]);
        self.at += 2;
        Some(x)
    }
}

fn monotonic(ports: &[u16]) -> bool {
    ports.windows(2).all(|w| w[0] <= w[1]) || ports.windows(2).all(|w| w[0] >= w[1])
}

/// The knock sequence for `counter`: `spec.knocks()` distinct services of `spec.proto()` with
/// ports in `spec.ports()`, not in ascending or descending order. Deterministic: the client and
/// the server compute the same sequence from the same key, spec and counter.
pub fn sequence(key: &RotateKey, spec: &RotateSpec, counter: u64) -> Vec<Service> {
    let first = u32::from(*spec.ports.start());
    let n = spec.port_count();
    // The largest multiple of n that 16 bits can hold: draws at or above it would favour the
    // low ports, so they are rejected.
    let limit = 65536 - 65536 % n;
    let mut draws = Draws::new(key, spec, counter);
    let mut ports: Vec<u16> = Vec::with_capacity(spec.knocks);
    while let Some(x) = draws.next() {
        let x = u32::from(x);
        if x >= limit {
            continue;
        }
        // first + x % n <= last <= 65535.
        let port = (first + x % n) as u16;
        if ports.contains(&port) {
            continue;
        }
        ports.push(port);
        if ports.len() == spec.knocks {
            if !monotonic(&ports) {
                return ports
                    .into_iter()
                    .map(|p| Service::new(spec.proto, p))
                    .collect();
            }
            ports.clear();
        }
    }
    fallback(spec)
}

/// The sequence of last resort (module docs): valid, and never reached in practice.
fn fallback(spec: &RotateSpec) -> Vec<Service> {
    let first = *spec.ports.start();
    (0..spec.knocks)
        .map(|i| {
            // Ranges hold at least 64 ports and knocks <= 16, so this stays in range.
            let offset = match i {
                0 => 1,
                1 => 0,
                i => i as u16,
            };
            Service::new(spec.proto, first + offset)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(byte: u8) -> RotateKey {
        RotateKey::from_bytes([byte; 32])
    }

    fn ports(seq: &[Service]) -> Vec<u16> {
        seq.iter().map(|s| s.port).collect()
    }

    /// The key `00 01 02 .. 1f`, as tests and other implementations write it.
    fn counting_key() -> RotateKey {
        RotateKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key")
    }

    /// Known answers, computed independently (Python's hmac and hashlib, following the module
    /// docs). Any change here breaks every deployed client and server: it needs a new label.
    /// Between them they exercise rejected draws, a repeated port skipped and monotonic
    /// sequences thrown away (UDP counters 1, 3 and 7).
    #[test]
    fn known_answers() {
        let k = counting_key();
        type Case = (usize, RangeInclusive<u16>, Proto, u64, &'static [u16]);
        let cases: &[Case] = &[
            (
                4,
                40000..=40999,
                Proto::Tcp,
                0,
                &[40392, 40952, 40454, 40384],
            ),
            (
                4,
                40000..=40999,
                Proto::Tcp,
                1,
                &[40516, 40394, 40793, 40230],
            ),
            (
                4,
                40000..=40999,
                Proto::Tcp,
                2,
                &[40579, 40584, 40143, 40845],
            ),
            (
                4,
                40000..=40999,
                Proto::Tcp,
                56_666_666,
                &[40461, 40625, 40237, 40618],
            ),
            (
                4,
                40000..=40999,
                Proto::Tcp,
                u64::MAX,
                &[40649, 40299, 40876, 40213],
            ),
            (3, 1000..=1063, Proto::Udp, 0, &[1045, 1015, 1044]),
            (3, 1000..=1063, Proto::Udp, 1, &[1046, 1030, 1054]),
            (3, 1000..=1063, Proto::Udp, 2, &[1055, 1058, 1022]),
            (3, 1000..=1063, Proto::Udp, 3, &[1034, 1000, 1060]),
            (3, 1000..=1063, Proto::Udp, 4, &[1043, 1014, 1022]),
            (3, 1000..=1063, Proto::Udp, 5, &[1042, 1012, 1015]),
            (3, 1000..=1063, Proto::Udp, 6, &[1001, 1053, 1026]),
            (3, 1000..=1063, Proto::Udp, 7, &[1031, 1001, 1043]),
            (
                4,
                40000..=65535,
                Proto::Tcp,
                0,
                &[40148, 63421, 51635, 59730],
            ),
            (
                16,
                1..=64,
                Proto::Tcp,
                2,
                &[
                    47, 50, 12, 25, 27, 10, 44, 60, 48, 16, 49, 53, 7, 32, 34, 52,
                ],
            ),
            (
                16,
                1..=65535,
                Proto::Tcp,
                56_666_666,
                &[
                    63115, 34475, 61019, 42406, 3021, 3867, 48581, 59874, 46946, 61682, 59082,
                    62279, 57796, 31851, 39925, 23207,
                ],
            ),
        ];
        for (knocks, range, proto, counter, want) in cases {
            let spec = RotateSpec::new(*knocks, range.clone(), *proto).expect("spec");
            let seq = sequence(&k, &spec, *counter);
            assert!(seq.iter().all(|s| s.proto == *proto));
            assert_eq!(ports(&seq), *want, "{spec}, counter {counter}");
        }
    }

    #[test]
    fn the_spec_is_checked() {
        assert_eq!(
            RotateSpec::new(2, 1000..=2000, Proto::Tcp),
            Err(SpecError::Knocks(2))
        );
        assert_eq!(
            RotateSpec::new(17, 1000..=2000, Proto::Tcp),
            Err(SpecError::Knocks(17))
        );
        assert_eq!(
            RotateSpec::new(4, 0..=2000, Proto::Tcp),
            Err(SpecError::PortZero)
        );
        assert_eq!(
            RotateSpec::new(4, RangeInclusive::new(2000, 1000), Proto::Tcp),
            Err(SpecError::Empty(2000, 1000))
        );
        assert_eq!(
            RotateSpec::new(4, 1000..=1062, Proto::Tcp),
            Err(SpecError::TooFewPorts(1000, 1062, 63))
        );
        let spec = RotateSpec::new(4, 1000..=1063, Proto::Udp).expect("64 ports");
        assert_eq!(spec.port_count(), 64);
        assert_eq!(spec.to_string(), "4 udp knocks in 1000-1063");
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_ports("40000-40999"), Ok(40000..=40999));
        assert_eq!(parse_ports(" 1 - 65535 "), Ok(1..=65535));
        for bad in ["", "40000", "40000-", "-1", "a-b", "1-70000", "1..2"] {
            assert!(parse_ports(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_steps() {
        assert_eq!(time_step(0, 30), 0);
        assert_eq!(time_step(29, 30), 0);
        assert_eq!(time_step(30, 30), 1);
        assert_eq!(time_step(1_700_000_000, 30), 56_666_666);
        assert_eq!(time_step(u64::MAX, 0), u64::MAX);
        assert_eq!(secs_until_next_step(1_700_000_000, 30), 10);
        assert_eq!(secs_until_next_step(30, 30), 30);
        assert_eq!(secs_until_next_step(59, 30), 1);
        assert_eq!(secs_until_next_step(5, 0), 1);
    }

    #[test]
    fn the_fallback_is_a_valid_sequence() {
        let spec = RotateSpec::new(16, 1..=64, Proto::Tcp).expect("spec");
        let seq = ports(&fallback(&spec));
        assert_eq!(&seq[..4], &[2, 1, 3, 4]);
        assert_valid(&spec, &seq);
        let spec = RotateSpec::new(3, 100..=163, Proto::Tcp).expect("spec");
        assert_eq!(ports(&fallback(&spec)), vec![101, 100, 102]);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = counting_key();
        assert_eq!(format!("{k:?}"), "RotateKey(..)");
        assert_eq!(k, counting_key());
        assert_ne!(k, key(0));
    }

    fn assert_valid(spec: &RotateSpec, seq: &[u16]) {
        assert_eq!(seq.len(), spec.knocks());
        assert!(seq.iter().all(|p| spec.ports().contains(p)), "{seq:?}");
        let mut sorted = seq.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), seq.len(), "repeated port in {seq:?}");
        assert!(!monotonic(seq), "monotonic: {seq:?}");
    }

    fn spec_strategy() -> impl Strategy<Value = RotateSpec> {
        (
            MIN_KNOCKS..=MAX_KNOCKS,
            1u16..=65535 - 63,
            63u32..=65534,
            any::<bool>(),
        )
            .prop_map(|(knocks, first, extra, udp)| {
                let last = (u32::from(first) + extra).min(65535) as u16;
                let proto = if udp { Proto::Udp } else { Proto::Tcp };
                RotateSpec::new(knocks, first..=last, proto).expect("valid by construction")
            })
    }

    proptest! {
        #[test]
        fn sequences_are_always_valid_doors(
            k in any::<[u8; 32]>(),
            spec in spec_strategy(),
            counter in any::<u64>(),
        ) {
            let seq = sequence(&RotateKey::from_bytes(k), &spec, counter);
            prop_assert!(seq.iter().all(|s| s.proto == spec.proto()));
            assert_valid(&spec, &ports(&seq));
        }

        #[test]
        fn small_ranges_and_short_sequences_are_valid_too(
            k in any::<[u8; 32]>(),
            knocks in MIN_KNOCKS..=MAX_KNOCKS,
            first in 1u16..=65535 - 63,
            counter in any::<u64>(),
        ) {
            let spec = RotateSpec::new(knocks, first..=first + 63, Proto::Tcp).expect("spec");
            assert_valid(&spec, &ports(&sequence(&RotateKey::from_bytes(k), &spec, counter)));
        }

        #[test]
        fn deterministic_and_counters_differ(
            k in any::<[u8; 32]>(),
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let key = RotateKey::from_bytes(k);
            // 4 knocks of 1000 ports: two counters give the same sequence with probability
            // about 1e-12, so a collision here means a broken derivation, not bad luck.
            let spec = RotateSpec::new(4, 40000..=40999, Proto::Tcp).expect("spec");
            prop_assert_eq!(sequence(&key, &spec, a), sequence(&key, &spec, a));
            if a != b {
                prop_assert_ne!(sequence(&key, &spec, a), sequence(&key, &spec, b));
            }
        }

        #[test]
        fn keys_differ(
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
            counter in any::<u64>(),
        ) {
            prop_assume!(a != b);
            let spec = RotateSpec::new(4, 40000..=40999, Proto::Tcp).expect("spec");
            prop_assert_ne!(
                sequence(&RotateKey::from_bytes(a), &spec, counter),
                sequence(&RotateKey::from_bytes(b), &spec, counter)
            );
        }
    }

    #[test]
    fn neighbouring_steps_differ_even_in_the_smallest_door() {
        // 3 knocks of 64 ports: about 166 000 possible sequences, so a step repeats the one
        // before it with probability 1 in 166 000; over 10 000 steps, more than one repeat would
        // say the counter is not mixed in properly.
        let spec = RotateSpec::new(3, 1000..=1063, Proto::Tcp).expect("spec");
        let k = counting_key();
        let mut previous = sequence(&k, &spec, 0);
        let mut repeats = 0;
        for counter in 1..10_000 {
            let next = sequence(&k, &spec, counter);
            repeats += usize::from(next == previous);
            previous = next;
        }
        assert!(repeats <= 1, "{repeats} neighbouring steps repeat");
    }
}
