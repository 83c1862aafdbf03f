//! One access.conf stanza as its lines set it (a [`Draft`]): what fwknopd keeps of each
//! variable and what it refuses on the spot, one function per group of variables; and fwknopd's
//! `acc_data_is_valid()`. `finalize` turns a draft into a stanza.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::syntax::{c_bool, c_strtol, line_err, path_of, shown_var, trim_end_c, whole_number};
use super::values::{b64_decode, expire_date, is_base64, utc_date};
use super::{Digest, FwknopdConf, CMD_CYCLE_BUFSIZE};
use crate::config::ConfigError;

/// `RCHK_MAX_FW_TIMEOUT` and `RCHK_MAX_CMD_CYCLE_TIMER` are `2 << 22` seconds.
const RCHK_MAX_TIMEOUT: i64 = 2 << 22;

/// Where a variable was set.
#[derive(Debug, Clone)]
pub(super) struct Loc {
    pub(super) file: PathBuf,
    pub(super) line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

pub(super) type At<T> = Option<(Loc, T)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HmacType {
    Known(Digest),
    Sha3_256,
    Sha3_512,
}

/// A stanza as the lines set it, before fwknopd's end-of-file processing.
#[derive(Default)]
pub(super) struct Draft {
    pub(super) file: PathBuf,
    pub(super) line: usize,
    pub(super) source: Vec<u8>,
    pub(super) destination: At<Vec<u8>>,
    pub(super) open_ports: At<Vec<u8>>,
    pub(super) restrict_ports: At<Vec<u8>>,
    pub(super) key: At<Zeroizing<Vec<u8>>>,
    pub(super) key_var: &'static str,
    pub(super) hmac_key: At<Zeroizing<Vec<u8>>>,
    pub(super) hmac_var: &'static str,
    pub(super) hmac_type: At<HmacType>,
    pub(super) encryption_mode: At<String>,
    pub(super) fw_access_timeout: At<i64>,
    pub(super) max_fw_timeout: At<i64>,
    pub(super) access_expire: At<i64>,
    pub(super) require_username: At<String>,
    pub(super) require_source_address: bool,
    pub(super) enable_cmd_exec: At<bool>,
    pub(super) enable_cmd_sudo_exec: At<bool>,
    /// CMD_EXEC_USER and the like: only used by command messages.
    pub(super) cmd_users: Vec<(Loc, &'static str)>,
    pub(super) cmd_cycle_open: At<String>,
    pub(super) cmd_cycle_close: At<String>,
    pub(super) cmd_cycle_timer: At<i64>,
    /// GPG_DECRYPT_PW (or GPG_ALLOW_NO_PW Y, which sets an empty one): the stanza decrypts
    /// GnuPG packets.
    pub(super) gpg_decrypt_pw: At<bool>,
    pub(super) gpg_allow_no_pw: bool,
    pub(super) gpg_disable_sig: bool,
    pub(super) gpg_remote: bool,
    /// Other GPG_* variables: without a decryption password they do nothing.
    pub(super) gpg_other: Vec<(Loc, String)>,
    /// FORCE_NAT's inner host: where granted connections to the stanza's OPEN_PORTS go.
    pub(super) force_nat: At<std::net::SocketAddrV4>,
    pub(super) force_snat: At<Ipv4Addr>,
    pub(super) force_masquerade: At<bool>,
    pub(super) forward_all: At<bool>,
    pub(super) disable_dnat: At<bool>,
    pub(super) warnings: Vec<String>,
}

impl Draft {
    pub(super) fn shown_source(&self) -> String {
        String::from_utf8_lossy(&self.source).into_owned()
    }

    pub(super) fn note(&mut self, at: &Loc, text: String) {
        self.warnings.push(format!("{at}: {text}"));
    }

