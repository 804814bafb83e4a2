//! `faas build`: a stack function becomes a bundle (`build/<name>/`) that the
//! process provider runs: the template's files, the handler in `function/`,
//! its dependencies installed inside (never into the system), and a
//! `bundle.json` with the watchdog's environment.
//!
//! Builds are cached by content: a hash of the template, the handler and the
//! build arguments is kept in the bundle; a build with the same hash is not
//! redone.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use ferrofaas_provider::bundles;
use sha2::{Digest, Sha256};

use crate::progress::{Mode, Task};
use crate::stack::{Stack, StackFunction};
use crate::templates::{self, Template};

/// Where the hash of a bundle's inputs is kept.
const HASH_FILE: &str = ".ferrofaas-build";
/// Folders of a handler that are never copied (local installs, VCS).
const SKIP: &[&str] = &[".git", "node_modules", "target", "__pycache__", ".bundle", "build"];

/// The bundle folder of a function, built if it has a `lang` (and is not
/// `skip_build`); a handler that is already a bundle is used as it is.
pub fn build(
    name: &str,
    f: &StackFunction,
    stack: &Stack,
    mode: Mode,
    no_cache: bool,
) -> anyhow::Result<PathBuf> {
    let project = stack.dir();
    let handler = f.handler_dir(name, &project)?;
    let Some(lang) = f.lang.as_deref().filter(|l| *l != "dockerfile") else {
        if handler.join(bundles::MANIFEST).is_file() {
            return Ok(handler);
        }
        bail!("function {name}: no lang, and {} has no {}", handler.display(), bundles::MANIFEST);
    };
    if !handler.is_dir() {
        bail!("function {name}: handler folder {} does not exist", handler.display());
    }
    let template_dir = templates::find(lang, &project, Some(stack))?;
    let template = Template::load(&template_dir)?;
    let missing = template.missing();
    if !missing.is_empty() {
        let lines: Vec<String> = missing.iter().map(|r| format!("  {}: {}", r.command, r.install)).collect();
        bail!("function {name} (lang {lang}) needs programs that are not installed:\n{}", lines.join("\n"));
    }

    if !f.build_options.is_empty() {
        tracing::warn!(
            function = name,
            "build_options select Dockerfile packages; bundle builds ignore them"
        );
    }
    let build_args = f.build_args();
    let hash = inputs_hash(&template_dir, &handler, &build_args)?;
    let dir = project.join("build").join(name);
    let task = Task::start(mode, name);
    if !no_cache && std::fs::read_to_string(dir.join(HASH_FILE)).is_ok_and(|h| h == hash) {
        task.finish("up to date (cached)", serde_json::json!({ "bundle": dir, "cached": true }));
        return Ok(dir);
    }
    match assemble(&template, &template_dir, &handler, &dir, &build_args, &task) {
        Ok(()) => {
            std::fs::write(dir.join(HASH_FILE), &hash)?;
            task.finish("built", serde_json::json!({ "bundle": dir, "cached": false }));
            Ok(dir)
        }
        Err(e) => {
            task.fail(&e);
            Err(e.context(format!("function {name}: build failed")))
        }
    }
}

fn assemble(
    template: &Template,
    template_dir: &Path,
    handler: &Path,
    dir: &Path,
    build_args: &BTreeMap<String, String>,
    task: &Task,
) -> anyhow::Result<()> {
    task.step("copying template and handler");
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    copy_dir(template_dir, dir, &["template.yml", "function"])?;
    copy_dir(handler, &dir.join("function"), &[])?;

    let log_path = dir.with_extension("log");
    for step in &template.build {
        task.step(&step.step);
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new("sh")
            .arg("-c")
            .arg(&step.run)
            .current_dir(dir)
            .envs(build_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running {:?}", step.step))?;
        if !status.success() {
            let mut output = String::new();
            std::fs::File::open(&log_path)?.read_to_string(&mut output)?;
            let tail: Vec<&str> =
                output.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            bail!(
                "step {:?} failed ({status}); its output ({}):\n{}",
                step.step,
                log_path.display(),
                tail.join("\n")
            );
        }
    }
    let _ = std::fs::remove_file(&log_path);

    task.step("writing bundle.json");
    let mut env = template.env.clone();
    env.insert("fprocess".into(), template.fprocess.clone());
    let manifest = serde_json::json!({
        "description": template.description,
        "runtime": template.language,
        "env": env,
    });
    std::fs::write(dir.join(bundles::MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(())
}

/// Copies a folder's contents, files keeping their modes, skipping `SKIP`
/// and the top-level names in `except`.
fn copy_dir(from: &Path, to: &Path, except: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if except.contains(&name_str.as_ref()) || SKIP.contains(&name_str.as_ref()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&src, &dst, &[])?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// A hash of everything a build depends on: the template's and the
/// handler's files (paths, modes, contents), the build arguments and this
/// version of faas.
fn inputs_hash(
    template: &Path,
    handler: &Path,
    build_args: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    for (label, root) in [("template", template), ("handler", handler)] {
        h.update(label);
        let mut files = Vec::new();
        list_files(root, root, &mut files)?;
        files.sort();
        for rel in files {
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path)?;
            h.update(rel.as_bytes());
            h.update(meta.permissions().mode().to_le_bytes());
            if meta.file_type().is_symlink() {
                h.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
            } else {
                h.update(std::fs::read(&path)?);
            }
            h.update([0]);
        }
    }
    for (k, v) in build_args {
        h.update(format!("{k}={v}\0"));
    }
    Ok(format!("{:x}", h.finalize()))
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if SKIP.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root)?.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_follows_content() {
        let t = tempfile::tempdir().unwrap();
        let (tpl, handler) = (t.path().join("tpl"), t.path().join("fn"));
        std::fs::create_dir_all(&tpl).unwrap();
        std::fs::create_dir_all(handler.join("node_modules")).unwrap();
        std::fs::write(tpl.join("index.py"), "a").unwrap();
        std::fs::write(handler.join("handler.py"), "b").unwrap();
        let args = BTreeMap::new();
        let first = inputs_hash(&tpl, &handler, &args).unwrap();
        std::fs::write(handler.join("node_modules/x"), "ignored").unwrap();
        assert_eq!(inputs_hash(&tpl, &handler, &args).unwrap(), first);
        std::fs::write(handler.join("handler.py"), "c").unwrap();
        assert_ne!(inputs_hash(&tpl, &handler, &args).unwrap(), first);
        let mut args2 = BTreeMap::new();
        args2.insert("K".into(), "V".into());
        assert_ne!(inputs_hash(&tpl, &handler, &args2).unwrap(), inputs_hash(&tpl, &handler, &args).unwrap());
    }
}
