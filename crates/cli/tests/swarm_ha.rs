//! The platform survives losing any one node: `faas swarm up --ha` on a
//! Swarm of three managers (`scripts/swarm-cluster up 3 --managers 3`) runs
//! a gateway on every node and the queue on a NATS cluster of three; a
//! function built through one gateway answers through all; 10,000
//! asynchronous calls are accepted, then the node holding a gateway, a NATS
//! server (and maybe the function's replica) is cut off, and every call
//! still runs; once it is back, every gateway counts every call's usage.
//!
//! Needs root and the Docker engine package: ignored by `cargo test`, run by
//! `cargo test -- --ignored` (`.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use http::{Method, StatusCode};

const CALLS: usize = 10_000;

fn gateway(i: u32) -> SocketAddr {
    format!("10.77.0.{}:8080", 10 + i).parse().unwrap()
}

/// The nodes the running tasks of `service` are on.
fn nodes_of(service: &str) -> Vec<String> {
    on(
        1,
        &[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ],
    )
    .lines()
    .filter(|l| l.contains(" Running "))
    .filter_map(|l| l.split(' ').next().map(str::to_owned))
    .collect()
}

/// A call that may find nothing listening yet (`None`), or no answer
/// within 10 s.
async fn try_call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let mut req = http::Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned()))).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(10), send(addr, req)).await.ok()?.ok()?;
    tokio::time::timeout(Duration::from_secs(10), read(resp)).await.ok()
}

struct Teardown<'a> {
    dir: &'a Path,
    cut: Option<String>,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if let Some(veth) = &self.cut {
            let _ = std::process::Command::new("ip").args(["link", "set", veth, "up"]).status();
        }
        let _ = faas(self.dir, None, &["swarm", "down", "--all"], None);
        let _ = std::process::Command::new(script()).arg("down").output();
    }
}

