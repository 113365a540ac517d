//! The four trainers end to end on a small simulated machine and on the shared datasets: metrics beat their
//! baselines, bundles round-trip, progress is frequent and monotonic, cancel is fast.
use millwright::data::simulate::{FleetOptions, simulate_fleet};
use millwright::data::{self, Table};
use millwright::ml::model::{Payload, UrgencyHours};
use millwright::ml::{self, Event, ModelType, PauseGate, Quality, TrainContext, TrainParams};
use millwright::registry::write_model_dir;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn small_machine(dir: &Path, rows: usize) -> Table {
    let opts = FleetOptions { out_dir: dir.to_path_buf(), machines: 1, seed: 7, rows, ..FleetOptions::default() };
    let fleet = simulate_fleet(&opts).unwrap();
    data::load_machine(dir, &fleet[0].id).unwrap()
}

fn params() -> TrainParams {
    TrainParams { quality: Quality::Fast, threads: 2, ..TrainParams::default() }
}

fn ctx() -> TrainContext {
    TrainContext::detached(Duration::from_secs(300), 2)
}

#[test]
fn all_four_beat_their_baselines_and_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 30_000);
    for t in ModelType::ALL {
        let mut trained = ml::train(t, &table, &params(), &ctx()).unwrap_or_else(|e| panic!("{t}: {e}"));
        let h = &trained.report.headline;
        eprintln!(
            "{t}: {} = {:.4} vs {} {:.4} ({} bytes)",
            h.metric, h.value, h.baseline_name, h.baseline, trained.report.model_size_bytes
        );
        assert!(h.improvement > 0.05, "{t} must beat its baseline by > 5 %: {h:?}");
        assert_eq!(h.unit, if t == ModelType::Regression { "h" } else { "" }, "{t}: the headline's unit");
        assert!(!trained.report.split.method.is_empty());
        let dir = d.path().join("models").join(t.as_str());
        let size = write_model_dir(&dir, &mut trained).unwrap();
        assert!(size > 0 && size < 2_000_000, "{t} model is {size} bytes");
        assert_eq!(trained.report.model_size_bytes, size);
        assert_eq!(trained.bundle_size().unwrap(), size, "{t}: the size computed from the parts is the file's");
        let (header, loaded) = Payload::load(&dir.join(ml::MODEL_FILE)).unwrap();
        assert_eq!(header.model_type, t.as_str());
        assert_eq!(header.data_fingerprint, trained.fingerprint, "{t}: the bundle names the data it was trained on");
        let recent = ml::predict::recent_from_table(&table, &trained.payload, None).unwrap();
        let a = ml::predict::answer(&trained.payload, None, &recent, &UrgencyHours::default()).unwrap();
        let b = ml::predict::answer(&loaded, None, &recent, &UrgencyHours::default()).unwrap();
        assert_eq!(a, b, "{t}: a loaded bundle answers exactly like the trained model");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(ml::REPORT_FILE)).unwrap()).unwrap();
        assert_eq!(report["model_type"], t.as_str());
    }
}

/// A horizon longer than every life makes every row "fails within the horizon": the error says so and names
/// a horizon that fits, instead of a bare "only one class".
#[test]
fn a_horizon_longer_than_every_life_is_explained_with_a_horizon_that_fits() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 6_000);
    let p = TrainParams { horizon_hours: 10_000.0, ..params() };
    let err = ml::train(ModelType::Classification, &table, &p, &ctx()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("only one class") && err.contains("longer than every life") && err.contains("try horizon_hours = "), "{err}");
}

#[test]
fn predictions_refuse_missing_sensors_and_short_history() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 6_000);
    let trained = ml::train(ModelType::Classification, &table, &params(), &ctx()).unwrap();
    let mut recent = ml::predict::recent_from_table(&table, &trained.payload, None).unwrap();
    let first = recent.sensors.keys().next().unwrap().clone();
    let mut short = recent.clone();
    for v in short.sensors.values_mut() {
        v.truncate(2);
    }
    short.timestamps.truncate(2);
    let e = ml::predict::answer(&trained.payload, None, &short, &UrgencyHours::default()).unwrap_err().to_string();
    assert!(e.contains("too few rows"), "{e}");
    recent.sensors.remove(&first);
    let e = ml::predict::answer(&trained.payload, None, &recent, &UrgencyHours::default()).unwrap_err().to_string();
    assert!(e.contains(&first) && e.contains("missing"), "{e}");
}

#[test]
fn progress_is_frequent_monotonic_and_cancel_is_fast() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 30_000);
    let events: Arc<Mutex<Vec<(Instant, Event)>>> = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    // Cancelled from inside the job once training is well under way (a fixed sleep raced a faster trainer).
    let asked: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (flag, asked2) = (cancel.clone(), asked.clone());
    let ctx = TrainContext::new(
        Arc::new(move |e: &Event| {
            e2.lock().unwrap().push((Instant::now(), e.clone()));
            if let Event::Progress { fraction, .. } = e
                && *fraction >= 0.5
                && !flag.swap(true, Ordering::Relaxed)
            {
                *asked2.lock().unwrap() = Some(Instant::now());
            }
        }),
        cancel.clone(),
        Arc::new(PauseGate::default()),
        Duration::from_secs(600),
        2,
    );
    let p = TrainParams { quality: Quality::Best, threads: 2, ..TrainParams::default() };
    let handle = std::thread::spawn(move || {
        let r = ml::train(ModelType::Regression, &table, &p, &ctx);
        (r.map(|_| ()), Instant::now())
    });
    let (result, ended) = handle.join().unwrap();
    let asked = asked.lock().unwrap().expect("training reached half way");
    let latency = ended - asked;
    eprintln!("cancel latency {latency:?}");
    assert!(matches!(result, Err(ml::MlError::Cancelled)), "{result:?}");
    assert!(latency < Duration::from_secs(1), "cancel took {latency:?}");
    let ev = events.lock().unwrap();
    let progress: Vec<(Instant, f64)> = ev
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Progress { fraction, .. } => Some((*t, *fraction)),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 5, "{} progress events", progress.len());
    assert!(progress.windows(2).all(|w| w[1].1 >= w[0].1), "progress went backwards");
    let max_gap = progress.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(max_gap < Duration::from_secs(2), "progress silent for {max_gap:?}");
}

