//! A reader of capture files, classic pcap (microsecond and nanosecond, either byte order) and
//! pcapng (section header, interface description, enhanced, simple and obsolete packet blocks;
//! every other block is skipped), for `knockerd replay`.
//!
//! Hand-written rather than a crate (ARCHITECTURE.md says why): the formats are small, and the
//! reader must be bounded on hostile files in a way the crates do not promise. It holds one
//! record at a time in a buffer of at most [`MAX_RECORD_BYTES`] plus a block's framing; a record
//! that claims more (or more than its file's snap length) is an error for that record, which is
//! skipped by reading past it, never by allocating it. Interfaces are bounded too
//! ([`MAX_INTERFACES`]). Errors in the file's structure (a header that is not pcap, a block
//! whose length is not a block's, a file cut short) end the reading with an error.

use std::io::{self, Read};

/// The largest record read: an IP packet's 64 KiB and a link-layer header.
pub const MAX_RECORD_BYTES: u32 = (64 << 10) + 64;
/// The most pcapng interfaces a section may describe.
pub const MAX_INTERFACES: usize = 1024;
/// The largest pcapng block read whole (a packet block with its options, or an interface
/// description); a larger packet block is skipped as too large, any other larger block skipped.
const MAX_BLOCK_BYTES: u32 = MAX_RECORD_BYTES + 4096;

/// Why a capture file could not be read, or one record of it.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot read: {0}")]
    Io(#[source] io::Error),
    #[error("not a pcap or pcapng file (magic number {0:#010x})")]
    NotPcap(u32),
    #[error("the file ends in the middle of a {0}")]
    Truncated(&'static str),
    #[error("a pcapng block of {0} bytes (a block is a multiple of 4 bytes, at least 12)")]
    BadBlockLength(u32),
    #[error("a pcapng block's trailing length {1} differs from its leading length {0}")]
    BlockLengthMismatch(u32, u32),
    #[error("a pcapng section header with byte-order magic {0:#010x}")]
    BadByteOrder(u32),
    #[error("a pcapng packet block before any section header")]
    NoSection,
    #[error("more than {MAX_INTERFACES} interfaces in one pcapng section")]
    TooManyInterfaces,
    #[error("a pcapng interface description of {0} bytes (at most {MAX_BLOCK_BYTES})")]
    HugeInterface(u32),
    #[error("a pcapng interface timestamp resolution {0:#04x} knockerd cannot convert")]
    BadResolution(u8),
    /// An error for one record: the reader goes on with the next.
    #[error("{0}")]
    Record(#[from] RecordError),
}

/// Why one record was skipped (reading goes on).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("a record of {len} bytes, larger than {limit} (the snap length or knockerd's {MAX_RECORD_BYTES}): skipped")]
    TooLarge { len: u32, limit: u32 },
    #[error("a packet block's captured length {0} exceeds its block")]
    CapturedLength(u32),
    #[error("a packet block for interface {0}, which the section does not describe")]
    NoInterface(u32),
    #[error("link type {0} (knockerd reads Ethernet, Linux cooked SLL and SLL2, and raw IP)")]
    LinkType(u32),
}

/// One captured packet: when, on what kind of link, and its bytes (as far as captured).
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time since the Unix epoch.
    pub secs: u64,
    pub nanos: u32,
    pub link: super::frame::LinkType,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second.
    units: u64,
}

enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        snaplen: u32,
        linktype: u32,
    },
    Pcapng {
        big: bool,
        interfaces: Vec<Interface>,
    },
}

/// Reads records one at a time from a pcap or pcapng stream.
pub struct PcapReader<R> {
    inner: R,
    format: Format,
    buf: Vec<u8>,
    done: bool,
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let mut w = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        w.copy_from_slice(s);
    }
    if big {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    }
}

/// Fills `buf` whole; `Ok(false)` at a clean end of input before the first byte.
fn read_full(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<bool, PcapError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(PcapError::Truncated(what)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PcapError::Io(e)),
        }
    }
    Ok(true)
}

/// Reads and throws away `n` bytes, through a small buffer.
fn skip(r: &mut impl Read, n: u64, what: &'static str) -> Result<(), PcapError> {
    let copied = io::copy(&mut r.take(n), &mut io::sink()).map_err(PcapError::Io)?;
    if copied < n {
        return Err(PcapError::Truncated(what));
    }
    Ok(())
}

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;

