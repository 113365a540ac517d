//! Compaction: the log's readings written into each machine's own history (`live/` Parquet files beside its
//! data, which the loaders read as the continuation of its running life), then the log segments whose every
//! reading is there removed. Nothing acknowledged is ever only in memory: a reading leaves the log only
//! after the file holding it is durable, and a file written twice (a pass cut short) is recognised by the
//! range in its name.
use super::error::IngestError;
use super::wal::{scan_segment, segment_paths};
use crate::data::MachineId;
use crate::data::live::{LiveRows, compacted_until, tidy, write_live};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What one pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Compaction {
    /// Readings written into machines' files.
    pub rows: usize,
    pub files: usize,
    /// Readings left in the log because a later one may still arrive before them (the order tolerance).
    pub held: usize,
    pub segments_removed: usize,
    /// Files of whole days joined into one.
    pub merged: usize,
    /// Machines whose readings stay in the log, and why (no folder any more, a write that failed).
    pub waiting: BTreeMap<String, String>,
    /// Each machine's compacted end after the pass (epoch seconds).
    pub until: HashMap<String, f64>,
}

/// One machine's readings on their way to its files.
struct Pending {
    dir: PathBuf,
    until_us: Option<i64>,
    sensors: Vec<String>,
    /// By time: readings of one time are one row (a client's retry, or one message per sensor), each
    /// sensor's value as last sent.
    rows: BTreeMap<i64, Vec<f64>>,
}

enum Target {
    Folder(Pending),
    Waiting(String),
}

fn target(data_dir: &Path, machine: &str) -> Target {
    let Ok(id) = MachineId::parse(machine) else { return Target::Waiting("not a machine id".into()) };
    let dir = crate::data::machine_dir(data_dir, &id);
    if !dir.is_dir() {
        return Target::Waiting(format!("no machine folder {}", dir.display()));
    }
    match compacted_until(&dir) {
        Ok(until_us) => Target::Folder(Pending { dir, until_us, sensors: Vec::new(), rows: BTreeMap::new() }),
        Err(e) => Target::Waiting(e.to_string()),
    }
}

impl Pending {
    fn into_rows(self) -> LiveRows {
        let n = self.sensors.len();
        let mut values = vec![Vec::with_capacity(self.rows.len()); n];
        let mut times_us = Vec::with_capacity(self.rows.len());
        for (t, row) in self.rows {
            times_us.push(t);
            for (k, col) in values.iter_mut().enumerate() {
                col.push(row.get(k).copied().unwrap_or(f64::NAN));
            }
        }
        LiveRows { sensors: self.sensors, times_us, values }
    }
}

