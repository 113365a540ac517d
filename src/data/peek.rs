//! A machine's summary from metadata alone, for listing and for checking a submission: the description,
//! file sizes, Parquet footers and one streamed pass over each file that keeps only counters and a bounded
//! sample, never a table. Memory is one line (at most `max_line_bytes`) plus the sample, whatever the file.
//! The [`Caps`] refuse what no Pi should be asked to train on before the file is read.
use super::caps::{Caps, over};
use super::confine::Confine;
use super::describe::{ColumnRoles, Duplicates, TIME_NAMES};
use super::error::DataError;
use super::frame::{Frame, RawColumn};
use super::load::{Described, MachineSummary, describe_folder, open_machine, text_options};
use super::read_text::{Delimiter, check_text};
use super::sources::{FileKind, LIVE_TIME, Origin, SourceFile};
use super::table::Layout;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Rows whose cells decide which columns are numeric and what the sampling interval is.
const SAMPLE_ROWS: usize = 2000;
/// Rows of a Parquet file decoded at a time while it is checked: memory stays a chunk, not the file.
const PEEK_CHUNK_ROWS: usize = 8_192;
/// Cells the sample may hold: a file of 10,000 columns samples 10 rows, not 20 million cells.
const SAMPLE_CELLS: usize = 100_000;

/// Summarises `<data_dir>/machines/<id>/` without loading it (see the module doc).
pub fn peek_machine(data_dir: &Path, id: &str, caps: &Caps) -> Result<MachineSummary, DataError> {
    let (id, dir, confine) = open_machine(data_dir, id)?;
    let id = id.to_string();
    super::live::again_if_vanished(|| peek_folder(&id, &dir, &confine, caps))
}

fn peek_folder(id: &str, dir: &Path, confine: &Confine, caps: &Caps) -> Result<MachineSummary, DataError> {
    let described = describe_folder(dir, confine)?;
    check_side_files(dir, &described, confine)?;
    for source in &described.sources {
        let size = std::fs::metadata(&source.path).map_err(|e| DataError::io(&source.path, e))?.len();
        if size > caps.max_file_bytes {
            return Err(over(&source.path, format!("is {:.1} MB", size as f64 / 1048576.0), "data.max_file_mb", caps.max_file_bytes >> 20));
        }
    }
    let mut tally = Tally::new(&described.desc.columns, caps);
    for source in &described.sources {
        tally.file(source, &described)?;
    }
    tally.finish(id.to_string(), &described)
}

