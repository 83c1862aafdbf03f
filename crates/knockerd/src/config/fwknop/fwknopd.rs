//! fwknopd.conf: the settings that matter to knockerd (the SPA port, the packet age, the
//! interface, NAT), and warnings for those whose behaviour knockerd does not have.

use std::fmt;
use std::path::Path;

use super::syntax::{
    c_bool, line_err, numbered_lines, scan_line, shown_var, whole_number, Entry, MAX_LINE_LEN,
};
use super::{FwknopdConf, DEFAULT_SPA_PORT};
use crate::config::ConfigError;

/// `RCHK_MAX_SPA_PACKET_AGE`.
const RCHK_MAX_SPA_PACKET_AGE: i64 = 100_000;

/// Every fwknopd.conf variable Debian's fwknopd 2.6.10 knows (its `-D` output): others are
/// ignored with a warning, as fwknopd ignores them.
pub(super) const FWKNOPD_VARS: [&str; 55] = [
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

    if let Some((_, v, n)) = get("MAX_SPA_PACKET_AGE") {
        let age = whole_number(
            "MAX_SPA_PACKET_AGE",
            v.as_bytes(),
            1,
            RCHK_MAX_SPA_PACKET_AGE,
        )
        .map_err(|e| line_err(file, *n, e))?;
        conf.max_age = Some(age as u64);
    }
    if get("ENABLE_SPA_PACKET_AGING").is_some() && !yes("ENABLE_SPA_PACKET_AGING") {
        conf.max_age = None;
    }
    if let Some((_, v, _)) = get("PCAP_INTF") {
        conf.interface = Some(v.trim_end().to_string());
    }
    conf.nat_enabled = yes("ENABLE_IPT_FORWARDING") || yes("ENABLE_IPT_LOCAL_NAT");
    conf.forwarding = yes("ENABLE_IPT_FORWARDING");
    if yes("ENABLE_UDP_SERVER") {
        let (port, n) = match get("UDPSERV_PORT") {
            Some((_, v, n)) => (
                whole_number("UDPSERV_PORT", v.as_bytes(), 1, 65535)
                    .map_err(|e| line_err(file, *n, e))? as u16,
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
        let (port, exact) = pcap_filter_port(v).map_err(|e| line_err(file, *n, e))?;
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
        ("ENABLE_IPT_FORWARDING", true, "is Y: knockerd honours FORCE_NAT stanzas (its own DNAT, for granted sources only), and a client's own inner host (fwknop -N elsewhere) only in the networks --fwknop-nat-targets lists (a native door: nat_networks; without them, refused); turn on IP forwarding yourself (net.ipv4.ip_forward=1)"),
        ("ENABLE_IPT_LOCAL_NAT", true, "is Y: knockerd does no local NAT (fwknop --nat-local is refused); FORCE_NAT stanzas are honoured"),
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

/// Why knockerd cannot take the SPA port from a PCAP_FILTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unwatchable {
    PortRange,
    Tcp,
    NoPort,
    ManyPorts,
    SourcePort,
    NotANumber,
    PortZero,
}

impl fmt::Display for Unwatchable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unwatchable::PortRange => "a port range (fwknop's --rand-port) is not supported",
            Unwatchable::Tcp => "SPA over TCP is not supported",
            Unwatchable::NoPort => "it names no port",
            Unwatchable::ManyPorts => "it names more than one port",
            Unwatchable::SourcePort => "it filters on the source port",
            Unwatchable::NotANumber => "the port is not a number",
            Unwatchable::PortZero => "port 0",
        })
    }
}

/// A PCAP_FILTER knockerd cannot run (its text, without trailing whitespace, and why).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PcapFilterError {
    filter: String,
    why: Unwatchable,
}

impl fmt::Display for PcapFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PCAP_FILTER {:?}: {}; knockerd watches exactly one UDP port: write `udp port N`",
            self.filter, self.why
        )
    }
}

/// The SPA port in a pcap filter: one `port N` (optionally `dst port N`, with `udp` or no
/// protocol), and whether the filter is exactly `udp port N` or `udp dst port N`.
fn pcap_filter_port(filter: &str) -> Result<(u16, bool), PcapFilterError> {
    let lower = filter.to_ascii_lowercase();
    let spaced = lower.replace(['(', ')'], " ");
    let tokens: Vec<&str> = spaced.split_ascii_whitespace().collect();
    let refuse = |why: Unwatchable| {
        Err(PcapFilterError {
            filter: filter.trim_end().to_string(),
            why,
        })
    };
    if tokens.iter().any(|t| t.contains("portrange")) {
        return refuse(Unwatchable::PortRange);
    }
    if tokens.contains(&"tcp") {
        return refuse(Unwatchable::Tcp);
    }
    let ports: Vec<(usize, &str)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == "port")
        .map(|(i, _)| (i, tokens.get(i + 1).copied().unwrap_or("")))
        .collect();
    let [(i, num)] = ports.as_slice() else {
        return refuse(if ports.is_empty() {
            Unwatchable::NoPort
        } else {
            Unwatchable::ManyPorts
        });
    };
    if *i > 0 && tokens[i - 1] == "src" {
        return refuse(Unwatchable::SourcePort);
    }
    let Ok(port) = num.parse::<u16>() else {
        return refuse(Unwatchable::NotANumber);
    };
    if port == 0 {
        return refuse(Unwatchable::PortZero);
    }
    let exact = tokens == ["udp", "port", num] || tokens == ["udp", "dst", "port", num];
    Ok((port, exact))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
