//! What a profile's kind puts on the wire: a static sequence, the current rotating sequence, a
//! freshly encoded request, a sealed SPA datagram or stealth SYNs. The computations are
//! knocker-wire's, the same the daemon checks with; this module adds the files (keys, counters)
//! and the client's view of the network.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use knocker_wire::encoded::{self, EncodeError, Request};
use knocker_wire::identity::PrivateKey;
use knocker_wire::rotate;
use knocker_wire::spa::SealError;
use knocker_wire::{EncodedKey, KeyError, RotateKey, Service};

use crate::profile::{Encoded, Mode, Rotating, Spa, Store, Syn};
use crate::secrets::{self, SecretError};

/// The largest `--time-offset`: a hundred years either way.
const MAX_TIME_OFFSET: i64 = 100 * 366 * 86_400;

/// A `--time-offset` knocker does not take (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTimeOffset {
    #[error("{0:?}: give seconds, e.g. -90 or +30 (or 2m, -1h)")]
    NotSeconds(String),
    #[error("{0:?}: at most 100 years either way")]
    TooFar(String),
}

/// Parses `--time-offset`: signed seconds (`-90`, `+30`), or with a unit (`2m`, `-1h`, `1d`).
pub fn parse_time_offset(text: &str) -> Result<i64, BadTimeOffset> {
    let t = text.trim();
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let (num, unit) = match rest.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => rest.split_at(i),
        None => (rest, "s"),
    };
    let bad = || BadTimeOffset::NotSeconds(text.to_string());
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(secs) if secs <= MAX_TIME_OFFSET => Ok(sign * secs),
        _ => Err(BadTimeOffset::TooFar(text.to_string())),
    }
}

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
    #[error("cannot build the SPA packet: {0}")]
    Seal(#[from] SealError),
    #[error("cannot send the SPA packet to {addr}: {source}")]
    SendSpa { addr: SocketAddr, source: io::Error },
    #[error("the profile's server_key cannot be used: {0}")]
    ServerKey(knocker_wire::identity::IdentityError),
    // The error of a refused raw socket says how to get one (crate::syn).
    #[error("cannot send a SYN to {addr}: {source}")]
    SendSyn { addr: SocketAddr, source: io::Error },
    #[error("--open {service}: profile {profile:?} opens only {}", list(.open))]
    NotListed {
        service: Service,
        profile: String,
        open: Vec<Service>,
    },
    #[error("--open is for spa and syn profiles, and profile {0:?} is not one (its services are in the profile)")]
    OpenNotForKind(String),
}

impl KindError {
    /// Whether the mistake is in what the user typed (exit status 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            KindError::NotListed { .. } | KindError::OpenNotForKind(_)
        )
    }
}

fn list(services: &[Service]) -> String {
    let names: Vec<String> = services.iter().map(Service::to_string).collect();
    names.join(", ")
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

/// The services of a spa or syn profile to knock for, each with its slot (its index in the
/// profile's `open`): all of them, or those `--open` names (each must be in the profile).
pub fn select(
    profile_name: &str,
    open: &[Service],
    wanted: Option<&[Service]>,
) -> Result<Vec<(u8, Service)>, KindError> {
    let all = open.iter().enumerate().map(|(i, s)| (i as u8, *s));
    let Some(wanted) = wanted else {
        return Ok(all.collect());
    };
    let mut chosen: Vec<(u8, Service)> = Vec::new();
    for service in wanted {
        let Some(pos) = open.iter().position(|s| s == service) else {
            return Err(KindError::NotListed {
                service: *service,
                profile: profile_name.to_string(),
                open: open.to_vec(),
            });
        };
        if !chosen.iter().any(|(i, _)| usize::from(*i) == pos) {
            chosen.push((pos as u8, *service));
        }
    }
    Ok(chosen)
}

/// A spa profile's datagram: a request made `now` (the caller has applied --time-offset) with a
/// fresh random nonce, sealed with the identity in `key_file` to the server's key, tagged with
/// the door's key.
pub fn spa(
    store: &Store,
    profile: &Spa,
    services: &[Service],
    now: u64,
) -> Result<Vec<u8>, KindError> {
    let identity = secrets::load_key(&store.resolve(&profile.key_file), PrivateKey::from_base64)?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| KindError::Rng(KeyError::Rng(e)))?;
    let request = knocker_wire::spa::Request {
        timestamp: now,
        nonce,
        allow: profile.allow,
        services: services.to_vec(),
        duration: profile.duration_secs,
    };
    Ok(knocker_wire::spa::seal(
        &request,
        &identity,
        &profile.server_key,
        &profile.door_key,
    )?)
}

