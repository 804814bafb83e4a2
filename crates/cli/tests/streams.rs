//! WebSockets and server-sent events to `/function/<name>`, through the real
//! gateway and the real watchdog (http mode) to a function's own server, on
//! the process provider (`docker.rs` and `swarm.rs` run the same checks on
//! theirs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use tokio_tungstenite::tungstenite::Message;

async fn deployed(p: &Platform) {
    let r = push_bundle(p, "streams:1", streams::bundle()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let labels = serde_json::json!({"com.openfaas.scale.factor": "0"});
    p.deploy(serde_json::json!({"service": "streams", "image": "streams:1", "labels": labels}), 1).await;
}

fn in_flight(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_function_invocation_inflight{") && l.contains("\"streams.openfaas-fn\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_server_sent_events_pass_through() {
    let state = tempfile::tempdir().unwrap();
    let p =
        Platform::start(&programs(), state.path(), &["-f", &format!("{}/stack.yml", examples().display())]);
    deployed(&p).await;
    streams::check(p.addr, "streams").await;
    // A fork-mode function cannot speak WebSocket: said so.
    p.wait_ready("wc", 1).await;
    streams::websocket_refused(p.addr, "wc").await;
    // Ordinary requests still work on the same function after all that.
    let r = call(p.addr, Method::GET, "/function/streams", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.starts_with("pid="), "{}", r.body);
}

/// Each open WebSocket is one invocation in flight until it closes (what
/// the least-loaded pick and the autoscaler see), and many are carried at
/// once, each its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_open_websocket_is_an_invocation_in_flight() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    deployed(&p).await;
    let url = format!("ws://{}/function/streams/ws", p.addr);
    let mut open = Vec::new();
    for _ in 0..20 {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        assert!(ws.next().await.unwrap().unwrap().to_text().unwrap().starts_with("hello"));
        open.push(ws);
    }
    for (i, ws) in open.iter_mut().enumerate() {
        ws.send(Message::text(format!("#{i}"))).await.unwrap();
    }
    for (i, ws) in open.iter_mut().enumerate() {
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("echo: #{i}")));
    }
    let metrics = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    assert_eq!(in_flight(&metrics), Some(20.0), "{metrics}");
    for mut ws in open.drain(..10) {
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    }
    // Dropped without a close: the connection is gone all the same.
    open.truncate(5);
    let settled = eventually(Duration::from_secs(10), async || {
        in_flight(&call(p.addr, Method::GET, "/metrics", &[], "").await.body) == Some(5.0)
    })
    .await;
    assert!(settled, "{}", call(p.addr, Method::GET, "/metrics", &[], "").await.body);
    drop(open);
    let settled = eventually(Duration::from_secs(10), async || {
        in_flight(&call(p.addr, Method::GET, "/metrics", &[], "").await.body) == Some(0.0)
    })
    .await;
    assert!(settled);
}
