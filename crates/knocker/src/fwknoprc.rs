//! `~/.fwknoprc`, read as the fwknop client reads it, so that `knocker spa --fwknop -n NAME` knocks
//! with an existing stanza.
//!
//! The format (fwknop 2.6's client/config_init.c): `[NAME]` starts a stanza; inside, each line is
//! `VARIABLE value`, the value being the first word after the variable (it ends at a space, a tab,
//! `;` or `#`, so a passphrase with spaces is cut at the first one, as fwknop cuts it); a `:` at
//! the end of the variable is dropped; a line starting with `#` or `;` is a comment. `[default]`
//! applies to every invocation, and the named stanza then overrides it; the command line
//! overrides both. Stanza names and variables are matched without regard to case.
//!
//! Differences from fwknop, each said in the error: a file that group or others can access is
//! refused (fwknop warns); variables for what knocker does not do (GnuPG, local NAT, asking a
//! web service for the external address, raw-socket spoofing, random ports, key files) are
//! refused with the line rather than half-applied; variables that only matter for those (the GPG
//! key names, wget settings) are ignored.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use knocker_wire::fwknop::{BadDigest, Digest};
use zeroize::Zeroizing;

/// An rc file is a few hundred bytes; a megabyte is not one.
const MAX_RC_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RcError {
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is accessible to other users (mode {mode:04o}) and holds keys: run `chmod 600 {}`", .path.display(), .path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{} has no stanza [{name}]", .path.display())]
    NoStanza { path: PathBuf, name: String },
    #[error("{}:{line}: {var}: {problem}", .path.display())]
    Bad {
        path: PathBuf,
        line: usize,
        var: String,
        problem: BadValue,
    },
}

/// What is wrong with a variable's value (in an rc file: [`RcError::Bad`]; on the command line,
/// the same values as fwknop's options take them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("{0:?} is not a port (1 to 65535)")]
    Port(String),
    #[error("{0}: SHA-3 digests are not supported: use md5, sha1, sha256, sha384 or sha512")]
    Sha3(String),
    #[error(transparent)]
    Digest(BadDigest),
    #[error("{0:?} is not a timeout in seconds (0 to 65536)")]
    FwTimeout(String),
    #[error("{0:?} is not a time offset (N, Nm, Nh or Nd)")]
    TimeOffsetUnit(String),
    #[error("{0:?} is not a time offset (N, Nm, Nh or Nd, N up to 65536)")]
    TimeOffset(String),
    #[error("{0}: knocker sends fwknop packets over UDP only (fwknopd's default)")]
    NotUdp(String),
    #[error("{0}: knocker speaks fwknop's default mode, CBC, only")]
    NotCbc(String),
    #[error("{0} (knocker does not do this)")]
    Unsupported(&'static str),
    #[error(
        "knocker never asks a web service for this machine's address: set ALLOW_IP to your \
         public address, or to `source`"
    )]
    ResolveIp,
    #[error("unknown variable (fwknop refuses it too)")]
    UnknownVariable,
}

/// The allow address as ALLOW_IP (or -a, -s, -R) gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// An address (or, for fwknop, a host name), checked when the packet is made.
    Ip(String),
    /// `source` / `-s`: 0.0.0.0, the server opens for the packet's source address.
    Source,
    /// `resolve` / `-R`: fwknop asks a web service; knocker refuses.
    Resolve,
}

/// A key as text or as base64, kept as given until the packet is made.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    Text(Zeroizing<String>),
    Base64(Zeroizing<String>),
    /// Already decoded (a profile's key file).
    Bytes(Zeroizing<Vec<u8>>),
}

/// Never prints key material.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Key::Text(_) => "Key::Text(..)",
            Key::Base64(_) => "Key::Base64(..)",
            Key::Bytes(_) => "Key::Bytes(..)",
        })
    }
}

/// What the command line, a stanza, or both say. `None`: not said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub server: Option<String>,
    pub port: Option<u16>,
    pub source_port: Option<u16>,
    pub access: Option<String>,
    pub allow: Option<Allow>,
    pub key: Option<Key>,
    pub hmac_key: Option<Key>,
    pub hmac_digest: Option<Digest>,
    pub digest: Option<Digest>,
    pub fw_timeout: Option<u32>,
    pub user: Option<String>,
    /// Seconds added to the packet's time (negative: subtracted).
    pub time_offset: Option<i64>,
    /// NAT_ACCESS (`-N`): the inner host, IP,PORT or IP:PORT, a NAT access message asks for.
    pub nat: Option<String>,
}

