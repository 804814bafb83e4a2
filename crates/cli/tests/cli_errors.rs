//! What `faas` says when something is wrong: the message, and exit code 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn missing_stack_file() {
    let dir = tempfile::tempdir().unwrap();
    for verb in ["build", "deploy", "up"] {
        let err = faas_err(dir.path(), None, &[verb], None);
        assert!(err.contains("stack.yml: no such file"), "{verb}: {err}");
    }
    let err = faas_err(dir.path(), None, &["build", "-f", "other.yml"], None);
    assert!(err.contains("other.yml: no such file"), "{err}");
}

#[test]
fn unknown_language_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let err = faas_err(dir.path(), None, &["new", "fn", "--lang", "cobol"], None);
    assert!(err.contains("unknown language \"cobol\""), "{err}");
    assert!(err.contains("python3-http"), "the message lists what exists: {err}");
    assert!(!dir.path().join("fn").exists(), "nothing created");
    let err = faas_err(dir.path(), None, &["new", "Bad_Name", "--lang", "bash"], None);
    assert!(err.contains("invalid function name"), "{err}");
    faas_ok(dir.path(), None, &["new", "fn", "--lang", "bash"], None);
    let err = faas_err(dir.path(), None, &["new", "fn", "--lang", "bash"], None);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn stack_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stack.yml"),
        "provider:\n  name: openfaas\nfunctions:\n  fn:\n    lang: bash\n    handler: ./fn\n    enviroment:\n      A: b\n",
    )
    .unwrap();
    let err = faas_err(dir.path(), None, &["build"], None);
    assert!(err.contains("stack.yml:7: functions.fn: unknown field `enviroment`"), "{err}");
}

#[test]
fn a_missing_runtime_is_named_with_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    faas_ok(dir.path(), None, &["new", "cs", "--lang", "csharp"], None);
    let out = std::process::Command::new(FAAS)
        .arg("build")
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("function cs (lang csharp) needs programs that are not installed"), "{err}");
    assert!(err.contains("mcs: Debian/Ubuntu: apt-get install -y mono-mcs"), "{err}");
}

#[test]
fn gateway_down() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["list", "--gateway", "http://127.0.0.1:1"][..],
        &["invoke", "fn", "--gateway", "http://127.0.0.1:1"],
        &["describe", "fn", "--gateway", "http://127.0.0.1:1"],
        &["secret", "list", "--gateway", "http://127.0.0.1:1"],
    ] {
        let err = faas_err(dir.path(), None, args, Some(""));
        assert!(err.contains("cannot reach the gateway at http://127.0.0.1:1"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_wrong_password_and_not_found() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}", p.addr);
    // Somebody else's machine: no local credentials to fall back on.
    let remote = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = std::process::Command::new(FAAS);
        cmd.args(args)
            .arg("--gateway")
            .arg(&url)
            .current_dir(dir.path())
            .env("OPENFAAS_CONFIG", dir.path().join("cfg"))
            .env("FERROFAAS_STATE", dir.path().join("none"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let out = remote(&["list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized: log in to"), "{out:?}");

    let out = remote(&["login", "--password", "wrong"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the username or password is wrong"), "{out:?}");
    assert!(!dir.path().join("cfg/config.yml").exists(), "nothing saved");

    let password = {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.path().join("credentials.json")).unwrap()).unwrap();
        v["password"].as_str().unwrap().to_owned()
    };
    let out = remote(&["login", "--password-stdin"], Some(&format!("{password}\n")));
    assert!(out.status.success(), "{out:?}");
    let cfg = dir.path().join("cfg/config.yml");
    assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("auth: basic"));
    let out = remote(&["list"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Function"));

    for (args, needle) in [
        (&["invoke", "nope"][..], "nope answered 404"),
        (&["describe", "nope"], "no such function: nope"),
        (&["remove", "nope"], "no function nope to remove"),
        (&["logs", "nope"], "no such function: nope"),
        (&["scale", "nope", "--replicas", "2"], "no such function: nope"),
    ] {
        let out = remote(args, Some(""));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    let out = remote(&["logout"], None);
    assert!(out.status.success());
    let out = remote(&["list"], None);
    assert_eq!(out.status.code(), Some(1), "logged out");
}
