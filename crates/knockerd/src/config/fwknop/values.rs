//! access.conf's values as fwknopd 2.6.10 reads them: base64 keys, SOURCE and DESTINATION
//! address lists (glibc's `inet_aton()`), OPEN_PORTS and RESTRICT_PORTS, ACCESS_EXPIRE dates.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use knocker_engine::{Proto, Service};
use zeroize::Zeroizing;

use super::syntax::{c_int, c_strtol, is_c_space, trim_end_c, trim_start_c};
use super::{prefix_mask, Network};

/// The buffer each comma-separated list entry is copied into (an entry is at most 31 bytes).
const ACCESS_BUF_LEN: usize = 33;
/// `INET_ADDRSTRLEN` and the shortest dotted quad.
const MAX_IPV4_STR_LEN: usize = 16;
const MIN_IPV4_STR_LEN: usize = 7;

/// fwknopd's `is_base64()`: only letters, digits, `+`, `/` and `=`.
pub(super) fn is_base64(val: &[u8]) -> bool {
    val.iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// fwknop's `b64_decode()`: stops at the first `=`, each character after the first of a group
/// of four completes a byte (so a lone last character is ignored). Only called after
/// [`is_base64`] passed.
pub(super) fn b64_decode(val: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(val.len()));
    let mut acc: u32 = 0;
    for (i, &c) in val.iter().take_while(|&&c| c != b'=').enumerate() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        acc = (acc << 6) | u32::from(d);
        if i & 3 != 0 {
            out.push((acc >> (6 - 2 * (i & 3))) as u8);
        }
    }
    out
}

/// glibc's `inet_aton()`: one to four parts (`a`, `a.b`, `a.b.c`, `a.b.c.d`, the last part
/// filling the remaining bytes), each decimal, octal (leading `0`) or hex (`0x`); anything after
/// a whitespace character is ignored.
fn inet_aton(s: &[u8]) -> Option<u32> {
    let mut parts: Vec<u64> = Vec::with_capacity(3);
    let mut i = 0;
    let val = loop {
        if !s.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let (v, next) = strtoul_base0(s, i)?;
        if v > 0xffff_ffff {
            return None;
        }
        i = next;
        if s.get(i) == Some(&b'.') {
            if parts.len() > 2 || v > 0xff {
                return None;
            }
            parts.push(v);
            i += 1;
        } else {
            break v;
        }
    };
    if s.get(i).is_some_and(|c| !is_c_space(*c)) {
        return None;
    }
    let max = [0xffff_ffff_u64, 0xff_ffff, 0xffff, 0xff][parts.len()];
    if val > max {
        return None;
    }
    let mut addr = val as u32;
    for (k, p) in parts.iter().enumerate() {
        addr |= (*p as u32) << (24 - 8 * k);
    }
    Some(addr)
}

/// `strtoul(s + i, &end, 0)` for a string that starts with a digit: the value and the end.
fn strtoul_base0(s: &[u8], i: usize) -> Option<(u64, usize)> {
    let (radix, start) = match (s.get(i), s.get(i + 1), s.get(i + 2)) {
        (Some(b'0'), Some(b'x' | b'X'), Some(h)) if h.is_ascii_hexdigit() => (16, i + 2),
        (Some(b'0'), _, _) => (8, i),
        _ => (10, i),
    };
    let mut v: u64 = 0;
    let mut j = start;
    while let Some(d) = s.get(j).and_then(|c| char::from(*c).to_digit(radix)) {
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
        j += 1;
    }
    Some((v, j))
}

/// Why fwknopd refuses a SOURCE, DESTINATION, OPEN_PORTS or RESTRICT_PORTS list, and with it
/// the file. `entry` is the list entry as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ListError {
    /// An entry of 32 bytes or more.
    TooLong {
        entry: String,
    },
    /// 16 characters or more before the `/`.
    NotIpv4Net {
        entry: String,
    },
    /// A mask neither a prefix length nor a netmask; `space`: a prefix length and a space.
    BadMask {
        mask: String,
        entry: String,
        space: bool,
    },
    BadNetmask {
        mask: String,
        entry: String,
    },
    NoMask {
        entry: String,
    },
    /// A prefix length outside 1 to 32.
    BadPrefix {
        prefix: String,
        entry: String,
    },
    /// An address of 16 characters or more.
    TooLongAddress {
        entry: String,
    },
    /// Not what `inet_aton()` reads (IPv6, when it has a `:`).
    NotIpv4 {
        addr: String,
    },
    NotProtoPort {
        entry: String,
    },
    BadPort {
        entry: String,
    },
    BadProto {
        entry: String,
    },
    NoPortNumber {
        entry: String,
    },
    PortZero {
        entry: String,
    },
}

