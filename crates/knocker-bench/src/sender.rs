//! The flood sender: `knocker-flood send ...`, run by the bench as its own process (under
//! `nice`, inside the lab's client namespace) so that its CPU, its niceness and its lifetime are
//! separate from the bench's measuring threads.
//!
//! It writes pre-built packets from spoofed sources (SYNs, or UDP datagrams with an SPA-looking
//! payload: see [`Payload`]) to a raw socket (IP header included) in `sendmmsg` batches, and
//! reports on stdout: `start N` once the packets are built, `progress
//! SENT` now and then, `done SENT ERRORS SECONDS` at the end. It stops after `packets` packets
//! or `max_secs` seconds, whichever comes first.
//!
//! With `--to-file`, the flood is log lines instead (for knockerd's file sources): the same
//! knocks from the same spoofed sources, appended to the file in the format given, as syslog
//! would write them, at the same pace and with the same reports.

use std::io::{IoSlice, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::packets::{self, Family, FloodPackets, Payload};
use crate::sources::LineFormat;

/// Messages per `sendmmsg` call.
const BATCH: usize = 64;

#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// Server address the packets go to (its family is the flood's).
    #[arg(long)]
    pub dst: IpAddr,
    /// Destination port of every packet.
    #[arg(long)]
    pub port: u16,
    /// What the packets are.
    #[arg(long, value_enum, default_value_t = Payload::Syn)]
    pub payload: Payload,
    /// Distinct spoofed sources, cycled.
    #[arg(long)]
    pub sources: u32,
    /// Packets to send in all.
    #[arg(long)]
    pub packets: u64,
    /// Packets per second; 0 sends as fast as the machine allows.
    #[arg(long, default_value_t = 0)]
    pub pps: u64,
    /// Hard time limit in seconds.
    #[arg(long)]
    pub max_secs: f64,
    /// Packets between two `progress` lines (the bench places alice's attempts by them).
    #[arg(long, default_value_t = 8192)]
    pub progress_every: u64,
    /// Append the knocks as log lines to this file instead of sending packets (SYN payload only).
    #[arg(long)]
    pub to_file: Option<std::path::PathBuf>,
    /// The lines' format, with --to-file.
    #[arg(long, value_enum, default_value_t = LineFormat::Kern)]
    pub line_format: LineFormat,
}

impl SendArgs {
    /// The command line that gives these arguments back (after `send`).
    pub fn to_args(&self) -> Vec<String> {
        [
            ("--dst", self.dst.to_string()),
            ("--port", self.port.to_string()),
            ("--payload", self.payload.name().to_string()),
            ("--sources", self.sources.to_string()),
            ("--packets", self.packets.to_string()),
            ("--pps", self.pps.to_string()),
            ("--max-secs", self.max_secs.to_string()),
            ("--progress-every", self.progress_every.to_string()),
            ("--line-format", self.line_format.name().to_string()),
        ]
        .into_iter()
        .chain(
            self.to_file
                .iter()
                .map(|f| ("--to-file", f.display().to_string())),
        )
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }
}

