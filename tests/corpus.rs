//! The bad-input corpus: every file under `tests/corpus/http/` is one request and every folder
//! under `tests/corpus/data/` is one machine; see `tests/corpus/README.md` for the formats. One daemon serves
//! them all; after each case it must still answer `/api/health` and still be running.
mod common;
use common::{Daemon, TOKEN, fleet};
use millwright::util::http_client;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEMO_ROWS: usize = 1_500;
const MIN_CASES: usize = 50;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().take(400).collect()
    }
}

/// One request through the crate's client, which writes the body while it reads, so a server that answers
/// 413 and closes before reading 10 MB is still heard. A daemon that cannot be reached is an answer too
/// (status 0, the reason as the body): the run goes on and reports it.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(String, String)], body: Option<Vec<u8>>) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match http_client::request(addr, method, path, &headers, body.as_deref(), Duration::from_secs(30)) {
        Ok(r) => Reply { status: r.status, body: r.body },
        Err(e) => Reply { status: 0, body: e.to_string().into_bytes() },
    }
}

/// What the substitutions `{demo}`, `{task}` and `{sensor0}` stand for.
struct Ctx {
    demo: String,
    task: String,
    sensors: Vec<String>,
    timestamps: Vec<f64>,
    values: Vec<Vec<f64>>,
}

impl Ctx {
    fn fill(&self, s: &str) -> String {
        s.replace("{demo}", &self.demo).replace("{task}", &self.task).replace("{sensor0}", &self.sensors[0])
    }

    /// The demo machine's last `n` rows as prediction rows, then the case's edits.
    fn rows(&self, spec: &Value) -> Value {
        let n = spec["n"].as_u64().unwrap_or(80) as usize;
        let start = self.timestamps.len().saturating_sub(n);
        let mut rows: Vec<Value> = (start..self.timestamps.len())
            .map(|i| {
                let mut row = serde_json::Map::new();
                row.insert("timestamp".into(), json!(self.timestamps[i]));
                for (s, vals) in self.sensors.iter().zip(&self.values) {
                    row.insert(s.clone(), if vals[i].is_nan() { Value::Null } else { json!(vals[i]) });
                }
                Value::Object(row)
            })
            .collect();
        let first = &self.sensors[0];
        for row in rows.iter_mut().filter_map(Value::as_object_mut) {
            if spec["drop_first_sensor"] == true {
                row.remove(first);
            }
            if let Some(new) = spec["rename_first_sensor"].as_str()
                && let Some(v) = row.remove(first)
            {
                row.insert(self.fill(new), v);
            }
            if let Some(extra) = spec["extra"].as_object() {
                row.extend(extra.clone());
            }
        }
        if let (Some(v), Some(last)) = (spec.get("last_first_sensor"), rows.last_mut().and_then(Value::as_object_mut)) {
            last.insert(first.clone(), v.clone());
        }
        Value::Array(rows)
    }
}

struct Outcome {
    name: String,
    want: String,
    got: String,
    ms: u128,
    /// The error message or task error, shown under the table so a reader can judge how clear it is.
    said: String,
    problem: Option<String>,
}

fn check_error(r: &Reply, status: u16, code: Option<&str>, contains: &[String]) -> Option<String> {
    if r.status != status {
        return Some(format!("status {} (wanted {status}): {}", r.status, r.text()));
    }
    let v = r.json();
    if status >= 400 {
        let Some(v) = &v else {
            return Some(format!("error body is not JSON: {:?}", r.text()));
        };
        let (c, m) = (v["error"]["code"].as_str(), v["error"]["message"].as_str());
        let (Some(c), Some(m)) = (c, m) else {
            return Some(format!("not the error shape {{\"error\": {{code, message}}}}: {v}"));
        };
        if m.trim().is_empty() {
            return Some(format!("empty error message: {v}"));
        }
        if let Some(want) = code
            && c != want
        {
            return Some(format!("code {c:?} (wanted {want:?}): {m}"));
        }
        let lower = m.to_lowercase();
        if let Some(p) = contains.iter().find(|p| !lower.contains(&p.to_lowercase())) {
            return Some(format!("message does not name {p:?}: {m}"));
        }
    }
    None
}