/// What fwknopd 2.6.10 says to IPv6 in an address list.
const ONLY_IPV4: &str =
    "fwknopd 2.6.10 reads only IPv4: for IPv6 sources use ANY here or knockerd's native format";

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::TooLong { entry } => write!(
                f,
                "the entry {entry:?} is longer than the {} characters fwknopd reads",
                ACCESS_BUF_LEN - 2
            ),
            ListError::NotIpv4Net { entry } => {
                write!(f, "{entry:?} is not an IPv4 address ({ONLY_IPV4})")
            }
            ListError::BadMask { mask, entry, space } => {
                let hint = if *space {
                    " (fwknopd allows no space after a prefix length in a list: write `10.0.0.0/8,` not `10.0.0.0/8 ,`)"
                } else {
                    ""
                };
                write!(f, "invalid mask {mask:?} in {entry:?}: give a prefix length (1 to 32) or a netmask (255.255.0.0){hint}")
            }
            ListError::BadNetmask { mask, entry } => {
                write!(f, "invalid netmask {mask:?} in {entry:?}")
            }
            ListError::NoMask { entry } => write!(f, "missing mask value in {entry:?}"),
            ListError::BadPrefix { prefix, entry } => write!(f, "invalid prefix length {prefix:?} in {entry:?}: fwknopd takes 1 to 32 (use ANY for everything)"),
            ListError::TooLongAddress { entry } => write!(f, "{entry:?} is not an IPv4 address (fwknopd 2.6.10 reads only IPv4 addresses and networks, at most 15 characters each)"),
            ListError::NotIpv4 { addr } => {
                write!(f, "{addr:?} is not an IPv4 address")?;
                if addr.contains(':') {
                    write!(f, " ({ONLY_IPV4})")?;
                }
                Ok(())
            }
            ListError::NotProtoPort { entry } => write!(
                f,
                "{entry:?} is not proto/port: write e.g. tcp/22 (fwknopd refuses it too)"
            ),
            ListError::BadPort { entry } => write!(
                f,
                "invalid port in {entry:?}: a port is 1 to 65535 (fwknopd refuses it too)"
            ),
            ListError::BadProto { entry } => write!(f, "invalid protocol in {entry:?}: tcp or udp, with no space before the / (fwknopd refuses it too)"),
            ListError::NoPortNumber { entry } => write!(f, "{entry:?} has no port number: fwknopd would silently read it as port 0, which no request names; write e.g. tcp/22"),
            ListError::PortZero { entry } => write!(
                f,
                "{entry:?}: port 0 is not a port a client can ask for; remove it"
            ),
        }
    }
}

/// One entry of SOURCE or DESTINATION, as fwknopd's `add_int_ent()` reads it.
enum Ent {
    Any,
    V4 { addr: u32, mask: u32 },
}

fn add_int_ent(ip: &[u8], warnings: &mut Vec<String>) -> Result<Ent, ListError> {
    let shown = String::from_utf8_lossy(ip);
    if ip.eq_ignore_ascii_case(b"ANY") {
        return Ok(Ent::Any);
    }
    let (ip_str, mask, need_shift) = match ip.iter().position(|&b| b == b'/') {
        Some(ndx) => {
            if ndx >= MAX_IPV4_STR_LEN {
                return Err(ListError::NotIpv4Net {
                    entry: shown.into_owned(),
                });
            }
            let m = &ip[ndx + 1..];
            if m.len() > 2 {
                if !(MIN_IPV4_STR_LEN..MAX_IPV4_STR_LEN).contains(&m.len()) {
                    let space =
                        m.first().is_some_and(u8::is_ascii_digit) && trim_end_c(m).len() <= 2;
                    return Err(ListError::BadMask {
                        mask: String::from_utf8_lossy(m).into_owned(),
                        entry: shown.into_owned(),
                        space,
                    });
                }
                let Some(mask) = inet_aton(m) else {
                    return Err(ListError::BadNetmask {
                        mask: String::from_utf8_lossy(m).into_owned(),
                        entry: shown.into_owned(),
                    });
                };
                (&ip[..ndx], mask, false)
            } else if m.is_empty() {
                return Err(ListError::NoMask {
                    entry: shown.into_owned(),
                });
            } else {
                let n = c_strtol(m);
                let len = c_int(n).unwrap_or(0);
                if !(1..=32).contains(&len) {
                    return Err(ListError::BadPrefix {
                        prefix: String::from_utf8_lossy(m).into_owned(),
                        entry: shown.into_owned(),
                    });
                }
                if !n.clean {
                    warnings.push(format!("fwknopd reads {shown:?} with the prefix length {len} and ignores the rest; so does knockerd"));
                }
                (&ip[..ndx], len as u32, true)
            }
        }
        None => {
            if ip.len() >= MAX_IPV4_STR_LEN {
                return Err(ListError::TooLongAddress {
                    entry: shown.into_owned(),
                });
            }
            (ip, 32, true)
        }
    };
    let Some(addr) = inet_aton(ip_str) else {
        return Err(ListError::NotIpv4 {
            addr: String::from_utf8_lossy(ip_str).into_owned(),
        });
    };
    let text = String::from_utf8_lossy(trim_end_c(ip_str));
    if text.parse::<Ipv4Addr>().ok().map(u32::from) != Some(addr) {
        warnings.push(format!(
            "fwknopd reads {text:?} as {} (inet_aton: leading zeros are octal, missing parts fill the last byte, text after a space is ignored); so does knockerd",
            Ipv4Addr::from(addr)
        ));
    }
    let mask = if mask == 32 {
        u32::MAX
    } else if need_shift && (1..32).contains(&mask) {
        u32::MAX << (32 - mask)
    } else {
        mask
    };
    Ok(Ent::V4 {
        addr: addr & mask,
        mask,
    })
}

