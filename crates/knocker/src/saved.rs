//! Knocking a saved profile, whatever its kind: what `knocker knock NAME` and `knocker connect`
//! share. The command line's options ([`Knocking`]) go over the profile's own; [`knock_saved`]
//! sends what the kind needs ([`crate::kinds`], [`crate::spa`], [`crate::knock`]) and says on
//! [`Say`]'s stream what it sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use knocker_wire::Service;

use crate::fwknoprc;
use crate::kinds::{self, KindError};
use crate::knock::{self, Family, KnockError};
use crate::profile::{Kind, Profile, Store};
use crate::spa::{self, SpaError};

/// Why a saved profile could not be knocked.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error(transparent)]
    Knock(#[from] KnockError),
    #[error(transparent)]
    Kind(#[from] KindError),
    #[error(transparent)]
    Spa(#[from] SpaError),
}

impl SavedError {
    /// Whether the mistake is in what the user typed or wrote (exit status 2).
    pub fn is_usage(&self) -> bool {
        match self {
            SavedError::Knock(_) => false,
            SavedError::Kind(e) => e.is_usage(),
            SavedError::Spa(e) => e.is_usage(),
        }
    }
}

/// Where `-v` lines about knocks go: `knock` prints them on standard output (as Debian's `knock
/// -v` does); `connect` on standard error, because its standard output is the connection's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Say {
    Stdout,
    Stderr,
}

impl Say {
    pub fn line(self, text: &str) {
        match self {
            Say::Stdout => println!("{text}"),
            Say::Stderr => eprintln!("knocker: {text}"),
        }
    }
}

/// How a saved profile is knocked: what the command line says over the profile.
#[derive(Clone, Copy, Debug, Default)]
pub struct Knocking<'a> {
    /// -4 / -6, over the profile's `family`.
    pub family: Option<Family>,
    /// -d, over the profile's `delay_ms`.
    pub delay_ms: Option<u32>,
    /// --at (tests): the time instead of now.
    pub at: Option<u64>,
    /// --time-offset: seconds added to the time put in knocks.
    pub time_offset: i64,
    /// --open: the services of a spa or syn profile to knock for (None: all of them).
    pub open: Option<&'a [Service]>,
    /// -v: where to say what is sent.
    pub say: Option<Say>,
}

impl Knocking<'_> {
    /// The time the knocks carry: now (or --at), shifted by --time-offset.
    pub fn now(&self) -> u64 {
        self.at
            .unwrap_or_else(kinds::now_unix)
            .saturating_add_signed(self.time_offset)
    }
}

