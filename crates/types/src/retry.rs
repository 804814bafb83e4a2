//! How asynchronous invocations of a function are retried and how many run
//! at once, as its annotations ask (OpenFaaS's names).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::invalid::InvalidDeployment;
use crate::settings::Settings;

pub const ANNOTATION_ATTEMPTS: &str = "com.openfaas.retry.attempts";
pub const ANNOTATION_CODES: &str = "com.openfaas.retry.codes";
pub const ANNOTATION_MIN_WAIT: &str = "com.openfaas.retry.min_wait";
pub const ANNOTATION_MAX_WAIT: &str = "com.openfaas.retry.max_wait";
pub const ANNOTATION_MAX_INFLIGHT: &str = "com.openfaas.queue.max_inflight";

/// Defaults: 5 attempts, on 408, 429, 500, 502, 503 and 504, waiting 500 ms
/// doubling up to 30 s between them; 10 calls of a function at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub attempts: u32,
    pub codes: Vec<u16>,
    pub min_wait: Duration,
    pub max_wait: Duration,
    pub max_inflight: usize,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            codes: vec![408, 429, 500, 502, 503, 504],
            min_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            max_inflight: 10,
        }
    }
}

impl RetryPolicy {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<RetryPolicy, InvalidDeployment> {
        let mut p = RetryPolicy::default();
        let annotations = Settings::new("annotations", annotations);
        if let Some(n) = annotations.whole(ANNOTATION_ATTEMPTS, 1..=100, "from 1 to 100")? {
            p.attempts = n as u32;
        }
        if let Some(v) = annotations.get(ANNOTATION_CODES) {
            let mut codes = Vec::new();
            for code in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match code.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => codes.push(c),
                    _ => {
                        return Err(annotations
                            .invalid(ANNOTATION_CODES, format!("{code:?} is not an HTTP status code")));
                    }
                }
            }
            p.codes = codes;
        }
        if let Some(d) = annotations.duration(ANNOTATION_MIN_WAIT, "500ms or 30s")? {
            p.min_wait = d;
        }
        if let Some(d) = annotations.duration(ANNOTATION_MAX_WAIT, "500ms or 30s")? {
            p.max_wait = d;
        }
        if p.max_wait < p.min_wait {
            return Err(annotations.invalid(ANNOTATION_MAX_WAIT, "is shorter than the minimum wait".into()));
        }
        if let Some(n) = annotations.whole(ANNOTATION_MAX_INFLIGHT, 1..=1000, "from 1 to 1000")? {
            p.max_inflight = n as usize;
        }
        Ok(p)
    }

    /// The wait before attempt `attempt + 1` (after `attempt` failures):
    /// `min_wait` doubled per failure, at most `max_wait`, then a random
    /// part of it dropped (half to all of it is waited: "equal jitter"), so
    /// that calls that failed together do not come back together. `random`
    /// is in [0, 1).
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.min_wait.saturating_mul(1 << exp).min(self.max_wait);
        full.mul_f64(0.5 + random.clamp(0.0, 1.0) * 0.5)
    }

    pub fn retries_on(&self, status: u16) -> bool {
        self.codes.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_and_every_annotation() {
        assert_eq!(RetryPolicy::from_annotations(&BTreeMap::new()).unwrap(), RetryPolicy::default());
        let p = RetryPolicy::from_annotations(&annotations(&[
            (ANNOTATION_ATTEMPTS, "3"),
            (ANNOTATION_CODES, "500, 503"),
            (ANNOTATION_MIN_WAIT, "100ms"),
            (ANNOTATION_MAX_WAIT, "1s"),
            (ANNOTATION_MAX_INFLIGHT, "2"),
        ]))
        .unwrap();
        assert_eq!((p.attempts, p.codes.clone(), p.max_inflight), (3, vec![500, 503], 2));
        assert!(p.retries_on(503) && !p.retries_on(429));
    }

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter() {
        let p = RetryPolicy {
            min_wait: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1, 0.999_999).as_millis(), 99);
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(9, 0.0), Duration::from_millis(500), "capped at max_wait, halved at most");
    }

    #[test]
    fn bad_annotations_are_named() {
        for (k, v) in [
            (ANNOTATION_ATTEMPTS, "0"),
            (ANNOTATION_CODES, "5xx"),
            (ANNOTATION_MIN_WAIT, "soon"),
            (ANNOTATION_MAX_INFLIGHT, "-1"),
        ] {
            let e = RetryPolicy::from_annotations(&annotations(&[(k, v)])).unwrap_err();
            assert_eq!(e.field, format!("annotations.{k}"));
        }
        let e = RetryPolicy::from_annotations(&annotations(&[
            (ANNOTATION_MIN_WAIT, "10s"),
            (ANNOTATION_MAX_WAIT, "1s"),
        ]))
        .unwrap_err();
        assert_eq!(e.field, format!("annotations.{ANNOTATION_MAX_WAIT}"));
    }
}
