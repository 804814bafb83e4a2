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

mod bodies;
mod open;
mod state;
mod writer;

use bodies::*;
use state::*;
use writer::*;

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

impl EmbeddedQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `writes` durably (one transaction, possibly shared with others).
    async fn write(&self, writes: Vec<Write>) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.writer.send((writes, reply)).map_err(|_| storage("the queue's writer stopped"))?;
        done.await.map_err(|_| storage("the queue's writer stopped"))?.map_err(QueueError::Storage)
    }

    /// Writes `writes`, which put `new` in the place of the answer body
    /// `old`: the file of whichever lost is removed (`new`'s if the write
    /// failed, `old`'s once it is durable).
    async fn write_replacing(&self, writes: Vec<Write>, new: Option<Blob>, old: Option<Blob>) -> Result<()> {
        let result = self.write(writes).await;
        self.files.remove(if result.is_ok() { old } else { new });
        result
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
            return Some(CallStatus::of(
                &slot.entry,
                phase,
                p.result.as_ref().map(|r| r.status),
                p.last_error.clone(),
            ));
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
        let finished = CallStatus::of(&slot.entry, "done", status, error);
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
        self.write_replacing(writes, bodies.result, slot.bodies.result).await?;
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
        let finished = CallStatus::of(
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
        self.write_replacing(writes, bodies.result, slot.bodies.result).await?;
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
mod tests;
