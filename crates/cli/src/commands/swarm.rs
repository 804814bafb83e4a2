//! `faas swarm up` and `faas swarm down`: the platform on a Docker Swarm.
//!
//! `up` builds the base images and a gateway image (this `faas` and the
//! static watchdog on the minimal base), makes the overlay network, stores
//! the admin credentials as a Docker secret, and runs the gateway as a Swarm
//! service (`faas serve --provider swarm`) on the overlay network, with the
//! engine's socket mounted and its port published in host mode (Swarm's
//! routing mesh needs IPVS). Then it waits for the gateway to answer and
//! prints its URL and credentials, which it also saves for `faas`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{EndpointPortConfigPublishModeEnum, ServiceSpec};
use bollard::query_parameters::{
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    UpdateServiceOptionsBuilder,
};
use ferrofaas_gateway::Credentials;
use ferrofaas_provider::engine::image;
use ferrofaas_provider::swarm::platform::nats;
use ferrofaas_provider::swarm::platform::registry::{self, Publish, REGISTRY_PORT, REGISTRY_SERVICE};
use ferrofaas_provider::swarm::platform::{self, LABEL_GATEWAY, StoredSecret};
use ferrofaas_provider::swarm::registry::{PLATFORM_REGISTRY, Registry};
use ferrofaas_provider::swarm::{DEFAULT_NETWORK, LABEL_FUNCTION, LABEL_SECRET};
use ferrofaas_types::platform::Arch;

use crate::auth_config::AuthConfig;
use crate::paths;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build the images and run the gateway as a Swarm service
    Up(UpArgs),
    /// Remove the gateway service (with --all: its functions, secrets and network)
    Down(DownArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// The port the gateway is published on, on every Swarm node it runs on
    #[arg(short, long, default_value_t = 8080)]
    port: u16,
    /// The overlay network of the gateway and functions
    #[arg(long, default_value = DEFAULT_NETWORK)]
    network: String,
    /// The gateway's service name
    #[arg(long, default_value = "ferrofaas-gateway")]
    name: String,
    /// Base images to build if absent (comma-separated; functions of other
    /// runtimes cannot be built on this Swarm until their base exists)
    #[arg(long, value_delimiter = ',', default_value = "minimal,python3,node,ruby,mono")]
    bases: Vec<String>,
    /// The static faas-watchdog that goes into images (default: the static
    /// build next to faas, scripts/build-watchdog)
    #[arg(long, env = "FAAS_IMAGE_WATCHDOG")]
    image_watchdog: Option<PathBuf>,
    /// Where the admin credentials are kept on this machine
    #[arg(long, env = "FERROFAAS_STATE")]
    state: Option<PathBuf>,
    /// Your own registry (host[:port]) that every node can pull from, for
    /// the platform's images and the functions' (default: the platform runs
    /// one, the ferrofaas-registry service, at 127.0.0.1:5000 on every node)
    #[arg(long)]
    registry: Option<String>,
    /// Its credentials, a file holding `user:password`
    #[arg(long, requires = "registry")]
    registry_auth_file: Option<PathBuf>,
    /// How many gateways, each on a manager of its own (the Swarm needs as
    /// many managers); any of them builds, deploys and routes
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=7))]
    gateways: Option<u64>,
    /// Survive losing any one node: gateways on every manager (at least 2,
    /// at most 3) and the queue on a NATS cluster of three servers, each on
    /// a node of its own, every call kept on all three
    #[arg(long)]
    ha: bool,
    /// A broker whose messages trigger functions, as `faas serve
    /// --connector` takes it (repeatable): nats=URL, mqtt=URL,
    /// rabbitmq=URL, reachable from the gateways' containers. (The URL is
    /// part of the service's spec: managers' `docker service inspect`
    /// shows it, password included.)
    #[arg(long = "connector", value_name = "NAME=URL")]
    connectors: Vec<String>,
}

#[derive(clap::Args)]
struct DownArgs {
    /// The gateway's service name
    #[arg(long, default_value = "ferrofaas-gateway")]
    name: String,
    /// Also remove the functions on its network, the secrets no other
    /// service uses, the network and the gateway's state volume
    #[arg(long)]
    all: bool,
    /// The overlay network (removed with --all)
    #[arg(long, default_value = DEFAULT_NETWORK)]
    network: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let docker = ferrofaas_provider::engine::connect().await?;
    match args.command {
        Command::Up(up) => self::up(&docker, up).await,
        Command::Down(down) => self::down(&docker, down).await,
    }
}

