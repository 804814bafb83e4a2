//! `faas serve`: the whole platform on one machine. The gateway, the process
//! provider (every replica a `faas-watchdog` process; or the Docker or
//! Swarm provider) and the state folder; the functions of a `stack.yml`
//! deployed at start-up.
//!
//! This is the assembly point: the one place that names concrete backends.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ferrofaas_gateway::{Credentials, Gateway, GatewayConfig};
use ferrofaas_provider::process::{ProcessConfig, SandboxOptions};
use ferrofaas_provider::swarm::SwarmConfig;
use ferrofaas_provider::swarm::registry::Registry;
use ferrofaas_provider::{Provider, ProviderError};
use tokio::net::TcpListener;

use crate::{bundle, paths, stack};

#[derive(clap::Args)]
pub struct Args {
    /// A stack.yml whose functions are deployed at start-up
    #[arg(short = 'f', long = "yaml")]
    stack: Option<PathBuf>,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one)
    #[arg(short, long, default_value_t = 8080)]
    port: u16,
    /// State folder: functions, secrets, bundles, credentials
    #[arg(long, env = "FERROFAAS_STATE")]
    state: Option<PathBuf>,
    /// The faas-watchdog executable replicas run (default: the static build
    /// next to faas, which scripts/build-watchdog makes, else the one next
    /// to faas)
    #[arg(long, env = "FAAS_WATCHDOG")]
    watchdog: Option<PathBuf>,
    /// Leave /system/* without authentication
    #[arg(long)]
    no_auth: bool,
    /// Where replicas run: process (local processes), docker (containers
    /// on the local Docker engine) or swarm (services on a Docker Swarm;
    /// see `faas swarm up`, which runs the gateway itself on the Swarm)
    #[arg(long, default_value = "process", value_parser = ["process", "docker", "swarm"])]
    provider: String,
    /// The overlay network of functions and gateway (swarm provider)
    #[arg(long, default_value = ferrofaas_provider::swarm::DEFAULT_NETWORK)]
    network: String,
    /// The registry the Swarm's nodes pull function images from, host[:port]
    /// (swarm provider): images the gateway builds are pushed there and
    /// run by digest. `faas swarm up` runs one (127.0.0.1:5000 on every
    /// node); without it, functions run only where their image is
    #[arg(long)]
    registry: Option<String>,
    /// The registry's credentials, a file holding `user:password`
    #[arg(long, requires = "registry")]
    registry_auth_file: Option<PathBuf>,
    /// Read the admin credentials from this file (JSON: username,
    /// password), never writing it: a Docker secret, say
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// The static faas-watchdog that goes into images (docker provider;
    /// default: the static build next to faas, scripts/build-watchdog)
    #[arg(long, env = "FAAS_IMAGE_WATCHDOG")]
    image_watchdog: Option<PathBuf>,
    /// Leave every function's replicas as deployed or scaled (no
    /// autoscaler; functions at zero are still started by a request)
    #[arg(long)]
    no_autoscale: bool,
    /// Where asynchronous calls are stored: "embedded" (a file in the state
    /// folder) or a NATS server with JetStream, nats://host:port, which
    /// several gateways can share (and with it their usage records, plans,
    /// quotas and API tokens)
    #[arg(long, default_value = "embedded", env = "FERROFAAS_QUEUE")]
    queue: String,
    /// NATS queue: on how many servers of its cluster each stream is kept
    /// (3 loses no call when one server is lost)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    queue_replicas: u64,
    /// NATS queue: how long a gateway that stopped answering keeps the calls
    /// it held before they go to another
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    queue_ack_wait: Duration,
    /// Most asynchronous calls stored at once; past it /async-function/
    /// answers 429
    #[arg(long, default_value_t = 100_000)]
    queue_max: usize,
    /// Most bytes of asynchronous calls (bodies, headers, answers kept for
    /// callbacks) and dead letters stored at once; past it 429
    #[arg(long, default_value = "1Gi", value_parser = parse_size)]
    queue_max_bytes: u64,
    /// The same for one function, so that one cannot fill the queue for
    /// all (embedded queue)
    #[arg(long, default_value = "256Mi", value_parser = parse_size)]
    queue_max_function_bytes: u64,
    /// Largest body of one asynchronous call; past it 413
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    queue_max_body: u64,
    /// Memory for asynchronous bodies: as much for those being received
    /// (past it 429) and for the calls being run (the rest wait on disk)
    #[arg(long, default_value = "32Mi", value_parser = parse_size)]
    queue_memory: u64,
    /// A broker whose messages trigger functions (repeatable): nats=URL (a
    /// NATS server, or several comma-separated), mqtt=mqtt://host:port,
    /// rabbitmq=amqp://user:password@host:port/vhost[?exchange=name]. A
    /// function's `topic` annotation names the subjects (topics, binding
    /// keys) it gets.
    #[arg(long = "connector", value_name = "NAME=URL")]
    connectors: Vec<String>,
    /// Do not meter usage (no usage records; /system/usage is a 404)
    #[arg(long)]
    no_usage: bool,
    /// The memory an invocation of a function without a memory limit
    /// (limits.memory) is metered at, for GB-seconds
    #[arg(long, default_value = "128Mi", value_parser = parse_size)]
    usage_memory: u64,
    /// How long usage records are kept one by one (then per minute and per
    /// hour): 7d, 48h
    #[arg(long, default_value = "7d", value_parser = parse_days)]
    usage_retention: Duration,
    /// The most disk the raw usage records may take (the oldest go first;
    /// the per-minute and per-hour sums keep counting them)
    #[arg(long, default_value = "1Gi", value_parser = parse_size)]
    usage_raw_max: u64,
    /// Longest a request waits for a replica to start (from zero, or while
    /// replicas start); then 504
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    start_timeout: Duration,
    /// Longest wait for a function's response (e.g. 60s, 2m)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// Let callbacks of asynchronous calls (X-Callback-Url) reach this
    /// address block too (10.1.0.0/16, 127.0.0.1, fd00::/8): by default
    /// loopback, link-local, private and unique-local addresses are refused;
    /// repeat for more
    #[arg(long = "callback-allow", value_name = "NET")]
    callback_allow: Vec<ferrofaas_gateway::callback::Net>,
    /// Run process replicas without a sandbox: as this user, able to read
    /// and change all it can (the state folder, other functions). Only for
    /// machines where sandboxes cannot be made, and functions you trust
    #[arg(long)]
    unsafe_no_sandbox: bool,
    /// The faas-sandbox program (default: next to faas)
    #[arg(long, env = "FAAS_SANDBOX")]
    sandbox: Option<PathBuf>,
    /// Most processes and threads one replica may have, on every provider
    /// (a fork bomb stops there)
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pids_limit: u64,
    /// Size of each process replica's private /tmp (and of its /dev/shm)
    #[arg(long, default_value = "64Mi", value_parser = parse_size)]
    sandbox_tmp: u64,
    /// A host folder process replicas may read, besides /usr, /etc and the
    /// like (a runtime installed in /opt, say); repeat for more
    #[arg(long = "sandbox-path", value_name = "PATH", value_parser = parse_host_path)]
    sandbox_paths: Vec<PathBuf>,
    /// Let functions of the process provider use a folder under FOLDER as
    /// their image (`image: /FOLDER/fn`), in place; never the state
    /// folder. Without it only pushed bundles run; repeat for more
    #[arg(long = "image-root", value_name = "FOLDER", value_parser = parse_folder)]
    image_roots: Vec<PathBuf>,
    /// Most bytes one pushed bundle may unpack to
    #[arg(long, default_value = "1Gi", value_parser = parse_size)]
    bundle_max_unpacked: u64,
    /// Most bytes of all pushed bundles kept, unpacked (process provider);
    /// when a push would pass it, bundles no tag names and no function runs
    /// are removed first
    #[arg(long, default_value = "8Gi", value_parser = parse_size)]
    bundle_store_max: u64,
}

