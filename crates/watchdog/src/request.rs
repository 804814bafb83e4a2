//! What every mode's request path carries along: the request's
//! [`Deadline`] and its accounting ([`RequestGuard`]), both handed on to the
//! response body (or the upgraded connection) when the handler is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Method;
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// When a request must be finished (`exec_timeout`, maybe lowered by
/// `X-Timeout`), or never.
///
/// One per request, handed along from the handler to the response body (or
/// the upgraded connection), so that a request arms at most one timer, and
/// only once it has to wait: while data flows only the clock is read.
pub struct Deadline {
    at: Option<Instant>,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// No deadline (`exec_timeout=0`).
    pub fn none() -> Deadline {
        Deadline { at: None, limit: Duration::ZERO, sleep: None }
    }

    pub fn after(limit: Duration) -> Deadline {
        Deadline { at: Some(Instant::now() + limit), limit, sleep: None }
    }

    /// The limit that set it, for messages (zero when there is none).
    pub fn limit(&self) -> Duration {
        self.limit
    }

    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// Has it passed? Reads the clock; arms nothing.
    pub fn passed(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// Call when about to wait: arms the timer (once) and says whether it
    /// has gone off. Never, without a deadline.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.at else { return false };
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        sleep.as_mut().poll(cx).is_ready()
    }

    /// Resolves when it passes; never, without a deadline.
    pub async fn expired(&mut self) {
        std::future::poll_fn(|cx| if self.poll_expired(cx) { Poll::Ready(()) } else { Poll::Pending }).await
    }
}

/// Accounts for one request from admission until its response body is done
/// (or its upgraded connection closed): the in-flight gauge, the request
/// counter and the duration histogram.
pub struct RequestGuard {
    metrics: Arc<Metrics>,
    method: Method,
    start: Instant,
    /// 499 (client closed the request) until a response is made.
    pub status: u16,
}

impl RequestGuard {
    /// Counts the request in flight; returns the guard and how many are in
    /// flight now, this one included.
    pub fn admit(metrics: &Arc<Metrics>, method: Method) -> (RequestGuard, i64) {
        let in_flight = metrics.request_started();
        let guard = RequestGuard { metrics: Arc::clone(metrics), method, start: Instant::now(), status: 499 };
        (guard, in_flight)
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.metrics.request_finished(&self.method, self.status, self.start.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_arms_its_timer_only_to_wait() {
        let mut d = Deadline::after(Duration::from_secs(2));
        assert!(!d.passed());
        assert!(d.sleep.is_none(), "reading the clock arms nothing");
        tokio::time::timeout(Duration::from_secs(1), d.expired()).await.unwrap_err();
        assert!(d.sleep.is_some());
        d.expired().await;
        assert!(d.passed());
        let mut none = Deadline::none();
        assert!(tokio::time::timeout(Duration::from_secs(3600), none.expired()).await.is_err());
        assert!(!none.passed());
    }
}
