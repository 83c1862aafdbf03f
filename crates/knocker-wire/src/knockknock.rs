//! knockknock's knock (Moxie Marlinspike, 2009): one TCP SYN whose IP ID, sequence number,
//! acknowledgement number and window carry 12 encrypted bytes, as knockknock's client sends it
//! and its daemon reads it, so that knockknock's profiles and clients work unchanged.
//!
//! # The format, as knockknock's `CryptoEngine.py` and `knockknock.py` make it
//!
//! ```text
//! plaintext  = port (2 bytes, big-endian) || HMAC-SHA1(mac key, those 2 bytes)[..10]
//! keystream  = AES-128-ECB(cipher key, 0u32 || 0u32 || 0u32 || counter as big-endian u32)[..12]
//! knock      = plaintext XOR keystream          (12 bytes, unpacked "!HIIH")
//! IP ID = knock[0..2]   TCP seq = knock[2..6]   TCP ack = knock[6..10]   TCP window = knock[10..12]
//! ```
//!
//! The client uses its stored counter and stores counter + 1 before sending. The server tries
//! its stored counter and the `error_window - 1` after it (knockknock: `for x in
//! range(windowSize)`), compares the MAC, and on a match stores the matched counter + 1. Keys are
//! 16 bytes each (knockknock-genprofile reads 16 random bytes for each), the counter is 32 bits
//! (`struct.pack('!I')`).
//!
//! What the format does not protect, and the server must: the MAC covers only the port, not the
//! source address (a knock seen on the wire and not yet used can be sent first from elsewhere),
//! and the counter is all that stops a replay (the server keeps it). The ack field of a SYN is
//! normally 0, so a knockknock SYN is recognisable to anyone who looks.

use std::net::Ipv4Addr;

use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Bytes in each of a profile's keys (knockknock-genprofile: `random.read(16)`).
pub const KEY_LEN: usize = 16;
/// Bytes a knock carries: ID (2) + sequence (4) + acknowledgement (4) + window (2).
pub const KNOCK_LEN: usize = 12;
/// Bytes of the truncated HMAC-SHA1.
pub const MAC_LEN: usize = 10;
/// knockknock's default `error_window` (DaemonConfiguration.py).
pub const DEFAULT_WINDOW: u32 = 20;
/// knockknock's default `delay`, seconds (DaemonConfiguration.py).
pub const DEFAULT_DELAY: u64 = 15;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_FIN: u8 = 0x01;
const TCP_ACK: u8 = 0x10;
const PROTO_TCP: u8 = 6;

/// Why a key file's text is not a knockknock key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("a knockknock key is one line of base64 (as knockknock-genprofile writes it); this is not base64")]
    NotBase64,
    #[error("a knockknock key is {KEY_LEN} bytes; this one is {0} bytes")]
    WrongLength(usize),
}

/// One of a profile's two keys: zeroized on drop, never printed.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// The first line of a key file (knockknock reads `readline()` and base64-decodes it);
    /// surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<Key, KeyTextError> {
        let line = text.lines().next().unwrap_or("").trim();
        if line.len() > 64 {
            return Err(KeyTextError::WrongLength(line.len() / 4 * 3));
        }
        let mut buf = Zeroizing::new([0u8; 48]);
        let n = STANDARD
            .decode_slice(line, &mut buf[..])
            .map_err(|_| KeyTextError::NotBase64)?;
        if n != KEY_LEN {
            return Err(KeyTextError::WrongLength(n));
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&buf[..KEY_LEN]);
        Ok(Key(key))
    }

    /// The key as knockknock writes it (`binascii.b2a_base64`): base64 and a newline.
    pub fn to_base64_line(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(STANDARD.encode(self.0));
        s.push('\n');
        s
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("knockknock::Key(..)")
    }
}

/// A profile's key pair.
#[derive(Clone, Debug)]
pub struct Keys {
    pub cipher: Key,
    pub mac: Key,
}

impl Keys {
    /// The 12 keystream bytes for `counter`.
    fn keystream(&self, counter: u32) -> Zeroizing<[u8; KNOCK_LEN]> {
        let aes = Aes128::new(&Array::from(self.cipher.0));
        let mut block = Array::from([0u8; 16]);
        block[12..16].copy_from_slice(&counter.to_be_bytes());
        aes.encrypt_block(&mut block);
        let mut out = Zeroizing::new([0u8; KNOCK_LEN]);
        out.copy_from_slice(&block[..KNOCK_LEN]);
        block.as_mut_slice().zeroize();
        out
    }

