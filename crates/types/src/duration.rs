//! Durations as OpenFaaS writes them: Go duration strings (`10s`, `1m30s`,
//! `500ms`, `1.5h`) or a bare number of seconds (`10`).

use std::time::Duration;

/// Parses a Go-style duration, or a bare number meaning seconds.
///
/// Returns `None` for anything else (negative values included).
pub fn parse(input: &str) -> Option<Duration> {
    let s = input.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(secs) = parse_decimal(s) {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value = parse_decimal(&rest[..number_len])?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * nanos_per_unit;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

/// A span of days (`7d`) or a duration as [`parse`] reads it (`48h`): how
/// retentions and time ranges are written.
pub fn parse_days(input: &str) -> Option<Duration> {
    match input.trim().strip_suffix('d') {
        Some(days) => Some(Duration::from_secs(days.parse::<u64>().ok()?.checked_mul(86_400)?)),
        None => parse(input),
    }
}

/// A plain non-negative decimal number: digits with at most one dot.
fn parse_decimal(s: &str) -> Option<f64> {
    let valid = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|&c| c == '.').count() <= 1
        && s.chars().any(|c| c.is_ascii_digit());
    if valid { s.parse().ok() } else { None }
}

/// Formats a duration the way it is parsed back: `1.5s`, `250ms`, `0s`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_or_durations() {
        assert_eq!(parse_days("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_days("48h"), Some(Duration::from_secs(48 * 3600)));
        assert_eq!(parse_days("1.5d"), None);
        assert_eq!(parse_days("d"), None);
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("1.5"), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse("3µs"), Some(Duration::from_micros(3)));
        assert_eq!(parse("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse(" 2s "), Some(Duration::from_secs(2)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "s", "10x", "-1s", "-5", "1..2s", "ten", "1s2", ".s", "1e3"] {
            assert_eq!(parse(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in
            [Duration::ZERO, Duration::from_secs(10), Duration::from_millis(250), Duration::from_millis(1500)]
        {
            assert_eq!(parse(&format(d)), Some(d), "{}", format(d));
        }
    }
}
