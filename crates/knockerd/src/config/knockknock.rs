//! knockknock's server files, read as they are (`/etc/knockknock.d`, as knockknock-genprofile
//! writes them), and its profiles as doors:
//!
//! - `config`: `[main]` with `delay` (seconds a grant lasts, default 15) and `error_window`
//!   (how many counters from the stored one are tried, default 20); a missing file or section
//!   means the defaults, as knockknock-daemon says ("assuming defaults");
//! - `profiles/NAME/`: `cipher.key` and `mac.key` (the first line of each is base64 of 16
//!   bytes; the files must be their owner's alone, 0600, as genprofile makes them), `counter`
//!   (decimal on its first line: the next counter expected, rewritten in place after each knock)
//!   and `config` (`[main]` `knock_port = N`).
//!
//! The INI files are read as Python's ConfigParser reads them: `[section]` lines, `key = value`
//! or `key: value` (keys case-insensitive), `#` and `;` comment lines, `[DEFAULT]` values as
//! fallbacks; continuation lines are refused (nothing knockknock writes has them). Keys
//! knockknock does not read are warnings, not errors: knockknock ignores them too.
//!
//! A profile is a door whose knocks are knockknock SYNs to its knock port (the knocker table's
//! `knocker-syn` rule logs SYNs to that port, with their headers, and drops them). Its decoder
//! holds the keys and the next counter; the engine uses a counter up once
//! ([`knocker_engine::SpaRequest::counter`]), and the root process writes the counter file before
//! the grant ([`write_counter`]).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use knocker_engine::{
    DoorSpec, Kind, Proto, RateLimit, Refusal, Service, Spa, SpaDecode, SpaError, SpaPrecheck,
    SpaRequest,
};
use knocker_wire::knockknock::{self as wire, Key, Keys};

use super::{read_bounded, toml_quote, Config, ConfigError, Door, DoorKind, DEFAULT_STATE_DIR};

/// The daemon's configuration file in a knockknock directory.
pub const DAEMON_CONFIG: &str = "config";
/// The directory of profiles in a knockknock directory.
pub const PROFILES: &str = "profiles";
/// The most counters a knock is tried with (each costs one AES block and one HMAC-SHA1).
pub const MAX_WINDOW: u32 = 1000;
/// How long an identical packet is called a replay before any key is tried (the engine's
/// digest of the raw packet); the counter refuses it after that all the same.
const SEEN_SECS: u64 = 60;

/// knockknock-daemon's `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConf {
    /// Seconds a grant lasts.
    pub delay: u64,
    /// How many counters from the stored one are tried.
    pub error_window: u32,
}

impl Default for DaemonConf {
    fn default() -> Self {
        DaemonConf {
            delay: wire::DEFAULT_DELAY,
            error_window: wire::DEFAULT_WINDOW,
        }
    }
}

/// One server profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The directory's name.
    pub name: String,
    pub dir: PathBuf,
    pub keys: Keys,
    /// The next counter expected (the `counter` file).
    pub counter: u32,
    pub knock_port: u16,
}

fn err(file: &Path, line: Option<usize>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// One `key = value` of an INI file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// Reads INI text as Python 2's ConfigParser does (see the module docs).
fn parse_ini(file: &Path, text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut section: Option<String> = None;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_end();
        if trimmed.trim_start().is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            return Err(err(file, Some(line), "a line that starts with blanks continues the value above it in knockknock's format; knockknock's files have none: remove the leading blanks"));
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(err(
                    file,
                    Some(line),
                    "a section header is `[name]`: close it with `]`",
                ));
            };
            section = Some(rest[..end].to_string());
            continue;
        }
        let Some(at) = trimmed.find(['=', ':']) else {
            return Err(err(
                file,
                Some(line),
                format!("{trimmed:?} is not `key = value`: write e.g. `knock_port = 8888`"),
            ));
        };
        let Some(sec) = &section else {
            return Err(err(
                file,
                Some(line),
                "a value before any section: put `[main]` above it",
            ));
        };
        let mut value = trimmed[at + 1..].trim();
        // ConfigParser drops a `;` comment that follows a blank
        if let Some(c) = value.find(" ;").or_else(|| value.find("\t;")) {
            value = value[..c].trim_end();
        }
        out.push(Entry {
            section: sec.clone(),
            key: trimmed[..at].trim().to_ascii_lowercase(),
            value: value.to_string(),
            line,
        });
    }
    Ok(out)
}

