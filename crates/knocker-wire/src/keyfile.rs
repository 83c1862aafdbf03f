//! Key files, as client and daemon keep them: one line of base64 (32 bytes), the owner's alone
//! (mode 0600: anything for group or others is refused, as ssh refuses an exposed private key),
//! read into memory that is wiped afterwards.
//!
//! The one piece of file IO in this crate: the format of a key file includes who may read it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::KeyError;

/// A key file is one line; anything much longer is not one.
const MAX_KEY_FILE: u64 = 1024;

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("key file {} is accessible to other users (mode {mode:04o}): run `chmod 600 {}`", .path.display(), .path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("key file {}: {source}", .path.display())]
    BadKey { path: PathBuf, source: KeyError },
}

/// Reads the key in `path` with `parse` (e.g. `RotateKey::from_base64`), after checking that the
/// file is a regular file of its owner's alone. The checks are made on the opened file, so the
/// file checked is the file read.
pub fn load_key<K>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<K, KeyError>,
) -> Result<K, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::with_capacity(64));
    file.by_ref()
        .take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(|source| match source.kind() {
            io::ErrorKind::InvalidData => KeyFileError::BadKey {
                path: path.to_path_buf(),
                source: KeyError::NotBase64,
            },
            _ => io(source),
        })?;
    parse(&text).map_err(|source| KeyFileError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}
