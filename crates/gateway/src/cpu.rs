//! CPU time and memory per function, for usage: every few seconds each
//! routed replica's meter (its cgroup on the process provider, the
//! engine's stats on Docker, its watchdog on other Swarm nodes) is read.
//! What its CPU counter rose by since the last read, and the most memory
//! one replica held (a cgroup's peak over the interval, else what it held
//! when read), are recorded as a sample of its function.
//! A replica first seen after the first round is new: all its CPU counts,
//! its start-up included. Those of the first round may have run before this
//! gateway started: that read is their baseline. A replica gone before its
//! next read loses its last interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferrofaas_usage::{CpuSample, Entry, Meter};
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// How often replicas' CPU is read.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Samples until `shutdown`.
pub async fn run(gw: Arc<Gateway>, meter: Arc<dyn Meter>, shutdown: CancellationToken) {
    let mut last: HashMap<String, f64> = HashMap::new();
    let mut first = true;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let mut seen = HashMap::new();
        for route in gw.provider.routes().all() {
            let mut used = 0.0;
            let mut memory_bytes = 0;
            for endpoint in route.endpoints() {
                let Some(meter) = endpoint.meter.as_ref() else { continue };
                let Some(reading) = meter.read().await else { continue };
                memory_bytes = memory_bytes.max(reading.memory_bytes.unwrap_or(0));
                let now = reading.cpu_seconds;
                // Instances are named per function: keyed with it.
                let key = format!("{}/{}", route.function, endpoint.instance);
                match last.get(&key) {
                    Some(before) => used += (now - before).max(0.0),
                    None if !first => used += now.max(0.0),
                    None => {}
                }
                seen.insert(key, now);
            }
            if used > 0.0 || memory_bytes > 0 {
                meter.record(Entry::Cpu(CpuSample {
                    function: route.function.name.clone(),
                    namespace: route.function.namespace.clone(),
                    at_us: ferrofaas_usage::now_us(),
                    cpu_us: (used * 1e6) as u64,
                    memory_bytes,
                }));
            }
        }
        last = seen;
        first = false;
    }
}
