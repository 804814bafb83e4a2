//! `/metrics`: OpenFaaS's gateway metric names, from the routes' statistics,
//! and the autoscaler's: replicas wanted and ready, the target load, time
//! spent waiting for a replica and starts from zero.

use std::fmt::Write as _;

use ferrofaas_provider::{FunctionRoute, Provider};
use ferrofaas_types::prom;

pub fn render(provider: &dyn Provider) -> String {
    let routes = provider.routes().all();
    let mut out = String::with_capacity(1024 + routes.len() * 2048);

    prom::header(
        &mut out,
        "gateway_function_invocation_total",
        "counter",
        "Invocations of each function, by status code.",
    );
    let snapshots: Vec<_> =
        routes.iter().map(|r| (prom::escape(&r.function.to_string()), r.stats.snapshot())).collect();
    for (name, by_code) in &snapshots {
        for (code, h) in by_code {
            let _ = writeln!(
                out,
                "gateway_function_invocation_total{{code=\"{code}\",function_name=\"{name}\"}} {}",
                h.count
            );
        }
    }

    prom::header(
        &mut out,
        "gateway_functions_seconds",
        "histogram",
        "Duration of invocations, by status code.",
    );
    for (name, by_code) in &snapshots {
        for (code, h) in by_code {
            h.write(
                &mut out,
                "gateway_functions_seconds",
                &format!("code=\"{code}\",function_name=\"{name}\""),
            );
        }
    }

    let names: Vec<&str> = snapshots.iter().map(|(name, _)| name.as_str()).collect();
    let per_function = |out: &mut String, metric, kind, help, value: &dyn Fn(&FunctionRoute) -> u64| {
        prom::header(out, metric, kind, help);
        for (route, name) in routes.iter().zip(&names) {
            let _ = writeln!(out, "{metric}{{function_name=\"{name}\"}} {}", value(route));
        }
    };
    per_function(
        &mut out,
        "gateway_function_invocation_started",
        "counter",
        "Invocations started, per function.",
        &|r| r.stats.started_total(),
    );
    per_function(
        &mut out,
        "gateway_function_invocation_inflight",
        "gauge",
        "Invocations in flight, per function.",
        &|r| r.stats.in_flight().unsigned_abs(),
    );
    per_function(&mut out, "gateway_service_count", "gauge", "Replicas of each function (desired).", &|r| {
        r.desired()
    });
    per_function(
        &mut out,
        "gateway_service_ready_count",
        "gauge",
        "Replicas of each function ready for requests.",
        &|r| r.ready_count() as u64,
    );

    prom::header(
        &mut out,
        "gateway_service_target_load",
        "gauge",
        "The load per replica each function is scaled to (com.openfaas.scale.target), by scaling type; \
         for Community Edition's rule (scaling_type alert), the requests per second of all its replicas \
         above which it fires.",
    );
    for (route, name) in routes.iter().zip(&names) {
        let policies = route.policies();
        let policy = &policies.scaling;
        let (kind, target) = match policy.alert {
            Some(_) => ("alert", ferrofaas_types::scaling::AlertScaling::RATE),
            None => (policy.kind.as_str(), policy.target),
        };
        let _ = writeln!(
            out,
            "gateway_service_target_load{{function_name=\"{name}\",scaling_type=\"{kind}\"}} {target}"
        );
    }

    prom::header(
        &mut out,
        "gateway_function_cold_start_seconds",
        "histogram",
        "Time invocations waited for a ready replica (starting, or started from zero).",
    );
    for (route, name) in routes.iter().zip(&names) {
        route.stats.waits().write(
            &mut out,
            "gateway_function_cold_start_seconds",
            &format!("function_name=\"{name}\""),
        );
    }

    per_function(
        &mut out,
        "gateway_function_cold_starts_total",
        "counter",
        "Starts of each function from zero replicas.",
        &|r| r.stats.cold_starts(),
    );
    out
}

/// The asynchronous queue's metrics, per function.
pub fn render_queue(out: &mut String, stats: &ferrofaas_queue::QueueStats) {
    for (name, kind, help, values) in [
        ("gateway_async_pending", "gauge", "Asynchronous calls waiting or running.", &stats.pending),
        ("gateway_async_processed_total", "counter", "Asynchronous calls finished.", &stats.processed),
        (
            "gateway_async_retried_total",
            "counter",
            "Asynchronous call attempts to be retried.",
            &stats.retried,
        ),
        (
            "gateway_async_dead_lettered_total",
            "counter",
            "Asynchronous calls out of attempts.",
            &stats.dead_lettered,
        ),
    ] {
        prom::header(out, name, kind, help);
        for (function, n) in values {
            let _ = writeln!(out, "{name}{{function_name=\"{}\"}} {n}", prom::escape(function));
        }
    }
}
