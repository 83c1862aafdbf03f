//! fwknopd's access.conf as knockerd doors: one SPA door per usable stanza, in fwknopd's order
//! (the first stanza whose sources admit the packet and whose key authenticates it decides).
//!
//! The stanza's keys go into the decoder closure handed to the engine (see
//! `knocker_engine::Spa`): HMAC in constant time first, then decryption, in knocker-wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use knocker_engine::{DoorSpec, Kind, Spa, SpaDecode, SpaError, SpaPrecheck, SpaRequest};
use knocker_wire::fwknop::{self, FwknopKeys, MessageType};

use crate::config::fwknop::{self as fwknop_conf, FwknopConf, Network, Stanza};
use crate::config::{Command, CommandVars, Config, ConfigError, Door, DoorKind, DEFAULT_STATE_DIR};

/// What a stanza's decoder does with a client's NAT request (`fwknop -N inner,port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientNat {
    /// FORCE_NAT: taken as an access request to the stanza's own inner host, as fwknopd takes
    /// it; the inner host the client names is never used.
    Forced,
    /// ENABLE_IPT_FORWARDING with `--fwknop-nat-targets`: the inner host the client names, if
    /// it is an IPv4 address in one of these networks (the gatekeeper checks it again).
    Networks(Vec<crate::config::Net>),
    /// Refused; the reason names the setting that would allow it.
    Refused(&'static str),
}

/// Why a stanza without FORCE_NAT refuses a client's NAT request when fwknopd.conf does not
/// turn on forwarding.
pub const NAT_NOT_ENABLED: &str =
    "fwknopd.conf has no ENABLE_IPT_FORWARDING Y (fwknopd refuses it too)";
/// The same when forwarding is on but knockerd was given no networks to send clients to.
pub const NAT_NO_TARGETS: &str =
    "knockerd sends a client on only to networks --fwknop-nat-targets lists, and it lists none";

/// The same for a native `kind = "fwknop"` door without `nat`.
pub const NAT_NATIVE: &str =
    "a native fwknop door sends clients on only with nat = \"ADDRESS:PORT\" (to that host) or nat_networks = [\"NETWORK\"] (to their own host there)";

/// The precheck and the decoder for one stanza's keys; `nat` says what the decoder does with a
/// client's NAT request.
pub fn decoder(keys: FwknopKeys, nat: ClientNat) -> (Option<SpaPrecheck>, SpaDecode) {
    decoder_named(keys, String::new(), nat)
}

