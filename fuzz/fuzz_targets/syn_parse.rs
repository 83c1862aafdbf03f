//! Fuzzes `knocker_wire::syn::parse` (the packet-facing path of stealth-SYN doors) and what the
//! server does with its result: `verify` against a fixed key in the steps around the packet's own
//! TSval, and `replay_id`. Anything `parse` accepts must survive a round trip: built again from
//! its fields with `build`, it parses to the same fields. Must never panic.
#![no_main]

use knocker_wire::syn::{build, linux_shape, parse, replay_id, verify, Marks, SynKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(seen) = parse(data) else {
        return;
    };
    let key = SynKey::from_bytes([0x5a; 32]);
    let step = u64::from(seen.tsval);
    for s in [step.wrapping_sub(1), step, step.wrapping_add(1)] {
        let _ = verify(&key, s, &seen);
    }
    let _ = replay_id(&seen);
    let marks = Marks {
        seq: seen.seq,
        tsval: seen.tsval,
        id: seen.id,
        slot: 0,
    };
    let again = build(
        seen.src,
        seen.dst,
        seen.src_port,
        seen.dst_port,
        &marks,
        &linux_shape(seen.src.is_ipv6(), 1500),
    );
    assert_eq!(
        parse(&again),
        Some(seen),
        "parse(build(parse(x))) != parse(x)"
    );
});
