//! Fuzzes the ledger's reading of its journal (`knockerd::ledger`): `Ledger::open` (the replay
//! at start: the line bound, the sequence order, a torn last line cut off, the bounds on seen
//! digests and grants, a compaction at once when mostly dead) and `read_state` (`status`'s
//! reading without the lock). The journal is root's own file, but a crash, a full disk or a
//! hand edit can leave anything in it. Must never panic; what opens must reopen to the same
//! state (a restart loses and invents nothing, compacted or not), and `status` must read that
//! same state from the file the open left.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use knockerd::ledger::{self, Ledger, Options};
use libfuzzer_sys::fuzz_target;

/// The time the journal is opened at (records are live before or after it).
const NOW: u64 = 1_800_000_000;

/// A private directory for the journal, made once per process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("knocker-fuzz-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a directory for the journal");
        d
    })
}

fn options() -> Options {
    // small bounds, so that the fuzzer reaches the drops and the compaction
    Options {
        max_seen: 4,
        max_grants: 4,
        max_bytes: 1 << 16,
        compact_min_records: 4,
        compact_min_bytes: 512,
    }
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("ledger.jsonl");
    std::fs::write(&path, data).expect("write the journal");
    let first = match Ledger::open(&path, NOW, options()) {
        Ok((ledger, _recovery)) => ledger.state().clone(),
        Err(_) => {
            // a journal the daemon refuses: status refuses it too, or reads it (status forgives
            // a bad last line, which may be an append in progress)
            let _ = ledger::read_state(&path, NOW, &options());
            return;
        }
    };
    let (again, recovery) = Ledger::open(&path, NOW, options()).expect("what opened reopens");
    assert_eq!(recovery.torn_bytes, None, "the first open cut off the torn line");
    assert_eq!(again.state(), &first, "a reopen gives the same state");
    drop(again);
    let status = ledger::read_state(&path, NOW, &options())
        .expect("status reads what the daemon opened")
        .expect("the journal is there");
    assert_eq!(status, first, "status reads the daemon's state");
});
