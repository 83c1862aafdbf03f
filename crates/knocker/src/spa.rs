//! `knocker spa --fwknop`: one fwknop SPA packet, built by knocker-wire exactly as Debian's
//! `fwknop` client builds it, from fwknop's own options and `~/.fwknoprc` stanzas.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Args;
use knocker_wire::fwknop::{
    self, key_from_base64, key_from_text, Digest, EncodeError, FwknopKeyError, FwknopKeys,
    SpaMessage,
};
use knocker_wire::{Proto, Service};
use zeroize::Zeroizing;

use crate::fwknoprc::{self, Allow, Key, RcError, Settings};
use crate::kinds;
use crate::knock::{self, Family, KnockError};
use crate::profile::{Fwknop, FwknopAllow, Store};

pub const SPA_HELP: &str = "\
fwknop compatibility:
  The packet is the one `fwknop` 2.6 sends with the same options (Rijndael, HMAC, message
  version 3.0.0), so an unchanged fwknopd (or knockerd's fwknop door) accepts it. The options
  keep fwknop's names. Settings come from the `[default]` stanza of ~/.fwknoprc (or --rc-file),
  then from the stanza -n names, then from the command line; a stanza's ACCESS, ALLOW_IP,
  SPA_SERVER, SPA_SERVER_PORT, KEY, KEY_BASE64, HMAC_KEY, HMAC_KEY_BASE64, HMAC_DIGEST_TYPE,
  DIGEST_TYPE, FW_TIMEOUT, SPOOF_USER, TIME_OFFSET and SPA_SOURCE_PORT are honoured, and a
  stanza asking for what knocker does not do (GnuPG, NAT, -R, random ports) is refused with
  its line. The rc file must be readable by its owner only.

  Differences: an HMAC key is required (knocker sends no unauthenticated packets); UDP only;
  no prompting for keys; -R is refused (knocker never asks a web service for this machine's
  address: give your public address with -a, or use -s). Without -a, -s or ALLOW_IP the packet
  asks to open for this machine's address towards HOST (behind NAT that is the private one).";

const SPA_EXAMPLES: &str = "\
Examples:
  knocker spa --fwknop -A tcp/22 --key-base64-rijndael KEY --key-base64-hmac HKEY server.example.org
  knocker spa --fwknop -n myssh                         # a ~/.fwknoprc stanza
  knocker spa --fwknop -n myssh -a 203.0.113.7 -f 120   # override its allow IP, ask for 120 s
  knocker spa --fwknop -n myssh -T -B packet.txt        # write the packet, send nothing";

#[derive(Args, Debug)]
#[command(after_long_help = format!("{SPA_HELP}\n\n{SPA_EXAMPLES}"))]
pub struct SpaArgs {
    /// Send fwknop's SPA format (the only one today)
    #[arg(long, required = true)]
    pub fwknop: bool,
    /// The fwknopd server: a name or an address (or -D, or SPA_SERVER in the stanza)
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// The fwknopd server, as fwknop's -D gives it
    #[arg(
        short = 'D',
        long = "destination",
        value_name = "HOST",
        conflicts_with = "host"
    )]
    pub destination: Option<String>,
    /// Services to open: proto/port[,proto/port...], e.g. tcp/22,udp/53
    #[arg(short = 'A', long = "access", value_name = "LIST")]
    pub access: Option<String>,
    /// Ask to run this command on the server instead (fwknop's command message; the server
    /// must allow exactly it)
    #[arg(
        short = 'C',
        long = "server-cmd",
        value_name = "CMD",
        conflicts_with = "access"
    )]
    pub server_cmd: Option<String>,
    /// The IPv4 address to open for (default: this machine's address towards HOST)
    #[arg(short = 'a', long = "allow-ip", value_name = "IP")]
    pub allow_ip: Option<String>,
    /// Ask the server to open for the packet's source address (allow IP 0.0.0.0)
    #[arg(short = 's', long = "source-ip", conflicts_with_all = ["allow_ip", "resolve_ip"])]
    pub source_ip: bool,
    /// Refused: fwknop asks a web service for this machine's address; knocker never does
    #[arg(short = 'R', long = "resolve-ip-https", conflicts_with = "allow_ip")]
    pub resolve_ip: bool,
    /// The encryption key, as text
    #[arg(long = "key-rijndael", value_name = "KEY")]
    pub key_rijndael: Option<String>,
    /// The encryption key, in base64
    #[arg(
        long = "key-base64-rijndael",
        value_name = "KEY",
        conflicts_with = "key_rijndael"
    )]
    pub key_base64_rijndael: Option<String>,
    /// The HMAC key, as text
    #[arg(long = "key-hmac", value_name = "KEY")]
    pub key_hmac: Option<String>,
    /// The HMAC key, in base64
    #[arg(
        long = "key-base64-hmac",
        value_name = "KEY",
        conflicts_with = "key_hmac"
    )]
    pub key_base64_hmac: Option<String>,
    /// HMAC digest: md5, sha1, sha256 (default), sha384 or sha512
    #[arg(long = "hmac-digest-type", value_name = "TYPE")]
    pub hmac_digest_type: Option<String>,
    /// Digest of the plaintext: md5, sha1, sha256 (default), sha384 or sha512
    #[arg(short = 'm', long = "digest-type", value_name = "TYPE")]
    pub digest_type: Option<String>,
    /// Accepted for fwknop's sake: knocker always adds an HMAC
    #[arg(long = "use-hmac")]
    pub use_hmac: bool,
    /// Ask the server to keep access open for SECS seconds (fwknop message type 3)
    #[arg(short = 'f', long = "fw-timeout", value_name = "SECS")]
    pub fw_timeout: Option<String>,
    /// The server's port (default 62201)
    #[arg(short = 'p', long = "server-port", value_name = "PORT")]
    pub server_port: Option<u16>,
    /// The protocol to send with: udp only
    #[arg(short = 'P', long = "server-proto", value_name = "PROTO")]
    pub server_proto: Option<String>,
    /// The source port to send from (default: any)
    #[arg(short = 'S', long = "source-port", value_name = "PORT")]
    pub source_port: Option<u16>,
    /// The user name in the packet (default: $SPOOF_USER, $LOGNAME, $USER)
    #[arg(short = 'U', long = "spoof-user", value_name = "USER")]
    pub spoof_user: Option<String>,
    /// Add TIME to the packet's timestamp: N seconds, Nm, Nh or Nd
    #[arg(long = "time-offset-plus", value_name = "TIME")]
    pub time_offset_plus: Option<String>,
    /// Subtract TIME from the packet's timestamp
    #[arg(
        long = "time-offset-minus",
        value_name = "TIME",
        conflicts_with = "time_offset_plus"
    )]
    pub time_offset_minus: Option<String>,
    #[arg(
        long = "time-offset",
        value_name = "SECONDS",
        allow_hyphen_values = true,
        value_parser = kinds::parse_time_offset,
        conflicts_with_all = ["time_offset_plus", "time_offset_minus"],
        help = kinds::TIME_OFFSET_HELP
    )]
    pub time_offset: Option<i64>,
    /// Use this stanza of the rc file
    #[arg(short = 'n', long = "named-config", value_name = "NAME")]
    pub named_config: Option<String>,
    /// The rc file (default ~/.fwknoprc)
    #[arg(long = "rc-file", value_name = "FILE")]
    pub rc_file: Option<PathBuf>,
    /// Read no rc file
    #[arg(long = "no-rc-file", conflicts_with_all = ["rc_file", "named_config"])]
    pub no_rc_file: bool,
    /// Also write the packet to FILE (one line), as fwknop -B does
    #[arg(short = 'B', long = "save-packet", value_name = "FILE")]
    pub save_packet: Option<PathBuf>,
    /// With -B: append to FILE instead of replacing it
    #[arg(short = 'b', long = "save-packet-append", requires = "save_packet")]
    pub save_packet_append: bool,
    /// Build the packet but do not send it (with -B: only write it)
    #[arg(short = 'T', long = "test")]
    pub test: bool,
    /// Say what is sent
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// For tests only: the packet's time is UNIX_SECS instead of now
    #[arg(long, value_name = "UNIX_SECS", hide = true)]
    pub at: Option<u64>,
}

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

