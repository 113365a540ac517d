//! The MQTT session against a real Mosquitto: a retained request bigger than the daemon's old packet
//! limit, one over the limit it has now (kept back by the broker over MQTT 5, a dropped link over 3.1.1), two daemons with one node id (so one client id: the broker kicks
//! each out when the other connects), and two with their own client ids on one base topic.
use super::common::{Daemon, fleet};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../common/mqtt.rs"]
mod harness;
use harness::{Broker, Msg, Sub};

const SHORT: Duration = Duration::from_secs(15);
/// The daemon's health period (`mqtt::HEALTH_INTERVAL`), which republishes `online` each time.
const HEALTH_PERIOD: Duration = Duration::from_secs(30);

fn setup() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, 1, 2_000);
    (d, data)
}

fn start(data: &Path, state: &Path, url: &str, node: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("MILLWRIGHT_MQTT__ENABLED", "true"),
        ("MILLWRIGHT_MQTT__URL", url),
        ("MILLWRIGHT_MQTT__NODE_ID", node),
        ("MILLWRIGHT_MQTT__KEEPALIVE_S", "5"),
    ];
    env.extend_from_slice(extra);
    Daemon::start(data, state, &env)
}

fn base(node: &str) -> String {
    format!("millwright/{node}")
}

/// How often the broker accepted a client with this id (Mosquitto logs each at notice level).
fn connects(broker: &Broker, client_id: &str) -> usize {
    broker.log().matches(&format!(" as {client_id} (")).count()
}

fn state_is(m: &Msg, base: &str, state: &str) -> bool {
    m.topic == format!("{base}/bridge/state") && !m.payload.is_empty() && m.json()["state"] == state
}

fn mqtt_health(d: &Daemon) -> Value {
    let h = d.get("/api/health").json();
    assert!(h["mqtt"].is_object(), "no mqtt part in /api/health: {h}");
    h["mqtt"].clone()
}

/// Publishes a retained message of `bytes` bytes and waits until the broker holds it.
fn leave_retained(broker: &Broker, topic: &str, bytes: usize) {
    let publisher = Sub::connect(broker.port, &[]);
    publisher.publish(topic, &vec![b'a'; bytes], true);
    let probe = Sub::connect(broker.port, &[topic]);
    probe.wait(Duration::from_secs(30), "the big retained message", |m| m.topic == topic && m.payload.len() == bytes);
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    t0.elapsed()
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

#[test]
fn a_9_mb_retained_request_neither_breaks_the_session_nor_runs() {
    let (d, data) = setup();
    let broker = Broker::start(&d.path().join("broker"));
    let base = base("big1");
    let train = format!("{base}/bridge/request/train");
    // The recipe: head -c 9000000 /dev/zero | tr '\0' a > big; mosquitto_pub -t <base>/bridge/request/train -f big -r
    leave_retained(&broker, &train, 9_000_000);
    let watcher = Sub::connect(broker.port, &[&format!("{base}/bridge/state"), &format!("{base}/bridge/response/#")]);
    let daemon = start(&data, &d.path().join("state"), &broker.url(), "big1", &[]);
    let t0 = Instant::now();
    watcher.wait(SHORT, "online", |m| state_is(m, &base, "online"));
    let refusal = watcher.wait(SHORT, "the refusal of the retained request", |m| m.topic == format!("{base}/bridge/response/train")).json();
    assert_eq!(refusal["status"], "error", "{refusal}");
    assert!(refusal["error"].as_str().unwrap_or("").contains("retained"), "{refusal}");
    // Other requests are answered, by this instance.
    let r = watcher.request(&base, "health_check", r#"{"transaction":"after-9mb"}"#, SHORT);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["instance_id"], mqtt_health(&daemon)["instance_id"], "{r}");
    sleep_until(t0 + Duration::from_secs(20));
    let n = connects(&broker, "millwright-big1");
    eprintln!("connects in 20 s with a 9 MB retained request: {n}");
    assert!(n <= 2, "{n} connects in 20 s:\n{}", broker.log());
    let health = mqtt_health(&daemon);
    assert_eq!(
        (health["connected"].as_bool(), health["twin"].as_bool()),
        (Some(true), Some(false)),
        "a lone daemon hearing its own messages is no twin: {health}"
    );
    let r = watcher.request(&base, "health_check", r#"{"transaction":"at-20s"}"#, SHORT);
    assert_eq!(r["status"], "ok", "{r}");
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("ignored a retained request")).unwrap_or_else(|| panic!("no clear line:\n{log}"));
    assert!(line.contains(&train) && line.contains("9000000 bytes") && line.contains("mosquitto_pub -r -n"), "{line}");
    let tasks = daemon.get("/api/ml/tasks").json();
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0), "the retained train request ran: {tasks}");
}

