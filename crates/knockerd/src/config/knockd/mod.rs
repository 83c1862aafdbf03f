//! knockd.conf, as it is: `knockerd --knockd-conf /etc/knockd.conf` runs an existing knockd
//! configuration, and `knockerd import-knockd FILE` prints the equivalent native TOML.
//!
//! The grammar and every error follow knockd 0.8's `parseconfig()` and `parse_port_sequence()`
//! (src/knockd.c): lines are trimmed, blank lines and lines starting with `#` are skipped (there
//! are no inline comments), `[options]` (lower case, exactly) holds the globals and any other
//! `[name]` starts a door, a directive before any section is an error, `key = value` splits at the
//! first `=`, keys are case-insensitive and values are not (protocols and TCP flags are compared
//! upper-cased), and an unknown key is an error. What knockd accepts runs, including what
//! knockerd's own format refuses (sequences in ascending order, two-knock sequences, overlapping
//! doors): those come back as warnings. Where knockd would silently read garbage (`atoi` turning
//! `80a` into 80 and `abc` into port 0), knockerd refuses with the line and the fix; docs/knockd.md
//! lists every such difference.
//!
//! A knockd door only runs commands, so it becomes a [`Door`] that opens nothing in the firewall
//! (`open` is empty, `protect` is false) and whose commands run with `/bin/sh -c` as root, as in
//! knockd; only the validated source address replaces `%IP%`.

pub mod import;
pub mod log;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knocker_engine::{
    validate_doors_compat, DoorSpec, DoorsError, FlagFilter, Kind, Proto, Service, TcpFlags,
    MAX_KNOCKS, MAX_OPEN_FOR, MAX_WINDOW,
};

use crate::config::{
    Command, Config, ConfigError, Door, DoorKind, OnStop, DEFAULT_GRANT_MARK, DEFAULT_NFLOG_GROUP,
    DEFAULT_STATE_DIR,
};
use crate::onetime::OneTimeFile;

/// knockd's interface when neither `Interface` nor `-i` names one (knockd.c `main()`).
pub const DEFAULT_INTERFACE: &str = "eth0";
/// knockd's `SEQ_TIMEOUT`: seconds from the first knock.
pub const DEFAULT_SEQ_TIMEOUT: u64 = 25;
/// knockd's `CMD_TIMEOUT`: seconds between the start and the stop command.
pub const DEFAULT_CMD_TIMEOUT: u64 = 10;
/// knockd reads lines with `fgets(line, PATH_MAX, fp)`: longer lines are split in two.
const LINE_MAX: usize = 4095;
/// knockd reads timeouts with `atoi` into an `int`.
const MAX_SECONDS: i64 = i32::MAX as i64;
/// The shell's no-op: what knockd's explicitly empty `Start_Command_6`/`Stop_Command_6` mean.
const NOTHING: &str = ":";

const OPTION_KEYS: [&str; 4] = ["USESYSLOG", "LOGFILE", "PIDFILE", "INTERFACE"];
const DOOR_KEYS: [&str; 13] = [
    "SEQUENCE",
    "ONE_TIME_SEQUENCES",
    "SEQ_TIMEOUT",
    "TIMEOUT",
    "TCPFLAGS",
    "START_COMMAND",
    "COMMAND",
    "START_COMMAND_6",
    "COMMAND_6",
    "CMD_TIMEOUT",
    "STOP_COMMAND",
    "STOP_COMMAND_6",
    "TARGET",
];

// ---- the parsed file ----------------------------------------------------------------------------

/// knockd's global options that have no place in [`Config`]: the daemon applies them with
/// [`log::PidFile`] and [`log::KnockdLog`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnockdOptions {
    /// `UseSyslog`: log to syslog too (facility user, as knockd).
    pub use_syslog: bool,
    /// `LogFile`: append log lines to this file too.
    pub log_file: Option<PathBuf>,
    /// `PidFile`: write the daemon's pid here at start, remove it at a clean exit.
    pub pid_file: Option<PathBuf>,
}

/// A knockd.conf as knockerd runs it.
#[derive(Debug, Clone)]
pub struct Knockd {
    /// The validated configuration; its doors are in file order.
    pub config: Config,
    pub options: KnockdOptions,
    /// What knockd accepts but deserves a look, each as `file:line: what`.
    pub warnings: Vec<String>,
    /// Whether `Interface` was given (knockd's default is eth0).
    pub interface_given: bool,
    /// Per door, in the order of `config.doors`: what import-knockd writes as comments.
    meta: Vec<DoorMeta>,
    /// The warnings that concern no single door.
    global_warnings: Vec<String>,
}

#[derive(Debug, Clone)]
struct DoorMeta {
    section: String,
    line: usize,
    /// The line of the knocks (Sequence or One_Time_Sequences), for warnings about them.
    knocks_line: usize,
    /// With the line each concerns.
    warnings: Vec<(usize, String)>,
    notes: Vec<String>,
    /// knockerd's own format refuses the door as it is (sweepable, overlapping...).
    refused_natively: bool,
}

