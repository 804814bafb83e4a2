//! `faas scale NAME --replicas N`.

use ferrofaas_types::ScaleServiceRequest;
use http::Method;

use super::qualified;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::Target,
    /// Replicas wanted
    #[arg(short, long)]
    pub replicas: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let q = qualified(&args.target.name, args.target.namespace.as_deref())?;
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
        anyhow::bail!("no such function: {}", args.target.name);
    }
    client.check(&reply, &[200, 202])?;
    println!("Scaling {} to {} replica(s)", args.target.name, args.replicas);
    Ok(())
}