/// The inner host a NAT request names, if `targets` allow it: an IPv4 address (fwknopd's
/// check; no host names), never this host's loopback, a broadcast, multicast or unspecified
/// address, and within one of the networks.
pub fn client_target(
    nat: &fwknop::NatAccess,
    targets: &[crate::config::Net],
) -> Result<SocketAddr, String> {
    let ip: Ipv4Addr = nat.host.parse().map_err(|_| {
        format!(
            "the NAT request's inner host {:?} is not an IPv4 address (knockerd resolves no names)",
            nat.host.escape_debug().to_string()
        )
    })?;
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(format!(
            "the NAT request's inner host {ip} is not an inner host's address"
        ));
    }
    let to = SocketAddr::new(IpAddr::V4(ip), nat.port);
    let host = crate::config::Net::of(IpAddr::V4(ip), 32);
    if !targets.iter().any(|n| n.contains(&host)) {
        return Err(format!(
            "the NAT request's inner host {to} is in none of the door's networks (nat_networks, --fwknop-nat-targets{})",
            if targets.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    targets
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    Ok(to)
}

/// How often a legacy door says again that it decrypted a packet without authenticating it.
const LEGACY_WARNING_EVERY: u64 = 60;

/// [`decoder`]; `door` names it in the legacy mode's warnings.
///
/// With legacy keys (no HMAC), a packet that decrypts is logged as such, at most once a
/// minute with the count since the last line; its replay key is its plaintext's digest (see
/// `fwknop::decode_with_replay_key`), which the engine remembers besides the packet's.
///
/// The precheck is the HMAC alone ([`fwknop::authenticate`]), which the engine runs before its
/// replay memory's digest of the packet: noise then costs one HMAC, a replay the HMAC and the
/// digest, and only an authentic packet that is no replay is decrypted. A legacy door has no
/// HMAC, so no precheck: the digest comes first, as in fwknopd.
fn decoder_named(
    keys: FwknopKeys,
    door: String,
    nat: ClientNat,
) -> (Option<SpaPrecheck>, SpaDecode) {
    let keys = Arc::new(keys);
    let legacy = keys.is_legacy();
    let precheck = (!legacy).then(|| {
        let keys = Arc::clone(&keys);
        let check: SpaPrecheck =
            Arc::new(move |payload: &[u8]| fwknop::authenticate(&keys, payload).is_ok());
        check
    });
    // (the Unix second of the last warning, packets since)
    let said = Arc::new(Mutex::new((0u64, 0u64)));
    let decode: SpaDecode = Arc::new(move |payload: &[u8], wall: u64| {
        let (msg, replay_key) = match fwknop::decode_with_replay_key(&keys, payload) {
            Ok(ok) => ok,
            // made with this stanza's HMAC key, but broken: the client's configuration is wrong
            Err(e) if e.authenticated() => return Err(SpaError::Unsupported(e.to_string())),
            Err(_) => return Err(SpaError::NotForThisKey),
        };
        if legacy {
            let mut s = said
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.1 += 1;
            if s.0 == 0 || wall >= s.0.saturating_add(LEGACY_WARNING_EVERY) {
                tracing::warn!(
                    "door {door}: {} packet(s) decrypted in fwknop's legacy mode since the last such line: no HMAC, so nothing authenticated them before decryption (--fwknop-allow-legacy); give the stanza HMAC_KEY_BASE64 and the clients --use-hmac",
                    s.1
                );
                *s = (wall.max(1), 0);
            }
        }
        let request = |access, nat| SpaRequest {
            username: msg.username.clone(),
            timestamp: msg.timestamp,
            allow: msg.allow,
            access,
            client_timeout: msg.client_timeout,
            replay_id: legacy.then_some(replay_key),
            counter: None,
            nat,
        };
        match (msg.message_type, &msg.request) {
            (
                MessageType::Access | MessageType::ClientTimeoutAccess,
                fwknop::SpaRequest::Access(access),
            ) => Ok(request(access.clone(), None)),
            (
                t @ (MessageType::NatAccess | MessageType::ClientTimeoutNatAccess),
                fwknop::SpaRequest::Access(access),
            ) => match (&nat, &msg.nat) {
                (ClientNat::Forced, _) => Ok(request(access.clone(), None)),
                (ClientNat::Networks(targets), Some(asked)) => {
                    let to = client_target(asked, targets)
                        .map_err(|why| SpaError::Unsupported(format!("{t}: {why}")))?;
                    Ok(request(access.clone(), Some(to)))
                }
                (ClientNat::Networks(_), None) => Err(SpaError::Unsupported(format!(
                    "{t}: the message names no inner host"
                ))),
                (ClientNat::Refused(why), _) => Err(SpaError::Unsupported(format!(
                    "{t}: the packet names its own inner host (fwknop -N), which this stanza does not take: {why}; send a plain access request, or give the stanza FORCE_NAT, where the admin names the inner host"
                ))),
            },
            (t @ (MessageType::LocalNatAccess | MessageType::ClientTimeoutLocalNatAccess), _) => {
                Err(SpaError::Unsupported(format!(
                    "{t}: local NAT (fwknop --nat-local) is not supported: it would open on this host whatever port the packet names (SECURITY.md); send a plain access request for the port itself"
                )))
            }
            (t, _) => Err(SpaError::Unsupported(format!(
                "{t} messages are not supported: knockerd runs no command from a packet"
            ))),
        }
    });
    (precheck, decode)
}

fn networks(list: &[Network]) -> Vec<(IpAddr, u8)> {
    if list.iter().any(|s| matches!(s, Network::Any)) {
        return Vec::new();
    }
    list.iter()
        .filter_map(|s| match s {
            Network::Net(ip, len) => Some((*ip, *len)),
            Network::Any => None,
        })
        .collect()
}

/// fwknopd's command cycle variables (checked in this order, by prefix, as `build_cmd()` does)
/// and the placeholders knockerd substitutes for them, from the grant's typed values.
const CYCLE_VARS: [(&str, &str); 8] = [
    ("IP", "%IP%"),
    ("SRC", "%IP%"),
    ("PKT_SRC", "%PKT_SRC%"),
    ("DST", "%DST%"),
    ("PORT", "%PORT%"),
    ("PROTO", "%PROTO%"),
    ("TIMEOUT", "%TIMEOUT%"),
    ("CLIENT_TIMEOUT", "%CLIENT_TIMEOUT%"),
];

/// A CMD_CYCLE template as the argv the gatekeeper runs (no shell, as fwknopd's `execvp()`),
/// fwknopd's `$` variables as knockerd's placeholders and any other `$` dropped, as fwknopd
/// drops it. Checked against fwknopd's own substitution ([`fwknop_conf::CmdCycle::argv`]) with
/// a distinct value for every variable: a template whose text would itself read as a
/// placeholder (`%PORT$IP%`) is refused rather than run differently.
pub(super) fn cycle_command(template: &str, timer: u64) -> Result<Command, String> {
    let mut text = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some((var, token)) = CYCLE_VARS.iter().find(|(v, _)| rest.starts_with(v)) {
            text.push_str(token);
            rest = &rest[var.len()..];
        }
    }
    text.push_str(rest);
    let command = Command::Argv(text.split_ascii_whitespace().map(str::to_string).collect());

    let probe = fwknop_conf::CmdVars {
        allow: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        packet_source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        destination: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3)),
        service: knocker_engine::Service::udp(4321),
        timestamp: 1_000_000_000,
        client_timeout: 77,
    };
    let cycle = fwknop_conf::CmdCycle {
        open: template.to_string(),
        close: None,
        timer,
    };
    let expected = cycle.argv(template, &probe).map_err(|e| e.to_string())?;
    let vars = CommandVars {
        ip: probe.allow,
        service: Some(probe.service),
        spa: Some(knocker_engine::SpaFacts {
            packet_source: probe.packet_source,
            destination: probe.destination,
            timestamp: probe.timestamp,
            client_timeout: probe.client_timeout,
            nat: None,
        }),
        stop_in: probe.client_timeout,
        client_timeout: probe.client_timeout,
    };
    if command.argv_with(&vars) != expected {
        return Err(format!("{template:?} holds text that knockerd would read as one of its placeholders ({}): write the command without it", crate::config::PLACEHOLDERS.join(", ")));
    }
    Ok(command)
}

