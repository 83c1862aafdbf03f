//! The kernel-log source: netfilter's log lines (nft `log`, iptables `-j LOG`, one formatter in
//! the kernel) read from `/dev/kmsg`, or from a file such as `/var/log/kern.log` that syslog
//! writes, turned into [`Knock`]s.
//!
//! A line counts only when its text starts with one of the source's prefixes, glued to `IN=` as
//! the kernel prints it: knockerd's own ([`OWN_PREFIX`], which its table logs knock ports with)
//! and the admin's (`[source] prefix`, for LOG rules of their own). From `/dev/kmsg` only the
//! kernel's own records are taken (facility 0: a process writing to `/dev/kmsg` gets the user
//! facility, whatever it asks for); from a file, only lines whose syslog tag is `kernel:`.
//!
//! Everything here is hostile input: parsing never panics, a line that does not parse is
//! counted and skipped.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use knocker_engine::{Knock, Proto, TcpFlags};

use super::tail::Tail;
use super::{Datagram, KnockSource, RecvStats, MAX_LINES_PER_BATCH, MAX_LINE_BYTES};

/// The log prefix of knockerd's own rule for knock ports when the source is the kernel log.
/// Its trailing space keeps it apart from the `IN=` the kernel glues to it.
pub const OWN_PREFIX: &str = "knocker: ";
/// The longest prefix nft accepts (and iptables' LOG: 29 characters).
pub const MAX_PREFIX_BYTES: usize = 127;
/// Whether netfilter in namespaces other than the host's logs to the kernel log (machine-wide).
pub const NF_LOG_ALL_NETNS: &str = "/proc/sys/net/netfilter/nf_log_all_netns";
/// The device the kernel's log is read from.
pub const KMSG: &str = "/dev/kmsg";
/// A /dev/kmsg record is at most 8 KiB (the kernel's CONSOLE_EXT_LOG_MAX); a read with a smaller
/// buffer fails with EINVAL.
const KMSG_RECORD_BYTES: usize = 16 << 10;

/// One netfilter log line, parsed: the knock, and the header fields the kernel printed that a
/// knock does not keep (a single-SYN door of knockknock's kind reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub knock: Knock,
    /// The interface it arrived on (`IN=`; empty for locally generated packets).
    pub in_iface: &'a str,
    /// The IPv4 identification field (`ID=`); IPv6 has none.
    pub ip_id: Option<u16>,
    /// TCP sequence and acknowledgement numbers: logged only with `log flags tcp sequence`
    /// (iptables `--log-tcp-sequence`). `ACK=` is printed whether or not the ACK flag is set.
    pub seq: Option<u32>,
    pub ack: Option<u32>,
    /// The TCP window (`WINDOW=`).
    pub window: Option<u16>,
}

