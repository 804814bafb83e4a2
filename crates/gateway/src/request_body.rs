//! Reading a whole request body (API JSON, bundles, asynchronous calls):
//! at most so many bytes, and never slower than a minimum rate after a
//! grace period, so that a client sending a byte now and then (slowloris)
//! cannot hold a connection and its buffer open.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

/// The slowest a body may arrive, after the grace period.
pub const MIN_RATE: u64 = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// More than the limit: 413.
    TooLarge(usize),
    /// Slower than the grace period and the minimum rate allow: 408.
    TooSlow,
    /// The client broke off, or sent a broken body: 400.
    Broken(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(limit) => write!(f, "the request body is larger than {limit} bytes"),
            ReadError::TooSlow => write!(
                f,
                "the request body arrived too slowly (after the first seconds, at least {} KiB/s)",
                MIN_RATE / 1024
            ),
            ReadError::Broken(e) => write!(f, "could not read the request body: {e}"),
        }
    }
}

/// Reads all of `body`: at most `limit` bytes, within `grace` plus the time
/// its bytes take at [`MIN_RATE`].
pub async fn read(mut body: Incoming, limit: usize, grace: Duration) -> Result<Bytes, ReadError> {
    let started = Instant::now();
    let mut buf = BytesMut::new();
    loop {
        let allowed = grace + Duration::from_secs_f64(buf.len() as f64 / MIN_RATE as f64);
        let frame = match tokio::time::timeout_at(started + allowed, body.frame()).await {
            Err(_) => return Err(ReadError::TooSlow),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(ReadError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
}
