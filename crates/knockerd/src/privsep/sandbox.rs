//! The packet worker's sandbox: what is left to it once it has bound its source and dropped to
//! its user, before it reads a single packet.
//!
//! - A Landlock ruleset (best effort: kernels without Landlock run without it, and the worker
//!   says so): no filesystem access at all, except reading files beneath the directory of a log
//!   file the source follows by its path (it opens the new file after a rotation); no TCP bind
//!   or connect; no abstract unix sockets and no signals to processes outside it.
//! - A seccomp filter, always: the system calls in [`allowed`], and nothing else. Any other
//!   call kills the whole process (SECCOMP_RET_KILL_PROCESS), so a violation is a death by
//!   SIGSYS, which the parent logs as such and answers by starting a new worker.
//!
//! Both are inherited by nothing (the worker never forks or executes) and cannot be undone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What the worker still needs, besides the calls every worker makes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs<'a> {
    /// A log file followed by its path (the kernel-log file source, the log-file source): it is
    /// opened again, read-only, after a rotation.
    pub follows: Option<&'a Path>,
    /// knockd's `UseSyslog`: messages are sent on the syslog socket connected while root.
    pub syslog: bool,
}

/// Why the sandbox could not be put in place: the worker stops (it never reads packets
/// unsandboxed).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no seccomp filter for this architecture ({0}): knockerd's packet worker knows x86_64 and aarch64")]
    Arch(&'static str),
    #[error("cannot build the seccomp filter: {0}")]
    Filter(#[source] seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    Install(#[source] seccompiler::Error),
    #[error("cannot set up Landlock: {0}")]
    Landlock(#[source] landlock::RulesetError),
    #[error("cannot open {} for the Landlock ruleset: {source}", path.display())]
    LandlockPath {
        path: PathBuf,
        source: landlock::PathFdError,
    },
}

/// Puts the worker in its sandbox: Landlock first (its own system calls are not in the filter),
/// then the seccomp filter.
pub(crate) fn enter(needs: Needs<'_>) -> Result<(), SandboxError> {
    landlock(needs.follows)?;
    let program = filter(needs, std::process::id())?;
    seccompiler::apply_filter(&program).map_err(SandboxError::Install)
}

/// The directories beneath which the worker may read files: the followed file's directory, by
/// the path it is opened with and by the path it leads to through symlinks.
fn readable_dirs(follows: &Path) -> Vec<PathBuf> {
    let dir = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![dir(follows)];
    if let Ok(real) = std::fs::canonicalize(follows) {
        let real = dir(&real);
        if !dirs.contains(&real) {
            dirs.push(real);
        }
    }
    dirs
}

fn landlock(follows: Option<&Path>) -> Result<(), SandboxError> {
    use landlock::{
        Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, ABI,
    };
    // the newest ABI the crate knows; on older kernels, best effort takes what they have
    let abi = ABI::V10;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .map_err(SandboxError::Landlock)?;
    for dir in follows.map(readable_dirs).unwrap_or_default() {
        let fd = PathFd::new(&dir).map_err(|source| SandboxError::LandlockPath {
            path: dir.clone(),
            source,
        })?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, AccessFs::ReadFile))
            .map_err(SandboxError::Landlock)?;
    }
    let status = ruleset.restrict_self().map_err(SandboxError::Landlock)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => tracing::debug!("packet worker: Landlock ruleset enforced"),
        RulesetStatus::PartiallyEnforced => tracing::debug!(
            "packet worker: Landlock ruleset partly enforced (this kernel has an older Landlock)"
        ),
        RulesetStatus::NotEnforced => tracing::info!(
            "packet worker: this kernel has no Landlock; its filesystem access is limited by its user and its seccomp filter only"
        ),
    }
    Ok(())
}

/// The architecture the filter is compiled for: this build's. Another architecture fails
/// here, at the worker's start, rather than run without a filter.
fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SandboxError::Arch(std::env::consts::ARCH))
}

/// The filter: every call in [`allowed`] with its conditions, anything else kills.
fn filter(needs: Needs<'_>, pid: u32) -> Result<BpfProgram, SandboxError> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = allowed(needs, pid)?.into_iter().collect();
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch()?,
    )
    .and_then(BpfProgram::try_from)
    .map_err(SandboxError::Filter)
}

