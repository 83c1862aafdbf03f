//! Encoded knocks through the public API: known answers, the receiver's documented behaviour on
//! every kind of bad knock, and properties over arbitrary requests, orders and garbage.

use std::net::IpAddr;

use knocker_wire::encoded::{
    self, decode, encode, layout, DecodeError, EncodeError, EncodedSpec, Invalid, Push, Reassembly,
    Request, RequestError, MAX_DATA_KNOCKS,
};
use knocker_wire::{EncodedKey, Proto, Service};
use proptest::prelude::*;

fn counting_key() -> EncodedKey {
    EncodedKey::from_bytes(core::array::from_fn(|i| i as u8))
}

fn nonce() -> [u8; 12] {
    core::array::from_fn(|i| 100 + i as u8)
}

fn request_v4() -> Request {
    Request {
        allow: "192.0.2.7".parse().expect("v4"),
        services: vec![Service::tcp(22)],
        duration_secs: 30,
        unix_time: 1_700_000_000,
    }
}

/// Pushes every port; returns the messages completed on the way and the pushes' results.
fn feed(r: &mut Reassembly, ports: &[u16]) -> (Vec<encoded::Message>, Vec<Push>) {
    let mut done = Vec::new();
    let mut results = Vec::new();
    for &p in ports {
        let push = r.push(p);
        if let Push::Complete(m) = push {
            done.push(m);
        }
        results.push(push);
    }
    (done, results)
}

/// Known answers computed independently (Python: hmac, hashlib and the `cryptography` package's
/// ChaCha20Poly1305, following the layout in the module docs). A change here breaks every
/// deployed client and server: it needs a new label.
#[test]
fn known_answers() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let ports = encode(&counting_key(), &spec, &request_v4(), nonce()).expect("encode");
    assert_eq!(
        ports,
        [
            40000, 40089, 40134, 40213, 40294, 40345, 40438, 40481, 40553, 40602, 40678, 40749,
            40812, 40859, 40918, 41017, 41071, 41149, 41214, 41216, 41327, 41395, 41467, 41485,
            41564, 41632, 41709, 41748, 41796, 41909, 41968, 42028, 42110, 42148, 42187, 42264,
            42349, 42369, 42474, 42500, 42589, 42656, 42742, 42783, 42847, 42920, 42977, 43040,
            43129, 43142, 43220, 43264, 43340, 43409, 43491, 43578, 43624, 43690, 43758, 43780,
            43877, 43911, 44000
        ]
    );
    let mut r = Reassembly::new(&spec);
    let (done, _) = feed(&mut r, &ports);
    let [message] = done[..] else {
        panic!("expected one message, got {done:?}")
    };
    let decoded = decode(&counting_key(), &spec, message.as_bytes()).expect("authentic");
    assert_eq!(decoded.request, request_v4());
    assert_eq!(decoded.nonce, nonce());
    assert_eq!(
        hex(&decoded.replay_id()),
        "b25b7578407920fab2b2110a46961fbe7496248d00a39f1243589494193f621a"
    );

    let spec = EncodedSpec::new(20000, 11, Proto::Udp).expect("spec");
    let request = Request {
        allow: "2001:db8::7".parse().expect("v6"),
        services: vec![Service::tcp(22), Service::udp(51820)],
        duration_secs: 3600,
        unix_time: 1_700_000_000,
    };
    let ports = encode(&counting_key(), &spec, &request, nonce()).expect("encode");
    assert_eq!(ports.len(), 121);
    assert_eq!(&ports[..6], &[20009, 20022, 20036, 20054, 20069, 20086]);
    assert_eq!(&ports[116..], &[21867, 21880, 21900, 21905, 21928]);
    let mut r = Reassembly::new(&spec);
    let (done, _) = feed(&mut r, &ports);
    let decoded = decode(&counting_key(), &spec, done[0].as_bytes()).expect("authentic");
    assert_eq!(decoded.request, request);
    assert_eq!(
        hex(&decoded.replay_id()),
        "cbad01b757f37bcfec78ea590d5bc51ceeaf22f4845a2ddaa010f7a5481b3814"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bad_requests_are_refused_before_encoding() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let k = counting_key();
    let refuse = |change: &dyn Fn(&mut Request)| {
        let mut r = request_v4();
        change(&mut r);
        encode(&k, &spec, &r, nonce()).expect_err("refused")
    };
    assert_eq!(
        refuse(&|r| r.services.clear()),
        EncodeError::Request(RequestError::Services(0))
    );
    assert_eq!(
        refuse(&|r| r.services = (1..=9).map(Service::tcp).collect()),
        EncodeError::Request(RequestError::Services(9))
    );
    assert_eq!(
        refuse(&|r| r.services = vec![Service::tcp(22), Service::tcp(22)]),
        EncodeError::Request(RequestError::Duplicate(Service::tcp(22)))
    );
    assert_eq!(
        refuse(&|r| r.services = vec![Service::udp(0)]),
        EncodeError::Request(RequestError::PortZero)
    );
    assert_eq!(
        refuse(&|r| r.duration_secs = 0),
        EncodeError::Request(RequestError::Duration(0))
    );
    assert_eq!(
        refuse(&|r| r.duration_secs = 86_401),
        EncodeError::Request(RequestError::Duration(86_401))
    );
    assert!(matches!(
        refuse(&|r| r.allow = "::".parse().expect("v6")),
        EncodeError::Request(RequestError::Unspecified(_))
    ));
    // Eight IPv6 services do not fit in 11 bits.
    let narrow = EncodedSpec::new(20000, 11, Proto::Tcp).expect("spec");
    let mut r = request_v4();
    r.allow = "2001:db8::1".parse().expect("v6");
    r.services = (1..=8).map(Service::tcp).collect();
    let e = encode(&k, &narrow, &r, nonce()).expect_err("too long");
    assert_eq!(
        e.to_string(),
        "8 services for an IPv6 address do not fit in 11-bit knocks: ask for fewer services or use a wider span"
    );
}

