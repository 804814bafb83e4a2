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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

const QEMU: &str = "/usr/bin/qemu-aarch64";

/// Does a 64-bit little-endian ELF file name a program interpreter (a
/// `PT_INTERP` program header: it is dynamically linked)?
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

/// The three programs, built (or brought up to date).
fn build() -> Vec<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-release");
    let out = Command::new(script).args(["--arch", "arm64"]).env("CARGO_QUIET", "1").output().unwrap();
    assert!(out.status.success(), "build-release --arch arm64:\n{}", String::from_utf8_lossy(&out.stderr));
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF", "{}", path.display());
        assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 183, "{} is for AArch64", path.display());
        assert!(!has_interpreter(&bytes), "{} is static (no program interpreter)", path.display());
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's arm64 cross toolchain (rustc-web, libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu) and qemu-user: cargo test -- --ignored runs it (.ci/run installs them)"]
async fn the_arm64_build_serves_under_qemu() {
    require(Path::new(QEMU).exists(), QEMU, "apt-get install qemu-user");
    require(
        Path::new("/usr/bin/rustc").exists() && Path::new("/usr/bin/aarch64-linux-gnu-gcc").exists(),
        "Debian's Rust and the aarch64 linker",
        "see scripts/build-release",
    );
    let built = build();
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
