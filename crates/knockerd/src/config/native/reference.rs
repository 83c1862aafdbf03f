//! knockerd.toml's reference, written once: knockerd.toml(5) and docs/knockerd.toml.md are
//! rendered from it (`knockerd manuals`), and its tests check it against the parser: every key
//! the parser accepts is here, and every key here is one the parser accepts.

use knocker_manual::reference::{Key, Reference, Section};

/// The reference of knockerd.toml and of the clients file it names.
pub const KNOCKERD_TOML: Reference = Reference {
    name: "knockerd.toml",
    summary: "knockerd's configuration: its doors, where it sees knocks, and what it protects",
    description: &[
        "knockerd reads one TOML file, `/etc/knocker/knockerd.toml` unless `--config` names another. It has a `[daemon]` table, one `[door.NAME]` table per door, and an optional `[source]` table. knockerd refuses the whole file when any part of it is wrong, and says the file, the line, what is wrong and what to write instead; `knockerd check` reads it the same way without touching the firewall, and prints what it would load. A reload (`knockerd reload`, SIGHUP) that is refused keeps the running configuration, whole.",
        "A door opens its `open` services, to the address that knocked only, for `open_for`. Its services are protected: knocker's table drops them silently for every other source, unless the door says `protect = false`. Knock ports are always dropped and logged. Nothing opens without a door: a file without one is refused, since nothing would be protected.",
        "Durations are a number of seconds or a string with a unit: `\"30s\"`, `\"5m\"`, `\"2h\"`, `\"1d\"`. Services are written `proto/port`, e.g. `\"tcp/22\"` or `\"udp/51820\"`. Knocks of a sequence are written as knockd writes them, `port[:tcp|udp]` (tcp unless said), or `\"icmp/N\"`: a ping with N bytes of payload. Commands are argument lists run without a shell, with `%IP%` replaced by the knocking address; one string is allowed only with `shell = true`.",
        "knockerd also reads knockd's knockd.conf (`--knockd-conf`), fwknopd's access.conf (`--fwknop-access`) and knockknock's profiles (`--knockknock-profiles`) as they are; `knockerd import-knockd`, `import-fwknop` and `import-knockknock` print them as this file.",
    ],
    sections: &[DAEMON, EVERY_DOOR, SEQUENCE, ONE_TIME, ROTATING, ENCODED, FWKNOP, SPA_SYN, KNOCKKNOCK, COMMAND, SOURCE, FORMAT, CLIENTS],
    example: EXAMPLE,
    see_also: &[
        "knockerd(8)",
        "knockerd-check(8)",
        "knockerd-enroll(8)",
        "knocker(1)",
        "nft(8)",
        "/usr/share/doc/knocker/README.md",
    ],
};

/// The `[daemon]` table.
pub const DAEMON_TABLE: &str = "[daemon]";
/// A door's table.
pub const DOOR_TABLE: &str = "[door.NAME]";
/// A door's delayed commands.
pub const COMMAND_TABLE: &str = "[[door.NAME.command]]";
/// The `[source]` table.
pub const SOURCE_TABLE: &str = "[source]";
/// A log-file source's formats.
pub const FORMAT_TABLE: &str = "[[source.format]]";
/// A client's table in the clients file.
pub const CLIENT_TABLE: &str = "[client.NAME]";

