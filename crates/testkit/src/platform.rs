//! The end-to-end harness: the real `faas serve` (gateway, process
//! provider, real `faas-watchdog` replicas, sandboxed when the machine
//! allows) on 127.0.0.1:0 with its own state folder, started, watched and
//! stopped as a user would; and what tests do to it (push a bundle, load it,
//! record what a function reports).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use crate::{Reply, call, eventually, read, send};

/// The workspace this kit belongs to.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The example functions of the workspace.
pub fn examples() -> PathBuf {
    workspace().join("examples")
}

/// A program of the workspace next to `faas`, built (or brought up to
/// date) once per test run: `cargo test` builds only the binaries of the
/// package under test.
fn beside(faas: &Path, program: &str, package: &str, build: &Once) -> PathBuf {
    let path = faas.with_file_name(program);
    build.call_once(|| {
        let profile_release = faas.parent().is_some_and(|p| p.ends_with("release"));
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", package]);
        if profile_release {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("cargo build").success(), "building {program}");
    });
    path
}

/// A TCP server on 127.0.0.1 that appends what each connection sends to
/// `path`: how a sandboxed function reports to a test. Its port.
pub fn record_lines(path: &Path) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let file =
        Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                let mut text = String::new();
                if stream.read_to_string(&mut text).is_ok() && !text.is_empty() {
                    let _ = file.lock().unwrap().write_all(text.as_bytes());
                }
            });
        }
    });
    port
}

/// The programs a platform runs.
pub struct Programs {
    pub faas: PathBuf,
    pub watchdog: PathBuf,
    pub sandbox: PathBuf,
}

impl Programs {
    /// `faas` as cargo built it for the test that asks (its
    /// `CARGO_BIN_EXE_faas`), with the watchdog and the sandbox beside it,
    /// built or brought up to date once per test run (`cargo test` builds
    /// only the binaries of the package under test).
    pub fn beside(faas: &Path) -> Programs {
        static WATCHDOG: Once = Once::new();
        static SANDBOX: Once = Once::new();
        Programs {
            faas: faas.to_path_buf(),
            watchdog: beside(faas, "faas-watchdog", "faas-watchdog", &WATCHDOG),
            sandbox: beside(faas, "faas-sandbox", "ferrofaas-sandbox", &SANDBOX),
        }
    }

    /// Copies of them in `dir`, which anyone may enter: for a platform run
    /// by another user, who may not reach the build folder.
    pub fn copied_to(&self, dir: &Path) -> Programs {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = |from: &Path| {
            let to = dir.join(from.file_name().unwrap());
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
            to
        };
        Programs { faas: copy(&self.faas), watchdog: copy(&self.watchdog), sandbox: copy(&self.sandbox) }
    }
}

pub struct Platform {
    child: Child,
    pub addr: SocketAddr,
    pub state: PathBuf,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    pub auth: Option<String>,
}

impl Platform {
    /// `faas serve` of `programs` on a free port with `state` and extra
    /// arguments.
    pub fn start(programs: &Programs, state: &Path, extra: &[&str]) -> Platform {
        Platform::start_as(programs, state, extra, &[])
    }

