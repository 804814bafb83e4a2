//! `GET /system/logs?name=&namespace=&instance=&tail=&follow=&since=`:
//! NDJSON, one `{"name","namespace","instance","timestamp","text"}` per line.

use ferrofaas_types::{FunctionRef, LogRequest};
use http::Response;
use http::header::{CONTENT_TYPE, HeaderValue};

use super::Query;
use super::functions::namespace_param;
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

pub async fn get(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    let name = query.get("name").ok_or_else(|| ApiError::bad_request("the name parameter is required"))?;
    ferrofaas_types::names::validate_function_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let namespace = namespace_param(query)?;
    let tail = match query.get("tail") {
        None => None,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n <= 0 => None,
            Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => return Err(ApiError::bad_request(format!("tail={t:?} is not a whole number"))),
        },
    };
    let follow = match query.get("follow") {
        None => false,
        Some("true" | "1" | "t" | "True" | "TRUE") => true,
        Some("false" | "0" | "f" | "False" | "FALSE") => false,
        Some(other) => return Err(ApiError::bad_request(format!("follow={other:?} is not true or false"))),
    };
    let since = match query.get("since") {
        None => None,
        Some(s) => Some(
            ferrofaas_types::time::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("since={s:?} is not an RFC 3339 time")))?,
        ),
    };
    let request = LogRequest {
        function: FunctionRef { name: name.to_owned(), namespace },
        instance: query.get("instance").map(str::to_owned),
        since,
        tail,
        follow,
    };
    let lines = gw.provider.logs(request).await?;
    let mut resp = Response::new(Body::logs(lines, gw.shutdown.clone().cancelled_owned()));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}
