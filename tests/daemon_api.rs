//! The real daemon on port 0 with a real sled store in a temp dir: every route, its errors, the queue,
//! cancel, crash recovery, concurrency, version switching and the size warning.
mod common;
use common::{Daemon, InProcess, TOKEN, fleet, get, post, request, sse, wait_task};
use serde_json::json;
use std::time::Duration;

const ROWS: usize = 4_000;
const LONG: Duration = Duration::from_secs(240);

fn setup(machines: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let state = d.path().join("state");
    fleet(&data, machines, ROWS);
    (d, data, state)
}

fn first_machine(d: &Daemon) -> String {
    let v = d.get("/api/ml/train/machines/available").json();
    v["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

#[test]
fn batch_of_four_with_live_progress_registry_download_predict_and_delete() {
    let (_d, data, state) = setup(2);
    let d = Daemon::start(&data, &state, &[]);
    let health = d.get("/api/health").json();
    assert_eq!(health["status"], "ok");
    let machines = d.get("/api/ml/train/machines/available").json();
    assert_eq!(machines["total"], 2);
    let m = machines["machines"][0]["machine_id"].as_str().unwrap().to_string();
    assert!(machines["machines"][0]["rows"].as_u64().unwrap() >= ROWS as u64);

    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": m }));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    assert_eq!(v["complete_system"], true);
    let id = v["task_id"].as_str().unwrap().to_string();

    // Live progress over SSE: monotonic, ends with SUCCESS.
    let events = sse(d.addr, &format!("/api/ml/tasks/{id}/events"), LONG);
    assert!(events.len() >= 3, "only {} events", events.len());
    let pcts: Vec<f64> = events.iter().map(|(_, e)| e["progress"]["progress_percent"].as_f64().unwrap()).collect();
    assert!(pcts.windows(2).all(|w| w[1] >= w[0]), "progress went backwards: {pcts:?}");
    let last = &events.last().unwrap().1;
    assert_eq!(last["status"], "SUCCESS", "{last}");

    let task = d.wait_task(&id, LONG);
    assert_eq!(task["progress"]["progress_percent"], 100.0);
    assert!(task["completed_at"].is_string() && task["started_at"].is_string());
    for t in ["classification", "regression", "anomaly", "timeseries"] {
        assert_eq!(task["progress"]["models"][t]["status"], "SUCCESS", "{t}: {}", task["progress"]["models"][t]);
        assert_eq!(task["result"]["results"][t]["version"], 1);
    }
    assert!(task["logs"].as_array().unwrap().len() > 4);

    let models = d.get(&format!("/api/ml/models/{m}")).json();
    assert_eq!(models["models"]["regression"][0]["version"], 1);
    let detail = d.get(&format!("/api/ml/models/{m}/classification")).json();
    assert!(detail["report"]["confusion"].is_object(), "{detail}");
    let all = d.get("/api/ml/models").json();
    assert!(all["machines"][&m]["anomaly"].is_object());

    let dl = d.get(&format!("/api/ml/models/{m}/anomaly/download"));
    assert_eq!(dl.status, 200);
    assert!(dl.header("content-disposition").unwrap().contains(&format!("{m}-anomaly-v1.mwm")));
    assert_eq!(&dl.body[..8], b"MWMODEL\0");

    let p = d.post(&format!("/api/ml/predict/{m}"), &json!({}));
    assert_eq!(p.status, 200, "{}", p.text());
    let p = p.json();
    assert_eq!(p["complete_system"], true);
    for t in ["classification", "regression", "anomaly", "timeseries"] {
        assert_eq!(p["predictions"][t]["version"], 1, "{t}: {}", p["predictions"][t]);
        assert!(p["predictions"][t]["answer"].is_object(), "{t}: {}", p["predictions"][t]);
    }
    assert!(p["predictions"]["regression"]["answer"]["rul_hours"].as_f64().unwrap() >= 0.0);
    assert!(!p["predictions"]["timeseries"]["answer"]["sensors"][0]["mean"].as_array().unwrap().is_empty());

    // Exports: the prediction as one value per row, a model's results as JSON and CSV.
    let csv = d.post(&format!("/api/ml/predict/{m}?format=csv"), &json!({}));
    assert_eq!((csv.status, csv.header("content-type")), (200, Some("text/csv; charset=utf-8")), "{}", csv.text());
    let text = csv.text();
    assert!(text.starts_with("model_type,version,sensor,timestamp,quantity,value\n"), "{text}");
    let rul = p["predictions"]["regression"]["answer"]["rul_hours"].as_f64().unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("\"regression\",\"1\",\"\",\"\",\"rul_hours\"") && l.contains(&format!("\"{rul}\""))),
        "{text}"
    );
    let steps = p["predictions"]["timeseries"]["answer"]["sensors"][0]["mean"].as_array().unwrap().len();
    assert!(text.lines().filter(|l| l.starts_with("\"timeseries\"") && l.contains("\"mean\"")).count() >= steps);
    assert_eq!(d.post(&format!("/api/ml/predict/{m}?format=xml"), &json!({})).status, 400);
    let rj = d.get(&format!("/api/ml/models/{m}/classification/results.json"));
    assert_eq!(rj.status, 200, "{}", rj.text());
    assert!(rj.header("content-disposition").unwrap().contains(&format!("{m}-classification-v1-results.json")));
    assert_eq!(rj.json()["report"]["metrics"], detail["report"]["metrics"]);
    let rc = d.get(&format!("/api/ml/models/{m}/classification/results.csv")).text();
    let f1 = detail["report"]["metrics"]["f1"].as_f64().unwrap();
    assert!(rc.starts_with("section,name,value\n") && rc.contains(&format!("\"metrics\",\"f1\",\"{f1}\"")), "{rc}");
    assert_eq!(d.get(&format!("/api/ml/models/{m}/classification/results.csv?version=9")).status, 404);

    let del = d.delete(&format!("/api/ml/models/{m}/anomaly?version=1"));
    assert_eq!(del.status, 200, "{}", del.text());
    let p = d.post(&format!("/api/ml/predict/{m}"), &json!({})).json();
    assert_eq!(p["missing_models"], json!(["anomaly"]));
    assert_eq!(d.get(&format!("/api/ml/models/{m}/anomaly")).status, 404);
}

