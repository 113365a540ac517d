//! Built-in plant simulator (placeholder until the simulator lands).
use std::path::PathBuf;
pub struct FleetOptions { pub out_dir: PathBuf, pub machines: usize, pub seed: u64, pub rows: usize, pub interval_s: f64, pub format: crate::data::write::Format }
pub struct SimulatedMachine { pub id: String, pub family: String, pub rows: usize, pub lives: usize, pub sensors: usize }
pub fn simulate_fleet(_opts: &FleetOptions) -> Result<Vec<SimulatedMachine>, crate::data::DataError> { Ok(Vec::new()) }
