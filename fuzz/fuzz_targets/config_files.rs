//! Fuzzes every configuration reader of knockerd on arbitrary text: its own TOML, knockd.conf,
//! fwknopd's access.conf and fwknopd.conf, the clients file and a one-time sequence line. The
//! first byte picks the reader. Must never panic: bad input is an error that names the file.
#![no_main]

use std::path::Path;

use knockerd::config::native::{self, clients};
use knockerd::config::{fwknop, knockd};
use knockerd::onetime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let file = Path::new("fuzz.conf");
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => {
            if let Err(e) = native::parse(file, &text) {
                assert!(e.to_string().contains("fuzz.conf"), "{e}");
            }
        }
        1 => {
            let _ = knockd::parse(file, &text);
        }
        2 => {
            // legacy stanzas allowed, and what parses made into doors: CMD_CYCLE commands with
            // fwknopd's variables go through knockerd's placeholders there
            let fwknopd = fwknop::FwknopdConf::default();
            if let Ok(conf) = fwknop::parse_with(file, rest, &fwknopd, fwknop::Legacy::Allow) {
                let _ = fwknop::doors::doors(&conf);
            }
        }
        3 => {
            let _ = fwknop::parse_fwknopd_conf(file, rest);
        }
        4 => {
            let _ = clients::parse(file, &text);
        }
        _ => {
            let _ = onetime::parse_sequence(&text);
        }
    }
});
