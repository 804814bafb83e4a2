//! Running wrk and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx/3xx responses plus socket errors.
    pub errors: u64,
}

/// Runs wrk against `url` with `conns` connections for `duration`.
pub fn run(url: &str, conns: usize, duration: Duration, script: Option<&Path>) -> anyhow::Result<Figures> {
    let threads = conns.clamp(1, 2);
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(url);
    let out = cmd.output().context("could not run wrk (install it: apt-get install -y wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Reads the figures out of wrk's text report.
pub fn parse(report: &str) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let mut seen_rps = false;
    for line in report.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            figures.requests_per_sec = rest.trim().parse().context("Requests/sec")?;
            seen_rps = true;
        } else if let Some(rest) = line.strip_prefix("50%") {
            figures.p50_us = parse_latency(rest.trim())?;
        } else if let Some(rest) = line.strip_prefix("99%") {
            figures.p99_us = parse_latency(rest.trim())?;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            figures.errors += rest.trim().parse::<u64>().context("Non-2xx")?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    figures.errors += n.parse::<u64>().context("Socket errors")?;
                }
            }
        }
    }
    if !seen_rps {
        bail!("no Requests/sec in wrk's report:\n{report}");
    }
    Ok(figures)
}

/// `536.00us`, `1.53ms`, `2.01s`, `1.20m` to microseconds.
fn parse_latency(s: &str) -> anyhow::Result<f64> {
    let split =
        s.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("latency without unit: {s:?}"))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().with_context(|| format!("latency {s:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown latency unit in {s:?}"),
    };
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   687.61us  317.73us   9.77ms   80.11%
    Req/Sec    47.10k     3.02k   52.68k    70.00%
  Latency Distribution
     50%  636.00us
     75%  812.00us
     90%    1.03ms
     99%    1.53ms
  468661 requests in 5.00s, 39.33MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  93708.42
Transfer/sec:      7.86MB
";

    #[test]
    fn parses_a_report() {
        let f = parse(REPORT).unwrap();
        assert_eq!(f.requests_per_sec, 93708.42);
        assert_eq!(f.p50_us, 636.0);
        assert_eq!(f.p99_us, 1530.0);
        assert_eq!(f.errors, 16);
    }

    #[test]
    fn rejects_a_report_without_figures() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }
}
