//! `/system/async/*`: the state of an asynchronous call, and the dead
//! letters (list, replay, delete).

use ferrofaas_queue::{DeadLetter, Queue, QueueError};
use http::{Response, StatusCode};
use serde::Serialize;

use super::{json, status};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

fn queue(gw: &Gateway) -> Result<&dyn Queue, ApiError> {
    gw.queue
        .as_deref()
        .ok_or_else(|| ApiError::not_found("asynchronous invocations are not enabled on this gateway"))
}

fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::NotFound(id) => ApiError::not_found(format!("no dead letter {id:?}")),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A dead letter as the API shows it: the body as text where it is text.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Letter<'a> {
    call_id: &'a str,
    function: String,
    method: &'a str,
    path: &'a str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
    failed_at: String,
}

fn letter(l: &DeadLetter) -> Letter<'_> {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(l.failed_at);
    Letter {
        call_id: &l.call.id,
        function: format!("{}.{}", l.call.function, l.call.namespace),
        method: &l.call.method,
        path: &l.call.path,
        attempts: l.attempts,
        last_status: l.last.as_ref().map(|o| o.status),
        last_body: l.last.as_ref().map(|o| String::from_utf8_lossy(&o.body).into_owned()),
        error: l.error.as_deref(),
        callback_url: l.call.callback.as_deref(),
        failed_at: ferrofaas_types::time::format(at, false),
    }
}

pub async fn dead_letters(gw: &Gateway) -> Result<Response<Body>, ApiError> {
    let all = queue(gw)?.dead_letters().await.map_err(queue_error)?;
    let letters: Vec<Letter<'_>> = all.iter().map(letter).collect();
    Ok(json(StatusCode::OK, &letters))
}

/// `GET /system/async/{id}`, `POST /system/async/dead-letters/{id}/replay`,
/// `DELETE /system/async/dead-letters/{id}`.
/// `POST /system/async/dead-letters/<id>/replay`: back on the queue.
pub async fn replay(gw: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    queue(gw)?.replay(id).await.map_err(queue_error)?;
    Ok(status(StatusCode::ACCEPTED))
}

/// `DELETE /system/async/dead-letters/<id>`.
pub async fn delete_dead_letter(gw: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    queue(gw)?.delete_dead_letter(id).await.map_err(queue_error)?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `GET /system/async/<id>`: the state of a call.
pub async fn status_of(gw: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    match queue(gw)?.status(id).await.map_err(queue_error)? {
        Some(s) => Ok(json(StatusCode::OK, &s)),
        None => Err(ApiError::not_found(format!("no asynchronous call {id:?}"))),
    }
}
