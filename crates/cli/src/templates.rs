//! Function templates: a folder per language with `template.yml`, the code
//! around the function, and a sample `function/`. The templates ship inside
//! `faas`; a project's own `template/<lang>` (as faas-cli keeps them) or a
//! folder named in `configuration.templates` take precedence.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::stack::Stack;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// `template.yml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub language: String,
    #[serde(default)]
    pub description: String,
    pub fprocess: String,
    /// The watchdog's environment in the bundle.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub requires: Vec<Requirement>,
    #[serde(default)]
    pub build: Vec<Step>,
    #[serde(default)]
    pub welcome_message: String,
}

/// A program the template needs, and how to get it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub command: String,
    pub install: String,
}

/// One build step: a shell command run in the bundle folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub step: String,
    pub run: String,
}

impl Template {
    pub fn load(dir: &Path) -> anyhow::Result<Template> {
        let path = dir.join("template.yml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_norway::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// Programs this template needs that are not on `PATH`, with the hint.
    pub fn missing(&self) -> Vec<&Requirement> {
        self.requires.iter().filter(|r| ferrofaas_provider::fsutil::which(&r.command).is_none()).collect()
    }
}

/// The languages shipped with `faas`.
pub fn embedded_languages() -> Vec<&'static str> {
    let mut langs: Vec<&str> =
        embedded::FILES.iter().filter_map(|(p, _, _)| p.split_once('/').map(|(l, _)| l)).collect();
    langs.dedup();
    langs
}

/// Writes the shipped template `lang` into `dest` (a new folder).
fn write_embedded(lang: &str, dest: &Path) -> anyhow::Result<bool> {
    let prefix = format!("{lang}/");
    let files: Vec<_> = embedded::FILES.iter().filter(|(p, _, _)| p.starts_with(&prefix)).collect();
    if files.is_empty() {
        return Ok(false);
    }
    for (path, bytes, mode) in files {
        let target = dest.join(&path[prefix.len()..]);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(true)
}

/// The folder of template `lang` for a project in `project`: its
/// `template/<lang>`, else a `configuration.templates` folder, else the
/// shipped one (written to `template/<lang>` so that it can be read and
/// changed, as faas-cli's `template pull` does).
pub fn find(lang: &str, project: &Path, stack: Option<&Stack>) -> anyhow::Result<PathBuf> {
    if lang.is_empty() || lang.contains(['/', '\\']) || lang.starts_with('.') {
        bail!("{lang:?} is not a template name");
    }
    let local = project.join("template").join(lang);
    if local.join("template.yml").is_file() {
        return Ok(local);
    }
    if let Some(source) = stack
        .and_then(|s| s.configuration.as_ref())
        .and_then(|c| c.templates.iter().find(|t| t.name == lang))
        .and_then(|t| t.source.as_deref())
    {
        let dir = project.join(source);
        if dir.join("template.yml").is_file() {
            return Ok(dir);
        }
        bail!(
            "template {lang}: source {source:?} is not a template folder here (git sources cannot be fetched \
             by faas; copy the template into template/{lang})"
        );
    }
    if write_embedded(lang, &local)? {
        return Ok(local);
    }
    bail!(
        "unknown language {lang:?}: the templates are {} (faas template list)",
        embedded_languages().join(", ")
    )
}

/// The description of a shipped template.
pub fn describe_embedded(lang: &str) -> Option<String> {
    let path = format!("{lang}/template.yml");
    let (_, bytes, _) = embedded::FILES.iter().find(|(p, _, _)| *p == path)?;
    let t: Template = serde_norway::from_slice(bytes).ok()?;
    Some(t.description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_template_is_valid() {
        let langs = embedded_languages();
        for want in ["bash", "csharp", "node", "python3", "python3-http", "ruby", "rust"] {
            assert!(langs.contains(&want), "{want} missing from {langs:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        for lang in langs {
            let path = find(lang, dir.path(), None).unwrap();
            let t = Template::load(&path).unwrap();
            assert_eq!(t.language, lang);
            assert!(!t.description.is_empty());
            assert!(!t.requires.is_empty(), "{lang} must say what it needs");
            assert!(path.join("function").is_dir(), "{lang} has a sample function");
        }
        assert!(find("cobol", dir.path(), None).unwrap_err().to_string().contains("unknown language"));
        assert!(find("../x", dir.path(), None).is_err());
    }
}
