//! Can the end-to-end tests run here? One rule for every test of the workspace: a missing
//! prerequisite (root, a program) fails the test loudly, saying what is missing; only
//! `KNOCKER_SKIP_E2E=1`, set on purpose, skips, and then whether or not anything is missing.
//!
//! The demo and the benches are not tests: they call [`preflight`], which is an error.

use std::io::Write;
use std::path::PathBuf;

/// The variable that skips the e2e tests on purpose.
pub const SKIP_VAR: &str = "KNOCKER_SKIP_E2E";

/// The programs a lab needs, with their Debian packages.
const LAB_TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("nft", "nftables")];

/// Whether a lab test runs: root, `ip` and `nft`, and these programs besides. `false` (after a
/// printed notice) only under `KNOCKER_SKIP_E2E=1`; a missing prerequisite panics.
pub fn e2e(tools: &[&str]) -> bool {
    let mut all: Vec<&str> = LAB_TOOLS.iter().map(|(t, _)| *t).collect();
    all.extend_from_slice(tools);
    needs(true, &all)
}

/// Whether a test that needs root (if `root`) and these programs runs, by the same rule as
/// [`e2e`]: for tests that need no lab.
pub fn needs(root: bool, tools: &[&str]) -> bool {
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        // Straight to the stream, in one write: libtest would swallow an eprintln! of a passing
        // test.
        let _ = std::io::stderr().write_all(format!("SKIPPED: {SKIP_VAR}=1\n").as_bytes());
        return false;
    }
    let missing = missing(root, tools);
    assert!(
        missing.is_empty(),
        "e2e prerequisite missing: {} (scripts/test.sh installs what the tests need; \
         {SKIP_VAR}=1 skips on purpose)",
        missing.join("; ")
    );
    true
}

/// Whether this process can build labs (root, `ip` and `nft`); the reason if not. For the demo
/// and the benches.
pub fn preflight() -> Result<(), String> {
    let missing = missing(true, &LAB_TOOLS.map(|(t, _)| t));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

fn missing(root: bool, tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if root && !nix::unistd::geteuid().is_root() {
        missing.push(
            "must run as root (it creates network namespaces and nftables tables)".to_string(),
        );
    }
    for tool in tools {
        if which(tool).is_none() {
            missing.push(match LAB_TOOLS.iter().find(|(t, _)| t == tool) {
                Some((_, package)) => {
                    format!("`{tool}` is not installed (Debian: apt-get install {package})")
                }
                None => format!("`{tool}` is not installed"),
            });
        }
    }
    missing
}

/// Where `program` is: on `PATH`, else in /usr/sbin or /sbin (where Debian puts daemons, and
/// where a user's `PATH` may not look).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_with_its_package_where_known() {
        let m = missing(false, &["sh", "knocker-no-such-program", "nft"]);
        assert!(
            m.iter()
                .any(|l| l == "`knocker-no-such-program` is not installed"),
            "{m:?}"
        );
        assert!(!m.iter().any(|l| l.contains("`sh`")), "{m:?}");
        if which("nft").is_none() {
            assert!(m.iter().any(|l| l.contains("apt-get install nftables")));
        }
    }

    #[test]
    fn which_finds_programs_on_the_path_and_in_sbin() {
        assert!(which("sh").is_some_and(|p| p.is_file()));
        assert_eq!(which("knocker-no-such-program"), None);
    }
}
