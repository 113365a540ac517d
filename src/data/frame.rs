//! One file's columns as read, by name, before any column has a role: what every reader hands the loader.
use super::error::DataError;
use crate::util::time::parse_timestamp;
use std::path::PathBuf;

/// A column as read: numbers where the file stores numbers, text otherwise.
pub enum RawColumn {
    Num(Vec<f64>),
    /// Timestamps already decoded by the file format (Parquet logical types), epoch seconds.
    Time(Vec<f64>),
    Text(Vec<String>),
}

/// One file's columns by name, plus where they came from for error messages.
pub struct Frame {
    pub file: PathBuf,
    pub names: Vec<String>,
    pub columns: Vec<RawColumn>,
    pub n_rows: usize,
    /// Row number in the file of data row 0 (1-based, counting the header), for error messages.
    pub first_row: usize,
}

impl Frame {
    pub fn index_of(&self, name: &str) -> Result<usize, DataError> {
        self.names.iter().position(|n| n == name).ok_or_else(|| DataError::MissingColumn {
            file: self.file.clone(),
            column: name.to_string(),
            available: self.names.join(", "),
        })
    }

    /// True when the column holds numbers (text columns count when their first non-empty cell is a number).
    pub fn looks_numeric(&self, idx: usize) -> bool {
        match &self.columns[idx] {
            RawColumn::Num(_) => true,
            RawColumn::Time(_) => false,
            RawColumn::Text(cells) => cells
                .iter()
                .map(|c| c.trim())
                .find(|c| !is_missing(c))
                // An all-empty column counts as numeric so the loader can name it as all-missing.
                .is_none_or(|c| c.parse::<f64>().is_ok()),
        }
    }

    pub fn numeric(&self, idx: usize) -> Result<Vec<f64>, DataError> {
        match &self.columns[idx] {
            RawColumn::Num(v) | RawColumn::Time(v) => Ok(v.clone()),
            RawColumn::Text(cells) => {
                cells.iter().enumerate().map(|(r, c)| parse_number(c).ok_or_else(|| self.cell_error(idx, r, c, "a number"))).collect()
            }
        }
    }

    pub fn timestamps(&self, idx: usize) -> Result<Vec<f64>, DataError> {
        match &self.columns[idx] {
            RawColumn::Num(v) | RawColumn::Time(v) => {
                if let Some(r) = v.iter().position(|x| !x.is_finite()) {
                    return Err(self.cell_error(idx, r, "NaN", "a timestamp"));
                }
                Ok(v.clone())
            }
            RawColumn::Text(cells) => {
                cells.iter().enumerate().map(|(r, c)| parse_timestamp(c).ok_or_else(|| self.cell_error(idx, r, c, "a timestamp"))).collect()
            }
        }
    }

    pub fn text(&self, idx: usize) -> Vec<String> {
        match &self.columns[idx] {
            RawColumn::Text(cells) => cells.iter().map(|c| c.trim().to_string()).collect(),
            RawColumn::Num(v) | RawColumn::Time(v) => v.iter().map(|x| x.to_string()).collect(),
        }
    }

    pub fn cell_error(&self, idx: usize, row: usize, value: &str, expected: &'static str) -> DataError {
        DataError::Cell {
            file: self.file.clone(),
            row: self.first_row + row,
            column: self.names[idx].clone(),
            value: value.chars().take(60).collect(),
            expected,
        }
    }
}

fn is_missing(cell: &str) -> bool {
    matches!(cell, "" | "NaN" | "nan" | "NA" | "N/A" | "null" | "NULL" | "None")
}

/// Empty and the usual NaN spellings are missing (NaN); infinities are refused as unparsable.
pub(super) fn parse_number(cell: &str) -> Option<f64> {
    let c = cell.trim();
    if is_missing(c) {
        return Some(f64::NAN);
    }
    c.parse::<f64>().ok().filter(|v| v.is_finite())
}
