//! The embedded queue: one redb file, no server.
//!
//! Every change (a call accepted, retried, settled) is a write in the
//! file, fsync'd before the caller hears back. Writes go through one writer
//! thread that takes every change waiting when it starts a transaction and
//! commits them together (group commit): under load, one fsync covers many
//! calls. What the dispatcher needs (the order of calls per function, the
//! retries' times, what is running, the bytes each function holds) is kept
//! in memory, rebuilt from the file at start: calls that were running when
//! the process died are pending again.
//!
//! Bodies (of calls, and of the answers kept for callbacks and dead
//! letters) are never kept in memory: they are read back when a call is
//! handed out. Up to [`INLINE_MAX`] bytes they are rows of the file (raw,
//! in the same transaction as their call); larger ones are files of their
//! own next to it (`queue.bodies/<n>`), fsync'd before the call's row is
//! committed and removed when it is settled, so their space goes back to
//! the file system at once. Space freed in the redb file is reused by
//! later writes; it holds small rows only, so it stays small.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use ferrofaas_types::FunctionRef;

use crate::{
    CallStatus, DeadLetter, Entry, LISTED_ANSWER, Limits, Progress, Queue, QueueError, QueueStats, Result,
    now_ms,
};

const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");
const FINISHED: TableDefinition<&str, &[u8]> = TableDefinition::new("finished");
/// Bodies of up to [`INLINE_MAX`] bytes, by number.
const BLOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("blobs");

/// Largest body kept in the redb file; larger ones are files.
pub const INLINE_MAX: usize = 64 << 10;
/// One transaction takes writes of at most about this many bytes.
const BATCH_BYTES: usize = 8 << 20;
/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 16 << 20;

/// How long the state of a finished call is kept for queries.
const FINISHED_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// Where a body is: its number, length, and whether it is a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Blob {
    n: u64,
    len: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    file: bool,
}

/// The bodies of a stored call: the call's, and the answer's it keeps.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Bodies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Blob>,
}

impl Bodies {
    fn all(&self) -> impl Iterator<Item = Blob> {
        self.call.into_iter().chain(self.result)
    }
}

/// A pending call as stored: its place in line, where it is, and where its
/// bodies are (the entry's own bodies are empty).
#[derive(Serialize, Deserialize)]
struct Stored {
    seq: u64,
    entry: Entry,
    #[serde(default)]
    bodies: Bodies,
}

#[derive(Serialize, Deserialize)]
struct StoredDead {
    seq: u64,
    letter: DeadLetter,
    #[serde(default)]
    bodies: Bodies,
}

#[derive(Clone, Copy)]
enum Table {
    Pending = 0,
    Dead = 1,
    Finished = 2,
}

enum Write {
    Put(Table, String, Vec<u8>),
    Delete(Table, String),
    PutBlob(u64, Bytes),
    DeleteBlob(u64),
}

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Put(_, k, v) => k.len() + v.len(),
            Write::PutBlob(_, b) => b.len(),
            Write::Delete(..) | Write::DeleteBlob(_) => 64,
        }
    }
}

type Batch = (Vec<Write>, oneshot::Sender<std::result::Result<(), String>>);

pub struct EmbeddedQueue {
    writer: std::sync::mpsc::Sender<Batch>,
    /// The writer thread; joined on drop, so that the file is closed.
    thread: Option<std::thread::JoinHandle<()>>,
    db: Arc<Database>,
    files: BodyFiles,
    state: Mutex<State>,
    changed: Notify,
    limits: Limits,
}

/// A pending call in memory: its bodies left out.
#[derive(Clone)]
struct Slot {
    seq: u64,
    entry: Entry,
    bodies: Bodies,
    /// [`Entry::size`] with its bodies.
    size: u64,
}

#[derive(Clone)]
struct DeadSlot {
    seq: u64,
    letter: DeadLetter,
    bodies: Bodies,
    size: u64,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Pending calls by id.
    entries: HashMap<String, Slot>,
    /// Due calls per function (`name.namespace`), oldest first.
    ready: BTreeMap<FunctionRef, VecDeque<(u64, String)>>,
    /// Retries waiting for their time: (not before, seq, id).
    waiting: BTreeSet<(u64, u64, String)>,
    running: HashSet<String>,
    /// Ids of calls being written by `enqueue`: taken, as if stored.
    arriving: HashSet<String>,
    dead: HashMap<String, DeadSlot>,
    finished: HashMap<String, CallStatus>,
    /// Bytes held (pending, running, arriving, dead letters): in all and
    /// per function.
    bytes: u64,
    function_bytes: HashMap<FunctionRef, u64>,
    processed: BTreeMap<String, u64>,
    retried: BTreeMap<String, u64>,
    dead_lettered: BTreeMap<String, u64>,
}

fn key_of(entry: &Entry) -> FunctionRef {
    entry.call.function_ref()
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(storage)
}

impl State {
    /// A pending call into line: ready now, or waiting for its time.
    fn place(&mut self, slot: Slot, now: u64) {
        let (seq, id) = (slot.seq, slot.entry.call.id.clone());
        if slot.entry.progress.not_before > now {
            self.waiting.insert((slot.entry.progress.not_before, seq, id.clone()));
        } else {
            let line = self.ready.entry(key_of(&slot.entry)).or_default();
            // In order of acceptance (a retry goes after calls older than it).
            let at = line.partition_point(|(s, _)| *s < seq);
            line.insert(at, (seq, id.clone()));
        }
        self.entries.insert(id, slot);
    }

