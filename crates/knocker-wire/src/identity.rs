//! X25519 identities: each client and each server has a static key pair; the server knows every
//! enrolled client's public key, every client knows its server's.
//!
//! What the keys are for:
//!
//! - [`crate::spa`]: a client seals a request to the server's [`PublicKey`] with its
//!   [`PrivateKey`] (Noise X); the server learns, authenticated, which client sent it.
//! - [`PrivateKey::syn_key`]: both sides derive the same per-client [`SynKey`] for stealth SYNs,
//!   with no further secret to distribute: X25519 between the client's and the server's keys,
//!   then
//!
//!   ```text
//!   prk     = HMAC-SHA256(key = "knocker syn v1", dh)                      (HKDF-Extract)
//!   syn key = HMAC-SHA256(prk, "knocker syn v1" || lo || hi || 0x01)      (HKDF-Expand, 32 bytes)
//!   ```
//!
//!   where `lo`, `hi` are the two public keys in byte order, so the client (its key with the
//!   server's) and the server (its key with the client's) hash the same bytes. Binding both keys
//!   makes the key specific to this pair even where X25519 is not injective.
//! - [`PrivateKey::door_key`]: the server derives one [`DoorKey`] per SPA door,
//!   `HMAC-SHA256(server private key, "knocker door v1" || door name)`, and gives it to the
//!   clients it enrols, so that it can drop datagrams not meant for the door with one HMAC,
//!   before any public-key operation. Deriving it means there is no extra key file to keep.
//!
//! A peer's public key that is a low-order point makes every X25519 output all zeros, a "shared"
//! secret anyone knows: [`PrivateKey::syn_key`] refuses it rather than derive a public key.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::key::{secret_key, KeyError, Secret, KEY_LEN};

pub use crate::syn::SynKey;

/// HKDF salt and info label of the SYN key; a future derivation uses a new label.
const SYN_LABEL: &[u8] = b"knocker syn v1";
/// Prefix of the door key's HMAC input; fixed length, so `label || door` is unambiguous.
const DOOR_LABEL: &[u8] = b"knocker door v1";

secret_key! {
    /// An X25519 static private key (client identity or server key): 32 bytes, one line of
    /// base64 in a key file (`knocker keygen --identity`). Any 32 bytes are a valid key: X25519
    /// clamps the scalar when it is used.
    PrivateKey
}

secret_key! {
    /// The tag key of one SPA door: whoever holds it can make datagrams that the door spends a
    /// Noise handshake on, so enrolled clients hold it and a flood without it costs one HMAC per
    /// datagram. Derived by the server with [`PrivateKey::door_key`].
    DoorKey
}

/// Why a key could not be agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the peer's public key is a low-order point (X25519 gives all zeros, a secret anyone knows): refused")]
    LowOrder,
}

/// An X25519 public key, as key files, profiles and the clients file write it (base64). Public:
/// printed in full by `Display` and `Debug`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// Reads one line of base64 (32 bytes), with the same rules as key files: surrounding
    /// whitespace ignored, padding optional.
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        Secret::from_base64(text).map(|s| PublicKey(*s.bytes()))
    }

    /// 44 characters of padded standard base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Whether X25519 with this key gives all zeros for every private key (a low-order point,
    /// in any of its encodings): the answer an X25519 with the key, checked for an all-zero
    /// output, gives, without computing one. Constant time: every byte of every listed encoding
    /// is compared.
    pub fn is_low_order(&self) -> bool {
        let mut key = self.0;
        key[KEY_LEN - 1] &= 0x7f;
        let mut found = subtle::Choice::from(0);
        for bad in &SMALL_ORDER {
            found |= subtle::ConstantTimeEq::ct_eq(&key[..], &bad[..]);
        }
        found.into()
    }
}

/// The encodings of the points of small order (the curve's 8-torsion and its twist's 4-torsion)
/// that X25519 multiplies to all zeros whatever the private key, with bit 255 cleared (X25519
/// ignores it): u = 0, 1, the two points of order 8, p - 1, and the non-canonical p and p + 1
/// (no other encoding below 2^255 reduces to one of these). libsodium's `has_small_order` list.
pub(crate) const SMALL_ORDER: [[u8; KEY_LEN]; 7] = [
    [0; KEY_LEN],
    little_endian(1, 0),
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    // p - 1, p, p + 1, with p = 2^255 - 19 = 0x7fff...ffed
    little_endian(0xec, 0xff),
    little_endian(0xed, 0xff),
    little_endian(0xee, 0xff),
];