#[test]
fn decode_refuses_what_is_not_authentic() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let ports = encode(&counting_key(), &spec, &request_v4(), nonce()).expect("encode");
    let (done, _) = feed(&mut Reassembly::new(&spec), &ports);
    let bytes = done[0].as_bytes().to_vec();

    let other_key = EncodedKey::from_bytes([9; 32]);
    assert_eq!(
        decode(&other_key, &spec, &bytes),
        Err(DecodeError::Unauthentic)
    );
    // The span is in the associated data: another door with the same key refuses it.
    for other in [
        EncodedSpec::new(40001, 12, Proto::Tcp),
        EncodedSpec::new(40000, 13, Proto::Tcp),
        EncodedSpec::new(40000, 12, Proto::Udp),
    ] {
        let other = other.expect("spec");
        assert_eq!(
            decode(&counting_key(), &other, &bytes),
            Err(DecodeError::Unauthentic),
            "{other}"
        );
    }
    // Every single bit flipped anywhere is refused.
    for i in 0..bytes.len() * 8 {
        let mut changed = bytes.clone();
        changed[i / 8] ^= 1 << (i % 8);
        assert!(
            decode(&counting_key(), &spec, &changed).is_err(),
            "bit {i} flipped"
        );
    }
    assert_eq!(
        decode(&counting_key(), &spec, &bytes[..bytes.len() - 1]),
        Err(DecodeError::Length(46, 47))
    );
    assert_eq!(
        decode(&counting_key(), &spec, &[]),
        Err(DecodeError::Length(0, 1))
    );
    let mut bad_header = bytes.clone();
    bad_header[0] = 16;
    assert_eq!(
        decode(&counting_key(), &spec, &bad_header),
        Err(DecodeError::Header(16))
    );
}

#[test]
fn retransmissions_and_stray_ports_do_not_disturb() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let ports = encode(&counting_key(), &spec, &request_v4(), nonce()).expect("encode");
    let mut r = Reassembly::new(&spec);
    // Every knock twice, and ports just outside the span in between.
    let mut noisy = Vec::new();
    for &p in &ports {
        noisy.extend([p, 39999, p, 44096]);
    }
    let (done, results) = feed(&mut r, &noisy);
    assert_eq!(done.len(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|p| **p == Push::Invalid(Invalid::OutsideSpan))
            .count(),
        2 * ports.len()
    );
    assert!(results
        .iter()
        .all(|p| matches!(p, Push::Incomplete | Push::Complete(_))
            || *p == Push::Invalid(Invalid::OutsideSpan)));
    let decoded = decode(&counting_key(), &spec, done[0].as_bytes()).expect("authentic");
    assert_eq!(decoded.request, request_v4());
    assert!(r.is_empty() || r.push(ports[0]) == Push::Incomplete);
}

