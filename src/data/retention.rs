//! Retention of the readings taken in: a machine's compacted `live/` files older than an age, beyond a size
//! per machine, or beyond a size for all machines together go, oldest first. The files a person put in a
//! machine's folder are theirs and never touched. A machine's newest readings file always stays: its name
//! says how far compaction came, and without it readings still in the log would be written a second time.
use super::error::DataError;
use super::live::{LiveFile, live_files};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What is kept (`None`: no limit of that kind).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Retention {
    pub max_age_s: Option<u64>,
    pub machine_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

/// What one pass removed, by the limit that removed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Retained {
    pub by_age: usize,
    pub by_machine_size: usize,
    pub by_total_size: usize,
    pub bytes_removed: u64,
    /// Bytes of readings files kept, all machines.
    pub bytes_kept: u64,
}

impl Retained {
    pub fn removed(&self) -> usize {
        self.by_age + self.by_machine_size + self.by_total_size
    }
}

/// A readings file that may go, with its size.
struct Candidate {
    file: LiveFile,
    bytes: u64,
}

/// One machine's readings files, oldest first, and the size of its newest one (which stays).
struct MachineFiles {
    older: Vec<Candidate>,
    newest_bytes: u64,
}

fn machine_files(machine_dir: &Path) -> Result<MachineFiles, DataError> {
    let mut files = live_files(machine_dir)?;
    // Oldest by end: a file that ends earlier holds only older readings.
    files.sort_by_key(|f| (f.last_us, f.first_us));
    let size = |f: &LiveFile| std::fs::metadata(&f.path).map(|m| m.len()).map_err(|e| DataError::io(&f.path, e));
    let newest_bytes = match files.pop() {
        Some(f) => size(&f)?,
        None => 0,
    };
    let older = files.into_iter().map(|file| Ok(Candidate { bytes: size(&file)?, file })).collect::<Result<_, DataError>>()?;
    Ok(MachineFiles { older, newest_bytes })
}

fn remove(c: &Candidate, out: &mut Retained, dirs: &mut Vec<PathBuf>) -> Result<(), DataError> {
    match std::fs::remove_file(&c.file.path) {
        // Gone already (a join removed it): nothing to free.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DataError::io(&c.file.path, e)),
        Ok(()) => out.bytes_removed += c.bytes,
    }
    if let Some(d) = c.file.path.parent()
        && !dirs.iter().any(|x| x == d)
    {
        dirs.push(d.to_path_buf());
    }
    Ok(())
}

/// Applies `keep` to the readings files of every machine folder in `machine_dirs`, at `now_us`.
pub fn retain(machine_dirs: &[PathBuf], keep: &Retention, now_us: i64) -> Result<Retained, DataError> {
    let mut out = Retained::default();
    let mut touched = Vec::new();
    let cutoff_us = keep.max_age_s.map(|s| now_us.saturating_sub(s.saturating_mul(1_000_000) as i64));
    // Every machine's files that are still kept after its own limits, for the limit on all of them.
    let mut pool: Vec<Candidate> = Vec::new();
    let mut total: u64 = 0;
    for dir in machine_dirs {
        let MachineFiles { older, newest_bytes } = machine_files(dir)?;
        let mut size: u64 = newest_bytes + older.iter().map(|c| c.bytes).sum::<u64>();
        let mut kept = Vec::new();
        for c in older {
            if cutoff_us.is_some_and(|cut| c.file.last_us < cut) {
                remove(&c, &mut out, &mut touched)?;
                out.by_age += 1;
                size -= c.bytes;
            } else if keep.machine_bytes.is_some_and(|max| size > max) {
                remove(&c, &mut out, &mut touched)?;
                out.by_machine_size += 1;
                size -= c.bytes;
            } else {
                kept.push(c);
            }
        }
        total += size;
        pool.extend(kept);
    }
    if let Some(max) = keep.total_bytes {
        pool.sort_by_key(|c| (c.file.last_us, c.file.first_us));
        for c in &pool {
            if total <= max {
                break;
            }
            remove(c, &mut out, &mut touched)?;
            out.by_total_size += 1;
            total -= c.bytes;
        }
    }
    for d in &touched {
        crate::util::fsx::sync_dir(d).map_err(|e| DataError::io(d, e))?;
    }
    out.bytes_kept = total;
    Ok(out)
}

