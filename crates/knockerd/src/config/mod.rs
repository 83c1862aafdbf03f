//! knockerd's configuration: the types every format loads into ([`Config`], [`Door`], ...) and
//! the helpers the formats share, importing none of its submodules' code. One module per format
//! reads a file into them: [`native`] (knockerd's TOML, validated as a whole, with file:line in
//! every error, with its [`native::clients`] file and [`native::doors`]), [`knockd`],
//! [`fwknop`] (access.conf, fwknopd.conf and the import; [`fwknop::doors`]) and [`knockknock`]
//! (knockknock's /etc/knockknock.d: its config and profiles, and the import). [`loader`] is the
//! one loader: it reads the file a [`loader::ConfigFile`] names, in its format, for the daemon,
//! the packet worker and the CLI.
//!
//! ```toml
//! [daemon]
//! nflog_group = 4100
//!
//! [door.ssh]
//! sequence = ["7000", "9000:udp", "8000"]
//! open = ["tcp/22"]
//! ```

pub mod fwknop;
pub mod knockd;
pub mod knockknock;
pub mod loader;
pub mod native;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knocker_engine::{DoorSpec, Kind, Proto, Service};

use crate::onetime::OneTimeFile;
use serde::Deserialize;

/// Where knockerd looks for its configuration unless told otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/knocker/knockerd.toml";
/// nftables table that knockerd owns (family inet). It never touches any other table.
pub const TABLE: &str = "knocker";
pub const DEFAULT_NFLOG_GROUP: u16 = 4100;
/// The longest delay of a stop command (knockd's Cmd_Timeout is an int of seconds); it keeps
/// the deadline arithmetic far from overflowing.
pub const MAX_STOP_AFTER: Duration = Duration::from_secs(i32::MAX as u64);
/// Where the ledger lives unless `[daemon] state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/knocker";
/// The server's X25519 key, for `spa` and `syn` doors (`knockerd keygen` writes it).
pub const DEFAULT_SERVER_KEY: &str = "/etc/knocker/server.key";
/// The enrolled clients of `spa` and `syn` doors (`knockerd enroll` adds to it).
pub const DEFAULT_CLIENTS: &str = "/etc/knocker/clients.toml";
/// Packet mark set on granted packets so that an admin's own default-drop chain can accept them.
pub const DEFAULT_GRANT_MARK: u32 = 0x4b4e_0000;
/// The `accept_mark` that the docs and `check` suggest (accept_mark is off unless set): packets
/// that the admin's own chain marks with it pass knocker's table.
pub const SUGGESTED_ACCEPT_MARK: u32 = 0x4b41_0000;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15);
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
/// The most bytes of a configuration file that are read (native, knockd.conf, access.conf).
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a configuration without a door is refused (by `check` and by the daemon, which would
/// protect nothing).
pub const NO_DOOR: &str = "no door yet, so nothing is protected and knockerd does not start: write a [door.NAME] of your own (the commented [door.ssh] in the installed example shows one; choose your own sequence, not one printed in the docs), then run `knockerd check`";

/// A configuration error, with the file and line it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What happens to open grants when knockerd stops cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// Grants stay until their kernel timeout (a restart does not cut anyone off).
    Keep,
    /// Grants are removed at once.
    Withdraw,
}

/// A command to run when a door opens or closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run directly, no shell: each element is one argument. `%IP%` is substituted per argument.
    Argv(Vec<String>),
    /// Run with `/bin/sh -c`, because the config asked for a shell (`shell = true`).
    Shell(String),
}

/// What a command's placeholders become for one grant. Every value is typed (an address, a
/// service, a number), so what replaces a placeholder is only ever hex digits, dots and colons:
/// nothing a shell or an argument parser reads as more than one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandVars {
    /// `%IP%`: the granted address.
    pub ip: IpAddr,
    /// `%PORT%` and `%PROTO%` (its number, 6 or 17): the first service the grant opens.
    pub service: Option<Service>,
    /// `%PKT_SRC%`, `%DST%`, `%TIMEOUT%`, `%CLIENT_TIMEOUT%`: an SPA packet's facts.
    pub spa: Option<knocker_engine::SpaFacts>,
    /// The seconds after which the stop command runs, for `%TIMEOUT%` (the packet's timestamp
    /// plus these).
    pub stop_in: u64,
    /// `%CLIENT_TIMEOUT%`: the timeout the client asked for, as the grant lasts it (capped),
    /// or 0 when it asked for none.
    pub client_timeout: u64,
}

impl CommandVars {
    /// Only `%IP%`.
    pub fn ip(ip: IpAddr) -> Self {
        CommandVars {
            ip,
            service: None,
            spa: None,
            stop_in: 0,
            client_timeout: 0,
        }
    }

    /// The placeholders and their values; a placeholder without a value for this grant is left
    /// as it is written.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("%IP%", self.ip.to_string())];
        if let Some(s) = self.service {
            out.push(("%PORT%", s.port.to_string()));
            out.push(("%PROTO%", s.proto.number().to_string()));
        }
        if let Some(f) = self.spa {
            out.push(("%PKT_SRC%", f.packet_source.to_canonical().to_string()));
            out.push(("%DST%", f.destination.to_canonical().to_string()));
            out.push((
                "%TIMEOUT%",
                f.timestamp.saturating_add(self.stop_in).to_string(),
            ));
            out.push(("%CLIENT_TIMEOUT%", self.client_timeout.to_string()));
        }
        out
    }
}

