//! The worker's protocol: every message that crosses the privilege boundary, its framing and
//! its bounds.
//!
//! One JSON object per line. The worker writes [`Report`]s on its standard output; the parent
//! writes one [`Seed`] and then pings (any line) on the worker's standard input. The fields are
//! typed, so that what parses is already in range: a door is its index and its name
//! ([`DoorRef`]), names are bounded ([`Name`]), services are services ([`Services`]), digests
//! are 32 bytes ([`Digest`]), a rotating door's mode is one of two ([`RotatingMode`]). A line longer than [`MAX_REPORT_BYTES`], a field out of its bounds or any
//! other shape is not a report, and the parent replaces the worker that sent it. What does
//! parse is still only the worker's word: the parent checks it against its own configuration
//! (`super::parent::check`) and the gatekeeper validates every grant.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;

use knocker_engine::Service;

pub use crate::config::RotatingMode;
pub use crate::metrics::{Reason, SourceCounts};
use serde::{Deserialize, Serialize};

/// The longest line the parent writes and the worker reads: a seed can hold 65 536 replay
/// digests (~80 bytes each).
pub const MAX_SEED_BYTES: u64 = 8 << 20;
/// The longest report line the parent accepts.
pub const MAX_REPORT_BYTES: usize = 64 << 10;
/// The longest door or client name that crosses. No configuration writes one as long (native
/// door and client names are at most 32 bytes, knockd reads lines of at most PATH_MAX, fwknopd
/// 1 KiB); a client name the worker decoded from a packet is shorter than the packet.
pub const MAX_NAME_BYTES: usize = 4096;
/// The most services one grant opens: more than fit in a report line ("tcp/1" and a comma).
pub const MAX_SERVICES: usize = MAX_REPORT_BYTES / 8;

/// A field out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a name of {0} bytes (at most {MAX_NAME_BYTES})")]
    NameTooLong(usize),
    #[error("{0} services in one grant (at most {MAX_SERVICES})")]
    TooManyServices(usize),
    #[error("{0:?} is not a service")]
    NotAService(String),
    #[error("a digest that is not 64 hex digits")]
    NotADigest,
    #[error("a report line of more than {MAX_REPORT_BYTES} bytes")]
    LineTooLong,
    #[error("a report that is not one: {0}")]
    NotAReport(String),
}

/// Why the worker could not write its reports.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot report to the parent (is it gone?): {0}")]
    Write(#[source] std::io::Error),
}

/// What the worker reports to the parent, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Report {
    /// NFLOG is bound and privileges are dropped: packets are being read.
    Ready,
    /// The answer to a ping from the parent: the worker's loop is alive.
    Pong,
    /// A one-time line, counter or time step was used: make it durable before the grant.
    Used { door: DoorRef, tag: u64 },
    /// A request's replay digest: make it durable with the grant that follows.
    Seen {
        door: DoorRef,
        digest: Digest,
        until_unix: u64,
    },
    /// A door was opened: the gatekeeper validates it and applies it.
    Grant {
        door: DoorRef,
        to: IpAddr,
        open: Services,
        millis: u64,
        client: Option<Name>,
        /// An SPA door's packet facts, for its commands (absent for other doors).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spa: Option<Facts>,
    },
    /// A flood fast enough for the kernel to batch started (`true`) or ended (`false`), as the
    /// worker's pacer sees it: the parent turns the kernel's NFLOG batching on or off on the
    /// worker's socket (`nflog::BatchingHandle`). Sent once per change. It can only delay a
    /// packet by one kernel timer tick, and the parent ignores it for any other source than
    /// NFLOG.
    Batching(bool),
    /// What the worker counted since its last tally, for the metrics: per door, the packets
    /// seen on its ports and the refusals by reason; and what its source read. Sent at most
    /// once a second, and only after a change.
    Tally {
        doors: Vec<DoorTally>,
        source: SourceCounts,
    },
}

/// [`knocker_engine::SpaFacts`] on the wire: addresses and numbers, typed, so that what parses
/// is in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    pub packet_source: IpAddr,
    pub destination: IpAddr,
    pub timestamp: u64,
    pub client_timeout: u64,
    /// The inner host the client named (fwknop's `-N`), when its door takes one: the parent
    /// checks it against the door's `nat_networks` before anything is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<std::net::SocketAddr>,
}

