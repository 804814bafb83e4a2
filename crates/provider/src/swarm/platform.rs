//! The platform's own service on a Swarm, as the swarm backend makes it:
//! the gateway's image (a `faas` and the static watchdog on the minimal
//! base), its admin credentials as a Docker secret, and its service spec
//! (`faas serve --provider swarm` on the functions' overlay network, the
//! engine's socket mounted, the port published in host mode, the queue on a
//! volume). `faas swarm up` assembles them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, Mount,
    MountType, NetworkAttachmentConfig, SecretSpec, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use sha2::Digest;

use crate::engine::image;
use crate::{ProviderError, Result};

/// Labels the gateway's service, image and credential secrets.
pub const LABEL_GATEWAY: &str = "com.ferrofaas.gateway";
/// Where the credentials secret is mounted in the gateway's container.
const CREDENTIALS_TARGET: &str = "ferrofaas-credentials";

/// What the gateway's service is made of.
pub struct GatewayService<'a> {
    pub name: &'a str,
    pub network: &'a str,
    pub port: u16,
    pub image: &'a str,
    pub secret_id: &'a str,
    pub secret_name: &'a str,
}

/// `ferrofaas-gateway:<version>`: `faas` and the static `watchdog` on the
/// minimal base. Returns the image id.
pub async fn build_gateway_image(docker: &Docker, faas: &Path, watchdog: &Path, tag: &str) -> Result<String> {
    let dockerfile = format!(
        "FROM {}\nCOPY faas faas-watchdog /usr/local/bin/\nRUN [\"/usr/local/bin/faas\", \"--version\"]\n\
         EXPOSE 8080\nENTRYPOINT [\"/usr/local/bin/faas\"]\n",
        image::base_image("minimal")
    );
    let context = (|| -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        // The engine reads no GNU sparse entries.
        tar.sparse(false);
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
        for (path, name) in [(faas, "faas"), (watchdog, "faas-watchdog")] {
            // As a plain file: a linker's output may be sparse, which
            // Docker's tar reader refuses.
            let bytes = std::fs::read(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes.as_slice())?;
        }
        tar.into_inner()
    })()
    .map_err(|e| ProviderError::internal("making the gateway image's context", e))?;
    let labels = HashMap::from([(LABEL_GATEWAY.to_owned(), "true".to_owned())]);
    image::build_image(docker, context, tag, &labels).await
}

/// The Docker secret holding the credentials (`json`), named after their
/// hash (Docker secrets cannot change; new credentials make a new secret):
/// its id and name.
pub async fn credentials_secret(docker: &Docker, json: &[u8]) -> Result<(String, String)> {
    let hash = sha2::Sha256::digest(json);
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let name = format!("ferrofaas-credentials-{hex}");
    if let Ok(existing) = docker.inspect_secret(&name).await {
        return Ok((existing.id.unwrap_or_default(), name));
    }
    let spec = SecretSpec {
        name: Some(name.clone()),
        labels: Some(HashMap::from([(LABEL_GATEWAY.to_owned(), "credentials".to_owned())])),
        data: Some(ferrofaas_types::base64::encode(json)),
        ..Default::default()
    };
    let created = docker
        .create_secret(spec)
        .await
        .map_err(|e| ProviderError::internal("storing the credentials as a Docker secret", e))?;
    Ok((created.id, name))
}

/// The gateway's service spec.
pub fn gateway_service(g: &GatewayService<'_>) -> ServiceSpec {
    let command: Vec<String> = [
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
                    Mount {
                        target: Some("/var/lib/ferrofaas".into()),
                        source: Some(format!("{}-state", g.name)),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    },
                ]),
                secrets: Some(vec![TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(CREDENTIALS_TARGET.into()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o400),
                    }),
                    secret_id: Some(g.secret_id.to_owned()),
                    secret_name: Some(g.secret_name.to_owned()),
                }]),
                init: Some(true),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(Duration::from_secs(1).as_nanos() as i64),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec!["node.role == manager".into()]),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(g.network.to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        // A host-mode port cannot be held by two tasks on one node.
        update_config: Some(ServiceSpecUpdateConfig {
            order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            parallelism: Some(1),
            ..Default::default()
        }),
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
