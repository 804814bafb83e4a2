//! The watchdog's Prometheus metrics, with the names of-watchdog uses:
//! `http_requests_total{code,method}`, `http_request_duration_seconds{code,method}`
//! and `http_requests_in_flight`; and `process_cpu_seconds_total`, the CPU
//! time of the watchdog with the function's processes (those running and
//! those it has reaped), which a gateway reads for `cpu` autoscaling where
//! it cannot read the replica's container (a task on another Swarm node);
//! and `process_resident_memory_bytes` (theirs, live), for usage there.
//!
//! Recording is a short critical section on a small table (one row per method
//! and status code seen), cheap next to the cost of any request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ferrofaas_types::prom::{self, Histogram, Kind};
use http::Method;

#[derive(Default)]
pub struct Metrics {
    in_flight: AtomicI64,
    /// One row per (method, code) seen.
    series: Mutex<Vec<(&'static str, u16, Histogram)>>,
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
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        match series.iter_mut().find(|(m, c, _)| *c == code && *m == method) {
            Some((_, _, h)) => h.observe(elapsed),
            None => {
                let mut h = Histogram::default();
                h.observe(elapsed);
                series.push((method, code, h));
            }
        }
    }

    /// The metrics page.
    pub fn render(&self) -> String {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner()).clone();
        series.sort_by_key(|&(method, code, _)| (method, code));
        let cpu_seconds = ferrofaas_types::procfs::tree_cpu_seconds(std::process::id(), true);
        let memory_bytes = ferrofaas_types::procfs::tree_rss_bytes(std::process::id());
        prom::render(Figures {
            in_flight: self.in_flight().max(0).unsigned_abs(),
            series,
            cpu_seconds,
            memory_bytes,
        })
    }
}

/// What a scrape read.
struct Figures {
    in_flight: u64,
    series: Vec<(&'static str, u16, Histogram)>,
    cpu_seconds: Option<f64>,
    memory_bytes: Option<u64>,
}

impl prom::Page for Figures {
    fn write(&self, f: &mut prom::Families<'_>) -> std::fmt::Result {
        let labels =
            |method: &'static str, code: u16| [("code", code.to_string()), ("method", method.to_owned())];
        f.values(
            "http_requests_in_flight",
            Kind::Gauge,
            "Number of requests in flight.",
            [(prom::NO_LABELS, self.in_flight)],
        )?;
        f.values(
            "http_requests",
            Kind::Counter,
            "Total number of requests served.",
            self.series.iter().map(|&(method, code, h)| (labels(method, code), h.count)),
        )?;
        f.histograms(
            "http_request_duration_seconds",
            "Duration of requests.",
            self.series.iter().map(|&(method, code, h)| (labels(method, code), h)),
        )?;
        f.values(
            "process_cpu_seconds",
            Kind::Counter,
            "CPU time of the watchdog and the function's processes, in seconds.",
            self.cpu_seconds.map(|s| (prom::NO_LABELS, s)),
        )?;
        f.values(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory of the watchdog and the function's processes, in bytes.",
            self.memory_bytes.map(|b| (prom::NO_LABELS, b)),
        )
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
        // Some CPU time to show (the clock counts in ticks of 10 ms).
        let busy = std::time::Instant::now();
        while busy.elapsed() < Duration::from_millis(60) {
            std::hint::black_box(busy.elapsed());
        }
        let text = m.render();
        assert!(text.contains("http_requests_in_flight 0\n"), "{text}");
        let cpu = text.lines().find_map(|l| l.strip_prefix("process_cpu_seconds_total ")).expect(&text);
        assert!(cpu.parse::<f64>().unwrap() > 0.0, "{cpu}");
        let rss = text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).expect(&text);
        assert!(rss.parse::<u64>().unwrap() > 1 << 20, "{rss}");
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
