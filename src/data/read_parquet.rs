//! Parquet through the record API (no arrow): the legacy layout is a few flat numeric columns.
use super::caps::Budget;
use super::error::DataError;
use super::frame::{Frame, RawColumn};
use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::Field;
use std::path::Path;

mod delta;

/// Seconds per stored unit for each leaf column that is a timestamp (pandas writes nanoseconds as plain INT64).
pub(super) fn timestamp_scales<R: ChunkReader + 'static>(reader: &SerializedFileReader<R>) -> Vec<Option<f64>> {
    let schema = reader.metadata().file_metadata().schema_descr();
    (0..schema.num_columns())
        .map(|i| match schema.column(i).logical_type_ref() {
            Some(LogicalType::Timestamp(t)) => Some(match t.unit {
                TimeUnit::MILLIS => 1e-3,
                TimeUnit::MICROS => 1e-6,
                TimeUnit::NANOS => 1e-9,
            }),
            _ => None,
        })
        .collect()
}

/// A Parquet file whose readers fail at its end instead of reading nothing. The parquet crate skips unknown
/// page-header fields with `io::copy`, which stops quietly at the end of the data: a damaged header claiming a
/// list of millions of entries was "skipped" entry by entry past the end — 3.5 million read(2) calls and 17 s
/// for a 2.6 KB file found by fuzzing, minutes for a bigger claimed count, on the open listing route too.
/// Failing at the end turns that into an immediate format error.
///
/// It also bounds what a page may claim to decompress to (see [`check_page_claim`]): the parquet crate zero-fills
/// a buffer of the size a page header claims before decompressing into it.
pub(super) struct StrictFile {
    file: std::fs::File,
    /// Where the crate last started reading a page header ([`NO_HEADER`] when none is pending).
    header_at: std::sync::atomic::AtomicU64,
}

const NO_HEADER: u64 = u64::MAX;

impl StrictFile {
    /// Opens `path` as a Parquet file: its footer read and checked.
    pub(super) fn open(path: &Path) -> Result<SerializedFileReader<StrictFile>, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let strict = StrictFile { file, header_at: std::sync::atomic::AtomicU64::new(NO_HEADER) };
        let unreadable = |e: String| DataError::Format {
            file: path.to_path_buf(),
            message: format!("not a readable Parquet file (truncated, damaged, or another format renamed): {e}"),
        };
        if let Some(footer) = strict.footer() {
            thrift::check_footer(&footer).map_err(unreadable)?;
        }
        SerializedFileReader::new(strict).map_err(|e| unreadable(e.to_string()))
    }

    /// The footer's bytes when the file's last 8 bytes frame one that fits in the file; otherwise the crate
    /// reports what is wrong.
    fn footer(&self) -> Option<bytes::Bytes> {
        let len = parquet::file::reader::Length::len(&self.file);
        let tail = self.file.get_bytes(len.checked_sub(8)?, 8).ok()?;
        if &tail[4..] != b"PAR1" {
            return None;
        }
        let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        let start = len.checked_sub(8)?.checked_sub(footer_len)?;
        self.file.get_bytes(start, usize::try_from(footer_len).ok()?).ok()
    }
}

impl parquet::file::reader::Length for StrictFile {
    fn len(&self) -> u64 {
        self.file.len()
    }
}

impl ChunkReader for StrictFile {
    type T = StrictRead<<std::fs::File as ChunkReader>::T>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // The page reader reads a page header from here, then asks for the page's bytes right after it.
        self.header_at.store(start, std::sync::atomic::Ordering::Relaxed);
        self.file.get_read(start).map(StrictRead)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        // The file's reader reserves `length` before reading: a damaged length past the end is refused first.
        if start.saturating_add(length as u64) > parquet::file::reader::Length::len(&self.file) {
            return Err(parquet::errors::ParquetError::EOF(format!("{length} bytes at {start} run past the end of the file")));
        }
        let header_at = self.header_at.swap(NO_HEADER, std::sync::atomic::Ordering::Relaxed);
        if header_at < start && start - header_at <= MAX_HEADER_BYTES {
            let header = self.file.get_bytes(header_at, usize::try_from(start - header_at).unwrap_or(0))?;
            check_page_claim(&header, length).map_err(parquet::errors::ParquetError::General)?;
        }
        self.file.get_bytes(start, length)
    }
}

/// Longer than any real page header (statistics included); a longer gap is not a header and is not checked.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// The most a page may decompress to: real writers cut pages at about 1 MB.
const MAX_PAGE_BYTES: i64 = 64 << 20;
/// How much bigger than its compressed bytes a page may be, above the first MB. Pages are decompressed one per
/// column at a time, so this bounds a file's peak by its columns: at 4096 a fuzzed file of many small columns
/// still reached 1.3 GB. Real pages above 1 MB compress far less than this.
const MAX_RATIO: i64 = 64;

/// Refuses a page whose header claims to decompress to more than [`MAX_PAGE_BYTES`], or to more than
/// [`MAX_RATIO`] times its `compressed` bytes plus 1 MB: the parquet crate zero-fills a buffer of the claimed
/// size before decompressing into it (fuzzing reached 1.4 GB with a few KB). A header this reader cannot
/// parse is refused too: the crate reads some headers no writer produces (a 23-byte varint, found by fuzzing,
/// became a size of 1.8 GB that this reader could not see), and every real header parses here.
fn check_page_claim(header: &[u8], compressed: usize) -> Result<(), String> {
    let Some(claimed) = thrift::uncompressed_page_size(header) else {
        return Err("a page header that does not parse (damaged Parquet data)".into());
    };
    let compressed = i64::try_from(compressed).unwrap_or(i64::MAX);
    let allowed = MAX_PAGE_BYTES.min(compressed.saturating_mul(MAX_RATIO).saturating_add(1 << 20));
    if claimed > allowed {
        return Err(format!("a page claims to decompress to {claimed} bytes from {compressed} (damaged Parquet data)"));
    }
    Ok(())
}

/// Just enough of Thrift's compact protocol to find field 2 (`uncompressed_page_size`) of a Parquet page header.
mod thrift {
    /// Thrift's compact protocol and Parquet's delta encodings share the ULEB128 varint and its zigzag form.
    pub(super) struct Reader<'a> {
        buf: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(buf: &'a [u8]) -> Self {
            Reader { buf }
        }

