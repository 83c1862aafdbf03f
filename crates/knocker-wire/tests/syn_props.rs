//! Stealth SYNs through the public API: known answers, and properties over arbitrary keys,
//! addresses, ports and shapes: what `build` writes `parse` reads back, `verify` accepts exactly
//! the right key, step and connection, any flipped authenticated bit is refused, and `parse`
//! never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use knocker_wire::syn::{
    build, choose, hint, linux_shape, marks, parse, replay_id, step, verify, Found, HintTable,
    Marks, Observed, Shape, SynKey, HINTS, SRC_PORTS,
};
use proptest::prelude::*;

fn counting_key() -> SynKey {
    SynKey::from_bytes(core::array::from_fn(|i| i as u8))
}

/// Known answers computed independently: `tests/syn_vectors.py` (Python's hmac and hashlib,
/// following the module docs) prints them. A change here breaks every deployed client and
/// server: it needs a new label.
#[test]
fn known_answers() {
    let k = counting_key();
    let hints: Vec<u16> = (0..HINTS).map(|j| hint(&k, 57_000_000, j)).collect();
    assert_eq!(hints, [0x6f43, 0x00e5, 0xaf6a, 0x77ca]);
    let m = marks(
        &k,
        57_000_000,
        "192.0.2.1".parse().expect("v4"),
        "198.51.100.2".parse().expect("v4"),
        443,
        40000,
        1,
    );
    assert_eq!(
        m,
        Marks {
            seq: 0x714f_f447,
            tsval: 0xab3e_20e0,
            id: 0x00e5,
            slot: 12
        }
    );
    let m = marks(
        &k,
        57_000_000,
        "2001:db8::1".parse().expect("v6"),
        "2001:db8::2".parse().expect("v6"),
        443,
        40000,
        3,
    );
    assert_eq!(
        m,
        Marks {
            seq: 0xbc11_0d95,
            tsval: 0x7ded_a8bd,
            id: 0x1_77ca,
            slot: 14
        }
    );
    assert_eq!(step(1_710_000_000), 57_000_000);
}

/// Addresses of one family, never IPv4-mapped IPv6 (which `parse` refuses on purpose).
fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<u128>(), any::<u128>()).prop_map(|(a, b)| {
            let fix = |x: u128| {
                let a = Ipv6Addr::from(x);
                if a.to_ipv4_mapped().is_some() {
                    Ipv6Addr::from(x ^ (1 << 127))
                } else {
                    a
                }
            };
            (IpAddr::V6(fix(a)), IpAddr::V6(fix(b)))
        }),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    (any::<u16>(), any::<u16>(), 0u8..=14, any::<u8>()).prop_map(|(mss, window, wscale, ttl)| {
        Shape {
            mss,
            window,
            wscale,
            ttl,
        }
    })
}

/// The authenticated fields and what they are computed over, in a packet `build` made, as
/// (byte offset, bits); the IPv6 flow label is added bit by bit by [`authenticated_bits`].
fn authenticated_fields(v4: bool) -> Vec<(usize, usize)> {
    if v4 {
        // ID, source, destination; then TCP: ports, seq, TSval.
        vec![
            (4, 16),
            (12, 32),
            (16, 32),
            (20, 16),
            (22, 16),
            (24, 32),
            (20 + 28, 32),
        ]
    } else {
        // The flow label is the low 20 bits of the first word.
        vec![
            (40, 16),
            (42, 16),
            (44, 32),
            (40 + 28, 32),
            (8, 128),
            (24, 128),
        ]
    }
}

/// Every authenticated bit of a packet `build` made, as bit offsets, the IPv6 flow label's
/// (bits 12 to 31) included.
fn authenticated_bits(v4: bool) -> Vec<usize> {
    let mut bits: Vec<usize> = authenticated_fields(v4)
        .into_iter()
        .flat_map(|(at, n)| at * 8..at * 8 + n)
        .collect();
    if !v4 {
        bits.extend(12..32);
    }
    bits
}