const DAEMON: Section = Section {
    table: DAEMON_TABLE,
    title: "[daemon]",
    about: "What the whole daemon does, whatever the door. Every key is optional.",
    keys: &[
        Key {
            name: "nflog_group",
            value: "integer",
            default: "4100",
            about: "The NFLOG group knocker's table logs knock packets to, 0 to 65535. Pick one nothing else uses.",
        },
        Key {
            name: "max_tracked",
            value: "integer",
            default: "100000",
            about: "The most partial knocks (a source part-way through a sequence) kept in memory, 1 to 100000000, about 60 bytes each. When it is full the oldest is forgotten.",
        },
        Key {
            name: "on_stop",
            value: "\"keep\" or \"withdraw\"",
            default: "\"keep\"",
            about: "On a clean stop: `keep` lets open grants run out in the kernel, `withdraw` removes them. Either way knock and protected ports stay dropped.",
        },
        Key {
            name: "grant_mark",
            value: "integer",
            default: "0x4b4e0000",
            about: "The mark set on granted packets, for an admin's own default-drop chain to accept (`knockerd check` prints the rule). 0 turns marking off.",
        },
        Key {
            name: "accept_mark",
            value: "integer",
            default: "0: off",
            about: "Packets that the admin's own chain marks with these bits pass knocker's table too; an accept in another chain cannot undo knocker's drop. May not contain grant_mark's bits or lie within them; e.g. `0x4b410000`.",
        },
        Key {
            name: "trusted",
            value: "[\"ADDRESS/LEN\", ...]",
            default: "none",
            about: "Sources that knocker's protection never drops, whatever the doors say: a management network, a VPN. A bare address is one host. Keep one here while setting knocker up, so that a mistake cannot lock you out.",
        },
        Key {
            name: "protect",
            value: "[\"proto/port\", ...]",
            default: "none",
            about: "Services protected besides the doors' own `open` services: dropped for every source without a grant.",
        },
        Key {
            name: "interface",
            value: "\"NAME\" or [\"NAME\", ...]",
            default: "every interface",
            about: "Only knocks arriving on these interfaces count, for every door that names no `interfaces` of its own. Protection still applies on every interface.",
        },
        Key {
            name: "state_dir",
            value: "\"PATH\"",
            default: "\"/var/lib/knocker\"",
            about: "The ledger (used sequences and requests, pending stop commands), the pid file and the last reload's verdict. Mode 0700.",
        },
        Key {
            name: "metrics_file",
            value: "\"PATH\"",
            default: "none",
            about: "Also write the metrics (Prometheus text format: knocks seen, refusals by reason, grants, refreshes, expiries and stop commands per door; source overruns, worker restarts, table restores) to this file, for node_exporter's textfile collector: an absolute path ending in `.prom`, e.g. `/var/lib/prometheus/node-exporter/knockerd.prom`. Replaced atomically, only after a change and at most once a second. They are always in `STATE_DIR/metrics.prom` too (`knockerd status --metrics`).",
        },
        Key {
            name: "shared_state",
            value: "\"redis://USER:PASSWORD@HOST:PORT/DB\" or \"rediss://...\"",
            default: "none: this host's ledger alone",
            about: "A fleet's one replay memory: a Redis (or Valkey) server that every server of the fleet names. Before a grant, each once-only use (a single-packet request's replay digests, SYN and encoded requests, rotating and HOTP steps and counters, knockknock counters, one-time lines) is claimed there too, atomically, after this host's own ledger has accepted it: a claim another server made first refuses the grant. Keys are `knocker:DOOR:...` and hold hashes and numbers only (an ACL user limited to `~knocker:*` and `+get +set +exists +eval +evalsha +script|load` is enough). `rediss://` is TLS, the server's certificate checked against `shared_state_ca_file`, or else the public authorities of Mozilla's list (built in, not /etc/ssl/certs). Each claim waits at most 50 ms (a new connection, TLS included, at most 200 ms); a store that does not answer is tried again at most once a second, and meanwhile each door's `shared_state_down` decides. Static `sequence` doors make no claim (they are replayable by nature). The password never appears in the log or `knockerd check`. knockerd.service allows no IP traffic (`IPAddressDeny=any`): allow the store's address with `IPAddressAllow=` in a drop-in.",
        },
        Key {
            name: "shared_state_password_file",
            value: "\"PATH\"",
            default: "none",
            about: "The store's password, read from this file (an absolute path; one line; mode 600, refused if others may read it) instead of the URL, so that the configuration can be shared and read by others. The URL then names the user alone: `redis://knocker@HOST:6379/`.",
        },
        Key {
            name: "shared_state_ca_file",
            value: "\"PATH\"",
            default: "Mozilla's public authorities, built in",
            about: "For `rediss://`: the PEM certificate(s) of the authority that signed the store's certificate, instead of Mozilla's public authorities (the files of /etc/ssl/certs are not read). The certificate must name the host as `shared_state` writes it (an IP address needs an IP address entry).",
        },
        Key {
            name: "shared_state_down",
            value: "\"refuse\" or \"local\"",
            default: "\"refuse\"",
            about: "What a door that names none does while the shared store cannot be asked (down, unreachable, slower than 50 ms, refusing the user): `refuse` refuses what needs a fleet-wide once-only claim, with a log line for each; `local` grants on this host's own replay memory alone, with one loud warning per outage and the `knockerd_shared_state_claims_total{result=\"down_local\"}` metric: a knock recorded on its way to another server can then open this one once. Never an open door either way: this host's ledger still refuses what it saw.",
        },
        Key {
            name: "server_key",
            value: "\"PATH\"",
            default: "\"/etc/knocker/server.key\"",
            about: "The server's private key for `spa` and `syn` doors, a 0600 file that `knockerd keygen` writes.",
        },
        Key {
            name: "clients",
            value: "\"PATH\"",
            default: "\"/etc/knocker/clients.toml\"",
            about: "The clients file of `spa` and `syn` doors (its tables are below); `knockerd enroll` adds to it.",
        },
        Key {
            name: "worker_user",
            value: "\"USER\"",
            default: "\"nobody\"",
            about: "The user the packet worker becomes (no groups, no capabilities) once its source is bound; never root. A dedicated user (e.g. `knocker`) is better than nobody.",
        },
    ],
};

