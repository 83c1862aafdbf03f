//! `knocker proxy --listen 127.0.0.1:1080`: a local SOCKS5 server (RFC 1928) for programs that
//! have no ProxyCommand (browsers, curl, most GUI clients). For each CONNECT it does what
//! `knocker connect` does ([`crate::connect`]): finds the profile for the destination host,
//! knocks it (whatever its kind), waits for the port with bounded retries, then relays the
//! connection both ways. A host without a profile is refused (reply 2, "not allowed by
//! ruleset") unless `--pass-through`, which connects to it without a knock.
//!
//! It listens on loopback only, with no authentication (method 0): RFC 1928's username and
//! password travel in clear and would add nothing against other local users, who could read the
//! profiles' knocks no less than they could use this proxy; a non-loopback address is refused.
//! One thread per connection (and one more while relaying), at most `max_connections` at a time:
//! the listener accepts no more until one ends. A client that does not finish its greeting and
//! request within [`HANDSHAKE`] is dropped; a request is at most [`socks::MAX_REQUEST`] bytes,
//! and no byte past it is read before the reply.
//!
//! Browsers open several connections to one host at once: knocks of one profile are taken one
//! at a time, and a port this proxy saw open moments ago ([`REUSE`]) is tried once, briefly,
//! before knocking again, so a page's parallel connections cost one knock (and one hotp
//! counter), not one each.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use knocker_wire::socks::{self, Parsed, Reply, RequestError, Target};

use crate::connect::{self, ConnectError, ConnectOptions};
use crate::knock::{Family, KnockError};
use crate::saved::{SavedError, Say};

/// How long a client has for its greeting and request (and to take each reply), by default.
pub const HANDSHAKE: Duration = Duration::from_secs(10);
/// A door this proxy opened for a profile and port in the last REUSE is tried before knocking.
pub const REUSE: Duration = Duration::from_secs(10);
/// How long that try waits for an answer.
const REUSE_ATTEMPT: Duration = Duration::from_millis(300);

/// What `knocker proxy` is asked to do (the command line's options).
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Where to listen: a loopback address and port (port 0: any free port, printed at start).
    pub listen: SocketAddr,
    /// Connect to hosts without a profile, without a knock (otherwise they are refused).
    pub pass_through: bool,
    /// Knock at most this many times per request before giving up.
    pub tries: u32,
    /// After each knock, try to connect for this long.
    pub wait: Duration,
    /// The address family to use (None: the profile's, or the first address).
    pub family: Option<Family>,
    /// Seconds added to the time put in knocks.
    pub time_offset: i64,
    /// Connections served at once, at most.
    pub max_connections: usize,
    /// Say on standard error what each request knocked and where it connected.
    pub verbose: bool,
    /// How long a client has for its greeting and request ([`HANDSHAKE`] from the command line).
    pub handshake: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("--listen {0}: not a loopback address; knocker proxy listens on loopback only (it asks for no password, so anyone who could reach it could knock with your profiles): use 127.0.0.1:PORT or [::1]:PORT")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
}

impl ProxyError {
    /// Whether the mistake is in what the user typed (exit status 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ProxyError::NotLoopback(_))
    }
}

/// `knocker proxy ...`: listens, says where on standard error, and serves until killed.
pub fn run(opts: &ProxyOptions) -> Result<(), ProxyError> {
    let listener = listen(opts.listen)?;
    let local = listener.local_addr().map_err(|source| ProxyError::Listen {
        addr: opts.listen,
        source,
    })?;
    Say::Stderr.line(&format!(
        "proxy listening on {local} (SOCKS5, CONNECT, no authentication){}",
        if opts.pass_through {
            "; hosts without a profile are connected to without a knock"
        } else {
            "; hosts without a profile are refused"
        }
    ));
    serve(listener, opts.clone());
}

/// Binds `addr`, which must be a loopback address.
pub fn listen(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    if !addr.ip().is_loopback() {
        return Err(ProxyError::NotLoopback(addr));
    }
    TcpListener::bind(addr).map_err(|source| ProxyError::Listen { addr, source })
}

