//! knockerd's own nftables table, `inet knocker`, and what knockerd learns from the rest of the
//! ruleset.
//!
//! The table is written as nft text and loaded with one `nft -f -`, which the kernel applies as
//! one transaction: either all of it or none. It is *updated* rather than deleted and recreated,
//! so the allow sets, and with them every open grant, survive a restart or reload. knockerd never
//! touches any other table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use knocker_engine::Service;

use crate::config::{Config, TABLE};

pub const SET4: &str = "allow4";
pub const SET6: &str = "allow6";
pub const CHAIN: &str = "input";
/// Our input chain's priority: before the usual `filter` (0) chains, so that the grant mark is
/// set before an admin's own chain looks at the packet.
pub const PRIORITY: i32 = -10;
/// Bytes of each logged knock packet copied to knockerd: IP and TCP/UDP headers with options.
pub const SNAPLEN: u16 = 128;
/// Bytes of each logged SPA datagram copied to knockerd: a whole SPA packet (fwknop's are at most
/// 1500 bytes of payload) with its headers. Also the copy range NFLOG is bound with.
pub const SPA_SNAPLEN: u16 = 1600;

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
    /// Drop knock packets once logged ([`Config::drop_knocks`]); otherwise every packet to a knock
    /// port is logged, established connections' too, and goes on to the admin's firewall.
    pub drop_knocks: bool,
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
            drop_knocks: c.drop_knocks,
        }
    }
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

/// The admin's one line for a default-drop chain of their own (nft syntax).
pub fn mark_accept_rule(mark: u32) -> String {
    format!("meta mark & {mark:#010x} == {mark:#010x} accept")
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
    let _ = writeln!(
        s,
        "add chain {t} {CHAIN} {{ type filter hook input priority {PRIORITY}; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {t} {CHAIN}");
    let rule = |s: &mut String, body: &str| {
        let _ = writeln!(s, "add rule {t} {CHAIN} {body}");
    };
    rule(&mut s, "iif \"lo\" accept");
    let knocks = |s: &mut String, verdict: &str| {
        if !spec.knock.is_empty() || !spec.knock_ranges.is_empty() {
            rule(
                s,
                &format!(
                    "{}meta l4proto . th dport {} log group {} snaplen {} queue-threshold 1{verdict}",
                    spec.interface
                        .as_ref()
                        .map(|i| format!("iifname \"{i}\" "))
                        .unwrap_or_default(),
                    service_and_range_set(&spec.knock, &spec.knock_ranges),
                    spec.nflog_group,
                    SNAPLEN
                ),
            );
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
    if spec.drop_knocks {
        knocks(&mut s, " drop");
    }
    if !spec.spa_ports.is_empty() {
        let ports: Vec<Service> = spec.spa_ports.iter().map(|p| Service::udp(*p)).collect();
        rule(
            &mut s,
            &format!(
                "{}meta l4proto . th dport {} log prefix \"{}\" group {} snaplen {} queue-threshold 1 drop",
                spec.interface.as_ref().map(|i| format!("iifname \"{i}\" ")).unwrap_or_default(),
                service_set(&ports),
                crate::nflog::SPA_PREFIX,
                spec.nflog_group,
                SPA_SNAPLEN
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
        // a SYN carries the knock; anything else to the port is dropped unlogged
        rule(
            &mut s,
            &format!(
                "{iif}meta l4proto . th dport {} tcp flags & (syn | ack) == syn log prefix \"{}\" group {} snaplen {} queue-threshold 1 drop",
                service_set(&ports),
                crate::nflog::SYN_PREFIX,
                spec.nflog_group,
                SNAPLEN
            ),
        );
        rule(
            &mut s,
            &format!("meta l4proto . th dport {} drop", service_set(&ports)),
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
    s
}

/// Runs `nft` with a script on stdin (`-f -`) or with arguments, returning stdout.
pub fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
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
            "the nft program is not installed (Debian: apt-get install nftables)".to_string()
        } else {
            format!("cannot run nft: {e}")
        }
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft failed: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Creates or updates knockerd's table atomically.
pub fn apply(spec: &TableSpec) -> Result<(), String> {
    nft(&["-f", "-"], Some(&render(spec))).map(|_| ())
}

/// Whether knockerd's table exists.
pub fn table_exists() -> Result<bool, String> {
    let out = nft(&["-j", "list", "tables", "inet"], None)?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("cannot read nft's JSON: {e}"))?;
    let found = items(&v, "table").any(|t| t["name"] == TABLE && t["family"] == "inet");
    Ok(found)
}

/// Removes knockerd's table: every grant ends, and knock and protected ports are no longer
/// dropped by knockerd. Returns false when there was no table.
pub fn teardown() -> Result<bool, String> {
    if !table_exists()? {
        return Ok(false);
    }
    nft(&["delete", "table", "inet", TABLE], None).map(|_| true)
}

/// Withdraws every grant at once.
pub fn flush_grants() -> Result<(), String> {
    let script = format!("flush set inet {TABLE} {SET4}\nflush set inet {TABLE} {SET6}\n");
    nft(&["-f", "-"], Some(&script)).map(|_| ())
}

/// An open grant as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    pub to: String,
    pub service: String,
    pub timeout_s: u64,
    pub expires_s: u64,
}

/// Lists the elements of knockerd's allow sets.
pub fn live_grants() -> Result<Vec<LiveGrant>, String> {
    let mut out = Vec::new();
    for set in [SET4, SET6] {
        let text = nft(&["-j", "list", "set", "inet", TABLE, set], None)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("cannot read nft's JSON: {e}"))?;
        for s in items(&v, "set") {
            for e in s["elem"].as_array().into_iter().flatten() {
                let elem = &e["elem"];
                let concat = &elem["val"]["concat"];
                out.push(LiveGrant {
                    to: concat[0].as_str().unwrap_or("?").to_string(),
                    service: format!("{}/{}", concat[1].as_str().unwrap_or("?"), concat[2]),
                    timeout_s: elem["timeout"].as_u64().unwrap_or(0),
                    expires_s: elem["expires"].as_u64().unwrap_or(0),
                });
            }
        }
    }
    Ok(out)
}

fn items<'a>(
    v: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(kind))
}

