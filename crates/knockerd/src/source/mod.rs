//! Sources: where knocks are seen. Each yields the same [`Knock`]s (and, for single-packet
//! doors, [`Datagram`]s: a knock with its payload) to the packet worker, which polls the
//! source's descriptor and drains it with [`KnockSource::recv_batch`], never blocking.
//!
//! - NFLOG ([`crate::nflog::NflogSource`], the default): the packets knockerd's own table logs
//!   to a netlink group.
//! - The kernel log ([`kernel_log`]): netfilter's log lines, from `/dev/kmsg` or a file syslog
//!   writes (`/var/log/kern.log`); knockerd's table logs knock ports there instead.
//! - A log file with the admin's formats ([`log_file`]): e.g. a router's firewall log.
//! - A packet socket ([`packet`]): AF_PACKET on one interface, with a BPF filter for the
//!   watched ports, for hosts where knockerd's table must not log.
//!
//! Beside them, for the packet socket and for recordings:
//!
//! - [`frame`]: a captured frame's link layer taken off, and the packets knockerd's table
//!   would log picked out ([`frame::Watch`]).
//! - [`pcap`]: the pcap and pcapng reader.
//! - [`replay`]: `knockerd replay FILE`, the doors over a recording.
//!
//! The worker opens its source while it is still root ([`open`]), then drops its privilege;
//! what it opened keeps working.

pub mod frame;
pub mod kernel_log;
pub mod log_file;
pub mod packet;
pub mod pcap;
pub mod replay;
mod tail;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use knocker_engine::Knock;

use crate::config::{Config, SourceSpec};
use crate::nflog::{self, NflogSource};
pub use crate::nflog::{Datagram, RecvStats};

/// The longest log line read; longer ones are dropped and counted (`RecvStats::too_long`).
/// netfilter's own lines are at most 1 KiB.
pub const MAX_LINE_BYTES: usize = 4096;
/// At most this many records or lines are taken per [`KnockSource::recv_batch`], so that a
/// flood cannot keep the worker from its timers.
pub const MAX_LINES_PER_BATCH: usize = 1024;

/// What the packet worker reads knocks from.
pub trait KnockSource {
    /// The descriptor to poll for input.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Takes what is there without blocking: knocks to `knocks`, single-packet datagrams to
    /// `datagrams`. Hostile input is counted in the stats, never an error; an error means the
    /// source itself failed.
    fn recv_batch(
        &mut self,
        knocks: &mut Vec<Knock>,
        datagrams: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats>;
    /// How often the source must be read even when its descriptor stays quiet (a followed
    /// file checks for rotation); `None`: only when it is readable.
    fn recheck_every(&self) -> Option<Duration> {
        None
    }
    /// The log file it follows by its path, which it opens again after a rotation: the packet
    /// worker's sandbox lets it open files for reading in that file's directory, and nowhere
    /// else. `None`: it reads only what it opened while root.
    fn follows(&self) -> Option<&std::path::Path> {
        None
    }
    /// What it reads, for log messages ("reading NFLOG: ...").
    fn name(&self) -> &'static str;
    /// The socket on which the root parent may turn the kernel's batching on and off under a
    /// flood (NFLOG: `nflog::BatchingHandle`): the worker hands it over before it reads a
    /// packet. `None`: the source has no such thing.
    fn batching_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl KnockSource for packet::PacketSource {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn recv_batch(
        &mut self,
        knocks: &mut Vec<Knock>,
        datagrams: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        self.recv_batch_with(knocks, datagrams)
    }

    fn name(&self) -> &'static str {
        "the packet socket"
    }
}

impl KnockSource for NflogSource {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn recv_batch(
        &mut self,
        knocks: &mut Vec<Knock>,
        datagrams: &mut Vec<Datagram>,
    ) -> io::Result<RecvStats> {
        self.recv_batch_with(knocks, datagrams)
    }

    fn name(&self) -> &'static str {
        "NFLOG"
    }

