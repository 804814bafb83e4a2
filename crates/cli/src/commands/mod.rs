//! One file per verb. Each turns its arguments into calls and output; an
//! error returns to `main`, which prints it and exits non-zero.

pub mod build;
pub mod deploy;
pub mod describe;
pub mod invoke;
pub mod list;
pub mod login;
pub mod logs;
pub mod new;
pub mod remove;
pub mod scale;
pub mod secret;
pub mod serve;
pub mod swarm;
pub mod template;
pub mod token;
pub mod usage;
pub mod version;

use std::path::{Path, PathBuf};

/// Prints the admin's username, and the password only to a terminal:
/// standard output that goes to a file or a pipe ends up in logs. Either
/// way it says where the credentials are kept.
pub fn print_credentials(creds: &ferrofaas_gateway::Credentials, stored_in: &Path) {
    use std::io::IsTerminal;
    println!("  username: {}", creds.username);
    if std::io::stdout().is_terminal() {
        println!("  password: {}", creds.password);
    } else {
        println!("  password: not shown, as this output is not a terminal; it is in {}", stored_in.display());
    }
}

/// `-f`, `--filter`, `--regex`: which stack file, and which of its functions.
#[derive(clap::Args, Clone, Debug)]
pub struct StackArgs {
    /// The stack file
    #[arg(short = 'f', long = "yaml", default_value = "stack.yml")]
    pub file: PathBuf,
    /// Only the functions whose names match this glob (`*` matches anything)
    #[arg(long)]
    pub filter: Option<String>,
    /// Only the functions whose names match this regular expression
    #[arg(long)]
    pub regex: Option<String>,
}

impl StackArgs {
    pub fn load(&self) -> anyhow::Result<crate::stack::Stack> {
        Ok(crate::stack::Stack::load(&self.file)?)
    }
}

/// One function, on one gateway: `NAME [-n NAMESPACE] [--gateway URL]`.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The function (NAME or NAME.NAMESPACE)
    pub name: String,
    #[command(flatten)]
    pub gateway: crate::client::GatewayArg,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

impl Target {
    pub fn client(&self) -> anyhow::Result<crate::client::Client> {
        crate::client::Client::for_args(&self.gateway, None)
    }

    /// A client for calling the function: no saved credentials (as
    /// faas-cli, a call carries none), only a `--token` if one is given (a
    /// private function wants it).
    pub fn caller(&self) -> anyhow::Result<crate::client::Client> {
        let url = crate::client::resolve_url(self.gateway.gateway.as_deref(), None);
        let auth = self.gateway.token.as_ref().map(|t| format!("Bearer {}", t.trim()));
        crate::client::Client::with_auth(&url, auth)
    }
}

/// `NAME` or `NAME.NAMESPACE` with `-n`, as a path segment: `name.namespace`
/// when a namespace is known, `name` otherwise (the gateway's default).
pub fn qualified(name: &str, namespace: Option<&str>) -> anyhow::Result<String> {
    let (name, ns) = match name.split_once('.') {
        Some((n, ns)) => (n, Some(ns)),
        None => (name, namespace),
    };
    ferrofaas_types::names::validate_function_name(name)?;
    match ns {
        Some(ns) => {
            ferrofaas_types::names::validate_namespace(ns)?;
            Ok(format!("{name}.{ns}"))
        }
        None => Ok(name.to_owned()),
    }
}

/// `key=value` (or `key: value` for headers).
pub fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not key=value"))?;
    if k.trim().is_empty() {
        anyhow::bail!("{s:?} has an empty key");
    }
    Ok((k.trim().to_owned(), v.trim_start().to_owned()))
}

/// Reads all of standard input (empty when it is a terminal).
pub fn read_stdin() -> anyhow::Result<Vec<u8>> {
    use std::io::{IsTerminal, Read};
    let mut buf = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().read_to_end(&mut buf)?;
    }
    Ok(buf)
}
