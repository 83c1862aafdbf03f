//! Fuzzes the kernel-log source's parsers: a /dev/kmsg record (`parse_kmsg_record`), the prefix
//! and `kernel:` tag of a syslog line (`Prefixes::strip_syslog`), and netfilter's log text
//! (`parse_netfilter`), and a knockknock SYN rebuilt from a line (`knockknock_datagram`). Must
//! never panic; what parses must round-trip its own numbers.
#![no_main]

use knockerd::source::kernel_log::{
    is_knockknock_syn, knockknock_datagram, parse_kmsg_record, parse_netfilter, Prefixes,
};
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
                // the SYN rebuilt for a knockknock door carries the line's own fields
                if is_knockknock_syn(&l, &[l.knock.dst_port]) {
                    if let Ok(d) = knockknock_datagram(&l) {
                        let seen = knocker_wire::knockknock::parse(&d.payload).expect("a SYN");
                        assert_eq!(Some(seen.knock.seq()), l.seq);
                        assert_eq!(Some(seen.knock.id()), l.ip_id);
                        assert_eq!(seen.dst_port, l.knock.dst_port);
                    }
                }
            }
        }
    }
});
