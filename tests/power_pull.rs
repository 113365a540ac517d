//! Power-pull: 20 runs of "start the daemon, submit 5 jobs, crash it, restart it on the same state folder",
//! each crash at a different kind of moment:
//! - right after the last submission was acknowledged (`kill -9`);
//! - mid-training, after a random delay (`kill -9`);
//! - during a job-store write: the daemon aborts itself at the N-th `store.before_flush`/`store.after_flush`
//!   or inside `fsx::write_atomic` (`fsx.before_rename`), through the `MILLWRIGHT_TEST_CRASH_AT` crash points
//!   of `src/util/failpoint.rs` — abort leaves the disk as `kill -9` does;
//! - during a model commit: at the N-th `registry.before_rename` (temp folder written, not renamed) or
//!   `registry.after_rename` (renamed, parent folder not yet synced).
//!
//! After each crash the restarted daemon must honour the recovery contract of `src/jobs/queue.rs` exactly:
//! the store opens; every acknowledged job id is there exactly once; a job that was running is FAILURE
//! "interrupted by restart" with exactly one fresh copy (`requeued_from`) queued, and nothing else is
//! failed, revoked or copied; no model folder is half written or hidden-but-listed (every version folder
//! loads as a bundle and the API lists exactly those); the requeued copies train to SUCCESS.
//!
//! Every run draws its moment from one printed seed; rerun a single one with
//! `MILLWRIGHT_POWER_PULL_SEED=<seed> cargo test --test power_pull <test name> -- --nocapture`.
mod common;
use common::{Daemon, shared_fleet, try_request};
use millwright::util::rng::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const JOBS: usize = 5;
/// Two types per job: two model commits per job for the registry points, while a job stays around a second.
const TYPES: [&str; 2] = ["anomaly", "classification"];
const ROWS: usize = 8_000;
const LONG: Duration = Duration::from_secs(120);
/// Five runs per kind of moment, four kinds: the 20 runs.
const RUNS_PER_KIND: u64 = 5;
const BASE_SEED: u64 = 0x6d69_6c6c_7772_6967;

#[derive(Clone, Copy, Debug)]
enum Kind {
    AfterSubmit,
    MidTraining,
    StoreWrite,
    ModelCommit,
}

/// What a run does, all drawn from its seed.
#[derive(Debug)]
enum Moment {
    /// kill -9 this long after the last 202.
    AfterSubmit { delay_ms: u64 },
    /// kill -9 this long after the first job shows progress.
    MidTraining { delay_ms: u64 },
    /// MILLWRIGHT_TEST_CRASH_AT=<point>:<n>.
    CrashPoint { point: &'static str, nth: u64 },
}

impl Moment {
    fn draw(kind: Kind, seed: u64) -> Moment {
        let mut rng = Rng::new(seed);
        let mut pick = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
        match kind {
            Kind::AfterSubmit => Moment::AfterSubmit { delay_ms: pick(0, 40) },
            Kind::MidTraining => Moment::MidTraining { delay_ms: pick(0, 4_000) },
            // Store flushes: 1 at start-up, 1 per submission, then per job 1 start + 2 per model + 1 finish.
            // From the 9th on, the crash falls in the runner's writes, after the submissions in practice.
            // The point comes from the seed's residue, so the five seeds of a kind cover every point (see `seeds`).
            Kind::StoreWrite => match seed % 3 {
                0 => Moment::CrashPoint { point: "store.before_flush", nth: pick(9, 6 + JOBS as u64 * 6) },
                1 => Moment::CrashPoint { point: "store.after_flush", nth: pick(9, 6 + JOBS as u64 * 6) },
                // write_atomic runs about three times per model commit (counter, bundle, meta).
                _ => Moment::CrashPoint { point: "fsx.before_rename", nth: pick(1, 3 * TYPES.len() as u64 * JOBS as u64 - 3) },
            },
            Kind::ModelCommit => {
                let point = if seed.is_multiple_of(2) { "registry.before_rename" } else { "registry.after_rename" };
                Moment::CrashPoint { point, nth: pick(1, (TYPES.len() * JOBS) as u64 - 2) }
            }
        }
    }
}

fn seeds(kind: Kind) -> Vec<u64> {
    if let Ok(s) = std::env::var("MILLWRIGHT_POWER_PULL_SEED") {
        let s = s.trim();
        let parsed = s.strip_prefix("0x").map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16));
        return vec![parsed.expect("MILLWRIGHT_POWER_PULL_SEED is a number (decimal or 0x hex)")];
    }
    let mut state = BASE_SEED ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // Residue i mod 6 makes run i pick point i mod 3 (store writes) and i mod 2 (model commits).
    (0..RUNS_PER_KIND)
        .map(|i| {
            let s = millwright::util::rng::splitmix64(&mut state);
            s - s % 6 + i % 6
        })
        .collect()
}

