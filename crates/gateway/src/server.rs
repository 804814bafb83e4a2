//! The gateway's HTTP server: routing, auth, and the serve-then-drain loop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;

use ferrofaas_provider::Provider;
use http::header::{AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, Query};
use crate::autoscale::Autoscaler;
use crate::body::Body;
use crate::config::GatewayConfig;
use crate::error::{ApiError, json_error};
use crate::history::History;
use crate::proxy::Invoker;
use ferrofaas_queue::Queue;

/// The chart's resolution and span: a point every 2 s, 10 minutes of them.
const HISTORY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
const HISTORY_POINTS: usize = 300;

pub struct Gateway {
    pub provider: Arc<dyn Provider>,
    pub config: GatewayConfig,
    pub autoscaler: Arc<Autoscaler>,
    /// The last minutes of each function's traffic (the UI's chart).
    pub history: Arc<History>,
    /// Where asynchronous calls are stored; `None`: `/async-function/` is off.
    pub queue: Option<Arc<dyn Queue>>,
    pub(crate) invoker: Invoker,
    /// Memory of the asynchronous bodies being received.
    pub(crate) receiving: crate::request_body::Budget,
    /// Cancelled when the gateway stops: ends endless responses (log follows).
    pub shutdown: CancellationToken,
}

impl Gateway {
    pub fn new(provider: Arc<dyn Provider>, config: GatewayConfig) -> Gateway {
        Gateway {
            invoker: Invoker::new(config.upstream_timeout, config.replica_wait),
            autoscaler: Arc::new(Autoscaler::new(config.autoscale, config.autoscale_interval)),
            history: Arc::new(History::new(HISTORY_INTERVAL, HISTORY_POINTS)),
            queue: None,
            receiving: crate::request_body::Budget::new(config.async_memory.max(config.max_async_body)),
            provider,
            config,
            shutdown: CancellationToken::new(),
        }
    }

    /// With asynchronous invocations stored in `queue` (and run by the
    /// dispatcher that [`run`] starts).
    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Gateway {
        self.queue = Some(queue);
        self
    }

    /// `forwarded_for` is the peer's address as a header value, made once
    /// per connection.
    pub async fn handle(&self, req: Request<Incoming>, forwarded_for: &HeaderValue) -> Response<Body> {
        let path = req.uri().path();
        if path.starts_with("/function/") {
            let mut resp = self.invoker.invoke(&self.provider, &self.autoscaler, req, forwarded_for).await;
            // A function's page runs in an origin of its own (opaque), not
            // the gateway's: its scripts cannot read the UI's storage (the
            // admin's credentials) nor write to the API as the UI.
            resp.headers_mut().append(CONTENT_SECURITY_POLICY, FUNCTION_SANDBOX);
            return resp;
        }
        if path.starts_with("/async-function/") {
            return match &self.queue {
                Some(queue) => crate::dispatch::accept(self, queue, req).await,
                None => json_error(
                    StatusCode::NOT_FOUND,
                    "asynchronous invocations are not enabled on this gateway",
                ),
            };
        }
        if path == "/system" || path.starts_with("/system/") {
            if let Some(creds) = &self.config.auth
                && !creds.check(req.headers().get(AUTHORIZATION))
            {
                let mut resp = json_error(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: use the gateway's admin credentials (basic auth)",
                );
                // Browsers answer a Basic challenge with their own password
                // prompt, even to a script's request: the UI's requests say
                // they come from a script, and get no challenge.
                if !req.headers().contains_key("x-requested-with") {
                    resp.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ferrofaas\""));
                }
                return resp;
            }
            if let Err(e) = check_write(&req) {
                return e.into_response();
            }
            return match self.system(req).await {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            };
        }
        match (req.method(), path) {
            (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "OK"),
            (&Method::GET | &Method::HEAD, p) if p == "/" || p == "/ui" || p.starts_with("/ui/") => {
                crate::ui::serve(p)
            }
            (&Method::GET, "/metrics") => {
                let mut text = crate::metrics::render(&*self.provider, &self.autoscaler);
                if let Some(queue) = &self.queue {
                    crate::metrics::render_queue(&mut text, &queue.stats().await);
                }
                let mut resp = Response::new(Body::full(text));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(ferrofaas_types::prom::CONTENT_TYPE));
                resp
            }
            (_, "/healthz" | "/metrics") => method_not_allowed("GET"),
            _ => json_error(StatusCode::NOT_FOUND, &format!("no route for {path}")),
        }
    }

    async fn system(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_owned();
        let query = Query::parse(req.uri().query())?;
        let method = req.method().clone();
        match path.trim_end_matches('/') {
            "/system/info" => match method {
                Method::GET => Ok(api::system::info(self)),
                _ => Ok(method_not_allowed("GET")),
            },
            "/system/namespaces" => match method {
                Method::GET => api::system::namespaces(self).await,
                _ => Ok(method_not_allowed("GET")),
            },
            "/system/functions" => match method {
                Method::GET => api::functions::list(self, &query).await,
                Method::POST => api::functions::deploy(self, req, true).await,
                Method::PUT => api::functions::deploy(self, req, false).await,
                Method::DELETE => api::functions::delete(self, req).await,
                _ => Ok(method_not_allowed("GET, POST, PUT, DELETE")),
            },
            "/system/secrets" => match method {
                Method::GET => api::secrets::list(self, &query).await,
                Method::POST => api::secrets::create(self, req).await,
                Method::PUT => api::secrets::update(self, req).await,
                Method::DELETE => api::secrets::delete(self, req).await,
                _ => Ok(method_not_allowed("GET, POST, PUT, DELETE")),
            },
            "/system/logs" => match method {
                Method::GET => api::logs::get(self, &query).await,
                _ => Ok(method_not_allowed("GET")),
            },
            "/system/async/dead-letters" => match method {
                Method::GET => api::asynchronous::dead_letters(self).await,
                _ => Ok(method_not_allowed("GET")),
            },
            "/system/alert" => match method {
                Method::POST => api::alert::post(self, req).await,
                _ => Ok(method_not_allowed("POST")),
            },
            "/system/bundles" => match method {
                Method::GET => api::bundles::list(self).await,
                Method::POST | Method::PUT => api::bundles::push(self, req).await,
                _ => Ok(method_not_allowed("GET, POST")),
            },
            p => {
                if let Some(name) = p.strip_prefix("/system/function/").filter(|n| !n.contains('/')) {
                    return match method {
                        Method::GET => api::functions::get(self, name, &query).await,
                        _ => Ok(method_not_allowed("GET")),
                    };
                }
                if let Some(name) = p.strip_prefix("/system/function-history/").filter(|n| !n.contains('/')) {
                    return match method {
                        Method::GET => api::functions::history(self, name, &query),
                        _ => Ok(method_not_allowed("GET")),
                    };
                }
                if let Some(rest) = p.strip_prefix("/system/async/") {
                    return api::asynchronous::route(self, &method, rest).await;
                }
                if let Some(name) = p.strip_prefix("/system/scale-function/").filter(|n| !n.contains('/')) {
                    return match method {
                        Method::POST => api::functions::scale(self, name, req).await,
                        _ => Ok(method_not_allowed("POST")),
                    };
                }
                Err(ApiError::not_found(format!("no route for {p}")))
            }
        }
    }
}

