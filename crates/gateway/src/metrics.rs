//! `/metrics`: OpenFaaS's gateway metric names, from the routes' statistics.

use std::fmt::Write as _;

use ferrofaas_provider::Provider;
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

    prom::header(
        &mut out,
        "gateway_function_invocation_started",
        "counter",
        "Invocations started, per function.",
    );
    for (route, (name, _)) in routes.iter().zip(&snapshots) {
        let _ = writeln!(
            out,
            "gateway_function_invocation_started{{function_name=\"{name}\"}} {}",
            route.stats.started_total()
        );
    }

    prom::header(&mut out, "gateway_service_count", "gauge", "Replicas of each function (desired).");
    for (route, (name, _)) in routes.iter().zip(&snapshots) {
        let _ = writeln!(out, "gateway_service_count{{function_name=\"{name}\"}} {}", route.desired());
    }
    out
}
