//! `faas logs NAME [--follow] [--tail N] [--since 10m]`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;

use super::qualified;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::Target,
    /// Keep printing new lines as they come
    #[arg(long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long)]
    pub tail: Option<usize>,
    /// Only lines newer than this (e.g. 10m, 1h)
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Also print the instance (replica) of each line
    #[arg(long)]
    pub instance: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ferrofaas_types::duration::parse(s).ok_or_else(|| format!("{s:?} is not a duration such as 10m or 1h"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let q = qualified(&args.target.name, args.target.namespace.as_deref())?;
    let (name, ns) = q.split_once('.').map_or((q.as_str(), None), |(n, ns)| (n, Some(ns)));
    let mut path = format!("/system/logs?name={name}&follow={}", args.follow);
    if let Some(ns) = ns {
        path.push_str(&format!("&namespace={ns}"));
    }
    if let Some(tail) = args.tail {
        path.push_str(&format!("&tail={tail}"));
    }
    if let Some(since) = args.since {
        let at = SystemTime::now() - since;
        path.push_str(&format!("&since={}", ferrofaas_types::time::format(at, false)));
    }
    let resp = client.send(http::Method::GET, &path, &[], Default::default()).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let reply = crate::client::Reply { status, headers: Default::default(), body };
        if status == http::StatusCode::NOT_FOUND {
            anyhow::bail!("no such function: {}", args.target.name);
        }
        client.check(&reply, &[200])?;
        anyhow::bail!("the gateway answered {}", status.as_u16());
    }
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let Ok(m) = serde_json::from_slice::<ferrofaas_types::LogMessage>(&line) else { continue };
            if args.instance {
                writeln!(out, "{} {} {}", m.timestamp, m.instance, m.text.trim_end())?;
            } else {
                writeln!(out, "{} {}", m.timestamp, m.text.trim_end())?;
            }
            out.flush()?;
        }
    }
    Ok(())
}
