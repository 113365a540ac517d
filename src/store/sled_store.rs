//! The sled-backed [`RecordStore`]: framed records, the store's own record count, the free-space floor in
//! front of every write, the refusal to touch sled again after it failed a write, and the backup.
use super::backup;
use super::frame::{self, Framed};
use super::{RecordStore, StoreError};
use crate::util::sync::lock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// sled keeps at most this much in its page cache: the Pi shares its memory.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Free space the store wants before it opens: sled may write a snapshot and start a 512 KB log segment
/// while opening, recovery rewrites records, and the backup is written right after.
pub const OPEN_FLOOR_BYTES: u64 = 8 * 1024 * 1024;
/// Free space below which writes are refused before sled sees them (a log segment is 512 KB).
pub const WRITE_FLOOR_BYTES: u64 = 2 * 1024 * 1024;
/// The backup is refreshed at most this often, and only after a state change (a flush).
pub const BACKUP_EVERY: Duration = Duration::from_secs(5);

/// The store's own record count lives under this key, in the same tree as the records (so one atomic batch
/// changes both); it cannot collide with a record key, which is always 8 bytes.
pub(super) const META_KEY: &[u8] = b"\xffmeta";

pub(super) struct Handles {
    pub db: sled::Db,
    pub jobs: sled::Tree,
}

/// The write counter (every put and remove bumps it) and the number of records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counters {
    pub revision: u64,
    pub records: u64,
}

/// Everything sled returned when the store was read whole.
#[derive(Debug, Default)]
pub(super) struct Contents {
    pub records: BTreeMap<u64, Framed>,
    pub damaged: BTreeMap<u64, String>,
    pub meta: Option<Counters>,
    /// sled failed part-way through (a damaged page): what came before is in `records`.
    pub read_error: Option<String>,
}

struct BackupClock {
    dirty: bool,
    last: Option<Instant>,
    /// The last failure, logged once until the backup works again.
    failing: Option<String>,
}

pub struct SledStore {
    dir: PathBuf,
    /// `None` only once a failed sled has been let go (see `Drop`).
    handles: Option<Handles>,
    /// Held for each write and while the backup reads the records, so a backup is one consistent state.
    writes: Mutex<Counters>,
    failed: OnceLock<(String, bool)>,
    write_floor: AtomicU64,
    clock: Mutex<BackupClock>,
    /// One backup write at a time (the background thread and the one at stop share a temporary file name).
    writer: Mutex<()>,
}

/// Free bytes for an unprivileged writer on the file system holding `path` (or its nearest existing parent).
pub(super) fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    fs2::available_space(existing).ok()
}