    /// Retries whose time has come join their function's line.
    fn promote(&mut self, now: u64) {
        while let Some(first) = self.waiting.first().cloned() {
            if first.0 > now {
                break;
            }
            self.waiting.pop_first();
            let (_, seq, id) = first;
            if let Some(slot) = self.entries.get(&id) {
                let line = self.ready.entry(key_of(&slot.entry)).or_default();
                let at = line.partition_point(|(s, _)| *s < seq);
                line.insert(at, (seq, id));
            }
        }
    }

    fn forget(&mut self, id: &str) -> Option<Slot> {
        self.running.remove(id);
        let slot = self.entries.remove(id)?;
        self.waiting.remove(&(slot.entry.progress.not_before, slot.seq, id.to_owned()));
        if let Some(line) = self.ready.get_mut(&key_of(&slot.entry)) {
            line.retain(|(_, i)| i != id);
        }
        Some(slot)
    }

    fn hold(&mut self, function: &FunctionRef, bytes: u64) {
        self.bytes += bytes;
        *self.function_bytes.entry(function.clone()).or_default() += bytes;
    }

    fn release(&mut self, function: &FunctionRef, bytes: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(held) = self.function_bytes.get_mut(function) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                self.function_bytes.remove(function);
            }
        }
    }

    fn next(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// The folder of bodies too large for the redb file: one file each, named
/// by its number.
#[derive(Clone)]
struct BodyFiles {
    dir: PathBuf,
}

impl BodyFiles {
    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// Writes body `n` durably: its bytes and its name are on disk.
    fn write(&self, n: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(self.path(n))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// At most `max` bytes of body `n`, `len` long.
    fn read(&self, n: u64, len: u64, max: usize) -> std::io::Result<Bytes> {
        // Sized once: a growing buffer would double past the body.
        let mut bytes = Vec::with_capacity(len.min(max as u64) as usize);
        std::fs::File::open(self.path(n))?.take(max as u64).read_to_end(&mut bytes)?;
        Ok(Bytes::from(bytes))
    }

    fn remove(&self, blobs: impl IntoIterator<Item = Blob>) {
        for b in blobs.into_iter().filter(|b| b.file) {
            if let Err(e) = std::fs::remove_file(self.path(b.n))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, file = %self.path(b.n).display(), "could not remove a call's body");
            }
        }
    }
}

/// Reads blobs back: from the redb file or from their files.
fn read_blobs(
    db: &Database,
    files: &BodyFiles,
    blobs: &[(Blob, usize)],
) -> std::result::Result<Vec<Bytes>, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = tx.open_table(BLOBS).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(blobs.len());
    for &(blob, max) in blobs {
        let bytes = if blob.file {
            files.read(blob.n, blob.len, max).map_err(|e| format!("{}: {e}", files.path(blob.n).display()))?
        } else {
            let value = table
                .get(blob.n)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("body {} is missing", blob.n))?;
            let v = value.value();
            Bytes::copy_from_slice(&v[..v.len().min(max)])
        };
        if bytes.len() as u64 != blob.len && bytes.len() < max {
            return Err(format!("body {} has {} bytes, not {}", blob.n, bytes.len(), blob.len));
        }
        out.push(bytes);
    }
    Ok(out)
}

/// Takes `body` out of a call or answer for storing: nothing if it is
/// empty, else a new blob numbered `n`, a row of `writes` or a file
/// written now.
fn stash(files: &BodyFiles, n: u64, body: Bytes, writes: &mut Vec<Write>) -> std::io::Result<Option<Blob>> {
    if body.is_empty() {
        return Ok(None);
    }
    let len = body.len() as u64;
    if body.len() > INLINE_MAX {
        files.write(n, &body)?;
        return Ok(Some(Blob { n, len, file: true }));
    }
    writes.push(Write::PutBlob(n, body));
    Ok(Some(Blob { n, len, file: false }))
}

/// The rows of blobs that are rows, for removal in the same transaction
/// as what referred to them.
fn delete_rows(blobs: impl IntoIterator<Item = Blob>, writes: &mut Vec<Write>) {
    writes.extend(blobs.into_iter().filter(|b| !b.file).map(|b| Write::DeleteBlob(b.n)));
}

fn blob_len(b: Option<Blob>) -> u64 {
    b.map_or(0, |b| b.len)
}

/// A stored call's body moved out of its row (files written before this
/// version): `true` if there was one.
fn migrate(
    files: &BodyFiles,
    state: &mut State,
    body: &mut Bytes,
    blob: &mut Option<Blob>,
    writes: &mut Vec<Write>,
) -> std::io::Result<bool> {
    if blob.is_some() || body.is_empty() {
        return Ok(false);
    }
    let n = state.next();
    *blob = stash(files, n, std::mem::take(body), writes)?;
    Ok(true)
}

