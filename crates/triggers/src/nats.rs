//! The NATS connector: a function's topic is a NATS subject (wildcards `*`
//! and `>` too).
//!
//! - **A subject a JetStream stream keeps** is read through a durable pull
//!   consumer of its own (`ferrofaas-<hash of the subject>`, shared by the
//!   gateways, each message to one of them), acknowledged only once its
//!   calls are stored: messages published while no gateway runs are
//!   delivered when one starts, and one handed out to a gateway that died
//!   goes again after the ack wait. The event's id is the stream and its
//!   sequence number, so a message delivered twice is one call.
//! - **Any other subject** is a core NATS subscription, in queue group
//!   `ferrofaas` (with several gateways, each message to one): what is
//!   published while no gateway listens is not kept (that is core NATS). A message
//!   sent as a request (with a reply subject) is answered once its calls
//!   are stored, with their event id: the publisher's acknowledgement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use ferrofaas_types::address::{NatsServers, without_credentials};

use crate::broker::{Broker, Event};

/// How long a gateway may hold a JetStream message before it goes to
/// another.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages a subscription holds in memory on their way to the queue.
const BUFFER: usize = 64;

pub struct NatsBroker {
    url: String,
    client: async_nats::Client,
    js: jetstream::Context,
    counter: AtomicU64,
}

impl NatsBroker {
    /// A client of the servers at `url` (comma-separated for a cluster).
    /// A server that is down now is connected to when it comes up: the
    /// gateway starts all the same, and subscriptions wait for it.
    pub async fn connect(url: &str) -> Result<NatsBroker, String> {
        // Credentials in the URL are presented to every server; messages
        // show the address without them.
        let shown = without_credentials(url);
        let address = NatsServers::parse(url);
        let servers = address
            .servers
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the NATS address {shown:?}: {e}"))?;
        let options = async_nats::ConnectOptions::new().ping_interval(Duration::from_secs(2));
        let options = match (address.user, address.password) {
            (Some(user), Some(password)) => options.user_and_password(user, password),
            (Some(token), None) => options.token(token),
            _ => options,
        };
        let client = options
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|e| format!("connecting to NATS at {shown}: {e}"))?;
        let js = jetstream::new(client.clone());
        Ok(NatsBroker { url: shown, client, js, counter: AtomicU64::new(0) })
    }

    /// An id for a core message with none of its own (`Nats-Msg-Id`).
    fn new_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", Timestamp::now().as_nanosecond())
    }

    async fn durable(&self, stream: &str, topic: &str) -> Result<mpsc::Receiver<Event>, String> {
        let name = crate::broker::durable_name(topic);
        let stream_handle = self.js.get_stream(stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
        let consumer: consumer::PullConsumer = stream_handle
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: topic.to_owned(),
                    // From its creation on (not the stream's history).
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: BUFFER as i64 * 4,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("the durable consumer {name} of stream {stream}: {e}"))?;
        let mut messages = consumer.messages().await.map_err(|e| format!("reading stream {stream}: {e}"))?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let acks = crate::broker::acknowledger(|message: jetstream::Message, stored| async move {
            // Not stored: again in a second (the queue is full or away).
            let kind = if stored {
                jetstream::AckKind::Ack
            } else {
                jetstream::AckKind::Nak(Some(Duration::from_secs(1)))
            };
            let _ = message.ack_with(kind).await;
            true
        });
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let Ok(message) = message else { break };
                let (id, time) = match message.info() {
                    Ok(info) => (
                        format!("{}-{}", info.stream, info.stream_sequence),
                        Timestamp::from_nanosecond(info.published.unix_timestamp_nanos())
                            .unwrap_or_else(|_| Timestamp::now()),
                    ),
                    Err(_) => continue,
                };
                let (ack, stored) = oneshot::channel();
                let event = Event {
                    id,
                    subject: message.subject.to_string(),
                    time,
                    body: message.payload.clone(),
                    headers: text_headers(message.headers.as_ref()),
                    ack: Some(ack),
                };
                if tx.send(event).await.is_err() || acks.send((stored, message)).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn check_topic(&self, topic: &str) -> Result<(), String> {
        check_subject(topic)
    }

    async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<Event>, String> {
        self.subscribe_to(topic).await
    }

    fn check_reply(&self, topic: &str) -> Result<(), String> {
        check_subject(topic)?;
        if topic.split('.').any(|t| t == "*" || t == ">") {
            return Err(format!("subject {topic:?}: a reply goes to one subject, without * or >"));
        }
        Ok(())
    }

    /// To a stream that keeps the subject, acknowledged by it; else a core
    /// publish, flushed to the server.
    async fn publish(&self, topic: &str, headers: &[(String, String)], body: Bytes) -> Result<(), String> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(format!("not connected to NATS at {}", self.url));
        }
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(k.as_str(), v.as_str());
        }
        let why = |e: &dyn std::fmt::Display| format!("publishing to {topic} on NATS at {}: {e}", self.url);
        if self.js.stream_by_subject(topic).await.is_ok() {
            let ack = self.js.publish_with_headers(topic.to_owned(), map, body).await.map_err(|e| why(&e))?;
            tokio::time::timeout(ACK_WAIT, ack)
                .await
                .map_err(|_| why(&"no acknowledgement"))?
                .map_err(|e| why(&e))?;
            return Ok(());
        }
        self.client.publish_with_headers(topic.to_owned(), map, body).await.map_err(|e| why(&e))?;
        self.client.flush().await.map_err(|e| why(&e))
    }
}

