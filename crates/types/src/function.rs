//! Functions as the OpenFaaS REST API describes them (JSON field names as
//! OpenFaaS's faas-provider types define them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::invalid::InvalidDeployment;
use crate::names;
pub use crate::scaling::MAX_REPLICAS;

/// `POST/PUT /system/functions`: what to deploy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDeployment {
    pub service: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(rename = "envProcess", default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    #[serde(
        rename = "envVars",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(rename = "readOnlyRootFilesystem", default, skip_serializing_if = "is_false")]
    pub read_only_root_filesystem: bool,
    /// Older clients send these; they mean nothing here and are not stored.
    #[serde(rename = "registryAuth", default, skip_serializing)]
    pub registry_auth: Option<String>,
    #[serde(default, skip_serializing)]
    pub network: Option<String>,
}

/// CPU and memory, as Kubernetes quantities (`128Mi`, `100m`, `0.5`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionResources {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
    #[serde(rename = "nvidia.com/gpu", default, skip_serializing_if = "String::is_empty")]
    pub nvidia_gpu: String,
    #[serde(rename = "amd.com/gpu", default, skip_serializing_if = "String::is_empty")]
    pub amd_gpu: String,
    #[serde(rename = "intel.com/gpu", default, skip_serializing_if = "String::is_empty")]
    pub intel_gpu: String,
}

/// `GET /system/functions` and `/system/function/{name}`: a deployed function.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionStatus {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(rename = "envProcess", default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    #[serde(
        rename = "envVars",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub secrets: Vec<String>,
    /// Always an object, `{}` when empty, as OpenFaaS answers (clients
    /// index into it).
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(rename = "readOnlyRootFilesystem", default, skip_serializing_if = "is_false")]
    pub read_only_root_filesystem: bool,
    #[serde(rename = "invocationCount", default)]
    pub invocation_count: f64,
    #[serde(default)]
    pub replicas: u64,
    #[serde(rename = "availableReplicas", default)]
    pub available_replicas: u64,
    /// RFC 3339.
    #[serde(rename = "createdAt", default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
    /// Why it has fewer ready replicas than it should, when it has: the
    /// last failure the provider saw (ferrofaas's own; OpenFaaS clients
    /// ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What triggers it besides HTTP calls, and what each has done
    /// (ferrofaas's own; OpenFaaS clients ignore it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerStatus>,
}

