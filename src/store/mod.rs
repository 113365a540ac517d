//! Persistence behind a small trait: the job queue stores whole job records by submission number.
//! sled is the implementation the design asks for; it is opened with a small cache and flushed at every
//! job state change, because an abrupt stop must never lose a PENDING job.
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("job store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("job store: {0}")]
    Io(String),
    #[error("job store: record {key} is unreadable: {message}")]
    Corrupt { key: u64, message: String },
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

pub struct SledStore {
    db: sled::Db,
    jobs: sled::Tree,
}

/// sled keeps at most this much in its page cache: the Pi shares its memory.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl SledStore {
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let open_err = |e: sled::Error| StoreError::Open { path: dir.display().to_string(), message: e.to_string() };
        let db = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).flush_every_ms(Some(1000)).open().map_err(open_err)?;
        let jobs = db.open_tree("jobs").map_err(open_err)?;
        Ok(SledStore { db, jobs })
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl RecordStore for SledStore {
    fn put(&self, key: u64, value: &[u8]) -> Result<(), StoreError> {
        self.jobs.insert(key.to_be_bytes(), value).map(|_| ()).map_err(io)
    }

    fn remove(&self, key: u64) -> Result<(), StoreError> {
        self.jobs.remove(key.to_be_bytes()).map(|_| ()).map_err(io)
    }

    fn scan(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.jobs.iter() {
            let (k, v) = item.map_err(io)?;
            let key = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).map_err(|_| StoreError::Io(format!("a key of {} bytes in the jobs tree", k.len())))?;
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        crate::util::failpoint::hit("store.before_flush");
        self.db.flush().map_err(io)?;
        crate::util::failpoint::hit("store.after_flush");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_in_key_order() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(d.path()).unwrap();
            s.put(2, b"b").unwrap();
            s.put(1, b"a").unwrap();
            s.put(300, b"c").unwrap();
            s.remove(2).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(d.path()).unwrap();
        assert_eq!(s.scan().unwrap(), vec![(1, b"a".to_vec()), (300, b"c".to_vec())]);
    }
}
