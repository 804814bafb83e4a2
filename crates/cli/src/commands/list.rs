//! `faas list`: the deployed functions, as faas-cli prints them: a header,
//! then one function per line, name first.

use ferrofaas_types::FunctionStatus;

use crate::client::{Client, GatewayArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub gateway: GatewayArg,
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Also show the image and creation time
    #[arg(short, long)]
    pub verbose: bool,
    /// Only the names
    #[arg(short, long)]
    pub quiet: bool,
    /// JSON, as the API returns it
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::for_args(&args.gateway, None)?;
    let path = match &args.namespace {
        Some(ns) => format!("/system/functions?namespace={ns}"),
        None => "/system/functions".to_owned(),
    };
    let mut functions: Vec<FunctionStatus> = client.get_json(&path).await?;
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    print!("{}", render(&functions, &args));
    Ok(())
}

fn render(functions: &[FunctionStatus], args: &Args) -> String {
    let mut out = String::new();
    if args.json {
        out.push_str(&serde_json::to_string_pretty(functions).unwrap_or_default());
        out.push('\n');
    } else if args.quiet {
        for f in functions {
            out.push_str(&f.name);
            out.push('\n');
        }
    } else if args.verbose {
        let width = functions.iter().map(|f| f.image.len()).max().unwrap_or(0).max(5);
        // faas-cli's columns, then the triggers (ferrofaas's own).
        let any_triggers = functions.iter().any(|f| !f.triggers.is_empty());
        out.push_str(&format!(
            "{:<30}\t{:<width$}\t{:<15}\t{:<5}\t{:<5}",
            "Function", "Image", "Invocations", "Replicas", "CreatedAt"
        ));
        out.push_str(if any_triggers { "\t\t\tTriggers\n" } else { "\n" });
        for f in functions {
            out.push_str(&format!(
                "{:<30}\t{:<width$}\t{:<15}\t{:<5}\t\t{:<5}",
                f.name, f.image, f.invocation_count as i64, f.replicas, f.created_at
            ));
            if any_triggers {
                let triggers: Vec<String> = f
                    .triggers
                    .iter()
                    .map(|t| {
                        let what = t.schedule.as_deref().map_or(t.topic.clone(), |s| format!("{s:?}"));
                        let error = if t.last_error.is_some() { ", failing" } else { "" };
                        format!("{} {what} ({} events{error})", t.connector, t.events)
                    })
                    .collect();
                out.push_str(&format!("\t{}", triggers.join("; ")));
            }
            out.push('\n');
        }
    } else {
        out.push_str(&format!("{:<30}\t{:<15}\t{:<5}\n", "Function", "Invocations", "Replicas"));
        for f in functions {
            out.push_str(&format!("{:<30}\t{:<15}\t{:<5}\n", f.name, f.invocation_count as i64, f.replicas));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_one_line_per_function_name_first() {
        let f = |name: &str, n: f64| FunctionStatus {
            name: name.into(),
            invocation_count: n,
            replicas: 1,
            ..Default::default()
        };
        let args = Args {
            gateway: GatewayArg::default(),
            namespace: None,
            verbose: false,
            quiet: false,
            json: false,
        };
        let out = render(&[f("hello", 3.0), f("wc", 0.0)], &args);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("Function"));
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["hello", "3", "1"]);
        assert_eq!(lines[2].split_whitespace().next(), Some("wc"));
    }

    #[test]
    fn verbose_lists_triggers_last() {
        let mut tick = FunctionStatus { name: "tick".into(), image: "tick:1".into(), ..Default::default() };
        tick.triggers.push(ferrofaas_types::TriggerStatus {
            connector: "cron".into(),
            topic: "cron-function".into(),
            schedule: Some("@every 1s".into()),
            events: 7,
            ..Default::default()
        });
        tick.triggers.push(ferrofaas_types::TriggerStatus {
            connector: "nats".into(),
            topic: "orders.new".into(),
            last_error: Some("not connected".into()),
            ..Default::default()
        });
        let plain = FunctionStatus { name: "wc".into(), image: "wc:1".into(), ..Default::default() };
        let args = Args {
            gateway: GatewayArg::default(),
            namespace: None,
            verbose: true,
            quiet: false,
            json: false,
        };
        let out = render(&[tick, plain.clone()], &args);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("Function") && lines[0].ends_with("Triggers"), "{out}");
        assert!(lines[1].starts_with("tick"), "{out}");
        assert!(
            lines[1].ends_with("cron \"@every 1s\" (7 events); nats orders.new (0 events, failing)"),
            "{out}"
        );
        // Without triggers anywhere, faas-cli's columns alone.
        let out = render(&[plain], &args);
        assert!(out.lines().next().unwrap().trim_end().ends_with("CreatedAt"), "{out}");
    }
}
