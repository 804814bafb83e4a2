//! Namespaces as tenants: quotas stop a namespace at its limit on the
//! synchronous, asynchronous and triggered paths (429 and `Retry-After`),
//! across a restart; API tokens are scoped to one namespace and a role (a
//! read token cannot deploy, a token of A sees nothing of B, a revoked token
//! is refused at once); private functions need an invoke token and never
//! see it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

fn echo(name: &str, namespace: &str) -> serde_json::Value {
    json!({"service": name, "namespace": namespace, "image": format!("{}/wc", examples().display()), "envProcess": "cat"})
}

async fn deploy_in(p: &Platform, spec: serde_json::Value) {
    let name = spec["service"].as_str().unwrap().to_owned();
    let ns = spec["namespace"].as_str().unwrap().to_owned();
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let ready = eventually(Duration::from_secs(30), async || {
        let r = p.api(Method::GET, &format!("/system/function/{name}?namespace={ns}"), "").await;
        r.json()["availableReplicas"].as_u64() == Some(1)
    })
    .await;
    assert!(ready, "{name}.{ns} never became ready:\n{}", p.logs());
}

async fn invocations(p: &Platform, query: &str) -> u64 {
    let r = p.api(Method::GET, &format!("/system/usage?from=1h&{query}"), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["total"]["invocations"].as_u64().unwrap()
}

fn assert_over_quota(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{what}: {}", r.body);
    assert!(r.message().contains("quota"), "{what}: {}", r.body);
    let after: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(after >= 1, "{what}: Retry-After {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_stop_a_namespace_on_every_path() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    deploy_in(&p, echo("echo", "team-q")).await;
    deploy_in(&p, echo("echo", "openfaas-fn")).await;

    // Wrong quotas: 400 naming the field.
    for (body, field) in [
        (r#"{}"#, "quota"),
        (r#"{"period":"week","invocations":1}"#, ""),
        (r#"{"concurrent":0}"#, "concurrent"),
        (r#"{"gbSeconds":-2}"#, "gbSeconds"),
    ] {
        let r = p.api(Method::PUT, "/system/quotas/team-q", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
        }
    }

    let r = p.api(Method::PUT, "/system/quotas/team-q", r#"{"period":"hour","invocations":5}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for i in 0..5 {
        let r = p.invoke("/function/echo.team-q", &i.to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "call {i}: {}", r.body);
    }
    // Synchronous: refused, not run.
    assert_over_quota(&p.invoke("/function/echo.team-q", "6").await, "sync");
    // Asynchronous: refused at the door.
    assert_over_quota(&p.invoke("/async-function/echo.team-q", "7").await, "async");
    // Other namespaces go on.
    assert_eq!(p.invoke("/function/echo", "x").await.status, StatusCode::OK);
    assert_eq!(invocations(&p, "namespace=team-q").await, 5);
    let q = p.api(Method::GET, "/system/quotas", "").await.json();
    assert_eq!(q["team-q"]["invocations"], 5, "{q}");

    // A restart keeps the period's count (read back from the usage store).
    p.stop();
    let p = Platform::start(&programs(), state.path(), &[]);
    p.wait_ready("echo", 1).await;
    assert_over_quota(&p.invoke("/function/echo.team-q", "8").await, "sync, after a restart");

    // Raised to 8: three more. An asynchronous call is stored and run; then
    // a schedule's calls run until the quota is reached, and wait after.
    let r = p.api(Method::PUT, "/system/quotas/team-q", r#"{"period":"hour","invocations":8}"#).await;
    assert_eq!(r.json()["invocations"], 5, "counted from the store: {}", r.body);
    assert_eq!(p.invoke("/async-function/echo.team-q", "a").await.status, StatusCode::ACCEPTED);
    let ran =
        eventually(Duration::from_secs(20), async || invocations(&p, "namespace=team-q").await == 6).await;
    assert!(ran, "the asynchronous call did not run");
    let tick = json!({
        "service": "tick", "namespace": "team-q", "image": format!("{}/wc", examples().display()),
        "envProcess": "cat", "annotations": {"topic": "cron-function", "schedule": "@every 1s"},
    });
    deploy_in(&p, tick).await;
    let reached =
        eventually(Duration::from_secs(20), async || invocations(&p, "namespace=team-q").await == 8).await;
    assert!(reached, "the schedule's calls did not run up to the quota");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(invocations(&p, "namespace=team-q").await, 8, "triggered calls past the quota ran");
    assert_eq!(invocations(&p, "namespace=team-q&function=tick").await, 2);
    assert_over_quota(&p.invoke("/function/echo.team-q", "9").await, "sync, at 8");

    // Concurrent calls: one at a time in team-c.
    let sleeper = json!({
        "service": "sleeper", "namespace": "team-c", "image": format!("{}/wc", examples().display()),
        "envProcess": "sh -c 'sleep 1; cat'",
    });
    deploy_in(&p, sleeper).await;
    let r = p.api(Method::PUT, "/system/quotas/team-c", r#"{"concurrent":1}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let addr = p.addr;
    let first =
        tokio::spawn(async move { call(addr, Method::POST, "/function/sleeper.team-c", &[], "1").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = p.invoke("/function/sleeper.team-c", "2").await;
    assert_over_quota(&second, "concurrent");
    assert_eq!(second.header("retry-after"), Some("1"));
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(p.invoke("/function/sleeper.team-c", "3").await.status, StatusCode::OK, "one at a time again");

    // Removed: no limit.
    assert_eq!(p.api(Method::DELETE, "/system/quotas/team-q", "").await.status, StatusCode::NO_CONTENT);
    assert_eq!(p.invoke("/function/echo.team-q", "10").await.status, StatusCode::OK);
    assert_eq!(p.api(Method::DELETE, "/system/quotas/team-q", "").await.status, StatusCode::NOT_FOUND);
    p.stop();
}

async fn token(p: &Platform, name: &str, namespace: &str, role: &str) -> (String, String) {
    let body = json!({"name": name, "namespace": namespace, "role": role}).to_string();
    let r = p.api(Method::POST, "/system/tokens", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = r.json();
    (v["id"].as_str().unwrap().to_owned(), format!("Bearer {}", v["token"].as_str().unwrap()))
}

async fn as_token(p: &Platform, auth: &str, method: Method, path: &str, body: &str) -> Reply {
    let mut headers = vec![("authorization", auth)];
    if !body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    call(p.addr, method, path, &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scope_a_namespace_and_a_role() {
    let state = tempfile::tempdir().unwrap();
    // A NATS connector (its server need not be there): broker topics can
    // be named.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let connector = format!("nats=nats://127.0.0.1:{nowhere}");
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);
    deploy_in(&p, echo("b-only", "team-b")).await;
    let (_, read) = token(&p, "viewer", "team-a", "read").await;
    let (_, deploy) = token(&p, "ci", "team-a", "deploy").await;
    let (invoke_id, invoke) = token(&p, "caller", "team-a", "invoke").await;
    let (_, admin_b) = token(&p, "b-admin", "team-b", "admin").await;

    // A deploy token deploys into its namespace (named or not).
    let mut spec = echo("hidden", "team-a");
    spec["annotations"] = json!({"com.ferrofaas.private": "true"});
    spec["envProcess"] = json!("env");
    spec.as_object_mut().unwrap().remove("namespace");
    let r = as_token(&p, &deploy, Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    p.wait_ready("hidden.team-a", 1).await;
    // ... and nowhere else.
    let r = as_token(&p, &deploy, Method::POST, "/system/functions", &echo("x", "team-b").to_string()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.message().contains("team-a"), "{}", r.body);
    let r = as_token(&p, &deploy, Method::GET, "/system/functions?namespace=team-b", "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = as_token(&p, &deploy, Method::GET, "/system/function/b-only.team-b", "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = as_token(
        &p,
        &deploy,
        Method::DELETE,
        "/system/functions",
        r#"{"functionName":"b-only","namespace":"team-b"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = as_token(&p, &deploy, Method::POST, "/system/scale-function/b-only.team-b", r#"{"replicas":0}"#)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = p.api(Method::GET, "/system/function/b-only?namespace=team-b", "").await;
    assert_eq!(r.json()["replicas"], 1, "team-b untouched: {}", r.body);

    // A read token reads its namespace, and only reads.
    let r = as_token(&p, &read, Method::GET, "/system/functions", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let listed = r.json();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hidden"], "only team-a's functions");
    let r = as_token(&p, &read, Method::GET, "/system/namespaces", "").await;
    assert_eq!(r.json(), json!(["team-a"]));
    let r = as_token(&p, &read, Method::POST, "/system/functions", &echo("y", "team-a").to_string()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.message().contains("deploy"), "{}", r.body);
    let r = as_token(&p, &read, Method::POST, "/system/secrets", r#"{"name":"s","value":"v"}"#).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = as_token(&p, &read, Method::POST, "/system/tokens", r#"{"name":"more","role":"admin"}"#).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // What is the admin's alone.
    for (method, path) in [
        (Method::GET, "/system/plans"),
        (Method::GET, "/system/bundles"),
        (Method::GET, "/system/async/dead-letters"),
    ] {
        let r = as_token(&p, &deploy, method.clone(), path, "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.body);
    }

    // A private function: no token 401, another role or namespace 403,
    // an invoke token 200; the function never sees the token.
    let r = p.invoke("/function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = as_token(&p, &read, Method::POST, "/function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = as_token(&p, &admin_b, Method::POST, "/function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = as_token(&p, &invoke, Method::POST, "/function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Http_Method=POST"), "{}", r.body);
    assert!(!r.body.to_lowercase().contains("authorization"), "the token reached the function: {}", r.body);
    assert!(!r.body.contains(invoke.trim_start_matches("Bearer ")), "{}", r.body);
    let r = p.invoke("/async-function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "async too: {}", r.body);
    let r = as_token(&p, &invoke, Method::POST, "/async-function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // The admin's credentials call it too.
    let auth = p.auth.clone().unwrap();
    assert_eq!(as_token(&p, &auth, Method::POST, "/function/hidden.team-a", "").await.status, StatusCode::OK);

    // A broker's topics are every namespace's: a token cannot subscribe a
    // function to one (it would get team-b's messages), nor publish
    // replies; a schedule is its own.
    for annotations in [
        json!({"topic": "orders"}),
        json!({"topic": "cron-function", "schedule": "@hourly", "com.ferrofaas.reply-topic": "replies"}),
    ] {
        let mut spec = echo("listener", "team-a");
        spec["annotations"] = annotations.clone();
        let r = as_token(&p, &deploy, Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{annotations}: {}", r.body);
        assert!(r.message().contains("admin"), "{}", r.body);
    }
    let r = p.api(Method::GET, "/system/function/listener?namespace=team-a", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing deployed: {}", r.body);
    let mut ticking = echo("ticking", "team-a");
    ticking["annotations"] = json!({"topic": "cron-function", "schedule": "@hourly"});
    let r = as_token(&p, &deploy, Method::POST, "/system/functions", &ticking.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mut listener = echo("listener", "team-a");
    listener["annotations"] = json!({"topic": "orders"});
    let r = p.api(Method::POST, "/system/functions", &listener.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "the admin may: {}", r.body);

    // Usage through a token: its namespace's.
    let r = as_token(&p, &read, Method::GET, "/system/usage?from=1h&group_by=namespace", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rows = r.json()["rows"].clone();
    assert!(rows.as_array().unwrap().iter().all(|row| row["namespace"] == "team-a"), "{rows}");

    // Team B's admin makes tokens for team B only, sees only its own, and
    // cannot revoke team A's.
    let r = as_token(&p, &admin_b, Method::POST, "/system/tokens", r#"{"name":"b2","role":"read"}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["namespace"], "team-b");
    let r = as_token(
        &p,
        &admin_b,
        Method::POST,
        "/system/tokens",
        r#"{"name":"a2","namespace":"team-a","role":"admin"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let listed = as_token(&p, &admin_b, Method::GET, "/system/tokens", "").await.json();
    assert!(listed.as_array().unwrap().iter().all(|t| t["namespace"] == "team-b"), "{listed}");
    assert!(!listed.to_string().contains("sha256") && !listed.to_string().contains("fft_"), "{listed}");
    let r = as_token(&p, &admin_b, Method::DELETE, &format!("/system/tokens/{invoke_id}"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // Revoked: refused from the next request on.
    let r = p.api(Method::DELETE, &format!("/system/tokens/{invoke_id}"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = as_token(&p, &invoke, Method::POST, "/function/hidden.team-a", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = as_token(&p, &invoke, Method::GET, "/system/functions", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // Tokens outlive a restart, hashed in the state folder.
    p.stop();
    let kept = std::fs::read_to_string(state.path().join("tokens.json")).unwrap();
    assert!(!kept.contains(deploy.trim_start_matches("Bearer ")), "a token's secret is kept: {kept}");
    let p = Platform::start(&programs(), state.path(), &[]);
    assert_eq!(as_token(&p, &read, Method::GET, "/system/functions", "").await.status, StatusCode::OK);

    // The CLI, with --token (as faas-cli's), and faas token.
    let dir = tempfile::tempdir().unwrap();
    let token_arg = deploy.trim_start_matches("Bearer ");
    let gw = format!("http://{}", p.addr);
    let out = faas_ok(dir.path(), Some(&p), &["list", "-g", &gw, "--token", token_arg], None);
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("hidden")), "{out}");
    let err = faas_err(dir.path(), Some(&p), &["list", "-g", &gw, "--token", "fft_0_nope"], None);
    assert!(err.contains("token"), "{err}");
    let made =
        faas_ok(dir.path(), Some(&p), &["token", "create", "cli", "--role", "read", "-n", "team-a"], None);
    let cli_token = made.trim();
    assert!(cli_token.starts_with("fft_"), "{made}");
    let out = faas_ok(dir.path(), Some(&p), &["list", "-g", &gw, "--token", cli_token], None);
    assert!(out.contains("hidden"), "{out}");
    let listed = faas_ok(dir.path(), Some(&p), &["token", "list", "-n", "team-a"], None);
    assert!(listed.starts_with("ID") && listed.contains("viewer") && listed.contains("cli"), "{listed}");

    // A public function never sees the platform's credentials either (the
    // admin's, a token), nor does `faas invoke` send the saved ones; an
    // Authorization of the function's own is its own.
    let mut env = echo("env", "openfaas-fn");
    env["envProcess"] = json!("env");
    p.deploy(env, 1).await;
    let admin = p.auth.clone().unwrap();
    for auth in [admin.as_str(), read.as_str()] {
        let r = as_token(&p, auth, Method::POST, "/function/env", "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(!r.body.contains("Http_Authorization"), "the function saw {auth}: {}", r.body);
    }
    let r = as_token(&p, "Bearer its-own", Method::POST, "/function/env", "").await;
    assert!(r.body.contains("Http_Authorization=Bearer its-own"), "{}", r.body);
    let out = faas_ok(dir.path(), Some(&p), &["invoke", "env", "-g", &gw], Some(""));
    assert!(out.contains("Http_Method=POST") && !out.contains("Http_Authorization"), "{out}");
    let out = faas_ok(
        dir.path(),
        Some(&p),
        &["invoke", "hidden", "-n", "team-a", "-g", &gw, "--token", token_arg],
        Some(""),
    );
    assert!(out.contains("Http_Method=POST") && !out.contains("Http_Authorization"), "{out}");
    p.stop();
}

/// The call ids of `namespace`'s records, as gateway `p` has them.
async fn record_ids(p: &Platform, namespace: &str) -> std::collections::BTreeSet<String> {
    let r = p
        .api(Method::GET, &format!("/system/usage/records?namespace={namespace}&from=1h&limit=1000"), "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json().as_array().unwrap().iter().map(|r| r["callId"].as_str().unwrap().to_owned()).collect()
}

/// Two gateways sharing a NATS server (as a Swarm's do) share what they
/// meter and what limits it: each has every call's record once (also
/// after one was away), a token made through one works through the other
/// and is refused there once revoked, plans and quotas set through one are
/// the other's, and a quota counts the calls through both. The NATS server
/// takes only clients with its password (which the gateways' messages
/// never show): a function that reaches its port cannot mint tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn gateways_sharing_nats_share_usage_quotas_and_tokens() {
    let nats = common::brokers::nats_with_user("gateways", "n4ts-s3cret");
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--queue", nats.url.as_str()];
    let a = Platform::start(&programs(), state_a.path(), &args);
    let mut b = Platform::start(&programs(), state_b.path(), &args);
    // Without the password (as a function on this machine would try):
    // refused.
    let anonymous = nats.url.replace("gateways:n4ts-s3cret@", "");
    assert!(
        async_nats::connect(anonymous.as_str()).await.is_err(),
        "NATS takes a client without its password"
    );
    deploy_in(&a, echo("echo", "team-s")).await;
    deploy_in(&b, echo("echo", "team-s")).await;

    // Records: 6 calls through A, 4 through B; both have all 10, once.
    let mut ids = std::collections::BTreeSet::new();
    for (p, n) in [(&a, 6), (&b, 4)] {
        for i in 0..n {
            let r = p.invoke("/function/echo.team-s", &i.to_string()).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            ids.insert(r.header("x-call-id").unwrap().to_owned());
        }
    }
    for (name, p) in [("A", &a), ("B", &b)] {
        let all =
            eventually(Duration::from_secs(10), async || invocations(p, "namespace=team-s").await == 10)
                .await;
        assert!(
            all,
            "gateway {name} has {} of 10 calls:\n{}",
            invocations(p, "namespace=team-s").await,
            p.logs()
        );
        assert_eq!(record_ids(p, "team-s").await, ids, "gateway {name}'s records");
    }

    // Tokens: made through A, taken by B; revoked through A, refused by B.
    let (id, auth) = token(&a, "ci", "team-s", "read").await;
    let taken = eventually(Duration::from_secs(5), async || {
        as_token(&b, &auth, Method::GET, "/system/functions?namespace=team-s", "").await.status
            == StatusCode::OK
    })
    .await;
    assert!(taken, "B does not take A's token:\n{}", b.logs());
    let r = as_token(&b, &auth, Method::POST, "/system/functions", &echo("x", "team-s").to_string()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a read token deploys through B: {}", r.body);
    assert_eq!(
        a.api(Method::DELETE, &format!("/system/tokens/{id}"), "").await.status,
        StatusCode::NO_CONTENT
    );
    let revoked_at = std::time::Instant::now();
    let refused = eventually(Duration::from_secs(5), async || {
        as_token(&b, &auth, Method::GET, "/system/functions?namespace=team-s", "").await.status
            == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(refused, "B takes a token revoked through A");
    assert!(revoked_at.elapsed() < Duration::from_secs(1), "revoked in {:?}", revoked_at.elapsed());
    let listed = b.api(Method::GET, "/system/tokens", "").await.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");

    // A plan set through B is A's.
    let r = b.api(Method::PUT, "/system/plans/team-s", r#"{"perMillionInvocations":2.0}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let planned = eventually(Duration::from_secs(5), async || {
        a.api(Method::GET, "/system/plans", "").await.json()["team-s"]["perMillionInvocations"] == 2.0
    })
    .await;
    assert!(planned, "A does not have B's plan");

    // A quota set through A counts the calls through both: 10 so far, 14
    // in all; two more through A, then two through B, then none anywhere.
    let r = a.api(Method::PUT, "/system/quotas/team-s", r#"{"period":"hour","invocations":14}"#).await;
    assert_eq!(r.json()["invocations"], 10, "{}", r.body);
    let quota_in_b = eventually(Duration::from_secs(5), async || {
        b.api(Method::GET, "/system/quotas", "").await.json()["team-s"]["invocations"] == 10
    })
    .await;
    assert!(quota_in_b, "B does not enforce A's quota");
    for _ in 0..2 {
        assert_eq!(a.invoke("/function/echo.team-s", "q").await.status, StatusCode::OK);
    }
    let counted = eventually(Duration::from_secs(5), async || {
        b.api(Method::GET, "/system/quotas", "").await.json()["team-s"]["invocations"] == 12
    })
    .await;
    assert!(counted, "B does not count A's calls");
    for _ in 0..2 {
        assert_eq!(b.invoke("/function/echo.team-s", "q").await.status, StatusCode::OK);
    }
    assert_over_quota(&b.invoke("/function/echo.team-s", "q").await, "through B, at 14");
    let stopped = eventually(Duration::from_secs(5), async || {
        a.invoke("/function/echo.team-s", "q").await.status == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(stopped, "A admits calls past the quota counted through B");

    // Removed through B: A lets calls through again.
    assert_eq!(b.api(Method::DELETE, "/system/quotas/team-s", "").await.status, StatusCode::NO_CONTENT);
    let lifted = eventually(Duration::from_secs(5), async || {
        a.invoke("/function/echo.team-s", "q").await.status == StatusCode::OK
    })
    .await;
    assert!(lifted, "A still enforces a quota removed through B");
    let after_lift = invocations(&a, "namespace=team-s").await;

    // B away while A takes calls, revokes a token B had and makes one;
    // back, B refuses the one and takes the other from its first request,
    // catches up on the calls, and after another restart has counted
    // nothing twice.
    let (away_id, away) = token(&a, "away", "team-s", "read").await;
    let had = eventually(Duration::from_secs(5), async || {
        as_token(&b, &away, Method::GET, "/system/functions?namespace=team-s", "").await.status
            == StatusCode::OK
    })
    .await;
    assert!(had, "B does not take A's token");
    b.stop();
    for i in 0..5 {
        assert_eq!(a.invoke("/function/echo.team-s", &i.to_string()).await.status, StatusCode::OK);
    }
    assert_eq!(
        a.api(Method::DELETE, &format!("/system/tokens/{away_id}"), "").await.status,
        StatusCode::NO_CONTENT
    );
    let (_, kept) = token(&a, "kept", "team-s", "read").await;
    let want = after_lift + 5;
    for round in 0..2 {
        b = Platform::start(&programs(), state_b.path(), &args);
        let list = "/system/functions?namespace=team-s";
        let r = as_token(&b, &away, Method::GET, list, "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "round {round}: a token revoked while B was away");
        let r = as_token(&b, &kept, Method::GET, list, "").await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: a token made while B was away: {}", r.body);
        let caught_up =
            eventually(Duration::from_secs(10), async || invocations(&b, "namespace=team-s").await == want)
                .await;
        assert!(
            caught_up,
            "round {round}: B has {} of {want}:\n{}",
            invocations(&b, "namespace=team-s").await,
            b.logs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(invocations(&b, "namespace=team-s").await, want, "round {round}: counted twice");
        assert_eq!(record_ids(&b, "team-s").await, record_ids(&a, "team-s").await);
        b.stop();
    }
    assert_eq!(invocations(&a, "namespace=team-s").await, want);
    assert!(!a.logs().contains("n4ts-s3cret"), "the NATS password in the gateway's messages");
    a.stop();
}
