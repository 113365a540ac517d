//! The trainers' shared plumbing: typed parameters ([`params`]), what a trainer sees of the world while it runs
//! ([`context`]), causal features ([`features`]), leak-free splits ([`split`]) and metrics beside their
//! baselines ([`metrics`]).
pub mod context;
pub mod features;
mod lengths;
pub mod metrics;
pub mod params;
pub mod split;
