//! The hard limits on a machine's data (`[data]` in the config): what listing, submission and loading refuse
//! before a file is read or a row decoded, each refusal naming its setting.
use super::error::DataError;
use std::path::Path;

/// Hard limits on what a machine's data may be; each refusal names its setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub max_file_bytes: u64,
    pub max_columns: usize,
    pub max_line_bytes: usize,
    pub max_rows: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps { max_file_bytes: 1024 << 20, max_columns: 1000, max_line_bytes: 1 << 20, max_rows: 50_000_000 }
    }
}

/// What one file may bring: the rows the machine's `data.max_rows` leaves for it, and `data.max_columns`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub rows: usize,
    pub columns: usize,
}

impl Budget {
    /// For a reader whose caller has already checked the file against the caps (the listing's pass).
    pub const UNLIMITED: Budget = Budget { rows: usize::MAX, columns: usize::MAX };

    /// Refuses what is over the budget, naming the setting; Parquet is checked from its footer, before any
    /// row is decoded (run-length encoding lets a few kB claim millions of rows in hundreds of columns).
    pub(super) fn check(&self, path: &Path, rows: usize, columns: usize) -> Result<(), DataError> {
        if columns > self.columns {
            return Err(over(path, format!("has {columns} columns"), "data.max_columns", self.columns));
        }
        if rows > self.rows {
            return Err(over(path, format!("brings the machine past {} rows", self.rows), "data.max_rows", self.rows));
        }
        Ok(())
    }
}

pub(super) fn over(file: &Path, what: String, setting: &'static str, limit: impl ToString) -> DataError {
    DataError::OverCap { file: file.to_path_buf(), what, setting, limit: limit.to_string() }
}
