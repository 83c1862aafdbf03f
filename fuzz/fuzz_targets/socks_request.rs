//! Fuzzes the SOCKS5 parsers `knocker proxy` runs on what local programs send
//! (`knocker_wire::socks`): the greeting and the request, each fed the input whole and in every
//! prefix the proxy could have read. A parser must never panic, must never ask for more than its
//! bound or for fewer bytes than it was given, and what it accepts from a prefix it accepts the
//! same way from the whole input.
#![no_main]

use knocker_wire::socks::{
    method_reply, parse_greeting, parse_request, reply, Parsed, MAX_GREETING, MAX_REQUEST,
};
use libfuzzer_sys::fuzz_target;

fn check<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    bound: usize,
    parse: fn(&[u8]) -> Result<Parsed<T>, knocker_wire::socks::RequestError>,
) -> Option<T> {
    let whole = parse(data);
    for n in 0..=data.len().min(bound) {
        match parse(&data[..n]) {
            Ok(Parsed::Need(k)) => assert!(k > n && k <= bound, "{n} bytes: needs {k}"),
            Ok(Parsed::Done(t, used)) => {
                assert!(used <= n, "used {used} of {n}");
                assert_eq!(whole, Ok(Parsed::Done(t, used)), "a prefix and the whole differ");
                break;
            }
            Err(e) => {
                assert_eq!(whole.as_ref().err(), Some(&e), "a prefix and the whole differ");
                let _ = e.reply();
                break;
            }
        }
    }
    match whole {
        Ok(Parsed::Done(t, _)) => Some(t),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(greeting) = check(data, MAX_GREETING, parse_greeting) {
        let _ = method_reply(&greeting);
    }
    if let Some(target) = check(data, MAX_REQUEST, parse_request) {
        let _ = (target.host(), target.port(), target.to_string());
        let addr = match target {
            knocker_wire::socks::Target::Addr(a) => Some(a),
            knocker_wire::socks::Target::Name(..) => None,
        };
        let _ = reply(knocker_wire::socks::Reply::Succeeded, addr);
    }
});
