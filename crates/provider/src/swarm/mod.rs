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
mod routing;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecPrivileges, TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
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

use crate::container::{Hardening, limits};
use crate::docker::{FunctionImage, SECRETS_PATH, function_image};
use crate::local::{initial_replicas, not_found, validate_secret};
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
    let docker = crate::docker::connect().await?;
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
    let router = Arc::new(routing::Router::new(docker.clone(), config.network.clone()));
    router.refresh().await?;
    let loops =
        vec![tokio::spawn(Arc::clone(&router).run()), tokio::spawn(Arc::clone(&router).watch_events())];
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
        bundle_max_unpacked: config.bundle_max_unpacked,
        secrets: Mutex::new(()),
        loops,
    }))
}

/// Creates the attachable overlay network `name` unless it exists; an
/// existing network of another kind is an error.
pub async fn ensure_network(docker: &Docker, name: &str) -> io::Result<()> {
    if let Ok(existing) =
        docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await
    {
        return match existing.driver.as_deref() {
            Some("overlay") => Ok(()),
            other => Err(io::Error::other(format!(
                "network {name} exists with driver {}: the Swarm provider needs an overlay network \
                 (remove it, or choose another name)",
                other.unwrap_or("?")
            ))),
        };
    }
    let request = NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("overlay".to_owned()),
        attachable: Some(true),
        labels: Some(HashMap::from([(LABEL_FUNCTION.to_owned(), "network".to_owned())])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(()),
        Err(_)
            if docker
                .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
                .await
                .is_ok() =>
        {
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("creating the overlay network {name}: {e}"))),
    }
}

/// Has this process an address in one of `network`'s subnets?
async fn on_network(docker: &Docker, network: &str) -> bool {
    let Ok(inspect) =
        docker.inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>).await
    else {
        return false;
    };
    let subnets: Vec<(std::net::Ipv4Addr, u32)> = inspect
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let (ip, bits) = c.subnet.as_deref()?.split_once('/')?;
            Some((ip.parse().ok()?, bits.parse().ok()?))
        })
        .collect();
    local_ipv4_addresses().iter().any(|addr| {
        subnets.iter().any(|(net, bits)| {
            let mask = if *bits == 0 { 0 } else { u32::MAX << (32 - bits.min(&32)) };
            u32::from(*addr) & mask == u32::from(*net) & mask
        })
    })
}

/// The IPv4 addresses of this process's network interfaces.
fn local_ipv4_addresses() -> Vec<std::net::Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read,
    // then free with freeifaddrs exactly once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = addr as *const libc::sockaddr_in;
                out.push(std::net::Ipv4Addr::from(u32::from_be((*sin).sin_addr.s_addr)));
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
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

/// A function's service as this provider reads it back.
struct FunctionService {
    id: String,
    version: u64,
    spec: ServiceSpec,
    deployment: FunctionDeployment,
    replicas: u64,
    created_at: String,
}

impl FunctionService {
    fn from(service: bollard::models::Service, start_interval: bool) -> Option<FunctionService> {
        let mut spec = service.spec?;
        if spec.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_HEALTH))
            && let Some(container) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut())
        {
            container.health_check = Some(watchdog_health_check(start_interval));
        }
        let labels = spec.labels.as_ref()?;
        labels.get(LABEL_FUNCTION)?;
        let deployment: FunctionDeployment = serde_json::from_str(labels.get(LABEL_SPEC)?).ok()?;
        let replicas =
            spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(0);
        Some(FunctionService {
            id: service.id?,
            version: service.version.and_then(|v| v.index).unwrap_or(0),
            deployment,
            replicas: replicas.max(0) as u64,
            created_at: service.created_at.unwrap_or_default(),
            spec,
        })
    }
}

/// A secret version: `<name>_v<n>` (`_` cannot occur in secret names).
fn secret_version_name(name: &str, version: u64) -> String {
    format!("{name}_v{version}")
}

/// Docker keeps secret names of at most 64 characters; a version suffix
/// (`_v` and up to six digits) must fit beside the name.
const MAX_SECRET_NAME: usize = 64 - 8;

/// A secret name that fits Docker's limit with its version.
fn check_secret_length(name: &str) -> Result<()> {
    if name.len() > MAX_SECRET_NAME {
        return Err(ProviderError::invalid(
            "name",
            format!(
                "on Docker Swarm a secret name has at most {MAX_SECRET_NAME} characters (Docker keeps 64, \
                 with the version ferrofaas adds); this one has {}",
                name.len()
            ),
        ));
    }
    Ok(())
}

impl SwarmProvider {
    pub fn docker(&self) -> &Docker {
        &self.docker
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

    /// Docker secrets of this provider (labelled), by secret name: the
    /// versions, newest last, as (version, id, docker name).
    async fn secret_versions(&self) -> Result<HashMap<String, Vec<(u64, String, String)>>> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![LABEL_SECRET]);
        let options = ListSecretsOptionsBuilder::default().filters(&filters).build();
        let secrets = self.docker.list_secrets(Some(options)).await.map_err(engine_err("listing secrets"))?;
        let mut by_name: HashMap<String, Vec<(u64, String, String)>> = HashMap::new();
        for s in secrets {
            let (Some(id), Some(spec)) = (s.id, s.spec) else { continue };
            let labels = spec.labels.unwrap_or_default();
            let (Some(name), Some(version)) = (
                labels.get(LABEL_SECRET),
                labels.get(LABEL_SECRET_VERSION).and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            by_name.entry(name.clone()).or_default().push((version, id, spec.name.unwrap_or_default()));
        }
        for versions in by_name.values_mut() {
            versions.sort();
        }
        Ok(by_name)
    }

