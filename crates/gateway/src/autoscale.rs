//! The autoscaler: each function's replicas follow its load, within the
//! bounds and at the target its labels give (`com.openfaas.scale.*`, see
//! [`ScalingPolicy`]); functions at zero replicas are started by the first
//! request that comes for them ([`Autoscaler::wake`]).
//!
//! A function whose labels name no target scales as OpenFaaS Community
//! Edition does ([`AlertScaling`]): its alert rule (more than 5 answers of
//! 200 a second over 10 s, for 5 s) adds a step of replicas, again every
//! 30 s while it holds, and once it no longer holds the function goes back
//! to min. With a target, what follows applies.
//!
//! Every tick (a second) each function's load is sampled from the gateway's
//! own counters: requests per second over the last 10 s (`rps`), requests in
//! flight averaged over them (`capacity`), or the CPU its replicas used
//! (`cpu`, from the provider). The replicas wanted are
//! `ceil(load / (target * target-proportion))`, within min and max. More
//! replicas are asked for at once; fewer only when every recommendation of
//! the last `down.window` was that low, so that a dip does not flap. A
//! function with `zero=true` that had no request for `zero-duration` goes to
//! zero replicas.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrofaas_provider::{FunctionRoute, Provider};
use ferrofaas_types::FunctionRef;
use ferrofaas_types::scaling::{AlertScaling, ScalingPolicy, ScalingType};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The span over which load is averaged.
const LOAD_WINDOW: Duration = Duration::from_secs(10);

/// One sample of a function's load.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub at: Instant,
    /// Invocations started, ever (a counter).
    pub started_total: u64,
    /// Invocations answered with 200, ever (a counter).
    pub ok_total: u64,
    pub in_flight: i64,
    /// CPU its replicas used since the last sample, in millicores, if the
    /// provider measures it.
    pub cpu_millicores: Option<f64>,
}

/// The autoscaler's memory of one function.
#[derive(Debug)]
pub struct Recommender {
    samples: VecDeque<Observation>,
    recommendations: VecDeque<(Instant, u64)>,
    last_request: Instant,
    /// Community Edition's rule: since when it has held, and when it last
    /// fired with the replicas it set (`Some` while firing).
    holds_since: Option<Instant>,
    fired: Option<(Instant, u64)>,
}

impl Recommender {
    pub fn new(now: Instant) -> Recommender {
        Recommender {
            samples: VecDeque::new(),
            recommendations: VecDeque::new(),
            last_request: now,
            holds_since: None,
            fired: None,
        }
    }

    /// Answers of 200 per second over the window, if long enough to tell.
    fn ok_rate(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let span = last.at.duration_since(first.at).as_secs_f64();
        (span >= 1.0).then(|| last.ok_total.saturating_sub(first.ok_total) as f64 / span)
    }

    /// Community Edition's rule: the replicas it asks for now, if any.
    fn alert(
        &mut self,
        alert: AlertScaling,
        policy: &ScalingPolicy,
        current: u64,
        now: Instant,
    ) -> Option<u64> {
        let holds = self.ok_rate()? > AlertScaling::RATE;
        if !holds {
            self.holds_since = None;
            // Resolved: back to min, unless someone scaled it by hand since
            // (then theirs stands).
            let (_, set) = self.fired.take()?;
            let min = policy.min.max(1);
            return (set == current && min != current).then_some(min);
        }
        let since = *self.holds_since.get_or_insert(now);
        if now.duration_since(since) < AlertScaling::FOR {
            return None;
        }
        if self.fired.is_some_and(|(at, _)| now.duration_since(at) < AlertScaling::REPEAT) {
            return None;
        }
        let wanted = current.saturating_add(alert.step(policy.max)).min(policy.max);
        self.fired = Some((now, wanted));
        (wanted != current).then_some(wanted)
    }

