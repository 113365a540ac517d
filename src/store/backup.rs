//! The job store's backup: every record, written next to the store as one file, atomically (temporary file,
//! fsync, rename, fsync of the folder), so a store that sled can no longer open, or that opens with records
//! missing, is rebuilt from it. Text, one record per line, so an operator can read it with `cut` and `jq`:
//!
//! ```text
//! millwright job store backup 1
//! revision 812 records 9 written 2026-01-05T08:14:00Z
//! <key> <revision> <crc32 hex> <the job as JSON>
//! ...
//! end <crc32 hex of every byte before this line>
//! ```
//!
//! Each record carries the checksum of its frame in the store, so a damaged line costs that record only; the
//! last line proves the file is whole.
use super::frame::{self, Framed};
use std::io::Write;
use std::path::{Path, PathBuf};

const FIRST_LINE: &str = "millwright job store backup 1";

/// What a backup file holds.
#[derive(Debug, Default, PartialEq)]
pub struct Backup {
    /// The store's write counter when the backup was taken.
    pub revision: u64,
    /// When it was written (RFC 3339, UTC).
    pub written: String,
    /// Records whose line is intact, in key order.
    pub records: Vec<(u64, Framed)>,
    /// Lines that failed their checksum or did not parse.
    pub damaged: usize,
    /// The end line is there, its checksum holds and the record count matches.
    pub complete: bool,
}

/// `state/jobs.sled` is backed up to `state/jobs.backup`.
pub fn path_for(store_dir: &Path) -> PathBuf {
    store_dir.with_extension("backup")
}

pub fn encode(revision: u64, written: &str, records: &[(u64, Framed)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("{FIRST_LINE}\nrevision {revision} records {} written {written}\n", records.len()).as_bytes());
    for (key, r) in records {
        if r.payload.contains(&b'\n') {
            return Err(format!("record {key} holds a line break; it cannot go into a line-based backup"));
        }
        out.extend_from_slice(format!("{key} {} {:08x} ", r.revision, frame::checksum(r.revision, &r.payload)).as_bytes());
        out.extend_from_slice(&r.payload);
        out.push(b'\n');
    }
    let crc = crate::ml::bundle::crc32(&out);
    out.extend_from_slice(format!("end {crc:08x}\n").as_bytes());
    Ok(out)
}

/// Reads what can be trusted; `None` when the file is not a backup at all (wrong or missing first line).
pub fn decode(bytes: &[u8]) -> Option<Backup> {
    let mut lines = bytes.split(|b| *b == b'\n');
    if lines.next()? != FIRST_LINE.as_bytes() {
        return None;
    }
    let header = String::from_utf8_lossy(lines.next()?).into_owned();
    let words: Vec<&str> = header.split(' ').collect();
    let (revision, declared, written) = match words.as_slice() {
        ["revision", rev, "records", n, "written", at] => (rev.parse().ok()?, n.parse::<usize>().ok()?, at.to_string()),
        _ => return None,
    };
    let mut out = Backup { revision, written, ..Backup::default() };
    let mut offset = FIRST_LINE.len() + 1 + header.len() + 1;
    for line in lines {
        if let Some(end) = line.strip_prefix(b"end ") {
            let stored = u32::from_str_radix(&String::from_utf8_lossy(end), 16).ok();
            out.complete = stored == Some(crate::ml::bundle::crc32(&bytes[..offset])) && out.records.len() == declared && out.damaged == 0;
            break;
        }
        offset += line.len() + 1;
        if line.is_empty() {
            continue;
        }
        match record(line) {
            Some(r) => out.records.push(r),
            None => out.damaged += 1,
        }
    }
    out.records.sort_by_key(|(k, _)| *k);
    out.records.dedup_by_key(|(k, _)| *k);
    Some(out)
}

fn record(line: &[u8]) -> Option<(u64, Framed)> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let key = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let revision = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let crc = u32::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let payload = parts.next()?.to_vec();
    (frame::checksum(revision, &payload) == crc).then_some((key, Framed { revision, payload }))
}

pub fn read(path: &Path) -> std::io::Result<Option<Backup>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Temporary file, fsync, rename, fsync of the folder: a reader (or a power cut) sees the old backup or the
/// new one. Its own crash point (not `fsx.before_rename`), so the power-pull counts of model commits hold.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = crate::util::fsx::temp_sibling(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        crate::util::failpoint::hit("store.backup_before_rename");
        std::fs::rename(&tmp, path)?;
        crate::util::fsx::sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: u64, revision: u64, json: &str) -> (u64, Framed) {
        (key, Framed { revision, payload: json.as_bytes().to_vec() })
    }

    #[test]
    fn round_trips_whole() {
        let records = vec![rec(1, 3, r#"{"id":"a"}"#), rec(7, 9, r#"{"id":"b","log":["x y z"]}"#)];
        let bytes = encode(9, "2026-01-05T08:14:00Z", &records).unwrap();
        let b = decode(&bytes).unwrap();
        assert_eq!(b, Backup { revision: 9, written: "2026-01-05T08:14:00Z".into(), records, damaged: 0, complete: true });
    }

    #[test]
    fn a_damaged_line_costs_only_its_record_and_a_cut_file_is_incomplete() {
        let records = vec![rec(1, 3, r#"{"id":"a"}"#), rec(2, 4, r#"{"id":"b"}"#), rec(3, 5, r#"{"id":"c"}"#)];
        let bytes = encode(5, "t", &records).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let bad = text.replace(r#"{"id":"b"}"#, r#"{"id":"B"}"#);
        let b = decode(bad.as_bytes()).unwrap();
        assert_eq!((b.records.len(), b.damaged, b.complete), (2, 1, false));
        let cut = decode(&bytes[..bytes.len() - 30]).unwrap();
        assert!(!cut.complete);
        assert_eq!(cut.records.len(), 2);
        assert!(decode(b"something else\n").is_none());
        assert!(decode(b"").is_none());
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = path_for(&d.path().join("jobs.sled"));
        assert_eq!(p.file_name().unwrap(), "jobs.backup");
        assert!(read(&p).unwrap().is_none());
        write(&p, &encode(1, "t", &[rec(1, 1, "{}")]).unwrap()).unwrap();
        write(&p, &encode(2, "t", &[rec(1, 2, "{}")]).unwrap()).unwrap();
        assert_eq!(read(&p).unwrap().unwrap().revision, 2);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file is left");
    }
}
