//! Encoded knocks: a request (who, what, how long, when) encrypted and authenticated with
//! ChaCha20-Poly1305 and spelled out as ports in a span of 2^k ports, the original
//! portknocking.org idea with modern crypto.
//!
//! # What is sent
//!
//! The client builds a [`Request`] and [`encode`]s it with a fresh random nonce into a message:
//!
//! ```text
//! header: 4 bits, sent as its own knock          body: sent as data knocks
//! +---+-------+                                  +----------+--------------------+---------+
//! | F | n - 1 |                                  | nonce 12 | ciphertext (P)     | tag 16  |
//! +---+-------+                                  +----------+--------------------+---------+
//!  F = 0 IPv4, 1 IPv6; n = services (1..=8)       in the clear  ChaCha20            Poly1305
//!
//! plaintext P (big-endian):
//! +--------------+-------------+-------------+--------+---------------+
//! | allow 4 | 16 | duration 3  | unix time 8 | protos | ports 2 x n   |
//! +--------------+-------------+-------------+--------+---------------+
//!  the address    seconds,      seconds       bit i set: service i is UDP (bit 0 = the first);
//!  to open for    1..=86400     since 1970    the bits for i >= n are 0; ports 1..=65535
//!
//! associated data = "knocker encoded v1" || header || base (2 bytes) || k || protocol number
//! AEAD key        = HMAC-SHA256(key, "knocker encoded v1 aead key")
//! ```
//!
//! P is 18 + 2n bytes for IPv4 and 30 + 2n for IPv6, so the body is 44 + 2n or 56 + 2n bytes.
//! The header is authenticated as associated data, together with the door's span, so a message
//! made for one door never opens another that shares its key. The format version is the label:
//! a future format uses a new one. The allowed address is inside the authenticated plaintext: the
//! receiver must check that it is the address the knocks came from.
//!
//! # How it is spelled as knocks
//!
//! Each knock is a port `base + v` with `v` a k-bit value:
//!
//! ```text
//! header knock:  v = header                       (v < 16)
//! data knock j:  v = j << d | chunk j             (j = 1..=N, so v >= 2^d >= 16)
//!                   \_ i bits _/\_ d bits _/      i + d = k
//! chunk j = bits (j-1)*d .. j*d of the body, most significant bit first; the last chunk is
//!           padded with zero bits, which the receiver checks.
//! ```
//!
//! `i` is the smallest number of index bits (at most 7, and at most k - 4, which keeps every data
//! knock above the 16 header values) such that `N = ceil(8 * body length / d) <= 2^i - 1`. Both
//! sides derive it from k and the header, so once the header knock is in, the receiver knows how
//! many data knocks to wait for and where each one goes, whatever order they came in. The client
//! sends the header knock first, then the data knocks by index.
//!
//! Knocks per request, header knock included (IPv4 / IPv6):
//!
//! ```text
//!          1 service    2 services    8 services
//! k = 11    93 / 117     97 / 121     121 / -       (k = 11 fits at most 3 IPv6 services)
//! k = 12    63 /  94     78 /  97      97 / 117
//! k = 13    54 /  79     56 /  81      81 /  97
//! k = 14    47 /  59     49 /  61      61 /  84
//! k = 15    42 /  53     44 /  55      55 /  73
//! ```
//!
//! k is 11 to 15: below 11 even the smallest message (46 bytes) needs more data knocks than the
//! index bits can number, and a span of 2^16 ports would include port 0.
//!
//! # What the receiver does
//!
//! A [`Reassembly`] per source collects the knocks on the span (of the spec's protocol, after the
//! door's TCP flag filter) until a message is complete, then [`decode`] verifies and parses it.
//! Then the caller checks, cheapest first: that [`Request::allow`] is the knocks' source address;
//! that [`Request::unix_time`] is within its window of now; that [`Decoded::replay_id`] was not
//! seen within that window (remembering it, also across restarts); and that the door may grant
//! the services and the duration asked for.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use hmac::Mac;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::key::{secret_key, KeyError};
use crate::{Proto, Service};

/// The fewest bits per knock (the span is 2^k ports).
pub const MIN_BITS: u8 = 11;
/// The most bits per knock.
pub const MAX_BITS: u8 = 15;
/// The most services one request may open.
pub const MAX_SERVICES: usize = 8;
/// The longest a request may ask a door to stay open, in seconds (one day).
pub const MAX_DURATION_SECS: u32 = 86_400;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The longest message body: an IPv6 request for [`MAX_SERVICES`] services.
pub const MAX_BODY: usize = NONCE_LEN + MAX_PLAINTEXT + TAG_LEN;
/// The most data knocks a message may take (7 index bits; index 0 is the header knock).
pub const MAX_DATA_KNOCKS: usize = 127;

