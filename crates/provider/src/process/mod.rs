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
//! The replica's listening socket is bound here (127.0.0.1, a free port) and
//! handed to the watchdog as fd 3 (`LISTEN_FDS=1`), so its address is known
//! before it starts and no two replicas can race for a port.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferrofaas_types::{FunctionDeployment, ProviderInfo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::bundles::{self, BundleStore, Manifest};
use crate::local::{Backend, DEFAULT_ENV, Instance, Launch, LocalConfig, LocalProvider};
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
}

impl ProcessConfig {
    pub fn new(state_dir: PathBuf, watchdog: PathBuf) -> ProcessConfig {
        ProcessConfig { timing: LocalConfig::new(state_dir.clone()).timing, state_dir, watchdog }
    }
}

/// The process provider on its state folder, with its stored functions
/// started.
pub async fn start(config: ProcessConfig) -> io::Result<Arc<ProcessProvider>> {
    let bundles = BundleStore::open(config.state_dir.join("bundles"))?;
    let backend = ProcessBackend { watchdog: config.watchdog, bundles: Arc::new(bundles) };
    LocalProvider::start(backend, LocalConfig { state_dir: config.state_dir, timing: config.timing }).await
}

pub struct ProcessBackend {
    watchdog: PathBuf,
    bundles: Arc<BundleStore>,
}

/// What a replica of one version runs.
pub struct ProcessSpec {
    bundle_dir: PathBuf,
    /// `${PORT}` in a value becomes the port of the function's own server.
    env: Vec<(String, String)>,
}

#[async_trait]
impl Backend for ProcessBackend {
    type Spec = ProcessSpec;

    fn info(&self) -> ProviderInfo {
        crate::provider_info("ferrofaas-process", "process")
    }

    async fn prepare(&self, spec: &FunctionDeployment) -> Result<(ProcessSpec, String)> {
        let bundle_dir = self.bundles.resolve(&spec.image)?;
        let manifest = Manifest::read(&bundle_dir)?;
        let env = function_env(&manifest, spec)?;
        let identity = bundle_dir.display().to_string();
        Ok((ProcessSpec { bundle_dir, env: env.into_iter().collect() }, identity))
    }

    async fn launch(&self, spec: &ProcessSpec, launch: Launch<'_>) -> io::Result<Box<dyn Instance>> {
        let tmp = launch.dir.join("tmp");
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();

        let mut cmd = Command::new(&self.watchdog);
        cmd.env_clear();
        for name in INHERITED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        for (k, v) in &spec.env {
            cmd.env(k, v.replace("${PORT}", &port));
        }
        cmd.env("PORT", &port)
            .env("HOME", &tmp)
            .env("TMPDIR", &tmp)
            .env("secret_mount_path", launch.secrets_dir)
            .env("LISTEN_FDS", "1")
            .env_remove("LISTEN_PID")
            .current_dir(&spec.bundle_dir)
            .stdin(Stdio::null())
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
        let mut child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.watchdog.display())))?;
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
        Ok(Box::new(ProcessInstance { child, addr }))
    }

    async fn push_bundle(&self, image: &str, archive: Bytes) -> Result<BundleInfo> {
        let bundles = Arc::clone(&self.bundles);
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || bundles.push(&image, archive))
            .await
            .map_err(|e| ProviderError::internal("storing bundle", e))?
    }

    async fn list_bundles(&self) -> Result<Vec<BundleInfo>> {
        Ok(self.bundles.list())
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
    let is_static = env.get("mode").is_some_and(|m| m == "static");
    if !is_static && !env.contains_key("fprocess") && !env.contains_key("function_process") {
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
}

#[async_trait]
impl Instance for ProcessInstance {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("lost: {e}"),
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
    }

    fn meter(&self) -> Option<Arc<dyn crate::routes::CpuMeter>> {
        let pid = self.child.id()?;
        Some(Arc::new(ProcMeter { pid }))
    }
}

/// CPU time of a replica's process tree, from `/proc`: the watchdog with
/// the children it has reaped (the forked function processes), and its live
/// descendants.
struct ProcMeter {
    pid: u32,
}

impl crate::routes::CpuMeter for ProcMeter {
    fn cpu_seconds(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<f64>> + Send + '_>> {
        Box::pin(async move { tree_cpu_seconds(self.pid, true) })
    }
}

fn tree_cpu_seconds(pid: u32, with_reaped: bool) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces: state is
    // field 3, utime 14, stime 15, cutime 16, cstime 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let mut total = field(14) + field(15);
    if with_reaped {
        total += field(16) + field(17);
    }
    let mut seconds = total / ticks;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            seconds += tree_cpu_seconds(child, false).unwrap_or(0.0);
        }
    }
    Some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_of_a_process_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 5"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let own = tree_cpu_seconds(std::process::id(), true).unwrap();
        let child_cpu = tree_cpu_seconds(child.id(), true).unwrap();
        assert!(child_cpu > 0.0, "the busy loop used CPU");
        assert!(own >= child_cpu, "a parent counts its live children");
        assert!(tree_cpu_seconds(u32::MAX, true).is_none());
        let _ = child.kill();
        let _ = child.wait();
    }
}