    /// Records that `what` replaces an earlier line, as in fwknopd.
    pub(super) fn again<T>(&mut self, what: &str, prev: &At<T>, at: &Loc) {
        if let Some((p, _)) = prev {
            let text = format!(
                "{what} was already set at line {} of {}; this one counts, as in fwknopd",
                p.line,
                p.file.display()
            );
            self.note(at, text);
        }
    }
}

/// The fwknopd access.conf variables, for the "case-sensitive" hint.
pub(super) const ACCESS_VARS: [&str; 44] = [
    "SOURCE",
    "DESTINATION",
    "OPEN_PORTS",
    "RESTRICT_PORTS",
    "KEY",
    "KEY_BASE64",
    "HMAC_KEY",
    "HMAC_KEY_BASE64",
    "HMAC_DIGEST_TYPE",
    "ENCRYPTION_MODE",
    "FW_ACCESS_TIMEOUT",
    "MAX_FW_TIMEOUT",
    "ACCESS_EXPIRE",
    "ACCESS_EXPIRE_EPOCH",
    "ENABLE_CMD_EXEC",
    "ENABLE_CMD_SUDO_EXEC",
    "CMD_EXEC_USER",
    "CMD_EXEC_GROUP",
    "CMD_SUDO_EXEC_USER",
    "CMD_SUDO_EXEC_GROUP",
    "CMD_CYCLE_OPEN",
    "CMD_CYCLE_CLOSE",
    "CMD_CYCLE_TIMER",
    "REQUIRE_USERNAME",
    "REQUIRE_SOURCE_ADDRESS",
    "REQUIRE_SOURCE",
    "GPG_HOME_DIR",
    "GPG_EXE",
    "GPG_DECRYPT_ID",
    "GPG_DECRYPT_PW",
    "GPG_ALLOW_NO_PW",
    "GPG_REQUIRE_SIG",
    "GPG_DISABLE_SIG",
    "GPG_IGNORE_SIG_VERIFY_ERROR",
    "GPG_REMOTE_ID",
    "GPG_FINGERPRINT_ID",
    "FORCE_NAT",
    "FORCE_SNAT",
    "FORCE_MASQUERADE",
    "DISABLE_DNAT",
    "FORWARD_ALL",
    "%INCLUDE",
    "%INCLUDE_FOLDER",
    "%INCLUDE_KEYS",
];

impl Loc {
    /// An error at this line.
    pub(super) fn error(&self, message: impl fmt::Display) -> ConfigError {
        line_err(&self.file, self.line, message)
    }
}

/// Where a variable was set, without its value (for [`Draft::again`]).
fn seen<T>(slot: &At<T>) -> At<()> {
    slot.as_ref().map(|(l, _)| (l.clone(), ()))
}

/// A key that is still fwknopd's placeholder.
fn changeme(at: &Loc, what: &str) -> ConfigError {
    at.error(format!("{what} is still __CHANGEME__: fwknopd refuses to start (\"value is not properly set\"); put the stanza's key here (`fwknop --key-gen` makes a pair)"))
}

/// A value that must be text.
fn utf8(name: &str, val: &[u8], at: &Loc) -> Result<String, ConfigError> {
    std::str::from_utf8(val)
        .map(str::to_string)
        .map_err(|_| at.error(format!("{name}: the value is not UTF-8 text")))
}

/// One `VARIABLE value` line of a stanza, as the setters of [`Draft`] take it.
#[derive(Clone, Copy)]
struct Line<'a> {
    /// The variable, without its `:`.
    var: &'a [u8],
    /// The same as text, for messages.
    name: &'a str,
    val: &'a [u8],
    at: &'a Loc,
}

/// The variables of a command message, as `&'static str` for [`Draft::cmd_users`].
fn cmd_user_var(var: &[u8]) -> &'static str {
    match var {
        b"CMD_EXEC_USER" => "CMD_EXEC_USER",
        b"CMD_EXEC_GROUP" => "CMD_EXEC_GROUP",
        b"CMD_SUDO_EXEC_USER" => "CMD_SUDO_EXEC_USER",
        _ => "CMD_SUDO_EXEC_GROUP",
    }
}

