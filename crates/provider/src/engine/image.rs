//! Function images without a registry: built on this engine from a bundle
//! and a base image that is itself built here, once, from Debian packages
//! (`mmdebstrap`, then imported). The watchdog goes in as one static binary;
//! the function runs as uid 1000.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, ListImagesOptionsBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{Either, Full};

use ferrofaas_types::platform::Arch;

use crate::bundles::Manifest;
use crate::{BundleInfo, ProviderError, Result};

/// Base images, by name: the Debian packages on top of an essential system.
pub const BASES: &[(&str, &[&str])] = &[
    ("minimal", &["ca-certificates"]),
    ("python3", &["python3", "ca-certificates"]),
    ("node", &["nodejs", "ca-certificates"]),
    ("ruby", &["ruby", "ruby-bundler", "ca-certificates"]),
    ("mono", &["mono-runtime", "libmono-system4.0-cil", "libmono-system-numerics4.0-cil", "ca-certificates"]),
];

/// Bases of the platform's own images (not for functions).
pub const PLATFORM_BASES: &[(&str, &[&str])] =
    &[("registry", &["docker-registry"]), ("nats", &["nats-server"])];

const BASE_REPO: &str = "ferrofaas-base";
const BASE_TAG: &str = "bookworm";
/// The port a function's own server listens on inside its container.
pub const FUNCTION_PORT: &str = "5000";
/// Label on images built from bundles.
pub const LABEL_BUNDLE: &str = "com.ferrofaas.bundle";

