//! Keeps [`Routes`] current from the Swarm: every function service becomes
//! a route, every task Swarm wants running an endpoint once its watchdog
//! answers `/_/ready` at the task's address on the overlay network.
//!
//! The gateway balances over task addresses itself (least-loaded), rather
//! than through Swarm's virtual IPs, which need IPVS. A refresh runs every
//! second, and at once when a function's container on this node starts,
//! stops or changes health, or when this gateway changed a service.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{EventsOptionsBuilder, ListServicesOptionsBuilder};
use ferrofaas_types::{FunctionRef, Policies};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::{LABEL_FUNCTION, LABEL_NAMESPACE, LABEL_SPEC, REPLICA_PORT, engine};
use crate::rules::probe_within;
use crate::{Endpoint, Routes};

/// Longest time between two refreshes.
const POLL: Duration = Duration::from_secs(1);
/// Task states in which a replica may be (or soon be) listening.
const LIVE_STATES: &[&str] = &["assigned", "accepted", "preparing", "ready", "starting", "running"];

pub(super) struct Router {
    pub docker: Docker,
    /// The Swarm node of this engine: containers of its tasks can be read.
    pub node_id: String,
    pub engine: engine::Endpoint,
    pub network: String,
    pub routes: Routes,
    /// Wakes the refresh loop.
    pub wake: Notify,
    tracked: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    /// Addresses of tasks Swarm wants running, with their instance names.
    live: HashMap<SocketAddr, String>,
    /// Their containers, where on this node (their CPU can be read).
    containers: HashMap<SocketAddr, String>,
    /// Addresses being probed for readiness.
    probing: HashSet<SocketAddr>,
    /// Task id to instance name (`<service>.<slot>.<task id>`), for logs.
    instances: HashMap<String, String>,
    /// The service version each route's policies were read at: a service
    /// changed (by any gateway) is read again, once.
    policies_at: HashMap<FunctionRef, u64>,
}

impl Router {
    pub fn new(docker: Docker, node_id: String, network: String) -> Router {
        Router {
            docker,
            node_id,
            engine: engine::Endpoint::from_env(),
            network,
            routes: Routes::default(),
            wake: Notify::new(),
            tracked: Mutex::default(),
        }
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance name of a task, if it is or was live here.
    pub fn instance_of(&self, task_id: &str) -> Option<String> {
        self.tracked().instances.get(task_id).cloned()
    }

    /// Reads services and tasks once and brings the routes in line.
    pub async fn refresh(self: &Arc<Self>) -> std::io::Result<()> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![LABEL_FUNCTION]);
        let options = ListServicesOptionsBuilder::default().filters(&filters).build();
        let services = self.docker.list_services(Some(options)).await.map_err(std::io::Error::other)?;
        let tasks = self.engine.running_tasks().await?;

