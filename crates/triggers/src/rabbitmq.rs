//! The RabbitMQ connector (AMQP 0-9-1): a function's topic is a binding
//! key (`orders.*`, `orders.#`) on a topic exchange, `amq.topic` unless
//! the connector's address names another (`amqp://host/vhost?exchange=events`,
//! declared durable if it is not there).
//!
//! Each topic has a durable queue of its own (`ferrofaas-<hash of the
//! topic>`, the same in every gateway), bound to the exchange with the
//! topic. Messages are taken with manual acknowledgement, acknowledged once
//! their calls are stored and handed back (`basic.nack`, requeued) if they
//! could not be: what is published while no gateway runs waits in the
//! queue, and a message a dead gateway held goes to the next consumer.
//! Several gateways consume from the same queue, each message to one. A
//! message's `message-id` property is its event id, so that a message
//! delivered twice is one call; a message without one is a call each time
//! it is delivered (at least once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use jiff::Timestamp;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::broker::{Broker, Event};

/// How long connecting may take before the subscription is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds between heartbeats, so that a broker that went away is noticed.
const HEARTBEAT: u16 = 5;
/// Messages a subscription holds unacknowledged on their way to the queue.
const PREFETCH: u16 = 64;
/// The exchange topics are bound on unless the address names another.
pub const DEFAULT_EXCHANGE: &str = "amq.topic";

pub struct RabbitBroker {
    /// The address without its password, for messages.
    shown: String,
    uri: AMQPUri,
    exchange: String,
    counter: AtomicU64,
    /// The connection replies are published on (confirmed), made when the
    /// first is, made again after it fails.
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitBroker {
    /// `amqp://[user:password@]host[:port][/vhost][?exchange=name]`
    /// (`guest:guest`, port 5672 and vhost `/` by default).
    pub fn new(url: &str) -> Result<RabbitBroker, String> {
        if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
            return Err("amqp://[user:password@]host[:port][/vhost][?exchange=name]".to_owned());
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut exchange = DEFAULT_EXCHANGE.to_owned();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("exchange", name)) => exchange = name.to_owned(),
                _ => rest.push(pair),
            }
        }
        if exchange.is_empty()
            || exchange.len() > 255
            || !exchange.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(format!("exchange {exchange:?}: letters, digits, - _ . : only"));
        }
        // `amqp://host/` would be the vhost "" to AMQP: the default is meant.
        let base = match base.split_once("://").map(|(_, r)| r.split_once('/')) {
            Some(Some((_, ""))) => base.trim_end_matches('/'),
            _ => base,
        };
        let with_query = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let mut uri: AMQPUri = with_query.parse().map_err(|e| format!("the RabbitMQ address: {e}"))?;
        uri.query.heartbeat.get_or_insert(HEARTBEAT);
        uri.query.connection_timeout.get_or_insert(CONNECT_TIMEOUT.as_millis() as u64);
        let shown = format!(
            "amqp://{}:{}/{}",
            uri.authority.host,
            uri.authority.port,
            if uri.vhost == "/" { "" } else { &uri.vhost }
        );
        Ok(RabbitBroker { shown, uri, exchange, counter: AtomicU64::new(0), publisher: Mutex::default() })
    }

    async fn connect(&self) -> Result<(Connection, Channel), String> {
        let why = |e: lapin::Error| format!("RabbitMQ at {}: {e}", self.shown);
        let connect = Connection::connect_uri(self.uri.clone(), ConnectionProperties::default());
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| format!("RabbitMQ at {}: no answer within {CONNECT_TIMEOUT:?}", self.shown))?
            .map_err(why)?;
        let channel = connection.create_channel().await.map_err(why)?;
        if self.exchange != DEFAULT_EXCHANGE {
            let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
            channel
                .exchange_declare(
                    self.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("exchange {}: {e}", self.exchange))?;
        }
        Ok((connection, channel))
    }

    /// A new id for a message with no `message-id` of its own.
    fn new_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", Timestamp::now().as_nanosecond())
    }
}

/// A binding key a function may be given: dot-separated words, `*` and `#`
/// whole words, at most 255 bytes.
pub fn check_binding_key(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 255 {
        return Err(format!("binding key {topic:?} is empty or longer than 255 bytes"));
    }
    if topic.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("binding key {topic:?}: no spaces"));
    }
    if topic.split('.').any(|w| (w.contains('*') && w != "*") || (w.contains('#') && w != "#")) {
        return Err(format!("binding key {topic:?}: * and # are whole words"));
    }
    Ok(())
}

/// The `message-id` of a message as an event id, if it has a usable one.
fn message_id(properties: &BasicProperties) -> Option<String> {
    let id = properties.message_id().as_ref()?.as_str();
    (!id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_graphic())).then(|| id.to_owned())
}

/// Its headers of text values, as HTTP headers (those that can be).
fn text_headers(properties: &BasicProperties) -> Vec<(String, String)> {
    let Some(table) = properties.headers() else { return Vec::new() };
    table
        .inner()
        .iter()
        .filter_map(|(k, v)| {
            let value = match v {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok()?,
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                _ => return None,
            };
            Some((k.as_str().to_owned(), value))
        })
        .collect()
}

