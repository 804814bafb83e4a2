//! `faas-sandbox`: runs a program in the sandbox a JSON [`Spec`] describes
//! (the process provider starts one per replica). See the library's docs.

use ferrofaas_sandbox::Spec;
use ferrofaas_sandbox::run::{SETUP_FAILED, run};

const USAGE: &str = "usage: faas-sandbox run SPEC   (SPEC: the sandbox as JSON; see ferrofaas-sandbox)";

fn main() {
    let mut args = std::env::args().skip(1);
    let code = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("run"), Some(spec), None) => match serde_json::from_str::<Spec>(&spec) {
            Ok(spec) => run(&spec).unwrap_or_else(|e| {
                eprintln!("faas-sandbox: {e}");
                SETUP_FAILED
            }),
            Err(e) => {
                eprintln!("faas-sandbox: the sandbox spec is invalid: {e}");
                2
            }
        },
        (Some("--version"), None, None) => {
            println!("faas-sandbox {}", env!("CARGO_PKG_VERSION"));
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
