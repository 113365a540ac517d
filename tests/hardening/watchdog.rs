//! The systemd watchdog against the real daemon, watched for at least ten watchdog periods each: an idle
//! daemon, one whose job is paused for heat, one whose job waits for memory and one whose MQTT broker is
//! down must be pinged without a gap longer than the period; a daemon whose runner thread is really stuck
//! (`MILLWRIGHT_TEST_HANG_AT`) must stop being pinged and say why in STATUS.
//!
//! Before the fix an idle daemon's runner heartbeat was only refreshed when a job was admitted, so with
//! `WatchdogSec=30` the pings stopped after 30 s and systemd restarted an idle daemon about every minute.
use super::common::Daemon;
use super::common::sysfs::{self, Bench};
use super::common::systemd::FakeSystemd;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The daemon under a fake systemd with `WATCHDOG_USEC = period`; returns once READY arrived.
fn start(b: &Bench, period: Duration, env: &[(&str, &str)]) -> (Daemon, FakeSystemd) {
    let sock = b.dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&sock);
    let usec = period.as_micros().to_string();
    let mut all: Vec<(&str, &str)> = vec![("NOTIFY_SOCKET", sock.to_str().unwrap()), ("WATCHDOG_USEC", &usec)];
    all.extend(b.guard_env());
    all.extend_from_slice(env);
    let d = Daemon::start(&b.data, &b.state, &all);
    assert!(
        systemd.wait_for(Duration::from_secs(15), |m| m.lines().any(|l| l == "READY=1")).is_some(),
        "no READY=1: {:?}\n{}",
        systemd.got,
        d.log()
    );
    (d, systemd)
}

