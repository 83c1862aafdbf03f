//! `knocker`: the client's command line. The client itself is the `knocker` library (see its
//! lib.rs); this file holds the clap definitions (the one source of `--help`), the glue from
//! arguments to the library ([`knock`] sends, [`kinds`] computes what a profile's kind sends,
//! [`profile`] keeps the profiles file, [`secrets`] the key and counter files, [`spa`] builds
//! fwknop packets from fwknop's options, [`saved`] knocks a saved profile whatever its kind,
//! [`connect`] knocks and relays a connection), what each command prints, and the exit status
//! of each error.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use knocker_wire::identity::PrivateKey;
use knocker_wire::{Proto, RotateKey, Service};

use knocker::fwknoprc::{self, Allow, BadValue, Key, Settings};
use knocker::knock::{self, Family};
use knocker::profile::{self, Kind, Mode, Profile, ProfileError, Store};
use knocker::saved::{self, knock_saved, open_note, Knocking, Say};
use knocker::spa::{self, SpaError};
use knocker::{connect, kinds, proxy, secrets};
use knocker_wire::fwknop::Digest;
use zeroize::Zeroizing;

const PORT_SYNTAX: &str = "\
PORT is `7000` (TCP, or UDP with -u), `7000:udp` or `7000:tcp` (as with `knock`), \
`udp/7000` or `7000/udp`; or `icmp/N`, an ICMP step: one echo request with N bytes of payload, \
as `ping -c1 -s N` sends it (ICMPv6 to an IPv6 address; needs root, CAP_NET_RAW, or a group in \
net.ipv4.ping_group_range).";

/// What `knocker knock --help` says of profiles, instead of repeating their whole schema.
const PROFILES_POINTER: &str = "\
Profiles: `knocker profile --help` (and `man knocker-profile`) describes profiles.toml, every
kind of profile and its keys; `knocker profile list` shows the saved ones.";