/// Why a netfilter log line did not yield a knock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a netfilter log line (no IN= after the prefix)")]
    NotNetfilter,
    #[error("no {0}= field")]
    Missing(&'static str),
    #[error("a bad {0}= field")]
    Bad(&'static str),
    #[error("{0}= appears twice (a forged prefix?)")]
    Duplicate(&'static str),
    #[error("source and destination are of different address families")]
    Families,
    #[error("not TCP or UDP")]
    Proto,
}

/// The fields a knock is made of: a line that has one of them twice is refused, since a log
/// prefix is free text and could carry a forged copy in front of the real one.
const KEYS: [&str; 10] = [
    "IN", "SRC", "DST", "PROTO", "SPT", "DPT", "ID", "SEQ", "ACK", "WINDOW",
];

/// Parses netfilter's text from `IN=` on (the prefix already stripped), IPv4 or IPv6, TCP or
/// UDP. The kernel's layout (nf_log_syslog.c):
/// `IN= OUT= MAC= SRC= DST= LEN= TOS= PREC= TTL= ID= [DF] PROTO=TCP SPT= DPT= [SEQ= ACK=]
/// WINDOW= RES= [CWR ECE URG ACK PSH RST SYN FIN] URGP= [OPT (..)]`; IPv6 has `TC= HOPLIMIT=
/// FLOWLBL=` in place of TOS to ID. An ICMP error's quoted packet (in brackets) is not read.
pub fn parse_netfilter(text: &str) -> Result<LogLine<'_>, LineError> {
    if !text.starts_with("IN=") {
        return Err(LineError::NotNetfilter);
    }
    let mut found: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
    let mut flags = TcpFlags::default();
    // TCP flags are bare words between RES= and URGP= (ACK the flag, ACK= the number)
    let mut in_flags = false;
    for token in text.split(' ').filter(|t| !t.is_empty()) {
        if token.starts_with('[') {
            break;
        }
        match token.split_once('=') {
            Some((key, value)) => {
                in_flags = key == "RES";
                if let Some(i) = KEYS.iter().position(|k| *k == key) {
                    if found[i].replace(value).is_some() {
                        return Err(LineError::Duplicate(KEYS[i]));
                    }
                }
            }
            None if in_flags => {
                flags = flags.union(TcpFlags::named(token).unwrap_or_default());
            }
            None => {}
        }
    }
    let [iface, src, dst, proto, spt, dpt, id, seq, ack, window] = found;
    fn need<'a>(v: Option<&'a str>, key: &'static str) -> Result<&'a str, LineError> {
        v.ok_or(LineError::Missing(key))
    }
    let src: IpAddr = need(src, "SRC")?
        .parse()
        .map_err(|_| LineError::Bad("SRC"))?;
    let dst: IpAddr = need(dst, "DST")?
        .parse()
        .map_err(|_| LineError::Bad("DST"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(LineError::Families);
    }
    let proto = match need(proto, "PROTO")? {
        "TCP" => Proto::Tcp,
        "UDP" => Proto::Udp,
        _ => return Err(LineError::Proto),
    };
    let number = |v: Option<&str>, key: &'static str| -> Result<Option<u64>, LineError> {
        v.map(|v| {
            // the kernel prints plain decimal: no sign, no leading '+', at most u32's digits
            if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LineError::Bad(key));
            }
            v.parse::<u64>().map_err(|_| LineError::Bad(key))
        })
        .transpose()
    };
    let narrow = |v: Option<u64>, key: &'static str, max: u64| match v {
        Some(n) if n > max => Err(LineError::Bad(key)),
        other => Ok(other),
    };
    let port = |v: Option<&str>, key: &'static str| -> Result<u16, LineError> {
        let n = narrow(number(v, key)?, key, u64::from(u16::MAX))?;
        n.map(|n| n as u16).ok_or(LineError::Missing(key))
    };
    let src_port = port(spt, "SPT")?;
    let dst_port = port(dpt, "DPT")?;
    let u16_of = |v, key| -> Result<Option<u16>, LineError> {
        Ok(narrow(number(v, key)?, key, u64::from(u16::MAX))?.map(|n| n as u16))
    };
    let u32_of = |v, key| -> Result<Option<u32>, LineError> {
        Ok(narrow(number(v, key)?, key, u64::from(u32::MAX))?.map(|n| n as u32))
    };
    let tcp = proto == Proto::Tcp;
    Ok(LogLine {
        knock: Knock {
            src,
            dst,
            proto,
            src_port,
            dst_port,
            tcp_flags: if tcp { flags } else { TcpFlags::default() },
        },
        in_iface: iface.unwrap_or(""),
        ip_id: u16_of(id, "ID")?,
        seq: if tcp { u32_of(seq, "SEQ")? } else { None },
        ack: if tcp { u32_of(ack, "ACK")? } else { None },
        window: if tcp { u16_of(window, "WINDOW")? } else { None },
    })
}

/// One record of `/dev/kmsg`: `PRI,SEQ,TIMESTAMP_US,FLAGS[,...];MESSAGE\n` followed by
/// continuation lines (` KEY=value`), which are not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmsgRecord<'a> {
    /// syslog facility: 0 for the kernel's own messages.
    pub facility: u32,
    pub level: u8,
    pub seq: u64,
    /// Microseconds since boot.
    pub usec: u64,
    /// The message text (the kernel escapes unprintable bytes as `\xNN`).
    pub message: &'a str,
}

