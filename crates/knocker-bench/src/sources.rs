//! Where knockerd sees the flood's knocks (`--daemons knockerd-packet,...`): its own table's
//! NFLOG rule (the default, `knockerd`), the packet socket, `/dev/kmsg`, a kern.log file, and a
//! log file with a format the admin wrote (a router's deny lines). Each is knockerd with the same
//! door and one `[source]` table; the bench measures its CPU per knock line or packet.
//!
//! The packet socket and `/dev/kmsg` see the flood's real packets (for `/dev/kmsg`, through the
//! log rule of knockerd's table; netfilter logs from a namespace only while
//! `net.netfilter.nf_log_all_netns` is 1, which the bench sets for the run and restores). The two
//! file sources read lines the flood sender appends to a file, as syslog would, in the format
//! they expect (`knocker-flood send --to-file`); alice's knocks are appended there too.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use crate::lab::{self, IFACE, SEQUENCE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Nflog,
    Packet,
    Kmsg,
    KernLog,
    LogFile,
}

impl Via {
    /// The `--daemons` names of knockerd, one per source.
    pub const NAMES: [(&'static str, Via); 5] = [
        ("knockerd", Via::Nflog),
        ("knockerd-packet", Via::Packet),
        ("knockerd-kmsg", Via::Kmsg),
        ("knockerd-kern-log", Via::KernLog),
        ("knockerd-log-file", Via::LogFile),
    ];

    pub fn from_name(name: &str) -> Option<Via> {
        Via::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    /// How the report names knockerd on this source.
    pub fn label(self) -> &'static str {
        match self {
            Via::Nflog => "knockerd",
            Via::Packet => "knockerd, packet socket",
            Via::Kmsg => "knockerd, /dev/kmsg",
            Via::KernLog => "knockerd, kern.log file",
            Via::LogFile => "knockerd, log file (ASA lines)",
        }
    }

    /// The lines the flood sender writes for a file source; `None`: the flood is packets.
    pub fn line_format(self) -> Option<LineFormat> {
        match self {
            Via::KernLog => Some(LineFormat::Kern),
            Via::LogFile => Some(LineFormat::Asa),
            Via::Nflog | Via::Packet | Via::Kmsg => None,
        }
    }

    /// knockerd's configuration: the bench's door, read through this source (`file`: the log
    /// file of a file source). A router's deny lines carry no TCP flags, so that door asks for
    /// none.
    pub fn knockerd_config(self, state_dir: &Path, file: &Path) -> String {
        let door = lab::knockerd_config(state_dir, self != Via::LogFile);
        let source = match self {
            Via::Nflog => String::new(),
            Via::Packet => format!("\n[source]\nkind = \"packet\"\ninterface = \"{IFACE}\"\n"),
            Via::Kmsg => "\n[source]\nkind = \"kernel-log\"\n".to_string(),
            Via::KernLog => format!("\n[source]\nkind = \"kernel-log\"\nfile = {file:?}\n"),
            Via::LogFile => format!(
                "\n[source]\nkind = \"log-file\"\nfile = {file:?}\n\n[[source.format]]\nname = \"asa\"\n\
                 required = '%ASA-\\d-106023: Deny '\n\
                 pattern = 'Deny (?P<proto>tcp|udp) src [^:]+:(?P<src>[0-9a-fA-F.:]+)/(?P<sport>\\d+) dst [^:]+:(?P<dst>[0-9a-fA-F.:]+)/(?P<dport>\\d+)'\n"
            ),
        };
        door + &source
    }
}

/// The lines of a file source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LineFormat {
    /// kern.log as rsyslog writes it: knockerd's table's `log prefix "knocker: " flags tcp
    /// sequence` lines, tagged `kernel:`.
    Kern,
    /// A Cisco ASA's deny lines (`%ASA-4-106023`), as a router's log forwarded by syslog.
    Asa,
}