/// Looks at the whole live ruleset (`nft -j list ruleset`) for chains outside knockerd's table
/// that would drop a granted packet anyway, and says how to fix each.
///
/// The analysis is deliberately simple and errs towards warning: a base chain on the input hook
/// (families ip, ip6, inet) whose policy is drop and which has no rule matching the grant mark
/// with an accept verdict drops granted packets; so does such a chain that runs before
/// knockerd's (lower priority), because the mark is not set yet. Rules of iptables-legacy are
/// invisible to nft and not checked.
pub fn drop_warnings(ruleset_json: &str, grant_mark: u32) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(ruleset_json).map_err(|e| format!("cannot read nft's JSON: {e}"))?;
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
        if grant_mark == 0 {
            warnings.push(format!(
                "{what} drops granted packets, and grant_mark = 0 gives it nothing to accept them by: set grant_mark in [daemon] and add `{}` to that chain",
                mark_accept_rule(crate::config::DEFAULT_GRANT_MARK)
            ));
            continue;
        }
        if prio < i64::from(PRIORITY) {
            warnings.push(format!(
                "{what} runs before knockerd's chain (priority {PRIORITY}), so granted packets are not marked yet when it drops them: give it a priority above {PRIORITY}"
            ));
            continue;
        }
        let accepts_mark = rules.iter().any(|r| {
            r["family"] == family
                && r["table"] == table
                && r["chain"] == name
                && rule_accepts_mark(&r["expr"], grant_mark)
        });
        if !accepts_mark {
            warnings.push(format!(
                "{what} would drop granted packets: add `{}` to it, before its drop rules (iptables: -A INPUT -m mark --mark {grant_mark:#x}/{grant_mark:#x} -j ACCEPT)",
                mark_accept_rule(grant_mark)
            ));
        }
    }
    Ok(warnings)
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
            drop_knocks: true,
        }
    }
    const DEFAULT: u32 = crate::config::DEFAULT_GRANT_MARK;

    #[test]
    fn render_is_one_updating_transaction() {
        let r = render(&spec());
        assert!(r.starts_with("add table inet knocker\n"));
        assert!(
            !r.contains("delete table"),
            "replacing the table would drop open grants"
        );
        assert!(r.contains("flush chain inet knocker input"));
        assert!(r.contains("meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100 snaplen 128 queue-threshold 1 drop"));
        assert!(r.contains("meta l4proto . th dport { tcp . 22 } drop"));
        assert!(r.contains("meta l4proto . th dport { udp . 62201 } log prefix \"knocker-spa\" group 4100 snaplen 1600 queue-threshold 1 drop"));
        assert!(r.contains("meta l4proto . th dport { tcp . 443 } tcp flags & (syn | ack) == syn log prefix \"knocker-syn\" group 4100 snaplen 128 queue-threshold 1 drop"));
        assert!(r.contains("meta l4proto . th dport { tcp . 443 } drop"));
        // grants are accepted before knock and protected ports are dropped
        let grant = r.find("@allow4").expect("grant rule");
        assert!(grant < r.find("log group").expect("knock rule"));
        assert!(grant < r.rfind(" drop").expect("protect rule"));
    }

    #[test]
    fn a_knockd_conf_watches_knocks_without_dropping_them() {
        let r = render(&TableSpec {
            drop_knocks: false,
            ..spec()
        });
        let knock = "meta l4proto . th dport { tcp . 7000, udp . 9000, tcp . 40000-40999 } log group 4100 snaplen 128 queue-threshold 1\n";
        assert!(r.contains(knock), "{r}");
        assert!(!r.contains("40000-40999 } log group 4100 snaplen 128 queue-threshold 1 drop"));
        // before established connections are accepted, so that their packets are seen too
        assert!(r.find(knock) < r.find("ct state established"), "{r}");
        assert_eq!(r.matches("log group 4100 snaplen 128").count(), 1, "{r}");
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
}
