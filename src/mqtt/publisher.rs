//! The retained state that is computed rather than streamed: `bridge/info`, `bridge/health` (every 30 s,
//! each time with `bridge/state` `online` again, so no stale `offline` from a twin's last will outlives one period),
//! each machine's live models and last training, and Home Assistant discovery. Recomputed in full at
//! every (re)connect, per machine after each job.
use super::discovery;
use super::outbox::{Message, Outbox};
use super::requests::{self, Call};
use super::topics::Topics;
use crate::api::AppState;
use crate::ml::ModelType;
use axum::Router;
use axum::http::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::PoisonError;

pub struct Publisher {
    pub state: AppState,
    pub router: Router,
    pub topics: Topics,
    pub outbox: Outbox,
    /// Version, limits and the configuration summary (secrets already masked).
    pub info: Value,
    /// This instance's `online` on `bridge/state`.
    pub online: Message,
    pub homeassistant: bool,
    /// Whether requests are accepted (then each machine gets a "train all" button in Home Assistant).
    pub buttons: bool,
    /// Model topics that hold a retained model now: only these are cleared when the model goes, so a
    /// consumer parsing JSON never meets an empty payload for a model that never existed.
    pub set_models: std::sync::Mutex<BTreeSet<String>>,
    /// Machines whose topics and discovery have been published; one that appears later (a new data
    /// folder) is published at the next health tick, without waiting for a reconnect.
    pub known_machines: std::sync::Mutex<BTreeSet<String>>,
    /// Set by the first [`Publisher::everything`] (at the first connect); until then a tick adds nothing.
    pub started: std::sync::atomic::AtomicBool,
    /// Where thermal zones are read when the health answer carries no temperature (the guard's root).
    pub sysfs_root: PathBuf,
}

impl Publisher {
    pub async fn everything(&self) {
        self.started.store(true, std::sync::atomic::Ordering::Relaxed);
        self.info().await;
        if self.homeassistant {
            for (topic, config) in discovery::node_configs(&self.topics) {
                self.outbox.send(Message::state(topic, &config));
            }
        }
        for m in self.machines().await {
            self.machine(&m).await;
        }
        self.health().await;
    }

    /// Publishes the machines that appeared since the last look (their topics and discovery), then
    /// `bridge/info` with the new list.
    pub async fn new_machines(&self) {
        if !self.started.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let now = self.machines().await;
        let new: Vec<String> = {
            let known = self.known_machines.lock().unwrap_or_else(PoisonError::into_inner);
            now.into_iter().filter(|m| !known.contains(m)).collect()
        };
        if new.is_empty() {
            return;
        }
        for m in &new {
            self.machine(m).await;
        }
        self.info().await;
    }

