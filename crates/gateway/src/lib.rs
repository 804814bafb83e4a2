//! # ferrofaas-gateway
//!
//! The edge of ferrofaas: the OpenFaaS REST API (`/system/*`, behind basic
//! auth), invocations (`/function/<name>[.<namespace>]/...`, open as in
//! OpenFaaS), `/metrics` and `/healthz`, over any
//! [`Provider`](ferrofaas_provider::Provider).
//!
//! Start reading at [`Gateway::handle`] (routing, in `server`), then
//! [`proxy::Invoker::invoke`] (the request path) and [`api::routes`] (the
//! API's table). Files import downwards only: `server` -> `api` and
//! `dispatch` -> `gateway` (the state) -> `proxy` -> `tunnel` and `body` ->
//! `invocation`.

pub mod api;
pub mod auth;
pub mod autoscale;
pub mod body;
pub mod callback;
pub mod config;
pub mod cpu;
pub mod dispatch;
pub mod error;
pub mod gateway;
pub mod history;
pub mod invocation;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod request_body;
pub mod server;
pub mod tokens;
pub mod triggers;
pub mod tunnel;
pub mod ui;

pub use auth::Credentials;
pub use config::GatewayConfig;
pub use gateway::Gateway;
pub use server::run;