impl Draft {
    /// One `VARIABLE value` line of this stanza (`var` without its `:`, `name` the same as
    /// text): what fwknopd's `parse_access_file()` keeps of it, and what it refuses.
    pub(super) fn set(
        &mut self,
        var: &[u8],
        name: &str,
        val: &[u8],
        at: &Loc,
        fwknopd: &FwknopdConf,
    ) -> Result<(), ConfigError> {
        let line = Line { var, name, val, at };
        match var {
            b"DESTINATION" | b"OPEN_PORTS" | b"RESTRICT_PORTS" => {
                self.set_list(line);
                Ok(())
            }
            b"KEY" | b"KEY_BASE64" | b"HMAC_KEY" | b"HMAC_KEY_BASE64" => self.set_key(line),
            b"HMAC_DIGEST_TYPE" => self.set_hmac_digest(line),
            b"FW_ACCESS_TIMEOUT" | b"MAX_FW_TIMEOUT" => self.set_timeout(line),
            b"ENCRYPTION_MODE" => self.set_encryption_mode(line),
            b"ENABLE_CMD_EXEC"
            | b"ENABLE_CMD_SUDO_EXEC"
            | b"CMD_EXEC_USER"
            | b"CMD_EXEC_GROUP"
            | b"CMD_SUDO_EXEC_USER"
            | b"CMD_SUDO_EXEC_GROUP" => self.set_cmd_exec(line),
            b"CMD_CYCLE_OPEN" | b"CMD_CYCLE_CLOSE" | b"CMD_CYCLE_TIMER" => self.set_cmd_cycle(line),
            b"REQUIRE_USERNAME" | b"REQUIRE_SOURCE_ADDRESS" | b"REQUIRE_SOURCE" => {
                self.set_requirement(line)
            }
            b"GPG_HOME_DIR"
            | b"GPG_DECRYPT_PW"
            | b"GPG_ALLOW_NO_PW"
            | b"GPG_DISABLE_SIG"
            | b"GPG_REMOTE_ID"
            | b"GPG_FINGERPRINT_ID"
            | b"GPG_EXE"
            | b"GPG_DECRYPT_ID"
            | b"GPG_REQUIRE_SIG"
            | b"GPG_IGNORE_SIG_VERIFY_ERROR" => self.set_gpg(line),
            b"ACCESS_EXPIRE" => self.set_expire_date(line),
            b"ACCESS_EXPIRE_EPOCH" => self.set_expire_epoch(line),
            b"FORCE_NAT" | b"FORCE_SNAT" | b"FORCE_MASQUERADE" | b"DISABLE_DNAT"
            | b"FORWARD_ALL" => self.set_nat(line, fwknopd),
            _ => {
                self.unknown(line);
                Ok(())
            }
        }
    }

    fn list_slot(&mut self, var: &[u8]) -> &mut At<Vec<u8>> {
        match var {
            b"DESTINATION" => &mut self.destination,
            b"OPEN_PORTS" => &mut self.open_ports,
            _ => &mut self.restrict_ports,
        }
    }

    /// DESTINATION, OPEN_PORTS, RESTRICT_PORTS: kept as written, read by `finalize`.
    fn set_list(&mut self, line: Line) {
        let Line { var, name, val, at } = line;
        let prev = seen(self.list_slot(var));
        self.again(name, &prev, at);
        *self.list_slot(var) = Some((at.clone(), val.to_vec()));
    }

    /// KEY, KEY_BASE64 (the encryption key), HMAC_KEY, HMAC_KEY_BASE64.
    fn set_key(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { var, name, val, at } = line;
        if val.eq_ignore_ascii_case(b"__CHANGEME__") {
            return Err(changeme(at, name));
        }
        let (key, var_static) = match var {
            b"KEY" => (Zeroizing::new(val.to_vec()), "KEY"),
            b"HMAC_KEY" => (Zeroizing::new(val.to_vec()), "HMAC_KEY"),
            _ => {
                if !is_base64(val) {
                    let hint = if trim_end_c(val).len() != val.len() {
                        " (it ends with whitespace, which fwknopd 2.6.10 keeps and then refuses)"
                    } else {
                        ""
                    };
                    return Err(at.error(format!("{name} is not base64{hint}: fwknopd refuses it (\"doesn't look like base64-encoded data\")")));
                }
                let shown = if var == b"KEY_BASE64" {
                    "KEY_BASE64"
                } else {
                    "HMAC_KEY_BASE64"
                };
                (b64_decode(val), shown)
            }
        };
        if matches!(var, b"KEY" | b"KEY_BASE64") {
            self.again("the encryption key", &seen(&self.key), at);
            self.key = Some((at.clone(), key));
            self.key_var = var_static;
        } else {
            self.again("the HMAC key", &seen(&self.hmac_key), at);
            self.hmac_key = Some((at.clone(), key));
            self.hmac_var = var_static;
        }
        Ok(())
    }

