//! knockerd's own TOML: the raw file as serde reads it, and its validation into a [`Config`]
//! with file:line in every error.

pub mod clients;
pub mod doors;
pub mod reference;
mod shared;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knocker_engine::{
    validate_doors, Clock, DoorSpec, DoorsError, FlagFilter, Kind, Proto, Service, MAX_OPEN_FOR,
};

use crate::onetime::OneTimeFile;
use serde::Deserialize;
use toml::Spanned;

use super::*;

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: Option<Spanned<RawDaemon>>,
    #[serde(default)]
    door: BTreeMap<String, Spanned<RawDoor>>,
    source: Option<Spanned<source::RawSource>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    nflog_group: Option<Spanned<i64>>,
    max_tracked: Option<Spanned<i64>>,
    on_stop: Option<OnStop>,
    grant_mark: Option<Spanned<i64>>,
    accept_mark: Option<Spanned<i64>>,
    #[serde(default)]
    trusted: Vec<Spanned<String>>,
    #[serde(default)]
    protect: Vec<Spanned<String>>,
    interface: Option<Spanned<RawNames>>,
    state_dir: Option<String>,
    metrics_file: Option<Spanned<String>>,
    shared_state: Option<Spanned<String>>,
    shared_state_password_file: Option<Spanned<String>>,
    shared_state_ca_file: Option<Spanned<String>>,
    shared_state_down: Option<Spanned<String>>,
    server_key: Option<Spanned<String>>,
    clients: Option<Spanned<String>>,
    worker_user: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    kind: Option<Spanned<String>>,
    sequence: Option<Spanned<Vec<Spanned<String>>>>,
    one_time_sequences: Option<Spanned<String>>,
    #[serde(default)]
    open: Vec<Spanned<String>>,
    target: Option<Spanned<String>>,
    start_command_6: Option<Spanned<RawCommand>>,
    stop_command_6: Option<Spanned<RawCommand>>,
    // rotating doors
    key_file: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    period: Option<Spanned<RawDuration>>,
    skew: Option<Spanned<i64>>,
    lookahead: Option<Spanned<i64>>,
    knocks: Option<Spanned<i64>>,
    ports: Option<Spanned<String>>,
    proto: Option<Spanned<String>>,
    // encoded doors (and key_file, proto)
    base: Option<Spanned<i64>>,
    bits: Option<Spanned<i64>>,
    max_age: Option<Spanned<RawDuration>>,
    allow_other_address: Option<bool>,
    // fwknop doors (and key_file, max_age, allow_other_address)
    port: Option<Spanned<i64>>,
    sources: Option<Spanned<Vec<Spanned<String>>>>,
    destinations: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    restrict: Vec<Spanned<String>>,
    hmac_key_file: Option<Spanned<String>>,
    hmac_digest: Option<Spanned<String>>,
    max_open_for: Option<Spanned<RawDuration>>,
    expire: Option<Spanned<i64>>,
    require_username: Option<String>,
    require_source_address: Option<bool>,
    // knockknock doors
    profile: Option<Spanned<String>>,
    error_window: Option<Spanned<i64>>,
    // spa and syn doors
    rate_limit: Option<Spanned<i64>>,
    window: Option<Spanned<RawDuration>>,
    open_for: Option<Spanned<RawDuration>>,
    tcp_flags: Option<Spanned<String>>,
    protect: Option<bool>,
    forward: Option<Spanned<RawForward>>,
    nat: Option<Spanned<String>>,
    nat_source: Option<Spanned<String>>,
    nat_networks: Option<Spanned<Vec<Spanned<String>>>>,
    start_command: Option<Spanned<RawCommand>>,
    stop_command: Option<Spanned<RawCommand>>,
    stop_after: Option<Spanned<RawDuration>>,
    shell: Option<bool>,
    repeat_start_command: Option<bool>,
    connections: Option<Spanned<i64>>,
    grant_prefix: Option<Spanned<i64>>,
    grant_prefix6: Option<Spanned<i64>>,
    interfaces: Option<Spanned<RawNames>>,
    protect_elsewhere: Option<Spanned<bool>>,
    /// What the door does while a fleet's shared store is down (`[daemon] shared_state`).
    shared_state_down: Option<Spanned<String>>,
    /// `[[door.NAME.command]]`: delayed commands.
    #[serde(default)]
    command: Vec<Spanned<RawAction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    run: Spanned<RawCommand>,
    after: Option<Spanned<RawDuration>>,
    at: Option<Spanned<String>>,
}

/// One name or a list of them (`interface = "eth0"`, `interface = ["eth0", "wg0"]`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawNames {
    One(String),
    Many(Vec<String>),
}

/// `forward = true` (published on this host) or `forward = ["10.0.0.5", ...]` (routed hosts).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawForward {
    Flag(bool),
    Hosts(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawCommand {
    Argv(Vec<String>),
    Line(String),
}

impl Ctx<'_> {
    /// An optional duration of 1 s to 1 day, in whole seconds, or `default`.
    fn secs(
        &self,
        v: &Option<Spanned<RawDuration>>,
        key: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(x) => match self.duration(x, key)?.as_secs() {
                n @ 1..=86_400 => Ok(n),
                _ => self.err(x.span(), format!("{key} must be 1 s to 1 day")),
            },
        }
    }

    fn duration(&self, v: &Spanned<RawDuration>, key: &str) -> Result<Duration, ConfigError> {
        let d = match v.get_ref() {
            RawDuration::Seconds(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            RawDuration::Seconds(n) => Err(format!("{key} = {n}: a duration cannot be negative")),
            RawDuration::Text(t) => parse_duration(t).map_err(|e| format!("{key}: {e}")),
        };
        d.or_else(|m| self.err(v.span(), m))
    }
    fn services(&self, list: &[Spanned<String>], key: &str) -> Result<Vec<Service>, ConfigError> {
        list.iter()
            .map(|s| {
                match s.get_ref().parse::<Service>() {
                    Err(e) => self.err(s.span(), format!("{key}: {e}")),
                    // an ICMP step is a knock only: nothing opens, protects or restricts it
                    Ok(service) if service.proto == Proto::Icmp && key != "sequence" => self.err(
                        s.span(),
                        format!("{key}: {service} is an ICMP knock step, not a service: only a sequence may have it"),
                    ),
                    Ok(service) => Ok(service),
                }
            })
            .collect()
    }
}

/// The server key and clients file a configuration names (or their defaults), read without
/// validating the rest: `knockerd keygen` runs before the key that validation would need exists.
pub fn native_paths(path: &Path) -> Result<(PathBuf, PathBuf), ConfigError> {
    let bytes = read_bounded(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let cx = Ctx {
        file: path,
        text: &text,
    };
    let err = |e: toml::de::Error| ConfigError {
        file: path.to_path_buf(),
        line: e.span().map(|s| cx.line_of(s.start)),
        message: toml_message(&e),
    };
    #[derive(Deserialize, Default)]
    struct Paths {
        server_key: Option<String>,
        clients: Option<String>,
    }
    let mut table: toml::Table = toml::from_str(&text).map_err(err)?;
    let paths: Paths = match table.remove("daemon") {
        Some(d) => d.try_into().map_err(err)?,
        None => Paths::default(),
    };
    let path_or = |p: Option<String>, default: &str| PathBuf::from(p.unwrap_or(default.into()));
    Ok((
        path_or(paths.server_key, DEFAULT_SERVER_KEY),
        path_or(paths.clients, DEFAULT_CLIENTS),
    ))
}

/// The `[daemon] state_dir` a configuration names, read without validating the rest; `None`
/// when the file cannot be read, is not TOML or names none.
pub fn state_dir(path: &Path) -> Option<PathBuf> {
    let text = String::from_utf8(read_bounded(path).ok()?).ok()?;
    let table = text.parse::<toml::Table>().ok()?;
    let dir = table.get("daemon")?.get("state_dir")?.as_str()?;
    Some(PathBuf::from(dir))
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = read_bounded(path)?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message: "cannot read: not UTF-8 text".into(),
    })?;
    parse(path, &text)
}

/// What TOML or serde said, on one line; an unknown key also says where every key is written
/// down (the reference, [`reference::KNOCKERD_TOML`]).
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if message.starts_with("unknown field") {
        format!("{message} (each key is described in knockerd.toml(5))")
    } else {
        message
    }
}

/// Parses and validates configuration text; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let cx = Ctx { file, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: e.span().map(|s| cx.line_of(s.start)),
        message: toml_message(&e),
    })?;

    let daemon_span = raw.daemon.as_ref().map(|d| d.span()).unwrap_or(0..0);
    let daemon = raw.daemon.map(Spanned::into_inner).unwrap_or_default();
    let nflog_group = match &daemon.nflog_group {
        None => DEFAULT_NFLOG_GROUP,
        Some(g) => match u16::try_from(*g.get_ref()) {
            Ok(v) => v,
            Err(_) => return cx.err(g.span(), "nflog_group must be 0 to 65535"),
        },
    };
    let max_tracked = match &daemon.max_tracked {
        None => knocker_engine::DEFAULT_MAX_TRACKED,
        Some(m) => match *m.get_ref() {
            n @ 1..=100_000_000 => n as usize,
            _ => {
                return cx.err(
                    m.span(),
                    "max_tracked must be 1 to 100000000 (each entry costs about 60 bytes)",
                )
            }
        },
    };
    let (grant_mark, accept_mark) = marks(&cx, &daemon)?;
    let trusted = daemon
        .trusted
        .iter()
        .map(|t| {
            t.get_ref()
                .parse::<Net>()
                .or_else(|e| cx.err(t.span(), format!("trusted: {e}")))
        })
        .collect::<Result<Vec<Net>, ConfigError>>()?;
    let protect = cx.services(&daemon.protect, "protect")?;

    if raw.door.is_empty() {
        return Err(ConfigError {
            file: file.to_path_buf(),
            line: None,
            message: NO_DOOR.into(),
        });
    }
    let mut doors = Vec::new();
    // the server key and the clients file, read once when the first spa or syn door needs them
    let mut native: Option<NativeKeys> = None;
    for (name, raw_door) in &raw.door {
        doors.push(door(
            &cx,
            name,
            raw_door,
            &daemon,
            &daemon_span,
            &mut native,
        )?);
    }
    // every door a client is enrolled for must be a spa or syn door of this configuration
    if let Some(keys) = &native {
        let is_native = |name: &str| {
            raw.door.get(name).is_some_and(|d| {
                d.get_ref()
                    .kind
                    .as_ref()
                    .is_some_and(|k| matches!(k.get_ref().as_str(), "spa" | "syn"))
            })
        };
        keys.clients.check_doors(is_native)?;
    }
    let specs: Vec<DoorSpec> = doors.iter().map(|d| d.spec.clone()).collect();
    if let Err(e) = validate_doors(&specs) {
        let door_name = match &e {
            DoorsError::Door { door, .. }
            | DoorsError::Identical(_, door)
            | DoorsError::Overlap(door, _)
            | DoorsError::KnockIsService(_, door, _) => Some(door.clone()),
            DoorsError::TooMany(_) => None,
        };
        let line = door_name
            .and_then(|n| doors.iter().find(|d| d.spec.name == n))
            .map(|d| d.line);
        return Err(ConfigError {
            file: file.to_path_buf(),
            line,
            message: e.to_string(),
        });
    }
    let source = source::source(&cx, raw.source.as_ref())?;
    source::check_doors(&cx, &source, &doors)?;
    let shared_state = shared::shared_state(
        &cx,
        shared::RawShared {
            url: daemon.shared_state.as_ref(),
            password_file: daemon.shared_state_password_file.as_ref(),
            ca_file: daemon.shared_state_ca_file.as_ref(),
            down: daemon.shared_state_down.as_ref(),
        },
        &doors
            .iter()
            .map(|d| {
                let own = raw
                    .door
                    .get(&d.spec.name)
                    .and_then(|r| r.get_ref().shared_state_down.as_ref());
                (d, own)
            })
            .collect::<Vec<_>>(),
    )?;
    let config = Config {
        file: file.to_path_buf(),
        nflog_group,
        max_tracked,
        on_stop: daemon.on_stop.unwrap_or(OnStop::Keep),
        grant_mark,
        accept_mark,
        trusted,
        protect,
        interfaces: match &daemon.interface {
            Some(i) => interface_names(&cx, i, "interface")?,
            None => Vec::new(),
        },
        state_dir: PathBuf::from(
            daemon
                .state_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_STATE_DIR.to_string()),
        ),
        metrics_file: metrics_file(&cx, &daemon)?,
        shared_state,
        server_key: server_key_path(&daemon),
        clients: clients_path(&daemon),
        worker_user: worker_user(&cx, &daemon)?,
        drop_knocks: true,
        source,
        doors,
    };
    check_knock_ports(&cx, &config, &daemon)?;
    check_interfaces(&config)?;
    check_nat(&cx, &config)?;
    Ok(config)
}

