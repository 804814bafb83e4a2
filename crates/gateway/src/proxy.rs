//! `/function/<name>[.<namespace>][/path]`: the invocation path. One route
//! lookup (no lock), one replica picked (fewest in flight), the request
//! streamed to it over a pooled keep-alive connection and the response
//! streamed back, frame by frame as the replica sends it (server-sent
//! events arrive as they are written). An upgrade (a WebSocket) is passed on
//! to the replica, and if it switches, the two connections are joined
//! ([`crate::tunnel`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrofaas_provider::{FunctionRoute, Lease, Provider};
use http::header::{HOST, HeaderName, HeaderValue, UPGRADE};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::autoscale::Autoscaler;
use crate::body::Body;
use crate::error::json_error;
use crate::invocation::{
    BytesIn, InvocationGuard, Metering, X_CALL_ID, X_DURATION_SECONDS, X_START_TIME, function_path,
    new_call_id, target,
};
use crate::tunnel::{Switched, Tunnels};

/// A request body on its way to a replica, its bytes counted when usage is
/// metered.
struct Counted {
    inner: Incoming,
    count: Option<Arc<AtomicU64>>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(count), std::task::Poll::Ready(Some(Ok(frame)))) = (&this.count, &polled)
            && let Some(data) = frame.data_ref()
        {
            count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub struct Invoker {
    client: Client<HttpConnector, Counted>,
    /// For calls whose body is already in memory (asynchronous ones).
    buffered: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    replica_wait: Duration,
    pub(crate) tunnels: Tunnels,
    /// Usage metering, if it is on.
    pub(crate) metering: Option<Metering>,
    /// Quotas, admitted before a call is sent (empty: every call).
    pub(crate) quotas: Arc<crate::quota::Quotas>,
    /// Who may call private functions.
    pub(crate) access: Arc<crate::tokens::Access>,
}

impl Invoker {
    pub fn new(timeout: Duration, replica_wait: Duration, access: Arc<crate::tokens::Access>) -> Invoker {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector.clone());
        let buffered = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Invoker {
            client,
            buffered,
            timeout,
            replica_wait,
            tunnels: Tunnels::default(),
            metering: None,
            quotas: Arc::default(),
            access,
        }
    }

    /// An invocation: `/function/<name>[.<namespace>][/path][?query]`.
    pub async fn invoke(
        &self,
        provider: &Arc<dyn Provider>,
        autoscaler: &Arc<Autoscaler>,
        req: Request<Incoming>,
        forwarded_for: &HeaderValue,
    ) -> Response<Body> {
        let pq = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let (name, namespace, tail) = target(pq.strip_prefix("/function/").unwrap_or(""));
        let Some(route) = provider.routes().get(name, namespace) else {
            return no_such_function(name, namespace);
        };
        let upstream_pq = match function_path(tail) {
            Cow::Borrowed("/") => Ok(PathAndQuery::from_static("/")),
            Cow::Borrowed(path) => PathAndQuery::try_from(path),
            Cow::Owned(path) => PathAndQuery::try_from(path),
        };
        if route.is_private()
            && let Err(resp) = self.check_private(&route, req.headers())
        {
            return resp;
        }
        let admission = match self.quotas.admit(namespace) {
            Ok(admission) => admission,
            Err(refusal) => return over_quota(&refusal),
        };
        let mut guard = InvocationGuard::new(
            route,
            Instant::now(),
            self.metering.as_ref(),
            ferrofaas_usage::Trigger::Http,
        );
        guard.admission = admission;
        let (mut resp, switched) = match upstream_pq {
            Ok(pq) => self.forward(provider, autoscaler, &mut guard, req, pq, forwarded_for).await,
            Err(_) => (json_error(StatusCode::BAD_REQUEST, "invalid path"), None),
        };
        guard.code = resp.status().as_u16();
        match switched {
            // The invocation lasts as long as its tunnel, not its (empty)
            // 101 response.
            Some(switched) => self.tunnels.open(switched, guard),
            None => resp.body_mut().attach(guard),
        }
        resp
    }

    async fn forward(
        &self,
        provider: &Arc<dyn Provider>,
        autoscaler: &Arc<Autoscaler>,
        guard: &mut InvocationGuard,
        req: Request<Incoming>,
        pq: PathAndQuery,
        forwarded_for: &HeaderValue,
    ) -> (Response<Body>, Option<Switched>) {
        let lease = match guard.route.pick() {
            Some(lease) => lease,
            // Replicas are on their way (just deployed, restarting, scaling
            // up), or the function is at zero and this request starts it:
            // hold the request rather than fail it.
            None => match self.wait_for_replica(provider, autoscaler, guard).await {
                Ok(lease) => lease,
                Err(resp) => return (resp, None),
            },
        };
        let (mut parts, body) = req.into_parts();
        let upgrade = ferrofaas_types::hop::upgrade_requested(&parts.headers);
        // hyper hands over the connection only for a request that asked.
        let client_upgrade = upgrade.as_ref().and_then(|_| parts.extensions.remove::<OnUpgrade>());
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(lease.endpoint().authority.clone());
        uri.path_and_query = Some(pq);
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(_) => return (json_error(StatusCode::BAD_REQUEST, "invalid path"), None),
        };
        parts.version = Version::HTTP_11;
        let headers = &mut parts.headers;
        ferrofaas_types::hop::strip(headers);
        // The platform's credentials (the admin's, a token: a private
        // function's callers send them) are not the function's to see, or
        // use. Other Authorization headers are the function's own.
        if let Some(v) = headers.get(http::header::AUTHORIZATION)
            && self.access.is_platform_credential(v)
        {
            headers.remove(http::header::AUTHORIZATION);
        }
        if let Some(protocol) = &upgrade {
            ferrofaas_types::hop::keep_upgrade(headers, protocol.clone());
        }
        let call_id = match headers.get(&X_CALL_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_call_id();
                headers.insert(X_CALL_ID, id.clone());
                id
            }
        };
        let start_time = match headers.get(&X_START_TIME) {
            Some(t) => t.clone(),
            None => {
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                let t = HeaderValue::from(nanos as u64);
                headers.insert(X_START_TIME, t.clone());
                t
            }
        };
        append_forwarded_for(headers, forwarded_for);
        if let Some(host) = headers.get(HOST).cloned() {
            headers.insert(X_FORWARDED_HOST, host);
        }
        // A body of known length is its length; only one that is streamed
        // without one is counted as it goes.
        let known = http_body::Body::size_hint(&body).exact();
        let count = guard.usage.as_mut().and_then(|m| {
            m.call_id = Some(call_id.clone());
            if let Some(n) = known {
                m.bytes_in = BytesIn::Known(n);
                return None;
            }
            let count = Arc::new(AtomicU64::new(0));
            m.bytes_in = BytesIn::Counted(Arc::clone(&count));
            Some(count)
        });
        let lease = guard.lease.insert(lease);

        let request = self.client.request(Request::from_parts(parts, Counted { inner: body, count }));
        // A replica the provider sees exit is not waited for (the address of
        // a dead container may never answer).
        let endpoint = lease.endpoint();
        let result = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                biased;
                resp = request => Some(resp),
                () = endpoint.gone() => None,
            }
        })
        .await;
        let function = &guard.route.function;
        let mut switched = None;
        let mut resp = match result {
            Ok(None) => {
                let instance = &lease.endpoint().instance;
                tracing::warn!(%function, %instance, "replica exited with a request in flight");
                json_error(
                    StatusCode::BAD_GATEWAY,
                    &format!("function {}: replica {instance} exited before it answered", function.name),
                )
            }
            Ok(Some(Ok(resp))) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let (mut parts, _) = resp.into_parts();
                let upstream = parts.extensions.remove::<OnUpgrade>();
                match (upstream, client_upgrade, upgrade) {
                    (Some(upstream), Some(client), Some(requested)) => {
                        let protocol = parts.headers.get(UPGRADE).cloned().unwrap_or(requested);
                        ferrofaas_types::hop::strip(&mut parts.headers);
                        ferrofaas_types::hop::keep_upgrade(&mut parts.headers, protocol);
                        switched = Some(Switched { client, upstream });
                        Response::from_parts(parts, Body::empty())
                    }
                    // A switch nobody asked for would hand the client's
                    // connection to whatever the replica sends next.
                    _ => {
                        let instance = &lease.endpoint().instance;
                        tracing::warn!(%function, %instance, "replica switched protocols unasked");
                        json_error(
                            StatusCode::BAD_GATEWAY,
                            &format!(
                                "function {}: replica {instance} answered 101 Switching Protocols to a \
                                 request that asked for no upgrade",
                                function.name
                            ),
                        )
                    }
                }
            }
            Ok(Some(Ok(resp))) => {
                let (mut parts, incoming) = resp.into_parts();
                ferrofaas_types::hop::strip(&mut parts.headers);
                Response::from_parts(parts, Body::proxied(incoming))
            }
            Ok(Some(Err(e))) => {
                let instance = &lease.endpoint().instance;
                tracing::warn!(%function, %instance, error = %ferrofaas_types::error_chain(&e), "replica failed");
                json_error(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "function {}: replica {instance} did not answer ({})",
                        function.name,
                        short_reason(&e)
                    ),
                )
            }
            Err(_) => {
                let instance = &lease.endpoint().instance;
                tracing::warn!(%function, %instance, timeout = ?self.timeout, "replica timed out");
                json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("function {} did not answer within {:?}", function.name, self.timeout),
                )
            }
        };
        // As OpenFaaS's gateway answers: when the call started (ns since the
        // epoch) and how long the function took to answer.
        let duration = format!("{:.6}", guard.start.elapsed().as_secs_f64());
        let headers = resp.headers_mut();
        headers.insert(X_CALL_ID, call_id);
        headers.insert(X_START_TIME, start_time);
        if let Ok(v) = HeaderValue::from_str(&duration) {
            headers.insert(X_DURATION_SECONDS, v);
        }
        (resp, switched)
    }
}