/// The demo fleet, made once for this test binary and only read by the daemons.
fn data_dir() -> &'static Path {
    shared_fleet(ROWS)
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

fn tasks(d: &Daemon) -> Vec<Value> {
    d.get("/api/ml/tasks").json()["tasks"].as_array().unwrap().clone()
}

fn status_of(t: &Value) -> &str {
    t["status"].as_str().unwrap_or("")
}

fn finished(t: &Value) -> bool {
    ["SUCCESS", "FAILURE", "REVOKED"].contains(&status_of(t))
}

/// Waits for an aborting daemon to die; false if it is still alive after `limit`.
fn wait_exit(d: &mut Daemon, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(Some(_)) = d.child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An abort may dump core where the core limit allows it (the daemon's working folder is ours): removed so
/// twenty crashes leave no litter.
fn remove_core_dump(pid: u32) {
    for name in [format!("core.{pid}"), "core".to_string()] {
        let p = PathBuf::from(&name);
        if p.is_file()
            && std::fs::metadata(&p).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(120))
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Everything under `state/models` that is not a committed version: hidden names (temp folders, temp files).
fn hidden_entries(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = state.join("models");
    for m in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for t in std::fs::read_dir(m.path()).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with('.') {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// No half-written model is visible: nothing hidden is left, every `v<N>` folder is complete (its bundle
/// loads and is of its type, its meta names it) and the API lists exactly those versions, newest live.
fn check_models(d: &Daemon, m: &str, ctx: &str) -> usize {
    let hidden = hidden_entries(&d.state_dir);
    assert!(hidden.is_empty(), "{ctx}: leftovers of an interrupted save are still there: {hidden:?}");
    let listed = d.get(&format!("/api/ml/models/{m}")).json();
    let mut total = 0;
    for t in TYPES {
        let dir = d.state_dir.join("models").join(m).join(t);
        let mut on_disk = BTreeSet::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "next_version" {
                continue;
            }
            let n: u32 = name
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{ctx}: unexpected entry {name} in {}", dir.display()));
            let v = e.path();
            for f in ["model.mwm", "meta.json", "report.json"] {
                assert!(v.join(f).is_file(), "{ctx}: {}/{f} is missing", v.display());
            }
            let (_, payload) = millwright::ml::model::Payload::load(&v.join("model.mwm"))
                .unwrap_or_else(|e| panic!("{ctx}: {} does not load: {e}", v.display()));
            assert_eq!(payload.model_type().as_str(), t, "{ctx}: {}", v.display());
            let meta: Value = serde_json::from_slice(&std::fs::read(v.join("meta.json")).unwrap())
                .unwrap_or_else(|e| panic!("{ctx}: {}/meta.json: {e}", v.display()));
            assert_eq!(meta["version"], n, "{ctx}: {}", v.display());
            serde_json::from_slice::<Value>(&std::fs::read(v.join("report.json")).unwrap())
                .unwrap_or_else(|e| panic!("{ctx}: {}/report.json: {e}", v.display()));
            on_disk.insert(n);
        }
        let api: BTreeSet<u32> = listed["models"][t].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap() as u32).collect();
        assert_eq!(api, on_disk, "{ctx}: the API lists other {t} versions than the disk holds");
        if let Some(newest) = on_disk.last() {
            assert_eq!(listed["models"][t][0]["version"], *newest, "{ctx}: {t}: the newest version is live");
            assert_eq!(listed["models"][t][0]["live"], true, "{ctx}");
        }
        total += on_disk.len();
    }
    total
}

/// What the daemon was doing when it died, as far as the test saw it.
struct Observed {
    acked: Vec<String>,
    /// A job seen running (and far from its end) just before the kill.
    running: Option<String>,
    crash_log: Option<String>,
}

fn crash_run(kind: Kind, seed: u64, run: usize) {
    let moment = Moment::draw(kind, seed);
    let ctx = format!("run {run} ({kind:?}, seed {seed:#x}, {moment:?})");
    eprintln!("power-pull {ctx} — rerun alone with MILLWRIGHT_POWER_PULL_SEED={seed:#x}");
    let t_run = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let data = data_dir();
    let crash_env = match &moment {
        Moment::CrashPoint { point, nth } => Some(format!("{point}:{nth}")),
        _ => None,
    };
    let env: Vec<(&str, &str)> = crash_env.iter().map(|v| ("MILLWRIGHT_TEST_CRASH_AT", v.as_str())).collect();
    let mut d = Daemon::start(data, &state, &env);
    let m = machine(&d);
    let body = json!({ "machine_id": m, "model_types": TYPES });
    let mut obs = Observed { acked: Vec::new(), running: None, crash_log: None };
    for _ in 0..JOBS {
        let (status, v) = try_request(d.addr, "POST", "/api/ml/train/batch", Some(&body.to_string()), Duration::from_secs(30));
        match status {
            202 => obs.acked.push(v["task_id"].as_str().unwrap().to_string()),
            // Only a crash point may kill the daemon under a submission; that submission is unacknowledged.
            0 if crash_env.is_some() => break,
            s => panic!("{ctx}: submission answered {s}: {v}"),
        }
    }
    match moment {
        Moment::AfterSubmit { delay_ms } => {
            std::thread::sleep(Duration::from_millis(delay_ms));
            d.kill9();
        }
        Moment::MidTraining { delay_ms } => {
            d.wait_running(&obs.acked[0], LONG);
            std::thread::sleep(Duration::from_millis(delay_ms));
            let h = d.get("/api/health").json();
            // A job at under 90 % cannot finish in the millisecond before the kill lands.
            if h["running"]["progress_percent"].as_f64().is_some_and(|p| p < 90.0) {
                obs.running = h["running"]["task_id"].as_str().map(str::to_string);
            }
            d.kill9();
        }
        Moment::CrashPoint { point, .. } => {
            assert!(
                wait_exit(&mut d, LONG),
                "{ctx}: the crash point was never reached; tasks: {:?}",
                tasks(&d).iter().map(status_of).collect::<Vec<_>>()
            );
            let log = d.log();
            let line = log.lines().find(|l| l.contains("millwright: crash point")).map(str::to_string);
            assert!(line.as_deref().is_some_and(|l| l.contains(point)), "{ctx}: the daemon died, but not at the crash point:\n{log}");
            obs.crash_log = line;
            remove_core_dump(d.child.id());
        }
    }
    let died = Instant::now();
    let hidden_at_crash = hidden_entries(&state);
    if let Moment::CrashPoint { point: "registry.before_rename", .. } = moment {
        assert!(hidden_at_crash.iter().any(|p| p.is_dir()), "{ctx}: the crash left no temp model folder to sweep: {hidden_at_crash:?}");
    }
    let log_len = d.log().len();
    drop(d);

    // --- restart on the same state folder, without the crash point ---
    let d = Daemon::start(data, &state, &[]);
    let restart = died.elapsed();
    let all = tasks(&d);
    let restart_log = d.log().split_off(log_len);
    assert!(!restart_log.contains("dropping an unreadable job record"), "{ctx}: a job record was torn:\n{restart_log}");

    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &all {
        *count.entry(t["task_id"].as_str().unwrap()).or_default() += 1;
    }
    assert!(count.values().all(|c| *c == 1), "{ctx}: a task id is listed twice: {count:?}");
    for id in &obs.acked {
        assert!(count.contains_key(id.as_str()), "{ctx}: acknowledged job {id} was lost");
    }
    let interrupted: Vec<&Value> = all.iter().filter(|t| t["error"] == "interrupted by restart").collect();
    assert!(interrupted.len() <= 1, "{ctx}: one job runs at a time, yet {} were interrupted", interrupted.len());
    for t in &interrupted {
        assert_eq!(status_of(t), "FAILURE", "{ctx}: {t}");
        let id = t["task_id"].as_str().unwrap();
        let copies: Vec<&Value> = all.iter().filter(|c| c["requeued_from"] == id).collect();
        assert_eq!(copies.len(), 1, "{ctx}: interrupted job {id} has {} requeued copies", copies.len());
        assert_eq!(copies[0]["model_types"], t["model_types"], "{ctx}: the copy asks for the same models");
        assert_eq!(copies[0]["params"], t["params"], "{ctx}: the copy asks with the same parameters");
    }
    let copies: Vec<&Value> = all.iter().filter(|t| !t["requeued_from"].is_null()).collect();
    assert_eq!(copies.len(), interrupted.len(), "{ctx}: only interrupted jobs are copied");
    // Unacknowledged submissions (the daemon died answering them) may or may not have been recorded.
    let unacked = all.len() - obs.acked.len() - copies.len();
    assert!(
        unacked <= JOBS - obs.acked.len(),
        "{ctx}: {} tasks for {} acknowledged jobs and {} copies",
        all.len(),
        obs.acked.len(),
        copies.len()
    );
    for t in &all {
        let fine = match status_of(t) {
            "PENDING" | "STARTED" | "PROGRESS" | "SUCCESS" => true,
            "FAILURE" => t["error"] == "interrupted by restart",
            _ => false,
        };
        assert!(fine, "{ctx}: a job in a state the crash cannot explain: {t}");
    }
    let sure_running =
        obs.running.is_some() || matches!(moment, Moment::CrashPoint { point: "registry.before_rename" | "registry.after_rename", .. });
    if sure_running {
        assert_eq!(interrupted.len(), 1, "{ctx}: the job running at the crash must come back interrupted");
    }
    if let Some(id) = &obs.running {
        assert_eq!(interrupted[0]["task_id"], id.as_str(), "{ctx}: the wrong job was marked interrupted");
    }
    assert!(all.iter().filter(|t| ["STARTED", "PROGRESS"].contains(&status_of(t))).count() <= 1, "{ctx}: two jobs running");
    let versions_after_crash = check_models(&d, &m, &ctx);

    // Most runs keep only the copies, to stay quick; every fifth lets all waiting jobs run too.
    let run_all = run.is_multiple_of(5);
    let copy_ids: BTreeSet<String> = copies.iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect();
    if !run_all {
        for t in all.iter().filter(|t| !finished(t) && !copy_ids.contains(t["task_id"].as_str().unwrap())) {
            let id = t["task_id"].as_str().unwrap();
            d.post(&format!("/api/ml/tasks/{id}/cancel"), &json!({}));
        }
    }
    for t in &all {
        let id = t["task_id"].as_str().unwrap();
        let end = d.wait_task(id, LONG);
        if copy_ids.contains(id) || (run_all && status_of(t) != "FAILURE") {
            assert_eq!(end["status"], "SUCCESS", "{ctx}: {id} after the restart: {}", end["error"]);
        }
    }
    let versions = check_models(&d, &m, &ctx);
    if !copy_ids.is_empty() || run_all {
        let p = d.post(&format!("/api/ml/predict/{m}"), &json!({})).json();
        for t in TYPES {
            assert!(p["predictions"][t]["version"].as_u64().is_some(), "{ctx}: no {t} prediction after recovery: {p}");
        }
    }
    eprintln!(
        "  run {run} ok in {:.1} s: {} acknowledged, {} interrupted and requeued{}, restart answered {:.2} s after the crash, {} hidden entries swept, {} → {} model versions{}",
        t_run.elapsed().as_secs_f64(),
        obs.acked.len(),
        interrupted.len(),
        if obs.running.is_some() { " (seen running at the kill)" } else { "" },
        restart.as_secs_f64(),
        hidden_at_crash.len(),
        versions_after_crash,
        versions,
        obs.crash_log.map(|l| format!("; {}", l.trim())).unwrap_or_default()
    );
}

fn runs(kind: Kind) {
    let t0 = Instant::now();
    for (i, seed) in seeds(kind).into_iter().enumerate() {
        crash_run(kind, seed, kind as usize * RUNS_PER_KIND as usize + i);
    }
    eprintln!("power-pull {kind:?}: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn kill_9_right_after_submitting() {
    runs(Kind::AfterSubmit);
}

#[test]
fn kill_9_mid_training_after_a_random_delay() {
    runs(Kind::MidTraining);
}

#[test]
fn crash_during_a_job_store_write() {
    runs(Kind::StoreWrite);
}

#[test]
fn crash_during_a_model_commit() {
    runs(Kind::ModelCommit);
}