        let mut functions = HashSet::new();
        let mut live = HashMap::new();
        let mut instances = HashMap::new();
        let mut containers = HashMap::new();
        let mut per_route = Vec::new();
        let mut policies_at = HashMap::new();
        for service in services {
            let version = service.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            let (Some(id), Some(spec)) = (service.id, service.spec) else { continue };
            let labels = spec.labels.unwrap_or_default();
            let (Some(name), Some(namespace)) = (labels.get(LABEL_FUNCTION), labels.get(LABEL_NAMESPACE))
            else {
                continue;
            };
            let function = FunctionRef { name: name.clone(), namespace: namespace.clone() };
            let replicas = spec.mode.and_then(|m| m.replicated).and_then(|r| r.replicas).unwrap_or(0);
            let route = self.routes.ensure(&function);
            route.set_desired(replicas.max(0) as u64);
            if self.tracked().policies_at.get(&function) != Some(&version) {
                let deployment = labels.get(LABEL_SPEC).and_then(|j| serde_json::from_str(j).ok());
                if let Some(deployment) = deployment {
                    route.set_policies(Policies::of(&deployment).unwrap_or_default());
                }
            }
            policies_at.insert(function.clone(), version);

            let mut candidates = HashMap::new();
            for task in tasks.iter().filter(|t| t.service_id == id) {
                let instance = format!("{name}.{}.{}", task.slot, task.id);
                instances.insert(task.id.clone(), instance.clone());
                if task.desired_state != "running" || !LIVE_STATES.contains(&task.status.state.as_str()) {
                    continue;
                }
                if let Some(ip) = task.address_on(&self.network) {
                    let addr = SocketAddr::new(ip, REPLICA_PORT);
                    if let Some(c) = task
                        .status
                        .container_status
                        .as_ref()
                        .filter(|c| !c.container_id.is_empty() && task.node_id == self.node_id)
                    {
                        containers.insert(addr, c.container_id.clone());
                    }
                    candidates.insert(addr, instance);
                }
            }
            live.extend(candidates.iter().map(|(a, i)| (*a, i.clone())));
            per_route.push((route, candidates));
            functions.insert(function);
        }
        for route in self.routes.all() {
            if !functions.contains(&route.function) {
                self.routes.remove(&route.function);
            }
        }
        let mut start = Vec::new();
        {
            // Under the lock: an admission cannot interleave with the edits.
            let mut tracked = self.tracked();
            for (route, candidates) in per_route {
                let current = route.endpoints();
                let kept: Vec<Arc<Endpoint>> =
                    current.iter().filter(|e| candidates.contains_key(&e.addr)).cloned().collect();
                if kept.len() != current.len() {
                    for e in current.iter().filter(|e| !candidates.contains_key(&e.addr)) {
                        tracing::info!(function = %route.function, instance = %e.instance, "replica no longer routed");
                    }
                    route.set_endpoints(kept);
                }
                for (addr, instance) in candidates {
                    if !current.iter().any(|e| e.addr == addr) {
                        start.push((route.function.clone(), instance, addr));
                    }
                }
            }
            tracked.live = live;
            tracked.containers = containers;
            tracked.policies_at = policies_at;
            tracked.instances.extend(instances);
            if tracked.instances.len() > 4096 {
                let keep: HashSet<String> = tracked.live.values().cloned().collect();
                tracked.instances.retain(|_, v| keep.contains(v));
            }
            start.retain(|(_, _, addr)| tracked.probing.insert(*addr));
        }
        for (function, instance, addr) in start {
            tokio::spawn(Arc::clone(self).admit(function, instance, addr));
        }
        Ok(())
    }

    /// Probes a new task until its watchdog is ready, then routes to it;
    /// gives up when Swarm no longer wants the task.
    async fn admit(self: Arc<Self>, function: FunctionRef, instance: String, addr: SocketAddr) {
        // A task's address answers (or refuses) within a millisecond once its
        // container is up; before that, packets to it may be dropped, so
        // each probe is short, and they come often while a task is new.
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            if !self.tracked().live.contains_key(&addr) {
                break;
            }
            if probe_within(addr, "/_/ready", Duration::from_millis(100)).await == Some(200) {
                // Under the lock: a refresh that drops the task cannot
                // interleave between the check and the insertion.
                let tracked = self.tracked();
                if tracked.live.contains_key(&addr)
                    && let Some(route) = self.routes.get(&function.name, &function.namespace)
                {
                    let mut endpoints = route.endpoints();
                    if !endpoints.iter().any(|e| e.addr == addr) {
                        // Its container's figure where it is on this node,
                        // else its watchdog's.
                        let meter: Arc<dyn crate::routes::ReplicaMeter> = match tracked.containers.get(&addr)
                        {
                            Some(id) => Arc::new(crate::engine::ContainerMeter {
                                docker: self.docker.clone(),
                                id: id.clone(),
                            }),
                            None => Arc::new(super::meter::WatchdogMeter { addr }),
                        };
                        let meter = Some(meter);
                        endpoints.push(Arc::new(Endpoint::new(instance.clone(), addr).with_meter(meter)));
                        route.set_endpoints(endpoints);
                        tracing::info!(%function, %instance, %addr, "replica ready");
                    }
                }
                break;
            }
            tokio::time::sleep(delay).await;
            let cap = if started.elapsed() < Duration::from_secs(10) { 25 } else { 1000 };
            delay = (delay * 3 / 2).min(Duration::from_millis(cap));
        }
        self.tracked().probing.remove(&addr);
    }

    /// Routes `endpoint` of `route` no more, and ends what waits for it;
    /// `false` if it was not routed.
    pub fn unroute(&self, route: &crate::FunctionRoute, endpoint: &Arc<Endpoint>) -> bool {
        // Under the lock, as refresh and admit edit routes.
        let _tracked = self.tracked();
        let current = route.endpoints();
        if !current.iter().any(|e| Arc::ptr_eq(e, endpoint)) {
            return false;
        }
        route.set_endpoints(current.iter().filter(|e| !Arc::ptr_eq(e, endpoint)).cloned().collect());
        endpoint.mark_gone();
        true
    }

    /// Refreshes every [`POLL`], and whenever woken.
    pub async fn run(self: Arc<Self>) {
        let mut failing = false;
        loop {
            match self.refresh().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "could not read the Swarm's services and tasks");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Wakes the refresh loop on every start, stop and health change of a
    /// function's container on this node.
    pub async fn watch_events(self: Arc<Self>) {
        loop {
            let mut filters = HashMap::new();
            filters.insert("type", vec!["container".to_owned()]);
            filters.insert("label", vec![LABEL_FUNCTION.to_owned()]);
            // Not exec_*: health checks exec every few seconds.
            filters.insert(
                "event",
                ["start", "die", "kill", "stop", "destroy", "health_status"].map(str::to_owned).to_vec(),
            );
            let options = EventsOptionsBuilder::default().filters(&filters).build();
            let mut events = self.docker.events(Some(options));
            while let Some(event) = events.next().await {
                match event {
                    Ok(_) => self.wake.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "the engine's event stream broke");
                        break;
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
