//! The schedule connector under tokio's paused time: slots fire on time,
//! once, across two schedulers sharing a queue, and a missed slot once at
//! start. The queue is one in memory that keeps what it is given and
//! refuses a known id, as the real ones do (whose writes wait on threads
//! that paused time does not wait for).

use super::*;
use crate::testing::Memory;

/// A clock that starts at a given time and advances with tokio's (paused
/// or not) timer.
struct FollowTokio {
    start: Timestamp,
    at: tokio::time::Instant,
}

impl FollowTokio {
    fn starting_at(start: Timestamp) -> FollowTokio {
        FollowTokio { start, at: tokio::time::Instant::now() }
    }
}

impl Clock for FollowTokio {
    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.at.elapsed()).unwrap_or(jiff::SignedDuration::MAX);
        self.start.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }
}

struct Fixed(Mutex<Vec<Scheduled>>);

#[async_trait]
impl Functions for Fixed {
    async fn scheduled(&self) -> Result<Vec<Scheduled>, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn tick(schedule: &str, since: Option<Timestamp>) -> Scheduled {
    Scheduled {
        function: FunctionRef { name: "tick".into(), namespace: "openfaas-fn".into() },
        schedule: Schedule::parse(schedule, None).unwrap(),
        since,
        reply: None,
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn slot_id(at: &str) -> String {
    format!("cron-tick.openfaas-fn-{}", ts(at).as_second())
}

#[tokio::test(start_paused = true)]
async fn slots_fire_on_time_and_once() {
    let queue = Arc::new(Memory::default());
    let functions = Arc::new(Fixed(Mutex::new(vec![tick("*/5 * * * *", None)])));
    let start = ts("2026-12-02T10:03:00Z");
    let scheduler = Scheduler::new(queue.clone(), functions.clone())
        .with_clock(Arc::new(FollowTokio::starting_at(start)))
        .with_catch_up(Duration::from_secs(60));
    let stats = scheduler.stats();
    let task = tokio::spawn(scheduler.run());
    // 10:05, 10:10 and 10:15 come in 13 minutes; 10:00 was before start
    // and more than a minute ago: not caught up.
    tokio::time::sleep(Duration::from_secs(13 * 60)).await;
    let want: Vec<String> = ["2026-12-02T10:05:00Z", "2026-12-02T10:10:00Z", "2026-12-02T10:15:00Z"]
        .iter()
        .map(|t| slot_id(t))
        .collect();
    assert_eq!(queue.ids(), want);
    let s = stats.lock().unwrap().values().next().cloned().unwrap();
    assert_eq!((s.events, s.dispatched, s.duplicates, s.failed), (3, 3, 0, 0), "{s:?}");
    assert!(s.last_lag_secs < 1.0, "within a second of its time: {s:?}");
    assert_eq!(s.next_event, Some(ts("2026-12-02T10:20:00Z")));
    // The call carries what the function is told.
    let call = queue.calls.lock().unwrap()[0].clone();
    assert_eq!((call.function.as_str(), call.method.as_str(), call.path.as_str()), ("tick", "POST", "/"));
    let header = |k: &str| call.headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    assert_eq!(header("X-Topic").as_deref(), Some("cron-function"));
    assert_eq!(header("X-Connector").as_deref(), Some("cron"));
    assert_eq!(header("X-Message-Id"), Some(ts("2026-12-02T10:05:00Z").as_second().to_string()));
    assert_eq!(header("X-Event-Time").as_deref(), Some("2026-12-02T10:05:00Z"));
    assert_eq!(header("X-Schedule").as_deref(), Some("*/5 * * * *"));
    // Removed: it fires no more.
    functions.0.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert_eq!(queue.ids(), want);
    assert!(stats.lock().unwrap().is_empty());
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn two_schedulers_on_one_queue_fire_a_slot_once() {
    let queue = Arc::new(Memory::default());
    let functions = Arc::new(Fixed(Mutex::new(vec![tick("@every 1s", None)])));
    let start = ts("2026-12-02T10:00:00.200Z");
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let s = Scheduler::new(queue.clone(), functions.clone())
            .with_clock(Arc::new(FollowTokio::starting_at(start)))
            .with_catch_up(Duration::ZERO);
        stats.push(s.stats());
        tasks.push(tokio::spawn(s.run()));
    }
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let ids: Vec<String> = (1..=10).map(|i| slot_id(&format!("2026-12-02T10:00:{i:02}Z"))).collect();
    assert_eq!(queue.ids(), ids);
    let sum = |f: fn(&TriggerStats) -> u64| -> u64 {
        stats.iter().map(|s| s.lock().unwrap().values().map(f).sum::<u64>()).sum()
    };
    assert_eq!(sum(|s| s.dispatched), 10, "each slot stored once");
    assert_eq!(sum(|s| s.duplicates), 10, "and found stored by the other");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_slot_missed_while_down_fires_once_at_start() {
    let queue = Arc::new(Memory::default());
    let start = ts("2026-12-02T10:20:00Z");
    let run = |since: &str, start: Timestamp| {
        let functions = Arc::new(Fixed(Mutex::new(vec![tick("@hourly", Some(ts(since)))])));
        let s =
            Scheduler::new(queue.clone(), functions).with_clock(Arc::new(FollowTokio::starting_at(start)));
        let stats = s.stats();
        (stats, tokio::spawn(s.run()))
    };
    // Deployed at 09:30, no gateway at 10:00: the 10:00 slot fires at
    // start, once; 09:00 (not the latest) does not.
    let (_, task) = run("2026-12-02T09:30:00Z", start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    task.abort();
    assert_eq!(queue.ids(), [slot_id("2026-12-02T10:00:00Z")]);
    // Started again a minute later: the queue knows the slot fired.
    let (stats, task) = run("2026-12-02T09:30:00Z", ts("2026-12-02T10:21:00Z"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    task.abort();
    assert_eq!(queue.ids(), [slot_id("2026-12-02T10:00:00Z")]);
    assert_eq!(stats.lock().unwrap().values().next().unwrap().duplicates, 1);
    // A function deployed after the slot does not catch it up.
    queue.calls.lock().unwrap().clear();
    let (stats, task) = run("2026-12-02T10:10:00Z", start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    task.abort();
    assert!(queue.ids().is_empty());
    assert_eq!(stats.lock().unwrap().values().next().unwrap().events, 0);
}
