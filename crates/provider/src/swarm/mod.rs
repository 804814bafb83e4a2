//! The Swarm provider: every function a Docker Swarm service, driven through
//! the Engine API of a manager node.
//!
//! Swarm does the supervising: replicas, restarts, placement, rolling
//! updates (start the new task, wait for its health check, stop the old one)
//! and secrets (Docker secrets) are its own. The provider keeps no state:
//! each function's deployment request is stored in its service's labels, so
//! every gateway on the Swarm sees the same functions.
//!
//! Services run in `dnsrr` endpoint mode on an overlay network, and the
//! gateway, which must run on that network (as a Swarm service itself, see
//! `faas swarm up`), routes to task addresses directly ([`routing`]): no
//! virtual IPs, so no IPVS is needed, and requests go to the least-loaded
//! replica.
//!
//! Secrets are versioned Docker secrets (`<name>_v<n>`, labelled with their
//! name and namespace): an update makes a new version and rolls the
//! functions that use it onto it. A plain Docker secret of the same name
//! (made with `docker secret create`) works too.

mod engine;
mod health;
mod meter;
mod network;
pub mod platform;
pub mod registry;
mod routing;
mod secrets;
mod service;

pub use network::ensure_network;
use network::on_network;
use secrets::*;
use service::*;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, NetworkCreateRequest, Platform, ResourceObject, SecretSpec, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecPrivileges,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, LogsOptionsBuilder, UpdateServiceOptionsBuilder,
};
use ferrofaas_types::names::DEFAULT_NAMESPACE;
use ferrofaas_types::{
    FunctionDeployment, FunctionRef, FunctionStatus, LogMessage, LogRequest, ProviderInfo, Secret,
};
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::engine::containment::{Hardening, limits};
use crate::engine::{FunctionImage, SECRETS_PATH, function_image};
use crate::rules::{not_found, validate_secret};
use crate::{BundleInfo, Provider, ProviderError, Result, Routes};

/// Labels on every function service (and its containers).
pub const LABEL_FUNCTION: &str = "com.ferrofaas.function";
pub const LABEL_NAMESPACE: &str = "com.ferrofaas.namespace";
/// The deployment request, as JSON, on the service.
const LABEL_SPEC: &str = "com.ferrofaas.spec";
/// On services whose replicas get the watchdog's health check. (The engine
/// writes the health check back as `Healthcheck`, which bollard's model does
/// not read: the label says to put it back before a service is updated.)
const LABEL_HEALTH: &str = "com.ferrofaas.healthcheck";
/// Labels on the Docker secrets that hold function secrets.
pub const LABEL_SECRET: &str = "com.ferrofaas.secret";
const LABEL_SECRET_VERSION: &str = "com.ferrofaas.secret.version";
/// The port of the watchdog in every replica.
const REPLICA_PORT: u16 = 8080;
/// The overlay network of the gateway and its functions, unless configured.
pub const DEFAULT_NETWORK: &str = "ferrofaas-swarm";

/// On SIGTERM a replica keeps serving (while not ready) this long, so that
/// every gateway notices that its task is going before it stops listening.
const DRAIN_ANNOUNCE: &str = "2s";
const ENV_DEFAULTS: &[(&str, &str)] = &[("healthcheck_interval", DRAIN_ANNOUNCE), ("prefix_logs", "false")];
/// The health check Swarm runs in replicas of images that run faas-watchdog:
/// its start-first rolling updates wait for it. Each check is an exec in the
/// container (tens of milliseconds of the engine's CPU), so it is not run
/// often; engines that know a start interval (API 1.44) check new replicas
/// every 250 ms and then every 10 s, older ones every 3 s throughout.
const HEALTH_INTERVAL: Duration = Duration::from_secs(3);
const HEALTH_INTERVAL_AFTER_START: Duration = Duration::from_secs(10);
const HEALTH_START_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// The overlay network that the gateway and functions share.
    pub network: String,
    /// The static `faas-watchdog` that goes into images built from bundles.
    pub watchdog: PathBuf,
    /// Most processes and threads one replica may have.
    pub pids_limit: u64,
    /// Most bytes a pushed bundle may unpack to.
    pub bundle_max_unpacked: u64,
    /// Where images go so that every node can run them (`None`: functions
    /// run only on nodes that have their image, as on a one-node Swarm).
    pub registry: Option<registry::Registry>,
}

