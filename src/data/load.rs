//! Assembling a [`Table`] from a machine folder: find the files, give each column its role, check the data.
use super::build::{BuildOptions, Builder, CHUNK_ROWS, Tail};
use super::caps::Budget;
use super::caps::Caps;
use super::confine::Confine;
use super::describe::{ColumnRoles, HealthyHead, MachineToml, TOML_NAME};
use super::error::DataError;
use super::grid::{self, GridSetting};
use super::id::MachineId;
use super::read::read_file_chunks;
use super::read_text::{Delimiter, TextOptions};
use super::sources::{SourceFile, described_files, legacy_files, live_files};
use super::table::{Layout, Split, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn machine_dir(data_dir: &Path, id: &MachineId) -> PathBuf {
    data_dir.join("machines").join(id.as_str())
}

/// A machine's id checked, its folder found and confined to the data folder: what loading and peeking start from.
pub(super) fn open_machine(data_dir: &Path, id: &str) -> Result<(MachineId, PathBuf, Confine), DataError> {
    let id = MachineId::parse(id)?;
    let dir = machine_dir(data_dir, &id);
    if !dir.is_dir() {
        return Err(DataError::UnknownMachine { id: id.to_string(), dir });
    }
    let confine = Confine::within(data_dir)?;
    confine.check(&dir, "the machine folder", &dir)?;
    Ok((id, dir, confine))
}

/// Loads `<data_dir>/machines/<id>/` after validating the id; every file it reads must resolve into the data
/// folder (see [`Confine`]).
pub fn load_machine(data_dir: &Path, id: &str) -> Result<Table, DataError> {
    load_machine_within(data_dir, id, &Caps::default())
}

/// [`load_machine`] under the configured caps (`[data]`): a machine past `max_rows` is refused before its
/// rows are decoded.
pub fn load_machine_within(data_dir: &Path, id: &str, caps: &Caps) -> Result<Table, DataError> {
    let (id, dir, confine) = open_machine(data_dir, id)?;
    load_folder(&dir, id.to_string(), &confine, caps, Keep::All)
}

/// [`load_machine_within`], put onto the training grid `grid` calls for as it is read: a long fine-grained
/// history is aggregated step by step, never held as readings (see [`super::build`]).
pub fn load_machine_gridded(data_dir: &Path, id: &str, caps: &Caps, grid: &GridSetting) -> Result<Table, DataError> {
    let (id, dir, confine) = open_machine(data_dir, id)?;
    load_folder(&dir, id.to_string(), &confine, caps, Keep::Grid(grid))
}

/// Loads any machine folder, as the operator named it (the examples read files beside the repository); the
/// folder's name is the machine id.
pub fn load_machine_dir(dir: &Path) -> Result<Table, DataError> {
    load_machine_dir_within(dir, &Caps::default())
}

/// A folder named on the command line is the machine its name says.
pub fn folder_id(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// [`load_machine_dir`] under the given caps.
pub fn load_machine_dir_within(dir: &Path, caps: &Caps) -> Result<Table, DataError> {
    load_folder(dir, folder_id(dir), &Confine::anywhere(), caps, Keep::All)
}

/// The latest rows of a machine's last life, as [`Tail`] says, read as a stream — as recorded, or put onto a
/// model's grid as they are read (then the rows are steps): what an answer from the machine's own history
/// needs, in memory bounded by the tail, not by the history.
pub fn load_machine_tail(data_dir: &Path, id: &str, caps: &Caps, tail: Tail, grid: Option<&grid::Grid>) -> Result<Table, DataError> {
    let (id, dir, confine) = open_machine(data_dir, id)?;
    load_folder(&dir, id.to_string(), &confine, caps, Keep::Tail(tail, grid))
}

/// [`load_machine_tail`] for any machine folder, as [`load_machine_dir`].
pub fn load_machine_dir_tail(dir: &Path, caps: &Caps, tail: Tail, grid: Option<&grid::Grid>) -> Result<Table, DataError> {
    load_folder(dir, folder_id(dir), &Confine::anywhere(), caps, Keep::Tail(tail, grid))
}

/// [`load_machine_dir_within`] onto the training grid, as [`load_machine_gridded`].
pub fn load_machine_dir_gridded(dir: &Path, caps: &Caps, grid: &GridSetting) -> Result<Table, DataError> {
    load_folder(dir, folder_id(dir), &Confine::anywhere(), caps, Keep::Grid(grid))
}

/// What a folder's description says before any data file is read: the description (or the default one),
/// where it lives, the files to read and how the folder was recognised.
pub(super) struct Described {
    pub desc: MachineToml,
    pub toml_path: PathBuf,
    pub sources: Vec<SourceFile>,
    pub layout: Layout,
}

/// A `machine.toml` is a few kB; a larger one is not a description.
const MAX_TOML_BYTES: u64 = 1 << 20;

/// The folder's `machine.toml` as written (the default description when there is none).
fn read_description(dir: &Path, confine: &Confine) -> Result<(MachineToml, PathBuf), DataError> {
    let toml_path = dir.join(TOML_NAME);
    if !toml_path.is_file() {
        return Ok((MachineToml::default(), toml_path));
    }
    confine.check(&toml_path, TOML_NAME, dir)?;
    let size = std::fs::metadata(&toml_path).map_err(|e| DataError::io(&toml_path, e))?.len();
    if size > MAX_TOML_BYTES {
        return Err(DataError::Describe { file: toml_path, message: format!("{size} bytes; a description is at most 1 MB") });
    }
    let text = std::fs::read_to_string(&toml_path).map_err(|e| DataError::io(&toml_path, e))?;
    let desc = MachineToml::parse(&text).map_err(|message| DataError::Describe { file: toml_path.clone(), message })?;
    Ok((desc, toml_path))
}

/// A machine's `machine.toml` alone, without looking at its data files (the retrain schedule reads it).
pub fn machine_description(data_dir: &Path, id: &str) -> Result<MachineToml, DataError> {
    let (_, dir, confine) = open_machine(data_dir, id)?;
    read_description(&dir, &confine).map(|(desc, _)| desc)
}

pub(super) fn describe_folder(dir: &Path, confine: &Confine) -> Result<Described, DataError> {
    let (desc, toml_path) = read_description(dir, confine)?;
    check_numbers(&desc.columns, &toml_path)?;
    desc.split.healthy_head().map_err(|message| DataError::Describe { file: toml_path.clone(), message })?;
    desc.anomaly.trailing_hours().map_err(|message| DataError::Describe { file: toml_path.clone(), message })?;
    let (mut sources, layout) = if desc.files.is_empty() {
        let Some((files, format)) = legacy_files(dir) else {
            return readings_only(dir, desc, toml_path, confine);
        };
        for f in &files {
            let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            confine.check(&f.path, &format!("the legacy-layout file {name}"), dir)?;
        }
        (files, Layout::Legacy { format: format.to_string() })
    } else {
        (described_files(dir, &toml_path, &desc, confine)?, Layout::Described)
    };
    // Under a given split the newest rows are test rows: the readings never change what a model is fitted on.
    let split = sources.iter().any(|s| s.split.is_some()).then_some(Split::Test);
    sources.extend(live_files(dir, split, confine)?);
    Ok(Described { desc, toml_path, sources, layout })
}

/// A machine made from its first readings (`readings.create_machines`): its `machine.toml` lists the
/// sensors and its only files are the compacted readings. Until the first compaction it has none.
fn readings_only(dir: &Path, desc: MachineToml, toml_path: PathBuf, confine: &Confine) -> Result<Described, DataError> {
    let Some(sensors) = desc.columns.sensors.clone().filter(|s| !s.is_empty()) else {
        return Err(DataError::NoLayout { dir: dir.to_path_buf() });
    };
    let sources = live_files(dir, None, confine)?;
    if sources.is_empty() {
        return Err(DataError::NoReadingsYet { dir: dir.to_path_buf(), sensors });
    }
    Ok(Described { desc, toml_path, sources, layout: Layout::Described })
}

/// What a load keeps: every row, the rows put onto a training grid, or the latest readings only.
#[derive(Clone, Copy)]
enum Keep<'a> {
    All,
    Grid(&'a GridSetting),
    /// The tail, as read or on a model's grid.
    Tail(Tail, Option<&'a grid::Grid>),
}

fn load_folder(dir: &Path, id: String, confine: &Confine, caps: &Caps, keep: Keep<'_>) -> Result<Table, DataError> {
    super::live::again_if_vanished(|| load_folder_once(dir, id.clone(), confine, caps, keep))
}

fn load_folder_once(dir: &Path, id: String, confine: &Confine, caps: &Caps, keep: Keep<'_>) -> Result<Table, DataError> {
    let grid = match keep {
        Keep::Grid(g) => Some(g),
        Keep::All | Keep::Tail(..) => None,
    };
    let Described { desc, toml_path, sources, layout } = describe_folder(dir, confine)?;
    let windows = match &desc.anomaly_windows {
        Some(w) => read_windows(dir, &toml_path, w, confine)?,
        None => Vec::new(),
    };
    let mut builder = Builder::new(BuildOptions {
        roles: &desc.columns,
        confine,
        toml_path: &toml_path,
        grid,
        // Only a grid chosen from the first rows needs it.
        expected_rows: if grid.is_some() { sources.iter().map(|s| super::read::expected_rows(&s.path)).sum() } else { 0 },
        windows,
        tail: match keep {
            Keep::Tail(t, _) => Some(t),
            Keep::All | Keep::Grid(_) => None,
        },
        fixed_grid: match keep {
            Keep::Tail(_, g) => g.cloned(),
            Keep::All | Keep::Grid(_) => None,
        },
    });
    let mut rows_read = 0usize;
    for source in &sources {
        let budget = Budget { rows: caps.max_rows.saturating_sub(rows_read), columns: caps.max_columns };
        read_file_chunks(&source.path, &text_options(source, &toml_path)?, budget, CHUNK_ROWS, &mut |frame| {
            rows_read += frame.n_rows;
            builder.add_chunk(source, &frame)
        })?;
        builder.end_file(source)?;
    }
    let mut table = builder.finish(id, desc.machine.clone(), layout, sources.iter().map(|s| s.path.clone()).collect())?;
    apply_units(&mut table, &desc.units);
    table.split_hint = desc.split.hint();
    table.split_hint.trailing_reference_hours =
        desc.anomaly.trailing_hours().map_err(|message| DataError::Describe { file: toml_path.clone(), message })?;
    table.split_hint.healthy_reference_only = desc.anomaly.healthy_only();
    // A tail is for answers; the healthy head of a life it does not hold means nothing there.
    if !matches!(keep, Keep::Tail(..)) {
        table.split_hint.healthy_head_rows = healthy_head_rows(&table, &desc, &toml_path)?;
    }
    match grid {
        // Put onto its grid while streaming: a head given in readings becomes steps.
        Some(_) if table.grid.is_some() => {
            if let (Some(HealthyHead::Rows(_)), Some(g)) = (desc.split.healthy_head().ok().flatten(), &table.grid) {
                table.split_hint.healthy_head_rows =
                    grid::healthy_head_on_grid(table.split_hint.healthy_head_rows, g.raw_interval_s, g.grid.step_s);
            }
            Ok(table)
        }
        Some(setting) => grid::apply(table, setting),
        None => Ok(table),
    }
}

/// The healthy head in rows: the trainers take one row count for every run, so a duration or a share is
/// turned into the count every run has (the shortest run's), never more rows than any run vouches for.
fn healthy_head_rows(table: &Table, desc: &MachineToml, toml_path: &Path) -> Result<Option<usize>, DataError> {
    let head = desc.split.healthy_head().map_err(|message| DataError::Describe { file: toml_path.to_path_buf(), message })?;
    let rows_in = |r: &std::ops::Range<usize>| -> usize {
        match &head {
            Some(HealthyHead::Rows(n)) => *n,
            Some(HealthyHead::Seconds(s)) => {
                let start = table.timestamps[r.start];
                table.timestamps[r.clone()].iter().take_while(|t| **t - start < *s).count()
            }
            Some(HealthyHead::Fraction(f)) => ((r.len() as f64) * f).floor() as usize,
            None => 0,
        }
    };
    if head.is_none() {
        return Ok(None);
    }
    let given = table.given_split.as_deref().unwrap_or_default();
    let runs: Vec<_> = table.life_ranges().into_iter().filter(|(_, r)| given.get(r.start) != Some(&Split::Healthy)).collect();
    let rows = runs.iter().map(|(_, r)| rows_in(r)).min().unwrap_or(0);
    if rows == 0 {
        return Err(DataError::Describe {
            file: toml_path.to_path_buf(),
            message: format!(
                "[split] {} leaves no row of the shortest run; give a longer healthy head",
                head.map(|h| h.to_string()).unwrap_or_default()
            ),
        });
    }
    Ok(Some(rows))
}

/// A zero or negative step would make time stand still or run backwards, which surfaces later as a
/// confusing "timestamp not after the previous one"; name the key instead.
fn check_numbers(roles: &ColumnRoles, toml_path: &Path) -> Result<(), DataError> {
    for (key, value) in [("step_seconds", roles.step_seconds), ("rul_cap_hours", roles.rul_cap_hours)] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return Err(DataError::Describe {
                file: toml_path.to_path_buf(),
                message: format!("[columns] {key} must be a positive number, got {v}"),
            });
        }
    }
    Ok(())
}

pub(super) fn text_options(source: &SourceFile, toml_path: &Path) -> Result<TextOptions, DataError> {
    let delimiter = match source.spec.delimiter.as_deref() {
        None => Delimiter::Byte(b','),
        Some(d) => Delimiter::parse(d).ok_or_else(|| DataError::Describe {
            file: toml_path.to_path_buf(),
            message: format!("delimiter {d:?}: use \",\", \";\", \"tab\" or \"whitespace\""),
        })?,
    };
    Ok(TextOptions { delimiter, header: source.spec.header.unwrap_or(true), names: source.spec.names.clone() })
}

/// A column on a training grid takes its sensor's unit, except a count of readings, which has none.
fn apply_units(table: &mut Table, units: &BTreeMap<String, String>) {
    for s in &mut table.sensors {
        let sensor = grid::source_sensor(&s.name);
        s.unit = if grid::column_stat(&s.name) == grid::GridStat::Count && sensor != s.name {
            String::new()
        } else {
            units.get(sensor).cloned().unwrap_or_else(|| unit_from_name(sensor).to_string())
        };
    }
}

/// The legacy naming convention puts the unit last (`bearing_temp_C`, `rms_velocity_mm_s`).
fn unit_from_name(name: &str) -> &'static str {
    const SUFFIXES: [(&str, &str); 16] = [
        ("_mm_s", "mm/s"),
        ("_m3h", "m³/h"),
        ("_l_min", "l/min"),
        ("_kW", "kW"),
        ("_rpm", "rpm"),
        ("_bar", "bar"),
        ("_psia", "psia"),
        ("_dBA", "dB(A)"),
        ("_pct", "%"),
        ("_percent", "%"),
        ("_Nm", "N·m"),
        ("_C", "°C"),
        ("_K", "K"),
        ("_A", "A"),
        ("_V", "V"),
        ("_hz", "Hz"),
    ];
    SUFFIXES.iter().find(|(s, _)| name.ends_with(s)).map_or("", |(_, u)| u)
}

