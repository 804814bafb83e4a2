//! `scripts/swarm-cluster`: a Swarm of three nodes on this machine, each a
//! Docker engine in its own network namespace with its own hostname, data
//! root and socket; a service spread over them answers on every node; `up`
//! again changes nothing, `down` leaves nothing behind.
//!
//! Needs root and the Docker engine package: ignored by `cargo test`, run by
//! `cargo test -- --ignored` (`.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use common::*;
use http::Method;

/// The static watchdog (`scripts/build-watchdog`, built or brought up to
/// date): it runs in an image with nothing else in it.
fn static_watchdog() -> PathBuf {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-watchdog"))
        .env("CARGO_QUIET", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/build-watchdog: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// An image of the static watchdog serving one file, imported into every
/// node's engine (there is no registry to pull it from).
fn load_image_everywhere(nodes: u32) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::write(root.join("public/index.html"), "hello from the cluster\n").unwrap();
    std::fs::copy(static_watchdog(), root.join("faas-watchdog")).unwrap();
    let tarball = dir.path().join("image.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    for i in 1..=nodes {
        on(
            i,
            &[
                "import",
                "--change",
                "ENV mode=static static_path=/public port=8080",
                "--change",
                r#"ENTRYPOINT ["/faas-watchdog"]"#,
                tarball.to_str().unwrap(),
                "ferrofaas-cluster-test:1",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the Docker engine package (dockerd): cargo test -- --ignored runs it"]
async fn three_nodes_up_spread_and_down() {
    require_cluster_tools();
    // A cluster a failed run left behind is not this test's.
    cluster(&["down"]);
    let said = cluster(&["up", "3"]);
    assert!(said.contains("export DOCKER_HOST=unix:///run/ferrofaas-cluster/ffn1/docker.sock"), "{said}");

    // Three engines, three hostnames, one Swarm: one manager, two workers.
    let nodes = on(1, &["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"]);
    let lines: BTreeSet<&str> = nodes.lines().map(str::trim).collect();
    assert_eq!(lines, BTreeSet::from(["ffn1 Ready Leader", "ffn2 Ready", "ffn3 Ready"]), "{nodes}");
    for i in 1..=3 {
        assert_eq!(
            on(i, &["info", "--format", "{{.Name}} {{.Swarm.LocalNodeState}}"]),
            format!("ffn{i} active")
        );
    }

    // Up again: the same nodes, nothing new.
    let ids = on(1, &["node", "ls", "-q"]);
    cluster(&["up", "3"]);
    assert_eq!(on(1, &["node", "ls", "-q"]), ids, "up is idempotent");

    // A service of three replicas, one per node, each answering on its
    // node's address (host-mode port: no routing mesh here).
    load_image_everywhere(3);
    on(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "spread",
            "--replicas",
            "3",
            "--replicas-max-per-node",
            "1",
            "--publish",
            "mode=host,target=8080,published=18080",
            "ferrofaas-cluster-test:1",
        ],
    );
    let spread = eventually(Duration::from_secs(60), async || {
        let running = on(
            1,
            &[
                "service",
                "ps",
                "spread",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}} {{.CurrentState}}",
            ],
        );
        let nodes: BTreeSet<&str> =
            running.lines().filter(|l| l.contains("Running")).filter_map(|l| l.split(' ').next()).collect();
        nodes.len() == 3
    })
    .await;
    assert!(spread, "{}", on(1, &["service", "ps", "spread", "--no-trunc"]));
    for i in 1..=3u32 {
        let addr = format!("10.77.0.{}:18080", 10 + i).parse().unwrap();
        let answered = eventually(Duration::from_secs(20), async || {
            tokio::time::timeout(Duration::from_secs(2), call(addr, Method::GET, "/index.html", &[], ""))
                .await
                .is_ok_and(|r| r.body == "hello from the cluster\n")
        })
        .await;
        assert!(answered, "node ffn{i} ({addr}) answers");
    }

    // Down: no engine, namespace, bridge or mount is left; down again is fine.
    cluster(&["down"]);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&netns.stdout).contains("ffn"), "namespaces left");
    assert!(
        !Command::new("ip").args(["link", "show", "br-ffn"]).output().unwrap().status.success(),
        "bridge left"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains("ferrofaas-cluster"), "mounts left:\n{mounts}");
    assert!(
        !Path::new("/var/lib/ferrofaas-cluster").exists() && !Path::new("/run/ferrofaas-cluster").exists()
    );
    let procs = Command::new("pgrep").args(["-f", "ferrofaas-cluster"]).output().unwrap();
    assert!(procs.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&procs.stdout));
    cluster(&["down"]);
}
