//! Fuzzes what a knockknock door does with a logged SYN: `knocker_wire::knockknock::parse`, then
//! knockerd's decoder for the door (the counter window ahead, and behind to name replays) with
//! fixed keys. Anything `parse` accepts must survive a round trip through `build`. A knock made
//! with the keys must open once and then be a replay. Must never panic.
#![no_main]

use knocker_wire::knockknock::{build, parse, Key, Keys};
use knockerd::config::knockknock::decoder;
use libfuzzer_sys::fuzz_target;

fn keys() -> Keys {
    Keys {
        cipher: Key::from_bytes([0x11; 16]),
        mac: Key::from_bytes([0x22; 16]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (_, decode) = decoder(keys(), 5, 20);
    let _ = decode(data, 0);
    let Some(seen) = parse(data) else {
        return;
    };
    let again = build(
        seen.src,
        seen.dst,
        seen.src_port,
        seen.dst_port,
        &seen.knock,
        64,
    );
    assert_eq!(
        parse(&again),
        Some(seen),
        "parse(build(parse(x))) != parse(x)"
    );
    // the same addresses and ports with a real knock: opens once, then is a replay
    let port = u16::from_be_bytes([seen.knock.0[0], seen.knock.0[1]]) | 1;
    let real = build(
        seen.src,
        seen.dst,
        seen.src_port,
        seen.dst_port,
        &keys().encrypt(port, 9),
        64,
    );
    let (_, decode) = decoder(keys(), 5, 20);
    let opened = decode(&real, 0).expect("a real knock opens");
    assert_eq!(opened.counter, Some(9));
    assert!(decode(&real, 0).is_err(), "a knock opens once");
});
