//! Schedules in real time: a function annotated as OpenFaaS's
//! cron-connector reads it (`topic: cron-function`, `schedule: "@every
//! 1s"`) is called once a second, once per slot, as an asynchronous call
//! with the event's headers; two gateways sharing a queue on NATS fire
//! each slot once between them; wrong annotations are refused at deploy,
//! naming the annotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::brokers::{mosquitto, nats, rabbitmq};
use common::*;
use futures_util::StreamExt;
use http::{Method, StatusCode};
use serde_json::json;

/// The function: logs the event's headers, one line per call.
fn ticker(name: &str) -> serde_json::Value {
    let image = format!("{}/wc", examples().display());
    json!({
        "service": name,
        "image": image,
        "envProcess": "sh -c 'echo \"event $Http_X_Event_Time $Http_X_Topic $Http_X_Connector $Http_X_Message_Id\" >&2; cat'",
        "annotations": {"topic": "cron-function", "schedule": "@every 1s"},
    })
}

/// Event lines in a function's logs: event time to how many times.
async fn events(p: &Platform, name: &str) -> BTreeMap<String, usize> {
    let logs = p.api(Method::GET, &format!("/system/logs?name={name}&tail=-1&follow=false"), "").await;
    assert_eq!(logs.status, StatusCode::OK, "{}", logs.body);
    let mut seen = BTreeMap::new();
    for line in logs.body.lines() {
        let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let text = line["text"].as_str().unwrap_or("");
        if let Some(rest) = text.split("event ").nth(1) {
            let mut words = rest.split_whitespace();
            let time = words.next().unwrap_or("").to_owned();
            assert_eq!(words.next(), Some("cron-function"), "{text}");
            assert_eq!(words.next(), Some("cron"), "{text}");
            *seen.entry(time).or_default() += 1;
        }
    }
    seen
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_every_second_once() {
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &[]);

    // Wrong annotations: 400, naming them; nothing deployed.
    for (annotations, field, says) in [
        (json!({"topic": "cron-function", "schedule": "61 * * * *"}), "annotations.schedule", "minute 61"),
        (json!({"topic": "cron-function"}), "annotations.topic", "needs a schedule"),
        (json!({"schedule": "@hourly"}), "annotations.schedule", "cron-function"),
        (json!({"topic": "orders"}), "annotations.topic", "no connector subscribes"),
        (
            json!({"topic": "cron-function", "schedule": "@daily", "com.ferrofaas.schedule.timezone": "Mars/Base"}),
            "annotations.schedule",
            "unknown time zone",
        ),
    ] {
        let mut spec = ticker("bad");
        spec["annotations"] = annotations;
        let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let message = r.message();
        assert!(message.contains(field) && message.contains(says), "{message}");
    }
    assert_eq!(p.api(Method::GET, "/system/function/bad", "").await.status, StatusCode::NOT_FOUND);

    p.deploy(ticker("tick"), 1).await;
    // A Python function on the same schedule.
    let python = json!({
        "service": "pytick",
        "image": format!("{}/hello-python", examples().display()),
        "annotations": {"topic": "cron-function", "schedule": "@every 1s"},
    });
    p.deploy(python, 1).await;
    let deployed = now_secs();
    // The attack: an anonymous client takes a coming slot's call id, so
    // that the queue would refuse the slot's own call. Refused; the slot
    // fires (checked with the others below).
    let coming = format!("cron-tick.openfaas-fn-{}", deployed + 4);
    let r =
        call(p.addr, Method::POST, "/async-function/tick", &[("x-call-id", coming.as_str())], "forged").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("triggered calls"), "{}", r.body);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let until = now_secs();
    let seen = eventually(Duration::from_secs(10), async || {
        let seen = events(&p, "tick").await;
        ((deployed + 2)..until.saturating_sub(1)).all(|s| {
            let t = jiff::Timestamp::from_second(s as i64).unwrap().to_string();
            seen.contains_key(&t)
        })
    })
    .await;
    let got = events(&p, "tick").await;
    assert!(seen, "a call every second from {deployed} to {until}: {got:?}");
    assert!(got.values().all(|n| *n == 1), "each slot once: {got:?}");
    // Each is an asynchronous call with a call id of its slot, done.
    let slot = deployed + 3;
    let status = p.api(Method::GET, &format!("/system/async/cron-tick.openfaas-fn-{slot}"), "").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.json()["state"], "done", "{}", status.body);
    let python = format!("cron-pytick.openfaas-fn-{slot}");
    assert_eq!(call_state(&p, &python).await.as_deref(), Some("done"), "{python}");

    // Visible: the function's status, faas describe, /metrics.
    let f = p.api(Method::GET, "/system/function/tick", "").await.json();
    let t = &f["triggers"][0];
    assert_eq!(
        (t["connector"].as_str(), t["topic"].as_str(), t["schedule"].as_str()),
        (Some("cron"), Some("cron-function"), Some("@every 1s")),
        "{f}"
    );
    assert!(t["dispatched"].as_u64().unwrap() >= 3 && t["failed"] == 0, "{f}");
    assert!(t["nextEvent"].as_str().is_some() && t["lastEvent"].as_str().is_some(), "{f}");
    let work = tempfile::tempdir().unwrap();
    let described = faas_ok(work.path(), Some(&p), &["describe", "tick"], None);
    assert!(described.contains("Triggers:\n  cron cron-function \"@every 1s\": "), "{described}");
    let metrics = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gateway_trigger_dispatched_total{") && l.contains("tick.openfaas-fn"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.contains("connector=\"cron\""), "{line}");
    assert!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 3, "{line}");

    // Removed: no more calls.
    let r = p.api(Method::DELETE, "/system/functions", &json!({"functionName": "tick"}).to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let gone = now_secs() + 1;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = p.api(Method::GET, &format!("/system/async/cron-tick.openfaas-fn-{}", gone + 1), "").await;
    assert_eq!(later.status, StatusCode::NOT_FOUND, "{}", later.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn two_gateways_sharing_nats_fire_a_slot_once() {
    let nats = nats();
    let (a_state, b_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Platform::start(&programs(), a_state.path(), &["--queue", &nats.url]);
    let b = Platform::start(&programs(), b_state.path(), &["--queue", &nats.url]);
    a.deploy(ticker("tick"), 1).await;
    b.deploy(ticker("tick"), 1).await;
    let deployed = now_secs();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let until = now_secs();
    let slots: Vec<String> = ((deployed + 2)..until.saturating_sub(1))
        .map(|s| jiff::Timestamp::from_second(s as i64).unwrap().to_string())
        .collect();
    let complete = eventually(Duration::from_secs(15), async || {
        let (ea, eb) = (events(&a, "tick").await, events(&b, "tick").await);
        slots.iter().all(|t| ea.get(t).unwrap_or(&0) + eb.get(t).unwrap_or(&0) >= 1)
    })
    .await;
    let (ea, eb) = (events(&a, "tick").await, events(&b, "tick").await);
    assert!(complete, "every slot ran: {slots:?}\n{ea:?}\n{eb:?}");
    for t in &slots {
        let n = ea.get(t).unwrap_or(&0) + eb.get(t).unwrap_or(&0);
        assert_eq!(n, 1, "slot {t} ran once between the two gateways: {ea:?} {eb:?}");
    }
}

/// The function of the NATS tests: logs each event's topic, id and body.
fn listener(name: &str, topic: &str) -> serde_json::Value {
    let image = format!("{}/wc", examples().display());
    json!({
        "service": name,
        "image": image,
        "envProcess": "sh -c 'echo \"event $Http_X_Topic $Http_X_Connector $Http_X_Message_Id $(cat)\" >&2'",
        "annotations": {"topic": topic},
    })
}

/// The Python example function, triggered by `topic`, its answers
/// published to `reply`.
fn greeter(topic: &str, reply: &str) -> serde_json::Value {
    json!({
        "service": "greeter",
        "image": format!("{}/hello-python", examples().display()),
        "annotations": {"topic": topic, "com.ferrofaas.reply-topic": reply},
    })
}

/// Waits until `name`'s first trigger is `connector`'s and subscribed.
async fn subscribed(p: &Platform, name: &str, connector: &str) {
    let path = format!("/system/function/{name}");
    let ok = eventually(Duration::from_secs(20), async || {
        let f = p.api(Method::GET, &path, "").await.json();
        f["triggers"][0]["lastError"].is_null() && f["triggers"][0]["connector"] == connector
    })
    .await;
    assert!(ok, "{name} subscribed on {connector}: {}", p.api(Method::GET, &path, "").await.body);
}

/// Are all these calls done, within `within`?
async fn all_done(p: &Platform, ids: impl Iterator<Item = String>, within: Duration) -> bool {
    let ids: Vec<String> = ids.collect();
    eventually(within, async || {
        for id in &ids {
            if call_state(p, id).await.as_deref() != Some("done") {
                return false;
            }
        }
        true
    })
    .await
}

async fn call_state(p: &Platform, id: &str) -> Option<String> {
    let r = p.api(Method::GET, &format!("/system/async/{id}"), "").await;
    (r.status == StatusCode::OK).then(|| r.json()["state"].as_str().unwrap_or("").to_owned())
}

/// NATS as a trigger: a subject a JetStream stream keeps is read through a
/// durable consumer, so messages published while the gateway is down
/// (killed with SIGKILL) are delivered when it is back, each once; a core
/// subject's request is answered once its call is stored; a broker that
/// is down when the gateway starts is waited for, and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn nats_messages_trigger_functions_and_none_is_lost() {
    // A server with a password, which the connector's URL carries.
    let nats = common::brokers::nats_with_user("orders", "0rders-pw");
    let plain = nats.url.replace("orders:0rders-pw@", "");
    assert!(async_nats::connect(plain.as_str()).await.is_err(), "NATS takes a client without its password");
    let client = async_nats::ConnectOptions::with_user_and_password("orders".into(), "0rders-pw".into())
        .connect(plain.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let connector = format!("nats={}", nats.url);
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);

    // A subject nothing can subscribe to, and an unknown connector.
    let mut bad = listener("bad", "orders..new");
    let r = p.api(Method::POST, "/system/functions", &bad.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("annotations.topic") && r.message().contains("empty token"), "{}", r.body);
    bad["annotations"]["topic"] = json!("kafka:orders");
    let r = p.api(Method::POST, "/system/functions", &bad.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("connector kafka is not switched on"), "{}", r.body);
    // The attack: a function subscribed to the queue's own subjects (the
    // queue may share this NATS server) or to NATS's API would read other
    // functions' calls.
    for subject in ["ferrofaas.calls.>", "$JS.API.>", ">", "_INBOX.>"] {
        bad["annotations"]["topic"] = json!(subject);
        let r = p.api(Method::POST, "/system/functions", &bad.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{subject}: {}", r.body);
    }

    p.deploy(listener("orders", "orders.new"), 1).await;
    p.deploy(listener("pings", "nats:pings"), 1).await;
    // Subscribed (at deploy, not at the next reading of the functions).
    subscribed(&p, "orders", "nats").await;

    // Durable: 20 now, 10 while the gateway is dead, each run once.
    for i in 1..=20 {
        js.publish("orders.new", format!("order {i}").into()).await.unwrap().await.unwrap();
    }
    let id = |seq: u64| format!("nats-orders.openfaas-fn-ORDERS-{seq}");
    let ran = all_done(&p, (1..=20).map(id), Duration::from_secs(20)).await;
    assert!(ran, "20 orders ran");
    // Core NATS, as a request: answered once stored, with the event's id.
    let answer = tokio::time::timeout(Duration::from_secs(10), client.request("pings", "ping".into()))
        .await
        .unwrap()
        .unwrap();
    let event = String::from_utf8_lossy(&answer.payload).to_string();
    let ping = format!("nats-pings.openfaas-fn-{event}");
    let done =
        eventually(Duration::from_secs(10), async || call_state(&p, &ping).await.as_deref() == Some("done"))
            .await;
    assert!(done, "{ping}");
    let logs = p.api(Method::GET, "/system/logs?name=pings&tail=-1&follow=false", "").await.body;
    assert!(logs.contains(&format!("event pings nats {event} ping")), "{logs}");

    // A Python function's answers, published to its reply subject, with
    // the call's id and the function's status in the headers.
    let mut replies = client.subscribe("greet.replies").await.unwrap();
    client.flush().await.unwrap();
    p.deploy(greeter("greet", "nats:greet.replies"), 1).await;
    subscribed(&p, "greeter", "nats").await;
    client.publish("greet", "world".into()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(20), replies.next()).await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["message"], "Hello from Python, world!", "{v}");
    let headers = reply.headers.unwrap();
    assert_eq!(headers.get("X-Function-Status").map(|v| v.as_str()), Some("200"));
    assert!(headers.get("X-Call-Id").unwrap().as_str().starts_with("nats-greeter.openfaas-fn-"));

    p.kill9();
    for i in 21..=30 {
        js.publish("orders.new", format!("order {i}").into()).await.unwrap().await.unwrap();
    }
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);
    let ran = all_done(&p, (1..=30).map(id), Duration::from_secs(60)).await;
    assert!(ran, "the 10 published while the gateway was down ran too:\n{}", p.logs());
    assert!(!p.logs().contains("0rders-pw"), "the broker's password in the gateway's messages");
    assert_eq!(call_state(&p, &id(31)).await, None, "nothing else");
    let f = p.api(Method::GET, "/system/function/orders", "").await.json();
    assert_eq!(f["triggers"][0]["failed"], 0, "{f}");
    let metrics = call(p.addr, Method::GET, "/metrics", &[], "").await.body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gateway_topic_dispatched_total{") && l.contains("topic=\"orders.new\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.contains("connector=\"nats\""), "{line}");
    drop(p);

    // A broker down when the gateway starts: it starts, reports it, and
    // subscribes once the broker is there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let late = format!("nats=nats://127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let p = Platform::start(&programs(), state.path(), &["--connector", &late]);
    p.deploy(listener("pings", "pings"), 1).await;
    let reported = eventually(Duration::from_secs(10), async || {
        let f = p.api(Method::GET, "/system/function/pings", "").await.json();
        f["triggers"][0]["lastError"].as_str().is_some_and(|e| e.contains("not connected"))
    })
    .await;
    assert!(reported, "{}", p.api(Method::GET, "/system/function/pings", "").await.body);
    let server = common::brokers::nats_on(port);
    let client = async_nats::connect(server.url.as_str()).await.unwrap();
    let answered = eventually(Duration::from_secs(40), async || {
        tokio::time::timeout(Duration::from_secs(1), client.request("pings", "late".into()))
            .await
            .is_ok_and(|r| r.is_ok())
    })
    .await;
    assert!(answered, "subscribed once NATS came up");
}

