//! Fuzzes the client's reading of profiles.toml (`knocker::profile::read`): any text, as a file
//! only its owner can read and as one others can. Must never panic; a bad profile costs only
//! itself, so reading never fails as a whole.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("profiles.toml");
    let _ = knocker::profile::read(&text, path, None);
    let _ = knocker::profile::read(&text, path, Some(0o644));
});
