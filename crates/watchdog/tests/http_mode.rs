//! `mode=http`: the function's own HTTP server, started once, behind a
//! reverse proxy. The upstream here is a small Python server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Channel};

const UPSTREAM: &str = r#"
import http.server, os, sys, time

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status, text, extra=()):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream", "yes")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        body = self.read_body()
        path = self.path
        if path.startswith("/slow"):
            time.sleep(float(path.split("?")[1]))
        if path == "/exit":
            print("upstream exiting on request", file=sys.stderr, flush=True)
            os._exit(3)
        if path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one\n", b"two\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.5)
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/ready":
            code = 503 if os.path.exists("notready") else 200
            return self.reply(code, "ready?")
        print("handled " + path, flush=True)
        te = self.headers.get("Transfer-Encoding")
        length = self.headers.get("Content-Length")
        self.reply(200, f"{self.command} {path} te={te} len={length} custom={self.headers.get('X-Custom')} body={body.decode()}")

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

time.sleep(float(os.environ.get("START_DELAY", "0")))
with open("upstream.pid", "w") as f:
    f.write(str(os.getpid()))
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["UPSTREAM_PORT"])), Handler).serve_forever()
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn upstream_script() -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("watchdog-test-upstream.py");
    std::fs::write(&path, UPSTREAM).unwrap();
    path.display().to_string()
}

fn http_mode(extra: &[(&str, &str)]) -> Watchdog {
    let port = free_port().to_string();
    let fprocess = format!("{} {}", python(), upstream_script());
    let upstream = format!("http://127.0.0.1:{port}");
    let mut env = vec![
        ("mode", "http"),
        ("fprocess", fprocess.as_str()),
        ("upstream_url", upstream.as_str()),
        ("UPSTREAM_PORT", port.as_str()),
    ];
    env.extend_from_slice(extra);
    Watchdog::start(&env)
}

async fn ready(wd: &Watchdog) -> bool {
    eventually(Duration::from_secs(10), async || wd.get("/_/ready").await.status == StatusCode::OK).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_requests_and_responses() {
    let wd = http_mode(&[]);
    assert!(ready(&wd).await, "never ready:\n{}", wd.log());
    let r = call(wd.addr, Method::PUT, "/items/1?x=y", &[("x-custom", "abc")], "payload").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "PUT /items/1?x=y te=None len=7 custom=abc body=payload");
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert!(r.header("x-duration-seconds").is_some());

    let r = wd.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(5), async || wd.log().contains("stdout: handled /")).await,
        "{}",
        wd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_stream_unless_buffering_is_asked_for() {
    for (buffer, want) in [("false", "te=chunked len=None"), ("true", "te=None len=10")] {
        let wd = http_mode(&[("http_buffer_req_body", buffer)]);
        assert!(ready(&wd).await);
        let (mut tx, body) = Channel::<Bytes>::new(2);
        let req = Request::post("/").header("host", "x").body(body).unwrap();
        let pending = tokio::spawn(send(wd.addr, req));
        tx.send_data(Bytes::from_static(b"01234")).await.unwrap();
        tx.send_data(Bytes::from_static(b"56789")).await.unwrap();
        drop(tx);
        let r = read(pending.await.unwrap().unwrap()).await;
        assert!(r.body.contains(want), "buffer_http={buffer}: {}", r.body);
        assert!(r.body.ends_with("body=0123456789"), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_as_the_function_writes() {
    let wd = http_mode(&[]);
    assert!(ready(&wd).await);
    let req =
        Request::get("/stream").header("host", "x").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let started = Instant::now();
    let mut body = send(wd.addr, req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "one\n");
    assert!(started.elapsed() < Duration::from_millis(450), "first chunk held back: {:?}", started.elapsed());
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "two\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_gives_504() {
    let wd = http_mode(&[("exec_timeout", "500ms")]);
    assert!(ready(&wd).await);
    let r = wd.get("/slow?3").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.message().contains("exec_timeout (500ms)"), "{}", r.body);
    assert_eq!(wd.get("/fast").await.status, StatusCode::OK, "the function is still usable");
}

/// The function's server is the replica: when it exits, the request it
/// was answering gets a 502 and the watchdog exits too (non-zero, as
/// OpenFaaS's container stops), so that the replica is replaced at once
/// rather than left running unready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_gives_502_and_the_watchdog_exits() {
    let mut wd = http_mode(&[]);
    assert!(ready(&wd).await);
    let r = wd.get("/exit").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    let status = wd.wait_exit(Duration::from_secs(5)).expect("the watchdog exits with its function");
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(wd.log().contains("upstream exiting on request"), "{}", wd.log());
    assert!(wd.log().contains("the function process exited"), "{}", wd.log());
    assert!(!wd.path(".lock").exists(), "no lock file left: the replica is not healthy");
}

/// A server that exits at start: the watchdog exits within moments, not at
/// any start-up timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_exits_at_start_ends_the_watchdog() {
    let mut wd = Watchdog::start(&[
        ("fprocess", "sh -c 'echo cannot start >&2; exit 3'"),
        ("mode", "http"),
        ("upstream_url", "http://127.0.0.1:1"),
    ]);
    let started = std::time::Instant::now();
    let status = wd.wait_exit(Duration::from_secs(5)).expect("the watchdog exits");
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(wd.log().contains("cannot start"), "{}", wd.log());
    assert!(wd.log().contains("the function process exited (exit status: 3)"), "{}", wd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_start_up_wait_for_the_function() {
    let wd = http_mode(&[("START_DELAY", "0.7")]);
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = wd.get("/early").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_path_asks_the_function() {
    let wd = http_mode(&[("ready_path", "/ready")]);
    assert!(ready(&wd).await);
    std::fs::write(wd.path("notready"), "").unwrap();
    let r = wd.get("/_/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.message().contains("503"), "{}", r.body);
    std::fs::remove_file(wd.path("notready")).unwrap();
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_stops_with_the_watchdog() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let mut wd = http_mode(&[]);
        assert!(ready(&wd).await);
        let pid: i32 = std::fs::read_to_string(wd.path("upstream.pid")).unwrap().parse().unwrap();
        assert!(alive(pid));
        wd.signal(signal);
        assert!(wd.wait_exit(Duration::from_secs(10)).is_some());
        let gone = eventually(Duration::from_secs(5), async || !alive(pid)).await;
        assert!(gone, "upstream {pid} outlived the watchdog (signal {signal})");
    }
}
