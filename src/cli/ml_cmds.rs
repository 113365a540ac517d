//! `train`, `predict`, `inspect-model`, `eval`.
use super::DataDirArg;
use super::data_cmds::load_any;
use crate::data::Table;
use crate::ml::model::{LiveModel, Payload, UrgencyHours};
use crate::ml::report::Report;
use crate::ml::{self, Event, ModelType, PauseGate, Quality, TrainContext, TrainParams};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Machine id, or a path to a machine folder (e.g. examples/ai4i2020).
    machine: String,
    #[command(flatten)]
    data: DataDirArg,
    /// Which models: all, or a comma-separated list of classification, regression, anomaly, timeseries.
    #[arg(long, default_value = "all")]
    models: String,
    /// Soft time limit per model, seconds.
    #[arg(long, default_value_t = 900.0)]
    time_limit: f64,
    /// Training threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, value_enum, default_value = "standard")]
    quality: QualityArg,
    /// Classification target when the data has no label: failure within this many hours.
    #[arg(long, default_value_t = 48.0)]
    horizon_hours: f64,
    /// Share of healthy rows the anomaly threshold lets through.
    #[arg(long, default_value_t = 0.02)]
    contamination: f64,
    /// An anomaly alarm needs K of the last N readings over the threshold, e.g. 3/5 (default 1/1).
    #[arg(long, value_name = "K/N", default_value = "1/1", value_parser = parse_k_of_n)]
    alarm_k_of_n: [u32; 2],
    #[arg(long, default_value_t = 24.0)]
    forecast_hours: f64,
    /// Sensors to leave out (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// The classifier and RUL model fit on at most this many training rows, taken evenly across lives.
    #[arg(long, default_value_t = TrainParams::default().max_train_rows)]
    max_train_rows: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where models go: OUT/<machine>/<type>/model.mwm + report.json
    #[arg(long, default_value = "models")]
    out: PathBuf,
    /// Print every report as JSON after the summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    grid: GridArgs,
}

/// The training grid, as `[data]` grid / grid_rows / grid_stats set it for the daemon.
#[derive(clap::Args)]
pub struct GridArgs {
    /// Training grid: auto (aggregate machines over --grid-rows rows onto the finest step that fits), off, or a
    /// step such as "1 min" that finer readings are aggregated onto.
    #[arg(long, default_value = "auto", value_parser = crate::data::grid::GridChoice::parse)]
    grid: crate::data::grid::GridChoice,
    /// With --grid auto, machines with more rows than this are aggregated.
    #[arg(long, default_value_t = crate::data::grid::GridSetting::default().max_rows)]
    grid_rows: usize,
    /// What each grid step keeps of a sensor (comma-separated): mean (required), min, max, std, last, count.
    #[arg(long, value_delimiter = ',', default_value = "mean,std", value_parser = parse_grid_stat)]
    grid_stats: Vec<crate::data::grid::GridStat>,
}

fn parse_grid_stat(s: &str) -> Result<crate::data::grid::GridStat, String> {
    crate::data::grid::GridStat::parse(s.trim()).ok_or_else(|| format!("{s:?}: one of mean, min, max, std, last, count"))
}

impl GridArgs {
    fn setting(&self) -> Result<crate::data::grid::GridSetting> {
        crate::data::grid::check_stats(&self.grid_stats).map_err(|e| anyhow::anyhow!("--grid-stats {e}"))?;
        Ok(crate::data::grid::GridSetting { choice: self.grid, max_rows: self.grid_rows, stats: self.grid_stats.clone() })
    }

    /// The machine loaded onto the grid the arguments call for, saying so when it was aggregated.
    pub fn load(&self, data_dir: &std::path::Path, machine: &str) -> Result<Table> {
        let table = super::data_cmds::load_any_on_grid(data_dir, machine, &self.setting()?)?;
        if let Some(g) = &table.grid {
            eprintln!("{}; median {} readings a step, {} empty steps left as gaps", g.why, g.readings_per_step, g.empty_steps);
        }
        Ok(table)
    }
}

