//! Never locking the admin out: what `knockerd check` and the daemon's start say, or refuse,
//! so that a configuration cannot silently close the server to the person who runs it.
//!
//! - [`start_problems`]: what would stop the daemon from starting (a missing worker user, no
//!   `nft`, no clients file for `spa`/`syn` doors). `check` exits non-zero on them, so
//!   systemd's `ExecStartPre=knockerd check` stops a broken start; the daemon refuses them too.
//! - [`warnings`]: what starts but may lock someone out (knocks seen on one interface only, a
//!   sequence printed in the docs, a door no client is enrolled for).
//! - [`admin_mark_script`]: the nft lines that let the admin's own rules admit a source, since an
//!   accept in the admin's chain cannot undo a drop in knocker's.

use knocker_engine::{Kind, Service};

use crate::config::{Config, Door, DoorKind};
use crate::ruleset::PRIORITY;

/// Knock sequences printed in knocker's docs and examples (README.md, docs/*.md, examples/,
/// the demo and knockerd's own messages) and in Debian's stock knockd.conf: anyone can read
/// them, so a door that uses one is as good as open. A unit test greps the docs, so a sequence
/// printed there and missing here fails the build.
pub const PUBLISHED_SEQUENCES: &[&str] = &[
    // README.md and examples/knockerd.toml
    "7113,9431:udp,8222,7719",
    // the demo, the tests and knockerd's own hint for a door without `sequence`
    "7000,9000:udp,8000",
    // Debian's /etc/knockd.conf (docs/knockd.md quotes the first)
    "7000,8000,9000",
    "9000,8000,7000",
    "12345,54321,24680",
];

/// Whether a static sequence door uses a sequence printed in the docs.
pub fn published(door: &Door) -> bool {
    if !matches!(door.spec.kind, Kind::Sequence) || door.spec.sequence.is_empty() {
        return false;
    }
    PUBLISHED_SEQUENCES
        .iter()
        .any(|p| parse_sequence(p).as_deref() == Some(door.spec.sequence.as_slice()))
}

fn parse_sequence(text: &str) -> Option<Vec<Service>> {
    text.split(',').map(|s| s.parse().ok()).collect()
}

/// Whether the door is one of knocker's own single-packet doors, which need enrolled clients.
fn native(door: &Door) -> bool {
    matches!(door.kind, DoorKind::Spa { .. } | DoorKind::Syn { .. })
}

/// What would stop the daemon from starting, each with its fix. `check` reports them and exits
/// non-zero; the daemon refuses to start (or to reload) on them.
pub fn start_problems(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let user = c
        .worker_user
        .as_deref()
        .unwrap_or(crate::privsep::DEFAULT_USER);
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) if !u.uid.is_root() => {}
        Ok(Some(_)) => out.push(format!(
            "worker_user {user:?} is root: the packet worker must run as an unprivileged user (e.g. \"nobody\")"
        )),
        Ok(None) => out.push(format!(
            "there is no user {user:?} for the packet worker to run as: create it (useradd --system --no-create-home {user}) or set [daemon] worker_user (--worker-user) to an existing unprivileged user"
        )),
        Err(e) => out.push(format!("cannot look up the worker user {user:?}: {e}")),
    }
    if let Err(e) = crate::ruleset::nft(&["--version"], None) {
        out.push(e.to_string());
    }
    if let Some(p) = c.source.file().and_then(crate::source::untrusted_file) {
        out.push(p);
    }
    if let Some(d) = c.doors.iter().find(|d| native(d)) {
        if !c.clients.exists() {
            out.push(format!(
                "{}: no clients file, so no client can open door {:?} and its services would be dropped for everyone: enroll a client first (`knockerd enroll NAME --public-key KEY --server HOST`)",
                c.clients.display(),
                d.spec.name
            ));
        }
    }
    out
}

