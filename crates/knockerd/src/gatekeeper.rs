//! The gatekeeper: the only part of knockerd that changes the firewall or runs commands.
//!
//! Its interface is deliberately small and typed, a [`Grant`] in and a [`Verdict`] out, so that it
//! can move into a separate privileged process: it trusts nothing in the grant. The door must
//! exist, the services must be ones the door opens, the duration must not exceed the door's, and
//! the address must be a unicast address a packet could really come from.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU8;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use knocker_engine::{Grant, Service};

use crate::config::{ActionTime, CommandVars, Config, Door};
use crate::ledger::{self, Ledger, Record};
use crate::metrics::Counters;
use crate::nftset::NatChange;

/// How grants reach the kernel.
pub trait Firewall {
    /// Adds or refreshes `to . service` for every service, expiring after `timeout`, atomically.
    fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()>;
    /// The same for a grant that admits `connections` new connections: the kernel removes it
    /// when the last one is accepted, or when `timeout` runs out.
    fn grant_connections(
        &mut self,
        to: IpAddr,
        services: &[Service],
        timeout: Duration,
        connections: NonZeroU8,
    ) -> io::Result<()>;
    /// The same for a grant a door widened (`grant_prefix`): `net` is the first address of the
    /// `len`-bit prefix around the address that knocked, and everyone in it is let in.
    fn grant_network(
        &mut self,
        net: IpAddr,
        len: u8,
        services: &[Service],
        timeout: Duration,
    ) -> io::Result<()>;
    /// [`Firewall::grant`] with a change to the source's entries in the client NAT map, in the
    /// same atomic batch (a client-chosen inner host, fwknop's `-N`).
    fn grant_nat(
        &mut self,
        to: IpAddr,
        services: &[Service],
        timeout: Duration,
        nat: NatChange,
    ) -> io::Result<()>;
}

impl Firewall for crate::nftset::NftSets {
    fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()> {
        crate::nftset::NftSets::grant(self, to, services, timeout)
    }

    /// One element in each of the slot sets 1..=connections (`ruleset::slot_set`).
    fn grant_connections(
        &mut self,
        to: IpAddr,
        services: &[Service],
        timeout: Duration,
        connections: NonZeroU8,
    ) -> io::Result<()> {
        let v4 = to.to_canonical().is_ipv4();
        let sets: Vec<String> = (1..=connections.get())
            .map(|k| crate::ruleset::slot_set(v4, k))
            .collect();
        self.grant_in(to, services, timeout, &sets)
    }

    /// One element per service in the set of the prefix length (`ruleset::wide_set`).
    fn grant_network(
        &mut self,
        net: IpAddr,
        len: u8,
        services: &[Service],
        timeout: Duration,
    ) -> io::Result<()> {
        let set = crate::ruleset::wide_set(net.to_canonical().is_ipv4(), len);
        self.grant_in(net, services, timeout, &[set])
    }

    /// The map of `to`'s family (`ruleset::CLIENT_NAT4`, `CLIENT_NAT6`).
    fn grant_nat(
        &mut self,
        to: IpAddr,
        services: &[Service],
        timeout: Duration,
        nat: NatChange,
    ) -> io::Result<()> {
        let map = if to.to_canonical().is_ipv4() {
            crate::ruleset::CLIENT_NAT4
        } else {
            crate::ruleset::CLIENT_NAT6
        };
        crate::nftset::NftSets::grant_nat(self, to, services, timeout, nat, map)
    }
}

/// Why a grant could not be applied (a bad request from the worker, or the ledger or firewall
/// failing). Not a refusal of a knock: those are [`knocker_engine::Refusal`].
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("no door named {0:?} in the configuration")]
    UnknownDoor(String),
    #[error("door {door:?} does not open {service}")]
    ServiceNotInDoor { door: String, service: Service },
    #[error("door {door:?} opens for at most {max:?}, not {asked:?}")]
    TooLong {
        door: String,
        max: Duration,
        asked: Duration,
    },
    #[error("{0} is not a unicast address a knock can come from")]
    BadAddress(IpAddr),
    #[error("door {door:?} does not send {to} on to {target}: {why}")]
    NatTarget {
        door: String,
        to: IpAddr,
        target: SocketAddr,
        why: String,
    },
    #[error("cannot record it in the ledger, so it is not applied: {0}")]
    Ledger(String),
    #[error("the firewall refused: {0}")]
    Firewall(io::Error),
}

/// What the gatekeeper did with a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The services are open to the address until the kernel times them out.
    Opened {
        to: IpAddr,
        /// The network the grant reaches, when the door widens it (`grant_prefix`): its first
        /// address and prefix length.
        network: Option<(IpAddr, u8)>,
        open: Vec<Service>,
        duration: Duration,
        refreshed: bool,
        /// The start command this grant ran, as its argv joined by spaces, if it ran one.
        ran: Option<String>,
        /// How many new connections the grant admits, if it counts them.
        connections: Option<NonZeroU8>,
    },
}

/// Whether a grant may send its service on to `target`, the inner host its client named
/// (fwknop's `-N`): the worker's word is not trusted, so everything is checked here, in the
/// root process. The door must list networks of client-chosen inner hosts
/// (`--fwknop-nat-targets`, a native door's `nat_networks`) and `target` must lie in one; it must be a unicast address of the
/// grant's family other than this host's own, with a port; the grant opens one service, for
/// the address alone (not widened, not counted).
fn check_nat_target(
    door: &Door,
    to: IpAddr,
    target: SocketAddr,
    grant: &Grant,
) -> Result<SocketAddr, String> {
    if door.nat_networks.is_empty() {
        return Err("the door takes no inner host from its clients (its nat_networks: for an access.conf, ENABLE_IPT_FORWARDING Y in fwknopd.conf and --fwknop-nat-targets)".into());
    }
    let ip = target.ip().to_canonical();
    let target = SocketAddr::new(ip, target.port());
    if target.port() == 0 || !grantable(ip) || ip.is_loopback() {
        return Err("not an inner host's unicast address and port".into());
    }
    if ip.is_ipv4() != to.is_ipv4() {
        return Err("no NAT between IPv4 and IPv6".into());
    }
    let full = if ip.is_ipv4() { 32 } else { 128 };
    let host = crate::config::Net::of(ip, full);
    let Some(net) = door.nat_networks.iter().find(|n| n.contains(&host)) else {
        let nets: Vec<String> = door.nat_networks.iter().map(ToString::to_string).collect();
        return Err(format!(
            "{ip} is in none of the door's networks (nat_networks, --fwknop-nat-targets: {})",
            nets.join(", ")
        ));
    };
    // a listed IPv4 network's first and last addresses are its own and its broadcast
    if let (IpAddr::V4(v4), true) = (ip, net.len < 31) {
        let host_bits = u32::MAX >> net.len;
        let bits = u32::from(v4) & host_bits;
        if bits == 0 || bits == host_bits {
            return Err(format!("{ip} is the network or broadcast address of {net}"));
        }
    }
    if grant.open.len() != 1
        || door.connections.is_some()
        || door.grant_prefix.widen(to).1.is_some()
    {
        return Err("a grant with an inner host opens one service, for its address alone".into());
    }
    if is_own_address(ip) {
        return Err(format!("{ip} is one of this host's own addresses"));
    }
    Ok(target)
}

/// Whether `ip` is an address of one of this host's interfaces (a DNAT to it would reach a
/// local service the grant does not open). An interface list that cannot be read counts as
/// yes: the grant is refused.
fn is_own_address(ip: IpAddr) -> bool {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return true;
    };
    addrs
        .filter_map(|a| a.address)
        .any(|a| match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
            (Some(v4), _) => IpAddr::V4(v4.ip()) == ip,
            (_, Some(v6)) => IpAddr::V6(v6.ip()).to_canonical() == ip,
            _ => false,
        })
}

/// Whether an address is one a knock may be granted to.
pub fn grantable(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.octets()[0] == 0)
        }
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_loopback() || a.is_multicast()),
    }
}

/// A grant this process knows is open, by (door, address).
struct Open {
    /// When the door's stop command is due, or the grant ends when there is none.
    until: Instant,
    /// The pending stop command: its ledger id (0 without a ledger) and the argv to run, fixed
    /// when the door opened so that a reload cannot change what closes it.
    stop: Option<(u64, Vec<String>)>,
}