/// A message's headers (each name's first value).
fn text_headers(headers: Option<&async_nats::HeaderMap>) -> Vec<(String, String)> {
    let Some(headers) = headers else { return Vec::new() };
    headers
        .iter()
        .filter_map(|(name, values)| Some((name.to_string(), values.first()?.as_str().to_owned())))
        .collect()
}

/// A subject a function may be given: well formed, and none of the
/// platform's own (the queue's `ferrofaas.>` when it shares the server),
/// NATS's (`$JS.>`, `$SYS.>`) or replies (`_INBOX.>`), which would hand a
/// function other functions' calls or the server's API. So its first
/// token is a literal.
pub fn check_subject(topic: &str) -> Result<(), String> {
    let tokens: Vec<&str> = topic.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(format!("subject {topic:?} has an empty token"));
        }
        if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("subject {topic:?}: no spaces"));
        }
        if (token.contains('*') && *token != "*") || (token.contains('>') && *token != ">") {
            return Err(format!("subject {topic:?}: * and > are whole tokens"));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err(format!("subject {topic:?}: > is the last token only"));
        }
    }
    let first = tokens[0];
    if first == "*" || first == ">" {
        return Err(format!("subject {topic:?}: its first token is a name, not a wildcard"));
    }
    if first.starts_with('$') || first == "_INBOX" || first == "ferrofaas" {
        return Err(format!(
            "subject {topic:?}: $..., _INBOX... and ferrofaas... are NATS's and the platform's own"
        ));
    }
    Ok(())
}

impl NatsBroker {
    async fn subscribe_to(&self, topic: &str) -> Result<mpsc::Receiver<Event>, String> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(format!("not connected to NATS at {}", self.url));
        }
        // A stream that keeps the subject: durably. (A wildcard is asked
        // about as it is: a stream of `orders.>` answers for `orders.*`.)
        if let Ok(stream) = self.js.stream_by_subject(topic).await {
            return self.durable(&stream, topic).await;
        }
        // A queue group: with several gateways, each message to one.
        let mut subscriber = self
            .client
            .queue_subscribe(topic.to_owned(), "ferrofaas".to_owned())
            .await
            .map_err(|e| format!("subscribing to {topic}: {e}"))?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let client = self.client.clone();
        // A request is answered with its event id once its calls are stored.
        let acks =
            crate::broker::acknowledger(move |(reply, id): (Option<async_nats::Subject>, String), stored| {
                let client = client.clone();
                async move {
                    if let (true, Some(reply)) = (stored, reply) {
                        let _ = client.publish(reply, id.into()).await;
                    }
                    true
                }
            });
        let counter_base = self.new_id();
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(message) = subscriber.next().await {
                n += 1;
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| format!("{counter_base}.{n}"));
                let (ack, stored) = oneshot::channel();
                let event = Event {
                    id: id.clone(),
                    subject: message.subject.to_string(),
                    time: Timestamp::now(),
                    body: message.payload.clone(),
                    headers: text_headers(message.headers.as_ref()),
                    ack: Some(ack),
                };
                if tx.send(event).await.is_err() || acks.send((stored, (message.reply, id))).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::check_subject;

    #[test]
    fn subjects_of_functions() {
        for ok in ["orders", "orders.new", "orders.*", "orders.>", "a.*.c"] {
            assert_eq!(check_subject(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("orders..new", "empty token"),
            ("orders.n*w", "whole tokens"),
            ("orders.>.x", "last token"),
            ("orders new", "no spaces"),
            (">", "not a wildcard"),
            ("*.calls", "not a wildcard"),
            ("ferrofaas.calls.x", "platform's own"),
            ("$JS.API.>", "platform's own"),
            ("$SYS.>", "platform's own"),
            ("_INBOX.>", "platform's own"),
        ] {
            assert!(check_subject(bad).unwrap_err().contains(says), "{bad}");
        }
    }
}
