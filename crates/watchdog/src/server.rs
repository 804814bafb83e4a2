//! The watchdog's HTTP server: routing, readiness, request accounting and the
//! shutdown sequence.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::config::{Config, Mode};
use crate::fork::Forker;
use crate::metrics::Metrics;
use crate::oom;
use crate::process::{self, StderrSink, Upstream};
use crate::proxy::Proxy;
use crate::reply::error_response;
use crate::request::{Deadline, RequestGuard};
use crate::static_files::StaticFiles;
use crate::tunnel::Tunnels;

/// Header with the time the watchdog spent on a request, in seconds.
pub const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");
/// Request header that lowers `exec_timeout` for one request (a Go duration).
pub const X_TIMEOUT: HeaderName = HeaderName::from_static("x-timeout");

/// How long the `http` mode function gets to exit after SIGTERM before SIGKILL.
const UPSTREAM_STOP_GRACE: Duration = Duration::from_secs(5);

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// `http` mode: the function's server does not accept connections yet.
    Starting = 0,
    Ready = 1,
    /// Shutting down: still serving, no longer ready.
    Draining = 2,
    /// `http` mode: the function process has exited.
    Failed = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Starting,
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Failed,
        }
    }
}

enum Handler {
    Streaming(Forker),
    Serializing(Forker),
    Http(Proxy),
    Static(StaticFiles),
    #[cfg(feature = "wasm")]
    Wasm(crate::wasm::Wasm),
}

pub(crate) struct Watchdog {
    config: Config,
    metrics: Arc<Metrics>,
    phase: AtomicU8,
    phase_changed: Notify,
    handler: Handler,
    tunnels: Tunnels,
    /// `http` mode: how the function process ended, once it has.
    upstream_exit: std::sync::Mutex<Option<String>>,
}

impl Watchdog {
    /// Builds the watchdog for its mode. Call inside the Tokio runtime.
    fn new(config: Config) -> io::Result<Watchdog> {
        let forker = |config: &Config| -> io::Result<Forker> {
            Ok(Forker {
                argv: config.fprocess.clone(),
                stderr: StderrSink::new(config.prefix_logs)?,
                combine_output: config.combine_output,
                content_type: config.content_type.clone(),
                read_timeout: config.read_timeout,
            })
        };
        let (handler, phase) = match config.mode {
            Mode::Streaming => (Handler::Streaming(forker(&config)?), Phase::Ready),
            Mode::Serializing => (Handler::Serializing(forker(&config)?), Phase::Ready),
            Mode::Static => (Handler::Static(StaticFiles::new(config.static_path.clone())), Phase::Ready),
            #[cfg(feature = "wasm")]
            Mode::Wasm => (Handler::Wasm(crate::wasm::Wasm::new(&config)?), Phase::Ready),
            #[cfg(not(feature = "wasm"))]
            Mode::Wasm => {
                return Err(io::Error::other(
                    "this faas-watchdog was built without WebAssembly (the wasm feature)",
                ));
            }
            Mode::Http => {
                let upstream = config
                    .upstream
                    .clone()
                    .ok_or_else(|| io::Error::other("http mode needs upstream_url"))?;
                (
                    Handler::Http(Proxy::new(upstream, config.buffer_http, config.read_timeout)),
                    Phase::Starting,
                )
            }
        };
        Ok(Watchdog {
            config,
            metrics: Arc::default(),
            phase: AtomicU8::new(phase as u8),
            phase_changed: Notify::new(),
            handler,
            tunnels: Tunnels::default(),
            upstream_exit: std::sync::Mutex::new(None),
        })
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `to` if that is a step forward (Failed is final; Ready only
    /// follows Starting). Returns whether the phase changed.
    fn advance(&self, to: Phase) -> bool {
        let changed = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let allowed = match (Phase::from_u8(cur), to) {
                    (Phase::Starting, Phase::Ready) => true,
                    (Phase::Starting | Phase::Ready, Phase::Draining) => true,
                    (Phase::Failed, _) => false,
                    (_, Phase::Failed) => true,
                    _ => false,
                };
                allowed.then_some(to as u8)
            })
            .is_ok();
        if changed {
            match to {
                Phase::Ready => self.write_lock_file(),
                Phase::Draining | Phase::Failed => self.remove_lock_file(),
                Phase::Starting => {}
            }
            self.phase_changed.notify_waiters();
        }
        changed
    }

