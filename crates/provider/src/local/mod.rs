//! Providers whose replicas this machine supervises itself: local processes
//! ([`crate::process`]) or containers on a local engine ([`crate::docker`]).
//! Everything but starting one replica is shared, here:
//!
//! - definitions in `functions/<ns>/<name>.json`, restored at start-up;
//! - secrets in `secrets/<ns>/<name>` (0600), copied into each replica's
//!   folder;
//! - one supervisor task per function, reconciling desired replicas (and the
//!   version of the spec) with running ones; one task per replica slot,
//!   restarting it with backoff;
//! - log lines of every replica, kept per function and followable.
//!
//! A [`Backend`] turns a deployment into what its replicas run
//! ([`Backend::prepare`]) and starts one replica ([`Backend::launch`]).

mod function;
pub mod logs;
pub mod replica;
mod secrets;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ferrofaas_types::names::{self, DEFAULT_NAMESPACE};
use ferrofaas_types::{
    FunctionDeployment, FunctionRef, FunctionStatus, LogMessage, LogRequest, Policies, ProviderInfo, Secret,
};
use tokio::sync::{Mutex, mpsc};

use self::function::FunctionHandle;
use self::logs::{FunctionLog, LogHub};
use self::replica::{Generation, Shared};
pub use self::replica::{Instance, Timing};
pub use self::secrets::SecretAccess;
use self::secrets::SecretStore;
use self::store::{FunctionStore, StoredFunction};
pub(crate) use crate::rules::{not_found, validate_secret};
use crate::{BundleInfo, Provider, ProviderError, Result, Routes};

/// Environment every replica's watchdog starts from, whatever runs it (a
/// bundle, an image or the deployment can override it). The gateway takes a
/// replica out of routing before stopping it; the half second of
/// `healthcheck_interval` covers the requests routed to it just before, so
/// that rolling updates and scaling down fail none. The provider timestamps
/// log lines itself.
pub const DEFAULT_ENV: &[(&str, &str)] = &[("healthcheck_interval", "500ms"), ("prefix_logs", "false")];

/// What a backend gets to start one replica.
pub struct Launch<'a> {
    pub function: &'a FunctionRef,
    /// The instance's name (in logs and routes).
    pub instance: &'a str,
    /// The instance's own folder (with a `tmp/`), removed when it stops.
    pub dir: &'a Path,
    /// Its secrets, one file each.
    pub secrets_dir: &'a Path,
    /// Where its output goes, line by line.
    pub log: &'a Arc<FunctionLog>,
}

/// What starts replicas: processes, containers.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// What every replica of one version of a function runs.
    type Spec: Send + Sync + 'static;

    fn info(&self) -> ProviderInfo;

    /// Checks that `spec` can run here and prepares what its replicas need.
    /// The string says what exactly runs (a bundle folder, an image id): an
    /// update to the same spec and the same string changes nothing.
    async fn prepare(&self, spec: &FunctionDeployment) -> Result<(Self::Spec, String)>;

    /// Starts one replica.
    async fn launch(&self, spec: &Self::Spec, launch: Launch<'_>) -> io::Result<Box<dyn Instance>>;

    /// Modes and owner of a replica's secret files, for whoever the
    /// replicas of `function` run as.
    fn secret_access(&self, function: &FunctionRef) -> SecretAccess {
        let _ = function;
        SecretAccess::default()
    }

    /// `function` was removed and its replicas are gone.
    fn removed(&self, function: &FunctionRef) {
        let _ = function;
    }

    async fn push_bundle(&self, image: &str, archive: &Path) -> Result<BundleInfo> {
        let _ = (image, archive);
        Err(ProviderError::Unsupported("this provider does not store function bundles".into()))
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        Err(ProviderError::Unsupported("this provider does not store function bundles".into()))
    }

    /// Removes what a previous run left (replicas killed with the gateway).
    async fn clean(&self) {}

    /// Every replica has stopped (the provider is shutting down): lets go
    /// of what the backend holds on the machine.
    async fn stopped(&self) {}
}

#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub state_dir: PathBuf,
    pub timing: Timing,
}

impl LocalConfig {
    pub fn new(state_dir: PathBuf) -> LocalConfig {
        LocalConfig {
            state_dir,
            timing: Timing {
                startup_timeout: Duration::from_secs(60),
                health_interval: Duration::from_secs(2),
                stop_timeout: Duration::from_secs(15),
            },
        }
    }
}

struct Entry<B: Backend> {
    stored: StoredFunction,
    generation: u64,
    /// What its replicas run (see [`Backend::prepare`]).
    identity: Option<String>,
    /// `None` when the function could not be started (e.g. its image is
    /// gone); it is still listed, with no replicas.
    handle: Option<FunctionHandle<B>>,
    /// Why it could not be started, then.
    unstartable: Option<String>,
}

