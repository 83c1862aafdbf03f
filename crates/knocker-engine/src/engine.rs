//! The engine: feeds knocks to doors, keeps bounded per-source progress, emits grants.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::sequence::{SequenceDoor, SequenceError, Step};
use crate::table::{Progress, Table};
use crate::types::{Grant, Knock, Service};

/// Default bound on tracked partial knocks: about 11 MiB at the ~110 bytes each measured in
/// BENCHMARKS.md.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub doors: Vec<SequenceDoor>,
    /// Hard bound on (source, door) progress entries kept at once.
    pub max_tracked: usize,
}

/// What the engine decided; drained with [`Engine::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A door was completed: the gatekeeper should open.
    Grant(Grant),
    /// A knock advanced a source through a door (for verbose logs).
    Progress {
        door: Arc<str>,
        src: IpAddr,
        matched: usize,
        of: usize,
    },
    /// A source's progress through a door was reset by a wrong port of that door.
    Reset { door: Arc<str>, src: IpAddr },
    /// The table is full: the oldest partial knocks are being dropped to make room. Emitted once
    /// when this starts, and again only after the table has drained below half.
    TableFull { capacity: usize },
}

/// Why a set of doors cannot be used together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoorsError {
    #[error("door {door:?}: {error}")]
    Door { door: String, error: SequenceError },
    #[error("doors {0:?} and {1:?} have the same sequence: a knock could not tell them apart")]
    Identical(String, String),
    #[error("knocking the sequence of door {0:?} also opens door {1:?} (its knocks appear in that order within it): change one of them")]
    Overlap(String, String),
    #[error("knock port {0} of door {1:?} is a service opened by door {2:?}: knock ports are always dropped, so it could never be used")]
    KnockIsService(Service, String, String),
    #[error("too many doors ({0}); at most 65535")]
    TooMany(usize),
}

pub struct Engine {
    doors: Vec<SequenceDoor>,
    /// Door names shared by events, so that reporting progress allocates nothing per packet.
    names: Vec<Arc<str>>,
    /// Which doors each knock port belongs to.
    by_service: HashMap<Service, Vec<u16>>,
    table: Table,
    events: VecDeque<Event>,
    full_reported: bool,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Self, DoorsError> {
        validate_doors(&config.doors)?;
        let mut by_service: HashMap<Service, Vec<u16>> = HashMap::new();
        for (i, door) in config.doors.iter().enumerate() {
            for s in &door.sequence {
                let ids = by_service.entry(*s).or_default();
                if !ids.contains(&(i as u16)) {
                    ids.push(i as u16);
                }
            }
        }
        Ok(Engine {
            names: config
                .doors
                .iter()
                .map(|d| Arc::from(d.name.as_str()))
                .collect(),
            doors: config.doors,
            by_service,
            table: Table::new(config.max_tracked),
            events: VecDeque::new(),
            full_reported: false,
        })
    }

    pub fn doors(&self) -> &[SequenceDoor] {
        &self.doors
    }

    /// Every protocol and port that some door listens for.
    pub fn knock_services(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self.by_service.keys().copied().collect();
        v.sort();
        v
    }

    /// Number of (source, door) partial knocks held right now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Estimated bytes of state per tracked (source, door).
    pub fn bytes_per_tracked() -> usize {
        Table::bytes_per_entry()
    }

    /// Feeds one knock seen at `now`. O(number of doors sharing the knock's port), independent of
    /// how many sources are tracked.
    pub fn handle(&mut self, now: Instant, knock: &Knock) {
        // An IPv4-mapped IPv6 source is the IPv4 address it maps, not a second identity.
        let src = knock.src.to_canonical();
        let service = knock.service();
        let Some(ids) = self.by_service.get(&service) else {
            return;
        };
        for &id in ids {
            let door = &self.doors[id as usize];
            if !door.admits(knock) {
                continue;
            }
            let key = (src, id);
            let matched = match self.table.get(&key) {
                Some(p) if now < p.deadline => p.matched as usize,
                Some(_) => {
                    self.table.remove(&key);
                    0
                }
                None => 0,
            };
            let of = door.sequence.len();
            match door.step(matched, service) {
                Step::Ignore => {}
                Step::Complete => {
                    self.table.remove(&key);
                    self.events.push_back(Event::Grant(Grant {
                        door: id as usize,
                        door_name: door.name.clone(),
                        to: src,
                        open: door.open.clone(),
                        duration: door.open_for,
                    }));
                }
                Step::Advance(n) if matched > 0 => {
                    self.table.update(&key, n as u8);
                    self.events.push_back(Event::Progress {
                        door: self.names[id as usize].clone(),
                        src,
                        matched: n,
                        of,
                    });
                }
                Step::Advance(_) | Step::Restart => {
                    // validate() bounds the window; checked_add keeps a hand-built door from
                    // panicking the engine all the same.
                    let Some(deadline) = now.checked_add(door.window) else {
                        continue;
                    };
                    let progress = Progress {
                        matched: 1,
                        deadline,
                    };
                    let evicted = self.table.insert_newest(key, progress);
                    self.events.push_back(Event::Progress {
                        door: self.names[id as usize].clone(),
                        src,
                        matched: 1,
                        of,
                    });
                    if evicted.is_some() && !self.full_reported {
                        self.full_reported = true;
                        self.events.push_back(Event::TableFull {
                            capacity: self.table.capacity(),
                        });
                    }
                }
                Step::Reset => {
                    if self.table.remove(&key).is_some() {
                        self.events.push_back(Event::Reset {
                            door: self.names[id as usize].clone(),
                            src,
                        });
                    }
                }
            }
        }
        self.rearm_table_full();
    }

