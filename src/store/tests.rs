//! The store against real sled folders damaged the ways a plant damages them: an unfinished snapshot left by
//! a start on a full disk, a zeroed or cut `db`, a record sled lost, a record whose bytes changed, a store
//! that went back in time. Each case must end with every job the backup knew, and say so.
use super::frame::{self, Framed};
use super::recovery::{self, OpenReport};
use super::sled_store::META_KEY;
use super::*;
use std::path::Path;

fn job(n: u64) -> Vec<u8> {
    format!(r#"{{"id":"job-{n}","state":"PENDING"}}"#).into_bytes()
}

/// A store at `dir` with jobs 1..=n, flushed, backed up, closed.
fn seeded(dir: &Path, n: u64) {
    let s = SledStore::open(dir).unwrap();
    for k in 1..=n {
        s.put(k, &job(k)).unwrap();
    }
    s.flush().unwrap();
    s.write_backup().unwrap();
}

fn open(dir: &Path) -> (SledStore, OpenReport) {
    recovery::open(dir).unwrap()
}

fn keys(s: &SledStore) -> Vec<u64> {
    s.scan().unwrap().into_iter().map(|(k, _)| k).collect()
}

/// Writes straight into sled, past the store's framing and count: the damage tests' scalpel.
fn raw(dir: &Path, f: impl FnOnce(&sled::Tree)) {
    let h = SledStore::open_sled(dir).unwrap();
    f(&h.jobs);
    h.db.flush().unwrap();
}

#[test]
fn records_survive_reopen_in_key_order() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(d.path()).unwrap();
        s.put(2, b"{}").unwrap();
        s.put(1, b"{\"a\":1}").unwrap();
        s.put(300, b"{\"c\":3}").unwrap();
        s.remove(2).unwrap();
        s.flush().unwrap();
        assert_eq!(s.counts().0, 2);
    }
    let (s, report) = open(d.path());
    assert_eq!(s.scan().unwrap(), vec![(1, b"{\"a\":1}".to_vec()), (300, b"{\"c\":3}".to_vec())]);
    assert!(report.clean(), "{report:?}");
    assert_eq!((report.records, report.expected), (2, Some(2)));
}

#[test]
fn an_unfinished_snapshot_from_a_failed_start_is_removed_and_the_store_opens_whole() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    seeded(&dir, 4);
    // What a start on a full disk leaves: sled reads the newest snap.* file, and this one is empty.
    let leftover = dir.join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&leftover, b"").unwrap();
    assert!(SledStore::open_sled(&dir).is_err(), "sled alone does not open such a store (the reported fault)");
    let (s, report) = open(&dir);
    assert_eq!(keys(&s), [1, 2, 3, 4]);
    assert_eq!(report.removed_leftovers, vec![leftover.clone()]);
    assert!(report.moved_aside.is_none() && report.restored == 0, "{report:?}");
    assert!(!leftover.exists());
}

#[test]
fn a_zeroed_or_cut_db_is_rebuilt_from_the_backup_and_says_so() {
    for damage in ["zero", "empty", "half"] {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("jobs.sled");
        seeded(&dir, 9);
        let db = dir.join("db");
        let len = std::fs::metadata(&db).unwrap().len();
        match damage {
            "zero" => std::fs::write(&db, vec![0u8; len as usize]).unwrap(),
            "empty" => std::fs::write(&db, b"").unwrap(),
            _ => std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(len / 2).unwrap(),
        }
        let (s, report) = open(&dir);
        assert_eq!(keys(&s), (1..=9).collect::<Vec<_>>(), "{damage}: {report:?}");
        assert!(!report.clean(), "{damage}: a rebuilt store must not look clean: {report:?}");
        assert_eq!(report.backup.as_ref().map(|b| b.1), Some(9));
        assert!(report.restored > 0, "{damage}: {report:?}");
        if let Some((aside, _)) = &report.moved_aside {
            assert!(aside.exists(), "{damage}: the damaged store is kept at {}", aside.display());
        }
        // And the repaired store is itself intact on the next start.
        drop(s);
        let (s, again) = open(&dir);
        assert_eq!(keys(&s).len(), 9);
        assert!(again.clean(), "{damage}: {again:?}");
    }
}

#[test]
fn a_record_sled_lost_is_noticed_by_the_count_and_restored() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    seeded(&dir, 5);
    raw(&dir, |t| {
        t.remove(3u64.to_be_bytes()).unwrap();
    });
    let (s, report) = open(&dir);
    assert_eq!(keys(&s), [1, 2, 3, 4, 5]);
    assert_eq!((report.found, report.expected, report.restored, report.records), (4, Some(5), 1, 5));
}

