//! The benchmark run: every scenario started for real on loopback, loaded with
//! wrk, in rounds (interleaved, so that noise on the shared machine spreads
//! over all of them), reported as medians with the ratios the targets use.
//!
//! Scenario letters are stable across versions so figures can be compared:
//! (a) hello direct, (b) bare proxy -> (a), (d) watchdog http -> (a),
//! (f) bare spawn-cat server, (g) watchdog streaming -> cat; through the
//! gateway: (e) and (h) sandboxed process replicas, (m) and (n) the same
//! without a sandbox, (u) and (v) the same without usage metering, (j) Docker, (k) Swarm.

mod events;
mod memory;
mod scenarios;
mod timings;

use memory::*;
use scenarios::*;
use timings::*;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::wrk::{self, Figures};

pub struct Options {
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    pub conns: Vec<usize>,
    pub only: Option<String>,
    pub watchdog: PathBuf,
    /// The `faas` binary, for the gateway's scenarios.
    pub faas: PathBuf,
    pub out_dir: PathBuf,
}

/// Processes started for one scenario; stopped when dropped.
struct Setup {
    procs: Vec<Child>,
    url: String,
    /// The process whose memory is reported (the watchdog), if any.
    subject: Option<u32>,
    /// The gateway's `Authorization` for /system/*, if it asks for one.
    auth: Option<String>,
    /// A command that takes the setup down (the Swarm platform).
    down: Option<Command>,
}

