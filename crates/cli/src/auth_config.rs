//! Saved logins, in the file faas-cli uses (`~/.openfaas/config.yml`, or
//! `$OPENFAAS_CONFIG/config.yml`): one `faas login` serves both tools.
//! The folder is 0700 and the file 0600.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub auths: Vec<AuthEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthEntry {
    pub gateway: String,
    pub auth: String,
    /// base64 of `user:password` for `basic`.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_norway::Value>,
}

pub fn path() -> PathBuf {
    let dir = match std::env::var_os("OPENFAAS_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from).join(".openfaas"),
    };
    dir.join("config.yml")
}

impl AuthConfig {
    pub fn load() -> anyhow::Result<AuthConfig> {
        let path = path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_norway::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let path = path();
        let dir = path.parent().context("config path has no folder")?;
        ferrofaas_provider::fsutil::create_private_dir(dir)?;
        let text = serde_norway::to_string(self)?;
        ferrofaas_provider::fsutil::write_atomic(&path, text.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The `Authorization` header saved for `gateway`.
    pub fn header_for(&self, gateway: &str) -> Option<String> {
        let entry = self.auths.iter().find(|e| e.gateway == gateway)?;
        match entry.auth.as_str() {
            "basic" => Some(format!("Basic {}", entry.token)),
            "oauth2" => Some(format!("Bearer {}", entry.token)),
            _ => None,
        }
    }

    pub fn set_basic(&mut self, gateway: &str, user: &str, password: &str) {
        self.remove(gateway);
        self.auths.push(AuthEntry {
            gateway: gateway.to_owned(),
            auth: "basic".into(),
            token: ferrofaas_types::base64::encode(format!("{user}:{password}").as_bytes()),
            options: None,
        });
    }

    pub fn remove(&mut self, gateway: &str) -> bool {
        let before = self.auths.len();
        self.auths.retain(|e| e.gateway != gateway);
        self.auths.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_faas_cli_files() {
        let text =
            "auths:\n  - gateway: http://127.0.0.1:8080\n    auth: basic\n    token: YWRtaW46c2VjcmV0\n";
        let cfg: AuthConfig = serde_norway::from_str(text).unwrap();
        assert_eq!(cfg.header_for("http://127.0.0.1:8080").unwrap(), "Basic YWRtaW46c2VjcmV0");
        assert!(cfg.header_for("http://other:8080").is_none());
        let mut cfg = cfg;
        cfg.set_basic("http://127.0.0.1:8080", "admin", "new");
        assert_eq!(cfg.auths.len(), 1);
        assert!(cfg.remove("http://127.0.0.1:8080"));
        assert!(cfg.auths.is_empty());
    }
}
