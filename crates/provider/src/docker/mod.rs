//! The Docker backend: every replica a container on the local engine,
//! driven through the Engine API (no docker CLI).
//!
//! A deployment's `image` is a Docker image on this engine. Bundles pushed
//! to the gateway become images here ([`image::build_function_image`]), so
//! a function built on another machine still deploys through the API.
//!
//! Replicas run on the `ferrofaas` bridge network and are reached at their
//! address on it (port 8080, the watchdog); they get the function's
//! environment and labels, its `limits` (memory, CPU), its secrets read-only
//! in `/var/openfaas/secrets`, a read-only root with a writable `/tmp` when
//! `readOnlyRootFilesystem` is set, and an init process that reaps zombies.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use ferrofaas_types::{FunctionDeployment, FunctionRef, ProviderInfo};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::engine::containment::{Hardening, limits};
use crate::engine::{ContainerMeter, FunctionImage, SECRETS_PATH, connect, function_image, image};
use crate::local::{Backend, DEFAULT_ENV, Instance, Launch, LocalConfig, LocalProvider, SecretAccess};
use crate::{BundleInfo, Result};

pub use crate::local::Timing;

/// The network replicas run on.
pub const NETWORK: &str = "ferrofaas";
/// Where OpenFaaS functions read their secrets.
const LABEL_OWNER: &str = "com.ferrofaas.owner";
const LABEL_FUNCTION: &str = "com.ferrofaas.function";
const LABEL_NAMESPACE: &str = "com.ferrofaas.namespace";
const LABEL_INSTANCE: &str = "com.ferrofaas.instance";

pub type DockerProvider = LocalProvider<DockerBackend>;

#[derive(Clone, Debug)]
pub struct DockerConfig {
    pub state_dir: PathBuf,
    /// The static `faas-watchdog` that goes into images built here.
    pub watchdog: PathBuf,
    pub timing: Timing,
    /// Most processes and threads one replica may have.
    pub pids_limit: u64,
    /// Most bytes a pushed bundle may unpack to.
    pub bundle_max_unpacked: u64,
}

impl DockerConfig {
    pub fn new(state_dir: PathBuf, watchdog: PathBuf, pids_limit: u64) -> DockerConfig {
        DockerConfig {
            timing: LocalConfig::new(state_dir.clone()).timing,
            state_dir,
            watchdog,
            pids_limit,
            bundle_max_unpacked: crate::bundles::BundleLimits::default().max_unpacked,
        }
    }
}

/// The Docker provider on its state folder, with its stored functions started.
pub async fn start(config: DockerConfig) -> io::Result<Arc<DockerProvider>> {
    let docker = connect().await?;
    let backend = DockerBackend {
        docker,
        watchdog: config.watchdog,
        owner: config.state_dir.display().to_string(),
        network: OnceCell::new(),
        pids_limit: config.pids_limit,
        bundle_max_unpacked: config.bundle_max_unpacked,
    };
    LocalProvider::start(backend, LocalConfig { state_dir: config.state_dir, timing: config.timing }).await
}

pub struct DockerBackend {
    docker: Docker,
    watchdog: PathBuf,
    /// Marks this platform's containers (its state folder), so that several
    /// platforms can share one engine and each cleans up only its own.
    owner: String,
    network: OnceCell<()>,
    pids_limit: u64,
    bundle_max_unpacked: u64,
}

/// What a replica of one version runs.
pub struct DockerSpec {
    /// The image id, so that every replica of a version runs exactly it.
    image: String,
    env: Vec<String>,
    labels: HashMap<String, String>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    read_only: bool,
    hardening: Hardening,
}

