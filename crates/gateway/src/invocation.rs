//! What an invocation is, for every path that makes one (`/function/`, the
//! dispatcher, a tunnel): the function it names, its call id and start
//! time headers, and the guard that counts it in its function's statistics
//! and holds its replica's lease until it is done.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrofaas_provider::{FunctionRoute, Lease};
use ferrofaas_types::names::split_qualified;
use ferrofaas_usage::{Entry, Meter, Record, Trigger};
use http::header::{HeaderName, HeaderValue};
use tokio::time::Instant;

pub const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
pub const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
pub const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");

/// The longest call id the gateway keeps (an asynchronous call's, a usage
/// record's): a client's own may be longer on `/function/`, where it is
/// passed on as it is.
pub const MAX_CALL_ID: usize = 128;

/// Counts an invocation in its function's statistics from the moment it is
/// routed until its response body is done (or dropped), and holds the
/// replica's lease as long. With usage metered, it hands the invocation's
/// record to the meter then: before the last of the response is written.
pub struct InvocationGuard {
    pub(crate) route: Arc<FunctionRoute>,
    pub(crate) lease: Option<Lease>,
    pub(crate) start: Instant,
    pub(crate) code: u16,
    pub(crate) usage: Option<Metered>,
    /// Its namespace's quota admission, if it has a quota.
    pub(crate) admission: Option<crate::quota::Admission>,
}

/// Usage metering, as the gateway runs it: the meter, and the memory an
/// invocation of a function without a memory limit is metered at.
#[derive(Clone)]
pub struct Metering {
    pub meter: Arc<dyn Meter>,
    pub default_memory_mib: u64,
}

/// What an invocation's usage record needs beyond its route and status.
pub(crate) struct Metered {
    meter: Arc<dyn Meter>,
    memory_mib: u64,
    trigger: Trigger,
    start_us: u64,
    pub(crate) call_id: Option<HeaderValue>,
    pub(crate) wait: Duration,
    pub(crate) bytes_in: BytesIn,
    pub(crate) bytes_out: u64,
}

/// A request body's size: known (a stored call's), or counted as it is
/// sent on.
pub(crate) enum BytesIn {
    Known(u64),
    Counted(Arc<AtomicU64>),
}

impl InvocationGuard {
    pub(crate) fn new(
        route: Arc<FunctionRoute>,
        start: Instant,
        metering: Option<&Metering>,
        trigger: Trigger,
    ) -> InvocationGuard {
        route.stats.started();
        let usage = metering.map(|m| {
            let memory_mib =
                route.memory_limit().map_or(m.default_memory_mib, |bytes| bytes.div_ceil(1 << 20));
            Metered {
                meter: Arc::clone(&m.meter),
                memory_mib,
                trigger,
                start_us: ferrofaas_usage::now_us(),
                call_id: None,
                wait: Duration::ZERO,
                bytes_in: BytesIn::Known(0),
                bytes_out: 0,
            }
        });
        InvocationGuard { route, lease: None, start, code: 499, usage, admission: None }
    }

    /// The invocation waited `wait` for a replica.
    pub(crate) fn waited(&mut self, wait: Duration) {
        self.route.stats.waited(wait);
        if let Some(m) = &mut self.usage {
            m.wait = wait;
        }
    }

    /// Counts `n` bytes of the response.
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some(m) = &mut self.usage {
            m.bytes_out += n as u64;
        }
    }
}

impl Drop for InvocationGuard {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.route.stats.finished(self.code, elapsed);
        let Some(m) = self.usage.take() else { return };
        let function = &self.route.function;
        let record = Record {
            function: function.name.clone(),
            namespace: function.namespace.clone(),
            // A header value's text is visible ASCII: any cut is a char
            // boundary.
            call_id: m
                .call_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map_or("", |id| &id[..id.len().min(MAX_CALL_ID)])
                .to_owned(),
            trigger: m.trigger,
            start_us: m.start_us,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            status: self.code,
            bytes_in: match &m.bytes_in {
                BytesIn::Known(n) => *n,
                BytesIn::Counted(n) => n.load(Ordering::Relaxed),
            },
            bytes_out: m.bytes_out,
            wait_us: u64::try_from(m.wait.as_micros()).unwrap_or(u64::MAX),
            memory_mib: m.memory_mib,
        };
        self.route.stats.metered(record.mib_us());
        if let Some(admission) = &mut self.admission {
            admission.used(record.mib_us());
        }
        m.meter.record(Entry::Call(record));
    }
}

/// What follows `/function/` or `/async-function/`: the function's name and
/// namespace (`<name>[.<namespace>]`), and the rest (`[/path][?query]`).
pub(crate) fn target(rest: &str) -> (&str, &str, &str) {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (name, namespace) = split_qualified(&rest[..end]);
    (name, namespace, &rest[end..])
}

/// The path and query a function sees, from what followed its name.
pub(crate) fn function_path(tail: &str) -> Cow<'_, str> {
    match tail {
        "" => Cow::Borrowed("/"),
        tail if tail.starts_with('?') => Cow::Owned(format!("/{tail}")),
        tail => Cow::Borrowed(tail),
    }
}

/// A random version-4 UUID, from a fast (non-cryptographic) generator: call
/// ids must be unique, not secret.
pub fn new_call_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut i = 0;
    for (n, b) in bytes.iter().enumerate() {
        if matches!(n, 4 | 6 | 8 | 10) {
            out[i] = b'-';
            i += 1;
        }
        out[i] = HEX[usize::from(b >> 4)];
        out[i + 1] = HEX[usize::from(b & 0xf)];
        i += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_uuid_v4() {
        let id = new_call_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_ne!(new_call_id(), new_call_id());
    }

    #[test]
    fn targets_and_the_paths_functions_see() {
        assert_eq!(target("wc"), ("wc", "openfaas-fn", ""));
        assert_eq!(target("wc.team/a/b?x=1"), ("wc", "team", "/a/b?x=1"));
        assert_eq!(function_path(""), "/");
        assert_eq!(function_path("?x=1"), "/?x=1");
        assert_eq!(function_path("/a?x=1"), "/a?x=1");
    }
}
