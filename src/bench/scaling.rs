//! Table 2 of BENCHMARKS.md: time, peak memory and model size per model type and for the batch of four, on
//! simulated machines of growing size — and the default demo machine against its targets.
use super::BenchError;
use super::measure::{Probe, median};
use crate::data::simulate::{FleetOptions, noisy_copies, simulate_machine};
use crate::data::{Sensor, Table};
use crate::ml::{ModelType, TrainContext, TrainParams, train};
use serde::Serialize;
use std::time::Duration;

/// The target for the default demo machine: all four in ≤ 15 s, ≤ 300 MB peak, ≤ 10 MB of models.
const DEMO_MAX_SECONDS: f64 = 15.0;
const DEMO_MAX_PEAK_MB: f64 = 300.0;
const DEMO_MAX_MODELS_MB: f64 = 10.0;

/// One machine size: rows × sensors; `sensors: None` is the simulated family's own sensors (the demo machine).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Case {
    pub rows: usize,
    pub sensors: Option<usize>,
    pub threads: usize,
}

impl Case {
    /// "50000" (the demo machine's own sensors) or "50000x30"; `threads` comes from the command line.
    pub fn parse(text: &str, threads: usize) -> Result<Case, BenchError> {
        let bad = || BenchError::Invalid(format!("{text:?}: write a case as ROWS or ROWSxSENSORS, e.g. 50000 or 200000x10"));
        let (rows, sensors) = match text.split_once('x') {
            Some((r, s)) => (r, Some(s.parse::<usize>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let rows = rows.replace('_', "").parse::<usize>().map_err(|_| bad())?;
        if rows < crate::data::simulate::MIN_ROWS || sensors == Some(0) {
            return Err(bad());
        }
        Ok(Case { rows, sensors, threads })
    }

    fn label(&self) -> String {
        match self.sensors {
            Some(s) => format!("{}x{s}", self.rows),
            None => format!("{} demo", self.rows),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ScalingRow {
    pub case: String,
    pub rows: usize,
    pub sensors: usize,
    pub threads: usize,
    /// A model type, or "batch" for the four trained one after another on the same loaded table.
    pub model: String,
    pub seconds: f64,
    pub peak_rss_mb: f64,
    pub model_kb: f64,
    /// Seconds per 10,000 rows: flat down a column when training scales linearly in rows.
    pub seconds_per_10k_rows: f64,
    pub verdict: Option<String>,
}

/// Simulates machine 0 of the demo fleet at each size (into `work_dir`), loads it like any machine, widens it
/// to the asked sensor count, then trains the four models `repeats` times; figures are medians.
pub fn scaling(cases: &[Case], params: &TrainParams, repeats: usize, work_dir: &std::path::Path) -> Result<Vec<ScalingRow>, BenchError> {
    let mut out = Vec::new();
    for case in cases {
        let table = machine(case, work_dir)?;
        let params = TrainParams { threads: case.threads, ..params.clone() };
        let mut per_type: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); ModelType::ALL.len()];
        let mut batches = Vec::new();
        for _ in 0..repeats.max(1) {
            let batch = Probe::start();
            let mut kb = 0.0;
            for (i, t) in ModelType::ALL.iter().enumerate() {
                let probe = Probe::start();
                let ctx = TrainContext::detached(Duration::from_secs_f64(params.time_limit_s), params.threads);
                let trained = train(*t, &table, &params, &ctx)?;
                let s = probe.stop();
                let size = trained.bundle_size()? as f64 / 1024.0;
                kb += size;
                per_type[i].push((s.seconds, s.peak_rss_bytes as f64 / 1e6, size));
            }
            // The per-type probes reset the high-water mark, so the batch's peak is the largest of theirs.
            let b = batch.stop();
            let peak = per_type.iter().filter_map(|v| v.last().map(|x| x.1)).fold(0.0, f64::max);
            batches.push((b.seconds, peak, kb));
        }
        let mut row = |model: &str, runs: &[(f64, f64, f64)]| {
            let seconds = median(&runs.iter().map(|r| r.0).collect::<Vec<_>>());
            let mut r = ScalingRow {
                case: case.label(),
                rows: table.n_rows(),
                sensors: table.sensors.len(),
                threads: case.threads,
                model: model.into(),
                seconds,
                peak_rss_mb: median(&runs.iter().map(|r| r.1).collect::<Vec<_>>()),
                model_kb: median(&runs.iter().map(|r| r.2).collect::<Vec<_>>()),
                seconds_per_10k_rows: seconds / (table.n_rows() as f64 / 10_000.0),
                verdict: None,
            };
            if model == "batch" && case.sensors.is_none() && case.rows == crate::data::simulate::FleetOptions::default().rows {
                r.verdict = Some(demo_verdict(&r));
            }
            out.push(r);
        };
        for (i, t) in ModelType::ALL.iter().enumerate() {
            row(t.as_str(), &per_type[i]);
        }
        row("batch", &batches);
    }
    Ok(out)
}

fn demo_verdict(r: &ScalingRow) -> String {
    let mut missed = Vec::new();
    if r.seconds > DEMO_MAX_SECONDS {
        missed.push(format!("{:.1} s > {DEMO_MAX_SECONDS} s", r.seconds));
    }
    if r.peak_rss_mb > DEMO_MAX_PEAK_MB {
        missed.push(format!("{:.0} MB peak > {DEMO_MAX_PEAK_MB} MB", r.peak_rss_mb));
    }
    if r.model_kb / 1024.0 > DEMO_MAX_MODELS_MB {
        missed.push(format!("{:.1} MB of models > {DEMO_MAX_MODELS_MB} MB", r.model_kb / 1024.0));
    }
    if missed.is_empty() { "met".into() } else { format!("MISSED: {}", missed.join("; ")) }
}

/// The demo fleet's first machine (a motor, 9 sensors) at `case.rows`, widened or narrowed to `case.sensors`.
fn machine(case: &Case, work_dir: &std::path::Path) -> Result<Table, BenchError> {
    let dir = work_dir.join(format!("rows-{}", case.rows));
    let opts = FleetOptions { out_dir: dir.clone(), machines: 1, rows: case.rows, ..FleetOptions::default() };
    let sim = simulate_machine(0, &opts)?;
    let mut table = crate::data::load_machine(&dir, &sim.id)?;
    if let Some(n) = case.sensors {
        widen(&mut table, n);
    }
    Ok(table)
}

/// Extra sensors are the simulator's noisy copies of the real ones; fewer sensors keep the first `n`.
fn widen(table: &mut Table, n: usize) {
    if n <= table.sensors.len() {
        table.sensors.truncate(n);
        return;
    }
    let real: Vec<Vec<f64>> = table.sensors.iter().map(|s| s.values.clone()).collect();
    let names: Vec<String> = table.sensors.iter().map(|s| s.name.clone()).collect();
    let units: Vec<String> = table.sensors.iter().map(|s| s.unit.clone()).collect();
    for (k, (name, values)) in (real.len()..n).zip(noisy_copies(&real, &names, n, 0x005C_A1E5)) {
        table.sensors.push(Sensor { name, unit: units[k % units.len()].clone(), values });
    }
}

pub fn print(rows: &[ScalingRow]) {
    println!(
        "{:<14} {:>9} {:>7} {:>7} {:<15} {:>9} {:>11} {:>8} {:>9} {:>9}",
        "case", "rows", "sensors", "threads", "model", "seconds", "s/10k rows", "peak MB", "model KB", "target"
    );
    for r in rows {
        println!(
            "{:<14} {:>9} {:>7} {:>7} {:<15} {:>9.2} {:>11.3} {:>8.0} {:>9.1} {:>9}",
            r.case,
            r.rows,
            r.sensors,
            r.threads,
            r.model,
            r.seconds,
            r.seconds_per_10k_rows,
            r.peak_rss_mb,
            r.model_kb,
            r.verdict.as_deref().unwrap_or("-")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_and_refuse_nonsense() {
        assert_eq!(Case::parse("50000", 2).ok(), Some(Case { rows: 50_000, sensors: None, threads: 2 }));
        assert_eq!(Case::parse("1_000_000x10", 1).ok(), Some(Case { rows: 1_000_000, sensors: Some(10), threads: 1 }));
        for bad in ["", "x10", "50000x", "50000x0", "10", "5e4", "-3"] {
            assert!(Case::parse(bad, 1).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn widening_keeps_the_real_sensors_and_adds_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let case = Case { rows: 2_000, sensors: Some(30), threads: 1 };
        let t = machine(&case, dir.path()).unwrap();
        assert_eq!(t.sensors.len(), 30);
        let mut names: Vec<&str> = t.sensors.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 30);
        assert!(t.sensors.iter().all(|s| s.values.len() == t.n_rows()));
        let narrow = machine(&Case { sensors: Some(3), ..case }, dir.path()).unwrap();
        assert_eq!(narrow.sensors.len(), 3);
        // Bitwise: simulated dropouts are NaN, which never equals itself.
        assert_eq!(narrow.sensors[0].name, t.sensors[0].name);
        assert!(narrow.sensors[0].values.iter().zip(&t.sensors[0].values).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