/// NAB-style labelled windows (epoch seconds, inclusive): rows inside one are marked in the anomaly
/// ground-truth column as they are read (the column is made, all normal, when the files have none).
fn read_windows(
    dir: &Path,
    toml_path: &Path,
    spec: &super::describe::WindowsSpec,
    confine: &Confine,
) -> Result<Vec<(f64, f64)>, DataError> {
    let path = dir.join(&spec.path);
    confine.check(&path, &format!("[anomaly_windows] path = {:?}", spec.path), toml_path)?;
    let describe = |message: String| DataError::Describe { file: toml_path.to_path_buf(), message };
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| describe(format!("{}: {e}", path.display())))?;
    let list = match &spec.key {
        Some(k) => json.get(k).ok_or_else(|| describe(format!("{}: no key {k:?}", path.display())))?,
        None => &json,
    };
    let pairs = list.as_array().ok_or_else(|| describe(format!("{}: expected a list of [start, end] pairs", path.display())))?;
    let mut windows = Vec::new();
    for p in pairs {
        let parse = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).and_then(crate::util::time::parse_timestamp);
        match (parse(p.get(0)), parse(p.get(1))) {
            (Some(a), Some(b)) => windows.push((a, b)),
            _ => return Err(describe(format!("{}: window {p} is not a pair of timestamps", path.display()))),
        }
    }
    Ok(windows)
}

