//! fwknopd's access.conf, as it is: `knockerd --fwknop-access /etc/fwknop/access.conf
//! [--fwknopd-conf /etc/fwknop/fwknopd.conf]` runs an existing fwknopd configuration, and
//! `knockerd import-fwknop` prints the equivalent native TOML ([`to_toml`]).
//!
//! This module reads, checks and validates; it produces [`FwknopConf`], a list of [`Stanza`]s in
//! fwknopd's order (the first stanza that matches fully wins), and leaves mapping them into doors
//! to the daemon.
//!
//! The grammar and every fatal error follow fwknopd 2.6.10 (Debian's `fwknop-server`), read from
//! its source (`parse_access_file()`, `include_keys_file()`, `parse_access_folder()`,
//! `acc_data_is_valid()`, `set_acc_defaults()`, `expand_acc_ent_lists()`, `add_int_ent()`,
//! `expand_acc_int_list()`, `expand_acc_port_list()`, `parse_proto_and_port()`,
//! `add_acc_expire_time()` in server/access.c; `parse_config_file()` in server/config_init.c;
//! `b64_decode()` and `is_base64()` in lib/) and checked against the installed binary
//! (`fwknopd -D`, `fwknopd --exit-parse-config`):
//!
//! - A line is read with `sscanf(line, "%s %[^;\n\r]", var, val)`: the variable is the first
//!   whitespace-separated word, the value everything after the following whitespace up to `;`,
//!   CR or LF. Values keep inner and trailing spaces (`KEY my key  ` is a 8-byte key in 2.6.10),
//!   `;` ends a value, and there are no other inline comments (`KEY abc # x` is a 9-byte key).
//!   A line whose *first byte* is `#`, `;`, CR, LF or NUL is skipped; any other line must have a
//!   variable and a value, so a line of only spaces makes fwknopd refuse the file.
//! - Variable names are case-sensitive (`key` is an unknown variable, which fwknopd ignores);
//!   one trailing `:` is removed (`SOURCE: ANY`). A later line for the same variable replaces the
//!   earlier one. Lines before the first `SOURCE` are ignored; each `SOURCE` starts a stanza.
//! - `%include FILE` (relative paths against the working directory, as `fopen()` does; at most
//!   three files deep), `%include_folder DIR` (every file whose last extension starts with
//!   `.conf`) and `%include_keys FILE` (only the key variables; a stanza whose keys file is
//!   missing or bad is skipped, not fatal). After an `%include` the including file's stanza goes
//!   on: its later lines still apply to it.
//! - What fwknopd refuses (a stanza without keys, identical encryption and HMAC keys, a bad
//!   address, port, date, digest or mode, `__CHANGEME__` keys, ...) is refused here with
//!   `file:line` and the fix.
//!
//! Where fwknopd silently reads garbage (`FW_ACCESS_TIMEOUT 30s` is 30, `abc` is 0 and so the
//! default, `tcp/abc` is port 0), knockerd refuses with the line and says what fwknopd would have
//! done; where it ignores trailing text (`udp/1-5` is udp/1, `10.0.0.1 x` is 10.0.0.1) or reads
//! an address unexpectedly (`010.0.0.1` is 8.0.0.1, inet_aton's octal), the file runs as fwknopd
//! runs it, with a warning.
//!
//! A stanza that uses what knockerd cannot honour (GnuPG, NAT, arbitrary command execution,
//! encryption modes other than CBC, SHA-3 HMACs) or that has no HMAC key (knockerd never decrypts
//! an unauthenticated packet) is refused as a whole, with every reason and its line, and the
//! other stanzas run. Refusing a stanza only ever removes access: in fwknopd each stanza whose
//! SOURCE matches is tried with its own keys, so no packet that a refused stanza would have
//! authorized can match another one by its absence. If no stanza is left, the configuration is
//! refused. docs/fwknop.md lists every difference from fwknopd.

pub mod doors;

use crate::config::MAX_FILE_BYTES;
use crate::config::{toml_comment as comment, toml_quote as quote};
use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use knocker_engine::{Proto, Service};
pub use knocker_wire::fwknop::Digest;
use knocker_wire::fwknop::{MAX_ENC_KEY, MAX_HMAC_KEY};
use zeroize::Zeroizing;

use crate::config::ConfigError;

/// Where fwknopd keeps its files on Debian.
pub const DEFAULT_ACCESS_FILE: &str = "/etc/fwknop/access.conf";
pub const DEFAULT_FWKNOPD_CONF: &str = "/etc/fwknop/fwknopd.conf";
/// fwknopd's `DEF_PCAP_FILTER` is `udp port 62201`.
pub const DEFAULT_SPA_PORT: u16 = 62201;
/// fwknopd's `DEF_MAX_SPA_PACKET_AGE`, seconds either way.
pub const DEFAULT_MAX_AGE: u64 = 120;
/// fwknopd's `DEF_FW_ACCESS_TIMEOUT`.
pub const DEFAULT_FW_ACCESS_TIMEOUT: u64 = 30;
/// fwknopd's `DEF_MAX_FW_TIMEOUT`.
pub const DEFAULT_MAX_FW_TIMEOUT: u64 = 300;

/// fwknopd reads lines with `fgets(buf, MAX_LINE_LEN, f)`: longer lines are split.
const MAX_LINE_LEN: usize = 1024;
/// The buffer each comma-separated list entry is copied into (an entry is at most 31 bytes).
const ACCESS_BUF_LEN: usize = 33;
/// `INET_ADDRSTRLEN` and the shortest dotted quad.
const MAX_IPV4_STR_LEN: usize = 16;
const MIN_IPV4_STR_LEN: usize = 7;
/// `%include` is followed only while fewer than three files are open.
const MAX_INCLUDE_DEPTH: usize = 3;
/// fwknopd does not bound `%include_folder`; knockerd does, so that a folder that includes
/// itself is an error instead of a stack overflow.
const MAX_NESTING: usize = 8;
const MAX_FILES: usize = 256;
/// `CMD_CYCLE_BUFSIZE`: a command (before and after substitution) is shorter than this.
const CMD_CYCLE_BUFSIZE: usize = 256;
/// `strtoargv()` accepts at most `MAX_CMDLINE_ARGS - 2` arguments.
const MAX_CMDLINE_ARGS: usize = 30;
/// `RCHK_MAX_FW_TIMEOUT` and `RCHK_MAX_CMD_CYCLE_TIMER` are `2 << 22` seconds.
const RCHK_MAX_TIMEOUT: i64 = 2 << 22;
/// `RCHK_MAX_SPA_PACKET_AGE`.
const RCHK_MAX_SPA_PACKET_AGE: i64 = 100_000;

// ---- the parsed configuration -------------------------------------------------------------------

/// One entry of a `SOURCE` or `DESTINATION` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// `ANY` (any case). knockerd matches IPv6 addresses with it too; fwknopd 2.6.10 sees only
    /// IPv4 packets.
    Any,
    /// An address and prefix length, the address already masked (fwknopd compares
    /// `ip & mask == addr & mask`). fwknopd 2.6.10 reads only IPv4 here (with `inet_aton`), so
    /// this is always an IPv4 address.
    Net(IpAddr, u8),
}

impl Network {
    /// Whether `ip` is in this entry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Network::Any, _) => true,
            (Network::Net(IpAddr::V4(net), len), IpAddr::V4(ip)) => {
                let mask = prefix_mask(*len);
                u32::from(ip) & mask == u32::from(*net) & mask
            }
            (Network::Net(IpAddr::V6(net), len), IpAddr::V6(ip)) => {
                let mask = match *len {
                    0 => 0,
                    l => u128::MAX << (128 - u32::from(l.min(128))),
                };
                u128::from(ip) & mask == u128::from(*net) & mask
            }
            _ => false,
        }
    }
}

/// `any`, `10.0.0.1` (for /32) or `10.0.0.0/8`: the form knockerd's native `sources` takes.
impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Any => f.write_str("any"),
            Network::Net(ip @ IpAddr::V4(_), 32) | Network::Net(ip @ IpAddr::V6(_), 128) => {
                write!(f, "{ip}")
            }
            Network::Net(ip, len) => write!(f, "{ip}/{len}"),
        }
    }
}

fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l => u32::MAX << (32 - u32::from(l.min(32))),
    }
}

/// `CMD_CYCLE_OPEN` / `CMD_CYCLE_CLOSE` / `CMD_CYCLE_TIMER`: instead of opening the firewall,
/// fwknopd runs the open command and, `timer` seconds later (or after the client's timeout), the
/// close command. Commands are split at whitespace (no shell, no quoting) and run with
/// `execvp()` from `/`; see [`CmdCycle::argv`] for the substitutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdCycle {
    pub open: String,
    /// `None` when `CMD_CYCLE_CLOSE` starts with `NONE` (fwknopd compares four bytes).
    pub close: Option<String>,
    /// Seconds until the close command (1 to 8388608; 0 only when there is no close command).
    pub timer: u64,
}

/// The values [`CmdCycle::argv`] substitutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdVars {
    /// `$IP` and `$SRC`: the address the grant is for (the allow IP, or the packet's source for
    /// `0.0.0.0`).
    pub allow: IpAddr,
    /// `$PKT_SRC`: the packet's source address.
    pub packet_source: IpAddr,
    /// `$DST`: the packet's destination address.
    pub destination: IpAddr,
    /// `$PROTO` (as its number: 6 or 17) and `$PORT`: the first service of the request.
    pub service: Service,
    /// The SPA timestamp; `$TIMEOUT` is this plus the client timeout, or plus the timer.
    pub timestamp: u64,
    /// `$CLIENT_TIMEOUT` (0 when the client sent none). fwknopd substitutes what the client
    /// sent; pass it capped at MAX_FW_TIMEOUT (as [`Stanza::close_after`] does) so that
    /// `$TIMEOUT` says when the close command really runs.
    pub client_timeout: u64,
}

impl CmdCycle {
    /// The argument vector fwknopd's `build_cmd()` and `strtoargv()` make of `template` (the
    /// open or the close command): `$IP`, `$SRC`, `$PKT_SRC`, `$DST`, `$PORT`, `$PROTO`,
    /// `$TIMEOUT` and `$CLIENT_TIMEOUT` are replaced (checked in that order, by prefix: `$IPX`
    /// is the address followed by `X`); any other `$` is dropped; the result is split at
    /// whitespace. Errors are fwknopd's: the command would be 256 bytes or longer, or have more
    /// than 28 arguments (fwknopd then runs nothing).
    pub fn argv(&self, template: &str, v: &CmdVars) -> Result<Vec<String>, String> {
        let timeout = if v.client_timeout == 0 {
            self.timer
        } else {
            v.client_timeout
        };
        const VARS: [&str; 8] = [
            "IP",
            "SRC",
            "PKT_SRC",
            "DST",
            "PORT",
            "PROTO",
            "TIMEOUT",
            "CLIENT_TIMEOUT",
        ];
        let mut out = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            rest = &rest[c.len_utf8()..];
            if c != '$' {
                out.push(c);
            } else if let Some(var) = VARS.iter().find(|var| rest.starts_with(*var)) {
                rest = &rest[var.len()..];
                let value = match *var {
                    "IP" | "SRC" => v.allow.to_string(),
                    "PKT_SRC" => v.packet_source.to_string(),
                    "DST" => v.destination.to_string(),
                    "PORT" => v.service.port.to_string(),
                    "PROTO" => v.service.proto.number().to_string(),
                    "TIMEOUT" => v.timestamp.saturating_add(timeout).to_string(),
                    _ => v.client_timeout.to_string(),
                };
                out.push_str(&value);
            }
            if out.len() >= CMD_CYCLE_BUFSIZE {
                return Err(format!(
                    "the command is {CMD_CYCLE_BUFSIZE} bytes or longer after substitution"
                ));
            }
        }
        let argv: Vec<String> = out.split_ascii_whitespace().map(str::to_string).collect();
        if argv.len() > MAX_CMDLINE_ARGS - 2 {
            return Err(format!(
                "the command has {} arguments; fwknopd runs at most {}",
                argv.len(),
                MAX_CMDLINE_ARGS - 2
            ));
        }
        if argv.is_empty() {
            return Err("the command is empty".into());
        }
        Ok(argv)
    }
}

/// One access.conf stanza that knockerd runs, in fwknopd's meaning:
///
/// - it is considered for a packet whose *source address* (the IP header's, not the allow IP)
///   is in `sources` and whose destination address is in `destinations`;
/// - the packet must authenticate with `hmac_key` and `hmac_digest`, then decrypt with
///   `enc_key` (AES-256-CBC; if either fails, fwknopd goes on to the next stanza);
/// - then the checks, in fwknopd's order: `access_expire`, the packet's age (global), the allow
///   IP (`0.0.0.0` means the packet's source and is refused when `require_source_address`),
///   `require_username`, the message type (NAT types are refused), then for access messages
///   every requested service must be in `open_ports` (any service when it is empty) and none in
///   `restrict_ports`;
/// - the grant lasts the client's timeout capped at `max_fw_timeout`, or `fw_access_timeout`.
///
/// Keys are zeroized when dropped and `Debug` does not show them.
#[derive(Clone)]
pub struct Stanza {
    /// The `SOURCE` line that starts the stanza.
    pub file: PathBuf,
    pub line: usize,
    /// fwknopd's stanza number, as its logs say `(stanza #N)`: the position among all stanzas
    /// fwknopd loads, refused ones included.
    pub number: usize,
    pub sources: Vec<Network>,
    /// `[Any]` when the stanza names no DESTINATION.
    pub destinations: Vec<Network>,
    /// Empty: fwknopd grants whatever the client requests (minus `restrict_ports`).
    pub open_ports: Vec<Service>,
    pub restrict_ports: Vec<Service>,
    /// KEY as its bytes, or KEY_BASE64 decoded: 1 to 32 bytes, the passphrase of OpenSSL's
    /// EVP_BytesToKey.
    pub enc_key: Zeroizing<Vec<u8>>,
    /// HMAC_KEY or HMAC_KEY_BASE64 decoded. Always present: knockerd refuses stanzas without
    /// one.
    pub hmac_key: Zeroizing<Vec<u8>>,
    /// HMAC_DIGEST_TYPE, sha256 by default.
    pub hmac_digest: Digest,
    /// Seconds of access when the client asks for no timeout (default 30, never above
    /// `max_fw_timeout`).
    pub fw_access_timeout: u64,
    /// The cap on a client-requested timeout (default 300).
    pub max_fw_timeout: u64,
    /// Unix time after which the stanza never matches (ACCESS_EXPIRE or ACCESS_EXPIRE_EPOCH).
    pub access_expire: Option<u64>,
    /// The SPA username must be exactly this.
    pub require_username: Option<String>,
    /// The allow IP must not be `0.0.0.0` (the client's `-s`).
    pub require_source_address: bool,
    /// Run commands instead of opening the firewall.
    pub cmd_cycle: Option<CmdCycle>,
    /// Warnings about this stanza, each `file:line: what` (also in [`FwknopConf::warnings`]).
    pub warnings: Vec<String>,
    key_origin: String,
    hmac_origin: String,
}