    fn write_lock_file(&self) {
        if let Some(path) = self.config.lock_file() {
            match std::fs::write(&path, b"") {
                Ok(()) => tracing::debug!(path = %path.display(), "wrote lock file"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the lock file")
                }
            }
        }
    }

    fn remove_lock_file(&self) {
        if let Some(path) = self.config.lock_file() {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/_/health" => self.health(),
            "/_/ready" => self.ready().await,
            "/_/metrics" => self.metrics_page(),
            _ => self.invoke(req).await,
        }
    }

    fn health(&self) -> Response<Body> {
        match self.phase() {
            Phase::Failed => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "the function process has exited")
            }
            _ => text_response(StatusCode::OK, "OK"),
        }
    }

    async fn ready(&self) -> Response<Body> {
        match self.phase() {
            Phase::Ready => {}
            Phase::Starting => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "the function is starting");
            }
            Phase::Draining => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "the watchdog is shutting down");
            }
            Phase::Failed => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "the function process has exited");
            }
        }
        let max = self.config.max_inflight;
        if max > 0 && self.metrics.in_flight() >= max as i64 {
            return error_response(StatusCode::TOO_MANY_REQUESTS, "max_inflight reached");
        }
        if let (Handler::Http(proxy), Some(path)) = (&self.handler, &self.config.ready_path) {
            return match proxy.probe(path, self.config.read_timeout).await {
                Ok(status) if status.is_success() => text_response(StatusCode::OK, "OK"),
                Ok(status) => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("the function's ready_path answered {}", status.as_u16()),
                ),
                Err(_) => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the function's ready_path did not answer",
                ),
            };
        }
        text_response(StatusCode::OK, "OK")
    }

    fn metrics_page(&self) -> Response<Body> {
        let mut resp = Response::new(Body::full(self.metrics.render()));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ferrofaas_types::prom::CONTENT_TYPE));
        resp
    }

    /// Runs the function for one request.
    async fn invoke(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (mut guard, in_flight) = RequestGuard::admit(&self.metrics, req.method().clone());
        let max = self.config.max_inflight;
        let (mut resp, switched) = if max > 0 && in_flight > max as i64 {
            let message = format!("too many requests in flight (max_inflight={max})");
            (error_response(StatusCode::TOO_MANY_REQUESTS, &message), None)
        } else {
            match self.exec_deadline(req.headers()) {
                Err(resp) => (resp, None),
                Ok(mut deadline) => match &self.handler {
                    Handler::Http(proxy) => match self.wait_until_started(&mut deadline).await {
                        Ok(()) => proxy.forward(req, deadline).await,
                        Err(resp) => (resp, None),
                    },
                    // Only a server of its own can speak WebSocket; other
                    // upgrades may be ignored (RFC 9110), and are.
                    _ if ferrofaas_types::hop::upgrade_requested(req.headers())
                        .is_some_and(|p| ferrofaas_types::hop::is_websocket(&p)) =>
                    {
                        let message = format!(
                            "WebSockets need a function in http mode (its own server); this one runs in {} mode",
                            self.config.mode.as_str()
                        );
                        (error_response(StatusCode::BAD_REQUEST, &message), None)
                    }
                    Handler::Streaming(forker) => (forker.streaming(req, deadline).await, None),
                    Handler::Serializing(forker) => (forker.serializing(req, deadline).await, None),
                    Handler::Static(files) => (files.serve(&req).await, None),
                    #[cfg(feature = "wasm")]
                    Handler::Wasm(wasm) => (wasm.serve(req, deadline).await, None),
                },
            }
        };
        guard.status = resp.status().as_u16();
        resp.headers_mut().insert(X_DURATION_SECONDS, duration_header(guard.elapsed()));
        match switched {
            // The request lasts as long as its tunnel.
            Some(switched) => self.tunnels.open(switched, guard),
            None => resp.body_mut().attach(guard),
        }
        resp
    }

    /// `exec_timeout`, lowered for this request by an `X-Timeout` header.
    fn exec_deadline(&self, headers: &HeaderMap) -> Result<Deadline, Response<Body>> {
        let Some(limit) = self.config.exec_timeout else {
            return Ok(Deadline::none());
        };
        let limit = match headers.get(X_TIMEOUT) {
            None => limit,
            Some(v) => match v.to_str().ok().and_then(ferrofaas_types::duration::parse) {
                Some(requested) if !requested.is_zero() => requested.min(limit),
                _ => {
                    return Err(error_response(
                        StatusCode::BAD_REQUEST,
                        "X-Timeout must be a positive duration such as 5s or 500ms",
                    ));
                }
            },
        };
        Ok(Deadline::after(limit))
    }

    /// `http` mode: holds a request that arrives while the function is still
    /// starting, rather than failing it.
    async fn wait_until_started(&self, deadline: &mut Deadline) -> Result<(), Response<Body>> {
        if matches!(self.phase(), Phase::Ready | Phase::Draining) {
            return Ok(());
        }
        loop {
            let notified = self.phase_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.phase() {
                Phase::Starting => {}
                Phase::Failed => {
                    return Err(error_response(StatusCode::BAD_GATEWAY, "the function process has exited"));
                }
                Phase::Ready | Phase::Draining => return Ok(()),
            }
            tokio::select! {
                () = notified => {}
                () = deadline.expired() => {
                    return Err(error_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the function did not start within exec_timeout",
                    ));
                }
            }
        }
    }
}

