//! `/system/secrets`: names out, never values.

use ferrofaas_types::Secret;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::functions::namespace_param;
use super::{Query, json, read_json, status};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

pub async fn list(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    let ns = namespace_param(query)?;
    Ok(json(StatusCode::OK, &gw.provider.list_secrets(&ns).await?))
}

pub async fn create(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let secret: Secret = read_json(req, gw.config.max_api_body).await?;
    gw.provider.create_secret(secret).await?;
    Ok(status(StatusCode::CREATED))
}

pub async fn update(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let secret: Secret = read_json(req, gw.config.max_api_body).await?;
    gw.provider.update_secret(secret).await?;
    Ok(status(StatusCode::OK))
}

pub async fn delete(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let secret: Secret = read_json(req, gw.config.max_api_body).await?;
    gw.provider.delete_secret(&secret.name, &secret.namespace).await?;
    Ok(status(StatusCode::OK))
}
