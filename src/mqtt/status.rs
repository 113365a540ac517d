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

    /// `{"mqtt": {...}}` once the bridge runs, else `{}`; merged into the health answer.
    pub fn health(&self) -> Value {
        match self.get() {
            Some(f) => json!({ "mqtt": f }),
            None => json!({}),
        }
    }
}
