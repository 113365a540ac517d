//! The fleet view and alerts on the real daemon: 200 machines in one request (one trained machine copied
//! 199 times, models included), a mixed fleet (trained, no models, stale data), the verdict route, the CSV
//! export, and a stale-data alert raised, acknowledged and cleared.
use super::common::{Daemon, fleet, request};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

// The MQTT harness is also loaded by `mqtt.rs`, privately; each test module keeps its own copy.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../common/mqtt.rs"]
mod harness;

const LONG: Duration = Duration::from_secs(240);

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// A copy of machine `src`'s data and live models under the id `dst` (model metadata names its machine).
fn clone_machine(data: &Path, state: &Path, src: &str, dst: &str) {
    copy_dir(&data.join("machines").join(src), &data.join("machines").join(dst));
    let models = state.join("models");
    copy_dir(&models.join(src), &models.join(dst));
    for t in ["classification", "regression", "anomaly", "timeseries"] {
        let type_dir = models.join(dst).join(t);
        for v in std::fs::read_dir(&type_dir).unwrap().flatten() {
            let meta = v.path().join("meta.json");
            if let Ok(text) = std::fs::read_to_string(&meta) {
                std::fs::write(&meta, text.replace(&format!("\"{src}\""), &format!("\"{dst}\""))).unwrap();
            }
        }
    }
}

/// Sets the time of every entry of a machine's folder (what "the newest data" is judged by).
fn touch(data: &Path, id: &str, when: &str) {
    for e in std::fs::read_dir(data.join("machines").join(id)).unwrap().flatten() {
        let ok = Command::new("touch").args(["-d", when]).arg(e.path()).status().unwrap().success();
        assert!(ok);
    }
}

fn tile<'a>(fleet: &'a Value, id: &str) -> &'a Value {
    fleet["machines"].as_array().unwrap().iter().find(|t| t["machine_id"] == id).unwrap_or_else(|| panic!("no tile for {id}: {fleet}"))
}

#[test]
fn fleet_of_200_in_one_fast_request_with_verdicts_stale_data_alerts_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    fleet(&data, 2, 3_000);
    let d = Daemon::start(&data, &state, &[]);
    let machines = d.get("/api/ml/train/machines/available").json();
    let ids: Vec<String> = machines["machines"].as_array().unwrap().iter().map(|m| m["machine_id"].as_str().unwrap().to_string()).collect();
    let (trained, bare) = (ids[0].clone(), ids[1].clone());
    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": trained }));
    assert_eq!(r.status, 202, "{}", r.text());
    let task = d.wait_task(r.json()["task_id"].as_str().unwrap(), LONG);
    assert_eq!(task["status"], "SUCCESS", "{task}");

    // The verdict of one machine: a severity on the one scale, a sentence, each answer weighed.
    let v = d.get(&format!("/api/machines/{trained}/verdict")).json();
    assert_eq!(v["verdict"]["state"], "fresh", "{v}");
    assert!(["ok", "watch", "plan", "act"].contains(&v["verdict"]["severity"].as_str().unwrap()), "{v}");
    assert!(!v["verdict"]["sentence"].as_str().unwrap().is_empty());
    assert_eq!(v["verdict"]["weighed"].as_array().unwrap().len(), 3, "{v}");
    // Predictions carry the same verdict; the model detail carries its grade in plant language.
    let p = d.post(&format!("/api/ml/predict/{trained}"), &json!({})).json();
    assert_eq!(p["verdict"]["severity"], v["verdict"]["severity"], "{p}");
    let detail = d.get(&format!("/api/ml/models/{trained}/classification")).json();
    assert!(["useful", "limited", "not_useful"].contains(&detail["report"]["quality"]["grade"].as_str().unwrap()), "{detail}");
    assert!(detail["report"]["quality"]["sentences"][0].as_str().unwrap().starts_with("catches "), "{detail}");
    assert_eq!(d.get("/api/machines/no_such_machine/verdict").status, 404);

    // 198 copies of the trained machine: 200 machines, 199 with four live models.
    for i in 0..198 {
        clone_machine(&data, &state, &trained, &format!("copy_{i:03}"));
    }
    touch(&data, "copy_000", "3 days ago");
    let t0 = Instant::now();
    let cold = d.get("/api/fleet");
    let cold_s = t0.elapsed().as_secs_f64();
    assert_eq!(cold.status, 200, "{}", cold.text());
    let t1 = Instant::now();
    let f = d.get("/api/fleet").json();
    let warm_s = t1.elapsed().as_secs_f64();
    eprintln!("GET /api/fleet with 200 machines: first {cold_s:.2} s (every model answers), then {warm_s:.3} s");
    assert_eq!(f["total"], 200);
    assert!(warm_s < 2.0, "a repeated fleet request took {warm_s:.2} s");

    let stale = tile(&f, "copy_000");
    assert_eq!(stale["state"], "stale_data", "{stale}");
    assert_eq!(stale["light"], "grey");
    assert!(stale["sentence"].as_str().unwrap().contains("3 days"), "{stale}");
    let none = tile(&f, &bare);
    assert_eq!(none["models_state"], "no_models", "{none}");
    assert_eq!(none["state"], "no_models");
    let live = tile(&f, "copy_001");
    assert_eq!(live["state"], "fresh", "{live}");
    assert_eq!(live["severity"], tile(&f, &trained)["severity"]);
    assert!(live["data_age_h"].as_f64().unwrap() < 1.0);
    assert!(live["models_age_h"].as_f64().unwrap() < 1.0);
    // Worst first.
    let ranks: Vec<u64> = f["machines"].as_array().unwrap().iter().map(|t| t["rank"].as_u64().unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");

    // The stale machine raised an alert; acknowledging needs the token and records who.
    let alerts = d.get("/api/alerts").json();
    let alert = alerts["alerts"].as_array().unwrap().iter().find(|a| a["machine_id"] == "copy_000" && a["kind"] == "stale_data").cloned();
    let alert = alert.unwrap_or_else(|| panic!("no stale-data alert: {alerts}"));
    let path = format!("/api/alerts/{}/ack", alert["id"]);
    assert_eq!(request(d.addr, "POST", &path, Some(b"{}"), &[("Content-Type", "application/json")]).status, 401);
    let bad = d.post("/api/alerts/abc/ack", &json!({}));
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("GET /api/alerts"));
    assert_eq!(d.post("/api/alerts/999999/ack", &json!({})).status, 404);
    assert_eq!(d.post(&path, &json!({ "by": "\u{7}" })).status, 400);
    let acked = d.post(&path, &json!({ "by": "Ana" }));
    assert_eq!(acked.status, 200, "{}", acked.text());
    assert_eq!(acked.json()["alert"]["acked_by"], "Ana");
    assert!(acked.json()["alert"]["acked_at"].as_str().unwrap().ends_with('Z'));
    // Fresh data clears it; it stays listed among all alerts.
    touch(&data, "copy_000", "now");
    let f = d.get("/api/fleet").json();
    assert_eq!(tile(&f, "copy_000")["state"], "fresh");
    let all = d.get("/api/alerts?all=true").json();
    let same = all["alerts"].as_array().unwrap().iter().find(|a| a["id"] == alert["id"]).unwrap();
    assert_eq!(same["status"], "cleared", "{same}");
    assert_eq!(same["acked_by"], "Ana");
    // Only the stale-data alert: the machine's latest reading is at its failure (RUL 0), so a verdict alert may
    // rightly stay.
    let open = d.get("/api/alerts").json();
    let left: Vec<&Value> =
        open["alerts"].as_array().unwrap().iter().filter(|a| a["machine_id"] == "copy_000" && a["kind"] == "stale_data").collect();
    assert!(left.is_empty(), "{left:?}");

    // CSV export: a header and one row per machine.
    let csv = d.get("/api/fleet.csv");
    assert_eq!(csv.status, 200);
    let text = csv.text();
    assert!(text.starts_with("machine_id,display_name,light,"), "{text}");
    assert_eq!(text.lines().count(), 201);
}