impl LineFormat {
    pub fn name(self) -> &'static str {
        match self {
            LineFormat::Kern => "kern",
            LineFormat::Asa => "asa",
        }
    }

    /// Appends one line (newline included): a SYN from `src`:`sport` to `dst`:`dport`; `n`
    /// varies the header fields from line to line.
    pub fn line(self, out: &mut String, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, n: u32) {
        use std::fmt::Write as _;
        match self {
            LineFormat::Kern => {
                let _ = write!(
                    out,
                    "Dec  2 19:00:00 srv kernel: [ 1234.567890] knocker: IN={IFACE} OUT= MAC=02:00:00:00:00:01:02:00:00:00:00:02:{} SRC={} DST={} ",
                    if src.is_ipv4() { "08:00" } else { "86:dd" },
                    full(src),
                    full(dst)
                );
                if src.is_ipv4() {
                    let _ = write!(
                        out,
                        "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID={} DF ",
                        n & 0xffff
                    );
                } else {
                    out.push_str("LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=0 ");
                }
                let _ = writeln!(
                    out,
                    "PROTO=TCP SPT={sport} DPT={dport} SEQ={} ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 ",
                    n.wrapping_mul(2_654_435_761)
                );
            }
            LineFormat::Asa => {
                let _ = writeln!(
                    out,
                    "Dec  2 19:00:00 gw.example %ASA-4-106023: Deny tcp src outside:{src}/{sport} dst inside:{dst}/{dport} by access-group \"outside_in\" [0x0, 0x0]"
                );
            }
        }
    }
}

/// An address as netfilter prints it: IPv6 in full, every group of four digits.
fn full(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// alice's knock as a file source sees it: the sequence's lines appended to `file` in one
/// write. Returns when they were written.
pub fn knock_lines(
    file: &Path,
    format: LineFormat,
    src: IpAddr,
    dst: IpAddr,
) -> Result<Instant, String> {
    let mut text = String::new();
    for (k, port) in SEQUENCE.iter().enumerate() {
        format.line(&mut text, src, dst, 40000 + k as u16, *port, k as u32);
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_name_comes_back() {
        for (name, via) in Via::NAMES {
            assert_eq!(Via::from_name(name), Some(via));
        }
        assert_eq!(Via::from_name("knockerd-nflog"), None);
    }

    #[test]
    fn kernel_lines_have_netfilters_shape() {
        let mut s = String::new();
        let (a, b): (IpAddr, IpAddr) = (
            "fd00:200:ff::1".parse().unwrap(),
            "fd00:200:1::1".parse().unwrap(),
        );
        LineFormat::Kern.line(&mut s, a, b, 1234, 7000, 5);
        assert!(
            s.contains(" kernel: [ 1234.567890] knocker: IN=eth0 OUT= "),
            "{s}"
        );
        assert!(s.contains("SRC=fd00:0200:00ff:0000:0000:0000:0000:0001 DST=fd00:0200:0001:0000:0000:0000:0000:0001 LEN=80"), "{s}");
        assert!(s.contains("PROTO=TCP SPT=1234 DPT=7000 SEQ="), "{s}");
        assert!(s.ends_with("SYN URGP=0 \n"), "{s}");
        s.clear();
        LineFormat::Asa.line(
            &mut s,
            "10.200.100.7".parse().unwrap(),
            "10.200.1.1".parse().unwrap(),
            999,
            7000,
            0,
        );
        assert!(
            s.contains("Deny tcp src outside:10.200.100.7/999 dst inside:10.200.1.1/7000 by"),
            "{s}"
        );
    }

    #[test]
    fn each_source_gets_its_own_source_table() {
        let (st, f) = (Path::new("/tmp/s"), Path::new("/tmp/k.log"));
        assert!(!Via::Nflog.knockerd_config(st, f).contains("[source]"));
        assert!(Via::Packet
            .knockerd_config(st, f)
            .contains("kind = \"packet\"\ninterface = \"eth0\""));
        assert!(Via::Kmsg
            .knockerd_config(st, f)
            .contains("kind = \"kernel-log\"\n"));
        assert!(Via::KernLog
            .knockerd_config(st, f)
            .contains("file = \"/tmp/k.log\""));
        let lf = Via::LogFile.knockerd_config(st, f);
        assert!(
            lf.contains("kind = \"log-file\"") && !lf.contains("tcp_flags"),
            "{lf}"
        );
        assert!(Via::Kmsg.knockerd_config(st, f).contains("tcp_flags"));
    }
}
