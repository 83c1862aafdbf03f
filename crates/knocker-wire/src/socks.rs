//! SOCKS5 (RFC 1928) as `knocker proxy` speaks it: the client's greeting (method negotiation)
//! and its request, parsed from bytes a local program sent, and the server's answers. Only what
//! the proxy serves: no authentication (method 0), the CONNECT command, IPv4, IPv6 and domain
//! name addresses. Everything is sans-IO: a parser is given what has arrived so far and says
//! either what it found and how many bytes that took, or how many bytes it needs in all
//! ([`Parsed::Need`]), so that the caller reads exactly that much and never past the request
//! (a client may send its first data right behind it).
//!
//! The input is hostile: every length is checked before it is used, a request is at most
//! [`MAX_REQUEST`] bytes, and nothing here panics.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte of every SOCKS5 message.
pub const VERSION: u8 = 5;
/// The method "no authentication required".
pub const NO_AUTH: u8 = 0x00;
/// The method byte that says "none of the methods offered is acceptable".
pub const NO_ACCEPTABLE: u8 = 0xff;
/// The longest greeting: version, count, 255 methods.
pub const MAX_GREETING: usize = 2 + 255;
/// The longest request: version, command, reserved, address type, a 255-byte name with its
/// length byte, the port.
pub const MAX_REQUEST: usize = 4 + 1 + 255 + 2;

const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;

/// What a parser made of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The message, and how many bytes of the input it took.
    Done(T, usize),
    /// Not complete: the message needs at least this many bytes in all.
    Need(usize),
}

/// The client's greeting: whether it offers "no authentication".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub no_auth: bool,
}

/// Where a CONNECT request asks to go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An address (ATYP 1 or 4).
    Addr(SocketAddr),
    /// A name and port (ATYP 3): the client left resolving to the proxy (`curl
    /// --socks5-hostname`, a browser's "proxy DNS"). The name is checked: 1 to 255 bytes of
    /// letters, digits, `-`, `.`, `_` and `:` (an address written out).
    Name(String, u16),
}

impl Target {
    /// The host as a profile would name it: the name, or the address written out.
    pub fn host(&self) -> String {
        match self {
            Target::Addr(addr) => addr.ip().to_string(),
            Target::Name(name, _) => name.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Target::Addr(addr) => addr.port(),
            Target::Name(_, port) => *port,
        }
    }
}

/// Shown as `host:port` (`[v6]:port` for IPv6 addresses).
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// The reply codes of RFC 1928, section 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

/// Why a greeting or request was refused. [`RequestError::reply`] is the reply code to send
/// before closing the connection (a greeting error gets none: the version is wrong, or the
/// method answer says "none acceptable").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("not SOCKS version 5 (version byte {0})")]
    Version(u8),
    #[error("a greeting that offers no method")]
    NoMethods,
    #[error("command {0} is not supported: only CONNECT (1)")]
    Command(u8),
    #[error("reserved byte is {0}, not 0")]
    Reserved(u8),
    #[error("address type {0} is not supported: use 1 (IPv4), 3 (a name) or 4 (IPv6)")]
    AddressType(u8),
    #[error("an empty host name")]
    EmptyName,
    #[error("the host name has a byte that no host name has (0x{0:02x})")]
    BadName(u8),
    #[error("port 0")]
    PortZero,
}

impl RequestError {
    /// The reply this refusal gets.
    pub fn reply(&self) -> Reply {
        match self {
            RequestError::Command(_) => Reply::CommandNotSupported,
            RequestError::AddressType(_) => Reply::AddressTypeNotSupported,
            RequestError::Version(_)
            | RequestError::NoMethods
            | RequestError::Reserved(_)
            | RequestError::EmptyName
            | RequestError::BadName(_)
            | RequestError::PortZero => Reply::GeneralFailure,
        }
    }
}

/// Parses the greeting: `05 NMETHODS METHODS...`.
pub fn parse_greeting(buf: &[u8]) -> Result<Parsed<Greeting>, RequestError> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Need(2));
    };
    if version != VERSION {
        return Err(RequestError::Version(version));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(Parsed::Need(2));
    };
    if count == 0 {
        return Err(RequestError::NoMethods);
    }
    let len = 2 + usize::from(count);
    match buf.get(2..len) {
        Some(methods) => Ok(Parsed::Done(
            Greeting {
                no_auth: methods.contains(&NO_AUTH),
            },
            len,
        )),
        None => Ok(Parsed::Need(len)),
    }
}

