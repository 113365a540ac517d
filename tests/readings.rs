//! Readings in over HTTP against the real daemon: each bad row named and counted beside the good ones,
//! every acknowledged reading still there after `kill -9` at an arbitrary moment, and the readings reaching
//! the machine's history: its listing, training and the answers from its latest data.
//! Each test has its own fleet: the daemon writes readings into the machine's folder.
mod common;
use common::{Daemon, TOKEN};
use millwright::util::time::{format_timestamp, now_secs};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

fn post(d: &Daemon, machine: &str, body: &Value) -> (u16, Value) {
    let r = d.post_raw(
        &format!("/api/machines/{machine}/readings"),
        body.to_string().as_bytes(),
        &[("Authorization", &auth()), ("Content-Type", "application/json")],
    );
    (r.status, r.json())
}

/// Read without a token, as every read on the LAN.
fn stored(d: &Daemon, machine: &str) -> Value {
    let r = common::request(d.addr, "GET", &format!("/api/machines/{machine}/readings"), None, &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The fleet's machine, as the listing gives it, and its sensors, as the data folder's summary has them.
fn machine(d: &Daemon) -> (String, Vec<String>) {
    let r = common::request(d.addr, "GET", "/api/ml/train/machines/available", None, &[("Authorization", &auth())]).json();
    let id = r["machines"][0]["machine_id"].as_str().unwrap_or_else(|| panic!("{r}")).to_string();
    let summary = millwright::data::Summaries::new(&d.data_dir, millwright::data::Caps::default()).get(&id).unwrap();
    (id, summary.sensor_names)
}

fn row(t: f64, sensors: &[String], v: f64) -> Value {
    let mut r = json!({ "ts": format_timestamp(t) });
    for s in sensors {
        r[s] = json!(v);
    }
    r
}

#[test]
fn good_rows_are_stored_and_each_bad_row_is_named() {
    let state = tempfile::tempdir().unwrap();
    let data = state.path().join("data");
    common::fleet(&data, 1, 2_000);
    let d = Daemon::start(&data, &state.path().join("state"), &[]);
    let (id, sensors) = machine(&d);
    let t0 = (now_secs() - 3_600.0).floor();
    let body = json!([
        row(t0, &sensors, 1.0),
        { "ts": format_timestamp(t0 + 1.0), "no_such_sensor": 1 },
        row(t0 + 2.0, &sensors, 2.0),
        { "ts": format_timestamp(t0 + 3.0), sensors[0].clone(): "high" },
        { sensors[0].clone(): 1.0 },
        row(t0 + 4.0, &sensors, 3.0),
        row(now_secs() + 86_400.0, &sensors, 4.0),
    ]);
    let (status, v) = post(&d, &id, &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(3), Some(4)), "{v}");
    let rows: Vec<u64> = v["errors"].as_array().unwrap().iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![1, 3, 4, 6], "{v}");
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("unknown sensor \"no_such_sensor\""), "{v}");
    assert!(v["errors"][3]["error"].as_str().unwrap().contains("in the future"), "{v}");
    let s = stored(&d, &id);
    assert_eq!((s["rows"].as_u64(), s["first"].as_str()), (Some(3), Some(format_timestamp(t0).as_str())), "{s}");
    assert_eq!(s["sensors"].as_array().map(Vec::len), Some(sensors.len()), "{s}");
    assert!(d.log().contains("readings refused"), "refused rows are sampled to the log");

    // Nothing accepted: 422 with the same details; a body that is not rows: 400; no token: 401; no machine: 404.
    let (status, v) = post(&d, &id, &json!([{ "ts": format_timestamp(t0 + 5.0), "nope": 1 }]));
    assert_eq!(status, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("none of the 1 rows was accepted"), "{v}");
    let r = d.post_raw(&format!("/api/machines/{id}/readings"), b"{\"ts\": ", &[("Authorization", &auth())]);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("not JSON"), "{}", r.json());
    let r = d.post_raw(&format!("/api/machines/{id}/readings"), row(t0 + 6.0, &sensors, 1.0).to_string().as_bytes(), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(post(&d, "no_such_machine", &row(t0, &sensors, 1.0)).0, 404);
    assert_eq!(stored(&d, &id)["rows"].as_u64(), Some(3), "refused requests stored nothing");

    // The same as CSV: a header with the time and the sensors, an empty cell for a missing reading.
    let mut csv = format!("ts,{}\n", sensors.join(","));
    let cells = |v: &str| vec![v; sensors.len()].join(",");
    csv += &format!("{},{}\n", format_timestamp(t0 + 10.0), cells("5"));
    csv += &format!("{},{}\n", format_timestamp(t0 + 11.0), cells(""));
    csv += &format!("{},,{}\n", format_timestamp(t0 + 12.0), vec!["6"; sensors.len() - 1].join(","));
    let r =
        d.post_raw(&format!("/api/machines/{id}/readings"), csv.as_bytes(), &[("Authorization", &auth()), ("Content-Type", "text/csv")]);
    let v = r.json();
    assert_eq!((r.status, v["accepted"].as_u64(), v["rejected"].as_u64()), (200, Some(2), Some(1)), "{v}");
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("no sensor reading"), "{v}");
    assert_eq!(stored(&d, &id)["rows"].as_u64(), Some(5));
}

