//! MQTT against a real Mosquitto (started per test on a free loopback port): availability and the last
//! will, live progress of a real training job, request/response for every request name, a 30 s broker
//! outage during a job, TLS with a self-signed CA and a password, Home Assistant discovery, and broker
//! faults: down / up / down during a job batch, and a broker whose certificate the daemon does not trust.
mod common;
#[path = "common/mqtt.rs"]
mod mqtt_helpers;

use common::{Daemon, fleet};
use mqtt_helpers::{Broker, Login, Msg, Sub, find_binary};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BASE: &str = "millwright/test1";
const SHORT: Duration = Duration::from_secs(15);
const LONG: Duration = Duration::from_secs(300);

fn setup(rows: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, 1, rows);
    let state = d.path().join("state");
    (d, data, state)
}

fn start(data: &Path, state: &Path, url: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("MILLWRIGHT_MQTT__ENABLED", "true"),
        ("MILLWRIGHT_MQTT__URL", url),
        ("MILLWRIGHT_MQTT__NODE_ID", "test1"),
        ("MILLWRIGHT_MQTT__KEEPALIVE_S", "5"),
    ];
    env.extend_from_slice(extra);
    Daemon::start(data, state, &env)
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

fn state_of(m: &Msg) -> String {
    m.json()["state"].as_str().unwrap_or("").to_string()
}

/// Waits for the answer to request `name` carrying `transaction` on the default response topic, and checks
/// it is a refusal whose message mentions `why`.
fn refusal(sub: &Sub, name: &str, transaction: &str, why: &str) {
    let r = sub
        .wait(SHORT, &format!("the refusal of {name} {transaction}"), |m| {
            m.topic == topic(&format!("bridge/response/{name}")) && m.json()["transaction"] == transaction
        })
        .json();
    assert_eq!(r["status"], "error", "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains(why), "{r}");
}

fn events(sub: &Sub) -> Vec<Value> {
    sub.on(&topic("bridge/event")).iter().map(Msg::json).collect()
}

#[test]
fn availability_is_retained_and_the_last_will_fires_on_kill_9() {
    let (d, data, state) = setup(3_000);
    let broker = Broker::start(&d.path().join("broker"));
    let mut daemon = start(&data, &state, &broker.url(), &[]);
    let watcher = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    watcher.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");

    // A client arriving later gets the retained state, info and health at once.
    let late = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    let s = late.wait_topic(&topic("bridge/state"), SHORT);
    assert!(s.retain, "bridge/state must be retained");
    assert_eq!(state_of(&s), "online");
    let info = late.wait_topic(&topic("bridge/info"), SHORT);
    assert!(info.retain);
    let info = info.json();
    assert_eq!(info["node_id"], "test1");
    assert_eq!(info["machines"].as_array().unwrap().len(), 1, "{info}");
    assert_eq!(info["config"]["auth"]["token"], "***", "no secrets in bridge/info: {info}");
    let health = late.wait_topic(&topic("bridge/health"), SHORT);
    assert!(health.retain);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["queue_depth"], 0);
    let idle = late.wait_topic(&topic("jobs/current"), SHORT);
    assert!(idle.retain && idle.json()["status"] == "IDLE" && idle.json()["task_id"].is_null(), "idle: {:?}", idle.json());

    daemon.kill9();
    let will = watcher.wait(SHORT, "offline (last will)", |m| m.topic == topic("bridge/state") && state_of(m) == "offline");
    eprintln!("last will after kill -9: {:?}", will.at.elapsed());
    let after = Sub::connect(broker.port, &[&topic("bridge/state")]);
    let s = after.wait_topic(&topic("bridge/state"), SHORT);
    assert!(s.retain && state_of(&s) == "offline", "the will is retained");

    // Clean shutdown: offline is published by the daemon itself, then it disconnects.
    watcher.clear();
    let mut daemon = start(&data, &state, &broker.url(), &[]);
    watcher.wait(SHORT, "online again", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    let took = daemon.terminate();
    watcher.wait(SHORT, "offline on SIGTERM", |m| m.topic == topic("bridge/state") && state_of(m) == "offline");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(daemon.log().contains("published offline and disconnected"), "{}", daemon.log());
}

#[test]
fn progress_of_a_real_training_job_rises_at_most_once_a_second_per_stage() {
    let (d, data, state) = setup(12_000);
    let broker = Broker::start(&d.path().join("broker"));
    let daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_TRAINING__QUALITY", "standard")]);
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    sub.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    let m = machine(&daemon);
    let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m }));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let end = daemon.wait_task(&id, LONG);
    assert_eq!(end["status"], "SUCCESS", "{end}");
    eprintln!("training took {:?}", t0.elapsed());
    sub.wait(SHORT, "job_done", |m| m.topic == topic("bridge/event") && m.json()["type"] == "job_done");

    let progress: Vec<Msg> = sub.on(&topic(&format!("tasks/{id}/progress")));
    assert!(progress.len() >= 4, "only {} progress messages", progress.len());
    let mut last = -1.0;
    for (i, p) in progress.iter().enumerate() {
        assert!(!p.retain, "progress is never retained");
        let v = p.json();
        for k in ["task_id", "machine_id", "progress", "status", "message", "stage", "model_type", "batch_index", "batch_total", "ts"] {
            assert!(v.get(k).is_some(), "{k} missing: {v}");
        }
        let pct = v["progress"].as_f64().unwrap();
        assert!(pct >= last, "progress fell from {last} to {pct} at message {i}");
        last = pct;
        if i > 0 {
            let prev = progress[i - 1].json();
            let same_phase = ["stage", "status", "model_type", "batch_index"].iter().all(|k| prev[k] == v[k]);
            let gap = p.at.duration_since(progress[i - 1].at);
            // Receipt times jitter a little around the 1 s the daemon keeps between them.
            assert!(!same_phase || gap >= Duration::from_millis(800), "two progress messages {gap:?} apart in one stage: {prev} / {v}");
        }
    }
    let final_msg = progress.last().unwrap().json();
    assert_eq!(final_msg["status"], "SUCCESS");
    assert_eq!(final_msg["progress"], 100.0);
    let stages: std::collections::BTreeSet<String> = progress.iter().map(|p| p.json()["stage"].as_str().unwrap().to_string()).collect();
    eprintln!("{} progress messages over {} stages", progress.len(), stages.len());

    let kinds: Vec<String> =
        events(&sub).iter().filter(|e| e["data"]["task_id"] == id.as_str()).map(|e| e["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["job_queued", "job_started", "job_done"]);
    // While running, jobs/current carried the job; now it holds the idle document (never an empty payload).
    let current = sub.on(&topic("jobs/current"));
    assert!(current.iter().all(|c| !c.payload.is_empty()), "jobs/current is never emptied");
    assert!(current.iter().any(|c| c.json()["task_id"] == id.as_str()), "jobs/current never showed the job");
    assert_eq!(current.last().unwrap().json()["status"], "IDLE", "jobs/current is idle again");
    for p in &progress {
        let ts = p.json()["ts"].as_str().unwrap().to_string();
        assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "ISO-8601 UTC with milliseconds: {ts}");
    }

    // A late subscriber gets the four live models (retained) and no events or progress.
    let late = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    for t in ["classification", "regression", "anomaly", "timeseries"] {
        let msg = late.wait_topic(&topic(&format!("machines/{m}/models/{t}")), SHORT);
        assert!(msg.retain);
        let v = msg.json();
        assert_eq!(v["version"], 1, "{v}");
        assert!(v["headline"]["value"].is_number(), "{v}");
        assert!(v["size_bytes"].as_u64().unwrap() > 0);
        assert_eq!(v["oversize"], false);
    }
    let training = late.wait_topic(&topic(&format!("machines/{m}/training")), SHORT).json();
    assert_eq!(training["status"], "SUCCESS");
    std::thread::sleep(Duration::from_millis(500));
    assert!(late.all().iter().all(|m| !m.topic.contains("/tasks/") && !m.topic.ends_with("bridge/event")), "only state is retained");
    assert_eq!(late.wait_topic(&topic("jobs/current"), SHORT).json()["status"], "IDLE");
}

