//! WebSockets and server-sent events through the gateway and the watchdog's
//! http mode, the same checks on every provider: a function built from
//! `streams.py` (Python's standard library only).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::*;

pub const SERVER: &str = include_str!("streams.py");

/// The bundle of the streams function (`python3-http` runtime: on Docker
/// and Swarm, the Python base image).
pub fn bundle() -> Vec<u8> {
    let manifest = serde_json::json!({
        "runtime": "python3-http",
        "env": {
            "fprocess": "python3 streams.py",
            "mode": "http",
            "upstream_url": "http://127.0.0.1:${PORT}",
            "exec_timeout": "30s",
        },
    })
    .to_string();
    tar(&[("bundle.json", &manifest, 0o644), ("streams.py", SERVER, 0o644)])
}

/// The same server as a container's own process, with no watchdog in
/// front (an image anyone may deploy on Docker or Swarm): whatever it
/// answers reaches the gateway as it is.
pub fn bare_bundle() -> Vec<u8> {
    let dockerfile = "FROM ferrofaas-base/python3:bookworm\nCOPY bundle/streams.py /home/app/streams.py\n\
                      WORKDIR /home/app\nENV PORT=8080 BIND=0.0.0.0 fprocess=none\nUSER 1000:1000\n\
                      EXPOSE 8080\nCMD [\"python3\", \"streams.py\"]\n";
    tar(&[("Dockerfile", dockerfile, 0o644), ("streams.py", SERVER, 0o644)])
}

const STEP: Duration = Duration::from_secs(10);

async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Message {
    match tokio::time::timeout(STEP, ws.next()).await {
        Ok(Some(Ok(message))) => message,
        other => panic!("no WebSocket message within {STEP:?}: {other:?}"),
    }
}

/// A WebSocket to `/function/<function>/ws` stays open both ways: the
/// function speaks first, then echoes text, reverses a large binary
/// message, answers a ping, and closes cleanly.
pub async fn websocket_both_ways(addr: SocketAddr, function: &str) {
    let url = format!("ws://{addr}/function/{function}/ws");
    let (mut ws, resp) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("handshake in time")
        .expect("handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(resp.headers().contains_key("x-call-id"), "{:?}", resp.headers());
    let hello = next_message(&mut ws).await;
    assert!(hello.to_text().unwrap().starts_with("hello from "), "{hello:?}");
    for i in 0..20 {
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text(format!("echo: ping {i}")));
    }
    let big: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    let reversed: Vec<u8> = big.iter().rev().copied().collect();
    assert_eq!(next_message(&mut ws).await, Message::binary(reversed));
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::Pong(b"are you there".to_vec().into()));
    ws.close(None).await.unwrap();
    assert!(matches!(next_message(&mut ws).await, Message::Close(_)));
    assert!(matches!(tokio::time::timeout(STEP, ws.next()).await, Ok(None | Some(Err(_)))));
}

/// An upgraded connection lasts at most the function's `exec_timeout`
/// (here lowered to 1 s by `X-Timeout`), and the gateway lets it go then.
pub async fn websocket_ends_at_exec_timeout(addr: SocketAddr, function: &str) {
    let mut req = format!("ws://{addr}/function/{function}/ws").into_client_request().unwrap();
    req.headers_mut().insert("x-timeout", "1s".parse().unwrap());
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("handshake");
    next_message(&mut ws).await;
    let end = tokio::time::timeout(STEP, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await;
    let took = started.elapsed();
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "the connection should have been cut at exec_timeout: {end:?}"
    );
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "cut after {took:?}");
}

/// Server-sent events arrive one by one, as the function writes them: the
/// second is written only after the test has read the first.
pub async fn events_one_by_one(addr: SocketAddr, function: &str) {
    let req = Request::get(format!("/function/{function}/events"))
        .header("host", "x")
        .header("accept", "text/event-stream")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(STEP, send(addr, req)).await.expect("headers in time").unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    while !seen.contains("data: first\n\n") {
        let frame = tokio::time::timeout(STEP, body.frame())
            .await
            .unwrap_or_else(|_| panic!("the first event was held back; got {seen:?}"))
            .expect("more body")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert_eq!(seen, "id: 1\ndata: first\n\n");
    let go = call(addr, Method::GET, &format!("/function/{function}/go-on"), &[], "").await;
    assert_eq!(go.status, StatusCode::OK, "{}", go.body);
    let rest = tokio::time::timeout(STEP, body.collect()).await.expect("the rest in time").unwrap();
    assert_eq!(String::from_utf8(rest.to_bytes().to_vec()).unwrap(), "id: 2\ndata: second\n\n");
}

/// A function that answers 101 to a request that asked for no upgrade gets
/// a 502, and what it sent after never reaches the client as a response.
pub async fn unasked_switch_refused(addr: SocketAddr, function: &str) {
    let r = call(addr, Method::GET, &format!("/function/{function}/rogue"), &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert!(r.message().contains("asked for no upgrade"), "{}", r.body);
    assert!(!r.body.contains("forged"), "{}", r.body);
}

/// A WebSocket to a function that cannot take one: a clear 400.
pub async fn websocket_refused(addr: SocketAddr, function: &str) {
    match tokio_tungstenite::connect_async(format!("ws://{addr}/function/{function}")).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("WebSockets need a function in http mode"), "{body}");
        }
        other => panic!("expected a 400: {other:?}"),
    }
}

/// All of the above but the last, against a deployed streams function.
pub async fn check(addr: SocketAddr, function: &str) {
    websocket_both_ways(addr, function).await;
    events_one_by_one(addr, function).await;
    unasked_switch_refused(addr, function).await;
    websocket_ends_at_exec_timeout(addr, function).await;
}
