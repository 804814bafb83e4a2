//! The process provider's side of the sandbox (`ferrofaas-sandbox`): what
//! every replica's sandbox holds, who it runs as, its cgroup, and whether
//! sandboxes can be made here at all.
//!
//! At start-up a real sandbox is made once (the watchdog, run inside it,
//! prints its version); if that fails, replicas do not start, and every
//! start says why, unless the platform was started with
//! `--unsafe-no-sandbox`. No silent fallback.
//!
//! Each function has a uid and gid of its own, from [`UID_BASE`] on, when
//! the provider is root; started by an ordinary user, every replica runs as
//! that user, in a user namespace that maps only it. Either way, inside: no
//! capabilities, nothing of the host but its runtimes (read-only), the
//! function's own files and secrets (read-only), a private `/tmp`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ferrofaas_sandbox::cgroup::{Cgroup, Cgroups, Limits, Version};
use ferrofaas_sandbox::{APP_DIR, Bind, Identity, Link, PROGRAM, SECRETS_DIR, Spec};
use ferrofaas_types::FunctionRef;
use sha2::{Digest, Sha256};

use crate::{ProviderError, Result};

/// The first uid (and gid) given to functions: far from users' and from
/// the ranges `/etc/subuid` usually hands out, below 2^31.
pub const UID_BASE: u32 = 1_900_000_000;
/// How many functions can have a uid of their own at once.
const UID_RANGE: u32 = 65_536;
/// Host folders every sandbox sees read-only (where they exist): the
/// language runtimes, their libraries and configuration.
const RUNTIME_PATHS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc"];

/// How replicas are sandboxed (`faas serve` flags).
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// The `faas-sandbox` program.
    pub program: PathBuf,
    /// Most processes and threads one replica may have.
    pub pids: u64,
    /// Size of a replica's `/tmp` (and, apart, its `/dev/shm`).
    pub tmp_bytes: u64,
    /// More host folders that replicas see read-only (a runtime in `/opt`).
    pub paths: Vec<PathBuf>,
}

pub(super) struct Sandbox {
    options: SandboxOptions,
    watchdog: PathBuf,
    /// Why no replica can start, if so.
    unavailable: Option<String>,
    user_namespace: bool,
    /// Root: each function gets a uid of its own.
    root: bool,
    cgroups: std::result::Result<Cgroups, String>,
    binds: Vec<Bind>,
    links: Vec<Link>,
    uids: Mutex<BTreeMap<FunctionRef, u32>>,
}

/// What one replica's sandbox needs from the provider.
pub(super) struct Replica<'a> {
    pub function: &'a FunctionRef,
    pub identity: Identity,
    pub limits: Limits,
    pub network: bool,
    /// The port of the function's own server (the only one it may bind).
    pub port: u16,
    pub bundle: &'a Path,
    pub secrets: &'a Path,
    /// The instance's own folder (removed when it stops).
    pub dir: &'a Path,
    pub instance: &'a str,
    /// `mode=wasm`: the precompiled component, bound read-only.
    pub precompiled: Option<&'a Path>,
}

impl Sandbox {
    /// Finds out whether sandboxes can be made here, by making one.
    pub(super) async fn start(options: SandboxOptions, watchdog: PathBuf, state_dir: &Path) -> Sandbox {
        let root = nix::unistd::geteuid().is_root();
        let scope = format!(
            "ferrofaas-{}",
            &ferrofaas_types::hex::encode(&Sha256::digest(state_dir.as_os_str().as_encoded_bytes()))[..16]
        );
        // Start-up only: a few small files, read and written in place.
        let cgroups = Cgroups::detect(&scope);
        let mut sandbox = Sandbox {
            options,
            watchdog,
            unavailable: None,
            user_namespace: true,
            root,
            cgroups,
            binds: Vec::new(),
            links: Vec::new(),
            uids: Mutex::new(BTreeMap::new()),
        };
        if let Err(why) = sandbox.layout() {
            sandbox.unavailable = Some(why);
            return sandbox;
        }
        match &sandbox.cgroups {
            Ok(cgroups) => cgroups.clean(),
            // Root can always have cgroups; failing that, nothing is limited.
            Err(why) if root => {
                sandbox.unavailable = Some(format!("replicas cannot get cgroups: {why}"));
                return sandbox;
            }
            Err(why) => tracing::warn!(
                "replicas get no cgroup ({why}): memory, CPU and process limits are not enforced, \
                 and functions with limits will not start"
            ),
        }
        let probe_dir = state_dir.join("run").join(".sandbox-probe");
        let first = sandbox.probe(&probe_dir).await;
        if let Err(first) = first {
            // Without user namespaces root can still switch to another uid.
            sandbox.user_namespace = false;
            if !root || sandbox.probe(&probe_dir).await.is_err() {
                sandbox.unavailable = Some(first);
            } else {
                tracing::info!(reason = %first, "no user namespace for replicas; they switch to their own uid as root");
            }
        }
        let _ = std::fs::remove_dir_all(&probe_dir);
        match &sandbox.unavailable {
            None => tracing::info!(
                user_namespace = sandbox.user_namespace,
                cgroups = sandbox.cgroups.is_ok(),
                "replicas run sandboxed"
            ),
            Some(why) => tracing::error!(
                "replicas cannot be sandboxed here ({why}); none will start (run faas serve with \
                 --unsafe-no-sandbox to run them without one)"
            ),
        }
        sandbox
    }

