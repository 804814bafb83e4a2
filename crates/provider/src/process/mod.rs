//! The process backend: every replica a local `faas-watchdog` process, the
//! embedded default. Small enough for a Raspberry Pi, no container engine.
//!
//! What a function runs comes from its bundle (see [`crate::bundles`]):
//! `bundle.json`'s environment, then `envProcess` (as `fprocess`), then
//! `envVars`: the same layering as a Dockerfile's `ENV` under OpenFaaS.
//! Each replica gets `$PORT` (for `http`-mode servers), its own `$TMPDIR`,
//! and its secrets as files in `$secret_mount_path`, where OpenFaaS's SDKs
//! look for them.
//!
//! Every replica runs in a sandbox ([`sandbox`], `faas-sandbox`): the
//! watchdog and all it starts see their bundle at `/home/app`, their
//! secrets at `/var/openfaas/secrets` and a private `/tmp`, as a uid of
//! their own with no privileges, in a cgroup with the deployment's limits.
//! `--unsafe-no-sandbox` runs them as plain processes of the gateway's user
//! instead (their bundle and instance folder in place).
//!
//! The replica's listening socket is bound here (127.0.0.1, a free port) and
//! handed to the watchdog as fd 3 (`LISTEN_FDS=1`), so its address is known
//! before it starts and no two replicas can race for a port.