/// The value of `key` in `[main]`, else in `[DEFAULT]` (the last one written wins).
fn get<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Entry> {
    let last_in = |section: &str| {
        entries
            .iter()
            .rev()
            .find(|e| e.section == section && e.key == key)
    };
    last_in("main").or_else(|| last_in("DEFAULT"))
}

/// Warnings for what knockknock would not read: other sections, other keys.
fn unread(file: &Path, entries: &[Entry], known: &[&str], warnings: &mut Vec<String>) {
    for e in entries {
        if !matches!(e.section.as_str(), "main" | "DEFAULT") || !known.contains(&e.key.as_str()) {
            warnings.push(format!(
                "{}:{}: [{}] {} is not read by knockknock, nor by knockerd",
                file.display(),
                e.line,
                e.section,
                e.key
            ));
        }
    }
}

/// A decimal number as Python's `int()` reads it: digits, blanks around them.
fn number(file: &Path, e: &Entry, min: u64, max: u64, fix: &str) -> Result<u64, ConfigError> {
    match e.value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(err(
            file,
            Some(e.line),
            format!(
                "{} = {:?}: must be a whole number from {min} to {max}{fix}",
                e.key, e.value
            ),
        )),
    }
}

/// Reads knockknock-daemon's `config`; a missing file is the defaults, as for knockknock.
pub fn load_daemon_conf(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<DaemonConf, ConfigError> {
    if !path.exists() {
        return Ok(DaemonConf::default());
    }
    parse_daemon_conf(path, &text_of(path)?, warnings)
}

/// knockknock-daemon's `config` from its text; `path` names it in errors and warnings.
pub fn parse_daemon_conf(
    path: &Path,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<DaemonConf, ConfigError> {
    let entries = parse_ini(path, text)?;
    unread(path, &entries, &["delay", "error_window"], warnings);
    let mut conf = DaemonConf::default();
    if let Some(e) = get(&entries, "delay") {
        conf.delay = number(path, e, 1, 86_400, " (seconds a grant lasts)")?;
    }
    if let Some(e) = get(&entries, "error_window") {
        conf.error_window = number(
            path,
            e,
            1,
            u64::from(MAX_WINDOW),
            " (how many counters are tried; knockknock's default is 20)",
        )? as u32;
    }
    Ok(conf)
}

fn text_of(path: &Path) -> Result<String, ConfigError> {
    String::from_utf8(read_bounded(path)?)
        .map_err(|_| err(path, None, "cannot read: not UTF-8 text"))
}

/// Reads a key file: its owner's alone (0600), its first line base64 of 16 bytes.
fn load_key(path: &Path) -> Result<Key, ConfigError> {
    let text =
        knocker_wire::keyfile::load_key(path, |t| Ok(zeroize::Zeroizing::new(t.to_string())))
            .map_err(|e| err(path, None, e.to_string()))?;
    Key::from_base64(&text).map_err(|e| {
        err(
            path,
            Some(1),
            format!("{e}: make the profile again with knockknock-genprofile, or write the 16-byte key's base64 here"),
        )
    })
}

/// Reads a `counter` file (knockknock: `int(readline().rstrip("\n"))`).
pub fn read_counter(path: &Path) -> Result<u32, ConfigError> {
    parse_counter(path, &text_of(path)?)
}

/// A `counter` file's text.
pub fn parse_counter(path: &Path, text: &str) -> Result<u32, ConfigError> {
    let first = text.lines().next().unwrap_or("").trim();
    first.parse::<u32>().map_err(|_| {
        err(
            path,
            Some(1),
            format!("{first:?} is not a counter: the first line is the next counter as a decimal number from 0 to 4294967295 (knockknock-genprofile writes 0)"),
        )
    })
}

/// Why the counter file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: counter {used} was used already (the file expects {stored} next): refused", path.display())]
    Used {
        path: PathBuf,
        stored: u64,
        used: u64,
    },
}

/// Stores `next` (the counter after the one used) in a profile's `counter` file, in place, as
/// knockknock does (seek to 0, write the number and a newline), then truncates what is left of
/// a longer old number and syncs the file to disk. Never moves the counter back: a counter below
/// the one the file expects next is refused (it was used). Returns the counter stored.
pub fn write_counter(path: &Path, next: u64) -> Result<u64, CounterError> {
    let io = |source| CounterError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stored = read_counter(path).map(u64::from).unwrap_or(0);
    if next <= stored {
        return Err(CounterError::Used {
            path: path.to_path_buf(),
            stored,
            used: next.saturating_sub(1),
        });
    }
    let mut f = OpenOptions::new().write(true).open(path).map_err(io)?;
    let text = format!("{next}\n");
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.set_len(text.len() as u64).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(next)
}

/// A door name from a profile directory's name, or why it cannot be one.
fn door_name(dir: &Path, name: &str) -> Result<String, ConfigError> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(err(dir, None, format!("profile {name:?}: knockerd names the door after the profile's directory, which must be 1 to 32 letters, digits, '-' or '_': rename the directory (clients name their profile after the server, not this)")));
    }
    Ok(name.to_string())
}

