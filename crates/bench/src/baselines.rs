//! The baselines: the least code that does each job, written the obvious way
//! with the same libraries (Tokio, hyper). What ferrofaas adds is measured
//! against these, in the same run, on the same machine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves every connection of `listener` with `handler`.
async fn serve<F, Fut>(listener: TcpListener, handler: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// (a) A minimal HTTP server: "Hello, world!" for any request.
pub async fn hello(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, |req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")))
    })
    .await
}

/// (b) A bare reverse proxy: one pooled hyper client, the request's path sent
/// to `upstream`, the response returned as it comes.
pub async fn proxy(addr: SocketAddr, upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{pq}").parse().map_err(|_| "bad uri")?;
                    *req.uri_mut() = uri;
                    client.request(req).await.map_err(|_| "upstream failed")
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// (f) A process per request: `cat` started, the body written to its stdin,
/// its stdout returned.
pub async fn spawn_cat(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, |req: Request<Incoming>| async move {
        match run_cat(req).await {
            Ok(out) => Response::new(Full::new(out)),
            Err(e) => {
                let mut resp = Response::new(Full::new(Bytes::from(e.to_string())));
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                resp
            }
        }
    })
    .await
}

async fn run_cat(req: Request<Incoming>) -> anyhow::Result<Bytes> {
    let body = req.into_body().collect().await?.to_bytes();
    let mut child =
        tokio::process::Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let write = async move {
        let _ = stdin.write_all(&body).await;
    };
    let mut out = Vec::new();
    let ((), read) = tokio::join!(write, stdout.read_to_end(&mut out));
    read?;
    child.wait().await?;
    Ok(Bytes::from(out))
}