    fn set_hmac_digest(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { name, val, at, .. } = line;
        let t = match val.to_ascii_lowercase().as_slice() {
            b"md5" => HmacType::Known(Digest::Md5),
            b"sha1" => HmacType::Known(Digest::Sha1),
            b"sha256" => HmacType::Known(Digest::Sha256),
            b"sha384" => HmacType::Known(Digest::Sha384),
            b"sha512" => HmacType::Known(Digest::Sha512),
            b"sha3_256" => HmacType::Sha3_256,
            b"sha3_512" => HmacType::Sha3_512,
            _ => return Err(at.error(format!("HMAC_DIGEST_TYPE {:?} must be one of md5, sha1, sha256, sha384, sha512, sha3_256, sha3_512, with nothing after it (fwknopd refuses it too)", String::from_utf8_lossy(val)))),
        };
        self.again(name, &seen(&self.hmac_type), at);
        self.hmac_type = Some((at.clone(), t));
        Ok(())
    }

    /// FW_ACCESS_TIMEOUT, MAX_FW_TIMEOUT.
    fn set_timeout(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { var, name, val, at } = line;
        let v = whole_number(name, val, 0, RCHK_MAX_TIMEOUT).map_err(|e| at.error(e))?;
        let slot = if var == b"FW_ACCESS_TIMEOUT" {
            &mut self.fw_access_timeout
        } else {
            &mut self.max_fw_timeout
        };
        let prev = seen(slot);
        *slot = Some((at.clone(), v));
        self.again(name, &prev, at);
        Ok(())
    }

    fn set_encryption_mode(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { name, val, at, .. } = line;
        let mode = val.to_ascii_lowercase();
        if !matches!(
            mode.as_slice(),
            b"cbc" | b"ecb" | b"cfb" | b"ofb" | b"ctr" | b"legacy" | b"asymmetric"
        ) {
            return Err(at.error(format!("ENCRYPTION_MODE {:?} is unknown: fwknopd takes cbc, ecb, cfb, ofb, ctr, legacy or asymmetric, with nothing after it (it refuses this too)", String::from_utf8_lossy(val))));
        }
        self.again(name, &seen(&self.encryption_mode), at);
        self.encryption_mode = Some((at.clone(), String::from_utf8_lossy(&mode).into_owned()));
        Ok(())
    }

    /// ENABLE_CMD_EXEC, ENABLE_CMD_SUDO_EXEC and the users and groups of command messages.
    fn set_cmd_exec(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { var, name, val, at } = line;
        match var {
            b"ENABLE_CMD_EXEC" => self.enable_cmd_exec = Some((at.clone(), c_bool(val))),
            b"ENABLE_CMD_SUDO_EXEC" => self.enable_cmd_sudo_exec = Some((at.clone(), c_bool(val))),
            _ => {
                // fwknopd looks every one of them up with getpwnam(), groups included
                let who = utf8(name, val, at)?;
                let known = nix::unistd::User::from_name(&who).ok().flatten().is_some();
                if !known {
                    return Err(at.error(format!("{name} {who:?} is not a user on this system: fwknopd refuses to start (\"Unable to determine UID\"; it looks up groups as users too)")));
                }
                self.cmd_users.push((at.clone(), cmd_user_var(var)));
            }
        }
        Ok(())
    }

