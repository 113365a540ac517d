//! Readings in over MQTT, on a connection of their own: MQTT 3.1.1 with a persistent session
//! (`clean_session = false`, client id `<client_id>-readings`) and manual acknowledgements. A QoS 1 message
//! is acknowledged only once its rows are durable in the readings log (or refused for good: a bad row does
//! not get better by being sent again); when the log cannot take them (a full disk), the message stays
//! unacknowledged, the connection is dropped and made again after a pause, and the broker delivers it
//! again. A daemon that is down meanwhile finds the messages waiting in its session when it comes back.
//!
//! Messages of different machines are taken in concurrently (the log syncs many at once), each machine's in
//! arrival order; all are acknowledged in arrival order.
use super::settings::{MAX_INCOMING, Settings};
use crate::api::AppState;
use crate::ingest::{IngestError, Readings, ReadingsTopic, parse_json, parse_value};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Messages taken in at once; more wait in the broker (which also caps what it sends unacknowledged).
const IN_FLIGHT: usize = 256;
/// Machines whose last message's turn is remembered before the finished ones are forgotten.
const MAX_TURNS: usize = 4096;
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// After the log refused to store (full disk), the pause before the broker is asked to send again.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// A machine's summary is tried this often, 100 ms apart, before its message is refused (or, after a fault of
/// the daemon itself, waits for the broker). Files vanishing under a read are retried where they are read.
const SUMMARY_TRIES: u32 = 2;
/// One refusal per this interval goes to the log; all are counted.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What became of one message.
#[derive(Debug)]
enum Outcome {
    /// Its good rows are durable (it may also have had refused ones): acknowledge.
    Stored { accepted: usize, rejected: usize },
    /// Refused as a whole (a topic or body that is not readings, an unknown machine): acknowledge too.
    Refused(String),
    /// The log could not store it: leave it unacknowledged so the broker sends it again.
    NotStored(IngestError),
}

/// Counts for `/api/health`, shared with the status.
#[derive(Default)]
pub struct Counts {
    pub messages: AtomicU64,
    pub refused_messages: AtomicU64,
    pub rows_accepted: AtomicU64,
    pub rows_rejected: AtomicU64,
    /// How old each stored message's newest reading was once it was durable: for live readings, the time
    /// from the gateway's stamp to the disk (a replay of old readings shows their age instead).
    pub stored_age: crate::util::histogram::Histogram,
}

pub struct ReadingsIn {
    pub settings: Settings,
    pub topic: ReadingsTopic,
    pub state: AppState,
    pub readings: Arc<Readings>,
    pub counts: Arc<Counts>,
}

fn options(s: &Settings) -> MqttOptions {
    let mut o = super::wire::base_v311(s, format!("{}-readings", s.client_id));
    // The broker keeps the subscription and the unacknowledged messages while the daemon is away.
    o.set_clean_session(false);
    o.set_manual_acks(true);
    o.set_max_packet_size(MAX_INCOMING, MAX_INCOMING);
    o
}

