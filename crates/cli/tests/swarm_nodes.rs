//! The platform on a Swarm of three nodes (`scripts/swarm-cluster up 3`),
//! as a user runs it: `faas swarm up` against the manager, functions built
//! by the gateway and pulled by every node from the platform's registry,
//! replicas spread over the nodes and each answering through the gateway,
//! logs from every node, an update under load, secrets, `cpu` autoscaling
//! read from replicas on other nodes, and a node lost under load.
//!
//! Needs root and the Docker engine package: ignored by `cargo test`, run by
//! `cargo test -- --ignored` (`.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use http::{Method, StatusCode};

const MANAGER: &str = "10.77.0.11";

/// `faas` in `dir` against the gateway at `url`.
fn faas_at(dir: &Path, url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut all: Vec<&str> = args.to_vec();
    if !matches!(args.first(), Some(&"new") | Some(&"swarm")) {
        all.extend(["--gateway", url]);
    }
    faas_ok(dir, None, &all, stdin)
}

/// Running tasks of `service`: task name (`<service>.<slot>`) to node.
fn tasks(service: &str) -> HashMap<String, String> {
    let out = on(
        1,
        &[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.Node}} {{.CurrentState}}",
        ],
    );
    out.lines()
        .filter(|l| l.contains(" Running "))
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Tears the platform and the cluster down even when the test fails.
struct Teardown<'a> {
    dir: &'a Path,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = faas(self.dir, None, &["swarm", "down", "--all"], None);
        let _ = std::process::Command::new(script()).arg("down").output();
    }
}