    /// TableFull may be reported again once the table has drained below half its capacity.
    fn rearm_table_full(&mut self) {
        if self.full_reported && self.table.len() * 2 < self.table.capacity() {
            self.full_reported = false;
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the oldest partial knock runs out, if any. Later entries may expire earlier when
    /// doors have different windows; those are dropped lazily when touched or when they reach
    /// the head, which only delays freeing memory that the hard bound already caps.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.oldest().map(|(_, p)| p.deadline)
    }

    /// Forgets partial knocks whose window has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, p)) = self.table.oldest() {
            if p.deadline > now {
                break;
            }
            self.table.pop_oldest();
        }
        self.rearm_table_full();
    }
}

/// Whether knocking `knocks`, in order and from one source, completes `door`: the door's own
/// state machine run over them. This is exact, so it catches every way one door's sequence can
/// contain another's (a prefix, a suffix, or the other's ports in order with foreign ports
/// between them, which a door ignores).
fn opens_with(door: &SequenceDoor, knocks: &[Service]) -> bool {
    let mut matched = 0;
    for k in knocks {
        if !door.sequence.contains(k) {
            continue;
        }
        match door.step(matched, *k) {
            Step::Complete => return true,
            Step::Advance(n) => matched = n,
            Step::Ignore => {}
            Step::Restart => matched = 1,
            Step::Reset => matched = 0,
        }
    }
    false
}

/// Checks each door and the doors against each other.
pub fn validate_doors(doors: &[SequenceDoor]) -> Result<(), DoorsError> {
    if doors.len() > u16::MAX as usize {
        return Err(DoorsError::TooMany(doors.len()));
    }
    for d in doors {
        d.validate().map_err(|error| DoorsError::Door {
            door: d.name.clone(),
            error,
        })?;
    }
    for (i, a) in doors.iter().enumerate() {
        for b in &doors[i + 1..] {
            if a.sequence == b.sequence {
                return Err(DoorsError::Identical(a.name.clone(), b.name.clone()));
            }
        }
    }
    for a in doors {
        for b in doors {
            if !std::ptr::eq(a, b) && opens_with(b, &a.sequence) {
                return Err(DoorsError::Overlap(a.name.clone(), b.name.clone()));
            }
        }
    }
    for a in doors {
        for b in doors {
            if let Some(s) = a.sequence.iter().find(|s| b.open.contains(s)) {
                return Err(DoorsError::KnockIsService(
                    *s,
                    a.name.clone(),
                    b.name.clone(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Proto, TcpFlags};
    use std::time::Duration;

    #[test]
    fn ipv4_mapped_sources_are_the_ipv4_address() {
        let door = SequenceDoor {
            name: "ssh".into(),
            sequence: vec![Service::tcp(7000), Service::tcp(9000), Service::tcp(8000)],
            window: Duration::from_secs(10),
            tcp_flags: None,
            open: vec![Service::tcp(22)],
            open_for: Duration::from_secs(30),
        };
        let mut e = Engine::new(EngineConfig {
            doors: vec![door],
            max_tracked: 10,
        })
        .expect("valid");
        let knock = |src: &str, port| Knock {
            src: src.parse().expect("ip"),
            dst: "10.0.0.1".parse().expect("ip"),
            proto: Proto::Tcp,
            src_port: 40000,
            dst_port: port,
            tcp_flags: TcpFlags::SYN,
        };
        let t0 = Instant::now();
        e.handle(t0, &knock("::ffff:10.200.1.2", 7000));
        e.handle(t0, &knock("10.200.1.2", 9000));
        e.handle(t0, &knock("::ffff:10.200.1.2", 8000));
        assert_eq!(e.tracked(), 0);
        let grants: Vec<IpAddr> = std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                Event::Grant(g) => Some(g.to),
                _ => None,
            })
            .collect();
        assert_eq!(grants, vec!["10.200.1.2".parse::<IpAddr>().expect("ip")]);
    }
}
