//! `machine.toml`: display metadata and, optionally, a description of any CSV/Parquet files and the role
//! of each column. With no `[[files]]`, the folder's legacy-layout files are read and `[columns]` still applies.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::table::{MachineMeta, SplitHint, SplitMethod};

/// The description's file name in a machine folder.
pub(super) const TOML_NAME: &str = "machine.toml";

/// Column names taken as the timestamp when `[columns]` names none (compared without case).
pub(super) const TIME_NAMES: [&str; 4] = ["timestamp", "datetime", "time", "date"];
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineToml {
    #[serde(default)]
    pub machine: MachineMeta,
    /// Files making up the machine's history, relative to the folder holding `machine.toml`.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub columns: ColumnRoles,
    /// Physical unit per sensor, for display.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    #[serde(default)]
    pub split: SplitSection,
    /// Labelled anomaly windows kept beside the data (NAB's JSON), used only for evaluation.
    pub anomaly_windows: Option<WindowsSpec>,
    /// What produced each life (the simulator writes its failure modes here); display only.
    #[serde(default)]
    pub lives: Vec<LifeInfo>,
    /// When the daemon trains this machine's models again (read by the retrain schedule).
    #[serde(default)]
    pub retrain: RetrainSection,
    /// What the anomaly detector judges readings against.
    #[serde(default)]
    pub anomaly: AnomalySection,
}

/// What the anomaly detector judges a reading against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyReference {
    /// Healthy rows (the healthy head of each run, a healthy file, or the rows far from failure).
    Healthy,
    /// The readings just before it: for series whose normal range moves beyond any reference.
    Trailing,
}

/// Hours of readings a trailing reference spans unless `trailing_hours` says otherwise.
pub const DEFAULT_TRAILING_HOURS: f64 = 24.0;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySection {
    /// Absent: healthy rows, unless a single series wanders far from its healthy start (the trainer decides
    /// and says so).
    pub reference: Option<AnomalyReference>,
    pub trailing_hours: Option<f64>,
}

impl AnomalySection {
    /// The hours of a trailing reference (none for a healthy one), checked.
    pub fn trailing_hours(&self) -> Result<Option<f64>, String> {
        match (self.reference, self.trailing_hours) {
            (None | Some(AnomalyReference::Healthy), Some(_)) => {
                Err("[anomaly] trailing_hours needs reference = \"trailing\"; remove it or set the reference".into())
            }
            (None | Some(AnomalyReference::Healthy), None) => Ok(None),
            (Some(AnomalyReference::Trailing), None) => Ok(Some(DEFAULT_TRAILING_HOURS)),
            (Some(AnomalyReference::Trailing), Some(h)) if h.is_finite() && h > 0.0 => Ok(Some(h)),
            (Some(AnomalyReference::Trailing), Some(h)) => {
                Err(format!("[anomaly] trailing_hours = {h} must be a positive number of hours, e.g. 24"))
            }
        }
    }

