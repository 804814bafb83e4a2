//! `mode=static`: files from `static_path`, and nothing outside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::*;
use http::{Method, StatusCode};

fn site() -> (tempfile::TempDir, Watchdog) {
    let site = tempfile::tempdir().unwrap();
    let public = site.path().join("public");
    std::fs::create_dir_all(public.join("docs")).unwrap();
    std::fs::write(public.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(public.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(public.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(site.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(site.path().join("secret.txt"), public.join("link.txt")).unwrap();
    let wd = Watchdog::start(&[("mode", "static"), ("static_path", public.to_str().unwrap())]);
    (site, wd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_files_with_their_types() {
    let (_site, wd) = site();
    let r = wd.get("/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "<h1>home</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = wd.get("/app.js").await;
    assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("14"));
    let r = wd.get("/docs/").await;
    assert_eq!(r.body, "<h1>docs</h1>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_without_a_slash_redirect() {
    let (_site, wd) = site();
    let r = wd.get("/docs?x=1").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_folder() {
    let (_site, wd) = site();
    assert_eq!(wd.get("/missing.txt").await.status, StatusCode::NOT_FOUND);
    assert_eq!(wd.get("/link.txt").await.status, StatusCode::NOT_FOUND, "symlink out of the folder");
    assert_eq!(wd.get("/%2e%2e/secret.txt").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(wd.get("/docs/..%2f..%2fsecret.txt").await.status, StatusCode::BAD_REQUEST);

    // A raw `..` that a client library would normalise away, sent as is.
    let out = Command::new("curl")
        .args(["-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/../secret.txt", wd.addr))
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_and_head() {
    let (_site, wd) = site();
    let r = wd.post("/", "x").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = call(wd.addr, Method::HEAD, "/app.js", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("14"));
    assert!(r.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_allow_conditional_requests() {
    let (_site, wd) = site();
    let etag = wd.get("/app.js").await.header("etag").unwrap().to_owned();
    let r = call(wd.addr, Method::GET, "/app.js", &[("if-none-match", &etag)], "").await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
}
