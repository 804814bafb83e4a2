//! Functions' triggers in the gateway: their annotations checked at deploy
//! (a wrong one is a 400 naming it); the schedule connector, which reads
//! the functions from the provider and fires schedules through the queue;
//! and the brokers' subscriptions (`ferrofaas_triggers::broker::Topics`),
//! kept in line with the same reading of the functions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferrofaas_provider::Provider;
use ferrofaas_queue::Queue;
use ferrofaas_triggers::Triggers;
use ferrofaas_triggers::broker::{Broker, Subscriber, TopicStats, Topics};
use ferrofaas_triggers::schedule::{Functions, Scheduled, Scheduler, TriggerStats};
use ferrofaas_types::{FunctionRef, InvalidDeployment, TriggerStatus};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Checks a deployment's trigger annotations against what this gateway
/// runs (`schedules`: a queue for events to go through, and its brokers).
pub fn check(
    annotations: &BTreeMap<String, String>,
    schedules: Option<&Schedules>,
) -> Result<Triggers, InvalidDeployment> {
    let topics = schedules.and_then(|s| s.topics.as_deref());
    let triggers = Triggers::of(annotations, &topics)?;
    if triggers.schedule.is_some() && schedules.is_none() {
        return Err(InvalidDeployment {
            field: format!("annotations.{}", ferrofaas_triggers::TOPIC),
            message:
                "schedules fire through the queue of asynchronous calls, which this gateway runs without"
                    .to_owned(),
        });
    }
    Ok(triggers)
}

/// The triggers of a gateway with a queue: schedules, and the brokers
/// switched on.
pub struct Schedules {
    wake: Arc<Notify>,
    stats: Arc<Mutex<HashMap<FunctionRef, TriggerStats>>>,
    scheduler: Mutex<Option<Scheduler>>,
    topics: Option<Arc<Topics>>,
}

impl Schedules {
    pub fn new(
        queue: &Arc<dyn Queue>,
        provider: &Arc<dyn Provider>,
        brokers: Vec<Arc<dyn Broker>>,
    ) -> Schedules {
        let topics = (!brokers.is_empty()).then(|| Arc::new(Topics::new(brokers, Arc::clone(queue))));
        let functions = ProviderFunctions { provider: Arc::clone(provider), topics: topics.clone() };
        let scheduler = Scheduler::new(Arc::clone(queue), Arc::new(functions));
        Schedules {
            wake: scheduler.wake(),
            stats: scheduler.stats(),
            scheduler: Mutex::new(Some(scheduler)),
            topics,
        }
    }

    /// A function's topics and what their subscriptions did (one topic may
    /// be delivered by several brokers).
    pub fn topics_of(&self, annotations: &BTreeMap<String, String>) -> Vec<TriggerStatus> {
        let Some(topics) = &self.topics else { return Vec::new() };
        let Ok(triggers) = Triggers::of(annotations, &Some(topics.as_ref())) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for topic in &triggers.topics {
            for (connector, bare) in topics.routes_of(topic) {
                let s = topics.stats_of(&connector, &bare).unwrap_or_default();
                out.push(TriggerStatus {
                    connector,
                    topic: bare,
                    schedule: None,
                    events: s.events,
                    dispatched: s.dispatched,
                    duplicates: s.duplicates,
                    failed: s.failed,
                    last_event: s.last_event.map(|t| t.to_string()),
                    next_event: None,
                    lag_seconds: s.last_lag_secs,
                    last_error: s
                        .last_error
                        .clone()
                        .or_else(|| (!s.subscribed).then(|| "not subscribed yet".to_owned())),
                });
            }
        }
        out
    }

    /// Each subscribed (connector, topic) and what it did.
    pub fn topic_stats(&self) -> Vec<((String, String), TopicStats)> {
        self.topics.as_ref().map(|t| t.stats()).unwrap_or_default()
    }

    /// Publishes a triggered call's answer to its reply topic.
    pub async fn publish(
        &self,
        topic: &str,
        via: Option<&str>,
        headers: &[(String, String)],
        body: bytes::Bytes,
    ) -> Result<(), String> {
        match &self.topics {
            Some(topics) => topics.publish(topic, via, headers, body).await,
            None => Err(format!("no connector publishes to topic {topic:?} in this gateway")),
        }
    }

    /// Reads the functions again now (a deploy, an update, a removal).
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// What a function's schedule has done, as the API shows it.
    pub fn status_of(&self, function: &FunctionRef) -> Option<TriggerStatus> {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.get(function).map(status)
    }

    /// Every scheduled function's figures.
    pub fn all_stats(&self) -> Vec<(FunctionRef, TriggerStats)> {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.iter().map(|(f, s)| (f.clone(), s.clone())).collect()
    }

    /// Fires schedules until `shutdown` (once; later calls do nothing).
    pub fn start(&self, shutdown: CancellationToken) {
        let Some(scheduler) = self.scheduler.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let topics = self.topics.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = scheduler.run() => {}
                _ = shutdown.cancelled() => {}
            }
            if let Some(topics) = topics {
                topics.stop();
            }
        });
    }
}

fn status(s: &TriggerStats) -> TriggerStatus {
    TriggerStatus {
        connector: ferrofaas_triggers::schedule::CONNECTOR.to_owned(),
        topic: ferrofaas_triggers::CRON_TOPIC.to_owned(),
        schedule: Some(s.schedule.clone()),
        events: s.events,
        dispatched: s.dispatched,
        duplicates: s.duplicates,
        failed: s.failed,
        last_event: s.last_event.map(|t| t.to_string()),
        next_event: s.next_event.map(|t| t.to_string()),
        lag_seconds: s.last_lag_secs,
        last_error: s.last_error.clone(),
    }
}

/// The functions with triggers, as the provider lists them: the scheduled
/// ones for the schedule connector, and (the same reading) the topics the
/// brokers' subscriptions follow.
struct ProviderFunctions {
    provider: Arc<dyn Provider>,
    topics: Option<Arc<Topics>>,
}

#[async_trait]
impl Functions for ProviderFunctions {
    async fn scheduled(&self) -> Result<Vec<Scheduled>, String> {
        let mut found = Vec::new();
        let mut subscribed = Vec::new();
        for namespace in self.provider.namespaces().await.map_err(|e| e.to_string())? {
            for f in self.provider.list(&namespace).await.map_err(|e| e.to_string())? {
                // Refused at deploy when wrong; one deployed before that
                // rule (or for a broker since switched off) is left out.
                let topics = self.topics.as_deref();
                let Ok(triggers) = Triggers::of(&f.annotations, &topics) else {
                    continue;
                };
                let function = FunctionRef { name: f.name.clone(), namespace: f.namespace.clone() };
                let reply = triggers.reply;
                if !triggers.topics.is_empty() {
                    let topics = triggers.topics;
                    subscribed.push(Subscriber { function: function.clone(), topics, reply: reply.clone() });
                }
                if let Some(schedule) = triggers.schedule {
                    found.push(Scheduled { function, schedule, since: f.created_at.parse().ok(), reply });
                }
            }
        }
        if let Some(topics) = &self.topics {
            topics.update(&subscribed);
        }
        Ok(found)
    }
}
