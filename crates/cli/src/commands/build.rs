//! `faas build`: stack functions into bundles (`build/<name>/`).

use ferrofaas_types::platform::Arch;

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
    /// The static faas-watchdog to put into images (default: scripts/build-watchdog's,
    /// or for another architecture scripts/build-release's)
    #[arg(long, env = "FAAS_IMAGE_WATCHDOG")]
    pub image_watchdog: Option<std::path::PathBuf>,
    /// Build the images for this platform: linux/amd64 or linux/arm64 (default:
    /// this machine's). Another architecture's bases need qemu-user-static
    /// (scripts/binfmt)
    #[arg(long, requires = "docker", value_parser = parse_platform)]
    pub platform: Option<Arch>,
}

fn parse_platform(platform: &str) -> Result<Arch, String> {
    Arch::parse_platform(platform)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
    let mode = Mode::pick(args.quiet, args.json);
    let arch = args.platform.unwrap_or_else(Arch::native);
    let docker = match args.docker {
        true => Some((
            ferrofaas_provider::engine::connect().await?,
            crate::paths::image_watchdog(args.image_watchdog.as_deref(), arch)?,
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
                docker, &bundle, &image, watchdog, arch, &say,
            )
            .await
            .map_err(|e| anyhow::anyhow!("function {name}: {e}"))?;
            if mode == Mode::Json {
                println!(
                    "{}",
                    serde_json::json!({ "function": name, "image": image, "id": id, "arch": arch.name() })
                );
            } else if !quiet {
                eprintln!("{name}: image {image} for {arch} ({})", &id[..id.len().min(19)]);
            }
        }
    }
    Ok(())
}
