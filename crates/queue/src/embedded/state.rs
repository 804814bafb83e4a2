//! What the queue keeps in memory, rebuilt from the file at start: the
//! order of calls per function, retries' times, what is running, and the
//! bytes each function holds.

use super::*;

/// A pending call in memory: its bodies left out.
#[derive(Clone)]
pub(super) struct Slot {
    pub(super) seq: u64,
    pub(super) entry: Entry,
    pub(super) bodies: Bodies,
    /// [`Entry::size`] with its bodies.
    pub(super) size: u64,
}

#[derive(Clone)]
pub(super) struct DeadSlot {
    pub(super) seq: u64,
    pub(super) letter: DeadLetter,
    pub(super) bodies: Bodies,
    pub(super) size: u64,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) next_seq: u64,
    /// Pending calls by id.
    pub(super) entries: HashMap<String, Slot>,
    /// Due calls per function (`name.namespace`), oldest first.
    pub(super) ready: BTreeMap<FunctionRef, VecDeque<(u64, String)>>,
    /// Retries waiting for their time: (not before, seq, id).
    pub(super) waiting: BTreeSet<(u64, u64, String)>,
    pub(super) running: HashSet<String>,
    /// Ids of calls being written by `enqueue`: taken, as if stored.
    pub(super) arriving: HashSet<String>,
    pub(super) dead: HashMap<String, DeadSlot>,
    pub(super) finished: HashMap<String, CallStatus>,
    /// Bytes held (pending, running, arriving, dead letters): in all and
    /// per function.
    pub(super) bytes: u64,
    pub(super) function_bytes: HashMap<FunctionRef, u64>,
    pub(super) processed: BTreeMap<String, u64>,
    pub(super) retried: BTreeMap<String, u64>,
    pub(super) dead_lettered: BTreeMap<String, u64>,
}

pub(super) fn key_of(entry: &Entry) -> FunctionRef {
    entry.call.function_ref()
}

pub(super) fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(storage)
}

impl State {
    /// A pending call into line: ready now, or waiting for its time.
    pub(super) fn place(&mut self, slot: Slot, now: u64) {
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
    pub(super) fn promote(&mut self, now: u64) {
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

    pub(super) fn forget(&mut self, id: &str) -> Option<Slot> {
        self.running.remove(id);
        let slot = self.entries.remove(id)?;
        self.waiting.remove(&(slot.entry.progress.not_before, slot.seq, id.to_owned()));
        if let Some(line) = self.ready.get_mut(&key_of(&slot.entry)) {
            line.retain(|(_, i)| i != id);
        }
        Some(slot)
    }

    pub(super) fn hold(&mut self, function: &FunctionRef, bytes: u64) {
        self.bytes += bytes;
        *self.function_bytes.entry(function.clone()).or_default() += bytes;
    }

    pub(super) fn release(&mut self, function: &FunctionRef, bytes: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(held) = self.function_bytes.get_mut(function) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                self.function_bytes.remove(function);
            }
        }
    }

    pub(super) fn next(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}