/// Reads one server profile directory, as knockknock-genprofile writes it.
pub fn load_profile(dir: &Path, warnings: &mut Vec<String>) -> Result<Profile, ConfigError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !dir.is_dir() {
        return Err(err(dir, None, "not a knockknock profile directory (it holds cipher.key, mac.key, counter and config, as knockknock-genprofile writes them)"));
    }
    let keys = Keys {
        cipher: load_key(&dir.join("cipher.key"))?,
        mac: load_key(&dir.join("mac.key"))?,
    };
    let counter = read_counter(&dir.join("counter"))?;
    let config = dir.join("config");
    let knock_port = parse_profile_config(&config, &text_of(&config)?, warnings)?;
    Ok(Profile {
        name,
        dir: dir.to_path_buf(),
        keys,
        counter,
        knock_port,
    })
}

/// A profile's `config` from its text: its knock port.
pub fn parse_profile_config(
    path: &Path,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<u16, ConfigError> {
    let entries = parse_ini(path, text)?;
    unread(path, &entries, &["knock_port"], warnings);
    let Some(port) = get(&entries, "knock_port") else {
        return Err(err(
            path,
            None,
            "no knock_port: write `[main]` and `knock_port = N`, the TCP port knocks go to",
        ));
    };
    Ok(number(path, port, 1, 65_535, " (the TCP port knocks go to)")? as u16)
}

/// Every profile under `root/profiles/`, by name (knockknock reads every directory there).
pub fn load_profiles(root: &Path, warnings: &mut Vec<String>) -> Result<Vec<Profile>, ConfigError> {
    let dir = root.join(PROFILES);
    let listing = std::fs::read_dir(&dir).map_err(|e| {
        err(&dir, None, format!("cannot read: {e} (knockknock keeps its profiles here: make one with knockknock-genprofile NAME PORT)"))
    })?;
    let mut dirs: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(err(
            &dir,
            None,
            "no profile: make one with knockknock-genprofile NAME PORT",
        ));
    }
    dirs.iter().map(|d| load_profile(d, warnings)).collect()
}

