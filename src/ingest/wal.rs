//! The write-ahead log of accepted readings: numbered segment files (`<seq>.wal`, a 8-byte header, then
//! frames), one writer thread, one sync per group of waiting batches.
//!
//! A frame is `payload length (u32 LE) | CRC-32 of the payload (u32 LE) | payload`; the payload is one
//! machine's batch: its id, its sensor names, then rows of a time and one `f64` per sensor (NaN = missing),
//! all little-endian with `u16` / `u32` counts. Frames are only appended; a frame that does not check out
//! at the end of the newest segment is a write that a power loss cut short — its batch was never
//! acknowledged — and is cut off when the log opens.
use super::error::IngestError;
use crate::ml::bundle::crc32;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

const MAGIC: &[u8; 8] = b"MWRWAL\x00\x01";
const FRAME_HEADER: usize = 8;
/// No batch comes near this; a length beyond it is damage, not a frame.
const MAX_FRAME: usize = 64 << 20;
/// Batches gathered into one write and one sync at most; more wait for the next round.
const MAX_GROUP: usize = 1024;

/// One machine's rows: `rows[i].1[j]` is sensor `sensors[j]` at time `rows[i].0` (seconds since the epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub machine: String,
    pub sensors: Vec<String>,
    pub rows: Vec<(f64, Vec<f64>)>,
}

/// What opening the log found and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    pub segments: usize,
    pub frames: usize,
    /// Bytes of an unfinished write cut off the newest segment.
    pub cut_bytes: u64,
}

/// Every batch in the log, oldest first, and where a damaged frame stopped the reading of a segment.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub batches: Vec<Batch>,
    pub damaged: Vec<String>,
}

struct Request {
    frame: Vec<u8>,
    done: oneshot::Sender<Result<(), IngestError>>,
}

/// The log, open for appending; dropping it finishes the waiting writes and stops the writer thread.
pub struct Wal {
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, cutting off an unfinished last write; a new segment starts once
    /// the current one holds `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Recovered), IngestError> {
        Self::open_reading(dir, segment_bytes, &mut |_| {})
    }

    /// [`Wal::open`], handing `each` every whole batch of the newest segment, which it reads anyway (the
    /// older ones are read with [`scan_older`]).
    pub fn open_reading(dir: &Path, segment_bytes: u64, each: &mut dyn FnMut(Batch)) -> Result<(Wal, Recovered), IngestError> {
        std::fs::create_dir_all(dir).map_err(|e| IngestError::open(dir, e))?;
        let segments = segment_paths(dir)?;
        let mut recovered = Recovered { segments: segments.len(), ..Recovered::default() };
        let current = match segments.last() {
            Some((seq, path)) => {
                let (frames, good) = scan_segment(path, each)?;
                let len = std::fs::metadata(path).map_err(|e| IngestError::open(path, e))?.len();
                recovered.frames = frames;
                if good == 0 {
                    // Its header never reached the disk: nothing in it was ever acknowledged.
                    recovered.cut_bytes = len;
                    std::fs::remove_file(path).map_err(|e| IngestError::open(path, e))?;
                    Segment::create(dir, *seq)?
                } else {
                    if good < len {
                        recovered.cut_bytes = len - good;
                        cut(path, good)?;
                    }
                    Segment::append_to(*seq, path.clone(), good)?
                }
            }
            None => Segment::create(dir, 1)?,
        };
        let (tx, rx) = mpsc::channel::<Request>();
        let mut writer = Writer { dir: dir.to_path_buf(), segment: current, segment_bytes };
        let handle =
            std::thread::Builder::new().name("readings-wal".into()).spawn(move || writer.run(rx)).map_err(|e| IngestError::open(dir, e))?;
        Ok((Wal { tx: Some(tx), writer: Some(handle) }, recovered))
    }

    /// Appends `batch`; resolves once it is on disk (synced), or with why it is not.
    pub async fn append(&self, batch: &Batch) -> Result<(), IngestError> {
        let rx = self.submit(batch)?;
        rx.await.unwrap_or(Err(IngestError::Closed))
    }

    /// [`Wal::append`] for a thread outside the async runtime.
    pub fn append_blocking(&self, batch: &Batch) -> Result<(), IngestError> {
        let rx = self.submit(batch)?;
        rx.blocking_recv().unwrap_or(Err(IngestError::Closed))
    }

    fn submit(&self, batch: &Batch) -> Result<oneshot::Receiver<Result<(), IngestError>>, IngestError> {
        let (done, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(IngestError::Closed)?;
        tx.send(Request { frame: frame(&encode(batch)), done }).map_err(|_| IngestError::Closed)?;
        Ok(rx)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

struct Segment {
    file: File,
    path: PathBuf,
    seq: u64,
    /// Bytes known to be whole frames (plus the header): where a failed write is cut back to.
    len: u64,
}

impl Segment {
    fn create(dir: &Path, seq: u64) -> Result<Segment, IngestError> {
        let path = dir.join(format!("{seq:012}.wal"));
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| IngestError::write(&path, &e))?;
        file.write_all(MAGIC).and_then(|_| file.sync_all()).map_err(|e| IngestError::write(&path, &e))?;
        // The new name must survive a power loss too, or the frames after it would vanish with it.
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| IngestError::write(dir, &e))?;
        Ok(Segment { file, path, seq, len: MAGIC.len() as u64 })
    }

    fn append_to(seq: u64, path: PathBuf, len: u64) -> Result<Segment, IngestError> {
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| IngestError::open(&path, e))?;
        Ok(Segment { file, path, seq, len })
    }
}

