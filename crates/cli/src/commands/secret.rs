//! `faas secret create|list|update|remove`.

use anyhow::bail;
use clap::Subcommand;
use ferrofaas_types::Secret;
use http::Method;

use super::read_stdin;
use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a secret (value from --from-literal, --from-file or standard input)
    Create(Value),
    /// Replace a secret's value
    Update(Value),
    /// List the secrets (names only)
    #[command(alias = "ls")]
    List(Common),
    /// Remove a secret
    #[command(alias = "rm")]
    Remove(Named),
}

#[derive(clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub gateway: GatewayArg,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

#[derive(clap::Args)]
pub struct Named {
    pub name: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(clap::Args)]
pub struct Value {
    pub name: String,
    /// The value, given here
    #[arg(long, conflicts_with = "from_file")]
    pub from_literal: Option<String>,
    /// The value, read from this file (bytes as they are)
    #[arg(long)]
    pub from_file: Option<std::path::PathBuf>,
    /// Keep surrounding white space (trimmed by default, as faas-cli does)
    #[arg(long)]
    pub no_trim: bool,
    #[command(flatten)]
    pub common: Common,
}

impl Value {
    fn secret(&self) -> anyhow::Result<Secret> {
        ferrofaas_types::names::validate_secret_name(&self.name)?;
        let mut secret = Secret {
            name: self.name.clone(),
            namespace: self.common.namespace.clone().unwrap_or_default(),
            ..Default::default()
        };
        match (&self.from_literal, &self.from_file) {
            (Some(v), _) => secret.value = self.trim(v.as_bytes()),
            (None, Some(path)) => {
                let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                secret.raw_value = Some(bytes);
            }
            (None, None) => secret.value = self.trim(&read_stdin()?),
        }
        if secret.bytes().is_empty() {
            bail!(
                "the secret {} has no value: give --from-literal, --from-file or pipe it on standard input",
                self.name
            );
        }
        Ok(secret)
    }

    fn trim(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        if self.no_trim { text.into_owned() } else { text.trim().to_owned() }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Create(v) => {
            let client = Client::for_args(&v.common.gateway, None)?;
            let reply =
                client.api(Method::POST, "/system/secrets", Some(&v.secret()?), &[200, 201, 202]).await;
            match reply {
                Ok(_) => println!("Created secret {}", v.name),
                Err(e) if e.to_string().contains(" 409:") => {
                    bail!("secret {} already exists (faas secret update changes it)", v.name)
                }
                Err(e) => return Err(e),
            }
        }
        Command::Update(v) => {
            let client = Client::for_args(&v.common.gateway, None)?;
            client.api(Method::PUT, "/system/secrets", Some(&v.secret()?), &[200, 202]).await?;
            println!("Updated secret {}", v.name);
        }
        Command::List(c) => {
            let client = Client::for_args(&c.gateway, None)?;
            let path = match &c.namespace {
                Some(ns) => format!("/system/secrets?namespace={ns}"),
                None => "/system/secrets".to_owned(),
            };
            let secrets: Vec<Secret> = client.get_json(&path).await?;
            if secrets.is_empty() {
                println!("No secrets found.");
            } else {
                println!("NAME");
                for s in secrets {
                    println!("{}", s.name);
                }
            }
        }
        Command::Remove(n) => {
            let client = Client::for_args(&n.common.gateway, None)?;
            let secret = Secret {
                name: n.name.clone(),
                namespace: n.common.namespace.clone().unwrap_or_default(),
                ..Default::default()
            };
            client.api(Method::DELETE, "/system/secrets", Some(&secret), &[200, 202]).await?;
            println!("Removed secret {}", n.name);
        }
    }
    Ok(())
}