#[test]
fn every_acknowledged_reading_survives_kill_9() {
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state");
    let data = &state_dir.path().join("data");
    common::fleet(data, 1, 2_000);
    let mut d = Daemon::start(data, &state, &[]);
    let (id, sensors) = machine(&d);
    // Room for 20 runs of readings a second apart (the history ends more than two days ago).
    let mut next = (now_secs() - 40.0 * 3_600.0).floor();
    let mut acknowledged = 0u64;
    let mut runs_with_acks = 0u64;
    // The issue's power pull: 20 kills, each at another moment of a stream of acknowledged readings (the first
    // ones also while the start's compaction moves the log into the machine's files).
    for run in 0..20u64 {
        // A sender posting one reading after another while the daemon is killed under it.
        let stop = AtomicBool::new(false);
        let addr = d.addr;
        let (acked_rows, last_acked) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                let (mut n, mut last) = (0u64, None);
                let mut t = next;
                while !stop.load(Ordering::Relaxed) {
                    let (status, _) = common::try_request(
                        addr,
                        "POST",
                        &format!("/api/machines/{id}/readings"),
                        Some(&json!([row(t, &sensors, t % 100.0)]).to_string()),
                        Duration::from_secs(5),
                    );
                    if status != 200 {
                        break;
                    }
                    n += 1;
                    last = Some(t);
                    t += 1.0;
                }
                (n, last)
            });
            std::thread::sleep(Duration::from_millis(300 + (run * 397) % 1_050));
            d.kill9();
            stop.store(true, Ordering::Relaxed);
            sender.join().unwrap()
        });
        // A kill before the first answer is a moment too; the runs that had none are counted below.
        runs_with_acks += u64::from(acked_rows > 0);
        eprintln!("run {run}: {acked_rows} readings acknowledged one by one before kill -9");
        acknowledged += acked_rows;
        d = Daemon::start(data, &state, &[]);
        let s = stored(&d, &id);
        let rows = s["rows"].as_u64().unwrap();
        // At most the one reading in flight at the kill may be there unacknowledged.
        assert!(rows >= acknowledged && rows <= acknowledged + 1, "run {run}: {rows} rows stored, {acknowledged} acknowledged: {s}");
        let last = last_acked.map(format_timestamp);
        assert!(s["last"].as_str() >= last.as_deref(), "run {run}: last stored {} before last acknowledged {last:?}", s["last"]);
        assert_eq!(s["damaged"], json!([]), "{s}");
        acknowledged = rows;
        next = last_acked.unwrap_or(next) + 2.0;
    }
    assert!(runs_with_acks >= 15, "only {runs_with_acks} of 20 kills came after an acknowledged reading");
    // Each start moved the log's readings into the machine's files: every acknowledged reading is in them or
    // still pending in the log, none twice.
    // (The start's pass runs beside the requests: read when it is not moving anything.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (s, history) = loop {
        let before = stored(&d, &id);
        let history = millwright::data::load_machine(data, &id).unwrap().n_rows() as u64;
        if stored(&d, &id) == before && !before["compacted_until"].is_null() {
            break (before, history);
        }
        assert!(std::time::Instant::now() < deadline, "the start's compaction never settled: {before}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(history - 2_000 + s["pending"].as_u64().unwrap(), acknowledged, "{s}");
    // The newest time came back: a reading far older than it is refused after the restart.
    let (status, v) = post(&d, &id, &row(next - 3_600.0, &sensors, 1.0));
    assert_eq!(status, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("not after the machine's history"), "{v}");
}

