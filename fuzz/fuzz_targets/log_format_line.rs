//! Fuzzes the log-file source's line matching (`log_file::parse_line`) with formats of the kinds
//! admins write (a router's, netfilter-style with flags and header fields): hostile lines must
//! never panic, and take time linear in their length (the regex crate's promise).
#![no_main]

use std::sync::OnceLock;

use knockerd::source::log_file::{parse_line, LogFormat};
use libfuzzer_sys::fuzz_target;

fn formats() -> &'static [LogFormat] {
    static F: OnceLock<Vec<LogFormat>> = OnceLock::new();
    F.get_or_init(|| {
        vec![
            LogFormat::new(
                "asa",
                r"%ASA-\d-106023: Deny ",
                r"Deny (?P<proto>\w+) src [^:]+:(?P<src>[0-9a-fA-F.:\[\]]+)/(?P<sport>\d+) dst [^:]+:(?P<dst>[0-9a-fA-F.:\[\]]+)/(?P<dport>\d+)",
            )
            .expect("format"),
            LogFormat::new(
                "nf",
                "DROP",
                r"SRC=(?P<src>\S+) DST=(?P<dst>\S+) .*?(?:ID=(?P<id>\d+) )?.*PROTO=(?P<proto>\w+) SPT=(?P<sport>\d+) DPT=(?P<dport>\d+)(?: SEQ=(?P<seq>\d+) ACK=(?P<ack>\d+))? WINDOW=(?P<window>\d+) RES=\S+ (?P<flags>[A-Z ]*)URGP",
            )
            .expect("format"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok((i, l)) = parse_line(formats(), line) {
            assert!(i < formats().len());
            assert_eq!(l.knock.src.is_ipv4(), l.knock.dst.is_ipv4());
        }
    }
});