async fn require_manager(docker: &Docker) -> anyhow::Result<()> {
    let info = docker.info().await.context("asking the Docker engine")?;
    if info.swarm.and_then(|s| s.control_available) != Some(true) {
        bail!(
            "this Docker engine is not a Swarm manager: run `docker swarm init --advertise-addr <address>` \
             first (or point DOCKER_HOST at a manager)"
        );
    }
    Ok(())
}

async fn up(docker: &Docker, args: UpArgs) -> anyhow::Result<()> {
    require_manager(docker).await?;
    let say = |line: &str| println!("  {line}");
    let known: Vec<&str> = image::BASES.iter().map(|(n, _)| *n).collect();
    for base in &args.bases {
        if !known.contains(&base.as_str()) {
            bail!("--bases: no base image {base:?} (known: {})", known.join(", "));
        }
    }
    let mut bases = args.bases.clone();
    if !bases.iter().any(|b| b == "minimal") {
        bases.insert(0, "minimal".to_owned());
    }
    for base in &bases {
        image::ensure_base(docker, base, Arch::native(), &say).await?;
    }

    let state = args.state.clone().unwrap_or_else(paths::default_state_dir);
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let creds_path = paths::credentials_file(&state);
    let (creds, _) = Credentials::load_or_create(&creds_path)
        .with_context(|| format!("credentials in {}", creds_path.display()))?;
    let credentials = platform::credentials_secret(docker, &serde_json::to_vec(&creds)?).await?;

    let watchdog = paths::image_watchdog(args.image_watchdog.as_deref(), Arch::native())?;
    let tag = format!("ferrofaas-gateway:{}", env!("CARGO_PKG_VERSION"));
    say(&format!("building the gateway image {tag}"));
    let gateway_id = platform::build_gateway_image(docker, &std::env::current_exe()?, &watchdog, &tag)
        .await
        .context("building the gateway image (its faas must run on Debian bookworm's C library)")?;
    ferrofaas_provider::swarm::ensure_network(docker, &args.network).await?;

    // The registry every node pulls images from; the gateway's own image
    // goes there first (so a gateway can run on any manager).
    let (registry, registry_auth, gateway_image) = match &args.registry {
        Some(address) => {
            let registry = Registry::new(address, args.registry_auth_file.as_deref())?;
            let auth = match &registry.credentials {
                Some((user, password)) => Some(platform::registry_auth_secret(docker, user, password).await?),
                None => None,
            };
            say(&format!("pushing {tag} to the registry at {address}"));
            let image = registry.distribute(docker, &tag, &gateway_id).await?;
            (registry, auth, image)
        }
        None => {
            let (registry, auth, image) = platform_registry(docker, &state, &tag, &gateway_id, &say).await?;
            (registry, Some(auth), image)
        }
    };

    let (gateways, queue) = if args.ha {
        let network = format!("{}-platform", args.network);
        let nodes = ReadyNodes::of(docker).await?;
        let url = platform_queue(docker, &registry, &nodes, &network, &say).await?;
        (args.gateways.unwrap_or(nodes.managers.min(3)), Some((network, url)))
    } else {
        (args.gateways.unwrap_or(1), None)
    };

    // The bases, for gateways on other managers to build on.
    for base in &bases {
        let name = image::base_image(base, Arch::native());
        say(&format!("pushing {name} to the registry"));
        registry.publish(docker, &name).await?;
    }
    for connector in &args.connectors {
        let name = connector.split_once('=').map(|(name, _)| name);
        if !matches!(name, Some("nats" | "mqtt" | "rabbitmq")) {
            bail!(
                "--connector {:?}: use nats=nats://host:port, mqtt=mqtt://host:port or \
                 rabbitmq=amqp://user:password@host:port/vhost",
                name.unwrap_or(connector)
            );
        }
    }
    let spec = platform::gateway_service(&platform::GatewayService {
        connectors: &args.connectors,
        name: &args.name,
        network: &args.network,
        port: args.port,
        image: &gateway_image,
        credentials: &credentials,
        registry: Some(platform::RegistryAccess {
            address: &registry.address,
            credentials: registry_auth.as_ref(),
        }),
        replicas: gateways,
        queue: queue.as_ref().map(|(network, url)| platform::PlatformQueue {
            network,
            url,
            replicas: nats::NATS_SERVERS,
        }),
    });
    let pull = registry.docker_credentials();
    match docker.inspect_service(&args.name, None).await {
        Ok(existing) => {
            let version = existing.version.and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptionsBuilder::default().version(version as i32).build();
            docker
                .update_service(&args.name, spec, options, pull)
                .await
                .context("updating the gateway service")?;
            say(&format!("updated the {} service", args.name));
        }
        Err(_) => {
            docker.create_service(spec, pull).await.context("creating the gateway service")?;
            say(&format!("created the {} service", args.name));
        }
    }

    // The manager's own address (where the gateway's port is published):
    // 127.0.0.1 on a Swarm advertised there, the node's address on others.
    let host = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.swarm?.node_addr)
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("http://{host}:{}", args.port);
    wait_for_gateway(docker, &args.name, &url, Duration::from_secs(90)).await?;
    let mut config = AuthConfig::load()?;
    config.set_basic(&url, &creds.username, &creds.password);
    config.save()?;
    println!("ferrofaas is running on the Swarm: {url}");
    super::print_credentials(&creds, &creds_path);
    println!("  (saved for faas in {}; /system/* needs them)", crate::auth_config::path().display());
    Ok(())
}

