//! `faas usage`: what functions used over a time range, grouped by
//! function, namespace, hour or day, with its cost at the namespaces'
//! plans (a table, `--csv`, or `--json`); `faas usage --bill` prints a
//! namespace's month.

use ferrofaas_types::query::encode;

use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub gateway: GatewayArg,
    /// From when: RFC 3339, seconds since the epoch, or a duration ago (24h, 7d)
    #[arg(long, default_value = "24h")]
    pub from: String,
    /// Until when (default: now)
    #[arg(long)]
    pub to: Option<String>,
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// One function only
    #[arg(long)]
    pub function: Option<String>,
    /// Rows per function, namespace, hour or day
    #[arg(long, default_value = "function", value_parser = ["function", "namespace", "hour", "day"])]
    pub group_by: String,
    /// CSV, as the gateway makes it
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// JSON, as the API returns it
    #[arg(long)]
    pub json: bool,
    /// A namespace's bill of a month instead (--month, default this one)
    #[arg(long, conflicts_with_all = ["csv", "group_by", "function"])]
    pub bill: bool,
    /// The bill's month, YYYY-MM
    #[arg(long, requires = "bill")]
    pub month: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::for_args(&args.gateway, None)?;
    let mut params = Vec::new();
    if args.bill {
        if let Some(ns) = &args.namespace {
            params.push(format!("namespace={}", encode(ns)));
        }
        if let Some(m) = &args.month {
            params.push(format!("month={}", encode(m)));
        }
        let bill: serde_json::Value =
            client.get_json(&format!("/system/usage/bill?{}", params.join("&"))).await?;
        print!("{}", if args.json { format!("{bill:#}\n") } else { render_bill(&bill) });
        return Ok(());
    }
    params.push(format!("from={}", encode(&args.from)));
    params.push(format!("group_by={}", args.group_by));
    for (key, value) in [("to", &args.to), ("namespace", &args.namespace), ("function", &args.function)] {
        if let Some(v) = value {
            params.push(format!("{key}={}", encode(v)));
        }
    }
    let path = format!("/system/usage?{}", params.join("&"));
    if args.csv {
        let headers = [("accept".to_owned(), "text/csv".to_owned())];
        let reply = client.request(http::Method::GET, &path, &headers, bytes::Bytes::new()).await?;
        client.check(&reply, &[200])?;
        print!("{}", String::from_utf8_lossy(&reply.body));
        return Ok(());
    }
    let report: serde_json::Value = client.get_json(&path).await?;
    print!("{}", if args.json { format!("{report:#}\n") } else { render(&report) });
    Ok(())
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// A header line, then a row per group and the total.
fn render(report: &serde_json::Value) -> String {
    let key = match report["groupBy"].as_str() {
        Some("namespace") => "Namespace",
        Some("hour" | "day") => "Period",
        _ => "Function",
    };
    let currency = report["currency"].as_str().unwrap_or("");
    let mut out = format!(
        "{key:<40}\t{:>12}\t{:>8}\t{:>14}\t{:>12}\t{:>9}\t{:>12}\n",
        "Invocations",
        "Errors",
        "GB-seconds",
        "CPU-seconds",
        "Peak MiB",
        format!("Cost ({currency})")
    );
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    for r in rows.iter().chain(std::iter::once(&report["total"])) {
        let name = match (r["period"].as_str(), r["namespace"].as_str(), r["function"].as_str()) {
            (Some(p), ..) => p.to_owned(),
            (None, Some(ns), Some(f)) => format!("{f}.{ns}"),
            (None, Some(ns), None) => ns.to_owned(),
            _ => "Total".to_owned(),
        };
        out.push_str(&format!(
            "{name:<40}\t{:>12}\t{:>8}\t{:>14.6}\t{:>12.6}\t{:>9.1}\t{:>12.6}\n",
            r["invocations"].as_u64().unwrap_or(0),
            r["errors"].as_u64().unwrap_or(0),
            num(&r["gbSeconds"]),
            num(&r["cpuSeconds"]),
            num(&r["peakMemoryMib"]),
            num(&r["cost"]),
        ));
    }
    out
}

fn render_bill(bill: &serde_json::Value) -> String {
    let currency = bill["currency"].as_str().unwrap_or("");
    let mut out = format!(
        "Bill of namespace {} for {} ({})\n{:<14}\t{:>16}\t{:>14}\t{:>16}\t{:>14}\t{:>12}\n",
        bill["namespace"].as_str().unwrap_or(""),
        bill["month"].as_str().unwrap_or(""),
        currency,
        "Item",
        "Used",
        "Free",
        "Billable",
        "Unit price",
        "Amount"
    );
    for l in bill["lines"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "{:<14}\t{:>16.6}\t{:>14.6}\t{:>16.6}\t{:>14.9}\t{:>12.6}\n",
            l["item"].as_str().unwrap_or(""),
            num(&l["used"]),
            num(&l["free"]),
            num(&l["billable"]),
            num(&l["unitPrice"]),
            num(&l["amount"]),
        ));
    }
    out.push_str(&format!("{:<14}\t{:>105.6}\n", "Total", num(&bill["total"])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_a_header_and_a_total() {
        let report = serde_json::json!({
            "groupBy": "function", "currency": "USD",
            "rows": [{"namespace": "openfaas-fn", "function": "wc", "invocations": 5, "errors": 1,
                      "gbSeconds": 0.5, "cpuSeconds": 0.0, "cost": 1.25}],
            "total": {"invocations": 5, "errors": 1, "gbSeconds": 0.5, "cpuSeconds": 0.0, "cost": 1.25},
        });
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Function") && lines[0].contains("Cost (USD)"), "{text}");
        assert!(lines[1].starts_with("wc.openfaas-fn") && lines[1].contains("1.250000"), "{text}");
        assert!(lines[2].starts_with("Total"), "{text}");
    }
}
