//! # faas-watchdog
//!
//! The process that sits in front of every ferrofaas function replica. It
//! speaks HTTP to the gateway and runs the function in one of four modes
//! (`streaming`, `serializing`, `http`, `static`, and with the `wasm`
//! feature `wasm`, a WebAssembly component), configured by the same
//! environment variables as OpenFaaS's of-watchdog (see [`config`]).
//!
//! Where to start reading: [`server::run`] is the whole life of a watchdog
//! (start, serve, drain); `fork` and `proxy` are the request paths of the
//! fork modes and of `http` mode; `body` is the one response body type.
//!
//! Private endpoints, never sent to the function: `/_/health` (liveness),
//! `/_/ready` (readiness: 503 while starting or draining, 429 at
//! `max_inflight`) and `/_/metrics` (Prometheus).

mod body;
pub mod config;
mod fork;
pub mod logging;
mod logs;
pub mod metrics;
mod oom;
mod process;
mod proxy;
mod reply;
mod request;
mod server;
mod static_files;
mod tunnel;
#[cfg(feature = "wasm")]
mod wasm;

pub use config::{Config, ConfigError, LogFormat, Mode};
pub use server::run;
