//! A machine's files, chunk by chunk, into one [`Table`]: roles, lives, time checks and repeated timestamps are
//! carried across chunk boundaries, and once the rows are known to go onto a training grid, every complete
//! step is aggregated as it arrives. A year of 1 s readings is then never in memory as readings: only the
//! chunk being read, the step still filling and the steps made so far.
use super::confine::Confine;
use super::describe::{ColumnRoles, Duplicates};
use super::error::DataError;
use super::frame::Frame;
use super::grid::{self, Grid, GridSetting};
use super::sources::{FileKind, LIVE_TIME, Origin, SourceFile};
use super::table::{Layout, MachineMeta, Sensor, Split, SplitHint, Table};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Rows a reader hands over at a time.
pub(super) const CHUNK_ROWS: usize = 65_536;
/// Readings held before the grid is chosen from them: past this, the rest of the data is put onto the grid
/// as it streams in (about 50 MB for 20 sensors). Below it the choice is made on the whole table, exactly.
pub const STREAM_AFTER_ROWS: usize = 262_144;

/// Which column of a file plays which role, by index.
struct Roles {
    time: Option<usize>,
    unit: Option<usize>,
    label: Option<usize>,
    rul: Option<usize>,
    anomaly: Option<usize>,
    sensors: Vec<usize>,
}

/// Columns of rows, the same shape whether they hold readings or grid steps.
#[derive(Default)]
struct Rows {
    timestamps: Vec<f64>,
    life: Vec<u32>,
    splits: Vec<Option<Split>>,
    sensors: Vec<Vec<f64>>,
    label: Option<Vec<f64>>,
    rul: Option<Vec<f64>>,
    anomaly: Option<Vec<f64>>,
}

impl Rows {
    fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Appends `other`, padding an optional column with NaN where only one side has it.
    fn append(&mut self, other: Rows) {
        let (base, n) = (self.len(), other.len());
        push_optional(&mut self.label, base, other.label, n);
        push_optional(&mut self.rul, base, other.rul, n);
        push_optional(&mut self.anomaly, base, other.anomaly, n);
        for (k, values) in other.sensors.into_iter().enumerate() {
            if self.sensors.len() <= k {
                self.sensors.push(vec![f64::NAN; base]);
            }
            self.sensors[k].extend(values);
        }
        self.timestamps.extend(other.timestamps);
        self.life.extend(other.life);
        self.splits.extend(other.splits);
    }

    /// Takes the rows before `at`, leaving the rest.
    fn take_front(&mut self, at: usize) -> Rows {
        fn front<T>(v: &mut Vec<T>, at: usize) -> Vec<T> {
            let rest = v.split_off(at);
            std::mem::replace(v, rest)
        }
        let opt = |v: &mut Option<Vec<f64>>| v.as_mut().map(|v| front(v, at));
        Rows {
            timestamps: front(&mut self.timestamps, at),
            life: front(&mut self.life, at),
            splits: front(&mut self.splits, at),
            sensors: self.sensors.iter_mut().map(|v| front(v, at)).collect(),
            label: opt(&mut self.label),
            rul: opt(&mut self.rul),
            anomaly: opt(&mut self.anomaly),
        }
    }

