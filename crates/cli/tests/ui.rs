//! The web UI in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`) against `faas serve`: sign
//! in, secrets, deploy through the form (with its errors), invoke, the
//! invocation count, the chart, logs that follow, the copyable commands
//! (run), scale, delete; then phone-sized, keyboard and no-external-request
//! checks. Ignored by `cargo test` (they need Chromium), run by `cargo test --
//! --ignored` (`.ci/run` installs it).
//! A screenshot of the function page lands in `target/tmp/ui/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use ferrofaas_testkit::webdriver::{Browser, CHROMEDRIVER, CHROMIUM};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn require_chromium() {
    let found = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    require(found, &format!("{CHROMIUM} and {CHROMEDRIVER}"), "apt-get install chromium chromium-driver");
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui")
}

/// The page fits a phone's width (nothing scrolls sideways).
async fn fits(b: &Browser, view: &str) {
    let (scroll, inner) = {
        let v = b.js("return [document.documentElement.scrollWidth, window.innerWidth];", json!([])).await;
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    };
    assert!(scroll <= inner, "{view}: {scroll}px wide in a {inner}px window");
}

/// Every visible control has a name a screen reader can say, and can take
/// the keyboard's focus.
async fn labelled(b: &Browser, view: &str) {
    let unlabelled = b
        .js(
            "return [...document.querySelectorAll('input, select, textarea, button, a[href]')]
               .filter(e => e.getClientRects().length > 0)
               .filter(e => {
                 const name = (e.labels && e.labels.length ? e.labels[0].textContent : '')
                   || e.getAttribute('aria-label') || (e.matches('button, a') ? e.textContent : '');
                 return !name.trim() || e.tabIndex < 0;
               })
               .map(e => e.outerHTML.slice(0, 120));",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "{view}: controls without a name or out of the tab order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: cargo test -- --ignored runs it (.ci/run installs them)"]
async fn the_ui_in_a_real_browser() {
    require_chromium();
    let ui = Ui::start().await;
    phases!(ui:
        sign_in,
        secrets,
        deploy_form,
        function_page,
        commands_run_and_copy,
        asynchronous,
        chart_and_logs,
        edit,
        scale_and_list,
        screenshot_and_phone,
        nothing_foreign,
        delete,
        other_namespace,
        why_it_cannot_start,
        triggers,
        dead_letters,
        usage,
        secret_deleted,
        sign_out,
    );
    ui.end();
}

/// Runs the phases of a UI session in order, each named in the test's
/// output, so that a failure says which phase it was in.
macro_rules! phases {
    ($ui:ident: $($phase:ident),+ $(,)?) => {
        $(
            eprintln!("phase: {}", stringify!($phase));
            $phase(&$ui).await;
        )+
    };
}
use phases;

/// The platform (with the `shout:1.0` bundle pushed), a browser, and the
/// admin's credentials: what every phase works with.
struct Ui {
    p: Platform,
    b: Browser,
    origin: String,
    username: String,
    password: String,
    _state: tempfile::TempDir,
}

impl Ui {
    async fn start() -> Ui {
        let state = tempfile::tempdir().unwrap();
        // A NATS connector whose server is not there: a trigger that is down.
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let connector = format!("nats=nats://127.0.0.1:{nowhere}");
        let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);
        let bundle = tar(&[
            ("bundle.json", r#"{"env":{"fprocess":"./shout.sh","mode":"serializing"}}"#, 0o644),
            (
                "shout.sh",
                "#!/bin/sh\nbody=$(cat)\necho \"got $body\" >&2\nprintf '%s %s' \"$GREETING\" \"$body\" | tr a-z A-Z\n",
                0o755,
            ),
        ]);
        assert_eq!(push_bundle(&p, "shout:1.0", bundle).await.status, StatusCode::CREATED);
        let creds: Value =
            serde_json::from_slice(&std::fs::read(state.path().join("credentials.json")).unwrap()).unwrap();
        Ui {
            origin: format!("http://{}", p.addr),
            username: creds["username"].as_str().unwrap().to_owned(),
            password: creds["password"].as_str().unwrap().to_owned(),
            b: Browser::start().await,
            p,
            _state: state,
        }
    }

    /// The browser's session ends before the platform stops.
    fn end(self) {
        drop(self.b);
        self.p.stop();
    }
}

/// Sign in: a wrong password is refused, the right one (typed, then
/// Enter: no mouse) opens the functions list.
async fn sign_in(ui: &Ui) {
    let Ui { b, origin, username, password, .. } = ui;
    b.goto(&format!("{origin}/")).await;
    b.fill("#signin input[name=password]", "wrong").await;
    b.click("#signin button[type=submit]").await;
    b.wait_text("#signin-error", "says the password is wrong", |t| t.contains("Wrong username or password"))
        .await;
    b.fill("#signin input[name=username]", username).await;
    b.fill("#signin input[name=password]", password).await;
    b.keys("\u{E007}").await;
    b.find("#functions-view h2").await;
    b.find("#empty").await;
}

/// Secrets: created, listed, its value never shown again, updated.
async fn secrets(ui: &Ui) {
    let Ui { b, .. } = ui;
    b.click("#nav a[data-view=secrets]").await;
    b.fill("#secret-name", "Bad Name").await;
    b.fill("#secret-value", "s3cret-value").await;
    b.click("#secret-submit").await;
    b.wait_text("#error-secret-name", "refuses the name", |t| !t.is_empty()).await;
    b.fill("#secret-name", "api-key").await;
    b.click("#secret-submit").await;
    b.wait_text("#secret-status", "confirms", |t| t == "Created api-key.").await;
    b.find("tr[data-secret=api-key]").await;
    let page = b.js("return document.documentElement.outerHTML + [...document.querySelectorAll('textarea, input')].map(e => e.value).join();", json!([])).await;
    assert!(!page.as_str().unwrap().contains("s3cret-value"), "the value is gone from the page");
    b.click("tr[data-secret=api-key] button:not(.danger)").await;
    b.fill("#secret-value", "second-value").await;
    b.click("#secret-submit").await;
    b.wait_text("#secret-status", "confirms", |t| t == "Updated api-key.").await;
    b.screenshot(&screenshots().join("secrets.png")).await;
}

/// Deploy through the form: a bad name is caught beside its field before
/// any request; a bad scaling label by the gateway, beside the labels.
async fn deploy_form(ui: &Ui) {
    let Ui { b, .. } = ui;
    b.click("#nav a[data-view=deploy]").await;
    b.fill("#deploy-service", "Shout_Fn").await;
    b.fill("#deploy-image", "shout:1.0").await;
    b.click("#deploy-submit").await;
    b.wait_text("#error-service", "refuses the name", |t| t.contains("Lowercase")).await;
    assert_eq!(
        b.js("return document.activeElement.id;", json!([])).await,
        "deploy-service",
        "focus on the field"
    );
    b.fill("#deploy-service", "shout").await;
    b.fill("#deploy-envVars", "GREETING=hi\nGREETING=hello").await;
    b.click("#deploy-submit").await;
    b.wait_text("#error-envVars", "refuses a name twice", |t| t == "line 2: GREETING is given twice").await;
    assert_eq!(b.text("#error-service").await, "", "the name's error is gone");
    b.fill("#deploy-envVars", "GREETING=hello from").await;
    b.fill("#deploy-labels", "team=web\ncom.openfaas.scale.min=lots").await;
    b.click("#deploy-secrets input[value=api-key]").await;
    b.click("#deploy-submit").await;
    let err = b.wait_text("#error-labels", "shows the gateway's error", |t| !t.is_empty()).await;
    assert!(err.contains("com.openfaas.scale.min"), "{err}");
    b.screenshot(&screenshots().join("deploy-error.png")).await;
    assert_eq!(b.text("#error-service").await, "");
    // Scaled by hand below while the test calls it fast: the autoscaler's
    // default rule would join in (factor 0 leaves it to the hand).
    b.fill("#deploy-labels", "team=web\ncom.openfaas.scale.factor=0").await;
    b.click("#deploy-submit").await;
}

/// The function page: ready, invoked, counted.
async fn function_page(ui: &Ui) {
    let Ui { b, .. } = ui;
    b.wait_text("#fn-title", "is the function page", |t| t == "shout").await;
    b.wait_text("#fn-replicas", "one ready replica", |t| t == "1/1").await;
    assert_eq!(b.text("#fn-secrets").await, "api-key");
    b.fill("#invoke textarea[name=body]", "hello browser").await;
    b.click("#invoke button[type=submit]").await;
    b.wait_text("#invoke-body", "shows the output", |t| t == "HELLO FROM HELLO BROWSER").await;
    assert!(b.text("#invoke-status").await.starts_with("200"));
    assert!(b.text("#invoke-headers").await.contains("x-duration-seconds"));
    b.wait_text("#fn-invocations", "counts the call", |t| t == "1").await;
    for _ in 0..3 {
        b.click("#invoke button[type=submit]").await;
    }
    b.wait_text("#fn-invocations", "counts every call", |t| t == "4").await;
}

/// The commands shown run as they are, in a shell.
async fn commands_run_and_copy(ui: &Ui) {
    let Ui { b, origin, .. } = ui;
    let curl = b.text("#cmd-curl").await;
    assert!(curl.starts_with(&format!("curl -i -X POST {origin}/function/shout/")), "{curl}");
    let out = Command::new("sh").arg("-c").arg(&curl).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("HELLO FROM HELLO BROWSER"), "{curl}: {out:?}");
    let faas = b.text("#cmd-faas").await;
    let path = format!("{}:{}", Path::new(FAAS).parent().unwrap().display(), std::env::var("PATH").unwrap());
    let out = Command::new("sh").arg("-c").arg(&faas).env("PATH", path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO FROM HELLO BROWSER", "{faas}: {out:?}");

    // Copy puts the command on the clipboard.
    for permission in ["clipboard-read", "clipboard-write"] {
        let descriptor = json!({"descriptor": {"name": permission}, "state": "granted"});
        b.cmd(Method::POST, "/permissions", descriptor).await;
    }
    b.click("button[data-copy=cmd-curl]").await;
    b.wait_text("#copy-status", "confirms", |t| t == "Copied.").await;
    let pasted = b
        .cmd(
            Method::POST,
            "/execute/async",
            json!({"script": "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('error: ' + e));", "args": []}),
        )
        .await;
    assert_eq!(pasted.as_str(), Some(curl.as_str()), "the clipboard has the curl command");
}

/// Asynchronous: 202 and a call id at once, then the call's state as
/// the dispatcher runs it; the commands follow.
async fn asynchronous(ui: &Ui) {
    let Ui { b, .. } = ui;
    b.click("#invoke-async").await;
    b.click("#invoke button[type=submit]").await;
    b.wait_text("#invoke-status", "accepted", |t| t.starts_with("202")).await;
    b.wait_text("#invoke-call-state", "done", |t| t.starts_with("done (200)")).await;
    let curl = b.text("#cmd-curl").await;
    assert!(curl.contains("/async-function/shout/"), "{curl}");
    assert!(b.text("#cmd-faas").await.contains("--async"));
    b.click("#invoke-async").await;
}

/// Load from outside shows in the chart (from the gateway's metrics):
/// bursts over a few seconds while the test goes on.
async fn chart_and_logs(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    let addr = p.addr;
    let load = tokio::spawn(async move {
        for burst in [10, 25, 5] {
            for _ in 0..burst {
                let r = call(addr, Method::POST, "/function/shout", &[], "x").await;
                assert_eq!(r.status, StatusCode::OK);
            }
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
    });
    let drawn = eventually(Duration::from_secs(20), async || {
        let max = b
            .js("return document.querySelector(\"[data-chart='Requests/s']\")?.dataset.max;", json!([]))
            .await;
        max.as_str().and_then(|m| m.parse::<f64>().ok()).is_some_and(|m| m >= 1.0)
    })
    .await;
    assert!(drawn, "the chart shows the traffic: {}", b.body_text().await);
    b.find("[data-chart='Latency'] path.p99").await;
    b.find("[data-chart='Ready replicas'] path.ready").await;

    // Logs follow: a new call's line appears without reloading.
    b.wait_text("#logs", "shows the function's output", |t| t.contains("got hello browser")).await;
    b.fill("#invoke textarea[name=body]", "live-line").await;
    b.click("#invoke button[type=submit]").await;
    b.wait_text("#logs", "follows", |t| t.contains("got live-line")).await;

    load.await.unwrap();
}

/// Edit: the form comes filled in; an update keeps what it does not show.
async fn edit(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    b.click("#fn-edit").await;
    b.wait_text("#deploy-title", "is the update form", |t| t == "Update shout").await;
    assert_eq!(b.js("return document.getElementById('deploy-service').readOnly;", json!([])).await, true);
    let env = b.js("return document.getElementById('deploy-envVars').value;", json!([])).await;
    assert_eq!(env, "GREETING=hello from");
    let ticked = eventually(Duration::from_secs(5), async || {
        b.js("return document.querySelector('#deploy-secrets input[value=api-key]')?.checked;", json!([]))
            .await
            == true
    })
    .await;
    assert!(ticked, "its secret is ticked");
    b.fill("#deploy-envVars", "GREETING=hey").await;
    b.click("#deploy-submit").await;
    b.wait_text("#fn-title", "is the function page again", |t| t == "shout").await;
    let updated = eventually(Duration::from_secs(20), async || {
        p.invoke("/function/shout", "again").await.body == "HEY AGAIN"
    })
    .await;
    assert!(updated, "the update reached the replicas");
    assert_eq!(b.text("#fn-secrets").await, "api-key");
}

/// Scale to 2, from the page.
async fn scale_and_list(ui: &Ui) {
    let Ui { b, .. } = ui;
    b.fill("#scale-replicas", "2").await;
    b.click("#scale button[type=submit]").await;
    b.wait_text("#fn-replicas", "two ready replicas", |t| t == "2/2").await;

    // The list agrees.
    b.click("#nav a[data-view=functions]").await;
    b.wait_text("tr[data-function=shout] .replicas", "two", |t| t == "2/2").await;
    let count = b.wait_text("tr[data-function=shout] .invocations", "counted", |t| !t.is_empty()).await;
    b.screenshot(&screenshots().join("functions.png")).await;
    // The list refreshes every 2 s without taking the keyboard's focus.
    b.js("document.querySelector('tr[data-function=shout] a').focus();", json!([])).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let focused = b.js("return document.activeElement.closest('tr')?.dataset.function;", json!([])).await;
    assert_eq!(focused, "shout", "focus kept across refreshes");
    assert!(count.parse::<u64>().unwrap() >= 46, "{count}");
}

/// A screenshot of the function page, traffic drawn.
async fn screenshot_and_phone(ui: &Ui) {
    let Ui { b, origin, .. } = ui;
    b.click("tr[data-function=shout] a").await;
    b.wait_text("#fn-replicas", "two", |t| t == "2/2").await;
    b.find("[data-chart='Requests/s'] path.rps").await;
    b.wait_text("#logs", "logs", |t| t.contains("got")).await;
    b.resize(1280, 2000).await;
    b.js("window.scrollTo(0, 0);", json!([])).await;
    b.screenshot(&screenshots().join("function-page.png")).await;
    labelled(b, "function page").await;

    // Phone-sized: every view fits a 390 px wide screen.
    b.resize(390, 844).await;
    for (hash, view) in [
        ("#/functions", "functions"),
        ("#/function/shout", "function"),
        ("#/deploy", "deploy"),
        ("#/secrets", "secrets"),
        ("#/failed", "failed"),
    ] {
        b.goto(&format!("{origin}/ui/{hash}")).await;
        b.find(&format!("#{view}-view h2")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        fits(b, view).await;
        labelled(b, view).await;
    }
    b.goto(&format!("{origin}/ui/#/function/shout")).await;
    b.wait_text("#fn-replicas", "loaded", |t| t == "2/2").await;
    b.screenshot(&screenshots().join("function-page-phone.png")).await;
    b.resize(1280, 1000).await;
}

/// Nothing was fetched from anywhere but the gateway.
async fn nothing_foreign(ui: &Ui) {
    let Ui { b, .. } = ui;
    let foreign = b
        .js(
            "return performance.getEntriesByType('resource').map(e => e.name)
               .filter(u => !u.startsWith(location.origin + '/'));",
            json!([]),
        )
        .await;
    assert_eq!(foreign, json!([]));
}

/// Delete: Escape cancels the confirmation, the button confirms it.
async fn delete(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    b.click("#fn-delete").await;
    b.find("#confirm").await;
    b.keys("\u{E00C}").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.js("return document.getElementById('confirm').open;", json!([])).await, false);
    assert_eq!(p.api(Method::GET, "/system/function/shout", "").await.status, StatusCode::OK, "still there");
    b.click("#fn-delete").await;
    b.click("#confirm-ok").await;
    b.find("#functions-view h2").await;
    b.find("#empty").await;
    assert_eq!(p.api(Method::GET, "/system/function/shout", "").await.status, StatusCode::NOT_FOUND);
}

/// Another namespace: the chooser appears, lists its functions, and the
/// function page works there (invoke, logs, delete).
async fn other_namespace(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    let spec = json!({"service": "team-fn", "namespace": "team", "image": "shout:1.0"});
    assert_eq!(
        p.api(Method::POST, "/system/functions", &spec.to_string()).await.status,
        StatusCode::ACCEPTED
    );
    b.choose("#namespace", "team").await;
    b.click("tr[data-function=team-fn] a").await;
    b.wait_text("#fn-namespace", "names the namespace", |t| t == "in team").await;
    b.wait_text("#fn-replicas", "ready", |t| t == "1/1").await;
    b.fill("#invoke textarea[name=body]", "team call").await;
    b.click("#invoke button[type=submit]").await;
    b.wait_text("#invoke-body", "shows the output", |t| t == " TEAM CALL").await;
    b.wait_text("#logs", "shows its logs", |t| t.contains("got team call")).await;
    b.click("#fn-delete").await;
    b.click("#confirm-ok").await;
    b.find("#empty").await;
    let r = p.api(Method::GET, "/system/function/team-fn?namespace=team", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    b.choose("#namespace", "openfaas-fn").await;
}

/// A function that cannot start says why on its page.
async fn why_it_cannot_start(ui: &Ui) {
    let Ui { p, b, origin, .. } = ui;
    let spec = json!({"service": "broken", "image": "shout:1.0", "envVars": {"mode": "bogus"}});
    assert_eq!(
        p.api(Method::POST, "/system/functions", &spec.to_string()).await.status,
        StatusCode::ACCEPTED
    );
    b.goto(&format!("{origin}/ui/#/function/broken")).await;
    b.wait_text("#fn-reason", "says why", |t| t.contains("exited during start-up")).await;
    assert_eq!(b.js("return document.querySelector('dt.why').hidden;", json!([])).await, false);
    let r = p.api(Method::DELETE, "/system/functions", r#"{"functionName":"broken"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    b.goto(&format!("{origin}/ui/#/functions")).await;
}

/// Triggers: the list names each function's, marks one whose broker is
/// down; the function page counts a schedule's events and gives the
/// broker's error. A topic is text, never markup.
async fn triggers(ui: &Ui) {
    let Ui { p, b, origin, .. } = ui;
    let schedule = json!({"topic": "cron-function", "schedule": "@every 1s"});
    // (NATS takes no > in a subject but a wildcard: markup without it.)
    let topic = "orders.<img.src=x.onerror=alert(1).a&amp;b";
    for (name, annotations) in [("ticker", schedule), ("listener", json!({"topic": topic}))] {
        let spec = json!({"service": name, "image": "shout:1.0", "annotations": annotations});
        let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    b.goto(&format!("{origin}/ui/#/functions")).await;
    let cell = "#functions tr[data-function=listener] td.triggers";
    b.wait_text(cell, "names the topic as text", |t| t == format!("nats {topic}")).await;
    let marked = format!("return document.querySelector('{cell}').classList.contains('error');");
    assert_eq!(b.js(&marked, json!([])).await, true, "a trigger that is down is marked");
    assert_eq!(b.js(&format!("return document.querySelector('{cell} *');"), json!([])).await, Value::Null);
    b.wait_text("#functions tr[data-function=ticker] td.triggers", "names the schedule", |t| {
        t == "cron @every 1s"
    })
    .await;

    b.goto(&format!("{origin}/ui/#/function/ticker")).await;
    b.wait_text("#fn-triggers tr td:nth-child(1)", "the schedule", |t| t == "cron @every 1s").await;
    b.wait_text("#fn-triggers tr td:nth-child(2)", "counts its events", |t| {
        t.parse::<u64>().is_ok_and(|n| n >= 2)
    })
    .await;
    b.wait_text("#fn-triggers tr td:nth-child(6)", "says when it fires next", |t| t != "-").await;
    assert_eq!(b.text("#fn-triggers tr td:nth-child(8)").await, "ok");
    b.goto(&format!("{origin}/ui/#/function/listener")).await;
    b.wait_text("#fn-triggers tr td:nth-child(8)", "gives the broker's error", |t| {
        t.contains("not connected")
    })
    .await;
    for name in ["ticker", "listener"] {
        let r = p.api(Method::DELETE, "/system/functions", &json!({"functionName": name}).to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    b.goto(&format!("{origin}/ui/#/functions")).await;
}

/// Failed asynchronous calls (dead letters): listed, one replayed once
/// the function works, one deleted.
/// (Fixed by an update that sets FIXED.)
async fn dead_letters(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    let script =
        "#!/bin/sh\ncat >/dev/null\n[ -n \"$FIXED\" ] || { echo not yet >&2; exit 1; }\necho fixed\n";
    let flaky = tar(&[
        ("bundle.json", r#"{"env":{"fprocess":"./flaky.sh","mode":"serializing"}}"#, 0o644),
        ("flaky.sh", script, 0o755),
    ]);
    assert_eq!(push_bundle(p, "flaky:1.0", flaky).await.status, StatusCode::CREATED);
    let spec = json!({"service": "flaky", "image": "flaky:1.0", "annotations": {"com.openfaas.retry.attempts": "1"}});
    p.deploy(spec, 1).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = call(p.addr, Method::POST, "/async-function/flaky", &[], "job").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.header("x-call-id").unwrap().to_owned());
    }
    b.click("#nav a[data-view=failed]").await;
    for id in &ids {
        b.find(&format!("tr[data-call='{id}']")).await;
    }
    b.screenshot(&screenshots().join("failed-calls.png")).await;
    let fixed = json!({"service": "flaky", "image": "flaky:1.0", "envVars": {"FIXED": "1"},
        "annotations": {"com.openfaas.retry.attempts": "1"}});
    assert_eq!(
        p.api(Method::PUT, "/system/functions", &fixed.to_string()).await.status,
        StatusCode::ACCEPTED
    );
    assert!(
        eventually(Duration::from_secs(15), async || p.invoke("/function/flaky", "").await.body == "fixed\n")
            .await
    );
    b.click(&format!("tr[data-call='{}'] button:not(.danger)", ids[0])).await;
    b.wait_text("#failed-status", "confirms", |t| t == format!("Queued {} again.", ids[0])).await;
    let done = eventually(Duration::from_secs(15), async || {
        let s = p.api(Method::GET, &format!("/system/async/{}", ids[0]), "").await.json();
        s["state"] == "done" && s["status"] == 200
    })
    .await;
    assert!(done, "the replayed call ran");
    b.click(&format!("tr[data-call='{}'] button.danger", ids[1])).await;
    b.click("#confirm-ok").await;
    b.wait_text("#failed-status", "confirms", |t| t == format!("Deleted {}.", ids[1])).await;
    b.find("#no-failed").await;
    assert_eq!(p.api(Method::GET, "/system/async/dead-letters", "").await.body, "[]");
}

/// The Usage page: what each function used and cost at a plan, charts per
/// hour, a namespace's quota and what its period used, a CSV download.
async fn usage(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    let plan = r#"{"perMillionInvocations": 1000000, "currency": "EUR"}"#;
    assert_eq!(p.api(Method::PUT, "/system/plans/*", plan).await.status, StatusCode::OK);
    let quota = r#"{"period": "day", "invocations": 100000}"#;
    assert_eq!(p.api(Method::PUT, "/system/quotas/openfaas-fn", quota).await.status, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(p.invoke("/function/flaky", "").await.status, StatusCode::OK);
    }
    let used = p.api(Method::GET, "/system/usage?from=1h&function=flaky", "").await.json()["total"].clone();
    let n = used["invocations"].as_u64().unwrap();
    b.click("#nav a[data-view=usage]").await;
    b.find("#usage-view h2").await;
    b.click("#usage-all").await;
    let count = n.to_string();
    b.wait_text("tr[data-row=flaky] td:nth-child(2)", "counts flaky's calls", |t| t == count).await;
    // One per call at a unit a call: its cost is its count.
    let cost = b.text("tr[data-row=flaky] td:nth-child(7)").await;
    assert_eq!(cost, format!("{n} EUR"));
    // The column before it is the peak memory, a number of MiB.
    let peak = b.text("tr[data-row=flaky] td:nth-child(6)").await;
    assert!(peak.parse::<f64>().is_ok(), "peak memory: {peak:?}");
    b.find("#usage-charts figure[data-chart='Invocations per hour']").await;
    let total = b.text("#usage-total").await;
    assert!(total.starts_with("Total") && total.contains("EUR"), "{total}");
    let q = b.wait_text("tr[data-quota=openfaas-fn]", "shows the quota", |t| t.contains("of 100,000")).await;
    assert!(q.contains("day"), "{q}");
    b.choose("#usage-group", "hour").await;
    b.wait_text("#usage-key", "groups by hour", |t| t == "Hour").await;
    b.click("#usage-csv").await;
    b.find("#usage-csv-link").await;
    let csv = b
        .js(
            "const link = document.getElementById('usage-csv-link');
             return link.href.startsWith('blob:') && link.download === 'usage.csv' ? link.blob.text() : null;",
            json!([]),
        )
        .await;
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("period,invocations,errors,"), "{csv}");
    assert!(csv.contains(",EUR\r\n"), "{csv}");
    fits(b, "usage").await;
    labelled(b, "usage").await;
    b.screenshot(&screenshots().join("usage.png")).await;
    assert_eq!(p.api(Method::DELETE, "/system/quotas/openfaas-fn", "").await.status, StatusCode::NO_CONTENT);
}

/// And the secret, once no function uses it.
async fn secret_deleted(ui: &Ui) {
    let Ui { p, b, .. } = ui;
    b.click("#nav a[data-view=secrets]").await;
    b.click("tr[data-secret=api-key] button.danger").await;
    b.click("#confirm-ok").await;
    b.wait_text("#secret-status", "confirms", |t| t == "Deleted api-key.").await;
    b.find("#no-secret-rows").await;
    assert_eq!(p.api(Method::GET, "/system/secrets", "").await.body, "[]");
}

/// Signing out forgets the credentials.
async fn sign_out(ui: &Ui) {
    let Ui { b, .. } = ui;
    b.click("#signout").await;
    b.find("#signin-view h2").await;
    assert_eq!(b.js("return sessionStorage.length;", json!([])).await, 0);
}

/// A function's page, opened in the tab where the admin signed in: its own
/// script runs (and its form), but in an origin of its own, so it can read
/// neither the UI's storage (the admin's credentials) nor write to the API,
/// not by `fetch`, not by posting a form the browser sends with what it
/// holds; the API refuses a cross-origin write even when it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: cargo test -- --ignored runs it (.ci/run installs them)"]
async fn a_functions_page_cannot_use_the_uis_credentials() {
    require_chromium();
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);
    let page = r#"<!doctype html><html><body><p id="own">waiting</p><p id="storage">waiting</p><p id="write">waiting</p>
<form id="csrf" method="post" action="/system/functions" enctype="text/plain" target="sink">
<input name='{"service":"stolen","image":"/bin","envProcess":"cat","x":"' value='"}'></form>
<iframe name="sink" id="sink"></iframe>
<script>
document.getElementById("own").textContent = "script ran";
try { const a = window.sessionStorage.getItem("ferrofaas-auth"); document.getElementById("storage").textContent = "read: " + a; }
catch (e) { document.getElementById("storage").textContent = "storage blocked"; }
fetch("/system/functions", {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"},
  body: JSON.stringify({service: "fetched", image: "/bin", envProcess: "cat"})})
  .then(r => { document.getElementById("write").textContent = "fetch answered " + r.status; })
  .catch(e => { document.getElementById("write").textContent = "fetch blocked"; });
document.getElementById("csrf").submit();
</script></body></html>"#;
    let script = format!("#!/bin/sh\ncat > /dev/null\ncat <<'EOF'\n{page}\nEOF\n");
    let bundle = tar(&[
        (
            "bundle.json",
            r#"{"env":{"fprocess":"./page.sh","mode":"serializing","content_type":"text/html"}}"#,
            0o644,
        ),
        ("page.sh", &script, 0o755),
    ]);
    assert_eq!(push_bundle(&p, "page:1.0", bundle).await.status, StatusCode::CREATED);
    p.deploy(json!({"service": "page", "image": "page:1.0"}), 1).await;
    let r = call(p.addr, Method::GET, "/function/page", &[], "").await;
    assert!(
        r.header("content-security-policy").unwrap().starts_with("sandbox allow-scripts"),
        "{:?}",
        r.headers
    );

    let creds: Value =
        serde_json::from_slice(&std::fs::read(state.path().join("credentials.json")).unwrap()).unwrap();
    let origin = format!("http://{}", p.addr);
    let b = Browser::start().await;
    b.goto(&format!("{origin}/")).await;
    b.fill("#signin input[name=username]", creds["username"].as_str().unwrap()).await;
    b.fill("#signin input[name=password]", creds["password"].as_str().unwrap()).await;
    b.keys("\u{E007}").await;
    b.find("#functions-view h2").await;
    assert!(!b.js("return sessionStorage.getItem('ferrofaas-auth')", json!([])).await.is_null(), "signed in");

    // The same tab, now on the function's page.
    b.goto(&format!("{origin}/function/page")).await;
    b.wait_text("#own", "its own script ran", |t| t == "script ran").await;
    b.wait_text("#storage", "could not read the UI's storage", |t| t == "storage blocked").await;
    b.wait_text("#write", "could not write with fetch", |t| {
        t == "fetch blocked" || t.starts_with("fetch answered 4")
    })
    .await;
    // The form went (the browser sends it), and the API refused it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let functions = p.api(Method::GET, "/system/functions", "").await.json();
    let names: Vec<&str> = functions.as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["page"], "nothing was deployed from the function's page");
}
