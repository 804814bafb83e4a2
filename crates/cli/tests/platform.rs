//! The platform as a whole: auth, restarts, bundles pushed from elsewhere,
//! and bad input that must change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_needs_credentials_functions_do_not() {
    let state = tempfile::tempdir().unwrap();
    let p =
        Platform::start(&programs(), state.path(), &["-f", &format!("{}/stack.yml", examples().display())]);
    let creds = state.path().join("credentials.json");
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    let password = v["password"].as_str().unwrap().to_owned();
    // Not a terminal (a pipe, as a log file would be): not printed, and
    // where it is said.
    assert!(!p.logs().contains(&password), "the password went to a pipe");
    assert!(p.logs().contains(&format!("it is in {}", creds.display())), "{}", p.logs());

    for path in
        ["/system/functions", "/system/info", "/system/secrets", "/system/logs?name=wc", "/system/bogus"]
    {
        let r = call(p.addr, Method::GET, path, &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
        r.message();
    }
    // A script's request (the web UI's) is refused without a challenge, so
    // that browsers do not open their own password prompt over the page.
    let r = call(p.addr, Method::GET, "/system/info", &[("x-requested-with", "ferrofaas-ui")], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(call(p.addr, Method::GET, "/healthz", &[], "").await.status, StatusCode::OK);
    assert_eq!(call(p.addr, Method::GET, "/metrics", &[], "").await.status, StatusCode::OK);
    p.wait_ready("wc", 1).await;
    assert_eq!(p.invoke("/function/wc", "x").await.status, StatusCode::OK);
    p.stop();

    // The second start reuses the credentials and does not print them.
    let p = Platform::start(&programs(), state.path(), &[]);
    assert!(!p.logs().contains(&password));
    assert_eq!(p.api(Method::GET, "/system/functions", "").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_and_secrets_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let r = p.api(Method::POST, "/system/secrets", r#"{"name":"db-password","value":"hunter2"}"#).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let spec = json!({
        "service": "reader",
        "image": format!("{}/wc", examples().display()),
        "envProcess": "sh -c 'cat \"$secret_mount_path/db-password\"'",
        "secrets": ["db-password"],
        "labels": {"team": "a"},
        "envVars": {"GREETING": "hi"},
    });
    p.deploy(spec, 1).await;
    let r = p
        .api(Method::POST, "/system/scale-function/reader", r#"{"serviceName":"reader","replicas":2}"#)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    p.wait_ready("reader", 2).await;
    assert_eq!(p.invoke("/function/reader", "").await.body, "hunter2");
    // The longest name validation takes is stored and read as any other.
    let long = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
    assert_eq!(long.len(), 253);
    let r = p.api(Method::POST, "/system/secrets", &json!({"name": long, "value": "far"}).to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let spec = json!({"service": "long", "image": format!("{}/wc", examples().display()),
        "envProcess": format!("cat /var/openfaas/secrets/{long}"), "secrets": [long]});
    p.deploy(spec, 1).await;
    assert_eq!(p.invoke("/function/long", "").await.body, "far");
    let r = p.api(Method::DELETE, "/system/functions", r#"{"functionName":"long"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = p.api(Method::DELETE, "/system/secrets", &json!({"name": long}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The value is never in API output or logs.
    for path in ["/system/secrets", "/system/function/reader", "/system/logs?name=reader&tail=-1"] {
        assert!(!p.api(Method::GET, path, "").await.body.contains("hunter2"), "{path}");
    }
    // An updated secret reaches running replicas.
    let r = p.api(Method::PUT, "/system/secrets", r#"{"name":"db-password","value":"correct-horse"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(p.invoke("/function/reader", "").await.body, "correct-horse");
    // In use: it cannot be deleted.
    let r = p.api(Method::DELETE, "/system/secrets", r#"{"name":"db-password"}"#).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.message().contains("reader"));
    assert!(p.stop().success());
    assert!(std::fs::read_dir(state.path().join("run")).map(|d| d.count()).unwrap_or(0) <= 1);

    let p = Platform::start(&programs(), state.path(), &[]);
    p.wait_ready("reader", 2).await;
    let f = p.api(Method::GET, "/system/function/reader", "").await.json();
    assert_eq!(f["replicas"], 2);
    assert_eq!(f["labels"]["team"], "a");
    assert_eq!(f["envVars"]["GREETING"], "hi");
    assert_eq!(p.invoke("/function/reader", "").await.body, "correct-horse");
    let r = p.api(Method::GET, "/system/secrets", "").await;
    assert_eq!(r.json()[0]["name"], "db-password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_built_elsewhere_is_pushed_then_deployed() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let archive = tar(&[
        ("bundle.json", r#"{"env":{"fprocess":"./shout.sh","mode":"serializing"}}"#, 0o644),
        ("shout.sh", "#!/bin/sh\ntr a-z A-Z\n", 0o755),
    ]);
    let r = push_bundle(&p, "shout:1.0", archive.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["image"], "shout:1.0");
    assert!(r.json()["digest"].as_str().unwrap().starts_with("sha256:"));
    p.deploy(json!({"service": "shout", "image": "shout:1.0"}), 1).await;
    assert_eq!(p.invoke("/function/shout", "quiet please").await.body, "QUIET PLEASE");
    let list = p.api(Method::GET, "/system/bundles", "").await.json();
    assert_eq!(list[0]["image"], "shout:1.0");

    // A new build under the same tag rolls the replicas.
    let archive = tar(&[
        ("bundle.json", r#"{"env":{"fprocess":"./shout.sh","mode":"serializing"}}"#, 0o644),
        ("shout.sh", "#!/bin/sh\necho v2; tr a-z A-Z\n", 0o755),
    ]);
    let first = r.json()["digest"].as_str().unwrap().to_owned();
    let r = push_bundle(&p, "shout:1.0", archive).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["replaced"], first.as_str(), "a re-push says what the tag named before");
    // The function runs what it was deployed with until it is deployed again.
    assert_eq!(p.invoke("/function/shout", "x").await.body, "X");
    let r = p
        .api(Method::PUT, "/system/functions", &json!({"service": "shout", "image": "shout:1.0"}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let rolled = eventually(Duration::from_secs(20), async || {
        p.invoke("/function/shout", "x").await.body.starts_with("v2")
    })
    .await;
    assert!(rolled, "the new bundle never served");

    // Unknown images are refused with a message that says what to do.
    let r = p
        .api(Method::POST, "/system/functions", &json!({"service": "ghost", "image": "ghost:1"}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("push it first"), "{}", r.body);
    assert_eq!(r.json()["field"], "image", "the field at fault, for the UI");
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A bundle or an image cannot reach outside itself: links out of a
/// bundle, a gzip bomb, a folder image outside the operator's roots or in
/// the state folder, a name Docker would not take; and an upload is
/// written to disk as it arrives, not kept in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_and_images_stay_within_their_bounds() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--bundle-max-unpacked", "300Mi"]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bundle.json", state.path().join("credentials.json")).unwrap();
    let r = push_bundle(&p, "sneaky:1", b.into_inner().unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("leaves the bundle"), "{}", r.body);
    assert!(!r.body.contains("admin"), "{}", r.body);

    // 1 GiB of zeros in a small gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut t = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(1 << 30);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "zeros", std::io::repeat(0).take(1 << 30)).unwrap();
        t.finish().unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let r = push_bundle(&p, "bomb:1", bomb).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.message().contains("--bundle-max-unpacked"), "{}", r.body);

    let deploy = async |image: &str| {
        let spec =
            json!({"service": "probe", "image": image, "envProcess": "cat", "envVars": {"mode": "static"}});
        p.api(Method::POST, "/system/functions", &spec.to_string()).await
    };
    for (image, why) in [
        (state.path().display().to_string(), "state folder"),
        (state.path().join("functions").display().to_string(), "state folder"),
        ("/etc".to_owned(), "not under a folder this gateway runs images from"),
        ("a:b:c".to_owned(), "not a valid image reference"),
        ("Shout:1".to_owned(), "not a valid image reference"),
    ] {
        let r = deploy(&image).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{image}: {}", r.body);
        assert!(r.message().contains(why), "{image}: {}", r.body);
        assert_eq!(r.json()["field"], "image");
    }
    let r = push_bundle(&p, "a:b:c", tar(&[("x", "x", 0o644)])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // 256 MiB pushed: the gateway's memory does not grow by it.
    let before = peak_rss_kib(p.pid());
    let r = push_bundle(&p, "big:1", tar_filled("data", 256 << 20, 7)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let after = peak_rss_kib(p.pid());
    assert!(after < before + 64 * 1024, "peak RSS {before} KiB before, {after} KiB after");
    assert_eq!(std::fs::read_dir(state.path().join("uploads")).unwrap().count(), 0, "the upload is gone");
}

/// A bundle pushed while the gateway's disk is full: 507 (the client did
/// nothing wrong, unlike the 400 a broken upload gets), the partial upload
/// removed, and the gateway goes on, its state whole. The state folder is
/// a 16 MiB tmpfs (mounting it needs root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (mounts a small tmpfs): cargo test -- --ignored runs it"]
async fn an_upload_to_a_full_disk_is_507_and_changes_nothing() {
    // SAFETY: geteuid has no preconditions.
    require(unsafe { libc::geteuid() } == 0, "root", "run the tests as root");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "ferrofaas-test", state.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let p = Platform::start(&programs(), &state, &[]);
    let small = tar(&[("bundle.json", r#"{"env":{"fprocess":"cat","mode":"streaming"}}"#, 0o644)]);
    assert_eq!(push_bundle(&p, "small:1", small.clone()).await.status, StatusCode::CREATED);

    let r = push_bundle(&p, "big:1", tar_filled("data", 32 << 20, 7)).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.body);
    assert!(r.message().contains("could not keep the request body"), "{}", r.body);
    assert_eq!(std::fs::read_dir(state.join("uploads")).unwrap().count(), 0, "the partial upload is gone");

    // The space is back, and what was stored before is whole.
    assert_eq!(push_bundle(&p, "small:2", small).await.status, StatusCode::CREATED);
    let spec = json!({"service": "still", "image": "small:1"});
    p.deploy(spec, 1).await;
    assert_eq!(p.invoke("/function/still", "ok").await.body, "ok");
    drop(p);
}

/// A function whose replicas cannot start says why, in the API and in
/// `faas describe`, and says nothing once they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_is_not_ready_says_why() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    // A watchdog it cannot start: a mode there is none of.
    let spec =
        json!({"service": "broken", "image": image, "envProcess": "cat", "envVars": {"mode": "bogus"}});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mut last = serde_json::Value::Null;
    let said = eventually(Duration::from_secs(20), async || {
        last = p.api(Method::GET, "/system/function/broken", "").await.json();
        last["reason"].as_str().is_some_and(|r| r.contains("exited during start-up"))
    })
    .await;
    assert!(said, "{last}");
    assert_eq!(last["availableReplicas"], 0);
    let dir = tempfile::tempdir().unwrap();
    let out = faas(dir.path(), Some(&p), &["describe", "broken"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Status:             Not Ready\nReason:             replica broken-"), "{text}");
    // Fixed: ready, and no reason any more.
    let spec = json!({"service": "broken", "image": image, "envProcess": "cat"});
    let r = p.api(Method::PUT, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    p.wait_ready("broken", 1).await;
    let healed = eventually(Duration::from_secs(10), async || {
        p.api(Method::GET, "/system/function/broken", "").await.json().get("reason").is_none()
    })
    .await;
    assert!(healed, "{}", p.api(Method::GET, "/system/function/broken", "").await.body);

    // An http-mode function whose server exits at start: said within
    // moments (its watchdog exits with it), not at a start-up timeout.
    let spec = json!({"service": "crashy", "image": image, "envProcess": "sh -c 'echo no database >&2; exit 3'",
        "envVars": {"mode": "http", "upstream_url": "http://127.0.0.1:1"}});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let deployed = std::time::Instant::now();
    let said = eventually(Duration::from_secs(20), async || {
        last = p.api(Method::GET, "/system/function/crashy", "").await.json();
        last["reason"].as_str().is_some_and(|r| r.contains("exited during start-up"))
    })
    .await;
    assert!(said, "{last}");
    assert!(deployed.elapsed() < Duration::from_secs(10), "said after {:?}", deployed.elapsed());
    eprintln!("crashy: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fields_are_named_and_traffic_has_a_history() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    for (spec, field) in [
        (json!({"service": "Bad_Name", "image": image}), "service"),
        (json!({"service": "wc", "image": " "}), "image"),
        (json!({"service": "wc", "image": image, "envVars": {"": "y"}}), "envVars"),
        (
            json!({"service": "wc", "image": image, "labels": {"com.openfaas.scale.max": "x"}}),
            "labels.com.openfaas.scale.max",
        ),
    ] {
        let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{spec}");
        assert_eq!(r.json()["field"], field, "{spec}: {}", r.body);
        assert!(r.message().starts_with(&format!("{field}: ")), "{}", r.body);
    }
    let r = p.api(Method::POST, "/system/secrets", r#"{"name":"Bad Name","value":"v"}"#).await;
    assert_eq!((r.status, r.json()["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));

    let r = p.api(Method::GET, "/system/function-history/wc", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no such function: {}", r.body);
    p.deploy(json!({"service": "wc", "image": image}), 1).await;
    for _ in 0..15 {
        assert_eq!(p.invoke("/function/wc", "a b c").await.status, StatusCode::OK);
    }
    let mut p50 = None;
    let seen = eventually(Duration::from_secs(10), async || {
        let h = p.api(Method::GET, "/system/function-history/wc", "").await.json();
        assert_eq!(h["intervalSeconds"], 2.0);
        let points = h["points"].as_array().unwrap();
        // Rates times the interval: every call counted once.
        let calls: f64 = points.iter().map(|pt| pt["rps"].as_f64().unwrap() * 2.0).sum();
        for pt in points.iter().filter(|pt| pt["rps"].as_f64().unwrap() > 0.0) {
            assert_eq!((pt["errorRatio"].as_f64(), pt["ready"].as_u64()), (Some(0.0), Some(1)));
            p50 = pt["p50"].as_f64();
        }
        (calls - 15.0).abs() < 1e-9
    })
    .await;
    assert!(seen, "the 15 calls in the history");
    assert!(p50.is_some_and(|s| s > 0.0 && s < 1.0), "{p50:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_json_and_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "keep", "image": image}), 1).await;
    let r = p.api(Method::POST, "/system/secrets", r#"{"name":"keep","value":"v"}"#).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before_functions = p.api(Method::GET, "/system/functions", "").await.json();
    let stored = std::fs::read_dir(state.path().join("functions/openfaas-fn")).unwrap().count();

    let big = "x".repeat(2 << 20);
    let cases: Vec<(Method, &str, String, u16, &str)> = vec![
        (Method::POST, "/system/functions", "{not json".into(), 400, "invalid JSON"),
        (Method::POST, "/system/functions", "".into(), 400, "JSON body is required"),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a", "image": image, "replica": 3}).to_string(),
            400,
            "unknown field `replica`",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "Bad_Name", "image": image}).to_string(),
            400,
            "invalid function name",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a".repeat(64), "image": image}).to_string(),
            400,
            "at most 63",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "../etc", "image": image}).to_string(),
            400,
            "invalid function name",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a", "image": image, "namespace": "Bad"}).to_string(),
            400,
            "namespace",
        ),
        (Method::POST, "/system/functions", json!({"service": "a", "image": ""}).to_string(), 400, "image"),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a", "image": "../../etc"}).to_string(),
            400,
            "image",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a", "image": image, "secrets": ["../x"]}).to_string(),
            400,
            "secret",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a", "image": image, "secrets": ["missing"]}).to_string(),
            400,
            "does not exist",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "a", "image": image, "limits": {"memory": "lots"}}).to_string(),
            400,
            "limits.memory",
        ),
        (
            Method::POST,
            "/system/functions",
            json!({"service": "keep", "image": image}).to_string(),
            409,
            "already exists",
        ),
        (Method::POST, "/system/functions", big.clone(), 413, "larger than"),
        (
            Method::PUT,
            "/system/functions",
            json!({"service": "nope", "image": image}).to_string(),
            404,
            "not found",
        ),
        (
            Method::DELETE,
            "/system/functions",
            json!({"functionName": "../keep"}).to_string(),
            400,
            "invalid function name",
        ),
        (
            Method::POST,
            "/system/scale-function/keep",
            json!({"serviceName": "keep", "replicas": -1}).to_string(),
            400,
            "invalid JSON",
        ),
        (
            Method::POST,
            "/system/scale-function/keep",
            json!({"serviceName": "keep", "replicas": 100000}).to_string(),
            400,
            "at most",
        ),
        (
            Method::POST,
            "/system/scale-function/keep",
            json!({"serviceName": "other", "replicas": 2}).to_string(),
            400,
            "does not match",
        ),
        (Method::GET, "/system/function/..%2fkeep", String::new(), 400, "invalid function name"),
        (
            Method::POST,
            "/system/secrets",
            json!({"name": "../../credentials.json", "value": "x"}).to_string(),
            400,
            "invalid secret name",
        ),
        (Method::POST, "/system/secrets", json!({"name": "empty"}).to_string(), 400, "value"),
        (
            Method::POST,
            "/system/secrets",
            json!({"name": format!("{}.b", "a".repeat(252)), "value": "x"}).to_string(),
            400,
            "at most 253",
        ),
        (
            Method::POST,
            "/system/secrets",
            json!({"name": "k", "value": "v", "valeu": "typo"}).to_string(),
            400,
            "unknown field",
        ),
        (Method::GET, "/system/logs", String::new(), 400, "name parameter is required"),
        (Method::GET, "/system/logs?name=keep&tail=many", String::new(), 400, "tail"),
        (Method::GET, "/system/logs?name=keep&since=yesterday", String::new(), 400, "since"),
        (Method::GET, "/system/logs?name=nope", String::new(), 404, "not found"),
        (Method::GET, "/system/functions?namespace=..", String::new(), 400, "namespace"),
        (Method::PATCH, "/system/functions", String::new(), 405, "not allowed"),
        (Method::POST, "/system/bundles?image=Bad:tag", "data".into(), 400, "image"),
        (
            Method::POST,
            "/system/bundles?image=x:1",
            "not a tar archive, just text.........".into(),
            400,
            "archive",
        ),
        (Method::GET, "/system/nothing-here", String::new(), 404, "no route"),
    ];
    let auth = p.auth.clone().unwrap();
    for (method, path, body, status, needle) in cases {
        let r = if path.starts_with("/system/bundles") {
            // An archive, sent as faas sends it: no Content-Type.
            call(p.addr, method.clone(), path, &[("authorization", &auth)], &body).await
        } else {
            p.api(method.clone(), path, &body).await
        };
        assert_eq!(r.status.as_u16(), status, "{method} {path} {}: {}", &body[..body.len().min(80)], r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{method} {path}");
        let message = r.message();
        assert!(message.contains(needle), "{method} {path}: {message:?} should mention {needle:?}");
    }
    // A 405 says which methods the path takes, from the table it was
    // routed by: the API's, and the open pages'.
    for (method, path, allow) in [
        (Method::PATCH, "/system/functions", "GET, POST, PUT, DELETE"),
        (Method::GET, "/system/scale-function/keep", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::DELETE, "/metrics", "GET"),
        (Method::POST, "/ui/", "GET, HEAD"),
    ] {
        let r = p.api(method.clone(), path, "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {}", r.body);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }

    // What a page of another site can make the admin's browser send (its
    // Basic credentials attached): a form, or a request from another
    // origin. Refused, and nothing changes.
    let spec =
        json!({"service": "csrf", "image": format!("{}/wc", examples().display()), "envProcess": "cat"})
            .to_string();
    for (headers, status, needle) in [
        (vec![("content-type", "text/plain")], 415, "application/json"),
        (vec![("content-type", "application/x-www-form-urlencoded")], 415, "application/json"),
        (vec![("content-type", "multipart/form-data; boundary=x")], 415, "application/json"),
        (vec![], 415, "without a Content-Type"),
        (vec![("content-type", "application/json"), ("origin", "http://evil.example")], 403, "cross-origin"),
        (vec![("content-type", "application/json"), ("origin", "null")], 403, "cross-origin"),
        (vec![("content-type", "application/json"), ("sec-fetch-site", "cross-site")], 403, "cross-origin"),
        (vec![("content-type", "application/json"), ("sec-fetch-site", "same-site")], 403, "cross-origin"),
    ] {
        let mut all = vec![("authorization", auth.as_str())];
        all.extend(headers.iter().copied());
        let r = call(p.addr, Method::POST, "/system/functions", &all, &spec).await;
        assert_eq!(r.status.as_u16(), status, "{headers:?}: {}", r.body);
        assert!(r.message().contains(needle), "{headers:?}: {}", r.body);
    }
    let r = call(
        p.addr,
        Method::POST,
        "/system/bundles?image=x:2",
        &[("authorization", &auth), ("content-type", "text/plain")],
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    // The gateway's own origin writes (as the UI does).
    let own = format!("http://{}", p.addr);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("origin", own.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = call(
        p.addr,
        Method::POST,
        "/system/scale-function/keep",
        &headers,
        r#"{"serviceName":"keep","replicas":1}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    assert_eq!(p.api(Method::GET, "/system/functions", "").await.json(), before_functions);
    assert_eq!(std::fs::read_dir(state.path().join("functions/openfaas-fn")).unwrap().count(), stored);
    assert_eq!(
        p.api(Method::GET, "/system/secrets", "").await.json(),
        json!([{"name":"keep","namespace":"openfaas-fn"}])
    );
    assert!(!state.path().join("credentials.json.bak").exists());
    assert_eq!(p.invoke("/function/keep", "still fine").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faas_list_prints_a_header_then_one_function_per_line() {
    let state = tempfile::tempdir().unwrap();
    let p =
        Platform::start(&programs(), state.path(), &["-f", &format!("{}/stack.yml", examples().display())]);
    p.wait_ready("wc", 1).await;
    assert_eq!(p.invoke("/function/wc", "x").await.status, StatusCode::OK);
    let list = |extra: &[&str]| {
        std::process::Command::new(FAAS)
            .arg("list")
            .args(extra)
            .env("OPENFAAS_URL", format!("http://{}", p.addr))
            .env("FERROFAAS_STATE", state.path())
            .output()
            .unwrap()
    };
    let out = list(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["Function", "Invocations", "Replicas"]);
    assert_eq!(lines[1], ["hello-python", "0", "1"]);
    assert_eq!(lines[2], ["wc", "1", "1"]);
    assert_eq!(lines.len(), 3);

    // Without the platform's credentials: a clear error, non-zero exit.
    let out = std::process::Command::new(FAAS)
        .args(["list", "--gateway", &format!("http://{}", p.addr)])
        .env("FERROFAAS_STATE", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    // No gateway there: a clear error too.
    let out =
        std::process::Command::new(FAAS).args(["list", "--gateway", "http://127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_and_scaling_fail_no_request() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    // Scaled by hand, kept there under load (factor 0: no autoscaling).
    let labels = json!({"com.openfaas.scale.factor": "0"});
    p.deploy(json!({"service": "roll", "image": image, "envProcess": "echo v1", "labels": labels}), 1).await;
    let r =
        p.api(Method::POST, "/system/scale-function/roll", r#"{"serviceName":"roll","replicas":3}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    p.wait_ready("roll", 3).await;
    let codes = under_load(p.addr, "/function/roll", async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let spec = json!({"service": "roll", "image": image, "envProcess": "echo v2", "labels": labels});
        let r = p.api(Method::PUT, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let rolled = eventually(Duration::from_secs(20), async || {
            p.invoke("/function/roll", "").await.body == "v2\n" && p.replica_pids("roll").len() == 3
        })
        .await;
        assert!(rolled, "the update never finished");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = p
            .api(Method::POST, "/system/scale-function/roll", r#"{"serviceName":"roll","replicas":1}"#)
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert!(eventually(Duration::from_secs(20), async || p.replica_pids("roll").len() == 1).await);
    })
    .await;
    let failed: Vec<_> = codes.iter().filter(|&&c| c != 200).collect();
    assert!(codes.len() > 50, "a light load, but a load: {} requests", codes.len());
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}", failed.len(), codes.len());
}

/// At a terminal the first start shows the password (the admin is there to
/// read it); `script` gives `faas serve` a pseudo-terminal.
#[test]
fn the_password_is_shown_at_a_terminal_only() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("SKIPPED: no script(1) (util-linux) for a pseudo-terminal");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let line = format!(
        "{FAAS} serve --port 0 --state {} --watchdog {} --unsafe-no-sandbox",
        state.path().display(),
        programs().watchdog.display()
    );
    let mut child = Command::new("/usr/bin/script")
        .args(["-qfec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("listening on") {
            break;
        }
    }
    // SAFETY: kill(2) on the process group this test started.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGTERM);
    }
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("credentials.json")).unwrap()).unwrap();
    assert!(seen.contains(&format!("password: {}", v["password"].as_str().unwrap())), "{seen}");
}
