//! Small shared helpers: a seeded PRNG, timestamp parsing and atomic file writes.
pub mod fsx;
pub mod rng;
pub mod time;