#[test]
fn every_request_is_answered_with_its_transaction_and_bad_ones_get_clear_errors() {
    let (d, data, state) = setup(3_000);
    let broker = Broker::start(&d.path().join("broker"));
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    // A retained request left on the broker would run again at every reconnect: refused when it is
    // replayed to the daemon's subscription.
    sub.publish(&topic("bridge/request/health_check"), br#"{"transaction":"r1"}"#, true);
    let daemon = start(&data, &state, &broker.url(), &[]);
    sub.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    refusal(&sub, "health_check", "r1", "retained");
    sub.publish(&topic("bridge/request/health_check"), b"", true);
    let m = machine(&daemon);
    let ask = |name: &str, payload: Value| sub.request(BASE, name, &payload.to_string(), SHORT);

    let r = ask("health_check", json!({ "transaction": "h1" }));
    assert_eq!((r["status"].as_str(), r["transaction"].as_str()), (Some("ok"), Some("h1")), "{r}");
    assert_eq!(r["data"]["status"], "ok");

    let r = ask("train", json!({ "machine_id": m, "model_types": ["anomaly"], "transaction": 42 }));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["transaction"], 42, "numbers are echoed as numbers");
    let id = r["data"]["task_id"].as_str().unwrap().to_string();
    assert_eq!(r["data"]["model_types"], json!(["anomaly"]));
    daemon.wait_task(&id, LONG);

    let r = ask("jobs", json!({ "transaction": "j1" }));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["data"]["tasks"][0]["task_id"], id.as_str());
    let r = ask("jobs", json!({ "task_id": id, "transaction": "j2" }));
    assert_eq!((r["data"]["status"].as_str(), r["transaction"].as_str()), (Some("SUCCESS"), Some("j2")), "{r}");

    let r = ask("models", json!({ "machine_id": m, "transaction": "m1" }));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["data"]["models"]["anomaly"][0]["version"], 1, "{r}");
    let r = ask("predict", json!({ "machine_id": m, "transaction": "p1" }));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["data"]["predictions"]["anomaly"]["available"], true, "{r}");

    // Same single-model route as REST, then cancel it while it waits or runs.
    let r = ask("train", json!({ "machine_id": m, "model_type": "regression", "transaction": "t2" }));
    assert_eq!(r["status"], "ok", "{r}");
    let id2 = r["data"]["task_id"].as_str().unwrap().to_string();
    let r = ask("cancel", json!({ "task_id": id2, "transaction": "c1" }));
    assert_eq!((r["status"].as_str(), r["transaction"].as_str()), (Some("ok"), Some("c1")), "{r}");
    let end = daemon.wait_task(&id2, SHORT);
    assert_eq!(end["status"], "REVOKED");

    // Bad requests: each gets an error that says what is wrong, with the transaction when there is one.
    let cases: Vec<(&str, String, &str)> = vec![
        ("train", "{not json".into(), "not JSON"),
        ("train", "[1,2]".into(), "JSON object"),
        ("train", json!({ "machine_id": "no_such_machine", "transaction": "e1" }).to_string(), "unknown machine"),
        ("train", json!({ "machine_id": m, "colour": "red", "transaction": "e2" }).to_string(), "colour"),
        ("train", json!({ "machine_id": m, "model_type": "telepathy", "transaction": "e3" }).to_string(), "telepathy"),
        ("train", json!({ "machine_id": m, "time_limit": -1, "transaction": "e4" }).to_string(), "time_limit"),
        ("cancel", json!({ "transaction": "e5" }).to_string(), "task_id"),
        ("cancel", json!({ "task_id": "../etc", "transaction": "e6" }).to_string(), "not a task id"),
        ("cancel", json!({ "task_id": "0000", "transaction": "e7" }).to_string(), "no job"),
        ("cancel", json!({ "task_id": id, "transaction": "e8" }).to_string(), "already ended"),
        ("jobs", json!({ "status": "sleeping", "transaction": "e9" }).to_string(), "not a task state"),
        ("models", json!({ "model_type": "anomaly", "transaction": "e10" }).to_string(), "needs machine_id"),
        ("predict", json!({ "transaction": "e11" }).to_string(), "machine_id"),
        ("predict", json!({ "machine_id": m, "rows": "lots", "transaction": "e12" }).to_string(), "malformed"),
        ("reboot", json!({ "transaction": "e13" }).to_string(), "unknown request"),
    ];
    for (name, payload, needle) in &cases {
        let r = sub.request(BASE, name, payload, SHORT);
        assert_eq!(r["status"], "error", "{name} {payload}: {r}");
        let msg = r["error"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{name} {payload}: error {msg:?} should mention {needle:?}");
        if let Some(t) = serde_json::from_str::<Value>(payload).ok().and_then(|v| v.get("transaction").cloned()) {
            assert_eq!(r["transaction"], t);
        }
    }
    // Still alive and answering, over both HTTP and MQTT.
    assert_eq!(daemon.get("/api/health").status, 200);
    let r = ask("health_check", json!({ "transaction": "h2" }));
    assert_eq!(r["status"], "ok");
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
}

