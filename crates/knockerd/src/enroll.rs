//! Enrolling clients of knocker's own SPA and stealth-SYN doors, and the server's key.
//!
//! `knockerd keygen` makes the server's X25519 private key ([`server_keygen`]). `knockerd enroll`
//! ([`enroll`]) adds a client's public key to the clients file (see
//! [`crate::config::native::clients`]) and prints the profiles the client pastes into its
//! `profiles.toml`, also as a QR code ([`qr`]).
//! A spa profile carries the door's tag key (derived from the server's key and the door's name,
//! so nothing needs storing per door); a syn profile needs none: its key comes from the two
//! public keys.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use knocker_wire::identity::{PrivateKey, PublicKey};
use knocker_wire::Service;
use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

use crate::config::native::clients;
use crate::config::toml_quote;

/// Where the server's private key is kept unless told otherwise.
pub use crate::config::DEFAULT_SERVER_KEY;

/// The identity file the printed profiles name: where `knocker keygen --identity` writes it.
pub const CLIENT_KEY_FILE: &str = "identity.key";

/// The most services a door's `open` list may hold for a profile: an SPA request carries at
/// most 16, and a SYN knock's slot is 4 bits.
pub const MAX_SERVICES: usize = 16;

/// Why a client was not enrolled, or the server's key not made or read.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The clients file refused the name or the entry (its own words).
    #[error("{0}")]
    Clients(String),
    #[error("server {0:?}: give the host name or address the client knocks on, without spaces")]
    BadHost(String),
    #[error(
        "no spa or syn door to enroll the client for: add a door of kind = \"spa\" \
         or \"syn\" to the configuration (or name one with --door)"
    )]
    NoDoors,
    #[error(
        "that is the server's own public key: give the client's, which `knocker \
         keygen --identity` printed on the client"
    )]
    ServersOwnKey,
    /// A key no shared secret comes from (a low-order point): it could never knock.
    #[error("public key {key}: {source}")]
    UselessKey {
        key: PublicKey,
        source: knocker_wire::identity::IdentityError,
    },
    #[error("door {0:?} is given twice")]
    DoorTwice(String),
    #[error("door {0:?} has no port")]
    NoPort(String),
    #[error("door {door:?} opens {count} services: a {kind} door opens 1 to {MAX_SERVICES}")]
    Services {
        door: String,
        count: usize,
        kind: &'static str,
    },
    #[error("cannot make a QR code of {bytes} bytes: {source}")]
    Qr {
        bytes: usize,
        source: qrcode::types::QrError,
    },
    #[error("cannot make a key: {0}")]
    MakeKey(#[source] knocker_wire::KeyError),
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot set permissions of {}: {source}", path.display())]
    SetPermissions { path: PathBuf, source: io::Error },
    #[error(
        "{} already exists: knockerd keygen never replaces a key unless --force (every \
         enrolled client would have to be enrolled again)",
        .0.display()
    )]
    KeyExists(PathBuf),
    #[error("cannot write key file {}: {source}", path.display())]
    WriteKey { path: PathBuf, source: io::Error },
    #[error(transparent)]
    LoadKey(#[from] knocker_wire::keyfile::KeyFileError),
}

/// What a door enrolled for speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollKind {
    /// knocker's own SPA: one UDP datagram (`kind = "spa"`).
    Spa,
    /// Stealth SYN: one TCP SYN per service (`kind = "syn"`).
    Syn,
}

impl EnrollKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollKind::Spa => "spa",
            EnrollKind::Syn => "syn",
        }
    }
}

/// A door of the configuration, as a client's profile needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollDoor {
    pub name: String,
    pub kind: EnrollKind,
    /// spa: the UDP port; syn: the TCP port the SYN goes to.
    pub port: u16,
    /// The door's services, in the door's order (a syn door's slots).
    pub open: Vec<Service>,
    /// How long the door opens when a client does not ask: an spa profile asks for this, so
    /// that `knocker knock` can say how long the door stays open.
    pub open_for: Option<std::time::Duration>,
}

/// `knockerd enroll NAME --public-key KEY --server HOST [--door D]...`.
pub struct EnrollRequest<'a> {
    /// The server's private key (`knockerd keygen`).
    pub server_key: &'a PrivateKey,
    /// The clients file (`clients` in knockerd.toml).
    pub clients_path: &'a Path,
    /// The client's name in the clients file and in the logs.
    pub name: &'a str,
    /// The client's public key, as `knocker keygen --identity` printed it.
    pub public_key: PublicKey,
    /// The host name or address the client knocks on (the profiles' `host`).
    pub server_host: &'a str,
    /// The doors the client may use (every spa and syn door when `--door` is not given).
    pub doors: Vec<EnrollDoor>,
}

