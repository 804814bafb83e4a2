//! Events per second from a broker to a function: messages published to a
//! NATS JetStream stream, taken by the gateway's connector (a durable
//! consumer), stored on the queue as calls, run by the function; beside the
//! same number of `/async-function/` calls to the same gateway, in the same
//! round. Both are timed from the first message (request) sent to the last
//! call run, so each figure is the whole path: accept or consume, store
//! (fsync'd), dispatch, invoke.

use super::*;

/// Events (and calls) sent per measurement.
pub const EVENTS: usize = 2000;
/// Connections the `/async-function/` calls come over.
const ASYNC_CONNS: usize = 64;

/// One round's figures of a function mode: events/s and calls/s.
pub struct EventFigures {
    pub events_per_sec: f64,
    pub calls_per_sec: f64,
}

/// `nats-server -js` on a free port, its store in the bench's folder.
pub(super) fn start_nats(ctx: &Ctx, name: &str) -> anyhow::Result<(Child, u16)> {
    let port = free_port()?;
    let store = ctx.opts.out_dir.join(format!("{name}-store"));
    let _ = std::fs::remove_dir_all(&store);
    let args: Vec<String> = vec![
        "-js".into(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-sd".into(),
        store.display().to_string(),
    ];
    let child = ctx.spawn(name, Path::new("nats-server"), &args, &[]).context("starting nats-server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nats-server did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

/// `GET path`'s JSON body on 127.0.0.1:port.
fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// The function's invocations so far, as the gateway counts them.
fn invocations(port: u16) -> Option<u64> {
    get_json(port, "/system/function/bench")?["invocationCount"].as_f64().map(|n| n as u64)
}

/// Waits until the function has run `target` calls in all; the time it
/// took from `since`.
fn until_invoked(port: u16, target: u64, since: Instant) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if invocations(port).is_some_and(|n| n >= target) {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the function ran {:?} of {target} calls within 120 s", invocations(port));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A gateway with the bench function in `env`'s mode triggered by the
/// NATS subject `bench.events`, kept by the stream `BENCH`; ready and
/// subscribed.
fn start(ctx: &Ctx, name: &str, env: &str, rt: &tokio::runtime::Runtime) -> anyhow::Result<(Setup, u16)> {
    let (nats, nats_port) = start_nats(ctx, &format!("{name}-nats"))?;
    let url = format!("nats://127.0.0.1:{nats_port}");
    rt.block_on(async {
        let client = async_nats::connect(url.as_str()).await?;
        let js = async_nats::jetstream::new(client);
        let config = async_nats::jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            ..Default::default()
        };
        js.create_stream(config).await?;
        anyhow::Ok(())
    })
    .context("making the stream")?;
    let extra = ["--connector".to_owned(), format!("nats={url}")];
    let stack = "    annotations:\n      topic: bench.events\n";
    let mut setup = start_gateway_with(ctx, name, env, &extra, stack)?;
    setup.procs.insert(0, nats);
    let port = setup.port();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let f = get_json(port, "/system/function/bench").unwrap_or_default();
        let trigger = &f["triggers"][0];
        if trigger["connector"] == "nats" && trigger["lastError"].is_null() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the connector did not subscribe: {f}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((setup, nats_port))
}

/// `count` messages to the stream, each acknowledged by it (published
/// pipelined, as a producer would).
async fn publish(nats_port: u16, count: usize) -> anyhow::Result<()> {
    let client = async_nats::connect(format!("nats://127.0.0.1:{nats_port}")).await?;
    let js = async_nats::jetstream::new(client);
    let body = bytes::Bytes::from(vec![b'x'; 100]);
    let mut acks = Vec::with_capacity(256);
    for _ in 0..count {
        acks.push(js.publish("bench.events", body.clone()).await?);
        if acks.len() == 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// `count` POSTs to `/async-function/bench` over [`ASYNC_CONNS`]
/// connections, each answered 202.
async fn post_async(port: u16, count: usize) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(ASYNC_CONNS).build_http();
    let url: hyper::Uri = format!("http://127.0.0.1:{port}/async-function/bench").parse()?;
    let body = bytes::Bytes::from(vec![b'x'; 100]);
    let mut tasks = Vec::new();
    for i in 0..ASYNC_CONNS {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let n = count / ASYNC_CONNS + usize::from(i < count % ASYNC_CONNS);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let req = hyper::Request::post(url.clone()).body(Full::new(body.clone()))?;
                let status = client.request(req).await?.status();
                if status != hyper::StatusCode::ACCEPTED {
                    bail!("/async-function/ answered {status}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// One round of a mode: events, then calls, through the same gateway.
pub(super) fn measure(ctx: &Ctx, name: &str, env: &str) -> anyhow::Result<EventFigures> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (setup, nats_port) = start(ctx, name, env, &rt)?;
    let port = setup.port();
    let before = invocations(port).context("reading the function")?;
    let started = Instant::now();
    rt.block_on(publish(nats_port, EVENTS))?;
    let events = until_invoked(port, before + EVENTS as u64, started)?;
    let started = Instant::now();
    rt.block_on(post_async(port, EVENTS))?;
    let calls = until_invoked(port, before + 2 * EVENTS as u64, started)?;
    drop(setup);
    Ok(EventFigures {
        events_per_sec: EVENTS as f64 / events.as_secs_f64(),
        calls_per_sec: EVENTS as f64 / calls.as_secs_f64(),
    })
}

/// The section of the report: for fork and http mode, medians of
/// `rounds`.
pub(super) fn report(ctx: &Ctx, rounds: usize) -> anyhow::Result<()> {
    let http = format!(
        "{{\"mode\": \"http\", \"fprocess\": \"{} hello --port ${{PORT}}\", \"upstream_url\": \"http://127.0.0.1:${{PORT}}\"}}",
        ctx.self_exe.display()
    );
    let modes = [
        ("fork (streaming `cat`)", "events-fork", r#"{"mode": "streaming", "fprocess": "cat"}"#.to_owned()),
        ("http (the bench's hello server)", "events-http", http),
    ];
    let mut figures: Vec<Vec<EventFigures>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, (title, name, env)) in modes.iter().enumerate() {
            let f = measure(ctx, name, env)?;
            eprintln!(
                "round {round} events, {title}: {:.0} events/s from NATS, {:.0} /async-function/ calls/s",
                f.events_per_sec, f.calls_per_sec
            );
            figures[i].push(f);
        }
    }
    println!();
    println!(
        "| {EVENTS} events or calls, from the first sent to the last run (medians of {rounds}) | NATS JetStream events/s (the connector's durable consumer) | `/async-function/` calls/s ({ASYNC_CONNS} conns) | ratio |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for (i, (title, _, _)) in modes.iter().enumerate() {
        let events = median(figures[i].iter().map(|f| f.events_per_sec).collect());
        let calls = median(figures[i].iter().map(|f| f.calls_per_sec).collect());
        println!("| {title} | {events:.0} | {calls:.0} | {:.2} |", events / calls);
    }
    Ok(())
}
