//! `GET /system/info`.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

static BUILD_SHA: OnceLock<String> = OnceLock::new();

/// What `/system/info` gives as the commit of this build when the program
/// did not say ([`set_build_sha`]).
pub const UNKNOWN_SHA: &str = "unknown (built without git)";

/// The commit the running program was built from (its `main` says, from
/// its build script); once.
pub fn set_build_sha(sha: &str) {
    let _ = BUILD_SHA.set(sha.to_owned());
}

/// The commit the running program was built from, or [`UNKNOWN_SHA`].
pub fn build_sha() -> String {
    BUILD_SHA.get().map_or(UNKNOWN_SHA, String::as_str).to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub provider: ProviderInfo,
    pub version: VersionInfo,
    pub arch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    #[serde(rename = "provider")]
    pub name: String,
    pub orchestration: String,
    pub version: VersionInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_message: String,
    #[serde(default)]
    pub sha: String,
    pub release: String,
}
