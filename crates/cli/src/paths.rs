//! Where `faas` keeps things.

use std::path::PathBuf;

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
