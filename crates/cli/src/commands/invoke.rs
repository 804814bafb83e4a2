//! `faas invoke NAME`: the body from standard input, the response to
//! standard output.

use std::io::Write;

use anyhow::bail;
use ferrofaas_types::query;
use http::Method;

use super::{key_value, read_stdin};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::Target,
    /// HTTP method
    #[arg(short, long, default_value = "POST")]
    pub method: String,
    /// Header "Key: Value" or Key=Value (repeatable)
    #[arg(short = 'H', long = "header")]
    pub header: Vec<String>,
    /// Query parameter key=value (repeatable)
    #[arg(long)]
    pub query: Vec<String>,
    /// Content-Type of the body
    #[arg(long, default_value = "text/plain")]
    pub content_type: String,
    /// Queue the call (202 Accepted) instead of waiting for the result
    #[arg(short, long)]
    pub r#async: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.caller()?;
    let method = Method::from_bytes(args.method.to_uppercase().as_bytes())
        .map_err(|_| anyhow::anyhow!("{:?} is not an HTTP method", args.method))?;
    // As faas-cli: always NAME.NAMESPACE, openfaas-fn unless told otherwise.
    let ns = args.target.namespace.as_deref().unwrap_or(ferrofaas_types::DEFAULT_NAMESPACE);
    let q = super::qualified(&args.target.name, Some(ns))?;
    let prefix = if args.r#async { "async-function" } else { "function" };
    let mut path = format!("/{prefix}/{q}");
    if !args.query.is_empty() {
        let pairs: Vec<String> = args
            .query
            .iter()
            .map(|kv| key_value(kv).map(|(k, v)| format!("{}={}", query::encode(&k), query::encode(&v))))
            .collect::<anyhow::Result<_>>()?;
        path.push('?');
        path.push_str(&pairs.join("&"));
    }
    let mut headers: Vec<(String, String)> =
        args.header.iter().map(|h| key_value(h)).collect::<anyhow::Result<_>>()?;
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        headers.push(("content-type".into(), args.content_type.clone()));
    }
    let body = read_stdin()?;
    let reply = client.request(method, &path, &headers, body.into()).await?;
    if !reply.status.is_success() {
        bail!("{} answered {}: {}", args.target.name, reply.status.as_u16(), reply.message());
    }
    if args.r#async && reply.status == http::StatusCode::ACCEPTED {
        let id = reply.headers.get("x-call-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        eprintln!("Function submitted asynchronously (call id {id}).");
        return Ok(());
    }
    std::io::stdout().write_all(&reply.body)?;
    Ok(())
}
