//! Usage shared by the gateways of a Swarm, on the NATS JetStream servers
//! their queue is on. Every gateway keeps its own [`embedded`] store (the
//! request path writes only to its log), and:
//!
//! - **Records**: a task publishes what this gateway logged to the stream
//!   `FERROFAAS_USAGE` (subject `ferrofaas.usage.<origin>`), in order, a
//!   batch at a time, each acknowledged (stored by the servers) before the
//!   next, from where the store says it stopped
//!   ([`Embedded::unpublished`]). Another reads the stream from the
//!   sequence the store has taken up to, and hands each batch of the other
//!   gateways to [`Embedded::receive`], which appends what it has not had
//!   yet to the log. So every gateway's sums and raw records hold every
//!   gateway's calls, each once, a fraction of a second after they end,
//!   and a gateway that was away catches up from where it was (within the
//!   stream's age, the raw retention). CPU samples stay with the gateway that took
//!   them: each reads the replicas it routes to (on a Swarm, all of them).
//! - **Settings**: plans, quotas and API tokens are keys of the stream
//!   `FERROFAAS_SETTINGS` (subjects `ferrofaas.settings.plan.<namespace>`,
//!   `.quota.<namespace>`, `.token.<id>`; the last message of each is its
//!   value, or its deletion). A change is stored there, then locally;
//!   every gateway follows the stream and applies each change as it comes
//!   ([`Board`]). At start, what a gateway had that the stream never had
//!   is put there (a store that shared nothing before), and what the
//!   stream deleted is deleted. (A stream, not a JetStream key-value
//!   bucket: the client's buckets ask for what NATS servers before 2.10,
//!   Debian's among them, do not answer.)
//!
//! The NATS servers are trusted as the state folder is: they hold the
//! tokens' hashes and every record.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use ferrofaas_types::address::{NatsServers, without_credentials};

use crate::embedded::{Embedded, Store};
use crate::{Apply, Board, Entry, Filter, Local, Meter, MeterStats, Plan, Quota, Record, Usage, UsageError};

const STREAM: &str = "FERROFAAS_USAGE";
const SUBJECT_PREFIX: &str = "ferrofaas.usage.";
const SETTINGS_STREAM: &str = "FERROFAAS_SETTINGS";
const SETTINGS_PREFIX: &str = "ferrofaas.settings.";
/// The most the settings stream holds.
const SETTINGS_MAX_BYTES: i64 = 256 << 20;
/// The header of a message that deletes its key.
const DELETED: &str = "Ferrofaas-Deleted";
/// Records read from the log per publishing round, at most.
const BATCH: usize = 4096;
/// How long a publish may wait for the servers' acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the log is published, unless a round finds a whole batch.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// The key of the plan of namespaces without one (`*`: not a key's
/// character).
const DEFAULT_PLAN_KEY: &str = "_default";

fn nats_error(what: &str) -> impl Fn(&dyn std::fmt::Display) -> UsageError + '_ {
    move |e| UsageError::Store(format!("{what}: {e}"))
}

/// The NATS servers the gateways share, connected.
#[derive(Clone)]
pub struct Nats {
    js: jetstream::Context,
    max_payload: usize,
    replicas: usize,
}

/// Connects to the NATS servers at `url` (one, or several comma-separated:
/// a cluster's), where streams and buckets are kept on `replicas` servers.
pub async fn connect(url: &str, replicas: usize) -> Result<Nats, UsageError> {
    let address = NatsServers::parse(url);
    let servers = address
        .servers
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError::Store(format!("the NATS address {}: {e}", without_credentials(url))))?;
    let options = async_nats::ConnectOptions::new().ping_interval(Duration::from_secs(2));
    let options = match (address.user, address.password) {
        (Some(user), Some(password)) => options.user_and_password(user, password),
        (Some(token), None) => options.token(token),
        _ => options,
    };
    let client = options
        .connect(servers)
        .await
        .map_err(|e| UsageError::Store(format!("connecting to NATS at {}: {e}", without_credentials(url))))?;
    let max_payload = client.server_info().max_payload;
    Ok(Nats { js: jetstream::new(client), max_payload, replicas })
}