        /// The bytes not read yet.
        pub(super) fn rest(&self) -> &'a [u8] {
            self.buf
        }

        pub(super) fn byte(&mut self) -> Option<u8> {
            let (b, rest) = self.buf.split_first()?;
            self.buf = rest;
            Some(*b)
        }

        pub(super) fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..70).step_by(7) {
                let b = self.byte()?;
                v |= u64::from(b & 0x7f).checked_shl(shift)?;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }

        pub(super) fn zigzag(&mut self) -> Option<i64> {
            let v = self.varint()?;
            Some((v >> 1) as i64 ^ -((v & 1) as i64))
        }

        pub(super) fn skip_bytes(&mut self, n: u64) -> Option<()> {
            let n = usize::try_from(n).ok()?;
            self.buf = self.buf.get(n..)?;
            Some(())
        }

        /// Skips one value of compact type `ty`; every value takes at least one byte, so a forged size ends
        /// with the buffer.
        fn skip(&mut self, ty: u8, depth: u8) -> Option<()> {
            let depth = depth.checked_sub(1)?;
            match ty {
                1 | 2 => Some(()),
                3 => self.byte().map(|_| ()),
                4..=6 => self.varint().map(|_| ()),
                7 => self.skip_bytes(8),
                8 => {
                    let n = self.varint()?;
                    self.skip_bytes(n)
                }
                9 | 10 => {
                    let (n, elem) = self.list_header()?;
                    for _ in 0..n {
                        self.skip_element(elem, depth)?;
                    }
                    Some(())
                }
                11 => {
                    let n = self.varint()?;
                    if n > 0 {
                        let kv = self.byte()?;
                        for _ in 0..n {
                            self.skip_element(kv >> 4, depth)?;
                            self.skip_element(kv & 0x0f, depth)?;
                        }
                    }
                    Some(())
                }
                12 => self.skip_struct(depth, |_, _, _| None),
                _ => None,
            }
        }

        /// A list or set header: its claimed length (in the high nibble, or a varint after it when that is 15)
        /// and its elements' type.
        fn list_header(&mut self) -> Option<(u64, u8)> {
            let head = self.byte()?;
            let n = if head >> 4 == 15 { self.varint()? } else { u64::from(head >> 4) };
            Some((n, head & 0x0f))
        }

        /// A struct field's id and compact type, `Some(None)` at the struct's end. A full field id is an i16 to
        /// the crate: a longer varint is truncated there, so it is here (65541 is field 5; found by fuzzing).
        fn field_header(&mut self, last: i64) -> Option<Option<(i64, u8)>> {
            let head = self.byte()?;
            if head == 0 {
                return Some(None);
            }
            let id = if head >> 4 == 0 { i64::from(self.zigzag()? as i16) } else { last + i64::from(head >> 4) };
            Some(Some((id, head & 0x0f)))
        }

        /// Skips one element of a list, set or map. Booleans there take a byte each (as struct fields they live
        /// in the field header), so every element consumes at least a byte and a forged count ends with the
        /// buffer: a map of booleans claiming 2^64 entries once spun here for good (found by fuzzing).
        fn skip_element(&mut self, ty: u8, depth: u8) -> Option<()> {
            if matches!(ty, 1 | 2) { self.byte().map(|_| ()) } else { self.skip(ty, depth) }
        }

        /// Walks a struct's fields; `pick` may consume a field it wants (returning Some), else it is skipped.
        fn skip_struct(&mut self, depth: u8, mut pick: impl FnMut(&mut Self, i64, u8) -> Option<()>) -> Option<()> {
            let mut last = 0i64;
            loop {
                let Some((id, ty)) = self.field_header(last)? else { return Some(()) };
                last = id;
                if pick(self, id, ty).is_none() {
                    self.skip(ty, depth)?;
                }
            }
        }
    }

    /// The structs on the way to the schema. The crate reads a field by its id, as the type the Parquet
    /// format gives that id, whatever type the field's header says; this walk skips by the header. Where the
    /// two could read different bytes, the footer is refused: a known field under another type (fuzzing found
    /// FileMetaData's i32 `version` sent as a list, after which the crate read a schema this walk never saw).
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        FileMeta,
        Schema,
        Logical,
        Decimal,
        TimeLike,
        TimeUnit,
        Integer,
        Variant,
        Geometry,
        Geography,
        Empty,
    }

    const BOOL: u8 = 1;
    const BYTE: u8 = 3;
    const I32: u8 = 5;
    const BINARY: u8 = 8;
    const LIST: u8 = 9;
    const STRUCT: u8 = 12;

    /// The compact type the format gives field `id` of `kind` (booleans as [`BOOL`]), and the struct inside.
    fn field_type(kind: Kind, id: i64) -> Option<(u8, Option<Kind>)> {
        use Kind::*;
        Some(match (kind, id) {
            (FileMeta, 1) => (I32, None),
            (FileMeta, 2) => (LIST, Some(Schema)),
            (Schema, 1..=3 | 5..=9) => (I32, None),
            (Schema, 4) => (BINARY, None),
            (Schema, 10) => (STRUCT, Some(Logical)),
            (Logical, 5) => (STRUCT, Some(Decimal)),
            (Logical, 7 | 8) => (STRUCT, Some(TimeLike)),
            (Logical, 10) => (STRUCT, Some(Integer)),
            (Logical, 16) => (STRUCT, Some(Variant)),
            (Logical, 17) => (STRUCT, Some(Geometry)),
            (Logical, 18) => (STRUCT, Some(Geography)),
            (Logical, 1..=18) => (STRUCT, Some(Empty)),
            (Decimal, 1 | 2) | (Geography, 2) => (I32, None),
            (TimeLike, 1) | (Integer, 2) => (BOOL, None),
            (TimeLike, 2) => (STRUCT, Some(TimeUnit)),
            (TimeUnit, 1..=3) => (STRUCT, Some(Empty)),
            (Integer, 1) | (Variant, 1) => (BYTE, None),
            (Geometry, 1) | (Geography, 1) => (BINARY, None),
            _ => return None,
        })
    }

    impl Reader<'_> {
        /// Walks one struct of `kind`, checking every field the crate would read by its id; a schema element's
        /// `num_children` (field 5) is pushed onto `children` (0 when absent).
        fn walk(&mut self, kind: Kind, depth: u8, children: &mut Vec<i64>) -> Result<(), String> {
            let damaged = || String::from("the footer does not parse (damaged Parquet data)");
            let depth = depth.checked_sub(1).ok_or_else(damaged)?;
            let mut last = 0i64;
            let mut count = 0i64;
            let mut schema_read = false;
            while let Some((id, ty)) = self.field_header(last).ok_or_else(damaged)? {
                last = id;
                // Writers put the schema (2) right after the version (1). Anything else before it, or a second
                // schema, is bytes this walk could read otherwise than the crate, ahead of what it checks.
                if kind == Kind::FileMeta && (id == 2 || !schema_read) && (schema_read || !matches!(id, 1 | 2)) {
                    return Err(format!("footer field {id} comes where only the version and one schema may (damaged Parquet data)"));
                }
                schema_read |= kind == Kind::FileMeta && id == 2;
                let Some((want, inner)) = field_type(kind, id) else {
                    self.skip(ty, depth).ok_or_else(damaged)?;
                    continue;
                };
                let fits = if want == BOOL { matches!(ty, 1 | 2) } else { ty == want };
                if !fits {
                    return Err(format!("footer field {id} has compact type {ty} where the format has {want} (damaged Parquet data)"));
                }
                match (ty, inner) {
                    (LIST, Some(elements)) => {
                        let (n, elem) = self.list_header().ok_or_else(damaged)?;
                        if elem != STRUCT {
                            return Err(format!("footer field {id} lists compact type {elem}, not structs (damaged Parquet data)"));
                        }
                        for _ in 0..n {
                            self.walk(elements, depth, children)?;
                        }
                    }
                    (STRUCT, Some(inner)) => self.walk(inner, depth, children)?,
                    (I32, _) if kind == Kind::Schema && id == 5 => count = self.zigzag().ok_or_else(damaged)?,
                    _ => self.skip(ty, depth).ok_or_else(damaged)?,
                }
            }
            if kind == Kind::Schema {
                children.push(count);
            }
            Ok(())
        }
    }

    /// Walks the whole footer (FileMetaData) before the crate parses it. The crate reserves what a list or a
    /// schema element claims (`Vec::with_capacity`) before reading it: fuzzing found a schema element claiming
    /// hundreds of millions of children, which on a Pi is an allocation failure that aborts the daemon.
    /// Walking consumes at least a byte per list entry, so every list's claimed size is bounded by the footer;
    /// each schema element's `num_children` (field 5) must be at most the schema's element count, and the
    /// schema may nest at most [`MAX_SCHEMA_DEPTH`] groups: the crate builds the schema tree recursively, and
    /// 2,600 nested groups in a 20 KB file overflowed a 2 MB thread stack (found by fuzzing).
    pub(super) fn check_footer(footer: &[u8]) -> Result<(), String> {
        let mut r = Reader { buf: footer };
        let mut children: Vec<i64> = Vec::new();
        r.walk(Kind::FileMeta, 32, &mut children)?;
        let elements = children.len() as u64;
        let most = children.iter().copied().map(|c| if c < 0 { i64::MAX } else { c }).max().unwrap_or(0);
        if u64::try_from(most).unwrap_or(u64::MAX) > elements {
            return Err(format!("a schema element claims {most} children among {elements} (damaged Parquet data)"));
        }
        let depth = schema_depth(&children);
        if depth > MAX_SCHEMA_DEPTH {
            return Err(format!("the schema nests {depth} levels deep; at most {MAX_SCHEMA_DEPTH} are read (damaged Parquet data)"));
        }
        Ok(())
    }

    /// Real tables are flat (the root and its columns: 2 levels); lists and maps add 2 or 3 levels each.
    pub(super) const MAX_SCHEMA_DEPTH: usize = 64;

    /// How deep the schema tree nests, from its elements' child counts in the footer's depth-first order.
    fn schema_depth(children: &[i64]) -> usize {
        // Children still to come at each open level.
        let mut open: Vec<i64> = Vec::new();
        let mut deepest = 0;
        for &c in children {
            deepest = deepest.max(open.len() + 1);
            if let Some(left) = open.last_mut() {
                *left -= 1;
            }
            if c > 0 {
                open.push(c);
            }
            while open.last() == Some(&0) {
                open.pop();
            }
        }
        deepest
    }

    /// The header's `uncompressed_page_size` (field 2, an i32), when the header parses and the size is one an
    /// i32 holds and not negative: the crate truncates a longer varint to 32 bits, so a value outside that
    /// range (fuzzing found -30082267069898628) means something else to it than to this reader.
    pub(super) fn uncompressed_page_size(header: &[u8]) -> Option<i64> {
        let mut r = Reader { buf: header };
        let mut found = None;
        r.skip_struct(32, |r, id, ty| {
            if id == 2 && ty == 5 {
                found = Some(r.zigzag()?);
                Some(())
            } else {
                None
            }
        })?;
        found.filter(|size| (0..=i64::from(i32::MAX)).contains(size))
    }
}

