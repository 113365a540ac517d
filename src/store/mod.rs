//! Persistence behind a small trait: the job queue stores whole job records by submission number.
//! sled is the implementation the design asks for; it is opened with a small cache and flushed at every
//! job state change, because an abrupt stop must never lose a PENDING job.
//!
//! A job store has to outlive what a Pi in a plant meets over months, so around sled:
//! - every record carries a checksum and the store's write counter ([`frame`]), and the store keeps its own
//!   count of records, written in the same atomic batch as each change;
//! - a backup of every record is written next to the store, atomically, at most every few seconds after a
//!   state change and at shutdown ([`backup`]);
//! - opening checks free space first (sled writes while it opens, and a start on a full disk left a store
//!   that never opened again), removes the unfinished snapshots such a start leaves, moves a store that
//!   still does not open aside, and compares what it finds with its own count and the backup: missing,
//!   damaged or older records come back from the backup, with a warning that gives the numbers
//!   ([`recovery`]). It never starts silently emptier;
//! - writes are refused with [`StoreError::DiskFull`] before sled sees a full disk, because sled cannot go
//!   on after a failed write (its next flush never returns): after one, the store takes no more changes
//!   ([`StoreError::Failed`]) and the daemon must be restarted.
use std::path::PathBuf;
use thiserror::Error;

pub mod backup;
pub mod frame;
pub mod recovery;
mod sled_store;
#[cfg(test)]
mod tests;

pub use recovery::OpenReport;
pub use sled_store::{BACKUP_EVERY, OPEN_FLOOR_BYTES, SledStore, WRITE_FLOOR_BYTES};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("job store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("job store: {0}")]
    Io(String),
    #[error("job store: record {key} is unreadable: {message}")]
    Corrupt { key: u64, message: String },
    /// Refused before opening: sled writes while it opens, and a start on a full disk damaged the store.
    #[error(
        "not enough free space to open the job store: the file system holding {} has {} free and the store needs at least {} to open safely (it writes while opening). The store was not touched; free space there (old models, data files, logs) and start again",
        dir.display(), mb(*free), mb(*needed)
    )]
    NoSpaceToOpen { dir: PathBuf, free: u64, needed: u64 },
    /// Refused before writing; nothing changed.
    #[error("the disk is full: the job store in {} needs at least {} free to write, {} are left; free space there and try again", dir.display(), mb(*needed), mb(*free))]
    DiskFull { dir: PathBuf, free: u64, needed: u64 },
    /// sled failed a write earlier; it cannot continue after that, so the store takes no more changes.
    #[error("the job store takes no more changes after a failed write ({cause}); {}", if *disk_full { "free space on the state folder's disk and restart millwright" } else { "check the state folder's disk and restart millwright" })]
    Failed { cause: String, disk_full: bool },
}

/// Megabytes with one decimal, for messages.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// Ordered records keyed by a u64 (the job's submission number).
pub trait RecordStore: Send + Sync {
    fn put(&self, key: u64, value: &[u8]) -> Result<(), StoreError>;
    fn remove(&self, key: u64) -> Result<(), StoreError>;
    /// All records in key order.
    fn scan(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<(), StoreError>;
}
