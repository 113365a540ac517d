//! CSV and whitespace-separated text read as a stream, one record at a time into typed columns: never the
//! whole file as text, nor every cell as a string. Memory is the columns (8 bytes a number) plus one record,
//! where the whole-file reader held the text and a string per cell (about 5× the file).
use super::caps::Budget;
use super::error::DataError;
use super::frame::{Frame, RawColumn, parse_number};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// How cells are separated in a text file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimiter {
    Byte(u8),
    /// Runs of spaces/tabs (NASA's C-MAPSS files, with trailing blanks).
    Whitespace,
}

impl Delimiter {
    pub fn parse(s: &str) -> Option<Delimiter> {
        match s {
            "," | "comma" => Some(Delimiter::Byte(b',')),
            ";" | "semicolon" => Some(Delimiter::Byte(b';')),
            "\t" | "tab" => Some(Delimiter::Byte(b'\t')),
            "|" | "pipe" => Some(Delimiter::Byte(b'|')),
            "whitespace" | "space" | " " => Some(Delimiter::Whitespace),
            _ => None,
        }
    }
}

pub struct TextOptions {
    pub delimiter: Delimiter,
    pub header: bool,
    pub names: Option<Vec<String>>,
}

/// Binary files and UTF-16 exports would otherwise surface as puzzling cell errors quoting mojibake.
pub(super) fn check_text(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let bad = |message: String| Err(DataError::Format { file: path.to_path_buf(), message });
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return bad("the file is UTF-16 text; save it as UTF-8 (CSV UTF-8 in Excel)".into());
    }
    if let Some(at) = bytes.iter().position(|b| *b == 0) {
        return bad(format!("not a text file: NUL byte at offset {at} (is it binary, or a different format renamed?)"));
    }
    let head = &bytes[..bytes.len().min(HEAD_BYTES)];
    let text = String::from_utf8_lossy(head);
    let odd = text.chars().filter(|c| *c == char::REPLACEMENT_CHARACTER || (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))).count();
    if odd * 20 > text.chars().count().max(1) {
        return bad(format!("not a text file: {odd} of the first {} characters are not text (is it binary?)", text.chars().count()));
    }
    Ok(())
}

/// What [`check_text`] looks at before the stream starts.
const HEAD_BYTES: usize = 64 * 1024;

/// A column while it is read: numbers until a cell is not one, then text (the numbers before it written back
/// as text, missing ones as empty cells), so a timestamp or label column keeps its cells as written.
enum Building {
    Num(Vec<f64>),
    Text(Vec<String>),
}

impl Building {
    fn push(&mut self, cell: &str) {
        match self {
            Building::Num(v) => match parse_number(cell) {
                Some(x) => v.push(x),
                None => {
                    let mut text: Vec<String> = v.iter().map(|x| if x.is_nan() { String::new() } else { x.to_string() }).collect();
                    text.push(cell.to_string());
                    *self = Building::Text(text);
                }
            },
            Building::Text(t) => t.push(cell.to_string()),
        }
    }

    fn finish(self) -> RawColumn {
        match self {
            Building::Num(v) => RawColumn::Num(v),
            Building::Text(t) => RawColumn::Text(t),
        }
    }
}

/// Fails the stream at a NUL byte anywhere in the file (the head is checked more thoroughly first).
struct NoNul<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Read for NoNul<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(at) = buf[..n].iter().position(|b| *b == 0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a text file: NUL byte at offset {} (is it binary, or a different format renamed?)", self.offset + at as u64),
            ));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Rows as they are read, split into cells; empty records are skipped.
type Records<'a> = Box<dyn Iterator<Item = Result<Vec<String>, DataError>> + 'a>;

/// The whole file as one frame.
#[cfg(test)]
pub(super) fn read_text(path: &Path, opts: &TextOptions, budget: Budget) -> Result<Frame, DataError> {
    let mut whole = None;
    read_text_chunks(path, opts, budget, usize::MAX, &mut |frame| {
        whole = Some(frame);
        Ok(())
    })?;
    whole.ok_or_else(|| DataError::Format { file: path.to_path_buf(), message: "empty file".into() })
}