    fn batching_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

/// Why the configured source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot listen on NFLOG group {group}: {source}")]
    Nflog { group: u16, source: io::Error },
    #[error("cannot read the kernel log: {0}")]
    KernelLog(#[source] io::Error),
    #[error("cannot read the log file: {0}")]
    LogFile(#[source] io::Error),
    #[error("cannot listen on interface {interface} with a packet socket: {source}")]
    Packet {
        interface: String,
        source: io::Error,
    },
}

/// Opens the source the configuration names. Called while the worker is still root: binding
/// NFLOG needs CAP_NET_ADMIN, reading /dev/kmsg may need CAP_SYSLOG, a log file may be
/// readable by root alone.
pub fn open(config: &Config) -> Result<Box<dyn KnockSource>, OpenError> {
    Ok(match &config.source {
        SourceSpec::Nflog => Box::new(
            NflogSource::bind(config.nflog_group, nflog::SPA_SNAPLEN).map_err(|source| {
                OpenError::Nflog {
                    group: config.nflog_group,
                    source,
                }
            })?,
        ),
        SourceSpec::KernelLog { file, prefix } => Box::new(
            kernel_log::KernelLogSource::open(
                file.as_deref(),
                prefix.as_deref(),
                config.interfaces.clone(),
                knockknock_ports(config),
            )
            .map_err(OpenError::KernelLog)?,
        ),
        SourceSpec::LogFile { file, formats } => Box::new(
            log_file::LogFileSource::open(file, formats.clone()).map_err(OpenError::LogFile)?,
        ),
        SourceSpec::Packet { interface } => Box::new(
            packet::PacketSource::bind(interface, frame::Watch::from_config(config)).map_err(
                |source| OpenError::Packet {
                    interface: interface.clone(),
                    source,
                },
            )?,
        ),
    })
}

/// The TCP ports of knockknock doors, whose SYNs the kernel-log source rebuilds for them.
pub fn knockknock_ports(config: &Config) -> Vec<u16> {
    let mut v: Vec<u16> = config
        .doors
        .iter()
        .filter_map(|d| match d.kind {
            crate::config::DoorKind::Knockknock { port, .. } => Some(port),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Why a followed log file cannot be trusted, with the fix: anyone who can write to it can
/// forge knocks. Refused when the file is writable by others (o+w) or by a group other than
/// root's, or lies in a directory that others may write to (they could put a file of their own
/// at its path, which the source opens after a rotation). `None` when it is fine, or does not
/// exist yet (opening it says so).
pub fn untrusted_file(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode();
    let p = path.display();
    if mode & 0o002 != 0 {
        return Some(format!(
            "{p} is writable by every user (mode {:o}), so anyone on this host could write knocks into it: chmod o-w {p} (and make whatever creates it at rotation, e.g. logrotate's `create` or rsyslog's $FileCreateMode, do the same)",
            mode & 0o7777
        ));
    }
    if mode & 0o020 != 0 && meta.gid() != 0 {
        return Some(format!(
            "{p} is writable by group {} (mode {:o}), so its members could write knocks into it: chmod g-w {p}, or give it to a group only the logger is in",
            group_name(meta.gid()),
            mode & 0o7777
        ));
    }
    // the directory of the path, and of the file it leads to through symlinks
    let real = std::fs::canonicalize(path).ok();
    let dirs = [path.parent(), real.as_deref().and_then(|r| r.parent())];
    for dir in dirs
        .into_iter()
        .flatten()
        .filter(|d| !d.as_os_str().is_empty())
    {
        let Ok(dmeta) = std::fs::metadata(dir) else {
            continue;
        };
        if dmeta.mode() & 0o002 != 0 {
            return Some(format!(
                "{p} lies in {}, which every user may write to (mode {:o}): anyone could put a file of their own at its path, which knockerd reads after a rotation; keep the log in a directory only root (and the logger) can write to",
                dir.display(),
                dmeta.mode() & 0o7777
            ));
        }
    }
    None
}

/// Whether `user` could open `path` by the mode bits (no ACLs), for the warning that a rotated
/// file cannot be reopened by the worker.
pub fn unreadable_by(path: &std::path::Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let mode = meta.mode();
    let readable = if meta.uid() == uid {
        mode & 0o400 != 0
    } else if meta.gid() == gid {
        mode & 0o040 != 0
    } else {
        mode & 0o004 != 0
    };
    !readable
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_log_others_can_write_is_untrusted_and_the_message_says_which() {
        let dir = std::env::temp_dir().join(format!("knocker-untrusted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mode = |p: &std::path::Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        mode(&dir, 0o755);
        let file = dir.join("fw.log");
        std::fs::write(&file, "").expect("write");
        mode(&file, 0o640);
        assert_eq!(untrusted_file(&file), None);
        mode(&file, 0o646);
        assert!(untrusted_file(&file).is_some_and(|m| m.contains("writable by every user")));
        mode(&file, 0o660);
        let root_group =
            std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&file).expect("stat")) == 0;
        if root_group {
            assert_eq!(untrusted_file(&file), None, "root's group may write");
        }
        // another group (as root, the test can hand the file to one)
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&file, None, Some(65534)).expect("chown");
            assert!(untrusted_file(&file).is_some_and(|m| m.contains("writable by group")));
            mode(&file, 0o640);
            assert_eq!(untrusted_file(&file), None);
        }
        mode(&dir, 0o777);
        assert!(untrusted_file(&file).is_some_and(|m| m.contains("which every user may write to")));
        // through a symlink in a safe directory, to a file in an open one
        let safe = dir.with_extension("safe");
        let _ = std::fs::remove_dir_all(&safe);
        std::fs::create_dir_all(&safe).expect("dir");
        mode(&safe, 0o755);
        std::os::unix::fs::symlink(&file, safe.join("fw.log")).expect("symlink");
        assert!(untrusted_file(&safe.join("fw.log")).is_some());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&safe);
    }
}
