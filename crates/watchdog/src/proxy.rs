//! `http` mode: requests are forwarded to the function's own HTTP server over
//! pooled keep-alive connections, bodies streamed both ways (a response
//! frame by frame as the server writes it: server-sent events are not held
//! back). An upgrade (a WebSocket) is passed on, and if the server switches,
//! the connections are joined ([`crate::tunnel`]).

use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::config::Upstream;
use crate::reply::{error_response, read_body};
use crate::request::Deadline;
use crate::tunnel::Switched;

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

    /// Forwards a client request and returns the upstream's response, and
    /// the two halves to join if it switched protocols.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        mut deadline: Deadline,
    ) -> (Response<Body>, Option<Switched>) {
        let (mut parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        parts.uri = match self.upstream_uri(pq) {
            Ok(uri) => uri,
            Err(e) => {
                return (
                    error_response(StatusCode::BAD_REQUEST, &format!("invalid request path: {e}")),
                    None,
                );
            }
        };
        parts.version = Version::HTTP_11;
        let upgrade = ferrofaas_types::hop::upgrade_requested(&parts.headers);
        // hyper hands over the connection only for a request that asked.
        let client_upgrade = upgrade.as_ref().and_then(|_| parts.extensions.remove::<OnUpgrade>());
        ferrofaas_types::hop::strip(&mut parts.headers);
        if let Some(protocol) = &upgrade {
            ferrofaas_types::hop::keep_upgrade(&mut parts.headers, protocol.clone());
        }

        let body = if self.buffer_body && upgrade.is_none() {
            match read_body(body, self.read_timeout).await {
                Ok(input) => {
                    // Sent with a Content-Length, which hyper derives from the
                    // buffered body once the chunked framing header is gone.
                    parts.headers.remove(header::TRANSFER_ENCODING);
                    parts.headers.remove(header::CONTENT_LENGTH);
                    Either::Right(Full::new(input))
                }
                Err(resp) => return (resp, None),
            }
        } else {
            Either::Left(body)
        };

        let resp = match self.send(Request::from_parts(parts, body), &mut deadline).await {
            Ok(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let (mut parts, _) = resp.into_parts();
                let upstream = parts.extensions.remove::<OnUpgrade>();
                return match (upstream, client_upgrade, upgrade) {
                    (Some(upstream), Some(client), Some(requested)) => {
                        let protocol = parts.headers.get(header::UPGRADE).cloned().unwrap_or(requested);
                        ferrofaas_types::hop::strip(&mut parts.headers);
                        ferrofaas_types::hop::keep_upgrade(&mut parts.headers, protocol);
                        (
                            Response::from_parts(parts, Body::empty()),
                            Some(Switched { client, upstream, deadline }),
                        )
                    }
                    // Switching unasked would hand the client's connection
                    // to whatever the server sends next.
                    _ => {
                        tracing::warn!("the function answered 101 to a request that asked for no upgrade");
                        (
                            error_response(
                                StatusCode::BAD_GATEWAY,
                                "the function answered 101 Switching Protocols to a request that asked for \
                                 no upgrade",
                            ),
                            None,
                        )
                    }
                };
            }
            Ok(resp) => {
                let (mut parts, incoming) = resp.into_parts();
                ferrofaas_types::hop::strip(&mut parts.headers);
                Response::from_parts(parts, Body::upstream(incoming, deadline))
            }
            Err(ForwardError::Timeout) => {
                let limit = deadline.limit();
                tracing::warn!(timeout = ?limit, "function did not answer within exec_timeout");
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "function did not answer within exec_timeout ({})",
                        ferrofaas_types::duration::format(limit)
                    ),
                )
            }
            Err(ForwardError::Upstream(e)) => {
                // The function's server may have been killed for memory.
                let message = match crate::oom::cause() {
                    Some(cause) => format!("function upstream failed: {e}; its process was killed: {cause}"),
                    None => format!("function upstream failed: {e}"),
                };
                tracing::warn!("{message}");
                error_response(StatusCode::BAD_GATEWAY, &message)
            }
        };
        (resp, None)
    }

    async fn send(
        &self,
        req: Request<UpstreamBody>,
        deadline: &mut Deadline,
    ) -> Result<Response<Incoming>, ForwardError> {
        tokio::select! {
            result = self.client.request(req) => result.map_err(|e| ForwardError::Upstream(ferrofaas_types::error_chain(&e))),
            () = deadline.expired() => Err(ForwardError::Timeout),
        }
    }

    /// Asks the function at `path` whether it is ready (for `ready_path`).
    pub async fn probe(&self, path: &str, timeout: Duration) -> Result<StatusCode, ForwardError> {
        let uri = self.upstream_uri(path).map_err(|e| ForwardError::Upstream(e.to_string()))?;
        let req = Request::get(uri)
            .body(Either::Right(Full::new(Bytes::new())))
            .map_err(|e| ForwardError::Upstream(e.to_string()))?;
        let resp = self.send(req, &mut Deadline::after(timeout)).await?;
        Ok(resp.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
