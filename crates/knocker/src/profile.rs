//! Named knock profiles: `knocker knock myserver` knocks a saved sequence.
//!
//! They live in `profiles.toml` in knocker's config directory. The file is meant to be edited by
//! hand as well as by `knocker profile add/remove`, so reading reports mistakes as `file:line`,
//! and writing edits the document in place (comments and layout survive) and replaces the file
//! atomically, readable by its owner only: a static sequence is a secret.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process;

use knocker_engine::{Proto, Service};
use serde::Deserialize;
use toml::Spanned;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::knock::{self, Family};

pub const FILE_NAME: &str = "profiles.toml";

/// Written at the top of a profiles file that `profile add` creates.
const NEW_FILE_HEADER: &str = "\
# knocker profiles: `knocker knock NAME` knocks the sequence of [profile.NAME] on its host.
# `knocker profile add/remove` edit this file and keep hand-made changes. See `knocker --help`.

";

/// A saved knock: where, what, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub host: String,
    pub sequence: Vec<Service>,
    /// Milliseconds to wait after each knock.
    pub delay_ms: u32,
    pub family: Family,
}

pub type Profiles = BTreeMap<String, Profile>;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot tell where profiles live: set KNOCKER_CONFIG_DIR, XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}{}: {message}", .path.display(), location(.at))]
    Malformed {
        path: PathBuf,
        /// Line and column, both counted from 1, when the problem has a place in the file.
        at: Option<(usize, usize)>,
        message: String,
    },
    #[error("no profile named {name:?} in {}", .path.display())]
    NotFound { name: String, path: PathBuf },
    #[error("profile {name:?} already exists in {}: use --force to replace it", .path.display())]
    Exists { name: String, path: PathBuf },
    #[error("bad profile name {0:?}: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64)")]
    BadName(String),
    #[error("bad host {0:?}: a host is a name or an address, without spaces")]
    BadHost(String),
}

fn location(at: &Option<(usize, usize)>) -> String {
    match at {
        Some((line, column)) => format!(":{line}:{column}"),
        None => String::new(),
    }
}

/// Names are what users type after `knocker knock`, so they stay plain.
pub fn check_name(name: &str) -> Result<(), ProfileError> {
    let plain = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(())
    } else {
        Err(ProfileError::BadName(name.to_string()))
    }
}

pub fn check_host(host: &str) -> Result<(), ProfileError> {
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(ProfileError::BadHost(host.to_string()))
    } else {
        Ok(())
    }
}

// What the file holds, with the places of the values that need checking beyond their type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    profile: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    host: Spanned<String>,
    sequence: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    delay_ms: u32,
    family: Option<Spanned<toml::Value>>,
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Reads profiles from the text of a profiles file; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Profiles, ProfileError> {
    let malformed = |span: Option<Range<usize>>, message: String| ProfileError::Malformed {
        path: path.to_path_buf(),
        at: span.map(|s| line_column(text, s.start)),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        // toml's message may run over several lines; one line reads better after `file:line:`.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        malformed(e.span(), message)
    })?;

    let mut profiles = Profiles::new();
    for (name, raw) in raw.profile {
        let host = raw.host.get_ref();
        check_host(host)
            .map_err(|e| malformed(Some(raw.host.span()), format!("profile {name:?}: {e}")))?;
        if raw.sequence.get_ref().is_empty() {
            return Err(malformed(
                Some(raw.sequence.span()),
                format!("profile {name:?}: the sequence is empty: give at least one port"),
            ));
        }
        let mut sequence = Vec::new();
        for port in raw.sequence.get_ref() {
            let service = knock::parse_port(port.get_ref(), Proto::Tcp)
                .map_err(|e| malformed(Some(port.span()), format!("profile {name:?}: {e}")))?;
            sequence.push(service);
        }
        let family = match &raw.family {
            None => Family::Any,
            Some(value) => family_of(value.get_ref()).ok_or_else(|| {
                malformed(
                    Some(value.span()),
                    format!("profile {name:?}: family must be \"any\", \"4\" or \"6\""),
                )
            })?,
        };
        profiles.insert(
            name,
            Profile {
                host: host.clone(),
                sequence,
                delay_ms: raw.delay_ms,
                family,
            },
        );
    }
    Ok(profiles)
}

