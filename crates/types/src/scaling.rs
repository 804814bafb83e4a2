//! Autoscaling, as a function's labels ask for it (OpenFaaS's label names).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::invalid::InvalidDeployment;
use crate::settings::Settings;

/// Most replicas one function may ask for.
pub const MAX_REPLICAS: u64 = 1000;

pub const LABEL_MIN: &str = "com.openfaas.scale.min";
pub const LABEL_MAX: &str = "com.openfaas.scale.max";
pub const LABEL_TYPE: &str = "com.openfaas.scale.type";
pub const LABEL_TARGET: &str = "com.openfaas.scale.target";
pub const LABEL_TARGET_PROPORTION: &str = "com.openfaas.scale.target-proportion";
pub const LABEL_ZERO: &str = "com.openfaas.scale.zero";
pub const LABEL_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";
pub const LABEL_DOWN_WINDOW: &str = "com.openfaas.scale.down.window";
/// Community Edition's scale-up step, percent of max.
pub const LABEL_FACTOR: &str = "com.openfaas.scale.factor";

/// OpenFaaS Community Edition's scaling: what a function gets whose labels
/// name no `type`, `target` or `target-proportion`. Its alert fires when
/// the function, all replicas together, answers more than [`Self::RATE`]
/// requests a second with 200 (over the last 10 s) for [`Self::FOR`]; each
/// firing adds `factor` percent of max (at least one replica), again every
/// [`Self::REPEAT`] while it fires; once resolved, the function goes back to
/// min, unless it was scaled by hand meanwhile. (OpenFaaS's own rule and
/// AlertManager settings, built in.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertScaling {
    /// `com.openfaas.scale.factor`: 20 by default, 0 turns scaling off.
    pub factor: u64,
}

impl AlertScaling {
    pub const RATE: f64 = 5.0;
    pub const FOR: Duration = Duration::from_secs(5);
    pub const REPEAT: Duration = Duration::from_secs(30);
    pub const DEFAULT_FACTOR: u64 = 20;

    /// Replicas one firing adds, of `max`.
    pub fn step(&self, max: u64) -> u64 {
        (max * self.factor).div_ceil(100).max(1)
    }
}

/// What load is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingType {
    /// Requests per second, per replica.
    Rps,
    /// Requests in flight, per replica.
    Capacity,
    /// CPU use in millicores, per replica.
    Cpu,
}

impl ScalingType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingType::Rps => "rps",
            ScalingType::Capacity => "capacity",
            ScalingType::Cpu => "cpu",
        }
    }
}

/// A function's scaling policy. Defaults: 1 to 20 replicas by
/// [`AlertScaling`] (Community Edition's rule), never to zero. With a
/// `type`, `target` or `target-proportion` label, the replicas track a
/// target instead (as OpenFaaS Pro's labels mean): 50 requests per second
/// per replica by default, aiming at 90% of that; scale-downs wait for the
/// load to stay low for 5 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingPolicy {
    pub min: u64,
    pub max: u64,
    pub kind: ScalingType,
    /// Load per replica.
    pub target: f64,
    /// Replicas are added when the load per replica passes
    /// `target * target_proportion`.
    pub target_proportion: f64,
    /// Scale to zero after `zero_duration` without requests.
    pub zero: bool,
    pub zero_duration: Duration,
    /// A scale-down takes the highest recommendation of this long a window.
    pub down_window: Duration,
    /// `Some`: Community Edition's alert rule decides, not the target.
    pub alert: Option<AlertScaling>,
    /// `com.openfaas.scale.factor`: how far an alert scales (the built-in
    /// rule's, or Alertmanager's `POST /system/alert`); 0 turns alerts off.
    pub factor: u64,
}

impl Default for ScalingPolicy {
    fn default() -> ScalingPolicy {
        ScalingPolicy {
            min: 1,
            max: 20,
            kind: ScalingType::Rps,
            target: 50.0,
            target_proportion: 0.90,
            zero: false,
            zero_duration: Duration::from_secs(15 * 60),
            down_window: Duration::from_secs(5 * 60),
            alert: Some(AlertScaling { factor: AlertScaling::DEFAULT_FACTOR }),
            factor: AlertScaling::DEFAULT_FACTOR,
        }
    }
}

