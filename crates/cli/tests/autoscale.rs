//! Autoscaling end to end, on the process provider: replicas rise with the
//! load, fall to min when it stops and then to zero, and a request at zero
//! is answered after a cold start, which the metrics count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

async fn replicas(p: &Platform, name: &str) -> (u64, u64) {
    let r = p.api(Method::GET, &format!("/system/function/{name}"), "").await.json();
    (r["replicas"].as_u64().unwrap(), r["availableReplicas"].as_u64().unwrap())
}

/// The value of a metric line starting with `prefix`.
async fn metric(p: &Platform, prefix: &str) -> Option<f64> {
    let text = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_the_load_down_to_zero_and_back() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let spec = json!({
        "service": "busy",
        "image": format!("{}/wc", examples().display()),
        "envProcess": "sh -c 'sleep 0.05; cat'",
        "labels": {
            "com.openfaas.scale.min": "1",
            "com.openfaas.scale.max": "4",
            "com.openfaas.scale.type": "rps",
            "com.openfaas.scale.target": "5",
            "com.openfaas.scale.target-proportion": "1",
            "com.openfaas.scale.zero": "true",
            "com.openfaas.scale.zero-duration": "20s",
            "com.openfaas.scale.down.window": "2s",
        },
    });
    p.deploy(spec, 1).await;
    let text = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    assert!(
        text.contains(
            r#"gateway_service_target_load{function_name="busy.openfaas-fn",scaling_type="rps"} 5"#
        ),
        "{text}"
    );

    // Load: four callers back to back, about 60 requests a second.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (stop, addr) = (Arc::clone(&stop), p.addr);
        callers.push(tokio::spawn(async move {
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                if call(addr, Method::POST, "/function/busy", &[], "x").await.status != StatusCode::OK {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let rose = eventually(Duration::from_secs(30), async || replicas(&p, "busy").await.0 >= 3).await;
    let peak = replicas(&p, "busy").await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        assert_eq!(c.await.unwrap(), 0, "requests failed while scaling up");
    }
    assert!(rose, "replicas did not rise with the load: {peak:?}\n{}", p.logs());
    assert!(eventually(Duration::from_secs(10), async || replicas(&p, "busy").await.1 >= 3).await);
    assert!(
        metric(&p, r#"gateway_service_ready_count{function_name="busy.openfaas-fn"}"#).await.unwrap() >= 3.0
    );

    // Load gone: down to min (after the 10 s average and the 2 s window),
    // then, 20 s after the last request, to zero.
    let fell = eventually(Duration::from_secs(30), async || replicas(&p, "busy").await == (1, 1)).await;
    assert!(fell, "replicas did not fall to min: {:?}", replicas(&p, "busy").await);
    let zero = eventually(Duration::from_secs(30), async || replicas(&p, "busy").await == (0, 0)).await;
    assert!(zero, "replicas did not fall to zero: {:?}", replicas(&p, "busy").await);
    assert_eq!(
        metric(&p, r#"gateway_function_cold_starts_total{function_name="busy.openfaas-fn"}"#).await,
        Some(0.0)
    );

    // At zero: a burst of requests is held, one replica started, all answered.
    let mut burst = Vec::new();
    for i in 0..8 {
        let addr = p.addr;
        burst.push(tokio::spawn(async move {
            call(addr, Method::POST, "/function/busy", &[], &format!("r{i}")).await
        }));
    }
    for (i, r) in burst.into_iter().enumerate() {
        let r = r.await.unwrap();
        assert_eq!((r.status, r.body), (StatusCode::OK, format!("r{i}")));
    }
    assert_eq!(replicas(&p, "busy").await.0, 1, "one scale-up for the burst");
    assert_eq!(
        metric(&p, r#"gateway_function_cold_starts_total{function_name="busy.openfaas-fn"}"#).await,
        Some(1.0)
    );
    let waited =
        metric(&p, r#"gateway_function_cold_start_seconds_count{function_name="busy.openfaas-fn"}"#).await;
    assert!(waited.unwrap() >= 8.0, "every held request is in the histogram: {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_starts_gives_504_and_min_equal_max_is_left_alone() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--start-timeout", "2s"]);
    // An http-mode function whose server never comes up: never ready.
    let spec = json!({
        "service": "stuck",
        "image": format!("{}/wc", examples().display()),
        "envProcess": "sleep 600",
        "envVars": {"mode": "http", "upstream_url": "http://127.0.0.1:9"},
        "labels": {"com.openfaas.scale.min": "0"},
    });
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(replicas(&p, "stuck").await.0, 0, "min 0: deployed at zero");
    let r = p.invoke("/function/stuck", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(r.message().contains("none became ready within 2s"), "{}", r.body);
    assert_eq!(replicas(&p, "stuck").await.0, 1, "it was started");

    // min = max: scaled by hand, the autoscaler leaves it be.
    let spec = json!({
        "service": "fixed",
        "image": format!("{}/wc", examples().display()),
        "labels": {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "2"},
    });
    p.deploy(spec, 2).await;
    let r = p.api(Method::POST, "/system/scale-function/fixed", r#"{"replicas": 3}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(replicas(&p, "fixed").await.0, 3);

    // Bad scaling labels are refused with the label named.
    let spec = json!({"service": "bad", "image": format!("{}/wc", examples().display()),
        "labels": {"com.openfaas.scale.type": "memory"}});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("labels.com.openfaas.scale.type"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_webhooks_scale_as_openfaas() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--no-autoscale"]);
    let spec = json!({
        "service": "alerted",
        "image": format!("{}/wc", examples().display()),
        "labels": {"com.openfaas.scale.max": "10"},
    });
    p.deploy(spec, 1).await;
    let hook = |status: &str| {
        json!({"version": "4", "status": status, "receiver": "scale-up",
            "alerts": [{"status": status, "labels": {"alertname": "APIHighInvocationRate", "function_name": "alerted"}}]})
        .to_string()
    };
    let r = p.api(Method::POST, "/system/alert", &hook("firing")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()[0]["to"], 3, "1 + 20% of 10");
    p.wait_ready("alerted", 3).await;
    let r = p.api(Method::POST, "/system/alert", &hook("resolved")).await;
    assert_eq!(r.json()[0]["to"], 1);
    p.wait_ready("alerted", 1).await;
    let r = p.api(Method::POST, "/system/alert", r#"{"alerts": []}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(p.addr, Method::POST, "/system/alert", &[], &hook("firing")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "behind the API's auth");
}

/// OpenFaaS's conformance load on a function with only min 1 and max 2 (no
/// target: Community Edition's rule): two clients at 5 requests a second
/// each, a new connection per request. It gets its second replica within
/// the minute, and is back to one within a minute after the load stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_min_and_max_it_scales_as_openfaas_does() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let spec = json!({
        "service": "ce",
        "image": format!("{}/wc", examples().display()),
        "envProcess": "cat",
        "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "2"},
    });
    p.deploy(spec, 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, addr) = (Arc::clone(&stop), p.addr);
        clients.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(200));
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                if call(addr, Method::GET, "/function/ce", &[], "").await.status != StatusCode::OK {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let started = std::time::Instant::now();
    let up = eventually(Duration::from_secs(60), async || replicas(&p, "ce").await.0 == 2).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        assert_eq!(c.await.unwrap(), 0, "requests failed");
    }
    assert!(up, "still {:?} after a minute of 10 requests/s\n{}", replicas(&p, "ce").await, p.logs());
    eprintln!("scaled up after {took:?}");
    let started = std::time::Instant::now();
    let down = eventually(Duration::from_secs(60), async || replicas(&p, "ce").await.0 == 1).await;
    assert!(down, "still {:?} a minute after the load", replicas(&p, "ce").await);
    eprintln!("back to one after {:?}", started.elapsed());
}
