//! Fuzzes the readers of knockknock's server files on arbitrary text: the daemon's `config`, a
//! profile's `config` (its knock port), its `counter` and a key file's line. The first byte picks
//! the reader. Must never panic: bad input is an error that names the file, with a line where
//! there is one; what parses is in range.
#![no_main]

use std::path::Path;

use knocker_wire::knockknock::Key;
use knockerd::config::knockknock::{
    parse_counter, parse_daemon_conf, parse_profile_config, MAX_WINDOW,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let file = Path::new("fuzz.conf");
    let text = String::from_utf8_lossy(rest);
    let mut warnings = Vec::new();
    let named = |e: &knockerd::config::ConfigError| assert_eq!(e.file, file, "{e}");
    match which % 4 {
        0 => match parse_daemon_conf(file, &text, &mut warnings) {
            Ok(c) => assert!(
                (1..=86_400).contains(&c.delay) && (1..=MAX_WINDOW).contains(&c.error_window)
            ),
            Err(e) => named(&e),
        },
        1 => match parse_profile_config(file, &text, &mut warnings) {
            Ok(port) => assert!(port > 0),
            Err(e) => named(&e),
        },
        2 => {
            if let Err(e) = parse_counter(file, &text) {
                named(&e);
            }
        }
        _ => {
            let _ = Key::from_base64(&text);
        }
    }
});
