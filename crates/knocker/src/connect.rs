//! `knocker connect HOST PORT`: knock with HOST's profile (whatever its kind), wait until the
//! port answers, knocking again a bounded number of times, then relay standard input and output
//! to the connection, so that `ssh -o ProxyCommand='knocker connect %h %p' myserver` just works.
//!
//! Standard output carries the connection's bytes and nothing else (ssh reads it); what knocker
//! has to say goes to standard error, with -v or on failure. Two threads relay, one per
//! direction; each direction is closed on its own (a half-close), so a peer that stops sending
//! can still receive, and the relay ends when both directions have ended.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use knocker_wire::Service;

use crate::knock::{self, Family, KnockError};
use crate::profile::{Kind, Profile, ProfileError, Store};
use crate::saved::{knock_saved, open_note, Knocking, SavedError, Say};

/// Attempts within one wait: the first waits this long for an answer, each next one twice as
/// long, at most [`MAX_ATTEMPT`]. Short first, because a SYN that raced the door's opening is
/// dropped and only a new attempt gets through; growing, so that a slow path gets its chance.
const FIRST_ATTEMPT: Duration = Duration::from_millis(250);
const MAX_ATTEMPT: Duration = Duration::from_secs(2);
/// After an attempt that failed at once (refused, unreachable), before the next.
const PAUSE: Duration = Duration::from_millis(200);

