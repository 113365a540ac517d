//! From `[mqtt]` to what a connection needs (node id, base topic, client id, credentials, TLS); the
//! version-specific options are built from it in [`super::wire`].
//! Everything that can be wrong with the files (password, CA, client certificate) is found here, at
//! start, so a bad setting stops the daemon with a message instead of a silent reconnect loop.
use super::MqttError;
use super::topics::Topics;
use crate::config::{Broker, MqttConfig, MqttProtocol};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The largest request that can be valid: a prediction may carry 8 MB of readings (the HTTP limit).
pub const MAX_REQUEST: usize = 8 * 1024 * 1024;
/// Largest message we read: twice the largest valid request plus the topic, so a request somewhat too big
/// (or a stray retained message) is read and answered with a clear refusal. rumqttc refuses anything bigger
/// on its header and drops the connection, so this is also the memory one message can cost.
pub const MAX_INCOMING: usize = 2 * MAX_REQUEST + 64 * 1024;
/// Largest message we send; rumqttc drops the connection on a bigger one, so the outbox refuses them first.
pub const MAX_OUTGOING: usize = 16 * 1024 * 1024;

/// What the session and every connection attempt need.
#[derive(Clone)]
pub struct Settings {
    pub node_id: String,
    /// This install's id ([`super::instance`]), also in the last will.
    pub instance_id: String,
    pub topics: Topics,
    pub client_id: String,
    /// `host:port` as configured, for logs (never with credentials: the config refuses those in the url).
    pub broker: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub keepalive: Duration,
    /// The last will: `bridge/state` and its offline payload (retained, QoS 1).
    pub will: (String, Vec<u8>),
    pub credentials: Option<(String, String)>,
    /// None: plain TCP.
    pub transport: Option<Transport>,
    pub protocol: MqttProtocol,
}

impl Settings {
    pub fn from_config(cfg: &MqttConfig, instance_id: &str) -> Result<Settings, MqttError> {
        let node_id = match &cfg.node_id {
            Some(n) => n.clone(),
            None => sanitize_node_id(&hostname()),
        };
        let base = cfg.base_topic.clone().unwrap_or_else(|| format!("millwright/{node_id}"));
        let topics = Topics::new(&base, &cfg.discovery_prefix, &node_id);
        let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("millwright-{node_id}"));
        let Broker { tls, host, port } = cfg.broker()?;
        // 0 turns keep-alive off, which rumqttc accepts only as exactly zero.
        let keepalive = if cfg.keepalive_s == 0 { Duration::ZERO } else { Duration::from_secs(cfg.keepalive_s.max(5)) };
        let will = (topics.state(), super::availability(super::Availability::Offline, instance_id));
        let credentials = match &cfg.username {
            Some(user) => {
                let password = match (&cfg.password, &cfg.password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(file)) => read_password(file)?,
                    (None, None) => String::new(),
                };
                Some((user.clone(), password))
            }
            None => None,
        };
        let transport = if tls { Some(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(cfg)?)))) } else { None };
        Ok(Settings {
            node_id,
            instance_id: instance_id.to_string(),
            topics,
            client_id,
            broker: format!("{host}:{port}"),
            tls,
            host,
            port,
            keepalive,
            will,
            credentials,
            transport,
            protocol: cfg.protocol,
        })
    }
}

fn read_password(file: &Path) -> Result<String, MqttError> {
    let text = std::fs::read_to_string(file).map_err(|e| MqttError::File {
        key: "mqtt.password_file",
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    // Files written by `echo` end with a newline that is not part of the password.
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(MqttError::File { key: "mqtt.password_file", path: file.to_path_buf(), message: "the file is empty".into() });
    }
    Ok(password)
}

fn tls_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, MqttError> {
    // ring, chosen explicitly: the build carries no other provider (no aws-lc-sys).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let file_err = |message: String| MqttError::File { key: "mqtt.ca_file", path: path.clone(), message };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| file_err(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| file_err(format!("not a PEM certificate: {e}")))?;
                roots.add(cert).map_err(|e| file_err(format!("unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(file_err("holds no PEM certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(MqttError::Setting {
                    key: "mqtt.ca_file",
                    message: "mqtts:// needs a CA: the system has no CA certificates; set mqtt.ca_file".into(),
                });
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Setting { key: "mqtt.url", message: format!("TLS setup: {e}") })?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let cert_err = |message: String| MqttError::File { key: "mqtt.client_cert", path: cert_path.clone(), message };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| cert_err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| cert_err(format!("not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(cert_err("holds no PEM certificate".into()));
            }
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| MqttError::File {
                key: "mqtt.client_key",
                path: key_path.clone(),
                message: format!("no usable PEM private key: {e}"),
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| MqttError::File {
                key: "mqtt.client_key",
                path: key_path.clone(),
                message: format!("does not fit the client certificate: {e}"),
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn hostname() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s.trim().to_string();
        }
    }
    std::env::var("HOSTNAME").unwrap_or_default()
}

/// A host name as a topic level and a Home Assistant id: its first label, with anything but letters,
/// digits, `_` and `-` (MQTT wildcards and separators included) replaced by `_`.
pub fn sanitize_node_id(host: &str) -> String {
    let first = host.trim().split('.').next().unwrap_or("");
    let clean: String = first.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).take(64).collect();
    if clean.is_empty() || clean.chars().all(|c| c == '_') { "millwright".to_string() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_from_host_names_are_safe_topic_levels() {
        assert_eq!(sanitize_node_id("pi-line1.factory.local"), "pi-line1");
        assert_eq!(sanitize_node_id("a+b#c/d"), "a_b_c_d");
        assert_eq!(sanitize_node_id(""), "millwright");
        assert_eq!(sanitize_node_id("###"), "millwright");
        assert_eq!(sanitize_node_id(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn defaults_derive_base_topic_and_client_id_from_the_node() {
        let cfg = MqttConfig { node_id: Some("pi7".into()), ..Default::default() };
        let s = Settings::from_config(&cfg, "0123456789abcdef").unwrap();
        assert_eq!(s.topics.state(), "millwright/pi7/bridge/state");
        assert_eq!(s.client_id, "millwright-pi7");
        assert!(!s.tls);
        assert_eq!(s.will.0, "millwright/pi7/bridge/state");
        // The will names the instance, so a twin can tell whose it is.
        let payload: serde_json::Value = serde_json::from_slice(&s.will.1).unwrap();
        assert_eq!(payload, serde_json::json!({"state": "offline", "instance_id": "0123456789abcdef"}));
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("pw");
        std::fs::write(&empty, "\n").unwrap();
        for (pw, want) in [(dir.path().join("missing"), "mqtt.password_file"), (empty, "empty")] {
            let cfg = MqttConfig { username: Some("u".into()), password_file: Some(pw), ..Default::default() };
            let e = Settings::from_config(&cfg, "0123456789abcdef").err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
        }
        let cfg = MqttConfig { url: "mqtts://127.0.0.1:8883".into(), ca_file: Some(dir.path().join("nope.pem")), ..Default::default() };
        let e = Settings::from_config(&cfg, "0123456789abcdef").err().unwrap().to_string();
        assert!(e.contains("mqtt.ca_file") && e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn password_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(read_password(&f).unwrap(), "s3cret");
    }
}
