//! Daemon-wide events that are not job changes: guard decisions, model warnings. MQTT publishes them on
//! `<base>/bridge/event`; nobody blocks on them (a lagging subscriber just misses old ones).
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for a subscriber that falls behind before it starts missing the oldest.
const BACKLOG: usize = 256;

#[derive(Clone, Debug, Serialize)]
pub struct BusEvent {
    /// thermal_pause, thermal_resume, memory_refused, model_oversize, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

/// Cloning shares the bus.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<BusEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        Bus { tx: broadcast::channel(BACKLOG).0 }
    }

    /// Sends to whoever listens now; with nobody listening the event is dropped, which is fine.
    pub fn emit(&self, kind: &str, data: serde_json::Value) {
        let _ = self.tx.send(BusEvent { kind: kind.into(), data });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
