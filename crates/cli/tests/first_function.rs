//! The README's "Your first function" block, run as it is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme.find("<!-- first-function:").expect("the README's first-function block");
    let block = &readme[start..];
    let open = block.find("```sh\n").unwrap() + "```sh\n".len();
    let close = block[open..].find("\n```").unwrap();
    block[open..open + close].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_function_works_as_written() {
    let script = readme_block();
    assert!(script.contains("faas new hello --lang python3-http"));
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    // Run from a folder laid out like the repository: target/release/faas.
    let bin = work.path().join("target/release");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(FAAS, bin.join("faas")).unwrap();
    let script =
        script.replace("/tmp/first-function", &work.path().join("first-function").display().to_string());
    let out = Command::new("sh")
        .args(["-ec", &script])
        .current_dir(work.path())
        .env("OPENFAAS_URL", format!("http://{}", p.addr))
        .env("FERROFAAS_STATE", &p.state)
        .env("OPENFAAS_CONFIG", work.path().join(".cfg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.ends_with("Hello, Ada!\n"), "{stdout}");
}
