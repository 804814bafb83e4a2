//! Asynchronous invocations: accepted durably (202 and a call id), run by
//! the dispatcher, retried, called back, dead-lettered and replayed; a full
//! queue answers 429; and no accepted call is lost when the gateway is
//! killed with SIGKILL. Each test runs on the embedded queue and on NATS
//! JetStream (Debian's `nats-server`: the NATS tests are ignored by `cargo
//! test`, the summary says so, and run by `cargo test -- --ignored`, as
//! `.ci/run` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::brokers::nats;
use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;

/// One callback as received.
#[derive(Clone, Debug)]
struct Received {
    headers: http::HeaderMap,
    body: String,
}

/// A callback receiver on loopback that fails its first `failures` calls.
async fn receiver(failures: usize) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let log = Arc::clone(&got);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (log, seen) = (Arc::clone(&log), Arc::clone(&seen));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (log, seen) = (Arc::clone(&log), Arc::clone(&seen));
                    async move {
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let status =
                            if n < failures { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                        if status == StatusCode::OK {
                            log.lock()
                                .unwrap()
                                .push(Received { headers, body: String::from_utf8_lossy(&body).into() });
                        }
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_retry_call_back_and_dead_letter() {
    let state = tempfile::tempdir().unwrap();
    lifecycle(state.path(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn calls_run_retry_call_back_and_dead_letter_on_nats() {
    let nats = nats();
    let state = tempfile::tempdir().unwrap();
    lifecycle(state.path(), &["--queue", &nats.url]).await;
}

async fn lifecycle(state: &std::path::Path, extra: &[&str]) {
    // The test's callback receiver is on loopback, which must be allowed.
    let mut args = vec!["--callback-allow", "127.0.0.1"];
    args.extend_from_slice(extra);
    let p = Platform::start(&programs(), state, &args);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "echo", "image": image, "envProcess": "cat"}), 1).await;

    // A missing function is refused at once, not queued.
    let r = p.invoke("/async-function/ghost", "x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.message().contains("ghost"), "{}", r.body);

    // Accepted, run, called back (the first callback fails and is retried).
    let (cb, received) = receiver(1).await;
    let callback = format!("http://{cb}/done");
    let r = call(
        p.addr,
        Method::POST,
        "/async-function/echo/some/path?q=1",
        &[("x-callback-url", &callback)],
        "hi",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.header("x-call-id").unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(20), async || !received.lock().unwrap().is_empty()).await,
        "no callback"
    );
    let got = received.lock().unwrap()[0].clone();
    assert_eq!(got.body, "hi");
    assert_eq!(got.headers["x-call-id"], id.as_str());
    assert_eq!(got.headers["x-function-status"], "200");
    assert_eq!(got.headers["x-function-name"], "echo");
    assert!(got.headers["x-duration-seconds"].to_str().unwrap().parse::<f64>().unwrap() > 0.0);
    // The call is settled once its callback is through: just after the
    // receiver has it.
    let status_path = format!("/system/async/{id}");
    let settled = eventually(Duration::from_secs(5), async || {
        p.api(Method::GET, &status_path, "").await.json()["state"] == "done"
    })
    .await;
    let status = p.api(Method::GET, &status_path, "").await.json();
    assert!(settled, "{status}");
    assert_eq!((status["state"].as_str(), status["status"].as_u64()), (Some("done"), Some(200)), "{status}");

    // A client's X-Call-Id never replaces a call: not a settled one...
    let r = call(p.addr, Method::POST, "/async-function/echo", &[("x-call-id", &id)], "intruder").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.message().contains("taken by another call"), "{}", r.body);
    // ...nor one pending or running: of two arriving at once with one id,
    // one is accepted and the other refused.
    let chosen = format!("client-chosen-{:x}", std::process::id());
    let headers = [("x-call-id", chosen.as_str())];
    let (a, b) = tokio::join!(
        call(p.addr, Method::POST, "/async-function/echo", &headers, "first"),
        call(p.addr, Method::POST, "/async-function/echo", &headers, "second"),
    );
    let mut codes = [a.status.as_u16(), b.status.as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409], "{} / {}", a.body, b.body);
    assert_eq!(a.header("x-call-id").or(b.header("x-call-id")), Some(chosen.as_str()));
    let r = call(p.addr, Method::POST, "/async-function/echo", &headers, "third").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let ran = eventually(Duration::from_secs(20), async || {
        p.api(Method::GET, &format!("/system/async/{chosen}"), "").await.json()["state"] == "done"
    })
    .await;
    assert!(ran, "the accepted one runs");

    // A flaky function succeeds on its third attempt (it counts them in its
    // replica's own /tmp).
    let flaky = "sh -c 'c=${TMPDIR:-/tmp}/flaky-count; n=$(cat $c 2>/dev/null || echo 0); n=$((n+1)); \
                 echo $n > $c; [ $n -ge 3 ] && echo ok-$n || exit 1'";
    let annotations = json!({"com.openfaas.retry.attempts": "4", "com.openfaas.retry.min_wait": "50ms",
        "com.openfaas.retry.max_wait": "200ms"});
    p.deploy(json!({"service": "flaky", "image": image, "envProcess": flaky, "annotations": annotations}), 1)
        .await;
    let r = call(p.addr, Method::POST, "/async-function/flaky", &[("x-callback-url", &callback)], "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let flaky_id = r.header("x-call-id").unwrap().to_owned();
    let done = eventually(Duration::from_secs(20), async || {
        p.api(Method::GET, &format!("/system/async/{flaky_id}"), "").await.json()["state"] == "done"
    })
    .await;
    assert!(done, "{}", p.api(Method::GET, &format!("/system/async/{flaky_id}"), "").await.body);
    let status = p.api(Method::GET, &format!("/system/async/{flaky_id}"), "").await.json();
    assert_eq!(status["attempts"], 3);
    assert!(received.lock().unwrap().iter().any(|r| r.body == "ok-3\n"));

    // Out of attempts: a dead letter, with the last status and body; replayed; deleted.
    let annotations = json!({"com.openfaas.retry.attempts": "2", "com.openfaas.retry.min_wait": "20ms"});
    p.deploy(
        json!({"service": "broken", "image": image, "envProcess": "sh -c 'echo failing >&2; exit 1'",
            "envVars": {"combine_output": "true", "mode": "serializing"}, "annotations": annotations}),
        1,
    )
    .await;
    let r = p.invoke("/async-function/broken", "payload").await;
    let dead_id = r.header("x-call-id").unwrap().to_owned();
    let dead = eventually(Duration::from_secs(20), async || {
        p.api(Method::GET, "/system/async/dead-letters", "").await.body.contains(&dead_id)
    })
    .await;
    assert!(dead, "never dead-lettered");
    let letters = p.api(Method::GET, "/system/async/dead-letters", "").await.json();
    let letter =
        letters.as_array().unwrap().iter().find(|l| l["callId"] == dead_id.as_str()).unwrap().clone();
    assert_eq!(
        (letter["attempts"].as_u64(), letter["lastStatus"].as_u64()),
        (Some(2), Some(500)),
        "{letter}"
    );
    assert!(letter["lastBody"].as_str().unwrap().contains("failing"), "{letter}");
    assert_eq!(
        p.api(Method::GET, &format!("/system/async/{dead_id}"), "").await.json()["state"],
        "dead-lettered"
    );
    let r = p.api(Method::POST, &format!("/system/async/dead-letters/{dead_id}/replay"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let again = eventually(Duration::from_secs(20), async || {
        p.api(Method::GET, &format!("/system/async/{dead_id}"), "").await.json()["state"] == "dead-lettered"
    })
    .await;
    assert!(again, "the replay ran and failed again");
    let r = p.api(Method::DELETE, &format!("/system/async/dead-letters/{dead_id}"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!p.api(Method::GET, "/system/async/dead-letters", "").await.body.contains(&dead_id));
    assert_eq!(
        p.api(Method::DELETE, &format!("/system/async/dead-letters/{dead_id}"), "").await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(p.addr, Method::GET, "/system/async/dead-letters", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "behind the API's auth");

    let metrics = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    for line in [
        // The first call, and the one of the two that arrived with one id.
        "gateway_async_processed_total{function_name=\"echo.openfaas-fn\"} 2",
        "gateway_async_retried_total{function_name=\"flaky.openfaas-fn\"} 2",
        "gateway_async_dead_lettered_total{function_name=\"broken.openfaas-fn\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    // faas invoke --async.
    let dir = tempfile::tempdir().unwrap();
    let out = faas(dir.path(), Some(&p), &["invoke", "echo", "--async"], Some("from the cli"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("call id"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    full_queue(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn a_full_queue_answers_429_on_nats() {
    let nats = nats();
    full_queue(&["--queue", &nats.url]).await;
}

async fn full_queue(extra: &[&str]) {
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["--queue-max", "2"];
    args.extend_from_slice(extra);
    let p = Platform::start(&programs(), state.path(), &args);
    let image = format!("{}/wc", examples().display());
    let annotations = json!({"com.openfaas.queue.max_inflight": "1"});
    p.deploy(
        json!({"service": "slow", "image": image, "envProcess": "sleep 3", "annotations": annotations}),
        1,
    )
    .await;
    assert_eq!(p.invoke("/async-function/slow", "").await.status, StatusCode::ACCEPTED);
    assert_eq!(p.invoke("/async-function/slow", "").await.status, StatusCode::ACCEPTED);
    let r = p.invoke("/async-function/slow", "").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.message().contains("as many as it may (--queue-max)"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_call_is_lost_when_the_gateway_is_killed() {
    crash(None).await;
}

/// On NATS, a second gateway shares the queue: it runs the calls the first
/// accepted, and those the first held when it was killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn no_accepted_call_is_lost_when_a_gateway_sharing_nats_is_killed() {
    let nats = nats();
    crash(Some(&nats.url)).await;
}

async fn crash(nats: Option<&str>) {
    const CALLS: usize = 10_000;
    let state = tempfile::tempdir().unwrap();
    let seen = state.path().join("seen.txt");
    let queue_args: Vec<&str> = match nats {
        Some(url) => vec!["--queue", url, "--queue-ack-wait", "3s"],
        None => vec![],
    };
    let p = Platform::start(&programs(), state.path(), &queue_args);
    let image = format!("{}/wc", examples().display());
    // The function reports each call id to the test over TCP (it cannot
    // write the test's files from its sandbox); the test appends them to
    // `seen`.
    let port = record_lines(&seen);
    let spec = json!({"service": "recorder", "image": image,
        "envProcess": format!("bash -c 'echo \"$Http_X_Call_Id\" > /dev/tcp/127.0.0.1/{port}'"),
        "annotations": {"com.openfaas.queue.max_inflight": "8"}});
    p.deploy(spec.clone(), 1).await;
    // The second gateway (NATS only), with the same function.
    let state_b = tempfile::tempdir().unwrap();
    let b = nats.map(|_| Platform::start(&programs(), state_b.path(), &queue_args));
    if let Some(b) = &b {
        b.deploy(spec, 1).await;
    }

    // 10,000 calls, 32 at a time; every 202 is a promise.
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..32 {
        let (accepted, next, addr) = (Arc::clone(&accepted), Arc::clone(&next), p.addr);
        senders.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < CALLS {
                let r = call(addr, Method::POST, "/async-function/recorder", &[], "x").await;
                assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
                accepted.lock().unwrap().insert(r.header("x-call-id").unwrap().to_owned());
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), CALLS);
    let lines = || std::fs::read_to_string(&seen).map_or(0, |t| t.lines().count());

    // SIGKILL while calls run.
    assert!(eventually(Duration::from_secs(60), async || lines() >= CALLS / 4).await, "dispatch is too slow");
    p.kill9();
    let at_kill = lines();
    assert!(at_kill < CALLS, "everything ran before the kill ({at_kill}): kill earlier");

    // The embedded queue: the same gateway restarted; NATS: the other one
    // carries on alone.
    let p = match b {
        Some(b) => b,
        None => Platform::start(&programs(), state.path(), &queue_args),
    };
    let all = eventually(Duration::from_secs(180), async || {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        let delivered: HashSet<&str> = text.lines().collect();
        accepted.iter().all(|id| delivered.contains(id.as_str()))
    })
    .await;
    let text = std::fs::read_to_string(&seen).unwrap_or_default();
    let delivered: Vec<&str> = text.lines().collect();
    let unique: HashSet<&str> = delivered.iter().copied().collect();
    let lost = accepted.iter().filter(|id| !unique.contains(id.as_str())).count();
    eprintln!(
        "crash test: {CALLS} accepted, killed after {at_kill} deliveries; {} deliveries in all, {} duplicates, {lost} lost",
        delivered.len(),
        delivered.len() - unique.len()
    );
    assert!(all, "{lost} accepted calls were never delivered");
    drop(p);
}

/// A body that trickles in (a byte every two seconds) is cut off with a 408
/// once it falls below the minimum rate, on `/async-function/` and on the
/// API, instead of holding its connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "echo", "image": image, "envProcess": "cat"}), 1).await;
    let auth = p.auth.clone().unwrap();
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for (path, auth) in [("/async-function/echo", None), ("/system/functions", Some(auth))] {
        for _ in 0..5 {
            let (addr, path, auth) = (p.addr, path, auth.clone());
            slow.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                loop {
                    tokio::select! {
                        read = s.read_to_end(&mut answer) => { let _ = read; break; }
                        () = tokio::time::sleep(Duration::from_secs(2)) => {
                            if s.write_all(b"x").await.is_err() { break; }
                        }
                    }
                }
                String::from_utf8_lossy(&answer).into_owned()
            }));
        }
    }
    for task in slow {
        let answer = task.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("too slowly"), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "cut off in {:?}", started.elapsed());
    // And a body at a normal pace still goes through.
    assert_eq!(p.invoke("/async-function/echo", "quick").await.status, StatusCode::ACCEPTED);
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// What the queue stores is bounded in bytes (a call's body, a function's
/// share, the whole queue), each past its limit a clear 413 or 429; the
/// bodies wait on disk, one file each, gone when their calls are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_calls_are_bounded_in_bytes_and_wait_on_disk() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(
        &programs(),
        state.path(),
        &["--queue-max-body", "1Mi", "--queue-max-function-bytes", "3Mi", "--queue-max-bytes", "5Mi"],
    );
    let image = format!("{}/wc", examples().display());
    let annotations = json!({"com.openfaas.queue.max_inflight": "1"});
    for name in ["slow", "other"] {
        let spec = json!({"service": name, "image": image, "envProcess": "sh -c 'sleep 1; wc -c'",
            "annotations": annotations});
        p.deploy(spec, 1).await;
    }
    // Refused from its length, before its body is read (a client that
    // goes on writing it finds the connection closed).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        let head =
            format!("POST /async-function/slow HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 2 << 20);
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("at most 1048576 bytes"), "{answer}");
    }

    let body = "x".repeat(900 << 10);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = p.invoke("/async-function/slow", &body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        ids.push(r.header("x-call-id").unwrap().to_owned());
    }
    let r = p.invoke("/async-function/slow", &body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.message().contains("function slow.openfaas-fn holds"), "{}", r.body);
    assert!(r.message().contains("--queue-max-function-bytes"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    let bodies = state.path().join("queue.bodies");
    assert_eq!(files_in(&bodies), 3, "one file per body, running or waiting");
    for _ in 0..2 {
        let r = p.invoke("/async-function/other", &body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        ids.push(r.header("x-call-id").unwrap().to_owned());
    }
    let r = p.invoke("/async-function/other", &body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.message().contains("--queue-max-bytes"), "{}", r.body);

    let all_done = eventually(Duration::from_secs(30), async || {
        for id in &ids {
            if p.api(Method::GET, &format!("/system/async/{id}"), "").await.json()["state"] != "done" {
                return false;
            }
        }
        true
    })
    .await;
    assert!(all_done, "{}", p.api(Method::GET, &format!("/system/async/{}", ids[4]), "").await.body);
    assert_eq!(files_in(&bodies), 0, "their files went with them");
    let redb = std::fs::metadata(state.path().join("queue.redb")).unwrap().len();
    assert!(redb < 4 << 20, "the queue's file holds no large body: {redb} bytes");
    // There is room again.
    assert_eq!(p.invoke("/async-function/slow", &body).await.status, StatusCode::ACCEPTED);
}

/// Bodies being received are held in memory within `--queue-memory`: a
/// client that sends a large body slowly holds its share, and another
/// that would pass it is told to come back (429), not buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_being_received_stay_within_their_memory() {
    use tokio::io::AsyncWriteExt;
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--queue-max-body", "1Mi", "--queue-memory", "1Mi"]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "echo", "image": image, "envProcess": "wc -c"}), 1).await;
    let mut slow = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head =
        format!("POST /async-function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 800 << 10);
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b'x'; 1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = p.invoke("/async-function/echo", &"y".repeat(500 << 10)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.message().contains("receiving as many bodies as it may hold"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        p.invoke("/async-function/echo", "small").await.status,
        StatusCode::ACCEPTED,
        "a small one fits"
    );
    drop(slow);
    // Its share comes back when it is gone.
    let back = eventually(Duration::from_secs(5), async || {
        p.invoke("/async-function/echo", &"y".repeat(500 << 10)).await.status == StatusCode::ACCEPTED
    })
    .await;
    assert!(back);
}

/// Anyone may ask for a callback: by default none reaches this machine or
/// its networks. A URL naming such an address is refused at once; a host
/// name that resolves to one is refused when the callback is sent, which
/// the call's state says; an operator's allow-list opens a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_to_this_machine_are_refused_unless_allowed() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "echo", "image": image, "envProcess": "cat"}), 1).await;
    let (cb, received) = receiver(0).await;
    for url in [
        format!("http://{cb}/done"),
        format!("http://[::1]:{}/done", cb.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/x".to_owned(),
    ] {
        let r = call(p.addr, Method::POST, "/async-function/echo", &[("x-callback-url", &url)], "x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.body);
        assert!(r.message().contains("--callback-allow"), "{url}: {}", r.body);
    }
    // A name: refused when it is sent, and not tried again.
    let by_name = format!("http://localhost:{}/done", cb.port());
    let r = call(p.addr, Method::POST, "/async-function/echo", &[("x-callback-url", &by_name)], "x").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.header("x-call-id").unwrap().to_owned();
    let status = |id: String| {
        let p = &p;
        async move { p.api(Method::GET, &format!("/system/async/{id}"), "").await.json() }
    };
    assert!(
        eventually(Duration::from_secs(10), async || status(id.clone()).await["state"] == "dead-lettered")
            .await,
        "{}",
        status(id.clone()).await
    );
    let s = status(id.clone()).await;
    assert!(s["error"].as_str().unwrap().contains("callback refused: X-Callback-Url: localhost"), "{s}");
    assert!(s["error"].as_str().unwrap().contains("a loopback address"), "{s}");
    assert!(received.lock().unwrap().is_empty(), "nothing reached the receiver");
    drop(p);

    // Allowed by the operator, the same callback is delivered.
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(
        &programs(),
        state.path(),
        &["--callback-allow", "127.0.0.0/8", "--callback-allow", "::1"],
    );
    p.deploy(json!({"service": "echo", "image": image, "envProcess": "cat"}), 1).await;
    let r =
        call(p.addr, Method::POST, "/async-function/echo", &[("x-callback-url", &by_name)], "allowed").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(
        eventually(Duration::from_secs(20), async || !received.lock().unwrap().is_empty()).await,
        "the allowed callback arrived"
    );
    assert_eq!(received.lock().unwrap()[0].body, "allowed");
}
