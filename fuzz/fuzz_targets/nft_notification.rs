//! Fuzzes `knockerd::watch::classify`: the root process's reading of nftables' change
//! announcements (netlink messages from the kernel). Must never panic; a deletion of the table or
//! a named set is always also a change.
#![no_main]

use knockerd::watch::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = classify(data, "knocker");
    assert!(!t.emptied || t.changed);
    assert!(!t.lost, "lost is the socket's to say, never a message's");
});