/// Reads a knockd.conf, parses it and checks that its interface exists here (knockd refuses to
/// start otherwise).
pub fn load(path: &Path) -> Result<Knockd, ConfigError> {
    let mut k = read_and_parse(path)?;
    if let Some(name) = k.config.interfaces.first() {
        if let Err(e) = nix::net::if_::if_nametoindex(name.as_str()) {
            let how = if k.interface_given {
                "fix `Interface` in [options]".to_string()
            } else {
                format!("[options] names no Interface, so knockd listens on {DEFAULT_INTERFACE}; add `Interface = <name>` to [options] (knockerd does not read knockd's -i option from /etc/default/knockd)")
            };
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: None,
                message: format!("interface {name:?} does not exist here ({e}), so knockd would not start: {how}"),
            });
        }
    }
    // knockd's capture sees packets routed through the host too; knockerd's input chain only sees
    // packets for the host itself
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        let local: Vec<IpAddr> = addrs
            .filter_map(|a| a.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect();
        for (d, m) in k.config.doors.iter().zip(&k.meta) {
            if let Some(t) = d.spec.target.filter(|t| !local.contains(t)) {
                k.warnings.push(format!("{}:{}: door {:?}: Target {t} is not an address of this host: knockerd sees only knocks addressed to this host, so this door never opens (knockd's packet capture also saw knocks routed to other hosts)", path.display(), m.line, d.spec.name));
            }
        }
    }
    Ok(k)
}

fn read_and_parse(path: &Path) -> Result<Knockd, ConfigError> {
    let bytes = crate::config::read_bounded(path)?;
    let mut text = String::with_capacity(bytes.len());
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(s) => text.push_str(s),
            // knockd skips comments whatever their bytes; anything else must be text
            Err(_) if c_trim_bytes(line).first().is_none_or(|&b| b == b'#') => {
                text.push_str(&String::from_utf8_lossy(line))
            }
            Err(_) => {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: Some(i + 1),
                    message: "the line is not UTF-8 text".into(),
                })
            }
        }
    }
    parse(path, &text)
}

/// knockd's `trim()`: C `isspace` on both ends.
fn c_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
}

fn c_trim_bytes(b: &[u8]) -> &[u8] {
    let sp = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = b.iter().position(|c| !sp(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !sp(c)).map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// What C's `atoi` makes of `s`, for messages that say what knockd would have done.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Why a knockd `Sequence` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("too many ports in the knock sequence ({0}): knockd allows at most {MAX_KNOCKS}")]
    TooMany(usize),
    #[error("empty port in the sequence {0:?} (a stray comma?): knockd would read it as port 0")]
    EmptyPort(String),
    #[error("port {0} is invalid: a port is a number from 1 to 65535")]
    PortTooLarge(String),
    #[error("bad port {text:?} in the sequence: a port is a number from 1 to 65535{hint}; knockd would silently read it as port {knockd_reads}")]
    BadPort {
        text: String,
        hint: &'static str,
        knockd_reads: u16,
    },
    #[error("unknown protocol {0:?} in the knock sequence: use tcp or udp")]
    UnknownProtocol(String),
}

/// Parses knockd's `Sequence` syntax, `port[:tcp|udp],...` (TCP by default, at most 32), as
/// knockd's `parse_port_sequence()` does: a port is read with `atoi`, so text after a valid
/// leading number is ignored (`8000 # ssh` is port 8000) and so is anything after a second `:`;
/// both come back as warnings. What `atoi` would turn into garbage (no number, port 0, a negative
/// number) is refused, and so is what knockd refuses (a port over 65535, a protocol other than
/// tcp or udp, more than 32 knocks).
pub fn parse_sequence(text: &str) -> Result<(Vec<Service>, Vec<String>), SequenceError> {
    let items: Vec<&str> = text.split(',').collect();
    if items.len() > MAX_KNOCKS {
        return Err(SequenceError::TooMany(items.len()));
    }
    let mut warnings = Vec::new();
    let mut seq = Vec::with_capacity(items.len());
    for item in &items {
        let mut parts = item.split(':');
        let port_text = c_trim(parts.next().unwrap_or(""));
        let proto_text = parts.next().map(c_trim);
        let rest: Vec<&str> = parts.collect();
        if port_text.is_empty() {
            return Err(SequenceError::EmptyPort(c_trim(text).to_string()));
        }
        let value = atoi(port_text);
        let digits = port_text.bytes().take_while(u8::is_ascii_digit).count();
        if value > 65535 {
            return Err(SequenceError::PortTooLarge(port_text.to_string()));
        }
        if digits == 0 || value < 1 {
            let hint = if port_text.contains('/') {
                " (knockd's syntax is port:udp, not udp/port)"
            } else {
                ""
            };
            // knockd stores (unsigned short)atoi(port)
            return Err(SequenceError::BadPort {
                text: port_text.to_string(),
                hint,
                knockd_reads: value as u16,
            });
        }
        let port = value as u16;
        let proto = match proto_text.map(|p| p.to_ascii_uppercase()) {
            None => Proto::Tcp,
            Some(p) if p == "TCP" => Proto::Tcp,
            Some(p) if p == "UDP" => Proto::Udp,
            Some(_) => {
                return Err(SequenceError::UnknownProtocol(
                    proto_text.unwrap_or("").to_string(),
                ))
            }
        };
        let service = Service::new(proto, port);
        if digits < port_text.len() {
            let hint = if port_text[digits..].contains("udp") {
                " (write port:udp for UDP)"
            } else {
                ""
            };
            warnings.push(format!("knockd reads {port_text:?} as {service} and ignores the rest{hint}; so does knockerd"));
        }
        if !rest.is_empty() {
            warnings.push(format!(
                "knockd ignores {:?} after the second ':' in {:?}; so does knockerd",
                rest.join(":"),
                c_trim(item)
            ));
        }
        seq.push(service);
    }
    Ok((seq, warnings))
}

/// knockd's six flags, in the order of its `opendoor` struct.
const FLAGS: [(&str, TcpFlags); 6] = [
    ("FIN", TcpFlags::FIN),
    ("SYN", TcpFlags::SYN),
    ("RST", TcpFlags::RST),
    ("PSH", TcpFlags::PSH),
    ("ACK", TcpFlags::ACK),
    ("URG", TcpFlags::URG),
];

/// Applies one `TCPFlags` value to the door's flag states as knockd does: the value is
/// upper-cased and split at commas, with no trimming; each word sets one flag's state, so a later
/// word or line overrides an earlier one for the same flag.
fn apply_flags(value: &str, state: &mut [Option<bool>; 6]) -> Result<(), String> {
    let upper = value.to_ascii_uppercase();
    for word in upper.split(',') {
        let (must_be_set, name) = match word.strip_prefix('!') {
            Some(rest) => (false, rest),
            None => (true, word),
        };
        let Some(i) = FLAGS.iter().position(|(n, _)| *n == name) else {
            let hint = if word.trim() != word {
                "; knockd allows no spaces in TCPFlags: write e.g. syn,!ack"
            } else {
                ""
            };
            return Err(format!(
                "unrecognized flag {word:?}: knockd knows fin, syn, rst, psh, ack and urg, each optionally prefixed with '!', separated by commas{hint}"
            ));
        };
        state[i] = Some(must_be_set);
    }
    Ok(())
}

fn flag_filter(state: &[Option<bool>; 6]) -> Option<FlagFilter> {
    if state.iter().all(Option::is_none) {
        return None;
    }
    let mut f = FlagFilter::default();
    for ((_, flag), s) in FLAGS.iter().zip(state) {
        match s {
            Some(true) => f.set = f.set.union(*flag),
            Some(false) => f.clear = f.clear.union(*flag),
            None => {}
        }
    }
    Some(f)
}

/// A whole number of seconds as knockd's `atoi` would read it, but only when it really is one.
fn seconds(key: &str, value: &str) -> Result<i64, String> {
    let t = c_trim(value);
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{key} = {value:?} is not a whole number of seconds (knockd would silently read it as {})",
            atoi(value)
        ));
    }
    match t.parse::<i64>() {
        Ok(n) if (-MAX_SECONDS..=MAX_SECONDS).contains(&n) => Ok(n),
        _ => Err(format!("{key} = {value}: at most {MAX_SECONDS} seconds")),
    }
}

