//! The MQTT connector (3.1.1, as Mosquitto speaks it): a function's topic
//! is a topic filter (`sensors/+/temp`, `sensors/#`).
//!
//! Each topic is a connection of its own with a persistent session
//! (client id `ferrofaas-<hash of the topic>`, clean session off), QoS 1,
//! and acknowledgements sent only once the calls are stored: what is
//! published with QoS 1 while the gateway is down is kept by the broker
//! for the session and delivered when it is back; a message whose calls
//! could not be stored is not acknowledged, and the broker sends it again
//! when the connection is made again. QoS 0 messages are delivered at most
//! once, as MQTT means them. MQTT gives messages no id: a message sent
//! again (the gateway died between storing and acknowledging) is a second
//! call (at least once). Several gateways on one broker share the session
//! name: run the MQTT connector on one of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use crate::broker::{Broker, Event};

/// How long connecting may take before the subscription is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct MqttBroker {
    url: String,
    host: String,
    port: u16,
    counter: std::sync::Arc<AtomicU64>,
}

impl MqttBroker {
    /// `mqtt://host[:port]` (1883 by default).
    pub fn new(url: &str) -> Result<MqttBroker, String> {
        let rest = url.strip_prefix("mqtt://").ok_or_else(|| format!("{url:?}: mqtt://host:port"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url:?}: the port is a number"))?),
            None => (rest, 1883),
        };
        if host.is_empty() || host.contains(['/', '@']) {
            return Err(format!("{url:?}: mqtt://host:port"));
        }
        Ok(MqttBroker { url: url.to_owned(), host: host.to_owned(), port, counter: Default::default() })
    }
}

#[async_trait]
impl Broker for MqttBroker {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn check_topic(&self, topic: &str) -> Result<(), String> {
        if topic.is_empty() || topic.len() > 65535 || topic.contains('\0') {
            return Err(format!("topic filter {topic:?} is empty or too long"));
        }
        // The broker's own ($SYS/...).
        if topic.starts_with('$') {
            return Err(format!("topic filter {topic:?}: $... topics are the broker's own"));
        }
        let levels: Vec<&str> = topic.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if (level.contains('+') && *level != "+") || (level.contains('#') && *level != "#") {
                return Err(format!("topic filter {topic:?}: + and # are whole levels"));
            }
            if *level == "#" && i + 1 != levels.len() {
                return Err(format!("topic filter {topic:?}: # is the last level only"));
            }
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<Event>, String> {
        let mut options = MqttOptions::new(crate::broker::durable_name(topic), &self.host, self.port);
        options.set_keep_alive(Duration::from_secs(5)).set_clean_session(false).set_manual_acks(true);
        let (client, mut events) = AsyncClient::new(options, 64);
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| format!("subscribing to {topic}: {e}"))?;
        // Connected and subscribed, or why not. What the session kept
        // comes right after the connection, maybe before the SUBACK.
        let mut early = Vec::new();
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match events.poll().await {
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => return Ok(()),
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => early.push(p),
                    Ok(_) => {}
                    Err(e) => return Err(format!("not connected to MQTT at {}: {e}", self.url)),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("not connected to MQTT at {}: no answer", self.url)));
        subscribed?;
        let (tx, rx) = mpsc::channel(64);
        let counter = self.counter.clone();
        let base = Timestamp::now().as_nanosecond();
        // Unacknowledged, the broker sends it again on the next connection.
        let acks = crate::broker::acknowledger(move |publish: rumqttc::Publish, stored| {
            let client = client.clone();
            async move { !stored || client.ack(&publish).await.is_ok() }
        });
        tokio::spawn(async move {
            let mut early = early.into_iter();
            loop {
                let publish = match early.next() {
                    Some(p) => p,
                    None => match events.poll().await {
                        Ok(MqttEvent::Incoming(Packet::Publish(p))) => p,
                        Ok(_) => continue,
                        // The subscription ends; `Topics` makes it again.
                        Err(_) => break,
                    },
                };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (ack, stored) = oneshot::channel();
                let event = Event {
                    id: format!("{base}-{n}"),
                    subject: publish.topic.clone(),
                    time: Timestamp::now(),
                    body: publish.payload.clone(),
                    headers: Vec::new(),
                    ack: Some(ack),
                };
                if tx.send(event).await.is_err() || acks.send((stored, publish)).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    fn check_reply(&self, topic: &str) -> Result<(), String> {
        self.check_topic(topic)?;
        if topic.contains(['+', '#']) {
            return Err(format!("topic {topic:?}: a reply goes to one topic, without + or #"));
        }
        Ok(())
    }

    /// At QoS 1 on a connection of its own, done when the broker
    /// acknowledges it (MQTT 3.1.1 has no headers: the answer alone).
    async fn publish(&self, topic: &str, _headers: &[(String, String)], body: Bytes) -> Result<(), String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("ferrofaas-reply-{}-{n}", Timestamp::now().as_nanosecond());
        let mut options = MqttOptions::new(id, &self.host, self.port);
        options.set_keep_alive(Duration::from_secs(5)).set_clean_session(true);
        let (client, mut events) = AsyncClient::new(options, 4);
        client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
            .map_err(|e| format!("publishing to {topic}: {e}"))?;
        let acked = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match events.poll().await {
                    Ok(MqttEvent::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("publishing to {topic} on MQTT at {}: {e}", self.url)),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("publishing to {topic}: MQTT at {} did not acknowledge", self.url)));
        let _ = client.try_disconnect();
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_of_functions() {
        let b = MqttBroker::new("mqtt://127.0.0.1:1883").unwrap();
        for ok in ["sensors", "sensors/+/temp", "sensors/#", "#"] {
            assert_eq!(b.check_topic(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("sensors/#/temp", "last level only"),
            ("sensors/te+mp", "whole levels"),
            ("$SYS/#", "broker's own"),
            ("", "empty"),
        ] {
            assert!(b.check_topic(bad).unwrap_err().contains(says), "{bad}");
        }
        assert!(MqttBroker::new("tcp://x:1").is_err());
        assert!(MqttBroker::new("mqtt://x:port").is_err());
        assert_eq!(MqttBroker::new("mqtt://broker").unwrap().port, 1883);
    }
}
