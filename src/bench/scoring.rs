//! `millwright bench scoring`: one evaluation on the daemon's cadence over many machines with all four live
//! models — the machine view's answers, verdicts, alerts and score history, as each tick makes them.
//!
//! One simulated machine is trained (all four models) by the daemon; its data folder and its model
//! versions are then copied to the other machines, so every machine answers with four real models from its
//! own files (the copies answer alike; scoring does the same work for each). Measured from the daemon's own
//! record of each evaluation (`/api/health` → `fleet.evaluations`): the first after the start (every model
//! read from disk), then evaluations right after every machine's data changed (each machine's models answer
//! again from its files), and one with nothing changed (the cached answers).
use super::BenchError;
use super::measure::median;
use super::spawn::BenchDaemon;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The target for one tick over 100 machines.
pub const TARGET_S: f64 = 5.0;

pub struct ScoringOptions {
    pub machines: usize,
    /// Rows of the simulated machine every machine is a copy of.
    pub rows: usize,
    /// Evaluations measured after every machine's data changed.
    pub rounds: usize,
    /// Also measure evaluations while a 4-model training of one machine runs in the same daemon.
    pub with_training: bool,
    pub work_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct ScoringReport {
    pub machines: usize,
    pub rows: usize,
    pub training_s: f64,
    /// The first evaluation after the start: every model and every machine's data read.
    pub first_s: f64,
    /// Evaluations in which every machine's models answered again, because its data changed.
    pub changed_s: Vec<f64>,
    /// An evaluation with nothing changed: the cached answers, verdicts decided again.
    pub unchanged_s: f64,
    /// Changed evaluations that began and ended while a 4-model training ran (with `with_training`).
    pub changed_while_training_s: Vec<f64>,
    pub rss_mb: f64,
    pub cadence_s: f64,
    /// Machines whose tile, after the last evaluation, holds all four answers and no error.
    pub answered: usize,
    /// A verdict label and a remaining life answered, for the record.
    pub example: String,
}

/// The shortest cadence the configuration allows; an evaluation longer than that shows as such (and is retried).
const CADENCE_S: f64 = 5.0;

fn evaluations(d: &BenchDaemon) -> Value {
    d.get_json("/api/health")["fleet"]["evaluations"].clone()
}

/// Waits for the evaluation after number `after` and returns its record.
fn next_evaluation(d: &BenchDaemon, after: u64, limit: Duration) -> Result<Value, BenchError> {
    let deadline = Instant::now() + limit;
    loop {
        let e = evaluations(d);
        if e["count"].as_u64().unwrap_or(0) > after {
            return Ok(e);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Daemon(format!("no evaluation on the cadence within {limit:?}; see {}", d.log.display())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Queues all four models of `machine` and returns the task id.
fn queue_training(d: &BenchDaemon, machine: &str) -> Result<String, BenchError> {
    let r = d.post_json("/api/ml/train/batch", &json!({ "machine_id": machine }));
    r["task_id"].as_str().map(str::to_string).ok_or_else(|| BenchError::Daemon(format!("the training was not queued: {r}")))
}

fn wait_task(d: &BenchDaemon, id: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        let t = d.get_json(&format!("/api/ml/tasks/{id}"));
        match t["status"].as_str() {
            Some("SUCCESS") => return Ok(()),
            Some("FAILURE" | "CANCELLED") => return Err(BenchError::Daemon(format!("the training ended {}: {}", t["status"], t["error"]))),
            _ if Instant::now() > deadline => return Err(BenchError::Daemon("the training did not end within 30 minutes".into())),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// A version's meta names its machine, and the registry takes only versions that name the folder's: the
/// copies are made the new machine's own.
fn claim_models(machine_models: &Path, id: &str) -> Result<(), BenchError> {
    for t in std::fs::read_dir(machine_models)? {
        for v in std::fs::read_dir(t?.path())? {
            let meta = v?.path().join(crate::registry::META_FILE);
            if !meta.is_file() {
                continue;
            }
            let mut m: Value =
                serde_json::from_slice(&std::fs::read(&meta)?).map_err(|e| BenchError::Daemon(format!("{}: {e}", meta.display())))?;
            m["machine_id"] = json!(id);
            std::fs::write(&meta, m.to_string())?;
        }
    }
    Ok(())
}

/// What new readings do to a machine as far as scoring goes: its files are newer than its cached answers.
fn touch_all(machines_dir: &Path) -> std::io::Result<()> {
    let now = SystemTime::now();
    for m in std::fs::read_dir(machines_dir)? {
        for f in std::fs::read_dir(m?.path())? {
            let f = f?;
            if f.file_type()?.is_file() {
                std::fs::File::options().write(true).open(f.path())?.set_modified(now)?;
            }
        }
    }
    Ok(())
}

pub fn scoring(o: &ScoringOptions) -> Result<ScoringReport, BenchError> {
    if o.machines == 0 || o.rows < 500 || o.rounds == 0 {
        return Err(BenchError::Invalid("scoring needs machines ≥ 1, rows ≥ 500 and rounds ≥ 1".into()));
    }
    let (data, state) = (o.work_dir.join("data"), o.work_dir.join("state"));
    std::fs::create_dir_all(&data)?;
    let opts = crate::data::simulate::FleetOptions { out_dir: data.clone(), machines: 1, rows: o.rows, ..Default::default() };
    let source = crate::data::simulate::simulate_fleet(&opts)?.remove(0).id;
    let cadence = CADENCE_S.to_string();
    let env = [("MILLWRIGHT_FLEET__EVALUATE_INTERVAL_S", cadence.as_str())];
    let training_s = {
        let d = BenchDaemon::start(&data, &state, &o.work_dir.join("train.log"), None, &env)?;
        let t0 = Instant::now();
        let id = queue_training(&d, &source)?;
        wait_task(&d, &id)?;
        t0.elapsed().as_secs_f64()
    };
    let machines_dir = data.join("machines");
    let models_dir = state.join(crate::registry::MODELS_DIR);
    for i in 1..o.machines {
        let id = format!("{source}-{i:03}");
        copy_dir(&machines_dir.join(&source), &machines_dir.join(&id))?;
        copy_dir(&models_dir.join(&source), &models_dir.join(&id))?;
        claim_models(&models_dir.join(&id), &id)?;
    }
    let d = BenchDaemon::start(&data, &state, &o.work_dir.join("daemon.log"), None, &env)?;
    let limit = Duration::from_secs_f64(CADENCE_S * 2.0 + 600.0);
    let first = next_evaluation(&d, 0, limit)?;
    let check = |e: &Value, what: &str| -> Result<f64, BenchError> {
        let last = &e["last"];
        if last["machines"].as_u64() != Some(o.machines as u64) {
            return Err(BenchError::Daemon(format!("{what}: the evaluation covered {} machines, not {}", last["machines"], o.machines)));
        }
        last["seconds"].as_f64().ok_or_else(|| BenchError::Daemon(format!("{what}: no time in {e}")))
    };
    let first_s = check(&first, "the first evaluation")?;
    let mut count = first["count"].as_u64().unwrap_or(0);
    // Nothing changed since the first.
    let unchanged = next_evaluation(&d, count, limit)?;
    let unchanged_s = check(&unchanged, "an unchanged evaluation")?;
    count = unchanged["count"].as_u64().unwrap_or(count);
    let mut changed_s = Vec::new();
    let mut attempts = 0;
    while changed_s.len() < o.rounds {
        attempts += 1;
        if attempts > o.rounds * 3 {
            return Err(BenchError::Daemon("evaluations did not answer again for every changed machine".into()));
        }
        // Right after an evaluation ended, so the next one sees every machine changed.
        touch_all(&machines_dir)?;
        let e = next_evaluation(&d, count, limit)?;
        count = e["count"].as_u64().unwrap_or(count + 1);
        let s = check(&e, "a changed evaluation")?;
        if e["last"]["rescored"].as_u64() == Some(o.machines as u64) {
            changed_s.push(s);
        }
    }
    let changed_while_training_s =
        if o.with_training { while_training(&d, &source, &machines_dir, o, &mut count, limit)? } else { Vec::new() };
    let fleet = d.get_json("/api/fleet");
    let tiles = fleet["machines"].as_array().cloned().unwrap_or_default();
    let whole = |t: &Value| {
        let a = &t["answers"];
        t["error"].is_null()
            && a["classification"]["failure_probability"].is_number()
            && a["regression"]["rul_hours"].is_number()
            && a["anomaly"]["anomaly_score"].is_number()
            && a["timeseries"]["start"].is_string()
    };
    let answered = tiles.iter().filter(|t| whole(t)).count();
    if answered < o.machines {
        let bad = tiles.iter().find(|t| !whole(t)).cloned().unwrap_or(Value::Null);
        return Err(BenchError::Daemon(format!("only {answered} of {} machines have all four answers; e.g. {bad}", o.machines)));
    }
    let example = tiles.first().map_or_else(String::new, |t| format!("{} (RUL {} h)", t["label"], t["answers"]["regression"]["rul_hours"]));
    Ok(ScoringReport {
        answered,
        example,
        machines: o.machines,
        rows: o.rows,
        training_s,
        first_s,
        changed_s,
        unchanged_s,
        changed_while_training_s,
        rss_mb: d.rss_mb(),
        cadence_s: CADENCE_S,
    })
}

fn task_status(d: &BenchDaemon, id: &str) -> String {
    let t = d.get_json(&format!("/api/ml/tasks/{id}"));
    t["status"].as_str().unwrap_or("?").to_string()
}

/// Changed evaluations while `source` trains all four models: only those that began after the job was
/// running and ended before it finished count.
fn while_training(
    d: &BenchDaemon,
    source: &str,
    machines_dir: &Path,
    o: &ScoringOptions,
    count: &mut u64,
    limit: Duration,
) -> Result<Vec<f64>, BenchError> {
    let id = queue_training(d, source)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while task_status(d, &id) != "PROGRESS" {
        if Instant::now() > deadline {
            return Err(BenchError::Daemon("the training did not start within 60 s".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Vec::new();
    while out.len() < o.rounds && task_status(d, &id) == "PROGRESS" {
        touch_all(machines_dir)?;
        let e = next_evaluation(d, *count, limit)?;
        *count = e["count"].as_u64().unwrap_or(*count + 1);
        let whole = e["last"]["rescored"].as_u64() == Some(o.machines as u64) && e["last"]["machines"].as_u64() == Some(o.machines as u64);
        if whole && task_status(d, &id) == "PROGRESS" {
            out.push(e["last"]["seconds"].as_f64().unwrap_or(f64::NAN));
        }
    }
    wait_task(d, &id)?;
    if out.is_empty() {
        return Err(BenchError::Daemon("the training ended before an evaluation could be measured beside it; give more rows".into()));
    }
    Ok(out)
}

pub fn print(r: &ScoringReport) {
    println!(
        "scoring on the cadence: {} machines with four live models each ({} rows of history each; one machine trained in {:.1} s, its models copied)",
        r.machines, r.rows, r.training_s
    );
    println!("  every machine answered by all four models: {} of {}, e.g. {}", r.answered, r.machines, r.example);
    println!("  first evaluation after the start (every model read from disk): {:.2} s", r.first_s);
    let worst = r.changed_s.iter().copied().fold(0.0, f64::max);
    println!(
        "  every machine's data changed, its four models answer again: median {:.2} s, worst {:.2} s of {} (target ≤ {TARGET_S} s: {})",
        median(&r.changed_s),
        worst,
        r.changed_s.len(),
        if worst <= TARGET_S { "met" } else { "NOT met" }
    );
    if !r.changed_while_training_s.is_empty() {
        let worst = r.changed_while_training_s.iter().copied().fold(0.0, f64::max);
        println!(
            "  the same while a 4-model training runs in the daemon: median {:.2} s, worst {:.2} s of {} (×{:.2} the time without)",
            median(&r.changed_while_training_s),
            worst,
            r.changed_while_training_s.len(),
            median(&r.changed_while_training_s) / median(&r.changed_s).max(1e-6)
        );
    }
    println!(
        "  nothing changed (cached answers): {:.3} s; changed / unchanged ×{:.0}; daemon RSS {:.1} MB",
        r.unchanged_s,
        median(&r.changed_s) / r.unchanged_s.max(1e-6),
        r.rss_mb
    );
}
