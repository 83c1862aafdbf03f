//! Fuzzes the encoded door's packet-facing path: knock ports, in any order and with any repeats,
//! fed to `knocker_wire::encoded::Reassembly`, and every message it completes handed to `decode`
//! with a fixed key. Must never panic, and the reassembly never holds more than the span allows.
#![no_main]

use knocker_wire::encoded::{decode, EncodedSpec, Push, Reassembly};
use knocker_wire::{EncodedKey, Proto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&bits, ports)) = data.split_first() else {
        return;
    };
    let base = 40000;
    let Ok(spec) = EncodedSpec::new(base, 11 + bits % 5, Proto::Tcp) else {
        return;
    };
    let key = EncodedKey::from_bytes([0x4b; 32]);
    let mut r = Reassembly::new(&spec);
    for pair in ports.chunks_exact(2) {
        // mostly ports inside the span, some outside
        let offset = u16::from_be_bytes([pair[0], pair[1]]);
        let port = base.wrapping_add(offset % (1 << (11 + bits % 5)) + u16::from(offset > 0xf000));
        if let Push::Complete(message) = r.push(port) {
            let _ = decode(&key, &spec, message.as_bytes());
            assert!(
                r.is_empty(),
                "a completed message leaves the reassembly empty"
            );
        }
    }
});
