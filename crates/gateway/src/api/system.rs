//! `/system/info` and `/system/namespaces`.

use ferrofaas_types::{GatewayInfo, VersionInfo};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

pub fn info(gw: &Gateway) -> Response<Body> {
    let info = GatewayInfo {
        provider: gw.provider.info(),
        version: VersionInfo {
            commit_message: String::new(),
            sha: ferrofaas_types::info::build_sha(),
            release: env!("CARGO_PKG_VERSION").into(),
        },
        arch: std::env::consts::ARCH.into(),
    };
    super::json(StatusCode::OK, &info)
}

pub async fn namespaces(gw: &Gateway) -> Result<Response<Body>, ApiError> {
    Ok(super::json(StatusCode::OK, &gw.provider.namespaces().await?))
}
