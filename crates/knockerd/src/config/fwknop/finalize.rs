//! From a [`Draft`] to what knockerd runs: fwknopd's end-of-file processing for one stanza
//! (`expand_acc_ent_lists()`, `set_acc_defaults()`), then every reason knockerd cannot run it,
//! each with its line. A stanza with no reason becomes a [`Stanza`], one with reasons a
//! [`RefusedStanza`]; what fwknopd refuses is a [`ConfigError`].

use std::net::SocketAddrV4;

use knocker_engine::Service;
use knocker_wire::fwknop::{MAX_ENC_KEY, MAX_HMAC_KEY};
use zeroize::Zeroizing;

use super::draft::{At, Draft, HmacType, Loc};
use super::syntax::line_err;
use super::values::{addr_list, port_list, utc_date, ListError};
use super::{
    CmdCycle, Digest, Legacy, Network, RefusedStanza, Stanza, DEFAULT_FW_ACCESS_TIMEOUT,
    DEFAULT_MAX_FW_TIMEOUT,
};
use crate::config::ConfigError;

/// A stanza knockerd does not run, and the warnings about it.
pub(super) type Declined = (RefusedStanza, Vec<String>);

/// A key and where it was set.
type Key = At<Zeroizing<Vec<u8>>>;

/// What one line of a refusal says: `file:line: VARIABLE: why`.
fn reason(at: &Loc, text: String) -> String {
    format!("{at}: {text}")
}

/// A list fwknopd cannot read: it refuses the file.
fn fatal(at: &Loc, what: &str, why: ListError) -> ConfigError {
    line_err(
        &at.file,
        at.line,
        format!(
            "{what}: {why} (fwknopd refuses the file: \"Fatal invalid {what} in access stanza\")"
        ),
    )
}

/// SOURCE, DESTINATION, OPEN_PORTS and RESTRICT_PORTS, read.
struct Lists {
    sources: Vec<Network>,
    destinations: Vec<Network>,
    open_ports: Vec<Service>,
    restrict_ports: Vec<Service>,
}

/// fwknopd's `expand_acc_ent_lists()` and `set_acc_defaults()` for one stanza, then what
/// knockerd cannot honour.
pub(super) fn finalize(
    mut d: Draft,
    number: usize,
    now: u64,
    legacy: Legacy,
) -> Result<Result<Stanza, Declined>, ConfigError> {
    let source_at = Loc {
        file: d.file.clone(),
        line: d.line,
    };
    let mut reasons: Vec<String> = Vec::new();
    let lists = read_lists(&mut d, &source_at, &mut reasons)?;
    let (fw_access_timeout, max_fw_timeout) = timeouts(&mut d, &source_at);
    gpg_signatures(&d)?;

    // what knockerd cannot honour
    refuse_gpg(&mut d, &mut reasons);
    let key = d.key.take();
    let hmac = d.hmac_key.take().filter(|(_, k)| !k.is_empty());
    refuse_keys(&mut d, &key, &hmac, (&source_at, legacy), &mut reasons);
    let hmac_digest = refuse_ciphers(&d, &mut reasons);
    refuse_cmd_exec(&mut d, &mut reasons);
    let (force_nat, nat_source) = refuse_nat(&d, &lists, &mut reasons);
    let cmd_cycle = cmd_cycle(&mut d, &lists);
    let access_expire = expiry(&mut d, now);

    if !reasons.is_empty() {
        let r = RefusedStanza {
            file: d.file.clone(),
            line: d.line,
            number,
            source: d.shown_source(),
            reasons,
        };
        return Ok(Err((r, d.warnings)));
    }
    let Some((key_at, enc_key)) = key else {
        // unreachable: fwknopd_valid() requires a key without GnuPG, and GnuPG is a reason
        return Err(line_err(&d.file, d.line, "the stanza has no keys"));
    };
    // without an HMAC key only with Legacy::Allow (a reason above otherwise)
    let (hmac_origin, hmac_key) = match hmac {
        Some((hmac_at, k)) => (format!("{} at {hmac_at}", d.hmac_var), Some(k)),
        None => ("none (fwknop's legacy mode)".to_string(), None),
    };
    Ok(Ok(Stanza {
        file: d.file.clone(),
        line: d.line,
        number,
        sources: lists.sources,
        destinations: lists.destinations,
        open_ports: lists.open_ports,
        restrict_ports: lists.restrict_ports,
        enc_key,
        hmac_key,
        hmac_digest,
        fw_access_timeout,
        max_fw_timeout,
        access_expire,
        require_username: d.require_username.take().map(|(_, u)| u),
        require_source_address: d.require_source_address,
        cmd_cycle,
        force_nat,
        nat_source,
        key_origin: format!("{} at {key_at}", d.key_var),
        hmac_origin,
        warnings: d.warnings,
    }))
}

