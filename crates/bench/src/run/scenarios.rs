//! How each scenario is started: its processes (servers, proxies, `faas
//! serve` with a provider, `faas swarm up`), ready to be loaded.

use super::*;

/// `faas swarm up` (the gateway as a Swarm service), then `faas up` of the
/// bench function through it; taken down (`faas swarm down --all`) on drop.
pub(super) fn start_k(ctx: &Ctx) -> anyhow::Result<Setup> {
    let dir = std::path::absolute(ctx.opts.out_dir.join("gateway-swarm"))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("fn"))?;
    std::fs::write(dir.join("fn/bundle.json"), r#"{"env": {"mode": "streaming", "fprocess": "cat"}}"#)?;
    let port = free_port()?;
    std::fs::write(
        dir.join("stack.yml"),
        format!(
            "provider:\n  name: openfaas\n  gateway: http://127.0.0.1:{port}\nfunctions:\n  bench:\n    \
             handler: ./fn\n    image: bench:latest\n{PINNED}"
        ),
    )?;
    let faas = |args: &[&str]| {
        let mut cmd = Command::new(&ctx.opts.faas);
        cmd.args(args)
            .current_dir(&dir)
            .env("OPENFAAS_CONFIG", dir.join("openfaas-config.yml"))
            .env("FAAS_IMAGE_WATCHDOG", &ctx.opts.watchdog)
            .env("FERROFAAS_STATE", dir.join("state"));
        cmd
    };
    let mut down = faas(&["swarm", "down", "--all", "--name", SWARM_GATEWAY, "--network", SWARM_NETWORK]);
    let _ = down.stdout(Stdio::null()).stderr(Stdio::null()).status();
    let port_arg = port.to_string();
    for args in [
        &[
            "swarm",
            "up",
            "--port",
            &port_arg,
            "--name",
            SWARM_GATEWAY,
            "--network",
            SWARM_NETWORK,
            "--bases",
            "minimal",
        ][..],
        &["up"][..],
    ] {
        let out = faas(args).output()?;
        if !out.status.success() {
            bail!(
                "faas {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    wait_status_for(port, "/function/bench", 200, Duration::from_secs(120))?;
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state/credentials.json"))?)?;
    let user_pass =
        format!("{}:{}", creds["username"].as_str().unwrap_or(""), creds["password"].as_str().unwrap_or(""));
    let mut setup = Setup::of(Vec::new(), format!("http://127.0.0.1:{port}/function/bench"), None);
    setup.auth = Some(format!("Basic {}", base64(user_pass.as_bytes())));
    setup.down = Some(down);
    Ok(setup)
}

pub(super) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn start_a(ctx: &Ctx) -> anyhow::Result<Setup> {
    let port = free_port()?;
    let procs = vec![ctx.hello(port)?];
    wait_status(port, "/", 200)?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/"), None))
}

pub(super) fn start_b(ctx: &Ctx) -> anyhow::Result<Setup> {
    let (up, port) = (free_port()?, free_port()?);
    let hello = ctx.hello(up)?;
    let proxy = ctx.spawn(
        "proxy",
        &ctx.self_exe,
        &["proxy".into(), "--port".into(), port.to_string(), "--upstream".into(), format!("127.0.0.1:{up}")],
        &[],
    )?;
    let procs = vec![hello, proxy];
    wait_status(port, "/", 200)?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/"), None))
}

pub(super) fn start_c(ctx: &Ctx) -> anyhow::Result<Setup> {
    let (up, mid, port) = (free_port()?, free_port()?, free_port()?);
    let hello = ctx.hello(up)?;
    let proxy = |name: &str, listen: u16, to: u16| {
        ctx.spawn(
            name,
            &ctx.self_exe,
            &[
                "proxy".into(),
                "--port".into(),
                listen.to_string(),
                "--upstream".into(),
                format!("127.0.0.1:{to}"),
            ],
            &[],
        )
    };
    let procs = vec![hello, proxy("proxy-2", mid, up)?, proxy("proxy-1", port, mid)?];
    wait_status(port, "/", 200)?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/"), None))
}

/// `faas serve` with one function whose bundle.json has `env`; waits until
/// `/function/bench` answers.
pub(super) fn start_gateway(ctx: &Ctx, name: &str, env: &str) -> anyhow::Result<Setup> {
    start_gateway_on(ctx, name, env, &[])
}

/// `faas serve` with `extra` arguments (a provider) and one function.
pub(super) fn start_gateway_on(ctx: &Ctx, name: &str, env: &str, extra: &[String]) -> anyhow::Result<Setup> {
    start_gateway_with(ctx, name, env, extra, "")
}

/// The same, with more of the function's stack.yml (`stack`: lines at
/// its level, such as annotations).
pub(super) fn start_gateway_with(
    ctx: &Ctx,
    name: &str,
    env: &str,
    extra: &[String],
    stack: &str,
) -> anyhow::Result<Setup> {
    let dir = ctx.opts.out_dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("fn"))?;
    std::fs::write(dir.join("fn/bundle.json"), format!("{{\"env\": {env}}}"))?;
    std::fs::write(
        dir.join("stack.yml"),
        format!(
            "provider:\n  name: openfaas\nfunctions:\n  bench:\n    handler: ./fn\n    image: bench:latest\n{PINNED}{stack}"
        ),
    )?;
    let port = free_port()?;
    let args: Vec<String> = vec![
        "serve".into(),
        "--no-auth".into(),
        "--port".into(),
        port.to_string(),
        "--state".into(),
        dir.join("state").display().to_string(),
        "--watchdog".into(),
        ctx.opts.watchdog.display().to_string(),
        "-f".into(),
        dir.join("stack.yml").display().to_string(),
    ];
    // The bench's own hello server is the http-mode function: sandboxed
    // replicas need to see its folder.
    let bench_dir = ctx.self_exe.parent().context("the bench binary has no folder")?;
    let sandbox_path = ["--sandbox-path".to_owned(), bench_dir.display().to_string()];
    let args: Vec<String> = args.into_iter().chain(sandbox_path).chain(extra.iter().cloned()).collect();
    let gw = ctx.spawn(name, &ctx.opts.faas, &args, &[])?;
    let subject = Some(gw.id());
    let procs = vec![gw];
    // A first Docker run builds a base image from Debian packages: minutes.
    wait_status_for(port, "/function/bench", 200, Duration::from_secs(600))?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/function/bench"), subject))
}

/// The bundle env of the http-mode function: the bench's hello server.
fn http_env(ctx: &Ctx) -> String {
    format!(
        "{{\"mode\": \"http\", \"fprocess\": \"{} hello --port ${{PORT}}\", \"upstream_url\": \"http://127.0.0.1:${{PORT}}\"}}",
        ctx.self_exe.display()
    )
}

pub(super) fn start_e(ctx: &Ctx) -> anyhow::Result<Setup> {
    let env = http_env(ctx);
    start_gateway(ctx, "gateway-http", &env)
}

pub(super) fn start_h(ctx: &Ctx) -> anyhow::Result<Setup> {
    start_gateway(ctx, "gateway-streaming", r#"{"mode": "streaming", "fprocess": "cat"}"#)
}

/// (e) with usage metering off: what metering costs the request path.
pub(super) fn start_u(ctx: &Ctx) -> anyhow::Result<Setup> {
    let env = http_env(ctx);
    start_gateway_on(ctx, "gateway-http-unmetered", &env, &["--no-usage".into()])
}

/// (e) with its usage shared on a NATS server (as a Swarm's gateways
/// share theirs): what publishing every record costs the gateway.
pub(super) fn start_s(ctx: &Ctx) -> anyhow::Result<Setup> {
    let (nats, port) = super::events::start_nats(ctx, "gateway-http-shared-nats")?;
    let env = http_env(ctx);
    let queue = ["--queue".to_owned(), format!("nats://127.0.0.1:{port}")];
    let mut setup = start_gateway_on(ctx, "gateway-http-shared", &env, &queue)?;
    setup.procs.insert(0, nats);
    Ok(setup)
}

/// (h) with usage metering off.
pub(super) fn start_v(ctx: &Ctx) -> anyhow::Result<Setup> {
    let env = r#"{"mode": "streaming", "fprocess": "cat"}"#;
    start_gateway_on(ctx, "gateway-streaming-unmetered", env, &["--no-usage".into()])
}

/// `faas serve`'s flag for replicas without a sandbox.
pub(super) fn unsandboxed() -> Vec<String> {
    vec!["--unsafe-no-sandbox".into()]
}

pub(super) fn start_m(ctx: &Ctx) -> anyhow::Result<Setup> {
    let env = http_env(ctx);
    start_gateway_on(ctx, "gateway-http-unsandboxed", &env, &unsandboxed())
}

pub(super) fn start_n(ctx: &Ctx) -> anyhow::Result<Setup> {
    let env = r#"{"mode": "streaming", "fprocess": "cat"}"#;
    start_gateway_on(ctx, "gateway-streaming-unsandboxed", env, &unsandboxed())
}

pub(super) fn docker_args(ctx: &Ctx) -> Vec<String> {
    vec![
        "--provider".into(),
        "docker".into(),
        "--image-watchdog".into(),
        ctx.opts.watchdog.display().to_string(),
    ]
}

pub(super) fn start_j(ctx: &Ctx) -> anyhow::Result<Setup> {
    start_gateway_on(ctx, "gateway-docker", r#"{"mode": "streaming", "fprocess": "cat"}"#, &docker_args(ctx))
}

pub(super) fn start_d(ctx: &Ctx) -> anyhow::Result<Setup> {
    let (up, port) = (free_port()?, free_port()?);
    let fprocess = format!("{} hello --port {up}", ctx.self_exe.display());
    let wd = ctx.watchdog(
        "watchdog-http",
        port,
        &[
            ("mode", "http".into()),
            ("fprocess", fprocess),
            ("upstream_url", format!("http://127.0.0.1:{up}")),
        ],
    )?;
    let subject = Some(wd.id());
    let procs = vec![wd];
    wait_status(port, "/_/ready", 200)?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/"), subject))
}

pub(super) fn start_f(ctx: &Ctx) -> anyhow::Result<Setup> {
    let port = free_port()?;
    let procs = vec![ctx.spawn(
        "spawn-cat",
        &ctx.self_exe,
        &["spawn-cat".into(), "--port".into(), port.to_string()],
        &[],
    )?];
    wait_status(port, "/", 200)?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/"), None))
}

pub(super) fn start_g(ctx: &Ctx) -> anyhow::Result<Setup> {
    let port = free_port()?;
    let wd = ctx.watchdog(
        "watchdog-streaming",
        port,
        &[("mode", "streaming".into()), ("fprocess", "cat".into())],
    )?;
    let subject = Some(wd.id());
    let procs = vec![wd];
    wait_status(port, "/_/ready", 200)?;
    Ok(Setup::of(procs, format!("http://127.0.0.1:{port}/"), subject))
}
