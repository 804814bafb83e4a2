//! The Prometheus text exposition format (0.0.4): histograms and the few
//! helpers every component's `/metrics` uses.

use std::fmt::Write as _;
use std::time::Duration;

/// Content-Type of a metrics page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of duration histograms, in seconds (Prometheus's defaults).
pub const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A duration histogram with the default buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum: f64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    pub buckets: [u64; BUCKETS.len() + 1],
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.count += 1;
        self.sum += secs;
        self.buckets[bucket] += 1;
    }

    /// Writes the `_bucket`, `_sum` and `_count` series; `labels` is the
    /// already rendered label list (`a="x",b="y"`), possibly empty.
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (`\`, `"` and newlines).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_lines() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "code=\"200\"");
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"0.5\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"10\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count{code=\"200\"} 3\n"));
        let mut out = String::new();
        h.write(&mut out, "y", "");
        assert!(out.contains("y_bucket{le=\"+Inf\"} 3\n"), "{out}");
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
