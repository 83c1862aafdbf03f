//! The log-file source: any log file (a router's firewall log forwarded by syslog, an
//! appliance's), read with formats the admin writes, as the Perl knockdaemon's `logformat`
//! blocks: a `required` regular expression selects the lines, a `pattern` with named captures
//! takes the knock out of them.
//!
//! The expressions are the `regex` crate's: matching takes time linear in the line, whatever the
//! expression, so a hostile line cannot make a format slow. Lines are at most
//! [`MAX_LINE_BYTES`] long (longer ones are dropped and counted), formats at most
//! [`MAX_FORMATS`], each expression at most [`MAX_EXPRESSION_BYTES`] of text and a bounded
//! compiled size. A line that no format selects is counted and skipped; one that a format selects
//! but does not yield a knock is counted as malformed, and `knockerd check --log-sample` says
//! why.
//!
//! Anyone who can write to the file can forge knocks with it: see SECURITY.md.

use std::io;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knocker_engine::{Knock, Proto, TcpFlags};
use regex::{Regex, RegexBuilder};

use super::kernel_log::LogLine;
use super::tail::Tail;
use super::{Datagram, KnockSource, RecvStats, MAX_LINE_BYTES};

/// The most formats one source may have.
pub const MAX_FORMATS: usize = 16;
/// The longest expression text.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// The compiled size one expression may reach (the regex crate's size limit).
const COMPILED_BYTES: usize = 1 << 20;

/// The captures a pattern must have.
pub const REQUIRED_CAPTURES: [&str; 4] = ["src", "dst", "proto", "dport"];
/// The captures a pattern may have besides.
pub const OPTIONAL_CAPTURES: [&str; 6] = ["sport", "flags", "id", "seq", "ack", "window"];

/// One admin-written format.
#[derive(Clone, Debug)]
pub struct LogFormat {
    pub name: String,
    required: Regex,
    pattern: Regex,
}

impl PartialEq for LogFormat {
    fn eq(&self, other: &LogFormat) -> bool {
        self.name == other.name
            && self.required.as_str() == other.required.as_str()
            && self.pattern.as_str() == other.pattern.as_str()
    }
}

impl Eq for LogFormat {}

/// Why a format was refused (the configuration says where).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{key} is {len} bytes long; at most {MAX_EXPRESSION_BYTES}")]
    TooLong { key: &'static str, len: usize },
    #[error("{key} is not a regular expression the regex crate accepts: {message}")]
    Regex { key: &'static str, message: String },
    #[error("pattern has no capture named {0:?}: write (?P<{0}>...) around the part of the line that holds it")]
    MissingCapture(&'static str),
    #[error("pattern has a capture named {0:?}, which is not one of src, dst, proto, dport, sport, flags, id, seq, ack, window")]
    UnknownCapture(String),
}

impl LogFormat {
    /// Compiles a format: both expressions, and the pattern's named captures checked.
    pub fn new(name: &str, required: &str, pattern: &str) -> Result<LogFormat, FormatError> {
        let compile = |key: &'static str, text: &str| {
            if text.len() > MAX_EXPRESSION_BYTES {
                return Err(FormatError::TooLong {
                    key,
                    len: text.len(),
                });
            }
            RegexBuilder::new(text)
                .size_limit(COMPILED_BYTES)
                .dfa_size_limit(COMPILED_BYTES)
                .build()
                .map_err(|e| FormatError::Regex {
                    key,
                    message: e.to_string().replace('\n', " "),
                })
        };
        let required = compile("required", required)?;
        let pattern = compile("pattern", pattern)?;
        let names: Vec<&str> = pattern.capture_names().flatten().collect();
        for want in REQUIRED_CAPTURES {
            if !names.contains(&want) {
                return Err(FormatError::MissingCapture(want));
            }
        }
        if let Some(other) = names
            .iter()
            .find(|n| !REQUIRED_CAPTURES.contains(n) && !OPTIONAL_CAPTURES.contains(n))
        {
            return Err(FormatError::UnknownCapture(other.to_string()));
        }
        Ok(LogFormat {
            name: name.to_string(),
            required,
            pattern,
        })
    }

    pub fn required(&self) -> &str {
        self.required.as_str()
    }

    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }
}