const EVERY_DOOR: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME]: every kind",
    about: "One table per door; NAME is 1 to 32 letters, digits, `-` or `_`. `kind` says how the door is knocked on; the keys below apply to every kind, and each kind's own keys follow. A key of another kind is refused with its line.",
    keys: &[
        Key {
            name: "kind",
            value: "string",
            default: "\"sequence\"",
            about: "`sequence`, `one-time`, `rotating`, `encoded`, `fwknop`, `spa`, `syn` or `knockknock`.",
        },
        Key {
            name: "open",
            value: "[\"proto/port\", ...]",
            default: "none",
            about: "What a grant opens, to the knocking address only. A single-packet door opens what the client asks for, among these. A door must open something or run a command.",
        },
        Key {
            name: "open_for",
            value: "duration",
            default: "\"30s\"",
            about: "How long a grant lasts, at most one day; the kernel removes it then. Connections made meanwhile keep working.",
        },
        Key {
            name: "protect",
            value: "boolean",
            default: "true",
            about: "Whether the door's `open` services are dropped for everyone without a grant. `false` leaves them to your own firewall.",
        },
        Key {
            name: "forward",
            value: "boolean or [\"ADDRESS[/LEN]\", ...]",
            default: "false",
            about: "`true`: the `open` services are published on this host and forwarded elsewhere: a container's port published by Docker or Podman (`-p 8080:80` is \"tcp/8080\"), or your own DNAT rule. knocker protects and opens them in its prerouting chain, before any DNAT, by the port a packet is sent to, since a forwarded packet never reaches the input chain. A list of addresses or networks: the `open` services of those hosts behind this one (a router, a VPN gateway), reached by their own addresses without DNAT, protected in the same chain by destination. Cannot be combined with `connections`.",
        },
        Key {
            name: "nat",
            value: "\"ADDRESS:PORT\"",
            default: "none",
            about: "Send the door's `open` services on to an inner host (fwknop's FORCE_NAT): a new connection to one of them, sent to this host, is DNAT'd to ADDRESS:PORT (\"10.0.0.5:22\", \"[fd00::5]:22\") while its source holds a grant, so the DNAT ends with the grant, in the kernel. The services are forwarded (as with `forward = true`) and this door's alone. The inner host must route its answers back through this host (or see `nat_source`), and IP forwarding must be on. A `kind = \"fwknop\"` door with `nat` takes a client's NAT request (`fwknop -N`) as a request for its `open` services; the inner host the packet names is never used (without `nat`, such a request is refused).",
        },
        Key {
            name: "nat_networks",
            value: "[\"NETWORK\", ...]",
            default: "none: a client's NAT request is refused",
            about: "`kind = \"fwknop\"` without `nat`: the IPv4 networks of the inner hosts a client may name itself with `fwknop -N HOST:PORT` (fwknopd's ENABLE_IPT_FORWARDING). The first service the client asks for (one of `open`) is DNAT'd to HOST:PORT for the client's address alone, by an entry of the map client_nat4 added, refreshed and removed with the grant element in one batch; HOST must lie in one of these networks, not be their first or last address, and never be one of this host's own addresses (checked by the root process for every grant). Anyone holding the door's key can reach every host of these networks, on any port: list only the inner hosts. The inner host must route its answers back through this host, and IP forwarding must be on. Not with `connections` or `grant_prefix`.",
        },
        Key {
            name: "nat_source",
            value: "\"masquerade\" or \"ADDRESS\"",
            default: "the client's own address",
            about: "With `nat`: the source address the connections get on their way to the inner host (fwknop's FORCE_MASQUERADE and FORCE_SNAT), so that an inner host without a route back through this one still answers: `\"masquerade\"` (the address of this host's interface towards it) or one of this host's addresses of the target's family. The inner host then sees this host, not the client.",
        },
        Key {
            name: "connections",
            value: "integer",
            default: "no limit (1 for knockknock)",
            about: "How many new connections a grant admits, 1 to 8; after the last one the kernel removes the grant, so the port closes behind you.",
        },
        Key {
            name: "interfaces",
            value: "[\"NAME\", ...]",
            default: "[daemon] interface",
            about: "Only knocks arriving on these interfaces count for this door (NFLOG and kernel-log sources). A knock port is the door's alone unless the doors sharing it listen on the same interfaces.",
        },
        Key {
            name: "protect_elsewhere",
            value: "boolean",
            default: "true",
            about: "Whether the door's services are also dropped on the interfaces its knocks are not seen on (failing closed: a source there cannot open them). `false` protects them only on the door's interfaces and leaves the others to your firewall; `knockerd check` warns.",
        },
        Key {
            name: "shared_state_down",
            value: "\"refuse\" or \"local\"",
            default: "[daemon] shared_state_down",
            about: "This door's policy while the fleet's shared store is down (see `[daemon] shared_state_down`). Only with `[daemon] shared_state`, and not on a static `sequence` door, which makes no claim.",
        },
        Key {
            name: "grant_prefix",
            value: "integer",
            default: "32 (the address alone)",
            about: "For clients behind carrier-grade NAT, whose knock and connection leave from different addresses of one pool: an IPv4 grant opens to the whole prefix of this length around the address that knocked, 16 to 32. Everyone in that prefix gets in; `knockerd check` warns. Not with `connections`.",
        },
        Key {
            name: "grant_prefix6",
            value: "integer",
            default: "128 (the address alone)",
            about: "The same for IPv6 grants, 32 to 128 (a provider's customers usually get a /56 or /64).",
        },
        Key {
            name: "target",
            value: "\"ADDRESS\"",
            default: "any of the host's addresses",
            about: "Only knocks sent to this address count (knockd's Target).",
        },
        Key {
            name: "start_command",
            value: "[\"PROGRAM\", \"ARG\", ...]",
            default: "none",
            about: "Run as root when the door opens, without a shell, `%IP%` replaced by the knocking address; also `%PORT%` and `%PROTO%` (6 or 17) of the first service opened, and in SPA doors `%PKT_SRC%`, `%DST%` (the packet's source and destination), `%CLIENT_TIMEOUT%` (seconds the client asked for, capped as the grant is; 0 if none) and `%TIMEOUT%` (the packet's timestamp plus the seconds until the stop command, as fwknop's CMD_CYCLE variables). Every value is a parsed address or a number.",
        },
        Key {
            name: "stop_command",
            value: "[\"PROGRAM\", \"ARG\", ...]",
            default: "none",
            about: "Run `stop_after` after the start. Pending stop commands are kept in the ledger and run after a restart.",
        },
        Key {
            name: "stop_after",
            value: "duration",
            default: "open_for",
            about: "When stop_command runs, counted from the grant. Needs a stop command.",
        },
        Key {
            name: "start_command_6",
            value: "[\"PROGRAM\", \"ARG\", ...]",
            default: "start_command",
            about: "The start command for IPv6 knocks (knockd's Start_Command_6).",
        },
        Key {
            name: "stop_command_6",
            value: "[\"PROGRAM\", \"ARG\", ...]",
            default: "stop_command",
            about: "The stop command for IPv6 knocks.",
        },
        Key {
            name: "shell",
            value: "boolean",
            default: "false",
            about: "Commands are one string run with `/bin/sh -c`, as knockd runs them. `%IP%` only ever becomes a parsed address.",
        },
        Key {
            name: "repeat_start_command",
            value: "boolean",
            default: "false",
            about: "A knock while the door is already open refreshes the grant; `true` also runs start_command again (knockd's behaviour).",
        },
        Key {
            name: "command",
            value: "tables",
            default: "none",
            about: "Commands at a delay from the grant or at its end: `[[door.NAME.command]]` tables, below. At most 16.",
        },
    ],
};

