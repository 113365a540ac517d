//! Soak: continuous small jobs for `MILLWRIGHT_SOAK_SECS` (default 600) while the daemon's RSS and the size of
//! its state folder (the sled job store plus the model registry) are sampled every few seconds.
//!
//! Ignored by default (it is long); the documented command is
//! `cargo test --release --test soak -- --ignored --nocapture` (set `MILLWRIGHT_SOAK_SECS=90` for a short run).
//!
//! Retention is set small (`queue.retention` = 10 finished jobs, `models.keep_versions` = 2) so both bounds are
//! reached within the first seconds: after that, every finished job pushes an old record out and every
//! model commit prunes an old version, so nothing on disk or in memory should keep growing. The test
//! compares the second half's maximum against the first half's with stated margins.
mod common;
use common::{Daemon, fleet};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

const RETENTION: usize = 10;
const KEEP_VERSIONS: usize = 2;
const TYPES: [&str; 4] = ["anomaly", "classification", "regression", "timeseries"];
/// RSS may wobble with the allocator and which model trains when sampled, not trend upwards.
const RSS_MARGIN: f64 = 1.15;
const RSS_MARGIN_MB: f64 = 8.0;
/// sled appends to its log and reclaims segments in the background: its file size saws up and down.
const STORE_MARGIN: f64 = 1.25;
const STORE_MARGIN_MB: f64 = 2.0;

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Bytes on disk (allocated blocks, so sparse files count for what they use) under `dir`.
fn disk_mb(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| walk(&e.path())).sum::<u64>() + meta.blocks() * 512
        } else {
            meta.blocks() * 512
        }
    }
    walk(dir) as f64 / (1 << 20) as f64
}

struct Sample {
    at: f64,
    rss: f64,
    store: f64,
    models: f64,
    finished: usize,
}

fn max_of(samples: &[&Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    samples.iter().map(|s| f(s)).fold(0.0, f64::max)
}

#[test]
#[ignore = "long: cargo test --release --test soak -- --ignored --nocapture (MILLWRIGHT_SOAK_SECS, default 600)"]
fn continuous_small_jobs_do_not_grow_memory_or_the_store_beyond_retention() {
    let secs: u64 = std::env::var("MILLWRIGHT_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let every = Duration::from_secs(if secs >= 300 { 5 } else { 2 });
    let dir = tempfile::tempdir().unwrap();
    let (data, state) = (dir.path().join("data"), dir.path().join("state"));
    fleet(&data, 2, 1_500);
    let (retention, keep) = (RETENTION.to_string(), KEEP_VERSIONS.to_string());
    let d = Daemon::start(
        &data,
        &state,
        &[("MILLWRIGHT_QUEUE__RETENTION", retention.as_str()), ("MILLWRIGHT_MODELS__KEEP_VERSIONS", keep.as_str())],
    );
    let pid = d.child.id();
    let machines: Vec<String> = d.get("/api/ml/train/machines/available").json()["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["machine_id"].as_str().unwrap().to_string())
        .collect();

    let t0 = Instant::now();
    let mut next_sample = t0;
    let mut samples: Vec<Sample> = Vec::new();
    let mut submitted = 0usize;
    let mut succeeded = 0usize;
    let mut seen_done = std::collections::HashSet::new();
    let mut predictions = 0usize;
    while t0.elapsed() < Duration::from_secs(secs) {
        let list = d.get("/api/ml/tasks").json();
        let tasks = list["tasks"].as_array().unwrap();
        for t in tasks {
            let status = t["status"].as_str().unwrap();
            if ["SUCCESS", "FAILURE", "REVOKED"].contains(&status) && seen_done.insert(t["task_id"].as_str().unwrap().to_string()) {
                assert_eq!(status, "SUCCESS", "a soak job failed: {t}");
                succeeded += 1;
            }
        }
        assert!(tasks.len() <= RETENTION + 3, "{} jobs listed with retention {RETENTION} and at most 2 waiting + 1 running", tasks.len());
        // Two waiting at most: the runner never idles, the queue never refuses.
        if list["pending"].as_u64().unwrap() < 2 {
            let m = &machines[submitted % machines.len()];
            let t = TYPES[(submitted / machines.len()) % TYPES.len()];
            let r = d.post("/api/ml/train/batch", &json!({ "machine_id": m, "model_types": [t] }));
            assert_eq!(r.status, 202, "{}", r.text());
            submitted += 1;
        }
        if Instant::now() >= next_sample {
            next_sample += every;
            let h = d.get("/api/health").json();
            assert_eq!(h["status"], "ok");
            // Predictions load the live models: the cache must not hold on to pruned versions.
            let p: Value = d.post(&format!("/api/ml/predict/{}", machines[predictions % machines.len()]), &json!({})).json();
            assert!(p["predictions"].is_object(), "{p}");
            predictions += 1;
            samples.push(Sample {
                at: t0.elapsed().as_secs_f64(),
                rss: rss_mb(pid),
                store: disk_mb(&state.join("jobs.sled")),
                models: disk_mb(&state.join("models")),
                finished: succeeded,
            });
            let s = samples.last().unwrap();
            eprintln!(
                "soak {:>6.0} s: RSS {:>6.1} MB, job store {:>6.2} MB, models {:>6.2} MB, {} jobs done",
                s.at, s.rss, s.store, s.models, s.finished
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every type folder keeps at most keep_versions versions.
    for e in std::fs::read_dir(state.join("models")).unwrap().flatten() {
        for t in std::fs::read_dir(e.path()).unwrap().flatten() {
            let versions =
                std::fs::read_dir(t.path()).unwrap().flatten().filter(|v| v.file_name().to_string_lossy().starts_with('v')).count();
            assert!(versions <= KEEP_VERSIONS, "{} holds {versions} versions", t.path().display());
        }
    }

    let half = secs as f64 / 2.0;
    let first: Vec<&Sample> = samples.iter().filter(|s| s.at < half).collect();
    let second: Vec<&Sample> = samples.iter().filter(|s| s.at >= half).collect();
    assert!(first.len() >= 3 && second.len() >= 3, "too few samples: run longer");
    let (rss1, rss2) = (max_of(&first, |s| s.rss), max_of(&second, |s| s.rss));
    let (st1, st2) = (max_of(&first, |s| s.store), max_of(&second, |s| s.store));
    let (mo1, mo2) = (max_of(&first, |s| s.models), max_of(&second, |s| s.models));
    let jobs_first = first.last().map_or(0, |s| s.finished);
    eprintln!(
        "soak: {secs} s, {submitted} jobs submitted, {succeeded} succeeded ({jobs_first} in the first half); max RSS {rss1:.1} → {rss2:.1} MB, \
         max job store {st1:.2} → {st2:.2} MB, max models {mo1:.2} → {mo2:.2} MB (first half → second half)"
    );
    assert!(
        jobs_first > RETENTION + TYPES.len() * machines.len() * KEEP_VERSIONS,
        "the first half must reach both retention limits; run longer"
    );
    assert!(
        succeeded - jobs_first >= jobs_first / 2,
        "the second half ran {} jobs, the first {jobs_first}: something slowed down",
        succeeded - jobs_first
    );
    assert!(rss2 <= rss1 * RSS_MARGIN + RSS_MARGIN_MB, "RSS grew: {rss1:.1} → {rss2:.1} MB");
    assert!(st2 <= st1 * STORE_MARGIN + STORE_MARGIN_MB, "the job store grew: {st1:.2} → {st2:.2} MB");
    assert!(mo2 <= mo1 * 1.10 + 0.5, "the model registry grew: {mo1:.2} → {mo2:.2} MB");
}
