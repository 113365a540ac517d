//! (filled by the http work)
use super::common as _;