pub(super) fn is_disk_full(e: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT.
    matches!(e.raw_os_error(), Some(28) | Some(122))
        || matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

impl SledStore {
    pub(super) fn open_sled(dir: &Path) -> Result<Handles, sled::Error> {
        let db = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).flush_every_ms(Some(1000)).open()?;
        let jobs = db.open_tree("jobs")?;
        Ok(Handles { db, jobs })
    }

    pub(super) fn from_handles(dir: &Path, handles: Handles, counters: Counters) -> SledStore {
        SledStore {
            dir: dir.to_path_buf(),
            handles: Some(handles),
            writes: Mutex::new(counters),
            failed: OnceLock::new(),
            write_floor: AtomicU64::new(WRITE_FLOOR_BYTES),
            clock: Mutex::new(BackupClock { dirty: false, last: None, failing: None }),
            writer: Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backup_path(&self) -> PathBuf {
        backup::path_for(&self.dir)
    }

    /// Number of records and the write counter, as the store counts them.
    pub fn counts(&self) -> (u64, u64) {
        let c = *lock(&self.writes);
        (c.records, c.revision)
    }

    /// Tests simulate a nearly full disk by raising the floor.
    #[doc(hidden)]
    pub fn set_write_floor(&self, bytes: u64) {
        self.write_floor.store(bytes, Ordering::Relaxed);
    }

    fn handles(&self) -> Result<&Handles, StoreError> {
        if let Some((cause, disk_full)) = self.failed.get() {
            return Err(StoreError::Failed { cause: cause.clone(), disk_full: *disk_full });
        }
        self.handles.as_ref().ok_or_else(|| StoreError::Io("the store is closed".into()))
    }

    /// sled cannot be trusted after a failed write (its next flush waits forever): remember, say it once.
    fn fail(&self, e: sled::Error) -> StoreError {
        let disk_full = matches!(&e, sled::Error::Io(io) if is_disk_full(io));
        let cause = e.to_string();
        if self.failed.set((cause.clone(), disk_full)).is_ok() {
            tracing::error!(
                store = %self.dir.display(), error = %cause,
                "the job store failed a write and takes no more changes until the daemon restarts; jobs stay visible but new ones are refused. {}",
                if disk_full { "Free space on this disk, then restart millwright" } else { "Check this disk, then restart millwright" }
            );
        }
        let (cause, disk_full) = self.failed.get().cloned().unwrap_or((cause, disk_full));
        StoreError::Failed { cause, disk_full }
    }

    fn ensure_space(&self) -> Result<(), StoreError> {
        let needed = self.write_floor.load(Ordering::Relaxed);
        match free_bytes(&self.dir) {
            Some(free) if free < needed => Err(StoreError::DiskFull { dir: self.dir.clone(), free, needed }),
            _ => Ok(()),
        }
    }

    /// Writes one framed record and the new count in one atomic batch.
    fn write(&self, key: u64, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let h = self.handles()?;
        self.ensure_space()?;
        let mut c = lock(&self.writes);
        let k = key.to_be_bytes();
        let exists = h.jobs.contains_key(k).map_err(|e| self.fail(e))?;
        let records = match (&value, exists) {
            (Some(_), false) => c.records + 1,
            (None, true) => c.records.saturating_sub(1),
            (None, false) => return Ok(()),
            (Some(_), true) => c.records,
        };
        let revision = c.revision + 1;
        let mut batch = sled::Batch::default();
        match value {
            Some(v) => batch.insert(&k, frame::encode(revision, &v)),
            None => batch.remove(&k),
        }
        batch.insert(META_KEY, frame::encode(revision, &records.to_le_bytes()));
        h.jobs.apply_batch(batch).map_err(|e| self.fail(e))?;
        *c = Counters { revision, records };
        Ok(())
    }

    /// Puts a record as it came from the backup (its own revision), during recovery.
    pub(super) fn restore(&self, key: u64, record: &Framed) -> Result<(), StoreError> {
        let h = self.handles()?;
        h.jobs.insert(key.to_be_bytes(), frame::encode(record.revision, &record.payload)).map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub(super) fn drop_record(&self, key: u64) -> Result<(), StoreError> {
        let h = self.handles()?;
        h.jobs.remove(key.to_be_bytes()).map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Sets the counters after recovery and writes them.
    pub(super) fn set_counters(&self, counters: Counters) -> Result<(), StoreError> {
        let h = self.handles()?;
        let mut c = lock(&self.writes);
        h.jobs.insert(META_KEY, frame::encode(counters.revision, &counters.records.to_le_bytes())).map_err(|e| self.fail(e))?;
        *c = counters;
        Ok(())
    }

    /// Every record as sled holds it, checked; never fails (what sled could not read is in `read_error`).
    pub(super) fn read_all(&self) -> Contents {
        let mut out = Contents::default();
        let Ok(h) = self.handles() else { return out };
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for item in h.jobs.iter() {
                let (k, v) = match item {
                    Ok(kv) => kv,
                    Err(e) => {
                        out.read_error = Some(e.to_string());
                        return;
                    }
                };
                if k.as_ref() == META_KEY {
                    out.meta = frame::decode(&v).ok().and_then(|f| {
                        let count = <[u8; 8]>::try_from(f.payload.as_slice()).ok()?;
                        Some(Counters { revision: f.revision, records: u64::from_le_bytes(count) })
                    });
                    continue;
                }
                let Ok(key) = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes) else {
                    out.read_error.get_or_insert_with(|| format!("a key of {} bytes in the jobs tree", k.len()));
                    continue;
                };
                match frame::decode(&v) {
                    Ok(f) => {
                        out.records.insert(key, f);
                    }
                    Err(why) => {
                        out.damaged.insert(key, why);
                    }
                }
            }
        }));
        if let Err(panic) = read {
            out.read_error = Some(format!("sled panicked while reading: {}", crate::util::panic_message(panic.as_ref())));
        }
        out
    }

    /// Makes everything written so far durable, without the crash points (which count the queue's flushes).
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        self.handles()?.db.flush().map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Writes the backup now: one consistent state of every record, made durable in the store first (so the
    /// backup is never ahead of what the store holds on disk), then written atomically next to it.
    pub fn write_backup(&self) -> Result<(), StoreError> {
        let h = self.handles()?;
        let (counters, records) = {
            let c = lock(&self.writes);
            let mut records = Vec::new();
            for item in h.jobs.iter() {
                let (k, v) = item.map_err(|e| StoreError::Io(e.to_string()))?;
                let Ok(key) = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes) else { continue };
                if let Ok(f) = frame::decode(&v) {
                    records.push((key, f));
                }
            }
            (*c, records)
        };
        self.sync()?;
        let written = crate::util::time::format_timestamp(crate::util::time::now_secs());
        let bytes = backup::encode(counters.revision, &written, &records).map_err(StoreError::Io)?;
        let path = self.backup_path();
        let needed = self.write_floor.load(Ordering::Relaxed) + bytes.len() as u64;
        if let Some(free) = free_bytes(&self.dir)
            && free < needed
        {
            return Err(StoreError::DiskFull { dir: self.dir.clone(), free, needed });
        }
        backup::write(&path, &bytes).map_err(|e| StoreError::Io(format!("writing the backup {}: {e}", path.display())))
    }

    /// Refreshes the backup when a state change happened since the last one and `every` has passed.
    /// Failures are logged once (and their end), never returned: the backup is a second line of defence.
    pub fn backup_if_due(&self, every: Duration) {
        let due = {
            let c = lock(&self.clock);
            c.dirty && c.last.is_none_or(|t| t.elapsed() >= every)
        };
        if due {
            self.backup_now();
        }
    }

    /// Writes the backup and logs how that went (once per kind of failure).
    pub fn backup_now(&self) {
        let _one_at_a_time = lock(&self.writer);
        // Cleared before reading the records: a state change while this backup is written makes the next one due.
        lock(&self.clock).dirty = false;
        let result = self.write_backup();
        let mut c = lock(&self.clock);
        c.last = Some(Instant::now());
        match result {
            Ok(()) => {
                if c.failing.take().is_some() {
                    tracing::info!(backup = %self.backup_path().display(), "the job store's backup is written again");
                }
            }
            Err(e) => {
                c.dirty = true;
                let text = e.to_string();
                if c.failing.as_deref() != Some(text.as_str()) {
                    tracing::warn!(backup = %self.backup_path().display(), error = %text, "could not refresh the job store's backup; the previous one is kept");
                    c.failing = Some(text);
                }
            }
        }
    }

    /// The thread that keeps the backup fresh (every [`BACKUP_EVERY`] at most, after state changes) until
    /// `stop` says so.
    pub fn spawn_backups(self: &Arc<Self>, stop: impl Fn() -> bool + Send + 'static) -> std::io::Result<std::thread::JoinHandle<()>> {
        let store = Arc::downgrade(self);
        std::thread::Builder::new().name("millwright-backup".into()).spawn(move || {
            while !stop() {
                std::thread::sleep(Duration::from_millis(250));
                let Some(store) = store.upgrade() else { break };
                store.backup_if_due(BACKUP_EVERY);
            }
        })
    }
}

impl RecordStore for SledStore {
    fn put(&self, key: u64, value: &[u8]) -> Result<(), StoreError> {
        self.write(key, Some(value.to_vec()))
    }

    fn remove(&self, key: u64) -> Result<(), StoreError> {
        self.write(key, None)
    }

    fn scan(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let h = self.handles()?;
        let mut out = Vec::new();
        for item in h.jobs.iter() {
            let (k, v) = item.map_err(|e| StoreError::Io(e.to_string()))?;
            if k.as_ref() == META_KEY {
                continue;
            }
            let key = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Io(format!("a key of {} bytes in the jobs tree", k.len())))?;
            let f = frame::decode(&v).map_err(|message| StoreError::Corrupt { key, message })?;
            out.push((key, f.payload));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let h = self.handles()?;
        crate::util::failpoint::hit("store.before_flush");
        h.db.flush().map_err(|e| self.fail(e))?;
        crate::util::failpoint::hit("store.after_flush");
        lock(&self.clock).dirty = true;
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Dropping a sled that failed a write flushes it, and that flush never returns: let it go instead,
        // so the daemon still exits (the process ends it anyway).
        if self.failed.get().is_some()
            && let Some(h) = self.handles.take()
        {
            std::mem::forget(h);
        }
    }
}
