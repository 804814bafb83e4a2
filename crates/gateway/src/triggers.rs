//! Functions' triggers in the gateway: their annotations checked at deploy
//! (a wrong one is a 400 naming it), and the schedule connector, which
//! reads the scheduled functions from the provider and fires them through
//! the queue (`ferrofaas_triggers`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferrofaas_provider::Provider;
use ferrofaas_queue::Queue;
use ferrofaas_triggers::Triggers;
use ferrofaas_triggers::schedule::{Functions, Scheduled, Scheduler, TriggerStats};
use ferrofaas_types::{FunctionRef, InvalidDeployment, TriggerStatus};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Which connector delivers a topic: none of the broker connectors is
/// built in yet, so only schedules (`cron-function`) are taken.
fn connector_of(_topic: &str) -> Option<String> {
    None
}

/// Checks a deployment's trigger annotations; `queue`: is there a queue
/// for their events to go through?
pub fn check(annotations: &BTreeMap<String, String>, queue: bool) -> Result<Triggers, InvalidDeployment> {
    let triggers = Triggers::of(annotations, &connector_of)?;
    if triggers.schedule.is_some() && !queue {
        return Err(InvalidDeployment {
            field: format!("annotations.{}", ferrofaas_triggers::TOPIC),
            message:
                "schedules fire through the queue of asynchronous calls, which this gateway runs without"
                    .to_owned(),
        });
    }
    Ok(triggers)
}

/// The schedule connector of a gateway with a queue.
pub struct Schedules {
    wake: Arc<Notify>,
    stats: Arc<Mutex<HashMap<FunctionRef, TriggerStats>>>,
    scheduler: Mutex<Option<Scheduler>>,
}

impl Schedules {
    pub fn new(queue: &Arc<dyn Queue>, provider: &Arc<dyn Provider>) -> Schedules {
        let scheduler =
            Scheduler::new(Arc::clone(queue), Arc::new(ProviderFunctions { provider: Arc::clone(provider) }));
        Schedules { wake: scheduler.wake(), stats: scheduler.stats(), scheduler: Mutex::new(Some(scheduler)) }
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
        tokio::spawn(async move {
            tokio::select! {
                _ = scheduler.run() => {}
                _ = shutdown.cancelled() => {}
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

/// The scheduled functions, as the provider lists them.
struct ProviderFunctions {
    provider: Arc<dyn Provider>,
}

#[async_trait]
impl Functions for ProviderFunctions {
    async fn scheduled(&self) -> Result<Vec<Scheduled>, String> {
        let mut found = Vec::new();
        for namespace in self.provider.namespaces().await.map_err(|e| e.to_string())? {
            for f in self.provider.list(&namespace).await.map_err(|e| e.to_string())? {
                // Refused at deploy when wrong; one deployed before that
                // rule is left out.
                let Ok(Triggers { schedule: Some(schedule), .. }) =
                    Triggers::of(&f.annotations, &connector_of)
                else {
                    continue;
                };
                found.push(Scheduled {
                    function: FunctionRef { name: f.name.clone(), namespace: f.namespace.clone() },
                    schedule,
                    since: f.created_at.parse().ok(),
                });
            }
        }
        Ok(found)
    }
}
