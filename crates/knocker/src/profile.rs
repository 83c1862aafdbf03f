//! Named knock profiles: `knocker knock myserver` knocks what a profile describes.
//!
//! They live in `profiles.toml` in knocker's config directory. The file is meant to be edited by
//! hand as well as by `knocker profile add/remove`, so reading reports mistakes as `file:line`,
//! and writing edits the document in place (comments and layout survive) and replaces the file
//! atomically, readable by its owner only: a static sequence is a secret.
//!
//! Reading is per profile ([`read`], [`Loaded`]): a mistake costs its own profile, which is
//! reported and skipped, never the others, because `knocker connect` runs as ssh's ProxyCommand
//! for every host. A profile that holds a secret in the file itself (`door_key`, a static
//! `sequence`) is refused while group or others may access the file, as key files are (see
//! `knocker_wire::keyfile`); profiles that only name key files are not, since the key files
//! are checked when they are read. Rewriting ([`Store::add`], [`Store::remove`]) stays strict:
//! a file with a mistake anywhere is not rewritten.
//!
//! A profile has a kind: `sequence` (a static port sequence, the default), `rotating` (a sequence
//! derived from a shared key and the time or a counter), `encoded` (an encrypted request spelled
//! out as ports), `fwknop` (one fwknop SPA packet, from a `~/.fwknoprc` stanza or key files),
//! `spa` (knocker's own SPA: one datagram sealed to the server's public key) or `syn` (stealth
//! SYNs authenticated by a key both sides derive from their public keys). Key files and counter
//! files are named by path; a relative path is relative to the directory of profiles.toml, and
//! `~/` is the home directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use knocker_wire::encoded::{self, EncodedSpec};
use knocker_wire::fwknop::Digest;
use knocker_wire::identity::{DoorKey, PublicKey};
use knocker_wire::rotate::{self, RotateSpec};
use knocker_wire::{Proto, Service};
use serde::Deserialize;
use toml::Spanned;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::knock::{self, Family};

pub const FILE_NAME: &str = "profiles.toml";

/// The TOTP period when a rotating profile names none, as most TOTP systems use.
pub const DEFAULT_PERIOD_SECS: u64 = 30;
/// How long an encoded profile asks for when it says nothing (knockerd's default `open_for`).
pub const DEFAULT_DURATION_SECS: u32 = 30;
/// The longest a spa profile may ask a door to open: knockerd's longest `open_for`, a day.
pub const MAX_SPA_DURATION_SECS: u64 = 86_400;

/// Written at the top of a profiles file that `profile add` creates.
const NEW_FILE_HEADER: &str = "\
# knocker profiles: `knocker knock NAME` knocks the sequence of [profile.NAME] on its host.
# `knocker profile add/remove` edit this file and keep hand-made changes. See `knocker --help`.

";

/// A saved knock: where, what, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub host: String,
    /// Milliseconds to wait after each knock.
    pub delay_ms: u32,
    pub family: Family,
    pub kind: Kind,
}

/// What a profile knocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A static sequence.
    Sequence(Vec<Service>),
    Rotating(Rotating),
    Encoded(Encoded),
    Fwknop(Fwknop),
    Spa(Spa),
    Syn(Syn),
}

/// knocker's own SPA: one UDP datagram to `port`, a request sealed with the client's identity
/// (`key_file`) to the server's public key, tagged with the door's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spa {
    pub port: u16,
    pub server_key: PublicKey,
    /// The door's tag key, from `knockerd enroll` (a secret: the file is the owner's alone).
    pub door_key: DoorKey,
    /// The client's X25519 private key (`knocker keygen --identity`).
    pub key_file: PathBuf,
    /// 1 to 16 services to ask for.
    pub open: Vec<Service>,
    /// Seconds to ask for; `None`: the door's default.
    pub duration_secs: Option<u32>,
    /// The address to open for; `None`: the datagram's source address, as the server sees it.
    pub allow: Option<IpAddr>,
}

/// Stealth SYNs: one TCP SYN to `port` per service, its header fields authenticated with the
/// key the client's identity shares with the server's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syn {
    pub port: u16,
    pub server_key: PublicKey,
    pub key_file: PathBuf,
    /// The door's services in the door's order: a SYN for `open[i]` carries slot `i`.
    pub open: Vec<Service>,
}

/// An fwknop SPA packet: the settings of a `~/.fwknoprc` stanza (or of `rc_file`), or keys in key
/// files; the other fields, when given, override the stanza's. The host is the profile's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fwknop {
    pub stanza: Option<String>,
    pub rc_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub hmac_key_file: Option<PathBuf>,
    pub hmac_digest: Option<Digest>,
    pub open: Option<Vec<Service>>,
    pub allow: Option<FwknopAllow>,
    pub port: Option<u16>,
    pub timeout_secs: Option<u32>,
    pub user: Option<String>,
}

/// Whom an fwknop profile asks to open for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwknopAllow {
    Ip(Ipv4Addr),
    /// `allow = "source"`: 0.0.0.0, the packet's source address.
    Source,
}

/// A rotating sequence: derived from the key in `key_file` and the time step or a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotating {
    /// As written in the file; see [`Store::resolve`].
    pub key_file: PathBuf,
    pub mode: Mode,
    pub spec: RotateSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The counter is the time step: Unix time / `period_secs`.
    Totp { period_secs: u64 },
    /// The counter is the next unused value in `counter_file` (0 if there is no file yet).
    Hotp { counter_file: PathBuf },
}

/// An encoded knock: a request to open `open` for `duration_secs` to `allow` (or to the address
/// the route to the host leaves from), encrypted with the key in `key_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub key_file: PathBuf,
    pub spec: EncodedSpec,
    pub open: Vec<Service>,
    pub duration_secs: u32,
    pub allow: Option<IpAddr>,
}

impl Kind {
    /// The name of the kind, as `kind = "..."` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Sequence(_) => "sequence",
            Kind::Rotating(_) => "rotating",
            Kind::Encoded(_) => "encoded",
            Kind::Fwknop(_) => "fwknop",
            Kind::Spa(_) => "spa",
            Kind::Syn(_) => "syn",
        }
    }
}

/// One line about what a profile knocks, for `profile list`.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Sequence(sequence) => {
                let ports: Vec<String> = sequence.iter().map(|s| knock::knock_syntax(*s)).collect();
                f.write_str(&ports.join(" "))
            }
            Kind::Rotating(r) => match &r.mode {
                Mode::Totp { period_secs } => {
                    write!(f, "rotating (totp, {period_secs}s): {}", r.spec)
                }
                Mode::Hotp { .. } => write!(f, "rotating (hotp): {}", r.spec),
            },
            Kind::Encoded(e) => {
                let open: Vec<String> = e.open.iter().map(Service::to_string).collect();
                write!(
                    f,
                    "encoded: {}, open {} for {}s",
                    e.spec,
                    open.join(" "),
                    e.duration_secs
                )
            }
            Kind::Fwknop(fw) => {
                f.write_str("fwknop")?;
                if let Some(stanza) = &fw.stanza {
                    write!(f, ": stanza [{stanza}]")?;
                }
                if let Some(open) = &fw.open {
                    let open: Vec<String> = open.iter().map(Service::to_string).collect();
                    write!(f, ", open {}", open.join(","))?;
                }
                Ok(())
            }
            Kind::Spa(spa) => {
                let open: Vec<String> = spa.open.iter().map(Service::to_string).collect();
                write!(f, "spa: udp/{}, open {}", spa.port, open.join(" "))?;
                if let Some(secs) = spa.duration_secs {
                    write!(f, " for {secs}s")?;
                }
                Ok(())
            }
            Kind::Syn(syn) => {
                let open: Vec<String> = syn.open.iter().map(Service::to_string).collect();
                write!(f, "syn: tcp/{}, slots {}", syn.port, open.join(" "))
            }
        }
    }
}

pub type Profiles = BTreeMap<String, Profile>;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot tell where profiles live: set KNOCKER_CONFIG_DIR, XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}{}: {message}", .path.display(), location(.at))]
    Malformed {
        path: PathBuf,
        /// Line and column, both counted from 1, when the problem has a place in the file.
        at: Option<(usize, usize)>,
        message: String,
    },
    #[error("no profile named {name:?} in {}", .path.display())]
    NotFound { name: String, path: PathBuf },
    #[error("profile {name:?} already exists in {}: use --force to replace it", .path.display())]
    Exists { name: String, path: PathBuf },
    #[error("bad profile name {0:?}: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64)")]
    BadName(String),
    #[error("bad host {0:?}: a host is a name or an address, without spaces")]
    BadHost(String),
}

impl ProfileError {
    /// Whether the mistake is in what the user typed (exit status 2): a bad name or host given
    /// on the command line.
    pub fn is_usage(&self) -> bool {
        matches!(self, ProfileError::BadName(_) | ProfileError::BadHost(_))
    }
}

fn location(at: &Option<(usize, usize)>) -> String {
    match at {
        Some((line, column)) => format!(":{line}:{column}"),
        None => String::new(),
    }
}

/// Names are what users type after `knocker knock`, so they stay plain.
pub fn check_name(name: &str) -> Result<(), ProfileError> {
    let plain = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(())
    } else {
        Err(ProfileError::BadName(name.to_string()))
    }
}

pub fn check_host(host: &str) -> Result<(), ProfileError> {
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(ProfileError::BadHost(host.to_string()))
    } else {
        Ok(())
    }
}

// One profile as the file holds it, with the places of the values that need checking beyond
// their type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    host: Spanned<String>,
    kind: Option<Spanned<String>>,
    #[serde(default)]
    delay_ms: u32,
    family: Option<Spanned<toml::Value>>,
    // sequence
    sequence: Option<Spanned<Vec<Spanned<String>>>>,
    // rotating and encoded
    key_file: Option<Spanned<String>>,
    proto: Option<Spanned<String>>,
    // rotating
    mode: Option<Spanned<String>>,
    period: Option<Spanned<RawDuration>>,
    counter_file: Option<Spanned<String>>,
    knocks: Option<Spanned<i64>>,
    ports: Option<Spanned<String>>,
    // encoded
    base: Option<Spanned<i64>>,
    bits: Option<Spanned<i64>>,
    open: Option<Spanned<Vec<Spanned<String>>>>,
    duration: Option<Spanned<RawDuration>>,
    allow: Option<Spanned<String>>,
    // spa and syn (and port, key_file, open; spa: duration, allow)
    server_key: Option<Spanned<String>>,
    door_key: Option<Spanned<String>>,
    // fwknop
    stanza: Option<Spanned<String>>,
    rc_file: Option<Spanned<String>>,
    hmac_key_file: Option<Spanned<String>>,
    hmac_digest: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
}

