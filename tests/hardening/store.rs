//! (filled by the store work)
use super::common as _;