/// A trigger of a function (a schedule, a topic) and what it has done
/// since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// `cron`, or the broker's connector.
    pub connector: String,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Events that came.
    pub events: u64,
    /// Stored on the queue by this gateway.
    pub dispatched: u64,
    /// Already stored (by another gateway, or a redelivery).
    #[serde(default)]
    pub duplicates: u64,
    /// Given up: the queue refused them.
    pub failed: u64,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_event: Option<String>,
    /// How late the last event was stored, in seconds.
    #[serde(default)]
    pub lag_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl FunctionStatus {
    /// The status of a function deployed as `spec`, with no replicas counted
    /// yet.
    pub fn of(spec: &FunctionDeployment) -> FunctionStatus {
        FunctionStatus {
            name: spec.service.clone(),
            image: spec.image.clone(),
            namespace: spec.namespace.clone(),
            env_process: spec.env_process.clone(),
            env_vars: spec.env_vars.clone(),
            constraints: spec.constraints.clone(),
            secrets: spec.secrets.clone(),
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            limits: spec.limits.clone(),
            requests: spec.requests.clone(),
            read_only_root_filesystem: spec.read_only_root_filesystem,
            ..FunctionStatus::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionUsage {
    #[serde(default)]
    pub cpu: f64,
    #[serde(rename = "totalMemoryBytes", default)]
    pub total_memory_bytes: f64,
}

/// `POST /system/scale-function/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleServiceRequest {
    #[serde(rename = "serviceName", default)]
    pub service_name: String,
    pub replicas: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `DELETE /system/functions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFunctionRequest {
    #[serde(rename = "functionName")]
    pub function_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// What a function's labels and annotations ask of the platform: how it
/// scales and how its asynchronous calls are retried. Read once per
/// deployment (when it is validated, or when a provider loads it back) and
/// carried by the function's route, where the autoscaler, the dispatcher and
/// the alert handler read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub scaling: crate::scaling::ScalingPolicy,
    pub retry: crate::retry::RetryPolicy,
    /// Its memory limit in bytes (`limits.memory`), if it has one: what its
    /// invocations are metered at (GB-seconds).
    pub memory_limit: Option<u64>,
    /// `com.ferrofaas.private: "true"`: `/function/` needs a token of its
    /// namespace (role invoke) or the admin's credentials.
    pub private: bool,
}

/// The annotation that makes a function private.
pub const PRIVATE_ANNOTATION: &str = "com.ferrofaas.private";

impl Policies {
    pub fn of(spec: &FunctionDeployment) -> Result<Policies, InvalidDeployment> {
        Ok(Policies {
            scaling: crate::scaling::ScalingPolicy::from_labels(&spec.labels)?,
            retry: crate::retry::RetryPolicy::from_annotations(&spec.annotations)?,
            memory_limit: spec.limits.as_ref().and_then(|l| parse_memory(&l.memory)).filter(|b| *b > 0),
            private: match spec.annotations.get(PRIVATE_ANNOTATION).map(|v| v.trim()) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(InvalidDeployment::new(
                        format!("annotations.{PRIVATE_ANNOTATION}"),
                        format!("{other:?}: use \"true\" or \"false\""),
                    ));
                }
            },
        })
    }
}

impl FunctionDeployment {
    /// Checks everything that can be checked without the provider, and fills
    /// in the default namespace.
    /// Returns what its labels and annotations ask for, read once here.
    pub fn validate(&mut self) -> Result<Policies, InvalidDeployment> {
        names::validate_function_name(&self.service)?;
        if self.namespace.is_empty() {
            self.namespace = names::DEFAULT_NAMESPACE.to_owned();
        }
        names::validate_namespace(&self.namespace)?;
        if self.image.trim().is_empty() {
            return Err(InvalidDeployment::new("image", "is required"));
        }
        if self.image.len() > 1024 || self.image.contains(char::is_control) {
            return Err(InvalidDeployment::new("image", "is not a valid image reference"));
        }
        // A folder (process provider), else Docker's grammar.
        if !self.image.starts_with('/') {
            names::parse_image_reference(&self.image).map_err(|why| InvalidDeployment::new("image", why))?;
        }
        if self.env_process.contains('\0') {
            return Err(InvalidDeployment::new("envProcess", "must not contain NUL"));
        }
        for (k, v) in &self.env_vars {
            names::validate_env_name(k)?;
            if v.contains('\0') {
                return Err(InvalidDeployment::new(format!("envVars.{k}"), "must not contain NUL"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.secrets {
            names::validate_secret_name(s)?;
            if !seen.insert(s) {
                return Err(InvalidDeployment::new("secrets", format!("{s:?} is listed twice")));
            }
        }
        for (field, map) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            for (k, v) in map {
                if k.is_empty() || k.len() > 317 || k.contains(|c: char| c.is_whitespace() || c.is_control())
                {
                    return Err(InvalidDeployment::new(field, format!("invalid key {k:?}")));
                }
                if v.contains('\0') {
                    return Err(InvalidDeployment::new(format!("{field}.{k}"), "must not contain NUL"));
                }
            }
        }
        let policies = Policies::of(self)?;
        for (field, res) in [("limits", &self.limits), ("requests", &self.requests)] {
            if let Some(res) = res {
                if !res.memory.is_empty() && parse_memory(&res.memory).is_none() {
                    return Err(InvalidDeployment::new(
                        format!("{field}.memory"),
                        format!("{:?} is not a quantity such as 128Mi or 1G", res.memory),
                    ));
                }
                if !res.cpu.is_empty() && parse_cpu(&res.cpu).is_none() {
                    return Err(InvalidDeployment::new(
                        format!("{field}.cpu"),
                        format!("{:?} is not a quantity such as 100m or 0.5", res.cpu),
                    ));
                }
            }
        }
        Ok(policies)
    }
}

/// A Kubernetes memory quantity in bytes: `128Mi`, `1G`, `1048576`, `1e6`.
pub fn parse_memory(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let value: f64 = num.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((value * mult) as u64)
}

/// A Kubernetes CPU quantity in millicores: `100m`, `0.5`, `2`.
pub fn parse_cpu(q: &str) -> Option<u64> {
    let q = q.trim();
    let (num, scale) = match q.strip_suffix('m') {
        Some(n) => (n, 1.0),
        None => (q, 1000.0),
    };
    let value: f64 = num.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Some((value * scale).round() as u64)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Go clients send `null` for empty maps and lists.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_faas_cli_sends() {
        let json = r#"{"service":"echo","image":"echo:latest","namespace":"","envProcess":"cat",
            "envVars":{"a":"b"},"constraints":null,"secrets":["db"],"labels":{"com.openfaas.scale.min":"1"},
            "annotations":null,"limits":{"memory":"128Mi"},"requests":null,"readOnlyRootFilesystem":false}"#;
        let mut d: FunctionDeployment = serde_json::from_str(json).unwrap();
        d.validate().unwrap();
        assert_eq!(d.namespace, "openfaas-fn");
        assert_eq!(d.env_vars["a"], "b");
        assert_eq!(d.limits.unwrap().memory, "128Mi");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<FunctionDeployment>(r#"{"service":"x","image":"y","replica":3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `replica`"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut d =
            FunctionDeployment { service: "Bad_Name".into(), image: "x".into(), ..Default::default() };
        assert_eq!(d.validate().unwrap_err().field, "service");
        let mut d = FunctionDeployment { service: "ok".into(), image: " ".into(), ..Default::default() };
        assert_eq!(d.validate().unwrap_err().field, "image");
        let mut d = FunctionDeployment { service: "ok".into(), image: "x".into(), ..Default::default() };
        d.secrets = vec!["../etc/passwd".into()];
        assert_eq!(d.validate().unwrap_err().field, "secrets");
        let mut d = FunctionDeployment { service: "ok".into(), image: "x".into(), ..Default::default() };
        d.limits = Some(FunctionResources { memory: "lots".into(), ..Default::default() });
        assert_eq!(d.validate().unwrap_err().field, "limits.memory");
        let mut private: FunctionDeployment = serde_json::from_str(
            r#"{"service":"a","image":"x","annotations":{"com.ferrofaas.private":"true"},"limits":{"memory":"256Mi"}}"#,
        )
        .unwrap();
        let policies = private.validate().unwrap();
        assert!(policies.private);
        assert_eq!(policies.memory_limit, Some(256 << 20));
        private.annotations.insert(PRIVATE_ANNOTATION.into(), "yes".into());
        assert_eq!(private.validate().unwrap_err().field, "annotations.com.ferrofaas.private");
        let mut d = FunctionDeployment { service: "ok".into(), image: "x".into(), ..Default::default() };
        d.env_vars.insert("A=B".into(), "x".into());
        assert_eq!(d.validate().unwrap_err().field, "envVars");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_memory("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(parse_memory("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory("512"), Some(512));
        assert_eq!(parse_memory("12Qi"), None);
        assert_eq!(parse_cpu("100m"), Some(100));
        assert_eq!(parse_cpu("0.5"), Some(500));
        assert_eq!(parse_cpu("2"), Some(2000));
        assert_eq!(parse_cpu("x"), None);
    }

    #[test]
    fn status_serializes_like_openfaas() {
        let s = FunctionStatus {
            name: "echo".into(),
            image: "echo:latest".into(),
            namespace: "openfaas-fn".into(),
            replicas: 1,
            available_replicas: 1,
            invocation_count: 3.0,
            created_at: "2026-11-28T11:14:39Z".into(),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["availableReplicas"], 1);
        assert_eq!(v["invocationCount"], 3.0);
        assert_eq!(v["createdAt"], "2026-11-28T11:14:39Z");
        assert!(v.get("envVars").is_none());
    }
}