/// `30` (seconds) or `"30s"`, `"5m"`, `"2h"`, `"1d"`, as knockerd's config writes durations.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Seconds in a duration: `30`, or text with a unit (`30s`, `5m`, `2h`, `1d`).
fn duration_secs(value: &RawDuration) -> Result<u64, String> {
    let text = match value {
        RawDuration::Seconds(n) => {
            return u64::try_from(*n)
                .map_err(|_| format!("{n} seconds: a duration cannot be negative"))
        }
        RawDuration::Text(t) => t.trim(),
    };
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let bad = || {
        format!("bad duration {text:?}: write seconds (30) or a number with s, m, h or d (30s, 5m)")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Reads the profiles of the text of a profiles file, one `[profile.NAME]` at a time, pointing
/// every mistake at its place.
struct Reader<'a> {
    text: &'a str,
    path: &'a Path,
}

/// Which kinds take a key: `sequence`, `rotating`, `encoded`, or both keyed kinds.
const SEQUENCE: &[&str] = &["sequence"];
const ROTATING: &[&str] = &["rotating"];
const ENCODED: &[&str] = &["encoded"];
const FWKNOP: &[&str] = &["fwknop"];
const KEYED: &[&str] = &["rotating", "encoded"];
const SPA: &[&str] = &["encoded", "fwknop", "spa"];
const OPEN: &[&str] = &["encoded", "fwknop", "spa", "syn"];
const ANY_KEY: &[&str] = &["rotating", "encoded", "fwknop", "spa", "syn"];
const PORT: &[&str] = &["fwknop", "spa", "syn"];
const IDENTITY: &[&str] = &["spa", "syn"];
const NATIVE_SPA: &[&str] = &["spa"];

/// A kind-specific key: its name, where it is (if present), and the kinds that take it.
type KindKey = (&'static str, Option<Range<usize>>, &'static [&'static str]);

impl RawProfile {
    fn kind_keys(&self) -> [KindKey; 21] {
        fn at<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
            value.as_ref().map(Spanned::span)
        }
        [
            ("sequence", at(&self.sequence), SEQUENCE),
            ("key_file", at(&self.key_file), ANY_KEY),
            ("proto", at(&self.proto), KEYED),
            ("mode", at(&self.mode), ROTATING),
            ("period", at(&self.period), ROTATING),
            ("counter_file", at(&self.counter_file), ROTATING),
            ("knocks", at(&self.knocks), ROTATING),
            ("ports", at(&self.ports), ROTATING),
            ("base", at(&self.base), ENCODED),
            ("bits", at(&self.bits), ENCODED),
            ("open", at(&self.open), OPEN),
            ("duration", at(&self.duration), SPA),
            ("allow", at(&self.allow), SPA),
            ("stanza", at(&self.stanza), FWKNOP),
            ("rc_file", at(&self.rc_file), FWKNOP),
            ("hmac_key_file", at(&self.hmac_key_file), FWKNOP),
            ("hmac_digest", at(&self.hmac_digest), FWKNOP),
            ("port", at(&self.port), PORT),
            ("server_key", at(&self.server_key), IDENTITY),
            ("door_key", at(&self.door_key), NATIVE_SPA),
            ("user", at(&self.user), FWKNOP),
        ]
    }
}

/// One `[profile.NAME]` being read: every error names the profile and points at its place.
struct Section<'a> {
    reader: &'a Reader<'a>,
    name: &'a str,
    /// The whole section, for what is missing.
    span: Range<usize>,
    kind: &'static str,
}

impl Section<'_> {
    fn err(&self, span: Range<usize>, message: impl fmt::Display) -> ProfileError {
        self.reader
            .malformed(Some(span), format!("profile {:?}: {message}", self.name))
    }

    fn required<'v, T>(
        &self,
        value: &'v Option<Spanned<T>>,
        key: &str,
    ) -> Result<&'v Spanned<T>, ProfileError> {
        value.as_ref().ok_or_else(|| {
            self.err(
                self.span.clone(),
                format!(
                    "{} {} profile needs `{key}` (see `knocker --help`)",
                    if matches!(self.kind, "encoded" | "fwknop") {
                        "an"
                    } else {
                        "a"
                    },
                    self.kind
                ),
            )
        })
    }

    fn path(&self, value: &Option<Spanned<String>>, key: &str) -> Result<PathBuf, ProfileError> {
        let v = self.required(value, key)?;
        if v.get_ref().trim().is_empty() {
            return Err(self.err(v.span(), format!("`{key}` is empty: give a path")));
        }
        Ok(PathBuf::from(v.get_ref()))
    }

    /// A duration in whole seconds, from 1 second to `max`.
    fn seconds(
        &self,
        value: &Spanned<RawDuration>,
        key: &str,
        max: u64,
    ) -> Result<u64, ProfileError> {
        match duration_secs(value.get_ref()) {
            Ok(s) if (1..=max).contains(&s) => Ok(s),
            Ok(_) => Err(self.err(
                value.span(),
                format!("{key}: from 1 second to {max} seconds"),
            )),
            Err(e) => Err(self.err(value.span(), format!("{key}: {e}"))),
        }
    }

    fn proto(&self, raw: &RawProfile) -> Result<Proto, ProfileError> {
        match &raw.proto {
            None => Ok(Proto::Tcp),
            Some(p) => p
                .get_ref()
                .parse()
                .map_err(|e| self.err(p.span(), format!("proto: {e}"))),
        }
    }

    fn sequence(&self, raw: &RawProfile) -> Result<Kind, ProfileError> {
        let seq = self.required(&raw.sequence, "sequence")?;
        if seq.get_ref().is_empty() {
            return Err(self.err(seq.span(), "the sequence is empty: give at least one port"));
        }
        let mut sequence = Vec::new();
        for port in seq.get_ref() {
            let service = knock::parse_port(port.get_ref(), Proto::Tcp)
                .map_err(|e| self.err(port.span(), e))?;
            sequence.push(service);
        }
        Ok(Kind::Sequence(sequence))
    }

    fn rotating(&self, raw: &RawProfile) -> Result<Kind, ProfileError> {
        let key_file = self.path(&raw.key_file, "key_file")?;
        let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("totp", _)) => {
                if let Some(c) = &raw.counter_file {
                    return Err(self.err(
                        c.span(),
                        "`counter_file` is for mode = \"hotp\"; a totp profile counts time steps",
                    ));
                }
                let period_secs = match &raw.period {
                    None => DEFAULT_PERIOD_SECS,
                    Some(p) => self.seconds(p, "period", 86_400)?,
                };
                Mode::Totp { period_secs }
            }
            Some(("hotp", _)) => {
                if let Some(p) = &raw.period {
                    return Err(self.err(
                        p.span(),
                        "`period` is for mode = \"totp\"; a hotp profile counts knocks in \
                         `counter_file`",
                    ));
                }
                Mode::Hotp {
                    counter_file: self.path(&raw.counter_file, "counter_file")?,
                }
            }
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    format!(
                        "unknown mode {other:?}: use \"totp\" (time steps) or \"hotp\" (a counter)"
                    ),
                ))
            }
        };
        let knocks = self.required(&raw.knocks, "knocks")?;
        let ports = self.required(&raw.ports, "ports")?;
        let range = rotate::parse_ports(ports.get_ref()).map_err(|e| self.err(ports.span(), e))?;
        let n = usize::try_from(*knocks.get_ref()).unwrap_or(0);
        let spec = RotateSpec::new(n, range, self.proto(raw)?).map_err(|e| match e {
            rotate::SpecError::Knocks(_) => self.err(knocks.span(), e),
            _ => self.err(ports.span(), e),
        })?;
        Ok(Kind::Rotating(Rotating {
            key_file,
            mode,
            spec,
        }))
    }

    fn encoded(&self, raw: &RawProfile) -> Result<Kind, ProfileError> {
        let key_file = self.path(&raw.key_file, "key_file")?;
        let base = self.required(&raw.base, "base")?;
        let bits = self.required(&raw.bits, "bits")?;
        let base_port = u16::try_from(*base.get_ref())
            .map_err(|_| self.err(base.span(), "base: a port from 1 to 65535"))?;
        let bits_n = u8::try_from(*bits.get_ref()).unwrap_or(0);
        let spec = EncodedSpec::new(base_port, bits_n, self.proto(raw)?).map_err(|e| match e {
            encoded::SpecError::Bits(_) => self.err(bits.span(), e),
            _ => self.err(base.span(), e),
        })?;
        let open = self.services(raw, encoded::MAX_SERVICES)?;
        let open_span = self.required(&raw.open, "open")?.span();
        let duration_secs = match &raw.duration {
            None => DEFAULT_DURATION_SECS,
            Some(d) => {
                let max = encoded::MAX_DURATION_SECS;
                // At most a day: it fits.
                self.seconds(d, "duration", u64::from(max))? as u32
            }
        };
        let allow = match &raw.allow {
            None => None,
            Some(a) => match a.get_ref().trim().parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => Some(ip),
                _ => {
                    return Err(self.err(
                        a.span(),
                        format!("allow: {:?} is not an address to open for", a.get_ref()),
                    ))
                }
            },
        };
        // Without `allow` the family is known only when knocking, where encoding says so.
        if let Some(ip) = allow {
            if encoded::layout(&spec, ip, open.len()).is_none() {
                return Err(self.err(
                    open_span,
                    format!(
                        "{} services for an IPv6 address do not fit in {}-bit knocks: open \
                         fewer, or use more bits",
                        open.len(),
                        spec.bits()
                    ),
                ));
            }
        }
        Ok(Kind::Encoded(Encoded {
            key_file,
            spec,
            open,
            duration_secs,
            allow,
        }))
    }
}

