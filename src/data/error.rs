use std::path::PathBuf;
use thiserror::Error;

/// Every way loading a machine can fail, each naming the file, row and column where that is known.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("invalid machine id {id:?}: use 1–64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit")]
    InvalidMachineId { id: String },
    #[error("unknown machine {id:?}: no folder {}", dir.display())]
    UnknownMachine { id: String, dir: PathBuf },
    #[error("{}: no machine data found (expected train.parquet/train.csv (+ val, test) or a machine.toml)", dir.display())]
    NoLayout { dir: PathBuf },
    #[error("{}: no readings in the machine's files yet (it was made from its first readings; they are moved into its files every readings.compact_interval_s)", dir.display())]
    NoReadingsYet { dir: PathBuf, sensors: Vec<String> },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", file.display())]
    Format { file: PathBuf, message: String },
    #[error("{}, row {row}, column {column:?}: cannot read {value:?} as {expected}", file.display())]
    Cell { file: PathBuf, row: usize, column: String, value: String, expected: &'static str },
    #[error("{}: no column named {column:?} (columns: {available})", file.display())]
    MissingColumn { file: PathBuf, column: String, available: String },
    #[error("{}, row {row}: timestamp {current} is not after the previous one ({previous}) within life {life}; sort the file or declare a unit column", file.display())]
    NonMonotonic { file: PathBuf, row: usize, life: String, previous: String, current: String },
    #[error("{}, row {row}: timestamp {time} repeats the previous row's within life {life}; set `duplicates = \"first\"` (keep one) or `\"mean\"` (average them) under [columns] in machine.toml", file.display())]
    DuplicateTime { file: PathBuf, row: usize, life: String, time: String },
    #[error("{}: {what}, over the limit of {limit} set by `{setting}` in the configuration; split or thin out the data, or raise the setting", file.display())]
    OverCap { file: PathBuf, what: String, setting: &'static str, limit: String },
    #[error("{}: no sensor columns (every numeric column is a timestamp, unit, label, rul or ignored one)", file.display())]
    NoSensors { file: PathBuf },
    #[error("{}: column {column:?} has no values at all (every cell is empty or NaN); drop it with `ignore = [{column:?}]`", file.display())]
    AllMissing { file: PathBuf, column: String },
    #[error("{}: only {rows} row(s); at least 2 rows are needed", file.display())]
    TooFewRows { file: PathBuf, rows: usize },
    #[error("{}: {message}", file.display())]
    Describe { file: PathBuf, message: String },
    #[error("{}: {setting} leads outside the data folder ({} resolves to {}, which is not under {}); keep a machine's files inside the data folder (copy them there rather than linking to them)", file.display(), path.display(), resolved.display(), root.display())]
    Outside { file: PathBuf, setting: String, path: PathBuf, resolved: PathBuf, root: PathBuf },
    #[error(
        "sensor column {column:?} is named like a column the training grid makes (a sensor, ':' and mean, min, max, std, last or count); rename it, or set data.grid = \"off\" so the readings are not aggregated"
    )]
    GridName { column: String },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    /// An infinity read from a Parquet cell: a broken reading, not a value to train on (CSV says the same).
    pub fn infinite(file: impl Into<PathBuf>, row: usize, column: &str, value: f64) -> Self {
        DataError::Cell { file: file.into(), row, column: column.to_string(), value: value.to_string(), expected: "a finite number" }
    }

    /// What went wrong without file names, paths or anything read from a file (cell values, column names,
    /// parser excerpts): for clients that may not see the data folder's layout or content.
    pub fn redacted(&self) -> String {
        let what = match self {
            DataError::InvalidMachineId { .. } => return self.to_string(),
            DataError::UnknownMachine { id, .. } => return format!("unknown machine {id:?}"),
            DataError::NoLayout { .. } => {
                "no machine data found (expected train.parquet/train.csv (+ val, test) or a machine.toml)".to_string()
            }
            DataError::NoReadingsYet { .. } => {
                "no readings in the machine's files yet (it was made from its first readings; they are moved there every readings.compact_interval_s)"
                    .to_string()
            }
            DataError::Io { source, .. } => format!("a file of this machine cannot be read ({})", source.kind()),
            DataError::Format { .. } => "a data file is not valid CSV or Parquet".to_string(),
            DataError::Cell { row, expected, .. } => format!("row {row} of a data file has a cell that cannot be read as {expected}"),
            DataError::MissingColumn { .. } => "a data file lacks a column the machine's description names".to_string(),
            DataError::NonMonotonic { row, .. } => format!("row {row} of a data file has a timestamp that is not after the previous one"),
            DataError::DuplicateTime { row, .. } => format!("row {row} of a data file repeats the previous row's timestamp"),
            DataError::OverCap { what, setting, limit, .. } => format!("a data file {what}, over the limit of {limit} set by `{setting}`"),
            DataError::NoSensors { .. } => "a data file has no sensor columns".to_string(),
            DataError::AllMissing { .. } => "a sensor column has no values at all".to_string(),
            DataError::TooFewRows { rows, .. } => format!("only {rows} row(s); at least 2 rows are needed"),
            DataError::Describe { .. } => "the machine.toml is not valid".to_string(),
            DataError::Outside { .. } => "the machine's description names a file outside the data folder".to_string(),
            DataError::GridName { .. } => "a sensor column is named like a column the training grid makes".to_string(),
        };
        format!("{what}; log in to see details")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_messages_name_no_file_and_quote_nothing_read() {
        let file = PathBuf::from("/srv/data/machines/m/secret-name.csv");
        let canary = "canary-value";
        let all = [
            DataError::UnknownMachine { id: "m".into(), dir: file.clone() },
            DataError::NoLayout { dir: file.clone() },
            DataError::NoReadingsYet { dir: file.clone(), sensors: vec![canary.into()] },
            DataError::io(&file, std::io::Error::new(std::io::ErrorKind::PermissionDenied, canary)),
            DataError::Format { file: file.clone(), message: canary.into() },
            DataError::Cell { file: file.clone(), row: 3, column: canary.into(), value: canary.into(), expected: "a number" },
            DataError::MissingColumn { file: file.clone(), column: canary.into(), available: canary.into() },
            DataError::NonMonotonic { file: file.clone(), row: 4, life: canary.into(), previous: canary.into(), current: canary.into() },
            DataError::NoSensors { file: file.clone() },
            DataError::OverCap { file: file.clone(), what: "has 9 columns".into(), setting: "data.max_columns", limit: "5".into() },
            DataError::DuplicateTime { file: file.clone(), row: 5, life: canary.into(), time: canary.into() },
            DataError::AllMissing { file: file.clone(), column: canary.into() },
            DataError::TooFewRows { file: file.clone(), rows: 1 },
            DataError::Describe { file: file.clone(), message: canary.into() },
            DataError::Outside {
                file: file.clone(),
                setting: "rul_at_end".into(),
                path: file.clone(),
                resolved: "/etc/passwd".into(),
                root: "/srv/data".into(),
            },
        ];
        for e in &all {
            let r = e.redacted();
            assert!(!r.contains("/srv") && !r.contains("/etc") && !r.contains(canary) && !r.contains("secret-name"), "{e:?} → {r}");
            assert!(e.to_string().contains("/srv/data"), "the full message keeps the path: {e}");
        }
        assert!(all[5].redacted().contains("row 3") && all[4].redacted().ends_with("log in to see details"));
    }
}
