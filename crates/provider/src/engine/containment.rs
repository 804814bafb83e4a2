//! What container replicas (Docker and Swarm) share: a deployment's limits
//! as the Engine API takes them, and the defaults that contain them. By
//! default an engine gives a container's root user fourteen capabilities
//! and no limit on processes; ferrofaas's replicas get no capability but
//! those the function's `com.ferrofaas.capabilities` label names,
//! `no-new-privileges` (no set-uid program gains anything), and a pids
//! limit. OpenFaaS's images, the classic watchdog's included, need none of
//! what is taken away.

use ferrofaas_types::function::{parse_cpu, parse_memory};
use ferrofaas_types::isolation::{Isolation, NETWORK_LABEL};
use ferrofaas_types::{FunctionDeployment, FunctionResources};

use crate::{ProviderError, Result};

/// A deployment's `limits` as the Engine API takes them: memory in bytes,
/// CPU in billionths of a core.
pub(crate) fn limits(limits: Option<&FunctionResources>) -> (Option<i64>, Option<i64>) {
    let Some(limits) = limits else { return (None, None) };
    let memory = parse_memory(&limits.memory).map(|b| b as i64);
    let nano_cpus = parse_cpu(&limits.cpu).map(|m| m as i64 * 1_000_000);
    (memory, nano_cpus)
}

/// How a container replica is contained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hardening {
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub pids_limit: i64,
}

impl Hardening {
    /// For `spec`, with `pids_limit` processes and threads at most.
    pub(crate) fn of(spec: &FunctionDeployment, pids_limit: u64) -> Result<Hardening> {
        let isolation = Isolation::from_labels(&spec.labels)?;
        if !isolation.network {
            return Err(ProviderError::invalid(
                format!("labels.{NETWORK_LABEL}"),
                "containers are reached over their network, so they cannot go without one \
                 (the process provider runs such functions)",
            ));
        }
        Ok(Hardening {
            cap_drop: vec!["ALL".into()],
            cap_add: isolation.capabilities,
            pids_limit: i64::try_from(pids_limit).unwrap_or(i64::MAX),
        })
    }

    /// `--security-opt` values.
    pub(crate) fn security_opt(&self) -> Vec<String> {
        vec!["no-new-privileges".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_labels() {
        let mut spec = FunctionDeployment { service: "f".into(), image: "f".into(), ..Default::default() };
        let h = Hardening::of(&spec, 512).unwrap();
        assert_eq!((h.cap_drop, h.cap_add, h.pids_limit), (vec!["ALL".to_owned()], vec![], 512));
        spec.labels.insert("com.ferrofaas.capabilities".into(), "NET_BIND_SERVICE".into());
        assert_eq!(Hardening::of(&spec, 512).unwrap().cap_add, vec!["CAP_NET_BIND_SERVICE"]);
        spec.labels.insert(NETWORK_LABEL.into(), "none".into());
        assert!(Hardening::of(&spec, 512).is_err());
    }
}
