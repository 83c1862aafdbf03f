//! fwknopd's line grammar (`sscanf(line, "%s %[^;\n\r]", var, val)`), the C library functions
//! it reads numbers with, and reading its files: shared by access.conf and fwknopd.conf.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::config::{ConfigError, MAX_FILE_BYTES};

/// fwknopd reads lines with `fgets(buf, MAX_LINE_LEN, f)`: longer lines are split.
pub(super) const MAX_LINE_LEN: usize = 1024;

pub(super) fn plain_err(file: &Path, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: None,
        message: message.to_string(),
    }
}

pub(super) fn line_err(file: &Path, line: usize, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message: message.to_string(),
    }
}

/// Reads a configuration file the way fwknopd accepts it: it must exist and be a regular file
/// (or a symlink to one). Access files hold keys, so one that others can read gets a warning, as
/// fwknopd warns for anything but 0600.
pub(super) fn read_file(
    path: &Path,
    perm_warnings: Option<&mut Vec<String>>,
) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let hint = if path
        .as_os_str()
        .as_bytes()
        .last()
        .is_some_and(|b| is_c_space(*b))
    {
        " (the path ends with whitespace, which fwknopd 2.6.10 keeps as part of it)"
    } else {
        ""
    };
    let meta =
        std::fs::metadata(path).map_err(|e| plain_err(path, format!("cannot read: {e}{hint}")))?;
    if !meta.is_file() {
        return Err(plain_err(
            path,
            "is not a regular file (fwknopd refuses it too)",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(plain_err(
            path,
            format!(
                "file is {} bytes; at most {MAX_FILE_BYTES} are read",
                meta.len()
            ),
        ));
    }
    if let Some(w) = perm_warnings {
        if meta.permissions().mode() & 0o077 != 0 {
            w.push(format!("{}: holds keys but others can read it (mode {:o}): chmod 600 it (fwknopd warns about this too)", path.display(), meta.permissions().mode() & 0o7777));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| plain_err(path, format!("cannot read: {e}")))?;
    Ok(Zeroizing::new(bytes))
}

pub(super) fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// C's `isspace` in the C locale.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

pub(super) fn trim_start_c(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|c| !is_c_space(*c)).unwrap_or(b.len());
    &b[i..]
}

pub(super) fn trim_end_c(b: &[u8]) -> &[u8] {
    let i = b.iter().rposition(|c| !is_c_space(*c)).map_or(0, |i| i + 1);
    &b[..i]
}

pub(super) enum Entry<'a> {
    /// A comment or an empty line: its first byte is `#`, `;`, CR, LF or NUL.
    Skip,
    /// `sscanf()` found no value (or nothing at all).
    Bad { var: &'a [u8] },
    Pair {
        var: &'a [u8],
        val: &'a [u8],
        /// A `;` (or CR) ended the value and text followed it.
        cut: bool,
    },
}

/// What `sscanf(line, "%s %[^;\n\r]", var, val)` makes of one line (fwknopd reads C strings, so
/// a NUL byte ends the line).
pub(super) fn scan_line(line: &[u8]) -> Entry<'_> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(i) => &line[..i],
        None => line,
    };
    match line.first() {
        None | Some(b'#' | b';' | b'\r' | b'\n') => return Entry::Skip,
        Some(_) => {}
    }
    let rest = trim_start_c(line);
    let var_end = rest
        .iter()
        .position(|&b| is_c_space(b))
        .unwrap_or(rest.len());
    let var = &rest[..var_end];
    let after = trim_start_c(&rest[var_end..]);
    let val_end = after
        .iter()
        .position(|&b| matches!(b, b';' | b'\n' | b'\r'))
        .unwrap_or(after.len());
    let val = &after[..val_end];
    if var.is_empty() || val.is_empty() {
        return Entry::Bad { var };
    }
    let cut = after.len() > val_end && !trim_start_c(&after[val_end + 1..]).is_empty();
    Entry::Pair { var, val, cut }
}

/// fwknopd removes everything from the last `:` of a variable name (`SOURCE:` is `SOURCE`).
pub(super) fn strip_colon(var: &[u8]) -> &[u8] {
    match var.iter().rposition(|&b| b == b':') {
        Some(i) => &var[..i],
        None => var,
    }
}

/// A variable name for messages, shown only when it looks like one.
pub(super) fn shown_var(var: &[u8]) -> String {
    if !var.is_empty()
        && var.len() <= 40
        && var
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'%' | b':'))
    {
        format!("`{}`", String::from_utf8_lossy(var))
    } else {
        "the line".to_string()
    }
}

/// The lines of a file, numbered from 1, without their LF.
pub(super) fn numbered_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

/// What C's `strtol(s, NULL, 10)` reads, and whether `s` is a clean whole number.
#[derive(Debug, Clone, Copy)]
pub(super) struct CNum {
    /// `None` when strtol reports ERANGE.
    pub(super) value: Option<i64>,
    /// At least one digit was read.
    pub(super) digits: bool,
    /// Optional leading spaces and sign, digits, optional trailing spaces: nothing else.
    pub(super) clean: bool,
}

pub(super) fn c_strtol(s: &[u8]) -> CNum {
    let t = trim_start_c(s);
    let (neg, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = body.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut value: Option<i64> = Some(0);
    for &b in &body[..n] {
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(i64::from(b - b'0')));
    }
    if neg {
        value = value.map(|v| -v);
    }
    CNum {
        value,
        digits: n > 0,
        clean: n > 0 && trim_end_c(&body[n..]).is_empty(),
    }
}