const SEQUENCE: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"sequence\"",
    about: "The same knocks every time, as knockd's doors. Whoever records them can knock them again: prefer a kind below where clients allow.",
    keys: &[
        Key {
            name: "sequence",
            value: "[\"port[:tcp|udp]\" or \"icmp/N\", ...]",
            default: "required",
            about: "The knocks, in order: at least 3, not ascending or descending, none twice in a row. `knockerd check` warns about a sequence printed in the docs.",
        },
        Key {
            name: "window",
            value: "duration",
            default: "\"15s\"",
            about: "How long the whole sequence may take, from the first knock.",
        },
        Key {
            name: "tcp_flags",
            value: "\"syn,!ack\"",
            default: "any",
            about: "The TCP flags a knock must have (`!` for must not); other TCP knocks are ignored, as in knockd.",
        },
    ],
};

const ONE_TIME: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"one-time\"",
    about: "knockd's One_Time_Sequences: each line of a file is a sequence that opens once. Takes `window` and `tcp_flags` as a sequence door does.",
    keys: &[Key {
        name: "one_time_sequences",
        value: "\"PATH\"",
        default: "required",
        about: "The file of sequences, one per line. A used line gets `#` in front, written and synced before the grant. It must stay writable by knockerd.",
    }],
};

/// A rotating or encoded door's key.
const SHARED_KEY_FILE: Key = Key {
    name: "key_file",
    value: "\"PATH\"",
    default: "required",
    about: "The shared key, a 0600 file that `knocker keygen --out FILE` writes.",
};

