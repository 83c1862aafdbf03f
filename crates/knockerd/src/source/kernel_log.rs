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

/// Why `prefix` cannot be a kernel-log source's prefix, if it cannot: it must be what a LOG
/// rule's `--log-prefix` (nft: `log prefix`) writes, 1 to [`MAX_PREFIX_BYTES`] printable ASCII
/// characters.
pub fn prefix_problem(prefix: &str) -> Option<String> {
    let printable = prefix.bytes().all(|b| (b' '..=b'~').contains(&b));
    (prefix.is_empty() || prefix.len() > MAX_PREFIX_BYTES || !printable).then(|| format!("prefix must be 1 to {MAX_PREFIX_BYTES} printable ASCII characters, as your LOG rule's --log-prefix (nft: log prefix) writes it, trailing space included"))
}
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
    #[error("a SYN to a knockknock door's port that is not IPv4 (knockknock is IPv4 only)")]
    NotIpv4,
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

/// The TTL of a rebuilt knockknock SYN: the kernel's line has one (`TTL=`), but knockknock's
/// door reads only the addresses, ports, flags, ID, SEQ, ACK and WINDOW.
const REBUILT_TTL: u8 = 64;

/// Whether a line is a SYN that a knockknock door judges: TCP to one of `ports`, SYN set and
/// ACK clear, as the table's `tcp flags & (syn | ack) == syn` logs it.
pub fn is_knockknock_syn(line: &LogLine<'_>, ports: &[u16]) -> bool {
    let k = &line.knock;
    let syn_only = k.tcp_flags.0 & (TcpFlags::SYN.0 | TcpFlags::ACK.0) == TcpFlags::SYN.0;
    k.proto == Proto::Tcp && syn_only && ports.contains(&k.dst_port)
}

