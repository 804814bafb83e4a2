//! `/system/functions`, `/system/function/{name}`,
//! `/system/scale-function/{name}`.

use ferrofaas_types::names::DEFAULT_NAMESPACE;
use ferrofaas_types::{
    DeleteFunctionRequest, FunctionDeployment, FunctionRef, FunctionStatus, ScaleServiceRequest,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Query, json, read_json, status};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

/// The namespace of a query (`?namespace=`), defaulted and validated.
pub fn namespace_param(query: &Query) -> Result<String, ApiError> {
    let ns = query.get("namespace").unwrap_or(DEFAULT_NAMESPACE);
    ferrofaas_types::names::validate_namespace(ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(ns.to_owned())
}

/// `name` or `name.namespace` from a path, with `?namespace=` as fallback.
fn function_ref(name: &str, query: &Query) -> Result<FunctionRef, ApiError> {
    let (name, ns) = match name.split_once('.') {
        Some((name, ns)) => (name, Some(ns)),
        None => (name, query.get("namespace")),
    };
    FunctionRef::new(name, ns).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn with_invocations(gw: &Gateway, mut status: FunctionStatus) -> FunctionStatus {
    if let Some(route) = gw.provider.routes().get(&status.name, &status.namespace) {
        status.invocation_count = route.stats.invocation_count() as f64;
    }
    if let Some(schedules) = &gw.schedules {
        let f = FunctionRef { name: status.name.clone(), namespace: status.namespace.clone() };
        status.triggers.extend(schedules.status_of(&f));
        status.triggers.extend(schedules.topics_of(&status.annotations));
    }
    status
}

pub async fn list(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    let ns = namespace_param(query)?;
    let functions: Vec<FunctionStatus> =
        gw.provider.list(&ns).await?.into_iter().map(|s| with_invocations(gw, s)).collect();
    Ok(json(StatusCode::OK, &functions))
}

/// `GET /system/function-history/{name}`: the points behind the UI's
/// chart (see [`crate::history`]); none yet for a function just deployed.
/// Whether the function exists is the route table's answer (every deployed
/// function has a route), not a second call to the provider.
pub fn history(gw: &Gateway, name: &str, query: &Query) -> Result<Response<Body>, ApiError> {
    let f = function_ref(name, query)?;
    if gw.provider.routes().get(&f.name, &f.namespace).is_none() {
        return Err(ApiError::not_found(format!(
            "function {} not found in namespace {}",
            f.name, f.namespace
        )));
    }
    Ok(json(StatusCode::OK, &gw.history.get(&f)))
}

pub async fn get(gw: &Gateway, name: &str, query: &Query) -> Result<Response<Body>, ApiError> {
    let f = function_ref(name, query)?;
    let status = gw.provider.status(&f).await?;
    Ok(json(StatusCode::OK, &with_invocations(gw, status)))
}

/// POST creates, PUT updates (404 if missing, as faas-cli expects before it
/// falls back to POST). Both answer 202: replicas start in the background.
pub async fn deploy(gw: &Gateway, req: Request<Incoming>, create: bool) -> Result<Response<Body>, ApiError> {
    let by_token = req.extensions().get::<super::Scope>().is_some();
    let mut spec: FunctionDeployment = read_json(req, gw.config.max_api_body).await?;
    // The provider sets the policies validation reads on the function's route.
    spec.validate().map_err(|e| ApiError::invalid(&e.field, &e.message))?;
    let triggers = crate::triggers::check(&spec.annotations, gw.schedules.as_ref())
        .map_err(|e| ApiError::invalid(&e.field, &e.message))?;
    // A broker's topics are not any one namespace's: a tenant's function
    // subscribed to one would get every namespace's messages on it, and
    // one with a reply topic would publish where others listen.
    if by_token && (!triggers.topics.is_empty() || triggers.reply.is_some()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "annotations.{}: a token's deployment may not subscribe to a broker's topics or publish replies \
                 (the topics are every namespace's): the gateway's admin deploys those",
                ferrofaas_triggers::TOPIC
            ),
        ));
    }
    if create {
        gw.provider.deploy(spec).await?;
    } else {
        gw.provider.update(spec).await?;
    }
    if let Some(schedules) = &gw.schedules {
        schedules.changed();
    }
    Ok(status(StatusCode::ACCEPTED))
}

pub async fn delete(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body: DeleteFunctionRequest = read_json(req, gw.config.max_api_body).await?;
    let ns = (!body.namespace.is_empty()).then_some(body.namespace.as_str());
    let f = FunctionRef::new(&body.function_name, ns).map_err(|e| ApiError::bad_request(e.to_string()))?;
    gw.provider.remove(&f).await?;
    if let Some(schedules) = &gw.schedules {
        schedules.changed();
    }
    Ok(status(StatusCode::ACCEPTED))
}

pub async fn scale(
    gw: &Gateway,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: ScaleServiceRequest = read_json(req, gw.config.max_api_body).await?;
    let mut f = function_ref(name, query)?;
    if !body.namespace.is_empty() {
        ferrofaas_types::names::validate_namespace(&body.namespace)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        f.namespace = body.namespace.clone();
    }
    if !body.service_name.is_empty() && body.service_name != f.name {
        return Err(ApiError::bad_request(format!(
            "serviceName {:?} does not match the function in the path ({:?})",
            body.service_name, f.name
        )));
    }
    gw.provider.scale(&f, body.replicas).await?;
    Ok(status(StatusCode::ACCEPTED))
}