/// `expand_acc_ent_lists()`: the address and port lists, in fwknopd's order.
fn read_lists(
    d: &mut Draft,
    source_at: &Loc,
    reasons: &mut Vec<String>,
) -> Result<Lists, ConfigError> {
    let source = d.source.clone();
    let sources = address_list(d, source_at, "SOURCE", &source, reasons)?;
    let destinations = match d.destination.take() {
        Some((at, text)) => address_list(d, &at, "DESTINATION", &text, reasons)?,
        None => vec![Network::Any],
    };
    let open_slot = d.open_ports.take();
    let restrict_slot = d.restrict_ports.take();
    let open_ports = ports(d, open_slot, "OPEN_PORTS")?;
    let restrict_ports = ports(d, restrict_slot, "RESTRICT_PORTS")?;
    Ok(Lists {
        sources,
        destinations,
        open_ports,
        restrict_ports,
    })
}

/// SOURCE or DESTINATION: its warnings become the stanza's, the entries knockerd cannot
/// express become reasons.
fn address_list(
    d: &mut Draft,
    at: &Loc,
    var: &str,
    text: &[u8],
    reasons: &mut Vec<String>,
) -> Result<Vec<Network>, ConfigError> {
    let mut list_warnings = Vec::new();
    let (list, bad) = addr_list(text, &mut list_warnings).map_err(|e| fatal(at, var, e))?;
    for w in list_warnings {
        d.note(at, format!("{var}: {w}"));
    }
    reasons.extend(bad.into_iter().map(|b| reason(at, format!("{var}: {b}"))));
    Ok(list)
}

/// OPEN_PORTS or RESTRICT_PORTS (empty when not given).
fn ports(d: &mut Draft, slot: At<Vec<u8>>, var: &str) -> Result<Vec<Service>, ConfigError> {
    match slot {
        Some((at, text)) => {
            let mut w = Vec::new();
            let list = port_list(&text, var, &mut w).map_err(|e| fatal(&at, var, e))?;
            for w in w {
                d.note(&at, w);
            }
            Ok(list)
        }
        None => Ok(Vec::new()),
    }
}

