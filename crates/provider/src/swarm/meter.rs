//! The CPU time and memory of replicas on other nodes (whose containers
//! this engine cannot read), from their watchdog's
//! `process_cpu_seconds_total` and `process_resident_memory_bytes`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The CPU time of a replica, as its watchdog counts it (its own and its
/// function's processes), from `/_/metrics`.
pub(super) struct WatchdogMeter {
    pub addr: SocketAddr,
}

impl crate::routes::ReplicaMeter for WatchdogMeter {
    fn cpu_seconds(&self) -> crate::routes::Reading<'_, f64> {
        Box::pin(async move { Some(self.read().await?.cpu_seconds) })
    }

    fn read(&self) -> crate::routes::Reading<'_, crate::routes::ReplicaReading> {
        Box::pin(async move {
            let page = fetch(self.addr, "/_/metrics", Duration::from_millis(500)).await?;
            let memory_bytes = figure_in(&page, "process_resident_memory_bytes").map(|b| b as u64);
            Some(crate::routes::ReplicaReading {
                cpu_seconds: figure_in(&page, "process_cpu_seconds_total")?,
                memory_bytes,
            })
        })
    }
}

/// The body of `GET path` (at most 256 KiB), if the replica answers 200 in
/// time.
async fn fetch(addr: SocketAddr, path: &str, timeout: Duration) -> Option<String> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: replica\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut answer = Vec::new();
        s.take(256 << 10).read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.split(' ').nth(1) == Some("200")).then(|| body.to_owned())
    };
    tokio::time::timeout(timeout, work).await.ok()?
}

/// The value of the unlabelled series `name` on a metrics page: a number
/// of zero or more (what the replica's image says: never trusted to be
/// anything else).
fn figure_in(page: &str, name: &str) -> Option<f64> {
    let value =
        page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_watchdogs_cpu_figure() {
        let page = "# HELP process_cpu_seconds CPU.\n# TYPE process_cpu_seconds counter\n\
                    process_cpu_seconds_total 12.5\nhttp_requests_in_flight 0\n";
        assert_eq!(figure_in(page, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(figure_in("http_requests_in_flight 0\n", "process_cpu_seconds_total"), None);
        // A hostile image's figures are refused, not counted.
        for bad in ["NaN", "inf", "-5", "1e400"] {
            assert_eq!(
                figure_in(&format!("process_resident_memory_bytes {bad}\n"), "process_resident_memory_bytes"),
                None
            );
        }
    }
}
