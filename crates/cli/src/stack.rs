//! `stack.yml`, read as OpenFaaS defines it: `${VAR}` and `${VAR:-default}`
//! are substituted from the environment first; unknown fields and invalid
//! values are errors that name the file, the line and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferrofaas_types::{FunctionDeployment, FunctionResources};
use serde::Deserialize;

/// An error in a stack file, located.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct StackError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Fields not used by every command are still parsed, so that an OpenFaaS
/// stack file loads and a misspelt field is an error.
#[derive(Debug, Default, Deserialize)]
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
    pub configuration: Option<Configuration>,
    /// Where it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
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
#[allow(dead_code)]
pub struct Configuration {
    #[serde(default)]
    pub templates: Vec<TemplateSource>,
    #[serde(default)]
    pub copy: Vec<String>,
}

/// A template the stack needs (`configuration.templates`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSource {
    pub name: String,
    /// A folder holding the template, or a git repository (not reachable
    /// from every machine).
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
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
    pub environment_file: Vec<String>,
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
    pub build_args: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    pub build_options: Vec<String>,
    #[serde(default)]
    pub skip_build: bool,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub constraints: Vec<String>,
}

impl Stack {
    /// Reads, substitutes and validates a stack file.
    pub fn load(path: &Path) -> Result<Stack, StackError> {
        let file = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|e| StackError {
            file: file.clone(),
            line: None,
            message: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "no such file (give another with -f, or create one with faas new)".into()
                }
                _ => e.to_string(),
            },
        })?;
        Stack::parse(&raw, path)
    }

    pub fn parse(raw: &str, path: &Path) -> Result<Stack, StackError> {
        let file = path.display().to_string();
        let err = |line: Option<usize>, message: String| StackError { file: file.clone(), line, message };
        let text =
            substitute(raw, |name| std::env::var(name).ok()).map_err(|(line, m)| err(Some(line), m))?;
        let mut stack: Stack = serde_norway::from_str(&text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let message = e.to_string();
            // serde_norway appends " at line L column C": the prefix says it.
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            err(line, message)
        })?;
        stack.path = path.to_path_buf();
        let locate = |keys: &[&str]| locate(&text, keys);
        if let Some(p) = &stack.provider
            && p.name != "openfaas"
        {
            return Err(err(
                locate(&["provider", "name"]),
                format!("provider.name must be openfaas, not {:?}", p.name),
            ));
        }
        for (name, f) in &stack.functions {
            let at =
                |field: &str| locate(&["functions", name, field]).or_else(|| locate(&["functions", name]));
            if let Err(e) = ferrofaas_types::names::validate_function_name(name) {
                return Err(err(locate(&["functions", name]), format!("functions.{name}: {e}")));
            }
            // The deployment's own validation, located at the field it names.
            let mut spec = f.deployment(
                name,
                f.image.clone().unwrap_or_else(|| format!("{name}:latest")),
                &BTreeMap::new(),
            );
            if let Err(e) = spec.validate() {
                let field = match e.field.split('.').next().unwrap_or("") {
                    "service" => "",
                    "envVars" => "environment",
                    "envProcess" => "fprocess",
                    "readOnlyRootFilesystem" => "readonly_root_filesystem",
                    other => other,
                };
                return Err(err(
                    at(field),
                    format!("functions.{name}.{}: {}", field.trim_end_matches('.'), e.message),
                ));
            }
            if f.lang.is_none() && f.handler.is_some() && f.image.is_none() {
                return Err(err(
                    at("handler"),
                    format!("functions.{name}: a handler needs a lang (or an image)"),
                ));
            }
        }
        Ok(stack)
    }

    /// The folder paths in the file are relative to.
    pub fn dir(&self) -> PathBuf {
        dir_of(&self.path)
    }

    pub fn gateway(&self) -> Option<&str> {
        self.provider.as_ref().and_then(|p| p.gateway.as_deref())
    }

    /// The functions `--filter` (a glob with `*`) or `--regex` pick; all
    /// without either. An empty pick is an error: a typo should not do
    /// nothing quietly.
    pub fn select(
        &self,
        filter: Option<&str>,
        regex: Option<&str>,
    ) -> anyhow::Result<Vec<(&String, &StackFunction)>> {
        let re = match regex {
            Some(r) => Some(regex_lite::Regex::new(r).map_err(|e| anyhow::anyhow!("--regex {r:?}: {e}"))?),
            None => None,
        };
        let picked: Vec<_> = self
            .functions
            .iter()
            .filter(|(name, _)| filter.is_none_or(|f| glob_match(f, name)))
            .filter(|(name, _)| re.as_ref().is_none_or(|r| r.is_match(name)))
            .collect();
        if picked.is_empty() {
            anyhow::bail!("no function in {} matches", self.path.display());
        }
        Ok(picked)
    }
}

