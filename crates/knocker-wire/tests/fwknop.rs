//! fwknop's format against Debian's fwknop client: the known-answer packets of
//! ../shared/vectors/fwknop (copied to tests/vectors/fwknop/shared) and those tests/vectors/fwknop
//! /gen.sh makes with other option sets decode to exactly what the client says it put in, and
//! encoding the same message with the same random value and salt gives the same bytes. Then the
//! rejections: bit flips, truncation, wrong keys, prefix injection, sizes, and arbitrary input.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use knocker_wire::fwknop::{
    self, decode, decrypt, encode, encode_with_digest, key_from_base64, key_from_text,
    replay_digest, seal, Digest, EncodeError, FwknopError, FwknopKeyError, FwknopKeys, MessageType,
    NatAccess, SpaMessage, SpaRequest,
};
use knocker_wire::Service;
use proptest::prelude::*;

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/fwknop")
}

/// One known-answer packet.
struct Vector {
    name: String,
    /// Without the file's newline.
    payload: Vec<u8>,
    keys: FwknopKeys,
    /// The client's own dump of what it put in.
    fields: BTreeMap<String, String>,
}

fn vectors() -> Vec<Vector> {
    let mut found = Vec::new();
    for dir in [vector_dir(), vector_dir().join("shared")] {
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("vector dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "pkt"))
            .collect();
        names.sort();
        for pkt in names {
            let name = pkt
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            let mut payload = fs::read(&pkt).expect("pkt");
            assert_eq!(payload.pop(), Some(b'\n'), "{name}: one trailing newline");
            let keys = read_keys(&pkt.with_extension("keys"));
            let fields = read_fields(&pkt.with_extension("fields"));
            found.push(Vector {
                name,
                payload,
                keys,
                fields,
            });
        }
    }
    assert!(found.len() >= 22, "only {} vectors", found.len());
    found
}

/// A NAME.keys file: access.conf lines (KEY, KEY_BASE64, HMAC_KEY, HMAC_KEY_BASE64,
/// HMAC_DIGEST_TYPE).
fn read_keys(path: &Path) -> FwknopKeys {
    let text = fs::read_to_string(path).expect("keys");
    let (mut enc, mut hmac, mut digest) = (None, None, Digest::Sha256);
    for line in text.lines() {
        let (var, val) = line.split_once(' ').expect("VAR value");
        match var {
            "KEY" => enc = Some(key_from_text(val)),
            "KEY_BASE64" => enc = Some(key_from_base64(val).expect("b64")),
            "HMAC_KEY" => hmac = Some(key_from_text(val)),
            "HMAC_KEY_BASE64" => hmac = Some(key_from_base64(val).expect("b64")),
            "HMAC_DIGEST_TYPE" => digest = val.parse().expect("digest"),
            other => panic!("{}: unknown {other}", path.display()),
        }
    }
    FwknopKeys::new(enc.expect("KEY"), hmac.expect("HMAC_KEY"), digest).expect("keys")
}

/// A NAME.fields file: fwknop's own `-v` dump, `Name: value` per line.
fn read_fields(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .expect("fields")
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// "3 (SHA256)" -> Digest::Sha256, "1 (Access msg)" -> 1.
fn paren(value: &str) -> &str {
    value
        .split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .expect("N (name)")
}

fn leading_number(value: &str) -> u8 {
    value
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("number")
}

/// The message string fwknop's dump prints, rebuilt from the decoded message.
fn message_string(msg: &SpaMessage) -> String {
    match &msg.request {
        SpaRequest::Command(cmd) => format!("{},{cmd}", msg.allow),
        SpaRequest::Access(services) => {
            let list: Vec<String> = services.iter().map(Service::to_string).collect();
            format!("{},{}", msg.allow, list.join(","))
        }
    }
}

/// The salt inside a payload (bytes 8..16 of the ciphertext, with the prefix put back).
fn salt_of(payload: &[u8]) -> [u8; 8] {
    let head = format!(
        "{}{}",
        fwknop::SALTED_PREFIX,
        std::str::from_utf8(&payload[..14]).expect("ascii")
    );
    let raw = STANDARD_NO_PAD.decode(head).expect("b64");
    raw[8..16].try_into().expect("salt")
}

/// An rng that hands out exactly these bytes, in order.
fn replay_rng(bytes: Vec<u8>) -> impl FnMut(&mut [u8]) -> Result<(), getrandom::Error> {
    let mut bytes = bytes.into_iter();
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            *b = bytes.next().expect("the test rng ran dry");
        }
        Ok(())
    }
}