pub struct LocalProvider<B: Backend> {
    backend: Arc<B>,
    config: LocalConfig,
    routes: Routes,
    store: FunctionStore,
    secrets: Arc<SecretStore>,
    logs: LogHub,
    functions: Mutex<BTreeMap<FunctionRef, Entry<B>>>,
}

impl<B: Backend> LocalProvider<B> {
    /// Opens the state folder and starts the functions stored there.
    pub async fn start(backend: B, config: LocalConfig) -> io::Result<Arc<LocalProvider<B>>> {
        let dir = &config.state_dir;
        crate::fsutil::create_private_dir(dir)?;
        if let Err(e) = std::fs::remove_dir_all(dir.join("run"))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not clean old replica folders");
        }
        backend.clean().await;
        let provider = Arc::new(LocalProvider {
            store: FunctionStore::open(dir.join("functions"))?,
            secrets: Arc::new(SecretStore::open(dir.join("secrets"))?),
            backend: Arc::new(backend),
            routes: Routes::default(),
            logs: LogHub::default(),
            functions: Mutex::new(BTreeMap::new()),
            config,
        });
        let stored = provider.store.load_all()?;
        let mut functions = provider.functions.lock().await;
        for f in stored {
            let function = f.function();
            provider.routes.ensure(&function).set_policies(Policies::of(&f.spec).unwrap_or_default());
            let (handle, identity, unstartable) = match provider.generation(&f.spec, 0).await {
                Ok((spec, identity)) => {
                    (Some(provider.spawn(&function, spec, f.replicas)), Some(identity), None)
                }
                Err(e) => {
                    tracing::error!(%function, error = %e, "cannot start a stored function");
                    provider.routes.ensure(&function);
                    (None, None, Some(format!("it cannot be started: {e}")))
                }
            };
            tracing::info!(%function, replicas = f.replicas, "restored function");
            functions.insert(function, Entry { stored: f, generation: 0, identity, handle, unstartable });
        }
        drop(functions);
        Ok(provider)
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn spawn(
        &self,
        function: &FunctionRef,
        spec: Arc<Generation<B::Spec>>,
        replicas: u64,
    ) -> FunctionHandle<B> {
        let route = self.routes.ensure(function);
        // Known at once, not when the supervisor first runs: a request that
        // arrives right after the deploy waits for a replica instead of
        // finding none wanted.
        route.set_desired(replicas);
        let shared = Arc::new(Shared {
            backend: Arc::clone(&self.backend),
            secrets: Arc::clone(&self.secrets),
            log: self.logs.function(function),
            timing: self.config.timing,
        });
        FunctionHandle::spawn(spec, replicas, route, shared)
    }

    /// A version of `spec` ready to run, or why it cannot run here.
    async fn generation(
        &self,
        spec: &FunctionDeployment,
        generation: u64,
    ) -> Result<(Arc<Generation<B::Spec>>, String)> {
        for secret in &spec.secrets {
            if !self.secrets.exists(&spec.namespace, secret) {
                return Err(ProviderError::invalid(
                    "secrets",
                    format!("secret {secret} does not exist in namespace {}", spec.namespace),
                ));
            }
        }
        let (prepared, identity) = self.backend.prepare(spec).await?;
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let run_dir = self.config.state_dir.join("run").join(&function.namespace).join(&function.name);
        Ok((
            Arc::new(Generation {
                function,
                generation,
                secrets: spec.secrets.clone(),
                run_dir,
                spec: prepared,
            }),
            identity,
        ))
    }

    fn status_of(&self, entry: &Entry<B>) -> FunctionStatus {
        let spec = &entry.stored.spec;
        let counts = entry.handle.as_ref().map(|h| h.counts()).unwrap_or_default();
        let reason = match &entry.unstartable {
            Some(why) => Some(why.clone()),
            None => counts.problem.filter(|_| counts.ready < entry.stored.replicas),
        };
        FunctionStatus {
            replicas: entry.stored.replicas,
            available_replicas: counts.ready,
            created_at: entry.stored.created_at.clone(),
            reason,
            ..FunctionStatus::of(spec)
        }
    }

    fn save(&self, stored: &StoredFunction) -> Result<()> {
        self.store.save(stored).map_err(|e| ProviderError::internal("saving function", e))
    }

