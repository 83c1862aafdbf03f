//! The firewall front-ends admins run on top of nftables, ufw and firewalld, recognised in the
//! live ruleset (`nft -j list ruleset`), and the one step each needs for a grant to take effect.
//!
//! - **ufw** (through iptables-nft, Debian's default) keeps its rules in `table ip filter` and
//!   `table ip6 filter`, whose `INPUT` chains have a drop policy and jump to `ufw-before-input`
//!   and `ufw6-before-input`. Rules added with `iptables` by hand are gone at the next
//!   `ufw reload`, so the mark rule belongs in ufw's own `/etc/ufw/before.rules` and
//!   `before6.rules` ([`ufw_step`]); [`crate::ruleset::drop_warnings`] follows the jumps to find
//!   it.
//! - **firewalld** keeps its rules in `table inet firewalld`, whose input chain ends with a
//!   reject rule (its policy is accept), and its rule language cannot match a packet mark
//!   (firewalld issue 681). The step there is opening each protected service in firewalld's zone:
//!   knocker's chain, which runs first, still drops it for every source without a grant.
//!
//! Everything here reads only what it is given; a ruleset that is not what it expects is simply
//! not recognised.

use knocker_engine::{Proto, Service};

/// The chain of `table ip filter` that ufw's IPv4 `before.rules` fill.
pub const UFW_BEFORE4: &str = "ufw-before-input";
/// The same for IPv6 (`before6.rules`).
pub const UFW_BEFORE6: &str = "ufw6-before-input";
/// ufw's configuration file, whose `ENABLED=yes` says ufw loads its rules at boot.
pub const UFW_CONF: &str = "/etc/ufw/ufw.conf";
/// firewalld's table (its nftables backend).
pub const FIREWALLD_TABLE: &str = "firewalld";

/// ufw's rules file for an address family and the chain the mark rule goes into.
fn ufw_file(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("/etc/ufw/before6.rules", UFW_BEFORE6)
    } else {
        ("/etc/ufw/before.rules", UFW_BEFORE4)
    }
}

/// The line of ufw's before.rules (or before6.rules) that accepts granted packets.
pub fn ufw_rule(v6: bool, mark: u32) -> String {
    let (_, chain) = ufw_file(v6);
    format!("-A {chain} -m mark --mark {mark:#x}/{mark:#x} -j ACCEPT")
}

/// The one step for ufw, for one address family: where the line goes and how it takes effect.
pub fn ufw_step(v6: bool, mark: u32) -> String {
    let (file, _) = ufw_file(v6);
    format!(
        "add `{}` to {file}, on the line after `# End required lines`, then run `ufw reload`",
        ufw_rule(v6, mark)
    )
}

/// Whether a base chain is ufw's, by the chains it reaches (see
/// [`crate::ruleset::drop_warnings`]), and for which address family (`Some(true)`: IPv6).
pub fn ufw_family<'a>(mut reached: impl Iterator<Item = &'a str>) -> Option<bool> {
    reached.find_map(|c| match c {
        UFW_BEFORE4 => Some(false),
        UFW_BEFORE6 => Some(true),
        _ => None,
    })
}

/// The commands that open one protected service in firewalld's default zone, permanently.
pub fn firewalld_step(service: &Service) -> String {
    format!(
        "firewall-cmd --permanent --add-port={}/{} && firewall-cmd --reload",
        service.port, service.proto
    )
}

/// What `knockerd check` says about a front-end: a plain note or a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Note(String),
    Warning(String),
}

