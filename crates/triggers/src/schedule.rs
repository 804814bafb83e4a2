//! The schedule connector: fires each scheduled function at its times by
//! storing a call on the queue.
//!
//! - **Once per slot, whatever the number of gateways.** A slot's call id
//!   is the function and the slot's time (`cron-<fn>.<ns>-<unix seconds>`);
//!   the queue refuses a second call with a known id, so gateways sharing
//!   a queue on NATS race to store it and one wins.
//! - **On time.** The connector sleeps until the next slot of any
//!   function, and reads the functions again every few seconds (at once
//!   when [`Scheduler::wake`] is notified: a deploy).
//! - **Missed slots.** A slot missed while no gateway ran fires once when
//!   one starts, if it is at most `catch_up` old and the function existed
//!   then; older ones, and all but the latest, are skipped. A slot that did
//!   fire is known to the queue (it keeps settled calls a day), so a
//!   restart does not fire it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferrofaas_queue::{Queue, QueueError};
use ferrofaas_types::FunctionRef;
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::cron::Schedule;

/// The connector's name, in call ids and the `X-Connector` header.
pub const CONNECTOR: &str = "cron";
/// How often the functions are read again (besides [`Scheduler::wake`]).
const REFRESH: Duration = Duration::from_secs(5);
/// How long a slot's call is tried again when the queue refuses it
/// (full, unreachable) before the slot is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// A function with a schedule.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub function: FunctionRef,
    pub schedule: Schedule,
    /// When it was deployed, if known: no slot before it is caught up.
    pub since: Option<Timestamp>,
    /// Where its calls' answers are published.
    pub reply: Option<String>,
}

/// Where the scheduled functions come from (the gateway's provider).
#[async_trait]
pub trait Functions: Send + Sync {
    async fn scheduled(&self) -> Result<Vec<Scheduled>, String>;
}

/// The time of day. The connector sleeps with tokio's timer, so under
/// tokio's paused time a clock that follows that timer lets tests run
/// days of schedules in an instant.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// What a function's schedule did, for the API and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerStats {
    pub schedule: String,
    /// Slots that came.
    pub events: u64,
    /// Slots stored on the queue by this gateway.
    pub dispatched: u64,
    /// Slots another gateway (or an earlier run) had stored already.
    pub duplicates: u64,
    /// Slots given up: the queue refused them for [`GIVE_UP_AFTER`].
    pub failed: u64,
    pub last_event: Option<Timestamp>,
    pub next_event: Option<Timestamp>,
    /// How late the last slot was stored, in seconds.
    pub last_lag_secs: f64,
    pub last_error: Option<String>,
}

pub struct Scheduler {
    queue: Arc<dyn Queue>,
    functions: Arc<dyn Functions>,
    clock: Arc<dyn Clock>,
    catch_up: Duration,
    wake: Arc<Notify>,
    stats: Arc<Mutex<HashMap<FunctionRef, TriggerStats>>>,
}

struct Slot {
    schedule: Schedule,
    next: Timestamp,
    reply: Option<String>,
}

