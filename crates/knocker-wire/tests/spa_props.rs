//! knocker's SPA datagram and identities through the public API, as properties: any request
//! survives sealing and opening; any change to a datagram (a bit, a truncation, an extension) is
//! refused; the wrong keys open nothing; a datagram re-tagged for another door does not open
//! there; lengths vary; arbitrary bytes and arbitrary
//! authenticated plaintexts never panic; both sides of a SYN key agree.

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use knocker_wire::identity::{DoorKey, PrivateKey, PublicKey};
use knocker_wire::spa::{
    check_tag, open, prologue, replay_id, seal, OpenError, Request, MAX_LEN, MAX_SERVICES, MIN_LEN,
    TAG_LEN,
};
use knocker_wire::{Proto, Service};
use proptest::prelude::*;
use sha2::Sha256;

struct Keys {
    client: PrivateKey,
    server: PrivateKey,
    server_pub: PublicKey,
    door: DoorKey,
}

fn keys() -> Keys {
    let server = PrivateKey::from_bytes(core::array::from_fn(|i| 0x40 + i as u8));
    Keys {
        client: PrivateKey::from_bytes(core::array::from_fn(|i| i as u8)),
        server_pub: server.public_key(),
        door: server.door_key("ssh"),
        server,
    }
}

fn base_request() -> Request {
    Request {
        timestamp: 1_700_000_000,
        nonce: [7; 16],
        allow: None,
        services: vec![Service::tcp(22)],
        duration: None,
    }
}

fn sealed(k: &Keys, req: &Request) -> Vec<u8> {
    seal(req, &k.client, &k.server_pub, &k.door).expect("seal")
}

/// Where the top bit of e is: the one bit of the datagram after the tag that Noise does not
/// authenticate (the tag does).
const E_TOP: usize = TAG_LEN + 31;

fn service() -> impl Strategy<Value = Service> {
    (
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)],
        1..=u16::MAX,
    )
        .prop_map(|(proto, port)| Service::new(proto, port))
}

fn allow() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|a| Some(IpAddr::from(a))),
        any::<[u8; 16]>().prop_map(|a| Some(IpAddr::from(a))),
    ]
    .prop_filter("unspecified", |a| !a.is_some_and(|a| a.is_unspecified()))
}

fn request() -> impl Strategy<Value = Request> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        allow(),
        proptest::collection::btree_set(service(), 1..=MAX_SERVICES),
        proptest::option::of(1..=u32::MAX),
    )
        .prop_map(|(timestamp, nonce, allow, services, duration)| Request {
            timestamp,
            nonce,
            allow,
            services: services.into_iter().collect(),
            duration,
        })
}

