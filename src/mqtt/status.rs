//! The MQTT facts `/api/health` shows (and, through it, `bridge/health` and the page): written by the
//! session, read by the health route. Empty until the bridge starts, so a daemon with MQTT disabled shows
//! no `mqtt` part at all.
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Mutex;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Facts {
    pub connected: bool,
    pub instance_id: String,
    /// Another daemon on this base topic or with this client id is suspected.
    pub twin: bool,
    /// Instance ids of the other daemons heard on this base topic.
    pub peers: Vec<String>,
    pub answers_requests: bool,
    /// The MQTT version of the current or last connection ("5" or "3.1.1"); None before the first.
    pub protocol: Option<&'static str>,
    /// Plain sentences for the operator (the page lists every `warnings` entry).
    pub warnings: Vec<String>,
}

#[derive(Default)]
pub struct Status {
    facts: Mutex<Option<Facts>>,
    /// Set while readings come in over MQTT.
    readings: Mutex<Option<std::sync::Arc<super::readings_in::Counts>>>,
}

impl Status {
    pub fn set(&self, facts: Facts) {
        if let Ok(mut f) = self.facts.lock() {
            *f = Some(facts);
        }
    }

    pub fn get(&self) -> Option<Facts> {
        self.facts.lock().ok().and_then(|f| f.clone())
    }

    pub fn set_readings(&self, counts: std::sync::Arc<super::readings_in::Counts>) {
        if let Ok(mut r) = self.readings.lock() {
            *r = Some(counts);
        }
    }

    /// `{"mqtt": {...}}` once the bridge runs, else `{}`; merged into the health answer. With readings over
    /// MQTT, `mqtt.readings_in` counts messages, refused messages and rows since the start.
    pub fn health(&self) -> Value {
        let Some(f) = self.get() else { return json!({}) };
        let mut v = json!({ "mqtt": f });
        if let Some(c) = self.readings.lock().ok().and_then(|r| r.clone()) {
            let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            v["mqtt"]["readings_in"] = json!({ "messages": n(&c.messages), "refused_messages": n(&c.refused_messages),
                "rows_accepted": n(&c.rows_accepted), "rows_rejected": n(&c.rows_rejected), "stored_age": c.stored_age.summary() });
        }
        v
    }
}