impl Section<'_> {
    fn optional_path(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
    ) -> Result<Option<PathBuf>, ProfileError> {
        match value {
            None => Ok(None),
            Some(_) => self.path(value, key).map(Some),
        }
    }

    fn fwknop(&self, raw: &RawProfile) -> Result<Kind, ProfileError> {
        let stanza = match &raw.stanza {
            Some(s) if s.get_ref().trim().is_empty() => {
                return Err(self.err(s.span(), "`stanza` is empty: name a ~/.fwknoprc stanza"))
            }
            Some(s) => Some(s.get_ref().trim().to_string()),
            None => None,
        };
        let key_file = self.optional_path(&raw.key_file, "key_file")?;
        let hmac_key_file = self.optional_path(&raw.hmac_key_file, "hmac_key_file")?;
        match (&stanza, &raw.key_file, &raw.hmac_key_file) {
            (Some(_), Some(k), _) | (Some(_), None, Some(k)) => {
                return Err(self.err(
                    k.span(),
                    "the keys of a profile with a `stanza` come from the stanza: drop the key \
                     files, or the stanza",
                ))
            }
            (None, None, None) => {
                return Err(self.err(
                    self.span.clone(),
                    "an fwknop profile needs `stanza` (a ~/.fwknoprc stanza), or `key_file` and \
                     `hmac_key_file`",
                ))
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                self.required(&raw.key_file, "key_file")?;
                self.required(&raw.hmac_key_file, "hmac_key_file")?;
            }
            _ => {}
        }
        if let (Some(r), None) = (&raw.rc_file, &stanza) {
            return Err(self.err(r.span(), "`rc_file` goes with `stanza`"));
        }
        let rc_file = self.optional_path(&raw.rc_file, "rc_file")?;
        let hmac_digest = match &raw.hmac_digest {
            None => None,
            Some(d) => Some(
                d.get_ref()
                    .parse::<Digest>()
                    .map_err(|e| self.err(d.span(), format!("hmac_digest: {e}")))?,
            ),
        };
        let open = match &raw.open {
            None if stanza.is_none() => {
                self.required(&raw.open, "open")?;
                None
            }
            None => None,
            Some(listed) => {
                let mut open = Vec::new();
                for s in listed.get_ref() {
                    let service: Service = s
                        .get_ref()
                        .parse()
                        .map_err(|e| self.err(s.span(), format!("open: {e}")))?;
                    open.push(service);
                }
                if open.is_empty() {
                    return Err(self.err(listed.span(), "open: list at least one service"));
                }
                Some(open)
            }
        };
        let allow = match &raw.allow {
            None => None,
            Some(a) if a.get_ref().trim().eq_ignore_ascii_case("source") => {
                Some(FwknopAllow::Source)
            }
            Some(a) => match a.get_ref().trim().parse::<Ipv4Addr>() {
                Ok(ip) if !ip.is_unspecified() => Some(FwknopAllow::Ip(ip)),
                _ => {
                    return Err(self.err(
                        a.span(),
                        format!(
                            "allow: {:?} is neither an IPv4 address nor \"source\" (fwknop carries \
                             only IPv4)",
                            a.get_ref()
                        ),
                    ))
                }
            },
        };
        let port = match &raw.port {
            None => None,
            Some(p) => Some(
                u16::try_from(*p.get_ref())
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| self.err(p.span(), "port: a port from 1 to 65535"))?,
            ),
        };
        // At most 65536 s, as fwknop's -f: it fits.
        let timeout_secs = match &raw.duration {
            None => None,
            Some(d) => Some(self.seconds(d, "duration", 65_536)? as u32),
        };
        let user = match &raw.user {
            Some(u) if u.get_ref().is_empty() => {
                return Err(self.err(u.span(), "user: empty"));
            }
            other => other.as_ref().map(|u| u.get_ref().clone()),
        };
        Ok(Kind::Fwknop(Fwknop {
            stanza,
            rc_file,
            key_file,
            hmac_key_file,
            hmac_digest,
            open,
            allow,
            port,
            timeout_secs,
            user,
        }))
    }
}

/// knocker's own kinds: `spa` and `syn`.
impl Section<'_> {
    fn port(&self, raw: &RawProfile) -> Result<u16, ProfileError> {
        let p = self.required(&raw.port, "port")?;
        u16::try_from(*p.get_ref())
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| self.err(p.span(), "port: a port from 1 to 65535"))
    }

    fn server_key(&self, raw: &RawProfile) -> Result<PublicKey, ProfileError> {
        let k = self.required(&raw.server_key, "server_key")?;
        PublicKey::from_base64(k.get_ref()).map_err(|e| {
            self.err(
                k.span(),
                format!("server_key: {e} (copy it from `knockerd enroll`)"),
            )
        })
    }

    /// `open`: 1 to `max` distinct services, in the order written.
    fn services(&self, raw: &RawProfile, max: usize) -> Result<Vec<Service>, ProfileError> {
        let listed = self.required(&raw.open, "open")?;
        let mut open = Vec::new();
        for s in listed.get_ref() {
            let service: Service = s
                .get_ref()
                .parse()
                .map_err(|e| self.err(s.span(), format!("open: {e}")))?;
            if open.contains(&service) {
                return Err(self.err(s.span(), format!("open: {service} is listed twice")));
            }
            if service.proto == knocker_wire::Proto::Icmp {
                return Err(self.err(
                    s.span(),
                    format!("open: {service} is an ICMP knock step, not a service: a door opens tcp and udp ports"),
                ));
            }
            open.push(service);
        }
        if !(1..=max).contains(&open.len()) {
            return Err(self.err(listed.span(), format!("open: list 1 to {max} services")));
        }
        Ok(open)
    }

    fn spa(&self, raw: &RawProfile) -> Result<Kind, ProfileError> {
        let port = self.port(raw)?;
        let server_key = self.server_key(raw)?;
        let d = self.required(&raw.door_key, "door_key")?;
        let door_key = DoorKey::from_base64(d.get_ref()).map_err(|e| {
            self.err(
                d.span(),
                format!("door_key: {e} (copy it from `knockerd enroll`)"),
            )
        })?;
        let key_file = self.path(&raw.key_file, "key_file")?;
        let open = self.services(raw, knocker_wire::spa::MAX_SERVICES)?;
        let duration_secs = match &raw.duration {
            None => None,
            // At most a day: it fits.
            Some(d) => Some(self.seconds(d, "duration", MAX_SPA_DURATION_SECS)? as u32),
        };
        let allow = match &raw.allow {
            None => None,
            Some(a) => match a.get_ref().trim().parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => Some(ip),
                _ => {
                    return Err(self.err(
                        a.span(),
                        format!(
                            "allow: {:?} is not an address to open for (leave `allow` out for \
                             the address the packet comes from)",
                            a.get_ref()
                        ),
                    ))
                }
            },
        };
        Ok(Kind::Spa(Spa {
            port,
            server_key,
            door_key,
            key_file,
            open,
            duration_secs,
            allow,
        }))
    }

    fn syn(&self, raw: &RawProfile) -> Result<Kind, ProfileError> {
        Ok(Kind::Syn(Syn {
            port: self.port(raw)?,
            server_key: self.server_key(raw)?,
            key_file: self.path(&raw.key_file, "key_file")?,
            open: self.services(raw, knocker_wire::spa::MAX_SERVICES)?,
        }))
    }
}

impl Reader<'_> {
    fn malformed(&self, span: Option<Range<usize>>, message: String) -> ProfileError {
        ProfileError::Malformed {
            path: self.path.to_path_buf(),
            at: span.map(|s| line_column(self.text, s.start)),
            message,
        }
    }

    fn profile(&self, name: &str, table: &Spanned<RawProfile>) -> Result<Profile, ProfileError> {
        let raw = table.get_ref();
        let mut section = Section {
            reader: self,
            name,
            span: table.span(),
            kind: "sequence",
        };
        let host = raw.host.get_ref();
        check_host(host).map_err(|e| section.err(raw.host.span(), e))?;
        let family = match &raw.family {
            None => Family::Any,
            Some(value) => family_of(value.get_ref()).ok_or_else(|| {
                section.err(value.span(), "family must be \"any\", \"4\" or \"6\"")
            })?,
        };
        if let Some(k) = &raw.kind {
            section.kind = match k.get_ref().as_str() {
                "sequence" => "sequence",
                "rotating" => "rotating",
                "encoded" => "encoded",
                "fwknop" => "fwknop",
                "spa" => "spa",
                "syn" => "syn",
                other => {
                    return Err(section.err(
                        k.span(),
                        format!(
                            "unknown kind {other:?}: use \"sequence\", \"rotating\", \"encoded\", \
                             \"fwknop\", \"spa\" or \"syn\""
                        ),
                    ))
                }
            };
        }
        // A key of another kind is a mistake worth naming.
        for (key, span, kinds) in raw.kind_keys() {
            if let (Some(span), false) = (span, kinds.contains(&section.kind)) {
                let belongs = match kinds {
                    SEQUENCE => "a sequence profile (the default kind)".to_string(),
                    _ => kinds
                        .iter()
                        .map(|k| format!("kind = \"{k}\""))
                        .collect::<Vec<_>>()
                        .join(" and "),
                };
                return Err(section.err(
                    span,
                    format!(
                        "`{key}` is for {belongs}, and this profile is kind = \"{}\"",
                        section.kind
                    ),
                ));
            }
        }
        let kind = match section.kind {
            "rotating" => section.rotating(raw)?,
            "encoded" => section.encoded(raw)?,
            "fwknop" => section.fwknop(raw)?,
            "spa" => section.spa(raw)?,
            "syn" => section.syn(raw)?,
            _ => section.sequence(raw)?,
        };
        Ok(Profile {
            host: host.clone(),
            delay_ms: raw.delay_ms,
            family,
            kind,
        })
    }
}

/// What reading a profiles file found: the profiles that can be used, and what was skipped.
///
/// One mistake never costs more than its own profile: with the documented `Host *`
/// ProxyCommand (`knocker connect %h %p`), a typo in one profile must not break ssh to every
/// host. Callers report what was skipped ([`Loaded::warn`]) and use the rest.
#[derive(Debug, Default)]
pub struct Loaded {
    pub profiles: Profiles,
    /// In the order of the file.
    pub skipped: Vec<Skipped>,
    /// The file, for [`ProfileError::NotFound`].
    path: PathBuf,
}

/// Something in the profiles file that cannot be used, and why (with `file:line`).
#[derive(Debug)]
pub struct Skipped {
    pub what: Skip,
    pub error: ProfileError,
}

/// What a [`Skipped`] entry costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// One profile; its `host`, if that much could be read, so that `knocker connect HOST`
    /// does not connect past a profile that was meant for HOST.
    Profile { name: String, host: Option<String> },
    /// A key outside `[profile.NAME]`: ignored.
    Key,
    /// The whole file (not TOML, or unreadable): no profile in it can be used.
    File,
}

impl Loaded {
    /// The profile `name`. If it was skipped, the reason (which is then not warned about again);
    /// if the whole file was, the file's reason.
    pub fn take(&mut self, name: &str) -> Result<Profile, ProfileError> {
        if let Some(profile) = self.profiles.remove(name) {
            return Ok(profile);
        }
        let mine = |s: &Skipped| match &s.what {
            Skip::Profile { name: n, .. } => n == name,
            Skip::File => true,
            Skip::Key => false,
        };
        match self.skipped.iter().position(mine) {
            Some(i) => Err(self.skipped.remove(i).error),
            None => Err(ProfileError::NotFound {
                name: name.to_string(),
                path: self.path.clone(),
            }),
        }
    }

    /// The first skipped profile whose name or host is `host` (see [`Skip::Profile`]), taken
    /// out of the list.
    pub fn take_skipped_for(
        &mut self,
        host: &str,
        same: impl Fn(&str, &str) -> bool,
    ) -> Option<Skipped> {
        let i = self.skipped.iter().position(|s| match &s.what {
            Skip::Profile { name, host: h } => {
                name == host || h.as_deref().is_some_and(|h| same(h, host))
            }
            _ => false,
        })?;
        Some(self.skipped.remove(i))
    }

    /// One line on standard error for each thing skipped, saying what it costs.
    pub fn warn(&self) {
        for s in &self.skipped {
            let cost = match &s.what {
                Skip::Profile { name, .. } => format!("profile {name:?} is skipped"),
                Skip::Key => "ignored".to_string(),
                Skip::File => "no profile in it can be used".to_string(),
            };
            eprintln!("knocker: warning: {} ({cost})", s.error);
        }
    }
}