    /// A plain Docker secret named `name` (not made by this provider).
    async fn plain_secret(&self, name: &str) -> Result<Option<(String, String)>> {
        match self.docker.inspect_secret(name).await {
            Ok(s) => {
                let spec = s.spec.unwrap_or_default();
                let ours = spec.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_SECRET));
                Ok((!ours && spec.name.as_deref() == Some(name))
                    .then(|| (s.id.unwrap_or_default(), name.to_owned())))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(ProviderError::internal("inspecting a secret", e)),
        }
    }

    /// The secret references of a function: the newest version of each.
    async fn secret_refs(&self, names: &[String]) -> Result<Vec<TaskSpecContainerSpecSecrets>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let versions = self.secret_versions().await?;
        let mut refs = Vec::new();
        for name in names {
            let (id, docker_name) = match versions.get(name).and_then(|v| v.last()) {
                Some((_, id, docker_name)) => (id.clone(), docker_name.clone()),
                None => self.plain_secret(name).await?.ok_or_else(|| {
                    ProviderError::invalid(
                        "secrets",
                        format!("no secret {name}: create it first (faas secret create)"),
                    )
                })?,
            };
            refs.push(secret_ref(name, id, docker_name));
        }
        Ok(refs)
    }

    /// The service spec of a deployment.
    async fn service_spec(&self, spec: &FunctionDeployment, replicas: u64) -> Result<ServiceSpec> {
        let FunctionImage { id, env, runs_watchdog } =
            function_image(&self.docker, spec, ENV_DEFAULTS).await?;
        let secrets = self.secret_refs(&spec.secrets).await?;
        let mut labels: HashMap<String, String> =
            spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(LABEL_FUNCTION.into(), spec.service.clone());
        labels.insert(LABEL_NAMESPACE.into(), spec.namespace.clone());
        let container_labels = labels.clone();
        let json =
            serde_json::to_string(spec).map_err(|e| ProviderError::internal("encoding the spec", e))?;
        labels.insert(LABEL_SPEC.into(), json);
        let (memory, nano_cpus) = limits(spec.limits.as_ref());
        let (reserve_memory, reserve_cpus) = limits(spec.requests.as_ref());
        let hardening = Hardening::of(spec, self.pids_limit)?;
        let mounts = spec.read_only_root_filesystem.then(|| {
            vec![Mount {
                target: Some("/tmp".into()),
                typ: Some(MountType::TMPFS),
                tmpfs_options: Some(MountTmpfsOptions { size_bytes: Some(64 << 20), ..Default::default() }),
                ..Default::default()
            }]
        });
        // Long enough for the drain announcement and in-flight requests.
        let write_timeout = spec
            .env_vars
            .get("write_timeout")
            .and_then(|v| ferrofaas_types::duration::parse(v))
            .unwrap_or(Duration::from_secs(10));
        let stop_grace = Duration::from_secs(2) + write_timeout + Duration::from_secs(2);
        let health = runs_watchdog.then(|| watchdog_health_check(self.start_interval));
        if runs_watchdog {
            labels.insert(LABEL_HEALTH.into(), "watchdog".into());
        }
        let container = TaskSpecContainerSpec {
            image: Some(id),
            labels: Some(container_labels),
            env: Some(env),
            read_only: Some(spec.read_only_root_filesystem),
            mounts,
            secrets: Some(secrets),
            init: Some(true),
            capability_drop: Some(hardening.cap_drop),
            capability_add: Some(hardening.cap_add),
            // Engines before API 1.46 ignore it; the watchdog sets it then.
            privileges: Some(TaskSpecContainerSpecPrivileges {
                no_new_privileges: Some(true),
                ..Default::default()
            }),
            stop_grace_period: Some(stop_grace.as_nanos() as i64),
            health_check: health,
            ..Default::default()
        };
        let resources = TaskSpecResources {
            limits: Some(Limit { memory_bytes: memory, nano_cpus, pids: Some(hardening.pids_limit) }),
            reservations: Some(ResourceObject {
                memory_bytes: reserve_memory,
                nano_cpus: reserve_cpus,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(ServiceSpec {
            name: Some(spec.service.clone()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(container),
                resources: Some(resources),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    delay: Some(Duration::from_millis(500).as_nanos() as i64),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(spec.constraints.clone()),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(self.network.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas as i64) }),
                ..Default::default()
            }),
            update_config: Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
                failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                monitor: Some(Duration::from_secs(1).as_nanos() as i64),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// `update_service` at the version it was read at, read again and
    /// retried if someone else changed it meanwhile.
    async fn update_service(
        &self,
        function: &FunctionRef,
        change: impl Fn(&FunctionService) -> Result<Option<ServiceSpec>>,
    ) -> Result<()> {
        for _ in 0..5 {
            let current = self.service(function).await?;
            let Some(spec) = change(&current)? else { return Ok(()) };
            let options = UpdateServiceOptionsBuilder::default().version(current.version as i32).build();
            match self.docker.update_service(&current.id, spec, options, None).await {
                Ok(_) => {
                    self.router.wake.notify_one();
                    return Ok(());
                }
                Err(e) if is_out_of_sequence(&e) => continue,
                Err(e) => return Err(ProviderError::internal("updating a service", e)),
            }
        }
        Err(ProviderError::Conflict(format!("function {} kept changing; try again", function.name)))
    }
}

/// `faas-watchdog --ready`, as often as the engine allows cheaply.
fn watchdog_health_check(start_interval: bool) -> HealthConfig {
    let interval = if start_interval { HEALTH_INTERVAL_AFTER_START } else { HEALTH_INTERVAL };
    HealthConfig {
        test: Some(vec!["CMD".into(), "/usr/bin/faas-watchdog".into(), "--ready".into()]),
        interval: Some(interval.as_nanos() as i64),
        timeout: Some(Duration::from_secs(3).as_nanos() as i64),
        retries: Some(3),
        start_period: Some(Duration::from_secs(120).as_nanos() as i64),
        start_interval: start_interval.then(|| HEALTH_START_INTERVAL.as_nanos() as i64),
    }
}

fn secret_ref(name: &str, id: String, docker_name: String) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(format!("{SECRETS_PATH}/{name}")),
            uid: Some("0".into()),
            gid: Some("0".into()),
            mode: Some(0o444),
        }),
        secret_id: Some(id),
        secret_name: Some(docker_name),
    }
}