pub(super) struct StrictRead<R>(R);

impl<R: std::io::Read> std::io::Read for StrictRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 if !buf.is_empty() => {
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the Parquet data ends inside a page header"))
            }
            n => Ok(n),
        }
    }
}

/// Checks every page before any row is decoded, and returns the rows the file holds.
///
/// - A dictionary page may not claim more values than its bytes can hold: the parquet crate sizes the
///   dictionary from the page's own count before decoding it (fuzzing found a 3.6 KB file whose one page
///   claimed enough values to take 5.2 GB). A dictionary page may come anywhere in a column chunk.
/// - A row group may not claim more rows than each of its columns holds values, and the footer's total must
///   be the sum of its row groups: the total is what `data.max_rows` is checked against before decoding
///   (run-length encoding lets a few kB hold millions of values, so the bytes bound nothing).
///
/// This decompresses each page once more, which the bounded file size keeps small.
pub(super) fn check_pages<R: ChunkReader + 'static>(reader: &SerializedFileReader<R>, path: &Path) -> Result<usize, DataError> {
    use parquet::basic::Type as Physical;
    use parquet::column::page::Page;
    let bad = |message: String| DataError::Format { file: path.to_path_buf(), message };
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut total: u64 = 0;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(|e| bad(format!("row group {g}: {e}")))?;
        let claimed = u64::try_from(group.metadata().num_rows())
            .map_err(|_| bad(format!("row group {g} claims {} rows (damaged Parquet data)", group.metadata().num_rows())))?;
        total = total.saturating_add(claimed);
        for c in 0..schema.num_columns() {
            let column = schema.column(c);
            // The fewest bytes one PLAIN-encoded dictionary value takes (booleans: one bit).
            let bits_per_value: u64 = match column.physical_type() {
                Physical::BOOLEAN => 1,
                Physical::INT32 | Physical::FLOAT => 32,
                Physical::INT64 | Physical::DOUBLE => 64,
                Physical::INT96 => 96,
                Physical::BYTE_ARRAY => 32,
                Physical::FIXED_LEN_BYTE_ARRAY => 8 * u64::try_from(column.type_length().max(1)).unwrap_or(1),
            };
            let mut values: u64 = 0;
            let mut pages = group.get_column_page_reader(c).map_err(|e| bad(format!("column {}: {e}", column.name())))?;
            while let Some(page) = pages.get_next_page().map_err(|e| bad(format!("column {}: damaged Parquet data: {e}", column.name())))? {
                match &page {
                    Page::DictionaryPage { buf, num_values, .. } if u64::from(*num_values) * bits_per_value > 8 * buf.len() as u64 => {
                        return Err(bad(format!(
                            "column {}: a dictionary page claims {num_values} values in {} bytes (damaged Parquet data)",
                            column.name(),
                            buf.len()
                        )));
                    }
                    Page::DataPage { num_values, .. } | Page::DataPageV2 { num_values, .. } => {
                        delta::check_page(&page, column.max_rep_level(), column.max_def_level())
                            .map_err(|e| bad(format!("column {}: {e}", column.name())))?;
                        values += u64::from(*num_values);
                    }
                    Page::DictionaryPage { .. } => {}
                }
            }
            // Every row has at least one value (or null) in each column, repeated columns more.
            if values < claimed {
                return Err(bad(format!(
                    "row group {g} claims {claimed} rows but column {} holds {values} values (damaged Parquet data)",
                    column.name()
                )));
            }
        }
    }
    let footer = reader.metadata().file_metadata().num_rows();
    if u64::try_from(footer).ok() != Some(total) {
        return Err(bad(format!("the footer claims {footer} rows, its row groups {total} (damaged Parquet data)")));
    }
    Ok(usize::try_from(total).unwrap_or(usize::MAX))
}

/// The row count a file's footer claims; None when the footer cannot be read (the crate can panic on a
/// damaged one, so it is caught here).
pub(super) fn footer_rows(path: &Path) -> Option<usize> {
    std::panic::catch_unwind(|| {
        let reader = StrictFile::open(path).ok()?;
        usize::try_from(reader.metadata().file_metadata().num_rows()).ok()
    })
    .ok()
    .flatten()
}