/// What starts but may keep the admin out, each with what to do about it.
pub fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(
        c.source,
        crate::config::SourceSpec::KernelLog { file: None, .. }
    ) && std::fs::read_to_string(crate::source::kernel_log::NF_LOG_ALL_NETNS)
        .is_ok_and(|v| v.trim() == "1")
    {
        out.push(format!(
            "{} is 1: netfilter rules of every network namespace log into /dev/kmsg, so root in any of them (a container's) can write lines that knockerd takes as knocks; set it to 0 unless knockerd itself runs in a namespace that needs it",
            crate::source::kernel_log::NF_LOG_ALL_NETNS
        ));
    }
    if let Some(file) = c.source.file() {
        let user = c
            .worker_user
            .as_deref()
            .unwrap_or(crate::privsep::DEFAULT_USER);
        if let Ok(Some(u)) = nix::unistd::User::from_name(user) {
            if crate::source::unreadable_by(file, u.uid.as_raw(), u.gid.as_raw()) {
                out.push(format!(
                    "{} is not readable by the worker user {user}: knockerd opens it as root at start, but after a rotation the worker must open the new file itself, and cannot; make it readable by {user} (e.g. a dedicated worker_user whose primary group may read it: the worker drops supplementary groups)",
                    file.display()
                ));
            }
        }
    }
    if !c.interfaces.is_empty()
        && (!c.protected_everywhere().is_empty()
            || !c.forwarded().is_empty()
            || !c.routed().is_empty())
    {
        out.push(format!(
            "knocks are seen only on {}, but protection applies on every interface (failing closed): a source that reaches this host through another interface cannot knock, and gets to the protected services only through `trusted` or accept_mark (or a door's `protect_elsewhere = false`, which leaves them there to your firewall)",
            Config::name_interfaces(&c.interfaces)
        ));
    }
    for d in c
        .doors
        .iter()
        .filter(|d| d.protect && !d.spec.open.is_empty())
    {
        let on = Config::name_interfaces(c.listens_on(d));
        if !d.interfaces.is_empty() && d.protect_elsewhere {
            out.push(format!(
                "door {} (line {}) counts knocks only on {on}, but protects its services on every interface (failing closed): a source that reaches this host through another interface cannot open it (`protect_elsewhere = false` leaves the other interfaces to your firewall)",
                d.spec.name, d.line
            ));
        }
        if !d.protect_elsewhere {
            out.push(format!(
                "door {} (line {}) protects its services only on {on} (protect_elsewhere = false): on every other interface, a new one too, they are as open as your own firewall leaves them",
                d.spec.name, d.line
            ));
        }
    }
    for d in c.doors.iter().filter(|d| d.grant_prefix.is_set()) {
        let nets: Vec<String> = [d.grant_prefix.v4, d.grant_prefix.v6]
            .into_iter()
            .flatten()
            .map(|n| format!("/{n}"))
            .collect();
        out.push(format!(
            "door {} (line {}) widens its grants to the {} around the address that knocked (grant_prefix): everyone in that prefix gets in, not only the client who knocked; use it only for clients behind carrier-grade NAT, with the longest prefix that works for them",
            d.spec.name,
            d.line,
            nets.join(" and ")
        ));
    }
    for (v6, sysctl) in [
        (false, "/proc/sys/net/ipv4/ip_forward"),
        (true, "/proc/sys/net/ipv6/conf/all/forwarding"),
    ] {
        let nat = c.nat_targets();
        let Some((s, to)) = nat.iter().find(|(_, to)| to.is_ipv6() == v6) else {
            continue;
        };
        if std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "0") {
            out.push(format!(
                "{sysctl} is 0: this host does not forward, so {s} is never sent on to {to} (nat) and a granted source gets nothing; turn forwarding on (sysctl -w {}=1)",
                sysctl.trim_start_matches("/proc/sys/").replace('/', ".")
            ));
        }
    }
    if let Some(d) = c.doors.iter().find(|d| !d.nat_networks.is_empty()) {
        let sysctl = "/proc/sys/net/ipv4/ip_forward";
        if std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "0") {
            out.push(format!(
                "{sysctl} is 0: this host does not forward, so door {} never sends a client on to the inner host it names (--fwknop-nat-targets); turn forwarding on (sysctl -w net.ipv4.ip_forward=1)",
                d.spec.name
            ));
        }
    }
    for d in c.doors.iter().filter(|d| published(d)) {
        out.push(format!(
            "door {} (line {}) uses a sequence printed in knocker's docs or Debian's knockd.conf, which anyone can read: choose your own",
            d.spec.name, d.line
        ));
    }
    if c.doors.iter().any(native) && c.clients.exists() {
        if let Ok(clients) = crate::config::native::clients::load(&c.clients) {
            for d in c.doors.iter().filter(|d| native(d)) {
                if !clients.clients.iter().any(|k| k.may_use(&d.spec.name)) {
                    out.push(format!(
                        "no client in {} is enrolled for door {}: nobody can open it until one is (`knockerd enroll NAME --public-key KEY --server HOST --door {}`)",
                        c.clients.display(),
                        d.spec.name,
                        d.spec.name
                    ));
                }
            }
        }
    }
    out
}

/// Why the admin's own accept rules do not help, for `check`.
pub const ACCEPTS_DO_NOT_OVERRIDE: &str = "an accept in your own firewall does not stop knocker's drop (in nftables each base chain on the input hook sees the packet, and a drop in any of them is final)";

