//! Fuzzes the kernel-log source's parsers: a /dev/kmsg record (`parse_kmsg_record`), the prefix
//! and `kernel:` tag of a syslog line (`Prefixes::strip_syslog`), and netfilter's log text
//! (`parse_netfilter`). Must never panic; what parses must round-trip its own numbers.
#![no_main]

use knockerd::source::kernel_log::{parse_kmsg_record, parse_netfilter, Prefixes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let prefixes = Prefixes::new(Some("FW: "));
    if let Ok(record) = parse_kmsg_record(data) {
        assert!(record.level < 8);
        if let Some(text) = prefixes.strip(record.message) {
            let _ = parse_netfilter(text);
        }
    }
    if let Ok(line) = std::str::from_utf8(data) {
        for text in [prefixes.strip_syslog(line), Some(line)].into_iter().flatten() {
            if let Ok(l) = parse_netfilter(text) {
                assert_eq!(l.knock.src.is_ipv4(), l.knock.dst.is_ipv4());
                if l.knock.proto != knocker_engine::Proto::Tcp {
                    assert!(l.seq.is_none() && l.ack.is_none() && l.window.is_none());
                }
            }
        }
    }
});