/// Past 100,000 training rows the features are computed and binned 32,768 rows at a time, which takes seconds
/// at a million rows: a cancel asked during that stops at the next chunk, before any tree is grown.
#[test]
fn cancel_while_training_rows_are_binned_stops_at_the_next_chunk() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 220_000);
    let cancel = Arc::new(AtomicBool::new(false));
    let (flag, seen) = (cancel.clone(), Arc::new(Mutex::new(Vec::new())));
    let seen2 = seen.clone();
    let ctx = TrainContext::new(
        Arc::new(move |e: &Event| {
            if let Event::Progress { message, .. } = e {
                // The first chunk of binned rows: ask to cancel from inside the job, as the API's cancel would.
                if message.starts_with("binning the training rows") {
                    flag.store(true, Ordering::Relaxed);
                }
                seen2.lock().unwrap().push(message.clone());
            }
        }),
        cancel,
        Arc::new(PauseGate::default()),
        Duration::from_secs(600),
        2,
    );
    let result = ml::train(ModelType::Regression, &table, &params(), &ctx);
    assert!(matches!(result, Err(ml::MlError::Cancelled)), "{:?}", result.err());
    let seen = seen.lock().unwrap();
    let binned = seen.iter().filter(|m| m.starts_with("binning the training rows")).count();
    assert_eq!(binned, 1, "one chunk after the cancel: {seen:?}");
    assert!(!seen.iter().any(|m| m.contains("features ready") || m.contains("round")), "{seen:?}");
}

#[test]
fn corrupt_and_foreign_bundles_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 4_000);
    let mut trained = ml::train(ModelType::Anomaly, &table, &params(), &ctx()).unwrap();
    write_model_dir(d.path(), &mut trained).unwrap();
    let path = d.path().join(ml::MODEL_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(Payload::load(&path).unwrap_err().to_string().contains("damaged"));
    std::fs::write(&path, b"PK\x03\x04 not a model").unwrap();
    assert!(Payload::load(&path).unwrap_err().to_string().contains("not a millwright model"));
}

fn example(name: &str) -> Option<Table> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    if !Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets").is_dir() {
        eprintln!("skipping {name}: ../shared/datasets is absent");
        return None;
    }
    Some(data::load_machine_dir(&dir).unwrap())
}

#[test]
fn ai4i_classifier_beats_baselines() {
    let Some(table) = example("ai4i2020") else { return };
    let r = ml::train(ModelType::Classification, &table, &params(), &ctx()).unwrap().report;
    let auc = r.metrics["roc_auc"].as_f64().unwrap();
    eprintln!("AI4I F1 {:.3} ROC AUC {auc:.3}", r.headline.value);
    assert!(r.headline.value > 0.6, "F1 {}", r.headline.value);
    assert!(auc > 0.9);
    assert_eq!(r.split.method, "stratified");
}

#[test]
fn cmapss_regressor_beats_the_mean() {
    let Some(table) = example("cmapss-fd001") else { return };
    let r = ml::train(ModelType::Regression, &table, &params(), &ctx()).unwrap().report;
    eprintln!("FD001 RMSE (all test rows) {:.2} vs mean {:.2}", r.headline.value, r.headline.baseline);
    assert!(r.headline.value < 0.6 * r.headline.baseline);
    assert!(r.target.contains("125"));
}

/// FD001's 17 varying sensors give 273 feature columns: a screening fit picks the ones the candidates fit on, says how
/// many in the log and times itself; AI4I's raw readings (a handful of columns) are not screened.
#[test]
fn many_feature_columns_are_screened_before_the_candidates_and_few_are_not() {
    let (Some(fd001), Some(ai4i)) = (example("cmapss-fd001"), example("ai4i2020")) else { return };
    let lines: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let logged = |lines: &Arc<Mutex<Vec<String>>>| {
        let l2 = lines.clone();
        TrainContext::new(
            Arc::new(move |e: &Event| {
                if let Event::Log { line } = e {
                    l2.lock().unwrap().push(line.clone());
                }
            }),
            Arc::new(AtomicBool::new(false)),
            Arc::new(PauseGate::default()),
            Duration::from_secs(300),
            2,
        )
    };
    let r = ml::train(ModelType::Regression, &fd001, &params(), &logged(&lines)).unwrap().report;
    let screened = lines.lock().unwrap().iter().find(|l| l.contains("feature columns carry")).cloned().expect("a screening line");
    let kept: usize = screened.split(' ').next().unwrap().parse().unwrap();
    assert!(screened.contains("of 273 feature columns") && (24..100).contains(&kept), "{screened}");
    assert!(r.timings.iter().any(|(stage, _)| stage == "screen"), "{:?}", r.timings);
    assert!(r.headline.value < 0.6 * r.headline.baseline, "RMSE {} against the mean's {}", r.headline.value, r.headline.baseline);
    lines.lock().unwrap().clear();
    let r = ml::train(ModelType::Classification, &ai4i, &params(), &logged(&lines)).unwrap().report;
    assert!(!lines.lock().unwrap().iter().any(|l| l.contains("feature columns carry")));
    assert!(!r.timings.iter().any(|(stage, _)| stage == "screen"), "{:?}", r.timings);
}

#[test]
fn skab_detector_beats_random_on_real_labels() {
    let Some(table) = example("skab-valve1") else { return };
    let r = ml::train(ModelType::Anomaly, &table, &params(), &ctx()).unwrap().report;
    eprintln!("SKAB valve1 F1 {:.3} vs random {:.3}", r.headline.value, r.headline.baseline);
    assert_eq!(r.metrics["truth"], "the data's anomaly labels");
    assert!(r.headline.value > r.headline.baseline * 1.1);
}

#[test]
fn skab_runs_are_judged_from_their_own_normal_start_and_reach_the_leaderboard() {
    let Some(table) = example("skab-valve1") else { return };
    let r = ml::train(ModelType::Anomaly, &table, &params(), &ctx()).unwrap().report;
    let f1 = r.metrics["f1"].as_f64().unwrap();
    eprintln!("SKAB valve1 F1 {f1:.3}, PR AUC {:.3}", r.headline.value);
    // SKAB's leaderboard best is 0.78 (PCA T² + Q alone 0.76), on rows no detector was fitted on.
    assert!(f1 >= 0.78, "F1 {f1}: {}", r.metrics);
    assert!(r.warnings.iter().any(|w| w.contains("another operating regime") && w.contains("not used")), "{:?}", r.warnings);
    let by_run = r.metrics["healthy_alarm_rate_by_run"].as_object().unwrap();
    assert_eq!(by_run.len(), 16, "one healthy alarm rate per valve1 run, the unused reference not among them");
    assert!(r.leaderboard.iter().any(|l| l.model == "pca_t2_q"));
}