fn http_case(d: &Daemon, ctx: &Ctx, file: &Path) -> Outcome {
    let name = format!("http/{}", file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap_or_default()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let method = case["method"].as_str().unwrap_or("GET");
    let path = ctx.fill(case["path"].as_str().unwrap_or("/"));
    let fill_json = |v: &Value| serde_json::from_str::<Value>(&ctx.fill(&v.to_string())).unwrap_or(Value::Null);
    let body: Option<Vec<u8>> = if let Some(spec) = case.get("rows_from_demo") {
        let mut b = case.get("body").map(fill_json).unwrap_or_else(|| json!({}));
        b["rows"] = ctx.rows(spec);
        Some(b.to_string().into_bytes())
    } else if let Some(b) = case.get("body") {
        Some(fill_json(b).to_string().into_bytes())
    } else if let Some(t) = case["body_text"].as_str() {
        Some(ctx.fill(t).into_bytes())
    } else if let Some(h) = case["body_hex"].as_str() {
        Some((0..h.len()).step_by(2).filter_map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect())
    } else {
        case.get("body_generator").map(|g| {
            let mut b = ctx.fill(g["prefix"].as_str().unwrap_or("")).into_bytes();
            b.extend(g["repeat"].as_str().unwrap_or("x").repeat(g["count"].as_u64().unwrap_or(0) as usize).into_bytes());
            b.extend(g["suffix"].as_str().unwrap_or("").as_bytes());
            b
        })
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if case["auth"] != false {
        headers.push(("Authorization".into(), format!("Bearer {TOKEN}")));
    }
    let given = case["headers"].as_object().cloned().unwrap_or_default();
    if body.is_some() && !given.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    // A null header value means "send no such header".
    headers.extend(given.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))));
    let e = &case["expect"];
    let status = e["status"].as_u64().unwrap_or(0) as u16;
    let contains: Vec<String> =
        e["message_contains"].as_array().into_iter().flatten().filter_map(Value::as_str).map(|s| ctx.fill(s)).collect();
    let t0 = Instant::now();
    let r = send(d.addr, method, &path, &headers, body);
    let ms = t0.elapsed().as_millis();
    let mut problem = check_error(&r, status, e["code"].as_str(), &contains);
    if problem.is_none()
        && let Some(pairs) = e["json"].as_array()
    {
        let v = r.json().unwrap_or(Value::Null);
        problem = pairs.iter().find_map(|p| {
            let (ptr, want) = (p[0].as_str().unwrap_or(""), &p[1]);
            (v.pointer(ptr) != Some(want)).then(|| format!("{ptr} is {:?}, wanted {want}", v.pointer(ptr)))
        });
    }
    let code = r.json().and_then(|v| v["error"]["code"].as_str().map(str::to_string)).unwrap_or_default();
    Outcome {
        name,
        want: format!("{status} {}", e["code"].as_str().unwrap_or("")),
        got: format!("{} {code}", r.status),
        ms,
        said: said(&r),
        problem,
    }
}

fn said(r: &Reply) -> String {
    r.json().and_then(|v| v["error"]["message"].as_str().map(str::to_string)).unwrap_or_default()
}

fn get(d: &Daemon, path: &str) -> Reply {
    send(d.addr, "GET", path, &[], None)
}

fn post(d: &Daemon, path: &str, body: &Value) -> Reply {
    let h = [("Authorization".to_string(), format!("Bearer {TOKEN}")), ("Content-Type".to_string(), "application/json".to_string())];
    send(d.addr, "POST", path, &h, Some(body.to_string().into_bytes()))
}

