//! `knocker spa --fwknop`: one fwknop SPA packet, built by knocker-wire exactly as Debian's
//! `fwknop` client builds it, from `~/.fwknoprc` stanzas and fwknop's own options (which the
//! command line, main.rs, reads into [`Settings`]), and a profile of kind fwknop.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use knocker_wire::fwknop::{
    self, key_from_base64, key_from_text, EncodeError, FwknopKeyError, FwknopKeys, MessageType,
    SpaMessage,
};
use knocker_wire::{Proto, Service};
use zeroize::Zeroizing;

use crate::fwknoprc::{self, Allow, Key, RcError, Settings};
use crate::kinds;
use crate::knock::{self, Family, KnockError};
use crate::profile::{Fwknop, FwknopAllow, Store};

#[derive(Debug, thiserror::Error)]
pub enum SpaError {
    #[error(transparent)]
    Rc(#[from] RcError),
    #[error(transparent)]
    Knock(#[from] KnockError),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Key {
        what: &'static str,
        source: FwknopKeyError,
    },
    #[error(transparent)]
    KeyFile(knocker_wire::keyfile::KeyFileError),
    #[error("cannot build the packet: {0}")]
    Encode(#[from] EncodeError),
    #[error(
        "cannot tell this machine's address towards {ip} (give the address to open for with -a, or use -s): {source}"
    )]
    Route { ip: IpAddr, source: io::Error },
    #[error("cannot write the packet to {}: {source}", .path.display())]
    Save { path: PathBuf, source: io::Error },
    #[error("cannot send the packet to {addr}: {source}")]
    Send { addr: SocketAddr, source: io::Error },
}

impl SpaError {
    /// Whether the mistake is in what the user typed or wrote (exit status 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SpaError::Usage(_) | SpaError::Key { .. } | SpaError::Rc(RcError::Bad { .. })
        )
    }
}

fn usage(message: impl Into<String>) -> SpaError {
    SpaError::Usage(message.into())
}

/// The rc file's settings: those of its `[default]` stanza, then of `stanza`'s. `file` is
/// ~/.fwknoprc unless given; when that default file does not exist and no stanza is asked for,
/// there are none.
pub fn rc_settings(file: Option<&Path>, stanza: Option<&str>) -> Result<Settings, SpaError> {
    let path = file.map(Path::to_path_buf).or_else(fwknoprc::default_path);
    match path {
        Some(path) => {
            let optional = file.is_none() && stanza.is_none();
            match fwknoprc::load(&path, stanza) {
                Ok(rc) => Ok(rc),
                Err(RcError::Io { source, .. })
                    if optional && source.kind() == io::ErrorKind::NotFound =>
                {
                    Ok(Settings::default())
                }
                Err(e) => Err(e.into()),
            }
        }
        None if stanza.is_some() => Err(usage(
            "-n needs an rc file: HOME is not set, so give --rc-file",
        )),
        None => Ok(Settings::default()),
    }
}

fn key_bytes(key: &Key, what: &'static str) -> Result<Zeroizing<Vec<u8>>, SpaError> {
    match key {
        Key::Text(text) => Ok(key_from_text(text)),
        Key::Base64(text) => key_from_base64(text).map_err(|source| SpaError::Key { what, source }),
        Key::Bytes(bytes) => Ok(bytes.clone()),
    }
}

/// The keys the settings name; both are required.
pub fn keys(s: &Settings) -> Result<FwknopKeys, SpaError> {
    let enc = s.key.as_ref().ok_or_else(|| {
        usage("no encryption key: give --key-rijndael or --key-base64-rijndael, or KEY / KEY_BASE64 in the stanza")
    })?;
    let hmac = s.hmac_key.as_ref().ok_or_else(|| {
        usage("no HMAC key: knocker sends only HMAC-authenticated fwknop packets; give --key-hmac or --key-base64-hmac, or HMAC_KEY / HMAC_KEY_BASE64 in the stanza")
    })?;
    FwknopKeys::new(
        key_bytes(enc, "encryption key")?,
        key_bytes(hmac, "HMAC key")?,
        s.hmac_digest.unwrap_or_default(),
    )
    .map_err(|source| SpaError::Key {
        what: "keys",
        source,
    })
}

/// `tcp/22,udp/53` as fwknop's -A takes it (protocol first).
pub fn parse_access(list: &str) -> Result<Vec<Service>, SpaError> {
    let bad = |spec: &str| {
        usage(format!(
            "bad access {spec:?}: a service is proto/port, tcp or udp, e.g. tcp/22,udp/53"
        ))
    };
    let mut services = Vec::new();
    for spec in list.split(',') {
        let (proto, port) = spec.trim().split_once('/').ok_or_else(|| bad(spec))?;
        let proto: Proto = proto.parse().map_err(|_| bad(spec))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad(spec)),
        };
        services.push(Service::new(proto, port));
    }
    Ok(services)
}