/// The placeholders a command may hold (see [`CommandVars`]).
pub const PLACEHOLDERS: [&str; 7] = [
    "%IP%",
    "%PORT%",
    "%PROTO%",
    "%PKT_SRC%",
    "%DST%",
    "%TIMEOUT%",
    "%CLIENT_TIMEOUT%",
];

/// `text` with every placeholder replaced, in one pass (a value never holds `%`, and is never
/// read again).
fn substitute(text: &str, pairs: &[(&'static str, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match pairs.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &rest[name.len()..];
            }
            None => {
                out.push('%');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Command {
    /// The program and arguments to execute, with `%IP%` replaced by the granted address. The
    /// address comes from an `IpAddr`, so it is only ever hex digits, dots and colons.
    pub fn argv_for(&self, ip: IpAddr) -> Vec<String> {
        self.argv_with(&CommandVars::ip(ip))
    }

    /// The program and arguments to execute, with every placeholder [`CommandVars`] has a
    /// value for replaced, per argument (an argument never splits).
    pub fn argv_with(&self, vars: &CommandVars) -> Vec<String> {
        let pairs = vars.pairs();
        match self {
            Command::Argv(v) => v.iter().map(|a| substitute(a, &pairs)).collect(),
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), substitute(s, &pairs)],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Argv(v) => write!(f, "{v:?}"),
            Command::Shell(s) => write!(f, "/bin/sh -c {s:?}"),
        }
    }
}

/// The most connections a grant may count (`connections = N`): one kernel set per count and
/// address family, each a rule of knocker's chain.
pub const MAX_CONNECTIONS: u8 = 8;
/// The most delayed commands a door may list.
pub const MAX_ACTIONS: usize = 16;

/// How far a door's grants reach around the address that knocked, per address family
/// (`grant_prefix = 24`, `grant_prefix6 = 64`): for clients behind carrier-grade NAT, whose
/// knock and connection can leave from different addresses of one pool. Everyone in the prefix
/// is let in. `None`: the address alone (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrantPrefix {
    pub v4: Option<u8>,
    pub v6: Option<u8>,
}

impl GrantPrefix {
    /// The shortest prefixes a door may widen to: an IPv4 /16 is 65 536 addresses, an IPv6 /32
    /// a whole provider's allocation. Wider than that is no longer a grant to someone.
    pub const MIN4: u8 = 16;
    pub const MIN6: u8 = 32;

    /// The address a grant to `to` holds in the firewall (the network's first address when the
    /// door widens it), and the prefix length when it does.
    pub fn widen(&self, to: IpAddr) -> (IpAddr, Option<u8>) {
        let to = to.to_canonical();
        let len = match to {
            IpAddr::V4(_) => self.v4.filter(|n| *n < 32),
            IpAddr::V6(_) => self.v6.filter(|n| *n < 128),
        };
        match len {
            Some(n) => (Net::of(to, n).addr, Some(n)),
            None => (to, None),
        }
    }

    /// Whether the door widens any grant.
    pub fn is_set(&self) -> bool {
        self.v4.is_some() || self.v6.is_some()
    }
}

/// When a door's delayed command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionTime {
    /// This long after the grant opened (`after = "5m"`; zero: at once).
    After(Duration),
    /// When the grant ends (`at = "end"`); a refresh of the grant moves it.
    End,
}

impl fmt::Display for ActionTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionTime::After(d) if d.is_zero() => write!(f, "at once"),
            ActionTime::After(d) => write!(f, "after {}", fmt_duration(*d)),
            ActionTime::End => write!(f, "at the end of the grant"),
        }
    }
}

/// A door's delayed command (`[[door.NAME.command]]`): run once per opening of the door for an
/// address, with the same `%IP%` substitution as the stop command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub command: Command,
    pub when: ActionTime,
}

