//! One replica slot: an instance started by the backend (a process, a
//! container), watched until it stops being usable, then replaced, with
//! backoff, until the slot is told to stop.
//!
//! Readiness and health come from the watchdog itself (`/_/ready` until the
//! instance is routable, `/_/health` every few seconds after), whatever runs
//! it. Each start gets its own instance name and folder (secrets, scratch).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferrofaas_types::FunctionRef;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::logs::FunctionLog;
use super::secrets::SecretStore;
use super::{Backend, Launch};
use crate::routes::Endpoint;

/// A started replica, as the backend runs it.
#[async_trait]
pub trait Instance: Send {
    /// Where its watchdog listens.
    fn addr(&self) -> SocketAddr;
    /// Resolves when it has exited, saying how. Cancel-safe.
    async fn exited(&mut self) -> String;
    /// Asks it to stop (the watchdog drains), forcing it after `timeout`.
    async fn stop(self: Box<Self>, timeout: Duration);
    /// Stops it at once.
    async fn kill(self: Box<Self>);
    /// Reads its CPU use, if the backend can.
    fn meter(&self) -> Option<Arc<dyn crate::routes::ReplicaMeter>> {
        None
    }
}

/// One version of a function: what every replica of it runs.
pub struct Generation<S> {
    pub function: FunctionRef,
    pub generation: u64,
    pub secrets: Vec<String>,
    /// `run/<namespace>/<name>`: instance folders go below.
    pub run_dir: PathBuf,
    pub spec: S,
}

/// How replicas are watched.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub startup_timeout: Duration,
    pub health_interval: Duration,
    /// Asked to stop, then this long before it is forced.
    pub stop_timeout: Duration,
}

pub enum Event {
    Ready(Arc<Endpoint>),
    Down,
    /// It stopped or could not start, for this reason (it starts again).
    Failed(String),
}

pub struct Shared<B: Backend> {
    pub backend: Arc<B>,
    pub secrets: Arc<SecretStore>,
    pub log: Arc<FunctionLog>,
    pub timing: Timing,
}

pub struct ReplicaHandle {
    pub id: u64,
    pub generation: u64,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ReplicaHandle {
    /// Asks the replica to stop (gracefully); returns the task to await.
    pub fn stop(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
    }
}

/// Starts replica slot `id` of `spec`; its readiness comes on `events`.
pub fn start<B: Backend>(
    id: u64,
    spec: Arc<Generation<B::Spec>>,
    shared: Arc<Shared<B>>,
    events: mpsc::UnboundedSender<(u64, Event)>,
) -> ReplicaHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let generation = spec.generation;
    let task = tokio::spawn(supervise(id, spec, shared, events, stop_rx));
    ReplicaHandle { id, generation, stop: Some(stop_tx), task }
}

async fn supervise<B: Backend>(
    id: u64,
    spec: Arc<Generation<B::Spec>>,
    shared: Arc<Shared<B>>,
    events: mpsc::UnboundedSender<(u64, Event)>,
    mut stop: oneshot::Receiver<()>,
) {
    let timing = shared.timing;
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let instance = format!("{}-{:06x}", spec.function.name, fastrand::u32(..0x100_0000));
        let dir = spec.run_dir.join(&instance);
        let reason = match launch(&spec, &shared, &instance, &dir).await {
            Err(e) => format!("could not start: {e}"),
            Ok(mut replica) => {
                let ready = tokio::select! {
                    _ = &mut stop => {
                        replica.stop(timing.stop_timeout).await;
                        remove_dir(&dir);
                        return;
                    }
                    ready = wait_ready(&mut replica, timing.startup_timeout) => ready,
                };
                let reason = match ready {
                    Err(reason) => reason,
                    Ok(()) => {
                        let endpoint = Arc::new(
                            Endpoint::new(instance.clone(), replica.addr()).with_meter(replica.meter()),
                        );
                        let _ = events.send((id, Event::Ready(Arc::clone(&endpoint))));
                        tracing::debug!(%instance, addr = %replica.addr(), "replica ready");
                        let reason = tokio::select! {
                            _ = &mut stop => {
                                let _ = events.send((id, Event::Down));
                                // It drains what it has; anything left after
                                // that cannot be answered.
                                replica.stop(timing.stop_timeout).await;
                                endpoint.mark_gone();
                                remove_dir(&dir);
                                return;
                            }
                            reason = watch(&mut replica, timing.health_interval) => reason,
                        };
                        // Exited or unhealthy: requests in flight to it end now.
                        endpoint.mark_gone();
                        let _ = events.send((id, Event::Down));
                        reason
                    }
                };
                replica.kill().await;
                reason
            }
        };
        remove_dir(&dir);
        // A replica that ran for a while starts over with a short delay.
        if started.elapsed() > Duration::from_secs(10) {
            failures = 0;
        }
        let delay =
            Duration::from_millis(100).saturating_mul(1 << failures.min(7)).min(Duration::from_secs(10));
        failures = failures.saturating_add(1);
        tracing::warn!(function = %spec.function, %instance, %reason, retry_in = ?delay, "replica down");
        let _ = events.send((id, Event::Failed(format!("replica {instance} {reason}"))));
        shared
            .log
            .push(&instance, &format!("ferrofaas: replica {instance} {reason}; restarting in {delay:?}"));
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn launch<B: Backend>(
    spec: &Generation<B::Spec>,
    shared: &Shared<B>,
    instance: &str,
    dir: &Path,
) -> io::Result<Box<dyn Instance>> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let secrets_dir = dir.join("secrets");
    let access = shared.backend.secret_access(&spec.function);
    shared.secrets.materialize(&spec.function.namespace, &spec.secrets, &secrets_dir, access)?;
    let launch =
        Launch { function: &spec.function, instance, dir, secrets_dir: &secrets_dir, log: &shared.log };
    shared.backend.launch(&spec.spec, launch).await
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Polls `/_/ready` until it answers 200 (fast at first: cold starts
/// count), the instance exits, or `timeout` passes.
async fn wait_ready(replica: &mut Box<dyn Instance>, timeout: Duration) -> Result<(), String> {
    let addr = replica.addr();
    let poll = async {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(1);
        loop {
            if probe(addr, "/_/ready").await == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("was not ready within {timeout:?}"));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    };
    tokio::select! {
        how = replica.exited() => Err(format!("exited during start-up ({how})")),
        ready = poll => ready,
    }
}

/// Returns why the replica stopped being usable: it exited, or failed
/// three health checks in a row.
async fn watch(replica: &mut Box<dyn Instance>, interval: Duration) -> String {
    let addr = replica.addr();
    let checks = async {
        let mut misses = 0;
        loop {
            tokio::time::sleep(interval).await;
            if probe(addr, "/_/health").await == Some(200) {
                misses = 0;
            } else {
                misses += 1;
                if misses >= 3 {
                    return "failed 3 health checks".to_owned();
                }
            }
        }
    };
    tokio::select! {
        how = replica.exited() => format!("exited ({how})"),
        reason = checks => reason,
    }
}

use crate::rules::probe_within;

/// `GET path` on a replica: its status code, if it answers within a second.
async fn probe(addr: SocketAddr, path: &'static str) -> Option<u16> {
    probe_within(addr, path, Duration::from_secs(1)).await
}
