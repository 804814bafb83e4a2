//! The epoch clock that makes running instances yield.
//!
//! Wasmtime checks a store's epoch deadline at function entries and loop
//! heads; the engine's epoch moves when [`Engine::increment_epoch`] is
//! called. Each store's deadline is the next tick, at which its instance
//! yields to the async runtime (so that one that spins holds no thread) and
//! can be dropped at its request's deadline. A thread moves the epoch every
//! [`TICK`], but only while some instance runs: an idle replica's clock
//! sleeps, so a thousand idle functions cost no wake-ups.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch moves while instances run: how long an instance
/// runs before it yields, and so how closely a deadline is kept.
pub const TICK: Duration = Duration::from_millis(5);

pub struct EpochClock {
    /// Instances running now.
    running: Mutex<usize>,
    wake: Condvar,
}

impl EpochClock {
    pub fn start(engine: Engine) -> Arc<EpochClock> {
        let clock = Arc::new(EpochClock { running: Mutex::new(0), wake: Condvar::new() });
        let weak = Arc::downgrade(&clock);
        let spawned = std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            loop {
                let Some(clock) = weak.upgrade() else { return };
                {
                    let mut running = clock.running.lock().unwrap_or_else(|e| e.into_inner());
                    while *running == 0 {
                        // Woken by the first instance to run; or, now and
                        // then, to see whether the runtime has gone.
                        let (guard, _) = clock
                            .wake
                            .wait_timeout(running, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner());
                        running = guard;
                        if *running == 0 && Arc::strong_count(&clock) == 1 {
                            return;
                        }
                    }
                }
                drop(clock);
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the epoch clock: deadlines will not be kept");
        }
        clock
    }

    /// Counts an instance as running until the guard drops.
    pub fn running(self: &Arc<Self>) -> Running {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        *running += 1;
        if *running == 1 {
            self.wake.notify_one();
        }
        Running { clock: Arc::clone(self) }
    }
}

pub struct Running {
    clock: Arc<EpochClock>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.clock.running.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
    }
}