/// One line of `millwright machines`.
#[derive(Clone, Debug, Serialize)]
pub struct MachineSummary {
    pub id: String,
    pub name: String,
    pub family: String,
    pub layout: String,
    pub rows: usize,
    pub sensors: usize,
    /// What a request may name (exclusions, prediction readings).
    pub sensor_names: Vec<String>,
    pub lives: usize,
    pub has_label: bool,
    pub has_rul: bool,
    pub has_anomaly: bool,
    pub interval_s: f64,
    /// The newest reading's time (epoch seconds, or steps × step_seconds): readings taken in must be later.
    pub last_time: Option<f64>,
}

pub fn summarize(t: &Table) -> MachineSummary {
    MachineSummary {
        id: t.machine_id.clone(),
        name: t.display_name().to_string(),
        family: t.meta.family.clone().unwrap_or_default(),
        layout: match &t.layout {
            // "seed" is the value API clients and the page already read for this layout.
            Layout::Legacy { format } => format!("seed ({format})"),
            Layout::Described => "machine.toml".into(),
        },
        rows: t.n_rows(),
        sensors: t.sensors.len(),
        sensor_names: t.sensors.iter().map(|s| s.name.clone()).collect(),
        lives: t.n_lives(),
        has_label: t.label.is_some(),
        has_rul: t.rul.is_some(),
        has_anomaly: t.anomaly.is_some(),
        interval_s: t.interval_s,
        last_time: t.timestamps.iter().copied().reduce(f64::max),
    }
}