/// A machine folder of eight 900-row runs at 1 Hz, each in its own regime (levels 10 apart) and normal for
/// its first 300 rows, with a fault at rows 600..800 (one sensor off its correlation by 2.5), and a healthy
/// reference at level 200.
fn regime_runs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut normal = move || {
        // Sum of uniforms: near enough to a normal for a test.
        (0..12)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            })
            .sum::<f64>()
            - 6.0
    };
    let mut write_run = |name: &str, day: usize, level: f64, fault: Option<std::ops::Range<usize>>| {
        let mut csv = String::from("datetime,a,b,c,anomaly\n");
        for i in 0..900usize {
            let x = normal();
            let faulty = fault.as_ref().is_some_and(|f| f.contains(&i));
            let b = level + 2.0 * x + 0.3 * normal() + if faulty { 2.5 } else { 0.0 };
            let c = 0.5 * level + normal();
            csv.push_str(&format!(
                "2024-01-{day:02} {:02}:{:02}:{:02},{:.4},{b:.4},{c:.4},{}\n",
                i / 3600 % 24,
                i / 60 % 60,
                i % 60,
                level + 2.0 * x,
                u8::from(faulty)
            ));
        }
        std::fs::write(dir.join(name), csv).unwrap();
    };
    write_run("reference.csv", 1, 200.0, None);
    for run in 0..8 {
        write_run(&format!("run{run}.csv"), 2 + run, 10.0 * run as f64, Some(600..800));
    }
    std::fs::write(
        dir.join("machine.toml"),
        "[[files]]\npath = \"reference.csv\"\nsplit = \"healthy\"\nfile_is_life = true\n\n[[files]]\npath = \"run*.csv\"\nsplit = \"test\"\nfile_is_life = true\n\n[columns]\ntimestamp = \"datetime\"\nanomaly = \"anomaly\"\n\n[split]\nhealthy_head_rows = 300\n",
    )
    .unwrap();
}

/// Runs of one machine recorded in different operating regimes (each run's level differs by far more than a
/// fault's size), each starting normal, and a healthy reference from yet another regime: only when each run
/// is judged from its own start do the faults stand out, and the far reference is named, not used.
#[test]
fn runs_in_different_regimes_are_scored_from_their_own_normal_start() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("valves");
    regime_runs(&dir);
    let table = data::load_machine_dir(&dir).unwrap();
    let trained = ml::train(ModelType::Anomaly, &table, &params(), &ctx()).unwrap();
    let r = &trained.report;
    let f1 = r.metrics["f1"].as_f64().unwrap();
    assert!(f1 > 0.7, "F1 {f1}: {}", r.metrics);
    assert!(r.warnings.iter().any(|w| w.contains("another operating regime")), "{:?}", r.warnings);
    assert!(r.split.notes.iter().any(|n| n.contains("relative to its own normal start")), "{:?}", r.split.notes);
    assert_eq!(r.metrics["healthy_alarm_rate_by_run"].as_object().unwrap().len(), 8);
    // Live rows continue the latest run and are judged from its start: its fault (rows 600..800) alarms, its
    // healthy end scores lower; without that start the healthy end would look like another machine.
    let Payload::Anomaly(model) = &trained.payload else { panic!("not an anomaly model") };
    assert!(model.reference.is_some());
    let last = table.life_ranges().last().unwrap().1.clone();
    let window = |end: usize| ml::model::Recent {
        timestamps: table.timestamps[end - 60..end].to_vec(),
        sensors: table.sensors.iter().map(|s| (s.name.clone(), s.values[end - 60..end].to_vec())).collect(),
        time_in_life_h: None,
    };
    let (fault, healthy) = (window(last.start + 790), window(last.end));
    let at_fault = model.predict(&fault).unwrap();
    let at_end = model.predict(&healthy).unwrap();
    assert!(at_fault.is_anomaly && at_end.anomaly_score < at_fault.anomaly_score, "{at_fault:?} vs {at_end:?}");
    let unanchored = ml::model::AnomalyModel { reference: None, ..model.clone() };
    assert!(unanchored.predict(&healthy).unwrap().anomaly_score > at_end.anomaly_score);
}

/// `millwright predict --rows` exports every row's score so that a benchmark can score alarms row by row: the
/// exported alarms reproduce the report's F1 on the test rows exactly.
#[test]
fn predict_rows_exports_the_scores_the_report_was_computed_from() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("valves");
    regime_runs(&dir);
    let models = d.path().join("models");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_millwright")).args(args).env_clear().output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let (dir_s, models_s) = (dir.to_str().unwrap(), models.to_str().unwrap());
    run(&["train", dir_s, "--models", "anomaly", "--quality", "fast", "--out", models_s]);
    let csv = run(&["predict", dir_s, "--models", models_s, "--rows", "-"]).stdout;
    let text = String::from_utf8(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,run,score,threshold,alarm,label"));
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    let mut seen = std::collections::HashMap::new();
    let mut n = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert!(f[0].ends_with('Z') && f[2].parse::<f64>().unwrap().is_finite(), "{line}");
        n += 1;
        let k = seen.entry(f[1].to_string()).or_insert(0);
        *k += 1;
        // The reference (run 0) and each run's first 300 rows were fitted on; the rest is the test.
        if f[1] == "0" || *k <= 300 {
            continue;
        }
        let (alarm, label) = (f[4] == "1", f[5] == "1");
        tp += f64::from(u8::from(alarm && label));
        fp += f64::from(u8::from(alarm && !label));
        fn_ += f64::from(u8::from(!alarm && label));
    }
    assert_eq!(n, 9 * 900, "every row of every run");
    let f1 = 2.0 * tp / (2.0 * tp + fp + fn_);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(models.join("valves/anomaly/report.json")).unwrap()).unwrap();
    let reported = report["metrics"]["f1"].as_f64().unwrap();
    assert!((f1 - reported).abs() < 1e-9, "F1 from the exported rows {f1} vs the report's {reported}");
    // Without --rows only the latest rows are read, as the daemon does: the answer for the last run's last row
    // is the score the export gives that row.
    let answers: serde_json::Value = serde_json::from_slice(&run(&["predict", dir_s, "--models", models_s]).stdout).unwrap();
    let score = answers["anomaly"]["answer"]["anomaly_score"].as_f64().unwrap_or_else(|| panic!("{answers}"));
    let last_row = text.lines().last().unwrap().split(',').nth(2).unwrap().parse::<f64>().unwrap();
    assert!((score - last_row).abs() < 1e-5, "answer {score} vs the export's last row {last_row}");
    assert!(answers["classification"]["missing"].is_string(), "{answers}");
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_millwright"))
        .args(["predict", "no_such_machine", "--data-dir", d.path().to_str().unwrap(), "--models", models_s])
        .env_clear()
        .output()
        .unwrap();
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("unknown machine"), "{unknown:?}");
    // Piped into `head` (the reader stops after a line, 8,100 rows unwritten): the export ends quietly with
    // the reader, as a Unix tool does, instead of panicking about a broken pipe.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_millwright"))
        .args(["predict", dir_s, "--models", models_s, "--rows", "-"])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(first.trim_end(), "timestamp,run,score,threshold,alarm,label");
    // Ended by the signal, or done when the reader closed: either way nothing to say.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim().is_empty() && matches!(out.status.code(), None | Some(0)), "{:?}: {err}", out.status);
}

