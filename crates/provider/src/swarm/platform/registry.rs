//! The platform's registry: Debian's `docker-registry` (the CNCF
//! Distribution registry) in an image built on the manager from Debian
//! packages, run as the Swarm service `ferrofaas-registry` on that manager
//! (the one node that has its image; its storage a volume there), port
//! 5000 published. Every node's engine pulls function images from
//! `127.0.0.1:5000`, which Swarm's routing mesh carries to it; Docker talks
//! plain HTTP to a registry on the loopback without being configured to, so
//! a node needs nothing but to have joined.
//!
//! Why a registry and not an agent on every node that loads images into
//! its engine: such an agent, a global service, would need its own image on
//! a node before it could run there, and nothing but the Swarm reaches a
//! node's engine: the Swarm pulls. The registry needs its image on one node.
//!
//! Where the routing mesh cannot run (a kernel without IPVS), the port is
//! published on the registry's node alone (`host` mode); the other nodes
//! then reach it at their `127.0.0.1:5000` only if something forwards it
//! there (as `scripts/swarm-cluster` does for its test nodes).
//!
//! It wants a password (htpasswd, bcrypt), given to the gateway as a
//! secret and to the Swarm with every service: the functions share the
//! nodes, and must not pull one another's images or push their own.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, ServiceSpec,
    TaskSpec, TaskSpecContainerSpec,
};
use ferrofaas_types::platform::Arch;

use super::{
    LABEL_GATEWAY, StoredSecret, pinned, replicas, restart_always, secret_file, stop_first, stored_secret,
    volume,
};
use crate::engine::image;
use crate::{ProviderError, Result};

/// The registry's service (and its volume).
pub const REGISTRY_SERVICE: &str = "ferrofaas-registry";
/// The port it is published on.
pub const REGISTRY_PORT: u16 = 5000;
const HTPASSWD_TARGET: &str = "ferrofaas-registry-htpasswd";
const STORAGE: &str = "/var/lib/docker-registry";

/// How the registry's port reaches the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Swarm's routing mesh: every node's port 5000.
    Mesh,
    /// The registry's node's port 5000 only (no IPVS for the mesh).
    Host,
}

/// `ferrofaas-registry:<version>` on the registry base. Returns its id.
pub async fn build_registry_image(
    docker: &Docker,
    tag: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String> {
    image::ensure_base(docker, "registry", Arch::native(), progress).await?;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
         rootdirectory: {STORAGE}\n  delete:\n    enabled: false\nhttp:\n  addr: :{REGISTRY_PORT}\n  headers:\n    \
         X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: ferrofaas\n    path: \
         /run/secrets/{HTPASSWD_TARGET}\n"
    );
    let dockerfile = format!(
        "FROM {}\nCOPY config.yml /etc/ferrofaas-registry.yml\nUSER docker-registry\nEXPOSE {REGISTRY_PORT}\n\
         VOLUME {STORAGE}\nENTRYPOINT [\"/usr/bin/docker-registry\", \"serve\", \"/etc/ferrofaas-registry.yml\"]\n",
        image::base_image("registry", Arch::native())
    );
    let context = image::context_of(&[
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("config.yml", config.as_bytes(), 0o644),
    ])
    .map_err(|e| ProviderError::internal("making the registry image's context", e))?;
    let labels = HashMap::from([(LABEL_GATEWAY.to_owned(), "registry".to_owned())]);
    image::build_image(docker, context, tag, &labels).await
}

/// The registry's password file (htpasswd, bcrypt: its one user) as a
/// secret, named after user and password: the same ones find the same
/// secret.
pub async fn htpasswd_secret(docker: &Docker, user: &str, password: &str) -> Result<StoredSecret> {
    let hash = bcrypt::hash(password, bcrypt::DEFAULT_COST)
        .map_err(|e| ProviderError::internal("hashing the registry's password", e))?;
    let line = format!("{user}:{hash}\n");
    let what = format!("{user}:{password}");
    stored_secret(
        docker,
        "ferrofaas-registry-htpasswd",
        "registry-htpasswd",
        what.as_bytes(),
        line.as_bytes(),
    )
    .await
}

/// What the registry's service is made of.
pub struct RegistryService<'a> {
    pub image: &'a str,
    /// The node that has its image (and keeps its storage).
    pub node_id: &'a str,
    pub htpasswd: &'a StoredSecret,
    pub publish: Publish,
}

/// The registry's service spec.
pub fn registry_service(r: &RegistryService<'_>) -> ServiceSpec {
    let (publish_mode, endpoint_mode) = match r.publish {
        // Published through the mesh needs a virtual IP.
        Publish::Mesh => (EndpointPortConfigPublishModeEnum::INGRESS, EndpointSpecModeEnum::VIP),
        Publish::Host => (EndpointPortConfigPublishModeEnum::HOST, EndpointSpecModeEnum::DNSRR),
    };
    ServiceSpec {
        name: Some(REGISTRY_SERVICE.to_owned()),
        labels: Some(HashMap::from([(LABEL_GATEWAY.to_owned(), "registry".to_owned())])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(r.image.to_owned()),
                mounts: Some(vec![volume(REGISTRY_SERVICE, STORAGE)]),
                // Its user (docker-registry) reads it: a bcrypt hash, in a
                // container of its own.
                secrets: Some(vec![secret_file(r.htpasswd, HTPASSWD_TARGET, 0o444)]),
                capability_drop: Some(vec!["ALL".into()]),
                init: Some(true),
                ..Default::default()
            }),
            restart_policy: restart_always(),
            placement: pinned(r.node_id),
            ..Default::default()
        }),
        mode: replicas(1),
        // One volume, one port on one node: the old task goes first.
        update_config: stop_first(),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(endpoint_mode),
            ports: Some(vec![EndpointPortConfig {
                target_port: Some(i64::from(REGISTRY_PORT)),
                published_port: Some(i64::from(REGISTRY_PORT)),
                publish_mode: Some(publish_mode),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    }
}