/// Stores a pushed bundle as an image on this engine, tagged `image`
/// (`:latest` if it has no tag): what `POST /system/bundles` does on the
/// container providers.
pub async fn push_bundle(
    docker: &Docker,
    watchdog: &Path,
    image: &str,
    archive: &Path,
    max_unpacked: u64,
) -> Result<BundleInfo> {
    crate::bundles::ImageRef::parse(image)?;
    let dir = std::env::temp_dir().join(format!("ferrofaas-bundle-{:08x}", fastrand::u32(..)));
    let (unpack_dir, archive) = (dir.clone(), archive.to_owned());
    let unpacked = tokio::task::spawn_blocking(move || {
        crate::bundles::unpack(&archive, &unpack_dir, max_unpacked)?;
        std::fs::metadata(&archive)
            .map(|m| m.len())
            .map_err(|e| ProviderError::internal("reading the bundle", e))
    })
    .await
    .map_err(|e| ProviderError::internal("unpacking the bundle", e))?;
    let size = match unpacked {
        Ok(size) => size,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let tag = if image.contains(':') { image.to_owned() } else { format!("{image}:latest") };
    // For the architecture of the watchdog the gateway puts into images.
    let arch = program_arch(watchdog).unwrap_or_else(Arch::native);
    let built = build_function_image(docker, &dir, &tag, watchdog, arch, &|step| {
        tracing::info!(image = %tag, "{step}");
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(BundleInfo { image: tag, digest: built?, size, replaced: None })
}

/// The images built from bundles on this engine.
pub async fn list_bundles(docker: &Docker) -> Result<Vec<BundleInfo>> {
    let mut filters = HashMap::new();
    filters.insert("label".to_owned(), vec![format!("{LABEL_BUNDLE}=true")]);
    let options = ListImagesOptionsBuilder::default().filters(&filters).build();
    let images = docker.list_images(Some(options)).await.map_err(docker_err("listing images"))?;
    Ok(images
        .into_iter()
        .flat_map(|i| {
            let (id, size) = (i.id.clone(), i.size.max(0) as u64);
            i.repo_tags.into_iter().map(move |t| BundleInfo {
                image: t,
                digest: id.clone(),
                size,
                replaced: None,
            })
        })
        .collect())
}

/// `ferrofaas-base/<name>:bookworm-<arch>`: a base for one architecture.
/// Dockerfiles say `FROM ferrofaas-base/<name>:bookworm`, which a build
/// reads as the base for the architecture it builds for.
pub fn base_image(name: &str, arch: Arch) -> String {
    format!("{BASE_REPO}/{name}:{BASE_TAG}-{arch}")
}

/// The base a Dockerfile's `FROM` names (`ferrofaas-base/<name>:bookworm`,
/// or `...:bookworm-<arch>`), and the architecture it names if any.
fn base_of_from(from: &str) -> Option<(&str, Option<&str>)> {
    let (name, tag) = from.strip_prefix(&format!("{BASE_REPO}/"))?.split_once(':')?;
    let arch = tag.strip_prefix(BASE_TAG)?;
    match arch {
        "" => Some((name, None)),
        _ => Some((name, Some(arch.strip_prefix('-')?))),
    }
}

/// The base a bundle's runtime needs.
pub fn base_for_runtime(runtime: Option<&str>) -> &'static str {
    match runtime.unwrap_or("") {
        "python3" | "python3-http" => "python3",
        "node" => "node",
        "ruby" => "ruby",
        "csharp" => "mono",
        _ => "minimal",
    }
}

fn docker_err(context: &str) -> impl Fn(bollard::errors::Error) -> ProviderError + '_ {
    move |e| ProviderError::internal(context, e)
}

/// How long a base's root file system is reused from the cache before it
/// is built again from the (by then updated) Debian packages.
const BASE_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Where built root file systems of bases are kept (`$FERROFAAS_BASE_CACHE`,
/// else `$XDG_CACHE_HOME/ferrofaas/bases`, else `~/.cache/ferrofaas/bases`),
/// so that a new engine (a Swarm node, a test's) gets its bases in seconds.
pub fn base_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FERROFAAS_BASE_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("ferrofaas/bases"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/ferrofaas/bases"))
}

/// Can this machine run `arch`'s programs (to build a root file system of
/// it)? Natively, or through qemu-user registered with binfmt_misc.
fn can_run(arch: Arch) -> bool {
    if arch == Arch::native() {
        return true;
    }
    let entry = format!("/proc/sys/fs/binfmt_misc/qemu-{}", arch.machine());
    std::fs::read_to_string(entry).is_ok_and(|text| text.lines().next() == Some("enabled"))
}

/// Builds base image `name` for `arch` if this engine does not have it yet.
/// `progress` hears what is going on (it takes a while: packages are
/// fetched; for another architecture, their scripts run under qemu).
pub async fn ensure_base(
    docker: &Docker,
    name: &str,
    arch: Arch,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let image = base_image(name, arch);
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(());
    }
    let packages =
        BASES.iter().chain(PLATFORM_BASES).find(|(n, _)| *n == name).map(|(_, p)| p.join(",")).ok_or_else(
            || {
                ProviderError::invalid(
                    "image",
                    format!("no base image {name:?} (known: minimal, python3, node, ruby, mono)"),
                )
            },
        )?;
    if crate::fsutil::which("mmdebstrap").is_none() {
        return Err(ProviderError::Unsupported(format!(
            "building base image {image} needs mmdebstrap (apt-get install -y mmdebstrap); for a gateway \
             on a Swarm, `faas swarm up --bases {name}` builds it on the host"
        )));
    }
    if !can_run(arch) {
        return Err(ProviderError::Unsupported(format!(
            "building base image {image} on this {} machine needs {arch} programs to run here: \
             apt-get install -y qemu-user-static, and register qemu-{} with binfmt_misc \
             (scripts/binfmt does both)",
            Arch::native(),
            arch.machine()
        )));
    }
    let dir = tempfile_dir()?;
    let built = rootfs(name, arch, &packages, &dir, progress).await;
    let result = match built {
        Ok(rootfs) => {
            progress(&format!("loading base image {image}"));
            load_base(docker, &rootfs, &image, arch, &dir).await
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The root file system of a base, as a tar: from the cache if it is
/// recent, else built by mmdebstrap (and kept in the cache).
async fn rootfs(
    name: &str,
    arch: Arch,
    packages: &str,
    scratch: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<PathBuf> {
    use sha2::Digest;
    let key = format!("{:x}", sha2::Sha256::digest(format!("{BASE_TAG} {arch} {packages}")));
    let cache = base_cache_dir().filter(|dir| std::fs::create_dir_all(dir).is_ok());
    let cached = cache.as_ref().map(|dir| dir.join(format!("{name}-{arch}-{}.tar", &key[..16])));
    if let Some(path) = &cached
        && let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified())
        && modified.elapsed().is_ok_and(|age| age < BASE_CACHE_AGE)
    {
        progress(&format!("base {name} for {arch}: root file system from {}", path.display()));
        return Ok(path.clone());
    }
    progress(&format!("building base {name} for {arch} from Debian packages ({packages})"));
    // Into the cache's folder under a name of its own, then renamed: a
    // build that fails or runs beside another leaves no half-written tar.
    let target = match &cache {
        Some(dir) => dir.join(format!(".{name}-{arch}-{:08x}.tar", fastrand::u32(..))),
        None => scratch.join("rootfs.tar"),
    };
    let out = tokio::process::Command::new("mmdebstrap")
        .args(["--quiet", "--variant=essential", &format!("--arch={arch}"), &format!("--include={packages}")])
        .arg("bookworm")
        .arg(&target)
        .output()
        .await
        .map_err(|e| ProviderError::internal("running mmdebstrap", e))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&target);
        return Err(ProviderError::internal(
            "mmdebstrap",
            String::from_utf8_lossy(&out.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        ));
    }
    match cached {
        Some(path) => {
            std::fs::rename(&target, &path).map_err(|e| ProviderError::internal("caching the base", e))?;
            Ok(path)
        }
        None => Ok(target),
    }
}

/// Loads a root file system as a one-layer image of `arch` named `image`:
/// an image archive (what `docker save` writes) made around it, so that
/// the image says its architecture (an import says the engine's) and the
/// images built on it say it too.
async fn load_base(docker: &Docker, rootfs: &Path, image: &str, arch: Arch, scratch: &Path) -> Result<()> {
    let (rootfs, archive, image_name) = (rootfs.to_owned(), scratch.join("image.tar"), image.to_owned());
    let written = archive.clone();
    tokio::task::spawn_blocking(move || image_archive(&rootfs, &written, &image_name, arch))
        .await
        .map_err(|e| ProviderError::internal("writing the base's image archive", e))?
        .map_err(|e| ProviderError::internal("writing the base's image archive", e))?;
    let file = tokio::fs::File::open(&archive).await.map_err(|e| ProviderError::internal("reading it", e))?;
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let options = bollard::query_parameters::ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = docker.import_image_stream(options, body, None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(docker_err("loading the base image"))?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(ProviderError::internal("loading the base image", detail));
        }
    }
    let loaded = docker.inspect_image(image).await.map_err(docker_err("inspecting the base image"))?;
    if loaded.architecture.as_deref().and_then(Arch::from_name) != Some(arch) {
        return Err(ProviderError::internal(
            "loading the base image",
            format!("{image} came out {:?}, not {arch}", loaded.architecture),
        ));
    }
    Ok(())
}

/// An image archive of one layer (`rootfs`): `manifest.json`, the image's
/// configuration (its architecture, `PATH`), and the layer.
fn image_archive(rootfs: &Path, archive: &Path, image: &str, arch: Arch) -> std::io::Result<()> {
    use sha2::Digest;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(archive)?));
    tar.sparse(false);
    // The layer first, hashed as it is copied (its digest goes into the
    // configuration, written after it: the order of entries is free).
    let layer = std::fs::File::open(rootfs)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(layer.metadata()?.len());
    header.set_mode(0o644);
    header.set_cksum();
    let mut hashing = Hashing { inner: layer, hasher: sha2::Sha256::new() };
    tar.append_data(&mut header, "layer.tar", &mut hashing)?;
    let diff_id = format!("sha256:{:x}", hashing.hasher.finalize());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch.name(),
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": format!("mmdebstrap --variant=essential --arch={arch} bookworm") }],
    }))?;
    let config_name = format!("{:x}.json", sha2::Sha256::digest(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([
        { "Config": config_name, "RepoTags": [image], "Layers": ["layer.tar"] }
    ]))?;
    for (name, bytes) in [("manifest.json", &manifest), (config_name.as_str(), &config)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())?;
    }
    tar.into_inner()?.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Builds image `tag` for `arch` from a bundle folder: the bundle's
