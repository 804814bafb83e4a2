//! # ferrofaas-gateway
//!
//! The edge of ferrofaas: the OpenFaaS REST API (`/system/*`, behind basic
//! auth), invocations (`/function/<name>[.<namespace>]/...`, open as in
//! OpenFaaS), `/metrics` and `/healthz`, over any
//! [`Provider`](ferrofaas_provider::Provider).
//!
//! Start reading at [`server::Gateway::handle`] (routing) and
//! [`proxy::Invoker::invoke`] (the request path).

pub mod api;
pub mod auth;
pub mod autoscale;
pub mod body;
pub mod callback;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod gateway;
pub mod history;
pub mod invocation;
pub mod metrics;
pub mod proxy;
pub mod request_body;
pub mod server;
pub mod tunnel;
pub mod ui;

pub use auth::Credentials;
pub use config::GatewayConfig;
pub use gateway::Gateway;
pub use server::run;