/// Knocks a saved profile `name`, whatever its kind: its sequence, the current rotating sequence
/// (a hotp counter is used up), a new encoded request, one fwknop or knocker SPA packet, or
/// stealth SYNs. `how` (the command line) overrides the profile. Returns the address the knocks
/// went to, where the door opens (None for fwknop, which resolves the host itself: see
/// [`crate::connect`]).
pub fn knock_saved(
    store: &Store,
    name: &str,
    saved: &Profile,
    how: &Knocking,
) -> Result<Option<IpAddr>, SavedError> {
    let say = how.say;
    let now = how.now();
    let wanted = match &saved.kind {
        Kind::Spa(spa) => Some(kinds::select(name, &spa.open, how.open)?),
        Kind::Syn(syn) => Some(kinds::select(name, &syn.open, how.open)?),
        _ if how.open.is_some() => {
            return Err(kinds::KindError::OpenNotForKind(name.to_string()).into())
        }
        _ => None,
    };
    if let Kind::Fwknop(fwknop) = &saved.kind {
        // One SPA datagram, not a sequence. Its -v summary is printed on standard output, so
        // for standard error a shorter line of our own.
        spa::knock_profile(
            store,
            &saved.host,
            fwknop,
            say == Some(Say::Stdout),
            Some(now),
        )?;
        if say == Some(Say::Stderr) {
            Say::Stderr.line(&format!("sent an fwknop SPA packet to {}", saved.host));
        }
        return Ok(None);
    }
    let family = match (&saved.kind, how.family.unwrap_or(saved.family)) {
        // The knocks must come from the family of the address they ask to open for.
        (Kind::Encoded(encoded), Family::Any) => match encoded.allow {
            Some(IpAddr::V4(_)) => Family::V4,
            Some(IpAddr::V6(_)) => Family::V6,
            None => Family::Any,
        },
        (_, family) => family,
    };
    // Resolve first: a host that does not resolve must not use up a hotp counter.
    let ip = knock::resolve(&saved.host, family)?;
    let delay = Duration::from_millis(how.delay_ms.unwrap_or(saved.delay_ms).into());
    let chosen = wanted.unwrap_or_default();
    let services = || chosen.iter().map(|(_, s)| *s).collect::<Vec<_>>();
    let sequence = match &saved.kind {
        Kind::Sequence(sequence) => sequence.clone(),
        Kind::Rotating(rotating) => kinds::rotating(store, rotating, now, true)?.0,
        Kind::Encoded(encoded) => kinds::encoded(store, encoded, ip, now)?,
        Kind::Spa(profile) => {
            let datagram = kinds::spa(store, profile, &services(), now)?;
            let addr = SocketAddr::new(ip, profile.port);
            if let Some(say) = say {
                let open: Vec<String> = services().iter().map(Service::to_string).collect();
                say.line(&format!(
                    "knocker SPA to {addr}/udp: open {}{}, {} bytes",
                    open.join(","),
                    profile
                        .duration_secs
                        .map_or(String::new(), |d| format!(" for {d}s")),
                    datagram.len()
                ));
            }
            kinds::send_datagram(addr, &datagram)?;
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            return Ok(Some(ip));
        }
        Kind::Syn(profile) => {
            kinds::syn(
                store,
                profile,
                ip,
                &chosen,
                now,
                delay,
                |sent, addr, slot, service| {
                    if let Some(say) = say {
                        let guessed = match sent.guessed.is_empty() {
                            true => String::new(),
                            false => format!("; assumed: {}", sent.guessed.join(", ")),
                        };
                        say.line(&format!(
                            "SYN to {addr} from {}:{} (slot {slot}: {service}{guessed})",
                            sent.src, sent.src_port
                        ));
                    }
                },
            )?;
            return Ok(Some(ip));
        }
        // Sent above: one SPA datagram, not a sequence.
        Kind::Fwknop(_) => return Ok(None),
    };
    send(ip, &sequence, delay, say)?;
    Ok(Some(ip))
}

/// What `knocker knock` says after knocking a profile: how long the door stays open, as far as
/// the client knows (see [`open_for`]); when the knock carries no duration, that the server
/// decides.
pub fn open_note(store: &Store, saved: &Profile) -> String {
    if let Some(secs) = open_for(store, saved) {
        return format!("door open for up to {secs}s");
    }
    match &saved.kind {
        Kind::Spa(_) | Kind::Fwknop(_) => {
            "door open for the door's default time: the profile asks for no duration, so the \
             server decides how long"
                .to_string()
        }
        kind => format!(
            "the server decides how long the door stays open: a {} knock carries no duration",
            kind.name()
        ),
    }
}

/// How long a knock of `saved` asks the door to stay open, when the profile says: an encoded
/// request's duration, an fwknop packet's timeout (the profile's, else its stanza's FW_TIMEOUT),
/// a spa request's duration. A sequence, rotating or syn knock carries none: the server's
/// `open_for` decides, unknown here.
pub fn open_for(store: &Store, saved: &Profile) -> Option<u32> {
    match &saved.kind {
        Kind::Encoded(encoded) => Some(encoded.duration_secs),
        Kind::Spa(spa) => spa.duration_secs,
        Kind::Fwknop(fw) => fw
            .timeout_secs
            .or_else(|| {
                let path = match &fw.rc_file {
                    Some(p) => store.resolve(p),
                    None => fwknoprc::default_path()?,
                };
                fwknoprc::load(&path, Some(fw.stanza.as_deref()?))
                    .ok()?
                    .fw_timeout
            })
            // FW_TIMEOUT 0 is no timeout: the server's default applies.
            .filter(|&t| t > 0),
        Kind::Sequence(_) | Kind::Rotating(_) | Kind::Syn(_) => None,
    }
}

pub fn send(
    ip: IpAddr,
    sequence: &[Service],
    delay: Duration,
    say: Option<Say>,
) -> Result<(), KnockError> {
    knock::knock_sequence(ip, sequence, delay, |proto, addr| {
        if let Some(say) = say {
            say.line(&match proto {
                knocker_wire::Proto::Icmp => format!(
                    "hitting icmp {} (an echo request, ping -s {})",
                    addr.ip(),
                    addr.port()
                ),
                _ => format!("hitting {proto} {addr}"),
            });
        }
    })?;
    Ok(())
}