/// Header knocks are the values below this; data knocks are at or above it.
const HEADER_VALUES: u16 = 16;
const MAX_INDEX_BITS: u8 = 7;
const MAX_PLAINTEXT: usize = 16 + 3 + 8 + 1 + 2 * MAX_SERVICES;

const AD_LABEL: &[u8; 18] = b"knocker encoded v1";
const KEY_LABEL: &[u8] = b"knocker encoded v1 aead key";
const REPLAY_LABEL: &[u8] = b"knocker encoded v1 replay id";

secret_key! {
    /// The shared key of an encoded door: 32 bytes, as one line of base64 in a key file.
    EncodedKey
}

/// An encoded door's span: 2^`bits` ports from `base`, and the protocol knocks use.
/// Valid by construction (see [`EncodedSpec::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EncodedSpec {
    base: u16,
    bits: u8,
    proto: Proto,
}

/// Why an encoded door's span was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("an encoded door has from {MIN_BITS} to {MAX_BITS} bits per knock, not {0} (fewer cannot carry a nonce and an authenticator in a sensible number of knocks)")]
    Bits(u8),
    #[error("port 0 cannot be knocked: the span must start at 1 or above")]
    PortZero,
    #[error("a span of 2^{bits} ports from {base} ends past port 65535: the base can be at most {}", 65536 - (1u32 << .bits))]
    PastEnd { base: u16, bits: u8 },
}

impl EncodedSpec {
    /// `bits` from 11 to 15; the span `base ..= base + 2^bits - 1` must lie within 1..=65535.
    pub fn new(base: u16, bits: u8, proto: Proto) -> Result<EncodedSpec, SpecError> {
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(SpecError::Bits(bits));
        }
        if base == 0 {
            return Err(SpecError::PortZero);
        }
        if u32::from(base) + (1u32 << bits) - 1 > 65535 {
            return Err(SpecError::PastEnd { base, bits });
        }
        Ok(EncodedSpec { base, bits, proto })
    }

    pub fn base(&self) -> u16 {
        self.base
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The ports knocks land on: every one must be dropped and logged by the firewall.
    pub fn span(&self) -> RangeInclusive<u16> {
        // Checked in `new` to fit.
        self.base..=self.base + ((1u32 << self.bits) - 1) as u16
    }

    fn span_len(&self) -> u32 {
        1u32 << self.bits
    }

    /// The associated data of every message for this span (see the module docs).
    fn associated_data(&self, header: u8) -> [u8; 23] {
        let mut ad = [0u8; 23];
        ad[..18].copy_from_slice(AD_LABEL);
        ad[18] = header;
        ad[19..21].copy_from_slice(&self.base.to_be_bytes());
        ad[21] = self.bits;
        ad[22] = self.proto.number();
        ad
    }
}

impl fmt::Display for EncodedSpec {
    /// `tcp 40000-44095 (12 bits)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = self.span();
        write!(
            f,
            "{} {}-{} ({} bits)",
            self.proto,
            span.start(),
            span.end(),
            self.bits
        )
    }
}

/// What a client asks for: open `services` to `allow` for `duration_secs`, asked at `unix_time`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The address to open for; the receiver requires it to be the knocks' source address.
    pub allow: IpAddr,
    /// 1 to 8 distinct services, none with port 0.
    pub services: Vec<Service>,
    /// 1 to 86 400 seconds.
    pub duration_secs: u32,
    /// When the client made the request, in seconds since 1970: the receiver's freshness check.
    pub unix_time: u64,
}

/// Why a request cannot be sent, or why an authentic message holds a request that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("a request opens from 1 to {MAX_SERVICES} services, not {0}")]
    Services(usize),
    #[error("service {0} is asked for twice")]
    Duplicate(Service),
    #[error("port 0 cannot be opened")]
    PortZero,
    #[error("a request asks for 1 to {MAX_DURATION_SECS} seconds, not {0}")]
    Duration(u32),
    #[error("the address to allow cannot be {0}: give the client's own address")]
    Unspecified(IpAddr),
}