/// `family = "6"` is the documented form; `family = 6` is an easy slip, and means the same.
fn family_of(value: &toml::Value) -> Option<Family> {
    match value {
        toml::Value::String(s) => s.parse().ok(),
        toml::Value::Integer(4) => Some(Family::V4),
        toml::Value::Integer(6) => Some(Family::V6),
        _ => None,
    }
}

/// The TOML table of one profile, as `profile add` writes it and `profile show` prints it.
fn profile_table(profile: &Profile) -> Table {
    let mut sequence = Array::new();
    for service in &profile.sequence {
        sequence.push(knock::knock_syntax(*service));
    }
    let mut table = Table::new();
    table.insert("host", toml_edit::value(profile.host.as_str()));
    table.insert("sequence", toml_edit::value(sequence));
    table.insert("delay_ms", toml_edit::value(i64::from(profile.delay_ms)));
    table.insert("family", toml_edit::value(profile.family.as_str()));
    table
}

fn implicit_table() -> Table {
    let mut table = Table::new();
    // No bare `[profile]` header: each profile is its own `[profile.NAME]` section.
    table.set_implicit(true);
    table
}

/// The `[profile]` table of a document, made if missing.
fn profiles_mut<'d>(doc: &'d mut DocumentMut, path: &Path) -> Result<&'d mut Table, ProfileError> {
    let item = doc
        .entry("profile")
        .or_insert_with(|| Item::Table(implicit_table()));
    // `profile = { ... }` is valid TOML too; turn it into sections we can add to.
    if let Item::Value(Value::InlineTable(inline)) = item {
        let mut table = std::mem::take(inline).into_table();
        table.set_implicit(true);
        *item = Item::Table(table);
    }
    item.as_table_mut().ok_or_else(|| ProfileError::Malformed {
        path: path.to_path_buf(),
        at: None,
        message: "`profile` must be a table of profiles".to_string(),
    })
}

/// The part of the text above a section that a blank line separates from it, if it holds a
/// comment; ends with that blank line.
fn detached_comments(prefix: &str) -> Option<&str> {
    let mut end = None;
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        offset += line.len();
        if line.trim().is_empty() {
            end = Some(offset);
        }
    }
    let kept = &prefix[..end?];
    kept.contains('#').then_some(kept)
}

/// One profile as a `[profile.NAME]` section, ready to paste into a profiles file.
pub fn render(name: &str, profile: &Profile) -> String {
    let mut profiles = implicit_table();
    profiles.insert(name, Item::Table(profile_table(profile)));
    let mut doc = DocumentMut::new();
    doc.insert("profile", Item::Table(profiles));
    doc.to_string()
}

