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
/// The maps of client-chosen inner hosts (fwknop's `-N`, `--fwknop-nat-targets`): `source .
/// protocol . port : inner address . inner port`, with the grant's timeout, written by the
/// gatekeeper in the grant's own batch; the nat chain DNATs a granted source by them.
pub const CLIENT_NAT4: &str = "client_nat4";
pub const CLIENT_NAT6: &str = "client_nat6";
/// Sets of sources that knocker's protection never drops (`[daemon] trusted`).
pub const TRUSTED4: &str = "trusted4";
pub const TRUSTED6: &str = "trusted6";
pub const CHAIN: &str = "input";
/// Our input chain's priority: before the usual `filter` (0) chains, so that the grant mark is
/// set before an admin's own chain looks at the packet.
pub const PRIORITY: i32 = -10;
/// The chain of forwarded services (doors with `forward = true`), on the prerouting hook.
pub const FORWARD_CHAIN: &str = "prerouting";
/// Its priority: before `dstnat` (-100), where Docker's, Podman's and the admin's DNAT rules
/// run, so that a packet is judged by the address and port it was sent to, the port the admin
/// published and wrote in `open`, before DNAT rewrites them to a container's. After conntrack
/// (-200), so that established connections are known.
pub const FORWARD_PRIORITY: i32 = -110;
/// The chain of knockerd's own DNAT to inner hosts (doors with `nat`), on the prerouting hook.
pub const NAT_CHAIN: &str = "nat";
/// Its priority: after the prerouting chain has judged the packet, before `dstnat` (-100), so
/// that a granted source's new connection is sent on by knockerd's DNAT and not another's.
pub const NAT_PRIORITY: i32 = -105;
/// The chain that gives a `nat` door's connections a new source (`nat_source`), on the
/// postrouting hook.
pub const SNAT_CHAIN: &str = "postrouting";
/// Its priority: before `srcnat` (100), where Docker's and the admin's masquerade rules run, so
/// that the door's own choice is the one the connection keeps.
pub const SNAT_PRIORITY: i32 = 95;
/// Bytes of each logged knock packet copied to knockerd: IP and TCP/UDP headers with options.
pub const SNAPLEN: u16 = 128;

/// What knockerd's table must contain for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub nflog_group: u16,
    /// Where knocks are logged: the knock ports of the doors that listen on the same
    /// interfaces, a group each (most configurations have one).
    pub listen: Vec<Listen>,
    /// Services dropped on every interface for sources without a grant.
    pub protect: Vec<Service>,
    /// Services dropped only on some interfaces (doors with `protect_elsewhere = false`), as
    /// (interfaces, services); none of them is in `protect`.
    pub protect_on: Vec<(Vec<String>, Vec<Service>)>,
    /// Forwarded services ([`Config::forwarded`]): dropped in the prerouting chain, before DNAT,
    /// for every source without a grant, when sent to one of this host's addresses. Empty: no
    /// prerouting chain.
    pub forward: Vec<Service>,
    /// Routed services ([`Config::routed`]): for each door with `forward = [hosts]`, its hosts
    /// and services, dropped in the prerouting chain for every source without a grant.
    pub routed: Vec<(Vec<crate::config::Net>, Vec<Service>)>,
    /// Services DNAT'd to inner hosts for granted sources ([`Config::nat_targets`]). Empty:
    /// no nat chain.
    pub nat: Vec<(Service, std::net::SocketAddr)>,
    /// Some door sends granted sources on to inner hosts they named themselves (a door with
    /// `nat_networks`): the nat chain DNATs by the client NAT maps.
    pub client_nat: bool,
    /// The inner hosts whose connections get a new source ([`Config::nat_sources`]): (target,
    /// protocol, source). Empty: no postrouting chain.
    pub snat: Vec<(
        std::net::SocketAddr,
        knocker_engine::Proto,
        crate::config::NatSource,
    )>,
    pub grant_mark: u32,
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
    /// The prefixes doors widen grants to (`grant_prefix`, `grant_prefix6`), as (IPv4?, length),
    /// sorted, each once: a set and a rule each ([`wide_set`]).
    pub grant_prefixes: Vec<(bool, u8)>,
    /// How knock ports are logged: to NFLOG, to the kernel log, or not at all.
    pub knock_log: KnockLog,
}

/// The knock ports of the doors that listen on the same interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listen {
    /// Only knocks arriving on these interfaces are logged (empty: every interface).
    pub interfaces: Vec<String>,
    pub knock: Vec<Service>,
    /// Spans of knock ports (rotating doors), as (protocol, first, last).
    pub knock_ranges: Vec<(knocker_engine::Proto, u16, u16)>,
    /// UDP ports of single-packet-authorization doors: logged whole, with the SPA prefix.
    pub spa_ports: Vec<u16>,
    /// TCP ports of stealth SYN doors: SYNs logged with their headers, with the SYN prefix.
    pub syn_ports: Vec<u16>,
}

impl Listen {
    /// The match of the group's interfaces ([`iif_match`]).
    fn iif(&self) -> String {
        iif_match(&self.interfaces)
    }
}

/// The match of packets arriving on `interfaces`, with a space after it (nothing for every one).
fn iif_match(interfaces: &[String]) -> String {
    match interfaces {
        [] => String::new(),
        [one] => format!("iifname \"{one}\" "),
        many => {
            let names: Vec<String> = many.iter().map(|i| format!("\"{i}\"")).collect();
            format!("iifname {{ {} }} ", names.join(", "))
        }
    }
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
            listen: listen_groups(c),
            protect: c.protected_everywhere(),
            protect_on: c.protected_on_some(),
            forward: c.forwarded(),
            routed: c.routed(),
            nat: c.nat_targets(),
            client_nat: c.doors.iter().any(|d| !d.nat_networks.is_empty()),
            snat: c.nat_sources(),
            grant_mark: c.grant_mark,
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
            grant_prefixes: grant_prefixes(c),
            knock_log: KnockLog::for_source(&c.source),
        }
    }
}

/// The doors' knock ports grouped by the interfaces they listen on, in the order of the doors.
fn listen_groups(c: &Config) -> Vec<Listen> {
    let mut groups: Vec<Listen> = Vec::new();
    for d in &c.doors {
        let on = c.listens_on(d);
        let g = match groups.iter().position(|g| g.interfaces == on) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Listen {
                    interfaces: on.to_vec(),
                    ..Listen::default()
                });
                groups.last_mut().expect("just pushed")
            }
        };
        g.knock.extend(d.spec.fixed_knocks().copied());
        g.knock_ranges
            .extend(d.span().map(|r| (r.proto, r.first, r.last)));
        g.spa_ports.extend(d.spa_port());
        g.syn_ports.extend(d.syn_port());
    }
    for g in &mut groups {
        g.knock.sort();
        g.knock.dedup();
        g.spa_ports.sort();
        g.spa_ports.dedup();
        g.syn_ports.sort();
        g.syn_ports.dedup();
    }
    groups
}

