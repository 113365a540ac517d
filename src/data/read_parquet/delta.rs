//! The delta encodings' value counts, checked before the parquet crate reserves them. Its decoders for
//! DELTA_LENGTH_BYTE_ARRAY and DELTA_BYTE_ARRAY size a buffer from the count written inside the page's data
//! (`Vec::resize`), which nothing else bounds: ten bytes of varint ask for exabytes, and a few bytes less for
//! an allocation a Pi cannot make, which aborts the daemon instead of refusing the file.
use super::thrift::Reader;
use parquet::basic::Encoding;
use parquet::column::page::Page;

/// Checks every delta-encoded block header in a data page's values: each may count at most the page's
/// values (nulls included, so never fewer than the values written).
pub(super) fn check_page(page: &Page, max_rep: i16, max_def: i16) -> Result<(), String> {
    let (values, encoding, num_values) = match page {
        Page::DataPage { buf, num_values, encoding, def_level_encoding, rep_level_encoding, .. } => {
            let levels = [(max_rep, *rep_level_encoding), (max_def, *def_level_encoding)];
            let Some(start) = v1_levels_len(buf, &levels, *num_values) else {
                return Err("a data page's levels run past its end (damaged Parquet data)".into());
            };
            (buf.get(start..).unwrap_or_default(), *encoding, *num_values)
        }
        Page::DataPageV2 { buf, num_values, encoding, def_levels_byte_len, rep_levels_byte_len, .. } => {
            let start = usize::try_from(u64::from(*def_levels_byte_len) + u64::from(*rep_levels_byte_len)).unwrap_or(usize::MAX);
            (buf.get(start..).unwrap_or_default(), *encoding, *num_values)
        }
        Page::DictionaryPage { .. } => return Ok(()),
    };
    let headers = match encoding {
        Encoding::DELTA_BINARY_PACKED | Encoding::DELTA_LENGTH_BYTE_ARRAY => 1,
        // Prefix lengths, then the suffixes as DELTA_LENGTH_BYTE_ARRAY.
        Encoding::DELTA_BYTE_ARRAY => 2,
        _ => return Ok(()),
    };
    let mut r = Reader::new(values);
    for k in 1..=headers {
        // A run is walked to its end only to find the next one: the crate reads the last run lazily, and a
        // writer's padding there is no concern of this check.
        check_run(&mut r, num_values, k < headers)?;
    }
    Ok(())
}

/// The bytes a version-1 page's repetition and definition levels take before its values.
fn v1_levels_len(buf: &[u8], levels: &[(i16, Encoding)], num_values: u32) -> Option<usize> {
    let mut at = 0usize;
    for &(max, encoding) in levels.iter().filter(|(max, _)| *max > 0) {
        at = at.checked_add(match encoding {
            // RLE levels carry their length in 4 bytes.
            Encoding::RLE => {
                let len = buf.get(at..at.checked_add(4)?)?;
                4 + usize::try_from(u32::from_le_bytes([len[0], len[1], len[2], len[3]])).ok()?
            }
            // The deprecated bit-packed levels take a fixed width per value.
            _ => {
                let width = u64::from(16 - max.leading_zeros());
                usize::try_from((u64::from(num_values) * width).div_ceil(8)).ok()?
            }
        })?;
    }
    (at <= buf.len()).then_some(at)
}

/// Reads one DELTA_BINARY_PACKED run's header, and with `walk` its blocks too, leaving `r` after it, when it
/// counts at most `num_values` values.
fn check_run(r: &mut Reader<'_>, num_values: u32, walk: bool) -> Result<(), String> {
    let damaged = || "a delta-encoded page does not parse (damaged Parquet data)".to_string();
    let mut header = || Some((r.varint()?, r.varint()?, r.varint()?, r.zigzag()?));
    let Some((block_size, minis, total, _first)) = header() else {
        return Err(damaged());
    };
    if total > u64::from(num_values) {
        return Err(format!("a delta-encoded page claims {total} values among {num_values} (damaged Parquet data)"));
    }
    if walk { skip_blocks(r, block_size, minis, total).ok_or_else(damaged) } else { Ok(()) }
}