/// What the connections share.
struct Shared {
    opts: ProxyOptions,
    /// Connections being served.
    busy: Mutex<usize>,
    freed: Condvar,
    /// One lock per profile: its knocks are taken one at a time.
    knocking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Where and when a profile's port last answered after a knock.
    opened: Mutex<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

/// A slot of `max_connections`, given back when the connection ends (also by a panic).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// Accepts connections for ever, each on a thread of its own, at most `max_connections` at once.
pub fn serve(listener: TcpListener, opts: ProxyOptions) -> ! {
    let shared = Arc::new(Shared {
        opts,
        busy: Mutex::new(0),
        freed: Condvar::new(),
        knocking: Mutex::new(HashMap::new()),
        opened: Mutex::new(HashMap::new()),
    });
    loop {
        {
            let limit = shared.opts.max_connections.max(1);
            let mut busy = shared.busy.lock().unwrap_or_else(PoisonError::into_inner);
            while *busy >= limit {
                busy = shared
                    .freed
                    .wait(busy)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            *busy += 1;
        }
        let slot = Slot(shared.clone());
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted: not
                // the end of the proxy. A pause, so that a lasting error does not spin.
                Say::Stderr.line(&format!("proxy: accept: {e}"));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let spawned = thread::Builder::new()
            .name(format!("proxy {peer}"))
            .spawn(move || {
                let shared = slot.0.clone();
                handle(&shared, client, peer);
                drop(slot);
            });
        if let Err(e) = spawned {
            Say::Stderr.line(&format!("proxy: {peer}: no thread for it: {e}"));
        }
    }
}

/// Why a handshake ended before a request was taken.
#[derive(Debug)]
enum Handshake {
    Io(io::Error),
    Refused(RequestError),
    /// The message says it is longer than the bound (cannot happen with the parsers' bounds).
    TooLong(usize),
}

impl From<io::Error> for Handshake {
    fn from(e: io::Error) -> Self {
        Handshake::Io(e)
    }
}

impl From<RequestError> for Handshake {
    fn from(e: RequestError) -> Self {
        Handshake::Refused(e)
    }
}

/// Reads one message into `buf` (its bound), exactly as many bytes as `parse` asks for.
fn read_message<T>(
    stream: &mut impl Read,
    buf: &mut [u8],
    parse: fn(&[u8]) -> Result<Parsed<T>, RequestError>,
) -> Result<T, Handshake> {
    let mut have = 0;
    loop {
        match parse(&buf[..have])? {
            Parsed::Done(message, _) => return Ok(message),
            Parsed::Need(n) if n > buf.len() || n <= have => return Err(Handshake::TooLong(n)),
            Parsed::Need(n) => {
                stream.read_exact(&mut buf[have..n])?;
                have = n;
            }
        }
    }
}

/// The greeting and the request; what could be answered is answered (no acceptable method,
/// a refused request's reply code).
fn negotiate(client: &mut TcpStream) -> Result<Target, Handshake> {
    let mut greeting = [0u8; socks::MAX_GREETING];
    let hello = read_message(client, &mut greeting, socks::parse_greeting)?;
    client.write_all(&socks::method_reply(&hello))?;
    if !hello.no_auth {
        return Err(Handshake::Io(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the client offers no method but \"no authentication\", the only one served",
        )));
    }
    let mut request = [0u8; socks::MAX_REQUEST];
    match read_message(client, &mut request, socks::parse_request) {
        Ok(target) => Ok(target),
        Err(Handshake::Refused(e)) => {
            let _ = client.write_all(&socks::reply(e.reply(), None));
            Err(Handshake::Refused(e))
        }
        Err(e) => Err(e),
    }
}

/// One client connection: negotiation, the knock and connection, the reply, the relay.
fn handle(shared: &Shared, mut client: TcpStream, peer: SocketAddr) {
    let limit = shared.opts.handshake.max(Duration::from_millis(1));
    let _ = client.set_read_timeout(Some(limit));
    let _ = client.set_write_timeout(Some(limit));
    let target = match negotiate(&mut client) {
        Ok(target) => target,
        Err(e) => {
            let why = match e {
                Handshake::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    "closed before its request".to_string()
                }
                Handshake::Io(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    format!("no request within {}s", limit.as_secs_f64())
                }
                Handshake::Io(e) => e.to_string(),
                Handshake::Refused(e) => format!("refused (reply {}): {e}", e.reply() as u8),
                Handshake::TooLong(n) => format!("a message of {n} bytes"),
            };
            Say::Stderr.line(&format!("proxy: {peer}: {why}"));
            return;
        }
    };
    let say = |text: &str| {
        if shared.opts.verbose {
            Say::Stderr.line(&format!("proxy: {peer} -> {target}: {text}"));
        }
    };
    match open(shared, &target, &say) {
        Ok((server, addr)) => {
            let bound = server.local_addr().ok();
            if client
                .write_all(&socks::reply(Reply::Succeeded, bound))
                .is_err()
            {
                return;
            }
            say(&format!("connected to {addr}"));
            let _ = client.set_read_timeout(None);
            let _ = client.set_write_timeout(None);
            relay(client, server);
            say("closed");
        }
        Err((code, why)) => {
            let _ = client.write_all(&socks::reply(code, None));
            Say::Stderr.line(&format!(
                "proxy: {peer} -> {target}: refused (reply {}): {why}",
                code as u8
            ));
        }
    }
}