/// A door as the daemon runs it: the engine's door plus what only the daemon needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    pub spec: DoorSpec,
    /// Drop the door's services for everyone without a grant.
    pub protect: bool,
    /// The door's services are forwarded rather than local (`forward = true`, `forward =
    /// [hosts]`, `nat`): protected and opened in the table's prerouting chain, before any DNAT,
    /// by the port a packet is sent to, rather than in the input chain, which a forwarded packet
    /// never reaches. `None`: local services.
    pub forward: Option<Forward>,
    /// The source a `nat` door's connections get towards the inner host (`nat_source`).
    pub nat_source: Option<NatSource>,
    /// The networks of the inner hosts a client may name itself (fwknop's `-N`, in an
    /// access.conf stanza without FORCE_NAT, with `--fwknop-nat-targets`): a grant carrying such
    /// a target is sent on there by the table's client NAT maps, for that source and service
    /// only, and the gatekeeper refuses a target outside them. Empty: no client-chosen target.
    pub nat_networks: Vec<Net>,
    /// Run the start command again when a knock completes while the door is already open for
    /// that address (knockd's behaviour); off by default, so repeated knocks never stack rules.
    pub repeat_start_command: bool,
    pub start_command: Option<Command>,
    pub stop_command: Option<Command>,
    /// For IPv6 knocks, when they differ from the IPv4 ones (knockd's `Start_Command_6`).
    pub start_command_6: Option<Command>,
    pub stop_command_6: Option<Command>,
    /// When the stop command runs, after the start command.
    pub stop_after: Duration,
    /// The stop command runs after the client's timeout instead, when an SPA client asked for
    /// one (fwknop's `CMD_CYCLE_CLOSE`); the timeout is capped as the grant is.
    pub stop_after_client_timeout: bool,
    /// How many new connections a grant admits (`connections = N`): the kernel removes the
    /// grant itself when the last one is accepted. `None`: any number until the grant ends.
    pub connections: Option<NonZeroU8>,
    /// The interfaces the door's knocks count on and its services are protected on (`interfaces`);
    /// empty: the daemon's (`[daemon] interface`, [`Config::listens_on`]).
    pub interfaces: Vec<String>,
    /// Whether the door's services are protected on the other interfaces too (the default:
    /// failing closed); `false` leaves them there to the admin's firewall.
    pub protect_elsewhere: bool,
    /// How far a grant reaches around the knock's source address (`grant_prefix`,
    /// `grant_prefix6`): off unless the admin widens it.
    pub grant_prefix: GrantPrefix,
    /// Commands run at a delay from the grant, or when it ends (`[[door.NAME.command]]`).
    pub actions: Vec<Action>,
    /// The door's kind, with what only that kind has.
    pub kind: DoorKind,
    /// Line of the `[door.NAME]` header, for messages.
    pub line: usize,
}

/// How a `nat` door's connections leave towards the inner host (`nat_source`; fwknop's
/// FORCE_MASQUERADE and FORCE_SNAT): with the address of the server's interface on the way
/// (`"masquerade"`), or with a given address, so that an inner host without a route back through
/// the server still answers. `None` (the default): the client's own address, as DNAT leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatSource {
    Masquerade,
    Address(IpAddr),
}

impl fmt::Display for NatSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatSource::Masquerade => f.write_str("the server's own address (masquerade)"),
            NatSource::Address(a) => write!(f, "{a}"),
        }
    }
}

/// How a door's services are forwarded ([`Door::forward`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// `forward = true`: ports this host already publishes and forwards (a container's port
    /// published by Docker or Podman, the admin's own DNAT rule).
    Published,
    /// `forward = ["10.0.0.5", ...]`: the services of hosts behind this one, a router or VPN
    /// gateway, reached by their own addresses without DNAT.
    Routed(Vec<Net>),
    /// `nat = "ADDRESS:PORT"`: knockerd's own DNAT of the door's services to an inner host, for
    /// granted sources only (fwknop's FORCE_NAT): the table's nat chain sends a new connection
    /// on while its source holds a grant element, so the DNAT ends with the grant, in the kernel.
    Nat(std::net::SocketAddr),
}

/// A door's kind (the TOML's `kind`), with the options only that kind has: a door cannot hold
/// another kind's file, span or port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorKind {
    /// `sequence`: the same knocks every time (`DoorSpec::sequence`).
    Sequence,
    /// `one-time`: knockd's One_Time_Sequences, whose lines are marked in the file when used.
    OneTime { file: OneTimeFile },
    /// `rotating`: knocks drawn from a span by a time step or a counter.
    Rotating { span: PortSpan, mode: RotatingMode },
    /// `encoded`: requests spelled out as knocks in a span.
    Encoded { span: PortSpan },
    /// `fwknop`: fwknop's SPA packets on a UDP port (also every access.conf stanza).
    Fwknop { port: u16 },
    /// `spa`: knocker's own SPA packets on a UDP port.
    Spa { port: u16 },
    /// `syn`: knocker's stealth SYNs on a TCP port.
    Syn { port: u16 },
    /// `knockknock`: knockknock's SYNs to a profile's knock port, as knockknock's client sends
    /// them; the profile directory's `counter` file is rewritten (in place) before each grant.
    Knockknock { profile: PathBuf, port: u16 },
}

impl DoorKind {
    /// The kind's name, as `kind = "..."` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            DoorKind::Sequence => "sequence",
            DoorKind::OneTime { .. } => "one-time",
            DoorKind::Rotating { .. } => "rotating",
            DoorKind::Encoded { .. } => "encoded",
            DoorKind::Fwknop { .. } => "fwknop",
            DoorKind::Spa { .. } => "spa",
            DoorKind::Syn { .. } => "syn",
            DoorKind::Knockknock { .. } => "knockknock",
        }
    }
}

/// The ports a rotating door draws its knocks from, or an encoded door spells requests in:
/// every one of them is a knock port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpan {
    pub proto: Proto,
    pub first: u16,
    pub last: u16,
}

/// What a rotating door counts in: time steps or a counter. Also the ledger's key for the door's
/// last used step or counter, and what a worker's `used` report names (`privsep::protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotatingMode {
    Totp,
    Hotp,
}

impl RotatingMode {
    /// `mode = "..."` in the TOML, and the ledger's key for the door's last used step or
    /// counter (so it never changes).
    pub fn as_str(self) -> &'static str {
        match self {
            RotatingMode::Totp => "totp",
            RotatingMode::Hotp => "hotp",
        }
    }

    /// The mode a ledger key or a configuration's `mode` names; `None` for any other text.
    pub fn parse(text: &str) -> Option<RotatingMode> {
        match text {
            "totp" => Some(RotatingMode::Totp),
            "hotp" => Some(RotatingMode::Hotp),
            _ => None,
        }
    }
}