/// Runs recorded over the same days cannot be stitched into one timeline: the forecaster says it learns from
/// the latest run, instead of doing so silently.
#[test]
fn overlapping_runs_are_named_when_the_forecaster_uses_the_latest() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("rigs");
    std::fs::create_dir_all(&dir).unwrap();
    for run in 0..2 {
        let mut csv = String::from("timestamp,temp\n");
        for i in 0..(40 * 24) {
            let t = 20.0 + 3.0 * (i as f64 * std::f64::consts::TAU / 24.0).sin() + run as f64;
            let (month, day) = (1 + i / 24 / 31, 1 + i / 24 % 31);
            csv.push_str(&format!("2024-{month:02}-{day:02} {:02}:00:00,{t:.3}\n", i % 24));
        }
        std::fs::write(dir.join(format!("run{run}.csv")), csv).unwrap();
    }
    std::fs::write(
        dir.join("machine.toml"),
        "[[files]]\npath = \"run*.csv\"\nfile_is_life = true\n\n[columns]\ntimestamp = \"timestamp\"\n",
    )
    .unwrap();
    let table = data::load_machine_dir(&dir).unwrap();
    assert_eq!(table.n_lives(), 2);
    let r = ml::train(ModelType::Timeseries, &table, &params(), &ctx()).unwrap().report;
    assert!(
        r.warnings.iter().any(|w| w.contains("overlap in time") && w.contains("latest run only (960 of 1920 rows)")),
        "{:?}",
        r.warnings
    );
}

/// A current that idles near zero: its forecast bands never promise a negative ampere, and the answer carries
/// the machine's unit.
#[test]
fn forecasts_carry_the_unit_and_stay_in_the_physical_range() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("pump");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("timestamp,current\n");
    for i in 0..(40 * 24) {
        // Off at night (exactly 0), a daily load by day with some noise.
        let hour = i % 24;
        let load = if (7..19).contains(&hour) { 2.0 + (i as f64 * 0.7).sin() * 0.8 } else { 0.0 };
        let (month, day) = (1 + i / 24 / 31, 1 + i / 24 % 31);
        csv.push_str(&format!("2024-{month:02}-{day:02} {hour:02}:00:00,{load:.3}\n"));
    }
    std::fs::write(dir.join("current.csv"), csv).unwrap();
    std::fs::write(
        dir.join("machine.toml"),
        "[[files]]\npath = \"current.csv\"\n\n[columns]\ntimestamp = \"timestamp\"\n\n[units]\ncurrent = \"A\"\n",
    )
    .unwrap();
    let table = data::load_machine_dir(&dir).unwrap();
    let trained = ml::train(ModelType::Timeseries, &table, &params(), &ctx()).unwrap();
    let recent = ml::predict::recent_from_table(&table, &trained.payload, None).unwrap();
    let a = ml::predict::answer(&trained.payload, None, &recent, &UrgencyHours::default()).unwrap();
    let s = &a["sensors"][0];
    assert_eq!(s["unit"], "A", "{s}");
    for band in ["mean", "lo80", "lo95"] {
        let low = s[band].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).fold(f64::INFINITY, f64::min);
        assert!(low >= 0.0, "{band} goes to {low} A");
    }
    // The night hours really pull the raw lower bands below zero: the clamp is doing the work.
    let Payload::Forecast(m) = &trained.payload else { panic!("not a forecaster") };
    assert_eq!(m.sensors[0].floor, Some(0.0));
    let mut unclamped = m.clone();
    unclamped.sensors[0].floor = None;
    let raw = unclamped.predict(&recent).unwrap();
    assert!(raw.sensors[0].lo95.iter().any(|v| *v < 0.0), "the raw 95 % band never went below zero: {:?}", raw.sensors[0].lo95);
}

#[test]
fn nab_forecast_is_scored_on_held_out_weeks_with_intervals() {
    // NAB's office temperature has daily and weekly cycles; the model is chosen on the training tail only and
    // scored on the held-out final two weeks beside the best simple rule on the same origins.
    let Some(table) = example("nab-ambient-temperature") else { return };
    let r = ml::train(ModelType::Timeseries, &table, &params(), &ctx()).unwrap().report;
    eprintln!("NAB MASE {:.3} vs seasonal naive {:.3}", r.headline.value, r.headline.baseline);
    // The headline's baseline is the best of naive / daily / weekly seasonal naive on the same origins.
    assert!(r.headline.baseline_name.starts_with("best of naive"), "{:?}", r.headline);
    assert!(r.headline.value < r.headline.baseline, "MASE {} must beat the best simple rule {}", r.headline.value, r.headline.baseline);
    assert_eq!(r.metrics["per_sensor"][0]["seasons"], serde_json::json!([24, 168]), "daily and weekly cycles detected");
    assert!(r.headline.value.is_finite() && r.headline.baseline.is_finite());
    assert_eq!(r.metrics["test_origins"], 14);
    assert!(r.metrics["mape"].as_f64().unwrap() < 20.0, "24 h MAPE of an indoor temperature");
    let cov = r.metrics["coverage95"].as_f64().unwrap();
    assert!((0.90..=1.0).contains(&cov), "95 % intervals cover {cov}");
}