/// `metrics_file`: an absolute path to a `.prom` file (node_exporter's textfile collector reads
/// only those).
fn metrics_file(cx: &Ctx<'_>, daemon: &RawDaemon) -> Result<Option<PathBuf>, ConfigError> {
    let Some(m) = &daemon.metrics_file else {
        return Ok(None);
    };
    crate::config::metrics_file(m.get_ref())
        .map(Some)
        .or_else(|e| cx.err(m.span(), e.to_string()))
}

/// `grant_mark` and `accept_mark`, which may not contain each other's bits.
fn marks(cx: &Ctx<'_>, daemon: &RawDaemon) -> Result<(u32, u32), ConfigError> {
    let grant_mark = match &daemon.grant_mark {
        None => DEFAULT_GRANT_MARK,
        Some(m) => match u32::try_from(*m.get_ref()) {
            Ok(v) => v,
            Err(_) => {
                return cx.err(
                    m.span(),
                    "grant_mark must fit in 32 bits (0 turns marking off)",
                )
            }
        },
    };
    let accept_mark = match &daemon.accept_mark {
        None => 0,
        Some(m) => match u32::try_from(*m.get_ref()) {
            // each is tested as `mark & M == M`: neither may contain the other's bits
            Ok(v) if v == 0 || grant_mark == 0 || (v & grant_mark != v && v & grant_mark != grant_mark) => v,
            Ok(_) => {
                return cx.err(
                    m.span(),
                    format!("accept_mark contains grant_mark ({grant_mark:#010x}) or lies within it, so a packet with one would match the other: use another, e.g. {SUGGESTED_ACCEPT_MARK:#010x}"),
                )
            }
            Err(_) => {
                return cx.err(
                    m.span(),
                    format!("accept_mark must fit in 32 bits, e.g. {SUGGESTED_ACCEPT_MARK:#010x} (0 turns it off)"),
                )
            }
        },
    };
    Ok((grant_mark, accept_mark))
}

/// `[daemon] interface` or a door's `interfaces`: one interface name or a list, each as the
/// kernel allows an interface name, each once.
fn interface_names(
    cx: &Ctx<'_>,
    raw: &Spanned<RawNames>,
    key: &str,
) -> Result<Vec<String>, ConfigError> {
    let names = match raw.get_ref() {
        RawNames::One(n) => vec![n.clone()],
        RawNames::Many(v) => v.clone(),
    };
    if names.is_empty() {
        return cx.err(
            raw.span(),
            format!(
                "{key} = [] names no interface: remove {key} to count knocks on every interface"
            ),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        // an interface name as the kernel allows it: at most 15 bytes, no '/' or space
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '"', '\\']) {
            return cx.err(
                raw.span(),
                format!("interface {name:?} is not an interface name"),
            );
        }
        if out.contains(&name) {
            return cx.err(raw.span(), format!("{key} names {name:?} twice"));
        }
        out.push(name);
    }
    Ok(out)
}

