//! knockknock's client side: a profile directory as knockknock's own client reads it
//! (`~/.knockknock/HOST/`, HOST as typed: `cipher.key`, `mac.key`, `counter`, `config` with
//! `[main] knock_port`), and its knock: one SYN to the knock port whose IP ID, sequence,
//! acknowledgement number and window carry the encrypted request (see
//! [`knocker_wire::knockknock`]), sent through a raw socket as knockknock has hping3 send it.
//!
//! As knockknock does, the counter file is moved on (in place, synced) *before* the SYN is sent,
//! so a counter is never sent twice. One difference: a counter whose knock would have IP ID 0
//! is skipped (the kernel replaces a zero ID in a raw packet with one of its own, which would
//! spoil the knock); the server's window (20 by default) covers the skip.

use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use knocker_wire::knockknock::{self as wire, Key, Keys};
use socket2::SockAddr;

/// What went wrong with a knockknock profile or its knock.
#[derive(Debug, thiserror::Error)]
pub enum KnockknockError {
    #[error("{}: {source}", .path.display())]
    Key {
        path: PathBuf,
        source: knocker_wire::keyfile::KeyFileError,
    },
    #[error("{}: {why}", .path.display())]
    Bad { path: PathBuf, why: String },
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot store the counter in {}: {source}", .path.display())]
    Store { path: PathBuf, source: io::Error },
    #[error("the counter in {} is used up (4294967295)", .0.display())]
    Exhausted(PathBuf),
    #[error("a knockknock knock goes to an IPv4 address; {0} is not one")]
    NotIpv4(IpAddr),
    #[error("cannot send the knock: {0}")]
    Send(#[source] io::Error),
}

/// A client profile directory.
#[derive(Debug)]
pub struct Profile {
    pub dir: PathBuf,
    pub keys: Keys,
    pub knock_port: u16,
}

/// `~/.knockknock/HOST/` if it is a directory (knockknock.py's `getProfile`); `None` for a host
/// that could not be a directory name.
pub fn find(home: &Path, host: &str) -> Option<PathBuf> {
    if host.is_empty() || host.contains('/') || host == "." || host == ".." {
        return None;
    }
    let dir = home.join(".knockknock").join(host);
    dir.is_dir().then_some(dir)
}

fn key(path: PathBuf) -> Result<Key, KnockknockError> {
    let text =
        knocker_wire::keyfile::load_key(&path, |t| Ok(zeroize::Zeroizing::new(t.to_string())))
            .map_err(|source| KnockknockError::Key {
                path: path.clone(),
                source,
            })?;
    Key::from_base64(&text).map_err(|e| KnockknockError::Bad {
        path,
        why: e.to_string(),
    })
}

fn read(path: &Path) -> Result<String, KnockknockError> {
    let bytes = std::fs::read(path).map_err(|source| KnockknockError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| KnockknockError::Bad {
        path: path.to_path_buf(),
        why: "not text".into(),
    })
}

/// The knock port in a profile's `config`: `knock_port` (`=` or `:`) under `[main]`.
fn knock_port(path: &Path) -> Result<u16, KnockknockError> {
    let text = read(path)?;
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = name;
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        if section == "main" && k.trim().eq_ignore_ascii_case("knock_port") {
            return v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| KnockknockError::Bad {
                    path: path.to_path_buf(),
                    why: format!("knock_port = {:?} is not a port (1 to 65535)", v.trim()),
                });
        }
    }
    Err(KnockknockError::Bad {
        path: path.to_path_buf(),
        why: "no knock_port under [main]".into(),
    })
}

/// Reads a client profile directory.
pub fn load(dir: &Path) -> Result<Profile, KnockknockError> {
    Ok(Profile {
        dir: dir.to_path_buf(),
        keys: Keys {
            cipher: key(dir.join("cipher.key"))?,
            mac: key(dir.join("mac.key"))?,
        },
        knock_port: knock_port(&dir.join("config"))?,
    })
}

/// Takes the next counter: reads it, skips any whose knock would carry IP ID 0, and stores the
/// one after it in place (synced) before returning it and its knock.
pub fn take_counter(profile: &Profile, port: u16) -> Result<(u32, wire::Knock), KnockknockError> {
    let path = profile.dir.join("counter");
    let text = read(&path)?;
    let first = text.lines().next().unwrap_or("").trim();
    let mut counter: u32 = first.parse().map_err(|_| KnockknockError::Bad {
        path: path.clone(),
        why: format!("{first:?} is not a counter (a decimal number on the first line)"),
    })?;
    let mut knock = profile.keys.encrypt(port, counter);
    while knock.id() == 0 {
        counter = counter
            .checked_add(1)
            .ok_or_else(|| KnockknockError::Exhausted(path.clone()))?;
        knock = profile.keys.encrypt(port, counter);
    }
    let next = counter
        .checked_add(1)
        .ok_or_else(|| KnockknockError::Exhausted(path.clone()))?;
    let store = |source| KnockknockError::Store {
        path: path.clone(),
        source,
    };
    let mut f = OpenOptions::new().write(true).open(&path).map_err(store)?;
    let line = format!("{next}\n");
    f.seek(SeekFrom::Start(0)).map_err(store)?;
    f.write_all(line.as_bytes()).map_err(store)?;
    f.set_len(line.len() as u64).map_err(store)?;
    f.sync_all().map_err(store)?;
    Ok((counter, knock))
}

