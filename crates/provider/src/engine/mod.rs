//! The Docker Engine, as the Docker and Swarm backends both use it: the
//! connection, function images and their builds ([`image`]), the image a
//! deployment names and the environment its replicas get, the containment
//! and limits of containers ([`containment`]), and the CPU meter of a
//! container.

pub mod containment;
pub mod image;

use std::io;

use bollard::Docker;
use ferrofaas_types::FunctionDeployment;
use ferrofaas_types::platform::Arch;
use futures_util::StreamExt;

use crate::{ProviderError, Result};

/// Where a replica finds its secrets, as OpenFaaS's SDKs look for them.
pub const SECRETS_PATH: &str = "/var/openfaas/secrets";

/// Connects to the local engine (`DOCKER_HOST` or the default socket) at an
/// API version it speaks.
pub async fn connect() -> io::Result<Docker> {
    let docker = Docker::connect_with_local_defaults().map_err(io::Error::other)?;
    let docker = docker.negotiate_version().await.map_err(|e| {
        io::Error::other(format!("the Docker engine does not answer (is dockerd running?): {e}"))
    })?;
    docker.ping().await.map_err(|e| io::Error::other(format!("the Docker engine does not answer: {e}")))?;
    Ok(docker)
}

/// The image a deployment names, as this engine has it.
pub struct FunctionImage {
    /// Its id, so that every replica of a version runs exactly it.
    pub id: String,
    /// The replicas' environment: the provider's defaults, then `fprocess`
    /// from `envProcess`, then `envVars`.
    pub env: Vec<String>,
    /// Does it run `faas-watchdog` (so that `faas-watchdog --ready` is its
    /// health check)? Read by the Swarm backend.
    #[cfg_attr(not(feature = "swarm"), allow(dead_code))]
    pub runs_watchdog: bool,
    /// The architecture it is built for, if the engine knows it: the
    /// Swarm backend places replicas on nodes of it.
    #[cfg_attr(not(feature = "swarm"), allow(dead_code))]
    pub arch: Option<Arch>,
}

pub async fn function_image(
    docker: &Docker,
    spec: &FunctionDeployment,
    defaults: &[(&str, &str)],
) -> Result<FunctionImage> {
    let inspect = docker.inspect_image(&spec.image).await.map_err(|_| {
        ProviderError::invalid(
            "image",
            format!(
                "no Docker image {} on this engine: build it (faas build --docker), or deploy its bundle \
                 (faas deploy pushes it and the gateway builds the image)",
                spec.image
            ),
        )
    })?;
    let id = inspect.id.clone().unwrap_or_else(|| spec.image.clone());
    let arch = inspect.architecture.as_deref().and_then(Arch::from_name);
    let config = inspect.config.unwrap_or_default();
    let runs_watchdog = config
        .entrypoint
        .iter()
        .chain(config.cmd.iter())
        .flatten()
        .next()
        .is_some_and(|exe| exe.ends_with("/faas-watchdog"));
    let image_env = config.env.unwrap_or_default();
    // The replica's environment: the deployment's over the image's.
    let effective = |k: &str| -> Option<&str> {
        if k == "fprocess" && !spec.env_process.is_empty() {
            return Some(&spec.env_process);
        }
        spec.env_vars
            .get(k)
            .map(String::as_str)
            .or_else(|| image_env.iter().find_map(|e| e.strip_prefix(k)?.strip_prefix('=')))
    };
    if !crate::rules::has_something_to_run(effective) {
        return Err(ProviderError::invalid(
            "envProcess",
            format!("image {} sets no fprocess: give envProcess", spec.image),
        ));
    }
    let mut env: Vec<String> = defaults.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.env_process.is_empty() {
        env.push(format!("fprocess={}", spec.env_process));
    }
    env.extend(spec.env_vars.iter().map(|(k, v)| format!("{k}={v}")));
    Ok(FunctionImage { id, env, runs_watchdog, arch })
}

/// CPU time of a container, from the engine's stats (one sample each).
pub struct ContainerMeter {
    pub docker: Docker,
    pub id: String,
}

impl ContainerMeter {
    async fn sample(&self) -> Option<bollard::models::ContainerStatsResponse> {
        let options =
            bollard::query_parameters::StatsOptionsBuilder::default().stream(false).one_shot(true).build();
        let mut stats = self.docker.stats(&self.id, Some(options));
        stats.next().await?.ok()
    }
}

/// The memory a container holds, as `docker stats` shows it: its cgroup's
/// use less the file cache it could drop (`inactive_file`, cgroup v2;
/// `total_inactive_file`, v1).
fn container_memory(memory: &bollard::models::ContainerMemoryStats) -> Option<u64> {
    let used = memory.usage?;
    let cache =
        memory.stats.as_ref().and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file")));
    Some(used.saturating_sub(cache.copied().unwrap_or(0)))
}

impl crate::routes::ReplicaMeter for ContainerMeter {
    fn cpu_seconds(&self) -> crate::routes::Reading<'_, f64> {
        Box::pin(async move { Some(self.read().await?.cpu_seconds) })
    }

    /// The engine tells what a container holds when asked, not its peak:
    /// the memory read is that.
    fn read(&self) -> crate::routes::Reading<'_, crate::routes::ReplicaReading> {
        Box::pin(async move {
            let sample = self.sample().await?;
            let memory_bytes = sample.memory_stats.as_ref().and_then(container_memory);
            let nanos = sample.cpu_stats?.cpu_usage?.total_usage?;
            Some(crate::routes::ReplicaReading { cpu_seconds: nanos as f64 / 1e9, memory_bytes })
        })
    }
}