/// Knocks with the target's profile and connects; or connects without a knock
/// (`--pass-through`); or says which reply refuses the request, and why.
fn open(
    shared: &Shared,
    target: &Target,
    say: &dyn Fn(&str),
) -> Result<(TcpStream, SocketAddr), (Reply, String)> {
    let opts = &shared.opts;
    let args = ConnectOptions {
        verbose: opts.verbose,
        tries: opts.tries,
        wait: opts.wait,
        family: opts.family,
        time_offset: opts.time_offset,
        host: target.host(),
        port: target.port(),
    };
    let refused = |e: ConnectError| (reply_for(&e), e.to_string());
    let Some((name, store, saved)) =
        connect::find_profile(&args.host, args.port).map_err(refused)?
    else {
        if !opts.pass_through {
            return Err((
                Reply::NotAllowed,
                format!(
                    "no profile for {} (--pass-through connects to such hosts without a knock)",
                    args.host
                ),
            ));
        }
        say("no profile: connecting without a knock");
        return connect::connect_plain(&args, say).map_err(refused);
    };
    let lock = {
        let mut locks = shared
            .knocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(name.clone()).or_default().clone()
    };
    let _one_at_a_time = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (name, args.port);
    let recent = shared
        .opened
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .copied();
    if let Some((addr, when)) = recent {
        if when.elapsed() < REUSE {
            if let Ok(stream) = TcpStream::connect_timeout(&addr, REUSE_ATTEMPT) {
                say(&format!("profile {}: still open, no knock", key.0));
                return Ok((stream, addr));
            }
        }
    }
    let (stream, addr) =
        connect::knock_and_connect(&args, &key.0, &store, &saved, say).map_err(refused)?;
    shared
        .opened
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, (addr, Instant::now()));
    Ok((stream, addr))
}

/// The reply for a request that `connect` could not serve.
fn reply_for(e: &ConnectError) -> Reply {
    match e {
        ConnectError::NotOpened { last, .. } | ConnectError::NoAnswer { last, .. } => {
            match last.kind() {
                io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
                io::ErrorKind::NetworkUnreachable => Reply::NetworkUnreachable,
                _ => Reply::HostUnreachable,
            }
        }
        ConnectError::Knock(KnockError::UnknownHost { .. } | KnockError::NoAddress { .. })
        | ConnectError::Saved(SavedError::Knock(
            KnockError::UnknownHost { .. } | KnockError::NoAddress { .. },
        )) => Reply::HostUnreachable,
        _ => Reply::GeneralFailure,
    }
}