/// Never shows key material.
impl fmt::Debug for Stanza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stanza")
            .field("file", &self.file)
            .field("line", &self.line)
            .field("number", &self.number)
            .field("sources", &self.sources)
            .field("destinations", &self.destinations)
            .field("open_ports", &self.open_ports)
            .field("restrict_ports", &self.restrict_ports)
            .field(
                "enc_key",
                &format_args!("<{} bytes, redacted>", self.enc_key.len()),
            )
            .field(
                "hmac_key",
                &format_args!("<{} bytes, redacted>", self.hmac_key.len()),
            )
            .field("hmac_digest", &self.hmac_digest)
            .field("fw_access_timeout", &self.fw_access_timeout)
            .field("max_fw_timeout", &self.max_fw_timeout)
            .field("access_expire", &self.access_expire)
            .field("require_username", &self.require_username)
            .field("require_source_address", &self.require_source_address)
            .field("cmd_cycle", &self.cmd_cycle)
            .finish_non_exhaustive()
    }
}

impl Stanza {
    /// The door name `import-fwknop` gives this stanza: `fwknop-N`, N being fwknopd's number.
    pub fn door_name(&self) -> String {
        format!("fwknop-{}", self.number)
    }

    /// What a client asking for `requested` (a non-empty list) may have, as fwknopd's
    /// `acc_check_port_access()` decides: nothing in RESTRICT_PORTS, and, when OPEN_PORTS is
    /// set, everything in it. (fwknopd counts matches, so a service listed twice in OPEN_PORTS
    /// lets one unlisted service through; knockerd does not repeat that.)
    pub fn allows(&self, requested: &[Service]) -> bool {
        !requested.is_empty()
            && !requested.iter().any(|s| self.restrict_ports.contains(s))
            && (self.open_ports.is_empty() || requested.iter().all(|s| self.open_ports.contains(s)))
    }

    /// Whether a packet from `source` to `destination` is considered for this stanza.
    pub fn matches_addresses(&self, source: IpAddr, destination: IpAddr) -> bool {
        self.sources.iter().any(|s| s.contains(source))
            && self.destinations.iter().any(|d| d.contains(destination))
    }

    /// When the close command of a command cycle runs, for a client timeout (0: none
    /// requested): `None` without a close command. fwknopd 2.6.10 runs it after the client's
    /// timeout uncapped (seen on Debian's fwknopd); knockerd caps it at `max_fw_timeout`, as
    /// for every other grant.
    pub fn close_after(&self, client_timeout: u64) -> Option<u64> {
        let cc = self.cmd_cycle.as_ref()?;
        cc.close.as_ref()?;
        Some(if client_timeout == 0 {
            cc.timer
        } else {
            client_timeout.min(self.max_fw_timeout)
        })
    }

    /// The grant duration for a client timeout (0: none requested).
    pub fn open_for(&self, client_timeout: u64) -> u64 {
        if client_timeout == 0 {
            self.fw_access_timeout
        } else {
            client_timeout.min(self.max_fw_timeout)
        }
    }
}

/// A stanza knockerd does not run, with every reason (`file:line: VARIABLE: why; the fix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedStanza {
    pub file: PathBuf,
    pub line: usize,
    pub number: usize,
    /// The SOURCE value as written.
    pub source: String,
    pub reasons: Vec<String>,
}

/// What fwknopd.conf says that matters to knockerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwknopdConf {
    pub file: Option<PathBuf>,
    /// The UDP port SPA packets are sent to: from PCAP_FILTER (`udp port N`, `udp dst port N`),
    /// or UDPSERV_PORT when ENABLE_UDP_SERVER is Y.
    pub spa_port: u16,
    /// MAX_SPA_PACKET_AGE; `None` when ENABLE_SPA_PACKET_AGING is N.
    pub max_age: Option<u64>,
    /// PCAP_INTF, when given (fwknopd's default is eth0).
    pub interface: Option<String>,
    /// ENABLE_IPT_FORWARDING or ENABLE_IPT_LOCAL_NAT is Y (FORCE_NAT requires one of them).
    pub nat_enabled: bool,
    pub warnings: Vec<String>,
}

impl Default for FwknopdConf {
    /// fwknopd's defaults, as when no fwknopd.conf is given.
    fn default() -> Self {
        FwknopdConf {
            file: None,
            spa_port: DEFAULT_SPA_PORT,
            max_age: Some(DEFAULT_MAX_AGE),
            interface: None,
            nat_enabled: false,
            warnings: Vec::new(),
        }
    }
}

/// An fwknopd configuration as knockerd runs it.
#[derive(Debug, Clone)]
pub struct FwknopConf {
    pub access_file: PathBuf,
    pub fwknopd_conf: Option<PathBuf>,
    /// In fwknopd's order: the first stanza that matches fully wins. Never empty.
    pub stanzas: Vec<Stanza>,
    pub refused: Vec<RefusedStanza>,
    /// See [`FwknopdConf`].
    pub spa_port: u16,
    pub max_age: Option<u64>,
    pub interface: Option<String>,
    /// Everything that deserves a look, each `file:line: what`, refused stanzas included.
    pub warnings: Vec<String>,
    /// The warnings that concern no single stanza (for import-fwknop's header).
    global_warnings: Vec<String>,
}

// ---- entry points -------------------------------------------------------------------------------

/// Reads access.conf (following its includes) and, when given, fwknopd.conf, and validates
/// everything. An error is what makes fwknopd refuse to start, or what knockerd refuses to guess;
/// a configuration with no usable stanza is an error too.
pub fn load(access: &Path, fwknopd_conf: Option<&Path>) -> Result<FwknopConf, ConfigError> {
    let mut fwknopd = match fwknopd_conf {
        Some(p) => {
            let text = read_file(p, None)?;
            parse_fwknopd_conf(p, &text)?
        }
        None => FwknopdConf::default(),
    };
    if fwknopd_conf.is_none() {
        if let Some(sibling) = access.parent().map(|d| d.join("fwknopd.conf")) {
            if sibling.is_file() {
                fwknopd.warnings.push(format!("{}: {} exists but was not given with --fwknopd-conf: knockerd uses fwknopd's defaults (udp/{DEFAULT_SPA_PORT}, packets at most {DEFAULT_MAX_AGE} s old); pass it if it changes PCAP_FILTER or the packet age", access.display(), sibling.display()));
            }
        }
    }
    let mut p = Parser::new(&fwknopd);
    p.parse_file(access, None, 1)?;
    p.finish(access)
}

/// Parses access.conf text as if read from `file` (its includes are read from disk), with the
/// given fwknopd.conf settings (`FwknopdConf::default()` for fwknopd's defaults).
pub fn parse(file: &Path, text: &[u8], fwknopd: &FwknopdConf) -> Result<FwknopConf, ConfigError> {
    let mut p = Parser::new(fwknopd);
    p.parse_file(file, Some(text), 1)?;
    p.finish(file)
}

/// What `knockerd import-fwknop` prints: the native TOML and the warnings.
pub fn import(
    access: &Path,
    fwknopd_conf: Option<&Path>,
) -> Result<(String, Vec<String>), ConfigError> {
    let c = load(access, fwknopd_conf)?;
    Ok((to_toml(&c), c.warnings.clone()))
}

// ---- reading files ------------------------------------------------------------------------------

fn plain_err(file: &Path, message: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: None,
        message,
    }
}

fn line_err(file: &Path, line: usize, message: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    }
}

/// Reads a configuration file the way fwknopd accepts it: it must exist and be a regular file
/// (or a symlink to one). Access files hold keys, so one that others can read gets a warning, as
/// fwknopd warns for anything but 0600.
fn read_file(
    path: &Path,
    perm_warnings: Option<&mut Vec<String>>,
) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let hint = if path
        .as_os_str()
        .as_bytes()
        .last()
        .is_some_and(|b| is_c_space(*b))
    {
        " (the path ends with whitespace, which fwknopd 2.6.10 keeps as part of it)"
    } else {
        ""
    };
    let meta =
        std::fs::metadata(path).map_err(|e| plain_err(path, format!("cannot read: {e}{hint}")))?;
    if !meta.is_file() {
        return Err(plain_err(
            path,
            "is not a regular file (fwknopd refuses it too)".into(),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(plain_err(
            path,
            format!(
                "file is {} bytes; at most {MAX_FILE_BYTES} are read",
                meta.len()
            ),
        ));
    }
    if let Some(w) = perm_warnings {
        if meta.permissions().mode() & 0o077 != 0 {
            w.push(format!("{}: holds keys but others can read it (mode {:o}): chmod 600 it (fwknopd warns about this too)", path.display(), meta.permissions().mode() & 0o7777));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| plain_err(path, format!("cannot read: {e}")))?;
    Ok(Zeroizing::new(bytes))
}

fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

// ---- the line grammar ---------------------------------------------------------------------------

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn trim_start_c(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|c| !is_c_space(*c)).unwrap_or(b.len());
    &b[i..]
}

fn trim_end_c(b: &[u8]) -> &[u8] {
    let i = b.iter().rposition(|c| !is_c_space(*c)).map_or(0, |i| i + 1);
    &b[..i]
}

enum Entry<'a> {
    /// A comment or an empty line: its first byte is `#`, `;`, CR, LF or NUL.
    Skip,
    /// `sscanf()` found no value (or nothing at all).
    Bad { var: &'a [u8] },
    Pair {
        var: &'a [u8],
        val: &'a [u8],
        /// A `;` (or CR) ended the value and text followed it.
        cut: bool,
    },
}

/// What `sscanf(line, "%s %[^;\n\r]", var, val)` makes of one line (fwknopd reads C strings, so
/// a NUL byte ends the line).
fn scan_line(line: &[u8]) -> Entry<'_> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(i) => &line[..i],
        None => line,
    };
    match line.first() {
        None | Some(b'#' | b';' | b'\r' | b'\n') => return Entry::Skip,
        Some(_) => {}
    }
    let rest = trim_start_c(line);
    let var_end = rest
        .iter()
        .position(|&b| is_c_space(b))
        .unwrap_or(rest.len());
    let var = &rest[..var_end];
    let after = trim_start_c(&rest[var_end..]);
    let val_end = after
        .iter()
        .position(|&b| matches!(b, b';' | b'\n' | b'\r'))
        .unwrap_or(after.len());
    let val = &after[..val_end];
    if var.is_empty() || val.is_empty() {
        return Entry::Bad { var };
    }
    let cut = after.len() > val_end && !trim_start_c(&after[val_end + 1..]).is_empty();
    Entry::Pair { var, val, cut }
}

/// fwknopd removes everything from the last `:` of a variable name (`SOURCE:` is `SOURCE`).
fn strip_colon(var: &[u8]) -> &[u8] {
    match var.iter().rposition(|&b| b == b':') {
        Some(i) => &var[..i],
        None => var,
    }
}

/// A lone word for messages: shown only when it is a variable fwknopd knows (a line that is
/// one word could be a pasted key).
fn shown_word(var: &[u8]) -> String {
    let upper = String::from_utf8_lossy(strip_colon(var)).to_ascii_uppercase();
    if ACCESS_VARS.contains(&upper.as_str()) || FWKNOPD_VARS.contains(&upper.as_str()) {
        shown_var(var)
    } else {
        "the line".to_string()
    }
}

/// A variable name for messages, shown only when it looks like one.
fn shown_var(var: &[u8]) -> String {
    if !var.is_empty()
        && var.len() <= 40
        && var
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'%' | b':'))
    {
        format!("`{}`", String::from_utf8_lossy(var))
    } else {
        "the line".to_string()
    }
}

/// The lines of a file, numbered from 1, without their LF.
fn numbered_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

/// What C's `strtol(s, NULL, 10)` reads, and whether `s` is a clean whole number.
#[derive(Debug, Clone, Copy)]
struct CNum {
    /// `None` when strtol reports ERANGE.
    value: Option<i64>,
    /// At least one digit was read.
    digits: bool,
    /// Optional leading spaces and sign, digits, optional trailing spaces: nothing else.
    clean: bool,
}

fn c_strtol(s: &[u8]) -> CNum {
    let t = trim_start_c(s);
    let (neg, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = body.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut value: Option<i64> = Some(0);
    for &b in &body[..n] {
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(i64::from(b - b'0')));
    }
    if neg {
        value = value.map(|v| -v);
    }
    CNum {
        value,
        digits: n > 0,
        clean: n > 0 && trim_end_c(&body[n..]).is_empty(),
    }
}

/// What fwknopd's `strtol_wrapper()` ends up with: `strtol` truncated to a C `int`.
fn c_int(n: CNum) -> Option<i64> {
    n.value.map(|v| i64::from(v as i32))
}

/// A whole number of seconds in `min..=max`, or the error with what fwknopd would have read.
fn whole_number(var: &str, val: &[u8], min: i64, max: i64) -> Result<i64, String> {
    let n = c_strtol(val);
    let text = String::from_utf8_lossy(val);
    let fwknopd = c_int(n);
    if !n.clean {
        let read = match fwknopd {
            Some(v) if (min..=max).contains(&v) => format!("silently read it as {v}"),
            _ => "refuse it".to_string(),
        };
        return Err(format!(
            "{var} {:?} is not a whole number (fwknopd would {read}): write the number alone",
            text.trim_end()
        ));
    }
    match (n.value, fwknopd) {
        (Some(v), Some(c)) if v == c && (min..=max).contains(&v) => Ok(v),
        (Some(v), Some(c)) if v != c && (min..=max).contains(&c) => Err(format!(
            "{var} {v} is out of range: fwknopd would read it as {c} (it truncates to a C int); give {min} to {max}"
        )),
        _ => Err(format!(
            "{var} {} is not in fwknopd's range {min} to {max} (fwknopd refuses it too)",
            text.trim_end()
        )),
    }
}

/// fwknopd's `add_acc_bool()`: true when the value starts with `y` or `Y`.
fn c_bool(val: &[u8]) -> bool {
    matches!(val.first(), Some(b'y' | b'Y'))
}