/// A rotating or encoded door's knocks' protocol.
const KNOCK_PROTO: Key = Key {
    name: "proto",
    value: "\"tcp\" or \"udp\"",
    default: "\"tcp\"",
    about: "The protocol of the knocks.",
};

const ROTATING: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"rotating\"",
    about: "The sequence changes with time (totp) or a counter (hotp), derived from a key the client shares. A used step or counter goes to the ledger before the grant.",
    keys: &[
        SHARED_KEY_FILE,
        Key {
            name: "ports",
            value: "\"FIRST-LAST\"",
            default: "required",
            about: "The span knocks are drawn from. Every port of it is a knock port (dropped and logged): no service may lie in it.",
        },
        Key {
            name: "knocks",
            value: "integer",
            default: "4",
            about: "Knocks per sequence.",
        },
        KNOCK_PROTO,
        Key {
            name: "mode",
            value: "\"totp\" or \"hotp\"",
            default: "\"totp\"",
            about: "Time steps, or a counter the client advances.",
        },
        Key {
            name: "period",
            value: "duration",
            default: "30",
            about: "totp: the length of a step, 5 s to 1 h.",
        },
        Key {
            name: "skew",
            value: "integer",
            default: "1",
            about: "totp: steps accepted either side of now, 0 to 10.",
        },
        Key {
            name: "lookahead",
            value: "integer",
            default: "5",
            about: "hotp: counters accepted ahead of the last used one, at least 1.",
        },
        Key {
            name: "window",
            value: "duration",
            default: "\"15s\"",
            about: "How long a whole sequence may take.",
        },
    ],
};

const ENCODED: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"encoded\"",
    about: "Who, what and for how long, encrypted and authenticated, spelled out as knocks on a span of ports. A request opens once: its digest goes to the ledger before the grant.",
    keys: &[
        SHARED_KEY_FILE,
        Key {
            name: "base",
            value: "integer",
            default: "required",
            about: "The first port of the span.",
        },
        Key {
            name: "bits",
            value: "integer",
            default: "required",
            about: "The span is 2^bits ports from base, bits 11 to 15. Every port of it is a knock port.",
        },
        KNOCK_PROTO,
        Key {
            name: "max_age",
            value: "duration",
            default: "\"120s\"",
            about: "How far the request's clock may be off, either way, 5 s to 1 h.",
        },
        Key {
            name: "allow_other_address",
            value: "boolean",
            default: "false",
            about: "Let a request name another address than its source (a client behind carrier-grade NAT).",
        },
    ],
};

