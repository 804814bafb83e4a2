//! The last minutes of each function's traffic, for the UI's chart: every
//! few seconds the gateway reads its own invocation statistics (the ones
//! `/metrics` exports) and keeps, per function, a ring of points: requests
//! per second, the share of 5xx answers, the median and 99th percentile
//! duration (from the histogram's buckets, interpolated as Prometheus's
//! `histogram_quantile` does) and the ready replicas.
//!
//! A point is 40 bytes: 12 KiB a function for the 10 minutes kept.
//! `GET /system/function-history/{name}` serves them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrofaas_provider::Provider;
use ferrofaas_provider::routes::FunctionRoute;
use ferrofaas_types::FunctionRef;
use ferrofaas_types::prom::{BUCKETS, Histogram};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// One interval of one function.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// End of the interval, Unix milliseconds.
    pub time: u64,
    /// Finished invocations per second.
    pub rps: f32,
    /// Share of the finished invocations that answered 5xx (0 when none).
    #[serde(rename = "errorRatio")]
    pub error_ratio: f32,
    /// Seconds; `None` when nothing finished in the interval.
    pub p50: Option<f32>,
    pub p99: Option<f32>,
    /// Replicas ready at the end of the interval.
    pub ready: u32,
}

#[derive(Serialize)]
pub struct FunctionHistory {
    pub name: String,
    pub namespace: String,
    #[serde(rename = "intervalSeconds")]
    pub interval_seconds: f64,
    pub points: Vec<Point>,
}

/// Totals since the gateway started, to subtract from the next reading.
#[derive(Clone, Copy, Default)]
struct Totals {
    all: Histogram,
    errors: u64,
}

impl Totals {
    fn read(route: &FunctionRoute) -> Totals {
        let mut totals = Totals::default();
        for (code, h) in route.stats.snapshot() {
            totals.all.count += h.count;
            for (sum, n) in totals.all.buckets.iter_mut().zip(h.buckets) {
                *sum += n;
            }
            if code >= 500 {
                totals.errors += h.count;
            }
        }
        totals
    }
}

struct Series {
    last: Totals,
    points: VecDeque<Point>,
}

pub struct History {
    interval: Duration,
    capacity: usize,
    series: Mutex<HashMap<FunctionRef, Series>>,
}

impl History {
    /// Points every `interval`, the last `capacity` of them per function.
    pub fn new(interval: Duration, capacity: usize) -> History {
        History { interval, capacity: capacity.max(1), series: Mutex::new(HashMap::new()) }
    }

    /// Takes one reading of every function's route; forgets removed ones.
    pub fn sample(&self, routes: &[std::sync::Arc<FunctionRoute>], now_ms: u64) {
        let secs = self.interval.as_secs_f64();
        let live: HashSet<&FunctionRef> = routes.iter().map(|r| &r.function).collect();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.retain(|f, _| live.contains(f));
        for route in routes {
            let totals = Totals::read(route);
            // A route counts from zero when it is made (a function deployed
            // or restored) and the sampler sees it within one interval: its
            // counts so far belong to the first point.
            let s = series.entry(route.function.clone()).or_insert_with(|| Series {
                last: Totals::default(),
                points: VecDeque::with_capacity(self.capacity),
            });
            let point = point(&s.last, &totals, secs, now_ms, route.ready_count());
            s.last = totals;
            if s.points.len() == self.capacity {
                s.points.pop_front();
            }
            s.points.push_back(point);
        }
    }

    /// A function's points, oldest first (none for a function not sampled
    /// yet).
    pub fn get(&self, function: &FunctionRef) -> FunctionHistory {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        FunctionHistory {
            name: function.name.clone(),
            namespace: function.namespace.clone(),
            interval_seconds: self.interval.as_secs_f64(),
            points: series.get(function).map(|s| s.points.iter().copied().collect()).unwrap_or_default(),
        }
    }

    /// Samples every interval until `stop`.
    pub async fn run(
        self: std::sync::Arc<Self>,
        provider: std::sync::Arc<dyn Provider>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            self.sample(&provider.routes().all(), now_ms);
        }
    }
}