impl ScalingPolicy {
    /// The policy the labels give; a label that cannot be read is an error
    /// naming it.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<ScalingPolicy, InvalidDeployment> {
        let mut p = ScalingPolicy::default();
        let labels = Settings::new("labels", labels);
        let replicas = format!("of replicas up to {MAX_REPLICAS}");
        if let Some(n) = labels.whole(LABEL_MIN, 0..=MAX_REPLICAS, &replicas)? {
            p.min = n;
        }
        if let Some(n) = labels.whole(LABEL_MAX, 0..=MAX_REPLICAS, &replicas)? {
            if n == 0 {
                return Err(labels.invalid(LABEL_MAX, "must be at least 1".into()));
            }
            p.max = n;
        }
        if p.min > p.max {
            return Err(labels.invalid(LABEL_MIN, format!("{} is above {LABEL_MAX} ({})", p.min, p.max)));
        }
        if let Some(v) = labels.get(LABEL_TYPE) {
            p.kind = match v {
                "rps" => ScalingType::Rps,
                "capacity" => ScalingType::Capacity,
                "cpu" => ScalingType::Cpu,
                _ => {
                    return Err(labels.invalid(LABEL_TYPE, format!("{v:?} is not one of rps, capacity, cpu")));
                }
            };
        }
        if let Some(v) = labels.get(LABEL_TARGET) {
            p.target = match v.parse::<f64>() {
                Ok(t) if t.is_finite() && t > 0.0 => t,
                _ => return Err(labels.invalid(LABEL_TARGET, format!("{v:?} is not a number above 0"))),
            };
        }
        if let Some(v) = labels.get(LABEL_TARGET_PROPORTION) {
            p.target_proportion = match v.parse::<f64>() {
                Ok(t) if t > 0.0 && t <= 1.0 => t,
                _ => {
                    return Err(
                        labels.invalid(LABEL_TARGET_PROPORTION, format!("{v:?} is not a number in (0, 1]"))
                    );
                }
            };
        }
        if let Some(v) = labels.get(LABEL_ZERO) {
            p.zero = match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(labels.invalid(LABEL_ZERO, format!("{v:?} is not true or false"))),
            };
        }
        if let Some(d) = labels.duration(LABEL_ZERO_DURATION, "30s or 15m")? {
            p.zero_duration = d;
        }
        if let Some(d) = labels.duration(LABEL_DOWN_WINDOW, "30s or 15m")? {
            p.down_window = d;
        }
        let factor = labels.whole(LABEL_FACTOR, 0..=100, "from 0 to 100 (percent)")?;
        let targeted =
            [LABEL_TYPE, LABEL_TARGET, LABEL_TARGET_PROPORTION].iter().any(|l| labels.get(l).is_some());
        p.factor = factor.unwrap_or(AlertScaling::DEFAULT_FACTOR);
        p.alert = (!targeted).then_some(AlertScaling { factor: p.factor });
        Ok(p)
    }

    /// Does the autoscaler manage this function? Not when min = max (then
    /// its replicas are what it was deployed or scaled to), nor with a
    /// factor of 0 (Community Edition's way to turn it off); scaling to
    /// zero still applies.
    pub fn autoscaled(&self) -> bool {
        (self.min != self.max && self.alert.is_none_or(|a| a.factor > 0)) || self.zero
    }

    /// Replicas per unit of load at which one more replica is wanted.
    pub fn threshold(&self) -> f64 {
        self.target * self.target_proportion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let p = ScalingPolicy::from_labels(&BTreeMap::new()).unwrap();
        assert_eq!(p, ScalingPolicy::default());
        assert!(p.autoscaled());
        assert_eq!((p.min, p.max), (1, 20));
        assert_eq!(p.alert, Some(AlertScaling { factor: 20 }), "Community Edition's rule");
        assert_eq!(p.alert.unwrap().step(p.max), 4);
        // Any target label: the target decides.
        let p = ScalingPolicy::from_labels(&labels(&[(LABEL_TARGET, "10")])).unwrap();
        assert_eq!(p.alert, None);
        assert_eq!(p.threshold(), 9.0);
        let p = ScalingPolicy::from_labels(&labels(&[(LABEL_TYPE, "rps")])).unwrap();
        assert_eq!((p.alert, p.threshold()), (None, 45.0));
    }

    #[test]
    fn the_factor_steps_and_zero_turns_it_off() {
        let p = ScalingPolicy::from_labels(&labels(&[(LABEL_MAX, "2"), (LABEL_FACTOR, "100")])).unwrap();
        assert_eq!(p.alert.unwrap().step(p.max), 2);
        let p = ScalingPolicy::from_labels(&labels(&[(LABEL_MAX, "2")])).unwrap();
        assert_eq!(p.alert.unwrap().step(p.max), 1, "at least one");
        let off = ScalingPolicy::from_labels(&labels(&[(LABEL_FACTOR, "0")])).unwrap();
        assert!(!off.autoscaled());
        assert!(ScalingPolicy::from_labels(&labels(&[(LABEL_FACTOR, "101")])).is_err());
    }

    #[test]
    fn every_label_read() {
        let p = ScalingPolicy::from_labels(&labels(&[
            (LABEL_MIN, "2"),
            (LABEL_MAX, "5"),
            (LABEL_TYPE, "capacity"),
            (LABEL_TARGET, "10"),
            (LABEL_TARGET_PROPORTION, "0.5"),
            (LABEL_ZERO, "true"),
            (LABEL_ZERO_DURATION, "30s"),
            (LABEL_DOWN_WINDOW, "1m"),
        ]))
        .unwrap();
        assert_eq!(
            (p.min, p.max, p.kind, p.target, p.target_proportion),
            (2, 5, ScalingType::Capacity, 10.0, 0.5)
        );
        assert!(p.zero);
        assert_eq!((p.zero_duration, p.down_window), (Duration::from_secs(30), Duration::from_secs(60)));
    }

    #[test]
    fn min_equal_to_max_turns_it_off() {
        let p = ScalingPolicy::from_labels(&labels(&[(LABEL_MIN, "3"), (LABEL_MAX, "3")])).unwrap();
        assert!(!p.autoscaled());
    }

    #[test]
    fn bad_labels_are_named() {
        for (label, value, says) in [
            (LABEL_MIN, "-1", "whole number"),
            (LABEL_MAX, "0", "at least 1"),
            (LABEL_TYPE, "memory", "rps, capacity, cpu"),
            (LABEL_TARGET, "0", "above 0"),
            (LABEL_TARGET_PROPORTION, "1.5", "(0, 1]"),
            (LABEL_ZERO, "yes", "true or false"),
            (LABEL_ZERO_DURATION, "soon", "duration"),
            (LABEL_DOWN_WINDOW, "five", "duration"),
        ] {
            let e = ScalingPolicy::from_labels(&labels(&[(label, value)])).unwrap_err();
            assert_eq!(e.field, format!("labels.{label}"));
            assert!(e.message.contains(says), "{label}: {}", e.message);
        }
        let e = ScalingPolicy::from_labels(&labels(&[(LABEL_MIN, "5"), (LABEL_MAX, "2")])).unwrap_err();
        assert_eq!(e.field, format!("labels.{LABEL_MIN}"));
    }
}
