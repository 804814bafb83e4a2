//! # ferrofaas-types
//!
//! The bottom of the dependency graph: OpenFaaS-compatible API types
//! ([`function`], [`secret`], [`info`], [`logs`]), name validation
//! ([`names`]), and small pure helpers that several crates share (Go
//! durations, RFC 3339 times, base64, hop-by-hop headers, the Prometheus text
//! format). No I/O here.

pub mod base64;
pub mod duration;
pub mod function;
pub mod hop;
pub mod info;
pub mod logs;
pub mod names;
pub mod prom;
pub mod secret;
pub mod time;

pub use function::{
    DeleteFunctionRequest, FunctionDeployment, FunctionResources, FunctionStatus, FunctionUsage,
    InvalidDeployment, ScaleServiceRequest,
};
pub use info::{GatewayInfo, ProviderInfo, VersionInfo};
pub use logs::{LogMessage, LogRequest};
pub use names::{DEFAULT_NAMESPACE, FunctionRef, NameError};
pub use secret::Secret;
