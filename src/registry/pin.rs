//! A pinned version: the one that answers even when newer versions exist. A person pins one to roll back; a
//! retrain that did not beat the live model pins the live one so it keeps answering. The pin is one small
//! file beside the versions, written whole; a pin naming a version that is gone or unreadable is ignored
//! (the newest readable version answers, as without a pin).
use super::{RegistryError, io_err};
use crate::util::fsx;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const PIN_FILE: &str = "pinned.json";

/// Who pinned a version, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinBy {
    /// Through the API or the page: only a person removes it (or trains a model themselves).
    Person,
    /// A scheduled or triggered retrain whose model was worse than the live one kept the live one.
    Challenger,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub version: u32,
    pub by: PinBy,
    pub reason: String,
    pub at: String,
}

pub(super) fn read(type_dir: &Path) -> Option<Pin> {
    let path = type_dir.join(PIN_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable pin; the newest version answers");
            None
        }
    }
}

pub(super) fn write(type_dir: &Path, pin: &Pin) -> Result<(), RegistryError> {
    let path = type_dir.join(PIN_FILE);
    let bytes = serde_json::to_vec_pretty(pin).map_err(|e| RegistryError::Corrupt { path: path.clone(), message: e.to_string() })?;
    fsx::write_atomic(&path, &bytes).map_err(|e| io_err(&path, e))
}

/// Whether a pin was there to remove.
pub(super) fn remove(type_dir: &Path) -> Result<bool, RegistryError> {
    let path = type_dir.join(PIN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            fsx::sync_dir(type_dir).map_err(|e| io_err(type_dir, e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&path, e)),
    }
}