/// Polls a task until it ends or `limit` passes; returns the last snapshot.
fn wait(d: &Daemon, id: &str, limit: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let v = get(d, &format!("/api/ml/tasks/{id}")).json().unwrap_or(Value::Null);
        if ["SUCCESS", "FAILURE", "REVOKED"].contains(&v["status"].as_str().unwrap_or("")) || t0.elapsed() > limit {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data_case(d: &Daemon, dir: &Path) -> Outcome {
    let id = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let case: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let name = format!("data/{id}");
    let route = case.get("route").and_then(|v| v.as_str()).unwrap_or("batch");
    let mut body = case.get("body").and_then(|b| serde_json::to_value(b).ok()).unwrap_or_else(|| json!({}));
    body["machine_id"] = json!(id);
    let expect = case.get("expect").and_then(|v| v.as_str()).unwrap_or("refused");
    let contains: Vec<String> = case
        .get("message_contains")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let limit = Duration::from_secs(case.get("timeout_s").and_then(|v| v.as_integer()).unwrap_or(60) as u64);
    let t0 = Instant::now();
    let r = post(d, &format!("/api/ml/train/{route}"), &body);
    if expect == "refused" {
        let status = case.get("status").and_then(|v| v.as_integer()).unwrap_or(422) as u16;
        let code = case.get("code").and_then(|v| v.as_str());
        let problem = check_error(&r, status, code, &contains);
        let got_code = r.json().and_then(|v| v["error"]["code"].as_str().map(str::to_string)).unwrap_or_default();
        return Outcome {
            name,
            want: format!("{status} {}", code.unwrap_or("")),
            got: format!("{} {got_code}", r.status),
            ms: t0.elapsed().as_millis(),
            said: said(&r),
            problem,
        };
    }
    let want = if expect == "success" { "SUCCESS" } else { "FAILURE" };
    let mut out = Outcome { name, want: format!("202 → {want}"), got: format!("{}", r.status), ms: 0, said: said(&r), problem: None };
    let task = r.json().and_then(|v| v["task_id"].as_str().map(str::to_string));
    let (202, Some(task)) = (r.status, task) else {
        out.problem = Some(format!("not accepted: {} {}", r.status, r.text()));
        out.ms = t0.elapsed().as_millis();
        return out;
    };
    let v = wait(d, &task, limit);
    out.ms = t0.elapsed().as_millis();
    let status = v["status"].as_str().unwrap_or("?").to_string();
    out.got = format!("202 → {status}");
    let error = v["error"].as_str().unwrap_or("");
    out.said = error.to_string();
    if status != want {
        out.problem = Some(format!("task ended {status} (wanted {want}) after {:?}; error: {error}", t0.elapsed()));
    } else if want == "FAILURE" {
        if error.trim().is_empty() {
            out.problem = Some(format!("FAILURE without an error message: {v}"));
        } else if let Some(p) = contains.iter().find(|p| !error.to_lowercase().contains(&p.to_lowercase())) {
            out.problem = Some(format!("error does not say {p:?}: {error}"));
        }
    }
    out
}

/// Writes what a case's `[[generate]]` entries describe: bytes too large or too binary to commit usefully.
fn generate(dir: &Path, g: &toml::Table) {
    let file = dir.join(g.get("file").and_then(|v| v.as_str()).unwrap_or("train.parquet"));
    let int = |k: &str| g.get(k).and_then(|v| v.as_integer());
    let float = |k: &str| g.get(k).and_then(|v| v.as_float());
    match g.get("kind").and_then(|v| v.as_str()) {
        Some("random") => {
            let mut x = int("seed").unwrap_or(1) as u64;
            let bytes: Vec<u8> = (0..int("bytes").unwrap_or(1024))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            std::fs::write(&file, bytes).unwrap();
        }
        Some("parquet") => {
            let n = int("rows").unwrap_or(100) as usize;
            let ts: Vec<f64> = (0..n).map(|i| 1.7e9 + 3600.0 * i as f64).collect();
            let rul: Vec<f64> = (0..n).map(|i| (n - 1 - i) as f64).collect();
            let mut temp: Vec<f64> = (0..n).map(|i| 40.0 + 0.1 * i as f64 + (i as f64 / 5.0).sin()).collect();
            let vib: Vec<f64> = (0..n).map(|i| 1.0 + 0.01 * i as f64).collect();
            if let Some(r) = int("inf_at_row") {
                temp[r as usize] = f64::INFINITY;
            }
            let table =
                millwright::data::write::OutTable { timestamps: &ts, columns: vec![("rul", &rul), ("temp_C", &temp), ("vib_mm_s", &vib)] };
            millwright::data::write::write_table(&file, &table, millwright::data::write::Format::Parquet).unwrap();
            let mut bytes = std::fs::read(&file).unwrap();
            let len = bytes.len();
            if let Some(f) = float("truncate_to") {
                bytes.truncate((len as f64 * f) as usize);
            }
            if let Some(k) = int("truncate_bytes") {
                bytes.truncate(len - k as usize);
            }
            if let (Some(at), Some(with)) = (int("overwrite_at"), g.get("overwrite").and_then(|v| v.as_str())) {
                let at = if at < 0 { (len as i64 + at) as usize } else { at as usize };
                bytes[at..at + with.len()].copy_from_slice(with.as_bytes());
            }
            if let (Some(a), Some(b)) = (float("zero_from"), float("zero_to")) {
                bytes[(len as f64 * a) as usize..(len as f64 * b) as usize].fill(0);
            }
            std::fs::write(&file, bytes).unwrap();
        }
        other => panic!("{}: unknown generator {other:?}", dir.display()),
    }
}

fn copy_case(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_name() != "case.toml" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let case: toml::Table = toml::from_str(&std::fs::read_to_string(from.join("case.toml")).unwrap()).unwrap();
    for g in case.get("generate").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_table()) {
        generate(to, g);
    }
}

fn sorted(dir: &Path, want_dir: bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir() == want_dir).collect();
    v.retain(|p| want_dir || p.extension().is_some_and(|e| e == "json"));
    v.sort();
    v
}

