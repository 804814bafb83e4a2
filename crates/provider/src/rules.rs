//! Rules every backend applies the same way, so that a client sees one
//! behaviour whichever runs its functions.

use ferrofaas_types::names::{self, DEFAULT_NAMESPACE};
use ferrofaas_types::{FunctionRef, Secret};

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