/// An interface name the kernel could have, and nftables can quote.
fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '"' || c == '\\' || c.is_whitespace())
}

/// A native door name (1 to 32 of `A-Za-z0-9-_`) for a knockd section name, unique among `taken`.
fn door_name(section: &str, taken: &mut HashSet<String>) -> String {
    let mut base: String = section
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if base.is_empty() {
        base = "door".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        let suffix = format!("-{n}");
        let keep = 32usize.saturating_sub(suffix.len()).min(base.len());
        name = format!("{}{suffix}", &base[..keep]);
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// A value with the line it was set on.
type At<T> = Option<(usize, T)>;

#[derive(Default)]
struct Draft {
    section: String,
    line: usize,
    sequence: At<Vec<Service>>,
    one_time: At<OneTimeFile>,
    seq_timeout: At<i64>,
    cmd_timeout: At<i64>,
    start: At<String>,
    start6: At<String>,
    stop: At<String>,
    stop6: At<String>,
    target: At<IpAddr>,
    flags: [Option<bool>; 6],
    warnings: Vec<(usize, String)>,
}

#[derive(PartialEq)]
enum Section {
    None,
    Options,
    Door(usize),
}

/// Parses and validates knockd.conf text; `file` names it in messages. One_Time_Sequences files
/// are read (and must be writable, as knockd opens them `r+`); the interface is not looked up.
pub fn parse(file: &Path, text: &str) -> Result<Knockd, ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    let mut options = KnockdOptions::default();
    let mut interface: At<String> = None;
    let mut global_warnings: Vec<(usize, String)> = Vec::new();
    let mut drafts: Vec<Draft> = Vec::new();
    let mut section = Section::None;

    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        if raw.len() > LINE_MAX {
            return Err(err(n, format!("the line is {} bytes long; knockd reads at most {LINE_MAX} bytes per line and would split it: shorten it", raw.len())));
        }
        let line = c_trim(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') && line.len() >= 2 {
            let name = &line[1..line.len() - 1];
            if name.is_empty() {
                return Err(err(
                    n,
                    "bad section name: write [options] or [name of a door]".into(),
                ));
            }
            if name == "options" {
                section = Section::Options;
            } else {
                if c_trim(name).eq_ignore_ascii_case("options") {
                    global_warnings.push((n, format!("[{name}] starts a door, not the options: knockd recognizes only `[options]`, in lower case")));
                }
                drafts.push(Draft {
                    section: name.to_string(),
                    line: n,
                    ..Draft::default()
                });
                section = Section::Door(drafts.len() - 1);
            }
            continue;
        }
        if section == Section::None {
            return Err(err(n, format!("`{line}` comes before any section: knockd requires every directive to belong to one; put it under [options] or under a door's [name]")));
        }
        let (key_text, value) = match line.split_once('=') {
            Some((k, v)) => (c_trim(k), Some(c_trim(v))),
            None => (line, None),
        };
        let key = key_text.to_ascii_uppercase();
        let Some(value) = value else {
            // knockd accepts a bare UseSyslog in any section
            if key == "USESYSLOG" {
                options.use_syslog = true;
                continue;
            }
            return Err(err(n, format!("`{line}` has no `=`: write `key = value` (only UseSyslog stands alone); knockd reports a syntax error")));
        };
        match section {
            Section::None => {}
            Section::Options => option_line(
                file,
                n,
                &key,
                key_text,
                value,
                &mut options,
                &mut interface,
                &mut global_warnings,
            )?,
            Section::Door(idx) => {
                let Some(d) = drafts.get_mut(idx) else {
                    continue;
                };
                door_line(file, n, &key, key_text, value, d)?;
            }
        }
    }

    finish(file, drafts, options, interface, global_warnings)
}

