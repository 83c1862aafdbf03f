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
//! an unauthenticated packet, unless [`Legacy::Allow`], `--fwknop-allow-legacy`, asks it to, for a
//! migration) is refused as a whole, with every reason and its line, and the
//! other stanzas run. Refusing a stanza only ever removes access: in fwknopd each stanza whose
//! SOURCE matches is tried with its own keys, so no packet that a refused stanza would have
//! authorized can match another one by its absence. If no stanza is left, the configuration is
//! refused. docs/fwknop.md lists every difference from fwknopd.
//!
//! The files, in the order a configuration goes through them: `syntax` (the line grammar and C's
//! number reading, for both files), `fwknopd` (fwknopd.conf), `access` (access.conf and its
//! includes, line by line), `draft` (what each variable sets in its stanza), `values` (addresses,
//! ports, dates, base64), `finalize` (a stanza knockerd runs or refuses), `import` (the native
//! TOML) and [`doors`] (the stanzas as doors). This file holds the types they share.

pub mod doors;

mod access;
mod draft;
mod finalize;
mod fwknopd;
mod import;
mod syntax;
mod values;

pub use access::{load, load_with, parse, parse_with, Legacy};
pub use fwknopd::parse_fwknopd_conf;
pub use import::{import, to_toml};

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use knocker_engine::Service;
pub use knocker_wire::fwknop::Digest;
use zeroize::Zeroizing;

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

/// `CMD_CYCLE_BUFSIZE`: a command (before and after substitution) is shorter than this.
const CMD_CYCLE_BUFSIZE: usize = 256;
/// `strtoargv()` accepts at most `MAX_CMDLINE_ARGS - 2` arguments.
const MAX_CMDLINE_ARGS: usize = 30;

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
    pub fn argv(&self, template: &str, v: &CmdVars) -> Result<Vec<String>, CmdError> {
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
                return Err(CmdError::TooLong);
            }
        }
        let argv: Vec<String> = out.split_ascii_whitespace().map(str::to_string).collect();
        if argv.len() > MAX_CMDLINE_ARGS - 2 {
            return Err(CmdError::TooManyArguments(argv.len()));
        }
        if argv.is_empty() {
            return Err(CmdError::Empty);
        }
        Ok(argv)
    }
}

/// Why fwknopd would run nothing for a command of a command cycle ([`CmdCycle::argv`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdError {
    /// 256 bytes or longer after substitution (`CMD_CYCLE_BUFSIZE`).
    TooLong,
    /// More arguments than `strtoargv()` accepts (28).
    TooManyArguments(usize),
    /// Nothing but whitespace.
    Empty,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::TooLong => write!(
                f,
                "the command is {CMD_CYCLE_BUFSIZE} bytes or longer after substitution"
            ),
            CmdError::TooManyArguments(n) => write!(
                f,
                "the command has {n} arguments; fwknopd runs at most {}",
                MAX_CMDLINE_ARGS - 2
            ),
            CmdError::Empty => f.write_str("the command is empty"),
        }
    }
}

impl std::error::Error for CmdError {}

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
    /// HMAC_KEY or HMAC_KEY_BASE64 decoded. `None` only with [`Legacy::Allow`]: fwknop's legacy
    /// mode, where nothing authenticates a packet before it is decrypted (a warning says so);
    /// otherwise knockerd refuses stanzas without one.
    pub hmac_key: Option<Zeroizing<Vec<u8>>>,
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
    /// FORCE_NAT: granted connections to `open_ports` are sent on to this inner host (knockerd's
    /// own DNAT, a door with `nat`).
    pub force_nat: Option<std::net::SocketAddrV4>,
    /// FORCE_SNAT or FORCE_MASQUERADE beside FORCE_NAT: the source its connections get towards
    /// the inner host.
    pub nat_source: Option<crate::config::NatSource>,
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
                &match &self.hmac_key {
                    Some(k) => format!("<{} bytes, redacted>", k.len()),
                    None => "none (legacy mode)".into(),
                },
            )
            .field("hmac_digest", &self.hmac_digest)
            .field("fw_access_timeout", &self.fw_access_timeout)
            .field("max_fw_timeout", &self.max_fw_timeout)
            .field("access_expire", &self.access_expire)
            .field("require_username", &self.require_username)
            .field("require_source_address", &self.require_source_address)
            .field("cmd_cycle", &self.cmd_cycle)
            .field("force_nat", &self.force_nat)
            .field("nat_source", &self.nat_source)
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
    /// ENABLE_IPT_FORWARDING is Y: fwknopd's switch for a client's own NAT request (`fwknop
    /// -N`); knockerd wants its networks besides ([`FwknopConf::nat_networks`]).
    pub forwarding: bool,
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
            forwarding: false,
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
    /// fwknopd.conf's ENABLE_IPT_FORWARDING is Y ([`FwknopdConf::forwarding`]).
    pub forwarding: bool,
    /// The networks a client's NAT request (`fwknop -N`) may name in a stanza without
    /// FORCE_NAT (`--fwknop-nat-targets`): with `forwarding`, such a stanza's door sends its
    /// first requested service on to the inner host the client names, if it lies in one of them;
    /// empty (the default), every such request is refused.
    pub nat_networks: Vec<crate::config::Net>,
    /// Everything that deserves a look, each `file:line: what`, refused stanzas included.
    pub warnings: Vec<String>,
    /// The warnings that concern no single stanza (for import-fwknop's header).
    global_warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            cc.argv(&"a ".repeat(29), &v),
            Err(CmdError::TooManyArguments(29))
        );
        assert_eq!(cc.argv(&"a".repeat(256), &v), Err(CmdError::TooLong));
        assert_eq!(cc.argv("   ", &v), Err(CmdError::Empty));
        assert_eq!(
            CmdError::TooManyArguments(29).to_string(),
            "the command has 29 arguments; fwknopd runs at most 28"
        );
    }
}
