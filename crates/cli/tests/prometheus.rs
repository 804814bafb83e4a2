//! A real Prometheus (Debian's `prometheus`) scrapes the gateway with the
//! shipped configuration, and every query of the shipped Grafana dashboard
//! returns data.
//!
//! It needs Prometheus: ignored by `cargo test` (the summary says so), run
//! by `cargo test -- --ignored` (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn prometheus_scrapes_the_gateway_and_the_dashboard_has_data() {
    let present = Command::new("prometheus").arg("--version").output().is_ok();
    require(present, "prometheus", "apt-get install prometheus; .ci/run does");
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let image = format!("{}/wc", examples().display());
    p.deploy(json!({"service": "metered", "image": image, "envProcess": "cat"}), 1).await;
    p.deploy(json!({"service": "failing", "image": image, "envProcess": "sh -c 'exit 3'"}), 1).await;
    let r = p
        .api(
            Method::POST,
            "/system/functions",
            &json!({"service": "sleeper", "image": image, "envProcess": "cat",
                "labels": {"com.openfaas.scale.min": "0"}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // The shipped configuration, pointed at this gateway, scraping every second.
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:8080", &p.addr.to_string())
        .replace("scrape_interval: 5s", "scrape_interval: 1s");
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(repo().join("deploy/prometheus/alert.rules.yml"), dir.path().join("alert.rules.yml"))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ready = eventually(Duration::from_secs(30), async || {
        std::net::TcpStream::connect(prom).is_ok()
            && call(prom, Method::GET, "/-/ready", &[], "").await.status == StatusCode::OK
    })
    .await;
    let prom_log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(ready, "prometheus did not start:\n{}", prom_log());

    // Load across several scrapes: successes, errors, a cold start.
    assert_eq!(p.invoke("/function/sleeper", "wake").await.status, StatusCode::OK);
    for _ in 0..30 {
        assert_eq!(p.invoke("/function/metered", "x").await.status, StatusCode::OK);
        assert_eq!(p.invoke("/function/failing", "x").await.status, StatusCode::INTERNAL_SERVER_ERROR);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // The rule file loaded, and the gateway is a healthy target.
    let rules = call(prom, Method::GET, "/api/v1/rules", &[], "").await.body;
    assert!(rules.contains("APIHighInvocationRate"), "{rules}");
    let mut targets = String::new();
    let up = eventually(Duration::from_secs(20), async || {
        targets = call(prom, Method::GET, "/api/v1/targets", &[], "").await.body;
        targets.contains(r#""health":"up""#)
    })
    .await;
    assert!(up, "{targets}");

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/ferrofaas-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 8);
    for expr in exprs {
        let path = format!("/api/v1/query?query={}", percent_encode(&expr));
        let mut last = String::new();
        let has_data = eventually(Duration::from_secs(20), async || {
            let r = call(prom, Method::GET, &path, &[], "").await;
            last = r.body.clone();
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            v["status"] == "success" && v["data"]["result"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
        assert!(has_data, "the dashboard's query returned no data: {expr}\n{last}");
    }
}