    /// HMAC-SHA1(mac key, port as 2 big-endian bytes), truncated to 10 bytes.
    fn mac(&self, port: [u8; 2]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.mac.0)
            .expect("HMAC takes a key of any length");
        m.update(&port);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Client: the knock asking for `port` with `counter` (the client's stored counter, which it
    /// must then store + 1).
    pub fn encrypt(&self, port: u16, counter: u32) -> Knock {
        let mut plain = [0u8; KNOCK_LEN];
        plain[..2].copy_from_slice(&port.to_be_bytes());
        plain[2..].copy_from_slice(&self.mac(port.to_be_bytes()));
        let ks = self.keystream(counter);
        let mut out = [0u8; KNOCK_LEN];
        for (o, (p, k)) in out.iter_mut().zip(plain.iter().zip(ks.iter())) {
            *o = p ^ k;
        }
        Knock(out)
    }

    /// Server: whether `knock` was made with `counter`, and the port it asks for. The MAC is
    /// compared in constant time.
    pub fn decrypt_at(&self, knock: &Knock, counter: u32) -> Option<u16> {
        let ks = self.keystream(counter);
        let mut plain = Zeroizing::new([0u8; KNOCK_LEN]);
        for (p, (c, k)) in plain.iter_mut().zip(knock.0.iter().zip(ks.iter())) {
            *p = c ^ k;
        }
        let port = [plain[0], plain[1]];
        let want = self.mac(port);
        if bool::from(want.ct_eq(&plain[2..])) {
            Some(u16::from_be_bytes(port))
        } else {
            None
        }
    }

    /// Server: tries `next` and the `window - 1` counters after it, as knockknock's daemon
    /// does. Returns the counter that matched and the port asked for; the server then stores
    /// the counter + 1. Counters past `u32::MAX` are not tried (knockknock cannot make them).
    pub fn decrypt(&self, knock: &Knock, next: u32, window: u32) -> Option<Opened> {
        (0..window)
            .map_while(|x| next.checked_add(x))
            .find_map(|counter| {
                self.decrypt_at(knock, counter)
                    .map(|port| Opened { counter, port })
            })
    }
}

/// A knock that decrypted and authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The counter it was made with: the server's next one is this + 1.
    pub counter: u32,
    /// The TCP port it asks to open.
    pub port: u16,
}

/// The 12 bytes of a knock, in wire order (ID, seq, ack, window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Knock(pub [u8; KNOCK_LEN]);

impl Knock {
    /// From the header fields (knockknock's daemon: `pack('!HIIH', ID, SEQ, ACK, WINDOW)`).
    pub fn from_fields(id: u16, seq: u32, ack: u32, window: u16) -> Knock {
        let mut b = [0u8; KNOCK_LEN];
        b[0..2].copy_from_slice(&id.to_be_bytes());
        b[2..6].copy_from_slice(&seq.to_be_bytes());
        b[6..10].copy_from_slice(&ack.to_be_bytes());
        b[10..12].copy_from_slice(&window.to_be_bytes());
        Knock(b)
    }

    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes([self.0[2], self.0[3], self.0[4], self.0[5]])
    }
    pub fn ack(&self) -> u32 {
        u32::from_be_bytes([self.0[6], self.0[7], self.0[8], self.0[9]])
    }
    pub fn window(&self) -> u16 {
        u16::from_be_bytes([self.0[10], self.0[11]])
    }
}

/// A knockknock SYN as the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub knock: Knock,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Reads a knockknock SYN from its IPv4 header on (an NFLOG payload): SYN set, ACK, RST and FIN
/// clear (the ack *field* may be anything: it carries 4 bytes of the knock), not a fragment.
/// `None` for anything else, IPv6 included (knockknock is IPv4 only). Never panics.
pub fn parse(l3: &[u8]) -> Option<Seen> {
    if l3.first()? >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(l3[0] & 0x0F) * 4;
    let total = usize::from(be16(l3, 2)?);
    if ihl < 20 || total < ihl {
        return None;
    }
    let p = l3.get(..total)?;
    if be16(p, 6)? & 0x3FFF != 0 || *p.get(9)? != PROTO_TCP {
        return None;
    }
    let seg = p.get(ihl..)?;
    let doff = usize::from(*seg.get(12)? >> 4) * 4;
    if doff < 20 || seg.len() < doff {
        return None;
    }
    let flags = *seg.get(13)?;
    if flags & TCP_SYN == 0 || flags & (TCP_ACK | TCP_RST | TCP_FIN) != 0 {
        return None;
    }
    Some(Seen {
        src: Ipv4Addr::from(be32(p, 12)?),
        dst: Ipv4Addr::from(be32(p, 16)?),
        src_port: be16(seg, 0)?,
        dst_port: be16(seg, 2)?,
        knock: Knock::from_fields(be16(p, 4)?, be32(seg, 4)?, be32(seg, 8)?, be16(seg, 14)?),
    })
}

