//! 32-byte secret keys: as key files hold them (base64), generated from the OS, zeroized when
//! dropped, compared in constant time, never printed.
//!
//! Each kind of door has its own key type ([`crate::RotateKey`], [`crate::EncodedKey`]), so a key
//! meant for one can never be handed to the other by mistake; they share this machinery.

use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use base64::Engine as _;
use zeroize::{Zeroize, Zeroizing};

/// Every knocker key is 32 bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// The longest base64 text a key can be written as (with padding) plus slack for the decoder;
/// anything longer is refused before decoding.
const MAX_TEXT: usize = 64;

/// Why a key could not be read or made. The messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key is {KEY_LEN} bytes written as one line of base64 (44 characters, as `knocker keygen` writes it); this is not base64")]
    NotBase64,
    #[error("a key is {KEY_LEN} bytes; this one is {0} bytes (write it with `knocker keygen`)")]
    WrongLength(usize),
    #[error("the operating system's random number generator failed: {0}")]
    Rng(getrandom::Error),
}

/// The bytes of a key. Zeroized on drop; compared in constant time.
#[derive(Clone)]
pub(crate) struct Secret([u8; KEY_LEN]);

impl Secret {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Secret {
        Secret(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads the base64 text of a key file: surrounding whitespace (a trailing newline) is
    /// ignored, padding is optional, anything else must be exactly 32 bytes of standard base64.
    pub(crate) fn from_base64(text: &str) -> Result<Secret, KeyError> {
        let text = text.trim_ascii();
        if text.len() > MAX_TEXT {
            return Err(KeyError::WrongLength(text.len() / 4 * 3));
        }
        // 64 characters decode to at most 48 bytes; the buffer is wiped whatever happens.
        let mut buf = Zeroizing::new([0u8; MAX_TEXT / 4 * 3]);
        let n = STANDARD_PAD_INDIFFERENT
            .decode_slice(text, &mut buf[..])
            .map_err(|_| KeyError::NotBase64)?;
        if n != KEY_LEN {
            return Err(KeyError::WrongLength(n));
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&buf[..KEY_LEN]);
        Ok(Secret(key))
    }

    /// The key as a key file holds it: 44 characters of padded standard base64, no newline.
    pub(crate) fn to_base64(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(48));
        STANDARD_PAD_INDIFFERENT.encode_string(self.0, &mut text);
        text
    }

    pub(crate) fn generate() -> Result<Secret, KeyError> {
        let mut key = Secret([0u8; KEY_LEN]);
        getrandom::fill(&mut key.0).map_err(KeyError::Rng)?;
        Ok(key)
    }

    pub(crate) fn ct_eq(&self, other: &Secret) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Defines a door's key type over [`Secret`]: parse, print, generate, constant-time `==`, and a
/// `Debug` that shows only the type's name.
macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(crate::key::Secret);

        impl $name {
            /// Wraps raw key bytes (the caller should zeroize its own copy).
            pub fn from_bytes(bytes: [u8; crate::key::KEY_LEN]) -> Self {
                $name(crate::key::Secret::from_bytes(bytes))
            }

            /// Reads a key from a key file's text: one line of base64, 32 bytes.
            pub fn from_base64(text: &str) -> Result<Self, crate::key::KeyError> {
                crate::key::Secret::from_base64(text).map($name)
            }

            /// The key file's text for this key (44 characters of base64, no newline);
            /// zeroized when dropped.
            pub fn to_base64(&self) -> zeroize::Zeroizing<String> {
                self.0.to_base64()
            }

            /// A new key from the operating system's random number generator.
            pub fn generate() -> Result<Self, crate::key::KeyError> {
                crate::key::Secret::generate().map($name)
            }

            #[allow(dead_code)]
            pub(crate) fn bytes(&self) -> &[u8; crate::key::KEY_LEN] {
                self.0.bytes()
            }
        }

        /// Constant time: how many leading bytes two keys share never shows in the timing.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0)
            }
        }

        impl Eq for $name {}

        /// Never prints key material, so a key inside a config struct can be logged safely.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

pub(crate) use secret_key;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_whitespace() {
        let key = Secret::from_bytes(core::array::from_fn(|i| i as u8));
        let text = key.to_base64();
        assert_eq!(
            text.as_str(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        );
        let back = Secret::from_base64(&format!("  {}\n", text.as_str())).expect("parses");
        assert!(back.ct_eq(&key));
        // Padding is optional.
        let back = Secret::from_base64(text.trim_end_matches('=')).expect("unpadded");
        assert!(back.ct_eq(&key));
    }

    #[test]
    fn bad_text_is_refused_without_echoing_it() {
        assert_eq!(
            Secret::from_base64("not base64!").err(),
            Some(KeyError::NotBase64)
        );
        assert_eq!(
            Secret::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd").err(),
            Some(KeyError::WrongLength(30))
        );
        assert_eq!(
            Secret::from_base64("").err(),
            Some(KeyError::WrongLength(0))
        );
        assert!(matches!(
            Secret::from_base64(&"A".repeat(1000)),
            Err(KeyError::WrongLength(_))
        ));
        let Err(e) = Secret::from_base64("c2VjcmV0IHNlY3JldCBzZWNyZXQ=") else {
            panic!("a 20-byte key was accepted");
        };
        assert!(!e.to_string().contains("c2Vj"), "{e}");
    }

    #[test]
    fn generated_keys_differ() {
        let a = Secret::generate().expect("rng");
        let b = Secret::generate().expect("rng");
        assert!(!a.ct_eq(&b));
        assert!(a.ct_eq(&a.clone()));
    }
}
