//! Opening the job store so that a full disk or a damaged file never costs a job silently.
//!
//! 1. Free space first: below [`OPEN_FLOOR_BYTES`] the store is not opened at all (sled writes while it
//!    opens; a start on a full disk left a 0-byte `snap.*.generating` that made every later open fail).
//! 2. If sled reports damage, the unfinished snapshots such a start leaves (`snap.*.generating` that fail
//!    sled's own length/checksum test) are removed and sled is tried again.
//! 3. If it still fails, or fails part-way through reading, the folder is renamed to
//!    `jobs.sled.damaged-<time>` (kept for a post-mortem; the log names it) and a fresh store is built from
//!    what could be read and the backup.
//! 4. What was read is compared with the store's own count and with the backup: when records are missing,
//!    damaged or older than the backup's copy, the backup's copy is put back (the newer revision wins) and
//!    a warning gives the counts before and after. Only an intact store (count matches, nothing damaged,
//!    not older than the backup) is taken as it is.
//! 5. The backup is refreshed at once, so it matches what the daemon starts with.
//!
//! An I/O error that is not damage (permissions, another daemon holding the store's lock) is reported and
//! nothing is touched.
use super::StoreError;
use super::backup::Backup;
use super::frame::Framed;
use super::sled_store::{Contents, Counters, Handles, OPEN_FLOOR_BYTES, SledStore, free_bytes, is_disk_full};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What opening the store found and did; the daemon logs it, tests read it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OpenReport {
    /// Records in the store once open.
    pub records: usize,
    /// Readable records found before any repair.
    pub found: usize,
    /// The store's own count of its records, when it had one.
    pub expected: Option<u64>,
    /// Records whose checksum failed, by key.
    pub damaged: Vec<u64>,
    /// Unfinished sled snapshots removed.
    pub removed_leftovers: Vec<PathBuf>,
    /// Where a store that did not open was moved, and why it did not open.
    pub moved_aside: Option<(PathBuf, String)>,
    /// The backup compared against: when it was written and how many records it held.
    pub backup: Option<(String, usize)>,
    /// Records put back from the backup (missing, damaged or older in the store).
    pub restored: usize,
    /// Damaged or unreadable records the backup had no copy of.
    pub lost: Vec<u64>,
}

impl OpenReport {
    /// True when the store was taken as it was found.
    pub fn clean(&self) -> bool {
        self.removed_leftovers.is_empty()
            && self.moved_aside.is_none()
            && self.restored == 0
            && self.lost.is_empty()
            && self.damaged.is_empty()
    }
}

/// Why sled did not open.
enum OpenFailure {
    NoSpace(String),
    /// Damage: sled found corrupt data, or panicked on it.
    Damaged(String),
    /// Anything else (permissions, a lock held by another process): not ours to repair.
    Other(String),
}

fn try_open(dir: &Path) -> Result<Handles, OpenFailure> {
    match std::panic::catch_unwind(|| SledStore::open_sled(dir)) {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(sled::Error::Io(e))) if is_disk_full(&e) => Err(OpenFailure::NoSpace(e.to_string())),
        Ok(Err(e @ (sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)))) => Err(OpenFailure::Damaged(e.to_string())),
        Ok(Err(e)) => Err(OpenFailure::Other(e.to_string())),
        Err(panic) => Err(OpenFailure::Damaged(format!("sled panicked while opening: {}", crate::util::panic_message(panic.as_ref())))),
    }
}

fn open_error(dir: &Path, message: String) -> StoreError {
    StoreError::Open { path: dir.display().to_string(), message }
}

fn check_space(dir: &Path) -> Result<(), StoreError> {
    match free_bytes(dir) {
        Some(free) if free < OPEN_FLOOR_BYTES => Err(StoreError::NoSpaceToOpen { dir: dir.to_path_buf(), free, needed: OPEN_FLOOR_BYTES }),
        _ => Ok(()),
    }
}

/// A snapshot sled never finished: too short for its trailer, or its checksum fails (sled's own test:
/// CRC-32 of the body in the last 4 bytes, little-endian, after an 8-byte length).
fn unfinished_snapshot(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    if bytes.len() <= 12 {
        return true;
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 12);
    let stored = u32::from_le_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]);
    crate::ml::bundle::crc32(body) != stored
}

/// Removes `snap.*.generating` files sled never finished; sled would read such a file as its newest snapshot.
fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("snap.") && name.ends_with(".generating") && unfinished_snapshot(&path) {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::warn!(file = %path.display(), "removed an unfinished sled snapshot (left by a start that failed, e.g. on a full disk)");
                    removed.push(path);
                }
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not remove an unfinished sled snapshot"),
            }
        }
    }
    removed
}

