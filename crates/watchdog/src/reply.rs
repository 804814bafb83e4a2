//! The answers the watchdog makes itself (JSON errors), and reading a whole
//! request body within `read_timeout`.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::Body;

/// A JSON error response: `{"message": "..."}`.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Reads a whole request body within `read_timeout`: 408 if it is too slow,
/// 400 if it breaks off.
pub async fn read_body(body: Incoming, read_timeout: Duration) -> Result<bytes::Bytes, Response<Body>> {
    match tokio::time::timeout(read_timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            Err(error_response(StatusCode::BAD_REQUEST, &format!("could not read the request body: {e}")))
        }
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "the request body was not received within read_timeout",
        )),
    }
}
