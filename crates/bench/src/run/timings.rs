//! Deploys, cold starts and their floors timed per provider, and the
//! disk's fsync rate.

use super::*;

/// Deploy to first successful response, `rounds` times: a new function of
/// the image `bench:latest` each time (already on the gateway).
pub(super) fn deploy_times(setup: &Setup, rounds: usize) -> anyhow::Result<Vec<f64>> {
    let port = setup.port();
    let mut times = Vec::new();
    for i in 0..rounds {
        let name = format!("deploy-{i}-{:x}", std::process::id());
        let spec = format!("{{\"service\":\"{name}\",\"image\":\"bench:latest\"}}");
        let started = Instant::now();
        let auth = setup.auth.as_deref();
        let code = http_send_as(port, "POST", "/system/functions", &spec, auth);
        if code != Some(202) {
            bail!("deploying {name}: {code:?}");
        }
        loop {
            if http_send(port, "POST", &format!("/function/{name}"), "x") == Some(200) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{name} never answered");
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        http_send_as(port, "DELETE", "/system/functions", &format!("{{\"functionName\":\"{name}\"}}"), auth);
    }
    Ok(times)
}

/// Request at zero replicas to its answer, `rounds` times: a function
/// deployed at zero (`com.openfaas.scale.min: 0`), called once.
pub(super) fn cold_start_times(setup: &Setup, rounds: usize) -> anyhow::Result<Vec<f64>> {
    let port = setup.port();
    let auth = setup.auth.as_deref();
    let mut times = Vec::new();
    for i in 0..rounds {
        let name = format!("cold-{i}-{:x}", std::process::id());
        let spec = format!(
            "{{\"service\":\"{name}\",\"image\":\"bench:latest\",\"labels\":{{\"com.openfaas.scale.min\":\"0\"}}}}"
        );
        let code = http_send_as(port, "POST", "/system/functions", &spec, auth);
        if code != Some(202) {
            bail!("deploying {name}: {code:?}");
        }
        // Let the gateway see it (the Swarm's routes refresh every second).
        std::thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        let code = http_send(port, "POST", &format!("/function/{name}"), "x");
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if code != Some(200) {
            bail!("{name} at zero answered {code:?}");
        }
        times.push(elapsed);
        http_send_as(port, "DELETE", "/system/functions", &format!("{{\"functionName\":\"{name}\"}}"), auth);
    }
    Ok(times)
}

/// The floor of a deploy: the same replica started by hand until it answers
/// (a process; a container, `docker run`; a Swarm service with its port
/// published on this host, `docker service create -d`).
pub(super) fn floor_times(ctx: &Ctx, provider: &str, rounds: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    let image_id = if provider == "swarm" {
        let out =
            Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", "bench:latest"]).output()?;
        String::from_utf8(out.stdout)?.trim().to_owned()
    } else {
        String::new()
    };
    for i in 0..rounds {
        let started = Instant::now();
        if provider == "swarm" {
            let name = format!("ferrofaas-bench-floor-{i}-{:x}", std::process::id());
            let port = free_port()?;
            let out = Command::new("docker")
                .args(["service", "create", "-d", "--name", &name, "--endpoint-mode", "dnsrr", "--publish"])
                .arg(format!("mode=host,target=8080,published={port}"))
                .arg(&image_id)
                .output()?;
            if !out.status.success() {
                bail!("docker service create: {}", String::from_utf8_lossy(&out.stderr));
            }
            while http_status(port, "/_/ready") != Some(200) {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("the floor service never answered");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            let _ = Command::new("docker").args(["service", "rm", &name]).output();
            // Its port is free again once its task is gone.
            std::thread::sleep(Duration::from_secs(2));
        } else if provider == "docker" {
            let name = format!("ferrofaas-bench-floor-{i}-{:x}", std::process::id());
            let out = Command::new("docker")
                .args(["run", "-d", "--rm", "--network", "ferrofaas", "--name", &name, "bench:latest"])
                .output()?;
            if !out.status.success() {
                bail!("docker run: {}", String::from_utf8_lossy(&out.stderr));
            }
            let ip = String::from_utf8(
                Command::new("docker")
                    .args([
                        "inspect",
                        "-f",
                        "{{(index .NetworkSettings.Networks \"ferrofaas\").IPAddress}}",
                        &name,
                    ])
                    .output()?
                    .stdout,
            )?;
            let addr: SocketAddr = format!("{}:8080", ip.trim()).parse()?;
            while status_at(addr, "/_/ready") != Some(200) {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("the floor container never answered");
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        } else {
            let port = free_port()?;
            let setup =
                ctx.watchdog("floor", port, &[("mode", "streaming".into()), ("fprocess", "cat".into())])?;
            let setup = Setup::of(vec![setup], String::new(), None);
            while http_status(port, "/_/ready") != Some(200) {
                if started.elapsed() > Duration::from_secs(10) {
                    bail!("the floor watchdog never answered");
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            drop(setup);
        }
    }
    Ok(times)
}

pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Small appends, each followed by `fdatasync`, per second.
pub(super) fn fsync_rate(dir: &Path, span: Duration) -> anyhow::Result<f64> {
    use std::os::fd::AsRawFd;
    let path = dir.join("fsync-floor.dat");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < span {
        file.write_all(&[b'x'; 100])?;
        // SAFETY: fdatasync on a descriptor we own.
        if unsafe { libc::fdatasync(file.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Is the local engine a Swarm manager?
pub(super) fn swarm_manager() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.Swarm.ControlAvailable}}"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}
