//! Quotas: how much a namespace may use per period (invocations,
//! GB-seconds) and at once (concurrent calls).

use serde::{Deserialize, Serialize};

/// A calendar period, in UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Minute,
    Hour,
    Day,
    #[default]
    Month,
}

impl Period {
    /// The period that holds `us` (µs since the epoch): its start and end.
    pub fn window(self, us: u64) -> (u64, u64) {
        let fixed = |len: u64| (us - us % len, us - us % len + len);
        match self {
            Period::Minute => fixed(60_000_000),
            Period::Hour => fixed(3_600_000_000),
            Period::Day => fixed(86_400_000_000),
            Period::Month => month_of(us).unwrap_or_else(|| fixed(30 * 86_400_000_000)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// The month (UTC) that holds `us`: its first microsecond and the next
/// month's.
fn month_of(us: u64) -> Option<(u64, u64)> {
    let t = jiff::Timestamp::from_microsecond(i64::try_from(us).ok()?).ok()?;
    let date = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    month_window(date.year(), date.month())
}

/// Month `month` (1-12) of `year`, UTC: its first microsecond and the next
/// month's (a bill's range).
pub fn month_window(year: i16, month: i8) -> Option<(u64, u64)> {
    let start = jiff::civil::Date::new(year, month, 1).ok()?.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    let end = start.checked_add(jiff::Span::new().months(1)).ok()?;
    let micros = |z: &jiff::Zoned| u64::try_from(z.timestamp().as_microsecond()).ok();
    Some((micros(&start)?, micros(&end)?))
}

/// The quota of a namespace: each limit is optional, one at least is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    #[serde(default)]
    pub period: Period,
    /// Invocations started per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations: Option<u64>,
    /// GB-seconds used per period (the calls in flight when it is reached
    /// still finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_seconds: Option<f64>,
    /// Invocations in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u64>,
}

impl Quota {
    pub fn validate(&self) -> Result<(), String> {
        if self.invocations.is_none() && self.gb_seconds.is_none() && self.concurrent.is_none() {
            return Err("quota: set invocations, gbSeconds or concurrent".to_owned());
        }
        if let Some(gb) = self.gb_seconds
            && (!gb.is_finite() || !(0.0..=1e12).contains(&gb))
        {
            return Err(format!("gbSeconds: {gb} is not an amount from 0 to 1e12"));
        }
        if self.concurrent == Some(0) {
            return Err(
                "concurrent: 0 would refuse every call; remove the quota or set 1 at least".to_owned()
            );
        }
        Ok(())
    }

    /// The GB-second limit in MiB-microseconds.
    pub fn mib_us(&self) -> Option<u64> {
        self.gb_seconds.map(|gb| (gb * 1024.0 * 1e6) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let day = 86_400_000_000;
        assert_eq!(Period::Minute.window(61_000_000), (60_000_000, 120_000_000));
        assert_eq!(Period::Day.window(day + 5), (day, 2 * day));
        // 1970-02-10 is in February: 31 days in, 28 long.
        assert_eq!(Period::Month.window(40 * day), (31 * day, 59 * day));
        assert_eq!(month_window(1970, 2), Some((31 * day, 59 * day)));
        assert_eq!(month_window(1970, 13), None);
    }

    #[test]
    fn quotas_are_checked() {
        let q: Quota = serde_json::from_str(r#"{"invocations": 5, "period": "hour"}"#).unwrap();
        assert_eq!((q.period, q.invocations), (Period::Hour, Some(5)));
        assert!(q.validate().is_ok());
        let none: Quota = serde_json::from_str(r#"{}"#).unwrap();
        assert!(none.validate().is_err());
        assert!(serde_json::from_str::<Quota>(r#"{"period": "week", "invocations": 1}"#).is_err());
        let bad = Quota { gb_seconds: Some(-1.0), ..q.clone() };
        assert!(bad.validate().unwrap_err().starts_with("gbSeconds"));
        assert_eq!(Quota { gb_seconds: Some(1.0), ..q }.mib_us(), Some(1_024_000_000));
    }
}