#[test]
fn every_vector_decodes_to_what_the_fwknop_client_put_in() {
    for Vector {
        name,
        payload,
        keys,
        fields: f,
    } in vectors()
    {
        let msg = decode(&keys, &payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            msg.random.as_deref(),
            Some(f["Random Value"].as_str()),
            "{name}"
        );
        assert_eq!(msg.username, f["Username"], "{name}");
        assert_eq!(msg.timestamp.to_string(), f["Timestamp"], "{name}");
        assert_eq!(
            msg.message_type.number(),
            leading_number(&f["Message Type"]),
            "{name}"
        );
        assert_eq!(msg.message_type.name(), paren(&f["Message Type"]), "{name}");
        assert_eq!(message_string(&msg), f["Message String"], "{name}");
        let nat = msg
            .nat
            .as_ref()
            .map_or("<NULL>".to_string(), |n| format!("{},{}", n.host, n.port));
        assert_eq!(nat, f["Nat Access"], "{name}");
        assert_eq!(f["Server Auth"], "<NULL>", "{name}");
        assert_eq!(msg.server_auth, None, "{name}");
        assert_eq!(
            msg.client_timeout.unwrap_or(0).to_string(),
            f["Client Timeout"],
            "{name}"
        );
        assert_eq!(
            msg.client_timeout.is_some(),
            msg.message_type.has_client_timeout(),
            "{name}"
        );
        assert!(msg.allow.is_ipv4(), "{name}");

        // The plaintext, byte for byte, and its digest type.
        let plaintext = decrypt(&keys, &payload).expect("decrypts");
        let expected = format!("{}:{}", f["Encoded Data"], f["SPA Data Digest"]);
        assert_eq!(
            std::str::from_utf8(&plaintext).expect("ascii"),
            expected,
            "{name}"
        );
        let digest: Digest = paren(&f["Digest Type"]).parse().expect("digest type");
        assert_eq!(f["SPA Data Digest"].len(), digest.b64_len(), "{name}");

        // The HMAC and its type.
        assert_eq!(
            keys.hmac_digest(),
            paren(&f["HMAC Type"]).parse::<Digest>().expect("hmac type"),
            "{name}"
        );
        assert!(payload.ends_with(f["HMAC"].as_bytes()), "{name}");

        // fwknopd's replay key (computed by openssl when the vector was made).
        assert_eq!(replay_digest(&payload), f["Replay Digest"], "{name}");

        // And knocker's encoder, given the same random value and salt, makes the same packet.
        let again = encode_with_digest(&keys, &msg, digest, replay_rng(salt_of(&payload).to_vec()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again.as_bytes(), &payload[..], "{name}: re-encoded");
    }
}

#[test]
fn the_shared_known_answers_hold() {
    // The facts in ../shared/vectors/fwknop/README.md, restated.
    let all = vectors();
    let find = |n: &str| all.iter().find(|v| v.name == n).expect("vector");
    let (a, keys_a) = (&find("vecA").payload, &find("vecA").keys);
    let msg = decode(keys_a, a).expect("vecA");
    assert_eq!(
        msg,
        SpaMessage {
            random: Some("1744096422194641".into()),
            username: "testuser".into(),
            timestamp: 1795260671,
            message_type: MessageType::Access,
            allow: IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)),
            request: SpaRequest::Access(vec![Service::tcp(22)]),
            nat: None,
            server_auth: None,
            client_timeout: None,
        }
    );
    assert_eq!(salt_of(a), [0x46, 0x66, 0xdf, 0x04, 0x97, 0x07, 0xe3, 0x32]);
    assert_eq!(
        replay_digest(a),
        "Ceup30c86nJRN+rLJWGOr3BrBCk7S7jfQ3dHcVXiCI4"
    );

    let (b, keys_b) = (&find("vecB").payload, &find("vecB").keys);
    let msg = decode(keys_b, b).expect("vecB");
    assert_eq!(msg.username, "root");
    assert_eq!(msg.timestamp, 1795260684);
    assert_eq!(
        msg.request,
        SpaRequest::Access(vec![Service::tcp(22), Service::udp(53)])
    );
    assert_eq!(salt_of(b), [0x73, 0xf4, 0x10, 0x4a, 0x87, 0x4d, 0xf7, 0x3d]);
    assert_eq!(
        replay_digest(b),
        "vlKtANBE9gEAxIgr3gPcvAVVv6KOk7ftGCfLqXRnctU"
    );
    // The base64 keys: 32 bytes of encryption key, 64 of HMAC key.
    assert_eq!(
        key_from_base64("7DEa1rlrtY85doBUqXNmDQiNabn9gsdxPgBVJBlm9Us=")
            .expect("b64")
            .len(),
        32
    );
}