const PROFILES_HELP: &str = "\
Profiles:
  Saved profiles live in $KNOCKER_CONFIG_DIR/profiles.toml if that variable is set, else in
  $XDG_CONFIG_HOME/knocker/profiles.toml, else in ~/.config/knocker/profiles.toml. `knocker
  profile add` writes sequence profiles (mode 0600, in a directory made 0700, replaced
  atomically, comments kept); the file may also be edited by hand:

    [profile.myserver]
    host = \"server.example.org\"
    sequence = [\"7000\", \"9000:udp\", \"8000\"]   # same syntax as the command line
    delay_ms = 0        # optional: milliseconds to wait after each knock
    family = \"any\"      # optional: \"any\", \"4\" or \"6\"

  A port in `sequence` that names no protocol is TCP. Every profile has `host` and may have
  `delay_ms` and `family`; `kind` says what it knocks: \"sequence\" (the default, above),
  \"rotating\", \"encoded\", \"fwknop\", \"spa\" or \"syn\". The server's door must say the same
  as the profile.

    [profile.rot]                 # a rotating sequence: new ports every period
    host = \"server.example.org\"
    kind = \"rotating\"
    key_file = \"rot.key\"          # shared key (`knocker keygen`), mode 0600
    mode = \"totp\"                 # \"totp\": time steps; \"hotp\": a counter
    period = 30                   # totp: seconds per step (default 30)
    # counter_file = \"rot.count\"  # hotp: the next counter, moved on before each knock
    knocks = 4                    # 3 to 16 knocks
    ports = \"40000-40999\"         # drawn from this range (at least 64 ports)
    proto = \"tcp\"                 # optional: \"tcp\" (default) or \"udp\"

    [profile.enc]                 # an encoded knock: an encrypted request as ports
    host = \"server.example.org\"
    kind = \"encoded\"
    key_file = \"enc.key\"
    base = 40000                  # the span: 2^bits ports from base
    bits = 12                     # 11 to 15; 12 takes 63 knocks for IPv4 and 1 service
    proto = \"tcp\"                 # optional
    open = [\"tcp/22\"]             # 1 to 8 services to open
    duration = \"30s\"              # optional: how long to open (default 30s)
    # allow = \"203.0.113.7\"       # optional: the address to open for; default: this
                                  # machine's address towards the host (set it behind NAT)

    [profile.fw]                  # fwknop SPA: one packet, as the fwknop client sends it
    host = \"server.example.org\"   # (the stanza's SPA_SERVER is not used)
    kind = \"fwknop\"
    stanza = \"myssh\"              # a ~/.fwknoprc stanza: keys, ACCESS, ALLOW_IP...
    # rc_file = \"~/.fwknoprc\"     # optional: another rc file
    # key_file = \"fw.key\"         # instead of a stanza: the Rijndael key (base64, 1 to 32
    # hmac_key_file = \"fw.hmac\"   # bytes) and the HMAC key (base64, 1 to 128 bytes)
    # hmac_digest = \"sha256\"      # optional: md5, sha1, sha256, sha384 or sha512
    # open = [\"tcp/22\"]           # these override the stanza's; open is needed without one
    # allow = \"203.0.113.7\"       # or \"source\" (fwknop -s); default as for encoded
    # duration = \"120s\"           # optional: ask for this long (fwknop -f)
    # port = 62201                # optional: the server's port
    # user = \"alice\"              # optional: the user name in the packet

    [profile.native]              # knocker's own SPA: one datagram sealed to the server's key
    host = \"server.example.org\"
    kind = \"spa\"
    port = 62201                  # the door's UDP port
    server_key = \"OklKoDS5vY085DKXZIfB8l1y5NkLT4fBXfED1xq8t34=\"   # the server's public key
    door_key = \"Bl+hbiKnUPHLJa7YqXhw++ObWGfRBSWGnBrRlaW7Kbo=\"     # the door's key: a secret
    key_file = \"identity.key\"   # `knocker keygen --identity`
    open = [\"tcp/22\"]             # 1 to 16 services to ask for; --open picks some
    # duration = \"1h\"             # optional: ask for this long (default: the door's own)
    # allow = \"203.0.113.7\"       # optional: default: the address the packet comes from

    [profile.stealth]             # stealth SYNs (root or cap_net_raw): one SYN per service
    host = \"server.example.org\"
    kind = \"syn\"
    port = 443                    # the TCP port the SYNs go to
    server_key = \"OklKoDS5vY085DKXZIfB8l1y5NkLT4fBXfED1xq8t34=\"
    key_file = \"identity.key\"
    open = [\"tcp/22\", \"tcp/443\"]  # the door's services, in the door's order; --open picks

  `knockerd enroll` on the server prints spa and syn profiles ready to paste, for the public key
  `knocker keygen --identity` printed.

  Relative key_file and counter_file paths are relative to the directory of profiles.toml;
  `~/` is the home directory. A key file is refused if group or others have any access to
  it; so is a profile that holds a secret in profiles.toml itself (a `door_key`, a static
  `sequence`) when group or others have any access to the file (`chmod 600` it). A mistake in
  the file is reported as file:line:column and costs only its own profile: the others work,
  `knocker connect` to a host without a profile still connects, and using the broken profile
  is an error that says what is wrong.";

/// `--time-offset`'s help, the same for every command that takes it.
const TIME_OFFSET_HELP: &str = "Shift the time put in knocks by SECONDS (e.g. -90 or +30; \
also 2m, -1h), for a client whose clock is off: knockerd's log says by how much when it refuses \
a knock as too old or too new. Applies to spa, syn, encoded, fwknop and rotating (totp) knocks";

const EXAMPLES: &str = "\
Examples:
  knocker knock server.example.org 7000 8000 9000
  knocker knock -v -d 100 203.0.113.7 7000 9000:udp 8000
  knocker knock -6 -u server.example.org 7000 8000:tcp 9000
  knocker profile add myserver server.example.org 7000 9000:udp 8000
  knocker knock myserver && ssh server.example.org
  knocker keygen --out ~/.config/knocker/rot.key      # then copy it to the server
  knocker keygen --identity                           # for spa and syn: give the server its
                                                      # public key (`knockerd enroll`)
  knocker knock stealth --open tcp/22                 # one service of a spa or syn profile
  knocker knock native --time-offset -90              # this machine's clock is 90 s ahead
  knocker sequence rot                                # prints e.g. `40392 40952 40454 40384`
  knock server.example.org $(knocker sequence rot)    # any knock tool can knock it
  knocker spa --fwknop -n myssh                       # an fwknop SPA packet (~/.fwknoprc)
  ssh -o ProxyCommand='knocker connect %h %p' myserver # knock, then ssh through the door
  knocker proxy --listen 127.0.0.1:1080               # SOCKS5 for browsers and curl";

#[derive(Parser, Debug)]
#[command(
    name = "knocker",
    version,
    long_version = knocker_manual::long_version(env!("CARGO_PKG_VERSION")),
    propagate_version = true,
    about = "Port-knocking client: send knocks, keep named knock profiles and keys",
    long_about = "Port-knocking client: sends knock sequences (one TCP SYN or one UDP datagram per \
port, as the `knock` client does, so knockd and knockerd's sequence doors understand them), \
rotating sequences (derived from a shared key and the time or a counter, so a recorded knock \
is worthless), encoded knocks (an encrypted, authenticated request spelled out as ports), single \
packet authorization (fwknop's format, and knocker's own: one datagram sealed with this \
machine's key pair) and stealth SYNs (one ordinary-looking TCP SYN that carries an \
authenticator; needs root or cap_net_raw), and keeps named profiles, so that `knocker knock myserver` knocks whatever the profile describes, and \
`knocker connect myserver 22` knocks and then carries a connection (ssh's ProxyCommand), and \
`knocker proxy` does the same for each connection through a local SOCKS5 proxy.",
    after_long_help = format!("{PROFILES_HELP}\n\n{EXAMPLES}"),
    after_help = "Run `knocker help knock` or `knocker --help` for the profiles file format and examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Knock on HOST's ports, in order, or knock a saved profile
    #[command(
        long_about = format!("Knocks on HOST: for each PORT in order, one TCP SYN (a connection attempt \
that is abandoned at once, so the SYN is neither completed nor retransmitted) or one UDP datagram \
of one byte. HOST is a name, an IPv4 address or an IPv6 address; a name is resolved once, so every \
knock goes to the same address.\n\n{PORT_SYNTAX}\n\nWith no PORT, HOST names a saved profile, \
and knocker knocks what its kind needs: its sequence; the current rotating sequence (a hotp \
profile's counter is moved on before anything is sent); or a new encoded request, with a fresh \
nonce, sent header knock first. -d, -4 or -6 given here override the profile's own (-u does \
not apply: a profile's ports name their protocol). With PORTs, HOST is always a host, even if a \
profile has that name. A spa profile sends one UDP datagram, sealed with this machine's identity \
(`knocker keygen --identity`) to the server's key; a syn profile sends one TCP SYN per service \
whose header fields carry the authentication (a raw socket: root or cap_net_raw); --open picks \
some of a spa or syn profile's services.\n\nWith no saved profile of that name but a knockknock \
profile directory ~/.knockknock/HOST/ (as knockknock's own client reads it), knocker sends \
knockknock's SYN for the one TCP port given as --open tcp/PORT (knockknock's -p PORT), through a \
raw socket, after moving the directory's counter on.\n\nPrints nothing on standard output unless -v, and \
exits 0 once every knock is sent: a knock gets no answer, so knocker cannot tell whether a door \
opened. After knocking a profile, one line on standard error (unless -q) says how long the door \
stays open, as far as the client knows: `door open for up to 30s` when the profile asks for a \
duration (an encoded profile's `duration`; a spa or fwknop profile's `duration`, or the fwknop \
stanza's FW_TIMEOUT). \"Up to\": the server may allow less (a door's own limit, or one set for \
this client, caps a request). A sequence, rotating or syn knock carries no duration, and a spa or \
fwknop profile may ask for none: then the line says that the server decides how long. Knocks \
given as PORTs print nothing there, as `knock` does.\n\nA knock that carries the time (spa, syn, \
encoded, fwknop, rotating totp) is refused by a server whose clock disagrees with this machine's \
by more than the door allows; knockerd's log then says by how much, and --time-offset shifts the \
time knocker puts in."),
        after_long_help = format!("{EXAMPLES}\n\n{PROFILES_POINTER}"),
    )]
    Knock(KnockArgs),
    /// Print a profile's current knock sequence, for any knock tool
    #[command(
        long_about = "Prints the knock sequence of profile NAME on one line, in knock's \
syntax (`40392 40952 9000:udp`), so that any tool can knock it: `knock HOST $(knocker sequence \
NAME)`. For a rotating profile that is the current sequence: with mode = \"totp\", the one of \
this time step (standard error says when it changes); with mode = \"hotp\", the one of the next \
counter, which is not used up unless --consume is given (then the counter file moves on before \
the sequence is printed, as `knocker knock` does). An encoded profile has no fixed sequence: each \
knock is a new encrypted request."
    )]
    Sequence(SequenceArgs),
    /// Write a new random key to a file (mode 0600): a shared key (--out), or this machine's
    /// identity for spa and syn profiles (--identity)
    #[command(
        long_about = "Writes a new key (32 random bytes from the operating system, as one \
line of base64) to FILE, readable by its owner only. Refuses to overwrite an existing file.\n\n\
With --out FILE: a shared key for a rotating or encoded profile. Name it in the profile's \
key_file, and give the same key to the server's door.\n\n\
With --identity [FILE]: this machine's X25519 identity (private key) for spa and syn profiles, \
by default identity.key beside profiles.toml, e.g. ~/.config/knocker/identity.key (its directory is made 0700 if missing). Prints the \
public key on standard output: it is not a secret; give it to the server's admin, who enrolls \
it with `knockerd enroll NAME --public-key KEY --server HOST` and hands back the profiles to \
paste into profiles.toml. The private key never leaves this machine."
    )]
    Keygen(KeygenArgs),
    /// Add, list, show or remove saved profiles
    #[command(subcommand, after_long_help = PROFILES_HELP)]
    Profile(ProfileCommand),
    /// Send a single packet authorization (SPA) packet: fwknop's format, with --fwknop
    #[command(
        long_about = "Sends one single packet authorization (SPA) packet to HOST: one UDP \
datagram carrying an encrypted, authenticated request to open services (or run a command) for an \
address. With --fwknop (required: it is the only format today) the packet is fwknop's, exactly as \
the fwknop client sends it, so that fwknopd and knockerd's fwknop doors accept it. Prints nothing \
unless -v, and exits 0 once the packet is sent: an SPA packet gets no answer."
    )]
    Spa(Box<SpaArgs>),
    /// Knock (if HOST has a profile), wait until PORT answers, then relay stdin and stdout to it
    #[command(
        long_about = CONNECT_LONG_ABOUT,
        after_long_help = CONNECT_AFTER_HELP,
    )]
    Connect(ConnectArgs),
    /// A local SOCKS5 proxy that knocks (with the destination's profile) before it connects
    #[command(
        long_about = PROXY_LONG_ABOUT,
        after_long_help = PROXY_AFTER_HELP,
    )]
    Proxy(ProxyArgs),
    /// Write the man pages and shell completions made from this command line to DIR/man and
    /// DIR/completions (packaging/ holds the packaged copies, which the tests compare)
    #[command(hide = true)]
    Manuals {
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}
/// How knocks are sent: shared by `knock` and `profile add`, which stores them.
#[derive(Args, Debug)]
struct SendOpts {
    /// Make UDP the protocol of ports that name none (default: TCP)
    #[arg(short = 'u', long = "udp")]
    udp: bool,
    /// Wait MS milliseconds after each knock (also after the last, giving the door time to open)
    #[arg(short = 'd', long = "delay", value_name = "MS")]
    delay: Option<u32>,
    /// Use an IPv4 address of HOST
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use an IPv6 address of HOST
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
}

