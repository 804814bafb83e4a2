//! `/function/<name>`: routing, streaming, headers, balancing and failures,
//! through the real gateway to real replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Channel};
use serde_json::json;

fn wc_dir() -> String {
    format!("{}/wc", examples().display())
}

/// A fork-mode function running `fprocess`, from the wc example's folder.
/// A fork-mode function, scaled by hand only (the tests load some of them
/// fast; factor 0 keeps the autoscaler's default rule out).
fn fork(name: &str, fprocess: &str, env: serde_json::Value) -> serde_json::Value {
    let labels = json!({"com.openfaas.scale.factor": "0"});
    json!({ "service": name, "image": wc_dir(), "envProcess": fprocess, "envVars": env, "labels": labels })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_name_and_namespace_with_paths_and_queries() {
    let state = tempfile::tempdir().unwrap();
    let p =
        Platform::start(&programs(), state.path(), &["-f", &format!("{}/stack.yml", examples().display())]);
    p.wait_ready("wc", 1).await;
    p.wait_ready("hello-python", 1).await;

    let r = p.invoke("/function/wc", "one two three").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.split_whitespace().collect::<Vec<_>>(), ["0", "3", "13"]);
    assert_eq!(p.invoke("/function/wc.openfaas-fn", "x").await.status, StatusCode::OK);

    let r =
        call(p.addr, Method::GET, "/function/hello-python.openfaas-fn/some/path?q=1&r=two", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!((v["method"].as_str(), v["path"].as_str()), (Some("GET"), Some("/some/path?q=1&r=two")));
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let r = call(p.addr, method.clone(), "/function/hello-python", &[], "Ada").await;
        assert_eq!(r.json()["method"], method.as_str());
    }

    let r = p.invoke("/function/nope", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.message().contains("nope"), "{}", r.body);
    let r = p.invoke("/function/wc.other-ns", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for tricky in
        ["/function/../system/functions", "/function/%2e%2e/system/functions", "/function/", "/function/WC"]
    {
        let r = call(p.addr, Method::GET, tricky, &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{tricky}: {r:?}");
        r.message();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_ids_and_start_times() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.deploy(
        fork("env", "sh -c 'echo \"$Http_X_Call_Id|$Http_X_Start_Time|$Http_X_Forwarded_For\"'", json!({})),
        1,
    )
    .await;

    let r = p.invoke("/function/env", "").await;
    let echoed = r.header("x-call-id").expect("X-Call-Id on the response").to_owned();
    assert_eq!(echoed.len(), 36, "a UUID: {echoed}");
    let seen: Vec<&str> = r.body.trim().split('|').collect();
    assert_eq!(seen[0], echoed, "the function sees the id the client gets");
    let start: u128 = seen[1].parse().expect("X-Start-Time in nanoseconds");
    assert!(start > 1_700_000_000_000_000_000);
    assert_eq!(seen[2], "127.0.0.1");

    let r = call(p.addr, Method::POST, "/function/env", &[("x-call-id", "mine-123")], "").await;
    assert_eq!(r.header("x-call-id"), Some("mine-123"));
    assert!(r.body.starts_with("mine-123|"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_through_the_gateway() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.deploy(fork("cat", "cat", json!({})), 1).await;
    let (mut tx, body) = Channel::<Bytes>::new(1);
    let req = Request::post("/function/cat").header("host", "x").body(body).unwrap();
    let pending = tokio::spawn(send(p.addr, req));
    tx.send_data(Bytes::from_static(b"first\n")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("head before the body ended")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first\n");
    tx.send_data(Bytes::from_static(b"second\n")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap().unwrap().unwrap();
    assert_eq!(second.into_data().unwrap(), "second\n");
    drop(tx);
    assert!(body.collect().await.unwrap().to_bytes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_over_ready_replicas() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    // Each replica has a host name of its own: the function prints it.
    p.deploy(fork("who", "sh -c 'sleep 0.05; hostname'", json!({})), 1).await;
    let r = p.api(Method::POST, "/system/scale-function/who", r#"{"serviceName":"who","replicas":3}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    p.wait_ready("who", 3).await;
    let mut calls = Vec::new();
    for _ in 0..12 {
        let addr = p.addr;
        calls.push(tokio::spawn(async move { call(addr, Method::POST, "/function/who", &[], "").await }));
    }
    let mut seen = HashSet::new();
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        seen.insert(r.body.trim().to_owned());
    }
    assert_eq!(seen.len(), 3, "all three replicas served: {seen:?}");

    // Scaled down, the extra replicas stop.
    let r = p.api(Method::POST, "/system/scale-function/who", r#"{"serviceName":"who","replicas":1}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    p.wait_ready("who", 1).await;
    assert!(eventually(Duration::from_secs(10), async || p.replica_pids("who").len() == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_is_replaced() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.deploy(fork("work", "sh -c 'sleep 0.02; echo ok'", json!({})), 1).await;
    let r =
        p.api(Method::POST, "/system/scale-function/work", r#"{"serviceName":"work","replicas":2}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    p.wait_ready("work", 2).await;

    let addr = p.addr;
    let load = tokio::spawn(async move {
        let mut codes = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let r = call(addr, Method::POST, "/function/work", &[], "").await;
            if r.status != StatusCode::OK {
                r.message();
            }
            codes.push(r.status.as_u16());
        }
        codes
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victims = p.replica_pids("work");
    assert_eq!(victims.len(), 2);
    // SAFETY: kill(2) on a replica this test started.
    unsafe {
        libc::kill(victims[0], libc::SIGKILL);
    }
    let codes = load.await.unwrap();
    let ok = codes.iter().filter(|&&c| c == 200).count();
    let failed: Vec<_> = codes.iter().filter(|&&c| c != 200).collect();
    assert!(failed.iter().all(|&&c| c == 502 || c == 503), "only gateway errors: {failed:?}");
    assert!(ok > codes.len() * 9 / 10, "{ok} of {} succeeded", codes.len());

    p.wait_ready("work", 2).await;
    let pids = p.replica_pids("work");
    assert_eq!(pids.len(), 2);
    assert!(!pids.contains(&victims[0]), "the killed replica was replaced");
    let r = p.api(Method::GET, "/system/logs?name=work&tail=-1", "").await;
    assert!(r.body.contains("restarting in"), "the restart is in the function's logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_missing_replicas_are_clear_errors() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--upstream-timeout", "1s"]);
    // The watchdog's own limit: 504 from the replica.
    p.deploy(fork("slow", "sleep 5", json!({"exec_timeout": "300ms"})), 1).await;
    let r = p.invoke("/function/slow", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.message().contains("exec_timeout"), "{}", r.body);
    // The gateway's limit: 504 from the gateway.
    p.deploy(fork("slower", "sleep 5", json!({"exec_timeout": "0"})), 1).await;
    let started = Instant::now();
    let r = p.invoke("/function/slower", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.message().contains("did not answer within"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(3));
    // No replica at all: the request starts one (and its watchdog answers).
    let r =
        p.api(Method::POST, "/system/scale-function/slow", r#"{"serviceName":"slow","replicas":0}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    p.wait_ready("slow", 0).await;
    let r = p.invoke("/function/slow", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.message().contains("exec_timeout"), "answered by a new replica: {}", r.body);
    p.wait_ready("slow", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_openfaas_names() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.deploy(fork("m", "cat", json!({})), 1).await;
    for _ in 0..3 {
        assert_eq!(p.invoke("/function/m", "x").await.status, StatusCode::OK);
    }
    let r = call(p.addr, Method::GET, "/metrics", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    for want in [
        "gateway_function_invocation_total{code=\"200\",function_name=\"m.openfaas-fn\"} 3\n",
        "gateway_functions_seconds_count{code=\"200\",function_name=\"m.openfaas-fn\"} 3\n",
        "gateway_function_invocation_started{function_name=\"m.openfaas-fn\"} 3\n",
        "gateway_service_count{function_name=\"m.openfaas-fn\"} 1\n",
        "# TYPE gateway_functions_seconds histogram\n",
    ] {
        assert!(r.body.contains(want), "missing {want:?} in\n{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_new_lines() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.deploy(fork("talk", "sh -c 'echo said-$(cat) >&2; echo done'", json!({})), 1).await;
    let req = Request::get("/system/logs?name=talk&follow=true&tail=0")
        .header("host", "x")
        .header("authorization", p.auth.clone().unwrap())
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send(p.addr, req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    assert_eq!(p.invoke("/function/talk", "hello-logs").await.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains("said-hello-logs") {
        assert!(Instant::now() < deadline, "line never arrived: {text}");
        let frame =
            tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
    }
    let line = text.lines().find(|l| l.contains("said-hello-logs")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["name"], "talk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_starting_replica() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    // An http-mode function whose server takes a while to listen.
    let spec = json!({
        "service": "slow-start",
        "image": format!("{}/hello-python", examples().display()),
        "envProcess": "sh -c 'sleep 1; exec python3 index.py'",
    });
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let started = Instant::now();
    let r = p.invoke("/function/slow-start", "early bird").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("early bird"));
    assert!(started.elapsed() >= Duration::from_millis(900), "it really waited for the start");
}
