//! `mode=wasm` bundles: the component compiled once, at deploy, by the
//! replicas' own watchdog (`faas-watchdog --precompile`, so that it is of
//! exactly their engine), and kept in the state folder by content.
//!
//! The gateway does not link a WebAssembly engine: the watchdog compiles,
//! as the provider's user, a file that must lie inside the bundle. A file
//! that is not a component of the functions' world is refused at deploy
//! (400), not found later by a replica that cannot start.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use ferrofaas_sandbox::cgroup::Limits;

use crate::{ProviderError, Result};

/// Where a replica finds its precompiled component, in its sandbox.
pub const PRECOMPILED_PATH: &str = "/var/lib/ferrofaas/function.cwasm";
/// A compile that takes longer is given up (a Python component takes
/// seconds).
const COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

/// The precompiled component of a bundle whose `fprocess` is `component`
/// (relative to the bundle), compiled now unless the cache has it.
pub async fn precompiled(watchdog: &Path, cache: &Path, bundle: &Path, component: &str) -> Result<PathBuf> {
    let file = inside(bundle, component)?;
    let key = {
        let (file, watchdog) = (file.clone(), watchdog.to_owned());
        tokio::task::spawn_blocking(move || cache_key(&file, &watchdog))
            .await
            .map_err(|e| ProviderError::internal("hashing the component", e))??
    };
    let out = cache.join(format!("{key}.cwasm"));
    if out.is_file() {
        return Ok(out);
    }
    crate::fsutil::create_private_dir(cache).map_err(|e| ProviderError::internal("the wasm cache", e))?;
    let run = tokio::process::Command::new(watchdog)
        .arg("--precompile")
        .arg(&file)
        .arg(&out)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(COMPILE_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(ProviderError::internal(&format!("running {}", watchdog.display()), e)),
        Err(_) => {
            return Err(ProviderError::invalid(
                "image",
                format!("the WebAssembly component {component} did not compile within {COMPILE_TIMEOUT:?}"),
            ));
        }
    };
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        let why = why.trim().trim_start_matches("faas-watchdog: ");
        // The first lines say what is wrong; a backtrace may follow.
        let why: String = why.lines().take(6).collect::<Vec<_>>().join("\n");
        return Err(ProviderError::invalid(
            "image",
            format!(
                "{component} is not a WebAssembly component that ferrofaas can run (a wasi:http incoming-handler): {why}"
            ),
        ));
    }
    Ok(out)
}

/// Instances a wasm replica runs at once without `max_inflight` (the
/// watchdog's default).
const DEFAULT_SLOTS: u64 = 64;
/// What the watchdog and its engine use besides the instances.
const HOST_MEMORY: u64 = 128 << 20;
/// An instance's memory without a limit in the deployment (the watchdog's
/// default).
const DEFAULT_INSTANCE_MEMORY: u64 = 128 << 20;

/// A wasm deployment's memory limit is each instance's
/// (`wasm_memory_limit`, kept by the engine); the replica's cgroup holds
/// them all, as many as may run at once, and the watchdog.
pub fn limits(env: &mut std::collections::BTreeMap<String, String>, limits: &mut Limits) {
    let instance = limits.memory_bytes.unwrap_or(DEFAULT_INSTANCE_MEMORY);
    env.insert("wasm_memory_limit".into(), instance.to_string());
    let slots = env.get("max_inflight").and_then(|v| v.trim().parse::<u64>().ok()).filter(|&n| n > 0);
    let slots = slots.unwrap_or(DEFAULT_SLOTS);
    if limits.memory_bytes.is_some() {
        limits.memory_bytes = Some(instance.saturating_mul(slots).saturating_add(HOST_MEMORY));
    }
}

/// `component` as a file inside `bundle`: no absolute path, no way out.
fn inside(bundle: &Path, component: &str) -> Result<PathBuf> {
    let refused = |why: &str| ProviderError::invalid("envProcess", format!("wasm mode: {component:?} {why}"));
    let relative = Path::new(component.trim_start_matches("./"));
    if relative.is_absolute() || component.is_empty() {
        return Err(refused("must be a file in the bundle, named relative to it"));
    }
    let root = bundle.canonicalize().map_err(|e| ProviderError::internal("the bundle", e))?;
    let file = root.join(relative).canonicalize().map_err(|_| refused("is not a file in the bundle"))?;
    if !file.starts_with(&root) || !file.is_file() {
        return Err(refused("is not a file in the bundle"));
    }
    Ok(file)
}

/// The component's content and the watchdog that compiles it (its size
/// and time: a new watchdog compiles anew).
fn cache_key(file: &Path, watchdog: &Path) -> Result<String> {
    let io = |e: std::io::Error| ProviderError::internal(&format!("reading {}", file.display()), e);
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(file).map_err(io)?;
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let meta = std::fs::metadata(watchdog).map_err(|e| ProviderError::internal("the watchdog", e))?;
    hasher.update(meta.len().to_le_bytes());
    hasher.update(meta.mtime().to_le_bytes());
    hasher.update(meta.mtime_nsec().to_le_bytes());
    Ok(ferrofaas_types::hex::encode(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_must_be_inside_its_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(bundle.join("sub")).unwrap();
        std::fs::write(bundle.join("f.wasm"), b"x").unwrap();
        std::fs::write(bundle.join("sub/g.wasm"), b"x").unwrap();
        std::fs::write(dir.path().join("outside.wasm"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.wasm"), bundle.join("link.wasm")).unwrap();
        assert!(inside(&bundle, "f.wasm").is_ok());
        assert!(inside(&bundle, "./sub/g.wasm").is_ok());
        for bad in ["../outside.wasm", "/etc/passwd", "link.wasm", "sub", "", "missing.wasm"] {
            assert!(inside(&bundle, bad).is_err(), "{bad}");
        }
    }
}