/// A rule that matches when every `(argument, mask, value)` holds: `(arg & mask) == value`.
fn when(args: &[(u8, u64, u64)]) -> Result<Vec<SeccompRule>, SandboxError> {
    let conditions = args
        .iter()
        .map(|&(arg, mask, value)| {
            SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(mask),
                value,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(SandboxError::Filter)?;
    Ok(vec![
        SeccompRule::new(conditions).map_err(SandboxError::Filter)?
    ])
}

/// The packet worker's allow-list: the only system calls it makes once it reads packets, the
/// one place they are listed (SECURITY.md's "The packet worker's sandbox" follows it). A call
/// with no rule is allowed with any arguments; one with a rule only as the rule says.
///
/// Built for x86_64 and aarch64 (the `libc::SYS_*` numbers are this build's architecture's;
/// aarch64 has no `poll`, only `ppoll`).
fn allowed(needs: Needs<'_>, pid: u32) -> Result<Vec<(i64, Vec<SeccompRule>)>, SandboxError> {
    let any = Vec::new;
    let flags_mask = (libc::O_ACCMODE
        | libc::O_CREAT
        | libc::O_TRUNC
        | libc::O_APPEND
        | libc::O_TMPFILE
        | libc::O_PATH) as u64;
    let no_exec = || when(&[(2, libc::PROT_EXEC as u64, 0)]);
    let mut calls: Vec<(i64, Vec<SeccompRule>)> = vec![
        // its source and its pipes: poll them, read the NFLOG or packet socket (recvfrom), the
        // kernel log or the followed file and its inotify descriptor (read, lseek when a file was
        // truncated), the parent's pings (read); write reports to stdout and logs to stderr
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_poll, any()),
        (libc::SYS_ppoll, any()),
        (libc::SYS_read, any()),
        (libc::SYS_recvfrom, any()),
        (libc::SYS_lseek, any()),
        (libc::SYS_write, any()),
        (libc::SYS_writev, any()),
        // a followed file is looked at by its path to notice a rotation (std's metadata: statx,
        // or fstat/newfstatat where statx is missing); a replaced file's descriptor is closed
        (libc::SYS_statx, any()),
        // std checks that a descriptor is open before it closes it (F_GETFD, in debug builds):
        // the source's, when the worker stops; no other fcntl
        (
            libc::SYS_fcntl,
            when(&[(1, u64::from(u32::MAX), libc::F_GETFD as u64)])?,
        ),
        (libc::SYS_newfstatat, any()),
        (libc::SYS_fstat, any()),
        (libc::SYS_close, any()),
        // memory: the allocator (never executable memory: PROT_EXEC is refused)
        (libc::SYS_brk, any()),
        (libc::SYS_mmap, no_exec()?),
        (libc::SYS_mprotect, no_exec()?),
        (libc::SYS_munmap, any()),
        (libc::SYS_mremap, any()),
        (libc::SYS_madvise, any()),
        // time: the engine's clocks (the vDSO's fallback) and the coalescing pause under a flood
        (libc::SYS_clock_gettime, any()),
        (libc::SYS_clock_nanosleep, any()),
        (libc::SYS_nanosleep, any()),
        // std's locks (stdout's), and random bytes for a hash map's keys (reading them gives
        // nothing away and reaches nothing)
        (libc::SYS_futex, any()),
        (libc::SYS_sched_yield, any()),
        (libc::SYS_getrandom, any()),
        // signals and the end: the blocked SIGINT/SIGHUP mask, a call restarted after SIGSTOP,
        // and exit; a panic aborts (SIGABRT to itself only: tgkill's first argument is its
        // own pid), so that a panic is reported as one and not as a seccomp violation
        (libc::SYS_rt_sigreturn, any()),
        (libc::SYS_rt_sigprocmask, any()),
        (libc::SYS_rt_sigaction, any()),
        (libc::SYS_sigaltstack, any()),
        (libc::SYS_restart_syscall, any()),
        (libc::SYS_exit, any()),
        (libc::SYS_exit_group, any()),
        (libc::SYS_getpid, any()),
        (libc::SYS_gettid, any()),
        (
            libc::SYS_tgkill,
            when(&[(0, u64::from(u32::MAX), u64::from(pid))])?,
        ),
    ];
    if needs.follows.is_some() {
        // the followed file, opened again after a rotation: read-only, never created,
        // truncated or appended to (Landlock, where the kernel has it, keeps it to that file's
        // directory)
        calls.push((libc::SYS_openat, when(&[(2, flags_mask, 0)])?));
    }
    if needs.syslog {
        // knockd's UseSyslog: a message on the syslog socket connected while root (a send
        // without an address: to a connected socket only; no socket is ever connected again)
        calls.push((libc::SYS_sendto, when(&[(4, u64::MAX, 0)])?));
    }
    Ok(calls)
}

/// The environment variable of the test hook [`TestTrip`] (debug builds only).
pub const TRIP_ENV: &str = "KNOCKERD_TEST_SANDBOX_TRIP";

/// A test-only hook, compiled into debug builds only: with `KNOCKERD_TEST_SANDBOX_TRIP=PREFIX`
/// in its environment, a sandboxed worker whose pid is N looks for a file `PREFIX.N` each time
/// round its loop, and once it exists tries to open a UDP socket, a call outside its filter.
/// It adds a forbidden call and changes nothing in the filter; the end-to-end test
/// (`privsep_e2e.rs`) shows with it that such a call kills the worker by SIGSYS, that the
/// parent says so and replaces it, and that the replacement (another pid) works. Release builds
/// ignore the variable.
pub(crate) struct TestTrip {
    #[cfg(debug_assertions)]
    file: Option<PathBuf>,
}

impl TestTrip {
    pub(crate) fn from_env() -> TestTrip {
        TestTrip {
            #[cfg(debug_assertions)]
            file: std::env::var_os(TRIP_ENV).map(|prefix| {
                let mut name = prefix;
                name.push(format!(".{}", std::process::id()));
                PathBuf::from(name)
            }),
        }
    }

    /// Makes the forbidden call if the test asked for it (debug builds; a no-op otherwise).
    pub(crate) fn check(&self) {
        #[cfg(debug_assertions)]
        if self.file.as_deref().is_some_and(Path::exists) {
            tracing::warn!("test hook {TRIP_ENV}: opening a socket, outside the seccomp filter");
            let _ = std::net::UdpSocket::bind(("127.0.0.1", 0));
            tracing::error!("test hook {TRIP_ENV}: the socket call was not stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_for_every_source() {
        let log = Path::new("/var/log/kern.log");
        for needs in [
            Needs::default(),
            Needs {
                follows: Some(log),
                syslog: true,
            },
        ] {
            let program = filter(needs, 4242).expect("a filter");
            assert!(!program.is_empty());
        }
        let calls = |needs| -> Vec<i64> {
            allowed(needs, 1)
                .expect("allowed")
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        let plain = calls(Needs::default());
        for forbidden in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_sendto,
            libc::SYS_execve,
            libc::SYS_clone,
            libc::SYS_kill,
            libc::SYS_ptrace,
        ] {
            assert!(!plain.contains(&forbidden), "{forbidden}");
        }
        let follows = calls(Needs {
            follows: Some(log),
            syslog: false,
        });
        assert!(follows.contains(&libc::SYS_openat));
        assert!(!follows.contains(&libc::SYS_sendto));
    }

    #[test]
    fn a_followed_files_directory_is_readable_by_both_its_paths() {
        assert_eq!(
            readable_dirs(Path::new("/nonexistent-knocker/kern.log")),
            [PathBuf::from("/nonexistent-knocker")]
        );
        assert_eq!(readable_dirs(Path::new("kern.log")), [PathBuf::from(".")]);
    }
}

/// Keeps this process out of core dumps (and from being traced by anyone but root): both of
/// knockerd's processes hold keys, and a crash (a panic, which aborts in the packaged build, an
/// abort, a fault) must not write them to a core file. Called first thing by the parent and by
/// the worker; an `execve` of a command resets it for the command.
pub fn forbid_core_dumps() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(
            "cannot mark the process non-dumpable (PR_SET_DUMPABLE: {e}): a crash may leave a \
             core dump with the keys in it"
        );
    }
}

#[cfg(test)]
mod dumpable_tests {
    /// Run twice: by the test harness, which runs itself again for this one test with
    /// `KNOCKER_DUMPABLE_CHILD` set (so that the harness's own process stays dumpable), and in
    /// that child, which checks the change and says so.
    #[test]
    fn the_process_is_no_longer_dumpable() {
        const NAME: &str = "privsep::sandbox::dumpable_tests::the_process_is_no_longer_dumpable";
        if std::env::var_os("KNOCKER_DUMPABLE_CHILD").is_some() {
            assert!(nix::sys::prctl::get_dumpable().expect("PR_GET_DUMPABLE"));
            super::forbid_core_dumps();
            assert!(!nix::sys::prctl::get_dumpable().expect("PR_GET_DUMPABLE"));
            println!("child: no longer dumpable");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env("KNOCKER_DUMPABLE_CHILD", "1")
            .output()
            .expect("run the test binary again");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("child: no longer dumpable"), "{stdout}");
    }
}