/// fwknopd's list splitting (`expand_acc_int_list()`, `expand_acc_port_list()`): at each comma,
/// leading whitespace skipped; an entry of 32 bytes or more makes the whole list invalid.
fn split_list(text: &[u8]) -> Result<Vec<&[u8]>, ListError> {
    text.split(|&b| b == b',')
        .map(trim_start_c)
        .map(|e| {
            if e.len() + 1 >= ACCESS_BUF_LEN {
                Err(ListError::TooLong {
                    entry: String::from_utf8_lossy(e).into_owned(),
                })
            } else {
                Ok(e)
            }
        })
        .collect()
}

/// An address list, and the entries knockerd cannot express (a netmask that is not a prefix).
pub(super) fn addr_list(
    text: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(Vec<Network>, Vec<String>), ListError> {
    let mut out = Vec::new();
    let mut unsupported = Vec::new();
    for e in split_list(text)? {
        match add_int_ent(e, warnings)? {
            Ent::Any => out.push(Network::Any),
            Ent::V4 { addr, mask } => {
                let len = mask.count_ones();
                if mask != prefix_mask(len as u8) {
                    unsupported.push(format!("{:?} has the netmask {}, which is not a prefix: knockerd matches networks by prefix length; split it into prefixes", String::from_utf8_lossy(e), Ipv4Addr::from(mask)));
                    continue;
                }
                let s = Network::Net(IpAddr::V4(Ipv4Addr::from(addr)), len as u8);
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    Ok((out, unsupported))
}

/// A port list (OPEN_PORTS, RESTRICT_PORTS), as `parse_proto_and_port()` reads each entry.
pub(super) fn port_list(
    text: &[u8],
    var: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Service>, ListError> {
    let mut out: Vec<Service> = Vec::new();
    for e in split_list(text)? {
        let shown = String::from_utf8_lossy(e);
        let Some(ndx) = e.iter().position(|&b| b == b'/') else {
            return Err(ListError::NotProtoPort {
                entry: shown.into_owned(),
            });
        };
        let n = c_strtol(&e[ndx + 1..]);
        let port = c_int(n).unwrap_or(-1);
        if !(0..=65535).contains(&port) {
            return Err(ListError::BadPort {
                entry: shown.into_owned(),
            });
        }
        let proto = &e[..ndx];
        let proto = if proto.eq_ignore_ascii_case(b"tcp") {
            Proto::Tcp
        } else if proto.eq_ignore_ascii_case(b"udp") {
            Proto::Udp
        } else {
            return Err(ListError::BadProto {
                entry: shown.into_owned(),
            });
        };
        if !n.digits {
            return Err(ListError::NoPortNumber {
                entry: shown.into_owned(),
            });
        }
        if port == 0 {
            return Err(ListError::PortZero {
                entry: shown.into_owned(),
            });
        }
        let service = Service::new(proto, port as u16);
        if !n.clean {
            let hint = if e[ndx + 1..].contains(&b'-') {
                " (fwknopd has no port ranges)"
            } else {
                ""
            };
            warnings.push(format!(
                "{var}: fwknopd reads {shown:?} as {service} and ignores the rest{hint}; so does knockerd"
            ));
        }
        if out.contains(&service) {
            let why = if var == "OPEN_PORTS" {
                " (fwknopd counts matches, so a service listed twice lets a request for one unlisted service through; knockerd requires every requested service to be listed)"
            } else {
                ""
            };
            warnings.push(format!("{var}: {service} is listed twice{why}"));
        } else {
            out.push(service);
        }
    }
    Ok(out)
}

/// fwknopd's `add_acc_expire_time()`: `sscanf(val, "%2d/%2d/%4d")` (month, day, year), then
/// `mktime()` with the month and day normalized (13/45/2030 is 2031-02-14). knockerd takes
/// midnight UTC (fwknopd: local time). Returns the time and whether text followed the year.
pub(super) fn expire_date(val: &[u8]) -> Option<(i64, bool)> {
    let mut i = 0;
    let field = |width: usize, i: &mut usize| -> Option<i64> {
        while val.get(*i).is_some_and(|b| is_c_space(*b)) {
            *i += 1;
        }
        let start = *i;
        let mut neg = false;
        if matches!(val.get(*i), Some(b'+' | b'-')) {
            neg = val[*i] == b'-';
            *i += 1;
        }
        let digits_start = *i;
        while *i - start < width && val.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        if *i == digits_start {
            return None;
        }
        let v: i64 = std::str::from_utf8(&val[digits_start..*i])
            .ok()?
            .parse()
            .ok()?;
        Some(if neg { -v } else { v })
    };
    let mon = field(2, &mut i)?;
    (val.get(i) == Some(&b'/')).then_some(())?;
    i += 1;
    let mday = field(2, &mut i)?;
    (val.get(i) == Some(&b'/')).then_some(())?;
    i += 1;
    let year = field(4, &mut i)?;
    let trailing = !trim_end_c(&val[i..]).is_empty();
    let tm_mon = if mon > 0 { mon - 1 } else { mon };
    let tm_year = if year > 1900 {
        year - 1900
    } else if year < 100 {
        year + 100
    } else {
        year
    };
    let y = 1900 + tm_year + tm_mon.div_euclid(12);
    let m = tm_mon.rem_euclid(12) + 1;
    let days = days_from_civil(y, m) + (mday - 1);
    Some((days * 86_400, trailing))
}

/// Days from 1970-01-01 to the first of month `m` (1..=12) of year `y` (H. Hinnant).
fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) use crate::config::utc_date;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwknop_base64() {
        assert_eq!(b64_decode(b"YWJj").as_slice(), b"abc");
        assert_eq!(b64_decode(b"ZGVmZw").as_slice(), b"defg");
        assert_eq!(b64_decode(b"ZGVmZw==").as_slice(), b"defg");
        // a lone last character completes nothing; text after '=' is ignored
        assert_eq!(b64_decode(b"YWJjZ").as_slice(), b"abc");
        assert_eq!(b64_decode(b"YW=Jj").as_slice(), b"a");
        assert!(b64_decode(b"=").is_empty());
        assert!(is_base64(b"Ab+/9="));
        assert!(!is_base64(b"YWJj "));
        assert!(!is_base64(b"a!"));
    }

    #[test]
    fn glibc_inet_aton() {
        let a = |s: &str| inet_aton(s.as_bytes()).map(Ipv4Addr::from);
        assert_eq!(a("10.1.2.3"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(a("10.1.2"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(a("10.258"), Some(Ipv4Addr::new(10, 0, 1, 2)));
        assert_eq!(a("167772161"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a("0x0a000001"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
        assert_eq!(a("10.0.0.1 x"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a("10.0.0.1  "), Some(Ipv4Addr::new(10, 0, 0, 1)));
        for bad in [
            "",
            "x",
            "10.0.0.300",
            "1.2.3.4.5",
            "08.1.1.1",
            "1.2.3.4x",
            "0x",
            " 1.2.3.4",
            "1..2",
            "4294967296",
            "2001:db8::1",
        ] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_as_mktime_normalizes_them() {
        let d = |s: &str| expire_date(s.as_bytes()).map(|(t, _)| utc_date(t as u64));
        assert_eq!(d("12/31/2030").as_deref(), Some("2030-12-31 00:00:00 UTC"));
        assert_eq!(d("1/2/30").as_deref(), Some("2030-01-02 00:00:00 UTC"));
        assert_eq!(d("13/45/2030").as_deref(), Some("2031-02-14 00:00:00 UTC"));
        assert_eq!(d("02/29/2028").as_deref(), Some("2028-02-29 00:00:00 UTC"));
        assert_eq!(expire_date(b"12/31/20301").map(|x| x.1), Some(true));
        assert_eq!(d("2030-12-31"), None);
        assert_eq!(d("012/31/2030"), None);
        assert_eq!(days_from_civil(1970, 1), 0);
    }

    #[test]
    fn source_entries() {
        let mut w = Vec::new();
        let net = |s: &str, w: &mut Vec<String>| addr_list(s.as_bytes(), w).map(|(l, _)| l);
        assert_eq!(
            net("10.1.2.3/24, 192.168.0.1,ANY", &mut w),
            Ok(vec![
                Network::Net("10.1.2.0".parse().unwrap(), 24),
                Network::Net("192.168.0.1".parse().unwrap(), 32),
                Network::Any
            ])
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            net("1.2.3.4/255.255.0.0", &mut w),
            Ok(vec![Network::Net("1.2.0.0".parse().unwrap(), 16)])
        );
        assert_eq!(
            net("1.2.3.4/8 ", &mut w),
            Ok(vec![Network::Net("1.0.0.0".parse().unwrap(), 8)])
        );
        for bad in [
            "10.1.2.3/24 ,1.1.1.1",
            "1.2.3.4/33",
            "1.2.3.4/0",
            "1.2.3.4/",
            "ANY ,1.1.1.1",
            "1.1.1.1,",
            ",1.1.1.1",
            "2001:db8::1",
            "10.0.0.1 10.0.0.2",
        ] {
            assert!(net(bad, &mut w).is_err(), "{bad:?}");
        }
        let (_, unsupported) = addr_list(b"1.2.3.4/255.0.255.0", &mut w).unwrap();
        assert_eq!(unsupported.len(), 1);
        w.clear();
        assert_eq!(
            net("010.0.0.1", &mut w),
            Ok(vec![Network::Net("8.0.0.1".parse().unwrap(), 32)])
        );
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn list_errors_say_what_fwknopd_refuses() {
        let mut w = Vec::new();
        let addr =
            |s: &str, w: &mut Vec<String>| addr_list(s.as_bytes(), w).unwrap_err().to_string();
        assert_eq!(
            addr(&"1".repeat(34), &mut w),
            format!(
                "the entry {:?} is longer than the 31 characters fwknopd reads",
                "1".repeat(34)
            )
        );
        assert_eq!(
            addr("1.2.3.4/", &mut w),
            "missing mask value in \"1.2.3.4/\""
        );
        assert_eq!(
            addr("10.0.0.300", &mut w),
            "\"10.0.0.300\" is not an IPv4 address"
        );
        assert_eq!(
            addr("::1", &mut w),
            "\"::1\" is not an IPv4 address (fwknopd 2.6.10 reads only IPv4: for IPv6 sources use ANY here or knockerd's native format)"
        );
        assert_eq!(
            addr("10.0.0.0/8   ,1.1.1.1", &mut w),
            "invalid mask \"8   \" in \"10.0.0.0/8   \": give a prefix length (1 to 32) or a netmask (255.255.0.0) (fwknopd allows no space after a prefix length in a list: write `10.0.0.0/8,` not `10.0.0.0/8 ,`)"
        );
        assert_eq!(
            port_list(b"tcp/65536", "OPEN_PORTS", &mut w)
                .unwrap_err()
                .to_string(),
            "invalid port in \"tcp/65536\": a port is 1 to 65535 (fwknopd refuses it too)"
        );
    }

    #[test]
    fn ports() {
        let mut w = Vec::new();
        assert_eq!(
            port_list(b"tcp/22, UDP/53 ", "OPEN_PORTS", &mut w),
            Ok(vec![Service::tcp(22), Service::udp(53)])
        );
        assert!(w.is_empty());
        assert_eq!(
            port_list(b"udp/1-5", "RESTRICT_PORTS", &mut w),
            Ok(vec![Service::udp(1)])
        );
        assert!(w[0].contains("no port ranges"), "{w:?}");
        for bad in [
            "tcp/",
            "tcp/abc",
            "tcp/0",
            "tcp/65536",
            "22",
            "icmp/0",
            "tcp /22",
            "tcp/22,",
            "tcp/0000000000000000000000000000000022",
        ] {
            assert!(
                port_list(bad.as_bytes(), "OPEN_PORTS", &mut w).is_err(),
                "{bad:?}"
            );
        }
        w.clear();
        assert_eq!(
            port_list(b"tcp/22,tcp/22", "OPEN_PORTS", &mut w),
            Ok(vec![Service::tcp(22)])
        );
        assert_eq!(w.len(), 1);
    }
}
