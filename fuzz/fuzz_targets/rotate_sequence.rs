//! Fuzzes the rotating door's port-range parser (`parse_ports`, configuration text) and the
//! derivation both sides compute (`sequence`) over any spec it accepts and any counter. Must never
//! panic; a sequence has the spec's number of knocks, each distinct, inside the range, never in
//! ascending or descending order (a sweep must not walk it).
#![no_main]

use knocker_wire::rotate::{parse_ports, sequence, RotateSpec};
use knocker_wire::{Proto, RotateKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let (head, text) = data.split_at(10);
    let _ = parse_ports(&String::from_utf8_lossy(text));
    let knocks = usize::from(head[0] % 20);
    let first = u16::from_be_bytes([head[1], head[2]]);
    let last = u16::from_be_bytes([head[3], head[4]]);
    let counter = u64::from_be_bytes([
        head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9],
    ]);
    let proto = if head[5] & 1 == 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let Ok(spec) = RotateSpec::new(knocks, first..=last, proto) else {
        return;
    };
    let seq = sequence(&RotateKey::from_bytes([head[9]; 32]), &spec, counter);
    assert_eq!(seq.len(), knocks);
    let ports: Vec<u16> = seq.iter().map(|s| s.port).collect();
    assert!(ports.iter().all(|p| spec.ports().contains(p)));
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    let up = ports.windows(2).all(|w| w[0] <= w[1]);
    let down = ports.windows(2).all(|w| w[0] >= w[1]);
    assert!(!up && !down, "monotonic: {ports:?}");
});
