//! Prometheus metrics pages (the text format 0.0.4, which OpenFaaS's
//! components serve): written by the `prometheus-client` crate, from
//! figures the components keep their own way (atomics and small tables on
//! the request path) and read at scrape time.
//!
//! A page is a [`Page`]: a function that writes metric families through
//! [`Families`]; [`render`] turns it into the page's text.

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Content-Type of a metrics page.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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

    /// (upper bound, count) per bucket, `+Inf` last, as the encoder takes
    /// them.
    fn bounds(&self) -> [(f64, u64); BUCKETS.len() + 1] {
        let mut out = [(f64::INFINITY, 0); BUCKETS.len() + 1];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), self.buckets[i]);
        }
        out
    }
}

/// The labels of a series that has none.
pub const NO_LABELS: [(&str, &str); 0] = [];

/// The kinds of series a page has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Written with a `_total` suffix the name must not have.
    Counter,
    Gauge,
    /// A count whose name OpenFaaS fixed without `_total`
    /// (`gateway_function_invocation_started`), which the encoder would add
    /// to a counter: written as `untyped`, as Prometheus reads any series.
    Untyped,
}

/// Where a [`Page`] writes its metric families.
pub struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Families<'_> {
    /// A family of `kind`, one series per label set (whole numbers or
    /// real ones).
    pub fn values<L: EncodeLabelSet, V: EncodeCounterValue + EncodeGaugeValue>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let metric_type = match kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Untyped => MetricType::Unknown,
        };
        let mut metric = self.encoder.encode_descriptor(name, help, None, metric_type)?;
        for (labels, value) in series {
            let mut one = metric.encode_family(&labels)?;
            match kind {
                Kind::Counter => one.encode_counter::<NoLabelSet, _, u64>(&value, None)?,
                Kind::Gauge | Kind::Untyped => one.encode_gauge(&value)?,
            }
        }
        Ok(())
    }

    /// A family of duration histograms.
    pub fn histograms<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, Histogram)>,
    ) -> fmt::Result {
        let mut metric = self.encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in series {
            metric.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                h.sum,
                h.count,
                &h.bounds(),
                None,
            )?;
        }
        Ok(())
    }
}

/// What a metrics page writes, from figures it owns (taken at scrape time).
pub trait Page: Send + Sync + 'static {
    fn write(&self, families: &mut Families<'_>) -> fmt::Result;
}

struct AsCollector<P>(P);

impl<P> fmt::Debug for AsCollector<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metrics page")
    }
}

impl<P: Page> Collector for AsCollector<P> {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        self.0.write(&mut Families { encoder })
    }
}

/// The text of a page.
pub fn render(page: impl Page) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AsCollector(page)));
    let mut out = String::with_capacity(4096);
    // Writing to a String fails only if a page's own figures do.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(Histogram);

    impl Page for One {
        fn write(&self, f: &mut Families<'_>) -> fmt::Result {
            f.histograms("x_seconds", "X.", [([("code", "200")], self.0)])?;
            f.histograms("y", "Y.", [(NO_LABELS, self.0)])?;
            f.values("z", Kind::Counter, "Z.", [([("function_name", "a\"b\\c\nd")], 3u64)])?;
            f.values("started", Kind::Untyped, "S.", [([("f", "g")], 4u64)])
        }
    }

    #[test]
    fn histograms_counters_and_escapes() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(20));
        let out = render(One(h));
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"0.5\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"10\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{code=\"200\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count{code=\"200\"} 3\n"));
        assert_eq!(out.matches("le=\"+Inf\"").count(), 2, "one +Inf bucket per histogram: {out}");
        assert!(out.contains("y_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(
            out.contains("# TYPE z_total counter\nz_total{function_name=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE started untyped\nstarted{f=\"g\"} 4\n"), "{out}");
    }
}