/// A door's delayed command, waiting for its time.
struct Delayed {
    /// Its ledger id (0 without a ledger).
    id: u64,
    /// The door and address whose opening scheduled it.
    key: (String, IpAddr),
    due: Instant,
    /// Runs when the grant ends: a refresh of the grant moves it.
    at_end: bool,
    /// Fixed when the door opened, as a stop command is.
    argv: Vec<String>,
}

/// What a grant does with its door's delayed commands ([`Gatekeeper::schedule_actions`]).
#[derive(Default)]
struct Schedule {
    /// Argvs to run at once (a new opening's commands without a delay).
    at_once: Vec<Vec<String>>,
    /// Commands to schedule (a new opening's), ids still 0.
    later: Vec<Delayed>,
    /// Pending `at = "end"` commands of a refreshed opening, moved to the new end: (id, due).
    moved: Vec<(u64, Instant)>,
}

/// A command the gatekeeper started and has not reaped yet.
struct Running {
    what: String,
    child: Child,
    started: Instant,
}

/// Child processes are killed if they run longer than this.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

pub struct Gatekeeper<F: Firewall> {
    doors: Vec<Door>,
    firewall: F,
    /// Where grants and pending stop commands are journaled before anything is applied, so
    /// that a restart after a crash still closes what was opened. `None` only in unit tests.
    ledger: Option<Ledger>,
    /// Grants this process knows are open, by (door, address): so that a repeated knock
    /// refreshes instead of running the start command again, and the stop command runs once
    /// (a door with a start command and no stop command is not kept: it runs on every knock).
    /// Entries leave when the grant (or its stop command) is due, so the map holds at most the
    /// grants of one door's duration.
    open: HashMap<(String, IpAddr), Open>,
    /// When each service of a grant in the firewall times out, by (door, address), as this
    /// process set it: a refresh replaces the timeout, as the kernel does. The kernel removes the
    /// elements by itself; this is only so that the end of a grant is logged (never acted on).
    /// It holds what the allow sets hold.
    grants: HashMap<(String, IpAddr), Vec<(Service, Instant)>>,
    /// The grants of `grants` that count connections. How many connections each has left is
    /// known only to the kernel (the packet path spends them), so they are never restored: a
    /// restore could only guess, and guessing high would admit more than was granted.
    counted: std::collections::HashSet<(String, IpAddr)>,
    /// The client NAT maps' entries this process wrote (a client-chosen inner host, fwknop's
    /// `-N`), by (source, service): the inner host and when the kernel times the entry out, as
    /// the grant element beside it. So that a grant for another target replaces the entry, a
    /// plain grant removes it, and a restore puts it back with its grant.
    nat: HashMap<(IpAddr, Service), (SocketAddr, Instant)>,
    /// Delayed commands not run yet, of the openings of doors with `[[door.NAME.command]]`.
    delayed: Vec<Delayed>,
    running: Vec<Running>,
    /// Grants, refreshes, expiries and stop commands per door (and the daemon's other
    /// counters, kept here beside them): what `[daemon] metrics_file` shows.
    counters: Counters,
}

/// Counters with every door of `config` listed.
fn counters_for(config: &Config) -> Counters {
    let mut c = Counters::default();
    c.know_doors(config.doors.iter().map(|d| d.spec.name.as_str()));
    c
}

/// `at` as a Unix time in whole seconds, rounded down: a stop command rescheduled from the
/// ledger after a restart runs on time or up to a second early, never late.
fn unix_at(now: Instant, at: Instant) -> u64 {
    (exact_unix_now() + at.saturating_duration_since(now)).as_secs()
}

/// The time since 1970, to the nanosecond.
fn exact_unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

impl<F: Firewall> Gatekeeper<F> {
    pub fn new(config: &Config, firewall: F, ledger: Option<Ledger>) -> Self {
        Gatekeeper {
            doors: config.doors.clone(),
            firewall,
            ledger,
            open: HashMap::new(),
            grants: HashMap::new(),
            counted: Default::default(),
            nat: HashMap::new(),
            delayed: Vec::new(),
            running: Vec::new(),
            counters: counters_for(config),
        }
    }

    /// The counters of what this gatekeeper did, and of what the daemon counts beside it.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// How many (door, address) grants are open now.
    pub fn grants_open(&self) -> usize {
        self.grants.len()
    }

    /// Takes a new configuration (after a reload). Grants already open keep their schedule and
    /// the stop commands they were opened with.
    pub fn reconfigure(&mut self, config: &Config) {
        self.doors = config.doors.clone();
        self.counters
            .know_doors(config.doors.iter().map(|d| d.spec.name.as_str()));
    }

    pub fn firewall(&mut self) -> &mut F {
        &mut self.firewall
    }

    pub fn ledger(&mut self) -> Option<&mut Ledger> {
        self.ledger.as_mut()
    }

    /// After a restart: runs every stop and delayed command that came due while knockerd was
    /// not running, and schedules the others. Returns (run now, scheduled).
    pub fn recover(&mut self, now: Instant) -> (usize, usize) {
        let Some(ledger) = &self.ledger else {
            return (0, 0);
        };
        let wall = ledger::unix_now();
        let pending: Vec<(u64, String, IpAddr, Vec<String>, u64)> = ledger
            .state()
            .pending_stops()
            .into_iter()
            .map(|p| (p.id, p.door.clone(), p.addr, p.command.clone(), p.due_unix))
            .collect();
        // counted from the exact time now (from the whole second now, a due time would gain its
        // fraction)
        let exact = exact_unix_now();
        let (mut ran, mut scheduled) = (0, 0);
        // the same for stop commands: counted from the exact time, they run on time
        for (id, door, addr, argv, due) in pending {
            let left = Duration::from_secs(due)
                .checked_sub(exact)
                .filter(|d| !d.is_zero());
            if let Some(left) = left {
                let until = now + left;
                self.open.insert(
                    (door, addr),
                    Open {
                        until,
                        stop: Some((id, argv)),
                    },
                );
                scheduled += 1;
            } else {
                tracing::info!("door={door} src={addr} stop command was due {}s ago while knockerd was down: running it now", wall.saturating_sub(due));
                self.run_stop(id, argv, &door, addr, now);
                ran += 1;
            }
        }
        let (r, s) = self.recover_delayed(now);
        (ran + r, scheduled + s)
    }

    /// [`Gatekeeper::recover`] for delayed commands: the due ones run now, the others are
    /// scheduled, counted from the exact time as stop commands are.
    fn recover_delayed(&mut self, now: Instant) -> (usize, usize) {
        let Some(ledger) = &self.ledger else {
            return (0, 0);
        };
        let pending: Vec<ledger::PendingAction> = ledger
            .state()
            .pending_actions()
            .into_iter()
            .cloned()
            .collect();
        let exact = exact_unix_now();
        let (mut ran, mut scheduled) = (0, 0);
        for a in pending {
            let left = Duration::from_secs(a.due_unix)
                .checked_sub(exact)
                .filter(|d| !d.is_zero());
            match left {
                Some(left) => {
                    self.delayed.push(Delayed {
                        id: a.id,
                        key: (a.door, a.addr),
                        due: now + left,
                        at_end: a.at_end,
                        argv: a.command,
                    });
                    scheduled += 1;
                }
                None => {
                    tracing::info!(
                        "door={} src={} delayed command was due {}s ago while knockerd was down: running it now",
                        a.door,
                        a.addr,
                        exact.as_secs().saturating_sub(a.due_unix)
                    );
                    self.run_recorded(a.id, a.command, &a.door, a.addr, "delayed command", now);
                    ran += 1;
                }
            }
        }
        (ran, scheduled)
    }

    /// Validates a grant against the configuration and applies it: journal first, then the
    /// firewall, then the start command.
    pub fn apply(&mut self, grant: &Grant, now: Instant) -> Result<Verdict, GrantError> {
        self.apply_recording(grant, now, &[])
    }

    /// [`Gatekeeper::apply`], with `first` (the request's replay digests) written to the ledger
    /// in the same batch as the grant, before it: one sync for both, and neither without the
    /// other.
    pub fn apply_recording(
        &mut self,
        grant: &Grant,
        now: Instant,
        first: &[Record],
    ) -> Result<Verdict, GrantError> {
        let verdict = self.validate_and_apply(grant, now, first)?;
        let Verdict::Opened { refreshed, .. } = &verdict;
        let counts = self.counters.door(&grant.door_name);
        if *refreshed {
            counts.refreshes += 1;
        } else {
            counts.grants += 1;
        }
        Ok(verdict)
    }

