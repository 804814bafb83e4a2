//! The process provider: every replica a local `faas-watchdog` process, the
//! embedded default. Small enough for a Raspberry Pi, no container engine.
//!
//! State lives in one folder:
//! - `functions/<ns>/<name>.json`: definitions (restored at start-up);
//! - `secrets/<ns>/<name>`: secret values (0600);
//! - `bundles/`: pushed function bundles (see [`bundles`]);
//! - `run/<ns>/<name>/<instance>/`: each replica's `TMPDIR` and secrets.
//!
//! What a function runs comes from its bundle's `bundle.json` environment,
//! then `envProcess` (as `fprocess`), then `envVars`: the same layering as a
//! Dockerfile's `ENV` under OpenFaaS. Secrets are files in the folder named by
//! `secret_mount_path`, as OpenFaaS's SDKs look for them.

pub mod bundles;
mod function;
mod logs;
mod replica;
mod secrets;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ferrofaas_types::names::{self, DEFAULT_NAMESPACE};
use ferrofaas_types::{
    FunctionDeployment, FunctionRef, FunctionStatus, LogMessage, LogRequest, ProviderInfo, Secret,
    VersionInfo,
};
use tokio::sync::{Mutex, mpsc};

use self::bundles::{BundleStore, Manifest};
use self::function::FunctionHandle;
use self::logs::LogHub;
pub use self::replica::Timing;
use self::replica::{ReplicaSpec, Shared};
use self::secrets::SecretStore;
use self::store::{FunctionStore, StoredFunction};
use crate::{BundleInfo, Provider, ProviderError, Result, Routes};

/// Label giving the number of replicas a function starts with.
pub const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";

/// Environment every replica's watchdog starts from (a bundle or the
/// deployment can override it): the gateway takes a replica out of routing
/// before stopping it, so no shutdown announcement is needed; and the
/// provider timestamps log lines itself.
const DEFAULT_ENV: &[(&str, &str)] = &[("healthcheck_interval", "0s"), ("prefix_logs", "false")];

#[derive(Clone, Debug)]
pub struct ProcessConfig {
    pub state_dir: PathBuf,
    /// The `faas-watchdog` executable replicas run.
    pub watchdog: PathBuf,
    pub timing: Timing,
}

impl ProcessConfig {
    pub fn new(state_dir: PathBuf, watchdog: PathBuf) -> ProcessConfig {
        ProcessConfig {
            state_dir,
            watchdog,
            timing: Timing {
                startup_timeout: Duration::from_secs(60),
                health_interval: Duration::from_secs(2),
                stop_timeout: Duration::from_secs(15),
            },
        }
    }
}

struct Entry {
    stored: StoredFunction,
    generation: u64,
    /// The bundle folder its replicas run (an update with the same spec and
    /// the same bundle changes nothing).
    bundle_dir: Option<PathBuf>,
    /// `None` when the function could not be started (e.g. its bundle is
    /// gone); it is still listed, with no replicas.
    handle: Option<FunctionHandle>,
}

pub struct ProcessProvider {
    config: ProcessConfig,
    routes: Routes,
    store: FunctionStore,
    secrets: Arc<SecretStore>,
    bundles: Arc<BundleStore>,
    logs: LogHub,
    functions: Mutex<BTreeMap<FunctionRef, Entry>>,
}

impl ProcessProvider {
    /// Opens the state folder and starts the functions stored there.
    pub async fn start(config: ProcessConfig) -> std::io::Result<Arc<ProcessProvider>> {
        let dir = &config.state_dir;
        crate::fsutil::create_private_dir(dir)?;
        replica::clean_run_dir(&dir.join("run"));
        let provider = Arc::new(ProcessProvider {
            store: FunctionStore::open(dir.join("functions"))?,
            secrets: Arc::new(SecretStore::open(dir.join("secrets"))?),
            bundles: Arc::new(BundleStore::open(dir.join("bundles"))?),
            routes: Routes::default(),
            logs: LogHub::default(),
            functions: Mutex::new(BTreeMap::new()),
            config,
        });
        let stored = provider.store.load_all()?;
        let mut functions = provider.functions.lock().await;
        for f in stored {
            let function = f.function();
            let (handle, bundle_dir) = match provider.replica_spec(&f.spec, 0) {
                Ok(spec) => {
                    let dir = spec.bundle_dir.clone();
                    (Some(provider.spawn(&function, spec, f.replicas)), Some(dir))
                }
                Err(e) => {
                    tracing::error!(%function, error = %e, "cannot start a stored function");
                    provider.routes.ensure(&function);
                    (None, None)
                }
            };
            tracing::info!(%function, replicas = f.replicas, "restored function");
            functions.insert(function, Entry { stored: f, generation: 0, bundle_dir, handle });
        }
        drop(functions);
        Ok(provider)
    }

