//! The NATS JetStream queue: several gateways share one queue on a NATS
//! server (`nats-server -js`), so any of them accepts a call and any runs it.
//!
//! - Calls are messages of the work-queue stream `FERROFAAS_CALLS`, on the
//!   subject `ferrofaas.calls.<namespace>.<function>`; the stream's message
//!   and byte limits (discarding new ones) are the queue's bounds, and a
//!   call is at most one message (the server's `max_payload`). A call is
//!   acknowledged by the server (stored) before its 202.
//! - Every gateway pulls from the one durable consumer `ferrofaas-dispatch`;
//!   a message it holds is kept from the others (its acknowledgement
//!   deadline extended while it waits or runs) and acknowledged when the
//!   call is settled; it holds at most [`HELD`] calls and [`HELD_BYTES`]
//!   bytes. A gateway that dies holding messages lets them go when
//!   the deadline passes: they are delivered again, to any gateway (at least
//!   once).
//! - A retry is the call published again with its progress (attempts, the
//!   time it is due), then the old message acknowledged; a message that is
//!   not due yet is handed back with a delay (`Nak` with a delay).
//! - Dead letters and the state of calls are streams keeping the last
//!   message per call (`FERROFAAS_DEAD`, `FERROFAAS_STATUS`, subjects
//!   `ferrofaas.dead.<id>` and `ferrofaas.status.<id>`, the id in hex).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use ferrofaas_types::FunctionRef;
use ferrofaas_types::address::{NatsServers, without_credentials};

use crate::{CallStatus, DeadLetter, Entry, Limits, Progress, Queue, QueueError, QueueStats, Result, now_ms};

const STREAM: &str = "FERROFAAS_CALLS";
const SUBJECTS: &str = "ferrofaas.calls.>";
const CONSUMER: &str = "ferrofaas-dispatch";
const STATUS_STREAM: &str = "FERROFAAS_STATUS";
const DEAD_STREAM: &str = "FERROFAAS_DEAD";
/// Messages one gateway holds at once.
pub const HELD: i64 = 1024;
/// Bytes of messages one gateway holds at once (beyond them, the first).
pub const HELD_BYTES: usize = 64 << 20;

#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// `nats://host:port`, or several, comma-separated (a cluster's).
    pub url: String,
    /// Calls and bytes of the calls stream (the per-function limit is not
    /// kept here: JetStream has no byte limit per subject).
    pub limits: Limits,
    /// How long a held message stays held without news from its holder.
    pub ack_wait: Duration,
    /// On how many servers of a NATS cluster each stream is kept (1, or 3
    /// to lose no call when one server is lost).
    pub replicas: usize,
}

struct Held {
    entry: Entry,
    message: jetstream::Message,
    seq: u64,
}

#[derive(Default)]
struct Local {
    held: HashMap<String, Held>,
    /// Bytes of the messages held.
    held_bytes: usize,
    ready: BTreeMap<FunctionRef, VecDeque<(u64, String)>>,
    processed: BTreeMap<String, u64>,
    retried: BTreeMap<String, u64>,
    dead_lettered: BTreeMap<String, u64>,
}