/// Files the description names beside the data (RUL at each unit's end, labelled windows) are read by the
/// full load only, but must be inside the data folder and present already.
fn check_side_files(dir: &Path, described: &Described, confine: &Confine) -> Result<(), DataError> {
    let toml_path = &described.toml_path;
    let mut side = Vec::new();
    for s in &described.sources {
        if let Some(rel) = &s.spec.rul_at_end {
            side.push((dir.join(rel), format!("rul_at_end = {rel:?}")));
        }
    }
    if let Some(w) = &described.desc.anomaly_windows {
        side.push((dir.join(&w.path), format!("[anomaly_windows] path = {:?}", w.path)));
    }
    for (path, setting) in side {
        confine.check(&path, &setting, toml_path)?;
        if !path.is_file() {
            return Err(DataError::io(&path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
    }
    Ok(())
}

/// Which column of the file at hand plays which role (by index), as the loader resolves them.
struct Roles {
    time: Option<usize>,
    unit: Option<usize>,
    rul: Option<usize>,
    /// Index, name and, for a categorical column, its levels: every cell is checked as the loader would.
    sensors: Vec<(usize, String, Option<Vec<String>>)>,
}

/// What the pass keeps: counts, the first file's sensor names, a sample of times per file.
struct Tally<'a> {
    roles: &'a ColumnRoles,
    caps: &'a Caps,
    rows: usize,
    lives: usize,
    sensor_names: Option<Vec<String>>,
    has_label: bool,
    has_rul: bool,
    has_anomaly: bool,
    diffs: Vec<f64>,
    /// Sensors with at least one value in any file: a column that is empty everywhere is refused, as the load does.
    seen: HashSet<String>,
    last_time: Option<f64>,
}

impl<'a> Tally<'a> {
    fn new(roles: &'a ColumnRoles, caps: &'a Caps) -> Self {
        Tally {
            roles,
            caps,
            rows: 0,
            lives: 0,
            sensor_names: None,
            has_label: false,
            has_rul: roles.rul_from_end,
            has_anomaly: false,
            diffs: Vec::new(),
            seen: HashSet::new(),
            last_time: None,
        }
    }

    fn file(&mut self, source: &SourceFile, described: &Described) -> Result<(), DataError> {
        let path = &source.path;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let mut pass = if ext == "parquet" || ext == "pq" {
            self.parquet(source)?
        } else {
            let opts = text_options(source, &described.toml_path)?;
            self.text(source, opts.delimiter, opts.header, opts.names)?
        };
        if pass.rows < 1 && self.rows == 0 {
            return Err(DataError::TooFewRows { file: path.clone(), rows: 0 });
        }
        self.rows += pass.rows;
        // Compacted readings continue the last life; alone, they are one.
        self.lives += if source.origin == Origin::Live { usize::from(self.lives == 0) } else { pass.lives() };
        self.last_time = pass.max_time.into_iter().chain(self.last_time).reduce(f64::max);
        self.has_rul |= source.spec.rul_at_end.is_some();
        pass.times_sorted_check(path)?;
        self.diffs.append(&mut pass.diffs);
        self.seen.extend(pass.seen_sensors.drain());
        Ok(())
    }

    /// Roles from the header, and from the sample which columns are numeric.
    fn resolve(&mut self, file: &Path, names: &[String], numeric: &dyn Fn(usize) -> bool, kind: FileKind) -> Result<Roles, DataError> {
        let r = self.roles;
        let healthy = kind == FileKind::Healthy;
        let missing =
            |column: &str| DataError::MissingColumn { file: file.to_path_buf(), column: column.into(), available: names.join(", ") };
        let index = |n: &str| names.iter().position(|c| c == n).ok_or_else(|| missing(n));
        let categorical = |i: usize| (i, names[i].clone(), r.categorical.get(&names[i]).cloned());
        if kind == FileKind::Live {
            // As the load reads them: the time column and the machine's sensors, nothing else.
            let Some(list) = self.sensor_names.clone().or_else(|| r.sensors.clone()) else {
                return Err(DataError::NoSensors { file: file.to_path_buf() });
            };
            let sensors = list.iter().map(|n| index(n).map(categorical)).collect::<Result<Vec<_>, _>>()?;
            self.sensor_names.get_or_insert(list);
            return Ok(Roles { time: Some(index(LIVE_TIME)?), unit: None, rul: None, sensors });
        }
        let find = |name: &Option<String>| match name.as_deref() {
            Some(n) if healthy && !names.iter().any(|c| c == n) => Ok(None),
            Some(n) => index(n).map(Some),
            None => Ok(None),
        };
        let time = match &r.timestamp {
            Some(n) => Some(index(n)?),
            None => TIME_NAMES.iter().find_map(|n| names.iter().position(|c| c.eq_ignore_ascii_case(n))),
        };
        let rul = match &r.rul {
            Some(n) => Some(index(n)?),
            None => names.iter().position(|c| c == "rul"),
        };
        let (unit, label, anomaly) = (find(&r.unit)?, find(&r.label)?, find(&r.anomaly)?);
        for ignored in r.ignore.iter().filter(|_| !healthy) {
            index(ignored)?;
        }
        self.has_label |= label.is_some() || (healthy && r.label.is_some());
        self.has_anomaly |= anomaly.is_some() || (healthy && r.anomaly.is_some());
        self.has_rul |= rul.is_some();
        let taken = [time, unit, label, rul, anomaly];
        let sensors = match (&self.sensor_names, &r.sensors) {
            (Some(list), _) | (None, Some(list)) => list.iter().map(|n| index(n)).collect::<Result<Vec<_>, _>>()?,
            (None, None) => (0..names.len())
                .filter(|i| !taken.contains(&Some(*i)))
                .filter(|i| !r.ignore.contains(&names[*i]))
                .filter(|i| r.categorical.contains_key(&names[*i]) || numeric(*i))
                .collect(),
        };
        if sensors.is_empty() {
            return Err(DataError::NoSensors { file: file.to_path_buf() });
        }
        if self.sensor_names.is_none() {
            self.sensor_names = Some(sensors.iter().map(|i| names[*i].clone()).collect());
        }
        let sensors = sensors.into_iter().map(categorical).collect();
        Ok(Roles { time, unit, rul, sensors })
    }

    fn check_columns(&self, file: &Path, n: usize) -> Result<(), DataError> {
        if n > self.caps.max_columns {
            return Err(over(file, format!("has {n} columns"), "data.max_columns", self.caps.max_columns));
        }
        Ok(())
    }

    fn check_rows(&self, file: &Path, rows_in_file: usize) -> Result<(), DataError> {
        if self.rows + rows_in_file > self.caps.max_rows {
            return Err(over(file, format!("brings the machine past {} rows", self.caps.max_rows), "data.max_rows", self.caps.max_rows));
        }
        Ok(())
    }

    fn text(&mut self, source: &SourceFile, delimiter: Delimiter, header: bool, given: Option<Vec<String>>) -> Result<Pass, DataError> {
        let path = &source.path;
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut head = Vec::with_capacity(64 * 1024);
        file.take(64 * 1024).read_to_end(&mut head).map_err(|e| DataError::io(path, e))?;
        check_text(path, &head)?;
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut lines = CappedLines::new(BufReader::new(file), self.caps.max_line_bytes);
        let mut cells: Vec<String> = Vec::new();
        let mut line_no = 0usize;
        let mut next = |cells: &mut Vec<String>, line_no: &mut usize| -> Result<bool, DataError> {
            loop {
                let line = match lines.next_line() {
                    Ok(Some(l)) => l,
                    Ok(None) => return Ok(false),
                    Err(LineError::TooLong) => {
                        return Err(over(
                            path,
                            format!("has a line longer than {} bytes (line {})", self.caps.max_line_bytes, *line_no + 1),
                            "data.max_line_kb",
                            self.caps.max_line_bytes >> 10,
                        ));
                    }
                    Err(LineError::Io(e)) => return Err(DataError::io(path, e)),
                };
                *line_no += 1;
                let text = String::from_utf8_lossy(line);
                let text = if *line_no == 1 { text.trim_start_matches('\u{feff}') } else { &text };
                cells.clear();
                split_cells(text.trim_end_matches(['\r', '\n']), delimiter, cells);
                if !cells.iter().all(|c| c.trim().is_empty()) {
                    return Ok(true);
                }
            }
        };
        let names: Vec<String> = match (given, header) {
            (Some(names), header) => {
                if header {
                    next(&mut cells, &mut line_no)?;
                }
                names
            }
            (None, true) => {
                if !next(&mut cells, &mut line_no)? {
                    return Err(DataError::Format { file: path.clone(), message: "empty file".into() });
                }
                cells.iter().map(|h| h.trim().to_string()).collect()
            }
            (None, false) => {
                return Err(DataError::Format {
                    file: path.clone(),
                    message: "header = false needs `names = [...]` for the columns".into(),
                });
            }
        };
        self.check_columns(path, names.len())?;
        let mut sample: Vec<Vec<String>> = Vec::new();
        let mut pass = Pass { check_cells: true, ..Pass::default() };
        let mut roles: Option<Roles> = None;
        while next(&mut cells, &mut line_no)? {
            if cells.len() != names.len() {
                return Err(DataError::Format {
                    file: path.clone(),
                    message: format!("row {line_no}: {} cells, expected {} ({})", cells.len(), names.len(), names.join(", ")),
                });
            }
            pass.rows += 1;
            if pass.rows.is_multiple_of(65_536) {
                self.check_rows(path, pass.rows)?;
            }
            match &roles {
                Some(r) => pass.row(self.roles, source, r, path, line_no, &|i| Cell::Text(cells[i].as_str()))?,
                None => {
                    sample.push(cells.clone());
                    if sample.len() >= (SAMPLE_CELLS / names.len().max(1)).clamp(2, SAMPLE_ROWS) {
                        let r = self.resolve_from_sample(source, path, &names, &sample)?;
                        replay(&mut pass, self.roles, source, &r, path, &sample, line_no)?;
                        roles = Some(r);
                        sample = Vec::new();
                    }
                }
            }
        }
        self.check_rows(path, pass.rows)?;
        let roles = match roles {
            Some(r) => r,
            None => {
                let r = self.resolve_from_sample(source, path, &names, &sample)?;
                replay(&mut pass, self.roles, source, &r, path, &sample, line_no)?;
                r
            }
        };
        pass.name_seen(&roles);
        Ok(pass)
    }

    fn resolve_from_sample(
        &mut self,
        source: &SourceFile,
        path: &Path,
        names: &[String],
        sample: &[Vec<String>],
    ) -> Result<Roles, DataError> {
        let numeric = |i: usize| sample.iter().map(|row| row[i].trim()).find(|c| !is_missing(c)).is_none_or(|c| c.parse::<f64>().is_ok());
        self.resolve(path, names, &numeric, source.kind())
    }

    fn parquet(&mut self, source: &SourceFile) -> Result<Pass, DataError> {
        let path = source.path.clone();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.parquet_rows(source))).unwrap_or_else(|panic| {
            let why = crate::util::panic_message(panic.as_ref());
            Err(DataError::Format { file: path, message: format!("not a readable Parquet file (damaged metadata: {why})") })
        })
    }

    fn parquet_rows(&mut self, source: &SourceFile) -> Result<Pass, DataError> {
        use parquet::basic::Type as Physical;
        use parquet::file::reader::FileReader;
        let path = &source.path;
        let reader = super::read_parquet::StrictFile::open(path)?;
        let rows = super::read_parquet::check_pages(&reader, path)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let names: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
        self.check_columns(path, names.len())?;
        self.check_rows(path, rows)?;
        drop(reader);
        let numeric = |i: usize| schema.column(i).physical_type() != Physical::BYTE_ARRAY;
        let roles = self.resolve(path, &names, &numeric, source.kind())?;
        let wanted: Vec<usize> = [roles.time, roles.unit, roles.rul].into_iter().flatten().collect();
        let mut pass = Pass { seen: vec![false; names.len()], ..Pass::default() };
        if !self.parquet_by_column(source, &roles, &wanted, rows, &mut pass)? {
            self.parquet_frames(source, &roles, &wanted, &mut pass)?;
        }
        pass.name_seen(&roles);
        Ok(pass)
    }

    /// A flat numeric file a column at a time, so that a wide file never has every column's pages in
    /// memory: each column once for whether it holds a value and for its first infinity (refused as the
    /// load refuses it, naming the first in row order), then the time, unit and RUL columns together for
    /// the row checks, as numbers. `Ok(false)` when the file is not flat and numeric.
    fn parquet_by_column(
        &mut self,
        source: &SourceFile,
        roles: &Roles,
        wanted: &[usize],
        rows: usize,
        pass: &mut Pass,
    ) -> Result<bool, DataError> {
        let path = &source.path;
        let mut first_infinite: Option<(usize, DataError)> = None;
        for c in 0..pass.seen.len() {
            let mut seen = false;
            let read = super::read_parquet::read_parquet_columns(path, &[c], PEEK_CHUNK_ROWS, &mut |frame| {
                if let Some(RawColumn::Num(v) | RawColumn::Time(v)) = frame.columns.first() {
                    seen = seen || v.iter().any(|x| !x.is_nan());
                }
                Ok(())
            });
            match read {
                Ok(false) => return Ok(false),
                Ok(true) => pass.seen[c] = seen,
                Err(e @ DataError::Cell { row, .. }) => {
                    if first_infinite.as_ref().is_none_or(|(first, _)| row < *first) {
                        first_infinite = Some((row, e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if let Some((_, e)) = first_infinite {
            return Err(e);
        }
        if wanted.is_empty() {
            for line in 1..=rows {
                pass.rows += 1;
                pass.row(self.roles, source, roles, path, line, &|_| Cell::Num(f64::NAN))?;
            }
            return Ok(true);
        }
        let mut slot = vec![None; pass.seen.len()];
        for (k, &c) in wanted.iter().enumerate() {
            slot[c] = Some(k);
        }
        let checks = RowChecks { roles: self.roles, source, r: roles };
        super::read_parquet::read_parquet_columns(path, wanted, PEEK_CHUNK_ROWS, &mut |frame| {
            checks.frame(pass, &frame, &|c| slot.get(c).copied().flatten())
        })
    }

    /// Any other Parquet file: the same frames the load reads (an infinity is refused there), a chunk at a time.
    fn parquet_frames(&mut self, source: &SourceFile, roles: &Roles, wanted: &[usize], pass: &mut Pass) -> Result<(), DataError> {
        let path = &source.path;
        let checks = RowChecks { roles: self.roles, source, r: roles };
        super::read_parquet::read_parquet_chunks(path, super::caps::Budget::UNLIMITED, PEEK_CHUNK_ROWS, &mut |frame| {
            for (c, column) in frame.columns.iter().enumerate().take(pass.seen.len()) {
                pass.seen[c] |= match column {
                    RawColumn::Num(v) | RawColumn::Time(v) => v.iter().any(|x| !x.is_nan()),
                    RawColumn::Text(v) => v.iter().any(|t| !t.trim().is_empty()),
                };
            }
            checks.frame(pass, &frame, &|c| wanted.contains(&c).then_some(c))
        })
    }

    fn finish(self, id: String, described: &Described) -> Result<MachineSummary, DataError> {
        let file = described.sources.first().map(|s| s.path.clone()).unwrap_or_default();
        if self.rows < 2 {
            return Err(DataError::TooFewRows { file, rows: self.rows });
        }
        let sensor_names = self.sensor_names.unwrap_or_default();
        if let Some(column) = sensor_names.iter().find(|n| !self.seen.contains(*n)) {
            return Err(DataError::AllMissing { file, column: column.clone() });
        }
        let mut diffs = self.diffs;
        let interval_s = if diffs.is_empty() {
            1.0
        } else {
            let mid = diffs.len() / 2;
            diffs.select_nth_unstable_by(mid, f64::total_cmp);
            diffs[mid]
        };
        let meta = &described.desc.machine;
        Ok(MachineSummary {
            name: meta.name.clone().unwrap_or_else(|| id.clone()),
            id,
            family: meta.family.clone().unwrap_or_default(),
            layout: match &described.layout {
                Layout::Legacy { format } => format!("seed ({format})"),
                Layout::Described => "machine.toml".into(),
            },
            rows: self.rows,
            sensors: sensor_names.len(),
            sensor_names,
            lives: self.lives,
            has_label: self.has_label,
            has_rul: self.has_rul,
            has_anomaly: self.has_anomaly || described.desc.anomaly_windows.is_some(),
            interval_s,
            last_time: self.last_time,
        })
    }
}

/// The row checks of one file, run over a frame's rows.
struct RowChecks<'a> {
    roles: &'a ColumnRoles,
    source: &'a SourceFile,
    r: &'a Roles,
}

impl RowChecks<'_> {
    /// `column_of` says where a file's column is in the frame (None: not read, never asked for).
    fn frame(&self, pass: &mut Pass, frame: &Frame, column_of: &dyn Fn(usize) -> Option<usize>) -> Result<(), DataError> {
        for r in 0..frame.n_rows {
            let cell = |c: usize| match column_of(c).and_then(|k| frame.columns.get(k)) {
                Some(RawColumn::Num(v) | RawColumn::Time(v)) => Cell::Num(v[r]),
                Some(RawColumn::Text(v)) => Cell::Text(v[r].as_str()),
                None => Cell::Num(f64::NAN),
            };
            pass.rows += 1;
            pass.row(self.roles, self.source, self.r, &self.source.path, frame.first_row + r, &cell)?;
        }
        Ok(())
    }
}

fn replay(
    pass: &mut Pass,
    roles: &ColumnRoles,
    source: &SourceFile,
    r: &Roles,
    path: &Path,
    sample: &[Vec<String>],
    last_line: usize,
) -> Result<(), DataError> {
    let first_line = last_line + 1 - sample.len();
    for (k, row) in sample.iter().enumerate() {
        pass.row(roles, source, r, path, first_line + k, &|i| Cell::Text(row[i].as_str()))?;
    }
    Ok(())
}

/// One file's counters: lives by unit key or RUL resets, and time steps within a life from its first rows.
#[derive(Default)]
struct Pass {
    rows: usize,
    units: HashSet<LifeKey>,
    rul_resets: usize,
    last_rul: Option<f64>,
    last_time: Option<(LifeKey, f64)>,
    /// The newest time in the file (any life).
    max_time: Option<f64>,
    diffs: Vec<f64>,
    backwards: Option<(usize, f64, f64)>,
    /// The first timestamp that repeats the previous one within a life (refused unless `duplicates` says).
    duplicate: Option<(usize, f64, LifeKey)>,
    /// By column index: whether a sensor cell held a value.
    seen: Vec<bool>,
    seen_sensors: HashSet<String>,
    has_unit: bool,
    file_is_life: bool,
    rul_lives: bool,
    index: usize,
    /// Text cells are checked as the loader would parse them; Parquet's are typed already.
    check_cells: bool,
}

impl Pass {
    fn name_seen(&mut self, r: &Roles) {
        let seen = std::mem::take(&mut self.seen);
        self.seen_sensors.extend(r.sensors.iter().filter(|(c, _, _)| seen.get(*c).copied().unwrap_or(false)).map(|(_, n, _)| n.clone()));
    }

    fn lives(&self) -> usize {
        if self.has_unit {
            self.units.len().max(1)
        } else if self.rul_lives {
            self.rul_resets + 1
        } else {
            1
        }
    }

    fn row<'c>(
        &mut self,
        roles: &ColumnRoles,
        source: &SourceFile,
        r: &Roles,
        path: &Path,
        line: usize,
        cell: &dyn Fn(usize) -> Cell<'c>,
    ) -> Result<(), DataError> {
        let i = self.index;
        self.index += 1;
        if self.check_cells {
            for (c, name, levels) in &r.sensors {
                let v = cell(*c);
                let ok = match (levels, v) {
                    (Some(levels), _) => {
                        let v = v.text();
                        levels.iter().any(|l| *l == v)
                    }
                    (None, Cell::Text(t)) => is_missing(t.trim()) || t.trim().parse::<f64>().is_ok_and(f64::is_finite),
                    (None, Cell::Num(x)) => !x.is_infinite(),
                };
                if self.seen.len() <= *c {
                    self.seen.resize(*c + 1, false);
                }
                self.seen[*c] |= !v.is_missing();
                if !ok {
                    return Err(DataError::Cell {
                        file: path.to_path_buf(),
                        row: line,
                        column: name.clone(),
                        value: v.text().chars().take(60).collect(),
                        expected: if levels.is_some() { "one of the listed categories" } else { "a number" },
                    });
                }
            }
        }
        let mut life = LifeKey::Whole;
        if let Some(u) = r.unit {
            self.has_unit = true;
            life = cell(u).life_key();
            if !self.units.contains(&life) {
                self.units.insert(life.clone());
            }
        } else if let (Some(c), false) = (r.rul, source.spec.file_is_life) {
            self.rul_lives = true;
            if let Some(v) = cell(c).number() {
                if self.last_rul.is_some_and(|prev| v > prev) {
                    self.rul_resets += 1;
                }
                self.last_rul = Some(v);
            }
            life = LifeKey::Reset(self.rul_resets);
        }
        self.file_is_life = source.spec.file_is_life;
        let step = roles.step_seconds.unwrap_or(1.0);
        let t = match r.time {
            Some(c) if roles.step_seconds.is_some() && source.origin == Origin::History => cell(c).number().map(|v| v * step),
            Some(c) => cell(c).timestamp(),
            None => Some(i as f64 * step),
        };
        let Some(t) = t else {
            let c = r.time.unwrap_or(0);
            return Err(DataError::Cell {
                file: path.to_path_buf(),
                row: line,
                column: format!("#{}", c + 1),
                value: cell(c).text().chars().take(60).collect(),
                expected: "a timestamp",
            });
        };
        self.max_time = Some(self.max_time.map_or(t, |m| m.max(t)));
        match &mut self.last_time {
            Some((prev_life, prev)) if *prev_life == life => {
                if t < *prev && self.backwards.is_none() {
                    self.backwards = Some((line, *prev, t));
                }
                if t == *prev && roles.duplicates == Duplicates::Error && self.duplicate.is_none() {
                    self.duplicate = Some((line, t, life));
                }
                if self.diffs.len() < SAMPLE_ROWS {
                    self.diffs.push(t - *prev);
                }
                *prev = t;
            }
            _ => self.last_time = Some((life, t)),
        }
        Ok(())
    }

    fn times_sorted_check(&self, path: &Path) -> Result<(), DataError> {
        // The load reports the first fault in row order.
        if let Some((row, time, life)) = &self.duplicate
            && self.backwards.is_none_or(|(b, _, _)| *row < b)
        {
            return Err(DataError::DuplicateTime {
                file: path.to_path_buf(),
                row: *row,
                life: life.describe(),
                time: crate::util::time::format_timestamp(*time),
            });
        }
        if let Some((row, previous, current)) = self.backwards {
            return Err(DataError::NonMonotonic {
                file: path.to_path_buf(),
                row,
                life: "of this row".into(),
                previous: crate::util::time::format_timestamp(previous),
                current: crate::util::time::format_timestamp(current),
            });
        }
        Ok(())
    }
}

/// A cell as the row checks see it: text from a text file, a number from a typed (Parquet) one, which
/// is checked as its text would be without printing and parsing it again.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Text(&'a str),
    Num(f64),
}

impl<'a> Cell<'a> {
    fn text(self) -> std::borrow::Cow<'a, str> {
        match self {
            Cell::Text(t) => std::borrow::Cow::Borrowed(t.trim()),
            Cell::Num(v) => std::borrow::Cow::Owned(v.to_string()),
        }
    }

    fn is_missing(self) -> bool {
        match self {
            Cell::Text(t) => is_missing(t.trim()),
            Cell::Num(v) => v.is_nan(),
        }
    }

    /// As `str::parse::<f64>` reads the text.
    fn number(self) -> Option<f64> {
        match self {
            Cell::Text(t) => t.trim().parse().ok(),
            Cell::Num(v) => Some(v),
        }
    }

    fn timestamp(self) -> Option<f64> {
        match self {
            Cell::Text(t) => crate::util::time::parse_timestamp(t),
            Cell::Num(v) => v.is_finite().then_some(v),
        }
    }

    /// Equal for the same text, or the same number (every NaN alike, as their text is).
    fn life_key(self) -> LifeKey {
        match self {
            Cell::Text(t) => LifeKey::Text(t.trim().to_string()),
            Cell::Num(v) if v.is_nan() => LifeKey::Number(f64::NAN.to_bits()),
            Cell::Num(v) => LifeKey::Number(v.to_bits()),
        }
    }
}

/// Which life a row belongs to: a unit cell's value, the count of RUL resets before it, or the whole file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum LifeKey {
    Whole,
    Text(String),
    Number(u64),
    Reset(usize),
}

