//! The connection: a link task that only drives rumqttc's event loop (reconnecting with back-off), and a
//! session task that owns the client, remembers every retained message, republishes them all after each
//! (re)connect (the broker may have restarted without persistence), answers requests, and watches its own
//! `bridge/*` topics for a twin.
//!
//! What rumqttc 0.25 does with a message over its incoming limit: it reads the fixed header, sees the size,
//! and fails the whole connection (`PayloadSizeLimitExceeded`) before the topic is read. A retained one
//! comes back with every subscribe, so each reconnect fails the same way. Hence: the limit is twice the
//! largest valid request (a message up to that size is read and refused with an answer), an oversize drop
//! is logged once with what to clear, and the back-off keeps growing instead of resetting at CONNACK.
use super::outbox::{Message, Outbox};
use super::requests;
use super::settings::Settings;
use super::status::{Facts, Status};
use super::topics::Topics;
use super::twin::{Change, Seen, Twins};
pub use super::wire::LossCause;
use super::wire::{self, Client, Polled, Received, Version};
use super::{Availability, availability};
use crate::lifecycle::Heartbeat;
use axum::Router;
use rumqttc::QoS;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that held this long resets the back-off and ends a twin's kick streak. Longer than
/// [`MAX_BACKOFF`], so two daemons with one client id (each kicking the other out at its next attempt,
/// at most that far apart) never reset each other's back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Requests answered at once; more get a "busy" answer instead of piling up tasks.
const MAX_REQUESTS_IN_FLIGHT: usize = 4;
/// Transient messages kept until the first connection.
const EARLY_LIMIT: usize = 64;
/// A retained request is parsed (for its `transaction`) only up to this size; it is refused anyway.
const MAX_RETAINED_PARSE: usize = 64 * 1024;

pub enum LinkEvent {
    /// Up, through this client (a new one whenever the link changed the MQTT version).
    Connected(Client),
    /// `untrusted`: why the broker's TLS certificate was refused, when that is what failed. `up_for`: how
    /// long the connection had been up (None when connecting failed).
    Lost {
        reason: String,
        retry_in: Duration,
        untrusted: Option<String>,
        cause: LossCause,
        up_for: Option<Duration>,
    },
    Message(Received),
}

