//! Brokers for a test: a NATS server with JetStream (Debian's
//! `nats-server`), Mosquitto and RabbitMQ, each on a port of its own.

use std::time::Duration;

use ferrofaas_testkit::require;

/// A broker process, stopped when dropped; `url` is where it listens.
pub struct Server {
    child: std::process::Child,
    pub port: u16,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server's process group: RabbitMQ's script and its VM.
        let pid = self.child.id() as i32;
        // SAFETY: signals a process group this test started.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A NATS server with JetStream on a free port.
pub fn nats() -> Server {
    nats_on(free_port())
}

/// A NATS server with JetStream on `port`.
pub fn nats_on(port: u16) -> Server {
    let present = std::process::Command::new("nats-server").arg("--version").output().is_ok();
    require(present, "nats-server", "apt-get install nats-server; .ci/run does");
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("nats-server");
    command.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]).arg(dir.path());
    start(command, port, format!("nats://127.0.0.1:{port}"), dir)
}

/// A NATS server with JetStream on a free port that takes only the
/// clients that give `user` and `password` (its URL carries them).
pub fn nats_with_user(user: &str, password: &str) -> Server {
    let present = std::process::Command::new("nats-server").arg("--version").output().is_ok();
    require(present, "nats-server", "apt-get install nats-server; .ci/run does");
    let (dir, port) = (tempfile::tempdir().unwrap(), free_port());
    let mut command = std::process::Command::new("nats-server");
    command.args([
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--user",
        user,
        "--pass",
        password,
        "-sd",
    ]);
    command.arg(dir.path());
    start(command, port, format!("nats://{user}:{password}@127.0.0.1:{port}"), dir)
}

/// Mosquitto on a free port.
pub fn mosquitto() -> Server {
    let present = std::process::Command::new("mosquitto").arg("-h").output().is_ok();
    require(present, "mosquitto", "apt-get install mosquitto mosquitto-clients; .ci/run does");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let mut command = std::process::Command::new("mosquitto");
    command.arg("-c").arg(&conf);
    start(command, port, format!("mqtt://127.0.0.1:{port}"), dir)
}

/// Debian's RabbitMQ server on a free port, run as this user (not the
/// `rabbitmq` user the packaged script switches to), its data in a folder
/// of its own, `guest:guest` allowed from this machine.
pub fn rabbitmq() -> Server {
    const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
    require(
        std::path::Path::new(SERVER).exists(),
        "rabbitmq-server",
        "apt-get install rabbitmq-server; .ci/run does",
    );
    let dir = tempfile::tempdir().unwrap();
    let (port, dist) = (free_port(), free_port());
    let d = dir.path();
    std::fs::write(d.join("plugins"), "[].\n").unwrap();
    std::fs::write(d.join("rabbitmq.conf"), "loopback_users = none\n").unwrap();
    let mut command = std::process::Command::new(SERVER);
    command
        .env("HOME", d)
        .env("RABBITMQ_NODENAME", format!("ff{port}@localhost"))
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist.to_string())
        .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", d.join("log"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
        .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"));
    start_within(command, port, format!("amqp://guest:guest@127.0.0.1:{port}"), dir, Duration::from_secs(90))
}

/// Starts a server quietly and waits until it listens on `port`.
fn start(command: std::process::Command, port: u16, url: String, dir: tempfile::TempDir) -> Server {
    start_within(command, port, url, dir, Duration::from_secs(10))
}

fn start_within(
    mut command: std::process::Command,
    port: u16,
    url: String,
    dir: tempfile::TempDir,
    within: Duration,
) -> Server {
    use std::os::unix::process::CommandExt;
    let what = command.get_program().to_string_lossy().into_owned();
    let child = command
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, port, url, _dir: dir }
}