/// The platform's registry, running and answering: its service (made or
/// brought up to date), the credentials the gateway gets, and the gateway
/// image pushed there (the push is what shows that the registry answers at
/// 127.0.0.1:5000 on this node).
async fn platform_registry(
    docker: &Docker,
    state: &std::path::Path,
    gateway_tag: &str,
    gateway_id: &str,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(Registry, StoredSecret, String)> {
    let path = state.join("registry-credentials.json");
    let (creds, _) = Credentials::load_or_create(&path)
        .with_context(|| format!("registry credentials in {}", path.display()))?;
    let node_id = docker
        .info()
        .await
        .context("asking the Docker engine")?
        .swarm
        .and_then(|s| s.node_id)
        .context("this engine names no Swarm node")?;
    let tag = format!("ferrofaas-registry:{}", env!("CARGO_PKG_VERSION"));
    say(&format!("building the registry image {tag}"));
    let image = registry::build_registry_image(docker, &tag, say).await?;
    let htpasswd = registry::htpasswd_secret(docker, &creds.username, &creds.password).await?;
    let auth = platform::registry_auth_secret(docker, &creds.username, &creds.password).await?;
    let platform_registry = Registry {
        address: PLATFORM_REGISTRY.to_owned(),
        credentials: Some((creds.username.clone(), creds.password.clone())),
    };
    // Through the routing mesh, unless it was found not to work here.
    let current = docker.inspect_service(REGISTRY_SERVICE, None).await.ok();
    let was_host = current
        .as_ref()
        .and_then(|s| s.spec.as_ref()?.endpoint_spec.as_ref()?.ports.as_ref()?.first()?.publish_mode)
        == Some(EndpointPortConfigPublishModeEnum::HOST);
    let mut publish = if was_host { Publish::Host } else { Publish::Mesh };
    loop {
        let spec = registry::registry_service(&registry::RegistryService {
            image: &image,
            node_id: &node_id,
            htpasswd: &htpasswd,
            publish,
        });
        put_service(docker, REGISTRY_SERVICE, spec, None).await.context("running the registry service")?;
        say(&format!("waiting for the registry ({REGISTRY_SERVICE}) to answer at {PLATFORM_REGISTRY}"));
        match push_when_up(docker, &platform_registry, gateway_tag, gateway_id, Duration::from_secs(60)).await
        {
            Ok(pushed) => return Ok((platform_registry, auth, pushed)),
            Err(e) if publish == Publish::Mesh => {
                say(&format!(
                    "the registry does not answer through Swarm's routing mesh ({e}); a kernel without IPVS \
                     cannot run the mesh: publishing port {REGISTRY_PORT} on this node only. Other nodes \
                     reach it only if their 127.0.0.1:{REGISTRY_PORT} is forwarded to this node's (the README's \
                     \"several machines\" says how)"
                ));
                publish = Publish::Host;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The Swarm's ready nodes (their ids, in order) and how many are managers.
struct ReadyNodes {
    ids: Vec<String>,
    managers: u64,
}

impl ReadyNodes {
    async fn of(docker: &Docker) -> anyhow::Result<ReadyNodes> {
        let nodes = docker.list_nodes(None::<bollard::query_parameters::ListNodesOptions>).await?;
        let ready: Vec<_> = nodes
            .into_iter()
            .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY))
            .collect();
        let managers = ready.iter().filter(|n| n.manager_status.is_some()).count() as u64;
        let mut ids: Vec<String> = ready.into_iter().filter_map(|n| n.id).collect();
        ids.sort();
        Ok(ReadyNodes { ids, managers })
    }
}

/// The NATS cluster the gateways share (`--ha`), on the platform's own
/// network: three servers on three nodes. Returns the queue's URL.
async fn platform_queue(
    docker: &Docker,
    registry: &Registry,
    ready: &ReadyNodes,
    network: &str,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<String> {
    let (nodes, managers) = (&ready.ids, ready.managers);
    if nodes.len() < nats::NATS_SERVERS || managers < 2 {
        bail!(
            "--ha needs at least {} nodes and 2 managers (this Swarm has {} ready nodes, {managers} managers): \
             `docker swarm join-token manager` tells how to add one",
            nats::NATS_SERVERS,
            nodes.len()
        );
    }
    // Servers keep their node (their store is a volume there).
    let mut placed = Vec::new();
    for i in 1..=nats::NATS_SERVERS {
        let current = docker.inspect_service(&nats::nats_service_name(i), None).await.ok();
        let node = current.as_ref().and_then(|s| platform::pinned_node(s.spec.as_ref()?)).map(str::to_owned);
        placed.push(node.filter(|n| nodes.contains(n)));
    }
    ferrofaas_provider::swarm::ensure_network(docker, network).await?;
    let tag = format!("ferrofaas-nats:{}", env!("CARGO_PKG_VERSION"));
    say(&format!("building the NATS image {tag}"));
    let id = nats::build_nats_image(docker, &tag, say).await?;
    let image = registry.distribute(docker, &tag, &id).await?;
    // Each server on a node none of the others is on.
    for i in 0..nats::NATS_SERVERS {
        if placed[i].is_none() {
            placed[i] = nodes.iter().find(|n| !placed.contains(&Some((*n).clone()))).cloned();
        }
    }
    for (i, node) in placed.iter().enumerate() {
        let node = node.as_deref().context("no node left for a NATS server")?;
        let name = nats::nats_service_name(i + 1);
        let spec = nats::nats_service(i + 1, &image, node, network);
        put_service(docker, &name, spec, registry.docker_credentials())
            .await
            .with_context(|| format!("running {name}"))?;
    }
    say(&format!("the queue: a NATS cluster of {} servers ({})", nats::NATS_SERVERS, nats::queue_url()));
    Ok(nats::queue_url())
}

/// Creates service `name`, or updates it to `spec`.
async fn put_service(
    docker: &Docker,
    name: &str,
    spec: ServiceSpec,
    pull: Option<bollard::auth::DockerCredentials>,
) -> anyhow::Result<()> {
    match docker.inspect_service(name, None).await {
        Ok(existing) => {
            let version = existing.version.and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptionsBuilder::default().version(version as i32).build();
            docker.update_service(name, spec, options, pull).await?;
        }
        Err(_) => {
            docker.create_service(spec, pull).await?;
        }
    }
    Ok(())
}

/// Pushes the image once the registry's task runs and its port answers;
/// an error after `timeout`, or soon after the task runs if the port never
/// answers.
async fn push_when_up(
    docker: &Docker,
    registry: &Registry,
    tag: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut running_since: Option<Instant> = None;
    loop {
        if running_since.is_none() && registry_task_running(docker).await {
            running_since = Some(Instant::now());
        }
        if let Some(since) = running_since {
            match registry.distribute(docker, tag, id).await {
                Ok(pushed) => return Ok(pushed),
                Err(e) if since.elapsed() > Duration::from_secs(5) || started.elapsed() > timeout => {
                    return Err(e.into());
                }
                Err(_) => {}
            }
        } else if started.elapsed() > timeout {
            bail!(
                "the {REGISTRY_SERVICE} service did not start within {timeout:?}: see `docker service ps \
                 --no-trunc {REGISTRY_SERVICE}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Is a task of the registry running (at its current version)?
async fn registry_task_running(docker: &Docker) -> bool {
    let filters = HashMap::from([("service", vec![REGISTRY_SERVICE]), ("desired-state", vec!["running"])]);
    let options = ListTasksOptionsBuilder::default().filters(&filters).build();
    docker.list_tasks(Some(options)).await.is_ok_and(|tasks| {
        tasks
            .iter()
            .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
    })
}

/// Waits until the service's update (if any) has finished and the gateway
/// at `url` answers.
async fn wait_for_gateway(docker: &Docker, name: &str, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = crate::client::Client::with_auth(url, None)?;
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        let service = docker.inspect_service(name, None).await.context("inspecting the gateway service")?;
        let updating = service.update_status.and_then(|u| u.state).is_some_and(|state| {
            !matches!(
                state,
                bollard::models::ServiceUpdateStatusStateEnum::COMPLETED
                    | bollard::models::ServiceUpdateStatusStateEnum::EMPTY
            )
        });
        if updating {
            last = "the service is still updating".into();
        } else {
            match client.request(http::Method::GET, "/healthz", &[], Default::default()).await {
                Ok(reply) if reply.status.is_success() => return Ok(()),
                Ok(reply) => last = format!("status {}", reply.status),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "the gateway did not answer at {url} within {timeout:?} ({last}); see `docker service ps --no-trunc \
         {name}` and `docker service logs {name}`"
    )
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

async fn down(docker: &Docker, args: DownArgs) -> anyhow::Result<()> {
    require_manager(docker).await?;
    match docker.delete_service(&args.name).await {
        Ok(()) => println!("  removed the {} service", args.name),
        Err(e) if is_not_found(&e) => println!("  no {} service", args.name),
        Err(e) => return Err(e).context("removing the gateway service"),
    }
    if !args.all {
        return Ok(());
    }
    let platform_services =
        (1..=nats::NATS_SERVERS).map(nats::nats_service_name).chain([REGISTRY_SERVICE.to_owned()]);
    for service in platform_services {
        match docker.delete_service(&service).await {
            Ok(()) => println!("  removed the {service} service"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("removing the {service} service")),
        }
    }
    // The functions on this platform's network.
    let network_id = match docker.inspect_network(&args.network, None).await {
        Ok(n) => n.id.unwrap_or_default(),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e).context("inspecting the network"),
    };
    let mut filters = HashMap::new();
    filters.insert("label", vec![LABEL_FUNCTION]);
    let options = ListServicesOptionsBuilder::default().filters(&filters).build();
    for service in docker.list_services(Some(options)).await? {
        let spec = service.spec.unwrap_or_default();
        let on_network = spec
            .task_template
            .and_then(|t| t.networks)
            .unwrap_or_default()
            .iter()
            .any(|n| n.target.as_deref().is_some_and(|t| t == network_id || t == args.network));
        let name = spec.name.unwrap_or_default();
        if let (true, Some(id)) = (on_network, service.id) {
            docker.delete_service(&id).await.with_context(|| format!("removing function {name}"))?;
            println!("  removed function {name}");
        }
    }
    // Function and credential secrets that no remaining service uses; they
    // stay in use until the removed services' tasks are gone.
    let in_use: Vec<String> = docker
        .list_services(None::<bollard::query_parameters::ListServicesOptions>)
        .await?
        .into_iter()
        .filter_map(|s| s.spec?.task_template?.container_spec?.secrets)
        .flatten()
        .filter_map(|r| r.secret_id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for label in [LABEL_SECRET, LABEL_GATEWAY] {
        let mut filters = HashMap::new();
        filters.insert("label", vec![label]);
        let options = ListSecretsOptionsBuilder::default().filters(&filters).build();
        for secret in docker.list_secrets(Some(options)).await? {
            let (Some(id), name) = (secret.id, secret.spec.and_then(|s| s.name).unwrap_or_default()) else {
                continue;
            };
            if in_use.contains(&id) {
                continue;
            }
            loop {
                match docker.delete_secret(&id).await {
                    Ok(()) => break,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                    Err(e) => return Err(e).with_context(|| format!("removing secret {name}")),
                }
            }
            println!("  removed secret {name}");
        }
    }
    for network in [args.network.clone(), format!("{}-platform", args.network)] {
        remove_network(docker, &network, deadline).await?;
    }
    // The gateway's state (its queue of asynchronous calls) and the
    // registry's images.
    for volume in [format!("{}-state", args.name), REGISTRY_SERVICE.to_owned()] {
        remove_volume(docker, &volume, deadline).await?;
    }
    Ok(())
}

async fn remove_network(docker: &Docker, network: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        match docker.remove_network(network).await {
            Ok(()) => {
                println!("  removed network {}", network);
                break;
            }
            Err(e) if is_not_found(&e) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(e).with_context(|| format!("removing network {}", network)),
        }
    }
    Ok(())
}

async fn remove_volume(docker: &Docker, volume: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        match docker.remove_volume(volume, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
            Ok(()) => {
                println!("  removed volume {volume}");
                break;
            }
            Err(e) if is_not_found(&e) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(e).with_context(|| format!("removing volume {volume}")),
        }
    }
    Ok(())
}