/// The settings stream, followed: the [`Board`] plans, quotas and API
/// tokens are kept on.
pub struct Settings {
    js: jetstream::Context,
    stream: stream::Stream,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Settings {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            task.abort();
        }
    }
}

/// The settings stream (made if there is none): the last message of each
/// key's subject is its value, or a deletion.
pub async fn settings(nats: &Nats) -> Result<Arc<Settings>, UsageError> {
    nats.js
        .create_or_update_stream(stream::Config {
            name: SETTINGS_STREAM.to_owned(),
            subjects: vec![format!("{SETTINGS_PREFIX}>")],
            retention: stream::RetentionPolicy::Limits,
            max_messages_per_subject: 1,
            // Past it (deletions add up: each revoked token's is kept), a
            // change is refused rather than an old key dropped.
            max_bytes: SETTINGS_MAX_BYTES,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: nats.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("creating the settings stream")(&e))?;
    let stream = nats
        .js
        .get_stream(SETTINGS_STREAM)
        .await
        .map_err(|e| nats_error("opening the settings stream")(&e))?;
    Ok(Arc::new(Settings { js: nats.js.clone(), stream, tasks: Mutex::default() }))
}

/// An embedded store shared with the other gateways: a [`Meter`] whose
/// plans and quotas are every gateway's.
pub struct SharedStore {
    store: Store,
    settings: Arc<Settings>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Shares `store` with the other gateways: makes the usage stream (or
/// brings its bounds up to date: it keeps what was published for
/// `max_age` and at most `max_bytes`, the oldest dropped first: how long a
/// gateway may be away and still catch up), publishes and receives
/// entries from now on, and brings the plans and quotas in line with the
/// settings stream before returning.
pub async fn share(
    store: Arc<Embedded>,
    nats: &Nats,
    settings: Arc<Settings>,
    max_age: Duration,
    max_bytes: u64,
) -> Result<Arc<SharedStore>, UsageError> {
    nats.js
        .create_or_update_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("{SUBJECT_PREFIX}*")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age,
            max_bytes: max_bytes.min(i64::MAX as u64) as i64,
            discard: stream::DiscardPolicy::Old,
            num_replicas: nats.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("creating the usage stream")(&e))?;
    let usage = nats.js.get_stream(STREAM).await.map_err(|e| nats_error("opening the usage stream")(&e))?;
    for kind in ["plan", "quota"] {
        let entries: Vec<(String, Vec<u8>)> = store
            .settings_json(kind)?
            .into_iter()
            .map(|(namespace, json)| (settings_key(kind, &namespace), json))
            .collect();
        let followed = format!("followed-{kind}");
        let local = Local { entries, followed_before: store.flag(&followed)? };
        let target = Arc::clone(&store);
        let apply = move |key: &str, value: Option<&[u8]>| {
            let Some(namespace) = namespace_of(kind, key) else { return };
            if let Err(e) = target.put_setting_json(kind, &namespace, value) {
                tracing::warn!(%key, error = %e, "usage: could not store a shared setting");
            }
        };
        settings.follow(&format!("{kind}."), local, Box::new(apply)).await?;
        store.set_flag(&followed)?;
    }
    let publish = tokio::spawn(publish_loop(Arc::downgrade(&store), nats.js.clone(), nats.max_payload));
    let receive = tokio::spawn(receive_loop(Arc::downgrade(&store), usage));
    Ok(Arc::new(SharedStore { store: Store(store), settings, tasks: vec![publish, receive] }))
}

fn settings_key(kind: &str, namespace: &str) -> String {
    let name = if namespace == "*" { DEFAULT_PLAN_KEY } else { namespace };
    format!("{kind}.{name}")
}

fn namespace_of(kind: &str, key: &str) -> Option<String> {
    let name = key.strip_prefix(kind)?.strip_prefix('.')?;
    Some(if name == DEFAULT_PLAN_KEY { "*".to_owned() } else { name.to_owned() })
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Embedded>,
    f: impl FnOnce(&Embedded) -> Result<T, UsageError> + Send + 'static,
) -> Result<T, UsageError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| UsageError::Store(e.to_string()))?
}