/// Relays both ways until both directions have ended: each end of input is passed on as a
/// half-close; a failure in either direction ends both.
fn relay(client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = thread::Builder::new().spawn(move || {
        let result = connect::pump(&mut &client2, &mut &server2);
        passed_on(result, &server2, &client2);
    });
    let result = connect::pump(&mut &server, &mut &client);
    passed_on(result, &client, &server);
    match up {
        Ok(up) => {
            let _ = up.join();
        }
        // No second thread: nothing reads the client, so end both.
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

/// After one direction of the relay, from `from` to `to`: its end is a half-close of `to`; a
/// failure closes both.
fn passed_on(result: Result<(), connect::Failed>, to: &TcpStream, from: &TcpStream) {
    match result {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read`, again after an interruption: a signal to the test process (once seen in a full
    /// run) ends a blocked read with EINTR, which says nothing about the proxy.
    fn read_through_signals(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    #[test]
    fn only_loopback_is_listened_on() {
        for addr in ["0.0.0.0:0", "[::]:0", "10.200.1.2:1080"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let e = listen(addr).expect_err("not loopback");
            assert!(e.is_usage(), "{e}");
            assert!(e.to_string().contains("loopback only"), "{e}");
        }
        let l = listen("127.0.0.1:0".parse().expect("addr")).expect("loopback");
        assert!(l.local_addr().expect("addr").ip().is_loopback());
    }

    #[test]
    fn a_message_is_read_exactly_and_never_past_its_end() {
        let mut wire: &[u8] = &[5, 1, 0, 3, 3, b'a', b'.', b'b', 0, 80, b'G', b'E', b'T'];
        let mut buf = [0u8; socks::MAX_REQUEST];
        let target = read_message(&mut wire, &mut buf, socks::parse_request).expect("request");
        assert_eq!(target, Target::Name("a.b".into(), 80));
        assert_eq!(
            wire, b"GET",
            "the bytes behind the request are left for the relay"
        );

        let mut short: &[u8] = &[5, 1, 0, 1, 10];
        let e = read_message(&mut short, &mut buf, socks::parse_request).expect_err("short");
        assert!(
            matches!(e, Handshake::Io(ref e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{e:?}"
        );
        let mut bind: &[u8] = &[5, 2, 0, 1, 10, 0, 0, 1, 0, 80];
        let e = read_message(&mut bind, &mut buf, socks::parse_request).expect_err("bind");
        assert!(
            matches!(e, Handshake::Refused(RequestError::Command(2))),
            "{e:?}"
        );
        assert_eq!(
            bind.len(),
            6,
            "refused at its first four bytes, without waiting for more"
        );
    }

    #[test]
    fn a_silent_client_is_dropped_after_the_handshake_time() {
        let listener = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let opts = ProxyOptions {
            listen: addr,
            pass_through: false,
            tries: 1,
            wait: Duration::from_millis(100),
            family: None,
            time_offset: 0,
            max_connections: 1,
            verbose: false,
            handshake: Duration::from_millis(200),
        };
        // The proxy runs for the rest of the test process.
        thread::spawn(move || serve(listener, opts));
        for _ in 0..2 {
            // one connection at a time: the second is served only once the first is dropped
            let mut silent = TcpStream::connect(addr).expect("connect");
            silent
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buf = [0u8; 1];
            assert_eq!(
                read_through_signals(&mut silent, &mut buf).expect("closed, not timed out"),
                0
            );
        }
        // half a greeting is no better
        let mut slow = TcpStream::connect(addr).expect("connect");
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        slow.write_all(&[5]).expect("half a greeting");
        assert_eq!(
            read_through_signals(&mut slow, &mut [0u8; 1]).expect("closed"),
            0
        );
    }

    #[test]
    fn failures_map_to_their_reply_codes() {
        let failed = |kind: io::ErrorKind| ConnectError::NotOpened {
            port: 22,
            host: "h".into(),
            knocks: 1,
            last: kind.into(),
        };
        assert_eq!(
            reply_for(&failed(io::ErrorKind::ConnectionRefused)),
            Reply::ConnectionRefused
        );
        assert_eq!(
            reply_for(&failed(io::ErrorKind::TimedOut)),
            Reply::HostUnreachable
        );
        assert_eq!(
            reply_for(&failed(io::ErrorKind::NetworkUnreachable)),
            Reply::NetworkUnreachable
        );
        let unknown = ConnectError::Knock(KnockError::UnknownHost {
            host: "nowhere.invalid".into(),
            source: io::ErrorKind::NotFound.into(),
        });
        assert_eq!(reply_for(&unknown), Reply::HostUnreachable);
    }
}