/// The nonces of the messages that decode, in order.
fn opened(spec: &EncodedSpec, messages: &[encoded::Message]) -> Vec<[u8; 12]> {
    messages
        .iter()
        .filter_map(|m| decode(&counting_key(), spec, m.as_bytes()).ok())
        .map(|d| d.nonce)
        .collect()
}

#[test]
fn a_retry_after_a_lost_knock_opens() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let k = counting_key();
    let first = encode(&k, &spec, &request_v4(), [1; 12]).expect("encode");
    let retry = encode(&k, &spec, &request_v4(), [2; 12]).expect("encode");
    // Whichever knock of the first message is lost, the retry right after it opens. If the
    // header was lost, the retry's header completes the first message, which opens too (as may a
    // first message whose lost knock the retry repeats by chance: a few bits each).
    for lost in 0..first.len() {
        let mut r = Reassembly::new(&spec);
        let mut stale = first.clone();
        stale.remove(lost);
        let (done, _) = feed(&mut r, &stale);
        assert!(done.is_empty(), "lost {lost}");
        let (done, results) = feed(&mut r, &retry);
        let opened = opened(&spec, &done);
        assert_eq!(opened.last(), Some(&[2; 12]), "lost {lost}: {results:?}");
        if lost == 0 {
            assert_eq!(opened, [[1; 12], [2; 12]]);
        }
    }
}

#[test]
fn a_retry_after_half_a_message_opens() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let k = counting_key();
    let first = encode(&k, &spec, &request_v4(), [1; 12]).expect("encode");
    let retry = encode(&k, &spec, &request_v4(), [2; 12]).expect("encode");
    for stale in [&first[..30], &first[1..40], &first[31..], &first[..1]] {
        let mut r = Reassembly::new(&spec);
        let (done, _) = feed(&mut r, stale);
        assert!(done.is_empty());
        let (done, results) = feed(&mut r, &retry);
        assert_eq!(opened(&spec, &done), [[2; 12]], "{results:?}");
        assert!(results.iter().all(|p| matches!(
            p,
            Push::Incomplete | Push::Complete(_) | Push::Invalid(Invalid::Conflict)
        )));
    }
}

#[test]
fn each_kind_of_bad_knock_is_reported() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let ports = encode(&counting_key(), &spec, &request_v4(), nonce()).expect("encode");

    // A second, different header.
    let mut r = Reassembly::new(&spec);
    assert_eq!(r.push(40000), Push::Incomplete);
    assert_eq!(r.push(40001), Push::Invalid(Invalid::Conflict));

    // A data knock past the end of a 62-knock message (6 data bits: index 63).
    let mut r = Reassembly::new(&spec);
    assert_eq!(r.push(40000), Push::Incomplete);
    assert_eq!(r.push(40000 + (63 << 6)), Push::Invalid(Invalid::BadIndex));

    // Two values for one index.
    let mut r = Reassembly::new(&spec);
    assert_eq!(r.push(ports[0]), Push::Incomplete);
    assert_eq!(r.push(ports[5]), Push::Incomplete);
    assert_eq!(r.push(ports[5] ^ 1), Push::Invalid(Invalid::Conflict));

    // The last knock with a padding bit set: 46 bytes = 368 bits in 62 knocks of 6 bits,
    // so its last 4 bits are padding.
    let mut changed = ports.clone();
    *changed.last_mut().expect("knocks") |= 1;
    let mut r = Reassembly::new(&spec);
    let (done, results) = feed(&mut r, &changed);
    assert!(done.is_empty());
    assert_eq!(results.last(), Some(&Push::Invalid(Invalid::BadPadding)));
    assert!(r.is_empty());

    // More distinct data knocks than any header allows.
    let mut r = Reassembly::new(&spec);
    let (_, results) = feed(&mut r, &(0..117).map(|i| 40016 + i).collect::<Vec<_>>());
    assert_eq!(results.last(), Some(&Push::Invalid(Invalid::TooMany)));
    assert!(results[..116].iter().all(|p| *p == Push::Incomplete));

    // A header whose message cannot fit an 11-bit span: IPv6, 8 services.
    let narrow = EncodedSpec::new(20000, 11, Proto::Tcp).expect("spec");
    let mut r = Reassembly::new(&narrow);
    assert_eq!(r.push(20000 + 15), Push::Invalid(Invalid::ImpossibleLength));
    assert!(r.is_empty());
}

