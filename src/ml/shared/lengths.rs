//! The one length check for per-row inputs (a column against the table, readings against a spec). Features and
//! splits word a mismatch in their own errors, so the check hands back the facts and each converts them.

/// `what` holds `got` entries where `expected` are due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LengthMismatch {
    pub what: String,
    pub expected: usize,
    pub got: usize,
}

pub fn check_len(what: &str, expected: usize, got: usize) -> Result<(), LengthMismatch> {
    if expected == got { Ok(()) } else { Err(LengthMismatch { what: what.to_string(), expected, got }) }
}
