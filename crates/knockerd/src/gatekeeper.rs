//! The gatekeeper: the only part of knockerd that changes the firewall or runs commands.
//!
//! Its interface is deliberately small and typed, a [`Grant`] in and a [`Verdict`] out, so that it
//! can move into a separate privileged process: it trusts nothing in the grant. The door must
//! exist, the services must be ones the door opens, the duration must not exceed the door's, and
//! the address must be a unicast address a packet could really come from.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use knocker_engine::{Grant, Service};

use crate::config::{Command, Config, Door};

/// How grants reach the kernel.
pub trait Firewall {
    /// Adds or refreshes `to . service` for every service, expiring after `timeout`, atomically.
    fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()>;
}

impl Firewall for crate::nftset::NftSets {
    fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()> {
        crate::nftset::NftSets::grant(self, to, services, timeout)
    }
}

/// Why a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
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
    #[error("the firewall refused: {0}")]
    Firewall(io::Error),
}

/// What the gatekeeper did with a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The services are open to the address until the kernel times them out.
    Opened {
        to: IpAddr,
        open: Vec<Service>,
        duration: Duration,
        refreshed: bool,
    },
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

struct Open {
    /// When the door's stop command is due (or the grant ends, with no stop command).
    until: Instant,
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
    /// Grants this process made that are still open, by (door, address): so that a repeated
    /// knock refreshes instead of running the start command again, and the stop command runs
    /// once. Entries leave when the grant (or its stop command) is due, so the map holds at most
    /// the grants of one door's duration.
    open: HashMap<(String, IpAddr), Open>,
    running: Vec<Running>,
}

impl<F: Firewall> Gatekeeper<F> {
    pub fn new(config: &Config, firewall: F) -> Self {
        Gatekeeper {
            doors: config.doors.clone(),
            firewall,
            open: HashMap::new(),
            running: Vec::new(),
        }
    }

    /// Takes a new configuration (after a reload). Grants already open keep their schedule.
    pub fn reconfigure(&mut self, config: &Config) {
        self.doors = config.doors.clone();
    }

    pub fn firewall(&mut self) -> &mut F {
        &mut self.firewall
    }

    /// Validates a grant against the configuration and applies it.
    pub fn apply(&mut self, grant: &Grant, now: Instant) -> Result<Verdict, Refusal> {
        let door = self
            .doors
            .iter()
            .find(|d| d.spec.name == grant.door_name)
            .cloned()
            .ok_or_else(|| Refusal::UnknownDoor(grant.door_name.clone()))?;
        if let Some(s) = grant.open.iter().find(|s| !door.spec.open.contains(s)) {
            return Err(Refusal::ServiceNotInDoor {
                door: door.spec.name.clone(),
                service: *s,
            });
        }
        if grant.duration > door.spec.open_for {
            return Err(Refusal::TooLong {
                door: door.spec.name.clone(),
                max: door.spec.open_for,
                asked: grant.duration,
            });
        }
        let to = grant.to.to_canonical();
        if !grantable(to) {
            return Err(Refusal::BadAddress(grant.to));
        }
        // a door that only runs commands (knockd's kind) has nothing to put in the sets
        if !grant.open.is_empty() {
            self.firewall
                .grant(to, &grant.open, grant.duration)
                .map_err(Refusal::Firewall)?;
        }

        let key = (door.spec.name.clone(), to);
        let until = now
            + match door.stop_command_for(to) {
                Some(_) => door.stop_after,
                None => grant.duration,
            };
        let refreshed = match self.open.get_mut(&key) {
            Some(open) => {
                open.until = open.until.max(until);
                true
            }
            None => {
                self.open.insert(key, Open { until });
                if let Some(cmd) = door.start_command_for(to) {
                    let what = format!("door={} start command for {to}", door.spec.name);
                    self.spawn(cmd, to, what, now);
                }
                false
            }
        };
        Ok(Verdict::Opened {
            to,
            open: grant.open.clone(),
            duration: grant.duration,
            refreshed,
        })
    }

    /// When the next stop command is due or a running command should be checked.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stops = self.open.values().map(|o| o.until).min();
        let reap = self
            .running
            .iter()
            .map(|_| Instant::now() + Duration::from_millis(500))
            .min();
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
            self.open.remove(&key);
            self.stop(&key.0, key.1, now);
        }
        self.reap(now);
    }

    /// Runs every pending stop command now (a clean shutdown must not leave a command-opened door
    /// open with nobody left to close it).
    pub fn stop_all(&mut self, now: Instant) {
        let keys: Vec<(String, IpAddr)> = self.open.drain().map(|(k, _)| k).collect();
        for (door, ip) in keys {
            self.stop(&door, ip, now);
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

    fn stop(&mut self, door: &str, ip: IpAddr, now: Instant) {
        let cmd = self
            .doors
            .iter()
            .find(|d| d.spec.name == door)
            .and_then(|d| d.stop_command_for(ip).cloned());
        if let Some(cmd) = cmd {
            self.spawn(&cmd, ip, format!("door={door} stop command for {ip}"), now);
        }
    }

    fn spawn(&mut self, cmd: &Command, ip: IpAddr, what: String, now: Instant) {
        let argv = cmd.argv_for(ip);
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
    use crate::config::parse;
    use std::path::Path;

    #[derive(Default)]
    struct Recorder(Vec<(IpAddr, Vec<Service>, Duration)>);
    impl Firewall for Recorder {
        fn grant(&mut self, to: IpAddr, services: &[Service], timeout: Duration) -> io::Result<()> {
            self.0.push((to, services.to_vec(), timeout));
            Ok(())
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
        }
    }

    #[test]
    fn validates_every_grant() {
        let mut g = Gatekeeper::new(&config(), Recorder::default());
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
            Err(Refusal::UnknownDoor(_))
        ));
        assert!(matches!(
            g.apply(
                &Grant {
                    open: vec![Service::tcp(23)],
                    ..grant("10.200.1.2")
                },
                now
            ),
            Err(Refusal::ServiceNotInDoor { .. })
        ));
        assert!(matches!(
            g.apply(
                &Grant {
                    duration: Duration::from_secs(31),
                    ..grant("10.200.1.2")
                },
                now
            ),
            Err(Refusal::TooLong { .. })
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
                matches!(g.apply(&grant(bad), now), Err(Refusal::BadAddress(_))),
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
    fn start_command_runs_once_and_stop_command_once() {
        let dir = std::env::temp_dir().join(format!("knocker-gk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("log");
        let text = format!(
            "[door.ssh]\nsequence = [\"7000\", \"9000\", \"8000\"]\nopen = [\"22\"]\nopen_for = 30\nshell = true\nstart_command = \"echo start %IP% >> {0}\"\nstop_command = \"echo stop %IP% >> {0}\"\nstop_after = 5\n",
            log.display()
        );
        let c = parse(Path::new("t.toml"), &text).expect("valid");
        let mut g = Gatekeeper::new(&c, Recorder::default());
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
}