    fn validate_and_apply(
        &mut self,
        grant: &Grant,
        now: Instant,
        first: &[Record],
    ) -> Result<Verdict, GrantError> {
        let door = self
            .doors
            .iter()
            .find(|d| d.spec.name == grant.door_name)
            .cloned()
            .ok_or_else(|| GrantError::UnknownDoor(grant.door_name.clone()))?;
        // an SPA door read from an access.conf without OPEN_PORTS opens what is asked, as fwknopd
        let open_any = matches!(&door.spec.kind, knocker_engine::Kind::Spa(spa) if spa.open_any);
        if let Some(s) = grant
            .open
            .iter()
            .find(|s| !open_any && !door.spec.open.contains(s))
        {
            return Err(GrantError::ServiceNotInDoor {
                door: door.spec.name.clone(),
                service: *s,
            });
        }
        if grant.duration > door.spec.open_for {
            return Err(GrantError::TooLong {
                door: door.spec.name.clone(),
                max: door.spec.open_for,
                asked: grant.duration,
            });
        }
        let to = grant.to.to_canonical();
        if !grantable(to) {
            return Err(GrantError::BadAddress(grant.to));
        }
        let nat_target = match grant.spa.and_then(|f| f.nat) {
            Some(target) => Some(check_nat_target(&door, to, target, grant).map_err(|why| {
                GrantError::NatTarget {
                    door: door.spec.name.clone(),
                    to,
                    target,
                    why,
                }
            })?),
            None => None,
        };

        // what the grant holds: the address, or the network a door widens it to; the ledger and
        // the bookkeeping go by it (a second address of the network refreshes the same grant),
        // the commands get the address that knocked
        let (held, widened) = door.grant_prefix.widen(to);
        let key = (door.spec.name.clone(), held);
        let stop_cmd = door.stop_command_for(to);
        // fwknop's CMD_CYCLE_CLOSE runs after the client's timeout (capped, as the grant is)
        let client_timeout = grant
            .spa
            .filter(|f| f.client_timeout > 0 && door.stop_after_client_timeout)
            .map(|_| grant.duration);
        let stop_in = client_timeout.unwrap_or(door.stop_after);
        let until = now
            + if stop_cmd.is_some() {
                stop_in
            } else {
                grant.duration
            };
        let vars = CommandVars {
            ip: to,
            service: grant.open.first().copied(),
            spa: grant.spa,
            // fwknopd's $TIMEOUT counts CMD_CYCLE_TIMER (or the client's timeout), close
            // command or not
            stop_in: if stop_cmd.is_some() || door.stop_after_client_timeout {
                stop_in.as_secs()
            } else {
                grant.duration.as_secs()
            },
            client_timeout: grant
                .spa
                .filter(|f| f.client_timeout > 0)
                .map_or(0, |_| grant.duration.as_secs()),
        };
        // a door with a start command but no stop command runs it on every knock, as knockd
        // does: nothing pairs with it, and a one-time line must never be spent for nothing
        // (delayed commands pair with the opening, as a stop command does)
        let every_knock =
            stop_cmd.is_none() && door.actions.is_empty() && door.start_command_for(to).is_some();
        let existing = self
            .open
            .get(&key)
            .filter(|_| !every_knock)
            .map(|o| (o.until, o.stop.as_ref().map(|s| s.0)));
        let Schedule {
            at_once,
            later: mut delayed,
            moved,
        } = self.schedule_actions(
            &door,
            &key,
            &vars,
            existing.is_some(),
            now + grant.duration,
            now,
        );
        if self.ledger.is_none() && !first.is_empty() {
            return Err(GrantError::Ledger(
                "no ledger to remember the request in".into(),
            ));
        }
        if let Some(ledger) = self.ledger.as_mut() {
            let wall = ledger::unix_now();
            let mut records = first.to_vec();
            records.push(Record::Grant {
                door: door.spec.name.clone(),
                addr: held,
                services: grant.open.iter().map(|s| s.to_string()).collect(),
                until_unix: wall + grant.duration.as_secs(),
            });
            match (existing, stop_cmd) {
                (Some((old, Some(id))), _) if until > old => records.push(Record::StopMoved {
                    id,
                    due_unix: unix_at(now, until),
                }),
                (Some(_), _) => {}
                (None, Some(cmd)) => records.push(Record::StopPending {
                    door: door.spec.name.clone(),
                    addr: held,
                    command: cmd.argv_with(&vars),
                    due_unix: unix_at(now, until),
                }),
                (None, None) => {}
            }
            // the StopPending record is the last before the delayed commands'
            let stop_index = records.len() as u64 - 1;
            let first_action = records.len() as u64;
            for d in &delayed {
                records.push(Record::ActionPending {
                    door: door.spec.name.clone(),
                    addr: held,
                    command: d.argv.clone(),
                    due_unix: unix_at(now, d.due),
                    at_end: d.at_end,
                });
            }
            for (id, due) in &moved {
                records.push(Record::StopMoved {
                    id: *id,
                    due_unix: unix_at(now, *due),
                });
            }
            let ids = ledger
                .append_batch(wall, &records)
                .map_err(|e| GrantError::Ledger(e.to_string()))?;
            // a record's sequence number is its id
            for (i, d) in delayed.iter_mut().enumerate() {
                d.id = ids.start + first_action + i as u64;
            }
            if existing.is_none() && stop_cmd.is_some() {
                let id = ids.start + stop_index;
                self.open.insert(
                    key.clone(),
                    Open {
                        until,
                        stop: stop_cmd.map(|c| (id, c.argv_with(&vars))),
                    },
                );
            }
        } else if existing.is_none() && !every_knock {
            self.open.insert(
                key.clone(),
                Open {
                    until,
                    stop: stop_cmd.map(|c| (0, c.argv_with(&vars))),
                },
            );
        }

        // the same choice as schedule_actions made for the ledger
        let end = now + grant.duration;
        if !moved.is_empty() {
            for d in self.delayed.iter_mut() {
                if d.key == key && d.at_end && d.due < end {
                    d.due = end;
                }
            }
        }
        self.delayed.append(&mut delayed);

        // a door that only runs commands (knockd's kind) has nothing to put in the sets
        if !grant.open.is_empty() {
            match (door.connections, widened) {
                (Some(n), _) => {
                    self.firewall
                        .grant_connections(to, &grant.open, grant.duration, n)
                        .map_err(GrantError::Firewall)?;
                    self.counted.insert(key.clone());
                }
                (None, Some(len)) => self
                    .firewall
                    .grant_network(held, len, &grant.open, grant.duration)
                    .map_err(GrantError::Firewall)?,
                (None, None) => self
                    .grant_plain_or_nat(to, &grant.open, grant.duration, nat_target, now)
                    .map_err(GrantError::Firewall)?,
            }
            let ends = self.grants.entry(key.clone()).or_default();
            for s in &grant.open {
                ends.retain(|(e, _)| e != s);
                ends.push((*s, now + grant.duration));
            }
        }
        let mut ran = None;
        let refreshed = match (existing, self.open.get_mut(&key)) {
            (Some(_), Some(open)) => {
                open.until = open.until.max(until);
                if door.repeat_start_command {
                    if let Some(cmd) = door.start_command_for(to) {
                        let what =
                            format!("door={} start command (again) for {to}", door.spec.name);
                        ran = Some(cmd.argv_with(&vars).join(" "));
                        self.spawn(cmd.argv_with(&vars), to, what, now);
                    }
                }
                true
            }
            _ => {
                if !every_knock {
                    self.open.entry(key).or_insert(Open { until, stop: None });
                }
                if let Some(cmd) = door.start_command_for(to) {
                    let what = format!("door={} start command for {to}", door.spec.name);
                    ran = Some(cmd.argv_with(&vars).join(" "));
                    self.spawn(cmd.argv_with(&vars), to, what, now);
                }
                for argv in at_once {
                    let what = format!("door={} command for {to}", door.spec.name);
                    self.spawn(argv, to, what, now);
                }
                false
            }
        };
        Ok(Verdict::Opened {
            to,
            network: widened.map(|len| (held, len)),
            open: grant.open.clone(),
            duration: grant.duration,
            refreshed,
            ran,
            connections: door.connections.filter(|_| !grant.open.is_empty()),
        })
    }