    /// Rows sharing one life and timestamp kept once or averaged, as `duplicates` says (a sensor given as
    /// categories keeps its first level; a flag set in any repeat stays set).
    fn collapse_repeats(self, how: Duplicates, categorical: &[bool]) -> Rows {
        if how == Duplicates::Error {
            return self;
        }
        let groups = repeat_groups(&self.timestamps, &self.life);
        if groups.len() == self.len() {
            return self;
        }
        let (sensor_reduce, flag_reduce) = match how {
            Duplicates::Mean => (Reduce::Mean, Reduce::Max),
            Duplicates::First | Duplicates::Error => (Reduce::First, Reduce::First),
        };
        let fold = |values: &[f64], reduce: Reduce| collapse(&groups, values, reduce);
        Rows {
            timestamps: groups.iter().map(|r| self.timestamps[r.start]).collect(),
            life: groups.iter().map(|r| self.life[r.start]).collect(),
            splits: groups.iter().map(|r| self.splits[r.start]).collect(),
            sensors: self
                .sensors
                .iter()
                .enumerate()
                .map(|(k, v)| fold(v, if categorical.get(k) == Some(&true) { Reduce::First } else { sensor_reduce }))
                .collect(),
            label: self.label.as_deref().map(|v| fold(v, flag_reduce)),
            rul: self.rul.as_deref().map(|v| fold(v, sensor_reduce)),
            anomaly: self.anomaly.as_deref().map(|v| fold(v, flag_reduce)),
        }
    }
}

/// What carries over between the chunks of one file.
struct FileState {
    roles: Roles,
    healthy: bool,
    /// Unit keys seen in this file and their life ids.
    ids: HashMap<String, u32>,
    /// The life the next row continues (RUL resets and one-life-per-file).
    current_life: u32,
    prev_rul: Option<f64>,
    /// Each life's latest time, for the time-order check and for remaining life counted from the end.
    last_time: HashMap<u32, f64>,
    /// Lives in the order they first appear (`rul_at_end` lists one value per unit in that order).
    order: Vec<u32>,
    /// Times are stored relative to this for remaining life counted from the end (precision at epoch scale).
    t0: Option<f64>,
    rows: usize,
}

/// Where the choice of a training grid stands.
enum Stream {
    /// Still reading the first rows; the choice is made from them, or on the whole table at the end.
    Undecided,
    /// Rows go onto this grid as they arrive.
    Gridded { grid: Grid, why: String, counts: Vec<usize> },
    /// The first rows said no grid: everything is kept as read (and checked again at the end).
    Kept,
}

/// Assembles a table from the chunks of a machine's files, in order.
pub(super) struct Builder<'a> {
    roles: &'a ColumnRoles,
    confine: &'a Confine,
    toml_path: &'a Path,
    grid: Option<&'a GridSetting>,
    /// Rows the files are expected to hold, for choosing a grid from the first ones.
    expected_rows: usize,
    windows: Vec<(f64, f64)>,
    sensor_names: Option<Vec<String>>,
    lives_known: bool,
    next_life: u32,
    first_file: Option<PathBuf>,
    /// Rows read but not yet final: before the grid is chosen all of them, after it the step still filling.
    pending: Rows,
    /// Final rows: grid steps once a grid is chosen in the stream.
    done: Rows,
    file: Option<FileState>,
    /// Per life: what turns a stored `t0 − t` (hours) into remaining life, for RUL counted from a life's end.
    rul_from_end: HashMap<u32, f64>,
    raw_interval_s: Option<f64>,
    stream: Stream,
    tail: Option<Tail>,
    /// The first reading of the last life, once the rows after it are cut to the tail.
    life_head: Option<Rows>,
}

pub(super) struct BuildOptions<'a> {
    pub roles: &'a ColumnRoles,
    pub confine: &'a Confine,
    pub toml_path: &'a Path,
    /// The training grid policy; `None` keeps the readings as they are.
    pub grid: Option<&'a GridSetting>,
    pub expected_rows: usize,
    /// Labelled anomaly windows (epoch seconds, inclusive).
    pub windows: Vec<(f64, f64)>,
    /// Keep only the latest readings of the last life (for answers from a machine's own history).
    pub tail: Option<Tail>,
    /// Put every reading onto this grid (a model's), with no choice to make.
    pub fixed_grid: Option<Grid>,
}

/// The latest rows a prediction needs: the last `rows` of the last life, plus the life's first row (how long
/// the life has run). On a fixed grid, rows are steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tail {
    pub rows: usize,
}

