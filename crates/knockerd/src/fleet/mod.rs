//! A fleet's one replay memory (`[daemon] shared_state`): every once-only claim a door makes
//! (a request's replay digests, a counter or time step, a one-time line) is also made in a
//! shared store, atomically, so that what opened one server of a fleet opens no other.
//!
//! Local first: the packet worker's own memory (seeded from the ledger) has already refused what
//! this host saw; the store only adds refusals, for what another host saw. The root parent
//! claims in the store *before* it records in its ledger and grants (`daemon::handle_reports`);
//! the worker, sandboxed without a network, never talks to the store. A store that is slow or
//! unreachable costs at most [`CLAIM_TIMEOUT`] once, then is left alone for [`RETRY_AFTER`]
//! (a circuit breaker), and each door's [`DownPolicy`] decides: refuse the grant, or grant on
//! this host's protection alone, with one warning per outage.
//!
//! This module knows nothing of the configuration's doors (no import of `config`): the daemon
//! turns what the worker reported into [`Claim`]s, and a [`Store`] makes them.

pub mod redis_store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

pub use redis_store::RedisStore;

/// The most one claim may take (each read and write of it) before the store counts as down.
pub const CLAIM_TIMEOUT: Duration = Duration::from_millis(50);
/// The most a new connection may take, TLS handshake and authentication included: made once,
/// and again at most once per [`RETRY_AFTER`] while the store is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// After a failure, how long the store is left alone (claims meet the door's policy at once).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Every key knockerd writes starts with this (an ACL user can be limited to `~knocker:*`).
pub const KEY_PREFIX: &str = "knocker:";

/// What a door does while the store cannot be asked (`shared_state_down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownPolicy {
    /// Refuse what needs a fleet-wide once-only claim (the default: fail closed).
    #[default]
    Refuse,
    /// Grant on this host's own replay memory alone, with a warning once per outage.
    Local,
}

impl DownPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DownPolicy::Refuse => "refuse",
            DownPolicy::Local => "local",
        }
    }

    pub fn parse(text: &str) -> Option<DownPolicy> {
        match text {
            "refuse" => Some(DownPolicy::Refuse),
            "local" => Some(DownPolicy::Local),
            _ => None,
        }
    }
}

/// Where the store's password came from (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    None,
    /// `redis://user:PASSWORD@host/`.
    Url,
    /// `shared_state_password_file`, a file only its owner may read.
    File(PathBuf),
}

/// `[daemon] shared_state`, checked: the store's address and credentials, and the doors'
/// policies for when it is down. Its `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedState {
    /// `rediss://`: TLS, the server's certificate checked against Mozilla's roots, built in (or
    /// `ca_file`'s).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    password: Option<Zeroizing<String>>,
    pub password_from: PasswordFrom,
    /// `shared_state_ca_file`: the PEM certificate(s) a `rediss://` server's is checked against.
    pub ca_file: Option<PathBuf>,
    /// `ca_file`'s contents, read with the configuration.
    pub ca_pem: Option<Vec<u8>>,
    /// `[daemon] shared_state_down`: the policy of a door that names none.
    pub down: DownPolicy,
    /// Doors' own `shared_state_down`.
    pub doors: BTreeMap<String, DownPolicy>,
}

/// Why a `shared_state` URL was refused. Never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("shared_state is not a URL like \"redis://USER:PASSWORD@HOST:6379/\" (or rediss:// for TLS)")]
    NotAUrl,
    #[error("shared_state must start with redis:// or rediss:// (TLS); got {0}://")]
    Scheme(String),
    #[error("shared_state names no host: write \"redis://USER:PASSWORD@HOST:6379/\"")]
    NoHost,
    #[error("shared_state's path is a database number, e.g. \"/0\"; got {0:?}")]
    Database(String),
    #[error("shared_state takes no query or fragment (\"?...\", \"#...\"): write the URL alone")]
    Extra,
}