mod meter;
mod sandbox;
mod wasm;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferrofaas_sandbox::cgroup::{Cgroup, Limits};
use ferrofaas_sandbox::{Identity, SECRETS_DIR, TMP_DIR};
use ferrofaas_types::function::{parse_cpu, parse_memory};
use ferrofaas_types::isolation::{CAPABILITIES_LABEL, Isolation};
use ferrofaas_types::{FunctionDeployment, FunctionRef, ProviderInfo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use self::meter::{CgroupMeter, ProcMeter};
use self::sandbox::{Replica, Sandbox};
pub use self::sandbox::{SandboxOptions, UID_BASE};
use crate::bundles::{self, BundleLimits, BundleStore, Manifest};
use crate::local::{Backend, DEFAULT_ENV, Instance, Launch, LocalConfig, LocalProvider, SecretAccess};
use crate::{BundleInfo, ProviderError, Result};

pub use crate::local::Timing;

/// Environment variables a replica gets from the gateway's own environment;
/// nothing else leaks from it.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The process provider.
pub type ProcessProvider = LocalProvider<ProcessBackend>;

#[derive(Clone, Debug)]
pub struct ProcessConfig {
    pub state_dir: PathBuf,
    /// The `faas-watchdog` executable replicas run.
    pub watchdog: PathBuf,
    pub timing: Timing,
    /// `None`: replicas run unsandboxed (`--unsafe-no-sandbox`).
    pub sandbox: Option<SandboxOptions>,
    /// Folders under which an absolute-path image may be (`--image-root`).
    pub image_roots: Vec<PathBuf>,
    pub bundle_limits: BundleLimits,
}

impl ProcessConfig {
    pub fn new(state_dir: PathBuf, watchdog: PathBuf, sandbox: Option<SandboxOptions>) -> ProcessConfig {
        ProcessConfig {
            timing: LocalConfig::new(state_dir.clone()).timing,
            state_dir,
            watchdog,
            sandbox,
            image_roots: Vec::new(),
            bundle_limits: BundleLimits::default(),
        }
    }
}

/// The process provider on its state folder, with its stored functions
/// started.
pub async fn start(config: ProcessConfig) -> io::Result<Arc<ProcessProvider>> {
    crate::fsutil::create_private_dir(&config.state_dir)?;
    let bundles = BundleStore::open(config.state_dir.join("bundles"))?
        .with_image_roots(&config.image_roots, &config.state_dir)?
        .with_limits(config.bundle_limits);
    let sandbox = match config.sandbox {
        Some(options) => Some(Sandbox::start(options, config.watchdog.clone(), &config.state_dir).await),
        None => {
            tracing::warn!(
                "replicas run without a sandbox (--unsafe-no-sandbox): as this user, seeing all it sees"
            );
            None
        }
    };
    let backend = ProcessBackend {
        watchdog: config.watchdog,
        bundles: Arc::new(bundles),
        sandbox,
        wasm_cache: config.state_dir.join("wasm"),
    };
    LocalProvider::start(backend, LocalConfig { state_dir: config.state_dir, timing: config.timing }).await
}

pub struct ProcessBackend {
    watchdog: PathBuf,
    bundles: Arc<BundleStore>,
    sandbox: Option<Sandbox>,
    /// Precompiled WebAssembly components, by content.
    wasm_cache: PathBuf,
}

/// What a replica of one version runs.
pub struct ProcessSpec {
    bundle_dir: PathBuf,
    /// `${PORT}` in a value becomes the port of the function's own server.
    env: Vec<(String, String)>,
    /// Who it runs as, in a sandbox (`None`: unsandboxed).
    identity: Option<Identity>,
    limits: Limits,
    network: bool,
    /// `mode=wasm`: the component, precompiled.
    precompiled: Option<PathBuf>,
}

#[async_trait]
impl Backend for ProcessBackend {
    type Spec = ProcessSpec;

    fn info(&self) -> ProviderInfo {
        crate::provider_info("ferrofaas-process", "process")
    }

    async fn prepare(&self, spec: &FunctionDeployment) -> Result<(ProcessSpec, String)> {
        let bundle_dir =
            self.bundles.resolve_for(&format!("{}.{}", spec.service, spec.namespace), &spec.image)?;
        let manifest = Manifest::read(&bundle_dir)?;
        let mut env = function_env(&manifest, spec)?;
        let isolation = Isolation::from_labels(&spec.labels)?;
        if !isolation.capabilities.is_empty() {
            return Err(ProviderError::invalid(
                format!("labels.{CAPABILITIES_LABEL}"),
                "process replicas run as an unprivileged uid and cannot be given capabilities \
                 (only containers can: the docker and swarm providers)",
            ));
        }
        let mut limits = limits(spec);
        let precompiled = match env.get("mode").map(String::as_str) {
            Some("wasm") => {
                let component = env.get("fprocess").map(String::as_str).unwrap_or_default().trim().to_owned();
                let path =
                    wasm::precompiled(&self.watchdog, &self.wasm_cache, &bundle_dir, &component).await?;
                wasm::limits(&mut env, &mut limits);
                Some(path)
            }
            _ => None,
        };
        let identity = match &self.sandbox {
            Some(sandbox) => {
                sandbox.check_limits(&limits)?;
                Some(sandbox.identity(&FunctionRef {
                    name: spec.service.clone(),
                    namespace: spec.namespace.clone(),
                })?)
            }
            None => None,
        };
        let identity_text = bundle_dir.display().to_string();
        let spec = ProcessSpec {
            bundle_dir,
            env: env.into_iter().collect(),
            identity,
            limits,
            network: isolation.network,
            precompiled,
        };
        Ok((spec, identity_text))
    }

    async fn launch(&self, spec: &ProcessSpec, launch: Launch<'_>) -> io::Result<Box<dyn Instance>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let port_text = port.to_string();

        let mut cgroup = None;
        let mut cmd = match (&self.sandbox, spec.identity) {
            (Some(sandbox), Some(identity)) => {
                sandbox.check()?;
                let replica = Replica {
                    function: launch.function,
                    identity,
                    limits: spec.limits,
                    network: spec.network,
                    port,
                    bundle: &spec.bundle_dir,
                    secrets: launch.secrets_dir,
                    dir: launch.dir,
                    instance: launch.instance,
                    precompiled: spec.precompiled.as_deref(),
                };
                let (sandbox_spec, made) = sandbox.replica(&replica)?;
                cgroup = made.map(Arc::new);
                let json = serde_json::to_string(&sandbox_spec).map_err(io::Error::other)?;
                let mut cmd = Command::new(sandbox.program());
                cmd.arg("run").arg(json);
                self.env(&mut cmd, spec, &port_text);
                cmd.env("HOME", TMP_DIR).env("TMPDIR", TMP_DIR).env("secret_mount_path", SECRETS_DIR);
                if spec.precompiled.is_some() {
                    cmd.env("wasm_precompiled", wasm::PRECOMPILED_PATH);
                }
                cmd
            }
            _ => {
                let tmp = launch.dir.join("tmp");
                let mut cmd = Command::new(&self.watchdog);
                self.env(&mut cmd, spec, &port_text);
                cmd.env("HOME", &tmp)
                    .env("TMPDIR", &tmp)
                    .env("secret_mount_path", launch.secrets_dir)
                    .current_dir(&spec.bundle_dir);
                if let Some(path) = &spec.precompiled {
                    cmd.env("wasm_precompiled", path);
                }
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let fd = listener.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec: the
        // socket goes to fd 3 (open across exec), and the replica is asked
        // to stop if the gateway dies.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0
                    || libc::fcntl(3, libc::F_SETFD, 0) < 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = cmd.as_std().get_program().to_owned();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(cgroup) = cgroup.take() {
                    remove_cgroup(cgroup).await;
                }
                return Err(io::Error::new(e.kind(), format!("{}: {e}", program.display())));
            }
        };
        drop(listener);
        for out in
            [child.stdout.take().map(box_reader), child.stderr.take().map(box_reader)].into_iter().flatten()
        {
            let log = Arc::clone(launch.log);
            let instance = launch.instance.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.push(&instance, &line);
                }
            });
        }
        Ok(Box::new(ProcessInstance { child, addr, cgroup }))
    }

    fn secret_access(&self, function: &FunctionRef) -> SecretAccess {
        let owner = self.sandbox.as_ref().and_then(|s| s.secret_owner(function));
        SecretAccess { owner, ..SecretAccess::default() }
    }

    fn removed(&self, function: &FunctionRef) {
        self.bundles.release(&format!("{}.{}", function.name, function.namespace));
        if let Some(sandbox) = &self.sandbox {
            sandbox.release(function);
        }
    }

    async fn stopped(&self) {
        if let Some(sandbox) = &self.sandbox {
            sandbox.stopped();
        }
    }

    async fn push_bundle(&self, image: &str, archive: &Path) -> Result<BundleInfo> {
        let bundles = Arc::clone(&self.bundles);
        let (image, archive) = (image.to_owned(), archive.to_owned());
        tokio::task::spawn_blocking(move || bundles.push(&image, &archive))
            .await
            .map_err(|e| ProviderError::internal("storing bundle", e))?
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        Ok(self.bundles.list())
    }
}