impl From<knocker_engine::SpaFacts> for Facts {
    fn from(f: knocker_engine::SpaFacts) -> Self {
        Facts {
            packet_source: f.packet_source,
            destination: f.destination,
            timestamp: f.timestamp,
            client_timeout: f.client_timeout,
            nat: f.nat,
        }
    }
}

impl From<Facts> for knocker_engine::SpaFacts {
    fn from(f: Facts) -> Self {
        knocker_engine::SpaFacts {
            packet_source: f.packet_source,
            destination: f.destination,
            timestamp: f.timestamp,
            client_timeout: f.client_timeout,
            nat: f.nat,
        }
    }
}

/// One door's line of a [`Report::Tally`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorTally {
    pub door: DoorRef,
    pub seen: u64,
    pub refused: Vec<(Reason, u64)>,
}

/// What the parent hands a new worker: the ledger's used steps and replay digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// (door, its mode, last used step or counter)
    pub used: Vec<(Name, RotatingMode, u64)>,
    /// (digest, remembered until this Unix time)
    pub seen: Vec<(Digest, u64)>,
}

/// The door a report is about: its index in the configuration the worker loaded, and its name
/// there (`{"index":0,"name":"ssh"}` on the wire).
///
/// Both, because an index alone is not safe. The worker loads the configuration files itself,
/// each time it starts: with the daemon, after every reload, and when it replaces one that died
/// or hung. If the files changed between the parent's load and the worker's (edited without
/// `knockerd reload`, then a worker replaced; or edited during a reload), the two door lists
/// differ, and door 1 of the worker's may be another door of the parent's. A reload itself
/// leaves no report in flight: the parent stops the old worker and drops its pipe, unread
/// reports and all, before the new one starts. So the parent takes the index only when its own
/// door at that index has that name (`super::parent::check`); anything else is refused, closed,
/// until a reload makes the two loads agree again. A name alone would find a door of the same
/// name in a reordered list, but the lists differ then and nothing the worker decided can be
/// taken for the parent's; the index makes the look-up one step instead of a search by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorRef {
    pub index: u32,
    pub name: Name,
}