/// The file as frames of at most `chunk_rows` rows, in order, each numbered from its own first row; at least
/// one frame (an empty one for a file with a header and no rows), so the column names are always seen.
pub(super) fn read_text_chunks(
    path: &Path,
    opts: &TextOptions,
    budget: Budget,
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(HEAD_BYTES, file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    check_text(path, head)?;
    // Excel and some exporters (AI4I's copy among them) start with a byte-order mark.
    if head.starts_with(b"\xef\xbb\xbf") {
        reader.consume(3);
    }
    let stream = NoNul { inner: reader, offset: 0 };
    let format = |message: String| DataError::Format { file: path.to_path_buf(), message };
    let mut records: Records<'_> = match opts.delimiter {
        Delimiter::Whitespace => {
            let mut lines = BufReader::new(stream);
            let mut line = Vec::new();
            Box::new(std::iter::from_fn(move || {
                loop {
                    line.clear();
                    match lines.read_until(b'\n', &mut line) {
                        Ok(0) => return None,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line);
                            let cells: Vec<String> = text.split_whitespace().map(str::to_string).collect();
                            if !cells.is_empty() {
                                return Some(Ok(cells));
                            }
                        }
                        Err(e) => return Some(Err(format(e.to_string()))),
                    }
                }
            }))
        }
        Delimiter::Byte(b) => {
            let rdr = csv::ReaderBuilder::new().delimiter(b).has_headers(false).flexible(true).from_reader(stream);
            let mut i = 0usize;
            Box::new(rdr.into_byte_records().filter_map(move |rec| {
                i += 1;
                match rec {
                    Ok(rec) => {
                        let cells: Vec<String> = rec.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
                        if cells.iter().all(|c| c.trim().is_empty()) { None } else { Some(Ok(cells)) }
                    }
                    Err(e) => Some(Err(match e.kind() {
                        csv::ErrorKind::Io(io) => format(io.to_string()),
                        _ => format(format!("row {i}: {e}")),
                    })),
                }
            }))
        }
    };
    let (names, first_row) = match (&opts.names, opts.header) {
        (Some(names), header) => {
            if header {
                records.next().transpose()?;
            }
            (names.clone(), if header { 2 } else { 1 })
        }
        (None, true) => {
            let header = records.next().transpose()?.ok_or_else(|| format("empty file".into()))?;
            (header.into_iter().map(|h| h.trim().to_string()).collect::<Vec<_>>(), 2)
        }
        (None, false) => return Err(format("header = false needs `names = [...]` for the columns".into())),
    };
    budget.check(path, 0, names.len())?;
    let empty = || names.iter().map(|_| Building::Num(Vec::new())).collect::<Vec<Building>>();
    let frame = |columns: Vec<Building>, n_rows: usize, first_row: usize| Frame {
        file: path.to_path_buf(),
        names: names.clone(),
        columns: columns.into_iter().map(Building::finish).collect(),
        n_rows,
        first_row,
    };
    let mut columns = empty();
    let (mut n_rows, mut in_chunk, mut chunk_first, mut sent) = (0usize, 0usize, first_row, false);
    for (i, row) in records.enumerate() {
        let row = row?;
        if row.len() != names.len() {
            return Err(format(format!("row {}: {} cells, expected {} ({})", first_row + i, row.len(), names.len(), names.join(", "))));
        }
        n_rows += 1;
        // Refused as soon as the budget is passed, not after the whole file is held.
        budget.check(path, n_rows, names.len())?;
        for (col, cell) in columns.iter_mut().zip(&row) {
            col.push(cell);
        }
        in_chunk += 1;
        if in_chunk == chunk_rows {
            each(frame(std::mem::replace(&mut columns, empty()), in_chunk, chunk_first))?;
            (in_chunk, chunk_first, sent) = (0, first_row + i + 1, true);
        }
    }
    if in_chunk > 0 || !sent {
        each(frame(columns, in_chunk, chunk_first))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TextOptions {
        TextOptions { delimiter: Delimiter::Byte(b','), header: true, names: None }
    }

    #[test]
    fn numbers_become_numbers_and_text_keeps_its_cells() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.csv");
        std::fs::write(&p, "\u{feff}time,x,code\n2026-01-01 00:00,1.50,7\n\n2026-01-01 01:00,,A7\n2026-01-01 02:00,NaN,9\n").unwrap();
        let f = read_text(&p, &opts(), Budget::UNLIMITED).unwrap();
        assert_eq!(f.names, ["time", "x", "code"]);
        assert_eq!(f.n_rows, 3);
        assert!(matches!(&f.columns[0], RawColumn::Text(t) if t[1] == "2026-01-01 01:00"));
        let x = f.numeric(1).unwrap();
        assert_eq!(x[0], 1.5);
        assert!(x[1].is_nan() && x[2].is_nan());
        // A column that turns out to be text keeps the numbers before as text and the cells after as written.
        assert_eq!(f.text(2), ["7", "A7", "9"]);
        let err = f.numeric(2).unwrap_err().to_string();
        assert!(err.contains("row 3") && err.contains("A7"), "{err}");
    }

    #[test]
    fn a_nul_past_the_head_and_a_row_past_the_budget_stop_the_stream() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.csv");
        let mut body = String::from("x,y\n");
        while body.len() < 3 * HEAD_BYTES {
            body.push_str("1,2\n");
        }
        let mut bytes = body.into_bytes();
        bytes.extend(b"3,\x004\n");
        std::fs::write(&p, &bytes).unwrap();
        let err = read_text(&p, &opts(), Budget::UNLIMITED).err().unwrap().to_string();
        assert!(err.contains("NUL byte at offset"), "{err}");
        let q = d.path().join("c.csv");
        std::fs::write(&q, "x\n1\n2\n3\n").unwrap();
        let err = read_text(&q, &opts(), Budget { rows: 2, columns: 10 }).err().unwrap().to_string();
        assert!(err.contains("data.max_rows"), "{err}");
        assert_eq!(read_text(&q, &opts(), Budget { rows: 3, columns: 10 }).unwrap().n_rows, 3);
    }
}