/// A backup write cut short by a crash leaves its temporary file (named after the process that wrote it).
fn remove_stale_backup_temps(dir: &Path) {
    let backup = super::backup::path_for(dir);
    let Some(name) = backup.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefix = format!(".{name}.tmp-");
    let Some(Ok(entries)) = backup.parent().map(std::fs::read_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `jobs.sled` → `jobs.sled.damaged-20260105T081400Z` (with a suffix if that exists already).
fn move_aside(dir: &Path) -> Result<PathBuf, StoreError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "jobs.sled".into());
    let mut target = dir.with_file_name(format!("{name}.damaged-{stamp}"));
    let mut n = 2;
    while target.exists() {
        target = dir.with_file_name(format!("{name}.damaged-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(dir, &target)
        .map_err(|e| open_error(dir, format!("it is damaged and could not be moved aside to {}: {e}", target.display())))?;
    Ok(target)
}

impl SledStore {
    /// Opens the store the way the daemon does (free space, leftovers, damage, the backup; see [`open`]); what
    /// recovery did is logged. Defined here, not beside sled: opening is recovery's job, and sled_store stays
    /// below it.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        open(dir).map(|(store, _)| store)
    }
}

/// Opens (and if need be repairs) the store at `dir`.
pub fn open(dir: &Path) -> Result<(SledStore, OpenReport), StoreError> {
    check_space(dir)?;
    remove_stale_backup_temps(dir);
    let mut report = OpenReport::default();
    let backup = super::backup::read(&super::backup::path_for(dir)).unwrap_or_else(|e| {
        tracing::warn!(backup = %super::backup::path_for(dir).display(), error = %e, "the job store's backup cannot be read");
        None
    });
    if let Some(b) = &backup {
        report.backup = Some((b.written.clone(), b.records.len()));
        if !b.complete {
            tracing::warn!(backup = %super::backup::path_for(dir).display(), readable = b.records.len(), damaged_lines = b.damaged, "the job store's backup is damaged or cut short; only its readable records count");
        }
    }
    let no_space = |why: String| {
        // The failed open may have left an unfinished snapshot already: take it away while it is known.
        remove_leftovers(dir);
        let free = free_bytes(dir).unwrap_or(0);
        tracing::error!(store = %dir.display(), error = %why, "the disk filled up while the job store opened");
        StoreError::NoSpaceToOpen { dir: dir.to_path_buf(), free, needed: free + OPEN_FLOOR_BYTES }
    };
    let mut salvaged = Contents::default();
    let mut store = match try_open(dir) {
        Ok(h) => Some(SledStore::from_handles(dir, h, Counters::default())),
        Err(OpenFailure::NoSpace(why)) => return Err(no_space(why)),
        Err(OpenFailure::Other(why)) => {
            return Err(open_error(
                dir,
                format!("{why}. Nothing was changed; check the folder's permissions and that no other millwright uses this state folder"),
            ));
        }
        Err(OpenFailure::Damaged(why)) => {
            report.removed_leftovers = remove_leftovers(dir);
            let retried = if report.removed_leftovers.is_empty() { Err(OpenFailure::Damaged(why)) } else { try_open(dir) };
            match retried {
                Ok(h) => Some(SledStore::from_handles(dir, h, Counters::default())),
                Err(OpenFailure::NoSpace(why)) => return Err(no_space(why)),
                Err(OpenFailure::Other(why)) => return Err(open_error(dir, why)),
                Err(OpenFailure::Damaged(why)) => {
                    report.moved_aside = Some((PathBuf::new(), why));
                    None
                }
            }
        }
    };
    if let Some(s) = store.take() {
        let contents = s.read_all();
        match &contents.read_error {
            // This sled is let go (it is healthy enough to close) before its folder moves.
            Some(why) => report.moved_aside = Some((PathBuf::new(), format!("reading it failed part-way: {why}"))),
            None => store = Some(s),
        }
        salvaged = contents;
    }
    let store = match store {
        Some(s) => s,
        None => {
            let why = report.moved_aside.as_ref().map(|(_, w)| w.clone()).unwrap_or_default();
            let aside = move_aside(dir)?;
            tracing::error!(
                store = %dir.display(), moved_to = %aside.display(), error = %why,
                "the job store does not open: it was moved aside (kept for inspection) and is rebuilt from {}",
                if backup.is_some() { "its backup and what could still be read" } else { "what could still be read; there is NO backup" }
            );
            report.moved_aside = Some((aside, why));
            match try_open(dir) {
                Ok(h) => SledStore::from_handles(dir, h, Counters::default()),
                Err(OpenFailure::NoSpace(why)) => return Err(no_space(why)),
                Err(OpenFailure::Damaged(why) | OpenFailure::Other(why)) => {
                    return Err(open_error(dir, format!("a fresh store could not be created either: {why}")));
                }
            }
        }
    };
    reconcile(&store, salvaged, backup.as_ref(), &mut report)?;
    store.sync()?;
    // The backup now matches what the daemon starts with.
    store.backup_now();
    Ok((store, report))
}

/// Decides what the store starts with and writes it; see the module docs, step 4.
fn reconcile(store: &SledStore, found: Contents, backup: Option<&Backup>, report: &mut OpenReport) -> Result<(), StoreError> {
    report.found = found.records.len();
    report.expected = found.meta.map(|m| m.records);
    report.damaged = found.damaged.keys().copied().collect();
    let backup_revision = backup.map_or(0, |b| b.revision);
    let backup_records = backup.map_or(0, |b| b.records.len());
    let mut why = Vec::new();
    if report.moved_aside.is_some() {
        why.push("it did not open".to_string());
    }
    if !found.damaged.is_empty() {
        why.push(format!("{} records failed their checksum", found.damaged.len()));
    }
    match found.meta {
        Some(m) if m.records != found.records.len() as u64 => why.push(format!("its own count says {} records", m.records)),
        Some(m) if m.revision < backup_revision => {
            why.push(format!("it is older than its backup (write {} < {backup_revision})", m.revision))
        }
        Some(_) => {}
        // No count: a new store, or one written before counts existed. Intact unless a backup says otherwise.
        None if backup_records > 0 => why.push("its own record count is gone".to_string()),
        None => {}
    }
    let intact = why.is_empty();
    let mut revision = found.meta.map_or(0, |m| m.revision).max(backup_revision);
    let mut chosen: BTreeMap<u64, Framed> = found.records.clone();
    if report.moved_aside.is_some() {
        // A fresh store: what could still be read of the old one goes in first.
        for (key, record) in &found.records {
            store.restore(*key, record)?;
        }
    }
    if !intact {
        for (key, copy) in backup.map(|b| b.records.as_slice()).unwrap_or_default() {
            let newer = chosen.get(key).is_none_or(|have| copy.revision > have.revision);
            if newer {
                store.restore(*key, copy)?;
                chosen.insert(*key, copy.clone());
                report.restored += 1;
            }
        }
        for key in found.damaged.keys() {
            if !chosen.contains_key(key) {
                store.drop_record(*key)?;
                report.lost.push(*key);
            }
        }
    }
    revision = revision.max(chosen.values().map(|r| r.revision).max().unwrap_or(0));
    store.set_counters(Counters { revision, records: chosen.len() as u64 })?;
    report.records = chosen.len();
    if !intact {
        warn(store.dir(), report, backup, &why.join(", "));
    }
    Ok(())
}

fn warn(dir: &Path, report: &OpenReport, backup: Option<&Backup>, why: &str) {
    match backup {
        Some(b) => tracing::warn!(
            store = %dir.display(), found = report.found, expected = ?report.expected, damaged = report.damaged.len(), backup_records = b.records.len(), restored = report.restored, records = report.records,
            "job store damaged ({why}): it held {} readable records; the backup of {} holds {}; {} restored from the backup; {} records now",
            report.found, b.written, b.records.len(), report.restored, report.records
        ),
        None => tracing::error!(
            store = %dir.display(), found = report.found, expected = ?report.expected, damaged = report.damaged.len(), records = report.records,
            "job store damaged ({why}) and there is no backup to restore from: it held {} readable records; starting with {}",
            report.found, report.records
        ),
    }
    if !report.lost.is_empty() {
        tracing::error!(store = %dir.display(), keys = ?report.lost, "{} damaged job records had no copy in the backup and are lost", report.lost.len());
    }
}

/// One line for the daemon's start log.
pub fn summary(report: &OpenReport) -> String {
    if report.clean() {
        return format!("{} job records", report.records);
    }
    let mut parts = vec![format!("{} job records", report.records)];
    if !report.removed_leftovers.is_empty() {
        parts.push(format!("{} unfinished snapshot(s) removed", report.removed_leftovers.len()));
    }
    if let Some((aside, _)) = &report.moved_aside {
        parts.push(format!("damaged store moved to {}", aside.display()));
    }
    if report.restored > 0 {
        parts.push(format!("{} restored from the backup", report.restored));
    }
    if !report.lost.is_empty() {
        parts.push(format!("{} lost", report.lost.len()));
    }
    parts.join("; ")
}