/// The front-ends in the live ruleset (`ruleset`, already parsed), and what each still lacks:
/// ufw's step for the grant mark (`grant_mark`, 0: none), firewalld's open ports for the
/// `protected` services. `ufw_conf` is the text of [`UFW_CONF`], if it could be read: an
/// enabled ufw whose chains are not in nftables (iptables-legacy) is named from it.
///
/// Whether ufw's chains lack the mark rule is [`crate::ruleset::drop_warnings`]'s to say (they
/// are default-drop chains like any other); this names the front-end and its step.
pub fn findings(
    ruleset: &serde_json::Value,
    grant_mark: u32,
    protected: &[Service],
    ufw_conf: Option<&str>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let chains: Vec<(&str, &str, &str)> = items(ruleset, "chain")
        .map(|c| {
            (
                c["family"].as_str().unwrap_or(""),
                c["table"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let ufw: Vec<bool> = [false, true]
        .into_iter()
        .filter(|v6| {
            let (_, chain) = ufw_file(*v6);
            chains.iter().any(|(_, _, name)| *name == chain)
        })
        .collect();
    let mark = if grant_mark == 0 {
        crate::config::DEFAULT_GRANT_MARK
    } else {
        grant_mark
    };
    if !ufw.is_empty() {
        let steps: Vec<String> = ufw.iter().map(|v6| ufw_step(*v6, mark)).collect();
        out.push(Finding::Note(format!(
            "front-end: ufw (its chains are in the live ruleset); the step for grants to pass its default deny (a warning below says where it is missing): {}",
            steps.join("; and ")
        )));
    } else if ufw_conf.is_some_and(ufw_enabled) {
        out.push(Finding::Warning(format!(
            "ufw is enabled in {UFW_CONF}, but none of its chains is in the nftables ruleset (is it inactive, or on iptables-legacy, whose rules nft cannot see?); for grants to pass its default deny, {}; and {}",
            ufw_step(false, mark),
            ufw_step(true, mark)
        )));
    }
    let firewalld =
        items(ruleset, "table").any(|t| t["family"] == "inet" && t["name"] == FIREWALLD_TABLE);
    if firewalld {
        out.push(Finding::Note(format!(
            "front-end: firewalld (table inet {FIREWALLD_TABLE}); it cannot match the grant mark, so each protected service is opened in its zone instead, and knocker's chain (which runs first) keeps it dropped for every source without a grant"
        )));
        let rules: Vec<&serde_json::Value> = items(ruleset, "rule")
            .filter(|r| {
                r["family"] == "inet"
                    && r["table"] == FIREWALLD_TABLE
                    && r["chain"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("filter_IN_"))
            })
            .collect();
        for s in protected
            .iter()
            .filter(|s| matches!(s.proto, Proto::Tcp | Proto::Udp))
        {
            if !rules.iter().any(|r| opens(&r["expr"], s)) {
                out.push(Finding::Warning(format!(
                    "firewalld rejects {s} even for a granted source: `{}` (add --zone=ZONE for a zone other than the default one)",
                    firewalld_step(s)
                )));
            }
        }
    }
    out
}

/// Whether ufw.conf says `ENABLED=yes`.
pub fn ufw_enabled(conf: &str) -> bool {
    conf.lines().any(|l| {
        l.trim().strip_prefix("ENABLED=").is_some_and(|v| {
            v.trim()
                .trim_matches(['"', '\''])
                .eq_ignore_ascii_case("yes")
        })
    })
}

/// Whether a rule's expressions accept a service for every source: a match on its destination
/// port (a port, a range or a set of them) for its protocol, an accept, and no match on
/// addresses (a rich rule for some sources only does not open the service to a granted one).
fn opens(expr: &serde_json::Value, s: &Service) -> bool {
    let Some(list) = expr.as_array() else {
        return false;
    };
    let proto = s.proto.to_string();
    let accepts = list.iter().any(|e| e.get("accept").is_some());
    let mut port = false;
    for e in list {
        let m = &e["match"];
        let field = m["left"]["payload"]["field"].as_str().unwrap_or("");
        if matches!(field, "saddr" | "daddr") {
            return false;
        }
        if field == "dport"
            && m["left"]["payload"]["protocol"] == proto.as_str()
            && matches!(m["op"].as_str(), Some("==" | "in"))
            && covers(&m["right"], s.port)
        {
            port = true;
        }
    }
    accepts && port
}

/// Whether an nft JSON value (a port, `{"range": [a, b]}` or `{"set": [...]}`) holds `port`.
fn covers(v: &serde_json::Value, port: u16) -> bool {
    let p = u64::from(port);
    if let Some(n) = v.as_u64() {
        return n == p;
    }
    if let Some([a, b]) = v["range"].as_array().map(Vec::as_slice) {
        return a.as_u64().is_some_and(|a| a <= p) && b.as_u64().is_some_and(|b| p <= b);
    }
    // a set's elements are ports and ranges, never sets: one level, whatever the input nests
    v["set"]
        .as_array()
        .is_some_and(|set| set.iter().any(|e| !e["set"].is_array() && covers(e, port)))
}

/// The objects of one kind (`chain`, `rule`, `table`) of `nft -j list ruleset`.
pub fn items<'a>(
    v: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: u32 = 0x4b4e_0000;

    fn parse(s: &str) -> serde_json::Value {
        serde_json::from_str(s).expect("json")
    }

    /// The heart of firewalld 1.3's ruleset (Debian bookworm), as `nft -j list ruleset` prints
    /// it: its table, input chain, and the public zone opening ssh and, for one prefix only,
    /// dhcpv6-client.
    fn firewalld(extra_rules: &str) -> serde_json::Value {
        parse(&format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6", "json_schema_version": 1}}}},
            {{"table": {{"family": "inet", "name": "firewalld", "handle": 1}}}},
            {{"chain": {{"family": "inet", "table": "firewalld", "name": "filter_INPUT", "handle": 2, "type": "filter", "hook": "input", "prio": 10, "policy": "accept"}}}},
            {{"chain": {{"family": "inet", "table": "firewalld", "name": "filter_IN_public_allow", "handle": 3}}}},
            {{"rule": {{"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "handle": 4, "expr": [{{"reject": {{"type": "icmpx", "expr": "admin-prohibited"}}}}]}}}},
            {{"rule": {{"family": "inet", "table": "firewalld", "chain": "filter_IN_public_allow", "handle": 5, "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": 22}}}}, {{"accept": null}}]}}}},
            {{"rule": {{"family": "inet", "table": "firewalld", "chain": "filter_IN_public_allow", "handle": 6, "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip6", "field": "daddr"}}}}, "right": {{"prefix": {{"addr": "fe80::", "len": 64}}}}}}}}, {{"match": {{"op": "==", "left": {{"payload": {{"protocol": "udp", "field": "dport"}}}}, "right": 546}}}}, {{"accept": null}}]}}}}
            {extra_rules}]}}"#
        ))
    }

    fn warnings(f: &[Finding]) -> Vec<&str> {
        f.iter()
            .filter_map(|f| match f {
                Finding::Warning(w) => Some(w.as_str()),
                Finding::Note(_) => None,
            })
            .collect()
    }

    #[test]
    fn firewalld_is_named_and_each_protected_service_it_rejects_gets_its_step() {
        let protected = [Service::tcp(22), Service::tcp(2222), Service::udp(546)];
        let f = findings(&firewalld(""), MARK, &protected, None);
        assert!(
            matches!(&f[0], Finding::Note(n) if n.contains("front-end: firewalld")),
            "{f:?}"
        );
        // ssh is open in the zone; udp/546 only for one prefix, which is not every source
        assert_eq!(
            warnings(&f),
            [
                "firewalld rejects tcp/2222 even for a granted source: `firewall-cmd --permanent --add-port=2222/tcp && firewall-cmd --reload` (add --zone=ZONE for a zone other than the default one)",
                "firewalld rejects udp/546 even for a granted source: `firewall-cmd --permanent --add-port=546/udp && firewall-cmd --reload` (add --zone=ZONE for a zone other than the default one)",
            ]
        );
        // the step in place: `--add-port=2222/tcp`, and a range covering 546
        let opened = r#", {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_IN_public_allow", "handle": 7, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 2222}}, {"accept": null}]}},
            {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_IN_public_allow", "handle": 8, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"set": [53, {"range": [500, 600]}]}}}, {"accept": null}]}}"#;
        let f = findings(&firewalld(opened), MARK, &protected, None);
        assert!(warnings(&f).is_empty(), "{f:?}");
        // the port of another protocol, or a drop, opens nothing
        let wrong = opened
            .replace("\"udp\"", "\"tcp\"")
            .replace("accept", "drop");
        let f = findings(&firewalld(&wrong), MARK, &protected, None);
        assert_eq!(warnings(&f).len(), 2, "{f:?}");
    }

    #[test]
    fn ufw_is_named_from_its_chains_or_its_enabled_conf() {
        let chains = r#"{"nftables": [{"chain": {"family": "ip", "table": "filter", "name": "ufw-before-input", "handle": 1}}, {"chain": {"family": "ip6", "table": "filter", "name": "ufw6-before-input", "handle": 1}}]}"#;
        let f = findings(&parse(chains), 0x10, &[], None);
        assert_eq!(f.len(), 1, "{f:?}");
        let Finding::Note(n) = &f[0] else {
            panic!("{f:?}")
        };
        assert!(
            n.contains("add `-A ufw-before-input -m mark --mark 0x10/0x10 -j ACCEPT` to /etc/ufw/before.rules, on the line after `# End required lines`, then run `ufw reload`")
                && n.contains("`-A ufw6-before-input -m mark --mark 0x10/0x10 -j ACCEPT` to /etc/ufw/before6.rules"),
            "{n}"
        );
        let empty = parse(r#"{"nftables": []}"#);
        let conf = "# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n";
        let f = findings(&empty, MARK, &[], Some(conf));
        assert!(
            matches!(&f[..], [Finding::Warning(w)] if w.contains("iptables-legacy") && w.contains("--mark 0x4b4e0000/0x4b4e0000")),
            "{f:?}"
        );
        assert!(findings(&empty, MARK, &[], Some("ENABLED=no\n")).is_empty());
        assert!(findings(&empty, MARK, &[], None).is_empty());
        assert!(ufw_enabled("ENABLED=\"yes\""));
        assert!(!ufw_enabled("#ENABLED=yes"));
    }

    #[test]
    fn a_ruleset_of_other_shapes_is_not_recognised_and_never_panics() {
        for junk in [
            r#"{}"#,
            r#"{"nftables": 3}"#,
            r#"{"nftables": [{"table": {"family": "inet", "name": "firewalld"}}, {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_IN_x", "expr": [{"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"range": [1]}}}]}}]}"#,
            r#"{"nftables": [{"chain": {"name": 7}}, {"rule": {"expr": "x"}}]}"#,
        ] {
            let _ = findings(&parse(junk), MARK, &[Service::tcp(22)], Some("\u{0}"));
        }
        assert!(findings(&parse(r#"{"nftables": []}"#), MARK, &[], None).is_empty());
    }
}