fn parse_folder(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        return Err(format!("{s:?} is not an absolute path"));
    }
    if !path.is_dir() {
        return Err(format!("{s:?} is not a folder"));
    }
    if path == Path::new("/") {
        return Err("\"/\" would make every folder of this machine an image".to_owned());
    }
    Ok(path)
}

fn parse_size(s: &str) -> Result<u64, String> {
    ferrofaas_types::function::parse_memory(s)
        .filter(|&b| b >= 1 << 20)
        .ok_or_else(|| format!("{s:?} is not a size of at least 1Mi, such as 64Mi or 1G"))
}

fn parse_host_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        return Err(format!("{s:?} is not an absolute path"));
    }
    if !path.is_dir() {
        return Err(format!("{s:?} is not a folder"));
    }
    for forbidden in ["/", "/proc", "/sys", "/dev", "/run", "/tmp", "/var", "/root", "/home"] {
        if path == Path::new(forbidden) {
            return Err(format!("{s:?} would show replicas too much of this machine"));
        }
    }
    Ok(path)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ferrofaas_types::duration::parse(s).ok_or_else(|| format!("{s:?} is not a duration such as 30s or 2m"))
}

/// A retention: days (`7d`) or a duration (`48h`), an hour at least.
fn parse_days(s: &str) -> Result<Duration, String> {
    let d = ferrofaas_types::duration::parse_days(s).unwrap_or_default();
    (d >= Duration::from_secs(3600))
        .then_some(d)
        .ok_or_else(|| format!("{s:?} is not a time of at least an hour, such as 7d or 48h"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // Before anything is announced: a signal must always mean "stop cleanly".
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let state = args.state.clone().unwrap_or_else(paths::default_state_dir);
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let state = std::fs::canonicalize(&state)?;
    let stack = match &args.stack {
        Some(path) => Some(stack::Stack::load(path)?),
        None => None,
    };

    let auth = if args.no_auth {
        None
    } else if let Some(path) = &args.credentials_file {
        Some(Credentials::load(path).with_context(|| format!("credentials in {}", path.display()))?)
    } else {
        let path = paths::credentials_file(&state);
        std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
        let (creds, created) = Credentials::load_or_create(&path)
            .with_context(|| format!("credentials in {}", path.display()))?;
        if created {
            println!(
                "Generated the gateway's admin credentials (shown only this once; stored in {}):",
                path.display()
            );
            super::print_credentials(&creds, &path);
        }
        Some(creds)
    };

    let listener = TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;

    let provider: Arc<dyn Provider> = match args.provider.as_str() {
        "docker" => {
            let image_watchdog = paths::image_watchdog(
                args.image_watchdog.as_deref(),
                image_arch(args.image_watchdog.as_deref()),
            )?;
            let config = ferrofaas_provider::docker::DockerConfig {
                bundle_max_unpacked: args.bundle_max_unpacked,
                ..ferrofaas_provider::docker::DockerConfig::new(
                    state.clone(),
                    image_watchdog,
                    args.pids_limit,
                )
            };
            ferrofaas_provider::docker::start(config)
                .await
                .with_context(|| format!("starting the Docker provider in {}", state.display()))?
        }
        "swarm" => {
            let image_watchdog = paths::image_watchdog(
                args.image_watchdog.as_deref(),
                image_arch(args.image_watchdog.as_deref()),
            )?;
            ferrofaas_provider::swarm::start(SwarmConfig {
                network: args.network.clone(),
                watchdog: image_watchdog,
                pids_limit: args.pids_limit,
                bundle_max_unpacked: args.bundle_max_unpacked,
                registry: args
                    .registry
                    .as_deref()
                    .map(|r| Registry::new(r, args.registry_auth_file.as_deref()))
                    .transpose()?,
            })
            .await
            .context("starting the Swarm provider")?
        }
        _ => {
            // The static build when there is one (it is what is measured),
            // else the one beside faas.
            let watchdog = match (&args.watchdog, paths::static_watchdog()) {
                (None, Some(found)) => found,
                (given, _) => find_program("faas-watchdog", given.as_deref(), "--watchdog")?,
            };
            tracing::info!(watchdog = %watchdog.display(), "process replicas run this watchdog");
            let sandbox = if args.unsafe_no_sandbox {
                None
            } else {
                Some(SandboxOptions {
                    program: find_program("faas-sandbox", args.sandbox.as_deref(), "--sandbox")?,
                    pids: args.pids_limit,
                    tmp_bytes: args.sandbox_tmp,
                    paths: args.sandbox_paths.clone(),
                })
            };
            let config = ProcessConfig {
                image_roots: args.image_roots.clone(),
                bundle_limits: ferrofaas_provider::bundles::BundleLimits {
                    max_unpacked: args.bundle_max_unpacked,
                    max_store: args.bundle_store_max,
                },
                ..ProcessConfig::new(state.clone(), watchdog, sandbox)
            };
            ferrofaas_provider::process::start(config)
                .await
                .with_context(|| format!("starting the process provider in {}", state.display()))?
        }
    };
    let limits = ferrofaas_queue::Limits {
        max_calls: args.queue_max,
        max_bytes: args.queue_max_bytes,
        max_function_bytes: args.queue_max_function_bytes,
    };
    // Uploads being received; what a killed gateway left goes.
    let uploads = state.join("uploads");
    let _ = std::fs::remove_dir_all(&uploads);
    std::fs::create_dir_all(&uploads)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&uploads, std::fs::Permissions::from_mode(0o700))
        })
        .with_context(|| format!("making {}", uploads.display()))?;
    // The queue's address as messages show it (no password).
    let shown = ferrofaas_types::address::without_credentials(&args.queue);
    let queue: Arc<dyn ferrofaas_queue::Queue> = match args.queue.as_str() {
        "embedded" => ferrofaas_queue::embedded::open(&state.join("queue.redb"), limits)
            .with_context(|| format!("opening the asynchronous queue in {}", state.display()))?,
        url if url.starts_with("nats://") => {
            ferrofaas_queue::jetstream::connect(ferrofaas_queue::jetstream::JetStreamConfig {
                url: url.to_owned(),
                limits,
                ack_wait: args.queue_ack_wait,
                replicas: args.queue_replicas as usize,
            })
            .await
            .with_context(|| format!("opening the asynchronous queue on {shown}"))?
        }
        other => bail!("--queue {other:?}: use embedded or nats://host:port"),
    };
    let mut brokers: Vec<Arc<dyn ferrofaas_triggers::broker::Broker>> = Vec::new();
    for connector in &args.connectors {
        match connector.split_once('=') {
            Some(("nats", url)) if url.starts_with("nats://") => {
                // The address may hold a password: not repeated in errors.
                let broker = ferrofaas_triggers::nats::NatsBroker::connect(url).await.map_err(|e| {
                    anyhow::anyhow!(
                        "--connector nats={}: {e}",
                        ferrofaas_types::address::without_credentials(url)
                    )
                })?;
                brokers.push(Arc::new(broker));
            }
            Some(("mqtt", url)) => {
                let broker = ferrofaas_triggers::mqtt::MqttBroker::new(url)
                    .map_err(|e| anyhow::anyhow!("--connector {connector}: {e}"))?;
                brokers.push(Arc::new(broker));
            }
            // The address may hold a password: not repeated in errors.
            Some(("rabbitmq", url)) => {
                let broker = ferrofaas_triggers::rabbitmq::RabbitBroker::new(url)
                    .map_err(|e| anyhow::anyhow!("--connector rabbitmq=...: {e}"))?;
                brokers.push(Arc::new(broker));
            }
            _ => bail!(
                "--connector {:?}: use nats=nats://host:port, mqtt=mqtt://host:port or \
                 rabbitmq=amqp://user:password@host:port/vhost",
                connector.split_once('=').map_or(connector.as_str(), |(name, _)| name)
            ),
        }
    }
    if brokers.iter().map(|b| b.name()).collect::<std::collections::HashSet<_>>().len() != brokers.len() {
        bail!(
            "--connector: one of each kind (a NATS cluster is one URL list: nats=nats://a:4222,nats://b:4222)"
        );
    }
    let gateway = Gateway::new(
        Arc::clone(&provider),
        GatewayConfig {
            auth,
            upstream_timeout: args.upstream_timeout,
            autoscale: !args.no_autoscale,
            replica_wait: args.start_timeout,
            callbacks: ferrofaas_gateway::callback::CallbackPolicy { allow: args.callback_allow.clone() },
            max_async_body: usize::try_from(args.queue_max_body).unwrap_or(usize::MAX),
            async_memory: usize::try_from(args.queue_memory).unwrap_or(usize::MAX),
            upload_dir: uploads.clone(),
            ..GatewayConfig::default()
        },
    )
    .with_queue(queue, brokers);
    let tokens_file = state.join("tokens.json");
    let tokens = ferrofaas_gateway::tokens::Tokens::open(tokens_file.clone())
        .with_context(|| format!("reading the API tokens in {}", tokens_file.display()))?;
    let tokens = Arc::new(tokens);
    // Gateways sharing a NATS queue share their settings (and usage) there.
    let shared = match args.queue.starts_with("nats://") {
        true => {
            let nats = ferrofaas_usage::jetstream::connect(&args.queue, args.queue_replicas as usize)
                .await
                .with_context(|| format!("sharing usage and tokens on {shown}"))?;
            let settings = ferrofaas_usage::jetstream::settings(&nats)
                .await
                .with_context(|| format!("sharing usage and tokens on {shown}"))?;
            tokens
                .share(Arc::clone(&settings) as Arc<dyn ferrofaas_usage::Board>)
                .await
                .with_context(|| format!("sharing the API tokens on {shown}"))?;
            Some((nats, settings))
        }
        false => None,
    };
    let gateway = gateway.with_tokens(tokens);
    let gateway = match args.no_usage {
        true => gateway,
        false => {
            let dir = ferrofaas_usage::embedded::dir_in(&state);
            let retention = ferrofaas_usage::embedded::Retention {
                raw: args.usage_retention,
                raw_bytes: args.usage_raw_max,
                ..ferrofaas_usage::embedded::Retention::default()
            };
            let store = ferrofaas_usage::embedded::open(&dir, retention)
                .with_context(|| format!("opening the usage store in {}", dir.display()))?;
            let meter: Arc<dyn ferrofaas_usage::Meter> = match shared {
                Some((nats, settings)) => ferrofaas_usage::jetstream::share(
                    store,
                    &nats,
                    settings,
                    args.usage_retention,
                    args.usage_raw_max,
                )
                .await
                .with_context(|| format!("sharing usage on {shown}"))?,
                None => Arc::new(ferrofaas_usage::embedded::Store(store)),
            };
            gateway.with_metering(ferrofaas_gateway::invocation::Metering {
                meter,
                default_memory_mib: args.usage_memory.div_ceil(1 << 20).max(1),
            })
        }
    };
    let gateway = Arc::new(gateway);

    println!("ferrofaas gateway listening on http://{addr}");
    println!("  provider: {}; state: {}", provider.info().orchestration, state.display());

    if let Some(stack) = &stack {
        deploy_stack(&*provider, stack, &uploads).await?;
    }

    ferrofaas_gateway::run(gateway, listener, shutdown_signal(signals)).await?;
    tracing::info!("stopping replicas");
    provider.shutdown().await;
    Ok(())
}