impl EmbeddedQueue {
    /// Opens (or creates) the queue file and its folder of bodies; pending
    /// calls are read back, bodies no call refers to are removed.
    pub fn open(path: &Path, limits: Limits) -> Result<EmbeddedQueue> {
        let files = BodyFiles { dir: path.with_extension("bodies") };
        std::fs::create_dir_all(&files.dir).map_err(|e| storage(format!("{}: {e}", files.dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&files.dir, std::fs::Permissions::from_mode(0o700)).map_err(storage)?;
        }
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(storage)?;
        let mut state = State::default();
        let now = now_ms();
        {
            let tx = db.begin_write().map_err(storage)?;
            // Make the tables exist, so that reads below find them.
            tx.open_table(PENDING).map_err(storage)?;
            tx.open_table(DEAD).map_err(storage)?;
            tx.open_table(FINISHED).map_err(storage)?;
            tx.open_table(BLOBS).map_err(storage)?;
            tx.commit().map_err(storage)?;
        }
        let mut writes = Vec::new();
        let mut blob_rows = Vec::new();
        let (mut pending, mut dead) = (Vec::new(), Vec::new());
        {
            let tx = db.begin_read().map_err(storage)?;
            for item in tx.open_table(PENDING).map_err(storage)?.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let stored: Stored = serde_json::from_slice(value.value()).map_err(storage)?;
                pending.push((key.value().to_owned(), stored));
            }
            for item in tx.open_table(DEAD).map_err(storage)?.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let stored: StoredDead = serde_json::from_slice(value.value()).map_err(storage)?;
                dead.push((key.value().to_owned(), stored));
            }
            for item in tx.open_table(FINISHED).map_err(storage)?.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let status: CallStatus = serde_json::from_slice(value.value()).map_err(storage)?;
                if status.updated_at + FINISHED_RETENTION_MS < now {
                    writes.push(Write::Delete(Table::Finished, key.value().to_owned()));
                } else {
                    state.finished.insert(key.value().to_owned(), status);
                }
            }
            for item in tx.open_table(BLOBS).map_err(storage)?.iter().map_err(storage)? {
                blob_rows.push(item.map_err(storage)?.0.value());
            }
        }
        let all_bodies = pending
            .iter()
            .flat_map(|(_, s)| s.bodies.all())
            .chain(dead.iter().flat_map(|(_, s)| s.bodies.all()));
        let seqs = pending.iter().map(|(_, s)| s.seq).chain(dead.iter().map(|(_, s)| s.seq));
        state.next_seq =
            all_bodies.map(|b| b.n).chain(seqs).chain(blob_rows.iter().copied()).max().unwrap_or(0);
        let io = |e: std::io::Error| storage(format!("moving a call's body out of its row: {e}"));
        pending.sort_by_key(|(_, s)| s.seq);
        for (id, mut s) in pending {
            let mut moved =
                migrate(&files, &mut state, &mut s.entry.call.body, &mut s.bodies.call, &mut writes)
                    .map_err(io)?;
            if let Some(result) = s.entry.progress.result.as_mut() {
                moved |= migrate(&files, &mut state, &mut result.body, &mut s.bodies.result, &mut writes)
                    .map_err(io)?;
            }
            if moved {
                writes.push(Write::Put(Table::Pending, id.clone(), encode(&s)?));
            }
            let size = s.entry.size() + blob_len(s.bodies.call) + blob_len(s.bodies.result);
            state.hold(&key_of(&s.entry), size);
            state.place(Slot { seq: s.seq, entry: s.entry, bodies: s.bodies, size }, now);
        }
        for (id, mut s) in dead {
            let mut moved =
                migrate(&files, &mut state, &mut s.letter.call.body, &mut s.bodies.call, &mut writes)
                    .map_err(io)?;
            if let Some(last) = s.letter.last.as_mut() {
                moved |= migrate(&files, &mut state, &mut last.body, &mut s.bodies.result, &mut writes)
                    .map_err(io)?;
            }
            if moved {
                writes.push(Write::Put(Table::Dead, id.clone(), encode(&s)?));
            }
            let size = s.letter.call.size()
                + s.letter.last.as_ref().map_or(0, crate::Outcome::size)
                + blob_len(s.bodies.call)
                + blob_len(s.bodies.result);
            state.hold(&s.letter.call.function_ref(), size);
            state.dead.insert(id, DeadSlot { seq: s.seq, letter: s.letter, bodies: s.bodies, size });
        }
        // What no call refers to (a crash between a body's file and its
        // call's commit) goes.
        let used: HashSet<(u64, bool)> = state
            .entries
            .values()
            .flat_map(|s| s.bodies.all())
            .chain(state.dead.values().flat_map(|s| s.bodies.all()))
            .map(|b| (b.n, b.file))
            .chain(writes.iter().filter_map(|w| match w {
                Write::PutBlob(n, _) => Some((*n, false)),
                _ => None,
            }))
            .collect();
        writes.extend(blob_rows.into_iter().filter(|n| !used.contains(&(*n, false))).map(Write::DeleteBlob));
        let listing = std::fs::read_dir(&files.dir).map_err(storage)?;
        for item in listing.flatten() {
            let keep = item
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| used.contains(&(n, true)));
            if !keep {
                let _ = std::fs::remove_file(item.path());
            }
        }
        if !writes.is_empty() {
            commit(&db, std::slice::from_ref(&writes)).map_err(storage)?;
        }
        if !state.entries.is_empty() {
            tracing::info!(
                pending = state.entries.len(),
                bytes = state.bytes,
                "asynchronous calls read back from the queue"
            );
        }
        let db = Arc::new(db);
        let (tx, rx) = std::sync::mpsc::channel::<Batch>();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || write_loop(&writer_db, rx))
            .map_err(storage)?;
        Ok(EmbeddedQueue {
            writer: tx,
            thread: Some(thread),
            db,
            files,
            state: Mutex::new(state),
            changed: Notify::new(),
            limits,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `writes` durably (one transaction, possibly shared with others).
    async fn write(&self, writes: Vec<Write>) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.writer.send((writes, reply)).map_err(|_| storage("the queue's writer stopped"))?;
        done.await.map_err(|_| storage("the queue's writer stopped"))?.map_err(QueueError::Storage)
    }

    /// [`stash`], with a large body's file written off the runtime's
    /// threads.
    async fn stash(&self, n: u64, body: Bytes, writes: &mut Vec<Write>) -> Result<Option<Blob>> {
        if body.len() <= INLINE_MAX {
            return stash(&self.files, n, body, writes).map_err(storage);
        }
        let files = self.files.clone();
        let len = body.len() as u64;
        tokio::task::spawn_blocking(move || files.write(n, &body))
            .await
            .map_err(storage)?
            .map_err(|e| storage(format!("writing a call's body: {e}")))?;
        Ok(Some(Blob { n, len, file: true }))
    }

    /// Reads blobs back (at most so many bytes of each), off the runtime's
    /// threads.
    async fn read(&self, blobs: Vec<(Blob, usize)>) -> std::result::Result<Vec<Bytes>, String> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let (db, files) = (Arc::clone(&self.db), self.files.clone());
        tokio::task::spawn_blocking(move || read_blobs(&db, &files, &blobs))
            .await
            .map_err(|e| e.to_string())?
    }

    fn finished_status(entry: &Entry, state: &str, status: Option<u16>, error: Option<String>) -> CallStatus {
        CallStatus {
            call_id: entry.call.id.clone(),
            function: key_of(entry).to_string(),
            state: state.to_owned(),
            attempts: entry.progress.attempts,
            status,
            error,
            updated_at: now_ms(),
        }
    }

    fn status_now(&self, id: &str) -> Option<CallStatus> {
        let state = self.lock();
        if let Some(slot) = state.entries.get(id) {
            let p = &slot.entry.progress;
            let phase = if state.running.contains(id) {
                "running"
            } else if p.result.is_some() {
                "callback"
            } else if p.attempts > 0 {
                "retrying"
            } else {
                "queued"
            };
            return Some(CallStatus {
                call_id: id.to_owned(),
                function: key_of(&slot.entry).to_string(),
                state: phase.to_owned(),
                attempts: p.attempts,
                status: p.result.as_ref().map(|r| r.status),
                error: p.last_error.clone(),
                updated_at: now_ms(),
            });
        }
        state.finished.get(id).cloned()
    }

    /// Bytes held for calls and dead letters: in all, and of `function`.
    pub fn bytes(&self, function: &FunctionRef) -> (u64, u64) {
        let state = self.lock();
        (state.bytes, state.function_bytes.get(function).copied().unwrap_or(0))
    }

    /// The folder of large bodies.
    pub fn body_folder(&self) -> &Path {
        &self.files.dir
    }
}