impl DockerBackend {
    async fn ensure_network(&self) -> io::Result<()> {
        self.network
            .get_or_try_init(|| async {
                if self.docker.inspect_network(NETWORK, None).await.is_ok() {
                    return Ok(());
                }
                let request = NetworkCreateRequest {
                    name: NETWORK.to_owned(),
                    driver: Some("bridge".to_owned()),
                    ..Default::default()
                };
                match self.docker.create_network(request).await {
                    Ok(_) => Ok(()),
                    // Created meanwhile by another platform on this engine.
                    Err(_) if self.docker.inspect_network(NETWORK, None).await.is_ok() => Ok(()),
                    Err(e) => Err(io::Error::other(format!("creating the {NETWORK} network: {e}"))),
                }
            })
            .await
            .copied()
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

#[async_trait]
impl Backend for DockerBackend {
    type Spec = DockerSpec;

    fn info(&self) -> ProviderInfo {
        crate::provider_info("ferrofaas-docker", "docker")
    }

    async fn prepare(&self, spec: &FunctionDeployment) -> Result<(DockerSpec, String)> {
        let FunctionImage { id, env, .. } = function_image(&self.docker, spec, DEFAULT_ENV).await?;
        let mut labels: HashMap<String, String> =
            spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(LABEL_OWNER.into(), self.owner.clone());
        labels.insert(LABEL_FUNCTION.into(), spec.service.clone());
        labels.insert(LABEL_NAMESPACE.into(), spec.namespace.clone());
        let (memory, nano_cpus) = limits(spec.limits.as_ref());
        let hardening = Hardening::of(spec, self.pids_limit)?;
        let docker_spec = DockerSpec {
            image: id.clone(),
            env,
            labels,
            memory,
            nano_cpus,
            read_only: spec.read_only_root_filesystem,
            hardening,
        };
        Ok((docker_spec, id))
    }

    async fn launch(&self, spec: &DockerSpec, launch: Launch<'_>) -> io::Result<Box<dyn Instance>> {
        self.ensure_network().await?;
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_INSTANCE.into(), launch.instance.to_owned());
        let mut tmpfs = HashMap::new();
        if spec.read_only {
            tmpfs.insert("/tmp".to_owned(), "rw,exec,nosuid,size=64m".to_owned());
        }
        // Docker takes a relative path for a volume name: bind the real one.
        let secrets_dir = std::fs::canonicalize(launch.secrets_dir)?;
        let host = HostConfig {
            network_mode: Some(NETWORK.to_owned()),
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            readonly_rootfs: Some(spec.read_only),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            binds: Some(vec![format!("{}:{SECRETS_PATH}:ro", secrets_dir.display())]),
            init: Some(true),
            cap_drop: Some(spec.hardening.cap_drop.clone()),
            cap_add: Some(spec.hardening.cap_add.clone()),
            security_opt: Some(spec.hardening.security_opt()),
            pids_limit: Some(spec.hardening.pids_limit),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            host_config: Some(host),
            ..Default::default()
        };
        // Engine events are kept from here on: a disconnection from the
        // network (see `exited`) cannot fall between start and watch.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let created = self.docker.create_container(None, body).await.map_err(io::Error::other)?;
        let id = created.id;
        let started = async {
            self.docker.start_container(&id, None).await.map_err(io::Error::other)?;
            let inspect = self.docker.inspect_container(&id, None).await.map_err(io::Error::other)?;
            let state = inspect.state.unwrap_or_default();
            let ip = inspect
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(NETWORK))
                .and_then(|n| n.ip_address)
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            match ip {
                Some(ip) => Ok(SocketAddr::new(ip, 8080)),
                // Gone already (a container that exits at once leaves the
                // network before it could be looked at): say so, with what
                // it printed last.
                None if state.running != Some(true) => {
                    let code = state.exit_code.map_or_else(|| "?".to_owned(), |c| c.to_string());
                    let said = last_line(&self.docker, &id).await;
                    Err(io::Error::other(match said {
                        Some(line) => format!("exited during start-up (exit code {code}): {line}"),
                        None => format!("exited during start-up (exit code {code})"),
                    }))
                }
                None => Err(io::Error::other("the container has no address on the network")),
            }
        };
        let addr = match started.await {
            Ok(addr) => addr,
            Err(e) => {
                remove(&self.docker, &id).await;
                return Err(e);
            }
        };
        let docker = self.docker.clone();
        let (log, instance, container) = (Arc::clone(launch.log), launch.instance.to_owned(), id.clone());
        tokio::spawn(async move {
            let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
            let mut stream = docker.logs(&container, Some(options));
            let mut pending = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                pending.extend_from_slice(&chunk.into_bytes());
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    log.push(&instance, String::from_utf8_lossy(&line).trim_end());
                }
            }
        });
        Ok(Box::new(Container { docker: self.docker.clone(), id, addr, since }))
    }

    /// Secrets are read by the container's user, not ours.
    fn secret_access(&self, _function: &FunctionRef) -> SecretAccess {
        SecretAccess { file_mode: 0o444, dir_mode: 0o555, owner: None }
    }

    async fn push_bundle(&self, image: &str, archive: &std::path::Path) -> Result<BundleInfo> {
        image::push_bundle(&self.docker, &self.watchdog, image, archive, self.bundle_max_unpacked).await
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        image::list_bundles(&self.docker).await
    }

    async fn clean(&self) {
        let mut filters = HashMap::new();
        filters.insert("label".to_owned(), vec![format!("{LABEL_OWNER}={}", self.owner)]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        match self.docker.list_containers(Some(options)).await {
            Ok(containers) => {
                for c in containers {
                    if let Some(id) = c.id {
                        tracing::info!(container = %id, "removing a replica left by an earlier run");
                        remove(&self.docker, &id).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list old replicas"),
        }
    }
}

/// The last line a container printed, at most 200 characters of it.
async fn last_line(docker: &Docker, id: &str) -> Option<String> {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail("5").build();
    let mut stream = docker.logs(id, Some(options));
    let mut last = None;
    while let Some(Ok(chunk)) = stream.next().await {
        for line in String::from_utf8_lossy(&chunk.into_bytes()).lines() {
            if !line.trim().is_empty() {
                last = Some(line.trim().chars().take(200).collect::<String>());
            }
        }
    }
    last
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    if let Err(e) = docker.remove_container(id, Some(options)).await {
        tracing::debug!(container = %id, error = %e, "could not remove a container");
    }
}

struct Container {
    docker: Docker,
    id: String,
    addr: SocketAddr,
    /// When it was created (Unix seconds), for the engine's event log.
    since: String,
}

impl Container {
    /// Resolves when the container is cut off the functions' network. Its
    /// address goes back to the pool then and may soon be another
    /// container's, whose watchdog would pass this one's health checks.
    async fn disconnected(&self) -> String {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["network".to_owned()]),
            ("event".to_owned(), vec!["disconnect".to_owned()]),
            ("network".to_owned(), vec![NETWORK.to_owned()]),
        ]);
        let options = EventsOptionsBuilder::default().since(&self.since).filters(&filters).build();
        let mut events = self.docker.events(Some(options));
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => {
                    let ours = e.actor.and_then(|a| a.attributes).and_then(|mut a| a.remove("container"));
                    if ours.as_deref() == Some(self.id.as_str()) {
                        // A container that exits is disconnected too: its
                        // exit code says more.
                        let state =
                            self.docker.inspect_container(&self.id, None).await.ok().and_then(|i| i.state);
                        return match state {
                            Some(s) if s.running == Some(false) => {
                                format!("exit code {}", s.exit_code.unwrap_or(-1))
                            }
                            _ => format!("lost: disconnected from the {NETWORK} network"),
                        };
                    }
                }
                Err(e) => return format!("lost: engine events: {e}"),
            }
        }
        "lost: engine events ended".to_owned()
    }
}

#[async_trait]
impl Instance for Container {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn exited(&mut self) -> String {
        let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut wait = self.docker.wait_container(&self.id, Some(options));
        let waited = async {
            match wait.next().await {
                Some(Ok(r)) => format!("exit code {}", r.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    format!("exit code {code}")
                }
                Some(Err(e)) => format!("lost: {e}"),
                None => "lost".to_owned(),
            }
        };
        tokio::select! {
            how = waited => how,
            how = self.disconnected() => how,
        }
    }

    async fn stop(self: Box<Self>, timeout: Duration) {
        let options = StopContainerOptionsBuilder::default().t(timeout.as_secs().max(1) as i32).build();
        if let Err(e) = self.docker.stop_container(&self.id, Some(options)).await {
            tracing::debug!(container = %self.id, error = %e, "stop failed");
        }
        remove(&self.docker, &self.id).await;
    }

    async fn kill(self: Box<Self>) {
        remove(&self.docker, &self.id).await;
    }

    fn meter(&self) -> Option<Arc<dyn crate::routes::ReplicaMeter>> {
        Some(Arc::new(ContainerMeter { docker: self.docker.clone(), id: self.id.clone() }))
    }
}
