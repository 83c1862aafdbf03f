//! The clients file: who may use knocker's own SPA and stealth-SYN doors, by public key.
//!
//! `clients = "/etc/knocker/clients.toml"` in knockerd.toml names it. One table per client:
//!
//! ```toml
//! [client.alice]
//! public_key = "base64 X25519 public key"     # from `knocker keygen --identity`
//! doors = ["ssh", "ssh-syn"]                  # optional: default every spa/syn door
//! open = ["tcp/22"]                           # optional: a subset of the door's open list
//! open_for = "30m"                            # optional: caps how long this client's grants last
//! ```
//!
//! The file holds public keys only, so it may be world-readable (0644). It is read like the
//! configuration: bounded in size, unknown keys refused, every error as `file:line: what`.
//! `knockerd enroll` appends to it with [`append`], keeping the admin's comments and layout.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knocker_engine::MAX_OPEN_FOR;
use knocker_wire::identity::PublicKey;
use knocker_wire::Service;
use serde::Deserialize;
use toml::Spanned;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::config::{fmt_duration, parse_duration, read_bounded, ConfigError, Ctx};

/// Where the clients file is unless knockerd.toml says otherwise.
pub use crate::config::DEFAULT_CLIENTS;

/// The most services a client's `open` may list (an SPA request carries at most 16).
pub const MAX_OPEN: usize = 16;

/// Written at the top of a clients file that [`append`] creates.
const NEW_FILE_HEADER: &str = "\
# knockerd's clients: who may use its spa and syn doors, by X25519 public key.
# `knockerd enroll NAME --public-key KEY --server HOST` appends to this file and keeps comments.
#
#   [client.NAME]
#   public_key = \"...\"            # the client's `knocker keygen --identity` public key
#   doors = [\"ssh\"]               # optional: the doors it may use (default: every spa/syn door)
#   open = [\"tcp/22\"]             # optional: only these of a door's services
#   open_for = \"30m\"              # optional: caps how long its grants last

";

/// One enrolled client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub public_key: PublicKey,
    /// The doors it may use; `None`: every spa and syn door.
    pub doors: Option<Vec<String>>,
    /// The services it may open (within a door's own `open`); `None`: all of the door's.
    pub open: Option<Vec<Service>>,
    /// The longest grant it gets; `None`: the door's own limit.
    pub open_for: Option<Duration>,
    /// Line of the `[client.NAME]` header, for messages.
    pub line: usize,
}

impl Client {
    /// Whether this client may use door `door` at all.
    pub fn may_use(&self, door: &str) -> bool {
        self.doors
            .as_ref()
            .is_none_or(|d| d.iter().any(|n| n == door))
    }

    /// Whether this client may open `service` (the door's own `open` is checked elsewhere).
    pub fn may_open(&self, service: Service) -> bool {
        self.open.as_ref().is_none_or(|o| o.contains(&service))
    }

    /// How long a grant of `asked` lasts for this client: capped by its `open_for`.
    pub fn cap(&self, asked: Duration) -> Duration {
        match self.open_for {
            Some(max) => asked.min(max),
            None => asked,
        }
    }
}

/// The clients file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clients {
    pub path: PathBuf,
    pub clients: Vec<Client>,
}

