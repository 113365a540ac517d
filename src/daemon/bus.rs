//! Daemon-wide events that are not job changes: guard decisions, model warnings. MQTT publishes them on
//! `<base>/bridge/event`; nobody blocks on them (a lagging subscriber just misses old ones).
use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Clone, Debug, Serialize)]
pub struct BusEvent {
    /// thermal_pause, thermal_resume, memory_refused, model_oversize, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

pub type Bus = broadcast::Sender<BusEvent>;

pub fn new() -> Bus {
    broadcast::channel(256).0
}

pub fn emit(bus: &Bus, kind: &str, data: serde_json::Value) {
    let _ = bus.send(BusEvent { kind: kind.into(), data });
}