/// One run: 2,000 minutes of two noisy sensors that start normal, single-reading spikes scattered through the
/// scored part, and one sustained fault (rows 1,500..1,560).
fn spiky_run(dir: &Path) -> (Vec<usize>, std::ops::Range<usize>) {
    std::fs::create_dir_all(dir).unwrap();
    // Farther apart than the longest feature window (60 rows), so each spike is alone in the features.
    let spikes: Vec<usize> = (700..1450).step_by(100).collect();
    let fault = 1500..1560;
    let mut csv = String::from("datetime,a,b,anomaly\n");
    let mut seed = 11u64;
    let mut noise = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    for i in 0..2000usize {
        let (mut a, b) = (20.0 + noise(), 5.0 + 0.5 * noise());
        let faulty = fault.contains(&i);
        if spikes.contains(&i) {
            a += 9.0;
        }
        if faulty {
            a += 4.0;
        }
        csv.push_str(&format!("2026-01-0{} {:02}:{:02}:00,{a:.3},{b:.3},{}\n", 1 + i / 1440, i / 60 % 24, i % 60, u8::from(faulty)));
    }
    std::fs::write(dir.join("run.csv"), csv).unwrap();
    std::fs::write(
        dir.join("machine.toml"),
        "[[files]]\npath = \"run.csv\"\n\n[columns]\ntimestamp = \"datetime\"\nanomaly = \"anomaly\"\n\n[split]\nhealthy_head_rows = 600\n",
    )
    .unwrap();
    (spikes, fault)
}

/// k of n: with every reading on its own, single spikes alarm; with 3 of 5 they do not, the sustained fault
/// still does, the healthy alarm rate stays at the contamination it was calibrated for, the report says so, and
/// the per-row export and live predictions judge alarms the same way. A model written in bundle format 2,
/// before alarms could be confirmed, still loads and alarms on single readings.
#[test]
fn confirmed_alarms_ignore_single_spikes_and_keep_the_fault() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("spiky");
    let (spikes, fault) = spiky_run(&dir);
    let table = data::load_machine_dir(&dir).unwrap();
    let train = |k_of_n: [u32; 2]| {
        let p = TrainParams { alarm_k_of_n: k_of_n, ..params() };
        let trained = ml::train(ModelType::Anomaly, &table, &p, &ctx()).unwrap();
        let Payload::Anomaly(model) = trained.payload.clone() else { panic!("not an anomaly model") };
        let rows = model.score_table(&table).unwrap();
        (trained, model, rows)
    };
    let (_, single, single_rows) = train([1, 1]);
    let (mut trained, confirmed, confirmed_rows) = train([3, 5]);
    // A spike stays in the windowed features for a while, so the rows after it may still alarm: what k of n
    // removes is the alarm *at* a lone reading, and the flapping of alarms that come and go.
    let spikes_alarmed = |rows: &[ml::model::RowScore]| spikes.iter().filter(|&&i| rows[i].alarm).count();
    let onsets_outside =
        |rows: &[ml::model::RowScore]| (1..rows.len()).filter(|&i| rows[i].alarm && !rows[i - 1].alarm && !fault.contains(&i)).count();
    let fault_alarmed = |rows: &[ml::model::RowScore]| fault.clone().filter(|&i| rows[i].alarm).count();
    eprintln!(
        "spike readings alarmed: {} of {} single, {} confirmed; alarm onsets outside the fault: {} single, {} confirmed; fault rows alarmed: {} single, {} confirmed of {}",
        spikes_alarmed(&single_rows),
        spikes.len(),
        spikes_alarmed(&confirmed_rows),
        onsets_outside(&single_rows),
        onsets_outside(&confirmed_rows),
        fault_alarmed(&single_rows),
        fault_alarmed(&confirmed_rows),
        fault.len()
    );
    assert!(spikes_alarmed(&single_rows) >= spikes.len() / 2, "single readings alarm on spikes");
    // A lone reading confirms only when healthy noise happens to put two of the four before it over the
    // (recalibrated, lower) threshold too.
    assert!(spikes_alarmed(&confirmed_rows) * 4 <= spikes_alarmed(&single_rows), "lone readings mostly do not alarm");
    assert!(onsets_outside(&confirmed_rows) < onsets_outside(&single_rows), "fewer separate alarms");
    assert!(fault_alarmed(&confirmed_rows) >= fault.len() * 3 / 4, "the sustained fault still alarms");
    let r = &trained.report;
    assert_eq!(r.metrics["alarm_confirm"], "3 of the last 5 readings");
    assert!(r.target.contains("an alarm needing 3 of the last 5 readings"), "{}", r.target);
    let healthy = r.metrics["healthy_alarm_rate"].as_f64().unwrap();
    assert!(healthy <= 3.0 * params().contamination, "healthy alarm rate {healthy}");
    // An export row alarms exactly when 3 of the last 5 raw scores were over the threshold.
    let raw = ml::model::AnomalyModel { confirm: ml::Confirm::SINGLE, ..confirmed.clone() }.score_table(&table).unwrap();
    for (i, row) in confirmed_rows.iter().enumerate() {
        let over = raw[i.saturating_sub(4)..=i].iter().filter(|r| r.alarm).count();
        assert_eq!(row.alarm, over >= 3, "row {i}");
    }
    // Live: a window ending on a spike alarms alone, not confirmed; one inside the fault alarms confirmed.
    let window = |end: usize| ml::model::Recent {
        timestamps: table.timestamps[end - 120..end].to_vec(),
        sensors: table.sensors.iter().map(|s| (s.name.clone(), s.values[end - 120..end].to_vec())).collect(),
        time_in_life_h: None,
    };
    let spike = spikes[spikes.len() / 2];
    assert!(single.predict(&window(spike + 1)).unwrap().is_anomaly);
    assert!(!confirmed.predict(&window(spike + 1)).unwrap().is_anomaly);
    let in_fault = confirmed.predict(&window(fault.start + 30)).unwrap();
    assert!(in_fault.is_anomaly, "{in_fault:?}");
    assert_eq!(in_fault.anomaly_score, confirmed_rows[fault.start + 29].score, "live and export agree");
    // The daemon's own answer (the machine's latest rows) takes the readings the confirmation needs.
    let latest = ml::predict::recent_from_table(&table, &Payload::Anomaly(confirmed.clone()), None).unwrap();
    let last = confirmed.predict(&latest).unwrap();
    assert_eq!(last.anomaly_score, confirmed_rows[table.n_rows() - 1].score, "the latest rows, confirmed");
    // Round trip through the bundle keeps the confirmation.
    let out = d.path().join("models");
    write_model_dir(&out, &mut trained).unwrap();
    let (header, loaded) = Payload::load(&out.join(ml::MODEL_FILE)).unwrap();
    assert_eq!(header.format_version, ml::bundle::FORMAT_VERSION);
    let Payload::Anomaly(loaded) = loaded else { panic!("not an anomaly model") };
    assert_eq!(loaded.confirm, confirmed.confirm);
    // Format 2 wrote the same fields without those added at the end since (confirmation, run thresholds, the
    // trailing reference).
    let v2_model = ml::model::AnomalyModel { confirm: ml::Confirm::SINGLE, ..single.clone() };
    let added =
        postcard::to_stdvec(&(v2_model.confirm, &v2_model.run_thresholds, v2_model.live_threshold, v2_model.trailing)).unwrap().len();
    let v3 = postcard::to_stdvec(&Payload::Anomaly(v2_model)).unwrap();
    let v2_payload = &v3[..v3.len() - added];
    let mut v2_header = header.clone();
    v2_header.format_version = 2;
    let json = serde_json::to_string(&v2_header).unwrap();
    let mut bytes = ml::bundle::MAGIC.to_vec();
    bytes.extend(2u32.to_le_bytes());
    bytes.extend((json.len() as u32).to_le_bytes());
    bytes.extend(json.as_bytes());
    bytes.extend((v2_payload.len() as u64).to_le_bytes());
    bytes.extend(v2_payload);
    let crc = ml::bundle::crc32(&bytes);
    bytes.extend(crc.to_le_bytes());
    let old = d.path().join("v2.mwm");
    std::fs::write(&old, bytes).unwrap();
    let (h2, p2) = Payload::load(&old).unwrap();
    assert_eq!(h2.format_version, 2);
    let Payload::Anomaly(old_model) = p2 else { panic!("not an anomaly model") };
    assert!(old_model.confirm.is_single());
    assert!(old_model.predict(&window(spike + 1)).unwrap().is_anomaly, "format 2 alarms on single readings, as it did");
    // Format 3 is format 4 without a grid in the header: it loads as a model that takes readings as recorded.
    // Both end their anomaly payload before the trailing reference (`None`: one zero byte today).
    let mut v3_header = header.clone();
    v3_header.format_version = 3;
    let mut v3_payload = postcard::to_stdvec(&Payload::Anomaly(confirmed.clone())).unwrap();
    assert_eq!(v3_payload.pop(), Some(0));
    let json = serde_json::to_string(&v3_header).unwrap();
    assert!(!json.contains("grid"), "a model trained as recorded names no grid: {json}");
    let mut bytes = ml::bundle::MAGIC.to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend((json.len() as u32).to_le_bytes());
    bytes.extend(json.as_bytes());
    bytes.extend((v3_payload.len() as u64).to_le_bytes());
    bytes.extend(&v3_payload);
    let crc = ml::bundle::crc32(&bytes);
    bytes.extend(crc.to_le_bytes());
    let v3 = d.path().join("v3.mwm");
    std::fs::write(&v3, bytes).unwrap();
    let (h3, live) = ml::model::LiveModel::load(&v3).unwrap();
    assert_eq!((h3.format_version, live.grid), (3, None));
    let Payload::Anomaly(v3_model) = live.payload else { panic!("not an anomaly model") };
    assert_eq!(v3_model.confirm, confirmed.confirm);
}