/// Builds the doors from their sections, checks them together (what knockd accepts but
/// knockerd's own format refuses is a warning) and gathers the warnings in line order.
fn finish(
    file: &Path,
    drafts: Vec<Draft>,
    options: KnockdOptions,
    interface: At<String>,
    mut global_warnings: Vec<(usize, String)>,
) -> Result<Knockd, ConfigError> {
    let mut taken = HashSet::new();
    let mut doors = Vec::new();
    let mut meta = Vec::new();
    for d in drafts {
        let (door, m) = build_door(file, d, &mut taken)?;
        doors.push(door);
        meta.push(m);
    }

    let specs: Vec<DoorSpec> = doors.iter().map(|d| d.spec.clone()).collect();
    // a problem with one door's knocks is reported at its Sequence line, one between doors at
    // the second door's section
    let line_of = |e: &DoorsError| {
        let i =
            doors_error_door(e).and_then(|name| doors.iter().position(|d| d.spec.name == name))?;
        let m = meta.get(i)?;
        Some((
            i,
            if matches!(e, DoorsError::Door { .. }) {
                m.knocks_line
            } else {
                m.line
            },
        ))
    };
    let compat = validate_doors_compat(&specs).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: line_of(&e).map(|(_, l)| l),
        message: e.to_string(),
    })?;
    let located: Vec<(DoorsError, Option<(usize, usize)>)> = compat
        .into_iter()
        .map(|w| {
            let at = line_of(&w);
            (w, at)
        })
        .collect();
    for (w, at) in located {
        let text = format!("{w}; knockd accepts this, so knockerd runs it as it is");
        match at {
            Some((i, line)) => {
                if let Some(m) = meta.get_mut(i) {
                    m.warnings.push((line, text));
                    m.refused_natively = true;
                }
            }
            None => global_warnings.push((0, text)),
        }
    }
    if doors.is_empty() {
        global_warnings.push((
            0,
            "no doors: knockerd watches nothing (knockd accepts this too)".into(),
        ));
    }

    let prefix = |line: usize, w: &str| match line {
        0 => format!("{}: {w}", file.display()),
        l => format!("{}:{l}: {w}", file.display()),
    };
    let global: Vec<String> = global_warnings.iter().map(|(l, w)| prefix(*l, w)).collect();
    let mut warnings: Vec<(usize, String)> = global_warnings;
    for m in &meta {
        warnings.extend(m.warnings.iter().cloned());
    }
    warnings.sort_by_key(|w| w.0);
    let warnings = warnings.into_iter().map(|(l, w)| prefix(l, &w)).collect();

    let interface_given = interface.is_some();
    let config = Config {
        file: file.to_path_buf(),
        nflog_group: DEFAULT_NFLOG_GROUP,
        max_tracked: knocker_engine::DEFAULT_MAX_TRACKED,
        on_stop: OnStop::Keep,
        grant_mark: DEFAULT_GRANT_MARK,
        accept_mark: 0,
        trusted: Vec::new(),
        protect: Vec::new(),
        interfaces: vec![interface.map_or_else(|| DEFAULT_INTERFACE.to_string(), |i| i.1)],
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        server_key: PathBuf::from(crate::config::DEFAULT_SERVER_KEY),
        clients: PathBuf::from(crate::config::DEFAULT_CLIENTS),
        worker_user: None,
        // knockd only watches packets: a knock port may be a live service's
        metrics_file: None,
        shared_state: None,
        drop_knocks: false,
        source: crate::config::SourceSpec::Nflog,
        doors,
    };
    Ok(Knockd {
        config,
        options,
        warnings,
        interface_given,
        meta,
        global_warnings: global,
    })
}

/// One `key = value` line of `[options]`.
#[allow(clippy::too_many_arguments)]
fn option_line(
    file: &Path,
    n: usize,
    key: &str,
    key_text: &str,
    value: &str,
    options: &mut KnockdOptions,
    interface: &mut At<String>,
    global_warnings: &mut Vec<(usize, String)>,
) -> Result<(), ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    match key {
        "LOGFILE" => options.log_file = (!value.is_empty()).then(|| PathBuf::from(value)),
        "PIDFILE" => options.pid_file = (!value.is_empty()).then(|| PathBuf::from(value)),
        "INTERFACE" => {
            if value.is_empty() {
                // knockd copies the empty name, so a later Interface (or eth0) applies
            } else if let Some((first, name)) = &interface {
                global_warnings.push((n, format!("Interface is ignored: knockd keeps the first one, {name} (line {first})")));
            } else if !valid_interface(value) {
                return Err(err(n, format!("Interface {value:?} is not an interface name (at most 15 characters, no spaces, '/', ':' or quotes)")));
            } else {
                *interface = Some((n, value.to_string()));
            }
        }
        "USESYSLOG" => return Err(err(n, "UseSyslog takes no value: write `UseSyslog` alone (knockd reports a syntax error for `UseSyslog = ...`)".into())),
        k if DOOR_KEYS.contains(&k) => return Err(err(n, format!("{key_text} is a door directive: it belongs under a door's [name], not in [options] (knockd reports a syntax error)"))),
        _ => return Err(err(n, format!("unknown directive {key_text:?} in [options]: knockd knows UseSyslog, LogFile, PidFile and Interface there (it reports a syntax error)"))),
    }
    Ok(())
}