impl Request {
    /// Checks what [`encode`] and [`decode`] require of every request.
    pub fn validate(&self) -> Result<(), RequestError> {
        let n = self.services.len();
        if !(1..=MAX_SERVICES).contains(&n) {
            return Err(RequestError::Services(n));
        }
        for (i, s) in self.services.iter().enumerate() {
            if s.port == 0 {
                return Err(RequestError::PortZero);
            }
            if self.services[..i].contains(s) {
                return Err(RequestError::Duplicate(*s));
            }
        }
        if !(1..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            return Err(RequestError::Duration(self.duration_secs));
        }
        if self.allow.is_unspecified() {
            return Err(RequestError::Unspecified(self.allow));
        }
        Ok(())
    }
}

/// The 4-bit header: address family and number of services, which fix the body's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header(u8);

impl Header {
    fn new(v6: bool, services: usize) -> Header {
        // services is 1..=8 here (validated), so this is 0..=15.
        Header((u8::from(v6) << 3) | ((services - 1) as u8 & 7))
    }

    fn v6(self) -> bool {
        self.0 & 8 != 0
    }

    fn services(self) -> usize {
        usize::from(self.0 & 7) + 1
    }

    fn plaintext_len(self) -> usize {
        let addr = if self.v6() { 16 } else { 4 };
        addr + 3 + 8 + 1 + 2 * self.services()
    }

    fn body_len(self) -> usize {
        NONCE_LEN + self.plaintext_len() + TAG_LEN
    }
}

/// How a message of a given length is cut into knocks (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Index bits per data knock (`i`).
    pub index_bits: u8,
    /// Data bits per data knock (`d`).
    pub data_bits: u8,
    /// Data knocks (`N`); the header knock comes on top.
    pub data_knocks: u8,
}

impl Layout {
    /// Every knock of the message: the header knock and the data knocks.
    pub fn knocks(&self) -> usize {
        usize::from(self.data_knocks) + 1
    }

    fn for_body(bits: u8, body_len: usize) -> Option<Layout> {
        let body_bits = 8 * body_len;
        let max_index = MAX_INDEX_BITS.min(bits.saturating_sub(4));
        (1..=max_index).find_map(|i| {
            let d = bits - i;
            let n = body_bits.div_ceil(usize::from(d));
            (n < 1 << i).then_some(Layout {
                index_bits: i,
                data_bits: d,
                // n < 2^i <= 128
                data_knocks: n as u8,
            })
        })
    }
}

/// The layout of a request for `allow`'s family and `services` services in `spec`, or `None` if
/// it does not fit (only IPv6 with many services in an 11-bit span). `services` must be 1..=8.
pub fn layout(spec: &EncodedSpec, allow: IpAddr, services: usize) -> Option<Layout> {
    if !(1..=MAX_SERVICES).contains(&services) {
        return None;
    }
    let header = Header::new(allow.is_ipv6(), services);
    Layout::for_body(spec.bits, header.body_len())
}

/// Why a request could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{services} services for an {family} address do not fit in {bits}-bit knocks: ask for fewer services or use a wider span")]
    TooLong {
        services: usize,
        family: &'static str,
        bits: u8,
    },
    /// ChaCha20-Poly1305 refuses only messages of 256 GiB and more: never these.
    #[error("the cipher refused the message")]
    Cipher,
}

/// A fresh nonce from the operating system's random number generator. Every request needs its
/// own: the receiver refuses a message it has seen, and a repeated nonce under one key would
/// break ChaCha20-Poly1305's confidentiality.
pub fn random_nonce() -> Result<[u8; NONCE_LEN], KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(KeyError::Rng)?;
    Ok(nonce)
}

fn cipher(key: &EncodedKey) -> ChaCha20Poly1305 {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.bytes())
        .expect("HMAC accepts any key length");
    mac.update(KEY_LABEL);
    let mut derived = Zeroizing::new([0u8; 32]);
    derived.copy_from_slice(&mac.finalize().into_bytes());
    ChaCha20Poly1305::new(&(*derived).into())
}