/// A knockknock SYN's line as the datagram NFLOG would have handed over: the IPv4 packet
/// rebuilt from the header fields the kernel printed (addresses, ports, ID, SEQ, ACK, WINDOW;
/// SEQ and ACK only with `log flags tcp sequence`, iptables `--log-tcp-sequence`), so the door
/// judges it as it judges NFLOG's. A line without one of them is refused: knockknock's 12
/// bytes are all four fields.
pub fn knockknock_datagram(line: &LogLine<'_>) -> Result<Datagram, LineError> {
    let k = &line.knock;
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (k.src, k.dst) else {
        return Err(LineError::NotIpv4);
    };
    let id = line.ip_id.ok_or(LineError::Missing("ID"))?;
    let seq = line.seq.ok_or(LineError::Missing("SEQ"))?;
    let ack = line.ack.ok_or(LineError::Missing("ACK"))?;
    let window = line.window.ok_or(LineError::Missing("WINDOW"))?;
    let fields = knocker_wire::knockknock::Knock::from_fields(id, seq, ack, window);
    Ok(Datagram {
        knock: *k,
        payload: knocker_wire::knockknock::build(
            src,
            dst,
            k.src_port,
            k.dst_port,
            &fields,
            REBUILT_TTL,
        ),
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
    /// Lines of knocks that arrived on other interfaces are ignored (none: every interface).
    interfaces: Vec<String>,
    /// The TCP ports of knockknock doors: their SYNs become datagrams.
    knockknock: Vec<u16>,
    buf: Vec<u8>,
}

impl KernelLogSource {
    /// Opens `/dev/kmsg` (reading it may need CAP_SYSLOG: open it while root) at its end, or
    /// `file` at its end: lines logged before the start are never read, so a restart replays
    /// no knock. SYNs to `knockknock` ports are handed over as knockknock's door reads them
    /// ([`knockknock_datagram`]).
    pub fn open(
        file: Option<&Path>,
        prefix: Option<&str>,
        interfaces: Vec<String>,
        knockknock: Vec<u16>,
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
            interfaces,
            knockknock,
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

/// What a line is taken as: where it arrived, and which SYNs are knockknock's.
#[derive(Clone, Copy)]
struct Take<'a> {
    interfaces: &'a [String],
    knockknock: &'a [u16],
}

impl Take<'_> {
    /// Takes a netfilter text: a knock, or a knockknock SYN's datagram (when it arrived on
    /// one of `interfaces`, if any is set), or a count.
    fn text(
        self,
        text: &str,
        out: &mut Vec<Knock>,
        datagrams: &mut Vec<Datagram>,
        stats: &mut RecvStats,
    ) {
        match parse_netfilter(text) {
            Ok(line) => {
                if !self.interfaces.is_empty()
                    && !self.interfaces.iter().any(|i| *i == line.in_iface)
                {
                    stats.ignored += 1;
                    return;
                }
                if !is_knockknock_syn(&line, self.knockknock) {
                    out.push(line.knock);
                    stats.knocks += 1;
                    return;
                }
                match knockknock_datagram(&line) {
                    Ok(d) => {
                        datagrams.push(d);
                        stats.knocks += 1;
                    }
                    Err(_) => stats.malformed += 1,
                }
            }
            Err(_) => stats.malformed += 1,
        }
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
        datagrams: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        let mut stats = RecvStats::default();
        let take = Take {
            interfaces: &self.interfaces,
            knockknock: &self.knockknock,
        };
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
                        Some(text) => take.text(text, knocks, datagrams, &mut stats),
                        None => stats.ignored += 1,
                    }
                }
                self.buf = buf;
                result.map(|()| stats)
            }
            Input::File(tail) => {
                let prefixes = &self.prefixes;
                tail.read_lines(&mut stats, |line, stats| {
                    match std::str::from_utf8(line)
                        .ok()
                        .and_then(|l| prefixes.strip_syslog(l))
                    {
                        Some(text) => take.text(text, knocks, datagrams, stats),
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

    fn follows(&self) -> Option<&Path> {
        self.file().map(PathBuf::as_path)
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

    /// A knockknock SYN's line as the kernel prints it for `log flags tcp sequence` (iptables
    /// `--log-tcp-sequence`): knocker's client, like knockknock's hping3, sets no DF and no
    /// TCP options, so the packet is 40 bytes.
    fn knockknock_line(
        src: &str,
        spt: u16,
        dpt: u16,
        k: &knocker_wire::knockknock::Knock,
    ) -> String {
        format!(
            "IN=va16001 OUT= MAC=5e:4e:3e:5f:a2:3c:fa:1a:27:b2:92:48:08:00 SRC={src} DST=10.200.77.1 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID={} PROTO=TCP SPT={spt} DPT={dpt} SEQ={} ACK={} WINDOW={} RES=0x00 SYN URGP=0 ",
            k.id(),
            k.seq(),
            k.ack(),
            k.window()
        )
    }

    fn take_all(text: &str, ports: &[u16]) -> (Vec<Knock>, Vec<Datagram>, RecvStats) {
        let (mut knocks, mut datagrams, mut stats) = (Vec::new(), Vec::new(), RecvStats::default());
        let take = Take {
            interfaces: &[],
            knockknock: ports,
        };
        take.text(text, &mut knocks, &mut datagrams, &mut stats);
        (knocks, datagrams, stats)
    }

    #[test]
    fn a_knockknock_syns_line_opens_its_door_through_the_engine_once() {
        use knocker_engine::{Engine, EngineConfig, Event, Refusal, Service};
        use knocker_wire::knockknock::{Key, Keys};
        use std::os::unix::fs::PermissionsExt;
        const PORT: u16 = 17688;
        // a profile as knockknock-genprofile writes it, and a native door for it
        let d = crate::TestDir::new("klog-kk");
        std::fs::create_dir_all(&d.0).expect("mkdir");
        let keys = Keys {
            cipher: Key::from_bytes([3; 16]),
            mac: Key::from_bytes([4; 16]),
        };
        for (file, text) in [
            ("cipher.key", keys.cipher.to_base64_line().to_string()),
            ("mac.key", keys.mac.to_base64_line().to_string()),
            ("counter", "0\n".to_string()),
            ("config", format!("[main]\nknock_port = {PORT}\n")),
        ] {
            let f = d.0.join(file);
            std::fs::write(&f, text).expect("write");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let door = format!(
            "[door.kk]\nkind = \"knockknock\"\nprofile = {:?}\nopen = [\"tcp/22\"]\n\n",
            d.0.display().to_string()
        );
        let parse = |source: &str| {
            crate::config::native::parse(Path::new("k.toml"), &format!("{door}{source}"))
        };
        let c = parse("[source]\nkind = \"kernel-log\"\nprefix = \"REJECT \"\n")
            .expect("a knockknock door under the kernel log");
        // a log file's formats capture no sequence numbers
        let e = parse("[source]\nkind = \"log-file\"\nfile = \"/var/log/fw.log\"\n[[source.format]]\nrequired = \"x\"\npattern = '(?P<src>\\S+) (?P<dst>\\S+) (?P<proto>\\S+) (?P<dport>\\d+)'\n")
            .expect_err("refused under a log file");
        assert!(e.line == Some(1) && e.message.contains("kernel-log"), "{e}");
        let ports = super::super::knockknock_ports(&c);
        assert_eq!(ports, vec![PORT]);
        let mut engine = Engine::new(EngineConfig {
            doors: c.doors.iter().map(|d| d.spec.clone()).collect(),
            max_tracked: c.max_tracked,
        })
        .expect("engine");
        let alice: IpAddr = "10.200.77.2".parse().expect("ip");
        let line = knockknock_line("10.200.77.2", 41000, PORT, &keys.encrypt(22, 0));
        // knockknock's own documented rule's prefix (`--log-prefix "REJECT "`), as read from
        // /dev/kmsg
        let record = format!("7,901,21548744999,-;REJECT {line}\n");
        let r = parse_kmsg_record(record.as_bytes()).expect("record");
        let text = Prefixes::new(Some("REJECT "))
            .strip(r.message)
            .expect("the admin's prefix");
        let (knocks, datagrams, stats) = take_all(text, &ports);
        assert!(knocks.is_empty(), "{knocks:?}");
        assert_eq!((datagrams.len(), stats.knocks), (1, 1));
        assert_eq!(datagrams[0].payload.len(), 40, "IPv4 and TCP headers");
        let mut judge = |d: &Datagram| {
            let now = std::time::Instant::now();
            engine.handle_datagram(now, &d.knock, &d.payload);
            std::iter::from_fn(|| engine.poll_event()).collect::<Vec<_>>()
        };
        let events = judge(&datagrams[0]);
        let grant = events
            .iter()
            .find_map(|e| match e {
                Event::Grant(g) => Some(g),
                _ => None,
            })
            .unwrap_or_else(|| panic!("a grant: {events:?}"));
        assert_eq!(
            (grant.to, grant.open.clone()),
            (alice, vec![Service::tcp(22)])
        );
        // the same line again, and its knock from another address: no grant
        let again = judge(&take_all(text, &ports).1[0]);
        assert!(
            !again.iter().any(|e| matches!(e, Event::Grant(_))),
            "{again:?}"
        );
        let elsewhere = knockknock_line("10.200.77.9", 41000, PORT, &keys.encrypt(22, 0));
        let events = judge(&take_all(&elsewhere, &ports).1[0]);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Refused {
                    reason: Refusal::Replayed,
                    ..
                }
            )),
            "{events:?}"
        );
        // the next counter opens again
        let next = knockknock_line("10.200.77.2", 41001, PORT, &keys.encrypt(22, 1));
        let events = judge(&take_all(&next, &ports).1[0]);
        assert!(
            events.iter().any(|e| matches!(e, Event::Grant(_))),
            "{events:?}"
        );
    }

    #[test]
    fn a_knockknock_ports_lines_without_its_fields_are_dropped() {
        let k = knocker_wire::knockknock::Knock::from_fields(1, 2, 3, 4);
        let line = knockknock_line("10.200.77.2", 41000, 8888, &k);
        let (_, d, _) = take_all(&line, &[8888]);
        assert_eq!(d.len(), 1);
        let seen = knocker_wire::knockknock::parse(&d[0].payload).expect("a knockknock SYN");
        assert_eq!((seen.knock, seen.src_port, seen.dst_port), (k, 41000, 8888));
        // without `flags tcp sequence` the kernel prints no SEQ= and ACK=
        let no_seq = line.replace(" SEQ=2 ACK=3", "");
        assert_eq!(take_all(&no_seq, &[8888]).2.malformed, 1);
        assert_eq!(
            knockknock_datagram(&parse_netfilter(&no_seq).expect("line")).map(|_| ()),
            Err(LineError::Missing("SEQ"))
        );
        let no_id = line.replace(" ID=1", "");
        let (knocks, d, stats) = take_all(&no_id, &[8888]);
        assert_eq!((knocks.len(), d.len(), stats.malformed), (0, 0, 1));
        // IPv6 (knockknock is IPv4 only)
        let v6 = V6_SYN.replace("DPT=8000", "DPT=8888");
        assert_eq!(
            knockknock_datagram(&parse_netfilter(&v6).expect("line")).map(|_| ()),
            Err(LineError::NotIpv4)
        );
        assert_eq!(take_all(&v6, &[8888]).2.malformed, 1);
        // a SYN to another port is a knock; so is anything but a SYN to the door's port (the
        // table drops those unlogged: they can come from the admin's own rule)
        assert_eq!(take_all(&line, &[9999]).0.len(), 1);
        let ack = line.replace("RES=0x00 SYN", "RES=0x00 ACK SYN");
        assert_eq!(take_all(&ack, &[8888]).0.len(), 1);
        // knockknock's documented LOG rule adds `--log-tcp-options --log-ip-options`: the
        // options the kernel prints after the header fields change nothing
        let opts = line
            .replace("ID=1 PROTO", "ID=1 OPT (07070400000000) PROTO")
            .replace("URGP=0 ", "URGP=0 OPT (020405B40402080A) ");
        let (_, d, _) = take_all(&opts, &[8888]);
        assert_eq!(
            knocker_wire::knockknock::parse(&d[0].payload).map(|s| s.knock),
            Some(k)
        );
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
                let _ = knockknock_datagram(&l);
            }
            let p = Prefixes::new(Some("FW "));
            let _ = p.strip_syslog(&line);
            let _ = parse_kmsg_record(&bytes);
            let _ = parse_kmsg_record(&KMSG_V4_SYN[..cut.min(KMSG_V4_SYN.len())]);
        }
    }
}