/// Enrolls a client: appends `[client.NAME]` to the clients file with its public key and the
/// doors' names (an explicit list, so that a door added later is not opened to it silently),
/// and returns the profiles for the client, one `[profile.DOOR]` per door, as TOML text ready
/// to paste into `~/.config/knocker/profiles.toml` (also fit for [`qr`]).
///
/// Intended help text:
/// `enroll`: "Enroll a client of the spa and syn doors: add its public key to the clients file
/// and print the profiles to give it (text and a QR code)". Long: "Adds [client.NAME] with the
/// public key that `knocker keygen --identity` printed on the client to the clients file (comments
/// kept; a name or key already enrolled is refused), allowed the doors given with --door (default:
/// every spa and syn door), and prints one profile per door: paste them into the client's
/// ~/.config/knocker/profiles.toml, or scan the QR code. A spa profile holds the door's tag key
/// (derived from the server key and the door's name): keep the output private. Restrict the
/// client further (open, open_for) by editing its table in the clients file."
/// `NAME`: "The client's name: 1 to 32 letters, digits, '-' or '_'".
/// `--public-key KEY`: "The client's X25519 public key (base64), from `knocker keygen
/// --identity`". `--server HOST`: "The host name or address the client knocks on".
/// `--door NAME`: "A door the client may use (repeatable; default every spa and syn door)".
/// `--no-qr`: "Print the profiles as text only".
pub fn enroll(req: &EnrollRequest) -> Result<String, EnrollError> {
    clients::check_name(req.name).map_err(|e| EnrollError::Clients(e.to_string()))?;
    let host = req.server_host;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EnrollError::BadHost(host.to_string()));
    }
    if req.doors.is_empty() {
        return Err(EnrollError::NoDoors);
    }
    let server_public = req.server_key.public_key();
    if req.public_key == server_public {
        return Err(EnrollError::ServersOwnKey);
    }
    // A low-order point gives no shared secret: such a key could never knock.
    req.server_key
        .syn_key(&req.public_key)
        .map_err(|source| EnrollError::UselessKey {
            key: req.public_key,
            source,
        })?;

    let mut names: Vec<String> = Vec::new();
    let mut out = format!(
        "# knocker profiles for {:?} on {host}, from `knockerd enroll`: add them to\n\
         # ~/.config/knocker/profiles.toml, mode 0600: a spa profile holds a door key, and\n\
         # knocker refuses it in a file others can read.\n",
        req.name
    );
    for door in &req.doors {
        if names.contains(&door.name) {
            return Err(EnrollError::DoorTwice(door.name.clone()));
        }
        if door.port == 0 {
            return Err(EnrollError::NoPort(door.name.clone()));
        }
        if !(1..=MAX_SERVICES).contains(&door.open.len()) {
            return Err(EnrollError::Services {
                door: door.name.clone(),
                count: door.open.len(),
                kind: door.kind.as_str(),
            });
        }
        names.push(door.name.clone());
        out.push('\n');
        out.push_str(&profile(
            &profile_name(&door.name),
            host,
            door,
            &server_public,
            req.server_key,
        ));
    }
    clients::append(req.clients_path, req.name, &req.public_key, Some(&names))
        .map_err(|e| EnrollError::Clients(e.to_string()))?;
    Ok(out)
}

/// A door's name as a profile name (letters, digits, '.', '_' and '-', starting with a letter
/// or a digit).
fn profile_name(door: &str) -> String {
    if door.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        door.to_string()
    } else {
        format!("door{door}")
    }
}

/// One `[profile.NAME]` section for `door`.
fn profile(
    name: &str,
    host: &str,
    door: &EnrollDoor,
    server_public: &PublicKey,
    server_key: &PrivateKey,
) -> String {
    let open: Vec<String> = door
        .open
        .iter()
        .map(|s| toml_quote(&s.to_string()))
        .collect();
    let mut text = format!(
        "[profile.{name}]\nhost = {}\nkind = {}\nport = {}\nserver_key = {}\n",
        toml_quote(host),
        toml_quote(door.kind.as_str()),
        door.port,
        toml_quote(&server_public.to_base64()),
    );
    if door.kind == EnrollKind::Spa {
        let door_key = server_key.door_key(&door.name);
        text.push_str(&format!(
            "door_key = {}\n",
            toml_quote(&door_key.to_base64())
        ));
    }
    text.push_str(&format!(
        "key_file = {}\nopen = [{}]\n",
        toml_quote(CLIENT_KEY_FILE),
        open.join(", ")
    ));
    if let (EnrollKind::Spa, Some(d)) = (door.kind, door.open_for) {
        text.push_str(&format!("duration = \"{}s\"\n", d.as_secs().max(1)));
    }
    text
}