impl Door {
    /// The kind's name, as `kind = "..."` writes it.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// The file of a `one-time` door.
    pub fn one_time(&self) -> Option<&OneTimeFile> {
        match &self.kind {
            DoorKind::OneTime { file } => Some(file),
            _ => None,
        }
    }

    /// The span of a rotating or encoded door.
    pub fn span(&self) -> Option<PortSpan> {
        match self.kind {
            DoorKind::Rotating { span, .. } | DoorKind::Encoded { span } => Some(span),
            _ => None,
        }
    }

    /// The UDP port a single-packet-authorization door (fwknop or knocker SPA) listens on.
    pub fn spa_port(&self) -> Option<u16> {
        match self.kind {
            DoorKind::Fwknop { port } | DoorKind::Spa { port } => Some(port),
            _ => None,
        }
    }

    /// The TCP port a stealth SYN door (knocker's or knockknock's) listens on.
    pub fn syn_port(&self) -> Option<u16> {
        match self.kind {
            DoorKind::Syn { port } | DoorKind::Knockknock { port, .. } => Some(port),
            _ => None,
        }
    }

    /// The ports this door's knocks come to (what `knocks seen` counts, per door).
    pub fn watched(&self) -> Vec<Watched> {
        let mut v: Vec<Watched> = self
            .spec
            .fixed_knocks()
            .copied()
            .map(Watched::Knock)
            .collect();
        v.extend(
            self.span()
                .map(|r| Watched::Range(r.proto, r.first, r.last)),
        );
        v.extend(self.spa_port().map(Watched::Spa));
        v.extend(self.syn_port().map(Watched::Syn));
        v
    }

    /// The `counter` file of a knockknock door's profile.
    pub fn knockknock_counter(&self) -> Option<PathBuf> {
        match &self.kind {
            DoorKind::Knockknock { profile, .. } => Some(profile.join("counter")),
            _ => None,
        }
    }

    /// Whether a door is opened by one packet (fwknop, spa, syn) rather than by knocks.
    pub fn single_packet(&self) -> bool {
        matches!(
            self.kind,
            DoorKind::Fwknop { .. }
                | DoorKind::Spa { .. }
                | DoorKind::Syn { .. }
                | DoorKind::Knockknock { .. }
        )
    }

    /// The start command for a knock from `ip` (the `_6` variant for IPv6, when given).
    pub fn start_command_for(&self, ip: IpAddr) -> Option<&Command> {
        match ip {
            IpAddr::V6(_) => self
                .start_command_6
                .as_ref()
                .or(self.start_command.as_ref()),
            IpAddr::V4(_) => self.start_command.as_ref(),
        }
    }

    /// The stop command for a grant to `ip`.
    pub fn stop_command_for(&self, ip: IpAddr) -> Option<&Command> {
        match ip {
            IpAddr::V6(_) => self.stop_command_6.as_ref().or(self.stop_command.as_ref()),
            IpAddr::V4(_) => self.stop_command.as_ref(),
        }
    }