/// `Dockerfile` (a template's) or a default one on the base its runtime
/// needs, the watchdog (a program for `arch`), and `ENV` lines from
/// `bundle.json`. Returns the image id.
pub async fn build_function_image(
    docker: &Docker,
    bundle: &Path,
    tag: &str,
    watchdog: &Path,
    arch: Arch,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String> {
    let manifest = Manifest::read(bundle)?;
    match program_arch(watchdog) {
        Some(a) if a == arch => {}
        found => {
            return Err(ProviderError::Unsupported(format!(
                "an image for {arch} needs a faas-watchdog built for {arch}; {} is {} \
                 (scripts/build-release --arch {arch} builds one)",
                watchdog.display(),
                found.map_or("not an amd64 or arm64 program".to_owned(), |a| format!("for {a}")),
            )));
        }
    }
    let bundle_dir = bundle.to_owned();
    if let Some((file, found)) = tokio::task::spawn_blocking(move || foreign_program(&bundle_dir, arch))
        .await
        .map_err(|e| ProviderError::internal("reading the bundle", e))?
    {
        return Err(ProviderError::invalid(
            "image",
            format!(
                "the bundle's {} is a program for {found}, and the image is for {arch}: build the \
                 function for {arch} (its dependencies too)",
                file.display()
            ),
        ));
    }
    let template = match std::fs::read_to_string(bundle.join("Dockerfile")) {
        Ok(text) => text,
        Err(_) => default_dockerfile(base_for_runtime(manifest.runtime.as_deref())),
    };
    // Every `FROM` of a platform base, as the base for `arch`.
    let mut dockerfile = String::new();
    let mut bases = Vec::new();
    for line in template.lines() {
        let from = line.trim().strip_prefix("FROM ").map(str::trim);
        match from.and_then(base_of_from) {
            Some((name, named_arch)) => {
                if let Some(named) = named_arch
                    && Arch::from_name(named) != Some(arch)
                {
                    return Err(ProviderError::invalid(
                        "image",
                        format!(
                            "the bundle's Dockerfile is FROM a base for {named}; the image is for {arch}"
                        ),
                    ));
                }
                dockerfile.push_str(&format!("FROM {}\n", base_image(name, arch)));
                bases.push(name.to_owned());
            }
            None => {
                dockerfile.push_str(line);
                dockerfile.push('\n');
            }
        }
    }
    if !template.lines().any(|l| l.trim().starts_with("FROM ")) {
        return Err(ProviderError::invalid("archive", "the bundle's Dockerfile has no FROM"));
    }
    for (k, v) in &manifest.env {
        dockerfile.push_str(&format!("ENV {k}={}\n", quote(&v.replace("${PORT}", FUNCTION_PORT))));
    }
    for name in &bases {
        ensure_base(docker, name, arch, progress).await?;
    }

    progress(&format!("building image {tag} for {arch}"));
    let context = build_context(bundle, &dockerfile, watchdog)
        .map_err(|e| ProviderError::internal("packing the build context", e))?;
    let mut labels = HashMap::new();
    labels.insert(LABEL_BUNDLE.to_owned(), "true".to_owned());
    if let Some(runtime) = &manifest.runtime {
        labels.insert("com.ferrofaas.runtime".to_owned(), runtime.clone());
    }
    let id = build_image(docker, context, tag, &labels).await?;
    let built = docker.inspect_image(&id).await.map_err(docker_err("inspecting the new image"))?;
    let built_arch = built.architecture.as_deref().and_then(Arch::from_name);
    if built_arch != Some(arch) {
        return Err(ProviderError::invalid(
            "image",
            format!(
                "the bundle's Dockerfile builds on an image for {}, not {arch}",
                built.architecture.as_deref().unwrap_or("no architecture")
            ),
        ));
    }
    Ok(id)
}

/// The architecture of a program file, from its ELF header.
pub fn program_arch(path: &Path) -> Option<Arch> {
    use std::io::Read;
    let mut header = [0u8; 64];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut header).ok()?;
    Arch::of_elf(&header[..n])
}