/// The admin's nft lines that mark packets from the sources they admit, before knocker's chain
/// sees them (knocker's input chain runs at priority -10: a prerouting chain, or an input chain
/// at a lower priority). `192.0.2.0/24` and `2001:db8::/32` stand for the admin's networks.
pub fn admin_mark_script(mark: u32) -> String {
    format!(
        "table inet admin_marks {{\n\
         \x20   chain prerouting {{\n\
         \x20       type filter hook prerouting priority mangle; policy accept;\n\
         \x20       ip saddr 192.0.2.0/24 meta mark set meta mark | {mark:#010x}\n\
         \x20       ip6 saddr 2001:db8::/32 meta mark set meta mark | {mark:#010x}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Other chains on the input hook whose own accept rules (by address or port) might be taken to
/// let sources past knocker's protection: they do not, and `check` says so.
pub fn accept_warnings(ruleset_json: &str, c: &Config) -> Vec<String> {
    if c.protected().is_empty() {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(ruleset_json) else {
        return Vec::new();
    };
    let objects: Vec<&serde_json::Value> = v["nftables"].as_array().into_iter().flatten().collect();
    let mut out = Vec::new();
    for chain in objects.iter().filter_map(|o| o.get("chain")) {
        let (family, table, name) = (&chain["family"], &chain["table"], &chain["name"]);
        if chain["hook"] != "input" || (family == "inet" && table == crate::config::TABLE) {
            continue;
        }
        let accepts_by_address = objects.iter().filter_map(|o| o.get("rule")).any(|r| {
            let expr = r["expr"].to_string();
            r["family"] == *family
                && r["table"] == *table
                && r["chain"] == *name
                && expr.contains("\"accept\"")
                && (expr.contains("\"saddr\"") || expr.contains("\"dport\""))
                && !expr.contains("\"mark\"")
        });
        if accepts_by_address {
            let how = if c.accept_mark != 0 {
                format!("mark those packets with accept_mark {:#010x} before priority {PRIORITY} (the lines above)", c.accept_mark)
            } else {
                format!("list those sources in [daemon] trusted, or set accept_mark (e.g. {:#010x}) and mark them before priority {PRIORITY}", crate::config::SUGGESTED_ACCEPT_MARK)
            };
            out.push(format!(
                "chain {} {} {} accepts some sources or ports itself, but {ACCEPTS_DO_NOT_OVERRIDE}: to let a source past knocker's protection, {how}",
                family.as_str().unwrap_or("?"),
                table.as_str().unwrap_or("?"),
                name.as_str().unwrap_or("?"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every run of three or more knock-like tokens (`7113`, `9431:udp`; 100 to 65535) on one
    /// line of the published docs: the sequences a reader could copy.
    fn printed_sequences(text: &str) -> Vec<String> {
        let port = |t: &str| {
            let p = t
                .strip_suffix(":udp")
                .or(t.strip_suffix(":tcp"))
                .unwrap_or(t);
            !p.starts_with('0')
                && p.len() >= 3
                && p.parse::<u16>().is_ok()
                && t.parse::<Service>().is_ok()
        };
        let mut found = Vec::new();
        for line in text.lines() {
            let mut run: Vec<&str> = Vec::new();
            let tokens = line
                .split(|c: char| c.is_whitespace() || ",\"'[]`()".contains(c))
                .filter(|t| !t.is_empty());
            for t in tokens.chain(std::iter::once("end")) {
                if port(t) {
                    run.push(t);
                    continue;
                }
                if run.len() >= 3 {
                    found.push(run.join(","));
                }
                run.clear();
            }
        }
        found
    }

    #[test]
    fn every_sequence_printed_in_the_docs_is_known() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files: Vec<std::path::PathBuf> = ["README.md", "SECURITY.md", "ARCHITECTURE.md"]
            .iter()
            .map(|f| root.join(f))
            .collect();
        for dir in ["docs", "examples"] {
            for e in std::fs::read_dir(root.join(dir)).expect(dir) {
                files.push(e.expect("entry").path());
            }
        }
        let known: Vec<Vec<Service>> = PUBLISHED_SEQUENCES
            .iter()
            .map(|p| parse_sequence(p).expect("a list entry parses"))
            .collect();
        let mut seen = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("doc");
            for s in printed_sequences(&text) {
                seen += 1;
                let parsed = parse_sequence(&s).expect("scanned tokens parse");
                assert!(
                    known.contains(&parsed),
                    "{} prints the sequence {s}: add it to PUBLISHED_SEQUENCES",
                    f.display()
                );
            }
        }
        // the README's own example at least: the scan must find what it is meant to
        assert!(seen >= 2, "the scan found {seen} sequences");
    }

    #[test]
    fn the_scan_finds_sequences_in_every_written_form() {
        let found = printed_sequences(
            "sequence = [\"7113\", \"9431:udp\", \"8222\"]\n\
             knocker knock host 7000 9000:udp 8000 && ssh host\n\
             Debian's `7000,8000,9000` is one\n\
             at most 2, 4, 5 or 6 seconds; 100 000 entries\n",
        );
        assert_eq!(
            found,
            vec!["7113,9431:udp,8222", "7000,9000:udp,8000", "7000,8000,9000"]
        );
    }
}