/// The pre-check and decoder of a knockknock door: the SYN must parse (IPv4, SYN alone); then
/// the counters from the next one expected are tried, `window` of them. A match moves the next
/// one past it at once (the engine reports it used, and the root process stores it), so the same
/// knock never matches twice; one that matches a counter already used is called a replay.
pub fn decoder(keys: Keys, next: u32, window: u32) -> (SpaPrecheck, SpaDecode) {
    let precheck: SpaPrecheck = Arc::new(|l3: &[u8]| wire::parse(l3).is_some());
    let next = Arc::new(AtomicU64::new(u64::from(next)));
    let decode: SpaDecode = Arc::new(move |l3: &[u8], wall: u64| {
        let seen = wire::parse(l3).ok_or(SpaError::NotForThisKey)?;
        let floor = next.load(Ordering::SeqCst);
        let ahead = u32::try_from(floor)
            .ok()
            .and_then(|from| keys.decrypt(&seen.knock, from, window));
        let Some(opened) = ahead else {
            // counters already used, so that the log says what happened
            let below = floor.saturating_sub(u64::from(window));
            let first = u32::try_from(below).unwrap_or(u32::MAX);
            let span = u32::try_from(floor - below).unwrap_or(0);
            return Err(match keys.decrypt(&seen.knock, first, span) {
                Some(_) => SpaError::Refused(Refusal::Replayed),
                None => SpaError::NotForThisKey,
            });
        };
        next.fetch_max(u64::from(opened.counter) + 1, Ordering::SeqCst);
        if opened.port == 0 {
            return Err(SpaError::Unsupported("the knock asks for port 0".into()));
        }
        Ok(SpaRequest {
            username: String::new(),
            timestamp: wall,
            allow: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            access: vec![Service::tcp(opened.port)],
            client_timeout: None,
            replay_id: None,
            counter: Some(u64::from(opened.counter)),
            nat: None,
        })
    });
    (precheck, decode)
}

/// The engine's door for a profile: SYNs to its knock port, granting `delay` seconds. With
/// `open_any` (knockknock's own behaviour) any TCP port the knock names opens; otherwise only
/// the door's `open`.
pub fn spa(profile: &Profile, window: u32, delay: u64, open_any: bool) -> Spa {
    let (precheck, decode) = decoder(profile.keys.clone(), profile.counter, window);
    Spa {
        decode,
        precheck: Some(precheck),
        rate_limit: Some(RateLimit::default()),
        proto: Proto::Tcp,
        port: profile.knock_port,
        allowed: Vec::new(),
        max_age: Some(SEEN_SECS),
        access_timeout: delay,
        max_timeout: delay,
        restrict: Vec::new(),
        require_username: None,
        expire: None,
        allow_other_address: false,
        require_source_address: false,
        destinations: Vec::new(),
        open_any,
    }
}

/// Reads a knockknock directory (`/etc/knockknock.d`: its `config` and `profiles/`) into a
/// configuration that runs each profile as knockknock does (`--knockknock-profiles`); warnings
/// alongside. `kernel_log`: see the knocks in the kernel log, as knockknock does, rather than
/// through NFLOG.
pub fn load(
    root: &Path,
    kernel_log: Option<&super::KernelLogChoice>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let source = match kernel_log {
        None => super::SourceSpec::Nflog,
        Some(k) => kernel_log_source(root, k)?,
    };
    let mut warnings = Vec::new();
    let daemon = load_daemon_conf(&root.join(DAEMON_CONFIG), &mut warnings)?;
    let profiles = load_profiles(root, &mut warnings)?;
    let mut doors = Vec::new();
    for p in &profiles {
        let name = door_name(&p.dir, &p.name)?;
        warnings.push(format!(
            "{}: door {name} opens whatever TCP port a knock asks for, as knockknock does, and knocker drops nothing for it (your firewall does, as under knockknock): `knockerd import-knockknock {}` writes a door that opens and protects only the ports you list",
            p.dir.display(),
            root.display()
        ));
        let delay = Duration::from_secs(daemon.delay);
        doors.push(Door {
            spec: DoorSpec {
                name,
                open: Vec::new(),
                open_for: delay,
                kind: Kind::Spa(spa(p, daemon.error_window, daemon.delay, true)),
                ..Default::default()
            },
            protect: true,
            forward: None,
            nat_source: None,
            nat_networks: Vec::new(),
            repeat_start_command: false,
            start_command: None,
            stop_command: None,
            start_command_6: None,
            stop_command_6: None,
            stop_after: delay,
            stop_after_client_timeout: false,
            kind: DoorKind::Knockknock {
                profile: p.dir.clone(),
                port: p.knock_port,
            },
            line: 1,
            actions: Vec::new(),
            // knockknock's grant admits one new connection ("the port closes behind you")
            connections: std::num::NonZeroU8::new(1),
            grant_prefix: Default::default(),
            interfaces: Vec::new(),
            protect_elsewhere: true,
        });
    }
    let config = Config {
        file: root.to_path_buf(),
        nflog_group: super::DEFAULT_NFLOG_GROUP,
        max_tracked: knocker_engine::DEFAULT_MAX_TRACKED,
        on_stop: super::OnStop::Keep,
        grant_mark: super::DEFAULT_GRANT_MARK,
        accept_mark: 0,
        trusted: Vec::new(),
        protect: Vec::new(),
        interfaces: Vec::new(),
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        server_key: PathBuf::from(super::DEFAULT_SERVER_KEY),
        clients: PathBuf::from(super::DEFAULT_CLIENTS),
        worker_user: None,
        metrics_file: None,
        shared_state: None,
        drop_knocks: true,
        source,
        doors,
    };
    Ok((config, warnings))
}

