//! Kernel logging from inside network namespaces, for the tests and benches of knockerd's
//! kernel-log source: netfilter's `log` statements log only in the initial namespace unless
//! `net.netfilter.nf_log_all_netns` is 1, and that switch exists (and is writable) only there.

use std::sync::Mutex;

/// The switch: 1 lets netfilter rules of every network namespace write to the kernel log.
pub const NF_LOG_ALL_NETNS: &str = "/proc/sys/net/netfilter/nf_log_all_netns";

/// Turns on kernel logging in every network namespace, and restores the previous value when
/// dropped. Several holders may exist at once in one process: the value goes back only when the
/// last one ends.
pub struct AllNetnsLogging {
    _private: (),
}

static HOLDERS: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

impl AllNetnsLogging {
    /// Sets the switch to 1; an error says why it could not (it needs root in the initial
    /// namespace).
    pub fn on() -> Result<AllNetnsLogging, String> {
        let mut h = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if h.0 == 0 {
            let before = std::fs::read_to_string(NF_LOG_ALL_NETNS)
                .map_err(|e| format!("cannot read {NF_LOG_ALL_NETNS}: {e}"))?;
            std::fs::write(NF_LOG_ALL_NETNS, "1").map_err(|e| {
                format!(
                    "cannot write {NF_LOG_ALL_NETNS} (root in the initial namespace needed): {e}"
                )
            })?;
            h.1 = Some(before.trim().to_string());
        }
        h.0 += 1;
        Ok(AllNetnsLogging { _private: () })
    }
}

impl Drop for AllNetnsLogging {
    fn drop(&mut self) {
        let mut h = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        h.0 -= 1;
        if h.0 == 0 {
            if let Some(before) = h.1.take() {
                let _ = std::fs::write(NF_LOG_ALL_NETNS, before);
            }
        }
    }
}
