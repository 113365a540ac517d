//! `simulate`, `machines`, `inspect-data`.
use crate::data::{self, Table};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Output folder; machines go to OUT/machines/<id>/
    #[arg(long, default_value = "data", env = "MILLWRIGHT_DATA_DIR")]
    out: PathBuf,
    /// Number of machines (families repeat with new serial numbers past 10).
    #[arg(long, default_value_t = 10)]
    machines: usize,
    /// Seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rows per machine.
    #[arg(long, default_value_t = 50_000)]
    rows: usize,
    /// Seconds between rows.
    #[arg(long, default_value_t = 3600.0)]
    interval: f64,
    /// File format of the legacy layout.
    #[arg(long, value_enum, default_value = "parquet")]
    format: FormatArg,
    /// Sensors per machine at least: past a family's own (6–9), noisy rescaled copies of them are added.
    #[arg(long, default_value_t = 0)]
    sensors: usize,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum FormatArg {
    Parquet,
    Csv,
}

pub fn simulate(a: &SimulateArgs) -> Result<()> {
    anyhow::ensure!(a.machines >= 1, "--machines must be at least 1");
    anyhow::ensure!(a.rows >= 100, "--rows must be at least 100");
    anyhow::ensure!(a.interval.is_finite() && a.interval > 0.0, "--interval must be a positive number of seconds");
    let opts = data::simulate::FleetOptions {
        out_dir: a.out.clone(),
        machines: a.machines,
        seed: a.seed,
        rows: a.rows,
        interval_s: a.interval,
        format: match a.format {
            FormatArg::Parquet => data::write::Format::Parquet,
            FormatArg::Csv => data::write::Format::Csv,
        },
        min_sensors: a.sensors,
    };
    let t0 = Instant::now();
    let fleet = data::simulate::simulate_fleet(&opts).context("simulating the demo fleet")?;
    for m in &fleet {
        println!("{:<40} {:<11} {:>7} rows {:>3} sensors {:>3} lives", m.id, m.family, m.rows, m.sensors, m.lives);
    }
    println!("wrote {} machines to {} in {:.1} s", fleet.len(), a.out.join("machines").display(), t0.elapsed().as_secs_f64());
    Ok(())
}