/// Seals an arbitrary plaintext with snow and the documented framing, bypassing the request
/// encoder, so that the parser sees what a (buggy or hostile) enrolled client could send.
fn seal_plaintext(k: &Keys, plaintext: &[u8]) -> Vec<u8> {
    let params = "Noise_X_25519_ChaChaPoly_SHA256".parse().expect("params");
    let prologue = prologue(&k.door);
    let mut hs = snow::Builder::new(params)
        .local_private_key(&core::array::from_fn::<u8, 32, _>(|i| i as u8))
        .and_then(|b| b.remote_public_key(&k.server_pub.0))
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_initiator())
        .expect("builder");
    let mut out = vec![0u8; TAG_LEN + 96 + plaintext.len()];
    hs.write_message(plaintext, &mut out[TAG_LEN..])
        .expect("write");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn open_inverts_seal(req in request()) {
        let k = keys();
        let d = sealed(&k, &req);
        prop_assert!((MIN_LEN..=MAX_LEN).contains(&d.len()));
        prop_assert!(check_tag(&k.door, &d));
        let (client, got) = open(&d, &k.server, &k.door).expect("open");
        prop_assert_eq!(client, k.client.public_key());
        prop_assert_eq!(replay_id(&client, &got), replay_id(&k.client.public_key(), &req));
        prop_assert_eq!(got, req);
    }

    /// Every bit after the tag (but the top bit of e) is authenticated by Noise, every bit at
    /// all by the tag.
    #[test]
    fn single_bit_flips_are_refused(req in request(), bit in 0usize..MAX_LEN * 8) {
        let k = keys();
        let mut d = sealed(&k, &req);
        let bit = bit % (d.len() * 8);
        d[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!check_tag(&k.door, &d));
        if bit / 8 >= TAG_LEN && bit != E_TOP * 8 + 7 {
            prop_assert_eq!(open(&d, &k.server, &k.door), Err(OpenError::Noise));
        }
    }

    #[test]
    fn truncations_and_extensions_are_refused(req in request(), cut in any::<usize>(), extra in proptest::collection::vec(any::<u8>(), 1..64)) {
        let k = keys();
        let d = sealed(&k, &req);
        let short = &d[..cut % d.len()];
        prop_assert!(!check_tag(&k.door, short));
        prop_assert!(open(short, &k.server, &k.door).is_err());
        let mut long = d.clone();
        long.extend_from_slice(&extra);
        prop_assert!(!check_tag(&k.door, &long));
        prop_assert!(open(&long, &k.server, &k.door).is_err());
    }

    #[test]
    fn wrong_keys_are_refused(req in request(), other in any::<[u8; 32]>()) {
        let k = keys();
        let d = sealed(&k, &req);
        let other = PrivateKey::from_bytes(other);
        prop_assume!(other.public_key() != k.server_pub);
        prop_assert!(!check_tag(&other.door_key("ssh"), &d));
        prop_assert!(!check_tag(&k.server.door_key("ssh2"), &d));
        prop_assert_eq!(open(&d, &other, &k.door), Err(OpenError::Noise));
        // Sealed to another server with this door's key: the tag passes, Noise does not.
        let d = seal(&req, &k.client, &other.public_key(), &k.door).expect("seal");
        prop_assert!(check_tag(&k.door, &d));
        prop_assert_eq!(open(&d, &k.server, &k.door), Err(OpenError::Noise));
    }

    /// An insider enrolled for doors A and B holds both tag keys. Alice's datagram for A,
    /// captured unused and re-tagged with B's key, passes B's tag check (that is what the tag
    /// key is for) but not B's Noise: the door is in the prologue. A still opens it.
    #[test]
    fn a_datagram_re_tagged_for_another_door_does_not_open_there(req in request()) {
        let k = keys();
        let door_b = k.server.door_key("web");
        let d = sealed(&k, &req);
        let mut moved = d.clone();
        moved[..TAG_LEN].copy_from_slice(&tag(&door_key_bytes("web"), &d[TAG_LEN..]));
        prop_assert!(check_tag(&door_b, &moved));
        prop_assert!(!check_tag(&k.door, &moved));
        prop_assert_eq!(open(&moved, &k.server, &door_b), Err(OpenError::Noise));
        prop_assert!(check_tag(&k.door, &d));
        let (client, got) = open(&d, &k.server, &k.door).expect("door A opens its own");
        prop_assert_eq!(client, k.client.public_key());
        prop_assert_eq!(got, req);
    }

    #[test]
    fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_LEN + 200)) {
        let k = keys();
        prop_assert!(!check_tag(&k.door, &bytes));
        prop_assert!(open(&bytes, &k.server, &k.door).is_err());
    }

    /// What an enrolled client could put inside the Noise payload: never a panic, and whatever
    /// opens re-encodes to a datagram that opens to the same request.
    #[test]
    fn arbitrary_plaintexts_never_panic(plaintext in proptest::collection::vec(any::<u8>(), 144..200), head in proptest::collection::vec(any::<u8>(), 0..40)) {
        let k = keys();
        let mut plaintext = plaintext;
        // A valid start (version, time, nonce, no address, duration) makes the deeper fields
        // reachable; the rest is arbitrary.
        plaintext[0] = 1;
        plaintext[25] = 0;
        let n = head.len().min(plaintext.len() - 30);
        plaintext[30..30 + n].copy_from_slice(&head[..n]);
        let d = seal_plaintext(&k, &plaintext);
        if let Ok((client, req)) = open(&d, &k.server, &k.door) {
            prop_assert_eq!(client, k.client.public_key());
            let again = sealed(&k, &req);
            prop_assert_eq!(open(&again, &k.server, &k.door).expect("reopen").1, req);
        }
    }

    #[test]
    fn syn_keys_agree_and_differ_per_client(server in any::<[u8; 32]>(), a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        let server = PrivateKey::from_bytes(server);
        let a = PrivateKey::from_bytes(a);
        let b = PrivateKey::from_bytes(b);
        prop_assume!(a.public_key() != b.public_key());
        let ka = a.syn_key(&server.public_key()).expect("agree");
        prop_assert_eq!(&ka, &server.syn_key(&a.public_key()).expect("agree"));
        let kb = b.syn_key(&server.public_key()).expect("agree");
        prop_assert_eq!(&kb, &server.syn_key(&b.public_key()).expect("agree"));
        prop_assert_ne!(ka, kb);
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The tag key of `door` on the server of [`keys`], as identity.rs documents it: what an
/// insider enrolled for that door was given.
fn door_key_bytes(door: &str) -> [u8; 32] {
    let server: [u8; 32] = core::array::from_fn(|i| 0x40 + i as u8);
    let key = hmac(&server, &[b"knocker door v1", door.as_bytes()]);
    assert_eq!(
        DoorKey::from_bytes(key),
        keys().server.door_key(door),
        "derived as documented"
    );
    key
}

/// The tag as the module docs define it: HMAC-SHA256 under the door key, first 16 bytes.
fn tag(door: &[u8; 32], rest: &[u8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&hmac(door, &[rest])[..TAG_LEN]);
    out
}

/// The prologue is the documented label and the door's identity derived from its tag key.
#[test]
fn the_prologue_is_as_documented() {
    let k = keys();
    let mut want = b"knocker spa v2".to_vec();
    want.extend_from_slice(&hmac(&door_key_bytes("ssh"), &[b"knocker spa v2 door"]));
    assert_eq!(prologue(&k.door).to_vec(), want);
    assert_ne!(prologue(&k.door), prologue(&k.server.door_key("web")));
}

/// Every single bit of one datagram, exhaustively (the property above samples them).
#[test]
fn every_bit_flip_of_a_datagram_is_refused() {
    let k = keys();
    let d = sealed(&k, &base_request());
    for bit in 0..d.len() * 8 {
        let mut f = d.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        assert!(!check_tag(&k.door, &f), "bit {bit}");
    }
    // open on its own (the tag aside): every bit of e but its top one (where the Noise
    // transcript starts), then one bit in each of about 100 positions over the rest. Debug
    // builds make each open cost milliseconds; the property above covers the rest at random.
    let stride = (d.len() - TAG_LEN - 32) / 100;
    let e_bits = (TAG_LEN * 8..(TAG_LEN + 32) * 8).filter(|&bit| bit != E_TOP * 8 + 7);
    let rest = ((TAG_LEN + 32)..d.len())
        .step_by(stride)
        .chain([d.len() - 1])
        .map(|byte| byte * 8 + byte % 8);
    for bit in e_bits.step_by(3).chain(rest) {
        let mut f = d.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            open(&f, &k.server, &k.door),
            Err(OpenError::Noise),
            "bit {bit}"
        );
    }
}