/// The whole file as one frame.
#[cfg(test)]
pub(super) fn read_parquet(path: &Path, budget: Budget) -> Result<Frame, DataError> {
    let mut whole = None;
    read_parquet_chunks(path, budget, usize::MAX, &mut |frame| {
        whole = Some(frame);
        Ok(())
    })?;
    whole.ok_or_else(|| DataError::Format { file: path.to_path_buf(), message: "no columns".into() })
}

/// The file as frames of at most `chunk_rows` rows, in order; at least one frame, as the text reader.
/// The parquet crate asserts on some malformed footers (negative column offsets, for one) instead of
/// returning an error; a damaged upload must be a clear "bad file", not a dead request or job thread.
pub(super) fn read_parquet_chunks(
    path: &Path,
    budget: Budget,
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<(), DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_rows(path, budget, chunk_rows, each))).unwrap_or_else(|panic| {
        let why = crate::util::panic_message(panic.as_ref());
        Err(DataError::Format { file: path.to_path_buf(), message: format!("not a readable Parquet file (damaged metadata: {why})") })
    })
}

/// One chunk's columns while it is read: numbers until a string arrives, then text.
struct Chunk {
    nums: Vec<Vec<f64>>,
    texts: Vec<Option<Vec<String>>>,
    rows: usize,
}

impl Chunk {
    fn new(columns: usize, capacity: usize) -> Chunk {
        Chunk { nums: (0..columns).map(|_| Vec::with_capacity(capacity)).collect(), texts: vec![None; columns], rows: 0 }
    }

    fn frame(self, path: &Path, names: &[String], is_time: &[bool], first_row: usize) -> Frame {
        let columns = self
            .nums
            .into_iter()
            .zip(self.texts)
            .zip(is_time)
            .map(|((num, text), time)| match (text, time) {
                (Some(t), _) => RawColumn::Text(t),
                (None, true) => RawColumn::Time(num),
                (None, false) => RawColumn::Num(num),
            })
            .collect::<Vec<_>>();
        Frame { file: path.to_path_buf(), names: names.to_vec(), columns, n_rows: self.rows, first_row }
    }
}

fn read_rows(
    path: &Path,
    budget: Budget,
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<(), DataError> {
    read_rows_by(path, budget, chunk_rows, each, Decode::ColumnsWhenFlat)
}

/// Column by column when every column allows it (the fast way), or row by row always (tests compare the two).
#[derive(Clone, Copy, PartialEq)]
enum Decode {
    ColumnsWhenFlat,
    #[cfg(test)]
    RowByRow,
}

fn read_rows_by(
    path: &Path,
    budget: Budget,
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
    decode: Decode,
) -> Result<(), DataError> {
    let bad = |message: String| DataError::Format { file: path.to_path_buf(), message };
    let reader = StrictFile::open(path)?;
    let columns = reader.metadata().file_metadata().schema_descr().num_columns();
    budget.check(path, 0, columns)?;
    budget.check(path, check_pages(&reader, path)?, columns)?;
    let scales = timestamp_scales(&reader);
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
    // Checked against the pages above, but still only a capacity hint.
    let capacity = usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0).min(1 << 20).min(chunk_rows);
    let mut is_time: Vec<bool> = scales.iter().map(Option::is_some).collect();
    if let Some(kinds) = flat_numeric_kinds(&reader).filter(|_| decode == Decode::ColumnsWhenFlat) {
        let all: Vec<usize> = (0..names.len()).collect();
        let columns = Columns { names: &names, kinds: &kinds, scales: &scales, which: &all };
        return read_columns(&reader, path, &columns, &mut is_time, capacity, chunk_rows, each);
    }
    let mut chunk = Chunk::new(names.len(), capacity);
    let (mut chunk_first, mut sent) = (1, false);
    let rows = reader.get_row_iter(None).map_err(|e| bad(format!("cannot read rows: {e}")))?;
    for (r, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: damaged Parquet data: {e}", r + 1)))?;
        for (c, (_, field)) in row.get_column_iter().enumerate().take(names.len()) {
            let value = match field {
                Field::Str(s) => {
                    let nums = &chunk.nums[c];
                    chunk.texts[c].get_or_insert_with(|| nums.iter().map(|v| v.to_string()).collect()).push(s.clone());
                    continue;
                }
                Field::TimestampMillis(v) => {
                    is_time[c] = true;
                    *v as f64 / 1e3
                }
                Field::TimestampMicros(v) => {
                    is_time[c] = true;
                    *v as f64 / 1e6
                }
                Field::Date(d) => {
                    is_time[c] = true;
                    f64::from(*d) * 86_400.0
                }
                other => field_number(other).map_or(f64::NAN, |v| v * scales[c].unwrap_or(1.0)),
            };
            // Same rule as CSV: an infinity is a broken reading, not a value to train on.
            if value.is_infinite() {
                return Err(DataError::infinite(path, r + 1, &names[c], value));
            }
            match &mut chunk.texts[c] {
                Some(t) => t.push(value.to_string()),
                None => chunk.nums[c].push(value),
            }
        }
        chunk.rows += 1;
        if chunk.rows == chunk_rows {
            let full = std::mem::replace(&mut chunk, Chunk::new(names.len(), capacity));
            each(full.frame(path, &names, &is_time, chunk_first))?;
            (chunk_first, sent) = (r + 2, true);
        }
    }
    if chunk.rows > 0 || !sent {
        each(chunk.frame(path, &names, &is_time, chunk_first))?;
    }
    Ok(())
}

/// How one numeric leaf column's stored values become the numbers the record API would give
/// ([`parquet::record::Field::convert_int32`] and friends, then [`field_number`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Bool,
    Int32,
    Int8,
    Int16,
    UInt8,
    UInt16,
    UInt32,
    Date,
    Int64,
    UInt64,
    TimestampMillis,
    TimestampMicros,
    Float,
    Double,
}

/// The kinds of every column when the file is flat (no nesting, no lists) and every column is a number the
/// column reader can decode exactly as the record API does; otherwise None and rows are read one by one
/// (text, decimals, INT96, times of day, nested data).
fn flat_numeric_kinds<R: ChunkReader + 'static>(reader: &SerializedFileReader<R>) -> Option<Vec<Kind>> {
    use parquet::basic::{ConvertedType as C, Type as P};
    let schema = reader.metadata().file_metadata().schema_descr();
    (0..schema.num_columns())
        .map(|i| {
            let col = schema.column(i);
            if col.max_rep_level() != 0 || col.max_def_level() > 1 || col.path().parts().len() != 1 {
                return None;
            }
            Some(match (col.physical_type(), col.converted_type()) {
                (P::BOOLEAN, C::NONE) => Kind::Bool,
                (P::INT32, C::NONE | C::INT_32) => Kind::Int32,
                (P::INT32, C::INT_8) => Kind::Int8,
                (P::INT32, C::INT_16) => Kind::Int16,
                (P::INT32, C::UINT_8) => Kind::UInt8,
                (P::INT32, C::UINT_16) => Kind::UInt16,
                (P::INT32, C::UINT_32) => Kind::UInt32,
                (P::INT32, C::DATE) => Kind::Date,
                (P::INT64, C::NONE | C::INT_64) => Kind::Int64,
                (P::INT64, C::UINT_64) => Kind::UInt64,
                (P::INT64, C::TIMESTAMP_MILLIS) => Kind::TimestampMillis,
                (P::INT64, C::TIMESTAMP_MICROS) => Kind::TimestampMicros,
                (P::FLOAT, C::NONE) => Kind::Float,
                (P::DOUBLE, C::NONE) => Kind::Double,
                _ => return None,
            })
        })
        .collect()
}