    /// The host's runtime folders, as binds and links.
    fn layout(&mut self) -> std::result::Result<(), String> {
        let extra = self.options.paths.iter().map(PathBuf::as_path);
        for path in RUNTIME_PATHS.iter().map(Path::new).chain(extra) {
            let meta = match std::fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(_) if RUNTIME_PATHS.iter().any(|p| Path::new(p) == path) => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
                self.links.push(Link { path: path.to_path_buf(), target });
            } else {
                self.binds.push(Bind { source: path.to_path_buf(), target: path.to_path_buf() });
            }
        }
        Ok(())
    }

    /// Makes one sandbox and runs the watchdog's `--version` in it.
    async fn probe(&self, dir: &Path) -> std::result::Result<(), String> {
        let _ = std::fs::remove_dir_all(dir);
        let app = dir.join("app");
        let secrets = dir.join("secrets");
        for d in [&app, &secrets] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let function = FunctionRef { name: "probe".into(), namespace: "probe".into() };
        let identity = self.identity_for(UID_BASE + UID_RANGE - 1);
        let replica = Replica {
            function: &function,
            identity,
            limits: Limits { pids: Some(self.options.pids), ..Limits::default() },
            network: true,
            port: 0,
            bundle: &app,
            secrets: &secrets,
            dir,
            instance: "sandbox-probe",
            precompiled: None,
        };
        let (mut spec, cgroup) = self.replica(&replica).map_err(|e| e.to_string())?;
        spec.args = vec!["--version".into()];
        let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        let run = tokio::process::Command::new(&self.options.program)
            .args(["run", &json])
            .env_clear()
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let outcome = match tokio::time::timeout(Duration::from_secs(10), run).await {
            Err(_) => Err("a sandbox did not start within 10 s".to_owned()),
            Ok(Err(e)) => Err(format!("{}: {e}", self.options.program.display())),
            Ok(Ok(out)) if out.status.success() && out.stdout.starts_with(b"faas-watchdog") => Ok(()),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let why = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
                Err(format!("{} ({})", why.trim().trim_start_matches("faas-sandbox: "), out.status))
            }
        };
        if let Some(cgroup) = cgroup {
            cgroup.kill_and_remove();
        }
        outcome
    }

    /// Why replicas cannot start, as an error for each start.
    pub(super) fn check(&self) -> io::Result<()> {
        match &self.unavailable {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!(
                "the sandbox is unavailable here ({why}); start faas serve with --unsafe-no-sandbox to \
                 run replicas without one"
            ))),
        }
    }

    /// The uid and gid `function`'s replicas run as (a new pair the first
    /// time, when the provider is root).
    pub(super) fn identity(&self, function: &FunctionRef) -> Result<Identity> {
        if !self.root {
            return Ok(self.identity_for(0));
        }
        let mut uids = self.uids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(uid) = uids.get(function) {
            return Ok(self.identity_for(*uid));
        }
        // The first free uid, from a start that depends on the function, so
        // that a function usually keeps its uid across restarts.
        let digest = Sha256::digest(format!("{}/{}", function.namespace, function.name).as_bytes());
        let start = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % (UID_RANGE - 1);
        let taken: std::collections::BTreeSet<u32> = uids.values().copied().collect();
        let uid = (0..UID_RANGE - 1)
            .map(|i| UID_BASE + (start + i) % (UID_RANGE - 1))
            .find(|uid| !taken.contains(uid))
            .ok_or_else(|| ProviderError::Internal("no free function uid left".into()))?;
        uids.insert(function.clone(), uid);
        Ok(self.identity_for(uid))
    }

    /// `uid` (for root) or the provider's own uid and gid.
    fn identity_for(&self, uid: u32) -> Identity {
        let user_namespace = self.user_namespace;
        if self.root {
            Identity { uid, gid: uid, user_namespace }
        } else {
            let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
            Identity { uid, gid, user_namespace }
        }
    }

    /// Who owns `function`'s secret files, if not the provider.
    pub(super) fn secret_owner(&self, function: &FunctionRef) -> Option<(u32, u32)> {
        let uids = self.uids.lock().unwrap_or_else(|e| e.into_inner());
        uids.get(function).map(|uid| (*uid, *uid))
    }

    /// `function` is gone: its uid can go to another.
    pub(super) fn release(&self, function: &FunctionRef) {
        self.uids.lock().unwrap_or_else(|e| e.into_inner()).remove(function);
    }

    /// Fails when `limits` cannot be enforced here.
    pub(super) fn check_limits(&self, limits: &Limits) -> Result<()> {
        match &self.cgroups {
            Err(why) if limits.memory_bytes.is_some() || limits.cpu_millis.is_some() => {
                Err(ProviderError::invalid(
                    "limits",
                    format!("replicas here get no cgroup ({why}), so their limits cannot be enforced"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The sandbox of one replica, and its cgroup (made here, with its
    /// limits and the pids limit).
    pub(super) fn replica(&self, r: &Replica<'_>) -> io::Result<(Spec, Option<Cgroup>)> {
        let root = r.dir.join("root");
        std::fs::create_dir_all(&root)?;
        let (passwd, group) = (r.dir.join("passwd"), r.dir.join("group"));
        std::fs::write(
            &passwd,
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                 app:x:{}:{}:{}:/tmp:/usr/sbin/nologin\n",
                r.identity.uid, r.identity.gid, r.function.name
            ),
        )?;
        std::fs::write(&group, format!("root:x:0:\nnogroup:x:65534:\napp:x:{}:\n", r.identity.gid))?;

        let mut binds = self.binds.clone();
        let mut add = |source: &Path, target: &str| {
            binds.push(Bind { source: source.to_path_buf(), target: target.into() })
        };
        add(&self.watchdog, PROGRAM);
        add(r.bundle, APP_DIR);
        add(r.secrets, SECRETS_DIR);
        add(&passwd, "/etc/passwd");
        add(&group, "/etc/group");
        if let Some(precompiled) = r.precompiled {
            add(precompiled, super::wasm::PRECOMPILED_PATH);
        }

        let cgroup = match &self.cgroups {
            Ok(cgroups) => {
                let limits = Limits { pids: r.limits.pids.or(Some(self.options.pids)), ..r.limits };
                Some(cgroups.create(r.instance, &limits)?)
            }
            Err(_) => None,
        };
        // The replica's own memory counters, where the watchdog looks for
        // them (as in a container): it names out-of-memory kills.
        if let Some((version, dir)) = cgroup.as_ref().and_then(Cgroup::memory_dir) {
            let target = match version {
                Version::V1 => "/sys/fs/cgroup/memory",
                Version::V2 => "/sys/fs/cgroup",
            };
            binds.push(Bind { source: dir, target: target.into() });
        }
        let spec = Spec {
            root,
            binds,
            links: self.links.clone(),
            identity: r.identity,
            tmp_bytes: self.options.tmp_bytes,
            // As a container's or a pod's: the replica's own name.
            hostname: r.instance[..r.instance.len().min(63)].trim_end_matches('-').to_owned(),
            network: r.network,
            nproc: Some(self.options.pids),
            bind_ports: vec![r.port],
            cgroups: cgroup.as_ref().map(Cgroup::dirs).unwrap_or_default(),
            workdir: APP_DIR.into(),
            program: PROGRAM.into(),
            args: Vec::new(),
        };
        Ok((spec, cgroup))
    }

    /// Every replica has stopped: the gateway's cgroup folders go too.
    pub(super) fn stopped(&self) {
        if let Ok(cgroups) = &self.cgroups {
            cgroups.clean();
            cgroups.remove();
        }
    }

    pub(super) fn program(&self) -> &Path {
        &self.options.program
    }
}
