//! Function bundles: what a process replica runs, in place of a container
//! image. A bundle is a folder with the function's files and an optional
//! `bundle.json` manifest (`{"env": {"fprocess": "...", "mode": "http", ...}}`,
//! the environment a template's Dockerfile would set).
//!
//! A deployment's `image` names a bundle in one of three ways:
//! - `name[:tag]` (tag `latest` by default): a bundle pushed to this gateway
//!   (`POST /system/bundles?image=name:tag`, a tar archive): how a function
//!   built on another machine reaches a remote gateway;
//! - `name@sha256:<hex>` or `sha256:<hex>`: a pushed bundle by digest;
//! - `/absolute/path`: a folder on the gateway's machine, used in place.
//!
//! Pushed bundles are stored once per digest (`bundles/blobs/<hex>`); tags
//! live in one index file written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{BundleInfo, ProviderError, Result, fsutil};

/// Most bytes a bundle may unpack to.
const MAX_UNPACKED: u64 = 4 << 30;
/// Most entries in one bundle archive.
const MAX_ENTRIES: usize = 200_000;
pub const MANIFEST: &str = "bundle.json";

/// `bundle.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Environment of the watchdog (and so of the function): `fprocess`,
    /// `mode`, `upstream_url` (`${PORT}` is replaced by a free port), ...
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The language runtime it needs, for messages.
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl Manifest {
    /// Reads `bundle.json` from a bundle folder (absent: an empty manifest).
    pub fn read(dir: &Path) -> Result<Manifest> {
        match fs::read(dir.join(MANIFEST)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ProviderError::invalid("image", format!("{} in {} is invalid: {e}", MANIFEST, dir.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(ProviderError::internal("reading bundle manifest", e)),
        }
    }
}

/// How an `image` names a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Path(PathBuf),
    Digest(String),
    Tag { name: String, tag: String },
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<ImageRef> {
        let bad = |why: &str| ProviderError::invalid("image", format!("{image:?} {why}"));
        if image.starts_with('/') {
            return Ok(ImageRef::Path(PathBuf::from(image)));
        }
        if let Some(hex) = image.strip_prefix("sha256:") {
            return parse_hex(hex).map(ImageRef::Digest).ok_or_else(|| bad("is not a sha256 digest"));
        }
        if let Some((name, digest)) = image.split_once('@') {
            validate_repo(name).map_err(&bad)?;
            let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad("has a digest that is not sha256"))?;
            return parse_hex(hex).map(ImageRef::Digest).ok_or_else(|| bad("is not a sha256 digest"));
        }
        let (name, tag) = match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (image, "latest"),
        };
        validate_repo(name).map_err(&bad)?;
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !tag_ok {
            return Err(bad("has an invalid tag"));
        }
        Ok(ImageRef::Tag { name: name.to_owned(), tag: tag.to_owned() })
    }
}

fn parse_hex(hex: &str) -> Option<String> {
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

fn validate_repo(name: &str) -> std::result::Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b':')
                })
        });
    if ok { Ok(()) } else { Err("is not a valid name (lowercase letters, digits, '.', '_', '-', '/')") }
}

pub struct BundleStore {
    dir: PathBuf,
    /// `name:tag` -> info; guarded so that pushes do not lose each other's tags.
    index: Mutex<BTreeMap<String, BundleInfo>>,
}

impl BundleStore {
    pub fn open(dir: PathBuf) -> io::Result<BundleStore> {
        fsutil::create_private_dir(&dir.join("blobs"))?;
        let index = match fs::read(dir.join("tags.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(BundleStore { dir, index: Mutex::new(index) })
    }

    fn blob(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs").join(hex)
    }

    /// The folder an image names.
    pub fn resolve(&self, image: &str) -> Result<PathBuf> {
        let path = match ImageRef::parse(image)? {
            ImageRef::Path(p) => p,
            ImageRef::Digest(hex) => self.blob(&hex),
            ImageRef::Tag { name, tag } => {
                let key = format!("{name}:{tag}");
                let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                let info = index.get(&key).ok_or_else(|| {
                    ProviderError::invalid(
                        "image",
                        format!(
                            "no bundle {key} on this gateway: push it first (faas deploy does; or POST \
                             /system/bundles?image={key} with a tar archive), or give an absolute path"
                        ),
                    )
                })?;
                self.blob(info.digest.trim_start_matches("sha256:"))
            }
        };
        if !path.is_dir() {
            return Err(ProviderError::invalid(
                "image",
                format!("{image:?}: no bundle folder at {}", path.display()),
            ));
        }
        Ok(path)
    }

    /// Stores a tar archive (gzipped or not) under `image` (`name[:tag]`).
    /// Blocking: call from a blocking thread.
    pub fn push(&self, image: &str, archive: Bytes) -> Result<BundleInfo> {
        let (name, tag) = match ImageRef::parse(image)? {
            ImageRef::Tag { name, tag } => (name, tag),
            _ => return Err(ProviderError::invalid("image", "push to a name[:tag], not a path or digest")),
        };
        let hex = format!("{:x}", Sha256::digest(&archive));
        let target = self.blob(&hex);
        if !target.is_dir() {
            let tmp = self.dir.join("blobs").join(format!(".tmp-{hex}-{:08x}", fastrand::u32(..)));
            let unpacked = unpack(&archive, &tmp).and_then(|()| {
                fs::rename(&tmp, &target).map_err(|e| ProviderError::internal("storing bundle", e))
            });
            if let Err(e) = unpacked {
                let _ = fs::remove_dir_all(&tmp);
                if !target.is_dir() {
                    return Err(e);
                }
            }
        }
        let info = BundleInfo {
            image: format!("{name}:{tag}"),
            digest: format!("sha256:{hex}"),
            size: archive.len() as u64,
        };
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.insert(info.image.clone(), info.clone());
        let bytes =
            serde_json::to_vec_pretty(&*index).map_err(|e| ProviderError::internal("bundle index", e))?;
        fsutil::write_atomic(&self.dir.join("tags.json"), &bytes, 0o600)
            .map_err(|e| ProviderError::internal("writing bundle index", e))?;
        Ok(info)
    }

    pub fn list(&self) -> Vec<BundleInfo> {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// Unpacks a (possibly gzipped) tar archive into `dest`, refusing paths that
/// leave it, special files, and archives that unpack too large.
pub(crate) fn unpack(archive: &[u8], dest: &Path) -> Result<()> {
    let bad = |why: String| ProviderError::invalid("archive", why);
    fs::create_dir_all(dest).map_err(|e| ProviderError::internal("unpacking bundle", e))?;
    let reader: Box<dyn Read> = if archive.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(archive))
    } else {
        Box::new(archive)
    };
    let mut tar = tar::Archive::new(reader);
    let mut total = 0u64;
    let entries = tar.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
        if i >= MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
            return Err(bad(format!("{path}: only files, folders and links are allowed")));
        }
        total += entry.header().size().unwrap_or(0);
        if total > MAX_UNPACKED {
            return Err(bad(format!("unpacks to more than {} GiB", MAX_UNPACKED >> 30)));
        }
        let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        match entry.unpack_in(dest) {
            Ok(true) => {}
            Ok(false) => return Err(bad(format!("{path}: path leaves the bundle"))),
            Err(e) => return Err(bad(format!("{path}: {e}"))),
        }
    }
    if total == 0 && fs::read_dir(dest).map(|mut d| d.next().is_none()).unwrap_or(true) {
        return Err(bad("the archive is empty".into()));
    }
    readable_by_all(dest).map_err(|e| ProviderError::internal("unpacking bundle", e))
}