/// One column's next `rows` values appended to `out` as numbers (nulls are NaN, as the record API's
/// `Field::Null`); returns how many rows were read.
fn column_values(
    reader: &mut parquet::column::reader::ColumnReader,
    kind: Kind,
    scale: Option<f64>,
    max_def: i16,
    rows: usize,
    levels: &mut Vec<i16>,
    out: &mut Vec<f64>,
) -> parquet::errors::Result<usize> {
    use parquet::column::reader::ColumnReader as R;
    let scale = scale.unwrap_or(1.0);
    levels.clear();
    macro_rules! read {
        ($r:expr, $convert:expr) => {{
            let mut dense = Vec::with_capacity(rows);
            let defs = (max_def > 0).then_some(&mut *levels);
            let (records, _, _) = $r.read_records(rows, defs, None, &mut dense)?;
            let convert = $convert;
            if max_def > 0 {
                let mut next = dense.into_iter();
                for &d in levels.iter() {
                    out.push(if d == max_def { next.next().map_or(f64::NAN, &convert) } else { f64::NAN });
                }
            } else {
                out.extend(dense.into_iter().map(convert));
            }
            records
        }};
    }
    Ok(match (reader, kind) {
        (R::BoolColumnReader(r), _) => read!(r, |v: bool| f64::from(u8::from(v))),
        (R::Int32ColumnReader(r), Kind::Int8) => read!(r, |v: i32| f64::from(v as i8) * scale),
        (R::Int32ColumnReader(r), Kind::Int16) => read!(r, |v: i32| f64::from(v as i16) * scale),
        (R::Int32ColumnReader(r), Kind::UInt8) => read!(r, |v: i32| f64::from(v as u8) * scale),
        (R::Int32ColumnReader(r), Kind::UInt16) => read!(r, |v: i32| f64::from(v as u16) * scale),
        (R::Int32ColumnReader(r), Kind::UInt32) => read!(r, |v: i32| f64::from(v as u32) * scale),
        (R::Int32ColumnReader(r), Kind::Date) => read!(r, |v: i32| f64::from(v) * 86_400.0),
        (R::Int32ColumnReader(r), _) => read!(r, |v: i32| f64::from(v) * scale),
        (R::Int64ColumnReader(r), Kind::UInt64) => read!(r, |v: i64| v as u64 as f64 * scale),
        (R::Int64ColumnReader(r), Kind::TimestampMillis) => read!(r, |v: i64| v as f64 / 1e3),
        (R::Int64ColumnReader(r), Kind::TimestampMicros) => read!(r, |v: i64| v as f64 / 1e6),
        (R::Int64ColumnReader(r), _) => read!(r, |v: i64| v as f64 * scale),
        (R::FloatColumnReader(r), _) => read!(r, |v: f32| f64::from(v) * scale),
        (R::DoubleColumnReader(r), _) => read!(r, |v: f64| v * scale),
        _ => 0,
    })
}

/// Which columns of a flat numeric file [`read_columns`] reads, and how each is decoded (indexed by the
/// file's column numbers).
struct Columns<'a> {
    names: &'a [String],
    kinds: &'a [Kind],
    scales: &'a [Option<f64>],
    /// Read these, in this order; the frames hold only them.
    which: &'a [usize],
}

/// The flat numeric file read column by column, a row group at a time, in frames of at most `chunk_rows`
/// rows: the same frames as the row-by-row reader, several times faster (no `Row` of boxed fields per row).
/// Only the column readers of `cols.which` are open, so reading one column holds one column's pages.
fn read_columns<R: ChunkReader + 'static>(
    reader: &SerializedFileReader<R>,
    path: &Path,
    cols: &Columns,
    is_time: &mut [bool],
    capacity: usize,
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let bad = |message: String| DataError::Format { file: path.to_path_buf(), message };
    let Columns { names, kinds, scales, which } = *cols;
    // Rows are counted by what the columns return: with none, a row group claiming rows would never end.
    if which.is_empty() {
        return Err(bad("has no columns".into()));
    }
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let max_defs: Vec<i16> = (0..names.len()).map(|c| schema.column(c).max_def_level()).collect();
    let picked: Vec<String> = which.iter().map(|&c| names[c].clone()).collect();
    let picked_time = |is_time: &[bool]| -> Vec<bool> { which.iter().map(|&c| is_time[c]).collect() };
    let chunk_rows = chunk_rows.max(1);
    let mut chunk = Chunk::new(which.len(), capacity);
    let (mut chunk_first, mut done, mut sent) = (1usize, 0usize, false);
    let mut levels = Vec::new();
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(|e| bad(format!("row group {g}: damaged Parquet data: {e}")))?;
        let mut columns = which
            .iter()
            .map(|&c| group.get_column_reader(c).map_err(|e| bad(format!("column {}: damaged Parquet data: {e}", names[c]))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut left = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
        while left > 0 {
            let want = left.min(chunk_rows - chunk.rows);
            let mut got = None;
            for (k, column) in columns.iter_mut().enumerate() {
                let c = which[k];
                let before = chunk.nums[k].len();
                let n = column_values(column, kinds[c], scales[c], max_defs[c], want, &mut levels, &mut chunk.nums[k])
                    .map_err(|e| bad(format!("row {}: damaged Parquet data: {e}", done + 1)))?;
                if chunk.nums[k].len() - before != n || got.is_some_and(|g| g != n) || n == 0 {
                    return Err(bad(format!("row group {g}: column {} ends before the others (damaged Parquet data)", names[c])));
                }
                got = Some(n);
                is_time[c] |= matches!(kinds[c], Kind::Date | Kind::TimestampMillis | Kind::TimestampMicros)
                    && chunk.nums[k][before..].iter().any(|v| !v.is_nan());
            }
            let n = got.unwrap_or(0);
            // Same rule as CSV, and the same cell named as the row-by-row reader would: the first in row order.
            if chunk.nums.iter().any(|col| col[chunk.rows..].iter().any(|v| v.is_infinite())) {
                for r in chunk.rows..chunk.rows + n {
                    if let Some(k) = (0..which.len()).find(|&k| chunk.nums[k][r].is_infinite()) {
                        return Err(DataError::infinite(path, done + (r - chunk.rows) + 1, &picked[k], chunk.nums[k][r]));
                    }
                }
            }
            chunk.rows += n;
            done += n;
            left -= n;
            if chunk.rows == chunk_rows {
                let full = std::mem::replace(&mut chunk, Chunk::new(which.len(), capacity));
                each(full.frame(path, &picked, &picked_time(is_time), chunk_first))?;
                (chunk_first, sent) = (done + 1, true);
            }
        }
    }
    if chunk.rows > 0 || !sent {
        each(chunk.frame(path, &picked, &picked_time(is_time), chunk_first))?;
    }
    Ok(())
}