pub struct SwarmProvider {
    docker: Docker,
    /// Asks for service logs with their details (which task wrote a line),
    /// which bollard's options cannot say.
    logs_client: Docker,
    router: Arc<routing::Router>,
    watchdog: PathBuf,
    bundle_max_unpacked: u64,
    network: String,
    pids_limit: u64,
    registry: Option<registry::Registry>,
    /// Does the engine take a health check's start interval (API 1.44)?
    start_interval: bool,
    /// Serializes changes to secrets (versions are numbered).
    secrets: Mutex<()>,
    loops: Vec<JoinHandle<()>>,
}

impl Drop for SwarmProvider {
    fn drop(&mut self) {
        for l in &self.loops {
            l.abort();
        }
    }
}

/// The Swarm provider, on a Swarm manager's engine (`DOCKER_HOST` or the
/// default socket), with its routes filled from the Swarm's services.
pub async fn start(config: SwarmConfig) -> io::Result<Arc<SwarmProvider>> {
    let docker = crate::engine::connect().await?;
    let info = docker.info().await.map_err(io::Error::other)?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.control_available != Some(true) {
        return Err(io::Error::other(
            "this Docker engine is not a Swarm manager: run `docker swarm init --advertise-addr <address>` \
             (or point DOCKER_HOST at a manager)",
        ));
    }
    ensure_network(&docker, &config.network).await?;
    if !on_network(&docker, &config.network).await {
        tracing::warn!(
            network = %config.network,
            "this gateway is not on the functions' overlay network, so it cannot reach their replicas: \
             run it on the Swarm with `faas swarm up`"
        );
    }
    let node_id = swarm.node_id.unwrap_or_default();
    let router = Arc::new(routing::Router::new(docker.clone(), node_id, config.network.clone()));
    router.refresh().await?;
    let loops = vec![
        tokio::spawn(Arc::clone(&router).run()),
        tokio::spawn(Arc::clone(&router).watch_events()),
        tokio::spawn(Arc::clone(&router).watch_health()),
    ];
    let logs_client = docker.clone().with_request_modifier(|mut req| {
        let sep = if req.uri().query().is_some() { '&' } else { '?' };
        if req.uri().path().ends_with("/logs")
            && let Ok(uri) = format!("{}{sep}details=true", req.uri()).parse()
        {
            *req.uri_mut() = uri;
        }
        req
    });
    let version = docker.client_version();
    let start_interval = (version.major_version, version.minor_version) >= (1, 44);
    Ok(Arc::new(SwarmProvider {
        start_interval,
        logs_client,
        docker,
        router,
        watchdog: config.watchdog,
        network: config.network,
        pids_limit: config.pids_limit,
        registry: config.registry,
        bundle_max_unpacked: config.bundle_max_unpacked,
        secrets: Mutex::new(()),
        loops,
    }))
}