impl Invoker {
    /// Refuses a call of a private function without a token of its
    /// namespace at role invoke (or the admin's credentials).
    pub(crate) fn check_private(
        &self,
        route: &FunctionRoute,
        headers: &http::HeaderMap,
    ) -> Result<(), Response<Body>> {
        let f = &route.function;
        let caller = self.access.caller(headers.get(http::header::AUTHORIZATION));
        match caller {
            Some(c) if c.may(crate::tokens::Role::Invoke, &f.namespace) => Ok(()),
            Some(_) => Err(json_error(
                StatusCode::FORBIDDEN,
                &format!(
                    "function {} is private: this token is not for namespace {} at role invoke",
                    f.name, f.namespace
                ),
            )),
            None => {
                let mut resp = json_error(
                    StatusCode::UNAUTHORIZED,
                    &format!(
                        "function {} is private: call it with a token of namespace {} (Authorization: Bearer)",
                        f.name, f.namespace
                    ),
                );
                resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                Err(resp)
            }
        }
    }

    /// A stored (asynchronous) call, through the same path as an invocation:
    /// its function's least-loaded replica, started if at zero, counted in
    /// the metrics. Failures to reach the function are answers too (502,
    /// 503, 504), so that the caller can retry them.
    pub async fn invoke_call(
        &self,
        provider: &Arc<dyn Provider>,
        autoscaler: &Arc<Autoscaler>,
        call: &ferrofaas_queue::Call,
        admission: Option<crate::quota::Admission>,
    ) -> ferrofaas_queue::Outcome {
        let started = Instant::now();
        let outcome = |status: StatusCode, message: String| ferrofaas_queue::Outcome {
            status: status.as_u16(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::json!({ "message": message }).to_string()),
            duration_secs: started.elapsed().as_secs_f64(),
        };
        let Some(route) = provider.routes().get(&call.function, &call.namespace) else {
            return outcome(StatusCode::NOT_FOUND, format!("function {} no longer exists", call.function));
        };
        let trigger = ferrofaas_triggers::event_connector(&call.id)
            .map_or(ferrofaas_usage::Trigger::Async, ferrofaas_usage::Trigger::of_connector);
        let mut guard = InvocationGuard::new(Arc::clone(&route), started, self.metering.as_ref(), trigger);
        guard.admission = admission;
        if let Some(m) = &mut guard.usage {
            m.call_id = HeaderValue::from_str(&call.id).ok();
            m.bytes_in = BytesIn::Known(call.body.len() as u64);
        }
        let lease = match route.pick() {
            Some(lease) => lease,
            None => match self.wait_for_replica(provider, autoscaler, &mut guard).await {
                Ok(lease) => lease,
                Err(resp) => {
                    guard.code = resp.status().as_u16();
                    return outcome(
                        resp.status(),
                        format!("function {} has no ready replica", call.function),
                    );
                }
            },
        };
        let mut req = Request::builder().method(call.method.as_str()).uri(format!(
            "http://{}{}",
            lease.endpoint().authority,
            call.path
        ));
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let req = req
            .header(X_CALL_ID, call.id.as_str())
            .header(X_START_TIME, nanos.to_string())
            .body(Full::new(call.body.clone()));
        let req = match req {
            Ok(req) => req,
            Err(e) => {
                guard.code = 400;
                return outcome(
                    StatusCode::BAD_REQUEST,
                    format!("the stored call is not a valid request: {e}"),
                );
            }
        };
        let lease = guard.lease.insert(lease);
        let endpoint = lease.endpoint();
        let result = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                biased;
                resp = self.buffered.request(req) => Some(resp),
                () = endpoint.gone() => None,
            }
        })
        .await;
        let (status, headers, body) = match result {
            Ok(None) => {
                let o = outcome(StatusCode::BAD_GATEWAY, "the replica exited before it answered".to_owned());
                (StatusCode::BAD_GATEWAY, o.headers, o.body)
            }
            Ok(Some(Ok(resp))) => {
                let (parts, body) = resp.into_parts();
                let body = read_result(body).await;
                let headers = parts
                    .headers
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                    .collect();
                (parts.status, headers, body)
            }
            Ok(Some(Err(e))) => {
                let o = outcome(
                    StatusCode::BAD_GATEWAY,
                    format!("the replica did not answer ({})", short_reason(&e)),
                );
                (StatusCode::BAD_GATEWAY, o.headers, o.body)
            }
            Err(_) => {
                let o = outcome(StatusCode::GATEWAY_TIMEOUT, format!("no answer within {:?}", self.timeout));
                (StatusCode::GATEWAY_TIMEOUT, o.headers, o.body)
            }
        };
        guard.code = status.as_u16();
        guard.sent(body.len());
        ferrofaas_queue::Outcome {
            status: status.as_u16(),
            headers,
            body,
            duration_secs: started.elapsed().as_secs_f64(),
        }
    }

    /// Waits for a ready replica of the invocation's function, starting it
    /// if it is at zero; a clear error if none comes (504 if the wait ran
    /// out, 503 if the function could not be started or went away). The
    /// wait is counted in the invocation (its statistics, its usage).
    async fn wait_for_replica(
        &self,
        provider: &Arc<dyn Provider>,
        autoscaler: &Arc<Autoscaler>,
        guard: &mut InvocationGuard,
    ) -> Result<Lease, Response<Body>> {
        let started = Instant::now();
        let route = &Arc::clone(&guard.route);
        let name = &route.function.name;
        let mut wake = (route.desired() == 0).then(|| autoscaler.wake(provider, route));
        let failed = async {
            match &mut wake {
                Some(outcome) => loop {
                    if let Some(Err(e)) = &*outcome.borrow_and_update() {
                        return e.clone();
                    }
                    if outcome.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            lease = route.wait_pick(self.replica_wait) => lease.ok_or(None),
            e = failed => Err(Some(e)),
        };
        guard.waited(started.elapsed());
        match result {
            Ok(lease) => Ok(lease),
            Err(Some(e)) => Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("function {name} could not be started from zero replicas: {e}"),
            )),
            Err(None) if route.is_removed() => {
                Err(json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("function {name} was removed")))
            }
            Err(None) => Err(json_error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "function {name} has no ready replica: none became ready within {:?}",
                    self.replica_wait
                ),
            )),
        }
    }
}