impl ProcessBackend {
    /// A replica's environment: what it inherits, then the function's.
    fn env(&self, cmd: &mut Command, spec: &ProcessSpec, port: &str) {
        cmd.env_clear();
        for name in INHERITED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        for (k, v) in &spec.env {
            cmd.env(k, v.replace("${PORT}", port));
        }
        cmd.env("PORT", port).env("LISTEN_FDS", "1").env_remove("LISTEN_PID");
    }
}

/// The deployment's `limits` as the sandbox's cgroup takes them.
fn limits(spec: &FunctionDeployment) -> Limits {
    let limits = spec.limits.as_ref();
    Limits {
        memory_bytes: limits.and_then(|l| parse_memory(&l.memory)),
        cpu_millis: limits.and_then(|l| parse_cpu(&l.cpu)).filter(|&m| m > 0),
        pids: None,
    }
}

/// A function's environment: the defaults, then the bundle's, then
/// `envProcess` as `fprocess`, then the deployment's `envVars`.
pub fn function_env(manifest: &Manifest, spec: &FunctionDeployment) -> Result<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> =
        DEFAULT_ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    env.extend(manifest.env.clone());
    if !spec.env_process.is_empty() {
        env.insert("fprocess".into(), spec.env_process.clone());
    }
    env.extend(spec.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !crate::rules::has_something_to_run(|k| env.get(k).map(String::as_str)) {
        return Err(ProviderError::invalid(
            "envProcess",
            format!(
                "nothing to run: set envProcess, or ship a {} with env.fprocess in the bundle",
                bundles::MANIFEST
            ),
        ));
    }
    Ok(env)
}

fn box_reader(
    r: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
    Box::new(r)
}

struct ProcessInstance {
    child: Child,
    addr: SocketAddr,
    /// The sandbox's cgroup: killed and removed once the replica is gone.
    cgroup: Option<Arc<Cgroup>>,
}

impl ProcessInstance {
    async fn clean_up(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            remove_cgroup(cgroup).await;
        }
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(remove_cgroup(cgroup));
        }
    }
}

async fn remove_cgroup(cgroup: Arc<Cgroup>) {
    let _ = tokio::task::spawn_blocking(move || cgroup.kill_and_remove()).await;
}

#[async_trait]
impl Instance for ProcessInstance {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn exited(&mut self) -> String {
        let how = match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("lost: {e}"),
        };
        match self.cgroup.as_ref().filter(|c| c.oom_kills().unwrap_or(0) > 0) {
            Some(cgroup) => format!("{how}; out of memory: {}", over_limit(cgroup)),
            None => how,
        }
    }

    async fn stop(mut self: Box<Self>, timeout: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(timeout, self.child.wait()).await.is_err() {
            tracing::warn!(addr = %self.addr, "replica did not stop in time; killing it");
        }
        self.kill().await;
    }

    async fn kill(mut self: Box<Self>) {
        let _ = self.child.kill().await;
        self.clean_up().await;
    }

    fn meter(&self) -> Option<Arc<dyn crate::routes::ReplicaMeter>> {
        if let Some(cgroup) = self.cgroup.as_ref().filter(|c| c.cpu_seconds().is_some()) {
            return Some(Arc::new(CgroupMeter { cgroup: Arc::clone(cgroup), peak: Default::default() }));
        }
        let pid = self.child.id()?;
        Some(Arc::new(ProcMeter { pid }))
    }
}

/// "a process went over the replica's memory limit of 64 MiB".
fn over_limit(cgroup: &Cgroup) -> String {
    match cgroup.memory_limit() {
        Some(bytes) => format!("a process went over the replica's memory limit of {} MiB", bytes >> 20),
        None => "a process was killed by the kernel".into(),
    }
}
