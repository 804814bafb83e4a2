//! Message brokers as triggers: the [`Broker`] trait a connector
//! implements (NATS in [`crate::nats`]), and [`Topics`], which keeps one
//! subscription per topic that functions name and turns each message into
//! one asynchronous call per function on the queue, acknowledging the
//! message only once every call is stored.
//!
//! A function's topic is delivered by every broker switched on that takes
//! it, or by one alone when prefixed with its name (`nats:orders.new`).
//! A broker that is down, or a subscription that fails, is retried with
//! backoff (1 s doubling to 30 s), reported in the topic's figures, and
//! holds up nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferrofaas_queue::{Queue, QueueError};
use ferrofaas_types::FunctionRef;
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

/// One message of a subscription.
pub struct Event {
    /// The broker's id of the message, stable across redeliveries where
    /// the broker has one (a JetStream stream sequence), so that a message
    /// delivered twice is one call.
    pub id: String,
    /// The subject or topic it came on (a wildcard subscription's match).
    pub subject: String,
    pub time: Timestamp,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    /// Told `true` once the calls are stored (then the broker may forget
    /// it), `false` if they could not be (then it should deliver it again).
    pub ack: Option<oneshot::Sender<bool>>,
}

/// A message broker a connector reaches.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// The connector's name: `X-Connector`, call ids, topic prefixes.
    fn name(&self) -> &'static str;
    /// Can it subscribe to `topic` (its syntax)? Why not, if not.
    fn check_topic(&self, topic: &str) -> Result<(), String>;
    /// Subscribes; events come on the channel until it is dropped or the
    /// subscription ends (then `Topics` subscribes again). The error says
    /// why it could not.
    async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<Event>, String>;
    /// Can it publish a function's answer to `topic` (one topic, no
    /// wildcards; none of the broker's or the platform's own)?
    fn check_reply(&self, topic: &str) -> Result<(), String>;
    /// Publishes a function's answer to `topic`, confirmed by the broker
    /// where it confirms; the error says why it was not.
    async fn publish(&self, topic: &str, headers: &[(String, String)], body: Bytes) -> Result<(), String>;
}

/// Messages of one subscription whose calls are being stored at once
/// (their stores share the queue's commits).
pub const IN_FLIGHT: usize = 64;

/// Acknowledgements in the order the messages came (as MQTT wants them):
/// each waits for its message's calls to be stored, then `settle` tells
/// the broker (`true`: stored); `settle` answering `false` (the
/// connection is gone) ends it. The messages' calls are stored
/// concurrently meanwhile.
pub fn acknowledger<T, F, Fut>(settle: F) -> mpsc::Sender<(oneshot::Receiver<bool>, T)>
where
    T: Send + 'static,
    F: Fn(T, bool) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (tx, mut rx) = mpsc::channel::<(oneshot::Receiver<bool>, T)>(IN_FLIGHT);
    tokio::spawn(async move {
        while let Some((stored, message)) = rx.recv().await {
            let stored = stored.await == Ok(true);
            if !settle(message, stored).await {
                break;
            }
        }
    });
    tx
}

/// Names of connectors, built in or not: a topic prefixed with one names
/// that connector (`kafka:orders` is not a NATS subject of that name).
pub const CONNECTOR_NAMES: &[&str] =
    &["nats", "mqtt", "rabbitmq", "amqp", "kafka", "postgres", "redis", "sqs"];

/// The name a broker keeps a topic's subscription under across restarts
/// (a JetStream durable consumer, an MQTT session): `ferrofaas-` and a
/// hash of the topic, the same in every gateway.
pub fn durable_name(topic: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(topic.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("ferrofaas-{hex}")
}

/// What a topic's subscription did, for the API and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicStats {
    /// Messages received.
    pub events: u64,
    /// Calls stored (one per function per message).
    pub dispatched: u64,
    /// Calls found stored already (a redelivered message).
    pub duplicates: u64,
    /// Messages whose calls could not be stored (handed back to the broker).
    pub failed: u64,
    pub last_event: Option<Timestamp>,
    /// Seconds from the message's time to its calls stored.
    pub last_lag_secs: f64,
    /// Why the subscription is down, while it is.
    pub last_error: Option<String>,
    pub subscribed: bool,
}