/// What `knocker connect` is asked to do (the command line's options).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Say on standard error what is knocked and where knocker connects.
    pub verbose: bool,
    /// Knock at most this many times before giving up.
    pub tries: u32,
    /// After each knock, try to connect for this long.
    pub wait: Duration,
    /// The address family to use (None: the profile's, or the first address).
    pub family: Option<Family>,
    /// Seconds added to the time put in knocks.
    pub time_offset: i64,
    /// A saved profile's name (or its host), or a host to connect to without knocking.
    pub host: String,
    /// The TCP port to connect to.
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Knock(#[from] KnockError),
    #[error(transparent)]
    Saved(#[from] SavedError),
    #[error("tcp/{port} on {host} did not open after {knocks} knock{} (last attempt: {last})", if *.knocks == 1 { "" } else { "s" })]
    NotOpened {
        port: u16,
        host: String,
        knocks: u32,
        last: io::Error,
    },
    #[error("cannot connect to tcp/{port} on {host} (no profile for it, so no knock): {last}")]
    NoAnswer {
        port: u16,
        host: String,
        last: io::Error,
    },
    #[error("several profiles knock on {host} ({}): name one, e.g. `knocker connect {} {port}`", .names.join(", "), .names[0])]
    Ambiguous {
        host: String,
        port: u16,
        names: Vec<String>,
    },
    #[error("connection to {addr}: {what}: {source}")]
    Relay {
        addr: SocketAddr,
        what: &'static str,
        source: io::Error,
    },
}

impl ConnectError {
    /// Whether the mistake is in what the user typed (exit status 2).
    pub fn is_usage(&self) -> bool {
        match self {
            ConnectError::Profile(e) => e.is_usage(),
            ConnectError::Saved(e) => e.is_usage(),
            ConnectError::Ambiguous { .. } => true,
            ConnectError::Knock(_)
            | ConnectError::NotOpened { .. }
            | ConnectError::NoAnswer { .. }
            | ConnectError::Relay { .. } => false,
        }
    }
}

/// `knocker connect ...`.
pub fn run(args: &ConnectOptions) -> Result<(), ConnectError> {
    let say = |text: &str| {
        if args.verbose {
            Say::Stderr.line(text);
        }
    };
    let (stream, addr) = match find_profile(&args.host, args.port)? {
        Some((name, store, saved)) => knock_and_connect(args, &name, &store, &saved, &say)?,
        None => {
            say(&format!(
                "no profile for {}: connecting without a knock",
                args.host
            ));
            connect_plain(args, &say)?
        }
    };
    say(&format!("connected to {addr}"));
    relay(stream, addr)?;
    say("both directions closed");
    Ok(())
}

/// The profile for HOST: the one of that name, else the one whose host is HOST (if several are,
/// the one that asks to open tcp/PORT). None if there is none, or no profiles file at all.
pub(crate) fn find_profile(
    host: &str,
    port: u16,
) -> Result<Option<(String, Store, Profile)>, ConnectError> {
    let store = match Store::from_env() {
        Ok(store) => store,
        // No config directory: no profiles, so just connect.
        Err(ProfileError::NoConfigDir) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // A mistake elsewhere in the file costs only its own profile (warned about), so that the
    // documented `Host *` ProxyCommand keeps working for every other host; a profile meant for
    // this host that cannot be used is an error, not a connection without its knock.
    let mut loaded = store.read();
    if let Some(saved) = loaded.profiles.remove(host) {
        loaded.warn();
        return Ok(Some((host.to_string(), store, saved)));
    }
    if let Some(bad) = loaded.take_skipped_for(host, same_host) {
        loaded.warn();
        return Err(bad.error.into());
    }
    loaded.warn();
    let mut same: Vec<(String, Profile)> = loaded
        .profiles
        .into_iter()
        .filter(|(_, p)| same_host(&p.host, host))
        .collect();
    if same.len() > 1 {
        let wanted = Service::tcp(port);
        let opening: Vec<usize> = (0..same.len())
            .filter(|&i| opens(&same[i].1, wanted))
            .collect();
        match opening[..] {
            [i] => same = vec![same.swap_remove(i)],
            _ => {
                return Err(ConnectError::Ambiguous {
                    host: host.to_string(),
                    port,
                    names: same.into_iter().map(|(name, _)| name).collect(),
                })
            }
        }
    }
    Ok(same.pop().map(|(name, saved)| (name, store, saved)))
}

fn same_host(a: &str, b: &str) -> bool {
    let bare = |h: &str| {
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    bare(a) == bare(b)
}

/// Whether a profile says it opens `service` (sequence and rotating profiles do not say what they
/// open).
fn opens(saved: &Profile, service: Service) -> bool {
    match &saved.kind {
        Kind::Encoded(e) => e.open.contains(&service),
        Kind::Fwknop(f) => f.open.as_ref().is_some_and(|o| o.contains(&service)),
        Kind::Spa(s) => s.open.contains(&service),
        Kind::Syn(s) => s.open.contains(&service),
        Kind::Sequence(_) | Kind::Rotating(_) => false,
    }
}

/// Knocks, then tries to connect for --wait; again, up to --tries knocks.
pub(crate) fn knock_and_connect(
    args: &ConnectOptions,
    name: &str,
    store: &Store,
    saved: &Profile,
    say: &dyn Fn(&str),
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let wanted = [Service::tcp(args.port)];
    let how = Knocking {
        family: args.family,
        time_offset: args.time_offset,
        // A syn profile sends one SYN per service: only the one for PORT, when it has it.
        open: match &saved.kind {
            Kind::Syn(syn) if syn.open.contains(&wanted[0]) => Some(&wanted[..]),
            _ => None,
        },
        say: args.verbose.then_some(Say::Stderr),
        ..Knocking::default()
    };
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "no answer");
    for n in 1..=args.tries {
        say(&format!(
            "knock {n} of {}: profile {name} ({}) on {}",
            args.tries,
            saved.kind.name(),
            saved.host
        ));
        let knocked = knock_saved(store, name, saved, &how)?;
        let ip = match knocked {
            Some(ip) => ip,
            // fwknop resolved the host itself; its packet opens for an IPv4 address (the
            // one towards the host), so connect over IPv4 unless told otherwise.
            None => knock::resolve(&saved.host, args.family.unwrap_or(Family::V4))?,
        };
        if n == 1 {
            say(&open_note(store, saved));
        }
        let addr = SocketAddr::new(ip, args.port);
        match attempt(addr, args.wait, say) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = e,
        }
    }
    Err(ConnectError::NotOpened {
        port: args.port,
        host: saved.host.clone(),
        knocks: args.tries,
        last,
    })
}

/// Connects to `addr` until it answers or `wait` has passed: attempts of growing length, each
/// a new connection (a new SYN), with a pause after one that failed at once. A refusal is tried
/// again too: a door may answer with a reset until it opens.
fn attempt(addr: SocketAddr, wait: Duration, say: &dyn Fn(&str)) -> io::Result<TcpStream> {
    let end = Instant::now() + wait;
    let mut length = FIRST_ATTEMPT;
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "no answer");
    say(&format!(
        "connecting to {addr}, for up to {}s",
        wait.as_secs_f64()
    ));
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        let started = Instant::now();
        match TcpStream::connect_timeout(&addr, length.min(left)) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                say(&format!("{addr}: {e}"));
                last = e;
            }
        }
        let spent = started.elapsed();
        if spent < PAUSE {
            thread::sleep((PAUSE - spent).min(end.saturating_duration_since(Instant::now())));
        }
        length = (length * 2).min(MAX_ATTEMPT);
    }
}

