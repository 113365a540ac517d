//! Node-RED 4.1 (pinned in tests/nodered/package-lock.json, installed by scripts/test) as a real MQTT
//! client: it runs headless on loopback with the committed flow tests/nodered/flows.json (the README's
//! example), which starts a training over MQTT 3.1.1, follows its progress over MQTT 5, asks for predictions
//! when it ends (MQTT 5 request/response: Response Topic and Correlation Data), and watches `jobs/current` and the model topics with JSON parsing. The test reads what the
//! flow logs (`MWRESULT …` lines) and fails on any JSON parse failure Node-RED reports.
mod common;
#[allow(dead_code)]
#[path = "common/mqtt.rs"]
mod mqtt_helpers;

use common::{Daemon, fleet};
use mqtt_helpers::{Broker, free_port};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BASE: &str = "millwright/nr1";

fn node_red() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nodered/node_modules/.bin/node-red");
    assert!(bin.exists(), "Node-RED is not installed at {}: run ./scripts/test once (it runs `npm ci` in tests/nodered)", bin.display());
    bin
}

#[test]
fn the_node_red_flow_trains_follows_progress_and_gets_predictions() {
    let bin = node_red();
    let t0 = Instant::now();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, 1, 2_000);
    let broker = Broker::start(&d.path().join("broker"));
    let daemon = Daemon::start(
        &data,
        &d.path().join("state"),
        &[("MILLWRIGHT_MQTT__ENABLED", "true"), ("MILLWRIGHT_MQTT__URL", &broker.url()), ("MILLWRIGHT_MQTT__NODE_ID", "nr1")],
    );
    let m = daemon.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let user_dir = d.path().join("nodered");
    std::fs::create_dir_all(&user_dir).unwrap();
    let flows = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nodered/flows.json");
    let mut child = Command::new(&bin)
        .args(["-u", user_dir.to_str().unwrap(), "-p", &free_port().to_string()])
        .arg(&flows)
        .env("MW_BROKER_HOST", "127.0.0.1")
        .env("MW_BROKER_PORT", broker.port.to_string())
        .env("MW_BASE", BASE)
        .env("MW_MACHINE", &m)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let results = |kind: &str| -> Vec<Value> {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split_once("MWRESULT ").and_then(|(_, j)| serde_json::from_str::<Value>(j).ok()))
            .filter(|v| v["kind"] == kind)
            .collect()
    };
    let limit = Duration::from_secs(240);
    while results("predict").is_empty() && t0.elapsed() < limit && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.lock().unwrap().join("\n");
    eprintln!("{log}");
    let train = results("train");
    assert_eq!(train.len(), 1, "one answer to the train request:\n{log}");
    assert_eq!((train[0]["status"].as_str(), train[0]["node_id"].as_str()), (Some("ok"), Some("nr1")), "{log}");
    let done = results("done");
    assert_eq!(done.len(), 1, "the flow saw the job end:\n{log}");
    assert!(done[0]["year"].as_i64().unwrap() >= 2025, "ts is a date Node-RED reads: {log}");
    let predict = results("predict");
    assert_eq!(predict.len(), 1, "{log}");
    assert_eq!(predict[0]["status"], "ok", "{log}");
    // Asked over MQTT 5 with a Response Topic and Correlation Data: answered there, with them.
    assert_eq!(predict[0]["topic"], "replies/node-red/predict", "{log}");
    assert!(predict[0]["correlation"].is_string() && predict[0]["correlation"] == predict[0]["expected"], "{log}");
    let current = results("current");
    assert!(current.iter().any(|c| c["status"] == "IDLE") && current.iter().all(|c| c["year"].as_i64().unwrap_or(0) >= 2025), "{log}");
    assert!(!results("model").is_empty(), "{log}");
    assert!(!log.contains("Failed to parse JSON"), "Node-RED could not parse a payload:\n{log}");
    eprintln!(
        "Node-RED flow: train answered in {} ms, predict in {} ms; test {:.1} s",
        train[0]["ms"],
        predict[0]["ms"],
        t0.elapsed().as_secs_f64()
    );
}