/// The command line as [`Settings`], to lay over the rc file's.
fn command_line(args: &SpaArgs) -> Result<Settings, SpaError> {
    let secret = |s: &Option<String>| s.as_ref().map(|k| Zeroizing::new(k.clone()));
    let digest = |s: &Option<String>, what: &str| -> Result<Option<Digest>, SpaError> {
        s.as_deref()
            .map(|d| d.parse().map_err(|e| usage(format!("{what}: {e}"))))
            .transpose()
    };
    if let Some(proto) = &args.server_proto {
        if !proto.eq_ignore_ascii_case("udp") {
            return Err(usage(format!(
                "-P {proto}: knocker sends fwknop packets over UDP only (fwknopd's default)"
            )));
        }
    }
    let allow = if args.source_ip {
        Some(Allow::Source)
    } else if args.resolve_ip {
        Some(Allow::Resolve)
    } else {
        args.allow_ip.clone().map(Allow::Ip)
    };
    let time_offset = match (&args.time_offset_plus, &args.time_offset_minus) {
        (Some(t), _) => Some(fwknoprc::time_offset(t).map_err(|e| usage(e.to_string()))?),
        (_, Some(t)) => Some(-fwknoprc::time_offset(t).map_err(|e| usage(e.to_string()))?),
        _ => args.time_offset,
    };
    Ok(Settings {
        server: args.host.clone().or_else(|| args.destination.clone()),
        port: args.server_port,
        source_port: args.source_port,
        access: args.access.clone(),
        allow,
        key: secret(&args.key_rijndael)
            .map(Key::Text)
            .or_else(|| secret(&args.key_base64_rijndael).map(Key::Base64)),
        hmac_key: secret(&args.key_hmac)
            .map(Key::Text)
            .or_else(|| secret(&args.key_base64_hmac).map(Key::Base64)),
        hmac_digest: digest(&args.hmac_digest_type, "--hmac-digest-type")?,
        digest: digest(&args.digest_type, "--digest-type")?,
        fw_timeout: args
            .fw_timeout
            .as_deref()
            .map(fwknoprc::fw_timeout)
            .transpose()
            .map_err(|e| usage(format!("--fw-timeout: {e}")))?,
        user: args.spoof_user.clone(),
        time_offset,
    })
}