    /// The load per the policy's type over the window, if there is enough
    /// of a window to tell.
    fn load(&self, kind: ScalingType) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let span = last.at.duration_since(first.at).as_secs_f64();
        match kind {
            ScalingType::Rps if span >= 1.0 => {
                Some(last.started_total.saturating_sub(first.started_total) as f64 / span)
            }
            ScalingType::Capacity => {
                let sum: i64 = self.samples.iter().map(|s| s.in_flight.max(0)).sum();
                Some(sum as f64 / self.samples.len() as f64)
            }
            ScalingType::Cpu => {
                let known: Vec<f64> = self.samples.iter().filter_map(|s| s.cpu_millicores).collect();
                (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
            }
            _ => None,
        }
    }

    /// Takes a sample; the number of replicas `function` should have now, if
    /// not `current`.
    pub fn observe(&mut self, policy: &ScalingPolicy, current: u64, sample: Observation) -> Option<u64> {
        let now = sample.at;
        if self.samples.back().is_some_and(|prev| sample.started_total != prev.started_total)
            || sample.in_flight > 0
        {
            self.last_request = now;
        }
        self.samples.push_back(sample);
        while self.samples.len() > 2 && self.samples[1].at + LOAD_WINDOW <= now {
            self.samples.pop_front();
        }
        if !policy.autoscaled() || current == 0 {
            // Left alone; or at zero, where the first request wakes it.
            self.recommendations.clear();
            return None;
        }
        let idle = now.duration_since(self.last_request);
        let to_zero = policy.zero && idle >= policy.zero_duration && sample.in_flight <= 0;
        if let Some(alert) = policy.alert {
            if to_zero {
                (self.holds_since, self.fired) = (None, None);
                return Some(0);
            }
            return if alert.factor > 0 && policy.min != policy.max {
                self.alert(alert, policy, current, now)
            } else {
                None
            };
        }
        let wanted = if to_zero {
            0
        } else {
            let load = self.load(policy.kind)?;
            let raw = (load / policy.threshold()).ceil() as u64;
            raw.clamp(policy.min.max(1), policy.max.max(1))
        };
        self.recommendations.push_back((now, wanted));
        while self.recommendations.front().is_some_and(|(at, _)| *at + policy.down_window < now) {
            self.recommendations.pop_front();
        }
        if wanted > current {
            return Some(wanted);
        }
        // Down only as far as the highest recommendation of the window, and
        // only once the window has been watched whole.
        let watched = self
            .recommendations
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) + Duration::from_millis(1) >= policy.down_window);
        let highest = self.recommendations.iter().map(|(_, r)| *r).max().unwrap_or(current);
        (watched && highest < current).then_some(highest)
    }
}

/// When each replica (by instance) was read, and its CPU seconds then.
type CpuReadings = HashMap<String, (Instant, f64)>;

/// The outcome of starting a function from zero: `None` while it runs.
pub type WakeOutcome = watch::Receiver<Option<Result<(), String>>>;

pub struct Autoscaler {
    enabled: bool,
    interval: Duration,
    recommenders: Mutex<HashMap<FunctionRef, Recommender>>,
    /// The last CPU reading of each replica (by instance) of functions
    /// scaled on CPU.
    cpu_readings: Mutex<HashMap<FunctionRef, CpuReadings>>,
    wakes: Mutex<HashMap<FunctionRef, WakeOutcome>>,
}

