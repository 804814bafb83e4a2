//! RFC 3339 timestamps (UTC), as the OpenFaaS API writes them, and HTTP
//! dates: `jiff`'s and `httpdate`'s. Written in a fixed form (UTC, `Z`;
//! nanoseconds always nine digits when asked, as the API's logs have them);
//! read with any offset. (`jiff` also has the time zones that schedules
//! will need.) Their cost, measured against the hand-written code they
//! replaced, is in docs/PERFORMANCE.md.

use std::time::SystemTime;

use jiff::Timestamp;
use jiff::fmt::temporal::{DateTimeParser, DateTimePrinter};

/// `2026-11-28T11:14:39Z`, or with `.123456789` nanoseconds when `nanos`.
/// A time before 1970 is written as 1970-01-01T00:00:00Z.
pub fn format(t: SystemTime, nanos: bool) -> String {
    let ts = Timestamp::try_from(t)
        .ok()
        .filter(|ts| *ts >= Timestamp::UNIX_EPOCH)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let printer = DateTimePrinter::new().precision(Some(if nanos { 9 } else { 0 }));
    let mut out = String::with_capacity(30);
    // Writing to a String cannot fail.
    let _ = printer.print_timestamp(&ts, &mut out);
    out
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; a time with no
/// offset is refused, since it names no instant.
pub fn parse(s: &str) -> Option<SystemTime> {
    static PARSER: DateTimeParser = DateTimeParser::new();
    let ts = PARSER.parse_timestamp(s).ok()?;
    Some(SystemTime::from(ts))
}

/// Parses an HTTP date (RFC 9110: IMF-fixdate, `Sun, 06 Nov 1994 08:49:37
/// GMT`, and the two obsolete forms recipients must take): the `httpdate`
/// crate's.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats() {
        assert_eq!(format(at(0, 0), false), "1970-01-01T00:00:00Z");
        assert_eq!(format(at(951_782_400, 0), false), "2000-02-29T00:00:00Z");
        assert_eq!(format(at(1_795_864_479, 5), true), "2026-11-28T11:14:39.000000005Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for t in [at(0, 0), at(951_782_400, 0), at(1_795_864_479, 123_456_789), at(4_102_444_799, 1)] {
            assert_eq!(parse(&format(t, true)), Some(t));
            assert_eq!(
                parse(&format(t, false)),
                Some(at(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 0))
            );
        }
        assert_eq!(parse("2026-11-28T12:14:39+01:00"), Some(at(1_795_864_479, 0)));
        assert_eq!(parse("2026-11-28T11:14:39.5Z"), Some(at(1_795_864_479, 500_000_000)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-28 11:14:39",
            "2026-11-28T11:14:39",
            "2026-11-28T11:14:39.Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(format(t, false), "1994-11-06T08:49:37Z");
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t), "RFC 850, obsolete but taken");
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 CET").is_none());
        assert!(parse_http_date("Sun, 32 Nov 1994 08:49:37 GMT").is_none());
    }
}