impl ReadingsIn {
    /// Runs until `stop`: one connection after another, each until it fails or the log refuses to store.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let mut wait = RETRY_MIN;
        loop {
            let began = Instant::now();
            let end = me.clone().connection(&mut stop).await;
            let pause = match end {
                End::Stopped => return,
                End::NotStored => STORE_RETRY,
                End::Failed(why) => {
                    // A connection that held a while starts the back-off again.
                    if began.elapsed() > RETRY_MAX {
                        wait = RETRY_MIN;
                    }
                    tracing::warn!(broker = %me.settings.broker, retry_in_s = wait.as_secs(), "MQTT readings: {why}");
                    let w = wait;
                    wait = (wait * 2).min(RETRY_MAX);
                    w
                }
            };
            tokio::select! {
                _ = super::stopped(&mut stop) => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn connection(self: Arc<Self>, stop: &mut watch::Receiver<bool>) -> End {
        let (client, mut events) = AsyncClient::new(options(&self.settings), IN_FLIGHT);
        let (to_ack, acks) = mpsc::channel::<(JoinHandle<Outcome>, Publish)>(IN_FLIGHT);
        let (refused_tx, mut refused_rx) = watch::channel(false);
        let acker = tokio::spawn(acknowledge(client.clone(), acks, refused_tx));
        // Each machine's messages are taken in one after another, in arrival order (its readings are checked
        // against its newest one); different machines' at once.
        let mut turns: HashMap<String, watch::Receiver<bool>> = HashMap::new();
        let end = loop {
            tokio::select! {
                _ = super::stopped(stop) => break End::Stopped,
                _ = refused_rx.changed() => break End::NotStored,
                ev = events.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Every time: a broker that lost its sessions (no persistence) would otherwise send nothing.
                        if let Err(e) = client.try_subscribe(self.topic.filter(), QoS::AtLeastOnce) {
                            break End::Failed(format!("cannot subscribe: {e}"));
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                            break End::Failed(format!("the broker refused the subscription to {} (check its ACL)", self.topic.filter()));
                        }
                        tracing::info!(filter = %self.topic.filter(), "MQTT readings: subscribed");
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let me = self.clone();
                        let (topic, payload) = (p.topic.clone(), p.payload.clone());
                        let (done, turn) = watch::channel(false);
                        let before = self.topic.of(&topic).and_then(|of| turns.insert(of.machine, turn));
                        if turns.len() > MAX_TURNS {
                            turns.retain(|_, t| !*t.borrow());
                        }
                        let job = tokio::spawn(async move {
                            if let Some(mut before) = before {
                                // An error means that task ended without saying so (it panicked): go on.
                                let _ = before.wait_for(|d| *d).await;
                            }
                            let outcome = me.take(&topic, &payload).await;
                            let _ = done.send(true);
                            outcome
                        });
                        if to_ack.send((job, p)).await.is_err() {
                            break End::Failed("the acknowledging task ended".into());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break End::Failed(e.to_string()),
                },
            }
        };
        drop(to_ack);
        if matches!(end, End::Stopped) {
            // Let the messages being stored finish and be acknowledged, then say goodbye.
            let _ = tokio::time::timeout(Duration::from_secs(2), acker).await;
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(ev) = events.poll().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        } else {
            acker.abort();
        }
        end
    }

    /// Takes one message's readings in.
    async fn take(&self, topic: &str, payload: &[u8]) -> Outcome {
        self.counts.messages.fetch_add(1, Ordering::Relaxed);
        let outcome = self.take_inner(topic, payload).await;
        match &outcome {
            Outcome::Stored { accepted, rejected } => {
                self.counts.rows_accepted.fetch_add(*accepted as u64, Ordering::Relaxed);
                self.counts.rows_rejected.fetch_add(*rejected as u64, Ordering::Relaxed);
            }
            Outcome::Refused(why) => {
                self.counts.refused_messages.fetch_add(1, Ordering::Relaxed);
                sampled(&MESSAGE_REFUSED, || tracing::warn!(topic, "MQTT readings refused: {why}"));
            }
            Outcome::NotStored(e) => tracing::error!(topic, error = %e, "MQTT readings not stored; the broker will send them again"),
        }
        outcome
    }

    async fn take_inner(&self, topic: &str, payload: &[u8]) -> Outcome {
        let Some(of) = self.topic.of(topic) else { return Outcome::Refused("the topic does not match readings.mqtt_topic".into()) };
        let rows = match &of.sensor {
            None => parse_json(payload),
            Some(sensor) => parse_value(payload, sensor, crate::util::time::now_secs()),
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let target = match self.target(&of.machine, &rows).await {
            Ok(t) => t,
            Err(Missing::Machine(why)) => return Outcome::Refused(why),
            Err(Missing::Unreadable(why)) => {
                return Outcome::Refused(format!(
                    "machine {:?} cannot be read ({why}); its readings are refused until it is fixed",
                    of.machine
                ));
            }
            Err(Missing::Summary(why)) => return Outcome::NotStored(IngestError::Open { path: of.machine.clone().into(), message: why }),
        };
        let newest = rows.iter().flatten().map(|r| r.ts).reduce(f64::max);
        match self.readings.accept(&of.machine, target.sensors, target.history_end, rows).await {
            Ok(a) => {
                if let Some(ts) = newest.filter(|_| a.accepted > 0) {
                    self.counts.stored_age.record_ms((crate::util::time::now_secs() - ts) * 1000.0);
                }
                if let Some(first) = a.errors.first() {
                    sampled(
                        &ROWS_REFUSED,
                        || tracing::warn!(machine = %of.machine, accepted = a.accepted, rejected = a.rejected, row = first.row, error = %first.error, "readings refused"),
                    );
                }
                Outcome::Stored { accepted: a.accepted, rejected: a.rejected }
            }
            Err(e) => Outcome::NotStored(e),
        }
    }
}

enum Missing {
    /// No such machine: the message is refused for good.
    Machine(String),
    /// The machine's folder cannot be read (a machine.toml with a mistake, a damaged file): the message is
    /// refused, counted and logged. Waiting for the broker to send it again would hold back every other
    /// machine's readings behind it until someone fixes the folder.
    Unreadable(String),
    /// The summary failed inside the daemon: the message waits for the broker to send it again.
    Summary(String),
}

impl ReadingsIn {
    /// The machine's sensors and the end of its history (a machine with no folder is made when the
    /// configuration allows it). A summary that fails for another reason than an unknown machine is tried once
    /// more before the message is refused (the data) or waits for the broker (the daemon).
    async fn target(&self, machine: &str, rows: &[Result<crate::ingest::Row, String>]) -> Result<crate::api::ReadingsTarget, Missing> {
        use axum::http::StatusCode;
        let mut last = Missing::Summary(String::new());
        for attempt in 0..SUMMARY_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match self.state.readings_target(machine, rows).await {
                Ok(s) => return Ok(s),
                Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::BAD_REQUEST => {
                    return Err(Missing::Machine(e.message_for(false).to_string()));
                }
                Err(e) if e.status.is_server_error() => last = Missing::Summary(e.message_for(false).to_string()),
                // The daemon's own log may name the file and the mistake in it.
                Err(e) => last = Missing::Unreadable(e.message_for(true).to_string()),
            }
        }
        Err(last)
    }
}

enum End {
    Stopped,
    /// The log refused to store a message: reconnect so the broker sends it again.
    NotStored,
    Failed(String),
}

/// Acknowledges each message once its outcome is known, in arrival order; stops (and says so) at the first
/// message the log could not store, leaving it and every later one to be sent again.
async fn acknowledge(client: AsyncClient, mut acks: mpsc::Receiver<(JoinHandle<Outcome>, Publish)>, refused: watch::Sender<bool>) {
    while let Some((job, publish)) = acks.recv().await {
        match job.await {
            Ok(Outcome::Stored { .. } | Outcome::Refused(_)) => {
                if client.ack(&publish).await.is_err() {
                    return;
                }
            }
            Ok(Outcome::NotStored(_)) | Err(_) => {
                let _ = refused.send(true);
                return;
            }
        }
    }
}

/// When a kind of refusal was last logged.
type LastLogged = std::sync::Mutex<Option<Instant>>;
static MESSAGE_REFUSED: LastLogged = std::sync::Mutex::new(None);
static ROWS_REFUSED: LastLogged = std::sync::Mutex::new(None);

/// Runs `log` at most once per [`LOG_EVERY`] for each kind of refusal: a sender of bad readings at 1 kHz
/// must not fill the journal.
fn sampled(kind: &LastLogged, log: impl FnOnce()) {
    let mut last = crate::util::sync::lock(kind);
    if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
        *last = Some(Instant::now());
        log();
    }
}
