//! The Docker provider, against a real engine: images built from bundles
//! (and base images from Debian packages), replicas as containers, secrets,
//! limits, a read-only root, non-root users, replacement, clean-up.
//!
//! They need a Docker engine: ignored by `cargo test` (the summary says
//! so), run by `cargo test -- --ignored` (`.ci/run` starts the engine).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    require(ok, "a Docker engine", ".ci/run installs and starts one");
    image_watchdog();
}

fn containers(owner: &std::path::Path, function: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=com.ferrofaas.owner={}", owner.display()))
        .args(["--filter", &format!("label=com.ferrofaas.function={function}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: cargo test -- --ignored runs it (.ci/run starts one)"]
async fn functions_run_as_containers() {
    require_docker();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--provider", "docker"]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    faas_ok(dir, Some(&p), &["secret", "create", "db", "--from-literal", "s3cret"], None);
    faas_ok(dir, Some(&p), &["new", "probe", "--lang", "python3-http"], None);
    std::fs::write(
        dir.join("probe/handler.py"),
        r#"import os, six
def handle(event, context):
    secret = open("/var/openfaas/secrets/db").read()
    try:
        open("/home/app/x", "w").write("x"); root = "writable"
    except OSError:
        root = "read-only"
    open("/tmp/scratch", "w").write("ok")
    return f"uid={os.getuid()} secret={secret} root={root} six={six.__version__} body={event.body.decode()}"
"#,
    )
    .unwrap();
    std::fs::write(dir.join("probe/requirements.txt"), "six==1.16.0\n").unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
    std::fs::write(
        dir.join("stack.yml"),
        // Scaled by hand below, and kept there under load (factor 0: the
        // autoscaler leaves it).
        format!(
            "{stack}    secrets: [db]\n    readonly_root_filesystem: true\n    limits:\n      memory: 96Mi\n      \
             cpu: 500m\n    labels:\n      com.openfaas.scale.factor: \"0\"\n"
        ),
    )
    .unwrap();
    // The bundle goes to the gateway, which builds the image on its engine.
    faas_ok(dir, Some(&p), &["up"], None);
    p.wait_ready("probe", 1).await;
    let answer = faas_ok(dir, Some(&p), &["invoke", "probe"], Some("hi"));
    assert_eq!(answer, "uid=1000 secret=s3cret root=read-only six=1.16.0 body=hi");

    let ids = containers(state.path(), "probe");
    assert_eq!(ids.len(), 1);
    let inspect = docker(&[
        "inspect",
        &ids[0],
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}}",
    ]);
    assert_eq!(inspect, format!("{} 500000000 true 1000:1000", 96 * 1024 * 1024));

    // Scaled to 3: three distinct replicas answer.
    faas_ok(dir, Some(&p), &["scale", "probe", "--replicas", "3"], None);
    p.wait_ready("probe", 3).await;
    std::fs::write(
        dir.join("probe/handler.py"),
        "import socket\ndef handle(event, context):\n    return socket.gethostname()\n",
    )
    .unwrap();
    // An update under a light load fails no request.
    let codes = under_load(p.addr, "/function/probe", async {
        faas_ok(dir, Some(&p), &["up"], None);
        let rolled = eventually(Duration::from_secs(60), async || {
            !p.invoke("/function/probe", "").await.body.contains("uid=")
                && containers(state.path(), "probe").len() == 3
        })
        .await;
        assert!(rolled, "the update never finished");
    })
    .await;
    assert!(codes.iter().all(|&c| c == 200), "failed requests during the update: {codes:?}");
    let mut hosts = std::collections::HashSet::new();
    for _ in 0..30 {
        hosts.insert(p.invoke("/function/probe", "").await.body);
    }
    assert_eq!(hosts.len(), 3, "three replicas answered: {hosts:?}");

    // One killed: replaced.
    faas_ok(dir, Some(&p), &["scale", "probe", "--replicas", "2"], None);
    p.wait_ready("probe", 2).await;
    assert!(eventually(Duration::from_secs(30), async || containers(state.path(), "probe").len() == 2).await);
    let before = containers(state.path(), "probe");
    docker(&["kill", &before[0]]);
    let replaced = eventually(Duration::from_secs(30), async || {
        let now = containers(state.path(), "probe");
        now.len() == 2 && !now.contains(&before[0])
    })
    .await;
    assert!(replaced, "the killed container was not replaced");
    p.wait_ready("probe", 2).await;
    assert_eq!(p.invoke("/function/probe", "again").await.status, StatusCode::OK);

    // At zero, a request starts a container and is answered (a cold start).
    faas_ok(dir, Some(&p), &["scale", "probe", "--replicas", "0"], None);
    assert!(eventually(Duration::from_secs(30), async || containers(state.path(), "probe").is_empty()).await);
    assert_eq!(p.invoke("/function/probe", "").await.status, StatusCode::OK);
    let metrics = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    assert!(
        metrics.contains("gateway_function_cold_starts_total{function_name=\"probe.openfaas-fn\"} 1"),
        "{metrics}"
    );
    faas_ok(dir, Some(&p), &["scale", "probe", "--replicas", "2"], None);
    p.wait_ready("probe", 2).await;

    // Usage: the engine's stats give the containers' CPU time and memory
    // (a Python replica holds some MiB, under its 96 MiB limit).
    let used = async || {
        let body = p.api(Method::GET, "/system/usage?from=1h&function=probe", "").await.body;
        let total = serde_json::from_str::<serde_json::Value>(&body).unwrap()["total"].clone();
        (total["cpuSeconds"].as_f64().unwrap(), total["peakMemoryMib"].as_f64().unwrap())
    };
    let read = eventually(Duration::from_secs(30), async || {
        let (cpu, mib) = used().await;
        cpu > 0.0 && mib > 1.0
    })
    .await;
    let (cpu, mib) = used().await;
    assert!(read, "CPU {cpu} s, peak {mib} MiB");
    assert!(mib < 96.0, "peak {mib} MiB over the limit");

    // Logs come from the containers.
    let logs = p.api(Method::GET, "/system/logs?name=probe&tail=-1", "").await;
    assert!(logs.body.contains("function is ready"), "{}", logs.body);

    // A restart of the platform leaves no stray container behind.
    let stopped = p.stop();
    assert!(stopped.success());
    assert!(containers(state.path(), "probe").is_empty(), "replicas stop with the platform");
    let p = Platform::start(&programs(), state.path(), &["--provider", "docker"]);
    p.wait_ready("probe", 2).await;
    assert_eq!(containers(state.path(), "probe").len(), 2);
    faas_ok(dir, Some(&p), &["remove", "probe"], None);
    assert!(eventually(Duration::from_secs(20), async || containers(state.path(), "probe").is_empty()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: cargo test -- --ignored runs it (.ci/run starts one)"]
async fn images_build_locally_and_unknown_images_are_refused() {
    require_docker();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--provider", "docker"]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    faas_ok(dir, Some(&p), &["new", "shell", "--lang", "bash"], None);
    let tag = format!("ferrofaas-test-shell:{:x}", std::process::id());
    let stack = std::fs::read_to_string(dir.join("stack.yml"))
        .unwrap()
        .replace("image: shell:latest", &format!("image: {tag}"));
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
    // faas build --docker: the image on the local engine, no registry.
    faas_ok(dir, Some(&p), &["build", "--docker"], None);
    assert!(!docker(&["image", "inspect", &tag, "--format", "{{.Id}}"]).is_empty());
    // Deployed by name, with the image as it is.
    let spec = serde_json::json!({"service": "shell", "image": tag});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    p.wait_ready("shell", 1).await;
    let r = p.invoke("/function/shell", "containers").await;
    assert_eq!(r.body, "Hello, containers, from bash! (POST /)\n");

    // Contained beyond the engine's defaults: no capability, no new
    // privileges, a pids limit; as the engine reports it and as a process
    // in the replica sees it.
    let ids = containers(state.path(), "shell");
    let host = docker(&[
        "inspect",
        &ids[0],
        "--format",
        "{{.HostConfig.CapDrop}} {{.HostConfig.CapAdd}} {{.HostConfig.SecurityOpt}} {{.HostConfig.PidsLimit}}",
    ]);
    assert_eq!(host, "[ALL] [] [no-new-privileges] 512");
    let status =
        |id: &str| docker(&["exec", id, "grep", "-E", "^(CapEff|CapBnd|NoNewPrivs)", "/proc/1/status"]);
    assert_eq!(
        status(&ids[0]).split_whitespace().collect::<Vec<_>>(),
        ["CapEff:", "0000000000000000", "CapBnd:", "0000000000000000", "NoNewPrivs:", "1"]
    );
    // A capability the function asks for, and only that one.
    let spec = serde_json::json!({"service": "binder", "image": tag,
        "labels": {"com.ferrofaas.capabilities": "NET_BIND_SERVICE"}});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    p.wait_ready("binder", 1).await;
    let binder = containers(state.path(), "binder");
    let caps = status(&binder[0]);
    assert!(caps.contains("CapBnd:\t0000000000000400"), "only CAP_NET_BIND_SERVICE: {caps}");
    // Containers need a network: refused, naming the label.
    let spec =
        serde_json::json!({"service": "offline", "image": tag, "labels": {"com.ferrofaas.network": "none"}});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], "labels.com.ferrofaas.network");
    faas_ok(dir, Some(&p), &["remove", "binder"], None);

    let spec = serde_json::json!({"service": "ghost", "image": "no-such-image:1"});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("no Docker image no-such-image:1"), "{}", r.body);
    faas_ok(dir, Some(&p), &["remove", "shell"], None);
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
}

/// A replica the provider gives up on while a request waits for it ends
/// that request then, with a 502 naming it, not at the upstream timeout:
/// here its container is cut off the network (no reset can reach the
/// gateway, and its address may go to another test's container, whose
/// watchdog would pass its health checks), which the engine reports; it is
/// replaced and the next request goes to the new replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: cargo test -- --ignored runs it (.ci/run starts one)"]
async fn a_replica_lost_mid_request_ends_it_then() {
    require_docker();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--provider", "docker"]);
    let env = r#"{"env":{"fprocess":"sh -c 'cat >/dev/null; sleep 20; echo late'","mode":"streaming","exec_timeout":"60s"}}"#;
    assert_eq!(
        push_bundle(&p, "sleeper:1", tar(&[("bundle.json", env, 0o644)])).await.status,
        StatusCode::CREATED
    );
    p.deploy(serde_json::json!({"service": "sleeper", "image": "sleeper:1"}), 1).await;
    let addr = p.addr;
    let pending = tokio::spawn(async move { call(addr, Method::POST, "/function/sleeper", &[], "x").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = containers(state.path(), "sleeper");
    assert_eq!(ids.len(), 1);
    let cut = std::time::Instant::now();
    docker(&["network", "disconnect", "ferrofaas", &ids[0]]);
    let r = pending.await.unwrap();
    let took = cut.elapsed();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert!(r.message().contains("exited before it answered"), "{}", r.body);
    // The engine's event, not three missed health checks nor the 20 s.
    assert!(took < Duration::from_secs(5), "ended {took:?} after the cut");
    p.wait_ready("sleeper", 1).await;
    assert_ne!(containers(state.path(), "sleeper"), ids, "replaced");
}

/// On containers as on processes: WebSockets and server-sent events pass
/// through, what OpenFaaS's clients rely on is there, and a function whose
/// replicas cannot start says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: cargo test -- --ignored runs it (.ci/run starts one)"]
async fn streams_openfaas_basics_and_reasons_on_containers() {
    require_docker();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--provider", "docker"]);
    let r = push_bundle(&p, "streams:1", streams::bundle()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    p.deploy(serde_json::json!({"service": "streams", "image": "streams:1"}), 1).await;
    streams::check(p.addr, "streams").await;
    openfaas_basics(p.addr, p.auth.as_deref().unwrap(), "streams").await;

    // A watchdog that cannot start (a mode there is none of).
    let spec = serde_json::json!({"service": "broken", "image": "streams:1", "envVars": {"mode": "bogus"}});
    let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mut last = serde_json::Value::Null;
    let said = eventually(Duration::from_secs(30), async || {
        last = p.api(Method::GET, "/system/function/broken", "").await.json();
        last["reason"].as_str().is_some_and(|r| r.contains("exited during start-up"))
    })
    .await;
    assert!(said, "{last}");
    let dir = tempfile::tempdir().unwrap();
    let out = faas_ok(dir.path(), Some(&p), &["describe", "broken"], None);
    assert!(out.contains("Status:             Not Ready\nReason:             replica broken-"), "{out}");
    faas_ok(dir.path(), Some(&p), &["remove", "broken"], None);
    faas_ok(dir.path(), Some(&p), &["remove", "streams"], None);

    // A hostile function with no watchdog in front of it (its image runs its
    // own server): the gateway itself refuses its unasked 101, and still
    // carries a WebSocket the client did ask for.
    let r = push_bundle(&p, "bare:1", streams::bare_bundle()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    p.deploy(serde_json::json!({"service": "bare", "image": "bare:1"}), 1).await;
    let ids = containers(state.path(), "bare");
    let cmd = docker(&["inspect", &ids[0], "--format", "{{json .Config.Cmd}}"]);
    assert_eq!(cmd, r#"["python3","streams.py"]"#, "no watchdog in front");
    streams::unasked_switch_refused(p.addr, "bare").await;
    streams::websocket_both_ways(p.addr, "bare").await;
    faas_ok(dir.path(), Some(&p), &["remove", "bare"], None);
}
