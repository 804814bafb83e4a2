//! `faas build`: stack functions into bundles (`build/<name>/`).

use crate::builder;
use crate::progress::Mode;

use super::StackArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
    /// One JSON object per function on standard output
    #[arg(long)]
    pub json: bool,
    /// Build even when nothing changed
    #[arg(long)]
    pub no_cache: bool,
    /// Also build a Docker image per function on the local engine (for the
    /// Docker provider), named as the function's image
    #[arg(long)]
    pub docker: bool,
    /// The static faas-watchdog to put into images (default: scripts/build-watchdog's)
    #[arg(long, env = "FAAS_IMAGE_WATCHDOG")]
    pub image_watchdog: Option<std::path::PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
    let mode = Mode::pick(args.quiet, args.json);
    let docker = match args.docker {
        true => Some((
            ferrofaas_provider::engine::connect().await?,
            crate::paths::image_watchdog(args.image_watchdog.as_deref())?,
        )),
        false => None,
    };
    for (name, f) in stack.select(args.stack.filter.as_deref(), args.stack.regex.as_deref())? {
        if f.skip_build {
            continue;
        }
        let (name, f, stack_ref) = (name.clone(), f.clone(), &stack);
        let no_cache = args.no_cache;
        let bundle = tokio::task::block_in_place(|| builder::build(&name, &f, stack_ref, mode, no_cache))?;
        if let Some((docker, watchdog)) = &docker {
            let image = f.image(&name);
            let quiet = mode == Mode::Quiet || mode == Mode::Json;
            let say = |step: &str| {
                if !quiet {
                    eprintln!("{name}: {step}");
                }
            };
            let id = ferrofaas_provider::engine::image::build_function_image(
                docker, &bundle, &image, watchdog, &say,
            )
            .await
            .map_err(|e| anyhow::anyhow!("function {name}: {e}"))?;
            if mode == Mode::Json {
                println!("{}", serde_json::json!({ "function": name, "image": image, "id": id }));
            } else if !quiet {
                eprintln!("{name}: image {image} ({})", &id[..id.len().min(19)]);
            }
        }
    }
    Ok(())
}
