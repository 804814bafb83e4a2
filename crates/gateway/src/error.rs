//! Errors become JSON responses here, once: `{"message": "..."}` with the
//! status, and `"field"` when one field of the request was invalid (the UI
//! shows the message beside it). Internal details go to the log, not to
//! clients.

use ferrofaas_provider::ProviderError;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request's field at fault (`service`, `image`, `labels`, …).
    pub field: Option<String>,
    /// A 405's `Allow`: the methods the path takes.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), field: None, allow: None }
    }

    /// 405, saying which methods the path takes.
    pub fn method_not_allowed(allow: &str) -> ApiError {
        ApiError {
            allow: Some(allow.to_owned()),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed here; allowed: {allow}"),
            )
        }
    }

    /// 400 for one invalid field; the message names it too (`field: ...`),
    /// as clients that only read the message expect.
    pub fn invalid(field: &str, message: &str) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {message}"),
            field: Some(field.to_owned()),
            allow: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn into_response(self) -> Response<Body> {
        let mut resp = match self.field {
            None => json_error(self.status, &self.message),
            Some(field) => json_response(
                self.status,
                serde_json::json!({ "message": self.message, "field": field }).to_string(),
            ),
        };
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(http::header::ALLOW, allow);
        }
        resp
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> ApiError {
        match e {
            ProviderError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            ProviderError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            ProviderError::Invalid { field, message } => ApiError::invalid(&field, &message),
            ProviderError::Unsupported(m) => ApiError::new(StatusCode::NOT_IMPLEMENTED, m),
            ProviderError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            ProviderError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            ProviderError::Internal(m) => {
                tracing::error!(error = %m, "provider failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the gateway's log has the details",
                )
            }
        }
    }
}

/// A JSON error response.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, serde_json::json!({ "message": message }).to_string())
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
