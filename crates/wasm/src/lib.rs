//! # ferrofaas-wasm
//!
//! WebAssembly functions: components of the `wasi:http` proxy world (the
//! `incoming-handler` export, as Spin and `wasmtime serve` run them), each
//! request served by a fresh instance of its own.
//!
//! - [`Runtime`]: one per process. The engine (Cranelift, a pooling
//!   allocator whose slots bound how many instances run at once and how
//!   large each memory may grow), the linker (WASI and `wasi:http`, without
//!   outgoing HTTP: the instances' hooks refuse every outgoing request, and
//!   `wasmtime-wasi-http` is built without its client) and the epoch
//!   clock at whose ticks running instances yield, so that a request past
//!   its deadline can be dropped.
//! - [`Function`]: one component, pre-instantiated, with what its instances
//!   are given ([`Settings`]: environment, secrets as read-only files, a
//!   memory limit). [`Function::handle`] serves one request in a new store.
//!
//! What an instance can reach is only what WASI gives it here: its
//! environment, the folder of its secrets (read-only), stdout and stderr
//! (the replica's log), clocks and random numbers. No sockets (no address
//! passes the socket check), no other files, no outgoing HTTP.
//!
//! Components are compiled once: [`Runtime::load`] takes a `.wasm` component
//! or a precompiled one ([`Runtime::precompile`]), checked by wasmtime to be
//! of this engine's version and settings before it is used.

mod clock;
mod limits;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::clock::EpochClock;
use crate::limits::Memory;

/// Where a function's secrets are, inside its instances (as OpenFaaS mounts them).
pub const SECRETS_PATH: &str = "/var/openfaas/secrets";

/// The body of a function's response, as the component writes it.
pub type ResponseBody = HyperOutgoingBody;

/// How a request failed, for the status the caller answers with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Past its deadline: the instance was stopped.
    #[error("the function did not finish within {0:?}")]
    Timeout(Duration),
    /// The instance asked for more memory than its limit.
    #[error("the function went over its memory limit of {} MiB", .0 >> 20)]
    OutOfMemory(u64),
    /// Every instance slot is taken.
    #[error("too many requests in flight: all {0} instance slots are in use")]
    Busy(u32),
    /// The component trapped or failed before answering.
    #[error("the function failed: {0}")]
    Failed(String),
    /// The component returned without setting a response.
    #[error("the function returned without a response")]
    NoResponse,
}

/// Errors of loading a component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("not a wasi:http component: {0}")]
    Invalid(String),
}

/// What a [`Runtime`] allows, for all the functions it runs.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeOptions {
    /// Instances alive at once (each request has one), over all functions.
    pub instances: u32,
    /// The largest memory limit a function may be given.
    pub max_memory_bytes: u64,
}

impl Default for RuntimeOptions {
    fn default() -> RuntimeOptions {
        RuntimeOptions { instances: 128, max_memory_bytes: 1 << 30 }
    }
}

/// The engine, linker and clock of every function of a process.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<Instance>>,
    clock: Arc<EpochClock>,
    options: RuntimeOptions,
}

/// Per-instance memories and tables of the components this runtime takes
/// (a Python component from componentize-py has a handful of each: the
/// interpreter, libc, the WASI adapter).
const PER_COMPONENT: u32 = 32;

/// Bytes of each memory that a slot keeps resident between instances (a
/// Python instance writes a few MB of its interpreter's heap).
const KEEP_RESIDENT: usize = 16 << 20;