/// The SYN knockknock's client has hping3 send (`hping3 -S -c 1 -p PORT -N id -w win -M seq -L
/// ack`): IPv4 without options, TOS 0, no DF, TTL `ttl`; TCP without options, SYN alone,
/// urgent pointer 0; checksums filled. From its IP header on, for a raw socket.
pub fn build(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    knock: &Knock,
    ttl: u8,
) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&knock.seq().to_be_bytes());
    tcp[8..12].copy_from_slice(&knock.ack().to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = TCP_SYN;
    tcp[14..16].copy_from_slice(&knock.window().to_be_bytes());
    let mut packet = Vec::with_capacity(40);
    packet.extend_from_slice(&[0x45, 0, 0, 40]);
    packet.extend_from_slice(&knock.id().to_be_bytes());
    packet.extend_from_slice(&[0, 0, ttl, PROTO_TCP, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let ip_sum = checksum(0, &packet);
    packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let pseudo = sum16(sum16(0, &src.octets()), &dst.octets()) + u32::from(PROTO_TCP) + 20;
    let tcp_sum = checksum(pseudo, &tcp);
    tcp[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
    packet.extend_from_slice(&tcp);
    packet
}

fn sum16(mut acc: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        acc += hi | lo;
    }
    acc
}

fn checksum(acc: u32, bytes: &[u8]) -> u16 {
    let mut acc = sum16(acc, bytes);
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            cipher: Key::from_bytes(*b"0123456789abcdef"),
            mac: Key::from_bytes(*b"fedcba9876543210"),
        }
    }

    #[test]
    fn a_knock_opens_with_its_counter_only() {
        let k = keys();
        let knock = k.encrypt(22, 7);
        assert_eq!(k.decrypt_at(&knock, 7), Some(22));
        assert_eq!(k.decrypt_at(&knock, 8), None);
        assert_eq!(
            k.decrypt(&knock, 0, 20),
            Some(Opened {
                counter: 7,
                port: 22
            })
        );
        // the window is counter .. counter + window - 1
        assert_eq!(k.decrypt(&knock, 0, 7), None);
        assert_eq!(k.decrypt(&knock, 0, 8).map(|o| o.counter), Some(7));
        assert_eq!(k.decrypt(&knock, 8, 20), None);
        // no overflow at the end of the counter space
        let last = k.encrypt(443, u32::MAX);
        assert_eq!(
            k.decrypt(&last, u32::MAX - 1, 20).map(|o| o.port),
            Some(443)
        );
    }

    #[test]
    fn other_keys_do_not_open() {
        let k = keys();
        let other = Keys {
            cipher: Key::from_bytes(*b"0123456789abcdef"),
            mac: Key::from_bytes(*b"xxxxxxxxxxxxxxxx"),
        };
        assert_eq!(other.decrypt(&k.encrypt(22, 0), 0, 20), None);
    }

    #[test]
    fn built_syns_parse_back() {
        let knock = keys().encrypt(22, 3);
        let src = Ipv4Addr::new(10, 200, 1, 2);
        let dst = Ipv4Addr::new(10, 200, 1, 1);
        let p = build(src, dst, 40000, 8888, &knock, 64);
        let seen = parse(&p).expect("parses");
        assert_eq!(
            seen,
            Seen {
                src,
                dst,
                src_port: 40000,
                dst_port: 8888,
                knock
            }
        );
        assert_eq!(checksum(0, &p[..20]), 0, "IP checksum");
        // truncations, an ACK, IPv6: not a knock
        for n in 0..p.len() {
            assert!(parse(&p[..n]).is_none(), "{n}");
        }
        let mut ack = p.clone();
        ack[20 + 13] |= TCP_ACK;
        assert!(parse(&ack).is_none());
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert!(parse(&v6).is_none());
    }

    #[test]
    fn key_files_read_as_knockknock_writes_them() {
        let k = Key::from_bytes([7u8; 16]);
        let line = k.to_base64_line();
        assert_eq!(line.as_str(), "BwcHBwcHBwcHBwcHBwcHBw==\n");
        assert_eq!(Key::from_base64(&line).map(|k| k.0), Ok([7u8; 16]));
        assert_eq!(
            Key::from_base64("AAAA\n").map(|k| k.0),
            Err(KeyTextError::WrongLength(3))
        );
        assert_eq!(
            Key::from_base64("!!\n").map(|k| k.0),
            Err(KeyTextError::NotBase64)
        );
        assert_eq!(format!("{k:?}"), "knockknock::Key(..)");
    }
}
