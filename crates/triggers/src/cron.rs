//! Schedules: five-field cron expressions (`*/5 * * * *`), the nicknames
//! (`@hourly`, `@daily`, ...), and `@every <duration>`, each in a time zone
//! (`CRON_TZ=Europe/Berlin 0 9 * * 1-5`, or one given beside it).
//!
//! Cron fields are minute (0-59), hour (0-23), day of the month (1-31),
//! month (1-12 or `jan`-`dec`) and day of the week (0-7, 0 and 7 both
//! Sunday, or `sun`-`sat`); each is `*`, a value, a range `a-b`, any of
//! them with a step `/n`, or a comma-separated list of those. As in Vixie
//! cron, when both day fields are restricted a day matching either fires.
//!
//! Times are civil times in the zone: a time skipped by a clock change
//! (spring forward) fires at the first instant after the gap, and a time
//! that happens twice (fall back) fires the first time only.
//!
//! `@every` slots are counted from the Unix epoch, so every gateway
//! computes the same slots (which is what lets several gateways share a
//! schedule and fire it once).

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// The shortest `@every` interval.
pub const MIN_EVERY_SECS: u64 = 1;

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
    text: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Every(u64),
    Cron(Fields),
}

#[derive(Clone, Debug, PartialEq)]
struct Fields {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Was each day field given as `*` (for the either-day rule)?
    any_day: bool,
    any_weekday: bool,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.kind == other.kind && self.tz == other.tz
    }
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses `text`, in time zone `zone` (an IANA name; `None`: UTC, or
    /// the `CRON_TZ=`/`TZ=` prefix of the text). The error says what is
    /// wrong, for a 400 that names the annotation.
    pub fn parse(text: &str, zone: Option<&str>) -> Result<Schedule, String> {
        let mut rest = text.trim();
        let mut zone_name = zone.map(str::trim).filter(|z| !z.is_empty());
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(after) = rest.strip_prefix(prefix) {
                let (name, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                if zone_name.is_some_and(|z| z != name) {
                    return Err(format!(
                        "the schedule names time zone {name:?} and the time-zone annotation {zone_name:?}"
                    ));
                }
                zone_name = Some(name);
                rest = tail.trim();
            }
        }
        let tz = match zone_name {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|_| format!("unknown time zone {name:?} (an IANA name such as Europe/Berlin)"))?,
        };
        let kind = parse_kind(rest)?;
        let schedule = Schedule { kind, tz, text: text.trim().to_owned() };
        // Feb 30 and the like parse but never come.
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(format!("schedule {:?} never fires", schedule.text));
        }
        Ok(schedule)
    }

    /// As it was written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `t` that the schedule fires; `None`
    /// if it never does again (within the next five years).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(secs) => {
                let secs = *secs as i64;
                let now = t.as_second();
                let next = now.div_euclid(secs).checked_add(1)?.checked_mul(secs)?;
                Timestamp::from_second(next).ok()
            }
            Kind::Cron(fields) => fields.next_after(t, &self.tz),
        }
    }

    /// The last time at or before `t` that the schedule fired, looking back
    /// at most `window` seconds.
    pub fn last_at_or_before(&self, t: Timestamp, window: u64) -> Option<Timestamp> {
        let start = t.checked_sub((window as i64).seconds()).ok()?;
        let mut last = None;
        let mut at = self.next_after(start.checked_sub(1.second()).ok()?)?;
        while at <= t {
            if at >= start {
                last = Some(at);
            }
            at = self.next_after(at)?;
        }
        last
    }
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    if let Some(every) = text.strip_prefix("@every") {
        let every = every.trim();
        let d = ferrofaas_types::duration::parse(every)
            .ok_or_else(|| format!("@every {every:?}: a duration such as 30s, 5m or 1h30m is required"))?;
        if d.subsec_nanos() != 0 || d.as_secs() < MIN_EVERY_SECS {
            return Err(format!("@every {every}: whole seconds, at least {MIN_EVERY_SECS}s"));
        }
        return Ok(Kind::Every(d.as_secs()));
    }
    let text = match text {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        t if t.starts_with('@') => {
            return Err(format!(
                "unknown schedule {t:?} (@yearly, @monthly, @weekly, @daily, @hourly, @every <duration>)"
            ));
        }
        t => t,
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "{text:?}: five fields are required (minute hour day-of-month month day-of-week), got {}",
            parts.len()
        ));
    }
    let weekdays = field(parts[4], "day of the week", 0, 7, &WEEKDAYS)?;
    // 7 is Sunday too.
    let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
    Ok(Kind::Cron(Fields {
        minutes: field(parts[0], "minute", 0, 59, &[])?,
        hours: field(parts[1], "hour", 0, 23, &[])?,
        days: field(parts[2], "day of the month", 1, 31, &[])?,
        months: field(parts[3], "month", 1, 12, &MONTHS)?,
        weekdays,
        any_day: parts[2] == "*" || parts[2] == "?",
        any_weekday: parts[4] == "*" || parts[4] == "?",
    }))
}