struct Writer {
    dir: PathBuf,
    segment: Segment,
    segment_bytes: u64,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let result = self.write_group(&group);
            for r in group {
                let _ = r.done.send(result.clone());
            }
        }
    }

    fn write_group(&mut self, group: &[Request]) -> Result<(), IngestError> {
        if self.segment.len >= self.segment_bytes {
            self.segment = Segment::create(&self.dir, self.segment.seq + 1)?;
        }
        let bytes: Vec<u8> = group.iter().flat_map(|r| r.frame.iter().copied()).collect();
        let s = &mut self.segment;
        match s.file.write_all(&bytes).and_then(|_| s.file.sync_data()) {
            Ok(()) => {
                s.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Whatever part of the group reached the file is cut off again, so the next group's frames
                // follow whole ones; if even that fails, the next open cuts it.
                let _ = s.file.set_len(s.len).and_then(|_| s.file.sync_data());
                Err(IngestError::write(&s.path, &e))
            }
        }
    }
}

pub(super) fn segment_paths(dir: &Path) -> Result<Vec<(u64, PathBuf)>, IngestError> {
    let entries = std::fs::read_dir(dir).map_err(|e| IngestError::open(dir, e))?;
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    out.sort();
    Ok(out)
}

fn cut(path: &Path, len: u64) -> Result<(), IngestError> {
    let f = OpenOptions::new().write(true).open(path).map_err(|e| IngestError::open(path, e))?;
    f.set_len(len).and_then(|_| f.sync_all()).map_err(|e| IngestError::open(path, e))
}

/// Reads every whole frame of a segment into `each`; returns the frames read and the length they end at.
pub(super) fn scan_segment(path: &Path, each: &mut dyn FnMut(Batch)) -> Result<(usize, u64), IngestError> {
    let file = File::open(path).map_err(|e| IngestError::open(path, e))?;
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 8];
    match r.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => {}
        // A segment whose header never reached the disk holds nothing.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok((0, 0)),
        Ok(()) => return Err(IngestError::open(path, "not a readings log segment (unknown header)")),
        Err(e) => return Err(IngestError::open(path, e)),
    }
    let (mut frames, mut good) = (0usize, MAGIC.len() as u64);
    let mut header = [0u8; FRAME_HEADER];
    loop {
        if r.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            break;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() || crc32(&payload) != crc {
            break;
        }
        let Some(batch) = decode(&payload) else { break };
        each(batch);
        frames += 1;
        good += (FRAME_HEADER + len) as u64;
    }
    Ok((frames, good))
}

/// Every whole batch of the segments before the newest one (what [`Wal::open_reading`] does not read).
pub fn scan_older(dir: &Path, each: &mut dyn FnMut(Batch)) -> Result<(), IngestError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let segments = segment_paths(dir)?;
    for (_, path) in segments.iter().take(segments.len().saturating_sub(1)) {
        scan_segment(path, each)?;
    }
    Ok(())
}