/// `set_acc_defaults()`: FW_ACCESS_TIMEOUT and MAX_FW_TIMEOUT, 0 meaning the default; the
/// access timeout never above the maximum.
fn timeouts(d: &mut Draft, source_at: &Loc) -> (u64, u64) {
    let fw = d.fw_access_timeout.as_ref().map_or(0, |(_, v)| *v).max(0) as u64;
    let mut fw_access_timeout = if fw < 1 {
        DEFAULT_FW_ACCESS_TIMEOUT
    } else {
        fw
    };
    let max = d.max_fw_timeout.as_ref().map_or(0, |(_, v)| *v).max(0) as u64;
    let max_fw_timeout = if max < 1 { DEFAULT_MAX_FW_TIMEOUT } else { max };
    if let Some((at, 0)) = &d.fw_access_timeout {
        let at = at.clone();
        d.note(&at, format!("FW_ACCESS_TIMEOUT 0 means fwknopd's default, {DEFAULT_FW_ACCESS_TIMEOUT} s; so it does to knockerd"));
    }
    if max_fw_timeout < fw_access_timeout {
        let at = d
            .fw_access_timeout
            .as_ref()
            .map_or(source_at.clone(), |(l, _)| l.clone());
        d.note(&at, format!("FW_ACCESS_TIMEOUT {fw_access_timeout} is above MAX_FW_TIMEOUT {max_fw_timeout}: fwknopd says it honours MAX_FW_TIMEOUT but grants {fw_access_timeout} s (seen on Debian's fwknopd); knockerd grants {max_fw_timeout} s"));
        fw_access_timeout = max_fw_timeout;
    }
    (fw_access_timeout, max_fw_timeout)
}

/// fwknopd refuses to start when a GnuPG stanza has no way to check signatures.
fn gpg_signatures(d: &Draft) -> Result<(), ConfigError> {
    if let Some((at, _)) = &d.gpg_decrypt_pw {
        if !d.gpg_disable_sig && !d.gpg_remote {
            return Err(line_err(&at.file, at.line, "GnuPG signatures are checked by default, and this stanza names no GPG_REMOTE_ID or GPG_FINGERPRINT_ID: fwknopd refuses to start"));
        }
    }
    Ok(())
}

/// GnuPG is a reason; without it, the other GPG_* variables only get a warning.
fn refuse_gpg(d: &mut Draft, reasons: &mut Vec<String>) {
    if let Some((at, _)) = &d.gpg_decrypt_pw {
        reasons.push(reason(at, "GnuPG (GPG_DECRYPT_PW / GPG_ALLOW_NO_PW): knockerd does not decrypt GnuPG packets; give the stanza KEY_BASE64 and HMAC_KEY_BASE64 (`fwknop --key-gen`) and its clients --use-hmac".into()));
    } else {
        for (at, var) in &d.gpg_other {
            let text = format!(
                "{var} has no effect without GPG_DECRYPT_PW or GPG_ALLOW_NO_PW (in fwknopd too)"
            );
            d.warnings.push(reason(at, text));
        }
    }
}

/// No HMAC key (a reason unless legacy mode is allowed, then a warning), or keys longer than
/// knockerd (or fwknop) takes.
fn refuse_keys(
    d: &mut Draft,
    key: &Key,
    hmac: &Key,
    (source_at, legacy): (&Loc, Legacy),
    reasons: &mut Vec<String>,
) {
    match hmac {
        None if legacy == Legacy::Allow => {
            let at = key.as_ref().map_or(source_at, |(l, _)| l).clone();
            d.note(&at, "LEGACY MODE: this stanza has no HMAC_KEY: with --fwknop-allow-legacy it runs, and every packet sent to its port from its SOURCE is decrypted with its KEY before anything authenticates it (only the unkeyed digest inside checks it; SECURITY.md, \"fwknop's legacy mode\"); replays are still refused. Switch: add HMAC_KEY_BASE64 (`fwknop --key-gen`), give the clients --use-hmac, then drop --fwknop-allow-legacy".into());
        }
        None => reasons.push(reason(source_at, "no HMAC_KEY or HMAC_KEY_BASE64: knockerd never decrypts a packet it has not authenticated (fwknopd 2.6.10 would, with only a warning); add HMAC_KEY_BASE64 (`fwknop --key-gen` makes one) and give clients --use-hmac with that key. To switch daemons before the clients, --fwknop-allow-legacy runs such stanzas as fwknopd does, with warnings (weaker: SECURITY.md, \"fwknop's legacy mode\")".into())),
        Some((at, k)) if k.len() > MAX_HMAC_KEY => reasons.push(reason(at, format!("{}: the HMAC key is {} bytes; knockerd takes at most {MAX_HMAC_KEY} (fwknopd: {}), use a shorter one (`fwknop --key-gen` makes 64)", d.hmac_var, k.len(), 136))),
        Some(_) => {}
    }
    if let Some((at, k)) = key {
        if k.len() > MAX_ENC_KEY {
            reasons.push(reason(at, format!("{}: the encryption key is {} bytes; fwknop keys are at most {MAX_ENC_KEY} (fwknopd cannot decrypt anything with this one either)", d.key_var, k.len())));
        }
    }
}