/// Encrypts `request` with `nonce` and spells it out as ports of `spec`'s span, in sending order:
/// the header knock, then the data knocks by index. Every port is distinct.
pub fn encode(
    key: &EncodedKey,
    spec: &EncodedSpec,
    request: &Request,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u16>, EncodeError> {
    request.validate()?;
    let header = Header::new(request.allow.is_ipv6(), request.services.len());
    let layout = Layout::for_body(spec.bits, header.body_len()).ok_or(EncodeError::TooLong {
        services: request.services.len(),
        family: if header.v6() { "IPv6" } else { "IPv4" },
        bits: spec.bits,
    })?;

    let mut body = [0u8; MAX_BODY];
    let body_len = header.body_len();
    let plain_len = header.plaintext_len();
    body[..NONCE_LEN].copy_from_slice(&nonce);
    {
        let plain = &mut body[NONCE_LEN..NONCE_LEN + plain_len];
        write_plaintext(request, plain);
        let tag = cipher(key)
            .encrypt_inout_detached(&nonce.into(), &spec.associated_data(header.0), plain.into())
            .map_err(|_| EncodeError::Cipher)?;
        body[NONCE_LEN + plain_len..body_len].copy_from_slice(&tag);
    }

    let d = layout.data_bits;
    let mut ports = Vec::with_capacity(layout.knocks());
    ports.push(spec.base + u16::from(header.0));
    for j in 1..=u16::from(layout.data_knocks) {
        let chunk = read_bits(&body[..body_len], usize::from(j - 1) * usize::from(d), d);
        // j < 2^i and chunk < 2^d, so the value is below 2^k and the port within the span.
        ports.push(spec.base + ((j << d) | chunk));
    }
    Ok(ports)
}

fn write_plaintext(request: &Request, out: &mut [u8]) {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    match request.allow {
        IpAddr::V4(a) => put(&a.octets()),
        IpAddr::V6(a) => put(&a.octets()),
    }
    put(&request.duration_secs.to_be_bytes()[1..]);
    put(&request.unix_time.to_be_bytes());
    let protos = request
        .services
        .iter()
        .enumerate()
        .fold(0u8, |acc, (i, s)| {
            acc | (u8::from(s.proto == Proto::Udp) << i)
        });
    put(&[protos]);
    for s in &request.services {
        put(&s.port.to_be_bytes());
    }
}

/// `count` (<= 16) bits of `bytes` from bit `start`, most significant first; bits past the end
/// read as 0.
fn read_bits(bytes: &[u8], start: usize, count: u8) -> u16 {
    (0..usize::from(count)).fold(0u16, |acc, b| {
        let pos = start + b;
        let bit = bytes
            .get(pos / 8)
            .map_or(0, |byte| (byte >> (7 - pos % 8)) & 1);
        (acc << 1) | u16::from(bit)
    })
}

/// A reassembled message: the header followed by the body, as [`decode`] takes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message {
    len: u8,
    bytes: [u8; 1 + MAX_BODY],
}

impl Message {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({} bytes)", self.len)
    }
}

/// What one knock did to a [`Reassembly`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Taken (or ignored as a retransmission); more knocks are needed.
    Incomplete,
    /// The message is complete; the reassembly is empty again. Hand it to [`decode`].
    Complete(Message),
    /// The knock did not fit; [`Invalid`] says why and what was kept.
    Invalid(Invalid),
}

/// Why a knock did not fit. After each, the reassembly is in a known state (below), so the
/// caller needs to do nothing but count or log it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The port is outside the span. Nothing changed.
    #[error("port outside the span")]
    OutsideSpan,
    /// The knock contradicts what is held: two messages are mixed (an earlier one that lost a
    /// knock, and a retry). The older part was dropped and this knock kept ([`Reassembly`]).
    #[error("knock conflicts with the message in progress; the older part was dropped")]
    Conflict,
    /// A data knock whose index is 0 or past the end for the header held. Everything held is
    /// dropped and this knock kept (it may belong to a message whose header is to come).
    #[error("knock index outside the message; started over")]
    BadIndex,
    /// A header whose message does not fit this span (IPv6 with many services at 11 bits).
    /// Everything is dropped.
    #[error("header for a message that cannot fit this span; dropped")]
    ImpossibleLength,
    /// More distinct data knocks than any message can have, with no header yet. What was held is
    /// dropped and this knock kept.
    #[error("more knocks than any message has; started over")]
    TooMany,
    /// The message was complete but its padding bits were not zero (a changed last knock). What
    /// is kept is as after a complete message ([`Reassembly`]).
    #[error("nonzero padding in the last knock; dropped")]
    BadPadding,
}