fn engine_err(context: &'static str) -> impl Fn(bollard::errors::Error) -> ProviderError {
    move |e| ProviderError::internal(context, e)
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

fn is_out_of_sequence(e: &bollard::errors::Error) -> bool {
    e.to_string().contains("out of sequence")
}

fn only_default_namespace(namespace: &str) -> Result<()> {
    if namespace.is_empty() || namespace == DEFAULT_NAMESPACE {
        Ok(())
    } else {
        Err(ProviderError::invalid(
            "namespace",
            format!("the Swarm provider has one namespace, {DEFAULT_NAMESPACE} (not {namespace:?})"),
        ))
    }
}

impl SwarmProvider {
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Given with every service created or updated: Swarm hands them to
    /// the nodes that pull its image.
    fn registry_credentials(&self) -> Option<bollard::auth::DockerCredentials> {
        self.registry.as_ref().and_then(registry::Registry::docker_credentials)
    }

    async fn service(&self, function: &FunctionRef) -> Result<FunctionService> {
        only_default_namespace(&function.namespace).map_err(|_| not_found(function))?;
        match self.docker.inspect_service(&function.name, None).await {
            Ok(service) => {
                FunctionService::from(service, self.start_interval).ok_or_else(|| not_found(function))
            }
            Err(e) if is_not_found(&e) => Err(not_found(function)),
            Err(e) => Err(ProviderError::internal("inspecting a service", e)),
        }
    }

    async fn services(&self) -> Result<Vec<FunctionService>> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![LABEL_FUNCTION]);
        let options = ListServicesOptionsBuilder::default().filters(&filters).build();
        let services =
            self.docker.list_services(Some(options)).await.map_err(engine_err("listing services"))?;
        Ok(services.into_iter().filter_map(|s| FunctionService::from(s, self.start_interval)).collect())
    }

    /// The newest error of a service's tasks ("No such image", a node
    /// that cannot run it, a container that exited).
    async fn why_not_ready(&self, service_id: &str) -> Option<String> {
        let tasks = self.router.engine.service_tasks(service_id).await.ok()?;
        let task = tasks
            .iter()
            .filter(|t| !t.status.err.is_empty())
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))?;
        Some(format!("task {} {}: {}", task.slot, task.status.state, task.status.err))
    }

    fn status_of(&self, s: &FunctionService) -> FunctionStatus {
        let route = self.router.routes.get(&s.deployment.service, &s.deployment.namespace);
        FunctionStatus {
            replicas: s.replicas,
            available_replicas: route.as_ref().map_or(0, |r| r.ready_count() as u64),
            invocation_count: 0.0,
            created_at: s.created_at.clone(),
            ..FunctionStatus::of(&s.deployment)
        }
    }
}

#[async_trait]
impl Provider for SwarmProvider {
    fn info(&self) -> ProviderInfo {
        crate::provider_info("ferrofaas-swarm", "swarm")
    }

    fn routes(&self) -> &Routes {
        &self.router.routes
    }

