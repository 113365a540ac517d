//! The one way anything is published: a bounded queue into the session. Senders never wait — when the
//! queue is full (broker slow or gone) the message is dropped and counted, so training never waits on MQTT.
use rumqttc::QoS;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

pub const CAPACITY: usize = 1024;

#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: QoS,
    /// MQTT 5 Correlation Data, copied from the request this answers.
    pub correlation: Option<bytes::Bytes>,
}

impl Message {
    /// Retained state, QoS 1: the broker keeps the last value for late subscribers.
    pub fn state(topic: String, payload: &serde_json::Value) -> Message {
        Message { topic, payload: payload.to_string().into_bytes(), retain: true, qos: QoS::AtLeastOnce, correlation: None }
    }

    /// An empty retained payload deletes the retained message (MQTT's way to say "nothing now").
    pub fn clear(topic: String) -> Message {
        Message { topic, payload: Vec::new(), retain: true, qos: QoS::AtLeastOnce, correlation: None }
    }

    /// A request's answer: not retained, QoS 1 (the asker waits for exactly this message).
    pub fn response(topic: String, payload: &serde_json::Value) -> Message {
        Message { topic, payload: payload.to_string().into_bytes(), retain: false, qos: QoS::AtLeastOnce, correlation: None }
    }

    /// A request's answer to the MQTT 5 Response Topic the request named, with its Correlation Data.
    pub fn reply(topic: String, payload: &serde_json::Value, correlation: Option<bytes::Bytes>) -> Message {
        Message { correlation, ..Message::response(topic, payload) }
    }

    /// Events and progress: not retained, QoS 0.
    pub fn transient(topic: String, payload: &serde_json::Value) -> Message {
        Message { topic, payload: payload.to_string().into_bytes(), retain: false, qos: QoS::AtMostOnce, correlation: None }
    }
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl Outbox {
    pub fn new() -> (Outbox, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Outbox { tx, dropped: Arc::new(AtomicU64::new(0)) }, rx)
    }

    pub fn send(&self, msg: Message) {
        if msg.payload.len() > super::settings::MAX_OUTGOING {
            tracing::warn!(topic = %msg.topic, bytes = msg.payload.len(), "MQTT message too large; not published");
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.try_send(msg).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Powers of two: a long outage logs a handful of lines, not thousands.
            if n.is_power_of_two() {
                tracing::debug!(dropped = n, "MQTT outbox full; dropping messages");
            }
        }
    }

    /// A message the session could not hand to the broker (disconnected, or the client's queue full).
    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