/// Reads the profiles in the text of a profiles file (`path` names it in errors), skipping
/// each one that has a mistake, with the mistake (see [`Loaded`]). `exposed`: the file's mode
/// if group or others may access it; a profile that holds a secret in the file itself (a
/// `door_key`, a static `sequence`) is then skipped too, with the `chmod` that mends it.
pub fn read(text: &str, path: &Path, exposed: Option<u32>) -> Loaded {
    let reader = Reader { text, path };
    let mut loaded = Loaded {
        path: path.to_path_buf(),
        ..Loaded::default()
    };
    let root = match toml::de::DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let message = format!("not valid TOML: {}", one_line(e.message()));
            loaded.skipped.push(Skipped {
                what: Skip::File,
                error: reader.malformed(e.span(), message),
            });
            return loaded;
        }
    };
    let mut skipped: Vec<(usize, Skipped)> = Vec::new();
    for (key, value) in root.into_inner() {
        if key.get_ref() != "profile" {
            let message = format!(
                "`{}` is not a profile: profiles are [profile.NAME] tables (see `knocker --help`)",
                key.get_ref()
            );
            skipped.push((
                key.span().start,
                Skipped {
                    what: Skip::Key,
                    error: reader.malformed(Some(key.span()), message),
                },
            ));
            continue;
        }
        let span = value.span();
        let toml::de::DeValue::Table(table) = value.into_inner() else {
            let message = "`profile` holds [profile.NAME] tables (see `knocker --help`)";
            skipped.push((
                span.start,
                Skipped {
                    what: Skip::Key,
                    error: reader.malformed(Some(span), message.to_string()),
                },
            ));
            continue;
        };
        for (name, value) in table {
            let name = name.get_ref().to_string();
            let at = value.span().start;
            match reader.one(&name, value, exposed) {
                Ok(profile) => {
                    loaded.profiles.insert(name, profile);
                }
                Err((host, error)) => skipped.push((
                    at,
                    Skipped {
                        what: Skip::Profile { name, host },
                        error,
                    },
                )),
            }
        }
    }
    skipped.sort_by_key(|(at, _)| *at);
    loaded.skipped = skipped.into_iter().map(|(_, s)| s).collect();
    loaded
}

/// toml's message may run over several lines; one line reads better after `file:line:`.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Reader<'_> {
    /// One `[profile.NAME]` table, or why it cannot be used (with its host, if it has one).
    fn one(
        &self,
        name: &str,
        value: Spanned<toml::de::DeValue<'_>>,
        exposed: Option<u32>,
    ) -> Result<Profile, (Option<String>, ProfileError)> {
        let host = match value.get_ref() {
            toml::de::DeValue::Table(t) => t.iter().find_map(|(k, v)| match v.get_ref() {
                toml::de::DeValue::String(h) if k.get_ref() == "host" => Some(h.to_string()),
                _ => None,
            }),
            _ => {
                let message = format!(
                    "profile {name:?}: a profile is a table: write [profile.{name}] and its keys \
                     below it"
                );
                return Err((None, self.malformed(Some(value.span()), message)));
            }
        };
        let fail = |e| (host.clone(), e);
        let raw = Spanned::<RawProfile>::deserialize(toml::de::ValueDeserializer::from(value))
            .map_err(|e| {
                let message = format!("profile {name:?}: {}", one_line(e.message()));
                fail(self.malformed(e.span(), message))
            })?;
        let profile = self.profile(name, &raw).map_err(fail)?;
        if let Some(mode) = exposed {
            let secret = match &profile.kind {
                Kind::Sequence(_) => raw
                    .get_ref()
                    .sequence
                    .as_ref()
                    .map(|v| ("sequence", v.span())),
                Kind::Spa(_) => raw
                    .get_ref()
                    .door_key
                    .as_ref()
                    .map(|v| ("door_key", v.span())),
                _ => None,
            };
            if let Some((key, span)) = secret {
                let path = self.path.display();
                let message = format!(
                    "profile {name:?}: its `{key}` is a secret, and this file is accessible to \
                     other users (mode {mode:04o}): run `chmod 600 {path}`"
                );
                return Err(fail(self.malformed(Some(span), message)));
            }
        }
        Ok(profile)
    }
}

/// Reads profiles from the text of a profiles file; `path` only names it in errors. Strict:
/// the first mistake anywhere is the error (what `profile add` and `remove` need before they
/// rewrite the file); [`read`] skips what is wrong instead.
pub fn parse(text: &str, path: &Path) -> Result<Profiles, ProfileError> {
    let loaded = read(text, path, None);
    match loaded.skipped.into_iter().next() {
        Some(first) => Err(first.error),
        None => Ok(loaded.profiles),
    }
}

/// `family = "6"` is the documented form; `family = 6` is an easy slip, and means the same.
fn family_of(value: &toml::Value) -> Option<Family> {
    match value {
        toml::Value::String(s) => s.parse().ok(),
        toml::Value::Integer(4) => Some(Family::V4),
        toml::Value::Integer(6) => Some(Family::V6),
        _ => None,
    }
}

fn resolve_in(dir: &Path, home: Option<&Path>, path: &Path) -> PathBuf {
    if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), home) {
        return home.join(rest);
    }
    dir.join(path)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The TOML table of one profile, as `profile add` writes it and `profile show` prints it.
fn profile_table(profile: &Profile) -> Table {
    let mut table = Table::new();
    table.insert("host", toml_edit::value(profile.host.as_str()));
    match &profile.kind {
        Kind::Sequence(seq) => {
            let mut sequence = Array::new();
            for service in seq {
                sequence.push(knock::knock_syntax(*service));
            }
            table.insert("sequence", toml_edit::value(sequence));
        }
        Kind::Rotating(r) => {
            table.insert("kind", toml_edit::value("rotating"));
            table.insert("key_file", toml_edit::value(path_text(&r.key_file)));
            match &r.mode {
                Mode::Totp { period_secs } => {
                    table.insert("mode", toml_edit::value("totp"));
                    table.insert("period", toml_edit::value(*period_secs as i64));
                }
                Mode::Hotp { counter_file } => {
                    table.insert("mode", toml_edit::value("hotp"));
                    table.insert("counter_file", toml_edit::value(path_text(counter_file)));
                }
            }
            let ports = r.spec.ports();
            table.insert("knocks", toml_edit::value(r.spec.knocks() as i64));
            table.insert(
                "ports",
                toml_edit::value(format!("{}-{}", ports.start(), ports.end())),
            );
            table.insert("proto", toml_edit::value(r.spec.proto().as_str()));
        }
        Kind::Encoded(e) => {
            table.insert("kind", toml_edit::value("encoded"));
            table.insert("key_file", toml_edit::value(path_text(&e.key_file)));
            table.insert("base", toml_edit::value(i64::from(e.spec.base())));
            table.insert("bits", toml_edit::value(i64::from(e.spec.bits())));
            table.insert("proto", toml_edit::value(e.spec.proto().as_str()));
            let mut open = Array::new();
            for service in &e.open {
                open.push(service.to_string());
            }
            table.insert("open", toml_edit::value(open));
            table.insert("duration", toml_edit::value(i64::from(e.duration_secs)));
            if let Some(allow) = e.allow {
                table.insert("allow", toml_edit::value(allow.to_string()));
            }
        }
        Kind::Fwknop(fw) => {
            table.insert("kind", toml_edit::value("fwknop"));
            let text = |t: &mut Table, key: &str, v: &Option<String>| {
                if let Some(v) = v {
                    t.insert(key, toml_edit::value(v.as_str()));
                }
            };
            let path = |t: &mut Table, key: &str, v: &Option<PathBuf>| {
                if let Some(v) = v {
                    t.insert(key, toml_edit::value(path_text(v)));
                }
            };
            text(&mut table, "stanza", &fw.stanza);
            path(&mut table, "rc_file", &fw.rc_file);
            path(&mut table, "key_file", &fw.key_file);
            path(&mut table, "hmac_key_file", &fw.hmac_key_file);
            text(
                &mut table,
                "hmac_digest",
                &fw.hmac_digest.map(|d| d.name().to_string()),
            );
            if let Some(open) = &fw.open {
                let mut list = Array::new();
                for service in open {
                    list.push(service.to_string());
                }
                table.insert("open", toml_edit::value(list));
            }
            let allow = fw.allow.map(|a| match a {
                FwknopAllow::Ip(ip) => ip.to_string(),
                FwknopAllow::Source => "source".to_string(),
            });
            text(&mut table, "allow", &allow);
            if let Some(port) = fw.port {
                table.insert("port", toml_edit::value(i64::from(port)));
            }
            if let Some(secs) = fw.timeout_secs {
                table.insert("duration", toml_edit::value(i64::from(secs)));
            }
            text(&mut table, "user", &fw.user);
        }
        Kind::Spa(spa) => {
            table.insert("kind", toml_edit::value("spa"));
            table.insert("port", toml_edit::value(i64::from(spa.port)));
            table.insert("server_key", toml_edit::value(spa.server_key.to_base64()));
            table.insert(
                "door_key",
                toml_edit::value(spa.door_key.to_base64().as_str()),
            );
            table.insert("key_file", toml_edit::value(path_text(&spa.key_file)));
            table.insert("open", toml_edit::value(services(&spa.open)));
            if let Some(secs) = spa.duration_secs {
                table.insert("duration", toml_edit::value(i64::from(secs)));
            }
            if let Some(allow) = spa.allow {
                table.insert("allow", toml_edit::value(allow.to_string()));
            }
        }
        Kind::Syn(syn) => {
            table.insert("kind", toml_edit::value("syn"));
            table.insert("port", toml_edit::value(i64::from(syn.port)));
            table.insert("server_key", toml_edit::value(syn.server_key.to_base64()));
            table.insert("key_file", toml_edit::value(path_text(&syn.key_file)));
            table.insert("open", toml_edit::value(services(&syn.open)));
        }
    }
    table.insert("delay_ms", toml_edit::value(i64::from(profile.delay_ms)));
    table.insert("family", toml_edit::value(profile.family.as_str()));
    table
}

fn services(list: &[Service]) -> Array {
    let mut array = Array::new();
    for service in list {
        array.push(service.to_string());
    }
    array
}

fn implicit_table() -> Table {
    let mut table = Table::new();
    // No bare `[profile]` header: each profile is its own `[profile.NAME]` section.
    table.set_implicit(true);
    table
}

/// The `[profile]` table of a document, made if missing.
fn profiles_mut<'d>(doc: &'d mut DocumentMut, path: &Path) -> Result<&'d mut Table, ProfileError> {
    let item = doc
        .entry("profile")
        .or_insert_with(|| Item::Table(implicit_table()));
    // `profile = { ... }` is valid TOML too; turn it into sections we can add to.
    if let Item::Value(Value::InlineTable(inline)) = item {
        let mut table = std::mem::take(inline).into_table();
        table.set_implicit(true);
        *item = Item::Table(table);
    }
    item.as_table_mut().ok_or_else(|| ProfileError::Malformed {
        path: path.to_path_buf(),
        at: None,
        message: "`profile` must be a table of profiles".to_string(),
    })
}

/// The part of the text above a section that a blank line separates from it, if it holds a
/// comment; ends with that blank line.
fn detached_comments(prefix: &str) -> Option<&str> {
    let mut end = None;
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        offset += line.len();
        if line.trim().is_empty() {
            end = Some(offset);
        }
    }
    let kept = &prefix[..end?];
    kept.contains('#').then_some(kept)
}