/// fwknopd's `is_base64()`: only letters, digits, `+`, `/` and `=`.
fn is_base64(val: &[u8]) -> bool {
    val.iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// fwknop's `b64_decode()`: stops at the first `=`, each character after the first of a group
/// of four completes a byte (so a lone last character is ignored). Only called after
/// [`is_base64`] passed.
fn b64_decode(val: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(val.len()));
    let mut acc: u32 = 0;
    for (i, &c) in val.iter().take_while(|&&c| c != b'=').enumerate() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        acc = (acc << 6) | u32::from(d);
        if i & 3 != 0 {
            out.push((acc >> (6 - 2 * (i & 3))) as u8);
        }
    }
    out
}

/// glibc's `inet_aton()`: one to four parts (`a`, `a.b`, `a.b.c`, `a.b.c.d`, the last part
/// filling the remaining bytes), each decimal, octal (leading `0`) or hex (`0x`); anything after
/// a whitespace character is ignored.
fn inet_aton(s: &[u8]) -> Option<u32> {
    let mut parts: Vec<u64> = Vec::with_capacity(3);
    let mut i = 0;
    let val = loop {
        if !s.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let (v, next) = strtoul_base0(s, i)?;
        if v > 0xffff_ffff {
            return None;
        }
        i = next;
        if s.get(i) == Some(&b'.') {
            if parts.len() > 2 || v > 0xff {
                return None;
            }
            parts.push(v);
            i += 1;
        } else {
            break v;
        }
    };
    if s.get(i).is_some_and(|c| !is_c_space(*c)) {
        return None;
    }
    let max = [0xffff_ffff_u64, 0xff_ffff, 0xffff, 0xff][parts.len()];
    if val > max {
        return None;
    }
    let mut addr = val as u32;
    for (k, p) in parts.iter().enumerate() {
        addr |= (*p as u32) << (24 - 8 * k);
    }
    Some(addr)
}

/// `strtoul(s + i, &end, 0)` for a string that starts with a digit: the value and the end.
fn strtoul_base0(s: &[u8], i: usize) -> Option<(u64, usize)> {
    let (radix, start) = match (s.get(i), s.get(i + 1), s.get(i + 2)) {
        (Some(b'0'), Some(b'x' | b'X'), Some(h)) if h.is_ascii_hexdigit() => (16, i + 2),
        (Some(b'0'), _, _) => (8, i),
        _ => (10, i),
    };
    let mut v: u64 = 0;
    let mut j = start;
    while let Some(d) = s.get(j).and_then(|c| char::from(*c).to_digit(radix)) {
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
        j += 1;
    }
    Some((v, j))
}

/// One entry of SOURCE or DESTINATION, as fwknopd's `add_int_ent()` reads it.
enum Ent {
    Any,
    V4 { addr: u32, mask: u32 },
}

fn add_int_ent(ip: &[u8], warnings: &mut Vec<String>) -> Result<Ent, String> {
    let shown = String::from_utf8_lossy(ip);
    if ip.eq_ignore_ascii_case(b"ANY") {
        return Ok(Ent::Any);
    }
    let (ip_str, mask, need_shift) = match ip.iter().position(|&b| b == b'/') {
        Some(ndx) => {
            if ndx >= MAX_IPV4_STR_LEN {
                return Err(format!("{shown:?} is not an IPv4 address (fwknopd 2.6.10 reads only IPv4: for IPv6 sources use ANY here or knockerd's native format)"));
            }
            let m = &ip[ndx + 1..];
            if m.len() > 2 {
                if !(MIN_IPV4_STR_LEN..MAX_IPV4_STR_LEN).contains(&m.len()) {
                    let hint = if m.first().is_some_and(u8::is_ascii_digit)
                        && trim_end_c(m).len() <= 2
                    {
                        " (fwknopd allows no space after a prefix length in a list: write `10.0.0.0/8,` not `10.0.0.0/8 ,`)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "invalid mask {:?} in {shown:?}: give a prefix length (1 to 32) or a netmask (255.255.0.0){hint}",
                        String::from_utf8_lossy(m)
                    ));
                }
                let Some(mask) = inet_aton(m) else {
                    return Err(format!(
                        "invalid netmask {:?} in {shown:?}",
                        String::from_utf8_lossy(m)
                    ));
                };
                (&ip[..ndx], mask, false)
            } else if m.is_empty() {
                return Err(format!("missing mask value in {shown:?}"));
            } else {
                let n = c_strtol(m);
                let len = c_int(n).unwrap_or(0);
                if !(1..=32).contains(&len) {
                    return Err(format!("invalid prefix length {:?} in {shown:?}: fwknopd takes 1 to 32 (use ANY for everything)", String::from_utf8_lossy(m)));
                }
                if !n.clean {
                    warnings.push(format!("fwknopd reads {shown:?} with the prefix length {len} and ignores the rest; so does knockerd"));
                }
                (&ip[..ndx], len as u32, true)
            }
        }
        None => {
            if ip.len() >= MAX_IPV4_STR_LEN {
                return Err(format!("{shown:?} is not an IPv4 address (fwknopd 2.6.10 reads only IPv4 addresses and networks, at most 15 characters each)"));
            }
            (ip, 32, true)
        }
    };
    let Some(addr) = inet_aton(ip_str) else {
        let s = String::from_utf8_lossy(ip_str);
        let hint = if s.contains(':') {
            " (fwknopd 2.6.10 reads only IPv4: for IPv6 sources use ANY here or knockerd's native format)"
        } else {
            ""
        };
        return Err(format!("{s:?} is not an IPv4 address{hint}"));
    };
    let text = String::from_utf8_lossy(trim_end_c(ip_str));
    if text.parse::<Ipv4Addr>().ok().map(u32::from) != Some(addr) {
        warnings.push(format!(
            "fwknopd reads {text:?} as {} (inet_aton: leading zeros are octal, missing parts fill the last byte, text after a space is ignored); so does knockerd",
            Ipv4Addr::from(addr)
        ));
    }
    let mask = if mask == 32 {
        u32::MAX
    } else if need_shift && (1..32).contains(&mask) {
        u32::MAX << (32 - mask)
    } else {
        mask
    };
    Ok(Ent::V4 {
        addr: addr & mask,
        mask,
    })
}

/// fwknopd's list splitting (`expand_acc_int_list()`, `expand_acc_port_list()`): at each comma,
/// leading whitespace skipped; an entry of 32 bytes or more makes the whole list invalid.
fn split_list(text: &[u8]) -> Result<Vec<&[u8]>, String> {
    text.split(|&b| b == b',')
        .map(trim_start_c)
        .map(|e| {
            if e.len() + 1 >= ACCESS_BUF_LEN {
                Err(format!(
                    "the entry {:?} is longer than the {} characters fwknopd reads",
                    String::from_utf8_lossy(e),
                    ACCESS_BUF_LEN - 2
                ))
            } else {
                Ok(e)
            }
        })
        .collect()
}

