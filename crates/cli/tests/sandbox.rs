//! The sandbox of process replicas, attacked: each attack a hostile function
//! made before the sandbox existed (reading the admin password and other
//! functions' secrets, writing the state folder and other bundles,
//! signalling the gateway and other replicas, binding ports, leaving
//! processes behind, fork bombs, eating memory) is deployed as a function
//! on the real platform, and each must fail while the platform goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

/// The first uid the process provider gives functions (when root).
const UID_BASE: u64 = 1_900_000_000;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Says why a test cannot run here; fails instead where the run requires
/// every sandbox test (`FERROFAAS_REQUIRE_SANDBOX=1`, as CI sets).
fn skipped(why: &str) -> bool {
    assert!(std::env::var("FERROFAAS_REQUIRE_SANDBOX").is_err(), "{why}, and this run requires the test");
    eprintln!("SKIPPED: {why}");
    true
}

/// A bundle folder, readable by anyone (as a function's uid must read it),
/// with `script` as `run.sh`.
fn bundle(parent: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.sh"), script).unwrap();
    for p in [parent, &dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

/// `key=value` lines of a function's answer.
fn answers(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Processes on this machine whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

/// Every attack of a hostile function on the platform and on another
/// function fails, and none leaves anything behind once it is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_function_reaches_nothing_but_its_own() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    for (name, value) in [("spy-key", "mine"), ("victim-key", "theirs")] {
        let r =
            p.api(Method::POST, "/system/secrets", &json!({"name": name, "value": value}).to_string()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let victim_dir = bundle(files.path(), "victim", "cat\n");
    p.deploy(
        json!({"service": "victim", "image": victim_dir, "envProcess": "sh run.sh", "secrets": ["victim-key"]}),
        1,
    )
    .await;
    let victim = p.replica_pids("victim");
    assert_eq!(victim.len(), 1);

    let spy = r#"
echo "uid=$(id -u)"
echo "user=$(id -un)"
cat "$STATE/credentials.json" >/dev/null 2>&1 && echo creds=READ || echo creds=denied
ls "$STATE" >/dev/null 2>&1 && echo state=SEEN || echo state=absent
cat "$STATE/secrets/openfaas-fn/victim-key" >/dev/null 2>&1 && echo stored=READ || echo stored=denied
echo "secrets=$(ls /var/openfaas/secrets | tr '\n' ' ')"
echo "secret=$(cat /var/openfaas/secrets/spy-key)"
touch /home/app/planted 2>/dev/null && echo own_bundle=WRITTEN || echo own_bundle=read-only
touch "$VICTIM_BUNDLE/planted" 2>/dev/null && echo victim_bundle=WRITTEN || echo victim_bundle=denied
mkdir "$STATE/functions/planted" 2>/dev/null && echo state_write=WRITTEN || echo state_write=denied
kill -0 "$GATEWAY_PID" 2>/dev/null && echo gateway=SIGNALLED || echo gateway=unreachable
kill -9 "$VICTIM_PID" 2>/dev/null && echo victim=KILLED || echo victim=unreachable
python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0", 18999))' 2>/dev/null && echo bind=BOUND || echo bind=refused
unshare -U true 2>/dev/null && echo unshare=DONE || echo unshare=refused
python3 -c 'import ctypes; exit(0 if ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0 else 1)' 2>/dev/null && echo ptrace=ATTACHED || echo ptrace=refused
ls /run/docker.sock /var/run/docker.sock >/dev/null 2>&1 && echo docker=SEEN || echo docker=absent
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo "processes=$(ls /proc | grep -c '^[0-9]')"
echo "tmp_kib=$(df -k /tmp | awk 'NR == 2 {print $2}')"
setsid sh -c 'exec sleep 3013' </dev/null >/dev/null 2>&1 &
echo done=yes
"#;
    let spy_dir = bundle(files.path(), "spy", spy);
    let env = json!({
        "STATE": state.path(),
        "VICTIM_BUNDLE": victim_dir,
        "GATEWAY_PID": p.pid().to_string(),
        "VICTIM_PID": victim[0].to_string(),
    });
    p.deploy(
        json!({"service": "spy", "image": spy_dir, "envProcess": "sh run.sh", "envVars": env,
               "secrets": ["spy-key"]}),
        1,
    )
    .await;
    let r = p.invoke("/function/spy", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let a = answers(&r.body);
    assert_eq!(a["done"], "yes", "{}", r.body);
    let uid: u64 = a["uid"].parse().unwrap();
    assert_ne!(uid, 0, "never root");
    if is_root() {
        assert!(uid >= UID_BASE, "a uid of its own: {uid}");
    }
    assert_eq!(a["user"], "app", "its uid has a name");
    for (attack, outcome) in [
        ("creds", "denied"),
        ("state", "absent"),
        ("stored", "denied"),
        ("own_bundle", "read-only"),
        ("victim_bundle", "denied"),
        ("state_write", "denied"),
        ("gateway", "unreachable"),
        ("victim", "unreachable"),
        ("bind", "refused"),
        ("unshare", "refused"),
        ("ptrace", "refused"),
        ("docker", "absent"),
        ("secrets", "spy-key"),
        ("secret", "mine"),
        ("CapEff", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        ("tmp_kib", "65536"),
    ] {
        assert_eq!(a.get(attack).map(String::as_str), Some(outcome), "{attack}: {}", r.body);
    }
    let processes: usize = a["processes"].parse().unwrap();
    assert!(processes <= 8, "it sees only its own processes: {processes}");
    assert!(!victim_dir.join("planted").exists() && !spy_dir.join("planted").exists());
    assert!(!state.path().join("functions/planted").exists());

    // The victim was not touched: same replica, still answering.
    assert_eq!(p.replica_pids("victim"), victim);
    assert_eq!(p.invoke("/function/victim", "still here").await.body, "still here");

    // What it left running lives as long as its replica, not longer.
    assert_eq!(processes_with("sleep 3013").len(), 1, "the orphan runs inside its replica");
    let r = p.api(Method::DELETE, "/system/functions", r#"{"functionName":"spy"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(
        eventually(Duration::from_secs(5), async || processes_with("sleep 3013").is_empty()).await,
        "a process outlived its function's removal"
    );
}

/// A function over its memory limit is killed and its caller told why; a
/// fork bomb stops at the pids limit while other functions keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_and_say_why() {
    if !is_root() && skipped("cgroup limits need root here") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--pids-limit", "64"]);
    let calm = bundle(files.path(), "calm", "echo calm\n");
    p.deploy(json!({"service": "calm", "image": calm, "envProcess": "sh run.sh"}), 1).await;

    // CPU: a limit is a quota in the replica's own scheduling group (cgroup
    // v1 here); without one, its processes are scheduled as plain ones.
    let capped = bundle(files.path(), "capped", "echo capped\n");
    p.deploy(
        json!({"service": "capped", "image": capped, "envProcess": "sh run.sh", "limits": {"cpu": "250m"}}),
        1,
    )
    .await;
    let cpu_group = |function: &str| {
        let pid = p.replica_pids(function)[0];
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        cgroup.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "cpu").then(|| (controllers.to_owned(), path.to_owned()))
        })
    };
    if let Some((controllers, path)) = cpu_group("capped") {
        let quota =
            std::fs::read_to_string(format!("/sys/fs/cgroup/{controllers}{path}/cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "25000", "a quarter of a CPU");
        assert_eq!(cpu_group("calm").map(|(_, path)| path).as_deref(), Some("/"));
    }

    // Memory: fork mode (the watchdog survives, the request fails).
    let hog = bundle(files.path(), "hog", "python3 -c 'x = bytearray(256 << 20); print(len(x))'\n");
    p.deploy(
        json!({"service": "hog", "image": hog, "envProcess": "sh run.sh", "limits": {"memory": "48Mi"}}),
        1,
    )
    .await;
    let r = p.invoke("/function/hog", "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(r.message().contains("out of memory"), "the cause is named: {}", r.body);
    assert!(r.message().contains("48 MiB"), "with the limit: {}", r.body);
    let logs = p.api(Method::GET, "/system/logs?name=hog&tail=-1", "").await.body;
    assert!(logs.contains("out of memory"), "and logged: {logs}");

    // Memory: http mode (the function's server dies; the replica restarts).
    let server = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        data = bytearray(256 << 20)
        self.send_response(200); self.end_headers(); self.wfile.write(b"%d" % len(data))
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
    let hog_http = bundle(files.path(), "hog-http", server);
    p.deploy(
        json!({"service": "hog-http", "image": hog_http, "envProcess": "python3 run.sh",
               "envVars": {"mode": "http", "upstream_url": "http://127.0.0.1:${PORT}"},
               "limits": {"memory": "48Mi"}}),
        1,
    )
    .await;
    let r = p.invoke("/function/hog-http", "").await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
    assert!(r.message().contains("out of memory"), "the cause is named: {}", r.body);
    let restarted = eventually(Duration::from_secs(20), async || {
        p.api(Method::GET, "/system/logs?name=hog-http&tail=-1", "").await.body.contains("restarting in")
    })
    .await;
    assert!(restarted, "the replica restarts with backoff");

    // A fork bomb.
    let bomb = bundle(files.path(), "bomb", "b() { b | b & }; b; sleep 2; echo over\n");
    p.deploy(json!({"service": "bomb", "image": bomb, "envProcess": "sh run.sh"}), 1).await;
    let pid = p.replica_pids("bomb")[0];
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let pids_path = cgroup
        .lines()
        .find_map(|l| l.split_once(":pids:"))
        .map(|(_, path)| PathBuf::from(format!("/sys/fs/cgroup/pids{path}")));
    let addr = p.addr;
    let bomb_call = tokio::spawn(async move { call(addr, Method::POST, "/function/bomb", &[], "").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for _ in 0..10 {
        let r = p.invoke("/function/calm", "").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "calm\n"), "others keep answering");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "and promptly: {:?}", started.elapsed());
    if let Some(path) = &pids_path {
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default().trim().to_owned();
        assert_eq!(read("pids.max"), "64");
        let peak: u64 = read("pids.peak").parse().unwrap_or(0);
        assert!(peak <= 64, "the bomb stopped at the limit: {peak}");
        assert!(read("pids.events").contains("max "), "and hit it: {}", read("pids.events"));
    }
    let _ = bomb_call.await;
    let r = p.api(Method::DELETE, "/system/functions", r#"{"functionName":"bomb"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    if let Some(path) = pids_path {
        assert!(
            eventually(Duration::from_secs(10), async || !path.exists()).await,
            "the bomb's cgroup is gone with everything in it"
        );
        // Stopped, the platform leaves no cgroup folder of its own behind.
        let scope = path.parent().unwrap().to_path_buf();
        assert!(scope.exists());
        assert!(p.stop().success());
        assert!(!scope.exists(), "{} is left", scope.display());
    }
}

/// `com.ferrofaas.network: none`: no network at all, yet reachable through
/// the gateway; without it, outbound calls work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_can_go_without_a_network() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let probe = format!(
        "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://{}/healthz\", timeout=2)' \
         2>/dev/null && echo reached || echo unreachable\n",
        p.addr
    );
    let dir = bundle(files.path(), "probe", &probe);
    p.deploy(json!({"service": "online", "image": dir, "envProcess": "sh run.sh"}), 1).await;
    p.deploy(
        json!({"service": "offline", "image": dir, "envProcess": "sh run.sh",
               "labels": {"com.ferrofaas.network": "none"}}),
        1,
    )
    .await;
    assert_eq!(p.invoke("/function/online", "").await.body, "reached\n");
    assert_eq!(p.invoke("/function/offline", "").await.body, "unreachable\n");
    // A value that means nothing is refused, naming the label.
    let r = p
        .api(
            Method::POST,
            "/system/functions",
            &json!({"service": "odd", "image": dir, "envProcess": "cat",
                    "labels": {"com.ferrofaas.network": "host"}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "labels.com.ferrofaas.network", "{}", r.body);
}

/// Where no sandbox can be made, replicas do not start, and say why, unless
/// the platform is told to run them unsandboxed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sandbox_no_replicas_unless_asked() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--sandbox", "/bin/false"]);
    let image = format!("{}/wc", examples().display());
    let r = p
        .api(
            Method::POST,
            "/system/functions",
            &json!({"service": "id", "image": image, "envProcess": "id -u"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let r = p.invoke("/function/id", "").await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
    let said = eventually(Duration::from_secs(10), async || {
        p.api(Method::GET, "/system/logs?name=id&tail=-1", "")
            .await
            .body
            .contains("the sandbox is unavailable")
    })
    .await;
    assert!(said, "{}", p.logs());
    assert!(p.logs().contains("--unsafe-no-sandbox"), "the start-up says what to do:\n{}", p.logs());
    drop(p);

    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--unsafe-no-sandbox"]);
    assert!(p.logs().contains("without a sandbox"), "{}", p.logs());
    p.deploy(json!({"service": "id", "image": image, "envProcess": "id -u"}), 1).await;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert_eq!(p.invoke("/function/id", "").await.body.trim(), me.to_string(), "as the gateway's own user");
}

/// Started by an ordinary user, the platform sandboxes its replicas through
/// a user namespace: they run as that user, see none of its files but
/// their own, and limits it cannot enforce are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_user_gets_sandboxes_too() {
    if (!is_root() || !Path::new("/usr/bin/setpriv").exists())
        && skipped("needs root (to become an ordinary user) and setpriv")
    {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(state.path(), Some(nobody), Some(nobody)).unwrap();
    let dir = bundle(
        files.path(),
        "who",
        "echo \"uid=$(id -u)\"; ls \"$STATE\" >/dev/null 2>&1 && echo state=SEEN || echo state=absent\n",
    );
    // Its programs where it can reach them (a build folder may be private).
    let bin = tempfile::tempdir().unwrap();
    let programs = programs().copied_to(bin.path());
    let p = Platform::start_as(
        &programs,
        state.path(),
        &["--pids-limit", "32"],
        &["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    );
    assert!(p.logs().contains("user_namespace=true"), "{}", p.logs());
    p.deploy(
        json!({"service": "who", "image": dir, "envProcess": "sh run.sh", "envVars": {"STATE": state.path()}}),
        1,
    )
    .await;
    let a = answers(&p.invoke("/function/who", "").await.body);
    assert_eq!(a["uid"], nobody.to_string());
    assert_eq!(a["state"], "absent");
    // Without cgroups, the process limit still holds (RLIMIT_NPROC, per
    // user namespace).
    let forker = bundle(
        files.path(),
        "forker",
        "python3 -c '\nimport os, time\nn = 0\ntry:\n    for i in range(100):\n        if os.fork() == 0:\n            \
         time.sleep(2); os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)'\n",
    );
    p.deploy(json!({"service": "forker", "image": forker, "envProcess": "sh run.sh"}), 1).await;
    let forked: u32 = p.invoke("/function/forker", "").await.body.trim().parse().unwrap();
    assert!(forked < 32, "stopped at the process limit: {forked}");
    let r = p
        .api(
            Method::POST,
            "/system/functions",
            &json!({"service": "big", "image": dir, "envProcess": "cat", "limits": {"memory": "64Mi"}})
                .to_string(),
        )
        .await;
    if p.logs().contains("replicas get no cgroup") {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.message().contains("cannot be enforced"), "{}", r.body);
    }
}
