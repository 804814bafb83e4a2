//! Start-up, configuration errors, listeners, the lock file and the shutdown
//! sequence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};

#[test]
fn configuration_errors_exit_2_and_name_the_variable() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(WATCHDOG);
        cmd.env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&[("fprocess", "cat"), ("mode", "bogus")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("mode=\"bogus\" is invalid"), "{err}");
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("fprocess is required in streaming mode"), "{err}");
    let (code, err) = run(&[("fprocess", "cat"), ("exec_timeout", "-1s")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("exec_timeout"), "{err}");
}

#[test]
fn version_and_help() {
    let out = Command::new(WATCHDOG).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("faas-watchdog "));
    let out = Command::new(WATCHDOG).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("exec_timeout"));
    let out = Command::new(WATCHDOG).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish() {
    let mut wd = Watchdog::start(&[("fprocess", "sh -c 'sleep 1; echo done'")]);
    let addr = wd.addr;
    let slow = tokio::spawn(async move { call(addr, Method::POST, "/", &[], "").await });
    assert!(
        eventually(Duration::from_secs(5), async || wd
            .get("/_/metrics")
            .await
            .body
            .contains("http_requests_in_flight 1"))
        .await
    );
    wd.signal(libc::SIGTERM);
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "done\n"));
    let status = tokio::task::block_in_place(|| wd.wait_exit(Duration::from_secs(5))).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after exit");
}

/// `faas-watchdog --ready`, the container health check, run beside a watchdog
/// with the same environment.
fn ready_probe(port: u16) -> (Option<i32>, String) {
    let out = Command::new(WATCHDOG)
        .arg("--ready")
        .env_clear()
        .env("fprocess", "cat")
        .env("port", port.to_string())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_announcing_shutdown_it_serves_but_is_not_ready() {
    let mut wd = Watchdog::start(&[("fprocess", "cat"), ("healthcheck_interval", "1s")]);
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::OK);
    assert_eq!(ready_probe(wd.addr.port()).0, Some(0), "the probe sees it ready");
    let started = Instant::now();
    wd.signal(libc::SIGTERM);
    assert!(
        eventually(Duration::from_secs(2), async || wd.get("/_/ready").await.status
            == StatusCode::SERVICE_UNAVAILABLE)
        .await
    );
    assert_eq!(wd.get("/_/health").await.status, StatusCode::OK);
    assert_eq!(wd.post("/", "still served").await.body, "still served");
    let (code, err) = ready_probe(wd.addr.port());
    assert_eq!(code, Some(1), "the probe sees it draining");
    assert!(err.contains("503"), "{err}");
    let port = wd.addr.port();
    let status = tokio::task::block_in_place(|| wd.wait_exit(Duration::from_secs(5))).expect("exited");
    assert!(status.success());
    assert!(started.elapsed() >= Duration::from_millis(900), "left before healthcheck_interval");
    let (code, err) = ready_probe(port);
    assert_eq!(code, Some(1), "nothing listens any more");
    assert!(err.contains("not ready"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_bounds_the_drain() {
    let mut wd =
        Watchdog::start(&[("fprocess", "sleep 10"), ("exec_timeout", "30s"), ("write_timeout", "500ms")]);
    let addr = wd.addr;
    let slow = tokio::spawn(async move {
        let req =
            http::Request::post("/").header("host", "x").body(http_body_util::Empty::<bytes::Bytes>::new());
        send(addr, req.unwrap()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    wd.signal(libc::SIGTERM);
    let status = tokio::task::block_in_place(|| wd.wait_exit(Duration::from_secs(5))).expect("exited");
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(slow.await.unwrap().is_err(), "the unfinished request cannot have succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_skips_the_announcement() {
    let mut wd = Watchdog::start(&[("fprocess", "cat"), ("healthcheck_interval", "30s")]);
    let started = Instant::now();
    wd.signal(libc::SIGINT);
    assert!(tokio::task::block_in_place(|| wd.wait_exit(Duration::from_secs(5))).is_some());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_file_marks_readiness_per_replica() {
    let mut wd = Watchdog::start(&[("fprocess", "cat")]);
    let lock = wd.path(".lock");
    assert!(lock.exists(), "no lock file in the replica's TMPDIR");
    wd.signal(libc::SIGTERM);
    assert!(tokio::task::block_in_place(|| wd.wait_exit(Duration::from_secs(5))).is_some());
    assert!(!lock.exists(), "lock file left behind");

    let wd = Watchdog::start(&[("fprocess", "cat"), ("suppress_lock", "true")]);
    assert!(!wd.path(".lock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_socket_can_be_handed_over() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(WATCHDOG);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "fprocess",
            "sh -c 'echo ${LISTEN_FDS:-none}; [ -e /proc/$$/fd/3 ] && echo fd3-open || echo fd3-closed'",
        )
        .env("TMPDIR", dir.path())
        .env("LISTEN_FDS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; they put the listener at
    // fd 3 in the child, open across exec (dup2 onto itself keeps CLOEXEC).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let wd = Watchdog::launch(cmd, dir);
    drop(listener);
    assert_eq!(wd.addr.port(), port);
    // The function inherits neither the variable nor the socket.
    assert_eq!(wd.post("/", "").await.body, "none\nfd3-closed\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_their_own_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let wd = Watchdog::start(&[("fprocess", "cat"), ("metrics_port", &port.to_string())]);
    assert_eq!(wd.post("/", "x").await.status, StatusCode::OK);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = call(addr, Method::GET, "/metrics", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("http_requests_total{code=\"200\",method=\"post\"} 1"), "{}", r.body);
    assert_eq!(call(addr, Method::GET, "/", &[], "").await.status, StatusCode::NOT_FOUND);
}
