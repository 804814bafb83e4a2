//! The requests faas-cli 0.18 sends, replayed exactly (method, path, query,
//! headers, JSON), and the answers it needs (status codes, JSON shapes): see
//! docs/FAAS-CLI-CONTRACT.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

const UA: &str = "faas-cli/0.18.12";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faas_cli_workflow() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let auth = p.auth.clone().unwrap();
    let basic = [("authorization", auth.as_str()), ("user-agent", UA)];
    let json_basic =
        [("authorization", auth.as_str()), ("user-agent", UA), ("content-type", "application/json")];

    // login: GET /system/functions with Basic auth; 200 is success.
    let r = call(p.addr, Method::GET, "/system/functions", &[("authorization", auth.as_str())], "").await;
    assert_eq!(r.status, StatusCode::OK);
    // Without a login faas-cli sends an empty Bearer token: refused with 401.
    let r = call(
        p.addr,
        Method::GET,
        "/system/functions",
        &[("authorization", "Bearer"), ("user-agent", UA)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r =
        call(p.addr, Method::GET, "/system/functions", &[("authorization", "Basic YWRtaW46d3Jvbmc=")], "")
            .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // --token T: the same requests with a Bearer token (one of the
    // gateway's, for a namespace): here, list.
    let r = call(
        p.addr,
        Method::POST,
        "/system/tokens",
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        r#"{"name":"faas-cli","role":"read"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bearer = format!("Bearer {}", r.json()["token"].as_str().unwrap());
    let r =
        call(p.addr, Method::GET, "/system/functions", &[("authorization", &bearer), ("user-agent", UA)], "")
            .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"));

    // deploy --image IMG --name echo: PUT first (404 when new), then POST.
    let image = format!("{}/wc", examples().display());
    let body = serde_json::json!({
        "service": "echo", "image": image, "envProcess": "cat", "labels": {}, "annotations": {}
    })
    .to_string();
    let r = call(p.addr, Method::PUT, "/system/functions", &json_basic, &body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = call(p.addr, Method::POST, "/system/functions", &json_basic, &body).await;
    assert!(matches!(r.status.as_u16(), 200 | 202), "deploy must answer 200 or 202: {r:?}");
    // deploy again: the PUT succeeds (rolling update).
    let r = call(p.addr, Method::PUT, "/system/functions", &json_basic, &body).await;
    assert!(matches!(r.status.as_u16(), 200 | 202), "{r:?}");
    p.wait_ready("echo", 1).await;

    // invoke: always NAME.NAMESPACE, text/plain, no Authorization.
    let r = call(
        p.addr,
        Method::POST,
        "/function/echo.openfaas-fn",
        &[("content-type", "text/plain"), ("user-agent", "faas-cli/0.18.12 (openfaas; linux; amd64)")],
        "hi from faas-cli",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "hi from faas-cli"));
    // As OpenFaaS's gateway: when the call started (ns since the epoch),
    // how long it took (s), and its id.
    let started: u128 = r.header("x-start-time").expect("X-Start-Time").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    assert!(started <= now && now - started < 60_000_000_000, "{started} vs {now}");
    let took: f64 = r.header("x-duration-seconds").expect("X-Duration-Seconds").parse().unwrap();
    assert!((0.0..60.0).contains(&took), "{took}");
    assert!(r.header("x-call-id").is_some());
    // A client's own start time is kept.
    let r = call(p.addr, Method::GET, "/function/echo", &[("x-start-time", "1700000000000000000")], "").await;
    assert_eq!(r.header("x-start-time"), Some("1700000000000000000"));

    // list: 200 and an array; replicas and availableReplicas are numbers;
    // createdAt is RFC 3339; invocationCount counts the calls above.
    let r = call(p.addr, Method::GET, "/system/functions", &basic, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let echo = list.as_array().unwrap().iter().find(|f| f["name"] == "echo").expect("echo listed").clone();
    assert_eq!(echo["image"], image.as_str());
    assert_eq!(echo["replicas"], 1);
    assert_eq!(echo["availableReplicas"], 1);
    assert_eq!(echo["invocationCount"].as_f64(), Some(2.0));
    // Labels and annotations are objects even when empty (clients index
    // into them).
    assert!(echo["labels"].is_object() && echo["annotations"].is_object(), "{echo}");
    let one = call(p.addr, Method::GET, "/system/function/echo", &basic, "").await.json();
    assert!(one["labels"].is_object() && one["annotations"].is_object(), "{one}");
    assert!(ferrofaas_types::time::parse(echo["createdAt"].as_str().unwrap()).is_some());
    let r = call(p.addr, Method::GET, "/system/functions?namespace=openfaas-fn", &basic, "").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    // describe: GET /system/function/NAME?usage=1; 404 for an unknown one.
    let r = call(p.addr, Method::GET, "/system/function/echo?usage=1", &basic, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["envProcess"], "cat");
    let r = call(p.addr, Method::GET, "/system/function/nope?usage=1", &basic, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // secrets: create 201 (409 when it exists), list 200 (names only),
    // update 200 (404 unknown), remove 200 (404 unknown). Never 204.
    let r =
        call(p.addr, Method::POST, "/system/secrets", &json_basic, r#"{"name":"api-key","value":"s3cr3t"}"#)
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r =
        call(p.addr, Method::POST, "/system/secrets", &json_basic, r#"{"name":"api-key","value":"again"}"#)
            .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        p.addr,
        Method::POST,
        "/system/secrets",
        &json_basic,
        r#"{"name":"from-file","value":"trimmed","rawValue":"dW50cmltbWVkCg=="}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(p.addr, Method::GET, "/system/secrets", &basic, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        serde_json::json!([{"name":"api-key","namespace":"openfaas-fn"},{"name":"from-file","namespace":"openfaas-fn"}])
    );
    assert!(!r.body.contains("s3cr3t"));
    let r = call(p.addr, Method::PUT, "/system/secrets", &json_basic, r#"{"name":"api-key","value":"new"}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(p.addr, Method::PUT, "/system/secrets", &json_basic, r#"{"name":"nope","value":"x"}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(p.addr, Method::DELETE, "/system/secrets", &json_basic, r#"{"name":"api-key"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(p.addr, Method::DELETE, "/system/secrets", &json_basic, r#"{"name":"api-key"}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // logs: follow=false&name=echo&tail=-1 -> NDJSON of the five fields.
    let r = call(p.addr, Method::GET, "/system/logs?follow=false&name=echo&tail=-1", &basic, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty(), "the watchdog's start-up lines at least");
    for line in &lines {
        assert_eq!(line["name"], "echo");
        assert_eq!(line["namespace"], "openfaas-fn");
        assert!(line["instance"].as_str().unwrap().starts_with("echo-"));
        assert!(ferrofaas_types::time::parse(line["timestamp"].as_str().unwrap()).is_some());
        assert!(line["text"].is_string());
    }
    let since = "2000-01-01T10:00:00%2B01:00";
    let r = call(
        p.addr,
        Method::GET,
        &format!("/system/logs?follow=false&name=echo&since={since}&tail=1"),
        &basic,
        "",
    )
    .await;
    assert_eq!(r.body.lines().count(), 1);

    // version: provider, provider.version and version must all be there.
    let r = call(p.addr, Method::GET, "/system/info", &basic, "").await;
    let info = r.json();
    assert_eq!(info["provider"]["provider"], "ferrofaas-process");
    assert_eq!(info["provider"]["orchestration"], "process");
    assert!(info["provider"]["version"]["release"].is_string());
    assert!(info["version"]["release"].is_string());
    assert!(info["arch"].is_string());
    // The commit it was built from, on both (this is a git checkout).
    let head = git_head();
    for sha in [&info["version"]["sha"], &info["provider"]["version"]["sha"]] {
        let sha = sha.as_str().unwrap();
        match &head {
            Some(head) => assert_eq!(sha, head),
            None => assert!(sha.starts_with("unknown"), "{sha}"),
        }
    }

    // namespace list: a JSON array of strings.
    let r = call(p.addr, Method::GET, "/system/namespaces", &[("authorization", auth.as_str())], "").await;
    assert_eq!(r.json(), serde_json::json!(["openfaas-fn"]));

    // scale (the library call): 200/201/202.
    let r = call(
        p.addr,
        Method::POST,
        "/system/scale-function/echo",
        &json_basic,
        r#"{"serviceName":"echo","replicas":2}"#,
    )
    .await;
    assert!(matches!(r.status.as_u16(), 200 | 202), "{r:?}");
    p.wait_ready("echo", 2).await;

    // remove: DELETE with {"functionName"}: 202, then 404.
    let r =
        call(p.addr, Method::DELETE, "/system/functions", &json_basic, r#"{"functionName":"echo"}"#).await;
    assert!(matches!(r.status.as_u16(), 200 | 202), "{r:?}");
    let r =
        call(p.addr, Method::DELETE, "/system/functions", &json_basic, r#"{"functionName":"echo"}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let gone = eventually(Duration::from_secs(10), async || p.replica_pids("echo").is_empty()).await;
    assert!(gone, "replicas left after remove");
    let r = p.invoke("/function/echo.openfaas-fn", "x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
