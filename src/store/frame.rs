//! How one job record is laid out in sled: `MWJ\x01`, the revision of the write (u64 LE), a CRC-32 over the
//! revision and the payload (u32 LE), then the payload (the job as JSON).
//!
//! sled checks its own log, but a record it hands back is trusted blindly; the checksum lets the store tell a
//! damaged record from a good one instead of dropping it silently later. The revision is the store's write
//! counter at the time: comparing it with the backup's tells which copy of a record is newer.
//!
//! Records written before this framing existed are bare JSON objects; they are read as revision 0.
use crate::ml::bundle::crc32;

const MAGIC: &[u8; 4] = b"MWJ\x01";
const HEADER: usize = 16;

/// A record read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Framed {
    pub revision: u64,
    pub payload: Vec<u8>,
}

pub fn encode(revision: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&checksum(revision, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The CRC-32 a frame carries (also used per record in the backup).
pub fn checksum(revision: u64, payload: &[u8]) -> u32 {
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&revision.to_le_bytes());
    bytes.extend_from_slice(payload);
    crc32(&bytes)
}

/// The record, or why it cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<Framed, String> {
    if bytes.first() == Some(&b'{') {
        return Ok(Framed { revision: 0, payload: bytes.to_vec() });
    }
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(format!("not a job record ({} bytes, unknown header)", bytes.len()));
    }
    let revision = u64::from_le_bytes(bytes[4..12].try_into().unwrap_or_default());
    let stored = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    let payload = &bytes[HEADER..];
    if checksum(revision, payload) != stored {
        return Err(format!("checksum mismatch ({} bytes)", bytes.len()));
    }
    Ok(Framed { revision, payload: payload.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_bare_json_as_revision_zero() {
        let f = decode(&encode(42, br#"{"id":"a"}"#)).unwrap();
        assert_eq!(f, Framed { revision: 42, payload: br#"{"id":"a"}"#.to_vec() });
        assert_eq!(decode(br#"{"id":"old"}"#).unwrap().revision, 0);
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        let good = encode(7, br#"{"id":"a","state":"PENDING"}"#);
        for at in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                assert!(decode(&bad).is_err() || bad[0] == b'{', "a change at byte {at} went unnoticed");
            }
        }
        assert!(decode(&good[..10]).is_err());
        assert!(decode(b"").is_err());
    }
}
