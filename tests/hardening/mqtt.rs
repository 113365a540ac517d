//! (filled by the mqtt work)
use super::common as _;