    /// `reference = "healthy"` written out: healthy rows even where a trailing reference would be chosen.
    pub fn healthy_only(&self) -> bool {
        self.reference == Some(AnomalyReference::Healthy)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainSection {
    /// "off", "daily@02:00", "weekly@sun 03:00", "after 24 new hours of data" or "on drift"; absent: the
    /// configuration's `retrain.default`.
    pub when: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// A path, or a pattern with `*` in its last component (e.g. `valve1/*.csv`, sorted numerically).
    pub path: String,
    /// `train`, `val`, `test` or `healthy` (reference data known to be normal); omit to let millwright split.
    pub split: Option<String>,
    /// `,` (default), `;`, `tab` or `whitespace`.
    pub delimiter: Option<String>,
    /// Whether the first line names the columns (default true).
    pub header: Option<bool>,
    /// Column names, required when `header = false`.
    pub names: Option<Vec<String>>,
    /// Every matched file is its own run (a life), e.g. SKAB's experiments.
    #[serde(default)]
    pub file_is_life: bool,
    /// A file with one RUL value per unit (in unit order) at that unit's last row: C-MAPSS's `RUL_FD001.txt`.
    pub rul_at_end: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRoles {
    /// Time column: datetime text, ISO-8601 or epoch seconds; or a cycle/index column with `step_seconds`.
    pub timestamp: Option<String>,
    /// Seconds per step when `timestamp` is a cycle or row index (C-MAPSS cycles, AI4I's UDI).
    pub step_seconds: Option<f64>,
    /// Which run-to-failure life (or independent run) a row belongs to.
    pub unit: Option<String>,
    /// A given 0/1 failure label.
    pub label: Option<String>,
    /// Remaining useful life, hours.
    pub rul: Option<String>,
    /// Lives run to failure: RUL at each row = time left to the life's last row (hours).
    #[serde(default)]
    pub rul_from_end: bool,
    /// Upper cap for RUL derived from the end of a life (C-MAPSS convention: 125 cycles).
    pub rul_cap_hours: Option<f64>,
    /// 0/1 anomaly ground truth, used only for evaluation.
    pub anomaly: Option<String>,
    /// Sensor columns; default: every other numeric column.
    pub sensors: Option<Vec<String>>,
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Text columns turned into numeric codes by position in the list (e.g. AI4I `Type = ["L", "M", "H"]`).
    #[serde(default)]
    pub categorical: BTreeMap<String, Vec<String>>,
    /// What to do with rows whose timestamp repeats the previous one within a life.
    #[serde(default)]
    pub duplicates: Duplicates,
}

/// Historians often log a reading twice at one timestamp (a retried write, a DST fold); refusing is the
/// default so nothing is silently merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duplicates {
    #[default]
    Error,
    /// Keep the first row of each repeated timestamp.
    First,
    /// One row per timestamp: sensors and RUL averaged over the repeats (missing readings skipped), a label or
    /// anomaly flag set when any repeat has it.
    Mean,
}

/// `[split]` as written: [`SplitHint`] plus the healthy head given as a duration or a share of each run,
/// which only the loaded data can turn into rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSection {
    #[serde(default)]
    pub method: SplitMethod,
    pub test_fraction: Option<f64>,
    pub val_fraction: Option<f64>,
    pub seed: Option<u64>,
    /// The first N rows of every run are known to be normal.
    pub healthy_head_rows: Option<usize>,
    /// The first stretch of every run, e.g. `"400 s"`, `"7 min"`, `"2 h"`, `"1 d"`.
    pub healthy_head_duration: Option<String>,
    /// The first share of every run's rows, in (0, 1).
    pub healthy_head_fraction: Option<f64>,
}

/// How the healthy head of each run was given.
#[derive(Clone, Debug, PartialEq)]
pub enum HealthyHead {
    Rows(usize),
    Seconds(f64),
    Fraction(f64),
}

impl SplitSection {
    /// At most one of the three healthy-head keys; each checked for a usable value.
    pub fn healthy_head(&self) -> Result<Option<HealthyHead>, String> {
        let mut given = Vec::new();
        if let Some(n) = self.healthy_head_rows {
            if n == 0 {
                return Err("[split] healthy_head_rows must be at least 1 (or leave it out)".into());
            }
            given.push(HealthyHead::Rows(n));
        }
        if let Some(d) = &self.healthy_head_duration {
            let s = parse_duration(d).ok_or_else(|| {
                format!("[split] healthy_head_duration = {d:?}: write a positive number and a unit, e.g. \"400 s\", \"7 min\", \"2 h\" or \"1 d\"")
            })?;
            given.push(HealthyHead::Seconds(s));
        }
        if let Some(f) = self.healthy_head_fraction {
            if !(f > 0.0 && f < 1.0) {
                return Err(format!("[split] healthy_head_fraction = {f}: give a share of each run between 0 and 1, e.g. 0.1"));
            }
            given.push(HealthyHead::Fraction(f));
        }
        if given.len() > 1 {
            return Err(
                "[split] give the healthy head one way only: healthy_head_rows, healthy_head_duration or healthy_head_fraction".into()
            );
        }
        Ok(given.pop())
    }