fn text_keys(digest: Digest) -> FwknopKeys {
    FwknopKeys::new(
        key_from_text("fwknoptestkey123"),
        key_from_text("fwknophmackey12345678"),
        digest,
    )
    .expect("keys")
}

fn vec_a() -> Vec<u8> {
    let mut p = fs::read(vector_dir().join("shared/vecA.pkt")).expect("vecA");
    p.pop();
    p
}

fn messages() -> Vec<SpaMessage> {
    let allow = Ipv4Addr::new(192, 0, 2, 7);
    let services = vec![Service::tcp(22), Service::udp(53), Service::tcp(65535)];
    let mut nat = SpaMessage::access(
        "alice",
        1_795_260_671,
        allow,
        vec![Service::tcp(2222)],
        None,
    );
    nat.message_type = MessageType::NatAccess;
    nat.nat = Some(NatAccess {
        host: "192.168.10.5".into(),
        port: 22,
    });
    let mut nat_timeout = nat.clone();
    nat_timeout.message_type = MessageType::ClientTimeoutLocalNatAccess;
    nat_timeout.client_timeout = Some(45);
    let mut with_auth = SpaMessage::access("bob", 1, allow, vec![Service::tcp(22)], Some(7));
    with_auth.server_auth = Some(b"crypt,secret".to_vec());
    vec![
        SpaMessage::access("alice", 1_795_260_671, allow, services.clone(), None),
        SpaMessage::access(
            "root",
            1_795_260_671,
            Ipv4Addr::UNSPECIFIED,
            services,
            Some(600),
        ),
        SpaMessage::access("x", 0, allow, vec![Service::udp(1)], Some(0)),
        SpaMessage::command(
            "alice",
            1_795_260_671,
            allow,
            "uname -a; echo 'ok' > /tmp/x",
        ),
        nat,
        nat_timeout,
        with_auth,
    ]
}

#[test]
fn encode_then_decode_round_trips_for_every_hmac_digest_and_message_type() {
    for hmac in Digest::ALL {
        let keys = text_keys(hmac);
        for digest in Digest::ALL {
            for msg in messages() {
                let packet = encode_with_digest(&keys, &msg, digest, getrandom::fill)
                    .unwrap_or_else(|e| panic!("{hmac} {digest} {msg:?}: {e}"));
                assert!(!packet.starts_with(fwknop::SALTED_PREFIX));
                assert!(packet.len() >= fwknop::MIN_PACKET && packet.len() < fwknop::GPG_PACKET);
                let back = decode(&keys, packet.as_bytes())
                    .unwrap_or_else(|e| panic!("{hmac} {digest} {msg:?}: {e}"));
                let random = back.random.clone().expect("random");
                assert_eq!(random.len(), 16);
                assert!(random.bytes().all(|b| b.is_ascii_digit()) && !random.starts_with('0'));
                assert_eq!(
                    SpaMessage {
                        random: None,
                        ..back
                    },
                    msg,
                    "{hmac} {digest}"
                );
            }
        }
    }
    // Two encodings of one message differ (random value and salt), so their replay keys do.
    let keys = text_keys(Digest::Sha256);
    let msg = &messages()[0];
    let one = encode(&keys, msg, getrandom::fill).expect("encode");
    let two = encode(&keys, msg, getrandom::fill).expect("encode");
    assert_ne!(replay_digest(one.as_bytes()), replay_digest(two.as_bytes()));
}

