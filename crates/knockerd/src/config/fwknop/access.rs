//! Reading access.conf: its files and includes (`%include`, `%include_folder`, `%include_keys`),
//! line by line, into one [`Draft`] per stanza ([`Draft::set`] takes each variable), then
//! `finalize` for each stanza and the configuration as a whole.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::draft::{Draft, Loc, ACCESS_VARS};
use super::finalize::finalize;
use super::fwknopd::{parse_fwknopd_conf, FWKNOPD_VARS};
use super::syntax::{
    line_err, numbered_lines, path_of, plain_err, read_file, scan_line, shown_var, strip_colon,
    trim_end_c, Entry, MAX_LINE_LEN,
};
use super::{FwknopConf, FwknopdConf, DEFAULT_MAX_AGE, DEFAULT_SPA_PORT};
use crate::config::ConfigError;

/// `%include` is followed only while fewer than three files are open.
const MAX_INCLUDE_DEPTH: usize = 3;
/// fwknopd does not bound `%include_folder`; knockerd does, so that a folder that includes
/// itself is an error instead of a stack overflow.
const MAX_NESTING: usize = 8;
const MAX_FILES: usize = 256;

/// Reads access.conf (following its includes) and, when given, fwknopd.conf, and validates
/// everything. An error is what makes fwknopd refuse to start, or what knockerd refuses to guess;
/// a configuration with no usable stanza is an error too.
pub fn load(access: &Path, fwknopd_conf: Option<&Path>) -> Result<FwknopConf, ConfigError> {
    load_with(access, fwknopd_conf, Legacy::Refuse)
}

/// Whether stanzas without an HMAC key (fwknop's legacy mode) run: knockerd's
/// `--fwknop-allow-legacy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Legacy {
    /// Refused, with the reason and the fix: knockerd's default.
    #[default]
    Refuse,
    /// Run, with a warning: packets are decrypted before anything authenticates them.
    Allow,
}

/// [`load`], with stanzas without an HMAC key refused or run as `legacy` says.
pub fn load_with(
    access: &Path,
    fwknopd_conf: Option<&Path>,
    legacy: Legacy,
) -> Result<FwknopConf, ConfigError> {
    let mut fwknopd = match fwknopd_conf {
        Some(p) => {
            let text = read_file(p, None)?;
            parse_fwknopd_conf(p, &text)?
        }
        None => FwknopdConf::default(),
    };
    if fwknopd_conf.is_none() {
        if let Some(sibling) = access.parent().map(|d| d.join("fwknopd.conf")) {
            if sibling.is_file() {
                fwknopd.warnings.push(format!("{}: {} exists but was not given with --fwknopd-conf: knockerd uses fwknopd's defaults (udp/{DEFAULT_SPA_PORT}, packets at most {DEFAULT_MAX_AGE} s old); pass it if it changes PCAP_FILTER or the packet age", access.display(), sibling.display()));
            }
        }
    }
    let mut p = Parser::new(&fwknopd);
    p.legacy = legacy;
    p.parse_file(access, None, 1)?;
    p.finish(access)
}

/// Parses access.conf text as if read from `file` (its includes are read from disk), with the
/// given fwknopd.conf settings (`FwknopdConf::default()` for fwknopd's defaults).
pub fn parse(file: &Path, text: &[u8], fwknopd: &FwknopdConf) -> Result<FwknopConf, ConfigError> {
    parse_with(file, text, fwknopd, Legacy::Refuse)
}

/// [`parse`], with stanzas without an HMAC key refused or run as `legacy` says.
pub fn parse_with(
    file: &Path,
    text: &[u8],
    fwknopd: &FwknopdConf,
    legacy: Legacy,
) -> Result<FwknopConf, ConfigError> {
    let mut p = Parser::new(fwknopd);
    p.legacy = legacy;
    p.parse_file(file, Some(text), 1)?;
    p.finish(file)
}

/// A lone word for messages: shown only when it is a variable fwknopd knows (a line that is
/// one word could be a pasted key).
fn shown_word(var: &[u8]) -> String {
    let upper = String::from_utf8_lossy(strip_colon(var)).to_ascii_uppercase();
    if ACCESS_VARS.contains(&upper.as_str()) || FWKNOPD_VARS.contains(&upper.as_str()) {
        shown_var(var)
    } else {
        "the line".to_string()
    }
}