impl Setup {
    /// The port of the setup's URL.
    fn port(&self) -> u16 {
        self.url.split(':').nth(2).and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    fn of(procs: Vec<Child>, url: String, subject: Option<u32>) -> Setup {
        Setup { procs, url, subject, auth: None, down: None }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(down) = &mut self.down {
            let _ = down.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        for p in self.procs.iter_mut().rev() {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child.
            unsafe {
                libc::kill(p.id() as i32, libc::SIGTERM);
            }
        }
        for p in &mut self.procs {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if matches!(p.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Deploys timed per provider.
const DEPLOYS: usize = 5;

struct Ctx<'a> {
    opts: &'a Options,
    self_exe: PathBuf,
}

impl Ctx<'_> {
    fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> anyhow::Result<Child> {
        let log = File::create(self.opts.out_dir.join(format!("{name}.log")))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().with_context(|| format!("could not start {}", program.display()))
    }

    fn hello(&self, port: u16) -> anyhow::Result<Child> {
        self.spawn("hello", &self.self_exe, &["hello".into(), "--port".into(), port.to_string()], &[])
    }

    fn watchdog(&self, name: &str, port: u16, env: &[(&str, String)]) -> anyhow::Result<Child> {
        self.watchdog_at(&self.opts.watchdog, name, port, env)
    }

    /// [`Ctx::watchdog`], the executable at `program`.
    fn watchdog_at(
        &self,
        program: &Path,
        name: &str,
        port: u16,
        env: &[(&str, String)],
    ) -> anyhow::Result<Child> {
        let mut all: Vec<(&str, String)> = vec![
            ("port", port.to_string()),
            ("listen_address", "127.0.0.1".into()),
            ("suppress_lock", "true".into()),
            ("healthcheck_interval", "0s".into()),
        ];
        all.extend(env.iter().cloned());
        self.spawn(name, program, &[], &all)
    }
}

struct Scenario {
    id: char,
    title: &'static str,
    /// POST 100 bytes instead of GET.
    post: bool,
    start: fn(&Ctx) -> anyhow::Result<Setup>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario { id: 'a', title: "hello server, direct", post: false, start: start_a },
    Scenario { id: 'b', title: "bare hyper proxy -> (a)", post: false, start: start_b },
    Scenario { id: 'c', title: "bare proxy -> bare proxy -> (a)", post: false, start: start_c },
    Scenario { id: 'd', title: "faas-watchdog http mode -> (a)", post: false, start: start_d },
    Scenario { id: 'e', title: "gateway -> watchdog http -> (a)", post: false, start: start_e },
    Scenario { id: 'f', title: "bare spawn-cat per request", post: true, start: start_f },
    Scenario { id: 'g', title: "faas-watchdog streaming -> cat", post: true, start: start_g },
    Scenario { id: 'h', title: "gateway -> watchdog streaming -> cat", post: true, start: start_h },
    Scenario { id: 'm', title: "gateway -> watchdog http -> (a), no sandbox", post: false, start: start_m },
    Scenario { id: 'u', title: "(e) without usage metering", post: false, start: start_u },
    Scenario { id: 'v', title: "(h) without usage metering", post: true, start: start_v },
    Scenario { id: 's', title: "(e) with usage shared on NATS", post: false, start: start_s },
    Scenario {
        id: 'n',
        title: "gateway -> watchdog streaming -> cat, no sandbox",
        post: true,
        start: start_n,
    },
    Scenario {
        id: 'j',
        title: "gateway -> container (docker) watchdog streaming -> cat",
        post: true,
        start: start_j,
    },
    Scenario {
        id: 'k',
        title: "gateway (Swarm service) -> Swarm task watchdog streaming -> cat",
        post: true,
        start: start_k,
    },
];

/// The request path is measured at one replica: the autoscaler would add
/// replicas under the load (50 requests a second each, by default), which
/// on two cores only adds processes competing for them.
const PINNED: &str =
    "    labels:\n      com.openfaas.scale.min: \"1\"\n      com.openfaas.scale.max: \"1\"\n";

/// Names of the bench's platform on the Swarm.
const SWARM_GATEWAY: &str = "ferrofaas-bench-gateway";
const SWARM_NETWORK: &str = "ferrofaas-bench";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The status of `GET path` on 127.0.0.1:port, if it answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    status_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// The status of `GET path` at `addr`, if it answers.
fn status_at(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

fn wait_status(port: u16, path: &str, want: u16) -> anyhow::Result<()> {
    wait_status_for(port, path, want, Duration::from_secs(10))
}

fn wait_status_for(port: u16, path: &str, want: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if http_status(port, path) == Some(want) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("port {port} did not answer {want} on {path} within {timeout:?}")
}

/// `method path` with a JSON body on 127.0.0.1:port; the status.
fn http_send(port: u16, method: &str, path: &str, body: &str) -> Option<u16> {
    http_send_as(port, method, path, body, None)
}

/// `http_send` with an `Authorization` header.
fn http_send_as(port: u16, method: &str, path: &str, body: &str, auth: Option<&str>) -> Option<u16> {
    let auth = auth.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    let mut s =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Events from NATS to a function beside `/async-function/` calls alone
/// (`ferrofaas-bench events`).
pub fn events(opts: &Options) -> anyhow::Result<()> {
    let ctx = Ctx { opts, self_exe: std::env::current_exe()? };
    std::fs::create_dir_all(&opts.out_dir)?;
    println!("# ferrofaas bench: events, {} round(s)", opts.rounds);
    events::report(&ctx, opts.rounds)
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let ctx = Ctx { opts, self_exe: std::env::current_exe()? };
    std::fs::create_dir_all(&opts.out_dir)?;
    let script = opts.out_dir.join("post100.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 100)\nwrk.headers[\"Content-Type\"] = \"text/plain\"\n",
    )?;
    let docker = docker_available();
    if !docker {
        println!("# no Docker engine: the container scenarios are left out");
    }
    let swarm = docker && swarm_manager();
    if docker && !swarm {
        println!("# no Swarm manager (docker swarm init): the Swarm scenarios are left out");
    }
    let scenarios: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| opts.only.as_deref().is_none_or(|only| only.contains(s.id)))
        .filter(|s| docker || s.id != 'j')
        .filter(|s| swarm || s.id != 'k')
        .collect();
    if scenarios.is_empty() {
        bail!("--only matched no scenario (letters: a to h, j, k, m, n)");
    }

    println!(
        "# ferrofaas bench: {} round(s) of {}s per point (+{}s warm-up), connections {:?}",
        opts.rounds,
        opts.duration.as_secs(),
        opts.warmup.as_secs(),
        opts.conns
    );
    println!("# watchdog: {}", opts.watchdog.display());

    // results[scenario][conns] = figures of each round
    let mut results: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); opts.conns.len()]; scenarios.len()];
    let mut peak_rss: Vec<Option<u64>> = vec![None; scenarios.len()];
    for round in 1..=opts.rounds {
        for (si, s) in scenarios.iter().enumerate() {
            // Once more on failure: a free port can be taken between choosing
            // and binding it (wrk's own connections use the same range).
            let setup = match (s.start)(&ctx) {
                Ok(setup) => setup,
                Err(e) => {
                    eprintln!("scenario ({}) did not start ({e:#}); once more", s.id);
                    std::thread::sleep(Duration::from_secs(1));
                    (s.start)(&ctx).with_context(|| format!("starting scenario ({})", s.id))?
                }
            };
            let script = s.post.then_some(script.as_path());
            for (ci, &conns) in opts.conns.iter().enumerate() {
                if !opts.warmup.is_zero() {
                    wrk::run(&setup.url, conns, opts.warmup, script)?;
                }
                let f = wrk::run(&setup.url, conns, opts.duration, script)?;
                eprintln!(
                    "round {round} ({}) {conns:>3} conns: {:>9.0} req/s  p50 {:>8.0}us  p99 {:>8.0}us  errors {}",
                    s.id, f.requests_per_sec, f.p50_us, f.p99_us, f.errors
                );
                results[si][ci].push(f);
            }
            if let Some(pid) = setup.subject {
                let hwm = rss_kib(pid, "VmHWM:");
                peak_rss[si] = peak_rss[si].max(hwm);
            }
        }
    }

    let med = |si: usize, ci: usize| -> Figures {
        let r = &results[si][ci];
        Figures {
            requests_per_sec: median(r.iter().map(|f| f.requests_per_sec).collect()),
            p50_us: median(r.iter().map(|f| f.p50_us).collect()),
            p99_us: median(r.iter().map(|f| f.p99_us).collect()),
            errors: r.iter().map(|f| f.errors).sum(),
        }
    };

    println!();
    println!("| scenario | conns | req/s (median) | p50 | p99 | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (si, s) in scenarios.iter().enumerate() {
        for (ci, &conns) in opts.conns.iter().enumerate() {
            let f = med(si, ci);
            println!(
                "| ({}) {} | {} | {:.0} | {} | {} | {} |",
                s.id,
                s.title,
                conns,
                f.requests_per_sec,
                fmt_us(f.p50_us),
                fmt_us(f.p99_us),
                f.errors
            );
        }
    }

    let index = |id: char| scenarios.iter().position(|s| s.id == id);
    let ratios: [(char, char, &str); 13] = [
        ('d', 'b', "watchdog http vs bare proxy (target >= 0.8 at 64)"),
        ('e', 'c', "gateway + watchdog vs two bare proxies (target >= 0.8 at 64)"),
        ('g', 'f', "watchdog streaming vs bare spawn (target >= 0.9)"),
        ('h', 'g', "gateway + streaming watchdog vs watchdog alone"),
        ('e', 'm', "sandboxed vs unsandboxed replica, http mode (target >= 0.95)"),
        ('h', 'n', "sandboxed vs unsandboxed replica, fork mode (target >= 0.95)"),
        ('e', 'u', "usage metered vs not, http mode (target >= 0.95)"),
        ('h', 'v', "usage metered vs not, fork mode (target >= 0.95)"),
        ('s', 'e', "usage shared on NATS vs kept by the gateway, http mode"),
        ('j', 'h', "docker provider vs process provider, per request"),
        ('k', 'h', "swarm provider vs process provider, per request"),
        ('b', 'a', "bare proxy vs direct"),
        ('c', 'a', "two bare proxies vs direct"),
    ];
    println!();
    println!("| ratio | conns | req/s ratio | p50 added |");
    println!("| --- | ---: | ---: | ---: |");
    for (x, y, label) in ratios {
        let (Some(xi), Some(yi)) = (index(x), index(y)) else { continue };
        for (ci, &conns) in opts.conns.iter().enumerate() {
            let (fx, fy) = (med(xi, ci), med(yi, ci));
            println!(
                "| ({x})/({y}) {label} | {conns} | {:.2} | {} |",
                fx.requests_per_sec / fy.requests_per_sec,
                fmt_us(fx.p50_us - fy.p50_us)
            );
        }
    }

    println!();
    println!(
        "| provider (medians of {DEPLOYS}) | deploy to first response | cold start: request at zero replicas to its answer | floor: the replica started by hand | deploy added | cold start added |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut providers = vec!["process", "process, no sandbox"];
    if docker {
        providers.push("docker");
    }
    if swarm {
        providers.push("swarm");
    }
    let mut sandbox_cost = Vec::new();
    for name in providers {
        let setup = match name {
            "swarm" => start_k(&ctx)?,
            _ => {
                let extra = match name {
                    "docker" => docker_args(&ctx),
                    "process, no sandbox" => unsandboxed(),
                    _ => Vec::new(),
                };
                let env = r#"{"mode": "streaming", "fprocess": "cat"}"#;
                let dir = format!("deploy-{}", name.replace([',', ' '], ""));
                start_gateway_on(&ctx, &dir, env, &extra)?
            }
        };
        let deploy = median(deploy_times(&setup, DEPLOYS)?);
        let cold = median(cold_start_times(&setup, DEPLOYS)?);
        drop(setup);
        if name.starts_with("process") {
            sandbox_cost.push((deploy, cold));
        }
        let floor = median(floor_times(&ctx, name.split(',').next().unwrap_or(name), DEPLOYS)?);
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            fmt_us(deploy * 1000.0),
            fmt_us(cold * 1000.0),
            fmt_us(floor * 1000.0),
            fmt_us((deploy - floor) * 1000.0),
            fmt_us((cold - floor) * 1000.0)
        );
    }

    if let [(deploy, cold), (deploy_bare, cold_bare)] = sandbox_cost[..] {
        println!();
        println!("| the sandbox's cost (same run) | sandboxed | no sandbox | added (target <= 5 ms) |");
        println!("| --- | ---: | ---: | ---: |");
        for (what, with, without) in
            [("deploy to first response", deploy, deploy_bare), ("cold start", cold, cold_bare)]
        {
            println!(
                "| {what} | {} | {} | {} |",
                fmt_us(with * 1000.0),
                fmt_us(without * 1000.0),
                fmt_us((with - without) * 1000.0)
            );
        }
    }

    // Asynchronous calls accepted (each on disk, fsync'd, before its 202),
    // beside the disk's own rate of small fsync'd writes.
    let setup = start_gateway(&ctx, "gateway-async", r#"{"mode": "streaming", "fprocess": "cat"}"#)?;
    let async_url = setup.url.replace("/function/", "/async-function/");
    let conns = *opts.conns.iter().max().unwrap_or(&64);
    let accepted = wrk::run(&async_url, conns, opts.duration, Some(script.as_path()))?;
    drop(setup);
    let fsyncs = fsync_rate(&opts.out_dir, Duration::from_secs(2))?;
    println!();
    println!("| asynchronous calls | per second | errors |");
    println!("| --- | ---: | ---: |");
    println!(
        "| accepted by `/async-function/` ({conns} conns; each stored and fsync'd before its 202, while the dispatcher runs them) | {:.0} | {} |",
        accepted.requests_per_sec, accepted.errors
    );
    println!(
        "| floor: one process writing 100 bytes + fdatasync, one after another, same disk | {fsyncs:.0} | |"
    );
    println!(
        "| ratio (group commit: one fsync covers many calls) | {:.2} | |",
        accepted.requests_per_sec / fsyncs
    );

    events::report(&ctx, opts.rounds)?;

    let q = measure_queue_memory(&ctx)?;
    println!();
    println!(
        "| {QUEUED} asynchronous calls of 16 MiB stored (sent one after another; the function holds each for 30 s, so most wait) | gateway RSS |"
    );
    println!("| --- | ---: |");
    println!("| the same gateway idle, before them (baseline) | {} |", fmt_kib(q.idle));
    println!("| when all {QUEUED} are accepted | {} |", fmt_kib(q.after));
    println!("| its peak (VmHWM) | {} |", fmt_kib(q.peak));
    println!(
        "| on disk: body files {} MiB, queue.redb {} KiB; accepted at {:.0} MiB/s | |",
        q.files >> 20,
        q.redb >> 10,
        (QUEUED as f64 * 16.0) / q.secs
    );

    println!();
    let idle = measure_idle_rss(&ctx, &opts.watchdog)?;
    // The one `cargo build` puts beside faas, which process replicas run
    // when there is no static build.
    let dynamic = opts.faas.parent().map(|d| d.join("faas-watchdog")).filter(|p| p.is_file());
    let dynamic_idle = dynamic.as_deref().map(|p| measure_idle_rss(&ctx, p)).transpose()?;
    let gateway_idle = measure_gateway_idle_rss(&ctx)?;
    println!("| memory | RSS |");
    println!("| --- | ---: |");
    println!(
        "| watchdog idle, streaming mode (after start-up, before any request): the static build | {} (PSS {}) |",
        fmt_kib(idle.0),
        fmt_kib(idle.1)
    );
    if let Some((rss, pss)) = dynamic_idle {
        println!(
            "| the same, dynamically linked (`cargo build`'s, the fallback) | {} (PSS {}) |",
            fmt_kib(rss),
            fmt_kib(pss)
        );
    }
    if let Some(sandbox) = measure_sandbox_rss(&ctx)? {
        println!(
            "| a sandboxed replica, idle: its watchdog | {} (PSS {}) |",
            fmt_kib(sandbox.watchdog.0),
            fmt_kib(sandbox.watchdog.1)
        );
        println!(
            "| the sandbox's own processes beside it (faas-sandbox outside, its init inside) | {} (PSS {}) |",
            fmt_kib(sandbox.own.0),
            fmt_kib(sandbox.own.1)
        );
    }
    println!(
        "| gateway idle (`faas serve`, one function deployed, before any request) | {} |",
        fmt_kib(gateway_idle)
    );
    for (si, s) in scenarios.iter().enumerate() {
        if let Some(kib) = peak_rss[si] {
            println!("| peak during ({}) {} | {} |", s.id, s.title, fmt_kib(kib));
        }
    }
    if let Ok(meta) = std::fs::metadata(&opts.watchdog) {
        println!("| watchdog binary size | {} |", fmt_kib(meta.len() / 1024));
    }
    Ok(())
}

fn fmt_us(us: f64) -> String {
    if us.abs() >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.0} µs") }
}

fn fmt_kib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}
