//! The usage log: numbered files of JSON lines, appended to with one
//! `write(2)` per entry. An entry's id is where it is: its file's number
//! and its offset in it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Entry;

/// A file is closed for a new one past this size (once folded in whole,
/// it is deleted).
const SEGMENT_MAX: u64 = 64 << 20;

/// How far the log has been folded into the tables: every entry before
/// `offset` in file `segment`, and all of every earlier file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Entries read back from the log at start, and the position after them.
pub(super) type Replayed = (Vec<(u64, Entry)>, Position);

pub(super) struct Log {
    dir: PathBuf,
    file: File,
    segment: u64,
    offset: u64,
    /// Appended, not yet folded in.
    pending: Vec<(u64, Entry)>,
    buf: Vec<u8>,
}

fn path_of(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("log-{segment:020}.jsonl"))
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("log-").and_then(|n| n.strip_suffix(".jsonl"))
            && let Ok(n) = n.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// An entry's id: where it is in the log.
fn id(segment: u64, offset: u64) -> u64 {
    (segment << 40) | offset
}

impl Log {
    /// Reads what the log holds past `position` and opens a new file to
    /// append to (never one a killed process may have left half a line
    /// in). Returns the entries read and the position after them.
    pub(super) fn open(dir: &Path, position: Position) -> io::Result<(Log, Replayed)> {
        let mut entries = Vec::new();
        let existing = segments(dir)?;
        for &segment in existing.iter().filter(|s| **s >= position.segment) {
            let bytes = std::fs::read(path_of(dir, segment))?;
            let start = if segment == position.segment { position.offset as usize } else { 0 };
            let mut at = start.min(bytes.len());
            while let Some(len) = bytes[at..].iter().position(|b| *b == b'\n') {
                let line = &bytes[at..at + len];
                match serde_json::from_slice::<Entry>(line) {
                    Ok(entry) => entries.push((id(segment, at as u64), entry)),
                    Err(e) => {
                        tracing::warn!(segment, offset = at, error = %e, "usage: skipping a damaged line")
                    }
                }
                at += len + 1;
            }
            // Past the last newline: half a line, cut off by a crash.
        }
        let segment = existing.last().copied().unwrap_or(0).max(position.segment) + 1;
        let log = Log {
            dir: dir.to_owned(),
            file: create(&path_of(dir, segment))?,
            segment,
            offset: 0,
            pending: Vec::new(),
            buf: Vec::with_capacity(512),
        };
        Ok((log, (entries, Position { segment, offset: 0 })))
    }

    /// Writes `entry` as one line. On an error the file is cut back to
    /// where it was (so no half line is left between whole ones) and the
    /// entry is kept in memory only.
    pub(super) fn append(&mut self, entry: Entry) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &entry).map_err(io::Error::other)?;
        self.buf.push(b'\n');
        let at = self.offset;
        let written = self.file.write_all(&self.buf);
        if written.is_err() {
            let _ = self.file.set_len(at);
        } else {
            self.offset += self.buf.len() as u64;
        }
        self.pending.push((id(self.segment, at), entry));
        written
    }

    /// What was appended since the last call, the position after it, and
    /// whether a new file was started (the earlier ones can go once the
    /// entries are folded in).
    pub(super) fn take(&mut self) -> (Vec<(u64, Entry)>, Position, bool) {
        let entries = std::mem::take(&mut self.pending);
        let mut rotated = false;
        if self.offset >= SEGMENT_MAX {
            match create(&path_of(&self.dir, self.segment + 1)) {
                Ok(file) => {
                    self.file = file;
                    self.segment += 1;
                    self.offset = 0;
                    rotated = true;
                }
                Err(e) => tracing::warn!(error = %e, "usage: could not start a new log file"),
            }
        }
        (entries, Position { segment: self.segment, offset: self.offset }, rotated)
    }

    /// Entries a failed fold took, back in front of newer ones.
    pub(super) fn put_back(&mut self, mut entries: Vec<(u64, Entry)>) {
        entries.append(&mut self.pending);
        self.pending = entries;
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Deletes the files before `segment` (folded in whole).
    pub(super) fn delete_before(&self, segment: u64) {
        for old in segments(&self.dir).unwrap_or_default().into_iter().filter(|s| *s < segment) {
            if let Err(e) = std::fs::remove_file(path_of(&self.dir, old)) {
                tracing::warn!(segment = old, error = %e, "usage: could not delete a folded log file");
            }
        }
    }
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}
