//! The runner: one dedicated thread (never an async worker) that takes jobs in submission order and trains
//! each model of the batch, reporting real progress into the job and saving finished models to the registry.
use super::job::{Job, JobOrigin, JobState, ModelResult, ModelStatus, Promote};
use super::queue::{IDLE_TURN, JobQueue, Next};
use crate::data::{self, MachineId};
use crate::lifecycle::Heartbeat;
use crate::ml::{self, Event, MlError, ModelType, PauseGate, TrainContext};
use crate::registry::{PinBy, Registry, SaveAs};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each model's outcome by its type's name, in name order: the job result's `results`.
type Results = BTreeMap<String, ModelResult>;

/// A submission the resource guard refuses outright: (message, numbers).
pub type Refusal = (String, serde_json::Value);

/// Why a job should wait before starting (the resource guard plugs in here).
pub type Admission = Arc<dyn Fn(&Job) -> Option<String> + Send + Sync>;

pub struct Runner {
    pub queue: Arc<JobQueue>,
    pub registry: Arc<Registry>,
    pub data_dir: PathBuf,
    /// `[data]` caps: a machine past `max_rows` is refused by the loader too, not only at submission.
    pub data_caps: crate::data::Caps,
    /// `[data]` grid: readings finer than it are aggregated before training.
    pub grid: crate::data::grid::GridSetting,
    pub gate: Arc<PauseGate>,
    /// The runner's last sign of life, for the watchdog.
    pub heartbeat: Heartbeat,
    pub admit: Admission,
    /// Requeue the running job when the daemon stops it.
    pub requeue_on_shutdown: bool,
}