    async fn deploy(&self, mut spec: FunctionDeployment) -> Result<()> {
        let policies = spec.validate()?;
        only_default_namespace(&spec.namespace)?;
        let replicas = policies.scaling.min;
        match self.docker.inspect_service(&spec.service, None).await {
            Ok(existing) => {
                let ours =
                    existing.spec.and_then(|s| s.labels).is_some_and(|l| l.contains_key(LABEL_FUNCTION));
                return Err(ProviderError::Conflict(if ours {
                    format!("function {} already exists in namespace {}", spec.service, spec.namespace)
                } else {
                    format!("a Swarm service named {} exists and is not a function", spec.service)
                }));
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(ProviderError::internal("inspecting a service", e)),
        }
        let service = self.service_spec(&spec, replicas).await?;
        match self.docker.create_service(service, self.registry_credentials()).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }) => {
                return Err(ProviderError::Conflict(message));
            }
            Err(e) => return Err(ProviderError::internal("creating a service", e)),
        }
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let route = self.router.routes.ensure(&function);
        route.set_policies(policies);
        route.set_desired(replicas);
        self.router.wake.notify_one();
        tracing::info!(%function, image = %spec.image, replicas, "deployed");
        Ok(())
    }

    async fn update(&self, mut spec: FunctionDeployment) -> Result<()> {
        let policies = spec.validate()?;
        only_default_namespace(&spec.namespace)?;
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let current = self.service(&function).await?;
        let new = self.service_spec(&spec, current.replicas).await?;
        self.update_service(&function, |current| {
            let mut new = new.clone();
            new.mode = current.spec.mode.clone();
            Ok(Some(new))
        })
        .await?;
        self.router.routes.ensure(&function).set_policies(policies);
        tracing::info!(%function, image = %spec.image, "updated");
        Ok(())
    }

    async fn remove(&self, function: &FunctionRef) -> Result<()> {
        let service = self.service(function).await?;
        match self.docker.delete_service(&service.id).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Err(not_found(function)),
            Err(e) => return Err(ProviderError::internal("removing a service", e)),
        }
        self.router.routes.remove(function);
        self.router.wake.notify_one();
        tracing::info!(%function, "removed");
        Ok(())
    }

    async fn list(&self, namespace: &str) -> Result<Vec<FunctionStatus>> {
        if only_default_namespace(namespace).is_err() {
            return Ok(Vec::new());
        }
        let mut all: Vec<FunctionStatus> = self.services().await?.iter().map(|s| self.status_of(s)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn status(&self, function: &FunctionRef) -> Result<FunctionStatus> {
        let service = self.service(function).await?;
        let mut status = self.status_of(&service);
        if status.available_replicas < status.replicas {
            status.reason = self.why_not_ready(&service.id).await;
        }
        Ok(status)
    }

    async fn scale(&self, function: &FunctionRef, replicas: u64) -> Result<()> {
        crate::check_replicas(replicas)?;
        self.update_service(function, |current| {
            if current.replicas == replicas {
                return Ok(None);
            }
            let mut spec = current.spec.clone();
            spec.mode = Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas as i64) }),
                ..Default::default()
            });
            Ok(Some(spec))
        })
        .await?;
        if let Some(route) = self.router.routes.get(&function.name, &function.namespace) {
            route.set_desired(replicas);
        }
        tracing::info!(%function, replicas, "scaled");
        Ok(())
    }

    async fn logs(&self, request: LogRequest) -> Result<mpsc::Receiver<LogMessage>> {
        let function = request.function.clone();
        let service = self.service(&function).await?;
        let tail = request.tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let mut options = LogsOptionsBuilder::default()
            .follow(request.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&tail);
        if let Some(since) = request.since {
            let secs = since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            options = options.since(secs.min(i32::MAX as u64) as i32);
        }
        let mut stream = Box::pin(self.logs_client.service_logs(&service.id, Some(options.build())));
        let (tx, rx) = mpsc::channel(256);
        let router = Arc::clone(&self.router);
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                pending.extend_from_slice(&chunk.into_bytes());
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(message) = parse_log_line(line.trim_end(), &function, &router) else { continue };
                    if request.instance.as_ref().is_some_and(|i| *i != message.instance) {
                        continue;
                    }
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(vec![DEFAULT_NAMESPACE.to_owned()])
    }

    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        only_default_namespace(namespace)?;
        let mut names: Vec<String> = self.secret_versions().await?.into_keys().collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| Secret { name, namespace: DEFAULT_NAMESPACE.to_owned(), ..Default::default() })
            .collect())
    }

    async fn create_secret(&self, secret: Secret) -> Result<()> {
        let (name, ns) = validate_secret(&secret)?;
        only_default_namespace(&ns)?;
        check_secret_length(&name)?;
        let _lock = self.secrets.lock().await;
        if self.secret_versions().await?.contains_key(&name) || self.plain_secret(&name).await?.is_some() {
            return Err(ProviderError::Conflict(format!("secret {name} already exists in namespace {ns}")));
        }
        self.create_version(&name, &ns, 1, secret.bytes()).await?;
        tracing::info!(secret = %name, namespace = %ns, "secret created");
        Ok(())
    }

    async fn update_secret(&self, secret: Secret) -> Result<()> {
        let (name, ns) = validate_secret(&secret)?;
        only_default_namespace(&ns)?;
        let _lock = self.secrets.lock().await;
        let versions = self.secret_versions().await?;
        let Some(old) = versions.get(&name) else {
            return Err(ProviderError::NotFound(format!("secret {name} not found in namespace {ns}")));
        };
        let next = old.last().map_or(1, |(v, _, _)| v + 1);
        let (id, docker_name) = self.create_version(&name, &ns, next, secret.bytes()).await?;
        // Roll every function that uses it onto the new version.
        for service in self.services().await? {
            if !service.deployment.secrets.contains(&name) {
                continue;
            }
            let function = FunctionRef { name: service.deployment.service.clone(), namespace: ns.clone() };
            let result = self
                .update_service(&function, |current| {
                    let mut spec = current.spec.clone();
                    let refs = spec
                        .task_template
                        .as_mut()
                        .and_then(|t| t.container_spec.as_mut())
                        .and_then(|c| c.secrets.as_mut());
                    if let Some(refs) = refs {
                        for r in refs.iter_mut().filter(|r| secret_file_name(r) == Some(name.as_str())) {
                            *r = secret_ref(&name, id.clone(), docker_name.clone());
                        }
                    }
                    Ok(Some(spec))
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(%function, secret = %name, error = %e, "could not roll a function onto a new secret");
            }
        }
        // Older versions go once nothing uses them (Docker refuses before).
        for (_, id, _) in old {
            if let Err(e) = self.docker.delete_secret(id).await {
                tracing::debug!(secret = %name, error = %e, "an old version stays while in use");
            }
        }
        tracing::info!(secret = %name, namespace = %ns, version = next, "secret updated");
        Ok(())
    }

    async fn delete_secret(&self, name: &str, namespace: &str) -> Result<()> {
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        only_default_namespace(namespace)?;
        let _lock = self.secrets.lock().await;
        let versions = self.secret_versions().await?;
        let Some(versions) = versions.get(name) else {
            return Err(ProviderError::NotFound(format!("secret {name} not found in namespace {namespace}")));
        };
        let users: Vec<String> = self
            .services()
            .await?
            .into_iter()
            .filter(|s| s.deployment.secrets.iter().any(|s| s == name))
            .map(|s| s.deployment.service)
            .collect();
        if !users.is_empty() {
            return Err(ProviderError::Conflict(format!(
                "secret {name} is used by {}; remove it from them first",
                users.join(", ")
            )));
        }
        for (_, id, _) in versions {
            match self.docker.delete_secret(id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(ProviderError::internal("deleting a secret", e)),
            }
        }
        tracing::info!(secret = %name, %namespace, "secret deleted");
        Ok(())
    }

    async fn push_bundle(&self, image: &str, archive: &std::path::Path) -> Result<BundleInfo> {
        // The bases `faas swarm up` built on another manager, for a gateway
        // on this one.
        if let Some(registry) = &self.registry {
            let arch = crate::engine::image::program_arch(&self.watchdog)
                .unwrap_or_else(ferrofaas_types::platform::Arch::native);
            for (name, _) in crate::engine::image::BASES {
                let base = crate::engine::image::base_image(name, arch);
                if self.docker.inspect_image(&base).await.is_err() {
                    let _ = registry.fetch(&self.docker, &base).await;
                }
            }
        }
        let info = crate::engine::image::push_bundle(
            &self.docker,
            &self.watchdog,
            image,
            archive,
            self.bundle_max_unpacked,
        )
        .await?;
        // Under its name too, for the gateways on other managers: a deploy
        // may reach another one than the push did.
        if let Some(registry) = &self.registry {
            registry.publish(&self.docker, &info.image).await?;
        }
        Ok(info)
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        crate::engine::image::list_bundles(&self.docker).await
    }

    /// The Swarm keeps the functions running: a gateway that stops leaves
    /// them be.
    async fn shutdown(&self) {
        for l in &self.loops {
            l.abort();
        }
    }
}

/// A service log line: `<timestamp> <details> <text>`, the details being
/// `com.docker.swarm.node.id=…,com.docker.swarm.service.id=…,com.docker.swarm.task.id=…`.
fn parse_log_line(line: &str, function: &FunctionRef, router: &routing::Router) -> Option<LogMessage> {
    let (timestamp, rest) = line.split_once(' ')?;
    let (details, text) = match rest.split_once(' ') {
        Some((details, text)) if details.contains("com.docker.swarm.") => (details, text),
        _ if rest.contains("com.docker.swarm.") && !rest.contains(' ') => (rest, ""),
        _ => ("", rest),
    };
    let task = details.split(',').find_map(|kv| kv.strip_prefix("com.docker.swarm.task.id=")).unwrap_or("");
    let instance = router.instance_of(task).unwrap_or_else(|| task.to_owned());
    Some(LogMessage {
        name: function.name.clone(),
        namespace: function.namespace.clone(),
        instance,
        timestamp: timestamp.to_owned(),
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_namespace() {
        assert!(only_default_namespace("").is_ok());
        assert!(only_default_namespace("openfaas-fn").is_ok());
        assert!(matches!(only_default_namespace("team"), Err(ProviderError::Invalid { .. })));
    }
}
