//! What the gateway learns of replicas by asking them, rather than the
//! Swarm: whether a routed replica still answers (a node that is lost, its
//! engine stopped or its link cut, is known to the Swarm's managers only
//! after its heartbeats have been missed for several seconds), and the CPU
//! time of replicas on other nodes (whose containers this engine cannot
//! read), from their watchdog's `process_cpu_seconds_total`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::routing::Router;
use crate::rules::probe_within;

/// How often every routed replica is asked for `/_/health`...
const HEALTH_EVERY: Duration = Duration::from_millis(250);
/// ...how long it has to answer...
const HEALTH_TIMEOUT: Duration = Duration::from_millis(750);
/// ...and how many answers in a row it may miss before it is routed no
/// more: a lost node is routed around within about 2 s.
const HEALTH_FAILURES: u32 = 2;

impl Router {
    /// Asks every routed replica for `/_/health`, and stops routing to one
    /// that missed [`HEALTH_FAILURES`] in a row (requests in flight to it
    /// end at once). It is routed again once its watchdog is ready, if the
    /// Swarm still wants its task (the next refresh probes it anew).
    pub async fn watch_health(self: Arc<Self>) {
        let mut missed: HashMap<SocketAddr, u32> = HashMap::new();
        loop {
            tokio::time::sleep(HEALTH_EVERY).await;
            let routed: Vec<_> = self
                .routes
                .all()
                .into_iter()
                .flat_map(|route| {
                    route.endpoints().iter().map(|e| (Arc::clone(&route), Arc::clone(e))).collect::<Vec<_>>()
                })
                .collect();
            let answers = futures_util::future::join_all(
                routed.iter().map(|(_, e)| probe_within(e.addr, "/_/health", HEALTH_TIMEOUT)),
            )
            .await;
            let mut seen = HashSet::new();
            for ((route, endpoint), answer) in routed.iter().zip(answers) {
                seen.insert(endpoint.addr);
                if answer == Some(200) {
                    missed.remove(&endpoint.addr);
                    continue;
                }
                let count = missed.entry(endpoint.addr).or_default();
                *count += 1;
                if *count < HEALTH_FAILURES {
                    continue;
                }
                missed.remove(&endpoint.addr);
                if self.unroute(route, endpoint) {
                    tracing::warn!(
                        function = %route.function,
                        instance = %endpoint.instance,
                        addr = %endpoint.addr,
                        "replica does not answer: routed no more"
                    );
                }
            }
            missed.retain(|addr, _| seen.contains(addr));
        }
    }
}

/// The CPU time of a replica, as its watchdog counts it (its own and its
/// function's processes), from `/_/metrics`.
pub(super) struct WatchdogMeter {
    pub addr: SocketAddr,
}

impl crate::routes::CpuMeter for WatchdogMeter {
    fn cpu_seconds(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<f64>> + Send + '_>> {
        Box::pin(async move {
            let page = fetch(self.addr, "/_/metrics", Duration::from_millis(500)).await?;
            cpu_seconds_in(&page)
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

fn cpu_seconds_in(page: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix("process_cpu_seconds_total ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_watchdogs_cpu_figure() {
        let page = "# HELP process_cpu_seconds CPU.\n# TYPE process_cpu_seconds counter\n\
                    process_cpu_seconds_total 12.5\nhttp_requests_in_flight 0\n";
        assert_eq!(cpu_seconds_in(page), Some(12.5));
        assert_eq!(cpu_seconds_in("http_requests_in_flight 0\n"), None);
    }
}