/// What fwknopd's `strtol_wrapper()` ends up with: `strtol` truncated to a C `int`.
pub(super) fn c_int(n: CNum) -> Option<i64> {
    n.value.map(|v| i64::from(v as i32))
}

/// Why a value is not a whole number in range, and what fwknopd would have read instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NumberError {
    /// More than an optional sign and digits; `read` is what fwknopd silently takes instead,
    /// when that is in range (else it refuses the value too).
    NotWhole {
        var: String,
        text: String,
        read: Option<i64>,
    },
    /// Out of range, but fwknopd truncates it to a C `int` that is in range.
    Truncated {
        var: String,
        value: i64,
        read: i64,
        min: i64,
        max: i64,
    },
    /// Out of range for fwknopd too.
    OutOfRange {
        var: String,
        text: String,
        min: i64,
        max: i64,
    },
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberError::NotWhole { var, text, read } => {
                let read = match read {
                    Some(v) => format!("silently read it as {v}"),
                    None => "refuse it".to_string(),
                };
                write!(
                    f,
                    "{var} {text:?} is not a whole number (fwknopd would {read}): write the number alone"
                )
            }
            NumberError::Truncated {
                var,
                value,
                read,
                min,
                max,
            } => write!(
                f,
                "{var} {value} is out of range: fwknopd would read it as {read} (it truncates to a C int); give {min} to {max}"
            ),
            NumberError::OutOfRange { var, text, min, max } => write!(
                f,
                "{var} {text} is not in fwknopd's range {min} to {max} (fwknopd refuses it too)"
            ),
        }
    }
}

/// A whole number of seconds in `min..=max`, or the error with what fwknopd would have read.
pub(super) fn whole_number(var: &str, val: &[u8], min: i64, max: i64) -> Result<i64, NumberError> {
    let n = c_strtol(val);
    let text = String::from_utf8_lossy(val).trim_end().to_string();
    let fwknopd = c_int(n);
    if !n.clean {
        let read = fwknopd.filter(|v| (min..=max).contains(v));
        return Err(NumberError::NotWhole {
            var: var.to_string(),
            text,
            read,
        });
    }
    match (n.value, fwknopd) {
        (Some(v), Some(c)) if v == c && (min..=max).contains(&v) => Ok(v),
        (Some(v), Some(c)) if v != c && (min..=max).contains(&c) => Err(NumberError::Truncated {
            var: var.to_string(),
            value: v,
            read: c,
            min,
            max,
        }),
        _ => Err(NumberError::OutOfRange {
            var: var.to_string(),
            text,
            min,
            max,
        }),
    }
}

/// fwknopd's `add_acc_bool()`: true when the value starts with `y` or `Y`.
pub(super) fn c_bool(val: &[u8]) -> bool {
    matches!(val.first(), Some(b'y' | b'Y'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sscanf_grammar() {
        let pair = |l: &str| match scan_line(l.as_bytes()) {
            Entry::Pair { var, val, cut } => Some((
                String::from_utf8_lossy(var).into_owned(),
                String::from_utf8_lossy(val).into_owned(),
                cut,
            )),
            _ => None,
        };
        assert_eq!(
            pair("KEY  my key  "),
            Some(("KEY".into(), "my key  ".into(), false))
        );
        assert_eq!(
            pair("\tSOURCE\tANY;x"),
            Some(("SOURCE".into(), "ANY".into(), true))
        );
        assert_eq!(pair("KEY abc;"), Some(("KEY".into(), "abc".into(), false)));
        assert_eq!(pair("KEY abc\r"), Some(("KEY".into(), "abc".into(), false)));
        assert_eq!(pair("KEY a\0b"), Some(("KEY".into(), "a".into(), false)));
        assert_eq!(pair(" # x"), Some(("#".into(), "x".into(), false)));
        assert!(matches!(scan_line(b"# c"), Entry::Skip));
        assert!(matches!(scan_line(b";c"), Entry::Skip));
        assert!(matches!(scan_line(b""), Entry::Skip));
        assert!(matches!(scan_line(b"\r"), Entry::Skip));
        assert!(matches!(scan_line(b"\0KEY x"), Entry::Skip));
        assert!(matches!(scan_line(b"   "), Entry::Bad { .. }));
        assert!(matches!(scan_line(b"KEY"), Entry::Bad { .. }));
        assert!(matches!(scan_line(b"KEY ;x"), Entry::Bad { .. }));
        assert_eq!(strip_colon(b"SOURCE:"), b"SOURCE");
        assert_eq!(strip_colon(b"A:B:"), b"A:B");
    }

    #[test]
    fn strtol_and_whole_numbers() {
        assert_eq!(whole_number("X", b"30", 0, 100), Ok(30));
        assert_eq!(whole_number("X", b"30  ", 0, 100), Ok(30));
        assert_eq!(whole_number("X", b"+7", 0, 100), Ok(7));
        let e = whole_number("X", b"30s", 0, 100).unwrap_err().to_string();
        assert!(e.contains("silently read it as 30"), "{e}");
        let e = whole_number("X", b"abc", 0, 100).unwrap_err().to_string();
        assert!(e.contains("silently read it as 0"), "{e}");
        assert!(whole_number("X", b"101", 0, 100)
            .unwrap_err()
            .to_string()
            .contains("range 0 to 100"));
        let e = whole_number("X", b"4294967326", 0, 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("read it as 30"), "{e}");
    }
}