/// The user name fwknop would put in: $SPOOF_USER, $LOGNAME, $USER, else NO_USER.
fn default_user() -> String {
    ["SPOOF_USER", "LOGNAME", "USER"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "NO_USER".to_string())
}

/// A packet ready to go: where, what, and the text.
pub struct Packet {
    pub server: Option<SocketAddr>,
    pub message: SpaMessage,
    pub payload: String,
}

/// Builds the packet the settings describe. `server` is resolved unless `test` and no server
/// is known (a packet written with -T -B needs none if the allow address is given).
/// fwknop's `-N IP:PORT` (or `IP,PORT`): the inner host a NAT access message names.
fn nat_access(text: &str) -> Result<fwknop::NatAccess, SpaError> {
    let bad = || {
        usage(format!(
            "-N {text:?}: give the inner host as IP:PORT, e.g. 192.168.10.5:22"
        ))
    };
    let (host, port) = text.rsplit_once([':', ',']).ok_or_else(bad)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    let host = host.parse::<Ipv4Addr>().map_err(|_| bad())?;
    Ok(fwknop::NatAccess {
        host: host.to_string(),
        port,
    })
}

pub fn build(
    s: &Settings,
    test: bool,
    at: Option<u64>,
    command: Option<&str>,
) -> Result<Packet, SpaError> {
    let keys = keys(s)?;
    let port = s.port.unwrap_or(fwknop::DEFAULT_PORT);
    let server = match (&s.server, test) {
        (Some(host), _) => {
            // The default allow address must be IPv4, so prefer the host's IPv4 address then.
            let family = match s.allow {
                None => Family::V4,
                Some(_) => Family::Any,
            };
            Some(SocketAddr::new(knock::resolve(host, family)?, port))
        }
        (None, true) => None,
        (None, false) => {
            return Err(usage(
                "no server: give HOST (or -D), or SPA_SERVER in the stanza",
            ))
        }
    };
    let allow = match &s.allow {
        Some(Allow::Source) => Ipv4Addr::UNSPECIFIED,
        Some(Allow::Resolve) => {
            return Err(usage(
                "knocker never asks a web service for this machine's address (-R, ALLOW_IP \
                 resolve): give your public address with -a, or use -s",
            ))
        }
        Some(Allow::Ip(text)) => match knock::resolve(text, Family::V4)? {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => return Err(usage(format!("{text}: not an IPv4 address"))),
        },
        None => {
            let Some(server) = server else {
                return Err(usage(
                    "no address to open for: give -a or -s (or a server, whose route gives it)",
                ));
            };
            match kinds::source_towards(server.ip(), port).map_err(|source| SpaError::Route {
                ip: server.ip(),
                source,
            })? {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => {
                    return Err(usage(format!(
                        "this machine reaches {} over IPv6, and fwknop carries only IPv4 \
                         addresses: give the IPv4 address to open for with -a, or use -s",
                        server.ip()
                    )))
                }
            }
        }
    };
    let user = s.user.clone().unwrap_or_else(default_user);
    let now = at.unwrap_or_else(kinds::now_unix);
    let timestamp = now.saturating_add_signed(s.time_offset.unwrap_or(0));
    let message = match command {
        Some(cmd) => SpaMessage::command(&user, timestamp, allow, cmd),
        None => {
            let list = s.access.as_deref().ok_or_else(|| {
                usage("nothing to open: give -A proto/port[,...] (or ACCESS in the stanza), or -C")
            })?;
            // FW_TIMEOUT 0 is no timeout, as in fwknop.
            let timeout = s.fw_timeout.filter(|&t| t > 0);
            let mut message =
                SpaMessage::access(&user, timestamp, allow, parse_access(list)?, timeout);
            if let Some(text) = s.nat.as_deref() {
                message.nat = Some(nat_access(text)?);
                message.message_type = if timeout.is_some() {
                    MessageType::ClientTimeoutNatAccess
                } else {
                    MessageType::NatAccess
                };
            }
            message
        }
    };
    let payload = fwknop::encode_with_digest(
        &keys,
        &message,
        s.digest.unwrap_or_default(),
        getrandom::fill,
    )?;
    Ok(Packet {
        server,
        message,
        payload,
    })
}