/// Polls the event loop until told to stop or until our DISCONNECT has been written. Between failed
/// attempts it waits 1 s, doubling to 30 s, so a dead broker costs nothing. The wait starts again at 1 s
/// only after a connection held for [`STABLE_AFTER`]: one dropped right after CONNACK (a twin with our
/// client id, a retained message too big to read) is a failed attempt too, or the loop would reconnect
/// every second forever. The MQTT version of each attempt is [`wire::next_version`]'s choice.
pub async fn link(settings: Settings, tx: mpsc::Sender<LinkEvent>, mut stop: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    let mut up_since: Option<Instant> = None;
    let mut version = wire::first_version(settings.protocol);
    let (mut client, mut eventloop) = wire::connect(&settings, version);
    let mut told_fallback = false;
    loop {
        let failure = match eventloop.poll(up_since.is_some()).await {
            Ok(Polled::Connected) => {
                up_since = Some(Instant::now());
                tracing::debug!(version = version.label(), "MQTT: CONNACK");
                if tx.send(LinkEvent::Connected(client.clone())).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Polled::Message(m)) => {
                if tx.send(LinkEvent::Message(m)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Polled::Closed) => return,
            Ok(Polled::Nothing) => continue,
            Err(f) => f,
        };
        if *stop.borrow() {
            return;
        }
        let up_for = up_since.take().map(|t| t.elapsed());
        if up_for.is_some_and(|d| d >= STABLE_AFTER) {
            backoff = MIN_BACKOFF;
        }
        let next = wire::next_version(settings.protocol, version, Some(&failure));
        // The other version is worth an immediate try: it is a different question, not a retry.
        let retry_in = if next == Version::V311 && version == Version::V5 { Duration::ZERO } else { backoff };
        // A broker that refused the version is not down: the fallback below says so, not "no connection".
        let fallback = retry_in.is_zero();
        let lost = LinkEvent::Lost { reason: failure.text, retry_in, untrusted: failure.untrusted, cause: failure.cause, up_for };
        if !fallback && tx.send(lost).await.is_err() {
            return;
        }
        if next != version {
            if next == Version::V311 && !told_fallback {
                told_fallback = true;
                tracing::warn!(
                    broker = %settings.broker,
                    "MQTT: the broker did not accept an MQTT 5 connection; trying MQTT 3.1.1 (requests are then answered only on bridge/response/<name>, without Response Topic / Correlation Data). Set mqtt.protocol = \"3.1.1\" to skip the attempt"
                );
            }
            version = next;
            (client, eventloop) = wire::connect(&settings, version);
        }
        if retry_in.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = super::stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Our own retained topics, which the session also listens to: another instance id there is a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    State,
    Info,
    Health,
}

pub struct Session {
    /// The client of the current (or last) connection; None before the first.
    client: Option<Client>,
    pub topics: Topics,
    pub broker: String,
    /// `mqtt.url` and what the daemon trusts (the CA file or the system store), for the line that says a
    /// broker's certificate is not trusted.
    pub url: String,
    pub trust: String,
    told_untrusted: bool,
    pub accept_requests: bool,
    pub homeassistant: bool,
    pub router: Router,
    pub token: Arc<String>,
    pub outbox: Outbox,
    pub refresh: Arc<Notify>,
    pub inflight: Arc<Semaphore>,
    pub connected: bool,
    /// Retained messages by topic, discovery configs apart so they go out before the states they describe.
    pub discovery: BTreeMap<String, Message>,
    pub retained: BTreeMap<String, Message>,
    pub down_since: Option<Instant>,
    pub ever_connected: bool,
    pub connected_since: Option<Instant>,
    pub twins: Twins,
    /// Whether this instance answered requests at the last look (to log when that changes).
    answering: bool,
    /// Events produced before the first connection (a job interrupted by the restart), sent at that
    /// connection; later outages lose transient messages (counted) rather than replay stale ones.
    early: Vec<Message>,
    /// The size of the last message too big to read, until a connection holds again.
    oversize: Option<usize>,
    pub status: Arc<Status>,
    /// Bumped every [`HEARTBEAT_EVERY`] by this loop, connected or not (for the watchdog).
    pub heartbeat: Heartbeat,
}

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topics: Topics,
        broker: String,
        accept_requests: bool,
        homeassistant: bool,
        router: Router,
        token: Arc<String>,
        outbox: Outbox,
        refresh: Arc<Notify>,
        twins: Twins,
        status: Arc<Status>,
    ) -> Session {
        let answering = twins.answers_requests();
        let session = Session {
            client: None,
            topics,
            url: broker.clone(),
            broker,
            trust: String::new(),
            told_untrusted: false,
            accept_requests,
            homeassistant,
            router,
            token,
            outbox,
            refresh,
            inflight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
            connected: false,
            discovery: BTreeMap::new(),
            retained: BTreeMap::new(),
            down_since: None,
            ever_connected: false,
            heartbeat: Heartbeat::new(),
            connected_since: None,
            twins,
            answering,
            early: Vec::new(),
            oversize: None,
            status,
        };
        session.publish_status();
        session
    }

    pub async fn run(
        mut self,
        mut link_rx: mpsc::Receiver<LinkEvent>,
        mut outbox_rx: mpsc::Receiver<Message>,
        mut stop: watch::Receiver<bool>,
        link: JoinHandle<()>,
        helpers: Vec<JoinHandle<()>>,
    ) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                biased;
                _ = super::stopped(&mut stop) => break,
                _ = tick.tick() => {
                    self.heartbeat.beat();
                    self.look_around();
                }
                ev = link_rx.recv() => match ev {
                    Some(ev) => self.on_link(ev),
                    None => break,
                },
                Some(msg) = outbox_rx.recv() => self.publish(msg),
            }
        }
        // The helpers drain what they still hold (the last job snapshots) and end; then the outbox is
        // flushed, and only then does the node say it is offline.
        for h in helpers {
            let _ = tokio::time::timeout(Duration::from_secs(1), h).await;
        }
        while let Ok(msg) = outbox_rx.try_recv() {
            self.publish(msg);
        }
        while let Ok(ev) = link_rx.try_recv() {
            if let LinkEvent::Lost { .. } = ev {
                self.connected = false;
            }
        }
        if self.connected {
            // Nothing trains once the daemon is gone, and consumers read the state topic first.
            self.publish(Message::state(self.topics.jobs_current(), &super::tracker::idle_current()));
            if let Some(client) = &self.client {
                let offline = Message { payload: availability(Availability::Offline, self.twins.me()), ..self.online() };
                let _ = tokio::time::timeout(Duration::from_secs(1), client.publish(&offline)).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
                tracing::info!("MQTT: published offline and disconnected");
            }
        }
        let abort = link.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), link).await.is_err() {
            abort.abort();
        }
    }

    fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Connected(client) => {
                self.client = Some(client);
                self.on_connect();
            }
            LinkEvent::Lost { reason, retry_in, untrusted, cause, up_for } => {
                let kicked_before = self.twins.kicked_out();
                if let LossCause::Oversize(bytes) = cause {
                    if self.oversize.is_none() {
                        tracing::error!(broker = %self.broker, bytes, retry_in_s = retry_in.as_secs(), "MQTT: {}", self.oversize_message(bytes));
                    } else {
                        tracing::debug!(
                            bytes,
                            retry_in_s = retry_in.as_secs(),
                            "MQTT: a message too big to read dropped the connection again"
                        );
                    }
                    self.oversize = Some(bytes);
                } else if cause == LossCause::ClosedByPeer && kicked_before {
                    tracing::debug!(broker = %self.broker, retry_in_s = retry_in.as_secs(), "MQTT: the broker closed the connection again (the twin above)");
                } else if let Some(why) = untrusted.filter(|_| !self.told_untrusted) {
                    self.told_untrusted = true;
                    tracing::error!(
                        broker = %self.broker, error = %reason,
                        "MQTT: refusing the broker at {}: its TLS certificate is not trusted ({why}); the daemon trusts {}. Set mqtt.ca_file to the CA that signed the broker's certificate. Retrying with back-off (training is not affected)",
                        self.url, self.trust,
                    );
                } else if self.connected || !self.ever_connected && self.down_since.is_none() {
                    tracing::warn!(broker = %self.broker, error = %reason, "MQTT: no connection to the broker; retrying with back-off (training is not affected)");
                } else {
                    tracing::debug!(broker = %self.broker, error = %reason, retry_in_s = retry_in.as_secs(), "MQTT: still no connection");
                }
                if self.connected || self.down_since.is_none() {
                    self.down_since = Some(Instant::now());
                }
                self.connected = false;
                self.connected_since = None;
                match cause {
                    LossCause::Unreachable => self.twins.attempt_failed(),
                    LossCause::ClosedByPeer if up_for.is_some_and(|d| d < STABLE_AFTER) => {
                        if let Some(change) = self.twins.kicked() {
                            self.on_twin(change);
                        }
                    }
                    _ => {}
                }
                self.publish_status();
            }
            LinkEvent::Message(p) => self.on_message(p),
        }
    }

    fn oversize_message(&self, bytes: usize) -> String {
        let limit = super::settings::MAX_INCOMING;
        format!(
            "the broker sent a message of {bytes} bytes, more than the {limit} this daemon reads, and the MQTT client dropped the connection on it (before its topic could be read). \
             A retained message does this again at every subscribe: list the retained messages and their sizes with \
             `mosquitto_sub --retained-only -W 2 -F '%l %t' -t '{base}/bridge/#'` and clear the big one with `mosquitto_pub -r -n -t <topic>`. \
             Reconnecting with growing back-off",
            base = self.topics.base(),
        )
    }

    /// Every couple of seconds: a connection that held ends the twin's kick streak and the oversize
    /// warning; peers not heard for a while are forgotten.
    fn look_around(&mut self) {
        let mut changed = false;
        if self.connected_since.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
            if let Some(change) = self.twins.held() {
                self.on_twin(change);
            }
            changed |= self.oversize.take().is_some();
        }
        for change in self.twins.expire(Instant::now()) {
            self.on_twin(change);
        }
        if changed {
            self.publish_status();
        }
    }

    fn online(&self) -> Message {
        Message {
            topic: self.topics.state(),
            payload: availability(Availability::Online, self.twins.me()),
            retain: true,
            qos: QoS::AtLeastOnce,
            correlation: None,
        }
    }

    fn on_twin(&mut self, change: Change) {
        match &change {
            Change::NewPeer(peer) => {
                let warning = self.twins.warning().unwrap_or_default();
                tracing::error!(peer = %peer, instance_id = %self.twins.me(), "MQTT: {warning}");
                // Answer with our own state, so the newcomer learns of this instance at once too.
                if self.connected {
                    self.send(&self.online());
                }
            }
            Change::PeerGone(peer) => {
                let remaining = self.twins.peers().len();
                tracing::info!(peer = %peer, remaining, "MQTT: the other instance {peer} left this base topic");
            }
            Change::Kicked(_) => {
                let warning = self.twins.warning().unwrap_or_default();
                tracing::error!(instance_id = %self.twins.me(), "MQTT: {warning}");
            }
            Change::KicksStopped => tracing::info!(
                "MQTT: the connection has held for {} s: no more sign of a second client with this client id",
                STABLE_AFTER.as_secs()
            ),
        }
        let answering = self.twins.answers_requests();
        if answering != self.answering && self.accept_requests {
            match self.twins.leader() {
                Some(l) if !answering => {
                    tracing::warn!(leader = %l, "MQTT: instance {l} answers requests on this base topic; this one leaves them to it")
                }
                _ => tracing::info!("MQTT: this instance answers requests again"),
            }
        }
        self.answering = answering;
        self.publish_status();
    }

    /// What `/api/health` (and so `bridge/health` and the page) says about MQTT.
    pub fn publish_status(&self) {
        let mut warnings: Vec<String> = self.twins.warning().into_iter().collect();
        if let Some(bytes) = self.oversize {
            warnings.push(self.oversize_message(bytes));
        }
        self.status.set(Facts {
            connected: self.connected,
            instance_id: self.twins.me().to_string(),
            twin: self.twins.is_twin(),
            peers: self.twins.peers(),
            answers_requests: self.twins.answers_requests(),
            protocol: self.version().map(Version::label),
            warnings,
        });
    }

    fn on_connect(&mut self) {
        let first = !self.ever_connected;
        self.connected = true;
        self.connected_since = Some(Instant::now());
        self.told_untrusted = false;
        self.ever_connected = true;
        match self.down_since.take() {
            Some(t) => {
                tracing::info!(broker = %self.broker, after_s = t.elapsed().as_secs(), base_topic = %self.topics.base(), "MQTT: connected again; republishing state")
            }
            None => {
                tracing::info!(broker = %self.broker, base_topic = %self.topics.base(), protocol = %self.version().map(Version::label).unwrap_or(""), "MQTT: connected")
            }
        }
        // A clean session forgets subscriptions: subscribe again every time.
        if self.accept_requests {
            self.subscribe(self.topics.request_filter(), QoS::AtLeastOnce, true);
        }
        if self.homeassistant {
            self.subscribe(self.topics.ha_status(), QoS::AtLeastOnce, false);
        }
        // Our own state, info and health come back to us; another instance id there is a twin.
        for topic in [self.topics.state(), self.topics.info(), self.topics.health()] {
            self.subscribe(topic, QoS::AtMostOnce, false);
        }
        self.send(&self.online());
        // The first connect computes everything; after that the remembered state is complete (it is kept
        // while disconnected too), so a reconnect republishes it once instead of twice.
        self.republish();
        if first {
            self.refresh.notify_one();
            for msg in std::mem::take(&mut self.early) {
                self.send(&msg);
            }
        }
        self.publish_status();
    }

    fn republish(&mut self) {
        for msg in self.discovery.values().chain(self.retained.values()) {
            self.send(msg);
        }
        self.discovery.retain(|_, m| !m.payload.is_empty());
        self.retained.retain(|_, m| !m.payload.is_empty());
    }

    fn publish(&mut self, msg: Message) {
        if self.connected {
            self.send(&msg);
        } else if !msg.retain {
            if !self.ever_connected && self.early.len() < EARLY_LIMIT {
                self.early.push(msg);
                return;
            }
            // Progress, events and answers have no later copy: lost, and counted as such.
            self.outbox.count_dropped();
        }
        // `online` is sent first at every connect anyway (and again with each health message).
        if msg.retain && msg.topic != self.topics.state() {
            let map = if self.topics.is_discovery(&msg.topic) { &mut self.discovery } else { &mut self.retained };
            // A clear is said once (kept only until a connection takes it): republished at every reconnect
            // it would reach JSON consumers as an empty message each time.
            if msg.payload.is_empty() && self.connected {
                map.remove(&msg.topic);
            } else {
                map.insert(msg.topic.clone(), msg);
            }
        }
    }

    fn send(&self, msg: &Message) {
        let sent = match &self.client {
            Some(client) => client.try_publish(msg),
            None => Err("not connected yet".into()),
        };
        if let Err(e) = sent {
            self.outbox.count_dropped();
            tracing::debug!(topic = %msg.topic, error = %e, "MQTT: message dropped");
        }
    }

    fn subscribe(&self, filter: String, qos: QoS, retain_as_published: bool) {
        if let Some(Err(e)) = self.client.as_ref().map(|c| c.try_subscribe(filter.clone(), qos, retain_as_published)) {
            tracing::warn!(filter = %filter, error = %e, "MQTT: could not subscribe");
        }
    }

    /// The MQTT version of the current connection (None before the first).
    pub fn version(&self) -> Option<Version> {
        self.client.as_ref().map(Client::version)
    }

    fn on_message(&mut self, p: Received) {
        let topic = p.topic.clone();
        if self.homeassistant && topic == self.topics.ha_status() {
            // A retained "online" arrives with every subscribe, right after we published everything anyway.
            if !p.retain && p.payload.as_ref() == b"online" {
                tracing::info!("MQTT: Home Assistant is online; republishing discovery and state");
                self.republish();
            }
            return;
        }
        if let Some(own) = self.own_topic(&topic) {
            self.on_own(own, &p);
            return;
        }
        let Some(name) = self.topics.request_name(&topic).map(str::to_string) else { return };
        // An empty retained message deletes a retained one (the clear the log asks for below); the broker
        // forwards it to subscribers, and over MQTT 5 it keeps its retain flag. It is no request.
        if !self.accept_requests || (p.retain && p.payload.is_empty()) {
            return;
        }
        if !self.twins.answers_requests() {
            tracing::debug!(request = %name, leader = self.twins.leader().unwrap_or(""), "MQTT request left to the instance that answers them");
            return;
        }
        tracing::debug!(request = %name, bytes = p.payload.len(), "MQTT request");
        let reply_to = Route { topic: self.topics.response(&name), correlation: p.correlation.clone() };
        let (reply_to, misrouted) = match p.reply_to.as_deref().map(|t| (t, self.topics.reply_topic_problem(t))) {
            Some((topic, None)) => (Route { topic: topic.to_string(), ..reply_to }, None),
            Some((topic, Some(why))) => (reply_to, Some(format!("the Response Topic {topic:?} is refused: {why}"))),
            None => (reply_to, None),
        };
        let me = requests::Answerer { instance_id: self.twins.me().to_string(), node_id: self.topics.node_id().to_string() };
        if p.retain {
            tracing::warn!(
                topic = %topic, bytes = p.payload.len(),
                "MQTT: ignored a retained request on {topic} ({} bytes): it would run again at every reconnect. Publish requests without the retain flag, and clear this one with `mosquitto_pub -r -n -t '{topic}'`",
                p.payload.len(),
            );
            let transaction = if p.payload.len() <= MAX_RETAINED_PARSE { requests::parse_payload(&p.payload).0 } else { None };
            let refusal = requests::Refused {
                code: "bad_request",
                message:
                    "retained requests are ignored (they would run again on every reconnect); publish the request without the retain flag"
                        .into(),
            };
            self.outbox.send(reply_to.answer(&requests::response(Err((refusal, None)), transaction, &me)));
            return;
        }
        let (transaction, body) = requests::parse_payload(&p.payload);
        if let Some(message) = misrouted {
            tracing::info!(request = %name, "MQTT request refused: {message}");
            let refusal = requests::Refused { code: "bad_request", message };
            self.outbox.send(reply_to.answer(&requests::response(Err((refusal, None)), transaction, &me)));
            return;
        }
        let call = body.and_then(|map| requests::to_call(&name, map));
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let refusal = requests::Refused {
                code: "busy",
                message: format!("{MAX_REQUESTS_IN_FLIGHT} MQTT requests are already being answered; try again shortly"),
            };
            self.outbox.send(reply_to.answer(&requests::response(Err((refusal, None)), transaction, &me)));
            return;
        };
        let router = self.router.clone();
        let token = self.token.clone();
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            let result = match call {
                Ok(call) => requests::dispatch(&router, &token, call).await,
                Err(refused) => Err((refused, None)),
            };
            if let Err((e, _)) = &result {
                tracing::info!(request = %name, code = e.code, "MQTT request refused: {}", e.message);
            }
            outbox.send(reply_to.answer(&requests::response(result, transaction, &me)));
            drop(permit);
        });
    }
}

