//! Key files and HOTP counter files.
//!
//! A key file holds one line of base64 (32 bytes), is the owner's alone (mode 0600: anything for
//! group or others is refused, as ssh refuses an exposed private key), and is read into memory
//! that is wiped afterwards. A counter file holds the next unused HOTP counter as a decimal
//! number; it is replaced atomically, and moved on *before* the knock is sent, so a crash or a
//! lost knock never makes a counter value be sent twice.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use knocker_wire::keyfile::KeyFileError;
use knocker_wire::KeyError;
use zeroize::Zeroizing;

use knocker_wire::files;

/// A counter file is one number.
const MAX_COUNTER_FILE: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("{} already exists: knocker keygen never overwrites a key (remove the file first to replace it)", .0.display())]
    Exists(PathBuf),
    #[error("cannot make a key: {0}")]
    Rng(KeyError),
    #[error("counter file {}: {text:?} is not a counter (a whole number from 0)", .path.display())]
    BadCounter { path: PathBuf, text: String },
    #[error("counter file {} has reached the largest counter: make a new key and reset the counter on both sides", .0.display())]
    CounterExhausted(PathBuf),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SecretError {
    let path = path.to_path_buf();
    move |source| SecretError::Io {
        action,
        path,
        source,
    }
}

/// Reads the key in `path` with `parse`, after checking that the file is its owner's alone
/// (see `knocker_wire::keyfile`, shared with the daemon).
pub fn load_key<K>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<K, KeyError>,
) -> Result<K, SecretError> {
    Ok(knocker_wire::keyfile::load_key(path, parse)?)
}

/// Writes `key_text` (one line of base64) and a newline to a new file at `path`, mode 0600.
/// An existing file (or symlink) is never replaced.
pub fn write_new_key(path: &Path, key_text: &str) -> Result<(), SecretError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(key_text.len() + 1));
    bytes.extend_from_slice(key_text.as_bytes());
    bytes.push(b'\n');
    files::create_new_private(path, &bytes).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => SecretError::Exists(path.to_path_buf()),
        _ => io_error("write key file", path)(e),
    })
}

/// The next unused HOTP counter in `path`; 0 if the file does not exist yet.
pub fn read_counter(path: &Path) -> Result<u64, SecretError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error("read counter file", path)(e)),
    };
    let mut text = String::new();
    file.take(MAX_COUNTER_FILE)
        .read_to_string(&mut text)
        .map_err(io_error("read counter file", path))?;
    text.trim().parse().map_err(|_| SecretError::BadCounter {
        path: path.to_path_buf(),
        text: text.trim().chars().take(30).collect(),
    })
}

/// Uses up the next HOTP counter: saves the one after it (atomically, durably) and returns it.
/// Called before the knock goes out, so a value is never sent twice.
pub fn take_counter(path: &Path) -> Result<u64, SecretError> {
    let counter = read_counter(path)?;
    let next = counter
        .checked_add(1)
        .ok_or_else(|| SecretError::CounterExhausted(path.to_path_buf()))?;
    files::replace_atomically(path, format!("{next}\n").as_bytes())
        .map_err(io_error("write counter file", path))?;
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use knocker_wire::RotateKey;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::process;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "knocker-secrets-test-{}-{}",
                process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("mkdir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn keys_are_written_private_and_never_overwritten() {
        let tmp = TempDir::new();
        let path = tmp.0.join("k");
        write_new_key(&path, KEY).expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), format!("{KEY}\n"));
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        let key = load_key(&path, RotateKey::from_base64).expect("load");
        assert_eq!(key, RotateKey::from_base64(KEY).expect("key"));
        assert!(matches!(
            write_new_key(&path, "other"),
            Err(SecretError::Exists(_))
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), format!("{KEY}\n"));
    }

    #[test]
    fn exposed_key_files_are_refused_with_the_fix() {
        let tmp = TempDir::new();
        let path = tmp.0.join("k");
        write_new_key(&path, KEY).expect("write");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o1600 | 0o002] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let e = load_key(&path, RotateKey::from_base64).expect_err("exposed");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        load_key(&path, RotateKey::from_base64).expect("0400 is private");
    }

    #[test]
    fn bad_key_files_say_which_file() {
        let tmp = TempDir::new();
        let path = tmp.0.join("k");
        files::create_new_private(&path, b"hello\n").expect("write");
        let e = load_key(&path, RotateKey::from_base64).expect_err("bad");
        assert!(
            e.to_string()
                .starts_with(&format!("key file {}: ", path.display())),
            "{e}"
        );
        let e = load_key(&tmp.0.join("none"), RotateKey::from_base64).expect_err("missing");
        assert!(e.to_string().starts_with("cannot read key file"), "{e}");
        let e = load_key(&tmp.0, RotateKey::from_base64).expect_err("directory");
        assert!(
            matches!(
                e,
                SecretError::Key(KeyFileError::NotAFile(_) | KeyFileError::Exposed { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn counters_start_at_zero_and_move_on() {
        let tmp = TempDir::new();
        let path = tmp.0.join("c");
        assert_eq!(read_counter(&path).expect("none yet"), 0);
        assert_eq!(take_counter(&path).expect("take"), 0);
        assert_eq!(take_counter(&path).expect("take"), 1);
        assert_eq!(read_counter(&path).expect("read"), 2);
        assert_eq!(fs::read_to_string(&path).expect("read"), "2\n");
        fs::write(&path, "nonsense").expect("write");
        assert!(matches!(
            take_counter(&path),
            Err(SecretError::BadCounter { .. })
        ));
        fs::write(&path, format!("{}\n", u64::MAX)).expect("write");
        assert!(matches!(
            take_counter(&path),
            Err(SecretError::CounterExhausted(_))
        ));
        let names: Vec<_> = fs::read_dir(&tmp.0).expect("list").collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