#[test]
fn layouts_are_public_for_clients() {
    let spec = EncodedSpec::new(40000, 12, Proto::Tcp).expect("spec");
    let v4: IpAddr = "192.0.2.7".parse().expect("v4");
    assert_eq!(layout(&spec, v4, 1).map(|l| l.knocks()), Some(63));
    let ports = encode(&counting_key(), &spec, &request_v4(), nonce()).expect("encode");
    assert_eq!(ports.len(), 63);
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ports.len(), "every knock is distinct");
}

fn spec_strategy() -> impl Strategy<Value = EncodedSpec> {
    (11u8..=15, any::<u16>(), any::<bool>()).prop_map(|(bits, base, udp)| {
        let room = 65536 - (1u32 << bits);
        let base = (u32::from(base) % room + 1) as u16;
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        EncodedSpec::new(base, bits, proto).expect("valid by construction")
    })
}

fn request_strategy() -> impl Strategy<Value = Request> {
    let addr = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
    .prop_filter("a real address", |a| !a.is_unspecified());
    let services = proptest::collection::btree_set((any::<bool>(), 1u16..), 1..=8).prop_map(|s| {
        s.into_iter()
            .map(|(udp, port)| Service::new(if udp { Proto::Udp } else { Proto::Tcp }, port))
            .collect::<Vec<_>>()
    });
    (addr, services, 1u32..=86_400, any::<u64>()).prop_map(
        |(allow, services, duration_secs, unix_time)| Request {
            allow,
            services,
            duration_secs,
            unix_time,
        },
    )
}