/// One field as a bit set of its values.
fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u32 + min);
        }
        let v: u32 = s.parse().map_err(|_| format!("{what} {s:?} is not a number"))?;
        if v < min || v > max {
            return Err(format!("{what} {v} is out of range ({min}-{max})"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("{what}: step {s:?} is not a number"))?;
                if step == 0 || step > max {
                    return Err(format!("{what}: step {step} is out of range (1-{max})"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" | "?" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15`: from 5 to the end, every 15.
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo > hi {
            return Err(format!("{what}: range {range:?} goes backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Fields {
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = t.to_zoned(tz.clone()).datetime();
        // The next whole minute.
        let mut dt: DateTime =
            local.date().at(local.hour(), local.minute(), 0, 0).checked_add(1.minute()).ok()?;
        let limit = local.date().checked_add(5.years()).ok()?;
        while dt.date() <= limit {
            if self.months & (1 << dt.month()) == 0 {
                let first = dt.date().first_of_month().checked_add(1.month()).ok()?;
                dt = first.at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt = dt.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = dt.date().at(dt.hour(), 0, 0, 0).checked_add(1.hour()).ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            if at > t {
                return Some(at);
            }
            // The second pass through a repeated hour (or before `t`).
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, zone: Option<&str>, after: &str) -> String {
        Schedule::parse(schedule, zone).unwrap().next_after(ts(after)).unwrap().to_string()
    }

    #[test]
    fn cron_fields() {
        assert_eq!(next("*/5 * * * *", None, "2026-12-02T10:02:30Z"), "2026-12-02T10:05:00Z");
        assert_eq!(next("*/5 * * * *", None, "2026-12-02T10:05:00Z"), "2026-12-02T10:10:00Z");
        assert_eq!(next("0 9 * * 1-5", None, "2026-12-04T09:00:00Z"), "2026-12-07T09:00:00Z"); // Fri -> Mon
        assert_eq!(next("30 2 1 * *", None, "2026-12-02T00:00:00Z"), "2027-01-01T02:30:00Z");
        assert_eq!(next("0 0 29 feb *", None, "2026-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
        assert_eq!(next("15,45 */6 * jan-mar *", None, "2026-12-02T00:00:00Z"), "2027-01-01T00:15:00Z");
        assert_eq!(next("0 12 * * sun", None, "2026-12-02T00:00:00Z"), "2026-12-06T12:00:00Z");
        assert_eq!(next("0 12 * * 7", None, "2026-12-02T00:00:00Z"), "2026-12-06T12:00:00Z");
        assert_eq!(next("5/20 * * * *", None, "2026-12-02T10:06:00Z"), "2026-12-02T10:25:00Z");
        // Both day fields restricted: either one (the 1st, or a Monday).
        assert_eq!(next("0 0 1 * mon", None, "2026-12-02T00:00:00Z"), "2026-12-07T00:00:00Z");
        assert_eq!(next("@hourly", None, "2026-12-02T10:59:59Z"), "2026-12-02T11:00:00Z");
        assert_eq!(next("@daily", None, "2026-12-02T10:00:00Z"), "2026-12-03T00:00:00Z");
        assert_eq!(next("@weekly", None, "2026-12-02T10:00:00Z"), "2026-12-06T00:00:00Z");
        assert_eq!(next("@yearly", None, "2026-12-02T10:00:00Z"), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn every_counts_from_the_epoch() {
        assert_eq!(next("@every 30s", None, "2026-12-02T10:00:10Z"), "2026-12-02T10:00:30Z");
        assert_eq!(next("@every 30s", None, "2026-12-02T10:00:30Z"), "2026-12-02T10:01:00Z");
        assert_eq!(next("@every 1h", None, "2026-12-02T10:20:00Z"), "2026-12-02T11:00:00Z");
        assert_eq!(next("@every 1s", None, "2026-12-02T10:00:00.5Z"), "2026-12-02T10:00:01Z");
    }

    #[test]
    fn time_zones_and_clock_changes() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(next("0 9 * * *", Some("Europe/Berlin"), "2026-12-02T10:00:00Z"), "2026-12-03T08:00:00Z");
        assert_eq!(
            next("CRON_TZ=Europe/Berlin 0 9 * * *", None, "2026-12-02T10:00:00Z"),
            "2026-12-03T08:00:00Z"
        );
        // 2027-03-28 02:30 does not exist in Berlin: fires at 03:00 CEST (01:00 UTC).
        assert_eq!(next("30 2 * * *", Some("Europe/Berlin"), "2027-03-27T12:00:00Z"), "2027-03-28T01:30:00Z");
        // 2027-10-31 02:30 happens twice in Berlin: the first (00:30 UTC) only.
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let first = s.next_after(ts("2027-10-30T12:00:00Z")).unwrap();
        assert_eq!(first.to_string(), "2027-10-31T00:30:00Z");
        assert_eq!(s.next_after(first).unwrap().to_string(), "2027-11-01T01:30:00Z");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let err = |s: &str, z: Option<&str>| Schedule::parse(s, z).unwrap_err();
        assert!(err("* * * *", None).contains("five fields"));
        assert!(err("60 * * * *", None).contains("minute 60 is out of range"));
        assert!(err("* 24 * * *", None).contains("hour 24"));
        assert!(err("*/0 * * * *", None).contains("step 0"));
        assert!(err("5-1 * * * *", None).contains("backwards"));
        assert!(err("* * * foo *", None).contains("month \"foo\""));
        assert!(err("0 0 30 feb *", None).contains("never fires"));
        assert!(err("@sometimes", None).contains("unknown schedule"));
        assert!(err("@every 0s", None).contains("at least 1s"));
        assert!(err("@every 1.5s", None).contains("whole seconds"));
        assert!(err("@every soon", None).contains("a duration"));
        assert!(err("* * * * *", Some("Mars/Olympus")).contains("unknown time zone"));
        assert!(err("CRON_TZ=UTC * * * * *", Some("Europe/Berlin")).contains("time zone"));
    }

    #[test]
    fn the_last_slot_before_a_time() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let t = ts("2026-12-02T10:20:00Z");
        assert_eq!(s.last_at_or_before(t, 3600).unwrap().to_string(), "2026-12-02T10:00:00Z");
        assert_eq!(s.last_at_or_before(t, 600), None);
        assert_eq!(
            s.last_at_or_before(ts("2026-12-02T10:00:00Z"), 60).unwrap().to_string(),
            "2026-12-02T10:00:00Z"
        );
    }
}
