//! The gateway's API as the CLI uses it. The gateway is found as faas-cli
//! finds it: `--gateway`, else the stack file's `provider.gateway`, else
//! `$OPENFAAS_URL`, else `http://127.0.0.1:8080`. Credentials: a saved
//! `faas login` for that gateway, else, for a gateway on this machine, the
//! local platform's own (its state folder).

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth_config::AuthConfig;

pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// `--gateway` for every verb that talks to one.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GatewayArg {
    /// Gateway URL (default: the stack file's, else $OPENFAAS_URL, else http://127.0.0.1:8080)
    #[arg(short, long)]
    pub gateway: Option<String>,
    /// An API token of a namespace (sent as Authorization: Bearer) instead
    /// of the saved credentials, as faas-cli's --token
    #[arg(long, env = "FAAS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Client {
    /// The gateway's URL, normalised (`http://host:port[/prefix]`).
    pub url: String,
    authority: String,
    prefix: String,
    auth: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The gateway's error message (`{"message"}`), or the body as text.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_owned())
    }
}

/// The gateway URL by faas-cli's rules, normalised: `--gateway`, else the
/// stack file's if it is not the default one, else `$OPENFAAS_URL`, else the
/// default.
pub fn resolve_url(explicit: Option<&str>, stack: Option<&str>) -> String {
    let url = explicit
        .map(str::to_owned)
        .or_else(|| stack.filter(|s| normalise(s) != DEFAULT_GATEWAY).map(str::to_owned))
        .or_else(|| std::env::var("OPENFAAS_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_GATEWAY.to_owned());
    normalise(&url)
}

fn normalise(url: &str) -> String {
    let url = url.trim().trim_end_matches('/').to_lowercase();
    if url.starts_with("http") { url } else { format!("http://{url}") }
}

impl Client {
    /// A client for `url` with the credentials found for it.
    pub fn new(url: &str) -> anyhow::Result<Client> {
        let saved = AuthConfig::load()?.header_for(url);
        let mut client = Client::with_auth(url, saved)?;
        if client.auth.is_none() && client.is_local() {
            client.auth = local_credentials();
        }
        Ok(client)
    }

    pub fn for_args(gateway: &GatewayArg, stack_gateway: Option<&str>) -> anyhow::Result<Client> {
        let url = resolve_url(gateway.gateway.as_deref(), stack_gateway);
        match &gateway.token {
            Some(token) => Client::with_auth(&url, Some(format!("Bearer {}", token.trim()))),
            None => Client::new(&url),
        }
    }

    /// A client with exactly these credentials.
    pub fn with_auth(url: &str, auth: Option<String>) -> anyhow::Result<Client> {
        if url.starts_with("https://") {
            bail!("{url}: https gateways are not supported by this client yet");
        }
        let rest = url.strip_prefix("http://").with_context(|| format!("{url} is not an http:// URL"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("{url} has no host");
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Client { url: url.to_owned(), authority, prefix: prefix.to_owned(), auth })
    }

    fn is_local(&self) -> bool {
        ["127.0.0.1:", "localhost:", "[::1]:"].iter().any(|p| self.authority.starts_with(p))
    }

    /// Sends a request; the response head and its streaming body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.with_context(|| {
            format!("cannot reach the gateway at {} (is it running? faas serve starts one)", self.url)
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header("host", &self.authority)
            .header("user-agent", concat!("faas/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &self.auth {
            req = req.header("authorization", auth);
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        Ok(sender.send_request(req.body(Full::new(body))?).await?)
    }

    /// Sends a request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let resp = self.send(method, path, headers, body).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.context("reading the gateway's answer")?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    /// A JSON request to the API; any status outside `ok` is an error.
    pub async fn api<T: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&T>,
        ok: &[u16],
    ) -> anyhow::Result<Reply> {
        let (headers, bytes) = match body {
            Some(b) => (
                vec![("content-type".to_owned(), "application/json".to_owned())],
                Bytes::from(serde_json::to_vec(b)?),
            ),
            None => (Vec::new(), Bytes::new()),
        };
        let reply = self.request(method, path, &headers, bytes).await?;
        self.check(&reply, ok)?;
        Ok(reply)
    }

    /// GET a JSON document.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let reply = self.api::<()>(Method::GET, path, None, &[200]).await?;
        serde_json::from_slice(&reply.body).context("the gateway's answer is not the expected JSON")
    }

    /// An error for a status outside `ok`, with the gateway's message.
    pub fn check(&self, reply: &Reply, ok: &[u16]) -> anyhow::Result<()> {
        if ok.contains(&reply.status.as_u16()) {
            return Ok(());
        }
        if reply.status == StatusCode::UNAUTHORIZED {
            if self.auth.as_deref().is_some_and(|a| a.starts_with("Bearer ")) {
                bail!("unauthorized: {} does not know this token (revoked?)", self.url);
            }
            bail!("unauthorized: log in to {} first (faas login --password ...)", self.url);
        }
        bail!("the gateway answered {}: {}", reply.status.as_u16(), reply.message())
    }
}

/// The admin credentials of the platform started on this machine (its state
/// folder), as a Basic auth header.
fn local_credentials() -> Option<String> {
    let path = crate::paths::credentials_file(&crate::paths::default_state_dir());
    let creds: ferrofaas_gateway::Credentials = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(creds.header_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(resolve_url(Some("HTTP://Example.com:8080/"), None), "http://example.com:8080");
        assert_eq!(resolve_url(Some("gw.local:31112"), Some("http://x")), "http://gw.local:31112");
        assert_eq!(resolve_url(None, Some("http://stack:1")), "http://stack:1");
        let c = Client::with_auth("http://gw/prefix", None).unwrap();
        assert_eq!((c.authority.as_str(), c.prefix.as_str()), ("gw:80", "/prefix"));
        assert!(Client::with_auth("https://gw", None).is_err());
        assert!(Client::with_auth("http://", None).is_err());
    }
}
