//! Which MQTT topics carry readings, and whose: a pattern such as `{base}/machines/{machine}/readings` or
//! `plant/{machine}/{sensor}` (the per-sensor layout gateways commonly publish), turned into the filter
//! to subscribe to and read back from each topic.

/// A checked pattern, `{base}` already replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadingsTopic {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Machine,
    Sensor,
}

/// Whose readings a topic carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicOf {
    pub machine: String,
    /// Set in the per-sensor layout: the message is one value of this sensor.
    pub sensor: Option<String>,
}

impl ReadingsTopic {
    /// `pattern` with `{base}` replaced by `base`; says what is wrong with a pattern that cannot work.
    pub fn parse(pattern: &str, base: &str) -> Result<ReadingsTopic, String> {
        let text = pattern.replace("{base}", base);
        if text.contains(['+', '#']) {
            return Err("must not hold MQTT wildcards (+ or #): {machine} and {sensor} are where they go".into());
        }
        let segments: Vec<Segment> = text
            .split('/')
            .map(|s| match s {
                "{machine}" => Segment::Machine,
                "{sensor}" => Segment::Sensor,
                other => Segment::Literal(other.to_string()),
            })
            .collect();
        let count = |want: &Segment| segments.iter().filter(|s| *s == want).count();
        if count(&Segment::Machine) != 1 {
            return Err("needs exactly one {machine} segment, e.g. \"{base}/machines/{machine}/readings\"".into());
        }
        if count(&Segment::Sensor) > 1 {
            return Err("may have at most one {sensor} segment".into());
        }
        if segments.iter().any(|s| matches!(s, Segment::Literal(l) if l.contains(['{', '}']))) {
            return Err("knows only {base}, {machine} and {sensor}, each as a whole segment".into());
        }
        Ok(ReadingsTopic { segments })
    }

    /// The filter to subscribe to.
    pub fn filter(&self) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Machine | Segment::Sensor => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The topic `machine`'s readings (one sensor's, in the per-sensor layout) are published on.
    pub fn topic(&self, machine: &str, sensor: Option<&str>) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Machine => machine,
                Segment::Sensor => sensor.unwrap_or(""),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn per_sensor(&self) -> bool {
        self.segments.contains(&Segment::Sensor)
    }

    /// The machine (and sensor) a topic names, or None for a topic the pattern does not match.
    pub fn of(&self, topic: &str) -> Option<TopicOf> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let (mut machine, mut sensor) = (None, None);
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Literal(l) if l != part => return None,
                Segment::Literal(_) => {}
                Segment::Machine => machine = Some(part.to_string()),
                Segment::Sensor => sensor = Some(part.to_string()),
            }
        }
        Some(TopicOf { machine: machine?, sensor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_give_filters_and_read_topics_back() {
        let t = ReadingsTopic::parse("{base}/machines/{machine}/readings", "millwright/pi").unwrap();
        assert_eq!(t.topic("m1", None), "millwright/pi/machines/m1/readings");
        assert_eq!(t.of(&t.topic("m1", None)).map(|o| o.machine), Some("m1".to_string()));
        assert_eq!(t.filter(), "millwright/pi/machines/+/readings");
        assert!(!t.per_sensor());
        assert_eq!(t.of("millwright/pi/machines/pump_1/readings"), Some(TopicOf { machine: "pump_1".into(), sensor: None }));
        assert_eq!(t.of("millwright/pi/machines/pump_1/verdict"), None);
        assert_eq!(t.of("millwright/pi/machines/pump_1/readings/x"), None);
        let s = ReadingsTopic::parse("plant/{machine}/{sensor}", "b").unwrap();
        assert_eq!(s.filter(), "plant/+/+");
        assert_eq!(s.of("plant/pump_1/temp"), Some(TopicOf { machine: "pump_1".into(), sensor: Some("temp".into()) }));
        for (bad, why) in [
            ("plant/+/readings", "wildcards"),
            ("plant/readings", "exactly one {machine}"),
            ("{machine}/{machine}", "exactly one {machine}"),
            ("p/{machine}/{sensor}/{sensor}", "at most one {sensor}"),
            ("p/{machine}/x{sensor}", "whole segment"),
        ] {
            let e = ReadingsTopic::parse(bad, "b").unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