/// The answer to a greeting: the method chosen, or "none acceptable".
pub fn method_reply(greeting: &Greeting) -> [u8; 2] {
    [
        VERSION,
        if greeting.no_auth {
            NO_AUTH
        } else {
            NO_ACCEPTABLE
        },
    ]
}

/// Parses a request: `05 CMD 00 ATYP DST.ADDR DST.PORT`. Version, command, reserved byte and
/// address type are checked as soon as they have arrived, so that a bad request is refused
/// without waiting for the rest of it.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<Target>, RequestError> {
    let head = match buf.get(..4) {
        Some(head) => head,
        None => {
            check_head(buf)?;
            return Ok(Parsed::Need(4));
        }
    };
    check_head(head)?;
    let (addr_len, start) = match head[3] {
        ATYP_V4 => (4, 4),
        ATYP_V6 => (16, 4),
        ATYP_DOMAIN => match buf.get(4) {
            Some(0) => return Err(RequestError::EmptyName),
            Some(&n) => (usize::from(n), 5),
            None => return Ok(Parsed::Need(5)),
        },
        other => return Err(RequestError::AddressType(other)),
    };
    let len = start + addr_len + 2;
    let Some(body) = buf.get(start..len) else {
        return Ok(Parsed::Need(len));
    };
    let (addr, port) = body.split_at(addr_len);
    let port = u16::from_be_bytes([port[0], port[1]]);
    if port == 0 {
        return Err(RequestError::PortZero);
    }
    let target = match head[3] {
        ATYP_V4 => {
            let octets: [u8; 4] = addr.try_into().map_err(|_| RequestError::AddressType(1))?;
            Target::Addr(SocketAddr::new(Ipv4Addr::from(octets).into(), port))
        }
        ATYP_V6 => {
            let octets: [u8; 16] = addr.try_into().map_err(|_| RequestError::AddressType(4))?;
            Target::Addr(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        _ => Target::Name(check_name(addr)?, port),
    };
    Ok(Parsed::Done(target, len))
}

/// The fixed bytes of a request, as far as they have arrived.
fn check_head(head: &[u8]) -> Result<(), RequestError> {
    if let Some(&v) = head.first() {
        if v != VERSION {
            return Err(RequestError::Version(v));
        }
    }
    if let Some(&cmd) = head.get(1) {
        if cmd != CMD_CONNECT {
            return Err(RequestError::Command(cmd));
        }
    }
    if let Some(&rsv) = head.get(2) {
        if rsv != 0 {
            return Err(RequestError::Reserved(rsv));
        }
    }
    Ok(())
}

/// A host name as resolvers and profiles take it: no spaces, controls, `%`, `/`, brackets or
/// anything else that could mean more than a name.
fn check_name(bytes: &[u8]) -> Result<String, RequestError> {
    if let Some(&bad) = bytes
        .iter()
        .find(|&&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')))
    {
        return Err(RequestError::BadName(bad));
    }
    // Every byte is ASCII, so this never fails.
    String::from_utf8(bytes.to_vec()).map_err(|_| RequestError::BadName(0x80))
}

/// The reply to a request: `05 REP 00 ATYP BND.ADDR BND.PORT`, with the address the proxy's
/// outgoing connection is bound to on success, and 0.0.0.0:0 otherwise (RFC 1928 leaves the
/// address of a failure unspecified).
pub fn reply(code: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or_else(|| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0));
    let mut out = vec![VERSION, code as u8, 0];
    match bound {
        SocketAddr::V4(a) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&a.ip().octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_offer_no_auth_or_do_not() {
        assert_eq!(parse_greeting(&[]), Ok(Parsed::Need(2)));
        assert_eq!(parse_greeting(&[5]), Ok(Parsed::Need(2)));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(Parsed::Need(4)));
        let done = parse_greeting(&[5, 2, 2, 0, 0xaa]).expect("greeting");
        assert_eq!(done, Parsed::Done(Greeting { no_auth: true }, 4));
        let Parsed::Done(g, _) = parse_greeting(&[5, 1, 2]).expect("greeting") else {
            panic!("complete");
        };
        assert!(!g.no_auth);
        assert_eq!(method_reply(&g), [5, 0xff]);
        assert_eq!(method_reply(&Greeting { no_auth: true }), [5, 0]);
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(RequestError::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(RequestError::NoMethods));
    }

    #[test]
    fn requests_of_each_address_type() {
        let v4 = [5, 1, 0, 1, 10, 200, 1, 1, 0, 80];
        assert_eq!(
            parse_request(&v4),
            Ok(Parsed::Done(
                Target::Addr("10.200.1.1:80".parse().expect("addr")),
                10
            ))
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&"fd00:200:1::1".parse::<Ipv6Addr>().expect("v6").octets());
        v6.extend_from_slice(&[0x1f, 0x90, 0xee]);
        let Parsed::Done(t, used) = parse_request(&v6).expect("v6") else {
            panic!("complete");
        };
        assert_eq!((t.to_string(), used), ("[fd00:200:1::1]:8080".into(), 22));
        assert_eq!(t.host(), "fd00:200:1::1");
        let mut name = vec![5, 1, 0, 3, 10];
        name.extend_from_slice(b"lab.exampl");
        name.extend_from_slice(&[0, 22]);
        let Parsed::Done(t, used) = parse_request(&name).expect("name") else {
            panic!("complete");
        };
        assert_eq!((t.host(), t.port(), used), ("lab.exampl".into(), 22, 17));
        assert_eq!(t.to_string(), "lab.exampl:22");
    }

    #[test]
    fn a_partial_request_says_how_much_it_needs() {
        let full = [5, 1, 0, 3, 3, b'a', b'.', b'b', 0, 22];
        let mut needs = Vec::new();
        for n in 0..full.len() {
            match parse_request(&full[..n]).expect("partial") {
                Parsed::Need(k) => {
                    assert!(k > n && k <= full.len(), "{n}: {k}");
                    needs.push(k);
                }
                Parsed::Done(..) => panic!("{n} bytes are not a request"),
            }
        }
        assert_eq!(needs, [4, 4, 4, 4, 5, 10, 10, 10, 10, 10]);
        assert!(matches!(parse_request(&full), Ok(Parsed::Done(_, 10))));
    }

    #[test]
    fn bad_requests_are_refused_with_their_reply_code() {
        let cases: [(&[u8], RequestError, Reply); 8] = [
            (&[4], RequestError::Version(4), Reply::GeneralFailure),
            (
                &[5, 2],
                RequestError::Command(2),
                Reply::CommandNotSupported,
            ),
            (
                &[5, 3, 0, 1],
                RequestError::Command(3),
                Reply::CommandNotSupported,
            ),
            (&[5, 1, 1], RequestError::Reserved(1), Reply::GeneralFailure),
            (
                &[5, 1, 0, 2, 0],
                RequestError::AddressType(2),
                Reply::AddressTypeNotSupported,
            ),
            (
                &[5, 1, 0, 3, 0],
                RequestError::EmptyName,
                Reply::GeneralFailure,
            ),
            (
                &[5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 1],
                RequestError::BadName(b' '),
                Reply::GeneralFailure,
            ),
            (
                &[5, 1, 0, 1, 1, 2, 3, 4, 0, 0],
                RequestError::PortZero,
                Reply::GeneralFailure,
            ),
        ];
        for (bytes, error, code) in cases {
            let got = parse_request(bytes).expect_err("refused");
            assert_eq!((got.clone(), got.reply()), (error, code), "{bytes:?}");
        }
        for bad in [b'/', b'%', b'[', 0, 0x80, b'\n'] {
            let req = [5, 1, 0, 3, 1, bad, 0, 1];
            assert_eq!(parse_request(&req), Err(RequestError::BadName(bad)));
        }
    }

    #[test]
    fn the_longest_request_fits_the_bound() {
        let mut req = vec![5, 1, 0, 3, 255];
        req.extend(std::iter::repeat_n(b'a', 255));
        req.extend_from_slice(&[0, 80]);
        assert_eq!(req.len(), MAX_REQUEST);
        assert!(matches!(
            parse_request(&req),
            Ok(Parsed::Done(_, MAX_REQUEST))
        ));
        assert_eq!(parse_request(&req[..5]), Ok(Parsed::Need(MAX_REQUEST)));
    }

    #[test]
    fn replies_carry_the_bound_address() {
        assert_eq!(
            reply(
                Reply::Succeeded,
                Some("10.200.1.2:40000".parse().expect("addr"))
            ),
            [5, 0, 0, 1, 10, 200, 1, 2, 0x9c, 0x40]
        );
        assert_eq!(
            reply(Reply::NotAllowed, None),
            [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        let v6 = reply(Reply::Succeeded, Some("[fd00::2]:1".parse().expect("addr")));
        assert_eq!((v6.len(), v6[3], v6[21]), (22, 4, 1));
    }
}
