//! The flood sender: `knocker-flood send ...`, run by the bench as its own process (under
//! `nice`, inside the lab's client namespace) so that its CPU, its niceness and its lifetime are
//! separate from the bench's measuring threads.
//!
//! It writes pre-built SYNs from spoofed sources to a raw socket (IP header included) in
//! `sendmmsg` batches, and reports on stdout: `start N` once the packets are built, `progress
//! SENT` now and then, `done SENT ERRORS SECONDS` at the end. It stops after `packets` packets
//! or `max_secs` seconds, whichever comes first.

use std::io::{IoSlice, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::packets::{Family, FloodPackets};

/// Messages per `sendmmsg` call.
const BATCH: usize = 64;
/// Packets between two `progress` lines.
const PROGRESS_EVERY: u64 = 8192;

#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// Server address the SYNs go to (its family is the flood's).
    #[arg(long)]
    pub dst: IpAddr,
    /// Destination port of every SYN.
    #[arg(long)]
    pub port: u16,
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
    let packets = FloodPackets::build(family, a.sources, a.dst, a.port);
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

    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock, line: String| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say(&mut out, format!("start {}", packets.count));

    let mut headers: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let addrs: Vec<Option<SockaddrStorage>> = vec![None; BATCH];
    let no_cmsgs: [ControlMessage; 0] = [];
    let start = Instant::now();
    let cap = Duration::from_secs_f64(a.max_secs.max(0.0));
    let (mut sent, mut errors, mut next_progress) = (0u64, 0u64, PROGRESS_EVERY);
    while sent < a.packets && start.elapsed() < cap {
        let n = (a.packets - sent).min(BATCH as u64) as usize;
        let iovs: Vec<[IoSlice; 1]> = (0..n)
            .map(|k| {
                [IoSlice::new(
                    packets.packet((sent as usize).wrapping_add(k)),
                )]
            })
            .collect();
        match sendmmsg(fd, &mut headers, &iovs, &addrs, no_cmsgs, MsgFlags::empty()) {
            Ok(results) => sent += results.count() as u64,
            Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EAGAIN) => {
                errors += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(format!("sendmmsg: {e}")),
        }
        if sent >= next_progress {
            say(&mut out, format!("progress {sent}"));
            next_progress = sent + PROGRESS_EVERY;
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
