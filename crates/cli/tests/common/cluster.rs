//! `scripts/swarm-cluster`: Swarms of several nodes on this machine, for
//! the tests that need one.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrofaas_testkit::require;

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swarm-cluster")
}

/// Root and the Docker engine package: what `scripts/swarm-cluster` needs.
pub fn require_cluster_tools() {
    // SAFETY: geteuid has no preconditions.
    require(unsafe { libc::geteuid() } == 0, "root", "run the tests as root");
    require(Path::new("/usr/sbin/dockerd").exists(), "dockerd", "apt-get install docker.io");
}

/// `scripts/swarm-cluster ARGS`, which must succeed; its output.
pub fn cluster(args: &[&str]) -> String {
    let out = Command::new(script()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "swarm-cluster {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The socket of node `i`'s engine.
pub fn node_socket(i: u32) -> String {
    format!("unix:///run/ferrofaas-cluster/ffn{i}/docker.sock")
}

/// `docker` against node `i`'s engine, which must succeed; its output.
pub fn on(i: u32, args: &[&str]) -> String {
    let host = node_socket(i);
    let out = Command::new("docker").arg("-H").arg(&host).args(args).output().unwrap();
    assert!(out.status.success(), "docker -H {host} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