/// One source's knocks on an encoded door, collected in any order until a message is complete.
///
/// Fixed size (under 320 bytes), no allocation: each knock costs at most a scan of the
/// [`MAX_DATA_KNOCKS`] values held. Expiring a stale partial message is the caller's business
/// (the engine's window).
///
/// A knock on a port already held changes nothing held: a retransmission or a duplicate never
/// disturbs.
/// The other rules let a retry succeed right after a message that lost a knock, whatever order
/// either message's knocks arrive in. Two messages of one shape have the same header, so their
/// data knocks get mixed; what tells them apart is arrival order, as every knock of the retry
/// arrives after every knock of the earlier message.
///
/// - A data knock whose index is held with another value is a [`Invalid::Conflict`]: the held
///   knock it clashes with, and every data knock that arrived before that one, belong to an
///   earlier message and are dropped. The new knock is kept, and so is the header.
/// - Knocks that arrived after the latest header knock (a retry's, sent first; or a reordered
///   one), or after the first conflict since, are *fresh*; so is a held knock that arrives again
///   after the latest header (a retry's knock can equal the earlier message's by chance).
/// - When every data knock is in, the message is returned ([`Push::Complete`]). If some of its
///   knocks were not fresh it may be a mix of two messages, so the fresh knocks and the header
///   are kept: should the message fail to [`decode`], the rest of the retry can still complete
///   it. Otherwise the reassembly is empty again. After a message that decodes, the caller may
///   [`Reassembly::clear`] it.
/// - A header knock other than the one held drops everything and is kept
///   ([`Invalid::Conflict`]). Data knocks that came before the header are kept if they fit its
///   layout, else dropped ([`Invalid::Conflict`]).
/// - A data knock with no place in the header's layout drops everything and is kept
///   ([`Invalid::BadIndex`]); more data knocks than any message has, with no header, likewise
///   ([`Invalid::TooMany`]).
#[derive(Clone, Debug)]
pub struct Reassembly {
    spec: EncodedSpec,
    /// The most data knocks any header that fits this span announces.
    limit: u8,
    header: Option<(Header, Layout)>,
    count: u8,
    /// Once the header is known: bit j set = data knock j is held.
    present: u128,
    /// Where, in `values`, the fresh knocks start (see the type's docs), if any are.
    fresh_from: Option<u8>,
    /// The data knocks' values (port - base), distinct, in arrival order.
    values: [u16; MAX_DATA_KNOCKS],
}

