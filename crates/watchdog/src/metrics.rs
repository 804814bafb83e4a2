//! The watchdog's Prometheus metrics, with the names of-watchdog uses:
//! `http_requests_total{code,method}`, `http_request_duration_seconds{code,method}`
//! and `http_requests_in_flight`.
//!
//! Recording is a short critical section on a small table (one row per method
//! and status code seen), cheap next to the cost of any request.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::Method;

/// Upper bounds of the duration histogram, in seconds (Prometheus's defaults).
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    in_flight: AtomicI64,
    series: Mutex<Vec<Series>>,
}

struct Series {
    method: &'static str,
    code: u16,
    count: u64,
    sum: f64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
}

/// The `method` label, lowercase like Go's promhttp; unknown methods share one
/// label so that clients cannot grow the table.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        Method::CONNECT => "connect",
        Method::TRACE => "trace",
        _ => "other",
    }
}

impl Metrics {
    /// Counts a request as in flight; returns how many are, this one included.
    pub fn request_started(&self) -> i64 {
        self.in_flight.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records a finished request (and ends its in-flight count).
    pub fn request_finished(&self, method: &Method, code: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let method = method_label(method);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let row = match series.iter().position(|s| s.code == code && s.method == method) {
            Some(i) => &mut series[i],
            None => {
                series.push(Series { method, code, count: 0, sum: 0.0, buckets: [0; BUCKETS.len() + 1] });
                let last = series.len() - 1;
                &mut series[last]
            }
        };
        row.count += 1;
        row.sum += secs;
        row.buckets[bucket] += 1;
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut series: Vec<_> = {
            let guard = self.series.lock().unwrap_or_else(|e| e.into_inner());
            guard.iter().map(|s| (s.method, s.code, s.count, s.sum, s.buckets)).collect()
        };
        series.sort_by_key(|&(method, code, ..)| (method, code));
        let mut out = String::with_capacity(512 + series.len() * 1024);
        out.push_str("# HELP http_requests_in_flight Number of requests in flight.\n");
        out.push_str("# TYPE http_requests_in_flight gauge\n");
        let _ = writeln!(out, "http_requests_in_flight {}", self.in_flight().max(0));

        out.push_str("# HELP http_requests_total Total number of requests served.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for (method, code, count, ..) in &series {
            let _ = writeln!(out, "http_requests_total{{code=\"{code}\",method=\"{method}\"}} {count}");
        }

        out.push_str("# HELP http_request_duration_seconds Duration of requests.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (method, code, count, sum, buckets) in &series {
            let labels = format!("code=\"{code}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += buckets[i];
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histogram() {
        let m = Metrics::default();
        m.request_started();
        m.request_started();
        assert_eq!(m.in_flight(), 2);
        m.request_finished(&Method::POST, 200, Duration::from_millis(3));
        m.request_finished(&Method::POST, 200, Duration::from_millis(300));
        m.request_started();
        m.request_finished(&Method::from_bytes(b"BREW").unwrap(), 504, Duration::from_secs(20));
        assert_eq!(m.in_flight(), 0);
        let text = m.render();
        assert!(text.contains("http_requests_in_flight 0\n"), "{text}");
        assert!(text.contains("http_requests_total{code=\"200\",method=\"post\"} 2\n"), "{text}");
        assert!(text.contains("http_requests_total{code=\"504\",method=\"other\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{code=\"200\",method=\"post\",le=\"0.005\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{code=\"200\",method=\"post\",le=\"0.25\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{code=\"200\",method=\"post\",le=\"0.5\"} 2\n"
            )
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{code=\"504\",method=\"other\",le=\"10\"} 0\n"
            )
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{code=\"504\",method=\"other\",le=\"+Inf\"} 1\n"
            )
        );
        assert!(text.contains("http_request_duration_seconds_count{code=\"200\",method=\"post\"} 2\n"));
    }
}