/// Seconds with microsecond precision (`0.001234`), without going through
/// floating-point formatting.
fn duration_header(d: Duration) -> HeaderValue {
    let micros = d.subsec_micros();
    let mut buf = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{}.{micros:06}", d.as_secs());
    let len = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("0"))
}

/// Serves the watchdog on `listener` until `shutdown` resolves, then drains.
///
/// `shutdown` resolves with how long to keep accepting requests while
/// reporting not ready (so that load balancers notice), after which the
/// listener is closed and in-flight requests get up to `write_timeout` to
/// finish. In `http` mode the function process is started here; call `run`
/// from the thread that lives as long as the watchdog (see
/// [`process::spawn_upstream`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = Duration>,
) -> io::Result<()> {
    oom::init();
    let watchdog = Arc::new(Watchdog::new(config)?);
    let config = &watchdog.config;
    let local = listener.local_addr()?;

    let upstream = match &watchdog.handler {
        Handler::Http(proxy) => {
            let process = process::spawn_upstream(&config.fprocess, config.prefix_logs).map_err(|e| {
                io::Error::new(e.kind(), format!("could not start {:?}: {e}", config.fprocess[0]))
            })?;
            let (stop_tx, stop_rx) = oneshot::channel();
            let supervisor = tokio::spawn(supervise_upstream(Arc::clone(&watchdog), process, stop_rx));
            tokio::spawn(await_upstream(Arc::clone(&watchdog), proxy.authority().to_owned()));
            Some((stop_tx, supervisor))
        }
        _ => {
            watchdog.write_lock_file();
            None
        }
    };

    tracing::info!(address = %local, mode = config.mode.as_str(), "listening");
    let metrics_server = metrics_listener.map(|l| tokio::spawn(serve_metrics(Arc::clone(&watchdog), l)));

    let connections = ferrofaas_serve::Connections::new(config.read_timeout, CancellationToken::new());
    let stop = async {
        let announce = shutdown.await;
        watchdog.advance(Phase::Draining);
        tracing::info!(keep_serving = ?announce, "shutting down: no longer ready");
        tokio::time::sleep(announce).await;
    };
    tokio::pin!(stop);
    // `http` mode: the function's server is the replica. When it exits, so
    // does the watchdog (non-zero), and whatever runs the replica sees it
    // exit, says why and replaces it, as for a container whose process died.
    let failed = async {
        loop {
            let notified = watchdog.phase_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if watchdog.phase() == Phase::Failed {
                return;
            }
            notified.await;
        }
    };
    tokio::pin!(failed);
    let serve = |_peer| {
        let wd = Arc::clone(&watchdog);
        service_fn(move |req| {
            let wd = Arc::clone(&wd);
            async move { Ok::<_, Infallible>(wd.handle(req).await) }
        })
    };
    let stopped = async {
        tokio::select! {
            biased;
            () = &mut stop => false,
            () = &mut failed => true,
        }
    };
    let function_exited = connections.accept_until(&listener, serve, stopped).await;
    drop(listener);

    let write_timeout = config.write_timeout;
    tracing::info!(timeout = ?write_timeout, "listener closed; finishing in-flight requests");
    let finished = async { tokio::join!(connections.close(), watchdog.tunnels.closed()) };
    if tokio::time::timeout(write_timeout, finished).await.is_err() {
        tracing::warn!("requests still in flight after write_timeout; closing them");
    }
    watchdog.tunnels.close().await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    if let Some((stop_tx, supervisor)) = upstream {
        let _ = stop_tx.send(());
        let _ = supervisor.await;
    }
    watchdog.remove_lock_file();
    if function_exited {
        let how = watchdog.upstream_exit.lock().unwrap_or_else(|e| e.into_inner()).take();
        return Err(io::Error::other(format!(
            "the function process exited ({})",
            how.as_deref().unwrap_or("status unknown")
        )));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Polls the upstream's port until it accepts a connection.
async fn await_upstream(watchdog: Arc<Watchdog>, authority: String) {
    let started = Instant::now();
    let mut delay = Duration::from_millis(1);
    while watchdog.phase() == Phase::Starting {
        if tokio::net::TcpStream::connect(authority.as_str()).await.is_ok() {
            if watchdog.advance(Phase::Ready) {
                tracing::info!(elapsed = ?started.elapsed(), upstream = %authority, "function is ready");
            }
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// Owns the `http` mode function process: notices when it exits, and stops it
/// (SIGTERM, then SIGKILL) when the watchdog stops.
async fn supervise_upstream(watchdog: Arc<Watchdog>, mut up: Upstream, stop: oneshot::Receiver<()>) {
    tokio::select! {
        status = up.child.wait() => {
            up.group.reaped();
            let how = match status {
                Ok(status) => match crate::oom::cause().filter(|_| std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL)) {
                    Some(cause) => {
                        tracing::error!(%status, "the function process was killed: {cause}");
                        format!("{status}: {cause}")
                    }
                    None => {
                        tracing::error!(%status, "the function process exited");
                        status.to_string()
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "lost track of the function process");
                    e.to_string()
                }
            };
            *watchdog.upstream_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(how);
            watchdog.advance(Phase::Failed);
            return;
        }
        _ = stop => {}
    }
    up.group.signal(libc::SIGTERM);
    match tokio::time::timeout(UPSTREAM_STOP_GRACE, up.child.wait()).await {
        Ok(_) => up.group.reaped(),
        Err(_) => {
            tracing::warn!("the function process ignored SIGTERM; killing it");
            up.group.kill();
            let _ = up.child.wait().await;
            up.group.reaped();
        }
    }
}

/// The optional second listener (`metrics_port`): `/metrics` only.
async fn serve_metrics(watchdog: Arc<Watchdog>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let wd = Arc::clone(&watchdog);
        let service = service_fn(move |req: Request<Incoming>| {
            let wd = Arc::clone(&wd);
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/metrics" => wd.metrics_page(),
                    _ => error_response(StatusCode::NOT_FOUND, "only /metrics is served on this port"),
                })
            }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}