/// Over MQTT 5 the daemon tells the broker its packet limit at CONNECT, and the broker keeps a bigger
/// message to itself: the connection holds.
#[test]
fn over_mqtt_5_a_message_over_the_limit_is_kept_back_by_the_broker() {
    let (d, data) = setup();
    let broker = Broker::start(&d.path().join("broker"));
    let base = base("big5");
    leave_retained(&broker, &format!("{base}/bridge/request/predict"), 20_000_000);
    let watcher = Sub::connect(broker.port, &[&format!("{base}/bridge/state"), &format!("{base}/bridge/response/#")]);
    let daemon = start(&data, &d.path().join("state"), &broker.url(), "big5", &[]);
    watcher.wait(SHORT, "online", |m| state_is(m, &base, "online"));
    std::thread::sleep(Duration::from_secs(8));
    let n = connects(&broker, "millwright-big5");
    assert_eq!(n, 1, "the connection held:\n{}", broker.log());
    let health = mqtt_health(&daemon);
    assert_eq!((health["connected"].as_bool(), health["protocol"].as_str()), (Some(true), Some("5")), "{health}");
    let r = watcher.request(&base, "health_check", r#"{"transaction":"v5-big"}"#, SHORT);
    assert_eq!(r["status"], "ok", "{r}");
}

/// MQTT 3.1.1 has no way to tell the broker a limit: the client fails the connection on the header.
#[test]
fn over_3_1_1_a_message_over_the_limit_costs_reconnects_with_growing_back_off_and_one_clear_line() {
    let (d, data) = setup();
    let broker = Broker::start(&d.path().join("broker"));
    let base = base("big2");
    let predict = format!("{base}/bridge/request/predict");
    // Over the daemon's limit (twice the largest valid request): rumqttc drops the link on its header.
    leave_retained(&broker, &predict, 20_000_000);
    let daemon = start(&data, &d.path().join("state"), &broker.url(), "big2", &[("MILLWRIGHT_MQTT__PROTOCOL", "3.1.1")]);
    let t0 = Instant::now();
    wait_for(SHORT, "a first connect", || connects(&broker, "millwright-big2") >= 1);
    sleep_until(t0 + Duration::from_secs(20));
    let n = connects(&broker, "millwright-big2");
    eprintln!("connects in 20 s with a 20 MB retained request: {n}");
    // Back-off 1, 2, 4, 8 s: five attempts at most; a reset at each CONNACK made it one a second.
    assert!((2..=5).contains(&n), "{n} connects in 20 s:\n{}", broker.log());
    let log = daemon.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("more than the") && l.contains("bytes")).collect();
    assert_eq!(lines.len(), 1, "told once:\n{log}");
    // The size is the packet's (payload, topic and packet id).
    assert!(
        lines[0].contains(" ERROR ") && lines[0].contains("a message of 200000") && lines[0].contains("mosquitto_pub -r -n"),
        "{}",
        lines[0]
    );
    let health = mqtt_health(&daemon);
    assert!(health["warnings"].to_string().contains("more than the"), "{health}");
    assert_eq!(daemon.get("/api/health").status, 200);

    // Cleared, the next attempt holds and requests are answered again.
    let cleaner = Sub::connect(broker.port, &[&format!("{base}/bridge/response/#"), &format!("{base}/bridge/state")]);
    cleaner.publish(&predict, b"", true);
    let back = Instant::now();
    cleaner.wait(Duration::from_secs(35), "online after the clear", |m| state_is(m, &base, "online") && !m.retain);
    eprintln!("connected again {:?} after the clear", back.elapsed());
    let r = cleaner.request(&base, "health_check", r#"{"transaction":"cleared"}"#, SHORT);
    assert_eq!(r["status"], "ok", "{r}");
}

#[test]
fn two_daemons_with_one_node_id_are_told_apart_back_off_and_the_survivor_stays_online() {
    let (d, data) = setup();
    let broker = Broker::start(&d.path().join("broker"));
    let base = base("pi");
    let watcher = Sub::connect(broker.port, &[&format!("{base}/#")]);
    let mut a = start(&data, &d.path().join("state-a"), &broker.url(), "pi", &[]);
    watcher.wait(SHORT, "online", |m| state_is(m, &base, "online"));
    let mut b = start(&data, &d.path().join("state-b"), &broker.url(), "pi", &[]);
    let t0 = Instant::now();

    // Both say so, in the log and on /api/health.
    let took =
        wait_for(Duration::from_secs(30), "a twin reported by both", || mqtt_health(&a)["twin"] == true && mqtt_health(&b)["twin"] == true);
    eprintln!("twin reported by both {took:?} after the second start");
    for d in [&a, &b] {
        let h = mqtt_health(d);
        assert!(h["warnings"].to_string().contains("same client id"), "{h}");
        let log = d.log();
        let line = log.lines().find(|l| l.contains("same client id")).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains(" ERROR ") && line.contains("mqtt.node_id") && line.contains("millwright-pi"), "{line}");
    }

    // The fight calms down: the back-off grows instead of restarting at each CONNACK.
    let window = Instant::now();
    let (c0, seen0) = (connects(&broker, "millwright-pi"), watcher.all().len());
    std::thread::sleep(Duration::from_secs(20));
    let (c1, seen1) = (connects(&broker, "millwright-pi"), watcher.all().len());
    let states = watcher.all().iter().filter(|m| m.topic == format!("{base}/bridge/state") && m.at >= window).count();
    eprintln!(
        "in 20 s, {:?} after the second start: {} connects, {} messages, {states} on bridge/state",
        window.duration_since(t0),
        c1 - c0,
        seen1 - seen0
    );
    assert!(c1 - c0 <= 6, "{} connects in 20 s", c1 - c0);
    assert!(seen1 - seen0 <= 150, "{} messages in 20 s", seen1 - seen0);
    assert!(states <= 20, "{states} state messages in 20 s");

    // kill -9 the one that holds the connection now: its will says offline; the survivor, in back-off,
    // says online again within one health period.
    let (victim, survivor) = loop {
        if mqtt_health(&a)["connected"] == true {
            break (&mut a, &mut b);
        }
        if mqtt_health(&b)["connected"] == true {
            break (&mut b, &mut a);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let survivor_id = mqtt_health(survivor)["instance_id"].clone();
    // Before the kill: the survivor answers the will within a millisecond, before kill9() returns.
    let killed = Instant::now();
    victim.kill9();
    let back = watcher.wait(HEALTH_PERIOD + Duration::from_secs(5), "the survivor online again", |m| {
        state_is(m, &base, "online") && m.json()["instance_id"] == survivor_id && m.at >= killed
    });
    eprintln!("survivor online {:?} after kill -9 of the connected twin", back.at.duration_since(killed));
    let late = Sub::connect(broker.port, &[&format!("{base}/bridge/state")]);
    let retained = late.wait_topic(&format!("{base}/bridge/state"), SHORT).json();
    assert_eq!((retained["state"].as_str(), &retained["instance_id"]), (Some("online"), &survivor_id), "{retained}");

    // A request is answered once, by the survivor.
    let r = watcher.request(&base, "health_check", r#"{"transaction":"once"}"#, SHORT);
    assert_eq!((r["status"].as_str(), &r["instance_id"]), (Some("ok"), &survivor_id), "{r}");
    std::thread::sleep(Duration::from_secs(2));
    let answers = watcher.on(&format!("{base}/bridge/response/health_check")).iter().filter(|m| m.json()["transaction"] == "once").count();
    assert_eq!(answers, 1);
    assert!(!survivor.log().contains("panicked"));
}

#[test]
fn two_daemons_with_their_own_client_ids_on_one_base_topic_answer_each_request_once() {
    let (d, data) = setup();
    let broker = Broker::start(&d.path().join("broker"));
    let base = base("pi2");
    let watcher = Sub::connect(broker.port, &[&format!("{base}/#")]);
    let mut a = start(&data, &d.path().join("state-a"), &broker.url(), "pi2", &[]);
    watcher.wait(SHORT, "online", |m| state_is(m, &base, "online"));
    let mut b = start(&data, &d.path().join("state-b"), &broker.url(), "pi2", &[("MILLWRIGHT_MQTT__CLIENT_ID", "millwright-pi2-b")]);
    let took = wait_for(SHORT, "both see the twin", || mqtt_health(&a)["twin"] == true && mqtt_health(&b)["twin"] == true);
    eprintln!("twin seen by both {took:?} after the second start");
    let (ha, hb) = (mqtt_health(&a), mqtt_health(&b));
    assert_eq!((&ha["peers"][0], &hb["peers"][0]), (&hb["instance_id"], &ha["instance_id"]), "{ha}\n{hb}");
    assert_eq!(
        (ha["connected"].as_bool(), hb["connected"].as_bool()),
        (Some(true), Some(true)),
        "different client ids: both stay connected"
    );
    // Exactly one of them answers: the lower instance id.
    assert_ne!(ha["answers_requests"], hb["answers_requests"], "{ha}\n{hb}");
    let (leader_id, follower_id) = if ha["answers_requests"] == true {
        (ha["instance_id"].clone(), hb["instance_id"].clone())
    } else {
        (hb["instance_id"].clone(), ha["instance_id"].clone())
    };
    assert!(leader_id.as_str() < follower_id.as_str());
    for d in [&a, &b] {
        let log = d.log();
        assert!(log.lines().any(|l| l.contains(" ERROR ") && l.contains("another millwright") && l.contains("mqtt.node_id")), "{log}");
    }

    let m = a.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let r =
        watcher.request(&base, "train", &json!({ "machine_id": m, "model_types": ["anomaly"], "transaction": "t1" }).to_string(), SHORT);
    assert_eq!((r["status"].as_str(), &r["instance_id"]), (Some("ok"), &leader_id), "{r}");
    std::thread::sleep(Duration::from_secs(2));
    let answers = watcher.on(&format!("{base}/bridge/response/train")).iter().filter(|m| m.json()["transaction"] == "t1").count();
    assert_eq!(answers, 1, "answered by both twins");
    let jobs = |d: &Daemon| d.get("/api/ml/tasks").json()["tasks"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(jobs(&a) + jobs(&b), 1, "one train request started {} jobs", jobs(&a) + jobs(&b));

    // kill -9 the one that answers: its will must not leave the survivor offline, and the survivor
    // takes the requests over.
    let (victim, survivor) = if ha["instance_id"] == leader_id { (&mut a, &mut b) } else { (&mut b, &mut a) };
    // Before the kill: the survivor answers the will within a millisecond, before kill9() returns.
    let killed = Instant::now();
    victim.kill9();
    let back = watcher.wait(SHORT, "the survivor online after the will", |m| {
        state_is(m, &base, "online") && m.json()["instance_id"] == follower_id && m.at >= killed
    });
    eprintln!("survivor online {:?} after kill -9 of the twin that answered", back.at.duration_since(killed));
    let late = Sub::connect(broker.port, &[&format!("{base}/bridge/state")]);
    let retained = late.wait_topic(&format!("{base}/bridge/state"), SHORT).json();
    assert_eq!((retained["state"].as_str(), &retained["instance_id"]), (Some("online"), &follower_id), "{retained}");
    wait_for(SHORT, "the survivor alone", || mqtt_health(survivor)["twin"] == false);
    let r = watcher.request(&base, "health_check", r#"{"transaction":"t2"}"#, SHORT);
    assert_eq!((r["status"].as_str(), &r["instance_id"]), (Some("ok"), &follower_id), "{r}");
}
