//! The native TOML's `[source]` table: where knocks are seen ([`SourceSpec`]).
//!
//! ```toml
//! [source]
//! kind = "kernel-log"          # "nflog" (the default), "kernel-log", "log-file" or "packet"
//! file = "/var/log/kern.log"   # kernel-log: instead of /dev/kmsg; log-file: the file
//! prefix = "FW-KNOCK: "        # kernel-log: an admin's LOG rule prefix, besides knockerd's own
//! interface = "eth0"           # packet: the interface its socket reads
//!
//! [[source.format]]            # log-file: one or more
//! name = "asa"
//! required = '%ASA-\d-106023: Deny '
//! pattern = 'Deny (?P<proto>tcp|udp) src [^:]+:(?P<src>[\d.]+)/(?P<sport>\d+) dst [^:]+:(?P<dst>[\d.]+)/(?P<dport>\d+)'
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::super::{ConfigError, Ctx, Door, DoorKind, SourceSpec};
use crate::source::kernel_log::prefix_problem;
use crate::source::log_file::{LogFormat, MAX_FORMATS};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    kind: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    format: Option<Spanned<Vec<Spanned<RawFormat>>>>,
    interface: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFormat {
    name: Option<Spanned<String>>,
    required: Spanned<String>,
    pattern: Spanned<String>,
}

/// The `[source]` table into a [`SourceSpec`]; NFLOG when there is none.
pub(super) fn source(
    cx: &Ctx<'_>,
    raw: Option<&Spanned<RawSource>>,
) -> Result<SourceSpec, ConfigError> {
    let Some(raw) = raw else {
        return Ok(SourceSpec::Nflog);
    };
    let span = raw.span();
    let r = raw.get_ref();
    let kind = r
        .kind
        .as_ref()
        .map(|k| k.get_ref().as_str())
        .unwrap_or("nflog");
    let kind_span = r.kind.as_ref().map(|k| k.span()).unwrap_or(span.clone());
    let not_for = |key: &str, at: std::ops::Range<usize>| {
        cx.err::<()>(
            at,
            format!("{key} is not an option of a {kind} source: remove it"),
        )
    };
    if kind != "packet" {
        if let Some(i) = &r.interface {
            return cx.err(
                i.span(),
                format!("[source] kind = {kind:?} takes no interface: to count knocks from one interface only, set [daemon] interface"),
            );
        }
    }
    match kind {
        "packet" => {
            for (key, at) in [
                ("file", r.file.as_ref().map(|f| f.span())),
                ("prefix", r.prefix.as_ref().map(|p| p.span())),
                ("format", r.format.as_ref().map(|f| f.span())),
            ] {
                if let Some(at) = at {
                    not_for(key, at)?;
                }
            }
            match &r.interface {
                Some(i) if is_interface_name(i.get_ref()) => Ok(SourceSpec::Packet {
                    interface: i.get_ref().clone(),
                }),
                Some(i) => cx.err(
                    i.span(),
                    format!("interface {:?} is not an interface name", i.get_ref()),
                ),
                None => cx.err(
                    kind_span,
                    "[source] kind = \"packet\" needs the interface to listen on, e.g. interface = \"eth0\"",
                ),
            }
        }
        "nflog" => {
            if let Some(f) = &r.file {
                not_for("file", f.span())?;
            }
            if let Some(p) = &r.prefix {
                not_for("prefix", p.span())?;
            }
            if let Some(f) = &r.format {
                not_for("format", f.span())?;
            }
            Ok(SourceSpec::Nflog)
        }
        "kernel-log" => {
            if let Some(f) = &r.format {
                not_for("format", f.span())?;
            }
            let prefix = match &r.prefix {
                None => None,
                Some(p) => {
                    let t = p.get_ref();
                    if let Some(problem) = prefix_problem(t) {
                        return cx.err(p.span(), problem);
                    }
                    Some(t.clone())
                }
            };
            Ok(SourceSpec::KernelLog {
                file: file(cx, r.file.as_ref())?,
                prefix,
            })
        }
        "log-file" => {
            if let Some(p) = &r.prefix {
                not_for("prefix", p.span())?;
            }
            let Some(path) = file(cx, r.file.as_ref())? else {
                return cx.err(span, "a log-file source needs file = \"/path/of/the/log\"");
            };
            let formats = match &r.format {
                None => Vec::new(),
                Some(f) => f.get_ref().iter().collect(),
            };
            if formats.is_empty() {
                return cx.err(span, "a log-file source needs at least one [[source.format]] with `required` (which lines) and `pattern` (named captures src, dst, proto, dport)");
            }
            if formats.len() > MAX_FORMATS {
                let at = r.format.as_ref().map(|f| f.span()).unwrap_or(span);
                return cx.err(at, format!("at most {MAX_FORMATS} formats"));
            }
            let formats = formats
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let g = f.get_ref();
                    let name = g
                        .name
                        .as_ref()
                        .map(|n| n.get_ref().clone())
                        .unwrap_or_else(|| format!("format{}", i + 1));
                    LogFormat::new(&name, g.required.get_ref(), g.pattern.get_ref()).or_else(
                        |e| {
                            let at = match e {
                                crate::source::log_file::FormatError::Regex {
                                    key: "required",
                                    ..
                                }
                                | crate::source::log_file::FormatError::TooLong {
                                    key: "required",
                                    ..
                                } => g.required.span(),
                                _ => g.pattern.span(),
                            };
                            cx.err(at, format!("format {name:?}: {e}"))
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SourceSpec::LogFile {
                file: path,
                formats,
            })
        }
        other => cx.err(
            kind_span,
            format!("unknown [source] kind {other:?}: use \"nflog\" (the default), \"kernel-log\", \"log-file\" or \"packet\""),
        ),
    }
}

/// An interface name as the kernel allows it: at most 15 bytes, no '/' or space.
fn is_interface_name(name: &str) -> bool {
    !(name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '"', '\\']))
}