#[test]
fn every_single_bit_flip_is_rejected_before_decryption() {
    let mut packets = vec![(text_keys(Digest::Sha256), vec_a())];
    for v in vectors() {
        if ["hmac_md5", "hmac_sha512", "digest_sha512", "command"].contains(&v.name.as_str()) {
            packets.push((v.keys, v.payload));
        }
    }
    for (keys, packet) in packets {
        decode(&keys, &packet).expect("the unflipped packet is good");
        for i in 0..packet.len() {
            for bit in 0..8 {
                let mut flipped = packet.clone();
                flipped[i] ^= 1 << bit;
                let e = decode(&keys, &flipped).expect_err("a flipped packet");
                assert!(
                    matches!(
                        e,
                        FwknopError::BadHmac
                            | FwknopError::NotBase64
                            | FwknopError::PrefixInjection
                    ),
                    "byte {i} bit {bit}: {e}"
                );
            }
        }
    }
}

#[test]
fn truncated_and_extended_packets_are_rejected() {
    let keys = text_keys(Digest::Sha256);
    let a = vec_a();
    for len in 0..a.len() {
        let e = decode(&keys, &a[..len]).expect_err("truncated");
        if len < fwknop::MIN_PACKET {
            assert_eq!(e, FwknopError::TooShort(len));
        } else {
            assert_eq!(e, FwknopError::BadHmac, "{len}");
        }
    }
    // Cutting the front instead of the end.
    for cut in 1..30 {
        assert!(decode(&keys, &a[cut..]).is_err(), "{cut}");
    }
    let mut longer = a.clone();
    longer.extend_from_slice(b"AAAA");
    assert_eq!(decode(&keys, &longer), Err(FwknopError::BadHmac));
    let mut newline = a.clone();
    newline.push(b'\n');
    assert_eq!(decode(&keys, &newline), Err(FwknopError::NotBase64));
}

#[test]
fn wrong_keys_are_told_apart() {
    let a = vec_a();
    let wrong_hmac = FwknopKeys::new(
        key_from_text("fwknoptestkey123"),
        key_from_text("fwknophmackey12345679"),
        Digest::Sha256,
    )
    .expect("keys");
    assert_eq!(decode(&wrong_hmac, &a), Err(FwknopError::BadHmac));
    // The right HMAC key with the wrong encryption key: authenticated, and not decryptable.
    let wrong_enc = FwknopKeys::new(
        key_from_text("fwknoptestkey124"),
        key_from_text("fwknophmackey12345678"),
        Digest::Sha256,
    )
    .expect("keys");
    let e = decode(&wrong_enc, &a).expect_err("wrong key");
    assert_eq!(e, FwknopError::WrongKey);
    assert!(e.authenticated());
    for d in Digest::ALL {
        if d != Digest::Sha256 {
            assert_eq!(decode(&text_keys(d), &a), Err(FwknopError::BadHmac), "{d}");
        }
    }
    assert!(!FwknopError::BadHmac.authenticated());
}

#[test]
fn prefix_injection_and_sizes_are_refused_before_any_key() {
    let keys = text_keys(Digest::Sha256);
    let a = vec_a();
    let mut injected = fwknop::SALTED_PREFIX.as_bytes().to_vec();
    injected.extend_from_slice(&a);
    assert_eq!(decode(&keys, &injected), Err(FwknopError::PrefixInjection));
    assert_eq!(
        fwknop::precheck(&injected),
        Err(FwknopError::PrefixInjection)
    );
    let big = vec![b'A'; 400];
    assert_eq!(decode(&keys, &big), Err(FwknopError::Gpg(400)));
    assert_eq!(decode(&keys, &vec![b'A'; 399]), Err(FwknopError::BadHmac));
    assert_eq!(
        decode(&keys, &vec![b'A'; 1501]),
        Err(FwknopError::TooLong(1501))
    );
    assert_eq!(decode(&keys, &[]), Err(FwknopError::TooShort(0)));
    assert_eq!(decode(&keys, &[b'!'; 200]), Err(FwknopError::NotBase64));
    fwknop::precheck(&a).expect("a real packet passes");
}