/// 429 for a namespace at its quota, with `Retry-After`.
pub(crate) fn over_quota(refusal: &crate::quota::Refusal) -> Response<Body> {
    let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, &refusal.message);
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(refusal.retry_after.as_secs().max(1)));
    resp
}

pub(crate) fn no_such_function(name: &str, namespace: &str) -> Response<Body> {
    json_error(StatusCode::NOT_FOUND, &format!("function {name:?} not found in namespace {namespace:?}"))
}

fn append_forwarded_for(headers: &mut http::HeaderMap, peer: &HeaderValue) {
    let value = match headers.get(&X_FORWARDED_FOR) {
        Some(existing) => {
            let mut v = existing.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| peer.clone())
        }
        None => peer.clone(),
    };
    headers.insert(X_FORWARDED_FOR, value);
}

fn short_reason(e: &hyper_util::client::legacy::Error) -> &'static str {
    if e.is_connect() { "connection refused" } else { "connection closed" }
}

/// Largest function answer kept for a callback or a dead letter.
const MAX_RESULT_BODY: usize = 16 << 20;

/// Reads a function's answer for keeping (up to [`MAX_RESULT_BODY`]).
pub async fn read_result(body: Incoming) -> Bytes {
    match Limited::new(body, MAX_RESULT_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::from_static(b"(the answer was too large or broke off)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends() {
        let mut h = http::HeaderMap::new();
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"));
        append_forwarded_for(&mut h, &HeaderValue::from_static("127.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
    }
}