const FWKNOP: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"fwknop\"",
    about: "fwknop's single-packet authorization, for fwknop clients unchanged: one access.conf stanza (what `knockerd import-fwknop` writes). The HMAC is checked in constant time before anything is decrypted; a packet's digest is kept in the ledger, so a replay never opens.",
    keys: &[
        Key {
            name: "key_file",
            value: "\"PATH\"",
            default: "required",
            about: "The encryption key (fwknop's KEY_BASE64), a 0600 file holding one line of base64.",
        },
        Key {
            name: "hmac_key_file",
            value: "\"PATH\"",
            default: "required",
            about: "The HMAC key (HMAC_KEY_BASE64), a 0600 file of one line of base64.",
        },
        Key {
            name: "hmac_digest",
            value: "string",
            default: "\"sha256\"",
            about: "`md5`, `sha1`, `sha256`, `sha384` or `sha512` (HMAC_DIGEST_TYPE).",
        },
        Key {
            name: "port",
            value: "integer",
            default: "62201",
            about: "The UDP port the packets go to; nothing listens there.",
        },
        Key {
            name: "sources",
            value: "[\"ADDRESS/LEN\" or \"any\", ...]",
            default: "any",
            about: "The sources a packet may come from (SOURCE).",
        },
        Key {
            name: "destinations",
            value: "[\"ADDRESS/LEN\", ...]",
            default: "any",
            about: "The addresses a packet may be sent to (DESTINATION).",
        },
        Key {
            name: "restrict",
            value: "[\"proto/port\", ...]",
            default: "none",
            about: "Services a packet may never ask for (RESTRICT_PORTS).",
        },
        Key {
            name: "open_for",
            value: "duration",
            default: "\"30s\"",
            about: "How long a grant lasts unless the packet asks (FW_ACCESS_TIMEOUT).",
        },
        Key {
            name: "max_open_for",
            value: "duration",
            default: "\"300s\"",
            about: "The longest a packet may ask for (MAX_FW_TIMEOUT).",
        },
        Key {
            name: "max_age",
            value: "duration",
            default: "\"120s\"",
            about: "How old a packet may be (MAX_SPA_PACKET_AGE).",
        },
        Key {
            name: "expire",
            value: "integer",
            default: "never",
            about: "A Unix time after which the door opens nothing (ACCESS_EXPIRE).",
        },
        Key {
            name: "require_username",
            value: "string",
            default: "any",
            about: "The user name the packet must carry (REQUIRE_USERNAME).",
        },
        Key {
            name: "require_source_address",
            value: "boolean",
            default: "false",
            about: "Refuse packets whose allow address is 0.0.0.0 (REQUIRE_SOURCE_ADDRESS).",
        },
        Key {
            name: "allow_other_address",
            value: "boolean",
            default: "false",
            about: "Open for the address the packet names even when it is not the packet's source (carrier-grade NAT).",
        },
    ],
};

const SPA_SYN: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"spa\" or \"syn\"",
    about: "knocker's own single-packet doors. `spa`: one UDP datagram, a one-way Noise handshake (Noise_X_25519_ChaChaPoly_SHA256) from the client's own key pair. `syn`: one TCP SYN that looks like Linux's own, its random fields carrying the authenticator. The server keeps only the clients' public keys (`[daemon] server_key`, `clients`). Garbage is dropped after one HMAC, before any public-key check.",
    keys: &[
        Key {
            name: "port",
            value: "integer",
            default: "required",
            about: "spa: the UDP port the datagram goes to. syn: the TCP port the SYN goes to; no service may listen there.",
        },
        Key {
            name: "open_for",
            value: "duration",
            default: "\"30s\"",
            about: "How long a grant lasts, unless the client asks for less (or, up to max_open_for, for more).",
        },
        Key {
            name: "max_open_for",
            value: "duration",
            default: "open_for",
            about: "The longest a client may ask for, at most one day.",
        },
        Key {
            name: "max_age",
            value: "duration",
            default: "\"120s\"",
            about: "spa only: how far the client's clock may be off, either way. A syn door's window is fixed.",
        },
        Key {
            name: "rate_limit",
            value: "integer",
            default: "2",
            about: "Public-key checks per second per source, in bursts of five times that; 0 for no limit.",
        },
        Key {
            name: "allow_other_address",
            value: "boolean",
            default: "false",
            about: "spa only: let a client name another address than its source (carrier-grade NAT).",
        },
    ],
};

const KNOCKKNOCK: Section = Section {
    table: DOOR_TABLE,
    title: "[door.NAME], kind = \"knockknock\"",
    about: "knockknock's own SYN knock, read from its profile as knockknock-daemon reads it, so its clients can switch unchanged. A grant admits one new connection unless `connections` says otherwise.",
    keys: &[
        Key {
            name: "profile",
            value: "\"DIR\"",
            default: "required",
            about: "The profile's directory (`/etc/knockknock.d/profiles/NAME`), whose counter file knockerd rewrites before every grant: it must stay writable.",
        },
        Key {
            name: "error_window",
            value: "integer",
            default: "20",
            about: "How many counters ahead of the last one a knock may be, 1 to 1000.",
        },
    ],
};

const COMMAND: Section = Section {
    table: COMMAND_TABLE,
    title: "[[door.NAME.command]]",
    about: "A door's command at a delay from the grant, or at its end. They are kept in the ledger, so a restart does not lose one.",
    keys: &[
        Key {
            name: "run",
            value: "[\"PROGRAM\", \"ARG\", ...]",
            default: "required",
            about: "The command, written as the door's start_command is.",
        },
        Key {
            name: "after",
            value: "duration",
            default: "0: at once",
            about: "When it runs, counted from the grant.",
        },
        Key {
            name: "at",
            value: "\"end\"",
            default: "none",
            about: "Run it when the grant ends instead (not with `after`).",
        },
    ],
};