    fn spawn(&self, function: &FunctionRef, spec: Arc<ReplicaSpec>, replicas: u64) -> FunctionHandle {
        let route = self.routes.ensure(function);
        let shared = Arc::new(Shared {
            secrets: Arc::clone(&self.secrets),
            log: self.logs.function(function),
            timing: self.config.timing,
        });
        FunctionHandle::spawn(spec, replicas, route, shared)
    }

    /// Everything a replica of `spec` needs, or why it cannot run here.
    fn replica_spec(&self, spec: &FunctionDeployment, generation: u64) -> Result<Arc<ReplicaSpec>> {
        let bundle_dir = self.bundles.resolve(&spec.image)?;
        let manifest = Manifest::read(&bundle_dir)?;
        let mut env: BTreeMap<String, String> =
            DEFAULT_ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.extend(manifest.env);
        if !spec.env_process.is_empty() {
            env.insert("fprocess".into(), spec.env_process.clone());
        }
        env.extend(spec.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        let is_static = env.get("mode").is_some_and(|m| m == "static");
        if !is_static && !env.contains_key("fprocess") && !env.contains_key("function_process") {
            return Err(ProviderError::invalid(
                "envProcess",
                format!(
                    "nothing to run: set envProcess, or ship a {} with env.fprocess in the bundle",
                    bundles::MANIFEST
                ),
            ));
        }
        for secret in &spec.secrets {
            if !self.secrets.exists(&spec.namespace, secret) {
                return Err(ProviderError::invalid(
                    "secrets",
                    format!("secret {secret} does not exist in namespace {}", spec.namespace),
                ));
            }
        }
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        Ok(Arc::new(ReplicaSpec {
            run_dir: self.config.state_dir.join("run").join(&function.namespace).join(&function.name),
            function,
            generation,
            watchdog: self.config.watchdog.clone(),
            bundle_dir,
            env: env.into_iter().collect(),
            secrets: spec.secrets.clone(),
        }))
    }

    fn status_of(&self, entry: &Entry) -> FunctionStatus {
        let spec = &entry.stored.spec;
        let counts = entry.handle.as_ref().map(|h| h.counts()).unwrap_or_default();
        FunctionStatus {
            name: spec.service.clone(),
            image: spec.image.clone(),
            namespace: spec.namespace.clone(),
            env_process: spec.env_process.clone(),
            env_vars: spec.env_vars.clone(),
            constraints: spec.constraints.clone(),
            secrets: spec.secrets.clone(),
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            limits: spec.limits.clone(),
            requests: spec.requests.clone(),
            read_only_root_filesystem: spec.read_only_root_filesystem,
            invocation_count: 0.0,
            replicas: entry.stored.replicas,
            available_replicas: counts.ready,
            created_at: entry.stored.created_at.clone(),
            usage: None,
        }
    }

    fn save(&self, stored: &StoredFunction) -> Result<()> {
        self.store.save(stored).map_err(|e| ProviderError::internal("saving function", e))
    }

    /// Rewrites a secret in the folders of running replicas that use it.
    fn refresh_secret(&self, namespace: &str, name: &str, functions: &BTreeMap<FunctionRef, Entry>) {
        for (f, entry) in functions {
            if f.namespace != namespace || !entry.stored.spec.secrets.iter().any(|s| s == name) {
                continue;
            }
            let run_dir = self.config.state_dir.join("run").join(&f.namespace).join(&f.name);
            let Ok(instances) = std::fs::read_dir(&run_dir) else { continue };
            for instance in instances.flatten() {
                let dest = instance.path().join("secrets");
                if let Err(e) = self.secrets.materialize(namespace, &[name.to_owned()], &dest) {
                    tracing::warn!(function = %f, secret = name, error = %e, "could not refresh a secret");
                }
            }
        }
    }
}

fn initial_replicas(spec: &FunctionDeployment) -> Result<u64> {
    match spec.labels.get(LABEL_SCALE_MIN) {
        None => Ok(1),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n <= ferrofaas_types::function::MAX_REPLICAS => Ok(n),
            _ => Err(ProviderError::invalid(
                format!("labels.{LABEL_SCALE_MIN}"),
                format!(
                    "{v:?} is not a whole number of replicas up to {}",
                    ferrofaas_types::function::MAX_REPLICAS
                ),
            )),
        },
    }
}

