//! A machine's compacted readings: Parquet files in `<machine>/live/`, each named by its first and last time
//! (`<first µs>_<last µs>.parquet`, zero-padded), so the names alone say how far compaction has come and in
//! which order the loader reads them. Files are written whole (temporary name, fsync, rename, fsync of the
//! folder); a file whose range another covers is a leftover of an interrupted merge and goes.
use super::caps::Budget;
use super::error::DataError;
use super::read::read_file_chunks;
use super::read_text::{Delimiter, TextOptions};
use super::write::{Format, OutTable, write_table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Rows to write: times in epoch microseconds, strictly increasing, one value per sensor (NaN = missing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveRows {
    pub sensors: Vec<String>,
    pub times_us: Vec<i64>,
    /// Per sensor, one value per time.
    pub values: Vec<Vec<f64>>,
}

/// One compacted file and the range of times it holds (µs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFile {
    pub path: PathBuf,
    pub first_us: i64,
    pub last_us: i64,
}

const DAY_US: i64 = 86_400 * 1_000_000;

/// The folder of a machine's compacted readings, and their time column (epoch microseconds in Parquet).
pub const LIVE_DIR: &str = "live";
pub const LIVE_TIME: &str = "timestamp";

pub fn live_dir(machine_dir: &Path) -> PathBuf {
    machine_dir.join(LIVE_DIR)
}

/// Reads of a folder tried when its compacted readings keep vanishing under them.
const VANISHED_TRIES: u32 = 5;

/// Runs a read of a machine's folder again while it fails on a compacted readings file that is gone: the
/// daemon's daily join removes a day's parts once the joined file is durable, so a reader that listed the
/// parts just before finds the same rows in the joined file when it lists the folder again.
pub(super) fn again_if_vanished<T>(mut read: impl FnMut() -> Result<T, DataError>) -> Result<T, DataError> {
    let mut attempt = 1;
    loop {
        match read() {
            Err(e) if attempt < VANISHED_TRIES && vanished(&e) => attempt += 1,
            done => return done,
        }
    }
}

fn vanished(e: &DataError) -> bool {
    matches!(e, DataError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound
        && path.parent().and_then(Path::file_name).is_some_and(|n| n == LIVE_DIR))
}

fn file_name(first_us: i64, last_us: i64) -> String {
    format!("{first_us:016}_{last_us:016}.parquet")
}

fn parse_name(path: &Path) -> Option<(i64, i64)> {
    let stem = path.file_stem()?.to_str()?;
    let (a, b) = stem.split_once('_')?;
    let (first, last) = (a.parse().ok()?, b.parse().ok()?);
    (first <= last).then_some((first, last))
}

/// Splits `files`, as [`live_files`] lists them (by first time, the widest first), into those to read and
/// those another file covers: a part the daemon is joining into a day's file, or what a join cut short left.
/// Their rows are in the covering file, and reading both would read them twice.
pub fn uncovered(files: Vec<LiveFile>) -> (Vec<LiveFile>, Vec<LiveFile>) {
    let mut reach = i64::MIN;
    let (mut kept, mut covered) = (Vec::new(), Vec::new());
    for f in files {
        if f.last_us <= reach {
            covered.push(f);
        } else {
            reach = f.last_us;
            kept.push(f);
        }
    }
    (kept, covered)
}

/// Whether [`create_from_readings`] made the machine or found it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    Created,
    Existed,
}

