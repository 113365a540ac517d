//! `millwright bench ingest`: readings of many machines over MQTT at once, through a real Mosquitto, into the
//! daemon this binary starts (machines made from their first readings), optionally beside a 4-model training.
//! Measured on the daemon alone: its CPU (from /proc, beside the same daemon idle for the same broker, in the
//! same run), its resident memory after a warm-up and at the end, every published row accepted, and how old
//! each message's newest reading was once durable (the daemon's own `stored_age`).
use super::BenchError;
use super::spawn::{BenchDaemon, rss_mb};
use crate::util::time::now_secs;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct IngestOptions {
    pub machines: usize,
    pub sensors: usize,
    /// Readings per second per machine.
    pub rate_hz: f64,
    pub seconds: f64,
    /// Rows of a simulated machine trained (all four models) while the readings flow; 0: none.
    pub train_rows: usize,
    pub work_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub machines: usize,
    pub sensors: usize,
    pub values_per_s: f64,
    pub seconds: f64,
    pub published: u64,
    pub broker_acked: u64,
    pub rows_accepted: u64,
    pub lost: i64,
    /// The publisher's worst lag behind its schedule (a late publisher offers less than asked).
    pub publisher_lag_max_ms: f64,
    pub idle_cpu_percent: f64,
    pub cpu_percent: f64,
    pub rss_after_warmup_mb: f64,
    pub rss_end_mb: f64,
    pub stored_age: Value,
    pub training: Option<String>,
}

/// Mosquitto on a free loopback port, stopped when dropped.
struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto() -> Result<PathBuf, BenchError> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file());
    found.ok_or_else(|| BenchError::Missing("mosquitto (apt-get install mosquitto)".into()))
}

