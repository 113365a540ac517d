//! A machine made from an uploaded history file: first a preview of the file (its columns, what each holds,
//! the first rows and a guessed role for each), then the machine folder written from the roles the person
//! chose — the file and a `machine.toml` naming them — after the real loader has read it in a hidden folder.
//! A file or mapping the loader refuses leaves nothing behind in the data folder.
use super::caps::{Budget, Caps};
use super::describe::{ColumnRoles, FileSpec, MachineToml, TIME_NAMES, TOML_NAME};
use super::error::DataError;
use super::frame::{Frame, RawColumn};
use super::id::MachineId;
use super::read_text::{Delimiter, TextOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The first rows shown in a preview.
const SAMPLE_ROWS: usize = 8;
/// Rows read at a time: memory is one chunk, whatever the file's size.
const CHUNK_ROWS: usize = 65_536;
/// Distinct texts listed for a text column (a categorical column's levels).
const TEXTS_SHOWN: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Number,
    Time,
    Text,
    /// Every cell missing.
    Empty,
}

#[derive(Clone, Debug, Serialize)]
pub struct ColumnPreview {
    pub name: String,
    pub kind: ColumnKind,
    pub missing: usize,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Only 0 and 1 (or missing): a label or anomaly flag.
    pub binary: bool,
    /// A text column's first distinct values.
    pub texts: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Preview {
    pub format: &'static str,
    /// `,`, `;` or `tab` for text files.
    pub delimiter: Option<&'static str>,
    pub rows: usize,
    pub columns: Vec<ColumnPreview>,
    /// The first rows as the file has them.
    pub sample: Vec<Vec<String>>,
    /// The roles millwright would pick; the person confirms or changes them.
    pub guess: Mapping,
}

/// The role of each column, as the person chose them on the page.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Display name of the machine.
    #[serde(default)]
    pub name: Option<String>,
    pub timestamp: Option<String>,
    /// Seconds per step when `timestamp` is a cycle or row number.
    #[serde(default)]
    pub step_seconds: Option<f64>,
    /// Which run-to-failure life a row belongs to.
    #[serde(default)]
    pub unit: Option<String>,
    /// A given 0/1 failure label.
    #[serde(default)]
    pub label: Option<String>,
    /// Remaining useful life in hours.
    #[serde(default)]
    pub rul: Option<String>,
    /// Every life ran to its failure: the remaining life is counted from each life's last row.
    #[serde(default)]
    pub rul_from_end: bool,
    pub sensors: Vec<String>,
    /// Unit of each sensor, for display (`"°C"`, `"bar"`).
    #[serde(default)]
    pub units: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Data(#[from] DataError),
    /// The mapping names columns the file lacks, a column twice, or no sensor.
    #[error("{0}")]
    Mapping(String),
    #[error("a machine named {0} exists already; choose another id (or remove its folder first)")]
    Exists(String),
}

pub fn is_parquet_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".parquet")
}

/// The delimiter of a text file from its first line: the one of `,` `;` tab found most often.
fn sniff_delimiter(path: &Path) -> Result<(Delimiter, &'static str), DataError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut first = Vec::new();
    std::io::BufReader::new(f).take(1 << 20).read_until(b'\n', &mut first).map_err(|e| DataError::io(path, e))?;
    super::read_text::check_text(path, &first)?;
    let count = |b: u8| first.iter().filter(|c| **c == b).count();
    let best = [(b',', ","), (b';', ";"), (b'\t', "tab")].into_iter().max_by_key(|(b, _)| count(*b)).unwrap_or((b',', ","));
    Ok((Delimiter::Byte(best.0), best.1))
}

/// Per column, what the chunks so far held.
#[derive(Default)]
struct Seen {
    numbers: usize,
    times: usize,
    texts: usize,
    missing: usize,
    min: f64,
    max: f64,
    binary: bool,
    distinct: Vec<String>,
}

