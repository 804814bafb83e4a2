//! The arm64 (Raspberry Pi) build: `scripts/build-release --arch arm64`
//! cross-builds static `faas`, `faas-watchdog` and `faas-sandbox`, and
//! under qemu-user a request goes through the arm64 watchdog alone, then
//! through the arm64 gateway to an arm64 watchdog replica.
//!
//! Why static: dynamically linked aarch64 programs that start a thread hang
//! under qemu-user here (the watchdog printed its version, then hung once
//! it started serving: its runtime's first thread); static ones do not.
//!
//! Needs Debian's cross toolchain and qemu-user: ignored by `cargo test`,
//! run by `cargo test -- --ignored` (`.ci/run` installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

use common::arm64::QEMU;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's arm64 cross toolchain (rustc-web, libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu) and qemu-user: cargo test -- --ignored runs it (.ci/run installs them)"]
async fn the_arm64_build_serves_under_qemu() {
    require(Path::new(QEMU).exists(), QEMU, "apt-get install qemu-user");
    require(
        Path::new("/usr/bin/rustc").exists() && Path::new("/usr/bin/aarch64-linux-gnu-gcc").exists(),
        "Debian's Rust and the aarch64 linker",
        "see scripts/build-release",
    );
    let built = common::arm64::build();
    let (faas, watchdog, sandbox) = (&built[0], &built[1], &built[2]);
    let out = Command::new(QEMU).arg(faas).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("faas {}", env!("CARGO_PKG_VERSION")));

    // The watchdog alone: it must serve, not only start.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut wd = Command::new(QEMU)
        .arg(watchdog)
        .env_clear()
        .env("mode", "streaming")
        .env("fprocess", "cat")
        .env("port", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let served = eventually(Duration::from_secs(20), async || {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return false;
        }
        tokio::time::timeout(Duration::from_secs(5), call(addr, Method::POST, "/", &[], "hello arm64"))
            .await
            .is_ok_and(|r| r.status == StatusCode::OK && r.body == "hello arm64")
    })
    .await;
    let _ = wd.kill();
    let _ = wd.wait();
    assert!(served, "the arm64 watchdog answers under qemu");

    // The gateway, its replicas arm64 watchdogs (each run by qemu: the
    // kernel here cannot exec arm64 programs itself).
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("faas-watchdog");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {QEMU} {} \"$@\"\n", watchdog.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let programs = Programs { faas: faas.clone(), watchdog: wrapper, sandbox: sandbox.clone() };
    let state = dir.path().join("state");
    let p = Platform::start_as(&programs, &state, &["--unsafe-no-sandbox"], &[QEMU]);
    let bundle = tar(&[("bundle.json", r#"{"env":{"fprocess":"cat","mode":"streaming"}}"#, 0o644)]);
    assert_eq!(push_bundle(&p, "echo:1", bundle).await.status, StatusCode::CREATED);
    p.deploy(serde_json::json!({"service": "echo", "image": "echo:1"}), 1).await;
    let r = p.invoke("/function/echo", "through the arm64 gateway").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "through the arm64 gateway"));
    let info = p.api(Method::GET, "/system/info", "").await.json();
    assert_eq!(info["arch"], "aarch64", "{info}");
}

/// `faas build --docker --platform linux/arm64`: an image on an arm64
/// base (built from Debian's arm64 packages) with the arm64 watchdog,
/// which the engine says is arm64 and runs here through qemu; the Docker
/// provider serves it. What does not fit is refused by name: a watchdog of
/// another architecture, a program of another architecture in the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker, mmdebstrap, Debian's arm64 cross toolchain and qemu-user-static registered with binfmt_misc (scripts/binfmt): cargo test -- --ignored runs it (.ci/run sets them up)"]
async fn arm64_images_are_built_and_run_through_qemu() {
    require(
        Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()),
        "a Docker engine",
        ".ci/run starts one",
    );
    require(
        common::arm64::runs_here(),
        "qemu-aarch64 registered with binfmt_misc (flag F)",
        "scripts/binfmt",
    );
    require(
        Path::new("/usr/bin/rustc").exists() && Path::new("/usr/bin/aarch64-linux-gnu-gcc").exists(),
        "Debian's Rust and the aarch64 linker",
        "see scripts/build-release",
    );
    image_watchdog();
    let built = common::arm64::build();
    let arm_watchdog = built[1].to_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let image = format!("ferrofaas-test/uname-arm:{}", std::process::id());
    faas_ok(dir, None, &["new", "uname-arm", "--lang", "bash", "--image", &image], None);
    std::fs::write(dir.join("uname-arm/handler.sh"), "#!/bin/sh\necho \"machine=$(uname -m) body=$(cat)\"\n")
        .unwrap();

    // The amd64 watchdog does not go into an arm64 image.
    let amd64 = programs().watchdog;
    let err = faas_err(
        dir,
        None,
        &["build", "--docker", "--platform", "linux/arm64", "--image-watchdog", amd64.to_str().unwrap()],
        None,
    );
    assert!(err.contains("is a watchdog for amd64") && err.contains("build-release --arch arm64"), "{err}");
    // A usage error, as clap reports them (exit code 2).
    let out = faas(dir, None, &["build", "--docker", "--platform", "linux/s390x"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("amd64 or arm64"), "{err}");

    let out = faas_ok(
        dir,
        None,
        &["build", "--docker", "--platform", "linux/arm64", "--image-watchdog", &arm_watchdog, "--json"],
        None,
    );
    let line: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(line["arch"], "arm64", "{out}");
    assert_eq!(docker(&["image", "inspect", "--format", "{{.Architecture}}/{{.Os}}", &image]), "arm64/linux");
    // The image's programs are arm64's: its shell and the watchdog.
    let machine = docker(&["run", "--rm", "--entrypoint", "/bin/sh", &image, "-c", "uname -m"]);
    assert_eq!(machine, "aarch64");

    // The Docker provider runs it (the engine through qemu).
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--provider", "docker"]);
    faas_ok(dir, Some(&p), &["deploy", "--image", &image, "--name", "uname-arm"], None);
    p.wait_ready("uname-arm", 1).await;
    let r = p.invoke("/function/uname-arm", "from amd64").await;
    assert_eq!((r.status, r.body.trim()), (StatusCode::OK, "machine=aarch64 body=from amd64"));
    faas_ok(dir, Some(&p), &["remove", "uname-arm"], None);
    drop(p);

    // A bundle holding a program for amd64 is not an arm64 image.
    std::fs::copy("/usr/bin/true", dir.join("uname-arm/helper")).unwrap();
    let err = faas_err(
        dir,
        None,
        &["build", "--docker", "--platform", "linux/arm64", "--image-watchdog", &arm_watchdog],
        None,
    );
    assert!(err.contains("function/helper is a program for amd64"), "{err}");
    let _ = Command::new("docker").args(["image", "rm", "-f", &image]).output();
}
