//! `faas scale NAME --replicas N`.

use ferrofaas_types::ScaleServiceRequest;
use http::Method;

use super::qualified;
use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    /// The function
    pub name: String,
    /// Replicas wanted
    #[arg(short, long)]
    pub replicas: u64,
    #[command(flatten)]
    pub gateway: GatewayArg,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::for_args(&args.gateway, None)?;
    let q = qualified(&args.name, args.namespace.as_deref())?;
    let name = q.split('.').next().unwrap_or(&q).to_owned();
    let body = ScaleServiceRequest { service_name: name, replicas: args.replicas, namespace: String::new() };
    let reply = client
        .request(
            Method::POST,
            &format!("/system/scale-function/{q}"),
            &[("content-type".into(), "application/json".into())],
            serde_json::to_vec(&body)?.into(),
        )
        .await?;
    if reply.status == http::StatusCode::NOT_FOUND {
        anyhow::bail!("no such function: {}", args.name);
    }
    client.check(&reply, &[200, 202])?;
    println!("Scaling {} to {} replica(s)", args.name, args.replicas);
    Ok(())
}
