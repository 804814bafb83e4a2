//! `faas-watchdog`: configured by environment variables (see `--help`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use faas_watchdog::Config;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

const HELP: &str = "\
faas-watchdog: runs a function behind HTTP (the ferrofaas watchdog).

Configured by environment variables, as OpenFaaS's of-watchdog:
  fprocess / function_process  the function's command line
  mode                 streaming (default) | serializing | http | static | wasm
  upstream_url         http mode: the function's server, e.g. http://127.0.0.1:5000
  port                 listen port (default 8080; 0 picks a free one)
  listen_address       listen address (default 0.0.0.0)
  read_timeout         time to read a request (default 10s)
  write_timeout        time to finish in-flight requests on shutdown (default 10s)
  exec_timeout         time a function may run per request (default 10s; 0: none)
  max_inflight         concurrent requests before 429 (default 0: no limit)
  healthcheck_interval on SIGTERM, time to serve while not ready (default write_timeout)
  content_type         force the response Content-Type (fork modes)
  combine_output       fork modes: STDERR into the response too (default false)
  prefix_logs          prefix the function's log lines (default true)
  suppress_lock        do not write $TMPDIR/.lock when ready (default false)
  http_buffer_req_body http mode: buffer request bodies (alias buffer_http)
  ready_path           http mode: /_/ready asks the function at this path
  static_path          static mode: folder to serve (default /home/app/public)
  metrics_port         extra port serving /metrics (default: none; always on /_/metrics)
  log_format           plain (default) | json
  wasm_memory_limit    wasm mode: memory per instance (default 128Mi)
  wasm_precompiled     wasm mode: a component precompiled by --precompile
  secret_mount_path    where the secrets are (default /var/openfaas/secrets)
A listening socket can also be passed as fd 3 (LISTEN_FDS=1, systemd style).

`faas-watchdog --precompile IN.wasm OUT.cwasm` compiles a component for
this watchdog's engine (wasm mode starts from it in milliseconds).

`faas-watchdog --ready` asks the watchdog configured by the same variables
whether it is ready (GET /_/ready): exit 0 if so, 1 if not. It is the
container health check (Docker HEALTHCHECK, Swarm).

Endpoints: /_/health, /_/ready, /_/metrics; everything else goes to the function.
";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-V" | "--version" | "version") => {
            println!("faas-watchdog {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("--ready") => return ready_probe(),
        Some("--precompile") => return precompile(),
        Some(other) => {
            eprintln!(
                "faas-watchdog: unexpected argument {other:?}; it is configured by environment variables (see --help)"
            );
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("faas-watchdog: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    faas_watchdog::logging::init(config.log_format);
    // Nothing the function starts gains privileges from a set-uid program or
    // file capabilities. Sandboxes and engines set this too; a container on
    // an engine that cannot be told to (Swarm before API 1.46) gets it here.
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_stack_size(256 * 1024)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faas-watchdog: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Handlers first: a SIGTERM that arrives as soon as the watchdog
        // announces its address must drain it, not kill it.
        let signals = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let listener = bind(&config).await?;
        let metrics = match config.metrics_port {
            Some(port) => Some(TcpListener::bind(SocketAddr::new(config.listen_address, port)).await?),
            None => None,
        };
        let interval = config.healthcheck_interval;
        faas_watchdog::run(config, listener, metrics, shutdown_signal(signals, interval)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "watchdog failed");
            ExitCode::FAILURE
        }
    }
}

/// `--precompile IN OUT`: the component IN compiled for this engine, in OUT
/// (written whole, then renamed into place).
fn precompile() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: faas-watchdog --precompile IN.wasm OUT.cwasm");
        return ExitCode::from(2);
    };
    #[cfg(feature = "wasm")]
    {
        let result = (|| -> Result<(), String> {
            let runtime = ferrofaas_wasm::Runtime::new(ferrofaas_wasm::RuntimeOptions::default())
                .map_err(|e| e.to_string())?;
            let wasm = std::fs::read(input).map_err(|e| format!("{input}: {e}"))?;
            let compiled = runtime.precompile(&wasm).map_err(|e| e.to_string())?;
            let partial = format!("{output}.partial");
            std::fs::write(&partial, compiled).map_err(|e| format!("{partial}: {e}"))?;
            std::fs::rename(&partial, output).map_err(|e| format!("{output}: {e}"))
        })();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("faas-watchdog: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(feature = "wasm"))]
    {
        let _ = (input, output);
        eprintln!("faas-watchdog: built without WebAssembly (the wasm feature)");
        ExitCode::FAILURE
    }
}

/// `--ready`: GET /_/ready from the watchdog this environment configures.
fn ready_probe() -> ExitCode {
    use std::io::{Read, Write};
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("faas-watchdog: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let host = if config.listen_address.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        config.listen_address
    };
    let timeout = Duration::from_secs(2);
    let answer = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&SocketAddr::new(host, config.port), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /_/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answer {
        Ok(head) if head.split(' ').nth(1) == Some("200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("not ready: {}", head.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("not ready: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One worker per core, at most 4: the watchdog does little work per request.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// The listening socket: fd 3 if one was passed (`LISTEN_FDS=1`, with
/// `LISTEN_PID` unset or ours), else `listen_address:port`.
async fn bind(config: &Config) -> std::io::Result<TcpListener> {
    let passed = std::env::var("LISTEN_FDS").is_ok_and(|n| n.trim() == "1")
        && std::env::var("LISTEN_PID").map_or(true, |pid| pid.trim() == std::process::id().to_string());
    if passed {
        use std::os::fd::FromRawFd;
        // SAFETY: by the LISTEN_FDS protocol fd 3 is a listening socket handed
        // to this process, and nothing else in it owns fd 3.
        let std_listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
        // Ours alone: the function's processes must not inherit it.
        // SAFETY: fcntl on a descriptor this process owns.
        if unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std_listener.set_nonblocking(true)?;
        return TcpListener::from_std(std_listener);
    }
    TcpListener::bind(SocketAddr::new(config.listen_address, config.port)).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("could not listen on {}:{}: {e}", config.listen_address, config.port),
        )
    })
}

/// Resolves on SIGTERM with `healthcheck_interval` (keep serving while not
/// ready, for load balancers to notice) or on SIGINT with zero (someone at a
/// terminal). A second signal exits at once.
async fn shutdown_signal((mut term, mut int): (Signal, Signal), healthcheck_interval: Duration) -> Duration {
    let announce = tokio::select! {
        _ = term.recv() => healthcheck_interval,
        _ = int.recv() => Duration::ZERO,
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    announce
}