/// A deterministic shuffle from a seed (xorshift), so proptest can shrink the seed.
fn shuffle(ports: &mut [u16], mut seed: u64) {
    for i in (1..ports.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ports.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_order_reassembles_to_the_request(
        k in any::<[u8; 32]>(),
        spec in spec_strategy(),
        request in request_strategy(),
        nonce in any::<[u8; 12]>(),
        seed in 1u64..,
        repeat in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let key = EncodedKey::from_bytes(k);
        let fits = layout(&spec, request.allow, request.services.len());
        let ports = match encode(&key, &spec, &request, nonce) {
            Ok(ports) => ports,
            Err(EncodeError::TooLong { .. }) => {
                prop_assert!(fits.is_none());
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        prop_assert_eq!(Some(ports.len()), fits.map(|l| l.knocks()));
        prop_assert!(ports.iter().all(|p| spec.span().contains(p)));
        prop_assert!(ports.len() <= MAX_DATA_KNOCKS + 1);

        let mut shuffled = ports.clone();
        // Retransmissions: some knocks twice.
        for i in &repeat {
            shuffled.push(ports[i.index(ports.len())]);
        }
        shuffle(&mut shuffled, seed);
        let mut r = Reassembly::new(&spec);
        let mut done = Vec::new();
        for (n, &p) in shuffled.iter().enumerate() {
            match r.push(p) {
                Push::Complete(m) => done.push((n, m)),
                Push::Incomplete => {}
                Push::Invalid(why) => return Err(TestCaseError::fail(format!("{why:?} at {n}"))),
            }
        }
        // Complete when the last distinct knock arrived. A retransmitted header may make the
        // reassembly keep knocks after that (it cannot tell a retry's header from a copy), so the
        // same message may complete again from retransmissions: the engine's replay check
        // refuses that one.
        prop_assert!(!done.is_empty());
        let decoded = decode(&key, &spec, done[0].1.as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded.request, &request);
        prop_assert_eq!(decoded.nonce, nonce);
        for (_, m) in &done[1..] {
            prop_assert_eq!(m, &done[0].1);
        }

        // The same message in send order gives the same replay id.
        let (again, _) = feed(&mut Reassembly::new(&spec), &ports);
        let again = decode(&key, &spec, again[0].as_bytes()).expect("authentic");
        prop_assert_eq!(again.replay_id(), decoded.replay_id());
    }

    #[test]
    fn a_retry_opens_whatever_the_order(
        spec in spec_strategy(),
        request in request_strategy(),
        lost in any::<prop::sample::Index>(),
        stale_seed in 1u64..,
        retry_seed in 1u64..,
    ) {
        // A first message loses one knock and arrives in any order; the retry sends its header
        // first (as clients do) and its data knocks arrive in any order.
        let key = counting_key();
        let Ok(mut stale) = encode(&key, &spec, &request, [1; 12]) else {
            return Ok(());
        };
        let mut retry = encode(&key, &spec, &request, [2; 12]).expect("fits like the first");
        let lost = lost.index(stale.len());
        stale.remove(lost);
        shuffle(&mut stale, stale_seed);
        shuffle(&mut retry[1..], retry_seed);
        let mut r = Reassembly::new(&spec);
        let (done, _) = feed(&mut r, &stale);
        prop_assert!(done.is_empty());
        let (done, _) = feed(&mut r, &retry);
        let opened: Vec<[u8; 12]> = done
            .iter()
            .filter_map(|m| decode(&key, &spec, m.as_bytes()).ok())
            .map(|d| d.nonce)
            .collect();
        prop_assert!(!opened.is_empty(), "lost knock {}: nothing opened", lost);
    }

    #[test]
    fn every_changed_knock_is_refused(
        spec in spec_strategy(),
        request in request_strategy(),
        nonce in any::<[u8; 12]>(),
        which in any::<prop::sample::Index>(),
        to in any::<u16>(),
        seed in 1u64..,
    ) {
        let key = counting_key();
        let Ok(mut ports) = encode(&key, &spec, &request, nonce) else {
            return Ok(());
        };
        let i = which.index(ports.len());
        prop_assume!(ports[i] != to);
        ports[i] = to;
        shuffle(&mut ports, seed);
        let mut r = Reassembly::new(&spec);
        for p in ports {
            if let Push::Complete(m) = r.push(p) {
                prop_assert!(decode(&key, &spec, m.as_bytes()).is_err(), "a changed message decoded");
            }
        }
    }

    #[test]
    fn garbage_never_panics_and_never_decodes(
        spec in spec_strategy(),
        offsets in proptest::collection::vec(any::<u16>(), 0..2000),
        wide in any::<bool>(),
    ) {
        let key = counting_key();
        let mut r = Reassembly::new(&spec);
        for o in offsets {
            // Mostly inside the span, where the work is; sometimes anywhere.
            let port = if wide { o } else { spec.base().wrapping_add(o % (1 << spec.bits())) };
            if let Push::Complete(m) = r.push(port) {
                prop_assert!(decode(&key, &spec, m.as_bytes()).is_err());
            }
        }
    }

    #[test]
    fn header_first_garbage_completes_bounded_messages(
        spec in spec_strategy(),
        header in 0u16..16,
        offsets in proptest::collection::vec(16u16.., 0..300),
    ) {
        // With a header in place, random data completes messages now and then; each is the
        // length the header says, and none is authentic.
        let key = counting_key();
        let mut r = Reassembly::new(&spec);
        let _ = r.push(spec.base() + header);
        for o in offsets {
            let port = spec.base() + o % (1 << spec.bits());
            if let Push::Complete(m) = r.push(port) {
                prop_assert!(m.as_bytes().len() <= 1 + encoded::MAX_BODY);
                prop_assert!(decode(&key, &spec, m.as_bytes()).is_err());
            }
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        spec in spec_strategy(),
        bytes in proptest::collection::vec(any::<u8>(), 0..100),
        header in 0u8..16,
    ) {
        let key = counting_key();
        prop_assert!(decode(&key, &spec, &bytes).is_err());
        let mut with_header = bytes;
        if let Some(b) = with_header.first_mut() {
            *b = header;
        }
        prop_assert!(decode(&key, &spec, &with_header).is_err());
    }
}