/// Every batch in the log in `dir`, oldest first. A damaged frame ends its segment's reading and is named.
pub fn read_all(dir: &Path) -> Result<Scan, IngestError> {
    let mut scan = Scan::default();
    if !dir.exists() {
        return Ok(scan);
    }
    for (_, path) in segment_paths(dir)? {
        let mut batches = Vec::new();
        let (_, good) = scan_segment(&path, &mut |b| batches.push(b))?;
        let len = std::fs::metadata(&path).map_err(|e| IngestError::open(&path, e))?.len();
        if good < len && good > 0 {
            // The file's name only: this is shown to readers who may not see the state folder's path.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            scan.damaged.push(format!("segment {name}: {} bytes after byte {good} are not whole frames", len - good));
        }
        scan.batches.extend(batches);
    }
    Ok(scan)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode(b: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + b.rows.len() * 8 * (1 + b.sensors.len()));
    put_str(&mut out, &b.machine);
    out.extend_from_slice(&(b.sensors.len() as u16).to_le_bytes());
    for s in &b.sensors {
        put_str(&mut out, s);
    }
    out.extend_from_slice(&(b.rows.len() as u32).to_le_bytes());
    for (ts, values) in &b.rows {
        out.extend_from_slice(&ts.to_le_bytes());
        for j in 0..b.sensors.len() {
            out.extend_from_slice(&values.get(j).copied().unwrap_or(f64::NAN).to_le_bytes());
        }
    }
    out
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn u32(&mut self) -> Option<usize> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn f64(&mut self) -> Option<f64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(f64::from_le_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u16()?;
        self.take(n).and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

fn decode(payload: &[u8]) -> Option<Batch> {
    let mut c = Cursor(payload);
    let machine = c.string()?;
    let n = c.u16()?;
    let sensors = (0..n).map(|_| c.string()).collect::<Option<Vec<_>>>()?;
    let rows = c.u32()?;
    // The CRC vouched for the bytes; the count must still match them before anything is reserved.
    if c.0.len() != rows.checked_mul(8 * (1 + n))? {
        return None;
    }
    let rows = (0..rows).map(|_| Some((c.f64()?, (0..n).map(|_| c.f64()).collect::<Option<Vec<_>>>()?))).collect::<Option<Vec<_>>>()?;
    Some(Batch { machine, sensors, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(machine: &str, first: f64, rows: usize) -> Batch {
        Batch {
            machine: machine.into(),
            sensors: vec!["temp".into(), "vib".into()],
            rows: (0..rows).map(|i| (first + i as f64, vec![20.0 + i as f64, if i % 3 == 0 { f64::NAN } else { 0.1 }])).collect(),
        }
    }

    fn same(a: &Batch, b: &Batch) -> bool {
        let bits =
            |x: &Batch| x.rows.iter().map(|(t, v)| (t.to_bits(), v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())).collect::<Vec<_>>();
        a.machine == b.machine && a.sensors == b.sensors && bits(a) == bits(b)
    }

    #[test]
    fn batches_come_back_as_written_across_segments_and_reopens() {
        let d = tempfile::tempdir().unwrap();
        let written: Vec<Batch> = (0..40).map(|i| batch(if i % 2 == 0 { "a" } else { "b" }, 1e9 + 10.0 * i as f64, 1 + i % 5)).collect();
        {
            let (wal, rec) = Wal::open(d.path(), 600).unwrap();
            assert_eq!(rec, Recovered::default());
            for b in &written[..25] {
                wal.append_blocking(b).unwrap();
            }
        }
        let (wal, rec) = Wal::open(d.path(), 600).unwrap();
        assert!(rec.segments > 2 && rec.cut_bytes == 0, "{rec:?}");
        for b in &written[25..] {
            wal.append_blocking(b).unwrap();
        }
        drop(wal);
        let scan = read_all(d.path()).unwrap();
        assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
        assert_eq!(scan.batches.len(), written.len());
        assert!(scan.batches.iter().zip(&written).all(|(a, b)| same(a, b)));
    }

    #[test]
    fn a_write_cut_anywhere_loses_only_itself_and_the_log_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let (first, second) = (batch("m", 1e9, 3), batch("m", 2e9, 4));
        {
            let (wal, _) = Wal::open(d.path(), 1 << 20).unwrap();
            wal.append_blocking(&first).unwrap();
            wal.append_blocking(&second).unwrap();
        }
        let path = segment_paths(d.path()).unwrap()[0].1.clone();
        let whole = std::fs::read(&path).unwrap();
        let first_end = MAGIC.len() + FRAME_HEADER + encode(&first).len();
        // Every length a power loss could leave while the second frame was being written, and a flipped byte.
        let mut damaged: Vec<Vec<u8>> = (first_end..whole.len()).map(|n| whole[..n].to_vec()).collect();
        let mut flipped = whole.clone();
        flipped[whole.len() - 3] ^= 0x40;
        damaged.push(flipped);
        for bytes in damaged {
            std::fs::write(&path, &bytes).unwrap();
            let (wal, rec) = Wal::open(d.path(), 1 << 20).unwrap();
            assert_eq!((rec.frames, rec.cut_bytes), (1, (bytes.len() - first_end) as u64), "at {} bytes", bytes.len());
            let third = batch("m", 3e9, 2);
            wal.append_blocking(&third).unwrap();
            drop(wal);
            let scan = read_all(d.path()).unwrap();
            assert!(scan.damaged.is_empty());
            assert_eq!(scan.batches.len(), 2, "at {} bytes", bytes.len());
            assert!(same(&scan.batches[0], &first) && same(&scan.batches[1], &third));
        }
    }

    #[test]
    fn a_new_segment_whose_header_never_reached_the_disk_is_started_again() {
        let d = tempfile::tempdir().unwrap();
        let first = batch("m", 1e9, 3);
        {
            let (wal, _) = Wal::open(d.path(), 1 << 20).unwrap();
            wal.append_blocking(&first).unwrap();
        }
        for partial in [&b""[..], &MAGIC[..5]] {
            let next = d.path().join(format!("{:012}.wal", 2));
            std::fs::write(&next, partial).unwrap();
            let (wal, rec) = Wal::open(d.path(), 1 << 20).unwrap();
            assert_eq!((rec.segments, rec.cut_bytes), (2, partial.len() as u64));
            let second = batch("m", 2e9, 1);
            wal.append_blocking(&second).unwrap();
            drop(wal);
            let scan = read_all(d.path()).unwrap();
            assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
            assert!(scan.batches.len() == 2 && same(&scan.batches[0], &first) && same(&scan.batches[1], &second));
            std::fs::remove_file(&next).unwrap();
        }
    }

    #[test]
    fn concurrent_callers_share_syncs_and_all_land() {
        let d = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(d.path(), 1 << 20).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..50 {
                        wal.append_blocking(&batch(&format!("m{t}"), 1e9 + i as f64, 1)).unwrap();
                    }
                });
            }
        });
        drop(wal);
        let scan = read_all(d.path()).unwrap();
        assert_eq!(scan.batches.len(), 400);
        for t in 0..8 {
            let times: Vec<f64> = scan.batches.iter().filter(|b| b.machine == format!("m{t}")).map(|b| b.rows[0].0).collect();
            assert_eq!(times, (0..50).map(|i| 1e9 + i as f64).collect::<Vec<_>>(), "one caller's batches stay in its order");
        }
    }

    #[test]
    fn a_failed_write_answers_with_the_reason_and_leaves_no_half_frame() {
        // /dev/full fails every write with "no space left", like a full disk at the worst moment.
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(d.path(), 1 << 20).unwrap();
        wal.append_blocking(&batch("m", 1e9, 1)).unwrap();
        drop(wal);
        let mut w = Writer {
            dir: d.path().to_path_buf(),
            segment: Segment { file: OpenOptions::new().append(true).open(full).unwrap(), path: full.into(), seq: 1, len: 0 },
            segment_bytes: 1 << 20,
        };
        let (done, _rx) = oneshot::channel();
        let e = w.write_group(&[Request { frame: frame(&encode(&batch("m", 2e9, 1))), done }]).unwrap_err();
        assert!(matches!(e, IngestError::Write { disk_full: true, .. }), "{e:?}");
        assert!(e.to_string().contains("the disk is full"), "{e}");
        assert_eq!(read_all(d.path()).unwrap().batches.len(), 1);
    }
}
