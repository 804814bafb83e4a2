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
//! - `/absolute/path`: a folder on the gateway's machine, used in place,
//!   only under the folders the operator names (`faas serve --image-root`)
//!   and never the state folder, inside it or around it.
//!
//! Pushed bundles are stored once per digest (`bundles/blobs/<hex>`); tags
//! live in one index file written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{BundleInfo, ProviderError, Result, fsutil};

/// How large bundles may be, unpacked: each, and all a store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleLimits {
    /// Bytes one bundle may unpack to (a gzip bomb stops there).
    pub max_unpacked: u64,
    /// Bytes of all the bundles a gateway keeps, unpacked.
    pub max_store: u64,
}

impl Default for BundleLimits {
    fn default() -> BundleLimits {
        BundleLimits { max_unpacked: 1 << 30, max_store: 8 << 30 }
    }
}

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
    /// A `bundle.json` that is a link is refused, not followed (it could
    /// name any file the gateway may read).
    pub fn read(dir: &Path) -> Result<Manifest> {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(dir.join(MANIFEST));
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(ProviderError::invalid(
                    "image",
                    format!("{MANIFEST} in {} is a link: it must be a file of the bundle", dir.display()),
                ));
            }
            Err(e) => return Err(ProviderError::internal("reading bundle manifest", e)),
        };
        let meta = file.metadata().map_err(|e| ProviderError::internal("reading bundle manifest", e))?;
        if !meta.is_file() || meta.len() > 1 << 20 {
            return Err(ProviderError::invalid(
                "image",
                format!("{MANIFEST} in {} must be a file of at most 1 MiB", dir.display()),
            ));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| ProviderError::internal("reading bundle manifest", e))?;
        // Its text is not repeated: only where it is wrong.
        serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::invalid("image", format!("{} in {} is invalid: {e}", MANIFEST, dir.display()))
        })
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
        if image.starts_with('/') {
            return Ok(ImageRef::Path(PathBuf::from(image)));
        }
        let r = ferrofaas_types::names::parse_image_reference(image)
            .map_err(|why| ProviderError::invalid("image", why))?;
        Ok(match r.digest {
            Some(hex) => ImageRef::Digest(hex.to_ascii_lowercase()),
            None => ImageRef::Tag { name: r.name.to_owned(), tag: r.tag.unwrap_or("latest").to_owned() },
        })
    }
}

pub struct BundleStore {
    dir: PathBuf,
    /// Where absolute-path images may be (canonical), and the state folder
    /// they may never be, hold or be in.
    image_roots: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    limits: BundleLimits,
    /// `name:tag` -> info; guarded so that pushes do not lose each other's tags.
    index: Mutex<BTreeMap<String, BundleInfo>>,
    /// Unpacked bytes of every blob, and the blob each deployed function
    /// runs (kept while a tag moves on).
    usage: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    sizes: BTreeMap<String, u64>,
    used_by: BTreeMap<String, String>,
}

/// Bytes of the files under `dir` (links and folders count nothing).
fn unpacked_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => unpacked_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

impl BundleStore {
    pub fn open(dir: PathBuf) -> io::Result<BundleStore> {
        fsutil::create_private_dir(&dir.join("blobs"))?;
        let index = match fs::read(dir.join("tags.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let mut usage = Usage::default();
        for entry in fs::read_dir(dir.join("blobs"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                // An unpacking the gateway did not finish.
                let _ = fs::remove_dir_all(entry.path());
            } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                usage.sizes.insert(name, unpacked_size(&entry.path()));
            }
        }
        Ok(BundleStore {
            dir,
            image_roots: Vec::new(),
            state_dir: None,
            limits: BundleLimits::default(),
            index: Mutex::new(index),
            usage: Mutex::new(usage),
        })
    }

    pub fn with_limits(mut self, limits: BundleLimits) -> BundleStore {
        self.limits = limits;
        self
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`BundleStore::resolve`] for a function's deployment: the bundle it
    /// runs is kept however its tag moves, until [`BundleStore::release`].
    pub fn resolve_for(&self, function: &str, image: &str) -> Result<PathBuf> {
        let path = self.resolve(image)?;
        let hex = path.strip_prefix(self.dir.join("blobs")).ok().and_then(|p| p.to_str()).map(str::to_owned);
        let mut usage = self.usage();
        match hex {
            Some(hex) => usage.used_by.insert(function.to_owned(), hex),
            None => usage.used_by.remove(function),
        };
        Ok(path)
    }

    /// The function is gone: its bundle is kept only if tagged or used.
    pub fn release(&self, function: &str) {
        self.usage().used_by.remove(function);
    }

    /// Unpacked bytes of the bundles stored.
    pub fn stored_bytes(&self) -> u64 {
        self.usage().sizes.values().sum()
    }

    /// Removes the blobs no tag names and no function runs; their bytes.
    fn prune(&self) -> u64 {
        let tagged: std::collections::BTreeSet<String> = self
            .index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|i| i.digest.trim_start_matches("sha256:").to_owned())
            .collect();
        let mut usage = self.usage();
        let used: std::collections::BTreeSet<String> = usage.used_by.values().cloned().collect();
        let unused: Vec<String> =
            usage.sizes.keys().filter(|h| !tagged.contains(*h) && !used.contains(*h)).cloned().collect();
        let mut freed = 0;
        for hex in unused {
            match fs::remove_dir_all(self.blob(&hex)) {
                Ok(()) => freed += usage.sizes.remove(&hex).unwrap_or(0),
                Err(e) => tracing::warn!(bundle = %hex, error = %e, "could not remove an unused bundle"),
            }
        }
        freed
    }

