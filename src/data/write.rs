//! Writing a table of columns as CSV or Parquet (the simulator's output, test fixtures, exports).
use super::error::DataError;
use parquet::data_type::{DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Columns to write: a timestamp column (epoch seconds) named `timestamp`, then named f64 columns.
pub struct OutTable<'a> {
    pub timestamps: &'a [f64],
    pub columns: Vec<(&'a str, &'a [f64])>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

pub fn write_table(path: &Path, table: &OutTable<'_>, format: Format) -> Result<(), DataError> {
    check_lengths(path, table)?;
    match format {
        Format::Csv => write_csv(path, table),
        Format::Parquet => write_parquet(path, table),
    }
}

fn check_lengths(path: &Path, t: &OutTable<'_>) -> Result<(), DataError> {
    match t.columns.iter().find(|(_, c)| c.len() != t.timestamps.len()) {
        Some((name, c)) => Err(DataError::Format {
            file: path.to_path_buf(),
            message: format!("column {name} has {} values for {} timestamps", c.len(), t.timestamps.len()),
        }),
        None => Ok(()),
    }
}

fn write_csv(path: &Path, t: &OutTable<'_>) -> Result<(), DataError> {
    let io = |e| DataError::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let header: Vec<&str> = std::iter::once("timestamp").chain(t.columns.iter().map(|(n, _)| *n)).collect();
    writeln!(w, "{}", header.join(",")).map_err(io)?;
    for (i, ts) in t.timestamps.iter().enumerate() {
        write!(w, "{}", crate::util::time::format_timestamp(*ts)).map_err(io)?;
        for (_, col) in &t.columns {
            let v = col[i];
            if v.is_nan() { write!(w, ",").map_err(io)? } else { write!(w, ",{}", round_sig(v)).map_err(io)? }
        }
        writeln!(w).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Six significant digits: sensor noise is far larger, and the files stay small.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = 10f64.powi(5 - v.abs().log10().floor() as i32);
    (v * mag).round() / mag
}

fn write_parquet(path: &Path, t: &OutTable<'_>) -> Result<(), DataError> {
    let pq = |e: parquet::errors::ParquetError| DataError::Format { file: path.to_path_buf(), message: e.to_string() };
    let mut fields = vec![Arc::new(
        Type::primitive_type_builder("timestamp", parquet::basic::Type::INT64)
            .with_repetition(parquet::basic::Repetition::REQUIRED)
            .with_logical_type(Some(parquet::basic::LogicalType::Timestamp(parquet::basic::TimestampType {
                is_adjusted_to_u_t_c: true,
                unit: parquet::basic::TimeUnit::MICROS,
            })))
            .build()
            .map_err(pq)?,
    )];
    for (name, _) in &t.columns {
        fields.push(Arc::new(
            Type::primitive_type_builder(name, parquet::basic::Type::DOUBLE)
                .with_repetition(parquet::basic::Repetition::REQUIRED)
                .build()
                .map_err(pq)?,
        ));
    }
    let schema = Arc::new(Type::group_type_builder("schema").with_fields(fields).build().map_err(pq)?);
    let props = Arc::new(WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build());
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(pq)?;
    let mut rg = writer.next_row_group().map_err(pq)?;
    let micros: Vec<i64> = t.timestamps.iter().map(|s| (s * 1e6).round() as i64).collect();
    if let Some(mut col) = rg.next_column().map_err(pq)? {
        col.typed::<Int64Type>().write_batch(&micros, None, None).map_err(pq)?;
        col.close().map_err(pq)?;
    }
    for (_, values) in &t.columns {
        if let Some(mut col) = rg.next_column().map_err(pq)? {
            col.typed::<DoubleType>().write_batch(values, None, None).map_err(pq)?;
            col.close().map_err(pq)?;
        }
    }
    rg.close().map_err(pq)?;
    writer.close().map_err(pq)?;
    Ok(())
}