pub fn machines(data_dir: &Path, json: bool) -> Result<()> {
    let t0 = Instant::now();
    // From metadata and one streamed pass per file, as the daemon's listing: no table is held.
    let caps = data::Caps::default();
    let all: Vec<(String, Result<data::MachineSummary, data::DataError>)> =
        data::machine_ids(data_dir)?.into_iter().map(|id| (id.clone(), data::peek_machine(data_dir, &id, &caps))).collect();
    if all.is_empty() {
        println!(
            "no machines in {} — create the demo fleet with `millwright simulate --out {}`",
            data_dir.join("machines").display(),
            data_dir.display()
        );
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (id, loaded) in all {
        match loaded {
            Ok(summary) => rows.push(summary),
            Err(e) => failures.push((id, e.to_string())),
        }
    }
    if json {
        let v = serde_json::json!({ "machines": rows, "errors": failures.iter().map(|(id, e)| serde_json::json!({"id": id, "error": e})).collect::<Vec<_>>() });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<40} {:<11} {:>8} {:>7} {:>5}  {:<5} {:<5} {:<7} layout",
            "machine", "family", "rows", "sensors", "lives", "label", "rul", "anomaly"
        );
        for m in &rows {
            let yn = |b: bool| if b { "yes" } else { "-" };
            println!(
                "{:<40} {:<11} {:>8} {:>7} {:>5}  {:<5} {:<5} {:<7} {}",
                m.id,
                m.family,
                m.rows,
                m.sensors,
                m.lives,
                yn(m.has_label),
                yn(m.has_rul),
                yn(m.has_anomaly),
                m.layout
            );
        }
        for (id, e) in &failures {
            println!("{id:<40} cannot load: {e}");
        }
        eprintln!("checked {} machine(s) in {:.2} s", rows.len() + failures.len(), t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The machine's id, and its folder when it was named by path rather than as a machine under the data folder.
pub fn machine_of(machine: &str) -> (String, Option<std::path::PathBuf>) {
    let as_path = Path::new(machine);
    if machine.contains('/') && as_path.is_dir() {
        return (data::folder_id(as_path), Some(as_path.to_path_buf()));
    }
    (machine.to_string(), None)
}

/// A machine id under the data folder, or a path to any machine folder (e.g. `examples/ai4i2020`).
pub fn load_any(data_dir: &Path, machine: &str) -> Result<Table> {
    match machine_of(machine) {
        (_, Some(dir)) => Ok(data::load_machine_dir(&dir)?),
        (id, None) => Ok(data::load_machine(data_dir, &id)?),
    }
}

/// [`load_any`] put onto the training grid `grid` calls for while it is read.
pub fn load_any_on_grid(data_dir: &Path, machine: &str, grid: &data::grid::GridSetting) -> Result<Table> {
    let caps = data::Caps::default();
    match machine_of(machine) {
        (_, Some(dir)) => Ok(data::load_machine_dir_gridded(&dir, &caps, grid)?),
        (id, None) => Ok(data::load_machine_gridded(data_dir, &id, &caps, grid)?),
    }
}

pub fn inspect(data_dir: &Path, machine: &str) -> Result<()> {
    // Read onto the default training grid, as training would: a year of 1 s readings is never held whole.
    let t = load_any_on_grid(data_dir, machine, &data::grid::GridSetting::default())?;
    let s = data::summarize(&t);
    let (raw_rows, raw_interval_s) = t.grid.as_ref().map_or((s.rows, s.interval_s), |g| (g.raw_rows, g.raw_interval_s));
    println!("machine   {} ({})", s.id, s.name);
    if let Some(f) = &t.meta.family {
        println!("family    {f}");
    }
    println!("layout    {}", s.layout);
    for src in &t.sources {
        println!("file      {}", src.display());
    }
    println!(
        "rows      {raw_rows}  lives {} ({})  interval {raw_interval_s} s",
        s.lives,
        if t.lives_known { "from the data" } else { "one series per file" },
    );
    match &t.grid {
        Some(g) => println!("grid      {} → {} steps (default setting; see data.grid; the figures below are on it)", g.why, g.rows),
        None => println!("grid      trained as recorded (default setting; data.grid sets a coarser step)"),
    }
    // Lives and files need not be in time order: the first and last rows are not the time range.
    let (min_t, max_t) = t.timestamps.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    if min_t <= max_t {
        println!("time      {} … {}", crate::util::time::format_timestamp(min_t), crate::util::time::format_timestamp(max_t));
    }
    let reference = t.given_split.as_ref().map_or(0, |s| s.iter().filter(|x| **x == data::Split::Healthy).count());
    match (reference, t.split_hint.healthy_head_rows) {
        (0, None) => println!("healthy   none given (the anomaly detector fits on training rows)"),
        (r, head) => println!(
            "healthy   {}{}{}",
            if r > 0 { format!("{r} rows of healthy reference data") } else { String::new() },
            if r > 0 && head.is_some() { "; " } else { "" },
            head.map_or(String::new(), |n| format!("the first {n} rows of each run ([split] in machine.toml)"))
        ),
    }
    if let Some(split) = &t.given_split {
        let count = |x: data::Split| split.iter().filter(|s| **s == x).count();
        println!(
            "split     given: train {} / val {} / test {} / healthy {}",
            count(data::Split::Train),
            count(data::Split::Val),
            count(data::Split::Test),
            count(data::Split::Healthy)
        );
    }
    println!(
        "targets   label: {}  rul: {}  anomaly: {}",
        describe_col(t.label.as_deref()),
        describe_col(t.rul.as_deref()),
        describe_col(t.anomaly.as_deref())
    );
    println!("\n{:<36} {:>8} {:>12} {:>12} {:>12} {:>8}", "sensor", "unit", "min", "mean", "max", "missing");
    for sensor in &t.sensors {
        let st = stats(&sensor.values);
        println!("{:<36} {:>8} {:>12.4} {:>12.4} {:>12.4} {:>8}", sensor.name, sensor.unit, st.0, st.1, st.2, st.3);
    }
    Ok(())
}

fn describe_col(v: Option<&[f64]>) -> String {
    match v {
        None => "-".into(),
        Some(v) => {
            let (min, mean, max, missing) = stats(v);
            format!("min {min:.3} mean {mean:.3} max {max:.3} missing {missing}")
        }
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64, usize) {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    (min, mean, max, v.len() - finite.len())
}
