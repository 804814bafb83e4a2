//! The usage log: numbered files of JSON lines, each appended to through
//! a mapping ([`Appender`]). An entry's id is where it is: its file's number
//! and its offset in it. The files are also where raw records are kept:
//! a file is deleted once all it holds is past the raw retention (or the
//! files together are past their size bound), never before it has been
//! folded in.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read as _, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::mapped::Appender;
use crate::Entry;

/// A file is closed for a new one past this size or this age, so that
/// retention deletes records an hour (or 64 MiB) at a time.
const SEGMENT_MAX: u64 = 64 << 20;
const SEGMENT_AGE: Duration = Duration::from_secs(3600);
/// What a file is allocated: what it may reach before the next fold
/// closes it, past which it is written with `pwrite`.
const SEGMENT_ALLOCATED: u64 = SEGMENT_MAX + (8 << 20);
/// The most entries kept in memory for the next fold. Past it (folds have
/// failed for a while: the disk is full), the next folds read them back
/// from the log instead, at most this many at a time.
pub(super) const PENDING_MAX: usize = 200_000;
/// How much of the log, at most, is read back while appends wait, to go
/// from reading the log back to keeping entries in memory again.
const CATCH_UP_MAX: u64 = 1 << 20;

/// How far the log has been folded into the tables: every entry before
/// `offset` in file `segment`, and all of every earlier file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// What a file holds: the earliest and latest time its entries are
/// counted under, and its size. Queries for raw records read only the
/// files whose span meets their range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub min_us: u64,
    pub max_us: u64,
    pub bytes: u64,
}

impl Span {
    pub const EMPTY: Span = Span { min_us: u64::MAX, max_us: 0, bytes: 0 };

    fn add(&mut self, at_us: u64) {
        self.min_us = self.min_us.min(at_us);
        self.max_us = self.max_us.max(at_us);
    }

    pub fn merge(self, o: Span) -> Span {
        Span {
            min_us: self.min_us.min(o.min_us),
            max_us: self.max_us.max(o.max_us),
            bytes: self.bytes.max(o.bytes),
        }
    }

    /// Whether it may hold an entry counted in `[from_us, to_us)`.
    pub fn meets(&self, from_us: u64, to_us: u64) -> bool {
        self.min_us < to_us && self.max_us >= from_us
    }

    pub fn as_row(&self) -> (u64, u64, u64) {
        (self.min_us, self.max_us, self.bytes)
    }

    pub fn from_row((min_us, max_us, bytes): (u64, u64, u64)) -> Span {
        Span { min_us, max_us, bytes }
    }
}

/// What a fold is to fold in.
pub(super) enum Take {
    Entries {
        entries: Vec<(u64, Entry)>,
        position: Position,
        spans: Vec<(u64, Span)>,
    },
    /// To be read from the log between these positions.
    Behind {
        from: Position,
        to: Position,
        max: usize,
        spans: Vec<(u64, Span)>,
    },
}

/// Read back from the log at start: the entries not yet folded in, the
/// position after them, and the spans of the files read.
pub(super) struct Replayed {
    pub entries: Vec<(u64, Entry)>,
    pub position: Position,
    pub spans: Vec<(u64, Span)>,
}

pub(super) struct Log {
    dir: PathBuf,
    file: Appender,
    segment: u64,
    /// What the file being appended to holds.
    span: Span,
    opened: Instant,
    /// Appended, not yet folded in (unless `behind`).
    pending: Vec<(u64, Entry)>,
    /// How far the tables have folded the log in.
    folded: Position,
    /// `pending` went past `pending_max`: what is not folded in yet is
    /// read from the log, from `folded` on.
    behind: bool,
    /// [`PENDING_MAX`] and [`CATCH_UP_MAX`], but in tests.
    pub(super) pending_max: usize,
    pub(super) catch_up_max: u64,
    /// Spans a failed fold did not store.
    unsaved: Vec<(u64, Span)>,
    buf: Vec<u8>,
}

