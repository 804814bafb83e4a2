//! Secrets on Swarm: versioned Docker secrets (`<name>_v<n>`, labelled with
//! their name and namespace; an update makes a new version and rolls the
//! functions that use it), or a plain Docker secret of the same name, and
//! the references a service's tasks mount them by.

use super::*;

/// A secret version: `<name>_v<n>` (`_` cannot occur in secret names).
pub(super) fn secret_version_name(name: &str, version: u64) -> String {
    format!("{name}_v{version}")
}

/// Docker keeps secret names of at most 64 characters; a version suffix
/// (`_v` and up to six digits) must fit beside the name.
pub(super) const MAX_SECRET_NAME: usize = 64 - 8;

/// A secret name that fits Docker's limit with its version.
pub(super) fn check_secret_length(name: &str) -> Result<()> {
    if name.len() > MAX_SECRET_NAME {
        return Err(ProviderError::invalid(
            "name",
            format!(
                "on Docker Swarm a secret name has at most {MAX_SECRET_NAME} characters (Docker keeps 64, \
                 with the version ferrofaas adds); this one has {}",
                name.len()
            ),
        ));
    }
    Ok(())
}

impl SwarmProvider {
    /// Docker secrets of this provider (labelled), by secret name: the
    /// versions, newest last, as (version, id, docker name).
    pub(super) async fn secret_versions(&self) -> Result<HashMap<String, Vec<(u64, String, String)>>> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![LABEL_SECRET]);
        let options = ListSecretsOptionsBuilder::default().filters(&filters).build();
        let secrets = self.docker.list_secrets(Some(options)).await.map_err(engine_err("listing secrets"))?;
        let mut by_name: HashMap<String, Vec<(u64, String, String)>> = HashMap::new();
        for s in secrets {
            let (Some(id), Some(spec)) = (s.id, s.spec) else { continue };
            let labels = spec.labels.unwrap_or_default();
            let (Some(name), Some(version)) = (
                labels.get(LABEL_SECRET),
                labels.get(LABEL_SECRET_VERSION).and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            by_name.entry(name.clone()).or_default().push((version, id, spec.name.unwrap_or_default()));
        }
        for versions in by_name.values_mut() {
            versions.sort();
        }
        Ok(by_name)
    }

    /// A plain Docker secret named `name` (not made by this provider).
    pub(super) async fn plain_secret(&self, name: &str) -> Result<Option<(String, String)>> {
        match self.docker.inspect_secret(name).await {
            Ok(s) => {
                let spec = s.spec.unwrap_or_default();
                let ours = spec.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_SECRET));
                Ok((!ours && spec.name.as_deref() == Some(name))
                    .then(|| (s.id.unwrap_or_default(), name.to_owned())))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(ProviderError::internal("inspecting a secret", e)),
        }
    }

    /// The secret references of a function: the newest version of each.
    pub(super) async fn secret_refs(&self, names: &[String]) -> Result<Vec<TaskSpecContainerSpecSecrets>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let versions = self.secret_versions().await?;
        let mut refs = Vec::new();
        for name in names {
            let (id, docker_name) = match versions.get(name).and_then(|v| v.last()) {
                Some((_, id, docker_name)) => (id.clone(), docker_name.clone()),
                None => self.plain_secret(name).await?.ok_or_else(|| {
                    ProviderError::invalid(
                        "secrets",
                        format!("no secret {name}: create it first (faas secret create)"),
                    )
                })?,
            };
            refs.push(secret_ref(name, id, docker_name));
        }
        Ok(refs)
    }

    pub(super) async fn create_version(
        &self,
        name: &str,
        namespace: &str,
        version: u64,
        value: &[u8],
    ) -> Result<(String, String)> {
        let docker_name = secret_version_name(name, version);
        let spec = SecretSpec {
            name: Some(docker_name.clone()),
            labels: Some(HashMap::from([
                (LABEL_SECRET.to_owned(), name.to_owned()),
                (LABEL_NAMESPACE.to_owned(), namespace.to_owned()),
                (LABEL_SECRET_VERSION.to_owned(), version.to_string()),
            ])),
            data: Some(ferrofaas_types::base64::encode(value)),
            ..Default::default()
        };
        match self.docker.create_secret(spec).await {
            Ok(created) => Ok((created.id, docker_name)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                Err(ProviderError::Conflict(format!(
                    "a Docker secret named {docker_name} exists and is not this secret"
                )))
            }
            Err(e) => Err(ProviderError::internal("creating a secret", e)),
        }
    }
}

pub(super) fn secret_ref(name: &str, id: String, docker_name: String) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(format!("{SECRETS_PATH}/{name}")),
            uid: Some("0".into()),
            gid: Some("0".into()),
            mode: Some(0o444),
        }),
        secret_id: Some(id),
        secret_name: Some(docker_name),
    }
}

/// The name a secret reference's file gives (the function's secret name).
pub(super) fn secret_file_name(r: &TaskSpecContainerSpecSecrets) -> Option<&str> {
    r.file.as_ref()?.name.as_deref()?.strip_prefix(SECRETS_PATH)?.strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_versions_cannot_collide_with_secret_names() {
        let name = secret_version_name("db.password", 3);
        assert_eq!(name, "db.password_v3");
        assert!(ferrofaas_types::names::validate_secret_name(&name).is_err());
    }

    #[test]
    fn secret_files_are_named_after_the_secret() {
        let r = secret_ref("api-key", "id".into(), "api-key_v2".into());
        assert_eq!(secret_file_name(&r), Some("api-key"));
        assert_eq!(r.file.as_ref().and_then(|f| f.name.as_deref()), Some("/var/openfaas/secrets/api-key"));
    }
}
