//! A small HTTP client for the gateway's API, as faas-cli finds it: the
//! gateway from `--gateway`, else `$OPENFAAS_URL`, else
//! `http://127.0.0.1:8080`; credentials from the local platform's state
//! folder when the gateway is on this machine.

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

pub struct Client {
    /// `host:port`
    authority: String,
    /// Path prefix of the gateway URL (often empty).
    prefix: String,
    auth: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
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

impl Client {
    pub fn new(gateway: Option<&str>) -> anyhow::Result<Client> {
        let url = match gateway {
            Some(g) => g.to_owned(),
            None => std::env::var("OPENFAAS_URL").unwrap_or_else(|_| DEFAULT_GATEWAY.to_owned()),
        };
        let url = url.trim().trim_end_matches('/').to_lowercase();
        let url = if url.starts_with("http") { url } else { format!("http://{url}") };
        if url.starts_with("https://") {
            bail!("{url}: https gateways are not supported by this client yet");
        }
        let rest = url.strip_prefix("http://").with_context(|| format!("{url} is not an http:// URL"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let authority =
            if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        let local = ["127.0.0.1:", "localhost:", "[::1]:"].iter().any(|p| authority.starts_with(p));
        let auth = if local { local_credentials() } else { None };
        Ok(Client { authority, prefix: prefix.to_owned(), auth })
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<Reply> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.with_context(|| {
            format!("cannot reach the gateway at http://{} (is it running? faas serve)", self.authority)
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
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let resp = sender.send_request(req.body(Full::new(body.unwrap_or_default()))?).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }

    /// GET a JSON document; an error status becomes an error with the
    /// gateway's message.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let reply = self.request(Method::GET, path, None).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            bail!("unauthorized: the gateway at http://{} wants credentials", self.authority);
        }
        if !reply.status.is_success() {
            bail!("the gateway answered {}: {}", reply.status.as_u16(), reply.message());
        }
        serde_json::from_slice(&reply.body).context("the gateway's answer is not the expected JSON")
    }
}

/// The admin credentials of the platform started on this machine (its
/// default state folder), as a Basic auth header.
fn local_credentials() -> Option<String> {
    let path = crate::paths::credentials_file(&crate::paths::default_state_dir());
    let creds: ferrofaas_gateway::Credentials = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(creds.header_value())
}
