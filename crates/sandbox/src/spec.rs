//! What one sandbox is: the description the provider writes and
//! `faas-sandbox run` carries out. Every path here is decided by the
//! provider; the sandbox only builds what it is told, in this order.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a function's files are, inside (OpenFaaS images use it too).
pub const APP_DIR: &str = "/home/app";
/// Where a function's secrets are, inside: where OpenFaaS's SDKs look.
pub const SECRETS_DIR: &str = "/var/openfaas/secrets";
/// Where the program the sandbox runs (the watchdog) is bound, inside.
pub const PROGRAM: &str = "/run/ferrofaas/faas-watchdog";
/// The replica's private, size-limited scratch folder (also `$HOME`).
pub const TMP_DIR: &str = "/tmp";

/// One sandbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// An empty folder of the provider's on which the new root is built
    /// (a small tmpfs is mounted on it, inside the sandbox only).
    pub root: PathBuf,
    /// Read-only bind mounts, made in this order: a host file or folder at
    /// a path inside.
    pub binds: Vec<Bind>,
    /// Symbolic links made in the new root (`/bin -> usr/bin`, ...).
    pub links: Vec<Link>,
    /// Who the sandbox runs as.
    pub identity: Identity,
    /// Size of the private `/tmp` (and, apart, of `/dev/shm`), in bytes.
    pub tmp_bytes: u64,
    /// The sandbox's host name (its own UTS namespace).
    pub hostname: String,
    /// `false`: a network namespace of its own with only loopback; the
    /// replica is still reached through the socket it was handed (fd 3).
    pub network: bool,
    /// Most processes and threads the sandbox's uid may have in it
    /// (`RLIMIT_NPROC`, which the kernel counts per user namespace): a
    /// fork bomb stops there even without a pids cgroup.
    pub nproc: Option<u64>,
    /// The TCP ports the replica may bind (its own server's); binding any
    /// other is refused (Landlock, where the kernel has it).
    pub bind_ports: Vec<u16>,
    /// The replica's cgroups, joined before anything else runs, so that all
    /// it starts is counted and killed.
    pub cgroups: Vec<CgroupDir>,
    /// The working folder, inside.
    pub workdir: PathBuf,
    /// The program to run, inside, and its arguments (`argv[1..]`). Its
    /// environment is the one `faas-sandbox` was started with.
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// One of a replica's cgroups. Joining is made cheap: a v1 cgroup is joined
/// by `faas-sandbox` itself, single-threaded, through `tasks` (moving one
/// thread takes no global lock, where `cgroup.procs` waits for an RCU grace
/// period, about 8 ms); in a v2 cgroup the sandbox's first process is made
/// (`clone3` with `CLONE_INTO_CGROUP`: no move at all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupDir {
    pub path: PathBuf,
    pub v2: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// The user and group the sandbox runs as, the same numbers inside and on
/// the host. Never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// In a user namespace of its own that maps only `uid` and `gid`
    /// (needed when the provider is not root). Without one, the provider
    /// must be root, which then switches to `uid`.
    pub user_namespace: bool,
}

impl Spec {
    /// Checks what the sandbox relies on before it starts building.
    pub fn validate(&self) -> Result<(), String> {
        if self.identity.uid == 0 || self.identity.gid == 0 {
            return Err("a sandbox never runs as root (uid or gid 0)".into());
        }
        for (what, path) in [("root", &self.root), ("program", &self.program), ("workdir", &self.workdir)] {
            if !path.is_absolute() {
                return Err(format!("{what} {} is not an absolute path", path.display()));
            }
        }
        for bind in &self.binds {
            inside_path(&bind.target)?;
            if !bind.source.is_absolute() {
                return Err(format!("bind source {} is not an absolute path", bind.source.display()));
            }
        }
        for link in &self.links {
            inside_path(&link.path)?;
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return Err("hostname must have 1 to 64 characters".into());
        }
        if self.cgroups.iter().filter(|c| c.v2).count() > 1 {
            return Err("a sandbox is made in one cgroup v2 folder at most".into());
        }
        Ok(())
    }
}

/// A path inside the sandbox: absolute, with no `.` or `..` parts, so that
/// joining it to the new root never leaves it.
fn inside_path(path: &std::path::Path) -> Result<(), String> {
    use std::path::Component;
    let mut parts = path.components();
    let absolute = parts.next() == Some(Component::RootDir);
    if !absolute || parts.clone().next().is_none() || !parts.all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{} is not a plain absolute path below /", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            root: "/state/run/fn/root".into(),
            binds: vec![Bind { source: "/usr".into(), target: "/usr".into() }],
            links: vec![Link { path: "/bin".into(), target: "usr/bin".into() }],
            identity: Identity { uid: 1000, gid: 1000, user_namespace: true },
            tmp_bytes: 1 << 20,
            hostname: "fn".into(),
            network: true,
            nproc: Some(64),
            bind_ports: vec![],
            cgroups: vec![],
            workdir: APP_DIR.into(),
            program: PROGRAM.into(),
            args: vec![],
        }
    }

    #[test]
    fn checks() {
        assert_eq!(spec().validate(), Ok(()));
        let json = serde_json::to_string(&spec()).unwrap();
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec());
        let mut s = spec();
        s.identity.uid = 0;
        assert!(s.validate().is_err());
        for bad in ["/", "usr", "/usr/../etc", "../x"] {
            let mut s = spec();
            s.binds[0].target = bad.into();
            assert!(s.validate().is_err(), "{bad}");
        }
    }
}
