//! `/system/tokens`: API tokens, listed (never their secrets), made (the
//! token is in the answer, once) and revoked. The admin manages every
//! namespace's; a token of role admin, its own namespace's.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{Query, json, read_json, status};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::tokens::{Caller, Role, TokenInfo};

/// `GET /system/tokens[?namespace=]`.
pub fn list(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    // A token's query is scoped to its namespace already.
    Ok(json(StatusCode::OK, &gw.access().tokens.list(query.get("namespace"))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    #[serde(default)]
    namespace: String,
    role: Role,
}

#[derive(Serialize)]
struct Made {
    #[serde(flatten)]
    info: TokenInfo,
    /// The token itself: shown this once.
    token: String,
}

/// `POST /system/tokens` `{"name", "namespace", "role"}`: 201 with the token.
pub async fn create(
    gw: &Gateway,
    req: Request<Incoming>,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    let new: NewToken = read_json(req, gw.config.max_api_body).await?;
    if new.name.is_empty() || new.name.len() > 64 || new.name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "1 to 64 characters, none of them control characters"));
    }
    let namespace =
        if new.namespace.is_empty() { ferrofaas_types::names::DEFAULT_NAMESPACE } else { &new.namespace };
    super::valid_namespace(namespace)?;
    if let Caller::Token { role, .. } = caller
        && new.role > *role
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a token of role {} cannot make one of role {}", role.as_str(), new.role.as_str()),
        ));
    }
    let made = gw.access().tokens.create(&new.name, namespace, new.role).await.map_err(|e| {
        tracing::error!(error = %e, "could not store a token");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the token could not be stored")
    })?;
    let Some((info, token)) = made else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "namespace {namespace} has {} tokens, the most it may have: revoke some first",
                crate::tokens::MAX_PER_NAMESPACE
            ),
        ));
    };
    tracing::info!(id = %info.id, namespace = %info.namespace, role = info.role.as_str(), "token made");
    Ok(json(StatusCode::CREATED, &Made { info, token }))
}

/// `DELETE /system/tokens/<id>`: 204; refused from the next request on.
pub async fn revoke(gw: &Gateway, id: &str, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let tokens = &gw.access().tokens;
    // Another namespace's token is as unknown as no token.
    let known = tokens.get(id).filter(|t| caller.may(Role::Admin, &t.namespace));
    if known.is_none() {
        return Err(ApiError::not_found(format!("no token {id:?}")));
    }
    tokens.revoke(id).await.map_err(|e| {
        tracing::error!(error = %e, "could not revoke a token");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the token could not be revoked")
    })?;
    tracing::info!(%id, "token revoked");
    Ok(status(StatusCode::NO_CONTENT))
}