/// What every `/function/` response carries: a sandbox without
/// `allow-same-origin`, so that a page a function serves (its scripts,
/// forms and popups work) is of an opaque origin.
const FUNCTION_SANDBOX: HeaderValue =
    HeaderValue::from_static("sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads");

/// A write to the API (any method but GET, HEAD, OPTIONS) comes from this
/// origin or from no browser at all, with the content type its body has:
/// a page of another site (or a function's page, whose origin is opaque)
/// can make a browser send a form (`text/plain`, `multipart/form-data`,
/// urlencoded) with credentials the browser holds, but not JSON, and not
/// from this origin.
fn check_write(req: &Request<Incoming>) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let headers = req.headers();
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "writes to the API come from the gateway's own origin (or not from a browser): this one is \
             cross-origin",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err(forbidden());
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, a)| a);
        let hosts = [headers.get(http::header::HOST), headers.get("x-forwarded-host")];
        let same = authority
            .is_some_and(|a| hosts.iter().flatten().any(|h| h.as_bytes().eq_ignore_ascii_case(a.as_bytes())));
        if !same {
            return Err(forbidden());
        }
    }
    let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return Ok(());
    }
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let (ok, want) = if req.uri().path().trim_end_matches('/') == "/system/bundles" {
        let archive = matches!(
            essence.as_deref(),
            None | Some(
                "application/x-tar" | "application/gzip" | "application/x-gzip" | "application/octet-stream"
            )
        );
        (archive, "a tar archive (no Content-Type, or application/x-tar, application/gzip)")
    } else {
        (essence.as_deref() == Some("application/json"), "Content-Type: application/json")
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "this body is {}: the API takes {want}",
            essence.map_or_else(|| "without a Content-Type".to_owned(), |e| format!("{e:?}"))
        ),
    ))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp =
        json_error(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed here; allowed: {allow}"));
    resp.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Serves the gateway on `listener` until `shutdown` resolves, then stops
/// accepting, ends log streams and gives open requests `drain_timeout`.
pub async fn run(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(gateway.config.read_timeout).keep_alive(true);
    tokio::spawn(
        Arc::clone(&gateway.autoscaler).run(Arc::clone(&gateway.provider), gateway.shutdown.clone()),
    );
    tokio::spawn(Arc::clone(&gateway.history).run(Arc::clone(&gateway.provider), gateway.shutdown.clone()));
    if let Some(queue) = &gateway.queue {
        let dispatcher = crate::dispatch::Dispatcher::new(Arc::clone(&gateway), Arc::clone(queue));
        tokio::spawn(dispatcher.run(gateway.shutdown.clone()));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = Arc::clone(&gateway);
                let peer = HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"));
                let service = service_fn(move |req| {
                    let gw = Arc::clone(&gw);
                    let peer = peer.clone();
                    async move { Ok::<_, Infallible>(gw.handle(req, &peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
                let stop = gateway.shutdown.clone();
                connections.spawn(async move {
                    tokio::pin!(conn);
                    // When the gateway stops: the request in progress is
                    // finished, then the connection is closed.
                    let ended = tokio::select! {
                        ended = conn.as_mut() => ended,
                        () = stop.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    gateway.shutdown.cancel();
    let drain = gateway.config.drain_timeout;
    let requests = async {
        connections.close();
        if tokio::time::timeout(drain, connections.wait()).await.is_err() {
            tracing::warn!("requests still open after the drain timeout; closing them");
        }
    };
    tokio::join!(requests, gateway.invoker.tunnels.close(drain));
    Ok(())
}
