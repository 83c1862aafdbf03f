//! knockerd's own nftables table, `inet knocker`, and what knockerd learns from the rest of the
//! ruleset.
//!
//! The table is written as nft text and loaded with one `nft -f -`, which the kernel applies as
//! one transaction: either all of it or none. It is *updated* rather than deleted and recreated,
//! so the allow sets, and with them every open grant, survive a restart or reload. knockerd never
//! touches any other table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use knocker_engine::Service;

use crate::config::{Config, TABLE};
use crate::frontends::{self, items};

pub const SET4: &str = "allow4";
pub const SET6: &str = "allow6";
/// Sets of sources that knocker's protection never drops (`[daemon] trusted`).
pub const TRUSTED4: &str = "trusted4";
pub const TRUSTED6: &str = "trusted6";
pub const CHAIN: &str = "input";
/// Our input chain's priority: before the usual `filter` (0) chains, so that the grant mark is
/// set before an admin's own chain looks at the packet.
pub const PRIORITY: i32 = -10;
/// Bytes of each logged knock packet copied to knockerd: IP and TCP/UDP headers with options.
pub const SNAPLEN: u16 = 128;

/// What knockerd's table must contain for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub nflog_group: u16,
    pub knock: Vec<Service>,
    /// Spans of knock ports (rotating doors), as (protocol, first, last).
    pub knock_ranges: Vec<(knocker_engine::Proto, u16, u16)>,
    pub protect: Vec<Service>,
    pub grant_mark: u32,
    /// Only knocks arriving on this interface are logged.
    pub interface: Option<String>,
    /// UDP ports of single-packet-authorization doors: logged whole, with the SPA prefix.
    pub spa_ports: Vec<u16>,
    /// TCP ports of stealth SYN doors: SYNs logged with their headers, with the SYN prefix.
    pub syn_ports: Vec<u16>,
    /// Sources accepted before the protected services are dropped, without overlaps (an
    /// interval set refuses them).
    pub trusted: Vec<crate::config::Net>,
    /// Packets with all these mark bits are accepted (0: no such rule).
    pub accept_mark: u32,
    /// Drop knock packets once logged ([`Config::drop_knocks`]); otherwise every packet to a knock
    /// port is logged, established connections' too, and goes on to the admin's firewall.
    pub drop_knocks: bool,
    /// Connection slot sets per address family: the most `connections` any door counts (0:
    /// none, and no slot sets or rules).
    pub connection_slots: u8,
    /// How knock ports are logged: to NFLOG, to the kernel log, or not at all.
    pub knock_log: KnockLog,
}

/// Where knockerd's table logs knocks to, following the configured source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnockLog {
    /// `log group N`: the NFLOG source.
    Nflog,
    /// `log prefix "knocker: "`: the kernel-log source, which reads the kernel's log lines.
    Kernel,
    /// Not logged: a packet socket sees knocks by itself (`[source] kind = "packet"`); the knock
    /// rules only drop them (with `drop_knocks`).
    Packet,
    /// No rule for knock ports: a log-file source sees knocks in someone else's log (a router's,
    /// or the admin's own LOG rules, which a drop here would keep from seeing them).
    Off,
}

impl KnockLog {
    pub fn for_source(source: &crate::config::SourceSpec) -> KnockLog {
        match source {
            crate::config::SourceSpec::Nflog => KnockLog::Nflog,
            crate::config::SourceSpec::KernelLog { .. } => KnockLog::Kernel,
            crate::config::SourceSpec::LogFile { .. } => KnockLog::Off,
            crate::config::SourceSpec::Packet { .. } => KnockLog::Packet,
        }
    }
}

impl TableSpec {
    pub fn from_config(c: &Config) -> Self {
        TableSpec {
            nflog_group: c.nflog_group,
            knock: c.knock_services(),
            knock_ranges: c.knock_ranges(),
            protect: c.protected(),
            grant_mark: c.grant_mark,
            interface: c.interface.clone(),
            spa_ports: c.spa_ports(),
            syn_ports: c.syn_ports(),
            trusted: crate::config::Net::minimal(&c.trusted),
            accept_mark: c.accept_mark,
            drop_knocks: c.drop_knocks,
            connection_slots: c
                .doors
                .iter()
                .filter_map(|d| d.connections)
                .map(|n| n.get())
                .max()
                .unwrap_or(0),
            knock_log: KnockLog::for_source(&c.source),
        }
    }
}

/// The slot set `k` (1-based) of an address family, for grants that count connections.
pub fn slot_set(v4: bool, k: u8) -> String {
    format!("conn{}_{k}", if v4 { 4 } else { 6 })
}

fn service_set(services: &[Service]) -> String {
    service_and_range_set(services, &[])
}