/// An address list, and the entries knockerd cannot express (a netmask that is not a prefix).
fn addr_list(
    text: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(Vec<Network>, Vec<String>), String> {
    let mut out = Vec::new();
    let mut unsupported = Vec::new();
    for e in split_list(text)? {
        match add_int_ent(e, warnings)? {
            Ent::Any => out.push(Network::Any),
            Ent::V4 { addr, mask } => {
                let len = mask.count_ones();
                if mask != prefix_mask(len as u8) {
                    unsupported.push(format!("{:?} has the netmask {}, which is not a prefix: knockerd matches networks by prefix length; split it into prefixes", String::from_utf8_lossy(e), Ipv4Addr::from(mask)));
                    continue;
                }
                let s = Network::Net(IpAddr::V4(Ipv4Addr::from(addr)), len as u8);
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    Ok((out, unsupported))
}

/// A port list (OPEN_PORTS, RESTRICT_PORTS), as `parse_proto_and_port()` reads each entry.
fn port_list(text: &[u8], var: &str, warnings: &mut Vec<String>) -> Result<Vec<Service>, String> {
    let mut out: Vec<Service> = Vec::new();
    for e in split_list(text)? {
        let shown = String::from_utf8_lossy(e);
        let Some(ndx) = e.iter().position(|&b| b == b'/') else {
            return Err(format!(
                "{shown:?} is not proto/port: write e.g. tcp/22 (fwknopd refuses it too)"
            ));
        };
        let n = c_strtol(&e[ndx + 1..]);
        let port = c_int(n).unwrap_or(-1);
        if !(0..=65535).contains(&port) {
            return Err(format!(
                "invalid port in {shown:?}: a port is 1 to 65535 (fwknopd refuses it too)"
            ));
        }
        let proto = &e[..ndx];
        let proto = if proto.eq_ignore_ascii_case(b"tcp") {
            Proto::Tcp
        } else if proto.eq_ignore_ascii_case(b"udp") {
            Proto::Udp
        } else {
            return Err(format!(
                "invalid protocol in {shown:?}: tcp or udp, with no space before the / (fwknopd refuses it too)"
            ));
        };
        if !n.digits {
            return Err(format!(
                "{shown:?} has no port number: fwknopd would silently read it as port 0, which no request names; write e.g. tcp/22"
            ));
        }
        if port == 0 {
            return Err(format!(
                "{shown:?}: port 0 is not a port a client can ask for; remove it"
            ));
        }
        let service = Service::new(proto, port as u16);
        if !n.clean {
            let hint = if e[ndx + 1..].contains(&b'-') {
                " (fwknopd has no port ranges)"
            } else {
                ""
            };
            warnings.push(format!(
                "{var}: fwknopd reads {shown:?} as {service} and ignores the rest{hint}; so does knockerd"
            ));
        }
        if out.contains(&service) {
            let why = if var == "OPEN_PORTS" {
                " (fwknopd counts matches, so a service listed twice lets a request for one unlisted service through; knockerd requires every requested service to be listed)"
            } else {
                ""
            };
            warnings.push(format!("{var}: {service} is listed twice{why}"));
        } else {
            out.push(service);
        }
    }
    Ok(out)
}

/// fwknopd's `add_acc_expire_time()`: `sscanf(val, "%2d/%2d/%4d")` (month, day, year), then
/// `mktime()` with the month and day normalized (13/45/2030 is 2031-02-14). knockerd takes
/// midnight UTC (fwknopd: local time). Returns the time and whether text followed the year.
fn expire_date(val: &[u8]) -> Option<(i64, bool)> {
    let mut i = 0;
    let field = |width: usize, i: &mut usize| -> Option<i64> {
        while val.get(*i).is_some_and(|b| is_c_space(*b)) {
            *i += 1;
        }
        let start = *i;
        let mut neg = false;
        if matches!(val.get(*i), Some(b'+' | b'-')) {
            neg = val[*i] == b'-';
            *i += 1;
        }
        let digits_start = *i;
        while *i - start < width && val.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        if *i == digits_start {
            return None;
        }
        let v: i64 = std::str::from_utf8(&val[digits_start..*i])
            .ok()?
            .parse()
            .ok()?;
        Some(if neg { -v } else { v })
    };
    let mon = field(2, &mut i)?;
    (val.get(i) == Some(&b'/')).then_some(())?;
    i += 1;
    let mday = field(2, &mut i)?;
    (val.get(i) == Some(&b'/')).then_some(())?;
    i += 1;
    let year = field(4, &mut i)?;
    let trailing = !trim_end_c(&val[i..]).is_empty();
    let tm_mon = if mon > 0 { mon - 1 } else { mon };
    let tm_year = if year > 1900 {
        year - 1900
    } else if year < 100 {
        year + 100
    } else {
        year
    };
    let y = 1900 + tm_year + tm_mon.div_euclid(12);
    let m = tm_mon.rem_euclid(12) + 1;
    let days = days_from_civil(y, m) + (mday - 1);
    Some((days * 86_400, trailing))
}

/// Days from 1970-01-01 to the first of month `m` (1..=12) of year `y` (H. Hinnant).
fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn utc_date(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = t % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---- the access.conf parser ---------------------------------------------------------------------

/// Where a variable was set.
#[derive(Debug, Clone)]
struct Loc {
    file: PathBuf,
    line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

type At<T> = Option<(Loc, T)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HmacType {
    Known(Digest),
    Sha3_256,
    Sha3_512,
}

/// A stanza as the lines set it, before fwknopd's end-of-file processing.
#[derive(Default)]
struct Draft {
    file: PathBuf,
    line: usize,
    source: Vec<u8>,
    destination: At<Vec<u8>>,
    open_ports: At<Vec<u8>>,
    restrict_ports: At<Vec<u8>>,
    key: At<Zeroizing<Vec<u8>>>,
    key_var: &'static str,
    hmac_key: At<Zeroizing<Vec<u8>>>,
    hmac_var: &'static str,
    hmac_type: At<HmacType>,
    encryption_mode: At<String>,
    fw_access_timeout: At<i64>,
    max_fw_timeout: At<i64>,
    access_expire: At<i64>,
    require_username: At<String>,
    require_source_address: bool,
    enable_cmd_exec: At<bool>,
    enable_cmd_sudo_exec: At<bool>,
    /// CMD_EXEC_USER and the like: only used by command messages.
    cmd_users: Vec<(Loc, &'static str)>,
    cmd_cycle_open: At<String>,
    cmd_cycle_close: At<String>,
    cmd_cycle_timer: At<i64>,
    /// GPG_DECRYPT_PW (or GPG_ALLOW_NO_PW Y, which sets an empty one): the stanza decrypts
    /// GnuPG packets.
    gpg_decrypt_pw: At<bool>,
    gpg_allow_no_pw: bool,
    gpg_disable_sig: bool,
    gpg_remote: bool,
    /// Other GPG_* variables: without a decryption password they do nothing.
    gpg_other: Vec<(Loc, String)>,
    force_nat: Option<Loc>,
    force_snat: Option<Loc>,
    force_masquerade: At<bool>,
    forward_all: At<bool>,
    disable_dnat: At<bool>,
    warnings: Vec<String>,
}

impl Draft {
    fn shown_source(&self) -> String {
        String::from_utf8_lossy(&self.source).into_owned()
    }

    fn note(&mut self, at: &Loc, text: String) {
        self.warnings.push(format!("{at}: {text}"));
    }

    /// Records that `what` replaces an earlier line, as in fwknopd.
    fn again<T>(&mut self, what: &str, prev: &At<T>, at: &Loc) {
        if let Some((p, _)) = prev {
            let text = format!(
                "{what} was already set at line {} of {}; this one counts, as in fwknopd",
                p.line,
                p.file.display()
            );
            self.note(at, text);
        }
    }
}

struct Parser<'c> {
    fwknopd: &'c FwknopdConf,
    drafts: Vec<Draft>,
    global: Vec<String>,
    files: usize,
    /// A `source` line in another case was seen (fwknopd's names are case-sensitive).
    other_case_source: bool,
}

/// The fwknopd access.conf variables, for the "case-sensitive" hint.
const ACCESS_VARS: [&str; 44] = [
    "SOURCE",
    "DESTINATION",
    "OPEN_PORTS",
    "RESTRICT_PORTS",
    "KEY",
    "KEY_BASE64",
    "HMAC_KEY",
    "HMAC_KEY_BASE64",
    "HMAC_DIGEST_TYPE",
    "ENCRYPTION_MODE",
    "FW_ACCESS_TIMEOUT",
    "MAX_FW_TIMEOUT",
    "ACCESS_EXPIRE",
    "ACCESS_EXPIRE_EPOCH",
    "ENABLE_CMD_EXEC",
    "ENABLE_CMD_SUDO_EXEC",
    "CMD_EXEC_USER",
    "CMD_EXEC_GROUP",
    "CMD_SUDO_EXEC_USER",
    "CMD_SUDO_EXEC_GROUP",
    "CMD_CYCLE_OPEN",
    "CMD_CYCLE_CLOSE",
    "CMD_CYCLE_TIMER",
    "REQUIRE_USERNAME",
    "REQUIRE_SOURCE_ADDRESS",
    "REQUIRE_SOURCE",
    "GPG_HOME_DIR",
    "GPG_EXE",
    "GPG_DECRYPT_ID",
    "GPG_DECRYPT_PW",
    "GPG_ALLOW_NO_PW",
    "GPG_REQUIRE_SIG",
    "GPG_DISABLE_SIG",
    "GPG_IGNORE_SIG_VERIFY_ERROR",
    "GPG_REMOTE_ID",
    "GPG_FINGERPRINT_ID",
    "FORCE_NAT",
    "FORCE_SNAT",
    "FORCE_MASQUERADE",
    "DISABLE_DNAT",
    "FORWARD_ALL",
    "%INCLUDE",
    "%INCLUDE_FOLDER",
    "%INCLUDE_KEYS",
];

impl<'c> Parser<'c> {
    fn new(fwknopd: &'c FwknopdConf) -> Self {
        Parser {
            fwknopd,
            drafts: Vec::new(),
            global: fwknopd.warnings.clone(),
            files: 0,
            other_case_source: false,
        }
    }

    /// `parse_access_file()`: `depth` is 1 for the root file.
    fn parse_file(
        &mut self,
        path: &Path,
        text: Option<&[u8]>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(plain_err(
                path,
                format!("more than {MAX_FILES} files are included; knockerd stops here"),
            ));
        }
        let owned;
        let text = match text {
            Some(t) => t,
            None => {
                owned = read_file(path, Some(&mut self.global))?;
                &owned[..]
            }
        };
        let mut current: Option<usize> = None;
        for (n, raw) in numbered_lines(text) {
            let at = Loc {
                file: path.to_path_buf(),
                line: n,
            };
            if raw.len() > MAX_LINE_LEN - 1 {
                return Err(line_err(path, n, format!("the line is {} bytes long; fwknopd reads at most {} bytes per line and would split it: shorten it", raw.len(), MAX_LINE_LEN - 1)));
            }
            let (var, val, cut) = match scan_line(raw) {
                Entry::Skip => continue,
                Entry::Bad { var } => {
                    let what = if var.is_empty() {
                        "a line of only spaces (a comment must start with # in the first column)"
                            .to_string()
                    } else {
                        format!("{} has no value", shown_word(var))
                    };
                    return Err(line_err(path, n, format!("{what}: fwknopd reads every line that does not start with # or ; as `VARIABLE value` and refuses the file (\"Invalid access file entry\")")));
                }
                Entry::Pair { var, val, cut } => (strip_colon(var), val, cut),
            };
            let name = String::from_utf8_lossy(var).into_owned();
            match var {
                b"%include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(line_err(path, n, format!("%include nests more than {MAX_INCLUDE_DEPTH} files deep: fwknopd refuses it (\"Refusing to go deeper than 3 levels\")")));
                    }
                    let inc = path_of(val);
                    self.relative_note(&inc, &at, "%include");
                    self.parse_file(&inc, None, depth + 1)
                        .map_err(|e| with_context(e, &at, "%include"))?;
                    continue;
                }
                b"%include_folder" => {
                    self.parse_folder(val, &at, depth)?;
                    continue;
                }
                b"SOURCE" => {
                    if let Some(c) = current {
                        self.validate(c)?;
                    }
                    self.drafts.push(Draft {
                        file: path.to_path_buf(),
                        line: n,
                        source: val.to_vec(),
                        ..Draft::default()
                    });
                    current = Some(self.drafts.len() - 1);
                    if cut {
                        self.global.push(format!("{at}: SOURCE: fwknopd ignores everything from the ';' on; so does knockerd"));
                    }
                    continue;
                }
                _ => {}
            }
            if var.first() == Some(&b'#') {
                // an indented comment: fwknopd ignores it as an unknown variable
                continue;
            }
            let Some(c) = current else {
                self.other_case_source |= var.eq_ignore_ascii_case(b"SOURCE");
                self.global.push(format!(
                    "{at}: {} comes before any SOURCE line: fwknopd ignores it, and so does knockerd",
                    shown_var(var)
                ));
                continue;
            };
            if var == b"%include_keys" {
                current = self.include_keys(c, val, &at)?;
                continue;
            }
            let secret = matches!(
                var,
                b"KEY" | b"KEY_BASE64" | b"HMAC_KEY" | b"HMAC_KEY_BASE64" | b"GPG_DECRYPT_PW"
            );
            if cut {
                let d = &mut self.drafts[c];
                d.note(
                    &at,
                    format!("{name}: fwknopd ignores everything from the ';' on; so does knockerd"),
                );
            }
            if secret && val.windows(2).any(|w| w == b" #") {
                let d = &mut self.drafts[c];
                d.note(&at, format!("{name}: the value contains \" #\": fwknopd has no comments after a value, so this is part of the key; so it is for knockerd"));
            }
            if secret && trim_end_c(val).len() != val.len() {
                let d = &mut self.drafts[c];
                d.note(&at, format!("{name}: the value ends with whitespace, which fwknopd 2.6.10 keeps as part of the key (2.6.11 removes it); knockerd keeps it, as Debian's fwknopd does"));
            }
            self.apply(c, var, &name, val, &at)?;
        }
        if let Some(c) = current {
            self.validate(c)?;
        }
        if depth == 1 && self.drafts.is_empty() {
            let hint = if self.other_case_source {
                " (variable names are case-sensitive: write SOURCE)"
            } else {
                ""
            };
            return Err(plain_err(path, format!("no SOURCE line{hint}: fwknopd requires at least one stanza (\"Could not find valid SOURCE stanza\")")));
        }
        Ok(())
    }

    fn relative_note(&mut self, p: &Path, at: &Loc, what: &str) {
        if p.is_relative() {
            self.global.push(format!("{at}: {what} {}: a relative path is opened from the working directory (/ for a service), by fwknopd and knockerd alike; write it absolute", p.display()));
        }
    }

    /// `parse_access_folder()`: every file whose last extension starts with `.conf`. knockerd
    /// reads them in name order; fwknopd in directory order.
    fn parse_folder(&mut self, val: &[u8], at: &Loc, depth: usize) -> Result<(), ConfigError> {
        // chop_char(): one trailing '/' goes
        let val = match val {
            [rest @ .., b'/'] if !rest.is_empty() => rest,
            v => v,
        };
        let dir = path_of(val);
        self.relative_note(&dir, at, "%include_folder");
        if depth + 1 > MAX_NESTING {
            return Err(line_err(&at.file, at.line, format!("includes nest more than {MAX_NESTING} levels deep (an %include_folder that includes itself?); fwknopd would recurse until it crashes")));
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            line_err(
                &at.file,
                at.line,
                format!(
                    "%include_folder {}: cannot read the directory: {e} (fwknopd refuses it too)",
                    dir.display()
                ),
            )
        })?;
        let mut names: Vec<Vec<u8>> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().as_bytes().to_vec())
            .filter(|n| {
                n.iter()
                    .rposition(|&b| b == b'.')
                    .is_some_and(|i| n[i..].starts_with(b".conf"))
            })
            .collect();
        names.sort();
        if names.len() > 1 {
            self.global.push(format!("{at}: %include_folder {}: knockerd reads its {} files in name order; fwknopd reads them in directory order, which is not defined: make sure the order of stanzas does not matter, or use %include lines", dir.display(), names.len()));
        }
        for name in names {
            let p = dir.join(OsStr::from_bytes(&name));
            self.parse_file(&p, None, depth + 1)
                .map_err(|e| with_context(e, at, "%include_folder"))?;
        }
        Ok(())
    }

    /// `include_keys_file()`: only key variables; a missing or bad file leaves the stanza as it
    /// is, and a stanza that is then invalid is skipped (fwknopd only logs it at debug level).
    fn include_keys(
        &mut self,
        c: usize,
        val: &[u8],
        at: &Loc,
    ) -> Result<Option<usize>, ConfigError> {
        if c + 1 != self.drafts.len() {
            return Err(line_err(&at.file, at.line, "%include_keys after an %include in the same stanza: fwknopd would skip the last stanza loaded (not this one) if the keys are bad; put %include_keys right after SOURCE".into()));
        }
        let path = path_of(val);
        self.relative_note(&path, at, "%include_keys");
        let mut problems = Vec::new();
        match read_file(&path, Some(&mut self.global)) {
            Err(e) => problems.push(format!(
                "{e}: the stanza gets no keys from it (fwknopd goes on without them too)"
            )),
            Ok(text) => {
                for (n, raw) in numbered_lines(&text) {
                    let kat = Loc {
                        file: path.clone(),
                        line: n,
                    };
                    if raw.len() > MAX_LINE_LEN - 1 {
                        problems.push(format!(
                            "{kat}: the line is too long; fwknopd stops reading the file here"
                        ));
                        break;
                    }
                    let (var, v) = match scan_line(raw) {
                        Entry::Skip => continue,
                        Entry::Bad { .. } => {
                            problems.push(format!("{kat}: not `VARIABLE value`; fwknopd stops reading the keys file here"));
                            break;
                        }
                        Entry::Pair { var, val, .. } => (strip_colon(var), val),
                    };
                    let name = String::from_utf8_lossy(var).into_owned();
                    match var {
                        b"KEY" | b"KEY_BASE64" | b"HMAC_KEY" | b"HMAC_KEY_BASE64"
                        | b"GPG_DECRYPT_PW" => {
                            if let Err(e) = self.apply(c, var, &name, v, &kat) {
                                problems.push(format!(
                                    "{}; fwknopd stops reading the keys file here",
                                    e
                                ));
                                break;
                            }
                        }
                        b"GPG_DECRYPT_ID" | b"GPG_ALLOW_NO_PW" | b"GPG_REQUIRE_SIG"
                        | b"GPG_DISABLE_SIG" | b"GPG_IGNORE_SIG_VERIFY_ERROR"
                        | b"GPG_REMOTE_ID" | b"GPG_FINGERPRINT_ID" => {
                            self.apply(c, var, &name, v, &kat)?;
                        }
                        _ => self.global.push(format!("{kat}: {name} is ignored: a keys file (%include_keys) sets only keys, as in fwknopd")),
                    }
                }
            }
        }
        for p in &problems {
            self.global.push(format!("{at}: %include_keys: {p}"));
        }
        if let Err(why) = fwknopd_valid(&self.drafts[c]) {
            let d = self.drafts.remove(c);
            self.global.push(format!("{at}: the stanza of {}:{} (SOURCE {}) is skipped, as fwknopd skips it (\"Data error in included keyfile\"): {why}", d.file.display(), d.line, d.shown_source()));
            return Ok(None);
        }
        Ok(Some(c))
    }

    /// `acc_data_is_valid()` at the points where fwknopd calls it: fatal there.
    fn validate(&self, c: usize) -> Result<(), ConfigError> {
        let d = &self.drafts[c];
        fwknopd_valid(d).map_err(|why| {
            line_err(
                &d.file,
                d.line,
                format!(
                    "stanza SOURCE {}: {why} (fwknopd refuses the file: \"Data error in access file\")",
                    d.shown_source()
                ),
            )
        })
    }

    fn apply(
        &mut self,
        c: usize,
        var: &[u8],
        name: &str,
        val: &[u8],
        at: &Loc,
    ) -> Result<(), ConfigError> {
        let err = |m: String| line_err(&at.file, at.line, m);
        let text = || {
            std::str::from_utf8(val)
                .map(str::to_string)
                .map_err(|_| err(format!("{name}: the value is not UTF-8 text")))
        };
        let changeme = |what: &str| {
            err(format!("{what} is still __CHANGEME__: fwknopd refuses to start (\"value is not properly set\"); put the stanza's key here (`fwknop --key-gen` makes a pair)"))
        };
        let fwknopd = self.fwknopd;
        let d = &mut self.drafts[c];
        match var {
            b"DESTINATION" => {
                d.again(name, &d.destination.clone().map(|(l, _)| (l, ())), at);
                d.destination = Some((at.clone(), val.to_vec()));
            }
            b"OPEN_PORTS" => {
                d.again(name, &d.open_ports.clone().map(|(l, _)| (l, ())), at);
                d.open_ports = Some((at.clone(), val.to_vec()));
            }
            b"RESTRICT_PORTS" => {
                d.again(name, &d.restrict_ports.clone().map(|(l, _)| (l, ())), at);
                d.restrict_ports = Some((at.clone(), val.to_vec()));
            }
            b"KEY" => {
                if val.eq_ignore_ascii_case(b"__CHANGEME__") {
                    return Err(changeme("KEY"));
                }
                d.again("the encryption key", &key_at(&d.key), at);
                d.key = Some((at.clone(), Zeroizing::new(val.to_vec())));
                d.key_var = "KEY";
            }
            b"KEY_BASE64" | b"HMAC_KEY_BASE64" => {
                if val.eq_ignore_ascii_case(b"__CHANGEME__") {
                    return Err(changeme(name));
                }
                if !is_base64(val) {
                    let hint = if trim_end_c(val).len() != val.len() {
                        " (it ends with whitespace, which fwknopd 2.6.10 keeps and then refuses)"
                    } else {
                        ""
                    };
                    return Err(err(format!("{name} is not base64{hint}: fwknopd refuses it (\"doesn't look like base64-encoded data\")")));
                }
                let key = b64_decode(val);
                if var == b"KEY_BASE64" {
                    d.again("the encryption key", &key_at(&d.key), at);
                    d.key = Some((at.clone(), key));
                    d.key_var = "KEY_BASE64";
                } else {
                    d.again("the HMAC key", &key_at(&d.hmac_key), at);
                    d.hmac_key = Some((at.clone(), key));
                    d.hmac_var = "HMAC_KEY_BASE64";
                }
            }
            b"HMAC_KEY" => {
                if val.eq_ignore_ascii_case(b"__CHANGEME__") {
                    return Err(changeme("HMAC_KEY"));
                }
                d.again("the HMAC key", &key_at(&d.hmac_key), at);
                d.hmac_key = Some((at.clone(), Zeroizing::new(val.to_vec())));
                d.hmac_var = "HMAC_KEY";
            }
            b"HMAC_DIGEST_TYPE" => {
                let t = match val.to_ascii_lowercase().as_slice() {
                    b"md5" => HmacType::Known(Digest::Md5),
                    b"sha1" => HmacType::Known(Digest::Sha1),
                    b"sha256" => HmacType::Known(Digest::Sha256),
                    b"sha384" => HmacType::Known(Digest::Sha384),
                    b"sha512" => HmacType::Known(Digest::Sha512),
                    b"sha3_256" => HmacType::Sha3_256,
                    b"sha3_512" => HmacType::Sha3_512,
                    _ => return Err(err(format!("HMAC_DIGEST_TYPE {:?} must be one of md5, sha1, sha256, sha384, sha512, sha3_256, sha3_512, with nothing after it (fwknopd refuses it too)", String::from_utf8_lossy(val)))),
                };
                d.again(name, &d.hmac_type.clone().map(|(l, _)| (l, ())), at);
                d.hmac_type = Some((at.clone(), t));
            }
            b"FW_ACCESS_TIMEOUT" | b"MAX_FW_TIMEOUT" => {
                let v = whole_number(name, val, 0, RCHK_MAX_TIMEOUT).map_err(err)?;
                let slot = if var == b"FW_ACCESS_TIMEOUT" {
                    &mut d.fw_access_timeout
                } else {
                    &mut d.max_fw_timeout
                };
                let prev = slot.clone().map(|(l, _)| (l, ()));
                *slot = Some((at.clone(), v));
                d.again(name, &prev, at);
            }
            b"ENCRYPTION_MODE" => {
                let mode = val.to_ascii_lowercase();
                if !matches!(
                    mode.as_slice(),
                    b"cbc" | b"ecb" | b"cfb" | b"ofb" | b"ctr" | b"legacy" | b"asymmetric"
                ) {
                    return Err(err(format!("ENCRYPTION_MODE {:?} is unknown: fwknopd takes cbc, ecb, cfb, ofb, ctr, legacy or asymmetric, with nothing after it (it refuses this too)", String::from_utf8_lossy(val))));
                }
                d.again(name, &d.encryption_mode.clone().map(|(l, _)| (l, ())), at);
                d.encryption_mode = Some((at.clone(), String::from_utf8_lossy(&mode).into_owned()));
            }
            b"ENABLE_CMD_EXEC" => d.enable_cmd_exec = Some((at.clone(), c_bool(val))),
            b"ENABLE_CMD_SUDO_EXEC" => d.enable_cmd_sudo_exec = Some((at.clone(), c_bool(val))),
            b"CMD_EXEC_USER"
            | b"CMD_EXEC_GROUP"
            | b"CMD_SUDO_EXEC_USER"
            | b"CMD_SUDO_EXEC_GROUP" => {
                // fwknopd looks every one of them up with getpwnam(), groups included
                let who = text()?;
                let known = nix::unistd::User::from_name(&who).ok().flatten().is_some();
                if !known {
                    return Err(err(format!("{name} {who:?} is not a user on this system: fwknopd refuses to start (\"Unable to determine UID\"; it looks up groups as users too)")));
                }
                let var_static = match var {
                    b"CMD_EXEC_USER" => "CMD_EXEC_USER",
                    b"CMD_EXEC_GROUP" => "CMD_EXEC_GROUP",
                    b"CMD_SUDO_EXEC_USER" => "CMD_SUDO_EXEC_USER",
                    _ => "CMD_SUDO_EXEC_GROUP",
                };
                d.cmd_users.push((at.clone(), var_static));
            }
            b"CMD_CYCLE_OPEN" => {
                let t = text()?;
                d.again(name, &d.cmd_cycle_open.clone().map(|(l, _)| (l, ())), at);
                d.cmd_cycle_open = Some((at.clone(), t));
            }
            b"CMD_CYCLE_CLOSE" => {
                let t = text()?;
                d.again(name, &d.cmd_cycle_close.clone().map(|(l, _)| (l, ())), at);
                d.cmd_cycle_close = Some((at.clone(), t));
            }
            b"CMD_CYCLE_TIMER" => {
                let v = whole_number(name, val, 1, RCHK_MAX_TIMEOUT).map_err(err)?;
                d.again(name, &d.cmd_cycle_timer.clone().map(|(l, _)| (l, ())), at);
                d.cmd_cycle_timer = Some((at.clone(), v));
            }
            b"REQUIRE_USERNAME" => {
                let t = text()?;
                if t.trim_end() != t {
                    d.note(at, format!("REQUIRE_USERNAME {:?} ends with whitespace, which fwknopd 2.6.10 keeps, so no client username ever matches; knockerd keeps it too: remove it", t));
                }
                d.again(name, &d.require_username.clone().map(|(l, _)| (l, ())), at);
                d.require_username = Some((at.clone(), t));
            }
            b"REQUIRE_SOURCE_ADDRESS" | b"REQUIRE_SOURCE" => {
                d.require_source_address = c_bool(val);
            }
            b"GPG_HOME_DIR" => {
                if !path_of(val).is_dir() {
                    return Err(err(format!(
                        "GPG_HOME_DIR {:?} is not a directory: fwknopd refuses to start",
                        String::from_utf8_lossy(val)
                    )));
                }
                d.gpg_other.push((at.clone(), name.to_string()));
            }
            b"GPG_DECRYPT_PW" => {
                if val.eq_ignore_ascii_case(b"__CHANGEME__") {
                    return Err(changeme("GPG_DECRYPT_PW"));
                }
                d.gpg_decrypt_pw = Some((at.clone(), true));
            }
            b"GPG_ALLOW_NO_PW" => {
                d.gpg_allow_no_pw = c_bool(val);
                if d.gpg_allow_no_pw {
                    d.gpg_decrypt_pw = Some((at.clone(), false));
                }
            }
            b"GPG_DISABLE_SIG" => {
                d.gpg_disable_sig = c_bool(val);
                d.gpg_other.push((at.clone(), name.to_string()));
            }
            b"GPG_REMOTE_ID" | b"GPG_FINGERPRINT_ID" => {
                d.gpg_remote = true;
                d.gpg_other.push((at.clone(), name.to_string()));
            }
            b"GPG_EXE"
            | b"GPG_DECRYPT_ID"
            | b"GPG_REQUIRE_SIG"
            | b"GPG_IGNORE_SIG_VERIFY_ERROR" => {
                d.gpg_other.push((at.clone(), name.to_string()));
            }
            b"ACCESS_EXPIRE" => {
                let Some((t, trailing)) = expire_date(val) else {
                    return Err(err(format!("ACCESS_EXPIRE {:?} is not a date: write MM/DD/YYYY (fwknopd refuses it too)", String::from_utf8_lossy(val))));
                };
                if t <= 0 {
                    return Err(err(format!("ACCESS_EXPIRE {:?} is before 1970: fwknopd would silently never expire the stanza; write MM/DD/YYYY", String::from_utf8_lossy(val))));
                }
                if trailing {
                    d.note(at, format!("ACCESS_EXPIRE: fwknopd reads {:?} as {} and ignores the rest; so does knockerd", String::from_utf8_lossy(val), utc_date(t as u64)));
                }
                d.note(at, format!("ACCESS_EXPIRE: knockerd takes midnight UTC ({}); fwknopd took midnight in the server's time zone: use ACCESS_EXPIRE_EPOCH for an exact time", utc_date(t as u64)));
                d.again(
                    "the expiry",
                    &d.access_expire.clone().map(|(l, _)| (l, ())),
                    at,
                );
                d.access_expire = Some((at.clone(), t));
            }
            b"ACCESS_EXPIRE_EPOCH" => {
                let n = c_strtol(val);
                let t = match n.value {
                    Some(v) if n.clean && v >= 0 => v,
                    None => return Err(err("ACCESS_EXPIRE_EPOCH is out of range (fwknopd refuses it too)".into())),
                    Some(_) => return Err(err(format!("ACCESS_EXPIRE_EPOCH {:?} is not a whole number of seconds since 1970 (fwknopd would silently read it as no expiry or as its leading digits): write the number alone", String::from_utf8_lossy(val)))),
                };
                d.again(
                    "the expiry",
                    &d.access_expire.clone().map(|(l, _)| (l, ())),
                    at,
                );
                if t == 0 {
                    d.note(
                        at,
                        "ACCESS_EXPIRE_EPOCH 0 means no expiry to fwknopd; so it does to knockerd"
                            .into(),
                    );
                    d.access_expire = None;
                } else {
                    d.access_expire = Some((at.clone(), t));
                }
            }
            b"FORCE_NAT" => {
                let t = String::from_utf8_lossy(val).into_owned();
                let mut words = t.split_ascii_whitespace();
                let ok = matches!(
                    (
                        words.next().map(str::parse::<Ipv4Addr>),
                        words.next().map(str::parse::<u16>)
                    ),
                    (Some(Ok(_)), Some(Ok(_)))
                );
                if !ok {
                    return Err(err(format!(
                        "FORCE_NAT {t:?}: fwknopd needs <IP> <PORT> and refuses this"
                    )));
                }
                if fwknopd.file.is_some() && !fwknopd.nat_enabled {
                    return Err(err("FORCE_NAT requires ENABLE_IPT_FORWARDING or ENABLE_IPT_LOCAL_NAT in fwknopd.conf: fwknopd refuses to start".into()));
                }
                d.force_nat = Some(at.clone());
            }
            b"FORCE_SNAT" => {
                let t = String::from_utf8_lossy(val).into_owned();
                if t.split_ascii_whitespace()
                    .next()
                    .map(str::parse::<Ipv4Addr>)
                    .is_none_or(|r| r.is_err())
                {
                    return Err(err(format!(
                        "FORCE_SNAT {t:?}: fwknopd needs an IPv4 address and refuses this"
                    )));
                }
                if fwknopd.file.is_some() && !fwknopd.nat_enabled {
                    return Err(err("FORCE_SNAT requires ENABLE_IPT_FORWARDING or ENABLE_IPT_LOCAL_NAT in fwknopd.conf: fwknopd refuses to start".into()));
                }
                d.force_snat = Some(at.clone());
            }
            b"FORCE_MASQUERADE" => d.force_masquerade = Some((at.clone(), c_bool(val))),
            b"DISABLE_DNAT" => d.disable_dnat = Some((at.clone(), c_bool(val))),
            b"FORWARD_ALL" => d.forward_all = Some((at.clone(), c_bool(val))),
            _ => {
                let upper = name.to_ascii_uppercase();
                let hint = if upper != name && ACCESS_VARS.contains(&upper.as_str()) {
                    let fixed = if upper.starts_with('%') {
                        upper.to_ascii_lowercase()
                    } else {
                        upper
                    };
                    format!(" (variable names are case-sensitive: write {fixed})")
                } else {
                    String::new()
                };
                d.note(
                    at,
                    format!(
                        "unknown variable {} is ignored, as fwknopd ignores it{hint}",
                        shown_var(var)
                    ),
                );
            }
        }
        Ok(())
    }

    /// fwknopd's end-of-parse processing and knockerd's own checks.
    fn finish(self, access: &Path) -> Result<FwknopConf, ConfigError> {
        let Parser {
            fwknopd,
            drafts,
            mut global,
            ..
        } = self;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut stanzas = Vec::new();
        let mut refused = Vec::new();
        let mut warnings = Vec::new();
        for (i, d) in drafts.into_iter().enumerate() {
            match finalize(d, i + 1, now)? {
                Ok(s) => {
                    warnings.extend(s.warnings.iter().cloned());
                    stanzas.push(s);
                }
                Err((r, w)) => {
                    warnings.extend(w);
                    warnings.push(format!(
                        "{}:{}: stanza #{} (SOURCE {}) is refused, knockerd does not run it: {}",
                        r.file.display(),
                        r.line,
                        r.number,
                        r.source,
                        r.reasons.join("; ")
                    ));
                    refused.push(r);
                }
            }
        }
        if fwknopd.max_age.is_none() {
            global.push(format!("{}: ENABLE_SPA_PACKET_AGING is N: fwknopd then accepts packets of any age and relies on its replay cache alone; knockerd keeps replay digests only for the age window, so turn aging back on", fwknopd.file.as_deref().unwrap_or(Path::new("fwknopd.conf")).display()));
        }
        if stanzas.is_empty() {
            let reasons: Vec<String> = refused
                .iter()
                .map(|r| {
                    format!(
                        "stanza #{} ({}:{}): {}",
                        r.number,
                        r.file.display(),
                        r.line,
                        r.reasons.join("; ")
                    )
                })
                .collect();
            return Err(plain_err(
                access,
                format!(
                    "no stanza knockerd can run, so it would open nothing: {}",
                    reasons.join(" | ")
                ),
            ));
        }
        let mut all = global.clone();
        all.extend(warnings);
        Ok(FwknopConf {
            access_file: access.to_path_buf(),
            fwknopd_conf: fwknopd.file.clone(),
            stanzas,
            refused,
            spa_port: fwknopd.spa_port,
            max_age: fwknopd.max_age,
            interface: fwknopd.interface.clone(),
            warnings: all,
            global_warnings: global,
        })
    }
}