    /// Allows absolute-path images under `roots`, never touching `state_dir`.
    pub fn with_image_roots(mut self, roots: &[PathBuf], state_dir: &Path) -> io::Result<BundleStore> {
        self.image_roots = roots.iter().map(fs::canonicalize).collect::<io::Result<_>>()?;
        self.state_dir = Some(fs::canonicalize(state_dir)?);
        Ok(self)
    }

    /// The folder an absolute-path image names, if it may be used.
    fn path_image(&self, path: &Path, image: &str) -> Result<PathBuf> {
        let bad = |why: String| ProviderError::invalid("image", format!("{image:?} {why}"));
        if self.image_roots.is_empty() {
            return Err(bad(
                "is a folder of this machine, and this gateway runs none (faas serve --image-root FOLDER \
                 allows those under FOLDER); push the bundle instead: faas deploy does"
                    .to_owned(),
            ));
        }
        let real =
            fs::canonicalize(path).map_err(|_| bad(format!("names no folder ({})", path.display())))?;
        if !self.image_roots.iter().any(|root| real.starts_with(root)) {
            let roots: Vec<String> = self.image_roots.iter().map(|r| r.display().to_string()).collect();
            return Err(bad(format!(
                "is not under a folder this gateway runs images from (--image-root: {})",
                roots.join(", ")
            )));
        }
        if let Some(state) = &self.state_dir
            && (real.starts_with(state) || state.starts_with(&real))
        {
            return Err(bad("is, holds or is in the gateway's state folder: never an image".to_owned()));
        }
        Ok(real)
    }

    fn blob(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs").join(hex)
    }