/// Applies `keep` to every machine of `data_dir`, now.
pub fn retain_machines(data_dir: &Path, keep: &Retention) -> Result<Retained, DataError> {
    let dirs: Vec<PathBuf> = super::machine_ids(data_dir)?
        .iter()
        .filter_map(|id| super::MachineId::parse(id).ok())
        .map(|id| super::machine_dir(data_dir, &id))
        .collect();
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    retain(&dirs, keep, now_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::live::{LiveRows, compacted_until, write_live};

    const DAY_S: i64 = 86_400;

    /// One file per day, `days` days from `first_day`, each `n` rows.
    fn days(dir: &Path, first_day: i64, days: i64, n: usize) {
        for d in 0..days {
            let start = (first_day + d) * DAY_S;
            let times_us: Vec<i64> = (0..n as i64).map(|i| (start + i * 60) * 1_000_000).collect();
            let a = times_us.iter().map(|t| (*t % 1_000) as f64).collect();
            write_live(dir, &LiveRows { sensors: vec!["a".into()], times_us, values: vec![a] }).unwrap();
        }
    }

    fn bytes(dir: &Path) -> u64 {
        live_files(dir).unwrap().iter().map(|f| std::fs::metadata(&f.path).unwrap().len()).sum()
    }

    #[test]
    fn old_files_go_by_age_then_by_each_machines_size_then_by_the_total_and_the_newest_always_stays() {
        let d = tempfile::tempdir().unwrap();
        let (m1, m2) = (d.path().join("m1"), d.path().join("m2"));
        let day0 = 20_600;
        days(&m1, day0, 10, 200);
        days(&m2, day0 + 5, 5, 200);
        std::fs::write(m1.join("train.csv"), "timestamp,a\n").unwrap();
        let dirs = vec![m1.clone(), m2.clone()];
        let now_us = (day0 + 15) * DAY_S * 1_000_000;
        let one = bytes(&m2) / 5;

        // Nothing is over a limit: nothing goes.
        let none = retain(&dirs, &Retention::default(), now_us).unwrap();
        assert_eq!((none.removed(), none.bytes_kept), (0, bytes(&m1) + bytes(&m2)));

        // Older than 12 days (ended before day 3): m1's first 3 days; m2 starts on day 5.
        let aged = retain(&dirs, &Retention { max_age_s: Some(12 * DAY_S as u64), ..Default::default() }, now_us).unwrap();
        assert_eq!(aged.by_age, 3, "{aged:?}");
        assert_eq!(live_files(&m1).unwrap().first().unwrap().first_us, (day0 + 3) * DAY_S * 1_000_000);

        // At most ~4 files per machine: m1 keeps its newest 4 (7 before), m2 its newest 4.
        let sized = retain(&dirs, &Retention { machine_bytes: Some(one * 4 + one / 2), ..Default::default() }, now_us).unwrap();
        assert_eq!(sized.by_machine_size, 3 + 1, "{sized:?}");
        assert_eq!(live_files(&m1).unwrap().len(), 4);
        assert_eq!(live_files(&m2).unwrap().len(), 4);

        // All machines together at most ~5 files: the oldest across both go (m1's days 6..9 and m2's 6..9
        // interleave by end time), and each keeps its newest.
        let total = retain(&dirs, &Retention { total_bytes: Some(one * 5 + one / 2), ..Default::default() }, now_us).unwrap();
        assert_eq!(total.by_total_size, 3, "{total:?}");
        assert!(total.bytes_kept <= one * 5 + one / 2 && total.bytes_kept == bytes(&m1) + bytes(&m2), "{total:?}");
        assert_eq!(live_files(&m1).unwrap().len() + live_files(&m2).unwrap().len(), 5);

        // A limit no file can meet still leaves each machine its newest file, and the history file is untouched.
        let until = (compacted_until(&m1).unwrap(), compacted_until(&m2).unwrap());
        let tight = Retention { max_age_s: Some(1), machine_bytes: Some(1), total_bytes: Some(1) };
        retain(&dirs, &tight, now_us).unwrap();
        assert_eq!((live_files(&m1).unwrap().len(), live_files(&m2).unwrap().len()), (1, 1));
        assert_eq!((compacted_until(&m1).unwrap(), compacted_until(&m2).unwrap()), until);
        assert!(m1.join("train.csv").is_file());
    }
}