/// The machine folders under `<data_dir>/machines`, sorted (hidden ones — temporary writes — skipped).
pub fn machine_ids(data_dir: &Path) -> Result<Vec<String>, DataError> {
    let root = data_dir.join("machines");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = std::fs::read_dir(&root)
        .map_err(|e| DataError::io(&root, e))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Newest modification time among a machine folder's files: what caches of its summary key on.
pub fn folder_mtime(dir: &Path) -> std::time::SystemTime {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

/// A machine id with its table, or with why it did not load.
pub type LoadedMachine = (String, Result<Table, DataError>);

/// Every machine folder under `<data_dir>/machines`, sorted by id, each loaded or with its error.
pub fn list_machines(data_dir: &Path) -> Result<Vec<LoadedMachine>, DataError> {
    Ok(machine_ids(data_dir)?
        .into_iter()
        .map(|id| {
            let loaded = load_machine(data_dir, &id);
            (id, loaded)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Table, DataError>) {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("machines/m1");
        std::fs::create_dir_all(&m).unwrap();
        for (name, body) in files {
            std::fs::write(m.join(name), body).unwrap();
        }
        let t = load_machine(d.path(), "m1");
        (d, t)
    }

    const REPEATS: &str = "timestamp,temp,fail\n2024-01-01T00:00:00Z,10,0\n2024-01-01T00:01:00Z,20,0\n2024-01-01T00:01:00Z,,1\n2024-01-01T00:01:00Z,40,0\n2024-01-01T00:02:00Z,50,0\n";

    #[test]
    fn repeated_timestamps_are_refused_with_the_option_that_fixes_them() {
        let toml = "[[files]]\npath = \"a.csv\"\n[columns]\nlabel = \"fail\"\n";
        let (_d, t) = machine(&[("machine.toml", toml), ("a.csv", REPEATS)]);
        let e = t.err().unwrap().to_string();
        assert!(e.contains("row 4") && e.contains("repeats") && e.contains("duplicates = \"first\""), "{e}");
        assert!(!e.contains("sort the file"), "the advice must match a repeat, not disorder: {e}");
    }

    #[test]
    fn repeated_timestamps_kept_once_or_averaged() {
        let first = "[[files]]\npath = \"a.csv\"\n[columns]\nlabel = \"fail\"\nduplicates = \"first\"\n";
        let (_d, t) = machine(&[("machine.toml", first), ("a.csv", REPEATS)]);
        let t = t.unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.sensors[0].values, [10.0, 20.0, 50.0]);
        assert_eq!(t.label.as_deref(), Some(&[0.0, 0.0, 0.0][..]));
        let mean = first.replace("\"first\"", "\"mean\"");
        let (_d, t) = machine(&[("machine.toml", &mean), ("a.csv", REPEATS)]);
        let t = t.unwrap();
        assert_eq!(t.sensors[0].values, [10.0, 30.0, 50.0], "the missing reading is skipped, not counted as 0");
        assert_eq!(t.label.as_deref(), Some(&[0.0, 1.0, 0.0][..]), "a failure in any repeat is kept");
        assert_eq!(t.interval_s, 60.0);
    }

    #[test]
    fn healthy_head_as_duration_or_fraction_becomes_rows_of_the_shortest_run() {
        let a: String = (0..10).map(|i| format!("{},{}\n", i * 60, i)).collect();
        let b: String = (0..20).map(|i| format!("{},{}\n", i * 60, i)).collect();
        let files =
            |split: &str| format!("[[files]]\npath = \"run*.csv\"\nfile_is_life = true\n[columns]\ntimestamp = \"t\"\n[split]\n{split}\n");
        let load = |split: &str| {
            let toml = files(split);
            let (_d, t) = machine(&[("machine.toml", &toml), ("run1.csv", &format!("t,v\n{a}")), ("run2.csv", &format!("t,v\n{b}"))]);
            t
        };
        assert_eq!(load("healthy_head_duration = \"5 min\"").unwrap().split_hint.healthy_head_rows, Some(5));
        assert_eq!(load("healthy_head_fraction = 0.3").unwrap().split_hint.healthy_head_rows, Some(3));
        assert_eq!(load("healthy_head_rows = 4").unwrap().split_hint.healthy_head_rows, Some(4));
        assert_eq!(load("").unwrap().split_hint.healthy_head_rows, None);
        let e = load("healthy_head_fraction = 0.05").err().unwrap().to_string();
        assert!(e.contains("leaves no row"), "{e}");
    }
}
