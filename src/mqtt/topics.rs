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

    /// Why an MQTT 5 Response Topic cannot take an answer, if it cannot: a topic a publish may not
    /// name (the broker would drop the connection), or one under our base topic other than the
    /// responses (an answer on a request topic would be read as a new request, on a state topic it
    /// would overwrite the state), or Home Assistant's discovery.
    pub fn reply_topic_problem(&self, topic: &str) -> Option<&'static str> {
        if topic.is_empty() || topic.len() > 65_535 {
            Some("a topic must have 1 to 65535 bytes")
        } else if topic.contains(['+', '#', '\0']) {
            Some("a publish cannot name wildcards or NUL")
        } else if topic.starts_with('$') {
            Some("topics starting with $ belong to the broker")
        } else if topic.starts_with(&format!("{}/", self.base)) && !topic.starts_with(&format!("{}/bridge/response/", self.base)) {
            Some("it lies under this daemon's base topic, where only bridge/response/... takes answers")
        } else if topic.starts_with(&format!("{}/", self.discovery_prefix)) || topic == self.ha_status() {
            Some("it lies under Home Assistant's discovery prefix")
        } else {
            None
        }
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
    fn response_topics_that_would_loop_or_break_the_connection_are_refused() {
        let t = Topics::new("millwright/pi", "homeassistant", "pi");
        for ok in ["replies/node-red/1", "millwright/pi/bridge/response/mine", "millwright/other/x"] {
            assert_eq!(t.reply_topic_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "a/+/b",
            "a/#",
            "$SYS/x",
            "millwright/pi/bridge/request/train",
            "millwright/pi/bridge/state",
            "homeassistant/sensor/x/config",
            "homeassistant/status",
        ] {
            assert!(t.reply_topic_problem(bad).is_some(), "{bad}");
        }
    }

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