/// What [`send`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub counter: u32,
}

/// Knocks `dst` for TCP `port` with the profile: uses up a counter, then sends the SYN (TTL 64,
/// a random source port from 1024 up, as hping3 picks them).
pub fn send(profile: &Profile, dst: IpAddr, port: u16) -> Result<Sent, KnockknockError> {
    let IpAddr::V4(dst4) = dst else {
        return Err(KnockknockError::NotIpv4(dst));
    };
    let to = SocketAddr::new(dst, profile.knock_port);
    // the socket first: without the privilege, no counter is spent
    let socket = crate::syn::raw_socket(dst).map_err(KnockknockError::Send)?;
    let IpAddr::V4(src) = crate::syn::source_address(to).map_err(KnockknockError::Send)? else {
        return Err(KnockknockError::NotIpv4(dst));
    };
    let mut r = [0u8; 2];
    getrandom::fill(&mut r).map_err(|e| KnockknockError::Send(io::Error::other(e.to_string())))?;
    let src_port = 1024 + u16::from_be_bytes(r) % (u16::MAX - 1024);
    let (counter, knock) = take_counter(profile, port)?;
    let packet = wire::build(src, dst4, src_port, profile.knock_port, &knock, 64);
    let n = socket
        .send_to(&packet, &SockAddr::from(SocketAddr::new(dst, 0)))
        .map_err(|e| KnockknockError::Send(crate::syn::permission_hint(e)))?;
    if n != packet.len() {
        return Err(KnockknockError::Send(io::Error::other(format!(
            "the kernel took {n} of the SYN's {} bytes",
            packet.len()
        ))));
    }
    Ok(Sent {
        src,
        src_port,
        counter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn profile(tag: &str, counter: &str) -> (PathBuf, Profile) {
        let home = std::env::temp_dir().join(format!("knocker-kk-{tag}-{}", std::process::id()));
        let dir = home.join(".knockknock").join("server.example");
        std::fs::create_dir_all(&dir).unwrap();
        for (f, text) in [
            ("cipher.key", "AQEBAQEBAQEBAQEBAQEBAQ==\n"),
            ("mac.key", "AgICAgICAgICAgICAgICAg==\n"),
            ("counter", counter),
            ("config", "[main]\nknock_port = 8888\n\n"),
        ] {
            std::fs::write(dir.join(f), text).unwrap();
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(find(&home, "server.example"), Some(dir.clone()));
        assert_eq!(find(&home, "../x"), None);
        let p = load(&dir).expect("loads");
        (home, p)
    }

    #[test]
    fn a_profile_loads_and_each_knock_spends_a_counter_first() {
        let (home, p) = profile("spend", "41\n");
        assert_eq!(p.knock_port, 8888);
        let (c, knock) = take_counter(&p, 22).expect("takes");
        assert_eq!(c, 41);
        assert_eq!(knock, p.keys.encrypt(22, 41));
        assert_eq!(
            std::fs::read_to_string(p.dir.join("counter")).unwrap(),
            "42\n"
        );
        assert_eq!(take_counter(&p, 22).expect("again").0, 42);
        std::fs::write(p.dir.join("counter"), "4294967295\n").unwrap();
        assert!(matches!(
            take_counter(&p, 22),
            Err(KnockknockError::Exhausted(_))
        ));
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn exposed_keys_are_refused() {
        let (home, p) = profile("exposed", "0\n");
        std::fs::set_permissions(
            p.dir.join("cipher.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = load(&p.dir).expect_err("exposed");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn a_counter_whose_knock_would_have_ip_id_0_is_skipped() {
        let (home, p) = profile("zero-id", "0\n");
        // a counter whose knock's ID is 0 (one in 65536): the kernel would replace that ID
        let zero = (0..u32::MAX)
            .find(|c| p.keys.encrypt(22, *c).id() == 0)
            .expect("some counter has ID 0");
        std::fs::write(p.dir.join("counter"), format!("{zero}\n")).unwrap();
        let (c, knock) = take_counter(&p, 22).expect("takes");
        assert_eq!(c, zero + 1);
        assert_ne!(knock.id(), 0);
        assert_eq!(
            std::fs::read_to_string(p.dir.join("counter")).unwrap(),
            format!("{}\n", zero + 2)
        );
        std::fs::remove_dir_all(home).unwrap();
    }
}
