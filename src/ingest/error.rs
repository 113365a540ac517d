use std::path::PathBuf;
use thiserror::Error;

/// Cloneable: one failed group commit answers every caller in the group with the same error.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IngestError {
    #[error(
        "the body is not readings: {0}; send a JSON object {{\"ts\": \"2026-01-01T00:00:00Z\", \"<sensor>\": 1.5}} or an array of them"
    )]
    Body(String),
    #[error("readings could not be made durable in {path}: {message}{}", if *.disk_full { " (the disk is full: free space or lower the retention)" } else { "" })]
    Write { path: PathBuf, message: String, disk_full: bool },
    #[error("the readings log {path} cannot be opened: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the readings log is closed (the daemon is shutting down); send the readings again")]
    Closed,
}

impl IngestError {
    pub(super) fn write(path: &std::path::Path, e: &std::io::Error) -> IngestError {
        IngestError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
            disk_full: e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded,
        }
    }

    pub(super) fn open(path: &std::path::Path, e: impl std::fmt::Display) -> IngestError {
        IngestError::Open { path: path.to_path_buf(), message: e.to_string() }
    }
}