/// The first program in a folder (ELF, not following links) built for
/// another architecture than `arch`, and its architecture.
fn foreign_program(root: &Path, arch: Arch) -> Option<(PathBuf, Arch)> {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Some(found) = program_arch(&path)
                && found != arch
            {
                return Some((path.strip_prefix(root).unwrap_or(&path).to_owned(), found));
            }
        }
    }
    None
}

/// Builds image `tag` from a build context (a tar with a `Dockerfile`),
/// labelled with `labels`. Returns the image id.
pub async fn build_image(
    docker: &Docker,
    context: Vec<u8>,
    tag: &str,
    labels: &HashMap<String, String>,
) -> Result<String> {
    let options = BuildImageOptionsBuilder::default().t(tag).rm(true).forcerm(true).labels(labels).build();
    let mut stream = docker.build_image(options, None, Some(Either::Left(Full::new(Bytes::from(context)))));
    let mut output = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = info.stream {
                    output.push(line.trim_end().to_owned());
                }
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(ProviderError::invalid("image", format!("building {tag} failed: {detail}")));
                }
            }
            Err(e) => {
                let tail: Vec<_> = output.iter().rev().take(5).rev().cloned().collect();
                return Err(ProviderError::invalid(
                    "image",
                    format!("building {tag} failed: {e}; {}", tail.join(" | ")),
                ));
            }
        }
    }
    let inspect = docker.inspect_image(tag).await.map_err(docker_err("inspecting the new image"))?;
    inspect.id.ok_or_else(|| ProviderError::internal("inspecting the new image", "no id"))
}