pub(super) fn path_of(dir: &Path, segment: u64) -> PathBuf {
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

/// What [`read_segment`] read: the file's size, and where the lines it
/// went through end (where a next read goes on).
pub(super) struct Read {
    pub len: u64,
    pub end: u64,
}

/// Calls `f` with the id and entry of every whole line of file `segment`
/// from `from` on (and before `upto`, if given), until it returns false. A
/// line that does not read is skipped (and said); what is past the last
/// newline is half a line, cut off by a crash, or one being written. The
/// first zero byte is the end of what was written ([`Appender`]); `len` is
/// where it is.
pub(super) fn read_segment(
    dir: &Path,
    segment: u64,
    from: u64,
    upto: Option<u64>,
    mut f: impl FnMut(u64, Entry) -> bool,
) -> io::Result<Read> {
    // Line by line: a file is up to 72 MiB, a query reads many.
    let mut file = File::open(path_of(dir, segment))?;
    let from = from.min(file.metadata()?.len());
    file.seek(io::SeekFrom::Start(from))?;
    let mut reader =
        io::BufReader::with_capacity(64 << 10, file.take(upto.map_or(u64::MAX, |u| u.saturating_sub(from))));
    let (mut at, mut line) = (from, Vec::with_capacity(512));
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if let Some(zero) = line.iter().position(|b| *b == 0) {
            return Ok(Read { len: at + zero as u64, end: at });
        }
        if line.last() != Some(&b'\n') {
            return Ok(Read { len: at + n, end: at });
        }
        match serde_json::from_slice::<Entry>(&line[..line.len() - 1]) {
            Ok(entry) => {
                if !f(id(segment, at), entry) {
                    // Not taken: the next read starts with it. What follows
                    // is not read, so the length is not known: at least this.
                    return Ok(Read { len: at + n, end: at });
                }
            }
            Err(e) => tracing::warn!(segment, offset = at, error = %e, "usage: skipping a damaged line"),
        }
        at += n;
    }
}

/// Reads the entries from `from` up to `to`, at most `max` of them, and
/// where reading stopped. Files the span does not list are none to read.
pub(super) fn read_between(
    dir: &Path,
    from: Position,
    to: Position,
    max: usize,
) -> io::Result<(Vec<(u64, Entry)>, Position)> {
    let mut entries = Vec::new();
    let mut at = from;
    while at.segment <= to.segment {
        let upto = (at.segment == to.segment).then_some(to.offset);
        let read = match read_segment(dir, at.segment, at.offset, upto, |id, entry| {
            let inside = at.segment < to.segment || id & ((1 << 40) - 1) < to.offset;
            if inside && entries.len() < max {
                entries.push((id, entry));
                true
            } else {
                false
            }
        }) {
            Ok(read) => read,
            // A file that is not there holds nothing to fold.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Read { len: 0, end: 0 },
            Err(e) => return Err(e),
        };
        if at.segment == to.segment {
            at.offset = read.end.min(to.offset).max(at.offset);
            break;
        }
        if entries.len() >= max && read.end < read.len {
            at.offset = read.end;
            break;
        }
        // A file read to its end: on to the next.
        at = Position { segment: at.segment + 1, offset: 0 };
    }
    Ok((entries, at))
}

impl Log {
    /// Reads what the log holds past `position` (and the span of any file
    /// `known` does not have) and opens a new file to append to (never one
    /// a killed process may have left half a line in).
    pub(super) fn open(
        dir: &Path,
        position: Position,
        known: &BTreeMap<u64, Span>,
    ) -> io::Result<(Log, Replayed)> {
        let mut entries = Vec::new();
        let mut spans = Vec::new();
        let existing = segments(dir)?;
        for &segment in &existing {
            let replay_from = match segment.cmp(&position.segment) {
                std::cmp::Ordering::Less => u64::MAX,
                std::cmp::Ordering::Equal => position.offset,
                std::cmp::Ordering::Greater => 0,
            };
            let before = known.get(&segment).copied();
            if before.is_some() && replay_from == u64::MAX {
                continue;
            }
            let mut span = Span::EMPTY;
            let from = if before.is_some() { replay_from } else { 0 };
            span.bytes = read_segment(dir, segment, from, None, |id, entry| {
                span.add(entry.key().2);
                if id & ((1 << 40) - 1) >= replay_from {
                    entries.push((id, entry));
                }
                true
            })?
            .len;
            // A file left allocated by a killed process: cut to what it holds.
            let file = OpenOptions::new().write(true).open(path_of(dir, segment))?;
            if file.metadata()?.len() > span.bytes {
                file.set_len(span.bytes)?;
            }
            spans.push((segment, before.map_or(span, |b| b.merge(span))));
        }
        let segment = existing.last().copied().unwrap_or(0).max(position.segment) + 1;
        let log = Log {
            dir: dir.to_owned(),
            file: create(&path_of(dir, segment))?,
            segment,
            span: Span::EMPTY,
            opened: Instant::now(),
            pending: Vec::new(),
            folded: position,
            behind: false,
            pending_max: PENDING_MAX,
            catch_up_max: CATCH_UP_MAX,
            unsaved: Vec::new(),
            buf: Vec::with_capacity(512),
        };
        Ok((log, Replayed { entries, position: Position { segment, offset: 0 }, spans }))
    }