impl StackFunction {
    /// The handler folder, relative to the stack file's folder.
    pub fn handler_dir(&self, name: &str, stack_dir: &Path) -> anyhow::Result<PathBuf> {
        let handler =
            self.handler.as_deref().ok_or_else(|| anyhow::anyhow!("function {name}: no handler"))?;
        Ok(stack_dir.join(handler))
    }

    pub fn image(&self, name: &str) -> String {
        self.image.clone().unwrap_or_else(|| format!("{name}:latest"))
    }

    /// The environment: `environment_file`s, then `environment` on top.
    pub fn env(&self, stack_dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        for file in &self.environment_file {
            let path = stack_dir.join(file);
            let text =
                std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct EnvFile {
                environment: BTreeMap<String, serde_norway::Value>,
            }
            let parsed: EnvFile =
                serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            env.extend(parsed.environment.iter().map(|(k, v)| (k.clone(), yaml_to_string(v))));
        }
        env.extend(self.environment.iter().map(|(k, v)| (k.clone(), yaml_to_string(v))));
        Ok(env)
    }

    pub fn build_args(&self) -> BTreeMap<String, String> {
        self.build_args.iter().map(|(k, v)| (k.clone(), yaml_to_string(v))).collect()
    }

    /// The deployment for this function, with `image` and its environment.
    pub fn deployment(
        &self,
        name: &str,
        image: String,
        env: &BTreeMap<String, String>,
    ) -> FunctionDeployment {
        FunctionDeployment {
            service: name.to_owned(),
            image,
            namespace: self.namespace.clone().unwrap_or_default(),
            env_process: self.fprocess.clone().unwrap_or_default(),
            env_vars: env.clone(),
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

/// The folder of a stack file, which paths in it are relative to.
pub fn dir_of(stack_file: &Path) -> PathBuf {
    match stack_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A YAML scalar as text (`true`, `8080`, a string).
pub fn yaml_to_string(v: &serde_norway::Value) -> String {
    match v {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Null => String::new(),
        other => serde_norway::to_string(other).map(|s| s.trim_end().to_owned()).unwrap_or_default(),
    }
}

/// `${VAR}` and `${VAR:-default}` (the default used when VAR is unset or
/// empty), as faas-cli substitutes them; `$$` is a literal `$`. An unclosed
/// `${` is an error with its line.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = after.strip_prefix('{') {
            let line = text[..text.len() - rest.len() + i].matches('\n').count() + 1;
            let end = body.find('}').ok_or((line, "unclosed ${ in a variable reference".to_owned()))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err((line, format!("${{{expr}}} is not a variable reference")));
            }
            let value = lookup(name).filter(|v| !v.is_empty() || default.is_none());
            out.push_str(&value.unwrap_or_else(|| default.unwrap_or("").to_owned()));
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The line (1-based) of a key path in block-style YAML, found by
/// indentation: `["functions", "fn", "lang"]`.
pub fn locate(text: &str, keys: &[&str]) -> Option<usize> {
    let mut depth = 0;
    let mut parent_indent: i64 = -1;
    let mut found_line = None;
    for (n, line) in text.lines().enumerate() {
        if depth == keys.len() {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = (line.len() - trimmed.len()) as i64;
        if depth > 0 && indent <= parent_indent {
            // Left the block of the key found last without finding the next.
            return None;
        }
        let key = trimmed.split(':').next().unwrap_or("").trim().trim_matches(|c| c == '"' || c == '\'');
        if key == keys[depth] && trimmed[key.len()..].trim_start_matches(['"', '\'']).starts_with(':') {
            depth += 1;
            parent_indent = indent;
            found_line = Some(n + 1);
        }
    }
    (depth == keys.len()).then_some(found_line).flatten()
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else { return false };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob_match(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "version: 1.0
provider:
  name: openfaas
  gateway: ${GW:-http://127.0.0.1:8080}
functions:
  hello:
    lang: python3-http
    handler: ./hello
    image: ${REGISTRY:-local}/hello:${TAG:-latest}
    environment:
      write_debug: true
      port: 8080
  other:
    lang: bash
    handler: ./other
";

    #[test]
    fn substitution() {
        let vars = |n: &str| match n {
            "TAG" => Some("1.2".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(substitute("a ${TAG} b", vars).unwrap(), "a 1.2 b");
        assert_eq!(substitute("${NOPE:-x}/${EMPTY:-y}/${NOPE}", vars).unwrap(), "x/y/");
        assert_eq!(substitute("cost $$5 and $HOME", vars).unwrap(), "cost $5 and $HOME");
        assert_eq!(substitute("one\ntwo ${OPEN", vars).unwrap_err().0, 2);
        assert!(substitute("${a b}", vars).is_err());
    }

    #[test]
    fn parses_an_openfaas_stack() {
        let stack = Stack::parse(STACK, Path::new("stack.yml")).unwrap();
        assert_eq!(stack.gateway(), Some("http://127.0.0.1:8080"));
        let hello = &stack.functions["hello"];
        assert_eq!(hello.lang.as_deref(), Some("python3-http"));
        let env = hello.env(Path::new(".")).unwrap();
        assert_eq!(env["write_debug"], "true");
        assert_eq!(env["port"], "8080");
    }

    #[test]
    fn unknown_fields_name_file_line_and_field() {
        let text = STACK.replace("    handler: ./other", "    handler: ./other\n    lnag: bash");
        let e = Stack::parse(&text, Path::new("my/stack.yml")).unwrap_err();
        assert_eq!(e.file, "my/stack.yml");
        assert_eq!(e.line, Some(16));
        assert!(e.message.contains("unknown field `lnag`"), "{}", e.message);
        assert!(e.to_string().starts_with("my/stack.yml:16: functions.other: unknown field `lnag`"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_line() {
        let text =
            STACK.replace("    handler: ./other", "    handler: ./other\n    secrets:\n      - ../etc");
        let e = Stack::parse(&text, Path::new("stack.yml")).unwrap_err();
        assert_eq!(e.line, Some(16), "{e}");
        assert!(e.message.starts_with("functions.other.secrets:"), "{e}");
        let text = STACK.replace("  other:", "  Other:");
        let e = Stack::parse(&text, Path::new("stack.yml")).unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("invalid function name"), "{e}");
        let text = STACK.replace("name: openfaas", "name: faasd");
        assert_eq!(Stack::parse(&text, Path::new("s.yml")).unwrap_err().line, Some(3));
    }

    #[test]
    fn locates_keys() {
        assert_eq!(locate(STACK, &["functions", "other", "handler"]), Some(15));
        assert_eq!(locate(STACK, &["functions", "hello", "environment", "port"]), Some(12));
        assert_eq!(locate(STACK, &["functions", "other", "image"]), None);
    }

    #[test]
    fn filters() {
        let stack = Stack::parse(STACK, Path::new("stack.yml")).unwrap();
        let names = |f: Option<&str>, r: Option<&str>| -> Vec<String> {
            stack.select(f, r).map(|v| v.into_iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default()
        };
        assert_eq!(names(None, None), ["hello", "other"]);
        assert_eq!(names(Some("hel*"), None), ["hello"]);
        assert_eq!(names(None, Some("^o")), ["other"]);
        assert!(stack.select(Some("zzz"), None).is_err());
    }
}
