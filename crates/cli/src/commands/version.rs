//! `faas version`: this client, and the gateway if it answers.

use ferrofaas_types::GatewayInfo;

use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub gateway: GatewayArg,
    /// Only the client's version
    #[arg(long)]
    pub short_version: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.short_version {
        println!("{}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    println!(
        "faas (ferrofaas CLI)\n  version: {}\n  commit: {}",
        env!("CARGO_PKG_VERSION"),
        env!("FERROFAAS_GIT_SHA")
    );
    let client = Client::for_args(&args.gateway, None)?;
    match client.get_json::<GatewayInfo>("/system/info").await {
        Ok(info) => {
            println!(
                "Gateway\n  uri: {}\n  version: {}\n  commit: {}",
                client.url, info.version.release, info.version.sha
            );
            println!(
                "Provider\n  name: {}\n  orchestration: {}\n  version: {}",
                info.provider.name, info.provider.orchestration, info.provider.version.release
            );
        }
        Err(e) => println!("Gateway\n  uri: {}\n  not reachable: {e:#}", client.url),
    }
    Ok(())
}
