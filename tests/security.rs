//! Security checks against the real daemon: every mutating route (read from the daemon's own OpenAPI
//! document, so a new route is covered the day it is added) refuses every credential but the token; reads
//! stay open as the README promises and never echo the token; the token never reaches the log or the state
//! folder in any common encoding; the page is served with a strict CSP and refers to no third-party origin;
//! and the systemd unit's `systemd-analyze security` exposure stays low.
mod common;
// Only the broker and the recording client are used here.
#[allow(dead_code)]
#[path = "common/mqtt.rs"]
mod mqtt_helpers;

use common::{Daemon, Launch, Resp, TOKEN, fleet, request};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(240);

/// Operations that change state but must work without the token, each with the reason.
const OPEN_MUTATIONS: &[(&str, &str, &str)] = &[
    ("post", "/api/auth/login", "it is how a browser presents the token; it checks the token in its body (tested below)"),
    ("post", "/api/auth/logout", "it only revokes the caller's own session and clears its cookie"),
];

/// Fewer than this many checked routes means the OpenAPI document lost operations (or this test lost them).
const MIN_MUTATING_ROUTES: usize = 8;

fn setup(rows: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, 1, rows);
    let state = d.path().join("state");
    (d, data, state)
}

fn machine(d: &Daemon) -> String {
    d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string()
}

/// Trains one anomaly model with the token and returns the finished task's id.
fn train_anomaly(d: &Daemon, m: &str, auth: &[(&str, &str)]) -> String {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(auth);
    let r = request(d.addr, "POST", "/api/ml/train/anomaly", Some(json!({ "machine_id": m }).to_string().as_bytes()), &headers);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    let end = d.wait_task(&id, LONG);
    assert_eq!(end["status"], "SUCCESS", "{end}");
    id
}

/// One operation of the OpenAPI document, with its path parameters filled and a body that would succeed.
struct Op {
    method: String,
    template: String,
    path: String,
    body: Option<Vec<u8>>,
}

/// Stands for an upload id in the OpenAPI paths until a real one replaces it.
const NO_UPLOAD: &str = "0123456789abcdef";

fn operations(doc: &Value, m: &str, task: &str) -> Vec<Op> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths in the OpenAPI document") {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let mut path = template.clone();
            while let Some(start) = path.find('{') {
                let end = path[start..].find('}').unwrap() + start;
                let value = match &path[start + 1..end] {
                    "machine_id" => m,
                    "task_id" => task,
                    "model_type" => "anomaly",
                    "alert_id" => "no-such-alert",
                    "upload_id" => NO_UPLOAD,
                    other => panic!("{method} {template}: no test value for the path parameter {{{other}}}; add one in tests/security.rs"),
                };
                path.replace_range(start..=end, value);
            }
            // A body the route would accept, so a missing check would show as a success, not as a 400.
            let schema = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap_or("");
            let body = match schema.rsplit('/').next().unwrap_or("") {
                "TrainBody" => Some(json!({ "machine_id": m }).to_string().into_bytes()),
                "LoginBody" => Some(json!({ "token": TOKEN }).to_string().into_bytes()),
                "PinBody" => Some(json!({ "version": 1 }).to_string().into_bytes()),
                "MachineBody" => Some(json!({ "machine_id": "new-1", "mapping": { "sensors": ["s1"] } }).to_string().into_bytes()),
                "" if method == "get" || method == "delete" => None,
                _ => Some(b"{}".to_vec()),
            };
            ops.push(Op { method: method.to_uppercase(), template: template.clone(), path, body });
        }
    }
    ops
}

fn send(addr: SocketAddr, op: &Op, path: &str, creds: &[(&str, &str)]) -> Resp {
    let mut headers: Vec<(&str, &str)> = creds.to_vec();
    if op.body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(addr, &op.method, path, op.body.as_deref(), &headers)
}