const SOURCE: Section = Section {
    table: SOURCE_TABLE,
    title: "[source]",
    about: "Where knocks are seen. Without this table knocker's table logs knock packets to NFLOG (`nflog_group`). Whatever the source, knock ports stay dropped.",
    keys: &[
        Key {
            name: "kind",
            value: "string",
            default: "\"nflog\"",
            about: "`nflog`; `packet`, a packet socket on one interface; `kernel-log`, LOG rule lines in /dev/kmsg or a kern.log file; `log-file`, any log file (a router's, a firewall's) through `[[source.format]]`. Single-packet doors (fwknop, spa, syn) need `nflog` or `packet`.",
        },
        Key {
            name: "interface",
            value: "\"NAME\"",
            default: "required for packet",
            about: "packet: the interface its socket reads.",
        },
        Key {
            name: "file",
            value: "\"PATH\"",
            default: "/dev/kmsg (kernel-log); required (log-file)",
            about: "The file read, followed across rotation.",
        },
        Key {
            name: "prefix",
            value: "\"TEXT\"",
            default: "knockerd's own",
            about: "kernel-log: an admin's LOG rule prefix to read as well as knockerd's own.",
        },
        Key {
            name: "format",
            value: "tables",
            default: "required for log-file",
            about: "log-file: the line formats, `[[source.format]]` tables, below.",
        },
    ],
};

const FORMAT: Section = Section {
    table: FORMAT_TABLE,
    title: "[[source.format]]",
    about: "How a log-file source reads a line: a regular expression (the regex crate: linear time, bounded size) with named groups.",
    keys: &[
        Key {
            name: "name",
            value: "\"NAME\"",
            default: "formatN (its place, from 1)",
            about: "Names the format in logs and in `knockerd check`.",
        },
        Key {
            name: "required",
            value: "'REGEX'",
            default: "required",
            about: "A cheap test: only lines it matches are matched against the pattern.",
        },
        Key {
            name: "pattern",
            value: "'REGEX'",
            default: "required",
            about: "Named groups `src`, `dst`, `proto` and `dport` pick the knock out of the line; `sport`, `flags`, `id`, `seq`, `ack` and `window` are read when present.",
        },
    ],
};

const CLIENTS: Section = Section {
    table: CLIENT_TABLE,
    title: "The clients file: [client.NAME]",
    about: "The file `[daemon] clients` names holds one table per client of `spa` and `syn` doors, with public keys only: a copy of it lets nobody knock. `knockerd enroll` adds one and prints the client's profile; deleting the table and reloading revokes the client.",
    keys: &[
        Key {
            name: "public_key",
            value: "\"BASE64\"",
            default: "required",
            about: "The client's X25519 public key, as `knocker keygen --identity` prints it.",
        },
        Key {
            name: "doors",
            value: "[\"DOOR\", ...]",
            default: "every spa and syn door",
            about: "The spa and syn doors the client may knock on (not empty: remove the key for every door).",
        },
        Key {
            name: "open",
            value: "[\"proto/port\", ...]",
            default: "the door's",
            about: "Narrow what this client may open.",
        },
        Key {
            name: "open_for",
            value: "duration",
            default: "the door's",
            about: "Cap how long this client's grants last.",
        },
    ],
};

const EXAMPLE: &str = r#"[daemon]
trusted = ["192.0.2.0/24"]          # never dropped: keep one while you set knocker up

[door.ssh]                          # choose your own knocks
sequence = ["7113", "9431:udp", "8222", "7719"]
open = ["tcp/22"]
open_for = "30s"
connections = 1

