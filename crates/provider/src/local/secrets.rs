//! Secrets as files (`secrets/<namespace>/<name>`, mode 0600 in 0700
//! folders). Values never leave this module except into a replica's own
//! secrets folder.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::{ProviderError, Result};

/// Who reads a replica's secrets: the modes of its files and their
/// folder, and the uid and gid that own them (`None`: the provider's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretAccess {
    pub file_mode: u32,
    pub dir_mode: u32,
    pub owner: Option<(u32, u32)>,
}

impl Default for SecretAccess {
    fn default() -> SecretAccess {
        SecretAccess { file_mode: 0o400, dir_mode: 0o700, owner: None }
    }
}

pub struct SecretStore {
    dir: PathBuf,
}

impl SecretStore {
    pub fn open(dir: PathBuf) -> io::Result<SecretStore> {
        fsutil::create_private_dir(&dir)?;
        Ok(SecretStore { dir })
    }

    /// Names are validated by the caller (no `/`, no `..`).
    fn path(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join(namespace).join(name)
    }

    pub fn exists(&self, namespace: &str, name: &str) -> bool {
        self.path(namespace, name).is_file()
    }

    pub fn list(&self, namespace: &str) -> Result<Vec<String>> {
        let dir = self.dir.join(namespace);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ProviderError::internal("reading secrets", e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn create(&self, namespace: &str, name: &str, value: &[u8]) -> Result<()> {
        if self.exists(namespace, name) {
            return Err(ProviderError::Conflict(format!(
                "secret {name} already exists in namespace {namespace}"
            )));
        }
        self.write(namespace, name, value)
    }

    pub fn update(&self, namespace: &str, name: &str, value: &[u8]) -> Result<()> {
        if !self.exists(namespace, name) {
            return Err(ProviderError::NotFound(format!("secret {name} not found in namespace {namespace}")));
        }
        self.write(namespace, name, value)
    }

    fn write(&self, namespace: &str, name: &str, value: &[u8]) -> Result<()> {
        fsutil::create_private_dir(&self.dir.join(namespace))
            .map_err(|e| ProviderError::internal("secrets", e))?;
        fsutil::write_atomic(&self.path(namespace, name), value, 0o600)
            .map_err(|e| ProviderError::internal("writing secret", e))
    }

    pub fn delete(&self, namespace: &str, name: &str) -> Result<()> {
        match fs::remove_file(self.path(namespace, name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ProviderError::NotFound(format!("secret {name} not found in namespace {namespace}")))
            }
            Err(e) => Err(ProviderError::internal("deleting secret", e)),
        }
    }

    /// Copies the named secrets into `dest` (a replica's own folder), as
    /// files the function can read: `<dest>/<name>`, with the modes and
    /// owner of `access` (the backend knows who reads them).
    pub fn materialize(
        &self,
        namespace: &str,
        names: &[String],
        dest: &Path,
        access: SecretAccess,
    ) -> io::Result<()> {
        fs::create_dir_all(dest)?;
        let owner = access.owner.map(|(u, g)| (Some(u), Some(g)));
        for name in names {
            let value = fs::read(self.path(namespace, name))?;
            let target = dest.join(name);
            let _ = fs::remove_file(&target);
            fsutil::write_atomic(&target, &value, access.file_mode)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&target, uid, gid)?;
            }
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dest, uid, gid)?;
        }
        fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(access.dir_mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let s = SecretStore::open(dir.path().join("secrets")).unwrap();
        s.create("ns", "db", b"pw1").unwrap();
        assert!(matches!(s.create("ns", "db", b"x"), Err(ProviderError::Conflict(_))));
        assert!(matches!(s.update("ns", "api", b"x"), Err(ProviderError::NotFound(_))));
        s.update("ns", "db", b"pw2").unwrap();
        assert_eq!(s.list("ns").unwrap(), vec!["db"]);
        assert!(s.list("other").unwrap().is_empty());
        let dest = dir.path().join("replica");
        s.materialize("ns", &["db".into()], &dest, SecretAccess::default()).unwrap();
        assert_eq!(fs::read(dest.join("db")).unwrap(), b"pw2");
        s.delete("ns", "db").unwrap();
        assert!(matches!(s.delete("ns", "db"), Err(ProviderError::NotFound(_))));
    }
}