/// Over MQTT: the verdict and the active alerts of a machine as retained state under
/// `<base>/machines/<id>/`, with millisecond UTC timestamps, and the alert change as a bridge event.
#[test]
fn verdict_and_alerts_are_retained_on_mqtt_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    fleet(&data, 1, 2_000);
    let broker = harness::Broker::start(&dir.path().join("broker"));
    let url = broker.url();
    let d = Daemon::start(
        &data,
        &state,
        &[
            ("MILLWRIGHT_MQTT__ENABLED", "true"),
            ("MILLWRIGHT_MQTT__URL", &url),
            ("MILLWRIGHT_MQTT__NODE_ID", "fleet"),
            ("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "5"),
        ],
    );
    let id = d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": id, "model_types": ["classification", "regression"] }));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(d.wait_task(r.json()["task_id"].as_str().unwrap(), LONG)["status"], "SUCCESS");
    touch(&data, &id, "3 days ago");
    let base = "millwright/fleet";
    let sub = harness::Sub::connect(broker.port, &[&format!("{base}/machines/#"), &format!("{base}/bridge/event")]);
    // The background evaluation (every 5 s here) notices the stale data without any page open.
    let t0 = Instant::now();
    let alerts_topic = format!("{base}/machines/{id}/alerts");
    let verdict_topic = format!("{base}/machines/{id}/verdict");
    loop {
        let alerts = sub.on(&alerts_topic);
        let verdict = sub.on(&verdict_topic);
        let stale_verdict = verdict.last().is_some_and(|m| m.json()["state"] == "stale_data");
        if stale_verdict && alerts.last().is_some_and(|m| m.json()["active"] == 1) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no retained verdict and alerts; seen: {:?}",
            sub.all().iter().map(|m| m.topic.clone()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = sub.on(&verdict_topic).last().unwrap().json();
    let ts = v["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000Z".len(), "{ts}");
    let a = sub.on(&alerts_topic).last().unwrap().json();
    assert_eq!(a["alerts"][0]["kind"], "stale_data", "{a}");
    let events: Vec<Value> = sub.on(&format!("{base}/bridge/event")).iter().map(|m| m.json()).collect();
    assert!(events.iter().any(|e| e["type"] == "alert_raised" && e["data"]["machine_id"] == id.as_str()), "{events:?}");
    // A late subscriber gets both as retained state.
    let late = harness::Sub::connect(broker.port, &[&verdict_topic, &alerts_topic]);
    let t1 = Instant::now();
    while late.all().len() < 2 {
        assert!(t1.elapsed() < Duration::from_secs(10), "retained state missing: {:?}", late.all().len());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(late.all().iter().all(|m| m.retain));
}