    /// What the door listens for, for `check` (this shows the secret: not for logs).
    pub fn describe_knocks(&self) -> String {
        if let Some(d) = self.describe_spa() {
            return d;
        }
        let list = |seq: &[Service]| {
            seq.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let (DoorKind::Rotating { span: r, .. }, Kind::Rotating { clock, .. }) =
            (&self.kind, &self.spec.kind)
        {
            return format!(
                "a rotating sequence ({clock:?}) drawn from {}/{}-{}",
                r.proto, r.first, r.last
            );
        }
        match self.one_time() {
            Some(f) => match f.entries.first() {
                Some(next) => format!(
                    "one-time sequences from {} ({} left; next, line {}: {})",
                    f.path.display(),
                    f.entries.len(),
                    next.line,
                    list(&next.sequence)
                ),
                None => format!(
                    "one-time sequences from {}: none left, the door is closed for good",
                    f.path.display()
                ),
            },
            None => list(&self.spec.sequence),
        }
    }

    /// What the door listens for, without the secret: for logs.
    /// An SPA door's description (it has no secret to hide).
    fn describe_spa(&self) -> Option<String> {
        let Kind::Spa(spa) = &self.spec.kind else {
            return None;
        };
        let nets = |v: &[(std::net::IpAddr, u8)]| {
            if v.is_empty() {
                "anywhere".to_string()
            } else {
                v.iter()
                    .map(|(n, l)| format!("{n}/{l}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let what = match (spa.proto, spa.precheck.is_some()) {
            _ if matches!(self.kind, DoorKind::Knockknock { .. }) => "knockknock SYNs on tcp",
            (Proto::Tcp, _) => "stealth SYNs on tcp",
            (_, true) => "knocker SPA packets on udp",
            (_, false) => "fwknop SPA packets on udp",
        };
        Some(format!(
            "{what}/{} from {}{}",
            spa.port,
            nets(&spa.allowed),
            if spa.open_any && !matches!(self.kind, DoorKind::Knockknock { .. }) {
                " (opens any port asked for: no OPEN_PORTS)"
            } else {
                ""
            }
        ))
    }

    pub fn describe_knocks_for_log(&self) -> String {
        if let Some(d) = self.describe_spa() {
            return d;
        }
        let mode = match self.kind {
            DoorKind::Rotating { mode, .. } => Some(mode.as_str()),
            _ => None,
        };
        if let Some(r) = self.span() {
            return format!(
                "a rotating sequence ({}) from {}/{}-{}",
                mode.unwrap_or("encoded"),
                r.proto,
                r.first,
                r.last
            );
        }
        match self.one_time() {
            Some(f) => format!(
                "{} one-time sequence(s) left in {}",
                f.entries.len(),
                f.path.display()
            ),
            None => format!("a sequence of {} knocks", self.spec.sequence.len()),
        }
    }

    /// Whether anyone who records a knock on this door can replay it.
    pub fn replayable(&self) -> bool {
        matches!(self.spec.kind, Kind::Sequence)
    }

    /// What a grant of the door opens and for how long, for `check` and the log: "tcp/22 for
    /// 30s", an SPA door's default and the most a client may ask for, "whatever the client asks
    /// for" for an access.conf stanza without OPEN_PORTS, or that the door only runs commands.
    pub fn describe_opening(&self) -> String {
        let Kind::Spa(spa) = &self.spec.kind else {
            if self.spec.open.is_empty() {
                return "opens nothing in the firewall itself: it runs its commands".into();
            }
            return format!(
                "opens {} for {}",
                list_services(&self.spec.open),
                fmt_duration(self.spec.open_for)
            );
        };
        // as the engine computes it: the client's time capped by the maximum, else the default
        let cap = |secs: u64| Duration::from_secs(secs.max(1)).min(self.spec.open_for);
        let (default, max) = (cap(spa.access_timeout), cap(spa.max_timeout));
        let how_long = if max > default {
            format!(
                "{} by default, up to {} if the client asks",
                fmt_duration(default),
                fmt_duration(max)
            )
        } else if max < default {
            format!(
                "{} by default, at most {} if the client names a time",
                fmt_duration(default),
                fmt_duration(max)
            )
        } else {
            fmt_duration(default)
        };
        let what = if spa.open_any && spa.restrict.is_empty() {
            match self.kind {
                DoorKind::Knockknock { .. } => {
                    "whatever TCP port the knock asks for (as knockknock)".to_string()
                }
                _ => "whatever port the client asks for (no OPEN_PORTS)".to_string(),
            }
        } else if spa.open_any {
            format!(
                "whatever port the client asks for but {} (no OPEN_PORTS)",
                list_services(&spa.restrict)
            )
        } else {
            list_services(&self.spec.open)
        };
        format!("opens {what} for {how_long}")
    }

    pub fn has_commands(&self) -> bool {
        self.start_command.is_some() || self.start_command_6.is_some()
    }
}

/// A network in CIDR notation: `192.0.2.0/24`, `2001:db8::/32`; a bare address is one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    pub addr: IpAddr,
    pub len: u8,
}

impl Net {
    /// The network of `len` bits `addr` lies in: its first address and `len` (at most the
    /// family's length). The network of the all-ones address is the netmask.
    pub fn of(addr: IpAddr, len: u8) -> Net {
        match addr {
            IpAddr::V4(a) => {
                let len = len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Net {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Net {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                    len,
                }
            }
        }
    }

    /// Whether `other` lies inside this network (a network contains itself).
    pub fn contains(&self, other: &Net) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8),
            IpAddr::V6(a) => (u128::from(a), 128u8),
        };
        let ((a, max), (b, other_max)) = (bits(self.addr), bits(other.addr));
        if max != other_max || other.len < self.len {
            return false;
        }
        let shift = u32::from(max - self.len);
        shift >= 128 || (a >> shift) == (b >> shift)
    }

    /// The networks without any that another one contains, sorted: what an nftables interval
    /// set accepts (it refuses overlapping elements).
    pub fn minimal(nets: &[Net]) -> Vec<Net> {
        let mut v: Vec<Net> = nets.to_vec();
        v.sort_by_key(|n| (n.len, n.addr));
        v.dedup();
        let mut out: Vec<Net> = Vec::new();
        for n in v {
            if !out.iter().any(|o| o.contains(&n)) {
                out.push(n);
            }
        }
        out.sort();
        out
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a network of `trusted` (or `--trusted`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{0:?} is not an address or network: write e.g. \"192.0.2.0/24\", \"2001:db8::/32\" or \"192.0.2.7\"")]
    NotAnAddress(String),
    #[error("{text:?}: the prefix length of an {family} network is 0 to {max}")]
    PrefixLength {
        text: String,
        family: &'static str,
        max: u8,
    },
    #[error("{0:?} would trust every source, so nothing would be protected: name the networks you manage the server from")]
    Everything(String),
    #[error("{text:?} has host bits set: write \"{base}/{len}\" for the network, or \"{host}\" for this one address")]
    HostBits {
        text: String,
        base: IpAddr,
        len: u8,
        host: Net,
    },
}

impl std::str::FromStr for Net {
    type Err = NetError;
    /// Refuses what nftables would refuse or what cannot be meant: a prefix too long, host bits
    /// set (`10.0.0.1/8`), and `/0`, which would trust every source of a family.
    fn from_str(text: &str) -> Result<Net, NetError> {
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| NetError::NotAnAddress(text.to_string()))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(NetError::PrefixLength {
                        text: text.to_string(),
                        family: if addr.is_ipv4() { "IPv4" } else { "IPv6" },
                        max,
                    })
                }
            },
        };
        if len == 0 {
            return Err(NetError::Everything(text.to_string()));
        }
        let net = Net { addr, len };
        let host = Net { addr, len: max };
        let base = Net::of(addr, len).addr;
        if base != addr {
            return Err(NetError::HostBits {
                text: text.to_string(),
                base,
                len,
                host,
            });
        }
        Ok(net)
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub nflog_group: u16,
    pub max_tracked: usize,
    pub on_stop: OnStop,
    pub grant_mark: u32,
    /// Packets that carry all these mark bits pass knocker's table (0: off): the admin's own
    /// chain sets it, before knocker's, for sources it admits.
    pub accept_mark: u32,
    /// Sources that knocker's protection never drops (the admin's management network, a VPN).
    pub trusted: Vec<Net>,
    /// Services dropped for everyone without a grant, besides the doors' own.
    pub protect: Vec<Service>,
    /// Only knocks arriving on these interfaces count (`[daemon] interface`, knockd's
    /// `Interface`), unless a door names its own; any when empty.
    pub interfaces: Vec<String>,
    /// Where knockerd keeps its ledger.
    pub state_dir: PathBuf,
    /// Where the metrics are written too, for a textfile collector (`[daemon] metrics_file`);
    /// they are always in `state_dir`'s `metrics.prom`.
    pub metrics_file: Option<PathBuf>,
    /// A fleet's shared replay memory (`[daemon] shared_state`): once-only claims are made in
    /// it too. `None`: this host's ledger alone.
    pub shared_state: Option<crate::fleet::SharedState>,
    /// The server's X25519 private key (read only when a `spa` or `syn` door exists).
    pub server_key: PathBuf,
    /// The clients file of `spa` and `syn` doors.
    pub clients: PathBuf,
    /// The user the packet worker becomes (`nobody` unless set).
    pub worker_user: Option<String>,
    /// Whether knock packets are dropped once logged, so that knock ports look filtered: true
    /// for knockerd's own doors. A knockd.conf's are only watched, as knockd watches them, since
    /// its knock ports may be a live service's (wake-on-connect); the admin's firewall decides.
    pub drop_knocks: bool,
    /// Where knocks are seen (`[source]`; NFLOG unless set).
    pub source: SourceSpec,
    pub doors: Vec<Door>,
}