#[test]
fn authenticated_garbage_is_malformed_not_a_panic() {
    let keys = text_keys(Digest::Sha256);
    let salt = [7u8; 8];
    let sealed = |pt: &str| {
        let packet = seal(&keys, pt.as_bytes(), salt).expect("seal");
        decode(&keys, packet.as_bytes())
    };
    // A plaintext that does not start with 16 digits and a colon reads as a wrong key.
    assert_eq!(
        sealed("hello world, this is no SPA message at all; not even close"),
        Err(FwknopError::WrongKey)
    );
    // Good shape, wrong digest.
    let body = "1234567890123456:YWxpY2U:1795260671:3.0.0:1:MS4yLjMuNCx0Y3AvMjI";
    assert_eq!(
        sealed(&format!("{body}:{}", "A".repeat(43))),
        Err(FwknopError::BadDigest)
    );
    // A digest of no known length.
    assert!(matches!(
        sealed(&format!("{body}:AAAA")),
        Err(FwknopError::Malformed(_))
    ));
    let with_digest = |body: &str| {
        let sum = STANDARD_NO_PAD.encode(sha2_digest(body.as_bytes()));
        sealed(&format!("{body}:{sum}"))
    };
    assert!(with_digest(body).is_ok());
    for bad in [
        // Type 9.
        "1234567890123456:YWxpY2U:1795260671:3.0.0:9:MS4yLjMuNCx0Y3AvMjI",
        // Username with a colon inside ("a:b").
        "1234567890123456:YTpi:1795260671:3.0.0:1:MS4yLjMuNCx0Y3AvMjI",
        // Timestamp not a number.
        "1234567890123456:YWxpY2U:17952x0671:3.0.0:1:MS4yLjMuNCx0Y3AvMjI",
        // Type 1 with a timeout and an auth field: one field too many.
        "1234567890123456:YWxpY2U:1795260671:3.0.0:1:MS4yLjMuNCx0Y3AvMjI:YQ:5",
        // Type 3 without its timeout.
        "1234567890123456:YWxpY2U:1795260671:3.0.0:3:MS4yLjMuNCx0Y3AvMjI",
        // Type 3 with a timeout over 65536.
        "1234567890123456:YWxpY2U:1795260671:3.0.0:3:MS4yLjMuNCx0Y3AvMjI:65537",
        // Type 2 without its NAT field.
        "1234567890123456:YWxpY2U:1795260671:3.0.0:2:MS4yLjMuNCx0Y3AvMjI",
        // "1.2.3.4,tcp/0".
        "1234567890123456:YWxpY2U:1795260671:3.0.0:1:MS4yLjMuNCx0Y3AvMA",
        // An empty username field.
        "1234567890123456::1795260671:3.0.0:1:MS4yLjMuNCx0Y3AvMjI",
    ] {
        let e = with_digest(bad).expect_err(bad);
        assert!(matches!(e, FwknopError::Malformed(_)), "{bad}: {e}");
        assert!(e.authenticated());
    }
    // fwknop-compatible leniency: any version string, a timeout of 0, a server-auth field.
    let msg =
        with_digest("1234567890123456:YWxpY2U:1795260671:2.0.4:3:MS4yLjMuNCx0Y3AvMjI:Y3J5cHQ:0")
            .expect("lenient");
    assert_eq!(msg.client_timeout, Some(0));
    assert_eq!(msg.server_auth.as_deref(), Some(&b"crypt"[..]));
}

fn sha2_digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

#[test]
fn keys_are_checked_and_never_printed() {
    let k = |e: &str, h: &str| FwknopKeys::new(key_from_text(e), key_from_text(h), Digest::Sha256);
    assert_eq!(k("same", "same").err(), Some(FwknopKeyError::SameKeys));
    assert_eq!(k("", "h").err(), Some(FwknopKeyError::EncKeyLength(0)));
    assert_eq!(
        k(&"x".repeat(33), "h").err(),
        Some(FwknopKeyError::EncKeyLength(33))
    );
    assert!(k(&"x".repeat(32), &"y".repeat(128)).is_ok());
    assert_eq!(
        k("e", &"y".repeat(129)).err(),
        Some(FwknopKeyError::HmacKeyLength(129))
    );
    assert_eq!(k("e", "").err(), Some(FwknopKeyError::HmacKeyLength(0)));
    let keys = k("supersecretkey", "anothersecret").expect("keys");
    let shown = format!("{keys:?}");
    assert!(
        !shown.contains("supersecret") && !shown.contains("another"),
        "{shown}"
    );
    assert!(shown.contains("Sha256"), "{shown}");
    assert_eq!(
        key_from_base64("  cm9vdA==\n").expect("b64").as_slice(),
        b"root"
    );
    assert_eq!(
        key_from_base64("not base64!"),
        Err(FwknopKeyError::NotBase64)
    );
    assert_eq!(key_from_base64(""), Err(FwknopKeyError::NotBase64));
}

