//! `faas remove NAME...` (or the functions of a stack file).

use anyhow::bail;
use ferrofaas_types::DeleteFunctionRequest;
use http::Method;

use super::StackArgs;
use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    /// Functions to remove (default: the stack file's)
    pub names: Vec<String>,
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub gateway: GatewayArg,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (client, targets) = if args.names.is_empty() {
        let stack = args.stack.load()?;
        let client = Client::for_args(&args.gateway, stack.gateway())?;
        let targets: Vec<(String, Option<String>)> = stack
            .select(args.stack.filter.as_deref(), args.stack.regex.as_deref())?
            .into_iter()
            .map(|(n, f)| (n.clone(), args.namespace.clone().or_else(|| f.namespace.clone())))
            .collect();
        (client, targets)
    } else {
        let client = Client::for_args(&args.gateway, None)?;
        (client, args.names.iter().map(|n| (n.clone(), args.namespace.clone())).collect())
    };
    let mut failed = 0;
    for (name, ns) in targets {
        let req = DeleteFunctionRequest { function_name: name.clone(), namespace: ns.unwrap_or_default() };
        let reply = client.api(Method::DELETE, "/system/functions", Some(&req), &[200, 202]).await;
        match reply {
            Ok(_) => println!("Removed {name}"),
            Err(e) if e.to_string().contains(" 404:") => {
                eprintln!("faas: no function {name} to remove");
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if failed > 0 {
        bail!("{failed} function(s) not found");
    }
    Ok(())
}
