//! Assembling a [`Table`] from a machine folder: find the files, give each column its role, check the data.
use super::caps::Budget;
use super::caps::Caps;
use super::confine::Confine;
use super::describe::{ColumnRoles, Duplicates, HealthyHead, MachineToml};
use super::error::DataError;
use super::frame::Frame;
use super::id::MachineId;
use super::read::read_file;
use super::read_text::{Delimiter, TextOptions};
use super::sources::{SourceFile, described_files, legacy_files};
use super::table::{Layout, Sensor, Split, Table};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub(super) const TOML_NAME: &str = "machine.toml";
pub(super) const TIME_NAMES: [&str; 4] = ["timestamp", "datetime", "time", "date"];

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
    load_folder(&dir, id.to_string(), &confine, caps)
}

/// Loads any machine folder, as the operator named it (the examples read files beside the repository); the
/// folder's name is the machine id.
pub fn load_machine_dir(dir: &Path) -> Result<Table, DataError> {
    load_machine_dir_within(dir, &Caps::default())
}

/// [`load_machine_dir`] under the given caps.
pub fn load_machine_dir_within(dir: &Path, caps: &Caps) -> Result<Table, DataError> {
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    load_folder(dir, id, &Confine::anywhere(), caps)
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

pub(super) fn describe_folder(dir: &Path, confine: &Confine) -> Result<Described, DataError> {
    let toml_path = dir.join(TOML_NAME);
    let desc = if toml_path.is_file() {
        confine.check(&toml_path, TOML_NAME, dir)?;
        let size = std::fs::metadata(&toml_path).map_err(|e| DataError::io(&toml_path, e))?.len();
        if size > MAX_TOML_BYTES {
            return Err(DataError::Describe { file: toml_path, message: format!("{size} bytes; a description is at most 1 MB") });
        }
        let text = std::fs::read_to_string(&toml_path).map_err(|e| DataError::io(&toml_path, e))?;
        MachineToml::parse(&text).map_err(|message| DataError::Describe { file: toml_path.clone(), message })?
    } else {
        MachineToml::default()
    };
    check_numbers(&desc.columns, &toml_path)?;
    desc.split.healthy_head().map_err(|message| DataError::Describe { file: toml_path.clone(), message })?;
    let (sources, layout) = if desc.files.is_empty() {
        let (files, format) = legacy_files(dir).ok_or_else(|| DataError::NoLayout { dir: dir.to_path_buf() })?;
        for f in &files {
            let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            confine.check(&f.path, &format!("the legacy-layout file {name}"), dir)?;
        }
        (files, Layout::Legacy { format: format.to_string() })
    } else {
        (described_files(dir, &toml_path, &desc, confine)?, Layout::Described)
    };
    Ok(Described { desc, toml_path, sources, layout })
}

fn load_folder(dir: &Path, id: String, confine: &Confine, caps: &Caps) -> Result<Table, DataError> {
    let Described { desc, toml_path, sources, layout } = describe_folder(dir, confine)?;
    let mut builder = Builder::new(&desc.columns, confine);
    let mut rows_left = caps.max_rows;
    for (index, source) in sources.iter().enumerate() {
        let budget = Budget { rows: rows_left, columns: caps.max_columns };
        let frame = read_file(&source.path, &text_options(source, &toml_path)?, budget)?;
        rows_left = rows_left.saturating_sub(frame.n_rows);
        builder.add_file(index, source, &frame, &toml_path)?;
    }
    let mut table = builder.finish(id, desc.machine.clone(), layout, sources.iter().map(|s| s.path.clone()).collect())?;
    apply_units(&mut table, &desc.units);
    if let Some(w) = &desc.anomaly_windows {
        apply_windows(&mut table, dir, &toml_path, w, confine)?;
    }
    table.split_hint = desc.split.hint();
    table.split_hint.healthy_head_rows = healthy_head_rows(&table, &desc, &toml_path)?;
    Ok(table)
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

/// Which column of a file plays which role, by index.
struct Roles {
    time: Option<usize>,
    unit: Option<usize>,
    label: Option<usize>,
    rul: Option<usize>,
    anomaly: Option<usize>,
    sensors: Vec<usize>,
}

struct Builder<'a> {
    roles: &'a ColumnRoles,
    confine: &'a Confine,
    sensor_names: Option<Vec<String>>,
    timestamps: Vec<f64>,
    life: Vec<u32>,
    lives_known: bool,
    splits: Vec<Option<Split>>,
    sensors: Vec<Vec<f64>>,
    label: Option<Vec<f64>>,
    rul: Option<Vec<f64>>,
    anomaly: Option<Vec<f64>>,
    next_life: u32,
    first_file: Option<PathBuf>,
}

impl<'a> Builder<'a> {
    fn new(roles: &'a ColumnRoles, confine: &'a Confine) -> Self {
        Builder {
            roles,
            confine,
            sensor_names: None,
            timestamps: Vec::new(),
            life: Vec::new(),
            lives_known: false,
            splits: Vec::new(),
            sensors: Vec::new(),
            label: None,
            rul: None,
            anomaly: None,
            next_life: 0,
            first_file: None,
        }
    }

    /// Reference files of healthy data may lack the ground-truth columns (SKAB's anomaly-free run has no `anomaly`).
    fn resolve(&mut self, frame: &Frame, healthy: bool) -> Result<Roles, DataError> {
        let r = self.roles;
        let find = |name: &Option<String>| match name.as_deref() {
            Some(n) if healthy && !frame.names.iter().any(|c| c == n) => Ok(None),
            Some(n) => frame.index_of(n).map(Some),
            None => Ok(None),
        };
        let time = match &r.timestamp {
            Some(n) => Some(frame.index_of(n)?),
            None => TIME_NAMES.iter().find_map(|n| frame.names.iter().position(|c| c.eq_ignore_ascii_case(n))),
        };
        let rul = match &r.rul {
            Some(n) => Some(frame.index_of(n)?),
            None => frame.names.iter().position(|c| c == "rul"),
        };
        let (unit, label, anomaly) = (find(&r.unit)?, find(&r.label)?, find(&r.anomaly)?);
        for ignored in r.ignore.iter().filter(|_| !healthy) {
            frame.index_of(ignored)?;
        }
        let taken = [time, unit, label, rul, anomaly];
        let sensors = match (&self.sensor_names, &r.sensors) {
            (Some(names), _) => names.iter().map(|n| frame.index_of(n)).collect::<Result<Vec<_>, _>>()?,
            (None, Some(names)) => names.iter().map(|n| frame.index_of(n)).collect::<Result<Vec<_>, _>>()?,
            (None, None) => (0..frame.names.len())
                .filter(|i| !taken.contains(&Some(*i)))
                .filter(|i| !r.ignore.contains(&frame.names[*i]))
                .filter(|i| r.categorical.contains_key(&frame.names[*i]) || frame.looks_numeric(*i))
                .collect(),
        };
        if sensors.is_empty() {
            return Err(DataError::NoSensors { file: frame.file.clone() });
        }
        if self.sensor_names.is_none() {
            self.sensor_names = Some(sensors.iter().map(|i| frame.names[*i].clone()).collect());
        }
        Ok(Roles { time, unit, label, rul, anomaly, sensors })
    }

    fn add_file(&mut self, index: usize, source: &SourceFile, frame: &Frame, toml_path: &Path) -> Result<(), DataError> {
        let healthy = source.split == Some(Split::Healthy);
        let roles = self.resolve(frame, healthy)?;
        let n = frame.n_rows;
        let base = self.timestamps.len();
        self.first_file.get_or_insert_with(|| frame.file.clone());
        let times = match roles.time {
            Some(c) if self.roles.step_seconds.is_some() => {
                let step = self.roles.step_seconds.unwrap_or(1.0);
                frame.numeric(c)?.into_iter().map(|v| v * step).collect()
            }
            Some(c) => frame.timestamps(c)?,
            None => (0..n).map(|i| i as f64 * self.roles.step_seconds.unwrap_or(1.0)).collect(),
        };
        let lives = self.file_lives(index, source, frame, &roles)?;
        let how = self.roles.duplicates;
        check_monotonic(frame, &times, &lives, how)?;
        let groups = (how != Duplicates::Error).then(|| repeat_groups(&times, &lives)).filter(|g| g.len() < n);
        let fold = |values: Vec<f64>, reduce: Reduce| match &groups {
            Some(g) => collapse(g, &values, reduce),
            None => values,
        };
        let (sensor_reduce, flag_reduce) = match how {
            Duplicates::Mean => (Reduce::Mean, Reduce::Max),
            Duplicates::First | Duplicates::Error => (Reduce::First, Reduce::First),
        };
        for (k, &c) in roles.sensors.iter().enumerate() {
            let categorical = self.roles.categorical.contains_key(&frame.names[c]);
            let values = fold(self.sensor_values(frame, c)?, if categorical { Reduce::First } else { sensor_reduce });
            if self.sensors.len() <= k {
                self.sensors.push(Vec::new());
            }
            self.sensors[k].extend(values);
        }
        let rul = self.file_rul(source, frame, &roles, &times, &lives, toml_path)?.map(|v| fold(v, sensor_reduce));
        let (times, lives) = match &groups {
            Some(g) => (g.iter().map(|r| times[r.start]).collect(), g.iter().map(|r| lives[r.start]).collect()),
            None => (times, lives),
        };
        let n = times.len();
        let normal = |role: &Option<String>| (healthy && role.is_some()).then(|| vec![0.0; n]);
        let label = roles.label.map(|c| frame.numeric(c)).transpose()?.map(|v| fold(v, flag_reduce)).or_else(|| normal(&self.roles.label));
        let anomaly =
            roles.anomaly.map(|c| frame.numeric(c)).transpose()?.map(|v| fold(v, flag_reduce)).or_else(|| normal(&self.roles.anomaly));
        push_optional(&mut self.label, base, label, n);
        push_optional(&mut self.anomaly, base, anomaly, n);
        push_optional(&mut self.rul, base, rul, n);
        self.timestamps.extend(times);
        self.life.extend(lives);
        self.splits.extend(std::iter::repeat_n(source.split, n));
        Ok(())
    }

    fn sensor_values(&self, frame: &Frame, c: usize) -> Result<Vec<f64>, DataError> {
        match self.roles.categorical.get(&frame.names[c]) {
            None => frame.numeric(c),
            Some(levels) => frame
                .text(c)
                .iter()
                .enumerate()
                .map(|(r, v)| {
                    // A level written as a number matches the same number however the file spells it
                    // ("1" and "1.0"): numeric cells are read as numbers, not kept as written.
                    let same = |l: &String| l == v || l.trim().parse::<f64>().ok().zip(v.parse::<f64>().ok()).is_some_and(|(a, b)| a == b);
                    levels.iter().position(same).map(|p| p as f64).ok_or_else(|| frame.cell_error(c, r, v, "one of the listed categories"))
                })
                .collect(),
        }
    }

    /// Global life id per row: from a unit column, one per file, or split where RUL jumps up (a repaired machine).
    fn file_lives(&mut self, index: usize, source: &SourceFile, frame: &Frame, roles: &Roles) -> Result<Vec<u32>, DataError> {
        let n = frame.n_rows;
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::with_capacity(n);
        if let Some(c) = roles.unit {
            self.lives_known = true;
            for key in frame.text(c) {
                let next = &mut self.next_life;
                let id = *ids.entry(key).or_insert_with(|| {
                    *next += 1;
                    *next - 1
                });
                out.push(id);
            }
        } else if let (Some(c), false) = (roles.rul, source.spec.file_is_life) {
            let rul = frame.numeric(c)?;
            let mut current = self.next_life;
            for i in 0..n {
                if i > 0 && rul[i] > rul[i - 1] {
                    current += 1;
                    self.lives_known = true;
                }
                out.push(current);
            }
            self.next_life = current + 1;
        } else {
            self.lives_known |= source.spec.file_is_life;
            out.resize(n, self.next_life);
            self.next_life += 1;
        }
        let _ = index;
        Ok(out)
    }

    fn file_rul(
        &self,
        source: &SourceFile,
        frame: &Frame,
        roles: &Roles,
        times: &[f64],
        lives: &[u32],
        toml_path: &Path,
    ) -> Result<Option<Vec<f64>>, DataError> {
        if let Some(rel) = &source.spec.rul_at_end {
            let path = toml_path.parent().unwrap_or(Path::new(".")).join(rel);
            self.confine.check(&path, &format!("rul_at_end = {rel:?}"), toml_path)?;
            let ends = read_number_list(&path)?;
            let order = life_order(lives);
            if order.len() != ends.len() {
                return Err(DataError::Describe {
                    file: toml_path.to_path_buf(),
                    message: format!(
                        "{} has {} RUL values but {} has {} units",
                        path.display(),
                        ends.len(),
                        frame.file.display(),
                        order.len()
                    ),
                });
            }
            let end_of: HashMap<u32, f64> = order.iter().copied().zip(ends).collect();
            return Ok(Some(hours_to_end(times, lives, |l| end_of.get(&l).copied().unwrap_or(0.0))));
        }
        if let Some(c) = roles.rul {
            return Ok(Some(frame.numeric(c)?));
        }
        Ok(self.roles.rul_from_end.then(|| hours_to_end(times, lives, |_| 0.0)))
    }

    fn finish(
        self,
        machine_id: String,
        meta: super::table::MachineMeta,
        layout: Layout,
        sources: Vec<PathBuf>,
    ) -> Result<Table, DataError> {
        let file = self.first_file.clone().unwrap_or_default();
        let n = self.timestamps.len();
        if n < 2 {
            return Err(DataError::TooFewRows { file, rows: n });
        }
        let names = self.sensor_names.unwrap_or_default();
        let sensors: Vec<Sensor> =
            names.into_iter().zip(self.sensors).map(|(name, values)| Sensor { unit: String::new(), name, values }).collect();
        if let Some(s) = sensors.iter().find(|s| s.values.iter().all(|v| v.is_nan())) {
            return Err(DataError::AllMissing { file, column: s.name.clone() });
        }
        let given_split = self.splits.iter().all(Option::is_some).then(|| self.splits.iter().flatten().copied().collect());
        let mut table = Table {
            machine_id,
            meta,
            layout,
            sources,
            interval_s: 0.0,
            timestamps: self.timestamps,
            life: self.life,
            lives_known: self.lives_known,
            given_split,
            sensors,
            label: self.label,
            rul: self.rul,
            anomaly: self.anomaly,
            split_hint: Default::default(),
            rul_cap_hint: self.roles.rul_cap_hours,
            grid: None,
        };
        table.interval_s = median_interval(&table);
        Ok(table)
    }
}

/// Appends a file's optional column, padding with NaN where earlier or later files lack it.
fn push_optional(target: &mut Option<Vec<f64>>, base: usize, values: Option<Vec<f64>>, n: usize) {
    match (target.as_mut(), values) {
        (Some(t), Some(v)) => t.extend(v),
        (Some(t), None) => t.extend(std::iter::repeat_n(f64::NAN, n)),
        (None, Some(v)) => {
            let mut t = vec![f64::NAN; base];
            t.extend(v);
            *target = Some(t);
        }
        (None, None) => {}
    }
}

fn life_order(lives: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = Vec::new();
    for &l in lives {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    order
}

fn hours_to_end(times: &[f64], lives: &[u32], end_rul: impl Fn(u32) -> f64) -> Vec<f64> {
    let mut last: HashMap<u32, f64> = HashMap::new();
    for (t, l) in times.iter().zip(lives) {
        last.insert(*l, *t);
    }
    times.iter().zip(lives).map(|(t, l)| end_rul(*l) + (last.get(l).copied().unwrap_or(*t) - t) / 3600.0).collect()
}

fn read_number_list(path: &Path) -> Result<Vec<f64>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    text.split_whitespace()
        .enumerate()
        .map(|(i, tok)| {
            tok.parse::<f64>().map_err(|_| DataError::Cell {
                file: path.to_path_buf(),
                row: i + 1,
                column: "rul".into(),
                value: tok.into(),
                expected: "a number",
            })
        })
        .collect()
}

/// Time must move forward within a life; a repeated timestamp is refused, kept once or averaged as
/// `duplicates` says, and each fault gets the advice that fixes it.
fn check_monotonic(frame: &Frame, times: &[f64], lives: &[u32], how: Duplicates) -> Result<(), DataError> {
    let mut last: HashMap<u32, f64> = HashMap::new();
    for (i, (t, l)) in times.iter().zip(lives).enumerate() {
        let Some(prev) = last.insert(*l, *t) else { continue };
        if *t == prev && how == Duplicates::Error {
            return Err(DataError::DuplicateTime {
                file: frame.file.clone(),
                row: frame.first_row + i,
                life: l.to_string(),
                time: crate::util::time::format_timestamp(*t),
            });
        }
        if *t < prev {
            return Err(DataError::NonMonotonic {
                file: frame.file.clone(),
                row: frame.first_row + i,
                life: l.to_string(),
                previous: crate::util::time::format_timestamp(prev),
                current: crate::util::time::format_timestamp(*t),
            });
        }
    }
    Ok(())
}

/// Runs of consecutive rows sharing one life and timestamp (times are already known not to go backwards).
fn repeat_groups(times: &[f64], lives: &[u32]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=times.len() {
        if i == times.len() || times[i] != times[start] || lives[i] != lives[start] {
            out.push(start..i);
            start = i;
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Reduce {
    First,
    /// Mean of the readings present; NaN when none is.
    Mean,
    /// Any flag set sets the row's flag.
    Max,
}

fn collapse(groups: &[std::ops::Range<usize>], values: &[f64], how: Reduce) -> Vec<f64> {
    groups
        .iter()
        .map(|r| {
            let present = values[r.clone()].iter().copied().filter(|v| !v.is_nan());
            match how {
                Reduce::First => values[r.start],
                Reduce::Max => present.fold(f64::NAN, f64::max),
                Reduce::Mean => {
                    let (sum, count) = present.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
                    if count == 0 { f64::NAN } else { sum / count as f64 }
                }
            }
        })
        .collect()
}

fn median_interval(t: &Table) -> f64 {
    let mut diffs: Vec<f64> =
        (1..t.n_rows()).filter(|&i| t.life[i] == t.life[i - 1]).map(|i| t.timestamps[i] - t.timestamps[i - 1]).collect();
    if diffs.is_empty() {
        return 1.0;
    }
    let mid = diffs.len() / 2;
    diffs.select_nth_unstable_by(mid, f64::total_cmp);
    diffs[mid]
}

fn apply_units(table: &mut Table, units: &BTreeMap<String, String>) {
    for s in &mut table.sensors {
        s.unit = units.get(&s.name).cloned().unwrap_or_else(|| unit_from_name(&s.name).to_string());
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

/// NAB-style labelled windows become (or extend) the anomaly ground-truth column.
fn apply_windows(
    table: &mut Table,
    dir: &Path,
    toml_path: &Path,
    spec: &super::describe::WindowsSpec,
    confine: &Confine,
) -> Result<(), DataError> {
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
    let flags = table.anomaly.get_or_insert_with(|| vec![0.0; table.timestamps.len()]);
    for (flag, t) in flags.iter_mut().zip(&table.timestamps) {
        if windows.iter().any(|(a, b)| t >= a && t <= b) {
            *flag = 1.0;
        }
    }
    Ok(())
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