/// The name a secret reference's file gives (the function's secret name).
fn secret_file_name(r: &TaskSpecContainerSpecSecrets) -> Option<&str> {
    r.file.as_ref()?.name.as_deref()?.strip_prefix(SECRETS_PATH)?.strip_prefix('/')
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
        spec.validate()?;
        only_default_namespace(&spec.namespace)?;
        let replicas = initial_replicas(&spec)?;
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
        match self.docker.create_service(service, None).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }) => {
                return Err(ProviderError::Conflict(message));
            }
            Err(e) => return Err(ProviderError::internal("creating a service", e)),
        }
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        self.router.routes.ensure(&function).set_desired(replicas);
        self.router.wake.notify_one();
        tracing::info!(%function, image = %spec.image, replicas, "deployed");
        Ok(())
    }

    async fn update(&self, mut spec: FunctionDeployment) -> Result<()> {
        spec.validate()?;
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
        crate::docker::image::push_bundle(
            &self.docker,
            &self.watchdog,
            image,
            archive,
            self.bundle_max_unpacked,
        )
        .await
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        crate::docker::image::list_bundles(&self.docker).await
    }

    /// The Swarm keeps the functions running: a gateway that stops leaves
    /// them be.
    async fn shutdown(&self) {
        for l in &self.loops {
            l.abort();
        }
    }
}

impl SwarmProvider {
    async fn create_version(
        &self,
        name: &str,
        namespace: &str,
        version: u64,
        value: &[u8],
    ) -> Result<(String, String)> {
        let docker_name = secret_version_name(name, version);
        let spec = SecretSpec {
            name: Some(docker_name.clone()),
            labels: Some(HashMap::from([
                (LABEL_SECRET.to_owned(), name.to_owned()),
                (LABEL_NAMESPACE.to_owned(), namespace.to_owned()),
                (LABEL_SECRET_VERSION.to_owned(), version.to_string()),
            ])),
            data: Some(ferrofaas_types::base64::encode(value)),
            ..Default::default()
        };
        match self.docker.create_secret(spec).await {
            Ok(created) => Ok((created.id, docker_name)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                Err(ProviderError::Conflict(format!(
                    "a Docker secret named {docker_name} exists and is not this secret"
                )))
            }
            Err(e) => Err(ProviderError::internal("creating a secret", e)),
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
    fn secret_versions_cannot_collide_with_secret_names() {
        let name = secret_version_name("db.password", 3);
        assert_eq!(name, "db.password_v3");
        assert!(ferrofaas_types::names::validate_secret_name(&name).is_err());
    }

    #[test]
    fn secret_files_are_named_after_the_secret() {
        let r = secret_ref("api-key", "id".into(), "api-key_v2".into());
        assert_eq!(secret_file_name(&r), Some("api-key"));
        assert_eq!(r.file.as_ref().and_then(|f| f.name.as_deref()), Some("/var/openfaas/secrets/api-key"));
    }

    #[test]
    fn this_process_has_a_loopback_address() {
        assert!(local_ipv4_addresses().contains(&std::net::Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn only_the_default_namespace() {
        assert!(only_default_namespace("").is_ok());
        assert!(only_default_namespace("openfaas-fn").is_ok());
        assert!(matches!(only_default_namespace("team"), Err(ProviderError::Invalid { .. })));
    }
}
