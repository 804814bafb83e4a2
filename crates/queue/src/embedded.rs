//! The embedded queue: one redb file, no server.
//!
//! Every change (a call accepted, retried, settled) is a write in the
//! file, fsync'd before the caller hears back. Writes go through one writer
//! thread that takes every change waiting when it starts a transaction and
//! commits them together (group commit): under load, one fsync covers many
//! calls. What the dispatcher needs (the order of calls per function, the
//! retries' times, what is running) is kept in memory, rebuilt from the file
//! at start: calls that were running when the process died are pending
//! again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use crate::{CallStatus, DeadLetter, Entry, Progress, Queue, QueueError, QueueStats, Result, now_ms};

const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");
const FINISHED: TableDefinition<&str, &[u8]> = TableDefinition::new("finished");

/// How long the state of a finished call is kept for queries.
const FINISHED_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// A pending call as stored: its place in line and where it is.
#[derive(Serialize, Deserialize)]
struct Stored {
    seq: u64,
    entry: Entry,
}

#[derive(Serialize, Deserialize)]
struct StoredDead {
    seq: u64,
    letter: DeadLetter,
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
}

type Batch = (Vec<Write>, oneshot::Sender<std::result::Result<(), String>>);

pub struct EmbeddedQueue {
    writer: std::sync::mpsc::Sender<Batch>,
    /// The writer thread; joined on drop, so that the file is closed.
    thread: Option<std::thread::JoinHandle<()>>,
    state: Mutex<State>,
    changed: Notify,
    max_pending: usize,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Pending calls by id: their place in line and progress.
    entries: HashMap<String, (u64, Entry)>,
    /// Due calls per function (`name.namespace`), oldest first.
    ready: BTreeMap<String, VecDeque<(u64, String)>>,
    /// Retries waiting for their time: (not before, seq, id).
    waiting: BTreeSet<(u64, u64, String)>,
    running: HashSet<String>,
    /// Ids of calls being written by `enqueue`: taken, as if stored.
    arriving: HashSet<String>,
    dead: HashMap<String, (u64, DeadLetter)>,
    finished: HashMap<String, CallStatus>,
    processed: BTreeMap<String, u64>,
    retried: BTreeMap<String, u64>,
    dead_lettered: BTreeMap<String, u64>,
}

fn key_of(entry: &Entry) -> String {
    format!("{}.{}", entry.call.function, entry.call.namespace)
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(storage)
}

impl State {
    /// A pending call into line: ready now, or waiting for its time.
    fn place(&mut self, seq: u64, entry: Entry, now: u64) {
        let id = entry.call.id.clone();
        if entry.progress.not_before > now {
            self.waiting.insert((entry.progress.not_before, seq, id.clone()));
        } else {
            let key = key_of(&entry);
            let line = self.ready.entry(key).or_default();
            // In order of acceptance (a retry goes after calls older than it).
            let at = line.partition_point(|(s, _)| *s < seq);
            line.insert(at, (seq, id.clone()));
        }
        self.entries.insert(id, (seq, entry));
    }

    /// Retries whose time has come join their function's line.
    fn promote(&mut self, now: u64) {
        while let Some(first) = self.waiting.first().cloned() {
            if first.0 > now {
                break;
            }
            self.waiting.pop_first();
            let (_, seq, id) = first;
            if let Some((_, entry)) = self.entries.get(&id) {
                let key = key_of(entry);
                let line = self.ready.entry(key).or_default();
                let at = line.partition_point(|(s, _)| *s < seq);
                line.insert(at, (seq, id));
            }
        }
    }

    fn forget(&mut self, id: &str) -> Option<(u64, Entry)> {
        self.running.remove(id);
        let (seq, entry) = self.entries.remove(id)?;
        self.waiting.remove(&(entry.progress.not_before, seq, id.to_owned()));
        if let Some(line) = self.ready.get_mut(&key_of(&entry)) {
            line.retain(|(_, i)| i != id);
        }
        Some((seq, entry))
    }
}

