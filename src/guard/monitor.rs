//! The guard's thread: reads the device every `guard.poll_interval_s` and acts on the running and the held
//! jobs. It ticks faster than it polls so it notices shutdown, and settles the jobs it stopped, promptly.
use super::thermal::{self, Change};
use super::{Guard, HoldKind, MIB, lock, mb};
use crate::jobs::{Job, JobQueue, JobState, ModelStatus};
use crate::ml::PauseGate;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::TryRecvError;

const TICK: Duration = Duration::from_millis(100);

/// What the monitor remembers between polls.
#[derive(Default)]
struct Memo {
    /// The running job and when the current heat pause started holding it.
    paused_job: Option<(String, Instant)>,
    /// Jobs already stopped, so each is stopped (and announced) once.
    stopped: HashSet<String>,
    /// (job, model type) pairs whose oversize warning went out on the bus.
    oversize_sent: HashSet<(String, String)>,
    /// Live throttle bits last seen, to announce changes only.
    throttle_now: Option<u32>,
}

pub(super) fn run(guard: &Arc<Guard>, queue: &Arc<JobQueue>, gate: &Arc<PauseGate>, poll: Duration) {
    let mut jobs = queue.subscribe();
    let mut memo = Memo::default();
    let mut last_poll: Option<Instant> = None;
    while !queue.is_stopping() {
        if last_poll.is_none_or(|t| t.elapsed() >= poll) {
            last_poll = Some(Instant::now());
            let readings = guard.poll();
            thermal(guard, queue, gate, &readings, &mut memo);
            throttle(guard, &readings, &mut memo);
            memory(guard, queue, &readings, &mut memo);
            held(guard, queue);
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => oversize(guard, &job, &mut memo),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        std::thread::sleep(TICK);
    }
    tracing::debug!("resource guard stopped");
}

fn thermal(guard: &Guard, queue: &JobQueue, gate: &PauseGate, r: &super::Readings, memo: &mut Memo) {
    let cfg = &guard.cfg;
    let now = Instant::now();
    let change = {
        let st = lock(&guard.status);
        thermal::step(st.paused.as_ref(), r.temperature_c, cfg.temp_pause_c, cfg.temp_resume_c, now)
    };
    let running = queue.running();
    match change {
        Some(Change::Pause(p)) => {
            tracing::warn!(temperature_c = p.at_c, limit_c = cfg.temp_pause_c, "SoC too hot: training pauses at its next safe point");
            gate.pause(p.reason.clone());
            guard.bus.emit(
                "thermal_pause",
                json!({ "temperature_c": p.at_c, "temp_pause_c": cfg.temp_pause_c, "temp_resume_c": cfg.temp_resume_c, "task_id": running.as_ref().map(|j| j.id.clone()), "reason": p.reason }),
            );
            lock(&guard.status).paused = Some(p);
        }
        Some(Change::Resume { after, temperature_c }) => {
            match temperature_c {
                Some(t) => tracing::info!(temperature_c = t, paused_s = after.as_secs_f64(), "SoC cooled down: training resumes"),
                None => tracing::warn!(paused_s = after.as_secs_f64(), "SoC temperature no longer readable: training resumes"),
            }
            lock(&guard.status).paused = None;
            gate.resume();
            memo.paused_job = None;
            guard.bus.emit(
                "thermal_resume",
                json!({ "temperature_c": temperature_c, "paused_s": after.as_secs_f64(), "task_id": running.as_ref().map(|j| j.id.clone()) }),
            );
        }
        None => {}
    }
    // Warm but not yet at the pause limit: fewer threads make less heat (taken at the next model/candidate).
    let warm = r.temperature_c.is_some_and(|t| t >= cfg.temp_resume_c);
    gate.set_thread_cap(warm.then_some(cfg.hot_threads));
    let Some(paused) = lock(&guard.status).paused.clone() else { return };
    let Some(job) = running else { return };
    let since = match &memo.paused_job {
        Some((id, since)) if *id == job.id => *since,
        // A job that started during this pause is charged from now, not from the pause's start.
        Some(_) => now,
        None => paused.since,
    };
    memo.paused_job = Some((job.id.clone(), since));
    let held = now.saturating_duration_since(since);
    if held.as_secs() >= cfg.pause_max_s && memo.stopped.insert(job.id.clone()) {
        let t = r.temperature_c.unwrap_or(paused.at_c);
        let reason = format!(
            "stopped by the resource guard: paused for heat for {:.0} s (SoC {t:.0} °C, resumes below {} °C), longer than guard.pause_max_s = {} s; improve the Pi's cooling or train at a cooler time",
            held.as_secs_f64(),
            cfg.temp_resume_c,
            cfg.pause_max_s
        );
        guard.bus.emit(
            "thermal_abort",
            json!({ "task_id": job.id, "machine_id": job.request.machine_id, "temperature_c": t, "paused_s": held.as_secs_f64(), "pause_max_s": cfg.pause_max_s }),
        );
        abort(queue, &job.id, reason);
    }
}

fn throttle(guard: &Guard, r: &super::Readings, memo: &mut Memo) {
    let Some(t) = r.throttle else { return };
    let live = t.raw & 0xf;
    if memo.throttle_now == Some(live) {
        return;
    }
    if live != 0 {
        tracing::warn!(raw = format!("0x{:x}", t.raw), "Raspberry Pi firmware reports: {}", t.now.describe());
    }
    if memo.throttle_now.is_some() || live != 0 {
        guard.bus.emit(
            "throttle",
            json!({ "raw": format!("0x{:x}", t.raw), "now": t.now, "since_boot": t.since_boot, "summary": t.now.describe() }),
        );
    }
    memo.throttle_now = Some(live);
}

fn memory(guard: &Guard, queue: &JobQueue, r: &super::Readings, memo: &mut Memo) {
    let (Some(rss), Some(job)) = (r.memory.rss_bytes, queue.running()) else { return };
    let limit = guard.abort_bytes(r);
    if rss <= limit || !memo.stopped.insert(job.id.clone()) {
        return;
    }
    let available = r.memory.headroom_bytes().map_or_else(|| "unknown".to_string(), |b| format!("{} MB", b / MIB));
    let reason = format!(
        "stopped by the resource guard: the daemon used {} MB, over its limit of {} MB (guard.memory_abort_mb = {}), with {available} available; train fewer rows, sensors or model types at once",
        mb(rss),
        limit / MIB,
        guard.cfg.memory_abort_mb
    );
    tracing::warn!(task_id = %job.id, rss_mb = mb(rss), limit_mb = limit / MIB, "memory limit passed: stopping the running job");
    guard.bus.emit(
        "memory_abort",
        json!({ "task_id": job.id, "machine_id": job.request.machine_id, "rss_mb": mb(rss), "limit_mb": limit / MIB, "memory_abort_mb": guard.cfg.memory_abort_mb }),
    );
    abort(queue, &job.id, reason);
}

/// Held jobs that waited too long fail; a job held for disk fails at once, since space rarely frees itself.
fn held(guard: &Guard, queue: &JobQueue) {
    let holds: Vec<(String, super::Hold)> = lock(&guard.status).held.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (id, hold) in holds {
        let pending = queue.get(&id).is_some_and(|j| j.state == JobState::Pending);
        let waited = hold.since.elapsed();
        let fail = pending && (hold.kind == HoldKind::Disk || waited.as_secs() >= guard.cfg.wait_max_s);
        if pending && !fail {
            continue;
        }
        lock(&guard.status).held.remove(&id);
        if !fail {
            continue;
        }
        let message = match hold.kind {
            HoldKind::Disk => format!("refused by the resource guard: {}", hold.reason),
            _ => format!(
                "refused by the resource guard after waiting {:.0} s (guard.wait_max_s = {}): {}",
                waited.as_secs_f64(),
                guard.cfg.wait_max_s,
                hold.reason
            ),
        };
        let outcome = queue.update(&id, true, |j| {
            // The runner may have started it since the check above; only a job still waiting is failed.
            if j.state == JobState::Pending {
                j.log(format!("ended: {message}"));
                j.progress.stage = "failure".into();
                for m in j.progress.models.values_mut() {
                    m.status = ModelStatus::Skipped;
                }
                j.finish(JobState::Failure, Some(message.clone()));
            }
        });
        match outcome {
            Ok(j) if j.state == JobState::Failure => {
                tracing::warn!(task_id = %id, "{message}");
                let mut data =
                    json!({ "task_id": id, "machine_id": j.request.machine_id, "reason": message, "waited_s": waited.as_secs_f64() });
                if let (Some(d), serde_json::Value::Object(n)) = (data.as_object_mut(), hold.numbers) {
                    d.extend(n);
                }
                guard.bus.emit("job_refused", data);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(task_id = %id, error = %e, "could not fail a held job"),
        }
    }
}

/// Stops a running job so that it ends FAILURE with `reason` (not REVOKED: nobody asked to cancel it).
fn abort(queue: &JobQueue, id: &str, reason: String) {
    tracing::warn!(task_id = %id, "{reason}");
    if !queue.abort(id, reason) {
        tracing::info!(task_id = %id, "the job ended before the guard could stop it");
    }
}

/// The registry flags oversize models in the job; the bus carries it to MQTT and the log.
fn oversize(guard: &Guard, job: &Job, memo: &mut Memo) {
    for (t, m) in &job.progress.models {
        let new = m.oversize && m.status == ModelStatus::Success && memo.oversize_sent.insert((job.id.clone(), t.clone()));
        if !new {
            continue;
        }
        guard.bus.emit(
            "model_oversize",
            json!({ "task_id": job.id, "machine_id": job.request.machine_id, "model_type": t, "version": m.version, "size_bytes": m.size_bytes, "warning": m.warning }),
        );
    }
    if memo.oversize_sent.len() > 10_000 {
        memo.oversize_sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::jobs::JobRequest;
    use crate::lifecycle::{Bus, BusEvent};
    use crate::ml::{ModelType, TrainParams};
    use crate::store::SledStore;

    fn setup(dir: &std::path::Path) -> (Arc<Guard>, Arc<JobQueue>, tokio::sync::broadcast::Receiver<BusEvent>) {
        let mut cfg = Config { state_dir: dir.join("state"), data_dir: dir.join("data"), ..Config::default() };
        cfg.guard.sysfs_root = dir.join("root");
        let bus = Bus::new();
        let rx = bus.subscribe();
        let (q, _) = JobQueue::open(Arc::new(SledStore::open(&dir.join("jobs")).unwrap()), 5, 10, false).unwrap();
        (Guard::new(&cfg, bus, Arc::new(crate::data::Summaries::new(&cfg.data_dir, cfg.data.caps()))), Arc::new(q), rx)
    }

    fn request() -> JobRequest {
        JobRequest {
            machine_id: "m1".into(),
            model_types: vec![ModelType::Anomaly, ModelType::Timeseries],
            params: TrainParams::default(),
            origin: Default::default(),
        }
    }

    #[test]
    fn an_oversize_model_goes_out_on_the_bus_once() {
        let d = tempfile::tempdir().unwrap();
        let (guard, queue, mut rx) = setup(d.path());
        let mut job = queue.submit(request()).unwrap();
        let m = job.progress.models.get_mut("anomaly").unwrap();
        (m.status, m.oversize, m.version, m.size_bytes, m.warning) =
            (ModelStatus::Success, true, Some(3), Some(600 << 20), Some("model is 600.0 MB".into()));
        let mut memo = Memo::default();
        oversize(&guard, &job, &mut memo);
        oversize(&guard, &job, &mut memo);
        let e = rx.try_recv().unwrap();
        assert_eq!(e.kind, "model_oversize");
        assert_eq!(
            (e.data["model_type"].as_str(), e.data["version"].as_u64(), e.data["machine_id"].as_str()),
            (Some("anomaly"), Some(3), Some("m1"))
        );
        assert!(rx.try_recv().is_err(), "announced once, not on every job update");
    }

    #[test]
    fn a_stopped_job_is_flagged_with_its_reason_and_told_to_stop() {
        let d = tempfile::tempdir().unwrap();
        let (_guard, queue, _rx) = setup(d.path());
        let job = queue.submit(request()).unwrap();
        let (_, cancel) = queue.next(&|_| None).unwrap();
        abort(&queue, &job.id, "stopped by the resource guard: too much memory".into());
        assert!(cancel.load(std::sync::atomic::Ordering::SeqCst), "the runner is told to stop");
        assert_eq!(queue.abort_reason(&job.id).as_deref(), Some("stopped by the resource guard: too much memory"));
        queue.release(&job.id);
        assert_eq!(queue.abort_reason(&job.id), None, "the reason goes with the job");
    }

    #[test]
    fn a_job_that_is_not_running_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let (_guard, queue, _rx) = setup(d.path());
        let job = queue.submit(request()).unwrap();
        abort(&queue, &job.id, "too hot".into());
        assert_eq!(queue.get(&job.id).unwrap().state, JobState::Pending);
        assert_eq!(queue.abort_reason(&job.id), None);
    }
}