    /// CMD_CYCLE_OPEN, CMD_CYCLE_CLOSE, CMD_CYCLE_TIMER.
    fn set_cmd_cycle(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { var, name, val, at } = line;
        match var {
            b"CMD_CYCLE_OPEN" => {
                let t = utf8(name, val, at)?;
                self.again(name, &seen(&self.cmd_cycle_open), at);
                self.cmd_cycle_open = Some((at.clone(), t));
            }
            b"CMD_CYCLE_CLOSE" => {
                let t = utf8(name, val, at)?;
                self.again(name, &seen(&self.cmd_cycle_close), at);
                self.cmd_cycle_close = Some((at.clone(), t));
            }
            _ => {
                let v = whole_number(name, val, 1, RCHK_MAX_TIMEOUT).map_err(|e| at.error(e))?;
                self.again(name, &seen(&self.cmd_cycle_timer), at);
                self.cmd_cycle_timer = Some((at.clone(), v));
            }
        }
        Ok(())
    }

    /// REQUIRE_USERNAME, REQUIRE_SOURCE_ADDRESS (or REQUIRE_SOURCE).
    fn set_requirement(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { var, name, val, at } = line;
        if var != b"REQUIRE_USERNAME" {
            self.require_source_address = c_bool(val);
            return Ok(());
        }
        let t = utf8(name, val, at)?;
        if t.trim_end() != t {
            self.note(at, format!("REQUIRE_USERNAME {:?} ends with whitespace, which fwknopd 2.6.10 keeps, so no client username ever matches; knockerd keeps it too: remove it", t));
        }
        self.again(name, &seen(&self.require_username), at);
        self.require_username = Some((at.clone(), t));
        Ok(())
    }

    /// The GPG_* variables: knockerd refuses GnuPG stanzas, but checks what fwknopd checks.
    fn set_gpg(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { var, name, val, at } = line;
        match var {
            b"GPG_HOME_DIR" => {
                if !path_of(val).is_dir() {
                    return Err(at.error(format!(
                        "GPG_HOME_DIR {:?} is not a directory: fwknopd refuses to start",
                        String::from_utf8_lossy(val)
                    )));
                }
                self.gpg_other.push((at.clone(), name.to_string()));
            }
            b"GPG_DECRYPT_PW" => {
                if val.eq_ignore_ascii_case(b"__CHANGEME__") {
                    return Err(changeme(at, "GPG_DECRYPT_PW"));
                }
                self.gpg_decrypt_pw = Some((at.clone(), true));
            }
            b"GPG_ALLOW_NO_PW" => {
                self.gpg_allow_no_pw = c_bool(val);
                if self.gpg_allow_no_pw {
                    self.gpg_decrypt_pw = Some((at.clone(), false));
                }
            }
            b"GPG_DISABLE_SIG" => {
                self.gpg_disable_sig = c_bool(val);
                self.gpg_other.push((at.clone(), name.to_string()));
            }
            b"GPG_REMOTE_ID" | b"GPG_FINGERPRINT_ID" => {
                self.gpg_remote = true;
                self.gpg_other.push((at.clone(), name.to_string()));
            }
            _ => self.gpg_other.push((at.clone(), name.to_string())),
        }
        Ok(())
    }

    /// ACCESS_EXPIRE MM/DD/YYYY.
    fn set_expire_date(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { val, at, .. } = line;
        let Some((t, trailing)) = expire_date(val) else {
            return Err(at.error(format!(
                "ACCESS_EXPIRE {:?} is not a date: write MM/DD/YYYY (fwknopd refuses it too)",
                String::from_utf8_lossy(val)
            )));
        };
        if t <= 0 {
            return Err(at.error(format!("ACCESS_EXPIRE {:?} is before 1970: fwknopd would silently never expire the stanza; write MM/DD/YYYY", String::from_utf8_lossy(val))));
        }
        if trailing {
            self.note(at, format!("ACCESS_EXPIRE: fwknopd reads {:?} as {} and ignores the rest; so does knockerd", String::from_utf8_lossy(val), utc_date(t as u64)));
        }
        self.note(at, format!("ACCESS_EXPIRE: knockerd takes midnight UTC ({}); fwknopd took midnight in the server's time zone: use ACCESS_EXPIRE_EPOCH for an exact time", utc_date(t as u64)));
        self.again("the expiry", &seen(&self.access_expire), at);
        self.access_expire = Some((at.clone(), t));
        Ok(())
    }