#[test]
fn a_damaged_record_comes_back_from_the_backup_or_is_reported_lost() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    seeded(&dir, 3);
    {
        // Job 4 is newer than the backup, so only the store has it.
        let s = SledStore::open(&dir).unwrap();
        s.put(4, &job(4)).unwrap();
        s.flush().unwrap();
    }
    raw(&dir, |t| {
        for k in [2u64, 4] {
            let mut v = t.get(k.to_be_bytes()).unwrap().unwrap().to_vec();
            let last = v.len() - 3;
            v[last] ^= 0x20;
            t.insert(k.to_be_bytes(), v).unwrap();
        }
    });
    let (s, report) = open(&dir);
    assert_eq!(report.damaged, [2, 4]);
    assert_eq!(report.lost, [4]);
    assert_eq!(keys(&s), [1, 2, 3]);
    assert_eq!(s.scan().unwrap()[1].1, job(2), "the backup's copy replaced the damaged one");
}

#[test]
fn a_store_that_went_back_in_time_takes_the_backups_newer_copies() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    let (old_frame, old_meta) = {
        let s = SledStore::open(&dir).unwrap();
        s.put(1, &job(1)).unwrap();
        s.put(2, &job(2)).unwrap();
        s.flush().unwrap();
        let (records, revision) = s.counts();
        let done = br#"{"id":"job-1","state":"SUCCESS"}"#;
        s.put(1, done).unwrap();
        s.flush().unwrap();
        s.write_backup().unwrap();
        (frame::encode(revision - 1, &job(1)), frame::encode(revision, &records.to_le_bytes()))
    };
    // sled recovered an older state: job 1 PENDING again, the count from back then.
    raw(&dir, |t| {
        t.insert(1u64.to_be_bytes(), old_frame).unwrap();
        t.insert(META_KEY, old_meta).unwrap();
    });
    let (s, report) = open(&dir);
    assert_eq!(report.restored, 1, "{report:?}");
    assert_eq!(s.scan().unwrap()[0].1, br#"{"id":"job-1","state":"SUCCESS"}"#.to_vec());
}

#[test]
fn records_deleted_after_the_backup_stay_deleted() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    seeded(&dir, 3);
    {
        let s = SledStore::open(&dir).unwrap();
        s.remove(2).unwrap();
        s.flush().unwrap();
        // Opening wrote a fresh backup; put the old one (with job 2) back, as if the daemon died before
        // its next refresh.
    }
    let b = backup::path_for(&dir);
    let old = backup::encode(3, "t", &(1..=3).map(|k| (k, Framed { revision: k, payload: job(k) })).collect::<Vec<_>>()).unwrap();
    std::fs::write(&b, old).unwrap();
    let (s, report) = open(&dir);
    assert_eq!(keys(&s), [1, 3]);
    assert!(report.clean(), "{report:?}");
}

#[test]
fn a_store_written_before_checksums_opens_as_it_is() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    raw(&dir, |t| {
        t.insert(1u64.to_be_bytes(), job(1)).unwrap();
        t.insert(2u64.to_be_bytes(), job(2)).unwrap();
    });
    let (s, report) = open(&dir);
    assert!(report.clean(), "{report:?}");
    assert_eq!(s.scan().unwrap(), vec![(1, job(1)), (2, job(2))]);
    assert_eq!(s.counts().0, 2, "the count is set from what was found");
}

#[test]
fn a_store_another_process_holds_is_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    seeded(&dir, 2);
    let held = SledStore::open_sled(&dir).unwrap();
    let err = recovery::open(&dir).err().expect("a locked store must not open");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("no other millwright"), "{err}");
    drop(held);
    let parent: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!parent.iter().any(|n| n.contains("damaged")), "{parent:?}");
    assert_eq!(keys(&open(&dir).0), [1, 2]);
}

#[test]
fn writes_below_the_free_space_floor_are_refused_before_sled_sees_them() {
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(d.path()).unwrap();
    s.put(1, &job(1)).unwrap();
    s.set_write_floor(u64::MAX);
    let err = s.put(2, &job(2)).unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().starts_with("the disk is full"), "{err}");
    assert!(s.remove(1).is_err());
    s.set_write_floor(0);
    assert_eq!(keys(&s), [1]);
    s.put(2, &job(2)).unwrap();
    assert_eq!(s.counts().0, 2);
}

#[test]
fn the_backup_follows_state_changes_not_progress() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("jobs.sled");
    let s = SledStore::open(&dir).unwrap();
    let read = || backup::read(&backup::path_for(&dir)).unwrap().unwrap();
    assert_eq!(read().records.len(), 0, "opening writes a backup at once");
    s.put(1, &job(1)).unwrap();
    s.backup_if_due(std::time::Duration::ZERO);
    assert_eq!(read().records.len(), 0, "a write that was not flushed is progress: no backup for it");
    s.flush().unwrap();
    s.backup_if_due(std::time::Duration::from_secs(3600));
    assert_eq!(read().records.len(), 0, "at most one backup per interval (opening wrote one)");
    s.put(2, &job(2)).unwrap();
    s.flush().unwrap();
    s.backup_if_due(std::time::Duration::ZERO);
    let b = read();
    assert_eq!((b.records.len(), b.complete, b.revision), (2, true, s.counts().1));
    std::fs::remove_file(backup::path_for(&dir)).unwrap();
    s.backup_if_due(std::time::Duration::ZERO);
    assert!(!backup::path_for(&dir).exists(), "nothing changed: no new backup");
}
