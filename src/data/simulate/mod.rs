//! Built-in plant simulator: the demo fleet a newcomer trains on.
//!
//! Each machine belongs to a family (motor, pump, compressor, CNC spindle, fan, hydraulic unit) with real
//! sensor names and units. Its history is one timeline of run-to-failure lives: a failure mode wears the
//! machine from a random initial wear to failure, while load regimes, the plant's daily and yearly
//! temperature cycle, sensor noise and dropouts move the readings the way they move in a real plant.
//! Output is the legacy layout (`train/val/test` + `machine.toml`) under `<out_dir>/machines/<id>/`.
mod engine;
mod families;
mod output;
pub mod replay;
#[cfg(test)]
mod tests;

pub use engine::{Life, MachineData, START_EPOCH_S, generate};
pub use families::{Effect, FailureMode, Family, How, Kind, Model, SensorSpec, Shape, catalogue, families, family};
pub use output::assign_splits;

use crate::data::write::Format;
use crate::data::{DataError, MachineId};
use std::path::{Path, PathBuf};

/// The CLI refuses fewer rows too: shorter histories cannot hold several lives of a few rows each.
pub const MIN_ROWS: usize = 100;

pub struct FleetOptions {
    /// Machines go to `out_dir/machines/<id>/`.
    pub out_dir: PathBuf,
    pub machines: usize,
    pub seed: u64,
    /// Rows per machine.
    pub rows: usize,
    /// Seconds between rows.
    pub interval_s: f64,
    pub format: Format,
    /// Sensors per machine at least: past the family's own, noisy rescaled copies of them are added.
    pub min_sensors: usize,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            out_dir: PathBuf::from("data"),
            machines: 10,
            seed: 42,
            rows: 50_000,
            interval_s: 3600.0,
            format: Format::Parquet,
            min_sensors: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedMachine {
    pub id: String,
    pub family: String,
    pub rows: usize,
    pub lives: usize,
    pub sensors: usize,
}

/// Writes machines `0..opts.machines`, in parallel; machine k is the same whatever the fleet size.
pub fn simulate_fleet(opts: &FleetOptions) -> Result<Vec<SimulatedMachine>, DataError> {
    check_options(opts)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(opts.machines).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<SimulatedMachine, DataError>)> = Vec::with_capacity(opts.machines);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if index >= opts.machines {
                            break done;
                        }
                        done.push((index, simulate_machine(index, opts)));
                    }
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(done) => results.extend(done),
                Err(_) => results.push((usize::MAX, Err(worker_failed(&opts.out_dir)))),
            }
        }
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}

fn worker_failed(out_dir: &Path) -> DataError {
    DataError::Format { file: out_dir.to_path_buf(), message: "a simulator thread panicked; no result for some machines".into() }
}

/// Simulates and writes machine `index` of the fleet described by `opts`.
pub fn simulate_machine(index: usize, opts: &FleetOptions) -> Result<SimulatedMachine, DataError> {
    check_options(opts)?;
    let (model, family) = model_of(index)
        .ok_or_else(|| DataError::Format { file: opts.out_dir.clone(), message: format!("no simulated family for machine {index}") })?;
    let id = MachineId::parse(&machine_id(index))?;
    let mut data = generate(model, family, opts.rows, opts.interval_s, machine_seed(opts.seed, index));
    let names: Vec<String> = family.sensors.iter().map(|s| s.name.to_string()).collect();
    data.extra = noisy_copies(&data.sensors, &names, opts.min_sensors, machine_seed(opts.seed, index) ^ 0x005C_A1E5);
    let machines_dir = opts.out_dir.join("machines");
    std::fs::create_dir_all(&machines_dir).map_err(|e| DataError::io(&machines_dir, e))?;
    let files = output::MachineFiles { id: id.as_str(), serial: index + 1, model, family, data: &data, format: opts.format };
    output::write_machine(&machines_dir, &files)?;
    Ok(SimulatedMachine {
        id: id.to_string(),
        family: family.name.to_string(),
        rows: data.timestamps.len(),
        lives: data.lives.len(),
        sensors: family.sensors.len() + data.extra.len(),
    })
}

/// Columns `real..n` as noisy, rescaled copies of the real ones (they carry the same wear signal, as a second
/// accelerometer would), named `aux_<k>_<sensor>`; none when there are already `n`.
pub fn noisy_copies(real: &[Vec<f64>], names: &[String], n: usize, seed: u64) -> Vec<(String, Vec<f64>)> {
    let mut rng = crate::util::rng::Rng::new(seed);
    (real.len()..n)
        .filter_map(|k| {
            let i = k.checked_rem(real.len())?;
            let base = &real[i];
            let finite: Vec<f64> = base.iter().copied().filter(|v| v.is_finite()).collect();
            let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
            let sd = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / finite.len().max(1) as f64).sqrt();
            let gain = rng.range(0.5, 2.0);
            let values = base.iter().map(|v| v * gain + 0.3 * sd * gain * rng.normal()).collect();
            Some((format!("aux_{:02}_{}", k, names.get(i).map_or("", String::as_str)), values))
        })
        .collect()
}

/// `motor_siemens_1la7_001`, …; the catalogue repeats past its end with the next serial numbers.
pub fn machine_id(index: usize) -> String {
    let slug = catalogue().get(index % catalogue().len().max(1)).map_or("machine", |m| m.slug);
    format!("{slug}_{:03}", index + 1)
}

pub fn model_of(index: usize) -> Option<(&'static Model, &'static Family)> {
    let model = catalogue().get(index % catalogue().len().max(1))?;
    Some((model, family(model.family)?))
}

/// Each machine's stream depends only on the fleet seed and its own index.
pub fn machine_seed(fleet_seed: u64, index: usize) -> u64 {
    crate::util::rng::Rng::new(fleet_seed ^ (index as u64).wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

fn check_options(opts: &FleetOptions) -> Result<(), DataError> {
    let bad = |message: String| Err(DataError::Format { file: opts.out_dir.clone(), message });
    if opts.rows < MIN_ROWS {
        return bad(format!("{} rows per machine: at least {MIN_ROWS} are needed to hold several lives", opts.rows));
    }
    if !(opts.interval_s.is_finite() && opts.interval_s > 0.0) {
        return bad(format!("interval {} s: use a positive number of seconds", opts.interval_s));
    }
    Ok(())
}
