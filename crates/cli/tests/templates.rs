//! Every template, as a user would use it in a new folder: `faas new`, a
//! handler that uses a dependency installed the language's usual way,
//! `faas build`, `faas deploy`, `faas invoke`, against `faas serve`.
//!
//! Ruby and C# need runtimes a fresh machine lacks: ignored by `cargo test`
//! (the summary says so), run by `cargo test -- --ignored` (`.ci/run`
//! installs them). Any other runtime missing is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn require_runtime(commands: &[&str], lang: &str) {
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .unwrap()
                .status
                .success()
        })
        .collect();
    require(missing.is_empty(), &format!("the {lang} runtime ({missing:?})"), ".ci/run installs it");
}

/// new -> (edit) -> build -> deploy -> invoke; returns the answer.
async fn round_trip(lang: &str, files: &[(&str, &str)], input: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let dir = work.path();
    let name = format!("fn-{}", lang.replace('3', "three"));
    let out = faas_ok(dir, Some(&p), &["new", &name, "--lang", lang], None);
    assert!(out.contains(&format!("Function {name} created")), "{out}");
    assert!(dir.join("stack.yml").is_file());
    for (file, text) in files {
        std::fs::write(dir.join(&name).join(file), text).unwrap();
    }
    faas_ok(dir, Some(&p), &["build"], None);
    assert!(dir.join("build").join(&name).join("bundle.json").is_file());
    // Unchanged: the second build is served from the cache.
    let again = faas(dir, Some(&p), &["build"], None);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cached"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out = faas_ok(dir, Some(&p), &["deploy"], None);
    assert!(out.contains(&format!("Deployed {name}")), "{out}");
    p.wait_ready(&name, 1).await;
    faas_ok(dir, Some(&p), &["invoke", &name], Some(input))
}

fn python_files() -> Vec<(&'static str, &'static str)> {
    vec![("requirements.txt", "six==1.16.0\n")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python3_http() {
    require_runtime(&["python3"], "python3-http");
    let mut files = python_files();
    files.push((
        "handler.py",
        "import six\n\ndef handle(event, context):\n    return {\"statusCode\": 200, \"body\": \"six %s: \" % six.__version__ + event.body.decode()}\n",
    ));
    assert_eq!(round_trip("python3-http", &files, "hello").await, "six 1.16.0: hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python3() {
    require_runtime(&["python3"], "python3");
    let mut files = python_files();
    files.push(("handler.py", "import six\n\ndef handle(req):\n    return six.ensure_str(req.upper())\n"));
    assert_eq!(round_trip("python3", &files, "shout").await, "SHOUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node() {
    require_runtime(&["node", "npm"], "node");
    let files = [
        (
            "package.json",
            r#"{"name":"function","version":"1.0.0","private":true,"dependencies":{"is-number":"7.0.0"}}"#,
        ),
        (
            "handler.js",
            "const isNumber = require('is-number');\nmodule.exports = async (event, context) => context.status(200).succeed(`${event.body} is a number: ${isNumber(event.body)}`);\n",
        ),
    ];
    assert_eq!(round_trip("node", &files, "42").await, "42 is a number: true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ruby and Bundler: cargo test -- --ignored runs it (.ci/run installs them)"]
async fn ruby() {
    require_runtime(&["ruby", "bundle"], "ruby");
    // rubygems.org is out of reach here: the Gemfile names a gem by path,
    // which bundler installs into the bundle the same way.
    let files = [
        ("Gemfile", "gem 'greeter', path: 'vendor/greeter'\n"),
        (
            "handler.rb",
            "require 'greeter'\nclass Handler\n  def run(body, _headers)\n    [Greeter.greet(body), {}, 200]\n  end\nend\n",
        ),
    ];
    let work_files: Vec<(&str, &str)> = files.to_vec();
    let out = round_trip_with_extra(
        "ruby",
        &work_files,
        &[
            ("vendor/greeter/greeter.gemspec", "Gem::Specification.new do |s|\n  s.name = 'greeter'\n  s.version = '1.0.0'\n  s.summary = 'greets'\n  s.authors = ['ferrofaas']\n  s.files = ['lib/greeter.rb']\nend\n"),
            ("vendor/greeter/lib/greeter.rb", "module Greeter\n  def self.greet(name) = \"greetings, #{name} (greeter #{Gem.loaded_specs['greeter'].version})\"\nend\n"),
        ],
        "Ruby",
    )
    .await;
    assert_eq!(out, "greetings, Ruby (greeter 1.0.0)");
}

/// `round_trip` with files in subfolders of the handler.
async fn round_trip_with_extra(
    lang: &str,
    files: &[(&str, &str)],
    extra: &[(&str, &str)],
    input: &str,
) -> String {
    let mut all: Vec<(String, String)> =
        files.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    all.extend(extra.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())));
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let dir = work.path();
    let name = format!("fn-{lang}");
    faas_ok(dir, Some(&p), &["new", &name, "--lang", lang], None);
    for (file, text) in &all {
        let path = dir.join(&name).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    faas_ok(dir, Some(&p), &["up"], None);
    p.wait_ready(&name, 1).await;
    faas_ok(dir, Some(&p), &["invoke", &name], Some(input))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Mono: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn csharp() {
    require_runtime(&["mcs", "mono"], "csharp");
    let files = [
        ("references.txt", "System.Numerics\n"),
        (
            "Handler.cs",
            "using System.Numerics;\nnamespace Function {\n  public class FunctionHandler {\n    public string Handle(string input) {\n      return input + \": 2^100 = \" + BigInteger.Pow(2, 100);\n    }\n  }\n}\n",
        ),
    ];
    assert_eq!(round_trip("csharp", &files, "C#").await, "C#: 2^100 = 1267650600228229401496703205376");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust() {
    require_runtime(&["cargo"], "rust");
    let files = [
        (
            "Cargo.toml",
            "[package]\nname = \"handler\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nfaas-fn = { path = \"../faas-fn\" }\nitoa = \"1\"\n",
        ),
        (
            "src/lib.rs",
            "use faas_fn::{Request, Response};\n\npub fn handle(req: &Request) -> Response {\n    let mut buf = itoa::Buffer::new();\n    let n = buf.format(req.body.len() as u64 * 1000);\n    Response::ok(format!(\"{} -> {n}\", req.text()))\n}\n",
        ),
    ];
    assert_eq!(round_trip("rust", &files, "abc").await, "abc -> 3000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash() {
    require_runtime(&["bash"], "bash");
    // No package manager for bash: the "dependency" is a file shipped
    // beside the handler, sourced from the bundle.
    let files = [
        ("lib.sh", "greet() { echo \"bash greets $1\"; }\n"),
        ("handler.sh", "#!/usr/bin/env bash\nsource function/lib.sh\ngreet \"$(cat)\"\n"),
    ];
    assert_eq!(round_trip("bash", &files, "you").await, "bash greets you\n");
}

#[test]
fn template_list_names_every_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = faas_ok(dir.path(), None, &["template", "list"], None);
    for lang in
        ["bash", "csharp", "node", "node-wasm", "python3", "python3-http", "python3-wasm", "ruby", "rust"]
    {
        assert!(out.lines().any(|l| l.starts_with(lang)), "{lang} missing:\n{out}");
    }
}
