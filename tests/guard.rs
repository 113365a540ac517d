//! The resource guard against a real daemon: fake /sys and /proc trees (written as files under
//! `guard.sysfs_root`) drive the temperature and memory numbers; disk and the daemon's RSS are real.
mod common;
use common::sysfs::{Bench, put, set_meminfo, set_temp};
use common::{Daemon, fleet};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(300);

fn start(b: &Bench, env: &[(&str, &str)]) -> Daemon {
    let mut all = b.guard_env().to_vec();
    all.extend_from_slice(env);
    Daemon::start(&b.data, &b.state, &all)
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

fn submit(d: &Daemon, body: Value) -> String {
    let r = d.post("/api/ml/train/batch", &body);
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["task_id"].as_str().unwrap().to_string()
}

fn task(d: &Daemon, id: &str) -> Value {
    d.get(&format!("/api/ml/tasks/{id}")).json()
}

fn guard(d: &Daemon) -> Value {
    d.get("/api/health").json()["guard"].clone()
}

/// Polls until `f` holds for the task, panicking after `limit`; returns the task.
fn wait_for(d: &Daemon, id: &str, limit: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v = task(d, id);
        if f(&v) {
            return v;
        }
        assert!(t0.elapsed() < limit, "{what}: task still {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The deterministic parts of a saved model's report (timings and dates differ between runs).
fn report_core(d: &Daemon, m: &str, t: &str, version: u64) -> Value {
    let r = d.get(&format!("/api/ml/models/{m}/{t}?version={version}")).json()["report"].clone();
    let board: Vec<Value> =
        r["leaderboard"].as_array().unwrap().iter().map(|row| json!([row["model"], row["validation_score"], row["chosen"]])).collect();
    json!({ "headline": r["headline"], "metrics": r["metrics"], "baseline": r["baseline"], "confusion": r["confusion"], "features": r["feature_importance"], "samples": r["samples"], "leaderboard": board })
}

#[test]
fn a_heat_spike_pauses_a_batch_visibly_and_the_result_equals_an_unpaused_run() {
    let b = Bench::new(30_000);
    set_temp(&b.root, 50.0);
    let d = start(&b, &[]);
    let m = machine(&d);
    assert_eq!(guard(&d)["temperature_c"], 50.0);
    let body = json!({ "machine_id": m, "model_types": ["classification", "regression"], "seed": 7 });
    let hot = submit(&d, body.clone());
    d.wait_running(&hot, LONG);

    // Sample progress in the background for the whole run: it must never go backwards.
    let addr = d.addr;
    let hot_id = hot.clone();
    let sampler = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let v = common::request(addr, "GET", &format!("/api/ml/tasks/{hot_id}"), None, &[]).json();
            seen.push((
                v["progress"]["progress_percent"].as_f64().unwrap_or(0.0),
                v["progress"]["stage"].as_str().unwrap_or("").to_string(),
            ));
            if ["SUCCESS", "FAILURE", "REVOKED"].contains(&v["status"].as_str().unwrap_or("")) {
                return (seen, v);
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    });

    set_temp(&b.root, 80.0);
    let paused = wait_for(&d, &hot, Duration::from_secs(20), "the job never paused", |v| v["progress"]["stage"] == "paused: SoC 80 °C");
    assert_eq!(paused["status"], "PROGRESS");
    let g = guard(&d);
    assert_eq!(g["state"], "paused", "{g}");
    assert_eq!(g["reason"], "SoC 80 °C", "{g}");
    assert_eq!(g["temperature_c"], 80.0);
    assert_eq!(d.get("/api/health").json()["running"]["stage"], "paused: SoC 80 °C");
    let held_at = paused["progress"]["progress_percent"].as_f64().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let still = task(&d, &hot);
    assert_eq!(still["progress"]["stage"], "paused: SoC 80 °C", "still paused while hot");
    assert_eq!(still["progress"]["progress_percent"].as_f64().unwrap(), held_at, "no training happens while paused");

    // Between the thresholds nothing changes (hysteresis); below temp_resume_c it resumes.
    set_temp(&b.root, 70.0);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(task(&d, &hot)["progress"]["stage"], "paused: SoC 80 °C");
    set_temp(&b.root, 60.0);
    wait_for(&d, &hot, Duration::from_secs(20), "the job never resumed", |v| {
        !v["progress"]["stage"].as_str().unwrap_or("").starts_with("paused")
    });
    assert_eq!(guard(&d)["state"], "ok");

    let (seen, end) = sampler.join().unwrap();
    assert_eq!(end["status"], "SUCCESS", "{end}");
    assert!(seen.windows(2).all(|w| w[1].0 >= w[0].0), "progress went backwards: {seen:?}");
    assert!(seen.iter().any(|(_, s)| s == "paused: SoC 80 °C"));
    let log = d.log();
    assert!(log.contains("SoC too hot") && log.contains("SoC cooled down"), "{log}");

    // The same request without a pause gives the same models.
    let cool = submit(&d, body);
    assert_eq!(d.wait_task(&cool, LONG)["status"], "SUCCESS");
    for t in ["classification", "regression"] {
        let (a, b2) = (report_core(&d, &m, t, 1), report_core(&d, &m, t, 2));
        assert!(a["metrics"].is_object(), "{a}");
        assert_eq!(a, b2, "{t}: a paused run must train exactly the same model");
    }
}

#[test]
fn a_pause_longer_than_pause_max_fails_the_job_with_a_clear_message() {
    let b = Bench::new(30_000);
    set_temp(&b.root, 50.0);
    let d = start(&b, &[("MILLWRIGHT_GUARD__PAUSE_MAX_S", "1")]);
    let id = submit(&d, json!({ "machine_id": machine(&d), "model_types": ["classification", "regression"] }));
    d.wait_running(&id, LONG);
    set_temp(&b.root, 82.0);
    let end = wait_for(&d, &id, Duration::from_secs(30), "the job was not failed", |v| v["status"] == "FAILURE");
    let err = end["error"].as_str().unwrap();
    assert!(err.contains("paused for heat") && err.contains("guard.pause_max_s = 1 s") && err.contains("SoC 82 °C"), "{err}");
    assert_eq!(end["progress"]["stage"], "failure");
    assert!(end["progress"]["models"].as_object().unwrap().values().any(|m| m["status"] == "FAILURE"), "{end}");
    // Still hot: the next job waits for cooling instead of starting into a pause.
    let next = submit(&d, json!({ "machine_id": machine(&d), "model_types": ["anomaly"] }));
    let waiting = wait_for(&d, &next, Duration::from_secs(10), "no waiting reason", |v| v["waiting_reason"].is_string());
    assert!(waiting["waiting_reason"].as_str().unwrap().contains("waiting for the SoC to cool"), "{waiting}");
    set_temp(&b.root, 40.0);
    assert_eq!(d.wait_task(&next, LONG)["status"], "SUCCESS");
}

#[test]
fn no_thermal_zone_reads_unknown_and_jobs_run() {
    let b = Bench::new(3_000);
    let d = start(&b, &[]);
    let g = guard(&d);
    assert_eq!(g["temperature"], "unknown", "{g}");
    assert_eq!(g["temperature_c"], Value::Null);
    assert_eq!(g["throttled"], "unknown");
    assert_eq!(g["sd_card"], "unknown");
    assert_eq!(g["memory"]["available_mb"], Value::Null);
    assert_eq!(g["state"], "ok");
    assert!(g["disk"][0]["free_mb"].as_u64().unwrap() > 0, "{g}");
    assert_eq!(g["limits"]["temp_pause_c"], 75.0);
    let id = submit(&d, json!({ "machine_id": machine(&d), "model_types": ["anomaly"] }));
    assert_eq!(d.wait_task(&id, LONG)["status"], "SUCCESS");
}

#[test]
fn health_shows_throttling_the_sd_counter_and_the_cgroup() {
    let b = Bench::new(3_000);
    set_temp(&b.root, 55.5);
    put(&b.root, "sys/devices/platform/soc/soc:firmware/get_throttled", "50005\n");
    put(&b.root, "sys/class/hwmon/hwmon3/name", "rpi_volt\n");
    put(&b.root, "sys/class/hwmon/hwmon3/in0_lcrit_alarm", "0\n");
    put(&b.root, "sys/block/mmcblk0/stat", "4190 1393 311750 2203 1201 1622 52472 9570 0 5880 11773 0 0 0 0\n");
    set_meminfo(&b.root, 3_800, 2_900);
    put(&b.root, "proc/self/cgroup", "0::/system.slice/millwright.service\n");
    put(&b.root, "sys/fs/cgroup/system.slice/millwright.service/memory.max", "1073741824\n");
    put(&b.root, "sys/fs/cgroup/system.slice/millwright.service/memory.high", "max\n");
    put(&b.root, "sys/fs/cgroup/system.slice/millwright.service/memory.current", "104857600\n");
    put(&b.root, "sys/fs/cgroup/system.slice/millwright.service/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
    let d = start(&b, &[]);
    let g = guard(&d);
    assert_eq!(g["temperature"], "55.5 °C", "{g}");
    assert_eq!(g["throttled"]["raw"], "0x50005");
    assert_eq!(g["throttled"]["now"]["under_voltage"], true);
    assert_eq!(g["throttled"]["now"]["frequency_capped"], false);
    assert_eq!(g["throttled"]["since_boot"]["throttled"], true);
    assert_eq!(g["throttled"]["summary"], "under-voltage, throttled");
    assert_eq!(g["under_voltage_alarm"], false);
    assert_eq!(g["sd_card"]["write_sectors"], 52472);
    assert_eq!(g["memory"]["total_mb"], 3800.0);
    assert_eq!(g["memory"]["cgroup"]["max_mb"], 1024.0);
    assert_eq!(g["memory"]["ceiling_mb"], 1024.0);
    assert_eq!(g["memory"]["headroom_mb"], 924.0);
    assert!(g["memory"]["daemon_rss_mb"].as_f64().unwrap() > 1.0);
    assert_eq!(g["limits"]["memory_abort_effective_mb"], 768, "1024 MB cgroup limit minus the 256 MB reserve");
}

#[test]
fn a_job_that_does_not_fit_now_waits_with_numbers_and_starts_when_memory_frees() {
    let b = Bench::new(20_000);
    set_meminfo(&b.root, 8_000, 100);
    let d = start(&b, &[]);
    let id = submit(&d, json!({ "machine_id": machine(&d) }));
    let v = wait_for(&d, &id, Duration::from_secs(20), "no waiting reason", |v| v["waiting_reason"].is_string());
    assert_eq!(v["status"], "PENDING");
    let reason = v["waiting_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("waiting for memory: the job needs about ")
            && reason.contains("100 MB are available")
            && reason.contains("256 MB"),
        "{reason}"
    );
    let g = guard(&d);
    assert_eq!(g["state"], "refusing", "{g}");
    assert_eq!(g["reason"], reason);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(task(&d, &id)["status"], "PENDING", "it keeps waiting while memory is short");
    set_meminfo(&b.root, 8_000, 6_000);
    let end = d.wait_task(&id, LONG);
    assert_eq!(end["status"], "SUCCESS", "{end}");
    assert_eq!(guard(&d)["state"], "ok");
}

#[test]
fn a_job_that_waits_longer_than_wait_max_fails_with_the_reason() {
    let b = Bench::new(3_000);
    set_meminfo(&b.root, 8_000, 50);
    let d = start(&b, &[("MILLWRIGHT_GUARD__WAIT_MAX_S", "1")]);
    let id = submit(&d, json!({ "machine_id": machine(&d), "model_types": ["anomaly"] }));
    let end = d.wait_task(&id, Duration::from_secs(20));
    assert_eq!(end["status"], "FAILURE", "{end}");
    let err = end["error"].as_str().unwrap();
    assert!(err.contains("after waiting") && err.contains("guard.wait_max_s = 1") && err.contains("50 MB are available"), "{err}");
    assert_eq!(end["progress"]["models"]["anomaly"]["status"], "SKIPPED");
    assert_eq!(end["started_at"], Value::Null, "it never started");
}

#[test]
fn a_job_that_could_never_fit_is_refused_with_503_and_the_numbers() {
    let b = Bench::new(20_000);
    set_meminfo(&b.root, 8_000, 7_000);
    put(&b.root, "proc/self/cgroup", "0::/system.slice/millwright.service\n");
    let cg = "sys/fs/cgroup/system.slice/millwright.service";
    put(&b.root, &format!("{cg}/memory.max"), &format!("{}\n", 280u64 << 20));
    put(&b.root, &format!("{cg}/memory.current"), &format!("{}\n", 30u64 << 20));
    let d = start(&b, &[]);
    let m = machine(&d);
    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": m }));
    assert_eq!(r.status, 503, "{}", r.text());
    let e = r.json()["error"].clone();
    assert_eq!(e["code"], "insufficient_resources");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("cgroup memory limit is 280 MB") && msg.contains("256 MB"), "{msg}");
    let n = &e["details"];
    assert_eq!(n["ceiling_mb"], 280);
    assert_eq!(n["memory_reserve_mb"], 256);
    assert_eq!(n["rows"], 20_000);
    assert!(n["estimate_mb"].as_u64().unwrap() + 256 > 280, "{n}");
    assert_eq!(d.get("/api/ml/tasks").json()["tasks"].as_array().unwrap().len(), 0, "nothing was queued");
    // A smaller job (the forecaster alone needs far less) fits under the same limit.
    let ok = d.post("/api/ml/train/timeseries", &json!({ "machine_id": m }));
    assert_eq!(ok.status, 202, "{}", ok.text());
}

#[test]
fn a_daemon_past_memory_abort_stops_the_job_as_failure_with_numbers() {
    let b = Bench::new(30_000);
    let d = start(&b, &[("MILLWRIGHT_GUARD__MEMORY_ABORT_MB", "1")]);
    let id = submit(&d, json!({ "machine_id": machine(&d), "model_types": ["classification", "regression"] }));
    let end = d.wait_task(&id, LONG);
    let end = if end["status"] == "REVOKED" {
        wait_for(&d, &id, Duration::from_secs(5), "REVOKED was not turned into FAILURE", |v| v["status"] == "FAILURE")
    } else {
        end
    };
    assert_eq!(end["status"], "FAILURE", "{end}");
    let err = end["error"].as_str().unwrap();
    assert!(err.contains("the daemon used") && err.contains("over its limit of 1 MB (guard.memory_abort_mb = 1)"), "{err}");
    assert_eq!(d.get("/api/ml/models").json()["machines"].as_object().map_or(0, |m| m.len()), 0, "no partial model is kept");
}

/// A disk below its reserve does not free itself: the submission is refused at once (503 with the reason
/// and numbers), not queued with 202 and failed a moment later; nothing is queued.
#[test]
fn a_job_that_would_eat_the_disk_reserve_is_refused_at_submission_with_numbers() {
    let b = Bench::new(3_000);
    let d = start(&b, &[("MILLWRIGHT_GUARD__DISK_RESERVE_MB", "1000000000")]);
    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": machine(&d), "model_types": ["anomaly"] }));
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "insufficient_resources", "{v}");
    let err = v["error"]["message"].as_str().unwrap();
    assert!(
        err.contains("not enough disk space")
            && err.contains("MB free for the state folder")
            && err.contains("guard.disk_reserve_mb keeps 1000000000 MB"),
        "{err}"
    );
    assert!(v["error"]["details"]["free_mb"].is_u64(), "{v}");
    assert!(!err.contains(&*b.state.to_string_lossy()), "no absolute path in an error: {err}");
    assert_eq!(d.get("/api/ml/tasks").json()["total"], 0, "nothing was queued");
}

/// The model types the estimate is checked for, the tree models first.
const TYPES: [&str; 4] = ["classification", "regression", "anomaly", "timeseries"];

/// The memory estimate against real runs: each training runs in a fresh child process (this test binary
/// again), so its peak memory is its own and not hidden by heap another test already grew.
#[test]
fn the_memory_estimate_covers_real_runs_without_wild_overestimates() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut lines = Vec::new();
    // Past 100,000 training rows the tree models bin their features as they compute them: 150,000 rows check
    // that part of the estimate.
    for (rows, types) in [(8_000usize, &TYPES[..]), (40_000, &TYPES[..]), (150_000, &TYPES[..2])] {
        let data = dir.path().join(format!("d{rows}"));
        fleet(&data, 1, rows);
        for &t in types {
            let out = std::process::Command::new(&exe)
                .args(["--exact", "estimate_child", "--ignored", "--nocapture", "--test-threads", "1"])
                .env("MILLWRIGHT_GUARD_ESTIMATE_CHILD", format!("{}|{t}", data.display()))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            let line = text
                .lines()
                .find(|l| l.contains("estimate vs measured"))
                .unwrap_or_else(|| panic!("the child did not measure: {text}"))
                .to_string();
            let nums: Vec<f64> = line.split("ESTIMATE ").nth(1).unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
            let (estimate, measured) = (nums[0], nums[1]);
            eprintln!("{line}");
            lines.push(line.clone());
            assert!(estimate >= measured, "the estimate is below a real run: {line}");
            assert!(estimate <= 3.0 * measured.max(4.0 * 1048576.0), "the estimate is more than 3x a real run: {line}");
        }
    }
    assert_eq!(lines.len(), 10);
}