/// The kernel-log source the command line asks for, checked as the native `[source]` table's.
fn kernel_log_source(
    root: &Path,
    k: &super::KernelLogChoice,
) -> Result<super::SourceSpec, ConfigError> {
    let refuse = |message: String| ConfigError {
        file: root.to_path_buf(),
        line: None,
        message,
    };
    if let Some(f) = k.file.as_deref().filter(|f| !f.is_absolute()) {
        return Err(refuse(format!(
            "--kernel-log-file {} must be an absolute path (/var/log/kern.log)",
            f.display()
        )));
    }
    if let Some(problem) = k
        .prefix
        .as_deref()
        .and_then(crate::source::kernel_log::prefix_problem)
    {
        return Err(refuse(format!("--log-prefix: {problem}")));
    }
    Ok(super::SourceSpec::KernelLog {
        file: k.file.clone(),
        prefix: k.prefix.clone(),
    })
}

/// `knockerd import-knockknock DIR`: knockerd's own TOML for a knockknock directory, one
/// `kind = "knockknock"` door per profile (the profile directory stays where it is: its keys and
/// counter are read from there).
pub fn import(root: &Path) -> Result<String, ConfigError> {
    let mut warnings = Vec::new();
    let daemon = load_daemon_conf(&root.join(DAEMON_CONFIG), &mut warnings)?;
    let profiles = load_profiles(root, &mut warnings)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# knockerd's configuration for the knockknock profiles in {}\n\
         # (knockerd import-knockknock). Each profile stays where it is: its keys and its counter\n\
         # are read there, and the counter is rewritten there, so knockknock's clients work as before.\n\
         # knockknock opens any TCP port a knock asks for; knockerd opens only what a door's `open`\n\
         # lists, and drops those ports for everyone else: fill in `open` before you run it.",
        root.display()
    );
    for w in &warnings {
        super::toml_comment(&mut out, "note: ", w);
    }
    for p in &profiles {
        let name = door_name(&p.dir, &p.name)?;
        let _ = writeln!(
            out,
            "\n# knock port tcp/{} (the profile's config)\n[door.{name}]\nkind = \"knockknock\"\nprofile = {}\n# open = [\"tcp/22\"]    # the ports this profile's knocks may open: required\nopen_for = \"{}s\"        # knockknock's delay\nerror_window = {}\n# connections = 1       # one new connection per knock, as knockknock: the default for this kind",
            p.knock_port,
            toml_quote(&p.dir.to_string_lossy()),
            daemon.delay,
            daemon.error_window
        );
    }
    out.push_str(IMPORT_SOURCE);
    Ok(out)
}