/// NAB's traffic occupancy (5-minute readings with gaps, 4,668 rows): no single candidate wins the backtest by
/// more than its noise, so the mean of the top three is chosen (the robust medians among them), and on the
/// four held-out days it beats the best simple rule; the combination refits from its members' own seasons
/// when predicting.
#[test]
fn nab_traffic_forecast_is_the_mean_of_the_backtests_top_three() {
    let Some(table) = example("nab-windows/occupancy_t4013") else { return };
    let trained = ml::train(ModelType::Timeseries, &table, &params(), &ctx()).unwrap();
    let r = &trained.report;
    let chosen = r.metrics["per_sensor"][0]["model"].as_str().unwrap().to_string();
    eprintln!("occupancy_t4013: {chosen}, MASE {:.3} vs best simple rule {:.3}", r.headline.value, r.headline.baseline);
    assert!(chosen.starts_with("combination(") && chosen.matches(" + ").count() == 2, "{chosen}");
    assert!(chosen.contains("median"), "{chosen}");
    assert_eq!(r.metrics["test_origins"], 4, "only the held-out days are scored");
    assert!(r.headline.value < r.headline.baseline, "MASE {} vs {}", r.headline.value, r.headline.baseline);
    let Payload::Forecast(model) = &trained.payload else { panic!("not a forecaster") };
    let n = table.n_rows();
    let recent = ml::model::Recent {
        timestamps: table.timestamps[n - 2000..n - 10].to_vec(),
        sensors: table.sensors.iter().map(|s| (s.name.clone(), s.values[n - 2000..n - 10].to_vec())).collect(),
        time_in_life_h: None,
    };
    let answer = model.predict(&recent).unwrap();
    assert_eq!(answer.sensors[0].model, "combination");
    assert!(answer.sensors[0].mean.iter().all(|v| v.is_finite()));
}

/// A 1-minute machine re-recorded at 1 s: each minute's row becomes 60 readings scattered symmetrically
/// around it, so their mean is the minute's value and their spread is noise the minute never had.
fn at_one_second(minutes: &Table) -> Table {
    let n = minutes.n_rows();
    let expand = |col: &[f64]| -> Vec<f64> { col.iter().flat_map(|&v| std::iter::repeat_n(v, 60)).collect() };
    let mut t = minutes.clone();
    t.timestamps = (0..n * 60).map(|j| minutes.timestamps[j / 60] + (j % 60) as f64).collect();
    t.life = minutes.life.iter().flat_map(|&l| std::iter::repeat_n(l, 60)).collect();
    t.given_split = minutes.given_split.as_ref().map(|g| g.iter().flat_map(|&s| std::iter::repeat_n(s, 60)).collect());
    for s in &mut t.sensors {
        let spread = 0.25;
        s.values = (0..n * 60).map(|j| s.values[j / 60] + if j % 2 == 0 { spread } else { -spread }).collect();
    }
    t.label = minutes.label.as_deref().map(expand);
    t.rul = minutes.rul.as_deref().map(expand);
    t.anomaly = minutes.anomaly.as_deref().map(expand);
    t.interval_s = 1.0;
    t
}