fn b64(bytes: &[u8], url_safe: bool, pad: bool) -> String {
    let table: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if pad {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

#[test]
fn base64_helper_matches_known_vectors() {
    assert_eq!(b64(b"foobar", false, true), "Zm9vYmFy");
    assert_eq!(b64(b"fooba", false, true), "Zm9vYmE=");
    assert_eq!(b64(b"foob", false, false), "Zm9vYg");
    assert_eq!(b64(&[0xfb, 0xff], true, false), "-_8");
    // The scan finds the token inside a longer base64 blob whatever its byte offset there.
    let forms = encodings(TOKEN);
    for k in 0..3 {
        let mut blob = b"prefix".to_vec();
        blob.truncate(k + 1);
        blob.extend_from_slice(TOKEN.as_bytes());
        blob.extend_from_slice(b"suffix");
        let hits = find_token(b64(&blob, false, true).as_bytes(), &forms);
        assert!(!hits.is_empty(), "base64 at offset {} not found", k + 1);
    }
    assert!(find_token(b"nothing to see", &forms).is_empty());
}

#[test]
fn every_mutating_route_refuses_all_but_the_token_and_reads_stay_open_without_echoing_it() {
    let (_d, data, state) = setup(2_000);
    let d = Daemon::start(&data, &state, &[]);
    let m = machine(&d);
    let bearer = format!("Bearer {TOKEN}");
    let task = train_anomaly(&d, &m, &[("Authorization", &bearer)]);
    let doc = d.get("/api/openapi.json").json();
    let mut ops = operations(&doc, &m, &task);
    // A real upload, so that making a machine of it with the right credentials succeeds in the control below.
    let csv = "timestamp,s1\n2026-01-01T00:00:00Z,1\n2026-01-01T01:00:00Z,2\n2026-01-01T02:00:00Z,3\n";
    let up = request(d.addr, "POST", "/api/uploads?filename=t.csv", Some(csv.as_bytes()), &[("Authorization", &bearer)]);
    assert_eq!(up.status, 200, "{}", up.text());
    let upload_id = up.json()["upload_id"].as_str().unwrap().to_string();
    for op in ops.iter_mut().filter(|o| o.template.contains("{upload_id}")) {
        op.path = op.path.replace(NO_UPLOAD, &upload_id);
    }
    for (method, path, _) in OPEN_MUTATIONS {
        assert!(
            ops.iter().any(|o| o.method.eq_ignore_ascii_case(method) && o.template == *path),
            "{method} {path} is exempted here but not in the OpenAPI document: update OPEN_MUTATIONS"
        );
    }
    let mutating: Vec<&Op> = ops
        .iter()
        .filter(|o| o.method != "GET" && !OPEN_MUTATIONS.iter().any(|(mm, p, _)| o.method.eq_ignore_ascii_case(mm) && o.template == *p))
        .collect();
    let before_tasks = d.get("/api/ml/tasks").json()["tasks"].as_array().unwrap().len();

    // Everything a client might try instead of the real token, or beside it in the wrong place.
    let wrong_same_len: String = TOKEN.chars().rev().collect();
    let short = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}0");
    let basic = format!("Basic {}", b64(format!("millwright:{TOKEN}").as_bytes(), false, true));
    let creds: Vec<(&str, Vec<(String, String)>)> = vec![
        ("no credentials", vec![]),
        ("wrong bearer (same length)", vec![("Authorization".into(), format!("Bearer {wrong_same_len}"))]),
        ("bearer missing its last character", vec![("Authorization".into(), format!("Bearer {short}"))]),
        ("bearer with one extra character", vec![("Authorization".into(), format!("Bearer {longer}"))]),
        ("empty bearer", vec![("Authorization".into(), "Bearer ".into())]),
        ("token without the Bearer scheme", vec![("Authorization".into(), TOKEN.into())]),
        ("token as Basic password", vec![("Authorization".into(), basic.clone())]),
        ("token in X-Api-Key", vec![("X-Api-Key".into(), TOKEN.into())]),
        ("token in X-Auth-Token", vec![("X-Auth-Token".into(), TOKEN.into())]),
        ("login cookie with a wrong value", vec![("Cookie".into(), format!("millwright_token={wrong_same_len}"))]),
        ("token in a cookie named token", vec![("Cookie".into(), format!("token={TOKEN}"))]),
        ("token in a cookie named session", vec![("Cookie".into(), format!("session={TOKEN}; theme=dark"))]),
        ("token in a cookie whose name only ends like the login cookie", vec![("Cookie".into(), format!("xmillwright_token={TOKEN}"))]),
        (
            "token in a cookie whose name only starts like the login cookie",
            vec![("Cookie".into(), format!("millwright_token_old={TOKEN}"))],
        ),
        ("token in the login cookie's name with other case", vec![("Cookie".into(), format!("Millwright_Token={TOKEN}"))]),
    ];
    let queries = ["token", "access_token", "api_key", "millwright_token", "auth"];
    let mut checked = 0;
    let mut refusals = 0;
    for op in &mutating {
        for (what, hs) in &creds {
            let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let r = send(d.addr, op, &op.path, &hs);
            assert_eq!(r.status, 401, "{} {} with {what}: {} {}", op.method, op.path, r.status, r.text());
            assert_eq!(r.json()["error"]["code"], "unauthorized", "{} {} with {what}: {}", op.method, op.path, r.text());
            assert!(!r.text().contains(TOKEN), "{} {}: the refusal echoes the token", op.method, op.path);
            refusals += 1;
        }
        for q in queries {
            let sep = if op.path.contains('?') { '&' } else { '?' };
            let r = send(d.addr, op, &format!("{}{sep}{q}={TOKEN}", op.path), &[]);
            assert_eq!(r.status, 401, "{} {} with ?{q}=<token>: {}", op.method, op.path, r.text());
            refusals += 1;
        }
        checked += 1;
    }
    eprintln!(
        "{checked} mutating routes refused {refusals} wrong credentials: {:?}",
        mutating.iter().map(|o| format!("{} {}", o.method, o.template)).collect::<Vec<_>>()
    );
    assert!(
        checked >= MIN_MUTATING_ROUTES,
        "only {checked} mutating routes found in the OpenAPI document (expected at least {MIN_MUTATING_ROUTES})"
    );

    // Nothing changed: no job queued, the task still finished, the model still live.
    assert_eq!(d.get("/api/ml/tasks").json()["tasks"].as_array().unwrap().len(), before_tasks, "a refused request queued a job");
    assert_eq!(d.get(&format!("/api/ml/tasks/{task}")).json()["status"], "SUCCESS");
    assert_eq!(d.get(&format!("/api/ml/models/{m}/anomaly")).status, 200, "a refused request deleted the model");

    // Login checks the token it is given, and never takes it from the URL either.
    let login = |body: &str, path: &str| request(d.addr, "POST", path, Some(body.as_bytes()), &[("Content-Type", "application/json")]);
    for bad in [wrong_same_len.as_str(), short, longer.as_str(), ""] {
        let r = login(&json!({ "token": bad }).to_string(), "/api/auth/login");
        assert_eq!(r.status, 401, "login with {bad:?}: {}", r.text());
        assert!(r.header("set-cookie").is_none(), "a failed login sets no cookie");
    }
    let r = login("{}", &format!("/api/auth/login?token={TOKEN}"));
    assert!(r.status == 400 || r.status == 401, "login must not read the token from the URL: {} {}", r.status, r.text());
    assert!(r.header("set-cookie").is_none());

    let ok = login(&json!({ "token": TOKEN }).to_string(), "/api/auth/login");
    assert_eq!(ok.status, 200);
    let set = ok.header("set-cookie").unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let pair = set.split(';').next().unwrap().to_string();

    // Reads are open on the LAN (README, Auth), and no read, with or without credentials, echoes the token.
    let health = d.get("/api/health").json();
    assert_eq!(health["auth_required"], true);
    let reads: Vec<&Op> = ops.iter().filter(|o| o.method == "GET").collect();
    assert!(reads.len() >= 8, "only {} GET routes in the OpenAPI document", reads.len());
    for op in &reads {
        for creds in [vec![], vec![("Authorization", bearer.as_str())], vec![("Cookie", pair.as_str())]] {
            let r = send(d.addr, op, &op.path, &creds);
            assert_eq!(r.status, 200, "GET {} ({} credentials): {}", op.path, creds.len(), r.text());
            assert!(!r.body.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "GET {} returns the token", op.path);
            for (k, v) in &r.headers {
                assert!(!v.contains(TOKEN), "GET {}: header {k} carries the token", op.path);
            }
        }
    }

    // Control: the same requests with the login cookie get past the check, so the paths above were real
    // (last, since they queue jobs and delete the model; the model's own DELETE goes last of all, after the
    // routes that need the model, such as its pin).
    let mut control = mutating.clone();
    control.sort_by_key(|o| o.method == "DELETE" && o.template == "/api/ml/models/{machine_id}/{model_type}");
    for op in &control {
        let r = send(d.addr, op, &op.path, &[("Cookie", &pair)]);
        assert!(
            r.status != 401 && r.status != 404 && r.status < 500,
            "{} {} with the login cookie: {} {}",
            op.method,
            op.path,
            r.status,
            r.text()
        );
    }
    let r = send(d.addr, mutating[0], &mutating[0].path, &[("Authorization", &bearer)]);
    assert_ne!(r.status, 401, "{} {} with the bearer token", mutating[0].method, mutating[0].path);

    let status = |creds: &[(&str, &str)]| request(d.addr, "GET", "/api/auth/status", None, creds).json()["logged_in"].clone();
    assert_eq!(status(&[]), false);
    assert_eq!(status(&[("Cookie", &format!("session={TOKEN}"))]), false);
    assert_eq!(status(&[("Cookie", &pair)]), true);
    eprintln!("{} GET routes open without the token and never echo it", reads.len());
}

/// The token as it might end up in a log or a file: raw, base64 at each byte alignment (as a piece of a
/// longer encoded blob), hex, percent-encoded, and inside a Basic credential.
fn encodings(token: &str) -> Vec<(String, String)> {
    let t = token.as_bytes();
    let mut forms = vec![
        ("raw".to_string(), token.to_string()),
        ("hex (lower)".into(), t.iter().map(|b| format!("{b:02x}")).collect()),
        ("hex (upper)".into(), t.iter().map(|b| format!("{b:02X}")).collect()),
        ("percent-encoded".into(), t.iter().map(|b| format!("%{b:02X}")).collect()),
        (
            "url-encoded".into(),
            t.iter()
                .map(|&b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect(),
        ),
        ("reversed".into(), token.chars().rev().collect()),
    ];
    for url_safe in [false, true] {
        for k in 0..3usize {
            let mut shifted = vec![0u8; k];
            shifted.extend_from_slice(t);
            let enc = b64(&shifted, url_safe, false);
            // Only the characters made of token bits alone, whatever precedes or follows it.
            let (from, to) = ((8 * k).div_ceil(6), 8 * (k + t.len()) / 6);
            forms.push((format!("base64{} at offset {k}", if url_safe { "url" } else { "" }), enc[from..to].to_string()));
        }
    }
    forms.push(("Basic credential".into(), b64(format!("millwright:{token}").as_bytes(), false, true)));
    forms
}

fn find_token(haystack: &[u8], forms: &[(String, String)]) -> Vec<String> {
    forms
        .iter()
        .filter(|(_, f)| haystack.windows(f.len()).any(|w| w.eq_ignore_ascii_case(f.as_bytes())))
        .map(|(name, _)| name.clone())
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn mosquitto_available() -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':').chain(["/usr/sbin", "/usr/local/sbin", "/sbin"]).any(|d| Path::new(d).join("mosquitto").is_file())
}

#[test]
fn the_token_never_reaches_the_log_the_state_folder_or_mqtt() {
    let (d, data, state) = setup(2_000);
    let broker = mosquitto_available().then(|| mqtt_helpers::Broker::start(&d.path().join("broker")));
    let url = broker.as_ref().map(|b| b.url());
    // Debug for every crate and trace for ours: the most an operator would ever turn on.
    let mut env = vec![("MILLWRIGHT_LOG_LEVEL", "millwright=trace,debug")];
    if let Some(u) = &url {
        env.extend([("MILLWRIGHT_MQTT__ENABLED", "true"), ("MILLWRIGHT_MQTT__URL", u.as_str()), ("MILLWRIGHT_MQTT__NODE_ID", "sec1")]);
    } else {
        eprintln!("mosquitto not installed: the MQTT part of this check is skipped");
    }
    // Without a configured token, so the daemon generates one (the path a real install takes).
    let mut daemon = Daemon::launch(&data, &state, Launch { env: &env, generate_token: true, ..Launch::default() });
    let stdout = daemon.stdout.clone();
    let token = std::fs::read_to_string(state.join("token")).unwrap().trim().to_string();
    assert!(token.len() >= 32, "generated token too short: {} chars", token.len());
    let sub = broker.as_ref().map(|b| mqtt_helpers::Sub::connect(b.port, &["millwright/sec1/#"]));
    if let Some(s) = &sub {
        s.wait(Duration::from_secs(15), "online", |m| m.topic == "millwright/sec1/bridge/state");
    }
    let m = machine(&daemon);
    let json_ct = ("Content-Type", "application/json");

    // A browser session: login, train with the cookie, predict, cancel a finished job, logout.
    let ok = request(daemon.addr, "POST", "/api/auth/login", Some(json!({ "token": token }).to_string().as_bytes()), &[json_ct]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let pair = ok.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let task = train_anomaly(&daemon, &m, &[("Cookie", &pair)]);
    let bearer = format!("Bearer {token}");
    let p = request(daemon.addr, "POST", &format!("/api/ml/predict/{m}"), Some(b"{}"), &[json_ct, ("Authorization", &bearer)]);
    assert_eq!(p.status, 200, "{}", p.text());
    let c = request(daemon.addr, "POST", &format!("/api/ml/tasks/{task}/cancel"), None, &[("Authorization", &bearer)]);
    assert_eq!(c.status, 409, "{}", c.text());
    // Failures, which are the requests most likely to be logged in full.
    let wrong: String = token.chars().rev().collect();
    let r = request(daemon.addr, "POST", "/api/auth/login", Some(json!({ "token": wrong }).to_string().as_bytes()), &[json_ct]);
    assert_eq!(r.status, 401);
    let r = request(daemon.addr, "POST", "/api/auth/login", Some(format!("{{\"token\":\"{token}\"").as_bytes()), &[json_ct]);
    assert_eq!(r.status, 400, "truncated JSON holding the token: {}", r.text());
    assert!(!r.text().contains(&token), "the parse error echoes the token: {}", r.text());
    let r = request(
        daemon.addr,
        "POST",
        &format!("/api/ml/train/batch?token={token}"),
        Some(json!({ "machine_id": m }).to_string().as_bytes()),
        &[json_ct],
    );
    assert_eq!(r.status, 401);
    let r = request(daemon.addr, "GET", &format!("/api/ml/tasks?token={token}"), None, &[]);
    assert!(r.status == 200 || r.status == 400, "{}", r.text());
    let r = request(
        daemon.addr,
        "POST",
        "/api/ml/train/batch",
        Some(json!({ "machine_id": m }).to_string().as_bytes()),
        &[json_ct, ("Authorization", &format!("Basic {}", b64(format!("u:{token}").as_bytes(), false, true)))],
    );
    assert_eq!(r.status, 401);
    let out = request(daemon.addr, "POST", "/api/auth/logout", None, &[("Cookie", &pair)]);
    assert_eq!(out.status, 200);

    // MQTT requests run with the daemon's token internally: it must not leak into answers or the log.
    if let Some(s) = &sub {
        let base = "millwright/sec1";
        let r = s.request(base, "health_check", r#"{"transaction":"s1"}"#, Duration::from_secs(15));
        assert_eq!(r["status"], "ok", "{r}");
        let r = s.request(
            base,
            "train",
            &json!({ "machine_id": m, "model_types": ["anomaly"], "transaction": "s2" }).to_string(),
            Duration::from_secs(15),
        );
        assert_eq!(r["status"], "ok", "{r}");
        daemon.wait_task(r["data"]["task_id"].as_str().unwrap(), LONG);
        let r = s.request(base, "jobs", r#"{"transaction":"s3"}"#, Duration::from_secs(15));
        assert_eq!(r["status"], "ok", "{r}");
        let r = s.request(base, "cancel", r#"{"task_id":"0000","transaction":"s4"}"#, Duration::from_secs(15));
        assert_eq!(r["status"], "error", "{r}");
    }

    let took = daemon.terminate();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let forms = encodings(&token);
    let log = std::fs::read(&daemon.stderr_log).unwrap();
    let text = String::from_utf8_lossy(&log);
    let debug_lines = text.lines().filter(|l| l.contains(" DEBUG ") || l.contains(" TRACE ")).count();
    assert!(debug_lines > 0, "no debug line in the log: the check would prove little at the default level");
    assert!(text.contains("generated a new API token"), "the log says where the token is");
    let hits = find_token(&log, &forms);
    assert!(hits.is_empty(), "the token is in the daemon's log as {hits:?}");
    let out = stdout.lock().unwrap().join("\n");
    let hits = find_token(out.as_bytes(), &forms);
    assert!(hits.is_empty(), "the token is on the daemon's stdout as {hits:?}");
    let mut files = Vec::new();
    files_under(&state, &mut files);
    let token_file = state.join("token");
    let mut scanned = 0;
    for f in files.iter().filter(|f| **f != token_file) {
        let bytes = std::fs::read(f).unwrap_or_default();
        let hits = find_token(&bytes, &forms);
        assert!(hits.is_empty(), "{} holds the token as {hits:?}", f.display());
        scanned += 1;
    }
    if let Some(s) = &sub {
        for msg in s.all() {
            let hits = find_token(&msg.payload, &forms);
            assert!(hits.is_empty(), "MQTT {} carries the token as {hits:?}", msg.topic);
        }
        eprintln!("{} MQTT messages checked", s.all().len());
    }
    eprintln!(
        "token absent from {} bytes of log ({debug_lines} debug/trace lines), {} bytes of stdout and {scanned} state files, in {} encodings",
        log.len(),
        out.len(),
        forms.len()
    );
}

fn csp_directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut it = d.split_whitespace();
            (it.next().unwrap().to_ascii_lowercase(), it.map(str::to_string).collect())
        })
        .collect()
}

fn assert_strict_csp(what: &str, r: &Resp) {
    let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let dirs = csp_directives(csp);
    let get = |name: &str| dirs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let default = get("default-src").unwrap_or_else(|| panic!("{what}: CSP without default-src: {csp}"));
    assert!(default == ["'none'"] || default == ["'self'"], "{what}: default-src must be 'self' or 'none': {csp}");
    let scripts = get("script-src").unwrap_or(default.clone());
    for bad in ["'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "data:", "blob:", "*"] {
        assert!(!scripts.iter().any(|s| s.eq_ignore_ascii_case(bad)), "{what}: script-src allows {bad}: {csp}");
    }
    for (name, sources) in &dirs {
        for s in sources {
            let local = ["'self'", "'none'"].contains(&s.as_str()) || (s == "data:" && name == "img-src");
            assert!(local, "{what}: {name} allows {s}, which is not this daemon: {csp}");
        }
    }
    let frames = get("frame-ancestors").unwrap_or_else(|| panic!("{what}: CSP without frame-ancestors: {csp}"));
    assert!(frames == ["'none'"] || frames == ["'self'"], "{what}: frame-ancestors {frames:?}");
    assert!(get("base-uri").is_some(), "{what}: CSP without base-uri: {csp}");
    assert!(get("form-action").is_some(), "{what}: CSP without form-action: {csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("x-frame-options").map(str::to_ascii_uppercase).as_deref(), Some("DENY"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
}

/// Absolute URLs in a text file, minus the XML namespace identifiers SVG needs (never fetched).
fn foreign_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = text.to_ascii_lowercase();
    for scheme in ["http://", "https://", "ws://", "wss://", "ftp://"] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(scheme) {
            let start = from + i;
            let rest = &lower[start + scheme.len()..];
            let host: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(*c)).collect();
            let host_only = host.split(':').next().unwrap_or("");
            let namespace = host_only == "www.w3.org"
                && (rest.starts_with("www.w3.org/2000/svg")
                    || rest.starts_with("www.w3.org/1999/xlink")
                    || rest.starts_with("www.w3.org/1999/xhtml")
                    || rest.starts_with("www.w3.org/xml/1998/namespace"));
            let local = ["localhost", "127.0.0.1", "[::1]"].contains(&host_only) || host.is_empty();
            if !namespace && !local {
                found.push(format!("{scheme}{host}"));
            }
            from = start + scheme.len();
        }
    }
    for needle in
        ["url(//", "src=\"//", "href=\"//", "src='//", "href='//", "from \"//", "from '//", "import(\"//", "import('//", "@import"]
    {
        if lower.contains(needle) {
            found.push(needle.to_string());
        }
    }
    found
}

