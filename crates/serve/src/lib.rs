//! The HTTP/1 connection loop of ferrofaas's two servers (the gateway and
//! the watchdog): accept connections until told to stop, serve each with
//! upgrades (WebSockets), and on stop let each finish the request it is in,
//! then close it; the caller waits for them with the timeout it has.
//!
//! hyper-util's `GracefulShutdown` cannot watch connections served
//! `with_upgrades`, hence this small loop of its own.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The connections of one server.
pub struct Connections {
    builder: http1::Builder,
    tracker: TaskTracker,
    stopping: CancellationToken,
}

impl Connections {
    /// Connections whose request heads must arrive within `read_timeout`,
    /// kept alive between requests, closed once `stopping` is cancelled.
    pub fn new(read_timeout: Duration, stopping: CancellationToken) -> Connections {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(read_timeout).keep_alive(true);
        Connections { builder, tracker: TaskTracker::new(), stopping }
    }

    /// Accepts on `listener` until `stop` resolves (what it resolves to is
    /// returned), serving each connection with the service `serve` makes
    /// for its peer. An accept that fails (out of file descriptors and the
    /// like) is logged and retried after a short pause.
    pub async fn accept_until<T, S, B>(
        &self,
        listener: &TcpListener,
        mut serve: impl FnMut(SocketAddr) -> S,
        stop: impl Future<Output = T>,
    ) -> T
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                done = &mut stop => return done,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = self.builder.serve_connection(TokioIo::new(stream), serve(peer)).with_upgrades();
                    let stopping = self.stopping.clone();
                    self.tracker.spawn(async move {
                        tokio::pin!(conn);
                        // On stop: the request in progress is finished,
                        // then the connection is closed.
                        let ended = tokio::select! {
                            ended = conn.as_mut() => ended,
                            () = stopping.cancelled() => {
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
    }

    /// Asks every connection to close after its request in progress, and
    /// resolves when all have (the caller bounds the wait).
    pub async fn close(&self) {
        self.stopping.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofaas_testkit::call;
    use http::Method;
    use http_body_util::Full;

    /// A request in progress when the server stops is answered; the server
    /// then accepts nothing more and its connections close.
    #[tokio::test]
    async fn stops_accepting_then_finishes_what_it_serves() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections =
            std::sync::Arc::new(Connections::new(Duration::from_secs(5), CancellationToken::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<&'static str>();
        let stop_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(stop_tx)));
        let served = {
            let connections = std::sync::Arc::clone(&connections);
            tokio::spawn(async move {
                let serve = move |_peer| {
                    let stop_tx = std::sync::Arc::clone(&stop_tx);
                    hyper::service::service_fn(move |req: Request<Incoming>| {
                        let stop_tx = std::sync::Arc::clone(&stop_tx);
                        async move {
                            if req.uri().path() == "/slow" {
                                // Stop the server while this request runs.
                                if let Some(tx) = stop_tx.lock().unwrap().take() {
                                    let _ = tx.send("stopped");
                                }
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
                        }
                    })
                };
                let why = connections.accept_until(&listener, serve, async { stop_rx.await.unwrap() }).await;
                drop(listener);
                why
            })
        };
        assert_eq!(call(addr, Method::GET, "/", &[], "").await.body, "done");
        assert_eq!(call(addr, Method::GET, "/slow", &[], "").await.body, "done", "finished after the stop");
        assert_eq!(served.await.unwrap(), "stopped");
        tokio::time::timeout(Duration::from_secs(5), connections.close()).await.expect("connections closed");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
    }
}