/// Publishes the log, in order, from where the store says it stopped.
async fn publish_loop(store: std::sync::Weak<Embedded>, js: jetstream::Context, max_payload: usize) {
    let mut failing = false;
    loop {
        let Some(strong) = store.upgrade() else { return };
        let subject = format!("{SUBJECT_PREFIX}{}", strong.origin());
        let round = async {
            let crate::embedded::Unpublished { entries, to, more: full } =
                blocking(&strong, |s| s.unpublished(BATCH)).await?;
            for (first, last, payload) in batches(&entries, max_payload / 2) {
                let message = jetstream::message::PublishMessage::build()
                    .payload(Bytes::from(payload))
                    .message_id(format!("{}-{first:x}-{last:x}", strong.origin()));
                let ack = js
                    .send_publish(subject.clone(), message)
                    .await
                    .map_err(|e| nats_error("publishing usage")(&e))?;
                tokio::time::timeout(ACK_TIMEOUT, ack)
                    .await
                    .map_err(|_| UsageError::Store("publishing usage: no acknowledgement".into()))?
                    .map_err(|e| nats_error("publishing usage")(&e))?;
            }
            blocking(&strong, move |s| s.published(to)).await?;
            Ok::<bool, UsageError>(full)
        };
        let outcome = round.await;
        drop(strong);
        match outcome {
            Ok(full) => {
                if failing {
                    tracing::info!("usage: publishing to the other gateways again");
                    failing = false;
                }
                // On at once only behind by a whole batch: otherwise a
                // pause lets records gather, so that a busy gateway sends
                // a few large messages a second, not one per record.
                if !full {
                    tokio::time::sleep(PUBLISH_INTERVAL).await;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "usage: could not publish to the other gateways; retrying");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `entries` as messages of at most about `max` bytes (an entry larger
/// than that alone, which NATS may refuse): each a JSON array of `[id,
/// entry]` pairs, with the first and last id in it. Each entry is
/// serialized once.
fn batches(entries: &[(u64, Entry)], max: usize) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut current: Option<(u64, u64, Vec<u8>)> = None;
    for pair in entries {
        let Ok(json) = serde_json::to_vec(pair) else { continue };
        match &mut current {
            Some((_, last, payload)) if payload.len() + json.len() + 2 <= max => {
                payload.push(b',');
                payload.extend_from_slice(&json);
                *last = pair.0;
            }
            _ => {
                if let Some((first, last, mut payload)) = current.take() {
                    payload.push(b']');
                    out.push((first, last, payload));
                }
                let mut payload = Vec::with_capacity(max.min(1 << 20));
                payload.push(b'[');
                payload.extend_from_slice(&json);
                current = Some((pair.0, pair.0, payload));
            }
        }
    }
    if let Some((first, last, mut payload)) = current {
        payload.push(b']');
        out.push((first, last, payload));
    }
    out
}

/// Reads the stream from where the store has taken it up to, handing
/// every batch to the store.
async fn receive_loop(store: std::sync::Weak<Embedded>, usage: stream::Stream) {
    loop {
        let Some(start) = store.upgrade().map(|s| s.next_seq()) else { return };
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{SUBJECT_PREFIX}*"),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        };
        let mut messages = match ordered(&usage, config).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "usage: could not read the other gateways' usage; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(next) = messages.next().await {
            let Some(store) = store.upgrade() else { return };
            let message = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "usage: reading the stream");
                    continue;
                }
            };
            let Ok(seq) = message.info().map(|i| i.stream_sequence) else { continue };
            let origin = message.subject.as_str().strip_prefix(SUBJECT_PREFIX).unwrap_or_default().to_owned();
            if origin == store.origin() {
                // This gateway's own: only the place in the stream counts.
                store.receive(&origin, seq, Vec::new());
                continue;
            }
            let entries: Vec<(u64, Entry)> = serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
                tracing::error!(seq, error = %e, "usage: a message of the usage stream does not read; passing it over");
                Vec::new()
            });
            store.receive(&origin, seq, entries);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The messages of a new ordered consumer of `stream`.
async fn ordered(
    stream: &stream::Stream,
    config: consumer::pull::OrderedConfig,
) -> Result<consumer::pull::Ordered, String> {
    let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// A key's message: its value, or `None` if it deletes the key.
fn value_of(message: &async_nats::Message) -> Option<&[u8]> {
    let deleted = message.headers.as_ref().is_some_and(|h| h.get(DELETED).is_some());
    (!deleted).then_some(&message.payload[..])
}

/// Follows the keys under `prefix`: applies each as the stream has it
/// now (then what `local` has that the stream lacks: see
/// [`Board::follow`]), then every change, from a task it returns.
async fn follow(
    settings: &Settings,
    prefix: &str,
    local: Local,
    apply: Apply,
) -> Result<tokio::task::JoinHandle<()>, UsageError> {
    let filter = format!("{SETTINGS_PREFIX}{prefix}>");
    let consumer = settings
        .stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("reading the settings")(&e))?;
    // What the stream has now: the last message of every key.
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.map_err(|e| nats_error("reading the settings")(&e))?;
    let mut had = HashSet::new();
    let mut last_seq = 0;
    while pending > 0 {
        let message = tokio::time::timeout(ACK_TIMEOUT, messages.next())
            .await
            .map_err(|_| UsageError::Store("reading the settings: no answer".into()))?
            .ok_or_else(|| UsageError::Store("reading the settings: the stream ended".into()))?
            .map_err(|e| nats_error("reading the settings")(&e))?;
        let Some(key) = message.subject.as_str().strip_prefix(SETTINGS_PREFIX) else { continue };
        if let Ok(info) = message.info() {
            pending = info.pending;
            last_seq = info.stream_sequence;
        } else {
            pending -= 1;
        }
        apply(key, value_of(&message));
        had.insert(key.to_owned());
    }
    let missing: Vec<(String, Vec<u8>)> =
        local.entries.into_iter().filter(|(k, _)| !had.contains(k)).collect();
    if local.followed_before {
        // Deleted while this gateway was away (and the deletion since
        // dropped from the stream).
        for (key, _) in &missing {
            apply(key, None);
        }
    }
    // What this gateway had before it shared: put there unless another
    // gateway puts the key first.
    for (key, value) in missing.into_iter().filter(|_| !local.followed_before) {
        let message = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(value))
            .expected_last_subject_sequence(0);
        let put = settings.js.send_publish(format!("{SETTINGS_PREFIX}{key}"), message).await;
        let acked = match put {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = acked {
            tracing::info!(%key, error = %e, "usage: a setting was not shared (another gateway's came first?)");
        }
    }
    let stream = settings.stream.clone();
    Ok(tokio::spawn(async move {
        loop {
            while let Some(next) = messages.next().await {
                let Ok(message) = next else { continue };
                let Some(key) = message.subject.as_str().strip_prefix(SETTINGS_PREFIX) else { continue };
                if let Ok(info) = message.info() {
                    last_seq = info.stream_sequence;
                }
                apply(key, value_of(&message));
            }
            // The stream of changes ended: on from the last one seen.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let config = consumer::pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: last_seq + 1 },
                ..Default::default()
            };
            match ordered(&stream, config).await {
                Ok(m) => messages = m,
                Err(e) => tracing::warn!(error = %e, "usage: could not follow the settings; retrying"),
            }
        }
    }))
}