/// A door's or a client's name, at most [`MAX_NAME_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn new(name: impl Into<String>) -> Result<Name, ProtocolError> {
        Name::try_from(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = ProtocolError;
    fn try_from(name: String) -> Result<Name, ProtocolError> {
        if name.len() > MAX_NAME_BYTES {
            return Err(ProtocolError::NameTooLong(name.len()));
        }
        Ok(Name(name))
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The services a grant opens, at most [`MAX_SERVICES`]; `"tcp/22"` each on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Services(Vec<Service>);

impl Services {
    pub fn new(services: Vec<Service>) -> Result<Services, ProtocolError> {
        if services.len() > MAX_SERVICES {
            return Err(ProtocolError::TooManyServices(services.len()));
        }
        Ok(Services(services))
    }

    pub fn into_vec(self) -> Vec<Service> {
        self.0
    }

    pub fn as_slice(&self) -> &[Service] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for Services {
    type Error = ProtocolError;
    fn try_from(texts: Vec<String>) -> Result<Services, ProtocolError> {
        if texts.len() > MAX_SERVICES {
            return Err(ProtocolError::TooManyServices(texts.len()));
        }
        texts
            .into_iter()
            .map(|t| t.parse().map_err(|_| ProtocolError::NotAService(t)))
            .collect::<Result<Vec<Service>, _>>()
            .map(Services)
    }
}

impl From<Services> for Vec<String> {
    fn from(services: Services) -> Vec<String> {
        services.0.iter().map(|s| s.to_string()).collect()
    }
}

/// A request's replay digest (SHA-256); lower-case hex on the wire and in the ledger.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Lower-case hex, as the ledger keeps it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads back what [`Digest::to_hex`] wrote; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Digest> {
        let mut out = [0u8; 32];
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl TryFrom<String> for Digest {
    type Error = ProtocolError;
    fn try_from(text: String) -> Result<Digest, ProtocolError> {
        Digest::from_hex(&text).ok_or(ProtocolError::NotADigest)
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.to_hex()
    }
}

/// Writes reports as JSON lines, in one write.
pub(crate) fn send(out: &mut impl Write, reports: &[Report]) -> Result<(), SendError> {
    let mut buf = Vec::new();
    for r in reports {
        serde_json::to_writer(&mut buf, r).map_err(SendError::Encode)?;
        buf.push(b'\n');
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(SendError::Write)
}

/// Parses one report line (without its newline), as the parent does.
pub fn parse_report(line: &[u8]) -> Result<Report, ProtocolError> {
    if line.len() > MAX_REPORT_BYTES {
        return Err(ProtocolError::LineTooLong);
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::NotAReport(e.to_string()))
}

/// Takes the complete lines out of `buf` as reports. An error for a line that is not a report,
/// or for a partial line already longer than any report.
pub(crate) fn take_reports(buf: &mut Vec<u8>, out: &mut Vec<Report>) -> Result<(), ProtocolError> {
    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        out.push(parse_report(&line[..end])?);
    }
    if buf.len() > MAX_REPORT_BYTES {
        return Err(ProtocolError::LineTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::new(text).expect("a short name")
    }

    fn door(index: u32, text: &str) -> DoorRef {
        DoorRef {
            index,
            name: name(text),
        }
    }

    #[test]
    fn reports_round_trip_as_one_line_each() {
        let reports = vec![
            Report::Ready,
            Report::Batching(true),
            Report::Used {
                door: door(0, "rot"),
                tag: 7,
            },
            Report::Seen {
                door: door(1, "spa"),
                digest: Digest([0xab; 32]),
                until_unix: 99,
            },
            Report::Grant {
                door: door(2, "ssh"),
                to: "10.200.1.2".parse().expect("ip"),
                open: Services::new(vec!["tcp/22".parse().expect("service")]).expect("one"),
                millis: 30_000,
                client: Some(name("alice")),
                spa: None,
            },
            Report::Grant {
                door: door(3, "fwknop"),
                to: "10.200.1.2".parse().expect("ip"),
                open: Services::new(vec!["udp/53".parse().expect("service")]).expect("one"),
                millis: 7_000,
                client: None,
                spa: Some(Facts {
                    packet_source: "10.200.1.2".parse().expect("ip"),
                    destination: "fd00:200::1".parse().expect("ip"),
                    timestamp: 1_795_266_816,
                    client_timeout: 7,
                    nat: None,
                }),
            },
            Report::Grant {
                door: door(4, "inner"),
                to: "10.200.1.2".parse().expect("ip"),
                open: Services::new(vec!["tcp/22".parse().expect("service")]).expect("one"),
                millis: 7_000,
                client: None,
                spa: Some(Facts {
                    packet_source: "10.200.1.2".parse().expect("ip"),
                    destination: "10.200.0.1".parse().expect("ip"),
                    timestamp: 1_795_266_816,
                    client_timeout: 0,
                    nat: Some("10.200.3.2:22".parse().expect("target")),
                }),
            },
            Report::Tally {
                doors: vec![DoorTally {
                    door: door(2, "ssh"),
                    seen: 5,
                    refused: vec![(Reason::WrongPort, 2), (Reason::Replayed, 1)],
                }],
                source: SourceCounts {
                    knocks: 5,
                    overruns: 1,
                    ..SourceCounts::default()
                },
            },
        ];
        let mut buf = Vec::new();
        send(&mut buf, &reports).expect("send");
        let text = String::from_utf8(buf.clone()).expect("utf8");
        assert_eq!(text.lines().count(), reports.len());
        assert!(text.contains(r#"{"batching":true}"#), "{text}");
        assert!(
            text.contains(r#""refused":[["wrong_port",2],["replayed",1]]"#),
            "reasons cross by name: {text}"
        );
        assert!(
            text.contains(r#""open":["tcp/22"]"#) && text.contains(&"ab".repeat(32)),
            "services and digests cross as text: {text}"
        );
        let mut back = Vec::new();
        take_reports(&mut buf, &mut back).expect("reports");
        assert_eq!(back, reports);
        assert!(buf.is_empty());
    }

    #[test]
    fn unknown_reports_are_refused() {
        for bad in [
            r#"{"tally":{"doors":[{"door":{"index":0,"name":"ssh"},"seen":1,"refused":[["no_such_reason",1]]}],"source":{"knocks":0,"not_understood":0,"not_for_knockerd":0,"too_long":0,"overruns":0}}}"#,
            r#"{"tally":{"doors":[],"source":{"knocks":-1,"not_understood":0,"not_for_knockerd":0,"too_long":0,"overruns":0}}}"#,
            r#"{"tally":{"doors":[],"source":{"knocks":0}}}"#,
            r#"{"grant":{"door":{"index":0,"name":"ssh"},"to":"10.0.0.1","open":[],"millis":1,"client":null,"extra":1}}"#,
            r#"{"grant":{"door":{"index":0,"name":"ssh","x":1},"to":"10.0.0.1","open":[],"millis":1,"client":null}}"#,
            r#"{"run":{"command":"sh"}}"#,
            r#"{"batching":1}"#,
            r#"{"batching":"on"}"#,
            r#"{"batching":null}"#,
            r#""batching""#,
            r#""ready2""#,
        ] {
            assert!(
                matches!(
                    parse_report(bad.as_bytes()),
                    Err(ProtocolError::NotAReport(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn fields_out_of_their_bounds_are_not_reports() {
        let grant = |door: &str, open: &str| {
            format!(
                r#"{{"grant":{{"door":{door},"to":"10.0.0.1","open":{open},"millis":1,"client":null}}}}"#
            )
        };
        let ssh = r#"{"index":0,"name":"ssh"}"#;
        assert!(parse_report(grant(ssh, r#"["tcp/22"]"#).as_bytes()).is_ok());
        for bad in [
            grant(ssh, r#"["tcp/0"]"#),
            grant(ssh, r#"["ssh"]"#),
            grant(ssh, r#"[22]"#),
            grant(
                &format!(
                    r#"{{"index":0,"name":"{}"}}"#,
                    "d".repeat(MAX_NAME_BYTES + 1)
                ),
                "[]",
            ),
            // a door is its index and its name, both
            grant(r#""ssh""#, "[]"),
            grant("0", "[]"),
            grant(r#"{"name":"ssh"}"#, "[]"),
            grant(r#"{"index":0}"#, "[]"),
            grant(r#"{"index":-1,"name":"ssh"}"#, "[]"),
            grant(r#"{"index":4294967296,"name":"ssh"}"#, "[]"),
            grant(
                ssh,
                &format!("[{}]", vec![r#""tcp/1""#; MAX_SERVICES + 1].join(",")),
            ),
            r#"{"seen":{"door":{"index":0,"name":"spa"},"digest":"abc","until_unix":1}}"#
                .to_string(),
            format!(
                r#"{{"seen":{{"door":{{"index":0,"name":"spa"}},"digest":"{}","until_unix":1}}}}"#,
                "zz".repeat(32)
            ),
        ] {
            assert!(parse_report(bad.as_bytes()).is_err(), "{bad:.200}");
        }
    }

    #[test]
    fn a_line_longer_than_any_report_is_refused_even_before_its_end() {
        let mut buf = vec![b' '; MAX_REPORT_BYTES + 1];
        assert_eq!(
            take_reports(&mut buf, &mut Vec::new()),
            Err(ProtocolError::LineTooLong)
        );
        let mut line = vec![b' '; MAX_REPORT_BYTES];
        line.extend_from_slice(b"\"ready\"\n");
        assert_eq!(
            take_reports(&mut line, &mut Vec::new()),
            Err(ProtocolError::LineTooLong)
        );
    }

    #[test]
    fn seeds_round_trip() {
        let seed = Seed {
            used: vec![
                (name("rot"), RotatingMode::Hotp, 4),
                (name("totp"), RotatingMode::Totp, 9),
            ],
            seen: vec![(Digest([7; 32]), 1234)],
        };
        let text = serde_json::to_string(&seed).expect("json");
        assert_eq!(serde_json::from_str::<Seed>(&text).expect("parse"), seed);
        assert_eq!(RotatingMode::parse("hotp"), Some(RotatingMode::Hotp));
        assert_eq!(RotatingMode::parse("encoded"), None);
    }
}