impl EmbeddedQueue {
    /// Opens (or creates) the queue file; pending calls are read back.
    pub fn open(path: &Path, max_pending: usize) -> Result<EmbeddedQueue> {
        let db = Database::create(path).map_err(storage)?;
        let mut state = State::default();
        let now = now_ms();
        let mut expired = Vec::new();
        {
            let tx = db.begin_write().map_err(storage)?;
            // Make the tables exist, so that reads below find them.
            tx.open_table(PENDING).map_err(storage)?;
            tx.open_table(DEAD).map_err(storage)?;
            tx.open_table(FINISHED).map_err(storage)?;
            tx.commit().map_err(storage)?;
        }
        {
            let tx = db.begin_read().map_err(storage)?;
            let pending = tx.open_table(PENDING).map_err(storage)?;
            let mut all = Vec::new();
            for item in pending.iter().map_err(storage)? {
                let (_, value) = item.map_err(storage)?;
                let stored: Stored = serde_json::from_slice(value.value()).map_err(storage)?;
                all.push(stored);
            }
            all.sort_by_key(|s| s.seq);
            for s in all {
                state.next_seq = state.next_seq.max(s.seq + 1);
                state.place(s.seq, s.entry, now);
            }
            let dead = tx.open_table(DEAD).map_err(storage)?;
            for item in dead.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let stored: StoredDead = serde_json::from_slice(value.value()).map_err(storage)?;
                state.next_seq = state.next_seq.max(stored.seq + 1);
                state.dead.insert(key.value().to_owned(), (stored.seq, stored.letter));
            }
            let finished = tx.open_table(FINISHED).map_err(storage)?;
            for item in finished.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let status: CallStatus = serde_json::from_slice(value.value()).map_err(storage)?;
                if status.updated_at + FINISHED_RETENTION_MS < now {
                    expired.push(key.value().to_owned());
                } else {
                    state.finished.insert(key.value().to_owned(), status);
                }
            }
        }
        if !state.entries.is_empty() {
            tracing::info!(pending = state.entries.len(), "asynchronous calls read back from the queue");
        }
        let (tx, rx) = std::sync::mpsc::channel::<Batch>();
        let thread = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || write_loop(db, rx))
            .map_err(storage)?;
        let queue = EmbeddedQueue {
            writer: tx,
            thread: Some(thread),
            state: Mutex::new(state),
            changed: Notify::new(),
            max_pending,
        };
        if !expired.is_empty() {
            let writes = expired.into_iter().map(|k| Write::Delete(Table::Finished, k)).collect();
            let (reply, _) = oneshot::channel();
            let _ = queue.writer.send((writes, reply));
        }
        Ok(queue)
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

    fn finished_status(entry: &Entry, state: &str, status: Option<u16>, error: Option<String>) -> CallStatus {
        CallStatus {
            call_id: entry.call.id.clone(),
            function: format!("{}.{}", entry.call.function, entry.call.namespace),
            state: state.to_owned(),
            attempts: entry.progress.attempts,
            status,
            error,
            updated_at: now_ms(),
        }
    }
}

impl EmbeddedQueue {
    fn status_now(&self, id: &str) -> Option<CallStatus> {
        let state = self.lock();
        if let Some((_, entry)) = state.entries.get(id) {
            let p = &entry.progress;
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
                function: key_of(entry),
                state: phase.to_owned(),
                attempts: p.attempts,
                status: p.result.as_ref().map(|r| r.status),
                error: p.last_error.clone(),
                updated_at: now_ms(),
            });
        }
        state.finished.get(id).cloned()
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

