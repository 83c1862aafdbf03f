//! Fuzzes `knocker_wire::fwknop::decode` with fixed keys, twice per input: the input as a payload
//! (the packet-facing path: precheck, HMAC, which almost nothing passes), and the input sealed
//! with the keys as an authenticated plaintext (first byte: which HMAC digest; then, for half the
//! inputs, a correct plaintext digest appended), so that decryption and the field parser are
//! reached; both again with legacy keys (no HMAC: every payload is decrypted). Must never
//! panic, and a legacy error is never an authenticated one.
#![no_main]

use knocker_wire::fwknop::{decode, decode_with_replay_key, key_from_text, seal, Digest, FwknopKeys};
use libfuzzer_sys::fuzz_target;
use sha2_digest::sha256_b64;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let digest = Digest::ALL[usize::from(selector) % Digest::ALL.len()];
    let Ok(keys) = FwknopKeys::new(
        key_from_text("fuzzing enc key"),
        key_from_text("fuzzing hmac key"),
        digest,
    ) else {
        return;
    };
    let _ = decode(&keys, data);
    let plaintext = if selector & 0x80 != 0 {
        let mut p = rest.to_vec();
        p.push(b':');
        p.extend_from_slice(sha256_b64(rest).as_bytes());
        p
    } else {
        rest.to_vec()
    };
    if let Ok(packet) = seal(&keys, &plaintext, [0x5a; 8]) {
        let _ = decode(&keys, packet.as_bytes());
    }
    let Ok(legacy) = FwknopKeys::legacy(key_from_text("fuzzing enc key")) else {
        return;
    };
    for payload in [data.to_vec(), seal(&legacy, &plaintext, [0x5a; 8]).unwrap_or_default().into_bytes()] {
        if let Err(e) = decode_with_replay_key(&legacy, &payload) {
            assert!(!e.authenticated(), "{e}");
        }
    }
});

mod sha2_digest {
    /// fwknop's default plaintext digest, through the public API: the replay digest is the same
    /// function (base64 of SHA-256, no padding).
    pub fn sha256_b64(data: &[u8]) -> String {
        knocker_wire::fwknop::replay_digest(data)
    }
}