    /// Writes `entry` as one line. On an error the file is cut back to
    /// where it was (so no half line is left between whole ones) and the
    /// entry is kept in memory only.
    pub(super) fn append(&mut self, entry: Entry) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &entry).map_err(io::Error::other)?;
        self.buf.push(b'\n');
        let at = self.file.offset();
        let written = self.file.append(&self.buf);
        if written.is_ok() {
            self.span.add(entry.key().2);
        }
        if !self.behind {
            self.pending.push((id(self.segment, at), entry));
            self.bound();
        }
        written
    }

    /// Past `pending_max`, drops what is in memory: it is read back from
    /// the log (all but entries that could not be written, which the
    /// `unlogged` count already shows as lost).
    fn bound(&mut self) {
        if self.pending.len() > self.pending_max {
            tracing::warn!(
                entries = self.pending.len(),
                "usage: folds are behind; reading the log back instead"
            );
            self.pending = Vec::new();
            self.behind = true;
        }
    }

    /// The tables have folded the log in up to `position`.
    pub(super) fn folded(&mut self, position: Position) {
        self.folded = position;
    }

    /// What was appended since the last call, the position after it, and
    /// the spans of the files it went to; or, when [`Log::bound`] dropped
    /// what was in memory, [`Take::Behind`]: where the log is to be read
    /// back from, and up to where. A file full or old enough is closed for
    /// a new one here.
    pub(super) fn take(&mut self) -> Take {
        let mut spans = std::mem::take(&mut self.unsaved);
        if self.behind {
            spans.push((self.segment, Span { bytes: self.offset(), ..self.span }));
            let to = Position { segment: self.segment, offset: self.offset() };
            let near =
                self.folded.segment == to.segment && to.offset - self.folded.offset <= self.catch_up_max;
            if near {
                // The rest, read while appends wait: from here on, in
                // memory again.
                match read_between(&self.dir, self.folded, to, usize::MAX) {
                    Ok((entries, at)) => {
                        self.behind = false;
                        return Take::Entries { entries, position: at, spans };
                    }
                    Err(e) => tracing::warn!(error = %e, "usage: could not read the log back"),
                }
            }
            return Take::Behind { from: self.folded, to, max: self.pending_max, spans };
        }
        let entries = std::mem::take(&mut self.pending);
        spans.push((self.segment, Span { bytes: self.offset(), ..self.span }));
        if self.offset() >= SEGMENT_MAX || (self.offset() > 0 && self.opened.elapsed() >= SEGMENT_AGE) {
            match create(&path_of(&self.dir, self.segment + 1)) {
                Ok(file) => {
                    self.file = file;
                    self.segment += 1;
                    self.span = Span::EMPTY;
                    self.opened = Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "usage: could not start a new log file"),
            }
        }
        Take::Entries { entries, position: Position { segment: self.segment, offset: self.offset() }, spans }
    }

    /// What a failed fold took, back in front of what is newer.
    pub(super) fn put_back(&mut self, mut entries: Vec<(u64, Entry)>, spans: Vec<(u64, Span)>) {
        self.unsaved = spans;
        if self.behind {
            return;
        }
        entries.append(&mut self.pending);
        self.pending = entries;
        self.bound();
    }

    /// Entries not yet folded in: those in memory, or at least as many as
    /// it may hold when they are read back from the log.
    /// Where the next entry goes.
    pub(super) fn end(&self) -> Position {
        Position { segment: self.segment, offset: self.offset() }
    }

    /// Where the next entry goes in the file being written.
    pub(super) fn offset(&self) -> u64 {
        self.file.offset()
    }

    #[cfg(test)]
    pub(super) fn is_mapped(&self) -> bool {
        self.file.is_mapped()
    }

    pub(super) fn pending(&self) -> usize {
        if self.behind { self.pending_max } else { self.pending.len() }
    }
}

fn create(path: &Path) -> io::Result<Appender> {
    let file = OpenOptions::new().create_new(true).read(true).write(true).mode(0o600).open(path)?;
    Ok(Appender::new(file, SEGMENT_ALLOCATED))
}