    /// ACCESS_EXPIRE_EPOCH, seconds since 1970 (0: no expiry).
    fn set_expire_epoch(&mut self, line: Line) -> Result<(), ConfigError> {
        let Line { val, at, .. } = line;
        let n = c_strtol(val);
        let t = match n.value {
            Some(v) if n.clean && v >= 0 => v,
            None => return Err(at.error("ACCESS_EXPIRE_EPOCH is out of range (fwknopd refuses it too)")),
            Some(_) => return Err(at.error(format!("ACCESS_EXPIRE_EPOCH {:?} is not a whole number of seconds since 1970 (fwknopd would silently read it as no expiry or as its leading digits): write the number alone", String::from_utf8_lossy(val)))),
        };
        self.again("the expiry", &seen(&self.access_expire), at);
        if t == 0 {
            self.note(
                at,
                "ACCESS_EXPIRE_EPOCH 0 means no expiry to fwknopd; so it does to knockerd".into(),
            );
            self.access_expire = None;
        } else {
            self.access_expire = Some((at.clone(), t));
        }
        Ok(())
    }

    /// FORCE_NAT, FORCE_SNAT, FORCE_MASQUERADE, DISABLE_DNAT, FORWARD_ALL: checked as fwknopd
    /// checks them; `finalize` refuses the stanza.
    fn set_nat(&mut self, line: Line, fwknopd: &FwknopdConf) -> Result<(), ConfigError> {
        let Line { var, val, at, .. } = line;
        match var {
            b"FORCE_NAT" => {
                let t = String::from_utf8_lossy(val).into_owned();
                let mut words = t.split_ascii_whitespace();
                let target = match (
                    words.next().map(str::parse::<Ipv4Addr>),
                    words.next().map(str::parse::<u16>),
                ) {
                    (Some(Ok(ip)), Some(Ok(port))) => std::net::SocketAddrV4::new(ip, port),
                    _ => {
                        return Err(at.error(format!(
                            "FORCE_NAT {t:?}: fwknopd needs <IP> <PORT> and refuses this"
                        )))
                    }
                };
                if fwknopd.file.is_some() && !fwknopd.nat_enabled {
                    return Err(at.error("FORCE_NAT requires ENABLE_IPT_FORWARDING or ENABLE_IPT_LOCAL_NAT in fwknopd.conf: fwknopd refuses to start"));
                }
                self.force_nat = Some((at.clone(), target));
            }
            b"FORCE_SNAT" => {
                let t = String::from_utf8_lossy(val).into_owned();
                let Some(Ok(addr)) = t
                    .split_ascii_whitespace()
                    .next()
                    .map(str::parse::<Ipv4Addr>)
                else {
                    return Err(at.error(format!(
                        "FORCE_SNAT {t:?}: fwknopd needs an IPv4 address and refuses this"
                    )));
                };
                if fwknopd.file.is_some() && !fwknopd.nat_enabled {
                    return Err(at.error("FORCE_SNAT requires ENABLE_IPT_FORWARDING or ENABLE_IPT_LOCAL_NAT in fwknopd.conf: fwknopd refuses to start"));
                }
                self.force_snat = Some((at.clone(), addr));
            }
            b"FORCE_MASQUERADE" => self.force_masquerade = Some((at.clone(), c_bool(val))),
            b"DISABLE_DNAT" => self.disable_dnat = Some((at.clone(), c_bool(val))),
            _ => self.forward_all = Some((at.clone(), c_bool(val))),
        }
        Ok(())
    }

