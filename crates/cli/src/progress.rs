//! What a build shows while it runs: a spinner line per function with the
//! step it is on (on a terminal, `indicatif`'s), plain step lines (otherwise), nothing
//! (`--quiet`), or one JSON object per function (`--json`).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

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
    /// On a terminal: `indicatif`'s spinner, redrawn every 100 ms.
    spinner: Option<ProgressBar>,
}

impl Task {
    pub fn start(mode: Mode, name: &str) -> Task {
        let spinner = (mode == Mode::Spinner).then(|| {
            let style = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({secs})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key("secs", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
                });
            let bar = ProgressBar::new_spinner().with_style(style).with_prefix(name.to_owned());
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Task { mode, name: name.to_owned(), started: Instant::now(), spinner }
    }

    pub fn step(&self, step: &str) {
        if let Some(bar) = &self.spinner {
            bar.set_message(step.to_owned());
        }
        if self.mode == Mode::Plain {
            eprintln!("{}: {step}", self.name);
        }
    }

    fn stop_spinner(&mut self) {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
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
