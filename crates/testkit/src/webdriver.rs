//! A small WebDriver client (W3C WebDriver over HTTP) for the UI's tests:
//! Debian's `chromedriver` driving a headless `chromium`, with the few
//! commands the tests use. Dropping the [`Browser`] ends the session (which
//! quits Chromium) and stops the driver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{call, eventually};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let up = eventually(Duration::from_secs(20), async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
                && call(addr, Method::GET, "/status", &[], "").await.json()["value"]["ready"] == true
        })
        .await;
        assert!(up, "chromedriver did not start");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r =
            call(addr, Method::POST, "/session", &[("content-type", "application/json")], &caps.to_string())
                .await;
        assert_eq!(r.status, StatusCode::OK, "new session: {}", r.body);
        let session = r.json()["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser { driver, addr, session, _profile: profile }
    }

    /// A WebDriver command on the session: its `value`, or the driver's
    /// error answer.
    pub async fn try_cmd(&self, method: Method, path: &str, body: Value) -> Result<Value, String> {
        let body = if method == Method::GET { String::new() } else { body.to_string() };
        let url = format!("/session/{}{path}", self.session);
        let r = call(self.addr, method, &url, &[("content-type", "application/json")], &body).await;
        if r.status == StatusCode::OK { Ok(r.json()["value"].clone()) } else { Err(r.body) }
    }

    pub async fn cmd(&self, method: Method, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body).await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(Method::POST, "/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// The first element matching `css` that is displayed, waiting for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .js(
                    "const e = document.querySelector(arguments[0]); \
                     return e && e.getClientRects().length > 0 && !e.closest('[hidden]') ? e : null;",
                    json!([css]),
                )
                .await;
            if let Some(id) = found.get(ELEMENT).and_then(Value::as_str) {
                return id.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no visible {css} ({found}); page:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks `css`; again if the page replaced the element in between.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css).await;
            match self.try_cmd(Method::POST, &format!("/element/{id}/click"), json!({})).await {
                Ok(_) => return,
                Err(e) => assert!(e.contains("stale element"), "click {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    /// Picks `value` in the select `css`, as a click on its option.
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(css).await;
        let option = self
            .js(
                "return document.querySelector(arguments[0]).querySelector(`option[value=\"${arguments[1]}\"]`);",
                json!([css, value]),
            )
            .await;
        let id = option
            .get(ELEMENT)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no option {value} in {css}"));
        self.cmd(Method::POST, &format!("/element/{id}/click"), json!({})).await;
    }

    /// Clears a field and types `text` into it, key by key.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(Method::POST, &format!("/element/{id}/clear"), json!({})).await;
        self.cmd(Method::POST, &format!("/element/{id}/value"), json!({ "text": text })).await;
    }

    /// Presses keys (WebDriver's codes, e.g. "\u{E007}" Enter) in the focused element.
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| [json!({"type": "keyDown", "value": c}), json!({"type": "keyUp", "value": c})])
            .collect();
        self.cmd(
            Method::POST,
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                json!([css]),
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn body_text(&self) -> String {
        self.js("return document.body.innerText;", json!([])).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css).await;
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css}: {what}; it says {text:?}; page:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(Method::POST, "/window/rect", json!({ "width": width, "height": height })).await;
    }

    pub async fn screenshot(&self, path: &Path) {
        let png = self.cmd(Method::GET, "/screenshot", json!({})).await;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).expect("base64 PNG");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    /// Ends the session first, which quits Chromium: killing only the
    /// driver would leave the browser's processes running.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session, self.addr
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