/// No profile: each address of the host in turn (as ssh does), each for --tries x --wait.
pub(crate) fn connect_plain(
    args: &ConnectOptions,
    say: &dyn Fn(&str),
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let family = args.family.unwrap_or_default();
    let addrs = addresses(&args.host, args.port, family)?;
    let limit = args.wait * args.tries;
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "no answer");
    for addr in addrs {
        say(&format!("connecting to {addr}"));
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => {
                say(&format!("{addr}: {e}"));
                last = e;
            }
        }
    }
    Err(ConnectError::NoAnswer {
        port: args.port,
        host: args.host.clone(),
        last,
    })
}

/// Every address of `host` in `family`, in the resolver's order, each once.
fn addresses(host: &str, port: u16, family: Family) -> Result<Vec<SocketAddr>, KnockError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<IpAddr>().is_ok() {
        // A literal: the family check and its message are knock's.
        return Ok(vec![SocketAddr::new(knock::resolve(bare, family)?, port)]);
    }
    let found = (bare, port)
        .to_socket_addrs()
        .map_err(|source| KnockError::UnknownHost {
            host: host.to_string(),
            source,
        })?;
    let mut unique: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !unique.contains(&addr) {
            unique.push(addr);
        }
    }
    let all: Vec<IpAddr> = unique.iter().map(SocketAddr::ip).collect();
    unique.retain(|a| match family {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    });
    if unique.is_empty() {
        return Err(KnockError::NoAddress {
            host: host.to_string(),
            family,
            found: all,
        });
    }
    Ok(unique)
}

/// Relays until both directions have ended: standard input to the connection (on a thread of
/// its own; at its end, the connection's sending side is shut down), the connection to
/// standard output (here). Standard output going away ends the relay quietly.
fn relay(stream: TcpStream, addr: SocketAddr) -> Result<(), ConnectError> {
    let relay_err =
        move |what: &'static str| move |source| ConnectError::Relay { addr, what, source };
    // Interactive sessions: send what arrives as it arrives.
    let _ = stream.set_nodelay(true);
    let upstream = stream
        .try_clone()
        .map_err(relay_err("cannot share the socket"))?;
    let up = thread::spawn(move || -> Result<(), ConnectError> {
        let result = pump(&mut io::stdin().lock(), &mut &upstream);
        // The end of standard input (or a failure to read it) is the end of what we send: say
        // so to the server, which may still be sending.
        let _ = upstream.shutdown(Shutdown::Write);
        match result {
            Ok(()) => Ok(()),
            Err(Failed::Read(e)) => Err(relay_err("reading standard input")(e)),
            Err(Failed::Write(e)) => Err(relay_err("sending")(e)),
        }
    });
    match pump(&mut &stream, &mut io::stdout().lock()) {
        // The server has closed its side: wait for ours to end.
        Ok(()) => {}
        Err(Failed::Read(e)) => return Err(relay_err("receiving")(e)),
        // Whoever read our output has gone (ssh has exited): nobody is left to relay for.
        Err(Failed::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(Failed::Write(e)) => return Err(relay_err("writing standard output")(e)),
    }
    match up.join() {
        Ok(result) => result,
        Err(_) => Err(relay_err("relaying standard input")(io::Error::other(
            "the relay thread panicked",
        ))),
    }
}

/// Which side of a copy failed.
pub(crate) enum Failed {
    Read(io::Error),
    Write(io::Error),
}

/// Copies until `from` ends, flushing each piece at once (the other end is interactive).
pub(crate) fn pump(from: &mut impl Read, to: &mut impl Write) -> Result<(), Failed> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failed::Read(e)),
        };
        to.write_all(&buf[..n])
            .and_then(|()| to.flush())
            .map_err(Failed::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_case_brackets_or_the_root_dot() {
        assert!(same_host("Server.Example.org.", "server.example.org"));
        assert!(same_host("[fd00::1]", "fd00::1"));
        assert!(!same_host("a.example", "b.example"));
    }

    #[test]
    fn plain_hosts_resolve_to_every_address_of_the_family() {
        let v4 = addresses("127.0.0.1", 22, Family::Any).expect("literal");
        assert_eq!(v4, ["127.0.0.1:22".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(
            addresses("[::1]", 22, Family::V6).expect("literal"),
            ["[::1]:22".parse::<SocketAddr>().expect("addr")]
        );
        let e = addresses("127.0.0.1", 22, Family::V6).expect_err("family");
        assert!(e.to_string().starts_with("no IPv6 address"), "{e}");
        let local = addresses("localhost", 22, Family::V4).expect("localhost");
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()));
    }

    #[test]
    fn a_pump_copies_everything_and_reports_which_side_failed() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        assert!(pump(&mut &data[..], &mut out).is_ok());
        assert_eq!(out, data);

        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(matches!(
            pump(&mut &b"x"[..], &mut Broken),
            Err(Failed::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe
        ));
    }
}
