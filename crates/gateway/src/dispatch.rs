//! Asynchronous invocations: `/async-function/<name>[.<namespace>][/path]`
//! stores the request in the [`Queue`] and answers 202 with its call id;
//! the dispatcher runs stored calls through the same invocation path as
//! `/function/` (replica choice, start from zero, metrics), retries them as
//! the function's annotations say, posts results to `X-Callback-Url`, and
//! moves calls out of attempts to the dead letters.
//!
//! Each function runs at most `com.openfaas.queue.max_inflight` calls at
//! once, and functions take turns, so one busy function does not hold up
//! the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrofaas_queue::{Call, DeadLetter, Entry, Outcome, Queue, QueueError, now_ms};
use ferrofaas_types::FunctionRef;
use ferrofaas_types::Policies;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::callback::CheckedConnector;
use crate::error::json_error;
use crate::gateway::Gateway;
use crate::invocation::X_CALL_ID;

/// Calls running at once, all functions together.
const MAX_RUNNING: usize = 256;
/// How long a callback may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// `/async-function/...`: 404 for a function that does not exist, 413 for
/// a body past `max_async_body`, 429 when the queue (or the function's
/// share of it) is full or the gateway is receiving as much as it may
/// hold, else 202 once the call is on disk.
pub async fn accept(gw: &Gateway, queue: &Arc<dyn Queue>, req: Request<Incoming>) -> Response<Body> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let (name, namespace, tail) =
        crate::invocation::target(pq.strip_prefix("/async-function/").unwrap_or(""));
    let Some(route) = gw.provider.routes().get(name, namespace) else {
        return crate::proxy::no_such_function(name, namespace);
    };
    if route.is_private()
        && let Err(resp) = gw.invoker.check_private(&route, req.headers())
    {
        return resp;
    }
    // At its quota now: refused at the door rather than stored to wait.
    if let Err(refusal) = gw.quotas().check(namespace) {
        return crate::proxy::over_quota(&refusal);
    }
    let path = crate::invocation::function_path(tail).into_owned();
    let headers = req.headers();
    let id = match headers.get(&X_CALL_ID).and_then(|v| v.to_str().ok()) {
        // The ids of triggered calls are the triggers' own: a call taking
        // one ahead of its event would drop the event.
        Some(id) if ferrofaas_triggers::is_event_call_id(id) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "X-Call-Id: ids that start with a connector's name and a dash (cron-, nats-, mqtt-, rabbitmq-...) \
                 are those of triggered calls",
            );
        }
        Some(id)
            if !id.is_empty()
                && id.len() <= crate::invocation::MAX_CALL_ID
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_owned()
        }
        Some(_) => {
            return json_error(StatusCode::BAD_REQUEST, "X-Call-Id: at most 128 visible ASCII characters");
        }
        None => crate::invocation::new_call_id().to_str().unwrap_or_default().to_owned(),
    };
    let callback = match headers.get("x-callback-url").map(|v| v.to_str()) {
        None => None,
        Some(Ok(url)) => match gw.config.callbacks.check_url(url) {
            Ok(()) => Some(url.to_owned()),
            Err(why) => return json_error(StatusCode::BAD_REQUEST, &why),
        },
        Some(Err(_)) => {
            return json_error(StatusCode::BAD_REQUEST, "X-Callback-Url: an http:// URL is required");
        }
    };
    let mut kept = Vec::new();
    for (k, v) in headers {
        let skip = matches!(
            k.as_str(),
            "host" | "content-length" | "x-callback-url" | "x-call-id" | "authorization"
        ) || ferrofaas_types::hop::is_hop_by_hop(k);
        if let (false, Ok(v)) = (skip, v.to_str()) {
            kept.push((k.as_str().to_owned(), v.to_owned()));
        }
    }
    let method = req.method().as_str().to_owned();
    let max = gw.config.max_async_body;
    let read = crate::request_body::read_within(req.into_body(), max, gw.config.read_timeout, &gw.receiving);
    // Held until the call is stored (or refused).
    let (body, _held) = match read.await {
        Ok(read) => read,
        Err(crate::request_body::ReadError::TooLarge(_)) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("an asynchronous call carries at most {max} bytes"),
            );
        }
        Err(e @ crate::request_body::ReadError::Busy(_)) => return try_later(&e.to_string()),
        Err(e) => return json_error(e.status(), &e.to_string()),
    };
    let call = Call {
        id: id.clone(),
        function: name.to_owned(),
        namespace: namespace.to_owned(),
        method,
        path,
        headers: kept,
        body,
        callback,
        reply: None,
        accepted_at: now_ms(),
    };
    match queue.enqueue(call).await {
        Ok(()) => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::ACCEPTED;
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(X_CALL_ID, v);
            }
            resp
        }
        Err(QueueError::Exists(id)) => json_error(
            StatusCode::CONFLICT,
            &format!(
                "X-Call-Id {id:?} is taken by another call: call ids are unique (leave X-Call-Id out and the \
                 gateway makes one)"
            ),
        ),
        Err(e @ QueueError::Full(_)) => try_later(&e.to_string()),
        Err(QueueError::TooLarge(why)) => json_error(StatusCode::PAYLOAD_TOO_LARGE, &why),
        Err(e) => {
            tracing::error!(error = %e, "could not store an asynchronous call");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the call could not be stored")
        }
    }
}