/// The stack an instance runs on (wasmtime's default; its wasm stack is
/// at most 512 KiB of it).
const ASYNC_STACK: usize = 2 << 20;

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Runtime, LoadError> {
        let engine =
            Engine::new(&engine_config(options)).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let clock = EpochClock::start(engine.clone());
        Ok(Runtime { engine, linker: Arc::new(linker), clock, options })
    }

    pub fn options(&self) -> RuntimeOptions {
        self.options
    }

    /// A component compiled to this engine's machine code, to be given to
    /// [`Runtime::load`] in place of the `.wasm` file. Fails, as
    /// [`Runtime::function`] would, on a component that is not of the
    /// world functions run in (a `wasi:http` handler with WASI imports).
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, LoadError> {
        let component =
            Component::new(&self.engine, wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.function(&component, Settings::default())?;
        component.serialize().map_err(|e| LoadError::Invalid(format!("{e:#}")))
    }

    /// Compiles (a `.wasm` component) or maps (a precompiled one) `path`.
    pub fn load(&self, path: &Path) -> Result<Component, LoadError> {
        let file_error = |message: String| LoadError::File { path: path.to_owned(), message };
        // A precompiled file is an ELF object; wasmtime's own detection of
        // a file fails on anything else, so the magic decides first.
        let mut magic = [0u8; 4];
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map_err(|e| file_error(e.to_string()))?;
        let kind = match &magic {
            b"\x7fELF" => Engine::detect_precompiled_file(path).map_err(|e| file_error(format!("{e:#}")))?,
            _ => None,
        };
        match kind {
            Some(wasmtime::Precompiled::Component) => {
                // SAFETY: wasmtime checks the file's header (its version and
                // this engine's settings) before it maps it; the file itself
                // must be one `precompile` wrote, which callers ensure: the
                // platform writes them in its own folders, never a function.
                // Mapped, not read: its pages are the page cache's, shared
                // by every replica of the function.
                unsafe { Component::deserialize_file(&self.engine, path) }
                    .map_err(|e| file_error(format!("precompiled for another engine: {e:#}")))
            }
            Some(wasmtime::Precompiled::Module) => {
                Err(LoadError::Invalid("a precompiled core module, not a component".into()))
            }
            None => {
                let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
                Component::new(&self.engine, &bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))
            }
        }
    }

    /// A function of `component`: its imports resolved and its export
    /// checked once, here, so that each request only instantiates.
    pub fn function(&self, component: &Component, settings: Settings) -> Result<Function, LoadError> {
        if settings.memory_bytes > self.options.max_memory_bytes {
            return Err(LoadError::Invalid(format!(
                "a memory limit of {} MiB is more than this host allows ({} MiB)",
                settings.memory_bytes >> 20,
                self.options.max_memory_bytes >> 20
            )));
        }
        let pre = self.linker.instantiate_pre(component).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        Ok(Function {
            pre,
            clock: Arc::clone(&self.clock),
            settings: Arc::new(settings),
            instances: self.options.instances,
        })
    }
}

fn engine_config(options: RuntimeOptions) -> wasmtime::Config {
    let mut pool = PoolingAllocationConfig::new();
    let slots = options.instances.max(1);
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(PER_COMPONENT))
        .total_memories(slots.saturating_mul(PER_COMPONENT))
        .total_tables(slots.saturating_mul(PER_COMPONENT))
        .total_stacks(slots)
        .max_core_instances_per_component(PER_COMPONENT)
        .max_memories_per_component(PER_COMPONENT)
        .max_tables_per_component(PER_COMPONENT)
        .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX))
        // Warm slots keep their pages: the next instance of the same
        // component starts from a copy-on-write image it does not rebuild,
        // and (where the kernel has PAGEMAP_SCAN, 6.7 and later) only the
        // pages the last instance wrote are copied back from the image,
        // rather than unmapped and faulted in again by the next.
        .max_unused_warm_slots(slots.min(16))
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(1 << 20)
        .pagemap_scan(wasmtime::Enabled::Auto)
        // An instance's stack is reset in place, and what must be given
        // back to the kernel goes in batches: each `madvise` makes every
        // core flush its TLB. (Those flushes are still most of a Python
        // instance's cost on two cores: docs/PERFORMANCE.md.)
        .async_stack_keep_resident(ASYNC_STACK)
        .decommit_batch_size(64);
    let mut config = wasmtime::Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .async_stack_size(ASYNC_STACK)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .parallel_compilation(true);
    config
}

/// Why an instance's task ended without a response.
enum Stopped {
    Deadline,
    Error(wasmtime::Error),
}

/// What a function's instances are given.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Their environment, whole: nothing of the host's is inherited.
    pub env: Vec<(String, String)>,
    /// A folder whose files they may read at [`SECRETS_PATH`].
    pub secrets: Option<PathBuf>,
    /// Bytes each instance's memories may grow to, together.
    pub memory_bytes: u64,
}

