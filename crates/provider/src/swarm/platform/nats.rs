//! The platform's queue across nodes (`faas swarm up --ha`): a NATS
//! cluster of three servers with JetStream, each a Swarm service of its own
//! pinned to a node of its own (its store a volume there), so that losing
//! any one node leaves two: a quorum, and every call on two servers (the
//! gateways keep the streams on three, `--queue-replicas 3`).
//!
//! They are on the platform's own overlay network, which the gateways join
//! and functions do not: no function reaches them (overlay networks are
//! apart), and they publish no port.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, NetworkAttachmentConfig, ServiceSpec, TaskSpec, TaskSpecContainerSpec,
};
use ferrofaas_types::platform::Arch;

use super::{LABEL_GATEWAY, pinned, replicas, restart_always, stop_first, volume};
use crate::engine::image;
use crate::{ProviderError, Result};

/// How many servers: a quorum survives one lost.
pub const NATS_SERVERS: usize = 3;
const CLIENT_PORT: u16 = 4222;
const CLUSTER_PORT: u16 = 6222;
const STORE: &str = "/var/lib/nats";

/// The service (and volume) of server `i` (from 1).
pub fn nats_service_name(i: usize) -> String {
    format!("ferrofaas-nats-{i}")
}

/// What the gateways connect to: every server, by its service's name.
pub fn queue_url() -> String {
    (1..=NATS_SERVERS)
        .map(|i| format!("nats://{}:{CLIENT_PORT}", nats_service_name(i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `ferrofaas-nats:<version>`: Debian's nats-server. Returns its id.
pub async fn build_nats_image(
    docker: &Docker,
    tag: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String> {
    image::ensure_base(docker, "nats", Arch::native(), progress).await?;
    let dockerfile = format!(
        "FROM {}\nRUN mkdir -p {STORE} && chown 1000:1000 {STORE}\nUSER 1000:1000\nVOLUME {STORE}\n\
         ENTRYPOINT [\"/usr/sbin/nats-server\"]\n",
        image::base_image("nats", Arch::native())
    );
    let context = image::context_of(&[("Dockerfile", dockerfile.as_bytes(), 0o644)])
        .map_err(|e| ProviderError::internal("making the NATS image's context", e))?;
    let labels = HashMap::from([(LABEL_GATEWAY.to_owned(), "nats".to_owned())]);
    image::build_image(docker, context, tag, &labels).await
}

/// The service spec of server `i` (from 1) on node `node_id`.
pub fn nats_service(i: usize, image: &str, node_id: &str, network: &str) -> ServiceSpec {
    let name = nats_service_name(i);
    let routes = (1..=NATS_SERVERS)
        .filter(|&j| j != i)
        .map(|j| format!("nats://{}:{CLUSTER_PORT}", nats_service_name(j)))
        .collect::<Vec<_>>()
        .join(",");
    let args: Vec<String> = [
        "--port",
        &CLIENT_PORT.to_string(),
        "--server_name",
        &name,
        "--jetstream",
        "--store_dir",
        STORE,
        "--cluster_name",
        "ferrofaas",
        "--cluster",
        &format!("nats://0.0.0.0:{CLUSTER_PORT}"),
        "--routes",
        &routes,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ServiceSpec {
        name: Some(name.clone()),
        labels: Some(HashMap::from([(LABEL_GATEWAY.to_owned(), "nats".to_owned())])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_owned()),
                args: Some(args),
                mounts: Some(vec![volume(name, STORE)]),
                capability_drop: Some(vec!["ALL".into()]),
                init: Some(true),
                ..Default::default()
            }),
            restart_policy: restart_always(),
            placement: pinned(node_id),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: replicas(1),
        update_config: stop_first(),
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ..Default::default() }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_routes_to_the_others() {
        assert_eq!(
            queue_url(),
            "nats://ferrofaas-nats-1:4222,nats://ferrofaas-nats-2:4222,nats://ferrofaas-nats-3:4222"
        );
        let spec = nats_service(2, "img", "node-b", "net");
        assert_eq!(super::super::pinned_node(&spec), Some("node-b"), "the node is read back");
        let args = spec.task_template.unwrap().container_spec.unwrap().args.unwrap();
        let routes = &args[args.iter().position(|a| a == "--routes").unwrap() + 1];
        assert_eq!(routes, "nats://ferrofaas-nats-1:6222,nats://ferrofaas-nats-3:6222");
    }
}
