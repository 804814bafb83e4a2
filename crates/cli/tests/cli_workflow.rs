//! The client verbs against a running platform: a remote-style deploy (no
//! local credentials: `faas login`, the bundle through the API), secrets,
//! scaling, logs, removal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::*;

/// `faas` as on another machine: no access to the platform's state folder.
fn remote(dir: &std::path::Path, url: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(FAAS)
        .args(args)
        .current_dir(dir)
        .env("OPENFAAS_URL", url)
        .env("OPENFAAS_CONFIG", dir.join(".cfg"))
        .env("FERROFAAS_STATE", dir.join("not-here"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_user_logs_in_deploys_and_manages_functions() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let url = format!("http://{}", p.addr);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let password = {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.path().join("credentials.json")).unwrap()).unwrap();
        v["password"].as_str().unwrap().to_owned()
    };
    ok(remote(dir, &url, &["login", "-u", "admin", "-p", &password], None));

    // Secrets from a literal, a file and standard input; values never shown.
    ok(remote(dir, &url, &["secret", "create", "api-key", "--from-literal", "lit-value"], None));
    std::fs::write(dir.join("cert.pem"), "file-value\n").unwrap();
    ok(remote(dir, &url, &["secret", "create", "cert", "--from-file", "cert.pem"], None));
    ok(remote(dir, &url, &["secret", "create", "piped"], Some("stdin-value\n")));
    let out = remote(dir, &url, &["secret", "create", "piped"], Some("again"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let list = ok(remote(dir, &url, &["secret", "list"], None));
    assert_eq!(list.lines().collect::<Vec<_>>(), ["NAME", "api-key", "cert", "piped"]);
    ok(remote(dir, &url, &["secret", "update", "piped", "--from-literal", "new-value"], None));

    // A function that reads its secrets, built here and deployed there.
    ok(remote(dir, &url, &["new", "reader", "--lang", "bash"], None));
    std::fs::write(
        dir.join("reader/handler.sh"),
        "#!/usr/bin/env bash\nfor s in api-key cert piped; do printf '%s=%s;' $s \"$(cat $secret_mount_path/$s)\"; done\n",
    )
    .unwrap();
    let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
    std::fs::write(
        dir.join("stack.yml"),
        format!("{stack}    secrets:\n      - api-key\n      - cert\n      - piped\n    environment:\n      GREETING: ${{GREETING:-hi}}\n"),
    )
    .unwrap();
    let out = ok(remote(dir, &url, &["up"], None));
    assert!(out.contains(&format!("Deployed reader: {url}/function/reader")), "{out}");
    p.wait_ready("reader", 1).await;
    let answer = ok(remote(dir, &url, &["invoke", "reader"], Some("")));
    assert_eq!(answer, "api-key=lit-value;cert=file-value;piped=new-value;");

    // describe, scale, list.
    let describe = ok(remote(dir, &url, &["describe", "reader"], None));
    assert!(describe.contains("Status:             Ready"), "{describe}");
    assert!(describe.contains("GREETING: hi"), "{describe}");
    ok(remote(dir, &url, &["scale", "reader", "--replicas", "2"], None));
    p.wait_ready("reader", 2).await;
    let list = ok(remote(dir, &url, &["list", "--verbose"], None));
    let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["reader", "reader:latest", "1", "2"], "{list}");

    // logs: what the function printed on stderr, with --follow.
    std::fs::write(
        dir.join("reader/handler.sh"),
        "#!/usr/bin/env bash\necho \"logged: $(cat)\" >&2\necho done\n",
    )
    .unwrap();
    ok(remote(dir, &url, &["up"], None));
    let rolled = eventually(std::time::Duration::from_secs(20), async || {
        remote(dir, &url, &["invoke", "reader"], Some("x")).stdout == b"done\n"
    })
    .await;
    assert!(rolled, "the new version never served");
    let mut follow = Command::new(FAAS)
        .args(["logs", "reader", "--follow", "--tail", "0"])
        .current_dir(dir)
        .env("OPENFAAS_URL", &url)
        .env("OPENFAAS_CONFIG", dir.join(".cfg"))
        .env("FERROFAAS_STATE", dir.join("not-here"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ok(remote(dir, &url, &["invoke", "reader"], Some("followed-line")));
    let stdout = follow.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("logged: followed-line"))
    });
    let found = tokio::time::timeout(std::time::Duration::from_secs(10), line)
        .await
        .expect("the line arrives")
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(found.unwrap().starts_with("20"), "a timestamp first");

    // remove; then it is gone.
    ok(remote(dir, &url, &["remove", "reader"], None));
    let out = remote(dir, &url, &["describe", "reader"], None);
    assert_eq!(out.status.code(), Some(1));
    ok(remote(dir, &url, &["secret", "remove", "piped"], None));
    let version = ok(remote(dir, &url, &["version"], None));
    assert!(version.contains("ferrofaas-process"), "{version}");
}