#[async_trait]
impl Broker for RabbitBroker {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn check_topic(&self, topic: &str) -> Result<(), String> {
        check_binding_key(topic)
    }

    fn check_reply(&self, topic: &str) -> Result<(), String> {
        check_binding_key(topic)?;
        if topic.split('.').any(|w| w == "*" || w == "#") {
            return Err(format!("routing key {topic:?}: a reply goes to one key, without * or #"));
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<Event>, String> {
        let (connection, channel) = self.connect().await?;
        let queue = crate::broker::durable_name(topic);
        let declare = QueueDeclareOptions { durable: true, ..Default::default() };
        channel
            .queue_declare(queue.as_str().into(), declare, FieldTable::default())
            .await
            .map_err(|e| format!("queue {queue}: {e}"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                self.exchange.as_str().into(),
                topic.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("binding queue {queue} to {} with {topic}: {e}", self.exchange))?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| format!("queue {queue}: {e}"))?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("consuming from queue {queue}: {e}"))?;
        let (tx, rx) = mpsc::channel(PREFETCH as usize);
        let fallback_ids = self.new_id();
        let acks = crate::broker::acknowledger(|delivery: lapin::message::Delivery, stored| async move {
            let done = match stored {
                true => delivery.ack(BasicAckOptions::default()).await,
                // Back in the queue, for this gateway or another.
                false => delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await,
            };
            done.is_ok()
        });
        tokio::spawn(async move {
            // Held for as long as the subscription runs.
            let _connection = connection;
            let mut n = 0u64;
            while let Some(Ok(mut delivery)) = consumer.next().await {
                n += 1;
                let (ack, stored) = oneshot::channel();
                let time = delivery
                    .properties
                    .timestamp()
                    .and_then(|secs| Timestamp::from_second(secs as i64).ok())
                    .unwrap_or_else(Timestamp::now);
                let event = Event {
                    id: message_id(&delivery.properties).unwrap_or_else(|| format!("{fallback_ids}.{n}")),
                    subject: delivery.routing_key.as_str().to_owned(),
                    time,
                    body: Bytes::from(std::mem::take(&mut delivery.data)),
                    headers: text_headers(&delivery.properties),
                    ack: Some(ack),
                };
                if tx.send(event).await.is_err() || acks.send((stored, delivery)).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    async fn publish(&self, topic: &str, headers: &[(String, String)], body: Bytes) -> Result<(), String> {
        let mut held = self.publisher.lock().await;
        if held.as_ref().is_none_or(|(c, _)| !c.status().connected()) {
            let (connection, channel) = self.connect().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| format!("RabbitMQ at {}: {e}", self.shown))?;
            *held = Some((connection, channel));
        }
        let Some((_, channel)) = held.as_ref() else { return Err("no connection".to_owned()) };
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(ShortString::from(k.as_str()), AMQPValue::LongString(LongString::from(v.as_str())));
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(self.new_id().into())
            .with_timestamp(Timestamp::now().as_second() as u64)
            .with_headers(table);
        let sent = async {
            let confirm = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    topic.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?;
            confirm.await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, sent).await {
            Ok(Ok(Confirmation::Ack(_))) | Ok(Ok(Confirmation::NotRequested)) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(format!("RabbitMQ at {} refused the message", self.shown)),
            Ok(Err(e)) => {
                *held = None;
                Err(format!("publishing to {topic} on RabbitMQ at {}: {e}", self.shown))
            }
            Err(_) => {
                *held = None;
                Err(format!("publishing to {topic}: RabbitMQ at {} did not confirm", self.shown))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_keys_of_functions() {
        for ok in ["orders", "orders.new", "orders.*", "orders.#", "#", "*.paid"] {
            assert_eq!(check_binding_key(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [("orders.n*w", "whole words"), ("orders #", "no spaces"), ("", "empty")] {
            assert!(check_binding_key(bad).unwrap_err().contains(says), "{bad}");
        }
        let b = RabbitBroker::new("amqp://127.0.0.1").unwrap();
        assert!(b.check_reply("replies.orders").is_ok());
        assert!(b.check_reply("replies.*").unwrap_err().contains("one key"));
    }

    #[test]
    fn addresses() {
        let b = RabbitBroker::new("amqp://u:secret@mq:5673/prod?exchange=events&heartbeat=9").unwrap();
        assert_eq!((b.exchange.as_str(), b.uri.vhost.as_str()), ("events", "prod"));
        assert_eq!(b.uri.query.heartbeat, Some(9));
        assert!(!b.shown.contains("secret"), "{}", b.shown);
        let b = RabbitBroker::new("amqp://mq/").unwrap();
        assert_eq!((b.exchange.as_str(), b.uri.vhost.as_str()), (DEFAULT_EXCHANGE, "/"));
        assert_eq!(b.uri.query.heartbeat, Some(HEARTBEAT));
        assert!(RabbitBroker::new("mqtt://mq").is_err());
        assert!(RabbitBroker::new("amqp://mq?exchange=a/b").err().unwrap().contains("exchange"));
    }
}