/// One `key = value` line of a door's section.
fn door_line(
    file: &Path,
    n: usize,
    key: &str,
    key_text: &str,
    value: &str,
    d: &mut Draft,
) -> Result<(), ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    let again = |what: &str, prev: Option<usize>, w: &mut Vec<(usize, String)>| {
        if let Some(p) = prev {
            w.push((
                n,
                format!("{what} was already given at line {p}; this one counts, as in knockd"),
            ));
        }
    };
    match key {
        "SEQUENCE" => {
            let (seq, warnings) = parse_sequence(value).map_err(|e| err(n, format!("[{}]: {e}", d.section)))?;
            d.warnings.extend(warnings.into_iter().map(|w| (n, w)));
            again("Sequence", d.sequence.as_ref().map(|s| s.0), &mut d.warnings);
            d.sequence = Some((n, seq));
        }
        "ONE_TIME_SEQUENCES" => {
            let f = one_time_file(value).map_err(|e| err(n, e))?;
            again("One_Time_Sequences", d.one_time.as_ref().map(|s| s.0), &mut d.warnings);
            d.one_time = Some((n, f));
        }
        "SEQ_TIMEOUT" | "TIMEOUT" => {
            let s = seconds(key_text, value).map_err(|e| err(n, e))?;
            again("Seq_Timeout", d.seq_timeout.map(|s| s.0), &mut d.warnings);
            d.seq_timeout = Some((n, s));
        }
        "CMD_TIMEOUT" => {
            let s = seconds(key_text, value).map_err(|e| err(n, e))?;
            if s < 0 {
                return Err(err(n, format!("{key_text} = {s}: the stop command runs this many seconds after the start command; give 0 or more")));
            }
            again("Cmd_Timeout", d.cmd_timeout.map(|s| s.0), &mut d.warnings);
            d.cmd_timeout = Some((n, s));
        }
        "START_COMMAND" | "COMMAND" => {
            again("Start_Command", d.start.as_ref().map(|s| s.0), &mut d.warnings);
            d.start = Some((n, value.to_string()));
        }
        "START_COMMAND_6" | "COMMAND_6" => {
            again("Start_Command_6", d.start6.as_ref().map(|s| s.0), &mut d.warnings);
            d.start6 = Some((n, value.to_string()));
        }
        "STOP_COMMAND" => {
            again("Stop_Command", d.stop.as_ref().map(|s| s.0), &mut d.warnings);
            d.stop = Some((n, value.to_string()));
        }
        "STOP_COMMAND_6" => {
            again("Stop_Command_6", d.stop6.as_ref().map(|s| s.0), &mut d.warnings);
            d.stop6 = Some((n, value.to_string()));
        }
        "TARGET" => {
            let ip = value.parse::<IpAddr>().map_err(|_| {
                err(n, format!("Target {value:?} is not an IP address: knockd matches it against each knock's destination address (and cannot compile anything else into its capture filter)"))
            })?;
            if ip.to_string() != value {
                d.warnings.push((n, format!("knockd compares Target as text with the address as it prints it ({ip}), so it never matched {value:?}; knockerd compares addresses, so this door now opens")));
            }
            again("Target", d.target.map(|s| s.0), &mut d.warnings);
            d.target = Some((n, ip));
        }
        "TCPFLAGS" => apply_flags(value, &mut d.flags).map_err(|e| err(n, e))?,
        "USESYSLOG" => return Err(err(n, "UseSyslog takes no value: write `UseSyslog` alone (knockd reports a syntax error for `UseSyslog = ...`)".into())),
        k if OPTION_KEYS.contains(&k) => return Err(err(n, format!("{key_text} is a global option: it belongs in [options], not in door [{}] (knockd reports a syntax error)", d.section))),
        _ => return Err(err(n, format!("unknown directive {key_text:?} in door [{}]: knockd knows Sequence, One_Time_Sequences, Seq_Timeout (or Timeout), TCPFlags, Start_Command (or Command), Start_Command_6 (or Command_6), Cmd_Timeout, Stop_Command, Stop_Command_6 and Target (it reports a syntax error)", d.section))),
    }
    Ok(())
}

fn doors_error_door(e: &DoorsError) -> Option<String> {
    match e {
        DoorsError::Door { door, .. }
        | DoorsError::Identical(_, door)
        | DoorsError::Overlap(door, _)
        | DoorsError::KnockIsService(_, door, _) => Some(door.clone()),
        DoorsError::TooMany(_) => None,
    }
}

/// Loads a One_Time_Sequences file and checks each line means to knockerd what it means to
/// knockd.
fn one_time_file(value: &str) -> Result<OneTimeFile, String> {
    let path = Path::new(value);
    if value.is_empty() {
        return Err("One_Time_Sequences names no file".into());
    }
    // knockd opens the file with fopen(path, "r+"): it must be readable and writable
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot open {value} for reading and writing: {e} (used lines are marked in it)"
            )
        })?;
    let f = OneTimeFile::load(path).map_err(|e| e.to_string())?;
    for e in &f.entries {
        match parse_sequence(c_trim(&e.text)) {
            Ok((seq, _)) if seq == e.sequence => {}
            Ok((seq, _)) => {
                let show = |s: &[Service]| {
                    s.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                return Err(format!("{}:{}: knockd reads this line as {}, not {}: write it in Sequence syntax (port:udp)", path.display(), e.line, show(&seq), show(&e.sequence)));
            }
            Err(msg) => return Err(format!("{}:{}: {msg}", path.display(), e.line)),
        }
    }
    Ok(f)
}