fn not_found(f: &FunctionRef) -> ProviderError {
    ProviderError::NotFound(format!("function {} not found in namespace {}", f.name, f.namespace))
}

#[async_trait]
impl Provider for ProcessProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "ferrofaas-process".into(),
            orchestration: "process".into(),
            version: VersionInfo {
                commit_message: String::new(),
                sha: option_env!("FERROFAAS_GIT_SHA").unwrap_or("").into(),
                release: env!("CARGO_PKG_VERSION").into(),
            },
        }
    }

    fn routes(&self) -> &Routes {
        &self.routes
    }

    async fn deploy(&self, mut spec: FunctionDeployment) -> Result<()> {
        spec.validate()?;
        let replicas = initial_replicas(&spec)?;
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let mut functions = self.functions.lock().await;
        if functions.contains_key(&function) {
            return Err(ProviderError::Conflict(format!(
                "function {} already exists in namespace {}",
                function.name, function.namespace
            )));
        }
        let replica_spec = self.replica_spec(&spec, 0)?;
        let stored = StoredFunction {
            spec,
            replicas,
            created_at: ferrofaas_types::time::format(SystemTime::now(), false),
        };
        self.save(&stored)?;
        let bundle_dir = Some(replica_spec.bundle_dir.clone());
        let handle = self.spawn(&function, replica_spec, replicas);
        tracing::info!(%function, image = %stored.spec.image, replicas, "deployed");
        functions.insert(function, Entry { stored, generation: 0, bundle_dir, handle: Some(handle) });
        Ok(())
    }

    async fn update(&self, mut spec: FunctionDeployment) -> Result<()> {
        spec.validate()?;
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let mut functions = self.functions.lock().await;
        let generation = match functions.get(&function) {
            Some(entry) => entry.generation + 1,
            None => return Err(not_found(&function)),
        };
        let replica_spec = self.replica_spec(&spec, generation)?;
        let Some(entry) = functions.get_mut(&function) else { return Err(not_found(&function)) };
        if entry.stored.spec == spec
            && entry.bundle_dir.as_ref() == Some(&replica_spec.bundle_dir)
            && entry.handle.is_some()
        {
            tracing::debug!(%function, "update changes nothing");
            return Ok(());
        }
        entry.bundle_dir = Some(replica_spec.bundle_dir.clone());
        let stored = StoredFunction { spec, ..entry.stored.clone() };
        self.save(&stored)?;
        entry.stored = stored;
        entry.generation = generation;
        match &entry.handle {
            Some(handle) => handle.update(replica_spec),
            None => entry.handle = Some(self.spawn(&function, replica_spec, entry.stored.replicas)),
        }
        tracing::info!(%function, image = %entry.stored.spec.image, generation, "updated");
        Ok(())
    }

    async fn remove(&self, function: &FunctionRef) -> Result<()> {
        let entry = self.functions.lock().await.remove(function).ok_or_else(|| not_found(function))?;
        if let Err(e) = self.store.delete(function) {
            tracing::error!(%function, error = %e, "could not delete the stored definition");
        }
        self.routes.remove(function);
        if let Some(handle) = entry.handle {
            handle.stop().await;
        }
        self.logs.remove(function);
        let _ = std::fs::remove_dir_all(
            self.config.state_dir.join("run").join(&function.namespace).join(&function.name),
        );
        tracing::info!(%function, "removed");
        Ok(())
    }

    async fn list(&self, namespace: &str) -> Result<Vec<FunctionStatus>> {
        let functions = self.functions.lock().await;
        Ok(functions
            .iter()
            .filter(|(f, _)| f.namespace == namespace)
            .map(|(_, e)| self.status_of(e))
            .collect())
    }

    async fn status(&self, function: &FunctionRef) -> Result<FunctionStatus> {
        let functions = self.functions.lock().await;
        functions.get(function).map(|e| self.status_of(e)).ok_or_else(|| not_found(function))
    }

    async fn scale(&self, function: &FunctionRef, replicas: u64) -> Result<()> {
        if replicas > ferrofaas_types::function::MAX_REPLICAS {
            return Err(ProviderError::invalid(
                "replicas",
                format!("at most {} replicas", ferrofaas_types::function::MAX_REPLICAS),
            ));
        }
        let mut functions = self.functions.lock().await;
        let entry = functions.get_mut(function).ok_or_else(|| not_found(function))?;
        let stored = StoredFunction { replicas, ..entry.stored.clone() };
        self.save(&stored)?;
        entry.stored = stored;
        if let Some(handle) = &entry.handle {
            handle.scale(replicas);
        }
        tracing::info!(%function, replicas, "scaled");
        Ok(())
    }

    async fn logs(&self, request: LogRequest) -> Result<mpsc::Receiver<LogMessage>> {
        let function = FunctionRef::new(&request.name, Some(&request.namespace))
            .map_err(|e| ProviderError::invalid("name", e.to_string()))?;
        if !self.functions.lock().await.contains_key(&function) {
            return Err(not_found(&function));
        }
        Ok(self.logs.read(&request, self.logs.function(&function)))
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        let mut set: BTreeSet<String> = BTreeSet::from([DEFAULT_NAMESPACE.to_owned()]);
        set.extend(self.functions.lock().await.keys().map(|f| f.namespace.clone()));
        Ok(set.into_iter().collect())
    }

    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        names::validate_namespace(namespace)
            .map_err(|e| ProviderError::invalid("namespace", e.to_string()))?;
        Ok(self
            .secrets
            .list(namespace)?
            .into_iter()
            .map(|name| Secret { name, namespace: namespace.to_owned(), ..Default::default() })
            .collect())
    }

    async fn create_secret(&self, secret: Secret) -> Result<()> {
        let (name, ns) = validate_secret(&secret)?;
        self.secrets.create(&ns, &name, secret.bytes())?;
        tracing::info!(secret = %name, namespace = %ns, "secret created");
        Ok(())
    }

    async fn update_secret(&self, secret: Secret) -> Result<()> {
        let (name, ns) = validate_secret(&secret)?;
        let functions = self.functions.lock().await;
        self.secrets.update(&ns, &name, secret.bytes())?;
        self.refresh_secret(&ns, &name, &functions);
        tracing::info!(secret = %name, namespace = %ns, "secret updated");
        Ok(())
    }

    async fn delete_secret(&self, name: &str, namespace: &str) -> Result<()> {
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        names::validate_secret_name(name).map_err(|e| ProviderError::invalid("name", e.to_string()))?;
        names::validate_namespace(namespace)
            .map_err(|e| ProviderError::invalid("namespace", e.to_string()))?;
        let functions = self.functions.lock().await;
        let users: Vec<String> = functions
            .iter()
            .filter(|(f, e)| f.namespace == namespace && e.stored.spec.secrets.iter().any(|s| s == name))
            .map(|(f, _)| f.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(ProviderError::Conflict(format!(
                "secret {name} is used by {}; remove it from them first",
                users.join(", ")
            )));
        }
        self.secrets.delete(namespace, name)?;
        tracing::info!(secret = %name, %namespace, "secret deleted");
        Ok(())
    }

    async fn push_bundle(&self, image: &str, archive: Bytes) -> Result<BundleInfo> {
        let bundles = Arc::clone(&self.bundles);
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || bundles.push(&image, archive))
            .await
            .map_err(|e| ProviderError::internal("storing bundle", e))?
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        Ok(self.bundles.list())
    }

    async fn shutdown(&self) {
        let functions = self.functions.lock().await;
        let stops = functions.values().filter_map(|e| e.handle.as_ref()).map(FunctionHandle::stop);
        futures_join_all(stops).await;
    }
}

fn validate_secret(secret: &Secret) -> Result<(String, String)> {
    names::validate_secret_name(&secret.name).map_err(|e| ProviderError::invalid("name", e.to_string()))?;
    let ns = if secret.namespace.is_empty() { DEFAULT_NAMESPACE } else { &secret.namespace };
    names::validate_namespace(ns).map_err(|e| ProviderError::invalid("namespace", e.to_string()))?;
    if secret.bytes().is_empty() {
        return Err(ProviderError::invalid("value", "a secret needs a value (value or rawValue)"));
    }
    if secret.bytes().len() > ferrofaas_types::secret::MAX_SECRET_BYTES {
        return Err(ProviderError::invalid(
            "value",
            format!("at most {} KiB", ferrofaas_types::secret::MAX_SECRET_BYTES / 1024),
        ));
    }
    Ok((secret.name.clone(), ns.to_owned()))
}

/// Awaits every future, concurrently.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    // The futures borrow `self`, so they cannot be spawned; poll them together.
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
}