/// ENCRYPTION_MODE other than CBC and SHA-3 HMACs are reasons; returns the HMAC digest.
fn refuse_ciphers(d: &Draft, reasons: &mut Vec<String>) -> Digest {
    if let Some((at, mode)) = &d.encryption_mode {
        if mode != "cbc" {
            reasons.push(reason(at, format!("ENCRYPTION_MODE {mode}: knockerd decrypts only CBC, fwknop's default; remove the line here and the client's -M option")));
        }
    }
    match &d.hmac_type {
        None => Digest::Sha256,
        Some((_, HmacType::Known(dg))) => *dg,
        Some((at, t)) => {
            let name = if *t == HmacType::Sha3_256 {
                "sha3_256"
            } else {
                "sha3_512"
            };
            reasons.push(reason(at, format!("HMAC_DIGEST_TYPE {name}: knockerd checks md5, sha1, sha256, sha384 and sha512 HMACs; use sha256 (the default) here and in the client's --hmac-digest-type")));
            Digest::Sha256
        }
    }
}

/// ENABLE_CMD_EXEC Y is a reason; without it, the command-message variables get a warning.
fn refuse_cmd_exec(d: &mut Draft, reasons: &mut Vec<String>) {
    let cmd_exec = d.enable_cmd_exec.as_ref().is_some_and(|(_, b)| *b);
    if let Some((at, true)) = &d.enable_cmd_exec {
        if d.cmd_cycle_open.is_some() {
            // a common mistake, and harmless: incoming_spa() runs the command cycle for every
            // message of such a stanza and never reaches process_cmd_msg()
            let at = at.clone();
            d.note(&at, "ENABLE_CMD_EXEC Y has no effect in a stanza with CMD_CYCLE_OPEN: fwknopd runs the command cycle for every message and never a command sent in a packet, and neither does knockerd; the command cycle needs no ENABLE_CMD_EXEC, remove the line".into());
        } else {
            reasons.push(reason(at, "ENABLE_CMD_EXEC Y: fwknopd runs any command a key holder sends (`fwknop -C`), as root; knockerd never runs a command that comes in a packet, so this stanza is not run. To run a fixed command when its key holder knocks, name it in the configuration: here CMD_CYCLE_OPEN /path/to/command $SRC with CMD_CYCLE_CLOSE NONE, or in a native door (`knockerd import-fwknop`) start_command = [\"/path/to/command\", \"%IP%\"]; then remove ENABLE_CMD_EXEC".into()));
        }
    }
    if !cmd_exec {
        if let Some((at, true)) = &d.enable_cmd_sudo_exec {
            let at = at.clone();
            d.note(
                &at,
                "ENABLE_CMD_SUDO_EXEC has no effect without ENABLE_CMD_EXEC Y (in fwknopd too)"
                    .into(),
            );
        }
        for (at, var) in d.cmd_users.clone() {
            d.note(
                &at,
                format!("{var} has no effect without ENABLE_CMD_EXEC Y (in fwknopd too)"),
            );
        }
    }
}

