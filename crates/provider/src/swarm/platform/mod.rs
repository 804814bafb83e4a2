//! The platform's own services on a Swarm, as the swarm backend makes them:
//! the gateway's image (a `faas` and the static watchdog on the minimal
//! base), its admin credentials as a Docker secret, and its service spec
//! (`faas serve --provider swarm` on the functions' overlay network, the
//! engine's socket mounted, the port published in host mode, the queue on a
//! volume); and the registry every node pulls function images from
//! ([`registry`]). `faas swarm up` assembles them.

pub mod nats;
pub mod registry;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, Mount,
    MountType, NetworkAttachmentConfig, Platform, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets, TaskSpecPlacement,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use ferrofaas_types::platform::Arch;
use sha2::Digest;

use crate::engine::image;
use crate::{ProviderError, Result};

/// Labels the gateway's service, image and credential secrets.
pub const LABEL_GATEWAY: &str = "com.ferrofaas.gateway";
/// Where the credentials secret is mounted in the gateway's container.
const CREDENTIALS_TARGET: &str = "ferrofaas-credentials";
/// Where the registry's credentials are, in the gateway's container.
const REGISTRY_AUTH_TARGET: &str = "ferrofaas-registry-auth";

/// A Docker secret, as a service refers to it.
pub struct StoredSecret {
    pub id: String,
    pub name: String,
}

/// The registry the gateway pushes function images to.
pub struct RegistryAccess<'a> {
    pub address: &'a str,
    /// `user:password`, if it wants them.
    pub credentials: Option<&'a StoredSecret>,
}

/// What the gateway's service is made of.
pub struct GatewayService<'a> {
    pub name: &'a str,
    pub network: &'a str,
    pub port: u16,
    pub image: &'a str,
    pub credentials: &'a StoredSecret,
    pub registry: Option<RegistryAccess<'a>>,
    /// How many gateways, each on a manager of its own.
    pub replicas: u64,
    /// The platform's own network and the queue on it (`--ha`): the NATS
    /// cluster's URL, and on how many servers each stream is kept.
    pub queue: Option<PlatformQueue<'a>>,
    /// `faas serve --connector` values: the brokers that trigger functions.
    pub connectors: &'a [String],
}

/// The gateways' shared queue.
pub struct PlatformQueue<'a> {
    pub network: &'a str,
    pub url: &'a str,
    pub replicas: usize,
}

/// `ferrofaas-gateway:<version>`: `faas` and the static `watchdog` on the
/// minimal base. Returns the image id.
pub async fn build_gateway_image(docker: &Docker, faas: &Path, watchdog: &Path, tag: &str) -> Result<String> {
    let dockerfile = format!(
        "FROM {}\nCOPY faas faas-watchdog /usr/local/bin/\nRUN [\"/usr/local/bin/faas\", \"--version\"]\n\
         EXPOSE 8080\nENTRYPOINT [\"/usr/local/bin/faas\"]\n",
        image::base_image("minimal", Arch::native())
    );
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            ProviderError::internal("making the gateway image's context", format!("{}: {e}", path.display()))
        })
    };
    let (faas, watchdog) = (read(faas)?, read(watchdog)?);
    let context = image::context_of(&[
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("faas", &faas, 0o755),
        ("faas-watchdog", &watchdog, 0o755),
    ])
    .map_err(|e| ProviderError::internal("making the gateway image's context", e))?;
    let labels = HashMap::from([(LABEL_GATEWAY.to_owned(), "true".to_owned())]);
    image::build_image(docker, context, tag, &labels).await
}

/// The Docker secret holding the admin credentials (`json`).
pub async fn credentials_secret(docker: &Docker, json: &[u8]) -> Result<StoredSecret> {
    stored_secret(docker, "ferrofaas-credentials", "credentials", json, json).await
}

/// A Docker secret of the platform holding `data`, named `<prefix>-<hash of
/// what>` (Docker secrets cannot change: new contents make a new secret,
/// the same contents find the old one), labelled `kind`.
pub(crate) async fn stored_secret(
    docker: &Docker,
    prefix: &str,
    kind: &str,
    what: &[u8],
    data: &[u8],
) -> Result<StoredSecret> {
    let hash = sha2::Sha256::digest(what);
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let name = format!("{prefix}-{hex}");
    if let Ok(existing) = docker.inspect_secret(&name).await {
        return Ok(StoredSecret { id: existing.id.unwrap_or_default(), name });
    }
    let spec = SecretSpec {
        name: Some(name.clone()),
        labels: Some(HashMap::from([(LABEL_GATEWAY.to_owned(), kind.to_owned())])),
        data: Some(ferrofaas_types::base64::encode(data)),
        ..Default::default()
    };
    let created = docker
        .create_secret(spec)
        .await
        .map_err(|e| ProviderError::internal("storing a Docker secret", e))?;
    Ok(StoredSecret { id: created.id, name })
}

/// The secret as a file in a container, readable by its root only.
fn secret_file(secret: &StoredSecret, target: &str, mode: u32) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(target.into()),
            uid: Some("0".into()),
            gid: Some("0".into()),
            mode: Some(mode),
        }),
        secret_id: Some(secret.id.clone()),
        secret_name: Some(secret.name.clone()),
    }
}

/// Restarted after any exit, a second later.
fn restart_always() -> Option<TaskSpecRestartPolicy> {
    Some(TaskSpecRestartPolicy {
        condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
        delay: Some(Duration::from_secs(1).as_nanos() as i64),
        ..Default::default()
    })
}