impl Seen {
    fn new() -> Seen {
        Seen { min: f64::INFINITY, max: f64::NEG_INFINITY, binary: true, ..Default::default() }
    }

    fn number(&mut self, v: f64) {
        if v.is_nan() {
            self.missing += 1;
            return;
        }
        self.numbers += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.binary &= v == 0.0 || v == 1.0;
    }

    fn cell(&mut self, c: &str) {
        let c = c.trim();
        match super::frame::parse_number(c) {
            Some(v) => self.number(v),
            None if crate::util::time::parse_timestamp(c).is_some() => self.times += 1,
            None => {
                self.texts += 1;
                if self.distinct.len() < TEXTS_SHOWN && !self.distinct.iter().any(|d| d == c) {
                    self.distinct.push(c.chars().take(40).collect());
                }
            }
        }
    }

    fn kind(&self) -> ColumnKind {
        if self.texts > 0 {
            ColumnKind::Text
        } else if self.times > 0 && self.numbers == 0 {
            ColumnKind::Time
        } else if self.numbers > 0 {
            ColumnKind::Number
        } else {
            ColumnKind::Empty
        }
    }
}

/// Reads the whole file (a chunk at a time) within the caps and describes it.
pub fn preview(path: &Path, caps: &Caps) -> Result<Preview, DataError> {
    let parquet = is_parquet_name(&path.to_string_lossy());
    let (delimiter, delimiter_name) =
        if parquet { (Delimiter::Byte(b','), None) } else { sniff_delimiter(path).map(|(d, n)| (d, Some(n)))? };
    let text = TextOptions { delimiter, header: true, names: None };
    let budget = Budget { rows: caps.max_rows, columns: caps.max_columns };
    let mut names: Vec<String> = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut sample: Vec<Vec<String>> = Vec::new();
    let mut rows = 0usize;
    super::read::read_file_chunks(path, &text, budget, CHUNK_ROWS, &mut |frame: Frame| {
        if names.is_empty() {
            names = frame.names.clone();
            seen = names.iter().map(|_| Seen::new()).collect();
        }
        for r in 0..frame.n_rows.min(SAMPLE_ROWS.saturating_sub(sample.len())) {
            sample.push(frame.columns.iter().map(|column| cell_text(column, r)).collect());
        }
        for (c, column) in frame.columns.iter().enumerate() {
            let Some(s) = seen.get_mut(c) else { continue };
            match column {
                RawColumn::Num(v) => v.iter().for_each(|x| s.number(*x)),
                RawColumn::Time(v) => s.times += v.iter().filter(|x| x.is_finite()).count(),
                RawColumn::Text(cells) => cells.iter().for_each(|x| s.cell(x)),
            }
        }
        rows += frame.n_rows;
        Ok(())
    })?;
    if names.is_empty() {
        return Err(DataError::Format { file: path.to_path_buf(), message: "no columns: the file is empty".into() });
    }
    if rows == 0 {
        return Err(DataError::Format { file: path.to_path_buf(), message: "a header but no rows".into() });
    }
    let columns: Vec<ColumnPreview> = names
        .iter()
        .zip(&seen)
        .map(|(name, s)| {
            let kind = s.kind();
            let number = kind == ColumnKind::Number;
            ColumnPreview {
                name: name.clone(),
                kind,
                missing: s.missing,
                min: number.then_some(s.min),
                max: number.then_some(s.max),
                binary: number && s.binary,
                texts: s.distinct.clone(),
            }
        })
        .collect();
    let guess = guess(&columns);
    Ok(Preview { format: if parquet { "parquet" } else { "csv" }, delimiter: delimiter_name, rows, columns, sample, guess })
}

