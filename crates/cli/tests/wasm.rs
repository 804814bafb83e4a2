//! WebAssembly functions on the embedded default, as a user makes them:
//! `faas new --lang python3-wasm` (and `node-wasm`), `faas up`, `faas
//! invoke`; then what a
//! replica's instances get (a fresh instance per request, their secrets),
//! what they cannot reach, and how they are stopped (exec_timeout, their
//! memory limit). A bundle whose component is not one is refused at deploy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferrofaas_testkit::platform::{push_bundle, tar};
use http::{Method, StatusCode};

/// The handler of the library's tests (a path per thing to try).
const HANDLER: &str = include_str!("../../wasm/tests/handler.py");

fn require_componentize_py() {
    let present = std::process::Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require(present, "componentize-py", "python3 -m pip install componentize-py==0.25.1 (.ci/run does)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs componentize-py (python3 -m pip install componentize-py==0.25.1)"]
async fn a_python_wasm_function_runs_each_request_in_a_fresh_sandboxed_instance() {
    require_componentize_py();
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let dir = work.path();

    let out = faas_ok(dir, Some(&p), &["new", "pywasm", "--lang", "python3-wasm"], None);
    assert!(out.contains("Function pywasm created"), "{out}");
    std::fs::write(dir.join("pywasm/handler.py"), HANDLER).unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
    let stack = stack.replace(
        "    image: pywasm:latest\n",
        "    image: pywasm:latest\n    secrets:\n      - api-key\n    environment:\n      exec_timeout: 1s\n    limits:\n      memory: 64Mi\n",
    );
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
    faas_ok(dir, Some(&p), &["secret", "create", "api-key", "--from-literal", "s3cret"], None);

    let out = faas_ok(dir, Some(&p), &["up"], None);
    assert!(out.contains("Deployed pywasm"), "{out}");
    p.wait_ready("pywasm", 1).await;
    assert_eq!(faas_ok(dir, Some(&p), &["invoke", "pywasm"], Some("Ada")), "Hello, Ada");

    // A fresh instance for every request: module state never carries over.
    for _ in 0..3 {
        let r = p.invoke("/function/pywasm/count", "").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "1"));
    }
    // Its secret, and none of the host's files.
    let r = p.invoke("/function/pywasm/secret", "").await;
    assert_eq!(r.body, "s3cret");
    for path in ["/etc/passwd", "/proc/self/environ", "/home/app/bundle.json"] {
        let r = p.invoke(&format!("/function/pywasm/file?path={path}"), "").await;
        assert!(r.body.starts_with("refused"), "{path}: {}", r.body);
    }

    // Stopped at exec_timeout: a clean 504, and the replica goes on.
    let started = Instant::now();
    let r = p.invoke("/function/pywasm/spin", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Over its memory limit (64Mi for each instance): a clean 500.
    let r = p.invoke("/function/pywasm/memory?mb=100", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let r = p.invoke("/function/pywasm/memory?mb=8", "").await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, (8u64 << 20).to_string()));
    let r = p.invoke("/function/pywasm/count", "").await;
    assert_eq!(r.body, "1");

    // The replica started from the component compiled at deploy.
    let logs = faas_ok(dir, Some(&p), &["logs", "pywasm"], None);
    assert!(logs.contains("component loaded"), "{logs}");
    assert!(!logs.contains("compiling the component"), "{logs}");

    // Scaled to zero and back: the first request after idle is answered.
    let r = p.api(Method::POST, "/system/scale-function/pywasm", r#"{"replicas":0}"#).await;
    assert!(r.status.is_success(), "{}", r.body);
    p.wait_ready("pywasm", 0).await;
    let r = p.invoke("/function/pywasm/count", "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "1"));
}

fn require_componentize_js() {
    let present = std::process::Command::new("componentize-js")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        present,
        "componentize-js",
        "npm install -g @bytecodealliance/componentize-js@0.23.0 (.ci/run does)",
    );
}