impl Clients {
    pub fn get(&self, name: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// The client holding `key`, if one does (keys are unique in a valid file).
    pub fn by_key(&self, key: &PublicKey) -> Option<&Client> {
        self.clients.iter().find(|c| c.public_key == *key)
    }

    /// Checks every client's `doors` against the doors knockerd has: `is_door(name)` says
    /// whether `name` is a spa or syn door of the configuration. A client naming any other door
    /// is refused, as `path:line: client "alice": ...`.
    pub fn check_doors(&self, is_door: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        for c in &self.clients {
            for d in c.doors.iter().flatten() {
                if !is_door(d) {
                    return Err(at(
                        &self.path,
                        Some(c.line),
                        format!(
                            "client {:?}: door {d:?} is not a spa or syn door of the configuration",
                            c.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    client: BTreeMap<String, Spanned<RawClient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    public_key: Option<Spanned<String>>,
    doors: Option<Spanned<Vec<Spanned<String>>>>,
    open: Option<Spanned<Vec<Spanned<String>>>>,
    open_for: Option<Spanned<RawDuration>>,
}

/// `30` (seconds) or `"30s"`, `"5m"`, `"2h"`, `"1d"`, as in knockerd.toml.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

/// A configuration error in the clients file at `path` (and `line`, when there is one).
fn at(path: &Path, line: Option<usize>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// A client name that breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client name {0:?}: use 1 to 32 letters, digits, '-' or '_'")]
pub struct NameError(pub String);

/// Why [`append`] did not enroll a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("no doors given: name at least one, or none for every door")]
    NoDoors,
    #[error("{0:?} is not a door name")]
    DoorName(String),
    /// The clients file cannot be read, is not valid, already holds the client, or cannot be
    /// written.
    #[error(transparent)]
    File(#[from] ConfigError),
}

/// A client's name: what the logs and `enroll` call it.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let plain = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        Ok(())
    } else {
        Err(NameError(name.to_string()))
    }
}

/// Whether `name` could be a door's name (the configuration's rule).
fn door_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads and validates the clients file.
pub fn load(path: &Path) -> Result<Clients, ConfigError> {
    let bytes = read_bounded(path)?;
    let text =
        String::from_utf8(bytes).map_err(|_| at(path, None, "cannot read: not UTF-8 text"))?;
    parse(path, &text)
}

/// Parses and validates the text of a clients file; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Clients, ConfigError> {
    let cx = Ctx { file: path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        at(
            path,
            e.span().map(|s| cx.line_of(s.start)),
            super::toml_message(&e),
        )
    })?;
    // In the file's order, so that a duplicate key is reported where it is repeated.
    let mut tables: Vec<(&String, &Spanned<RawClient>)> = raw.client.iter().collect();
    tables.sort_by_key(|(_, t)| t.span().start);
    let mut clients: Vec<Client> = Vec::new();
    for (name, table) in tables {
        let span = table.span();
        let c = table.get_ref();
        let who = format!("client {name:?}");
        if let Err(e) = check_name(name) {
            return cx.err(span, e.to_string());
        }
        let Some(key) = &c.public_key else {
            return cx.err(
                span,
                format!("{who} has no `public_key`: give the key its `knocker keygen --identity` printed"),
            );
        };
        let public_key = PublicKey::from_base64(key.get_ref().trim())
            .or_else(|e| cx.err(key.span(), format!("{who}: public_key: {e}")))?;
        if let Some(other) = clients.iter().find(|o| o.public_key == public_key) {
            return cx.err(
                key.span(),
                format!(
                    "{who} has the same public key as client {:?} (line {}): every client has \
                     its own key",
                    other.name, other.line
                ),
            );
        }
        let doors = match &c.doors {
            None => None,
            Some(list) => {
                if list.get_ref().is_empty() {
                    return cx.err(
                        list.span(),
                        format!(
                            "{who}: doors is empty: list its doors, or remove `doors` to let it \
                             use every spa and syn door"
                        ),
                    );
                }
                let mut names: Vec<String> = Vec::new();
                for d in list.get_ref() {
                    let n = d.get_ref();
                    if !door_name_ok(n) {
                        return cx.err(d.span(), format!("{who}: doors: {n:?} is not a door name"));
                    }
                    if names.contains(n) {
                        return cx.err(d.span(), format!("{who}: doors: {n:?} is listed twice"));
                    }
                    names.push(n.clone());
                }
                Some(names)
            }
        };
        let open = match &c.open {
            None => None,
            Some(list) => {
                if !(1..=MAX_OPEN).contains(&list.get_ref().len()) {
                    return cx.err(
                        list.span(),
                        format!("{who}: open: list 1 to {MAX_OPEN} services, or remove `open`"),
                    );
                }
                let mut services: Vec<Service> = Vec::new();
                for s in list.get_ref() {
                    let service: Service = s
                        .get_ref()
                        .parse()
                        .or_else(|e| cx.err(s.span(), format!("{who}: open: {e}")))?;
                    if services.contains(&service) {
                        return cx.err(s.span(), format!("{who}: open: {service} is listed twice"));
                    }
                    services.push(service);
                }
                Some(services)
            }
        };
        let open_for = match &c.open_for {
            None => None,
            Some(v) => {
                let d = match v.get_ref() {
                    RawDuration::Seconds(n) => u64::try_from(*n)
                        .map(Duration::from_secs)
                        .map_err(|_| format!("open_for = {n}: a duration cannot be negative")),
                    RawDuration::Text(t) => parse_duration(t).map_err(|e| format!("open_for: {e}")),
                };
                let d = d.or_else(|e| cx.err(v.span(), format!("{who}: {e}")))?;
                if d < Duration::from_secs(1) || d > MAX_OPEN_FOR {
                    return cx.err(
                        v.span(),
                        format!(
                            "{who}: open_for must be 1s to {}",
                            fmt_duration(MAX_OPEN_FOR)
                        ),
                    );
                }
                Some(d)
            }
        };
        clients.push(Client {
            name: name.clone(),
            public_key,
            doors,
            open,
            open_for,
            line: cx.line_of(span.start),
        });
    }
    Ok(Clients {
        path: path.to_path_buf(),
        clients,
    })
}

/// Adds `[client.NAME]` with `key` (and `doors`, when given) at the end of the clients file,
/// keeping everything already in it, comments included. Creates the file (mode 0644, with a
/// header explaining the format) and its directory if missing. Refuses a name or a key that is
/// already enrolled, and a file that is not valid to begin with (so a typo is reported, never
/// carried along). The file is replaced in one step (a temporary file renamed over it), keeping
/// its mode and owner.
pub fn append(
    path: &Path,
    name: &str,
    key: &PublicKey,
    doors: Option<&[String]>,
) -> Result<(), AppendError> {
    check_name(name)?;
    if let Some(doors) = doors {
        if doors.is_empty() {
            return Err(AppendError::NoDoors);
        }
        if let Some(bad) = doors.iter().find(|d| !door_name_ok(d)) {
            return Err(AppendError::DoorName(bad.clone()));
        }
    }
    let existing = match fs::symlink_metadata(path) {
        Ok(_) => {
            let bytes = read_bounded(path)?;
            Some(
                String::from_utf8(bytes)
                    .map_err(|_| at(path, None, "cannot read: not UTF-8 text"))?,
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(at(path, None, format!("cannot read: {e}")).into()),
    };
    let text = existing.as_deref().unwrap_or("");
    let clients = parse(path, text)?;
    if let Some(c) = clients.get(name) {
        return Err(at(
            path,
            Some(c.line),
            format!(
                "client {name:?} is already enrolled: remove its table to enroll it again, or \
                 choose another name"
            ),
        )
        .into());
    }
    if let Some(c) = clients.by_key(key) {
        return Err(at(
            path,
            Some(c.line),
            format!("this public key is already enrolled as client {:?}", c.name),
        )
        .into());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| at(path, None, e.message()))?;
    // At the very end of the file: what trails the last table (comments) stays above the new one.
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    doc.set_trailing("");
    let item = doc.entry("client").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    // `client = { ... }` is valid TOML too; turn it into sections that can be added to.
    if let Item::Value(Value::InlineTable(inline)) = item {
        let mut table = std::mem::take(inline).into_table();
        table.set_implicit(true);
        *item = Item::Table(table);
    }
    let table = item
        .as_table_mut()
        .ok_or_else(|| at(path, None, "`client` must be a table of clients"))?;
    let mut entry = Table::new();
    entry.insert("public_key", toml_edit::value(key.to_base64()));
    if let Some(doors) = doors {
        let mut list = Array::new();
        for d in doors {
            list.push(d.as_str());
        }
        entry.insert("doors", toml_edit::value(list));
    }
    if !text.trim().is_empty() {
        entry.decor_mut().set_prefix(format!("{trailing}\n"));
    }
    table.insert(name, Item::Table(entry));

    let mut new_text = doc.to_string();
    if existing.is_none() {
        new_text.insert_str(0, NEW_FILE_HEADER);
    }
    // A bug here must never leave a file knockerd cannot read.
    let check = parse(path, &new_text)?;
    if check.get(name).map(|c| &c.public_key) != Some(key) {
        return Err(at(
            path,
            None,
            "internal error: the new client did not read back",
        )
        .into());
    }
    write_replacing(path, new_text.as_bytes())
        .map_err(|e| at(path, None, format!("cannot write: {e}")).into())
}

/// Writes `bytes` over `path` in one step: mode and owner of the old file when there is one,
/// else 0644 (the parent is made 0755 if missing).
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    knocker_wire::files::replace_keeping(path, bytes, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ALICE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const BOB: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_base64(text).expect("key")
    }

    fn p(text: &str) -> Result<Clients, String> {
        parse(Path::new("c.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_format_parses() {
        let text = format!(
            "# enrolled\n[client.alice]\npublic_key = \"{ALICE}\"\ndoors = [\"ssh\", \"ssh-syn\"]\n\
             open = [\"tcp/22\"]\nopen_for = \"30m\"\n\n[client.bob]\npublic_key = \"{BOB}\"\n"
        );
        let c = p(&text).expect("valid");
        assert_eq!(c.clients.len(), 2);
        let alice = c.get("alice").expect("alice");
        assert_eq!(alice.public_key, key(ALICE));
        assert_eq!(
            alice.doors.as_deref(),
            Some(&["ssh".to_string(), "ssh-syn".to_string()][..])
        );
        assert_eq!(alice.open.as_deref(), Some(&[Service::tcp(22)][..]));
        assert_eq!(alice.open_for, Some(Duration::from_secs(1800)));
        assert_eq!(alice.line, 2);
        assert!(alice.may_use("ssh") && !alice.may_use("web"));
        assert!(alice.may_open(Service::tcp(22)) && !alice.may_open(Service::tcp(443)));
        assert_eq!(
            alice.cap(Duration::from_secs(3600)),
            Duration::from_secs(1800)
        );
        let bob = c.by_key(&key(BOB)).expect("bob");
        assert_eq!(bob.name, "bob");
        assert_eq!(bob.line, 8);
        assert!(bob.may_use("anything") && bob.may_open(Service::udp(53)));
        assert_eq!(bob.cap(Duration::from_secs(60)), Duration::from_secs(60));
        assert!(c.check_doors(|d| d == "ssh" || d == "ssh-syn").is_ok());
        let e = c
            .check_doors(|d| d == "ssh")
            .expect_err("unknown door")
            .to_string();
        assert!(
            e.starts_with("c.toml:2: client \"alice\": door \"ssh-syn\""),
            "{e}"
        );
        assert!(p("").expect("empty").clients.is_empty());
        assert_eq!(
            p(&format!(
                "[client.a]\npublic_key = \"{ALICE}\"\nopen_for = 90\n"
            ))
            .expect("seconds")
            .clients[0]
                .open_for,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn mistakes_name_the_line() {
        let a = format!("[client.alice]\npublic_key = \"{ALICE}\"\n");
        let cases: Vec<(String, &str, &str)> = vec![
            (format!("{a}bogus = 1\n"), "c.toml:3:", "bogus"),
            (format!("{a}\n[clients.x]\n"), "c.toml:4:", "clients"),
            (
                "[client.alice]\ndoors = [\"ssh\"]\n".into(),
                "c.toml:1:",
                "no `public_key`",
            ),
            (
                "[client.alice]\npublic_key = \"nope\"\n".into(),
                "c.toml:2:",
                "public_key",
            ),
            (
                format!("{a}\n[client.bob]\npublic_key = \"{ALICE}\"\n"),
                "c.toml:5:",
                "same public key as client \"alice\" (line 1)",
            ),
            (format!("{a}\n[client.alice]\n"), "c.toml:4:", "duplicate"),
            (
                format!("[client.\"a b\"]\npublic_key = \"{ALICE}\"\n"),
                "c.toml:1:",
                "client name \"a b\"",
            ),
            (format!("{a}doors = []\n"), "c.toml:3:", "doors is empty"),
            (
                format!("{a}doors = [\"ssh\", \"ssh\"]\n"),
                "c.toml:3:",
                "\"ssh\" is listed twice",
            ),
            (
                format!("{a}doors = [\"a/b\"]\n"),
                "c.toml:3:",
                "not a door name",
            ),
            (format!("{a}open = [\"tcp/70000\"]\n"), "c.toml:3:", "open:"),
            (format!("{a}open = []\n"), "c.toml:3:", "list 1 to 16"),
            (
                format!("{a}open = [\"22\", \"tcp/22\"]\n"),
                "c.toml:3:",
                "tcp/22 is listed twice",
            ),
            (
                format!("{a}open_for = \"3 weeks\"\n"),
                "c.toml:3:",
                "open_for",
            ),
            (format!("{a}open_for = -5\n"), "c.toml:3:", "negative"),
            (
                format!("{a}open_for = \"2d\"\n"),
                "c.toml:3:",
                "open_for must be 1s to",
            ),
            (
                format!("{a}open_for = 0\n"),
                "c.toml:3:",
                "open_for must be",
            ),
        ];
        for (text, at, needle) in cases {
            let e = p(&text).expect_err(&text);
            assert!(e.starts_with(at) && e.contains(needle), "{e}\n---\n{text}");
        }
    }

    #[test]
    fn append_creates_keeps_comments_and_refuses_duplicates() {
        let tmp = crate::TestDir::new("clients");
        let path = tmp.0.join("etc/clients.toml");
        append(&path, "alice", &key(ALICE), None).expect("create");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# knockerd's clients"), "{text}");
        let c = load(&path).expect("valid");
        assert_eq!(c.clients.len(), 1);
        assert_eq!(c.clients[0].doors, None);

        // The admin's comments and layout survive the next append.
        let edited = format!("{text}# alice is the laptop\n");
        fs::write(&path, &edited).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let doors = ["ssh".to_string(), "ssh-syn".to_string()];
        append(&path, "bob", &key(BOB), Some(&doors)).expect("append");
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(&edited), "{text}");
        assert!(
            text.ends_with(&format!(
                "\n[client.bob]\npublic_key = \"{BOB}\"\ndoors = [\"ssh\", \"ssh-syn\"]\n"
            )),
            "{text}"
        );
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o640,
            "the mode is kept"
        );
        let c = load(&path).expect("valid");
        assert_eq!(
            c.clients
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(
            c.get("bob").expect("bob").doors.as_deref(),
            Some(&doors[..])
        );

        // Refused: a name or a key already there, a bad name, a broken file.
        let e = append(&path, "alice", &key(BOB), None)
            .expect_err("name")
            .to_string();
        assert!(e.contains("already enrolled"), "{e}");
        let e = append(&path, "carol", &key(ALICE), None)
            .expect_err("key")
            .to_string();
        assert!(e.contains("already enrolled as client \"alice\""), "{e}");
        let e = append(&path, "a b", &key(ALICE), None)
            .expect_err("name")
            .to_string();
        assert!(e.contains("client name"), "{e}");
        let before = fs::read_to_string(&path).expect("read");
        fs::write(&path, format!("{before}oops = 1\n")).expect("write");
        let e = load(&path).expect_err("broken").to_string();
        let lines = before.lines().count() + 1;
        assert!(
            e.starts_with(&format!("{}:{lines}:", path.display())),
            "{e}"
        );
        let other = "bW9yZSBieXRlcyBmb3IgYW4gaWRlbnRpdHkga2V5ISE=";
        assert!(append(&path, "carol", &key(other), None).is_err());
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn append_to_an_inline_table() {
        let tmp = crate::TestDir::new("clients");
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let path = tmp.0.join("c.toml");
        fs::write(
            &path,
            format!("client = {{ alice = {{ public_key = \"{ALICE}\" }} }}\n"),
        )
        .expect("write");
        append(&path, "bob", &key(BOB), None).expect("append");
        let c = load(&path).expect("valid");
        assert_eq!(c.clients.len(), 2);
    }
}