/// Makes the folder of a machine known only from its readings (`readings.create_machines`): a
/// `machine.toml` naming it and listing `sensors`, the only ones its readings may carry. The folder appears
/// whole or not at all (made under a hidden name, synced, renamed), so two first submissions racing each
/// other leave one machine, and a listing never sees a folder without its description.
pub fn create_from_readings(machine_dir: &Path, name: &str, sensors: &[String]) -> Result<Creation, DataError> {
    if machine_dir.join(super::describe::TOML_NAME).is_file() {
        return Ok(Creation::Existed);
    }
    let parent = machine_dir.parent().ok_or_else(|| DataError::NoLayout { dir: machine_dir.to_path_buf() })?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| DataError::io(p, e)
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{name}.new-{}-{}", std::process::id(), crate::util::time::now_secs().to_bits()));
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let list: Vec<String> = sensors.iter().map(|s| quoted(s)).collect();
    let text = format!(
        "# Made by millwright from this machine's first readings (readings.create_machines = true).\n\
         # Readings of sensors not listed here are refused; the readings files in live/ hold exactly these columns.\n\
         [machine]\nname = {}\n\n[columns]\nsensors = [{}]\n",
        quoted(name),
        list.join(", ")
    );
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let toml_path = tmp.join(super::describe::TOML_NAME);
    let written = crate::util::fsx::write_atomic(&toml_path, text.as_bytes()).and_then(|_| crate::util::fsx::sync_dir(&tmp));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(DataError::io(toml_path, e));
    }
    match std::fs::rename(&tmp, machine_dir) {
        Ok(()) => {
            crate::util::fsx::sync_dir(parent).map_err(io(parent))?;
            Ok(Creation::Created)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            // Someone made it first (renaming onto a folder that holds files fails).
            if machine_dir.is_dir() { Ok(Creation::Existed) } else { Err(DataError::io(machine_dir, e)) }
        }
    }
}

