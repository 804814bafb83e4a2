//! Brokers for a test: a NATS server with JetStream (Debian's
//! `nats-server`) and Mosquitto, each on a port of its own.

use std::time::Duration;

use ferrofaas_testkit::require;

/// A NATS server with JetStream on a free port, stopped when dropped.
pub struct Nats {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS server with JetStream on a free port.
pub fn nats() -> Nats {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    nats_on(port)
}

/// A NATS server with JetStream on `port`.
pub fn nats_on(port: u16) -> Nats {
    let present = std::process::Command::new("nats-server").arg("--version").output().is_ok();
    require(present, "nats-server", "apt-get install nats-server; .ci/run does");
    let dir = tempfile::tempdir().unwrap();
    let child = start_listening(
        std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path()),
        port,
    );
    Nats { child, url: format!("nats://127.0.0.1:{port}"), _dir: dir }
}

/// Starts a server quietly and waits until it listens on `port`.
fn start_listening(command: &mut std::process::Command, port: u16) -> std::process::Child {
    let what = command.get_program().to_string_lossy().into_owned();
    let child =
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Mosquitto on a free port, stopped when dropped.
pub struct Mosquitto {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mosquitto() -> Mosquitto {
    let present = std::process::Command::new("mosquitto").arg("-h").output().is_ok();
    require(present, "mosquitto", "apt-get install mosquitto mosquitto-clients; .ci/run does");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let child = start_listening(std::process::Command::new("mosquitto").arg("-c").arg(&conf), port);
    Mosquitto { child, port, _dir: dir }
}
