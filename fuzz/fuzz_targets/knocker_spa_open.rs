//! Fuzzes knocker's SPA receiver (`knocker_wire::spa::{check_tag, open, Receiver}`) with fixed
//! keys, two ways per input: the input as a datagram (the packet-facing path: length, HMAC,
//! Noise, which almost nothing passes; `open` is called whatever the tag, as if a holder of the
//! door key had tagged it, and a `Receiver` with the client's `ss` in its table must give the
//! same answer), and the input read as a request, sealed, opened and compared (the round trip
//! must hold for every valid request, through `open` and the `Receiver`, and `seal` must refuse
//! exactly the invalid ones).
//! Must never panic.
//!
//! The parser's refusals of authentic but malformed plaintexts are covered by the property
//! `arbitrary_plaintexts_never_panic` in crates/knocker-wire/tests/spa_props.rs, which seals
//! arbitrary plaintexts with snow directly.
#![no_main]

use std::net::IpAddr;

use knocker_wire::identity::PrivateKey;
use knocker_wire::spa::{check_tag, open, seal, Receiver, Request};
use knocker_wire::{Proto, Service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let server = PrivateKey::from_bytes([0x40; 32]);
    let client = PrivateKey::from_bytes([0x11; 32]);
    let door = server.door_key("fuzz");

    // 1. As received, and as a holder of the door key could send it: open does not check the
    //    tag, so feeding it every input covers both.
    let receiver =
        Receiver::new(&server, &door, [&client.public_key()]).expect("a receiver for any key");
    let _ = check_tag(&door, data);
    assert_eq!(receiver.open(data), open(data, &server, &door));

    // 2. As a request: sealed, then opened to the same request.
    if let Some(req) = request(data) {
        match seal(&req, &client, &server.public_key(), &door) {
            Ok(d) => {
                assert!(check_tag(&door, &d));
                let (who, got) = open(&d, &server, &door).expect("a sealed request opens");
                assert_eq!(who, client.public_key());
                assert_eq!(got, req);
                assert_eq!(receiver.open(&d), Ok((who, got)));
            }
            Err(_) => assert!(req.validate().is_err()),
        }
    }
});

/// Reads a request from the input: time 8, nonce 16, address kind 1 (+4/16), duration 4, then
/// 3 bytes per service. Invalid requests (duplicates, port 0, ...) are kept: seal must refuse
/// exactly those.
fn request(data: &[u8]) -> Option<Request> {
    let (time, rest) = data.split_first_chunk::<8>()?;
    let (nonce, rest) = rest.split_first_chunk::<16>()?;
    let (&kind, rest) = rest.split_first()?;
    let (allow, rest) = match kind % 3 {
        0 => (None, rest),
        1 => {
            let (a, rest) = rest.split_first_chunk::<4>()?;
            (Some(IpAddr::from(*a)), rest)
        }
        _ => {
            let (a, rest) = rest.split_first_chunk::<16>()?;
            (Some(IpAddr::from(*a)), rest)
        }
    };
    let (duration, rest) = rest.split_first_chunk::<4>()?;
    let services = rest
        .chunks_exact(3)
        .take(20)
        .map(|s| {
            let proto = if s[0] & 1 == 0 {
                Proto::Tcp
            } else {
                Proto::Udp
            };
            Service::new(proto, u16::from_be_bytes([s[1], s[2]]))
        })
        .collect();
    Some(Request {
        timestamp: u64::from_be_bytes(*time),
        nonce: *nonce,
        allow,
        services,
        duration: match u32::from_be_bytes(*duration) {
            0 if kind & 0x80 == 0 => None,
            d => Some(d),
        },
    })
}