impl Broker {
    fn start(dir: &Path) -> Result<Broker, BenchError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let conf = dir.join("mosquitto.conf");
        // Unlimited queues: the bench measures the daemon, not the broker's limits.
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"),
        )?;
        let child = Command::new(mosquitto()?).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(BenchError::Daemon("mosquitto did not start listening within 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Broker { child, port })
    }
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// The process's CPU use while `during` runs, in % of one core.
fn cpu_percent_during(pid: u32, during: impl FnOnce()) -> f64 {
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    during();
    (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
}

pub fn ingest(o: &IngestOptions) -> Result<IngestReport, BenchError> {
    let usable = o.machines > 0 && o.sensors > 0 && o.rate_hz.is_finite() && o.rate_hz > 0.0 && o.seconds.is_finite() && o.seconds >= 10.0;
    if !usable {
        return Err(BenchError::Invalid("ingest needs machines ≥ 1, sensors ≥ 1, a positive rate and at least 10 seconds".into()));
    }
    let dir = o.work_dir.as_path();
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let broker = Broker::start(dir)?;
    let trained = if o.train_rows > 0 {
        let opts = crate::data::simulate::FleetOptions { out_dir: data.clone(), machines: 1, rows: o.train_rows, ..Default::default() };
        Some(crate::data::simulate::simulate_fleet(&opts)?.remove(0).id)
    } else {
        None
    };
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let env = [
        ("MILLWRIGHT_MQTT__ENABLED", "true"),
        ("MILLWRIGHT_MQTT__URL", url.as_str()),
        ("MILLWRIGHT_MQTT__BASE_TOPIC", "bench"),
        ("MILLWRIGHT_READINGS__CREATE_MACHINES", "true"),
    ];
    let d = BenchDaemon::start(&data, &dir.join("state"), &dir.join("daemon.log"), None, &env)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get_json("/api/health")["mqtt"]["readings_in"].is_null() {
        if Instant::now() > deadline {
            return Err(BenchError::Daemon(format!("the daemon's MQTT readings did not start; see {}", d.log.display())));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The baseline: the same daemon, connected, with nothing to take in.
    let idle_cpu_percent = cpu_percent_during(d.pid(), || std::thread::sleep(Duration::from_secs(10)));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let acked = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs_f64((o.seconds * 0.2).min(30.0));
    let mut rss_after_warmup_mb = f64::NAN;
    let mut training_task: Option<String> = None;
    let (published, lag_max_ms, cpu_percent) = rt.block_on(async {
        let mut opts = rumqttc::MqttOptions::new(format!("millwright-bench-{}", std::process::id()), "127.0.0.1", broker.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(u16::MAX);
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 100_000);
        let counter = acked.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let names: Vec<String> = (0..o.sensors).map(|k| format!("s{k:02}")).collect();
        let period = Duration::from_secs_f64(1.0 / o.rate_hz);
        let start = Instant::now();
        let mut published = 0u64;
        let mut lag_max_ms: f64 = 0.0;
        let mut cpu_mark: Option<(f64, Instant)> = None;
        let mut tick = 0u64;
        while start.elapsed().as_secs_f64() < o.seconds {
            let due = start + period.mul_f64(tick as f64);
            tokio::time::sleep_until(due.into()).await;
            lag_max_ms = lag_max_ms.max(due.elapsed().as_secs_f64() * 1000.0);
            if cpu_mark.is_none() && start.elapsed() >= warmup {
                rss_after_warmup_mb = rss_mb(d.pid());
                cpu_mark = Some((cpu_seconds(d.pid()), Instant::now()));
                if let Some(id) = &trained {
                    let r = d.post_json("/api/ml/train/batch", &json!({ "machine_id": id }));
                    training_task = r["task_id"].as_str().map(str::to_string);
                }
            }
            let ts = now_secs();
            for m in 0..o.machines {
                let mut row = serde_json::Map::new();
                row.insert("ts".into(), json!(ts));
                for (k, n) in names.iter().enumerate() {
                    row.insert(n.clone(), json!(((tick as f64) / 60.0 + (m * 7 + k) as f64).sin() * 10.0 + 50.0));
                }
                let topic = format!("bench/machines/bench-{m:03}/readings");
                if client.publish(topic, rumqttc::QoS::AtLeastOnce, false, Value::Object(row).to_string()).await.is_ok() {
                    published += 1;
                }
            }
            tick += 1;
        }
        let cpu = cpu_mark.map_or(f64::NAN, |(c0, t0)| (cpu_seconds(d.pid()) - c0) / t0.elapsed().as_secs_f64() * 100.0);
        // Let the broker acknowledge the last messages before the counts are read.
        let until = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::Relaxed) < published && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (published, lag_max_ms, cpu)
    });
    let rows_accepted = || d.get_json("/api/health")["mqtt"]["readings_in"]["rows_accepted"].as_u64().unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(120);
    while rows_accepted() < published && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let h = d.get_json("/api/health");
    let rows_accepted = h["mqtt"]["readings_in"]["rows_accepted"].as_u64().unwrap_or(0);
    let training = training_task.map(|id| {
        let t = d.get_json(&format!("/api/ml/tasks/{id}"));
        format!("{} ({} %)", t["status"].as_str().unwrap_or("?"), t["progress"]["progress_percent"].as_f64().unwrap_or(f64::NAN).round())
    });
    Ok(IngestReport {
        machines: o.machines,
        sensors: o.sensors,
        values_per_s: o.machines as f64 * o.sensors as f64 * o.rate_hz,
        seconds: o.seconds,
        published,
        broker_acked: acked.load(Ordering::Relaxed),
        rows_accepted,
        lost: published as i64 - rows_accepted as i64,
        publisher_lag_max_ms: lag_max_ms,
        idle_cpu_percent,
        cpu_percent,
        rss_after_warmup_mb,
        rss_end_mb: d.rss_mb(),
        stored_age: h["mqtt"]["readings_in"]["stored_age"].clone(),
        training,
    })
}

pub fn print(r: &IngestReport) {
    println!(
        "ingest over MQTT: {} machines × {} sensors at {:.0} values/s for {:.0} s (Mosquitto on loopback; the daemon makes the machines from their first readings)",
        r.machines, r.sensors, r.values_per_s, r.seconds
    );
    println!(
        "  published {} messages, broker acknowledged {}, daemon accepted {} rows: lost {}",
        r.published, r.broker_acked, r.rows_accepted, r.lost
    );
    println!(
        "  daemon CPU {:.1} % of one core (idle daemon, same run: {:.1} %; ratio {:.1}×; target ≤ 25 %)",
        r.cpu_percent,
        r.idle_cpu_percent,
        r.cpu_percent / r.idle_cpu_percent.max(0.01)
    );
    println!(
        "  daemon RSS {:.1} MB after the warm-up, {:.1} MB at the end: growth {:.1} MB (target ≤ 30 MB)",
        r.rss_after_warmup_mb,
        r.rss_end_mb,
        r.rss_end_mb - r.rss_after_warmup_mb
    );
    println!(
        "  age of each message's newest reading when durable: p50 {} ms, p99 {} ms, max {} ms (target p99 ≤ 1,000 ms); publisher lag at most {:.0} ms",
        r.stored_age["p50_ms"], r.stored_age["p99_ms"], r.stored_age["max_ms"], r.publisher_lag_max_ms
    );
    if let Some(t) = &r.training {
        println!("  4-model training alongside, at the end: {t}");
    }
}