/// Makes a bundle readable by whoever its replicas run as (a sandboxed
/// function has a uid of its own): folders 0755, files 0644, or 0755 if
/// the archive made them executable. Writable by no one but the provider.
fn readable_by_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            readable_by_all(&entry.path())?;
        } else if kind.is_file() {
            let exec = entry.metadata()?.permissions().mode() & 0o111 != 0;
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Bytes {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            // Private modes, as an archive may have them.
            h.set_mode(if path.ends_with(".sh") { 0o700 } else { 0o600 });
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        Bytes::from(b.into_inner().unwrap())
    }

    #[test]
    fn image_references() {
        assert_eq!(ImageRef::parse("/srv/fn").unwrap(), ImageRef::Path("/srv/fn".into()));
        assert_eq!(ImageRef::parse("wc").unwrap(), ImageRef::Tag { name: "wc".into(), tag: "latest".into() });
        assert_eq!(
            ImageRef::parse("team/wc:1.2").unwrap(),
            ImageRef::Tag { name: "team/wc".into(), tag: "1.2".into() }
        );
        let hex = "a".repeat(64);
        assert_eq!(ImageRef::parse(&format!("wc@sha256:{hex}")).unwrap(), ImageRef::Digest(hex.clone()));
        assert_eq!(ImageRef::parse(&format!("sha256:{hex}")).unwrap(), ImageRef::Digest(hex));
        for bad in ["", "WC", "../x", "a//b", "wc:", "wc:bad tag", "sha256:xyz", "wc@md5:00"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn push_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let store = BundleStore::open(dir.path().join("bundles")).unwrap();
        let a = archive(&[
            ("bundle.json", br#"{"env":{"fprocess":"cat"}}"#),
            ("lib/x.txt", b"x"),
            ("run.sh", b"cat"),
        ]);
        let info = store.push("cat:1", a.clone()).unwrap();
        assert_eq!(info.image, "cat:1");
        let path = store.resolve("cat:1").unwrap();
        assert_eq!(fs::read(path.join("lib/x.txt")).unwrap(), b"x");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            (mode(&path), mode(&path.join("lib")), mode(&path.join("lib/x.txt"))),
            (0o755, 0o755, 0o644)
        );
        assert_eq!(mode(&path.join("run.sh")), 0o755);
        assert_eq!(Manifest::read(&path).unwrap().env["fprocess"], "cat");
        assert_eq!(store.resolve(&info.digest).unwrap(), path);
        assert!(store.resolve("cat:2").is_err());
        // Same content again: same blob; the index survives a reopen.
        store.push("cat:latest", a).unwrap();
        let reopened = BundleStore::open(dir.path().join("bundles")).unwrap();
        assert_eq!(reopened.resolve("cat").unwrap(), path);
        assert_eq!(reopened.list().len(), 2);
    }

    #[test]
    fn refuses_bad_archives() {
        let dir = tempfile::tempdir().unwrap();
        let store = BundleStore::open(dir.path().join("bundles")).unwrap();
        assert!(store.push("x", Bytes::from_static(b"not a tar at all, just text")).is_err());
        assert!(store.push("x", archive(&[])).is_err());
        // A path that climbs out, written by hand (tar::Builder refuses to).
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../evil.sh");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(b"x");
        raw.resize(512 * 2, 0);
        raw.extend_from_slice(&[0; 1024]);
        let err = store.push("x", Bytes::from(raw)).unwrap_err();
        assert!(err.to_string().contains("leaves the bundle"), "{err}");
        assert!(!dir.path().join("bundles/blobs/evil.sh").exists());
        assert!(store.list().is_empty());
    }
}