fn key_at(k: &At<Zeroizing<Vec<u8>>>) -> At<()> {
    k.as_ref().map(|(l, _)| (l.clone(), ()))
}

fn with_context(mut e: ConfigError, at: &Loc, what: &str) -> ConfigError {
    e.message = format!("{} (included by {what} at {at})", e.message);
    e
}

/// fwknopd's `acc_data_is_valid()`, without its side effects.
fn fwknopd_valid(d: &Draft) -> Result<(), String> {
    let key_len = d.key.as_ref().map_or(0, |(_, k)| k.len());
    let gpg_pw = d.gpg_decrypt_pw.as_ref().map(|(_, non_empty)| *non_empty);
    let use_gpg = d.gpg_decrypt_pw.is_some();
    if (key_len == 0 && gpg_pw != Some(true) && !d.gpg_allow_no_pw)
        || (d.key.is_none() && !use_gpg && !d.gpg_allow_no_pw)
    {
        return Err("no keys (fwknopd: \"No keys found for access stanza\"): give it KEY_BASE64 and HMAC_KEY_BASE64 (`fwknop --key-gen` makes a pair)".into());
    }
    if let (Some((_, k)), Some((_, h))) = (&d.key, &d.hmac_key) {
        if !k.is_empty() && !h.is_empty() && k.as_slice() == h.as_slice() {
            return Err("the encryption key and the HMAC key are identical (fwknopd: \"should not be identical\"): make a new pair with `fwknop --key-gen`".into());
        }
    }
    let snat = d.force_snat.is_some() || d.force_masquerade.as_ref().is_some_and(|(_, b)| *b);
    let forward_all = d.forward_all.as_ref().is_some_and(|(_, b)| *b);
    if snat && d.force_nat.is_none() && !forward_all {
        return Err("FORCE_SNAT/FORCE_MASQUERADE requires either FORCE_NAT or FORWARD_ALL (fwknopd's words)".into());
    }
    match (&d.cmd_cycle_open, &d.cmd_cycle_close) {
        (Some(_), None) => {
            return Err("CMD_CYCLE_OPEN without CMD_CYCLE_CLOSE (write CMD_CYCLE_CLOSE NONE for no close command)".into())
        }
        (None, Some(_)) => return Err("CMD_CYCLE_CLOSE without CMD_CYCLE_OPEN".into()),
        (Some((_, open)), Some((_, close))) => {
            if !close.starts_with("NONE") && d.cmd_cycle_timer.is_none() {
                return Err("CMD_CYCLE_OPEN needs CMD_CYCLE_TIMER (seconds until CMD_CYCLE_CLOSE runs)".into());
            }
            if open.len() >= CMD_CYCLE_BUFSIZE || close.len() >= CMD_CYCLE_BUFSIZE {
                return Err(format!(
                    "a CMD_CYCLE command is {CMD_CYCLE_BUFSIZE} bytes or longer"
                ));
            }
        }
        (None, None) => {}
    }
    Ok(())
}