impl Session {
    fn own_topic(&self, topic: &str) -> Option<Own> {
        if topic == self.topics.state() {
            Some(Own::State)
        } else if topic == self.topics.info() {
            Some(Own::Info)
        } else if topic == self.topics.health() {
            Some(Own::Health)
        } else {
            None
        }
    }

    /// A message on our own `bridge/state`, `bridge/info` or `bridge/health`. Ours carry our instance id;
    /// anything else published there while we listen is another daemon. Retained copies that arrive with
    /// the subscription do not count: they may be years old (a reinstalled Pi) or a twin's last will.
    fn on_own(&mut self, own: Own, p: &Received) {
        if p.retain || p.payload.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else { return };
        let id = instance_of(&v);
        if id == Some(self.twins.me()) {
            return;
        }
        // A millwright from before instance ids is a twin too, just a nameless one.
        let id = id.unwrap_or("unknown");
        let offline = own == Own::State && v["state"] == "offline";
        let seen = if offline {
            Seen::Gone
        } else {
            let answers_requests = (own == Own::Info).then(|| v["requests"].as_array().is_some_and(|r| !r.is_empty()));
            Seen::Alive { answers_requests }
        };
        let change = self.twins.sighting(id, seen, Instant::now());
        if offline && self.connected {
            // A twin's last will (or its shutdown) must not leave this running instance shown offline.
            tracing::info!(peer = %id, "MQTT: instance {id} published offline on this base topic; republished this instance's online");
            self.send(&self.online());
        }
        if let Some(change) = change {
            self.on_twin(change);
        }
    }
}

