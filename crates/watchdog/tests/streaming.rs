//! `mode=streaming`: a process per request, body to STDIN and STDOUT back as
//! they flow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Channel};

fn streaming(fprocess: &str, extra: &[(&str, &str)]) -> Watchdog {
    let mut env = vec![("mode", "streaming"), ("fprocess", fprocess)];
    env.extend_from_slice(extra);
    Watchdog::start(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_the_body_through_cat() {
    let wd = streaming("cat", &[]);
    let r = call(wd.addr, Method::POST, "/", &[("content-type", "text/plain")], "hello, world").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "hello, world");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let secs: f64 = r.header("x-duration-seconds").expect("X-Duration-Seconds").parse().unwrap();
    assert!(secs > 0.0 && secs < 5.0, "{secs}");
}

async fn next(body: &mut hyper::body::Incoming) -> Bytes {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("a chunk in time");
    frame.unwrap().unwrap().into_data().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_both_ways_without_buffering() {
    let wd = streaming("cat", &[]);
    let (mut tx, body) = Channel::<Bytes>::new(1);
    let req = Request::post("/").header("host", "x").body(body).unwrap();
    let response = tokio::spawn(send(wd.addr, req));

    tx.send_data(Bytes::from_static(b"first\n")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("response head before the request body ended")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    assert_eq!(next(&mut body).await, "first\n", "echo of the first chunk while the request is open");
    tx.send_data(Bytes::from_static(b"second\n")).await.unwrap();
    assert_eq!(next(&mut body).await, "second\n");
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect()).await.unwrap().unwrap();
    assert!(rest.to_bytes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_request_as_cgi_variables() {
    let wd = streaming("sh -c 'env | grep ^Http_ | sort'", &[]);
    let r = call(
        wd.addr,
        Method::POST,
        "/some/path?a=1&b=two",
        &[("x-custom", "yes"), ("content-type", "text/csv"), ("path", "/header-cannot-win")],
        "abc",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let lines: Vec<&str> = r.body.lines().collect();
    for want in [
        "Http_Method=POST",
        "Http_Path=/some/path",
        "Http_Query=a=1&b=two",
        "Http_X_Custom=yes",
        "Http_Content_Type=text/csv",
        "Http_ContentLength=3",
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }

    // No query string: no Http_Query, even if a header is named "Query".
    let r = call(wd.addr, Method::GET, "/", &[("query", "sneaky")], "").await;
    assert!(!r.body.contains("Http_Query="), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_can_be_forced() {
    let wd = streaming("cat", &[("content_type", "application/json")]);
    let r = call(wd.addr, Method::POST, "/", &[("content-type", "text/plain")], "{}").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_gets_500_and_its_stderr_goes_to_the_log() {
    let wd = streaming("sh -c 'echo secret-diagnostic >&2; exit 3'", &[]);
    let r = wd.post("/", "x").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.message().contains("exit code 3"), "{}", r.body);
    assert!(!r.body.contains("secret-diagnostic"), "stderr leaked into the response");
    let logged =
        eventually(Duration::from_secs(5), async || wd.log().contains("stderr: secret-diagnostic")).await;
    assert!(logged, "prefixed stderr line not in the log:\n{}", wd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprefixed_stderr_when_prefix_logs_is_off() {
    let wd = streaming("sh -c 'echo plain-line >&2'", &[("prefix_logs", "false")]);
    assert_eq!(wd.post("/", "").await.status, StatusCode::OK);
    assert!(eventually(Duration::from_secs(5), async || wd.log().contains("plain-line")).await);
    assert!(!wd.log().contains("stderr: plain-line"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_output_began_aborts_the_response() {
    // The head may or may not have left before the failure is known; either
    // way the client must not see a complete, successful response.
    let wd = streaming("sh -c 'echo partial; sleep 0.2; exit 1'", &[]);
    let req = Request::post("/").header("host", "x").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let resp = send(wd.addr, req).await.expect("the head is sent once output has begun");
    assert_eq!(resp.status(), StatusCode::OK);
    let r = read(resp).await;
    assert!(r.body_error.is_some(), "the client must see an incomplete body: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_kills_the_whole_process_group_and_reaps_it() {
    let wd =
        streaming("sh -c 'echo $$ > pids; sleep 30 & echo $! >> pids; wait'", &[("exec_timeout", "500ms")]);
    let started = Instant::now();
    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.message().contains("exec_timeout (500ms)"), "{}", r.body);

    let pids: Vec<i32> = std::fs::read_to_string(wd.path("pids"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "shell and its background sleep");
    let all_dead = eventually(Duration::from_secs(5), async || pids.iter().all(|&p| !alive(p))).await;
    assert!(all_dead, "processes left running: {pids:?}");
    let reaped = eventually(Duration::from_secs(5), async || children(wd.pid()).is_empty()).await;
    assert!(reaped, "zombie children left: {:?}", children(wd.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_while_streaming_cuts_the_response() {
    let wd = streaming("sh -c 'echo started; exec sleep 30'", &[("exec_timeout", "500ms")]);
    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body_error.is_some(), "{r:?}");
    let reaped = eventually(Duration::from_secs(5), async || children(wd.pid()).is_empty()).await;
    assert!(reaped, "children left: {:?}", children(wd.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_timeout_lowers_exec_timeout_for_one_request() {
    let wd = streaming("sleep 5", &[("exec_timeout", "10s")]);
    let started = Instant::now();
    let r = call(wd.addr, Method::POST, "/", &[("x-timeout", "300ms")], "").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(r.message().contains("(300ms)"), "{}", r.body);

    let r = call(wd.addr, Method::POST, "/", &[("x-timeout", "soon")], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_answers_429_and_ready_says_so() {
    let wd = streaming("sh -c 'sleep 1; echo done'", &[("max_inflight", "1")]);
    let addr = wd.addr;
    let slow = tokio::spawn(async move { call(addr, Method::POST, "/", &[], "").await });
    let saturated = eventually(Duration::from_secs(5), async || {
        wd.get("/_/metrics").await.body.contains("http_requests_in_flight 1")
    })
    .await;
    assert!(saturated);

    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.message().contains("max_inflight=1"), "{}", r.body);
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::TOO_MANY_REQUESTS);

    let first = slow.await.unwrap();
    assert_eq!((first.status, first.body.as_str()), (StatusCode::OK, "done\n"));
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_a_clear_500() {
    let wd = streaming("/nonexistent/function", &[]);
    let r = wd.post("/", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.message().contains("could not start the function process"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_code_and_method() {
    let wd = streaming("cat", &[]);
    assert_eq!(wd.post("/", "a").await.status, StatusCode::OK);
    assert_eq!(wd.post("/", "b").await.status, StatusCode::OK);
    assert_eq!(wd.get("/").await.status, StatusCode::OK);
    let m = wd.get("/_/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(m.body.contains("http_requests_total{code=\"200\",method=\"post\"} 2\n"), "{}", m.body);
    assert!(m.body.contains("http_requests_total{code=\"200\",method=\"get\"} 1\n"), "{}", m.body);
    assert!(m.body.contains("http_request_duration_seconds_count{code=\"200\",method=\"post\"} 2\n"));
    assert!(m.body.contains("http_requests_in_flight 0\n"));
    assert_eq!(wd.get("/_/health").await.status, StatusCode::OK);
    assert_eq!(wd.get("/_/ready").await.status, StatusCode::OK);
}

/// A child left running in the background (it holds STDOUT open) does not
/// hold the answer: it ends when the function's own process has exited,
/// with what it wrote, in both fork modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_child_does_not_hold_the_answer() {
    for mode in ["streaming", "serializing"] {
        for (fprocess, want) in [("sh -c 'sleep 300 & echo hi'", "hi\n"), ("sh -c 'sleep 300 &'", "")] {
            let wd = Watchdog::start(&[("mode", mode), ("fprocess", fprocess), ("exec_timeout", "10s")]);
            let started = Instant::now();
            let r = call(wd.addr, Method::POST, "/", &[], "").await;
            assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, want), "{mode} {fprocess}");
            assert!(started.elapsed() < Duration::from_secs(3), "{mode} {fprocess}: {:?}", started.elapsed());
        }
    }
}