/// The rc file's settings (none with --no-rc-file, or when the default file does not exist and
/// no stanza is asked for), with the command line's over them.
pub fn settings(args: &SpaArgs) -> Result<Settings, SpaError> {
    let mut merged = Settings::default();
    if !args.no_rc_file {
        let path = args.rc_file.clone().or_else(fwknoprc::default_path);
        match path {
            Some(path) => {
                let optional = args.rc_file.is_none() && args.named_config.is_none();
                match fwknoprc::load(&path, args.named_config.as_deref()) {
                    Ok(rc) => merged = rc,
                    Err(RcError::Io { source, .. })
                        if optional && source.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None if args.named_config.is_some() => {
                return Err(usage(
                    "-n needs an rc file: HOME is not set, so give --rc-file",
                ))
            }
            None => {}
        }
    }
    merged.overlay(command_line(args)?);
    Ok(merged)
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
            SpaMessage::access(&user, timestamp, allow, parse_access(list)?, timeout)
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
fn save(path: &PathBuf, payload: &str, append: bool) -> Result<(), SpaError> {
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
            path: path.clone(),
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

/// `knocker spa --fwknop ...`.
pub fn run(args: &SpaArgs) -> Result<(), SpaError> {
    let s = settings(args)?;
    let packet = build(&s, args.test, args.at, args.server_cmd.as_deref())?;
    if let Some(path) = &args.save_packet {
        save(path, &packet.payload, args.save_packet_append)?;
    }
    deliver(&packet, s.source_port, args.test, args.verbose)
}

/// Sends the packet (unless `test`), saying what with `verbose`.
fn deliver(
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