/// The writer thread: batches everything waiting into one transaction.
fn write_loop(db: Database, rx: std::sync::mpsc::Receiver<Batch>) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
            if batches.len() >= 4096 {
                break;
            }
        }
        let result = (|| -> std::result::Result<(), redb::Error> {
            let tx = db.begin_write()?;
            {
                let mut tables = [tx.open_table(PENDING)?, tx.open_table(DEAD)?, tx.open_table(FINISHED)?];
                for (writes, _) in &batches {
                    for w in writes {
                        match w {
                            Write::Put(t, k, v) => {
                                tables[*t as usize].insert(k.as_str(), v.as_slice())?;
                            }
                            Write::Delete(t, k) => {
                                tables[*t as usize].remove(k.as_str())?;
                            }
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })();
        let result = result.map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "the queue could not write");
        }
        for (_, reply) in batches {
            let _ = reply.send(result.clone());
        }
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue(&self, call: crate::Call) -> Result<()> {
        let id = call.id.clone();
        let seq = {
            let mut state = self.lock();
            if state.entries.len() + state.arriving.len() >= self.max_pending {
                return Err(QueueError::Full(state.entries.len()));
            }
            let known = state.entries.contains_key(&id)
                || state.finished.contains_key(&id)
                || state.dead.contains_key(&id);
            if known || !state.arriving.insert(id.clone()) {
                return Err(QueueError::Exists(id));
            }
            state.next_seq += 1;
            state.next_seq
        };
        let stored = Stored { seq, entry: Entry::new(call) };
        let written = match encode(&stored) {
            Ok(bytes) => self.write(vec![Write::Put(Table::Pending, id.clone(), bytes)]).await,
            Err(e) => Err(e),
        };
        let mut state = self.lock();
        state.arriving.remove(&id);
        written?;
        state.place(seq, stored.entry, now_ms());
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    fn ready_functions(&self) -> Vec<String> {
        let mut state = self.lock();
        state.promote(now_ms());
        state.ready.iter().filter(|(_, line)| !line.is_empty()).map(|(k, _)| k.clone()).collect()
    }

    fn take(&self, function: &str) -> Option<Entry> {
        let mut state = self.lock();
        let (_, id) = state.ready.get_mut(function)?.pop_front()?;
        state.running.insert(id.clone());
        state.entries.get(&id).map(|(_, e)| e.clone())
    }

    fn next_due(&self) -> Option<u64> {
        self.lock().waiting.first().map(|w| w.0)
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn done(&self, id: &str, attempts: u32, status: Option<u16>, error: Option<String>) -> Result<()> {
        let Some(mut entry) = self.lock().entries.get(id).map(|(_, e)| e.clone()) else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        entry.progress.attempts = attempts;
        let finished = Self::finished_status(&entry, "done", status, error);
        self.write(vec![
            Write::Delete(Table::Pending, id.to_owned()),
            Write::Put(Table::Finished, id.to_owned(), encode(&finished)?),
        ])
        .await?;
        let mut state = self.lock();
        state.forget(id);
        *state.processed.entry(finished.function.clone()).or_default() += 1;
        state.finished.insert(id.to_owned(), finished);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn retry(&self, id: &str, progress: Progress) -> Result<()> {
        let Some((seq, mut entry)) = self.lock().entries.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        entry.progress = progress;
        self.write(vec![Write::Put(
            Table::Pending,
            id.to_owned(),
            encode(&Stored { seq, entry: entry.clone() })?,
        )])
        .await?;
        let mut state = self.lock();
        state.forget(id);
        *state.retried.entry(key_of(&entry)).or_default() += 1;
        state.place(seq, entry, now_ms());
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, id: &str, letter: DeadLetter) -> Result<()> {
        let Some((seq, mut entry)) = self.lock().entries.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        entry.progress.attempts = letter.attempts;
        let finished = Self::finished_status(
            &entry,
            "dead-lettered",
            letter.last.as_ref().map(|o| o.status),
            letter.error.clone(),
        );
        self.write(vec![
            Write::Delete(Table::Pending, id.to_owned()),
            Write::Put(Table::Dead, id.to_owned(), encode(&StoredDead { seq, letter: letter.clone() })?),
            Write::Put(Table::Finished, id.to_owned(), encode(&finished)?),
        ])
        .await?;
        let mut state = self.lock();
        state.forget(id);
        *state.dead_lettered.entry(finished.function.clone()).or_default() += 1;
        state.dead.insert(id.to_owned(), (seq, letter));
        state.finished.insert(id.to_owned(), finished);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<Option<CallStatus>> {
        Ok(self.status_now(id))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let state = self.lock();
        let mut all: Vec<(u64, DeadLetter)> = state.dead.values().cloned().collect();
        all.sort_by_key(|(seq, _)| *seq);
        Ok(all.into_iter().map(|(_, l)| l).collect())
    }

    async fn replay(&self, id: &str) -> Result<()> {
        let Some((_, letter)) = self.lock().dead.get(id).cloned() else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        let seq = {
            let mut state = self.lock();
            state.next_seq += 1;
            state.next_seq
        };
        let entry = Entry::new(letter.call);
        self.write(vec![
            Write::Delete(Table::Dead, id.to_owned()),
            Write::Delete(Table::Finished, id.to_owned()),
            Write::Put(Table::Pending, id.to_owned(), encode(&Stored { seq, entry: entry.clone() })?),
        ])
        .await?;
        let mut state = self.lock();
        state.dead.remove(id);
        state.finished.remove(id);
        state.place(seq, entry, now_ms());
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        if !self.lock().dead.contains_key(id) {
            return Err(QueueError::NotFound(id.to_owned()));
        }
        self.write(vec![Write::Delete(Table::Dead, id.to_owned())]).await?;
        self.lock().dead.remove(id);
        Ok(())
    }

    async fn stats(&self) -> QueueStats {
        let state = self.lock();
        let mut pending = BTreeMap::new();
        for (_, entry) in state.entries.values() {
            *pending.entry(key_of(entry)).or_default() += 1;
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
pub fn open(path: &Path, max_pending: usize) -> Result<Arc<EmbeddedQueue>> {
    EmbeddedQueue::open(path, max_pending).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Call;

    fn call(id: &str, function: &str) -> Call {
        Call {
            id: id.into(),
            function: function.into(),
            namespace: "openfaas-fn".into(),
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"hello".to_vec(),
            callback: None,
            accepted_at: now_ms(),
        }
    }

    #[tokio::test]
    async fn an_id_is_never_taken_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        let q = EmbeddedQueue::open(&path, 100).unwrap();
        q.enqueue(call("same", "f")).await.unwrap();
        let taken = |r: Result<()>| matches!(r, Err(QueueError::Exists(id)) if id == "same");
        assert!(taken(q.enqueue(call("same", "g")).await), "pending");
        let running = q.take("f.openfaas-fn").unwrap();
        assert_eq!(running.call.function, "f", "the first one is what runs");
        assert!(taken(q.enqueue(call("same", "g")).await), "running");
        q.done("same", 1, Some(200), None).await.unwrap();
        assert!(taken(q.enqueue(call("same", "g")).await), "settled");
        drop(q);
        let q = EmbeddedQueue::open(&path, 100).unwrap();
        assert!(taken(q.enqueue(call("same", "g")).await), "and after a restart");
    }

    #[tokio::test]
    async fn calls_survive_a_reopen_in_order_and_running_ones_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let q = EmbeddedQueue::open(&path, 100).unwrap();
            for i in 0..5 {
                q.enqueue(call(&format!("c{i}"), "f")).await.unwrap();
            }
            q.enqueue(call("g0", "g")).await.unwrap();
            assert_eq!(q.ready_functions(), vec!["f.openfaas-fn", "g.openfaas-fn"]);
            let first = q.take("f.openfaas-fn").unwrap();
            assert_eq!(first.call.id, "c0");
            q.done("c0", 1, Some(200), None).await.unwrap();
            let second = q.take("f.openfaas-fn").unwrap();
            assert_eq!(second.call.id, "c1");
            assert_eq!(q.status_now("c1").unwrap().state, "running");
            // c1 running when the process "dies".
        }
        let q = EmbeddedQueue::open(&path, 100).unwrap();
        let ids: Vec<String> = std::iter::from_fn(|| q.take("f.openfaas-fn")).map(|e| e.call.id).collect();
        assert_eq!(ids, vec!["c1", "c2", "c3", "c4"]);
        assert_eq!(q.take("g.openfaas-fn").unwrap().call.body, b"hello");
        assert_eq!(q.status_now("c0").unwrap().state, "done");
        assert_eq!(q.status_now("c0").unwrap().status, Some(200));
    }

    #[tokio::test]
    async fn retries_wait_for_their_time_and_dead_letters_replay() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q"), 100).unwrap();
        q.enqueue(call("a", "f")).await.unwrap();
        let e = q.take("f.openfaas-fn").unwrap();
        let later = now_ms() + 60_000;
        q.retry("a", Progress { attempts: 1, not_before: later, ..e.progress.clone() }).await.unwrap();
        assert!(q.ready_functions().is_empty(), "not due yet");
        assert_eq!(q.next_due(), Some(later));
        assert_eq!(q.status_now("a").unwrap().state, "retrying");
        q.retry("a", Progress { attempts: 1, not_before: 0, ..e.progress.clone() }).await.unwrap();
        assert_eq!(q.ready_functions(), vec!["f.openfaas-fn"]);
        let e = q.take("f.openfaas-fn").unwrap();
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
        assert_eq!(q.take("f.openfaas-fn").unwrap().progress.attempts, 0);
        assert!(matches!(q.replay("zz").await, Err(QueueError::NotFound(_))));
    }

    #[tokio::test]
    async fn a_full_queue_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q"), 2).unwrap();
        q.enqueue(call("a", "f")).await.unwrap();
        q.enqueue(call("b", "f")).await.unwrap();
        assert!(matches!(q.enqueue(call("c", "f")).await, Err(QueueError::Full(2))));
        assert_eq!(q.stats().await.pending.get("f.openfaas-fn"), Some(&2));
    }
}