/// Where a request's answer goes: the MQTT 5 Response Topic the request named, else
/// `bridge/response/<name>`; with the request's Correlation Data either way.
struct Route {
    topic: String,
    correlation: Option<bytes::Bytes>,
}

impl Route {
    fn answer(&self, payload: &Value) -> Message {
        Message::reply(self.topic.clone(), payload, self.correlation.clone())
    }
}

/// The instance id in one of our bridge messages: top level in state and info, under `mqtt` in health.
fn instance_of(v: &Value) -> Option<&str> {
    v.get("instance_id").and_then(Value::as_str).or_else(|| v.get("mqtt")?.get("instance_id")?.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_found_in_state_info_and_health() {
        assert_eq!(instance_of(&serde_json::json!({"state": "online", "instance_id": "a1"})), Some("a1"));
        assert_eq!(instance_of(&serde_json::json!({"status": "ok", "mqtt": {"instance_id": "b2"}})), Some("b2"));
        assert_eq!(instance_of(&serde_json::json!({"state": "offline"})), None);
        assert_eq!(instance_of(&serde_json::json!(7)), None);
    }

    /// A broker from before MQTT 5 (Mosquitto ≤ 1.5): a version-5 CONNECT gets 3.1.1's "unacceptable
    /// protocol version" and a closed socket, a 3.1.1 CONNECT is accepted. No broker here speaks only
    /// 3.1.1, so this one is a few bytes on a socket.
    #[tokio::test]
    async fn auto_connects_as_3_1_1_to_a_broker_that_refuses_version_5() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let levels = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = levels.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let mut buf = vec![0u8; 512];
                let mut n = 0;
                // Fixed header, a one-byte remaining length (our CONNECT is short), "\0\x04MQTT", the level.
                while n < 9 {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                if n < 9 {
                    continue;
                }
                let level = buf[8];
                seen.lock().unwrap().push(level);
                if level == 5 {
                    let _ = sock.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
                    drop(sock);
                } else {
                    let _ = sock.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
                    tokio::spawn(async move {
                        let mut sink = [0u8; 256];
                        while matches!(sock.read(&mut sink).await, Ok(k) if k > 0) {}
                    });
                }
            }
        });
        let cfg = crate::config::MqttConfig { url: format!("mqtt://127.0.0.1:{port}"), node_id: Some("old".into()), ..Default::default() };
        let settings = Settings::from_config(&cfg, "0123456789abcdef").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = watch::channel(false);
        let t0 = Instant::now();
        let link = tokio::spawn(link(settings, tx, stop_rx));
        let mut lost = 0;
        let version = loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(LinkEvent::Connected(client))) => break client.version(),
                Ok(Some(LinkEvent::Lost { .. })) => lost += 1,
                Ok(Some(LinkEvent::Message(_))) => {}
                other => panic!("no connection within 5 s ({} losses): {:?}", lost, other.is_ok()),
            }
        };
        assert_eq!(version, Version::V311);
        assert_eq!(lost, 0, "a refused version is not told as a lost connection");
        assert!(t0.elapsed() < Duration::from_millis(900), "the 3.1.1 attempt follows at once: {:?}", t0.elapsed());
        assert_eq!(*levels.lock().unwrap(), vec![5, 4]);
        let _ = stop_tx.send(true);
        link.abort();
    }
}
