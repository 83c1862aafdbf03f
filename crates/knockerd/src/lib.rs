//! knockerd: sources, gatekeeper and firewall backends around `knocker-engine`.
//!
//! The split follows DESIGN.md: `nflog` sees knocks, `knocker_engine` decides (both in the
//! unprivileged packet worker), `privsep` carries the decisions across to the root process,
//! `gatekeeper` validates and applies grants through `nftset`, and `ruleset` owns the
//! `inet knocker` table.
pub mod config;
pub mod control;
pub mod daemon;
pub mod dryrun;
pub mod enroll;
pub mod fleet;
pub mod frontends;
pub mod gatekeeper;
pub mod ledger;
pub mod listening;
pub mod lockout;
pub mod metrics;
pub(crate) mod netlink;
pub mod nflog;
pub mod nftset;
pub mod notify;
pub mod onetime;
pub mod overrides;
pub mod privsep;
pub mod ruleset;
pub mod source;
pub mod status;
pub mod watch;

/// A temporary directory for unit tests, removed when dropped.
#[cfg(test)]
pub(crate) struct TestDir(pub std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(tag: &str) -> TestDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "knockerd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TestDir(dir)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