/// Some columns of a flat numeric file, as frames holding only them (in `which`'s order): the listing reads
/// a column at a time so that a wide file never has every column's pages in memory. `Ok(false)` when the
/// file is not flat and numeric (the caller reads it whole, row by row).
pub(super) fn read_parquet_columns(
    path: &Path,
    which: &[usize],
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<bool, DataError> {
    let read = || -> Result<bool, DataError> {
        let reader = StrictFile::open(path)?;
        let Some(kinds) = flat_numeric_kinds(&reader) else { return Ok(false) };
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let names: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
        if let Some(&c) = which.iter().find(|&&c| c >= names.len()) {
            return Err(DataError::Format { file: path.to_path_buf(), message: format!("no column #{}", c + 1) });
        }
        let scales = timestamp_scales(&reader);
        let mut is_time: Vec<bool> = scales.iter().map(Option::is_some).collect();
        let capacity = chunk_rows.min(1 << 20);
        let columns = Columns { names: &names, kinds: &kinds, scales: &scales, which };
        read_columns(&reader, path, &columns, &mut is_time, capacity, chunk_rows, each)?;
        Ok(true)
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let why = crate::util::panic_message(panic.as_ref());
        Err(DataError::Format { file: path.to_path_buf(), message: format!("not a readable Parquet file (damaged metadata: {why})") })
    })
}

pub(super) fn field_number(f: &Field) -> Option<f64> {
    Some(match f {
        Field::Bool(b) => f64::from(u8::from(*b)),
        Field::Byte(v) => f64::from(*v),
        Field::Short(v) => f64::from(*v),
        Field::Int(v) => f64::from(*v),
        Field::Long(v) => *v as f64,
        Field::UByte(v) => f64::from(*v),
        Field::UShort(v) => f64::from(*v),
        Field::UInt(v) => f64::from(*v),
        Field::ULong(v) => *v as f64,
        Field::Float(v) => f64::from(*v),
        Field::Double(v) => *v,
        Field::Float16(v) => f64::from(v.to_f32()),
        _ => return None,
    })
}

