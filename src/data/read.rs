//! Reading one CSV or Parquet file into named columns, before any column has a role.
use super::caps::Budget;
use super::error::DataError;
use super::frame::Frame;
use super::read_text::TextOptions;
use std::path::Path;

/// Reads one file within `budget`, whole.
#[cfg(test)]
pub fn read_file(path: &Path, text: &TextOptions, budget: Budget) -> Result<Frame, DataError> {
    let frame =
        if is_parquet(path) { super::read_parquet::read_parquet(path, budget)? } else { super::read_text::read_text(path, text, budget)? };
    budget.check(path, frame.n_rows, frame.names.len())?;
    Ok(frame)
}

/// Reads one file within `budget` as frames of at most `chunk_rows` rows, handing each to `each` in order
/// (at least one, so the column names are always seen); memory is one chunk, not the file.
pub fn read_file_chunks(
    path: &Path,
    text: &TextOptions,
    budget: Budget,
    chunk_rows: usize,
    each: &mut dyn FnMut(Frame) -> Result<(), DataError>,
) -> Result<(), DataError> {
    if is_parquet(path) {
        super::read_parquet::read_parquet_chunks(path, budget, chunk_rows, each)
    } else {
        super::read_text::read_text_chunks(path, text, budget, chunk_rows, each)
    }
}

/// About how many rows a file holds, without reading it: a Parquet footer's count, or a text file's size over
/// the length of its first lines. 0 when it cannot tell; the real read reports why.
pub fn expected_rows(path: &Path) -> usize {
    if is_parquet(path) {
        return super::read_parquet::footer_rows(path).unwrap_or(0);
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
    let lines = head[..n].iter().filter(|b| **b == b'\n').count().max(1);
    (size as f64 * lines as f64 / n.max(1) as f64) as usize
}

fn is_parquet(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    ext == "parquet" || ext == "pq"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::read_text::Delimiter;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn reads_each_delimiter() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("a.csv", "x,y\n1,2\n3,\n", Delimiter::Byte(b',')),
            ("b.csv", "x;y\n1;2\n3;NaN\n", Delimiter::Byte(b';')),
            ("c.tsv", "x\ty\n1\t2\n3\t\n", Delimiter::Byte(b'\t')),
            ("d.txt", "x y\n1   2  \n 3 nan\n", Delimiter::Whitespace),
        ];
        for (name, body, delim) in cases {
            let p = write(d.path(), name, body);
            let f = read_file(&p, &TextOptions { delimiter: delim, header: true, names: None }, Budget::UNLIMITED).unwrap();
            assert_eq!(f.names, ["x", "y"], "{name}");
            let y = f.numeric(1).unwrap();
            assert_eq!(y[0], 2.0);
            assert!(y[1].is_nan(), "{name}");
        }
    }

    #[test]
    fn unparsable_cell_names_file_row_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "bad.csv", "t,temp\n1,20\n2,warm\n");
        let f = read_file(&p, &TextOptions { delimiter: Delimiter::Byte(b','), header: true, names: None }, Budget::UNLIMITED).unwrap();
        let msg = f.numeric(1).unwrap_err().to_string();
        assert!(msg.contains("bad.csv") && msg.contains("row 3") && msg.contains("\"temp\"") && msg.contains("warm"), "{msg}");
        let p = write(d.path(), "inf.csv", "t,temp\n1,inf\n");
        let f = read_file(&p, &TextOptions { delimiter: Delimiter::Byte(b','), header: true, names: None }, Budget::UNLIMITED).unwrap();
        assert!(f.numeric(1).is_err());
    }

    #[test]
    fn ragged_rows_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "r.csv", "a,b\n1,2\n3\n");
        let err =
            read_file(&p, &TextOptions { delimiter: Delimiter::Byte(b','), header: true, names: None }, Budget::UNLIMITED).err().unwrap();
        assert!(err.to_string().contains("row 3"), "{err}");
    }
}
