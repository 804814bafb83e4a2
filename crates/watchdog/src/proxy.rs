//! `http` mode: requests are forwarded to the function's own HTTP server over
//! pooled keep-alive connections, bodies streamed both ways.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Sleep;

use crate::body::{Body, Deadline};
use crate::config::Upstream;
use crate::server::{ExecDeadline, error_response, expired, read_body};

type UpstreamBody = Either<Incoming, Full<Bytes>>;

pub struct Proxy {
    client: Client<HttpConnector, UpstreamBody>,
    upstream: Upstream,
    buffer_body: bool,
    read_timeout: Duration,
}

/// Why a request could not be forwarded.
pub enum ForwardError {
    Timeout,
    Upstream(String),
}

impl Proxy {
    pub fn new(upstream: Upstream, buffer_body: bool, read_timeout: Duration) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Proxy { client, upstream, buffer_body, read_timeout }
    }

    /// `host:port` of the upstream, for readiness probes.
    pub fn authority(&self) -> &str {
        self.upstream.authority.as_str()
    }

    fn upstream_uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let pq: PathAndQuery = if self.upstream.base_path.is_empty() {
            PathAndQuery::try_from(path_and_query)?
        } else {
            PathAndQuery::try_from(format!("{}{}", self.upstream.base_path, path_and_query))?
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.upstream.authority.clone());
        parts.path_and_query = Some(pq);
        Ok(Uri::from_parts(parts)?)
    }

    /// Forwards a client request and returns the upstream's response.
    pub async fn forward(&self, req: Request<Incoming>, deadline: Option<ExecDeadline>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        parts.uri = match self.upstream_uri(pq) {
            Ok(uri) => uri,
            Err(e) => {
                return error_response(StatusCode::BAD_REQUEST, &format!("invalid request path: {e}"));
            }
        };
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);

        let body = if self.buffer_body {
            match read_body(body, self.read_timeout).await {
                Ok(input) => {
                    // Sent with a Content-Length, which hyper derives from the
                    // buffered body once the chunked framing header is gone.
                    parts.headers.remove(header::TRANSFER_ENCODING);
                    parts.headers.remove(header::CONTENT_LENGTH);
                    Either::Right(Full::new(input))
                }
                Err(resp) => return resp,
            }
        } else {
            Either::Left(body)
        };

        let mut timer = ExecDeadline::timer(deadline);
        match self.send(Request::from_parts(parts, body), &mut timer).await {
            Ok(resp) => {
                let (mut parts, incoming) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(
                    parts,
                    Body::upstream(incoming, Deadline::new(deadline.map(|d| d.at), timer)),
                )
            }
            Err(ForwardError::Timeout) => {
                let limit = deadline.map(|d| d.limit).unwrap_or_default();
                tracing::warn!(timeout = ?limit, "function did not answer within exec_timeout");
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "function did not answer within exec_timeout ({})",
                        crate::duration::format(limit)
                    ),
                )
            }
            Err(ForwardError::Upstream(e)) => {
                tracing::warn!(error = %e, "function upstream failed");
                error_response(StatusCode::BAD_GATEWAY, &format!("function upstream failed: {e}"))
            }
        }
    }

    async fn send(
        &self,
        req: Request<UpstreamBody>,
        timer: &mut Option<Pin<Box<Sleep>>>,
    ) -> Result<Response<Incoming>, ForwardError> {
        tokio::select! {
            result = self.client.request(req) => result.map_err(|e| ForwardError::Upstream(error_chain(&e))),
            () = expired(timer) => Err(ForwardError::Timeout),
        }
    }

    /// Asks the function at `path` whether it is ready (for `ready_path`).
    pub async fn probe(&self, path: &str, timeout: Duration) -> Result<StatusCode, ForwardError> {
        let uri = self.upstream_uri(path).map_err(|e| ForwardError::Upstream(e.to_string()))?;
        let req = Request::get(uri)
            .body(Either::Right(Full::new(Bytes::new())))
            .map_err(|e| ForwardError::Upstream(e.to_string()))?;
        let resp = self.send(req, &mut ExecDeadline::timer(Some(ExecDeadline::after(timeout)))).await?;
        Ok(resp.status())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
}

/// Removes the headers that belong to one connection, not to the message
/// (RFC 9110 section 7.6.1), including any that `Connection` names.
/// `Transfer-Encoding` is left to hyper, which frames each hop itself.
/// Most messages have none: one pass over the names finds that out.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION).cloned()
        && let Ok(conn) = conn.to_str()
    {
        for name in conn.split(',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                headers.remove(name);
            }
        }
    }
    let found: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for name in found {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-call-id", "abc".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-call-id", "content-type"]);
    }

    #[test]
    fn joins_base_path() {
        let up = Upstream { authority: "127.0.0.1:5000".parse().unwrap(), base_path: "/api".into() };
        let p = Proxy::new(up, false, Duration::from_secs(1));
        assert_eq!(p.upstream_uri("/x?y=1").unwrap().to_string(), "http://127.0.0.1:5000/api/x?y=1");
        let up = Upstream { authority: "127.0.0.1:5000".parse().unwrap(), base_path: String::new() };
        let p = Proxy::new(up, false, Duration::from_secs(1));
        assert_eq!(p.upstream_uri("/").unwrap().to_string(), "http://127.0.0.1:5000/");
    }
}