impl<'a> Builder<'a> {
    pub(super) fn new(o: BuildOptions<'a>) -> Self {
        Builder {
            roles: o.roles,
            confine: o.confine,
            toml_path: o.toml_path,
            grid: o.grid,
            expected_rows: o.expected_rows,
            windows: o.windows,
            sensor_names: None,
            lives_known: false,
            next_life: 0,
            first_file: None,
            pending: Rows::default(),
            done: Rows::default(),
            file: None,
            rul_from_end: HashMap::new(),
            raw_interval_s: None,
            stream: match o.fixed_grid {
                Some(grid) => Stream::Gridded { grid, why: String::new(), counts: Vec::new() },
                None => Stream::Undecided,
            },
            tail: o.tail,
            life_head: None,
        }
    }

    /// Reference files of healthy data may lack the ground-truth columns (SKAB's anomaly-free run has no
    /// `anomaly`); compacted readings have only their time and the sensors.
    fn resolve(&mut self, frame: &Frame, kind: FileKind) -> Result<Roles, DataError> {
        let r = self.roles;
        let healthy = kind == FileKind::Healthy;
        if kind == FileKind::Live {
            let Some(names) = self.sensor_names.clone().or_else(|| r.sensors.clone()) else {
                return Err(DataError::NoSensors { file: frame.file.clone() });
            };
            let sensors = names.iter().map(|n| frame.index_of(n)).collect::<Result<Vec<_>, _>>()?;
            self.sensor_names.get_or_insert(names);
            return Ok(Roles { time: Some(frame.index_of(LIVE_TIME)?), unit: None, label: None, rul: None, anomaly: None, sensors });
        }
        let find = |name: &Option<String>| match name.as_deref() {
            Some(n) if healthy && !frame.names.iter().any(|c| c == n) => Ok(None),
            Some(n) => frame.index_of(n).map(Some),
            None => Ok(None),
        };
        let time = match &r.timestamp {
            Some(n) => Some(frame.index_of(n)?),
            None => super::describe::TIME_NAMES.iter().find_map(|n| frame.names.iter().position(|c| c.eq_ignore_ascii_case(n))),
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

    /// The next chunk of the current file (the first chunk of a file starts it).
    pub(super) fn add_chunk(&mut self, source: &SourceFile, frame: &Frame) -> Result<(), DataError> {
        let mut state = match self.file.take() {
            Some(s) => s,
            None => {
                let kind = source.kind();
                let healthy = kind == FileKind::Healthy;
                let roles = self.resolve(frame, kind)?;
                self.first_file.get_or_insert_with(|| frame.file.clone());
                FileState {
                    roles,
                    healthy,
                    ids: HashMap::new(),
                    // Compacted readings continue the life that is still running.
                    current_life: if kind == FileKind::Live { self.next_life.saturating_sub(1) } else { self.next_life },
                    prev_rul: None,
                    last_time: HashMap::new(),
                    order: Vec::new(),
                    t0: None,
                    rows: 0,
                }
            }
        };
        let rows = self.chunk_rows(source, frame, &mut state);
        self.file = Some(state);
        let rows = rows?;
        self.pending.append(rows);
        self.stream_on()
    }

    fn chunk_rows(&mut self, source: &SourceFile, frame: &Frame, state: &mut FileState) -> Result<Rows, DataError> {
        let n = frame.n_rows;
        let roles = &state.roles;
        let times: Vec<f64> = match roles.time {
            Some(c) if self.roles.step_seconds.is_some() && source.origin == Origin::History => {
                let step = self.roles.step_seconds.unwrap_or(1.0);
                frame.numeric(c)?.into_iter().map(|v| v * step).collect()
            }
            Some(c) => frame.timestamps(c)?,
            None => (0..n).map(|i| (state.rows + i) as f64 * self.roles.step_seconds.unwrap_or(1.0)).collect(),
        };
        let lives = self.chunk_lives(source, frame, state)?;
        let roles = &state.roles;
        check_monotonic(frame, &times, &lives, self.roles.duplicates, &mut state.last_time)?;
        for &l in &lives {
            if state.order.last() != Some(&l) && !state.order.contains(&l) {
                state.order.push(l);
            }
        }
        let mut sensors = Vec::with_capacity(roles.sensors.len());
        for &c in &roles.sensors {
            sensors.push(self.sensor_values(frame, c)?);
        }
        // The running life has not ended: its readings have no remaining life to count from an end.
        let derived =
            source.origin == Origin::History && (source.spec.rul_at_end.is_some() || (roles.rul.is_none() && self.roles.rul_from_end));
        let rul = if derived {
            let t0 = *state.t0.get_or_insert(times.first().copied().unwrap_or(0.0));
            Some(times.iter().map(|t| (t0 - t) / 3600.0).collect())
        } else {
            roles.rul.map(|c| frame.numeric(c)).transpose()?
        };
        let normal = |role: &Option<String>| (state.healthy && role.is_some()).then(|| vec![0.0; n]);
        let label = roles.label.map(|c| frame.numeric(c)).transpose()?.or_else(|| normal(&self.roles.label));
        let mut anomaly = roles.anomaly.map(|c| frame.numeric(c)).transpose()?.or_else(|| normal(&self.roles.anomaly));
        if !self.windows.is_empty() {
            let flags = anomaly.get_or_insert_with(|| vec![0.0; n]);
            for (flag, t) in flags.iter_mut().zip(&times) {
                if self.windows.iter().any(|(a, b)| t >= a && t <= b) {
                    *flag = 1.0;
                }
            }
        }
        state.rows += n;
        Ok(Rows { timestamps: times, life: lives, splits: vec![source.split; n], sensors, label, rul, anomaly })
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
    fn chunk_lives(&mut self, source: &SourceFile, frame: &Frame, state: &mut FileState) -> Result<Vec<u32>, DataError> {
        let n = frame.n_rows;
        let mut out = Vec::with_capacity(n);
        if let Some(c) = state.roles.unit {
            self.lives_known = true;
            for key in frame.text(c) {
                let next = &mut self.next_life;
                let id = *state.ids.entry(key).or_insert_with(|| {
                    *next += 1;
                    *next - 1
                });
                out.push(id);
            }
        } else if let (Some(c), false) = (state.roles.rul, source.spec.file_is_life) {
            for r in frame.numeric(c)? {
                if state.prev_rul.is_some_and(|p| r > p) {
                    state.current_life += 1;
                    self.lives_known = true;
                }
                state.prev_rul = Some(r);
                out.push(state.current_life);
            }
        } else {
            self.lives_known |= source.spec.file_is_life;
            out.resize(n, state.current_life);
        }
        Ok(out)
    }

    /// The current file is read: its lives are closed and remaining life counted from their ends is fixed.
    pub(super) fn end_file(&mut self, source: &SourceFile) -> Result<(), DataError> {
        let Some(state) = self.file.take() else { return Ok(()) };
        if state.roles.unit.is_none() {
            self.next_life = state.current_life + 1;
        }
        let t0 = state.t0.unwrap_or(0.0);
        let hours_left = |l: u32| state.last_time.get(&l).map_or(0.0, |t| (t - t0) / 3600.0);
        if let Some(rel) = &source.spec.rul_at_end {
            let path = self.toml_path.parent().unwrap_or(Path::new(".")).join(rel);
            self.confine.check(&path, &format!("rul_at_end = {rel:?}"), self.toml_path)?;
            let ends = read_number_list(&path)?;
            if state.order.len() != ends.len() {
                return Err(DataError::Describe {
                    file: self.toml_path.to_path_buf(),
                    message: format!(
                        "{} has {} RUL values but {} has {} units",
                        path.display(),
                        ends.len(),
                        source.path.display(),
                        state.order.len()
                    ),
                });
            }
            for (l, end) in state.order.iter().zip(ends) {
                self.rul_from_end.insert(*l, end + hours_left(*l));
            }
        } else if state.roles.rul.is_none() && self.roles.rul_from_end {
            for l in &state.order {
                self.rul_from_end.insert(*l, hours_left(*l));
            }
        }
        Ok(())
    }

    fn categorical(&self) -> Vec<bool> {
        let names = self.sensor_names.as_deref().unwrap_or_default();
        names.iter().map(|n| self.roles.categorical.contains_key(n)).collect()
    }

    /// After a chunk: choose the grid once enough readings are held, then put complete steps onto it; or,
    /// when only the tail is wanted, let the older readings go.
    fn stream_on(&mut self) -> Result<(), DataError> {
        if let Some(tail) = self.tail {
            if matches!(self.stream, Stream::Gridded { .. }) {
                self.flush(false)?;
                cut_to_tail(&mut self.done, &mut self.life_head, tail);
            } else {
                cut_to_tail(&mut self.pending, &mut self.life_head, tail);
            }
            return Ok(());
        }
        if matches!(self.stream, Stream::Undecided)
            && let Some(setting) = self.grid
            && self.pending.len() >= STREAM_AFTER_ROWS
        {
            let prefix = self.pending_shape();
            self.raw_interval_s = Some(prefix.interval_s);
            self.stream = match setting.grid_for_prefix(&prefix, self.expected_rows) {
                Some((grid, why)) => Stream::Gridded { grid, why, counts: Vec::new() },
                None => Stream::Kept,
            };
        }
        if matches!(self.stream, Stream::Gridded { .. }) {
            self.flush(false)?;
        }
        Ok(())
    }

    /// The pending rows' times and lives as a table, for the grid choice.
    fn pending_shape(&self) -> Table {
        let rows = Rows { timestamps: self.pending.timestamps.clone(), life: self.pending.life.clone(), ..Rows::default() };
        let mut t = self.table_of(rows, Vec::new());
        t.interval_s = median_interval(&t);
        t
    }

    /// Puts the pending rows onto the grid, all of them or all but the step still filling.
    fn flush(&mut self, all: bool) -> Result<(), DataError> {
        let grid = match &self.stream {
            Stream::Gridded { grid, .. } => grid.clone(),
            Stream::Undecided | Stream::Kept => return Ok(()),
        };
        let at = if all { self.pending.len() } else { grid::open_step_start(&self.pending.timestamps, &self.pending.life, grid.step_s) };
        if at == 0 {
            return Ok(());
        }
        let part = self.pending.take_front(at).collapse_repeats(self.roles.duplicates, &self.categorical());
        let aggregated = grid::aggregate(&self.table_of(part, self.sensor_names.clone().unwrap_or_default()), &grid)?;
        if let Stream::Gridded { counts, .. } = &mut self.stream {
            counts.extend(aggregated.counts);
        }
        let t = aggregated.table;
        let n = t.life.len();
        self.done.append(Rows {
            timestamps: t.timestamps,
            life: t.life,
            splits: match t.given_split {
                Some(g) => g.into_iter().map(Some).collect(),
                None => vec![None; n],
            },
            sensors: t.sensors.into_iter().map(|s| s.values).collect(),
            label: t.label,
            rul: t.rul,
            anomaly: t.anomaly,
        });
        Ok(())
    }

    /// Rows as a table with the sensors named (units and split hints come later).
    fn table_of(&self, rows: Rows, names: Vec<String>) -> Table {
        let given_split = rows.splits.iter().all(Option::is_some).then(|| rows.splits.iter().flatten().copied().collect());
        Table {
            machine_id: String::new(),
            meta: MachineMeta::default(),
            layout: Layout::Described,
            sources: Vec::new(),
            interval_s: self.raw_interval_s.unwrap_or(0.0),
            timestamps: rows.timestamps,
            life: rows.life,
            lives_known: self.lives_known,
            given_split,
            sensors: names.into_iter().zip(rows.sensors).map(|(name, values)| Sensor { unit: String::new(), name, values }).collect(),
            label: rows.label,
            rul: rows.rul,
            anomaly: rows.anomaly,
            split_hint: SplitHint::default(),
            rul_cap_hint: self.roles.rul_cap_hours,
            grid: None,
        }
    }

    /// The table, on the grid chosen in the stream or — for data that never needed streaming — on the grid the
    /// whole table calls for.
    pub(super) fn finish(
        mut self,
        machine_id: String,
        meta: MachineMeta,
        layout: Layout,
        sources: Vec<PathBuf>,
    ) -> Result<Table, DataError> {
        let file = self.first_file.clone().unwrap_or_default();
        let streamed = matches!(self.stream, Stream::Gridded { .. });
        let rows = if streamed {
            self.flush(true)?;
            if let Some(tail) = self.tail {
                cut_to_tail(&mut self.done, &mut self.life_head, tail);
            }
            std::mem::take(&mut self.done)
        } else {
            let categorical = self.categorical();
            std::mem::take(&mut self.pending).collapse_repeats(self.roles.duplicates, &categorical)
        };
        let mut rows = match self.life_head.take() {
            Some(mut head) => {
                head.append(rows);
                head
            }
            None => rows,
        };
        if let Some(rul) = rows.rul.as_mut()
            && !self.rul_from_end.is_empty()
        {
            for (v, l) in rul.iter_mut().zip(&rows.life) {
                if let Some(offset) = self.rul_from_end.get(l) {
                    *v += offset;
                }
            }
        }
        let n = rows.len();
        if n < 2 {
            return Err(DataError::TooFewRows { file, rows: n });
        }
        let raw_names = self.sensor_names.clone().unwrap_or_default();
        let names = match &self.stream {
            Stream::Gridded { grid, .. } => grid.column_names(&raw_names),
            Stream::Undecided | Stream::Kept => raw_names,
        };
        let mut table = self.table_of(rows, names);
        if let Some(s) = table.sensors.iter().find(|s| s.values.iter().all(|v| v.is_nan())) {
            return Err(DataError::AllMissing { file, column: s.name.clone() });
        }
        (table.machine_id, table.meta, table.layout, table.sources) = (machine_id, meta, layout, sources);
        match std::mem::replace(&mut self.stream, Stream::Kept) {
            Stream::Gridded { grid, why, counts } => {
                let raw_interval_s = self.raw_interval_s.unwrap_or(grid.step_s);
                table.interval_s = grid.step_s;
                let readings = counts.iter().sum();
                table.grid = Some(grid::summary(&table, &grid, why, readings, raw_interval_s, counts));
            }
            Stream::Undecided | Stream::Kept => table.interval_s = median_interval(&table),
        }
        Ok(table)
    }
}

/// Lets all but the tail of `rows` go, keeping the last life's first row in `head`.
fn cut_to_tail(rows: &mut Rows, head: &mut Option<Rows>, tail: Tail) {
    let p = &*rows;
    let Some(&life) = p.life.last() else { return };
    let mut start = p.len();
    while start > 0 && p.life[start - 1] == life {
        start -= 1;
    }
    if start > 0 || head.as_ref().is_some_and(|h| h.life.first() != Some(&life)) {
        rows.take_front(start);
        *head = None;
    }
    let p = &*rows;
    // Counted in distinct timestamps: repeats become one row later (`duplicates`) and stay together.
    let (mut cut, mut kept) = (p.len(), 0);
    while cut > 0 && kept < tail.rows {
        let t = p.timestamps[cut - 1];
        while cut > 0 && p.timestamps[cut - 1] == t {
            cut -= 1;
        }
        kept += 1;
    }
    if cut == 0 {
        return;
    }
    if head.is_none() {
        *head = Some(rows.take_front(1));
        cut -= 1;
    }
    rows.take_front(cut);
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
/// `duplicates` says, and each fault gets the advice that fixes it. `last` carries each life's latest time
/// from the file's earlier chunks.
fn check_monotonic(frame: &Frame, times: &[f64], lives: &[u32], how: Duplicates, last: &mut HashMap<u32, f64>) -> Result<(), DataError> {
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

pub(super) fn median_interval(t: &Table) -> f64 {
    let mut diffs: Vec<f64> =
        (1..t.n_rows()).filter(|&i| t.life[i] == t.life[i - 1]).map(|i| t.timestamps[i] - t.timestamps[i - 1]).collect();
    if diffs.is_empty() {
        return 1.0;
    }
    let mid = diffs.len() / 2;
    diffs.select_nth_unstable_by(mid, f64::total_cmp);
    diffs[mid]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::grid::{GridChoice, GridStat};
    use crate::data::write::{Format, OutTable, write_table};
    use crate::data::{Caps, load_machine_dir, load_machine_dir_gridded};

    /// Two runs of 1 s readings, one per file: the first long enough that the grid is chosen inside it,
    /// repeated timestamps across chunk boundaries, missing readings, a failure flag and a 10 min gap.
    fn machine(dir: &Path, format: Format) {
        let toml =
            "[[files]]\npath = \"run*.*\"\nfile_is_life = true\n[columns]\nlabel = \"fail\"\nrul_from_end = true\nduplicates = \"mean\"\n";
        std::fs::write(dir.join("machine.toml"), toml).unwrap();
        for (k, n) in [(1, 270_000usize), (2, 100_000)] {
            let start = 1_700_000_000.0 + k as f64 * 1e6;
            let mut t: Vec<f64> = (0..n).map(|i| start + i as f64).collect();
            // Repeats across chunk boundaries: where the grid is chosen (the 4th chunk's end) and mid-stream.
            let at = if k == 1 { 4 * CHUNK_ROWS } else { CHUNK_ROWS };
            t[at] = t[at - 1];
            if k == 2 {
                t.iter_mut().skip(50_000).for_each(|x| *x += 600.0);
            }
            let a: Vec<f64> = (0..n).map(|i| if i % 97 == 5 { f64::NAN } else { (i as f64 * 0.001).sin() * 3.0 + k as f64 }).collect();
            let b: Vec<f64> = (0..n).map(|i| (i % 1000) as f64 * 0.01).collect();
            let fail: Vec<f64> = (0..n).map(|i| if i + 500 >= n { 1.0 } else { 0.0 }).collect();
            let out = OutTable { timestamps: &t, columns: vec![("a", &a), ("b", &b), ("fail", &fail)] };
            write_table(&dir.join(format!("run{k}.{}", format.extension())), &out, format).unwrap();
        }
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x - y).abs() < 1e-9)
    }

    fn assert_same(streamed: &Table, whole: &Table) {
        assert_eq!(streamed.n_rows(), whole.n_rows());
        assert!(same(&streamed.timestamps, &whole.timestamps));
        assert_eq!(streamed.life, whole.life);
        assert_eq!(streamed.sensor_names(), whole.sensor_names());
        for (s, w) in streamed.sensors.iter().zip(&whole.sensors) {
            assert!(same(&s.values, &w.values), "{}", s.name);
        }
        for (s, w) in [(&streamed.label, &whole.label), (&streamed.rul, &whole.rul), (&streamed.anomaly, &whole.anomaly)] {
            assert_eq!(s.is_some(), w.is_some());
            assert!(same(s.as_deref().unwrap_or_default(), w.as_deref().unwrap_or_default()));
        }
        assert_eq!(streamed.interval_s, whole.interval_s);
        let (s, w) = (streamed.grid.as_ref().unwrap(), whole.grid.as_ref().unwrap());
        assert_eq!(
            (s.raw_rows, s.rows, s.readings_per_step, s.empty_steps, &s.grid),
            (w.raw_rows, w.rows, w.readings_per_step, w.empty_steps, &w.grid)
        );
    }

    #[test]
    fn readings_put_onto_the_grid_as_they_stream_match_the_whole_table_put_onto_it() {
        for format in [Format::Csv, Format::Parquet] {
            let d = tempfile::tempdir().unwrap();
            machine(d.path(), format);
            let whole = load_machine_dir(d.path()).unwrap();
            assert_eq!(whole.n_rows(), 369_998, "each repeat is averaged into one row");
            let minute = GridSetting {
                choice: GridChoice::Every(60.0),
                stats: vec![GridStat::Mean, GridStat::Std, GridStat::Max],
                ..GridSetting::default()
            };
            for setting in [minute, GridSetting::default()] {
                let streamed = load_machine_dir_gridded(d.path(), &Caps::default(), &setting).unwrap();
                let (grid, _) = setting.grid_for(&whole).unwrap();
                let expected = grid::onto_grid(&whole, &grid, String::new()).unwrap();
                assert_same(&streamed, &expected);
                let why = &streamed.grid.as_ref().unwrap().why;
                assert!(why.starts_with("about "), "the choice was made from the first rows: {why}");
            }
        }
    }

    #[test]
    fn a_tail_keeps_the_last_lifes_latest_rows_and_its_first_as_read_or_on_a_grid() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("machines/m1");
        std::fs::create_dir_all(&dir).unwrap();
        machine(&dir, Format::Csv);
        let whole = load_machine_dir(&dir).unwrap();
        let g = Grid { step_s: 60.0, stats: vec![GridStat::Mean, GridStat::Std] };
        let on_grid = grid::onto_grid(&whole, &g, String::new()).unwrap();
        for (full, grid, kept) in [(&whole, None, 5000), (&whole, None, 70_000), (&on_grid, Some(&g), 300)] {
            let t = crate::data::load_machine_tail(d.path(), "m1", &Caps::default(), Tail { rows: kept }, grid).unwrap();
            let (_, last) = full.life_ranges().pop().unwrap();
            assert_eq!(t.n_rows(), kept + 1, "{kept}");
            assert!(t.life.iter().all(|l| *l == full.life[last.start]));
            assert_eq!(t.sensor_names(), full.sensor_names());
            // The life's first row, then the latest ones exactly as the whole table has them.
            let rows = std::iter::once(last.start).chain(last.end - kept..last.end);
            for (i, w) in rows.enumerate() {
                assert_eq!(t.timestamps[i], full.timestamps[w]);
                for (a, b) in t.sensors.iter().zip(&full.sensors) {
                    assert!(same(&a.values[i..=i], &b.values[w..=w]), "{} row {w}", a.name);
                }
            }
        }
    }

    #[test]
    fn a_machine_under_the_streaming_threshold_is_gridded_exactly_as_before() {
        let d = tempfile::tempdir().unwrap();
        let toml = "[[files]]\npath = \"a.csv\"\n";
        std::fs::write(d.path().join("machine.toml"), toml).unwrap();
        let body: String = (0..5000).map(|i| format!("{},{}\n", 1_700_000_000 + i, i % 7)).collect();
        std::fs::write(d.path().join("a.csv"), format!("timestamp,v\n{body}")).unwrap();
        let setting = GridSetting { choice: GridChoice::Every(60.0), ..GridSetting::default() };
        let streamed = load_machine_dir_gridded(d.path(), &Caps::default(), &setting).unwrap();
        let expected = grid::apply(load_machine_dir(d.path()).unwrap(), &setting).unwrap();
        assert_eq!(streamed, expected);
        assert!(!streamed.grid.unwrap().why.starts_with("about"));
    }
}