/// Collects messages for `periods` watchdog periods from now and checks that pings never paused for longer
/// than one period (counting from the start of the watch) and that no STATUS said "unhealthy".
fn assert_pinged_throughout(what: &str, systemd: &mut FakeSystemd, d: &Daemon, period: Duration, periods: u32) {
    let from = systemd.t0.elapsed();
    systemd.drain(period * periods);
    let to = systemd.t0.elapsed();
    let pings: Vec<Duration> = systemd.pings().into_iter().filter(|t| *t >= from).collect();
    let mut marks = vec![from];
    marks.extend(&pings);
    marks.push(to);
    let worst = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    eprintln!(
        "{what}: {} pings in {:.1} s (WATCHDOG_USEC {} ms), longest gap {:.2} s",
        pings.len(),
        (to - from).as_secs_f64(),
        period.as_millis(),
        worst.as_secs_f64()
    );
    assert!(
        worst <= period,
        "{what}: the watchdog went {:.2} s without a ping (period {:.1} s); systemd would restart the daemon. pings: {pings:?}\nstatuses: {:?}\n{}",
        worst.as_secs_f64(),
        period.as_secs_f64(),
        systemd.statuses(),
        d.log()
    );
    assert!(pings.len() as u32 >= periods * 2 - 2, "{what}: pings come every half period; got {} in {periods} periods", pings.len());
    let unhealthy: Vec<String> = systemd.statuses().into_iter().filter(|s| s.starts_with("unhealthy")).collect();
    assert!(unhealthy.is_empty(), "{what}: {unhealthy:?}");
    assert!(!d.log().contains("watchdog pings withheld"), "{what}:\n{}", d.log());
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

fn submit(d: &Daemon, body: Value) -> String {
    let r = d.post("/api/ml/train/batch", &body);
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["task_id"].as_str().unwrap().to_string()
}

fn wait_task(d: &Daemon, id: &str, limit: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v = d.get(&format!("/api/ml/tasks/{id}")).json();
        if f(&v) {
            return v;
        }
        assert!(t0.elapsed() < limit, "{what}: task still {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PERIOD: Duration = Duration::from_secs(2);

#[test]
fn an_idle_daemon_is_pinged_for_ten_periods_and_more() {
    let b = Bench::new(2_000);
    let (d, mut systemd) = start(&b, PERIOD, &[]);
    let ready = systemd.ready_at().unwrap();
    assert_pinged_throughout("idle", &mut systemd, &d, PERIOD, 12);
    let first = systemd.pings()[0];
    assert!(first - ready <= PERIOD, "first ping {:.2} s after READY", (first - ready).as_secs_f64());
    assert_eq!(d.get("/api/health").json()["running"], Value::Null, "it stayed idle");
}

#[test]
fn a_job_paused_for_heat_keeps_the_pings_coming() {
    let b = Bench::new(30_000);
    sysfs::set_temp(&b.root, 50.0);
    let (d, mut systemd) = start(&b, PERIOD, &[]);
    let id = submit(&d, json!({ "machine_id": machine(&d), "model_types": ["classification", "regression"] }));
    d.wait_running(&id, Duration::from_secs(120));
    sysfs::set_temp(&b.root, 82.0);
    wait_task(&d, &id, Duration::from_secs(30), "the job never paused", |v| v["progress"]["stage"] == "paused: SoC 82 °C");
    assert_pinged_throughout("paused for heat", &mut systemd, &d, PERIOD, 10);
    let v = d.get(&format!("/api/ml/tasks/{id}")).json();
    assert_eq!(v["progress"]["stage"], "paused: SoC 82 °C", "still paused at the end of the watch: {v}");
    // A fake systemd that stops reading would block the daemon's notify sends (a full datagram queue); it
    // goes away before the job resumes.
    drop(systemd);
    sysfs::set_temp(&b.root, 40.0);
    wait_task(&d, &id, Duration::from_secs(30), "the job never resumed", |v| v["progress"]["stage"] != "paused: SoC 82 °C");
}

#[test]
fn a_job_waiting_for_memory_keeps_the_pings_coming() {
    let b = Bench::new(20_000);
    sysfs::set_meminfo(&b.root, 8_000, 100);
    let (d, mut systemd) = start(&b, PERIOD, &[]);
    let id = submit(&d, json!({ "machine_id": machine(&d) }));
    let v = wait_task(&d, &id, Duration::from_secs(20), "no waiting reason", |v| v["waiting_reason"].is_string());
    assert!(v["waiting_reason"].as_str().unwrap().starts_with("waiting for memory"), "{v}");
    assert_pinged_throughout("waiting for memory", &mut systemd, &d, PERIOD, 10);
    assert_eq!(d.get(&format!("/api/ml/tasks/{id}")).json()["status"], "PENDING", "it waited all along");
}

#[test]
fn a_daemon_whose_mqtt_broker_is_down_keeps_the_pings_coming() {
    // The MQTT loop beats every 2 s while it retries; a 3 s period leaves whole-second rounding room.
    let period = Duration::from_secs(3);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("mqtt://127.0.0.1:{closed}");
    let b = Bench::new(2_000);
    let (d, mut systemd) = start(
        &b,
        period,
        &[("MILLWRIGHT_MQTT__ENABLED", "true"), ("MILLWRIGHT_MQTT__URL", &url), ("MILLWRIGHT_MQTT__NODE_ID", "watchdog1")],
    );
    assert_pinged_throughout("MQTT broker down", &mut systemd, &d, period, 10);
    assert!(d.log().contains("MQTT: no connection to the broker"), "the broker really was down:\n{}", d.log());
}

#[test]
fn a_stuck_runner_stops_the_pings_and_status_names_it() {
    let b = Bench::new(2_000);
    // The runner's loop turns every 500 ms while idle: its 8th turn comes about 4 s after start.
    let (d, mut systemd) = start(&b, PERIOD, &[("MILLWRIGHT_TEST_HANG_AT", "runner.idle:8")]);
    let unhealthy = systemd.wait_for(Duration::from_secs(20), |m| m.contains("STATUS=unhealthy"));
    let stuck_at = systemd.t0.elapsed();
    let status = unhealthy.unwrap_or_else(|| panic!("no unhealthy STATUS: {:?}\n{}", systemd.got, d.log()));
    assert!(status.contains("STATUS=unhealthy: runner silent for"), "{status}");
    assert!(!status.contains("http"), "only the runner is stuck: {status}");
    systemd.drain(PERIOD * 5);
    let before: Vec<Duration> = systemd.pings().into_iter().filter(|t| *t < stuck_at).collect();
    let after: Vec<Duration> = systemd.pings().into_iter().filter(|t| *t >= stuck_at).collect();
    assert!(before.len() >= 2, "pings came while the runner turned: {:?}", systemd.got);
    assert!(after.is_empty(), "pinged for a stuck runner: {after:?}");
    let log = d.log();
    assert!(log.contains("hang point runner.idle hit 8 time(s)"), "{log}");
    assert!(log.contains("watchdog pings withheld"), "{log}");
    // The rest of the daemon still answers: only the runner is stuck.
    assert_eq!(d.get("/api/health").status, 200);
}