/// Why a line yielded no knock.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineMiss {
    #[error("no format's `required` matches it")]
    NotSelected,
    #[error("format {format:?} selects it, but its pattern does not match")]
    NoMatch { format: String },
    #[error("format {format:?}: {field} {value:?} is not {what}")]
    Field {
        format: String,
        field: &'static str,
        value: String,
        what: &'static str,
    },
    #[error(
        "format {format:?}: source {src} and destination {dst} are of different address families"
    )]
    Families {
        format: String,
        src: IpAddr,
        dst: IpAddr,
    },
    #[error("longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
}

/// The knock one line yields under the first format that selects it and matches it, and that
/// format's index; or why none did (the first selecting format's reason).
pub fn parse_line(
    formats: &[LogFormat],
    line: &str,
) -> Result<(usize, LogLine<'static>), LineMiss> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineMiss::TooLong);
    }
    let mut first_miss = None;
    for (i, f) in formats.iter().enumerate() {
        if !f.required.is_match(line) {
            continue;
        }
        match apply(f, line) {
            Ok(l) => return Ok((i, l)),
            Err(miss) => {
                first_miss.get_or_insert(miss);
            }
        }
    }
    Err(first_miss.unwrap_or(LineMiss::NotSelected))
}

fn apply(f: &LogFormat, line: &str) -> Result<LogLine<'static>, LineMiss> {
    let caps = f.pattern.captures(line).ok_or_else(|| LineMiss::NoMatch {
        format: f.name.clone(),
    })?;
    let get = |name: &str| caps.name(name).map(|m| m.as_str());
    let bad = |field: &'static str, value: &str, what: &'static str| LineMiss::Field {
        format: f.name.clone(),
        field,
        value: value.chars().take(64).collect(),
        what,
    };
    let addr = |field: &'static str| -> Result<IpAddr, LineMiss> {
        let v = get(field).unwrap_or("");
        let bare = v.trim_start_matches('[').trim_end_matches(']');
        bare.parse()
            .map_err(|_| bad(field, v, "an IPv4 or IPv6 address"))
    };
    let src = addr("src")?;
    let dst = addr("dst")?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(LineMiss::Families {
            format: f.name.clone(),
            src,
            dst,
        });
    }
    let proto_text = get("proto").unwrap_or("");
    let proto = match proto_text.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Proto::Tcp,
        "udp" | "17" => Proto::Udp,
        _ => return Err(bad("proto", proto_text, "tcp or udp (or 6, 17)")),
    };
    fn number<T: std::str::FromStr>(v: &str) -> Option<T> {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
    let opt_u16 = |field: &'static str| -> Result<Option<u16>, LineMiss> {
        get(field)
            .map(|v| number::<u16>(v).ok_or_else(|| bad(field, v, "a number of 0 to 65535")))
            .transpose()
    };
    let opt_u32 = |field: &'static str| -> Result<Option<u32>, LineMiss> {
        get(field)
            .map(|v| number::<u32>(v).ok_or_else(|| bad(field, v, "a 32-bit number")))
            .transpose()
    };
    let dst_port = opt_u16("dport")?.ok_or_else(|| bad("dport", "", "a port"))?;
    let src_port = opt_u16("sport")?.unwrap_or(0);
    let tcp_flags = match (proto, get("flags")) {
        (Proto::Tcp, Some(v)) => parse_flags(v).ok_or_else(|| {
            bad(
                "flags",
                v,
                "TCP flag names (SYN ACK ...) or a hex byte (0x02)",
            )
        })?,
        _ => TcpFlags::default(),
    };
    Ok(LogLine {
        knock: Knock {
            src,
            dst,
            proto,
            src_port,
            dst_port,
            tcp_flags,
        },
        in_iface: "",
        ip_id: opt_u16("id")?,
        seq: opt_u32("seq")?,
        ack: opt_u32("ack")?,
        window: opt_u16("window")?,
    })
}