/// Why a /dev/kmsg record was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsgError {
    #[error("no ';' after the record's header")]
    NoHeader,
    #[error("a bad record header field: {0}")]
    Header(&'static str),
    #[error("the message is not text")]
    NotText,
}

/// Parses one record read from `/dev/kmsg`.
pub fn parse_kmsg_record(record: &[u8]) -> Result<KmsgRecord<'_>, KmsgError> {
    let semi = record
        .iter()
        .position(|b| *b == b';')
        .ok_or(KmsgError::NoHeader)?;
    let header = std::str::from_utf8(&record[..semi]).map_err(|_| KmsgError::Header("text"))?;
    let mut fields = header.split(',');
    let mut field = |name: &'static str| -> Result<u64, KmsgError> {
        let f = fields.next().ok_or(KmsgError::Header(name))?;
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(KmsgError::Header(name));
        }
        f.parse().map_err(|_| KmsgError::Header(name))
    };
    let pri = field("priority")?;
    let seq = field("sequence")?;
    let usec = field("timestamp")?;
    let pri = u32::try_from(pri).map_err(|_| KmsgError::Header("priority"))?;
    let rest = &record[semi + 1..];
    let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let message = std::str::from_utf8(&rest[..end]).map_err(|_| KmsgError::NotText)?;
    Ok(KmsgRecord {
        facility: pri >> 3,
        level: (pri & 7) as u8,
        seq,
        usec,
        message,
    })
}

/// The prefixes a kernel-log source accepts: knockerd's own and the admin's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefixes(Vec<String>);

impl Prefixes {
    /// [`OWN_PREFIX`], and `admin` when given.
    pub fn new(admin: Option<&str>) -> Prefixes {
        let mut v = vec![OWN_PREFIX.to_string()];
        if let Some(p) = admin {
            if p != OWN_PREFIX {
                v.push(p.to_string());
            }
        }
        Prefixes(v)
    }

    /// The netfilter text (from `IN=` on) of a kernel message that starts with a prefix.
    pub fn strip<'a>(&self, message: &'a str) -> Option<&'a str> {
        self.0.iter().find_map(|p| {
            message
                .strip_prefix(p.as_str())
                .filter(|t| t.starts_with("IN="))
        })
    }

    /// The netfilter text of a syslog line (`... host kernel: [  12.345678] PREFIXIN=...`):
    /// the prefix must follow the `kernel:` tag, after the kernel's timestamp if syslog kept it.
    pub fn strip_syslog<'a>(&self, line: &'a str) -> Option<&'a str> {
        let at = line.find(" kernel: ")? + " kernel: ".len();
        let mut message = &line[at..];
        if let Some(rest) = message.strip_prefix('[') {
            let close = rest.find(']')?;
            message = rest[close + 1..].trim_start_matches(' ');
        }
        self.strip(message)
    }
}

/// Where a kernel-log source reads: `/dev/kmsg`, or a file that syslog writes.
enum Input {
    Kmsg(File),
    File(Tail),
}

/// The kernel-log source.
pub struct KernelLogSource {
    input: Input,
    prefixes: Prefixes,
    interface: Option<String>,
    buf: Vec<u8>,
}