/// The data-path issue's check: readings at 1 s put onto a 1-minute grid train the models the same machine
/// recorded at 1 minute trains, and the models answer raw 1 s readings as the 1-minute models answer minutes.
#[test]
fn one_second_readings_on_a_minute_grid_train_the_minute_models() {
    let d = tempfile::tempdir().unwrap();
    let opts =
        FleetOptions { out_dir: d.path().to_path_buf(), machines: 1, seed: 7, rows: 6_000, interval_s: 60.0, ..FleetOptions::default() };
    let fleet = simulate_fleet(&opts).unwrap();
    let mut minutes = data::load_machine(d.path(), &fleet[0].id).unwrap();
    // Answers come from the current life: end the history with the last life long enough to fill every window.
    let longest = minutes.life_ranges().into_iter().map(|(_, r)| r).rfind(|r| r.len() > 600).unwrap();
    let keep = |c: &mut Vec<f64>| c.truncate(longest.end);
    keep(&mut minutes.timestamps);
    minutes.life.truncate(longest.end);
    minutes.given_split = None;
    minutes.sensors.iter_mut().for_each(|s| keep(&mut s.values));
    minutes.label.as_mut().map(keep);
    minutes.rul.as_mut().map(keep);
    let seconds = at_one_second(&minutes);
    let grid = data::grid::Grid { step_s: 60.0, stats: vec![data::grid::GridStat::Mean] };
    let gridded = data::grid::onto_grid(&seconds, &grid, "test".into()).unwrap();
    assert_eq!(gridded.timestamps, minutes.timestamps);
    assert_eq!(
        (gridded.life.clone(), gridded.given_split.clone(), gridded.rul.clone()),
        (minutes.life.clone(), minutes.given_split.clone(), minutes.rul.clone())
    );
    assert_eq!(gridded.interval_s, 60.0);
    for (g, m) in gridded.sensors.iter().zip(&minutes.sensors) {
        assert_eq!(g.name, m.name);
        let worst =
            g.values.iter().zip(&m.values).filter(|(a, b)| a.is_finite() || b.is_finite()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-9, "{}: a step's mean is the minute's value ({worst})", g.name);
    }
    // Lives of about 14 h at this size: a horizon inside them.
    let params = TrainParams { horizon_hours: 4.0, forecast_hours: 6.0, ..params() };
    for t in ModelType::ALL {
        let on_minutes = ml::train(t, &minutes, &params, &ctx()).unwrap();
        let on_grid = ml::train(t, &gridded, &params, &ctx()).unwrap();
        let (a, b) = (&on_minutes.report.headline, &on_grid.report.headline);
        assert!(
            (a.value - b.value).abs() <= 0.01 * a.value.abs().max(1e-9),
            "{t}: {} {} on minutes vs {} on the grid",
            a.metric,
            a.value,
            b.value
        );
        assert_eq!(
            on_grid.report.data.grid.as_ref().map(|g| g.raw_rows),
            Some(seconds.n_rows()),
            "{t}: the report says what was aggregated"
        );
        // The gridded model answers the raw 1 s readings of the current life as the minute model answers its minutes.
        let raw = ml::predict::recent_from_table(&seconds, &on_grid.payload, Some(&grid)).unwrap();
        assert!(raw.timestamps.len() > 60, "{t}: raw readings, not steps");
        let from_seconds = ml::predict::answer(&on_grid.payload, Some(&grid), &raw, &UrgencyHours::default()).unwrap();
        let from_minutes = {
            let recent = ml::predict::recent_from_table(&minutes, &on_minutes.payload, None).unwrap();
            ml::predict::answer(&on_minutes.payload, None, &recent, &UrgencyHours::default()).unwrap()
        };
        let number = |v: &serde_json::Value| -> f64 {
            ["failure_probability", "rul_hours", "anomaly_score"]
                .iter()
                .find_map(|k| v[k].as_f64())
                .or_else(|| v["sensors"][0]["mean"][0].as_f64())
                .unwrap_or_else(|| panic!("{t}: no number in {v}"))
        };
        let (x, y) = (number(&from_minutes), number(&from_seconds));
        assert!((x - y).abs() <= 0.02 * x.abs().max(0.05), "{t}: {x} from minutes vs {y} from raw seconds\n{from_minutes}\n{from_seconds}");
    }
}

/// More training rows than `max_train_rows` (or than the time limit allows): the tree models fit on an even
/// share of every life, the report says so, every test row is still scored, and the error stays close.
#[test]
fn training_rows_over_the_cap_are_thinned_across_lives_and_every_test_row_kept() {
    let d = tempfile::tempdir().unwrap();
    let table = small_machine(d.path(), 30_000);
    let full = ml::train(ModelType::Regression, &table, &params(), &ctx()).unwrap().report;
    let capped = TrainParams { max_train_rows: 4_000, ..params() };
    let thin = ml::train(ModelType::Regression, &table, &capped, &ctx()).unwrap().report;
    eprintln!("rmse {} on {} rows, {} on {} rows", full.headline.value, full.split.train_rows, thin.headline.value, thin.split.train_rows);
    assert!(full.split.train_rows > 4_000 && thin.split.train_rows <= 4_000, "{} → {}", full.split.train_rows, thin.split.train_rows);
    assert!(thin.split.train_rows >= 2_000, "the stride keeps at least half the cap: {}", thin.split.train_rows);
    assert!(thin.split.val_rows < full.split.val_rows);
    assert_eq!((thin.split.test_rows, thin.split.train_lives), (full.split.test_rows, full.split.train_lives));
    let note = thin.split.notes.iter().find(|n| n.contains("thinned")).unwrap_or_else(|| panic!("{:?}", thin.split.notes));
    assert!(note.contains("max_train_rows = 4000") && note.contains("test rows are all kept"), "{note}");
    assert!(thin.headline.value < 1.25 * full.headline.value, "{} vs {}", thin.headline.value, full.headline.value);
    assert!(thin.headline.improvement > 0.05, "still beats its baseline: {:?}", thin.headline);
    // A time limit too short for every row thins too, and says so.
    let hurried = TrainParams { time_limit_s: 1.0, ..params() };
    let quick = ml::train(ModelType::Classification, &table, &hurried, &ctx()).unwrap().report;
    assert!(quick.split.notes.iter().any(|n| n.contains("the time limit of 1 s allows about")), "{:?}", quick.split.notes);
}