    /// A grant that is neither widened nor counted: with a target, the grant element and the
    /// client NAT map's entry for its one service in one batch; without, a plain grant, after
    /// the entries this process wrote for its services are removed (each with its element, in
    /// one batch: removing a DNAT first only ever sends less on).
    fn grant_plain_or_nat(
        &mut self,
        to: IpAddr,
        open: &[Service],
        duration: Duration,
        target: Option<SocketAddr>,
        now: Instant,
    ) -> io::Result<()> {
        let end = now + duration;
        match (target, open) {
            (Some(target), [service]) => {
                let was = self.live_nat(to, *service, now);
                self.firewall
                    .grant_nat(to, open, duration, NatChange::Set { to: target, was })?;
                self.nat.insert((to, *service), (target, end));
                Ok(())
            }
            // check_nat_target lets no other shape through
            (Some(_), _) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a grant with an inner host opens exactly one service",
            )),
            (None, _) => {
                for s in open {
                    if let Some(was) = self.live_nat(to, *s, now) {
                        self.firewall
                            .grant_nat(to, &[*s], duration, NatChange::Clear { was })?;
                        self.nat.remove(&(to, *s));
                    }
                }
                self.firewall.grant(to, open, duration)
            }
        }
    }

    /// The inner host of the client NAT map's entry for `to . service` this process wrote, if
    /// the kernel still holds it by its time.
    fn live_nat(&self, to: IpAddr, service: Service, now: Instant) -> Option<SocketAddr> {
        self.nat
            .get(&(to, service))
            .filter(|(_, end)| *end > now)
            .map(|(t, _)| *t)
    }

    /// A door's delayed commands for a grant held as `key` ending at `end`, for `to` (the address
    /// that knocked, which the commands get): at a new opening, what runs at once and what is
    /// scheduled; at a refresh, the pending `at = "end"` ones that move to the new end (never
    /// earlier: an end that comes sooner moves nothing).
    fn schedule_actions(
        &self,
        door: &Door,
        key: &(String, IpAddr),
        vars: &CommandVars,
        refresh: bool,
        end: Instant,
        now: Instant,
    ) -> Schedule {
        if refresh {
            let moved = self
                .delayed
                .iter()
                .filter(|d| d.key == *key && d.at_end && d.due < end)
                .map(|d| (d.id, end))
                .collect();
            return Schedule {
                moved,
                ..Schedule::default()
            };
        }
        let (mut at_once, mut later) = (Vec::new(), Vec::new());
        for a in &door.actions {
            let argv = a.command.argv_with(vars);
            let (due, at_end) = match a.when {
                ActionTime::After(d) if d.is_zero() => {
                    at_once.push(argv);
                    continue;
                }
                ActionTime::After(d) => (now + d, false),
                ActionTime::End => (end, true),
            };
            later.push(Delayed {
                id: 0,
                key: key.clone(),
                due,
                at_end,
                argv,
            });
        }
        Schedule {
            at_once,
            later,
            moved: Vec::new(),
        }
    }

    /// When the next stop command is due or a running command should be checked.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ends = self.grants.values().flatten().map(|(_, end)| *end);
        let delayed = self.delayed.iter().map(|d| d.due);
        let stops = self
            .open
            .values()
            .map(|o| o.until)
            .chain(ends)
            .chain(delayed)
            .min();
        let reap = (!self.running.is_empty()).then(|| Instant::now() + Duration::from_millis(500));
        match (stops, reap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs stop commands that are due and reaps finished commands.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(String, IpAddr)> = self
            .open
            .iter()
            .filter(|(_, o)| o.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(Open {
                stop: Some((id, argv)),
                ..
            }) = self.open.remove(&key)
            {
                self.run_stop(id, argv, &key.0, key.1, now);
            }
        }
        let (due, later): (Vec<Delayed>, Vec<Delayed>) =
            self.delayed.drain(..).partition(|d| d.due <= now);
        self.delayed = later;
        for d in due {
            self.run_recorded(d.id, d.argv, &d.key.0, d.key.1, "delayed command", now);
        }
        for (door, ip) in self.expire_grants(now) {
            tracing::info!("door={door} src={ip} grant ended: expired");
            self.counters.door(&door).expiries += 1;
        }
        self.reap(now);
    }

    /// Forgets the grants whose every service has timed out by `now`, and returns them.
    fn expire_grants(&mut self, now: Instant) -> Vec<(String, IpAddr)> {
        let mut ended = Vec::new();
        self.grants.retain(|key, ends| {
            ends.retain(|(_, end)| *end > now);
            if ends.is_empty() {
                ended.push(key.clone());
            }
            !ends.is_empty()
        });
        for key in &ended {
            self.counted.remove(key);
        }
        self.nat.retain(|_, (_, end)| *end > now);
        ended
    }

    /// Takes over the grants the kernel's sets hold at start (knockerd restarted while they ran),
    /// as `(address, service, time left)`, so that a restore can put them back and their end is
    /// logged. The door is the one the ledger recorded for the address and service; the time
    /// left is what the kernel says, in whole seconds rounded down, so a restored grant never
    /// outlives the one granted. Grants withdrawn at the last stop are not in the sets, so they
    /// never come back.
    pub fn adopt(&mut self, now: Instant, live: &[(IpAddr, Service, Duration)]) -> usize {
        let mut adopted = 0;
        for (to, service, left) in live {
            let to = to.to_canonical();
            let door = self
                .ledger
                .as_ref()
                .and_then(|l| {
                    l.state()
                        .grants()
                        .filter(|(g, _)| {
                            g.addr == to && g.services.iter().any(|s| s == &service.to_string())
                        })
                        .last()
                        .map(|(g, _)| g.door.clone())
                })
                .unwrap_or_else(|| "(unknown)".to_string());
            let ends = self.grants.entry((door, to)).or_default();
            ends.retain(|(s, _)| s != service);
            ends.push((*service, now + *left));
            adopted += 1;
        }
        adopted
    }

    /// Takes over the client NAT maps' entries the kernel holds at start (knockerd restarted
    /// while their grants ran), as the gatekeeper that wrote them would know them: so that a
    /// restore puts them back and another target replaces them. The time left is the kernel's,
    /// rounded down. Returns how many.
    pub fn adopt_nat(&mut self, now: Instant, live: &[crate::ruleset::LiveClientNat]) -> usize {
        for (from, service, target, left) in live {
            self.nat
                .insert((from.to_canonical(), *service), (*target, now + *left));
        }
        live.len()
    }

    /// Puts every grant still open back into the sets with the time it has left (after
    /// something else deleted knocker's table or its sets). Returns how many elements were
    /// restored; a failure is logged and the rest still restored. An element granted by two doors
    /// gets the later end of the two, which each door granted.
    pub fn restore(&mut self, now: Instant) -> usize {
        // (what the element holds, the prefix its door widens it to, the service)
        let mut ends: HashMap<(IpAddr, Option<u8>, Service), Instant> = HashMap::new();
        for (door, to) in &self.counted {
            tracing::warn!("door={door} src={to}: a grant that counts connections is not put back (only the kernel knows how many it has left; if its sets were emptied, it is gone: knock again)");
        }
        for (key, services) in &self.grants {
            if self.counted.contains(key) {
                continue;
            }
            // a door gone since (a reload) puts back the address alone: never wider than granted
            let widened = self
                .doors
                .iter()
                .find(|d| d.spec.name == key.0)
                .and_then(|d| d.grant_prefix.widen(key.1).1);
            for (s, end) in services.iter().filter(|(_, end)| *end > now) {
                let e = ends.entry((key.1, widened, *s)).or_insert(*end);
                *e = (*e).max(*end);
            }
        }
        let mut by_end: HashMap<(IpAddr, Option<u8>, Instant), Vec<Service>> = HashMap::new();
        for ((to, widened, s), end) in ends {
            by_end.entry((to, widened, end)).or_default().push(s);
        }
        let mut restored = 0;
        // first the grants that send their source on to an inner host, each with its entry in
        // the client NAT map; then every grant element with the latest end any door gave it
        // (which may outlast the entry beside it)
        let nat: Vec<((IpAddr, Service), (SocketAddr, Instant))> = self
            .nat
            .iter()
            .filter(|(_, (_, end))| *end > now)
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((to, service), (target, end)) in nat {
            // a reload may have taken the target's network away: then it is not put back
            let host = crate::config::Net::of(target.ip(), 128);
            if !self
                .doors
                .iter()
                .any(|d| d.nat_networks.iter().any(|n| n.contains(&host)))
            {
                tracing::info!("src={to}: its way on to {target} ({service}) is not put back: no door sends clients there any more");
                self.nat.remove(&(to, service));
                continue;
            }
            let put = self.firewall.grant_nat(
                to,
                &[service],
                end - now,
                NatChange::Set {
                    to: target,
                    was: Some(target),
                },
            );
            if let Err(e) = put {
                tracing::error!("src={to}: cannot restore its way on to {target} ({service}): {e}");
                self.nat.remove(&(to, service));
            }
        }
        for ((to, widened, end), services) in by_end {
            let put = match widened {
                Some(len) => self.firewall.grant_network(to, len, &services, end - now),
                None => self.firewall.grant(to, &services, end - now),
            };
            match put {
                Ok(()) => restored += services.len(),
                Err(e) => tracing::error!("src={to}: cannot restore a live grant: {e}"),
            }
        }
        restored
    }

    /// Logs the end of every grant still open, for `why` (the allow sets were just flushed).
    pub fn grants_ended(&mut self, why: &str) {
        self.counted.clear();
        self.nat.clear();
        for (door, ip) in self.grants.drain().map(|(k, _)| k) {
            tracing::info!("door={door} src={ip} grant ended: {why}");
        }
    }

    /// Runs every pending stop command now (a clean shutdown must not leave a command-opened door
    /// open with nobody left to close it).
    pub fn stop_all(&mut self, now: Instant) {
        let open: Vec<((String, IpAddr), Open)> = self.open.drain().collect();
        for ((door, ip), o) in open {
            if let Some((id, argv)) = o.stop {
                self.run_stop(id, argv, &door, ip, now);
            }
        }
    }

    /// Waits up to `limit` for running commands to finish, then kills what is left.
    pub fn finish(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        while !self.running.is_empty() && Instant::now() < end {
            self.reap(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reap(Instant::now() + COMMAND_LIMIT);
    }

    /// Starts a stop command, then records it done. A crash in between runs it again at the next
    /// start: closing twice is the safe side.
    fn run_stop(&mut self, id: u64, argv: Vec<String>, door: &str, ip: IpAddr, now: Instant) {
        self.counters.door(door).stop_commands += 1;
        self.run_recorded(id, argv, door, ip, "stop command", now);
    }

    /// Starts a command of the ledger (a stop command or a delayed one), then records it done.
    fn run_recorded(
        &mut self,
        id: u64,
        argv: Vec<String>,
        door: &str,
        ip: IpAddr,
        what: &str,
        now: Instant,
    ) {
        self.spawn(argv, ip, format!("door={door} {what} for {ip}"), now);
        if let Some(ledger) = self.ledger.as_mut() {
            if id != 0 {
                if let Err(e) = ledger.append(ledger::unix_now(), Record::StopDone { id }) {
                    tracing::error!("door={door} src={ip}: cannot record the {what} as done ({e}); it runs again at the next start");
                }
            }
        }
    }

    fn spawn(&mut self, argv: Vec<String>, ip: IpAddr, what: String, now: Instant) {
        let Some((program, args)) = argv.split_first() else {
            return;
        };
        let spawned = std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .env("KNOCKER_IP", ip.to_string())
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::info!("{what}: started pid {}", child.id());
                self.running.push(Running {
                    what,
                    child,
                    started: now,
                });
            }
            Err(e) => tracing::error!("{what}: cannot run {program:?}: {e}"),
        }
    }

    fn reap(&mut self, now: Instant) {
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) if status.success() => {
                tracing::debug!("{}: done", r.what);
                false
            }
            Ok(Some(status)) => {
                tracing::warn!("{}: failed with {status}", r.what);
                false
            }
            Ok(None) if now.saturating_duration_since(r.started) > COMMAND_LIMIT => {
                tracing::warn!("{}: still running after {COMMAND_LIMIT:?}, killed", r.what);
                let _ = r.child.kill();
                let _ = r.child.wait();
                false
            }
            Ok(None) => true,
            Err(e) => {
                tracing::warn!("{}: cannot wait for it: {e}", r.what);
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native::parse;
    use std::path::Path;

    #[derive(Default)]
    struct Recorder(
        Vec<(IpAddr, Vec<Service>, Duration)>,
        Vec<(IpAddr, u8)>,
        Vec<(IpAddr, u8)>,
        Vec<(IpAddr, Vec<Service>, NatChange)>,
    );
    impl Firewall for Recorder {
        fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()> {
            self.0.push((to, services.to_vec(), timeout));
            Ok(())
        }
        fn grant_connections(
            &mut self,
            to: IpAddr,
            services: &[Service],
            timeout: Duration,
            connections: NonZeroU8,
        ) -> io::Result<()> {
            self.1.push((to, connections.get()));
            self.grant(to, services, timeout)
        }
        fn grant_network(
            &mut self,
            net: IpAddr,
            len: u8,
            services: &[Service],
            timeout: Duration,
        ) -> io::Result<()> {
            self.2.push((net, len));
            self.grant(net, services, timeout)
        }
        fn grant_nat(
            &mut self,
            to: IpAddr,
            services: &[Service],
            timeout: Duration,
            nat: NatChange,
        ) -> io::Result<()> {
            self.3.push((to, services.to_vec(), nat));
            self.grant(to, services, timeout)
        }
    }

    fn config() -> Config {
        parse(
            Path::new("t.toml"),
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\", \"53:udp\"]\nopen_for = 30\n",
        )
        .expect("valid")
    }

    fn grant(to: &str) -> Grant {
        Grant {
            door: 0,
            door_name: "ssh".into(),
            to: to.parse().expect("ip"),
            open: vec![Service::tcp(22)],
            duration: Duration::from_secs(30),
            client: None,
            spa: None,
        }
    }

    /// A grant of tcp/22 to `to` that asks to be sent on to `target` (fwknop's `-N`).
    fn nat_grant(to: &str, target: &str) -> Grant {
        Grant {
            spa: Some(knocker_engine::SpaFacts {
                packet_source: to.parse().expect("ip"),
                destination: "10.200.0.1".parse().expect("ip"),
                timestamp: 0,
                client_timeout: 0,
                nat: Some(target.parse().expect("target")),
            }),
            ..grant(to)
        }
    }

    #[test]
    fn a_client_named_inner_host_is_checked_and_its_map_entry_follows_the_grant() {
        let refused = |g: &mut Gatekeeper<Recorder>, grant: &Grant, says: &str| match g
            .apply(grant, Instant::now())
        {
            Err(e @ GrantError::NatTarget { .. }) => {
                assert!(e.to_string().contains(says), "{e}")
            }
            other => panic!("{grant:?} must be refused: {other:?}"),
        };
        // a door that lists no networks sends nobody anywhere
        let mut g = Gatekeeper::new(&config(), Recorder::default(), None);
        refused(
            &mut g,
            &nat_grant("10.200.1.2", "10.200.3.2:22"),
            "--fwknop-nat-targets",
        );
        assert!(g.firewall().0.is_empty() && g.firewall().3.is_empty());

        let mut c = config();
        c.doors[0].nat_networks = vec!["10.200.3.0/24".parse().expect("net")];
        let mut g = Gatekeeper::new(&c, Recorder::default(), None);
        let now = Instant::now();
        for (grant, says) in [
            (
                nat_grant("10.200.1.2", "10.200.4.2:22"),
                "in none of the door",
            ),
            (nat_grant("10.200.1.2", "10.200.3.255:22"), "broadcast"),
            (nat_grant("10.200.1.2", "10.200.3.0:22"), "broadcast"),
            (nat_grant("10.200.1.2", "127.0.0.1:22"), "unicast"),
            (nat_grant("10.200.1.2", "10.200.3.2:0"), "unicast"),
            (nat_grant("fd00:200:1::2", "10.200.3.2:22"), "IPv4 and IPv6"),
            (
                Grant {
                    open: vec![Service::tcp(22), Service::udp(53)],
                    ..nat_grant("10.200.1.2", "10.200.3.2:22")
                },
                "one service",
            ),
        ] {
            refused(&mut g, &grant, says);
        }
        assert!(g.firewall().0.is_empty() && g.firewall().3.is_empty());

        // inside: the grant element and the map entry in one batch
        g.apply(&nat_grant("10.200.1.2", "10.200.3.2:22"), now)
            .expect("granted");
        let to: IpAddr = "10.200.1.2".parse().expect("ip");
        let inner: SocketAddr = "10.200.3.2:22".parse().expect("target");
        let other: SocketAddr = "10.200.3.7:22".parse().expect("target");
        assert_eq!(
            g.firewall().3,
            [(
                to,
                vec![Service::tcp(22)],
                NatChange::Set {
                    to: inner,
                    was: None
                }
            )]
        );
        // another target replaces it, naming the one it replaces
        g.apply(&nat_grant("10.200.1.2", "10.200.3.7:22"), now)
            .expect("granted");
        assert_eq!(
            g.firewall().3[1],
            (
                to,
                vec![Service::tcp(22)],
                NatChange::Set {
                    to: other,
                    was: Some(inner)
                }
            )
        );
        // after a flush, the restore puts it back with its grant
        g.firewall().3.clear();
        assert!(g.restore(now + Duration::from_secs(1)) > 0);
        assert_eq!(
            g.firewall().3,
            [(
                to,
                vec![Service::tcp(22)],
                NatChange::Set {
                    to: other,
                    was: Some(other)
                }
            )]
        );
        // a reload that drops the networks: nothing is put back there
        g.reconfigure(&config());
        g.firewall().3.clear();
        g.restore(now + Duration::from_secs(1));
        assert!(g.firewall().3.is_empty());
        g.reconfigure(&c);
        g.apply(&nat_grant("10.200.1.2", "10.200.3.7:22"), now)
            .expect("granted");
        // a plain grant takes the source back to this host's own service
        g.apply(&grant("10.200.1.2"), now).expect("granted");
        assert_eq!(
            g.firewall().3[1],
            (to, vec![Service::tcp(22)], NatChange::Clear { was: other })
        );
        g.firewall().3.clear();
        g.restore(now + Duration::from_secs(1));
        assert!(g.firewall().3.is_empty(), "nothing left to send on");
        // and once the grant's time is over, nothing is remembered
        g.apply(&nat_grant("10.200.1.2", "10.200.3.2:22"), now)
            .expect("granted");
        g.handle_timeout(now + Duration::from_secs(31));
        g.firewall().3.clear();
        g.restore(now + Duration::from_secs(31));
        assert!(g.firewall().3.is_empty());
    }

    #[test]
    fn validates_every_grant() {
        let mut g = Gatekeeper::new(&config(), Recorder::default(), None);
        let now = Instant::now();
        assert!(g.apply(&grant("10.200.1.2"), now).is_ok());
        assert!(matches!(
            g.apply(
                &Grant {
                    door_name: "web".into(),
                    ..grant("10.200.1.2")
                },
                now
            ),
            Err(GrantError::UnknownDoor(_))
        ));
        assert!(matches!(
            g.apply(
                &Grant {
                    open: vec![Service::tcp(23)],
                    ..grant("10.200.1.2")
                },
                now
            ),
            Err(GrantError::ServiceNotInDoor { .. })
        ));
        assert!(matches!(
            g.apply(
                &Grant {
                    duration: Duration::from_secs(31),
                    ..grant("10.200.1.2")
                },
                now
            ),
            Err(GrantError::TooLong { .. })
        ));
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                matches!(g.apply(&grant(bad), now), Err(GrantError::BadAddress(_))),
                "{bad}"
            );
        }
        // an IPv4-mapped address is granted as the IPv4 address it is
        assert!(g.apply(&grant("::ffff:10.200.1.3"), now).is_ok());
        let granted: Vec<String> = g
            .firewall()
            .0
            .iter()
            .map(|(ip, _, _)| ip.to_string())
            .collect();
        assert_eq!(granted, vec!["10.200.1.2", "10.200.1.3"]);
    }

    #[test]
    fn restore_puts_back_what_is_open_with_the_time_left() {
        let mut g = Gatekeeper::new(&config(), Recorder::default(), None);
        let t0 = Instant::now();
        g.apply(&grant("10.200.1.2"), t0).expect("granted");
        g.apply(
            &Grant {
                open: vec![Service::tcp(22), Service::udp(53)],
                duration: Duration::from_secs(10),
                ..grant("10.200.1.3")
            },
            t0,
        )
        .expect("granted");
        // adopted at start from the kernel's sets: 7 s left
        let v6: IpAddr = "fd00:200::9".parse().expect("ip");
        assert_eq!(
            g.adopt(t0, &[(v6, Service::tcp(22), Duration::from_secs(7))]),
            1
        );
        g.firewall().0.clear();
        let later = t0 + Duration::from_secs(4);
        assert_eq!(g.restore(later), 4);
        let mut put: Vec<(String, usize, u64)> = g
            .firewall()
            .0
            .iter()
            .map(|(ip, s, d)| (ip.to_string(), s.len(), d.as_secs()))
            .collect();
        put.sort();
        assert_eq!(
            put,
            vec![
                ("10.200.1.2".into(), 1, 26),
                ("10.200.1.3".into(), 2, 6),
                ("fd00:200::9".into(), 1, 3)
            ]
        );
        // what has ended is not put back: nothing is ever open past its time
        g.firewall().0.clear();
        assert_eq!(g.restore(t0 + Duration::from_secs(11)), 1);
        assert_eq!(g.firewall().0[0].0.to_string(), "10.200.1.2");
        assert_eq!(g.restore(t0 + Duration::from_secs(30)), 0);
    }

    #[test]
    fn a_grant_that_counts_connections_goes_to_the_slots_and_is_never_restored() {
        let c = parse(
            Path::new("t.toml"),
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\nconnections = 2\n",
        )
        .expect("valid");
        let mut g = Gatekeeper::new(&c, Recorder::default(), None);
        let t0 = Instant::now();
        let v = g.apply(&grant("10.200.1.2"), t0).expect("granted");
        assert!(
            matches!(v, Verdict::Opened { connections: Some(n), .. } if n.get() == 2),
            "{v:?}"
        );
        assert_eq!(g.firewall().1, vec![("10.200.1.2".parse().expect("ip"), 2)]);
        // only the kernel knows how many are left: a restore must not hand out two again
        g.firewall().0.clear();
        assert_eq!(g.restore(t0 + Duration::from_secs(1)), 0);
        assert!(g.firewall().0.is_empty());
        // its end is still logged at its time, and then it is forgotten
        assert_eq!(g.expire_grants(t0 + Duration::from_secs(30)).len(), 1);
        assert!(g.counted.is_empty());
    }

    #[test]
    fn a_grant_ends_when_its_last_timeout_passes_and_a_refresh_moves_it() {
        let mut g = Gatekeeper::new(&config(), Recorder::default(), None);
        let t0 = Instant::now();
        let ssh = (
            "ssh".to_string(),
            "10.200.1.2".parse::<IpAddr>().expect("ip"),
        );
        g.apply(&grant("10.200.1.2"), t0).expect("granted");
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        // a refresh 10 s later: the kernel's timeout starts again, so does the daemon's
        g.apply(&grant("10.200.1.2"), t0 + Duration::from_secs(10))
            .expect("refreshed");
        // a second service, shorter: the grant ends with its last service
        let dns = Grant {
            open: vec![Service::udp(53)],
            duration: Duration::from_secs(5),
            ..grant("10.200.1.2")
        };
        g.apply(&dns, t0 + Duration::from_secs(20))
            .expect("granted");
        assert!(g.expire_grants(t0 + Duration::from_secs(30)).is_empty());
        assert!(g.expire_grants(t0 + Duration::from_secs(39)).is_empty());
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_secs(40)));
        assert_eq!(
            g.expire_grants(t0 + Duration::from_secs(40)),
            vec![ssh.clone()]
        );
        assert!(
            g.expire_grants(t0 + Duration::from_secs(99)).is_empty(),
            "once"
        );
        g.handle_timeout(t0 + Duration::from_secs(99));
        assert_eq!(g.poll_timeout(), None);
        // withdrawn: every grant still open ends at once
        g.apply(&grant("10.200.1.2"), t0 + Duration::from_secs(100))
            .expect("granted");
        g.grants_ended("withdrawn (on_stop = withdraw)");
        assert!(g.expire_grants(t0 + Duration::from_secs(200)).is_empty());
    }

    #[test]
    fn start_command_runs_once_and_stop_command_once() {
        let dir = std::env::temp_dir().join(format!("knocker-gk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("log");
        let text = format!(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\nshell = true\nstart_command = \"echo start %IP% >> {0}\"\nstop_command = \"echo stop %IP% >> {0}\"\nstop_after = 5\n",
            log.display()
        );
        let c = parse(Path::new("t.toml"), &text).expect("valid");
        let mut g = Gatekeeper::new(&c, Recorder::default(), None);
        let t0 = Instant::now();
        let v = g.apply(&grant("10.200.1.2"), t0).expect("granted");
        assert!(matches!(
            v,
            Verdict::Opened {
                refreshed: false,
                ..
            }
        ));
        let v = g
            .apply(&grant("10.200.1.2"), t0 + Duration::from_secs(1))
            .expect("granted");
        assert!(matches!(
            v,
            Verdict::Opened {
                refreshed: true,
                ..
            }
        ));
        assert_eq!(
            g.firewall().0.len(),
            2,
            "the firewall element is refreshed every time"
        );
        g.finish(Duration::from_secs(5));
        g.handle_timeout(t0 + Duration::from_secs(5));
        assert!(
            g.poll_timeout().is_some(),
            "the refresh moved the stop to t0+6s"
        );
        g.handle_timeout(t0 + Duration::from_secs(6));
        g.finish(Duration::from_secs(5));
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(text, "start 10.200.1.2\nstop 10.200.1.2\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An access.conf's doors, from a file in `dir`.
    fn fwknop_config(dir: &Path, access: &str) -> Config {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("access.conf");
        std::fs::write(&path, access).expect("access.conf");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        crate::config::fwknop::doors::load(&path, None, crate::config::fwknop::Legacy::Refuse, &[])
            .expect("loads")
            .0
    }

    /// What the engine hands over for an fwknop packet with a client timeout of `asked` s.
    fn fwknop_grant(duration: u64, asked: u64) -> Grant {
        Grant {
            door: 0,
            door_name: "fwknop-1".into(),
            to: "10.200.1.2".parse().expect("ip"),
            open: vec![Service::udp(53), Service::tcp(22)],
            duration: Duration::from_secs(duration),
            client: None,
            spa: Some(knocker_engine::SpaFacts {
                packet_source: "10.200.1.2".parse().expect("ip"),
                destination: "10.200.1.1".parse().expect("ip"),
                timestamp: 1_795_266_816,
                client_timeout: asked,
                nat: None,
            }),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "access.conf")
            .collect();
        v.sort();
        v
    }

    #[test]
    fn fwknop_command_cycles_get_every_variable_and_close_after_the_clients_timeout() {
        let dir = std::env::temp_dir().join(format!("knocker-gk-cycle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let d = dir.display();
        let keys = "KEY_BASE64 YWJjZGVmZ2hpamtsbW5vcA==\nHMAC_KEY_BASE64 cXJzdHV2d3h5eg==\n";
        let c = fwknop_config(
            &dir,
            &format!("SOURCE ANY\n{keys}MAX_FW_TIMEOUT 60\nCMD_CYCLE_OPEN /usr/bin/touch {d}/open_$SRC_$PKT_SRC_$DST_$PROTO_$PORT_$CLIENT_TIMEOUT_$TIMEOUT\nCMD_CYCLE_CLOSE /usr/bin/touch {d}/close_$IP_$TIMEOUT\nCMD_CYCLE_TIMER 2\n"),
        );
        assert!(!c.doors[0].protect, "a command cycle is the firewall");
        let mut g = Gatekeeper::new(&c, Recorder::default(), None);
        let t0 = Instant::now();
        // the client asked for 7 s: the close command runs after 7 s, not CMD_CYCLE_TIMER's 2
        g.apply(&fwknop_grant(7, 7), t0).expect("granted");
        g.finish(Duration::from_secs(5));
        g.handle_timeout(t0 + Duration::from_secs(3));
        g.finish(Duration::from_secs(5));
        assert_eq!(
            names(&dir),
            ["open_10.200.1.2_10.200.1.2_10.200.1.1_17_53_7_1795266823"]
        );
        g.handle_timeout(t0 + Duration::from_secs(7));
        g.finish(Duration::from_secs(5));
        assert_eq!(
            names(&dir),
            [
                "close_10.200.1.2_1795266823",
                "open_10.200.1.2_10.200.1.2_10.200.1.1_17_53_7_1795266823"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);

        // no client timeout: CMD_CYCLE_TIMER; without a close command and a timer, $TIMEOUT is
        // the packet's timestamp, as in fwknopd
        std::fs::create_dir_all(&dir).expect("dir");
        let c = fwknop_config(
            &dir,
            &format!("SOURCE ANY\n{keys}CMD_CYCLE_OPEN /usr/bin/touch {d}/once_$TIMEOUT_$CLIENT_TIMEOUT\nCMD_CYCLE_CLOSE NONE\n"),
        );
        let mut g = Gatekeeper::new(&c, Recorder::default(), None);
        g.apply(&fwknop_grant(30, 0), t0).expect("granted");
        g.finish(Duration::from_secs(5));
        assert_eq!(names(&dir), ["once_1795266816_0"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn actions_config(log: &Path) -> Config {
        actions_config_open_for(log, 30, 1)
    }

    /// A door with three commands (now, after 1 s, at the end), whose grants last `open_for` s.
    fn actions_config_open_for(log: &Path, open_for: u32, later_after: u32) -> Config {
        let text = format!(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = {open_for}\nshell = true\n\n[[door.ssh.command]]\nrun = \"echo now %IP% >> {0}\"\n\n[[door.ssh.command]]\nrun = \"echo later %IP% >> {0}\"\nafter = {later_after}\n\n[[door.ssh.command]]\nrun = \"echo end %IP% >> {0}\"\nat = \"end\"\n",
            log.display()
        );
        parse(Path::new("t.toml"), &text).expect("valid")
    }

    #[test]
    fn delayed_commands_run_at_their_time_and_the_end_moves_with_a_refresh() {
        let dir = temp("actions");
        let log = dir.join("log");
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let mut g = Gatekeeper::new(
            &actions_config(&log),
            Recorder::default(),
            Some(open_ledger(&dir)),
        );
        let t0 = Instant::now();
        g.apply(&grant("10.200.1.2"), t0).expect("granted");
        g.finish(Duration::from_secs(5));
        assert_eq!(
            read(),
            "now 10.200.1.2\n",
            "the one without a delay at once"
        );
        let pending = g.ledger().expect("ledger").state().pending_actions().len();
        assert_eq!(pending, 2, "the delayed ones are in the ledger first");
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        g.handle_timeout(t0 + Duration::from_secs(1));
        g.finish(Duration::from_secs(5));
        assert_eq!(read(), "now 10.200.1.2\nlater 10.200.1.2\n");
        // a refresh runs nothing again and moves the end to t0 + 40 s
        g.apply(&grant("10.200.1.2"), t0 + Duration::from_secs(10))
            .expect("refreshed");
        g.handle_timeout(t0 + Duration::from_secs(30));
        g.finish(Duration::from_secs(5));
        assert_eq!(read(), "now 10.200.1.2\nlater 10.200.1.2\n");
        g.handle_timeout(t0 + Duration::from_secs(40));
        g.finish(Duration::from_secs(5));
        assert_eq!(read(), "now 10.200.1.2\nlater 10.200.1.2\nend 10.200.1.2\n");
        let state = g.ledger().expect("ledger").state();
        assert!(state.pending_actions().is_empty(), "recorded as done");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn delayed_commands_pending_at_a_crash_run_at_the_next_start_once() {
        let dir = temp("actions-crash");
        let log = dir.join("log");
        // The grant's end an hour away, so that only the "later" command can be overdue however
        // slow the machine or however far its wall clock steps while the test sleeps (a CI
        // run once found both overdue with the end 30 s away). The "later" command 2 s after
        // the opening: the ledger keeps due times in whole seconds rounded down (a restart
        // runs a command up to a second early, never late), so with 1 s a restart a few
        // milliseconds after an opening late in its second found it due (CI, twice).
        let c = actions_config_open_for(&log, 3600, 2);
        {
            let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
            g.apply(&grant("10.200.1.2"), Instant::now())
                .expect("granted");
            g.finish(Duration::from_secs(5));
            // a crash: the gatekeeper goes away with two commands pending
        }
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        assert_eq!(g.recover(Instant::now()), (0, 2), "neither is due yet");
        let due = g.poll_timeout().expect("scheduled");
        assert!(due <= Instant::now() + Duration::from_secs(2), "never late");
        drop(g);
        std::thread::sleep(Duration::from_millis(2100));
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        assert_eq!(g.recover(Instant::now()), (1, 1), "the 2 s one is overdue");
        g.finish(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "now 10.200.1.2\nlater 10.200.1.2\n"
        );
        drop(g);
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        assert_eq!(g.recover(Instant::now()), (0, 1), "it ran once");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("knocker-gk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn open_ledger(dir: &Path) -> Ledger {
        Ledger::open(
            &dir.join("state").join(ledger::FILE_NAME),
            ledger::unix_now(),
            ledger::Options::default(),
        )
        .expect("ledger")
        .0
    }

    fn command_config(log: &Path, stop_after: u64) -> Config {
        command_config_with(log, stop_after, "")
    }

    /// [`command_config`] with more keys of the door's.
    fn command_config_with(log: &Path, stop_after: u64, extra: &str) -> Config {
        let text = format!(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\nshell = true\nstart_command = \"echo start %IP% >> {0}\"\nstop_command = \"echo stop %IP% >> {0}\"\nstop_after = {stop_after}\n{extra}",
            log.display()
        );
        parse(Path::new("t.toml"), &text).expect("valid")
    }

    #[test]
    fn a_widened_grant_holds_the_network_and_commands_get_the_address_that_knocked() {
        let dir = temp("prefix");
        let log = dir.join("log");
        let c = command_config_with(&log, 30, "grant_prefix = 24\ngrant_prefix6 = 64\n");
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        let t0 = Instant::now();
        let first = g.apply(&grant("10.200.1.5"), t0).expect("granted");
        let Verdict::Opened {
            to,
            network,
            refreshed,
            ..
        } = first;
        assert_eq!(to, "10.200.1.5".parse::<IpAddr>().expect("ip"));
        assert_eq!(network, Some(("10.200.1.0".parse().expect("ip"), 24)));
        assert!(!refreshed);
        // another address of the same /24: the same grant, refreshed, no second start command
        let Verdict::Opened { refreshed, .. } = g.apply(&grant("10.200.1.9"), t0).expect("granted");
        assert!(refreshed, "one grant per network");
        g.apply(&grant("fd00:200:1::7"), t0).expect("granted");
        assert_eq!(
            g.firewall().2,
            vec![
                ("10.200.1.0".parse().expect("ip"), 24),
                ("10.200.1.0".parse().expect("ip"), 24),
                ("fd00:200:1::".parse().expect("ip"), 64),
            ]
        );
        assert!(g
            .firewall()
            .0
            .iter()
            .all(|(ip, _, _)| ip.to_string() != "10.200.1.5"));
        // the ledger holds the network, so that a restart's adoption finds the door
        let held: Vec<IpAddr> = g
            .ledger()
            .expect("ledger")
            .state()
            .grants()
            .map(|(r, _)| r.addr)
            .collect();
        assert!(
            held.contains(&"10.200.1.0".parse().expect("ip")),
            "{held:?}"
        );
        // a restore puts the network back into the set of its prefix
        g.firewall().2.clear();
        assert_eq!(g.restore(t0 + Duration::from_secs(1)), 2);
        let mut back = g.firewall().2.clone();
        back.sort();
        assert_eq!(
            back,
            vec![
                ("10.200.1.0".parse().expect("ip"), 24),
                ("fd00:200:1::".parse().expect("ip"), 64),
            ]
        );
        g.finish(Duration::from_secs(5));
        let ran = std::fs::read_to_string(&log).expect("log");
        assert!(ran.contains("start 10.200.1.5\n"), "{ran}");
        assert!(!ran.contains("10.200.1.0"), "{ran}");
    }

    #[test]
    fn a_stop_command_pending_at_a_crash_runs_once_at_the_next_start() {
        let dir = temp("crash");
        let log = dir.join("log");
        let c = command_config(&log, 1);
        let t0 = Instant::now();
        {
            let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
            g.apply(&grant("10.200.1.2"), t0).expect("granted");
            g.finish(Duration::from_secs(5));
            // a crash: no stop_all, the gatekeeper just goes away
        }
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "start 10.200.1.2\n"
        );
        std::thread::sleep(Duration::from_millis(1100));
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        assert_eq!(g.recover(Instant::now()), (1, 0), "overdue: run at once");
        g.finish(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "start 10.200.1.2\nstop 10.200.1.2\n"
        );
        assert!(
            g.ledger()
                .expect("ledger")
                .state()
                .pending_stops()
                .is_empty(),
            "recorded as done"
        );
        drop(g);
        // a further restart runs nothing again
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        assert_eq!(g.recover(Instant::now()), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stop_command_rescheduled_from_the_ledger_is_never_late() {
        // the ledger keeps whole seconds; counted from the whole second now, a rescheduled stop
        // command ran up to a second late (seen by the soak)
        let dir = temp("stop-on-time");
        let c = command_config(&dir.join("log"), 60);
        let t0 = Instant::now();
        {
            let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
            g.apply(&grant("10.200.1.2"), t0).expect("granted");
            g.finish(Duration::from_secs(5));
        }
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        assert_eq!(g.recover(Instant::now()), (0, 1));
        let due = g.poll_timeout().expect("scheduled");
        assert!(
            due <= t0 + Duration::from_secs(60),
            "rescheduled {:?} after its due time",
            due - (t0 + Duration::from_secs(60))
        );
        assert!(due + Duration::from_secs(1) > t0 + Duration::from_secs(60));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stop_command_not_yet_due_is_rescheduled_and_a_refresh_moves_it() {
        let dir = temp("resched");
        let log = dir.join("log");
        let c = command_config(&log, 60);
        let t0 = Instant::now();
        {
            let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
            g.apply(&grant("10.200.1.2"), t0).expect("granted");
            let v = g
                .apply(&grant("10.200.1.2"), t0 + Duration::from_secs(2))
                .expect("refreshed");
            assert!(matches!(
                v,
                Verdict::Opened {
                    refreshed: true,
                    ..
                }
            ));
            let pending = g.ledger().expect("ledger").state().pending_stops().len();
            assert_eq!(pending, 1, "a refresh moves the stop, it does not add one");
            g.finish(Duration::from_secs(5));
        }
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        let now = Instant::now();
        assert_eq!(g.recover(now), (0, 1));
        let due = g.poll_timeout().expect("scheduled");
        assert!(
            due > now + Duration::from_secs(55),
            "due about 62 s after the first grant"
        );
        // a knock after the restart refreshes: the start command does not run again
        let v = g.apply(&grant("10.200.1.2"), now).expect("granted");
        assert!(matches!(
            v,
            Verdict::Opened {
                refreshed: true,
                ..
            }
        ));
        g.stop_all(now);
        g.finish(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "start 10.200.1.2\nstop 10.200.1.2\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_door_without_a_stop_command_runs_its_command_on_every_knock() {
        let dir = temp("nostop");
        let log = dir.join("log");
        let text = format!(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\nshell = true\nstart_command = \"echo start %IP% >> {0}\"\n",
            log.display()
        );
        let c = parse(Path::new("t.toml"), &text).expect("valid");
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        let t0 = Instant::now();
        for i in 0..2 {
            let v = g
                .apply(&grant("10.200.1.2"), t0 + Duration::from_secs(i))
                .expect("granted");
            assert!(
                matches!(
                    v,
                    Verdict::Opened {
                        refreshed: false,
                        ..
                    }
                ),
                "knock {i}: {v:?}"
            );
            g.finish(Duration::from_secs(5));
        }
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "start 10.200.1.2\nstart 10.200.1.2\n"
        );
        assert_eq!(g.firewall().0.len(), 2);
        // a door with no command at all still refreshes its grant
        let mut g = Gatekeeper::new(&config(), Recorder::default(), None);
        g.apply(&grant("10.200.1.2"), t0).expect("granted");
        let v = g.apply(&grant("10.200.1.2"), t0).expect("granted");
        assert!(
            matches!(
                v,
                Verdict::Opened {
                    refreshed: true,
                    ..
                }
            ),
            "{v:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn repeat_start_command_runs_the_start_again_but_stops_once() {
        let dir = temp("repeat");
        let log = dir.join("log");
        let text = format!(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\nshell = true\nrepeat_start_command = true\nstart_command = \"echo start %IP% >> {0}\"\nstop_command = \"echo stop %IP% >> {0}\"\nstop_after = 5\n",
            log.display()
        );
        let c = parse(Path::new("t.toml"), &text).expect("valid");
        let mut g = Gatekeeper::new(&c, Recorder::default(), Some(open_ledger(&dir)));
        let t0 = Instant::now();
        g.apply(&grant("10.200.1.2"), t0).expect("granted");
        g.finish(Duration::from_secs(5));
        g.apply(&grant("10.200.1.2"), t0 + Duration::from_secs(1))
            .expect("granted");
        g.finish(Duration::from_secs(5));
        g.handle_timeout(t0 + Duration::from_secs(7));
        g.finish(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "start 10.200.1.2\nstart 10.200.1.2\nstop 10.200.1.2\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
