//! Confinement, login and cross-site requests against the real daemon: a machine folder cannot make the
//! open machine list quote the token file or /etc/passwd; login guessing is throttled and logged; a short
//! configured token stops the start; a page on another port cannot use the login cookie to cancel a job;
//! foreign Host names are refused (DNS rebinding); anonymous readers see no paths.
use super::common::{Daemon, Resp, TOKEN, fleet, request, serve_expecting_exit};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(240);

fn setup(machines: usize, rows: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    fleet(&data, machines, rows);
    let state = d.path().join("state");
    (d, data, state)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn machines(d: &Daemon, creds: &[(&str, &str)]) -> (Value, String) {
    let r = request(d.addr, "GET", "/api/ml/train/machines/available", None, creds);
    assert_eq!(r.status, 200, "{}", r.text());
    (r.json(), r.text())
}

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["machines"].as_array().unwrap().iter().find(|m| m["machine_id"] == id).unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every way a machine folder could name a file outside the data folder, each with what must not leak.
#[test]
fn machine_files_outside_the_data_folder_are_refused_and_never_quoted() {
    let (tmp, data, state) = setup(1, 500);
    // A generated token, as on a real install: it sits in the state folder beside the data folder.
    let d = Daemon::start_without_token(&data, &state);
    let token = std::fs::read_to_string(state.join("token")).unwrap().trim().to_string();
    let outside = tmp.path().join("elsewhere");
    write(&outside.join("train.csv"), "timestamp,s1\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n");
    let machines_dir = data.join("machines");
    let token_file = state.join("token");
    let describe = |path: &str| format!("[[files]]\npath = {path:?}\n");
    let cases: Vec<(&str, &str)> = vec![
        ("leak-token-abs", "[[files]] path"),
        ("leak-token-rel", "[[files]] path"),
        ("leak-passwd", "[[files]] path"),
        ("leak-glob", "[[files]] path"),
        ("leak-legacy-link", "legacy-layout file train.csv"),
        ("leak-toml-link", "machine.toml"),
        ("leak-rul", "rul_at_end"),
        ("leak-windows", "[anomaly_windows] path"),
        ("leak-folder-link", "the machine folder"),
    ];
    write(&machines_dir.join("leak-token-abs/machine.toml"), &describe(token_file.to_str().unwrap()));
    write(&machines_dir.join("leak-token-rel/machine.toml"), &describe("../../../state/token"));
    write(&machines_dir.join("leak-passwd/machine.toml"), &format!("{}delimiter = \";\"\n", describe("/etc/passwd")));
    write(&machines_dir.join("leak-glob/machine.toml"), &describe("../../../state/tok*"));
    std::fs::create_dir_all(machines_dir.join("leak-legacy-link")).unwrap();
    std::os::unix::fs::symlink(&token_file, machines_dir.join("leak-legacy-link/train.csv")).unwrap();
    std::fs::create_dir_all(machines_dir.join("leak-toml-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", machines_dir.join("leak-toml-link/machine.toml")).unwrap();
    let inside_csv = "timestamp,unit,s1\n2024-01-01T00:00:00Z,1,1\n2024-01-01T00:01:00Z,1,2\n2024-01-01T00:02:00Z,1,3\n";
    write(&machines_dir.join("leak-rul/data.csv"), inside_csv);
    write(
        &machines_dir.join("leak-rul/machine.toml"),
        &format!("{}rul_at_end = {:?}\n[columns]\nunit = \"unit\"\n", describe("data.csv"), token_file.to_str().unwrap()),
    );
    write(&machines_dir.join("leak-windows/data.csv"), inside_csv);
    write(
        &machines_dir.join("leak-windows/machine.toml"),
        &format!("{}[anomaly_windows]\npath = \"../../../state/token\"\n", describe("data.csv")),
    );
    std::os::unix::fs::symlink(&outside, machines_dir.join("leak-folder-link")).unwrap();
    let passwd_line = std::fs::read_to_string("/etc/passwd").unwrap().lines().next().unwrap_or("root:x:0:0").to_string();
    let secrets = [token.as_str(), &token[..16], &token[token.len() - 16..], passwd_line.as_str(), "root:x:"];
    let abs = tmp.path().to_str().unwrap().to_string();

    // Anonymous: each folder is listed with a plain reason, no content, no path, and a pointer to log in.
    let (anon, text) = machines(&d, &[]);
    for s in secrets {
        assert!(!text.contains(s), "the open machine list quotes {s:?}: {text}");
    }
    assert!(!text.contains(&abs) && !text.contains("/etc/passwd"), "the open machine list shows paths: {text}");
    for (id, _) in &cases {
        let err = entry(&anon, id)["error"].as_str().unwrap_or_else(|| panic!("{id} has no error: {anon}"));
        assert!(err.contains("log in to see details"), "{id}: {err}");
    }
    assert!(entry(&anon, "leak-token-abs")["error"].as_str().unwrap().contains("outside the data folder"));

    // With the token: the full reason names the setting and the folder it escapes, still without content.
    let auth = bearer(&token);
    let (full, text) = machines(&d, &[("Authorization", &auth)]);
    for s in secrets {
        assert!(!text.contains(s), "the machine list quotes {s:?} even with the token: {text}");
    }
    for (id, setting) in &cases {
        let err = entry(&full, id)["error"].as_str().unwrap();
        assert!(err.contains("outside the data folder") && err.contains(setting), "{id}: {err}");
    }
    // A good machine beside them still loads, and training a bad one is refused with the same reason.
    assert!(full["machines"].as_array().unwrap().iter().any(|m| m["rows"].as_u64().unwrap_or(0) > 0), "{full}");
    let r = request(
        d.addr,
        "POST",
        "/api/ml/train/anomaly",
        Some(br#"{"machine_id":"leak-token-abs"}"#),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("outside the data folder") && !r.text().contains(&token), "{}", r.text());
}

/// Content of files inside the data folder (a bad cell, a TOML excerpt) is shown only with the token.
#[test]
fn load_errors_quote_file_content_only_for_a_client_with_the_token() {
    let (tmp, data, state) = setup(1, 500);
    let d = Daemon::start(&data, &state, &[]);
    let canary = "canary-cell-3f9a";
    write(&data.join("machines/bad-cell/train.csv"), &format!("timestamp,s1\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,{canary}\n"));
    write(&data.join("machines/bad-toml/machine.toml"), "[[files]]\npath = canary-toml-77\n");
    let (anon, text) = machines(&d, &[]);
    assert!(!text.contains(canary) && !text.contains("canary-toml-77") && !text.contains(tmp.path().to_str().unwrap()), "{text}");
    assert!(entry(&anon, "bad-cell")["error"].as_str().unwrap().contains("log in to see details"), "{anon}");
    let auth = bearer(TOKEN);
    let (_, text) = machines(&d, &[("Authorization", &auth)]);
    assert!(text.contains(canary) && text.contains("canary-toml-77"), "the token holder gets the full reason: {text}");
}

fn login(addr: SocketAddr, token: &str) -> Resp {
    request(
        addr,
        "POST",
        "/api/auth/login",
        Some(json!({ "token": token }).to_string().as_bytes()),
        &[("Content-Type", "application/json")],
    )
}

#[test]
fn login_guessing_is_throttled_per_address_and_logged() {
    let (_tmp, data, state) = setup(1, 300);
    let d = Daemon::start(&data, &state, &[]);
    let t0 = Instant::now();
    let (mut wrong, mut throttled) = (0, 0);
    let mut retry_after = 0u64;
    for i in 0..50 {
        let r = login(d.addr, &format!("guess-{i:04}-0123456789abcdef"));
        match r.status {
            401 => wrong += 1,
            429 => {
                throttled += 1;
                let v = r.json();
                assert_eq!(v["error"]["code"], "too_many_attempts", "{v}");
                retry_after = r.header("retry-after").and_then(|s| s.parse().ok()).expect("429 carries Retry-After");
            }
            s => panic!("login answered {s}: {}", r.text()),
        }
    }
    let took = t0.elapsed();
    eprintln!("50 wrong logins: {wrong} checked, {throttled} refused unchecked, in {took:?}");
    assert!(wrong <= 8 && throttled >= 42, "{wrong} wrong tokens were checked, {throttled} throttled (took {took:?})");
    // Locked out, even the right token is not checked: a guesser learns nothing from a hit.
    assert_eq!(login(d.addr, TOKEN).status, 429);
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("failed login")).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains("127.0.0.1") && l.contains("WARN")), "{log}");
    assert!(lines.len() <= 2, "failed logins are logged rate-limited, got {} lines", lines.len());
    assert!(!log.contains(TOKEN));
    // After the lockout the right token works again and clears the count.
    std::thread::sleep(Duration::from_secs(retry_after.max(1)));
    let mut ok = login(d.addr, TOKEN);
    for _ in 0..20 {
        if ok.status != 429 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        ok = login(d.addr, TOKEN);
    }
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(login(d.addr, "wrong-but-long-enough-000").status, 401, "a success starts the count again");
}

#[test]
fn a_configured_token_shorter_than_16_characters_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [("MILLWRIGHT_AUTH__TOKEN", "hunter2-short")];
    let (status, err) = serve_expecting_exit(&tmp.path().join("data"), &tmp.path().join("state"), &env, Duration::from_secs(20));
    assert!(!status.success(), "the daemon started with a 13-character token: {err}");
    assert!(err.contains("MILLWRIGHT_AUTH__TOKEN") && err.contains("auth.token") && err.contains("at least 16 characters"), "{err}");
    assert!(!err.contains("hunter2-short"), "the refusal echoes the token: {err}");
}