/// Answers of `n` calls to `path`, by their first word (`host=...`).
async fn hosts(addr: SocketAddr, path: &str, n: usize) -> HashSet<String> {
    let mut hosts = HashSet::new();
    for _ in 0..n {
        let r = call(addr, Method::POST, path, &[], "").await;
        if r.status == StatusCode::OK {
            hosts.insert(r.body.split(' ').next().unwrap_or("").to_owned());
        }
    }
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the Docker engine package (dockerd): cargo test -- --ignored runs it"]
async fn the_platform_across_three_nodes() {
    require_cluster_tools();
    image_watchdog();
    cluster(&["down"]);
    cluster(&["up", "3"]);
    // `faas swarm up`, `faas swarm down` and `docker` talk to the manager.
    // SAFETY: this test binary runs one test, and sets it before any thread
    // of its own reads the environment.
    unsafe { std::env::set_var("DOCKER_HOST", node_socket(1)) };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let _teardown = Teardown { dir };
    let state = dir.join("state");

    // The platform: its registry, and its gateway pulled from it.
    let started = Instant::now();
    let out = faas_at(
        dir,
        "",
        &["swarm", "up", "--bases", "minimal,python3", "--state", state.to_str().unwrap()],
        None,
    );
    let url = format!("http://{MANAGER}:8080");
    assert!(out.contains(&format!("ferrofaas is running on the Swarm: {url}")), "{out}");
    eprintln!("faas swarm up on 3 nodes: {:?}", started.elapsed());
    let addr: SocketAddr = format!("{MANAGER}:8080").parse().unwrap();
    let gateway_image = on(
        1,
        &[
            "service",
            "inspect",
            "ferrofaas-gateway",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
    );
    assert!(gateway_image.starts_with("127.0.0.1:5000/ferrofaas-gateway@sha256:"), "{gateway_image}");
    let creds = ferrofaas_gateway::Credentials::load(&state.join("credentials.json")).unwrap();
    let auth = creds.header_value();

    // A Python function (with a secret, and a look at the registry from
    // inside) and a shell one, built by the gateway.
    faas_at(dir, &url, &["secret", "create", "token", "--from-literal", "one"], None);
    faas_at(dir, &url, &["new", "nodepy", "--lang", "python3-http", "--gateway", &url], None);
    faas_at(dir, &url, &["new", "nodesh", "--lang", "bash", "--append", "stack.yml"], None);
    let handler = format!(
        r#"import socket, urllib.request, urllib.error
def handle(event, context):
    secret = open("/var/openfaas/secrets/token").read()
    try:
        urllib.request.urlopen("http://{MANAGER}:5000/v2/_catalog", timeout=3); registry = "200"
    except urllib.error.HTTPError as e:
        registry = str(e.code)
    except Exception as e:
        registry = type(e).__name__
    return f"host={{socket.gethostname()}} secret={{secret}} registry={{registry}} v=1"
"#
    );
    std::fs::write(dir.join("nodepy/handler.py"), handler).unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap().replace(
        "    image: nodepy:latest\n",
        "    image: nodepy:latest\n    secrets: [token]\n    labels:\n      com.openfaas.scale.factor: \"0\"\n",
    );
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
    faas_at(dir, &url, &["up"], None);
    let image =
        on(1, &["service", "inspect", "nodepy", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
    assert!(
        image.starts_with("127.0.0.1:5000/nodepy@sha256:"),
        "pulled by digest from the registry: {image}"
    );
    let body = faas_at(dir, &url, &["invoke", "nodepy"], Some(""));
    // The registry wants its password, which functions do not have.
    assert!(body.ends_with(" secret=one registry=401 v=1"), "{body}");
    assert_eq!(
        faas_at(dir, &url, &["invoke", "nodesh"], Some("nodes")),
        "Hello, nodes, from bash! (POST /)\n"
    );

    // Placed by architecture: a service runs only on nodes its image is
    // built for. The nodes here are all amd64: the amd64 function's service
    // says so and runs; an arm64 build of a function is placed nowhere,
    // and says why.
    let platforms = on(
        1,
        &["service", "inspect", "nodesh", "--format", "{{json .Spec.TaskTemplate.Placement.Platforms}}"],
    );
    assert_eq!(platforms, r#"[{"Architecture":"amd64","OS":"linux"}]"#);
    let arm_dir = dir.join("arm");
    std::fs::create_dir_all(&arm_dir).unwrap();
    faas_at(&arm_dir, &url, &["new", "armsh", "--lang", "bash", "--image", "armsh:1"], None);
    let arm_watchdog = common::arm64::build()[1].to_str().unwrap().to_owned();
    faas_ok(
        &arm_dir,
        None,
        &["build", "--docker", "--platform", "linux/arm64", "--image-watchdog", &arm_watchdog],
        None,
    );
    faas_at(dir, &url, &["deploy", "--image", "armsh:1", "--name", "armsh"], None);
    let platforms = on(
        1,
        &["service", "inspect", "armsh", "--format", "{{json .Spec.TaskTemplate.Placement.Platforms}}"],
    );
    assert_eq!(platforms, r#"[{"Architecture":"arm64","OS":"linux"}]"#);
    let why = eventually(Duration::from_secs(30), async || {
        let f =
            call(addr, Method::GET, "/system/function/armsh", &[("authorization", &auth)], "").await.json();
        f["availableReplicas"] == 0
            && f["reason"].as_str().is_some_and(|r| r.contains("unsupported platform"))
    })
    .await;
    let described = faas_at(dir, &url, &["describe", "armsh"], None);
    assert!(why && described.contains("unsupported platform"), "{described}");
    assert!(tasks("armsh").is_empty(), "{:?}", tasks("armsh"));
    faas_at(dir, &url, &["remove", "armsh"], None);

    // Three replicas on at least two nodes, every one answering.
    faas_at(dir, &url, &["scale", "nodepy", "--replicas", "3"], None);
    let started = Instant::now();
    let spread = eventually(Duration::from_secs(90), async || {
        let t = tasks("nodepy");
        t.len() == 3 && hosts(addr, "/function/nodepy", 12).await.len() == 3
    })
    .await;
    let placed = tasks("nodepy");
    assert!(spread, "{placed:?}");
    eprintln!("scaled 1 -> 3 over the nodes, every replica answering: {:?}", started.elapsed());
    let nodes: BTreeSet<&String> = placed.values().collect();
    assert!(nodes.len() >= 2, "replicas on at least two nodes: {placed:?}");

    // Logs from every replica, whichever node it is on.
    let logs =
        call(addr, Method::GET, "/system/logs?name=nodepy&tail=-1", &[("authorization", &auth)], "").await;
    assert_eq!(logs.status, StatusCode::OK);
    let instances: BTreeSet<String> = logs
        .body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["text"].as_str().is_some_and(|t| t.contains("listening")))
        .filter_map(|l| l["instance"].as_str().map(|i| i.split('.').take(2).collect::<Vec<_>>().join(".")))
        .collect();
    let running: BTreeSet<String> = placed.keys().cloned().collect();
    assert!(running.is_subset(&instances), "logs of {running:?} in {instances:?}");

    // An update and a secret's update under load: no request fails.
    let py = dir.join("nodepy/handler.py");
    std::fs::write(&py, std::fs::read_to_string(&py).unwrap().replace("v=1", "v=2")).unwrap();
    let codes = under_load(addr, "/function/nodepy", async {
        faas_at(dir, &url, &["up", "--filter", "nodepy"], None);
        faas_at(dir, &url, &["secret", "update", "token", "--from-literal", "two"], None);
        let rolled = eventually(Duration::from_secs(180), async || {
            let mut all = HashSet::new();
            for _ in 0..9 {
                all.insert(call(addr, Method::POST, "/function/nodepy", &[], "").await.body);
            }
            all.iter().all(|b| b.ends_with(" secret=two registry=401 v=2")) && tasks("nodepy").len() == 3
        })
        .await;
        assert!(rolled, "the update never finished: {:?}", tasks("nodepy"));
    })
    .await;
    assert!(!codes.is_empty());
    assert!(codes.iter().all(|&c| c == 200), "failed requests during the updates: {codes:?}");

    // `cpu` autoscaling reads replicas on other nodes: this function may
    // run on workers only, and scales up on its CPU use.
    faas_at(dir, &url, &["new", "nodecpu", "--lang", "python3-http", "--append", "stack.yml"], None);
    std::fs::write(
        dir.join("nodecpu/handler.py"),
        "def handle(event, context):\n    return str(sum(i * i for i in range(400000)))\n",
    )
    .unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap().replace(
        "    image: nodecpu:latest\n",
        "    image: nodecpu:latest\n    constraints: [\"node.role == worker\"]\n    labels:\n      \
         com.openfaas.scale.type: cpu\n      com.openfaas.scale.target: \"100\"\n      \
         com.openfaas.scale.min: \"1\"\n      com.openfaas.scale.max: \"3\"\n",
    );
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
    faas_at(dir, &url, &["up", "--filter", "nodecpu"], None);
    let scaled = Arc::new(Mutex::new(false));
    let watch = Arc::clone(&scaled);
    let codes = under_load(addr, "/function/nodecpu", async move {
        let up = eventually(Duration::from_secs(60), async || {
            let r =
                call(addr, Method::GET, "/system/function/nodecpu", &[("authorization", &auth)], "").await;
            r.json()["replicas"].as_u64().unwrap_or(0) > 1
        })
        .await;
        *watch.lock().unwrap() = up;
    })
    .await;
    assert!(*scaled.lock().unwrap(), "cpu autoscaling did not see the workers' replicas busy ({codes:?})");
    assert!(tasks("nodecpu").values().all(|n| n != "ffn1"), "only on workers: {:?}", tasks("nodecpu"));
    faas_at(dir, &url, &["remove", "nodecpu"], None);

    // A node lost under load: its link cut. The gateway routes around it
    // within 5 s; only requests in flight to it fail; its replicas come
    // back on the other nodes.
    let placed = tasks("nodepy");
    let lost = placed.values().find(|n| *n != "ffn1").expect("a replica on a worker").clone();
    let outcomes: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let record = Arc::clone(&outcomes);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (record, stop) = (Arc::clone(&record), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let code = match tokio::time::timeout(
                    Duration::from_secs(10),
                    call(addr, Method::POST, "/function/nodepy", &[], ""),
                )
                .await
                {
                    Ok(r) => r.status.as_u16(),
                    Err(_) => 0,
                };
                record.lock().unwrap().push((Instant::now(), code));
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut = Instant::now();
    let veth = format!("v{lost}");
    assert!(
        std::process::Command::new("ip").args(["link", "set", &veth, "down"]).status().unwrap().success()
    );
    let back = eventually(Duration::from_secs(120), async || {
        let t = tasks("nodepy");
        t.len() == 3 && t.values().all(|n| *n != lost) && hosts(addr, "/function/nodepy", 12).await.len() == 3
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(std::process::Command::new("ip").args(["link", "set", &veth, "up"]).status().unwrap().success());
    assert!(back, "the lost node's replicas did not come back elsewhere: {:?}", tasks("nodepy"));
    let outcomes = outcomes.lock().unwrap().clone();
    let failed: Vec<Duration> =
        outcomes.iter().filter(|(_, c)| *c != 200).map(|(t, _)| t.duration_since(cut)).collect();
    let after = outcomes.iter().filter(|(t, _)| t.duration_since(cut) > Duration::from_secs(5)).count();
    eprintln!(
        "node {lost} cut under load: {} requests, {} failed, at {failed:?} after the cut; {after} answered after 5 s",
        outcomes.len(),
        failed.len()
    );
    assert!(failed.iter().all(|d| *d < Duration::from_secs(5)), "failures after 5 s: {failed:?}");
    assert!(failed.len() <= 4 * 2, "more failed than the requests in flight to the lost node: {failed:?}");
    assert!(after > 100, "the load went on after the cut ({after})");
}
