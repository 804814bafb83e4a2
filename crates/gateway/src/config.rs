//! How the gateway runs.

use std::time::Duration;

use crate::auth::Credentials;
use crate::callback::CallbackPolicy;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Basic auth on `/system/*`; `None` leaves it open.
    pub auth: Option<Credentials>,
    /// Longest the gateway waits for a function's response head.
    pub upstream_timeout: Duration,
    /// Longest a request waits for a replica of a function whose replicas
    /// are starting (just deployed, restarting, scaling up).
    pub replica_wait: Duration,
    /// Largest JSON body of the API.
    pub max_api_body: usize,
    /// Largest bundle upload (written to `upload_dir`, not memory).
    pub max_bundle_body: u64,
    /// Time to read a request's head.
    pub read_timeout: Duration,
    /// On shutdown, how long open requests get to finish.
    pub drain_timeout: Duration,
    /// Run the autoscaler (`com.openfaas.scale.*` labels).
    pub autoscale: bool,
    /// How often the autoscaler samples load.
    pub autoscale_interval: Duration,
    /// Where callbacks of asynchronous calls may go.
    pub callbacks: CallbackPolicy,
    /// Largest body of an asynchronous call (413 past it).
    pub max_async_body: usize,
    /// Bytes of asynchronous calls held in memory at once: as many for the
    /// bodies being received (429 past it) and again for the calls being
    /// run (the dispatcher waits). What is queued is on disk.
    pub async_memory: usize,
    /// Where uploads (bundles) are written while they arrive.
    pub upload_dir: std::path::PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            auth: None,
            upstream_timeout: Duration::from_secs(60),
            replica_wait: Duration::from_secs(30),
            max_api_body: 1 << 20,
            max_bundle_body: 512 << 20,
            read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(15),
            autoscale: true,
            autoscale_interval: Duration::from_secs(1),
            callbacks: CallbackPolicy::default(),
            max_async_body: 16 << 20,
            async_memory: 32 << 20,
            upload_dir: std::env::temp_dir(),
        }
    }
}
