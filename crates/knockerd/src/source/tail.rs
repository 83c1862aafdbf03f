//! Lines appended to a log file, read from the file's end, the way `tail -F` follows it: a
//! rotated file (renamed, a new one created at the path) is read to its end and the new one from
//! its start; a truncated one from its start again.
//!
//! The file is opened while the packet worker is still root; the worker then reads it with no
//! privilege. After a rotation the *new* file is opened by the worker, so it must be readable by
//! the worker's user (`[daemon] worker_user`): until it is, the old file is kept and the failure
//! is logged once. An inotify watch on the file's directory, also added while root, wakes the
//! worker when anything in it changes; a check every [`RECHECK`] catches a missed event.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::RecvStats;

/// How often the file is looked at even when no inotify event came.
pub const RECHECK: Duration = Duration::from_secs(1);
/// The most bytes read from a file per call, so that a flood of lines cannot keep the worker
/// from its timers; the rest waits for the next call.
const MAX_READ_BYTES: usize = 1 << 20;
const CHUNK_BYTES: usize = 64 << 10;

/// A log file followed from its end.
pub struct Tail {
    path: PathBuf,
    file: File,
    /// (device, inode) of the open file: a rotation changes them at the path.
    id: (u64, u64),
    pos: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// Inside a line longer than `max_line`: its bytes are dropped up to its newline.
    dropping: bool,
    max_line: usize,
    inotify: Inotify,
    reopen_failed: bool,
    chunk: Vec<u8>,
}

impl Tail {
    /// Opens `path` at its end and watches its directory.
    pub fn open(path: &Path, max_line: usize) -> io::Result<Tail> {
        let context = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
        };
        let mut file = File::open(path).map_err(|e| context(e, "open"))?;
        let meta = file.metadata().map_err(|e| context(e, "stat"))?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let pos = file
            .seek(SeekFrom::End(0))
            .map_err(|e| context(e, "seek"))?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| context(e.into(), "watch"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MOVED_FROM,
            )
            .map_err(|e| context(e.into(), "watch the directory of"))?;
        Ok(Tail {
            path: path.to_path_buf(),
            file,
            id: (meta.dev(), meta.ino()),
            pos,
            partial: Vec::new(),
            dropping: false,
            max_line,
            inotify,
            reopen_failed: false,
            chunk: vec![0; CHUNK_BYTES],
        })
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// The descriptor to poll: readable when the file's directory changed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Hands every complete new line (without its newline) to `on_line`; follows a rotation or
    /// a truncation. Lines longer than the limit are dropped and counted in `stats.too_long`.
    pub fn read_lines(
        &mut self,
        stats: &mut RecvStats,
        mut on_line: impl FnMut(&[u8], &mut RecvStats),
    ) -> io::Result<()> {
        // the events only say "look": what changed is found below
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
        }
        let mut budget = MAX_READ_BYTES;
        self.read_to_end(&mut budget, stats, &mut on_line)?;
        if budget == 0 {
            return Ok(());
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) != self.id => match File::open(&self.path) {
                // rotated: the old file was read to its end above; the new one from its start
                Ok(f) => {
                    self.file = f;
                    self.id = (m.dev(), m.ino());
                    self.restart();
                    self.reopen_failed = false;
                    self.read_to_end(&mut budget, stats, &mut on_line)?;
                }
                Err(e) => {
                    if !self.reopen_failed {
                        self.reopen_failed = true;
                        tracing::error!(
                            "{} was rotated, and the packet worker cannot open the new file ({e}): it must be readable by the worker's user ([daemon] worker_user); until then no new line is read",
                            self.path.display()
                        );
                    }
                }
            },
            Ok(m) if m.len() < self.pos => {
                // truncated in place (copytruncate): what is there now is new
                self.file.seek(SeekFrom::Start(0))?;
                self.restart();
                self.read_to_end(&mut budget, stats, &mut on_line)?;
            }
            // gone between a rename and the new file's creation, or the same file
            _ => {}
        }
        Ok(())
    }

    fn restart(&mut self) {
        self.pos = 0;
        self.partial.clear();
        self.dropping = false;
    }

    fn read_to_end(
        &mut self,
        budget: &mut usize,
        stats: &mut RecvStats,
        on_line: &mut impl FnMut(&[u8], &mut RecvStats),
    ) -> io::Result<()> {
        while *budget > 0 {
            let want = self.chunk.len().min(*budget);
            let n = match self.file.read(&mut self.chunk[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *budget -= n;
            self.pos += n as u64;
            let mut rest = &self.chunk[..n];
            while !rest.is_empty() {
                let (piece, ended) = match rest.iter().position(|b| *b == b'\n') {
                    Some(i) => (&rest[..i], Some(i + 1)),
                    None => (rest, None),
                };
                if !self.dropping {
                    if self.partial.len() + piece.len() > self.max_line {
                        stats.too_long += 1;
                        self.partial.clear();
                        self.dropping = true;
                    } else {
                        self.partial.extend_from_slice(piece);
                    }
                }
                match ended {
                    Some(i) => {
                        if !self.dropping {
                            on_line(&self.partial, stats);
                        }
                        self.partial.clear();
                        self.dropping = false;
                        rest = &rest[i..];
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(t: &mut Tail, stats: &mut RecvStats) -> Vec<String> {
        let mut v = Vec::new();
        t.read_lines(stats, |l, _| {
            v.push(String::from_utf8_lossy(l).into_owned())
        })
        .expect("read");
        v
    }

    #[test]
    fn follows_appends_rotation_and_truncation_and_bounds_lines() {
        let dir = std::env::temp_dir().join(format!("knocker-tail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("kern.log");
        std::fs::write(&path, "old line, before the start\n").expect("write");
        let mut t = Tail::open(&path, 16).expect("open");
        let mut stats = RecvStats::default();
        assert!(lines(&mut t, &mut stats).is_empty(), "read from the end");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("append");
        f.write_all(b"one\ntw").expect("write");
        assert_eq!(lines(&mut t, &mut stats), ["one"]);
        f.write_all(b"o\nthis line is far too long\nthree\n")
            .expect("write");
        assert_eq!(lines(&mut t, &mut stats), ["two", "three"]);
        assert_eq!(stats.too_long, 1);
        // rotation: the old file gets a last line, then a new file appears at the path
        f.write_all(b"last old\n").expect("write");
        std::fs::rename(&path, dir.join("kern.log.1")).expect("rename");
        std::fs::write(&path, "first new\n").expect("new file");
        assert_eq!(lines(&mut t, &mut stats), ["last old", "first new"]);
        // truncation in place
        std::fs::write(&path, "cut\n").expect("truncate");
        assert_eq!(lines(&mut t, &mut stats), ["cut"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