fn publish(port: u16, topic: &str, message: &str) {
    publish_qos(port, topic, message, 1)
}

fn publish_qos(port: u16, topic: &str, message: &str, qos: u8) {
    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            &qos.to_string(),
            "-t",
            topic,
            "-m",
            message,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
}

/// Bodies of the events in a function's logs.
async fn bodies(p: &Platform, name: &str) -> Vec<String> {
    let logs = p.api(Method::GET, &format!("/system/logs?name={name}&tail=-1&follow=false"), "").await.body;
    let mut found: Vec<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["text"].as_str().and_then(|t| t.split("event ").nth(1)).map(str::to_owned))
        .collect();
    found.sort();
    found
}

/// MQTT as a trigger: QoS 1 messages on a topic filter reach the
/// function, and those published while the gateway is dead (SIGKILL) are
/// kept by the broker for its session and delivered when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto and mosquitto_pub: cargo test -- --ignored runs it (.ci/run installs them)"]
async fn mqtt_messages_trigger_functions_and_none_is_lost() {
    let broker = mosquitto();
    let state = tempfile::tempdir().unwrap();
    let connector = format!("mqtt={}", broker.url);
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);
    let mut bad = listener("bad", "mqtt:sensors/#/temp");
    let r = p.api(Method::POST, "/system/functions", &bad.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("# is the last level only"), "{}", r.body);
    bad["annotations"]["topic"] = json!("nats:x");
    let r = p.api(Method::POST, "/system/functions", &bad.to_string()).await;
    assert!(
        r.status == StatusCode::BAD_REQUEST && r.message().contains("connector nats is not switched on"),
        "{}",
        r.body
    );

    p.deploy(listener("sensors", "mqtt:sensors/+/temp"), 1).await;
    subscribed(&p, "sensors", "mqtt").await;
    // QoS 1, and QoS 0 (at most once: delivered while the gateway runs).
    for i in 1..=5 {
        publish_qos(broker.port, "sensors/kitchen/temp", &format!("t{i}"), if i == 5 { 0 } else { 1 });
    }
    let expect = |range: std::ops::RangeInclusive<u32>| -> Vec<String> {
        let mut v: Vec<String> = range.map(|i| format!("t{i}")).collect();
        v.sort();
        v
    };
    let got = eventually(Duration::from_secs(15), async || {
        let b: Vec<String> =
            bodies(&p, "sensors").await.iter().map(|b| b.rsplit(' ').next().unwrap().to_owned()).collect();
        b == expect(1..=5)
    })
    .await;
    assert!(got, "{:?}", bodies(&p, "sensors").await);
    assert!(
        bodies(&p, "sensors").await[0].starts_with("sensors/kitchen/temp mqtt "),
        "{:?}",
        bodies(&p, "sensors").await
    );

    // A Python function's answer, published to its reply topic (QoS 1).
    let sub = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-C", "1", "-W", "30"])
        .args(["-t", "replies/greet"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.deploy(greeter("mqtt:greet", "mqtt:replies/greet"), 1).await;
    subscribed(&p, "greeter", "mqtt").await;
    publish(broker.port, "greet", "mqtt");
    let out = sub.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["message"], "Hello from Python, mqtt!", "{}", String::from_utf8_lossy(&out.stdout));

    p.kill9();
    for i in 6..=9 {
        publish(broker.port, "sensors/hall/temp", &format!("t{i}"));
    }
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);
    let got = eventually(Duration::from_secs(30), async || {
        let b: Vec<String> =
            bodies(&p, "sensors").await.iter().map(|b| b.rsplit(' ').next().unwrap().to_owned()).collect();
        b == expect(6..=9)
    })
    .await;
    assert!(
        got,
        "the 4 published while the gateway was down: {:?}\n{}",
        bodies(&p, "sensors").await,
        p.logs()
    );
}

