//! The OpenFaaS REST API under `/system/*`, one file per resource, and the
//! helpers they share: JSON in and out, query strings.

pub mod alert;
pub mod asynchronous;
pub mod bundles;
pub mod functions;
pub mod logs;
pub mod routes;
pub mod secrets;
pub mod system;
pub mod tokens;
pub mod usage;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::body::Body;
use crate::error::ApiError;
use crate::request_body;

/// How long a JSON body may take before the minimum rate applies.
const JSON_GRACE: Duration = Duration::from_secs(10);

/// Reads a whole body of at most `limit` bytes (413 past it), not too
/// slowly (408; see [`request_body`]).
pub async fn read_body(req: Request<Incoming>, limit: usize, grace: Duration) -> Result<Bytes, ApiError> {
    request_body::read(req.into_body(), limit, grace).await.map_err(ApiError::from)
}

impl From<request_body::ReadError> for ApiError {
    fn from(e: request_body::ReadError) -> ApiError {
        let status = e.status();
        ApiError::new(status, e.to_string())
    }
}

/// A namespace a request names: a 400 naming the `namespace` field if it
/// is not a valid one.
pub fn valid_namespace(ns: &str) -> Result<(), ApiError> {
    ferrofaas_types::names::validate_namespace(ns).map_err(|e| ApiError::invalid("namespace", &e.to_string()))
}

/// The namespace a token's request is confined to (a request extension).
#[derive(Clone, Debug)]
pub struct Scope(pub String);

/// Reads a JSON body into `T`; the message says what was wrong and where.
/// In a token's request, the body's `namespace` is the token's: filled in
/// if it is missing, a 403 if it names another.
pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>, limit: usize) -> Result<T, ApiError> {
    let scope = req.extensions().get::<Scope>().cloned();
    let bytes = read_body(req, limit, JSON_GRACE).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    let invalid = |e: serde_json::Error| ApiError::bad_request(format!("invalid JSON: {e}"));
    let Some(Scope(namespace)) = scope else { return serde_json::from_slice(&bytes).map_err(invalid) };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
    if let Some(object) = value.as_object_mut() {
        match object.get("namespace") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(ns)) if ns.is_empty() || *ns == namespace => {}
            Some(other) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("this token is for namespace {namespace}, not {other}"),
                ));
            }
        }
        object.insert("namespace".into(), serde_json::Value::String(namespace));
    }
    serde_json::from_value(value).map_err(invalid)
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::full(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("could not encode the response: {e}"))
                .into_response()
        }
    }
}

/// An empty response with a status.
pub fn status(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// A query string's parameters (the last of repeated keys wins).
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, ApiError> {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = ferrofaas_types::query::decode(k)
                .ok_or_else(|| ApiError::bad_request("invalid percent-encoding in the query"))?;
            let v = ferrofaas_types::query::decode(v)
                .ok_or_else(|| ApiError::bad_request("invalid percent-encoding in the query"))?;
            map.insert(k, v);
        }
        Ok(Query(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q =
            Query::parse(Some("name=fn&tail=-1&since=2025-01-01T10%3A00%3A00%2B01%3A00&x=a+b&name=fn2&e="))
                .unwrap();
        assert_eq!(q.get("name"), Some("fn2"));
        assert_eq!(q.get("tail"), Some("-1"));
        assert_eq!(q.get("since"), Some("2025-01-01T10:00:00+01:00"));
        assert_eq!(q.get("x"), Some("a b"));
        assert_eq!(q.get("e"), None);
        assert!(Query::parse(Some("a=%zz")).is_err());
    }
}