fn parse_k_of_n(s: &str) -> Result<[u32; 2], String> {
    let bad = || format!("{s:?}: give K/N, e.g. 3/5 (3 of the last 5 readings)");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    Ok([k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?])
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum QualityArg {
    Fast,
    Standard,
    Best,
}

impl TrainArgs {
    fn params(&self) -> Result<TrainParams> {
        let p = TrainParams {
            time_limit_s: self.time_limit,
            threads: self.threads.unwrap_or_else(|| TrainParams::default().threads),
            quality: match self.quality {
                QualityArg::Fast => Quality::Fast,
                QualityArg::Standard => Quality::Standard,
                QualityArg::Best => Quality::Best,
            },
            seed: self.seed,
            horizon_hours: self.horizon_hours,
            rul_cap_hours: None,
            contamination: self.contamination,
            alarm_k_of_n: self.alarm_k_of_n,
            forecast_hours: self.forecast_hours,
            exclude_sensors: self.exclude.clone(),
            max_train_rows: self.max_train_rows,
        };
        p.validate().map_err(anyhow::Error::msg)?;
        Ok(p)
    }
}

/// One model's outcome for the summary table.
struct Outcome {
    model_type: ModelType,
    result: Result<Report, String>,
}

pub fn train(a: &TrainArgs) -> Result<()> {
    let types = ModelType::parse_list(&a.models).map_err(anyhow::Error::msg)?;
    let params = a.params()?;
    let t0 = Instant::now();
    let table = a.grid.load(&a.data.dir()?, &a.machine)?;
    eprintln!(
        "loaded {} ({} rows, {} sensors) in {:.2} s",
        table.machine_id,
        table.n_rows(),
        table.sensors.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut outcomes = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let result = train_one(*t, &table, &params, &a.out, i, types.len()).map_err(|e| format!("{e:#}"));
        outcomes.push(Outcome { model_type: *t, result });
    }
    print_summary(&outcomes, t0.elapsed().as_secs_f64());
    if a.json {
        for o in &outcomes {
            if let Ok(r) = &o.result {
                println!("{}", serde_json::to_string_pretty(r)?);
            }
        }
    }
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.model_type.as_str()).collect();
    if failed.len() == outcomes.len() {
        bail!("no model could be trained");
    }
    // Scripts and systemd units read the exit code: a partial success must not look like a full one.
    if !failed.is_empty() {
        bail!("{} of {} models failed: {} (the others were saved)", failed.len(), outcomes.len(), failed.join(", "));
    }
    Ok(())
}

fn train_one(t: ModelType, table: &Table, params: &TrainParams, out: &Path, index: usize, total: usize) -> Result<Report> {
    let bar = progress_bar(t, index, total);
    let b2 = bar.clone();
    let last_stage = Arc::new(Mutex::new(String::new()));
    let sink = Arc::new(move |e: &Event| match e {
        Event::Progress { fraction, stage, message } => {
            b2.set_position((fraction * 1000.0) as u64);
            b2.set_message(format!("{stage}: {message}"));
            if b2.is_hidden()
                && let Ok(mut last) = last_stage.lock()
                && *last != *stage
            {
                eprintln!("[{t}] {:>3.0}% {stage}: {message}", fraction * 100.0);
                *last = stage.clone();
            }
        }
        Event::Log { .. } | Event::Leaderboard { .. } => {}
    });
    let ctx = TrainContext::new(
        sink,
        Arc::new(AtomicBool::new(false)),
        Arc::new(PauseGate::default()),
        Duration::from_secs_f64(params.time_limit_s),
        params.threads,
    );
    let result = ml::train(t, table, params, &ctx);
    bar.finish_and_clear();
    let mut trained = result.with_context(|| format!("{t} model"))?;
    let dir = out.join(&table.machine_id).join(t.as_str());
    crate::registry::write_model_dir(&dir, &mut trained).with_context(|| format!("saving the {t} model to {}", dir.display()))?;
    eprintln!("[{t}] saved {} ({} bytes)", dir.join(ml::MODEL_FILE).display(), trained.report.model_size_bytes);
    Ok(trained.report)
}

fn progress_bar(t: ModelType, index: usize, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(1000);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {percent:>3}% {elapsed:>4} {wide_msg}").map(|s| s.progress_chars("=> "));
    if let Ok(s) = style {
        bar.set_style(s);
    }
    bar.set_prefix(format!("({}/{}) {}", index + 1, total, t));
    bar
}

fn print_summary(outcomes: &[Outcome], total_s: f64) {
    println!("\n{:<15} {:<14} {:>10} {:>12} {:>10} {:>9} {:>10}", "model", "metric", "value", "baseline", "better by", "time s", "size KB");
    let mut size = 0u64;
    for o in outcomes {
        match &o.result {
            Ok(r) => {
                let h = &r.headline;
                size += r.model_size_bytes;
                println!(
                    "{:<15} {:<14} {:>10.4} {:>12.4} {:>9.0}% {:>9.2} {:>10.1}",
                    o.model_type.as_str(),
                    h.metric,
                    h.value,
                    h.baseline,
                    h.improvement * 100.0,
                    r.train_seconds,
                    r.model_size_bytes as f64 / 1024.0
                );
                for w in &r.warnings {
                    println!("{:<15} warning: {w}", "");
                }
            }
            Err(e) => println!("{:<15} FAILED: {e}", o.model_type.as_str()),
        }
    }
    println!(
        "total {:.1} s, models {:.1} KB, peak RSS {:.0} MB",
        total_s,
        size as f64 / 1024.0,
        crate::util::peak_rss_bytes().unwrap_or(0) as f64 / 1e6
    );
}

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Machine id, or a path to a machine folder.
    machine: String,
    #[command(flatten)]
    data: DataDirArg,
    /// Folder the models were saved to by `millwright train --out`.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Also write every row's anomaly score to this CSV (timestamp, run, score, threshold, alarm, the data's
    /// label), for scoring alarms row by row; `-` for standard output (the answers then go to stderr).
    #[arg(long, value_name = "CSV")]
    rows: Option<PathBuf>,
}