/// `text` as a QR code for a terminal: two rows of modules per line of text (Unicode half
/// blocks), drawn light-on-dark so that it scans on the usual dark terminal, with the quiet
/// zone around it. Fails only for text too long for a QR code (about 2900 bytes).
pub fn qr(text: &str) -> Result<String, EnrollError> {
    let code =
        QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).map_err(|source| {
            EnrollError::Qr {
                bytes: text.len(),
                source,
            }
        })?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// Writes a new X25519 private key for the server to `path` (one line of base64, mode 0600)
/// and returns its public key. Never replaces an existing file unless `force` (then atomically:
/// a temporary file renamed over it). A missing parent directory is made, mode 0700.
///
/// Intended help text:
/// `keygen`: "Make the server's key for the spa and syn doors (X25519, mode 0600)". Long: "Writes
/// a new X25519 private key to FILE (default /etc/knocker/server.key), readable by its owner
/// only, and prints its public key. Refuses to replace an existing key unless --force: every
/// enrolled client's profiles depend on it (their server_key and door keys), so a new key means
/// enrolling every client again." `--out FILE`: "Where to write the key". `--force`: "Replace an
/// existing key (every client must be enrolled again)".
pub fn server_keygen(path: &Path, force: bool) -> Result<PublicKey, EnrollError> {
    let key = PrivateKey::generate().map_err(EnrollError::MakeKey)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(48));
    bytes.extend_from_slice(key.to_base64().as_bytes());
    bytes.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| EnrollError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        // The umask may have taken bits away from 0700; make it exact.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            EnrollError::SetPermissions {
                path: dir.to_owned(),
                source,
            }
        })?;
    }
    let written = if force {
        knocker_wire::files::replace_atomically(path, &bytes)
    } else {
        knocker_wire::files::create_new_private(path, &bytes)
    };
    written.map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => EnrollError::KeyExists(path.to_owned()),
        _ => EnrollError::WriteKey {
            path: path.to_owned(),
            source,
        },
    })?;
    Ok(key.public_key())
}

