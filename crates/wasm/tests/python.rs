//! A Python component built from the `python3-wasm` template with
//! componentize-py, served by the runtime: what an instance gets, what it
//! cannot reach, and how it is stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrofaas_wasm::{Failure, Runtime, RuntimeOptions, Settings};
use http_body_util::{BodyExt, Full};

/// The test handler: a path per thing an instance may or may not do.
const HANDLER: &str = include_str!("handler.py");

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/python3-wasm")
}

/// The component, built once per test run (componentize-py takes seconds).
fn component() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = BUILT.get_or_init(|| {
        ferrofaas_testkit::require(
            Command::new("componentize-py").arg("--version").output().is_ok_and(|o| o.status.success()),
            "componentize-py",
            "python3 -m pip install componentize-py==0.25.1",
        );
        let dir = tempfile::tempdir().unwrap();
        let copy = Command::new("cp").arg("-r").arg(template().join(".")).arg(dir.path()).status().unwrap();
        assert!(copy.success());
        std::fs::write(dir.path().join("function/handler.py"), HANDLER).unwrap();
        let out = Command::new("componentize-py")
            .args(["--quiet", "-d", "wit", "-w", "function", "componentize", "index", "-p", ".", "-o"])
            .arg("function.wasm")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "componentize-py: {}", String::from_utf8_lossy(&out.stderr));
        let path = dir.path().join("function.wasm");
        (dir, path)
    });
    path
}

fn request(method: &str, path: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "fn.local")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

async fn text(resp: http::Response<ferrofaas_wasm::ResponseBody>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
#[ignore = "needs componentize-py (python3 -m pip install componentize-py==0.25.1)"]
async fn a_python_component_serves_each_request_with_a_fresh_instance() {
    let wasm = component();
    let runtime = Runtime::new(RuntimeOptions { instances: 8, max_memory_bytes: 512 << 20 }).unwrap();

    // Precompiled once, then mapped: what replicas start from.
    let started = Instant::now();
    let compiled = runtime.precompile(&std::fs::read(wasm).unwrap()).unwrap();
    eprintln!("precompiled {} MB in {:?}", compiled.len() >> 20, started.elapsed());
    let cwasm = wasm.with_extension("cwasm");
    std::fs::write(&cwasm, &compiled).unwrap();
    let started = Instant::now();
    let component = runtime.load(&cwasm).unwrap();
    eprintln!("loaded the precompiled component in {:?}", started.elapsed());

    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("api-key"), "s3cret").unwrap();
    // Where the function tries to send a request: nothing may arrive.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let settings = Settings {
        env: vec![
            ("GREETING".into(), "hi".into()),
            ("TARGET".into(), target.local_addr().unwrap().to_string()),
        ],
        secrets: Some(secrets.path().to_owned()),
        memory_bytes: 128 << 20,
    };
    let function = runtime.function(&component, settings).unwrap();
    let timeout = Some(Duration::from_secs(5));

    let resp = function.handle(request("POST", "/echo?q=1", b"body"), timeout).await.unwrap();
    assert_eq!(resp.headers()["x-echo"], "POST");
    assert_eq!(text(resp).await, (201, "body hi q=1".into()));

    // A fresh instance each time: module state never carries over.
    for _ in 0..3 {
        let resp = function.handle(request("GET", "/count", b""), timeout).await.unwrap();
        assert_eq!(text(resp).await, (200, "1".into()));
    }
    let started = Instant::now();
    for _ in 0..20 {
        let resp = function.handle(request("GET", "/count", b""), timeout).await.unwrap();
        assert_eq!(text(resp).await.0, 200);
    }
    eprintln!("a request with a fresh instance: {:?}", started.elapsed() / 20);

    // Its secrets, read-only; nothing else of the host's files.
    let resp = function.handle(request("GET", "/secret", b""), timeout).await.unwrap();
    assert_eq!(text(resp).await, (200, "s3cret".into()));
    let resp = function.handle(request("GET", "/write", b""), timeout).await.unwrap();
    assert!(text(resp).await.1.starts_with("refused"));
    assert!(!secrets.path().join("new").exists());
    for path in ["/etc/passwd", "/proc/self/environ", "/var/openfaas/secrets/../../../etc/passwd"] {
        let uri = format!("/file?path={path}");
        let resp = function.handle(request("GET", &uri, b""), timeout).await.unwrap();
        let (_, body) = text(resp).await;
        assert!(body.starts_with("refused"), "{path}: {body}");
    }
    // The environment is the function's alone.
    let resp = function.handle(request("GET", "/env", b""), timeout).await.unwrap();
    assert_eq!(text(resp).await.1, "GREETING,TARGET");
    // No outgoing HTTP.
    let resp = function.handle(request("GET", "/outgoing", b""), timeout).await.unwrap();
    let (_, body) = text(resp).await;
    assert!(body.starts_with("refused"), "{body}");
    assert!(target.accept().is_err(), "a connection reached the host");

    // An exception is the handler's 500; the instance is not reused anyway.
    let resp = function.handle(request("GET", "/raise", b""), timeout).await.unwrap();
    assert_eq!(text(resp).await.0, 500);

    // Stopped at its deadline.
    let started = Instant::now();
    let failure = function.handle(request("GET", "/spin", b""), Some(Duration::from_millis(300))).await;
    assert!(matches!(failure, Err(Failure::Timeout(_))), "{:?}", failure.map(|_| ()));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "{took:?}");

    // Over its memory limit: the growth is refused, and Python raises
    // MemoryError (the template's 500) or the instance fails (named so);
    // the next request is fine.
    match function.handle(request("GET", "/memory?mb=200", b""), timeout).await {
        Ok(resp) => assert_eq!(text(resp).await.0, 500),
        Err(failure) => assert!(matches!(failure, Failure::OutOfMemory(_)), "{failure:?}"),
    }
    let resp = function.handle(request("GET", "/memory?mb=16", b""), timeout).await.unwrap();
    assert_eq!(text(resp).await, (200, (16u64 << 20).to_string()));
}

#[tokio::test]
#[ignore = "needs componentize-py (python3 -m pip install componentize-py==0.25.1)"]
async fn instance_slots_bound_the_requests_that_run_at_once() {
    let wasm = component();
    let runtime = Runtime::new(RuntimeOptions { instances: 2, max_memory_bytes: 256 << 20 }).unwrap();
    let component = runtime.load(wasm).unwrap();
    let settings = Settings { memory_bytes: 128 << 20, ..Settings::default() };
    let function = std::sync::Arc::new(runtime.function(&component, settings).unwrap());
    let spin = |f: std::sync::Arc<ferrofaas_wasm::Function>| async move {
        f.handle(request("GET", "/spin", b""), Some(Duration::from_millis(800))).await.map(|_| ())
    };
    let a = tokio::spawn(spin(function.clone()));
    let b = tokio::spawn(spin(function.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = function.handle(request("GET", "/count", b""), None).await;
    assert!(matches!(third, Err(Failure::Busy(2))), "{:?}", third.map(|_| ()));
    assert!(matches!(a.await.unwrap(), Err(Failure::Timeout(_))));
    assert!(matches!(b.await.unwrap(), Err(Failure::Timeout(_))));
    let resp = function.handle(request("GET", "/count", b""), None).await.unwrap();
    assert_eq!(text(resp).await, (200, "1".into()));
}