/// Writes the packet as fwknop -B does: the payload and a newline.
pub fn save(path: &Path, payload: &str, append: bool) -> Result<(), SpaError> {
    let mut options = OpenOptions::new();
    options.create(true).mode(0o600);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(format!("{payload}\n").as_bytes()))
        .map_err(|source| SpaError::Save {
            path: path.to_path_buf(),
            source,
        })
}

/// One UDP datagram holding the payload, as fwknop sends it.
fn send(server: SocketAddr, source_port: Option<u16>, payload: &str) -> Result<(), SpaError> {
    let err = |source| SpaError::Send {
        addr: server,
        source,
    };
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, source_port.unwrap_or(0)).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, source_port.unwrap_or(0)).into(),
    };
    let socket = UdpSocket::bind(local).map_err(err)?;
    let sent = socket.send_to(payload.as_bytes(), server).map_err(err)?;
    if sent != payload.len() {
        return Err(err(io::Error::other("the datagram was cut short")));
    }
    Ok(())
}

/// Sends the packet (unless `test`), saying what with `verbose`.
pub fn deliver(
    packet: &Packet,
    source_port: Option<u16>,
    test: bool,
    verbose: bool,
) -> Result<(), SpaError> {
    let what = match &packet.message.request {
        fwknop::SpaRequest::Access(services) => {
            let list: Vec<String> = services.iter().map(Service::to_string).collect();
            format!("open {}", list.join(","))
        }
        fwknop::SpaRequest::Command(cmd) => format!("run {cmd:?}"),
    };
    let summary = format!(
        "{what} for {}{}, user {}, {} bytes",
        packet.message.allow,
        packet
            .message
            .client_timeout
            .map_or(String::new(), |t| format!(" for {t}s")),
        packet.message.username,
        packet.payload.len()
    );
    match (packet.server, test) {
        (Some(server), false) => {
            if verbose {
                println!("fwknop SPA to {server}/udp: {summary}");
            }
            send(server, source_port, &packet.payload)
        }
        (server, _) => {
            if verbose {
                let to = server.map_or(String::new(), |s| format!(" for {s}/udp"));
                println!("fwknop SPA{to} (not sent, --test): {summary}");
            }
            Ok(())
        }
    }
}

