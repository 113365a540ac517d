//! The connection: a link task that only drives rumqttc's event loop (reconnecting with back-off), and a
//! session task that owns the client, remembers every retained message, republishes them all after each
//! (re)connect (the broker may have restarted without persistence), and answers requests.
use super::outbox::{Message, Outbox};
use super::requests;
use super::topics::Topics;
use axum::Router;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish, QoS, TlsError,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Requests answered at once; more get a "busy" answer instead of piling up tasks.
const MAX_REQUESTS_IN_FLIGHT: usize = 4;

pub enum LinkEvent {
    Connected,
    /// `untrusted`: why the broker's TLS certificate was refused, when that is what failed.
    Lost {
        reason: String,
        retry_in: Duration,
        untrusted: Option<String>,
    },
    Message(Publish),
}

/// Polls the event loop until told to stop or until our DISCONNECT has been written. Between failed
/// attempts it waits 1 s, doubling to 30 s, so a dead broker costs nothing.
pub async fn link(mut eventloop: EventLoop, tx: mpsc::Sender<LinkEvent>, mut stop: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                if tx.send(LinkEvent::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(LinkEvent::Message(p)).await.is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if *stop.borrow() {
                    return;
                }
                if tx
                    .send(LinkEvent::Lost {
                        reason: e.to_string(),
                        retry_in: backoff,
                        untrusted: untrusted_certificate(&e),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = super::stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Why the broker's certificate was refused, in an operator's words. rustls' verdict arrives wrapped in an
/// I/O error ("TLS: I/O: invalid peer certificate: BadSignature"), which names neither the cause nor the
/// file to fix; a certificate that is not trusted never heals by retrying, so it deserves its own line.
pub fn untrusted_certificate(e: &ConnectionError) -> Option<String> {
    let verdict = match e {
        ConnectionError::Tls(TlsError::TLS(r)) => Some(r),
        ConnectionError::Tls(TlsError::Io(io)) | ConnectionError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    let rustls::Error::InvalidCertificate(cert) = verdict? else {
        return None;
    };
    use rustls::CertificateError as C;
    Some(match cert {
        C::UnknownIssuer => "it is not signed by a CA the daemon trusts".into(),
        // Typical of a CA that was regenerated under the same name: the issuer matches, the key does not.
        C::BadSignature => "its signature does not verify against the trusted CA, perhaps another CA with the same name".into(),
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet (is the clock right?)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => "it is not issued for the host name in mqtt.url".into(),
        C::Revoked => "it has been revoked".into(),
        other => format!("{other:?}"),
    })
}

pub struct Session {
    pub client: AsyncClient,
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
    /// Epoch seconds, bumped every [`HEARTBEAT_EVERY`] by this loop, connected or not (for the watchdog).
    pub heartbeat: Arc<AtomicU64>,
}

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

fn beat(heartbeat: &AtomicU64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    heartbeat.store(now, Ordering::Relaxed);
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(client: AsyncClient, topics: Topics, broker: String, accept_requests: bool, homeassistant: bool, router: Router, token: Arc<String>, outbox: Outbox, refresh: Arc<Notify>) -> Session {
        Session {
            client,
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
            heartbeat: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn run(mut self, mut link_rx: mpsc::Receiver<LinkEvent>, mut outbox_rx: mpsc::Receiver<Message>, mut stop: watch::Receiver<bool>, link: JoinHandle<()>, helpers: Vec<JoinHandle<()>>) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                biased;
                _ = super::stopped(&mut stop) => break,
                _ = tick.tick() => beat(&self.heartbeat),
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
            self.publish(Message::clear(self.topics.jobs_current()));
            let offline = self.client.publish(self.topics.state(), QoS::AtLeastOnce, true, super::OFFLINE.as_bytes().to_vec());
            let _ = tokio::time::timeout(Duration::from_secs(1), offline).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
            tracing::info!("MQTT: published offline and disconnected");
        }
        let abort = link.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), link).await.is_err() {
            abort.abort();
        }
    }

    fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Connected => self.on_connect(),
            LinkEvent::Lost {
                reason,
                retry_in,
                untrusted,
            } => {
                if let Some(why) = untrusted.filter(|_| !self.told_untrusted) {
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
            }
            LinkEvent::Message(p) => self.on_message(p),
        }
    }

    fn on_connect(&mut self) {
        self.connected = true;
        self.told_untrusted = false;
        self.ever_connected = true;
        match self.down_since.take() {
            Some(t) => tracing::info!(broker = %self.broker, after_s = t.elapsed().as_secs(), base_topic = %self.topics.base(), "MQTT: connected again; republishing state"),
            None => tracing::info!(broker = %self.broker, base_topic = %self.topics.base(), "MQTT: connected"),
        }
        // A clean session forgets subscriptions: subscribe again every time.
        if self.accept_requests {
            let _ = self.client.try_subscribe(self.topics.request_filter(), QoS::AtLeastOnce);
        }
        if self.homeassistant {
            let _ = self.client.try_subscribe(self.topics.ha_status(), QoS::AtLeastOnce);
        }
        self.send(&Message { topic: self.topics.state(), payload: super::ONLINE.as_bytes().to_vec(), retain: true, qos: QoS::AtLeastOnce });
        self.republish();
        self.refresh.notify_one();
    }

    fn republish(&self) {
        for msg in self.discovery.values().chain(self.retained.values()) {
            self.send(msg);
        }
    }

    fn publish(&mut self, msg: Message) {
        if self.connected {
            self.send(&msg);
        }
        if msg.retain {
            let map = if self.topics.is_discovery(&msg.topic) { &mut self.discovery } else { &mut self.retained };
            map.insert(msg.topic.clone(), msg);
        }
    }

    fn send(&self, msg: &Message) {
        if let Err(e) = self.client.try_publish(msg.topic.clone(), msg.qos, msg.retain, msg.payload.clone()) {
            tracing::debug!(topic = %msg.topic, error = %e, "MQTT: message dropped");
        }
    }

    fn on_message(&mut self, p: Publish) {
        let topic = p.topic.clone();
        if self.homeassistant && topic == self.topics.ha_status() {
            // A retained "online" arrives with every subscribe, right after we published everything anyway.
            if !p.retain && p.payload.as_ref() == b"online" {
                tracing::info!("MQTT: Home Assistant is online; republishing discovery and state");
                self.republish();
                self.refresh.notify_one();
            }
            return;
        }
        let Some(name) = self.topics.request_name(&topic).map(str::to_string) else { return };
        if !self.accept_requests {
            return;
        }
        tracing::debug!(request = %name, bytes = p.payload.len(), "MQTT request");
        let (transaction, body) = requests::parse_payload(&p.payload);
        let reply_to = self.topics.response(&name);
        if p.retain {
            let refusal = requests::Refused { code: "bad_request", message: "retained requests are ignored (they would run again on every reconnect); publish the request without the retain flag".into() };
            self.outbox.send(Message::transient(reply_to, &requests::response(Err((refusal, None)), transaction)));
            return;
        }
        let call = body.and_then(|map| requests::to_call(&name, map));
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let refusal = requests::Refused { code: "busy", message: format!("{MAX_REQUESTS_IN_FLIGHT} MQTT requests are already being answered; try again shortly") };
            self.outbox.send(Message::transient(reply_to, &requests::response(Err((refusal, None)), transaction)));
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
            outbox.send(Message::transient(reply_to, &requests::response(result, transaction)));
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certificate_verdicts_count_as_untrusted() {
        let wrapped = |e: rustls::Error| {
            ConnectionError::Tls(TlsError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )))
        };
        let unknown = untrusted_certificate(&wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert!(unknown.is_some_and(|w| w.contains("not signed by a CA")));
        assert!(
            untrusted_certificate(&wrapped(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
            )))
            .is_some_and(|w| w.contains("expired"))
        );
        assert_eq!(
            untrusted_certificate(&wrapped(rustls::Error::DecryptError)),
            None
        );
        assert_eq!(
            untrusted_certificate(&ConnectionError::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            None
        );
        assert_eq!(
            untrusted_certificate(&ConnectionError::NetworkTimeout),
            None
        );
    }
}
