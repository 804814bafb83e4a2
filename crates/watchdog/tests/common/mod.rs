//! Test harness: the real `faas-watchdog` binary started on 127.0.0.1:0, its
//! log captured, and a small HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use ferrofaas_testkit::*;

use http::Method;

pub const WATCHDOG: &str = env!("CARGO_BIN_EXE_faas-watchdog");

/// `python3` without the pyenv shim that may be first on PATH (it adds ~90 ms).
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

pub struct Watchdog {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The threads copying its stdout and stderr into `log`.
    readers: Vec<std::thread::JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl Watchdog {
    /// Starts the watchdog with `env` (on top of a port of 0, loopback, a
    /// private TMPDIR and no shutdown announcement) and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Watchdog {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(WATCHDOG);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("port", "0")
            .env("listen_address", "127.0.0.1")
            .env("TMPDIR", dir.path())
            .env("healthcheck_interval", "0s")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::launch(cmd, dir)
    }

    /// Starts a prepared command and waits for its "listening" line.
    pub fn launch(mut cmd: Command, dir: tempfile::TempDir) -> Watchdog {
        let mut child = cmd.spawn().expect("start faas-watchdog");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let log = Arc::clone(&log);
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.split("address=").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = tx.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }));
        }
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("watchdog did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Watchdog { child, addr, log, readers, dir }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be in the pipes: read to their
                // end (a child of its that kept them open: not for long).
                let drained = Instant::now() + Duration::from_secs(2);
                while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn get(&self, path: &str) -> Reply {
        call(self.addr, Method::GET, path, &[], "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        call(self.addr, Method::POST, path, &[], body).await
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
