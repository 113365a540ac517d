//! (filled by the access work)
use super::common as _;
