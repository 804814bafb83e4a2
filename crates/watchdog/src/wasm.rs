//! `wasm` mode: the function is a WebAssembly component (`fprocess` names
//! its file), and every request gets a fresh instance of it
//! ([`ferrofaas_wasm`]). There is no process to start or to wait for: the
//! replica is ready once the component is loaded.
//!
//! Its instances get the watchdog's environment (as a forked function
//! would) and read its secrets at `/var/openfaas/secrets`; nothing else of
//! the replica's files, no sockets, no outgoing HTTP.

use std::io;
use std::time::Instant;

use ferrofaas_wasm::{Failure, Function, Runtime, RuntimeOptions, SECRETS_PATH, Settings};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::{Config, ENV_SECRET_MOUNT_PATH};
use crate::reply::error_response;
use crate::request::Deadline;

/// Instances that may run at once without `max_inflight`.
const DEFAULT_SLOTS: u32 = 64;

/// Variables of the watchdog's own that its instances do not get.
const PRIVATE_ENV: &[&str] = &["LISTEN_FDS", "LISTEN_PID"];

pub struct Wasm {
    function: Function,
}

impl Wasm {
    /// Loads the component: the precompiled one if it is of this engine,
    /// else `fprocess` compiled here (seconds for a large component).
    pub fn new(config: &Config) -> io::Result<Wasm> {
        let slots = u32::try_from(config.max_inflight).ok().filter(|&n| n > 0).unwrap_or(DEFAULT_SLOTS);
        let runtime =
            Runtime::new(RuntimeOptions { instances: slots, max_memory_bytes: config.wasm_memory_limit })
                .map_err(io::Error::other)?;
        let started = Instant::now();
        let precompiled = config.wasm_precompiled.as_deref().and_then(|path| match runtime.load(path) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(error = %e, "the precompiled component cannot be used; compiling the component");
                None
            }
        });
        let component = match precompiled {
            Some(component) => component,
            None => {
                let file =
                    config.fprocess.first().ok_or_else(|| io::Error::other("wasm mode needs fprocess"))?;
                runtime.load(file.as_ref()).map_err(io::Error::other)?
            }
        };
        let mut env: Vec<(String, String)> =
            std::env::vars().filter(|(k, _)| !PRIVATE_ENV.contains(&k.as_str())).collect();
        env.retain(|(k, _)| k != ENV_SECRET_MOUNT_PATH);
        env.push((ENV_SECRET_MOUNT_PATH.into(), SECRETS_PATH.into()));
        let secrets = Some(config.secret_mount_path.clone()).filter(|p| p.is_dir());
        let settings = Settings { env, secrets, memory_bytes: config.wasm_memory_limit };
        let function = runtime.function(&component, settings).map_err(io::Error::other)?;
        tracing::info!(
            elapsed = ?started.elapsed(),
            instances = slots,
            memory_limit_mib = config.wasm_memory_limit >> 20,
            "component loaded"
        );
        Ok(Wasm { function })
    }

    pub async fn serve(&self, req: Request<Incoming>, deadline: Deadline) -> Response<Body> {
        let timeout = deadline.at().map(|at| at.saturating_duration_since(tokio::time::Instant::now()));
        match self.function.handle(req, timeout).await {
            Ok(resp) => resp.map(Body::wasm),
            Err(failure) => {
                let status = match &failure {
                    Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    Failure::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
                    Failure::NoResponse => StatusCode::BAD_GATEWAY,
                    Failure::OutOfMemory(_) | Failure::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                match &failure {
                    Failure::Failed(why) => tracing::error!("{why}"),
                    other => tracing::warn!("{other}"),
                }
                let message = match &failure {
                    // The trap's backtrace goes to the log, not to the caller.
                    Failure::Failed(_) => "the function failed; see its logs".to_owned(),
                    Failure::Timeout(_) => {
                        format!("the function did not finish within exec_timeout ({:?})", deadline.limit())
                    }
                    other => other.to_string(),
                };
                error_response(status, &message)
            }
        }
    }
}