impl SharedStore {
    async fn put_setting(
        &self,
        kind: &str,
        namespace: &str,
        json: Option<Vec<u8>>,
    ) -> Result<(), UsageError> {
        let key = settings_key(kind, namespace);
        self.settings.put(&key, json.clone()).await?;
        let (store, kind, namespace) = (Arc::clone(&self.store.0), kind.to_owned(), namespace.to_owned());
        blocking(&store, move |s| s.put_setting_json(&kind, &namespace, json.as_deref())).await
    }
}

#[async_trait]
impl Board for Settings {
    async fn put(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), UsageError> {
        let message = match value {
            Some(value) => jetstream::message::PublishMessage::build().payload(Bytes::from(value)),
            None => jetstream::message::PublishMessage::build().header(DELETED, "1"),
        };
        let ack = self
            .js
            .send_publish(format!("{SETTINGS_PREFIX}{key}"), message)
            .await
            .map_err(|e| nats_error("storing a setting")(&e))?;
        tokio::time::timeout(ACK_TIMEOUT, ack)
            .await
            .map_err(|_| UsageError::Store("storing a setting: no acknowledgement".into()))?
            .map_err(|e| nats_error("storing a setting")(&e))?;
        Ok(())
    }

    async fn follow(&self, prefix: &str, local: Local, apply: Apply) -> Result<(), UsageError> {
        let task = follow(self, prefix, local, apply).await?;
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        Ok(())
    }
}

