//! # ferrofaas-triggers
//!
//! Functions triggered by events, declared as OpenFaaS's connectors read
//! them from a function's annotations, so existing `stack.yml` files work:
//!
//! ```yaml
//!     annotations:
//!       topic: cron-function          # comma-separated topics
//!       schedule: "*/5 * * * *"       # cron, @hourly..., @every 30s
//!       com.ferrofaas.schedule.timezone: Europe/Berlin   # default UTC
//! ```
//!
//! Every event becomes an asynchronous call on the durable [`Queue`]
//! (stored before the event counts as received), run, retried and
//! dead-lettered like any `/async-function/` call, and visible by its call
//! id. [`Triggers`] reads and checks the annotations (a deployment that
//! gets them wrong is refused, naming the annotation); [`schedule`] fires
//! schedules; [`cron`] parses them.

pub mod broker;
pub mod cron;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
pub mod schedule;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;

use bytes::Bytes;
pub use ferrofaas_queue::Queue;
use ferrofaas_queue::{Call, now_ms};
use ferrofaas_types::{FunctionRef, InvalidDeployment};

/// The annotation listing a function's topics (comma-separated).
pub const TOPIC: &str = "topic";
/// The annotation holding a function's schedule.
pub const SCHEDULE: &str = "schedule";
/// The annotation naming its schedule's time zone (IANA; default UTC).
pub const TIMEZONE: &str = "com.ferrofaas.schedule.timezone";
/// The annotation naming the topic a triggered call's answer is published
/// to (`connector:topic`, or a topic a connector switched on publishes to).
pub const REPLY_TOPIC: &str = "com.ferrofaas.reply-topic";
/// The topic of schedules, as OpenFaaS's cron-connector names it.
pub const CRON_TOPIC: &str = "cron-function";

/// Headers an event's call carries to the function.
pub const X_TOPIC: &str = "X-Topic";
pub const X_CONNECTOR: &str = "X-Connector";
pub const X_MESSAGE_ID: &str = "X-Message-Id";
pub const X_EVENT_TIME: &str = "X-Event-Time";
/// A message's header asking for its call's answer on this topic (of the
/// connector it came by); it takes the place of the annotation's.
pub const X_REPLY_TOPIC: &str = "X-Reply-Topic";
/// How many answers published as replies led to this message: a reply
/// carries one more than its call's message. Past [`MAX_HOPS`] a message
/// triggers nothing (functions replying to each other's topics in a loop).
pub const X_HOPS: &str = "X-Ferrofaas-Hops";
pub const MAX_HOPS: u32 = 8;

/// What the connectors switched on can do with a topic: subscribe to it
/// (a function's `topic`), publish to it (its reply topic).
pub trait Connectors {
    fn subscribes(&self, topic: &str) -> Result<(), String>;
    fn publishes(&self, topic: &str) -> Result<(), String>;
}

/// What a function's annotations ask for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Triggers {
    /// Its topics, as listed (without `cron-function`).
    pub topics: Vec<String>,
    pub schedule: Option<cron::Schedule>,
    /// Where the answers of its triggered calls are published.
    pub reply: Option<String>,
}