/// The topics functions name and who delivers them: (broker index, topic)
/// -> each function that wants it, with its reply topic.
type Wanted = BTreeMap<(usize, String), HashMap<FunctionRef, Option<String>>>;

/// A function with triggers, as [`Topics::update`] follows them.
pub struct Subscriber {
    pub function: FunctionRef,
    pub topics: Vec<String>,
    pub reply: Option<String>,
}

/// The subscriptions of every broker, kept in line with the functions.
pub struct Topics {
    brokers: Vec<Arc<dyn Broker>>,
    queue: Arc<dyn Queue>,
    /// (broker index, topic) -> the functions that want it; read by the
    /// subscription tasks for each message.
    wanted: Arc<Mutex<Wanted>>,
    tasks: Mutex<HashMap<(usize, String), tokio::task::JoinHandle<()>>>,
    stats: Arc<Mutex<BTreeMap<(String, String), TopicStats>>>,
}

impl Topics {
    pub fn new(brokers: Vec<Arc<dyn Broker>>, queue: Arc<dyn Queue>) -> Topics {
        Topics { brokers, queue, wanted: Arc::default(), tasks: Mutex::default(), stats: Arc::default() }
    }

    /// The connectors switched on.
    pub fn brokers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.brokers.iter().map(|b| b.name())
    }

    /// The brokers that can `verb` `topic` by `check`: the one its prefix
    /// names, else all that take it; or why none can.
    fn able(
        &self,
        topic: &str,
        verb: &str,
        check: impl Fn(&dyn Broker, &str) -> Result<(), String>,
    ) -> Result<Vec<usize>, String> {
        if let Some((prefix, rest)) = topic.split_once(':') {
            if let Some(i) = self.brokers.iter().position(|b| b.name() == prefix) {
                return check(&*self.brokers[i], rest)
                    .map(|()| vec![i])
                    .map_err(|why| format!("{prefix}: {why}"));
            }
            if CONNECTOR_NAMES.contains(&prefix) {
                let on: Vec<&str> = self.brokers().collect();
                return Err(format!(
                    "topic {topic:?}: connector {prefix} is not switched on in this gateway (on: {})",
                    if on.is_empty() { "none".to_owned() } else { on.join(", ") }
                ));
            }
        }
        if self.brokers.is_empty() {
            return Err(format!(
                "no connector is switched on to {verb} topic {topic:?} (faas serve --connector nats=nats://...)"
            ));
        }
        let mut why = Vec::new();
        let able: Vec<usize> = (0..self.brokers.len())
            .filter(|&i| match check(&*self.brokers[i], topic) {
                Ok(()) => true,
                Err(e) => {
                    why.push(format!("{}: {e}", self.brokers[i].name()));
                    false
                }
            })
            .collect();
        if able.is_empty() {
            return Err(format!("no connector can {verb} topic {topic:?} ({})", why.join("; ")));
        }
        Ok(able)
    }

    /// Which brokers deliver `topic` (its prefix, else all that take it),
    /// or why none does.
    pub fn deliverers(&self, topic: &str) -> Result<Vec<usize>, String> {
        self.able(topic, "subscribe to", |b, t| b.check_topic(t))
    }

    /// The connectors that deliver `topic`, each with the topic as it
    /// subscribes to it.
    pub fn routes_of(&self, topic: &str) -> Vec<(String, String)> {
        let Ok(brokers) = self.deliverers(topic) else { return Vec::new() };
        brokers
            .into_iter()
            .map(|i| (self.brokers[i].name().to_owned(), self.bare(i, topic).to_owned()))
            .collect()
    }

    /// Which broker publishes to `topic`: the one its prefix names, else
    /// `via` (the connector a call's event came by) if it can, else the
    /// first that can; or why none can.
    pub fn publisher(&self, topic: &str, via: Option<&str>) -> Result<usize, String> {
        let able = self.able(topic, "publish to", |b, t| b.check_reply(t))?;
        Ok(*able.iter().find(|&&i| Some(self.brokers[i].name()) == via).unwrap_or(&able[0]))
    }

    /// Publishes a call's answer to its reply topic (see [`Topics::publisher`]).
    pub async fn publish(
        &self,
        topic: &str,
        via: Option<&str>,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<(), String> {
        let i = self.publisher(topic, via)?;
        self.brokers[i].publish(self.bare(i, topic), headers, body).await
    }

    /// The topic as its broker sees it (without a prefix naming it).
    fn bare<'a>(&self, i: usize, topic: &'a str) -> &'a str {
        topic.strip_prefix(self.brokers[i].name()).and_then(|t| t.strip_prefix(':')).unwrap_or(topic)
    }

    /// Subscribes to what `functions` name, and ends what none names now.
    pub fn update(&self, functions: &[Subscriber]) {
        let mut wanted = Wanted::new();
        for Subscriber { function, topics, reply } in functions {
            for topic in topics {
                let Ok(brokers) = self.deliverers(topic) else { continue };
                for i in brokers {
                    let key = (i, self.bare(i, topic).to_owned());
                    wanted.entry(key).or_default().insert(function.clone(), reply.clone());
                }
            }
        }
        let keys: HashSet<(usize, String)> = wanted.keys().cloned().collect();
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = wanted;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|key, task| {
            let keep = keys.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
                let name = (self.brokers[key.0].name().to_owned(), key.1.clone());
                self.stats.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
            }
            keep
        });
        for key in keys {
            if tasks.contains_key(&key) {
                continue;
            }
            let subscription = Subscription {
                broker: Arc::clone(&self.brokers[key.0]),
                key: key.clone(),
                queue: Arc::clone(&self.queue),
                wanted: Arc::clone(&self.wanted),
                stats: Arc::clone(&self.stats),
            };
            tasks.insert(key, tokio::spawn(subscription.run()));
        }
    }

    /// What `connector`'s subscription of `topic` did, if there is one.
    pub fn stats_of(&self, connector: &str, topic: &str) -> Option<TopicStats> {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.get(&(connector.to_owned(), topic.to_owned())).cloned()
    }

    /// Each (connector, topic) subscribed and its figures.
    pub fn stats(&self) -> Vec<((String, String), TopicStats)> {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Ends every subscription.
    pub fn stop(&self) {
        for (_, task) in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            task.abort();
        }
    }
}