impl Runner {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        // A job held at the pause gate waits there, not in this loop: the gate's wait beats for it.
        self.gate.beat_into(self.heartbeat.shared());
        std::thread::Builder::new().name("millwright-runner".into()).spawn(move || self.run())
    }

    /// The heartbeat is bumped on every turn of this loop (at least every IDLE_TURN while idle, held by the
    /// guard or not), so it means "this thread is alive and turning", which is what the watchdog asks.
    fn run(self) {
        loop {
            self.heartbeat.beat();
            crate::util::failpoint::hit("runner.idle");
            let (job, cancel) = match self.queue.next_within(self.admit.as_ref(), IDLE_TURN) {
                Next::Start(job, cancel) => (*job, cancel),
                Next::Idle => continue,
                Next::Stopping => break,
            };
            self.heartbeat.beat();
            let id = job.id.clone();
            let span = tracing::info_span!("job", task_id = %id, machine_id = %job.request.machine_id);
            let _g = span.enter();
            tracing::info!(models = ?job.request.model_types, "job started");
            self.run_job(job, cancel);
            self.queue.release(&id);
            crate::util::release_freed_memory();
        }
        tracing::info!("job runner stopped");
    }

    fn run_job(&self, job: Job, cancel: Arc<AtomicBool>) {
        let id = job.id.clone();
        let request = job.request.clone();
        let started = Instant::now();
        let table = match data::load_machine_gridded(&self.data_dir, &request.machine_id, &self.data_caps, &self.grid) {
            Ok(t) => t,
            Err(e) => return self.finish(&id, JobState::Failure, Some(format!("cannot load machine data: {e}")), None),
        };
        if let JobOrigin::Schedule { reason, .. } = &request.origin {
            self.update(&id, true, |j| j.log(format!("queued by the machine's retrain schedule: {reason}")));
        }
        if let Some(g) = &table.grid {
            tracing::info!(raw_rows = g.raw_rows, rows = g.rows, step_s = g.grid.step_s, "{}", g.why);
            self.update(&id, true, |j| j.log(g.why.clone()));
        }
        let Ok(machine) = MachineId::parse(&request.machine_id) else {
            return self.finish(&id, JobState::Failure, Some("invalid machine id".into()), None);
        };
        let n = request.model_types.len();
        let shares = self.queue.read_newest_first(|jobs| time_shares(jobs, &request.machine_id, &request.model_types));
        let mut results = BTreeMap::new();
        let mut revoked = false;
        let mut succeeded = 0;
        for (i, t) in request.model_types.iter().enumerate() {
            if cancel.load(Ordering::SeqCst) {
                revoked = true;
                break;
            }
            self.update(&id, true, |j| {
                j.state = JobState::Progress;
                j.progress.model_type = Some(*t);
                j.progress.batch_index = i;
                if let Some(m) = j.progress.models.get_mut(t.as_str()) {
                    m.status = ModelStatus::Progress;
                }
                j.log(format!("training {t} ({}/{n})", i + 1));
            });
            let t0 = Instant::now();
            // A bug in a trainer must fail this model, not kill the runner thread and strand the queue.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let done_before: f64 = shares[..i].iter().sum();
                self.train_one(&id, *t, &table, &request.params, &cancel, (done_before, shares[i]), started)
            }))
            .unwrap_or_else(|panic| {
                Err(MlError::Invalid(format!(
                    "training {t} hit an internal error ({}); please report it with the job log",
                    crate::util::panic_message(panic.as_ref())
                )))
            });
            let secs = t0.elapsed().as_secs_f64();
            match outcome {
                Ok(mut trained) => {
                    let compared = self.compare_with_live(&machine, *t, &table, &request.params, &trained);
                    if let Some(c) = &compared {
                        tracing::info!(model_type = %t, "compared with the live model: {}", c.sentence());
                        self.update(&id, false, |j| j.log(format!("{t}: {}", c.sentence())));
                    }
                    trained.report.champion = compared;
                    let how = self.save_as(&request, *t, trained.report.champion.as_ref());
                    match self.registry.save_as(&machine, &mut trained, &id, how) {
                        Ok(info) => {
                            succeeded += 1;
                            tracing::info!(model_type = %t, version = info.version, size_bytes = info.size_bytes, seconds = secs, "model saved");
                            if let Some(w) = &info.warning {
                                tracing::warn!(model_type = %t, "{w}");
                            }
                            let metrics = json!({ "headline": trained.report.headline, "test": trained.report.metrics, "champion": trained.report.champion });
                            let done = ModelResult::Completed {
                                version: info.version,
                                live: info.live,
                                size_bytes: info.size_bytes,
                                oversize: info.oversize,
                                warning: info.warning.clone(),
                                metrics: metrics.clone(),
                                train_seconds: secs,
                            };
                            let status = done.status();
                            results.insert(t.as_str().into(), done);
                            self.update(&id, true, |j| {
                                if let Some(m) = j.progress.models.get_mut(t.as_str()) {
                                    m.status = status;
                                    m.progress_percent = 100.0;
                                    m.metrics = Some(metrics);
                                    m.version = Some(info.version);
                                    m.size_bytes = Some(info.size_bytes);
                                    m.oversize = info.oversize;
                                    m.warning = info.warning.clone();
                                    m.seconds = Some(secs);
                                }
                                j.log(format!("{t} done in {secs:.1} s: version {} ({} bytes)", info.version, info.size_bytes));
                                if !info.live {
                                    j.log(format!(
                                        "{t} version {} is kept but not live: the version it was compared with goes on answering",
                                        info.version
                                    ));
                                }
                                if let Some(w) = &info.warning {
                                    j.log(format!("WARNING: {w}"));
                                }
                            });
                        }
                        Err(e) => self.model_failed(&id, *t, format!("saving the model failed: {e}"), &mut results),
                    }
                }
                Err(MlError::Cancelled) => {
                    revoked = true;
                    self.update(&id, true, |j| {
                        if let Some(m) = j.progress.models.get_mut(t.as_str()) {
                            m.status = ModelStatus::Revoked;
                        }
                        j.log(format!("{t} cancelled; no partial model was kept"));
                    });
                    break;
                }
                Err(e) => self.model_failed(&id, *t, e.to_string(), &mut results),
            }
        }
        let result = json!({ "machine_id": request.machine_id, "models_trained": succeeded, "complete_system": request.complete_system(), "results": results, "seconds": started.elapsed().as_secs_f64() });
        let aborted = if revoked { self.queue.abort_reason(&id) } else { None };
        if let Some(reason) = aborted {
            self.update(&id, true, |j| {
                for m in j.progress.models.values_mut().filter(|m| m.status == ModelStatus::Revoked) {
                    m.status = ModelStatus::Failure;
                    m.error = Some(reason.clone());
                }
            });
            self.finish(&id, JobState::Failure, Some(reason), Some(result));
        } else if revoked {
            let shutting_down = self.queue.is_stopping();
            let msg = if shutting_down { "interrupted by shutdown" } else { "cancelled" };
            self.finish(&id, if shutting_down { JobState::Failure } else { JobState::Revoked }, Some(msg.into()), Some(result));
            if shutting_down && self.requeue_on_shutdown {
                match self.queue.requeue_copy(&id) {
                    Ok(Some(copy)) => tracing::info!(new_task = %copy.id, "interrupted job queued again"),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "could not requeue the interrupted job"),
                }
            }
        } else if succeeded < n {
            // A batch is one request for a complete system: any model that failed fails the job, so neither a
            // client polling the state nor the MQTT event reports success for a system that is not whole.
            // The models that did train are saved and live, and the message says which.
            self.finish(&id, JobState::Failure, Some(batch_failure(&results, succeeded, n)), Some(result));
        } else {
            self.finish(&id, JobState::Success, None, Some(result));
        }
    }

    /// A person's job makes its models live; a scheduled one leaves a version a person pinned answering,
    /// and with `promote = if_not_worse` the live model too when the new one scored worse on the same rows.
    fn save_as(&self, request: &crate::jobs::JobRequest, t: ModelType, compared: Option<&ml::compare::Comparison>) -> SaveAs {
        let JobOrigin::Schedule { promote, .. } = &request.origin else { return SaveAs::Live };
        if let Ok(Some(pin)) = self.registry.pinned(&request.machine_id, t)
            && pin.by == PinBy::Person
        {
            return SaveAs::KeepLive { reason: format!("pinned by a person: {}", pin.reason) };
        }
        match compared {
            Some(c) if *promote == Promote::IfNotWorse && !c.not_worse => {
                SaveAs::KeepLive { reason: format!("a scheduled retrain scored worse: {}", c.sentence()) }
            }
            _ => SaveAs::Live,
        }
    }

    /// The new model beside the live one on its held-out rows; `None` when nothing is live. A comparison that
    /// fails inside is no reason to lose the model: it is logged and skipped.
    fn compare_with_live(
        &self,
        machine: &MachineId,
        t: ModelType,
        table: &data::Table,
        params: &ml::TrainParams,
        trained: &ml::Trained,
    ) -> Option<ml::compare::Comparison> {
        let (info, live) = match self.registry.load_live(machine.as_str(), t) {
            Ok(Some(live)) => live,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(model_type = %t, error = %e, "the live model could not be loaded to compare with");
                return None;
            }
        };
        let rows = &trained.report.test_rows;
        let seen = self
            .registry
            .report(machine.as_str(), t, Some(info.version))
            .map(|r| ml::compare::ChampionData::from_report(&r))
            .unwrap_or_default();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ml::compare::compare(table, params, rows, &trained.payload, (&live.payload, info.version, seen))
        }))
        .map_err(|panic| tracing::error!(model_type = %t, "comparing with the live model failed: {}", crate::util::panic_message(panic.as_ref())))
        .ok()
    }

    #[allow(clippy::too_many_arguments)]
    fn train_one(
        &self,
        id: &str,
        t: ModelType,
        table: &data::Table,
        params: &ml::TrainParams,
        cancel: &Arc<AtomicBool>,
        span: (f64, f64),
        started: Instant,
    ) -> Result<ml::Trained, MlError> {
        let queue = self.queue.clone();
        let job_id = id.to_string();
        let heartbeat = self.heartbeat.clone();
        let last_stage = Mutex::new(String::new());
        let warned = AtomicBool::new(false);
        let model_started = Instant::now();
        let before_s = model_started.duration_since(started).as_secs_f64();
        let sink = Arc::new(move |e: &Event| {
            heartbeat.beat();
            let result = queue.update(&job_id, false, |j| match e {
                Event::Progress { fraction, stage, message } => {
                    // This model's span of the job: where it starts and its share of the time.
                    let overall = span.0 + span.1 * fraction;
                    let pct = (overall * 100.0).max(j.progress.progress_percent).min(100.0);
                    j.progress.current = pct;
                    j.progress.progress_percent = pct;
                    j.progress.stage = stage.clone();
                    j.progress.message = message.clone();
                    j.progress.eta_seconds = eta(span, *fraction, before_s, model_started.elapsed().as_secs_f64());
                    if let Some(m) = j.progress.models.get_mut(t.as_str()) {
                        m.progress_percent = (fraction * 100.0).max(m.progress_percent);
                    }
                    if let Ok(mut last) = last_stage.lock()
                        && *last != *stage
                    {
                        tracing::info!(model_type = %t, stage = %stage, "{message}");
                        *last = stage.clone();
                    }
                }
                Event::Log { line } => j.log(format!("[{t}] {line}")),
                Event::Leaderboard { row } => {
                    let mut row = row.clone();
                    row.model = format!("{t}: {}", row.model);
                    j.leaderboard.push(row);
                }
            });
            if let Err(err) = result {
                // Once per model: on a full disk this would repeat five times a second.
                if warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %err, "could not record progress");
                } else {
                    tracing::warn!(error = %err, "could not record progress (said once per model)");
                }
            }
        });
        let limit = Duration::from_secs_f64(params.time_limit_s);
        let ctx = TrainContext::new(sink, cancel.clone(), self.gate.clone(), limit, params.threads);
        ml::train(t, table, params, &ctx)
    }

    fn model_failed(&self, id: &str, t: ModelType, error: String, results: &mut Results) {
        tracing::warn!(model_type = %t, error = %error, "model failed");
        let failed = ModelResult::Failed { error: error.clone() };
        let status = failed.status();
        results.insert(t.as_str().into(), failed);
        self.update(id, true, |j| {
            if let Some(m) = j.progress.models.get_mut(t.as_str()) {
                m.status = status;
                m.error = Some(error.clone());
            }
            j.log(format!("{t} failed: {error}"));
        });
    }

    fn update(&self, id: &str, durable: bool, change: impl FnOnce(&mut Job)) {
        if let Err(e) = self.queue.update(id, durable, change) {
            tracing::error!(error = %e, "could not record a job change");
        }
    }

    fn finish(&self, id: &str, state: JobState, error: Option<String>, result: Option<serde_json::Value>) {
        tracing::info!(state = ?state, error = error.as_deref().unwrap_or(""), "job finished");
        self.update(id, true, |j| {
            if state == JobState::Success {
                j.progress.progress_percent = 100.0;
                j.progress.current = 100.0;
                j.progress.eta_seconds = Some(0.0);
            }
            j.progress.stage = format!("{state:?}").to_lowercase();
            if let Some(e) = &error {
                j.log(format!("ended: {e}"));
            }
            j.result = result;
            j.finish(state, error);
        });
    }
}