/// The end of `import-knockknock`'s TOML: the kernel-log source, commented out.
const IMPORT_SOURCE: &str = "\n# knockerd sees knocks through its own table's NFLOG rule. To read them from the kernel log, as\n# knockknock does, uncomment these (lines of your knockknock LOG rule count too, by its prefix):\n# [source]\n# kind = \"kernel-log\"\n# prefix = \"REJECT \"    # your LOG rule's --log-prefix, as knockknock's INSTALL writes it\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDir;
    use std::os::unix::fs::PermissionsExt;

    /// A profile directory as knockknock-genprofile writes it.
    pub(crate) fn genprofile(root: &Path, name: &str, port: u16) -> PathBuf {
        let dir = root.join(PROFILES).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, text: &str| {
            let p = dir.join(file);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("cipher.key", &Key::from_bytes([1; 16]).to_base64_line());
        write("mac.key", &Key::from_bytes([2; 16]).to_base64_line());
        write("counter", "0\n");
        write("config", &format!("[main]\nknock_port = {port}\n\n"));
        dir
    }

    #[test]
    fn profiles_load_as_genprofile_writes_them() {
        let d = TestDir::new("kk-profiles");
        genprofile(&d.0, "alice", 8888);
        genprofile(&d.0, "bob", 9999);
        std::fs::write(d.0.join(DAEMON_CONFIG), "[main]\ndelay=30\nerror_window=5").unwrap();
        let (c, warnings) = load(&d.0, None).expect("loads");
        assert_eq!(c.doors.len(), 2);
        assert_eq!(c.doors[0].spec.name, "alice");
        assert_eq!(c.doors[0].syn_port(), Some(8888));
        assert_eq!(c.doors[1].syn_port(), Some(9999));
        assert_eq!(c.syn_ports(), vec![8888, 9999]);
        assert_eq!(c.doors[0].spec.open_for, Duration::from_secs(30));
        assert!(c.protected().is_empty());
        assert!(warnings.iter().any(|w| w.contains("whatever TCP port")));
        assert_eq!(
            c.doors[0].knockknock_counter(),
            Some(d.0.join("profiles/alice/counter"))
        );
    }

    #[test]
    fn the_kernel_log_is_chosen_on_the_command_line_and_checked_there() {
        let d = TestDir::new("kk-klog");
        genprofile(&d.0, "alice", 8888);
        let choice = |file: Option<&str>, prefix: Option<&str>| super::super::KernelLogChoice {
            file: file.map(PathBuf::from),
            prefix: prefix.map(String::from),
        };
        let (c, _) = load(&d.0, None).expect("loads");
        assert_eq!(c.source, super::super::SourceSpec::Nflog);
        let (c, _) = load(
            &d.0,
            Some(&choice(Some("/var/log/kern.log"), Some("REJECT "))),
        )
        .expect("loads");
        assert_eq!(
            c.source,
            super::super::SourceSpec::KernelLog {
                file: Some(PathBuf::from("/var/log/kern.log")),
                prefix: Some("REJECT ".into())
            }
        );
        for (k, says) in [
            (
                choice(Some("kern.log"), None),
                "--kernel-log-file kern.log must be an absolute path",
            ),
            (choice(None, Some("")), "--log-prefix: prefix must be 1 to"),
            (choice(None, Some("bad\u{7}")), "printable ASCII"),
        ] {
            let e = load(&d.0, Some(&k)).expect_err(says);
            assert_eq!(e.file, d.0, "{e}");
            assert!(e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn the_daemon_config_has_knockknocks_defaults() {
        let d = TestDir::new("kk-daemon");
        std::fs::create_dir_all(&d.0).unwrap();
        let mut w = Vec::new();
        let path = d.0.join("config");
        assert_eq!(load_daemon_conf(&path, &mut w), Ok(DaemonConf::default()));
        for (text, want) in [
            ("[main]\ndelay: 5\n", (5, 20)),
            ("# c\n; c\n[DEFAULT]\nerror_window = 7\n[main]\n", (15, 7)),
            ("[main]\nDelay = 9 ; nine\n", (9, 20)),
            ("[other]\ndelay = 9\n", (15, 20)),
        ] {
            std::fs::write(&path, text).unwrap();
            let c = load_daemon_conf(&path, &mut w).expect(text);
            assert_eq!((c.delay, c.error_window), want, "{text}");
        }
        assert!(w.iter().any(|w| w.contains("[other] delay")), "{w:?}");
        for (text, line, says) in [
            ("delay = 5\n", 1, "[main]"),
            ("[main]\ndelay = soon\n", 2, "whole number"),
            ("[main]\nerror_window = 0\n", 2, "from 1"),
            ("[main]\n  delay = 5\n", 2, "leading blanks"),
            ("[main\n", 1, "close it"),
            ("[main]\njunk\n", 2, "key = value"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load_daemon_conf(&path, &mut w).expect_err(text);
            assert_eq!(
                (e.file.as_path(), e.line),
                (path.as_path(), Some(line)),
                "{text}"
            );
            assert!(e.message.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn bad_profiles_say_which_file_and_the_fix() {
        let d = TestDir::new("kk-bad");
        let dir = genprofile(&d.0, "alice", 8888);
        let mut w = Vec::new();
        std::fs::set_permissions(dir.join("mac.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let e = load_profile(&dir, &mut w).expect_err("exposed");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(dir.join("mac.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(dir.join("cipher.key"), "AAAA\n").unwrap();
        let e = load_profile(&dir, &mut w).expect_err("short key");
        assert_eq!(e.file, dir.join("cipher.key"));
        assert!(e.message.contains("16 bytes"), "{e}");
        std::fs::write(
            dir.join("cipher.key"),
            Key::from_bytes([1; 16]).to_base64_line().as_str(),
        )
        .unwrap();
        std::fs::write(dir.join("counter"), "-1\n").unwrap();
        let e = load_profile(&dir, &mut w).expect_err("counter");
        assert_eq!((e.file.clone(), e.line), (dir.join("counter"), Some(1)));
        std::fs::write(dir.join("counter"), "3\n").unwrap();
        std::fs::write(dir.join("config"), "[main]\nknock_port = 70000\n").unwrap();
        let e = load_profile(&dir, &mut w).expect_err("port");
        assert_eq!((e.file.clone(), e.line), (dir.join("config"), Some(2)));
        std::fs::write(dir.join("config"), "[main]\n").unwrap();
        assert!(load_profile(&dir, &mut w)
            .expect_err("none")
            .message
            .contains("knock_port"));
        std::fs::write(dir.join("config"), "[main]\nknock_port = 8888\n").unwrap();
        let bad = genprofile(&d.0, "a.b", 1);
        let e = load(&d.0, None).expect_err("name");
        assert_eq!(e.file, bad);
    }

    #[test]
    fn the_counter_is_rewritten_in_place_and_never_back() {
        let d = TestDir::new("kk-counter");
        let dir = genprofile(&d.0, "alice", 8888);
        let path = dir.join("counter");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&path);
        std::fs::write(&path, "100\n").unwrap();
        assert_eq!(write_counter(&path, 101).unwrap(), 101);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "101\n");
        assert!(matches!(
            write_counter(&path, 101),
            Err(CounterError::Used { .. })
        ));
        assert!(matches!(
            write_counter(&path, 7),
            Err(CounterError::Used { stored: 101, .. })
        ));
        assert_eq!(read_counter(&path), Ok(101));
        assert_eq!(inode(&path), before, "in place");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_decoder_opens_each_counter_once() {
        let keys = Keys {
            cipher: Key::from_bytes([1; 16]),
            mac: Key::from_bytes([2; 16]),
        };
        let (pre, decode) = decoder(keys.clone(), 3, 20);
        let syn = |counter| {
            wire::build(
                Ipv4Addr::new(10, 200, 1, 2),
                Ipv4Addr::new(10, 200, 1, 1),
                40000,
                8888,
                &keys.encrypt(22, counter),
                64,
            )
        };
        assert!(pre(&syn(5)));
        assert!(!pre(b"garbage"));
        // behind the stored counter: already used
        assert_eq!(
            decode(&syn(2), 0),
            Err(SpaError::Refused(Refusal::Replayed))
        );
        let r = decode(&syn(5), 77).expect("opens");
        assert_eq!(
            (r.counter, r.access.clone(), r.timestamp),
            (Some(5), vec![Service::tcp(22)], 77)
        );
        assert_eq!(
            decode(&syn(5), 0),
            Err(SpaError::Refused(Refusal::Replayed))
        );
        assert_eq!(
            decode(&syn(4), 0),
            Err(SpaError::Refused(Refusal::Replayed))
        );
        assert!(decode(&syn(6), 0).is_ok());
        // past the window
        assert_eq!(decode(&syn(27), 0), Err(SpaError::NotForThisKey));
        assert!(decode(&syn(26), 0).is_ok());
    }

    #[test]
    fn import_writes_one_door_per_profile() {
        let d = TestDir::new("kk-import");
        let dir = genprofile(&d.0, "alice", 8888);
        let toml = import(&d.0).expect("imports");
        assert!(
            toml.contains("[door.alice]\nkind = \"knockknock\""),
            "{toml}"
        );
        assert!(
            toml.contains(&format!("profile = \"{}\"", dir.display())),
            "{toml}"
        );
        assert!(toml.contains("open_for = \"15s\""), "{toml}");
        assert!(toml.contains("error_window = 20"), "{toml}");
        // uncommented, the kernel-log source takes the knockknock doors
        let filled = toml
            .replace("# open = [", "open = [")
            .replace("# [source]\n# kind", "[source]\nkind")
            .replace("# prefix", "prefix");
        let c = super::super::native::parse(Path::new("knockerd.toml"), &filled).expect(&filled);
        assert_eq!(
            c.source,
            super::super::SourceSpec::KernelLog {
                file: None,
                prefix: Some("REJECT ".into())
            }
        );
    }

    #[test]
    fn a_native_door_reads_its_profile_and_opens_only_what_it_lists() {
        let d = TestDir::new("kk-native");
        let dir = genprofile(&d.0, "alice", 8888);
        let toml = |extra: &str| {
            format!(
                "[door.kk]\nkind = \"knockknock\"\nprofile = {}\n{extra}",
                toml_quote(&dir.to_string_lossy())
            )
        };
        let file = Path::new("knockerd.toml");
        let c = super::super::native::parse(file, &toml("open = [\"tcp/22\"]\nerror_window = 5\n"))
            .expect("loads");
        let door = &c.doors[0];
        assert_eq!(door.kind_name(), "knockknock");
        assert_eq!(door.syn_port(), Some(8888));
        assert_eq!(door.spec.open_for, Duration::from_secs(15));
        assert_eq!(c.protected(), vec![Service::tcp(22)]);
        assert!(
            door.describe_opening().contains("tcp/22"),
            "{}",
            door.describe_opening()
        );
        for (extra, says) in [
            ("", "list in `open`"),
            ("open = [\"udp/53\"]\n", "list in `open`"),
            ("open = [\"tcp/22\"]\nerror_window = 0\n", "error_window"),
            ("open = [\"tcp/22\"]\nkey_file = \"/k\"\n", "belong to"),
        ] {
            let e = super::super::native::parse(file, &toml(extra)).expect_err(extra);
            assert!(e.line.is_some() && e.message.contains(says), "{extra}: {e}");
        }
        let e = super::super::native::parse(
            file,
            "[door.s]\nsequence = [\"7000\", \"8000\", \"9000\"]\nopen = [\"tcp/22\"]\nerror_window = 3\n",
        )
        .expect_err("stray");
        assert!(e.message.contains("knockknock"), "{e}");
    }
}
