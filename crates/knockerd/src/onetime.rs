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

/// Why a line is not a sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("{0}")]
    Service(#[from] knocker_wire::ParseError),
    #[error("empty sequence")]
    Empty,
}

/// Why a one-time sequences file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not text", path.display())]
    NotText { path: PathBuf },
    #[error("{}:{line}: {why}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        why: SequenceError,
    },
}

impl LoadError {
    /// The line of the file the error is on, if it is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::Line { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Parses knockd's `Sequence` syntax: `port[:tcp|udp],...`, TCP by default.
pub fn parse_sequence(text: &str) -> Result<Vec<Service>, SequenceError> {
    let seq: Vec<Service> = text
        .split(',')
        .map(|p| p.trim().parse::<Service>())
        .collect::<Result<_, _>>()?;
    if seq.is_empty() {
        return Err(SequenceError::Empty);
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
    pub fn load(path: &Path) -> Result<OneTimeFile, LoadError> {
        let read = |source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_BYTES {
            return Err(LoadError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText {
            path: path.to_path_buf(),
        })?;
        let mut entries = Vec::new();
        let mut offset = 0u64;
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let line = raw.trim_end_matches(['\n', '\r']);
            let trimmed = line.trim();
            // knockd trims a line before it looks for the '#' of a used line
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                let sequence = parse_sequence(trimmed).map_err(|why| LoadError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    why,
                })?;
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
        let e = OneTimeFile::load(&path).expect_err("bad line");
        assert_eq!(e.line(), Some(1));
        let msg = e.to_string();
        assert!(msg.contains(":1:") && msg.contains("bogus"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