/// The commands knockd runs for one address family, as it chooses them in `process_attempt()`:
/// the `_6` command falls back to the IPv4 one when it is not given at all, an empty start
/// command runs nothing (and then no stop command either), and the stop command runs only after
/// a start command.
fn effective(start: Option<&str>, stop: Option<&str>) -> (Option<String>, Option<String>) {
    match start.filter(|s| !s.is_empty()) {
        None => (None, None),
        Some(s) => (
            Some(s.to_string()),
            stop.filter(|s| !s.is_empty()).map(str::to_string),
        ),
    }
}

/// A door's knocks: its Sequence or its One_Time_Sequences file, and the line they are on.
fn knocks(
    file: &Path,
    d: &mut Draft,
    notes: &mut Vec<String>,
) -> Result<(usize, Vec<Service>, Option<OneTimeFile>), ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    // Sequence and One_Time_Sequences both set the door's knocks: the later line wins in knockd,
    // except that a Sequence after One_Time_Sequences is used once before the file takes over,
    // which knockerd cannot express.
    let knocks_line = match (&d.sequence, &d.one_time) {
        (Some((sl, _)), Some((ol, _))) => (*sl).max(*ol),
        (Some((l, _)), None) | (None, Some((l, _))) => *l,
        (None, None) => d.line,
    };
    let (sequence, one_time) = match (d.sequence.take(), d.one_time.take()) {
        (None, None) => {
            return Err(err(d.line, format!("door [{}] has an empty knock sequence: give it a Sequence or One_Time_Sequences", d.section)))
        }
        (Some((_, seq)), None) => (seq, None),
        (None, Some((_, f))) => (Vec::new(), Some(f)),
        (Some((sl, _)), Some((ol, f))) if sl < ol => {
            d.warnings.push((sl, format!("Sequence is ignored: One_Time_Sequences (line {ol}) replaces it, as in knockd")));
            (Vec::new(), Some(f))
        }
        (Some((sl, _)), Some((ol, _))) => {
            return Err(err(sl, format!("door [{}] has a Sequence after One_Time_Sequences (line {ol}): knockd would use this Sequence once and then the file, which knockerd does not do; keep one of them", d.section)))
        }
    };
    if let Some(f) = &one_time {
        if f.entries.is_empty() {
            d.warnings.push((d.line, format!("no one-time sequence is left in {}: the door is closed for good (knockd would refuse to start)", f.path.display())));
        }
        notes.push("the used line gets '#' over its first byte (and is synced to disk) before the start command runs; knockd marks it after starting the command".to_string());
    }

    Ok((knocks_line, sequence, one_time))
}

/// A door's commands and when its stop command runs.
struct Commands {
    start_command: Option<Command>,
    stop_command: Option<Command>,
    start_command_6: Option<Command>,
    stop_command_6: Option<Command>,
    stop_after: Duration,
}

/// The commands knockd runs for a door, for each address family, and when the stop command
/// runs.
fn commands(
    d: &mut Draft,
    cmd_timeout: u64,
    open_for: Duration,
    notes: &mut Vec<String>,
) -> Commands {
    fn text(c: &At<String>) -> Option<&str> {
        c.as_ref().map(|(_, s)| s.as_str())
    }
    let (start4, stop4) = effective(text(&d.start), text(&d.stop));
    let (start6, stop6) = effective(
        text(&d.start6).or(text(&d.start)),
        text(&d.stop6).or(text(&d.stop)),
    );
    if start4.is_none() && start6.is_none() {
        d.warnings.push((d.line, format!("door [{}] runs no command: knockd only logs OPEN SESAME, knockerd only logs the grant", d.section)));
    }
    for (stop, start, what) in [
        (&d.stop, &start4, "Stop_Command"),
        (&d.stop6, &start6, "Stop_Command_6"),
    ] {
        if let (Some((l, s)), None) = (stop, start) {
            if !s.is_empty() {
                d.warnings.push((*l, format!("{what} never runs: knockd (and knockerd) run a stop command only after a start command")));
            }
        }
    }
    // Door's _6 commands fall back to the IPv4 ones when None: store them only where they differ,
    // and make "nothing for IPv6" an explicit no-op.
    let six = |v6: &Option<String>, v4: &Option<String>| -> Option<Command> {
        if v6 == v4 {
            None
        } else {
            Some(Command::Shell(
                v6.clone().unwrap_or_else(|| NOTHING.to_string()),
            ))
        }
    };
    let start_command_6 = six(&start6, &start4);
    let stop_command_6 = six(&stop6, &stop4);
    if start_command_6
        .as_ref()
        .is_some_and(|c| *c == Command::Shell(NOTHING.into()))
        || stop_command_6
            .as_ref()
            .is_some_and(|c| *c == Command::Shell(NOTHING.into()))
    {
        notes.push(format!(
            "knockd runs nothing here for IPv6 knocks; {NOTHING:?} is the shell's no-op"
        ));
    }
    let start_command = start4.map(Command::Shell);
    let stop_command = stop4.map(Command::Shell);
    if start_command.is_some() || start_command_6.is_some() {
        notes.push(
            "commands run with /bin/sh -c as root, as in knockd; %IP% becomes the knocking address"
                .into(),
        );
    }
    let has_stop = stop_command.is_some() || stop_command_6.is_some();
    let stop_after = if has_stop {
        Duration::from_secs(cmd_timeout)
    } else {
        open_for
    };
    if has_stop {
        notes.push("stop_command runs stop_after (knockd's Cmd_Timeout) after the door opened; knockd counts from the end of the start command".into());
    }
    Commands {
        start_command,
        stop_command,
        start_command_6,
        stop_command_6,
        stop_after,
    }
}