impl Triggers {
    /// Reads and checks the trigger annotations. `connectors` say whether
    /// a connector subscribes to a topic (or why none of those switched on
    /// does), so that a topic nothing would deliver is refused at deploy
    /// rather than silently never firing; and the same of a reply topic.
    pub fn of(
        annotations: &BTreeMap<String, String>,
        connectors: &dyn Connectors,
    ) -> Result<Triggers, InvalidDeployment> {
        let invalid =
            |key: &str, message: String| InvalidDeployment { field: format!("annotations.{key}"), message };
        let mut topics = Vec::new();
        let mut cron = false;
        if let Some(list) = annotations.get(TOPIC) {
            for topic in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if topic.len() > 255 || topic.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        TOPIC,
                        format!("topic {topic:?}: no spaces or control characters, at most 255 bytes"),
                    ));
                }
                if topic == CRON_TOPIC {
                    cron = true;
                } else if topics.iter().any(|t| t == topic) {
                    return Err(invalid(TOPIC, format!("topic {topic:?} is listed twice")));
                } else if let Err(why) = connectors.subscribes(topic) {
                    return Err(invalid(TOPIC, why));
                } else {
                    topics.push(topic.to_owned());
                }
            }
        }
        let schedule = match (annotations.get(SCHEDULE), cron) {
            (Some(text), true) => Some(
                cron::Schedule::parse(text, annotations.get(TIMEZONE).map(String::as_str))
                    .map_err(|why| invalid(SCHEDULE, why))?,
            ),
            (None, true) => {
                return Err(invalid(
                    TOPIC,
                    format!("topic {CRON_TOPIC} needs a schedule annotation (such as \"*/5 * * * *\")"),
                ));
            }
            (Some(_), false) => {
                return Err(invalid(SCHEDULE, format!("a schedule fires only with topic: {CRON_TOPIC}")));
            }
            (None, false) => None,
        };
        if annotations.contains_key(TIMEZONE) && schedule.is_none() {
            return Err(invalid(TIMEZONE, "a time zone needs a schedule".to_owned()));
        }
        let reply = match annotations.get(REPLY_TOPIC).map(|t| t.trim()) {
            None => None,
            Some(_) if topics.is_empty() && schedule.is_none() => {
                return Err(invalid(
                    REPLY_TOPIC,
                    "a reply topic is for triggered calls: add a topic".to_owned(),
                ));
            }
            Some(reply) if topics.iter().any(|t| t == reply) => {
                return Err(invalid(
                    REPLY_TOPIC,
                    format!("replying to {reply:?}, a topic of the function itself, would trigger it again"),
                ));
            }
            Some(reply) => {
                connectors.publishes(reply).map_err(|why| invalid(REPLY_TOPIC, why))?;
                Some(reply.to_owned())
            }
        };
        Ok(Triggers { topics, schedule, reply })
    }
}

/// The call id of an event: the connector, the function and the event's
/// own id, so that the same event stored twice (two gateways firing one
/// schedule, a broker redelivering) is one call: the queue refuses a
/// second call of a known id. Hashed when it would pass 128 characters.
pub fn event_call_id(connector: &str, function: &FunctionRef, event: &str) -> String {
    let id = format!("{connector}-{}.{}-{event}", function.name, function.namespace);
    if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
        return id;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(id.as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{connector}-{hex}")
}

/// Is `id` of the form triggered calls' ids take (`cron-…`, `nats-…`, any
/// connector's name and a dash)? A client may not choose such an id for
/// an `/async-function/` call: the queue refuses a known id, so taking
/// the id of a slot or a message ahead of it would drop the real event
/// (and run the client's body with its own `X-Topic` in its place).
pub fn is_event_call_id(id: &str) -> bool {
    event_connector(id).is_some()
}

/// The connector whose events have ids of `id`'s form (`cron`, `nats`, ...):
/// how a stored call came.
pub fn event_connector(id: &str) -> Option<&'static str> {
    let (prefix, _) = id.split_once('-')?;
    std::iter::once(&schedule::CONNECTOR)
        .chain(broker::CONNECTOR_NAMES)
        .find(|c| prefix.eq_ignore_ascii_case(c))
        .copied()
}

