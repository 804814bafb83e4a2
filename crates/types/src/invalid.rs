//! Why a deployment was refused: the field at fault and what is wrong with
//! it. Every rule of `FunctionDeployment::validate` and of the label
//! readers (scaling, retries, isolation) answers with one.

use crate::names::NameError;

/// Why a deployment was refused; `field` names the JSON field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidDeployment {
    pub field: String,
    pub message: String,
}

impl InvalidDeployment {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> InvalidDeployment {
        InvalidDeployment { field: field.into(), message: message.into() }
    }
}

impl From<NameError> for InvalidDeployment {
    fn from(e: NameError) -> InvalidDeployment {
        let field = match e.kind {
            "function name" => "service",
            "namespace" => "namespace",
            "secret name" => "secrets",
            _ => "envVars",
        };
        InvalidDeployment::new(field, e.to_string())
    }
}
