//! `faas describe NAME`.

use ferrofaas_types::FunctionStatus;

use super::qualified;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::Target,
    /// JSON, as the API returns it
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let q = qualified(&args.target.name, args.target.namespace.as_deref())?;
    let reply = client
        .request(http::Method::GET, &format!("/system/function/{q}?usage=1"), &[], Default::default())
        .await?;
    if reply.status == http::StatusCode::NOT_FOUND {
        anyhow::bail!("no such function: {}", args.target.name);
    }
    client.check(&reply, &[200])?;
    let f: FunctionStatus = serde_json::from_slice(&reply.body)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(());
    }
    let status = if f.available_replicas > 0 { "Ready" } else { "Not Ready" };
    let url = format!("{}/function/{q}", client.url);
    let mut out = format!(
        "Name:               {}\nStatus:             {status}\nReplicas:           {}\nAvailable Replicas: {}\nInvocations:        {}\nImage:              {}\nFunction Process:   {}\nURL:                {url}\nAsync URL:          {}/async-function/{q}\n",
        f.name,
        f.replicas,
        f.available_replicas,
        f.invocation_count as i64,
        f.image,
        if f.env_process.is_empty() { "<default>" } else { &f.env_process },
        client.url,
    );
    if let Some(reason) = &f.reason {
        // After Status, where it explains it.
        let at = out.find("Replicas:").unwrap_or(out.len());
        out.insert_str(at, &format!("Reason:             {reason}\n"));
    }
    let section = |out: &mut String, title: &str, map: &std::collections::BTreeMap<String, String>| {
        if !map.is_empty() {
            out.push_str(&format!("{title}:\n"));
            for (k, v) in map {
                out.push_str(&format!("  {k}: {v}\n"));
            }
        }
    };
    if !f.triggers.is_empty() {
        out.push_str("Triggers:\n");
        for t in &f.triggers {
            let what = t.schedule.as_deref().map_or(t.topic.clone(), |s| format!("{} {s:?}", t.topic));
            out.push_str(&format!(
                "  {} {what}: {} events, {} dispatched, {} failed",
                t.connector, t.events, t.dispatched, t.failed
            ));
            if let Some(last) = &t.last_event {
                out.push_str(&format!(", last {last}"));
            }
            if let Some(next) = &t.next_event {
                out.push_str(&format!(", next {next}"));
            }
            if let Some(e) = &t.last_error {
                out.push_str(&format!(", error: {e}"));
            }
            out.push('\n');
        }
    }
    section(&mut out, "Labels", &f.labels);
    section(&mut out, "Annotations", &f.annotations);
    section(&mut out, "Environment", &f.env_vars);
    if !f.secrets.is_empty() {
        out.push_str(&format!("Secrets:            {}\n", f.secrets.join(", ")));
    }
    for (title, res) in [("Requests", &f.requests), ("Limits", &f.limits)] {
        if let Some(r) = res {
            out.push_str(&format!(
                "{title}:           cpu {} memory {}\n",
                or_dash(&r.cpu),
                or_dash(&r.memory)
            ));
        }
    }
    if !f.created_at.is_empty() {
        out.push_str(&format!("Created:            {}\n", f.created_at));
    }
    print!("{out}");
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