/// Where the profiles file is, and the operations on it.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// `$KNOCKER_CONFIG_DIR/profiles.toml`, else `$XDG_CONFIG_HOME/knocker/profiles.toml`, else
    /// `$HOME/.config/knocker/profiles.toml`.
    pub fn from_env() -> Result<Store, ProfileError> {
        Store::locate(|name| std::env::var_os(name))
    }

    fn locate(var: impl Fn(&str) -> Option<OsString>) -> Result<Store, ProfileError> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = set("KNOCKER_CONFIG_DIR") {
            return Ok(Store::in_dir(dir));
        }
        // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
        if let Some(config) = set("XDG_CONFIG_HOME").filter(|d| d.is_absolute()) {
            return Ok(Store::in_dir(config.join("knocker")));
        }
        match set("HOME") {
            Some(home) => Ok(Store::in_dir(home.join(".config").join("knocker"))),
            None => Err(ProfileError::NoConfigDir),
        }
    }

    pub fn in_dir(dir: impl Into<PathBuf>) -> Store {
        Store {
            path: dir.into().join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(
        &self,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> ProfileError {
        let path = path.to_path_buf();
        move |source| ProfileError::Io {
            action,
            path,
            source,
        }
    }

    /// The file's text, or `None` if there is no file yet.
    fn read_text(&self) -> Result<Option<String>, ProfileError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read", &self.path)(e)),
        }
    }

    /// Every profile; none if the file does not exist.
    pub fn load(&self) -> Result<Profiles, ProfileError> {
        match self.read_text()? {
            Some(text) => parse(&text, &self.path),
            None => Ok(Profiles::new()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Profile, ProfileError> {
        self.load()?
            .remove(name)
            .ok_or_else(|| ProfileError::NotFound {
                name: name.to_string(),
                path: self.path.clone(),
            })
    }

    /// Saves `profile` as `name`; an existing profile of that name is replaced only if `replace`.
    pub fn add(&self, name: &str, profile: &Profile, replace: bool) -> Result<(), ProfileError> {
        check_name(name)?;
        check_host(&profile.host)?;
        self.edit(|doc, path| {
            // In a file of comments only, they sit at the end; keep them above the first profile.
            let has_profiles = doc
                .get("profile")
                .and_then(Item::as_table_like)
                .is_some_and(|t| !t.is_empty());
            let mut header = None;
            if !has_profiles {
                let trailing = doc.trailing().as_str().unwrap_or("").trim().to_string();
                if !trailing.is_empty() {
                    header = Some(format!("{trailing}\n\n"));
                    doc.set_trailing("");
                }
            }
            let profiles = profiles_mut(doc, path)?;
            let mut table = profile_table(profile);
            if let Some(header) = header {
                table.decor_mut().set_prefix(header);
            }
            if let Some(old) = profiles.get(name) {
                if !replace {
                    return Err(ProfileError::Exists {
                        name: name.to_string(),
                        path: path.to_path_buf(),
                    });
                }
                // A replaced profile keeps its place in the file and the comments above it.
                if let Some(old) = old.as_table() {
                    *table.decor_mut() = old.decor().clone();
                    table.set_position(old.position());
                }
            }
            profiles.insert(name, Item::Table(table));
            Ok(())
        })
    }

    pub fn remove(&self, name: &str) -> Result<(), ProfileError> {
        self.edit(|doc, path| {
            let profiles = profiles_mut(doc, path)?;
            let Some(removed) = profiles.remove(name) else {
                return Err(ProfileError::NotFound {
                    name: name.to_string(),
                    path: path.to_path_buf(),
                });
            };
            // Comments right above a profile go with it; those a blank line sets apart (the
            // file's header, say) are handed to the next section, or to the end of the file.
            let Some(removed) = removed.as_table() else {
                return Ok(());
            };
            let prefix = removed.decor().prefix().and_then(|p| p.as_str());
            let Some(kept) = prefix.and_then(detached_comments) else {
                return Ok(());
            };
            let after = removed.position();
            let next = profiles
                .iter_mut()
                .filter_map(|(_, item)| item.as_table_mut())
                .filter(|t| t.position() > after)
                .min_by_key(|t| t.position());
            match next {
                Some(next) => {
                    let own = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
                    let joined = format!("{kept}{}", own.trim_start_matches(['\n', '\r']));
                    next.decor_mut().set_prefix(joined);
                }
                None => {
                    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
                    doc.set_trailing(format!("{kept}{trailing}"));
                }
            }
            Ok(())
        })
    }

    /// Applies `change` to the document and writes the result back. The file must be valid
    /// before (so a typo is reported, not silently carried along) and is checked again after,
    /// so a bug here can never leave an unreadable file behind.
    fn edit(
        &self,
        change: impl FnOnce(&mut DocumentMut, &Path) -> Result<(), ProfileError>,
    ) -> Result<(), ProfileError> {
        let existing = self.read_text()?;
        let text = existing.as_deref().unwrap_or("");
        parse(text, &self.path)?;
        let mut doc: DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| ProfileError::Malformed {
                    path: self.path.clone(),
                    at: e.span().map(|s| line_column(text, s.start)),
                    message: e.message().to_string(),
                })?;
        change(&mut doc, &self.path)?;

        let mut new_text = doc.to_string().trim_start_matches(['\n', '\r']).to_string();
        if existing.is_none() {
            new_text.insert_str(0, NEW_FILE_HEADER);
        }
        parse(&new_text, &self.path)?;
        self.write_atomic(&new_text)
    }

    /// Replaces the file in one step (write a temporary file beside it, then rename), so a
    /// reader never sees half a file and a crash never loses the old one.
    fn write_atomic(&self, text: &str) -> Result<(), ProfileError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(self.io_error("create directory", dir))?;
            // The umask may have taken bits away from 0700; make it exact.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(self.io_error("set permissions of", dir))?;
        }
        let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", process::id()));
        // A leftover from a crashed run of this pid would make create_new fail; removing a
        // symlink removes the link, never its target.
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_error("write", &self.path)(e));
        }
        // Make the rename itself durable.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io_error("sync directory", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "knocker-profile-test-{}-{}",
                process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> Profile {
        Profile {
            host: "server.example.org".to_string(),
            sequence: vec![Service::tcp(7000), Service::udp(9000), Service::tcp(8000)],
            delay_ms: 0,
            family: Family::Any,
        }
    }

    fn malformed_at(text: &str) -> (Option<(usize, usize)>, String) {
        match parse(text, Path::new("p.toml")) {
            Err(ProfileError::Malformed { at, message, .. }) => (at, message),
            other => panic!("expected a malformed-file error, got {other:?}"),
        }
    }

    #[test]
    fn the_documented_format_parses() {
        let text = r#"
[profile.myserver]
host = "server.example.org"
sequence = ["7000", "9000:udp", "8000"]   # same syntax as the command line
delay_ms = 0        # optional
family = "any"      # optional: "any", "4" or "6"

[profile.other]
host = "2001:db8::1"
sequence = ["udp/1", "2/tcp"]
delay_ms = 250
family = "6"
"#;
        let profiles = parse(text, Path::new("p.toml")).expect("valid");
        assert_eq!(profiles["myserver"], sample());
        assert_eq!(
            profiles["other"],
            Profile {
                host: "2001:db8::1".to_string(),
                sequence: vec![Service::udp(1), Service::tcp(2)],
                delay_ms: 250,
                family: Family::V6,
            }
        );
        assert_eq!(parse("", Path::new("p.toml")).expect("empty").len(), 0);
    }

    #[test]
    fn optional_fields_default_and_family_may_be_a_number() {
        let text = "[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\nfamily = 4\n";
        let a = &parse(text, Path::new("p.toml")).expect("valid")["a"];
        assert_eq!(a.delay_ms, 0);
        assert_eq!(a.family, Family::V4);
    }

    #[test]
    fn errors_point_at_the_line() {
        // A syntax error.
        let (at, msg) = malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"\n");
        assert_eq!(at.map(|a| a.0), Some(3), "{msg}");
        // A bad port, in the middle of the array.
        let (at, msg) = malformed_at(
            "\n[profile.a]\nhost = \"h\"\nsequence = [\n  \"7000\",\n  \"70000\",\n]\n",
        );
        assert_eq!(at, Some((6, 3)), "{msg}");
        assert!(msg.contains("bad port \"70000\""), "{msg}");
        assert!(msg.contains("profile \"a\""), "{msg}");
        // A misspelt key.
        let (at, msg) =
            malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\ndealy_ms = 5\n");
        assert_eq!(at.map(|a| a.0), Some(4), "{msg}");
        assert!(msg.contains("dealy_ms"), "{msg}");
        // A wrong type.
        let (at, msg) =
            malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\ndelay_ms = -5\n");
        assert_eq!(at.map(|a| a.0), Some(4), "{msg}");
        // An unknown family.
        let (at, msg) =
            malformed_at("[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\n\nfamily = \"7\"\n");
        assert_eq!(at, Some((5, 10)), "{msg}");
        // An empty sequence.
        let (at, msg) = malformed_at("[profile.a]\nhost = \"h\"\nsequence = []\n");
        assert_eq!(at.map(|a| a.0), Some(3), "{msg}");
        assert!(msg.contains("empty"), "{msg}");
        // A host with a space.
        let (at, _) = malformed_at("[profile.a]\nhost = \"a b\"\nsequence = [\"1\"]\n");
        assert_eq!(at.map(|a| a.0), Some(2));
        // A top-level typo.
        let (at, msg) = malformed_at("# comment\n[profiles.a]\nhost = \"h\"\n");
        assert_eq!(at.map(|a| a.0), Some(2), "{msg}");
    }

    #[test]
    fn the_error_reads_file_line_column_message() {
        let e = parse("[profile.a]\nhost = 5\n", Path::new("/x/profiles.toml")).expect_err("bad");
        let text = e.to_string();
        assert!(text.starts_with("/x/profiles.toml:2:8: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn line_column_counts_from_one_and_in_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2)); // after the two-byte ç
        assert_eq!(line_column(text, 99), (3, 1));
    }

    #[test]
    fn add_show_remove_round_trip_keeps_comments_and_mode() {
        let tmp = TempDir::new();
        let store = Store::in_dir(tmp.0.join("knocker"));
        assert!(store.load().expect("no file yet").is_empty());

        store.add("myserver", &sample(), false).expect("add");
        let other = Profile {
            host: "10.0.0.1".to_string(),
            sequence: vec![Service::udp(1)],
            delay_ms: 200,
            family: Family::V4,
        };
        store.add("other.box", &other, false).expect("add");
        let profiles = store.load().expect("load");
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles["myserver"], sample());
        assert_eq!(profiles["other.box"], other);

        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&tmp.0.join("knocker")), 0o700);

        // Hand edits survive a later add and remove.
        let text = fs::read_to_string(store.path()).expect("read");
        fs::write(store.path(), format!("# my own note\n{text}")).expect("write");
        assert!(matches!(
            store.add("myserver", &other, false),
            Err(ProfileError::Exists { .. })
        ));
        store.add("myserver", &other, true).expect("replace");
        assert_eq!(store.get("myserver").expect("get"), other);
        store.remove("other.box").expect("remove");
        assert!(matches!(
            store.remove("other.box"),
            Err(ProfileError::NotFound { .. })
        ));
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(text.starts_with("# my own note\n"), "{text}");
        assert_eq!(store.load().expect("load").len(), 1);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(tmp.0.join("knocker"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![OsString::from(FILE_NAME)]);
    }

    #[test]
    fn removing_a_profile_takes_its_own_comments_and_keeps_the_header() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        fs::write(
            store.path(),
            "# header\n\n# about a\n[profile.a]\nhost = \"h\"\nsequence = [\"1\"]\n\n\
             [profile.b]\nhost = \"h\"\nsequence = [\"2\"]\n",
        )
        .expect("write");
        store.remove("a").expect("remove a");
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "# header\n\n[profile.b]\nhost = \"h\"\nsequence = [\"2\"]\n"
        );
        store.remove("b").expect("remove b");
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "# header\n\n"
        );
        // And the header goes back above the next profile added.
        store.add("c", &sample(), false).expect("add");
        let text = fs::read_to_string(store.path()).expect("read");
        assert!(text.starts_with("# header\n\n[profile.c]\n"), "{text}");
    }

    #[test]
    fn a_broken_file_is_never_overwritten() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        fs::write(store.path(), "[profile.a\n").expect("write");
        assert!(matches!(
            store.add("b", &sample(), false),
            Err(ProfileError::Malformed { .. })
        ));
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "[profile.a\n"
        );
    }

    #[test]
    fn render_is_a_section_that_parses_back() {
        let text = render("myserver", &sample());
        assert!(text.starts_with("[profile.myserver]\n"), "{text}");
        assert!(
            text.contains("sequence = [\"7000\", \"9000:udp\", \"8000\"]"),
            "{text}"
        );
        assert_eq!(
            parse(&text, Path::new("p")).expect("parse")["myserver"],
            sample()
        );
    }

    #[test]
    fn inline_profile_tables_can_be_added_to() {
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let store = Store::in_dir(&tmp.0);
        fs::write(
            store.path(),
            "profile = { a = { host = \"h\", sequence = [\"1\"] } }\n",
        )
        .expect("write");
        store.add("b", &sample(), false).expect("add");
        let profiles = store.load().expect("load");
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles["b"], sample());
    }

    #[test]
    fn names_are_plain() {
        for ok in ["myserver", "a", "web-1", "box.lan", "x_y", "9"] {
            check_name(ok).expect(ok);
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "a:b", "ü", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_directory_comes_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let at = |pairs| Store::locate(env(pairs)).map(|s| s.path().to_path_buf());
        assert_eq!(
            at(&[
                ("KNOCKER_CONFIG_DIR", "/k"),
                ("XDG_CONFIG_HOME", "/x"),
                ("HOME", "/h")
            ])
            .expect("dir"),
            Path::new("/k/profiles.toml")
        );
        assert_eq!(
            at(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]).expect("dir"),
            Path::new("/x/knocker/profiles.toml")
        );
        assert_eq!(
            at(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")]).expect("dir"),
            Path::new("/h/.config/knocker/profiles.toml")
        );
        assert_eq!(
            at(&[("KNOCKER_CONFIG_DIR", ""), ("HOME", "/h")]).expect("dir"),
            Path::new("/h/.config/knocker/profiles.toml")
        );
        assert!(matches!(at(&[]), Err(ProfileError::NoConfigDir)));
    }
}