pub struct JetStreamQueue {
    js: jetstream::Context,
    stream: stream::Stream,
    status: stream::Stream,
    dead: stream::Stream,
    local: Mutex<Local>,
    changed: Notify,
    limits: Limits,
    /// The server's largest message.
    max_payload: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for JetStreamQueue {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn err(context: &str) -> impl Fn(&dyn std::fmt::Display) -> QueueError + '_ {
    move |e| QueueError::Storage(format!("{context}: {e}"))
}

fn subject(entry: &Entry) -> String {
    format!("ferrofaas.calls.{}.{}", entry.call.namespace, entry.call.function)
}

/// A call id as one subject token.
fn token(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn status_subject(id: &str) -> String {
    format!("ferrofaas.status.{}", token(id))
}

fn dead_subject(id: &str) -> String {
    format!("ferrofaas.dead.{}", token(id))
}

fn key_of(entry: &Entry) -> FunctionRef {
    entry.call.function_ref()
}

/// Connects, makes the stream, consumer and buckets if they are missing,
/// and starts pulling calls.
pub async fn connect(config: JetStreamConfig) -> Result<Arc<JetStreamQueue>> {
    // One server or several (a cluster), comma-separated.
    let address = NatsServers::parse(&config.url);
    let servers = address
        .servers
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err("the NATS address")(&format!("{} ({e})", without_credentials(&config.url))))?;
    // A server lost without a word (its node gone) is noticed by missed
    // pings: every 2 s, so that the client moves to another within seconds.
    let options = async_nats::ConnectOptions::new().ping_interval(Duration::from_secs(2));
    let options = match (address.user, address.password) {
        (Some(user), Some(password)) => options.user_and_password(user, password),
        (Some(token), None) => options.token(token),
        _ => options,
    };
    let client = options
        .connect(servers)
        .await
        .map_err(|e| err("connecting to NATS")(&format!("{} ({e})", without_credentials(&config.url))))?;
    let max_payload = client.server_info().max_payload;
    let js = jetstream::new(client);
    // Made, or given this gateway's limits.
    js.create_or_update_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        max_messages: config.limits.max_calls as i64,
        max_bytes: config.limits.max_bytes.min(i64::MAX as u64) as i64,
        discard: stream::DiscardPolicy::New,
        num_replicas: config.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| err("creating the calls stream")(&e))?;
    let stream = js.get_stream(STREAM).await.map_err(|e| err("opening the calls stream")(&e))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: HELD * 16,
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err("creating the dispatch consumer")(&e))?;
    let last_per_call = |name: &str, subjects: &str, max_age: Duration| stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let status = js
        .get_or_create_stream(last_per_call(
            STATUS_STREAM,
            "ferrofaas.status.*",
            Duration::from_secs(24 * 3600),
        ))
        .await
        .map_err(|e| err("creating the status stream")(&e))?;
    let dead = js
        .get_or_create_stream(last_per_call(DEAD_STREAM, "ferrofaas.dead.*", Duration::ZERO))
        .await
        .map_err(|e| err("creating the dead-letter stream")(&e))?;
    let queue = Arc::new_cyclic(|weak: &std::sync::Weak<JetStreamQueue>| {
        let pull = tokio::spawn(pull_loop(weak.clone(), consumer));
        let keep = tokio::spawn(keep_held(weak.clone(), config.ack_wait));
        JetStreamQueue {
            js,
            stream,
            status,
            dead,
            local: Mutex::default(),
            changed: Notify::new(),
            limits: config.limits,
            max_payload,
            tasks: vec![pull, keep],
        }
    });
    Ok(queue)
}

/// Pulls calls into this gateway's hands: due ones into their function's
/// line, the others handed back until they are due.
async fn pull_loop(queue: std::sync::Weak<JetStreamQueue>, consumer: consumer::PullConsumer) {
    loop {
        let mut messages = match consumer.stream().max_messages_per_batch(HELD as usize).messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not pull calls from NATS; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(next) = messages.next().await {
            let Some(queue) = queue.upgrade() else { return };
            let message = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "pulling calls");
                    continue;
                }
            };
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let entry: Entry = match serde_json::from_slice(&message.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "a message of the calls stream is not a call; dropping it");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let now = now_ms();
            if entry.progress.not_before > now {
                let delay = Duration::from_millis(entry.progress.not_before - now);
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                continue;
            }
            // Wait for room: a gateway holds at most HELD calls and
            // HELD_BYTES bytes.
            while !queue.has_room() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut local = queue.lock();
            let id = entry.call.id.clone();
            let key = key_of(&entry);
            local.held_bytes += message.payload.len();
            if let Some(old) = local.held.insert(id.clone(), Held { entry, message, seq }) {
                // Delivered again while held here (a deadline passed): the
                // new delivery is the live one.
                local.held_bytes -= old.message.payload.len();
                local.ready.entry(key.clone()).or_default().retain(|(s, _)| *s != old.seq);
            }
            let line = local.ready.entry(key).or_default();
            let at = line.partition_point(|(s, _)| *s < seq);
            line.insert(at, (seq, id));
            drop(local);
            queue.changed.notify_one();
        }
    }
}

/// Keeps held messages held: "still working on it", every third of the
/// deadline.
async fn keep_held(queue: std::sync::Weak<JetStreamQueue>, ack_wait: Duration) {
    let mut tick = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let Some(queue) = queue.upgrade() else { return };
        let messages: Vec<jetstream::Message> =
            queue.lock().held.values().map(|h| h.message.clone()).collect();
        for m in messages {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }
}

