//! What a profile's kind puts on the wire: a static sequence, the current rotating sequence, or a
//! freshly encoded request. The computations are knocker-wire's, the same the daemon checks with;
//! this module adds the files (keys, counters) and the client's view of the network.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use knocker_wire::encoded::{self, EncodeError, Request};
use knocker_wire::rotate;
use knocker_wire::{EncodedKey, KeyError, RotateKey, Service};

use crate::profile::{Encoded, Mode, Rotating, Store};
use crate::secrets::{self, SecretError};

#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("cannot make a nonce: {0}")]
    Rng(KeyError),
    #[error(
        "cannot tell this machine's address towards {ip} (set `allow` in the profile): {source}"
    )]
    Route { ip: IpAddr, source: io::Error },
    #[error("the profile allows {allow}, but the host's address is {ip}: the server opens only for the address the knocks come from, so both must be IPv4 or both IPv6")]
    AllowFamily { allow: IpAddr, ip: IpAddr },
}

/// Seconds since 1970 by the system clock (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The counter a rotating profile knocks with, and what to tell the user about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub counter: u64,
    pub note: String,
}

/// A rotating profile's current sequence. TOTP: the time step of `now`. HOTP: the next counter
/// in the counter file, which is moved on (before anything is sent) if `consume`.
pub fn rotating(
    store: &Store,
    profile: &Rotating,
    now: u64,
    consume: bool,
) -> Result<(Vec<Service>, Step), KindError> {
    // The key first: a broken key file must not use up a counter.
    let key = secrets::load_key(&store.resolve(&profile.key_file), RotateKey::from_base64)?;
    let step = match &profile.mode {
        Mode::Totp { period_secs } => {
            let counter = rotate::time_step(now, *period_secs);
            Step {
                counter,
                note: format!(
                    "totp step {counter} ({period_secs}s): changes in {}s",
                    rotate::secs_until_next_step(now, *period_secs)
                ),
            }
        }
        Mode::Hotp { counter_file } => {
            let path = store.resolve(counter_file);
            if consume {
                let counter = secrets::take_counter(&path)?;
                Step {
                    counter,
                    note: format!(
                        "hotp counter {counter}, used up: {} now holds {}",
                        path.display(),
                        counter.saturating_add(1)
                    ),
                }
            } else {
                let counter = secrets::read_counter(&path)?;
                Step {
                    counter,
                    note: format!(
                        "hotp counter {counter}, not used up: knocking it, or --consume, moves \
                         {} on",
                        path.display()
                    ),
                }
            }
        }
    };
    Ok((rotate::sequence(&key, &profile.spec, step.counter), step))
}

/// An encoded profile's knocks to `ip`: a new request made `now`, with a fresh nonce.
pub fn encoded(
    store: &Store,
    profile: &Encoded,
    ip: IpAddr,
    now: u64,
) -> Result<Vec<Service>, KindError> {
    let key = secrets::load_key(&store.resolve(&profile.key_file), EncodedKey::from_base64)?;
    let allow = match profile.allow {
        Some(allow) if allow.is_ipv4() != ip.is_ipv4() => {
            return Err(KindError::AllowFamily { allow, ip })
        }
        Some(allow) => allow,
        None => source_towards(ip, profile.spec.base())
            .map_err(|source| KindError::Route { ip, source })?,
    };
    let request = Request {
        allow,
        services: profile.open.clone(),
        duration_secs: profile.duration_secs,
        unix_time: now,
    };
    let nonce = encoded::random_nonce().map_err(KindError::Rng)?;
    let ports = encoded::encode(&key, &profile.spec, &request, nonce)?;
    Ok(ports
        .into_iter()
        .map(|p| Service::new(profile.spec.proto(), p))
        .collect())
}

/// The address this machine sends from towards `ip`: the kernel picks it when a UDP socket is
/// connected, which sends nothing. Behind NAT this is the private address; such a profile sets
/// `allow` to the public one.
pub fn source_towards(ip: IpAddr, port: u16) -> io::Result<IpAddr> {
    let local: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(SocketAddr::new(ip, port))?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_towards_loopback_is_loopback() {
        assert_eq!(
            source_towards(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000).expect("route"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            source_towards(IpAddr::V4(Ipv4Addr::new(127, 3, 4, 5)), 40000).expect("route"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn now_is_after_2023() {
        assert!(now_unix() > 1_700_000_000);
    }
}
