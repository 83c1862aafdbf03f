//! One-time sequences, kept exactly as knockd keeps them: a file with one sequence per line in
//! `Sequence` syntax; a used line gets `#` written over its first byte, in place; lines are used
//! in order; when none is left the door closes for good.
//!
//! knockerd marks the line and syncs the file to disk *before* it applies the grant, so a crash
//! can never reuse a line: at worst a line is used up by a grant that was not applied, and the
//! user knocks the next one.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use knocker_engine::Service;

/// The most bytes of a one-time sequences file that are read.
const MAX_BYTES: u64 = 4 << 20;

/// Parses knockd's `Sequence` syntax: `port[:tcp|udp],...`, TCP by default.
pub fn parse_sequence(text: &str) -> Result<Vec<Service>, String> {
    let seq: Vec<Service> = text
        .split(',')
        .map(|p| p.trim().parse::<Service>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if seq.is_empty() {
        return Err("empty sequence".into());
    }
    Ok(seq)
}

/// One unused line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number, for messages.
    pub line: usize,
    /// Byte offset of the line's first byte, where `#` is written when it is used.
    pub offset: u64,
    /// The line as read, to check that the file did not change before marking it.
    pub text: String,
    pub sequence: Vec<Service>,
}

/// Why a one-time line could not be marked used (and so its grant is refused).
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("no one-time line #{0}")]
    NoLine(usize),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("offset out of range")]
    Offset,
    #[error("{}:{line} changed since it was read; not using it (reload knockerd)", path.display())]
    Changed { path: PathBuf, line: usize },
    #[error("cannot write {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mark {}:{line} used: {source}", path.display())]
    Mark {
        path: PathBuf,
        line: usize,
        source: std::io::Error,
    },
}

/// The unused lines of a one-time sequences file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeFile {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl OneTimeFile {
    /// Reads the file. Used lines (starting with `#`) and blank lines are skipped; a line that is
    /// not a sequence is an error with its line number.
    pub fn load(path: &Path) -> Result<OneTimeFile, (Option<usize>, String)> {
        let meta = std::fs::metadata(path)
            .map_err(|e| (None, format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_BYTES {
            return Err((
                None,
                format!("{} is larger than {MAX_BYTES} bytes", path.display()),
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| (None, format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| (None, format!("{} is not text", path.display())))?;
        let mut entries = Vec::new();
        let mut offset = 0u64;
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let line = raw.trim_end_matches(['\n', '\r']);
            let trimmed = line.trim();
            // knockd trims a line before it looks for the '#' of a used line
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                let sequence = parse_sequence(trimmed)
                    .map_err(|e| (Some(i + 1), format!("{}:{}: {e}", path.display(), i + 1)))?;
                entries.push(Entry {
                    line: i + 1,
                    offset,
                    text: line.to_string(),
                    sequence,
                });
            }
            offset += raw.len() as u64;
        }
        Ok(OneTimeFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Marks entry `index` as used: `#` over its first byte, then fsync. Refuses if the file no
    /// longer holds that line where it was (it changed since it was read).
    pub fn mark_used(&self, index: usize) -> Result<(), MarkError> {
        let path = || self.path.clone();
        let entry = self.entries.get(index).ok_or(MarkError::NoLine(index))?;
        let current = std::fs::read(&self.path).map_err(|source| MarkError::Read {
            path: path(),
            source,
        })?;
        let start = usize::try_from(entry.offset).map_err(|_| MarkError::Offset)?;
        let found = current.get(start..start + entry.text.len());
        if found != Some(entry.text.as_bytes()) {
            return Err(MarkError::Changed {
                path: path(),
                line: entry.line,
            });
        }
        let mut f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|source| MarkError::Open {
                path: path(),
                source,
            })?;
        f.seek(SeekFrom::Start(entry.offset))
            .and_then(|_| f.write_all(b"#"))
            .and_then(|_| f.sync_data())
            .map_err(|source| MarkError::Mark {
                path: path(),
                line: entry.line,
                source,
            })
    }

    pub fn sequences(&self) -> Vec<Vec<Service>> {
        self.entries.iter().map(|e| e.sequence.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_unused_lines_and_marks_them_in_place() {
        let dir = std::env::temp_dir().join(format!("knocker-onetime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("seq");
        let original = "#used,1,2\n 7000,9000:udp,8000\n\n  #0,1,2\n 6000, 6200 ,6100:tcp\n";
        std::fs::write(&path, original).expect("write");
        let f = OneTimeFile::load(&path).expect("load");
        assert_eq!(
            f.entries.len(),
            2,
            "used lines, indented or not, and blank lines are skipped"
        );
        assert_eq!(f.entries[0].line, 2);
        assert_eq!(
            f.entries[0].sequence,
            vec![Service::tcp(7000), Service::udp(9000), Service::tcp(8000)]
        );
        assert_eq!(f.entries[1].line, 5);
        f.mark_used(0).expect("mark");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "#used,1,2\n#7000,9000:udp,8000\n\n  #0,1,2\n 6000, 6200 ,6100:tcp\n"
        );
        // marking again finds the line changed and refuses
        let e = f.mark_used(0).expect_err("changed");
        assert!(
            matches!(&e, MarkError::Changed { path: p, .. } if *p == path),
            "{e}"
        );
        assert!(e.to_string().contains("changed since it was read"), "{e}");
        assert!(matches!(f.mark_used(99), Err(MarkError::NoLine(99))));
        let f = OneTimeFile::load(&path).expect("reload");
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries[0].line, 5);
        std::fs::write(&path, " 7000,bogus\n").expect("write");
        let (line, msg) = OneTimeFile::load(&path).expect_err("bad line");
        assert_eq!(line, Some(1));
        assert!(msg.contains(":1:") && msg.contains("bogus"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