#[async_trait]
impl Meter for SharedStore {
    fn record(&self, entry: Entry) {
        self.store.record(entry);
    }

    async fn usage(&self, from_us: u64, to_us: u64, filter: &Filter) -> Result<Usage, UsageError> {
        self.store.usage(from_us, to_us, filter).await
    }

    async fn records(
        &self,
        from_us: u64,
        to_us: u64,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, UsageError> {
        self.store.records(from_us, to_us, filter, limit).await
    }

    async fn plans(&self) -> Result<BTreeMap<String, Plan>, UsageError> {
        self.store.plans().await
    }

    async fn set_plan(&self, namespace: &str, plan: Option<Plan>) -> Result<(), UsageError> {
        let json =
            plan.map(|p| serde_json::to_vec(&p)).transpose().map_err(|e| UsageError::Store(e.to_string()))?;
        self.put_setting("plan", namespace, json).await
    }

    async fn quotas(&self) -> Result<BTreeMap<String, Quota>, UsageError> {
        self.store.quotas().await
    }

    async fn set_quota(&self, namespace: &str, quota: Option<Quota>) -> Result<(), UsageError> {
        let json = quota
            .map(|q| serde_json::to_vec(&q))
            .transpose()
            .map_err(|e| UsageError::Store(e.to_string()))?;
        self.put_setting("quota", namespace, json).await
    }

    fn stats(&self) -> MeterStats {
        self.store.stats()
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keys_name_namespaces_and_the_default() {
        assert_eq!(settings_key("plan", "*"), "plan._default");
        assert_eq!(namespace_of("plan", "plan._default").as_deref(), Some("*"));
        assert_eq!(settings_key("quota", "team-a"), "quota.team-a");
        assert_eq!(namespace_of("quota", "quota.team-a").as_deref(), Some("team-a"));
        assert_eq!(namespace_of("quota", "plan.team-a"), None);
    }

    #[test]
    fn batches_are_cut_to_the_payload() {
        let entries: Vec<(u64, Entry)> =
            (0..100).map(|i| (i, Entry::Call(crate::record("a", i, 1)))).collect();
        let max = serde_json::to_vec(&entries[..10]).unwrap().len();
        let cut = batches(&entries, max);
        assert!((10..=11).contains(&cut.len()), "{}", cut.len());
        assert!(cut.iter().all(|(_, _, p)| p.len() <= max));
        let mut back = Vec::new();
        for (first, last, payload) in &cut {
            let some: Vec<(u64, Entry)> = serde_json::from_slice(payload).unwrap();
            assert_eq!((some[0].0, some[some.len() - 1].0), (*first, *last));
            back.extend(some);
        }
        assert_eq!(back, entries, "all of them, in order");
        assert_eq!(batches(&entries, usize::MAX).len(), 1);
        assert_eq!(batches(&entries, 1).len(), 100, "one entry alone if it is larger");
        assert!(batches(&[], 10).is_empty());
    }
}