/// Thrift's unsigned varint, for the tests that forge headers and footers.
#[cfg(test)]
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column's name, kind (n, t, s) and every value's bits, NaN included.
    type Seen = (String, char, Vec<String>);

    /// Each frame's first row, rows and columns.
    fn frames_by(path: &Path, chunk_rows: usize, decode: Decode) -> Vec<(usize, usize, Vec<Seen>)> {
        let mut out = Vec::new();
        read_rows_by(
            path,
            Budget::UNLIMITED,
            chunk_rows,
            &mut |f: Frame| {
                let cols = f
                    .names
                    .iter()
                    .zip(&f.columns)
                    .map(|(n, c)| match c {
                        RawColumn::Num(v) => (n.clone(), 'n', v.iter().map(|x| x.to_bits().to_string()).collect()),
                        RawColumn::Time(v) => (n.clone(), 't', v.iter().map(|x| x.to_bits().to_string()).collect()),
                        RawColumn::Text(v) => (n.clone(), 's', v.clone()),
                    })
                    .collect();
                out.push((f.first_row, f.n_rows, cols));
                Ok(())
            },
            decode,
        )
        .unwrap();
        out
    }

    /// Every numeric kind the column reader decodes, nullable and not, over three row groups, read in chunks
    /// that cross them: the same frames as the row-by-row reader, bit for bit.
    #[test]
    fn column_by_column_reads_what_row_by_row_reads() {
        use parquet::data_type::{BoolType, DoubleType, FloatType, Int32Type, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        let schema = "message m {
            required int64 ts (TIMESTAMP(MILLIS,true)); optional int64 us (TIMESTAMP(MICROS,false));
            optional int64 ns (TIMESTAMP(NANOS,true)); optional int32 day (DATE);
            optional int32 i8 (INT_8); optional int32 i16 (INT_16); optional int32 u8 (UINT_8); optional int32 u16 (UINT_16);
            optional int32 u32 (UINT_32); required int32 plain; optional int64 u64 (UINT_64); optional int64 long;
            optional float f; required double d; optional boolean flag; }";
        let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinds.parquet");
        let mut w = SerializedFileWriter::new(
            std::fs::File::create(&path).unwrap(),
            schema,
            std::sync::Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        for group in 0..3i64 {
            let n = 5 + group as usize * 3;
            let defs: Vec<i16> = (0..n).map(|r| i16::from(r % 3 != 1)).collect();
            let present = defs.iter().filter(|d| **d == 1).count();
            let ints: Vec<i32> = (0..n as i32).map(|r| r * 977 - 3000 - group as i32).collect();
            let longs: Vec<i64> = (0..n as i64).map(|r| 1_700_000_000_123 + r * 1_001 + group * 7).collect();
            let mut rg = w.next_row_group().unwrap();
            let mut c = 0;
            while let Some(mut col) = rg.next_column().unwrap() {
                let required = [0usize, 9, 13].contains(&c);
                let d = if required { None } else { Some(&defs[..]) };
                let k = if required { n } else { present };
                match c {
                    0..=3 | 10 | 11 if c != 3 => {
                        let v: Vec<i64> = longs[..k].iter().map(|x| if c == 10 { -x } else { *x }).collect();
                        col.typed::<Int64Type>().write_batch(&v, d, None).unwrap();
                    }
                    12 => {
                        let v: Vec<f32> = ints[..k].iter().map(|x| *x as f32 / 7.0).collect();
                        col.typed::<FloatType>().write_batch(&v, d, None).unwrap();
                    }
                    13 => {
                        let v: Vec<f64> = ints[..k].iter().map(|x| f64::from(*x) / 3.0).collect();
                        col.typed::<DoubleType>().write_batch(&v, d, None).unwrap();
                    }
                    14 => {
                        let v: Vec<bool> = (0..k).map(|r| r % 2 == 0).collect();
                        col.typed::<BoolType>().write_batch(&v, d, None).unwrap();
                    }
                    _ => {
                        col.typed::<Int32Type>().write_batch(&ints[..k], d, None).unwrap();
                    }
                }
                col.close().unwrap();
                c += 1;
            }
            rg.close().unwrap();
        }
        w.close().unwrap();
        let reader = StrictFile::open(&path).unwrap();
        assert!(flat_numeric_kinds(&reader).is_some(), "every column here has the fast path");
        for chunk_rows in [1, 4, 7, 1000] {
            let (fast, slow) = (frames_by(&path, chunk_rows, Decode::ColumnsWhenFlat), frames_by(&path, chunk_rows, Decode::RowByRow));
            assert_eq!(fast, slow, "chunks of {chunk_rows}");
        }
        let whole = frames_by(&path, 1000, Decode::ColumnsWhenFlat);
        assert_eq!(whole[0].1, 5 + 8 + 11);
        // No column at all is refused, not a loop counting rows that nothing returns.
        assert!(read_parquet_columns(&path, &[], 1000, &mut |_| Ok(())).is_err());
        // Some columns, in any order, are those columns of the whole frames.
        for which in [vec![13usize, 0, 5], vec![7], vec![14, 2]] {
            let mut some = Vec::new();
            let flat = read_parquet_columns(&path, &which, 1000, &mut |f: Frame| {
                some.extend(f.columns.iter().map(|c| match c {
                    RawColumn::Num(v) | RawColumn::Time(v) => v.iter().map(|x| x.to_bits().to_string()).collect::<Vec<_>>(),
                    RawColumn::Text(v) => v.clone(),
                }));
                Ok(())
            });
            assert!(flat.unwrap());
            let expected: Vec<Vec<String>> = which.iter().map(|&c| whole[0].2[c].2.clone()).collect();
            assert_eq!(some, expected, "{which:?}");
        }
        // The seeds the simulator and other writers made agree too (text columns go row by row in both).
        for seed in ["sim_train.parquet", "pyarrow_v1_snappy_dict.parquet", "pyarrow_v2_gzip_plain.parquet", "delta_v2_pages.parquet"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/parquet").join(seed);
            assert_eq!(frames_by(&p, 100, Decode::ColumnsWhenFlat), frames_by(&p, 100, Decode::RowByRow), "{seed}");
        }
    }

    /// Found by `fuzz/` (parquet target): a footer with a negative column offset made the parquet crate
    /// assert inside the row iterator.
    #[test]
    fn damaged_footer_is_a_format_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.parquet");
        std::fs::write(&p, include_bytes!("../../fuzz/seeds/parquet/regress_negative_offset.parquet")).unwrap();
        let err = read_parquet(&p, Budget::UNLIMITED).err().unwrap();
        assert!(matches!(err, DataError::Format { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("not a readable Parquet file") || text.contains("damaged Parquet data"), "{err}");
    }

    /// Found by `fuzz/` (parquet target, an allocation of 4 GB): FileMetaData's i32 `version` sent as a list.
    /// The crate reads a field by its id as the format's type, so from there it read other bytes than the
    /// footer check did, found a schema element claiming half a billion children and reserved room for them.
    /// A known field under another type is now refused, as is a long field id the crate truncates.
    #[test]
    fn a_known_footer_field_under_another_type_is_refused() {
        let bytes = include_bytes!("../../fuzz/seeds/parquet/regress_field_type_mismatch.parquet");
        let n = bytes.len();
        let len = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]) as usize;
        let footer = &bytes[n - 8 - len..n - 8];
        let err = thrift::check_footer(footer).err().unwrap();
        assert!(err.contains("field 1 has compact type 9"), "{err}");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.parquet");
        std::fs::write(&p, bytes).unwrap();
        let err = read_parquet(&p, Budget::UNLIMITED).err().unwrap();
        assert!(matches!(err, DataError::Format { .. }) && err.to_string().contains("damaged Parquet data"), "{err}");
        // Field 5 (num_children) of the root written with the full-id form as 65541, which the crate reads as 5:
        // root { num_children: 2**30 } with no children after it.
        let forged = [0x29u8, 0x1c, 0x05, 0x8a, 0x80, 0x08, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x00];
        let err = thrift::check_footer(&forged).err().unwrap();
        assert!(err.contains("children"), "{err}");
        // Row groups (4, an empty list) before the schema, and a second schema: neither is read past.
        let rows_first = [0x49u8, 0x0c, 0x19, 0x1c, 0x00, 0x00];
        assert!(thrift::check_footer(&rows_first).err().unwrap().contains("field 4 comes where"));
        let twice = [0x29u8, 0x1c, 0x00, 0x09, 0x04, 0x1c, 0x00, 0x00];
        assert!(thrift::check_footer(&twice).err().unwrap().contains("field 2 comes where"));
        let once = [0x15u8, 0x02, 0x19, 0x1c, 0x00, 0x16, 0x04, 0x00];
        assert!(thrift::check_footer(&once).is_ok());
    }

    /// Found by `fuzz/` (parquet target, a libFuzzer timeout): a page header claiming a list of millions of
    /// entries, skipped past the end of the data one entry at a time (17 s, 3.5 million read(2) calls).
    #[test]
    fn a_header_claiming_endless_entries_is_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.parquet");
        std::fs::write(&p, include_bytes!("../../fuzz/seeds/parquet/endless-header-skip.parquet")).unwrap();
        let t0 = std::time::Instant::now();
        let err = read_parquet(&p, Budget::UNLIMITED).err().unwrap();
        assert!(t0.elapsed() < std::time::Duration::from_millis(500), "took {:?}", t0.elapsed());
        assert!(err.to_string().contains("damaged Parquet data"), "{err}");
    }

    /// Found by `fuzz/` (parquet target, out of memory): a 3.6 KB file whose dictionary page claims 671 million
    /// values; the parquet crate sized the dictionary from that count and took 5.2 GB.
    #[test]
    fn a_dictionary_page_claiming_more_values_than_its_bytes_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.parquet");
        std::fs::write(&p, include_bytes!("../../fuzz/seeds/parquet/huge-dictionary.parquet")).unwrap();
        let err = read_parquet(&p, Budget::UNLIMITED).err().unwrap().to_string();
        assert!(err.contains("dictionary page claims 671088648 values in 104 bytes"), "{err}");
        // A healthy file with dictionaries passes the check: the simulator's seed file loads.
        let ok = d.path().join("ok.parquet");
        std::fs::write(&ok, include_bytes!("../../fuzz/seeds/parquet/sim_train.parquet")).unwrap();
        assert!(read_parquet(&ok, Budget::UNLIMITED).is_ok());
    }

    /// Files another writer made (pyarrow 26: nanosecond timestamps, nulls, a dictionary-encoded text column,
    /// key-value metadata, row groups of 100, snappy; and version-2 pages with gzip and no dictionary) pass
    /// every check the reader makes before the crate sees them: footer walk, page headers, row claims.
    #[test]
    fn files_written_by_pyarrow_pass_every_check() {
        let d = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("v1.parquet", &include_bytes!("../../fuzz/seeds/parquet/pyarrow_v1_snappy_dict.parquet")[..]),
            ("v2.parquet", &include_bytes!("../../fuzz/seeds/parquet/pyarrow_v2_gzip_plain.parquet")[..]),
        ] {
            let p = d.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let f = read_parquet(&p, Budget::UNLIMITED).unwrap();
            assert_eq!(f.n_rows, 300, "{name}");
            assert_eq!(f.names[..2], ["timestamp", "temp"], "{name}");
            assert!(matches!(&f.columns[0], RawColumn::Time(t) if t[1] - t[0] == 60.0), "{name}");
        }
    }

    /// A Parquet file of no rows whose schema nests `depth` groups above one INT32 column.
    fn nested(depth: usize) -> Vec<u8> {
        // FileMetaData: version (1) = 1, schema (2) = a list of structs, ...
        let mut f = vec![0x15, 0x02, 0x19, 0xfc];
        f.extend(varint(depth as u64 + 2));
        for level in 0..=depth + 1 {
            let leaf = level == depth + 1;
            // type (1) INT32 for the leaf; repetition (3) REQUIRED, name (4) "a", num_children (5) 1 for groups.
            f.extend(if leaf { &[0x15, 0x02, 0x25, 0x00][..] } else { &[0x35, 0x00][..] });
            f.extend([0x18, 1, b'a']);
            if !leaf {
                f.extend([0x15, 0x02]);
            }
            f.push(0);
        }
        // ... num_rows (3) = 0, row_groups (4) = an empty list, stop.
        f.extend([0x16, 0x00, 0x19, 0x0c, 0x00]);
        let mut out = b"PAR1".to_vec();
        out.extend(&f);
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(b"PAR1");
        out
    }

    /// Found by `fuzz/` (parquet target, a stack overflow): the crate builds the schema tree recursively, so a
    /// few KB of nested groups overflowed the stack of the thread reading it, which aborts the daemon.
    #[test]
    fn a_schema_nested_thousands_deep_is_refused_before_the_crate_recurses() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("deep.parquet");
        std::fs::write(&deep, nested(2_600)).unwrap();
        // The 2 MB stack of the daemon's blocking threads; without the check this overflows it.
        let reading = std::thread::Builder::new().stack_size(2 << 20).spawn(move || read_parquet(&deep, Budget::UNLIMITED));
        let err = reading.unwrap().join().unwrap().err().unwrap().to_string();
        assert!(err.contains("the schema nests 2602 levels deep; at most 64"), "{err}");
        // Nesting a real writer could produce is read as before.
        let shallow = d.path().join("shallow.parquet");
        std::fs::write(&shallow, nested(thrift::MAX_SCHEMA_DEPTH - 2)).unwrap();
        let ok = read_parquet(&shallow, Budget::UNLIMITED);
        assert!(ok.as_ref().is_ok_and(|f| f.names == ["a"]), "{:?}", ok.err());
    }

    /// A compact-protocol page header: type (1), uncompressed size (2), compressed size (3), stop.
    fn header(uncompressed: u64, compressed: u64) -> Vec<u8> {
        let mut h = vec![0x15, 0x00, 0x15];
        h.extend(varint(uncompressed << 1));
        h.push(0x15);
        h.extend(varint(compressed << 1));
        // A nested struct field (id 5) with an i32 inside, then the header's stop.
        h.extend([0x2c, 0x15, 0x04, 0x00, 0x00]);
        h
    }

    #[test]
    fn a_page_claiming_to_decompress_to_gigabytes_is_refused_before_any_buffer() {
        assert_eq!(thrift::uncompressed_page_size(&header(1_000_000, 4_000)), Some(1_000_000));
        assert!(check_page_claim(&header(1_000_000, 4_000), 4_000).is_ok());
        // A constant column compressed 10,000 to 1 still passes inside the first MB.
        assert!(check_page_claim(&header(1_000_000, 100), 100).is_ok());
        let forged = check_page_claim(&header(2_000_000_000, 3_000), 3_000).unwrap_err();
        assert!(forged.contains("claims to decompress to 2000000000 bytes from 3000"), "{forged}");
        assert!(check_page_claim(&header(100 << 20, 1 << 20), 1 << 20).is_err(), "over the 64 MB page cap");
        // Headers it cannot read are refused: the crate reads a varint of any length, and this one claimed
        // 1.8 GB in 23 bytes (found by fuzzing; a 6.7 KB file took 1.85 GB).
        assert_eq!(thrift::uncompressed_page_size(&[0x15]), None);
        assert!(check_page_claim(&[0xff; 8], 10).is_err());
        let mut long_varint = vec![0x15, 0x04, 0x15];
        long_varint.extend([0xa1; 21]);
        long_varint.extend([0xd0, 0x06, 0x15, 0xda, 0x06, 0x4c, 0x15, 0x6a, 0x15, 0x00, 0x12, 0x00, 0x00]);
        assert!(check_page_claim(&long_varint, 429).unwrap_err().contains("does not parse"));
        // A map of booleans claiming 2^63 entries ends with the buffer, not after 2^63 turns.
        let endless_map = [0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x11, 0x00];
        let t0 = std::time::Instant::now();
        assert_eq!(thrift::uncompressed_page_size(&endless_map), None);
        assert!(thrift::check_footer(&endless_map).is_err());
        assert!(t0.elapsed() < std::time::Duration::from_millis(100), "took {:?}", t0.elapsed());
        // A size outside an i32 (the crate keeps its low 32 bits: 1.6 GB from this one) or negative.
        let mut out_of_range = vec![0x15, 0x00, 0x15];
        out_of_range.extend(varint(60_164_534_139_797_255));
        out_of_range.extend([0x15, 0x18, 0x00]);
        assert!(check_page_claim(&out_of_range, 12).unwrap_err().contains("does not parse"));
        assert!(check_page_claim(&header(1_000_000, 4_000), 4_000).is_ok());
        // Real files pass: the simulator's Parquet (snappy pages, dictionaries) loads through the check.
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("ok.parquet");
        std::fs::write(&ok, include_bytes!("../../fuzz/seeds/parquet/sim_train.parquet")).unwrap();
        assert!(read_parquet(&ok, Budget::UNLIMITED).unwrap().n_rows > 0);
    }
}

