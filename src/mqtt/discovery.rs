//! Home Assistant MQTT discovery: retained configs that make the Pi one device (SoC temperature, queue,
//! current job) and each machine a device of its own behind it (`via_device`), all tied to `bridge/state`
//! for availability. The configs only point at topics we publish anyway; what Home Assistant 2025.12's own
//! code makes of them is checked by tests/homeassistant.rs.
//!
//! Rules the checker holds us to: numeric sensors render `None` (Home Assistant's "no value") for an
//! empty or null payload, never a word; `default_entity_id`, not the deprecated `object_id`; entity names
//! that do not change after a training (the metric's name is in the attributes).
use super::topics::Topics;
use crate::ml::ModelType;
use serde_json::{Value, json};

/// Every training state a finished job can have (the `enum` sensor's options).
pub const TRAINING_STATES: [&str; 3] = ["SUCCESS", "FAILURE", "REVOKED"];

fn origin() -> Value {
    json!({ "name": "millwright", "sw_version": env!("CARGO_PKG_VERSION") })
}

fn node_identifier(topics: &Topics) -> String {
    format!("millwright_{}", topics.node_id())
}

fn node_device(topics: &Topics) -> Value {
    json!({
        "identifiers": [node_identifier(topics)],
        "name": format!("millwright {}", topics.node_id()),
        "manufacturer": "millwright",
        "model": "predictive-maintenance trainer",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn machine_device(topics: &Topics, machine_id: &str) -> Value {
    json!({
        "identifiers": [format!("millwright_{}_{machine_id}", topics.node_id())],
        "name": machine_id,
        "manufacturer": "millwright",
        "model": "monitored machine",
        "via_device": node_identifier(topics),
    })
}

/// `{{ value_json.<path> }}`, or `None` when the payload is empty, not JSON, or the value is missing or null.
/// `ON` / `OFF` from a JSON boolean; `None` (Home Assistant's "unknown") when it is absent or null, e.g.
/// on a cleared topic or for a machine without an anomaly model.
fn flag_template(key: &str) -> String {
    format!(
        "{{% if value_json is defined and value_json.{key} is defined and value_json.{key} is not none %}}{{{{ 'ON' if value_json.{key} else 'OFF' }}}}{{% else %}}None{{% endif %}}"
    )
}

fn number_template(path: &str) -> String {
    let mut guards = vec!["value_json is defined".to_string()];
    let mut prefix = String::from("value_json");
    for part in path.split('.') {
        prefix = format!("{prefix}.{part}");
        guards.push(format!("{prefix} is defined"));
    }
    guards.push(format!("{prefix} is not none"));
    format!("{{{{ {prefix} if {} else None }}}}", guards.join(" and "))
}

struct Entity<'a> {
    component: &'static str,
    key: String,
    name: &'a str,
    device: Value,
    extra: Value,
}

fn config(topics: &Topics, e: Entity) -> (String, Value) {
    let id = format!("millwright_{}_{}", topics.node_id(), e.key);
    let mut config = json!({
        "name": e.name,
        "default_entity_id": format!("{}.{id}", e.component),
        "unique_id": id,
        "availability": [{ "topic": topics.state(), "value_template": "{{ value_json.state }}" }],
        "device": e.device,
        "origin": origin(),
    });
    if let (Some(obj), Value::Object(extra)) = (config.as_object_mut(), e.extra) {
        obj.extend(extra);
    }
    (topics.discovery(e.component, &e.key), config)
}

/// The device-wide sensors: SoC temperature, queue depth, current job progress.
pub fn node_configs(topics: &Topics) -> Vec<(String, Value)> {
    let pi = || node_device(topics);
    vec![
        config(
            topics,
            Entity {
                component: "sensor",
                key: "soc_temperature".into(),
                name: "SoC temperature",
                device: pi(),
                extra: json!({
                    "state_topic": topics.health(), "value_template": number_template("temperature_c"),
                    "device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement",
                    "suggested_display_precision": 1, "entity_category": "diagnostic",
                }),
            },
        ),
        config(
            topics,
            Entity {
                component: "sensor",
                key: "queue_depth".into(),
                name: "Training queue depth",
                device: pi(),
                extra: json!({
                    "state_topic": topics.health(), "value_template": number_template("queue_depth"),
                    "state_class": "measurement", "icon": "mdi:tray-full",
                }),
            },
        ),
        config(
            topics,
            Entity {
                component: "sensor",
                key: "job_progress".into(),
                name: "Current training progress",
                device: pi(),
                extra: json!({
                    // `jobs/current` holds an idle document (progress null) between jobs.
                    "state_topic": topics.jobs_current(), "value_template": number_template("progress"),
                    "unit_of_measurement": "%", "state_class": "measurement", "suggested_display_precision": 0,
                    "icon": "mdi:progress-clock", "json_attributes_topic": topics.jobs_current(),
                }),
            },
        ),
    ]
}

fn type_label(t: ModelType) -> &'static str {
    match t {
        ModelType::Classification => "Classification metric",
        ModelType::Regression => "Regression metric",
        ModelType::Anomaly => "Anomaly metric",
        ModelType::Timeseries => "Time-series metric",
    }
}

/// Per machine, on the machine's own device: each model type's headline metric, the last training's
/// state, and (when requests are accepted) a button that trains all four models through the request topic.
pub fn machine_configs(topics: &Topics, machine_id: &str, with_button: bool) -> Vec<(String, Value)> {
    let dev = || machine_device(topics, machine_id);
    let mut out = Vec::new();
    for t in ModelType::ALL {
        out.push(config(
            topics,
            Entity {
                component: "sensor",
                key: format!("{machine_id}_{}_metric", t.as_str()),
                name: type_label(t),
                device: dev(),
                extra: json!({
                    "state_topic": topics.model(machine_id, t.as_str()), "value_template": number_template("headline.value"),
                    "state_class": "measurement", "suggested_display_precision": 3, "icon": "mdi:chart-line",
                    "json_attributes_topic": topics.model(machine_id, t.as_str()),
                }),
            },
        ));
    }
    out.push(config(
        topics,
        Entity {
            component: "sensor",
            key: format!("{machine_id}_training"),
            name: "Last training",
            device: dev(),
            extra: json!({
                "state_topic": topics.training(machine_id), "value_template": number_template("status"),
                "device_class": "enum", "options": TRAINING_STATES, "icon": "mdi:school",
                "json_attributes_topic": topics.training(machine_id),
            }),
        },
    ));
    out.push(config(
        topics,
        Entity {
            component: "binary_sensor",
            key: format!("{machine_id}_anomalous"),
            name: "Anomalous now",
            device: dev(),
            extra: json!({
                "state_topic": super::verdicts::verdict_topic(topics, machine_id),
                "value_template": flag_template("anomalous"),
                "device_class": "problem",
                "json_attributes_topic": super::verdicts::verdict_topic(topics, machine_id),
            }),
        },
    ));
    if with_button {
        out.push(config(
            topics,
            Entity {
                component: "button",
                key: format!("{machine_id}_train_all"),
                name: "Train all models",
                device: dev(),
                extra: json!({
                    "command_topic": format!("{}/bridge/request/train", topics.base()),
                    "payload_press": json!({ "machine_id": machine_id, "transaction": "homeassistant" }).to_string(),
                    "qos": 1, "retain": false, "icon": "mdi:school-outline",
                }),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_have_unique_ids_devices_and_availability() {
        let t = Topics::new("millwright/pi", "homeassistant", "pi");
        let mut all = node_configs(&t);
        all.extend(machine_configs(&t, "m1", true));
        let mut ids = std::collections::HashSet::new();
        for (topic, c) in &all {
            assert!(topic.starts_with("homeassistant/") && topic.ends_with("/config"), "{topic}");
            assert!(ids.insert(c["unique_id"].as_str().unwrap().to_string()));
            assert_eq!(c["availability"][0]["topic"], "millwright/pi/bridge/state");
            assert!(c.get("object_id").is_none() && c.get("payload_available").is_none(), "{c}");
            assert_eq!(c["origin"]["name"], "millwright");
        }
        assert_eq!(all.len(), 3 + 4 + 1 + 1 + 1);
        assert_eq!(all[0].1["device"]["identifiers"][0], "millwright_pi");
        assert_eq!(all[3].1["device"]["identifiers"][0], "millwright_pi_m1");
        assert_eq!(all[3].1["device"]["via_device"], "millwright_pi");
        assert_eq!(all[3].1["name"], "Classification metric");
        assert_eq!(all[3].1["default_entity_id"], "sensor.millwright_pi_m1_classification_metric");
        assert_eq!(all[8].0, "homeassistant/binary_sensor/pi/m1_anomalous/config");
        assert_eq!(all[8].1["state_topic"], "millwright/pi/machines/m1/verdict");
        assert_eq!(all[9].0, "homeassistant/button/pi/m1_train_all/config");
        assert_eq!(machine_configs(&t, "m1", false).len(), 6);
    }

    #[test]
    fn numeric_templates_fall_back_to_none() {
        assert_eq!(
            number_template("headline.value"),
            "{{ value_json.headline.value if value_json is defined and value_json.headline is defined and value_json.headline.value is defined and value_json.headline.value is not none else None }}"
        );
    }
}