fn service_and_range_set(
    services: &[Service],
    ranges: &[(knocker_engine::Proto, u16, u16)],
) -> String {
    let items: Vec<String> = services
        .iter()
        .map(|s| format!("{} . {}", s.proto, s.port))
        .chain(ranges.iter().map(|(p, a, b)| format!("{p} . {a}-{b}")))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// The matches of ICMP steps (`icmp/N`): echo requests whose ICMP message is 8 + N bytes, read
/// from the IP header's length as the NFLOG parser reads it (`nflog::echo_request_size`):
/// IPv4 without options (total length 20 + 8 + N), IPv6 with ICMPv6 as the first next header
/// (payload length 8 + N). Every other echo request, an ordinary ping, is left alone.
fn echo_rules(echoes: &[Service]) -> Vec<String> {
    if echoes.is_empty() {
        return Vec::new();
    }
    let lengths = |extra: u32| {
        let l: Vec<String> = echoes
            .iter()
            .map(|e| (u32::from(e.port) + 8 + extra).to_string())
            .collect();
        format!("{{ {} }}", l.join(", "))
    };
    vec![
        format!(
            "ip hdrlength 5 ip length {} icmp type echo-request icmp code 0",
            lengths(20)
        ),
        format!(
            "ip6 nexthdr ipv6-icmp ip6 length {} icmpv6 type echo-request icmpv6 code 0",
            lengths(0)
        ),
    ]
}

/// The admin's one line for a default-drop chain of their own (nft syntax).
pub fn mark_accept_rule(mark: u32) -> String {
    format!("meta mark & {mark:#010x} == {mark:#010x} accept")
}

/// The NFLOG statement of a knock rule (with a space before it), or nothing when knocks are
/// not logged ([`TableSpec::log_knocks`]). No `queue-threshold`: the kernel takes the smaller
/// of a rule's and the instance's, and the instance's is knockerd's to set (1, every packet at
/// once; more while a flood lasts, `nflog::batching_request`).
fn log_statement(spec: &TableSpec, prefix: Option<&str>, snaplen: u16) -> String {
    if spec.knock_log != KnockLog::Nflog {
        return String::new();
    }
    let prefix = prefix
        .map(|p| format!(" prefix \"{p}\""))
        .unwrap_or_default();
    format!(" log{prefix} group {} snaplen {snaplen}", spec.nflog_group)
}

/// The kernel-log source's log statement: its prefix, and the TCP sequence and
/// acknowledgement numbers (the kernel prints them only with `flags tcp sequence`), which
/// knockknock's doors read with the ID and window the kernel always prints.
fn kernel_log_statement() -> String {
    format!(
        " log prefix \"{}\" flags tcp sequence",
        crate::source::kernel_log::OWN_PREFIX
    )
}

/// The nft script that creates or updates knockerd's table in one transaction, keeping the
/// elements of existing allow sets.
pub fn render(spec: &TableSpec) -> String {
    let mut s = String::new();
    let t = format!("inet {TABLE}");
    let _ = writeln!(s, "add table {t}");
    for (set, addr) in [(SET4, "ipv4_addr"), (SET6, "ipv6_addr")] {
        let _ = writeln!(
            s,
            "add set {t} {set} {{ type {addr} . inet_proto . inet_service; flags timeout; }}"
        );
    }
    // a grant of N connections is an element in slots 1..=N; each new connection takes the
    // lowest slot that holds it, and the packet path deletes it (`dynamic`)
    for k in 1..=spec.connection_slots {
        for (v4, addr) in [(true, "ipv4_addr"), (false, "ipv6_addr")] {
            let _ = writeln!(
                s,
                "add set {t} {} {{ type {addr} . inet_proto . inet_service; flags dynamic, timeout; }}",
                slot_set(v4, k)
            );
        }
    }
    for (set, addr, v4) in [
        (TRUSTED4, "ipv4_addr", true),
        (TRUSTED6, "ipv6_addr", false),
    ] {
        let _ = writeln!(s, "add set {t} {set} {{ type {addr}; flags interval; }}");
        let _ = writeln!(s, "flush set {t} {set}");
        let nets: Vec<String> = spec
            .trusted
            .iter()
            .filter(|n| n.addr.is_ipv4() == v4)
            .map(|n| n.to_string())
            .collect();
        if !nets.is_empty() {
            let _ = writeln!(s, "add element {t} {set} {{ {} }}", nets.join(", "));
        }
    }
    let _ = writeln!(
        s,
        "add chain {t} {CHAIN} {{ type filter hook input priority {PRIORITY}; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {t} {CHAIN}");
    let rule = |s: &mut String, body: &str| {
        let _ = writeln!(s, "add rule {t} {CHAIN} {body}");
    };
    rule(&mut s, "iif \"lo\" accept");
    let (echoes, ports): (Vec<Service>, Vec<Service>) = spec
        .knock
        .iter()
        .partition(|k| k.proto == knocker_engine::Proto::Icmp);
    let knocks = |s: &mut String, verdict: &str| {
        let log = match spec.knock_log {
            KnockLog::Nflog => format!(" log group {} snaplen {SNAPLEN}", spec.nflog_group),
            KnockLog::Kernel => kernel_log_statement(),
            // a packet socket sees knocks by itself: the rule only drops, if it drops
            KnockLog::Packet if !verdict.is_empty() => String::new(),
            KnockLog::Packet | KnockLog::Off => return,
        };
        let iif = spec
            .interface
            .as_ref()
            .map(|i| format!("iifname \"{i}\" "))
            .unwrap_or_default();
        if !ports.is_empty() || !spec.knock_ranges.is_empty() {
            rule(
                s,
                &format!(
                    "{iif}meta l4proto . th dport {}{log}{verdict}",
                    service_and_range_set(&ports, &spec.knock_ranges),
                ),
            );
        }
        for rule_body in echo_rules(&echoes) {
            rule(s, &format!("{iif}{rule_body}{log}{verdict}"));
        }
    };
    // knockd sees every packet to a knock port, a connection's ACKs too (`TCPFlags = ack`), and
    // leaves the verdict to the firewall: so must a knockd.conf here, before established
    // connections are accepted
    if !spec.drop_knocks {
        knocks(&mut s, "");
    }
    rule(&mut s, "ct state established,related accept");
    let mark = if spec.grant_mark != 0 {
        format!("meta mark set meta mark | {:#010x} ", spec.grant_mark)
    } else {
        String::new()
    };
    rule(
        &mut s,
        &format!("ip saddr . meta l4proto . th dport @{SET4} {mark}accept"),
    );
    rule(
        &mut s,
        &format!("ip6 saddr . meta l4proto . th dport @{SET6} {mark}accept"),
    );
    connection_rules(&mut s, spec, &mark);
    if spec.drop_knocks {
        knocks(&mut s, " drop");
    }
    if !spec.spa_ports.is_empty() {
        let ports: Vec<Service> = spec.spa_ports.iter().map(|p| Service::udp(*p)).collect();
        rule(
            &mut s,
            &format!(
                "{}meta l4proto . th dport {}{} drop",
                spec.interface
                    .as_ref()
                    .map(|i| format!("iifname \"{i}\" "))
                    .unwrap_or_default(),
                service_set(&ports),
                log_statement(
                    spec,
                    Some(crate::nflog::SPA_PREFIX),
                    crate::nflog::SPA_SNAPLEN
                ),
            ),
        );
    }
    if !spec.syn_ports.is_empty() {
        let ports: Vec<Service> = spec.syn_ports.iter().map(|p| Service::tcp(*p)).collect();
        let iif = spec
            .interface
            .as_ref()
            .map(|i| format!("iifname \"{i}\" "))
            .unwrap_or_default();
        // a SYN carries the knock; anything else to the port is dropped unlogged. Under the
        // kernel log these are knockknock's doors (a line source refuses knocker's own SYN
        // doors), which the kernel-log source tells apart by port.
        let syn_log = match spec.knock_log {
            KnockLog::Nflog => Some(log_statement(spec, Some(crate::nflog::SYN_PREFIX), SNAPLEN)),
            KnockLog::Kernel => Some(kernel_log_statement()),
            KnockLog::Packet | KnockLog::Off => None,
        };
        if let Some(log) = syn_log {
            rule(
                &mut s,
                &format!(
                    "{iif}meta l4proto . th dport {} tcp flags & (syn | ack) == syn{log} drop",
                    service_set(&ports),
                ),
            );
        }
        rule(
            &mut s,
            &format!("meta l4proto . th dport {} drop", service_set(&ports)),
        );
    }
    // the admin's way in, before the protected services are dropped: trusted sources and
    // packets the admin's own chain marked. After the knock rules, so that a knock from them
    // still counts (an admin can test a door from a trusted network).
    rule(&mut s, &format!("ip saddr @{TRUSTED4} accept"));
    rule(&mut s, &format!("ip6 saddr @{TRUSTED6} accept"));
    if spec.accept_mark != 0 {
        rule(&mut s, &mark_accept_rule(spec.accept_mark));
    }
    if !spec.protect.is_empty() {
        rule(
            &mut s,
            &format!(
                "meta l4proto . th dport {} drop",
                service_set(&spec.protect)
            ),
        );
    }
    s
}

/// The rules of grants that count connections, after the allow sets' (an unlimited grant of the
/// same service wins and spends no slot).
fn connection_rules(s: &mut String, spec: &TableSpec, mark: &str) {
    if spec.connection_slots == 0 {
        return;
    }
    let t = format!("inet {TABLE}");
    // A flow whose first packet was accepted is in conntrack's table (confirmed) but stays
    // `new` until the server answers: a retransmitted SYN, a second datagram. It was admitted
    // once and spent its slot then; it must not need another.
    if !spec.protect.is_empty() {
        let _ = writeln!(
            s,
            "add rule {t} {CHAIN} ct state new ct status confirmed meta l4proto . th dport {} {mark}accept",
            service_set(&spec.protect)
        );
    }
    // The first packet of a new flow takes one slot: the kernel deletes the element in the same
    // rule that accepts, so the grant closes behind the last connection it admits.
    for k in 1..=spec.connection_slots {
        for (v4, ip) in [(true, "ip"), (false, "ip6")] {
            let set = slot_set(v4, k);
            let key = format!("{ip} saddr . meta l4proto . th dport");
            let _ = writeln!(
                s,
                "add rule {t} {CHAIN} ct state new {key} @{set} delete @{set} {{ {key} }} {mark}accept"
            );
        }
    }
}

/// What went wrong running `nft` or reading what it printed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("the nft program is not installed (Debian: apt-get install nftables)")]
    NotInstalled,
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot write to nft: {0}")]
    Write(#[source] std::io::Error),
    #[error("nft failed: {0}")]
    Wait(#[source] std::io::Error),
    /// nft ran and refused: the command and what it said on stderr.
    #[error("nft {command}: {stderr}")]
    Refused { command: String, stderr: String },
    #[error("cannot read nft's JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl NftError {
    /// Whether nft refused because the object it was asked about does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, NftError::Refused { stderr, .. } if stderr.contains("No such file or directory"))
    }
}

/// Runs `nft` with a script on stdin (`-f -`) or with arguments, returning stdout.
pub fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NftError::NotInstalled
        } else {
            NftError::Spawn(e)
        }
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(NftError::Write)?;
    }
    let out = child.wait_with_output().map_err(NftError::Wait)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NftError::Refused {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Creates or updates knockerd's table atomically.
pub fn apply(spec: &TableSpec) -> Result<(), NftError> {
    nft(&["-f", "-"], Some(&render(spec))).map(|_| ())
}

/// Whether knockerd's table exists.
pub fn table_exists() -> Result<bool, NftError> {
    let out = nft(&["-j", "list", "tables", "inet"], None)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(NftError::Json)?;
    let found = items(&v, "table").any(|t| t["name"] == TABLE && t["family"] == "inet");
    Ok(found)
}

/// Removes knockerd's table: every grant ends, and knock and protected ports are no longer
/// dropped by knockerd. Returns false when there was no table.
pub fn teardown() -> Result<bool, NftError> {
    if !table_exists()? {
        return Ok(false);
    }
    nft(&["delete", "table", "inet", TABLE], None).map(|_| true)
}

/// Withdraws every grant at once, those that count connections too.
pub fn flush_grants(spec: &TableSpec) -> Result<(), NftError> {
    let mut script = format!("flush set inet {TABLE} {SET4}\nflush set inet {TABLE} {SET6}\n");
    for k in 1..=spec.connection_slots {
        for v4 in [true, false] {
            let _ = writeln!(script, "flush set inet {TABLE} {}", slot_set(v4, k));
        }
    }
    nft(&["-f", "-"], Some(&script)).map(|_| ())
}

/// The directory under the state directory where knockerd keeps its table as an nft file, for
/// `/etc/nftables.conf` to include: a firewall reload then recreates knocker's table in the same
/// transaction as everything else, with no moment in which protected ports are open.
pub const INCLUDE_DIR: &str = "nftables";
/// The file in [`INCLUDE_DIR`], rewritten whenever the configuration changes.
pub const INCLUDE_FILE: &str = "knocker.nft";

/// The path of the include file for a state directory.
pub fn include_path(state_dir: &Path) -> PathBuf {
    state_dir.join(INCLUDE_DIR).join(INCLUDE_FILE)
}

/// The line the admin adds to `/etc/nftables.conf`, after its `flush ruleset`. A glob, so that
/// nft loads the file when it is there and does not fail while it is not (before knockerd's
/// first start, after `knockerd teardown`).
pub fn include_line(state_dir: &Path) -> String {
    format!(
        "include \"{}/*.nft\"",
        state_dir.join(INCLUDE_DIR).display()
    )
}

/// Writes the include file: the same script knockerd loads itself, so that a reload of the
/// admin's ruleset recreates the table, its sets (empty: knockerd puts the live grants back at
/// once) and its protection.
pub fn write_include(state_dir: &Path, spec: &TableSpec) -> std::io::Result<PathBuf> {
    let dir = state_dir.join(INCLUDE_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = include_path(state_dir);
    let text = format!(
        "# knockerd's table inet {TABLE}, written by knockerd whenever its configuration changes.\n\
         # Include it from /etc/nftables.conf, after `flush ruleset`:\n\
         #   {}\n\
         # so that reloading the firewall keeps knocker's protection, atomically. Do not edit.\n{}",
        include_line(state_dir),
        render(spec)
    );
    knocker_wire::files::replace_atomically(&path, text.as_bytes())?;
    Ok(path)
}

/// Removes the include file (teardown): a firewall reload then no longer recreates the table.
pub fn remove_include(state_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(include_path(state_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How the live table compares with what knockerd loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableHealth {
    /// As rendered: the chain with its hook, priority, policy and number of rules, every set.
    Intact,
    /// There is no table inet knocker.
    Missing,
    /// Something differs (said how).
    Differs(String),
}

/// Looks at the live table (`nft -j list table inet knocker`) against `spec`.
pub fn verify(spec: &TableSpec) -> Result<TableHealth, NftError> {
    match nft(&["-j", "list", "table", "inet", TABLE], None) {
        Ok(json) => health_of(&json, spec),
        Err(e) if e.is_missing() => Ok(TableHealth::Missing),
        Err(e) => Err(e),
    }
}

/// [`verify`] on nft's JSON: the sets and chains the rendered script adds must be there, each
/// chain with as many rules as the script adds, and the input chain on its hook and priority
/// with policy accept.
pub fn health_of(json: &str, spec: &TableSpec) -> Result<TableHealth, NftError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(NftError::Json)?;
    let ours = |o: &&serde_json::Value| o["family"] == "inet" && o["table"] == TABLE;
    if !items(&v, "table").any(|t| t["family"] == "inet" && t["name"] == TABLE) {
        return Ok(TableHealth::Missing);
    }
    let script = render(spec);
    let mut want_rules: std::collections::BTreeMap<&str, usize> = Default::default();
    for line in script.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.nth(2), words.next()) {
            (Some("add"), Some("set"), Some(name), _)
                if !items(&v, "set").filter(ours).any(|s| s["name"] == name) =>
            {
                return Ok(TableHealth::Differs(format!("set {name} is missing")));
            }
            (Some("add"), Some("chain"), Some(name), _) => {
                want_rules.entry(name).or_insert(0);
            }
            (Some("add"), Some("rule"), Some(chain), _) => {
                *want_rules.entry(chain).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    for (chain, want) in want_rules {
        let Some(c) = items(&v, "chain").filter(ours).find(|c| c["name"] == chain) else {
            return Ok(TableHealth::Differs(format!("chain {chain} is missing")));
        };
        if chain == CHAIN
            && (c["hook"] != "input" || c["prio"] != PRIORITY || c["policy"] != "accept")
        {
            return Ok(TableHealth::Differs(format!(
                "chain {chain} is not on hook input at priority {PRIORITY} with policy accept"
            )));
        }
        let have = items(&v, "rule")
            .filter(ours)
            .filter(|r| r["chain"] == chain)
            .count();
        if have != want {
            return Ok(TableHealth::Differs(format!(
                "chain {chain} has {have} rules instead of {want}"
            )));
        }
    }
    Ok(TableHealth::Intact)
}

/// An open grant as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    pub to: String,
    pub service: String,
    pub timeout_s: u64,
    pub expires_s: u64,
    /// For a grant that counts connections: how many new connections it still admits (the
    /// slot sets that hold it).
    pub connections_left: Option<u8>,
}

impl LiveGrant {
    /// The address, the service and the time left, as the gatekeeper takes them over; `None` for
    /// an element that does not read as one (never from knockerd's own sets).
    pub fn parsed(&self) -> Option<(std::net::IpAddr, Service, std::time::Duration)> {
        Some((
            self.to.parse().ok()?,
            self.service.parse().ok()?,
            std::time::Duration::from_secs(self.expires_s),
        ))
    }
}

/// Lists the elements of knockerd's allow sets.
pub fn live_grants() -> Result<Vec<LiveGrant>, NftError> {
    let mut out = Vec::new();
    for set in [SET4, SET6] {
        let text = nft(&["-j", "list", "set", "inet", TABLE, set], None)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(NftError::Json)?;
        for s in items(&v, "set") {
            for e in s["elem"].as_array().into_iter().flatten() {
                let elem = &e["elem"];
                let concat = &elem["val"]["concat"];
                out.push(LiveGrant {
                    to: concat[0].as_str().unwrap_or("?").to_string(),
                    service: format!("{}/{}", concat[1].as_str().unwrap_or("?"), concat[2]),
                    timeout_s: elem["timeout"].as_u64().unwrap_or(0),
                    expires_s: elem["expires"].as_u64().unwrap_or(0),
                    connections_left: None,
                });
            }
        }
    }
    Ok(out)
}

/// Lists the grants that count connections, one per address and service, with how many
/// connections each still admits (its slot sets).
pub fn live_counted_grants() -> Result<Vec<LiveGrant>, NftError> {
    match nft(&["-j", "list", "table", "inet", TABLE], None) {
        Ok(json) => counted_grants_of(&json),
        Err(e) if e.is_missing() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// [`live_counted_grants`] on nft's JSON for the table.
pub fn counted_grants_of(json: &str) -> Result<Vec<LiveGrant>, NftError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(NftError::Json)?;
    let mut out: Vec<LiveGrant> = Vec::new();
    let slot = |name: &str| {
        (1..=crate::config::MAX_CONNECTIONS)
            .any(|k| name == slot_set(true, k) || name == slot_set(false, k))
    };
    for s in
        items(&v, "set").filter(|s| s["table"] == TABLE && s["name"].as_str().is_some_and(slot))
    {
        for e in s["elem"].as_array().into_iter().flatten() {
            let elem = &e["elem"];
            let concat = &elem["val"]["concat"];
            let to = concat[0].as_str().unwrap_or("?").to_string();
            let service = format!("{}/{}", concat[1].as_str().unwrap_or("?"), concat[2]);
            let (timeout_s, expires_s) = (
                elem["timeout"].as_u64().unwrap_or(0),
                elem["expires"].as_u64().unwrap_or(0),
            );
            match out.iter_mut().find(|g| g.to == to && g.service == service) {
                Some(g) => {
                    g.connections_left = g.connections_left.map(|n| n.saturating_add(1));
                    g.expires_s = g.expires_s.max(expires_s);
                    g.timeout_s = g.timeout_s.max(timeout_s);
                }
                None => out.push(LiveGrant {
                    to,
                    service,
                    timeout_s,
                    expires_s,
                    connections_left: Some(1),
                }),
            }
        }
    }
    Ok(out)
}

/// Looks at the whole live ruleset (`nft -j list ruleset`) for chains outside knockerd's table
/// that would drop a granted packet anyway, and says how to fix each.
///
/// The analysis is deliberately simple and errs towards warning: a base chain on the input hook
/// (families ip, ip6, inet) whose policy is drop and which has no rule matching the grant mark
/// with an accept verdict drops granted packets; so does such a chain that runs before
/// knockerd's (lower priority), because the mark is not set yet. The mark rule counts in the
/// chain itself or in any chain of its table it reaches through `jump` and `goto` (ufw's
/// `INPUT` reaches `ufw-before-input`, where ufw's before.rules put it); a chain that is ufw's
/// gets ufw's step ([`frontends::ufw_step`]) rather than a line to add by hand, which ufw
/// would remove at its next reload. Rules of iptables-legacy are invisible to nft and not
/// checked.
pub fn drop_warnings(ruleset_json: &str, grant_mark: u32) -> Result<Vec<String>, NftError> {
    let v: serde_json::Value = serde_json::from_str(ruleset_json).map_err(NftError::Json)?;
    let rules: Vec<&serde_json::Value> = items(&v, "rule").collect();
    let mut warnings = Vec::new();
    for chain in items(&v, "chain") {
        let family = chain["family"].as_str().unwrap_or("");
        let table = chain["table"].as_str().unwrap_or("");
        let name = chain["name"].as_str().unwrap_or("");
        if chain["hook"] != "input" || !matches!(family, "ip" | "ip6" | "inet") {
            continue;
        }
        if family == "inet" && table == TABLE {
            continue;
        }
        if chain["policy"] != "drop" {
            continue;
        }
        let prio = chain["prio"].as_i64().unwrap_or(0);
        let what =
            format!("chain {family} {table} {name} (hook input, priority {prio}, policy drop)");
        let in_table: Vec<&serde_json::Value> = rules
            .iter()
            .copied()
            .filter(|r| r["family"] == family && r["table"] == table)
            .collect();
        let reached = reached_chains(&in_table, name);
        let ufw = frontends::ufw_family(reached.iter().copied());
        if grant_mark == 0 {
            let mark = crate::config::DEFAULT_GRANT_MARK;
            let step = match ufw {
                Some(v6) => frontends::ufw_step(v6, mark),
                None => format!("add `{}` to that chain", mark_accept_rule(mark)),
            };
            warnings.push(format!(
                "{what} drops granted packets, and grant_mark = 0 gives it nothing to accept them by: set grant_mark = {mark:#010x} in [daemon] and {step}"
            ));
            continue;
        }
        if prio < i64::from(PRIORITY) {
            warnings.push(format!(
                "{what} runs before knockerd's chain (priority {PRIORITY}), so granted packets are not marked yet when it drops them: give it a priority above {PRIORITY}"
            ));
            continue;
        }
        let accepts_mark = in_table.iter().any(|r| {
            r["chain"].as_str().is_some_and(|c| reached.contains(&c))
                && rule_accepts_mark(&r["expr"], grant_mark)
        });
        if accepts_mark {
            continue;
        }
        match ufw {
            Some(v6) => warnings.push(format!(
                "{what} is ufw's and would drop granted packets: {}",
                frontends::ufw_step(v6, grant_mark)
            )),
            None => warnings.push(format!(
                "{what} would drop granted packets: add `{}` to it, before its drop rules (iptables: -A INPUT -m mark --mark {grant_mark:#x}/{grant_mark:#x} -j ACCEPT)",
                mark_accept_rule(grant_mark)
            )),
        }
    }
    Ok(warnings)
}

/// The chains a packet can go through from `start`: itself and, transitively, those its rules
/// (`rules`, all of one table) `jump` or `goto` to. Loops in hostile input end: each chain is
/// visited once.
fn reached_chains<'a>(rules: &[&'a serde_json::Value], start: &'a str) -> Vec<&'a str> {
    let mut reached = vec![start];
    let mut i = 0;
    while let Some(chain) = reached.get(i).copied() {
        i += 1;
        for r in rules.iter().filter(|r| r["chain"] == chain) {
            for e in r["expr"].as_array().into_iter().flatten() {
                let target = ["jump", "goto"]
                    .iter()
                    .find_map(|k| e[*k]["target"].as_str());
                if let Some(t) = target.filter(|t| !reached.contains(t)) {
                    reached.push(t);
                }
            }
        }
    }
    reached
}

/// Whether a rule's expressions test the packet mark for our bits and accept.
fn rule_accepts_mark(expr: &serde_json::Value, mark: u32) -> bool {
    let Some(list) = expr.as_array() else {
        return false;
    };
    let accepts = list.iter().any(|e| e.get("accept").is_some());
    let tests_mark = list.iter().any(|e| {
        let m = &e["match"];
        let text = m["left"].to_string();
        text.contains("\"mark\"") && m["right"].as_u64().is_some_and(|r| r as u32 & mark == mark)
    });
    accepts && tests_mark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TableSpec {
        TableSpec {
            nflog_group: 4100,
            knock: vec![Service::tcp(7000), Service::udp(9000)],
            knock_ranges: vec![(knocker_engine::Proto::Tcp, 40000, 40999)],
            protect: vec![Service::tcp(22)],
            grant_mark: DEFAULT,
            interface: None,
            spa_ports: vec![62201],
            syn_ports: vec![443],
            trusted: vec![
                "192.0.2.0/24".parse().expect("net"),
                "2001:db8::/32".parse().expect("net"),
            ],
            accept_mark: 0x4b41_0000,
            drop_knocks: true,
            connection_slots: 0,
            knock_log: KnockLog::Nflog,
        }
    }
    const DEFAULT: u32 = crate::config::DEFAULT_GRANT_MARK;

    #[test]
    fn icmp_steps_log_and_drop_echo_requests_of_their_sizes_only() {
        let mut with_echo = spec();
        with_echo.knock.push("icmp/100".parse().expect("step"));
        with_echo.knock.push("icmp/1000".parse().expect("step"));
        with_echo.interface = Some("eth0".into());
        let r = render(&with_echo);
        assert!(r.contains("add rule inet knocker input iifname \"eth0\" meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth0\" ip hdrlength 5 ip length { 128, 1028 } icmp type echo-request icmp code 0 log group 4100 snaplen 128 drop\n"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth0\" ip6 nexthdr ipv6-icmp ip6 length { 108, 1008 } icmpv6 type echo-request icmpv6 code 0 log group 4100 snaplen 128 drop\n"), "{r}");
        assert!(!r.contains("icmp . "), "never in a port set: {r}");
        // only echo steps: no port rule at all
        let mut only = with_echo.clone();
        only.knock
            .retain(|k| k.proto == knocker_engine::Proto::Icmp);
        only.knock_ranges.clear();
        assert!(!render(&only).contains("th dport { tcp . 7000"));
        assert_eq!(render(&only).matches("echo-request").count(), 2);
        assert_eq!(render(&spec()).matches("echo-request").count(), 0);
    }

    #[test]
    fn render_is_one_updating_transaction() {
        let r = render(&spec());
        assert!(r.starts_with("add table inet knocker\n"));
        assert!(
            !r.contains("delete table"),
            "replacing the table would drop open grants"
        );
        assert!(r.contains("flush chain inet knocker input"));
        assert!(r.contains("meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100 snaplen 128 drop"));
        assert!(r.contains("meta l4proto . th dport { tcp . 22 } drop"));
        assert!(r.contains("meta l4proto . th dport { udp . 62201 } log prefix \"knocker-spa\" group 4100 snaplen 1600 drop"));
        assert!(r.contains("meta l4proto . th dport { tcp . 443 } tcp flags & (syn | ack) == syn log prefix \"knocker-syn\" group 4100 snaplen 128 drop"));
        assert!(r.contains("meta l4proto . th dport { tcp . 443 } drop"));
        // grants are accepted before knock and protected ports are dropped
        let grant = r.find("@allow4").expect("grant rule");
        assert!(grant < r.find("log group").expect("knock rule"));
        assert!(grant < r.rfind(" drop").expect("protect rule"));
        // trusted sources and the admin's mark are accepted before protected services are
        // dropped, and after the knock rules (their knocks count)
        assert!(r.contains("add set inet knocker trusted4 { type ipv4_addr; flags interval; }"));
        assert!(r.contains("add element inet knocker trusted4 { 192.0.2.0/24 }"));
        assert!(r.contains("add element inet knocker trusted6 { 2001:db8::/32 }"));
        let protect = r.find("th dport { tcp . 22 } drop").expect("protect rule");
        let knocks = r.rfind(" snaplen ").expect("knock rules");
        // the NFLOG instance's own threshold decides when the kernel flushes (1, or more while
        // a flood lasts: nflog::batching_request); a rule's threshold would cap it
        assert!(!r.contains("queue-threshold"), "{r}");
        for accept in [
            "ip saddr @trusted4 accept",
            "ip6 saddr @trusted6 accept",
            "meta mark & 0x4b410000 == 0x4b410000 accept",
        ] {
            let at = r.find(accept).expect(accept);
            assert!(knocks < at && at < protect, "{accept}\n{r}");
        }
        let none = render(&TableSpec {
            trusted: Vec::new(),
            accept_mark: 0,
            ..spec()
        });
        assert!(!none.contains("add element inet knocker trusted"), "{none}");
        assert!(!none.contains("meta mark &"), "{none}");
    }

    #[test]
    fn grants_that_count_connections_spend_a_slot_in_the_rule_that_accepts() {
        assert!(
            !render(&spec()).contains("conn4_"),
            "no slots without a door that counts"
        );
        let r = render(&TableSpec {
            connection_slots: 2,
            ..spec()
        });
        for set in ["conn4_1", "conn6_1", "conn4_2", "conn6_2"] {
            assert!(
                r.contains(&format!("add set inet knocker {set} {{ type ")),
                "{r}"
            );
        }
        assert!(r.contains("flags dynamic, timeout;"), "{r}");
        let rule = "ct state new ip saddr . meta l4proto . th dport @conn4_1 delete @conn4_1 { ip saddr . meta l4proto . th dport } meta mark set meta mark | 0x4b4e0000 accept";
        assert!(r.contains(rule), "{r}");
        assert!(r.contains("ct state new ip6 saddr . meta l4proto . th dport @conn6_2 delete @conn6_2 { ip6 saddr . meta l4proto . th dport }"), "{r}");
        // after the unlimited grants (they win and spend nothing), before the protection
        let at = |needle: &str| r.find(needle).expect(needle);
        assert!(at("@allow6") < at("@conn4_1") && at("@conn4_1") < at("@conn4_2"));
        assert!(at("@conn6_2") < at("th dport { tcp . 22 } drop"));
        // a flow admitted once, still `new` (a retransmitted SYN), needs no second slot
        let confirmed = "ct state new ct status confirmed meta l4proto . th dport { tcp . 22 } meta mark set meta mark | 0x4b4e0000 accept";
        assert!(at(confirmed) < at("@conn4_1"), "{r}");
    }

    #[test]
    fn counted_grants_are_read_with_the_connections_they_have_left() {
        let json = r#"{"nftables": [{"table": {"family": "inet", "name": "knocker"}},
            {"set": {"family": "inet", "name": "allow4", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["10.200.1.9", "tcp", 22]}, "timeout": 30, "expires": 20}}]}},
            {"set": {"family": "inet", "name": "conn4_1", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["10.200.1.2", "tcp", 22]}, "timeout": 30, "expires": 28}}]}},
            {"set": {"family": "inet", "name": "conn4_2", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["10.200.1.2", "tcp", 22]}, "timeout": 30, "expires": 28}}, {"elem": {"val": {"concat": ["10.200.1.3", "tcp", 22]}, "timeout": 30, "expires": 5}}]}},
            {"set": {"family": "inet", "name": "conn6_1", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["fd00:200::2", "udp", 53]}, "timeout": 10, "expires": 9}}]}}]}"#;
        let g = counted_grants_of(json).expect("json");
        let seen: Vec<(&str, &str, Option<u8>, u64)> = g
            .iter()
            .map(|g| {
                (
                    g.to.as_str(),
                    g.service.as_str(),
                    g.connections_left,
                    g.expires_s,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("10.200.1.2", "tcp/22", Some(2), 28),
                ("10.200.1.3", "tcp/22", Some(1), 5),
                ("fd00:200::2", "udp/53", Some(1), 9)
            ]
        );
        assert!(counted_grants_of("[").is_err());
    }

    /// nft's JSON for a table as `render(spec)` creates it, with `rules` rules in the chain.
    fn live_json(rules: usize, policy: &str) -> String {
        let mut objs = vec![
            r#"{"metainfo": {"version": "1.0.6"}}"#.to_string(),
            r#"{"table": {"family": "inet", "name": "knocker", "handle": 1}}"#.to_string(),
        ];
        let script = render(&spec());
        let sets = script
            .lines()
            .filter(|l| l.starts_with("add set"))
            .filter_map(|l| l.split_whitespace().nth(4));
        for set in sets {
            objs.push(format!(
                r#"{{"set": {{"family": "inet", "name": "{set}", "table": "knocker", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 2, "flags": ["timeout"]}}}}"#
            ));
        }
        objs.push(format!(
            r#"{{"chain": {{"family": "inet", "table": "knocker", "name": "input", "handle": 3, "type": "filter", "hook": "input", "prio": -10, "policy": "{policy}"}}}}"#
        ));
        for h in 0..rules {
            objs.push(format!(
                r#"{{"rule": {{"family": "inet", "table": "knocker", "chain": "input", "handle": {}, "expr": []}}}}"#,
                h + 10
            ));
        }
        format!(r#"{{"nftables": [{}]}}"#, objs.join(", "))
    }

    #[test]
    fn nft_refusals_keep_the_command_and_what_nft_said() {
        let missing = NftError::Refused {
            command: "-j list table inet knocker".into(),
            stderr: "Error: No such file or directory; did you mean table 'filter'?".into(),
        };
        assert!(missing.is_missing());
        assert_eq!(
            missing.to_string(),
            "nft -j list table inet knocker: Error: No such file or directory; did you mean table 'filter'?"
        );
        let other = NftError::Refused {
            command: "-f -".into(),
            stderr: "Error: syntax error".into(),
        };
        assert!(!other.is_missing());
        assert!(!NftError::NotInstalled.is_missing());
    }

    #[test]
    fn health_compares_the_live_table_with_the_script() {
        let spec = spec();
        let want = render(&spec)
            .lines()
            .filter(|l| l.starts_with("add rule"))
            .count();
        assert_eq!(
            health_of(&live_json(want, "accept"), &spec).ok(),
            Some(TableHealth::Intact)
        );
        // a flushed chain, an extra rule, a changed policy
        for json in [
            live_json(0, "accept"),
            live_json(want + 1, "accept"),
            live_json(want, "drop"),
        ] {
            assert!(
                matches!(health_of(&json, &spec), Ok(TableHealth::Differs(_))),
                "{json}"
            );
        }
        let no_set = live_json(want, "accept").replace(r#""name": "allow6""#, r#""name": "x""#);
        assert_eq!(
            health_of(&no_set, &spec).ok(),
            Some(TableHealth::Differs("set allow6 is missing".into()))
        );
        assert_eq!(
            health_of(r#"{"nftables": [{"metainfo": {}}]}"#, &spec).ok(),
            Some(TableHealth::Missing)
        );
        assert!(matches!(
            health_of("not json", &spec),
            Err(NftError::Json(_))
        ));
    }

    #[test]
    fn the_include_file_is_the_script() {
        let dir = std::env::temp_dir().join(format!("knocker-include-{}", std::process::id()));
        let path = write_include(&dir, &spec()).expect("write");
        assert_eq!(path, include_path(&dir));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with(&render(&spec())), "{text}");
        assert!(text.contains(&include_line(&dir)));
        assert_eq!(
            include_line(&dir),
            format!("include \"{}/nftables/*.nft\"", dir.display())
        );
        assert!(remove_include(&dir).expect("remove"));
        assert!(!remove_include(&dir).expect("again"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_knockd_conf_watches_knocks_without_dropping_them() {
        let r = render(&TableSpec {
            drop_knocks: false,
            ..spec()
        });
        let knock = "meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100 snaplen 128\n";
        assert!(r.contains(knock), "{r}");
        assert!(!r.contains("40000-40999 } log group 4100 snaplen 128 drop"));
        // before established connections are accepted, so that their packets are seen too
        assert!(r.find(knock) < r.find("ct state established"), "{r}");
        assert_eq!(r.matches("log group 4100 snaplen 128").count(), 1, "{r}");
    }

    #[test]
    fn with_a_packet_socket_knocks_are_dropped_unlogged() {
        let r = render(&TableSpec {
            knock_log: KnockLog::Packet,
            ..spec()
        });
        assert!(!r.contains(" log"), "{r}");
        assert!(
            r.contains(
                "meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } drop\n"
            ),
            "{r}"
        );
        assert!(
            r.contains("meta l4proto . th dport { udp . 62201 } drop\n"),
            "{r}"
        );
        assert!(
            r.contains("meta l4proto . th dport { tcp . 443 } drop\n"),
            "{r}"
        );
        // a knockd.conf's knock ports are only watched: with a packet socket, no rule at all
        let r = render(&TableSpec {
            knock_log: KnockLog::Packet,
            drop_knocks: false,
            ..spec()
        });
        assert!(!r.contains("7000"), "{r}");
    }

    #[test]
    fn a_line_source_changes_how_knocks_are_logged() {
        let kernel = render(&TableSpec {
            knock_log: KnockLog::Kernel,
            ..spec()
        });
        assert!(kernel.contains("meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log prefix \"knocker: \" flags tcp sequence drop\n"), "{kernel}");
        assert!(!kernel.contains("40999 } log group"), "{kernel}");
        // a SYN door's port (under the kernel log, knockknock's): its SYNs logged with the
        // sequence numbers, then dropped; anything else to it dropped unlogged
        assert!(kernel.contains("meta l4proto . th dport { tcp . 443 } tcp flags & (syn | ack) == syn log prefix \"knocker: \" flags tcp sequence drop\nadd rule inet knocker input meta l4proto . th dport { tcp . 443 } drop\n"), "{kernel}");
        let off = render(&TableSpec {
            knock_log: KnockLog::Off,
            ..spec()
        });
        assert!(
            !off.contains("tcp . 7000, udp . 9000"),
            "no rule for knock ports: {off}"
        );
        assert!(
            off.contains("meta l4proto . th dport { tcp . 22 } drop"),
            "still protected: {off}"
        );
    }

    #[test]
    fn warns_about_default_drop_chains() {
        let json = |rules: &str, prio: i64| {
            format!(
                r#"{{"nftables": [{{"chain": {{"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": {prio}, "policy": "drop"}}}}{rules}]}}"#
            )
        };
        let w = drop_warnings(&json("", 0), DEFAULT).expect("json");
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("meta mark & 0x4b4e0000 == 0x4b4e0000 accept"),
            "{}",
            w[0]
        );
        let mark_rule = r#", {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 1263403008]}, "right": 1263403008}}, {"accept": null}]}}"#;
        assert!(drop_warnings(&json(mark_rule, 0), DEFAULT)
            .expect("json")
            .is_empty());
        let w = drop_warnings(&json(mark_rule, -100), DEFAULT).expect("json");
        assert!(w[0].contains("runs before"), "{}", w[0]);
        let accept_policy = json("", 0).replace("\"drop\"", "\"accept\"");
        assert!(drop_warnings(&accept_policy, DEFAULT)
            .expect("json")
            .is_empty());
    }

    /// ufw's IPv4 chains as iptables-nft shows them to `nft -j list ruleset` (Debian bookworm):
    /// `INPUT` (policy drop) jumps to `ufw-before-input`, where before.rules put their lines.
    fn ufw_json(before_rules: &str) -> String {
        format!(
            r#"{{"nftables": [{{"chain": {{"family": "ip", "table": "filter", "name": "INPUT", "handle": 19, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}}},
            {{"chain": {{"family": "ip", "table": "filter", "name": "ufw-before-input", "handle": 4}}}},
            {{"chain": {{"family": "ip", "table": "filter", "name": "ufw-not-local", "handle": 5}}}},
            {{"rule": {{"family": "ip", "table": "filter", "chain": "INPUT", "handle": 20, "expr": [{{"counter": {{"packets": 0, "bytes": 0}}}}, {{"jump": {{"target": "ufw-before-input"}}}}]}}}},
            {{"rule": {{"family": "ip", "table": "filter", "chain": "ufw-before-input", "handle": 21, "expr": [{{"goto": {{"target": "ufw-not-local"}}}}]}}}},
            {{"rule": {{"family": "ip", "table": "filter", "chain": "ufw-not-local", "handle": 22, "expr": [{{"jump": {{"target": "ufw-before-input"}}}}]}}}}
            {before_rules}]}}"#
        )
    }

    #[test]
    fn a_mark_rule_in_a_chain_jumped_to_counts_and_ufw_gets_its_own_step() {
        let w = drop_warnings(&ufw_json(""), DEFAULT).expect("json");
        assert_eq!(
            w,
            ["chain ip filter INPUT (hook input, priority 0, policy drop) is ufw's and would drop granted packets: add `-A ufw-before-input -m mark --mark 0x4b4e0000/0x4b4e0000 -j ACCEPT` to /etc/ufw/before.rules, on the line after `# End required lines`, then run `ufw reload`"]
        );
        // the line from before.rules, as iptables-nft loads it; reached through a jump, past a loop
        let mark_rule = r#", {"rule": {"family": "ip", "table": "filter", "chain": "ufw-not-local", "handle": 23, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 1263403008]}, "right": 1263403008}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}"#;
        assert!(drop_warnings(&ufw_json(mark_rule), DEFAULT)
            .expect("json")
            .is_empty());
        let w = drop_warnings(&ufw_json(""), 0).expect("json");
        assert!(
            w[0].ends_with("set grant_mark = 0x4b4e0000 in [daemon] and add `-A ufw-before-input -m mark --mark 0x4b4e0000/0x4b4e0000 -j ACCEPT` to /etc/ufw/before.rules, on the line after `# End required lines`, then run `ufw reload`"),
            "{}",
            w[0]
        );
        // a chain of the same name in another table is not reached
        let elsewhere = mark_rule.replace("\"family\": \"ip\"", "\"family\": \"ip6\"");
        assert_eq!(
            drop_warnings(&ufw_json(&elsewhere), DEFAULT)
                .expect("json")
                .len(),
            1
        );
    }
}
