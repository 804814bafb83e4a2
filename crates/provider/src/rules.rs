//! Rules every backend applies the same way, so that a client sees one
//! behaviour whichever runs its functions: what a secret may be, the 404
//! of a function, whether a replica's environment gives its watchdog
//! something to serve, and how a replica is asked whether it is ready.

use ferrofaas_types::names::{self, DEFAULT_NAMESPACE};
use ferrofaas_types::{FunctionRef, Secret};

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ProviderError, Result};

/// The 404 of a function that is not deployed.
pub fn not_found(f: &FunctionRef) -> ProviderError {
    ProviderError::NotFound(format!("function {} not found in namespace {}", f.name, f.namespace))
}

/// A secret as the API takes it: a valid name and namespace, and a value of
/// at most [`MAX_SECRET_BYTES`](ferrofaas_types::secret::MAX_SECRET_BYTES).
/// Its name and namespace (the default filled in).
pub fn validate_secret(secret: &Secret) -> Result<(String, String)> {
    names::validate_secret_name(&secret.name).map_err(|e| ProviderError::invalid("name", e.to_string()))?;
    let ns = if secret.namespace.is_empty() { DEFAULT_NAMESPACE } else { &secret.namespace };
    names::validate_namespace(ns).map_err(|e| ProviderError::invalid("namespace", e.to_string()))?;
    if secret.bytes().is_empty() {
        return Err(ProviderError::invalid("value", "a secret needs a value (value or rawValue)"));
    }
    if secret.bytes().len() > ferrofaas_types::secret::MAX_SECRET_BYTES {
        return Err(ProviderError::invalid(
            "value",
            format!("at most {} KiB", ferrofaas_types::secret::MAX_SECRET_BYTES / 1024),
        ));
    }
    Ok((secret.name.clone(), ns.to_owned()))
}

/// Does a watchdog with this environment have something to serve: a
/// process (`fprocess`, `function_process`) or files (`mode=static`)?
/// `get` reads the environment as the replica will have it.
pub fn has_something_to_run<'a>(get: impl Fn(&str) -> Option<&'a str>) -> bool {
    get("mode") == Some("static") || get("fprocess").is_some() || get("function_process").is_some()
}

/// `GET path` on a replica: its status code, if it answers within `timeout`.
pub async fn probe_within(addr: SocketAddr, path: &'static str, timeout: Duration) -> Option<u16> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: replica\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        // "HTTP/1.1 200" is all that is needed.
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.ok()?;
        std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(timeout, work).await.ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_or_files_to_serve() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        };
        assert!(has_something_to_run(env(&[("fprocess", "cat")])));
        assert!(has_something_to_run(env(&[("function_process", "cat")])));
        assert!(has_something_to_run(env(&[("mode", "static")])));
        assert!(!has_something_to_run(env(&[("mode", "http")])));
        assert!(!has_something_to_run(env(&[])));
    }
}
