//! Where `faas` keeps things.

use std::path::{Path, PathBuf};

/// The platform's state folder: `$FERROFAAS_STATE`, else
/// `$XDG_DATA_HOME/ferrofaas`, else `~/.local/share/ferrofaas`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROFAAS_STATE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("ferrofaas");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/ferrofaas")
}

/// The gateway's admin credentials inside a state folder.
pub fn credentials_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("credentials.json")
}

/// The static build of the watchdog beside `faas` (`scripts/build-watchdog`
/// puts it in `target/<triple>/release/`), if there is one: what images
/// get and process replicas run, the one `docs/PERFORMANCE.md` measures.
pub fn static_watchdog() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let found = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]
        .map(|target| dir.join(format!("../{target}/release/faas-watchdog")))
        .into_iter()
        .find(|p| p.is_file())?;
    std::fs::canonicalize(found).ok()
}

/// The `faas-watchdog` that goes into images: `given`, else the static build
/// beside `faas` (`scripts/build-watchdog`), else the one beside `faas`.
pub fn image_watchdog(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        anyhow::ensure!(p.is_file(), "no faas-watchdog at {}", p.display());
        return Ok(std::fs::canonicalize(p)?);
    }
    if let Some(found) = static_watchdog() {
        return Ok(found);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow::anyhow!("faas has no folder"))?;
    let dynamic = dir.join("faas-watchdog");
    anyhow::ensure!(
        dynamic.is_file(),
        "no faas-watchdog to put into images: run scripts/build-watchdog, or pass --image-watchdog"
    );
    tracing::warn!(watchdog = %dynamic.display(), "no static watchdog (scripts/build-watchdog); images get the dynamic one");
    Ok(std::fs::canonicalize(dynamic)?)
}
