//! `faas new NAME --lang LANG`: a handler folder from the template's sample,
//! and the function added to the stack file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::templates::{self, Template};

#[derive(clap::Args)]
pub struct Args {
    /// The function's name (lowercase letters, digits, '-')
    pub name: String,
    /// Its language (faas template list)
    #[arg(long)]
    pub lang: String,
    /// The stack file to add it to (created if missing; faas-cli's --append)
    #[arg(short = 'f', long = "yaml", alias = "append", default_value = "stack.yml")]
    pub file: std::path::PathBuf,
    /// The image name to give it (default: NAME:latest)
    #[arg(long)]
    pub image: Option<String>,
    /// The gateway to write into a new stack file
    #[arg(short, long, default_value = crate::client::DEFAULT_GATEWAY)]
    pub gateway: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ferrofaas_types::names::validate_function_name(&args.name)?;
    let project = crate::stack::dir_of(&args.file);
    let handler = project.join(&args.name);
    if handler.exists() {
        bail!("{} already exists", handler.display());
    }
    if args.file.exists() {
        let stack = crate::stack::Stack::load(&args.file)?;
        if stack.functions.contains_key(&args.name) {
            bail!("{} already has a function {}", args.file.display(), args.name);
        }
    }
    let template_dir = templates::find(&args.lang, &project, None)?;
    let template = Template::load(&template_dir)?;
    copy_sample(&template_dir.join("function"), &handler)?;

    let image = args.image.clone().unwrap_or_else(|| format!("{}:latest", args.name));
    let entry = format!(
        "  {}:\n    lang: {}\n    handler: ./{}\n    image: {image}\n",
        args.name, args.lang, args.name
    );
    if args.file.exists() {
        let text = std::fs::read_to_string(&args.file)?;
        if !text.lines().any(|l| l.trim_end() == "functions:") {
            bail!("{} has no functions: section to add to", args.file.display());
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&args.file)?;
        if !text.ends_with('\n') {
            writeln!(f)?;
        }
        f.write_all(entry.as_bytes())?;
    } else {
        let text = format!(
            "version: 1.0\nprovider:\n  name: openfaas\n  gateway: {}\nfunctions:\n{entry}",
            args.gateway
        );
        std::fs::write(&args.file, text).with_context(|| format!("writing {}", args.file.display()))?;
    }
    println!(
        "Function {} created in {} ({}), added to {}",
        args.name,
        handler.display(),
        args.lang,
        args.file.display()
    );
    if !template.welcome_message.is_empty() {
        println!("\n{}", template.welcome_message.trim_end());
    }
    let missing = template.missing();
    if !missing.is_empty() {
        println!("\nTo build it, install:");
        for r in missing {
            println!("  {}: {}", r.command, r.install);
        }
    }
    Ok(())
}

fn copy_sample(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_sample(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