/// `knocker knock NAME` for a profile of kind fwknop: the stanza's settings (if it names one),
/// the profile's over them, the profile's host as the server.
pub fn knock_profile(
    store: &Store,
    host: &str,
    profile: &Fwknop,
    verbose: bool,
    at: Option<u64>,
) -> Result<(), SpaError> {
    let mut s = Settings::default();
    if let Some(stanza) = &profile.stanza {
        let path = match &profile.rc_file {
            Some(p) => store.resolve(p),
            None => fwknoprc::default_path().ok_or_else(|| {
                usage("the profile names a ~/.fwknoprc stanza, and HOME is not set: give rc_file")
            })?,
        };
        s = fwknoprc::load(&path, Some(stanza))?;
    }
    let key = |file: &Option<PathBuf>| -> Result<Option<Key>, SpaError> {
        file.as_ref()
            .map(|f| {
                knocker_wire::keyfile::load_key(&store.resolve(f), |text| {
                    key_from_base64(text).map_err(|_| knocker_wire::KeyError::NotBase64)
                })
                .map(Key::Bytes)
                .map_err(SpaError::KeyFile)
            })
            .transpose()
    };
    s.overlay(Settings {
        server: Some(host.to_string()),
        port: profile.port,
        access: profile.open.as_ref().map(|open| {
            open.iter()
                .map(Service::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }),
        allow: profile.allow.map(|a| match a {
            FwknopAllow::Ip(ip) => Allow::Ip(ip.to_string()),
            FwknopAllow::Source => Allow::Source,
        }),
        key: key(&profile.key_file)?,
        hmac_key: key(&profile.hmac_key_file)?,
        hmac_digest: profile.hmac_digest,
        fw_timeout: profile.timeout_secs,
        user: profile.user.clone(),
        ..Settings::default()
    });
    let packet = build(&s, false, at, None)?;
    deliver(&packet, s.source_port, false, verbose)
}

#[cfg(test)]
mod tests {
    use super::*;
    use knocker_wire::fwknop::Digest;

    #[test]
    fn access_lists_are_fwknops() {
        assert_eq!(
            parse_access("tcp/22,udp/53").expect("ok"),
            vec![Service::tcp(22), Service::udp(53)]
        );
        for bad in ["22", "tcp/0", "tcp/", "sctp/1", "tcp/22,", "22/tcp/1"] {
            assert!(parse_access(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_overrides_the_stanza() {
        let mut rc = Settings {
            server: Some("a".into()),
            port: Some(1),
            fw_timeout: Some(30),
            ..Settings::default()
        };
        rc.overlay(Settings {
            port: Some(2),
            ..Settings::default()
        });
        assert_eq!(rc.server.as_deref(), Some("a"));
        assert_eq!(rc.port, Some(2));
        assert_eq!(rc.fw_timeout, Some(30));
    }

    #[test]
    fn a_packet_for_loopback_opens_for_loopback_and_decodes() {
        let s = Settings {
            server: Some("127.0.0.1".into()),
            access: Some("tcp/22".into()),
            key: Some(Key::Text(Zeroizing::new("enc".into()))),
            hmac_key: Some(Key::Base64(Zeroizing::new("aG1hYw".into()))),
            hmac_digest: Some(Digest::Sha512),
            user: Some("alice".into()),
            fw_timeout: Some(0),
            time_offset: Some(-60),
            ..Settings::default()
        };
        let p = build(&s, false, Some(1_000_000), None).expect("build");
        assert_eq!(p.server, Some("127.0.0.1:62201".parse().expect("addr")));
        let keys = keys(&s).expect("keys");
        let msg = fwknop::decode(&keys, p.payload.as_bytes()).expect("decode");
        assert_eq!(msg.allow, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(msg.timestamp, 999_940);
        assert_eq!(msg.client_timeout, None, "FW_TIMEOUT 0 is no timeout");
        assert_eq!(msg.username, "alice");
    }

    #[test]
    fn nat_access_sends_fwknops_nat_message() {
        let s = Settings {
            server: Some("127.0.0.1".into()),
            access: Some("tcp/2222".into()),
            key: Some(Key::Text(Zeroizing::new("enc".into()))),
            hmac_key: Some(Key::Base64(Zeroizing::new("aG1hYw".into()))),
            nat: Some("10.200.3.2:22".into()),
            ..Settings::default()
        };
        let keys = keys(&s).expect("keys");
        let p = build(&s, false, Some(1_000_000), None).expect("build");
        let msg = fwknop::decode(&keys, p.payload.as_bytes()).expect("decode");
        assert_eq!(msg.message_type, MessageType::NatAccess);
        assert_eq!(
            msg.nat,
            Some(fwknop::NatAccess {
                host: "10.200.3.2".into(),
                port: 22
            })
        );
        assert_eq!(msg.services(), [Service::tcp(2222)]);
        let timed = Settings {
            fw_timeout: Some(60),
            nat: Some("10.200.3.2,22".into()),
            ..s.clone()
        };
        let p = build(&timed, false, Some(1_000_000), None).expect("build");
        let msg = fwknop::decode(&keys, p.payload.as_bytes()).expect("decode");
        assert_eq!(msg.message_type, MessageType::ClientTimeoutNatAccess);
        for bad in [
            "10.200.3.2",
            "10.200.3.2:0",
            "host:22",
            "10.200.3.2:x",
            ":22",
        ] {
            let bad_nat = Settings {
                nat: Some(bad.into()),
                ..s.clone()
            };
            let e = build(&bad_nat, true, None, None).err().expect("bad -N");
            assert!(
                e.to_string().contains("give the inner host as IP:PORT"),
                "{e}"
            );
        }
    }

    #[test]
    fn missing_pieces_are_usage_errors() {
        let base = Settings {
            access: Some("tcp/22".into()),
            key: Some(Key::Text(Zeroizing::new("enc".into()))),
            hmac_key: Some(Key::Text(Zeroizing::new("mac".into()))),
            allow: Some(Allow::Source),
            ..Settings::default()
        };
        build(&base, true, None, None).expect("-T with -s needs no server");
        let e = build(&base, false, None, None).err().expect("no server");
        assert!(e.is_usage() && e.to_string().contains("no server"), "{e}");
        let no_hmac = Settings {
            hmac_key: None,
            ..base.clone()
        };
        let e = build(&no_hmac, true, None, None).err().expect("no hmac");
        assert!(e.is_usage() && e.to_string().contains("HMAC"), "{e}");
        let resolve = Settings {
            allow: Some(Allow::Resolve),
            ..base.clone()
        };
        let e = build(&resolve, true, None, None).err().expect("resolve");
        assert!(e.to_string().contains("never asks a web service"), "{e}");
        let same = Settings {
            hmac_key: Some(Key::Text(Zeroizing::new("enc".into()))),
            ..base
        };
        let e = build(&same, true, None, None).err().expect("same keys");
        assert!(e.to_string().contains("identical"), "{e}");
    }
}
