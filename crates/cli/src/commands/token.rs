//! `faas token create|list|revoke`: API tokens of a namespace. A token is
//! printed once, when it is made; use it with `--token` (or `FAAS_TOKEN`),
//! here or with faas-cli.

use clap::Subcommand;
use http::Method;

use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Make a token: its secret is printed on standard output, once
    Create(Create),
    /// List the tokens (never their secrets)
    #[command(alias = "ls")]
    List(Common),
    /// Revoke a token, by id: refused from the next request on
    #[command(alias = "rm")]
    Revoke(Revoke),
}

#[derive(clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub gateway: GatewayArg,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

#[derive(clap::Args)]
pub struct Create {
    /// What the token is for (shown in the list)
    pub name: String,
    /// What it may do in its namespace
    #[arg(long, value_parser = ["read", "invoke", "deploy", "admin"])]
    pub role: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(clap::Args)]
pub struct Revoke {
    pub id: String,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Create(c) => {
            let client = Client::for_args(&c.common.gateway, None)?;
            let mut body = serde_json::json!({"name": c.name, "role": c.role});
            if let Some(ns) = &c.common.namespace {
                body["namespace"] = ns.clone().into();
            }
            let reply = client.api(Method::POST, "/system/tokens", Some(&body), &[201]).await?;
            let made: serde_json::Value = serde_json::from_slice(&reply.body)?;
            eprintln!(
                "token {} ({}) for namespace {}, role {}: keep it now, it is not shown again",
                made["id"].as_str().unwrap_or(""),
                made["name"].as_str().unwrap_or(""),
                made["namespace"].as_str().unwrap_or(""),
                made["role"].as_str().unwrap_or("")
            );
            println!("{}", made["token"].as_str().unwrap_or(""));
        }
        Command::List(c) => {
            let client = Client::for_args(&c.gateway, None)?;
            let path = match &c.namespace {
                Some(ns) => format!("/system/tokens?namespace={}", ferrofaas_types::query::encode(ns)),
                None => "/system/tokens".to_owned(),
            };
            let tokens: Vec<serde_json::Value> = client.get_json(&path).await?;
            println!("{:<14}\t{:<24}\t{:<20}\t{:<8}\tCreated", "ID", "Name", "Namespace", "Role");
            for t in tokens {
                println!(
                    "{:<14}\t{:<24}\t{:<20}\t{:<8}\t{}",
                    t["id"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["namespace"].as_str().unwrap_or(""),
                    t["role"].as_str().unwrap_or(""),
                    t["createdAt"].as_str().unwrap_or("")
                );
            }
        }
        Command::Revoke(r) => {
            let client = Client::for_args(&r.gateway, None)?;
            let id = ferrofaas_types::query::encode(&r.id);
            client.api::<()>(Method::DELETE, &format!("/system/tokens/{id}"), None, &[204]).await?;
            println!("revoked {}", r.id);
        }
    }
    Ok(())
}