/// A key whose first byte is `low` and whose others are `rest`, except the last, which has bit
/// 255 cleared.
const fn little_endian(low: u8, rest: u8) -> [u8; KEY_LEN] {
    let mut key = [rest; KEY_LEN];
    key[0] = low;
    key[KEY_LEN - 1] &= 0x7f;
    key
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl PrivateKey {
    /// The X25519 public key: what the peer is told.
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(*self.bytes());
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }

    /// The SYN key this key shares with `peer` (see the module docs): the client calls it with
    /// the server's public key, the server with the client's, and both get the same key.
    pub fn syn_key(&self, peer: &PublicKey) -> Result<SynKey, IdentityError> {
        let dh = self.agree(peer)?;
        let mine = self.public_key();
        let (lo, hi) = if mine.0 <= peer.0 {
            (&mine, peer)
        } else {
            (peer, &mine)
        };
        let prk = hmac_sha256(SYN_LABEL, &[&dh[..]]);
        let okm = hmac_sha256(&prk[..], &[SYN_LABEL, &lo.0, &hi.0, &[1]]);
        Ok(SynKey::from_bytes(*okm))
    }

    /// The tag key of the SPA door named `door` (see the module docs). Server side: the client
    /// receives the result at enrolment and never derives it.
    pub fn door_key(&self, door: &str) -> DoorKey {
        let key = hmac_sha256(self.bytes(), &[DOOR_LABEL, door.as_bytes()]);
        DoorKey::from_bytes(*key)
    }

    /// X25519 with `peer`, refusing the all-zero output of a low-order point. The comparison
    /// with zero is constant time (in x25519-dalek).
    pub(crate) fn agree(
        &self,
        peer: &PublicKey,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, IdentityError> {
        let secret = x25519_dalek::StaticSecret::from(*self.bytes());
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(IdentityError::LowOrder);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`, in memory that is wiped on drop
/// (the outputs here are keys).
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    // HMAC takes keys of any length: the error cannot happen, and is not a panic if it did.
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        for part in parts {
            mac.update(part);
        }
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(start: u8) -> PrivateKey {
        PrivateKey::from_bytes(core::array::from_fn(|i| start.wrapping_add(i as u8)))
    }

    /// Known answers computed independently (Python: the `cryptography` package's X25519, and
    /// hmac/hashlib following the module docs). A change breaks every enrolled client: it needs
    /// new labels.
    #[test]
    fn the_low_order_list_is_what_x25519_gives_zeros_for() {
        let keys = [counting(0x40), counting(0x11)];
        for listed in SMALL_ORDER {
            for top in [0, 0x80] {
                let mut key = listed;
                key[KEY_LEN - 1] |= top;
                let peer = PublicKey(key);
                assert!(peer.is_low_order(), "{peer}");
                for k in &keys {
                    assert_eq!(k.agree(&peer).map(|_| ()), Err(IdentityError::LowOrder));
                }
            }
            // one bit off: X25519 gives a secret, and the list does not refuse it
            for bit in 0..255 {
                let mut key = listed;
                key[bit / 8] ^= 1 << (bit % 8);
                if SMALL_ORDER.contains(&key) {
                    continue;
                }
                let peer = PublicKey(key);
                assert!(!peer.is_low_order(), "{peer}");
                assert!(keys[0].agree(&peer).is_ok(), "{peer}");
            }
        }
        assert!(!counting(0).public_key().is_low_order());
    }

    #[test]
    fn known_answers() {
        let client = counting(0);
        let server = counting(0x40);
        assert_eq!(
            client.public_key().to_base64(),
            "j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8="
        );
        assert_eq!(
            server.public_key().to_base64(),
            "eaYx7t4b+cmPEgMs3q3Q56B5OY/HhriMyEbsia+FpRo="
        );
        let syn = client.syn_key(&server.public_key()).expect("agree");
        assert_eq!(
            syn.to_base64().as_str(),
            "TpqvXiHB8+XrxxDdhHYJEdqV3QjsnC7kalu8DparLb8="
        );
        assert_eq!(
            server.door_key("ssh").to_base64().as_str(),
            "kBpbihHVNS2yS4bxcr5u0QCiEfsTfxlVBMtY9pmJ3GM="
        );
    }

    #[test]
    fn syn_key_agrees_on_both_sides_and_differs_per_pair() {
        let server = PrivateKey::generate().expect("rng");
        let alice = PrivateKey::generate().expect("rng");
        let bob = PrivateKey::generate().expect("rng");
        let a = alice.syn_key(&server.public_key()).expect("agree");
        assert_eq!(a, server.syn_key(&alice.public_key()).expect("agree"));
        let b = bob.syn_key(&server.public_key()).expect("agree");
        assert_eq!(b, server.syn_key(&bob.public_key()).expect("agree"));
        assert_ne!(a, b);
        let other = PrivateKey::generate().expect("rng");
        assert_ne!(a, alice.syn_key(&other.public_key()).expect("agree"));
    }

    #[test]
    fn low_order_points_are_refused() {
        let key = PrivateKey::generate().expect("rng");
        // 0, 1, a point of order 8, and p - 1 (order 2); the top bit is ignored by X25519.
        let mut order8 = [0u8; 32];
        order8.copy_from_slice(
            &[
                0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
                0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
                0x5f, 0x49, 0xb8, 0x00,
            ][..],
        );
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut zero_high = [0u8; 32];
        zero_high[31] = 0x80;
        for point in [[0u8; 32], one, order8, minus_one, zero_high] {
            assert_eq!(
                key.syn_key(&PublicKey(point)).err(),
                Some(IdentityError::LowOrder),
                "{:?}",
                PublicKey(point)
            );
        }
    }

    #[test]
    fn door_keys_differ_per_door_and_server() {
        let server = counting(0x40);
        assert_eq!(server.door_key("ssh"), server.door_key("ssh"));
        assert_ne!(server.door_key("ssh"), server.door_key("ssh2"));
        assert_ne!(server.door_key("ssh"), server.door_key(""));
        assert_ne!(server.door_key("ssh"), counting(0x41).door_key("ssh"));
    }

    #[test]
    fn public_key_text() {
        let public = counting(0).public_key();
        let text = public.to_base64();
        assert_eq!(PublicKey::from_base64(&format!(" {text}\n")), Ok(public));
        assert_eq!(public.to_string(), text);
        assert_eq!(format!("{public:?}"), format!("PublicKey({text})"));
        assert_eq!(
            PublicKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        );
        assert_eq!(
            PublicKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"),
            Err(KeyError::WrongLength(30))
        );
    }

    #[test]
    fn private_keys_are_never_printed() {
        let key = counting(0);
        assert_eq!(format!("{key:?}"), "PrivateKey(..)");
        assert_eq!(format!("{:?}", key.door_key("ssh")), "DoorKey(..)");
    }
}