impl SendOpts {
    fn default_proto(&self) -> Proto {
        if self.udp {
            Proto::Udp
        } else {
            Proto::Tcp
        }
    }

    /// The family asked for on the command line, if any.
    fn family(&self) -> Option<Family> {
        family(self.ipv4, self.ipv6)
    }
}

/// The family that -4 and -6 ask for, if any.
fn family(ipv4: bool, ipv6: bool) -> Option<Family> {
    match (ipv4, ipv6) {
        (true, _) => Some(Family::V4),
        (_, true) => Some(Family::V6),
        _ => None,
    }
}

#[derive(Args, Debug)]
struct KnockArgs {
    #[command(flatten)]
    send: SendOpts,
    /// Print each knock as it is sent: `hitting tcp 10.200.1.1:7000`
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Do not say on standard error how long the door stays open
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// A spa or syn profile: knock for these of its services only (PROTO/PORT, repeatable or
    /// comma-separated, e.g. tcp/22)
    #[arg(
        long = "open",
        value_name = "SERVICE",
        value_delimiter = ',',
        value_parser = parse_service,
        conflicts_with = "ports"
    )]
    open: Vec<Service>,
    #[arg(
        long = "time-offset",
        value_name = "SECONDS",
        allow_hyphen_values = true,
        value_parser = kinds::parse_time_offset,
        help = TIME_OFFSET_HELP
    )]
    time_offset: Option<i64>,
    /// Host name or address to knock on, or the name of a saved profile
    #[arg(value_name = "HOST|PROFILE")]
    host: String,
    /// Ports to knock, in order: PORT[:tcp|:udp]
    #[arg(value_name = "PORT")]
    ports: Vec<String>,
    /// For tests only: knock as if the time were UNIX_SECS (a totp step, an encoded request's
    /// time)
    #[arg(long, value_name = "UNIX_SECS", hide = true)]
    at: Option<u64>,
}

#[derive(Args, Debug)]
struct SequenceArgs {
    /// Profile name
    name: String,
    /// hotp: use the counter up (move the counter file on), as knocking does
    #[arg(long)]
    consume: bool,
    /// For tests only: the sequence as of UNIX_SECS instead of now (totp)
    #[arg(long, value_name = "UNIX_SECS", hide = true)]
    at: Option<u64>,
}

#[derive(Args, Debug)]
struct KeygenArgs {
    /// The key file to create (it must not exist)
    #[arg(
        short = 'o',
        long = "out",
        value_name = "FILE",
        required_unless_present = "identity"
    )]
    out: Option<PathBuf>,
    /// Make this machine's identity for spa and syn profiles, in FILE (default
    /// identity.key beside profiles.toml), and print its public key for the server's admin
    #[arg(
        long = "identity",
        value_name = "FILE",
        num_args = 0..=1,
        conflicts_with = "out"
    )]
    identity: Option<Option<PathBuf>>,
}

/// A service as `--open` takes it: `tcp/22`, `22/udp`, `22:udp`, or `22` (TCP).
fn parse_service(text: &str) -> Result<Service, String> {
    text.trim().parse().map_err(|e| format!("{e}"))
}

#[derive(Subcommand, Debug)]
enum ProfileCommand {
    /// Save a knock sequence as NAME (-u, -d, -4 and -6 are saved with it)
    #[command(long_about = format!("Saves a knock sequence as NAME, so that `knocker knock NAME` \
knocks PORTs on HOST. -d, -4 and -6 are saved with it; -u decides the protocol of PORTs that name \
none, and the profile records each port's protocol.\n\n{PORT_SYNTAX}"))]
    Add(ProfileAddArgs),
    /// List saved profiles: name, host and sequence
    #[command(visible_alias = "ls")]
    List,
    /// Print one profile as it is written in profiles.toml
    Show {
        /// Profile name
        name: String,
    },
    /// Delete a saved profile
    #[command(visible_alias = "rm")]
    Remove {
        /// Profile name
        name: String,
    },
}

#[derive(Args, Debug)]
struct ProfileAddArgs {
    #[command(flatten)]
    send: SendOpts,
    /// Replace a profile that already has this name
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Profile name: letters, digits, '.', '_' and '-'
    name: String,
    /// Host name or address the profile knocks on
    host: String,
    /// Ports to knock, in order: PORT[:tcp|:udp]
    #[arg(value_name = "PORT", required = true)]
    ports: Vec<String>,
}