    /// The split protocol with the healthy head still unresolved (rows are set once the data is loaded).
    pub fn hint(&self) -> SplitHint {
        SplitHint {
            method: self.method,
            test_fraction: self.test_fraction,
            val_fraction: self.val_fraction,
            seed: self.seed,
            healthy_head_rows: None,
            trailing_reference_hours: None,
            healthy_reference_only: false,
        }
    }
}

impl std::fmt::Display for HealthyHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthyHead::Rows(n) => write!(f, "the first {n} rows of each run"),
            HealthyHead::Seconds(s) => write!(f, "the first {s} s of each run"),
            HealthyHead::Fraction(x) => write!(f, "the first {:.1} % of each run", x * 100.0),
        }
    }
}

/// `"90 s"`, `"7 min"`, `"2h"`, `"1.5 d"`, `"1 w"`: seconds, positive and finite.
pub fn parse_duration(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let value: f64 = t[..split].parse().ok()?;
    let unit = match t[split..].trim() {
        "s" | "sec" | "second" | "seconds" => 1.0,
        "m" | "min" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return None,
    };
    let s = value * unit;
    (s.is_finite() && s > 0.0).then_some(s)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsSpec {
    /// JSON file: either a list of `[start, end]` pairs or an object whose `key` holds that list.
    pub path: String,
    pub key: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifeInfo {
    /// Which legacy-layout file (`train`, `val`, `test`) and which life within it, counted from 0.
    pub split: String,
    pub index: usize,
    pub rows: usize,
    pub failure_mode: String,
    #[serde(default)]
    pub initial_wear: f64,
}

impl MachineToml {
    pub fn parse(text: &str) -> Result<MachineToml, String> {
        toml::from_str(text).map_err(|e| with_section_hint(&e.to_string()))
    }

    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| e.to_string())
    }
}

/// Every key `machine.toml` knows, by the section it belongs in (`""` is the top level).
const KEYS: [(&str, &[&str]); 9] = [
    ("", &["machine", "files", "columns", "units", "split", "anomaly_windows", "lives", "retrain", "anomaly"]),
    ("[retrain]", &["when"]),
    ("[anomaly]", &["reference", "trailing_hours"]),
    ("[machine]", &["name", "manufacturer", "model", "family"]),
    ("[[files]]", &["path", "split", "delimiter", "header", "names", "file_is_life", "rul_at_end"]),
    (
        "[columns]",
        &[
            "timestamp",
            "step_seconds",
            "unit",
            "label",
            "rul",
            "rul_from_end",
            "rul_cap_hours",
            "anomaly",
            "sensors",
            "ignore",
            "categorical",
            "duplicates",
        ],
    ),
    (
        "[split]",
        &["method", "test_fraction", "val_fraction", "seed", "healthy_head_rows", "healthy_head_duration", "healthy_head_fraction"],
    ),
    ("[anomaly_windows]", &["path", "key"]),
    ("[[lives]]", &["split", "index", "rows", "failure_mode", "initial_wear"]),
];

/// serde names an unknown key but not where it should go; a key valid elsewhere (`healthy_head_rows` under
/// `[columns]`) or a near miss (`healthy_head_row`) gets said so.
fn with_section_hint(message: &str) -> String {
    let Some(key) = message.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next()) else {
        return message.to_string();
    };
    let homes: Vec<&str> = KEYS.iter().filter(|(_, keys)| keys.contains(&key)).map(|(section, _)| *section).collect();
    let hint = if !homes.is_empty() {
        let names: Vec<String> = homes.iter().map(|s| if s.is_empty() { "the top level".to_string() } else { s.to_string() }).collect();
        format!("`{key}` belongs under {}", names.join(" or "))
    } else if let Some((section, near)) =
        KEYS.iter().flat_map(|(s, keys)| keys.iter().map(move |k| (*s, *k))).find(|(_, k)| near_miss(key, k))
    {
        let place = if section.is_empty() { "at the top level".to_string() } else { format!("under {section}") };
        format!("did you mean `{near}` ({place})?")
    } else {
        return message.to_string();
    };
    format!("{}\n{hint}", message.trim_end())
}

