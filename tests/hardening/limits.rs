//! Parameters and damaged files: the configured thread budget is a ceiling, every numeric parameter has a
//! named range, a batch with a failed model is not a success, and one damaged model file or meta.json
//! neither breaks the other answers nor hides behind an older version.
use super::common::{Daemon, fleet};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(240);

fn setup(rows: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let state = d.path().join("state");
    fleet(&data, 1, rows);
    (d, data, state)
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

fn refused(d: &Daemon, body: Value) -> String {
    let r = d.post("/api/ml/train/batch", &body);
    assert_eq!(r.status, 400, "{body} was accepted: {}", r.text());
    r.json()["error"]["message"].as_str().unwrap().to_string()
}

/// `threads: 256` once ran 268 OS threads on a daemon configured for one; tiny and huge floats were taken.
#[test]
fn the_thread_budget_is_a_ceiling_and_every_number_has_a_named_range() {
    let (_d, data, state) = setup(2_000);
    // The harness configures training.threads = 1.
    let d = Daemon::start(&data, &state, &[]);
    let m = machine(&d);
    let msg = refused(&d, json!({ "machine_id": m, "model_types": ["anomaly"], "threads": 256 }));
    assert!(msg.contains("threads must be between 1 and 1") && msg.contains("training.threads"), "{msg}");
    for (field, value, range) in [
        ("horizon_hours", 1e308, "between 1 and 87600 hours"),
        ("horizon_hours", 1e-300, "between 1 and 87600 hours"),
        ("contamination", 1e-300, "at least 0.001 and below 0.5"),
        ("forecast_hours", 1e-300, "between 1 and 336 hours"),
        ("time_limit_per_model", 0.0001, "between 1 and"),
    ] {
        let msg = refused(&d, json!({ "machine_id": m, "model_types": ["anomaly"], field: value }));
        assert!(msg.contains(range), "{field} = {value}: {msg}");
    }
    let ok = d.post(
        "/api/ml/train/batch",
        &json!({ "machine_id": m, "model_types": ["anomaly"], "threads": 1, "contamination": 0.001, "forecast_hours": 336 }),
    );
    assert_eq!(ok.status, 202, "the ends of each range are accepted: {}", ok.text());
    d.wait_task(ok.json()["task_id"].as_str().unwrap(), LONG);
}

fn model_dir(state: &Path, m: &str, t: &str, v: u32) -> PathBuf {
    state.join("models").join(m).join(t).join(format!("v{v}"))
}

fn train(d: &Daemon, body: Value) -> Value {
    let r = d.post("/api/ml/train/batch", &body);
    assert_eq!(r.status, 202, "{}", r.text());
    d.wait_task(r.json()["task_id"].as_str().unwrap(), LONG)
}

/// A horizon longer than every life makes every row "fails soon" (one class): that batch once said SUCCESS.
/// Then: one damaged model file once turned the whole predict answer into a 500 and was served by download;
/// a damaged meta.json silently made the older version live.
#[test]
fn failed_batches_fail_and_damaged_models_are_named_not_hidden() {
    let (_d, data, state) = setup(3_000);
    let d = Daemon::start(&data, &state, &[]);
    let m = machine(&d);

    let end = train(&d, json!({ "machine_id": m, "model_types": ["classification", "anomaly"], "horizon_hours": 87_600 }));
    assert_eq!(end["status"], "FAILURE", "a batch with a failed model is not a success: {end}");
    let err = end["error"].as_str().unwrap();
    assert!(err.contains("classification:") && err.contains("1 of 2 models failed; anomaly trained and live"), "{err}");
    assert_eq!(end["progress"]["models"]["anomaly"]["status"], "SUCCESS", "{end}");
    assert_eq!(end["progress"]["models"]["classification"]["status"], "FAILURE", "{end}");

    let end = train(&d, json!({ "machine_id": m, "model_types": ["anomaly", "timeseries"] }));
    assert_eq!(end["status"], "SUCCESS", "{end}");
    // anomaly now has v1 and v2, timeseries v1. Flip one byte in the middle of the live anomaly model file
    // before anything loaded it (a model already loaded keeps answering from memory, as it should).
    let file = model_dir(&state, &m, "anomaly", 2).join("model.mwm");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();

    let p = d.post(&format!("/api/ml/predict/{m}"), &json!({}));
    assert_eq!(p.status, 200, "one damaged model must not fail the others: {}", p.text());
    let p = p.json();
    assert_eq!(p["predictions"]["anomaly"]["damaged"], true, "{}", p["predictions"]["anomaly"]);
    assert!(p["predictions"]["anomaly"]["error"].as_str().unwrap().contains("damaged"), "{p}");
    assert!(p["predictions"]["timeseries"]["answer"].is_object(), "{p}");
    assert_eq!(p["damaged_models"], json!(["anomaly"]));
    assert_eq!(p["complete_system"], false);

    let dl = d.get(&format!("/api/ml/models/{m}/anomaly/download"));
    assert_eq!(dl.status, 409, "a file that fails its checksum is not served: {}", dl.text());
    assert_eq!(dl.json()["error"]["code"], "model_damaged");
    assert!(!dl.text().contains(&*state.to_string_lossy()), "no device path in the answer: {}", dl.text());
    assert_eq!(d.get(&format!("/api/ml/models/{m}/anomaly/download?version=1")).status, 200, "the intact older version still downloads");

    // A damaged meta.json of the newest timeseries version: the older one answers, and the listings say so.
    let end = train(&d, json!({ "machine_id": m, "model_types": ["timeseries"] }));
    assert_eq!(end["status"], "SUCCESS", "{end}");
    std::fs::write(model_dir(&state, &m, "timeseries", 2).join("meta.json"), b"{ \"version\": 2, trunc").unwrap();
    let models = d.get(&format!("/api/ml/models/{m}")).json();
    let damaged = &models["damaged"]["timeseries"][0];
    assert_eq!(damaged["version"], 2, "{models}");
    assert_eq!(damaged["newer_than_live"], true, "{models}");
    assert!(damaged["reason"].as_str().unwrap().contains("meta.json"), "{models}");
    assert_eq!(models["models"]["timeseries"][0]["version"], 1, "{models}");
    let all = d.get("/api/ml/models").json();
    assert_eq!(all["damaged"][&m]["timeseries"][0]["version"], 2, "{all}");
    let detail = d.get(&format!("/api/ml/models/{m}/timeseries")).json();
    assert_eq!(detail["damaged"][0]["version"], 2, "{detail}");
}