/// Every prefix length the doors widen grants to, per family, sorted and each once.
fn grant_prefixes(c: &Config) -> Vec<(bool, u8)> {
    let set: std::collections::BTreeSet<(bool, u8)> = c
        .doors
        .iter()
        .flat_map(|d| {
            [
                d.grant_prefix.v4.map(|n| (true, n)),
                d.grant_prefix.v6.map(|n| (false, n)),
            ]
        })
        .flatten()
        .collect();
    set.into_iter().collect()
}

/// The set of a family's grants widened to a prefix of `len` bits: its elements are the
/// network's first address, and its rule masks the packet's source before the lookup.
pub fn wide_set(v4: bool, len: u8) -> String {
    format!("allow{}_{len}", if v4 { 4 } else { 6 })
}

/// The netmask of a prefix length, as nft writes it (`255.255.255.0`, `ffff:ffff:ffff:ffff::`):
/// the network of the all-ones address.
fn netmask(v4: bool, len: u8) -> String {
    let ones = if v4 {
        std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
    } else {
        std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::MAX))
    };
    crate::config::Net::of(ones, len).addr.to_string()
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
    for &(v4, len) in &spec.grant_prefixes {
        let addr = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        let _ = writeln!(
            s,
            "add set {t} {} {{ type {addr} . inet_proto . inet_service; flags timeout; }}",
            wide_set(v4, len)
        );
    }
    // always there, as the allow sets are, so that the gatekeeper's batches find them
    for (map, addr) in [(CLIENT_NAT4, "ipv4_addr"), (CLIENT_NAT6, "ipv6_addr")] {
        let _ = writeln!(
            s,
            "add map {t} {map} {{ type {addr} . inet_proto . inet_service : {addr} . inet_service; flags timeout; }}"
        );
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
    // knockd sees every packet to a knock port, a connection's ACKs too (`TCPFlags = ack`), and
    // leaves the verdict to the firewall: so must a knockd.conf here, before established
    // connections are accepted
    if !spec.drop_knocks {
        for g in &spec.listen {
            knock_rules(&mut s, spec, g, "");
        }
    }
    rule(&mut s, "ct state established,related accept");
    let mark = if spec.grant_mark != 0 {
        format!("meta mark set meta mark | {:#010x} ", spec.grant_mark)
    } else {
        String::new()
    };
    for lookup in grant_lookups(spec) {
        rule(&mut s, &format!("{lookup} {mark}accept"));
    }
    connection_rules(&mut s, spec, &mark);
    for g in &spec.listen {
        if spec.drop_knocks {
            knock_rules(&mut s, spec, g, " drop");
        }
        single_packet_rules(&mut s, spec, g);
    }
    // the admin's way in, before the protected services are dropped: trusted sources and
    // packets the admin's own chain marked. After the knock rules, so that a knock from them
    // still counts (an admin can test a door from a trusted network).
    rule(&mut s, &format!("ip saddr @{TRUSTED4} accept"));
    rule(&mut s, &format!("ip6 saddr @{TRUSTED6} accept"));
    if spec.accept_mark != 0 {
        rule(&mut s, &mark_accept_rule(spec.accept_mark));
    }
    for (interfaces, services) in &spec.protect_on {
        rule(
            &mut s,
            &format!(
                "{}meta l4proto . th dport {} drop",
                iif_match(interfaces),
                service_set(services)
            ),
        );
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
    forward_chain(&mut s, spec, &mark);
    nat_chain(&mut s, spec, &mark);
    snat_chain(&mut s, spec);
    s
}

/// The matches of a packet whose source holds a grant for where it goes: the allow sets', and
/// for each prefix a door widens grants to (`grant_prefix`), the source masked to it and the
/// same lookup in that prefix's set. Each is a rule's match; the input and prerouting chains
/// accept on them, the nat chain DNATs.
fn grant_lookups(spec: &TableSpec) -> Vec<String> {
    let mut v = vec![
        format!("ip saddr . meta l4proto . th dport @{SET4}"),
        format!("ip6 saddr . meta l4proto . th dport @{SET6}"),
    ];
    for &(v4, len) in &spec.grant_prefixes {
        v.push(wide_lookup(v4, len));
    }
    v
}

/// The match of a grant widened to a prefix of `len`: the source masked, then the lookup.
fn wide_lookup(v4: bool, len: u8) -> String {
    format!(
        "{} saddr & {} . meta l4proto . th dport @{}",
        if v4 { "ip" } else { "ip6" },
        netmask(v4, len),
        wide_set(v4, len)
    )
}

/// The rules that log a group's knocks (sequence, rotating and encoded doors' ports, ICMP steps)
/// on its interfaces, with `verdict` (" drop", or nothing under a knockd.conf).
fn knock_rules(s: &mut String, spec: &TableSpec, g: &Listen, verdict: &str) {
    let log = match spec.knock_log {
        KnockLog::Nflog => format!(" log group {} snaplen {SNAPLEN}", spec.nflog_group),
        KnockLog::Kernel => kernel_log_statement(),
        // a packet socket sees knocks by itself: the rule only drops, if it drops
        KnockLog::Packet if !verdict.is_empty() => String::new(),
        KnockLog::Packet | KnockLog::Off => return,
    };
    let (echoes, ports): (Vec<Service>, Vec<Service>) = g
        .knock
        .iter()
        .partition(|k| k.proto == knocker_engine::Proto::Icmp);
    let iif = g.iif();
    let t = format!("inet {TABLE}");
    if !ports.is_empty() || !g.knock_ranges.is_empty() {
        let _ = writeln!(
            s,
            "add rule {t} {CHAIN} {iif}meta l4proto . th dport {}{log}{verdict}",
            service_and_range_set(&ports, &g.knock_ranges),
        );
    }
    for rule_body in echo_rules(&echoes) {
        let _ = writeln!(s, "add rule {t} {CHAIN} {iif}{rule_body}{log}{verdict}");
    }
}

/// The rules of a group's single-packet doors: SPA datagrams logged whole, stealth SYNs with
/// their headers, on the group's interfaces; anything else to a SYN door's port dropped
/// unlogged on every interface.
fn single_packet_rules(s: &mut String, spec: &TableSpec, g: &Listen) {
    let t = format!("inet {TABLE}");
    let iif = g.iif();
    if !g.spa_ports.is_empty() {
        let ports: Vec<Service> = g.spa_ports.iter().map(|p| Service::udp(*p)).collect();
        let _ = writeln!(
            s,
            "add rule {t} {CHAIN} {iif}meta l4proto . th dport {}{} drop",
            service_set(&ports),
            log_statement(
                spec,
                Some(crate::nflog::SPA_PREFIX),
                crate::nflog::SPA_SNAPLEN
            ),
        );
    }
    if !g.syn_ports.is_empty() {
        let ports: Vec<Service> = g.syn_ports.iter().map(|p| Service::tcp(*p)).collect();
        // a SYN carries the knock; anything else to the port is dropped unlogged. Under the
        // kernel log these are knockknock's doors (a line source refuses knocker's own SYN
        // doors), which the kernel-log source tells apart by port.
        let syn_log = match spec.knock_log {
            KnockLog::Nflog => Some(log_statement(spec, Some(crate::nflog::SYN_PREFIX), SNAPLEN)),
            KnockLog::Kernel => Some(kernel_log_statement()),
            KnockLog::Packet | KnockLog::Off => None,
        };
        if let Some(log) = syn_log {
            let _ = writeln!(
                s,
                "add rule {t} {CHAIN} {iif}meta l4proto . th dport {} tcp flags & (syn | ack) == syn{log} drop",
                service_set(&ports),
            );
        }
        let _ = writeln!(
            s,
            "add rule {t} {CHAIN} meta l4proto . th dport {} drop",
            service_set(&ports)
        );
    }
}

/// Adds (or updates) and flushes a chain of ours on the prerouting hook, and deletes it in the
/// same transaction unless `wanted`: whether its rules are to follow.
fn prerouting_chain(s: &mut String, name: &str, kind: &str, priority: i32, wanted: bool) -> bool {
    hooked_chain(s, name, kind, "prerouting", priority, wanted)
}

/// [`prerouting_chain`] on any hook.
fn hooked_chain(
    s: &mut String,
    name: &str,
    kind: &str,
    hook: &str,
    priority: i32,
    wanted: bool,
) -> bool {
    let t = format!("inet {TABLE}");
    let _ = writeln!(
        s,
        "add chain {t} {name} {{ type {kind} hook {hook} priority {priority}; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {t} {name}");
    if !wanted {
        let _ = writeln!(s, "delete chain {t} {name}");
    }
    wanted
}

/// The postrouting chain of `nat` doors with `nat_source` (fwknop's FORCE_SNAT and
/// FORCE_MASQUERADE): a connection DNAT'd to such an inner host and port leaves with the
/// server's address (or the one given), so that an inner host without a route back through the
/// server answers. It matches every DNAT'd connection to that inner host and port (`ct status
/// dnat`), which the nat chain makes only for granted sources. Without such doors, the chain is
/// added and deleted in one transaction, as the prerouting chains are.
fn snat_chain(s: &mut String, spec: &TableSpec) {
    let t = format!("inet {TABLE}");
    if !hooked_chain(
        s,
        SNAT_CHAIN,
        "nat",
        "postrouting",
        SNAT_PRIORITY,
        !spec.snat.is_empty(),
    ) {
        return;
    }
    for (to, proto, source) in &spec.snat {
        let ip = if to.is_ipv4() { "ip" } else { "ip6" };
        let action = match source {
            crate::config::NatSource::Masquerade => "masquerade".to_string(),
            crate::config::NatSource::Address(a) => format!("snat {ip} to {a}"),
        };
        let _ = writeln!(
            s,
            "add rule {t} {SNAT_CHAIN} ct status dnat {ip} daddr {} meta l4proto {proto} th dport {} {action}",
            to.ip(),
            to.port()
        );
    }
}

/// The nat chain of doors with `nat`: a new connection sent to this host on such a door's
/// service is DNAT'd to the inner host while its source holds a grant element for it, so the
/// DNAT is as old as the grant and ends with it, in the kernel, in the same element (nothing to
/// add or remove beside it, nothing to restore but the grant). A nat chain sees only the first
/// packet of a connection: connections made meanwhile keep their DNAT. Without such doors, the
/// chain is added and deleted in one transaction, as the prerouting chain is.
///
/// With client-chosen inner hosts (doors with `nat_networks`), one rule per family DNATs a new
/// connection sent to this host whose source holds both the grant element and an element of
/// the client NAT map for the same `source . protocol . port`, to that element's inner host:
/// the gatekeeper adds, refreshes and removes the two in one batch with one timeout, and
/// either missing (the kernel timed it out, a flush) sends nothing on. The rule also sets the
/// grant mark, for an admin's forward chain that accepts by it: a DNAT'd packet never reaches
/// the input chain, which marks the others.
fn nat_chain(s: &mut String, spec: &TableSpec, mark: &str) {
    let t = format!("inet {TABLE}");
    let wanted = !spec.nat.is_empty() || spec.client_nat;
    if !prerouting_chain(s, NAT_CHAIN, "nat", NAT_PRIORITY, wanted) {
        return;
    }
    if spec.client_nat {
        for (ip, set, map) in [("ip", SET4, CLIENT_NAT4), ("ip6", SET6, CLIENT_NAT6)] {
            let key = format!("{ip} saddr . meta l4proto . th dport");
            let _ = writeln!(
                s,
                "add rule {t} {NAT_CHAIN} fib daddr type local {key} @{set} {mark}dnat {ip} to {key} map @{map}"
            );
        }
    }
    // one rule per inner host and protocol (nft's DNAT to a port needs the protocol matched)
    let mut groups: Vec<(std::net::SocketAddr, knocker_engine::Proto, Vec<u16>)> = Vec::new();
    for (service, to) in &spec.nat {
        match groups
            .iter_mut()
            .find(|(t, p, _)| t == to && *p == service.proto)
        {
            Some((_, _, ports)) => ports.push(service.port),
            None => groups.push((*to, service.proto, vec![service.port])),
        }
    }
    for (to, proto, ports) in groups {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let (ip, set) = if to.is_ipv4() {
            ("ip", SET4)
        } else {
            ("ip6", SET6)
        };
        // a widened grant (grant_prefix) of the same family DNATs as well
        let lookups = std::iter::once(format!("{ip} saddr . meta l4proto . th dport @{set}"))
            .chain(
                spec.grant_prefixes
                    .iter()
                    .filter(|(v4, _)| *v4 == to.is_ipv4())
                    .map(|&(v4, len)| wide_lookup(v4, len)),
            );
        for lookup in lookups {
            let _ = writeln!(
                s,
                "add rule {t} {NAT_CHAIN} fib daddr type local meta l4proto {proto} th dport {{ {} }} {lookup} dnat {ip} to {to}",
                ports.join(", ")
            );
        }
    }
}

/// The prerouting chain of forwarded services, or, when there are none, a chain added and
/// deleted in the same transaction: a configuration that no longer forwards leaves no chain
/// behind, and one that never did gets no hook on every forwarded packet.
///
/// A forwarded packet never reaches the input hook: Docker's DNAT (in `ip nat PREROUTING`, at
/// `dstnat`) sends it to the forward hook, where its address and port are the container's, not
/// what the admin published and wrote. So the chain runs before `dstnat` and judges the packet
/// by the port it was sent to, with the same allow sets, trusted sets and marks as the input
/// chain; a drop here is final whatever Docker's chains accept later. It drops only packets
/// sent to one of this host's own addresses (`fib daddr type local`, as Docker's own DNAT
/// matches `--dst-type LOCAL`): connections that containers and hosts behind the server make to
/// the same port elsewhere pass.
fn forward_chain(s: &mut String, spec: &TableSpec, mark: &str) {
    let t = format!("inet {TABLE}");
    let wanted = !spec.forward.is_empty() || !spec.routed.is_empty();
    if !prerouting_chain(s, FORWARD_CHAIN, "filter", FORWARD_PRIORITY, wanted) {
        return;
    }
    let mut rule = |body: &str| {
        let _ = writeln!(s, "add rule {t} {FORWARD_CHAIN} {body}");
    };
    rule("iif \"lo\" accept");
    rule("ct state established,related accept");
    for lookup in grant_lookups(spec) {
        rule(&format!("{lookup} {mark}accept"));
    }
    rule(&format!("ip saddr @{TRUSTED4} accept"));
    rule(&format!("ip6 saddr @{TRUSTED6} accept"));
    if spec.accept_mark != 0 {
        rule(&mark_accept_rule(spec.accept_mark));
    }
    if !spec.forward.is_empty() {
        rule(&format!(
            "fib daddr type local meta l4proto . th dport {} drop",
            service_set(&spec.forward)
        ));
    }
    // hosts behind this one, reached by their own addresses: by destination, no DNAT involved
    for (hosts, services) in &spec.routed {
        for (ip, v4) in [("ip", true), ("ip6", false)] {
            let nets: Vec<String> = hosts
                .iter()
                .filter(|n| n.addr.is_ipv4() == v4)
                .map(|n| n.to_string())
                .collect();
            if !nets.is_empty() {
                rule(&format!(
                    "{ip} daddr {{ {} }} meta l4proto . th dport {} drop",
                    nets.join(", "),
                    service_set(services)
                ));
            }
        }
    }
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
    let mut script = format!(
        "flush set inet {TABLE} {SET4}\nflush set inet {TABLE} {SET6}\nflush map inet {TABLE} {CLIENT_NAT4}\nflush map inet {TABLE} {CLIENT_NAT6}\n"
    );
    for k in 1..=spec.connection_slots {
        for v4 in [true, false] {
            let _ = writeln!(script, "flush set inet {TABLE} {}", slot_set(v4, k));
        }
    }
    for &(v4, len) in &spec.grant_prefixes {
        let _ = writeln!(script, "flush set inet {TABLE} {}", wide_set(v4, len));
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
/// chain with as many rules as the script adds, and each base chain (input, prerouting, nat,
/// postrouting) of its type, on its hook and priority, with policy accept.
pub fn health_of(json: &str, spec: &TableSpec) -> Result<TableHealth, NftError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(NftError::Json)?;
    let ours = |o: &&serde_json::Value| o["family"] == "inet" && o["table"] == TABLE;
    if !items(&v, "table").any(|t| t["family"] == "inet" && t["name"] == TABLE) {
        return Ok(TableHealth::Missing);
    }
    let script = render(spec);
    let mut want_rules: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut gone: Vec<&str> = Vec::new();
    for line in script.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.nth(2), words.next()) {
            (Some("delete"), Some("chain"), Some(name), _) => {
                want_rules.remove(name);
                gone.push(name);
            }
            (Some("add"), Some(kind @ ("set" | "map")), Some(name), _)
                if !items(&v, kind).filter(ours).any(|s| s["name"] == name) =>
            {
                return Ok(TableHealth::Differs(format!("{kind} {name} is missing")));
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
    if let Some(chain) = gone
        .iter()
        .find(|g| items(&v, "chain").filter(ours).any(|c| c["name"] == **g))
    {
        return Ok(TableHealth::Differs(format!(
            "chain {chain} is there, but the configuration has none"
        )));
    }
    for (chain, want) in want_rules {
        let Some(c) = items(&v, "chain").filter(ours).find(|c| c["name"] == chain) else {
            return Ok(TableHealth::Differs(format!("chain {chain} is missing")));
        };
        // every base chain of the table: a chain moved to another hook, priority or type
        // (after Docker's DNAT, say, or no longer a nat chain) no longer does its job
        let hooked = [
            (CHAIN, "filter", "input", PRIORITY),
            (FORWARD_CHAIN, "filter", "prerouting", FORWARD_PRIORITY),
            (NAT_CHAIN, "nat", "prerouting", NAT_PRIORITY),
            (SNAT_CHAIN, "nat", "postrouting", SNAT_PRIORITY),
        ];
        if let Some((_, kind, hook, prio)) = hooked.iter().find(|h| h.0 == chain) {
            if c["type"] != *kind
                || c["hook"] != *hook
                || c["prio"] != *prio
                || c["policy"] != "accept"
            {
                return Ok(TableHealth::Differs(format!(
                    "chain {chain} is not a {kind} chain on hook {hook} at priority {prio} with \
                     policy accept"
                )));
            }
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
    /// The address, or for a grant a door widened (`grant_prefix`), the network as
    /// `10.1.2.0/24`.
    pub to: String,
    pub service: String,
    pub timeout_s: u64,
    pub expires_s: u64,
    /// For a grant that counts connections: how many new connections it still admits (the
    /// slot sets that hold it).
    pub connections_left: Option<u8>,
}

impl LiveGrant {
    /// The address the element holds (a widened grant's: its network's first address).
    pub fn addr(&self) -> Option<std::net::IpAddr> {
        self.to.split('/').next()?.parse().ok()
    }

    /// The address, the service and the time left, as the gatekeeper takes them over; `None` for
    /// an element that does not read as one (never from knockerd's own sets).
    pub fn parsed(&self) -> Option<(std::net::IpAddr, Service, std::time::Duration)> {
        Some((
            self.addr()?,
            self.service.parse().ok()?,
            std::time::Duration::from_secs(self.expires_s),
        ))
    }
}

/// Lists the elements of knockerd's allow sets, and of the sets of widened grants.
pub fn live_grants() -> Result<Vec<LiveGrant>, NftError> {
    match nft(&["-j", "list", "table", "inet", TABLE], None) {
        Ok(json) => grants_of(&json),
        Err(e) if e.is_missing() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Which grants a set of knockerd's holds: `Some(None)` for the allow sets, `Some(Some(len))`
/// for a set of grants widened to a prefix of `len` ([`wide_set`]), `None` for any other set.
fn grant_set(name: &str) -> Option<Option<u8>> {
    if name == SET4 || name == SET6 {
        return Some(None);
    }
    let len: u8 = name
        .strip_prefix("allow4_")
        .or_else(|| name.strip_prefix("allow6_"))?
        .parse()
        .ok()?;
    Some(Some(len))
}

/// [`live_grants`] on nft's JSON for the table.
pub fn grants_of(json: &str) -> Result<Vec<LiveGrant>, NftError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(NftError::Json)?;
    let mut out = Vec::new();
    for s in items(&v, "set").filter(|s| s["table"] == TABLE) {
        let Some(prefix) = s["name"].as_str().and_then(grant_set) else {
            continue;
        };
        for e in s["elem"].as_array().into_iter().flatten() {
            let elem = &e["elem"];
            let concat = &elem["val"]["concat"];
            let addr = concat[0].as_str().unwrap_or("?");
            out.push(LiveGrant {
                to: match prefix {
                    Some(len) => format!("{addr}/{len}"),
                    None => addr.to_string(),
                },
                service: format!("{}/{}", concat[1].as_str().unwrap_or("?"), concat[2]),
                timeout_s: elem["timeout"].as_u64().unwrap_or(0),
                expires_s: elem["expires"].as_u64().unwrap_or(0),
                connections_left: None,
            });
        }
    }
    Ok(out)
}

/// A live entry of a client NAT map: (source, service, inner host, time left, in whole seconds
/// rounded down).
pub type LiveClientNat = (
    std::net::IpAddr,
    Service,
    std::net::SocketAddr,
    std::time::Duration,
);

/// Lists the entries of the client NAT maps ([`CLIENT_NAT4`], [`CLIENT_NAT6`]).
pub fn live_client_nat() -> Result<Vec<LiveClientNat>, NftError> {
    match nft(&["-j", "list", "table", "inet", TABLE], None) {
        Ok(json) => client_nat_of(&json),
        Err(e) if e.is_missing() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// [`live_client_nat`] on nft's JSON for the table; an element that does not read as one is
/// skipped.
pub fn client_nat_of(json: &str) -> Result<Vec<LiveClientNat>, NftError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(NftError::Json)?;
    let mut out = Vec::new();
    for m in items(&v, "map")
        .filter(|m| m["table"] == TABLE && (m["name"] == CLIENT_NAT4 || m["name"] == CLIENT_NAT6))
    {
        for e in m["elem"].as_array().into_iter().flatten() {
            let (key, data) = (&e[0]["elem"], &e[1]["concat"]);
            let concat = &key["val"]["concat"];
            let parsed = (|| {
                let from: std::net::IpAddr = concat[0].as_str()?.parse().ok()?;
                let service: Service = format!("{}/{}", concat[1].as_str()?, concat[2].as_u64()?)
                    .parse()
                    .ok()?;
                let ip: std::net::IpAddr = data[0].as_str()?.parse().ok()?;
                let port = u16::try_from(data[1].as_u64()?).ok()?;
                let left = std::time::Duration::from_secs(key["expires"].as_u64()?);
                Some((from, service, std::net::SocketAddr::new(ip, port), left))
            })();
            out.extend(parsed);
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
        let in_table = rules_of_table(&rules, family, table);
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
        let accepts_mark = accepts_mark_in(&in_table, &reached, grant_mark);
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

/// Chains outside knockerd's table on the forward hook whose policy is drop and that accept
/// neither the grant mark nor established connections, for configurations with `nat` doors:
/// knockerd's DNAT sends a granted connection on, and such a chain would drop it. (A port
/// Docker publishes is accepted by Docker's own chains, so `forward = true` alone needs none.)
pub fn forward_drop_warnings(ruleset_json: &str, grant_mark: u32) -> Result<Vec<String>, NftError> {
    let v: serde_json::Value = serde_json::from_str(ruleset_json).map_err(NftError::Json)?;
    let rules: Vec<&serde_json::Value> = items(&v, "rule").collect();
    let mark = if grant_mark == 0 {
        crate::config::DEFAULT_GRANT_MARK
    } else {
        grant_mark
    };
    let mut warnings = Vec::new();
    for chain in items(&v, "chain") {
        let family = chain["family"].as_str().unwrap_or("");
        let table = chain["table"].as_str().unwrap_or("");
        let name = chain["name"].as_str().unwrap_or("");
        if chain["hook"] != "forward"
            || chain["policy"] != "drop"
            || !matches!(family, "ip" | "ip6" | "inet")
        {
            continue;
        }
        let in_table = rules_of_table(&rules, family, table);
        let reached = reached_chains(&in_table, name);
        let accepts_mark = grant_mark != 0 && accepts_mark_in(&in_table, &reached, grant_mark);
        if accepts_mark {
            continue;
        }
        let set_mark = if grant_mark == 0 {
            format!("set grant_mark = {mark:#010x} in [daemon] and ")
        } else {
            String::new()
        };
        warnings.push(format!(
            "chain {family} {table} {name} (hook forward, policy drop) would drop the connections knockerd's nat doors send on: {set_mark}add `{}` and `ct state established,related accept` to it (iptables: -I FORWARD -m mark --mark {mark:#x}/{mark:#x} -j ACCEPT; on a Docker host, in chain DOCKER-USER)",
            mark_accept_rule(mark)
        ));
    }
    Ok(warnings)
}

/// The rules of one table (family and name) of the ruleset.
fn rules_of_table<'a>(
    rules: &[&'a serde_json::Value],
    family: &str,
    table: &str,
) -> Vec<&'a serde_json::Value> {
    rules
        .iter()
        .copied()
        .filter(|r| r["family"] == family && r["table"] == table)
        .collect()
}

/// Whether a rule of the chains `reached` (in `rules`, of one table) accepts the grant mark.
fn accepts_mark_in(rules: &[&serde_json::Value], reached: &[&str], mark: u32) -> bool {
    rules.iter().any(|r| {
        r["chain"].as_str().is_some_and(|c| reached.contains(&c))
            && rule_accepts_mark(&r["expr"], mark)
    })
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
            listen: vec![Listen {
                interfaces: Vec::new(),
                knock: vec![Service::tcp(7000), Service::udp(9000)],
                knock_ranges: vec![(knocker_engine::Proto::Tcp, 40000, 40999)],
                spa_ports: vec![62201],
                syn_ports: vec![443],
            }],
            protect: vec![Service::tcp(22)],
            protect_on: Vec::new(),
            forward: Vec::new(),
            routed: Vec::new(),
            nat: Vec::new(),
            client_nat: false,
            snat: Vec::new(),
            grant_mark: DEFAULT,
            trusted: vec![
                "192.0.2.0/24".parse().expect("net"),
                "2001:db8::/32".parse().expect("net"),
            ],
            accept_mark: 0x4b41_0000,
            drop_knocks: true,
            connection_slots: 0,
            grant_prefixes: Vec::new(),
            knock_log: KnockLog::Nflog,
        }
    }
    const DEFAULT: u32 = crate::config::DEFAULT_GRANT_MARK;

    #[test]
    fn icmp_steps_log_and_drop_echo_requests_of_their_sizes_only() {
        let mut with_echo = spec();
        with_echo.listen[0]
            .knock
            .push("icmp/100".parse().expect("step"));
        with_echo.listen[0]
            .knock
            .push("icmp/1000".parse().expect("step"));
        with_echo.listen[0].interfaces = vec!["eth0".into()];
        let r = render(&with_echo);
        assert!(r.contains("add rule inet knocker input iifname \"eth0\" meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth0\" ip hdrlength 5 ip length { 128, 1028 } icmp type echo-request icmp code 0 log group 4100 snaplen 128 drop\n"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth0\" ip6 nexthdr ipv6-icmp ip6 length { 108, 1008 } icmpv6 type echo-request icmpv6 code 0 log group 4100 snaplen 128 drop\n"), "{r}");
        assert!(!r.contains("icmp . "), "never in a port set: {r}");
        // only echo steps: no port rule at all
        let mut only = with_echo.clone();
        only.listen[0]
            .knock
            .retain(|k| k.proto == knocker_engine::Proto::Icmp);
        only.listen[0].knock_ranges.clear();
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
    fn forwarded_services_are_judged_before_dnat_by_the_port_published() {
        // nothing forwarded: the chain is added and deleted in the same transaction, so a
        // configuration that stops forwarding leaves none behind
        let none = render(&spec());
        assert!(none.contains("add chain inet knocker prerouting { type filter hook prerouting priority -110; policy accept; }\nflush chain inet knocker prerouting\ndelete chain inet knocker prerouting\n"), "{none}");
        assert!(none.contains("add chain inet knocker nat { type nat hook prerouting priority -105; policy accept; }\nflush chain inet knocker nat\ndelete chain inet knocker nat\n"), "{none}");
        assert!(none.ends_with("add chain inet knocker postrouting { type nat hook postrouting priority 95; policy accept; }\nflush chain inet knocker postrouting\ndelete chain inet knocker postrouting\n"), "{none}");
        assert!(!none.contains("add rule inet knocker prerouting"), "{none}");
        let r = render(&TableSpec {
            forward: vec![Service::tcp(8080), Service::udp(5353)],
            ..spec()
        });
        assert!(!r.contains("delete chain inet knocker prerouting"), "{r}");
        assert!(
            r.contains("delete chain inet knocker nat\n"),
            "no nat door: {r}"
        );
        let chain: Vec<&str> = r
            .lines()
            .filter_map(|l| l.strip_prefix("add rule inet knocker prerouting "))
            .collect();
        assert_eq!(
            chain,
            [
                "iif \"lo\" accept",
                "ct state established,related accept",
                "ip saddr . meta l4proto . th dport @allow4 meta mark set meta mark | 0x4b4e0000 accept",
                "ip6 saddr . meta l4proto . th dport @allow6 meta mark set meta mark | 0x4b4e0000 accept",
                "ip saddr @trusted4 accept",
                "ip6 saddr @trusted6 accept",
                "meta mark & 0x4b410000 == 0x4b410000 accept",
                "fib daddr type local meta l4proto . th dport { tcp . 8080, udp . 5353 } drop",
            ]
        );
        // a forwarded service is not the input chain's: its drop stays tcp/22 alone
        assert!(
            r.contains("add rule inet knocker input meta l4proto . th dport { tcp . 22 } drop\n"),
            "{r}"
        );
    }

    #[test]
    fn routed_hosts_are_judged_by_their_own_address() {
        let hosts = vec![
            "10.200.3.2/32".parse().expect("net"),
            "10.200.4.0/24".parse().expect("net"),
            "fd00:200:3::/64".parse().expect("net"),
        ];
        let r = render(&TableSpec {
            routed: vec![(hosts, vec![Service::tcp(22), Service::udp(51820)])],
            ..spec()
        });
        let chain: Vec<&str> = r
            .lines()
            .filter_map(|l| l.strip_prefix("add rule inet knocker prerouting "))
            .collect();
        assert_eq!(
            &chain[chain.len() - 2..],
            [
                "ip daddr { 10.200.3.2/32, 10.200.4.0/24 } meta l4proto . th dport { tcp . 22, udp . 51820 } drop",
                "ip6 daddr { fd00:200:3::/64 } meta l4proto . th dport { tcp . 22, udp . 51820 } drop",
            ]
        );
        // the grants and the admin's ways in come first; nothing published, so no fib rule
        assert!(chain.contains(&"ip saddr . meta l4proto . th dport @allow4 meta mark set meta mark | 0x4b4e0000 accept"));
        assert!(chain.contains(&"ip saddr @trusted4 accept"));
        assert!(!r.contains("fib daddr"), "{r}");
    }

    /// nft's JSON for the table exactly as `spec` renders it: its sets and maps, its chains (base chains
    /// with the type, hook and priority the script gives them) and as many rules in each.
    fn live_json_of(spec: &TableSpec) -> String {
        let mut objs =
            vec![r#"{"table": {"family": "inet", "name": "knocker", "handle": 1}}"#.to_string()];
        let script = render(spec);
        let mut deleted = Vec::new();
        for line in script.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["add", kind @ ("set" | "map"), _, _, name, ..] => objs.push(format!(
                    r#"{{"{kind}": {{"family": "inet", "name": "{name}", "table": "knocker"}}}}"#
                )),
                ["add", "chain", _, _, name, "{", "type", kind, "hook", hook, "priority", prio, ..] => {
                    objs.push(format!(
                        r#"{{"chain": {{"family": "inet", "table": "knocker", "name": "{name}", "type": "{kind}", "hook": "{hook}", "prio": {}, "policy": "accept"}}}}"#,
                        prio.trim_end_matches(';')
                    ))
                }
                ["add", "rule", _, _, chain, ..] => objs.push(format!(
                    r#"{{"rule": {{"family": "inet", "table": "knocker", "chain": "{chain}", "expr": []}}}}"#
                )),
                ["delete", "chain", _, _, name] => deleted.push(name.to_string()),
                _ => {}
            }
        }
        objs.retain(|o| {
            !deleted.iter().any(|d| {
                o.contains(&format!(r#""name": "{d}""#))
                    || o.contains(&format!(r#""chain": "{d}""#))
            })
        });
        format!(r#"{{"nftables": [{}]}}"#, objs.join(", "))
    }

    #[test]
    fn health_sees_the_nat_chains_moved_or_retyped() {
        let spec = TableSpec {
            forward: vec![Service::tcp(2200)],
            nat: vec![(Service::tcp(2200), "10.0.0.5:22".parse().expect("target"))],
            snat: vec![(
                "10.0.0.5:22".parse().expect("target"),
                knocker_engine::Proto::Tcp,
                crate::config::NatSource::Masquerade,
            )],
            ..spec()
        };
        let live = live_json_of(&spec);
        assert_eq!(
            health_of(&live, &spec).ok(),
            Some(TableHealth::Intact),
            "{live}"
        );
        let nat = r#""name": "nat", "type": "nat", "hook": "prerouting", "prio": -105"#;
        let post = r#""name": "postrouting", "type": "nat", "hook": "postrouting", "prio": 95"#;
        assert!(live.contains(nat) && live.contains(post), "{live}");
        for (from, to, why) in [
            (
                nat,
                nat.replace("-105", "-100"),
                "chain nat is not a nat chain on hook prerouting at priority -105",
            ),
            (
                nat,
                nat.replace(r#""type": "nat""#, r#""type": "filter""#),
                "chain nat is not a nat chain",
            ),
            (
                nat,
                nat.replace(r#""hook": "prerouting""#, r#""hook": "output""#),
                "chain nat is not a nat chain",
            ),
            (
                post,
                post.replace("95", "200"),
                "chain postrouting is not a nat chain on hook postrouting at priority 95",
            ),
        ] {
            let moved = live.replace(from, &to);
            assert!(
                matches!(health_of(&moved, &spec), Ok(TableHealth::Differs(ref d)) if d.starts_with(why)),
                "{why}: {:?}",
                health_of(&moved, &spec)
            );
        }
    }

    #[test]
    fn live_client_nat_entries_are_read_from_nfts_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "inet", "name": "client_nat4", "table": "knocker", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 1, "map": "ipv4_addr . inet_service", "flags": ["timeout"], "elem": [[{"elem": {"val": {"concat": ["10.200.1.2", "tcp", 2222]}, "timeout": 30, "expires": 29}}, {"concat": ["10.200.3.2", 22]}], [{"elem": {"val": {"concat": ["10.200.1.3", "tcp", 99999]}, "timeout": 30, "expires": 29}}, {"concat": ["10.200.3.2", 22]}]]}}, {"map": {"family": "inet", "name": "other", "table": "knocker", "elem": [[{"elem": {"val": {"concat": ["10.200.1.4", "tcp", 22]}, "expires": 9}}, {"concat": ["10.200.3.2", 22]}]]}}]}"#;
        assert_eq!(
            client_nat_of(json).expect("json"),
            [(
                "10.200.1.2".parse().expect("ip"),
                Service::tcp(2222),
                "10.200.3.2:22".parse().expect("target"),
                std::time::Duration::from_secs(29)
            )]
        );
        assert!(client_nat_of("[").is_err());
    }

    #[test]
    fn client_named_inner_hosts_are_dnatted_by_grant_and_map_together() {
        let plain = render(&spec());
        for map in [CLIENT_NAT4, CLIENT_NAT6] {
            assert!(
                plain.contains(&format!("add map inet knocker {map} {{")),
                "{plain}"
            );
        }
        assert!(plain.contains("add map inet knocker client_nat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; }"), "{plain}");
        assert!(plain.contains("delete chain inet knocker nat\n"), "{plain}");
        let r = render(&TableSpec {
            client_nat: true,
            ..spec()
        });
        let rules: Vec<&str> = r
            .lines()
            .filter_map(|l| l.strip_prefix("add rule inet knocker nat "))
            .collect();
        assert_eq!(
            rules,
            [
                "fib daddr type local ip saddr . meta l4proto . th dport @allow4 meta mark set meta mark | 0x4b4e0000 dnat ip to ip saddr . meta l4proto . th dport map @client_nat4",
                "fib daddr type local ip6 saddr . meta l4proto . th dport @allow6 meta mark set meta mark | 0x4b4e0000 dnat ip6 to ip6 saddr . meta l4proto . th dport map @client_nat6",
            ]
        );
        assert!(!r.contains("delete chain inet knocker nat\n"), "{r}");
    }

    #[test]
    fn a_nat_door_dnats_granted_sources_only_by_the_grant_element_itself() {
        let to4: std::net::SocketAddr = "10.200.3.2:22".parse().expect("addr");
        let to6: std::net::SocketAddr = "[fd00:200:3::2]:22".parse().expect("addr");
        let r = render(&TableSpec {
            forward: vec![Service::tcp(2222), Service::tcp(2223), Service::udp(2222)],
            nat: vec![
                (Service::tcp(2222), to4),
                (Service::tcp(2223), to4),
                (Service::udp(2222), to4),
                (Service::tcp(2222), to6),
            ],
            ..spec()
        });
        assert!(r.contains("add chain inet knocker nat { type nat hook prerouting priority -105; policy accept; }\nflush chain inet knocker nat\n"), "{r}");
        let chain: Vec<&str> = r
            .lines()
            .filter_map(|l| l.strip_prefix("add rule inet knocker nat "))
            .collect();
        assert_eq!(
            chain,
            [
                "fib daddr type local meta l4proto tcp th dport { 2222, 2223 } ip saddr . meta l4proto . th dport @allow4 dnat ip to 10.200.3.2:22",
                "fib daddr type local meta l4proto udp th dport { 2222 } ip saddr . meta l4proto . th dport @allow4 dnat ip to 10.200.3.2:22",
                "fib daddr type local meta l4proto tcp th dport { 2222 } ip6 saddr . meta l4proto . th dport @allow6 dnat ip6 to [fd00:200:3::2]:22",
            ]
        );
        // the services are judged (and mallory dropped) in the prerouting chain, before the DNAT
        assert!(r.contains("add rule inet knocker prerouting fib daddr type local meta l4proto . th dport { tcp . 2222, tcp . 2223, udp . 2222 } drop\n"), "{r}");
        assert!(
            !r.contains("delete chain inet knocker nat\n")
                && !r.contains("delete chain inet knocker prerouting\n"),
            "{r}"
        );
    }

    #[test]
    fn health_sees_the_prerouting_chain_and_a_stale_one() {
        let forwarding = TableSpec {
            forward: vec![Service::tcp(8080)],
            ..spec()
        };
        let rules = |chain: &str, spec: &TableSpec| {
            render(spec)
                .lines()
                .filter(|l| l.starts_with(&format!("add rule inet knocker {chain} ")))
                .count()
        };
        let input = rules("input", &forwarding);
        let pre = rules("prerouting", &forwarding);
        assert_eq!(pre, 8);
        let with_pre = |policy: &str, prio: i32, n: usize| {
            let mut objs = live_json(input, "accept");
            objs.truncate(objs.len() - 2);
            let mut extra = format!(
                r#", {{"chain": {{"family": "inet", "table": "knocker", "name": "prerouting", "handle": 90, "type": "filter", "hook": "prerouting", "prio": {prio}, "policy": "{policy}"}}}}"#
            );
            for h in 0..n {
                extra.push_str(&format!(
                    r#", {{"rule": {{"family": "inet", "table": "knocker", "chain": "prerouting", "handle": {}, "expr": []}}}}"#,
                    h + 100
                ));
            }
            format!("{objs}{extra}]}}")
        };
        assert_eq!(
            health_of(&with_pre("accept", -110, pre), &forwarding).ok(),
            Some(TableHealth::Intact)
        );
        // the prerouting chain deleted (the input chain intact), flushed, or moved after DNAT
        assert_eq!(
            health_of(&live_json(input, "accept"), &forwarding).ok(),
            Some(TableHealth::Differs("chain prerouting is missing".into()))
        );
        assert_eq!(
            health_of(&with_pre("accept", -110, 0), &forwarding).ok(),
            Some(TableHealth::Differs(format!(
                "chain prerouting has 0 rules instead of {pre}"
            )))
        );
        assert!(matches!(
            health_of(&with_pre("accept", 0, pre), &forwarding),
            Ok(TableHealth::Differs(d)) if d.contains("not a filter chain on hook prerouting at priority -110")
        ));
        // a configuration that no longer forwards: the old chain must go
        let plain = rules("input", &spec());
        let mut stale = live_json(plain, "accept");
        stale.truncate(stale.len() - 2);
        let stale = format!(
            r#"{stale}, {{"chain": {{"family": "inet", "table": "knocker", "name": "prerouting", "handle": 90, "type": "filter", "hook": "prerouting", "prio": -110, "policy": "accept"}}}}]}}"#
        );
        assert_eq!(
            health_of(&stale, &spec()).ok(),
            Some(TableHealth::Differs(
                "chain prerouting is there, but the configuration has none".into()
            ))
        );
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
    fn each_group_of_doors_logs_on_its_interfaces_and_protection_follows() {
        let mut two = spec();
        two.listen[0].interfaces = vec!["eth0".into(), "wg0".into()];
        two.listen.push(Listen {
            interfaces: vec!["eth1".into()],
            knock: vec![Service::tcp(7100)],
            spa_ports: vec![62301],
            ..Listen::default()
        });
        two.protect_on = vec![(vec!["eth1".into()], vec![Service::tcp(443)])];
        let r = render(&two);
        assert!(r.contains("add rule inet knocker input iifname { \"eth0\", \"wg0\" } meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth1\" meta l4proto . th dport { tcp . 7100 } log group 4100"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth1\" meta l4proto . th dport { udp . 62301 } log prefix"), "{r}");
        assert!(r.contains("add rule inet knocker input iifname \"eth1\" meta l4proto . th dport { tcp . 443 } drop\n"), "{r}");
        // protected on every interface too, and last
        let at = |needle: &str| r.find(needle).expect(needle);
        assert!(
            at("iifname \"eth1\" meta l4proto . th dport { tcp . 443 } drop")
                < at("add rule inet knocker input meta l4proto . th dport { tcp . 22 } drop")
        );
        // the knock rules and the protection are counted by verify as any rule: one group is
        // what a configuration without interfaces renders, as before
        assert!(!render(&spec()).contains("iifname"), "{}", render(&spec()));
    }

    #[test]
    fn widened_grants_mask_the_source_before_the_lookup() {
        assert!(
            !render(&spec()).contains("allow4_"),
            "no set without a door that widens"
        );
        let r = render(&TableSpec {
            grant_prefixes: vec![(true, 24), (false, 56)],
            ..spec()
        });
        assert!(r.contains("add set inet knocker allow4_24 { type ipv4_addr . inet_proto . inet_service; flags timeout; }"), "{r}");
        assert!(r.contains("add set inet knocker allow6_56 { type ipv6_addr . inet_proto . inet_service; flags timeout; }"), "{r}");
        assert!(r.contains("ip saddr & 255.255.255.0 . meta l4proto . th dport @allow4_24 meta mark set meta mark | 0x4b4e0000 accept"), "{r}");
        assert!(r.contains("ip6 saddr & ffff:ffff:ffff:ff00:: . meta l4proto . th dport @allow6_56 meta mark set"), "{r}");
        // beside the exact grants, before the protection
        let at = |needle: &str| r.find(needle).expect(needle);
        assert!(
            at("@allow6 ") < at("@allow4_24")
                && at("@allow6_56") < at("th dport { tcp . 22 } drop")
        );
        // the prerouting chain of forwarded services admits them, and the nat chain sends them on
        let r = render(&TableSpec {
            grant_prefixes: vec![(true, 24)],
            forward: vec![Service::tcp(8080)],
            nat: vec![(Service::tcp(2200), "10.0.0.5:22".parse().expect("target"))],
            ..spec()
        });
        assert!(r.contains("add rule inet knocker prerouting ip saddr & 255.255.255.0 . meta l4proto . th dport @allow4_24 meta mark set"), "{r}");
        assert!(r.contains("add rule inet knocker nat fib daddr type local meta l4proto tcp th dport { 2200 } ip saddr & 255.255.255.0 . meta l4proto . th dport @allow4_24 dnat ip to 10.0.0.5:22"), "{r}");
        assert!(
            !r.contains("add rule inet knocker postrouting"),
            "no source rewrite asked: {r}"
        );
        let r = render(&TableSpec {
            nat: vec![(Service::tcp(2200), "10.0.0.5:22".parse().expect("target"))],
            snat: vec![
                (
                    "10.0.0.5:22".parse().expect("target"),
                    knocker_engine::Proto::Tcp,
                    crate::config::NatSource::Masquerade,
                ),
                (
                    "[fd00::5]:22".parse().expect("target"),
                    knocker_engine::Proto::Tcp,
                    crate::config::NatSource::Address("fd00::1".parse().expect("ip")),
                ),
            ],
            ..spec()
        });
        assert!(r.contains("add chain inet knocker postrouting { type nat hook postrouting priority 95; policy accept; }"), "{r}");
        assert!(r.contains("add rule inet knocker postrouting ct status dnat ip daddr 10.0.0.5 meta l4proto tcp th dport 22 masquerade\n"), "{r}");
        assert!(r.contains("add rule inet knocker postrouting ct status dnat ip6 daddr fd00::5 meta l4proto tcp th dport 22 snat ip6 to fd00::1\n"), "{r}");
        assert!(!render(&spec()).contains("add rule inet knocker postrouting"));
        assert!(render(&spec()).contains("delete chain inet knocker postrouting"));
        assert_eq!(netmask(true, 16), "255.255.0.0");
        assert_eq!(netmask(false, 64), "ffff:ffff:ffff:ffff::");
        // what the kernel holds reads back as the network
        let json = r#"{"nftables": [{"table": {"family": "inet", "name": "knocker"}},
            {"set": {"family": "inet", "name": "allow4", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["10.200.1.9", "tcp", 22]}, "timeout": 30, "expires": 20}}]}},
            {"set": {"family": "inet", "name": "allow4_24", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["100.64.7.0", "tcp", 22]}, "timeout": 30, "expires": 28}}]}},
            {"set": {"family": "inet", "name": "allow4_x", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["10.0.0.1", "tcp", 22]}, "timeout": 30, "expires": 28}}]}},
            {"set": {"family": "inet", "name": "conn4_1", "table": "knocker", "elem": [{"elem": {"val": {"concat": ["10.200.1.2", "tcp", 22]}, "timeout": 30, "expires": 28}}]}}]}"#;
        let g = grants_of(json).expect("json");
        let seen: Vec<(&str, Option<std::net::IpAddr>)> =
            g.iter().map(|g| (g.to.as_str(), g.addr())).collect();
        assert_eq!(
            seen,
            [
                ("10.200.1.9", Some("10.200.1.9".parse().expect("ip"))),
                ("100.64.7.0/24", Some("100.64.7.0".parse().expect("ip")))
            ]
        );
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
        for map in script
            .lines()
            .filter(|l| l.starts_with("add map"))
            .filter_map(|l| l.split_whitespace().nth(4))
        {
            objs.push(format!(
                r#"{{"map": {{"family": "inet", "name": "{map}", "table": "knocker", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 2, "map": ["ipv4_addr", "inet_service"], "flags": ["timeout"]}}}}"#
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
        let no_map =
            live_json(want, "accept").replace(r#""name": "client_nat4""#, r#""name": "x""#);
        assert_eq!(
            health_of(&no_map, &spec).ok(),
            Some(TableHealth::Differs("map client_nat4 is missing".into()))
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

    #[test]
    fn a_default_drop_forward_chain_is_named_for_nat_doors() {
        let json = |rules: &str| {
            format!(
                r#"{{"nftables": [{{"chain": {{"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}}}, {{"chain": {{"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 2}}}}, {{"rule": {{"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 3, "expr": [{{"jump": {{"target": "DOCKER-USER"}}}}]}}}}{rules}]}}"#
            )
        };
        let w = forward_drop_warnings(&json(""), DEFAULT).expect("json");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("chain ip filter FORWARD (hook forward, policy drop) would drop the connections knockerd's nat doors send on: add `meta mark & 0x4b4e0000 == 0x4b4e0000 accept`"), "{}", w[0]);
        assert!(w[0].contains("DOCKER-USER"), "{}", w[0]);
        // the mark accepted in the chain Docker leaves to the admin
        let mark_rule = r#", {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 4, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 1263403008]}, "right": 1263403008}}, {"accept": null}]}}"#;
        assert!(forward_drop_warnings(&json(mark_rule), DEFAULT)
            .expect("json")
            .is_empty());
        // no grant mark: nothing to accept by, whatever the chain holds
        let w = forward_drop_warnings(&json(mark_rule), 0).expect("json");
        assert!(
            w[0].contains("set grant_mark = 0x4b4e0000 in [daemon] and add"),
            "{}",
            w[0]
        );
        let accepting = json("").replace("\"policy\": \"drop\"", "\"policy\": \"accept\"");
        assert!(forward_drop_warnings(&accepting, DEFAULT)
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
