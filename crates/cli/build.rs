//! Embeds the function templates (`templates/` at the workspace root) in the
//! `faas` binary, so that `faas new` and `faas build` work wherever `faas`
//! is copied.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn main() {
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
