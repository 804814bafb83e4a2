//! `stack.yml`, as OpenFaaS defines it (the part `faas serve` needs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferrofaas_types::{FunctionDeployment, FunctionResources};
use serde::Deserialize;

/// Fields not used yet are still parsed, so that an OpenFaaS stack file
/// loads and a misspelt field is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Stack {
    #[serde(default)]
    pub version: Option<serde_norway::Value>,
    #[serde(default)]
    pub provider: Option<StackProvider>,
    #[serde(default)]
    pub functions: BTreeMap<String, StackFunction>,
    #[serde(default)]
    pub configuration: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StackProvider {
    pub name: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackFunction {
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub handler: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub fprocess: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Option<FunctionResources>,
    #[serde(default)]
    pub requests: Option<FunctionResources>,
    #[serde(default)]
    pub readonly_root_filesystem: bool,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub constraints: Vec<String>,
}

impl Stack {
    pub fn load(path: &Path) -> anyhow::Result<Stack> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let stack: Stack = serde_norway::from_str(&text).with_context(|| format!("{}", path.display()))?;
        if let Some(p) = &stack.provider
            && p.name != "openfaas"
        {
            bail!("{}: provider.name must be openfaas, not {:?}", path.display(), p.name);
        }
        Ok(stack)
    }
}

impl StackFunction {
    /// The handler folder, relative to the stack file's folder.
    pub fn handler_dir(&self, name: &str, stack_dir: &Path) -> anyhow::Result<PathBuf> {
        let handler = self.handler.as_deref().with_context(|| format!("function {name}: no handler"))?;
        Ok(stack_dir.join(handler))
    }

    /// The deployment for this function, with `image`.
    pub fn deployment(&self, name: &str, image: String) -> FunctionDeployment {
        FunctionDeployment {
            service: name.to_owned(),
            image,
            namespace: self.namespace.clone().unwrap_or_default(),
            env_process: self.fprocess.clone().unwrap_or_default(),
            env_vars: self.environment.iter().map(|(k, v)| (k.clone(), yaml_to_string(v))).collect(),
            constraints: self.constraints.clone(),
            secrets: self.secrets.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            limits: self.limits.clone(),
            requests: self.requests.clone(),
            read_only_root_filesystem: self.readonly_root_filesystem,
            ..Default::default()
        }
    }
}

/// A YAML scalar as an environment variable value (`true`, `8080`, text).
fn yaml_to_string(v: &serde_norway::Value) -> String {
    match v {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Null => String::new(),
        other => serde_norway::to_string(other).map(|s| s.trim_end().to_owned()).unwrap_or_default(),
    }
}
