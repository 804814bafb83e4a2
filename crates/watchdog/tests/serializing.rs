//! `mode=serializing`: whole body in, whole output out (the classic watchdog).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Channel;

fn serializing(fprocess: &str, extra: &[(&str, &str)]) -> Watchdog {
    let mut env = vec![("mode", "serializing"), ("fprocess", fprocess)];
    env.extend_from_slice(extra);
    Watchdog::start(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_body_in_whole_output_out() {
    let wd = serializing("wc -c", &[]);
    let body = "x".repeat(300_000);
    let r = call(wd.addr, Method::POST, "/", &[("content-type", "text/plain")], &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.trim(), "300000");
    assert_eq!(r.header("content-length"), Some("7"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.header("x-duration-seconds").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_gets_500_and_its_stderr_stays_in_the_log() {
    let wd = serializing("sh -c 'echo out; echo private-detail >&2; exit 7'", &[]);
    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.message().contains("exit code 7"), "{}", r.body);
    assert!(!r.body.contains("private-detail"));
    assert!(eventually(Duration::from_secs(5), async || wd.log().contains("stderr: private-detail")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combine_output_puts_stderr_in_the_response() {
    let wd = serializing("sh -c 'echo out; echo err >&2; exit ${FAIL:-0}'", &[("combine_output", "true")]);
    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "out\nerr\n");

    let wd = serializing("sh -c 'echo out; echo err >&2; exit 2'", &[("combine_output", "true")]);
    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body, "out\nerr\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_gives_504_and_leaves_no_process() {
    let wd = serializing("sh -c 'echo $$ > pid; exec sleep 30'", &[("exec_timeout", "400ms")]);
    let started = Instant::now();
    let r = wd.post("/", "data").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.message().contains("exec_timeout (400ms)"), "{}", r.body);
    let pid: i32 = std::fs::read_to_string(wd.path("pid")).unwrap().trim().parse().unwrap();
    assert!(!exists(pid), "the function process is still there (zombie or alive)");
    assert!(children(wd.pid()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_gets_408() {
    let wd = serializing("cat", &[("read_timeout", "300ms")]);
    let (mut tx, body) = Channel::<Bytes>::new(1);
    let req = Request::post("/").header("host", "x").body(body).unwrap();
    tx.send_data(Bytes::from_static(b"partial")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), send(wd.addr, req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    drop(tx);
}