/// The compacted files of a machine folder, oldest first (temporary and foreign files are not listed).
pub fn live_files(machine_dir: &Path) -> Result<Vec<LiveFile>, DataError> {
    let dir = live_dir(machine_dir);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out: Vec<LiveFile> = std::fs::read_dir(&dir)
        .map_err(|e| DataError::io(&dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .filter_map(|path| parse_name(&path).map(|(first_us, last_us)| LiveFile { path, first_us, last_us }))
        .collect();
    out.sort_by_key(|f| (f.first_us, std::cmp::Reverse(f.last_us)));
    Ok(out)
}

/// How far the machine's readings are compacted: the last time in its `live/` files.
pub fn compacted_until(machine_dir: &Path) -> Result<Option<i64>, DataError> {
    Ok(live_files(machine_dir)?.iter().map(|f| f.last_us).max())
}

/// Writes `rows` as one new file in the machine's `live/` folder, durably; returns its path.
pub fn write_live(machine_dir: &Path, rows: &LiveRows) -> Result<PathBuf, DataError> {
    let (Some(&first), Some(&last)) = (rows.times_us.first(), rows.times_us.last()) else {
        return Err(DataError::Format { file: live_dir(machine_dir), message: "no rows to write".into() });
    };
    let dir = live_dir(machine_dir);
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let path = dir.join(file_name(first, last));
    let timestamps: Vec<f64> = rows.times_us.iter().map(|t| *t as f64 / 1e6).collect();
    let columns = rows.sensors.iter().map(String::as_str).zip(rows.values.iter().map(Vec::as_slice)).collect();
    let tmp = crate::util::fsx::temp_sibling(&path);
    let written = write_table(&tmp, &OutTable { timestamps: &timestamps, columns }, Format::Parquet).and_then(|()| {
        let io = |e| DataError::io(&path, e);
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        crate::util::fsx::sync_dir(&dir).map_err(io)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

/// Reads a compacted file back (for merging; the loader reads them as it reads any file).
pub fn read_live(path: &Path) -> Result<LiveRows, DataError> {
    let text = TextOptions { delimiter: Delimiter::Byte(b','), header: true, names: None };
    let budget = Budget { rows: usize::MAX, columns: usize::MAX };
    let mut out = LiveRows::default();
    read_file_chunks(path, &text, budget, 65_536, &mut |frame| {
        let t = frame.index_of(LIVE_TIME)?;
        if out.sensors.is_empty() {
            out.sensors = frame.names.iter().filter(|n| *n != LIVE_TIME).cloned().collect();
            out.values = vec![Vec::new(); out.sensors.len()];
        }
        out.times_us.extend(frame.timestamps(t)?.into_iter().map(|s| (s * 1e6).round() as i64));
        for (k, name) in out.sensors.iter().enumerate() {
            out.values[k].extend(frame.numeric(frame.index_of(name)?)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Joins rows of several files (oldest first) into one, the sensors of all of them in first-seen order.
fn join(parts: Vec<LiveRows>) -> LiveRows {
    let mut sensors: Vec<String> = Vec::new();
    for p in &parts {
        for s in &p.sensors {
            if !sensors.contains(s) {
                sensors.push(s.clone());
            }
        }
    }
    let mut out = LiveRows { values: vec![Vec::new(); sensors.len()], sensors, times_us: Vec::new() };
    for p in parts {
        let n = p.times_us.len();
        for (k, name) in out.sensors.iter().enumerate() {
            match p.sensors.iter().position(|s| s == name) {
                Some(i) => out.values[k].extend_from_slice(&p.values[i]),
                None => out.values[k].extend(std::iter::repeat_n(f64::NAN, n)),
            }
        }
        out.times_us.extend(p.times_us);
    }
    out
}

/// What tidying a `live/` folder did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tidied {
    /// Files joined into one file per day.
    pub merged: usize,
    /// Leftovers of an interrupted merge (their rows are in the merged file).
    pub removed: usize,
}

/// Keeps the folder small: the files of each whole UTC day before `before_us` become one file, and a file
/// whose range another file covers (left by a merge cut short) is removed. Each step leaves the rows
/// readable exactly once whenever it is cut short: the merged file is complete before its parts go.
pub fn tidy(machine_dir: &Path, before_us: i64) -> Result<Tidied, DataError> {
    let mut done = Tidied::default();
    let (kept, covered) = uncovered(live_files(machine_dir)?);
    for f in &covered {
        std::fs::remove_file(&f.path).map_err(|e| DataError::io(&f.path, e))?;
        done.removed += 1;
    }
    let mut days: BTreeMap<i64, Vec<LiveFile>> = BTreeMap::new();
    for f in kept.into_iter().filter(|f| f.last_us < before_us.div_euclid(DAY_US) * DAY_US) {
        let day = f.first_us.div_euclid(DAY_US);
        if f.last_us.div_euclid(DAY_US) == day {
            days.entry(day).or_default().push(f);
        }
    }
    for parts in days.into_values().filter(|p| p.len() > 1) {
        let rows = join(parts.iter().map(|f| read_live(&f.path)).collect::<Result<Vec<_>, _>>()?);
        let merged = write_live(machine_dir, &rows)?;
        for f in parts.iter().filter(|f| f.path != merged) {
            std::fs::remove_file(&f.path).map_err(|e| DataError::io(&f.path, e))?;
            done.merged += 1;
        }
    }
    if done.removed + done.merged > 0 {
        let dir = live_dir(machine_dir);
        crate::util::fsx::sync_dir(&dir).map_err(|e| DataError::io(&dir, e))?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_made_from_readings_loads_once_its_readings_are_compacted() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("machines/press-7");
        let sensors = vec!["temp \"a\"".to_string(), "vib".to_string()];
        assert_eq!(create_from_readings(&dir, "press-7", &sensors).unwrap(), Creation::Created);
        assert_eq!(create_from_readings(&dir, "press-7", &["other".into()]).unwrap(), Creation::Existed);
        let hidden: Vec<_> = std::fs::read_dir(d.path().join("machines")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(hidden, vec![std::ffi::OsString::from("press-7")], "no temporary folder is left");
        match super::super::load_machine_dir(&dir) {
            Err(DataError::NoReadingsYet { sensors: s, .. }) => assert_eq!(s, sensors),
            other => panic!("before any readings: {:?}", other.map(|t| t.n_rows())),
        }
        let t0 = 1_700_000_000_000_000i64;
        let rows = LiveRows {
            sensors: sensors.clone(),
            times_us: (0..5).map(|i| t0 + i * 60_000_000).collect(),
            values: vec![vec![1.0, 2.0, 3.0, 4.0, 5.0], vec![0.5; 5]],
        };
        write_live(&dir, &rows).unwrap();
        let t = super::super::load_machine_dir(&dir).unwrap();
        assert_eq!(t.n_rows(), 5);
        assert_eq!(t.sensors.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), sensors);
    }

    fn rows(first_s: i64, n: usize, step_s: i64) -> LiveRows {
        let times_us: Vec<i64> = (0..n as i64).map(|i| (first_s + i * step_s) * 1_000_000).collect();
        let a = times_us.iter().map(|t| (*t / 1_000_000 % 97) as f64).collect();
        let b = times_us.iter().enumerate().map(|(i, _)| if i % 5 == 0 { f64::NAN } else { i as f64 * 0.5 }).collect();
        LiveRows { sensors: vec!["a".into(), "b".into()], times_us, values: vec![a, b] }
    }

    fn same(x: &LiveRows, y: &LiveRows) -> bool {
        x.sensors == y.sensors
            && x.times_us == y.times_us
            && x.values.iter().zip(&y.values).all(|(p, q)| p.iter().zip(q).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())))
    }

    #[test]
    fn a_written_file_reads_back_and_names_its_range() {
        let d = tempfile::tempdir().unwrap();
        let r = rows(1_780_000_000, 100, 1);
        let p = write_live(d.path(), &r).unwrap();
        assert!(same(&read_live(&p).unwrap(), &r));
        assert_eq!(compacted_until(d.path()).unwrap(), Some(1_780_000_099 * 1_000_000));
        let names: Vec<_> = std::fs::read_dir(live_dir(d.path())).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn whole_days_are_merged_and_leftovers_of_a_merge_removed() {
        let d = tempfile::tempdir().unwrap();
        let day0 = 20_600 * 86_400;
        // Three files on day 0, two on day 1, one on day 2 (still running).
        for (start, n) in
            [(day0, 100), (day0 + 3_600, 100), (day0 + 7_200, 50), (day0 + 86_400, 10), (day0 + 90_000, 10), (day0 + 172_800, 5)]
        {
            write_live(d.path(), &rows(start, n, 10)).unwrap();
        }
        let whole: Vec<LiveRows> = live_files(d.path()).unwrap().iter().map(|f| read_live(&f.path).unwrap()).collect();
        let before = (day0 + 172_800 + 100) * 1_000_000;
        let t = tidy(d.path(), before).unwrap();
        assert_eq!(t, Tidied { merged: 5, removed: 0 });
        let files = live_files(d.path()).unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        let back: Vec<LiveRows> = files.iter().map(|f| read_live(&f.path).unwrap()).collect();
        assert!(same(&back[0], &join(whole[..3].to_vec())));
        assert!(same(&back[1], &join(whole[3..5].to_vec())));
        assert!(same(&back[2], &whole[5]));
        // A merge cut short after its file was written leaves the parts beside it: they go, nothing twice.
        write_live(d.path(), &rows(day0 + 3_600, 100, 10)).unwrap();
        assert_eq!(tidy(d.path(), before).unwrap(), Tidied { merged: 0, removed: 1 });
        assert_eq!(live_files(d.path()).unwrap(), files);
    }

    #[test]
    fn a_read_that_finds_a_joined_part_gone_lists_the_folder_again() {
        let d = tempfile::tempdir().unwrap();
        let day0 = 20_600 * 86_400;
        for start in [day0, day0 + 3_600, day0 + 7_200] {
            write_live(d.path(), &rows(start, 100, 10)).unwrap();
        }
        let total = |files: &[LiveFile]| -> Result<usize, DataError> {
            files.iter().map(|f| read_live(&f.path).map(|r| r.times_us.len())).sum::<Result<usize, _>>()
        };
        let mut attempts = 0;
        let read = again_if_vanished(|| {
            attempts += 1;
            let listed = live_files(d.path())?;
            if attempts == 1 {
                // The daily join runs between this reader's listing and its reads.
                tidy(d.path(), (day0 + 86_400 + 1) * 1_000_000)?;
            }
            total(&listed)
        });
        assert_eq!((read.unwrap(), attempts), (300, 2));
        // Only a vanished readings file is worth a second look, and only a few times.
        let mut calls = 0;
        let other = again_if_vanished(|| -> Result<(), DataError> {
            calls += 1;
            Err(DataError::io(d.path().join("train.csv"), std::io::ErrorKind::NotFound.into()))
        });
        assert!(other.is_err() && calls == 1);
        calls = 0;
        let gone = again_if_vanished(|| -> Result<(), DataError> {
            calls += 1;
            Err(DataError::io(live_dir(d.path()).join("x.parquet"), std::io::ErrorKind::NotFound.into()))
        });
        assert!(gone.is_err() && calls == VANISHED_TRIES);
    }
}