impl JetStreamQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this gateway may hold one more message.
    fn has_room(&self) -> bool {
        let local = self.lock();
        local.held.is_empty() || (local.held.len() < HELD as usize && local.held_bytes < HELD_BYTES)
    }

    async fn publish(&self, entry: &Entry) -> Result<()> {
        let payload = Bytes::from(serde_json::to_vec(entry).map_err(|e| err("encoding a call")(&e))?);
        if payload.len() > self.max_payload {
            return Err(QueueError::TooLarge(format!(
                "the call takes {} bytes as a message; the NATS server takes at most {} (its max_payload)",
                payload.len(),
                self.max_payload
            )));
        }
        let ack = self.js.publish(subject(entry), payload).await.map_err(|e| err("publishing a call")(&e))?;
        match ack.await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("maximum messages") => Err(QueueError::Full(format!(
                "the queue holds {} calls, as many as it may (--queue-max)",
                self.limits.max_calls
            ))),
            Err(e) if e.to_string().contains("maximum bytes") => Err(QueueError::Full(format!(
                "the queue holds as many bytes of calls as it may, {} (--queue-max-bytes)",
                self.limits.max_bytes
            ))),
            Err(e) => Err(err("storing a call")(&e)),
        }
    }

    async fn put_status(&self, status: &CallStatus) -> Result<()> {
        let bytes = serde_json::to_vec(status).map_err(|e| err("encoding a status")(&e))?;
        self.put(status_subject(&status.call_id), bytes).await
    }

    async fn put(&self, subject: String, bytes: Vec<u8>) -> Result<()> {
        let ack = self.js.publish(subject, Bytes::from(bytes)).await.map_err(|e| err("publishing")(&e))?;
        ack.await.map_err(|e| err("storing")(&e))?;
        Ok(())
    }

    /// The last message on `subject` of `stream`, if any.
    async fn last(stream: &stream::Stream, subject: String) -> Result<Option<Bytes>> {
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(err("reading")(&e)),
        }
    }

    async fn remove_dead_letter(&self, id: &str) -> Result<()> {
        self.dead.purge().filter(dead_subject(id)).await.map_err(|e| err("removing a dead letter")(&e))?;
        Ok(())
    }

    async fn dead_letter_of(&self, id: &str) -> Result<Option<DeadLetter>> {
        let bytes = Self::last(&self.dead, dead_subject(id)).await?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Takes a held call out of this gateway's hands.
    fn release(&self, id: &str) -> Option<Held> {
        let mut local = self.lock();
        let held = local.held.remove(id)?;
        local.held_bytes -= held.message.payload.len();
        if let Some(line) = local.ready.get_mut(&key_of(&held.entry)) {
            line.retain(|(_, i)| i != id);
        }
        Some(held)
    }
}