/// An event of `connector` on `topic` as an asynchronous call of
/// `function`: a POST of `body` to `/`, with headers naming the topic, the
/// connector, the event's id and its time.
pub fn event_call(
    connector: &str,
    topic: &str,
    function: &FunctionRef,
    event_id: &str,
    time: jiff::Timestamp,
    body: Bytes,
    mut headers: Vec<(String, String)>,
) -> Call {
    let id = event_call_id(connector, function, event_id);
    // A message's own headers go with it, those HTTP can carry and that
    // are not the platform's to set.
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "authorization",
        "cookie",
        "x-call-id",
        "x-callback-url",
        X_TOPIC,
        X_CONNECTOR,
        X_MESSAGE_ID,
        X_EVENT_TIME,
    ];
    headers.retain(|(k, v)| {
        !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            && !RESERVED.iter().any(|r| k.eq_ignore_ascii_case(r))
    });
    headers.extend([
        (X_TOPIC.to_owned(), topic.to_owned()),
        (X_CONNECTOR.to_owned(), connector.to_owned()),
        (X_MESSAGE_ID.to_owned(), event_id.to_owned()),
        (X_EVENT_TIME.to_owned(), time.to_string()),
    ]);
    Call {
        id,
        function: function.name.clone(),
        namespace: function.namespace.clone(),
        method: "POST".to_owned(),
        path: "/".to_owned(),
        headers,
        body,
        callback: None,
        reply: None,
        accepted_at: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Connectors that take topics `orders...` and publish to `replies...`.
    struct Orders;

    impl Connectors for Orders {
        fn subscribes(&self, topic: &str) -> Result<(), String> {
            match topic.starts_with("orders") {
                true => Ok(()),
                false => Err(format!("no connector subscribes to topic {topic:?}")),
            }
        }

        fn publishes(&self, topic: &str) -> Result<(), String> {
            match topic.starts_with("replies") || topic.starts_with("orders") {
                true => Ok(()),
                false => Err(format!("no connector publishes to topic {topic:?}")),
            }
        }
    }

    #[test]
    fn openfaas_annotations_read() {
        let t =
            Triggers::of(&annotations(&[("topic", "cron-function"), ("schedule", "*/5 * * * *")]), &Orders)
                .unwrap();
        assert_eq!(t.schedule.unwrap().text(), "*/5 * * * *");
        assert!(t.topics.is_empty());
        let t = Triggers::of(&annotations(&[("topic", "orders.new, orders.paid")]), &Orders).unwrap();
        assert_eq!(t.topics, ["orders.new", "orders.paid"]);
        assert_eq!(Triggers::of(&annotations(&[("other", "x")]), &Orders).unwrap(), Triggers::default());
    }

    #[test]
    fn wrong_annotations_are_named() {
        let err = |pairs: &[(&str, &str)]| Triggers::of(&annotations(pairs), &Orders).unwrap_err();
        let e = err(&[("topic", "cron-function"), ("schedule", "61 * * * *")]);
        assert_eq!(e.field, "annotations.schedule");
        assert!(e.message.contains("minute 61"), "{e}");
        assert_eq!(err(&[("topic", "cron-function")]).field, "annotations.topic");
        assert_eq!(err(&[("schedule", "@hourly")]).field, "annotations.schedule");
        let e = err(&[("topic", "payments")]);
        assert!(
            e.field == "annotations.topic"
                && e.message.contains("no connector subscribes to topic \"payments\"")
        );
        assert!(err(&[("topic", "orders.new,orders.new")]).message.contains("twice"));
        let e = err(&[("topic", "cron-function"), ("schedule", "@hourly"), (TIMEZONE, "Nowhere/Land")]);
        assert!(e.field == "annotations.schedule" && e.message.contains("unknown time zone"), "{e}");
        assert_eq!(err(&[(TIMEZONE, "UTC")]).field, format!("annotations.{TIMEZONE}"));
    }

    #[test]
    fn reply_topics() {
        let of = |pairs: &[(&str, &str)]| Triggers::of(&annotations(pairs), &Orders);
        let t = of(&[("topic", "orders.new"), (REPLY_TOPIC, "replies.orders")]).unwrap();
        assert_eq!(t.reply.as_deref(), Some("replies.orders"));
        let t =
            of(&[("topic", "cron-function"), ("schedule", "@hourly"), (REPLY_TOPIC, "replies.x")]).unwrap();
        assert_eq!(t.reply.as_deref(), Some("replies.x"));
        for (pairs, says) in [
            (&[(REPLY_TOPIC, "replies.x")][..], "for triggered calls"),
            (&[("topic", "orders.new"), (REPLY_TOPIC, "orders.new")][..], "trigger it again"),
            (&[("topic", "orders.new"), (REPLY_TOPIC, "elsewhere")][..], "no connector publishes"),
        ] {
            let e = of(pairs).unwrap_err();
            assert!(e.field == format!("annotations.{REPLY_TOPIC}") && e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn event_ids_are_known_as_such() {
        let f = FunctionRef { name: "a".repeat(63), namespace: "b".repeat(63) };
        for connector in ["cron", "nats", "mqtt", "rabbitmq", "kafka"] {
            assert!(is_event_call_id(&event_call_id(connector, &f, "1")), "{connector}");
        }
        assert!(is_event_call_id("NATS-x"));
        assert_eq!(event_connector("cron-tick.openfaas-fn-60"), Some("cron"));
        assert_eq!(event_connector("order-1"), None);
        assert!(!is_event_call_id("4f7c2e9a-0000-4000-8000-000000000000"));
        assert!(!is_event_call_id("order-1") && !is_event_call_id("nats"));
    }

    #[test]
    fn event_ids_are_bounded() {
        let f = FunctionRef { name: "a".repeat(63), namespace: "b".repeat(63) };
        let id = event_call_id("cron", &f, "1764669600");
        assert!(id.len() <= 128 && id.starts_with("cron-"), "{id}");
        assert_eq!(id, event_call_id("cron", &f, "1764669600"));
        assert_ne!(id, event_call_id("cron", &f, "1764669660"));
        let short = FunctionRef { name: "tick".into(), namespace: "openfaas-fn".into() };
        assert_eq!(event_call_id("cron", &short, "60"), "cron-tick.openfaas-fn-60");
    }
}