    /// The folder an image names.
    pub fn resolve(&self, image: &str) -> Result<PathBuf> {
        let path = match ImageRef::parse(image)? {
            ImageRef::Path(p) => self.path_image(&p, image)?,
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

    /// Stores the tar archive (gzipped or not) in the file `archive` under
    /// `image` (`name[:tag]`). The tag moves to it if it named another
    /// bundle (the answer says which): functions deployed from the tag run
    /// what they were deployed with until they are deployed again. When the
    /// store would pass its limit, bundles no tag names and no function
    /// runs are removed first. Blocking: call from a blocking thread.
    pub fn push(&self, image: &str, archive: &Path) -> Result<BundleInfo> {
        let (name, tag) = match ImageRef::parse(image)? {
            ImageRef::Tag { name, tag } => (name, tag),
            _ => return Err(ProviderError::invalid("image", "push to a name[:tag], not a path or digest")),
        };
        let io = |e: io::Error| ProviderError::internal("reading the uploaded bundle", e);
        let mut hasher = Sha256::new();
        let size = io::copy(&mut fs::File::open(archive).map_err(io)?, &mut hasher).map_err(io)?;
        let hex = format!("{:x}", hasher.finalize());
        let target = self.blob(&hex);
        if !target.is_dir() {
            let tmp = self.dir.join("blobs").join(format!(".tmp-{hex}-{:08x}", fastrand::u32(..)));
            let stored = unpack(archive, &tmp, self.limits.max_unpacked).and_then(|unpacked| {
                self.make_room(unpacked)?;
                fs::rename(&tmp, &target).map_err(|e| ProviderError::internal("storing bundle", e))?;
                self.usage().sizes.insert(hex.clone(), unpacked);
                Ok(())
            });
            if let Err(e) = stored {
                let _ = fs::remove_dir_all(&tmp);
                if !target.is_dir() {
                    return Err(e);
                }
            }
        }
        let key = format!("{name}:{tag}");
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let replaced =
            index.get(&key).map(|old| old.digest.clone()).filter(|d| *d != format!("sha256:{hex}"));
        let info = BundleInfo { image: key, digest: format!("sha256:{hex}"), size, replaced };
        index.insert(info.image.clone(), BundleInfo { replaced: None, ..info.clone() });
        let bytes =
            serde_json::to_vec_pretty(&*index).map_err(|e| ProviderError::internal("bundle index", e))?;
        fsutil::write_atomic(&self.dir.join("tags.json"), &bytes, 0o600)
            .map_err(|e| ProviderError::internal("writing bundle index", e))?;
        Ok(info)
    }

    /// Room for `bytes` more within the store's limit, pruning if need be.
    fn make_room(&self, bytes: u64) -> Result<()> {
        let max = self.limits.max_store;
        if self.stored_bytes() + bytes > max {
            let freed = self.prune();
            if freed > 0 {
                tracing::info!(freed, "removed bundles no tag names and no function runs");
            }
        }
        let stored = self.stored_bytes();
        if stored + bytes > max {
            return Err(ProviderError::TooLarge(format!(
                "the bundle unpacks to {bytes} bytes and the store holds {stored} of its {max} \
                 (faas serve --bundle-store-max); remove functions or tags it no longer needs"
            )));
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<BundleInfo> {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// Unpacks the (possibly gzipped) tar archive in the file `archive` into
/// `dest`, refusing paths and links that leave it, special files, and
/// archives that unpack to more than `max_unpacked` bytes; the bytes it
/// unpacked to.
pub(crate) fn unpack(archive: &Path, dest: &Path, max_unpacked: u64) -> Result<u64> {
    let bad = |why: String| ProviderError::invalid("archive", why);
    fs::create_dir_all(dest).map_err(|e| ProviderError::internal("unpacking bundle", e))?;
    let mut file = io::BufReader::new(
        fs::File::open(archive).map_err(|e| ProviderError::internal("reading the uploaded bundle", e))?,
    );
    let gzipped = io::BufRead::fill_buf(&mut file).is_ok_and(|b| b.starts_with(&[0x1f, 0x8b]));
    let reader: Box<dyn Read> =
        if gzipped { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    let mut tar = tar::Archive::new(reader);
    let mut total = 0u64;
    let entries = tar.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
        if i >= MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let kind = entry.header().entry_type();
        let sparse = kind == tar::EntryType::GNUSparse;
        if !(kind.is_file() || sparse || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
            return Err(bad(format!("{path}: only files, folders and links are allowed")));
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let path = entry.path().map(|p| p.into_owned()).unwrap_or_default();
            let target = entry.link_name().ok().flatten().map(|t| t.into_owned()).unwrap_or_default();
            if !link_stays_inside(&path, &target, kind.is_hard_link()) {
                return Err(bad(format!(
                    "{}: a link to {} leaves the bundle (links may point only inside it)",
                    path.display(),
                    target.display()
                )));
            }
        }
        // A sparse file counts what it unpacks to, holes included.
        let real = entry.header().as_gnu().filter(|_| sparse).and_then(|g| g.real_size().ok());
        total += real.unwrap_or(0).max(entry.header().size().unwrap_or(0));
        if total > max_unpacked {
            return Err(ProviderError::TooLarge(format!(
                "the bundle unpacks to more than {max_unpacked} bytes (faas serve --bundle-max-unpacked)"
            )));
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
    readable_by_all(dest).map_err(|e| ProviderError::internal("unpacking bundle", e))?;
    let root = fs::canonicalize(dest).map_err(|e| ProviderError::internal("unpacking bundle", e))?;
    links_inside(&root, &root)?;
    Ok(total)
}

/// Every symbolic link under `dir` resolves to something inside `root`, as
/// the kernel resolves it (through other links): the check by name in
/// [`unpack`] cannot see a link to a folder that another link's `..` then
/// climbs out of.
fn links_inside(root: &Path, dir: &Path) -> Result<()> {
    let io = |e: io::Error| ProviderError::internal("checking a bundle's links", e);
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            links_inside(root, &entry.path())?;
        } else if kind.is_symlink() {
            let inside = fs::canonicalize(entry.path()).is_ok_and(|t| t.starts_with(root));
            if !inside {
                let target = fs::read_link(entry.path()).unwrap_or_default();
                let path = entry.path();
                return Err(ProviderError::invalid(
                    "archive",
                    format!(
                        "{}: a link to {} leaves the bundle or points to nothing in it",
                        path.strip_prefix(root).unwrap_or(&path).display(),
                        target.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether a link at `path` (relative to the bundle) pointing to `target`
/// stays inside the bundle, read as the kernel would: a symbolic link's
/// target relative to the link's folder, a hard link's to the bundle; an
/// absolute target never stays inside (in a sandbox or a container it
/// would name that root's file, on the host the host's).
fn link_stays_inside(path: &Path, target: &Path, hard: bool) -> bool {
    use std::path::Component;
    if target.as_os_str().is_empty() || target.is_absolute() {
        return false;
    }
    let base = if hard { Path::new("") } else { path.parent().unwrap_or(Path::new("")) };
    let mut depth: i64 = 0;
    for c in base.components().chain(target.components()) {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
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
mod tests;