/// One profile as a `[profile.NAME]` section, ready to paste into a profiles file.
pub fn render(name: &str, profile: &Profile) -> String {
    let mut profiles = implicit_table();
    profiles.insert(name, Item::Table(profile_table(profile)));
    let mut doc = DocumentMut::new();
    doc.insert("profile", Item::Table(profiles));
    doc.to_string()
}

/// Makes `dir` (and its missing parents), mode 0700: knocker's config directory holds secrets.
pub fn create_private_dir(dir: &Path) -> Result<(), ProfileError> {
    let io_error = |action: &'static str| {
        move |source| ProfileError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create directory"))?;
    // The umask may have taken bits away from 0700; make it exact.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_error("set permissions of"))
}

/// Where the profiles file is, and the operations on it.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// `$KNOCKER_CONFIG_DIR/profiles.toml`, else `$XDG_CONFIG_HOME/knocker/profiles.toml`, else
    /// `$HOME/.config/knocker/profiles.toml`.
    pub fn from_env() -> Result<Store, ProfileError> {
        Store::locate(|name| std::env::var_os(name))
    }

    fn locate(var: impl Fn(&str) -> Option<OsString>) -> Result<Store, ProfileError> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = set("KNOCKER_CONFIG_DIR") {
            return Ok(Store::in_dir(dir));
        }
        // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
        if let Some(config) = set("XDG_CONFIG_HOME").filter(|d| d.is_absolute()) {
            return Ok(Store::in_dir(config.join("knocker")));
        }
        match set("HOME") {
            Some(home) => Ok(Store::in_dir(home.join(".config").join("knocker"))),
            None => Err(ProfileError::NoConfigDir),
        }
    }

    pub fn in_dir(dir: impl Into<PathBuf>) -> Store {
        Store {
            path: dir.into().join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a path written in the profiles file points: `~/x` is in the home directory, and a
    /// relative path is relative to the directory the profiles file is in.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        resolve_in(self.dir(), home.as_deref().map(Path::new), path)
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn io_error(
        &self,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> ProfileError {
        let path = path.to_path_buf();
        move |source| ProfileError::Io {
            action,
            path,
            source,
        }
    }

    /// The file's text, or `None` if there is no file yet.
    fn read_text(&self) -> Result<Option<String>, ProfileError> {
        Ok(self.read_text_and_mode()?.map(|(text, _)| text))
    }

    /// The file's text and its permission bits (of the file read), or `None` if there is no
    /// file yet.
    fn read_text_and_mode(&self) -> Result<Option<(String, u32)>, ProfileError> {
        let read = self.io_error("read", &self.path);
        let mut file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        let mut text = String::new();
        let mode = file
            .metadata()
            .and_then(|meta| {
                io::Read::read_to_string(&mut file, &mut text)?;
                Ok(meta.permissions().mode() & 0o7777)
            })
            .map_err(read)?;
        Ok(Some((text, mode)))
    }

    /// Every profile that can be used, and what was skipped (see [`Loaded`]): a file that
    /// cannot be read is skipped whole. No file: no profiles.
    pub fn read(&self) -> Loaded {
        match self.read_text_and_mode() {
            Ok(Some((text, mode))) => read(&text, &self.path, (mode & 0o077 != 0).then_some(mode)),
            Ok(None) => Loaded {
                path: self.path.clone(),
                ..Loaded::default()
            },
            Err(error) => Loaded {
                path: self.path.clone(),
                skipped: vec![Skipped {
                    what: Skip::File,
                    error,
                }],
                ..Loaded::default()
            },
        }
    }

    /// Every profile, strictly: the first mistake is the error. None if the file does not
    /// exist.
    #[cfg(test)]
    pub fn load(&self) -> Result<Profiles, ProfileError> {
        match self.read_text()? {
            Some(text) => parse(&text, &self.path),
            None => Ok(Profiles::new()),
        }
    }

    /// The profile `name`; whatever else in the file is skipped is reported on standard error
    /// ([`Loaded::warn`]).
    pub fn get(&self, name: &str) -> Result<Profile, ProfileError> {
        let mut loaded = self.read();
        let found = loaded.take(name);
        loaded.warn();
        found
    }

    /// Saves `profile` as `name`; an existing profile of that name is replaced only if `replace`.
    pub fn add(&self, name: &str, profile: &Profile, replace: bool) -> Result<(), ProfileError> {
        check_name(name)?;
        check_host(&profile.host)?;
        self.edit(|doc, path| {
            // In a file of comments only, they sit at the end; keep them above the first profile.
            let has_profiles = doc
                .get("profile")
                .and_then(Item::as_table_like)
                .is_some_and(|t| !t.is_empty());
            let mut header = None;
            if !has_profiles {
                let trailing = doc.trailing().as_str().unwrap_or("").trim().to_string();
                if !trailing.is_empty() {
                    header = Some(format!("{trailing}\n\n"));
                    doc.set_trailing("");
                }
            }
            let profiles = profiles_mut(doc, path)?;
            let mut table = profile_table(profile);
            if let Some(header) = header {
                table.decor_mut().set_prefix(header);
            }
            if let Some(old) = profiles.get(name) {
                if !replace {
                    return Err(ProfileError::Exists {
                        name: name.to_string(),
                        path: path.to_path_buf(),
                    });
                }
                // A replaced profile keeps its place in the file and the comments above it.
                if let Some(old) = old.as_table() {
                    *table.decor_mut() = old.decor().clone();
                    table.set_position(old.position());
                }
            }
            profiles.insert(name, Item::Table(table));
            Ok(())
        })
    }

    pub fn remove(&self, name: &str) -> Result<(), ProfileError> {
        self.edit(|doc, path| {
            let profiles = profiles_mut(doc, path)?;
            let Some(removed) = profiles.remove(name) else {
                return Err(ProfileError::NotFound {
                    name: name.to_string(),
                    path: path.to_path_buf(),
                });
            };
            // Comments right above a profile go with it; those a blank line sets apart (the
            // file's header, say) are handed to the next section, or to the end of the file.
            let Some(removed) = removed.as_table() else {
                return Ok(());
            };
            let prefix = removed.decor().prefix().and_then(|p| p.as_str());
            let Some(kept) = prefix.and_then(detached_comments) else {
                return Ok(());
            };
            let after = removed.position();
            let next = profiles
                .iter_mut()
                .filter_map(|(_, item)| item.as_table_mut())
                .filter(|t| t.position() > after)
                .min_by_key(|t| t.position());
            match next {
                Some(next) => {
                    let own = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
                    let joined = format!("{kept}{}", own.trim_start_matches(['\n', '\r']));
                    next.decor_mut().set_prefix(joined);
                }
                None => {
                    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
                    doc.set_trailing(format!("{kept}{trailing}"));
                }
            }
            Ok(())
        })
    }

    /// Applies `change` to the document and writes the result back. The file must be valid
    /// before (so a typo is reported, not silently carried along) and is checked again after,
    /// so a bug here can never leave an unreadable file behind.
    fn edit(
        &self,
        change: impl FnOnce(&mut DocumentMut, &Path) -> Result<(), ProfileError>,
    ) -> Result<(), ProfileError> {
        let existing = self.read_text()?;
        let text = existing.as_deref().unwrap_or("");
        parse(text, &self.path)?;
        let mut doc: DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| ProfileError::Malformed {
                    path: self.path.clone(),
                    at: e.span().map(|s| line_column(text, s.start)),
                    message: e.message().to_string(),
                })?;
        change(&mut doc, &self.path)?;

        let mut new_text = doc.to_string().trim_start_matches(['\n', '\r']).to_string();
        if existing.is_none() {
            new_text.insert_str(0, NEW_FILE_HEADER);
        }
        parse(&new_text, &self.path)?;
        self.write_atomic(&new_text)
    }

    /// Replaces the file in one step (write a temporary file beside it, then rename), so a
    /// reader never sees half a file and a crash never loses the old one.
    fn write_atomic(&self, text: &str) -> Result<(), ProfileError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            create_private_dir(dir)?;
        }
        knocker_wire::files::replace_atomically(&self.path, text.as_bytes())
            .map_err(self.io_error("write", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "knocker-profile-test-{}-{}",
                process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> Profile {
        Profile {
            host: "server.example.org".to_string(),
            delay_ms: 0,
            family: Family::Any,
            kind: Kind::Sequence(vec![
                Service::tcp(7000),
                Service::udp(9000),
                Service::tcp(8000),
            ]),
        }
    }

    fn malformed_at(text: &str) -> (Option<(usize, usize)>, String) {
        match parse(text, Path::new("p.toml")) {
            Err(ProfileError::Malformed { at, message, .. }) => (at, message),
            other => panic!("expected a malformed-file error, got {other:?}"),
        }
    }

    #[test]
    fn the_documented_format_parses() {
        let text = r#"
[profile.myserver]
host = "server.example.org"
sequence = ["7000", "9000:udp", "8000"]   # same syntax as the command line
delay_ms = 0        # optional
family = "any"      # optional: "any", "4" or "6"

[profile.other]
host = "2001:db8::1"
sequence = ["udp/1", "2/tcp"]
delay_ms = 250
family = "6"
"#;
        let profiles = parse(text, Path::new("p.toml")).expect("valid");
        assert_eq!(profiles["myserver"], sample());
        assert_eq!(
            profiles["other"],
            Profile {
                host: "2001:db8::1".to_string(),
                delay_ms: 250,
                family: Family::V6,
                kind: Kind::Sequence(vec![Service::udp(1), Service::tcp(2)]),
            }
        );
        assert_eq!(parse("", Path::new("p.toml")).expect("empty").len(), 0);
    }

    #[test]
    fn optional_fields_default_and_family_may_be_a_number() {
        let text = "[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\nfamily = 4\n";
        let a = &parse(text, Path::new("p.toml")).expect("valid")["a"];
        assert_eq!(a.delay_ms, 0);
        assert_eq!(a.family, Family::V4);
    }

    #[test]
    fn errors_point_at_the_line() {
        // A syntax error.
        let (at, msg) = malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"\n");
        assert_eq!(at.map(|a| a.0), Some(3), "{msg}");
        // A bad port, in the middle of the array.
        let (at, msg) = malformed_at(
            "\n[profile.a]\nhost = \"h\"\nsequence = [\n  \"7000\",\n  \"70000\",\n]\n",
        );
        assert_eq!(at, Some((6, 3)), "{msg}");
        assert!(msg.contains("bad port \"70000\""), "{msg}");
        assert!(msg.contains("profile \"a\""), "{msg}");
        // A misspelt key.
        let (at, msg) =
            malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\ndealy_ms = 5\n");
        assert_eq!(at.map(|a| a.0), Some(4), "{msg}");
        assert!(msg.contains("dealy_ms"), "{msg}");
        // A wrong type.
        let (at, msg) =
            malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\ndelay_ms = -5\n");
        assert_eq!(at.map(|a| a.0), Some(4), "{msg}");
        // An unknown family.
        let (at, msg) =
            malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\n\nfamily = \"7\"\n");
        assert_eq!(at, Some((5, 10)), "{msg}");
        // An empty sequence.
        let (at, msg) = malformed_at("[profile.a]\nhost = \"h\"\nsequence = []\n");
        assert_eq!(at.map(|a| a.0), Some(3), "{msg}");
        assert!(msg.contains("empty"), "{msg}");
        // A host with a space.
        let (at, _) = malformed_at("[profile.a]\nhost = \"a b\"\nsequence = [\"1\"]\n");
        assert_eq!(at.map(|a| a.0), Some(2));
        // A top-level typo.
        let (at, msg) = malformed_at("# comment\n[profiles.a]\nhost = \"h\"\n");
        assert_eq!(at.map(|a| a.0), Some(2), "{msg}");
    }

    #[test]
    fn the_error_reads_file_line_column_message() {
        let e = parse("[profile.a]\nhost = 5\n", Path::new("/x/profiles.toml")).expect_err("bad");
        let text = e.to_string();
        assert!(text.starts_with("/x/profiles.toml:2:8: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn line_column_counts_from_one_and_in_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2)); // after the two-byte ç
        assert_eq!(line_column(text, 99), (3, 1));
    }

    #[test]
    fn add_show_remove_round_trip_keeps_comments_and_mode() {
        let tmp = TempDir::new();
        let store = Store::in_dir(tmp.0.join("knocker"));
        assert!(store.load().expect("no file yet").is_empty());

        store.add("myserver", &sample(), false).expect("add");
        let other = Profile {
            host: "10.0.0.1".to_string(),
            delay_ms: 200,
            family: Family::V4,
            kind: Kind::Sequence(vec![Service::udp(1)]),
        };
        store.add("other.box", &other, false).expect("add");
        let profiles = store.load().expect("load");
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles["myserver"], sample());
        assert_eq!(profiles["other.box"], other);

        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&tmp.0.join("knocker")), 0o700);

        // Hand edits survive a later add and remove.
        let text = fs::read_to_string(store.path()).expect("read");
        fs::write(store.path(), format!("# my own note\n{text}")).expect("write");
        assert!(matches!(
            store.add("myserver", &other, false),
            Err(ProfileError::Exists { .. })
        ));
        store.add("myserver", &other, true).expect("replace");
        assert_eq!(store.get("myserver").expect("get"), other);
        store.remove("other.box").expect("remove");
        assert!(matches!(
            store.remove("other.box"),
            Err(ProfileError::NotFound { .. })
        ));
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(text.starts_with("# my own note\n"), "{text}");
        assert_eq!(store.load().expect("load").len(), 1);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(tmp.0.join("knocker"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![OsString::from(FILE_NAME)]);
    }

    #[test]
    fn removing_a_profile_takes_its_own_comments_and_keeps_the_header() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        fs::write(
            store.path(),
            "# header\n\n# about a\n[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\n\n\
             [profile.b]\nhost = \"h\"\nsequence = [\"2\"]\n",
        )
        .expect("write");
        store.remove("a").expect("remove a");
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "# header\n\n[profile.b]\nhost = \"h\"\nsequence = [\"2\"]\n"
        );
        store.remove("b").expect("remove b");
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "# header\n\n"
        );
        // And the header goes back above the next profile added.
        store.add("c", &sample(), false).expect("add");
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(text.starts_with("# header\n\n[profile.c]\n"), "{text}");
    }

    /// A skipped profile with a host.
    fn skip(name: &str, host: &str) -> Skip {
        Skip::Profile {
            name: name.into(),
            host: Some(host.into()),
        }
    }

    /// Skipped entries as (what, line, message), for comparing.
    fn skipped(loaded: &Loaded) -> Vec<(Skip, usize, String)> {
        loaded
            .skipped
            .iter()
            .map(|s| match &s.error {
                ProfileError::Malformed { at, message, .. } => (
                    s.what.clone(),
                    at.map_or(0, |(line, _)| line),
                    message.clone(),
                ),
                other => panic!("expected a malformed-file error, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn one_mistake_skips_its_own_profile_and_nothing_else() {
        let text = "\
[profile.good]
host = \"127.0.0.1\"
sequence = [\"7000\"]

[profile.typo]
host = \"typo.example\"
sequence = [\"7000\"]
dealy_ms = 5

[profile.port]
host = \"port.example\"
sequence = [\"70000\"]

[profiles.x]
host = \"h\"

[profile.also_good]
host = \"h2\"
kind = \"syn\"
port = 443
server_key = \"OklKoDS5vY085DKXZIfB8l1y5NkLT4fBXfED1xq8t34=\"
key_file = \"id\"
open = [\"22\"]
";
        let mut loaded = read(text, Path::new("p.toml"), None);
        assert_eq!(
            loaded.profiles.keys().collect::<Vec<_>>(),
            ["also_good", "good"]
        );
        let got = skipped(&loaded);
        let what: Vec<_> = got.iter().map(|(w, l, _)| (w.clone(), *l)).collect();
        assert_eq!(
            what,
            [
                (skip("typo", "typo.example"), 8),
                (skip("port", "port.example"), 12),
                (Skip::Key, 14),
            ],
            "{got:?}"
        );
        assert!(
            got[0]
                .2
                .starts_with("profile \"typo\": unknown field `dealy_ms`"),
            "{got:?}"
        );
        assert!(got[1].2.contains("bad port \"70000\""), "{got:?}");
        assert!(got[2].2.contains("`profiles` is not a profile"), "{got:?}");
        let not_a_table = read("profile.x = 5\n", Path::new("p.toml"), None);
        assert_eq!(
            skipped(&not_a_table),
            [(
                Skip::Profile {
                    name: "x".into(),
                    host: None
                },
                1,
                "profile \"x\": a profile is a table: write [profile.x] and its keys below it"
                    .to_string()
            )]
        );
        // By name: the profile, or why it cannot be used, or that there is none.
        assert!(loaded.take("good").is_ok());
        let e = loaded.take("typo").expect_err("skipped");
        assert!(
            e.to_string().starts_with("p.toml:8:1: profile \"typo\""),
            "{e}"
        );
        assert_eq!(loaded.skipped.len(), 2, "taken out: not warned about twice");
        assert!(matches!(
            loaded.take("nothing"),
            Err(ProfileError::NotFound { .. })
        ));
        // By host, as `knocker connect` looks for it.
        let bad = loaded
            .take_skipped_for("PORT.example.", |a, b| {
                a.eq_ignore_ascii_case(b.trim_end_matches('.'))
            })
            .expect("port's host");
        assert!(matches!(bad.what, Skip::Profile { ref name, .. } if name == "port"));
        // Strict reading, for rewriting the file: the first mistake.
        let e = parse(text, Path::new("p.toml")).expect_err("strict");
        assert!(e.to_string().starts_with("p.toml:8:1: "), "{e}");
    }

    #[test]
    fn a_file_that_is_not_toml_is_skipped_whole_and_says_where() {
        let text = "[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\n[profile.b\n";
        let mut loaded = read(text, Path::new("p.toml"), None);
        assert!(loaded.profiles.is_empty());
        let got = skipped(&loaded);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0.clone(), got[0].1), (Skip::File, 4));
        assert!(got[0].2.starts_with("not valid TOML: "), "{got:?}");
        // Asking for any profile by name gets the file's mistake.
        let e = loaded.take("a").expect_err("unreadable");
        assert!(e.to_string().starts_with("p.toml:4:"), "{e}");
        assert!(loaded.skipped.is_empty());
    }

    #[test]
    fn secrets_in_a_file_others_can_read_are_refused_and_the_rest_is_not() {
        let text = format!(
            "[profile.seq]\nhost = \"h\"\nsequence = [\"7000\"]\n\n\
             [profile.spa]\nhost = \"h\"\nkind = \"spa\"\nport = 62201\nserver_key = \"{SERVER}\"\n\
             door_key = \"{DOOR}\"\nkey_file = \"id\"\nopen = [\"22\"]\n\n\
             [profile.syn]\nhost = \"h\"\nkind = \"syn\"\nport = 443\nserver_key = \"{SERVER}\"\n\
             key_file = \"id\"\nopen = [\"22\"]\n\n\
             [profile.rot]\nhost = \"h\"\nkind = \"rotating\"\nkey_file = \"k\"\nknocks = 3\n\
             ports = \"1000-1999\"\n"
        );
        let path = Path::new("/home/a/.config/knocker/profiles.toml");
        let private = read(&text, path, None);
        assert!(private.skipped.is_empty());
        assert_eq!(private.profiles.len(), 4);
        for mode in [0o644, 0o640, 0o604] {
            let loaded = read(&text, path, Some(mode));
            assert_eq!(
                loaded.profiles.keys().collect::<Vec<_>>(),
                ["rot", "syn"],
                "key files are named, not held: checked when used"
            );
            let got = skipped(&loaded);
            let lines: Vec<_> = got.iter().map(|(w, l, _)| (w.clone(), *l)).collect();
            assert_eq!(lines, [(skip("seq", "h"), 3), (skip("spa", "h"), 10),]);
            assert_eq!(
                got[1].2,
                format!(
                    "profile \"spa\": its `door_key` is a secret, and this file is accessible to \
                     other users (mode {mode:04o}): run `chmod 600 {}`",
                    path.display()
                )
            );
            assert!(got[0].2.contains("its `sequence` is a secret"), "{got:?}");
        }
    }

    #[test]
    fn the_store_checks_the_mode_of_the_file_it_reads() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        assert!(store.read().profiles.is_empty() && store.read().skipped.is_empty());
        fs::write(
            store.path(),
            "[profile.a]\nhost = \"h\"\nsequence = [\"7000\"]\n",
        )
        .expect("write");
        let chmod = |mode| {
            fs::set_permissions(store.path(), fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(0o644);
        let e = store.get("a").expect_err("exposed");
        assert!(e.to_string().contains("(mode 0644): run `chmod 600"), "{e}");
        chmod(0o600);
        assert_eq!(store.get("a").expect("private").host, "h");
        // A file without secrets may be read by anyone.
        fs::write(store.path(), "[profile.r]\nhost = \"h\"\nkind = \"rotating\"\nkey_file = \"k\"\nknocks = 3\nports = \"1000-1999\"\n")
            .expect("write");
        chmod(0o644);
        assert_eq!(store.get("r").expect("no secret in the file").host, "h");
        // A file that cannot be read is skipped whole.
        chmod(0o000);
        if fs::read(store.path()).is_err() {
            let loaded = store.read();
            assert_eq!(loaded.skipped.len(), 1);
            assert_eq!(loaded.skipped[0].what, Skip::File);
        }
    }

    #[test]
    fn a_broken_file_is_never_overwritten() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        fs::write(store.path(), "[profile.a\n").expect("write");
        assert!(matches!(
            store.add("b", &sample(), false),
            Err(ProfileError::Malformed { .. })
        ));
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "[profile.a\n"
        );
    }

    #[test]
    fn render_is_a_section_that_parses_back() {
        let text = render("myserver", &sample());
        assert!(text.starts_with("[profile.myserver]\n"), "{text}");
        assert!(
            text.contains("sequence = [\"7000\", \"9000:udp\", \"8000\"]"),
            "{text}"
        );
        assert_eq!(
            parse(&text, Path::new("p")).expect("parse")["myserver"],
            sample()
        );
    }

    const ROTATING_AND_ENCODED: &str = r#"
[profile.rot]
host = "server.example.org"
kind = "rotating"
key_file = "rot.key"
mode = "totp"
period = "1m"
knocks = 4
ports = "40000-40999"

[profile.hot]
host = "10.0.0.1"
kind = "rotating"
key_file = "~/keys/hot.key"
mode = "hotp"
counter_file = "/var/tmp/hot.count"
knocks = 5
ports = "1000 - 1063"
proto = "udp"
delay_ms = 20

[profile.enc]
host = "server.example.org"
kind = "encoded"
key_file = "enc.key"
base = 40000
bits = 12
open = ["tcp/22", "443", "udp/51820"]
duration = "2h"
allow = "203.0.113.7"
family = "4"

[profile.bare]
host = "h"
kind = "encoded"
key_file = "k"
base = 20000
bits = 11
proto = "udp"
open = ["22"]
"#;

    #[test]
    fn rotating_and_encoded_profiles_parse() {
        let profiles = parse(ROTATING_AND_ENCODED, Path::new("p.toml")).expect("valid");
        assert_eq!(
            profiles["rot"].kind,
            Kind::Rotating(Rotating {
                key_file: PathBuf::from("rot.key"),
                mode: Mode::Totp { period_secs: 60 },
                spec: RotateSpec::new(4, 40000..=40999, Proto::Tcp).expect("spec"),
            })
        );
        assert_eq!(
            profiles["hot"].kind,
            Kind::Rotating(Rotating {
                key_file: PathBuf::from("~/keys/hot.key"),
                mode: Mode::Hotp {
                    counter_file: PathBuf::from("/var/tmp/hot.count")
                },
                spec: RotateSpec::new(5, 1000..=1063, Proto::Udp).expect("spec"),
            })
        );
        assert_eq!(profiles["hot"].delay_ms, 20);
        assert_eq!(
            profiles["enc"].kind,
            Kind::Encoded(Encoded {
                key_file: PathBuf::from("enc.key"),
                spec: EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec"),
                open: vec![Service::tcp(22), Service::tcp(443), Service::udp(51820)],
                duration_secs: 7200,
                allow: Some("203.0.113.7".parse().expect("ip")),
            })
        );
        assert_eq!(profiles["enc"].family, Family::V4);
        let Kind::Encoded(bare) = &profiles["bare"].kind else {
            panic!("not encoded")
        };
        assert_eq!(bare.duration_secs, DEFAULT_DURATION_SECS);
        assert_eq!(bare.allow, None);
        assert_eq!(bare.spec.proto(), Proto::Udp);
        // A rotating profile's period defaults to 30 seconds, its protocol to TCP.
        let text = "[profile.r]\nhost = \"h\"\nkind = \"rotating\"\nkey_file = \"k\"\nknocks = 3\nports = \"1-64\"\n";
        assert_eq!(
            parse(text, Path::new("p")).expect("valid")["r"].kind,
            Kind::Rotating(Rotating {
                key_file: PathBuf::from("k"),
                mode: Mode::Totp { period_secs: 30 },
                spec: RotateSpec::new(3, 1..=64, Proto::Tcp).expect("spec"),
            })
        );
    }

    #[test]
    fn kind_mistakes_point_at_the_line_and_say_why() {
        let rot = "[profile.r]\nhost = \"h\"\nkind = \"rotating\"\nkey_file = \"k\"\n";
        let enc = "[profile.e]\nhost = \"h\"\nkind = \"encoded\"\nkey_file = \"k\"\n";
        let cases: &[(String, usize, &str)] = &[
            (
                "[profile.a]\nhost = \"h\"\nkind = \"knock\"\n".into(),
                3,
                "unknown kind \"knock\": use \"sequence\", \"rotating\", \"encoded\", \"fwknop\", \
                 \"spa\" or \"syn\"",
            ),
            (
                "[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\nports = \"1-100\"\n".into(),
                4,
                "`ports` is for kind = \"rotating\", and this profile is kind = \"sequence\"",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nsequence = [\"1\"]\n"),
                7,
                "`sequence` is for a sequence profile",
            ),
            (
                "[profile.a]\nhost = \"h\"\nkey_file = \"k\"\nsequence = [\"1\"]\n".into(),
                3,
                "`key_file` is for kind = \"rotating\" and kind = \"encoded\"",
            ),
            (
                "[profile.a]\nhost = \"h\"\n".into(),
                1,
                "a sequence profile needs `sequence`",
            ),
            (format!("{rot}knocks = 3\n"), 1, "a rotating profile needs `ports`"),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nmode = \"hotp\"\n"),
                1,
                "a rotating profile needs `counter_file`",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nmode = \"motp\"\n"),
                7,
                "unknown mode \"motp\"",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nmode = \"hotp\"\ncounter_file = \"c\"\nperiod = 30\n"),
                9,
                "`period` is for mode = \"totp\"",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\ncounter_file = \"c\"\n"),
                7,
                "`counter_file` is for mode = \"hotp\"",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nperiod = \"0s\"\n"),
                7,
                "period: from 1 second",
            ),
            (
                format!("{rot}knocks = 2\nports = \"1-100\"\n"),
                5,
                "from 3 to 16 knocks, not 2",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-10\"\n"),
                6,
                "holds 10 ports; it needs at least 64",
            ),
            (
                format!("{rot}knocks = 3\nports = \"40000\"\n"),
                6,
                "write first-last",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nproto = \"sctp\"\n"),
                7,
                "proto: unknown protocol \"sctp\"",
            ),
            (
                format!("{rot}knocks = 3\nports = \"1-100\"\nkey_file = \"\"\n"),
                0,
                "duplicate key",
            ),
            (
                format!("{enc}base = 40000\nbits = 9\nopen = [\"22\"]\n"),
                6,
                "from 11 to 15 bits per knock, not 9",
            ),
            (
                format!("{enc}base = 65000\nbits = 12\nopen = [\"22\"]\n"),
                5,
                "the base can be at most 61440",
            ),
            (
                format!("{enc}base = 70000\nbits = 12\nopen = [\"22\"]\n"),
                5,
                "base: a port from 1 to 65535",
            ),
            (
                format!("{enc}base = 40000\nbits = 12\nopen = []\n"),
                7,
                "open: list 1 to 8 services",
            ),
            (
                format!("{enc}base = 40000\nbits = 12\nopen = [\"22\", \"tcp/22\"]\n"),
                7,
                "open: tcp/22 is listed twice",
            ),
            (
                format!("{enc}base = 40000\nbits = 12\nopen = [\"icmp/100\"]\n"),
                7,
                "open: icmp/100 is an ICMP knock step, not a service",
            ),
            (
                format!("{enc}base = 40000\nbits = 12\nopen = [\"22\"]\nduration = \"2d\"\n"),
                8,
                "duration: from 1 second to 86400 seconds",
            ),
            (
                format!("{enc}base = 40000\nbits = 12\nopen = [\"22\"]\nallow = \"0.0.0.0\"\n"),
                8,
                "allow: \"0.0.0.0\" is not an address to open for",
            ),
            (
                format!(
                    "{enc}base = 40000\nbits = 11\nopen = [\"1\", \"2\", \"3\", \"4\"]\nallow = \"2001:db8::1\"\n"
                ),
                7,
                "4 services for an IPv6 address do not fit in 11-bit knocks",
            ),
            (format!("{enc}bits = 12\nopen = [\"22\"]\n"), 1, "an encoded profile needs `base`"),
        ];
        for (text, line, needle) in cases {
            let (at, msg) = malformed_at(text);
            if *line > 0 {
                assert_eq!(at.map(|a| a.0), Some(*line), "{msg}\n{text}");
            }
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{text}");
        }
    }

    const SERVER: &str = "OklKoDS5vY085DKXZIfB8l1y5NkLT4fBXfED1xq8t34=";
    const DOOR: &str = "Bl+hbiKnUPHLJa7YqXhw++ObWGfRBSWGnBrRlaW7Kbo=";

    #[test]
    fn spa_and_syn_profiles_parse_render_and_list() {
        let text = format!(
            "[profile.s]\nhost = \"203.0.113.1\"\nkind = \"spa\"\nport = 62201\n\
             server_key = \"{SERVER}\"\ndoor_key = \"{DOOR}\"\n\
             key_file = \"~/.config/knocker/identity.key\"\nopen = [\"tcp/22\", \"53:udp\"]\n\
             duration = \"1h\"\nallow = \"2001:db8::7\"\n\n\
             [profile.bare]\nhost = \"h\"\nkind = \"spa\"\nport = 1\nserver_key = \"{SERVER}\"\n\
             door_key = \"{DOOR}\"\nkey_file = \"id\"\nopen = [\"22\"]\n\n\
             [profile.y]\nhost = \"203.0.113.1\"\nkind = \"syn\"\nport = 443\n\
             server_key = \"{SERVER}\"\nkey_file = \"id\"\nopen = [\"tcp/22\", \"tcp/443\"]\n"
        );
        let profiles = parse(&text, Path::new("p.toml")).expect("valid");
        let server = PublicKey::from_base64(SERVER).expect("key");
        assert_eq!(
            profiles["s"].kind,
            Kind::Spa(Spa {
                port: 62201,
                server_key: server,
                door_key: DoorKey::from_base64(DOOR).expect("key"),
                key_file: PathBuf::from("~/.config/knocker/identity.key"),
                open: vec![Service::tcp(22), Service::udp(53)],
                duration_secs: Some(3600),
                allow: Some("2001:db8::7".parse().expect("ip")),
            })
        );
        let Kind::Spa(bare) = &profiles["bare"].kind else {
            panic!("not spa")
        };
        assert_eq!((bare.duration_secs, bare.allow), (None, None));
        assert_eq!(
            profiles["y"].kind,
            Kind::Syn(Syn {
                port: 443,
                server_key: server,
                key_file: PathBuf::from("id"),
                open: vec![Service::tcp(22), Service::tcp(443)],
            })
        );
        for (name, profile) in &profiles {
            let text = render(name, profile);
            assert_eq!(
                &parse(&text, Path::new("p")).expect("parses")[name],
                profile,
                "{text}"
            );
        }
        assert_eq!(
            profiles["s"].kind.to_string(),
            "spa: udp/62201, open tcp/22 udp/53 for 3600s"
        );
        assert_eq!(profiles["bare"].kind.to_string(), "spa: udp/1, open tcp/22");
        assert_eq!(
            profiles["y"].kind.to_string(),
            "syn: tcp/443, slots tcp/22 tcp/443"
        );
    }

    #[test]
    fn spa_and_syn_mistakes_name_the_profile_and_the_field() {
        let spa = format!(
            "[profile.s]\nhost = \"h\"\nkind = \"spa\"\nserver_key = \"{SERVER}\"\n\
             key_file = \"id\"\n"
        );
        let syn = format!(
            "[profile.y]\nhost = \"h\"\nkind = \"syn\"\nserver_key = \"{SERVER}\"\n\
             key_file = \"id\"\n"
        );
        let full = format!("{spa}port = 62201\ndoor_key = \"{DOOR}\"\n");
        let cases: &[(String, usize, &str)] = &[
            (
                format!("{spa}door_key = \"{DOOR}\"\nopen = [\"22\"]\n"),
                1,
                "profile \"s\": a spa profile needs `port`",
            ),
            (
                format!("{spa}port = 1\nopen = [\"22\"]\n"),
                1,
                "a spa profile needs `door_key`",
            ),
            (full.clone(), 1, "a spa profile needs `open`"),
            (
                format!("{full}open = [\"22\"]\nport = 2\n"),
                0,
                "duplicate key",
            ),
            (
                format!("{spa}port = 0\ndoor_key = \"{DOOR}\"\nopen = [\"22\"]\n"),
                6,
                "profile \"s\": port: a port from 1 to 65535",
            ),
            (
                format!("{spa}port = 1\ndoor_key = \"secret\"\nopen = [\"22\"]\n"),
                7,
                "door_key: a key is 32 bytes",
            ),
            (
                "[profile.s]\nhost = \"h\"\nkind = \"syn\"\nport = 1\nserver_key = \"AAAA\"\n"
                    .into(),
                5,
                "profile \"s\": server_key: a key is 32 bytes; this one is 3 bytes",
            ),
            (
                format!("{full}open = []\n"),
                8,
                "open: list 1 to 16 services",
            ),
            (
                format!("{full}open = [\"22\", \"tcp/22\"]\n"),
                8,
                "open: tcp/22 is listed twice",
            ),
            (
                format!("{full}open = [\"22\"]\nduration = \"2d\"\n"),
                9,
                "duration: from 1 second to 86400 seconds",
            ),
            (
                format!("{full}open = [\"22\"]\nallow = \"::\"\n"),
                9,
                "allow: \"::\" is not an address to open for",
            ),
            (
                format!("{full}open = [\"22\"]\nstanza = \"x\"\n"),
                9,
                "`stanza` is for kind = \"fwknop\", and this profile is kind = \"spa\"",
            ),
            (
                format!("{syn}port = 443\nopen = [\"22\"]\ndoor_key = \"{DOOR}\"\n"),
                8,
                "`door_key` is for kind = \"spa\", and this profile is kind = \"syn\"",
            ),
            (
                format!("{syn}port = 443\nopen = [\"22\"]\nduration = 30\n"),
                8,
                "`duration` is for kind = \"encoded\" and kind = \"fwknop\" and kind = \"spa\"",
            ),
            (
                format!("{syn}port = 443\n"),
                1,
                "profile \"y\": a syn profile needs `open`",
            ),
            (
                format!(
                    "{syn}port = 443\nopen = [{}]\n",
                    (1..=17)
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                7,
                "open: list 1 to 16 services",
            ),
            (
                format!(
                    "[profile.q]\nhost = \"h\"\nsequence = [\"1\"]\nserver_key = \"{SERVER}\"\n"
                ),
                4,
                "`server_key` is for kind = \"spa\" and kind = \"syn\"",
            ),
        ];
        for (text, line, needle) in cases {
            let (at, msg) = malformed_at(text);
            if *line > 0 {
                assert_eq!(at.map(|a| a.0), Some(*line), "{msg}\n{text}");
            }
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{text}");
        }
    }

    #[test]
    fn fwknop_profiles_parse_render_and_say_what_is_wrong() {
        let text = "[profile.s]\nhost = \"h\"\nkind = \"fwknop\"\nstanza = \"myssh\"\n\
                    rc_file = \"~/.fwknoprc\"\n\n\
                    [profile.k]\nhost = \"h\"\nkind = \"fwknop\"\nkey_file = \"k\"\n\
                    hmac_key_file = \"hk\"\nhmac_digest = \"SHA512\"\nopen = [\"tcp/22\", \"53:udp\"]\n\
                    allow = \"source\"\nduration = \"1m\"\nport = 62202\nuser = \"bob\"\n";
        let profiles = parse(text, Path::new("p.toml")).expect("valid");
        assert_eq!(
            profiles["k"].kind,
            Kind::Fwknop(Fwknop {
                stanza: None,
                rc_file: None,
                key_file: Some("k".into()),
                hmac_key_file: Some("hk".into()),
                hmac_digest: Some(Digest::Sha512),
                open: Some(vec![Service::tcp(22), Service::udp(53)]),
                allow: Some(FwknopAllow::Source),
                port: Some(62202),
                timeout_secs: Some(60),
                user: Some("bob".into()),
            })
        );
        let Kind::Fwknop(s) = &profiles["s"].kind else {
            panic!("not fwknop")
        };
        assert_eq!(s.stanza.as_deref(), Some("myssh"));
        assert_eq!(s.rc_file, Some(PathBuf::from("~/.fwknoprc")));
        for (name, profile) in &profiles {
            let text = render(name, profile);
            assert_eq!(
                &parse(&text, Path::new("p")).expect("parses")[name],
                profile,
                "{text}"
            );
        }

        let fw = "[profile.f]\nhost = \"h\"\nkind = \"fwknop\"\n";
        let cases: &[(String, usize, &str)] = &[
            (fw.into(), 1, "needs `stanza` (a ~/.fwknoprc stanza), or `key_file` and"),
            (
                format!("{fw}stanza = \"a\"\nkey_file = \"k\"\n"),
                5,
                "the keys of a profile with a `stanza` come from the stanza",
            ),
            (format!("{fw}key_file = \"k\"\nopen = [\"22\"]\n"), 1, "needs `hmac_key_file`"),
            (
                format!("{fw}key_file = \"k\"\nhmac_key_file = \"h\"\n"),
                1,
                "an fwknop profile needs `open`",
            ),
            (format!("{fw}rc_file = \"r\"\nkey_file = \"k\"\nhmac_key_file = \"h\"\nopen = [\"22\"]\n"), 4, "`rc_file` goes with `stanza`"),
            (format!("{fw}stanza = \"a\"\nallow = \"2001:db8::1\"\n"), 5, "fwknop carries only IPv4"),
            (format!("{fw}stanza = \"a\"\nhmac_digest = \"sha3_256\"\n"), 5, "unknown digest type"),
            (format!("{fw}stanza = \"a\"\nport = 0\n"), 5, "port: a port from 1 to 65535"),
            (format!("{fw}stanza = \"a\"\nduration = \"2d\"\n"), 5, "duration: from 1 second to 65536"),
            (format!("{fw}stanza = \"a\"\nopen = []\n"), 5, "open: list at least one service"),
            (format!("{fw}stanza = \"a\"\nbase = 40000\n"), 5, "`base` is for kind = \"encoded\""),
            (
                "[profile.e]\nhost = \"h\"\nsequence = [\"1\"]\nstanza = \"a\"\n".into(),
                4,
                "`stanza` is for kind = \"fwknop\"",
            ),
        ];
        for (text, line, needle) in cases {
            let (at, msg) = malformed_at(text);
            assert_eq!(at.map(|a| a.0), Some(*line), "{msg}\n{text}");
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{text}");
        }
    }

    #[test]
    fn rotating_and_encoded_profiles_render_and_parse_back() {
        let profiles = parse(ROTATING_AND_ENCODED, Path::new("p.toml")).expect("valid");
        for (name, profile) in &profiles {
            let text = render(name, profile);
            assert_eq!(
                &parse(&text, Path::new("p")).expect("parses")[name],
                profile,
                "{text}"
            );
        }
        assert_eq!(
            render("rot", &profiles["rot"]),
            "[profile.rot]\nhost = \"server.example.org\"\nkind = \"rotating\"\n\
             key_file = \"rot.key\"\nmode = \"totp\"\nperiod = 60\nknocks = 4\n\
             ports = \"40000-40999\"\nproto = \"tcp\"\ndelay_ms = 0\nfamily = \"any\"\n"
        );
        assert_eq!(
            profiles["enc"].kind.to_string(),
            "encoded: tcp 40000-44095 (12 bits), open tcp/22 tcp/443 udp/51820 for 7200s"
        );
        assert_eq!(
            profiles["hot"].kind.to_string(),
            "rotating (hotp): 5 udp knocks in 1000-1063"
        );
        assert_eq!(
            profiles["rot"].kind.to_string(),
            "rotating (totp, 60s): 4 tcp knocks in 40000-40999"
        );
    }

    #[test]
    fn paths_are_relative_to_the_profiles_file_and_tilde_is_home() {
        let dir = Path::new("/cfg/knocker");
        let home = Some(Path::new("/home/a"));
        assert_eq!(
            resolve_in(dir, home, Path::new("k")),
            Path::new("/cfg/knocker/k")
        );
        assert_eq!(
            resolve_in(dir, home, Path::new("/etc/k")),
            Path::new("/etc/k")
        );
        assert_eq!(
            resolve_in(dir, home, Path::new("~/k")),
            Path::new("/home/a/k")
        );
        assert_eq!(
            resolve_in(dir, None, Path::new("~/k")),
            Path::new("/cfg/knocker/~/k")
        );
        assert_eq!(
            resolve_in(dir, home, Path::new("~x/k")),
            Path::new("/cfg/knocker/~x/k")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_secs(&RawDuration::Seconds(30)), Ok(30));
        assert_eq!(duration_secs(&RawDuration::Text("30".into())), Ok(30));
        assert_eq!(duration_secs(&RawDuration::Text("5m".into())), Ok(300));
        assert_eq!(duration_secs(&RawDuration::Text("2h".into())), Ok(7200));
        assert_eq!(duration_secs(&RawDuration::Text("1d".into())), Ok(86400));
        assert!(duration_secs(&RawDuration::Seconds(-1)).is_err());
        assert!(duration_secs(&RawDuration::Text("5x".into())).is_err());
        assert!(duration_secs(&RawDuration::Text("".into())).is_err());
        assert!(duration_secs(&RawDuration::Text("99999999999999999999d".into())).is_err());
    }

    #[test]
    fn inline_profile_tables_can_be_added_to() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        fs::write(
            store.path(),
            "profile = { a = { host = \"h\", sequence = [\"1\"] } }\n",
        )
        .expect("write");
        store.add("b", &sample(), false).expect("add");
        let profiles = store.load().expect("load");
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles["b"], sample());
    }

    #[test]
    fn names_are_plain() {
        for ok in ["myserver", "a", "web-1", "box.lan", "x_y", "9"] {
            check_name(ok).expect(ok);
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "a:b", "ü", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_directory_comes_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let at = |pairs| Store::locate(env(pairs)).map(|s| s.path().to_path_buf());
        assert_eq!(
            at(&[
                ("KNOCKER_CONFIG_DIR", "/k"),
                ("XDG_CONFIG_HOME", "/x"),
                ("HOME", "/h")
            ])
            .expect("dir"),
            Path::new("/k/profiles.toml")
        );
        assert_eq!(
            at(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]).expect("dir"),
            Path::new("/x/knocker/profiles.toml")
        );
        assert_eq!(
            at(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")]).expect("dir"),
            Path::new("/h/.config/knocker/profiles.toml")
        );
        assert_eq!(
            at(&[("KNOCKER_CONFIG_DIR", ""), ("HOME", "/h")]).expect("dir"),
            Path::new("/h/.config/knocker/profiles.toml")
        );
        assert!(matches!(at(&[]), Err(ProfileError::NoConfigDir)));
    }
}
