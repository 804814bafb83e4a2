//! How a function is contained, from its labels (ferrofaas's own; OpenFaaS
//! has no such labels, and without them every function gets the defaults):
//!
//! - `com.ferrofaas.network: none`: no network at all (process replicas
//!   get a network namespace with only loopback; the gateway still reaches
//!   them through the socket it hands them). Absent, or `default`:
//!   outbound network as the host has it.
//! - `com.ferrofaas.capabilities: NET_BIND_SERVICE,CHOWN`: the Linux
//!   capabilities a container replica keeps (every other one is dropped).
//!   Process replicas run as an unprivileged uid and never have any.

use std::collections::BTreeMap;

use crate::invalid::InvalidDeployment;
use crate::settings::Settings;

pub const NETWORK_LABEL: &str = "com.ferrofaas.network";
pub const CAPABILITIES_LABEL: &str = "com.ferrofaas.capabilities";

/// Linux capabilities by name (without `CAP_`), as `capabilities(7)` lists them.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolation {
    /// `false`: no network (`com.ferrofaas.network: none`).
    pub network: bool,
    /// Capabilities a container keeps, as `CAP_NAME`, sorted.
    pub capabilities: Vec<String>,
}

impl Default for Isolation {
    fn default() -> Isolation {
        Isolation { network: true, capabilities: Vec::new() }
    }
}

impl Isolation {
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Isolation, InvalidDeployment> {
        let s = Settings::new("labels", labels);
        let network = match s.get(NETWORK_LABEL) {
            None | Some("default") => true,
            Some("none") => false,
            Some(other) => {
                return Err(
                    s.invalid(NETWORK_LABEL, format!("{other:?} is not a network: use none or default"))
                );
            }
        };
        let mut capabilities = Vec::new();
        for name in
            s.get(CAPABILITIES_LABEL).unwrap_or("").split(',').map(str::trim).filter(|n| !n.is_empty())
        {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            if !CAPABILITIES.contains(&bare) {
                return Err(s.invalid(
                    CAPABILITIES_LABEL,
                    format!("{name:?} is not a Linux capability (such as NET_BIND_SERVICE)"),
                ));
            }
            let cap = format!("CAP_{bare}");
            if !capabilities.contains(&cap) {
                capabilities.push(cap);
            }
        }
        capabilities.sort();
        Ok(Isolation { network, capabilities })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn reads_the_labels() {
        assert_eq!(Isolation::from_labels(&labels(&[])).unwrap(), Isolation::default());
        let i = Isolation::from_labels(&labels(&[
            (NETWORK_LABEL, " none "),
            (CAPABILITIES_LABEL, "net_bind_service, CAP_CHOWN,NET_BIND_SERVICE"),
        ]))
        .unwrap();
        assert!(!i.network);
        assert_eq!(i.capabilities, vec!["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        let e = Isolation::from_labels(&labels(&[(NETWORK_LABEL, "host")])).unwrap_err();
        assert_eq!(e.field, "labels.com.ferrofaas.network");
        let e = Isolation::from_labels(&labels(&[(CAPABILITIES_LABEL, "ROOT")])).unwrap_err();
        assert!(e.message.contains("\"ROOT\" is not a Linux capability"), "{}", e.message);
    }
}
