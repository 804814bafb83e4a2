//! `faas login` and `faas logout`: credentials saved (0600) where faas-cli
//! keeps them.

use anyhow::bail;
use http::Method;

use super::read_stdin;
use crate::auth_config::AuthConfig;
use crate::client::{Client, GatewayArg, resolve_url};

#[derive(clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub gateway: GatewayArg,
    #[arg(short, long, default_value = "admin")]
    pub username: String,
    /// The password (or --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(short = 's', long)]
    pub password_stdin: bool,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub gateway: GatewayArg,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let password = match (&args.password, args.password_stdin) {
        (Some(p), false) => p.trim().to_owned(),
        (None, true) => String::from_utf8_lossy(&read_stdin()?).trim().to_owned(),
        (Some(_), true) => bail!("give the password with --password or --password-stdin, not both"),
        (None, false) => bail!("a password is needed: --password or --password-stdin"),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let url = resolve_url(args.gateway.gateway.as_deref(), None);
    let basic = format!(
        "Basic {}",
        ferrofaas_types::base64::encode(format!("{}:{password}", args.username).as_bytes())
    );
    let client = Client::with_auth(&url, Some(basic))?;
    let reply = client.request(Method::GET, "/system/functions", &[], Default::default()).await?;
    if reply.status == http::StatusCode::UNAUTHORIZED {
        bail!("cannot log in to {url}: the username or password is wrong");
    }
    client.check(&reply, &[200])?;
    let mut config = AuthConfig::load()?;
    config.set_basic(&url, &args.username, &password);
    config.save()?;
    println!("Logged in to {url} as {} (saved in {})", args.username, crate::auth_config::path().display());
    Ok(())
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let url = resolve_url(args.gateway.gateway.as_deref(), None);
    let mut config = AuthConfig::load()?;
    if !config.remove(&url) {
        bail!("not logged in to {url}");
    }
    config.save()?;
    println!("Logged out of {url}");
    Ok(())
}