#[test]
fn encode_refuses_what_fwknopd_would_refuse() {
    let keys = text_keys(Digest::Sha256);
    let allow = Ipv4Addr::new(192, 0, 2, 7);
    let mut v6 = SpaMessage::access("a", 1, allow, vec![Service::tcp(22)], None);
    v6.allow = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert!(matches!(
        encode(&keys, &v6, getrandom::fill),
        Err(EncodeError::AllowNotIpv4(_))
    ));
    for user in ["", "a:b", "a,b", "é", &"u".repeat(49)] {
        let msg = SpaMessage::access(user, 1, allow, vec![Service::tcp(22)], None);
        assert!(
            matches!(
                encode(&keys, &msg, getrandom::fill),
                Err(EncodeError::Invalid { .. })
            ),
            "{user:?}"
        );
    }
    let msg = SpaMessage::access(&"u".repeat(48), 1, allow, vec![Service::tcp(22)], None);
    encode(&keys, &msg, getrandom::fill).expect("48 characters is fwknopd's limit");
    let none = SpaMessage::access("a", 1, allow, vec![], None);
    assert!(encode(&keys, &none, getrandom::fill).is_err());
    let many: Vec<Service> = (1000..1030).map(Service::tcp).collect();
    let big = SpaMessage::access("a", 1, allow, many, None);
    assert!(encode(&keys, &big, getrandom::fill).is_err());
    let mut mixed = SpaMessage::access("a", 1, allow, vec![Service::tcp(22)], None);
    mixed.message_type = MessageType::Command;
    assert!(encode(&keys, &mixed, getrandom::fill).is_err());
    let mut no_timeout = mixed.clone();
    no_timeout.message_type = MessageType::ClientTimeoutAccess;
    assert!(encode(&keys, &no_timeout, getrandom::fill).is_err());
    let mut bad_random = SpaMessage::access("a", 1, allow, vec![Service::tcp(22)], None);
    bad_random.random = Some("12345".into());
    assert!(encode(&keys, &bad_random, getrandom::fill).is_err());
}