#[test]
fn errors_have_one_shape_and_the_right_status() {
    let (_d, data, state) = setup(1);
    let d = Daemon::start(&data, &state, &[]);
    let m = first_machine(&d);
    let auth = format!("Bearer {TOKEN}");
    let h: &[(&str, &str)] = &[("Authorization", &auth), ("Content-Type", "application/json")];
    let cases: Vec<(u16, common::Resp)> = vec![
        (400, d.post_raw("/api/ml/train/batch", b"{not json", h)),
        (400, d.post_raw("/api/ml/train/batch", br#"{"machine_id": 5}"#, h)),
        (400, d.post("/api/ml/train/batch", &json!({ "machine_id": m, "model_types": ["magic"] }))),
        (400, d.post("/api/ml/train/batch", &json!({ "machine_id": m, "time_limit_per_model": -5 }))),
        (400, d.post("/api/ml/train/classification", &json!({ "machine_id": m, "surprise": 1 }))),
        (400, d.post("/api/ml/train/batch", &json!({ "machine_id": "../etc" }))),
        (400, d.post("/api/ml/train/batch", &json!({ "machine_id": "a/+/#" }))),
        (404, d.post("/api/ml/train/batch", &json!({ "machine_id": "no_such_machine" }))),
        (404, d.get("/api/ml/tasks/00000000-0000-0000-0000-000000000000")),
        (404, d.post("/api/ml/tasks/nope/cancel", &json!({}))),
        (400, d.get("/api/ml/models/%2e%2e")),
        (400, d.get("/api/ml/models/a+b")),
        (400, d.get(&format!("/api/ml/models/{m}/magic"))),
        (404, d.get(&format!("/api/ml/models/{m}/regression"))),
        (404, d.get("/api/no/such/route")),
        (400, d.get("/api/ml/tasks?status=SLEEPING")),
        (415, d.post_raw("/api/ml/train/batch", br#"{"machine_id": "x"}"#, &[("Authorization", &auth)])),
        (413, d.post_raw("/api/ml/train/batch", &vec![b' '; 2 * 1024 * 1024], h)),
        (401, request(d.addr, "POST", "/api/ml/train/batch", Some(br#"{"machine_id":"x"}"#), &[("Content-Type", "application/json")])),
        (
            401,
            request(
                d.addr,
                "POST",
                "/api/ml/train/batch",
                Some(br#"{"machine_id":"x"}"#),
                &[("Content-Type", "application/json"), ("Authorization", "Bearer wrong")],
            ),
        ),
        (401, request(d.addr, "DELETE", &format!("/api/ml/models/{m}/anomaly"), None, &[])),
        (401, request(d.addr, "POST", &format!("/api/ml/predict/{m}"), Some(b"{}"), &[])),
        (
            401,
            request(
                d.addr,
                "POST",
                &format!("/api/ml/train/batch?token={TOKEN}"),
                Some(br#"{"machine_id":"x"}"#),
                &[("Content-Type", "application/json")],
            ),
        ),
        (400, d.post(&format!("/api/ml/predict/{m}"), &json!({ "rows": [] }))),
        (400, d.post(&format!("/api/ml/predict/{m}"), &json!({ "rows": [{ "timestamp": "yesterday" }] }))),
    ];
    for (i, (want, r)) in cases.iter().enumerate() {
        assert_eq!(r.status, *want, "case {i}: {}", r.text());
        let v = r.json();
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "case {i}: {v}");
    }
    assert_eq!(d.get("/api/health").json()["status"], "ok", "the daemon survives every bad request");
}

#[test]
fn openapi_covers_every_route() {
    let (_d, data, state) = setup(1);
    let d = Daemon::start(&data, &state, &[]);
    let doc = d.get("/api/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/ml/train/classification",
        "/api/ml/train/regression",
        "/api/ml/train/anomaly",
        "/api/ml/train/timeseries",
        "/api/ml/train/batch",
        "/api/ml/tasks/{task_id}",
        "/api/ml/tasks/{task_id}/cancel",
        "/api/ml/tasks",
        "/api/ml/tasks/{task_id}/events",
        "/api/ml/train/machines/available",
        "/api/ml/models",
        "/api/ml/models/{machine_id}",
        "/api/ml/models/{machine_id}/{model_type}",
        "/api/ml/models/{machine_id}/{model_type}/download",
        "/api/ml/predict/{machine_id}",
        "/api/health",
        "/api/openapi.json",
        "/api/auth/login",
        "/api/auth/logout",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(paths["/api/ml/models/{machine_id}/{model_type}"]["delete"].is_object());
}

#[test]
fn login_cookie_and_generated_token_file() {
    let (_d, data, state) = setup(1);
    let d = Daemon::start_without_token(&data, &state);
    let token_path = state.join("token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(token.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!d.log().contains(token.trim()), "the token must never be logged");
    let bad = d.post_raw("/api/auth/login", br#"{"token":"nope"}"#, &[("Content-Type", "application/json")]);
    assert_eq!(bad.status, 401);
    let ok =
        d.post_raw("/api/auth/login", format!("{{\"token\":\"{}\"}}", token.trim()).as_bytes(), &[("Content-Type", "application/json")]);
    assert_eq!(ok.status, 200);
    let cookie = ok.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    let m = first_machine(&d);
    let r = request(
        d.addr,
        "POST",
        "/api/ml/train/anomaly",
        Some(format!("{{\"machine_id\":\"{m}\"}}").as_bytes()),
        &[("Content-Type", "application/json"), ("Cookie", pair)],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let out = d.post_raw("/api/auth/logout", b"", &[]);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_millwright"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn healthcheck_exit_codes_and_bad_config_is_refused_with_the_fix() {
    let (_d, data, state) = setup(1);
    let mut d = Daemon::start(&data, &state, &[]);
    let listen = d.addr.to_string();
    let ok = cli(&["healthcheck"], &[("MILLWRIGHT_LISTEN", &listen)]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    d.kill9();
    let down = cli(&["healthcheck", "--timeout", "1"], &[("MILLWRIGHT_LISTEN", &listen)]);
    assert_eq!(down.status.code(), Some(1));

    let bad = cli(&["serve"], &[("MILLWRIGHT_QUEUE__CAPACITY", "0"), ("MILLWRIGHT_STATE_DIR", state.to_str().unwrap())]);
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("queue.capacity") && msg.contains("between 1 and"), "{msg}");
    let typo = cli(&["serve"], &[("MILLWRIGHT_QUEUE__CAPACTY", "3")]);
    assert!(String::from_utf8_lossy(&typo.stderr).contains("did you mean"), "{}", String::from_utf8_lossy(&typo.stderr));

    let default = cli(&["config", "--print-default"], &[]);
    assert!(default.status.success());
    let text = String::from_utf8_lossy(&default.stdout);
    assert!(text.contains("[queue]") && text.contains("capacity = 16") && text.contains("warn_size_mb"), "{text}");
}

/// What the daemon's and the API's docs describe, for real: `daemon::start` and `daemon::run` in this process
/// on a port-0 listener, the API and the page behind one router, a job trained through it, and one shutdown
/// trigger stopping HTTP, the runner and the store within the grace period, the job kept.
#[test]
fn in_process_daemon_serves_api_and_page_and_stops_from_its_shutdown() {
    let (_d, data, state) = setup(1);
    let d = InProcess::start(&data, &state);
    let addr = d.addr;
    assert_eq!(get(addr, "/api/health").json()["status"], "ok");
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.header("content-security-policy").is_some_and(|v| v.starts_with("default-src 'none'")));
    // The page's misses and the router's own speak the API's one error shape.
    for path in ["/static/no-such-file.js", "/no/such/route"] {
        let r = get(addr, path);
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }

    let m = get(addr, "/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let r = post(addr, "/api/ml/train/anomaly", &json!({ "machine_id": m }));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    assert_eq!(wait_task(addr, &id, LONG)["status"], "SUCCESS");

    let took = d.stop();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(std::net::TcpStream::connect(addr).is_err(), "still listening after the shutdown");
    // The store was flushed and let go: it opens again in this process and holds the finished job. (The
    // guard's monitor lets go of the queue at its next reading, 0.2 s here.)
    let t0 = std::time::Instant::now();
    let store = loop {
        match millwright::store::SledStore::open(&state.join("jobs.sled")) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > Duration::from_secs(5) => panic!("the store is still held after the stop: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let (queue, _) = millwright::jobs::JobQueue::open(std::sync::Arc::new(store), 16, 200, false).unwrap();
    assert_eq!(queue.get(&id).map(|j| j.state), Some(millwright::jobs::JobState::Success));
}

/// Readings at 1 s on a daemon configured with a 10 s training grid: the job says what it aggregated,
/// every report carries it, and raw 1 s readings sent to predict get the answers the machine's own data gets.
#[test]
fn one_second_readings_train_on_the_configured_grid_and_predictions_take_raw_readings() {
    let d = tempfile::tempdir().unwrap();
    let (data, state) = (d.path().join("data"), d.path().join("state"));
    let opts = millwright::data::simulate::FleetOptions {
        out_dir: data.clone(),
        machines: 1,
        seed: 5,
        rows: 200_000,
        interval_s: 1.0,
        ..Default::default()
    };
    let m = millwright::data::simulate::simulate_fleet(&opts).unwrap()[0].id.to_string();
    let daemon = Daemon::start(&data, &state, &[("MILLWRIGHT_DATA__GRID", "10 s")]);
    let r = daemon.post("/api/ml/train/batch", &json!({ "machine_id": m, "horizon_hours": 1.0, "forecast_hours": 1.0 }));
    assert_eq!(r.status, 202, "{}", r.text());
    let task = daemon.wait_task(r.json()["task_id"].as_str().unwrap(), LONG);
    let logs = task["logs"].to_string();
    assert!(logs.contains("aggregated onto 10 s steps"), "{logs}");
    for t in ["classification", "regression", "anomaly", "timeseries"] {
        assert_eq!(task["progress"]["models"][t]["status"], "SUCCESS", "{t}: {}", task["progress"]["models"][t]);
        let report = &daemon.get(&format!("/api/ml/models/{m}/{t}")).json()["report"];
        let grid = &report["data"]["grid"];
        assert_eq!((grid["grid"]["step_s"].as_f64(), grid["raw_rows"].as_u64()), (Some(10.0), Some(200_000)), "{t}: {grid}");
        assert!(grid["rows"].as_u64().unwrap() <= 200_000 / 10 + 20, "{t}: {grid}");
        assert_eq!(report["data"]["interval_s"], 10.0, "{t}");
    }
    let own = daemon.post(&format!("/api/ml/predict/{m}"), &json!({}));
    assert_eq!(own.status, 200, "{}", own.text());
    let own = own.json();
    // The same readings, raw, as a client would send them: the current life's last 100 minutes at 1 s (feature
    // windows of 500 steps); fewer are refused in steps and hours.
    let table = millwright::data::load_machine(&data, &m).unwrap();
    let (_, life) = table.life_ranges().pop().unwrap();
    let start = life.end.saturating_sub(6000).max(life.start);
    let rows: Vec<serde_json::Value> = (start..life.end)
        .map(|i| {
            let mut row = serde_json::Map::new();
            row.insert("timestamp".into(), json!(table.timestamps[i]));
            for s in &table.sensors {
                row.insert(s.name.clone(), if s.values[i].is_finite() { json!(s.values[i]) } else { json!(null) });
            }
            serde_json::Value::Object(row)
        })
        .collect();
    let time_in_life_h = (table.timestamps[life.end - 1] - table.timestamps[life.start]) / 3600.0;
    let sent = daemon.post(&format!("/api/ml/predict/{m}"), &json!({ "rows": rows, "time_in_life_h": time_in_life_h }));
    assert_eq!(sent.status, 200, "{}", sent.text());
    let sent = sent.json();
    for (t, key) in [("classification", "failure_probability"), ("regression", "rul_hours"), ("anomaly", "anomaly_score")] {
        let (a, b) = (&own["predictions"][t]["answer"][key], &sent["predictions"][t]["answer"][key]);
        assert!(a.is_number() && a == b, "{t}: {a} from the machine's data vs {b} from the raw rows sent\n{}", sent["predictions"][t]);
    }
    assert_eq!(own["predictions"]["timeseries"]["answer"]["sensors"], sent["predictions"]["timeseries"]["answer"]["sensors"]);
    let short =
        daemon.post(&format!("/api/ml/predict/{m}"), &json!({ "rows": rows[rows.len() - 600..], "time_in_life_h": time_in_life_h })).json();
    let e = short["predictions"]["regression"]["error"].as_str().unwrap_or_default();
    assert!(e.contains("the model works on 10 s steps") && e.contains("h of readings"), "{short}");
}

/// A history file uploaded over HTTP: refused without the token, previewed with it, made into a machine that
/// trains. A file of the wrong kind, one that is no table, one over `data.max_file_mb`, a mapping the
/// reader refuses and a taken id each get their own answer and leave nothing behind.
#[test]
fn an_uploaded_history_file_becomes_a_machine_and_bad_uploads_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    let opts = millwright::data::simulate::FleetOptions {
        out_dir: data.clone(),
        machines: 1,
        seed: 11,
        rows: ROWS,
        format: millwright::data::write::Format::Csv,
        ..Default::default()
    };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_DATA__MAX_FILE_MB", "1")]);
    let m = first_machine(&d);
    let bearer = format!("Bearer {TOKEN}");
    let up = |name: &str, body: &[u8], auth: bool| {
        let hs: Vec<(&str, &str)> = if auth { vec![("Authorization", bearer.as_str())] } else { vec![] };
        d.post_raw(&format!("/api/uploads?filename={name}"), body, &hs)
    };
    let uploads = data.join(".uploads");
    let left = || std::fs::read_dir(&uploads).map(|r| r.count()).unwrap_or(0);
    let csv = std::fs::read(data.join("machines").join(&m).join("train.csv")).unwrap();
    assert!(csv.len() < 1 << 20, "the test file must fit data.max_file_mb = 1");

    assert_eq!(up("h.csv", &csv, false).status, 401);
    let r = up("h.xlsx", &csv, true);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (415, Some("unsupported_file")), "{}", r.text());
    let r = up("h.csv", b"timestamp,a\n1,\x00\x01", true);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("h.csv: "), "{}", r.text());
    let big: Vec<u8> = csv.iter().copied().cycle().take(2 << 20).collect();
    let r = up("big.csv", &big, true);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("data.max_file_mb"), "{}", r.text());
    assert_eq!(left(), 0, "refused uploads are not kept");

    let r = up("Press%207.csv", &csv, true);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let id = v["upload_id"].as_str().unwrap().to_string();
    let p = &v["preview"];
    let rows = p["rows"].as_u64().unwrap();
    assert!(rows > 100, "{p}");
    assert_eq!(p["guess"]["timestamp"], "timestamp", "{p}");
    assert_eq!(p["guess"]["rul"], "rul", "{p}");
    let sensors: Vec<String> = p["guess"]["sensors"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    assert!(sensors.len() >= 3 && !sensors.contains(&"rul".to_string()), "{p}");

    let make = |machine: &str, mapping: serde_json::Value| {
        d.post(&format!("/api/uploads/{id}/machine"), &json!({ "machine_id": machine, "mapping": mapping }))
    };
    let mut mapping = p["guess"].clone();
    mapping["label"] = json!(sensors[0]);
    let r = make("press-7", mapping);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (422, Some("bad_mapping")), "{}", r.text());
    let r = make(&m, p["guess"].clone());
    assert_eq!(r.status, 409, "{}", r.text());
    let r = make("../etc", p["guess"].clone());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(d.get("/api/ml/train/machines/available").json()["total"], 1, "nothing was made");

    let r = make("press-7", p["guess"].clone());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["rows"].as_u64(), Some(rows), "{}", r.text());
    assert_eq!(left(), 0, "the upload was moved into the machine");
    assert_eq!(make("press-8", p["guess"].clone()).status, 404, "an upload makes one machine");
    let listed = d.get("/api/ml/train/machines/available").json();
    let made =
        listed["machines"].as_array().unwrap().iter().find(|x| x["machine_id"] == "press-7").cloned().unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(made["rows"].as_u64(), Some(rows), "{made}");
    let task = d.post("/api/ml/train/regression", &json!({ "machine_id": "press-7" })).json();
    let done = d.wait_task(task["task_id"].as_str().unwrap(), LONG);
    assert_eq!(done["status"], "SUCCESS", "{done}");
}