/// Runs `work` over `items`, `width` at a time.
async fn each<T: Send + 'static, R: Send + 'static>(
    items: Vec<T>,
    width: usize,
    work: impl Fn(T) -> std::pin::Pin<Box<dyn std::future::Future<Output = R> + Send>> + Send + Sync + 'static,
) -> Vec<R> {
    let work = Arc::new(work);
    let items = Arc::new(std::sync::Mutex::new(items.into_iter().enumerate().collect::<Vec<_>>()));
    let mut workers = Vec::new();
    for _ in 0..width {
        let (items, work) = (Arc::clone(&items), Arc::clone(&work));
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = items.lock().unwrap().pop();
                let Some((i, item)) = next else { break };
                done.push((i, work(item).await));
            }
            done
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the Docker engine package (dockerd): cargo test -- --ignored runs it"]
async fn the_platform_survives_losing_a_node() {
    require_cluster_tools();
    image_watchdog();
    cluster(&["down"]);
    cluster(&["up", "3", "--managers", "3"]);
    // SAFETY: this test binary runs one test, and sets it before any thread
    // of its own reads the environment.
    unsafe { std::env::set_var("DOCKER_HOST", node_socket(1)) };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut teardown = Teardown { dir, cut: None };
    let state = dir.join("state");

    let started = Instant::now();
    let out = faas_ok(
        dir,
        None,
        &["swarm", "up", "--ha", "--bases", "minimal", "--state", state.to_str().unwrap()],
        None,
    );
    assert!(out.contains("ferrofaas is running on the Swarm: http://10.77.0.11:8080"), "{out}");
    eprintln!("faas swarm up --ha on 3 nodes: {:?}", started.elapsed());
    // `up` waits for the gateway it prints; the others are on their way.
    let every: BTreeSet<String> = ["ffn1", "ffn2", "ffn3"].map(str::to_owned).into();
    let placed = eventually(Duration::from_secs(90), async || {
        let gateways: BTreeSet<String> = nodes_of("ferrofaas-gateway").into_iter().collect();
        let nats: BTreeSet<String> = (1..=3).flat_map(|i| nodes_of(&format!("ferrofaas-nats-{i}"))).collect();
        gateways == every && nats == every
    })
    .await;
    assert!(
        placed,
        "a gateway and a NATS server on every node: {:?} {:?}",
        nodes_of("ferrofaas-gateway"),
        (1..=3).map(|i| nodes_of(&format!("ferrofaas-nats-{i}"))).collect::<Vec<_>>()
    );
    for i in 1..=3 {
        let up = eventually(Duration::from_secs(60), async || {
            try_call(gateway(i), Method::GET, "/healthz", &[], "")
                .await
                .is_some_and(|r| r.status == StatusCode::OK)
        })
        .await;
        assert!(up, "the gateway on ffn{i} answers");
    }
    let creds = ferrofaas_gateway::Credentials::load(&state.join("credentials.json")).unwrap();
    let auth = creds.header_value();

    // Built through the gateway on ffn2 (not the node `faas swarm up` built
    // the bases on), answered by all three.
    let via2 = format!("http://{}", gateway(2));
    faas_ok(dir, None, &["login", "-u", "admin", "-p", &creds.password, "--gateway", &via2], None);
    faas_ok(dir, None, &["new", "hafn", "--lang", "bash", "--gateway", &via2], None);
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap().replace(
        "    image: hafn:latest\n",
        "    image: hafn:latest\n    labels:\n      com.openfaas.scale.min: \"2\"\n      com.openfaas.scale.max: \"2\"\n",
    );
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
    faas_ok(dir, None, &["up", "--gateway", &via2], None);
    for i in 1..=3 {
        let answered = eventually(Duration::from_secs(60), async || {
            try_call(gateway(i), Method::POST, "/function/hafn", &[], "ha")
                .await
                .is_some_and(|r| r.body == "Hello, ha, from bash! (POST /)\n")
        })
        .await;
        assert!(answered, "the gateway on ffn{i} runs the function");
    }

    // A hostile function does not reach the queue: the NATS servers are on
    // the platform's own network, by name or by address. (It does reach
    // the gateway, on the functions' network: the probe works.)
    faas_ok(dir, None, &["new", "haprobe", "--lang", "bash", "--append", "stack.yml"], None);
    std::fs::write(
        dir.join("haprobe/handler.sh"),
        concat!(
            "#!/usr/bin/env bash\n",
            "# Every host:port on STDIN, tried at once for 1 s: a NATS server (it\n",
            "# greets with INFO), something else that takes the connection, or closed.\n",
            "probe() {\n",
            "  got=$(timeout 1 bash -c \"exec 3<>/dev/tcp/$1/$2 && echo connected && head -c 4 <&3\" 2>/dev/null)\n",
            "  case \"$got\" in *INFO*) s=nats ;; connected*) s=connected ;; *) s=closed ;; esac\n",
            "  echo \"$1:$2 $s\"\n",
            "}\n",
            "while read -r addr; do probe \"${addr%:*}\" \"${addr##*:}\" & done\n",
            "wait\n",
        ),
    )
    .unwrap();
    faas_ok(dir, None, &["up", "--gateway", &via2, "--filter", "haprobe"], None);
    // A NATS server that functions may reach (on this machine, at the
    // cluster bridge's address): the probe must see it for what it is.
    let control = std::process::Command::new("nats-server")
        .args(["-a", "10.77.0.1", "-p", "14222"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _control = Kill(control);
    let mut targets = vec!["ferrofaas-gateway:8080".to_owned(), "10.77.0.1:14222".to_owned()];
    for i in 1..=3 {
        let service = format!("ferrofaas-nats-{i}");
        targets.push(format!("{service}:4222"));
        let task = on(1, &["service", "ps", &service, "-q", "--filter", "desired-state=running"]);
        let task = task.lines().next().expect("a NATS task").to_owned();
        let addrs = on(
            1,
            &[
                "inspect",
                &task,
                "--format",
                "{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}",
            ],
        );
        targets.extend(
            addrs.split_whitespace().filter_map(|a| a.split('/').next()).map(|ip| format!("{ip}:4222")),
        );
    }
    let input = targets.join("\n") + "\n";
    let mut probed = String::new();
    let answered = eventually(Duration::from_secs(60), async || {
        match try_call(gateway(1), Method::POST, "/function/haprobe", &[], &input).await {
            Some(r) if r.status == StatusCode::OK => {
                probed = r.body;
                probed.lines().count() == targets.len()
            }
            _ => false,
        }
    })
    .await;
    assert!(answered, "the probe function never answered");
    assert!(probed.contains("ferrofaas-gateway:8080 connected\n"), "the probe reaches the gateway: {probed}");
    assert!(probed.contains("10.77.0.1:14222 nats\n"), "the probe knows a NATS server: {probed}");
    let queue: Vec<&str> = probed.lines().filter(|l| l.contains(":4222 ")).collect();
    assert_eq!(queue.len(), targets.len() - 2, "{probed}");
    assert!(queue.iter().all(|l| !l.ends_with(" nats")), "a function reached the queue's servers:\n{probed}");
    faas_ok(dir, None, &["remove", "haprobe", "--gateway", &via2], None);

    // 10,000 calls accepted by the gateway on ffn3.
    let started = Instant::now();
    let ids = each((0..CALLS).collect(), 16, |i| {
        Box::pin(async move {
            let r = call(gateway(3), Method::POST, "/async-function/hafn", &[], &format!("call {i}")).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            r.header("x-call-id").unwrap().to_owned()
        })
    })
    .await;
    eprintln!("{CALLS} asynchronous calls accepted in {:?}", started.elapsed());

    // ffn2 holds a gateway and a NATS server: cut off.
    teardown.cut = Some("vffn2".into());
    assert!(
        std::process::Command::new("ip").args(["link", "set", "vffn2", "down"]).status().unwrap().success()
    );
    let cut = Instant::now();

    // Every call runs: read through the gateway on ffn1.
    let auth = Arc::new(auth);
    let mut pending = ids;
    let mut states = BTreeMap::new();
    while !pending.is_empty() && cut.elapsed() < Duration::from_secs(300) {
        let auth = Arc::clone(&auth);
        let seen = each(pending.clone(), 16, move |id| {
            let auth = Arc::clone(&auth);
            Box::pin(async move {
                let path = format!("/system/async/{id}");
                match try_call(gateway(1), Method::GET, &path, &[("authorization", &auth)], "").await {
                    Some(r) if r.status == StatusCode::OK => {
                        r.json()["state"].as_str().unwrap_or("?").to_owned()
                    }
                    Some(r) => format!("status {}", r.status.as_u16()),
                    None => "no answer".to_owned(),
                }
            })
        })
        .await;
        states = BTreeMap::new();
        for s in &seen {
            *states.entry(s.clone()).or_insert(0usize) += 1;
        }
        eprintln!("{:?} after the cut: {states:?}", cut.elapsed());
        pending = pending.into_iter().zip(seen).filter(|(_, s)| s != "done").map(|(id, _)| id).collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    assert!(pending.is_empty(), "{} of {CALLS} accepted calls did not run: {states:?}", pending.len());
    eprintln!("all {CALLS} calls ran, {:?} after the cut", cut.elapsed());

    // The gateways share their usage: with ffn2 back, all three count the
    // same invocations of hafn (every attempt, through any of them), at
    // least one per call.
    assert!(
        std::process::Command::new("ip").args(["link", "set", "vffn2", "up"]).status().unwrap().success()
    );
    teardown.cut = None;
    let mut counts = Vec::new();
    let agreed = eventually(Duration::from_secs(180), async || {
        counts = Vec::new();
        for i in 1..=3 {
            let path = "/system/usage?from=1h&function=hafn";
            let n = match try_call(gateway(i), Method::GET, path, &[("authorization", &auth)], "").await {
                Some(r) if r.status == StatusCode::OK => r.json()["total"]["invocations"].as_u64(),
                _ => None,
            };
            counts.push(n);
        }
        counts.iter().all(|n| n.is_some_and(|n| n >= CALLS as u64)) && counts.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(agreed, "the gateways' counts of hafn's invocations: {counts:?}");
    eprintln!("the three gateways count {counts:?} invocations");
}