#[test]
#[ignore = "run by the_memory_estimate_covers_real_runs_without_wild_overestimates in a process of its own"]
fn estimate_child() {
    use millwright::guard::estimate::{Shape, estimate_bytes};
    use millwright::ml::{ModelType, Quality, TrainContext, TrainParams};
    let Ok(arg) = std::env::var("MILLWRIGHT_GUARD_ESTIMATE_CHILD") else { return };
    let (data, t) = arg.split_once('|').unwrap();
    let data = Path::new(data);
    let t = ModelType::parse(t).unwrap();
    let id = std::fs::read_dir(data.join("machines")).unwrap().next().unwrap().unwrap().file_name().to_string_lossy().into_owned();
    let params = TrainParams { threads: 1, quality: Quality::Standard, ..TrainParams::default() };
    let before = millwright::util::rss_bytes().unwrap();
    let table = millwright::data::load_machine(data, &id).unwrap();
    let shape = Shape::of(&table, &millwright::data::grid::GridSetting::default());
    let estimate = estimate_bytes(&shape, &[t], Some(&params));
    let ctx = TrainContext::detached(Duration::from_secs(300), 1);
    millwright::ml::train(t, &table, &params, &ctx).unwrap();
    let measured = millwright::util::peak_rss_bytes().unwrap().saturating_sub(before);
    let mb = |b: u64| b as f64 / 1048576.0;
    println!(
        "estimate vs measured: {} rows x {} sensors, {t}: estimate {:.1} MB, measured {:.1} MB (x{:.2}) ESTIMATE {estimate} {measured}",
        shape.rows,
        shape.sensors.len(),
        mb(estimate),
        mb(measured),
        estimate as f64 / measured.max(1) as f64
    );
}