/// TCP flags as logs write them: names (`SYN ACK`, `syn,ack`, `S`), or a byte in hex (`0x12`).
fn parse_flags(text: &str) -> Option<TcpFlags> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u8::from_str_radix(hex, 16).ok().map(TcpFlags);
    }
    let mut flags = TcpFlags::default();
    for word in t
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let f = match word {
            "f" | "F" => TcpFlags::FIN,
            "s" | "S" => TcpFlags::SYN,
            "r" | "R" => TcpFlags::RST,
            "p" | "P" => TcpFlags::PSH,
            "a" | "A" => TcpFlags::ACK,
            "u" | "U" => TcpFlags::URG,
            "e" | "E" => TcpFlags::ECE,
            "c" | "C" => TcpFlags::CWR,
            _ => TcpFlags::named(word)?,
        };
        flags = flags.union(f);
    }
    Some(flags)
}

/// The log-file source: a file followed from its end, read with the admin's formats.
pub struct LogFileSource {
    tail: Tail,
    formats: Vec<LogFormat>,
}

impl LogFileSource {
    /// Opens `file` at its end (lines written before the start are never read).
    pub fn open(file: &Path, formats: Vec<LogFormat>) -> io::Result<LogFileSource> {
        Ok(LogFileSource {
            tail: Tail::open(file, MAX_LINE_BYTES)?,
            formats,
        })
    }

    pub fn file(&self) -> &PathBuf {
        self.tail.path()
    }
}

