//! systemd integration of the real daemon: the notify protocol (READY, STATUS, WATCHDOG pings at half of
//! WATCHDOG_USEC, STOPPING on SIGTERM) received on a Unix datagram socket standing in for systemd; journald
//! fallback; and the packaged default config staying equal to `millwright config --print-default`.
//! (That a stalled runner stops the pings is tested on the watchdog loop itself, in src/daemon/systemd.rs.)
mod common;
use common::systemd::FakeSystemd;
use common::{Daemon, fleet};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn setup(rows: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let state = d.path().join("state");
    fleet(&data, 1, rows);
    (d, data, state)
}

#[test]
fn notify_protocol_ready_status_watchdog_and_stopping() {
    let (dir, data, state) = setup(3_000);
    let sock_path = dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&sock_path);
    let mut d = Daemon::start(&data, &state, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "2000000")]);

    let ready = systemd.wait_for(Duration::from_secs(10), |m| m.lines().any(|l| l == "READY=1")).expect("no READY=1");
    assert!(ready.contains("STATUS=idle; 0 queued"), "READY must carry the initial status: {ready:?}");
    // READY comes after the port is bound: the API answers right away.
    assert_eq!(d.get("/api/health").status, 200);

    // Pings at half of WATCHDOG_USEC (2 s): about one per second.
    systemd.drain(Duration::from_millis(3_600));
    let pings = systemd.pings();
    assert!(pings.len() >= 3, "expected >= 3 pings in 3.6 s, got {:?}", systemd.got);
    for w in pings.windows(2) {
        let gap = (w[1] - w[0]).as_secs_f64();
        assert!((0.6..=1.6).contains(&gap), "pings must come every ~1 s, gap {gap:.2} s: {pings:?}");
    }

    // A training job shows in STATUS with its machine, and the status returns to idle afterwards.
    let machine = d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": machine }));
    assert_eq!(r.status, 202, "{}", r.text());
    let task = r.json()["task_id"].as_str().unwrap().to_string();
    let training = systemd.wait_for(Duration::from_secs(60), |m| m.contains(&format!("STATUS=training {machine} ")));
    assert!(training.is_some(), "no training status; got {:?}", systemd.statuses());
    let done = d.wait_task(&task, Duration::from_secs(240));
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(
        systemd.wait_for(Duration::from_secs(5), |m| m.contains("STATUS=idle; 0 queued")).is_some(),
        "status did not return to idle: {:?}",
        systemd.statuses()
    );
    // Pings kept coming while the job trained: the runner beats on every progress event.
    let during: Vec<_> = systemd.pings().into_iter().filter(|t| *t > pings[pings.len() - 1]).collect();
    assert!(!during.is_empty(), "no pings during training");

    let before_stop = systemd.got.len();
    d.terminate();
    systemd.drain(Duration::from_millis(300));
    let after: Vec<&String> = systemd.got[before_stop..].iter().map(|(_, m)| m).collect();
    assert!(after.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")), "no STOPPING=1 after SIGTERM: {after:?}");
    assert!(!after.iter().skip_while(|m| !m.contains("STOPPING=1")).any(|m| m.contains("WATCHDOG=1")), "pinged after STOPPING: {after:?}");
}

#[test]
fn without_watchdog_usec_there_are_no_pings_and_without_notify_socket_nothing_breaks() {
    let (dir, data, state) = setup(2_000);
    let sock_path = dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&sock_path);
    let mut d = Daemon::start(&data, &state, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    assert!(systemd.wait_for(Duration::from_secs(10), |m| m.contains("READY=1")).is_some());
    systemd.drain(Duration::from_millis(2_500));
    assert!(systemd.pings().is_empty(), "pinged without WATCHDOG_USEC: {:?}", systemd.got);
    d.terminate();

    // A watchdog meant for another process (WATCHDOG_PID) is not ours either.
    let state2 = dir.path().join("state2");
    let mut d = Daemon::start(
        &data,
        &state2,
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "1000000"), ("WATCHDOG_PID", "1")],
    );
    systemd.got.clear();
    systemd.drain(Duration::from_millis(2_500));
    assert!(systemd.got.iter().any(|(_, m)| m.contains("READY=1")));
    assert!(systemd.pings().is_empty(), "pinged for another pid: {:?}", systemd.got);
    d.terminate();

    // Plain runs (no systemd) serve as before.
    let state3 = dir.path().join("state3");
    let d = Daemon::start(&data, &state3, &[]);
    assert_eq!(d.get("/api/health").status, 200);
}

/// Under systemd, stderr is the journal stream named by JOURNAL_STREAM. Where no journald listens (CI,
/// containers) the daemon must still start, log to stderr and say why.
#[test]
fn journald_missing_falls_back_to_stderr_with_a_note() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, data, state) = setup(2_000);
    // The harness appends the daemon's stderr to this file; JOURNAL_STREAM names it, as systemd would.
    let log = state.with_extension("stderr.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let d = Daemon::start(&data, &state, &[("JOURNAL_STREAM", &stream)]);
    assert_eq!(d.get("/api/health").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let text = d.log();
    if Path::new("/run/systemd/journal/socket").exists() {
        assert!(!text.contains("serving"), "with journald present the log must go to the journal, not stderr:\n{text}");
    } else {
        assert!(text.contains("journald is not reachable"), "no fallback note on stderr:\n{text}");
        assert!(text.contains("serving"), "logs must continue on stderr:\n{text}");
    }

    // A JOURNAL_STREAM inherited by a shell whose stderr is something else keeps logging on stderr, silently.
    let state2 = state.with_file_name("state2");
    let d2 = Daemon::start(&data, &state2, &[("JOURNAL_STREAM", "1:1")]);
    assert_eq!(d2.get("/api/health").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let text = d2.log();
    assert!(text.contains("serving") && !text.contains("journald"), "{text}");
}

/// The .deb installs systemd/config.toml as /etc/millwright/config.toml; it must be exactly what the binary
/// documents as its defaults (regenerate with `millwright config --print-default > systemd/config.toml`).
#[test]
fn packaged_default_config_equals_print_default() {
    let packaged = include_str!("../systemd/config.toml");
    assert!(
        packaged == millwright::config::print_default(),
        "systemd/config.toml is out of date: run `cargo run -- config --print-default > systemd/config.toml`"
    );
}

/// The unit file promises what the daemon implements; a typo here would only show on a Pi.
#[test]
fn unit_file_has_the_promised_settings() {
    let unit = include_str!("../systemd/millwright.service");
    for line in [
        "Type=notify",
        "WatchdogSec=30",
        "ExecStart=/usr/bin/millwright serve --config /etc/millwright/config.toml",
        "Restart=on-failure",
        "User=millwright",
        "StateDirectory=millwright",
        "ConfigurationDirectory=millwright",
        "LoadCredential=mqtt-password:/etc/millwright/mqtt-password",
        "OOMPolicy=stop",
        "IOSchedulingClass=idle",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallArchitectures=native",
        "Environment=MILLWRIGHT_DATA_DIR=/var/lib/millwright/data",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing `{line}` in systemd/millwright.service");
    }
    // The shutdown grace the daemon uses must fit in the unit's stop timeout.
    let stop: u64 = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).and_then(|v| v.parse().ok()).unwrap();
    assert!(stop > millwright::config::Config::default().queue.shutdown_grace_s + 5);
    let sysusers = include_str!("../systemd/millwright.sysusers");
    assert!(sysusers.lines().any(|l| l.split_whitespace().take(2).eq(["u", "millwright"])), "sysusers must create the millwright user");
}
