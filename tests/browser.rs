//! The embedded page in a real browser: the real daemon, Debian's headless Chromium driven by
//! playwright-core (tests/e2e/, `npm ci`), and the page's HTTP contract (caching, gzip, CSP).
//! Screenshots of every view land in target/e2e-screenshots/ (CI keeps them as artefacts).
mod common;

use common::{Daemon, TOKEN, request};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const E2E: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// The browser tests need node, playwright-core and chromium; CI installs them, so missing ones fail loudly.
fn require_browser_tools() {
    let mut missing = Vec::new();
    if Command::new("node").arg("--version").stdout(Stdio::null()).status().map(|s| !s.success()).unwrap_or(true) {
        missing.push("node (apt-get install -y --no-install-recommends nodejs npm)");
    }
    if !Path::new(E2E).join("node_modules/playwright-core/package.json").is_file() {
        missing.push("playwright-core (cd tests/e2e && npm ci)");
    }
    if !chromium().exists() {
        missing.push("chromium (apt-get install -y --no-install-recommends chromium, or set CHROME to its path)");
    }
    assert!(
        missing.is_empty(),
        "the browser tests need: {}. Install them, then run `cargo test --test browser` again.",
        missing.join("; ")
    );
}

fn screenshot_dir(sub: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("e2e-screenshots").join(sub);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one browser script against the daemon and fails with its output unless it exits 0.
fn run_script(script: &str, daemon: &Daemon, outdir: &Path, limit: Duration) {
    let url = format!("http://{}/", daemon.addr);
    let mut child = Command::new("node")
        .arg(Path::new(E2E).join(script))
        .args([url.as_str(), TOKEN])
        .arg(outdir)
        .current_dir(E2E)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child
        .wait_with_output()
        .map(|o| (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap_or_default();
    println!("{script} ({:.1} s):\n{}", t0.elapsed().as_secs_f64(), out.0);
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{script} failed ({s}):\n{}\n{}\ndaemon log:\n{}", out.0, out.1, daemon.log()),
        None => panic!("{script} took longer than {limit:?}:\n{}\n{}", out.0, out.1),
    }
}

/// The small demo fleet plus `big_motor_001` (30 000 rows: still training when the test cancels it).
fn fleet_with_a_big_machine(root: &Path) -> PathBuf {
    let data = root.join("data");
    common::fleet(&data, 2, 3000);
    let big = root.join("big");
    let opts = millwright::data::simulate::FleetOptions { out_dir: big.clone(), machines: 1, seed: 5, rows: 30_000, ..Default::default() };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
    let made = std::fs::read_dir(big.join("machines")).unwrap().next().unwrap().unwrap().path();
    std::fs::rename(made, data.join("machines/big_motor_001")).unwrap();
    data
}

fn header<'a>(r: &'a common::Resp, name: &str) -> &'a str {
    r.header(name).unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

#[test]
fn page_is_served_with_caching_gzip_and_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::fleet(&data, 1, 600);
    let d = Daemon::start(&data, &dir.path().join("state"), &[]);

    let index = d.get("/");
    assert_eq!(index.status, 200);
    assert_eq!(header(&index, "cache-control"), "no-store");
    assert!(header(&index, "content-type").starts_with("text/html"));
    let csp = header(&index, "content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("http") && !csp.contains("unsafe"), "the policy names an origin or allows inline code: {csp}");
    let html = index.text();
    let version = html.split("/static/app.js?v=").nth(1).and_then(|s| s.split('"').next()).expect("index links app.js with a version");
    assert_eq!(version.len(), 16, "{version}");

    // A versioned URL is immutable; a module import (no version) revalidates with its ETag.
    let versioned = d.get(&format!("/static/app.js?v={version}"));
    assert_eq!(versioned.status, 200);
    assert!(header(&versioned, "cache-control").contains("immutable"));
    assert!(header(&versioned, "content-type").starts_with("text/javascript"));
    let plain = d.get("/static/views/training.js");
    assert_eq!(header(&plain, "cache-control"), "no-cache");
    let etag = header(&plain, "etag").to_string();
    let again = request(d.addr, "GET", "/static/views/training.js", None, &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304, "a matching ETag must give 304");
    assert!(again.body.is_empty());

    // gzip only when asked for, and it decodes to the same bytes.
    let gz = request(d.addr, "GET", "/static/app.css", None, &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    assert_eq!(header(&gz, "vary"), "Accept-Encoding");
    let raw = d.get("/static/app.css");
    assert!(raw.header("content-encoding").is_none());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, raw.body);
    assert!(gz.body.len() * 2 < raw.body.len(), "gzip saved too little: {} of {}", gz.body.len(), raw.body.len());

    // Unknown files are a JSON 404, path tricks included; the API is untouched.
    for bad in ["/static/nope.js", "/static/../Cargo.toml", "/static/%2e%2e/Cargo.toml", "/static//app.js"] {
        let r = d.get(bad);
        assert_eq!(r.status, 404, "{bad}");
    }
    assert_eq!(d.get("/api/health").status, 200);
    assert_eq!(d.get("/api/nope").json()["error"]["code"], "not_found");
}

#[test]
fn page_in_a_real_browser() {
    require_browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let data = fleet_with_a_big_machine(dir.path());
    // Every real model is over 0.001 MB, so the oversize badge shows on real results.
    let d = Daemon::start(&data, &dir.path().join("state"), &[("MILLWRIGHT_MODELS__WARN_SIZE_MB", "0.001")]);
    run_script("page.mjs", &d, &screenshot_dir("page"), Duration::from_secs(180));
}

#[test]
fn page_without_machines() {
    require_browser_tools();
    let dir = tempfile::tempdir().unwrap();
    // A folder without data: the daemon makes no demo fleet (the folder is not empty), and nothing loads.
    let notes = dir.path().join("data/machines/notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("README.txt"), "not a machine\n").unwrap();
    let d = Daemon::start(&dir.path().join("data"), &dir.path().join("state"), &[]);
    run_script("nomachines.mjs", &d, &screenshot_dir("no-machines"), Duration::from_secs(90));
}

/// A mixed fleet: one trained machine with fresh data, one trained with data three days old, one without
/// models; the fleet view, the verdict, search, CSV export and the stale-data alert at three sizes.
#[test]
fn fleet_view_in_a_real_browser() {
    require_browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = millwright::data::simulate::FleetOptions {
        out_dir: data.clone(),
        machines: 3,
        seed: 11,
        rows: 3000,
        format: millwright::data::write::Format::Csv,
        ..Default::default()
    };
    millwright::data::simulate::simulate_fleet(&opts).unwrap();
    let first =
        std::fs::read_dir(data.join("machines")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).min().unwrap();
    // The same machine twice more, its history cut where a life nears its failure and where one has just begun.
    let risk = format!("{first}_at_risk");
    let healthy = format!("{first}_healthy");
    common::cut_copy(&data, &first, &risk, |rul| rul.iter().position(|&r| r <= 12.0));
    common::cut_copy(&data, &first, &healthy, |rul| (100..rul.len()).find(|&i| rul[i] >= 300.0));
    let d = Daemon::start(&data, &dir.path().join("state"), &[]);
    let machines = d.get("/api/ml/train/machines/available").json();
    let ids: Vec<String> = machines["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["machine_id"].as_str().unwrap().to_string())
        .filter(|m| *m != risk && *m != healthy)
        .collect();
    for id in [&ids[0], &ids[1], &risk, &healthy] {
        let r = d.post("/api/ml/train/batch", &serde_json::json!({ "machine_id": id }));
        assert_eq!(r.status, 202, "{}", r.text());
        let task = d.wait_task(r.json()["task_id"].as_str().unwrap(), Duration::from_secs(240));
        assert_eq!(task["status"], "SUCCESS", "{task}");
    }
    for e in std::fs::read_dir(data.join("machines").join(&ids[1])).unwrap().flatten() {
        assert!(Command::new("touch").args(["-d", "3 days ago"]).arg(e.path()).status().unwrap().success());
    }
    let url = format!("http://{}/", d.addr);
    let outdir = screenshot_dir("fleet");
    let out = Command::new("node")
        .arg(Path::new(E2E).join("fleet.mjs"))
        .args([url.as_str(), TOKEN])
        .arg(&outdir)
        .current_dir(E2E)
        .env("FLEET_FRESH", &ids[0])
        .env("FLEET_STALE", &ids[1])
        .env("FLEET_BARE", &ids[2])
        .env("FLEET_RISK", &risk)
        .env("FLEET_HEALTHY", &healthy)
        .env("FLEET_DAEMON_PID", d.child.id().to_string())
        .output()
        .expect("starting node");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("fleet.mjs:\n{text}");
    assert!(out.status.success(), "fleet.mjs failed:\n{text}\n{}\ndaemon log:\n{}", String::from_utf8_lossy(&out.stderr), d.log());
}
