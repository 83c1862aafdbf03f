//! systemd's readiness protocol (sd_notify): a datagram of `KEY=value` lines to the unix socket
//! that `$NOTIFY_SOCKET` names, a path or, with a leading `@`, a name in the abstract namespace.
//!
//! knockerd sends `READY=1` once its table is loaded and its packet worker runs,
//! `RELOADING=1` (with `MONOTONIC_USEC=`, which systemd 253 and later want) then `READY=1`
//! around a reload, `STOPPING=1` when it stops, and `STATUS=` lines for `systemctl status`.
//! Without `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call does nothing.
//!
//! A message that cannot be sent is logged, once, and otherwise ignored: readiness reporting
//! never stops the daemon.

use std::ffi::OsString;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where readiness messages go, read once from the environment.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    warned: std::cell::Cell<bool>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and removes it from the environment, so that the packet worker and
    /// door commands do not inherit it (systemd would ignore them anyway: NotifyAccess=main).
    pub fn from_env() -> Notifier {
        let value = std::env::var_os("NOTIFY_SOCKET");
        if value.is_some() {
            // single-threaded here: run() calls this before it starts any thread or child
            std::env::remove_var("NOTIFY_SOCKET");
        }
        Notifier::to(value)
    }

    /// A notifier for the socket `value` names (as `$NOTIFY_SOCKET` would), or one that does
    /// nothing.
    pub fn to(value: Option<OsString>) -> Notifier {
        let target = value.and_then(|v| match open(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET={v:?}: {e}; systemd will not hear that knockerd is ready"
                );
                None
            }
        });
        Notifier {
            target,
            warned: std::cell::Cell::new(false),
        }
    }

    /// Whether messages go anywhere.
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// Ready to serve (after start or a reload), with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload begins: systemd then waits for the next `READY=1`.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"
        ));
    }

    /// The daemon is stopping.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// A status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            if !self.warned.replace(true) {
                tracing::warn!(
                    "cannot tell systemd {:?}: {e} (reported once)",
                    message.lines().next().unwrap_or_default()
                );
            }
        }
    }
}

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
enum SocketError {
    #[error("not a socket path or an abstract name ('@...'); vsock is not supported")]
    NotASocket,
    #[error("not a usable socket address: {0}")]
    Address(#[source] std::io::Error),
    #[error("cannot create a socket: {0}")]
    Socket(#[source] std::io::Error),
}

/// The address `$NOTIFY_SOCKET` names, and an unbound socket to send from.
fn open(value: &std::ffi::OsStr) -> Result<(UnixDatagram, SocketAddr), SocketError> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = value.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(&bytes[1..])
        }
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(value)),
        _ => return Err(SocketError::NotASocket),
    }
    .map_err(SocketError::Address)?;
    let socket = UnixDatagram::unbound().map_err(SocketError::Socket)?;
    Ok((socket, addr))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000)
            .saturating_add(t.tv_nsec() as u64 / 1_000),
        Err(_) => 0,
    }
}

/// A status for one `STATUS=` line: a newline would start another assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("knockerd-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::to(Some(format!("@{name}").into()));
        assert!(n.active());
        n.ready("two doors\nand a newline");
        assert_eq!(
            receive(&listener),
            "READY=1\nSTATUS=two doors and a newline"
        );
        n.reloading();
        let m = receive(&listener);
        let usec: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC")
            .parse()
            .unwrap();
        assert!(m.starts_with("RELOADING=1\n"), "{m}");
        assert!(usec > 0 && usec <= monotonic_usec(), "{m}");
        n.stopping("bye");
        assert_eq!(receive(&listener), "STOPPING=1\nSTATUS=bye");
    }

    #[test]
    fn messages_reach_a_socket_path() {
        let dir = crate::TestDir::new("notify");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(Some(path.clone().into()));
        n.status("hello");
        assert_eq!(receive(&listener), "STATUS=hello");
    }

    #[test]
    fn a_bad_or_missing_socket_is_no_error() {
        let n = Notifier::to(None);
        assert!(!n.active());
        n.ready("nothing happens");
        let n = Notifier::to(Some("vsock:2:1234".into()));
        assert!(!n.active());
        // a path nobody listens on: the send fails, is reported once, and nothing panics
        let n = Notifier::to(Some("/nonexistent/knockerd-notify.sock".into()));
        assert!(n.active());
        n.ready("a");
        n.ready("b");
    }
}