/// Seconds left in the job, or None while there is nothing to go on. `span`: the share of the job done
/// before this model and this model's share; `before_s`: seconds the job took before this model.
///
/// A model's progress is not linear in time (features take a moment, the search most of it), so the pace
/// comes from the models already finished, or, for the first, from itself once it is half done; the model
/// running is given at least its expected time, or its own pace once it is half done and slower.
fn eta(span: (f64, f64), fraction: f64, before_s: f64, in_model_s: f64) -> Option<f64> {
    let (done, share) = span;
    let after = (1.0 - done - share).max(0.0);
    let per_share = if done > 0.0 {
        before_s / done
    } else if fraction >= 0.5 && share > 0.0 {
        in_model_s / fraction / share
    } else {
        return None;
    };
    let expected = per_share * share;
    let mut current = (expected - in_model_s).max(expected * (1.0 - fraction));
    if fraction >= 0.5 {
        // Past half of it, a model slower than expected is believed about itself.
        current = current.max(in_model_s * (1.0 - fraction) / fraction);
    }
    Some(current + per_share * after).filter(|s| s.is_finite())
}

/// Seconds of classification, RUL, anomaly and forecast at the default quality: the median over the ten demo
/// machines (`millwright simulate`, then `millwright train <id>` for each, `ci-pi` build, 2 cores; measured
/// again when column screening made the first two 3–4× faster and the forecaster's median candidates made
/// it slower; the forecaster's share of a job ranges from 0.20 to 0.42 between the ten). Only their ratios
/// matter.
const TYPICAL_S: [f64; 4] = [2.21, 1.17, 0.25, 1.6];