impl Settings {
    /// `other`'s settings where it has them, ours elsewhere.
    pub fn overlay(&mut self, other: Settings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field; } )* };
        }
        take!(
            server,
            port,
            source_port,
            access,
            allow,
            key,
            hmac_key,
            hmac_digest,
            digest,
            fw_timeout,
            user,
            time_offset,
            nat
        );
    }
}

/// `$HOME/.fwknoprc`.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".fwknoprc"))
}

/// Reads the settings of `[default]` and then of `[name]` (if given) from the rc file at `path`.
/// The file must be its owner's alone; `[name]` must exist.
pub fn load(path: &Path, name: Option<&str>) -> Result<Settings, RcError> {
    let io_err = |source| RcError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(RcError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.by_ref()
        .take(MAX_RC_FILE)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    parse(&text, path, name)
}

/// [`load`] on text; `path` names the file in errors.
pub fn parse(text: &str, path: &Path, name: Option<&str>) -> Result<Settings, RcError> {
    let mut defaults = Settings::default();
    let mut named = Settings::default();
    let mut found_named = false;
    // Which of the two the current stanza feeds, if any.
    let mut current: Option<bool> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some((stanza, _)) = rest.split_once(']') else {
                // fwknop ignores a `[` line without `]`.
                continue;
            };
            let is_named = name.is_some_and(|n| stanza.eq_ignore_ascii_case(n));
            found_named |= is_named;
            current = if is_named {
                Some(true)
            } else if stanza.eq_ignore_ascii_case("default") {
                Some(false)
            } else {
                None
            };
            continue;
        }
        let Some(into_named) = current else {
            continue;
        };
        let mut words = trimmed.split([' ', '\t']).filter(|w| !w.is_empty());
        let Some(var) = words.next() else { continue };
        let var = var.strip_suffix(':').unwrap_or(var);
        // The value is the next word, cut at `;` or `#` as fwknop's sscanf cuts it.
        let value = words
            .next()
            .map(|w| w.split([';', '#']).next().unwrap_or_default())
            .unwrap_or_default();
        if value.is_empty() {
            // fwknop warns "Invalid entry" and goes on.
            continue;
        }
        let target = if into_named {
            &mut named
        } else {
            &mut defaults
        };
        apply(target, var, value).map_err(|problem| RcError::Bad {
            path: path.to_path_buf(),
            line: i + 1,
            var: var.to_string(),
            problem,
        })?;
    }
    if let Some(name) = name {
        if !found_named {
            return Err(RcError::NoStanza {
                path: path.to_path_buf(),
                name: name.to_string(),
            });
        }
    }
    defaults.overlay(named);
    Ok(defaults)
}

fn yes(value: &str) -> bool {
    value.eq_ignore_ascii_case("y")
}

fn port(value: &str) -> Result<u16, BadValue> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(BadValue::Port(value.to_string())),
    }
}

fn digest(value: &str) -> Result<Digest, BadValue> {
    value.parse().map_err(|e: BadDigest| {
        if value.to_ascii_lowercase().starts_with("sha3") {
            BadValue::Sha3(value.to_string())
        } else {
            BadValue::Digest(e)
        }
    })
}

/// A firewall timeout in seconds, 0 to 65536 as fwknop takes it.
pub fn fw_timeout(value: &str) -> Result<u32, BadValue> {
    match value.parse::<u32>() {
        Ok(s) if s <= 65536 => Ok(s),
        _ => Err(BadValue::FwTimeout(value.to_string())),
    }
}

/// fwknop's time offset: digits, optionally followed by m, h or d (minutes, hours, days).
pub fn time_offset(value: &str) -> Result<i64, BadValue> {
    let (negative, value) = match value.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, value),
    };
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    let unit = match value[digits.len()..].chars().next() {
        None => 1,
        Some('m' | 'M') => 60,
        Some('h' | 'H') => 3600,
        Some('d' | 'D') => 86_400,
        Some(_) => return Err(BadValue::TimeOffsetUnit(value.to_string())),
    };
    let n: i64 = digits
        .parse()
        .ok()
        .filter(|n| *n <= 65536)
        .ok_or_else(|| BadValue::TimeOffset(value.to_string()))?;
    Ok(if negative { -n * unit } else { n * unit })
}