/// Moves every reading in the log at `log_dir` older than `open_from(machine)` into its machine's files
/// under `data_dir`, then removes the sealed segments holding nothing else. `now_s` decides which days are
/// whole (their files are joined).
pub fn compact(log_dir: &Path, data_dir: &Path, open_from: &dyn Fn(&str) -> Option<f64>, now_s: f64) -> Result<Compaction, IngestError> {
    let mut out = Compaction::default();
    let segments = segment_paths(log_dir)?;
    let mut machines: HashMap<String, Target> = HashMap::new();
    // Per segment: whether something in it must stay, and whose readings it holds.
    let mut keep = vec![false; segments.len()];
    let mut holds: Vec<HashSet<String>> = vec![HashSet::new(); segments.len()];
    for (i, (_, path)) in segments.iter().enumerate() {
        scan_segment(path, &mut |batch| {
            let open = open_from(&batch.machine);
            let t = machines.entry(batch.machine.clone()).or_insert_with(|| target(data_dir, &batch.machine));
            let Target::Folder(p) = t else {
                keep[i] = true;
                return;
            };
            holds[i].insert(batch.machine.clone());
            let columns: Vec<usize> = batch
                .sensors
                .iter()
                .map(|s| {
                    p.sensors.iter().position(|x| x == s).unwrap_or_else(|| {
                        p.sensors.push(s.clone());
                        p.sensors.len() - 1
                    })
                })
                .collect();
            for (ts, values) in batch.rows {
                let us = (ts * 1e6).round() as i64;
                if p.until_us.is_some_and(|u| us <= u) {
                    continue;
                }
                if open.is_none_or(|o| ts >= o) {
                    out.held += 1;
                    keep[i] = true;
                    continue;
                }
                let row = p.rows.entry(us).or_default();
                row.resize(p.sensors.len(), f64::NAN);
                for (c, v) in columns.iter().zip(values).filter(|(_, v)| !v.is_nan()) {
                    row[*c] = v;
                }
            }
        })?;
    }
    let now_us = (now_s * 1e6) as i64;
    let mut failed = HashSet::new();
    for (machine, t) in machines {
        let p = match t {
            Target::Waiting(why) => {
                out.waiting.insert(machine, why);
                continue;
            }
            Target::Folder(p) => p,
        };
        let (dir, until) = (p.dir.clone(), p.until_us);
        let mut end = until;
        if !p.rows.is_empty() {
            let rows = p.into_rows();
            match write_live(&dir, &rows) {
                Ok(_) => {
                    out.rows += rows.times_us.len();
                    out.files += 1;
                    end = rows.times_us.last().copied().max(until);
                }
                Err(e) => {
                    out.waiting.insert(machine.clone(), e.to_string());
                    failed.insert(machine.clone());
                }
            }
        }
        // Joining files is housekeeping: its failure loses nothing and is said.
        match tidy(&dir, now_us) {
            Ok(t) => out.merged += t.merged,
            Err(e) => tracing::warn!(machine = %machine, error = %e, "compacted readings: files not joined"),
        }
        if let Some(e) = end {
            out.until.insert(machine, e as f64 / 1e6);
        }
    }
    // The newest segment is the one being written: it stays.
    let sealed = segments.len().saturating_sub(1);
    for (i, (_, path)) in segments.iter().enumerate().take(sealed) {
        if keep[i] || holds[i].iter().any(|m| failed.contains(m)) {
            continue;
        }
        std::fs::remove_file(path).map_err(|e| IngestError::open(path, e))?;
        out.segments_removed += 1;
    }
    if out.segments_removed > 0 {
        crate::util::fsx::sync_dir(log_dir).map_err(|e| IngestError::open(log_dir, e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::wal::{Batch, Wal};

    const T0: f64 = 1_780_000_000.0;

    /// A machine folder in the legacy layout: 100 hourly rows of `a` and `b` ending at T0.
    fn machine(data: &Path, id: &str) -> PathBuf {
        let dir = data.join("machines").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = String::from("timestamp,a,b\n");
        for i in 0..100 {
            let t = T0 - f64::from(99 - i) * 3600.0;
            csv.push_str(&format!("{},{},{}\n", crate::util::time::format_timestamp(t), i, i * 2));
        }
        std::fs::write(dir.join("train.csv"), csv).unwrap();
        dir
    }

    fn batch(machine: &str, sensors: &[&str], times: impl Iterator<Item = f64>) -> Batch {
        let sensors: Vec<String> = sensors.iter().map(|s| s.to_string()).collect();
        let rows = times.map(|t| (t, (0..sensors.len()).map(|k| t - T0 + k as f64).collect())).collect();
        Batch { machine: machine.into(), sensors, rows }
    }

    #[test]
    fn readings_move_into_the_machines_history_once_and_the_log_shrinks() {
        let (data, log) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = machine(data.path(), "m1");
        // Tiny segments: every append after the first seals the previous one.
        let (wal, _) = Wal::open(log.path(), 1).unwrap();
        wal.append_blocking(&batch("m1", &["a", "b"], (1..=10).map(|i| T0 + f64::from(i)))).unwrap();
        // A client's retry sends 9 and 10 again with other values, plus a reading missing `a`.
        let mut retry = batch("m1", &["b"], [T0 + 9.0, T0 + 10.0, T0 + 11.0].into_iter());
        retry.rows[0].1[0] = 99.0;
        wal.append_blocking(&retry).unwrap();
        wal.append_blocking(&batch("ghost", &["a"], std::iter::once(T0 + 1.0))).unwrap();
        wal.append_blocking(&batch("m1", &["a", "b"], (12..=20).map(|i| T0 + f64::from(i)))).unwrap();
        // The first segment was sealed empty (its header alone passed the size).
        assert_eq!(segment_paths(log.path()).unwrap().len(), 5);

        // Readings from 15 on may still be joined by late ones: they stay.
        let open = |m: &str| (m == "m1").then_some(T0 + 15.0);
        let done = compact(log.path(), data.path(), &open, T0).unwrap();
        assert_eq!((done.rows, done.files, done.held), (14, 1, 6), "{done:?}");
        assert!(done.waiting["ghost"].contains("no machine folder"), "{:?}", done.waiting);
        assert_eq!(done.until["m1"], T0 + 14.0);
        // The first three segments hold only compacted readings; the ghost's and the held ones stay.
        assert_eq!(done.segments_removed, 3);
        assert_eq!(segment_paths(log.path()).unwrap().len(), 2);

        let table = crate::data::load_machine(data.path(), "m1").unwrap();
        assert_eq!(table.n_rows(), 114);
        assert_eq!(table.n_lives(), 1, "the readings continue the running life");
        let b = &table.sensors.iter().find(|s| s.name == "b").unwrap().values;
        let a = &table.sensors.iter().find(|s| s.name == "a").unwrap().values;
        assert_eq!(b[100 + 8], 99.0, "a reading sent twice is kept once, as last sent");
        assert!(a[100 + 10].is_nan(), "a sensor the reading lacks is missing, not zero");
        assert_eq!(table.timestamps.last().copied(), Some(T0 + 14.0));
        let summary = crate::data::peek_machine(data.path(), "m1", &crate::data::Caps::default()).unwrap();
        assert_eq!((summary.rows, summary.lives, summary.last_time), (114, 1, Some(T0 + 14.0)));

        // A second pass with nothing new writes nothing and keeps what must stay; once the order tolerance
        // has passed, the rest follows and only the newest segment (and the ghost's) remain.
        let again = compact(log.path(), data.path(), &open, T0).unwrap();
        assert_eq!((again.rows, again.files, again.held, again.segments_removed), (0, 0, 6, 0));
        let later = compact(log.path(), data.path(), &|_| Some(T0 + 100.0), T0).unwrap();
        assert_eq!((later.rows, later.held), (6, 0));
        assert_eq!(crate::data::load_machine(data.path(), "m1").unwrap().n_rows(), 120);
        assert_eq!(std::fs::read_dir(dir.join("live")).unwrap().count(), 2);
    }

    #[test]
    fn a_pass_cut_short_after_its_file_is_written_adds_nothing_twice() {
        let (data, log) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        machine(data.path(), "m1");
        let (wal, _) = Wal::open(log.path(), 1 << 20).unwrap();
        wal.append_blocking(&batch("m1", &["a", "b"], (1..=5).map(|i| T0 + f64::from(i)))).unwrap();
        let all = |_: &str| Some(T0 + 100.0);
        // The file is written but the log kept (the newest segment always stays): the next pass sees the
        // same readings again and knows from the file's name that they are in.
        compact(log.path(), data.path(), &all, T0).unwrap();
        let again = compact(log.path(), data.path(), &all, T0).unwrap();
        assert_eq!((again.rows, again.files), (0, 0));
        assert_eq!(crate::data::load_machine(data.path(), "m1").unwrap().n_rows(), 105);
        // A part beside the file that covers it (a join cut short, or a reader listing mid-join) is not read twice.
        let dir = data.path().join("machines/m1");
        let part = crate::data::live::LiveRows {
            sensors: vec!["a".into(), "b".into()],
            times_us: vec![((T0 + 2.0) * 1e6) as i64, ((T0 + 3.0) * 1e6) as i64],
            values: vec![vec![1.0, 2.0], vec![3.0, 4.0]],
        };
        crate::data::live::write_live(&dir, &part).unwrap();
        assert_eq!(crate::data::live::live_files(&dir).unwrap().len(), 2);
        assert_eq!(crate::data::load_machine(data.path(), "m1").unwrap().n_rows(), 105);
        let summary = crate::data::peek_machine(data.path(), "m1", &crate::data::Caps::default()).unwrap();
        assert_eq!(summary.rows, 105);
    }

    #[test]
    fn a_machine_whose_file_cannot_be_written_keeps_its_readings_in_the_log() {
        let (data, log) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = machine(data.path(), "m1");
        // A file where the folder would go: the write fails.
        std::fs::write(dir.join("live"), "").unwrap();
        let (wal, _) = Wal::open(log.path(), 1).unwrap();
        wal.append_blocking(&batch("m1", &["a", "b"], (1..=5).map(|i| T0 + f64::from(i)))).unwrap();
        wal.append_blocking(&batch("m1", &["a", "b"], (6..=9).map(|i| T0 + f64::from(i)))).unwrap();
        let done = compact(log.path(), data.path(), &|_| Some(T0 + 100.0), T0).unwrap();
        // Only the empty first segment goes.
        assert_eq!((done.rows, done.segments_removed), (0, 1));
        assert!(done.waiting.contains_key("m1"));
        assert_eq!(segment_paths(log.path()).unwrap().len(), 2);
    }
}