/// What a machine's first job moves its bar by, per model.
fn typical_seconds(t: ModelType) -> f64 {
    match t {
        ModelType::Classification => TYPICAL_S[0],
        ModelType::Regression => TYPICAL_S[1],
        ModelType::Anomaly => TYPICAL_S[2],
        ModelType::Timeseries => TYPICAL_S[3],
    }
}

/// Each model's share of the job's time, so the bar moves with time and the ETA holds from the start:
/// equal shares made it 2.5–3× too long early on, because the first two models take most of the time. A
/// model's time is the one it took in this machine's latest job that trained it, else [`typical_seconds`].
fn time_shares(history: &[&Job], machine: &str, types: &[ModelType]) -> Vec<f64> {
    let secs: Vec<f64> = types
        .iter()
        .map(|t| {
            history
                .iter()
                .filter(|j| j.request.machine_id == machine)
                .find_map(|j| j.progress.models.get(t.as_str()).filter(|m| m.status == ModelStatus::Success).and_then(|m| m.seconds))
                .filter(|s| s.is_finite() && *s > 0.0)
                // A model that took no measurable time still moves the bar.
                .map_or_else(|| typical_seconds(*t), |s| s.max(0.05))
        })
        .collect();
    let total: f64 = secs.iter().sum();
    secs.iter().map(|s| s / total).collect()
}