/// One edit apart (a letter missing, extra, or changed), or the same but for `-`/`_` and case.
fn near_miss(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let (a, b) = (norm(a), norm(b));
    if a == b {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() { short[prefix + 1..] == long[prefix + 1..] } else { short[prefix..] == long[prefix + 1..] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        MachineToml::parse(text).err().unwrap_or_default()
    }

    #[test]
    fn unknown_keys_in_machine_and_split_are_refused() {
        let e = err("[split]\nhealthy_head_row = 400\n");
        assert!(e.contains("healthy_head_row") && e.contains("did you mean `healthy_head_rows` (under [split])"), "{e}");
        let e = err("[machine]\nname = \"a\"\nlocation = \"hall 3\"\n");
        assert!(e.contains("unknown field `location`"), "{e}");
    }

    #[test]
    fn a_misplaced_key_names_its_section() {
        let e = err("[columns]\nhealthy_head_rows = 400\n");
        assert!(e.contains("`healthy_head_rows` belongs under [split]"), "{e}");
        let e = err("timestamp = \"t\"\n");
        assert!(e.contains("`timestamp` belongs under [columns]"), "{e}");
        let e = err("[machine]\nduplicates = \"mean\"\n");
        assert!(e.contains("`duplicates` belongs under [columns]"), "{e}");
    }

    #[test]
    fn the_anomaly_reference_is_healthy_trailing_or_unsaid_and_its_keys_stay_in_their_section() {
        let section = |text: &str| MachineToml::parse(text).unwrap().anomaly;
        assert_eq!(section("").trailing_hours(), Ok(None));
        assert!(!section("").healthy_only());
        assert_eq!(section("[anomaly]\nreference = \"trailing\"\n").trailing_hours(), Ok(Some(DEFAULT_TRAILING_HOURS)));
        assert_eq!(section("[anomaly]\nreference = \"trailing\"\ntrailing_hours = 6\n").trailing_hours(), Ok(Some(6.0)));
        assert!(section("[anomaly]\nreference = \"healthy\"\n").healthy_only());
        assert!(section("[anomaly]\ntrailing_hours = 6\n").trailing_hours().unwrap_err().contains("needs reference"));
        assert!(err("[anomaly]\nreference = \"recent\"\n").contains("unknown variant `recent`"));
        let e = err("[split]\ntrailing_hours = 6\n");
        assert!(e.contains("`trailing_hours` belongs under [anomaly]"), "{e}");
    }

    #[test]
    fn healthy_head_takes_rows_a_duration_or_a_fraction_but_one_only() {
        let head = |text: &str| MachineToml::parse(text).unwrap().split.healthy_head();
        assert_eq!(head("[split]\nhealthy_head_rows = 400\n"), Ok(Some(HealthyHead::Rows(400))));
        assert_eq!(head("[split]\nhealthy_head_duration = \"7 min\"\n"), Ok(Some(HealthyHead::Seconds(420.0))));
        assert_eq!(head("[split]\nhealthy_head_fraction = 0.25\n"), Ok(Some(HealthyHead::Fraction(0.25))));
        assert_eq!(head("[split]\n"), Ok(None));
        let e = head("[split]\nhealthy_head_rows = 4\nhealthy_head_fraction = 0.2\n").unwrap_err();
        assert!(e.contains("one way only"), "{e}");
        assert!(head("[split]\nhealthy_head_duration = \"soon\"\n").unwrap_err().contains("\"7 min\""));
        assert!(head("[split]\nhealthy_head_fraction = 1.5\n").unwrap_err().contains("between 0 and 1"));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90 s"), Some(90.0));
        assert_eq!(parse_duration("2h"), Some(7200.0));
        assert_eq!(parse_duration("1.5 d"), Some(129_600.0));
        assert_eq!(parse_duration("0 min"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("min"), None);
    }
}