#[async_trait]
impl Queue for JetStreamQueue {
    async fn enqueue(&self, call: crate::Call) -> Result<()> {
        let entry = Entry::new(call);
        let id = entry.call.id.clone();
        if Self::last(&self.dead, dead_subject(&id)).await?.is_some() {
            return Err(QueueError::Exists(id));
        }
        // The id is taken by its first status, written only if the subject
        // has none (every gateway sharing the stream sees the same), and
        // given back if the call cannot be stored.
        let status = CallStatus::of(&entry, "queued", None, None);
        let bytes = serde_json::to_vec(&status).map_err(|e| err("encoding a status")(&e))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        let ack = self
            .js
            .publish_with_headers(status_subject(&id), headers, Bytes::from(bytes))
            .await
            .map_err(|e| err("publishing a status")(&e))?;
        match ack.await {
            Ok(_) => {}
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                return Err(QueueError::Exists(id));
            }
            Err(e) => return Err(err("storing a status")(&e)),
        }
        if let Err(e) = self.publish(&entry).await {
            let _ = self.status.purge().filter(status_subject(&id)).await;
            return Err(e);
        }
        Ok(())
    }

    fn ready_functions(&self) -> Vec<FunctionRef> {
        self.lock().ready.iter().filter(|(_, l)| !l.is_empty()).map(|(k, _)| k.clone()).collect()
    }

    async fn take(&self, function: &FunctionRef, room: u64) -> Option<Entry> {
        let mut local = self.lock();
        let (_, id) = local.ready.get(function)?.front()?.clone();
        let entry = local.held.get(&id).map(|h| h.entry.clone());
        if entry.as_ref().is_some_and(|e| e.size() > room) {
            return None;
        }
        local.ready.get_mut(function)?.pop_front();
        entry
    }

    fn next_due(&self) -> Option<u64> {
        None
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn done(&self, id: &str, attempts: u32, status: Option<u16>, error: Option<String>) -> Result<()> {
        let Some(mut held) = self.release(id) else { return Err(QueueError::NotFound(id.to_owned())) };
        held.entry.progress.attempts = attempts;
        self.put_status(&CallStatus::of(&held.entry, "done", status, error)).await?;
        held.message.double_ack().await.map_err(|e| err("acknowledging a call")(&e))?;
        *self.lock().processed.entry(key_of(&held.entry).to_string()).or_default() += 1;
        self.changed.notify_one();
        Ok(())
    }

    async fn retry(&self, id: &str, progress: Progress) -> Result<()> {
        let Some(held) = self.release(id) else { return Err(QueueError::NotFound(id.to_owned())) };
        let entry = Entry { call: held.entry.call.clone(), progress };
        self.publish(&entry).await?;
        let state = if entry.progress.result.is_some() { "callback" } else { "retrying" };
        self.put_status(&CallStatus::of(&entry, state, None, entry.progress.last_error.clone())).await?;
        held.message.double_ack().await.map_err(|e| err("acknowledging a call")(&e))?;
        *self.lock().retried.entry(key_of(&entry).to_string()).or_default() += 1;
        self.changed.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, id: &str, letter: DeadLetter) -> Result<()> {
        let Some(mut held) = self.release(id) else { return Err(QueueError::NotFound(id.to_owned())) };
        held.entry.progress.attempts = letter.attempts;
        let bytes = serde_json::to_vec(&letter).map_err(|e| err("encoding a dead letter")(&e))?;
        self.put(dead_subject(id), bytes).await?;
        let status = CallStatus::of(
            &held.entry,
            "dead-lettered",
            letter.last.as_ref().map(|o| o.status),
            letter.error.clone(),
        );
        self.put_status(&status).await?;
        held.message.double_ack().await.map_err(|e| err("acknowledging a call")(&e))?;
        *self.lock().dead_lettered.entry(key_of(&held.entry).to_string()).or_default() += 1;
        self.changed.notify_one();
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<Option<CallStatus>> {
        if let Some(h) = self.lock().held.get(id) {
            let p = &h.entry.progress;
            let state = if p.result.is_some() { "callback" } else { "running" };
            return Ok(Some(CallStatus::of(&h.entry, state, p.result.as_ref().map(|r| r.status), None)));
        }
        let bytes = Self::last(&self.status, status_subject(id)).await?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut subjects = Vec::new();
        let mut info = self
            .dead
            .info_with_subjects("ferrofaas.dead.*")
            .await
            .map_err(|e| err("listing dead letters")(&e))?;
        while let Some(item) = info.next().await {
            let (subject, _) = item.map_err(|e| err("listing dead letters")(&e))?;
            subjects.push(subject);
        }
        let mut all = Vec::new();
        for subject in subjects {
            if let Some(bytes) = Self::last(&self.dead, subject).await?
                && let Ok(letter) = serde_json::from_slice::<DeadLetter>(&bytes)
            {
                all.push(letter);
            }
        }
        all.sort_by_key(|l| l.failed_at);
        Ok(all)
    }

    async fn replay(&self, id: &str) -> Result<()> {
        let Some(letter) = self.dead_letter_of(id).await? else {
            return Err(QueueError::NotFound(id.to_owned()));
        };
        let entry = Entry::new(letter.call);
        self.publish(&entry).await?;
        self.put_status(&CallStatus::of(&entry, "queued", None, None)).await?;
        self.remove_dead_letter(id).await
    }

    async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        if self.dead_letter_of(id).await?.is_none() {
            return Err(QueueError::NotFound(id.to_owned()));
        }
        self.remove_dead_letter(id).await
    }

    async fn stats(&self) -> QueueStats {
        let mut pending = BTreeMap::new();
        if let Ok(mut subjects) = self.stream.info_with_subjects(SUBJECTS).await {
            while let Some(Ok((subject, count))) = subjects.next().await {
                // ferrofaas.calls.<namespace>.<function>
                let mut parts = subject.rsplitn(3, '.');
                if let (Some(function), Some(namespace)) = (parts.next(), parts.next()) {
                    *pending.entry(format!("{function}.{namespace}")).or_default() += count as u64;
                }
            }
        }
        let local = self.lock();
        QueueStats {
            pending,
            processed: local.processed.clone(),
            retried: local.retried.clone(),
            dead_lettered: local.dead_lettered.clone(),
        }
    }
}
