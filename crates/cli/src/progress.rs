//! What a build shows while it runs: a spinner line per function with the
//! step it is on (on a terminal), plain step lines (otherwise), nothing
//! (`--quiet`), or one JSON object per function (`--json`).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Spinner,
    Plain,
    Quiet,
    Json,
}

impl Mode {
    pub fn pick(quiet: bool, json: bool) -> Mode {
        if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Spinner
        } else {
            Mode::Plain
        }
    }
}

/// The progress of one function's build.
pub struct Task {
    mode: Mode,
    name: String,
    started: Instant,
    step: Arc<Mutex<String>>,
    spinner: Option<(Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Task {
    pub fn start(mode: Mode, name: &str) -> Task {
        let step = Arc::new(Mutex::new("starting".to_owned()));
        let spinner = (mode == Mode::Spinner).then(|| {
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (d, s, n, t0) = (Arc::clone(&done), Arc::clone(&step), name.to_owned(), Instant::now());
            let handle = std::thread::spawn(move || {
                const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
                let mut i = 0;
                while !d.load(std::sync::atomic::Ordering::Relaxed) {
                    let step = s.lock().map(|s| s.clone()).unwrap_or_default();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2K{} {n}: {step} ({:.1}s)",
                        FRAMES[i % FRAMES.len()],
                        t0.elapsed().as_secs_f64()
                    );
                    let _ = err.flush();
                    drop(err);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            (done, handle)
        });
        Task { mode, name: name.to_owned(), started: Instant::now(), step, spinner }
    }

    pub fn step(&self, step: &str) {
        if let Ok(mut s) = self.step.lock() {
            *s = step.to_owned();
        }
        if self.mode == Mode::Plain {
            eprintln!("{}: {step}", self.name);
        }
    }

    fn stop_spinner(&mut self) {
        if let Some((done, handle)) = self.spinner.take() {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = handle.join();
            eprint!("\r\x1b[2K");
        }
    }

    /// The build is done: one line, or one JSON object.
    pub fn finish(mut self, outcome: &str, detail: serde_json::Value) {
        self.stop_spinner();
        let secs = self.started.elapsed().as_secs_f64();
        match self.mode {
            Mode::Spinner => eprintln!("✔ {}: {outcome} ({secs:.1}s)", self.name),
            Mode::Plain => eprintln!("{}: {outcome} ({secs:.1}s)", self.name),
            Mode::Quiet => {}
            Mode::Json => {
                let mut v = serde_json::json!({ "function": self.name, "status": outcome, "seconds": (secs * 1000.0).round() / 1000.0 });
                if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), detail) {
                    obj.extend(extra);
                }
                println!("{v}");
            }
        }
    }

    pub fn fail(mut self, error: &anyhow::Error) {
        self.stop_spinner();
        match self.mode {
            Mode::Spinner => eprintln!("✘ {}: failed", self.name),
            Mode::Plain => eprintln!("{}: failed", self.name),
            Mode::Quiet => {}
            Mode::Json => println!(
                "{}",
                serde_json::json!({ "function": self.name, "status": "failed", "error": format!("{error:#}") })
            ),
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.stop_spinner();
    }
}