#[test]
fn bad_input_corpus_gets_clear_answers_and_the_daemon_stays_healthy() {
    let t_start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let state = tmp.path().join("state");
    fleet(&data, 1, DEMO_ROWS);
    let demo = millwright::data::machine_ids(&data).unwrap().remove(0);
    let table = millwright::data::load_machine(&data, &demo).unwrap();
    let data_cases = sorted(&corpus_dir().join("data"), true);
    for c in &data_cases {
        copy_case(c, &data.join("machines").join(c.file_name().unwrap()));
    }
    let http_cases = sorted(&corpus_dir().join("http"), false);

    let mut d = Daemon::start(&data, &state, &[("MILLWRIGHT_QUEUE__CAPACITY", "64")]);
    // Predict cases need live models: train the demo machine first.
    let r = post(&d, "/api/ml/train/batch", &json!({ "machine_id": demo }));
    assert_eq!(r.status, 202, "{}", r.text());
    let task = r.json().and_then(|v| v["task_id"].as_str().map(str::to_string)).unwrap();
    let v = wait(&d, &task, Duration::from_secs(120));
    assert_eq!(v["status"], "SUCCESS", "the demo machine must train: {v}");
    let ctx = Ctx {
        demo,
        task,
        sensors: table.sensors.iter().map(|s| s.name.clone()).collect(),
        timestamps: table.timestamps.clone(),
        values: table.sensors.iter().map(|s| s.values.clone()).collect(),
    };
    let t_cases = Instant::now();

    let mut outcomes = Vec::new();
    let run = |outcome: Outcome, d: &mut Daemon, outcomes: &mut Vec<Outcome>| {
        let mut outcome = outcome;
        let health = get(d, "/api/health");
        let alive = matches!(d.child.try_wait(), Ok(None));
        if !alive || health.status != 200 || health.json().is_none_or(|v| v["status"] != "ok") {
            let after = format!("daemon unhealthy after this case (alive: {alive}, health: {} {})", health.status, health.text());
            outcome.problem = Some(outcome.problem.map_or(after.clone(), |p| format!("{p}; {after}")));
        }
        outcomes.push(outcome);
    };
    for f in &http_cases {
        let o = http_case(&d, &ctx, f);
        run(o, &mut d, &mut outcomes);
    }
    for c in &data_cases {
        let o = data_case(&d, c);
        run(o, &mut d, &mut outcomes);
    }

    println!("\n{:<48} {:<34} {:<34} {:>7}", "case", "expected", "got", "ms");
    for o in &outcomes {
        println!("{:<48} {:<34} {:<34} {:>7} {}", o.name, o.want, o.got, o.ms, if o.problem.is_some() { "FAIL" } else { "ok" });
        if !o.said.is_empty() {
            println!("    {}", o.said.chars().take(200).collect::<String>());
        }
    }
    println!(
        "{} cases ({} http, {} data) in {:.1} s (setup + demo training {:.1} s)",
        outcomes.len(),
        http_cases.len(),
        data_cases.len(),
        t_start.elapsed().as_secs_f64(),
        (t_cases - t_start).as_secs_f64()
    );
    let failed: Vec<String> = outcomes.iter().filter_map(|o| o.problem.as_ref().map(|p| format!("{}: {p}", o.name))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} corpus cases failed:\n{}\n--- daemon log tail ---\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n"),
        tail(&d.log())
    );
    assert!(outcomes.len() >= MIN_CASES, "the corpus must hold at least {MIN_CASES} cases, found {}", outcomes.len());
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
