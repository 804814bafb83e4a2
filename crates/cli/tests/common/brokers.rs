//! Brokers for a test: a NATS server with JetStream (Debian's
//! `nats-server`) and Mosquitto, each on a port of its own.

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
        let _ = self.child.kill();
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

/// Starts a server quietly and waits until it listens on `port`.
fn start(mut command: std::process::Command, port: u16, url: String, dir: tempfile::TempDir) -> Server {
    let what = command.get_program().to_string_lossy().into_owned();
    let child =
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, port, url, _dir: dir }
}
