//! What the tests of `faas` share beyond `ferrofaas_testkit` (the platform
//! harness, the HTTP client, the probes): the programs this test run built,
//! running `faas` as a user would, and checks every provider must pass.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Once;

pub mod arm64;
pub mod brokers;
pub mod cluster;
pub mod streams;

pub use ferrofaas_testkit::*;

use http::{Method, StatusCode};

pub const FAAS: &str = env!("CARGO_BIN_EXE_faas");

/// The programs of this test run: `faas`, and the watchdog and sandbox
/// beside it.
pub fn programs() -> Programs {
    Programs::beside(Path::new(FAAS))
}

/// For tests that build images (Docker, Swarm): the static watchdog that
/// images take when it is there (`scripts/build-watchdog`), brought up to
/// date once per test run, since a stale one would test the containers
/// with yesterday's watchdog. (Without it, images take the one beside
/// `faas`, which [`programs`] builds.)
pub fn image_watchdog() {
    static STATIC: Once = Once::new();
    STATIC.call_once(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let built = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]
            .iter()
            .any(|t| Path::new(FAAS).with_file_name(format!("../{t}/release/faas-watchdog")).is_file());
        if built {
            let ok = Command::new(root.join("scripts/build-watchdog"))
                .env("CARGO_QUIET", "1")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "scripts/build-watchdog failed");
        }
    });
    programs();
}

/// What OpenFaaS's clients and conformance tests rely on, for `function`
/// deployed without labels nor annotations, on any provider: both are
/// objects all the same; a call's response says when it started and how
/// long it took; `/system/info` names the commit.
pub async fn openfaas_basics(addr: SocketAddr, auth: &str, function: &str) {
    let basic = [("authorization", auth)];
    let f = call(addr, Method::GET, &format!("/system/function/{function}"), &basic, "").await.json();
    assert!(f["labels"].is_object(), "{f}");
    assert_eq!(f["annotations"], serde_json::json!({}), "{f}");
    let list = call(addr, Method::GET, "/system/functions", &basic, "").await.json();
    for f in list.as_array().unwrap() {
        assert!(f["labels"].is_object() && f["annotations"].is_object(), "{f}");
    }
    let r = call(addr, Method::GET, &format!("/function/{function}"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let started: u128 = r.header("x-start-time").expect("X-Start-Time").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    assert!(started <= now && now - started < 60_000_000_000, "{started} vs {now}");
    let took: f64 = r.header("x-duration-seconds").expect("X-Duration-Seconds").parse().unwrap();
    assert!((0.0..60.0).contains(&took), "{took}");
    let info = call(addr, Method::GET, "/system/info", &basic, "").await.json();
    let head = git_head();
    for sha in [&info["version"]["sha"], &info["provider"]["version"]["sha"]] {
        let sha = sha.as_str().unwrap();
        match &head {
            Some(head) => assert_eq!(sha, head, "{info}"),
            None => assert!(sha.starts_with("unknown"), "{sha}"),
        }
    }
}

/// Runs `faas` in `dir` as a user would, pointed at `p` (its URL, its
/// state folder for credentials), with `stdin`; a private faas-cli config.
pub fn faas(dir: &Path, p: Option<&Platform>, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut cmd = Command::new(FAAS);
    cmd.args(args)
        .current_dir(dir)
        .env("OPENFAAS_CONFIG", dir.join(".openfaas-config"))
        .env_remove("OPENFAAS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match p {
        Some(p) => {
            cmd.env("OPENFAAS_URL", format!("http://{}", p.addr)).env("FERROFAAS_STATE", &p.state);
        }
        None => {
            cmd.env("FERROFAAS_STATE", dir.join("no-platform"));
        }
    }
    let mut child = cmd.spawn().expect("run faas");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("faas output")
}

/// `faas` that must succeed; its standard output.
pub fn faas_ok(dir: &Path, p: Option<&Platform>, args: &[&str], stdin: Option<&str>) -> String {
    let out = faas(dir, p, args, stdin);
    assert!(
        out.status.success(),
        "faas {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `faas` that must fail; its standard error.
pub fn faas_err(dir: &Path, p: Option<&Platform>, args: &[&str], stdin: Option<&str>) -> String {
    let out = faas(dir, p, args, stdin);
    assert!(
        !out.status.success(),
        "faas {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "exit code of faas {args:?}");
    String::from_utf8(out.stderr).unwrap()
}

/// `docker ARGS`, which must succeed: its output, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
