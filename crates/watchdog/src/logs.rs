//! What the function prints goes to the watchdog's own output, line by line,
//! prefixed with the time and the stream it came from (`prefix_logs`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines longer than this are split, so a function cannot make the watchdog
/// buffer without bound.
const MAX_LINE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Copies `reader` to the watchdog's stdout or stderr (as `stream` says) line by
/// line until end of file.
pub async fn forward_lines(mut reader: impl AsyncRead + Unpin, stream: Stream, prefix: bool) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            write_line(stream, prefix, &buf[start..start + pos]);
            start += pos + 1;
        }
        buf.drain(..start);
        if buf.len() >= MAX_LINE {
            write_line(stream, prefix, &buf);
            buf.clear();
        }
    }
    if !buf.is_empty() {
        write_line(stream, prefix, &buf);
    }
}

fn write_line(stream: Stream, prefix: bool, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = Vec::with_capacity(line.len() + 40);
    if prefix {
        out.extend_from_slice(rfc3339_now().as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b": ");
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    // A log that cannot be written is dropped: the function must not stall.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(&out),
        Stream::Stderr => std::io::stderr().lock().write_all(&out),
    };
}

/// The current UTC time as `2026-11-28T11:14:39Z`.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian
/// calendar (the well-known era-based conversion).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_864_479), "2026-11-28T11:14:39Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