/// A message for RabbitMQ's `amq.topic`: persistent, with an id and
/// headers.
async fn amqp_publish(channel: &lapin::Channel, key: &str, id: &str, body: &str, headers: &[(&str, &str)]) {
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert((*k).into(), AMQPValue::LongString(LongString::from(*v)));
    }
    let properties = lapin::BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(id.into())
        .with_headers(table);
    let confirm = channel
        .basic_publish("amq.topic".into(), key.into(), Default::default(), body.as_bytes(), properties)
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack(), "RabbitMQ took {id}");
}

/// A queue of the test's own bound to `key` on `amq.topic`: where replies
/// are read from.
async fn amqp_listen(channel: &lapin::Channel, key: &str) {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    let fields = lapin::types::FieldTable::default;
    channel.queue_declare(key.into(), QueueDeclareOptions::default(), fields()).await.unwrap();
    channel
        .queue_bind(key.into(), "amq.topic".into(), key.into(), QueueBindOptions::default(), fields())
        .await
        .unwrap();
}

/// What has come to the test's queue `key` within `within`, until `n`:
/// each message's body and headers (text).
async fn amqp_take(
    channel: &lapin::Channel,
    key: &str,
    n: usize,
    within: Duration,
) -> Vec<(String, BTreeMap<String, String>)> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + within;
    while got.len() < n && std::time::Instant::now() < deadline {
        let options = lapin::options::BasicGetOptions { no_ack: true };
        match channel.basic_get(key.into(), options).await.unwrap() {
            Some(m) => {
                let headers = m
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .map(|t| {
                        t.inner()
                            .iter()
                            .filter_map(|(k, v)| match v {
                                lapin::types::AMQPValue::LongString(s) => Some((
                                    k.as_str().to_owned(),
                                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                                )),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                got.push((String::from_utf8_lossy(&m.delivery.data).into_owned(), headers));
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    got
}

/// The orders the shell function logged, in order.
async fn orders_seen(p: &Platform) -> Vec<u32> {
    let mut seen: Vec<u32> = bodies(p, "orders")
        .await
        .iter()
        .filter_map(|b| b.strip_prefix("orders.new rabbitmq o-"))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    seen.sort();
    seen
}

/// RabbitMQ as a trigger: messages on `amq.topic` reach a shell function
/// (a wildcard binding key) and a Python one; those published while the
/// gateway is dead (SIGKILL) wait in the durable queue and run once it is
/// back, each once (the message id is the event's); the Python function's
/// answers are published to its reply topic, or to the one a message asks
/// for; a loop of replies ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rabbitmq-server: cargo test -- --ignored runs it (.ci/run installs it)"]
async fn rabbitmq_messages_trigger_functions_and_none_is_lost() {
    let mq = rabbitmq();
    let connection = lapin::Connection::connect(&mq.url, Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    amqp_listen(&channel, "replies.orders").await;
    amqp_listen(&channel, "replies.asked").await;
    let state = tempfile::tempdir().unwrap();
    let connector = format!("rabbitmq={}", mq.url);
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);

    // Wrong keys and reply topics, named.
    for (spec, says) in [
        (listener("bad", "rabbitmq:orders.n*w"), "whole words"),
        (greeter("orders.new", "replies.*"), "without * or #"),
        (greeter("orders.new", "orders.new"), "trigger it again"),
        (greeter("orders.new", "kafka:replies"), "not switched on"),
    ] {
        let r = p.api(Method::POST, "/system/functions", &spec.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.message().contains(says), "{says}: {}", r.body);
    }

    p.deploy(listener("orders", "rabbitmq:orders.*"), 1).await;
    p.deploy(greeter("orders.new", "replies.orders"), 1).await;
    for name in ["orders", "greeter"] {
        subscribed(&p, name, "rabbitmq").await;
    }
    for i in 1..=10 {
        amqp_publish(&channel, "orders.new", &format!("o-{i}"), &format!("order {i}"), &[]).await;
    }
    let ids = |range: std::ops::RangeInclusive<u32>| {
        range.flat_map(|i| ["orders", "greeter"].map(|f| format!("rabbitmq-{f}.openfaas-fn-o-{i}")))
    };
    assert!(all_done(&p, ids(1..=10), Duration::from_secs(30)).await, "10 orders ran in both functions");
    assert_eq!(orders_seen(&p).await, (1..=10).collect::<Vec<_>>(), "each order once in the shell function");

    // Killed: what is published meanwhile waits in the queues.
    p.kill9();
    for i in 11..=20 {
        amqp_publish(&channel, "orders.new", &format!("o-{i}"), &format!("order {i}"), &[]).await;
    }
    let p = Platform::start(&programs(), state.path(), &["--connector", &connector]);
    assert!(
        all_done(&p, ids(1..=20), Duration::from_secs(60)).await,
        "the 10 sent while it was down ran:\n{}",
        p.logs()
    );
    // The same message again (same id): no second call.
    amqp_publish(&channel, "orders.new", "o-1", "order 1", &[]).await;
    let counted = eventually(Duration::from_secs(10), async || {
        let f = p.api(Method::GET, "/system/function/greeter", "").await.json();
        f["triggers"][0]["duplicates"].as_u64() >= Some(1)
    })
    .await;
    assert!(counted, "{}", p.api(Method::GET, "/system/function/greeter", "").await.body);
    // (The function's logs are of this run's replica: 11 to 20.)
    assert_eq!(orders_seen(&p).await, (11..=20).collect::<Vec<_>>(), "each order once in the shell function");

    // The Python function's answers, on its reply topic: one per order.
    let replies = amqp_take(&channel, "replies.orders", 20, Duration::from_secs(30)).await;
    let mut orders: Vec<u32> = replies
        .iter()
        .map(|(body, headers)| {
            assert_eq!(headers.get("X-Function-Status").map(String::as_str), Some("200"), "{headers:?}");
            assert_eq!(headers.get("X-Ferrofaas-Hops").map(String::as_str), Some("1"), "{headers:?}");
            let id = &headers["X-Call-Id"];
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            let n: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(v["message"], format!("Hello from Python, order {n}!"), "{body}");
            n
        })
        .collect();
    orders.sort();
    assert_eq!(orders, (1..=20).collect::<Vec<_>>());

    // A message's X-Reply-Topic: both functions' answers go there.
    amqp_publish(&channel, "orders.new", "ask-1", "asked", &[("X-Reply-Topic", "replies.asked")]).await;
    let asked = amqp_take(&channel, "replies.asked", 2, Duration::from_secs(20)).await;
    let mut who: Vec<&str> = asked.iter().map(|(_, h)| h["X-Function-Name"].as_str()).collect();
    who.sort();
    assert_eq!(who, ["greeter", "orders"], "{asked:?}");
    assert!(asked.iter().any(|(b, _)| b.contains("Hello from Python, asked!")), "{asked:?}");
    // An HTTP caller cannot ask for a reply: its call runs, nothing is
    // published.
    let headers = [("x-reply-topic", "replies.asked"), ("x-call-id", "http-asked")];
    let r = call(p.addr, Method::POST, "/async-function/greeter", &headers, "from http").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(all_done(&p, ["http-asked".to_owned()].into_iter(), Duration::from_secs(20)).await);
    assert!(amqp_take(&channel, "replies.asked", 1, Duration::from_secs(2)).await.is_empty());
    // A message 8 replies deep (functions replying in a loop) runs nothing.
    amqp_publish(&channel, "orders.new", "loop-1", "again", &[("X-Ferrofaas-Hops", "8")]).await;
    let dropped = eventually(Duration::from_secs(10), async || {
        let f = p.api(Method::GET, "/system/function/greeter", "").await.json();
        f["triggers"][0]["lastError"].as_str().is_some_and(|e| e.contains("loop"))
    })
    .await;
    assert!(dropped, "{}", p.api(Method::GET, "/system/function/greeter", "").await.body);
    assert_eq!(call_state(&p, "rabbitmq-greeter.openfaas-fn-loop-1").await, None);
    assert!(amqp_take(&channel, "replies.orders", 1, Duration::from_secs(2)).await.is_empty());
}