/// `--kernel-log`, `--kernel-log-file` and `--log-prefix` with `--knockknock-profiles`: the
/// kernel-log source, which a knockknock directory has no key for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLogChoice {
    /// A file such as /var/log/kern.log instead of /dev/kmsg.
    pub file: Option<PathBuf>,
    /// The prefix of the admin's own LOG rule, whose lines count too.
    pub prefix: Option<String>,
}

/// Where the packet worker sees knocks: the native TOML's `[source]` table, `kind = "..."`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceSpec {
    /// `nflog` (the default): knockerd's table logs knock ports to its NFLOG group.
    #[default]
    Nflog,
    /// `kernel-log`: netfilter's log lines, from /dev/kmsg or `file` (e.g. /var/log/kern.log);
    /// knockerd's table logs knock ports with `log prefix "knocker: "`, and lines with the
    /// admin's own `prefix` count too.
    KernelLog {
        file: Option<PathBuf>,
        prefix: Option<String>,
    },
    /// `log-file`: any log file, read with the admin's formats. knockerd's table leaves knock
    /// ports alone: whoever writes the log sees the knocks.
    LogFile {
        file: PathBuf,
        formats: Vec<crate::source::log_file::LogFormat>,
    },
    /// `packet`: an AF_PACKET socket on one interface, with a BPF filter for the watched ports;
    /// the table's knock rules then drop without logging.
    Packet { interface: String },
}

impl SourceSpec {
    /// The kind's name, as `kind = "..."` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            SourceSpec::Nflog => "nflog",
            SourceSpec::KernelLog { .. } => "kernel-log",
            SourceSpec::LogFile { .. } => "log-file",
            SourceSpec::Packet { .. } => "packet",
        }
    }

    /// Where knocks are seen, for the log: "NFLOG group 4100", "interface eth0 (packet socket)".
    pub fn describe(&self, nflog_group: u16) -> String {
        match self {
            SourceSpec::Nflog => format!("NFLOG group {nflog_group}"),
            SourceSpec::Packet { interface } => format!("interface {interface} (packet socket)"),
            SourceSpec::KernelLog { file, .. } => format!(
                "the kernel log ({})",
                file.as_deref()
                    .unwrap_or(Path::new(crate::source::kernel_log::KMSG))
                    .display()
            ),
            SourceSpec::LogFile { file, .. } => format!("the log file {}", file.display()),
        }
    }

    /// The file a line source follows, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SourceSpec::Nflog
            | SourceSpec::Packet { .. }
            | SourceSpec::KernelLog { file: None, .. } => None,
            SourceSpec::KernelLog { file: Some(f), .. } | SourceSpec::LogFile { file: f, .. } => {
                Some(f)
            }
        }
    }
}