/// One component, ready to serve requests, each with a new instance.
pub struct Function {
    pre: ProxyPre<Instance>,
    clock: Arc<EpochClock>,
    settings: Arc<Settings>,
    instances: u32,
}

/// The state of one instance's store.
struct Instance {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    memory: Memory,
    hooks: NoOutgoing,
}

/// The `wasi:http` hooks of an instance: every outgoing request is refused
/// (`HTTP-request-denied`), so a function reaches no other function, nor
/// the gateway, nor anything on the host's network.
struct NoOutgoing;

impl wasmtime_wasi_http::WasiHttpHooks for NoOutgoing {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = OutgoingResult> + Send> {
        Box::new(std::future::ready(Err(wasmtime_wasi_http::Error::HttpRequestDenied)))
    }
}

type OutgoingResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiView for Instance {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Instance {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl Function {
    /// Serves `req` with a new instance, stopped at `timeout` (`None`: never).
    ///
    /// The response comes back as soon as the component sets it; its body
    /// streams while the instance goes on writing it, and ends with an error
    /// if the instance fails or runs out of time meanwhile.
    pub async fn handle<B>(
        &self,
        mut req: Request<B>,
        timeout: Option<Duration>,
    ) -> Result<Response<ResponseBody>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // wasi:http requires an authority; a request without a Host gets one.
        if req.uri().authority().is_none() && !req.headers().contains_key(http::header::HOST) {
            req.headers_mut().insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let over_limit = Arc::new(AtomicBool::new(false));
        let mut store = Store::new(
            self.pre.engine(),
            Instance {
                wasi: self.wasi()?,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                memory: Memory::new(self.settings.memory_bytes, Arc::clone(&over_limit)),
                hooks: NoOutgoing,
            },
        );
        store.limiter(|instance| &mut instance.memory);
        // Every tick a running instance yields to the runtime: one that
        // spins holds no thread, and its deadline (below) can end it.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (request, out) = {
            let mut http = store.data_mut().http();
            let request = http
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| Failure::Failed(format!("{e:#}")))?;
            let out = http.new_response_outparam(sender).map_err(|e| Failure::Failed(format!("{e:#}")))?;
            (request, out)
        };
        let pre = self.pre.clone();
        let running = self.clock.running();
        // The instance runs in a task of its own: it may go on writing the
        // body after the response's head has gone back.
        let task = tokio::spawn(async move {
            let _running = running;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
            };
            match timeout {
                // Dropped at the deadline, the instance is gone: its store
                // and memories with it.
                Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| Stopped::Deadline)?,
                None => run.await,
            }
            .map_err(Stopped::Error)
        });
        let failure = |e: wasmtime::Error| self.failure(e, &over_limit);
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(Failure::Failed(format!("the function answered with an error: {code:?}"))),
            // No response set: the task's end says why.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(Failure::NoResponse),
                Ok(Err(Stopped::Deadline)) => Err(Failure::Timeout(timeout.unwrap_or_default())),
                Ok(Err(Stopped::Error(e))) => Err(failure(e)),
                Err(e) => Err(Failure::Failed(format!("the instance's task ended: {e}"))),
            },
        }
    }

    fn wasi(&self) -> Result<WasiCtx, Failure> {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&self.settings.env)
            .inherit_stdout()
            .inherit_stderr()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = &self.settings.secrets {
            wasi.preopened_dir(dir, SECRETS_PATH, FsPerms::ReadOnly)
                .map_err(|e| Failure::Failed(format!("the secrets folder: {e:#}")))?;
        }
        Ok(wasi.build())
    }

    fn failure(&self, e: wasmtime::Error, over_limit: &AtomicBool) -> Failure {
        if over_limit.load(Ordering::Relaxed) {
            return Failure::OutOfMemory(self.settings.memory_bytes);
        }
        if e.downcast_ref::<Trap>().is_some() {
            return Failure::Failed(format!("{e:#}"));
        }
        let text = format!("{e:#}");
        // The pooling allocator's refusal when every slot is taken.
        if text.contains("concurrent") && text.contains("limit") {
            return Failure::Busy(self.instances);
        }
        Failure::Failed(text)
    }
}