impl SharedState {
    /// Parses `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]` (or `rediss://`).
    pub fn parse_url(text: &str) -> Result<SharedState, UrlError> {
        let scheme = text.split_once("://").map(|(s, _)| s).unwrap_or_default();
        let tls = match scheme {
            "redis" => false,
            "rediss" => true,
            "" => return Err(UrlError::NotAUrl),
            other
                if other.len() <= 16
                    && other
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                return Err(UrlError::Scheme(other.to_string()))
            }
            _ => return Err(UrlError::NotAUrl),
        };
        let url = redis::parse_redis_url(text).ok_or(UrlError::NotAUrl)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::Extra);
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => return Err(UrlError::NoHost),
        };
        let db = match url.path().trim_matches('/') {
            "" => 0,
            p => p
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=1_000_000).contains(n))
                .ok_or_else(|| UrlError::Database(p.to_string()))?,
        };
        let decode = |s: &str| -> Option<String> { (!s.is_empty()).then(|| percent_decode(s)) };
        let password = url.password().and_then(decode).map(Zeroizing::new);
        Ok(SharedState {
            tls,
            host,
            port: url.port().unwrap_or(6379),
            db,
            username: decode(url.username()),
            password_from: if password.is_some() {
                PasswordFrom::Url
            } else {
                PasswordFrom::None
            },
            password,
            ca_file: None,
            ca_pem: None,
            down: DownPolicy::Refuse,
            doors: BTreeMap::new(),
        })
    }

    /// The password from `shared_state_password_file` (its one line, without the line end).
    pub fn set_password_file(&mut self, path: PathBuf, text: Zeroizing<String>) {
        let line = text.trim_end_matches(['\n', '\r']).to_string();
        self.password = (!line.is_empty()).then(|| Zeroizing::new(line));
        self.password_from = PasswordFrom::File(path);
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref().map(String::as_str)
    }

    /// The policy of door `name` when the store is down.
    pub fn policy(&self, door: &str) -> DownPolicy {
        self.doors.get(door).copied().unwrap_or(self.down)
    }
}

/// `%XX` escapes of a URL's user or password, decoded (bytes that are not UTF-8 are kept as
/// they were written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// The URL with the password replaced by `***`: what `check`, `status` and the log print.
impl fmt::Display for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        match (&self.username, self.password.is_some()) {
            (Some(u), true) => write!(f, "{u}:***@")?,
            (Some(u), false) => write!(f, "{u}@")?,
            (None, true) => write!(f, ":***@")?,
            (None, false) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)?;
        if let PasswordFrom::File(p) = &self.password_from {
            write!(f, " (password from {})", p.display())?;
        }
        Ok(())
    }
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("url", &self.to_string())
            .field("ca_file", &self.ca_file)
            .field("down", &self.down)
            .field("doors", &self.doors)
            .finish()
    }
}

/// One once-only claim, as the store keeps it. Keys hold a door's name and a hash or a number,
/// never key material: a replay digest is a SHA-256 of the packet (or of the request's own
/// replay identity), a counter or step is public the moment it is knocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A request's replay digest, remembered until `until_unix` (`u64::MAX`: for ever).
    Digest {
        door: String,
        digest: [u8; 32],
        until_unix: u64,
    },
    /// A counter or time step that only moves forward (`what`: "hotp", "totp", "counter"):
    /// claimed when `value` is above the one stored.
    Forward {
        door: String,
        what: &'static str,
        value: u64,
    },
    /// A one-time line, by its line number in the door's file: claimed once, for ever.
    Once { door: String, line: u64 },
}

impl Claim {
    /// The claim's key: `knocker:DOOR:seen:HEX`, `knocker:DOOR:hotp`, `knocker:DOOR:line:N`.
    pub fn key(&self) -> String {
        match self {
            Claim::Digest { door, digest, .. } => {
                format!("{KEY_PREFIX}{}:seen:{}", key_door(door), hex(digest))
            }
            Claim::Forward { door, what, .. } => format!("{KEY_PREFIX}{}:{what}", key_door(door)),
            Claim::Once { door, line } => format!("{KEY_PREFIX}{}:line:{line}", key_door(door)),
        }
    }

    pub fn door(&self) -> &str {
        match self {
            Claim::Digest { door, .. } | Claim::Forward { door, .. } | Claim::Once { door, .. } => {
                door
            }
        }
    }

    /// What the log says was claimed elsewhere.
    pub fn describe(&self) -> String {
        match self {
            Claim::Digest { digest, .. } => format!("replay digest {}", &hex(digest)[..16]),
            Claim::Forward { what, value, .. } => format!("{what} {value}"),
            Claim::Once { line, .. } => format!("one-time line {line}"),
        }
    }
}

