//! Embeds the function templates (`templates/` at the workspace root) in the
//! `faas` binary, so that `faas new` and `faas build` work wherever `faas`
//! is copied; and the commit it is built from (`FERROFAAS_GIT_SHA`, for
//! `/system/info`): what the environment says (a packager's build from a
//! source archive), else `git rev-parse HEAD`, else a stand-in that says so.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn git_sha(workspace: &Path) -> String {
    println!("cargo:rerun-if-env-changed=FERROFAAS_GIT_SHA");
    if let Ok(sha) = std::env::var("FERROFAAS_GIT_SHA")
        && !sha.trim().is_empty()
    {
        return sha.trim().to_owned();
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // A new commit moves HEAD or the branch it names: build again then.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        println!("cargo:rerun-if-changed={}", dir.join("packed-refs").display());
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", dir.join(head).display());
        }
    }
    git(&["rev-parse", "HEAD"])
        .filter(|s| s.len() == 40)
        .unwrap_or_else(|| "unknown (built from a source archive without git)".to_owned())
}

fn main() {
    let workspace = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("../..");
    println!("cargo:rustc-env=FERROFAAS_GIT_SHA={}", git_sha(&workspace));
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("../../templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut out = String::from("pub static FILES: &[(&str, &[u8], u32)] = &[\n");
    for (rel, path, mode) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(out, "    ({rel:?}, include_bytes!({:?}), 0o{mode:o}),", path.display().to_string());
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("templates.rs");
    std::fs::write(dest, out).expect("write templates.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, u32)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "target" || name == "node_modules" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, out);
        } else if let Ok(meta) = entry.metadata() {
            let rel = path.strip_prefix(root).expect("inside root").display().to_string();
            out.push((rel, path.canonicalize().expect("canonical"), meta.permissions().mode() & 0o777));
        }
    }
}