/// The warning for a stanza that becomes no door.
fn refused(s: &Stanza, why: impl std::fmt::Display) -> String {
    format!(
        "{}:{}: stanza #{} refused: {why}",
        s.file.display(),
        s.line,
        s.number
    )
}

fn door_for(s: &Stanza, conf: &FwknopConf, warnings: &mut Vec<String>) -> Option<Door> {
    let keys = match &s.hmac_key {
        Some(hmac) => FwknopKeys::new(s.enc_key.clone(), hmac.clone(), s.hmac_digest),
        None => FwknopKeys::legacy(s.enc_key.clone()),
    };
    let keys = match keys {
        Ok(k) => k,
        Err(e) => {
            warnings.push(refused(s, e));
            return None;
        }
    };
    let (start_command, stop_command, stop_after) = match &s.cmd_cycle {
        None => (None, None, Duration::from_secs(s.fw_access_timeout.max(1))),
        Some(c) => {
            let open = cycle_command(&c.open, c.timer);
            let close = c
                .close
                .as_deref()
                .map(|t| cycle_command(t, c.timer))
                .transpose();
            let (open, close) = match (open, close) {
                (Ok(open), Ok(close)) => (open, close),
                (Err(e), _) | (_, Err(e)) => {
                    warnings.push(refused(s, format!("CMD_CYCLE: {e}")));
                    return None;
                }
            };
            // with a close command the timer is 1 s or more (fwknopd's check); without one it
            // only counts in $TIMEOUT, as fwknopd counts it (0 when not set)
            let timer = if close.is_some() {
                c.timer.max(1)
            } else {
                c.timer
            };
            (Some(open), close, Duration::from_secs(timer))
        }
    };
    let open_for = Duration::from_secs(s.fw_access_timeout.max(s.max_fw_timeout).clamp(1, 86_400));
    let (precheck, decode) = decoder_named(keys, s.door_name(), client_nat(s, conf));
    let spa = Spa {
        precheck,
        rate_limit: None,
        proto: knocker_engine::Proto::Udp,
        decode,
        port: conf.spa_port,
        allowed: networks(&s.sources),
        max_age: conf.max_age,
        access_timeout: s.fw_access_timeout,
        max_timeout: s.max_fw_timeout,
        restrict: s.restrict_ports.clone(),
        require_username: s.require_username.clone(),
        expire: s.access_expire,
        allow_other_address: false,
        require_source_address: s.require_source_address,
        destinations: networks(&s.destinations),
        open_any: s.open_ports.is_empty(),
    };
    Some(Door {
        spec: DoorSpec {
            name: s.door_name(),
            open: s.open_ports.clone(),
            open_for,
            kind: Kind::Spa(spa),
            ..Default::default()
        },
        // a command cycle is the firewall, as in fwknopd: knockerd's table drops nothing for it
        protect: s.cmd_cycle.is_none(),
        forward: s
            .force_nat
            .map(|to| crate::config::Forward::Nat(SocketAddr::V4(to))),
        nat_source: s.nat_source,
        nat_networks: match client_nat(s, conf) {
            ClientNat::Networks(nets) => nets,
            ClientNat::Forced | ClientNat::Refused(_) => Vec::new(),
        },
        repeat_start_command: false,
        start_command,
        stop_command,
        start_command_6: None,
        stop_command_6: None,
        stop_after,
        stop_after_client_timeout: true,
        connections: None,
        grant_prefix: Default::default(),
        interfaces: Vec::new(),
        protect_elsewhere: true,
        actions: Vec::new(),
        kind: DoorKind::Fwknop {
            port: conf.spa_port,
        },
        line: s.line,
    })
}

