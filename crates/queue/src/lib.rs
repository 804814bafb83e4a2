//! # ferrofaas-queue
//!
//! Asynchronous invocations, stored durably until they are done: the
//! [`Queue`] trait, its embedded backend ([`embedded`], a redb file written
//! with group commit: every accepted call is on disk, fsync'd, before it is
//! acknowledged) and NATS JetStream ([`jetstream`], one queue shared by
//! several gateways).
//!
//! The queue holds [`Call`]s. A call is *pending* (waiting for its turn or
//! for a retry's time), *running* (handed out, not yet settled), then
//! settled: *done* (the function answered, and a callback, if any, was
//! delivered) or *dead-lettered* (out of attempts). Settling is what removes
//! it from the pending set, so a call handed out when the process dies is
//! handed out again after a restart: delivery is at least once.

#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "jetstream")]
pub mod jetstream;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use ferrofaas_types::FunctionRef;
use serde::{Deserialize, Serialize};

/// One asynchronous invocation, as accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub function: String,
    pub namespace: String,
    pub method: String,
    /// What the function sees: its path and query (`/` at least).
    pub path: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub body: Bytes,
    /// `X-Callback-Url`: where the result goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    /// A triggered call's reply topic: where the function's answer is
    /// published (`connector:topic`, or a topic any connector publishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub accepted_at: u64,
}

impl Call {
    pub fn function_ref(&self) -> FunctionRef {
        FunctionRef { name: self.function.clone(), namespace: self.namespace.clone() }
    }

    /// The bytes it takes to keep, body aside.
    fn meta_size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.id.len()
            + self.path.len()
            + self.method.len()
            + headers
            + self.callback.as_ref().map_or(0, String::len)
            + self.reply.as_ref().map_or(0, String::len)) as u64
    }

    /// The bytes it takes to keep: its body, headers and the rest. What
    /// the queue's byte limits count.
    pub fn size(&self) -> u64 {
        self.body.len() as u64 + self.meta_size()
    }
}

/// The function's answer, kept while its callback is being delivered, and
/// the last failure of a dead-lettered call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub body: Bytes,
    pub duration_secs: f64,
}

impl Outcome {
    /// The bytes it takes to keep.
    pub fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.body.len() + headers) as u64
    }
}

/// Where a pending call is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Invocation attempts made.
    pub attempts: u32,
    /// Not before this time (ms since the epoch): a retry's wait.
    pub not_before: u64,
    /// The function answered this; what is left is the callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
    /// Callback delivery attempts made.
    #[serde(default)]
    pub callback_attempts: u32,
    /// The last attempt's failure, for status queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A pending call with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub call: Call,
    pub progress: Progress,
}

impl Entry {
    /// The bytes it takes to keep: the call and the answer kept for its
    /// callback.
    pub fn size(&self) -> u64 {
        self.call.size() + self.progress.result.as_ref().map_or(0, Outcome::size)
    }

    /// A call not tried yet.
    pub fn new(call: Call) -> Entry {
        Entry {
            call,
            progress: Progress {
                attempts: 0,
                not_before: 0,
                result: None,
                callback_attempts: 0,
                last_error: None,
            },
        }
    }
}

/// A dead-lettered call: its last failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub call: Call,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds since the epoch.
    pub failed_at: u64,
}

/// What became of a call, for `GET /system/async/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStatus {
    pub call_id: String,
    pub function: String,
    /// `queued`, `running`, `retrying`, `callback`, `done`, `dead-lettered`.
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds since the epoch.
    pub updated_at: u64,
}

impl CallStatus {
    /// `entry`'s status now: `state`, with the function's answer and error
    /// as far as there are any.
    pub fn of(entry: &Entry, state: &str, status: Option<u16>, error: Option<String>) -> CallStatus {
        CallStatus {
            call_id: entry.call.id.clone(),
            function: entry.call.function_ref().to_string(),
            state: state.to_owned(),
            attempts: entry.progress.attempts,
            status,
            error,
            updated_at: now_ms(),
        }
    }
}

/// How much the queue keeps at most: calls waiting or running and dead
/// letters, counted by [`Call::size`] and [`Outcome::size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Calls pending or running.
    pub max_calls: usize,
    /// Bytes of calls pending or running and of dead letters.
    pub max_bytes: u64,
    /// The same, of one function (on the embedded queue).
    pub max_function_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_calls: 100_000, max_bytes: 1 << 30, max_function_bytes: 256 << 20 }
    }
}

/// Bytes of a dead letter's last answer that [`Queue::dead_letters`] gives.
pub const LISTED_ANSWER: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue, or the function's share of it, holds as much as it may
    /// (backpressure: 429); the text says which limit.
    #[error("{0}; try again later")]
    Full(String),
    /// One call larger than the queue takes (413).
    #[error("{0}")]
    TooLarge(String),
    #[error("no such call: {0}")]
    NotFound(String),
    /// A call with this id is pending, running, settled or dead-lettered:
    /// ids are never reused while the queue knows them (409).
    #[error("a call with the id {0:?} exists already")]
    Exists(String),
    #[error("queue storage: {0}")]
    Storage(String),
}

pub type Result<T> = std::result::Result<T, QueueError>;

/// Pending calls per function, and what has happened since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub pending: BTreeMap<String, u64>,
    pub processed: BTreeMap<String, u64>,
    pub retried: BTreeMap<String, u64>,
    pub dead_lettered: BTreeMap<String, u64>,
}

/// A durable queue of calls. Handing out respects order within a function
/// (oldest first, retries when due) and leaves the choice of function to
/// the caller (the dispatcher's fairness).
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores a call durably; `Full` past the bound, `Exists` if a call with
    /// its id is known (pending, running, settled, or a dead letter): a call
    /// is never replaced.
    async fn enqueue(&self, call: Call) -> Result<()>;

    /// Functions with a call due now that is not running.
    fn ready_functions(&self) -> Vec<FunctionRef>;

    /// The oldest due call of a function, marked running, with its bodies
    /// read back; `None` if there is none or if it is larger than `room`
    /// bytes ([`Entry::size`]): the caller bounds what it holds in memory.
    async fn take(&self, function: &FunctionRef, room: u64) -> Option<Entry>;

    /// When the next waiting retry falls due (ms since the epoch).
    fn next_due(&self) -> Option<u64>;

    /// Waits until something is enqueued or settled.
    async fn changed(&self);

    /// The call is finished after `attempts` invocation attempts: removed,
    /// with a status kept for queries.
    async fn done(&self, id: &str, attempts: u32, status: Option<u16>, error: Option<String>) -> Result<()>;

    /// The call goes back to waiting, with its new progress.
    async fn retry(&self, id: &str, progress: Progress) -> Result<()>;

    /// The call is out of attempts: kept as a dead letter.
    async fn dead_letter(&self, id: &str, letter: DeadLetter) -> Result<()>;

    async fn status(&self, id: &str) -> Result<Option<CallStatus>>;
    /// The dead letters, oldest first; without the calls' bodies, and with
    /// the first [`LISTED_ANSWER`] bytes of their last answers.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>>;
    /// A dead letter queued again, with fresh attempts.
    async fn replay(&self, id: &str) -> Result<()>;
    async fn delete_dead_letter(&self, id: &str) -> Result<()>;
    async fn stats(&self) -> QueueStats;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ferrofaas_types::base64::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bytes::Bytes, D::Error> {
        let text = String::deserialize(d)?;
        ferrofaas_types::base64::decode(&text)
            .map(bytes::Bytes::from)
            .ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }
}
