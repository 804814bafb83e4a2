//! What an invocation is, for every path that makes one (`/function/`, the
//! dispatcher, a tunnel): the function it names, its call id and start
//! time headers, and the guard that counts it in its function's statistics
//! and holds its replica's lease until it is done.

use std::borrow::Cow;
use std::sync::Arc;

use ferrofaas_provider::{FunctionRoute, Lease};
use ferrofaas_types::names::split_qualified;
use http::header::{HeaderName, HeaderValue};
use tokio::time::Instant;

pub const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
pub const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
pub const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");

/// Counts an invocation in its function's statistics from the moment it is
/// routed until its response body is done (or dropped), and holds the
/// replica's lease as long.
pub struct InvocationGuard {
    pub(crate) route: Arc<FunctionRoute>,
    pub(crate) lease: Option<Lease>,
    pub(crate) start: Instant,
    pub(crate) code: u16,
}

impl Drop for InvocationGuard {
    fn drop(&mut self) {
        self.route.stats.finished(self.code, self.start.elapsed());
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
