//! Function definitions, one JSON file per function
//! (`functions/<namespace>/<name>.json`), written atomically: after a restart
//! the platform starts what it ran before.

use std::fs;
use std::io;
use std::path::PathBuf;

use ferrofaas_types::{FunctionDeployment, FunctionRef};
use serde::{Deserialize, Serialize};

use crate::fsutil;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFunction {
    pub spec: FunctionDeployment,
    pub replicas: u64,
    /// RFC 3339.
    pub created_at: String,
}

impl StoredFunction {
    pub fn function(&self) -> FunctionRef {
        FunctionRef { name: self.spec.service.clone(), namespace: self.spec.namespace.clone() }
    }
}

pub struct FunctionStore {
    dir: PathBuf,
}

impl FunctionStore {
    pub fn open(dir: PathBuf) -> io::Result<FunctionStore> {
        fsutil::create_private_dir(&dir)?;
        Ok(FunctionStore { dir })
    }

    fn path(&self, f: &FunctionRef) -> PathBuf {
        self.dir.join(&f.namespace).join(format!("{}.json", f.name))
    }

    /// Every stored function. A file that cannot be read is reported and
    /// skipped (and left in place for a human to look at).
    pub fn load_all(&self) -> io::Result<Vec<StoredFunction>> {
        let mut out = Vec::new();
        for ns in fs::read_dir(&self.dir)? {
            let ns = ns?;
            if !ns.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(ns.path())? {
                let path = file?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match fs::read(&path).map_err(|e| e.to_string()).and_then(|bytes| {
                    serde_json::from_slice::<StoredFunction>(&bytes).map_err(|e| e.to_string())
                }) {
                    Ok(f) => out.push(f),
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "skipping unreadable function definition")
                    }
                }
            }
        }
        out.sort_by_key(StoredFunction::function);
        Ok(out)
    }

    pub fn save(&self, f: &StoredFunction) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(f).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.path(&f.function()), &bytes, 0o600)
    }

    pub fn delete(&self, f: &FunctionRef) -> io::Result<()> {
        match fs::remove_file(self.path(f)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path().join("functions")).unwrap();
        let mut spec =
            FunctionDeployment { service: "echo".into(), image: "echo:1".into(), ..Default::default() };
        spec.validate().unwrap();
        let f = StoredFunction { spec, replicas: 2, created_at: "2026-11-28T00:00:00Z".into() };
        store.save(&f).unwrap();
        std::fs::write(dir.path().join("functions/openfaas-fn/broken.json"), b"{nope").unwrap();
        assert_eq!(store.load_all().unwrap(), vec![f.clone()]);
        store.delete(&f.function()).unwrap();
        store.delete(&f.function()).unwrap();
        assert!(store.load_all().unwrap().is_empty());
    }
}
