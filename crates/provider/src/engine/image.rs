//! Function images without a registry: built on this engine from a bundle
//! and a base image that is itself built here, once, from Debian packages
//! (`mmdebstrap`, then imported). The watchdog goes in as one static binary;
//! the function runs as uid 1000.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{Either, Full};

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
    let built = build_function_image(docker, &dir, &tag, watchdog, &|step| {
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

/// `ferrofaas-base/<name>:bookworm`
pub fn base_image(name: &str) -> String {
    format!("{BASE_REPO}/{name}:{BASE_TAG}")
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

/// Builds base image `name` if this engine does not have it yet.
/// `progress` hears what is going on (it takes a while: packages are fetched).
pub async fn ensure_base(docker: &Docker, name: &str, progress: &(dyn Fn(&str) + Sync)) -> Result<()> {
    let image = base_image(name);
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
    progress(&format!("building base image {image} from Debian packages ({packages})"));
    let dir = tempfile_dir()?;
    let tar = dir.join("rootfs.tar");
    let out = tokio::process::Command::new("mmdebstrap")
        .args(["--quiet", "--variant=essential", &format!("--include={packages}"), "bookworm"])
        .arg(&tar)
        .output()
        .await
        .map_err(|e| ProviderError::internal("running mmdebstrap", e))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ProviderError::internal(
            "mmdebstrap",
            String::from_utf8_lossy(&out.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        ));
    }
    progress(&format!("importing base image {image}"));
    let bytes = tokio::fs::read(&tar).await.map_err(|e| ProviderError::internal("reading rootfs", e))?;
    let _ = std::fs::remove_dir_all(&dir);
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(&format!("{BASE_REPO}/{name}"))
        .tag(BASE_TAG)
        .build();
    let mut stream =
        docker.create_image(Some(options), Some(Either::Left(Full::new(Bytes::from(bytes)))), None);
    while let Some(item) = stream.next().await {
        item.map_err(docker_err("importing the base image"))?;
    }
    Ok(())
}

/// Builds image `tag` from a bundle folder: the bundle's `Dockerfile` (a
/// template's) or a default one on the base its runtime needs, the
/// watchdog, and `ENV` lines from `bundle.json`. Returns the image id.
pub async fn build_function_image(
    docker: &Docker,
    bundle: &Path,
    tag: &str,
    watchdog: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String> {
    let manifest = Manifest::read(bundle)?;
    let mut dockerfile = match std::fs::read_to_string(bundle.join("Dockerfile")) {
        Ok(text) => text,
        Err(_) => default_dockerfile(base_for_runtime(manifest.runtime.as_deref())),
    };
    if !dockerfile.ends_with('\n') {
        dockerfile.push('\n');
    }
    for (k, v) in &manifest.env {
        dockerfile.push_str(&format!("ENV {k}={}\n", quote(&v.replace("${PORT}", FUNCTION_PORT))));
    }
    let base = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("FROM "))
        .map(|f| f.trim().to_owned())
        .ok_or_else(|| ProviderError::invalid("archive", "the bundle's Dockerfile has no FROM"))?;
    if let Some(name) =
        base.strip_prefix(&format!("{BASE_REPO}/")).and_then(|r| r.strip_suffix(&format!(":{BASE_TAG}")))
    {
        ensure_base(docker, name, progress).await?;
    }

    progress(&format!("building image {tag}"));
    let context = build_context(bundle, &dockerfile, watchdog)
        .map_err(|e| ProviderError::internal("packing the build context", e))?;
    let mut labels = HashMap::new();
    labels.insert(LABEL_BUNDLE.to_owned(), "true".to_owned());
    if let Some(runtime) = &manifest.runtime {
        labels.insert("com.ferrofaas.runtime".to_owned(), runtime.clone());
    }
    build_image(docker, context, tag, &labels).await
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
        "FROM {}\nCOPY faas-watchdog /usr/bin/faas-watchdog\nCOPY bundle/ /home/app/\nWORKDIR /home/app\n\
         ENV HOME=/home/app PORT={FUNCTION_PORT}\nUSER 1000:1000\nEXPOSE 8080\nCMD [\"/usr/bin/faas-watchdog\"]\n",
        base_image(base)
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
        assert_eq!(base_image("node"), "ferrofaas-base/node:bookworm");
    }

    #[test]
    fn env_values_are_quoted() {
        assert_eq!(quote(r#"python3 -c "print(1)""#), r#""python3 -c \"print(1)\"""#);
    }
}