/// What one line of a refusal says: `file:line: VARIABLE: why`.
fn reason(at: &Loc, text: String) -> String {
    format!("{at}: {text}")
}

type Declined = (RefusedStanza, Vec<String>);

/// fwknopd's `expand_acc_ent_lists()` and `set_acc_defaults()` for one stanza, then what
/// knockerd cannot honour.
fn finalize(
    mut d: Draft,
    number: usize,
    now: u64,
) -> Result<Result<Stanza, Declined>, ConfigError> {
    let source_at = Loc {
        file: d.file.clone(),
        line: d.line,
    };
    let fatal = |at: &Loc, what: &str, why: String| {
        line_err(
            &at.file,
            at.line,
            format!("{what}: {why} (fwknopd refuses the file: \"Fatal invalid {what} in access stanza\")"),
        )
    };
    let mut reasons: Vec<String> = Vec::new();
    let mut list_warnings = Vec::new();

    let (sources, bad) =
        addr_list(&d.source, &mut list_warnings).map_err(|e| fatal(&source_at, "SOURCE", e))?;
    for w in list_warnings.drain(..) {
        d.note(&source_at, format!("SOURCE: {w}"));
    }
    reasons.extend(
        bad.into_iter()
            .map(|b| reason(&source_at, format!("SOURCE: {b}"))),
    );
    let destinations = match d.destination.take() {
        Some((at, text)) => {
            let (list, bad) =
                addr_list(&text, &mut list_warnings).map_err(|e| fatal(&at, "DESTINATION", e))?;
            for w in list_warnings.drain(..) {
                d.note(&at, format!("DESTINATION: {w}"));
            }
            reasons.extend(
                bad.into_iter()
                    .map(|b| reason(&at, format!("DESTINATION: {b}"))),
            );
            list
        }
        None => vec![Network::Any],
    };
    let ports =
        |slot: At<Vec<u8>>, var: &str, d: &mut Draft| -> Result<Vec<Service>, ConfigError> {
            match slot {
                Some((at, text)) => {
                    let mut w = Vec::new();
                    let list = port_list(&text, var, &mut w).map_err(|e| fatal(&at, var, e))?;
                    for w in w {
                        d.note(&at, w);
                    }
                    Ok(list)
                }
                None => Ok(Vec::new()),
            }
        };
    let open_slot = d.open_ports.take();
    let restrict_slot = d.restrict_ports.take();
    let open_ports = ports(open_slot, "OPEN_PORTS", &mut d)?;
    let restrict_ports = ports(restrict_slot, "RESTRICT_PORTS", &mut d)?;

    // set_acc_defaults()
    let fw = d.fw_access_timeout.as_ref().map_or(0, |(_, v)| *v).max(0) as u64;
    let mut fw_access_timeout = if fw < 1 {
        DEFAULT_FW_ACCESS_TIMEOUT
    } else {
        fw
    };
    let max = d.max_fw_timeout.as_ref().map_or(0, |(_, v)| *v).max(0) as u64;
    let max_fw_timeout = if max < 1 { DEFAULT_MAX_FW_TIMEOUT } else { max };
    if let Some((at, 0)) = &d.fw_access_timeout {
        let at = at.clone();
        d.note(&at, format!("FW_ACCESS_TIMEOUT 0 means fwknopd's default, {DEFAULT_FW_ACCESS_TIMEOUT} s; so it does to knockerd"));
    }
    if max_fw_timeout < fw_access_timeout {
        let at = d
            .fw_access_timeout
            .as_ref()
            .map_or(source_at.clone(), |(l, _)| l.clone());
        d.note(&at, format!("FW_ACCESS_TIMEOUT {fw_access_timeout} is above MAX_FW_TIMEOUT {max_fw_timeout}: fwknopd says it honours MAX_FW_TIMEOUT but grants {fw_access_timeout} s (seen on Debian's fwknopd); knockerd grants {max_fw_timeout} s"));
        fw_access_timeout = max_fw_timeout;
    }
    if let Some((at, _)) = &d.gpg_decrypt_pw {
        if !d.gpg_disable_sig && !d.gpg_remote {
            return Err(line_err(&at.file, at.line, "GnuPG signatures are checked by default, and this stanza names no GPG_REMOTE_ID or GPG_FINGERPRINT_ID: fwknopd refuses to start".into()));
        }
    }

    // what knockerd cannot honour
    if let Some((at, _)) = &d.gpg_decrypt_pw {
        reasons.push(reason(at, "GnuPG (GPG_DECRYPT_PW / GPG_ALLOW_NO_PW): knockerd does not decrypt GnuPG packets; give the stanza KEY_BASE64 and HMAC_KEY_BASE64 (`fwknop --key-gen`) and its clients --use-hmac".into()));
    } else {
        for (at, var) in &d.gpg_other {
            let text = format!(
                "{var} has no effect without GPG_DECRYPT_PW or GPG_ALLOW_NO_PW (in fwknopd too)"
            );
            d.warnings.push(reason(at, text));
        }
    }
    let key = d.key.take();
    let hmac = d.hmac_key.take().filter(|(_, k)| !k.is_empty());
    match &hmac {
        None => reasons.push(reason(&source_at, "no HMAC_KEY or HMAC_KEY_BASE64: knockerd never decrypts a packet it has not authenticated (fwknopd 2.6.10 would, with only a warning); add HMAC_KEY_BASE64 (`fwknop --key-gen` makes one) and give clients --use-hmac with that key".into())),
        Some((at, k)) if k.len() > MAX_HMAC_KEY => reasons.push(reason(at, format!("{}: the HMAC key is {} bytes; knockerd takes at most {MAX_HMAC_KEY} (fwknopd: {}), use a shorter one (`fwknop --key-gen` makes 64)", d.hmac_var, k.len(), 136))),
        Some(_) => {}
    }
    if let Some((at, k)) = &key {
        if k.len() > MAX_ENC_KEY {
            reasons.push(reason(at, format!("{}: the encryption key is {} bytes; fwknop keys are at most {MAX_ENC_KEY} (fwknopd cannot decrypt anything with this one either)", d.key_var, k.len())));
        }
    }
    if let Some((at, mode)) = &d.encryption_mode {
        if mode != "cbc" {
            reasons.push(reason(at, format!("ENCRYPTION_MODE {mode}: knockerd decrypts only CBC, fwknop's default; remove the line here and the client's -M option")));
        }
    }
    let hmac_digest = match &d.hmac_type {
        None => Digest::Sha256,
        Some((_, HmacType::Known(dg))) => *dg,
        Some((at, t)) => {
            let name = if *t == HmacType::Sha3_256 {
                "sha3_256"
            } else {
                "sha3_512"
            };
            reasons.push(reason(at, format!("HMAC_DIGEST_TYPE {name}: knockerd checks md5, sha1, sha256, sha384 and sha512 HMACs; use sha256 (the default) here and in the client's --hmac-digest-type")));
            Digest::Sha256
        }
    };
    let cmd_exec = d.enable_cmd_exec.as_ref().is_some_and(|(_, b)| *b);
    if let Some((at, true)) = &d.enable_cmd_exec {
        reasons.push(reason(at, "ENABLE_CMD_EXEC Y: fwknopd runs any command a key holder sends, as root; knockerd runs a command message only where its native configuration lists exactly that command, so this stanza is not run; remove the line to keep its access rules".into()));
    }
    if !cmd_exec {
        if let Some((at, true)) = &d.enable_cmd_sudo_exec {
            let at = at.clone();
            d.note(
                &at,
                "ENABLE_CMD_SUDO_EXEC has no effect without ENABLE_CMD_EXEC Y (in fwknopd too)"
                    .into(),
            );
        }
        for (at, var) in d.cmd_users.clone() {
            d.note(
                &at,
                format!("{var} has no effect without ENABLE_CMD_EXEC Y (in fwknopd too)"),
            );
        }
    }
    if let Some(at) = &d.force_nat {
        reasons.push(reason(
            at,
            "FORCE_NAT: knockerd does not forward or NAT yet; grants open this host only".into(),
        ));
    }
    if let Some(at) = &d.force_snat {
        reasons.push(reason(at, "FORCE_SNAT: knockerd does not NAT yet".into()));
    }
    for (slot, var) in [
        (&d.force_masquerade, "FORCE_MASQUERADE"),
        (&d.forward_all, "FORWARD_ALL"),
        (&d.disable_dnat, "DISABLE_DNAT"),
    ] {
        if let Some((at, true)) = slot {
            reasons.push(reason(
                at,
                format!("{var} Y: knockerd does not forward or NAT yet"),
            ));
        }
    }
    let cmd_cycle = match (d.cmd_cycle_open.take(), d.cmd_cycle_close.take()) {
        (Some((at, open)), Some((_, close))) => {
            if !open_ports.is_empty() || !restrict_ports.is_empty() {
                d.note(&at, "CMD_CYCLE_OPEN: fwknopd 2.6.10 runs the command cycle before it checks OPEN_PORTS and RESTRICT_PORTS, so it ignores them for this stanza (seen on Debian's fwknopd); knockerd checks them".into());
            }
            let close = (!close.starts_with("NONE")).then_some(close);
            let timer = d.cmd_cycle_timer.as_ref().map_or(0, |(_, t)| *t) as u64;
            Some(CmdCycle { open, close, timer })
        }
        _ => None,
    };
    if cmd_cycle.is_none() {
        if let Some((at, _)) = &d.cmd_cycle_timer {
            let at = at.clone();
            d.note(
                &at,
                "CMD_CYCLE_TIMER has no effect without CMD_CYCLE_OPEN (in fwknopd too)".into(),
            );
        }
    }
    let access_expire = d.access_expire.as_ref().map(|(_, t)| *t as u64);
    if let (Some(t), Some((at, _))) = (access_expire, &d.access_expire) {
        if t <= now {
            let at = at.clone();
            d.note(
                &at,
                format!(
                    "the stanza expired at {}: it never matches (in fwknopd neither)",
                    utc_date(t)
                ),
            );
        }
    }

    if !reasons.is_empty() {
        let r = RefusedStanza {
            file: d.file.clone(),
            line: d.line,
            number,
            source: d.shown_source(),
            reasons,
        };
        return Ok(Err((r, d.warnings)));
    }
    let (Some((key_at, enc_key)), Some((hmac_at, hmac_key))) = (key, hmac) else {
        // unreachable: fwknopd_valid() requires a key without GnuPG, and GnuPG or a missing
        // HMAC key are reasons above
        return Err(line_err(&d.file, d.line, "the stanza has no keys".into()));
    };
    Ok(Ok(Stanza {
        file: d.file.clone(),
        line: d.line,
        number,
        sources,
        destinations,
        open_ports,
        restrict_ports,
        enc_key,
        hmac_key,
        hmac_digest,
        fw_access_timeout,
        max_fw_timeout,
        access_expire,
        require_username: d.require_username.take().map(|(_, u)| u),
        require_source_address: d.require_source_address,
        cmd_cycle,
        key_origin: format!("{} at {key_at}", d.key_var),
        hmac_origin: format!("{} at {hmac_at}", d.hmac_var),
        warnings: d.warnings,
    }))
}

// ---- fwknopd.conf ---------------------------------------------------------------------------------

