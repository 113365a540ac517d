//! The only part that knows which MQTT version is on the wire. rumqttc has one client per version; the
//! session sees one [`Client`], one [`Received`] message and one [`Failure`] whatever the version.
//!
//! `mqtt.protocol = "auto"` tries MQTT 5 first and, when a broker answers a version-5 CONNECT the way an
//! older broker does (refuses the version, closes the connection, or answers in 3.1.1's format), tries
//! 3.1.1 at the next attempt. After a 3.1.1 connection ends, the next attempt is version 5 again: a broker
//! that was only restarting mid-handshake is not stuck on 3.1.1 until the daemon restarts.
use super::outbox::Message;
use super::settings::{MAX_INCOMING, MAX_OUTGOING, Settings};
use crate::config::MqttProtocol;
use bytes::Bytes;
use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, StateError, TlsError};

/// How many requests the client may queue before `try_publish` fails (the session counts those drops).
const REQUEST_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5,
    V311,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V5 => "5",
            Version::V311 => "3.1.1",
        }
    }
}

/// Why a connection ended, as far as the session needs to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// No CONNACK: the broker is down, refuses us, or its certificate is not trusted.
    Unreachable,
    /// The client refused an incoming message of this many bytes (over [`MAX_INCOMING`]).
    Oversize(usize),
    /// The broker closed the connection (what it does to the older of two clients with one client id).
    ClosedByPeer,
    Other,
}

/// A message from the broker. `reply_to` and `correlation` exist only on MQTT 5.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub reply_to: Option<String>,
    pub correlation: Option<Bytes>,
}

/// What one poll of the event loop brought.
pub enum Polled {
    Connected,
    Message(Received),
    /// Our own DISCONNECT went out: the loop is done.
    Closed,
    Nothing,
}

/// A failed poll, already read for what the session and the fallback need.
#[derive(Debug)]
pub struct Failure {
    pub text: String,
    /// What ended the connection, if it had been up.
    pub cause: LossCause,
    /// Why the broker's TLS certificate was refused, when that is what failed.
    pub untrusted: Option<String>,
    /// The broker answered a CONNECT the way a broker that does not speak this version does.
    pub version_refused: bool,
}

#[derive(Clone)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(r5::AsyncClient),
}

pub enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<r5::EventLoop>),
}

/// The first version to try for a setting.
pub fn first_version(protocol: MqttProtocol) -> Version {
    match protocol {
        MqttProtocol::V311 => Version::V311,
        MqttProtocol::Auto | MqttProtocol::V5 => Version::V5,
    }
}

/// The version of the next attempt after one with `tried` failed (`failure`) or ended (None).
pub fn next_version(protocol: MqttProtocol, tried: Version, failure: Option<&Failure>) -> Version {
    match (protocol, tried) {
        (MqttProtocol::Auto, Version::V5) if failure.is_some_and(|f| f.version_refused) => Version::V311,
        (MqttProtocol::Auto, _) => Version::V5,
        (p, _) => first_version(p),
    }
}

pub fn connect(settings: &Settings, version: Version) -> (Client, EventLoop) {
    match version {
        Version::V311 => {
            let (c, e) = rumqttc::AsyncClient::new(options_v311(settings), REQUEST_CAPACITY);
            (Client::V311(c), EventLoop::V311(Box::new(e)))
        }
        Version::V5 => {
            let (c, e) = r5::AsyncClient::new(options_v5(settings), REQUEST_CAPACITY);
            (Client::V5(c), EventLoop::V5(Box::new(e)))
        }
    }
}

/// What every 3.1.1 connection of the daemon shares: the broker, keep-alive, credentials and TLS (also the
/// replay's connection, which publishes readings like a gateway).
pub fn base_v311(s: &Settings, client_id: String) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, s.host.clone(), s.port);
    o.set_keep_alive(s.keepalive);
    if let Some((user, password)) = &s.credentials {
        o.set_credentials(user.clone(), password.clone());
    }
    if let Some(t) = &s.transport {
        o.set_transport(t.clone());
    }
    o
}

fn options_v311(s: &Settings) -> MqttOptions {
    let mut o = base_v311(s, s.client_id.clone());
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
    // Enough room for a full republish burst (every retained topic) without dropping any.
    o.set_request_channel_capacity(REQUEST_CAPACITY);
    o.set_last_will(LastWill::new(s.will.0.clone(), s.will.1.clone(), QoS::AtLeastOnce, true));
    o
}

