//! Request bodies, path segments and queries through the real router, in-process (the way the MQTT bridge
//! calls it), and MQTT request payloads through `parse_payload` → `to_call` → `dispatch`. Every answer must
//! be a JSON error shape or a success, never a 5xx: bad input is the client's fault and must say so.
//!
//! Input: byte 0 picks the route; then `segment\n` (a machine id, task id or model type, percent-encoded
//! into the path as a client would), then `query\n` for GET routes, then the body.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use millwright::api::{Access, AppState, Hooks, HttpLimits, Setup, TrainingLimits, router};
use millwright::jobs::JobQueue;
use millwright::ml::TrainParams;
use millwright::mqtt::requests::{Answerer, NAMES, dispatch, parse_payload, response, to_call};
use millwright::registry::Registry;
use millwright::store::{RecordStore, StoreError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";
/// The route table: (method, path template); `{s}` is the fuzzed segment, `{q}` the fuzzed query.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/ml/train/classification"),
    ("POST", "/api/ml/train/regression"),
    ("POST", "/api/ml/train/anomaly"),
    ("POST", "/api/ml/train/timeseries"),
    ("POST", "/api/ml/train/batch"),
    ("POST", "/api/ml/predict/{s}"),
    ("POST", "/api/ml/tasks/{s}/cancel"),
    ("GET", "/api/ml/tasks/{s}"),
    ("GET", "/api/ml/tasks?{q}"),
    ("GET", "/api/ml/models/{s}"),
    ("GET", "/api/ml/models/m1/{s}?{q}"),
    ("GET", "/api/ml/models/{s}/anomaly/download?{q}"),
    ("DELETE", "/api/ml/models/{s}/regression?{q}"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/machines/{s}/readings"),
    ("GET", "/api/machines/{s}/readings"),
    // The one machine there is: the body reaches the row checks and the log.
    ("POST", "/api/machines/m1/readings"),
];

/// The job store in memory: the queue's persistence is not what is fuzzed here.
#[derive(Default)]
struct MemStore(Mutex<BTreeMap<u64, Vec<u8>>>);

impl RecordStore for MemStore {
    fn put(&self, key: u64, value: &[u8]) -> Result<(), StoreError> {
        self.0.lock().map_err(|e| StoreError::Io(e.to_string()))?.insert(key, value.to_vec());
        Ok(())
    }
    fn remove(&self, key: u64) -> Result<(), StoreError> {
        self.0.lock().map_err(|e| StoreError::Io(e.to_string()))?.remove(&key);
        Ok(())
    }
    fn scan(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self.0.lock().map_err(|e| StoreError::Io(e.to_string()))?.iter().map(|(k, v)| (*k, v.clone())).collect())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
}

/// One daemon for the whole run: a data folder with one small machine `m1` (so valid requests get past
/// the machine check and reach the queue), an empty registry, a queue of capacity 3 and no runner.
fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("millwright-fuzz-requests-{}", std::process::id()));
        let machine = root.join("data/machines/m1");
        std::fs::create_dir_all(&machine).expect("fuzz data dir");
        let mut csv = String::from("timestamp,rul,temp_C,vib_mm_s\n");
        for i in 0..48 {
            csv.push_str(&format!(
                "{},{},{},{}\n",
                1_600_000_000 + i * 3600,
                47 - i,
                20.0 + f64::from(i) * 0.1,
                1.0 + f64::from(i % 5) * 0.01
            ));
        }
        std::fs::write(machine.join("train.csv"), csv).expect("fuzz machine");
        let (queue, _) = JobQueue::open(Arc::new(MemStore::default()), 3, 10, false).expect("fuzz queue");
        let registry = Registry::open(&root.join("state"), 2, 50.0).expect("fuzz registry");
        let defaults = TrainParams { threads: 1, ..TrainParams::default() };
        let state = AppState::new(Setup {
            queue: Arc::new(queue),
            registry: Arc::new(registry),
            data_dir: root.join("data"),
            access: Access::new(TOKEN.into(), true, &[]),
            training: TrainingLimits { defaults, max_time_limit_s: 3600.0 },
            http: HttpLimits::default(),
            hooks: Hooks::default(),
        });
        let (readings, _) =
            millwright::ingest::Readings::open(&root.join("state/readings"), millwright::ingest::Tolerances::default()).expect("fuzz readings");
        // Unknown machines are not made from readings: each fuzzed id would leave a folder behind.
        let state = state.with_readings(Arc::new(readings), false);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("fuzz runtime");
        World { rt, app: router(state) }
    })
}

/// Percent-encodes everything but unreserved characters (and `keep`), as a client library would.
fn encode(bytes: &[u8], keep: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn check_answer(what: &str, status: StatusCode, body: &[u8]) {
    assert!(!status.is_server_error(), "{what}: {status} {}", String::from_utf8_lossy(body));
    if !status.is_success() {
        let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: {status} with a non-JSON body ({e})"));
        assert!(v["error"]["message"].is_string() && v["error"]["code"].is_string(), "{what}: error shape {v}");
    }
}

async fn http(app: &axum::Router, method: &str, path: &str, body: &[u8]) {
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()));
    // A URI the HTTP layer itself would refuse never reaches the handlers.
    let Ok(req) = req else { return };
    let Ok(resp) = app.clone().oneshot(req).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024).await.expect("fuzz body");
    check_answer(path, status, &bytes);
}

async fn mqtt(app: &axum::Router, name: &str, payload: &[u8]) {
    let (transaction, map) = parse_payload(payload);
    let call = map.and_then(|m| to_call(name, m));
    let result = match call {
        Ok(call) => {
            assert!(call.path.starts_with("/api/") && !call.path.contains(".."), "unchecked path {:?}", call.path);
            let result = dispatch(app, TOKEN, call.clone()).await;
            if let Err((r, _)) = &result {
                assert!(
                    !matches!(r.code, "internal" | "error" | "too_large"),
                    "mqtt {name} → {} {}: {}",
                    call.method,
                    call.path,
                    r.message
                );
            }
            result
        }
        Err(r) => Err((r, None)),
    };
    let me = Answerer { instance_id: "fuzz".into(), node_id: "fuzz".into() };
    let _ = response(result, transaction, &me);
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let w = world();
    let n = ROUTES.len() + NAMES.len();
    let pick = pick as usize % n;
    w.rt.block_on(async {
        if let Some(name) = NAMES.get(pick.wrapping_sub(ROUTES.len())) {
            mqtt(&w.app, name, rest).await;
            return;
        }
        let (method, template) = ROUTES[pick];
        let (segment, rest) = line(rest);
        let (query, body) = if template.contains("{q}") { line(rest) } else { (&[][..], rest) };
        let path = template.replace("{s}", &encode(segment, b"")).replace("{q}", &encode(query, b"=&"));
        http(&w.app, method, &path, body).await;
    });
});