fn some_keys() -> FwknopKeys {
    text_keys(Digest::Sha256)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let _ = decode(&some_keys(), &data);
    }

    #[test]
    fn arbitrary_base64_of_packet_size_never_decodes(
        text in "[A-Za-z0-9+/=]{140,399}"
    ) {
        let e = decode(&some_keys(), text.as_bytes()).expect_err("garbage");
        prop_assert!(!e.authenticated());
    }

    #[test]
    fn arbitrary_authenticated_plaintexts_never_panic(
        pt in "[0-9]{16}:[A-Za-z0-9+/=:.,]{0,300}",
        body in "[0-9]{16}(:[A-Za-z0-9+/=.,]{0,40}){4,9}",
        raw in proptest::collection::vec(any::<u8>(), 0..300),
        salt in any::<[u8; 8]>(),
    ) {
        let keys = some_keys();
        // With a correct digest, so that the field parser is reached.
        let digested = format!("{body}:{}", STANDARD_NO_PAD.encode(sha2_digest(body.as_bytes())));
        for plaintext in [pt.as_bytes(), digested.as_bytes(), &raw[..]] {
            if let Ok(packet) = seal(&keys, plaintext, salt) {
                let _ = decode(&keys, packet.as_bytes());
            }
        }
    }

    #[test]
    fn any_valid_access_message_round_trips(
        user in "[a-zA-Z0-9._@-]{1,48}",
        timestamp in 0u64..100_000_000_000,
        allow in any::<u32>(),
        ports in proptest::collection::vec((any::<bool>(), 1u16..), 1..8),
        timeout in proptest::option::of(0u32..=65536),
        hmac in 0usize..5,
    ) {
        let keys = text_keys(Digest::ALL[hmac]);
        let services = ports
            .into_iter()
            .map(|(udp, p)| if udp { Service::udp(p) } else { Service::tcp(p) })
            .collect();
        let msg = SpaMessage::access(&user, timestamp, Ipv4Addr::from(allow), services, timeout);
        match encode(&keys, &msg, getrandom::fill) {
            Ok(packet) => {
                let back = decode(&keys, packet.as_bytes()).expect("decode");
                prop_assert_eq!(SpaMessage { random: None, ..back }, msg);
            }
            // Long names, many services and a long HMAC can add up to GnuPG's size, which
            // fwknopd would not try to decrypt: refused, not sent.
            Err(EncodeError::PacketSize(n)) => prop_assert!(n >= fwknop::GPG_PACKET),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}

fn legacy_keys() -> FwknopKeys {
    FwknopKeys::legacy(key_from_text("fwknoptestkey123")).expect("legacy keys")
}

fn legacy_packet() -> Vec<u8> {
    let mut p = fs::read(vector_dir().join("legacy/access.pkt")).expect("legacy vector");
    assert_eq!(p.pop(), Some(b'\n'));
    p
}

#[test]
fn legacy_packets_from_debians_client_decode_with_the_key_alone() {
    let keys = legacy_keys();
    assert!(keys.is_legacy() && !text_keys(Digest::Sha256).is_legacy());
    let p = legacy_packet();
    let (msg, replay_key) = fwknop::decode_with_replay_key(&keys, &p).expect("decodes");
    assert_eq!(
        (msg.username.as_str(), msg.timestamp, msg.message_type),
        ("root", 1_796_297_964, MessageType::Access)
    );
    assert_eq!(msg.allow, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    assert_eq!(msg.services(), [Service::tcp(22)]);
    assert_eq!(msg.client_timeout, None);
    let pt = decrypt(&keys, &p).expect("plaintext");
    assert_eq!(
        pt.as_slice(),
        b"1031993818705511:cm9vdA:1796297964:3.0.0:1:MTkyLjAuMi43LHRjcC8yMg:UMcyiO3WuEf05YHh2y3gNkK0sGJrz3foL0o2E24M7fE"
    );
    assert_eq!(replay_key, sha2_digest(&pt));
    // the same message sealed again with the packet's salt is the packet, byte for byte
    assert_eq!(
        seal(&keys, &pt, salt_of(&p)).expect("seal").as_bytes(),
        &p[..]
    );
    // an HMAC door does not take it, nor a legacy door an HMAC packet: nothing authenticated
    assert_eq!(
        decode(&text_keys(Digest::Sha256), &p),
        Err(FwknopError::BadHmac)
    );
    let e = decode(&keys, &vec_a()).expect_err("an HMAC packet");
    assert!(matches!(e, FwknopError::Legacy(_)), "{e}");
    assert!(!e.authenticated());
}

#[test]
fn legacy_packets_written_differently_have_one_replay_key() {
    let keys = legacy_keys();
    let p = legacy_packet();
    let (_, key) = fwknop::decode_with_replay_key(&keys, &p).expect("decodes");
    // fwknop's base64 decoder stops at the first `=`: text after it is another packet digest
    // for the same ciphertext, and so the same plaintext
    let mut padded = p.clone();
    padded.extend_from_slice(b"=AAAA");
    assert_ne!(replay_digest(&padded), replay_digest(&p));
    let (_, again) = fwknop::decode_with_replay_key(&keys, &padded).expect("decodes");
    assert_eq!(again, key, "one message, one replay key");
}

#[test]
fn legacy_keys_refuse_noise_bit_flips_and_wrong_keys_without_authenticating() {
    let keys = legacy_keys();
    let p = legacy_packet();
    let wrong = FwknopKeys::legacy(key_from_text("fwknoptestkey124")).expect("keys");
    let e = decode(&wrong, &p).expect_err("wrong key");
    assert!(
        matches!(e, FwknopError::Legacy(_)) && !e.authenticated(),
        "{e}"
    );
    let mut opened = 0;
    for i in 0..p.len() {
        for bit in 0..8 {
            let mut flipped = p.clone();
            flipped[i] ^= 1 << bit;
            match fwknop::decode_with_replay_key(&keys, &flipped) {
                // a flip in the last character's unused low bits: the same ciphertext, and the
                // same replay key as the packet
                Ok((_, k)) => {
                    opened += 1;
                    assert_eq!(
                        k,
                        fwknop::decode_with_replay_key(&keys, &p).expect("ok").1,
                        "byte {i} bit {bit}"
                    );
                }
                Err(e) => assert!(!e.authenticated(), "byte {i} bit {bit}: {e}"),
            }
        }
    }
    assert!(opened <= 8, "{opened} flipped packets decoded");
    assert_eq!(
        FwknopKeys::legacy(key_from_text("")).err(),
        Some(FwknopKeyError::EncKeyLength(0))
    );
}

proptest! {
    #[test]
    fn legacy_keys_never_panic_and_never_authenticate(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let keys = legacy_keys();
        if let Err(e) = decode(&keys, &bytes) {
            prop_assert!(!e.authenticated());
        }
    }
}