/// One cell as the preview shows it (a whole column's text would be made for every sample row otherwise).
fn cell_text(column: &RawColumn, row: usize) -> String {
    match column {
        RawColumn::Num(v) => v.get(row).map(f64::to_string).unwrap_or_default(),
        RawColumn::Time(v) => v.get(row).map(|t| crate::util::time::format_timestamp(*t)).unwrap_or_default(),
        RawColumn::Text(cells) => cells.get(row).map(|c| c.trim().to_string()).unwrap_or_default(),
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase().replace([' ', '-'], "_")
}

/// Roles from the columns' names and contents; sensors are the numeric columns left over.
fn guess(columns: &[ColumnPreview]) -> Mapping {
    let find = |ok: &dyn Fn(&ColumnPreview, &str) -> bool| columns.iter().find(|c| ok(c, &lower(&c.name))).map(|c| c.name.clone());
    let timestamp =
        find(&|c, _| c.kind == ColumnKind::Time).or_else(|| find(&|c, n| c.kind != ColumnKind::Text && TIME_NAMES.contains(&n)));
    let unit = find(&|c, n| {
        c.kind == ColumnKind::Number
            && ["unit", "life", "run", "engine", "unit_id", "unit_number", "life_id", "run_id", "cycle_id"].contains(&n)
    });
    let label = find(&|c, n| c.binary && (n == "label" || n == "target" || n.contains("fail")));
    let rul = find(&|c, n| c.kind == ColumnKind::Number && (n == "rul" || n.starts_with("rul_") || n.contains("remaining")));
    let anomaly = find(&|c, n| c.binary && (n == "anomaly" || n == "is_anomaly"));
    let taken: Vec<&String> = [&timestamp, &unit, &label, &rul, &anomaly].into_iter().flatten().collect();
    let index_like = |n: &str| ["id", "index", "udi", "row", "product_id"].contains(&n);
    let sensors = columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Number && !taken.contains(&&c.name) && !index_like(&lower(&c.name)))
        .map(|c| c.name.clone())
        .collect();
    Mapping { name: None, timestamp, step_seconds: None, unit, label, rul, rul_from_end: false, sensors, units: BTreeMap::new() }
}

/// Refuses a mapping that names a column the file lacks, one column in two roles, or no sensor.
fn check_mapping(m: &Mapping, columns: &[ColumnPreview]) -> Result<(), UploadError> {
    let mut used: BTreeMap<&str, &str> = BTreeMap::new();
    let roles = [("timestamp", &m.timestamp), ("unit", &m.unit), ("label", &m.label), ("rul", &m.rul)];
    let named =
        roles.iter().filter_map(|(role, c)| c.as_deref().map(|c| (*role, c))).chain(m.sensors.iter().map(|s| ("sensor", s.as_str())));
    for (role, name) in named {
        let Some(col) = columns.iter().find(|c| c.name == name) else {
            return Err(UploadError::Mapping(format!("the {role} column {name:?} is not in the file")));
        };
        if role == "sensor" && col.kind != ColumnKind::Number {
            let held = match col.kind {
                ColumnKind::Time => "times",
                ColumnKind::Text => "text",
                ColumnKind::Empty => "no",
                ColumnKind::Number => "number",
            };
            return Err(UploadError::Mapping(format!("the sensor {name:?} holds {held} values, not numbers")));
        }
        if let Some(other) = used.insert(name, role) {
            return Err(UploadError::Mapping(format!("the column {name:?} is given two roles: {other} and {role}")));
        }
    }
    if m.sensors.is_empty() {
        return Err(UploadError::Mapping("choose at least one sensor column".into()));
    }
    if m.rul.is_some() && m.rul_from_end {
        return Err(UploadError::Mapping("give a remaining-life column or count it from each life's end, not both".into()));
    }
    if m.step_seconds.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(UploadError::Mapping("seconds per step must be a positive number".into()));
    }
    if let Some(u) = m.units.keys().find(|u| !m.sensors.contains(u)) {
        return Err(UploadError::Mapping(format!("a unit is given for {u:?}, which is not a chosen sensor")));
    }
    Ok(())
}

