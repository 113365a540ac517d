//! Home Assistant's own verdict on the MQTT discovery and states the daemon publishes: a real daemon and a
//! real Mosquitto; everything on `homeassistant/#` and the base topic is captured and handed to
//! tests/homeassistant/check.py, which runs Home Assistant's code (the pinned `homeassistant` package in
//! target/ha-venv, prepared by scripts/test) on it: each platform's discovery schema, its entity setup
//! (where deprecations are warned about) and its state handling for every payload sent — untrained,
//! trained through the "train all" button, a cleared model, the verdict's "anomalous now", and a null SoC
//! temperature. Zero errors, zero
//! warnings.
mod common;
#[allow(dead_code)]
#[path = "common/mqtt.rs"]
mod mqtt_helpers;

use common::{Daemon, fleet};
use mqtt_helpers::{Broker, Msg, Sub};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BASE: &str = "millwright/ha1";
const SHORT: Duration = Duration::from_secs(20);
const LONG: Duration = Duration::from_secs(300);

/// The venv scripts/test prepares (or MILLWRIGHT_HA_PYTHON), with instructions when it is missing.
fn ha_python() -> PathBuf {
    let python = std::env::var_os("MILLWRIGHT_HA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ha-venv/bin/python"));
    let ok = Command::new(&python).args(["-c", "import homeassistant.components.mqtt.sensor"]).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "Home Assistant is not installed at {}: run ./scripts/test once (it prepares target/ha-venv with the pinned \
         homeassistant package), or set MILLWRIGHT_HA_PYTHON to a python that has it",
        python.display()
    );
    python
}

fn as_capture(msgs: &[Msg]) -> Vec<Value> {
    msgs.iter()
        .filter(|m| !m.topic.contains("/bridge/request/"))
        .map(|m| json!({ "topic": m.topic, "payload": String::from_utf8_lossy(&m.payload), "retain": m.retain }))
        .collect()
}

