//! `knockerd import-fwknop`: an fwknopd configuration as knockerd's native TOML.

use std::fmt;
use std::path::Path;

use super::access::load;
use super::values::utc_date;
use super::{CmdCycle, FwknopConf, Network, Stanza, DEFAULT_MAX_AGE};
use crate::config::{toml_comment as comment, toml_quote as quote, Command, ConfigError};

/// What `knockerd import-fwknop` prints: the native TOML and the warnings.
pub fn import(
    access: &Path,
    fwknopd_conf: Option<&Path>,
) -> Result<(String, Vec<String>), ConfigError> {
    let c = load(access, fwknopd_conf)?;
    Ok((to_toml(&c), c.warnings.clone()))
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", inner.join(", "))
}

/// The native TOML for [`FwknopConf`], one door of kind `fwknop` per stanza, in fwknopd's order.
/// Key material is never printed: each door names key files to write, and a note says which
/// access.conf lines hold the keys.
pub fn to_toml(c: &FwknopConf) -> String {
    let mut out = String::new();
    header(&mut out, c);
    for s in &c.stanzas {
        door(&mut out, c, s);
    }
    out
}

/// Where the file comes from, what holds for every door, and the warnings that concern no
/// single door, refused stanzas included.
fn header(out: &mut String, c: &FwknopConf) {
    let from = match &c.fwknopd_conf {
        Some(f) => format!("{} and {}", c.access_file.display(), f.display()),
        None => c.access_file.display().to_string(),
    };
    comment(
        out,
        "",
        &format!("knockerd configuration imported from {from} by `knockerd import-fwknop`."),
    );
    comment(out, "", "Check it with `knockerd check --config FILE`. `# note:` lines say where knockerd's meaning");
    comment(out, "", "differs from fwknopd's, `# warning:` lines need a look; docs/fwknop.md lists every difference.");
    out.push_str("#\n");
    comment(out, "note: ", "for every door: the HMAC is checked first, in constant time, and a packet that fails it is");
    comment(
        out,
        "note: ",
        "never decrypted; stanzas without an HMAC key are not imported.",
    );
    comment(out, "note: ", "for every door: the allow IP a client puts in its packet must be the packet's source address");
    comment(out, "note: ", "(0.0.0.0 means the source), unless the door says allow_other_address = true; fwknopd granted");
    comment(
        out,
        "note: ",
        "any address the client named (fwknop issue #367: carrier-grade NAT makes the two differ).",
    );
    comment(out, "note: ", "for every door: a grant is an element of knockerd's nftables sets with a kernel timeout, for");
    comment(
        out,
        "note: ",
        "IPv4 and IPv6; fwknopd added iptables rules and removed them from a timer.",
    );
    comment(out, "note: ", "for every door: replay digests are kept in knockerd's ledger for the age window (max_age).");
    for w in &c.global_warnings {
        comment(out, "warning: ", w);
    }
    for r in &c.refused {
        comment(
            out,
            "warning: ",
            &format!(
                "stanza #{} ({}:{}, SOURCE {}) is not imported:",
                r.number,
                r.file.display(),
                r.line,
                r.source
            ),
        );
        for why in &r.reasons {
            comment(out, "warning:   ", why);
        }
    }
}

/// One stanza as `[door.fwknop-N]`.
fn door(out: &mut String, c: &FwknopConf, s: &Stanza) {
    let name = s.door_name();
    out.push_str(&format!("\n[door.{name}]\n"));
    comment(
        out,
        "",
        &format!(
            "fwknopd's stanza #{}: {}:{}",
            s.number,
            s.file.display(),
            s.line
        ),
    );
    for w in &s.warnings {
        comment(out, "warning: ", w);
    }
    out.push_str("kind = \"fwknop\"\n");
    out.push_str(&format!("port = {}\n", c.spa_port));
    out.push_str(&format!("sources = {}\n", list(&s.sources)));
    if s.destinations != [Network::Any] {
        comment(
            out,
            "note: ",
            "DESTINATION: only packets sent to these addresses of this host count.",
        );
        out.push_str(&format!("destinations = {}\n", list(&s.destinations)));
    }
    door_open(out, s);
    if c.forwarding && s.force_nat.is_none() && s.cmd_cycle.is_none() {
        comment(out, "note: ", "fwknopd.conf has ENABLE_IPT_FORWARDING Y: fwknopd sent a client's NAT request (fwknop -N)");
        comment(
            out,
            "note: ",
            "to any host it named. This door refuses it until you list the inner hosts' networks:",
        );
        comment(out, "", "nat_networks = [\"10.0.0.0/24\"]");
    }
    door_keys(out, s);
    door_limits(out, c, s);
}

