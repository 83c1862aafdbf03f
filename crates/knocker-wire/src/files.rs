//! Small files written safely, by the client (profiles, keys, counters) and the daemon (its key,
//! the clients file, enrolled profiles): replaced in one step, private to their owner unless
//! said otherwise, durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process;

/// Replaces `path` with `bytes` in one step (write a temporary file beside it, then rename), mode
/// 0600, so a reader never sees half a file and a crash never loses the old one. The directory
/// must exist.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_with(path, bytes, 0o600, None)
}

/// Like [`replace_atomically`], keeping the mode and owner of the file it replaces (an
/// admin's choice), or `mode` for a new file: for files others may read, such as knockerd's
/// clients file.
pub fn replace_keeping(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let old = fs::metadata(path).ok();
    let mode = old
        .as_ref()
        .map_or(mode, |m| m.permissions().mode() & 0o7777);
    replace_with(path, bytes, mode, old.map(|m| (m.uid(), m.gid())))
}

fn replace_with(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", process::id()));
    // A leftover from a crashed run of this pid would make create_new fail; removing a symlink
    // removes the link, never its target.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some((uid, gid)) = owner {
            // Best effort: keep the owner an admin gave the file (root may; others cannot).
            let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable.
    File::open(dir).and_then(|d| d.sync_all())
}

/// Creates `path` with `bytes`, mode 0600; fails with `AlreadyExists` rather than replace
/// anything (a symlink there counts as existing).
pub fn create_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let result = (|| {
        // The umask can only take bits away from 0600, but make it exact anyway.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}
