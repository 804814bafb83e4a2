//! Where `faas` keeps things.

use std::path::{Path, PathBuf};

use ferrofaas_provider::engine::image;
use ferrofaas_types::platform::Arch;

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
    built_watchdog(Arch::native())
}

/// A static watchdog for `arch` built in this checkout: by
/// `scripts/build-watchdog` (`target/<triple>/release/`) or by
/// `scripts/build-release --arch` (`target/debian-rust/<triple>/release/`).
fn built_watchdog(arch: Arch) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let target = arch.rust_target();
    let found = [
        format!("../{target}/release/faas-watchdog"),
        format!("../debian-rust/{target}/release/faas-watchdog"),
    ]
    .map(|p| dir.join(p))
    .into_iter()
    .find(|p| p.is_file() && image::program_arch(p) == Some(arch))?;
    std::fs::canonicalize(found).ok()
}

/// The `faas-watchdog` that goes into images for `arch`: `given` (which
/// must be a program for `arch`), else the static build for it in this
/// checkout, else (for this machine's architecture) the one beside `faas`.
pub fn image_watchdog(given: Option<&Path>, arch: Arch) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        anyhow::ensure!(p.is_file(), "no faas-watchdog at {}", p.display());
        match image::program_arch(p) {
            Some(found) if found == arch => {}
            Some(found) => anyhow::bail!(
                "{} is a watchdog for {found}; images for {arch} need one for {arch} \
                 (scripts/build-release --arch {arch})",
                p.display()
            ),
            None => anyhow::bail!("{} is not an amd64 or arm64 program", p.display()),
        }
        return Ok(std::fs::canonicalize(p)?);
    }
    if let Some(found) = built_watchdog(arch) {
        return Ok(found);
    }
    anyhow::ensure!(
        arch == Arch::native(),
        "no faas-watchdog for {arch} to put into images: run scripts/build-release --arch {arch}, \
         or pass --image-watchdog"
    );
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
