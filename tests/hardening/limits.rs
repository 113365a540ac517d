//! (filled by the limits work)
use super::common as _;
