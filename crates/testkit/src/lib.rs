//! Helpers the integration tests of several crates share: one HTTP request
//! per connection (so each test sees exactly what it sent), waiting for a
//! condition without fixed sleeps, looking at processes in /proc, the check
//! of a test that needs a tool this machine may lack ([`require`]), a
//! WebDriver client ([`webdriver`]) and the end-to-end harness that runs the
//! real platform ([`platform`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod platform;
pub mod webdriver;

pub use platform::{
    Platform, Programs, examples, git_head, push_bundle, push_bundle_to, record_lines, tar, tar_filled,
    under_load,
};

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Retries `cond` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A whole response; `body_error` is set if the body ended with an error.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub body_error: Option<String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `message` of a JSON error body.
    pub fn message(&self) -> String {
        self.json()["message"].as_str().expect("message field").to_owned()
    }
}

/// Sends one request on a new connection; the response head.
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> anyhow::Result<Response<Incoming>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

pub async fn read(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let (body, body_error) = match body.collect().await {
        Ok(c) => (String::from_utf8_lossy(&c.to_bytes()).into_owned(), None),
        Err(e) => (String::new(), Some(e.to_string())),
    };
    Reply { status: parts.status, headers: parts.headers, body, body_error }
}

pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
    read(send(addr, req).await.expect("request failed")).await
}

/// Is `pid` a live (not zombie) process?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Does `pid` exist at all (a zombie counts)?
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Children of `pid` (from /proc, over all its threads), to look for zombies.
pub fn children(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// For a test that needs a tool or a service this machine may not have:
/// such tests are `#[ignore = "needs ..."]`, so that the README's test
/// command shows them as ignored, with the reason; `cargo test -- --ignored`
/// (as `.ci/run` does, after installing and starting them) runs them, and
/// then a missing one is a failure, said here.
pub fn require(present: bool, what: &str, how: &str) {
    assert!(present, "this test needs {what}, which is missing here ({how})");
}