/// Reads the server's private key (the key file must be its owner's alone).
pub fn load_server_key(path: &Path) -> Result<PrivateKey, EnrollError> {
    Ok(knocker_wire::keyfile::load_key(
        path,
        PrivateKey::from_base64,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn keygen_writes_a_private_key_once() {
        let tmp = crate::TestDir::new("enroll");
        let path = tmp.0.join("etc/server.key");
        let public = server_keygen(&path, false).expect("keygen");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        let key = load_server_key(&path).expect("load");
        assert_eq!(key.public_key(), public);
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text.len(), 45, "{text:?}");

        let e = server_keygen(&path, false).expect_err("exists");
        assert!(matches!(&e, EnrollError::KeyExists(p) if *p == path), "{e}");
        let e = e.to_string();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        assert_eq!(fs::read_to_string(&path).expect("read"), text);

        let again = server_keygen(&path, true).expect("forced");
        assert_ne!(again, public);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_server_key(&path).expect("load").public_key(), again);
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    fn doors() -> Vec<EnrollDoor> {
        vec![
            EnrollDoor {
                name: "ssh".into(),
                kind: EnrollKind::Spa,
                port: 62201,
                open: vec![Service::tcp(22)],
                open_for: None,
            },
            EnrollDoor {
                name: "ssh-syn".into(),
                kind: EnrollKind::Syn,
                port: 443,
                open: vec![Service::tcp(22), Service::tcp(443)],
                open_for: None,
            },
        ]
    }

    /// The printed profiles, read back as the client's profiles file would hold them.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Printed {
        profile: std::collections::BTreeMap<String, PrintedProfile>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PrintedProfile {
        host: String,
        kind: String,
        port: u16,
        server_key: String,
        door_key: Option<String>,
        key_file: String,
        open: Vec<String>,
    }

    #[test]
    fn enroll_appends_the_client_and_prints_its_profiles() {
        let tmp = crate::TestDir::new("enroll");
        let server = PrivateKey::generate().expect("rng");
        let client = PrivateKey::generate().expect("rng");
        let clients_path = tmp.0.join("clients.toml");
        let req = EnrollRequest {
            server_key: &server,
            clients_path: &clients_path,
            name: "alice",
            public_key: client.public_key(),
            server_host: "203.0.113.1",
            doors: doors(),
        };
        let text = enroll(&req).expect("enroll");
        let printed: Printed = toml::from_str(&text).expect(&text);
        let spa = &printed.profile["ssh"];
        assert_eq!(
            (spa.host.as_str(), spa.kind.as_str(), spa.port),
            ("203.0.113.1", "spa", 62201)
        );
        assert_eq!(spa.server_key, server.public_key().to_base64());
        assert_eq!(
            spa.door_key.as_deref(),
            Some(server.door_key("ssh").to_base64().as_str())
        );
        assert_eq!(spa.key_file, CLIENT_KEY_FILE);
        assert_eq!(spa.open, ["tcp/22"]);
        let syn = &printed.profile["ssh-syn"];
        assert_eq!((syn.kind.as_str(), syn.port), ("syn", 443));
        assert_eq!(syn.door_key, None, "a syn profile needs no door key");
        assert_eq!(
            syn.open,
            ["tcp/22", "tcp/443"],
            "the door's slots, in order"
        );

        let enrolled = clients::load(&clients_path).expect("clients");
        let alice = enrolled.get("alice").expect("alice");
        assert_eq!(alice.public_key, client.public_key());
        assert_eq!(
            alice.doors.as_deref(),
            Some(&["ssh".to_string(), "ssh-syn".to_string()][..])
        );

        // Again: the name and the key are taken, and nothing else changed.
        let before = fs::read_to_string(&clients_path).expect("read");
        let e = enroll(&req).expect_err("twice");
        assert!(
            matches!(&e, EnrollError::Clients(c) if c.contains("already enrolled")),
            "{e}"
        );
        let other = PrivateKey::generate().expect("rng");
        let e = enroll(&EnrollRequest {
            name: "bob",
            public_key: other.public_key(),
            doors: vec![],
            ..req
        })
        .expect_err("no doors");
        assert!(matches!(e, EnrollError::NoDoors), "{e}");
        assert!(e.to_string().contains("no spa or syn door"), "{e}");
        let e = enroll(&EnrollRequest {
            name: "bob",
            public_key: server.public_key(),
            doors: doors(),
            ..req
        })
        .expect_err("the server's key");
        assert!(matches!(e, EnrollError::ServersOwnKey), "{e}");
        assert!(e.to_string().contains("server's own public key"), "{e}");
        let e = enroll(&EnrollRequest {
            name: "bob",
            public_key: PublicKey([0; 32]),
            doors: doors(),
            ..req
        })
        .expect_err("low order");
        assert!(matches!(e, EnrollError::UselessKey { .. }), "{e}");
        assert!(e.to_string().starts_with("public key "), "{e}");
        let e = enroll(&EnrollRequest {
            name: "bob",
            public_key: other.public_key(),
            server_host: "a host",
            doors: doors(),
            ..req
        })
        .expect_err("host");
        assert!(
            matches!(&e, EnrollError::BadHost(h) if h == "a host"),
            "{e}"
        );
        assert!(e.to_string().contains("without spaces"), "{e}");
        let mut many = doors();
        many[1].open = (1..=17).map(Service::tcp).collect();
        let e = enroll(&EnrollRequest {
            name: "bob",
            public_key: other.public_key(),
            doors: many,
            ..req
        })
        .expect_err("17 slots");
        assert!(matches!(e, EnrollError::Services { count: 17, .. }), "{e}");
        assert!(e.to_string().contains("opens 17 services"), "{e}");
        assert_eq!(fs::read_to_string(&clients_path).expect("read"), before);

        // Another client, one door.
        let text = enroll(&EnrollRequest {
            name: "bob",
            public_key: other.public_key(),
            doors: doors().split_off(1),
            ..req
        })
        .expect("bob");
        let printed: Printed = toml::from_str(&text).expect(&text);
        assert_eq!(printed.profile.keys().collect::<Vec<_>>(), ["ssh-syn"]);
        assert_eq!(
            clients::load(&clients_path).expect("clients").clients.len(),
            2
        );
    }

    #[test]
    fn profile_names_are_plain() {
        assert_eq!(profile_name("ssh"), "ssh");
        assert_eq!(profile_name("_x"), "door_x");
    }

    #[test]
    fn qr_codes_are_text_blocks() {
        let code = qr("[profile.ssh]\nhost = \"203.0.113.1\"\n").expect("qr");
        let lines: Vec<&str> = code.lines().collect();
        assert!(lines.len() > 10, "{code}");
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{code}");
        assert!(code.contains('\u{2588}') || code.contains('\u{2580}'));
        assert!(qr(&"x".repeat(5000)).is_err());
    }
}