/// One 5-minute series over ten days whose normal level steps twice and stays (a load that changes for good),
/// with three short spikes inside labelled windows; `reference` is written as `[anomaly] reference` when given.
/// Returns the windows' row ranges.
fn wandering_series(dir: &Path, reference: Option<&str>) -> Vec<std::ops::Range<usize>> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let spikes = [1500usize, 2300, 2700];
    let windows: Vec<std::ops::Range<usize>> = spikes.iter().map(|&s| s - 20..s + 20).collect();
    let mut csv = String::from("timestamp,load,anomaly\n");
    for t in 0..3000usize {
        let level = match t {
            0..1000 => 50.0,
            1000..2000 => 80.0,
            _ => 65.0,
        };
        let daily = 5.0 * (t as f64 * std::f64::consts::TAU / 288.0).sin();
        let spike = if spikes.iter().any(|&s| (s..s + 4).contains(&t)) { 25.0 } else { 0.0 };
        let label = u8::from(windows.iter().any(|w| w.contains(&t)));
        csv.push_str(&format!("{},{:.3},{label}\n", 1_700_000_000 + 300 * t, level + daily + 2.0 * noise() + spike));
    }
    std::fs::write(dir.join("series.csv"), csv).unwrap();
    let anomaly = reference.map_or(String::new(), |r| format!("\n[anomaly]\nreference = \"{r}\"\n"));
    let toml = format!(
        "[[files]]\npath = \"series.csv\"\n\n[columns]\ntimestamp = \"timestamp\"\nanomaly = \"anomaly\"\n\n[split]\nhealthy_head_rows = 450\n{anomaly}"
    );
    std::fs::write(dir.join("machine.toml"), toml).unwrap();
    windows
}

/// A level the series settles into is normal against a trailing reference and abnormal against the first
/// hours: with `[anomaly] reference = "trailing"` every spike is caught and few other readings alarm; against
/// the healthy head (`reference = "healthy"`) the later levels alarm throughout; with neither, the trainer
/// sees that and chooses the trailing reference itself, saying so.
#[test]
fn a_trailing_reference_catches_spikes_where_the_normal_level_moves_on() {
    let d = tempfile::tempdir().unwrap();
    let outside_rate = |reference: Option<&str>| {
        let dir = d.path().join(reference.unwrap_or("unsaid"));
        let windows = wandering_series(&dir, reference);
        let table = data::load_machine_dir(&dir).unwrap();
        let trained = ml::train(ModelType::Anomaly, &table, &params(), &ctx()).unwrap();
        let Payload::Anomaly(model) = trained.payload else { panic!("not an anomaly model") };
        let trailing = model.trailing.is_some();
        assert_eq!(trailing, reference != Some("healthy"), "{reference:?}");
        let scores = model.score_table(&table).unwrap();
        let inside = |r: usize| windows.iter().any(|w| w.contains(&r));
        let missed = windows.iter().filter(|w| !scores[(*w).clone()].iter().any(|s| s.alarm)).count();
        let outside: Vec<bool> = (450..scores.len()).filter(|&r| !inside(r)).map(|r| scores[r].alarm).collect();
        let rate = outside.iter().filter(|a| **a).count() as f64 / outside.len() as f64;
        eprintln!(
            "reference {}: {missed} of 3 windows missed, alarms on {:.1} % of the rows outside them",
            if trailing { "trailing" } else { "healthy head" },
            rate * 100.0
        );
        (model, table, trained.report, missed, rate)
    };
    let (model, table, report, missed, rate) = outside_rate(Some("trailing"));
    assert_eq!(missed, 0);
    assert!(rate <= 0.05, "{rate}");
    assert!(report.split.notes.iter().any(|n| n.contains("reference trails")), "{:?}", report.split.notes);
    assert_eq!(report.leaderboard[0].model, "trailing robust distance");
    assert!(report.target.contains("288 readings before it (24.00 h)"), "{}", report.target);
    assert!(!report.warnings.iter().any(|w| w.contains("spans")), "{:?}", report.warnings);
    assert!(report.metrics["recall"].as_f64().unwrap() > 0.0, "{}", report.metrics);
    // Live answers judge the last reading against the readings before it, as the table's scores did.
    let recent = |end: usize| ml::model::Recent {
        timestamps: table.timestamps[..end].to_vec(),
        sensors: table.sensors.iter().map(|s| (s.name.clone(), s.values[..end].to_vec())).collect(),
        time_in_life_h: None,
    };
    let scores = model.score_table(&table).unwrap();
    for end in [2301, 2900] {
        let a = model.predict(&recent(end)).unwrap();
        assert_eq!((a.anomaly_score, a.threshold, a.is_anomaly), (scores[end - 1].score, scores[end - 1].threshold, scores[end - 1].alarm));
    }
    assert!(model.predict(&recent(2301)).unwrap().is_anomaly);
    let (_, _, _, _, head_rate) = outside_rate(Some("healthy"));
    assert!(head_rate > 0.2, "against the first hours the later levels alarm: {head_rate}");
    let (_, _, unsaid, missed, rate) = outside_rate(None);
    assert!((missed, rate <= 0.05) == (0, true), "chosen by the trainer: {missed} missed, {rate}");
    assert!(unsaid.warnings.iter().any(|w| w.contains("normal range moves beyond its start")), "{:?}", unsaid.warnings);
    assert!(!report.warnings.iter().any(|w| w.contains("normal range moves")), "chosen in machine.toml, nothing to explain");

    // trailing_hours belongs to a trailing reference; a bad value says what fits.
    let dir = d.path().join("trailing");
    let toml = std::fs::read_to_string(dir.join("machine.toml")).unwrap();
    std::fs::write(dir.join("machine.toml"), toml.replace("reference = \"trailing\"", "trailing_hours = 12")).unwrap();
    let e = data::load_machine_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("reference = \\\"trailing\\\"") || e.contains("reference = \"trailing\""), "{e}");
    std::fs::write(dir.join("machine.toml"), toml.replace("reference = \"trailing\"", "reference = \"trailing\"\ntrailing_hours = -1"))
        .unwrap();
    let e = data::load_machine_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("positive number of hours"), "{e}");
    // Half an hour of 5-minute readings is too few to judge by: the window is widened, and the report says so.
    std::fs::write(dir.join("machine.toml"), toml.replace("reference = \"trailing\"", "reference = \"trailing\"\ntrailing_hours = 0.5"))
        .unwrap();
    let table = data::load_machine_dir(&dir).unwrap();
    let short = ml::train(ModelType::Anomaly, &table, &params(), &ctx()).unwrap().report;
    assert!(short.warnings.iter().any(|w| w.contains("spans 30 readings (2.50 h) rather than 0.5 h")), "{:?}", short.warnings);
}