const SPA_HELP: &str = "\
fwknop compatibility:
  The packet is the one `fwknop` 2.6 sends with the same options (Rijndael, HMAC, message
  version 3.0.0), so an unchanged fwknopd (or knockerd's fwknop door) accepts it. The options
  keep fwknop's names. Settings come from the `[default]` stanza of ~/.fwknoprc (or --rc-file),
  then from the stanza -n names, then from the command line; a stanza's ACCESS, ALLOW_IP,
  SPA_SERVER, SPA_SERVER_PORT, KEY, KEY_BASE64, HMAC_KEY, HMAC_KEY_BASE64, HMAC_DIGEST_TYPE,
  DIGEST_TYPE, FW_TIMEOUT, SPOOF_USER, TIME_OFFSET, SPA_SOURCE_PORT and NAT_ACCESS are
  honoured, and a stanza asking for what knocker does not do (GnuPG, local NAT, -R, random
  ports) is refused with its line. The rc file must be readable by its owner only.

  Differences: an HMAC key is required (knocker sends no unauthenticated packets); UDP only;
  no prompting for keys; -R is refused (knocker never asks a web service for this machine's
  address: give your public address with -a, or use -s). Without -a, -s or ALLOW_IP the packet
  asks to open for this machine's address towards HOST (behind NAT that is the private one).";

const SPA_EXAMPLES: &str = "\
Examples:
  knocker spa --fwknop -A tcp/22 --key-base64-rijndael KEY --key-base64-hmac HKEY server.example.org
  knocker spa --fwknop -n myssh                         # a ~/.fwknoprc stanza
  knocker spa --fwknop -n myssh -a 203.0.113.7 -f 120   # override its allow IP, ask for 120 s
  knocker spa --fwknop -n myssh -T -B packet.txt        # write the packet, send nothing
  knocker spa --fwknop -n myssh -A tcp/2222 -N 10.0.0.5:22  # ssh -p 2222 reaches 10.0.0.5";

#[derive(Args, Debug)]
#[command(after_long_help = format!("{SPA_HELP}\n\n{SPA_EXAMPLES}"))]
struct SpaArgs {
    /// Send fwknop's SPA format (the only one today)
    #[arg(long, required = true)]
    fwknop: bool,
    /// The fwknopd server: a name or an address (or -D, or SPA_SERVER in the stanza)
    #[arg(value_name = "HOST")]
    host: Option<String>,
    /// The fwknopd server, as fwknop's -D gives it
    #[arg(
        short = 'D',
        long = "destination",
        value_name = "HOST",
        conflicts_with = "host"
    )]
    destination: Option<String>,
    /// Services to open: proto/port[,proto/port...], e.g. tcp/22,udp/53
    #[arg(short = 'A', long = "access", value_name = "LIST")]
    access: Option<String>,
    /// Ask to run this command on the server instead (fwknop's command message; the server
    /// must allow exactly it)
    #[arg(
        short = 'C',
        long = "server-cmd",
        value_name = "CMD",
        conflicts_with = "access"
    )]
    server_cmd: Option<String>,
    /// Ask the server to send the opened service on to an inner host, IP:PORT (fwknop's NAT
    /// access message): fwknopd honours it with ENABLE_IPT_FORWARDING Y; knockerd only in a
    /// FORCE_NAT stanza, and then to the stanza's own inner host
    #[arg(
        short = 'N',
        long = "nat-access",
        value_name = "IP:PORT",
        conflicts_with = "server_cmd"
    )]
    nat_access: Option<String>,
    /// The IPv4 address to open for (default: this machine's address towards HOST)
    #[arg(short = 'a', long = "allow-ip", value_name = "IP")]
    allow_ip: Option<String>,
    /// Ask the server to open for the packet's source address (allow IP 0.0.0.0)
    #[arg(short = 's', long = "source-ip", conflicts_with_all = ["allow_ip", "resolve_ip"])]
    source_ip: bool,
    /// Refused: fwknop asks a web service for this machine's address; knocker never does
    #[arg(short = 'R', long = "resolve-ip-https", conflicts_with = "allow_ip")]
    resolve_ip: bool,
    /// The encryption key, as text
    #[arg(long = "key-rijndael", value_name = "KEY")]
    key_rijndael: Option<String>,
    /// The encryption key, in base64
    #[arg(
        long = "key-base64-rijndael",
        value_name = "KEY",
        conflicts_with = "key_rijndael"
    )]
    key_base64_rijndael: Option<String>,
    /// The HMAC key, as text
    #[arg(long = "key-hmac", value_name = "KEY")]
    key_hmac: Option<String>,
    /// The HMAC key, in base64
    #[arg(
        long = "key-base64-hmac",
        value_name = "KEY",
        conflicts_with = "key_hmac"
    )]
    key_base64_hmac: Option<String>,
    /// HMAC digest: md5, sha1, sha256 (default), sha384 or sha512
    #[arg(long = "hmac-digest-type", value_name = "TYPE")]
    hmac_digest_type: Option<String>,
    /// Digest of the plaintext: md5, sha1, sha256 (default), sha384 or sha512
    #[arg(short = 'm', long = "digest-type", value_name = "TYPE")]
    digest_type: Option<String>,
    /// Accepted for fwknop's sake: knocker always adds an HMAC
    #[arg(long = "use-hmac")]
    use_hmac: bool,
    /// Ask the server to keep access open for SECS seconds (fwknop message type 3)
    #[arg(short = 'f', long = "fw-timeout", value_name = "SECS")]
    fw_timeout: Option<String>,
    /// The server's port (default 62201)
    #[arg(short = 'p', long = "server-port", value_name = "PORT")]
    server_port: Option<u16>,
    /// The protocol to send with: udp only
    #[arg(short = 'P', long = "server-proto", value_name = "PROTO")]
    server_proto: Option<String>,
    /// The source port to send from (default: any)
    #[arg(short = 'S', long = "source-port", value_name = "PORT")]
    source_port: Option<u16>,
    /// The user name in the packet (default: $SPOOF_USER, $LOGNAME, $USER)
    #[arg(short = 'U', long = "spoof-user", value_name = "USER")]
    spoof_user: Option<String>,
    /// Add TIME to the packet's timestamp: N seconds, Nm, Nh or Nd
    #[arg(long = "time-offset-plus", value_name = "TIME")]
    time_offset_plus: Option<String>,
    /// Subtract TIME from the packet's timestamp
    #[arg(
        long = "time-offset-minus",
        value_name = "TIME",
        conflicts_with = "time_offset_plus"
    )]
    time_offset_minus: Option<String>,
    #[arg(
        long = "time-offset",
        value_name = "SECONDS",
        allow_hyphen_values = true,
        value_parser = kinds::parse_time_offset,
        conflicts_with_all = ["time_offset_plus", "time_offset_minus"],
        help = TIME_OFFSET_HELP
    )]
    time_offset: Option<i64>,
    /// Use this stanza of the rc file
    #[arg(short = 'n', long = "named-config", value_name = "NAME")]
    named_config: Option<String>,
    /// The rc file (default ~/.fwknoprc)
    #[arg(long = "rc-file", value_name = "FILE")]
    rc_file: Option<PathBuf>,
    /// Read no rc file
    #[arg(long = "no-rc-file", conflicts_with_all = ["rc_file", "named_config"])]
    no_rc_file: bool,
    /// Also write the packet to FILE (one line), as fwknop -B does
    #[arg(short = 'B', long = "save-packet", value_name = "FILE")]
    save_packet: Option<PathBuf>,
    /// With -B: append to FILE instead of replacing it
    #[arg(short = 'b', long = "save-packet-append", requires = "save_packet")]
    save_packet_append: bool,
    /// Build the packet but do not send it (with -B: only write it)
    #[arg(short = 'T', long = "test")]
    test: bool,
    /// Say what is sent
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// For tests only: the packet's time is UNIX_SECS instead of now
    #[arg(long, value_name = "UNIX_SECS", hide = true)]
    at: Option<u64>,
}

