//! Fuzzes `knockerd::nflog::parse_datagram_with`: what the packet worker does with every datagram
//! the kernel's NFLOG socket hands it (netlink messages, NFLOG attributes, the logged IPv4/IPv6
//! packet, SPA and SYN prefixes). Must never panic, and every knock it counts is one it returns.
#![no_main]

use knockerd::nflog::{parse_datagram_with, RecvStats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut knocks, mut spa, mut stats) = (Vec::new(), Vec::new(), RecvStats::default());
    parse_datagram_with(data, &mut knocks, &mut spa, &mut stats);
    assert_eq!(stats.knocks, (knocks.len() + spa.len()) as u64);
});
