use super::error::DataError;

/// A validated machine id: `^[a-z0-9][a-z0-9_-]{0,63}$`, so it is safe as a folder name and an MQTT topic level.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MachineId(String);

impl MachineId {
    pub fn parse(id: &str) -> Result<MachineId, DataError> {
        let bytes = id.as_bytes();
        let first_ok = bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= 64 {
            Ok(MachineId(id.to_string()))
        } else {
            Err(DataError::InvalidMachineId { id: id.to_string() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_the_rest() {
        for ok in ["motor_siemens_1la7_001", "a", "0-x", &"a".repeat(64)] {
            assert!(MachineId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../etc", "%2e%2e", "a/b", "a+b", "a#b", "Motor", "_x", "-x", "é", "a\0b", "a b", &"a".repeat(65)] {
            assert!(MachineId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
