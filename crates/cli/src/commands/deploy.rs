//! `faas deploy` (and `faas up`): bundles to the gateway, then the
//! functions. Works the same for a gateway on another machine: the bundle
//! travels through the API (`POST /system/bundles`), with auth.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use ferrofaas_types::FunctionDeployment;
use http::Method;

use super::{StackArgs, key_value};
use crate::builder;
use crate::client::{Client, GatewayArg};
use crate::progress::Mode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub gateway: GatewayArg,
    /// Deploy this image (a bundle on the gateway) instead of the stack's functions
    #[arg(long, requires = "name")]
    pub image: Option<String>,
    /// The function's name, with --image
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace (default: the stack's, else the gateway's)
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The function's process, with --image
    #[arg(long)]
    pub fprocess: Option<String>,
    /// Environment variable KEY=VALUE (repeatable)
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Label KEY=VALUE (repeatable)
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Annotation KEY=VALUE (repeatable)
    #[arg(long = "annotation")]
    pub annotation: Vec<String>,
    /// Secret the function may read (repeatable)
    #[arg(long = "secret")]
    pub secret: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(image) = &args.image {
        let client = Client::for_args(&args.gateway, None)?;
        let name = args.name.clone().context("--image needs --name")?;
        let mut spec = FunctionDeployment {
            service: name.clone(),
            image: image.clone(),
            namespace: args.namespace.clone().unwrap_or_default(),
            env_process: args.fprocess.clone().unwrap_or_default(),
            secrets: args.secret.clone(),
            ..Default::default()
        };
        apply_flags(&mut spec, &args)?;
        return put_function(&client, &spec).await;
    }
    deploy_stack(&args, false, Mode::pick(false, false)).await
}

fn apply_flags(spec: &mut FunctionDeployment, args: &Args) -> anyhow::Result<()> {
    let pairs = |list: &[String]| -> anyhow::Result<BTreeMap<String, String>> {
        list.iter().map(|s| key_value(s)).collect()
    };
    spec.env_vars.extend(pairs(&args.env)?);
    spec.labels.extend(pairs(&args.label)?);
    spec.annotations.extend(pairs(&args.annotation)?);
    for s in &args.secret {
        if !spec.secrets.contains(s) {
            spec.secrets.push(s.clone());
        }
    }
    if let Some(ns) = &args.namespace {
        spec.namespace = ns.clone();
    }
    Ok(())
}

/// Builds (when `build`), pushes and deploys the stack's functions.
pub async fn deploy_stack(args: &Args, build: bool, mode: Mode) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
    let client = Client::for_args(&args.gateway, stack.gateway())?;
    let project = stack.dir();
    for (name, f) in stack.select(args.stack.filter.as_deref(), args.stack.regex.as_deref())? {
        let image = f.image(name);
        if !f.skip_build {
            let bundle = if build || f.lang.is_none() {
                let (n, fc, st) = (name.clone(), f.clone(), &stack);
                tokio::task::block_in_place(|| builder::build(&n, &fc, st, mode, false))?
            } else {
                let dir = project.join("build").join(name);
                if !dir.join(ferrofaas_provider::bundles::MANIFEST).is_file() {
                    bail!("function {name} is not built: run faas build (or faas up) first");
                }
                dir
            };
            push_bundle(&client, &image, &bundle).await.with_context(|| format!("function {name}"))?;
        }
        let mut spec = f.deployment(name, image, &f.env(&project)?);
        apply_flags(&mut spec, args)?;
        put_function(&client, &spec).await.with_context(|| format!("function {name}"))?;
    }
    Ok(())
}

async fn push_bundle(client: &Client, image: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let archive = crate::bundle::pack(dir)?;
    let path = format!("/system/bundles?image={image}");
    let reply = client.request(Method::POST, &path, &[], archive).await?;
    client.check(&reply, &[200, 201]).context("storing the bundle on the gateway")
}

/// PUT (update), and POST (create) if the gateway does not know it yet.
async fn put_function(client: &Client, spec: &FunctionDeployment) -> anyhow::Result<()> {
    let body = serde_json::to_vec(spec)?;
    let headers = [("content-type".to_owned(), "application/json".to_owned())];
    let mut reply = client.request(Method::PUT, "/system/functions", &headers, body.clone().into()).await?;
    if reply.status == http::StatusCode::NOT_FOUND {
        reply = client.request(Method::POST, "/system/functions", &headers, body.into()).await?;
    }
    client.check(&reply, &[200, 201, 202])?;
    let qualified = if spec.namespace.is_empty() {
        spec.service.clone()
    } else {
        format!("{}.{}", spec.service, spec.namespace)
    };
    println!("Deployed {}: {}/function/{qualified}", spec.service, client.url);
    Ok(())
}
