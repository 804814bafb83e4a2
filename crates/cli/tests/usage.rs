//! Usage metering, end to end on the embedded default: a record per
//! invocation of every kind (HTTP, asynchronous, a schedule), exactly N for N
//! calls, GB-seconds within 1 % of what the calls took at the function's
//! memory limit; nothing lost or counted twice when the gateway is killed
//! with SIGKILL; reports as JSON and CSV, bills at a plan, and clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

/// How long the sleeper takes: long beside the cost of starting its
/// process in a sandbox (a few ms, more on a loaded machine), so that 1 %
/// of it is a fair bound.
const SLEEP_S: u64 = 3;

fn sleeper() -> serde_json::Value {
    json!({
        "service": "sleeper",
        "image": format!("{}/wc", examples().display()),
        "envProcess": format!("sh -c 'sleep {SLEEP_S}; cat'"),
        "limits": {"memory": "256Mi"},
    })
}

async fn records(p: &Platform, function: &str) -> Vec<serde_json::Value> {
    let r = p
        .api(Method::GET, &format!("/system/usage/records?function={function}&limit=10000&from=1h"), "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

async fn total(p: &Platform, query: &str) -> serde_json::Value {
    let r = p.api(Method::GET, &format!("/system/usage?from=1h&{query}"), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["total"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_is_metered_once_and_exactly() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.deploy(sleeper(), 1).await;

    // 20 calls, 4 at a time, of a function that takes SLEEP_S seconds, at
    // 256 MiB (20 at once on two cores would make their start-up, not the
    // metering, the larger part of the 1 %).
    const N: usize = 20;
    let mut ids = HashSet::new();
    let mut took = 0.0;
    for batch in (0..N).collect::<Vec<_>>().chunks(4) {
        // Spawned all before the first is awaited: at once.
        let calls: Vec<_> = batch
            .iter()
            .map(|&i| {
                let addr = p.addr;
                tokio::spawn(async move {
                    call(addr, Method::POST, "/function/sleeper", &[], &format!("call {i:02}")).await
                })
            })
            .collect();
        for c in calls {
            let r = c.await.unwrap();
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            ids.insert(r.header("x-call-id").unwrap().to_owned());
            took += r.header("x-duration-seconds").unwrap().parse::<f64>().unwrap();
        }
    }
    let recs = records(&p, "sleeper").await;
    assert_eq!(recs.len(), N, "one record per call: {recs:?}");
    let recorded: HashSet<String> = recs.iter().map(|r| r["callId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(recorded, ids, "the records are of these calls");
    for r in &recs {
        assert_eq!(r["trigger"], "http", "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["memoryMib"], 256, "{r}");
        assert_eq!(r["bytesIn"], 7, "{r}");
        // cat's answer: the body again.
        assert_eq!(r["bytesOut"], 7, "{r}");
        assert!(r["durationUs"].as_u64().unwrap() >= SLEEP_S * 1_000_000, "{r}");
    }
    let t = total(&p, "function=sleeper").await;
    assert_eq!(t["invocations"], N as u64, "{t}");
    let gb_s = t["gbSeconds"].as_f64().unwrap();
    // Each call took at least its sleep: N * SLEEP_S s * 0.25 GB, and not
    // much more (starting `sh` and `sleep` per call takes milliseconds, more
    // on a loaded machine: a CI run saw 14 ms a call); and, the meter's
    // accuracy, within 1 % of what the gateway measured.
    let floor = N as f64 * SLEEP_S as f64 * 0.25;
    assert!(gb_s >= floor && gb_s <= floor * 1.05, "{gb_s} GB-s, {floor} expected (5 %)");
    assert!((gb_s - took * 0.25).abs() <= took * 0.25 * 0.01, "{gb_s} GB-s vs {took} s measured at 0.25 GB");

    // Asynchronous calls: one record per attempt, as "async".
    for i in 0..3 {
        let r = p.invoke("/async-function/sleeper", &format!("async {i}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let done = eventually(Duration::from_secs(30), async || {
        records(&p, "sleeper").await.iter().filter(|r| r["trigger"] == "async").count() == 3
    })
    .await;
    assert!(done, "no records of the asynchronous calls: {:?}", records(&p, "sleeper").await);
    let recs = records(&p, "sleeper").await;
    let a = recs.iter().find(|r| r["trigger"] == "async").unwrap();
    assert_eq!((a["bytesIn"].as_u64(), a["status"].as_u64()), (Some(7), Some(200)), "{a}");

    // A schedule's calls, as "cron".
    let tick = json!({
        "service": "tick",
        "image": format!("{}/wc", examples().display()),
        "envProcess": "cat",
        "annotations": {"topic": "cron-function", "schedule": "@every 1s"},
    });
    p.deploy(tick, 1).await;
    let fired = eventually(Duration::from_secs(20), async || records(&p, "tick").await.len() >= 2).await;
    assert!(fired, "no records of the schedule's calls");
    let recs = records(&p, "tick").await;
    assert!(recs.iter().all(|r| r["trigger"] == "cron"), "{recs:?}");
    assert!(recs[0]["callId"].as_str().unwrap().starts_with("cron-tick.openfaas-fn-"), "{:?}", recs[0]);
    assert_eq!(recs[0]["memoryMib"], 128, "no limit: the default metered memory");

    // Grouped by namespace, by hour, as CSV.
    let by_ns = p.api(Method::GET, "/system/usage?from=1h&group_by=namespace", "").await.json();
    assert_eq!(by_ns["rows"][0]["namespace"], "openfaas-fn", "{by_ns}");
    assert!(by_ns["rows"][0]["invocations"].as_u64().unwrap() >= (N + 3 + 2) as u64, "{by_ns}");
    let auth = p.auth.clone().unwrap();
    let csv = call(
        p.addr,
        Method::GET,
        "/system/usage?from=1h&group_by=hour&function=sleeper",
        &[("authorization", &auth), ("accept", "text/csv")],
        "",
    )
    .await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("period,invocations,errors,"), "{}", csv.body);
    let invocations: u64 =
        lines[1..].iter().map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(invocations, (N + 3) as u64, "{}", csv.body);

    // CPU time, read from the replicas' cgroups: a function that spins.
    let spin = json!({
        "service": "spin",
        "image": format!("{}/wc", examples().display()),
        "envProcess": "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; cat'",
    });
    p.deploy(spin, 1).await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(p.invoke("/function/spin", "x").await.status, StatusCode::OK);
    }
    let busy = started.elapsed().as_secs_f64();
    let counted = eventually(Duration::from_secs(20), async || {
        total(&p, "function=spin").await["cpuSeconds"].as_f64().unwrap() >= busy * 0.5
    })
    .await;
    let cpu = total(&p, "function=spin").await["cpuSeconds"].as_f64().unwrap();
    assert!(counted, "{cpu} CPU-seconds for {busy} s of spinning");
    assert!(cpu <= busy * 1.5 + 0.5, "{cpu} CPU-seconds for {busy} s of spinning");
    // Each record has its share of its minute's CPU time.
    let shares: Vec<u64> = records(&p, "spin").await.iter().map(|r| r["cpuUs"].as_u64().unwrap()).collect();
    let shared = shares.iter().sum::<u64>() as f64 / 1e6;
    assert!(shared > 0.0 && shared <= cpu + 1e-6, "records' shares {shares:?} of {cpu} CPU-seconds");
    let idle = total(&p, "function=sleeper").await["cpuSeconds"].as_f64().unwrap();
    assert!(idle < cpu, "sleeping used {idle} CPU-seconds, spinning {cpu}");

    // Peak memory, read from the replicas' cgroups: a function that takes
    // 80 MiB for each call (and gives it back as it ends), beside the
    // sleeper, which takes next to none.
    let hog = json!({
        "service": "hog",
        "image": format!("{}/wc", examples().display()),
        "envProcess": r#"python3 -c 'import sys; b = b"x" * (80 << 20); sys.stdout.write(sys.stdin.read())'"#,
        "limits": {"memory": "256Mi"},
    });
    p.deploy(hog, 1).await;
    for _ in 0..2 {
        assert_eq!(p.invoke("/function/hog", "x").await.status, StatusCode::OK);
    }
    let peak = async |f: &str| total(&p, &format!("function={f}")).await["peakMemoryMib"].as_f64().unwrap();
    let seen = eventually(Duration::from_secs(20), async || peak("hog").await >= 80.0).await;
    assert!(seen, "hog's peak: {} MiB", peak("hog").await);
    assert!(peak("hog").await < 256.0, "{} MiB", peak("hog").await);
    let sleeper_peak = peak("sleeper").await;
    assert!(sleeper_peak > 0.0 && sleeper_peak < 40.0, "the sleeper's peak: {sleeper_peak} MiB");

    // /metrics counts GB-seconds per function.
    let metrics = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gateway_function_gb_seconds_total{function_name=\"sleeper.openfaas-fn\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= (N + 3) as f64 * SLEEP_S as f64 * 0.25, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_record_and_counts_none_twice() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "wc", "image": image, "envProcess": "wc"}), 1).await;
    let mut ids = HashSet::new();
    for round in 0..3 {
        for i in 0..100 {
            let r = p.invoke("/function/wc", &format!("{round} {i}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            ids.insert(r.header("x-call-id").unwrap().to_owned());
        }
        // Some of these are folded into the tables, some only logged.
        if round == 1 {
            assert_eq!(records(&p, "wc").await.len(), 200);
        }
    }
    // Killed right after the last answer: no time to fold anything in.
    p.kill9();
    let p = Platform::start(&programs(), state.path(), &[]);
    let recs = records(&p, "wc").await;
    let recorded: HashSet<String> = recs.iter().map(|r| r["callId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(recs.len(), 300, "every call answered is recorded, once");
    assert_eq!(recorded, ids);
    assert_eq!(total(&p, "function=wc").await["invocations"], 300);
    // Killed again with nothing new: still once.
    p.kill9();
    let p = Platform::start(&programs(), state.path(), &[]);
    assert_eq!(total(&p, "function=wc").await["invocations"], 300);
    assert_eq!(records(&p, "wc").await.len(), 300);
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_price_usage_and_bad_queries_are_refused() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "wc", "image": image, "envProcess": "wc", "limits": {"memory": "1Gi"}}), 1)
        .await;
    for i in 0..10 {
        assert_eq!(p.invoke("/function/wc", &i.to_string()).await.status, StatusCode::OK);
    }
    // A price of 1 per invocation, 2 free; a dollar per GB-second.
    let plan = json!({"perMillionInvocations": 1_000_000.0, "perGbSecond": 1.0, "freeInvocations": 2});
    let r = p.api(Method::PUT, "/system/plans/openfaas-fn", &plan.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = total(&p, "").await;
    let gb_s = t["gbSeconds"].as_f64().unwrap();
    assert!((t["cost"].as_f64().unwrap() - (10.0 + gb_s)).abs() < 1e-5, "{t}");
    let bill = p.api(Method::GET, "/system/usage/bill?namespace=openfaas-fn", "").await;
    assert_eq!(bill.status, StatusCode::OK, "{}", bill.body);
    let bill = bill.json();
    assert_eq!(bill["lines"][0]["billable"], 8.0, "{bill}");
    assert!((bill["total"].as_f64().unwrap() - (8.0 + gb_s)).abs() < 1e-5, "{bill}");
    assert_eq!(
        p.api(Method::GET, "/system/usage/bill?namespace=openfaas-fn", "").await.json(),
        bill,
        "reproducible"
    );
    let plans = p.api(Method::GET, "/system/plans", "").await.json();
    assert_eq!(plans["openfaas-fn"]["freeInvocations"], 2, "{plans}");

    // Wrong input: 400 with a message naming the field; nothing stored.
    for (method, path, body, field) in [
        (Method::GET, "/system/usage?group_by=year", "", "group_by"),
        (Method::GET, "/system/usage?from=tomorrow", "", "from"),
        (Method::GET, "/system/usage?namespace=Bad_NS", "", "namespace"),
        (Method::GET, "/system/usage?function=..%2F..", "", "function"),
        (Method::GET, "/system/usage/records?limit=0", "", "limit"),
        (Method::GET, "/system/usage/bill?month=2026-13", "", "month"),
        (Method::PUT, "/system/plans/openfaas-fn", r#"{"perGbSecond":-1}"#, "perGbSecond"),
        (Method::PUT, "/system/plans/openfaas-fn", r#"{"currency":"<script>"}"#, "currency"),
        (Method::PUT, "/system/plans/Bad_NS", r#"{}"#, "namespace"),
    ] {
        let r = p.api(method.clone(), path, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{method} {path}: {}", r.body);
    }
    let r = p.api(Method::GET, "/system/usage?from=2h&to=3h", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "from after to: {}", r.body);
    let r = p.api(Method::PUT, "/system/plans/openfaas-fn", r#"{"perGbSec":1}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "unknown field: {}", r.body);
    let plans = p.api(Method::GET, "/system/plans", "").await.json();
    assert_eq!(plans["openfaas-fn"]["freeInvocations"], 2, "the plan is unchanged: {plans}");
    let r = p.api(Method::DELETE, "/system/plans/team-b", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(p.api(Method::DELETE, "/system/plans/openfaas-fn", "").await.status, StatusCode::NO_CONTENT);

    // A client's own X-Call-Id of any length is passed on, but a record
    // keeps at most 128 characters of it (records are not a disk to fill).
    let long = "x".repeat(10_000);
    let r = call(p.addr, Method::POST, "/function/wc", &[("x-call-id", &long)], "long").await;
    assert_eq!((r.status, r.header("x-call-id")), (StatusCode::OK, Some(long.as_str())));
    let kept = records(&p, "wc").await;
    let ids: Vec<usize> = kept.iter().map(|r| r["callId"].as_str().unwrap().len()).collect();
    assert!(ids.contains(&128) && ids.iter().all(|n| *n <= 128), "{ids:?}");

    // Usage is the admin's: no credentials, no figures.
    for path in ["/system/usage", "/system/usage/records", "/system/plans"] {
        let r = call(p.addr, Method::GET, path, &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    p.stop();

    // Metering off: the usage API says so.
    let p = Platform::start(&programs(), state.path(), &["--no-usage"]);
    let r = p.api(Method::GET, "/system/usage", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.message().contains("not enabled"), "{}", r.body);
    p.stop();
}
