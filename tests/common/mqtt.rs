//! A real Mosquitto per test on a free loopback port (config written here, killed on drop), with TLS from a
//! throwaway PKI made by the `openssl` command line when a test asks, and a recording MQTT client built on
//! rumqttc that resubscribes after every reconnect.
use rumqttc::{Client, Event, MqttOptions, Packet, QoS, Transport};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `mosquitto` lives in /usr/sbin on Debian, which is not on every PATH.
pub fn find_binary(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/local/sbin", "/sbin"]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` not found: these tests need a real Mosquitto broker. Install it with `apt-get install -y mosquitto mosquitto-clients` (CI does)."
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Anonymous, no persistence, loopback only.
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let conf = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
        Self::with_config(dir, port, &conf)
    }

    /// `conf` is the whole configuration; it must listen on `port`.
    pub fn with_config(dir: &Path, port: u16, conf: &str) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("mosquitto.conf");
        // Started as root (CI), mosquitto would switch to its own user and lose access to the test's
        // private temp folder (keys, password file); as any other user this line has no effect.
        std::fs::write(&path, format!("user root\n{conf}")).unwrap();
        let mut b = Broker { port, dir: dir.to_path_buf(), conf: path, child: None };
        b.run();
        b
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("mosquitto.log")).unwrap();
        let child = Command::new(find_binary("mosquitto"))
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mosquitto exited ({status}): {}", std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default());
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Same port, same config, empty memory (persistence is off).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the `openssl` command line in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed CA valid for two days: `<name>.pem` and `<name>.key` in `dir`, with common name `cn`.
pub fn make_ca(dir: &Path, name: &str, cn: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let (subject, key, pem) = (format!("/CN={cn}"), format!("{name}.key"), format!("{name}.pem"));
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &pem]);
}

/// `server.pem` and `server.key` in `dir` for 127.0.0.1 and localhost, signed by the CA `<ca>.pem`.
pub fn make_server_cert(dir: &Path, ca: &str) {
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// A Mosquitto password file at `path` with one user.
pub fn password_file(path: &Path, user: &str, password: &str) {
    let tool = ["/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto_passwd");
    let st = Command::new(tool).args(["-b", "-c"]).arg(path).args([user, password]).status().expect("mosquitto_passwd (package mosquitto)");
    assert!(st.success());
}

/// A broker in `dir` with two listeners: TLS for the daemon (`server.pem` from `pki`, the CA `<ca>.pem`) and
/// plain for the test's own clients. `auth` holds the login lines (`allow_anonymous ...`, `password_file ...`),
/// which apply to both. Returns the broker with its TLS port and its plain port.
pub fn tls_broker(dir: &Path, pki: &Path, ca: &str, auth: &str) -> (Broker, u16, u16) {
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings false\n{auth}\npersistence false\n\
         listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
         listener {plain_port} 127.0.0.1\n",
        ca = pki.join(format!("{ca}.pem")).display(),
        cert = pki.join("server.pem").display(),
        key = pki.join("server.key").display(),
    );
    (Broker::with_config(dir, tls_port, &conf), tls_port, plain_port)
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, String::from_utf8_lossy(&self.payload)))
    }
}

/// Records everything on `filters`; publishes requests. Reconnects and resubscribes by itself.
pub struct Sub {
    pub client: Client,
    log: Arc<Mutex<Vec<Msg>>>,
    pub connected: Arc<Mutex<bool>>,
}

pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

impl Sub {
    pub fn connect(port: u16, filters: &[&str]) -> Sub {
        Self::connect_with(port, filters, None, None)
    }

    pub fn connect_with(port: u16, filters: &[&str], login: Option<Login>, tls: Option<Transport>) -> Sub {
        let id = format!("test-sub-{}-{}", std::process::id(), free_port());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(32 << 20, 32 << 20);
        if let Some(l) = login {
            opts.set_credentials(l.user, l.password);
        }
        if let Some(t) = tls {
            opts.set_transport(t);
        }
        let (client, mut connection) = Client::new(opts, 100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(Mutex::new(false));
        let (log2, connected2, client2) = (log.clone(), connected.clone(), client.clone());
        let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            let _ = client2.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                        *connected2.lock().unwrap() = true;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {}
                    Ok(Event::Incoming(Packet::Publish(p))) => log2.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        at: Instant::now(),
                    }),
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => {
                        *connected2.lock().unwrap() = false;
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
            }
        });
        let s = Sub { client, log, connected };
        let t0 = Instant::now();
        while !*s.connected.lock().unwrap() {
            assert!(t0.elapsed() < Duration::from_secs(10), "test client could not connect to the broker on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the SUBACK and the retained messages arrive.
        std::thread::sleep(Duration::from_millis(300));
        s
    }

    pub fn all(&self) -> Vec<Msg> {
        self.log.lock().unwrap().clone()
    }

    pub fn on(&self, topic: &str) -> Vec<Msg> {
        self.all().into_iter().filter(|m| m.topic == topic).collect()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// The first message (recorded so far or arriving before `limit`) that satisfies `pred`.
    pub fn wait(&self, limit: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let t0 = Instant::now();
        loop {
            if let Some(m) = self.all().into_iter().find(|m| pred(m)) {
                return m;
            }
            if t0.elapsed() > limit {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload).chars().take(160).collect::<String>()))
                    .collect();
                panic!("no MQTT message {what} within {limit:?}; seen:\n{}", seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn wait_topic(&self, topic: &str, limit: Duration) -> Msg {
        self.wait(limit, &format!("on {topic}"), |m| m.topic == topic)
    }

    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.to_vec()).unwrap();
    }

    /// Publishes a request and returns its response (matched by `transaction` when one is given).
    pub fn request(&self, base: &str, name: &str, payload: &str, limit: Duration) -> serde_json::Value {
        let topic = format!("{base}/bridge/response/{name}");
        let before = self.all().len();
        self.publish(&format!("{base}/bridge/request/{name}"), payload.as_bytes(), false);
        let want: Option<serde_json::Value> =
            serde_json::from_str::<serde_json::Value>(payload).ok().and_then(|v| v.get("transaction").cloned());
        let t0 = Instant::now();
        loop {
            let found = self
                .all()
                .into_iter()
                .skip(before)
                .find(|m| m.topic == topic && want.as_ref().is_none_or(|t| m.json().get("transaction") == Some(t)));
            if let Some(m) = found {
                return m.json();
            }
            assert!(t0.elapsed() < limit, "no response to {name} {payload} within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}