/// Knock ports shared by doors that listen on different interfaces: a knock there could not
/// tell which door it may count for (the table logs it on the union), so each port belongs to
/// doors of one set of interfaces.
fn check_interfaces(config: &Config) -> Result<(), ConfigError> {
    let reach = |w: &Watched| match *w {
        Watched::Knock(s) => (s.proto, s.port, s.port),
        Watched::Range(p, a, b) => (p, a, b),
        Watched::Spa(p) => (Proto::Udp, p, p),
        Watched::Syn(p) => (Proto::Tcp, p, p),
    };
    for (i, a) in config.doors.iter().enumerate() {
        for b in &config.doors[i + 1..] {
            if config.listens_on(a) == config.listens_on(b) {
                continue;
            }
            for wa in a.watched() {
                let (pa, a0, a1) = reach(&wa);
                let shared = b.watched().into_iter().find(|wb| {
                    let (pb, b0, b1) = reach(wb);
                    pa == pb && a0 <= b1 && b0 <= a1
                });
                if let Some(wb) = shared {
                    let on = |d: &Door| match config.listens_on(d) {
                        [] => "every interface".to_string(),
                        i => i.join(", "),
                    };
                    return Err(ConfigError {
                        file: config.file.clone(),
                        line: Some(b.line),
                        message: format!(
                            "doors {} and {} both watch {wb}, but listen on different interfaces ({} and {}): a knock there cannot tell which of them it is for; give them different ports or the same interfaces",
                            a.spec.name,
                            b.spec.name,
                            on(a),
                            on(b)
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// `[daemon] worker_user`: an unprivileged user's name.
fn worker_user(cx: &Ctx<'_>, daemon: &RawDaemon) -> Result<Option<String>, ConfigError> {
    match &daemon.worker_user {
        None => Ok(None),
        Some(u) => {
            let name = u.get_ref();
            // a user name as useradd allows it
            let ok = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && name != "root";
            if !ok {
                return cx.err(
                    u.span(),
                    format!("worker_user {name:?} must be an unprivileged user's name (e.g. \"nobody\" or a dedicated \"knocker\")"),
                );
            }
            Ok(Some(name.clone()))
        }
    }
}

/// A service a door DNATs to an inner host is that door's alone: a grant element is an address
/// and a service, and the nat chain sends on every source that holds one, whichever door
/// granted it.
fn check_nat(cx: &Ctx<'_>, config: &Config) -> Result<(), ConfigError> {
    for (s, to) in config.nat_targets() {
        let opened_by = |d: &&Door| d.spec.open.contains(&s);
        let nat_door = config
            .doors
            .iter()
            .filter(opened_by)
            .find(|d| d.forward == Some(Forward::Nat(to)));
        let other = config
            .doors
            .iter()
            .filter(opened_by)
            .find(|d| d.forward != Some(Forward::Nat(to)));
        if let (Some(n), Some(o)) = (nat_door, other) {
            return Err(ConfigError {
                file: cx.file.to_path_buf(),
                line: Some(o.line),
                message: format!(
                    "door {} opens {s}, which door {} sends on to {to} (nat): a grant of either would do both; give each its own port",
                    o.spec.name, n.spec.name
                ),
            });
        }
    }
    Ok(())
}

/// No service and no other door's knock lies in a rotating or encoded door's span, and no knock
/// port is protected.
fn check_knock_ports(cx: &Ctx<'_>, config: &Config, daemon: &RawDaemon) -> Result<(), ConfigError> {
    let file = cx.file;
    // every port of a rotating door's span is a knock port, dropped and logged
    for (proto, first, last) in config.knock_ranges() {
        let inside = |s: &Service| s.proto == proto && (first..=last).contains(&s.port);
        let clash = config
            .doors
            .iter()
            .flat_map(|d| d.spec.open.iter())
            .chain(config.protect.iter())
            .find(|s| inside(s));
        if let Some(s) = clash {
            let door = config
                .doors
                .iter()
                .find(|d| d.span().is_some_and(|r| r.first == first && r.last == last));
            return Err(ConfigError {
                file: file.to_path_buf(),
                line: door.map(|d| d.line),
                message: format!("{s} lies in the rotating span {proto}/{first}-{last}, whose every port is a knock port (dropped and logged): move the span"),
            });
        }
        if let Some(s) = config.knock_services().into_iter().find(|s| inside(s)) {
            return Err(ConfigError {
                file: file.to_path_buf(),
                line: None,
                message: format!("knock port {s} of another door lies in the rotating span {proto}/{first}-{last}: a knock there would count for both doors; move one"),
            });
        }
    }
    let knocks = config.knock_services();
    if let Some(s) = config.protect.iter().find(|s| knocks.contains(s)) {
        let line = daemon.protect.first().map(|p| cx.line_of(p.span().start));
        return Err(ConfigError {
            file: file.to_path_buf(),
            line,
            message: format!("{s} is both a knock port and protected: a knock port is always dropped and logged, so it cannot be a service too"),
        });
    }
    Ok(())
}

/// What a door's kind builds: the daemon's [`DoorKind`], the engine's [`Kind`], and the knocks
/// of a sequence door (empty for the other kinds).
struct KindParts {
    kind: DoorKind,
    engine: Kind,
    sequence: Vec<Service>,
}

impl KindParts {
    fn new(kind: DoorKind, engine: Kind) -> KindParts {
        KindParts {
            kind,
            engine,
            sequence: Vec::new(),
        }
    }
}

/// One `[door.NAME]`: its kind's own keys (each kind by its own function), then what every
/// door has (target, timing, commands).
fn door(
    cx: &Ctx<'_>,
    name: &String,
    raw_door: &Spanned<RawDoor>,
    daemon: &RawDaemon,
    daemon_span: &std::ops::Range<usize>,
    native: &mut Option<NativeKeys>,
) -> Result<Door, ConfigError> {
    let span = raw_door.span();
    let d = raw_door.get_ref();
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return cx.err(
            span,
            format!("door name {name:?}: use 1 to 32 letters, digits, '-' or '_'"),
        );
    }
    let kind_name = d
        .kind
        .as_ref()
        .map(|k| k.get_ref().as_str())
        .unwrap_or("sequence");
    let knocked = knocked_kind(cx, d, &span, name, kind_name)?;
    stray_keys(cx, d, &span, kind_name)?;
    let open = cx.services(&d.open, "open")?;
    let parts = match knocked {
        Some(parts) => parts,
        None if kind_name == "fwknop" => fwknop_door(cx, d, &span, name, &open)?,
        None if kind_name == "knockknock" => knockknock_door(cx, d, &span, name, &open)?,
        None => {
            let keys = match native.take() {
                Some(k) => k,
                None => native_keys(cx, daemon, daemon_span.clone())?,
            };
            let keys = native.insert(keys);
            native_door(cx, d, &span, name, &open, kind_name, keys)?
        }
    };
    let target = match &d.target {
        None => None,
        Some(t) => Some(t.get_ref().parse::<IpAddr>().or_else(|_| {
            cx.err(
                t.span(),
                format!("target {:?} is not an IP address", t.get_ref()),
            )
        })?),
    };
    let window = match &d.window {
        Some(w) => cx.duration(w, "window")?,
        None => DEFAULT_WINDOW,
    };
    let open_for = match &d.open_for {
        Some(w) => cx.duration(w, "open_for")?,
        None => DEFAULT_OPEN_FOR,
    };
    if open_for > MAX_OPEN_FOR {
        let span = d
            .open_for
            .as_ref()
            .map(|s| s.span())
            .unwrap_or(span.clone());
        return cx.err(
            span,
            format!("open_for is at most {}", fmt_duration(MAX_OPEN_FOR)),
        );
    }
    let tcp_flags = match &d.tcp_flags {
        None => None,
        Some(f) => Some(
            f.get_ref()
                .parse::<FlagFilter>()
                .or_else(|e| cx.err(f.span(), format!("tcp_flags: {e}")))?,
        ),
    };
    let commands = commands(cx, d, &span, name, &open, open_for)?;
    let connections = connections(cx, d, &span, &open, kind_name)?;
    let grant_prefix = grant_prefix(cx, d, &open, connections, kind_name)?;
    let interfaces = match &d.interfaces {
        Some(i) => interface_names(cx, i, "interfaces")?,
        None => Vec::new(),
    };
    let protect_elsewhere = match &d.protect_elsewhere {
        Some(p) if !*p.get_ref() && interfaces.is_empty() && daemon.interface.is_none() => {
            return cx.err(
                p.span(),
                "protect_elsewhere = false leaves the door's services alone on the interfaces its knocks are not seen on, but it listens on every interface: name them with `interfaces` (or [daemon] interface), or remove protect_elsewhere",
            );
        }
        Some(p) => *p.get_ref(),
        None => true,
    };
    let forward = forward(cx, d, &open, connections)?;
    let nat_source = nat_source(cx, d, forward.as_ref())?;
    if let (Some(p), Some(_)) = (&d.protect_elsewhere, &forward) {
        if !*p.get_ref() {
            return cx.err(
                p.span(),
                "protect_elsewhere = false is for local services: a forwarded door's services are protected in the prerouting chain on every interface; remove protect_elsewhere",
            );
        }
    }
    // a single-packet door's grants last open_for, or up to max_open_for when the client asks
    let open_for = match &parts.engine {
        Kind::Spa(spa) => Duration::from_secs(spa.access_timeout.max(spa.max_timeout)),
        _ => open_for,
    };
    let spec = DoorSpec {
        name: name.clone(),
        sequence: parts.sequence,
        window,
        tcp_flags,
        open,
        open_for,
        kind: parts.engine,
        target,
    };
    if let Err(e) = spec.validate() {
        let at = d
            .sequence
            .as_ref()
            .map(|s| s.span())
            .or(d.one_time_sequences.as_ref().map(|s| s.span()));
        return cx.err(at.unwrap_or(span.clone()), format!("door {name:?}: {e}"));
    }
    Ok(Door {
        spec,
        protect: d.protect.unwrap_or(true),
        forward,
        nat_source,
        nat_networks: nat_networks(cx, d, kind_name, connections, &grant_prefix)?,
        repeat_start_command: d.repeat_start_command.unwrap_or(false),
        start_command: commands.start,
        stop_command: commands.stop,
        start_command_6: commands.start_6,
        stop_command_6: commands.stop_6,
        stop_after: commands.stop_after,
        stop_after_client_timeout: false,
        connections,
        grant_prefix,
        interfaces,
        protect_elsewhere,
        actions: actions(cx, d)?,
        kind: parts.kind,
        line: cx.line_of(span.start),
    })
}

/// What a door's kind decides before its other keys are read: a sequence door's knocks, a
/// one-time door's file, a rotating or encoded door's key and span. `None` for the single-packet
/// kinds (fwknop, spa, syn), which are built once their keys are checked.
fn knocked_kind(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
    kind_name: &str,
) -> Result<Option<KindParts>, ConfigError> {
    let no_sequence = |message: String| match &d.sequence {
        Some(seq) => cx.err(seq.span(), message),
        None => Ok(()),
    };
    match kind_name {
        "sequence" => sequence_door(cx, d, span, name).map(Some),
        "one-time" => one_time_door(cx, d, span, name).map(Some),
        "fwknop" => {
            no_sequence("a fwknop door reads SPA packets: remove `sequence`".into())?;
            Ok(None)
        }
        "spa" | "syn" | "knockknock" => {
            no_sequence(format!(
                "a {kind_name} door reads one packet per knock: remove `sequence`"
            ))?;
            Ok(None)
        }
        "encoded" => {
            no_sequence(
                "an encoded door reads requests from knocks in its span: remove `sequence`".into(),
            )?;
            encoded_door(cx, d, span, name).map(Some)
        }
        "rotating" => {
            no_sequence(
                "a rotating door derives its sequences from `key_file`: remove `sequence`".into(),
            )?;
            rotating_door(cx, d, span, name).map(Some)
        }
        other => {
            let at = d.kind.as_ref().map(|k| k.span()).unwrap_or(span.clone());
            cx.err(
                at,
                format!("unknown door kind {other:?}: use \"sequence\", \"one-time\", \"rotating\", \"encoded\", \"fwknop\", \"spa\", \"syn\" or \"knockknock\""),
            )
        }
    }
}

/// A sequence door: the same knocks every time.
fn sequence_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
) -> Result<KindParts, ConfigError> {
    let Some(seq) = &d.sequence else {
        return cx.err(span.clone(), format!("door {name:?} has no `sequence`: list its knocks, e.g. sequence = [\"7000\", \"9000:udp\", \"8000\"]"));
    };
    if let Some(o) = &d.one_time_sequences {
        return cx.err(o.span(), "one_time_sequences needs kind = \"one-time\"");
    }
    Ok(KindParts {
        sequence: cx.services(seq.get_ref(), "sequence")?,
        ..KindParts::new(DoorKind::Sequence, Kind::Sequence)
    })
}

/// A one-time door: its file of sequences, read now.
fn one_time_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
) -> Result<KindParts, ConfigError> {
    if let Some(seq) = &d.sequence {
        return cx.err(
            seq.span(),
            "a one-time door takes its sequences from `one_time_sequences`, not `sequence`",
        );
    }
    let Some(o) = &d.one_time_sequences else {
        return cx.err(span.clone(), format!("door {name:?} is one-time: name its file, e.g. one_time_sequences = \"/etc/knocker/{name}.seq\""));
    };
    match OneTimeFile::load(Path::new(o.get_ref())) {
        Ok(file) => {
            let engine = Kind::OneTime {
                lines: file.sequences(),
                used: None,
            };
            Ok(KindParts::new(DoorKind::OneTime { file }, engine))
        }
        Err(e) => cx.err(o.span(), e.to_string()),
    }
}

/// Refuses a key that belongs to another kind of door than `kind_name`.
fn stray_keys(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    kind_name: &str,
) -> Result<(), ConfigError> {
    if kind_name != "knockknock" {
        if let Some(at) = d
            .profile
            .as_ref()
            .map(|s| s.span())
            .or(d.error_window.as_ref().map(|s| s.span()))
        {
            return cx.err(
                at,
                "profile and error_window belong to kind = \"knockknock\"",
            );
        }
    }
    let single_packet = matches!(kind_name, "fwknop" | "spa" | "syn");
    if !single_packet {
        let stray = d
            .port
            .as_ref()
            .map(|s| s.span())
            .or(d.sources.as_ref().map(|s| s.span()))
            .or(d.max_open_for.as_ref().map(|s| s.span()));
        if let Some(at) = stray {
            return cx.err(at, "port, sources and max_open_for belong to single-packet doors (kind = \"fwknop\", \"spa\" or \"syn\")");
        }
    }
    if !matches!(kind_name, "spa" | "syn") {
        if let Some(r) = &d.rate_limit {
            return cx.err(r.span(), "rate_limit belongs to kind = \"spa\" or \"syn\"");
        }
    }
    if kind_name != "fwknop" {
        let stray = d
            .expire
            .as_ref()
            .map(|s| s.span())
            .or(d.destinations.as_ref().map(|s| s.span()))
            .or(d.restrict.first().map(|s| s.span()))
            .or(d.hmac_key_file.as_ref().map(|s| s.span()))
            .or(d.hmac_digest.as_ref().map(|s| s.span()));
        if let Some(at) = stray {
            return cx.err(at, "destinations, restrict, hmac_key_file, hmac_digest and expire belong to kind = \"fwknop\"");
        }
        if d.require_username.is_some() || d.require_source_address.is_some() {
            return cx.err(
                span.clone(),
                "require_username and require_source_address belong to kind = \"fwknop\"",
            );
        }
    }
    if !matches!(kind_name, "encoded" | "fwknop" | "spa" | "syn") {
        let stray = [&d.base, &d.bits]
            .into_iter()
            .flatten()
            .next()
            .map(|s| s.span());
        if let Some(at) = stray.or(d.max_age.as_ref().map(|m| m.span())) {
            return cx.err(at, "base, bits and max_age belong to kind = \"encoded\" (max_age also to single-packet doors)");
        }
        if d.allow_other_address.is_some() {
            return cx.err(
                span.clone(),
                "allow_other_address belongs to kind = \"encoded\", \"fwknop\" or \"spa\"",
            );
        }
    }
    if kind_name != "rotating" && kind_name != "encoded" && kind_name != "fwknop" {
        let stray = [&d.key_file, &d.mode, &d.ports, &d.proto]
            .into_iter()
            .flatten()
            .next()
            .map(|s| s.span());
        let stray_n = [&d.skew, &d.lookahead, &d.knocks]
            .into_iter()
            .flatten()
            .next()
            .map(|s| s.span());
        if let Some(at) = stray.or(stray_n).or(d.period.as_ref().map(|p| p.span())) {
            return cx.err(at, "key_file, mode, period, skew, lookahead, knocks, ports and proto belong to kind = \"rotating\" (key_file and proto also to \"encoded\")");
        }
    }
    Ok(())
}

/// A door's commands and when its stop command runs.
struct Commands {
    start: Option<Command>,
    stop: Option<Command>,
    start_6: Option<Command>,
    stop_6: Option<Command>,
    stop_after: Duration,
}

/// The start and stop commands (a door must open or run something) and stop_after, which is
/// `open_for` unless given.
fn commands(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
    open: &[Service],
    open_for: Duration,
) -> Result<Commands, ConfigError> {
    let shell = d.shell.unwrap_or(false);
    let start = command(cx, &d.start_command, "start_command", shell)?;
    let stop = command(cx, &d.stop_command, "stop_command", shell)?;
    let start_6 = command(cx, &d.start_command_6, "start_command_6", shell)?;
    let stop_6 = command(cx, &d.stop_command_6, "stop_command_6", shell)?;
    if open.is_empty() && start.is_none() && start_6.is_none() && d.command.is_empty() {
        return cx.err(span.clone(), format!("door {name:?} opens nothing and runs nothing: give it `open` services, a start_command or a [[door.{name}.command]]"));
    }
    let stop_after = match &d.stop_after {
        Some(w) if stop.is_none() && stop_6.is_none() => {
            return cx.err(
                w.span(),
                "stop_after without stop_command: add the command or remove stop_after",
            )
        }
        Some(w) => match cx.duration(w, "stop_after")? {
            d if d > MAX_STOP_AFTER => {
                return cx.err(
                    w.span(),
                    format!("stop_after is at most {} seconds", MAX_STOP_AFTER.as_secs()),
                )
            }
            d => d,
        },
        None => open_for,
    };
    Ok(Commands {
        start,
        stop,
        start_6,
        stop_6,
        stop_after,
    })
}

/// `grant_prefix = N` (IPv4) and `grant_prefix6 = N` (IPv6): a grant reaches the whole prefix
/// around the address that knocked, at least a [`GrantPrefix::MIN4`] or [`GrantPrefix::MIN6`].
/// A full-length prefix (32, 128) is the address alone, as without the key.
fn grant_prefix(
    cx: &Ctx<'_>,
    d: &RawDoor,
    open: &[Service],
    connections: Option<std::num::NonZeroU8>,
    kind_name: &str,
) -> Result<GrantPrefix, ConfigError> {
    let mut out = GrantPrefix::default();
    for (key, raw, min, full, slot) in [
        (
            "grant_prefix",
            &d.grant_prefix,
            GrantPrefix::MIN4,
            32u8,
            &mut out.v4,
        ),
        (
            "grant_prefix6",
            &d.grant_prefix6,
            GrantPrefix::MIN6,
            128u8,
            &mut out.v6,
        ),
    ] {
        let Some(raw) = raw else { continue };
        let family = if full == 32 { "IPv4" } else { "IPv6" };
        let Some(n) = u8::try_from(*raw.get_ref())
            .ok()
            .filter(|n| (min..=full).contains(n))
        else {
            return cx.err(
                raw.span(),
                format!("{key} = {} is out of range: an {family} grant may reach a /{min} to a /{full} around the address that knocked (a shorter prefix lets a whole provider in; remove {key} for the address alone)", raw.get_ref()),
            );
        };
        if let Some(c) = connections {
            let default = if kind_name == "knockknock" {
                " (a knockknock door counts one by default)"
            } else {
                ""
            };
            return cx.err(
                raw.span(),
                format!("{key} cannot be combined with connections = {c}{default}: a grant that counts connections is for one address; remove one of the two"),
            );
        }
        if open.is_empty() && kind_name != "fwknop" {
            return cx.err(
                raw.span(),
                format!("{key} widens what a grant opens, but this door opens nothing in the firewall: give it `open` services or remove {key}"),
            );
        }
        *slot = (n < full).then_some(n);
    }
    Ok(out)
}

/// `nat_networks = ["10.0.0.0/24", ...]`: the networks of the inner hosts a `kind = "fwknop"`
/// door's clients may name themselves (fwknop's `-N`), IPv4 only (fwknop's message carries
/// nothing else); not beside `nat` (whose own host wins), `connections` or a widened grant.
fn nat_networks(
    cx: &Ctx<'_>,
    d: &RawDoor,
    kind_name: &str,
    connections: Option<std::num::NonZeroU8>,
    grant_prefix: &crate::config::GrantPrefix,
) -> Result<Vec<crate::config::Net>, ConfigError> {
    let Some(list) = &d.nat_networks else {
        return Ok(Vec::new());
    };
    if kind_name != "fwknop" {
        return cx.err(
            list.span(),
            "nat_networks belongs to kind = \"fwknop\" (a client's fwknop -N)",
        );
    }
    if d.nat.is_some() {
        return cx.err(list.span(), "nat_networks is for a door without nat: with nat, the door's own inner host is where every client goes; remove one of them");
    }
    if connections.is_some() || *grant_prefix != crate::config::GrantPrefix::default() {
        return cx.err(list.span(), "nat_networks cannot be combined with connections or grant_prefix: a client's inner host is sent on for its own address, for the whole grant");
    }
    let mut out = Vec::new();
    for item in list.get_ref() {
        let net: crate::config::Net = item
            .get_ref()
            .trim()
            .parse()
            .or_else(|e| cx.err(item.span(), format!("nat_networks: {e}")))?;
        if !net.addr.is_ipv4() {
            return cx.err(
                item.span(),
                "nat_networks: fwknop's NAT request names only IPv4 hosts: give an IPv4 network",
            );
        }
        out.push(net);
    }
    if out.is_empty() {
        return cx.err(
            list.span(),
            "nat_networks is empty: list the networks clients may be sent on to, or remove it",
        );
    }
    Ok(out)
}

/// `nat_source = "masquerade"` or `"ADDRESS"`: the source a `nat` door's connections get on the
/// way to the inner host (fwknop's FORCE_MASQUERADE, FORCE_SNAT), an address of the target's
/// family.
fn nat_source(
    cx: &Ctx<'_>,
    d: &RawDoor,
    forward: Option<&Forward>,
) -> Result<Option<NatSource>, ConfigError> {
    let Some(raw) = &d.nat_source else {
        return Ok(None);
    };
    let Some(Forward::Nat(to)) = forward else {
        return cx.err(
            raw.span(),
            "nat_source rewrites the source of the connections a `nat` door sends on, but this door has no `nat`: add nat = \"ADDRESS:PORT\" or remove nat_source",
        );
    };
    let text = raw.get_ref();
    if text == "masquerade" {
        return Ok(Some(NatSource::Masquerade));
    }
    match text.parse::<IpAddr>() {
        Ok(a) if a.is_ipv4() == to.is_ipv4() && !a.is_unspecified() && !a.is_multicast() => {
            Ok(Some(NatSource::Address(a)))
        }
        _ => cx.err(
            raw.span(),
            format!("nat_source {text:?}: write \"masquerade\" (the address of the server's interface towards {}) or one of the server's addresses of that family", to.ip()),
        ),
    }
}

/// `connections = N`: how many new connections a grant admits, 1 to [`MAX_CONNECTIONS`].
fn connections(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    open: &[Service],
    kind_name: &str,
) -> Result<Option<std::num::NonZeroU8>, ConfigError> {
    let Some(c) = &d.connections else {
        // knockknock's grant admits one new connection ("the port closes behind you")
        return Ok(std::num::NonZeroU8::new(u8::from(
            kind_name == "knockknock",
        )));
    };
    let n = u8::try_from(*c.get_ref())
        .ok()
        .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
        .and_then(std::num::NonZeroU8::new);
    let Some(n) = n else {
        return cx.err(
            c.span(),
            format!("connections = {} is out of range: a grant admits 1 to {MAX_CONNECTIONS} new connections before the kernel closes it (remove `connections` for no limit)", c.get_ref()),
        );
    };
    // an access.conf stanza without OPEN_PORTS opens what the client asks for
    if open.is_empty() && kind_name != "fwknop" {
        return cx.err(
            span.clone(),
            "connections counts the connections a grant admits, but this door opens nothing in the firewall: give it `open` services or remove `connections`",
        );
    }
    Ok(Some(n))
}

/// `forward = true`: the door's `open` services are published on this host and forwarded (a
/// container's port, the admin's DNAT); `forward = [hosts]`: they are those of hosts reached
/// through this one without DNAT; `nat = "ADDRESS:PORT"`: knockerd DNATs them to an inner host
/// for granted sources. Each way they are protected and opened in the prerouting chain.
fn forward(
    cx: &Ctx<'_>,
    d: &RawDoor,
    open: &[Service],
    connections: Option<std::num::NonZeroU8>,
) -> Result<Option<Forward>, ConfigError> {
    let nat = match &d.nat {
        None => None,
        Some(n) => {
            let to = n.get_ref().parse::<std::net::SocketAddr>().or_else(|_| {
                cx.err(
                    n.span(),
                    format!("nat {:?} is not an inner address and port, such as \"10.0.0.5:22\" or \"[fd00::5]:22\"", n.get_ref()),
                )
            })?;
            let ip = to.ip();
            if to.port() == 0 || ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
                return cx.err(
                    n.span(),
                    format!(
                        "nat {:?} must name an inner host's address and a port other than 0",
                        n.get_ref()
                    ),
                );
            }
            Some((n.span(), Forward::Nat(to)))
        }
    };
    let forward = match (d.forward.as_ref().map(|f| (f.span(), f.get_ref())), nat) {
        (Some((at, RawForward::Flag(false))), Some(_)) => {
            return cx.err(
                at,
                "nat forwards the door's services to an inner host, so they cannot be local: remove `forward = false`",
            );
        }
        (Some((at, RawForward::Hosts(_))), Some(_)) => {
            return cx.err(
                at,
                "nat sends the door's services on to one inner host, and forward = [hosts] protects hosts reached without DNAT: a door does one or the other",
            );
        }
        (_, Some(n)) => n,
        (Some((at, RawForward::Flag(true))), None) => (at, Forward::Published),
        (Some((at, RawForward::Hosts(hosts))), None) => {
            let nets = hosts
                .iter()
                .map(|h| h.parse::<Net>().map_err(|_| h))
                .collect::<Result<Vec<Net>, _>>();
            match nets {
                Ok(nets) if !nets.is_empty() => (at, Forward::Routed(Net::minimal(&nets))),
                Ok(_) => {
                    return cx.err(
                        at,
                        "forward = [] names no host: list the inner hosts or networks reached through this host (e.g. [\"10.0.0.5\", \"10.0.1.0/24\"]), or write forward = true for ports published on this host",
                    )
                }
                Err(h) => {
                    return cx.err(
                        at,
                        format!("forward: {h:?} is not an inner host's address or network (e.g. \"10.0.0.5\", \"10.0.1.0/24\", \"fd00::/64\"; not a /0)"),
                    )
                }
            }
        }
        _ => return Ok(None),
    };
    let (span, forward) = forward;
    if open.is_empty() {
        return cx.err(
            span,
            "forward and nat protect and open the door's `open` services, but this door lists none: give it `open` services (e.g. the port Docker publishes, \"tcp/8080\")",
        );
    }
    if connections.is_some() {
        // a packet to a published port that is not DNAT'd goes on to the input chain, whose
        // slot rules would spend a second slot on it
        return cx.err(
            span,
            "a forwarded door's grants cannot count connections yet: remove `connections` (a knockknock door counts one by default, so it cannot forward)",
        );
    }
    Ok(Some(forward))
}

/// `[[door.NAME.command]]`: each a command (`run`, as the door's start_command is written) and
/// when it runs, `after` a delay from the grant (none: at once) or `at = "end"` of the grant.
fn actions(cx: &Ctx<'_>, d: &RawDoor) -> Result<Vec<Action>, ConfigError> {
    if let Some(extra) = d.command.get(MAX_ACTIONS) {
        return cx.err(
            extra.span(),
            format!("a door lists at most {MAX_ACTIONS} [[command]] tables"),
        );
    }
    let shell = d.shell.unwrap_or(false);
    let mut out = Vec::with_capacity(d.command.len());
    for a in &d.command {
        let raw = a.get_ref();
        let Some(command) = command(cx, &Some(raw.run.clone()), "run", shell)? else {
            return cx.err(a.span(), "a [[command]] needs `run`");
        };
        let when = match (&raw.after, &raw.at) {
            (Some(_), Some(at)) => {
                return cx.err(
                    at.span(),
                    "a [[command]] runs `after` a delay or `at = \"end\"`, not both: remove one",
                )
            }
            (None, Some(at)) if at.get_ref() == "end" => ActionTime::End,
            (None, Some(at)) => {
                return cx.err(
                    at.span(),
                    format!("at = {:?}: the only time is \"end\" (when the grant ends); for a delay write after = \"5m\"", at.get_ref()),
                )
            }
            (Some(w), None) => match cx.duration(w, "after")? {
                t if t > MAX_STOP_AFTER => {
                    return cx.err(
                        w.span(),
                        format!("after is at most {} seconds", MAX_STOP_AFTER.as_secs()),
                    )
                }
                t => ActionTime::After(t),
            },
            (None, None) => ActionTime::After(Duration::ZERO),
        };
        out.push(Action { command, when });
    }
    Ok(out)
}

/// One command: a list of arguments, or one string for `/bin/sh -c` when `shell = true`.
fn command(
    cx: &Ctx<'_>,
    c: &Option<Spanned<RawCommand>>,
    key: &str,
    shell: bool,
) -> Result<Option<Command>, ConfigError> {
    let Some(c) = c else { return Ok(None) };
    match (c.get_ref(), shell) {
        (RawCommand::Argv(v), false) if v.is_empty() || v[0].is_empty() => {
            cx.err(c.span(), format!("{key} is empty: name the program to run first"))
        }
        (RawCommand::Argv(v), false) => Ok(Some(Command::Argv(v.clone()))),
        (RawCommand::Line(l), true) if !l.trim().is_empty() => Ok(Some(Command::Shell(l.clone()))),
        (RawCommand::Line(_), true) => cx.err(c.span(), format!("{key} is empty")),
        (RawCommand::Line(l), false) => cx.err(
            c.span(),
            format!(
                "{key} is a string, which would need a shell: write it as a list of arguments, e.g. {:?}, or set `shell = true` in this door to run it with /bin/sh -c",
                l.split_whitespace().collect::<Vec<_>>()
            ),
        ),
        (RawCommand::Argv(_), true) => cx.err(
            c.span(),
            format!("{key} is a list but `shell = true`: with a shell, write the command as one string"),
        ),
    }
}

/// Builds a single-packet-authorization door in fwknop's format (what `import-fwknop` writes):
/// the two key files, the sources, and fwknopd's limits.
fn fwknop_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
    open: &[Service],
) -> Result<KindParts, ConfigError> {
    use knocker_wire::fwknop::{key_from_base64, Digest, FwknopKeys};
    for (v, key) in [(&d.mode, "mode"), (&d.ports, "ports"), (&d.proto, "proto")] {
        if let Some(v) = v {
            return cx.err(v.span(), format!("{key} is not a key of fwknop doors"));
        }
    }
    if let Some(v) = [&d.base, &d.bits, &d.skew, &d.lookahead, &d.knocks]
        .into_iter()
        .flatten()
        .next()
    {
        return cx.err(v.span(), "not a key of fwknop doors");
    }
    let key = |file: &Option<Spanned<String>>,
               what: &str|
     -> Result<zeroize::Zeroizing<Vec<u8>>, ConfigError> {
        let Some(f) = file else {
            return cx.err(span.clone(), format!("door {name:?} is fwknop: give `{what}`, a file (mode 0600) holding the key as one line of base64"));
        };
        knocker_wire::keyfile::load_key(Path::new(f.get_ref()), |text| {
            key_from_base64(text.trim()).map_err(|_| knocker_wire::KeyError::NotBase64)
        })
        .or_else(|e| cx.err(f.span(), e.to_string()))
    };
    let enc = key(&d.key_file, "key_file")?;
    let hmac = key(&d.hmac_key_file, "hmac_key_file")?;
    let digest = match &d.hmac_digest {
        None => Digest::Sha256,
        Some(h) => h.get_ref().parse::<Digest>().or_else(|_| {
            cx.err(
                h.span(),
                "hmac_digest: use md5, sha1, sha256, sha384 or sha512",
            )
        })?,
    };
    let keys = FwknopKeys::new(enc, hmac, digest).or_else(|e| {
        cx.err(
            d.key_file
                .as_ref()
                .map(|k| k.span())
                .unwrap_or(span.clone()),
            e.to_string(),
        )
    })?;
    if open.is_empty() {
        return cx.err(
            span.clone(),
            format!("door {name:?} is fwknop: list in `open` the services a packet may ask for"),
        );
    }
    let nets = |list: &Option<Spanned<Vec<Spanned<String>>>>,
                key: &str|
     -> Result<Vec<(IpAddr, u8)>, ConfigError> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in list.get_ref() {
            let text = item.get_ref().trim();
            if text.eq_ignore_ascii_case("any") {
                return Ok(Vec::new());
            }
            let (addr, len) = match text.split_once('/') {
                Some((a, l)) => (a, l.parse::<u8>().ok()),
                None => (text, None),
            };
            let Ok(ip) = addr.parse::<IpAddr>() else {
                return cx.err(item.span(), format!("{key}: {text:?} is not an address or network (e.g. 10.0.0.0/8, fd00::/8, any)"));
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match len.or(if text.contains('/') { None } else { Some(max) }) {
                Some(l) if l <= max => out.push((ip, l)),
                _ => return cx.err(item.span(), format!("{key}: bad prefix length in {text:?}")),
            }
        }
        Ok(out)
    };
    let secs = |v: &Option<Spanned<RawDuration>>, key: &str, default: u64| cx.secs(v, key, default);
    let port = match &d.port {
        None => knocker_wire::fwknop::DEFAULT_PORT,
        Some(p) => u16::try_from(*p.get_ref())
            .ok()
            .filter(|p| *p > 0)
            .map_or_else(|| cx.err(p.span(), "port must be 1 to 65535"), Ok)?,
    };
    let (precheck, decode) = crate::config::fwknop::doors::decoder(keys, {
        use crate::config::fwknop::doors::{ClientNat, NAT_NATIVE};
        let networks = nat_networks(cx, d, "fwknop", None, &Default::default())?;
        match (&d.nat, networks.is_empty()) {
            (Some(_), _) => ClientNat::Forced,
            (None, false) => ClientNat::Networks(networks),
            (None, true) => ClientNat::Refused(NAT_NATIVE),
        }
    });
    let spa = knocker_engine::Spa {
        decode,
        precheck,
        rate_limit: None,
        proto: knocker_engine::Proto::Udp,
        port,
        allowed: nets(&d.sources, "sources")?,
        max_age: Some(secs(&d.max_age, "max_age", 120)?),
        access_timeout: secs(&d.open_for, "open_for", 30)?,
        max_timeout: secs(&d.max_open_for, "max_open_for", 300)?,
        restrict: cx.services(&d.restrict, "restrict")?,
        require_username: d.require_username.clone(),
        expire: d
            .expire
            .as_ref()
            .map(|e| {
                u64::try_from(*e.get_ref())
                    .map_or_else(|_| cx.err(e.span(), "expire is a Unix time"), Ok)
            })
            .transpose()?,
        allow_other_address: d.allow_other_address.unwrap_or(false),
        require_source_address: d.require_source_address.unwrap_or(false),
        destinations: nets(&d.destinations, "destinations")?,
        open_any: false,
    };
    Ok(KindParts::new(DoorKind::Fwknop { port }, Kind::Spa(spa)))
}

/// A knockknock door: a knockknock server profile directory, read where it is, whose knocks
/// may open only the door's `open` services.
fn knockknock_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
    open: &[Service],
) -> Result<KindParts, ConfigError> {
    let Some(dir) = &d.profile else {
        return cx.err(span.clone(), format!("door {name:?} is knockknock: name its profile directory, e.g. profile = \"/etc/knockknock.d/profiles/{name}\""));
    };
    if open.is_empty() || open.iter().any(|s| s.proto != Proto::Tcp) {
        return cx.err(span.clone(), format!("door {name:?}: list in `open` the TCP ports a knock may open, e.g. open = [\"tcp/22\"] (knockknock opens any port a knock asks for; knockerd only these)"));
    }
    let window = match &d.error_window {
        None => knocker_wire::knockknock::DEFAULT_WINDOW,
        Some(w) => match u32::try_from(*w.get_ref()) {
            Ok(n @ 1..=super::knockknock::MAX_WINDOW) => n,
            _ => {
                return cx.err(
                    w.span(),
                    format!(
                        "error_window must be 1 to {} (knockknock's default is 20)",
                        super::knockknock::MAX_WINDOW
                    ),
                )
            }
        },
    };
    let delay = cx.secs(
        &d.open_for,
        "open_for",
        knocker_wire::knockknock::DEFAULT_DELAY,
    )?;
    let profile = super::knockknock::load_profile(Path::new(dir.get_ref()), &mut Vec::new())
        .or_else(|e| cx.err(dir.span(), e.to_string()))?;
    let spa = super::knockknock::spa(&profile, window, delay, false);
    let kind = DoorKind::Knockknock {
        profile: profile.dir.clone(),
        port: profile.knock_port,
    };
    Ok(KindParts::new(kind, Kind::Spa(spa)))
}

fn server_key_path(daemon: &RawDaemon) -> PathBuf {
    PathBuf::from(
        daemon
            .server_key
            .as_ref()
            .map_or(DEFAULT_SERVER_KEY, |k| k.get_ref().as_str()),
    )
}

fn clients_path(daemon: &RawDaemon) -> PathBuf {
    PathBuf::from(
        daemon
            .clients
            .as_ref()
            .map_or(DEFAULT_CLIENTS, |k| k.get_ref().as_str()),
    )
}

/// What knocker's own doors are built from: the server's key and the enrolled clients.
struct NativeKeys {
    server: std::sync::Arc<knocker_wire::identity::PrivateKey>,
    clients: clients::Clients,
}

/// Reads the server key (0600) and the clients file named in `[daemon]` (or their defaults).
fn native_keys(
    cx: &Ctx<'_>,
    daemon: &RawDaemon,
    daemon_span: std::ops::Range<usize>,
) -> Result<NativeKeys, ConfigError> {
    let key_path = server_key_path(daemon);
    let key_span = daemon
        .server_key
        .as_ref()
        .map(|k| k.span())
        .unwrap_or(daemon_span.clone());
    let server = knocker_wire::keyfile::load_key(&key_path, |text| {
        knocker_wire::identity::PrivateKey::from_base64(text)
    })
    .or_else(|e| {
        cx.err(
            key_span,
            format!("server_key: {e} (spa and syn doors need the server's key: make it with `knockerd keygen`)"),
        )
    })?;
    let clients_path = clients_path(daemon);
    // no clients file yet: nobody is enrolled (`knockerd enroll` creates it)
    let clients = if clients_path.exists() {
        clients::load(&clients_path)?
    } else {
        clients::Clients {
            path: clients_path.clone(),
            clients: Vec::new(),
        }
    };
    Ok(NativeKeys {
        server: std::sync::Arc::new(server),
        clients,
    })
}

/// Builds knocker's own single-packet door: an SPA datagram door (UDP) or a stealth SYN door
/// (TCP), both for the clients in the clients file.
fn native_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
    open: &[Service],
    kind_name: &str,
    keys: &NativeKeys,
) -> Result<KindParts, ConfigError> {
    let syn = kind_name == "syn";
    if let Some(s) = &d.sources {
        return cx.err(
            s.span(),
            format!("sources is not supported on {kind_name} doors: every client is known by its key; limit clients in the clients file"),
        );
    }
    let Some(port) = &d.port else {
        let example = if syn { "443" } else { "62201" };
        return cx.err(
            span.clone(),
            format!("door {name:?} is {kind_name}: give the port its packets go to, e.g. port = {example} ({})", if syn { "TCP; no service may listen there" } else { "UDP" }),
        );
    };
    let port = u16::try_from(*port.get_ref())
        .ok()
        .filter(|p| *p > 0)
        .map_or_else(|| cx.err(port.span(), "port must be 1 to 65535"), Ok)?;
    if open.is_empty() {
        return cx.err(
            span.clone(),
            format!("door {name:?}: list in `open` the services a client may ask for"),
        );
    }
    if syn && open.len() > 16 {
        return cx.err(
            span.clone(),
            "a syn door opens at most 16 services (a SYN carries 4 bits to choose one)",
        );
    }
    for (v, key) in [
        (&d.key_file, "key_file"),
        (&d.mode, "mode"),
        (&d.ports, "ports"),
        (&d.proto, "proto"),
    ] {
        if let Some(v) = v {
            return cx.err(
                v.span(),
                format!("{key} is not a key of {kind_name} doors (keys are in server_key and the clients file)"),
            );
        }
    }
    if let Some(v) = [&d.base, &d.bits, &d.skew, &d.lookahead, &d.knocks]
        .into_iter()
        .flatten()
        .next()
    {
        return cx.err(v.span(), format!("not a key of {kind_name} doors"));
    }
    if syn {
        if let Some(m) = &d.max_age {
            return cx.err(m.span(), format!("a syn door's window is fixed ({} s time steps, one either side): remove max_age", knocker_wire::syn::STEP_SECS));
        }
        if d.allow_other_address.is_some() {
            return cx.err(
                span.clone(),
                "a SYN opens for its own source only: remove allow_other_address",
            );
        }
    }
    let secs = |v: &Option<Spanned<RawDuration>>, key: &str, default: u64| cx.secs(v, key, default);
    let open_for = secs(&d.open_for, "open_for", DEFAULT_OPEN_FOR.as_secs())?;
    let max_open_for = secs(&d.max_open_for, "max_open_for", open_for)?;
    // expensive checks per source and second (a burst of five seconds' worth); 0 turns it off
    let rate_limit =
        match &d.rate_limit {
            None => Some(knocker_engine::RateLimit::default()),
            Some(r) => match u32::try_from(*r.get_ref()) {
                Ok(0) => None,
                Ok(n @ 1..=100_000) => Some(knocker_engine::RateLimit {
                    burst: n.saturating_mul(5),
                    per_sec: n,
                }),
                _ => return cx.err(
                    r.span(),
                    "rate_limit is checks per second per source: 1 to 100000, or 0 for no limit",
                ),
            },
        };
    let clients = &keys.clients.clients;
    let (precheck, decode) = if syn {
        doors::syn_decoder(&keys.server, name, open, clients)
            .or_else(|e| cx.err(span.clone(), e.to_string()))?
    } else {
        doors::spa_decoder(&keys.server, name, open, clients)
            .or_else(|e| cx.err(span.clone(), e.to_string()))?
    };
    let max_age = if syn {
        // a SYN made for step s verifies until step s+1 ends: remember it that long
        3 * knocker_wire::syn::STEP_SECS
    } else {
        secs(&d.max_age, "max_age", 120)?
    };
    let spa = knocker_engine::Spa {
        decode,
        precheck: Some(precheck),
        rate_limit,
        proto: if syn { Proto::Tcp } else { Proto::Udp },
        port,
        allowed: Vec::new(),
        max_age: Some(max_age),
        access_timeout: open_for,
        max_timeout: max_open_for,
        restrict: Vec::new(),
        require_username: None,
        expire: None,
        allow_other_address: d.allow_other_address.unwrap_or(false),
        require_source_address: false,
        destinations: Vec::new(),
        open_any: false,
    };
    let kind = if syn {
        DoorKind::Syn { port }
    } else {
        DoorKind::Spa { port }
    };
    Ok(KindParts::new(kind, Kind::Spa(spa)))
}

/// Builds an encoded door: its key file, the span of 2^bits ports from base, the age window.
fn encoded_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
) -> Result<KindParts, ConfigError> {
    use knocker_wire::encoded::EncodedSpec;
    for (v, key) in [(&d.mode, "mode"), (&d.ports, "ports")] {
        if let Some(v) = v {
            return cx.err(
                v.span(),
                format!("{key} is for rotating doors; an encoded door has `base` and `bits`"),
            );
        }
    }
    let Some(key_file) = &d.key_file else {
        return cx.err(span.clone(), format!("door {name:?} is encoded: name its key, e.g. key_file = \"/etc/knocker/{name}.key\" (make one with `knocker keygen --out FILE`)"));
    };
    let key = knocker_wire::keyfile::load_key(
        Path::new(key_file.get_ref()),
        knocker_wire::EncodedKey::from_base64,
    )
    .or_else(|e| cx.err(key_file.span(), e.to_string()))?;
    let (Some(base), Some(bits)) = (&d.base, &d.bits) else {
        return cx.err(span.clone(), format!("door {name:?} is encoded: give its span, e.g. base = 50000 and bits = 12 (4096 ports)"));
    };
    let proto = match &d.proto {
        None => Proto::Tcp,
        Some(p) => p
            .get_ref()
            .parse::<Proto>()
            .or_else(|e| cx.err(p.span(), format!("proto: {e}")))?,
    };
    let base_v = u16::try_from(*base.get_ref())
        .or_else(|_| cx.err(base.span(), "base must be a port, 1 to 65535"))?;
    let bits_v =
        u8::try_from(*bits.get_ref()).or_else(|_| cx.err(bits.span(), "bits must be 11 to 15"))?;
    let spec =
        EncodedSpec::new(base_v, bits_v, proto).or_else(|e| cx.err(bits.span(), e.to_string()))?;
    let max_age = match &d.max_age {
        None => 120,
        Some(m) => match cx.duration(m, "max_age")?.as_secs() {
            n @ 5..=3600 => n,
            _ => return cx.err(m.span(), "max_age must be 5 s to 1 h"),
        },
    };
    let range = spec.span();
    let r = DoorKind::Encoded {
        span: PortSpan {
            proto,
            first: *range.start(),
            last: *range.end(),
        },
    };
    let kind = Kind::Encoded(knocker_engine::Encoded {
        spec,
        key: std::sync::Arc::new(key),
        max_age,
        allow_other_address: d.allow_other_address.unwrap_or(false),
    });
    Ok(KindParts::new(r, kind))
}

