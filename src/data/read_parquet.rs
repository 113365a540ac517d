//! Parquet through the record API (no arrow): the legacy layout is a few flat numeric columns.
use super::error::DataError;
use super::frame::{Frame, RawColumn};
use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::Field;
use std::path::Path;

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
pub(super) struct StrictFile(std::fs::File);

impl StrictFile {
    /// Opens `path` as a Parquet file: its footer read and checked.
    pub(super) fn open(path: &Path) -> Result<SerializedFileReader<StrictFile>, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        SerializedFileReader::new(StrictFile(file)).map_err(|e| DataError::Format {
            file: path.to_path_buf(),
            message: format!("not a readable Parquet file (truncated, damaged, or another format renamed): {e}"),
        })
    }
}

impl parquet::file::reader::Length for StrictFile {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl ChunkReader for StrictFile {
    type T = StrictRead<<std::fs::File as ChunkReader>::T>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.0.get_read(start).map(StrictRead)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
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

/// Refuses a dictionary page that claims more values than its bytes can hold. The parquet crate sizes the
/// dictionary from the page's own count before decoding it: fuzzing found a 3.6 KB file whose one page
/// claimed enough values to take 5.2 GB. Every page is looked at (a dictionary page may come anywhere in a
/// column chunk); this decompresses each page once more, which the bounded file size keeps small.
pub(super) fn check_dictionaries<R: ChunkReader + 'static>(reader: &SerializedFileReader<R>, path: &Path) -> Result<(), DataError> {
    use parquet::basic::Type as Physical;
    use parquet::column::page::Page;
    let bad = |message: String| DataError::Format { file: path.to_path_buf(), message };
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(|e| bad(format!("row group {g}: {e}")))?;
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
            let mut pages = group.get_column_page_reader(c).map_err(|e| bad(format!("column {}: {e}", column.name())))?;
            while let Some(page) = pages.get_next_page().map_err(|e| bad(format!("column {}: damaged Parquet data: {e}", column.name())))? {
                if let Page::DictionaryPage { buf, num_values, .. } = &page
                    && u64::from(*num_values) * bits_per_value > 8 * buf.len() as u64
                {
                    return Err(bad(format!(
                        "column {}: a dictionary page claims {num_values} values in {} bytes (damaged Parquet data)",
                        column.name(),
                        buf.len()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The parquet crate asserts on some malformed footers (negative column offsets, for one) instead of
/// returning an error; a damaged upload must be a clear "bad file", not a dead request or job thread.
pub fn read_parquet(path: &Path) -> Result<Frame, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_rows(path))).unwrap_or_else(|panic| {
        let why = crate::util::panic_message(panic.as_ref());
        Err(DataError::Format { file: path.to_path_buf(), message: format!("not a readable Parquet file (damaged metadata: {why})") })
    })
}

fn read_rows(path: &Path) -> Result<Frame, DataError> {
    let bad = |message: String| DataError::Format { file: path.to_path_buf(), message };
    let reader = StrictFile::open(path)?;
    check_dictionaries(&reader, path)?;
    let scales = timestamp_scales(&reader);
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
    // The footer's row count is only a hint: a damaged or hostile file may claim billions of rows.
    let n_rows = usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0).min(1 << 20);
    let mut nums: Vec<Vec<f64>> = names.iter().map(|_| Vec::with_capacity(n_rows)).collect();
    let mut texts: Vec<Option<Vec<String>>> = names.iter().map(|_| None).collect();
    let mut is_time: Vec<bool> = scales.iter().map(Option::is_some).collect();
    let rows = reader.get_row_iter(None).map_err(|e| bad(format!("cannot read rows: {e}")))?;
    for (r, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: damaged Parquet data: {e}", r + 1)))?;
        for (c, (_, field)) in row.get_column_iter().enumerate().take(names.len()) {
            let value = match field {
                Field::Str(s) => {
                    texts[c].get_or_insert_with(|| nums[c].iter().map(|v| v.to_string()).collect()).push(s.clone());
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
                return Err(DataError::Cell {
                    file: path.to_path_buf(),
                    row: r + 1,
                    column: names[c].clone(),
                    value: value.to_string(),
                    expected: "a finite number",
                });
            }
            match &mut texts[c] {
                Some(t) => t.push(value.to_string()),
                None => nums[c].push(value),
            }
        }
    }
    let columns = nums
        .into_iter()
        .zip(texts)
        .zip(&is_time)
        .map(|((num, text), time)| match (text, time) {
            (Some(t), _) => RawColumn::Text(t),
            (None, true) => RawColumn::Time(num),
            (None, false) => RawColumn::Num(num),
        })
        .collect::<Vec<_>>();
    let n_rows = match columns.first() {
        Some(RawColumn::Num(v) | RawColumn::Time(v)) => v.len(),
        Some(RawColumn::Text(t)) => t.len(),
        None => 0,
    };
    Ok(Frame { file: path.to_path_buf(), names, columns, n_rows, first_row: 1 })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/` (parquet target): a footer with a negative column offset made the parquet crate
    /// assert inside the row iterator.
    #[test]
    fn damaged_footer_is_a_format_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.parquet");
        std::fs::write(&p, include_bytes!("../../fuzz/seeds/parquet/regress_negative_offset.parquet")).unwrap();
        let err = read_parquet(&p).err().unwrap();
        assert!(matches!(err, DataError::Format { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("not a readable Parquet file") || text.contains("damaged Parquet data"), "{err}");
    }

    /// Found by `fuzz/` (parquet target, a libFuzzer timeout): a page header claiming a list of millions of
    /// entries, skipped past the end of the data one entry at a time (17 s, 3.5 million read(2) calls).
    #[test]
    fn a_header_claiming_endless_entries_is_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train.parquet");
        std::fs::write(&p, include_bytes!("../../fuzz/seeds/parquet/endless-header-skip.parquet")).unwrap();
        let t0 = std::time::Instant::now();
        let err = read_parquet(&p).err().unwrap();
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
        let err = read_parquet(&p).err().unwrap().to_string();
        assert!(err.contains("dictionary page claims 671088648 values in 104 bytes"), "{err}");
        // A healthy file with dictionaries passes the check: the simulator's seed file loads.
        let ok = d.path().join("ok.parquet");
        std::fs::write(&ok, include_bytes!("../../fuzz/seeds/parquet/sim_train.parquet")).unwrap();
        assert!(read_parquet(&ok).is_ok());
    }
}