fn default_dockerfile(base: &str) -> String {
    format!(
        "FROM {BASE_REPO}/{base}:{BASE_TAG}\nCOPY faas-watchdog /usr/bin/faas-watchdog\nCOPY bundle/ /home/app/\n\
         WORKDIR /home/app\nENV HOME=/home/app PORT={FUNCTION_PORT}\nUSER 1000:1000\nEXPOSE 8080\n\
         CMD [\"/usr/bin/faas-watchdog\"]\n"
    )
}

/// A Dockerfile `ENV` value, quoted.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// The build context: `Dockerfile`, `faas-watchdog`, and the bundle under
/// `bundle/` (always there, even for a bundle of nothing but its manifest;
/// without its own Dockerfile and build marker).
fn build_context(bundle: &Path, dockerfile: &str, watchdog: &Path) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    // The engine reads no GNU sparse entries, and a linker's output can
    // look sparse (holes it never wrote).
    tar.sparse(false);
    tar.follow_symlinks(false);
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    tar.append_path_with_name(watchdog, "faas-watchdog")?;
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    dir.set_cksum();
    tar.append_data(&mut dir, "bundle/", std::io::empty())?;
    for entry in std::fs::read_dir(bundle)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "Dockerfile" || name == ".ferrofaas-build" {
            continue;
        }
        let target = Path::new("bundle").join(&*name);
        if entry.file_type()?.is_dir() {
            tar.append_dir_all(&target, entry.path())?;
        } else {
            tar.append_path_with_name(entry.path(), &target)?;
        }
    }
    tar.into_inner()
}

/// A build context of whole files (name, contents, mode), written as plain
/// entries: the engine reads no GNU sparse ones, and a linker's output may
/// look sparse.
pub fn context_of(files: &[(&str, &[u8], u32)]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.sparse(false);
    for (name, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes)?;
    }
    tar.into_inner()
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferrofaas-base-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).map_err(|e| ProviderError::internal("creating a temporary folder", e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_pick_bases() {
        assert_eq!(base_for_runtime(Some("python3-http")), "python3");
        assert_eq!(base_for_runtime(Some("csharp")), "mono");
        assert_eq!(base_for_runtime(Some("rust")), "minimal");
        assert_eq!(base_for_runtime(None), "minimal");
        assert_eq!(base_image("node", Arch::Arm64), "ferrofaas-base/node:bookworm-arm64");
        assert_eq!(base_of_from("ferrofaas-base/node:bookworm"), Some(("node", None)));
        assert_eq!(base_of_from("ferrofaas-base/node:bookworm-arm64"), Some(("node", Some("arm64"))));
        assert_eq!(base_of_from("ferrofaas-base/node:bookwormx"), None);
        assert_eq!(base_of_from("debian:bookworm"), None);
        assert!(default_dockerfile("python3").starts_with("FROM ferrofaas-base/python3:bookworm\n"));
    }

    #[test]
    fn env_values_are_quoted() {
        assert_eq!(quote(r#"python3 -c "print(1)""#), r#""python3 -c \"print(1)\"""#);
    }
}
