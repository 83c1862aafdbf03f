//! knocker's wire formats and their crypto. No IO (bytes and ports in, values out), except for
//! the files client and daemon keep their secrets in: [`keyfile`] reads key files (owner-only),
//! [`files`] writes small files safely (atomic replace, 0600, durable).
//!
//! - [`rotate`]: rotating sequences (TOTP/HOTP): a port sequence derived from a shared key and a
//!   counter.
//! - [`encoded`]: encoded knocks: a request (address, services, duration, time), encrypted and
//!   authenticated with ChaCha20-Poly1305, spelled out as ports in a span of 2^k ports, and
//!   reassembled in any order.
//! - [`fwknop`]: fwknop's single packet authorization (Rijndael + HMAC), decoded in fwknopd's
//!   order of checks and encoded as Debian's `fwknop` client sends it.
//! - [`knockknock`]: knockknock's SYN (AES-128 counter mode over the port and a truncated
//!   HMAC-SHA1, in the IP ID, TCP sequence, acknowledgement and window), as its client sends it.
//! - [`socks`]: SOCKS5 greetings and CONNECT requests (RFC 1928) as `knocker proxy` serves them,
//!   parsed sans-IO and bounded, and its replies.
//!
//! Everything here is total on untrusted input: no panics, typed errors, bounded memory. Keys are
//! zeroized on drop, compared in constant time and never printed (their `Debug` shows only the
//! type's name).
#![forbid(unsafe_code)]

pub mod encoded;
pub mod files;
pub mod fwknop;
pub mod identity;
mod key;
pub mod keyfile;
pub mod knockknock;
pub mod rotate;
mod service;
pub mod socks;
pub mod spa;
pub mod syn;

pub use encoded::EncodedKey;
pub use key::{KeyError, KEY_LEN};
pub use rotate::RotateKey;
pub use service::{ParseError, Proto, Service, ServiceHasher, ServiceMap};