impl SpaArgs {
    /// The command line as [`Settings`], to lay over the rc file's.
    fn command_line(&self) -> Result<Settings, SpaError> {
        let secret = |s: &Option<String>| s.as_ref().map(|k| Zeroizing::new(k.clone()));
        let digest = |s: &Option<String>, what: &str| -> Result<Option<Digest>, SpaError> {
            s.as_deref()
                .map(|d| d.parse().map_err(|e| usage(format!("{what}: {e}"))))
                .transpose()
        };
        if let Some(proto) = &self.server_proto {
            if !proto.eq_ignore_ascii_case("udp") {
                return Err(usage(format!("-P {}", BadValue::NotUdp(proto.clone()))));
            }
        }
        let allow = if self.source_ip {
            Some(Allow::Source)
        } else if self.resolve_ip {
            Some(Allow::Resolve)
        } else {
            self.allow_ip.clone().map(Allow::Ip)
        };
        let time_offset = match (&self.time_offset_plus, &self.time_offset_minus) {
            (Some(t), _) => Some(fwknoprc::time_offset(t).map_err(|e| usage(e.to_string()))?),
            (_, Some(t)) => Some(-fwknoprc::time_offset(t).map_err(|e| usage(e.to_string()))?),
            _ => self.time_offset,
        };
        Ok(Settings {
            server: self.host.clone().or_else(|| self.destination.clone()),
            port: self.server_port,
            source_port: self.source_port,
            access: self.access.clone(),
            allow,
            key: secret(&self.key_rijndael)
                .map(Key::Text)
                .or_else(|| secret(&self.key_base64_rijndael).map(Key::Base64)),
            hmac_key: secret(&self.key_hmac)
                .map(Key::Text)
                .or_else(|| secret(&self.key_base64_hmac).map(Key::Base64)),
            hmac_digest: digest(&self.hmac_digest_type, "--hmac-digest-type")?,
            digest: digest(&self.digest_type, "--digest-type")?,
            fw_timeout: self
                .fw_timeout
                .as_deref()
                .map(fwknoprc::fw_timeout)
                .transpose()
                .map_err(|e| usage(format!("--fw-timeout: {e}")))?,
            user: self.spoof_user.clone(),
            time_offset,
            nat: self.nat_access.clone(),
        })
    }
}

/// `knocker spa --fwknop ...`: the rc file's settings (none with --no-rc-file), the command
/// line's over them; the packet is built, saved with -B, and sent unless -T.
fn send_spa(args: &SpaArgs) -> Result<(), SpaError> {
    let mut s = match args.no_rc_file {
        true => Settings::default(),
        false => spa::rc_settings(args.rc_file.as_deref(), args.named_config.as_deref())?,
    };
    s.overlay(args.command_line()?);
    let packet = spa::build(&s, args.test, args.at, args.server_cmd.as_deref())?;
    if let Some(path) = &args.save_packet {
        spa::save(path, &packet.payload, args.save_packet_append)?;
    }
    spa::deliver(&packet, s.source_port, args.test, args.verbose)
}

fn usage(message: impl Into<String>) -> SpaError {
    SpaError::Usage(message.into())
}

const CONNECT_LONG_ABOUT: &str = "\
Opens a TCP connection to PORT and relays it: what arrives on standard input is sent, what \
arrives from the connection is written to standard output. Made for ssh's ProxyCommand: \
`ssh -o ProxyCommand='knocker connect %h %p' myserver`.\n\n\
If HOST is the name of a saved profile, or the host of exactly one profile, knocker first knocks \
what the profile describes, whatever its kind (a sequence, a rotating sequence, an encoded \
request, an fwknop SPA packet; a hotp profile uses up one counter per knock), and connects to \
the address it knocked on (the profile's host). Then it tries to connect for up to --wait \
seconds, attempt after attempt; if the port has not answered by then, it knocks again, up to \
--tries knocks, and then gives up: `tcp/PORT on HOST did not open after N knocks`. If HOST has \
no profile, knocker connects without knocking (so the same ProxyCommand serves every host): to \
each address of HOST in turn, each for up to --tries x --wait seconds.\n\n\
Once connected, the relay runs until both directions have ended: when standard input ends, \
knocker shuts down its sending side of the connection and keeps writing what the server sends \
until the server closes; exit status 0. If the reader of standard output goes away, knocker \
ends quietly (status 0) too. Errors (no connection, a reset) are printed on standard error, \
status 1; a mistake on the command line or in a profile, status 2. Nothing but the \
connection's bytes is ever written to standard output; -v says on standard error what is \
knocked, how long the door is asked to open for, and where knocker connects.";

const CONNECT_AFTER_HELP: &str = "\
Examples:
  ssh -o ProxyCommand='knocker connect %h %p' myserver
  knocker connect -v --tries 5 --wait 2 myserver 22    # by hand: shows sshd's banner
  # in ~/.ssh/config, for every host (hosts without a profile are connected to directly):
  #   Host *
  #     ProxyCommand knocker connect %h %p";

#[derive(Args, Debug)]
struct ConnectArgs {
    /// Say on standard error what is knocked and where knocker connects
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[command(flatten)]
    knocking: KnockThenConnect,
    /// A saved profile's name (or its host), or a host to connect to without knocking
    #[arg(value_name = "HOST|PROFILE")]
    host: String,
    /// The TCP port to connect to
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
}

/// How `connect` and `proxy` knock and wait for the port to answer.
#[derive(Args, Debug)]
struct KnockThenConnect {
    /// Knock at most N times (1 to 100) before giving up
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    tries: u32,
    /// After each knock, try to connect for up to SECS seconds (0.1 to 600, e.g. 2 or 0.5)
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_wait)]
    wait: Duration,
    /// Use an IPv4 address of the host
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use an IPv6 address of the host
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    #[arg(
        long = "time-offset",
        value_name = "SECONDS",
        allow_hyphen_values = true,
        value_parser = kinds::parse_time_offset,
        help = TIME_OFFSET_HELP
    )]
    time_offset: Option<i64>,
}