fn point(before: &Totals, after: &Totals, secs: f64, time: u64, ready: usize) -> Point {
    // Counters only grow, except when a function is removed and deployed
    // again under the same name (a new route): then start from zero.
    let reset = after.all.count < before.all.count;
    let before = if reset { Totals::default() } else { *before };
    let count = after.all.count - before.all.count;
    let mut buckets = [0u64; BUCKETS.len() + 1];
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = after.all.buckets[i].saturating_sub(before.all.buckets[i]);
    }
    let errors = after.errors.saturating_sub(before.errors);
    Point {
        time,
        rps: (count as f64 / secs) as f32,
        error_ratio: if count == 0 { 0.0 } else { (errors as f64 / count as f64) as f32 },
        p50: quantile(0.5, &buckets, count).map(|s| s as f32),
        p99: quantile(0.99, &buckets, count).map(|s| s as f32),
        ready: u32::try_from(ready).unwrap_or(u32::MAX),
    }
}

/// The `q` quantile of `count` observations in non-cumulative `buckets`:
/// linear within the bucket it falls in (from 0 for the first one); in the
/// `+Inf` bucket, the highest finite bound.
fn quantile(q: f64, buckets: &[u64; BUCKETS.len() + 1], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = BUCKETS.get(i) else { return Some(BUCKETS[BUCKETS.len() - 1]) };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            return Some(lower + (upper - lower) * ((rank - below as f64) / n as f64));
        }
        below += n;
    }
    Some(BUCKETS[BUCKETS.len() - 1])
}

#[cfg(test)]
mod tests {
    use ferrofaas_provider::routes::Routes;

    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut b = [0u64; BUCKETS.len() + 1];
        b[0] = 50; // <= 5 ms
        b[2] = 50; // 10..25 ms
        assert_eq!(quantile(0.5, &b, 100), Some(0.005));
        let p99 = quantile(0.99, &b, 100).unwrap();
        assert!((p99 - (0.01 + 0.015 * 49.0 / 50.0)).abs() < 1e-12, "{p99}");
        assert_eq!(quantile(0.5, &b, 0), None);
        let mut slow = [0u64; BUCKETS.len() + 1];
        slow[BUCKETS.len()] = 3; // over 10 s
        assert_eq!(quantile(0.99, &slow, 3), Some(10.0));
    }

    #[test]
    fn a_point_is_small() {
        assert_eq!(std::mem::size_of::<Point>(), 40);
    }

    #[test]
    fn points_are_rates_over_the_interval() {
        let routes = Routes::default();
        let f = FunctionRef::parse("echo").unwrap();
        let route = routes.ensure(&f);
        let history = History::new(Duration::from_secs(2), 3);
        let call = |code, ms| {
            route.stats.started();
            route.stats.finished(code, Duration::from_millis(ms));
        };
        call(200, 1);
        history.sample(&routes.all(), 1_000);
        let first = history.get(&f).points;
        assert_eq!((first.len(), first[0].rps), (1, 0.5), "calls before the first reading count");
        for (code, ms) in [(200, 3), (200, 3), (200, 20), (500, 3)] {
            call(code, ms);
        }
        history.sample(&routes.all(), 3_000);
        let h = history.get(&f);
        assert_eq!(h.interval_seconds, 2.0);
        let p = h.points[1];
        assert_eq!((p.time, p.rps, p.error_ratio, p.ready), (3_000, 2.0, 0.25, 0));
        // Three of four in the first bucket (0..5 ms): the median is 2/3 in.
        assert!((p.p50.unwrap() - 0.005 * 2.0 / 3.0).abs() < 1e-9);
        assert!(p.p99.unwrap() > 0.01 && p.p99.unwrap() <= 0.025);
        for t in [5_000, 7_000, 9_000] {
            history.sample(&routes.all(), t);
        }
        let points = history.get(&f).points;
        assert_eq!(points.iter().map(|p| p.time).collect::<Vec<_>>(), [5_000, 7_000, 9_000], "a ring of 3");
        assert!(points.iter().all(|p| p.rps == 0.0 && p.p50.is_none()));
        routes.remove(&f);
        history.sample(&routes.all(), 11_000);
        assert!(history.get(&f).points.is_empty(), "removed functions are forgotten");
    }
}