impl LifeKey {
    /// As errors name the life.
    fn describe(&self) -> String {
        match self {
            LifeKey::Text(t) if !t.is_empty() => t.clone(),
            LifeKey::Number(bits) => f64::from_bits(*bits).to_string(),
            LifeKey::Reset(n) => n.to_string(),
            LifeKey::Whole | LifeKey::Text(_) => "of this row".into(),
        }
    }
}

fn is_missing(cell: &str) -> bool {
    matches!(cell, "" | "NaN" | "nan" | "NA" | "N/A" | "null" | "NULL" | "None")
}

/// Cells of one line; quoted cells (with the delimiter or doubled quotes inside) are unquoted.
fn split_cells(line: &str, delimiter: Delimiter, out: &mut Vec<String>) {
    match delimiter {
        Delimiter::Whitespace => out.extend(line.split_whitespace().map(str::to_string)),
        Delimiter::Byte(b) => {
            let sep = char::from(b);
            let mut cell = String::new();
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' if quoted && chars.peek() == Some(&'"') => {
                        cell.push('"');
                        chars.next();
                    }
                    '"' => quoted = !quoted,
                    c if c == sep && !quoted => out.push(std::mem::take(&mut cell)),
                    c => cell.push(c),
                }
            }
            out.push(cell);
        }
    }
}

enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// Lines of at most `max` bytes, read into one reused buffer: a file without line breaks costs `max`
/// bytes, not its size.
struct CappedLines<R> {
    reader: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> CappedLines<R> {
    fn new(reader: R, max: usize) -> Self {
        CappedLines { reader, max, buf: Vec::new() }
    }

    fn next_line(&mut self) -> Result<Option<&[u8]>, LineError> {
        self.buf.clear();
        loop {
            let available = self.reader.fill_buf().map_err(LineError::Io)?;
            if available.is_empty() {
                return Ok((!self.buf.is_empty()).then_some(&self.buf[..]));
            }
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (&available[..=at], true),
                None => (available, false),
            };
            if self.buf.len() + chunk.len() > self.max + 2 {
                return Err(LineError::TooLong);
            }
            self.buf.extend_from_slice(chunk);
            let used = chunk.len();
            self.reader.consume(used);
            if done {
                return Ok(Some(&self.buf[..]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("machines/m1");
        std::fs::create_dir_all(&m).unwrap();
        for (name, body) in files {
            std::fs::write(m.join(name), body).unwrap();
        }
        d
    }

    /// The summary from metadata is the one a full load gives, on every shape the examples use.
    #[test]
    fn peek_agrees_with_the_full_load() {
        let legacy = b"timestamp,temp_C,vib,rul\n2024-01-01T00:00:00Z,20,1,3\n2024-01-01T01:00:00Z,21,,2\n2024-01-01T02:00:00Z,22,2,1\n2024-01-02T00:00:00Z,20,1,9\n2024-01-02T01:00:00Z,20,1,8\n";
        let units = b"id;cycle;s1;s2\n1;1;0.5;\"7\"\n1;2;0.6;7\n2;1;0.4;6\n2;2;0.4;6\n2;3;0.3;6\n";
        let units_toml = b"[[files]]\npath = \"u.csv\"\ndelimiter = \";\"\n[columns]\nunit = \"id\"\ntimestamp = \"cycle\"\nstep_seconds = 3600\nrul_from_end = true\n";
        for files in [vec![("train.csv", &legacy[..])], vec![("machine.toml", &units_toml[..]), ("u.csv", &units[..])]] {
            let d = folder(&files);
            let full = crate::data::summarize(&crate::data::load_machine(d.path(), "m1").unwrap());
            let peek = peek_machine(d.path(), "m1", &Caps::default()).unwrap();
            assert_eq!(serde_json::to_value(&peek).unwrap(), serde_json::to_value(&full).unwrap(), "{files:?}");
        }
    }

    /// A Parquet file of optional doubles, one row group per `groups` rows (None is a null).
    fn parquet(path: &Path, names: &[&str], rows: &[Vec<Option<f64>>], groups: usize) {
        use parquet::data_type::DoubleType;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        let fields: String = names.iter().map(|n| format!("optional double {n}; ")).collect();
        let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(&format!("message m {{ {fields}}}")).unwrap());
        let file = std::fs::File::create(path).unwrap();
        let mut w = SerializedFileWriter::new(file, schema, std::sync::Arc::new(WriterProperties::builder().build())).unwrap();
        for block in rows.chunks(groups) {
            let mut rg = w.next_row_group().unwrap();
            let mut c = 0;
            while let Some(mut col) = rg.next_column().unwrap() {
                let defs: Vec<i16> = block.iter().map(|r| i16::from(r[c].is_some())).collect();
                let values: Vec<f64> = block.iter().filter_map(|r| r[c]).collect();
                col.typed::<DoubleType>().write_batch(&values, Some(&defs), None).unwrap();
                col.close().unwrap();
                c += 1;
            }
            rg.close().unwrap();
        }
        w.close().unwrap();
    }

    /// A Parquet machine is listed a column at a time: the same summary as the full load (units, an empty
    /// sensor, nulls, row groups), and an infinity is refused naming the cell the load names, the first in
    /// row order whichever column holds it.
    #[test]
    fn parquet_listed_by_column_agrees_with_the_full_load() {
        let toml =
            b"[[files]]\npath = \"u.parquet\"\n[columns]\nunit = \"id\"\ntimestamp = \"cycle\"\nstep_seconds = 3600\nrul_from_end = true\n";
        let rows = |inf: &[(usize, usize, f64)]| -> Vec<Vec<Option<f64>>> {
            let mut rows: Vec<Vec<Option<f64>>> = (0..40)
                .map(|r| {
                    let unit = (r / 15) as f64;
                    vec![
                        Some(unit),
                        Some((r % 15) as f64),
                        (r % 4 != 1).then_some(r as f64 * 0.5),
                        (r == 39).then_some(2.0),
                        Some(1.0 + r as f64),
                    ]
                })
                .collect();
            for &(r, c, v) in inf {
                rows[r][c] = Some(v);
            }
            rows
        };
        let names = ["id", "cycle", "s1", "s2", "s3"];
        let d = folder(&[("machine.toml", &toml[..])]);
        let file = d.path().join("machines/m1/u.parquet");
        parquet(&file, &names, &rows(&[]), 16);
        let full = crate::data::summarize(&crate::data::load_machine(d.path(), "m1").unwrap());
        let peek = peek_machine(d.path(), "m1", &Caps::default()).unwrap();
        assert_eq!(serde_json::to_value(&peek).unwrap(), serde_json::to_value(&full).unwrap());
        assert_eq!(peek.rows, 40);
        for inf in [
            vec![(20, 4, f64::INFINITY), (30, 2, f64::NEG_INFINITY)],
            vec![(30, 4, f64::INFINITY), (20, 2, f64::NEG_INFINITY)],
            vec![(17, 4, f64::INFINITY), (17, 2, f64::INFINITY)],
        ] {
            parquet(&file, &names, &rows(&inf), 16);
            let load = crate::data::load_machine(d.path(), "m1").err().unwrap().to_string();
            let peek = peek_machine(d.path(), "m1", &Caps::default()).err().unwrap().to_string();
            assert_eq!(peek, load, "{inf:?}");
            assert!(load.contains(&format!("row {}", inf.iter().map(|i| i.0).min().unwrap() + 1)), "{load}");
        }
        let mut empty_s2 = rows(&[]);
        empty_s2[39][3] = None;
        parquet(&file, &names, &empty_s2, 16);
        let load = crate::data::load_machine(d.path(), "m1").err().unwrap().to_string();
        assert_eq!(peek_machine(d.path(), "m1", &Caps::default()).err().unwrap().to_string(), load);
    }

    #[test]
    fn each_cap_is_refused_early_naming_its_setting() {
        let wide: String = (0..50).map(|i| format!("c{i},")).collect::<String>() + "timestamp\n";
        let long = format!("timestamp,v\n1,{}\n", "9".repeat(5000));
        let many: String = std::iter::once("timestamp,v\n".to_string()).chain((0..300).map(|i| format!("{i},1\n"))).collect();
        let fat: String =
            std::iter::once("timestamp,v\n".to_string()).chain((0..50).map(|i| format!("{i},{}\n", "1".repeat(200)))).collect();
        let caps = Caps { max_file_bytes: 8192, max_columns: 20, max_line_bytes: 1024, max_rows: 100 };
        for (body, setting) in [
            (wide.into_bytes(), "data.max_columns"),
            (long.into_bytes(), "data.max_line_kb"),
            (many.clone().into_bytes(), "data.max_rows"),
            (fat.into_bytes(), "data.max_file_mb"),
        ] {
            let d = folder(&[("train.csv", &body)]);
            let e = peek_machine(d.path(), "m1", &caps).err().unwrap().to_string();
            assert!(e.contains(setting) && e.contains("train.csv"), "{setting}: {e}");
        }
    }

    #[test]
    fn a_file_without_line_breaks_is_refused_after_one_line_not_read_whole() {
        let mut lines = CappedLines::new(BufReader::new(std::io::repeat(b'x').take(1 << 30)), 4096);
        assert!(matches!(lines.next_line(), Err(LineError::TooLong)));
    }
}