impl Drop for EmbeddedQueue {
    fn drop(&mut self) {
        // A closed channel ends the writer; it closes the file.
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One transaction of everything in `batches`.
fn commit(db: &Database, batches: &[Vec<Write>]) -> std::result::Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut tables = [tx.open_table(PENDING)?, tx.open_table(DEAD)?, tx.open_table(FINISHED)?];
        let mut blobs = tx.open_table(BLOBS)?;
        for w in batches.iter().flatten() {
            match w {
                Write::Put(t, k, v) => {
                    tables[*t as usize].insert(k.as_str(), v.as_slice())?;
                }
                Write::Delete(t, k) => {
                    tables[*t as usize].remove(k.as_str())?;
                }
                Write::PutBlob(n, bytes) => {
                    blobs.insert(*n, bytes.as_ref())?;
                }
                Write::DeleteBlob(n) => {
                    blobs.remove(*n)?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// The writer thread: batches what is waiting (up to [`BATCH_BYTES`]) into
/// one transaction.
fn write_loop(db: &Database, rx: std::sync::mpsc::Receiver<Batch>) {
    while let Ok(first) = rx.recv() {
        let mut bytes: usize = first.0.iter().map(Write::bytes).sum();
        let mut batches = vec![first];
        while bytes < BATCH_BYTES && batches.len() < 4096 {
            let Ok(more) = rx.try_recv() else { break };
            bytes += more.0.iter().map(Write::bytes).sum::<usize>();
            batches.push(more);
        }
        let (writes, replies): (Vec<_>, Vec<_>) = batches.into_iter().unzip();
        let result = commit(db, &writes).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "the queue could not write");
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue(&self, mut call: crate::Call) -> Result<()> {
        let id = call.id.clone();
        let key = call.function_ref();
        let size = call.size();
        let limits = self.limits;
        let (seq, n) = {
            let mut state = self.lock();
            let calls = state.entries.len() + state.arriving.len();
            if calls >= limits.max_calls {
                return Err(QueueError::Full(format!(
                    "the queue holds {calls} calls, as many as it may (--queue-max)"
                )));
            }
            let known = state.entries.contains_key(&id)
                || state.finished.contains_key(&id)
                || state.dead.contains_key(&id)
                || state.arriving.contains(&id);
            if known {
                return Err(QueueError::Exists(id));
            }
            if state.bytes + size > limits.max_bytes {
                return Err(QueueError::Full(format!(
                    "the queue holds {} bytes of calls and dead letters; this call's {size} would pass its \
                     limit of {} (--queue-max-bytes)",
                    state.bytes, limits.max_bytes
                )));
            }
            let held = state.function_bytes.get(&key).copied().unwrap_or(0);
            if held + size > limits.max_function_bytes {
                return Err(QueueError::Full(format!(
                    "function {key} holds {held} bytes of calls and dead letters in the queue; this call's \
                     {size} would pass its limit of {} (--queue-max-function-bytes)",
                    limits.max_function_bytes
                )));
            }
            state.arriving.insert(id.clone());
            state.hold(&key, size);
            (state.next(), state.next())
        };
        let body = std::mem::take(&mut call.body);
        let mut writes = Vec::new();
        let mut blob = None;
        let stored = async {
            blob = self.stash(n, body, &mut writes).await?;
            let stored = Stored { seq, entry: Entry::new(call), bodies: Bodies { call: blob, result: None } };
            writes.push(Write::Put(Table::Pending, id.clone(), encode(&stored)?));
            self.write(writes).await?;
            Ok::<_, QueueError>(stored)
        }
        .await;
        let mut state = self.lock();
        state.arriving.remove(&id);
        match stored {
            Ok(stored) => {
                state.place(Slot { seq, entry: stored.entry, bodies: stored.bodies, size }, now_ms());
                drop(state);
                self.changed.notify_one();
                Ok(())
            }
            Err(e) => {
                state.release(&key, size);
                drop(state);
                self.files.remove(blob);
                Err(e)
            }
        }
    }

    fn ready_functions(&self) -> Vec<FunctionRef> {
        let mut state = self.lock();
        state.promote(now_ms());
        state.ready.iter().filter(|(_, line)| !line.is_empty()).map(|(k, _)| k.clone()).collect()
    }

    async fn take(&self, function: &FunctionRef, room: u64) -> Option<Entry> {
        let slot = {
            let mut state = self.lock();
            let (_, id) = state.ready.get(function)?.front()?.clone();
            let slot = state.entries.get(&id).cloned();
            if slot.as_ref().is_some_and(|s| s.size > room) {
                return None;
            }
            state.ready.get_mut(function)?.pop_front();
            let slot = slot?;
            state.running.insert(id);
            slot
        };
        let mut entry = slot.entry;
        let wanted: Vec<(Blob, usize)> = slot.bodies.all().map(|b| (b, usize::MAX)).collect();
        match self.read(wanted).await {
            Ok(bodies) => {
                let mut bodies = bodies.into_iter();
                if slot.bodies.call.is_some() {
                    entry.call.body = bodies.next().unwrap_or_default();
                }
                if let (Some(_), Some(result)) = (slot.bodies.result, entry.progress.result.as_mut()) {
                    result.body = bodies.next().unwrap_or_default();
                }
                Some(entry)
            }
            Err(e) => {
                let error = format!("its stored body could not be read: {e}");
                tracing::error!(call = %entry.call.id, "{error}");
                let id = entry.call.id.clone();
                let letter = DeadLetter {
                    attempts: entry.progress.attempts,
                    call: entry.call,
                    last: None,
                    error: Some(error),
                    failed_at: now_ms(),
                };
                if let Err(e) = self.dead_letter(&id, letter).await {
                    tracing::error!(call = %id, error = %e, "could not dead-letter a call");
                }
                None
            }
        }
    }

    fn next_due(&self) -> Option<u64> {
        self.lock().waiting.first().map(|w| w.0)
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn done(&self, id: &str, attempts: u32, status: Option<u16>, error: Option<String>) -> Result<()> {
        let Some(mut slot) = self.lock().entries.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        slot.entry.progress.attempts = attempts;
        let finished = Self::finished_status(&slot.entry, "done", status, error);
        let mut writes = vec![
            Write::Delete(Table::Pending, id.to_owned()),
            Write::Put(Table::Finished, id.to_owned(), encode(&finished)?),
        ];
        delete_rows(slot.bodies.all(), &mut writes);
        self.write(writes).await?;
        self.files.remove(slot.bodies.all());
        let mut state = self.lock();
        state.forget(id);
        state.release(&key_of(&slot.entry), slot.size);
        *state.processed.entry(finished.function.clone()).or_default() += 1;
        state.finished.insert(id.to_owned(), finished);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn retry(&self, id: &str, mut progress: Progress) -> Result<()> {
        let Some(slot) = self.lock().entries.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        let key = key_of(&slot.entry);
        let n = self.lock().next();
        let mut writes = Vec::new();
        let mut bodies = Bodies { call: slot.bodies.call, result: None };
        let mut size = slot.entry.call.size() + blob_len(bodies.call);
        if let Some(result) = progress.result.as_mut() {
            let body = std::mem::take(&mut result.body);
            bodies.result = self.stash(n, body, &mut writes).await?;
            size += result.size() + blob_len(bodies.result);
        }
        delete_rows(slot.bodies.result, &mut writes);
        let entry = Entry { call: slot.entry.call.clone(), progress };
        let stored = Stored { seq: slot.seq, entry, bodies };
        writes.push(Write::Put(Table::Pending, id.to_owned(), encode(&stored)?));
        if let Err(e) = self.write(writes).await {
            self.files.remove(bodies.result);
            return Err(e);
        }
        self.files.remove(slot.bodies.result);
        let mut state = self.lock();
        state.forget(id);
        state.release(&key, slot.size);
        state.hold(&key, size);
        *state.retried.entry(key.to_string()).or_default() += 1;
        state.place(Slot { seq: slot.seq, entry: stored.entry, bodies, size }, now_ms());
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, id: &str, mut letter: DeadLetter) -> Result<()> {
        let Some(mut slot) = self.lock().entries.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        slot.entry.progress.attempts = letter.attempts;
        let key = key_of(&slot.entry);
        let n = self.lock().next();
        let finished = Self::finished_status(
            &slot.entry,
            "dead-lettered",
            letter.last.as_ref().map(|o| o.status),
            letter.error.clone(),
        );
        // The call's body stays where it is.
        letter.call.body = Bytes::new();
        let mut writes = Vec::new();
        let mut bodies = Bodies { call: slot.bodies.call, result: None };
        let mut size = letter.call.size() + blob_len(bodies.call);
        if let Some(last) = letter.last.as_mut() {
            let body = std::mem::take(&mut last.body);
            bodies.result = self.stash(n, body, &mut writes).await?;
            size += last.size() + blob_len(bodies.result);
        }
        delete_rows(slot.bodies.result, &mut writes);
        let stored = StoredDead { seq: slot.seq, letter, bodies };
        writes.extend([
            Write::Delete(Table::Pending, id.to_owned()),
            Write::Put(Table::Dead, id.to_owned(), encode(&stored)?),
            Write::Put(Table::Finished, id.to_owned(), encode(&finished)?),
        ]);
        if let Err(e) = self.write(writes).await {
            self.files.remove(bodies.result);
            return Err(e);
        }
        self.files.remove(slot.bodies.result);
        let mut state = self.lock();
        state.forget(id);
        state.release(&key, slot.size);
        state.hold(&key, size);
        *state.dead_lettered.entry(key.to_string()).or_default() += 1;
        state.dead.insert(id.to_owned(), DeadSlot { seq: slot.seq, letter: stored.letter, bodies, size });
        state.finished.insert(id.to_owned(), finished);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<Option<CallStatus>> {
        Ok(self.status_now(id))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut all: Vec<DeadSlot> = self.lock().dead.values().cloned().collect();
        all.sort_by_key(|d| d.seq);
        let wanted = all.iter().filter_map(|d| d.bodies.result).map(|b| (b, LISTED_ANSWER)).collect();
        let mut answers = self.read(wanted).await.map_err(QueueError::Storage)?.into_iter();
        Ok(all
            .into_iter()
            .map(|mut d| {
                if let (Some(_), Some(last)) = (d.bodies.result, d.letter.last.as_mut()) {
                    last.body = answers.next().unwrap_or_default();
                }
                d.letter
            })
            .collect())
    }

    async fn replay(&self, id: &str) -> Result<()> {
        let Some(dead) = self.lock().dead.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        let seq = self.lock().next();
        let entry = Entry::new(dead.letter.call.clone());
        let bodies = Bodies { call: dead.bodies.call, result: None };
        let size = entry.call.size() + blob_len(bodies.call);
        let mut writes = vec![
            Write::Delete(Table::Dead, id.to_owned()),
            Write::Delete(Table::Finished, id.to_owned()),
            Write::Put(Table::Pending, id.to_owned(), encode(&Stored { seq, entry: entry.clone(), bodies })?),
        ];
        delete_rows(dead.bodies.result, &mut writes);
        self.write(writes).await?;
        self.files.remove(dead.bodies.result);
        let key = key_of(&entry);
        let mut state = self.lock();
        state.dead.remove(id);
        state.finished.remove(id);
        state.release(&key, dead.size);
        state.hold(&key, size);
        state.place(Slot { seq, entry, bodies, size }, now_ms());
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        let Some(dead) = self.lock().dead.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        let mut writes = vec![Write::Delete(Table::Dead, id.to_owned())];
        delete_rows(dead.bodies.all(), &mut writes);
        self.write(writes).await?;
        self.files.remove(dead.bodies.all());
        let mut state = self.lock();
        state.dead.remove(id);
        state.release(&dead.letter.call.function_ref(), dead.size);
        Ok(())
    }

    async fn stats(&self) -> QueueStats {
        let state = self.lock();
        let mut pending = BTreeMap::new();
        for slot in state.entries.values() {
            *pending.entry(key_of(&slot.entry).to_string()).or_default() += 1;
        }
        QueueStats {
            pending,
            processed: state.processed.clone(),
            retried: state.retried.clone(),
            dead_lettered: state.dead_lettered.clone(),
        }
    }
}

/// The queue's file, with its pending calls read back.
pub fn open(path: &Path, limits: Limits) -> Result<Arc<EmbeddedQueue>> {
    EmbeddedQueue::open(path, limits).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(name: &str) -> FunctionRef {
        FunctionRef { name: name.to_owned(), namespace: "openfaas-fn".to_owned() }
    }
    use crate::Call;
    use redb::ReadableTableMetadata;

    fn calls(max_calls: usize) -> Limits {
        Limits { max_calls, ..Limits::default() }
    }

    fn call(id: &str, function: &str) -> Call {
        Call {
            id: id.into(),
            function: function.into(),
            namespace: "openfaas-fn".into(),
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from_static(b"hello"),
            callback: None,
            accepted_at: now_ms(),
        }
    }

    #[tokio::test]
    async fn an_id_is_never_taken_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
        q.enqueue(call("same", "f")).await.unwrap();
        let taken = |r: Result<()>| matches!(r, Err(QueueError::Exists(id)) if id == "same");
        assert!(taken(q.enqueue(call("same", "g")).await), "pending");
        let running = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(running.call.function, "f", "the first one is what runs");
        assert!(taken(q.enqueue(call("same", "g")).await), "running");
        q.done("same", 1, Some(200), None).await.unwrap();
        assert!(taken(q.enqueue(call("same", "g")).await), "settled");
        drop(q);
        let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
        assert!(taken(q.enqueue(call("same", "g")).await), "and after a restart");
    }

    #[tokio::test]
    async fn calls_survive_a_reopen_in_order_and_running_ones_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
            for i in 0..5 {
                q.enqueue(call(&format!("c{i}"), "f")).await.unwrap();
            }
            q.enqueue(call("g0", "g")).await.unwrap();
            assert_eq!(q.ready_functions(), vec![fr("f"), fr("g")]);
            let first = q.take(&fr("f"), u64::MAX).await.unwrap();
            assert_eq!(first.call.id, "c0");
            q.done("c0", 1, Some(200), None).await.unwrap();
            let second = q.take(&fr("f"), u64::MAX).await.unwrap();
            assert_eq!(second.call.id, "c1");
            assert_eq!(q.status_now("c1").unwrap().state, "running");
            // c1 running when the process "dies".
        }
        let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
        let mut ids: Vec<String> = Vec::new();
        while let Some(e) = q.take(&fr("f"), u64::MAX).await {
            ids.push(e.call.id);
        }
        assert_eq!(ids, vec!["c1", "c2", "c3", "c4"]);
        assert_eq!(&q.take(&fr("g"), u64::MAX).await.unwrap().call.body[..], b"hello");
        assert_eq!(q.status_now("c0").unwrap().state, "done");
        assert_eq!(q.status_now("c0").unwrap().status, Some(200));
    }

    #[tokio::test]
    async fn retries_wait_for_their_time_and_dead_letters_replay() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q"), calls(100)).unwrap();
        q.enqueue(call("a", "f")).await.unwrap();
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        let later = now_ms() + 60_000;
        q.retry("a", Progress { attempts: 1, not_before: later, ..e.progress.clone() }).await.unwrap();
        assert!(q.ready_functions().is_empty(), "not due yet");
        assert_eq!(q.next_due(), Some(later));
        assert_eq!(q.status_now("a").unwrap().state, "retrying");
        q.retry("a", Progress { attempts: 1, not_before: 0, ..e.progress.clone() }).await.unwrap();
        assert_eq!(q.ready_functions(), vec![fr("f")]);
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        let letter = DeadLetter {
            call: e.call.clone(),
            attempts: 3,
            last: None,
            error: Some("gone".into()),
            failed_at: now_ms(),
        };
        q.dead_letter("a", letter).await.unwrap();
        assert_eq!(q.dead_letters().await.unwrap().len(), 1);
        assert_eq!(q.status_now("a").unwrap().state, "dead-lettered");
        assert_eq!(q.stats().await.dead_lettered.get("f.openfaas-fn"), Some(&1));
        q.replay("a").await.unwrap();
        assert!(q.dead_letters().await.unwrap().is_empty());
        assert_eq!(q.take(&fr("f"), u64::MAX).await.unwrap().progress.attempts, 0);
        assert!(matches!(q.replay("zz").await, Err(QueueError::NotFound(_))));
    }

    #[tokio::test]
    async fn a_full_queue_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q"), calls(2)).unwrap();
        q.enqueue(call("a", "f")).await.unwrap();
        q.enqueue(call("b", "f")).await.unwrap();
        assert!(matches!(q.enqueue(call("c", "f")).await, Err(QueueError::Full(_))));
        assert_eq!(q.stats().await.pending.get("f.openfaas-fn"), Some(&2));
    }

    fn big(id: &str, function: &str, len: usize, byte: u8) -> Call {
        Call { body: Bytes::from(vec![byte; len]), ..call(id, function) }
    }

    fn files_in(q: &EmbeddedQueue) -> usize {
        std::fs::read_dir(q.body_folder()).unwrap().count()
    }

    #[tokio::test]
    async fn large_bodies_are_files_read_back_when_taken_and_removed_when_settled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
            q.enqueue(big("a", "f", 3 << 20, b'a')).await.unwrap();
            q.enqueue(big("b", "f", 1000, b'b')).await.unwrap();
            q.enqueue(big("c", "f", INLINE_MAX + 1, b'c')).await.unwrap();
            assert_eq!(files_in(&q), 2, "the small one is a row");
            // Memory holds no body: what is kept per call is its metadata.
            assert!(q.lock().entries.values().all(|s| s.entry.call.body.is_empty()));
            let a = q.take(&fr("f"), u64::MAX).await.unwrap();
            assert_eq!(a.call.body.len(), 3 << 20);
            assert!(a.call.body.iter().all(|&b| b == b'a'));
            q.done("a", 1, Some(200), None).await.unwrap();
            assert_eq!(files_in(&q), 1, "its file went with it");
        }
        // An orphan (a crash between a body's file and its call's commit)
        // goes at the next start; the others stay.
        std::fs::write(path.with_extension("bodies").join("999999"), b"orphan").unwrap();
        let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
        assert_eq!(files_in(&q), 1);
        let b = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(&b.call.body[..], &[b'b'; 1000][..]);
        let c = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(c.call.body.len(), INLINE_MAX + 1);
        q.done("b", 1, Some(200), None).await.unwrap();
        q.done("c", 1, Some(200), None).await.unwrap();
        assert_eq!(files_in(&q), 0);
        assert_eq!(q.bytes(&fr("f")), (0, 0));
        let blobs = q.db.begin_read().unwrap().open_table(BLOBS).unwrap().len().unwrap();
        assert_eq!(blobs, 0, "no body row is left");
    }

    #[tokio::test]
    async fn bytes_are_bounded_in_all_and_per_function_dead_letters_included() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { max_calls: 100, max_bytes: 11 << 20, max_function_bytes: 4 << 20 };
        let q = EmbeddedQueue::open(&dir.path().join("q"), limits).unwrap();
        q.enqueue(big("f1", "f", 3 << 20, 1)).await.unwrap();
        let full = |r: Result<()>, what: &str| match r {
            Err(QueueError::Full(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("{other:?}"),
        };
        full(q.enqueue(big("f2", "f", 2 << 20, 1)).await, "--queue-max-function-bytes");
        q.enqueue(big("g1", "g", 3 << 20, 1)).await.unwrap();
        q.enqueue(big("h1", "h", 3 << 20, 1)).await.unwrap();
        full(q.enqueue(big("k1", "k", 3 << 20, 1)).await, "--queue-max-bytes");
        assert!(!q.lock().entries.contains_key("k1"));
        // A dead letter holds its bytes until it is deleted.
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        let letter = DeadLetter { call: e.call, attempts: 3, last: None, error: None, failed_at: now_ms() };
        q.dead_letter("f1", letter).await.unwrap();
        assert_eq!(q.bytes(&fr("f")).1, big("f1", "f", 3 << 20, 1).size(), "body and metadata");
        full(q.enqueue(big("f2", "f", 1 << 20, 1)).await, "--queue-max-function-bytes");
        q.delete_dead_letter("f1").await.unwrap();
        q.enqueue(big("f2", "f", 2 << 20, 1)).await.unwrap();
        assert_eq!(files_in(&q), 3);
    }

    #[tokio::test]
    async fn a_call_larger_than_the_room_given_waits() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q"), Limits::default()).unwrap();
        q.enqueue(big("a", "f", 1 << 20, 1)).await.unwrap();
        assert!(q.take(&fr("f"), 1000).await.is_none());
        assert_eq!(q.status_now("a").unwrap().state, "queued", "still in line");
        assert_eq!(q.take(&fr("f"), 2 << 20).await.unwrap().call.id, "a");
    }

    #[tokio::test]
    async fn answers_kept_for_callbacks_and_dead_letters_are_stored_like_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
        q.enqueue(big("a", "f", 200_000, b'x')).await.unwrap();
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        let answer = crate::Outcome {
            status: 200,
            headers: vec![],
            body: Bytes::from(vec![b'r'; 300_000]),
            duration_secs: 0.1,
        };
        let progress = Progress { attempts: 1, result: Some(answer.clone()), ..e.progress };
        q.retry("a", progress).await.unwrap();
        assert_eq!(files_in(&q), 2);
        assert_eq!(q.status_now("a").unwrap().state, "callback");
        drop(q);
        let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(e.progress.result.as_ref().unwrap().body, answer.body, "the answer came back");
        assert_eq!(e.call.body.len(), 200_000);
        let letter =
            DeadLetter { call: e.call, attempts: 1, last: Some(answer), error: None, failed_at: now_ms() };
        q.dead_letter("a", letter).await.unwrap();
        assert_eq!(files_in(&q), 2, "the old answer's file went, the dead letter's came");
        let listed = q.dead_letters().await.unwrap();
        assert_eq!(listed[0].last.as_ref().unwrap().body.len(), LISTED_ANSWER, "a listing gives the start");
        assert!(listed[0].call.body.is_empty());
        q.replay("a").await.unwrap();
        assert_eq!(files_in(&q), 1, "a replay starts over with the call's body only");
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(e.call.body.len(), 200_000);
        assert!(e.progress.result.is_none());
    }

    #[tokio::test]
    async fn a_body_that_cannot_be_read_dead_letters_its_call() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q"), Limits::default()).unwrap();
        q.enqueue(big("a", "f", INLINE_MAX * 2, 1)).await.unwrap();
        for f in std::fs::read_dir(q.body_folder()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        assert!(q.take(&fr("f"), u64::MAX).await.is_none());
        let status = q.status_now("a").unwrap();
        assert_eq!(status.state, "dead-lettered");
        assert!(status.error.unwrap().contains("could not be read"));
    }

    #[tokio::test]
    async fn bodies_stored_inline_by_an_older_version_are_moved_out_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            let old =
                Stored { seq: 7, entry: Entry::new(big("old", "f", 100_000, 9)), bodies: Bodies::default() };
            tx.open_table(PENDING)
                .unwrap()
                .insert("old", serde_json::to_vec(&old).unwrap().as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
        assert_eq!(files_in(&q), 1);
        assert!(q.lock().entries["old"].entry.call.body.is_empty());
        let e = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(&e.call.body[..], &vec![9; 100_000][..]);
        q.enqueue(call("new", "f")).await.unwrap();
        assert!(q.lock().entries["new"].seq > 7, "numbers go on from the file's");
    }
}