impl KernelLogSource {
    /// Opens `/dev/kmsg` (reading it may need CAP_SYSLOG: open it while root) at its end, or
    /// `file` at its end: lines logged before the start are never read, so a restart replays
    /// no knock.
    pub fn open(
        file: Option<&Path>,
        prefix: Option<&str>,
        interface: Option<String>,
    ) -> io::Result<KernelLogSource> {
        let input = match file {
            Some(path) => Input::File(Tail::open(path, MAX_LINE_BYTES)?),
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(KMSG)
                    .map_err(|e| {
                        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                            " (with kernel.dmesg_restrict=1 reading it needs CAP_SYSLOG: under knockerd's systemd unit, add `CapabilityBoundingSet=CAP_SYSLOG` in a drop-in, `systemctl edit knockerd`)"
                        } else {
                            ""
                        };
                        io::Error::new(e.kind(), format!("cannot open {KMSG}: {e}{hint}"))
                    })?;
                // SEEK_END: after the last record (the kernel's own meaning for this device)
                f.seek(SeekFrom::End(0))?;
                Input::Kmsg(f)
            }
        };
        Ok(KernelLogSource {
            input,
            prefixes: Prefixes::new(prefix),
            interface,
            buf: vec![0; KMSG_RECORD_BYTES],
        })
    }

    /// The file read, when it is not `/dev/kmsg`.
    pub fn file(&self) -> Option<&PathBuf> {
        match &self.input {
            Input::File(t) => Some(t.path()),
            Input::Kmsg(_) => None,
        }
    }
}

/// Takes a netfilter text: a knock (when it arrived on `interface`, if one is set), or a count.
fn take(text: &str, interface: Option<&str>, out: &mut Vec<Knock>, stats: &mut RecvStats) {
    match parse_netfilter(text) {
        Ok(line) => {
            if interface.is_some_and(|i| i != line.in_iface) {
                stats.ignored += 1;
                return;
            }
            out.push(line.knock);
            stats.knocks += 1;
        }
        Err(_) => stats.malformed += 1,
    }
}