    /// A variable fwknopd does not know: ignored, with a hint when it is one in another case.
    fn unknown(&mut self, line: Line) {
        let Line { var, name, at, .. } = line;
        let upper = name.to_ascii_uppercase();
        let hint = if upper != name && ACCESS_VARS.contains(&upper.as_str()) {
            let fixed = if upper.starts_with('%') {
                upper.to_ascii_lowercase()
            } else {
                upper
            };
            format!(" (variable names are case-sensitive: write {fixed})")
        } else {
            String::new()
        };
        self.note(
            at,
            format!(
                "unknown variable {} is ignored, as fwknopd ignores it{hint}",
                shown_var(var)
            ),
        );
    }
}

/// Why fwknopd's `acc_data_is_valid()` rejects a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Invalid {
    NoKeys,
    IdenticalKeys,
    SnatWithoutNat,
    OpenWithoutClose,
    CloseWithoutOpen,
    NoTimer,
    CommandTooLong,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NoKeys => f.write_str("no keys (fwknopd: \"No keys found for access stanza\"): give it KEY_BASE64 and HMAC_KEY_BASE64 (`fwknop --key-gen` makes a pair)"),
            Invalid::IdenticalKeys => f.write_str("the encryption key and the HMAC key are identical (fwknopd: \"should not be identical\"): make a new pair with `fwknop --key-gen`"),
            Invalid::SnatWithoutNat => f.write_str("FORCE_SNAT/FORCE_MASQUERADE requires either FORCE_NAT or FORWARD_ALL (fwknopd's words)"),
            Invalid::OpenWithoutClose => f.write_str("CMD_CYCLE_OPEN without CMD_CYCLE_CLOSE (write CMD_CYCLE_CLOSE NONE for no close command)"),
            Invalid::CloseWithoutOpen => f.write_str("CMD_CYCLE_CLOSE without CMD_CYCLE_OPEN"),
            Invalid::NoTimer => f.write_str("CMD_CYCLE_OPEN needs CMD_CYCLE_TIMER (seconds until CMD_CYCLE_CLOSE runs)"),
            Invalid::CommandTooLong => write!(f, "a CMD_CYCLE command is {CMD_CYCLE_BUFSIZE} bytes or longer"),
        }
    }
}

impl Draft {
    /// fwknopd's `acc_data_is_valid()`, without its side effects.
    pub(super) fn fwknopd_valid(&self) -> Result<(), Invalid> {
        let d = self;
        let key_len = d.key.as_ref().map_or(0, |(_, k)| k.len());
        let gpg_pw = d.gpg_decrypt_pw.as_ref().map(|(_, non_empty)| *non_empty);
        let use_gpg = d.gpg_decrypt_pw.is_some();
        if (key_len == 0 && gpg_pw != Some(true) && !d.gpg_allow_no_pw)
            || (d.key.is_none() && !use_gpg && !d.gpg_allow_no_pw)
        {
            return Err(Invalid::NoKeys);
        }
        if let (Some((_, k)), Some((_, h))) = (&d.key, &d.hmac_key) {
            if !k.is_empty() && !h.is_empty() && k.as_slice() == h.as_slice() {
                return Err(Invalid::IdenticalKeys);
            }
        }
        let snat = d.force_snat.is_some() || d.force_masquerade.as_ref().is_some_and(|(_, b)| *b);
        let forward_all = d.forward_all.as_ref().is_some_and(|(_, b)| *b);
        if snat && d.force_nat.is_none() && !forward_all {
            return Err(Invalid::SnatWithoutNat);
        }
        match (&d.cmd_cycle_open, &d.cmd_cycle_close) {
            (Some(_), None) => return Err(Invalid::OpenWithoutClose),
            (None, Some(_)) => return Err(Invalid::CloseWithoutOpen),
            (Some((_, open)), Some((_, close))) => {
                if !close.starts_with("NONE") && d.cmd_cycle_timer.is_none() {
                    return Err(Invalid::NoTimer);
                }
                if open.len() >= CMD_CYCLE_BUFSIZE || close.len() >= CMD_CYCLE_BUFSIZE {
                    return Err(Invalid::CommandTooLong);
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}