fn apply(s: &mut Settings, var: &str, value: &str) -> Result<(), BadValue> {
    let unsupported = |what: &'static str| Err(BadValue::Unsupported(what));
    match var.to_ascii_uppercase().as_str() {
        "SPA_SERVER" => s.server = Some(value.to_string()),
        "SPA_SERVER_PORT" => s.port = Some(port(value)?),
        "SPA_SOURCE_PORT" => s.source_port = Some(port(value)?),
        "SPA_SERVER_PROTO" => {
            if !value.eq_ignore_ascii_case("udp") {
                return Err(BadValue::NotUdp(value.to_string()));
            }
        }
        "ACCESS" => s.access = Some(value.to_string()),
        "ALLOW_IP" => {
            s.allow = Some(if value.eq_ignore_ascii_case("source") {
                Allow::Source
            } else if value.eq_ignore_ascii_case("resolve") {
                Allow::Resolve
            } else {
                Allow::Ip(value.to_string())
            })
        }
        "KEY" => s.key = Some(Key::Text(Zeroizing::new(value.to_string()))),
        "KEY_BASE64" => s.key = Some(Key::Base64(Zeroizing::new(value.to_string()))),
        "HMAC_KEY" => s.hmac_key = Some(Key::Text(Zeroizing::new(value.to_string()))),
        "HMAC_KEY_BASE64" => s.hmac_key = Some(Key::Base64(Zeroizing::new(value.to_string()))),
        "HMAC_DIGEST_TYPE" => s.hmac_digest = Some(digest(value)?),
        "DIGEST_TYPE" => s.digest = Some(digest(value)?),
        // knocker always sends an HMAC; USE_HMAC N with an HMAC key changes nothing in fwknop
        // either (a key turns HMAC on).
        "USE_HMAC" => {}
        "FW_TIMEOUT" | "CLIENT_TIMEOUT" => s.fw_timeout = Some(fw_timeout(value)?),
        "SPOOF_USER" => s.user = Some(value.to_string()),
        "TIME_OFFSET" => s.time_offset = Some(time_offset(value)?),
        "ENCRYPTION_MODE" => {
            if !value.eq_ignore_ascii_case("cbc") {
                return Err(BadValue::NotCbc(value.to_string()));
            }
        }
        "USE_GPG" | "USE_GPG_AGENT" if yes(value) => return unsupported("GnuPG encryption"),
        "RESOLVE_IP_HTTPS" if yes(value) => return Err(BadValue::ResolveIp),
        "RAND_PORT" if yes(value) => return unsupported("random server ports"),
        "NAT_LOCAL" | "NAT_RAND_PORT" if yes(value) => {
            return unsupported("local or random-port NAT requests")
        }
        "NAT_ACCESS" => s.nat = Some(value.to_string()),
        "NAT_PORT" => return unsupported("NAT requests to a port of this host (NAT_PORT)"),
        "SPOOF_SOURCE_IP" => return unsupported("spoofed source addresses"),
        "KEY_FILE" | "HMAC_KEY_FILE" => {
            return unsupported("key files: put the key in KEY_BASE64 / HMAC_KEY_BASE64")
        }
        // Only meaningful with what the lines above refuse, or for fwknop's own output.
        "USE_GPG"
        | "USE_GPG_AGENT"
        | "RESOLVE_IP_HTTPS"
        | "RAND_PORT"
        | "NAT_LOCAL"
        | "NAT_RAND_PORT"
        | "GPG_SIGNING_PW"
        | "GPG_SIGNING_PW_BASE64"
        | "GPG_SIGNER"
        | "GPG_RECIPIENT"
        | "GPG_HOMEDIR"
        | "GPG_EXE"
        | "RESOLVE_HTTP_ONLY"
        | "RESOLVE_URL"
        | "WGET_CMD"
        | "HTTP_USER_AGENT"
        | "USE_WGET_USER_AGENT"
        | "VERBOSE" => {}
        _ => return Err(BadValue::UnknownVariable),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RC: &str = "\
# .fwknoprc
KEY not-in-a-stanza
[default]
SPA_SERVER_PORT      62201
HMAC_DIGEST_TYPE     sha256
SPOOF_USER           alice   # trailing comment
FW_TIMEOUT           30

[myssh]
SPA_SERVER           server.example.org
ACCESS               tcp/22,udp/53
ALLOW_IP             source
KEY_BASE64           c2VjcmV0IGtleQ==
HMAC_KEY:            hmac;comment
FW_TIMEOUT           90
USE_HMAC             Y
GPG_SIGNER           ABCD1234

[Other]
SPA_SERVER           other.example.org
NAT_LOCAL            Y
";

    fn rc(name: Option<&str>) -> Result<Settings, RcError> {
        parse(RC, Path::new("rc"), name)
    }

    #[test]
    fn default_then_named_stanza() {
        let s = rc(Some("MYSSH")).expect("parses");
        assert_eq!(s.server.as_deref(), Some("server.example.org"));
        assert_eq!(s.port, Some(62201));
        assert_eq!(s.access.as_deref(), Some("tcp/22,udp/53"));
        assert_eq!(s.allow, Some(Allow::Source));
        assert_eq!(
            s.key,
            Some(Key::Base64(Zeroizing::new("c2VjcmV0IGtleQ==".into())))
        );
        assert_eq!(s.hmac_key, Some(Key::Text(Zeroizing::new("hmac".into()))));
        assert_eq!(s.hmac_digest, Some(Digest::Sha256));
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(
            s.fw_timeout,
            Some(90),
            "the named stanza overrides [default]"
        );
        // Only [default] (and nothing before the first stanza).
        let d = rc(None).expect("parses");
        assert_eq!(d.server, None);
        assert_eq!(d.key, None);
        assert_eq!(d.fw_timeout, Some(30));
    }

    #[test]
    fn a_missing_stanza_and_bad_lines_are_errors_with_the_line() {
        let e = rc(Some("nope")).expect_err("missing");
        assert_eq!(e.to_string(), "rc has no stanza [nope]");
        let e = rc(Some("other")).expect_err("NAT");
        assert_eq!(
            e.to_string(),
            "rc:21: NAT_LOCAL: local or random-port NAT requests (knocker does not do this)"
        );
        let s = parse(
            "[a]\nNAT_ACCESS 192.168.1.2,22\n",
            Path::new("rc"),
            Some("a"),
        )
        .expect("NAT_ACCESS");
        assert_eq!(s.nat.as_deref(), Some("192.168.1.2,22"));
        let e = parse("[a]\nFOO bar\n", Path::new("rc"), Some("a")).expect_err("unknown");
        assert!(
            e.to_string().starts_with("rc:2: FOO: unknown variable"),
            "{e}"
        );
        let e = parse(
            "[a]\nALLOW_IP resolve\nRESOLVE_IP_HTTPS Y\n",
            Path::new("rc"),
            Some("a"),
        )
        .expect_err("resolve");
        assert!(e.to_string().contains("never asks a web service"), "{e}");
        let e = parse(
            "[a]\nHMAC_DIGEST_TYPE sha3_256\n",
            Path::new("rc"),
            Some("a"),
        )
        .expect_err("sha3");
        assert!(e.to_string().contains("SHA-3"), "{e}");
        let e = parse("[a]\nSPA_SERVER_PROTO tcp\n", Path::new("rc"), Some("a")).expect_err("tcp");
        assert!(e.to_string().contains("UDP only"), "{e}");
        // Errors in stanzas not used do not matter, as in fwknop.
        parse(
            "[x]\nFOO bar\n[a]\nACCESS tcp/22\n",
            Path::new("rc"),
            Some("a"),
        )
        .expect("ok");
        // A variable without a value is skipped, as fwknop skips it.
        let s = parse("[a]\nACCESS\n", Path::new("rc"), Some("a")).expect("ok");
        assert_eq!(s.access, None);
    }

    #[test]
    fn time_offsets_and_timeouts() {
        assert_eq!(time_offset("30"), Ok(30));
        assert_eq!(time_offset("2m"), Ok(120));
        assert_eq!(time_offset("-1h"), Ok(-3600));
        assert_eq!(time_offset("1d"), Ok(86_400));
        assert!(time_offset("x").is_err());
        assert!(time_offset("1y").is_err());
        assert_eq!(fw_timeout("65536"), Ok(65536));
        assert!(fw_timeout("65537").is_err());
        assert!(fw_timeout("-1").is_err());
    }

    #[test]
    fn keys_are_not_printed() {
        let k = Key::Text(Zeroizing::new("hunter2".into()));
        assert!(!format!("{k:?}").contains("hunter2"));
        let s = Settings {
            key: Some(k),
            ..Settings::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
