//! `/system/bundles`: function bundles pushed to the gateway, for providers
//! that run bundles (the process provider). `POST ?image=name:tag` with a
//! tar archive (gzipped or not) as the body; `GET` lists them.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Query, json};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

pub async fn push(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query())?;
    let image = query
        .get("image")
        .ok_or_else(|| ApiError::bad_request("the image parameter (name:tag) is required"))?
        .to_owned();
    // On disk as it arrives, removed once stored.
    let limit = gw.config.max_bundle_body;
    let archive =
        crate::request_body::spool(req.into_body(), limit, gw.config.read_timeout, &gw.config.upload_dir)
            .await?;
    if archive.is_empty() {
        return Err(ApiError::bad_request("the body must be a tar archive"));
    }
    let info = gw.provider.push_bundle(&image, archive.path()).await?;
    tracing::info!(image = %info.image, digest = %info.digest, size = info.size, "bundle stored");
    Ok(json(StatusCode::CREATED, &info))
}

pub async fn list(gw: &Gateway) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &gw.provider.list_bundles().await?))
}
