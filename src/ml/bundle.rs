//! The on-disk model bundle: one self-checking file per trained model.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic           8 bytes  b"MWMODEL\0"
//! format_version  u32
//! header_len      u32, then header_len bytes of JSON (BundleHeader)
//! payload_len     u64, then payload_len bytes (the model, encoded by the caller)
//! crc32           u32      CRC-32/IEEE over every byte before it
//! ```
//! The version sits right after the magic and is checked before anything else, so a future format may
//! change everything behind it and an older millwright still refuses it with a clear message.
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const MAGIC: [u8; 8] = *b"MWMODEL\0";
/// The version this millwright writes. 3: the anomaly model gained its alarm confirmation (k of n).
/// 4: the header may name a training grid; a millwright that ignored it would feed raw readings to a model
/// trained on grid steps, so older ones must refuse these files (the payload is encoded as in 3).
/// 5: the anomaly model may judge readings against a trailing reference.
pub const FORMAT_VERSION: u32 = 5;
/// The oldest version it still reads (the payload decoder turns older payloads into today's types).
pub const OLDEST_READABLE: u32 = 2;

fn readable(version: u32) -> bool {
    (OLDEST_READABLE..=FORMAT_VERSION).contains(&version)
}

/// Magic, version and header length: enough to know whether the rest is worth reading.
const PREFIX_LEN: usize = 8 + 4 + 4;
const PAYLOAD_LEN_LEN: usize = 8;
const CRC_LEN: usize = 4;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BundleHeader {
    pub format_version: u32,
    /// "classification" | "regression" | "anomaly" | "timeseries"
    pub model_type: String,
    /// `env!("CARGO_PKG_VERSION")` of the millwright that trained the model.
    pub millwright_version: String,
    pub machine_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// The caller's FeatureSpec as JSON.
    pub feature_spec: serde_json::Value,
    /// See [`fingerprint`].
    pub data_fingerprint: String,
    /// Headline test metrics.
    pub metrics: serde_json::Value,
    /// How the payload is encoded, e.g. "postcard".
    pub payload_encoding: String,
    /// The training grid: readings are aggregated onto it before the model sees them (format 4 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<crate::data::grid::Grid>,
    /// Each sensor's training distribution ([`super::drift`]); older bundles have none (no drift is judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<super::drift::Profile>,
}

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("not a millwright model file")]
    NotABundle,
    #[error(
        "model file format version {found} is not supported: millwright {} reads format versions {OLDEST_READABLE} to {supported}; \
         retrain the model with this millwright, or load it with a millwright release that reads format version {found}",
        env!("CARGO_PKG_VERSION")
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("model file is truncated — it ends before its declared contents")]
    Truncated,
    #[error("checksum mismatch — the file is damaged")]
    Corrupt,
    #[error("model header is invalid: {0}")]
    Header(#[from] serde_json::Error),
    #[error("model bundle too large: the {part} is {len} bytes, the format allows at most {max}")]
    TooLarge { part: &'static str, len: u64, max: u64 },
}

impl BundleError {
    fn io(path: &Path, source: io::Error) -> Self {
        BundleError::Io { path: path.to_path_buf(), source }
    }
}

/// Serialises a bundle. `header.format_version` must be [`FORMAT_VERSION`]: writing a header that claims
/// another version would make the file lie about its own layout.
pub fn encode(header: &BundleHeader, payload: &[u8]) -> Result<Vec<u8>, BundleError> {
    let (json, header_len) = header_json(header)?;
    let mut out = Vec::with_capacity(framed_len(json.len(), payload.len() as u64) as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// What [`encode`] would return the length of, for a payload of `payload_len` bytes: the payload need not exist.
pub fn encoded_len(header: &BundleHeader, payload_len: u64) -> Result<u64, BundleError> {
    let (json, _) = header_json(header)?;
    Ok(framed_len(json.len(), payload_len))
}

/// The header as JSON with its length as the frame stores it, refused when the version or the length is wrong.
fn header_json(header: &BundleHeader) -> Result<(Vec<u8>, u32), BundleError> {
    if header.format_version != FORMAT_VERSION {
        return Err(BundleError::UnsupportedVersion { found: header.format_version, supported: FORMAT_VERSION });
    }
    let json = serde_json::to_vec(header)?;
    let header_len = u32::try_from(json.len()).map_err(|_| BundleError::TooLarge {
        part: "header",
        len: json.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    Ok((json, header_len))
}

fn framed_len(header_len: usize, payload_len: u64) -> u64 {
    (PREFIX_LEN + header_len + PAYLOAD_LEN_LEN + CRC_LEN) as u64 + payload_len
}

/// Parses and verifies a bundle: magic, version, lengths, checksum, then the header JSON.
pub fn decode(bytes: &[u8]) -> Result<(BundleHeader, Vec<u8>), BundleError> {
    let header_len = check_prefix(bytes)?;
    let len = bytes.len() as u64;
    // All length arithmetic is in u64 with checked adds, so a corrupt length can neither overflow nor
    // trigger an allocation: everything is compared against bytes.len() before it is sliced.
    let payload_len_at = (PREFIX_LEN as u64).checked_add(header_len).ok_or(BundleError::Truncated)?;
    let payload_at = payload_len_at.checked_add(PAYLOAD_LEN_LEN as u64).ok_or(BundleError::Truncated)?;
    if payload_at > len {
        return Err(BundleError::Truncated);
    }
    let payload_len = read_u64(bytes, payload_len_at as usize);
    let crc_at = payload_at.checked_add(payload_len).ok_or(BundleError::Truncated)?;
    let end = crc_at.checked_add(CRC_LEN as u64).ok_or(BundleError::Truncated)?;
    if end > len {
        return Err(BundleError::Truncated);
    }
    if end < len {
        // Trailing bytes mean the framing and the file disagree; nothing written by encode looks like that.
        return Err(BundleError::Corrupt);
    }
    // Every offset is now ≤ bytes.len(), so the casts below are lossless even on a 32-bit Pi.
    let (crc_at, payload_at, payload_len_at) = (crc_at as usize, payload_at as usize, payload_len_at as usize);
    let stored = read_u32(bytes, crc_at);
    if crc32(&bytes[..crc_at]) != stored {
        return Err(BundleError::Corrupt);
    }
    let header = parse_header(&bytes[PREFIX_LEN..payload_len_at])?;
    Ok((header, bytes[payload_at..crc_at].to_vec()))
}

pub fn read(path: &Path) -> Result<(BundleHeader, Vec<u8>), BundleError> {
    let bytes = std::fs::read(path).map_err(|e| BundleError::io(path, e))?;
    decode(&bytes)
}

/// Reads the header without the payload, for listing models cheaply. The checksum is not verified (that
/// needs the whole file), but the declared lengths are checked against the file size, so a truncated
/// file is still refused and a corrupt header length cannot cause a huge allocation.
pub fn read_header(path: &Path) -> Result<BundleHeader, BundleError> {
    let io_err = |e| BundleError::io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();

    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    (&mut file).take(PREFIX_LEN as u64).read_to_end(&mut prefix).map_err(io_err)?;
    let header_len = check_prefix(&prefix)?;

    let payload_at =
        (PREFIX_LEN as u64).checked_add(header_len).and_then(|n| n.checked_add(PAYLOAD_LEN_LEN as u64)).ok_or(BundleError::Truncated)?;
    if payload_at > file_len {
        return Err(BundleError::Truncated);
    }
    // header_len ≤ file_len, and the file was just read up to here, so this fits in memory terms.
    let mut rest = vec![0u8; header_len as usize + PAYLOAD_LEN_LEN];
    file.read_exact(&mut rest).map_err(|e| match e.kind() {
        // The file shrank between metadata() and the read.
        io::ErrorKind::UnexpectedEof => BundleError::Truncated,
        _ => BundleError::io(path, e),
    })?;
    let header_len = header_len as usize;
    let payload_len = read_u64(&rest, header_len);
    let end = payload_at.checked_add(payload_len).and_then(|n| n.checked_add(CRC_LEN as u64)).ok_or(BundleError::Truncated)?;
    if end > file_len {
        return Err(BundleError::Truncated);
    }
    if end < file_len {
        return Err(BundleError::Corrupt);
    }
    parse_header(&rest[..header_len])
}

/// Checks magic and version and returns the declared header length. Works on any prefix of a file, so
/// `read_header` can use it on the first few bytes and a short file is reported as truncated, not foreign.
fn check_prefix(bytes: &[u8]) -> Result<u64, BundleError> {
    let seen = bytes.len().min(MAGIC.len());
    if bytes[..seen] != MAGIC[..seen] {
        return Err(BundleError::NotABundle);
    }
    if bytes.len() < MAGIC.len() + 4 {
        return Err(BundleError::Truncated);
    }
    let version = read_u32(bytes, MAGIC.len());
    if !readable(version) {
        return Err(BundleError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    if bytes.len() < PREFIX_LEN {
        return Err(BundleError::Truncated);
    }
    Ok(u64::from(read_u32(bytes, MAGIC.len() + 4)))
}

fn parse_header(json: &[u8]) -> Result<BundleHeader, BundleError> {
    let header: BundleHeader = serde_json::from_slice(json)?;
    // The binary version field was already checked; a header outside the readable range was not written by encode.
    if !readable(header.format_version) {
        return Err(BundleError::UnsupportedVersion { found: header.format_version, supported: FORMAT_VERSION });
    }
    Ok(header)
}

/// Callers guarantee `at + 4 <= bytes.len()`.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Callers guarantee `at + 8 <= bytes.len()`.
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Built at compile time so no runtime initialisation (or lazy static) is needed.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32/IEEE (the zlib/PNG one). It detects every error burst of up to 32 bits, hence every
/// single-byte change anywhere in a bundle.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC32_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FINGERPRINT_SAMPLE: usize = 10_000;

struct Fnv1a(u64);

impl Fnv1a {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
    // Fixed-width LE so the fingerprint is the same on 32- and 64-bit machines.
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// A stable fingerprint of training data: FNV-1a 64 over the row count, sensor names and the bit patterns of
/// a strided sample of ≤ 10,000 values per column; 16 hex digits.
///
/// Names and columns are length-prefixed so ("ab", "c") and ("a", "bc") differ. Every NaN hashes as the
/// canonical quiet NaN: x86 and ARM produce NaNs with different sign bits from the same arithmetic, and a
/// model trained on the Pi must match a fingerprint computed on a laptop.
pub fn fingerprint(n_rows: usize, columns: &[(&str, &[f64])]) -> String {
    let mut h = Fnv1a(FNV_OFFSET);
    h.u64(n_rows as u64);
    h.u64(columns.len() as u64);
    for (name, values) in columns {
        h.u64(name.len() as u64);
        h.bytes(name.as_bytes());
        h.u64(values.len() as u64);
        // Ceiling division keeps the sample at or under the cap while spreading it over the whole column.
        let step = values.len().div_ceil(FINGERPRINT_SAMPLE).max(1);
        for v in values.iter().step_by(step) {
            let bits = if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() };
            h.u64(bits);
        }
    }
    format!("{:016x}", h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BundleHeader {
        BundleHeader {
            format_version: FORMAT_VERSION,
            model_type: "regression".into(),
            millwright_version: env!("CARGO_PKG_VERSION").into(),
            machine_id: "press-7".into(),
            created_at: "2025-01-02T03:04:05Z".into(),
            feature_spec: serde_json::json!({"window": 30, "sensors": ["t", "p"]}),
            data_fingerprint: "0123456789abcdef".into(),
            metrics: serde_json::json!({"rmse": 1.25}),
            payload_encoding: "postcard".into(),
            grid: None,
            profile: None,
        }
    }

    fn small_bundle() -> (BundleHeader, Vec<u8>, Vec<u8>) {
        let h = header();
        let payload: Vec<u8> = (0..40u8).collect();
        let bytes = encode(&h, &payload).unwrap();
        (h, payload, bytes)
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip() {
        let (h, payload, bytes) = small_bundle();
        assert_eq!(&bytes[..8], b"MWMODEL\0");
        assert_eq!(decode(&bytes).unwrap(), (h.clone(), payload));
        let empty = encode(&h, &[]).unwrap();
        assert_eq!(decode(&empty).unwrap(), (h, Vec::new()));
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        let (_, _, bytes) = small_bundle();
        let mut damaged = bytes.clone();
        for i in 0..bytes.len() {
            for mask in 1..=255u8 {
                damaged[i] = bytes[i] ^ mask;
                match decode(&damaged) {
                    Err(
                        BundleError::NotABundle
                        | BundleError::UnsupportedVersion { .. }
                        | BundleError::Truncated
                        | BundleError::Corrupt
                        | BundleError::Header(_),
                    ) => {}
                    other => panic!("byte {i} ^ {mask:#04x} not detected: {other:?}"),
                }
            }
            damaged[i] = bytes[i];
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let (_, _, bytes) = small_bundle();
        for n in 0..bytes.len() {
            match decode(&bytes[..n]) {
                Err(BundleError::Truncated) => {}
                other => panic!("truncated to {n} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let (_, _, mut bytes) = small_bundle();
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(BundleError::Corrupt)));
    }

    #[test]
    fn foreign_file_is_not_a_bundle() {
        let err = decode(b"PAR1 this is parquet, honest").unwrap_err();
        assert!(matches!(err, BundleError::NotABundle));
        assert_eq!(err.to_string(), "not a millwright model file");
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        let (_, _, bytes) = small_bundle();
        let mut b = bytes.clone();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&b), Err(BundleError::Truncated)));
        let header_len = read_u32(&bytes, 12) as usize;
        let mut b = bytes.clone();
        b[PREFIX_LEN + header_len..PREFIX_LEN + header_len + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&b), Err(BundleError::Truncated)));
    }

    /// A well-formed file (valid checksum) from a future millwright.
    fn future_version_file() -> Vec<u8> {
        let (_, _, mut bytes) = small_bundle();
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let at = bytes.len() - 4;
        let crc = crc32(&bytes[..at]);
        bytes[at..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_future_version_is_refused_with_both_versions_named() {
        let err = decode(&future_version_file()).unwrap_err();
        assert!(
            matches!(err, BundleError::UnsupportedVersion { found, supported } if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("version {}", FORMAT_VERSION + 1)), "{msg}");
        assert!(msg.contains(&format!("versions {OLDEST_READABLE} to {FORMAT_VERSION}")), "{msg}");
        assert!(msg.contains("retrain"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("future.mwm");
        std::fs::write(&p, future_version_file()).unwrap();
        assert!(
            matches!(read_header(&p), Err(BundleError::UnsupportedVersion { found, supported }) if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION)
        );
        assert!(
            matches!(read(&p), Err(BundleError::UnsupportedVersion { found, supported }) if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION)
        );
    }

    #[test]
    fn encode_refuses_a_header_claiming_another_version() {
        let mut h = header();
        h.format_version = FORMAT_VERSION + 1;
        assert!(
            matches!(encode(&h, b"x"), Err(BundleError::UnsupportedVersion { found, supported }) if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION)
        );
    }

    #[test]
    fn encoded_len_is_the_length_encode_returns() {
        let mut h = header();
        for payload_len in [0usize, 1, 40, 100_000] {
            let payload = vec![7u8; payload_len];
            assert_eq!(encoded_len(&h, payload_len as u64).unwrap(), encode(&h, &payload).unwrap().len() as u64, "{payload_len}");
        }
        // The header is JSON of any length: a longer one moves every later part.
        h.metrics = serde_json::json!({ "per_sensor": vec!["ünïcode sensor name"; 500] });
        assert_eq!(encoded_len(&h, 3).unwrap(), encode(&h, b"abc").unwrap().len() as u64);
        h.format_version = FORMAT_VERSION + 1;
        assert!(
            matches!(encoded_len(&h, 3), Err(BundleError::UnsupportedVersion { found, supported }) if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION)
        );
    }

    #[test]
    fn read_names_the_file_it_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/model.mwm");
        let err = read(&p).unwrap_err();
        assert!(matches!(err, BundleError::Io { .. }));
        assert!(err.to_string().contains("model.mwm"), "{err}");
        let p = dir.path().join("model.mwm");
        let (h, payload, bytes) = small_bundle();
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p).unwrap(), (h.clone(), payload));
        assert_eq!(read_header(&p).unwrap(), h);
    }

    #[test]
    fn read_header_refuses_truncated_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.mwm");
        let (h, _, bytes) = small_bundle();
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_header(&p).unwrap(), h);
        for n in [0, 5, 8, 12, 16, 40, bytes.len() - 1] {
            std::fs::write(&p, &bytes[..n]).unwrap();
            assert!(matches!(read_header(&p), Err(BundleError::Truncated)), "cut at {n}");
        }
        std::fs::write(&p, b"hello, world").unwrap();
        assert!(matches!(read_header(&p), Err(BundleError::NotABundle)));
        let missing = dir.path().join("missing.mwm");
        assert!(matches!(read_header(&missing), Err(BundleError::Io { .. })));
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let t: Vec<f64> = (0..50_000).map(|i| (i as f64 * 0.01).sin()).collect();
        let p: Vec<f64> = (0..50_000).map(|i| i as f64).collect();
        let fp = fingerprint(50_000, &[("t", &t), ("p", &p)]);
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(fp, fingerprint(50_000, &[("t", &t), ("p", &p)]));

        // Step for 50,000 values is 5, so index 0 and 5 are sampled.
        let mut p2 = p.clone();
        p2[5] += 1e-9;
        assert_ne!(fp, fingerprint(50_000, &[("t", &t), ("p", &p2)]));
        assert_ne!(fp, fingerprint(49_999, &[("t", &t), ("p", &p)]));
        assert_ne!(fp, fingerprint(50_000, &[("T", &t), ("p", &p)]));
        assert_ne!(fp, fingerprint(50_000, &[("p", &p), ("t", &t)]));

        // Small columns are hashed in full, so any change shows.
        let small = [1.0, 2.0, 3.0];
        let small2 = [1.0, 2.0, 3.5];
        assert_ne!(fingerprint(3, &[("a", &small)]), fingerprint(3, &[("a", &small2)]));
        // Length prefixes keep name boundaries apart.
        let e: [f64; 0] = [];
        assert_ne!(fingerprint(0, &[("ab", &e), ("c", &e)]), fingerprint(0, &[("a", &e), ("bc", &e)]));
        // Any NaN hashes alike.
        let nan_a = [f64::from_bits(0x7FF8_0000_0000_0000)];
        let nan_b = [f64::from_bits(0xFFF8_0000_0000_0001)];
        assert_eq!(fingerprint(1, &[("a", &nan_a)]), fingerprint(1, &[("a", &nan_b)]));
    }

    #[test]
    fn fingerprint_known_value() {
        // Pins the algorithm: a change here silently invalidates every stored fingerprint.
        let a = [1.0, -0.0, f64::NAN, 1e300];
        let b: Vec<f64> = (0..25_001).map(|i| i as f64 * 0.5).collect();
        assert_eq!(fingerprint(25_001, &[("temp_c", &a), ("rpm", &b)]), "9c91d3989fb43ecf");
        // FNV-1a 64 reference vector.
        let mut h = Fnv1a(FNV_OFFSET);
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }
}
