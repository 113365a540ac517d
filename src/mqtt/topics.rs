//! Every topic name in one place, so the session, the publishers and the tests agree.
//! Machine ids and task ids are already safe topic levels (validated where they are made).

#[derive(Clone, Debug)]
pub struct Topics {
    base: String,
    discovery_prefix: String,
    node_id: String,
}

impl Topics {
    pub fn new(base: &str, discovery_prefix: &str, node_id: &str) -> Topics {
        Topics { base: base.to_string(), discovery_prefix: discovery_prefix.to_string(), node_id: node_id.to_string() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn state(&self) -> String {
        format!("{}/bridge/state", self.base)
    }

    pub fn info(&self) -> String {
        format!("{}/bridge/info", self.base)
    }

    pub fn health(&self) -> String {
        format!("{}/bridge/health", self.base)
    }

    pub fn event(&self) -> String {
        format!("{}/bridge/event", self.base)
    }

    pub fn request_filter(&self) -> String {
        format!("{}/bridge/request/+", self.base)
    }

    /// The request name when `topic` is one of our request topics.
    pub fn request_name<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix("/bridge/request/")?;
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    }

    pub fn response(&self, name: &str) -> String {
        format!("{}/bridge/response/{name}", self.base)
    }

    pub fn jobs_current(&self) -> String {
        format!("{}/jobs/current", self.base)
    }

    pub fn progress(&self, task_id: &str) -> String {
        format!("{}/tasks/{task_id}/progress", self.base)
    }

    pub fn model(&self, machine_id: &str, model_type: &str) -> String {
        format!("{}/machines/{machine_id}/models/{model_type}", self.base)
    }

    /// The last training of a machine (retained), for Home Assistant's "last training status".
    pub fn training(&self, machine_id: &str) -> String {
        format!("{}/machines/{machine_id}/training", self.base)
    }

    /// Home Assistant announces itself here (`online` after it starts).
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    pub fn discovery(&self, component: &str, object_id: &str) -> String {
        format!("{}/{component}/{}/{object_id}/config", self.discovery_prefix, self.node_id)
    }

    pub fn is_discovery(&self, topic: &str) -> bool {
        topic.starts_with(&format!("{}/", self.discovery_prefix)) && topic.ends_with("/config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_come_only_from_our_request_topics() {
        let t = Topics::new("millwright/pi", "homeassistant", "pi");
        assert_eq!(t.request_name("millwright/pi/bridge/request/train"), Some("train"));
        assert_eq!(t.request_name("millwright/pi/bridge/request/"), None);
        assert_eq!(t.request_name("millwright/pi/bridge/request/a/b"), None);
        assert_eq!(t.request_name("millwright/other/bridge/request/train"), None);
        assert_eq!(t.discovery("sensor", "x"), "homeassistant/sensor/pi/x/config");
        assert!(t.is_discovery("homeassistant/sensor/pi/x/config"));
        assert!(!t.is_discovery("millwright/pi/bridge/info"));
    }
}
