//! # ferrofaas-types
//!
//! The bottom of the dependency graph: OpenFaaS-compatible API types
//! ([`function`], [`secret`], [`info`], [`logs`]), name validation
//! ([`names`]), architectures ([`platform`]), and small pure helpers that several crates share (Go
//! durations, RFC 3339 times, base64, query strings, hop-by-hop headers,
//! metrics pages). No I/O here.

pub mod address;
pub mod base64;
pub mod duration;
pub mod function;
pub mod hex;
pub mod hop;
pub mod info;
mod invalid;
pub mod isolation;
pub mod logs;
pub mod names;
pub mod platform;
pub mod procfs;
pub mod prom;
pub mod query;
pub mod retry;
pub mod scaling;
pub mod secret;
mod settings;
pub mod time;

pub use function::{
    DeleteFunctionRequest, FunctionDeployment, FunctionResources, FunctionStatus, FunctionUsage,
    InvalidDeployment, Policies, ScaleServiceRequest, TriggerStatus,
};
pub use info::{GatewayInfo, ProviderInfo, VersionInfo};
pub use logs::{LogMessage, LogRequest};
pub use names::{DEFAULT_NAMESPACE, FunctionRef, NameError};
pub use secret::Secret;

/// An error and its sources, `outer: inner: innermost`, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
