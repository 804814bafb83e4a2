//! `ferrofaas-bench`: the request-path benchmark and the baseline servers it
//! measures against. `ferrofaas-bench run --help` for the benchmark itself;
//! `scripts/bench` builds everything in release mode and runs it.

mod baselines;
mod run;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: ferrofaas-bench <command> [options]

commands:
  run [--duration SECS] [--warmup SECS] [--rounds N] [--conns 1,64]
      [--only LETTERS] [--watchdog PATH] [--faas PATH] [--out DIR]
                         run the benchmark and print a markdown report
  events [--rounds N] [--watchdog PATH] [--faas PATH] [--out DIR]
                         only its events section: NATS to a function
                         beside /async-function/ calls
  hello --port P         (a) minimal HTTP server
  proxy --port P --upstream HOST:PORT
                         (b) bare reverse proxy
  spawn-cat --port P     (f) a `cat` process per request
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrofaas-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    let flags = Flags::parse(rest)?;
    match command.as_str() {
        "run" => run::run(&run_options(&flags)?),
        "events" => run::events(&run_options(&flags)?),
        "hello" => serve(baselines::hello(listen_addr(&flags)?)),
        "proxy" => {
            let upstream: SocketAddr = flags.required("upstream")?.parse().context("--upstream")?;
            serve(baselines::proxy(listen_addr(&flags)?, upstream))
        }
        "spawn-cat" => serve(baselines::spawn_cat(listen_addr(&flags)?)),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

fn serve(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(fut)
}

fn listen_addr(flags: &Flags) -> anyhow::Result<SocketAddr> {
    let port: u16 = flags.required("port")?.parse().context("--port")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn run_options(flags: &Flags) -> anyhow::Result<run::Options> {
    let secs = |name: &str, default: u64| -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(match flags.get(name) {
            Some(v) => v.parse().with_context(|| format!("--{name}"))?,
            None => default,
        }))
    };
    let conns = match flags.get("conns") {
        Some(v) => v
            .split(',')
            .map(|c| c.trim().parse::<usize>().context("--conns"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => vec![1, 64],
    };
    let watchdog = match flags.get("watchdog") {
        Some(p) => PathBuf::from(p),
        None => {
            std::env::current_exe()?.parent().context("no folder for the bench binary")?.join("faas-watchdog")
        }
    };
    if !watchdog.is_file() {
        bail!("no watchdog binary at {} (build it, or pass --watchdog)", watchdog.display());
    }
    let faas = match flags.get("faas") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.parent().context("no folder for the bench binary")?.join("faas"),
    };
    if !faas.is_file() {
        bail!("no faas binary at {} (build it, or pass --faas)", faas.display());
    }
    Ok(run::Options {
        duration: secs("duration", 5)?,
        warmup: secs("warmup", 1)?,
        rounds: match flags.get("rounds") {
            Some(v) => v.parse().context("--rounds")?,
            None => 3,
        },
        conns,
        only: flags.get("only").map(str::to_owned),
        watchdog: std::fs::canonicalize(watchdog)?,
        faas,
        out_dir: flags.get("out").map_or_else(|| PathBuf::from("target/bench"), PathBuf::from),
    })
}

/// `--name value` pairs.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> anyhow::Result<Flags> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else { bail!("unexpected argument {arg:?}") };
            let value = it.next().with_context(|| format!("--{name} needs a value"))?;
            out.push((name.to_owned(), value.clone()));
        }
        Ok(Flags(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.get(name).with_context(|| format!("--{name} is required"))
    }
}