/// 429 with `Retry-After: 1`.
fn try_later(message: &str) -> Response<Body> {
    let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, message);
    resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Runs stored calls until `stop`.
pub struct Dispatcher {
    gateway: Arc<Gateway>,
    queue: Arc<dyn Queue>,
    client: Client<CheckedConnector, Full<Bytes>>,
    running: Mutex<HashMap<FunctionRef, usize>>,
    /// Bytes of the calls being run ([`Entry::size`]): at most the
    /// gateway's `async_memory`, but one call always runs.
    in_memory: AtomicU64,
    freed: Notify,
}

impl Dispatcher {
    pub fn new(gateway: Arc<Gateway>, queue: Arc<dyn Queue>) -> Arc<Dispatcher> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let policy = Arc::new(gateway.config.callbacks.clone());
        let client = Client::builder(TokioExecutor::new()).build(CheckedConnector::new(policy, connector));
        Arc::new(Dispatcher {
            gateway,
            queue,
            client,
            running: Mutex::default(),
            in_memory: AtomicU64::new(0),
            freed: Notify::new(),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<FunctionRef, usize>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut turn = 0usize;
        loop {
            let mut functions = self.queue.ready_functions();
            if !functions.is_empty() {
                // Take turns: start from a different function each round.
                let n = functions.len();
                functions.rotate_left(turn % n);
                turn = turn.wrapping_add(1);
            }
            let mut started = true;
            while started {
                started = false;
                for f in &functions {
                    let total: usize = self.running().values().sum();
                    if total >= MAX_RUNNING {
                        break;
                    }
                    let limit = self.policies(&f.name, &f.namespace).retry.max_inflight;
                    if self.running().get(f).copied().unwrap_or(0) >= limit {
                        continue;
                    }
                    let held = self.in_memory.load(Ordering::Acquire);
                    let room = match held {
                        0 => u64::MAX,
                        held => (self.gateway.config.async_memory as u64).saturating_sub(held),
                    };
                    let Some(entry) = self.queue.take(f, room).await else { continue };
                    let size = entry.size();
                    self.in_memory.fetch_add(size, Ordering::AcqRel);
                    *self.running().entry(f.clone()).or_default() += 1;
                    started = true;
                    let (me, key) = (Arc::clone(&self), f.clone());
                    tokio::spawn(async move {
                        me.attempt(entry).await;
                        me.in_memory.fetch_sub(size, Ordering::AcqRel);
                        if let Some(n) = me.running().get_mut(&key) {
                            *n = n.saturating_sub(1);
                        }
                        me.freed.notify_one();
                    });
                }
            }
            let wait = match self.queue.next_due() {
                Some(due) => Duration::from_millis(due.saturating_sub(now_ms()).clamp(1, 1000)),
                None => Duration::from_secs(1),
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.queue.changed() => {}
                () = self.freed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The function's policies, as its route carries them (shared, not
    /// copied: the dispatcher reads them every round).
    fn policies(&self, name: &str, namespace: &str) -> Arc<Policies> {
        self.gateway.provider.routes().get(name, namespace).map(|r| r.policies()).unwrap_or_default()
    }

    /// One try of a call: the invocation (unless done before), then the
    /// callback; settled, retried later, or dead-lettered.
    async fn attempt(&self, entry: Entry) {
        let Entry { call, mut progress } = entry;
        let policies = self.policies(&call.function, &call.namespace);
        let policy = &policies.retry;
        if progress.result.is_none() {
            let admission = match self.gateway.quotas().admit(&call.namespace) {
                Ok(admission) => admission,
                // Not the function's failure: the call waits for its
                // namespace's quota, its attempts untouched.
                Err(refusal) => {
                    progress.not_before = now_ms() + refusal.retry_after.as_millis() as u64;
                    progress.last_error = Some(refusal.message);
                    self.settle(self.queue.retry(&call.id, progress).await, &call.id);
                    return;
                }
            };
            progress.attempts += 1;
            let outcome = self
                .gateway
                .invoker
                .invoke_call(&self.gateway.provider, &self.gateway.autoscaler, &call, admission)
                .await;
            if policy.retries_on(outcome.status) {
                let error = format!("the function answered {}", outcome.status);
                if progress.attempts >= policy.attempts {
                    self.dead_letter(call, progress.attempts, Some(outcome), Some(error)).await;
                    return;
                }
                let mut wait = policy.backoff(progress.attempts, fastrand::f64());
                if let Some(after) = retry_after(&outcome) {
                    wait = wait.max(after);
                }
                progress.not_before = now_ms() + wait.as_millis() as u64;
                progress.last_error = Some(error);
                self.settle(self.queue.retry(&call.id, progress).await, &call.id);
                return;
            }
            progress.result = Some(outcome);
        }
        let Some(result) = progress.result.clone() else { return };
        // Where the answer goes: a reply topic, a callback, or nowhere.
        if call.reply.is_some() || call.callback.is_some() {
            progress.callback_attempts += 1;
        }
        let delivered = match (&call.reply, &call.callback) {
            (Some(topic), _) => self
                .reply(topic, &call, &result)
                .await
                .map_err(|e| CallbackError::Failed(format!("publishing the answer to {topic} failed: {e}"))),
            (None, Some(url)) => self.callback(url, &call, &result).await.map_err(|e| match e {
                CallbackError::Failed(e) => CallbackError::Failed(format!("callback to {url} failed: {e}")),
                refused => refused,
            }),
            (None, None) => Ok(()),
        };
        match delivered {
            Ok(()) => {
                let done = self.queue.done(&call.id, progress.attempts, Some(result.status), None).await;
                self.settle(done, &call.id);
            }
            // Refused by the policy: trying again changes nothing. Kept as
            // a dead letter, with the answer, to replay once allowed.
            Err(CallbackError::Refused(why)) => {
                tracing::warn!(call = %call.id, "callback refused: {why}");
                let attempts = progress.attempts;
                self.dead_letter(call, attempts, Some(result), Some(format!("callback refused: {why}")))
                    .await;
            }
            Err(CallbackError::Failed(error)) => {
                tracing::warn!(call = %call.id, "{error}");
                if progress.callback_attempts >= policy.attempts {
                    let attempts = progress.attempts;
                    self.dead_letter(call, attempts, Some(result), Some(error)).await;
                    return;
                }
                let wait = policy.backoff(progress.callback_attempts, fastrand::f64());
                progress.not_before = now_ms() + wait.as_millis() as u64;
                progress.last_error = Some(error);
                self.settle(self.queue.retry(&call.id, progress).await, &call.id);
            }
        }
    }

    async fn dead_letter(&self, call: Call, attempts: u32, last: Option<Outcome>, error: Option<String>) {
        tracing::warn!(call = %call.id, function = %call.function, attempts, error = ?error, "dead-lettered");
        let id = call.id.clone();
        let letter = DeadLetter { call, attempts, last, error, failed_at: now_ms() };
        self.settle(self.queue.dead_letter(&id, letter).await, &id);
    }

    fn settle(&self, result: ferrofaas_queue::Result<()>, id: &str) {
        if let Err(e) = result {
            // The call stays pending on disk, to be run again after a restart.
            tracing::error!(call = %id, error = %e, "could not record an asynchronous call's progress");
        }
    }

    /// A triggered call's answer, published to its reply topic with the
    /// call's id, the function's name and status, and one more hop than
    /// the message that triggered it (so that a loop of replies ends).
    async fn reply(&self, topic: &str, call: &Call, result: &Outcome) -> Result<(), String> {
        let Some(schedules) = &self.gateway.schedules else {
            return Err("this gateway runs no connector".to_owned());
        };
        let header =
            |name: &str| call.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let hops = header(ferrofaas_triggers::X_HOPS).and_then(|h| h.parse::<u32>().ok()).unwrap_or(0);
        let mut headers = vec![
            ("X-Call-Id".to_owned(), call.id.clone()),
            ("X-Function-Name".to_owned(), call.function.clone()),
            ("X-Function-Status".to_owned(), result.status.to_string()),
            ("X-Duration-Seconds".to_owned(), format!("{:.6}", result.duration_secs)),
            (ferrofaas_triggers::X_HOPS.to_owned(), (hops + 1).to_string()),
        ];
        if let Some((_, ct)) = result.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            headers.push(("Content-Type".to_owned(), ct.clone()));
        }
        let via = header(ferrofaas_triggers::X_CONNECTOR).map(String::as_str);
        schedules.publish(topic, via, &headers, result.body.clone()).await
    }

    async fn callback(&self, url: &str, call: &Call, result: &Outcome) -> Result<(), CallbackError> {
        let mut req = Request::post(url)
            .header("x-call-id", &call.id)
            .header("x-function-status", result.status.to_string())
            .header("x-function-name", &call.function)
            .header("x-duration-seconds", format!("{:.6}", result.duration_secs));
        if let Some((_, ct)) = result.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req = req.header("content-type", ct);
        }
        let req =
            req.body(Full::new(result.body.clone())).map_err(|e| CallbackError::Failed(e.to_string()))?;
        match tokio::time::timeout(CALLBACK_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(CallbackError::Failed(format!("it answered {}", resp.status()))),
            Ok(Err(e)) => Err(match crate::callback::refusal_in(&e) {
                Some(refused) => CallbackError::Refused(refused.to_string()),
                None => CallbackError::Failed(ferrofaas_types::error_chain(&e)),
            }),
            Err(_) => Err(CallbackError::Failed(format!("no answer within {CALLBACK_TIMEOUT:?}"))),
        }
    }
}

enum CallbackError {
    /// Refused by the callback policy.
    Refused(String),
    /// It could not be delivered this time.
    Failed(String),
}

/// `Retry-After`: seconds, or an HTTP date (the wait until then); at most
/// an hour.
fn retry_after(outcome: &Outcome) -> Option<Duration> {
    let (_, v) = outcome.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?;
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = ferrofaas_types::time::parse_http_date(v)?;
            at.duration_since(std::time::SystemTime::now()).unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(headers: &[(&str, &str)]) -> Outcome {
        Outcome {
            status: 503,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Bytes::new(),
            duration_secs: 0.0,
        }
    }

    #[test]
    fn retry_after_in_seconds_at_most_an_hour() {
        assert_eq!(retry_after(&outcome(&[("Retry-After", "7")])), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&outcome(&[("retry-after", "999999")])), Some(Duration::from_secs(3600)));
        assert_eq!(retry_after(&outcome(&[("retry-after", "soon")])), None);
        let past = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(retry_after(&outcome(&[("retry-after", past)])), Some(Duration::ZERO));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let secs = soon.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Back to a calendar date through the RFC 3339 formatter.
        let rfc =
            ferrofaas_types::time::format(std::time::UNIX_EPOCH + Duration::from_secs(days * 86_400), false);
        let (y, m, d) = (&rfc[0..4], &rfc[5..7], &rfc[8..10]);
        let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            [m.parse::<usize>().unwrap() - 1];
        // 1970-01-01 was a Thursday (the weekday must be right).
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
        let date = format!(
            "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} GMT",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        let wait = retry_after(&outcome(&[("retry-after", &date)])).unwrap();
        assert!(
            (Duration::from_secs(110)..=Duration::from_secs(120)).contains(&wait),
            "{wait:?} from {date}"
        );
        assert_eq!(retry_after(&outcome(&[])), None);
    }
}