fn build_door(
    file: &Path,
    mut d: Draft,
    taken: &mut HashSet<String>,
) -> Result<(Door, DoorMeta), ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    let mut notes = Vec::new();
    let name = door_name(&d.section, taken);
    if name != d.section {
        d.warnings.push((d.line, format!("door [{}] is called {name:?} in knockerd's logs and native configuration (1 to 32 letters, digits, '-' or '_', unique)", d.section)));
    }

    let (knocks_line, sequence, one_time) = knocks(file, &mut d, &mut notes)?;
    let window = match d.seq_timeout {
        None => Duration::from_secs(DEFAULT_SEQ_TIMEOUT),
        Some((l, s)) if s < 1 => {
            return Err(err(l, format!("Seq_Timeout = {s}: knockd accepts it, but it checks the timeout before each knock, so no knock after the first could ever count; give 1 or more seconds")))
        }
        Some((l, s)) if s as u64 > MAX_WINDOW.as_secs() => {
            d.warnings.push((l, format!("Seq_Timeout = {s} is cut to {} seconds, the longest knockerd keeps a knock in progress", MAX_WINDOW.as_secs())));
            notes.push(format!("knockd's Seq_Timeout was {s}"));
            MAX_WINDOW
        }
        Some((_, s)) => Duration::from_secs(s as u64),
    };
    let cmd_timeout = d.cmd_timeout.map_or(DEFAULT_CMD_TIMEOUT, |(_, s)| s as u64);
    let open_for = Duration::from_secs(cmd_timeout).clamp(Duration::from_secs(1), MAX_OPEN_FOR);

    let commands = commands(&mut d, cmd_timeout, open_for, &mut notes);
    let tcp_flags = flag_filter(&d.flags);
    if tcp_flags.is_some() {
        notes.push("a TCP knock whose flags do not match is ignored (it neither counts nor resets), as in knockd".into());
    }

    let spec = DoorSpec {
        name: name.clone(),
        sequence,
        window,
        tcp_flags,
        open: Vec::new(),
        open_for,
        kind: match &one_time {
            Some(f) => Kind::OneTime {
                lines: f.sequences(),
                used: None,
            },
            None => Kind::Sequence,
        },
        target: d.target.map(|t| t.1),
    };
    let door = Door {
        spec,
        protect: false,
        forward: None,
        nat_source: None,
        nat_networks: Vec::new(),
        repeat_start_command: false,
        start_command: commands.start_command,
        stop_command: commands.stop_command,
        start_command_6: commands.start_command_6,
        stop_command_6: commands.stop_command_6,
        stop_after: commands.stop_after,
        stop_after_client_timeout: false,
        connections: None,
        grant_prefix: Default::default(),
        interfaces: Vec::new(),
        protect_elsewhere: true,
        actions: Vec::new(),
        kind: match one_time {
            Some(file) => DoorKind::OneTime { file },
            None => DoorKind::Sequence,
        },
        line: d.line,
    };
    let mut warnings = d.warnings;
    warnings.sort_by_key(|w| w.0);
    let meta = DoorMeta {
        section: d.section,
        line: d.line,
        knocks_line,
        warnings,
        notes,
        refused_natively: false,
    };
    Ok((door, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Knockd, ConfigError> {
        parse(Path::new("knockd.conf"), text)
    }

    #[test]
    fn sequences_in_knockd_syntax() {
        let ok = |s: &str| parse_sequence(s).expect(s);
        assert_eq!(
            ok("7000, 8000:udp,9000:TCP ,1: Udp"),
            (
                vec![
                    Service::tcp(7000),
                    Service::udp(8000),
                    Service::tcp(9000),
                    Service::udp(1)
                ],
                vec![]
            )
        );
        // atoi: a valid leading number counts, the rest is ignored, with a warning
        let (seq, w) = ok("7000,8000 # ssh");
        assert_eq!(seq, vec![Service::tcp(7000), Service::tcp(8000)]);
        assert!(w[0].contains("as tcp/8000 and ignores the rest"), "{w:?}");
        let (seq, w) = ok("7000/udp");
        assert_eq!(seq, vec![Service::tcp(7000)]);
        assert!(w[0].contains("write port:udp"), "{w:?}");
        let (seq, w) = ok("7000:udp:x");
        assert_eq!(seq, vec![Service::udp(7000)]);
        assert!(w[0].contains("second ':'"), "{w:?}");
        let bad = |s: &str| parse_sequence(s).expect_err(s).to_string();
        assert!(bad("7000,70000").contains("port 70000 is invalid"));
        assert!(bad("7000,70000x").contains("port 70000x is invalid"));
        assert!(
            bad("7000,abc").contains("read it as port 0"),
            "{}",
            bad("7000,abc")
        );
        assert!(
            bad("7000,-1").contains("read it as port 65535"),
            "{}",
            bad("7000,-1")
        );
        assert!(bad("udp/7000").contains("port:udp"));
        assert!(bad("7000,,8000").contains("stray comma"));
        assert!(bad("").contains("port 0"));
        assert!(bad("0").contains("read it as port 0"));
        assert!(bad("7000:sctp").contains("unknown protocol"));
        let max: Vec<String> = (1000..1032).map(|p| p.to_string()).collect();
        assert_eq!(parse_sequence(&max.join(",")).map(|s| s.0.len()), Ok(32));
        let over: Vec<String> = (1000..1033).map(|p| p.to_string()).collect();
        assert!(parse_sequence(&over.join(","))
            .expect_err("33")
            .to_string()
            .contains("too many ports"));
    }

    #[test]
    fn flags_as_knockd_reads_them() {
        let mut st = [None; 6];
        apply_flags("syn,!ACK", &mut st).expect("valid");
        assert_eq!(
            flag_filter(&st).map(|f| f.to_string()),
            Some("syn,!ack".into())
        );
        // a later word overrides an earlier one, across lines too
        apply_flags("!syn,fin", &mut st).expect("valid");
        assert_eq!(
            flag_filter(&st).map(|f| f.to_string()),
            Some("fin,!syn,!ack".into())
        );
        let mut st = [None; 6];
        assert!(apply_flags("syn, !ack", &mut st)
            .expect_err("space")
            .contains("no spaces"));
        assert!(apply_flags("", &mut st)
            .expect_err("empty")
            .contains("\"\""));
        assert!(apply_flags("ece", &mut st)
            .expect_err("ece")
            .contains("\"ECE\""));
        assert!(apply_flags("syn,", &mut st).is_err());
        assert_eq!(flag_filter(&[None; 6]), None);
    }

    #[test]
    fn seconds_as_knockd_reads_them() {
        assert_eq!(seconds("Seq_Timeout", " 15 "), Ok(15));
        assert_eq!(seconds("Seq_Timeout", "-3"), Ok(-3));
        assert!(seconds("Seq_Timeout", "15s")
            .expect_err("unit")
            .contains("read it as 15"));
        assert!(seconds("Seq_Timeout", "").is_err());
        assert!(seconds("Seq_Timeout", "99999999999").is_err());
        assert_eq!(atoi("  42abc"), 42);
        assert_eq!(atoi("-7"), -7);
        assert_eq!(atoi("x"), 0);
    }

    #[test]
    fn door_names_are_native_and_unique() {
        let mut taken = HashSet::new();
        assert_eq!(door_name("openSSH", &mut taken), "openSSH");
        assert_eq!(door_name("openSSH", &mut taken), "openSSH-2");
        assert_eq!(door_name("open ssh", &mut taken), "open_ssh");
        assert_eq!(door_name("", &mut taken), "door");
        assert_eq!(door_name("é", &mut taken), "_");
        let long = "x".repeat(40);
        let a = door_name(&long, &mut taken);
        let b = door_name(&long, &mut taken);
        assert_eq!(a.len(), 32);
        assert!(b.len() <= 32 && b.ends_with("-2"), "{b}");
    }

    #[test]
    fn commands_per_family_follow_knockd() {
        let door = |extra: &str| {
            let k = p(&format!("[d]\nsequence = 7000,9000,8000\n{extra}")).expect("valid");
            k.config.doors[0].clone()
        };
        let sh = |s: &str| Some(Command::Shell(s.to_string()));
        // _6 falls back to the IPv4 command when not given
        let d = door("start_command = a\nstop_command = b\n");
        assert_eq!(
            (d.start_command.clone(), d.start_command_6.clone()),
            (sh("a"), None)
        );
        assert_eq!(
            (d.stop_command.clone(), d.stop_command_6.clone()),
            (sh("b"), None)
        );
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(d.start_command_for(v6), sh("a").as_ref());
        // an explicitly empty _6 command means nothing for IPv6, stop included
        let d = door("start_command = a\nstop_command = b\nstart_command_6 =\n");
        assert_eq!(
            (d.start_command_6.clone(), d.stop_command_6.clone()),
            (sh(":"), sh(":"))
        );
        let d = door("start_command = a\nstop_command = b\nstop_command_6 =\n");
        assert_eq!(
            (d.start_command_6.clone(), d.stop_command_6.clone()),
            (None, sh(":"))
        );
        // only IPv6
        let d = door("command_6 = x %IP%\n");
        assert_eq!(
            (d.start_command.clone(), d.start_command_6.clone()),
            (None, sh("x %IP%"))
        );
        // an empty start command runs nothing, and then no stop command either
        let k = p("[d]\nsequence = 7000,9000,8000\nstart_command =\nstop_command = b\n")
            .expect("valid");
        let d = &k.config.doors[0];
        assert_eq!(
            (d.start_command.clone(), d.stop_command.clone()),
            (None, None)
        );
        assert!(
            k.warnings
                .iter()
                .any(|w| w.contains("Stop_Command never runs")),
            "{:?}",
            k.warnings
        );
        assert!(
            k.warnings.iter().any(|w| w.contains("runs no command")),
            "{:?}",
            k.warnings
        );
    }

    #[test]
    fn timeouts_map_to_window_open_for_and_stop_after() {
        let d = |extra: &str| {
            p(&format!(
                "[d]\nsequence = 7000,9000,8000\ncommand = a\n{extra}"
            ))
            .map(|k| k.config.doors[0].clone())
        };
        let x = d("").expect("defaults");
        assert_eq!(x.spec.window, Duration::from_secs(25));
        assert_eq!(x.spec.open_for, Duration::from_secs(10));
        assert_eq!(x.stop_after, x.spec.open_for);
        let x = d("stop_command = b\ncmd_timeout = 0\n").expect("zero");
        assert_eq!(x.stop_after, Duration::ZERO);
        assert_eq!(x.spec.open_for, Duration::from_secs(1));
        let x = d("stop_command = b\ncmd_timeout = 200000\n").expect("long");
        assert_eq!(x.stop_after, Duration::from_secs(200_000));
        assert_eq!(x.spec.open_for, MAX_OPEN_FOR);
        let x = d("timeout = 7200\n").expect("clamped");
        assert_eq!(x.spec.window, MAX_WINDOW);
        let e = d("seq_timeout = 0\n").expect_err("zero window").to_string();
        assert!(
            e.starts_with("knockd.conf:4:") && e.contains("1 or more"),
            "{e}"
        );
        let e = d("cmd_timeout = -1\n").expect_err("negative").to_string();
        assert!(e.starts_with("knockd.conf:4:"), "{e}");
    }
}