/// Builds a rotating door from its keys: the key file (owner-only, read into wiped memory), the
/// port span and the clock. The derivation is a closure over the key, handed to the engine.
fn rotating_door(
    cx: &Ctx<'_>,
    d: &RawDoor,
    span: &std::ops::Range<usize>,
    name: &str,
) -> Result<KindParts, ConfigError> {
    use knocker_wire::rotate::{self, RotateSpec};
    let Some(key_file) = &d.key_file else {
        return cx.err(span.clone(), format!("door {name:?} is rotating: name its key, e.g. key_file = \"/etc/knocker/{name}.key\" (make one with `knocker keygen --out FILE`)"));
    };
    let key = knocker_wire::keyfile::load_key(
        Path::new(key_file.get_ref()),
        knocker_wire::RotateKey::from_base64,
    )
    .or_else(|e| cx.err(key_file.span(), e.to_string()))?;
    let Some(ports) = &d.ports else {
        return cx.err(span.clone(), format!("door {name:?} is rotating: give the span its knocks are drawn from, e.g. ports = \"40000-40999\""));
    };
    let range = rotate::parse_ports(ports.get_ref())
        .or_else(|e| cx.err(ports.span(), format!("ports: {e}")))?;
    let proto = match &d.proto {
        None => Proto::Tcp,
        Some(p) => p
            .get_ref()
            .parse::<Proto>()
            .or_else(|e| cx.err(p.span(), format!("proto: {e}")))?,
    };
    let knocks = match &d.knocks {
        None => 4,
        Some(k) => usize::try_from(*k.get_ref())
            .or_else(|_| cx.err(k.span(), "knocks must be a positive number"))?,
    };
    let spec = RotateSpec::new(knocks, range.clone(), proto)
        .or_else(|e| cx.err(ports.span(), e.to_string()))?;
    let small =
        |v: &Option<Spanned<i64>>, key: &str, default: u64, max: u64| -> Result<u64, ConfigError> {
            match v {
                None => Ok(default),
                Some(x) => match u64::try_from(*x.get_ref()) {
                    Ok(n) if n <= max => Ok(n),
                    _ => cx.err(x.span(), format!("{key} must be 0 to {max}")),
                },
            }
        };
    let mode = d
        .mode
        .as_ref()
        .map(|m| m.get_ref().as_str())
        .unwrap_or("totp");
    let clock = match mode {
        "totp" => {
            if let Some(l) = &d.lookahead {
                return cx.err(
                    l.span(),
                    "lookahead is for mode = \"hotp\"; a totp door has `skew`",
                );
            }
            let period = match &d.period {
                None => 30,
                Some(p) => match cx.duration(p, "period")?.as_secs() {
                    n @ 5..=3600 => n,
                    _ => return cx.err(p.span(), "period must be 5 s to 1 h"),
                },
            };
            Clock::Totp {
                period,
                skew: small(&d.skew, "skew", 1, 10)?,
            }
        }
        "hotp" => {
            if let Some(x) = &d.skew {
                return cx.err(
                    x.span(),
                    "skew is for mode = \"totp\"; a hotp door has `lookahead`",
                );
            }
            if let Some(p) = &d.period {
                return cx.err(p.span(), "period is for mode = \"totp\"");
            }
            match small(&d.lookahead, "lookahead", 5, knocker_engine::MAX_CANDIDATES)? {
                0 => {
                    let at = d
                        .lookahead
                        .as_ref()
                        .map(|l| l.span())
                        .unwrap_or(span.clone());
                    return cx.err(at, "lookahead must be at least 1");
                }
                n => Clock::Hotp { lookahead: n },
            }
        }
        other => {
            let at = d.mode.as_ref().map(|m| m.span()).unwrap_or(span.clone());
            return cx.err(
                at,
                format!("mode {other:?}: use \"totp\" (time steps) or \"hotp\" (a counter)"),
            );
        }
    };
    let key = std::sync::Arc::new(key);
    let derive: knocker_engine::Derive =
        std::sync::Arc::new(move |t| rotate::sequence(&key, &spec, t));
    let r = DoorKind::Rotating {
        span: PortSpan {
            proto,
            first: *range.start(),
            last: *range.end(),
        },
        mode: if matches!(clock, Clock::Totp { .. }) {
            RotatingMode::Totp
        } else {
            RotatingMode::Hotp
        },
    };
    Ok(KindParts::new(
        r,
        Kind::Rotating {
            derive,
            clock,
            used: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_ports_contain_what_they_say() {
        let range = Watched::Range(Proto::Tcp, 40000, 40999);
        assert!(range.contains(Service::tcp(40000)) && range.contains(Service::tcp(40999)));
        assert!(!range.contains(Service::tcp(41000)) && !range.contains(Service::udp(40500)));
        assert_eq!(range.ports(), 1000);
        assert!(Watched::Spa(62201).contains(Service::udp(62201)));
        assert!(!Watched::Spa(62201).contains(Service::tcp(62201)));
        assert!(Watched::Syn(443).contains(Service::tcp(443)));
        assert!(!Watched::Knock(Service::udp(9000)).contains(Service::tcp(9000)));
        assert_eq!(Watched::Range(Proto::Udp, 5, 5).ports(), 1);
    }

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("k.toml"), text)
    }

    const GOOD: &str = r#"
[daemon]
nflog_group = 7
on_stop = "withdraw"
protect = ["tcp/80"]

[door.ssh]
sequence = ["7000", "9000:udp", "8000"]
open = ["tcp/22"]
window = "10s"
open_for = 60
tcp_flags = "syn,!ack"
start_command = ["/usr/bin/logger", "open %IP%"]
stop_command = ["/usr/bin/logger", "close %IP%"]
stop_after = "2m"
"#;

    #[test]
    fn icmp_steps_are_sequence_steps_only() {
        let c = p(&GOOD.replace("\"9000:udp\"", "\"icmp/300\"")).expect("valid");
        assert_eq!(
            c.door("ssh").expect("door").spec.sequence[1],
            "icmp/300".parse::<Service>().expect("step")
        );
        assert!(c
            .watched()
            .contains(&Watched::Knock("icmp/300".parse().expect("step"))));
        for (from, to, line) in [
            ("protect = [\"tcp/80\"]", "protect = [\"icmp/300\"]", 5),
            ("open = [\"tcp/22\"]", "open = [\"icmp/300\"]", 9),
        ] {
            let e = p(&GOOD.replace(from, to)).expect_err("refused");
            assert_eq!(e.line, Some(line), "{e}");
            assert!(
                e.message.ends_with(
                    "icmp/300 is an ICMP knock step, not a service: only a sequence may have it"
                ),
                "{e}"
            );
        }
        let e = p(&GOOD.replace("\"9000:udp\"", "\"icmp/56\"")).expect_err("a ping's size");
        assert!(e.message.contains("not 56 or 32"), "{e}");
    }

    #[test]
    fn good_config() {
        let c = p(GOOD).expect("valid");
        assert_eq!(c.nflog_group, 7);
        assert_eq!(c.on_stop, OnStop::Withdraw);
        let d = c.door("ssh").expect("door");
        assert_eq!(
            d.spec.sequence,
            vec![Service::tcp(7000), Service::udp(9000), Service::tcp(8000)]
        );
        assert_eq!(d.spec.window, Duration::from_secs(10));
        assert_eq!(d.spec.open_for, Duration::from_secs(60));
        assert_eq!(d.stop_after, Duration::from_secs(120));
        assert_eq!(d.line, 7);
        assert_eq!(c.protected(), vec![Service::tcp(22), Service::tcp(80)]);
        let ip: IpAddr = "10.200.1.2".parse().expect("ip");
        assert_eq!(
            d.start_command.as_ref().expect("cmd").argv_for(ip),
            vec!["/usr/bin/logger".to_string(), "open 10.200.1.2".to_string()]
        );
    }

    fn err_of(text: &str) -> String {
        p(text).expect_err("must be rejected").to_string()
    }

    #[test]
    fn an_icmp_step_needs_the_nflog_source() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"icmp/100\", \"8000\"]\nopen = [\"22\"]\n";
        assert!(p(door).is_ok());
        // the error names the door's line
        for (source, line) in [
            ("kind = \"kernel-log\"", 3),
            ("kind = \"packet\"\ninterface = \"eth0\"", 4),
        ] {
            let e = err_of(&format!("[source]\n{source}\n{door}"));
            assert!(
                e.starts_with(&format!("k.toml:{line}: door ssh has an ICMP step")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_forwarded_door_protects_its_services_apart_from_the_local_ones() {
        let web = "[door.web]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"tcp/8080\"]\nforward = true\n";
        let ssh = "[door.ssh]\nsequence = [\"7100\", \"9100\", \"8100\"]\nopen = [\"tcp/22\"]\n";
        let c = p(&format!("{web}{ssh}")).expect("valid");
        assert_eq!(
            c.door("web").expect("web").forward,
            Some(Forward::Published)
        );
        assert_eq!(c.door("ssh").expect("ssh").forward, None);
        assert_eq!(c.forwarded(), vec![Service::tcp(8080)]);
        assert_eq!(c.protected(), vec![Service::tcp(22)]);
        // `protect = false`: opened, dropped by nobody
        let open_only =
            p(&web.replace("forward = true", "forward = true\nprotect = false")).expect("valid");
        assert!(open_only.forwarded().is_empty() && open_only.protected().is_empty());
        // `forward = false` is the default, said out loud
        let local = p(&web.replace("forward = true", "forward = false")).expect("valid");
        assert_eq!(local.protected(), vec![Service::tcp(8080)]);
        for (text, says) in [
            (
                web.replace(
                    "open = [\"tcp/8080\"]\n",
                    "start_command = [\"/bin/true\"]\n",
                ),
                "k.toml:4: forward and nat protect and open the door's `open` services",
            ),
            (
                format!("{web}connections = 1\n"),
                "k.toml:4: a forwarded door's grants cannot count connections yet",
            ),
            (
                format!("{web}{}", ssh.replace("\"8100\"", "\"8080\"")),
                // the engine's own rule, as for a local service
                "k.toml:5: knock port tcp/8080 of door \"ssh\" is a service opened by door \"web\"",
            ),
        ] {
            let e = err_of(&text);
            assert!(e.starts_with(says), "{e}");
        }
    }

    #[test]
    fn a_routed_door_names_the_hosts_behind_this_one() {
        let door = "[door.lan]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"tcp/22\"]\nforward = [\"10.200.3.2\", \"fd00:200:3::/64\", \"10.200.3.0/24\"]\n";
        let c = p(door).expect("valid");
        let nets: Vec<Net> = ["10.200.3.0/24", "fd00:200:3::/64"]
            .iter()
            .map(|n| n.parse().expect("net"))
            .collect();
        // the host inside the network is folded into it
        assert_eq!(c.doors[0].forward, Some(Forward::Routed(nets.clone())));
        assert_eq!(c.routed(), vec![(nets, vec![Service::tcp(22)])]);
        assert!(c.forwarded().is_empty() && c.protected().is_empty());
        for (text, says) in [
            (
                door.replace("\"10.200.3.2\", ", "\"10.200.3.2/8\", "),
                "k.toml:4: forward: \"10.200.3.2/8\" is not an inner host's address or network",
            ),
            (
                door.replace("\"10.200.3.2\", ", "\"0.0.0.0/0\", "),
                "k.toml:4: forward: \"0.0.0.0/0\" is not",
            ),
            (
                "[door.lan]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"tcp/22\"]\nforward = []\n".into(),
                "k.toml:4: forward = [] names no host",
            ),
            (
                format!("{door}nat = \"10.200.3.2:22\"\n"),
                "k.toml:4: nat sends the door's services on to one inner host, and forward = [hosts]",
            ),
        ] {
            let e = err_of(&text);
            assert!(e.starts_with(says), "{e}");
        }
    }

    #[test]
    fn a_nat_door_sends_its_services_on_to_one_inner_host() {
        let door = "[door.inner]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"tcp/2222\"]\nnat = \"10.200.3.2:22\"\n";
        let c = p(door).expect("valid");
        let to: std::net::SocketAddr = "10.200.3.2:22".parse().expect("addr");
        assert_eq!(c.doors[0].forward, Some(Forward::Nat(to)));
        assert_eq!(c.forwarded(), vec![Service::tcp(2222)]);
        assert!(c.protected().is_empty());
        assert_eq!(c.nat_targets(), vec![(Service::tcp(2222), to)]);
        let v6 = p(&door.replace("10.200.3.2:22", "[fd00:200:3::2]:22")).expect("valid");
        assert_eq!(
            v6.nat_targets()[0].1,
            "[fd00:200:3::2]:22"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
        );
        // forward = true beside it says the same
        assert!(p(&format!("{door}forward = true\n")).is_ok());
        let other =
            "[door.ssh]\nsequence = [\"7100\", \"9100\", \"8100\"]\nopen = [\"tcp/2222\"]\n";
        for (text, says) in [
            (
                door.replace("10.200.3.2:22", "10.200.3.2"),
                "k.toml:4: nat \"10.200.3.2\" is not an inner address and port",
            ),
            (
                door.replace("10.200.3.2:22", "127.0.0.1:22"),
                "k.toml:4: nat \"127.0.0.1:22\" must name an inner host",
            ),
            (
                door.replace("10.200.3.2:22", "10.200.3.2:0"),
                "k.toml:4: nat \"10.200.3.2:0\" must name an inner host",
            ),
            (
                format!("{door}forward = false\n"),
                "k.toml:5: nat forwards the door's services to an inner host",
            ),
            (
                door.replace("open = [\"tcp/2222\"]\n", "start_command = [\"/bin/true\"]\n"),
                "k.toml:4: forward and nat protect and open",
            ),
            (
                format!("{door}{other}"),
                "k.toml:5: door ssh opens tcp/2222, which door inner sends on to 10.200.3.2:22 (nat)",
            ),
        ] {
            let e = err_of(&text);
            assert!(e.starts_with(says), "{e}");
        }
    }

    #[test]
    fn connections_count_from_one_to_eight() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n";
        let c = p(&format!("{door}connections = 3\n")).expect("valid");
        assert_eq!(c.doors[0].connections.map(|n| n.get()), Some(3));
        assert_eq!(p(door).expect("valid").doors[0].connections, None);
        for bad in ["0", "9", "-1", "300"] {
            let e = err_of(&format!("{door}connections = {bad}\n"));
            assert!(
                e.starts_with("k.toml:4:") && e.contains("1 to 8") && e.contains("remove"),
                "{bad}: {e}"
            );
        }
        let e = err_of("[door.cmd]\nsequence = [\"7000\", \"9000\", \"8000\"]\nstart_command = [\"/bin/true\"]\nconnections = 1\n");
        assert!(e.contains("opens nothing in the firewall"), "{e}");
    }

    #[test]
    fn interfaces_for_the_daemon_and_each_door_and_what_they_protect() {
        let c = p("[daemon]\ninterface = [\"eth0\", \"wg0\"]\n\n[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n\n[door.b]\nsequence = [\"7100\", \"9100\", \"8100\"]\nopen = [\"443\"]\ninterfaces = [\"eth1\"]\nprotect_elsewhere = false\n").expect("valid");
        assert_eq!(c.interfaces, ["eth0", "wg0"]);
        assert_eq!(c.listens_on(&c.doors[0]), ["eth0", "wg0"]);
        assert_eq!(c.listens_on(&c.doors[1]), ["eth1"]);
        assert_eq!(c.protected_everywhere(), [Service::tcp(22)]);
        assert_eq!(
            c.protected_on_some(),
            [(vec!["eth1".to_string()], vec![Service::tcp(443)])]
        );
        assert_eq!(c.protected(), [Service::tcp(22), Service::tcp(443)]);
        // one name is a list of one
        let c = p("[daemon]\ninterface = \"eth0\"\n\n[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n").expect("valid");
        assert_eq!(c.interfaces, ["eth0"]);
        let door = "[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n";
        for (extra, want) in [
            ("interfaces = []\n", "names no interface"),
            ("interfaces = [\"eth0\", \"eth0\"]\n", "twice"),
            ("interfaces = [\"a/b\"]\n", "not an interface name"),
            ("protect_elsewhere = false\n", "listens on every interface"),
        ] {
            let e = err_of(&format!("{door}{extra}"));
            assert!(
                e.starts_with("k.toml:4:") && e.contains(want),
                "{extra}: {e}"
            );
        }
        // a knock port of doors that listen on different interfaces
        let e = err_of("[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\ninterfaces = [\"eth0\"]\n\n[door.b]\nsequence = [\"7000\", \"9100\", \"8100\"]\nopen = [\"443\"]\n");
        assert!(
            e.starts_with("k.toml:6:")
                && e.contains("both watch tcp/7000")
                && e.contains("eth0 and every interface"),
            "{e}"
        );
        // the same interfaces may share it
        p("[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\ninterfaces = [\"eth0\"]\n\n[door.b]\nsequence = [\"7000\", \"9100\", \"8100\"]\nopen = [\"443\"]\ninterfaces = [\"eth0\"]\n").expect("valid");
        // a packet socket sees its own interface whatever a door says
        let e = err_of("[source]\nkind = \"packet\"\ninterface = \"eth0\"\n\n[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\ninterfaces = [\"eth1\"]\n");
        assert!(e.contains("names interfaces, but the source is"), "{e}");
    }

    #[test]
    fn grant_prefix_widens_per_family_within_bounds_and_alone() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n";
        assert!(!p(door).expect("valid").doors[0].grant_prefix.is_set());
        let c = p(&format!("{door}grant_prefix = 24\ngrant_prefix6 = 56\n")).expect("valid");
        let g = c.doors[0].grant_prefix;
        assert_eq!((g.v4, g.v6), (Some(24), Some(56)));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(g.widen(ip("100.64.7.201")), (ip("100.64.7.0"), Some(24)));
        assert_eq!(
            g.widen(ip("2001:db8:1:2ff:4::9")),
            (ip("2001:db8:1:200::"), Some(56))
        );
        assert_eq!(
            g.widen(ip("::ffff:100.64.7.201")),
            (ip("100.64.7.0"), Some(24)),
            "an IPv4-mapped address is the IPv4 address it is"
        );
        // one family widened, the other the address alone; a full length is the address alone
        let c = p(&format!("{door}grant_prefix6 = 64\ngrant_prefix = 32\n")).expect("valid");
        let g = c.doors[0].grant_prefix;
        assert_eq!((g.v4, g.v6), (None, Some(64)));
        assert_eq!(g.widen(ip("100.64.7.201")), (ip("100.64.7.201"), None));
        for (key, bad, range) in [
            ("grant_prefix", "15", "/16 to a /32"),
            ("grant_prefix", "33", "/16 to a /32"),
            ("grant_prefix", "-1", "/16 to a /32"),
            ("grant_prefix6", "31", "/32 to a /128"),
            ("grant_prefix6", "129", "/32 to a /128"),
        ] {
            let e = err_of(&format!("{door}{key} = {bad}\n"));
            assert!(
                e.starts_with("k.toml:4:") && e.contains(range) && e.contains("remove"),
                "{key} = {bad}: {e}"
            );
        }
        let e = err_of(&format!("{door}connections = 2\ngrant_prefix = 24\n"));
        assert!(
            e.starts_with("k.toml:5:") && e.contains("cannot be combined with connections"),
            "{e}"
        );
        let e = err_of("[door.cmd]\nsequence = [\"7000\", \"9000\", \"8000\"]\nstart_command = [\"/bin/true\"]\ngrant_prefix = 24\n");
        assert!(e.contains("opens nothing in the firewall"), "{e}");
    }

    #[test]
    fn delayed_commands_run_after_a_delay_at_once_or_at_the_end() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n";
        let c = p(&format!("{door}\n[[door.ssh.command]]\nrun = [\"/usr/bin/logger\", \"now %IP%\"]\n\n[[door.ssh.command]]\nrun = [\"/usr/bin/logger\", \"later\"]\nafter = \"5m\"\n\n[[door.ssh.command]]\nrun = [\"/usr/bin/logger\", \"end\"]\nat = \"end\"\n")).expect("valid");
        let when: Vec<ActionTime> = c.doors[0].actions.iter().map(|a| a.when).collect();
        assert_eq!(
            when,
            [
                ActionTime::After(Duration::ZERO),
                ActionTime::After(Duration::from_secs(300)),
                ActionTime::End
            ]
        );
        let ip: IpAddr = "10.200.1.2".parse().expect("ip");
        assert_eq!(
            c.doors[0].actions[0].command.argv_for(ip),
            ["/usr/bin/logger", "now 10.200.1.2"]
        );
        // a door that only runs delayed commands is a door
        assert!(p("[door.cmd]\nsequence = [\"7000\", \"9000\", \"8000\"]\n[[door.cmd.command]]\nrun = [\"/bin/true\"]\nafter = 2\n").is_ok());
        for (bad, want) in [
            (
                "run = [\"/bin/true\"]\nafter = 5\nat = \"end\"\n",
                "not both",
            ),
            (
                "run = [\"/bin/true\"]\nat = \"start\"\n",
                "the only time is \"end\"",
            ),
            ("run = \"echo hi | logger\"\n", "shell = true"),
            ("run = []\n", "empty"),
            ("after = 5\n", "run"),
            ("run = [\"/bin/true\"]\nwhen = 5\n", "when"),
        ] {
            let e = err_of(&format!("{door}[[door.ssh.command]]\n{bad}"));
            assert!(e.starts_with("k.toml:") && e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = err_of(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nbogus = 1\n",
        );
        assert!(e.starts_with("k.toml:4:") && e.contains("bogus"), "{e}");
        let e = err_of("[door.ssh]\nsequence = [\"7000\", \"70000\", \"8000\"]\nopen = [\"22\"]\n");
        assert!(e.starts_with("k.toml:2:") && e.contains("70000"), "{e}");
        let e = err_of("[door.ssh]\nsequence = [\"7000\", \"8000\", \"9000\"]\nopen = [\"22\"]\n");
        assert!(e.starts_with("k.toml:2:") && e.contains("ascending"), "{e}");
        let e = err_of("[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nstart_command = \"echo %IP% | logger\"\n");
        assert!(
            e.starts_with("k.toml:4:") && e.contains("shell = true"),
            "{e}"
        );
        let e = err_of("[door.a]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n\n[door.b]\nsequence = [\"7000\", \"9000\", \"8000\", \"7500\"]\nopen = [\"22\"]\n");
        assert!(
            e.starts_with("k.toml:5:") && e.contains("also opens door \"a\""),
            "{e}"
        );
        let e = err_of("[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nwindow = \"10 parsecs\"\n");
        assert!(e.starts_with("k.toml:4:"), "{e}");
        let e = err_of("[daemon]\nnflog_group = 70000\n[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n");
        assert!(e.starts_with("k.toml:2:"), "{e}");
        let e = err_of("[daemon]\n");
        assert!(e.contains("no door yet, so nothing is protected"), "{e}");
        let e = err_of("[door.ssh\n");
        assert!(e.starts_with("k.toml:1:"), "{e}");
    }

    #[test]
    fn the_source_is_nflog_unless_the_source_table_says_otherwise() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n";
        assert_eq!(p(door).expect("valid").source, SourceSpec::Nflog);
        let c = p(&format!("[source]\nkind = \"nflog\"\n{door}")).expect("valid");
        assert_eq!(c.source, SourceSpec::Nflog);
        let c = p(&format!(
            "[source]\nkind = \"packet\"\ninterface = \"eth0\"\n{door}"
        ))
        .expect("valid");
        assert_eq!(
            c.source,
            SourceSpec::Packet {
                interface: "eth0".into()
            }
        );
        let e = err_of(&format!("[source]\nkind = \"packet\"\n{door}"));
        assert!(
            e.starts_with("k.toml:2:") && e.contains("interface = \"eth0\""),
            "{e}"
        );
        let e = err_of(&format!(
            "[source]\nkind = \"packet\"\ninterface = \"a/b\"\n{door}"
        ));
        assert!(
            e.starts_with("k.toml:3:") && e.contains("not an interface name"),
            "{e}"
        );
        let e = err_of(&format!("[source]\nkind = \"pcap\"\n{door}"));
        assert!(
            e.starts_with("k.toml:2:") && e.contains("unknown [source] kind \"pcap\""),
            "{e}"
        );
        let e = err_of(&format!(
            "[source]\nkind = \"nflog\"\ninterface = \"eth0\"\n{door}"
        ));
        assert!(
            e.starts_with("k.toml:3:") && e.contains("[daemon] interface"),
            "{e}"
        );
        let e = err_of(&format!("[source]\nkind = \"packet\"\nport = 1\n{door}"));
        assert!(e.starts_with("k.toml:3:"), "{e}");
    }

    #[test]
    fn metrics_file_is_an_absolute_prom_file() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\n";
        let c = p(&format!(
            "[daemon]\nmetrics_file = \"/var/lib/prometheus/node-exporter/knockerd.prom\"\n{door}"
        ))
        .expect("valid");
        assert_eq!(
            c.metrics_file.as_deref(),
            Some(Path::new("/var/lib/prometheus/node-exporter/knockerd.prom"))
        );
        assert_eq!(
            p(door).expect("valid").metrics_file,
            None,
            "none unless set"
        );
        for bad in ["\"knockerd.prom\"", "\"/var/lib/knockerd.txt\"", "\"/\""] {
            let e = err_of(&format!("[daemon]\nmetrics_file = {bad}\n{door}"));
            assert!(
                e.starts_with("k.toml:2: metrics_file must be an absolute path"),
                "{bad}: {e}"
            );
            assert!(
                e.contains("e.g. \"/var/lib/prometheus/node-exporter/knockerd.prom\""),
                "{e}"
            );
        }
    }

    #[test]
    fn trusted_sources_and_the_accept_mark() {
        let door = "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\n";
        let c = p(&format!("[daemon]\ntrusted = [\"192.0.2.0/24\", \"2001:db8::/32\", \"192.0.2.7\"]\naccept_mark = 0x4b410000\n{door}")).expect("valid");
        let nets: Vec<String> = c.trusted.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["192.0.2.0/24", "2001:db8::/32", "192.0.2.7/32"]);
        // nftables refuses overlapping elements of an interval set: the contained one goes
        let minimal: Vec<String> = Net::minimal(&c.trusted)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(minimal, ["192.0.2.0/24", "2001:db8::/32"]);
        assert_eq!(c.accept_mark, 0x4b41_0000);
        assert_eq!(p(door).expect("valid").accept_mark, 0, "off unless set");
        for (bad, what) in [
            (
                "\"10.0.0.1/8\"",
                "write \"10.0.0.0/8\" for the network, or \"10.0.0.1/32\"",
            ),
            (
                "\"10.0.0.0/33\"",
                "prefix length of an IPv4 network is 0 to 32",
            ),
            ("\"2001:db8::/129\"", "IPv6 network is 0 to 128"),
            ("\"0.0.0.0/0\"", "would trust every source"),
            ("\"::/0\"", "would trust every source"),
            ("\"office\"", "is not an address or network: write e.g."),
            ("\"10.0.0.0/x\"", "prefix length"),
        ] {
            let e = err_of(&format!(
                "[daemon]\nnflog_group = 1\ntrusted = [\n  \"192.0.2.0/24\",\n  {bad},\n]\n{door}"
            ));
            assert!(e.starts_with("k.toml:5: trusted: "), "{bad}: {e}");
            assert!(e.contains(what), "{bad}: {what:?} expected in {e}");
        }
        for bad in [
            "0x4b4e0000",
            "0x4b400000",
            "0xffff0000",
            "-1",
            "0x100000000",
        ] {
            let e = err_of(&format!("[daemon]\naccept_mark = {bad}\n{door}"));
            assert!(e.starts_with("k.toml:2: accept_mark"), "{bad}: {e}");
        }
        // with grant_mark off, any mark will do
        let c = p(&format!(
            "[daemon]\ngrant_mark = 0\naccept_mark = 1\n{door}"
        ))
        .expect("valid");
        assert_eq!(c.accept_mark, 1);
    }

    #[test]
    fn shell_commands_need_shell_true() {
        let c = p("[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nshell = true\nstart_command = \"echo %IP% | logger\"\n").expect("valid");
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(
            c.doors[0].start_command.as_ref().expect("cmd").argv_for(ip),
            vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "echo 2001:db8::1 | logger".to_string()
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(fmt_duration(Duration::from_secs(90)), "90s");
        assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn rotating_doors_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("knocker-cfg-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("k");
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let door = |extra: &str| {
            format!(
                "[door.v]\nkind = \"rotating\"\nkey_file = {:?}\nports = \"40000-40999\"\nopen = [\"22\"]\n{extra}",
                key.display().to_string()
            )
        };
        let c = p(&door("mode = \"hotp\"\nlookahead = 3\n")).expect("valid");
        assert_eq!(c.knock_ranges(), vec![(Proto::Tcp, 40000, 40999)]);
        let span = PortSpan {
            proto: Proto::Tcp,
            first: 40000,
            last: 40999,
        };
        let hotp = DoorKind::Rotating {
            span,
            mode: RotatingMode::Hotp,
        };
        assert_eq!(
            (c.doors[0].kind_name(), &c.doors[0].kind),
            ("rotating", &hotp)
        );
        assert_eq!(c.doors[0].span(), Some(span));
        let totp = p(&door("")).expect("valid");
        assert!(matches!(
            totp.doors[0].kind,
            DoorKind::Rotating {
                mode: RotatingMode::Totp,
                ..
            }
        ));
        assert!(!c.doors[0].replayable());
        let e = err_of(&door("mode = \"hotp\"\nskew = 2\n"));
        assert!(
            e.starts_with("k.toml:7:") && e.contains("skew is for"),
            "{e}"
        );
        let e = err_of(&door("mode = \"sometimes\"\n"));
        assert!(e.starts_with("k.toml:6:") && e.contains("totp"), "{e}");
        let e = err_of(&door(
            "open_for = 30\n[daemon]\nprotect = [\"tcp/40022\"]\n",
        ));
        assert!(e.contains("tcp/40022 lies in the rotating span"), "{e}");
        let e = err_of("[door.s]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nports = \"1-100\"\n");
        assert!(
            e.starts_with("k.toml:4:") && e.contains("belong to kind = \"rotating\""),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = err_of(&door(""));
        assert!(e.starts_with("k.toml:3:") && e.contains("chmod 600"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