impl Reassembly {
    pub fn new(spec: &EncodedSpec) -> Reassembly {
        let limit = (0..HEADER_VALUES as u8)
            .filter_map(|h| Layout::for_body(spec.bits, Header(h).body_len()))
            .map(|l| l.data_knocks)
            .max()
            .unwrap_or(0);
        Reassembly {
            spec: *spec,
            limit,
            header: None,
            count: 0,
            present: 0,
            fresh_from: None,
            values: [0; MAX_DATA_KNOCKS],
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.header.is_none() && self.count == 0
    }

    /// Drops everything held.
    pub fn clear(&mut self) {
        self.header = None;
        self.drop_data();
    }

    /// Takes one knock's destination port.
    pub fn push(&mut self, port: u16) -> Push {
        let Some(v) = port
            .checked_sub(self.spec.base)
            .filter(|v| u32::from(*v) < self.spec.span_len())
        else {
            return Push::Invalid(Invalid::OutsideSpan);
        };
        if v < HEADER_VALUES {
            // v < 16
            self.push_header(Header(v as u8))
        } else {
            self.push_data(v)
        }
    }

    fn held(&self) -> &[u16] {
        &self.values[..usize::from(self.count)]
    }

    fn hold(&mut self, v: u16) {
        if let Some(slot) = self.values.get_mut(usize::from(self.count)) {
            *slot = v;
            self.count += 1;
        }
    }

    fn drop_data(&mut self) {
        self.count = 0;
        self.present = 0;
        self.fresh_from = None;
    }

    /// Drops the first `n` data knocks held (the oldest), keeps the rest and the header.
    fn drop_oldest(&mut self, n: u8) {
        let n = n.min(self.count);
        self.values
            .copy_within(usize::from(n)..usize::from(self.count), 0);
        self.count -= n;
        self.fresh_from = self.fresh_from.map(|f| f.saturating_sub(n));
        if let Some((_, layout)) = self.header {
            // What was held fit the layout, so a part of it does too.
            match index_bits_of(self.held(), layout) {
                Some(present) => self.present = present,
                None => self.drop_data(),
            }
        }
    }

    /// A header knock arrived: what comes next is fresh.
    fn mark_fresh(&mut self) {
        self.fresh_from = (self.count > 0).then_some(self.count);
    }

    fn push_header(&mut self, header: Header) -> Push {
        match self.header {
            Some((held, _)) if held == header => {
                self.mark_fresh();
                return Push::Incomplete;
            }
            Some(_) => {
                self.clear();
                return match self.push_header(header) {
                    Push::Invalid(why) => Push::Invalid(why),
                    _ => Push::Invalid(Invalid::Conflict),
                };
            }
            None => {}
        }
        let Some(layout) = Layout::for_body(self.spec.bits, header.body_len()) else {
            self.clear();
            return Push::Invalid(Invalid::ImpossibleLength);
        };
        self.header = Some((header, layout));
        // Data knocks that came first (reordered on the way, or left over from an earlier
        // message) must each have their own index within this layout.
        match index_bits_of(self.held(), layout) {
            Some(present) => {
                self.present = present;
                self.mark_fresh();
                self.complete()
            }
            None => {
                self.drop_data();
                Push::Invalid(Invalid::Conflict)
            }
        }
    }

    fn push_data(&mut self, v: u16) -> Push {
        if let Some(q) = self.held().iter().position(|&held| held == v) {
            // Nothing changes in what is held, but if it arrived again since the last header
            // it may be the retry's own knock (equal by chance: a few bits each): it is fresh.
            if let Some(fresh) = self.fresh_from.filter(|&f| usize::from(f) > q) {
                self.values[q..usize::from(self.count)].rotate_left(1);
                self.fresh_from = Some(fresh - 1);
            }
            return Push::Incomplete;
        }
        let Some((_, layout)) = self.header else {
            if self.count >= self.limit {
                self.drop_data();
                self.hold(v);
                return Push::Invalid(Invalid::TooMany);
            }
            self.hold(v);
            return Push::Incomplete;
        };
        let Some(bit) = index_bit(v, layout) else {
            self.clear();
            self.hold(v);
            return Push::Invalid(Invalid::BadIndex);
        };
        if self.present & bit == 0 {
            self.present |= bit;
            self.hold(v);
            return self.complete();
        }
        // The held knock with this index, and all that came before it, are older.
        let clash = self
            .held()
            .iter()
            .position(|&held| index_bit(held, layout) == Some(bit))
            .map_or(self.count, |p| p as u8 + 1);
        self.drop_oldest(clash);
        if self.fresh_from.is_none() {
            self.fresh_from = Some(self.count);
        }
        self.present |= bit;
        self.hold(v);
        match self.complete() {
            Push::Incomplete => Push::Invalid(Invalid::Conflict),
            done => done,
        }
    }

    /// With the header held: once every data knock is in, assembles the message (see the type's
    /// docs for what is kept).
    fn complete(&mut self) -> Push {
        let Some((header, layout)) = self.header else {
            return Push::Incomplete;
        };
        if self.count < layout.data_knocks {
            return Push::Incomplete;
        }
        let body_len = header.body_len();
        let body_bits = 8 * body_len;
        let d = usize::from(layout.data_bits);
        let mut message = Message {
            // body_len <= MAX_BODY = 72
            len: (1 + body_len) as u8,
            bytes: [0; 1 + MAX_BODY],
        };
        message.bytes[0] = header.0;
        let mut padding = 0u16;
        for &v in self.held() {
            // Held data knocks have indices 1..=N (checked when taken).
            let start = usize::from((v >> d).saturating_sub(1)) * d;
            for b in 0..d {
                let bit = (v >> (d - 1 - b)) & 1;
                let pos = start + b;
                match message.bytes.get_mut(1 + pos / 8) {
                    Some(byte) if pos < body_bits => *byte |= (bit as u8) << (7 - pos % 8),
                    _ => padding |= bit,
                }
            }
        }
        match self.fresh_from {
            Some(fresh) if fresh > 0 => {
                self.drop_oldest(fresh);
                self.fresh_from = None;
            }
            _ => self.clear(),
        }
        if padding != 0 {
            return Push::Invalid(Invalid::BadPadding);
        }
        Push::Complete(message)
    }
}

/// The index bit of a data knock in `layout`, or `None` if its index is 0 or past the end.
fn index_bit(v: u16, layout: Layout) -> Option<u128> {
    let index = v >> layout.data_bits;
    if index == 0 || index > u16::from(layout.data_knocks) {
        return None;
    }
    // index <= 127
    Some(1u128 << index)
}

/// The index bits of `values` in `layout`, or `None` if one has no place or two share one.
fn index_bits_of(values: &[u16], layout: Layout) -> Option<u128> {
    values.iter().try_fold(0u128, |present, &v| {
        let bit = index_bit(v, layout)?;
        (present & bit == 0).then_some(present | bit)
    })
}

/// An authentic request, with what the receiver needs for its replay check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub request: Request,
    pub nonce: [u8; NONCE_LEN],
    replay_id: [u8; 32],
}

impl Decoded {
    /// A digest of the whole message: remember it for as long as the time window accepts the
    /// request, and refuse a message whose digest is remembered.
    pub fn replay_id(&self) -> [u8; 32] {
        self.replay_id
    }
}

