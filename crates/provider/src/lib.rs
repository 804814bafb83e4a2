//! # ferrofaas-provider
//!
//! Where functions run. The gateway talks to one [`Provider`]: it deploys,
//! updates, scales and removes functions, manages secrets and reads logs
//! through the trait, and routes invocations through [`Routes`], the table of
//! ready replicas that the provider keeps current.
//!
//! Backends: [`process`] (every replica a local `faas-watchdog` process; the
//! embedded default) and [`docker`] (every replica a container on the local
//! engine), both built on [`local`] (what every locally supervised backend
//! shares); and [`swarm`] (every function a Docker Swarm service, supervised
//! by Swarm). Only the assembly code (the `faas` binary) names one.

use std::fmt;

use async_trait::async_trait;
use ferrofaas_types::{
    FunctionDeployment, FunctionRef, FunctionStatus, LogMessage, LogRequest, ProviderInfo, Secret,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[cfg(feature = "bundles")]
pub mod bundles;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "docker")]
pub mod engine;
pub mod fsutil;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "process")]
pub mod process;
pub mod routes;
pub mod rules;
#[cfg(feature = "swarm")]
pub mod swarm;

pub use routes::{Endpoint, FunctionRoute, Lease, Reading, ReplicaMeter, ReplicaReading, Routes};

/// What a provider can fail with; the gateway turns each kind into a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 400, naming the field at fault.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 501: this provider cannot do that.
    #[error("{0}")]
    Unsupported(String),
    /// 413: more than a limit allows (a bundle, the bundle store).
    #[error("{0}")]
    TooLarge(String),
    /// 503: something the provider needs (a registry, an engine) does not
    /// answer now; the message says what.
    #[error("{0}")]
    Unavailable(String),
    /// 500; the message is logged, not shown to clients.
    #[error("{0}")]
    Internal(String),
}

impl ProviderError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ProviderError {
        ProviderError::Invalid { field: field.into(), message: message.into() }
    }

    pub fn internal(context: &str, e: impl fmt::Display) -> ProviderError {
        ProviderError::Internal(format!("{context}: {e}"))
    }
}

impl From<ferrofaas_types::InvalidDeployment> for ProviderError {
    fn from(e: ferrofaas_types::InvalidDeployment) -> ProviderError {
        ProviderError::Invalid { field: e.field, message: e.message }
    }
}

pub type Result<T> = std::result::Result<T, ProviderError>;

/// `Invalid` past the most replicas a function may have.
pub fn check_replicas(replicas: u64) -> Result<()> {
    let max = ferrofaas_types::function::MAX_REPLICAS;
    if replicas > max {
        return Err(ProviderError::invalid("replicas", format!("at most {max} replicas")));
    }
    Ok(())
}

/// What `/system/info` says of a provider of this build.
pub fn provider_info(name: &str, orchestration: &str) -> ProviderInfo {
    ProviderInfo {
        name: name.into(),
        orchestration: orchestration.into(),
        version: ferrofaas_types::VersionInfo {
            commit_message: String::new(),
            sha: ferrofaas_types::info::build_sha(),
            release: env!("CARGO_PKG_VERSION").into(),
        },
    }
}

/// A function bundle stored by the provider (what a process replica runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// `name:tag`, as a deployment's `image` names it.
    pub image: String,
    /// `sha256:<hex>` of the uploaded archive.
    pub digest: String,
    /// Bytes of the uploaded archive.
    pub size: u64,
    /// The digest the tag named before this push moved it, if another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// A place where functions run.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Name, orchestration and version, for `/system/info`.
    fn info(&self) -> ProviderInfo;

    /// The ready replicas of every function, kept current by the provider.
    fn routes(&self) -> &Routes;

    /// Creates a function; `Conflict` if it exists. The spec is validated.
    async fn deploy(&self, spec: FunctionDeployment) -> Result<()>;

    /// Replaces a function's spec, replacing its replicas without dropping
    /// requests; `NotFound` if it does not exist.
    async fn update(&self, spec: FunctionDeployment) -> Result<()>;

    /// Removes a function and stops its replicas.
    async fn remove(&self, function: &FunctionRef) -> Result<()>;

    /// Functions in a namespace.
    async fn list(&self, namespace: &str) -> Result<Vec<FunctionStatus>>;

    /// One function.
    async fn status(&self, function: &FunctionRef) -> Result<FunctionStatus>;

    /// Sets the desired number of replicas.
    async fn scale(&self, function: &FunctionRef, replicas: u64) -> Result<()>;

    /// Log lines of a function; with `follow`, the channel stays open for new
    /// lines until the receiver is dropped or the function is removed.
    async fn logs(&self, request: LogRequest) -> Result<mpsc::Receiver<LogMessage>>;

    /// Namespaces that functions may be deployed to.
    async fn namespaces(&self) -> Result<Vec<String>>;

    /// Secret names (never values) in a namespace.
    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>>;

    /// `Conflict` if it exists.
    async fn create_secret(&self, secret: Secret) -> Result<()>;

    /// `NotFound` if it does not exist. Running replicas see the new value.
    async fn update_secret(&self, secret: Secret) -> Result<()>;

    async fn delete_secret(&self, name: &str, namespace: &str) -> Result<()>;

    /// Stores a function bundle (a tar archive, optionally gzipped, in the
    /// file `archive`) under `image`, for providers that run bundles rather
    /// than container images. A tag pushed again names the new bundle.
    async fn push_bundle(&self, image: &str, archive: &std::path::Path) -> Result<BundleInfo> {
        let _ = (image, archive);
        Err(ProviderError::Unsupported("this provider does not store function bundles".into()))
    }

    /// Bundles stored by [`Provider::push_bundle`].
    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        Err(ProviderError::Unsupported("this provider does not store function bundles".into()))
    }

    /// Stops every replica gracefully (the platform is shutting down; the
    /// definitions stay, to be started again next time).
    async fn shutdown(&self);
}