/// The newest row of the machine's history files and its sensors' values there.
fn history_end(d: &Daemon, id: &str) -> (f64, Vec<f64>) {
    let t = millwright::data::load_machine(&d.data_dir, id).unwrap();
    let last = t.n_rows() - 1;
    (t.timestamps[last], t.sensors.iter().map(|s| s.values[last]).collect())
}

fn listed_rows(d: &Daemon) -> u64 {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["rows"].as_u64().unwrap()
}

#[test]
fn readings_reach_the_history_training_and_the_answers_from_the_latest_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::fleet(&data, 1, 2_000);
    // The cadence is an hour: only new readings in the machine's files make it score sooner.
    let d = Daemon::start(
        &data,
        &dir.path().join("state"),
        &[("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10"), ("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "3600")],
    );
    let (id, sensors) = machine(&d);
    let (end, values) = history_end(&d, &id);
    let before = listed_rows(&d);
    let task = d.post("/api/ml/train/batch", &json!({ "machine_id": id })).json();
    assert_eq!(d.wait_task(task["task_id"].as_str().unwrap(), Duration::from_secs(600))["status"], "SUCCESS");
    let start = |d: &Daemon| {
        let p = d.post(&format!("/api/ml/predict/{id}"), &json!({})).json();
        p["predictions"]["timeseries"]["answer"]["start"].as_str().unwrap_or_else(|| panic!("{p}")).to_string()
    };
    assert_eq!(start(&d), format_timestamp(end + 3_600.0), "the forecast starts after the history");

    // Two days of hourly readings continuing the history (the values of its last row, drifting a little),
    // and one stamped at the history's end, which is refused: it would land inside the past.
    let hours: u32 = 48;
    let mut rows = vec![{
        let mut r = json!({ "ts": format_timestamp(end) });
        r[&sensors[0]] = json!(values[0]);
        r
    }];
    for h in 1..=hours {
        let mut r = json!({ "ts": format_timestamp(end + f64::from(h) * 3_600.0) });
        for (s, v) in sensors.iter().zip(&values) {
            r[s] = json!(v * (1.0 + 0.001 * f64::from(h)));
        }
        rows.push(r);
    }
    let (status, v) = post(&d, &id, &json!(rows));
    assert_eq!((status, v["accepted"].as_u64(), v["rejected"].as_u64()), (200, Some(u64::from(hours)), Some(1)), "{v}");
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("not after the machine's history"), "{v}");

    // Within a compaction interval (10 s here) the readings are in the machine's files, but the last
    // order tolerance (60 s) of them: here the newest reading alone stays in the log.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let in_files = u64::from(hours) - 1;
    while listed_rows(&d) < before + in_files {
        assert!(std::time::Instant::now() < deadline, "readings never reached the listing: {}", stored(&d, &id));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(listed_rows(&d), before + in_files);
    let s = stored(&d, &id);
    assert_eq!(
        (s["pending"].as_u64(), s["compacted_until"].as_str()),
        (Some(1), Some(format_timestamp(end + f64::from(hours - 1) * 3_600.0).as_str())),
        "{s}"
    );
    assert!(d.log().contains("readings compacted into the machines' files"), "the move is logged");

    // Scored as soon as they are in the files, not at the cadence's next tick an hour away: the score history's
    // newest line forecasts from after the newest compacted reading.
    let scored_start = format_timestamp(end + f64::from(hours) * 3_600.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let scores = d.get(&format!("/api/machines/{id}/scores")).json();
        let newest = scores["scores"].as_array().and_then(|a| a.last()).cloned().unwrap_or_default();
        if newest["answers"]["timeseries"]["start"] == json!(scored_start) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new readings were not scored: {scores}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let evaluations = d.get("/api/health").json()["fleet"]["evaluations"].clone();
    assert!(evaluations["count"].as_u64() >= Some(1) && evaluations["last"]["rescored"].as_u64() >= Some(1), "{evaluations}");

    // The answers from the machine's latest data read them: the forecast starts after the newest compacted one.
    assert_eq!(start(&d), format_timestamp(end + f64::from(hours) * 3_600.0));
    // And the machine still trains, its unlabelled readings in the running life.
    let task = d.post("/api/ml/train/batch", &json!({ "machine_id": id })).json();
    let done = d.wait_task(task["task_id"].as_str().unwrap(), Duration::from_secs(600));
    assert_eq!(done["status"], "SUCCESS", "{done}");
}

#[test]
fn readings_files_older_than_the_retention_go_and_the_newest_stays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::fleet(&data, 1, 2_000);
    let id = millwright::data::machine_ids(&data).unwrap().remove(0);
    let machine_dir = millwright::data::machine_dir(&data, &millwright::data::MachineId::parse(&id).unwrap());
    let history: Vec<_> = std::fs::read_dir(&machine_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    // Three days of readings files as an earlier run compacted them: ten, nine and one day old.
    let now = now_secs().floor();
    let live = |first: f64| {
        let times_us: Vec<i64> = (0..600).map(|i| ((first + i as f64 * 60.0) * 1e6) as i64).collect();
        let a = times_us.iter().map(|t| (t / 60_000_000 % 50) as f64).collect();
        let rows = millwright::data::live::LiveRows { sensors: vec!["a".into()], times_us, values: vec![a] };
        millwright::data::live::write_live(&machine_dir, &rows).unwrap()
    };
    let (old1, old2, newest) = (live(now - 10.0 * 86_400.0), live(now - 9.0 * 86_400.0), live(now - 86_400.0));
    let d = Daemon::start(&data, &dir.path().join("state"), &[("MILLWRIGHT_READINGS__RETAIN_DAYS", "2")]);
    // The start's compaction pass applies the retention.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while old1.exists() || old2.exists() {
        assert!(std::time::Instant::now() < deadline, "files older than 2 days still there: {}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(newest.exists(), "the newest readings file stays");
    for name in &history {
        assert!(machine_dir.join(name).exists(), "{name:?}: the machine's own files are never removed");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !d.log().contains("old readings files removed") {
        assert!(std::time::Instant::now() < deadline, "the removal is not in the log: {}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log().contains("by_age=2"), "{}", d.log());
}

#[test]
fn readings_from_a_regime_the_training_data_never_had_show_as_drift_and_mark_the_models_stale() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::fleet(&data, 1, 2_000);
    let d = Daemon::start(
        &data,
        &dir.path().join("state"),
        &[("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10"), ("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "5")],
    );
    let (id, sensors) = machine(&d);
    let task = d.post("/api/ml/train/anomaly", &json!({ "machine_id": id })).json();
    assert_eq!(d.wait_task(task["task_id"].as_str().unwrap(), Duration::from_secs(600))["status"], "SUCCESS");
    let before = d.get(&format!("/api/machines/{id}/verdict")).json()["tile"].clone();
    // The history's own last rows: a life wearing towards its end, which the models were trained for.
    assert!(before["drift"]["level"] == "stable" || before["drift"]["level"] == "moderate", "{}", before["drift"]);
    assert_eq!(before["models_state"], "ok", "{before}");

    // 400 readings a minute apart: rows of the machine's own history, one sensor moved ten standard
    // deviations (a new operating regime, or a sensor swapped for one with another offset).
    let history = millwright::data::load_machine(&data, &id).unwrap();
    let moved = &sensors[0];
    let values = &history.sensors.iter().find(|s| &s.name == moved).unwrap().values;
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    let sd = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / finite.len() as f64).sqrt();
    let t0 = (now_secs() - 400.0 * 60.0).floor();
    let rows: Vec<Value> = (0..400)
        .map(|i| {
            let src = (i * 37) % history.n_rows();
            let mut r = json!({ "ts": format_timestamp(t0 + i as f64 * 60.0) });
            for s in &history.sensors {
                let v = s.values[src];
                r[&s.name] = if !v.is_finite() {
                    Value::Null
                } else if &s.name == moved {
                    json!(v + 10.0 * sd)
                } else {
                    json!(v)
                };
            }
            r
        })
        .collect();
    let (status, v) = post(&d, &id, &json!(rows));
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(400)), "{v}");

    // Judged once compaction moved them into the machine's files (every 10 s here; the last minute waits out
    // the order tolerance).
    let last_in_files = t0 + 397.0 * 60.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let tile = loop {
        let t = d.get(&format!("/api/machines/{id}/verdict")).json()["tile"].clone();
        if t["drift"]["to"].as_str().and_then(millwright::util::time::parse_timestamp) >= Some(last_in_files) {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the drift never reached the readings: {t}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let drift = &tile["drift"];
    assert_eq!(drift["level"], "large", "{drift}");
    assert_eq!(drift["sensors"][0]["sensor"], moved.as_str(), "the moved sensor drifted most: {drift}");
    assert_eq!(drift["sensors"][0]["level"], "large", "{drift}");
    assert!(drift["sensors"][0]["recent_median"].as_f64().unwrap() > drift["sensors"][0]["training_median"].as_f64().unwrap() + 5.0 * sd);
    let others: Vec<&Value> = drift["sensors"].as_array().unwrap().iter().skip(1).collect();
    assert!(others.iter().all(|s| s["level"] == "stable"), "the sensors replayed from the history do not drift: {drift}");
    assert!(drift["rows"].as_u64().unwrap() >= 300, "{drift}");
    assert_eq!(tile["models_state"], "models_stale", "{tile}");
    assert!(tile["stale_reason"].as_str().unwrap().contains(moved.as_str()), "{tile}");
    // The predictions carry the whole drift report.
    let p = d.post(&format!("/api/ml/predict/{id}"), &json!({})).json();
    assert_eq!(p["drift"]["level"], "large", "{}", p["drift"]);

    // Set to retrain on drift, the machine gets one scheduled job at the next evaluation, naming the sensor.
    let toml_path = data.join("machines").join(&id).join("machine.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(&toml_path, format!("{toml}\n[retrain]\nwhen = \"on drift\"\n")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let job = loop {
        if let Some(j) = job_of(&d, |j| j["origin"]["by"] == "schedule").first() {
            break j.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no retrain on drift within 60 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    };
    let reason = job["origin"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("large drift: ") && reason.contains(moved.as_str()), "{reason}");
    assert_eq!(job["model_types"].as_array().map(Vec::len), Some(4), "a retrain is of all four models: {job}");
}

#[test]
fn a_machine_the_daemon_does_not_know_is_made_from_its_first_readings_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::fleet(&data, 1, 500);
    let t0 = (now_secs() - 400.0 * 60.0).floor();
    // A slow wave and a small saw-tooth: something an anomaly model can learn.
    let rows: Vec<Value> = (0..400)
        .map(|i| {
            let x = f64::from(i);
            json!({ "ts": format_timestamp(t0 + x * 60.0), "temperature": 60.0 + (x / 40.0).sin() * 3.0, "vibration": 1.5 + ((x * 7.0) % 5.0) * 0.01 })
        })
        .collect();
    {
        let d = Daemon::start(&data, &dir.path().join("state"), &[]);
        let (status, v) = post(&d, "press-new", &json!(rows));
        assert_eq!(status, 404, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("create_machines = true"), "the refusal says how to allow it: {v}");
        assert!(!data.join("machines/press-new").exists(), "a refused machine leaves no folder");
    }
    let d = Daemon::start(
        &data,
        &dir.path().join("state"),
        &[("MILLWRIGHT_READINGS__CREATE_MACHINES", "true"), ("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10")],
    );
    let (status, v) = post(&d, "Press.7", &json!(rows[..1]));
    assert_eq!(status, 400, "an id that cannot be a machine is refused, never made: {v}");
    let (status, v) = post(&d, "press-new", &json!(rows[..399]));
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(399)), "{v}");
    assert!(d.log().contains("machine made from its first readings"), "the new machine is logged");
    let toml = std::fs::read_to_string(data.join("machines/press-new/machine.toml")).unwrap();
    assert!(toml.contains(r#"sensors = ["temperature", "vibration"]"#), "{toml}");
    // The next submission is checked against the new machine: a sensor its first readings did not have is named.
    let mut extra = rows[399].clone();
    extra["pressure"] = json!(2.0);
    let (status, v) = post(&d, "press-new", &json!([rows[399].clone(), extra]));
    assert_eq!((status, v["accepted"].as_u64(), v["rejected"].as_u64()), (200, Some(1), Some(1)), "{v}");
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("unknown sensor \"pressure\""), "{v}");

    // Listed with its rows once they are in its files (compaction every 10 s here).
    let listed = |d: &Daemon| {
        let r = common::request(d.addr, "GET", "/api/ml/train/machines/available", None, &[("Authorization", &auth())]).json();
        r["machines"].as_array().unwrap().iter().find(|m| m["machine_id"] == "press-new").cloned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = listed(&d).unwrap_or_else(|| panic!("the new machine is not listed"));
        // The last order tolerance (60 s) of readings before the newest waits in the log: 2 of the 400.
        if m["rows"].as_u64().unwrap_or(0) >= 398 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the readings never reached the new machine's files: {m}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let task = d.post("/api/ml/train/anomaly", &json!({ "machine_id": "press-new" })).json();
    let done = d.wait_task(task["task_id"].as_str().unwrap(), Duration::from_secs(300));
    assert_eq!(done["status"], "SUCCESS", "a machine made from readings trains its anomaly model: {done}");
}

/// `hours` hourly rows after `end`, every sensor at the history's last value.
fn hours_after(end: f64, sensors: &[String], values: &[f64], hours: u32) -> Vec<Value> {
    (1..=hours)
        .map(|h| {
            let mut r = json!({ "ts": format_timestamp(end + f64::from(h) * 3_600.0) });
            for (s, v) in sensors.iter().zip(values) {
                r[s] = json!(v);
            }
            r
        })
        .collect()
}

fn job_of(d: &Daemon, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
    let r = d.get("/api/ml/tasks").json();
    r["tasks"].as_array().unwrap_or_else(|| panic!("{r}")).iter().filter(|j| pick(j)).cloned().collect()
}

fn live_version(d: &Daemon, id: &str, t: &str) -> u64 {
    let v = d.get(&format!("/api/ml/models/{id}/{t}")).json();
    v["versions"].as_array().unwrap().iter().find(|x| x["live"] == true).unwrap_or_else(|| panic!("{v}"))["version"].as_u64().unwrap()
}

#[test]
fn new_data_retrains_on_schedule_once_and_a_version_a_person_pinned_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // CSV, so the test can spoil the training lives' files later with plain text edits.
    let opts = millwright::data::simulate::FleetOptions {
        out_dir: data.clone(),
        machines: 1,
        seed: 11,
        rows: 2_000,
        format: millwright::data::write::Format::Csv,
        ..Default::default()
    };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
    let d = Daemon::start(
        &data,
        &dir.path().join("state"),
        &[
            ("MILLWRIGHT_READINGS__COMPACT_INTERVAL_S", "10"),
            ("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", "5"),
            ("MILLWRIGHT_RETRAIN__MIN_GAP_H", "0"),
        ],
    );
    let (id, sensors) = machine(&d);
    let toml_path = data.join("machines").join(&id).join("machine.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(&toml_path, format!("{toml}\n[retrain]\nwhen = \"after 24 new hours of data\"\n")).unwrap();
    let task = d.post("/api/ml/train/batch", &json!({ "machine_id": id })).json();
    assert_eq!(d.wait_task(task["task_id"].as_str().unwrap(), Duration::from_secs(600))["status"], "SUCCESS");

    // A person rolls the anomaly model back to a version and pins it; the API refuses what it cannot mean.
    let pin = |body: &Value, token: bool| {
        let mut headers = vec![("Content-Type", "application/json")];
        let a = auth();
        if token {
            headers.push(("Authorization", &a));
        }
        let r = d.post_raw(&format!("/api/ml/models/{id}/anomaly/pin"), body.to_string().as_bytes(), &headers);
        (r.status, r.json())
    };
    assert_eq!(pin(&json!({ "version": 1 }), false).0, 401);
    assert_eq!(pin(&json!({ "version": 7 }), true).0, 404);
    assert_eq!(pin(&json!({ "version": "one" }), true).0, 400);
    let (status, v) = pin(&json!({ "version": 1, "reason": "keep the model the night shift knows" }), true);
    assert_eq!((status, v["pin"]["by"].as_str()), (200, Some("person")), "{v}");

    // Nothing is due before new data comes: two evaluations pass without a scheduled job.
    std::thread::sleep(Duration::from_secs(11));
    let scheduled = |d: &Daemon| job_of(d, |j| j["origin"]["by"] == "schedule");
    assert!(scheduled(&d).is_empty(), "{:?}", scheduled(&d));

    // 30 new hours of readings: once they are in the machine's files, one scheduled retrain of all four.
    let (end, values) = history_end(&d, &id);
    let rows = hours_after(end, &sensors, &values, 30);
    let (status, v) = post(&d, &id, &json!(rows));
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(30)), "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let job = loop {
        if let Some(j) = scheduled(&d).first() {
            break j.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled retrain within 120 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    };
    let id_of = job["task_id"].as_str().unwrap().to_string();
    let done = d.wait_task(&id_of, Duration::from_secs(600));
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(job["origin"]["reason"].as_str().unwrap().contains("hours of data newer than the live models"), "{job}");
    // The forecaster beside the live one on the held-out days after the live one's data: 30 new hours hold one.
    let c = &done["result"]["results"]["timeseries"]["metrics"]["champion"];
    assert_eq!((c["metric"].as_str(), c["rows"].as_u64()), (Some("mase"), Some(24)), "{c}");
    assert!(c["challenger"].as_f64().is_some_and(f64::is_finite) && c["champion"].as_f64().is_some_and(f64::is_finite), "{c}");
    assert!(d.log().contains("retrain queued: "), "the retrain and its reason are logged");
    // The retrain learned the new hours: two more evaluations queue nothing more.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(scheduled(&d).len(), 1, "one scheduled retrain for one reason");

    // Trained anew, the regression model is live; the anomaly model a person pinned still answers.
    assert_eq!(live_version(&d, &id, "regression"), 2);
    assert_eq!(live_version(&d, &id, "anomaly"), 1);
    let detail = d.get(&format!("/api/ml/models/{id}/anomaly")).json();
    assert_eq!(detail["pin"]["version"], 1, "{}", detail["pin"]);
    assert_eq!(detail["versions"].as_array().unwrap().len(), 2, "the scheduled anomaly model is kept beside it");
    // The new readings carry no failures, so the regression model learned from the same labelled rows and
    // scored the same on the same held-out rows: not worse, live. The comparison is in its report.
    let report = d.get(&format!("/api/ml/models/{id}/regression")).json()["report"].clone();
    let c = &report["champion"];
    assert_eq!(
        (c["champion_version"].as_u64(), c["metric"].as_str(), c["not_worse"].as_bool()),
        (Some(1), Some("rmse_hours"), Some(true)),
        "{c}"
    );
    assert_eq!(c["challenger"], c["champion"], "{c}");
    assert_eq!(c["challenger"].as_f64(), report["headline"]["value"].as_f64(), "the comparison scores the report's own test rows");
    // Unpinned, the newest answers.
    let r = d.delete(&format!("/api/ml/models/{id}/anomaly/pin"));
    assert_eq!(r.status, 200);
    assert_eq!(live_version(&d, &id, "anomaly"), 2);

    // A worse challenger: the training lives' sensors are scrambled (each column moved half the file along,
    // as a logger that wrote columns out of step would), the test lives stay. The next scheduled retrain
    // scores worse on the same held-out rows, is kept beside the live model and does not go live.
    let machine_dir = data.join("machines").join(&id);
    for name in ["train.csv", "val.csv"] {
        let path = machine_dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            assert_eq!(name, "val.csv", "the machine has its training lives in {path:?}");
            continue;
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let mut rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
        let half = rows.len() / 2;
        for (k, _) in header.iter().enumerate().filter(|(_, c)| sensors.iter().any(|s| s == *c)) {
            let column: Vec<String> = rows.iter().map(|r| r[k].clone()).collect();
            for (i, r) in rows.iter_mut().enumerate() {
                r[k] = column[(i + half) % column.len()].clone();
            }
        }
        let body: Vec<String> = std::iter::once(header.join(",")).chain(rows.iter().map(|r| r.join(","))).collect();
        std::fs::write(&path, body.join("\n") + "\n").unwrap();
    }
    let (end, _) = history_end(&d, &id);
    let rows = hours_after(end, &sensors, &values, 30);
    assert_eq!(post(&d, &id, &json!(rows)).1["accepted"].as_u64(), Some(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while scheduled(&d).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no second scheduled retrain within 120 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let second = scheduled(&d).into_iter().find(|j| j["task_id"] != job["task_id"]).unwrap();
    let done = d.wait_task(second["task_id"].as_str().unwrap(), Duration::from_secs(600));
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let r = &done["result"]["results"]["regression"];
    assert_eq!((r["version"].as_u64(), r["live"].as_bool()), (Some(3), Some(false)), "{r}");
    let c = &r["metrics"]["champion"];
    assert_eq!((c["champion_version"].as_u64(), c["not_worse"].as_bool()), (Some(2), Some(false)), "{c}");
    assert!(c["challenger"].as_f64().unwrap() > c["champion"].as_f64().unwrap(), "a higher RMSE: {c}");
    assert_eq!(live_version(&d, &id, "regression"), 2, "the better model goes on answering");
    let pin = &d.get(&format!("/api/ml/models/{id}/regression")).json()["pin"];
    assert_eq!((pin["version"].as_u64(), pin["by"].as_str()), (Some(2), Some("challenger")), "{pin}");
    assert!(done["logs"].as_array().unwrap().iter().any(|l| l.as_str().unwrap_or("").contains("kept but not live")), "{done}");
}