/// Every fwknopd.conf variable Debian's fwknopd 2.6.10 knows (its `-D` output): others are
/// ignored with a warning, as fwknopd ignores them.
const FWKNOPD_VARS: [&str; 55] = [
    "CONFIG_FILE",
    "OVERRIDE_CONFIG",
    "PCAP_INTF",
    "PCAP_FILE",
    "ENABLE_PCAP_PROMISC",
    "PCAP_FILTER",
    "PCAP_DISPATCH_COUNT",
    "PCAP_LOOP_SLEEP",
    "ENABLE_PCAP_ANY_DIRECTION",
    "EXIT_AT_INTF_DOWN",
    "MAX_SNIFF_BYTES",
    "ENABLE_SPA_PACKET_AGING",
    "MAX_SPA_PACKET_AGE",
    "ENABLE_DIGEST_PERSISTENCE",
    "RULES_CHECK_THRESHOLD",
    "CMD_EXEC_TIMEOUT",
    "ENABLE_SPA_OVER_HTTP",
    "ENABLE_TCP_SERVER",
    "TCPSERV_PORT",
    "ENABLE_UDP_SERVER",
    "UDPSERV_PORT",
    "UDPSERV_SELECT_TIMEOUT",
    "LOCALE",
    "SYSLOG_IDENTITY",
    "SYSLOG_FACILITY",
    "ENABLE_X_FORWARDED_FOR",
    "ENABLE_DESTINATION_RULE",
    "ENABLE_RULE_PREPEND",
    "ENABLE_NAT_DNS",
    "ENABLE_IPT_FORWARDING",
    "ENABLE_IPT_LOCAL_NAT",
    "ENABLE_IPT_SNAT",
    "SNAT_TRANSLATE_IP",
    "ENABLE_IPT_OUTPUT",
    "FLUSH_IPT_AT_INIT",
    "FLUSH_IPT_AT_EXIT",
    "IPT_INPUT_ACCESS",
    "IPT_OUTPUT_ACCESS",
    "IPT_FORWARD_ACCESS",
    "IPT_DNAT_ACCESS",
    "IPT_SNAT_ACCESS",
    "IPT_MASQUERADE_ACCESS",
    "ENABLE_IPT_COMMENT_CHECK",
    "FWKNOP_RUN_DIR",
    "FWKNOP_CONF_DIR",
    "ACCESS_FILE",
    "ACCESS_FOLDER",
    "FWKNOP_PID_FILE",
    "DIGEST_FILE",
    "GPG_HOME_DIR",
    "GPG_EXE",
    "SUDO_EXE",
    "FIREWALL_EXE",
    "VERBOSE",
    "FAULT_INJECTION_TAG",
];

/// Reads fwknopd.conf as fwknopd's `parse_config_file()` does (same line grammar, but no `:`
/// removal, and a bad line is only logged), including its one `$VARIABLE` expansion at the
/// start of a value, and keeps what knockerd needs: the SPA port, the packet age, the interface
/// and whether NAT is enabled. Everything else is ignored; settings whose behaviour knockerd
/// does not have get a warning.
pub fn parse_fwknopd_conf(file: &Path, text: &[u8]) -> Result<FwknopdConf, ConfigError> {
    let mut conf = FwknopdConf {
        file: Some(file.to_path_buf()),
        ..FwknopdConf::default()
    };
    let mut vars: Vec<(String, String, usize)> = Vec::new();
    let warn = |conf: &mut FwknopdConf, n: usize, w: String| {
        conf.warnings.push(format!("{}:{n}: {w}", file.display()));
    };
    for (n, raw) in numbered_lines(text) {
        if raw.len() > MAX_LINE_LEN - 1 {
            warn(&mut conf, n, format!("the line is longer than the {} bytes fwknopd reads at once; knockerd ignores it", MAX_LINE_LEN - 1));
            continue;
        }
        let (var, val) = match scan_line(raw) {
            Entry::Skip => continue,
            Entry::Bad { .. } => {
                warn(&mut conf, n, "not `VARIABLE value`: fwknopd ignores the line (\"Invalid config file entry\"), and so does knockerd".into());
                continue;
            }
            Entry::Pair { var, val, .. } => (var, val),
        };
        let name = String::from_utf8_lossy(var).into_owned();
        if !FWKNOPD_VARS.contains(&name.as_str()) {
            warn(&mut conf, n, format!("unknown variable {} is ignored, as fwknopd ignores it (names are case-sensitive, and fwknopd.conf takes no ':' after them)", shown_var(var)));
            continue;
        }
        let mut value = String::from_utf8_lossy(val).into_owned();
        if let Some(rest) = value.strip_prefix('$') {
            let vlen = rest
                .bytes()
                .take_while(|b| b.is_ascii_uppercase() || *b == b'_')
                .count();
            let (vname, tail) = rest.split_at(vlen);
            let tail = tail.split_ascii_whitespace().next().unwrap_or("");
            if let Some((_, v, _)) = vars.iter().rev().find(|(k, _, _)| k == vname) {
                value = format!("{v}{tail}");
            }
        }
        vars.push((name, value, n));
    }
    let get = |k: &str| vars.iter().rev().find(|(name, _, _)| name == k);
    let yes = |k: &str| get(k).is_some_and(|(_, v, _)| c_bool(v.as_bytes()));
    let err = |n: usize, m: String| line_err(file, n, m);

    if let Some((_, v, n)) = get("MAX_SPA_PACKET_AGE") {
        let age = whole_number(
            "MAX_SPA_PACKET_AGE",
            v.as_bytes(),
            1,
            RCHK_MAX_SPA_PACKET_AGE,
        )
        .map_err(|e| err(*n, e))?;
        conf.max_age = Some(age as u64);
    }
    if get("ENABLE_SPA_PACKET_AGING").is_some() && !yes("ENABLE_SPA_PACKET_AGING") {
        conf.max_age = None;
    }
    if let Some((_, v, _)) = get("PCAP_INTF") {
        conf.interface = Some(v.trim_end().to_string());
    }
    conf.nat_enabled = yes("ENABLE_IPT_FORWARDING") || yes("ENABLE_IPT_LOCAL_NAT");
    if yes("ENABLE_UDP_SERVER") {
        let (port, n) = match get("UDPSERV_PORT") {
            Some((_, v, n)) => (
                whole_number("UDPSERV_PORT", v.as_bytes(), 1, 65535).map_err(|e| err(*n, e))?
                    as u16,
                *n,
            ),
            None => (DEFAULT_SPA_PORT, 0),
        };
        conf.spa_port = port;
        if let Some((_, _, pn)) = get("PCAP_FILTER") {
            let pn = *pn;
            warn(&mut conf, pn, format!("PCAP_FILTER is not used: ENABLE_UDP_SERVER is Y, so fwknopd listens on udp/{port} (UDPSERV_PORT{}) instead of capturing, and knockerd watches that port", if n > 0 { format!(", line {n}") } else { String::new() }));
        }
    } else if let Some((_, v, n)) = get("PCAP_FILTER") {
        let (port, exact) = pcap_filter_port(v).map_err(|e| err(*n, e))?;
        conf.spa_port = port;
        if !exact {
            let n = *n;
            warn(&mut conf, n, format!("knockerd takes only the port from PCAP_FILTER {:?}: it watches udp/{port} addressed to this host; the rest of the filter is not applied", v.trim_end()));
        }
    }
    let notes: [(&str, bool, &str); 9] = [
        ("ENABLE_DIGEST_PERSISTENCE", false, "is N: fwknopd then forgets packets it has seen when it restarts; knockerd always keeps replay digests (in its ledger, for the age window)"),
        ("ENABLE_SPA_OVER_HTTP", true, "is Y: knockerd reads SPA packets from UDP only"),
        ("ENABLE_TCP_SERVER", true, "is Y: knockerd reads SPA packets from UDP only"),
        ("ENABLE_X_FORWARDED_FOR", true, "is Y: knockerd takes the source from the IP header only"),
        ("ENABLE_DESTINATION_RULE", true, "is Y: knockerd's grants open the service on every address of this host, not only on the one the SPA packet was sent to"),
        ("ENABLE_IPT_OUTPUT", true, "is Y: knockerd adds no OUTPUT rules; replies of granted connections pass through connection tracking"),
        ("ENABLE_IPT_FORWARDING", true, "is Y: knockerd does not forward or NAT yet; NAT requests are refused"),
        ("ENABLE_IPT_LOCAL_NAT", true, "is Y: knockerd does not NAT yet; NAT requests are refused"),
        ("ENABLE_PCAP_ANY_DIRECTION", true, "is Y: knockerd sees only packets addressed to this host"),
    ];
    for (k, when, what) in notes {
        if let Some((_, v, n)) = get(k) {
            if c_bool(v.as_bytes()) == when {
                let n = *n;
                warn(&mut conf, n, format!("{k} {what}"));
            }
        }
    }
    for k in ["ACCESS_FILE", "ACCESS_FOLDER"] {
        if let Some((_, v, n)) = get(k) {
            let (n, v) = (*n, v.clone());
            warn(&mut conf, n, format!("{k} {v} is not used: knockerd reads the access file given with --fwknop-access"));
        }
    }
    if let Some((_, v, n)) = get("PCAP_INTF") {
        let (n, v) = (*n, v.trim_end().to_string());
        warn(&mut conf, n, format!("PCAP_INTF {v}: fwknopd sniffed only this interface (eth0 when unset); knockerd sees SPA packets on every interface unless its configuration names one"));
    }
    Ok(conf)
}

/// The SPA port in a pcap filter: one `port N` (optionally `dst port N`, with `udp` or no
/// protocol), and whether the filter is exactly `udp port N` or `udp dst port N`.
fn pcap_filter_port(filter: &str) -> Result<(u16, bool), String> {
    let lower = filter.to_ascii_lowercase();
    let spaced = lower.replace(['(', ')'], " ");
    let tokens: Vec<&str> = spaced.split_ascii_whitespace().collect();
    let refuse = |why: &str| {
        Err(format!(
            "PCAP_FILTER {:?}: {why}; knockerd watches exactly one UDP port: write `udp port N`",
            filter.trim_end()
        ))
    };
    if tokens.iter().any(|t| t.contains("portrange")) {
        return refuse("a port range (fwknop's --rand-port) is not supported");
    }
    if tokens.contains(&"tcp") {
        return refuse("SPA over TCP is not supported");
    }
    let ports: Vec<(usize, &str)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == "port")
        .map(|(i, _)| (i, tokens.get(i + 1).copied().unwrap_or("")))
        .collect();
    let [(i, num)] = ports.as_slice() else {
        return refuse(if ports.is_empty() {
            "it names no port"
        } else {
            "it names more than one port"
        });
    };
    if *i > 0 && tokens[i - 1] == "src" {
        return refuse("it filters on the source port");
    }
    let Ok(port) = num.parse::<u16>() else {
        return refuse("the port is not a number");
    };
    if port == 0 {
        return refuse("port 0");
    }
    let exact = tokens == ["udp", "port", num] || tokens == ["udp", "dst", "port", num];
    Ok((port, exact))
}

// ---- import-fwknop: the native TOML -------------------------------------------------------------

fn list<T: fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", inner.join(", "))
}

/// The native TOML for [`FwknopConf`], one door of kind `fwknop` per stanza, in fwknopd's order.
/// Key material is never printed: each door names key files to write, and a note says which
/// access.conf lines hold the keys.
pub fn to_toml(c: &FwknopConf) -> String {
    let mut out = String::new();
    let from = match &c.fwknopd_conf {
        Some(f) => format!("{} and {}", c.access_file.display(), f.display()),
        None => c.access_file.display().to_string(),
    };
    comment(
        &mut out,
        "",
        &format!("knockerd configuration imported from {from} by `knockerd import-fwknop`."),
    );
    comment(&mut out, "", "Check it with `knockerd check --config FILE`. `# note:` lines say where knockerd's meaning");
    comment(&mut out, "", "differs from fwknopd's, `# warning:` lines need a look; docs/fwknop.md lists every difference.");
    out.push_str("#\n");
    comment(&mut out, "note: ", "for every door: the HMAC is checked first, in constant time, and a packet that fails it is");
    comment(
        &mut out,
        "note: ",
        "never decrypted; stanzas without an HMAC key are not imported.",
    );
    comment(&mut out, "note: ", "for every door: the allow IP a client puts in its packet must be the packet's source address");
    comment(&mut out, "note: ", "(0.0.0.0 means the source), unless the door says allow_other_address = true; fwknopd granted");
    comment(
        &mut out,
        "note: ",
        "any address the client named (fwknop issue #367: carrier-grade NAT makes the two differ).",
    );
    comment(&mut out, "note: ", "for every door: a grant is an element of knockerd's nftables sets with a kernel timeout, for");
    comment(
        &mut out,
        "note: ",
        "IPv4 and IPv6; fwknopd added iptables rules and removed them from a timer.",
    );
    comment(&mut out, "note: ", "for every door: replay digests are kept in knockerd's ledger for the age window (max_age).");
    for w in &c.global_warnings {
        comment(&mut out, "warning: ", w);
    }
    for r in &c.refused {
        comment(
            &mut out,
            "warning: ",
            &format!(
                "stanza #{} ({}:{}, SOURCE {}) is not imported:",
                r.number,
                r.file.display(),
                r.line,
                r.source
            ),
        );
        for why in &r.reasons {
            comment(&mut out, "warning:   ", why);
        }
    }
    for s in &c.stanzas {
        let name = s.door_name();
        out.push_str(&format!("\n[door.{name}]\n"));
        comment(
            &mut out,
            "",
            &format!(
                "fwknopd's stanza #{}: {}:{}",
                s.number,
                s.file.display(),
                s.line
            ),
        );
        for w in &s.warnings {
            comment(&mut out, "warning: ", w);
        }
        out.push_str("kind = \"fwknop\"\n");
        out.push_str(&format!("port = {}\n", c.spa_port));
        out.push_str(&format!("sources = {}\n", list(&s.sources)));
        if s.destinations != [Network::Any] {
            comment(
                &mut out,
                "note: ",
                "DESTINATION: only packets sent to these addresses of this host count.",
            );
            out.push_str(&format!("destinations = {}\n", list(&s.destinations)));
        }
        if s.cmd_cycle.is_some() {
            // the commands are the firewall: the door opens nothing itself
            if !s.open_ports.is_empty() {
                comment(&mut out, "note: ", &format!("OPEN_PORTS {}: fwknopd 2.6.10 did not check it for a command cycle; the commands below", list(&s.open_ports)));
                comment(
                    &mut out,
                    "note: ",
                    "decide what opens, so this door opens nothing in knockerd's firewall itself.",
                );
            }
            out.push_str("open = []\n");
        } else {
            if s.open_ports.is_empty() {
                comment(&mut out, "note: ", "OPEN_PORTS is not set: fwknopd opened whatever the client asked for (minus RESTRICT_PORTS).");
                comment(
                    &mut out,
                    "note: ",
                    "A native door must list what it opens: put those services here.",
                );
            } else {
                comment(&mut out, "note: ", "these services are protected: dropped for everyone without a grant. fwknopd relied on your");
                comment(
                    &mut out,
                    "note: ",
                    "own firewall dropping them; if that firewall stays, add `protect = false`.",
                );
            }
            out.push_str(&format!("open = {}\n", list(&s.open_ports)));
        }
        if !s.restrict_ports.is_empty() {
            out.push_str(&format!("restrict = {}\n", list(&s.restrict_ports)));
        }
        out.push_str(&format!(
            "key_file = {}\n",
            quote(&format!("/etc/knocker/{name}.fwknop.key"))
        ));
        out.push_str(&format!(
            "hmac_key_file = {}\n",
            quote(&format!("/etc/knocker/{name}.fwknop.hmac.key"))
        ));
        comment(&mut out, "note: ", &format!("write the keys to these two files (mode 0600) before using this door: the encryption key is {},", s.key_origin));
        comment(
            &mut out,
            "note: ",
            &format!(
                "the HMAC key is {}. They are not copied here.",
                s.hmac_origin
            ),
        );
        out.push_str(&format!("hmac_digest = {}\n", quote(s.hmac_digest.name())));
        out.push_str(&format!("open_for = {}\n", s.fw_access_timeout));
        out.push_str(&format!("max_open_for = {}\n", s.max_fw_timeout));
        match c.max_age {
            Some(a) => out.push_str(&format!("max_age = {}\n", quote(&format!("{a}s")))),
            None => {
                comment(&mut out, "warning: ", "fwknopd.conf turns packet aging off (ENABLE_SPA_PACKET_AGING N); a native door always checks");
                comment(&mut out, "warning: ", &format!("the age, because its replay memory covers only the age window: {DEFAULT_MAX_AGE}s unless max_age says otherwise."));
            }
        }
        if let Some(t) = s.access_expire {
            comment(
                &mut out,
                "note: ",
                &format!("the door never opens after {}.", utc_date(t)),
            );
            out.push_str(&format!("expire = {t}\n"));
        }
        if let Some(u) = &s.require_username {
            out.push_str(&format!("require_username = {}\n", quote(u)));
        }
        if s.require_source_address {
            comment(
                &mut out,
                "note: ",
                "REQUIRE_SOURCE_ADDRESS: the allow IP 0.0.0.0 (the client's -s) is refused.",
            );
            out.push_str("require_source_address = true\n");
        }
        if let Some(cc) = &s.cmd_cycle {
            cmd_cycle_toml(&mut out, cc);
        }
    }
    out
}

