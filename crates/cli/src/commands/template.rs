//! `faas template list`.

use clap::Subcommand;

use crate::templates;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The languages `faas new --lang` knows
    #[command(alias = "ls")]
    List,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List => {
            println!("{:<16} DESCRIPTION", "LANGUAGE");
            for lang in templates::embedded_languages() {
                println!("{lang:<16} {}", templates::describe_embedded(lang).unwrap_or_default());
            }
        }
    }
    Ok(())
}
