//! Reading a whole request body (API JSON, bundles, asynchronous calls):
//! at most so many bytes, and never slower than a minimum rate after a
//! grace period, so that a client sending a byte now and then (slowloris)
//! cannot hold a connection and its buffer open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
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
    /// The bodies being read at once already take all the memory they may
    /// (a [`Budget`]): 429.
    Busy(usize),
    /// The gateway could not keep a body it spools to disk: 507 when the
    /// disk (or the quota) is full, 500 otherwise. The client did nothing
    /// wrong, and the partial file is removed.
    Unkept { full: bool, error: String },
}

impl ReadError {
    /// The status that answers it (one table for every path that reads a
    /// body).
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ReadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ReadError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            ReadError::Broken(_) => StatusCode::BAD_REQUEST,
            ReadError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ReadError::Unkept { full: true, .. } => StatusCode::INSUFFICIENT_STORAGE,
            ReadError::Unkept { full: false, .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn unkept(e: std::io::Error) -> ReadError {
        let full = matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded);
        ReadError::Unkept { full, error: e.to_string() }
    }
}

/// Bytes that bodies being read may take together: each reads only while
/// its bytes fit, and gives them back when it is dropped.
#[derive(Clone, Debug)]
pub struct Budget {
    used: Arc<AtomicUsize>,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Budget {
        Budget { used: Arc::new(AtomicUsize::new(0)), max }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }
}

/// Bytes of a [`Budget`] held by one body; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    held: usize,
}

impl Reservation {
    fn grow(&mut self, n: usize) -> bool {
        let ok = self.budget.reserve(n);
        if ok {
            self.held += n;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
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
            ReadError::Busy(max) => write!(
                f,
                "the gateway is receiving as many bodies as it may hold at once ({max} bytes together)"
            ),
            ReadError::Unkept { error, .. } => {
                write!(f, "the gateway could not keep the request body: {error}")
            }
        }
    }
}

/// Reads all of `body`: at most `limit` bytes, within `grace` plus the time
/// its bytes take at [`MIN_RATE`].
pub async fn read(body: Incoming, limit: usize, grace: Duration) -> Result<Bytes, ReadError> {
    read_counted(body, limit, grace, None).await
}

/// [`read`], with the body's bytes counted in `budget` for as long as the
/// [`Reservation`] returned with them is kept: a body with a length
/// reserves it first, one without as it arrives, and either ends with
/// [`ReadError::Busy`] when the budget has no room.
pub async fn read_within(
    body: Incoming,
    limit: usize,
    grace: Duration,
    budget: &Budget,
) -> Result<(Bytes, Reservation), ReadError> {
    let mut held = Reservation { budget: budget.clone(), held: 0 };
    match body.size_hint().exact() {
        Some(n) if n > limit as u64 => return Err(ReadError::TooLarge(limit)),
        Some(n) if !held.grow(n as usize) => return Err(ReadError::Busy(budget.max)),
        _ => {}
    }
    let bytes = read_counted(body, limit, grace, Some(&mut held)).await?;
    Ok((bytes, held))
}

/// The next bytes of `body`, `received` of them so far, unless it has been
/// longer than `grace` plus what they take at [`MIN_RATE`] since `started`.
async fn next_data(
    body: &mut Incoming,
    started: Instant,
    grace: Duration,
    received: usize,
) -> Result<Option<Bytes>, ReadError> {
    loop {
        let allowed = grace + Duration::from_secs_f64(received as f64 / MIN_RATE as f64);
        match tokio::time::timeout_at(started + allowed, body.frame()).await {
            Err(_) => return Err(ReadError::TooSlow),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(ReadError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// A request body written to a file of its own (mode 0600), removed when
/// this is dropped.
#[derive(Debug)]
pub struct Spooled {
    path: std::path::PathBuf,
    len: u64,
}

impl Spooled {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// [`read`] into a new file in `dir` instead of memory: at most `limit`
/// bytes (refused from its length first, when it has one).
pub async fn spool(
    mut body: Incoming,
    limit: u64,
    grace: Duration,
    dir: &std::path::Path,
) -> Result<Spooled, ReadError> {
    use tokio::io::AsyncWriteExt;
    if body.size_hint().exact().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge(usize::try_from(limit).unwrap_or(usize::MAX)));
    }
    let path = dir.join(format!(".upload-{:016x}", fastrand::u64(..)));
    let file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).await;
    let mut spooled = Spooled { path, len: 0 };
    let mut file = tokio::io::BufWriter::with_capacity(256 << 10, file.map_err(ReadError::unkept)?);
    let started = Instant::now();
    while let Some(data) = next_data(&mut body, started, grace, spooled.len as usize).await? {
        if spooled.len + data.len() as u64 > limit {
            return Err(ReadError::TooLarge(usize::try_from(limit).unwrap_or(usize::MAX)));
        }
        if let Err(e) = file.write_all(&data).await {
            // The rest is read and dropped (within the limit and the
            // rate), so that a client still sending gets the answer
            // rather than a connection reset under its upload.
            let mut read = spooled.len + data.len() as u64;
            while let Ok(Some(more)) = next_data(&mut body, started, grace, read as usize).await {
                read += more.len() as u64;
                if read > limit {
                    break;
                }
            }
            return Err(ReadError::unkept(e));
        }
        spooled.len += data.len() as u64;
    }
    file.flush().await.map_err(ReadError::unkept)?;
    Ok(spooled)
}

async fn read_counted(
    mut body: Incoming,
    limit: usize,
    grace: Duration,
    mut held: Option<&mut Reservation>,
) -> Result<Bytes, ReadError> {
    let started = Instant::now();
    let exact = body.size_hint().exact().filter(|&n| n <= limit as u64);
    let mut buf = BytesMut::with_capacity(exact.unwrap_or(0) as usize);
    loop {
        let Some(data) = next_data(&mut body, started, grace, buf.len()).await? else {
            return Ok(buf.freeze());
        };
        if buf.len() + data.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        if let Some(held) = held.as_deref_mut()
            && buf.len() + data.len() > held.held
            && !held.grow(buf.len() + data.len() - held.held)
        {
            return Err(ReadError::Busy(held.budget.max));
        }
        buf.extend_from_slice(&data);
    }
}