/// A door's name as a key part: as it is when it is letters, digits, '-' and '_' (a native
/// door's name always is), else `~` and its bytes in hex, so that no name can reach into
/// another's keys through a ':'.
fn key_door(door: &str) -> String {
    if !door.is_empty()
        && door
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        door.to_string()
    } else {
        format!("~{}", hex(door.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store said about a set of claims (made all together or not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Every claim was made: no other host of the fleet made any of them.
    Yes,
    /// This claim (by its index in the set) was made before, elsewhere: none was made now.
    Taken(usize),
}

/// Why the store could not be asked. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Marked down after a failure, within [`RETRY_AFTER`]: not asked.
    #[error("the shared store is down (since a failure {0} ms ago; retried every second)")]
    Down(u128),
    #[error("cannot reach the shared store: {0}")]
    Connect(String),
    #[error("the shared store did not answer: {0}")]
    Io(String),
    #[error("the shared store refused the claim: {0}")]
    Refused(String),
}

/// A store of once-only claims. `claim` either makes every claim of the set or none, and
/// returns within about [`CLAIM_TIMEOUT`] (plus [`CONNECT_TIMEOUT`] when it must connect first; at
/// once while the store is marked down).
pub trait Store {
    fn claim(&mut self, claims: &[Claim]) -> Result<Claimed, StoreError>;
}

/// What a door may do after its claims were put to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The store took every claim: go on (record in the ledger, grant).
    Claimed,
    /// Another host of the fleet made this claim first (what it was): refuse.
    Taken(String),
    /// The store is down and the door's policy is `refuse` (why it is down): refuse.
    DownRefused(String),
    /// The store is down and the door's policy is `local`: go on, on this host's memory alone.
    DownLocal,
}

/// The daemon's side of the store: its outages (one error line and one warning a door each) and
/// the doors' policies. Holds a [`Store`] behind the trait, so that tests can give it another.
pub struct Fleet {
    store: Box<dyn Store>,
    /// The store's URL, redacted, for the log.
    shown: String,
    /// Since when the store is down (None: up).
    down_since: Option<std::time::Instant>,
    /// Doors whose `local` warning this outage has logged.
    warned: std::collections::BTreeSet<String>,
    /// Outages since the start (each a transition from up to down).
    pub outages: u64,
}

impl Fleet {
    pub fn new(shared: &SharedState) -> Result<Fleet, StoreError> {
        Ok(Fleet::with_store(
            Box::new(RedisStore::new(shared)?),
            shared.to_string(),
        ))
    }

    pub fn with_store(store: Box<dyn Store>, shown: String) -> Fleet {
        Fleet {
            store,
            shown,
            down_since: None,
            warned: Default::default(),
            outages: 0,
        }
    }

    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// Puts door `door`'s claims to the store and decides by its `policy` when it cannot be
    /// asked.
    pub fn decide(&mut self, door: &str, policy: DownPolicy, claims: &[Claim]) -> Decision {
        if claims.is_empty() {
            return Decision::Claimed;
        }
        let outcome = self.store.claim(claims);
        if outcome.is_ok() {
            if let Some(since) = self.down_since.take() {
                tracing::warn!(
                    "shared store {} is back after {} s down: once-only claims are fleet-wide again",
                    self.shown,
                    since.elapsed().as_secs()
                );
                self.warned.clear();
            }
        }
        match outcome {
            Ok(Claimed::Yes) => Decision::Claimed,
            Ok(Claimed::Taken(i)) => {
                Decision::Taken(claims.get(i).map(Claim::describe).unwrap_or_default())
            }
            Err(e) => {
                if self.down_since.is_none() && !matches!(e, StoreError::Down(_)) {
                    self.down_since = Some(std::time::Instant::now());
                    self.outages += 1;
                    tracing::error!(
                        "shared store {}: {e}; doors with shared_state_down = \"refuse\" refuse what needs a fleet-wide claim until it is back (tried again at most once a second)",
                        self.shown
                    );
                }
                match policy {
                    DownPolicy::Refuse => Decision::DownRefused(e.to_string()),
                    DownPolicy::Local => {
                        if self.warned.insert(door.to_string()) {
                            tracing::warn!(
                                "door={door}: THE SHARED STORE IS DOWN: granting on this host's own replay memory alone (shared_state_down = \"local\"): a knock recorded on its way to another server of the fleet can open this one once, until the store is back"
                            );
                        }
                        Decision::DownLocal
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_without_their_password() {
        let s = SharedState::parse_url("redis://fleet:s3cr%40t@10.0.0.5:6380/2").expect("valid");
        assert_eq!(
            (s.tls, s.host.as_str(), s.port, s.db),
            (false, "10.0.0.5", 6380, 2)
        );
        assert_eq!(s.username.as_deref(), Some("fleet"));
        assert_eq!(s.password(), Some("s3cr@t"));
        assert_eq!(s.password_from, PasswordFrom::Url);
        let shown = format!("{s} {s:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert_eq!(s.to_string(), "redis://fleet:***@10.0.0.5:6380/2");

        let t = SharedState::parse_url("rediss://redis.example.org").expect("valid");
        assert_eq!((t.tls, t.port, t.db), (true, 6379, 0));
        assert_eq!(t.to_string(), "rediss://redis.example.org:6379/0");
        assert!(!t.has_password());

        let six = SharedState::parse_url("redis://[fd00:200::1]:7000/").expect("valid");
        assert_eq!(six.host, "fd00:200::1");
        assert_eq!(six.to_string(), "redis://[fd00:200::1]:7000/0");
    }

    #[test]
    fn bad_urls_are_refused_with_what_to_write_and_never_echo_a_password() {
        for (bad, want) in [
            ("10.0.0.5:6379", UrlError::NotAUrl),
            ("http://u:hunter2@host/", UrlError::Scheme("http".into())),
            (
                "redis+unix:///run/redis.sock",
                UrlError::Scheme("redis+unix".into()),
            ),
            (
                "redis://u:hunter2@host/zero",
                UrlError::Database("zero".into()),
            ),
            ("redis://u:hunter2@host/0?protocol=resp3", UrlError::Extra),
        ] {
            let e = SharedState::parse_url(bad).expect_err(bad);
            assert_eq!(e, want, "{bad}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn a_password_file_replaces_the_url_s_and_is_named_not_shown() {
        let mut s = SharedState::parse_url("redis://fleet@10.0.0.5/").expect("valid");
        s.set_password_file(
            "/etc/knocker/redis.pass".into(),
            Zeroizing::new("pw\n".into()),
        );
        assert_eq!(s.password(), Some("pw"));
        assert_eq!(
            s.to_string(),
            "redis://fleet:***@10.0.0.5:6379/0 (password from /etc/knocker/redis.pass)"
        );
    }

    #[test]
    fn keys_are_per_door_and_hold_hashes_and_numbers_only() {
        let d = Claim::Digest {
            door: "ssh".into(),
            digest: [0xab; 32],
            until_unix: 9,
        };
        assert_eq!(d.key(), format!("knocker:ssh:seen:{}", "ab".repeat(32)));
        let f = Claim::Forward {
            door: "hotp-door".into(),
            what: "hotp",
            value: 7,
        };
        assert_eq!(f.key(), "knocker:hotp-door:hotp");
        let o = Claim::Once {
            door: "notes".into(),
            line: 12,
        };
        assert_eq!(o.key(), "knocker:notes:line:12");
        // a knockd.conf section's name may hold anything: it cannot reach another door's keys
        let odd = Claim::Forward {
            door: "a:seen".into(),
            what: "totp",
            value: 1,
        };
        assert_eq!(odd.key(), "knocker:~613a7365656e:totp");
        assert_ne!(key_door("a:seen"), key_door("a"));
    }

    /// A store that answers from a script, for the daemon's side of it.
    struct Scripted(std::collections::VecDeque<Result<Claimed, StoreError>>);

    impl Store for Scripted {
        fn claim(&mut self, _: &[Claim]) -> Result<Claimed, StoreError> {
            self.0.pop_front().expect("an answer left")
        }
    }

    #[test]
    fn each_policy_decides_while_the_store_is_down_and_an_outage_counts_once() {
        let claim = [Claim::Forward {
            door: "v".into(),
            what: "hotp",
            value: 3,
        }];
        let mut f = Fleet::with_store(
            Box::new(Scripted(
                [
                    Ok(Claimed::Yes),
                    Ok(Claimed::Taken(0)),
                    Err(StoreError::Connect("refused".into())),
                    Err(StoreError::Down(10)),
                    Err(StoreError::Down(20)),
                    Ok(Claimed::Yes),
                    Err(StoreError::Io("timed out".into())),
                ]
                .into(),
            )),
            "redis://h:6379/0".into(),
        );
        assert_eq!(f.decide("v", DownPolicy::Refuse, &claim), Decision::Claimed);
        assert_eq!(
            f.decide("v", DownPolicy::Local, &claim),
            Decision::Taken("hotp 3".into()),
            "a claim made elsewhere refuses whatever the policy"
        );
        assert!(!f.is_down());
        assert!(matches!(
            f.decide("v", DownPolicy::Refuse, &claim),
            Decision::DownRefused(why) if why.contains("cannot reach")
        ));
        assert!(f.is_down());
        assert_eq!(
            f.decide("v", DownPolicy::Local, &claim),
            Decision::DownLocal
        );
        assert_eq!(
            f.decide("w", DownPolicy::Local, &claim),
            Decision::DownLocal
        );
        assert_eq!(f.outages, 1, "one outage, however many claims meet it");
        assert_eq!(f.decide("v", DownPolicy::Local, &claim), Decision::Claimed);
        assert!(!f.is_down());
        assert!(matches!(
            f.decide("v", DownPolicy::Refuse, &claim),
            Decision::DownRefused(_)
        ));
        assert_eq!(f.outages, 2);
        // nothing to claim (a digest already past its window): nothing asked
        assert_eq!(f.decide("v", DownPolicy::Refuse, &[]), Decision::Claimed);
    }

    #[test]
    fn a_door_without_its_own_policy_takes_the_daemon_s() {
        let mut s = SharedState::parse_url("redis://h/").expect("valid");
        s.down = DownPolicy::Local;
        s.doors.insert("vault".into(), DownPolicy::Refuse);
        assert_eq!(s.policy("vault"), DownPolicy::Refuse);
        assert_eq!(s.policy("ssh"), DownPolicy::Local);
    }
}