fn options_v5(s: &Settings) -> r5::MqttOptions {
    let mut o = r5::MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
    o.set_keep_alive(s.keepalive);
    o.set_clean_start(true);
    // Told to the broker too, which then drops a bigger message for us instead of sending it (3.1.1 has
    // no way to say so: there the client fails the connection on it).
    o.set_max_packet_size(Some(MAX_INCOMING as u32));
    o.set_request_channel_capacity(REQUEST_CAPACITY);
    o.set_last_will(p5::LastWill::new(s.will.0.clone(), s.will.1.clone(), qos5(QoS::AtLeastOnce), true, None));
    if let Some((user, password)) = &s.credentials {
        o.set_credentials(user.clone(), password.clone());
    }
    if let Some(t) = &s.transport {
        o.set_transport(t.clone());
    }
    o
}

fn qos5(q: QoS) -> QoS5 {
    match q {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

impl Client {
    pub fn version(&self) -> Version {
        match self {
            Client::V311(_) => Version::V311,
            Client::V5(_) => Version::V5,
        }
    }

    /// Queues a publish without waiting; fails when the client's queue is full.
    pub fn try_publish(&self, msg: &Message) -> Result<(), String> {
        match self {
            Client::V311(c) => c.try_publish(msg.topic.clone(), msg.qos, msg.retain, msg.payload.clone()).map_err(|e| e.to_string()),
            Client::V5(c) => {
                let props = p5::PublishProperties { correlation_data: msg.correlation.clone(), ..Default::default() };
                c.try_publish_with_properties(msg.topic.clone(), qos5(msg.qos), msg.retain, msg.payload.clone(), props)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// `as_published`: on MQTT 5, deliver the retain flag as the publisher set it, so a retained
    /// request published while we listen is told apart from a plain one (3.1.1 always clears it).
    pub fn try_subscribe(&self, filter: String, qos: QoS, as_published: bool) -> Result<(), String> {
        match self {
            Client::V311(c) => c.try_subscribe(filter, qos).map_err(|e| e.to_string()),
            Client::V5(c) => {
                let mut f = p5::Filter::new(filter, qos5(qos));
                f.preserve_retain = as_published;
                c.try_subscribe_many([f]).map_err(|e| e.to_string())
            }
        }
    }

    pub async fn publish(&self, msg: &Message) -> Result<(), String> {
        match self {
            Client::V311(c) => c.publish(msg.topic.clone(), msg.qos, msg.retain, msg.payload.clone()).await.map_err(|e| e.to_string()),
            Client::V5(c) => c.publish(msg.topic.clone(), qos5(msg.qos), msg.retain, msg.payload.clone()).await.map_err(|e| e.to_string()),
        }
    }

    pub async fn disconnect(&self) -> Result<(), String> {
        match self {
            Client::V311(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        }
    }
}

impl EventLoop {
    /// `up`: whether a CONNACK came since the last failure (a failure then ends a connection; before,
    /// an attempt).
    pub async fn poll(&mut self, up: bool) -> Result<Polled, Failure> {
        match self {
            EventLoop::V311(e) => match e.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Polled::Connected),
                Ok(Event::Incoming(Packet::Publish(p))) => Ok(Polled::Message(Received {
                    topic: p.topic,
                    payload: p.payload,
                    retain: p.retain,
                    reply_to: None,
                    correlation: None,
                })),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(Polled::Closed),
                Ok(_) => Ok(Polled::Nothing),
                Err(e) => Err(Failure {
                    text: e.to_string(),
                    cause: if up { loss_cause_v311(&e) } else { LossCause::Unreachable },
                    untrusted: untrusted_v311(&e),
                    version_refused: false,
                }),
            },
            EventLoop::V5(e) => match e.poll().await {
                Ok(r5::Event::Incoming(p5::Packet::ConnAck(_))) => Ok(Polled::Connected),
                Ok(r5::Event::Incoming(p5::Packet::Publish(p))) => {
                    let props = p.properties.unwrap_or_default();
                    Ok(Polled::Message(Received {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        retain: p.retain,
                        reply_to: props.response_topic,
                        correlation: props.correlation_data,
                    }))
                }
                Ok(r5::Event::Outgoing(Outgoing::Disconnect)) => Ok(Polled::Closed),
                Ok(_) => Ok(Polled::Nothing),
                Err(e) => Err(Failure {
                    text: e.to_string(),
                    cause: if up { loss_cause_v5(&e) } else { LossCause::Unreachable },
                    untrusted: untrusted_v5(&e),
                    version_refused: !up && version_refused_v5(&e),
                }),
            },
        }
    }
}

fn closed(io: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(io.kind(), K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe)
}

/// What ended a 3.1.1 connection that had been up.
pub fn loss_cause_v311(e: &ConnectionError) -> LossCause {
    use rumqttc::mqttbytes::Error as Wire;
    match e {
        ConnectionError::MqttState(StateError::Deserialization(Wire::PayloadSizeLimitExceeded(n))) => LossCause::Oversize(*n),
        ConnectionError::MqttState(StateError::ConnectionAborted) => LossCause::ClosedByPeer,
        ConnectionError::MqttState(StateError::Io(io) | StateError::Deserialization(Wire::Io(io))) | ConnectionError::Io(io)
            if closed(io) =>
        {
            LossCause::ClosedByPeer
        }
        _ => LossCause::Other,
    }
}

/// What ended a version-5 connection that had been up. A broker says why it closes one on MQTT 5: a
/// second client with our id is "session taken over".
pub fn loss_cause_v5(e: &r5::ConnectionError) -> LossCause {
    use r5::StateError as S;
    use rumqttc::v5::mqttbytes::Error as Wire;
    match e {
        r5::ConnectionError::MqttState(S::Deserialization(Wire::PayloadSizeLimitExceeded { pkt_size, .. })) => {
            LossCause::Oversize(*pkt_size)
        }
        r5::ConnectionError::MqttState(S::IncomingPacketTooLarge { pkt_size, .. }) => LossCause::Oversize(*pkt_size),
        r5::ConnectionError::MqttState(S::ConnectionAborted) => LossCause::ClosedByPeer,
        r5::ConnectionError::MqttState(S::ServerDisconnect { reason_code: p5::DisconnectReasonCode::SessionTakenOver, .. }) => {
            LossCause::ClosedByPeer
        }
        r5::ConnectionError::MqttState(S::Io(io) | S::Deserialization(Wire::Io(io))) | r5::ConnectionError::Io(io) if closed(io) => {
            LossCause::ClosedByPeer
        }
        _ => LossCause::Other,
    }
}

/// How a broker that does not speak MQTT 5 answers a version-5 CONNECT: Mosquitto 1.5 and older send a
/// 3.1.1 CONNACK "unacceptable protocol version" (two bytes, which a version-5 client cannot parse, or
/// reads as a refusal) and close; others close at once. A TCP refusal, a TLS failure or a refused login
/// is not about the version.
fn version_refused_v5(e: &r5::ConnectionError) -> bool {
    use p5::ConnectReturnCode as C;
    use r5::StateError as S;
    match e {
        r5::ConnectionError::ConnectionRefused(code) | r5::ConnectionError::MqttState(S::ConnFail { reason: code }) => {
            matches!(code, C::UnsupportedProtocolVersion | C::ProtocolError | C::MalformedPacket | C::UnspecifiedError)
        }
        r5::ConnectionError::MqttState(S::Deserialization(_)) => true,
        r5::ConnectionError::MqttState(S::ConnectionAborted) => true,
        r5::ConnectionError::MqttState(S::Io(io)) | r5::ConnectionError::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof)
        }
        r5::ConnectionError::NotConnAck(_) => true,
        _ => false,
    }
}

fn untrusted_v311(e: &ConnectionError) -> Option<String> {
    match e {
        ConnectionError::Tls(TlsError::TLS(r)) => untrusted_certificate(r),
        ConnectionError::Tls(TlsError::Io(io)) | ConnectionError::Io(io) => io_verdict(io),
        _ => None,
    }
}

fn untrusted_v5(e: &r5::ConnectionError) -> Option<String> {
    match e {
        r5::ConnectionError::Tls(TlsError::TLS(r)) => untrusted_certificate(r),
        r5::ConnectionError::Tls(TlsError::Io(io)) | r5::ConnectionError::Io(io) => io_verdict(io),
        _ => None,
    }
}

fn io_verdict(io: &std::io::Error) -> Option<String> {
    io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).and_then(untrusted_certificate)
}

/// Why the broker's certificate was refused, in an operator's words. rustls' verdict arrives wrapped in an
/// I/O error ("TLS: I/O: invalid peer certificate: BadSignature"), which names neither the cause nor the
/// file to fix; a certificate that is not trusted never heals by retrying, so it deserves its own line.
pub fn untrusted_certificate(verdict: &rustls::Error) -> Option<String> {
    let rustls::Error::InvalidCertificate(cert) = verdict else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_told_apart() {
        use rumqttc::mqttbytes::Error as Wire;
        let state = |e: StateError| ConnectionError::MqttState(e);
        assert_eq!(
            loss_cause_v311(&state(StateError::Deserialization(Wire::PayloadSizeLimitExceeded(9_000_005)))),
            LossCause::Oversize(9_000_005)
        );
        assert_eq!(loss_cause_v311(&state(StateError::ConnectionAborted)), LossCause::ClosedByPeer);
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(loss_cause_v311(&state(StateError::Io(reset()))), LossCause::ClosedByPeer);
        assert_eq!(loss_cause_v311(&state(StateError::Deserialization(Wire::Io(reset())))), LossCause::ClosedByPeer);
        assert_eq!(loss_cause_v311(&ConnectionError::Io(reset())), LossCause::ClosedByPeer);
        assert_eq!(loss_cause_v311(&state(StateError::AwaitPingResp)), LossCause::Other);
        assert_eq!(loss_cause_v311(&ConnectionError::NetworkTimeout), LossCause::Other);
    }

    #[test]
    fn version_5_losses_are_told_apart_too() {
        use r5::StateError as S;
        let state = |e: S| r5::ConnectionError::MqttState(e);
        let taken = S::ServerDisconnect { reason_code: p5::DisconnectReasonCode::SessionTakenOver, reason_string: None };
        assert_eq!(loss_cause_v5(&state(taken)), LossCause::ClosedByPeer);
        assert_eq!(loss_cause_v5(&state(S::IncomingPacketTooLarge { pkt_size: 9, max: 8 })), LossCause::Oversize(9));
        assert_eq!(loss_cause_v5(&state(S::AwaitPingResp)), LossCause::Other);
        let refused = r5::ConnectionError::ConnectionRefused(p5::ConnectReturnCode::UnsupportedProtocolVersion);
        assert!(version_refused_v5(&refused));
        let login = r5::ConnectionError::ConnectionRefused(p5::ConnectReturnCode::BadUserNamePassword);
        assert!(!version_refused_v5(&login), "a refused login is not about the version");
        let down = r5::ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!version_refused_v5(&down), "a broker that is down is not about the version");
    }

    #[test]
    fn auto_falls_back_to_3_1_1_only_on_a_version_refusal_and_comes_back() {
        let failure = |version_refused| Failure { text: String::new(), cause: LossCause::Unreachable, untrusted: None, version_refused };
        let auto = MqttProtocol::Auto;
        assert_eq!(first_version(auto), Version::V5);
        assert_eq!(next_version(auto, Version::V5, Some(&failure(true))), Version::V311);
        assert_eq!(next_version(auto, Version::V5, Some(&failure(false))), Version::V5);
        assert_eq!(next_version(auto, Version::V311, Some(&failure(false))), Version::V5);
        assert_eq!(next_version(MqttProtocol::V5, Version::V5, Some(&failure(true))), Version::V5);
        assert_eq!(next_version(MqttProtocol::V311, Version::V311, None), Version::V311);
    }

    #[test]
    fn only_certificate_verdicts_count_as_untrusted() {
        let wrapped = |e: rustls::Error| ConnectionError::Tls(TlsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
        let unknown = untrusted_v311(&wrapped(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)));
        assert!(unknown.is_some_and(|w| w.contains("not signed by a CA")));
        assert!(
            untrusted_v311(&wrapped(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)))
                .is_some_and(|w| w.contains("expired"))
        );
        assert_eq!(untrusted_v311(&wrapped(rustls::Error::DecryptError)), None);
        assert_eq!(untrusted_v311(&ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))), None);
        assert_eq!(untrusted_v311(&ConnectionError::NetworkTimeout), None);
    }
}
