//! (filled by the watchdog work)
use super::common as _;
