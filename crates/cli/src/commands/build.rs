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
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
    let mode = Mode::pick(args.quiet, args.json);
    for (name, f) in stack.select(args.stack.filter.as_deref(), args.stack.regex.as_deref())? {
        if f.skip_build {
            continue;
        }
        let (name, f, stack_ref) = (name.clone(), f.clone(), &stack);
        let no_cache = args.no_cache;
        tokio::task::block_in_place(|| builder::build(&name, &f, stack_ref, mode, no_cache))?;
    }
    Ok(())
}