impl Autoscaler {
    pub fn new(enabled: bool, interval: Duration) -> Autoscaler {
        Autoscaler {
            enabled,
            interval,
            recommenders: Mutex::default(),
            cpu_readings: Mutex::default(),
            wakes: Mutex::default(),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `route`'s function from zero replicas: the first caller asks
    /// the provider for `min` replicas (at least one), every caller gets the
    /// outcome to watch.
    pub fn wake(self: &Arc<Self>, provider: &Arc<dyn Provider>, route: &Arc<FunctionRoute>) -> WakeOutcome {
        let mut wakes = Self::lock(&self.wakes);
        if let Some(outcome) = wakes.get(&route.function) {
            return outcome.clone();
        }
        let (tx, rx) = watch::channel(None);
        wakes.insert(route.function.clone(), rx.clone());
        drop(wakes);
        route.stats.cold_start();
        let function = route.function.clone();
        let replicas = route.policies().scaling.min.max(1);
        let (me, provider) = (Arc::clone(self), Arc::clone(provider));
        tokio::spawn(async move {
            tracing::info!(%function, replicas, "starting from zero replicas");
            let result = provider.scale(&function, replicas).await.map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::warn!(%function, error = %e, "could not start from zero");
            }
            Self::lock(&me.wakes).remove(&function);
            let _ = tx.send(Some(result));
        });
        rx
    }

    /// One round: every function sampled, and scaled where its load says so.
    pub async fn tick(&self, provider: &dyn Provider) {
        let now = Instant::now();
        let routes = provider.routes().all();
        let mut cpu = HashMap::new();
        for route in &routes {
            if route.policies().scaling.kind == ScalingType::Cpu {
                cpu.insert(route.function.clone(), self.cpu_millicores(route).await);
            }
        }
        let mut changes = Vec::new();
        {
            let mut recommenders = Self::lock(&self.recommenders);
            recommenders.retain(|f, _| routes.iter().any(|r| &r.function == f));
            Self::lock(&self.cpu_readings).retain(|f, _| routes.iter().any(|r| &r.function == f));
            for route in &routes {
                let policies = route.policies();
                let policy = &policies.scaling;
                let sample = Observation {
                    at: now,
                    started_total: route.stats.started_total(),
                    ok_total: route.stats.count_of(200),
                    in_flight: route.stats.in_flight(),
                    cpu_millicores: cpu.get(&route.function).copied().flatten(),
                };
                let current = route.desired();
                let recommender =
                    recommenders.entry(route.function.clone()).or_insert_with(|| Recommender::new(now));
                if let Some(wanted) = recommender.observe(policy, current, sample) {
                    changes.push((route.function.clone(), current, wanted));
                }
            }
        }
        for (function, from, to) in changes {
            match provider.scale(&function, to).await {
                Ok(()) => tracing::info!(%function, from, to, "autoscaled"),
                Err(e) => tracing::warn!(%function, from, to, error = %e, "could not autoscale"),
            }
        }
    }

    /// The CPU a function's ready replicas used since the last reading, in
    /// millicores: the sum over replicas read both times.
    async fn cpu_millicores(&self, route: &FunctionRoute) -> Option<f64> {
        let mut now = HashMap::new();
        for endpoint in route.endpoints() {
            if let Some(meter) = &endpoint.meter
                && let Some(seconds) = meter.cpu_seconds().await
            {
                now.insert(endpoint.instance.clone(), (Instant::now(), seconds));
            }
        }
        let mut readings = Self::lock(&self.cpu_readings);
        let before = readings.insert(route.function.clone(), now.clone()).unwrap_or_default();
        let mut total = None;
        for (instance, (at, seconds)) in &now {
            if let Some((then, earlier)) = before.get(instance) {
                let span = at.duration_since(*then).as_secs_f64();
                if span > 0.0 && seconds >= earlier {
                    *total.get_or_insert(0.0) += (seconds - earlier) / span * 1000.0;
                }
            }
        }
        total
    }

    /// Ticks until `stop`. Each function's policy is its route's (set by
    /// the provider whenever it loads the deployment): nothing to re-read.
    pub async fn run(self: Arc<Self>, provider: Arc<dyn Provider>, stop: CancellationToken) {
        if !self.enabled {
            return;
        }
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.tick(&*provider).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kind: ScalingType, min: u64, max: u64, target: f64) -> ScalingPolicy {
        ScalingPolicy {
            min,
            max,
            kind,
            target,
            target_proportion: 1.0,
            down_window: Duration::from_secs(30),
            alert: None,
            ..ScalingPolicy::default()
        }
    }

    /// Drives a recommender one second at a time under paused time: each
    /// step `rps` requests started and `in_flight` open; the replicas after
    /// each step (applying every recommendation).
    struct Sim {
        r: Recommender,
        started: u64,
        replicas: u64,
    }

    impl Sim {
        fn new(replicas: u64) -> Sim {
            Sim { r: Recommender::new(Instant::now()), started: 0, replicas }
        }

        /// Seconds at which the replicas changed, and to what.
        async fn changes(&mut self, p: &ScalingPolicy, secs: u64, rps: u64, from: u64) -> Vec<(u64, u64)> {
            let seen = self.run(p, secs, rps, 0).await;
            let mut last = from;
            let mut changes = Vec::new();
            for (i, &n) in seen.iter().enumerate() {
                if n != last {
                    changes.push((i as u64 + 1, n));
                    last = n;
                }
            }
            changes
        }

        async fn run(&mut self, p: &ScalingPolicy, secs: u64, rps: u64, in_flight: i64) -> Vec<u64> {
            let mut seen = Vec::new();
            for _ in 0..secs {
                tokio::time::advance(Duration::from_secs(1)).await;
                self.started += rps;
                let sample = Observation {
                    at: Instant::now(),
                    started_total: self.started,
                    // Every request answered 200.
                    ok_total: self.started,
                    in_flight,
                    cpu_millicores: None,
                };
                if let Some(n) = self.r.observe(p, self.replicas, sample) {
                    self.replicas = n;
                }
                seen.push(self.replicas);
            }
            seen
        }
    }

    /// Community Edition's defaults, as OpenFaaS's conformance tests load a
    /// function with only min 1 and max 2: two clients at 5 requests a
    /// second each. Its rule holds after a second or two, fires 5 s later,
    /// and resolves once the 10 s rate is back under 5 after the load.
    #[tokio::test(start_paused = true)]
    async fn without_a_target_community_editions_rule_scales() {
        let labels = [("com.openfaas.scale.min", "1"), ("com.openfaas.scale.max", "2")];
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let p = ScalingPolicy::from_labels(&labels).unwrap();
        assert!(p.alert.is_some());
        let mut sim = Sim::new(1);
        let up = sim.changes(&p, 60, 10, 1).await;
        assert_eq!(up.len(), 1, "up once, then held at max: {up:?}");
        assert!((5..=8).contains(&up[0].0) && up[0].1 == 2, "{up:?}");
        let down = sim.changes(&p, 60, 0, 2).await;
        assert_eq!(down.len(), 1, "{down:?}");
        assert!(down[0].0 <= 6 && down[0].1 == 1, "back to min soon after: {down:?}");
        // At 5 a second or less it never fires.
        let mut calm = Sim::new(1);
        assert!(calm.changes(&p, 60, 5, 1).await.is_empty());
        // Scaled by hand while it fires: the resolution leaves that be.
        let p = ScalingPolicy { max: 20, ..p };
        let mut manual = Sim::new(1);
        assert_eq!(manual.changes(&p, 10, 10, 1).await.last().map(|c| c.1), Some(5));
        manual.replicas = 2;
        assert!(manual.changes(&p, 40, 0, 2).await.is_empty(), "the hand's 2 stays");
    }

    /// Each firing adds 20% of max (4 of 20), again every 30 s while the
    /// rule holds; a factor of 0 turns it off.
    #[tokio::test(start_paused = true)]
    async fn community_editions_rule_steps_by_its_factor() {
        let p = ScalingPolicy::default();
        let mut sim = Sim::new(1);
        let up = sim.changes(&p, 70, 100, 1).await;
        let replicas: Vec<u64> = up.iter().map(|c| c.1).collect();
        assert_eq!(replicas, vec![5, 9, 13], "{up:?}");
        assert_eq!((up[1].0 - up[0].0, up[2].0 - up[1].0), (30, 30), "{up:?}");
        let off = ScalingPolicy { alert: Some(AlertScaling { factor: 0 }), ..ScalingPolicy::default() };
        let mut sim = Sim::new(1);
        assert!(sim.changes(&off, 30, 100, 1).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn rps_scales_up_at_once_and_down_after_the_window() {
        let p = policy(ScalingType::Rps, 1, 10, 10.0);
        let mut sim = Sim::new(1);
        let seen = sim.run(&p, 12, 45, 0).await;
        assert_eq!(*seen.last().unwrap(), 5, "45 rps at 10 per replica: {seen:?}");
        assert!(seen[2] >= 4, "up within seconds: {seen:?}");
        // Load gone: nothing for the 30 s window (plus the 10 s average), then min.
        let seen = sim.run(&p, 25, 0, 0).await;
        assert!(seen.iter().all(|&n| n == 5), "held through the window: {seen:?}");
        let seen = sim.run(&p, 30, 0, 0).await;
        assert_eq!(*seen.last().unwrap(), 1, "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dip_inside_the_window_does_not_scale_down() {
        let p = policy(ScalingType::Rps, 1, 10, 10.0);
        let mut sim = Sim::new(1);
        sim.run(&p, 15, 40, 0).await;
        assert_eq!(sim.replicas, 4);
        let mut all = Vec::new();
        for _ in 0..5 {
            all.extend(sim.run(&p, 12, 5, 0).await);
            all.extend(sim.run(&p, 12, 40, 0).await);
        }
        assert!(all.iter().all(|&n| n == 4), "no flapping: {all:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_counts_requests_in_flight() {
        let p = policy(ScalingType::Capacity, 1, 20, 2.0);
        let mut sim = Sim::new(1);
        let seen = sim.run(&p, 3, 0, 9).await;
        assert_eq!(seen[0], 5, "9 in flight at 2 per replica: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn clamped_to_min_and_max() {
        let p = policy(ScalingType::Rps, 2, 3, 1.0);
        let mut sim = Sim::new(2);
        assert_eq!(*sim.run(&p, 5, 100, 0).await.last().unwrap(), 3);
        assert_eq!(*sim.run(&p, 60, 0, 0).await.last().unwrap(), 2, "never under min");
        let mut below = Sim::new(1);
        assert_eq!(*below.run(&p, 2, 0, 0).await.last().unwrap(), 2, "raised to min");
    }

    #[tokio::test(start_paused = true)]
    async fn min_equal_to_max_leaves_it_alone() {
        let p = policy(ScalingType::Rps, 3, 3, 1.0);
        let mut sim = Sim::new(7);
        assert!(sim.run(&p, 60, 100, 0).await.iter().all(|&n| n == 7));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_after_the_idle_duration() {
        let p = ScalingPolicy {
            zero: true,
            zero_duration: Duration::from_secs(20),
            down_window: Duration::from_secs(5),
            ..policy(ScalingType::Rps, 1, 5, 10.0)
        };
        let mut sim = Sim::new(1);
        sim.run(&p, 5, 3, 0).await;
        let seen = sim.run(&p, 30, 0, 0).await;
        let first_zero = seen.iter().position(|&n| n == 0).expect("went to zero");
        assert!((18..=26).contains(&first_zero), "after ~20 s idle (+ the window): {seen:?}");
        // At zero it stays there: only a request wakes it.
        assert!(sim.run(&p, 10, 0, 0).await.iter().all(|&n| n == 0));
        // A request in flight keeps a function from going to zero.
        let mut busy = Sim::new(1);
        assert!(busy.run(&p, 40, 0, 1).await.iter().all(|&n| n >= 1));
    }

    #[tokio::test(start_paused = true)]
    async fn cpu_in_millicores() {
        let p = policy(ScalingType::Cpu, 1, 10, 100.0);
        let mut r = Recommender::new(Instant::now());
        let mut replicas = 1;
        for i in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            // No reading at first; then 350 millicores.
            let cpu = (i > 0).then_some(350.0);
            let sample = Observation {
                at: Instant::now(),
                started_total: 0,
                ok_total: 0,
                in_flight: 1,
                cpu_millicores: cpu,
            };
            if let Some(n) = r.observe(&p, replicas, sample) {
                replicas = n;
            }
        }
        assert_eq!(replicas, 4);
    }
}