/// Updated one task at a time, the old one stopped first: what holds a
/// host-mode port or a volume on one node cannot run twice there.
fn stop_first() -> Option<ServiceSpecUpdateConfig> {
    Some(ServiceSpecUpdateConfig {
        order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
        parallelism: Some(1),
        ..Default::default()
    })
}

fn replicas(n: u64) -> Option<ServiceSpecMode> {
    Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated { replicas: Some(n as i64) }),
        ..Default::default()
    })
}

/// On node `node_id` only (where its image, or its volume, is).
fn pinned(node_id: &str) -> Option<TaskSpecPlacement> {
    Some(TaskSpecPlacement { constraints: Some(vec![format!("node.id == {node_id}")]), ..Default::default() })
}

/// The node a service is [`pinned`] to.
pub fn pinned_node(spec: &ServiceSpec) -> Option<&str> {
    let constraints = spec.task_template.as_ref()?.placement.as_ref()?.constraints.as_ref()?;
    constraints.iter().find_map(|c| c.strip_prefix("node.id == "))
}

/// Named volume `source` at `target`.
fn volume(source: impl Into<String>, target: &str) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(source.into()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    }
}

/// The gateway's registry credentials, `user:password`, as a secret.
pub async fn registry_auth_secret(docker: &Docker, user: &str, password: &str) -> Result<StoredSecret> {
    let data = format!("{user}:{password}");
    stored_secret(docker, "ferrofaas-registry-auth", "registry-auth", data.as_bytes(), data.as_bytes()).await
}

/// The gateway's service spec.
pub fn gateway_service(g: &GatewayService<'_>) -> ServiceSpec {
    let mut command: Vec<String> = [
        "serve",
        "--provider",
        "swarm",
        "--bind",
        "0.0.0.0",
        "--port",
        "8080",
        "--network",
        g.network,
        "--credentials-file",
        &format!("/run/secrets/{CREDENTIALS_TARGET}"),
        "--image-watchdog",
        "/usr/local/bin/faas-watchdog",
        "--state",
        "/var/lib/ferrofaas",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut networks =
        vec![NetworkAttachmentConfig { target: Some(g.network.to_owned()), ..Default::default() }];
    if let Some(queue) = &g.queue {
        command.extend([
            "--queue".to_owned(),
            queue.url.to_owned(),
            "--queue-replicas".to_owned(),
            queue.replicas.to_string(),
        ]);
        networks
            .push(NetworkAttachmentConfig { target: Some(queue.network.to_owned()), ..Default::default() });
    }
    for connector in g.connectors {
        command.extend(["--connector".to_owned(), connector.clone()]);
    }
    let mut secrets = vec![secret_file(g.credentials, CREDENTIALS_TARGET, 0o400)];
    if let Some(registry) = &g.registry {
        command.extend(["--registry".to_owned(), registry.address.to_owned()]);
        if let Some(auth) = registry.credentials {
            command
                .extend(["--registry-auth-file".to_owned(), format!("/run/secrets/{REGISTRY_AUTH_TARGET}")]);
            secrets.push(secret_file(auth, REGISTRY_AUTH_TARGET, 0o400));
        }
    }
    ServiceSpec {
        name: Some(g.name.to_owned()),
        labels: Some(HashMap::from([(LABEL_GATEWAY.to_owned(), "service".to_owned())])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(g.image.to_owned()),
                args: Some(command),
                mounts: Some(vec![
                    Mount {
                        target: Some("/var/run/docker.sock".into()),
                        source: Some("/var/run/docker.sock".into()),
                        typ: Some(MountType::BIND),
                        ..Default::default()
                    },
                    // The asynchronous queue outlives the gateway's container.
                    volume(format!("{}-state", g.name), "/var/lib/ferrofaas"),
                ]),
                secrets: Some(secrets),
                init: Some(true),
                ..Default::default()
            }),
            restart_policy: restart_always(),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec!["node.role == manager".into()]),
                // A host-mode port: one gateway per node.
                max_replicas: Some(1),
                // Managers of this architecture (its `faas` is this one).
                platforms: Some(vec![Platform {
                    architecture: Some(Arch::native().name().into()),
                    os: Some("linux".into()),
                }]),
                ..Default::default()
            }),
            networks: Some(networks),
            ..Default::default()
        }),
        mode: replicas(g.replicas),
        // A host-mode port cannot be held by two tasks on one node.
        update_config: stop_first(),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                target_port: Some(8080),
                published_port: Some(i64::from(g.port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_switch_on_the_connectors_given() {
        let credentials = StoredSecret { id: "c1".into(), name: "ferrofaas-credentials-1".into() };
        let connectors = ["nats=nats://broker:4222".to_owned(), "mqtt=mqtt://broker".to_owned()];
        let spec = gateway_service(&GatewayService {
            name: "gw",
            network: "net",
            port: 8080,
            image: "img",
            credentials: &credentials,
            registry: None,
            replicas: 1,
            queue: None,
            connectors: &connectors,
        });
        let args = spec.task_template.unwrap().container_spec.unwrap().args.unwrap();
        let given: Vec<&str> =
            args.windows(2).filter(|w| w[0] == "--connector").map(|w| w[1].as_str()).collect();
        assert_eq!(given, ["nats=nats://broker:4222", "mqtt=mqtt://broker"]);
    }
}