    /// Rewrites a secret in the folders of running replicas that use it.
    fn refresh_secret(&self, namespace: &str, name: &str, functions: &BTreeMap<FunctionRef, Entry<B>>) {
        for (f, entry) in functions {
            if f.namespace != namespace || !entry.stored.spec.secrets.iter().any(|s| s == name) {
                continue;
            }
            let run_dir = self.config.state_dir.join("run").join(&f.namespace).join(&f.name);
            let Ok(instances) = std::fs::read_dir(&run_dir) else { continue };
            for instance in instances.flatten() {
                let dest = instance.path().join("secrets");
                let access = self.backend.secret_access(f);
                if let Err(e) = self.secrets.materialize(namespace, &[name.to_owned()], &dest, access) {
                    tracing::warn!(function = %f, secret = name, error = %e, "could not refresh a secret");
                }
            }
        }
    }
}

#[async_trait]
impl<B: Backend> Provider for LocalProvider<B> {
    fn info(&self) -> ProviderInfo {
        self.backend.info()
    }

    fn routes(&self) -> &Routes {
        &self.routes
    }

    async fn deploy(&self, mut spec: FunctionDeployment) -> Result<()> {
        let policies = spec.validate()?;
        let replicas = policies.scaling.min;
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let mut functions = self.functions.lock().await;
        if functions.contains_key(&function) {
            return Err(ProviderError::Conflict(format!(
                "function {} already exists in namespace {}",
                function.name, function.namespace
            )));
        }
        let (generation, identity) = self.generation(&spec, 0).await?;
        let stored = StoredFunction {
            spec,
            replicas,
            created_at: ferrofaas_types::time::format(SystemTime::now(), false),
        };
        self.save(&stored)?;
        self.routes.ensure(&function).set_policies(policies);
        let handle = self.spawn(&function, generation, replicas);
        tracing::info!(%function, image = %stored.spec.image, replicas, "deployed");
        functions.insert(
            function,
            Entry {
                stored,
                generation: 0,
                identity: Some(identity),
                handle: Some(handle),
                unstartable: None,
            },
        );
        Ok(())
    }

    async fn update(&self, mut spec: FunctionDeployment) -> Result<()> {
        let policies = spec.validate()?;
        let function = FunctionRef { name: spec.service.clone(), namespace: spec.namespace.clone() };
        let mut functions = self.functions.lock().await;
        let number = match functions.get(&function) {
            Some(entry) => entry.generation + 1,
            None => return Err(not_found(&function)),
        };
        let (generation, identity) = self.generation(&spec, number).await?;
        let Some(entry) = functions.get_mut(&function) else { return Err(not_found(&function)) };
        if entry.stored.spec == spec && entry.identity.as_ref() == Some(&identity) && entry.handle.is_some() {
            tracing::debug!(%function, "update changes nothing");
            return Ok(());
        }
        let stored = StoredFunction { spec, ..entry.stored.clone() };
        self.save(&stored)?;
        self.routes.ensure(&function).set_policies(policies);
        entry.stored = stored;
        entry.generation = number;
        entry.identity = Some(identity);
        match &entry.handle {
            Some(handle) => handle.update(generation),
            None => entry.handle = Some(self.spawn(&function, generation, entry.stored.replicas)),
        }
        tracing::info!(%function, image = %entry.stored.spec.image, generation = number, "updated");
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
        self.backend.removed(function);
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
        crate::check_replicas(replicas)?;
        let mut functions = self.functions.lock().await;
        let entry = functions.get_mut(function).ok_or_else(|| not_found(function))?;
        let stored = StoredFunction { replicas, ..entry.stored.clone() };
        self.save(&stored)?;
        entry.stored = stored;
        if let Some(handle) = &entry.handle {
            handle.scale(replicas);
            if let Some(route) = self.routes.get(&function.name, &function.namespace) {
                route.set_desired(replicas);
            }
        }
        tracing::info!(%function, replicas, "scaled");
        Ok(())
    }

    async fn logs(&self, request: LogRequest) -> Result<mpsc::Receiver<LogMessage>> {
        if !self.functions.lock().await.contains_key(&request.function) {
            return Err(not_found(&request.function));
        }
        Ok(self.logs.read(&request, self.logs.function(&request.function)))
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

    async fn push_bundle(&self, image: &str, archive: &Path) -> Result<BundleInfo> {
        self.backend.push_bundle(image, archive).await
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        self.backend.list_bundles().await
    }

    async fn shutdown(&self) {
        let functions = self.functions.lock().await;
        let mut stops: Vec<_> =
            functions.values().filter_map(|e| e.handle.as_ref()).map(|h| Box::pin(h.stop())).collect();
        // The stops borrow the table, so they are polled together here.
        std::future::poll_fn(|cx| {
            stops.retain_mut(|f| f.as_mut().poll(cx).is_pending());
            if stops.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
        .await;
        self.backend.stopped().await;
    }
}