/// Sends `datagram` to `addr` as one UDP datagram, from any port.
pub fn send_datagram(addr: SocketAddr, datagram: &[u8]) -> Result<(), KindError> {
    let err = |source| KindError::SendSpa { addr, source };
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(err)?;
    let sent = socket.send_to(datagram, addr).map_err(err)?;
    if sent != datagram.len() {
        return Err(err(io::Error::other("the datagram was cut short")));
    }
    Ok(())
}

/// A syn profile's knocks to `ip`: one SYN per chosen slot, at time `now` (the caller has applied
/// --time-offset), `delay` after each. `after_each` sees what each one was, once it is sent.
pub fn syn(
    store: &Store,
    profile: &Syn,
    ip: IpAddr,
    slots: &[(u8, Service)],
    now: u64,
    delay: Duration,
    mut after_each: impl FnMut(&crate::syn::Sent, SocketAddr, u8, Service),
) -> Result<(), KindError> {
    let identity = secrets::load_key(&store.resolve(&profile.key_file), PrivateKey::from_base64)?;
    let key = identity
        .syn_key(&profile.server_key)
        .map_err(KindError::ServerKey)?;
    let addr = SocketAddr::new(ip, profile.port);
    for &(slot, service) in slots {
        let sent = crate::syn::send(&key, addr, slot, now)
            .map_err(|source| KindError::SendSyn { addr, source })?;
        after_each(&sent, addr, slot, service);
        if !delay.is_zero() {
            thread::sleep(delay);
        }
    }
    Ok(())
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
    fn time_offsets() {
        assert_eq!(parse_time_offset("-90"), Ok(-90));
        assert_eq!(parse_time_offset("+30"), Ok(30));
        assert_eq!(parse_time_offset("30"), Ok(30));
        assert_eq!(parse_time_offset("2m"), Ok(120));
        assert_eq!(parse_time_offset("-1h"), Ok(-3600));
        assert_eq!(parse_time_offset("1d"), Ok(86_400));
        for bad in [
            "",
            "-",
            "+-3",
            "1y",
            "ninety",
            "1 h",
            "99999999999999999999",
        ] {
            assert!(parse_time_offset(bad).is_err(), "{bad:?}");
        }
        assert!(parse_time_offset(&format!("{}", MAX_TIME_OFFSET + 1)).is_err());
    }

    #[test]
    fn open_selects_slots_by_the_profiles_order() {
        let open = [Service::tcp(22), Service::tcp(443), Service::udp(53)];
        assert_eq!(
            select("p", &open, None).expect("all"),
            vec![
                (0, Service::tcp(22)),
                (1, Service::tcp(443)),
                (2, Service::udp(53))
            ]
        );
        assert_eq!(
            select("p", &open, Some(&[Service::udp(53), Service::tcp(22)])).expect("two"),
            vec![(2, Service::udp(53)), (0, Service::tcp(22))]
        );
        assert_eq!(
            select("p", &open, Some(&[Service::tcp(22), Service::tcp(22)])).expect("once"),
            vec![(0, Service::tcp(22))]
        );
        let e = select("p", &open, Some(&[Service::tcp(80)])).expect_err("not listed");
        assert!(e.is_usage());
        assert_eq!(
            e.to_string(),
            "--open tcp/80: profile \"p\" opens only tcp/22, tcp/443, udp/53"
        );
    }

    #[test]
    fn now_is_after_2023() {
        assert!(now_unix() > 1_700_000_000);
    }
}