fn flip(packet: &[u8], bit: usize) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[bit / 8] ^= 0x80 >> (bit % 8);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_reads_back_what_build_writes(
        (src, dst) in addr_pair(),
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
        seq in any::<u32>(),
        tsval in any::<u32>(),
        id in any::<u32>(),
        shape in shape(),
    ) {
        let v4 = src.is_ipv4();
        let id = if v4 { id & 0xFFFF } else { id & 0xF_FFFF };
        let m = Marks { seq, tsval, id, slot: 0 };
        let packet = build(src, dst, src_port, dst_port, &m, &shape);
        prop_assert_eq!(packet.len(), if v4 { 60 } else { 80 });
        let seen = parse(&packet).expect("a built SYN parses");
        prop_assert_eq!(seen.src, src);
        prop_assert_eq!(seen.dst, dst);
        prop_assert_eq!(seen.src_port, src_port);
        prop_assert_eq!(seen.dst_port, dst_port);
        prop_assert_eq!(seen.seq, seq);
        prop_assert_eq!(seen.tsval, tsval);
        prop_assert_eq!(seen.id, id);
        // The shape sits where Linux puts it.
        let tcp = if v4 { 20 } else { 40 };
        prop_assert_eq!(u16::from_be_bytes([packet[tcp + 14], packet[tcp + 15]]), shape.window);
        prop_assert_eq!(u16::from_be_bytes([packet[tcp + 22], packet[tcp + 23]]), shape.mss);
        prop_assert_eq!(packet[tcp + 39], shape.wscale);
        prop_assert_eq!(packet[if v4 { 8 } else { 7 }], shape.ttl);
    }

    #[test]
    fn verify_accepts_exactly_the_right_key_step_and_connection(
        kb in any::<[u8; 32]>(),
        other_kb in any::<[u8; 32]>(),
        (src, dst) in addr_pair(),
        (src2, dst2) in addr_pair(),
        dst_port in any::<u16>(),
        other_port in any::<u16>(),
        step in 0u64..u64::MAX,
        slot in 0u8..16,
    ) {
        let key = SynKey::from_bytes(kb);
        let (src_port, m) = choose(&key, step, src, dst, dst_port, slot).expect("choose");
        prop_assert!(SRC_PORTS.contains(&src_port));
        prop_assert_eq!(src_port % 2, 0);
        prop_assert_eq!(m.slot, slot);
        let packet = build(src, dst, src_port, dst_port, &m, &linux_shape(src.is_ipv6(), 1500));
        let seen = parse(&packet).expect("parses");
        prop_assert_eq!(verify(&key, step, &seen), Some(slot));
        prop_assert_eq!(verify(&key, step + 1, &seen), None);
        if step > 0 {
            prop_assert_eq!(verify(&key, step - 1, &seen), None);
        }
        if other_kb != kb {
            prop_assert_eq!(verify(&SynKey::from_bytes(other_kb), step, &seen), None);
        }
        // The same marks over another connection.
        if src2 != src {
            prop_assert_eq!(verify(&key, step, &Observed { src: src2, ..seen }), None);
        }
        if dst2 != dst {
            prop_assert_eq!(verify(&key, step, &Observed { dst: dst2, ..seen }), None);
        }
        if other_port != src_port {
            prop_assert_eq!(verify(&key, step, &Observed { src_port: other_port, ..seen }), None);
        }
        if other_port != dst_port {
            prop_assert_eq!(verify(&key, step, &Observed { dst_port: other_port, ..seen }), None);
        }
        // Swapped directions are another connection too.
        prop_assert_eq!(
            verify(&key, step, &Observed { src: dst, dst: src, ..seen }),
            if src == dst { Some(slot) } else { None }
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every single-bit flip of the sequence number, TSval, IPv4 ID or flow label, ports and
    /// addresses, in the packet itself: refused (not parsed, or not verified).
    #[test]
    fn every_flipped_authenticated_bit_is_refused(
        kb in any::<[u8; 32]>(),
        (src, dst) in addr_pair(),
        dst_port in any::<u16>(),
        step in any::<u64>(),
        slot in 0u8..16,
    ) {
        let key = SynKey::from_bytes(kb);
        let (src_port, m) = choose(&key, step, src, dst, dst_port, slot).expect("choose");
        let v4 = src.is_ipv4();
        let packet = build(src, dst, src_port, dst_port, &m, &linux_shape(!v4, 1500));
        prop_assert_eq!(parse(&packet).and_then(|s| verify(&key, step, &s)), Some(slot));
        let bits = authenticated_bits(v4);
        for bit in bits {
            let flipped = flip(&packet, bit);
            prop_assert_eq!(
                parse(&flipped).and_then(|s| verify(&key, step, &s)),
                None,
                "bit {} accepted", bit
            );
        }
        // Flipping the shape (window, MSS, window scale, TTL) changes nothing the server checks.
        let tcp = if v4 { 20 } else { 40 };
        for at in [tcp + 14, tcp + 23, tcp + 39] {
            let flipped = flip(&packet, at * 8 + 7);
            prop_assert_eq!(parse(&flipped).and_then(|s| verify(&key, step, &s)), Some(slot));
        }
    }

    #[test]
    fn replay_ids_differ_per_packet(
        kb in any::<[u8; 32]>(),
        (src, dst) in addr_pair(),
        step in any::<u64>(),
    ) {
        let key = SynKey::from_bytes(kb);
        let (p1, m1) = choose(&key, step, src, dst, 443, 0).expect("choose");
        let (p2, m2) = choose(&key, step, src, dst, 443, 0).expect("choose");
        let shape = linux_shape(src.is_ipv6(), 1500);
        let a = parse(&build(src, dst, p1, 443, &m1, &shape)).expect("parses");
        let b = parse(&build(src, dst, p2, 443, &m2, &shape)).expect("parses");
        // the same packet, seen again (a replay): the same id
        let again = parse(&build(src, dst, p1, 443, &m1, &shape)).expect("parses");
        prop_assert_eq!(replay_id(&a), replay_id(&again));
        if p1 != p2 {
            prop_assert_ne!(replay_id(&a), replay_id(&b));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parse_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    /// Garbage that starts like a SYN gets further into the parser.
    #[test]
    fn parse_never_panics_on_mangled_syns(
        v4 in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let (src, dst): (IpAddr, IpAddr) = if v4 {
            ("10.0.0.1".parse().expect("v4"), "10.0.0.2".parse().expect("v4"))
        } else {
            ("fd00::1".parse().expect("v6"), "fd00::2".parse().expect("v6"))
        };
        let m = marks(&counting_key(), 1, src, dst, 22, 40000, 0);
        let mut p = build(src, dst, 40000, 22, &m, &linux_shape(!v4, 1500));
        for (at, v) in edits {
            let n = p.len();
            p[at % n] = v;
        }
        p.truncate(cut % 100);
        let _ = parse(&p);
    }
}

/// One table for the garbage below: a few keys, the step moving between two values.
static TABLE: std::sync::LazyLock<std::sync::Mutex<HintTable>> = std::sync::LazyLock::new(|| {
    let keys = (0..3u8).map(|k| SynKey::from_bytes([k; 32])).collect();
    std::sync::Mutex::new(HintTable::new(keys, 1).expect("three keys"))
});

fn find_in_shared_table(p: &[u8]) -> Option<Found> {
    let seen = parse(p)?;
    let mut table = TABLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    table.find(1 + u64::from(seen.seq & 1), &seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The table names the sender of a SYN made in an accepted step, and no one for a SYN made
    /// outside them, with a flipped authenticated bit, or under a key it does not hold; it
    /// agrees with `verify` of the sender's key.
    #[test]
    fn the_table_finds_exactly_the_sender(
        seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..24),
        sender in any::<prop::sample::Index>(),
        (src, dst) in addr_pair(),
        dst_port in any::<u16>(),
        now in 2u64..u64::MAX - 2,
        offset in -2i64..=2,
        slot in 0u8..16,
        bit in any::<prop::sample::Index>(),
    ) {
        let keys: Vec<SynKey> = seeds.iter().map(|s| SynKey::from_bytes(*s)).collect();
        let client = sender.index(keys.len());
        // The first key made from these bytes, where seeds repeat.
        let client = seeds.iter().position(|s| *s == seeds[client]).unwrap_or(client);
        let step = now.wrapping_add_signed(offset);
        let key = keys[client].clone();
        let mut table = HintTable::new(keys, 1).expect("table");
        let (src_port, m) = choose(&key, step, src, dst, dst_port, slot).expect("choose");
        let v4 = src.is_ipv4();
        let packet = build(src, dst, src_port, dst_port, &m, &linux_shape(!v4, 1500));
        let seen = parse(&packet).expect("parses");
        let found = table.find(now, &seen);
        let named = table.candidates(now, (seen.id & 0xFFFF) as u16);
        if offset.abs() <= 1 {
            // the sender is among those its hint names, and there are never more than all
            prop_assert!((1..=3 * usize::from(HINTS) * seeds.len()).contains(&named));
            prop_assert_eq!(found, Some(Found { client, step, slot }));
            prop_assert_eq!(verify(&key, step, &seen), Some(slot));
        } else {
            prop_assert_eq!(found, None);
        }
        // One flipped authenticated bit: no one.
        let bits = authenticated_bits(v4);
        let flipped = flip(&packet, bits[bit.index(bits.len())]);
        prop_assert_eq!(parse(&flipped).and_then(|s| table.find(now, &s)), None);
        // A key the table does not hold.
        let stranger = SynKey::from_bytes([0xA5; 32]);
        if !seeds.contains(&[0xA5; 32]) {
            let (p, m) = choose(&stranger, now, src, dst, dst_port, slot).expect("choose");
            let other = parse(&build(src, dst, p, dst_port, &m, &linux_shape(!v4, 1500)))
                .expect("parses");
            prop_assert_eq!(table.find(now, &other), None);
        }
    }
}

/// The client draws j at random for every SYN: over many SYNs each of the 4 hints shows up
/// (all four fail to with probability 4 × (3/4)^400, about 10^-49), and over IPv4 never a hint
/// of 0, which over IPv6 is sent like any other.
#[test]
fn choose_draws_every_hint_but_a_zero_id() {
    let k = counting_key();
    // A step in which one of the hints is 0 (about one in 16384 steps).
    let zero = (0..2_000_000u64)
        .find(|&s| (0..HINTS).any(|j| hint(&k, s, j) == 0))
        .expect("a step with a zero hint");
    let hints: Vec<u16> = (0..HINTS).map(|j| hint(&k, zero, j)).collect();
    for (src, dst) in [
        ("192.0.2.1", "198.51.100.2"),
        ("2001:db8::1", "2001:db8::2"),
    ] {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().expect("addr"), dst.parse().expect("addr"));
        let mut seen = [0u32; HINTS as usize];
        for _ in 0..400 {
            let (_, m) = choose(&k, zero, src, dst, 443, 0).expect("choose");
            let at = hints
                .iter()
                .position(|&h| u32::from(h) == m.id & 0xFFFF)
                .expect("the ID is one of the step's hints");
            seen[at] += 1;
        }
        for (j, n) in seen.iter().enumerate() {
            if src.is_ipv4() && hints[j] == 0 {
                assert_eq!(*n, 0, "IPv4 ID 0 sent");
            } else {
                assert!(*n > 0, "hint {j} never drawn over {src}: {seen:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_table_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        // Garbage with a SYN's first bytes gets further: IPv4, 20-byte header, 60 bytes.
        let mut p = bytes;
        if p.len() >= 4 {
            p[0] = 0x45;
            p[2] = 0;
            p[3] = 60;
        }
        prop_assert_eq!(find_in_shared_table(&p), None);
    }
}