/// What the door opens: nothing itself for a command cycle, else OPEN_PORTS.
fn door_open(out: &mut String, s: &Stanza) {
    if s.cmd_cycle.is_some() {
        // the commands are the firewall: knockerd's table drops nothing for this door
        if s.open_ports.is_empty() {
            comment(out, "note: ", "OPEN_PORTS is not set: fwknopd ran the commands for whatever the client asked for. A native");
            comment(out, "note: ", "door must list what a packet may ask for: put those services here (the first one asked");
            comment(out, "note: ", "for is %PORT% and %PROTO% in the commands).");
        } else {
            comment(out, "note: ", &format!("OPEN_PORTS {}: fwknopd 2.6.10 did not check it for a command cycle; knockerd does.", list(&s.open_ports)));
        }
        comment(out, "note: ", "The commands below are the firewall, as in fwknopd: `protect = false`, knockerd drops nothing.");
        out.push_str(&format!(
            "open = {}\nprotect = false\n",
            list(&s.open_ports)
        ));
    } else {
        if s.open_ports.is_empty() {
            comment(out, "note: ", "OPEN_PORTS is not set: fwknopd opened whatever the client asked for (minus RESTRICT_PORTS).");
            comment(
                out,
                "note: ",
                "A native door must list what it opens: put those services here.",
            );
        } else {
            comment(out, "note: ", "these services are protected: dropped for everyone without a grant. fwknopd relied on your");
            comment(
                out,
                "note: ",
                "own firewall dropping them; if that firewall stays, add `protect = false`.",
            );
        }
        out.push_str(&format!("open = {}\n", list(&s.open_ports)));
        if let Some(to) = s.force_nat {
            comment(
                out,
                "note: ",
                "FORCE_NAT: granted connections to these services are sent on to this inner host.",
            );
            out.push_str(&format!("nat = \"{to}\"\n"));
        }
    }
}

/// RESTRICT_PORTS and the key files to write (the keys are never printed).
fn door_keys(out: &mut String, s: &Stanza) {
    let name = s.door_name();
    if !s.restrict_ports.is_empty() {
        out.push_str(&format!("restrict = {}\n", list(&s.restrict_ports)));
    }
    out.push_str(&format!(
        "key_file = {}\n",
        quote(&format!("/etc/knocker/{name}.fwknop.key"))
    ));
    out.push_str(&format!(
        "hmac_key_file = {}\n",
        quote(&format!("/etc/knocker/{name}.fwknop.hmac.key"))
    ));
    comment(out, "note: ", &format!("write the keys to these two files (mode 0600) before using this door: the encryption key is {},", s.key_origin));
    comment(
        out,
        "note: ",
        &format!(
            "the HMAC key is {}. They are not copied here.",
            s.hmac_origin
        ),
    );
}

/// The HMAC digest, the durations, the expiry and the requirements, then the command cycle.
fn door_limits(out: &mut String, c: &FwknopConf, s: &Stanza) {
    out.push_str(&format!("hmac_digest = {}\n", quote(s.hmac_digest.name())));
    out.push_str(&format!("open_for = {}\n", s.fw_access_timeout));
    out.push_str(&format!("max_open_for = {}\n", s.max_fw_timeout));
    match c.max_age {
        Some(a) => out.push_str(&format!("max_age = {}\n", quote(&format!("{a}s")))),
        None => {
            comment(out, "warning: ", "fwknopd.conf turns packet aging off (ENABLE_SPA_PACKET_AGING N); a native door always checks");
            comment(out, "warning: ", &format!("the age, because its replay memory covers only the age window: {DEFAULT_MAX_AGE}s unless max_age says otherwise."));
        }
    }
    if let Some(t) = s.access_expire {
        comment(
            out,
            "note: ",
            &format!("the door never opens after {}.", utc_date(t)),
        );
        out.push_str(&format!("expire = {t}\n"));
    }
    if let Some(u) = &s.require_username {
        out.push_str(&format!("require_username = {}\n", quote(u)));
    }
    if s.require_source_address {
        comment(
            out,
            "note: ",
            "REQUIRE_SOURCE_ADDRESS: the allow IP 0.0.0.0 (the client's -s) is refused.",
        );
        out.push_str("require_source_address = true\n");
    }
    if let Some(cc) = &s.cmd_cycle {
        cmd_cycle_toml(out, cc);
    }
}

/// A command cycle as native commands, fwknopd's `$` variables as knockerd's placeholders.
fn cmd_cycle_toml(out: &mut String, cc: &CmdCycle) {
    let open = super::doors::cycle_command(&cc.open, cc.timer);
    let close = cc
        .close
        .as_deref()
        .map(|t| super::doors::cycle_command(t, cc.timer))
        .transpose();
    comment(
        out,
        "note: ",
        "CMD_CYCLE: fwknopd ran these commands instead of opening its firewall; so does this door",
    );
    comment(
        out,
        "note: ",
        "they run without a shell, split at spaces, as fwknopd runs them; $SRC is %IP%.",
    );
    let argv = |c: &Command| match c {
        Command::Argv(v) => v.clone(),
        Command::Shell(s) => vec![s.clone()],
    };
    match (open, close) {
        (Ok(o), Ok(Some(c))) => {
            out.push_str(&format!("start_command = {}\n", list(&argv(&o))));
            out.push_str(&format!("stop_command = {}\n", list(&argv(&c))));
            comment(out, "note: ", "a native door runs stop_command after stop_after even when the client asks for a timeout;");
            comment(out, "note: ", "fwknopd (and knockerd --fwknop-access) run CMD_CYCLE_CLOSE after the client's timeout then.");
            out.push_str(&format!("stop_after = {}\n", cc.timer));
        }
        (Ok(o), Ok(None)) => {
            comment(out, "note: ", "CMD_CYCLE_CLOSE NONE: no stop command.");
            out.push_str(&format!("start_command = {}\n", list(&argv(&o))));
        }
        (Err(e), _) | (_, Err(e)) => {
            comment(
                out,
                "warning: ",
                &format!("the commands cannot run as written: {e}"),
            );
            comment(out, "warning:   ", &format!("CMD_CYCLE_OPEN {}", cc.open));
            if let Some(c) = &cc.close {
                comment(
                    out,
                    "warning:   ",
                    &format!("CMD_CYCLE_CLOSE {c} (after {} s)", cc.timer),
                );
            }
        }
    }
}
