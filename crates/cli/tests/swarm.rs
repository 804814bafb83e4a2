//! The Swarm provider, against a real one-node Swarm: `faas swarm up` runs
//! the gateway as a Swarm service, and functions deployed through it are
//! Swarm services with Docker secrets, scaled, rolled and healed by Swarm.
//!
//! They need a Swarm manager: ignored by `cargo test` (the summary says so),
//! run by `cargo test -- --ignored` (`.ci/run` makes one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

fn require_swarm() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.Swarm.ControlAvailable}}"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true");
    require(ok, "a Docker Swarm manager", ".ci/run runs `docker swarm init`");
}

/// Running containers of a service on this node.
fn containers(service: &str) -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let out = docker(&["ps", "-q", "--filter", &filter]);
    out.lines().map(str::to_owned).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `faas` in `dir` against the gateway at `url` (its credentials saved in
/// the faas-cli config of `dir` by `faas swarm up`).
fn faas_at(dir: &Path, url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut all: Vec<&str> = args.to_vec();
    if !matches!(args.first(), Some(&"new") | Some(&"up") | Some(&"swarm")) {
        all.extend(["--gateway", url]);
    }
    faas_ok(dir, None, &all, stdin)
}

/// `POST /system/functions` of `spec` to the gateway at `addr`.
async fn deploy_at(addr: SocketAddr, auth: &str, spec: &serde_json::Value) -> Reply {
    let headers = [("authorization", auth), ("content-type", "application/json")];
    call(addr, Method::POST, "/system/functions", &headers, &spec.to_string()).await
}

/// What an earlier run of this test left when it was killed (its teardown
/// never ran): the `ff-gw-<id>` platforms, taken down with their
/// functions, secrets and networks, so names such as the secret `token`
/// are free again.
fn sweep_earlier_runs(dir: &Path) {
    let services = docker(&[
        "service",
        "ls",
        "--filter",
        "label=com.ferrofaas.gateway=service",
        "--format",
        "{{.Name}}",
    ]);
    for name in services.lines().filter_map(|n| n.strip_prefix("ff-gw-")) {
        let _ = faas(
            dir,
            None,
            &[
                "swarm",
                "down",
                "--all",
                "--name",
                &format!("ff-gw-{name}"),
                "--network",
                &format!("ff-net-{name}"),
            ],
            None,
        );
    }
}

/// Takes the test's platform down even when the test fails.
struct Teardown<'a> {
    dir: &'a Path,
    name: String,
    network: String,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = faas(
            self.dir,
            None,
            &["swarm", "down", "--all", "--name", &self.name, "--network", &self.network],
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Swarm manager: cargo test -- --ignored runs it (.ci/run makes one)"]
async fn functions_run_as_swarm_services() {
    require_swarm();
    // The watchdog the gateway image and the functions' images take, up to date.
    image_watchdog();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let id = format!("{:x}", std::process::id());
    let (gateway, network) = (format!("ff-gw-{id}"), format!("ff-net-{id}"));
    let (py, sh) = (format!("swpy{id}"), format!("swsh{id}"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    sweep_earlier_runs(dir);
    let _teardown = Teardown { dir, name: gateway.clone(), network: network.clone() };

    // The platform on the Swarm: URL and credentials printed, and saved.
    let out = faas_at(
        dir,
        &url,
        &[
            "swarm",
            "up",
            "--port",
            &port.to_string(),
            "--name",
            &gateway,
            "--network",
            &network,
            "--bases",
            "minimal,python3",
            "--state",
            &dir.join("state").display().to_string(),
        ],
        None,
    );
    assert!(out.contains(&format!("ferrofaas is running on the Swarm: {url}")), "{out}");
    assert!(out.contains("password: "), "{out}");
    assert_eq!(docker(&["service", "inspect", &gateway, "--format", "{{.Spec.EndpointSpec.Mode}}"]), "dnsrr");
    let info = call(addr, Method::GET, "/system/info", &[], "").await;
    assert_eq!(info.status, StatusCode::UNAUTHORIZED, "/system/* needs the credentials");

    // A Python and a shell function, one with a secret and a read-only root.
    faas_at(dir, &url, &["secret", "create", "token", "--from-literal", "one"], None);
    // Docker keeps secret names of 64 characters at most, the version included.
    let long = "s".repeat(57);
    let err =
        faas_err(dir, None, &["secret", "create", &long, "--from-literal", "x", "--gateway", &url], None);
    assert!(err.contains("at most 56 characters"), "{err}");
    faas_at(dir, &url, &["new", &py, "--lang", "python3-http", "--gateway", &url], None);
    faas_at(dir, &url, &["new", &sh, "--lang", "bash", "--append", "stack.yml"], None);
    std::fs::write(
        dir.join(&py).join("handler.py"),
        r#"import os, socket
def handle(event, context):
    secret = open("/var/openfaas/secrets/token").read()
    try:
        open("/home/app/x", "w").write("x"); root = "writable"
    except OSError:
        root = "read-only"
    return f"host={socket.gethostname()} uid={os.getuid()} secret={secret} root={root} v=1"
"#,
    )
    .unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
    let stack = stack.replace(
        &format!("    image: {py}:latest\n"),
        // Scaled by hand below and kept there under load (the autoscaler's
        // default, Community Edition's rule, would add replicas).
        &format!(
            "    image: {py}:latest\n    secrets: [token]\n    readonly_root_filesystem: true\n    labels:\n      \
             com.openfaas.scale.factor: \"0\"\n"
        ),
    );
    std::fs::write(dir.join("stack.yml"), &stack).unwrap();
    faas_at(dir, &url, &["up"], None);
    let body = faas_at(dir, &url, &["invoke", &py], Some(""));
    assert!(body.starts_with("host=") && body.ends_with("uid=1000 secret=one root=read-only v=1"), "{body}");
    assert_eq!(faas_at(dir, &url, &["invoke", &sh], Some("swarm")), "Hello, swarm, from bash! (POST /)\n");
    let list = faas_at(dir, &url, &["list"], None);
    assert!(list.lines().any(|l| l.starts_with(&py)) && list.lines().any(|l| l.starts_with(&sh)), "{list}");
    let mode =
        docker(&["service", "inspect", &py, "--format", "{{.Spec.EndpointSpec.Mode}} {{.Spec.Labels}}"]);
    assert!(mode.starts_with("dnsrr") && mode.contains("com.ferrofaas.spec"), "{mode}");
    // Contained beyond Swarm's defaults: no capability, a pids limit, and no
    // new privileges for the watchdog and the function (the engine, or the
    // watchdog itself where the engine cannot be told).
    let spec = docker(&[
        "service",
        "inspect",
        &sh,
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.CapabilityDrop}} {{.Spec.TaskTemplate.Resources.Limits.Pids}}",
    ]);
    assert_eq!(spec, "[ALL] 512");
    let task = containers(&sh);
    let seen = docker(&[
        "exec",
        &task[0],
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do [ \"$(tr -d '\\0' < $p/cmdline 2>/dev/null)\" = /usr/bin/faas-watchdog ] && \
         grep -E '^(CapBnd|NoNewPrivs)' $p/status; done",
    ]);
    assert_eq!(
        seen.split_whitespace().collect::<Vec<_>>(),
        ["CapBnd:", "0000000000000000", "NoNewPrivs:", "1"],
        "{seen}"
    );

    // Scaled to 3 by Swarm: three distinct replicas answer.
    faas_at(dir, &url, &["scale", &py, "--replicas", "3"], None);
    let fn_path: &'static str = Box::leak(format!("/function/{py}").into_boxed_str());
    let hosts = |n: usize| async move {
        let mut hosts = HashSet::new();
        for _ in 0..n {
            let r = call(addr, Method::POST, fn_path, &[], "").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            hosts.insert(r.body.split(' ').next().unwrap().to_owned());
        }
        hosts
    };
    assert!(eventually(Duration::from_secs(60), async || hosts(12).await.len() == 3).await, "3 replicas");

    // An update under a light load fails no request; so does a secret update.
    std::fs::write(
        dir.join(&py).join("handler.py"),
        std::fs::read_to_string(dir.join(&py).join("handler.py")).unwrap().replace("v=1", "v=2"),
    )
    .unwrap();
    let codes = under_load(addr, fn_path, async {
        faas_at(dir, &url, &["up", "--filter", &py], None);
        faas_at(dir, &url, &["secret", "update", "token", "--from-literal", "two"], None);
        let rolled = eventually(Duration::from_secs(120), async || {
            let mut all = HashSet::new();
            for _ in 0..9 {
                all.insert(call(addr, Method::POST, fn_path, &[], "").await.body);
            }
            all.iter().all(|b| b.ends_with("secret=two root=read-only v=2")) && containers(&py).len() == 3
        })
        .await;
        assert!(rolled, "the update never finished");
    })
    .await;
    assert!(!codes.is_empty());
    assert!(codes.iter().all(|&c| c == 200), "failed requests during the updates: {codes:?}");
    assert!(eventually(Duration::from_secs(60), async || hosts(12).await.len() == 3).await);

    // Logs of the services reach the API.
    let creds = ferrofaas_gateway::Credentials::load(&dir.join("state/credentials.json")).unwrap();
    let auth = creds.header_value();
    let logs =
        call(addr, Method::GET, &format!("/system/logs?name={py}&tail=-1"), &[("authorization", &auth)], "")
            .await;
    assert_eq!(logs.status, StatusCode::OK);
    let line: serde_json::Value = serde_json::from_str(logs.body.lines().next().unwrap()).unwrap();
    assert_eq!(line["name"], py.as_str());
    assert!(line["instance"].as_str().unwrap().starts_with(&format!("{py}.")), "{line}");
    assert!(logs.body.contains("listening"), "{}", logs.body);
    let cli_logs = faas_at(dir, &url, &["logs", &py, "--tail", "5"], None);
    assert!(!cli_logs.is_empty());

    // WebSockets and server-sent events through the gateway to a task, and
    // what OpenFaaS's clients rely on.
    let streams = format!("swst{id}");
    let r = push_bundle_to(addr, &auth, &format!("{streams}:1"), common::streams::bundle()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let spec = serde_json::json!({"service": streams, "image": format!("{streams}:1")});
    let r = deploy_at(addr, &auth, &spec).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let ready = eventually(Duration::from_secs(60), async || {
        call(addr, Method::GET, &format!("/function/{streams}"), &[], "").await.status == StatusCode::OK
    })
    .await;
    assert!(ready, "the streams function never answered");
    common::streams::check(addr, &streams).await;
    openfaas_basics(addr, &auth, &streams).await;
    // A function whose tasks cannot start says why (a watchdog mode there
    // is none of), in the API and in `faas describe`.
    let broken = format!("swbr{id}");
    let spec =
        serde_json::json!({"service": broken, "image": format!("{streams}:1"), "envVars": {"mode": "bogus"}});
    let r = deploy_at(addr, &auth, &spec).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mut last = serde_json::Value::Null;
    let said = eventually(Duration::from_secs(60), async || {
        last =
            call(addr, Method::GET, &format!("/system/function/{broken}"), &[("authorization", &auth)], "")
                .await
                .json();
        last["reason"].as_str().is_some_and(|r| r.contains("exit"))
    })
    .await;
    assert!(said, "{last}");
    let described = faas_at(dir, &url, &["describe", &broken], None);
    assert!(described.contains("Status:             Not Ready\nReason:"), "{described}");
    faas_at(dir, &url, &["remove", &broken], None);
    faas_at(dir, &url, &["remove", &streams], None);

    // Asynchronous calls through the gateway on the Swarm (its queue on a volume).
    let r = call(addr, Method::POST, &format!("/async-function/{sh}"), &[], "later").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let status_path = format!("/system/async/{}", r.header("x-call-id").unwrap());
    let done = eventually(Duration::from_secs(30), async || {
        call(addr, Method::GET, &status_path, &[("authorization", &auth)], "")
            .await
            .body
            .contains(r#""state":"done""#)
    })
    .await;
    assert!(done, "the asynchronous call did not run");

    // A killed replica: the gateway stops sending to it, Swarm replaces it.
    let before = containers(&py);
    docker(&["kill", &before[0]]);
    let healed = eventually(Duration::from_secs(60), async || {
        let now = containers(&py);
        now.len() == 3 && !now.contains(&before[0]) && hosts(12).await.len() == 3
    })
    .await;
    assert!(healed, "the killed replica was not replaced");

    // At zero, a request starts a task and is answered (a cold start).
    faas_at(dir, &url, &["scale", &sh, "--replicas", "0"], None);
    assert!(eventually(Duration::from_secs(30), async || containers(&sh).is_empty()).await);
    let sh_path = format!("/function/{sh}");
    let r = call(addr, Method::POST, &sh_path, &[], "cold").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "Hello, cold, from bash! (POST /)\n"));
    let metrics = call(addr, Method::GET, "/metrics", &[], "").await.body;
    assert!(
        metrics
            .contains(&format!("gateway_function_cold_starts_total{{function_name=\"{sh}.openfaas-fn\"}} 1"))
    );

    // The secret is in use; removing the function frees it.
    let err = faas(dir, None, &["secret", "remove", "token", "--gateway", &url], None);
    assert!(String::from_utf8_lossy(&err.stderr).contains("used by"), "{err:?}");
    faas_at(dir, &url, &["remove", &py], None);
    faas_at(dir, &url, &["remove", &sh], None);
    assert!(eventually(Duration::from_secs(30), async || containers(&py).is_empty()).await);
    let r = call(addr, Method::POST, fn_path, &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    faas_at(dir, &url, &["secret", "remove", "token"], None);
}