/// Why a message was refused. Nothing of an unauthentic message is ever returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a message: {0} bytes, where the header says {1}")]
    Length(usize, usize),
    #[error("not a message: header {0} is not 0 to 15")]
    Header(u8),
    #[error("a message of this length does not fit this door's span")]
    Span,
    #[error("the message is not authentic (wrong key, another door's, or changed on the way)")]
    Unauthentic,
    #[error("authentic, but the request is malformed: {0}")]
    Malformed(&'static str),
    #[error("authentic, but the request is invalid: {0}")]
    Request(#[from] RequestError),
}

/// Verifies `bytes` (a [`Message`]) with `key` and `spec`, then parses the request strictly.
/// The caller still checks the source address, the time and replays (see the module docs).
pub fn decode(key: &EncodedKey, spec: &EncodedSpec, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let Some((&h, body)) = bytes.split_first() else {
        return Err(DecodeError::Length(0, 1));
    };
    if u16::from(h) >= HEADER_VALUES {
        return Err(DecodeError::Header(h));
    }
    let header = Header(h);
    if body.len() != header.body_len() {
        return Err(DecodeError::Length(bytes.len(), 1 + header.body_len()));
    }
    if Layout::for_body(spec.bits, body.len()).is_none() {
        return Err(DecodeError::Span);
    }
    let (nonce, rest) = body.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecodeError::Unauthentic)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| DecodeError::Unauthentic)?;

    let mut buf = Zeroizing::new([0u8; MAX_PLAINTEXT]);
    let plain = &mut buf[..ciphertext.len()];
    plain.copy_from_slice(ciphertext);
    // Verifies the tag (in constant time) before decrypting anything; on failure the buffer
    // still holds the ciphertext and is wiped on drop.
    cipher(key)
        .decrypt_inout_detached(
            &nonce.into(),
            &spec.associated_data(h),
            (&mut *plain).into(),
            &tag.into(),
        )
        .map_err(|_| DecodeError::Unauthentic)?;
    let request = parse_plaintext(header, plain)?;
    request.validate()?;

    let mut digest = Sha256::new();
    digest.update(REPLAY_LABEL);
    digest.update(bytes);
    Ok(Decoded {
        request,
        nonce,
        replay_id: digest.finalize().into(),
    })
}