#[test]
fn home_assistant_accepts_every_config_and_state_without_an_error_or_a_warning() {
    let python = ha_python();
    let t0 = Instant::now();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, 1, 2_000);
    // No thermal zone: the SoC temperature is null in bridge/health.
    let sysfs = d.path().join("sysfs");
    std::fs::create_dir_all(&sysfs).unwrap();
    let broker = Broker::start(&d.path().join("broker"));
    let sub = Sub::connect(broker.port, &["homeassistant/#", &format!("{BASE}/#")]);
    let daemon = Daemon::start(
        &data,
        &d.path().join("state"),
        &[
            ("MILLWRIGHT_MQTT__ENABLED", "true"),
            ("MILLWRIGHT_MQTT__URL", &broker.url()),
            ("MILLWRIGHT_MQTT__NODE_ID", "ha1"),
            ("MILLWRIGHT_MQTT__HOMEASSISTANT", "true"),
            ("MILLWRIGHT_GUARD__SYSFS_ROOT", sysfs.to_str().unwrap()),
        ],
    );
    let m = daemon.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let button = sub.wait_topic(&format!("homeassistant/button/ha1/{m}_train_all/config"), SHORT).json();
    let health = sub.wait_topic(&format!("{BASE}/bridge/health"), SHORT).json();
    assert!(health["temperature_c"].is_null(), "{health}");
    let untrained_names: Vec<(String, Value)> =
        sub.all().iter().filter(|x| x.topic.starts_with("homeassistant/")).map(|x| (x.topic.clone(), x.json()["name"].clone())).collect();

    // What Home Assistant does when the button is pressed.
    sub.publish(button["command_topic"].as_str().unwrap(), button["payload_press"].as_str().unwrap().as_bytes(), false);
    let answer = sub.wait_topic(&format!("{BASE}/bridge/response/train"), SHORT).json();
    assert_eq!((answer["status"].as_str(), &answer["transaction"]), (Some("ok"), &json!("homeassistant")), "{answer}");
    let id = answer["data"]["task_id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
    daemon.wait_task(&id, LONG);
    let training = sub.wait(SHORT, "the training state", |x| x.topic == format!("{BASE}/machines/{m}/training") && !x.payload.is_empty());
    assert_eq!(training.json()["status"], "SUCCESS");
    let metric = format!("{BASE}/machines/{m}/models/anomaly");
    sub.wait(SHORT, "a live model", |x| x.topic == metric && !x.payload.is_empty());
    // Names do not change with training.
    std::thread::sleep(Duration::from_millis(500));
    for (topic, name) in &untrained_names {
        let last = sub.on(topic).last().unwrap().json();
        assert_eq!(&last["name"], name, "{topic} was renamed after training");
    }

    // The fleet view decides each machine's verdict, which carries the anomaly answer ("anomalous now").
    assert_eq!(daemon.get("/api/fleet").status, 200);
    let verdict = sub.wait(SHORT, "the verdict", |x| x.topic == format!("{BASE}/machines/{m}/verdict") && !x.payload.is_empty()).json();
    assert!(verdict["anomalous"].is_boolean(), "{verdict}");
    let mut messages = as_capture(&sub.all());
    // A model that goes (deleted, or replaced by none) is cleared with an empty retained payload, which is
    // also what a consumer meets on a topic cleared by hand: every state topic must take it.
    let state_topics: std::collections::BTreeSet<String> = sub
        .all()
        .iter()
        .filter(|x| x.topic.starts_with("homeassistant/") && !x.payload.is_empty())
        .filter_map(|x| x.json()["state_topic"].as_str().map(str::to_string))
        .collect();
    for t in &state_topics {
        messages.push(json!({ "topic": t, "payload": "", "retain": true }));
    }
    let capture = d.path().join("capture.json");
    std::fs::write(&capture, serde_json::to_vec(&json!({ "messages": messages })).unwrap()).unwrap();
    let checker = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/homeassistant/check.py");
    let t_check = Instant::now();
    let out = Command::new(&python).arg(&checker).arg(&capture).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the checker's report is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!(
        "Home Assistant {}: {} configs, {} states rendered; checker {:.1} s, test {:.1} s",
        report["homeassistant"],
        report["configs"],
        report["states_rendered"],
        t_check.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(report["errors"], json!([]), "{report:#}");
    assert_eq!(report["warnings"], json!([]), "{report:#}");
    assert!(out.status.success(), "{report:#}");

    let entities = report["entities"].as_object().unwrap();
    let states = |key: &str| entities[&format!("homeassistant/{key}/config")]["states"].as_array().unwrap().clone();
    assert_eq!(entities.len(), 3 + 4 + 1 + 1 + 1, "{report:#}");
    let anomalous = states(&format!("binary_sensor/ha1/{m}_anomalous"));
    let now = if verdict["anomalous"] == true { "on" } else { "off" };
    assert_eq!(anomalous.first(), Some(&json!(now)), "{anomalous:?}");
    assert!(anomalous.last().unwrap().is_null(), "a cleared verdict renders unknown: {anomalous:?}");
    assert!(states("sensor/ha1/soc_temperature").iter().all(Value::is_null), "null temperature renders no value");
    let anomaly = states(&format!("sensor/ha1/{m}_anomaly_metric"));
    assert!(anomaly.iter().any(|s| s.as_str().is_some_and(|s| s.parse::<f64>().is_ok())), "{anomaly:?}");
    assert!(anomaly.last().unwrap().is_null(), "a cleared model renders no value");
    assert!(states(&format!("sensor/ha1/{m}_training")).contains(&json!("SUCCESS")));
    let devices: std::collections::BTreeSet<&str> = entities.values().filter_map(|e| e["device"].as_str()).collect();
    assert_eq!(devices.len(), 2, "the Pi and the machine: {devices:?}");
}