/// Every block consumes at least its min-delta byte, and the count was bounded by the page's values.
fn skip_blocks(r: &mut Reader<'_>, block_size: u64, minis: u64, total: u64) -> Option<()> {
    if minis == 0 || block_size == 0 || !block_size.is_multiple_of(minis) {
        return None;
    }
    let per_mini = block_size / minis;
    let mut left = total.saturating_sub(1);
    while left > 0 {
        r.zigzag()?;
        let widths = r.rest().get(..usize::try_from(minis).ok()?)?;
        r.skip_bytes(minis)?;
        let mut bytes = 0u64;
        for &w in widths {
            // Widths of miniblocks past the last value are written but hold nothing.
            if left > 0 {
                bytes = bytes.checked_add(u64::from(w).checked_mul(per_mini)? / 8)?;
            }
            left = left.saturating_sub(per_mini);
        }
        r.skip_bytes(bytes)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn uleb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A DELTA_BINARY_PACKED run claiming `total` values, with `blocks` blocks of equal values (every
    /// miniblock 0 bits wide): an honest run has (total - 1) / 128 of them, rounded up.
    fn run(total: u64, blocks: u64, out: &mut Vec<u8>) {
        uleb(128, out);
        uleb(4, out);
        uleb(total, out);
        uleb(0, out);
        for _ in 0..blocks {
            out.extend([0, 0, 0, 0, 0]);
        }
    }

    fn page(buf: Vec<u8>, num_values: u32, encoding: Encoding) -> Page {
        Page::DataPage {
            buf: Bytes::from(buf),
            num_values,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        }
    }

    #[test]
    fn honest_counts_pass_and_forged_ones_are_refused() {
        // A required column: values straight away.
        let mut honest = Vec::new();
        run(300, 3, &mut honest);
        honest.extend([b'a'; 300]);
        assert!(check_page(&page(honest.clone(), 300, Encoding::DELTA_LENGTH_BYTE_ARRAY), 0, 0).is_ok());
        let err = check_page(&page(honest, 299, Encoding::DELTA_LENGTH_BYTE_ARRAY), 0, 0).unwrap_err();
        assert!(err.contains("claims 300 values among 299"), "{err}");
        // The suffix run of DELTA_BYTE_ARRAY follows the prefix run's blocks: found and checked too.
        let mut two = Vec::new();
        run(300, 3, &mut two);
        run(1 << 40, 0, &mut two);
        let err = check_page(&page(two, 300, Encoding::DELTA_BYTE_ARRAY), 0, 0).unwrap_err();
        assert!(err.contains("claims 1099511627776 values among 300"), "{err}");
        // An optional column: 4 bytes of RLE length and the definition levels come first.
        let mut optional = vec![2, 0, 0, 0, 0x06, 0x01];
        run(u64::MAX >> 1, 0, &mut optional);
        let err = check_page(&page(optional, 3, Encoding::DELTA_BINARY_PACKED), 0, 1).unwrap_err();
        assert!(err.contains("among 3"), "{err}");
        // A header cut short, and levels longer than the page.
        assert!(check_page(&page(vec![0x80], 3, Encoding::DELTA_BINARY_PACKED), 0, 0).unwrap_err().contains("does not parse"));
        assert!(check_page(&page(vec![9, 0, 0, 0, 1], 3, Encoding::DELTA_BINARY_PACKED), 0, 1).unwrap_err().contains("levels"));
        // Other encodings are not the concern here.
        assert!(check_page(&page(vec![0xff; 8], 3, Encoding::PLAIN), 0, 0).is_ok());
    }

    /// Files the parquet writer makes with every delta encoding, nulls among the values, in version-1 and
    /// version-2 pages, pass the check and load.
    #[test]
    fn real_delta_encoded_files_load() {
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use parquet::file::properties::{WriterProperties, WriterVersion};
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let schema = "message schema { required int64 timestamp; optional binary unit (UTF8); optional binary code (UTF8); \
                      optional int64 count; }";
        let n = 5_000i64;
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            let p = d.path().join(format!("{version:?}.parquet"));
            let props = WriterProperties::builder()
                .set_writer_version(version)
                .set_dictionary_enabled(false)
                .set_data_page_row_count_limit(1_000)
                .set_column_encoding("unit".into(), Encoding::DELTA_LENGTH_BYTE_ARRAY)
                .set_column_encoding("code".into(), Encoding::DELTA_BYTE_ARRAY)
                .set_column_encoding("count".into(), Encoding::DELTA_BINARY_PACKED)
                .build();
            let file = std::fs::File::create(&p).unwrap();
            let mut w = SerializedFileWriter::new(file, Arc::new(parse_message_type(schema).unwrap()), Arc::new(props)).unwrap();
            let mut rg = w.next_row_group().unwrap();
            // Every seventh value is null.
            let def: Vec<i16> = (0..n).map(|i| i16::from(i % 7 != 0)).collect();
            let texts: Vec<ByteArray> =
                (0..n).filter(|i| i % 7 != 0).map(|i| ByteArray::from(format!("unit-{}", i / 100).as_str())).collect();
            let counts: Vec<i64> = (0..n).filter(|i| i % 7 != 0).map(|i| i * i % 1_000).collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<Int64Type>().write_batch(&(0..n).collect::<Vec<_>>(), None, None).unwrap();
            c.close().unwrap();
            for _ in 0..2 {
                let mut c = rg.next_column().unwrap().unwrap();
                c.typed::<ByteArrayType>().write_batch(&texts, Some(&def), None).unwrap();
                c.close().unwrap();
            }
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<Int64Type>().write_batch(&counts, Some(&def), None).unwrap();
            c.close().unwrap();
            rg.close().unwrap();
            w.close().unwrap();
            let f = super::super::read_parquet(&p, crate::data::caps::Budget::UNLIMITED).unwrap();
            assert_eq!(f.n_rows, 5_000, "{version:?}");
            assert_eq!(f.text(1)[8], "unit-0", "{version:?}");
            let counts = f.numeric(3).unwrap();
            assert!(counts[0].is_nan() && counts[3] == 9.0, "{version:?}");
        }
    }
}