impl KnockSource for LogFileSource {
    fn fd(&self) -> BorrowedFd<'_> {
        self.tail.fd()
    }

    fn follows(&self) -> Option<&Path> {
        Some(self.file())
    }

    fn recv_batch(
        &mut self,
        knocks: &mut Vec<Knock>,
        _datagrams: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        let mut stats = RecvStats::default();
        let formats = &self.formats;
        self.tail.read_lines(&mut stats, |line, stats| {
            let Ok(line) = std::str::from_utf8(line) else {
                stats.malformed += 1;
                return;
            };
            match parse_line(formats, line) {
                Ok((_, l)) => {
                    knocks.push(l.knock);
                    stats.knocks += 1;
                }
                Err(LineMiss::NotSelected) => stats.ignored += 1,
                Err(_) => stats.malformed += 1,
            }
        })?;
        Ok(stats)
    }

    fn recheck_every(&self) -> Option<Duration> {
        Some(super::tail::RECHECK)
    }

    fn name(&self) -> &'static str {
        "the log file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Cisco ASA deny line, as a router forwards it by syslog.
    const ASA: &str = "Dec  2 14:03:11 gw.example %ASA-4-106023: Deny tcp src outside:203.0.113.7/40211 dst inside:198.51.100.10/7000 by access-group \"outside_in\" [0x0, 0x0]";

    fn asa() -> LogFormat {
        LogFormat::new(
            "asa",
            r"%ASA-\d-106023: Deny ",
            r"Deny (?P<proto>tcp|udp) src [^:]+:(?P<src>[0-9a-fA-F.:]+)/(?P<sport>\d+) dst [^:]+:(?P<dst>[0-9a-fA-F.:]+)/(?P<dport>\d+)",
        )
        .expect("format")
    }

    #[test]
    fn a_router_line_yields_its_knock() {
        let (i, l) = parse_line(&[asa()], ASA).expect("knock");
        assert_eq!(i, 0);
        assert_eq!(l.knock.src, "203.0.113.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(l.knock.dst, "198.51.100.10".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            (l.knock.proto, l.knock.src_port, l.knock.dst_port),
            (Proto::Tcp, 40211, 7000)
        );
    }

    #[test]
    fn netfilter_style_lines_with_flags_and_header_fields() {
        let f = LogFormat::new(
            "nf",
            "DROP",
            r"SRC=(?P<src>\S+) DST=(?P<dst>\S+) .*ID=(?P<id>\d+) .*PROTO=(?P<proto>\w+) SPT=(?P<sport>\d+) DPT=(?P<dport>\d+) SEQ=(?P<seq>\d+) ACK=(?P<ack>\d+) WINDOW=(?P<window>\d+) RES=0x00 (?P<flags>[A-Z ]+) URGP",
        )
        .expect("format");
        let line = "Dec  2 14:03:11 router kernel: DROP IN=wan OUT= SRC=10.200.1.2 DST=10.200.1.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=777 DF PROTO=TCP SPT=1 DPT=8000 SEQ=5 ACK=0 WINDOW=512 RES=0x00 SYN URGP=0";
        let (_, l) = parse_line(&[f], line).expect("knock");
        assert_eq!(l.knock.tcp_flags, TcpFlags::SYN);
        assert_eq!(
            (l.ip_id, l.seq, l.ack, l.window),
            (Some(777), Some(5), Some(0), Some(512))
        );
    }

    #[test]
    fn misses_say_why() {
        let formats = [asa()];
        assert_eq!(
            parse_line(&formats, "Dec  2 sshd[1]: Accepted"),
            Err(LineMiss::NotSelected)
        );
        let mangled = ASA.replace(" src outside", " from outside");
        assert!(matches!(
            parse_line(&formats, &mangled),
            Err(LineMiss::NoMatch { .. })
        ));
        let port = ASA.replace("/7000", "/70000");
        assert!(matches!(
            parse_line(&formats, &port),
            Err(LineMiss::Field { field: "dport", .. })
        ));
        let addr = ASA.replace("203.0.113.7", "203.0.113.777");
        assert!(matches!(
            parse_line(&formats, &addr),
            Err(LineMiss::Field { field: "src", .. })
        ));
        let long = format!("{ASA}{}", " ".repeat(MAX_LINE_BYTES));
        assert_eq!(parse_line(&formats, &long), Err(LineMiss::TooLong));
    }

    #[test]
    fn formats_are_checked_when_written() {
        assert_eq!(
            LogFormat::new("x", "a", r"(?P<src>\S+) (?P<dst>\S+) (?P<proto>\S+)"),
            Err(FormatError::MissingCapture("dport"))
        );
        assert!(matches!(
            LogFormat::new("x", "(", "a"),
            Err(FormatError::Regex {
                key: "required",
                ..
            })
        ));
        assert!(matches!(
            LogFormat::new(
                "x",
                "a",
                r"(?P<src>\S+) (?P<dst>\S+) (?P<proto>\S+) (?P<dport>\d+) (?P<port>\d+)"
            ),
            Err(FormatError::UnknownCapture(_))
        ));
        let huge = format!("a{{1000}}{}", "b{1000}".repeat(10));
        assert!(
            LogFormat::new("x", &huge, "a").is_err(),
            "compiled size is bounded"
        );
    }

    #[test]
    fn flags_in_the_ways_logs_write_them() {
        assert_eq!(
            parse_flags("SYN ACK"),
            Some(TcpFlags::SYN.union(TcpFlags::ACK))
        );
        assert_eq!(
            parse_flags("syn,ack"),
            Some(TcpFlags::SYN.union(TcpFlags::ACK))
        );
        assert_eq!(parse_flags("S"), Some(TcpFlags::SYN));
        assert_eq!(parse_flags("0x12"), Some(TcpFlags(0x12)));
        assert_eq!(parse_flags("SYNFLOOD"), None);
    }
}
