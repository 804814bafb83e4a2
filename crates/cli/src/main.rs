//! `faas`: runs ferrofaas (`faas serve`) and works with functions.

mod auth_config;
mod builder;
mod bundle;
mod client;
mod commands;
mod paths;
mod progress;
mod stack;
mod templates;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "faas", version, about = "ferrofaas: Functions as a Service, OpenFaaS-compatible")]
struct Cli {
    /// Log format of the platform's own messages
    #[arg(long, global = true, value_parser = ["plain", "json"], default_value = "plain", env = "FAAS_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform locally: gateway and process provider
    Serve(Box<commands::serve::Args>),
    /// Create a function from a template and add it to stack.yml
    New(commands::new::Args),
    /// Build the stack's functions into bundles (build/<name>/)
    Build(commands::build::Args),
    /// Deploy the stack's built functions (or --image) to a gateway
    Deploy(commands::deploy::Args),
    /// Build, then deploy
    Up(commands::deploy::Args),
    /// Call a function: the body from standard input, the answer on standard output
    Invoke(commands::invoke::Args),
    /// List the deployed functions
    #[command(alias = "ls")]
    List(commands::list::Args),
    /// Show one function
    Describe(commands::describe::Args),
    /// Remove functions
    #[command(alias = "rm", alias = "delete")]
    Remove(commands::remove::Args),
    /// Print a function's logs
    Logs(commands::logs::Args),
    /// Set a function's number of replicas
    Scale(commands::scale::Args),
    /// Manage secrets
    Secret(commands::secret::Args),
    /// What functions used, and what it costs: a table (or CSV), or a month's bill
    Usage(commands::usage::Args),
    /// API tokens of a namespace: create, list, revoke
    Token(commands::token::Args),
    /// Run the platform on a Docker Swarm (up) or take it down
    Swarm(commands::swarm::Args),
    /// Save credentials for a gateway
    Login(commands::login::LoginArgs),
    /// Forget the credentials for a gateway
    Logout(commands::login::LogoutArgs),
    /// Function templates
    Template(commands::template::Args),
    /// Versions of this client and of the gateway
    Version(commands::version::Args),
}

/// Large buffers (asynchronous bodies of up to 16 MiB, uploads) are mapped
/// on their own and given back to the system when freed: glibc's malloc
/// otherwise raises its mapping threshold after the first one is freed and
/// keeps later ones in its heap, so the gateway's memory would stay at its
/// peak (measured: 64 MiB instead of 30 after 50 queued 16 MiB calls).
fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ferrofaas_types::info::set_build_sha(env!("FERROFAAS_GIT_SHA"));
    if matches!(cli.command, Command::Serve(_)) {
        return_large_buffers();
    }
    faas_watchdog::logging::init(match cli.log_format.as_str() {
        "json" => faas_watchdog::LogFormat::Json,
        _ => faas_watchdog::LogFormat::Plain,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faas: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(*args).await,
            Command::New(args) => commands::new::run(args),
            Command::Build(args) => commands::build::run(args).await,
            Command::Deploy(args) => commands::deploy::run(args).await,
            Command::Up(args) => {
                commands::deploy::deploy_stack(&args, true, progress::Mode::pick(false, false)).await
            }
            Command::Invoke(args) => commands::invoke::run(args).await,
            Command::List(args) => commands::list::run(args).await,
            Command::Describe(args) => commands::describe::run(args).await,
            Command::Remove(args) => commands::remove::run(args).await,
            Command::Logs(args) => commands::logs::run(args).await,
            Command::Scale(args) => commands::scale::run(args).await,
            Command::Secret(args) => commands::secret::run(args).await,
            Command::Usage(args) => commands::usage::run(args).await,
            Command::Token(args) => commands::token::run(args).await,
            Command::Swarm(args) => commands::swarm::run(args).await,
            Command::Login(args) => commands::login::login(args).await,
            Command::Logout(args) => commands::login::logout(args).await,
            Command::Template(args) => commands::template::run(args),
            Command::Version(args) => commands::version::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faas: {e:#}");
            ExitCode::FAILURE
        }
    }
}