/// "classification: only one class …" for each failed model, then which models were kept (if any).
fn batch_failure(results: &Results, succeeded: usize, n: usize) -> String {
    let errors: Vec<String> = results
        .iter()
        .filter_map(|(k, r)| match r {
            ModelResult::Failed { error } => Some(format!("{k}: {error}")),
            ModelResult::Completed { .. } => None,
        })
        .collect();
    let kept: Vec<&str> = results.iter().filter(|(_, r)| matches!(r, ModelResult::Completed { .. })).map(|(k, _)| k.as_str()).collect();
    let mut msg = errors.join("; ");
    if succeeded > 0 {
        msg.push_str(&format!(" ({} of {n} models failed; {} trained and live)", n - succeeded, kept.join(", ")));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partly_failed_batch_names_the_failures_and_the_kept_models() {
        let mut r = Results::new();
        r.insert("classification".into(), ModelResult::Failed { error: "only one class".into() });
        let done = ModelResult::Completed {
            version: 1,
            live: true,
            size_bytes: 1,
            oversize: false,
            warning: None,
            metrics: serde_json::Value::Null,
            train_seconds: 1.0,
        };
        r.insert("anomaly".into(), done);
        let msg = batch_failure(&r, 1, 2);
        assert_eq!(msg, "classification: only one class (1 of 2 models failed; anomaly trained and live)");
        r.remove("anomaly");
        assert_eq!(batch_failure(&r, 0, 1), "classification: only one class");
    }

    fn job_with(machine: &str, seconds: &[(ModelType, ModelStatus, f64)]) -> Job {
        let mut j = Job::new(
            "id".into(),
            1,
            super::super::job::JobRequest {
                machine_id: machine.into(),
                model_types: ModelType::ALL.to_vec(),
                params: Default::default(),
                origin: Default::default(),
            },
        );
        for (t, status, s) in seconds {
            let m = j.progress.models.entry(t.as_str().into()).or_default();
            m.status = *status;
            m.seconds = Some(*s);
        }
        j
    }

    #[test]
    fn eta_paces_on_finished_models_and_waits_for_half_of_the_first() {
        // The first model (half the job) a quarter done: its progress says little yet.
        assert_eq!(eta((0.0, 0.5), 0.25, 0.0, 1.0), None);
        // Half done after 4 s: 4 s more for it, 8 s for the rest.
        assert_eq!(eta((0.0, 0.5), 0.5, 0.0, 4.0), Some(12.0));
        // Half the job took 8 s; the next model (a quarter) just started: 4 s for it and 4 s after.
        assert_eq!(eta((0.5, 0.25), 0.2, 8.0, 0.0), Some(8.0));
        // Running slower than expected: what its own progress says is kept.
        assert_eq!(eta((0.5, 0.25), 0.5, 8.0, 6.0), Some(6.0 + 4.0));
    }

    #[test]
    fn time_shares_follow_the_machines_last_job_else_the_typical_times() {
        let all = ModelType::ALL;
        let typical = time_shares(&[], "m", &all);
        assert!((typical.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // The first model of four is about half the job, not a quarter: the early ETA is no longer 2-3x long.
        assert!(typical[0] > 0.4 && typical[2] < 0.05, "{typical:?}");
        let history = [
            job_with("other", &[(ModelType::Anomaly, ModelStatus::Success, 100.0)]),
            job_with("m", &[(ModelType::Anomaly, ModelStatus::Failure, 50.0), (ModelType::Classification, ModelStatus::Success, 7.5)]),
            job_with("m", &[(ModelType::Anomaly, ModelStatus::Success, 7.5)]),
        ];
        let history: Vec<&Job> = history.iter().collect();
        let s = time_shares(&history, "m", &[ModelType::Classification, ModelType::Anomaly]);
        assert_eq!(s, vec![0.5, 0.5], "this machine's own successful times, newest first");
        assert_eq!(time_shares(&[], "m", &[ModelType::Timeseries]), vec![1.0]);
    }
}