/// A program of the workspace (`faas-watchdog`, `faas-sandbox`) as given
/// (`flag`), else next to this executable.
fn find_program(name: &str, given: Option<&Path>, flag: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?.parent().context("faas has no folder")?.join(name),
    };
    if !path.is_file() {
        bail!("no {name} at {}: build the workspace (cargo build --release) or pass {flag}", path.display());
    }
    Ok(std::fs::canonicalize(&path)?)
}

/// Deploys (or updates) every function of a stack: built first if it has a
/// `lang` (as `faas up` does), used as it is if its handler folder is a
/// bundle; pushed to the provider's bundle store under its image name.
async fn deploy_stack(provider: &dyn Provider, stack: &stack::Stack, uploads: &Path) -> anyhow::Result<()> {
    let dir = stack.dir();
    let mode = crate::progress::Mode::pick(false, false);
    for (name, f) in &stack.functions {
        let bundle = tokio::task::block_in_place(|| crate::builder::build(name, f, stack, mode, false))?;
        let image = f.image(name);
        let archive = uploads.join(format!(".stack-{name}.tar"));
        std::fs::write(&archive, bundle::pack(&bundle)?)
            .with_context(|| format!("function {name}: writing {}", archive.display()))?;
        let pushed = provider.push_bundle(&image, &archive).await;
        let _ = std::fs::remove_file(&archive);
        pushed.with_context(|| format!("function {name}: storing its bundle"))?;
        let spec = f.deployment(name, image, &f.env(&dir)?);
        match provider.deploy(spec.clone()).await {
            Ok(()) => println!("  deployed {name}"),
            Err(ProviderError::Conflict(_)) => {
                provider.update(spec).await.with_context(|| format!("function {name}"))?;
                println!("  {name} is up to date");
            }
            Err(e) => return Err(e).with_context(|| format!("function {name}")),
        }
    }
    Ok(())
}

async fn shutdown_signal((mut term, mut int): (tokio::signal::unix::Signal, tokio::signal::unix::Signal)) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}

/// The architecture of the images the gateway builds from bundles: its
/// image watchdog's (`--image-watchdog` may be another architecture's).
fn image_arch(given: Option<&std::path::Path>) -> ferrofaas_types::platform::Arch {
    given
        .and_then(ferrofaas_provider::engine::image::program_arch)
        .unwrap_or_else(ferrofaas_types::platform::Arch::native)
}