impl ConnectArgs {
    fn options(&self) -> connect::ConnectOptions {
        let k = &self.knocking;
        connect::ConnectOptions {
            verbose: self.verbose,
            tries: k.tries,
            wait: k.wait,
            family: family(k.ipv4, k.ipv6),
            time_offset: k.time_offset.unwrap_or(0),
            host: self.host.clone(),
            port: self.port,
        }
    }
}

const PROXY_LONG_ABOUT: &str = "\
A local SOCKS5 server (RFC 1928) for programs without a ProxyCommand: browsers, curl, chat and \
mail clients. For each CONNECT request it does what `knocker connect` does: it finds the \
profile for the destination host (the profile of that name, or the one whose host it is, as \
written in profiles.toml), knocks it, whatever its kind, waits for the port (--wait, up to \
--tries knocks), answers the client and relays the connection both ways. A host without a \
profile is refused (SOCKS reply 2, \"not allowed by ruleset\") unless --pass-through, which \
connects to it without a knock.\n\n\
Let the proxy resolve names (curl --socks5-hostname, socks5h:// URLs, a browser's \"proxy DNS \
when using SOCKS v5\"): a request by name finds the profile whose host is that name; a request \
by address finds only a profile whose host is that address written out. Knocks of one profile \
are sent one at a time, and a port that opened in the last 10 seconds is tried before knocking \
again, so a page's parallel connections cost one knock.\n\n\
It serves CONNECT only (BIND and UDP ASSOCIATE get reply 7), IPv4, IPv6 and names, with no \
authentication, and it listens on loopback only: any other address is refused, because a \
proxy without a password on a network address would let anyone who reaches it knock with \
your profiles. (Other users of this machine can reach a loopback port too: run it on a machine \
that is yours.) Replies: 0 connected, 1 a failure (a profile that cannot be used), 2 no \
profile, 3 network unreachable, 4 host unreachable (it did not open, or the name does not \
resolve), 5 connection refused, 7 command not supported, 8 address type not supported. One \
line per refused request on standard error; -v says what each request knocked and where it \
connected. It runs until stopped (Ctrl-C, SIGTERM).";

const PROXY_AFTER_HELP: &str = "\
Examples:
  knocker proxy --listen 127.0.0.1:1080
  curl --socks5-hostname 127.0.0.1:1080 http://myserver/    # knocks myserver's profile first
  firefox: Settings, Network Settings, Manual proxy: SOCKS Host 127.0.0.1, Port 1080, SOCKS v5,
           \"Proxy DNS when using SOCKS v5\" on";

#[derive(Args, Debug)]
struct ProxyArgs {
    /// Listen on ADDR:PORT, a loopback address (port 0: any free port, printed at start)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:1080")]
    listen: std::net::SocketAddr,
    /// Connect to hosts without a profile, without a knock (default: refuse them)
    #[arg(long = "pass-through")]
    pass_through: bool,
    /// Serve at most N connections at once (1 to 4096); more wait to be accepted
    #[arg(
        long = "max-connections",
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u16).range(1..=4096)
    )]
    max_connections: u16,
    /// Say on standard error what each request knocked and where it connected
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[command(flatten)]
    knocking: KnockThenConnect,
}