/// FORCE_NAT is honoured as knockerd's own DNAT (a `nat` door) for the stanza's OPEN_PORTS, and
/// FORCE_SNAT or FORCE_MASQUERADE beside it as the door's `nat_source` (FORCE_SNAT first, as
/// fwknopd checks it first); what knockerd does not do (forwarding every port, forwarding
/// without DNAT) is a reason.
fn refuse_nat(
    d: &Draft,
    lists: &Lists,
    reasons: &mut Vec<String>,
) -> (Option<SocketAddrV4>, Option<crate::config::NatSource>) {
    let mut target = None;
    if let Some((at, to)) = &d.force_nat {
        let ip = to.ip();
        if to.port() == 0
            || ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_multicast()
            || ip.is_broadcast()
        {
            reasons.push(reason(at, format!("FORCE_NAT {to}: knockerd forwards only to an inner host's address and a port other than 0")));
        } else if lists.open_ports.is_empty() {
            reasons.push(reason(at, "FORCE_NAT without OPEN_PORTS: knockerd sends on only the ports a stanza lists; add OPEN_PORTS with the port clients ask for (e.g. OPEN_PORTS tcp/2222)".into()));
        } else if d.cmd_cycle_open.is_some() {
            reasons.push(reason(at, "FORCE_NAT with CMD_CYCLE_OPEN: fwknopd runs the commands instead of any firewall rule; remove one of them".into()));
        } else {
            target = Some(*to);
        }
    }
    // without FORCE_NAT the draft refused them already (fwknopd's words)
    let source = match (&d.force_snat, &d.force_masquerade) {
        (Some((_, ip)), _) => Some(crate::config::NatSource::Address(std::net::IpAddr::V4(*ip))),
        (None, Some((_, true))) => Some(crate::config::NatSource::Masquerade),
        _ => None,
    };
    for (slot, var, why) in [
        (&d.forward_all, "FORWARD_ALL", "knockerd does not forward every port to an inner host; use FORCE_NAT with OPEN_PORTS"),
        (&d.disable_dnat, "DISABLE_DNAT", "knockerd does not forward without DNAT from an access.conf; a native door with `forward = [hosts]` does that"),
    ] {
        if let Some((at, true)) = slot {
            reasons.push(reason(at, format!("{var} Y: {why}")));
        }
    }
    (target, source.filter(|_| target.is_some()))
}

/// CMD_CYCLE_OPEN with CMD_CYCLE_CLOSE (fwknopd_valid() made sure they come as a pair).
fn cmd_cycle(d: &mut Draft, lists: &Lists) -> Option<CmdCycle> {
    let cmd_cycle = match (d.cmd_cycle_open.take(), d.cmd_cycle_close.take()) {
        (Some((at, open)), Some((_, close))) => {
            if !lists.open_ports.is_empty() || !lists.restrict_ports.is_empty() {
                d.note(&at, "CMD_CYCLE_OPEN: fwknopd 2.6.10 runs the command cycle before it checks OPEN_PORTS and RESTRICT_PORTS, so it ignores them for this stanza (seen on Debian's fwknopd); knockerd checks them".into());
            }
            let close = (!close.starts_with("NONE")).then_some(close);
            let timer = d.cmd_cycle_timer.as_ref().map_or(0, |(_, t)| *t) as u64;
            Some(CmdCycle { open, close, timer })
        }
        _ => None,
    };
    if cmd_cycle.is_none() {
        if let Some((at, _)) = &d.cmd_cycle_timer {
            let at = at.clone();
            d.note(
                &at,
                "CMD_CYCLE_TIMER has no effect without CMD_CYCLE_OPEN (in fwknopd too)".into(),
            );
        }
    }
    cmd_cycle
}

/// ACCESS_EXPIRE(_EPOCH), with a warning when it is already past.
fn expiry(d: &mut Draft, now: u64) -> Option<u64> {
    let access_expire = d.access_expire.as_ref().map(|(_, t)| *t as u64);
    if let (Some(t), Some((at, _))) = (access_expire, &d.access_expire) {
        if t <= now {
            let at = at.clone();
            d.note(
                &at,
                format!(
                    "the stanza expired at {}: it never matches (in fwknopd neither)",
                    utc_date(t)
                ),
            );
        }
    }
    access_expire
}