/// A command cycle as native commands, when knockerd's `%IP%` is all it substitutes.
fn cmd_cycle_toml(out: &mut String, cc: &CmdCycle) {
    let fwknop_vars = [
        "$PKT_SRC",
        "$DST",
        "$PORT",
        "$PROTO",
        "$TIMEOUT",
        "$CLIENT_TIMEOUT",
    ];
    let to_native = |t: &str| -> Option<Vec<String>> {
        if fwknop_vars.iter().any(|v| t.contains(v)) {
            return None;
        }
        let t = t.replace("$IP", "%IP%").replace("$SRC", "%IP%");
        Some(t.split_ascii_whitespace().map(str::to_string).collect())
    };
    let open = to_native(&cc.open);
    let close = cc.close.as_deref().map(to_native);
    comment(
        out,
        "note: ",
        "CMD_CYCLE: fwknopd ran these commands instead of opening its firewall; so does this door",
    );
    comment(
        out,
        "note: ",
        "they run without a shell, split at spaces, as fwknopd runs them.",
    );
    match (open, close) {
        (Some(o), Some(Some(c))) => {
            out.push_str(&format!("start_command = {}\n", list(&o)));
            out.push_str(&format!("stop_command = {}\n", list(&c)));
            out.push_str(&format!("stop_after = {}\n", cc.timer));
        }
        (Some(o), None) => {
            comment(out, "note: ", "CMD_CYCLE_CLOSE NONE: no stop command.");
            out.push_str(&format!("start_command = {}\n", list(&o)));
        }
        _ => {
            comment(out, "warning: ", "the commands use $PKT_SRC, $DST, $PORT, $PROTO, $TIMEOUT or $CLIENT_TIMEOUT, which knockerd's native");
            comment(out, "warning: ", "commands do not substitute (only %IP%): run this stanza with --fwknop-access, or rewrite them:");
            comment(out, "warning:   ", &format!("CMD_CYCLE_OPEN {}", cc.open));
            if let Some(c) = &cc.close {
                comment(
                    out,
                    "warning:   ",
                    &format!("CMD_CYCLE_CLOSE {c} (after {} s)", cc.timer),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sscanf_grammar() {
        let pair = |l: &str| match scan_line(l.as_bytes()) {
            Entry::Pair { var, val, cut } => Some((
                String::from_utf8_lossy(var).into_owned(),
                String::from_utf8_lossy(val).into_owned(),
                cut,
            )),
            _ => None,
        };
        assert_eq!(
            pair("KEY  my key  "),
            Some(("KEY".into(), "my key  ".into(), false))
        );
        assert_eq!(
            pair("\tSOURCE\tANY;x"),
            Some(("SOURCE".into(), "ANY".into(), true))
        );
        assert_eq!(pair("KEY abc;"), Some(("KEY".into(), "abc".into(), false)));
        assert_eq!(pair("KEY abc\r"), Some(("KEY".into(), "abc".into(), false)));
        assert_eq!(pair("KEY a\0b"), Some(("KEY".into(), "a".into(), false)));
        assert_eq!(pair(" # x"), Some(("#".into(), "x".into(), false)));
        assert!(matches!(scan_line(b"# c"), Entry::Skip));
        assert!(matches!(scan_line(b";c"), Entry::Skip));
        assert!(matches!(scan_line(b""), Entry::Skip));
        assert!(matches!(scan_line(b"\r"), Entry::Skip));
        assert!(matches!(scan_line(b"\0KEY x"), Entry::Skip));
        assert!(matches!(scan_line(b"   "), Entry::Bad { .. }));
        assert!(matches!(scan_line(b"KEY"), Entry::Bad { .. }));
        assert!(matches!(scan_line(b"KEY ;x"), Entry::Bad { .. }));
        assert_eq!(strip_colon(b"SOURCE:"), b"SOURCE");
        assert_eq!(strip_colon(b"A:B:"), b"A:B");
    }

    #[test]
    fn fwknop_base64() {
        assert_eq!(b64_decode(b"YWJj").as_slice(), b"abc");
        assert_eq!(b64_decode(b"ZGVmZw").as_slice(), b"defg");
        assert_eq!(b64_decode(b"ZGVmZw==").as_slice(), b"defg");
        // a lone last character completes nothing; text after '=' is ignored
        assert_eq!(b64_decode(b"YWJjZ").as_slice(), b"abc");
        assert_eq!(b64_decode(b"YW=Jj").as_slice(), b"a");
        assert!(b64_decode(b"=").is_empty());
        assert!(is_base64(b"Ab+/9="));
        assert!(!is_base64(b"YWJj "));
        assert!(!is_base64(b"a!"));
    }

    #[test]
    fn glibc_inet_aton() {
        let a = |s: &str| inet_aton(s.as_bytes()).map(Ipv4Addr::from);
        assert_eq!(a("10.1.2.3"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(a("10.1.2"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(a("10.258"), Some(Ipv4Addr::new(10, 0, 1, 2)));
        assert_eq!(a("167772161"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a("0x0a000001"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
        assert_eq!(a("10.0.0.1 x"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a("10.0.0.1  "), Some(Ipv4Addr::new(10, 0, 0, 1)));
        for bad in [
            "",
            "x",
            "10.0.0.300",
            "1.2.3.4.5",
            "08.1.1.1",
            "1.2.3.4x",
            "0x",
            " 1.2.3.4",
            "1..2",
            "4294967296",
            "2001:db8::1",
        ] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn strtol_and_whole_numbers() {
        assert_eq!(whole_number("X", b"30", 0, 100), Ok(30));
        assert_eq!(whole_number("X", b"30  ", 0, 100), Ok(30));
        assert_eq!(whole_number("X", b"+7", 0, 100), Ok(7));
        let e = whole_number("X", b"30s", 0, 100).unwrap_err();
        assert!(e.contains("silently read it as 30"), "{e}");
        let e = whole_number("X", b"abc", 0, 100).unwrap_err();
        assert!(e.contains("silently read it as 0"), "{e}");
        assert!(whole_number("X", b"101", 0, 100)
            .unwrap_err()
            .contains("range 0 to 100"));
        let e = whole_number("X", b"4294967326", 0, 100).unwrap_err();
        assert!(e.contains("read it as 30"), "{e}");
    }

    #[test]
    fn dates_as_mktime_normalizes_them() {
        let d = |s: &str| expire_date(s.as_bytes()).map(|(t, _)| utc_date(t as u64));
        assert_eq!(d("12/31/2030").as_deref(), Some("2030-12-31 00:00:00 UTC"));
        assert_eq!(d("1/2/30").as_deref(), Some("2030-01-02 00:00:00 UTC"));
        assert_eq!(d("13/45/2030").as_deref(), Some("2031-02-14 00:00:00 UTC"));
        assert_eq!(d("02/29/2028").as_deref(), Some("2028-02-29 00:00:00 UTC"));
        assert_eq!(expire_date(b"12/31/20301").map(|x| x.1), Some(true));
        assert_eq!(d("2030-12-31"), None);
        assert_eq!(d("012/31/2030"), None);
        assert_eq!(days_from_civil(1970, 1), 0);
    }

    #[test]
    fn source_entries() {
        let mut w = Vec::new();
        let net = |s: &str, w: &mut Vec<String>| addr_list(s.as_bytes(), w).map(|(l, _)| l);
        assert_eq!(
            net("10.1.2.3/24, 192.168.0.1,ANY", &mut w),
            Ok(vec![
                Network::Net("10.1.2.0".parse().unwrap(), 24),
                Network::Net("192.168.0.1".parse().unwrap(), 32),
                Network::Any
            ])
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            net("1.2.3.4/255.255.0.0", &mut w),
            Ok(vec![Network::Net("1.2.0.0".parse().unwrap(), 16)])
        );
        assert_eq!(
            net("1.2.3.4/8 ", &mut w),
            Ok(vec![Network::Net("1.0.0.0".parse().unwrap(), 8)])
        );
        for bad in [
            "10.1.2.3/24 ,1.1.1.1",
            "1.2.3.4/33",
            "1.2.3.4/0",
            "1.2.3.4/",
            "ANY ,1.1.1.1",
            "1.1.1.1,",
            ",1.1.1.1",
            "2001:db8::1",
            "10.0.0.1 10.0.0.2",
        ] {
            assert!(net(bad, &mut w).is_err(), "{bad:?}");
        }
        let (_, unsupported) = addr_list(b"1.2.3.4/255.0.255.0", &mut w).unwrap();
        assert_eq!(unsupported.len(), 1);
        w.clear();
        assert_eq!(
            net("010.0.0.1", &mut w),
            Ok(vec![Network::Net("8.0.0.1".parse().unwrap(), 32)])
        );
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn source_matching() {
        let n = Network::Net("10.0.0.0".parse().unwrap(), 8);
        assert!(n.contains("10.9.9.9".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert!(Network::Any.contains("::1".parse().unwrap()));
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert_eq!(
            Network::Net("10.0.0.1".parse().unwrap(), 32).to_string(),
            "10.0.0.1"
        );
        assert_eq!(Network::Any.to_string(), "any");
    }

    #[test]
    fn ports() {
        let mut w = Vec::new();
        assert_eq!(
            port_list(b"tcp/22, UDP/53 ", "OPEN_PORTS", &mut w),
            Ok(vec![Service::tcp(22), Service::udp(53)])
        );
        assert!(w.is_empty());
        assert_eq!(
            port_list(b"udp/1-5", "RESTRICT_PORTS", &mut w),
            Ok(vec![Service::udp(1)])
        );
        assert!(w[0].contains("no port ranges"), "{w:?}");
        for bad in [
            "tcp/",
            "tcp/abc",
            "tcp/0",
            "tcp/65536",
            "22",
            "icmp/0",
            "tcp /22",
            "tcp/22,",
            "tcp/0000000000000000000000000000000022",
        ] {
            assert!(
                port_list(bad.as_bytes(), "OPEN_PORTS", &mut w).is_err(),
                "{bad:?}"
            );
        }
        w.clear();
        assert_eq!(
            port_list(b"tcp/22,tcp/22", "OPEN_PORTS", &mut w),
            Ok(vec![Service::tcp(22)])
        );
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn pcap_filters() {
        assert_eq!(pcap_filter_port("udp port 62201"), Ok((62201, true)));
        assert_eq!(pcap_filter_port("udp dst port 5000 "), Ok((5000, true)));
        assert_eq!(pcap_filter_port("UDP port 7"), Ok((7, true)));
        assert_eq!(pcap_filter_port("udp and dst port 5000"), Ok((5000, false)));
        assert_eq!(
            pcap_filter_port("(udp port 5000) and host 10.0.0.1"),
            Ok((5000, false))
        );
        for bad in [
            "udp dst portrange 10000-65535",
            "tcp port 80",
            "udp port 1 or udp port 2",
            "udp src port 5",
            "udp",
            "udp port x",
            "udp port 0",
        ] {
            assert!(pcap_filter_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn command_cycles_substitute_as_fwknopd() {
        let cc = CmdCycle {
            open: "/usr/bin/touch /tmp/o_$PORT_$PROTO_$IP_$PKT_SRC_$TIMEOUT_$CLIENT_TIMEOUT_$FOO"
                .into(),
            close: Some("/bin/x $SRC".into()),
            timer: 2,
        };
        let v = CmdVars {
            allow: "10.9.0.5".parse().unwrap(),
            packet_source: "10.9.0.1".parse().unwrap(),
            destination: "10.9.0.2".parse().unwrap(),
            service: Service::tcp(80),
            timestamp: 1_795_266_816,
            client_timeout: 10,
        };
        // what Debian's fwknopd ran for the same request
        assert_eq!(
            cc.argv(&cc.open, &v).unwrap(),
            [
                "/usr/bin/touch",
                "/tmp/o_80_6_10.9.0.5_10.9.0.1_1795266826_10_FOO"
            ]
        );
        assert_eq!(cc.argv("/bin/x $SRC", &v).unwrap(), ["/bin/x", "10.9.0.5"]);
        let v0 = CmdVars {
            client_timeout: 0,
            ..v
        };
        assert_eq!(cc.argv("$TIMEOUT", &v0).unwrap(), ["1795266818"]);
        assert!(cc.argv(&"a ".repeat(29), &v).is_err());
        assert!(cc.argv(&"a".repeat(256), &v).is_err());
        assert!(cc.argv("   ", &v).is_err());
    }
}