#[test]
fn the_page_has_a_strict_csp_and_refers_to_no_third_party_origin() {
    // The files as they are in the repository: the embedded page is built from these.
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut files = Vec::new();
    files_under(&web, &mut files);
    files.sort();
    assert!(files.len() >= 5, "web/ has only {} files", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for url in foreign_urls(&text) {
            bad.push(format!("{}: {url}", f.strip_prefix(&web).unwrap().display()));
        }
    }
    assert!(bad.is_empty(), "the page must work offline and talk only to the daemon; found:\n{}", bad.join("\n"));
    // Inline scripts and handlers would need 'unsafe-inline': none may exist for anyone to be tempted.
    let index = std::fs::read_to_string(web.join("index.html")).unwrap();
    let lower = index.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = lower[at..].find("<script") {
        let tag_end = lower[at + i..].find('>').map(|e| at + i + e).unwrap();
        assert!(lower[at + i..tag_end].contains("src="), "index.html has an inline <script>: {}", &index[at + i..=tag_end]);
        at = tag_end;
    }
    for handler in [" onclick=", " onload=", " onerror=", " onsubmit=", " onchange=", " oninput=", "javascript:"] {
        assert!(!lower.contains(handler), "index.html uses an inline handler ({handler})");
    }

    let (_d, data, state) = setup(500);
    let d = Daemon::start(&data, &state, &[]);
    let mut urls = vec!["/".to_string(), "/index.html".to_string(), "/static/no-such-file.js".to_string()];
    for f in &files {
        let rel = f.strip_prefix(&web).unwrap().to_string_lossy().replace('\\', "/");
        if rel != "index.html" {
            urls.push(format!("/{rel}"));
        }
    }
    let page = d.get("/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let mut checked = 0;
    for url in &urls {
        let r = d.get(url);
        assert!(r.status == 200 || (r.status == 404 && url.contains("no-such-file")), "GET {url}: {}", r.status);
        assert_strict_csp(&format!("GET {url}"), &r);
        checked += 1;
        // Conditional and compressed answers carry the same headers.
        if let Some(etag) = r.header("etag").map(str::to_string) {
            let r304 = request(d.addr, "GET", url, None, &[("If-None-Match", &etag)]);
            assert_eq!(r304.status, 304, "GET {url} with its ETag");
            assert_strict_csp(&format!("GET {url} (304)"), &r304);
            let gz = request(d.addr, "GET", url, None, &[("Accept-Encoding", "gzip")]);
            assert_strict_csp(&format!("GET {url} (gzip)"), &gz);
            checked += 2;
        }
    }
    eprintln!(
        "{} files under web/ free of third-party origins; {checked} page answers with a strict CSP: {}",
        files.len(),
        page.header("content-security-policy").unwrap()
    );
}

#[test]
fn systemd_analyze_security_exposure_is_low() {
    const THRESHOLD: f64 = 2.5;
    let have = Command::new("sh").args(["-c", "command -v systemd-analyze"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !have {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd); the unit's exposure was not measured");
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/millwright.service");
    let t0 = Instant::now();
    let out = Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "→ Overall exposure level for millwright.service: 1.4 OK 🙂"
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("no exposure figure in:\n{text}"));
    let figure: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the figure in {line:?}"));
    let word = line.rsplit(':').next().and_then(|rest| rest.split_whitespace().nth(1)).unwrap_or("");
    eprintln!(
        "systemd-analyze security --offline=true systemd/millwright.service: exposure {figure} {word} (threshold {THRESHOLD}, {:?})",
        t0.elapsed()
    );
    let worst: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with('✗')).collect();
    eprintln!("open items:\n{}", worst.join("\n"));
    assert!(figure <= THRESHOLD, "exposure {figure} {word} is above {THRESHOLD}; open items:\n{}", worst.join("\n"));
    assert!(["OK", "SAFE"].contains(&word), "exposure rated {word:?}");
}