#[test]
fn the_login_cookie_works_only_from_our_own_page_and_logout_revokes_it() {
    let (_tmp, data, state) = setup(1, 30_000);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_TRAINING__QUALITY", "best")]);
    let m = d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let ok = login(d.addr, TOKEN);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let set = ok.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let pair = set.split(';').next().unwrap().to_string();
    let value = pair.split_once('=').unwrap().1;
    assert!(!value.contains(TOKEN) && value.len() >= 32, "the cookie must carry a session id, not the token: {set}");

    let r = d.post(
        "/api/ml/train/batch",
        &json!({ "machine_id": m, "model_types": ["regression", "classification"], "time_limit_per_model": 600 }),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["task_id"].as_str().unwrap().to_string();
    d.wait_running(&job, LONG);
    let cancel = format!("/api/ml/tasks/{job}/cancel");
    let own = format!("http://{}", d.addr);
    let other_port = format!("http://127.0.0.1:{}", d.addr.port() + 1);
    // A form on another port posts text/plain with the cookie (SameSite does not separate ports).
    let forged: Vec<Vec<(&str, &str)>> = vec![
        vec![("Cookie", &pair), ("Origin", &other_port), ("Content-Type", "text/plain")],
        vec![("Cookie", &pair), ("Origin", "null"), ("Content-Type", "text/plain")],
        vec![("Cookie", &pair), ("Origin", "http://evil.example")],
        vec![("Cookie", &pair), ("Sec-Fetch-Site", "cross-site")],
        vec![("Cookie", &pair), ("Sec-Fetch-Site", "same-site"), ("Origin", &other_port)],
    ];
    for headers in &forged {
        let r = request(d.addr, "POST", &cancel, Some(b"x=1"), headers);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "cross_origin", "{}", r.text());
    }
    let r = request(d.addr, "DELETE", &format!("/api/ml/models/{m}/anomaly"), None, &forged[0]);
    assert_eq!(r.status, 403, "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    let now = d.get(&format!("/api/ml/tasks/{job}")).json();
    assert_eq!(now["status"], "PROGRESS", "a forged request touched the job: {now}");

    // Our own page (same Origin as Host) cancels it.
    let r = request(d.addr, "POST", &cancel, None, &[("Cookie", &pair), ("Origin", &own), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.wait_task(&job, Duration::from_secs(10))["status"], "REVOKED");
    let status = |creds: &[(&str, &str)]| request(d.addr, "GET", "/api/auth/status", None, creds).json()["logged_in"].clone();
    assert_eq!(status(&[("Cookie", &pair)]), true);
    // The token itself in the cookie is no credential.
    let token_cookie = format!("millwright_session={TOKEN}");
    assert_eq!(status(&[("Cookie", &token_cookie)]), false);

    // Logout revokes the session on the server, not just in this browser.
    let out = request(d.addr, "POST", "/api/auth/logout", None, &[("Cookie", &pair), ("Origin", &own)]);
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(status(&[("Cookie", &pair)]), false);
    let r = d.post("/api/ml/train/anomaly", &json!({ "machine_id": m }));
    let again = r.json()["task_id"].as_str().unwrap().to_string();
    let r = request(d.addr, "POST", &format!("/api/ml/tasks/{again}/cancel"), None, &[("Cookie", &pair), ("Origin", &own)]);
    assert_eq!(r.status, 401, "a revoked session still works: {}", r.text());
    d.post(&format!("/api/ml/tasks/{again}/cancel"), &json!({}));
}

/// A raw GET with the given Host header (the harness always sends the real address).
fn get_with_host(addr: SocketAddr, path: &str, host: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let host_line = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let version = if host.is_some() { "1.1" } else { "1.0" };
    write!(s, "GET {path} HTTP/{version}\r\n{host_line}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn foreign_host_names_are_refused_and_local_names_and_addresses_pass() {
    let (_tmp, data, state) = setup(1, 300);
    let d = Daemon::start(&data, &state, &[("MILLWRIGHT_HTTP__ALLOWED_HOSTS", "mill.example.com")]);
    let port = d.addr.port();
    for host in ["evil.example".to_string(), format!("evil.example:{port}"), format!("127.0.0.1.nip.example:{port}")] {
        for path in ["/api/health", "/api/ml/train/machines/available", "/"] {
            let (status, body) = get_with_host(d.addr, path, Some(&host));
            assert_eq!(status, 421, "{host} {path}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert_eq!(v["error"]["code"], "unknown_host", "{body}");
            assert!(v["error"]["message"].as_str().unwrap().contains("http.allowed_hosts"), "{body}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "10.1.2.3".to_string(),
        format!("mill.example.com:{port}"),
        "MILL.example.com.".to_string(),
    ] {
        let (status, body) = get_with_host(d.addr, "/api/health", Some(&host));
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, body) = get_with_host(d.addr, "/api/health", None);
    assert_eq!(status, 200, "HTTP/1.0 without Host: {body}");
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

#[test]
fn health_and_the_machine_list_show_paths_only_with_the_token() {
    let (tmp, data, state) = setup(1, 300);
    let d = Daemon::start(&data, &state, &[]);
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let auth = bearer(TOKEN);
    for path in ["/api/health", "/api/ml/train/machines/available"] {
        let anon = d.get(path);
        assert_eq!(anon.status, 200);
        let mut all = Vec::new();
        strings(&anon.json(), &mut all);
        let leaks: Vec<&String> = all
            .iter()
            .filter(|s| {
                s.contains(root.to_str().unwrap())
                    || s.contains(tmp.path().to_str().unwrap())
                    || s.starts_with('/')
                    || *s == "data_dir"
                    || *s == "path"
            })
            .collect();
        assert!(leaks.is_empty(), "{path} without the token shows {leaks:?}: {}", anon.text());
        let full = request(d.addr, "GET", path, None, &[("Authorization", &auth)]);
        assert!(
            full.text().contains(data.to_str().unwrap()) || full.text().contains(state.to_str().unwrap()),
            "{path} with the token keeps the paths: {}",
            full.text()
        );
    }
    let v = request(d.addr, "GET", "/api/ml/train/machines/available", None, &[("Authorization", &auth)]).json();
    assert_eq!(v["data_dir"], data.to_str().unwrap());
}
