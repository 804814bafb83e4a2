//! Memory figures: the gateway idle and holding a full queue, the watchdog
//! idle, a sandboxed replica.

use super::*;

/// How many 16 MiB calls [`measure_queue_memory`] stores.
pub(super) const QUEUED: usize = 50;

pub(super) struct QueueMemory {
    pub(super) idle: u64,
    pub(super) after: u64,
    pub(super) peak: u64,
    pub(super) files: u64,
    pub(super) redb: u64,
    pub(super) secs: f64,
}

/// A gateway's memory while its queue holds [`QUEUED`] calls of 16 MiB,
/// beside its own idle figure.
pub(super) fn measure_queue_memory(ctx: &Ctx) -> anyhow::Result<QueueMemory> {
    // Large bodies are held 30 s; the readiness check's empty one is not.
    let env = r#"{"mode": "streaming", "exec_timeout": "60s",
        "fprocess": "sh -c 'n=$(wc -c); [ $n -lt 1000 ] || sleep 30; echo $n'"}"#;
    let extra = ["--queue-max-function-bytes".to_owned(), "1Gi".to_owned()];
    let setup = start_gateway_on(ctx, "gateway-queue-memory", env, &extra)?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = setup.subject.unwrap_or_default();
    let idle = rss_kib(pid, "VmRSS:").context("could not read the gateway's RSS")?;
    let port = setup.port();
    let body = vec![b'x'; 16 << 20];
    let started = std::time::Instant::now();
    for i in 0..QUEUED {
        let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "POST /async-function/bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        s.write_all(&body)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 202") {
            bail!("call {i} of {QUEUED} was not accepted: {answer}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid, "VmRSS:").context("could not read the gateway's RSS")?;
    let peak = rss_kib(pid, "VmHWM:").context("could not read the gateway's peak RSS")?;
    let state = ctx.opts.out_dir.join("gateway-queue-memory/state");
    let files = std::fs::read_dir(state.join("queue.bodies"))?
        .flatten()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let redb = std::fs::metadata(state.join("queue.redb"))?.len();
    drop(setup);
    Ok(QueueMemory { idle, after, peak, files, redb, secs })
}

/// RSS and PSS (KiB) of the watchdog at `program`, idle in streaming mode.
pub(super) fn measure_idle_rss(ctx: &Ctx, program: &Path) -> anyhow::Result<(u64, u64)> {
    let port = free_port()?;
    let env = [("mode", "streaming".into()), ("fprocess", "cat".into())];
    let wd = ctx.watchdog_at(program, "watchdog-idle", port, &env)?;
    let id = wd.id();
    let setup = Setup::of(vec![wd], String::new(), Some(id));
    wait_status(port, "/_/health", 200)?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = setup.subject.unwrap_or_default();
    let rss = rss_kib(pid, "VmRSS:").context("could not read the watchdog's RSS")?;
    Ok((rss, pss_kib(pid).unwrap_or(0)))
}

/// RSS and PSS in KiB: a sandboxed replica's watchdog, and the sandbox's
/// two processes of its own.
pub(super) struct SandboxMemory {
    pub(super) watchdog: (u64, u64),
    pub(super) own: (u64, u64),
}

/// A sandboxed replica's memory, idle: the gateway's `faas-sandbox` child,
/// its init and the watchdog below it.
pub(super) fn measure_sandbox_rss(ctx: &Ctx) -> anyhow::Result<Option<SandboxMemory>> {
    let setup = start_gateway(ctx, "gateway-sandbox-idle", r#"{"mode": "streaming", "fprocess": "cat"}"#)?;
    std::thread::sleep(Duration::from_millis(500));
    let gateway = setup.subject.unwrap_or_default();
    let Some(outside) = children(gateway).into_iter().next() else { return Ok(None) };
    let Some(init) = children(outside).into_iter().next() else { return Ok(None) };
    let Some(watchdog) = children(init).into_iter().next() else { return Ok(None) };
    let memory = |pid: u32| (rss_kib(pid, "VmRSS:").unwrap_or(0), pss_kib(pid).unwrap_or(0));
    let (a, b) = (memory(outside), memory(init));
    Ok(Some(SandboxMemory { watchdog: memory(watchdog), own: (a.0 + b.0, a.1 + b.1) }))
}

/// The children of `pid`, whichever of its threads started them.
pub(super) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

pub(super) fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup.lines().find(|l| l.starts_with("Pss:"))?.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn measure_gateway_idle_rss(ctx: &Ctx) -> anyhow::Result<u64> {
    let setup = start_gateway(ctx, "gateway-idle", r#"{"mode": "streaming", "fprocess": "cat"}"#)?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = setup.subject.unwrap_or_default();
    rss_kib(pid, "VmRSS:").context("could not read the gateway's RSS")
}