#[test]
fn every_truncation_is_refused() {
    let k = keys();
    // Long enough that some truncations are still of a valid length.
    let mut req = base_request();
    let mut d = sealed(&k, &req);
    while d.len() < MIN_LEN + 100 {
        req.nonce[0] = req.nonce[0].wrapping_add(1);
        d = sealed(&k, &req);
    }
    for len in 0..d.len() {
        assert!(!check_tag(&k.door, &d[..len]), "{len}");
        let want = if len < MIN_LEN {
            OpenError::Length(len)
        } else {
            OpenError::Noise
        };
        if len < MIN_LEN || len % 25 == 0 || len == d.len() - 1 {
            assert_eq!(open(&d[..len], &k.server, &k.door), Err(want), "{len}");
        }
    }
}

#[test]
fn lengths_vary_over_the_whole_range() {
    let k = keys();
    let lengths: Vec<usize> = (0..200)
        .map(|_| sealed(&k, &base_request()).len())
        .collect();
    assert!(lengths.iter().all(|l| (MIN_LEN..=MAX_LEN).contains(l)));
    let mut distinct = lengths.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // 200 draws from 945 lengths: about 180 distinct; far fewer means the padding is broken.
    assert!(distinct.len() > 120, "{}", distinct.len());
    assert!(distinct[0] < MIN_LEN + 200 && distinct[distinct.len() - 1] > MAX_LEN - 200);
}

#[test]
fn sealing_twice_gives_unrelated_datagrams() {
    let k = keys();
    let a = sealed(&k, &base_request());
    let b = sealed(&k, &base_request());
    assert_ne!(a[..TAG_LEN], b[..TAG_LEN]);
    assert_ne!(a[TAG_LEN..TAG_LEN + 32], b[TAG_LEN..TAG_LEN + 32]);
    // ... that both open, to the same client and request
    let opened = open(&a, &k.server, &k.door).expect("the first opens");
    assert_eq!(
        opened,
        open(&b, &k.server, &k.door).expect("the second opens")
    );
    assert_eq!(opened, (k.client.public_key(), base_request()));
}
