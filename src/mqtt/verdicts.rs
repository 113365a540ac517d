//! Each machine's verdict and active alerts as retained state for dashboards (Home Assistant, Node-RED):
//! `<base>/machines/<id>/verdict` and `<base>/machines/<id>/alerts`, republished when they change, and
//! `<base>/machines/<id>/health`, republished after every scoring on the fleet's cadence. The
//! changes themselves also go out as events on `<base>/bridge/event` (the bus forwarder does that). Fed
//! by the daemon's bus (`verdict_changed`, `alert_*`) and the fleet's scores, so it never computes a verdict itself.
use super::outbox::{Message, Outbox};
use super::topics::Topics;
use crate::api::fleet::Fleet;
use crate::lifecycle::BusEvent;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

pub fn verdict_topic(topics: &Topics, machine: &str) -> String {
    format!("{}/machines/{machine}/verdict", topics.base())
}

pub fn health_topic(topics: &Topics, machine: &str) -> String {
    format!("{}/machines/{machine}/health", topics.base())
}

pub fn alerts_topic(topics: &Topics, machine: &str) -> String {
    format!("{}/machines/{machine}/alerts", topics.base())
}

fn now_ms() -> String {
    crate::alerts::stamp(crate::util::time::now_secs())
}

/// The retained verdict payload: what a dashboard shows, with when it was decided.
pub fn verdict_payload(machine: &str, v: &Value) -> Value {
    json!({ "machine_id": machine, "state": v["state"], "severity": v["severity"], "label": v["label"], "sentence": v["sentence"],
        "rul_days": v["rul_days"], "drivers": v["drivers"], "contradiction": v["contradiction"], "anomalous": v["anomalous"],
        "timestamp": now_ms() })
}

pub async fn run(
    mut rx: broadcast::Receiver<BusEvent>,
    topics: Topics,
    outbox: Outbox,
    fleet: Arc<Fleet>,
    mut stop: watch::Receiver<bool>,
) {
    let mut scores = fleet.scores();
    loop {
        tokio::select! {
            changed = scores.changed() => {
                if changed.is_err() {
                    break;
                }
                let tiles = scores.borrow_and_update().clone();
                for t in tiles.iter() {
                    if let Some(machine) = t["machine_id"].as_str().filter(|m| crate::data::MachineId::parse(m).is_ok()) {
                        outbox.send(Message::state(health_topic(&topics, machine), &crate::scores::health_record(t, crate::util::time::now_secs())));
                    }
                }
            }
            r = rx.recv() => match r {
                Ok(ev) => {
                    let Some(machine) = ev.data["machine_id"].as_str().filter(|m| crate::data::MachineId::parse(m).is_ok()) else { continue };
                    if ev.kind == "verdict_changed" {
                        outbox.send(Message::state(verdict_topic(&topics, machine), &verdict_payload(machine, &ev.data["verdict"])));
                    } else if ev.kind.starts_with("alert_") {
                        let active = fleet.active_alerts(machine);
                        let payload = json!({ "machine_id": machine, "active": active.len(), "alerts": active, "timestamp": now_ms() });
                        outbox.send(Message::state(alerts_topic(&topics, machine), &payload));
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::debug!(missed = n, "MQTT: missed verdict and alert changes"),
                Err(RecvError::Closed) => break,
            },
            _ = super::stopped(&mut stop) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_payload() {
        let t = Topics::new("millwright", "homeassistant", "pi");
        assert_eq!(verdict_topic(&t, "pump_1"), "millwright/machines/pump_1/verdict");
        assert_eq!(alerts_topic(&t, "pump_1"), "millwright/machines/pump_1/alerts");
        let p = verdict_payload("pump_1", &json!({ "state": "fresh", "severity": "plan", "sentence": "Plan maintenance" }));
        assert_eq!(p["severity"], "plan");
        assert!(p["anomalous"].is_null(), "no anomaly answer: no value, not false");
        let ts = p["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000Z".len(), "{ts}");
    }
}