impl crate::Connectors for Option<&Topics> {
    fn subscribes(&self, topic: &str) -> Result<(), String> {
        match self {
            Some(t) => t.deliverers(topic).map(|_| ()),
            None => Err(format!(
                "no connector subscribes to topic {topic:?}: switch one on (faas serve --connector nats=nats://...)"
            )),
        }
    }

    fn publishes(&self, topic: &str) -> Result<(), String> {
        match self {
            Some(t) => t.publisher(topic, None).map(|_| ()),
            None => Err(format!(
                "no connector publishes to topic {topic:?}: switch one on (faas serve --connector nats=nats://...)"
            )),
        }
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Subscription {
    broker: Arc<dyn Broker>,
    key: (usize, String),
    queue: Arc<dyn Queue>,
    wanted: Arc<Mutex<Wanted>>,
    stats: Arc<Mutex<BTreeMap<(String, String), TopicStats>>>,
}

impl Subscription {
    fn note(&self, change: impl FnOnce(&mut TopicStats)) {
        let name = (self.broker.name().to_owned(), self.key.1.clone());
        change(self.stats.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_default());
    }

    async fn run(self) {
        let topic = self.key.1.clone();
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut events = match self.broker.subscribe(&topic).await {
                Ok(events) => {
                    tracing::info!(connector = self.broker.name(), %topic, "subscribed");
                    self.note(|s| {
                        s.subscribed = true;
                        s.last_error = None;
                    });
                    backoff = Duration::from_secs(1);
                    events
                }
                Err(why) => {
                    tracing::warn!(connector = self.broker.name(), %topic, error = %why, ?backoff, "could not subscribe; trying again");
                    self.note(|s| {
                        s.subscribed = false;
                        s.last_error = Some(why);
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            // Up to IN_FLIGHT messages stored at once, so that their
            // calls share the queue's commits (fsyncs).
            let mut storing = futures_util::stream::FuturesUnordered::new();
            loop {
                tokio::select! {
                    Some(()) = futures_util::StreamExt::next(&mut storing), if !storing.is_empty() => {}
                    event = events.recv(), if storing.len() < IN_FLIGHT => match event {
                        Some(event) => storing.push(self.deliver(event)),
                        None => break,
                    },
                }
            }
            while futures_util::StreamExt::next(&mut storing).await.is_some() {}
            tracing::warn!(connector = self.broker.name(), %topic, "the subscription ended; subscribing again");
            self.note(|s| {
                s.subscribed = false;
                s.last_error = Some("the subscription ended (the broker went away?)".to_owned());
            });
            tokio::time::sleep(backoff).await;
        }
    }

    /// One call per function that wants the topic, then the ack.
    async fn deliver(&self, mut event: Event) {
        let connector = self.broker.name();
        let header =
            |name: &str| event.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        // A loop of replies: acknowledged, and it triggers nothing more.
        let hops = header(crate::X_HOPS).and_then(|h| h.trim().parse::<u32>().ok()).unwrap_or(0);
        if hops >= crate::MAX_HOPS {
            tracing::warn!(connector, topic = %self.key.1, hops, "a message {hops} replies deep triggers nothing (a loop?)");
            if let Some(ack) = event.ack.take() {
                let _ = ack.send(true);
            }
            self.note(|s| {
                s.events += 1;
                s.failed += 1;
                s.last_error = Some(format!(
                    "a message {hops} replies deep was dropped (functions replying in a loop?)"
                ));
            });
            return;
        }
        // The message's own reply topic, on the connector it came by.
        let asked = header(crate::X_REPLY_TOPIC).map(|t| t.trim().to_owned()).filter(|t| {
            let ok = self.broker.check_reply(t);
            if let Err(why) = &ok {
                tracing::warn!(connector, topic = %self.key.1, "the message's {}: {why}; not used", crate::X_REPLY_TOPIC);
            }
            ok.is_ok()
        });
        let functions: Vec<(FunctionRef, Option<String>)> = {
            let wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            wanted
                .get(&self.key)
                .map(|f| f.iter().map(|(f, r)| (f.clone(), r.clone())).collect())
                .unwrap_or_default()
        };
        let (mut stored, mut known, mut failed) = (0u64, 0u64, false);
        for (function, reply) in &functions {
            let mut call = crate::event_call(
                connector,
                &event.subject,
                function,
                &event.id,
                event.time,
                event.body.clone(),
                event.headers.clone(),
            );
            call.reply = match &asked {
                Some(topic) => Some(format!("{connector}:{topic}")),
                None => reply.clone(),
            };
            match self.queue.enqueue(call).await {
                Ok(()) => stored += 1,
                Err(QueueError::Exists(_)) => known += 1,
                Err(e) => {
                    tracing::warn!(connector, topic = %self.key.1, function = %function.name, error = %e, "an event's call could not be stored; the broker keeps it");
                    failed = true;
                }
            }
        }
        if let Some(ack) = event.ack.take() {
            let _ = ack.send(!failed);
        }
        let lag = Timestamp::now().duration_since(event.time).as_secs_f64().max(0.0);
        self.note(|s| {
            s.events += 1;
            s.dispatched += stored;
            s.duplicates += known;
            s.last_event = Some(event.time);
            s.last_lag_secs = lag;
            if failed {
                s.failed += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Memory;

    /// A broker whose subscriptions the test feeds; it takes topics
    /// starting with its name and publishes to none with a `*`.
    struct Fake {
        name: &'static str,
        feed: Mutex<Option<mpsc::Sender<Event>>>,
    }

    #[async_trait]
    impl Broker for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn check_topic(&self, topic: &str) -> Result<(), String> {
            if topic.starts_with(self.name) { Ok(()) } else { Err(format!("not {}", self.name)) }
        }
        async fn subscribe(&self, _: &str) -> Result<mpsc::Receiver<Event>, String> {
            let (tx, rx) = mpsc::channel(8);
            *self.feed.lock().unwrap() = Some(tx);
            Ok(rx)
        }
        fn check_reply(&self, topic: &str) -> Result<(), String> {
            if topic.contains('*') { Err("no wildcards".into()) } else { Ok(()) }
        }
        async fn publish(&self, _: &str, _: &[(String, String)], _: Bytes) -> Result<(), String> {
            Ok(())
        }
    }

    fn fake(name: &'static str) -> Arc<Fake> {
        Arc::new(Fake { name, feed: Mutex::new(None) })
    }

    fn event(id: &str, headers: &[(&str, &str)]) -> (Event, oneshot::Receiver<bool>) {
        let (ack, stored) = oneshot::channel();
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let event = Event {
            id: id.into(),
            subject: "a.x".into(),
            time: Timestamp::now(),
            body: Bytes::new(),
            headers,
            ack: Some(ack),
        };
        (event, stored)
    }

    #[test]
    fn a_reply_goes_by_its_prefix_else_the_connector_it_came_by() {
        let topics = Topics::new(vec![fake("a"), fake("b")], Arc::new(Memory::default()));
        assert_eq!(topics.publisher("b:replies", None), Ok(1));
        assert_eq!(topics.publisher("replies", Some("b")), Ok(1));
        assert_eq!(topics.publisher("replies", None), Ok(0));
        assert!(topics.publisher("replies.*", None).unwrap_err().contains("no wildcards"));
        assert!(topics.publisher("kafka:replies", None).unwrap_err().contains("not switched on"));
        assert_eq!(topics.deliverers("b.orders"), Ok(vec![1]));
        assert!(topics.deliverers("c.orders").unwrap_err().contains("no connector can subscribe to"));
    }

    #[tokio::test]
    async fn a_message_becomes_a_call_per_function_and_a_loop_ends() {
        let broker = fake("a");
        let queue = Arc::new(Memory::default());
        let topics = Topics::new(vec![broker.clone()], queue.clone());
        let f = |name: &str| FunctionRef { name: name.into(), namespace: "openfaas-fn".into() };
        topics.update(&[
            Subscriber { function: f("one"), topics: vec!["a.x".into()], reply: Some("replies.one".into()) },
            Subscriber { function: f("two"), topics: vec!["a.x".into()], reply: None },
        ]);
        let feed = loop {
            if let Some(feed) = broker.feed.lock().unwrap().clone() {
                break feed;
            }
            tokio::task::yield_now().await;
        };
        // The annotation's reply topic; the platform's headers not taken
        // from the message.
        let (e, stored) = event("m1", &[("X-Call-Id", "forged"), ("X-Order", "7")]);
        feed.send(e).await.unwrap();
        assert_eq!(stored.await, Ok(true));
        // The message's own X-Reply-Topic, on the connector it came by.
        let (e, stored) = event("m2", &[("X-Reply-Topic", "asked")]);
        feed.send(e).await.unwrap();
        assert_eq!(stored.await, Ok(true));
        // 8 replies deep: acknowledged, no call.
        let (e, stored) = event("m3", &[(crate::X_HOPS, "8")]);
        feed.send(e).await.unwrap();
        assert_eq!(stored.await, Ok(true));

        let calls = queue.calls.lock().unwrap().clone();
        let of =
            |id: &str| calls.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("{id}: {:?}", queue.ids()));
        assert_eq!(of("a-one.openfaas-fn-m1").reply.as_deref(), Some("replies.one"));
        assert_eq!(of("a-two.openfaas-fn-m1").reply, None);
        let headers = &of("a-one.openfaas-fn-m1").headers;
        assert!(headers.contains(&("X-Order".into(), "7".into())), "{headers:?}");
        assert!(!headers.iter().any(|(k, v)| k == "X-Call-Id" || v == "forged"), "{headers:?}");
        for function in ["one", "two"] {
            assert_eq!(of(&format!("a-{function}.openfaas-fn-m2")).reply.as_deref(), Some("a:asked"));
        }
        assert_eq!(calls.len(), 4, "{:?}", queue.ids());
        let stats = topics.stats_of("a", "a.x").unwrap();
        assert!(stats.last_error.unwrap().contains("loop") && stats.failed == 1);
    }
}