/// One `mosquitto_rr` exchange: the request on `name` with a Response Topic and Correlation Data, the
/// answer as `(correlation data, qos, topic, payload)`.
fn rr(port: u16, name: &str, payload: &str, reply_to: &str, correlation: &str) -> (String, String, String, Value) {
    let out = std::process::Command::new(find_binary("mosquitto_rr"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-W", "10"])
        .args(["-t", &topic(&format!("bridge/request/{name}")), "-e", reply_to, "-m", payload])
        .args(["-D", "publish", "correlation-data", correlation, "-F", "%D\t%q\t%t\t%p"])
        .output()
        .expect("mosquitto_rr runs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "mosquitto_rr failed ({}): {text} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let parts: Vec<&str> = text.splitn(4, '\t').collect();
    assert_eq!(parts.len(), 4, "{text}");
    let answer = serde_json::from_str(parts[3]).unwrap_or_else(|e| panic!("{e}: {text}"));
    (parts[0].to_string(), parts[1].to_string(), parts[2].to_string(), answer)
}

#[test]
fn mqtt_5_requests_are_answered_on_their_response_topic_and_live_retained_ones_are_refused() {
    let (d, data, state) = setup(2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#"), "replies/#"]);
    let daemon = start(&data, &state, &broker.url(), &[]);
    sub.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    let health = daemon.get("/api/health").json();
    assert_eq!(health["mqtt"]["protocol"], "5", "{health}");

    // mosquitto_rr is Mosquitto's own MQTT 5 request/response client: it waits on its Response Topic.
    let t0 = Instant::now();
    let (correlation, qos, reply_topic, r) = rr(broker.port, "health_check", "{}", "replies/rr/1", "abc-123");
    eprintln!("mosquitto_rr answered in {:?}", t0.elapsed());
    assert_eq!((correlation.as_str(), qos.as_str(), reply_topic.as_str()), ("abc-123", "1", "replies/rr/1"), "{r}");
    assert_eq!((r["status"].as_str(), r["node_id"].as_str()), (Some("ok"), Some("test1")), "{r}");
    let m = machine(&daemon);
    let (_, _, _, r) = rr(broker.port, "predict", &json!({ "machine_id": m }).to_string(), "replies/rr/2", "p-1");
    assert_eq!(r["status"], "ok", "{r}");
    assert!(sub.on(&topic("bridge/response/health_check")).is_empty(), "answered on the Response Topic only");

    // A Response Topic on one of our own request topics would be read as a new request: refused, on the
    // default topic.
    let published = std::process::Command::new(find_binary("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-V", "5", "-q", "1"])
        .args(["-t", &topic("bridge/request/health_check"), "-m", r#"{"transaction":"loop"}"#])
        .args(["-D", "publish", "response-topic", &topic("bridge/request/train")])
        .status()
        .expect("mosquitto_pub runs");
    assert!(published.success());
    refusal(&sub, "health_check", "loop", "Response Topic");
    std::thread::sleep(Duration::from_millis(500));
    assert!(sub.on(&topic("bridge/response/train")).is_empty(), "nothing ran on the train topic");

    // Over MQTT 5 the daemon subscribes with "retain as published": a request published with the retain
    // flag while it listens is refused too (3.1.1 cannot tell it from a plain one).
    sub.publish(&topic("bridge/request/train"), json!({ "machine_id": m, "transaction": "live-retained" }).to_string().as_bytes(), true);
    refusal(&sub, "train", "live-retained", "retained");
    // Clearing it, as the log line says, is taken for what it is: no warning, no answer.
    let answers = sub.on(&topic("bridge/response/train")).len();
    sub.publish(&topic("bridge/request/train"), b"", true);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(sub.on(&topic("bridge/response/train")).len(), answers, "the clear was answered as a request");
    assert_eq!(daemon.log().matches("ignored a retained request").count(), 1, "{}", daemon.log());
    let tasks = daemon.get("/api/ml/tasks").json();
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0), "the retained train request ran: {tasks}");
}

#[test]
fn mqtt_3_1_1_when_asked_still_answers_with_the_transaction() {
    let (d, data, state) = setup(2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    let daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_MQTT__PROTOCOL", "3.1.1")]);
    sub.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    assert_eq!(daemon.get("/api/health").json()["mqtt"]["protocol"], "3.1.1");
    let r = sub.request(BASE, "health_check", r#"{"transaction":"v311"}"#, SHORT);
    assert_eq!((r["status"].as_str(), r["transaction"].as_str()), (Some("ok"), Some("v311")), "{r}");
    assert!(daemon.log().contains("protocol=3.1.1"), "{}", daemon.log());
}

#[test]
fn requests_are_ignored_when_not_accepted() {
    let (d, data, state) = setup(2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let _daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_MQTT__ACCEPT_REQUESTS", "false")]);
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    let info = sub.wait_topic(&topic("bridge/info"), SHORT).json();
    assert_eq!(info["requests"], json!([]));
    sub.publish(&topic("bridge/request/health_check"), br#"{"transaction":"x"}"#, false);
    std::thread::sleep(Duration::from_secs(2));
    assert!(sub.on(&topic("bridge/response/health_check")).is_empty(), "no answer when accept_requests = false");
}

#[test]
fn a_30_second_broker_outage_during_a_job_loses_nothing_that_matters() {
    let (d, data, state) = setup(30_000);
    let mut broker = Broker::start(&d.path().join("broker"));
    let daemon =
        start(&data, &state, &broker.url(), &[("MILLWRIGHT_TRAINING__QUALITY", "best"), ("MILLWRIGHT_LOG_LEVEL", "millwright=debug,info")]);
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    sub.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    let m = machine(&daemon);
    // Six jobs, so training is still going on when the broker returns (two were enough until column screening
    // made training about three times faster).
    let mut ids = Vec::new();
    for _ in 0..6 {
        let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m }));
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push(r.json()["task_id"].as_str().unwrap().to_string());
    }
    daemon.wait_running(&ids[0], LONG);
    sub.wait(SHORT, "progress before the outage", |m| m.topic.ends_with("/progress"));

    broker.stop();
    let down = Instant::now();
    let before = daemon.get(&format!("/api/ml/tasks/{}", ids[0])).json()["progress"]["progress_percent"].as_f64().unwrap();
    std::thread::sleep(Duration::from_secs(30));
    let during = daemon.get(&format!("/api/ml/tasks/{}", ids[0])).json();
    let pct_during = during["progress"]["progress_percent"].as_f64().unwrap();
    assert!(pct_during > before || during["status"] == "SUCCESS", "training stalled while the broker was down: {before} -> {during}");
    broker.restart();
    eprintln!("broker down for {:?}", down.elapsed());

    // Fresh broker, empty memory: the daemon reconnects and republishes its retained state.
    let back = Instant::now();
    let late = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    late.wait(Duration::from_secs(45), "republished online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    eprintln!("state republished {:?} after the broker came back", back.elapsed());
    late.wait_topic(&topic("bridge/health"), SHORT);
    // What the broker now stores for newcomers.
    let fresh = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    for t in ["bridge/state", "bridge/info", "bridge/health"] {
        let msg = fresh.wait_topic(&topic(t), SHORT);
        assert!(msg.retain, "{t} is retained again after the broker restart");
    }
    assert_eq!(state_of(&fresh.wait_topic(&topic("bridge/state"), SHORT)), "online");
    // Subscriptions work again.
    let r = late.request(BASE, "health_check", r#"{"transaction":"after"}"#, SHORT);
    assert_eq!(r["status"], "ok");
    // Progress flows again while a job still runs.
    let running = ids.iter().find(|id| daemon.get(&format!("/api/ml/tasks/{id}")).json()["status"] == "PROGRESS").cloned();
    if let Some(id) = running {
        late.wait(SHORT, "progress after the outage", |m| m.topic == topic(&format!("tasks/{id}/progress")));
        let cur = late.wait(SHORT, "jobs/current", |m| m.topic == topic("jobs/current") && !m.payload.is_empty());
        assert!(cur.retain || cur.json()["task_id"].is_string());
    }
    for id in &ids {
        let end = daemon.wait_task(id, LONG);
        assert_eq!(end["status"], "SUCCESS", "the outage must not affect training: {end}");
    }
    late.wait(SHORT, "job_done after the outage", |m| {
        m.topic == topic("bridge/event") && m.json()["type"] == "job_done" && m.json()["data"]["task_id"] == ids[5].as_str()
    });
    // Back-off: a handful of attempts in 30 s, not a tight loop.
    let retries = daemon.log().matches("MQTT: still no connection").count();
    eprintln!("reconnect attempts logged during the outage: {retries}");
    assert!((2..=10).contains(&retries), "{retries} reconnect attempts in 30 s");
    assert_eq!(daemon.log().matches("MQTT: no connection to the broker").count(), 1, "one warning per outage");
}

#[test]
fn tls_with_a_self_signed_ca_and_a_password() {
    let (d, data, state) = setup(2_000);
    let dir = d.path().join("tls");
    mqtt_helpers::make_ca(&dir, "ca", "millwright test CA");
    mqtt_helpers::make_server_cert(&dir, "ca");
    let passwd = dir.join("passwd");
    mqtt_helpers::password_file(&passwd, "plant", "s3cret-Pa55");
    let auth = format!("allow_anonymous false\npassword_file {}", passwd.display());
    let (broker, tls_port, plain_port) = mqtt_helpers::tls_broker(&d.path().join("broker"), &dir, "ca", &auth);
    let pwfile = dir.join("mqtt-password");
    std::fs::write(&pwfile, "s3cret-Pa55\n").unwrap();
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let (ca, pw) = (dir.join("ca.pem").display().to_string(), pwfile.display().to_string());
    let daemon = start(
        &data,
        &state,
        &url,
        &[("MILLWRIGHT_MQTT__USERNAME", "plant"), ("MILLWRIGHT_MQTT__PASSWORD_FILE", &pw), ("MILLWRIGHT_MQTT__CA_FILE", &ca)],
    );
    // The test listens on the password-protected plain listener; the daemon's port only speaks TLS.
    let sub = Sub::connect_with(plain_port, &[&format!("{BASE}/#")], Some(Login { user: "plant", password: "s3cret-Pa55" }), None);
    sub.wait(SHORT, "online over TLS", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    let r = sub.request(BASE, "health_check", r#"{"transaction":"tls"}"#, SHORT);
    assert_eq!(r["status"], "ok");
    assert!(!daemon.log().contains("s3cret-Pa55"), "the password is never logged");
    assert!(!sub.all().iter().any(|m| String::from_utf8_lossy(&m.payload).contains("s3cret-Pa55")), "nor published");

    // A wrong password: refused by the broker, the daemon keeps serving and keeps retrying calmly.
    let state2 = d.path().join("state2");
    std::fs::write(&pwfile, "wrong\n").unwrap();
    let bad = Daemon::start(
        &data,
        &state2,
        &[
            ("MILLWRIGHT_MQTT__ENABLED", "true"),
            ("MILLWRIGHT_MQTT__URL", &url),
            ("MILLWRIGHT_MQTT__NODE_ID", "test2"),
            ("MILLWRIGHT_MQTT__USERNAME", "plant"),
            ("MILLWRIGHT_MQTT__PASSWORD_FILE", &pw),
            ("MILLWRIGHT_MQTT__CA_FILE", &ca),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(bad.get("/api/health").status, 200);
    assert!(bad.log().contains("no connection to the broker"), "{}", bad.log());
    assert!(sub.all().iter().all(|m| !m.topic.starts_with("millwright/test2/")), "refused client published nothing");
    let _ = broker.log();
}

#[test]
fn home_assistant_discovery_is_retained_and_republished_when_it_comes_online() {
    let (d, data, state) = setup(3_000);
    let broker = Broker::start(&d.path().join("broker"));
    // A fake thermal zone stands in for the Pi's SoC.
    let sys = d.path().join("sysfs");
    common::sysfs::set_temp(&sys, 55.3);
    let sysfs = sys.display().to_string();
    // Every model counts as oversize here, to see the model_oversize event and flag.
    let daemon = start(
        &data,
        &state,
        &broker.url(),
        &[
            ("MILLWRIGHT_MQTT__HOMEASSISTANT", "true"),
            ("MILLWRIGHT_GUARD__SYSFS_ROOT", &sysfs),
            ("MILLWRIGHT_MODELS__WARN_SIZE_MB", "0.000001"),
        ],
    );
    let m = machine(&daemon);
    let watcher = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    watcher.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");

    let sub = Sub::connect(broker.port, &["homeassistant/#", &format!("{BASE}/#")]);
    let expect = [
        ("sensor", "soc_temperature", "millwright_test1".to_string()),
        ("sensor", "queue_depth", "millwright_test1".into()),
        ("sensor", "job_progress", "millwright_test1".into()),
        ("sensor", &format!("{m}_classification_metric"), format!("millwright_test1_{m}")),
        ("sensor", &format!("{m}_regression_metric"), format!("millwright_test1_{m}")),
        ("sensor", &format!("{m}_anomaly_metric"), format!("millwright_test1_{m}")),
        ("sensor", &format!("{m}_timeseries_metric"), format!("millwright_test1_{m}")),
        ("sensor", &format!("{m}_training"), format!("millwright_test1_{m}")),
        ("button", &format!("{m}_train_all"), format!("millwright_test1_{m}")),
    ];
    for (component, object, device) in expect {
        let t = format!("homeassistant/{component}/test1/{object}/config");
        let c = sub.wait_topic(&t, SHORT);
        assert!(c.retain, "{t} is retained");
        let v = c.json();
        assert_eq!(v["unique_id"], format!("millwright_test1_{object}"));
        assert_eq!(v["default_entity_id"], format!("{component}.millwright_test1_{object}"));
        assert_eq!(v["availability"][0]["topic"], topic("bridge/state"));
        assert_eq!(v["device"]["identifiers"][0], device);
        if component == "button" {
            continue;
        }
        let st = v["state_topic"].as_str().unwrap();
        assert!(st.starts_with(BASE), "{st}");
    }
    let health = sub.wait_topic(&topic("bridge/health"), SHORT).json();
    assert_eq!(health["temperature_c"], 55.3, "{health}");
    assert_eq!(health["queue_depth"], 0);

    // Home Assistant restarts: it announces itself and gets discovery and state again, once.
    sub.clear();
    sub.publish("homeassistant/status", b"online", false);
    let again = sub.wait_topic("homeassistant/sensor/test1/soc_temperature/config", SHORT);
    assert!(!again.retain, "a live republish, not the broker's stored copy");
    sub.wait(SHORT, "state after discovery", |m| m.topic == topic("bridge/health"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sub.on("homeassistant/sensor/test1/soc_temperature/config").len(), 1, "republished once, not twice");

    // After a training, the metric sensor keeps its name and its state topic holds a value.
    let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m, "model_types": ["anomaly"] }));
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    daemon.wait_task(&id, LONG);
    let t = format!("homeassistant/sensor/test1/{m}_anomaly_metric/config");
    let named = sub.wait(SHORT, "discovery after training", |x| x.topic == t);
    assert_eq!(named.json()["name"], "Anomaly metric");
    let model = sub
        .wait(SHORT, "the live anomaly model", |x| x.topic == topic(&format!("machines/{m}/models/anomaly")) && !x.payload.is_empty())
        .json();
    assert!(model["headline"]["value"].is_number());
    assert_eq!(model["oversize"], true, "{model}");
    let ev = sub.wait(SHORT, "model_oversize", |x| x.topic == topic("bridge/event") && x.json()["type"] == "model_oversize").json();
    assert_eq!((ev["data"]["task_id"].as_str(), ev["data"]["model_type"].as_str()), (Some(id.as_str()), Some("anomaly")), "{ev}");
    let told = sub.on(&topic("bridge/event")).iter().filter(|x| x.json()["type"] == "model_oversize").count();
    assert_eq!(told, 1, "told once");

    // A model deleted through the API: its retained topic is cleared at once (the health tick is 30 s away)
    // and the deletion is told as an event.
    let t0 = Instant::now();
    assert_eq!(daemon.delete(&format!("/api/ml/models/{m}/anomaly")).status, 200);
    let model_topic = topic(&format!("machines/{m}/models/anomaly"));
    sub.wait(Duration::from_secs(5), "the cleared model topic", |x| x.topic == model_topic && x.payload.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(5), "cleared after {:?}", t0.elapsed());
    let ev = sub.wait(SHORT, "model_deleted", |x| x.topic == topic("bridge/event") && x.json()["type"] == "model_deleted").json();
    assert_eq!((ev["data"]["machine_id"].as_str(), ev["data"]["model_type"].as_str()), (Some(m.as_str()), Some("anomaly")), "{ev}");
    assert!(ev["data"]["live_version"].is_null(), "{ev}");
    let late = Sub::connect(broker.port, &[&model_topic]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(late.on(&model_topic).is_empty(), "the broker no longer holds the deleted model's state");
}

/// A machine folder dropped into the data folder while the daemon runs is published (bridge/info, Home
/// Assistant discovery) within seconds, not at the next 30 s health tick and not only after a reconnect.
#[test]
fn a_machine_folder_added_later_is_published_within_seconds() {
    let (d, data, state) = setup(3_000);
    let broker = Broker::start(&d.path().join("broker"));
    let _daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_MQTT__HOMEASSISTANT", "true")]);
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#"), "homeassistant/#"]);
    sub.wait(SHORT, "online", |m| m.topic == topic("bridge/state") && state_of(m) == "online");
    sub.wait(SHORT, "the first bridge/info", |m| m.topic == topic("bridge/info"));
    // The same simulator seed makes the first machine again; the second one is new.
    let other = d.path().join("other");
    fleet(&other, 2, 500);
    let known: Vec<String> =
        std::fs::read_dir(data.join("machines")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let new = std::fs::read_dir(other.join("machines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| !known.contains(n))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    sub.clear();
    let t0 = Instant::now();
    std::fs::rename(other.join("machines").join(&new), data.join("machines").join(&new)).unwrap();
    let names_it = |m: &Msg| m.topic == topic("bridge/info") && m.json()["machines"].to_string().contains(&new);
    sub.wait(Duration::from_secs(10), "bridge/info naming the new machine", names_it);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(6), "published after {took:?}");
    sub.wait(SHORT, "the new machine's discovery", |m| {
        m.topic.starts_with("homeassistant/") && m.topic.contains(&new) && !m.payload.is_empty()
    });
}

// Broker faults: down / up / down during jobs, and a broker whose CA the daemon does not trust.

/// Polls `GET /api/health` every 100 ms until dropped; counts failures and keeps the slowest answer.
struct HealthWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(usize, usize, Duration)>>,
}

impl HealthWatch {
    fn start(addr: std::net::SocketAddr) -> HealthWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let t0 = Instant::now();
                let fine = health_ok(addr);
                slowest = slowest.max(t0.elapsed());
                if fine {
                    ok += 1;
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed, slowest)
        });
        HealthWatch { stop, handle: Some(handle) }
    }

    /// (answered, failed, slowest answer)
    fn finish(mut self) -> (usize, usize, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().map(|h| h.join().unwrap()).unwrap_or_default()
    }
}

/// One `GET /api/health`; false on any failure (the harness's client panics, which a watcher thread must not).
fn health_ok(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.starts_with("HTTP/1.1 200") && text.contains(r#""status":"ok""#)
}

const TYPES: [&str; 4] = ["classification", "regression", "anomaly", "timeseries"];

/// Waits until a subscriber that arrived after the broker (re)started holds every retained topic the daemon
/// owes it: online, info, health, the machine's four live models and its last training.
fn assert_retained_state_republished(port: u16, m: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let sub = Sub::connect(port, &[&format!("{BASE}/#")]);
    sub.wait(limit, "republished online", |x| x.topic == topic("bridge/state") && state_of(x) == "online");
    let mut wanted: Vec<String> = ["bridge/info", "bridge/health"].iter().map(|t| topic(t)).collect();
    wanted.extend(TYPES.iter().map(|t| topic(&format!("machines/{m}/models/{t}"))));
    wanted.push(topic(&format!("machines/{m}/training")));
    for t in &wanted {
        sub.wait(limit, &format!("republished {t}"), |x| x.topic == *t && !x.payload.is_empty());
    }
    let took = t0.elapsed();
    // What the broker now stores, as any newcomer sees it: retained copies, not live messages.
    let fresh = Sub::connect(port, &[&format!("{BASE}/#")]);
    for t in wanted.iter().chain([&topic("bridge/state")]) {
        let msg = fresh.wait_topic(t, SHORT);
        assert!(msg.retain, "{t} is not retained on the restarted broker");
    }
    assert_eq!(state_of(&fresh.wait_topic(&topic("bridge/state"), SHORT)), "online");
    for t in TYPES {
        let v = fresh.wait_topic(&topic(&format!("machines/{m}/models/{t}")), SHORT).json();
        assert!(v["version"].as_u64().unwrap_or(0) >= 1, "{t}: {v}");
    }
    took
}

#[test]
fn broker_down_up_down_during_a_job_batch_keeps_jobs_http_and_retained_state() {
    const OUTAGE: Duration = Duration::from_secs(4);
    let started = Instant::now();
    // About 10 s per batch here: long enough that both outages fall inside training.
    let (d, data, state) = setup(30_000);
    let mut broker = Broker::start(&d.path().join("broker"));
    let daemon = start(
        &data,
        &state,
        &broker.url(),
        &[("MILLWRIGHT_TRAINING__QUALITY", "standard"), ("MILLWRIGHT_LOG_LEVEL", "millwright=debug,info")],
    );
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    sub.wait(SHORT, "online", |x| x.topic == topic("bridge/state") && state_of(x) == "online");
    let m = machine(&daemon);
    let health = HealthWatch::start(daemon.addr);

    // Four batches: the first gives the machine four live models before any outage, the others train
    // through both outages.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m }));
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push(r.json()["task_id"].as_str().unwrap().to_string());
    }
    let first = daemon.wait_task(&ids[0], LONG);
    assert_eq!(first["status"], "SUCCESS", "{first}");
    eprintln!("first batch done after {:?}", started.elapsed());
    for t in TYPES {
        sub.wait(SHORT, "a live model", |x| x.topic == topic(&format!("machines/{m}/models/{t}")) && !x.payload.is_empty());
    }
    daemon.wait_running(&ids[1], LONG);

    let status_of = |id: &str| daemon.get(&format!("/api/ml/tasks/{id}")).json()["status"].as_str().unwrap_or("").to_string();
    let mut during = Vec::new();
    let mut republish = Vec::new();
    for outage in 1..=2 {
        broker.stop();
        let down = Instant::now();
        std::thread::sleep(OUTAGE);
        during.push(ids.iter().map(|id| status_of(id)).collect::<Vec<_>>());
        broker.restart();
        eprintln!("outage {outage}: broker down {:?}; jobs then {:?}", down.elapsed(), during.last().unwrap());
        // Fresh broker, empty memory: everything retained must come back from the daemon.
        let took = assert_retained_state_republished(broker.port, &m, Duration::from_secs(20));
        eprintln!("outage {outage}: retained state republished {took:?} after the broker returned");
        republish.push(took);
    }
    assert!(
        during.iter().any(|s| s.iter().any(|st| st == "PROGRESS")),
        "no job was training during either outage ({during:?}); make the jobs longer"
    );

    for id in &ids {
        let end = daemon.wait_task(id, LONG);
        assert_eq!(end["status"], "SUCCESS", "the outages must not affect training: {end}");
    }
    // The end of the last job reaches the restored broker, live (to the subscriber that lived through
    // both outages) and then retained for newcomers.
    let last = ids.last().unwrap().as_str();
    let training_topic = topic(&format!("machines/{m}/training"));
    sub.wait(SHORT, "the last job's end, live", |x| {
        x.topic == training_topic && x.json()["task_id"] == last && x.json()["status"] == "SUCCESS"
    });
    sub.wait(SHORT, "job_done for the last job", |x| {
        x.topic == topic("bridge/event") && x.json()["type"] == "job_done" && x.json()["data"]["task_id"] == last
    });
    let late = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    let training = late.wait_topic(&training_topic, SHORT);
    assert!(training.retain);
    assert_eq!(
        (training.json()["task_id"].as_str(), training.json()["status"].as_str()),
        (Some(last), Some("SUCCESS")),
        "{}",
        training.json()
    );
    let r = late.request(BASE, "health_check", r#"{"transaction":"after-faults"}"#, SHORT);
    assert_eq!(r["status"], "ok", "requests are answered after the outages: {r}");

    let (answered, failed, slowest) = health.finish();
    eprintln!("HTTP health during the test: {answered} answered, {failed} failed, slowest {slowest:?}");
    assert_eq!(failed, 0, "the daemon stopped answering HTTP during the broker faults");
    assert!(answered > 20, "only {answered} health answers");
    assert!(slowest < Duration::from_secs(2), "a health answer took {slowest:?}");
    let log = daemon.log();
    assert_eq!(log.matches("MQTT: no connection to the broker").count(), 2, "one warning per outage:\n{log}");
    assert_eq!(log.matches("MQTT: connected again; republishing state").count(), 2, "{log}");
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("down/up/down test took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(240), "took {:?}", started.elapsed());
}

#[test]
fn tls_with_a_ca_the_daemon_does_not_trust_is_refused_with_a_clear_log_line() {
    let (d, data, _) = setup(2_000);
    let dir = d.path().join("tls");
    // CA A signs the broker's certificate. The daemon is given CA B (same name, another key: a regenerated
    // CA) or CA C (another CA altogether).
    for (name, cn) in [("ca_a", "millwright test CA"), ("ca_b", "millwright test CA"), ("ca_c", "another plant CA")] {
        mqtt_helpers::make_ca(&dir, name, cn);
    }
    mqtt_helpers::make_server_cert(&dir, "ca_a");
    let (broker, tls_port, plain_port) = mqtt_helpers::tls_broker(&d.path().join("broker"), &dir, "ca_a", "allow_anonymous true");
    let watcher = Sub::connect(plain_port, &["#"]);
    let url = format!("mqtts://127.0.0.1:{tls_port}");

    for wrong in ["ca_b", "ca_c"] {
        let ca = dir.join(format!("{wrong}.pem")).display().to_string();
        let state = d.path().join(format!("state-{wrong}"));
        let t0 = Instant::now();
        let daemon = start(&data, &state, &url, &[("MILLWRIGHT_MQTT__CA_FILE", &ca)]);
        let line = loop {
            if let Some(l) = daemon.log().lines().find(|l| l.to_ascii_lowercase().contains("not trusted")) {
                break l.to_string();
            }
            assert!(t0.elapsed() < SHORT, "{wrong}: no 'not trusted' line within {SHORT:?}; log:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!("{wrong}: refused after {:?}: {line}", t0.elapsed());
        assert!(line.contains(&url), "the line names the broker URL {url}: {line}");
        assert!(line.contains(&ca), "the line names the CA file {ca}: {line}");
        assert!(line.contains("mqtt.ca_file"), "the line names the setting to fix: {line}");
        assert!(line.contains(" ERROR ") || line.contains(" WARN "), "{line}");

        // Retries go on calmly: the clear line once, HTTP keeps serving, training does not wait on MQTT.
        std::thread::sleep(Duration::from_secs(4));
        let log = daemon.log();
        assert_eq!(log.lines().filter(|l| l.to_ascii_lowercase().contains("not trusted")).count(), 1, "told once per outage:\n{log}");
        assert!(!log.contains("MQTT: connected"), "{log}");
        assert_eq!(daemon.get("/api/health").json()["status"], "ok");
        let m = machine(&daemon);
        let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m, "model_types": ["anomaly"] }));
        assert_eq!(r.status, 202, "{}", r.text());
        let end = daemon.wait_task(r.json()["task_id"].as_str().unwrap(), LONG);
        assert_eq!(end["status"], "SUCCESS", "{end}");
    }
    // The broker saw the handshakes and refused them; nothing was ever published through it.
    let published: Vec<String> = watcher.all().iter().map(|x| x.topic.clone()).collect();
    assert!(published.is_empty(), "messages went through a broker the daemon does not trust: {published:?}");
    eprintln!("broker's view:\n{}", broker.log().lines().filter(|l| !l.contains("test-sub")).take(8).collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_job_interrupted_by_a_restart_is_told_as_job_failed_and_jobs_current_is_idle_again() {
    let (d, data, state) = setup(20_000);
    let broker = Broker::start(&d.path().join("broker"));
    let mut daemon = start(&data, &state, &broker.url(), &[]);
    let m = machine(&daemon);
    let sub = Sub::connect(broker.port, &[&format!("{BASE}/#")]);
    let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m }));
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    sub.wait(LONG, "the job running", |x| x.topic == topic("jobs/current") && x.json()["task_id"] == id.as_str());
    daemon.kill9();
    let mut daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_QUEUE__REQUEUE_INTERRUPTED", "false")]);
    let failed = sub.wait(SHORT, "job_failed for the interrupted job", |x| {
        x.topic == topic("bridge/event") && x.json()["type"] == "job_failed" && x.json()["data"]["task_id"] == id.as_str()
    });
    assert_eq!(failed.json()["data"]["error"], "interrupted by restart", "{:?}", failed.json());
    let late = Sub::connect(broker.port, &[&topic("jobs/current")]);
    assert_eq!(late.wait_topic(&topic("jobs/current"), SHORT).json()["status"], "IDLE", "no dead job shown as running");

    // Another restart soon after: that failure belongs to the previous start and is not told again.
    daemon.terminate();
    sub.clear();
    let _daemon = start(&data, &state, &broker.url(), &[]);
    sub.wait(SHORT, "online again", |x| x.topic == topic("bridge/state") && state_of(x) == "online");
    std::thread::sleep(Duration::from_secs(2));
    let told_again = events(&sub).iter().filter(|e| e["type"] == "job_failed" && e["data"]["task_id"] == id.as_str()).count();
    assert_eq!(told_again, 0, "the earlier interruption was told again after a clean restart");
}

/// One reading of every sensor of machine `m` at `t`.
fn reading(t: f64, sensors: &[String], v: f64) -> Value {
    let mut r = json!({ "ts": millwright::util::time::format_timestamp(t) });
    for s in sensors {
        r[s] = json!(v);
    }
    r
}

fn sensors_of(data: &Path, m: &str) -> Vec<String> {
    millwright::data::Summaries::new(data, millwright::data::Caps::default()).get(m).unwrap().sensor_names
}

fn readings_health(d: &Daemon) -> Value {
    d.get("/api/health").json()["mqtt"]["readings_in"].clone()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readings_over_mqtt_are_stored_bad_ones_counted_and_the_per_sensor_layout_reads_too() {
    let (d, data, state) = setup(2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let daemon = start(&data, &state, &broker.url(), &[]);
    let m = machine(&daemon);
    let sensors = sensors_of(&data, &m);
    let publisher = Sub::connect(broker.port, &[]);
    let t0 = (millwright::util::time::now_secs() - 3_600.0).floor();
    let readings_topic = topic(&format!("machines/{m}/readings"));
    wait_for("the readings connection", SHORT, || daemon.log().contains("MQTT readings: subscribed"));
    // Good rows, a row with an unknown sensor, a body that is not readings, a machine that does not exist.
    publisher.publish(&readings_topic, json!([reading(t0, &sensors, 1.0), reading(t0 + 1.0, &sensors, 2.0)]).to_string().as_bytes(), false);
    publisher.publish(&readings_topic, json!({ "ts": t0 + 2.0, "no_such_sensor": 1 }).to_string().as_bytes(), false);
    publisher.publish(&readings_topic, b"not json", false);
    publisher.publish(&topic("machines/no_such_machine/readings"), reading(t0, &sensors, 1.0).to_string().as_bytes(), false);
    // A machine whose folder cannot be read (a mistake in its machine.toml): its message is refused at once and
    // the readings of every other machine go on (they used to wait behind it, sent again and again).
    let broken = data.join("machines/zz_broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("machine.toml"), "[columns]\nsensors = [\"a\"\nnot toml").unwrap();
    publisher.publish(&topic("machines/zz_broken/readings"), json!({ "ts": t0, "a": 1.0 }).to_string().as_bytes(), false);
    publisher.publish(&readings_topic, reading(t0 + 3.0, &sensors, 3.0).to_string().as_bytes(), false);
    // Counted as taken in on arrival; wait for every outcome (rows stored or refused, messages refused).
    wait_for("six messages taken in and each one's outcome", SHORT, || {
        let h = readings_health(&daemon);
        let n = |k: &str| h[k].as_u64().unwrap_or(0);
        h["messages"] == 6 && n("refused_messages") >= 3 && n("rows_accepted") >= 3 && n("rows_rejected") >= 1
    });
    let h = readings_health(&daemon);
    assert_eq!(
        (h["rows_accepted"].as_u64(), h["rows_rejected"].as_u64(), h["refused_messages"].as_u64()),
        (Some(3), Some(1), Some(3)),
        "{h}"
    );
    std::fs::remove_dir_all(&broken).unwrap();
    let stored = daemon.get(&format!("/api/machines/{m}/readings")).json();
    assert_eq!(stored["rows"], 3, "{stored}");
    assert!(daemon.log().contains("MQTT readings refused"), "a refusal is sampled to the log");
    // Each stored message's age when durable: these readings were stamped an hour ago.
    let age = &h["stored_age"];
    assert_eq!(age["count"], 2, "two messages stored rows: {h}");
    assert!(age["p50_ms"].as_f64().unwrap() > 3_000_000.0, "{h}");

    // The per-sensor layout gateways publish: one value per topic; values sent within one second form one row.
    let mut daemon = daemon;
    daemon.terminate();
    let daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_READINGS__MQTT_TOPIC", "plant/{machine}/{sensor}")]);
    wait_for("the per-sensor subscription", SHORT, || daemon.log().contains("MQTT readings: subscribed filter=plant/+/+"));
    let stamp = millwright::util::time::now_secs() - 30.0;
    for (k, s) in sensors.iter().enumerate() {
        let body = json!({ "ts": stamp, "value": k as f64 });
        publisher.publish(&format!("plant/{m}/{s}"), body.to_string().as_bytes(), false);
    }
    publisher.publish(&format!("plant/{m}/no_such_sensor"), b"1.5", false);
    wait_for("one message per sensor, each stored or refused", SHORT, || {
        let h = readings_health(&daemon);
        h["messages"] == sensors.len() + 1
            && h["rows_accepted"].as_u64().unwrap_or(0) + h["rows_rejected"].as_u64().unwrap_or(0) > sensors.len() as u64
    });
    let h = readings_health(&daemon);
    assert_eq!((h["rows_accepted"].as_u64(), h["rows_rejected"].as_u64()), (Some(sensors.len() as u64), Some(1)), "{h}");

    // With readings.create_machines, a machine that does not exist yet is made from its first message.
    let mut daemon = daemon;
    daemon.terminate();
    let subscribed =
        || std::fs::read_to_string(state.with_extension("stderr.log")).unwrap_or_default().matches("MQTT readings: subscribed").count();
    let before = subscribed();
    let daemon = start(&data, &state, &broker.url(), &[("MILLWRIGHT_READINGS__CREATE_MACHINES", "true")]);
    wait_for("the readings connection", SHORT, || subscribed() > before);
    let fresh = json!([{ "ts": stamp + 1.0, "flow": 3.5, "pressure": 1.2 }, { "ts": stamp + 2.0, "flow": 3.6, "pressure": 1.1 }]);
    publisher.publish(&topic("machines/line-9/readings"), fresh.to_string().as_bytes(), false);
    // Counted as taken in when it arrives; its outcome follows once the machine is made and the rows are durable.
    wait_for("the new machine's message stored or refused", SHORT, || {
        let h = readings_health(&daemon);
        h["rows_accepted"].as_u64().unwrap_or(0) + h["refused_messages"].as_u64().unwrap_or(0) > 0
    });
    let h = readings_health(&daemon);
    assert_eq!((h["rows_accepted"].as_u64(), h["refused_messages"].as_u64()), (Some(2), Some(0)), "{h}");
    let stored = daemon.get("/api/machines/line-9/readings").json();
    assert_eq!((stored["rows"].as_u64(), stored["sensors"].clone()), (Some(2), json!(["flow", "pressure"])), "{stored}");
}

#[test]
fn every_reading_the_broker_took_is_stored_across_kill_9_of_the_daemon() {
    let (d, data, state) = setup(2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let mut daemon = start(&data, &state, &broker.url(), &[]);
    let m = machine(&daemon);
    let sensors = sensors_of(&data, &m);
    let readings_topic = topic(&format!("machines/{m}/readings"));
    wait_for("the readings connection", SHORT, || daemon.log().contains("MQTT readings: subscribed"));
    let publisher = Sub::connect(broker.port, &[]);
    let t0 = (millwright::util::time::now_secs() - 7_200.0).floor();
    // The issue's power pull: 20 kills, each in the middle of a stream of readings.
    let (kills, while_up, while_down) = (20, 40, 20);
    let total = kills * (while_up + while_down);
    let mut sent = 0;
    for kill in 0..kills {
        // Readings keep coming while the daemon is killed, and while it is down: the broker keeps them in
        // the daemon's session until it is back.
        for _ in 0..while_up {
            publisher.publish(&readings_topic, reading(t0 + f64::from(sent), &sensors, f64::from(sent)).to_string().as_bytes(), false);
            sent += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        daemon.kill9();
        for _ in 0..while_down {
            publisher.publish(&readings_topic, reading(t0 + f64::from(sent), &sensors, f64::from(sent)).to_string().as_bytes(), false);
            sent += 1;
        }
        daemon = start(&data, &state, &broker.url(), &[]);
        if kill % 5 == 4 {
            eprintln!("kill {}: {sent} readings published so far", kill + 1);
        }
    }
    assert_eq!(sent, total);
    let all_in = |daemon: &Daemon| {
        daemon.get(&format!("/api/machines/{m}/readings")).json()["last"]
            == millwright::util::time::format_timestamp(t0 + f64::from(total - 1))
    };
    wait_for("the last reading stored", LONG, || all_in(&daemon));
    eprintln!("readings in over MQTT after the last start: {}", readings_health(&daemon));
    daemon.terminate();
    // Distinct times in the log and in the machine's files (the start-up compaction moved some there).
    let mut times = std::collections::BTreeSet::new();
    for b in millwright::ingest::read_all(&state.join("readings")).unwrap().batches.into_iter().filter(|b| b.machine == m) {
        times.extend(b.rows.iter().map(|r| r.0 as i64));
    }
    let table = millwright::data::load_machine(&data, &m).unwrap();
    times.extend(table.timestamps.iter().filter(|t| **t >= t0).map(|t| *t as i64));
    let missing: Vec<u32> = (0..total).filter(|i| !times.contains(&((t0 as i64) + i64::from(*i)))).collect();
    assert!(missing.is_empty(), "readings the broker took but the daemon lost: {missing:?}");
}

#[test]
fn readings_in_over_mqtt_are_scored_and_each_machines_health_is_published_retained() {
    let (d, data, state) = setup(2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let daemon = start(
        &data,
        &state,
        &broker.url(),
        &[("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "5"), ("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10")],
    );
    let m = machine(&daemon);
    let sensors = sensors_of(&data, &m);
    let history = millwright::data::load_machine(&data, &m).unwrap();
    let end = *history.timestamps.last().unwrap();
    let last: Vec<f64> = history.sensors.iter().map(|s| *s.values.last().unwrap()).collect();
    let task = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m })).json();
    assert_eq!(daemon.wait_task(task["task_id"].as_str().unwrap(), LONG)["status"], "SUCCESS");

    let health_topic = topic(&format!("machines/{m}/health"));
    let sub = Sub::connect(broker.port, &[&health_topic]);
    let first = sub.wait(Duration::from_secs(30), "a health message with four answers", |x| {
        let v = x.json();
        ["classification", "regression", "anomaly", "timeseries"]
            .iter()
            .all(|t| v["answers"][t].is_object() && v["answers"][t]["error"].is_null())
    });
    let h = first.json();
    for k in ["state", "sentence", "light", "scored_at", "models"] {
        assert!(!h[k].is_null(), "{k} missing: {h}");
    }
    assert!(h["answers"]["regression"]["rul_hours"].as_f64().is_some_and(|r| r >= 0.0), "{h}");
    assert_eq!(h["answers"]["timeseries"]["start"], millwright::util::time::format_timestamp(end + 3_600.0), "{h}");

    // A day of hourly readings over MQTT, continuing the history: within a compaction and a scoring the
    // machine's health is scored on them (its forecast starts after the newest reading in its files).
    wait_for("the readings connection", SHORT, || daemon.log().contains("MQTT readings: subscribed"));
    let rows: Vec<Value> = (1..=24)
        .map(|h| {
            let mut r = json!({ "ts": millwright::util::time::format_timestamp(end + f64::from(h) * 3_600.0) });
            for (s, v) in sensors.iter().zip(&last) {
                r[s] = json!(v);
            }
            r
        })
        .collect();
    sub.publish(&topic(&format!("machines/{m}/readings")), json!(rows).to_string().as_bytes(), false);
    let want = millwright::util::time::format_timestamp(end + 24.0 * 3_600.0);
    let t0 = Instant::now();
    sub.wait(Duration::from_secs(60), "a health message scored on the new readings", |x| {
        x.json()["answers"]["timeseries"]["start"] == want.as_str()
    });
    eprintln!("readings published → health scored on them: {:.1} s", t0.elapsed().as_secs_f64());
    // A dashboard connecting later gets the latest health at once: it is retained.
    let late = Sub::connect(broker.port, &[&health_topic]);
    let kept = late.wait_topic(&health_topic, SHORT);
    assert!(kept.retain && kept.json()["machine_id"] == m.as_str(), "{:?}", kept.json());

    // The score history has both: the scores before the readings and the one on them, oldest first, a
    // line only when what it rests on changed (evaluations every 5 s of unchanged data write nothing).
    let h = daemon.get(&format!("/api/machines/{m}/scores")).json();
    let scores = h["scores"].as_array().unwrap_or_else(|| panic!("{h}"));
    let starts: Vec<&str> = scores.iter().filter_map(|s| s["answers"]["timeseries"]["start"].as_str()).collect();
    let before = millwright::util::time::format_timestamp(end + 3_600.0);
    let (a, b) = (starts.iter().position(|s| *s == before), starts.iter().position(|s| *s == want));
    assert!(a.is_some_and(|a| b.is_some_and(|b| a < b)), "{starts:?}");
    for w in scores.windows(2) {
        let basis = |v: &Value| (v["data_updated_at"].clone(), v["models"].clone(), v["sentence"].clone(), v["state"].clone());
        assert_ne!(basis(&w[0]), basis(&w[1]), "a score was written again though nothing changed: {h}");
    }
    let newest = daemon.get(&format!("/api/machines/{m}/scores?limit=1")).json();
    assert_eq!(newest["scores"].as_array().map(Vec::len), Some(1), "{newest}");
    assert_eq!(newest["scores"][0], *scores.last().unwrap());
    let since = scores.last().unwrap()["scored_at"].as_str().unwrap();
    assert_eq!(daemon.get(&format!("/api/machines/{m}/scores?since={since}")).json()["count"], 1);
    let bad = common::request(daemon.addr, "GET", &format!("/api/machines/{m}/scores?since=yesterday"), None, &[]);
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
    assert_eq!(common::request(daemon.addr, "GET", "/api/machines/no_such/scores", None, &[]).status, 404);
}

/// The machine the replay tests send from: a simulated motor of 30,000 hourly rows (35 lives) as CSV files.
fn replay_source(data: &Path) -> String {
    let opts = millwright::data::simulate::FleetOptions {
        out_dir: data.to_path_buf(),
        machines: 1,
        seed: 11,
        rows: 30_000,
        format: millwright::data::write::Format::Csv,
        ..Default::default()
    };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
    millwright::data::machine_ids(data).unwrap().remove(0)
}

/// The simulator's replay, end to end: a machine whose history stops 400 h before a failure, trained; the
/// rest of that life replayed over MQTT by `millwright replay` as a gateway would send it; the daemon takes
/// every reading in and scores the machine as it wears: the remaining life it answers falls and the verdict
/// moves off "ok". (Whether it reaches "plan maintenance", and so an alert, is the models' quality on this
/// life: the test prints it.)
#[test]
fn a_replayed_failure_trajectory_is_taken_in_and_scored_as_the_machine_wears() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let source = replay_source(&data);
    let target = format!("{source}_replayed");
    // The first life of the test file that still has 400 h to run: the history ends there.
    common::cut_copy(&data, &source, &target, |rul| (1..rul.len()).find(|&i| rul[i] <= 400.0 && rul[i - 1] > rul[i] && rul[i] > 390.0));
    let broker = Broker::start(&d.path().join("broker"));
    let state = d.path().join("state");
    let daemon = start(
        &data,
        &state,
        &broker.url(),
        &[("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "5"), ("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10")],
    );
    let task = daemon.post("/api/ml/train/batch", &json!({ "machine_id": target })).json();
    assert_eq!(daemon.wait_task(task["task_id"].as_str().unwrap(), LONG)["status"], "SUCCESS");
    let before = daemon.get(&format!("/api/machines/{target}/verdict")).json()["tile"].clone();
    let rul_before = before["answers"]["regression"]["rul_hours"].as_f64().unwrap_or_else(|| panic!("{before}"));
    assert!(before["severity"] == "ok" || before["severity"] == "watch", "400 h before the failure: {before}");
    let health_topic = topic(&format!("machines/{target}/health"));
    let sub = Sub::connect(broker.port, &[&health_topic]);
    wait_for("the readings connection", SHORT, || daemon.log().contains("MQTT readings: subscribed"));

    // 400 recorded hours at 72,000×: 20 s.
    let t0 = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_millwright"))
        .args(["replay", "--from", &source, "--machine", &target, "--speed", "72000", "--data-dir"])
        .arg(&data)
        .env("MILLWRIGHT_MQTT__URL", broker.url())
        .env("MILLWRIGHT_MQTT__NODE_ID", "test1")
        .env_remove("MILLWRIGHT_CONFIG")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "replay failed: {said}");
    assert!(said.contains("the life ended"), "{said}");
    eprintln!("{said}replay took {:.1} s", t0.elapsed().as_secs_f64());
    let sent: usize = said.split("sent ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(sent >= 390, "{said}");

    // Scored on the whole trajectory: the forecast starts an hour after the newest reading in the files
    // (the last one waits out the order tolerance).
    let last = sub.wait(Duration::from_secs(90), "the health scored on the whole replayed life", |m| {
        m.json()["answers"]["timeseries"]["start"].as_str().and_then(millwright::util::time::parse_timestamp) >= Some(said_end(&said))
    });
    let h = last.json();
    eprintln!(
        "after the replay: {} ({}), RUL {:?} h (before: {rul_before:.0} h), failure probability {:?}, {} s after the replay began",
        h["label"],
        h["sentence"],
        h["answers"]["regression"]["rul_hours"],
        h["answers"]["classification"]["failure_probability"],
        t0.elapsed().as_secs()
    );
    let counts = readings_health(&daemon);
    assert_eq!((counts["rows_accepted"].as_u64(), counts["rows_rejected"].as_u64()), (Some(sent as u64), Some(0)), "{counts}");
    let rul_after = h["answers"]["regression"]["rul_hours"].as_f64().unwrap();
    assert!(rul_after < rul_before / 2.0, "the remaining life answered did not fall with the wear: {rul_before:.0} h -> {rul_after:.0} h");
    assert!(
        ["watch", "plan", "act"].contains(&h["severity"].as_str().unwrap_or("")),
        "an hour before the failure the verdict is still {}",
        h["label"]
    );
    let alerts = daemon.get(&format!("/api/alerts?machine_id={target}")).json();
    eprintln!("alerts active after the replay: {}", alerts["active"]);
}

/// The issue's alert on a simulated failure trajectory. The machine's history ends 100 h into a life, with the
/// complete lives before it in its test file, so its models are graded on failures they were not fitted on
/// (and, so far from any failure, no alert is active). The last 300 h of four of those held-out lives are then
/// replayed over MQTT by `millwright replay --now`, each into its own copy of the machine (the same data and
/// models), the four at once; the daemon takes them in and scores them on its cadence. Every replayed failure
/// must move its verdict to watch or worse; an alert (plan maintenance or act now) follows only where a model
/// trusted enough for it says so — with this simulated motor's models (classifier graded limited, RUL off by
/// more than its own warning window near failure) the verdict rules hold every one at watch, and the test
/// prints that. Lives are taken in order, never picked by whether the models catch them.
#[test]
fn held_out_failures_replayed_over_mqtt_are_each_seen_and_alert_when_a_trusted_model_says_so() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let source = replay_source(&data);
    // The source's test lives: where each starts, and the time after which its last 300 h begin.
    let text = std::fs::read_to_string(data.join("machines").join(&source).join("test.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (t_col, rul_col) = (header.iter().position(|c| *c == "timestamp").unwrap(), header.iter().position(|c| *c == "rul").unwrap());
    let rows: Vec<(f64, f64)> = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (millwright::util::time::parse_timestamp(c[t_col]).unwrap(), c[rul_col].parse().unwrap())
        })
        .collect();
    let starts: Vec<usize> = std::iter::once(0).chain((1..rows.len()).filter(|&i| rows[i].1 > rows[i - 1].1)).collect();
    assert!(starts.len() >= 3, "the test file has {} lives", starts.len());
    let whole = starts.len() - 1;
    let replayed = whole.min(4);
    let afters: Vec<f64> = starts[..replayed]
        .iter()
        .map(|&s| {
            let last_far =
                (s..rows.len()).take_while(|&i| i == s || rows[i].1 <= rows[i - 1].1).filter(|&i| rows[i].1 > 300.0).last().unwrap();
            rows[last_far].0
        })
        .collect();
    let keep_until = starts[whole] + 100;
    let targets: Vec<String> = (0..replayed).map(|k| format!("{source}-{k}")).collect();
    for t in &targets {
        common::cut_copy(&data, &source, t, |_| Some(keep_until));
    }
    let broker = Broker::start(&d.path().join("broker"));
    let state = d.path().join("state");
    let daemon = start(
        &data,
        &state,
        &broker.url(),
        &[
            ("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "5"),
            ("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10"),
            ("MILLWRIGHT_READINGS__ORDER_TOLERANCE_S", "5"),
        ],
    );
    let task = daemon.post("/api/ml/train/batch", &json!({ "machine_id": targets[0] })).json();
    assert_eq!(daemon.wait_task(task["task_id"].as_str().unwrap(), LONG)["status"], "SUCCESS");
    for t in &targets[1..] {
        common::copy_models(&state, &targets[0], t);
    }
    let classifier = daemon.get(&format!("/api/ml/models/{}/classification", targets[0])).json();
    let report = &classifier["report"];
    eprintln!(
        "the classifier on held-out lives: recall {:.2}, precision {:.2}, graded {}",
        report["metrics"]["recall"].as_f64().unwrap_or(f64::NAN),
        report["metrics"]["precision"].as_f64().unwrap_or(f64::NAN),
        report["quality"]["grade"]
    );
    for t in &targets {
        let v = daemon.get(&format!("/api/machines/{t}/verdict")).json();
        assert!(v["tile"]["answers"]["classification"].is_object(), "{t} has no answers before the replay: {v}");
        eprintln!("{t} before the replay: {} (RUL {} h)", v["tile"]["label"], v["tile"]["answers"]["regression"]["rul_hours"]);
        assert_eq!(v["tile"]["severity"], "ok", "{t}, 100 h into a life: {v}");
        assert_eq!(daemon.get(&format!("/api/alerts?machine_id={t}")).json()["active"], 0, "{t} has an alert before the replay: {v}");
    }
    let sub = Sub::connect(broker.port, &[&topic("machines/+/health"), &topic("machines/+/alerts")]);
    wait_for("the readings connection", SHORT, || daemon.log().contains("MQTT readings: subscribed"));

    // 300 recorded hours at 72,000×: 15 s, the four at once.
    let replays: Vec<_> = targets
        .iter()
        .zip(&afters)
        .map(|(t, after)| {
            std::process::Command::new(env!("CARGO_BIN_EXE_millwright"))
                .args([
                    "replay",
                    "--from",
                    &source,
                    "--machine",
                    t,
                    "--speed",
                    "72000",
                    "--now",
                    "--after",
                    &after.to_string(),
                    "--data-dir",
                ])
                .arg(&data)
                .env("MILLWRIGHT_MQTT__URL", broker.url())
                .env("MILLWRIGHT_MQTT__NODE_ID", "test1")
                .env_remove("MILLWRIGHT_CONFIG")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut sent_total = 0;
    for (t, r) in targets.iter().zip(replays) {
        let out = r.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("the life ended"), "replay into {t}: {said}");
        sent_total += said.split("sent ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse::<u64>().ok()).unwrap();
    }
    let done = millwright::util::time::now_secs();
    // Scored once every replayed row is in the files: the last waits out the order tolerance, then a
    // compaction pass and an evaluation follow.
    let mut last = Vec::new();
    for t in &targets {
        let h = sub.wait(Duration::from_secs(90), &format!("{t}'s health scored on the whole replay"), |m| {
            m.topic == topic(&format!("machines/{t}/health"))
                && m.json()["scored_at"].as_str().and_then(millwright::util::time::parse_timestamp).is_some_and(|s| s > done + 20.0)
        });
        last.push(h.json());
    }
    // A simulated dropout of every sensor at once is a row without a reading: refused and counted, not stored.
    let counts = readings_health(&daemon);
    let (accepted, rejected) = (counts["rows_accepted"].as_u64().unwrap(), counts["rows_rejected"].as_u64().unwrap());
    assert!(accepted + rejected == sent_total && rejected * 100 <= sent_total, "{sent_total} rows sent: {counts}");
    let mut alerted = Vec::new();
    for (t, h) in targets.iter().zip(&last) {
        let active = daemon.get(&format!("/api/alerts?machine_id={t}")).json()["active"].as_u64().unwrap_or(0);
        eprintln!(
            "{t}: {} ({}), failure probability {:.2}, RUL {:.0} h, alerts active {active}",
            h["label"],
            h["sentence"],
            h["answers"]["classification"]["failure_probability"].as_f64().unwrap_or(f64::NAN),
            h["answers"]["regression"]["rul_hours"].as_f64().unwrap_or(f64::NAN),
        );
        if active > 0 {
            assert!(["plan", "act"].contains(&h["severity"].as_str().unwrap_or("")), "{t} has an alert but its health says {}", h["label"]);
            alerted.push(t.clone());
        }
    }
    eprintln!("{} of {} replayed failures raised a maintenance alert", alerted.len(), targets.len());
    for (t, h) in targets.iter().zip(&last) {
        assert!(
            ["watch", "plan", "act"].contains(&h["severity"].as_str().unwrap_or("")),
            "{t}: at its failure the verdict is still {}",
            h["label"]
        );
    }
    for t in &alerted {
        let retained = sub.wait(SHORT, &format!("{t}'s alerts published"), |m| {
            m.topic == topic(&format!("machines/{t}/alerts")) && m.json()["active"].as_u64() >= Some(1)
        });
        assert_eq!(retained.json()["alerts"][0]["kind"], "verdict", "{}", retained.json());
    }
}

/// The recorded end of the replayed rows, from the command's first line ("… – <end>, …").
fn said_end(said: &str) -> f64 {
    let end = said.split(" – ").nth(1).and_then(|s| s.split([',', ')']).next()).unwrap_or_default();
    millwright::util::time::parse_timestamp(end).unwrap_or(f64::MAX)
}