impl KnockSource for KernelLogSource {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.input {
            Input::Kmsg(f) => f.as_fd(),
            Input::File(t) => t.fd(),
        }
    }

    fn recv_batch(
        &mut self,
        knocks: &mut Vec<Knock>,
        _datagrams: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        let mut stats = RecvStats::default();
        match &mut self.input {
            Input::Kmsg(f) => {
                let mut buf = std::mem::take(&mut self.buf);
                let mut result = Ok(());
                for _ in 0..MAX_LINES_PER_BATCH {
                    // one record per read
                    let n = match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // records overwritten before we read them: the next read goes on
                        // from the oldest one left
                        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                            stats.overruns += 1;
                            continue;
                        }
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    };
                    let text = match parse_kmsg_record(&buf[..n]) {
                        // a process may write to /dev/kmsg, but never as the kernel
                        Ok(r) if r.facility == 0 => r.message,
                        Ok(_) => {
                            stats.ignored += 1;
                            continue;
                        }
                        Err(_) => {
                            stats.malformed += 1;
                            continue;
                        }
                    };
                    match self.prefixes.strip(text) {
                        Some(text) => take(text, self.interface.as_deref(), knocks, &mut stats),
                        None => stats.ignored += 1,
                    }
                }
                self.buf = buf;
                result.map(|()| stats)
            }
            Input::File(tail) => {
                let (prefixes, interface) = (&self.prefixes, self.interface.as_deref());
                tail.read_lines(&mut stats, |line, stats| {
                    match std::str::from_utf8(line)
                        .ok()
                        .and_then(|l| prefixes.strip_syslog(l))
                    {
                        Some(text) => take(text, interface, knocks, stats),
                        None => stats.ignored += 1,
                    }
                })?;
                Ok(stats)
            }
        }
    }

    fn recheck_every(&self) -> Option<Duration> {
        match self.input {
            Input::File(_) => Some(super::tail::RECHECK),
            Input::Kmsg(_) => None,
        }
    }

    fn name(&self) -> &'static str {
        match self.input {
            Input::File(_) => "the kernel log file",
            Input::Kmsg(_) => KMSG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines exactly as the kernel printed them on this machine (Debian 12, kernel 6.18; nft
    // `log prefix "..." flags tcp sequence` in a namespace, read back from /dev/kmsg), with the
    // prefix stripped, their trailing space included.
    const V4_SYN: &str = "IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=15358 DF PROTO=TCP SPT=60142 DPT=7000 SEQ=2768744136 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 ";
    const V4_UDP: &str = "IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=30 TOS=0x00 PREC=0x00 TTL=64 ID=56477 DF PROTO=UDP SPT=42678 DPT=9000 LEN=10 ";
    const V6_SYN: &str = "IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:86:dd SRC=fd00:0200:0077:0000:0000:0000:0000:0002 DST=fd00:0200:0077:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1047278 PROTO=TCP SPT=39302 DPT=8000 SEQ=1514120098 ACK=0 WINDOW=64800 RES=0x00 SYN URGP=0 ";
    /// The record /dev/kmsg returned for the first line.
    const KMSG_V4_SYN: &[u8] = b"4,344,21548744736,-;lsx-sample: IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC=10.200.77.2 DST=10.200.77.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=15358 DF PROTO=TCP SPT=60142 DPT=7000 SEQ=2768744136 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 \n";
    // The layout of an established connection's segment (not captured: the table drops only
    // new connections' knocks), to check that ACK the flag is not ACK= the number.
    const V4_ACK_PSH: &str = "IN=eth0 OUT= MAC= SRC=10.0.0.9 DST=10.0.0.1 LEN=52 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=TCP SPT=22 DPT=50000 WINDOW=501 RES=0x00 ACK PSH URGP=0 ";

    #[test]
    fn parses_an_ipv4_syn_with_its_header_fields() {
        let l = parse_netfilter(V4_SYN).expect("parses");
        assert_eq!(l.knock.src, "10.200.77.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(l.knock.dst, "10.200.77.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(l.knock.proto, Proto::Tcp);
        assert_eq!((l.knock.src_port, l.knock.dst_port), (60142, 7000));
        assert_eq!(l.knock.tcp_flags, TcpFlags::SYN);
        assert_eq!(l.in_iface, "va16001");
        assert_eq!(l.ip_id, Some(15358));
        assert_eq!(l.seq, Some(2_768_744_136));
        assert_eq!(l.ack, Some(0));
        assert_eq!(l.window, Some(64240));
    }

    #[test]
    fn parses_udp_and_ipv6_and_several_flags() {
        let u = parse_netfilter(V4_UDP).expect("udp");
        assert_eq!(u.knock.proto, Proto::Udp);
        assert_eq!(u.knock.dst_port, 9000);
        assert_eq!(u.knock.tcp_flags, TcpFlags::default());
        assert_eq!((u.ip_id, u.seq, u.window), (Some(56477), None, None));
        let v6 = parse_netfilter(V6_SYN).expect("v6");
        assert_eq!(
            v6.knock.src,
            "fd00:200:77::2".parse::<IpAddr>().expect("ip"),
            "the kernel prints IPv6 in full"
        );
        assert_eq!(
            (v6.ip_id, v6.seq, v6.window),
            (None, Some(1_514_120_098), Some(64800))
        );
        let a = parse_netfilter(V4_ACK_PSH).expect("ack");
        assert_eq!(a.knock.tcp_flags, TcpFlags::ACK.union(TcpFlags::PSH));
        assert_eq!(a.ack, None, "the ACK flag is not the ACK= number");
    }

    #[test]
    fn refuses_what_is_not_a_knock() {
        assert_eq!(parse_netfilter("hello"), Err(LineError::NotNetfilter));
        let icmp = "IN=eth0 OUT= MAC= SRC=10.0.0.2 DST=10.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=ICMP TYPE=8 CODE=0 ID=7 SEQ=1 ";
        assert!(parse_netfilter(icmp).is_err());
        let frag = "IN=eth0 OUT= MAC= SRC=10.0.0.2 DST=10.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 FRAG:185 PROTO=TCP ";
        assert_eq!(parse_netfilter(frag), Err(LineError::Missing("SPT")));
        let forged = V4_SYN.replace("SRC=10.200.77.2", "SRC=10.9.9.9 SRC=10.200.77.2");
        assert_eq!(parse_netfilter(&forged), Err(LineError::Duplicate("SRC")));
        let big = V4_SYN.replace("DPT=7000", "DPT=70000");
        assert_eq!(parse_netfilter(&big), Err(LineError::Bad("DPT")));
        let mixed = V4_SYN.replace("DST=10.200.77.1", "DST=fd00::1");
        assert_eq!(parse_netfilter(&mixed), Err(LineError::Families));
        let signed = V4_SYN.replace("SPT=60142", "SPT=+60142");
        assert_eq!(parse_netfilter(&signed), Err(LineError::Bad("SPT")));
    }

    #[test]
    fn an_icmp_errors_quoted_packet_is_not_read() {
        let line = "IN=eth0 OUT= MAC= SRC=10.0.0.1 DST=10.0.0.2 LEN=56 TOS=0x00 PREC=0xC0 TTL=64 ID=9 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.2 DST=10.0.0.1 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=1 DPT=7000 LEN=8 ] ";
        assert_eq!(parse_netfilter(line), Err(LineError::Proto));
    }

    #[test]
    fn kmsg_records_and_their_facility() {
        let r = parse_kmsg_record(KMSG_V4_SYN).expect("record");
        assert_eq!(
            (r.facility, r.level, r.seq, r.usec),
            (0, 4, 344, 21_548_744_736)
        );
        assert_eq!(Prefixes::new(None).strip(r.message), None, "not our prefix");
        let p = Prefixes::new(Some("lsx-sample: "));
        let text = p.strip(r.message).expect("our prefix");
        assert_eq!(parse_netfilter(text).expect("line").knock.dst_port, 7000);
        // `echo '<4>knocker: ...' > /dev/kmsg` by root arrives as the user facility
        let user = parse_kmsg_record(b"12,1843,123456790,-;knocker: IN=x").expect("record");
        assert_eq!(user.facility, 1);
        let caller = parse_kmsg_record(b"6,5,77,-,caller=T1;hello").expect("caller field");
        assert_eq!(caller.message, "hello");
        assert_eq!(parse_kmsg_record(b"6,5,77"), Err(KmsgError::NoHeader));
        assert_eq!(
            parse_kmsg_record(b"x,5,77,-;m"),
            Err(KmsgError::Header("priority"))
        );
    }

    #[test]
    fn prefixes_select_lines_and_syslog_lines_need_the_kernel_tag() {
        let p = Prefixes::new(Some("FW-KNOCK "));
        assert!(p.strip(&format!("knocker: {V4_SYN}")).is_some());
        assert!(p.strip(&format!("FW-KNOCK {V4_SYN}")).is_some());
        assert!(p.strip(&format!("other: {V4_SYN}")).is_none());
        assert!(p.strip("knocker: started").is_none());
        let cont = format!("4,1842,123456789,-;knocker: {V4_SYN}\n SUBSYSTEM=net\n");
        let r = parse_kmsg_record(cont.as_bytes()).expect("continuation lines");
        assert!(p.strip(r.message).is_some());
        let rsyslog = format!(
            "2026-12-02T14:03:11.512345+00:00 srv kernel: [ 8812.123456] knocker: {V4_SYN}"
        );
        assert!(p.strip_syslog(&rsyslog).is_some());
        let classic = format!("Dec  2 14:03:11 srv kernel: FW-KNOCK {V4_UDP}");
        assert!(p.strip_syslog(&classic).is_some());
        let user = format!("Dec  2 14:03:11 srv mallory: knocker: {V4_SYN}");
        assert!(p.strip_syslog(&user).is_none());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_on_mangled_lines(
            cut in 0usize..400,
            junk in "[ =A-Z0-9.:\\[\\]]{0,40}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            // a real line cut anywhere, with junk of the right alphabet spliced in
            let at = cut.min(V4_SYN.len());
            let line = format!("{}{junk}{}", &V4_SYN[..at], &V6_SYN[at.min(V6_SYN.len())..]);
            if let Ok(l) = parse_netfilter(&line) {
                proptest::prop_assert_eq!(l.knock.src.is_ipv4(), l.knock.dst.is_ipv4());
            }
            let p = Prefixes::new(Some("FW "));
            let _ = p.strip_syslog(&line);
            let _ = parse_kmsg_record(&bytes);
            let _ = parse_kmsg_record(&KMSG_V4_SYN[..cut.min(KMSG_V4_SYN.len())]);
        }
    }
}