fn parse_plaintext(header: Header, plain: &[u8]) -> Result<Request, DecodeError> {
    let mut rest = plain;
    let mut take = |n: usize| -> Result<&[u8], DecodeError> {
        if rest.len() < n {
            return Err(DecodeError::Malformed("too short"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let allow = if header.v6() {
        let octets: [u8; 16] = take(16)?
            .try_into()
            .map_err(|_| DecodeError::Malformed("address"))?;
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        let octets: [u8; 4] = take(4)?
            .try_into()
            .map_err(|_| DecodeError::Malformed("address"))?;
        IpAddr::V4(Ipv4Addr::from(octets))
    };
    let d = take(3)?;
    let duration_secs = u32::from_be_bytes([0, d[0], d[1], d[2]]);
    let t: [u8; 8] = take(8)?
        .try_into()
        .map_err(|_| DecodeError::Malformed("time"))?;
    let unix_time = u64::from_be_bytes(t);
    let protos = take(1)?[0];
    let n = header.services();
    if u16::from(protos) >> n != 0 {
        return Err(DecodeError::Malformed(
            "protocol bits set past the last service",
        ));
    }
    let mut services = Vec::with_capacity(n);
    for i in 0..n {
        let p = take(2)?;
        let proto = if protos >> i & 1 == 1 {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        services.push(Service::new(proto, u16::from_be_bytes([p[0], p[1]])));
    }
    if !rest.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok(Request {
        allow,
        services,
        duration_secs,
        unix_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bits: u8) -> EncodedSpec {
        EncodedSpec::new(40000 - 40000 % 4096, bits, Proto::Tcp).expect("spec")
    }

    #[test]
    fn the_knock_table_in_the_docs_is_right() {
        let v4: IpAddr = "192.0.2.1".parse().expect("v4");
        let v6: IpAddr = "2001:db8::1".parse().expect("v6");
        let table: [(u8, [Option<usize>; 6]); 5] = [
            (
                11,
                [Some(93), Some(117), Some(97), Some(121), Some(121), None],
            ),
            (
                12,
                [Some(63), Some(94), Some(78), Some(97), Some(97), Some(117)],
            ),
            (
                13,
                [Some(54), Some(79), Some(56), Some(81), Some(81), Some(97)],
            ),
            (
                14,
                [Some(47), Some(59), Some(49), Some(61), Some(61), Some(84)],
            ),
            (
                15,
                [Some(42), Some(53), Some(44), Some(55), Some(55), Some(73)],
            ),
        ];
        for (bits, row) in table {
            let s = EncodedSpec::new(1024, bits, Proto::Tcp).expect("spec");
            let got: Vec<Option<usize>> = [1, 2, 8]
                .iter()
                .flat_map(|&n| [layout(&s, v4, n), layout(&s, v6, n)])
                .map(|l| l.map(|l| l.knocks()))
                .collect();
            assert_eq!(got, row, "k = {bits}");
        }
        // IPv4, one service, k = 12: 6 index bits and 6 data bits, 62 data knocks.
        assert_eq!(
            layout(&spec(12), v4, 1),
            Some(Layout {
                index_bits: 6,
                data_bits: 6,
                data_knocks: 62
            })
        );
        assert_eq!(layout(&spec(12), v4, 0), None);
        assert_eq!(layout(&spec(12), v4, 9), None);
    }

    #[test]
    fn data_knocks_never_look_like_header_knocks() {
        for bits in MIN_BITS..=MAX_BITS {
            for h in 0..16 {
                if let Some(l) = Layout::for_body(bits, Header(h).body_len()) {
                    assert!(l.data_bits >= 4, "k = {bits}, header {h}");
                    assert!(l.index_bits <= MAX_INDEX_BITS);
                    assert!(usize::from(l.data_knocks) <= MAX_DATA_KNOCKS);
                    assert!(
                        usize::from(l.data_knocks) * usize::from(l.data_bits)
                            >= 8 * Header(h).body_len()
                    );
                }
            }
        }
    }

    #[test]
    fn headers() {
        assert_eq!(Header::new(false, 1).0, 0);
        assert_eq!(Header::new(true, 8).0, 15);
        assert_eq!(Header::new(false, 1).body_len(), 46);
        assert_eq!(Header::new(true, 1).body_len(), 58);
        assert_eq!(Header::new(true, 8).body_len(), MAX_BODY);
        for h in 0..16 {
            let header = Header(h);
            assert_eq!(Header::new(header.v6(), header.services()), header);
        }
    }

    #[test]
    fn bits_read_most_significant_first() {
        let bytes = [0b1010_0000, 0b0000_0001];
        assert_eq!(read_bits(&bytes, 0, 3), 0b101);
        assert_eq!(read_bits(&bytes, 13, 3), 0b001);
        assert_eq!(read_bits(&bytes, 14, 4), 0b0100); // past the end reads 0
        assert_eq!(read_bits(&bytes, 0, 16), 0xa001);
    }

    #[test]
    fn spans_are_checked() {
        assert_eq!(
            EncodedSpec::new(1000, 10, Proto::Tcp),
            Err(SpecError::Bits(10))
        );
        assert_eq!(
            EncodedSpec::new(1000, 16, Proto::Tcp),
            Err(SpecError::Bits(16))
        );
        assert_eq!(
            EncodedSpec::new(0, 12, Proto::Tcp),
            Err(SpecError::PortZero)
        );
        assert_eq!(
            EncodedSpec::new(61441, 12, Proto::Tcp),
            Err(SpecError::PastEnd {
                base: 61441,
                bits: 12
            })
        );
        let s = EncodedSpec::new(61440, 12, Proto::Udp).expect("fits exactly");
        assert_eq!(s.span(), 61440..=65535);
        assert_eq!(s.to_string(), "udp 61440-65535 (12 bits)");
        let e = EncodedSpec::new(61441, 12, Proto::Tcp).expect_err("past the end");
        assert!(e.to_string().contains("at most 61440"), "{e}");
        assert_eq!(
            EncodedSpec::new(32768, 15, Proto::Tcp).map(|s| s.span()),
            Ok(32768..=65535)
        );
    }

    #[test]
    fn the_reassembly_is_small_and_fixed() {
        assert!(
            std::mem::size_of::<Reassembly>() <= 320,
            "{}",
            std::mem::size_of::<Reassembly>()
        );
        assert_eq!(Reassembly::new(&spec(12)).limit, 116);
        assert_eq!(Reassembly::new(&spec(11)).limit, 124);
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(
            format!("{:?}", EncodedKey::from_bytes([7; 32])),
            "EncodedKey(..)"
        );
    }
}