impl ProxyArgs {
    fn options(&self) -> proxy::ProxyOptions {
        let k = &self.knocking;
        proxy::ProxyOptions {
            listen: self.listen,
            pass_through: self.pass_through,
            tries: k.tries,
            wait: k.wait,
            family: family(k.ipv4, k.ipv6),
            time_offset: k.time_offset.unwrap_or(0),
            max_connections: usize::from(self.max_connections),
            verbose: self.verbose,
            handshake: proxy::HANDSHAKE,
        }
    }
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.1..=600.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{text}: wait from 0.1 to 600 seconds"))
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    BadPort(#[from] knock::BadPort),
    #[error(transparent)]
    Knock(#[from] knock::KnockError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Kind(#[from] kinds::KindError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    Spa(#[from] spa::SpaError),
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Saved(#[from] saved::SavedError),
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    #[error("{}: {source}", .dir.display())]
    Manuals {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no ports to knock on {host:?}, and no profile of that name in {}: give PORTs, or save one with `knocker profile add {host} HOST PORT...`", .path.display())]
    NoPorts {
        host: String,
        path: std::path::PathBuf,
    },
    #[error("{} in {} cannot be used: see the warnings above", if *.count == 1 { "1 entry".to_string() } else { format!("{} entries", .count) }, .path.display())]
    Skipped {
        count: usize,
        path: std::path::PathBuf,
    },
    #[error("profile {0:?} is encoded: it has no fixed sequence, every knock is a new encrypted request; knock it with `knocker knock {0}` (-v shows the ports)")]
    NoSequence(String),
    #[error("profile {0:?} is kind = \"fwknop\": it sends one SPA packet, not a port sequence; knock it with `knocker knock {0}`")]
    NoFwknopSequence(String),
    #[error("profile {name:?} is kind = \"{kind}\": it sends {what}, not a port sequence; knock it with `knocker knock {name}`")]
    NoPortSequence {
        name: String,
        kind: &'static str,
        what: &'static str,
    },
    #[error("{} already exists: knocker keygen never overwrites a key (remove the file first to replace it){}", .path.display(), .public.as_ref().map_or(String::new(), |k| format!("; its public key is {k}")))]
    IdentityExists {
        path: PathBuf,
        public: Option<String>,
    },
    #[error(transparent)]
    Knockknock(#[from] knocker::knockknock::KnockknockError),
    #[error("{} is a knockknock profile: it knocks for one TCP port, so give it as --open tcp/PORT (knockknock's -p PORT)", .0.display())]
    KnockknockPort(PathBuf),
    #[error("--consume uses up a hotp counter, and profile {0:?} is not kind = \"rotating\" with mode = \"hotp\"")]
    NothingToConsume(String),
}

impl Error {
    /// 2 for what the user typed, 1 for what happened (resolving, sending, the profiles file),
    /// like clap's own usage errors and `knock`'s failures.
    fn exit_code(&self) -> u8 {
        match self {
            Error::BadPort(_)
            | Error::NoPorts { .. }
            | Error::NoSequence(_)
            | Error::NoFwknopSequence(_)
            | Error::NoPortSequence { .. }
            | Error::NothingToConsume(_)
            | Error::KnockknockPort(_) => 2,
            Error::Profile(e) if e.is_usage() => 2,
            Error::Spa(e) if e.is_usage() => 2,
            Error::Kind(e) if e.is_usage() => 2,
            Error::Connect(e) if e.is_usage() => 2,
            Error::Saved(e) if e.is_usage() => 2,
            Error::Proxy(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Knock(args) => knock(args),
        Command::Sequence(args) => sequence(args),
        Command::Keygen(args) => keygen(args),
        Command::Profile(command) => profile(command),
        Command::Spa(args) => send_spa(&args).map_err(Error::from),
        Command::Connect(args) => connect::run(&args.options()).map_err(Error::from),
        Command::Proxy(args) => proxy::run(&args.options()).map_err(Error::from),
        Command::Manuals { out } => match knocker_manual::write(Cli::command(), "1", &out) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                Ok(())
            }
            Err(source) => Err(Error::Manuals { dir: out, source }),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knocker: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn knock(args: KnockArgs) -> Result<(), Error> {
    if args.ports.is_empty() {
        let store = Store::from_env()?;
        let saved = match store.get(&args.host) {
            Ok(saved) => saved,
            Err(ProfileError::NotFound { .. }) if knockknock_dir(&args.host).is_some() => {
                return knock_knockknock(&args);
            }
            Err(ProfileError::NotFound { .. }) => {
                return Err(Error::NoPorts {
                    host: args.host,
                    path: store.path().to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        knock_saved(
            &store,
            &args.host,
            &saved,
            &Knocking {
                family: args.send.family(),
                delay_ms: args.send.delay,
                at: args.at,
                time_offset: args.time_offset.unwrap_or(0),
                open: (!args.open.is_empty()).then_some(&args.open[..]),
                say: args.verbose.then_some(Say::Stdout),
            },
        )?;
        // How long the door stays open, as far as the client knows: see `knock --help`.
        if !args.quiet {
            eprintln!("{}", open_note(&store, &saved));
        }
        return Ok(());
    }
    let sequence = knock::parse_sequence(&args.ports, args.send.default_proto())?;
    let ip = knock::resolve(&args.host, args.send.family().unwrap_or_default())?;
    saved::send(
        ip,
        &sequence,
        Duration::from_millis(args.send.delay.unwrap_or(0).into()),
        args.verbose.then_some(Say::Stdout),
    )?;
    Ok(())
}

/// knockknock's client profile for HOST, if there is one: `~/.knockknock/HOST/`.
fn knockknock_dir(host: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    knocker::knockknock::find(std::path::Path::new(&home), host)
}

/// `knocker knock HOST --open tcp/PORT` with knockknock's profile for HOST (knockknock's
/// `knockknock -p PORT HOST`).
fn knock_knockknock(args: &KnockArgs) -> Result<(), Error> {
    let dir = knockknock_dir(&args.host).ok_or_else(|| Error::NoPorts {
        host: args.host.clone(),
        path: PathBuf::from("~/.knockknock"),
    })?;
    let port = match args.open.as_slice() {
        [s] if s.proto == Proto::Tcp => s.port,
        _ => return Err(Error::KnockknockPort(dir)),
    };
    let profile = knocker::knockknock::load(&dir)?;
    let ip = knock::resolve(&args.host, Family::V4)?;
    let sent = knocker::knockknock::send(&profile, ip, port)?;
    if args.verbose {
        println!(
            "knockknock SYN {}:{} -> {ip}:{} for tcp/{port} (counter {})",
            sent.src, sent.src_port, profile.knock_port, sent.counter
        );
    }
    if !args.quiet {
        eprintln!(
            "knock sent: the server decides how long tcp/{port} stays open (knockknock's delay)"
        );
    }
    Ok(())
}

fn sequence(args: SequenceArgs) -> Result<(), Error> {
    let store = Store::from_env()?;
    let saved = store.get(&args.name)?;
    let hotp = matches!(&saved.kind, Kind::Rotating(r) if matches!(r.mode, Mode::Hotp { .. }));
    if args.consume && !hotp {
        return Err(Error::NothingToConsume(args.name));
    }
    match &saved.kind {
        Kind::Sequence(sequence) => println!("{}", sequence_text(sequence)),
        Kind::Rotating(rotating) => {
            let now = args.at.unwrap_or_else(kinds::now_unix);
            let (sequence, step) = kinds::rotating(&store, rotating, now, args.consume)?;
            println!("{}", sequence_text(&sequence));
            // Standard error, so that `$(knocker sequence NAME)` is the ports alone.
            eprintln!("{}", step.note);
        }
        Kind::Encoded(_) => return Err(Error::NoSequence(args.name)),
        Kind::Fwknop(_) => return Err(Error::NoFwknopSequence(args.name)),
        Kind::Spa(_) => {
            return Err(Error::NoPortSequence {
                name: args.name,
                kind: "spa",
                what: "one sealed SPA packet",
            })
        }
        Kind::Syn(_) => {
            return Err(Error::NoPortSequence {
                name: args.name,
                kind: "syn",
                what: "authenticated SYNs to one port",
            })
        }
    }
    Ok(())
}

fn keygen(args: KeygenArgs) -> Result<(), Error> {
    if let Some(identity) = args.identity {
        return keygen_identity(identity);
    }
    let Some(out) = args.out else {
        // clap requires --out without --identity.
        return Ok(());
    };
    // Key files are the same for every kind of door.
    let key = RotateKey::generate().map_err(secrets::SecretError::Rng)?;
    secrets::write_new_key(&out, &key.to_base64())?;
    Ok(())
}

/// Where `knocker keygen --identity` writes by default, beside profiles.toml; `knockerd
/// enroll`'s profiles name it as `key_file = "identity.key"`, relative to that directory.
const IDENTITY_FILE: &str = "identity.key";

/// `knocker keygen --identity [FILE]`: a new X25519 private key, 0600, in a directory made 0700
/// if missing; the public key on standard output.
fn keygen_identity(path: Option<PathBuf>) -> Result<(), Error> {
    let (path, default) = match path {
        Some(p) => (p, false),
        None => {
            let store = Store::from_env()?;
            (store.resolve(Path::new(IDENTITY_FILE)), true)
        }
    };
    if default {
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            profile::create_private_dir(dir)?;
        }
    }
    let key = PrivateKey::generate().map_err(secrets::SecretError::Rng)?;
    match secrets::write_new_key(&path, &key.to_base64()) {
        Ok(()) => {}
        Err(secrets::SecretError::Exists(path)) => {
            // Say what the existing identity is, which is most likely what was wanted.
            let public = secrets::load_key(&path, PrivateKey::from_base64)
                .ok()
                .map(|k| k.public_key().to_base64());
            return Err(Error::IdentityExists { path, public });
        }
        Err(e) => return Err(e.into()),
    }
    eprintln!(
        "knocker: wrote this machine's identity to {} (mode 0600; it never leaves this \
         machine). Its public key, below, is not a secret: the server's admin enrolls it with \
         `knockerd enroll NAME --public-key KEY --server HOST`.",
        path.display()
    );
    println!("{}", key.public_key());
    Ok(())
}

fn profile(command: ProfileCommand) -> Result<(), Error> {
    let store = Store::from_env()?;
    match command {
        ProfileCommand::Add(args) => {
            let sequence = knock::parse_sequence(&args.ports, args.send.default_proto())?;
            let saved = Profile {
                host: args.host,
                delay_ms: args.send.delay.unwrap_or(0),
                family: args.send.family().unwrap_or_default(),
                kind: Kind::Sequence(sequence),
            };
            store.add(&args.name, &saved, args.force)?;
        }
        ProfileCommand::List => {
            let loaded = store.read();
            loaded.warn();
            let skipped = loaded.skipped.len();
            let profiles = loaded.profiles;
            let name_width = profiles.keys().map(String::len).max().unwrap_or(0);
            let host_width = profiles.values().map(|p| p.host.len()).max().unwrap_or(0);
            for (name, saved) in &profiles {
                println!(
                    "{name:name_width$}  {:host_width$}  {}",
                    saved.host, saved.kind
                );
            }
            if skipped > 0 {
                return Err(Error::Skipped {
                    count: skipped,
                    path: store.path().to_path_buf(),
                });
            }
        }
        ProfileCommand::Show { name } => {
            print!("{}", profile::render(&name, &store.get(&name)?));
        }
        ProfileCommand::Remove { name } => store.remove(&name)?,
    }
    Ok(())
}

fn sequence_text(sequence: &[Service]) -> String {
    let ports: Vec<String> = sequence.iter().map(|s| knock::knock_syntax(*s)).collect();
    ports.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::net::IpAddr;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn knock_takes_knocks_options_anywhere() {
        let cli = Cli::try_parse_from([
            "knocker", "knock", "-u", "-d", "200", "host", "7000", "-6", "8000:tcp", "-v",
        ])
        .expect("parses");
        let Command::Knock(args) = cli.command else {
            panic!("not knock")
        };
        assert!(args.verbose);
        assert_eq!(args.send.delay, Some(200));
        assert_eq!(args.send.family(), Some(Family::V6));
        assert_eq!(args.host, "host");
        assert_eq!(
            knock::parse_sequence(&args.ports, args.send.default_proto()).expect("ports"),
            vec![Service::udp(7000), Service::tcp(8000)]
        );
    }

    #[test]
    fn time_offset_open_and_quiet_parse() {
        for (arg, secs) in [("-90", -90), ("+30", 30), ("2m", 120)] {
            let cli = Cli::try_parse_from(["knocker", "knock", "p", "--time-offset", arg])
                .expect("parses");
            let Command::Knock(args) = cli.command else {
                panic!("not knock")
            };
            assert_eq!(args.time_offset, Some(secs), "{arg}");
        }
        assert!(Cli::try_parse_from(["knocker", "knock", "p", "--time-offset", "soon"]).is_err());
        let cli = Cli::try_parse_from([
            "knocker",
            "knock",
            "-q",
            "p",
            "--open",
            "tcp/22,udp/53",
            "--open",
            "443",
        ])
        .expect("parses");
        let Command::Knock(args) = cli.command else {
            panic!("not knock")
        };
        assert!(args.quiet);
        assert_eq!(
            args.open,
            [Service::tcp(22), Service::udp(53), Service::tcp(443)]
        );
        assert!(Cli::try_parse_from(["knocker", "knock", "p", "--open", "tcp/0"]).is_err());
        let knocking = Knocking {
            at: Some(1000),
            time_offset: -90,
            ..Knocking::default()
        };
        assert_eq!(knocking.now(), 910);
        for sub in [
            &["knocker", "connect", "--time-offset", "-5", "h", "22"][..],
            &["knocker", "spa", "--fwknop", "--time-offset", "-5", "h"][..],
        ] {
            assert!(Cli::try_parse_from(sub).is_ok(), "{sub:?}");
        }
    }

    #[test]
    fn waits_are_seconds_with_decimals_in_bounds() {
        assert_eq!(parse_wait("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_wait("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "0.01", "601", "-1", "x", "", "NaN", "inf"] {
            assert!(parse_wait(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn four_and_six_conflict() {
        assert!(Cli::try_parse_from(["knocker", "knock", "-4", "-6", "h", "1"]).is_err());
    }

    #[test]
    fn profile_add_needs_ports() {
        assert!(Cli::try_parse_from(["knocker", "profile", "add", "n", "h"]).is_err());
        assert!(Cli::try_parse_from(["knocker", "profile", "add", "n", "h", "1"]).is_ok());
    }

    #[test]
    fn the_documented_profiles_parse() {
        // The help's example sections are indented by four spaces; together they are a file.
        let toml: String = PROFILES_HELP
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .map(|l| format!("{l}\n"))
            .collect();
        let profiles = profile::parse(&toml, std::path::Path::new("--help")).expect(&toml);
        let kinds: Vec<(&str, &str)> = profiles
            .iter()
            .map(|(name, p)| (name.as_str(), p.kind.name()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("enc", "encoded"),
                ("fw", "fwknop"),
                ("myserver", "sequence"),
                ("native", "spa"),
                ("rot", "rotating"),
                ("stealth", "syn")
            ]
        );
        // "12 takes 63 knocks for IPv4 and 1 service"
        let Kind::Encoded(enc) = &profiles["enc"].kind else {
            panic!("not encoded")
        };
        let v4: IpAddr = "192.0.2.1".parse().expect("v4");
        assert_eq!(
            knocker_wire::encoded::layout(&enc.spec, v4, 1).map(|l| l.knocks()),
            Some(63)
        );
    }

    #[test]
    fn sequence_and_keygen_parse() {
        let cli = Cli::try_parse_from(["knocker", "sequence", "rot", "--consume", "--at", "5"])
            .expect("parses");
        let Command::Sequence(args) = cli.command else {
            panic!("not sequence")
        };
        assert_eq!(
            (args.name.as_str(), args.consume, args.at),
            ("rot", true, Some(5))
        );
        assert!(Cli::try_parse_from(["knocker", "keygen"]).is_err());
        assert!(Cli::try_parse_from(["knocker", "keygen", "-o", "k"]).is_ok());
        assert!(Cli::try_parse_from(["knocker", "keygen", "--identity"]).is_ok());
        assert!(Cli::try_parse_from(["knocker", "keygen", "--identity", "f"]).is_ok());
        assert!(Cli::try_parse_from(["knocker", "keygen", "--identity", "-o", "k"]).is_err());
        // --at is for tests: hidden from help.
        let help = Cli::command()
            .find_subcommand_mut("sequence")
            .expect("sequence")
            .render_long_help()
            .to_string();
        assert!(!help.contains("--at"), "{help}");
        assert!(help.contains("--consume"), "{help}");
    }

    #[test]
    fn long_help_documents_the_profiles_file() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[profile.myserver]"), "{help}");
        assert!(help.contains("KNOCKER_CONFIG_DIR"), "{help}");
        assert!(help.contains("Examples:"), "{help}");
    }
}
