//! The queue under pressure: full queue, cancel latency, kill -9 recovery, graceful shutdown, concurrent
//! clients, predictions switching version after a retrain, and the oversize warning.
mod common;
use common::{Daemon, fleet};
use serde_json::json;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(240);

fn setup(machines: usize, rows: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let state = d.path().join("state");
    fleet(&data, machines, rows);
    (d, data, state)
}

fn machine(d: &Daemon, i: usize) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][i]["machine_id"].as_str().unwrap().to_string()
}

fn submit(d: &Daemon, body: serde_json::Value) -> String {
    let r = d.post("/api/ml/train/batch", &body);
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["task_id"].as_str().unwrap().to_string()
}

fn tasks(d: &Daemon) -> Vec<serde_json::Value> {
    d.get("/api/ml/tasks").json()["tasks"].as_array().unwrap().clone()
}

#[test]
fn a_full_queue_refuses_with_429_and_says_how_many_wait() {
    let (_d, data, state) = setup(1, 30_000);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_QUEUE__CAPACITY", "2"), ("MILLWRIGHT_TRAINING__QUALITY", "best")]);
    let m = machine(&d, 0);
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..6 {
        let r = d.post("/api/ml/train/batch", &json!({ "machine_id": m }));
        match r.status {
            202 => accepted += 1,
            429 => {
                refused = Some(r.json());
                break;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    let body = refused.expect("the queue never refused");
    assert!(accepted >= 2, "accepted {accepted}");
    assert_eq!(body["error"]["code"], "queue_full");
    assert!(body["error"]["message"].as_str().unwrap().contains("full"));
    assert_eq!(body["error"]["details"]["ahead"], 2);
    for t in tasks(&d) {
        d.post(&format!("/api/ml/tasks/{}/cancel", t["task_id"].as_str().unwrap()), &json!({}));
    }
}

#[test]
fn cancel_pending_at_once_and_running_within_a_second() {
    let (_d, data, state) = setup(1, 30_000);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_TRAINING__QUALITY", "best")]);
    let m = machine(&d, 0);
    let running = submit(&d, json!({ "machine_id": m, "model_types": ["regression", "classification"] }));
    let pending = submit(&d, json!({ "machine_id": m }));
    let r = d.post(&format!("/api/ml/tasks/{pending}/cancel"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(d.get(&format!("/api/ml/tasks/{pending}")).json()["status"], "REVOKED");
    d.wait_running(&running, LONG);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let r = d.post(&format!("/api/ml/tasks/{running}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let end = d.wait_task(&running, Duration::from_secs(5));
    let latency = t0.elapsed();
    eprintln!("cancel latency of a running job: {latency:?}");
    assert_eq!(end["status"], "REVOKED", "{end}");
    assert!(latency < Duration::from_secs(1), "cancel took {latency:?}");
    assert_eq!(d.get("/api/ml/models").json()["machines"].as_object().map_or(0, |m| m.len()), 0, "no partial model is kept");
    assert_eq!(d.post(&format!("/api/ml/tasks/{running}/cancel"), &json!({})).status, 409);
}

#[test]
fn kill_9_mid_training_then_restart_marks_requeues_and_loses_nothing() {
    let (_d, data, state) = setup(1, 20_000);
    for (round, pause_ms) in [(0, 0u64), (1, 700), (2, 2500)].into_iter() {
        let mut d = Daemon::start(&data, &state, &[]);
        let m = machine(&d, 0);
        let ids: Vec<String> = (0..3).map(|_| submit(&d, json!({ "machine_id": m }))).collect();
        if pause_ms > 0 {
            d.wait_running(&ids[0], LONG);
        }
        std::thread::sleep(Duration::from_millis(pause_ms));
        d.kill9();
        let d = Daemon::start(&data, &state, &[]);
        let all = tasks(&d);
        for id in &ids {
            assert!(all.iter().any(|t| t["task_id"] == id.as_str()), "round {round}: job {id} was lost");
        }
        let first = all.iter().find(|t| t["task_id"] == ids[0].as_str()).unwrap();
        if pause_ms > 0 {
            assert_eq!(first["status"], "FAILURE", "round {round}: {first}");
        }
        if first["status"] == "FAILURE" {
            assert_eq!(first["error"], "interrupted by restart");
            assert!(all.iter().any(|t| t["requeued_from"] == ids[0].as_str()), "round {round}: interrupted job not requeued");
        }
        let running = all.iter().filter(|t| t["status"] == "STARTED" || t["status"] == "PROGRESS").count();
        assert!(running <= 1, "round {round}: {running} jobs running at once");
        for t in all.iter().filter(|t| t["status"] == "PENDING" || t["status"] == "STARTED" || t["status"] == "PROGRESS") {
            d.post(&format!("/api/ml/tasks/{}/cancel", t["task_id"].as_str().unwrap()), &json!({}));
        }
        drop(d);
    }
}

#[test]
fn sigterm_stops_within_ten_seconds_and_requeues_the_running_job() {
    let (_d, data, state) = setup(1, 30_000);
    let mut d = Daemon::start(&data, &state, &[("MILLWRIGHT_TRAINING__QUALITY", "best")]);
    let m = machine(&d, 0);
    let id = submit(&d, json!({ "machine_id": m }));
    d.wait_running(&id, LONG);
    let took = d.terminate();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let d = Daemon::start(&data, &state, &[]);
    let all = tasks(&d);
    let old = all.iter().find(|t| t["task_id"] == id.as_str()).unwrap();
    assert_eq!(old["status"], "FAILURE");
    assert_eq!(old["error"], "interrupted by shutdown");
    let copy = all.iter().find(|t| t["requeued_from"] == id.as_str()).expect("a fresh copy is queued");
    d.post(&format!("/api/ml/tasks/{}/cancel", copy["task_id"].as_str().unwrap()), &json!({}));
}

#[test]
fn twenty_concurrent_clients_are_accepted_or_cleanly_refused_and_run_one_at_a_time() {
    let (_d, data, state) = setup(4, 3_000);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_QUEUE__CAPACITY", "8")]);
    let machines: Vec<String> = (0..4).map(|i| machine(&d, i)).collect();
    let addr = d.addr;
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let m = machines[i % 4].clone();
            std::thread::spawn(move || {
                let body = json!({ "machine_id": m, "model_types": ["anomaly"] }).to_string();
                common::request(
                    addr,
                    "POST",
                    "/api/ml/train/batch",
                    Some(body.as_bytes()),
                    &[("Authorization", &format!("Bearer {}", common::TOKEN)), ("Content-Type", "application/json")],
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 202 || *s == 429), "{statuses:?}");
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!((8..=10).contains(&accepted), "{accepted} accepted of 20 with capacity 8 and one running");
    let t0 = Instant::now();
    loop {
        let all = tasks(&d);
        let running = all.iter().filter(|t| t["status"] == "STARTED" || t["status"] == "PROGRESS").count();
        assert!(running <= 1, "{running} jobs running at once");
        if all.iter().all(|t| ["SUCCESS", "FAILURE", "REVOKED"].contains(&t["status"].as_str().unwrap())) {
            assert_eq!(all.len(), accepted);
            assert!(all.iter().all(|t| t["status"] == "SUCCESS"), "{all:?}");
            break;
        }
        assert!(t0.elapsed() < LONG, "jobs still running");
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn predictions_switch_version_right_after_a_retrain_and_oversize_is_flagged() {
    let (_d, data, state) = setup(1, 3_000);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_MODELS__WARN_SIZE_MB", "0.001")]);
    let m = machine(&d, 0);
    let first = submit(&d, json!({ "machine_id": m, "model_types": ["anomaly"] }));
    let done = d.wait_task(&first, LONG);
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let res = &done["result"]["results"]["anomaly"];
    assert_eq!(res["oversize"], true, "{res}");
    assert!(res["warning"].as_str().unwrap().contains("warning limit"), "{res}");
    assert!(done["logs"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("WARNING")));
    assert_eq!(d.get(&format!("/api/ml/models/{m}/anomaly")).json()["versions"][0]["oversize"], true);
    assert!(d.log().contains("warning limit"), "the size warning is logged");
    let v1 = d.post(&format!("/api/ml/predict/{m}"), &json!({})).json();
    assert_eq!(v1["predictions"]["anomaly"]["version"], 1);
    let second = submit(&d, json!({ "machine_id": m, "model_types": ["anomaly"] }));
    assert_eq!(d.wait_task(&second, LONG)["status"], "SUCCESS");
    let v2 = d.post(&format!("/api/ml/predict/{m}"), &json!({})).json();
    assert_eq!(v2["predictions"]["anomaly"]["version"], 2, "predictions use the new model at once");
}