/// `file`: an absolute path (the worker reads it from `/`).
fn file(cx: &Ctx<'_>, f: Option<&Spanned<String>>) -> Result<Option<PathBuf>, ConfigError> {
    match f {
        None => Ok(None),
        Some(f) if f.get_ref().starts_with('/') => Ok(Some(PathBuf::from(f.get_ref()))),
        Some(f) => cx.err(
            f.span(),
            format!("file {:?} must be an absolute path", f.get_ref()),
        ),
    }
}

/// Single-packet doors need what a log line does not carry: refused with the fix.
pub(super) fn check_doors(
    cx: &Ctx<'_>,
    source: &SourceSpec,
    doors: &[Door],
) -> Result<(), ConfigError> {
    if matches!(source, SourceSpec::Nflog) {
        return Ok(());
    }
    // a door's interfaces are matched by the rules that log its knocks: a packet socket sees
    // its one interface whatever they say, and a log file has no such rules
    if !matches!(source, SourceSpec::KernelLog { .. }) {
        if let Some(d) = doors.iter().find(|d| !d.interfaces.is_empty()) {
            return Err(ConfigError {
                file: cx.file.to_path_buf(),
                line: Some(d.line),
                message: format!(
                    "door {} names interfaces, but the source is {}, which does not see knocks through knockerd's own rules: a door's interfaces work with NFLOG (the default) and the kernel log. Remove `interfaces`, or the [source]",
                    d.spec.name,
                    source.name()
                ),
            });
        }
    }
    // an ICMP step is an echo request that only knockerd's own NFLOG rule hands over
    if let Some(d) = doors.iter().find(|d| {
        d.spec
            .fixed_knocks()
            .any(|k| k.proto == knocker_engine::Proto::Icmp)
    }) {
        return Err(ConfigError {
            file: cx.file.to_path_buf(),
            line: Some(d.line),
            message: format!(
                "door {} has an ICMP step (icmp/N) and the source is {}, which sees TCP and UDP knocks only. Use the default source (remove [source], or kind = \"nflog\"), or replace the ICMP step with a port",
                d.spec.name,
                source.name()
            ),
        });
    }
    if matches!(source, SourceSpec::Packet { .. }) {
        return Ok(());
    }
    for d in doors {
        let why = match d.kind {
            DoorKind::Fwknop { .. } | DoorKind::Spa { .. } => {
                "its SPA packet is the datagram's payload, which a log line does not carry"
            }
            DoorKind::Syn { .. } => {
                "its authenticator lies in the SYN's header fields and TCP options, which a log line does not carry whole"
            }
            // the kernel log prints the ID, SEQ, ACK and WINDOW knockknock's 12 bytes are in
            // (`flags tcp sequence`), and the kernel-log source rebuilds the SYN from them
            DoorKind::Knockknock { .. } if matches!(source, SourceSpec::KernelLog { .. }) => {
                continue
            }
            DoorKind::Knockknock { .. } => {
                "its knock is in the SYN's ID, sequence, acknowledgement and window fields, which only NFLOG and the kernel log (kind = \"kernel-log\", with `flags tcp sequence`) hand over"
            }
            _ => continue,
        };
        return Err(ConfigError {
            file: cx.file.to_path_buf(),
            line: Some(d.line),
            message: format!(
                "door {} is a {} door and the source is {}: {why}. Use the default source (remove [source], or kind = \"nflog\"), or a sequence, one-time, rotating or encoded door, which need only ports",
                d.spec.name,
                d.kind_name(),
                source.name()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::SourceSpec;
    use std::path::Path;

    fn parse(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::native::parse(Path::new("k.toml"), text)
    }

    const DOOR: &str =
        "[daemon]\n[door.ssh]\nsequence = [\"8000\", \"7000\", \"9000\"]\nopen = [\"tcp/22\"]\n";

    #[test]
    fn nflog_unless_a_source_is_named() {
        assert_eq!(parse(DOOR).expect("config").source, SourceSpec::Nflog);
        let k = parse(&format!(
            "{DOOR}[source]\nkind = \"kernel-log\"\nprefix = \"FW: \"\n"
        ))
        .expect("config");
        assert_eq!(
            k.source,
            SourceSpec::KernelLog {
                file: None,
                prefix: Some("FW: ".into())
            }
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = parse(&format!(
            "{DOOR}[source]\nkind = \"kernel-log\"\nfile = \"kern.log\"\n"
        ))
        .expect_err("relative");
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse(&format!("{DOOR}[source]\nkind = \"syslog\"\n")).expect_err("kind");
        assert_eq!(e.line, Some(6), "{e}");
        let e = parse(&format!(
            "{DOOR}[source]\nkind = \"log-file\"\nfile = \"/var/log/fw.log\"\n"
        ))
        .expect_err("no format");
        assert!(e.message.contains("[[source.format]]"), "{e}");
        let e = parse(&format!(
            "{DOOR}[source]\nkind = \"log-file\"\nfile = \"/var/log/fw.log\"\n[[source.format]]\nrequired = \"x\"\npattern = '(?P<src>\\S+) (?P<dst>\\S+) (?P<proto>\\S+)'\n"
        ))
        .expect_err("no dport");
        assert_eq!(e.line, Some(10), "{e}");
        assert!(e.message.contains("dport"), "{e}");
        let ok = parse(&format!(
            "{DOOR}[source]\nkind = \"log-file\"\nfile = \"/var/log/fw.log\"\n[[source.format]]\nname = \"fw\"\nrequired = \"x\"\npattern = '(?P<src>\\S+) (?P<dst>\\S+) (?P<proto>\\S+) (?P<dport>\\d+)'\n"
        ))
        .expect("format");
        assert!(
            matches!(ok.source, SourceSpec::LogFile { ref formats, .. } if formats[0].name == "fw")
        );
    }

    #[test]
    fn single_packet_doors_need_nflog() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("knocker-srcdoor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (enc, hmac) = (dir.join("enc"), dir.join("hmac"));
        for (f, k) in [
            (&enc, "c2VjcmV0IGtleSBvbmUgMTIzNDU2"),
            (&hmac, "aG1hYyBrZXkgdHdvIDEyMzQ1Njc4OTA"),
        ] {
            std::fs::write(f, k).expect("key");
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let text = format!("[daemon]\n[door.f]\nkind = \"fwknop\"\nport = 62201\nkey_file = {:?}\nhmac_key_file = {:?}\nopen = [\"tcp/22\"]\n", enc.display().to_string(), hmac.display().to_string());
        parse(&text).expect("an fwknop door under NFLOG");
        for (kind, more) in [("kernel-log", ""), ("log-file", "file = \"/var/log/fw.log\"\n[[source.format]]\nrequired = \"x\"\npattern = '(?P<src>\\S+) (?P<dst>\\S+) (?P<proto>\\S+) (?P<dport>\\d+)'\n")] {
            let e = parse(&format!("{text}[source]\nkind = \"{kind}\"\n{more}")).expect_err("refused");
            assert_eq!(e.line, Some(2), "{e}");
            assert!(e.message.contains("payload"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