impl<R: Read> PcapReader<R> {
    /// Reads the file's header (classic pcap) or first section header (pcapng).
    pub fn new(mut inner: R) -> Result<PcapReader<R>, PcapError> {
        let mut magic = [0u8; 4];
        if !read_full(&mut inner, &mut magic, "file header")? {
            return Err(PcapError::Truncated("file header"));
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let mut reader = PcapReader {
            inner,
            format: Format::Pcapng {
                big: false,
                interfaces: Vec::new(),
            },
            buf: Vec::new(),
            done: false,
        };
        if le == PCAPNG_SHB {
            reader.section()?;
            return Ok(reader);
        }
        let (big, nanos) = match (le, be) {
            (PCAP_MAGIC_US, _) => (false, false),
            (PCAP_MAGIC_NS, _) => (false, true),
            (_, PCAP_MAGIC_US) => (true, false),
            (_, PCAP_MAGIC_NS) => (true, true),
            _ => return Err(PcapError::NotPcap(be)),
        };
        let mut rest = [0u8; 20];
        if !read_full(&mut reader.inner, &mut rest, "file header")? {
            return Err(PcapError::Truncated("file header"));
        }
        reader.format = Format::Pcap {
            big,
            nanos,
            snaplen: u32_at(&rest, 12, big),
            // the upper bits carry the FCS length, not the link type
            linktype: u32_at(&rest, 16, big) & 0x0fff_ffff,
        };
        Ok(reader)
    }

    /// Reads a section header block whose type was just read.
    fn section(&mut self) -> Result<(), PcapError> {
        let mut len = [0u8; 4];
        if !read_full(&mut self.inner, &mut len, "section header")? {
            return Err(PcapError::Truncated("section header"));
        }
        self.section_after(len)
    }

    /// The next record; `None` at the end of the file, or after an error in its structure. An
    /// `Err(PcapError::Record(_))` is for that record only: call again for the next.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Record<'_>, PcapError>> {
        if self.done {
            return None;
        }
        let r = match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
        };
        match r {
            Ok(None) => {
                self.done = true;
                None
            }
            Ok(Some((secs, nanos, linktype, len))) => {
                let data = &self.buf[..len];
                Some(match super::frame::LinkType::from_pcap(linktype) {
                    Some(link) => Ok(Record {
                        secs,
                        nanos,
                        link,
                        data,
                    }),
                    None => Err(RecordError::LinkType(linktype).into()),
                })
            }
            Err(e @ PcapError::Record(_)) => Some(Err(e)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// (seconds, nanoseconds, link type, length in `buf`) of the next classic pcap record.
    fn next_pcap(&mut self) -> Result<Option<(u64, u32, u32, usize)>, PcapError> {
        let Format::Pcap {
            big,
            nanos,
            snaplen,
            linktype,
        } = self.format
        else {
            return Ok(None);
        };
        let mut head = [0u8; 16];
        if !read_full(&mut self.inner, &mut head, "record header")? {
            return Ok(None);
        }
        let secs = u64::from(u32_at(&head, 0, big));
        let frac = u32_at(&head, 4, big);
        let incl = u32_at(&head, 8, big);
        let limit = match snaplen {
            0 => MAX_RECORD_BYTES,
            s => s.min(MAX_RECORD_BYTES),
        };
        if incl > limit {
            skip(&mut self.inner, u64::from(incl), "record")?;
            return Err(RecordError::TooLarge { len: incl, limit }.into());
        }
        let len = incl as usize;
        self.buf.resize(len, 0);
        if !read_full(&mut self.inner, &mut self.buf[..len], "record")? && len > 0 {
            return Err(PcapError::Truncated("record"));
        }
        // a fraction past the second is the writer's bug: clamp it, do not overflow
        let nanos = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        }
        .min(999_999_999);
        Ok(Some((secs, nanos, linktype, len)))
    }

    /// The next packet of a pcapng file, reading the blocks before it.
    fn next_pcapng(&mut self) -> Result<Option<(u64, u32, u32, usize)>, PcapError> {
        loop {
            let mut head = [0u8; 8];
            if !read_full(&mut self.inner, &mut head, "block header")? {
                return Ok(None);
            }
            if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == PCAPNG_SHB {
                // a new section: its own byte order and interfaces
                self.section_after([head[4], head[5], head[6], head[7]])?;
                continue;
            }
            let Format::Pcapng { big, .. } = self.format else {
                return Err(PcapError::NoSection);
            };
            let ty = u32_at(&head, 0, big);
            let len = u32_at(&head, 4, big);
            if len < 12 || len % 4 != 0 {
                return Err(PcapError::BadBlockLength(len));
            }
            let body_len = len - 12;
            let is_packet = matches!(ty, PCAPNG_EPB | PCAPNG_SPB | PCAPNG_PB);
            if len > MAX_BLOCK_BYTES || !(is_packet || ty == PCAPNG_IDB) {
                skip(&mut self.inner, u64::from(body_len), "block")?;
                self.trailer(len, big)?;
                if is_packet {
                    return Err(RecordError::TooLarge {
                        len,
                        limit: MAX_BLOCK_BYTES,
                    }
                    .into());
                }
                if ty == PCAPNG_IDB {
                    return Err(PcapError::HugeInterface(len));
                }
                continue;
            }
            let body_len = body_len as usize;
            self.buf.resize(body_len, 0);
            if !read_full(&mut self.inner, &mut self.buf[..body_len], "block")? && body_len > 0 {
                return Err(PcapError::Truncated("block"));
            }
            self.trailer(len, big)?;
            if ty == PCAPNG_IDB {
                self.interface(big)?;
                continue;
            }
            return self.packet(ty, big).map(Some);
        }
    }

    /// A section header block (the file's first or a later one) whose type and length were just
    /// read: its byte order, and a new set of interfaces.
    fn section_after(&mut self, len: [u8; 4]) -> Result<(), PcapError> {
        let mut bom = [0u8; 4];
        if !read_full(&mut self.inner, &mut bom, "section header")? {
            return Err(PcapError::Truncated("section header"));
        }
        let big = match u32::from_le_bytes(bom) {
            PCAPNG_BYTE_ORDER => false,
            m if m.swap_bytes() == PCAPNG_BYTE_ORDER => true,
            m => return Err(PcapError::BadByteOrder(m)),
        };
        let len = if big {
            u32::from_be_bytes(len)
        } else {
            u32::from_le_bytes(len)
        };
        if len < 28 || len % 4 != 0 {
            return Err(PcapError::BadBlockLength(len));
        }
        skip(&mut self.inner, u64::from(len) - 16, "section header")?;
        self.trailer(len, big)?;
        self.format = Format::Pcapng {
            big,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn trailer(&mut self, len: u32, big: bool) -> Result<(), PcapError> {
        let mut t = [0u8; 4];
        if !read_full(&mut self.inner, &mut t, "block")? {
            return Err(PcapError::Truncated("block"));
        }
        let end = u32_at(&t, 0, big);
        if end != len {
            return Err(PcapError::BlockLengthMismatch(len, end));
        }
        Ok(())
    }

    /// An interface description block's body, in `buf`.
    fn interface(&mut self, big: bool) -> Result<(), PcapError> {
        let body = &self.buf;
        let linktype = u32::from(u16_at(body, 0, big));
        let snaplen = u32_at(body, 4, big);
        let mut units: u64 = 1_000_000;
        // options: code (2), length (2), value padded to 4
        let mut at = 8;
        while at + 4 <= body.len() {
            let code = u16_at(body, at, big);
            let olen = usize::from(u16_at(body, at + 2, big));
            let value = body.get(at + 4..at + 4 + olen).unwrap_or(&[]);
            if code == 0 {
                break;
            }
            // if_tsresol: a power of ten, or of two when the top bit is set
            if code == 9 && olen == 1 {
                let r = value[0];
                units = if r & 0x80 == 0 {
                    10u64.checked_pow(u32::from(r))
                } else {
                    1u64.checked_shl(u32::from(r & 0x7f))
                }
                .filter(|u| *u > 0)
                .ok_or(PcapError::BadResolution(r))?;
            }
            at += 4 + olen.div_ceil(4) * 4;
        }
        let Format::Pcapng { interfaces, .. } = &mut self.format else {
            return Err(PcapError::NoSection);
        };
        if interfaces.len() >= MAX_INTERFACES {
            return Err(PcapError::TooManyInterfaces);
        }
        interfaces.push(Interface {
            linktype,
            snaplen,
            units,
        });
        Ok(())
    }

    /// A packet block's body, in `buf`: moves the packet's bytes to the front of `buf`.
    fn packet(&mut self, ty: u32, big: bool) -> Result<(u64, u32, u32, usize), PcapError> {
        let Format::Pcapng { interfaces, .. } = &self.format else {
            return Err(PcapError::NoSection);
        };
        let body = &self.buf;
        let (iface, ts, caplen, start) = match ty {
            PCAPNG_EPB => {
                let ts = (u64::from(u32_at(body, 4, big)) << 32) | u64::from(u32_at(body, 8, big));
                (u32_at(body, 0, big), ts, u32_at(body, 12, big), 20)
            }
            PCAPNG_PB => {
                let ts = (u64::from(u32_at(body, 4, big)) << 32) | u64::from(u32_at(body, 8, big));
                (
                    u32::from(u16_at(body, 0, big)),
                    ts,
                    u32_at(body, 12, big),
                    20,
                )
            }
            // a simple packet block has no timestamp and is on the first interface
            _ => {
                let orig = u32_at(body, 0, big);
                let snap = interfaces.first().map_or(0, |i| i.snaplen);
                let room = u32::try_from(body.len().saturating_sub(4)).unwrap_or(u32::MAX);
                let cap = if snap == 0 { orig } else { orig.min(snap) }.min(room);
                (0, 0, cap, 4)
            }
        };
        let Some(i) = usize::try_from(iface)
            .ok()
            .and_then(|i| interfaces.get(i))
            .copied()
        else {
            return Err(RecordError::NoInterface(iface).into());
        };
        let limit = match i.snaplen {
            0 => MAX_RECORD_BYTES,
            s => s.min(MAX_RECORD_BYTES),
        };
        if caplen > limit {
            return Err(RecordError::TooLarge { len: caplen, limit }.into());
        }
        let len = caplen as usize;
        if body.len() < start + len {
            return Err(RecordError::CapturedLength(caplen).into());
        }
        let secs = ts / i.units;
        let nanos = u32::try_from(u128::from(ts % i.units) * 1_000_000_000 / u128::from(i.units))
            .unwrap_or(0);
        self.buf.copy_within(start..start + len, 0);
        Ok((secs, nanos, i.linktype, len))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::frame::LinkType;

    /// A classic pcap file (little-endian, microseconds) of raw IP records.
    pub(crate) fn pcap(linktype: u32, snaplen: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MAGIC_US.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&snaplen.to_le_bytes());
        f.extend_from_slice(&linktype.to_le_bytes());
        for (s, us, data) in records {
            f.extend_from_slice(&s.to_le_bytes());
            f.extend_from_slice(&us.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    fn block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut padded = body.to_vec();
        padded.resize(body.len().div_ceil(4) * 4, 0);
        let len = 12 + padded.len() as u32;
        let mut b = Vec::new();
        b.extend_from_slice(&w(ty));
        b.extend_from_slice(&w(len));
        b.extend_from_slice(&padded);
        b.extend_from_slice(&w(len));
        b
    }

    fn pcapng(big: bool, tsresol: Option<u8>, packets: &[(u64, &[u8])]) -> Vec<u8> {
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let h = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut shb = Vec::new();
        shb.extend_from_slice(&w(PCAPNG_BYTE_ORDER));
        shb.extend_from_slice(&h(1));
        shb.extend_from_slice(&h(0));
        shb.extend_from_slice(&[0xff; 8]);
        let mut f = block(big, PCAPNG_SHB, &shb);
        let mut idb = Vec::new();
        idb.extend_from_slice(&h(101));
        idb.extend_from_slice(&h(0));
        idb.extend_from_slice(&w(262144));
        if let Some(r) = tsresol {
            idb.extend_from_slice(&h(9));
            idb.extend_from_slice(&h(1));
            idb.extend_from_slice(&[r, 0, 0, 0]);
            idb.extend_from_slice(&[0; 4]);
        }
        f.extend(block(big, PCAPNG_IDB, &idb));
        // a block knockerd skips: name resolution
        f.extend(block(big, 4, &[0; 8]));
        for (ts, data) in packets {
            let mut epb = Vec::new();
            epb.extend_from_slice(&w(0));
            epb.extend_from_slice(&w((ts >> 32) as u32));
            epb.extend_from_slice(&w(*ts as u32));
            epb.extend_from_slice(&w(data.len() as u32));
            epb.extend_from_slice(&w(data.len() as u32));
            epb.extend_from_slice(data);
            f.extend(block(big, PCAPNG_EPB, &epb));
        }
        f
    }

    /// A record as the tests compare it: seconds, nanoseconds, link type, bytes.
    type Owned = (u64, u32, LinkType, Vec<u8>);

    fn all(file: &[u8]) -> Vec<Result<Owned, String>> {
        let mut r = match PcapReader::new(file) {
            Ok(r) => r,
            Err(e) => return vec![Err(e.to_string())],
        };
        let mut v = Vec::new();
        while let Some(x) = r.next() {
            v.push(
                x.map(|r| (r.secs, r.nanos, r.link, r.data.to_vec()))
                    .map_err(|e| e.to_string()),
            );
        }
        v
    }

    #[test]
    fn classic_pcap_records_with_their_time() {
        let f = pcap(113, 65535, &[(100, 250_000, b"abc"), (101, 0, b"")]);
        assert_eq!(
            all(&f),
            vec![
                Ok((100, 250_000_000, LinkType::LinuxSll, b"abc".to_vec())),
                Ok((101, 0, LinkType::LinuxSll, vec![]))
            ]
        );
        // big-endian, nanoseconds
        let mut be = Vec::new();
        be.extend_from_slice(&PCAP_MAGIC_NS.to_be_bytes());
        be.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        be.extend_from_slice(&65535u32.to_be_bytes());
        be.extend_from_slice(&1u32.to_be_bytes());
        be.extend_from_slice(&7u32.to_be_bytes());
        be.extend_from_slice(&123u32.to_be_bytes());
        be.extend_from_slice(&2u32.to_be_bytes());
        be.extend_from_slice(&2u32.to_be_bytes());
        be.extend_from_slice(b"hi");
        assert_eq!(
            all(&be),
            vec![Ok((7, 123, LinkType::Ethernet, b"hi".to_vec()))]
        );
    }

    #[test]
    fn a_record_too_large_is_skipped_not_allocated() {
        let big = vec![0u8; 70_000];
        let f = pcap(101, 262144, &[(1, 0, &big), (2, 0, b"next")]);
        let got = all(&f);
        assert_eq!(got.len(), 2);
        assert!(
            got[0].as_ref().is_err_and(|e| e.contains("70000 bytes")),
            "{got:?}"
        );
        assert_eq!(got[1], Ok((2, 0, LinkType::RawIp, b"next".to_vec())));
        // larger than the file's own snap length
        let f = pcap(101, 10, &[(1, 0, b"eleven byte"), (2, 0, b"ok")]);
        let got = all(&f);
        assert!(got[0].is_err() && got[1].is_ok(), "{got:?}");
        // a header that claims 4 GiB in a short file: an error, no allocation
        let mut f = pcap(101, 0, &[]);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        let got = all(&f);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].as_ref().is_err_and(|e| e.contains("ends")),
            "{got:?}"
        );
    }

    #[test]
    fn cut_short_files_end_with_an_error() {
        let f = pcap(1, 65535, &[(1, 0, b"abcdef")]);
        for cut in 0..f.len() {
            let got = all(&f[..cut]);
            if cut == 24 {
                assert!(got.is_empty(), "a header alone is an empty capture");
            } else {
                assert!(got.last().is_some_and(|r| r.is_err()), "cut {cut}: {got:?}");
            }
        }
        assert!(all(b"GIF89a and more").last().is_some_and(|r| r.is_err()));
    }

    #[test]
    fn pcapng_in_either_byte_order_and_resolution() {
        for big in [false, true] {
            let f = pcapng(big, None, &[(1_500_000, b"one"), (2_000_001, b"two!!")]);
            assert_eq!(
                all(&f),
                vec![
                    Ok((1, 500_000_000, LinkType::RawIp, b"one".to_vec())),
                    Ok((2, 1000, LinkType::RawIp, b"two!!".to_vec()))
                ]
            );
        }
        let f = pcapng(false, Some(9), &[(3_000_000_007, b"ns")]);
        assert_eq!(all(&f), vec![Ok((3, 7, LinkType::RawIp, b"ns".to_vec()))]);
        let f = pcapng(false, Some(0x80 | 10), &[(1024 * 5 + 512, b"p2")]);
        assert_eq!(
            all(&f),
            vec![Ok((5, 500_000_000, LinkType::RawIp, b"p2".to_vec()))]
        );
        let f = pcapng(false, Some(30), &[(1, b"x")]);
        assert!(all(&f)[0].as_ref().is_err_and(|e| e.contains("resolution")));
    }

    #[test]
    fn pcapng_structure_errors() {
        let good = pcapng(false, None, &[(1, b"abc")]);
        for cut in 0..good.len() {
            let got = all(&good[..cut]);
            // cut between blocks, the file is a shorter capture; anywhere else, an error
            if [28, 48, 68].contains(&cut) {
                assert!(got.is_empty(), "cut {cut}: {got:?}");
            } else {
                assert!(got.last().is_some_and(|r| r.is_err()), "cut {cut}: {got:?}");
            }
        }
        // a packet for an interface never described
        let mut f = pcapng(false, None, &[]);
        let mut epb = vec![0; 20];
        epb[0] = 3;
        f.extend(block(false, PCAPNG_EPB, &epb));
        assert!(all(&f)[0]
            .as_ref()
            .is_err_and(|e| e.contains("interface 3")));
        // a block whose length is not a block's
        let mut f = pcapng(false, None, &[]);
        f.extend_from_slice(&6u32.to_le_bytes());
        f.extend_from_slice(&13u32.to_le_bytes());
        assert!(all(&f)[0].as_ref().is_err_and(|e| e.contains("13 bytes")));
    }
}
