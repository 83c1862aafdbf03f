//! Fuzzes `knocker_wire::syn::parse` (the packet-facing path of stealth-SYN doors) and what the
//! server does with its result: `verify` against a fixed key in the steps around the packet's own
//! TSval, `HintTable::find` on a table of three keys (its step moving between two values, so
//! steps are dropped and made again), and `replay_id`. Anything `parse` accepts must survive a round trip: built again from
//! its fields with `build`, it parses to the same fields. Must never panic.
#![no_main]

use std::sync::{Mutex, OnceLock, PoisonError};

use knocker_wire::syn::{build, linux_shape, parse, replay_id, verify, HintTable, Marks, SynKey};
use libfuzzer_sys::fuzz_target;

static TABLE: OnceLock<Mutex<HintTable>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(seen) = parse(data) else {
        return;
    };
    let key = SynKey::from_bytes([0x5a; 32]);
    let step = u64::from(seen.tsval);
    for s in [step.wrapping_sub(1), step, step.wrapping_add(1)] {
        let _ = verify(&key, s, &seen);
    }
    let table = TABLE.get_or_init(|| {
        let keys = (0..3u8).map(|k| SynKey::from_bytes([0x5a ^ k; 32])).collect();
        Mutex::new(HintTable::new(keys, 1).expect("three keys"))
    });
    let now = 57_000_000 + u64::from(seen.seq & 1);
    let _ = table
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .find(now, &seen);
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
