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

use crate::config::{toml_comment as comment, toml_quote as quote};
use std::collections::HashSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use knocker_engine::{
    validate_doors_compat, DoorsError, FlagFilter, Kind, Proto, SequenceDoor, Service, TcpFlags,
    MAX_KNOCKS, MAX_OPEN_FOR, MAX_WINDOW,
};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::config::{
    Command, Config, ConfigError, Door, OnStop, DEFAULT_GRANT_MARK, DEFAULT_NFLOG_GROUP,
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
/// [`PidFile`] and [`KnockdLog`].
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
    if let Some(name) = &k.config.interface {
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

/// What `knockerd import-knockd FILE` prints: the native TOML for a knockd.conf. The interface
/// need not exist on this host.
pub fn import(path: &Path) -> Result<(String, Vec<String>), ConfigError> {
    let k = read_and_parse(path)?;
    Ok((k.to_toml(), k.warnings.clone()))
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

/// Parses knockd's `Sequence` syntax, `port[:tcp|udp],...` (TCP by default, at most 32), as
/// knockd's `parse_port_sequence()` does: a port is read with `atoi`, so text after a valid
/// leading number is ignored (`8000 # ssh` is port 8000) and so is anything after a second `:`;
/// both come back as warnings. What `atoi` would turn into garbage (no number, port 0, a negative
/// number) is refused, and so is what knockd refuses (a port over 65535, a protocol other than
/// tcp or udp, more than 32 knocks).
pub fn parse_sequence(text: &str) -> Result<(Vec<Service>, Vec<String>), String> {
    let items: Vec<&str> = text.split(',').collect();
    if items.len() > MAX_KNOCKS {
        return Err(format!(
            "too many ports in the knock sequence ({}): knockd allows at most {MAX_KNOCKS}",
            items.len()
        ));
    }
    let mut warnings = Vec::new();
    let mut seq = Vec::with_capacity(items.len());
    for item in &items {
        let mut parts = item.split(':');
        let port_text = c_trim(parts.next().unwrap_or(""));
        let proto_text = parts.next().map(c_trim);
        let rest: Vec<&str> = parts.collect();
        if port_text.is_empty() {
            return Err(format!(
                "empty port in the sequence {:?} (a stray comma?): knockd would read it as port 0",
                c_trim(text)
            ));
        }
        let value = atoi(port_text);
        let digits = port_text.bytes().take_while(u8::is_ascii_digit).count();
        if value > 65535 {
            return Err(format!(
                "port {port_text} is invalid: a port is a number from 1 to 65535"
            ));
        }
        if digits == 0 || value < 1 {
            let hint = if port_text.contains('/') {
                " (knockd's syntax is port:udp, not udp/port)"
            } else {
                ""
            };
            // knockd stores (unsigned short)atoi(port)
            return Err(format!(
                "bad port {port_text:?} in the sequence: a port is a number from 1 to 65535{hint}; knockd would silently read it as port {}",
                value as u16
            ));
        }
        let port = value as u16;
        let proto = match proto_text.map(|p| p.to_ascii_uppercase()) {
            None => Proto::Tcp,
            Some(p) if p == "TCP" => Proto::Tcp,
            Some(p) if p == "UDP" => Proto::Udp,
            Some(_) => {
                return Err(format!(
                    "unknown protocol {:?} in the knock sequence: use tcp or udp",
                    proto_text.unwrap_or("")
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
            Section::Options => match key.as_str() {
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
                        interface = Some((n, value.to_string()));
                    }
                }
                "USESYSLOG" => return Err(err(n, "UseSyslog takes no value: write `UseSyslog` alone (knockd reports a syntax error for `UseSyslog = ...`)".into())),
                k if DOOR_KEYS.contains(&k) => return Err(err(n, format!("{key_text} is a door directive: it belongs under a door's [name], not in [options] (knockd reports a syntax error)"))),
                _ => return Err(err(n, format!("unknown directive {key_text:?} in [options]: knockd knows UseSyslog, LogFile, PidFile and Interface there (it reports a syntax error)"))),
            },
            Section::Door(idx) => {
                let Some(d) = drafts.get_mut(idx) else { continue };
                let again = |what: &str, prev: Option<usize>, w: &mut Vec<(usize, String)>| {
                    if let Some(p) = prev {
                        w.push((n, format!("{what} was already given at line {p}; this one counts, as in knockd")));
                    }
                };
                match key.as_str() {
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
            }
        }
    }

    let mut taken = HashSet::new();
    let mut doors = Vec::new();
    let mut meta = Vec::new();
    for d in drafts {
        let (door, m) = build_door(file, d, &mut taken)?;
        doors.push(door);
        meta.push(m);
    }

    let specs: Vec<SequenceDoor> = doors.iter().map(|d| d.spec.clone()).collect();
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
        interface: Some(interface.map_or_else(|| DEFAULT_INTERFACE.to_string(), |i| i.1)),
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        server_key: PathBuf::from(crate::config::DEFAULT_SERVER_KEY),
        clients: PathBuf::from(crate::config::DEFAULT_CLIENTS),
        worker_user: None,
        // knockd only watches packets: a knock port may be a live service's
        drop_knocks: false,
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
    let f = OneTimeFile::load(path).map_err(|(_, msg)| msg)?;
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
    let tcp_flags = flag_filter(&d.flags);
    if tcp_flags.is_some() {
        notes.push("a TCP knock whose flags do not match is ignored (it neither counts nor resets), as in knockd".into());
    }

    let spec = SequenceDoor {
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
            None => Kind::Static,
        },
        target: d.target.map(|t| t.1),
    };
    let door = Door {
        spec,
        protect: false,
        repeat_start_command: false,
        start_command,
        stop_command,
        start_command_6,
        stop_command_6,
        stop_after,
        one_time,
        rotating: None,
        spa_port: None,
        syn_port: None,
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

// ---- import-knockd: the native TOML -------------------------------------------------------------

impl Knockd {
    /// The native TOML with the same meaning: `knockerd check --config` reads it back into the
    /// same [`Config`] (modulo file names and lines), except where a `# warning:` says knockerd's
    /// own format refuses what knockd accepted.
    pub fn to_toml(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        comment(
            &mut out,
            "",
            &format!(
                "knockerd configuration imported from {} by `knockerd import-knockd`.",
                c.file.display()
            ),
        );
        comment(&mut out, "", "Check it with `knockerd check --config FILE`. `# note:` lines say where knockerd's meaning");
        comment(&mut out, "", "differs from knockd's, `# warning:` lines need a look; docs/knockd.md lists every difference.");
        out.push_str("#\n");
        comment(
            &mut out,
            "note: ",
            "for every door: a repeat of the knock just matched (a retransmitted SYN, a duplicated",
        );
        comment(&mut out, "note: ", "datagram) never resets a knock, and neither do ports of other doors; knockd resets on both.");
        comment(&mut out, "note: ", "for every door with a stop command: a knock that completes while the door is already open for that");
        comment(&mut out, "note: ", "address (until its stop command ran) does not run start_command again; knockd runs it each time.");
        comment(&mut out, "note: ", "for every door: knockerd drops its knock ports, so they look filtered; knockd only watched them, and");
        comment(&mut out, "note: ", "so does `--knockd-conf`. A knock port that is a live service's (wake-on-connect) needs `--knockd-conf`.");
        comment(
            &mut out,
            "note: ",
            "for every door: a pending stop command runs at once when knockerd stops cleanly.",
        );
        if self.options.use_syslog {
            comment(&mut out, "note: ", "UseSyslog has no native setting: knockerd logs to stderr, which systemd sends to the journal");
            comment(&mut out, "note: ", "(journalctl -u knockerd) and on to syslog where rsyslog is installed. `--knockd-conf` honours it.");
        }
        if let Some(f) = &self.options.log_file {
            comment(&mut out, "note: ", &format!("LogFile = {} has no native setting: read the journal (journalctl -u knockerd),", f.display()));
            comment(
                &mut out,
                "note: ",
                "or let rsyslog write the file. `--knockd-conf` honours it.",
            );
        }
        if let Some(f) = &self.options.pid_file {
            comment(&mut out, "note: ", &format!("PidFile = {} has no native setting: systemd tracks the process (systemctl status", f.display()));
            comment(&mut out, "note: ", "knockerd). `--knockd-conf` honours it.");
        }
        for w in &self.global_warnings {
            comment(&mut out, "warning: ", w);
        }
        out.push_str("\n[daemon]\n");
        if let Some(i) = &c.interface {
            if !self.interface_given {
                comment(&mut out, "note: ", &format!("knockd.conf names no Interface, so knockd listened on {DEFAULT_INTERFACE} (unless started with -i)."));
            }
            comment(&mut out, "note: ", "only knocks arriving on this interface count: knockerd matches it (iifname) in its");
            comment(
                &mut out,
                "note: ",
                "nftables rule instead of capturing packets on it.",
            );
            out.push_str(&format!("interface = {}\n", quote(i)));
        }
        for (d, m) in c.doors.iter().zip(&self.meta) {
            out.push_str(&format!("\n[door.{}]\n", d.spec.name));
            comment(
                &mut out,
                "",
                &format!("knockd's [{}], line {}", m.section, m.line),
            );
            for (l, w) in &m.warnings {
                match *l == m.line {
                    true => comment(&mut out, "warning: ", w),
                    false => comment(&mut out, "warning: ", &format!("line {l}: {w}")),
                }
            }
            if m.refused_natively {
                comment(&mut out, "warning: ", "knockerd's own format refuses this door as it is: fix what the warning says before `knockerd check --config` accepts this file");
            }
            if d.start_command.is_none() && d.start_command_6.is_none() {
                comment(&mut out, "warning: ", "knockerd's own format refuses a door that opens nothing and runs nothing: give it a start_command or remove it");
            }
            for n in &m.notes {
                comment(&mut out, "note: ", n);
            }
            match &d.one_time {
                Some(f) => {
                    out.push_str("kind = \"one-time\"\n");
                    out.push_str(&format!(
                        "one_time_sequences = {}\n",
                        quote(&f.path.to_string_lossy())
                    ));
                }
                None => {
                    let knocks: Vec<String> = d
                        .spec
                        .sequence
                        .iter()
                        .map(|s| match s.proto {
                            Proto::Tcp => quote(&s.port.to_string()),
                            Proto::Udp => quote(&format!("{}:udp", s.port)),
                        })
                        .collect();
                    out.push_str(&format!("sequence = [{}]\n", knocks.join(", ")));
                }
            }
            out.push_str(&format!(
                "window = {}   # knockd's Seq_Timeout, seconds from the first knock\n",
                d.spec.window.as_secs()
            ));
            if let Some(f) = d.spec.tcp_flags {
                out.push_str(&format!("tcp_flags = {}\n", quote(&f.to_string())));
            }
            if let Some(t) = d.spec.target {
                out.push_str(&format!("target = {}\n", quote(&t.to_string())));
            }
            out.push_str("open = []   # a knockd door opens nothing itself: its commands do\n");
            out.push_str("protect = false\n");
            out.push_str(&format!(
                "open_for = {}   # knockd's Cmd_Timeout; a door that opens nothing has no grant it times\n",
                d.spec.open_for.as_secs()
            ));
            let commands = [
                ("start_command", &d.start_command),
                ("start_command_6", &d.start_command_6),
                ("stop_command", &d.stop_command),
                ("stop_command_6", &d.stop_command_6),
            ];
            if commands.iter().any(|(_, c)| c.is_some()) {
                out.push_str("shell = true\n");
            }
            for (key, cmd) in commands {
                match cmd {
                    Some(Command::Shell(s)) => out.push_str(&format!("{key} = {}\n", quote(s))),
                    Some(Command::Argv(v)) => {
                        out.push_str(&format!("{key} = {}\n", quote(&v.join(" "))))
                    }
                    None => {}
                }
            }
            if d.stop_command.is_some() || d.stop_command_6.is_some() {
                out.push_str(&format!(
                    "stop_after = {}   # knockd's Cmd_Timeout\n",
                    d.stop_after.as_secs()
                ));
            }
        }
        out
    }
}

// ---- PidFile --------------------------------------------------------------------------------------

/// knockd's `PidFile`: the daemon's pid, written at start, removed at a clean exit (on drop).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// Writes this process's pid to `path` (atomically: a temporary file renamed over it). Keep the
/// returned guard alive while the daemon runs; dropping it removes the file.
pub fn write_pid_file(path: &Path) -> Result<PidFile, String> {
    let pid = std::process::id();
    let name = path
        .file_name()
        .ok_or_else(|| format!("PidFile {} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{pid}.tmp"));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        writeln!(f, "{pid}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write PidFile {}: {e}", path.display())
    })?;
    Ok(PidFile {
        path: path.to_path_buf(),
        pid,
    })
}

impl PidFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // only our own: another knockerd may have taken the file over since
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.pid.to_string()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

// ---- LogFile and UseSyslog ------------------------------------------------------------------------

/// The syslog socket of the local host.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// The longest message sent to syslog (knockd formats into 1024 bytes).
const SYSLOG_MAX: usize = 1024;
/// syslog facility user, as knockd's `openlog("knockd", 0, LOG_USER)`.
const FACILITY_USER: u8 = 1;

/// knockd's `LogFile` and `UseSyslog` as a `tracing` layer: every event at INFO or above is
/// appended to the log file (`[YYYY-MM-DD HH:MM:SS UTC] message`) and sent to syslog (RFC 3164
/// over the `/dev/log` datagram socket, facility user, tag `knockerd[pid]`; INFO is sent as
/// notice, as knockd logs). Clones share one state, so the daemon can keep one to reconfigure.
/// Writing never blocks the daemon and never fails it: a message that cannot be written is
/// dropped and counted.
#[derive(Clone)]
pub struct KnockdLog {
    inner: Arc<Mutex<Sinks>>,
}

struct Sinks {
    syslog_path: PathBuf,
    file: Option<(PathBuf, File)>,
    syslog: Option<UnixDatagram>,
    use_syslog: bool,
    dropped: u64,
}

pub(super) static REGISTERED_LOG: OnceLock<KnockdLog> = OnceLock::new();

/// Makes [`load_source`](super::load::load_source) reconfigure `log` each time it loads a knockd.conf (at start and on
/// SIGHUP): the log file is reopened (after logrotate, say) and UseSyslog follows the file, as
/// knockd does on reload. Only the first registration counts.
pub fn register_log(log: &KnockdLog) {
    let _ = REGISTERED_LOG.set(log.clone());
}

impl KnockdLog {
    /// A log writing where `options` say; returns what could not be opened, to be logged (knockd
    /// warns and runs on).
    pub fn new(options: &KnockdOptions) -> (KnockdLog, Vec<String>) {
        Self::with_syslog_socket(options, Path::new(SYSLOG_SOCKET))
    }

    /// Like [`KnockdLog::new`], with another syslog socket (for tests).
    pub fn with_syslog_socket(options: &KnockdOptions, socket: &Path) -> (KnockdLog, Vec<String>) {
        let log = KnockdLog {
            inner: Arc::new(Mutex::new(Sinks {
                syslog_path: socket.to_path_buf(),
                file: None,
                syslog: None,
                use_syslog: false,
                dropped: 0,
            })),
        };
        let problems = log.reconfigure(options);
        (log, problems)
    }

    fn sinks(&self) -> std::sync::MutexGuard<'_, Sinks> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies (new) options: reopens the log file, connects or disconnects syslog.
    pub fn reconfigure(&self, options: &KnockdOptions) -> Vec<String> {
        let mut problems = Vec::new();
        let mut s = self.sinks();
        s.file = match &options.log_file {
            None => None,
            Some(path) => match OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(path)
            {
                Ok(f) => Some((path.clone(), f)),
                Err(e) => {
                    problems.push(format!(
                        "cannot open LogFile {}: {e}; logging without it",
                        path.display()
                    ));
                    None
                }
            },
        };
        s.use_syslog = options.use_syslog;
        s.syslog = None;
        if options.use_syslog {
            match connect_syslog(&s.syslog_path) {
                Ok(sock) => s.syslog = Some(sock),
                Err(e) => problems.push(format!(
                    "cannot reach syslog at {}: {e}; will retry with each message",
                    s.syslog_path.display()
                )),
            }
        }
        problems
    }

    /// Messages that could not be written so far.
    pub fn dropped(&self) -> u64 {
        self.sinks().dropped
    }

    /// Writes one message at `level` to the log file and syslog, as an event would.
    pub fn write(&self, level: Level, message: &str) {
        if level > Level::INFO {
            return;
        }
        let message = message.replace(['\n', '\r'], " ");
        let mut s = self.sinks();
        let mut dropped = 0;
        if let Some((_, f)) = &mut s.file {
            let prefix = match level {
                Level::ERROR => "error: ",
                Level::WARN => "warning: ",
                _ => "",
            };
            if writeln!(f, "[{}] {prefix}{message}", utc_stamp(SystemTime::now())).is_err() {
                dropped += 1;
            }
        }
        if s.use_syslog {
            let severity: u8 = match level {
                Level::ERROR => 3,
                Level::WARN => 4,
                _ => 5,
            };
            let mut datagram = format!(
                "<{}>knockerd[{}]: ",
                FACILITY_USER * 8 + severity,
                std::process::id()
            );
            let mut end = SYSLOG_MAX.min(message.len());
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            datagram.push_str(&message[..end]);
            if s.syslog.is_none() {
                s.syslog = connect_syslog(&s.syslog_path).ok();
            }
            let sent = match &s.syslog {
                Some(sock) => match sock.send(datagram.as_bytes()) {
                    Ok(_) => true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                    // the syslog daemon restarted: reconnect once
                    Err(_) => match connect_syslog(&s.syslog_path) {
                        Ok(sock) => {
                            let ok = sock.send(datagram.as_bytes()).is_ok();
                            s.syslog = Some(sock);
                            ok
                        }
                        Err(_) => {
                            s.syslog = None;
                            false
                        }
                    },
                },
                None => false,
            };
            if !sent {
                dropped += 1;
            }
        }
        s.dropped += dropped;
    }
}

fn connect_syslog(path: &Path) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// `YYYY-MM-DD HH:MM:SS UTC` (no time zone database is read: the daemon logs in UTC).
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // civil_from_days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Collects an event's message and fields into one line.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push_str(&format!(" {}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?}"));
        } else {
            self.fields
                .push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for KnockdLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        self.write(level, &format!("{}{}", line.message, line.fields));
    }
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
        let bad = |s: &str| parse_sequence(s).expect_err(s);
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

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(utc_stamp(t), "2000-02-29 01:01:01 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_747_699_199); // 2025-05-19 23:59:59
        assert_eq!(utc_stamp(t), "2025-05-19 23:59:59 UTC");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("knockerd-knockd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn pid_file_is_written_and_removed() {
        let dir = scratch("pid");
        let path = dir.join("knockd.pid");
        {
            let guard = write_pid_file(&path).expect("write");
            assert_eq!(guard.path(), path);
            let text = std::fs::read_to_string(&path).expect("read");
            assert_eq!(text, format!("{}\n", std::process::id()));
        }
        assert!(!path.exists());
        // a file another process took over is left alone
        {
            let _guard = write_pid_file(&path).expect("write");
            std::fs::write(&path, "1\n").expect("overwrite");
        }
        assert!(path.exists());
        assert!(write_pid_file(&dir.join("no/such/dir/pid")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_file_and_syslog() {
        use tracing_subscriber::layer::SubscriberExt;
        let dir = scratch("log");
        let sock_path = dir.join("log.sock");
        let server = UnixDatagram::bind(&sock_path).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let log_path = dir.join("knockd.log");
        let options = KnockdOptions {
            use_syslog: true,
            log_file: Some(log_path.clone()),
            pid_file: None,
        };
        let (log, problems) = KnockdLog::with_syslog_socket(&options, &sock_path);
        assert!(problems.is_empty(), "{problems:?}");
        let subscriber = tracing_subscriber::registry().with(log.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("door=ssh src=192.0.2.7 grant for 10s");
            tracing::warn!(door = "ssh", "something odd");
            tracing::debug!("not logged");
        });
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).expect("first datagram");
        let pid = std::process::id();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).expect("text"),
            format!("<13>knockerd[{pid}]: door=ssh src=192.0.2.7 grant for 10s")
        );
        let n = server.recv(&mut buf).expect("second datagram");
        assert_eq!(
            std::str::from_utf8(&buf[..n]).expect("text"),
            format!("<12>knockerd[{pid}]: something odd door=ssh")
        );
        let text = std::fs::read_to_string(&log_path).expect("log file");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with('[')
                && lines[0].ends_with(" UTC] door=ssh src=192.0.2.7 grant for 10s"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("] warning: something odd door=ssh"),
            "{text}"
        );
        assert_eq!(log.dropped(), 0);

        // reload: the file is reopened (after logrotate moved it), syslog turned off
        std::fs::rename(&log_path, dir.join("knockd.log.1")).expect("rotate");
        let problems = log.reconfigure(&KnockdOptions {
            use_syslog: false,
            ..options.clone()
        });
        assert!(problems.is_empty(), "{problems:?}");
        log.write(Level::INFO, "after\nrotation");
        assert!(std::fs::read_to_string(&log_path)
            .expect("new file")
            .ends_with("] after rotation\n"));
        server.set_nonblocking(true).expect("nonblocking");
        assert!(server.recv(&mut buf).is_err(), "syslog is off");

        // an unreachable syslog and an unwritable file are reported, never fatal
        let (log, problems) = KnockdLog::with_syslog_socket(
            &KnockdOptions {
                use_syslog: true,
                log_file: Some(dir.join("no/such/dir/log")),
                pid_file: None,
            },
            &dir.join("nobody-listens"),
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        log.write(Level::ERROR, "lost");
        assert_eq!(log.dropped(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
