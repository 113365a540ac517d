//! Hardening: what a shipped install meets on a factory LAN over months — an idle daemon under a real
//! watchdog, slow and hostile HTTP clients, a full disk at start, a damaged job store, confinement of data
//! paths, cross-site requests, a misbehaving MQTT broker or twin, and out-of-range parameters. Each test
//! reproduces a fault found on the release build and fails on the code before its fix.
mod common;

#[path = "hardening/access.rs"]
mod access;
#[path = "hardening/fleet.rs"]
mod fleet_view;
#[path = "hardening/http.rs"]
mod http;
#[path = "hardening/limits.rs"]
mod limits;
#[path = "hardening/listing.rs"]
mod listing;
#[path = "hardening/mqtt.rs"]
mod mqtt;
#[path = "hardening/store.rs"]
mod store;
#[path = "hardening/watchdog.rs"]
mod watchdog;