impl Scheduler {
    pub fn new(queue: Arc<dyn Queue>, functions: Arc<dyn Functions>) -> Scheduler {
        Scheduler {
            queue,
            functions,
            clock: Arc::new(SystemClock),
            catch_up: Duration::from_secs(3600),
            wake: Arc::new(Notify::new()),
            stats: Arc::default(),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Scheduler {
        self.clock = clock;
        self
    }

    /// How old a missed slot may be and still fire at start (at most 12 h:
    /// the queue remembers fired slots for a day).
    pub fn with_catch_up(mut self, catch_up: Duration) -> Scheduler {
        self.catch_up = catch_up.min(Duration::from_secs(12 * 3600));
        self
    }

    /// Notify it to read the functions again now (after a deploy).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Each scheduled function's figures, shared with the running loop.
    pub fn stats(&self) -> Arc<Mutex<HashMap<FunctionRef, TriggerStats>>> {
        self.stats.clone()
    }

    /// Fires schedules until the task is dropped or aborted.
    pub async fn run(self) {
        let mut slots: HashMap<FunctionRef, Slot> = HashMap::new();
        let mut first = true;
        let mut next_refresh = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_refresh {
                next_refresh = tokio::time::Instant::now() + REFRESH;
                // The first reading that works is the one that catches up.
                match self.functions.scheduled().await {
                    Ok(list) => {
                        self.update(&mut slots, list, first).await;
                        first = false;
                    }
                    Err(e) => tracing::warn!(error = %e, "schedules: could not read the functions"),
                }
            }
            let now = self.clock.now();
            let due: Vec<FunctionRef> =
                slots.iter().filter(|(_, s)| s.next <= now).map(|(f, _)| f.clone()).collect();
            for function in due {
                let Some(slot) = slots.get_mut(&function) else { continue };
                let at = slot.next;
                match self.fire(&function, at, slot.schedule.text(), slot.reply.clone()).await {
                    Fired::Stored | Fired::Known | Fired::GivenUp => {
                        // The latest slot only: those that passed meanwhile
                        // (a paused machine) are skipped.
                        let now = self.clock.now();
                        slot.next = slot.schedule.next_after(now.max(at)).unwrap_or(Timestamp::MAX);
                    }
                    // Tried again on the next turn.
                    Fired::Refused => {}
                }
                self.note(&function, |s| s.next_event = Some(slot.next).filter(|t| *t != Timestamp::MAX));
            }
            // Until the next slot, the next refresh, or a wake-up.
            let now = self.clock.now();
            let until_slot = slots
                .values()
                .map(|s| s.next)
                .min()
                .map(|next| Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO));
            let retrying = slots.values().any(|s| s.next <= now);
            let mut sleep = next_refresh.saturating_duration_since(tokio::time::Instant::now());
            if let Some(until) = until_slot {
                sleep = sleep.min(until);
            }
            if retrying {
                sleep = Duration::from_secs(1);
            }
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => next_refresh = tokio::time::Instant::now(),
            }
        }
    }

    async fn update(&self, slots: &mut HashMap<FunctionRef, Slot>, list: Vec<Scheduled>, first: bool) {
        let now = self.clock.now();
        let mut seen = std::collections::HashSet::new();
        for f in list {
            seen.insert(f.function.clone());
            if let Some(slot) = slots.get_mut(&f.function)
                && slot.schedule == f.schedule
            {
                slot.reply = f.reply;
                continue;
            }
            // At start: the latest slot missed while no gateway ran.
            if first
                && let Some(missed) = f.schedule.last_at_or_before(now, self.catch_up.as_secs())
                && f.since.is_none_or(|since| since <= missed)
            {
                tracing::info!(function = %f.function.name, slot = %missed, "schedules: a slot missed while down fires now");
                let _ = self.fire(&f.function, missed, f.schedule.text(), f.reply.clone()).await;
            }
            let next = f.schedule.next_after(now).unwrap_or(Timestamp::MAX);
            let text = f.schedule.text().to_owned();
            self.note(&f.function, |s| {
                s.schedule = text;
                s.next_event = Some(next);
            });
            slots.insert(f.function, Slot { schedule: f.schedule, next, reply: f.reply });
        }
        slots.retain(|f, _| seen.contains(f));
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).retain(|f, _| seen.contains(f));
    }

    async fn fire(
        &self,
        function: &FunctionRef,
        at: Timestamp,
        schedule: &str,
        reply: Option<String>,
    ) -> Fired {
        let event = at.as_second().to_string();
        let headers = vec![("X-Schedule".to_owned(), schedule.to_owned())];
        let mut call = crate::event_call(
            CONNECTOR,
            crate::CRON_TOPIC,
            function,
            &event,
            at,
            bytes::Bytes::new(),
            headers,
        );
        call.reply = reply;
        let id = call.id.clone();
        let result = self.queue.enqueue(call).await;
        let now = self.clock.now();
        let lag = now.duration_since(at).as_secs_f64().max(0.0);
        let fired = match result {
            Ok(()) => {
                tracing::debug!(function = %function.name, %id, lag, "schedules: fired");
                Fired::Stored
            }
            Err(QueueError::Exists(_)) => Fired::Known,
            Err(e) if lag < GIVE_UP_AFTER.as_secs_f64() => {
                tracing::warn!(function = %function.name, %id, error = %e, "schedules: the queue refused a slot; trying again");
                self.note(function, |s| s.last_error = Some(e.to_string()));
                return Fired::Refused;
            }
            Err(e) => {
                tracing::error!(function = %function.name, %id, error = %e, "schedules: a slot given up");
                self.note(function, |s| s.last_error = Some(e.to_string()));
                Fired::GivenUp
            }
        };
        self.note(function, |s| {
            s.events += 1;
            s.last_event = Some(at);
            match fired {
                Fired::Stored => {
                    s.dispatched += 1;
                    s.last_lag_secs = lag;
                    s.last_error = None;
                }
                Fired::Known => s.duplicates += 1,
                _ => s.failed += 1,
            }
        });
        fired
    }

    fn note(&self, function: &FunctionRef, change: impl FnOnce(&mut TriggerStats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        change(stats.entry(function.clone()).or_default());
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fired {
    Stored,
    Known,
    Refused,
    GivenUp,
}

#[cfg(test)]
mod tests;
