//! The part the daemon holds: the log plus the newest accepted time of each machine, so each row can be
//! checked against what came before it.
use super::error::IngestError;
use super::rows::{Row, RowError, Rules, check_rows};
use super::wal::{Recovered, Wal, read_all};
use crate::util::time::now_secs;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A segment is closed at this size and a new one started (retention will drop whole segments).
const SEGMENT_BYTES: u64 = 64 << 20;

/// How far ahead of this clock a reading may be stamped, and how far behind a machine's newest reading.
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    pub future_s: f64,
    pub order_s: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { future_s: 300.0, order_s: 60.0 }
    }
}

/// The outcome of one submission: how many rows are durable, and each refused row with its reason.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<RowError>,
}

/// What the log holds for one machine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stored {
    pub rows: usize,
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub sensors: Vec<String>,
    /// Damage found while reading (a segment that stops before its end), if any.
    pub damaged: Vec<String>,
}

pub struct Readings {
    dir: PathBuf,
    wal: Wal,
    newest: Mutex<HashMap<String, f64>>,
    tolerances: Tolerances,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Readings {
    /// Opens the log in `dir` (blocking: it reads the log once to learn each machine's newest time).
    pub fn open(dir: &Path, tolerances: Tolerances) -> Result<(Readings, Recovered), IngestError> {
        let (wal, recovered) = Wal::open(dir, SEGMENT_BYTES)?;
        let mut newest = HashMap::new();
        for b in read_all(dir)?.batches {
            if let Some(t) = b.rows.iter().map(|r| r.0).reduce(f64::max) {
                let e = newest.entry(b.machine).or_insert(t);
                *e = e.max(t);
            }
        }
        Ok((Readings { dir: dir.to_path_buf(), wal, newest: Mutex::new(newest), tolerances }, recovered))
    }

    /// Checks `rows` against `sensors` and this machine's newest reading and makes the good ones durable.
    /// Nothing is counted as accepted unless it is on disk.
    pub async fn accept(&self, machine: &str, sensors: Vec<String>, rows: Vec<Result<Row, String>>) -> Result<Accepted, IngestError> {
        let rules = Rules {
            sensors,
            now: now_secs(),
            future_tolerance_s: self.tolerances.future_s,
            last_ts: lock(&self.newest).get(machine).copied(),
            order_tolerance_s: self.tolerances.order_s,
        };
        let checked = check_rows(machine, rows, &rules);
        let accepted = checked.batch.rows.len();
        if accepted > 0 {
            self.wal.append(&checked.batch).await?;
            if let Some(t) = checked.batch.rows.iter().map(|r| r.0).reduce(f64::max) {
                let mut newest = lock(&self.newest);
                let e = newest.entry(machine.to_string()).or_insert(t);
                *e = e.max(t);
            }
        }
        Ok(Accepted { accepted, rejected: checked.errors.len(), errors: checked.errors })
    }

    /// What the log holds for `machine` (blocking: reads the log).
    pub fn stored(&self, machine: &str) -> Result<Stored, IngestError> {
        let scan = read_all(&self.dir)?;
        let mut out = Stored { rows: 0, first: None, last: None, sensors: Vec::new(), damaged: scan.damaged };
        for b in scan.batches.into_iter().filter(|b| b.machine == machine) {
            out.rows += b.rows.len();
            for (t, _) in &b.rows {
                out.first = Some(out.first.map_or(*t, |f: f64| f.min(*t)));
                out.last = Some(out.last.map_or(*t, |l: f64| l.max(*t)));
            }
            out.sensors = b.sensors;
        }
        Ok(out)
    }
}
