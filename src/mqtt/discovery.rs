//! Home Assistant MQTT discovery: retained configs that make the Pi a device with sensors, all tied to
//! `bridge/state` for availability. The configs only point at topics we publish anyway.
use super::topics::Topics;
use crate::ml::ModelType;
use serde_json::{Value, json};

fn device(topics: &Topics) -> Value {
    json!({
        "identifiers": [format!("millwright_{}", topics.node_id())],
        "name": format!("millwright {}", topics.node_id()),
        "manufacturer": "millwright",
        "model": "predictive-maintenance trainer",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn sensor(topics: &Topics, object_id: &str, name: &str, state_topic: String, value_template: &str, extra: Value) -> (String, Value) {
    let mut config = json!({
        "name": name,
        "object_id": format!("millwright_{}_{object_id}", topics.node_id()),
        "unique_id": format!("millwright_{}_{object_id}", topics.node_id()),
        "state_topic": state_topic,
        "value_template": value_template,
        "availability": [{ "topic": topics.state(), "value_template": "{{ value_json.state }}" }],
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device(topics),
    });
    if let (Some(obj), Value::Object(extra)) = (config.as_object_mut(), extra) {
        obj.extend(extra);
    }
    (topics.discovery("sensor", object_id), config)
}

/// The device-wide sensors: SoC temperature, queue depth, current job progress.
pub fn node_configs(topics: &Topics) -> Vec<(String, Value)> {
    vec![
        sensor(
            topics,
            "soc_temperature",
            "SoC temperature",
            topics.health(),
            "{{ value_json.temperature_c if value_json.temperature_c is not none else 'unknown' }}",
            json!({ "device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement", "entity_category": "diagnostic" }),
        ),
        sensor(
            topics,
            "queue_depth",
            "Training queue depth",
            topics.health(),
            "{{ value_json.queue_depth }}",
            json!({ "state_class": "measurement", "icon": "mdi:tray-full" }),
        ),
        sensor(
            topics,
            "job_progress",
            "Current training progress",
            topics.jobs_current(),
            // jobs/current is emptied when idle: an empty payload has no value_json.
            "{{ value_json.progress if value_json is defined and value_json.progress is defined else 0 }}",
            json!({ "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:progress-clock", "json_attributes_topic": topics.jobs_current() }),
        ),
    ]
}

/// Per machine: each live model's headline metric and the last training status.
pub fn machine_configs(topics: &Topics, machine_id: &str, metric_names: &[(ModelType, Option<String>)]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (t, metric) in metric_names {
        let label = metric.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
        out.push(sensor(
            topics,
            &format!("{machine_id}_{}_metric", t.as_str()),
            &format!("{machine_id} {}{label}", t.as_str()),
            topics.model(machine_id, t.as_str()),
            "{{ value_json.headline.value if value_json is defined and value_json.headline is defined else 'unknown' }}",
            json!({ "state_class": "measurement", "icon": "mdi:chart-line", "json_attributes_topic": topics.model(machine_id, t.as_str()) }),
        ));
    }
    out.push(sensor(
        topics,
        &format!("{machine_id}_training"),
        &format!("{machine_id} last training"),
        topics.training(machine_id),
        "{{ value_json.status if value_json is defined else 'unknown' }}",
        json!({ "icon": "mdi:school", "json_attributes_topic": topics.training(machine_id) }),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_have_unique_ids_a_device_and_availability() {
        let t = Topics::new("millwright/pi", "homeassistant", "pi");
        let mut all = node_configs(&t);
        all.extend(machine_configs(&t, "m1", &[(ModelType::Classification, Some("f1".into())), (ModelType::Regression, None)]));
        let mut ids = std::collections::HashSet::new();
        for (topic, c) in &all {
            assert!(topic.starts_with("homeassistant/sensor/pi/") && topic.ends_with("/config"), "{topic}");
            assert!(ids.insert(c["unique_id"].as_str().unwrap().to_string()));
            assert_eq!(c["availability"][0]["topic"], "millwright/pi/bridge/state");
            assert_eq!(c["device"]["identifiers"][0], "millwright_pi");
        }
        assert_eq!(all.len(), 3 + 2 + 1);
        assert_eq!(all[3].1["name"], "m1 classification f1");
    }
}