/// What a stanza does with a client's NAT request: FORCE_NAT's own host; else the client's,
/// when fwknopd.conf turns forwarding on and knockerd was given networks to send clients to.
fn client_nat(s: &Stanza, conf: &FwknopConf) -> ClientNat {
    if s.force_nat.is_some() {
        ClientNat::Forced
    } else if !conf.forwarding {
        ClientNat::Refused(NAT_NOT_ENABLED)
    } else if conf.nat_networks.is_empty() {
        ClientNat::Refused(NAT_NO_TARGETS)
    } else {
        ClientNat::Networks(conf.nat_networks.clone())
    }
}

/// The doors of a parsed configuration, in fwknopd's order, and why a stanza became none.
pub fn doors(conf: &FwknopConf) -> (Vec<Door>, Vec<String>) {
    let mut warnings = Vec::new();
    let doors = conf
        .stanzas
        .iter()
        .filter_map(|s| door_for(s, conf, &mut warnings))
        .collect();
    (doors, warnings)
}

/// A port a FORCE_NAT stanza sends on is that stanza's alone: a grant element is an address and
/// a service, and the nat chain sends on every source that holds one, whichever stanza granted
/// it. So no other stanza may grant that port, by its OPEN_PORTS or by opening whatever the
/// client asks for (no OPEN_PORTS, unless its RESTRICT_PORTS excludes the port); fwknopd would
/// open such a grant on this host only, and knockerd refuses to start rather than send it on.
fn check_nat(stanzas: &[Stanza]) -> Result<(), ConfigError> {
    for nat in stanzas.iter().filter(|s| s.force_nat.is_some()) {
        for service in &nat.open_ports {
            let other = stanzas.iter().find(|o| {
                o.number != nat.number
                    && o.force_nat != nat.force_nat
                    && if o.open_ports.is_empty() {
                        !o.restrict_ports.contains(service)
                    } else {
                        o.open_ports.contains(service)
                    }
            });
            if let Some(o) = other {
                return Err(ConfigError {
                    file: o.file.clone(),
                    line: Some(o.line),
                    message: format!(
                        "stanza #{} can grant {service}, which stanza #{} (line {}) sends on to {} (FORCE_NAT): a grant of either would do both; give the FORCE_NAT stanza its own port, or add RESTRICT_PORTS {service} here",
                        o.number,
                        nat.number,
                        nat.line,
                        nat.force_nat.map_or_else(String::new, |t| t.to_string())
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Reads an access.conf (and fwknopd.conf) into a configuration; warnings alongside.
/// `nat_networks`: the networks a client's NAT request may name (`--fwknop-nat-targets`,
/// [`FwknopConf::nat_networks`]).
pub fn load(
    access: &Path,
    fwknopd_conf: Option<&Path>,
    legacy: fwknop_conf::Legacy,
    nat_networks: &[crate::config::Net],
) -> Result<(Config, Vec<String>), ConfigError> {
    let mut conf = fwknop_conf::load_with(access, fwknopd_conf, legacy)?;
    conf.nat_networks = nat_networks.to_vec();
    let mut warnings = conf.warnings.clone();
    for r in &conf.refused {
        warnings.push(format!(
            "{}:{}: stanza #{} (SOURCE {}) refused: {}",
            r.file.display(),
            r.line,
            r.number,
            r.source,
            r.reasons.join("; ")
        ));
    }
    let (doors, more) = doors(&conf);
    warnings.extend(more);
    check_nat(&conf.stanzas)?;
    if doors.is_empty() {
        return Err(ConfigError {
            file: access.to_path_buf(),
            line: None,
            message: format!("no usable stanza: {}", warnings.join(" | ")),
        });
    }
    let config = Config {
        file: access.to_path_buf(),
        nflog_group: crate::config::DEFAULT_NFLOG_GROUP,
        max_tracked: knocker_engine::DEFAULT_MAX_TRACKED,
        on_stop: crate::config::OnStop::Keep,
        grant_mark: crate::config::DEFAULT_GRANT_MARK,
        accept_mark: 0,
        trusted: Vec::new(),
        protect: Vec::new(),
        interfaces: conf.interface.iter().cloned().collect(),
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        server_key: PathBuf::from(crate::config::DEFAULT_SERVER_KEY),
        clients: PathBuf::from(crate::config::DEFAULT_CLIENTS),
        worker_user: None,
        metrics_file: None,
        shared_state: None,
        drop_knocks: true,
        source: crate::config::SourceSpec::Nflog,
        doors,
    };
    Ok((config, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fwknop::FwknopdConf;

    fn doors(text: &str) -> Vec<Door> {
        let conf = fwknop_conf::parse(
            Path::new("access.conf"),
            text.as_bytes(),
            &FwknopdConf::default(),
        )
        .expect("parses");
        let mut warnings = Vec::new();
        conf.stanzas
            .iter()
            .filter_map(|s| door_for(s, &conf, &mut warnings))
            .collect()
    }

    #[test]
    fn check_says_what_a_stanza_opens_and_for_how_long() {
        let keys = "KEY_BASE64 YWJjZGVmZ2hpamtsbW5vcA==\nHMAC_KEY_BASE64 cXJzdHV2d3h5eg==\n";
        let d = doors(&format!(
            "SOURCE ANY\n{keys}\nSOURCE 10.0.0.0/8\nOPEN_PORTS tcp/22\nFW_ACCESS_TIMEOUT 30\nMAX_FW_TIMEOUT 3600\n{keys}\nSOURCE 192.0.2.0/24\nRESTRICT_PORTS tcp/23\nFW_ACCESS_TIMEOUT 60\nMAX_FW_TIMEOUT 60\n{keys}"
        ));
        let said: Vec<String> = d.iter().map(|d| d.describe_opening()).collect();
        for door in &d {
            assert_eq!(door.kind, DoorKind::Fwknop { port: 62201 });
            assert_eq!((door.spa_port(), door.syn_port()), (Some(62201), None));
        }
        assert_eq!(
            said,
            [
                // fwknopd's defaults: FW_ACCESS_TIMEOUT 30, MAX_FW_TIMEOUT 300
                "opens whatever port the client asks for (no OPEN_PORTS) for 30s by default, up to 5m if the client asks",
                "opens tcp/22 for 30s by default, up to 1h if the client asks",
                "opens whatever port the client asks for but tcp/23 (no OPEN_PORTS) for 1m",
            ]
        );
    }

    #[test]
    fn command_cycles_become_argv_with_every_fwknopd_variable() {
        let argv = |t: &str| match cycle_command(t, 5) {
            Ok(Command::Argv(v)) => Ok(v),
            Ok(Command::Shell(_)) => panic!("never a shell"),
            Err(e) => Err(e),
        };
        assert_eq!(
            argv("/usr/sbin/ipset add fwknop_allow $SRC,$PROTO:$PORT timeout $CLIENT_TIMEOUT")
                .unwrap(),
            [
                "/usr/sbin/ipset",
                "add",
                "fwknop_allow",
                "%IP%,%PROTO%:%PORT%",
                "timeout",
                "%CLIENT_TIMEOUT%"
            ]
        );
        // by prefix, as fwknopd: $IPX is the address and X; an unknown variable loses its $
        assert_eq!(
            argv("/bin/x $IPX $PKT_SRC $DST $TIMEOUT $FOO $").unwrap(),
            ["/bin/x", "%IP%X", "%PKT_SRC%", "%DST%", "%TIMEOUT%", "FOO"]
        );
        // what fwknopd would substitute, knockerd substitutes the same
        let Ok(Command::Argv(v)) = cycle_command("/bin/x %$IP% 100%", 5) else {
            panic!("runs");
        };
        assert_eq!(v, ["/bin/x", "%%IP%%", "100%"]);
        // text that would read as a placeholder is refused, not run otherwise than in fwknopd
        for t in ["/bin/x %PORT%", "/bin/x %PORT$IP%", "/bin/x %DST%"] {
            let e = argv(t).unwrap_err();
            assert!(e.contains("placeholders"), "{t}: {e}");
        }
        assert!(argv(&"a ".repeat(29)).unwrap_err().contains("at most 28"));
    }

    #[test]
    fn command_cycle_placeholders_take_only_typed_values() {
        let Ok(cmd) = cycle_command(
            "/usr/bin/logger $SRC $PKT_SRC $DST $PROTO $PORT $CLIENT_TIMEOUT $TIMEOUT",
            5,
        ) else {
            panic!("runs");
        };
        let vars = CommandVars {
            ip: "10.200.1.2".parse().unwrap(),
            service: Some(knocker_engine::Service::udp(53)),
            spa: Some(knocker_engine::SpaFacts {
                packet_source: "::ffff:10.200.1.2".parse().unwrap(),
                destination: "fd00:200:1::1".parse().unwrap(),
                timestamp: 1_795_266_816,
                client_timeout: 900,
                nat: None,
            }),
            stop_in: 300,
            client_timeout: 300,
        };
        assert_eq!(
            cmd.argv_with(&vars),
            [
                "/usr/bin/logger",
                "10.200.1.2",
                "10.200.1.2",
                "fd00:200:1::1",
                "17",
                "53",
                "300",
                "1795267116"
            ]
        );
        // without the facts of an SPA packet, their placeholders stay as written
        assert_eq!(
            cmd.argv_for("10.200.1.2".parse().unwrap())[1..4],
            ["10.200.1.2", "%PKT_SRC%", "%DST%"]
        );
    }

    #[test]
    fn a_nat_request_is_access_to_a_force_nat_stanzas_own_host_and_refused_elsewhere() {
        use knocker_wire::fwknop::{Digest, NatAccess, SpaMessage};
        let keys = || {
            FwknopKeys::new(
                zeroize::Zeroizing::new(b"abcdefghijklmnop".to_vec()),
                zeroize::Zeroizing::new(b"qrstuvwxyz".to_vec()),
                Digest::Sha256,
            )
            .expect("keys")
        };
        let packet = |message_type: MessageType, timeout: Option<u32>| {
            let mut m = SpaMessage::access(
                "alice",
                1_000_000,
                Ipv4Addr::new(10, 200, 1, 2),
                vec![knocker_engine::Service::tcp(2222)],
                timeout,
            );
            m.message_type = message_type;
            m.nat = message_type.is_nat().then(|| NatAccess {
                host: "192.0.2.9".into(),
                port: 22,
            });
            fwknop::encode(&keys(), &m, getrandom::fill).expect("encode")
        };
        let (_, forced) = decoder(keys(), ClientNat::Forced);
        let (_, plain) = decoder(keys(), ClientNat::Refused(NAT_NOT_ENABLED));
        for (t, timeout) in [
            (MessageType::NatAccess, None),
            (MessageType::ClientTimeoutNatAccess, Some(60)),
        ] {
            let p = packet(t, timeout);
            let r = forced(p.as_bytes(), 0).expect("FORCE_NAT takes a NAT request");
            assert_eq!(r.access, [knocker_engine::Service::tcp(2222)]);
            assert_eq!(r.client_timeout, timeout);
            match plain(p.as_bytes(), 0) {
                Err(SpaError::Unsupported(why)) => assert!(
                    why.contains("does not take") && why.contains("ENABLE_IPT_FORWARDING"),
                    "{why}"
                ),
                other => panic!("a client-chosen inner host must be refused: {other:?}"),
            }
        }
        let local = packet(MessageType::LocalNatAccess, None);
        for d in [&forced, &plain] {
            assert!(
                matches!(d(local.as_bytes(), 0), Err(SpaError::Unsupported(w)) if w.contains("local NAT"))
            );
        }
        // a plain access request still opens a FORCE_NAT stanza (fwknopd's too)
        let access = packet(MessageType::Access, None);
        assert!(forced(access.as_bytes(), 0).is_ok() && plain(access.as_bytes(), 0).is_ok());

        // with networks to send clients to: the client's inner host, if listed
        let (_, listed) = decoder(
            keys(),
            ClientNat::Networks(vec!["192.0.2.0/24".parse().expect("net")]),
        );
        let r = listed(packet(MessageType::NatAccess, None).as_bytes(), 0).expect("listed");
        assert_eq!(r.nat, Some("192.0.2.9:22".parse().expect("target")));
        assert_eq!(r.access, [knocker_engine::Service::tcp(2222)]);
        assert_eq!(
            listed(access.as_bytes(), 0).expect("plain access").nat,
            None
        );
        let (_, elsewhere) = decoder(
            keys(),
            ClientNat::Networks(vec!["10.200.3.0/24".parse().expect("net")]),
        );
        match elsewhere(packet(MessageType::NatAccess, None).as_bytes(), 0) {
            Err(SpaError::Unsupported(why)) => {
                assert!(why.contains("--fwknop-nat-targets"), "{why}")
            }
            other => panic!("an unlisted inner host must be refused: {other:?}"),
        }
        // hostile or odd NAT fields: refused with a reason, never a panic
        let nets = [crate::config::Net {
            addr: Ipv4Addr::UNSPECIFIED.into(),
            len: 0,
        }];
        for host in [
            "inner.example",
            "10.200.3.2\n",
            "::1",
            "127.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
        ] {
            let asked = fwknop::NatAccess {
                host: host.into(),
                port: 22,
            };
            assert!(client_target(&asked, &nets).is_err(), "{host}");
        }
    }

    #[test]
    fn an_hmac_doors_precheck_is_its_hmac_and_a_legacy_door_has_none() {
        use knocker_wire::fwknop::{Digest, SpaMessage};
        let enc = || zeroize::Zeroizing::new(b"abcdefghijklmnop".to_vec());
        let hmac = |k: &[u8]| {
            FwknopKeys::new(enc(), zeroize::Zeroizing::new(k.to_vec()), Digest::Sha256)
                .expect("keys")
        };
        let m = SpaMessage::access(
            "alice",
            1_000_000,
            "10.200.1.2".parse().expect("ip"),
            vec![knocker_engine::Service::tcp(22)],
            None,
        );
        let packet = fwknop::encode(&hmac(b"qrstuvwxyz"), &m, getrandom::fill).expect("encode");
        let (pre, decode) = decoder(hmac(b"qrstuvwxyz"), ClientNat::Refused(NAT_NOT_ENABLED));
        let pre = pre.expect("an HMAC door has a precheck");
        assert!(pre(packet.as_bytes()));
        assert!(decode(packet.as_bytes(), 0).is_ok());
        // another HMAC key, a changed character, noise: refused by the precheck alone
        let (other, _) = decoder(hmac(b"another key"), ClientNat::Refused(NAT_NOT_ENABLED));
        assert!(!other.expect("precheck")(packet.as_bytes()));
        let mut changed = packet.clone().into_bytes();
        changed[20] = if changed[20] == b'A' { b'B' } else { b'A' };
        assert!(!pre(&changed));
        assert!(!pre(&[b'A'; 200]));
        let legacy = FwknopKeys::legacy(enc()).expect("legacy keys");
        assert!(decoder(legacy, ClientNat::Refused(NAT_NOT_ENABLED))
            .0
            .is_none());
    }
}
