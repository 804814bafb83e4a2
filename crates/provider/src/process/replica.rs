//! One replica: a `faas-watchdog` process, restarted with backoff whenever it
//! dies or fails its health checks, until it is told to stop.
//!
//! The replica's listening socket is bound here (127.0.0.1, a free port) and
//! handed to the watchdog as fd 3 (`LISTEN_FDS=1`), so its address is known
//! before it starts and no two replicas can race for a port. Each start gets
//! its own instance name and folder (`TMPDIR`, secrets).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ferrofaas_types::FunctionRef;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::logs::FunctionLog;
use super::secrets::SecretStore;
use crate::routes::Endpoint;

/// Environment variables a replica gets from the gateway's own environment;
/// nothing else leaks from it.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Everything needed to start replicas of one version of a function.
pub struct ReplicaSpec {
    pub function: FunctionRef,
    pub generation: u64,
    pub watchdog: PathBuf,
    pub bundle_dir: PathBuf,
    /// The watchdog's environment; `${PORT}` in a value becomes the port the
    /// function's own server should listen on (also in `PORT`).
    pub env: Vec<(String, String)>,
    pub secrets: Vec<String>,
    /// `run/<namespace>/<name>`: instance folders go below.
    pub run_dir: PathBuf,
}

/// How replicas are watched.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub startup_timeout: Duration,
    pub health_interval: Duration,
    /// SIGTERM, then this long before SIGKILL.
    pub stop_timeout: Duration,
}

pub enum Event {
    Ready(Arc<Endpoint>),
    Down,
}

pub struct Shared {
    pub secrets: Arc<SecretStore>,
    pub log: Arc<FunctionLog>,
    pub timing: Timing,
}

pub struct ReplicaHandle {
    pub id: u64,
    pub generation: u64,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ReplicaHandle {
    /// Asks the replica to stop (gracefully); returns the task to await.
    pub fn stop(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
    }
}

/// Starts replica `id` of `spec`; its readiness comes on `events`.
pub fn start(
    id: u64,
    spec: Arc<ReplicaSpec>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<(u64, Event)>,
) -> ReplicaHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let generation = spec.generation;
    let task = tokio::spawn(supervise(id, spec, shared, events, stop_rx));
    ReplicaHandle { id, generation, stop: Some(stop_tx), task }
}

async fn supervise(
    id: u64,
    spec: Arc<ReplicaSpec>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<(u64, Event)>,
    mut stop: oneshot::Receiver<()>,
) {
    let timing = shared.timing;
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let instance = format!("{}-{:06x}", spec.function.name, fastrand::u32(..0x100_0000));
        let reason = match launch(&spec, &shared, &instance) {
            Err(e) => format!("could not start: {e}"),
            Ok(mut replica) => {
                let ready = tokio::select! {
                    _ = &mut stop => {
                        replica.stop(timing.stop_timeout).await;
                        return;
                    }
                    ready = replica.wait_ready(timing.startup_timeout) => ready,
                };
                match ready {
                    Err(reason) => {
                        replica.kill().await;
                        reason
                    }
                    Ok(()) => {
                        let endpoint = Arc::new(Endpoint::new(instance.clone(), replica.addr));
                        let _ = events.send((id, Event::Ready(endpoint)));
                        tracing::debug!(%instance, addr = %replica.addr, "replica ready");
                        let reason = tokio::select! {
                            _ = &mut stop => {
                                let _ = events.send((id, Event::Down));
                                replica.stop(timing.stop_timeout).await;
                                return;
                            }
                            reason = replica.watch(timing.health_interval) => reason,
                        };
                        let _ = events.send((id, Event::Down));
                        replica.kill().await;
                        reason
                    }
                }
            }
        };
        // A replica that ran for a while starts over with a short delay.
        if started.elapsed() > Duration::from_secs(10) {
            failures = 0;
        }
        let delay =
            Duration::from_millis(100).saturating_mul(1 << failures.min(7)).min(Duration::from_secs(10));
        failures = failures.saturating_add(1);
        tracing::warn!(function = %spec.function, %instance, %reason, retry_in = ?delay, "replica down");
        shared
            .log
            .push(&instance, &format!("ferrofaas: replica {instance} {reason}; restarting in {delay:?}"));
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// A started watchdog process.
struct Running {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

fn launch(spec: &ReplicaSpec, shared: &Shared, instance: &str) -> io::Result<Running> {
    let dir = spec.run_dir.join(instance);
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let secrets_dir = dir.join("secrets");
    shared.secrets.materialize(&spec.function.namespace, &spec.secrets, &secrets_dir)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let port = free_port()?.to_string();

    let mut cmd = Command::new(&spec.watchdog);
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
        .env("secret_mount_path", &secrets_dir)
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .current_dir(&spec.bundle_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let fd = listener.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec: the socket
    // goes to fd 3 (open across exec), and the replica is asked to stop if
    // the gateway dies.
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
        cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", spec.watchdog.display())))?;
    drop(listener);
    for out in
        [child.stdout.take().map(box_reader), child.stderr.take().map(box_reader)].into_iter().flatten()
    {
        let log = Arc::clone(&shared.log);
        let instance = instance.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.push(&instance, &line);
            }
        });
    }
    Ok(Running { child, addr, dir })
}

fn box_reader(
    r: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
    Box::new(r)
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Running {
    /// Polls `/_/ready` until it answers 200 (fast at first: cold starts
    /// count), the process exits, or `timeout` passes.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(1);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited during start-up ({status})"));
            }
            if probe(self.addr, "/_/ready").await == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("was not ready within {timeout:?}"));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// Returns why the replica stopped being usable: it exited, or failed
    /// three health checks in a row.
    async fn watch(&mut self, interval: Duration) -> String {
        let mut misses = 0;
        loop {
            tokio::select! {
                status = self.child.wait() => {
                    return match status {
                        Ok(status) => format!("exited ({status})"),
                        Err(e) => format!("was lost ({e})"),
                    };
                }
                () = tokio::time::sleep(interval) => {
                    if probe(self.addr, "/_/health").await == Some(200) {
                        misses = 0;
                    } else {
                        misses += 1;
                        if misses >= 3 {
                            return "failed 3 health checks".to_owned();
                        }
                    }
                }
            }
        }
    }

    /// SIGTERM (the watchdog drains), SIGKILL after `timeout`.
    async fn stop(mut self, timeout: Duration) {
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

    async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` on a replica: its status code, if it answers within a second.
async fn probe(addr: SocketAddr, path: &'static str) -> Option<u16> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: replica\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        // "HTTP/1.1 200" is all that is needed.
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.ok()?;
        std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), work).await.ok()?
}

/// Removes instance folders left by a previous run (replicas that were
/// killed with the gateway).
pub fn clean_run_dir(run_dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(run_dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %run_dir.display(), error = %e, "could not clean old replica folders");
    }
}