impl Config {
    /// "interface eth0", "interfaces eth0, wg0": for messages.
    pub fn name_interfaces(names: &[String]) -> String {
        match names {
            [one] => format!("interface {one}"),
            many => format!("interfaces {}", many.join(", ")),
        }
    }

    /// The interfaces a door's knocks count on: its own, else the daemon's (empty: every one).
    pub fn listens_on<'a>(&'a self, d: &'a Door) -> &'a [String] {
        if d.interfaces.is_empty() {
            &self.interfaces
        } else {
            &d.interfaces
        }
    }

    /// The interfaces a door's services are protected on: every one (empty) unless the door
    /// leaves the others alone (`protect_elsewhere = false`).
    pub fn protects_on<'a>(&'a self, d: &'a Door) -> &'a [String] {
        if d.protect_elsewhere {
            &[]
        } else {
            self.listens_on(d)
        }
    }

    /// The local services dropped on every interface for sources without a grant (the input
    /// chain's; a forwarded door's are the prerouting chain's, on every interface).
    pub fn protected_everywhere(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self.protect.clone();
        for d in self
            .doors
            .iter()
            .filter(|d| d.protect && d.forward.is_none())
        {
            if self.protects_on(d).is_empty() {
                v.extend(d.spec.open.iter().copied());
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// The services dropped only on some interfaces, as (interfaces, services), without those
    /// that are dropped everywhere anyway.
    pub fn protected_on_some(&self) -> Vec<(Vec<String>, Vec<Service>)> {
        let everywhere = self.protected_everywhere();
        let mut out: Vec<(Vec<String>, Vec<Service>)> = Vec::new();
        for d in self
            .doors
            .iter()
            .filter(|d| d.protect && d.forward.is_none())
        {
            let on = self.protects_on(d);
            if on.is_empty() {
                continue;
            }
            let services = d.spec.open.iter().filter(|s| !everywhere.contains(s));
            match out.iter_mut().find(|(i, _)| i.as_slice() == on) {
                Some((_, v)) => v.extend(services),
                None => out.push((on.to_vec(), services.copied().collect())),
            }
        }
        for (_, v) in &mut out {
            v.sort();
            v.dedup();
        }
        out.retain(|(_, v)| !v.is_empty());
        out
    }

    /// Every local service knockerd drops for everyone without a grant (the input chain's).
    pub fn protected(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self.protect.clone();
        for d in self
            .doors
            .iter()
            .filter(|d| d.protect && d.forward.is_none())
        {
            v.extend(d.spec.open.iter().copied());
        }
        v.sort();
        v.dedup();
        v
    }

    /// Every forwarded service knockerd drops for everyone without a grant when sent to this
    /// host: the `open` services of doors with `forward = true` or `nat` (the prerouting
    /// chain's).
    pub fn forwarded(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self
            .doors
            .iter()
            .filter(|d| {
                d.protect && matches!(d.forward, Some(Forward::Published | Forward::Nat(_)))
            })
            .flat_map(|d| d.spec.open.iter().copied())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The routed services knockerd drops for everyone without a grant: for each door with
    /// `forward = [hosts]`, its hosts and its `open` services, in the order of the doors.
    pub fn routed(&self) -> Vec<(Vec<Net>, Vec<Service>)> {
        self.doors
            .iter()
            .filter(|d| d.protect)
            .filter_map(|d| match &d.forward {
                Some(Forward::Routed(hosts)) => Some((hosts.clone(), d.spec.open.clone())),
                _ => None,
            })
            .collect()
    }

    /// The inner hosts whose connections knockerd's DNAT sends on get a new source on the way
    /// (doors with `nat` and `nat_source`): (target, protocol, source), sorted, each once.
    pub fn nat_sources(&self) -> Vec<(std::net::SocketAddr, Proto, NatSource)> {
        let mut v: Vec<(std::net::SocketAddr, Proto, NatSource)> = Vec::new();
        for d in &self.doors {
            if let (Some(Forward::Nat(to)), Some(src)) = (&d.forward, d.nat_source) {
                for s in &d.spec.open {
                    if !v.contains(&(*to, s.proto, src)) {
                        v.push((*to, s.proto, src));
                    }
                }
            }
        }
        v
    }

    /// Every service knockerd DNATs for granted sources, with its inner address and port
    /// (doors with `nat`), sorted.
    pub fn nat_targets(&self) -> Vec<(Service, std::net::SocketAddr)> {
        let mut v: Vec<(Service, std::net::SocketAddr)> = self
            .doors
            .iter()
            .filter_map(|d| match d.forward {
                Some(Forward::Nat(to)) => Some(d.spec.open.iter().map(move |s| (*s, to))),
                _ => None,
            })
            .flatten()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every service some door listens for knocks on.
    pub fn knock_services(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self
            .doors
            .iter()
            .flat_map(|d| d.spec.fixed_knocks().copied().collect::<Vec<_>>())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// UDP ports of single-packet-authorization doors (fwknop), each logged with its payload.
    pub fn spa_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.doors.iter().filter_map(Door::spa_port).collect();
        v.sort();
        v.dedup();
        v
    }

    /// TCP ports of stealth SYN doors, whose SYNs are logged with their headers.
    pub fn syn_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.doors.iter().filter_map(Door::syn_port).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The port spans of rotating and encoded doors, every port of which is a knock port.
    pub fn knock_ranges(&self) -> Vec<(Proto, u16, u16)> {
        self.doors
            .iter()
            .filter_map(|d| d.span().map(|r| (r.proto, r.first, r.last)))
            .collect()
    }

    /// Where knocks are seen, for the log: "NFLOG group 4100", "the kernel log (/dev/kmsg)".
    pub fn source_description(&self) -> String {
        self.source.describe(self.nflog_group)
    }

    pub fn door(&self, name: &str) -> Option<&Door> {
        self.doors.iter().find(|d| d.spec.name == name)
    }

    /// Every port knockerd's table logs knocks on, in the order `check` lists them: one list for
    /// `check`, the daemon's ready line and the warning about local services, so they agree.
    pub fn watched(&self) -> Vec<Watched> {
        let mut v: Vec<Watched> = self
            .knock_services()
            .into_iter()
            .map(Watched::Knock)
            .collect();
        v.extend(
            self.knock_ranges()
                .into_iter()
                .map(|(p, a, b)| Watched::Range(p, a, b)),
        );
        v.extend(self.spa_ports().into_iter().map(Watched::Spa));
        v.extend(self.syn_ports().into_iter().map(Watched::Syn));
        v
    }
}

/// A port (or span of ports) knockerd's table logs knocks on ([`Config::watched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// A knock port of a sequence door.
    Knock(Service),
    /// Every port of a rotating or encoded door's span: (protocol, first, last).
    Range(Proto, u16, u16),
    /// The UDP port of single-packet-authorization doors.
    Spa(u16),
    /// The TCP port of stealth SYN doors.
    Syn(u16),
}

impl Watched {
    /// How many ports it is (a span is all of its ports).
    pub fn ports(&self) -> usize {
        match *self {
            Watched::Range(_, a, b) => usize::from(b.saturating_sub(a)) + 1,
            _ => 1,
        }
    }

    /// Whether `s` is one of the ports watched.
    pub fn contains(&self, s: Service) -> bool {
        match *self {
            Watched::Knock(k) => k == s,
            Watched::Range(p, a, b) => s.proto == p && (a..=b).contains(&s.port),
            Watched::Spa(port) => s == Service::udp(port),
            Watched::Syn(port) => s == Service::tcp(port),
        }
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watched::Knock(s) => write!(f, "{s}"),
            Watched::Range(p, a, b) => write!(f, "{p}/{a}-{b}"),
            Watched::Spa(p) => write!(f, "udp/{p} (SPA packets, read whole)"),
            Watched::Syn(p) => write!(f, "tcp/{p} (stealth SYNs, headers read)"),
        }
    }
}

/// A `metrics_file` that is not an absolute path to a `.prom` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics_file must be an absolute path to a file ending in .prom (a textfile collector reads only those), e.g. \"/var/lib/prometheus/node-exporter/knockerd.prom\"; got {0:?}")]
pub struct MetricsFileError(pub String);

/// `[daemon] metrics_file` or `--metrics-file`: an absolute path to a `.prom` file.
pub fn metrics_file(text: &str) -> Result<PathBuf, MetricsFileError> {
    let path = PathBuf::from(text);
    if !path.is_absolute() || path.extension().is_none_or(|e| e != "prom") {
        return Err(MetricsFileError(text.to_string()));
    }
    Ok(path)
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("bad duration {0:?}: write seconds (30) or a number with s, m, h or d (30s, 5m)")]
    NotANumber(String),
    #[error("bad duration {0:?}: the unit must be s, m, h or d")]
    Unit(String),
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

/// Parses `30`, `30s`, `5m`, `2h`, `1d` into a duration of whole seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(DurationError::Unit(text.to_string())),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| DurationError::TooLong(text.to_string()))
}

/// Formats a duration the way the config writes it.
fn list_services(services: &[Service]) -> String {
    services
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Reads a configuration file whole, refusing one larger than [`MAX_FILE_BYTES`].
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let plain = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| plain(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(plain(format!(
            "file is {} bytes; at most {MAX_FILE_BYTES} are read",
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| plain(format!("cannot read: {e}")))
}

/// Reads a sample log for `check --log-sample`, bounded like a configuration file.
pub fn read_sample(path: &Path) -> Result<Vec<u8>, ConfigError> {
    read_bounded(path)
}

/// A TOML string literal, for the importers' output.
pub(crate) fn toml_quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Appends `text` as TOML comment lines, one per line of text, so that nothing escapes the
/// comment.
pub(crate) fn toml_comment(out: &mut String, prefix: &str, text: &str) {
    for line in text.lines() {
        out.push_str(&format!("# {prefix}{line}\n"));
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a time in seconds since the Unix epoch (civil_from_days,
/// Howard Hinnant's algorithm; no time zone database is read).
pub(crate) fn utc_date(t: u64) -> String {
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

/// A TOML file being read, to turn a span of its text into the line of an error.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
}

impl Ctx<'_> {
    /// The line (from 1) holding byte `offset` of the text.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at the line where `span` starts.
    pub(crate) fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        })
    }
}