pub fn run(a: &SendArgs) -> Result<(), String> {
    let family = match a.dst {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    if a.sources == 0 || a.sources > family.max_sources() {
        return Err(format!(
            "--sources must be 1 to {} for this family",
            family.max_sources()
        ));
    }
    if let Some(file) = &a.to_file {
        return send_lines(a, family, file);
    }
    let packets = FloodPackets::build(a.payload, family, a.sources, a.packets, a.dst, a.port)?;
    let domain = match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    };
    // IPPROTO_RAW: we write the IP header ourselves (spoofed sources); the kernel adds nothing.
    let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
        .map_err(|e| format!("raw socket: {e} (root needed)"))?;
    if family == Family::V6 {
        sock.set_header_included_v6(true)
            .map_err(|e| format!("IPV6_HDRINCL: {e}"))?;
    }
    let _ = sock.set_send_buffer_size(4 << 20);
    // connected: sendmmsg needs no per-message address
    sock.connect(&SockAddr::from(SocketAddr::new(a.dst, 0)))
        .map_err(|e| format!("connect raw socket to {}: {e}", a.dst))?;
    let fd = sock.as_raw_fd();
    let mut headers: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let addrs: Vec<Option<SockaddrStorage>> = vec![None; BATCH];
    let no_cmsgs: [ControlMessage; 0] = [];
    paced(a, packets.count(), |sent, n| {
        let iovs: Vec<[IoSlice; 1]> = (0..n)
            .map(|k| {
                [IoSlice::new(
                    packets.packet((sent as usize).wrapping_add(k)),
                )]
            })
            .collect();
        match sendmmsg(fd, &mut headers, &iovs, &addrs, no_cmsgs, MsgFlags::empty()) {
            Ok(results) => Ok(Some(results.count() as u64)),
            Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EAGAIN) => {
                std::thread::yield_now();
                Ok(None)
            }
            Err(e) => Err(format!("sendmmsg: {e}")),
        }
    })
}

/// The flood as log lines appended to `file`, [`BATCH`] lines per write.
fn send_lines(a: &SendArgs, family: Family, file: &std::path::Path) -> Result<(), String> {
    if a.payload != Payload::Syn {
        return Err("--to-file writes knocks (SYNs) only".into());
    }
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut text = String::with_capacity(BATCH * 400);
    paced(a, a.sources as usize, |sent, n| {
        text.clear();
        for k in 0..n as u64 {
            let i = ((sent + k) % u64::from(a.sources)) as u32;
            let src = packets::spoofed_source(family, i);
            a.line_format
                .line(&mut text, src, a.dst, packets::source_port(i), a.port, i);
        }
        out.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(Some(n as u64))
    })
}

/// Sends `a.packets` in batches through `batch(sent, n)` (`None`: the kernel had no room, try
/// again), paced at `a.pps`, within `a.max_secs`, reporting on stdout as the bench expects.
fn paced(
    a: &SendArgs,
    distinct: usize,
    mut batch: impl FnMut(u64, usize) -> Result<Option<u64>, String>,
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock, line: String| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say(&mut out, format!("start {distinct}"));
    let start = Instant::now();
    let cap = Duration::from_secs_f64(a.max_secs.max(0.0));
    let every = a.progress_every.max(1);
    let (mut sent, mut errors, mut next_progress) = (0u64, 0u64, every);
    while sent < a.packets && start.elapsed() < cap {
        let n = (a.packets - sent).min(BATCH as u64) as usize;
        match batch(sent, n)? {
            Some(k) => sent += k,
            None => errors += 1,
        }
        if sent >= next_progress {
            say(&mut out, format!("progress {sent}"));
            next_progress = sent + every;
        }
        if a.pps > 0 {
            let due = Duration::from_secs_f64(sent as f64 / a.pps as f64);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    say(
        &mut out,
        format!("done {sent} {errors} {:.6}", start.elapsed().as_secs_f64()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        a: SendArgs,
    }

    #[test]
    fn the_senders_arguments_round_trip() {
        let a = SendArgs {
            dst: "10.200.1.1".parse().expect("addr"),
            port: 62201,
            payload: Payload::WrongHmac,
            sources: 10_000,
            packets: 300_000,
            pps: 10_000,
            max_secs: 60.5,
            progress_every: 500,
            to_file: Some("/tmp/k f.log".into()),
            line_format: LineFormat::Asa,
        };
        let back = Wrap::try_parse_from(std::iter::once("send".to_string()).chain(a.to_args()))
            .expect("parses")
            .a;
        assert_eq!(back.to_args(), a.to_args());
        assert_eq!(back.payload, Payload::WrongHmac);
        assert_eq!(back.max_secs, 60.5);
        assert_eq!(back.progress_every, 500);
        assert_eq!(back.to_file, a.to_file);
        assert_eq!(back.line_format, LineFormat::Asa);
    }
}