pub fn predict(a: &PredictArgs) -> Result<()> {
    let data_dir = a.data.dir()?;
    let (machine_id, folder) = super::data_cmds::machine_of(&a.machine);
    if folder.is_none() && !crate::data::machine_dir(&data_dir, &crate::data::MachineId::parse(&machine_id)?).is_dir() {
        bail!(
            "unknown machine {machine_id:?}: no folder {} — `millwright machines` lists them",
            data_dir.join("machines").join(&machine_id).display()
        );
    }
    if let Some(out) = &a.rows
        && !a.models.join(&machine_id).join(ModelType::Anomaly.as_str()).join(ml::MODEL_FILE).is_file()
    {
        bail!("--rows {}: no anomaly model for {machine_id} in {} — train it first", out.display(), a.models.display());
    }
    let mut answers = serde_json::Map::new();
    let mut live = Vec::new();
    for t in ModelType::ALL {
        let path = a.models.join(&machine_id).join(t.as_str()).join(ml::MODEL_FILE);
        if !path.is_file() {
            answers.insert(
                t.as_str().into(),
                serde_json::json!({ "missing": format!("no {t} model at {} — train it first", path.display()) }),
            );
            continue;
        }
        live.push((t, LiveModel::load(&path)?));
    }
    // As the daemon: only the latest rows each model needs, read onto its grid while the files stream by.
    let caps = crate::data::Caps::default();
    let tails = ml::predict::history_tails(live.iter().map(|(_, (_, m))| (&m.payload, m.grid.as_ref())), |tail, grid| match &folder {
        Some(dir) => crate::data::load_machine_dir_tail(dir, &caps, tail, grid),
        None => crate::data::load_machine_tail(&data_dir, &machine_id, &caps, tail, grid),
    })?;
    for (t, (header, model)) in &live {
        let answer = ml::predict::answer_from_tails(&model.payload, model.grid.as_ref(), &tails, &UrgencyHours::default())
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        answers.insert(t.as_str().into(), serde_json::json!({ "created_at": header.created_at, "answer": answer }));
        if let (Some(out), Payload::Anomaly(anomaly)) = (&a.rows, &model.payload) {
            // Every row is scored (the whole history is read for this export), on the grid the model was
            // trained on: one line per step.
            let table = load_any(&data_dir, &a.machine)?;
            match &model.grid {
                Some(g) => write_row_scores(out, anomaly, &crate::data::grid::onto_grid(&table, g, String::new())?)?,
                None => write_row_scores(out, anomaly, &table)?,
            }
        }
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(answers))?;
    if a.rows.as_deref() == Some(Path::new("-")) {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

fn write_row_scores(out: &Path, model: &ml::model::AnomalyModel, table: &Table) -> Result<()> {
    use std::io::Write;
    let scores = model.score_table(table)?;
    let mut text = String::from("timestamp,run,score,threshold,alarm,label\n");
    for s in &scores {
        let ts = chrono::DateTime::from_timestamp_millis((s.timestamp * 1000.0).round() as i64)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default();
        let label = s.label.filter(|l| l.is_finite()).map(|l| l.to_string()).unwrap_or_default();
        text.push_str(&format!("{ts},{},{:.6},{:.6},{},{label}\n", s.run, s.score, s.threshold, u8::from(s.alarm)));
    }
    if out == Path::new("-") {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        crate::util::fsx::write_atomic(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("{} rows scored into {}", scores.len(), out.display());
    }
    Ok(())
}

pub fn inspect_model(path: &Path) -> Result<()> {
    let (header, payload) = Payload::load(path)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("{}", serde_json::to_string_pretty(&header)?);
    println!("size      {size} bytes");
    println!("summary   {}", ml::predict::describe(&payload));
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A shared dataset (cmapss-fd001, ai4i2020, skab-valve1, nab-ambient-temperature), a machine id or a folder.
    target: String,
    #[command(flatten)]
    data: DataDirArg,
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, value_enum, default_value = "standard")]
    quality: QualityArg,
}

pub fn eval(a: &EvalArgs) -> Result<()> {
    let table = match crate::bench::example_dir(&a.target) {
        Some(d) => crate::data::load_machine_dir(&d)?,
        None => load_any(&a.data.dir()?, &a.target)?,
    };
    let params = TrainParams {
        threads: a.threads.unwrap_or_else(|| TrainParams::default().threads),
        quality: match a.quality {
            QualityArg::Fast => Quality::Fast,
            QualityArg::Standard => Quality::Standard,
            QualityArg::Best => Quality::Best,
        },
        ..TrainParams::default()
    };
    let rows = crate::bench::run_protocol(&table, &params)?;
    println!(
        "{:<26} {:<15} {:<22} {:>10} {:>10} {:>9} {:>10} {:>10}",
        "dataset", "model", "metric", "value", "baseline", "train s", "peak MB", "size KB"
    );
    for r in rows {
        println!(
            "{:<26} {:<15} {:<22} {:>10.4} {:>10.4} {:>9.2} {:>10.0} {:>10.1}",
            table.machine_id,
            r.model_type,
            r.metric,
            r.value,
            r.baseline,
            r.train_seconds,
            r.peak_rss_bytes as f64 / 1e6,
            r.model_size_bytes as f64 / 1024.0
        );
    }
    Ok(())
}
