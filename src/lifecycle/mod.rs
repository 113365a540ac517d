//! The plumbing every long-running part shares, kept below all of them so that none has to reach up into the
//! daemon for it: one shutdown signal ([`Shutdown`]), the bus of daemon-wide events ([`Bus`]) and the
//! liveness counters the systemd watchdog reads ([`Heartbeat`]). Nothing here knows a part of millwright.
mod bus;
mod heartbeat;
mod shutdown;

pub use bus::{Bus, BusEvent};
pub use heartbeat::{Heartbeat, epoch_secs};
pub use shutdown::Shutdown;