/// The node-wasm template's function: the same checks as Python's, from
/// JavaScript (StarlingMonkey), its secret read through the preopened
/// folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs componentize-js (npm install -g @bytecodealliance/componentize-js@0.23.0)"]
async fn a_javascript_wasm_function_runs_each_request_in_a_fresh_sandboxed_instance() {
    require_componentize_js();
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let dir = work.path();

    let out = faas_ok(dir, Some(&p), &["new", "jswasm", "--lang", "node-wasm"], None);
    assert!(out.contains("Function jswasm created"), "{out}");
    // The sample as it ships, then the test's handler.
    let out = faas_ok(dir, Some(&p), &["up"], None);
    assert!(out.contains("Deployed jswasm"), "{out}");
    p.wait_ready("jswasm", 1).await;
    assert_eq!(
        faas_ok(dir, Some(&p), &["invoke", "jswasm"], Some("Ada")),
        "Hello, Ada, from JavaScript in WebAssembly!\n"
    );

    std::fs::write(dir.join("jswasm/handler.js"), include_str!("handler.node-wasm.js")).unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
    let stack = stack.replace(
        "    image: jswasm:latest\n",
        "    image: jswasm:latest\n    secrets:\n      - api-key\n    environment:\n      exec_timeout: 1s\n      GREETING: hi\n    limits:\n      memory: 64Mi\n",
    );
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
    faas_ok(dir, Some(&p), &["secret", "create", "api-key", "--from-literal", "s3cret"], None);
    let out = faas_ok(dir, Some(&p), &["up"], None);
    assert!(out.contains("Deployed jswasm"), "{out}");
    p.wait_ready("jswasm", 1).await;
    let started = Instant::now();
    loop {
        let r = p.invoke("/function/jswasm/count", "").await;
        if r.body == "1" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the new handler never answered: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A fresh instance for every request.
    for _ in 0..3 {
        let r = p.invoke("/function/jswasm/count", "").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "1"));
    }
    let r = p.invoke("/function/jswasm/json?a=1", "Ada").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!({"got": "Ada", "query": {"a": "1"}}));
    assert_eq!(p.invoke("/function/jswasm/env", "").await.body, "hi");
    // Its secret, and none of the host's files.
    assert_eq!(p.invoke("/function/jswasm/secret", "").await.body, "s3cret");
    for path in ["/etc/passwd", "/var/openfaas/secrets/../../../etc/passwd", "/home/app/bundle.json"] {
        let r = p.invoke(&format!("/function/jswasm/file?path={path}"), "").await;
        assert!(r.body.starts_with("refused"), "{path}: {}", r.body);
    }
    // A handler's failure, exec_timeout and the memory limit: clean 5xx.
    let r = p.invoke("/function/jswasm/fail", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let started = Instant::now();
    let r = p.invoke("/function/jswasm/spin", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let r = p.invoke("/function/jswasm/memory?mb=100", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let r = p.invoke("/function/jswasm/memory?mb=8", "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "8"));
    assert_eq!(p.invoke("/function/jswasm/count", "").await.body, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_whose_component_is_not_one_is_refused_at_deploy() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let manifest = r#"{"env": {"mode": "wasm", "fprocess": "function.wasm"}}"#;
    let cases = [
        ("garbage", vec![("bundle.json", manifest, 0o644), ("function.wasm", "not wasm at all", 0o644)]),
        // A core module, not a component.
        ("core", vec![("bundle.json", manifest, 0o644), ("function.wasm", "\0asm\x01\0\0\0", 0o644)]),
        ("missing", vec![("bundle.json", manifest, 0o644)]),
        (
            "escape",
            vec![(
                "bundle.json",
                r#"{"env": {"mode": "wasm", "fprocess": "../../../../etc/passwd"}}"#,
                0o644,
            )],
        ),
    ];
    for (name, files) in cases {
        let r = push_bundle(&p, &format!("{name}:latest"), tar(&files)).await;
        assert!(r.status.is_success(), "{name}: {}", r.body);
        let spec = serde_json::json!({ "service": name, "image": format!("{name}:latest") });
        let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.body);
        let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("wasm") || message.contains("WebAssembly"), "{name}: {message}");
        let r = p.api(Method::GET, &format!("/system/function/{name}"), "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name} was stored: {}", r.body);
    }
}