/// The `machine.toml` for the file `file_name` and the mapping.
fn describe(file_name: &str, delimiter: Option<&str>, m: &Mapping) -> MachineToml {
    MachineToml {
        machine: super::MachineMeta { name: m.name.clone().filter(|n| !n.trim().is_empty()), ..Default::default() },
        files: vec![FileSpec {
            path: file_name.to_string(),
            delimiter: delimiter.filter(|d| *d != ",").map(str::to_string),
            ..Default::default()
        }],
        columns: ColumnRoles {
            timestamp: m.timestamp.clone(),
            step_seconds: m.step_seconds,
            unit: m.unit.clone(),
            label: m.label.clone(),
            rul: m.rul.clone(),
            rul_from_end: m.rul_from_end,
            sensors: Some(m.sensors.clone()),
            ..Default::default()
        },
        units: m.units.clone(),
        ..Default::default()
    }
}

/// What the new machine holds, as the loader read it.
#[derive(Debug, Serialize)]
pub struct Created {
    pub machine_id: String,
    pub rows: usize,
    pub sensors: Vec<String>,
    pub lives: usize,
    pub first_time: Option<f64>,
    pub last_time: Option<f64>,
}

/// Makes `data_dir/machines/<id>` from the uploaded file (moved, not copied: it lies in the same data
/// folder) and the mapping. The folder is made under a hidden name and read by the real loader there; only a
/// folder that loads is renamed into place, so a refusal leaves the data folder as it was (the upload stays,
/// for another try).
pub fn create_machine(
    data_dir: &Path,
    id: &MachineId,
    upload: &Path,
    original_name: &str,
    m: &Mapping,
    caps: &Caps,
) -> Result<Created, UploadError> {
    let final_dir = super::machine_dir(data_dir, id);
    if final_dir.exists() {
        return Err(UploadError::Exists(id.to_string()));
    }
    let p = preview(upload, caps)?;
    check_mapping(m, &p.columns)?;
    let parent = final_dir.parent().ok_or_else(|| DataError::NoLayout { dir: final_dir.clone() })?.to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let tmp = parent.join(format!(".{id}.upload-{}-{}", std::process::id(), crate::util::time::now_secs().to_bits()));
    let file_name = if is_parquet_name(original_name) { "history.parquet" } else { "history.csv" };
    let made = fill(&tmp, upload, file_name, &describe(file_name, p.delimiter, m), caps);
    let table = match made {
        Ok(t) => t,
        Err(e) => {
            // The upload goes back where it was, for another mapping.
            let _ = std::fs::rename(tmp.join(file_name), upload);
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &final_dir) {
        let _ = std::fs::rename(tmp.join(file_name), upload);
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(if final_dir.exists() { UploadError::Exists(id.to_string()) } else { DataError::io(&final_dir, e).into() });
    }
    crate::util::fsx::sync_dir(&parent).map_err(|e| DataError::io(&parent, e))?;
    let finite = || table.timestamps.iter().copied().filter(|t| t.is_finite());
    Ok(Created {
        machine_id: id.to_string(),
        rows: table.n_rows(),
        sensors: table.sensors.iter().map(|s| s.name.clone()).collect(),
        lives: table.life.iter().collect::<std::collections::BTreeSet<_>>().len(),
        first_time: finite().reduce(f64::min),
        last_time: finite().reduce(f64::max),
    })
}

fn fill(tmp: &Path, upload: &Path, file_name: &str, desc: &MachineToml, caps: &Caps) -> Result<super::Table, UploadError> {
    std::fs::create_dir(tmp).map_err(|e| DataError::io(tmp, e))?;
    let text = desc.to_toml().map_err(UploadError::Mapping)?;
    let header = "# Made by millwright from an uploaded file and the column roles chosen on the page.\n";
    let toml_path = tmp.join(TOML_NAME);
    crate::util::fsx::write_atomic(&toml_path, format!("{header}{text}").as_bytes()).map_err(|e| DataError::io(&toml_path, e))?;
    let file = tmp.join(file_name);
    std::fs::rename(upload, &file).map_err(|e| DataError::io(&file, e))?;
    let table = super::load_machine_dir_within(tmp, caps)?;
    crate::util::fsx::sync_dir(tmp).map_err(|e| DataError::io(tmp, e))?;
    Ok(table)
}

/// Where uploads wait for their mapping: inside the data folder, so the file is moved into the machine's
/// folder, never copied.
pub fn uploads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".uploads")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = uploads_dir(dir).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Two lives of hourly rows: a unit column, a 0/1 failure label, two sensors, a text note and an index.
    fn history() -> String {
        let mut s = String::from("udi;time;engine;temp C;vibration;failure;note\n");
        for i in 0..60u32 {
            let (unit, hour) = if i < 30 { (1, i) } else { (2, i + 10) };
            let fail = u8::from(i % 30 >= 27);
            let vib = if i == 5 { String::new() } else { format!("{:.2}", 1.0 + f64::from(i % 30) * 0.1) };
            let t = crate::util::time::format_timestamp(1_767_225_600.0 + f64::from(hour) * 3600.0);
            s += &format!("{i};{t};{unit};{:.1};{vib};{fail};ok\n", 40.0 + f64::from(i));
        }
        s
    }

    #[test]
    fn a_preview_reads_each_column_and_guesses_the_roles() {
        let d = tempfile::tempdir().unwrap();
        let p = preview(&csv(d.path(), "a.csv", &history()), &Caps::default()).unwrap();
        assert_eq!((p.format, p.delimiter, p.rows, p.columns.len()), ("csv", Some(";"), 60, 7));
        let kind = |n: &str| p.columns.iter().find(|c| c.name == n).unwrap().kind;
        assert_eq!(kind("time"), ColumnKind::Time);
        assert_eq!(kind("note"), ColumnKind::Text);
        assert_eq!(kind("vibration"), ColumnKind::Number);
        let vib = p.columns.iter().find(|c| c.name == "vibration").unwrap();
        assert_eq!((vib.missing, vib.min, vib.binary), (1, Some(1.0), false));
        assert_eq!(p.guess.timestamp.as_deref(), Some("time"));
        assert_eq!(p.guess.unit.as_deref(), Some("engine"));
        assert_eq!(p.guess.label.as_deref(), Some("failure"));
        assert_eq!(p.guess.sensors, vec!["temp C".to_string(), "vibration".to_string()], "the index and the note are no sensors");
        assert_eq!(p.sample.len(), SAMPLE_ROWS);
        assert_eq!(p.sample[0][3], "40");
    }

    #[test]
    fn a_mapped_upload_becomes_a_machine_the_loader_reads() {
        let d = tempfile::tempdir().unwrap();
        let up = csv(d.path(), "a.csv", &history());
        let mut m = preview(&up, &Caps::default()).unwrap().guess;
        m.name = Some("Press 4".into());
        m.units.insert("temp C".into(), "°C".into());
        let id = MachineId::parse("press-4").unwrap();
        let made = create_machine(d.path(), &id, &up, "a.csv", &m, &Caps::default()).unwrap();
        assert_eq!((made.rows, made.lives, made.sensors.len()), (60, 2, 2));
        assert!(!up.exists(), "the upload is moved into the machine");
        let t = crate::data::load_machine(d.path(), "press-4").unwrap();
        assert_eq!(t.meta.name.as_deref(), Some("Press 4"));
        assert_eq!(t.sensors[0].unit, "°C");
        assert_eq!(t.label.as_ref().map(|l| l.iter().sum::<f64>()), Some(6.0));
        let names: Vec<_> = std::fs::read_dir(d.path().join("machines")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("press-4")], "no hidden folder is left");
        // The same id again.
        let again = csv(d.path(), "b.csv", &history());
        assert!(matches!(create_machine(d.path(), &id, &again, "b.csv", &m, &Caps::default()), Err(UploadError::Exists(_))));
    }

    #[test]
    fn a_mapping_or_file_the_loader_refuses_writes_nothing_and_keeps_the_upload() {
        let d = tempfile::tempdir().unwrap();
        let up = csv(d.path(), "a.csv", &history());
        let good = preview(&up, &Caps::default()).unwrap().guess;
        let id = MachineId::parse("m1").unwrap();
        let cases: Vec<(Mapping, &str)> = vec![
            (Mapping { sensors: vec!["nope".into()], ..good.clone() }, "not in the file"),
            (Mapping { sensors: vec!["note".into()], ..good.clone() }, "not numbers"),
            (Mapping { sensors: vec!["engine".into()], ..good.clone() }, "two roles"),
            (Mapping { sensors: vec![], ..good.clone() }, "at least one sensor"),
            (Mapping { rul_from_end: true, rul: Some("udi".into()), ..good.clone() }, "not both"),
        ];
        for (m, says) in cases {
            let e = create_machine(d.path(), &id, &up, "a.csv", &m, &Caps::default()).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        // The loader's own refusal: a timestamp column of text.
        let e = create_machine(d.path(), &id, &up, "a.csv", &Mapping { timestamp: Some("note".into()), ..good.clone() }, &Caps::default())
            .unwrap_err();
        assert!(matches!(e, UploadError::Data(_)), "{e}");
        assert!(up.exists(), "the upload stays for another try");
        assert!(std::fs::read_dir(d.path().join("machines")).unwrap().next().is_none(), "nothing is left in machines/");
        assert!(create_machine(d.path(), &id, &up, "a.csv", &good, &Caps::default()).is_ok(), "and the right mapping still works");
    }

    #[test]
    fn files_that_are_no_tables_are_refused_with_their_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = uploads_dir(d.path()).join("x.csv");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"a,b\n1,\x00\x01\x02").unwrap();
        assert!(preview(&p, &Caps::default()).unwrap_err().to_string().contains("not a text file"));
        std::fs::write(&p, "a,b\n").unwrap();
        assert!(preview(&p, &Caps::default()).unwrap_err().to_string().contains("no rows"));
        std::fs::write(&p, "").unwrap();
        assert!(preview(&p, &Caps::default()).is_err());
        let q = uploads_dir(d.path()).join("x.parquet");
        std::fs::write(&q, "a,b\n1,2\n").unwrap();
        assert!(preview(&q, &Caps::default()).is_err(), "a CSV named .parquet");
    }

    #[test]
    fn a_parquet_history_previews_and_becomes_a_machine_too() {
        let d = tempfile::tempdir().unwrap();
        let sim = d.path().join("sim");
        let opts = crate::data::simulate::FleetOptions { out_dir: sim.clone(), machines: 1, rows: 2_000, ..Default::default() };
        let id = crate::data::simulate::simulate_fleet(&opts).unwrap().remove(0).id;
        let up = uploads_dir(d.path()).join("h.parquet");
        std::fs::create_dir_all(up.parent().unwrap()).unwrap();
        std::fs::copy(sim.join("machines").join(&id).join("train.parquet"), &up).unwrap();
        let p = preview(&up, &Caps::default()).unwrap();
        assert_eq!((p.format, p.delimiter), ("parquet", None));
        assert_eq!(p.guess.timestamp.as_deref(), Some("timestamp"), "{:?}", p.columns);
        assert_eq!(p.guess.rul.as_deref(), Some("rul"));
        let ts = p.columns.iter().position(|c| c.name == "timestamp").unwrap();
        assert!(
            p.sample[0][ts].contains('-') && crate::util::time::parse_timestamp(&p.sample[0][ts]).is_some(),
            "shown as a time: {:?}",
            p.sample[0]
        );
        let made = create_machine(d.path(), &MachineId::parse("p1").unwrap(), &up, "h.parquet", &p.guess, &Caps::default()).unwrap();
        assert_eq!(made.rows, p.rows);
        assert!(d.path().join("machines/p1/history.parquet").is_file());
    }
}