    /// The same with `programs`, started through `wrapper` (a program and
    /// its arguments, such as `setpriv` to run it as another user).
    pub fn start_as(programs: &Programs, state: &Path, extra: &[&str], wrapper: &[&str]) -> Platform {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&programs.faas);
                cmd
            }
            None => Command::new(&programs.faas),
        };
        cmd.args(["serve", "--port", "0", "--state"])
            .arg(state)
            .arg("--watchdog")
            .arg(&programs.watchdog)
            // The tests' functions are folders: bundles they write in
            // temporary folders, and the examples (for a platform run as
            // another user, the build folder may be private).
            .arg("--image-root")
            .arg(std::env::temp_dir())
            .args(if wrapper.is_empty() { vec!["--image-root".into(), examples()] } else { Vec::new() })
            .args(extra)
            .env("FAAS_SANDBOX", &programs.sandbox)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start faas serve");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let log = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("ferrofaas gateway listening on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let err = child.stderr.take().unwrap();
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("faas serve did not start:\n{}\n{}", stdout.lock().unwrap(), stderr.lock().unwrap());
            }
        };
        let auth = std::fs::read(state.join("credentials.json")).ok().map(|bytes| {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let raw = format!("{}:{}", v["username"].as_str().unwrap(), v["password"].as_str().unwrap());
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()))
        });
        Platform { child, addr, state: state.to_path_buf(), stdout, stderr, auth }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        format!("{}\n{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }

    /// SIGKILL: the platform dies at once, with no chance to tidy up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: the platform stops its replicas.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "faas serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A call to the API with the admin credentials (a body is JSON).
    pub async fn api(&self, method: Method, path: &str, body: &str) -> Reply {
        let auth = self.auth.clone().expect("credentials");
        let mut headers = vec![("authorization", auth.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        call(self.addr, method, path, &headers, body).await
    }

    /// Deploys and waits until the function has `ready` replicas.
    pub async fn deploy(&self, spec: serde_json::Value, ready: u64) {
        let name = spec["service"].as_str().unwrap().to_owned();
        let r = self.api(Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "deploy {name}: {}", r.body);
        self.wait_ready(&name, ready).await;
    }

    pub async fn wait_ready(&self, name: &str, ready: u64) {
        let ok = eventually(Duration::from_secs(30), async || {
            let r = self.api(Method::GET, &format!("/system/function/{name}"), "").await;
            r.status == StatusCode::OK && r.json()["availableReplicas"].as_u64() == Some(ready)
        })
        .await;
        assert!(ok, "{name} never had {ready} ready replicas:\n{}", self.logs());
    }

    pub async fn invoke(&self, path: &str, body: &str) -> Reply {
        call(self.addr, Method::POST, path, &[], body).await
    }

    /// Pids of this platform's replica watchdogs for a function: sandboxed,
    /// a watchdog's sandbox (two processes up) names the function's folder
    /// of instances; unsandboxed, its own `$TMPDIR` is in it.
    pub fn replica_pids(&self, function: &str) -> Vec<i32> {
        let run = self.state.join("run/openfaas-fn").join(function);
        let needle = format!("{}/", run.display());
        let parent = |pid: i32| -> Option<i32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
        };
        let cmdline = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            if !cmdline(pid).contains("faas-watchdog") {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let unsandboxed =
                environ.split(|&b| b == 0).any(|kv| kv.starts_with(format!("TMPDIR={needle}").as_bytes()));
            let sandboxed = parent(pid).and_then(parent).is_some_and(|h| {
                let c = cmdline(h);
                c.contains("faas-sandbox") && c.contains(&needle)
            });
            if unsandboxed || sandboxed {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: as above.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tar archive of `files`, as `POST /system/bundles` takes it.
pub fn tar(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar archive of one file `path` of `len` copies of `byte`: a large
/// upload made cheaply.
pub fn tar_filled(path: &str, len: u64, byte: u8) -> Vec<u8> {
    use std::io::Read;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, path, std::io::repeat(byte).take(len)).unwrap();
    b.into_inner().unwrap()
}

/// Pushes raw bytes as a bundle.
pub async fn push_bundle(p: &Platform, image: &str, archive: Vec<u8>) -> Reply {
    push_bundle_to(p.addr, p.auth.as_deref().unwrap(), image, archive).await
}

/// Pushes raw bytes as a bundle to the gateway at `addr`.
pub async fn push_bundle_to(addr: SocketAddr, auth: &str, image: &str, archive: Vec<u8>) -> Reply {
    let req = Request::post(format!("/system/bundles?image={image}"))
        .header("host", "x")
        .header("authorization", auth)
        .body(Full::new(Bytes::from(archive)))
        .unwrap();
    read(send(addr, req).await.unwrap()).await
}

/// The commit this checkout is at, if it is a git checkout (what
/// `/system/info` must name).
pub fn git_head() -> Option<String> {
    Command::new("git")
        .arg("-C")
        .arg(workspace())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Requests sent one after another (two at a time) while `during` runs;
/// returns the statuses seen.
pub async fn under_load(
    addr: std::net::SocketAddr,
    path: &'static str,
    during: impl std::future::Future<Output = ()>,
) -> Vec<u16> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let stop = std::sync::Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                codes.push(call(addr, Method::POST, path, &[], "x").await.status.as_u16());
            }
            codes
        }));
    }
    during.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all
}