[door.ssh-spa]
kind = "spa"
port = 62201
open = ["tcp/22"]
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The keys serde names when a table has one it does not know.
    fn parser_keys(error: &str) -> Vec<String> {
        let list = error
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("no list of keys in {error:?}"))
            .1;
        let list = list.split(" (").next().unwrap_or(list);
        let mut keys: Vec<String> = list
            .split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .collect();
        keys.sort();
        keys
    }

    fn unknown_key_error(text: &str) -> String {
        match super::super::parse(Path::new("knockerd.toml"), text) {
            Ok(_) => panic!("an unknown key was accepted in {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_table_of_the_reference_documents_exactly_the_keys_the_parser_accepts() {
        let cases = [
            (DAEMON_TABLE, "[daemon]\nzz_unknown = 1\n"),
            (DOOR_TABLE, "[door.a]\nzz_unknown = 1\n"),
            (COMMAND_TABLE, "[[door.a.command]]\nzz_unknown = 1\n"),
            (SOURCE_TABLE, "[source]\nzz_unknown = 1\n"),
            (
                FORMAT_TABLE,
                "[source]\nkind = \"log-file\"\n[[source.format]]\nzz_unknown = 1\n",
            ),
        ];
        for (table, text) in cases {
            let error = unknown_key_error(text);
            assert!(error.contains("knockerd.toml(5)"), "no pointer: {error}");
            let documented: Vec<String> = KNOCKERD_TOML
                .keys_of(table)
                .into_iter()
                .map(String::from)
                .collect();
            assert_eq!(parser_keys(&error), documented, "{table}");
        }
        let dir = std::env::temp_dir().join(format!("knocker-reference-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("clients.toml");
        std::fs::write(&file, "[client.a]\nzz_unknown = 1\n").expect("write");
        let error = match super::super::clients::load(&file) {
            Ok(_) => panic!("an unknown client key was accepted"),
            Err(e) => e.to_string(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        let documented: Vec<String> = KNOCKERD_TOML
            .keys_of(CLIENT_TABLE)
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(parser_keys(&error), documented, "{CLIENT_TABLE}");
        // and the reference has no table the test forgot
        assert_eq!(
            KNOCKERD_TOML.tables(),
            vec![
                DAEMON_TABLE,
                DOOR_TABLE,
                COMMAND_TABLE,
                SOURCE_TABLE,
                FORMAT_TABLE,
                CLIENT_TABLE
            ]
        );
    }

    #[test]
    fn the_example_is_a_configuration_that_check_accepts_but_for_its_missing_server_key() {
        // the spa door needs the server's key, which a test machine has not: everything before
        // it must be fine, so the one complaint is about server_key
        let error = match super::super::parse(Path::new("knockerd.toml"), EXAMPLE) {
            Ok(_) => return,
            Err(e) => e.to_string(),
        };
        assert!(error.contains("server_key"), "{error}");
        let without_spa = EXAMPLE.split("[door.ssh-spa]").next().expect("text");
        if let Err(e) = super::super::parse(Path::new("knockerd.toml"), without_spa) {
            panic!("the example's sequence door is refused: {e}");
        }
    }

    #[test]
    fn defaults_the_reference_states_are_the_codes_own() {
        let key = |table: &str, name: &str| {
            KNOCKERD_TOML
                .sections
                .iter()
                .filter(|s| s.table == table)
                .flat_map(|s| s.keys.iter())
                .find(|k| k.name == name)
                .unwrap_or_else(|| panic!("{name} is not in {table}"))
                .default
        };
        use crate::config::*;
        assert_eq!(
            key(DAEMON_TABLE, "nflog_group"),
            DEFAULT_NFLOG_GROUP.to_string()
        );
        assert_eq!(
            key(DAEMON_TABLE, "max_tracked"),
            knocker_engine::DEFAULT_MAX_TRACKED.to_string()
        );
        assert_eq!(
            key(DAEMON_TABLE, "grant_mark"),
            format!("{DEFAULT_GRANT_MARK:#x}")
        );
        assert_eq!(
            key(DAEMON_TABLE, "state_dir"),
            format!("{DEFAULT_STATE_DIR:?}")
        );
        assert_eq!(
            key(DAEMON_TABLE, "server_key"),
            format!("{DEFAULT_SERVER_KEY:?}")
        );
        assert_eq!(key(DAEMON_TABLE, "clients"), format!("{DEFAULT_CLIENTS:?}"));
        assert_eq!(
            key(DOOR_TABLE, "open_for"),
            format!("\"{}s\"", DEFAULT_OPEN_FOR.as_secs())
        );
        assert_eq!(
            key(DOOR_TABLE, "window"),
            format!("\"{}s\"", DEFAULT_WINDOW.as_secs())
        );
        assert_eq!(
            key(DOOR_TABLE, "error_window"),
            knocker_wire::knockknock::DEFAULT_WINDOW.to_string()
        );
        // the first section that has the key: fwknop's comes before spa's and syn's
        assert_eq!(
            key(DOOR_TABLE, "port"),
            knocker_wire::fwknop::DEFAULT_PORT.to_string()
        );
        assert_eq!(
            key(DAEMON_TABLE, "worker_user"),
            format!("{:?}", crate::privsep::DEFAULT_USER)
        );
    }
}
