//! The ETA a job shows against the time it really takes. A test binary of its own: other jobs training
//! beside it would change its pace halfway and measure the neighbours, not the estimate.
mod common;
use common::{Daemon, fleet};
use serde_json::json;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(240);

/// Every ETA the job shows against the time it really took. Counting each model as a quarter of the job
/// made it 2.5–3× too long early (the first two models take most of the time); the progress inside a
/// model is not linear in time either, so an ETA only shows once there is something to go on.
#[test]
fn every_eta_a_job_shows_is_close_to_the_time_it_really_takes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fleet(&data, 1, 50_000);
    let d = Daemon::start(&data, &dir.path().join("state"), &[]);
    let m = d.get("/api/ml/train/machines/available").json()["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let r = d.post("/api/ml/train/batch", &json!({ "machine_id": m }));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    let mut shown: Vec<(Instant, f64, f64)> = Vec::new();
    let t0 = Instant::now();
    let end = loop {
        let t = d.get(&format!("/api/ml/tasks/{id}")).json();
        let pct = t["progress"]["progress_percent"].as_f64().unwrap_or(0.0);
        if let Some(eta) = t["progress"]["eta_seconds"].as_f64().filter(|_| t["status"] == "PROGRESS") {
            shown.push((Instant::now(), pct, eta));
        }
        if ["SUCCESS", "FAILURE", "REVOKED"].contains(&t["status"].as_str().unwrap_or("")) {
            assert_eq!(t["status"], "SUCCESS", "{t}");
            break Instant::now();
        }
        assert!(t0.elapsed() < LONG, "the job did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let total = end.duration_since(t0).as_secs_f64();
    let first = shown.first().map(|(at, pct, _)| (at.duration_since(t0).as_secs_f64(), *pct));
    eprintln!("job {total:.1} s; {} ETAs shown, the first at {first:?} (s, %)", shown.len());
    assert!(first.is_some_and(|(s, _)| s < total * 0.6), "no ETA until {first:?} of a {total:.1} s job");
    let mut worst = 1.0f64;
    for (at, pct, eta) in &shown {
        let actual = end.duration_since(*at).as_secs_f64();
        // The last seconds are all noise of the polling.
        if actual < 3.0 {
            continue;
        }
        let ratio = eta / actual;
        if (ratio - 1.0).abs() > (worst - 1.0).abs() {
            worst = ratio;
        }
        assert!((0.5..=2.0).contains(&ratio), "at {pct:.0} % the ETA said {eta:.1} s; the job took {actual:.1} s more");
    }
    eprintln!("worst ETA / actual: {worst:.2}");
}
