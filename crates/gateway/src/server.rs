//! The gateway's HTTP server: the top of routing (invocations, the API
//! behind auth, the open pages), and the serve-then-drain loop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use crate::api;
use crate::body::Body;
use crate::error::{ApiError, json_error};
use crate::gateway::Gateway;

impl Gateway {
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
            let Some(caller) = self.access().caller(req.headers().get(AUTHORIZATION)) else {
                let mut resp = json_error(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: use the gateway's admin credentials (basic auth) or an API token \
                     (Authorization: Bearer)",
                );
                // Browsers answer a Basic challenge with their own password
                // prompt, even to a script's request: the UI's requests say
                // they come from a script, and get no challenge.
                if !req.headers().contains_key("x-requested-with") {
                    resp.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ferrofaas\""));
                }
                return resp;
            };
            if let Err(e) = check_write(&req) {
                return e.into_response();
            }
            return match api::routes::handle(self, req, caller).await {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            };
        }
        // The open pages, each with the methods it takes (`Allow` from them).
        let (methods, page): (&[Method], Page) = match path {
            "/healthz" => (&[Method::GET, Method::HEAD], Page::Health),
            "/metrics" => (&[Method::GET], Page::Metrics),
            p if p == "/" || p == "/ui" || p.starts_with("/ui/") => (&[Method::GET, Method::HEAD], Page::Ui),
            _ => return json_error(StatusCode::NOT_FOUND, &format!("no route for {path}")),
        };
        if !methods.contains(req.method()) {
            let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
            return ApiError::method_not_allowed(&allow.join(", ")).into_response();
        }
        match page {
            Page::Health => text(StatusCode::OK, "OK"),
            Page::Ui => crate::ui::serve(path),
            Page::Metrics => {
                let queue = match &self.queue {
                    Some(queue) => Some(queue.stats().await),
                    None => None,
                };
                let triggers = self.schedules.as_ref().map(|s| s.all_stats()).unwrap_or_default();
                let topics = self.schedules.as_ref().map(|s| s.topic_stats()).unwrap_or_default();
                let meter = self.meter().map(|m| m.stats());
                let text = crate::metrics::render(&*self.provider, queue, triggers, topics, meter);
                let mut resp = Response::new(Body::full(text));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(ferrofaas_types::prom::CONTENT_TYPE));
                resp
            }
        }
    }
}

/// The pages anyone may read.
enum Page {
    Health,
    Ui,
    Metrics,
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

/// Serves the gateway on `listener` until `shutdown` resolves, then stops
/// accepting, ends log streams and gives open requests `drain_timeout`.
pub async fn run(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let connections =
        ferrofaas_serve::Connections::new(gateway.config.read_timeout, gateway.shutdown.clone());
    tokio::spawn(
        Arc::clone(&gateway.autoscaler).run(Arc::clone(&gateway.provider), gateway.shutdown.clone()),
    );
    tokio::spawn(Arc::clone(&gateway.history).run(Arc::clone(&gateway.provider), gateway.shutdown.clone()));
    crate::api::usage::restore_quotas(&gateway).await;
    tokio::spawn(crate::api::usage::follow_quotas(Arc::clone(&gateway), gateway.shutdown.clone()));
    if let Some(meter) = gateway.meter() {
        tokio::spawn(crate::cpu::run(Arc::clone(&gateway), Arc::clone(meter), gateway.shutdown.clone()));
    }
    if let Some(queue) = &gateway.queue {
        let dispatcher = crate::dispatch::Dispatcher::new(Arc::clone(&gateway), Arc::clone(queue));
        tokio::spawn(dispatcher.run(gateway.shutdown.clone()));
    }
    if let Some(schedules) = &gateway.schedules {
        schedules.start(gateway.shutdown.clone());
    }
    let serve = |peer: std::net::SocketAddr| {
        let gw = Arc::clone(&gateway);
        let peer =
            HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        service_fn(move |req| {
            let gw = Arc::clone(&gw);
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(gw.handle(req, &peer).await) }
        })
    };
    connections.accept_until(&listener, serve, shutdown).await;
    drop(listener);
    gateway.shutdown.cancel();
    let drain = gateway.config.drain_timeout;
    let requests = async {
        if tokio::time::timeout(drain, connections.close()).await.is_err() {
            tracing::warn!("requests still open after the drain timeout; closing them");
        }
    };
    tokio::join!(requests, gateway.invoker.tunnels.close(drain));
    Ok(())
}
