//! The part the daemon holds: the log plus the newest accepted time of each machine, so each row can be
//! checked against what came before it.
use super::compact::{Compaction, compact};
use super::error::IngestError;
use super::rows::{Row, RowError, Rules, check_rows};
use super::wal::{Batch, Recovered, Wal, read_all, scan_older};
use crate::util::sync::lock;
use crate::util::time::now_secs;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// Rows later than `compacted_until`: not yet in the machine's files.
    pub pending: usize,
    /// Damage found while reading (a segment that stops before its end), if any.
    pub damaged: Vec<String>,
}

pub struct Readings {
    dir: PathBuf,
    wal: Wal,
    newest: Mutex<HashMap<String, f64>>,
    /// How far each machine's readings are in its files (what compaction last wrote).
    compacted: Mutex<HashMap<String, f64>>,
    /// Held (shared) by each submission from its check until its rows are durable; compaction takes it alone
    /// for an instant, so everything accepted before its snapshot of the newest times is in the log it reads.
    gate: tokio::sync::RwLock<()>,
    tolerances: Tolerances,
}

fn raise(times: &mut HashMap<String, f64>, machine: &str, t: f64) {
    let e = times.entry(machine.to_string()).or_insert(t);
    *e = e.max(t);
}

impl Readings {
    /// Opens the log in `dir` (blocking: it reads the log once to learn each machine's newest time).
    pub fn open(dir: &Path, tolerances: Tolerances) -> Result<(Readings, Recovered), IngestError> {
        let mut newest = HashMap::new();
        let mut note = |b: Batch| {
            if let Some(t) = b.rows.iter().map(|r| r.0).reduce(f64::max) {
                raise(&mut newest, &b.machine, t);
            }
        };
        scan_older(dir, &mut note)?;
        let (wal, recovered) = Wal::open_reading(dir, SEGMENT_BYTES, &mut note)?;
        let readings = Readings {
            dir: dir.to_path_buf(),
            wal,
            newest: Mutex::new(newest),
            compacted: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
            tolerances,
        };
        Ok((readings, recovered))
    }

    /// Checks `rows` against `sensors`, the end of the machine's history (`history_end`, from its files) and
    /// its newest reading, and makes the good ones durable. Nothing is counted as accepted unless it is on disk.
    pub async fn accept(
        &self,
        machine: &str,
        sensors: Vec<String>,
        history_end: Option<f64>,
        rows: Vec<Result<Row, String>>,
    ) -> Result<Accepted, IngestError> {
        let _gate = self.gate.read().await;
        let compacted = lock(&self.compacted).get(machine).copied();
        let rules = Rules {
            sensors,
            now: now_secs(),
            future_tolerance_s: self.tolerances.future_s,
            last_ts: lock(&self.newest).get(machine).copied(),
            order_tolerance_s: self.tolerances.order_s,
            history_end: history_end.into_iter().chain(compacted).reduce(f64::max),
        };
        let checked = check_rows(machine, rows, &rules);
        let accepted = checked.batch.rows.len();
        if accepted > 0 {
            self.wal.append(&checked.batch).await?;
            if let Some(t) = checked.batch.rows.iter().map(|r| r.0).reduce(f64::max) {
                raise(&mut lock(&self.newest), machine, t);
            }
        }
        Ok(Accepted { accepted, rejected: checked.errors.len(), errors: checked.errors })
    }

    /// Moves the readings of the log into the machines' files under `data_dir` (blocking: reads the log and
    /// writes files). A machine's readings of the last order tolerance before its newest stay: a later
    /// submission may still bring readings that go before them.
    pub fn compact(&self, data_dir: &Path) -> Result<Compaction, IngestError> {
        let open_from: HashMap<String, f64> = {
            let _alone = self.gate.blocking_write();
            lock(&self.newest).iter().map(|(m, t)| (m.clone(), t - self.tolerances.order_s)).collect()
        };
        let done = compact(&self.dir, data_dir, &|m| open_from.get(m).copied(), now_secs())?;
        let mut compacted = lock(&self.compacted);
        for (m, t) in &done.until {
            raise(&mut compacted, m, *t);
        }
        Ok(done)
    }

    /// What the log holds for `machine`, and how much of it is not yet in the machine's files, which end
    /// at `compacted_until` (blocking: reads the log).
    pub fn stored(&self, machine: &str, compacted_until: Option<f64>) -> Result<Stored, IngestError> {
        let scan = read_all(&self.dir)?;
        let mut out = Stored { rows: 0, first: None, last: None, sensors: Vec::new(), pending: 0, damaged: scan.damaged };
        for b in scan.batches.into_iter().filter(|b| b.machine == machine) {
            out.rows += b.rows.len();
            out.pending += b.rows.iter().filter(|(t, _)| compacted_until.is_none_or(|u| *t > u)).count();
            for (t, _) in &b.rows {
                out.first = Some(out.first.map_or(*t, |f: f64| f.min(*t)));
                out.last = Some(out.last.map_or(*t, |l: f64| l.max(*t)));
            }
            out.sensors = b.sensors;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(times: &[f64]) -> Vec<Result<Row, String>> {
        times.iter().map(|t| Ok(Row { ts: *t, values: vec![("a".into(), 1.0)] })).collect()
    }

    #[test]
    fn each_machines_newest_time_comes_back_from_every_segment_at_open() {
        let d = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let now = now_secs().floor();
        let sensors = || vec!["a".to_string()];
        {
            let (r, _) = Readings::open(d.path(), Tolerances::default()).unwrap();
            // Segments are 64 MB: write the two machines' newest times into different segments by hand.
            rt.block_on(r.accept("m1", sensors(), None, rows(&[now - 600.0]))).unwrap();
            drop(r);
            std::fs::write(d.path().join(format!("{:012}.wal", 2)), b"").unwrap();
            let (r, _) = Readings::open(d.path(), Tolerances::default()).unwrap();
            rt.block_on(r.accept("m2", sensors(), None, rows(&[now - 300.0]))).unwrap();
        }
        let (r, rec) = Readings::open(d.path(), Tolerances::default()).unwrap();
        assert_eq!(rec.segments, 2);
        for (machine, newest) in [("m1", now - 600.0), ("m2", now - 300.0)] {
            let out = rt.block_on(r.accept(machine, sensors(), None, rows(&[newest - 120.0, newest + 1.0]))).unwrap();
            assert_eq!((out.accepted, out.rejected), (1, 1), "{machine}: {out:?}");
            assert!(out.errors[0].error.contains("older than the newest reading"), "{machine}: {out:?}");
        }
    }
}