struct Parser<'c> {
    fwknopd: &'c FwknopdConf,
    drafts: Vec<Draft>,
    global: Vec<String>,
    files: usize,
    /// A `source` line in another case was seen (fwknopd's names are case-sensitive).
    other_case_source: bool,
    legacy: Legacy,
}

impl<'c> Parser<'c> {
    fn new(fwknopd: &'c FwknopdConf) -> Self {
        Parser {
            fwknopd,
            drafts: Vec::new(),
            global: fwknopd.warnings.clone(),
            files: 0,
            other_case_source: false,
            legacy: Legacy::Refuse,
        }
    }

    /// `parse_access_file()`: `depth` is 1 for the root file.
    fn parse_file(
        &mut self,
        path: &Path,
        text: Option<&[u8]>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(plain_err(
                path,
                format!("more than {MAX_FILES} files are included; knockerd stops here"),
            ));
        }
        let owned;
        let text = match text {
            Some(t) => t,
            None => {
                owned = read_file(path, Some(&mut self.global))?;
                &owned[..]
            }
        };
        let mut current: Option<usize> = None;
        for (n, raw) in numbered_lines(text) {
            let at = Loc {
                file: path.to_path_buf(),
                line: n,
            };
            if raw.len() > MAX_LINE_LEN - 1 {
                return Err(line_err(path, n, format!("the line is {} bytes long; fwknopd reads at most {} bytes per line and would split it: shorten it", raw.len(), MAX_LINE_LEN - 1)));
            }
            let (var, val, cut) = match scan_line(raw) {
                Entry::Skip => continue,
                Entry::Bad { var } => {
                    let what = if var.is_empty() {
                        "a line of only spaces (a comment must start with # in the first column)"
                            .to_string()
                    } else {
                        format!("{} has no value", shown_word(var))
                    };
                    return Err(line_err(path, n, format!("{what}: fwknopd reads every line that does not start with # or ; as `VARIABLE value` and refuses the file (\"Invalid access file entry\")")));
                }
                Entry::Pair { var, val, cut } => (strip_colon(var), val, cut),
            };
            let name = String::from_utf8_lossy(var).into_owned();
            match var {
                b"%include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(line_err(path, n, format!("%include nests more than {MAX_INCLUDE_DEPTH} files deep: fwknopd refuses it (\"Refusing to go deeper than 3 levels\")")));
                    }
                    let inc = path_of(val);
                    self.relative_note(&inc, &at, "%include");
                    self.parse_file(&inc, None, depth + 1)
                        .map_err(|e| with_context(e, &at, "%include"))?;
                    continue;
                }
                b"%include_folder" => {
                    self.parse_folder(val, &at, depth)?;
                    continue;
                }
                b"SOURCE" => {
                    if let Some(c) = current {
                        self.validate(c)?;
                    }
                    self.drafts.push(Draft {
                        file: path.to_path_buf(),
                        line: n,
                        source: val.to_vec(),
                        ..Draft::default()
                    });
                    current = Some(self.drafts.len() - 1);
                    if cut {
                        self.global.push(format!("{at}: SOURCE: fwknopd ignores everything from the ';' on; so does knockerd"));
                    }
                    continue;
                }
                _ => {}
            }
            if var.first() == Some(&b'#') {
                // an indented comment: fwknopd ignores it as an unknown variable
                continue;
            }
            let Some(c) = current else {
                self.other_case_source |= var.eq_ignore_ascii_case(b"SOURCE");
                self.global.push(format!(
                    "{at}: {} comes before any SOURCE line: fwknopd ignores it, and so does knockerd",
                    shown_var(var)
                ));
                continue;
            };
            if var == b"%include_keys" {
                current = self.include_keys(c, val, &at)?;
                continue;
            }
            let secret = matches!(
                var,
                b"KEY" | b"KEY_BASE64" | b"HMAC_KEY" | b"HMAC_KEY_BASE64" | b"GPG_DECRYPT_PW"
            );
            if cut {
                let d = &mut self.drafts[c];
                d.note(
                    &at,
                    format!("{name}: fwknopd ignores everything from the ';' on; so does knockerd"),
                );
            }
            if secret && val.windows(2).any(|w| w == b" #") {
                let d = &mut self.drafts[c];
                d.note(&at, format!("{name}: the value contains \" #\": fwknopd has no comments after a value, so this is part of the key; so it is for knockerd"));
            }
            if secret && trim_end_c(val).len() != val.len() {
                let d = &mut self.drafts[c];
                d.note(&at, format!("{name}: the value ends with whitespace, which fwknopd 2.6.10 keeps as part of the key (2.6.11 removes it); knockerd keeps it, as Debian's fwknopd does"));
            }
            self.drafts[c].set(var, &name, val, &at, self.fwknopd)?;
        }
        if let Some(c) = current {
            self.validate(c)?;
        }
        if depth == 1 && self.drafts.is_empty() {
            let hint = if self.other_case_source {
                " (variable names are case-sensitive: write SOURCE)"
            } else {
                ""
            };
            return Err(plain_err(path, format!("no SOURCE line{hint}: fwknopd requires at least one stanza (\"Could not find valid SOURCE stanza\")")));
        }
        Ok(())
    }

    fn relative_note(&mut self, p: &Path, at: &Loc, what: &str) {
        if p.is_relative() {
            self.global.push(format!("{at}: {what} {}: a relative path is opened from the working directory (/ for a service), by fwknopd and knockerd alike; write it absolute", p.display()));
        }
    }

    /// `parse_access_folder()`: every file whose last extension starts with `.conf`. knockerd
    /// reads them in name order; fwknopd in directory order.
    fn parse_folder(&mut self, val: &[u8], at: &Loc, depth: usize) -> Result<(), ConfigError> {
        // chop_char(): one trailing '/' goes
        let val = match val {
            [rest @ .., b'/'] if !rest.is_empty() => rest,
            v => v,
        };
        let dir = path_of(val);
        self.relative_note(&dir, at, "%include_folder");
        if depth + 1 > MAX_NESTING {
            return Err(line_err(&at.file, at.line, format!("includes nest more than {MAX_NESTING} levels deep (an %include_folder that includes itself?); fwknopd would recurse until it crashes")));
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            line_err(
                &at.file,
                at.line,
                format!(
                    "%include_folder {}: cannot read the directory: {e} (fwknopd refuses it too)",
                    dir.display()
                ),
            )
        })?;
        let mut names: Vec<Vec<u8>> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().as_bytes().to_vec())
            .filter(|n| {
                n.iter()
                    .rposition(|&b| b == b'.')
                    .is_some_and(|i| n[i..].starts_with(b".conf"))
            })
            .collect();
        names.sort();
        if names.len() > 1 {
            self.global.push(format!("{at}: %include_folder {}: knockerd reads its {} files in name order; fwknopd reads them in directory order, which is not defined: make sure the order of stanzas does not matter, or use %include lines", dir.display(), names.len()));
        }
        for name in names {
            let p = dir.join(OsStr::from_bytes(&name));
            self.parse_file(&p, None, depth + 1)
                .map_err(|e| with_context(e, at, "%include_folder"))?;
        }
        Ok(())
    }

    /// `include_keys_file()`: only key variables; a missing or bad file leaves the stanza as it
    /// is, and a stanza that is then invalid is skipped (fwknopd only logs it at debug level).
    fn include_keys(
        &mut self,
        c: usize,
        val: &[u8],
        at: &Loc,
    ) -> Result<Option<usize>, ConfigError> {
        if c + 1 != self.drafts.len() {
            return Err(line_err(&at.file, at.line, "%include_keys after an %include in the same stanza: fwknopd would skip the last stanza loaded (not this one) if the keys are bad; put %include_keys right after SOURCE"));
        }
        let path = path_of(val);
        self.relative_note(&path, at, "%include_keys");
        let mut problems = Vec::new();
        match read_file(&path, Some(&mut self.global)) {
            Err(e) => problems.push(format!(
                "{e}: the stanza gets no keys from it (fwknopd goes on without them too)"
            )),
            Ok(text) => {
                for (n, raw) in numbered_lines(&text) {
                    let kat = Loc {
                        file: path.clone(),
                        line: n,
                    };
                    if raw.len() > MAX_LINE_LEN - 1 {
                        problems.push(format!(
                            "{kat}: the line is too long; fwknopd stops reading the file here"
                        ));
                        break;
                    }
                    let (var, v) = match scan_line(raw) {
                        Entry::Skip => continue,
                        Entry::Bad { .. } => {
                            problems.push(format!("{kat}: not `VARIABLE value`; fwknopd stops reading the keys file here"));
                            break;
                        }
                        Entry::Pair { var, val, .. } => (strip_colon(var), val),
                    };
                    let name = String::from_utf8_lossy(var).into_owned();
                    match var {
                        b"KEY" | b"KEY_BASE64" | b"HMAC_KEY" | b"HMAC_KEY_BASE64"
                        | b"GPG_DECRYPT_PW" => {
                            if let Err(e) = self.drafts[c].set(var, &name, v, &kat, self.fwknopd) {
                                problems.push(format!(
                                    "{}; fwknopd stops reading the keys file here",
                                    e
                                ));
                                break;
                            }
                        }
                        b"GPG_DECRYPT_ID" | b"GPG_ALLOW_NO_PW" | b"GPG_REQUIRE_SIG"
                        | b"GPG_DISABLE_SIG" | b"GPG_IGNORE_SIG_VERIFY_ERROR"
                        | b"GPG_REMOTE_ID" | b"GPG_FINGERPRINT_ID" => {
                            self.drafts[c].set(var, &name, v, &kat, self.fwknopd)?;
                        }
                        _ => self.global.push(format!("{kat}: {name} is ignored: a keys file (%include_keys) sets only keys, as in fwknopd")),
                    }
                }
            }
        }
        for p in &problems {
            self.global.push(format!("{at}: %include_keys: {p}"));
        }
        if let Err(why) = self.drafts[c].fwknopd_valid() {
            let d = self.drafts.remove(c);
            self.global.push(format!("{at}: the stanza of {}:{} (SOURCE {}) is skipped, as fwknopd skips it (\"Data error in included keyfile\"): {why}", d.file.display(), d.line, d.shown_source()));
            return Ok(None);
        }
        Ok(Some(c))
    }

    /// `acc_data_is_valid()` at the points where fwknopd calls it: fatal there.
    fn validate(&self, c: usize) -> Result<(), ConfigError> {
        let d = &self.drafts[c];
        d.fwknopd_valid().map_err(|why| {
            line_err(
                &d.file,
                d.line,
                format!(
                    "stanza SOURCE {}: {why} (fwknopd refuses the file: \"Data error in access file\")",
                    d.shown_source()
                ),
            )
        })
    }

    fn finish(self, access: &Path) -> Result<FwknopConf, ConfigError> {
        let Parser {
            fwknopd,
            drafts,
            mut global,
            legacy,
            ..
        } = self;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut stanzas = Vec::new();
        let mut refused = Vec::new();
        let mut warnings = Vec::new();
        for (i, d) in drafts.into_iter().enumerate() {
            match finalize(d, i + 1, now, legacy)? {
                Ok(s) => {
                    warnings.extend(s.warnings.iter().cloned());
                    stanzas.push(s);
                }
                Err((r, w)) => {
                    warnings.extend(w);
                    warnings.push(format!(
                        "{}:{}: stanza #{} (SOURCE {}) is refused, knockerd does not run it: {}",
                        r.file.display(),
                        r.line,
                        r.number,
                        r.source,
                        r.reasons.join("; ")
                    ));
                    refused.push(r);
                }
            }
        }
        if fwknopd.max_age.is_none() {
            global.push(format!("{}: ENABLE_SPA_PACKET_AGING is N: fwknopd then accepts packets of any age and relies on its replay cache alone; knockerd keeps replay digests only for the age window, so turn aging back on", fwknopd.file.as_deref().unwrap_or(Path::new("fwknopd.conf")).display()));
        }
        if stanzas.is_empty() {
            let reasons: Vec<String> = refused
                .iter()
                .map(|r| {
                    format!(
                        "stanza #{} ({}:{}): {}",
                        r.number,
                        r.file.display(),
                        r.line,
                        r.reasons.join("; ")
                    )
                })
                .collect();
            return Err(plain_err(
                access,
                format!(
                    "no stanza knockerd can run, so it would open nothing: {}",
                    reasons.join(" | ")
                ),
            ));
        }
        let mut all = global.clone();
        all.extend(warnings);
        Ok(FwknopConf {
            access_file: access.to_path_buf(),
            fwknopd_conf: fwknopd.file.clone(),
            stanzas,
            refused,
            spa_port: fwknopd.spa_port,
            max_age: fwknopd.max_age,
            interface: fwknopd.interface.clone(),
            forwarding: fwknopd.forwarding,
            nat_networks: Vec::new(),
            warnings: all,
            global_warnings: global,
        })
    }
}

fn with_context(mut e: ConfigError, at: &Loc, what: &str) -> ConfigError {
    e.message = format!("{} (included by {what} at {at})", e.message);
    e
}
