//! Whether a routed replica still answers, asked of the replica rather
//! than the Swarm: a node that is lost, its engine stopped or its link cut,
//! is known to the Swarm's managers only after its heartbeats have been
//! missed for several seconds.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