    async fn machines(&self) -> Vec<String> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut out: BTreeSet<String> = state.registry.machines().unwrap_or_default().into_iter().collect();
            for entry in std::fs::read_dir(state.data_dir.join("machines")).into_iter().flatten().filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && crate::data::MachineId::parse(&name).is_ok() {
                    out.insert(name);
                }
            }
            out.into_iter().collect()
        })
        .await
        .unwrap_or_default()
    }

    pub async fn info(&self) {
        let mut info = self.info.clone();
        info["machines"] = json!(self.machines().await);
        info["ts"] = json!(super::now_ts());
        self.outbox.send(Message::state(self.topics.info(), &info));
    }

    pub async fn health(&self) {
        let call = Call { method: Method::GET, path: "/api/health".into(), body: None };
        let mut health = match requests::dispatch(&self.router, &self.state.access.token, call).await {
            Ok(v) => v,
            Err((e, _)) => json!({ "status": "error", "error": e.message }),
        };
        let temperature = find_number(&health, &["temperature_c", "soc_temperature_c", "soc_temp_c", "temp_c"])
            .or_else(|| thermal_zones(&self.sysfs_root));
        health["temperature_c"] = json!(temperature.map(|t| (t * 10.0).round() / 10.0));
        health["queue_depth"] = json!(self.state.queue.pending_count());
        // Next to the session's facts (connected, instance id, twin) that /api/health already carries.
        match health.get_mut("mqtt").and_then(Value::as_object_mut) {
            Some(m) => {
                m.insert("dropped_messages".into(), json!(self.outbox.dropped()));
            }
            None => health["mqtt"] = json!({ "dropped_messages": self.outbox.dropped() }),
        }
        health["ts"] = json!(super::now_ts());
        self.outbox.send(self.online.clone());
        self.outbox.send(Message::state(self.topics.health(), &health));
    }

    /// Clears the topics of models that went (deleted through the API) since they were published.
    pub async fn gone_models(&self) {
        let set: Vec<String> = self.set_models.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
        let registry = self.state.registry.clone();
        let topics = self.topics.clone();
        let gone = tokio::task::spawn_blocking(move || {
            let mut gone = BTreeSet::new();
            for m in registry.machines().unwrap_or_default() {
                for t in ModelType::ALL {
                    let topic = topics.model(&m, t.as_str());
                    if set.contains(&topic) && matches!(registry.live(&m, t), Ok(None)) {
                        gone.insert(m.clone());
                    }
                }
            }
            // A machine with no model left at all is no longer listed by the registry.
            let listed: BTreeSet<String> = registry.machines().unwrap_or_default().into_iter().collect();
            for topic in &set {
                let machine = topic.strip_prefix(&format!("{}/machines/", topics.base())).and_then(|r| r.split('/').next());
                if let Some(m) = machine.filter(|m| !listed.contains(*m)) {
                    gone.insert(m.to_string());
                }
            }
            gone
        })
        .await
        .unwrap_or_default();
        for m in gone {
            self.machine(&m).await;
        }
    }

    /// The machine's live models (an empty retained payload where none is live, clearing stale ones),
    /// its last training, and its discovery configs.
    pub async fn machine(&self, machine_id: &str) {
        self.known_machines.lock().unwrap_or_else(PoisonError::into_inner).insert(machine_id.to_string());
        let registry = self.state.registry.clone();
        let id = machine_id.to_string();
        let lives = tokio::task::spawn_blocking(move || ModelType::ALL.map(|t| (t, registry.live(&id, t).ok().flatten()))).await;
        let Ok(lives) = lives else { return };
        for (t, live) in &lives {
            let topic = self.topics.model(machine_id, t.as_str());
            match live {
                Some(v) => {
                    let payload = json!({
                        "machine_id": v.machine_id, "model_type": v.model_type, "version": v.version, "trained_at": v.trained_at,
                        "size_bytes": v.size_bytes, "oversize": v.oversize, "warning": v.warning, "headline": v.headline, "job_id": v.job_id,
                        "ts": super::now_ts(),
                    });
                    self.set_models.lock().unwrap_or_else(PoisonError::into_inner).insert(topic.clone());
                    self.outbox.send(Message::state(topic, &payload));
                }
                None => {
                    if self.set_models.lock().unwrap_or_else(PoisonError::into_inner).remove(&topic) {
                        self.outbox.send(Message::clear(topic));
                    }
                }
            }
        }
        let last = self.state.queue.list().into_iter().find(|j| j.request.machine_id == machine_id && j.state.is_finished());
        if let Some(job) = &last {
            let payload = json!({
                "task_id": job.id, "status": job.state, "model_types": job.request.model_types,
                "completed_at": job.completed_at, "error": job.error, "ts": super::now_ts(),
            });
            self.outbox.send(Message::state(self.topics.training(machine_id), &payload));
        }
        if self.homeassistant {
            for (topic, config) in discovery::machine_configs(&self.topics, machine_id, self.buttons) {
                self.outbox.send(Message::state(topic, &config));
            }
        }
    }
}

/// The first number under any of `keys`, anywhere in `v` (the guard's health fields, wherever they sit).
fn find_number(v: &Value, keys: &[&str]) -> Option<f64> {
    match v {
        Value::Object(map) => {
            for k in keys {
                if let Some(x) = map.get(*k).and_then(Value::as_f64) {
                    return Some(x);
                }
            }
            map.values().find_map(|child| find_number(child, keys))
        }
        Value::Array(items) => items.iter().find_map(|child| find_number(child, keys)),
        _ => None,
    }
}

/// The hottest `/sys/class/thermal/thermal_zone*/temp` (millidegrees), as the guard reads it.
fn thermal_zones(root: &std::path::Path) -> Option<f64> {
    let dir = root.join("sys/class/thermal");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("temp")).ok())
        .filter_map(|s| s.trim().parse::<f64>().ok())
        .map(|milli| milli / 1000.0)
        .filter(|c| c.is_finite() && (-40.0..150.0).contains(c))
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_is_found_wherever_the_guard_puts_it() {
        let h = json!({ "status": "ok", "guard": { "readings": { "temperature_c": 61.5 } } });
        assert_eq!(find_number(&h, &["temperature_c"]), Some(61.5));
        assert_eq!(find_number(&json!({ "a": [1, {"temp_c": 40}] }), &["temperature_c", "temp_c"]), Some(40.0));
        assert_eq!(find_number(&json!({ "status": "ok" }), &["temperature_c"]), None);
    }

    #[test]
    fn thermal_zones_give_the_hottest_in_degrees() {
        let d = tempfile::tempdir().unwrap();
        for (zone, milli) in [("thermal_zone0", "48000\n"), ("thermal_zone1", "52500"), ("cooling_device0", "99000")] {
            let p = d.path().join("sys/class/thermal").join(zone);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("temp"), milli).unwrap();
        }
        assert_eq!(thermal_zones(d.path()), Some(52.5));
        assert_eq!(thermal_zones(&d.path().join("none")), None);
    }
}