#[cfg(test)]
mod row_claims {
    use super::*;
    use crate::data::write::{Format, OutTable, write_table};

    /// A healthy 77-row file whose footer and row group are then made to claim `rows` rows.
    pub(crate) fn file_claiming(dir: &Path, rows: u64) -> std::path::PathBuf {
        let p = dir.join("train.parquet");
        let ts: Vec<f64> = (0..77).map(|i| 1.7e9 + 3600.0 * f64::from(i)).collect();
        let v: Vec<f64> = (0..77).map(f64::from).collect();
        write_table(&p, &OutTable { timestamps: &ts, columns: vec![("temp", &v)] }, Format::Parquet).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
        let (body, footer) = bytes[..n - 8].split_at(n - 8 - footer_len);
        // An i64 field (type 6) one id after the previous one, holding 77 (zigzag 154): num_rows in the
        // file metadata and in the row group.
        let from = [0x16u8, 0x9a, 0x01];
        let mut to = vec![0x16u8];
        to.extend(varint(rows << 1));
        let mut patched = Vec::new();
        let mut i = 0;
        let mut hits = 0;
        while i < footer.len() {
            if footer[i..].starts_with(&from) {
                patched.extend(&to);
                i += from.len();
                hits += 1;
            } else {
                patched.push(footer[i]);
                i += 1;
            }
        }
        // The file's and the row group's row counts, and each column chunk's value count.
        assert_eq!(hits, 4, "row and value counts patched");
        let mut out = body.to_vec();
        out.extend(&patched);
        out.extend((patched.len() as u32).to_le_bytes());
        out.extend(b"PAR1");
        std::fs::write(&p, out).unwrap();
        p
    }

    /// A row group claiming more rows than its pages hold values is damaged; it is refused from the pages,
    /// before any row is decoded, and an honest count over `data.max_rows` is refused from the footer.
    #[test]
    fn a_row_group_claiming_more_rows_than_its_pages_hold_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = file_claiming(d.path(), 50_000_000);
        let t0 = std::time::Instant::now();
        let err = read_parquet(&p, Budget::UNLIMITED).err().unwrap().to_string();
        assert!(err.contains("row group 0 claims 50000000 rows but column timestamp holds 77 values"), "{err}");
        assert!(t0.elapsed() < std::time::Duration::from_millis(500), "took {:?}", t0.elapsed());
        // The honest count passes, and the row cap is checked before decoding.
        let p = file_claiming(d.path(), 77);
        assert_eq!(read_parquet(&p, Budget::UNLIMITED).unwrap().n_rows, 77);
        let capped = read_parquet(&p, Budget { rows: 76, columns: 10 }).err().unwrap().to_string();
        assert!(capped.contains("data.max_rows"), "{capped}");
    }
}
