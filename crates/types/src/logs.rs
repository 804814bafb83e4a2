//! `GET /system/logs`: one JSON object per line (NDJSON).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::FunctionRef;

/// One line a function instance printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    pub name: String,
    pub namespace: String,
    pub instance: String,
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    pub text: String,
}

/// What to read: the query parameters of `/system/logs`, read and checked
/// once by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRequest {
    pub function: FunctionRef,
    /// Only this instance (replica), if set.
    pub instance: Option<String>,
    /// Only lines at or after this time.
    pub since: Option<SystemTime>,
    /// At most this many of the existing lines (the newest); `None`: all.
    pub tail: Option<usize>,
    /// Keep the stream open for new lines.
    pub follow: bool,
}
