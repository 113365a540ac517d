//! What a trainer sees of the world while it runs: a progress sink, a cancel flag, a pause gate, a deadline
//! and a thread budget. Trainers call [`TrainContext::checkpoint`] at safe points (between boosting rounds,
//! trees, sensors); that is where cancel and pause take effect, so safe points must come well under a second apart.
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cancel was asked: what [`TrainContext::checkpoint`] returns at the next safe point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// One row of the live leaderboard: a candidate and its validation score (never a test score).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderRow {
    pub model: String,
    pub metric: String,
    pub validation_score: f64,
    pub chosen: bool,
    pub fit_seconds: f64,
    #[serde(default)]
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Progress { fraction: f64, stage: String, message: String },
    Log { line: String },
    Leaderboard { row: LeaderRow },
}

/// Holds training at safe points while closed (the resource guard closes it when the SoC is too hot).
#[derive(Default)]
pub struct PauseGate {
    reason: Mutex<Option<String>>,
    changed: Condvar,
    /// At most this many training threads while warm (0 = no cap); taken at the next candidate or model.
    thread_cap: std::sync::atomic::AtomicUsize,
    /// Bumped (epoch seconds) on every turn of a wait at the gate: a job held here is alive, for the watchdog.
    heartbeat: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
}

impl PauseGate {
    pub fn pause(&self, reason: impl Into<String>) {
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(reason.into());
        }
        self.changed.notify_all();
    }

    pub fn resume(&self) {
        if let Ok(mut r) = self.reason.lock() {
            *r = None;
        }
        self.changed.notify_all();
    }

    pub fn set_thread_cap(&self, cap: Option<usize>) {
        self.thread_cap.store(cap.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn thread_cap(&self) -> Option<usize> {
        Some(self.thread_cap.load(Ordering::Relaxed)).filter(|c| *c > 0)
    }

    /// Every later wait at this gate bumps `heartbeat` (the job runner's), so a paused job still shows its
    /// thread turns; only the first call counts.
    pub fn beat_into(&self, heartbeat: Arc<std::sync::atomic::AtomicU64>) {
        let _ = self.heartbeat.set(heartbeat);
    }

    pub fn paused_reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Waits up to `max` for a change; returns the reason if still paused.
    fn wait(&self, max: Duration) -> Option<String> {
        if let Some(beat) = self.heartbeat.get() {
            beat.store(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                Ordering::Relaxed,
            );
        }
        let Ok(guard) = self.reason.lock() else { return None };
        if guard.is_none() {
            return None;
        }
        match self.changed.wait_timeout(guard, max) {
            Ok((g, _)) => g.clone(),
            Err(_) => None,
        }
    }
}

pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

struct ProgressState {
    fraction: f64,
    stage: String,
    span: (f64, f64),
    last_emit: Option<Instant>,
}

/// Shared by the trainer and whoever watches it (CLI progress bar, job runner, tests).
pub struct TrainContext {
    sink: Sink,
    cancel: Arc<AtomicBool>,
    gate: Arc<PauseGate>,
    deadline: Instant,
    threads: usize,
    state: Mutex<ProgressState>,
}

/// Progress events closer together than this are folded (stage changes always go out at once).
const EMIT_EVERY: Duration = Duration::from_millis(200);

impl TrainContext {
    pub fn new(sink: Sink, cancel: Arc<AtomicBool>, gate: Arc<PauseGate>, time_limit: Duration, threads: usize) -> Self {
        TrainContext {
            sink,
            cancel,
            gate,
            deadline: Instant::now() + time_limit,
            threads: threads.max(1),
            state: Mutex::new(ProgressState { fraction: 0.0, stage: String::new(), span: (0.0, 1.0), last_emit: None }),
        }
    }

    /// A context nobody watches, for tests and one-off runs.
    pub fn detached(time_limit: Duration, threads: usize) -> Self {
        Self::new(Arc::new(|_: &Event| {}), Arc::new(AtomicBool::new(false)), Arc::new(PauseGate::default()), time_limit, threads)
    }

    /// The thread budget, lowered while the guard finds the SoC warm.
    pub fn threads(&self) -> usize {
        self.gate.thread_cap().map_or(self.threads, |cap| self.threads.min(cap).max(1))
    }

    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The soft time limit: trainers stop adding rounds or candidates and finish with what they have.
    pub fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Enters a stage that covers `[lo, hi]` of this model's progress.
    pub fn stage(&self, name: &str, lo: f64, hi: f64, message: impl Into<String>) {
        let message = message.into();
        let fraction = {
            let Ok(mut s) = self.state.lock() else { return };
            s.stage = name.to_string();
            s.span = (lo.max(s.fraction), hi.max(lo));
            s.fraction = s.fraction.max(lo);
            s.last_emit = Some(Instant::now());
            s.fraction
        };
        self.log(format!("stage {name}: {message}"));
        (self.sink)(&Event::Progress { fraction, stage: name.to_string(), message });
    }

    /// Progress within the current stage, `within` in [0, 1]; never moves the overall fraction backwards.
    pub fn progress(&self, within: f64, message: impl FnOnce() -> String) {
        let event = {
            let Ok(mut s) = self.state.lock() else { return };
            let (lo, hi) = s.span;
            let f = (lo + (hi - lo) * within.clamp(0.0, 1.0)).max(s.fraction);
            s.fraction = f;
            let due = s.last_emit.is_none_or(|t| t.elapsed() >= EMIT_EVERY);
            if !due {
                return;
            }
            s.last_emit = Some(Instant::now());
            Event::Progress { fraction: f, stage: s.stage.clone(), message: message() }
        };
        (self.sink)(&event);
    }

    pub fn fraction(&self) -> f64 {
        self.state.lock().map(|s| s.fraction).unwrap_or(0.0)
    }

    pub fn log(&self, line: impl Into<String>) {
        (self.sink)(&Event::Log { line: line.into() });
    }

    pub fn leaderboard(&self, row: LeaderRow) {
        (self.sink)(&Event::Leaderboard { row });
    }

    /// A safe point: returns `Cancelled` if cancel was asked, and holds here while the pause gate is closed.
    pub fn checkpoint(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            return Err(Cancelled);
        }
        let mut announced = false;
        while let Some(reason) = self.gate.paused_reason() {
            if !announced {
                let (fraction, stage) = self.state.lock().map(|s| (s.fraction, s.stage.clone())).unwrap_or_default();
                (self.sink)(&Event::Progress {
                    fraction,
                    stage: format!("paused: {reason}"),
                    message: format!("{stage} paused: {reason}"),
                });
                announced = true;
            }
            if self.is_cancelled() {
                return Err(Cancelled);
            }
            self.gate.wait(Duration::from_millis(100));
        }
        if announced {
            let (fraction, stage) = self.state.lock().map(|s| (s.fraction, s.stage.clone())).unwrap_or_default();
            (self.sink)(&Event::Progress { fraction, stage: stage.clone(), message: format!("{stage} resumed") });
        }
        if self.is_cancelled() { Err(Cancelled) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (TrainContext, Arc<Mutex<Vec<Event>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let e2 = events.clone();
        let ctx = TrainContext::new(
            Arc::new(move |e: &Event| e2.lock().unwrap().push(e.clone())),
            Arc::new(AtomicBool::new(false)),
            Arc::new(PauseGate::default()),
            Duration::from_secs(60),
            1,
        );
        (ctx, events)
    }

    #[test]
    fn progress_is_monotonic_across_stages() {
        let (ctx, events) = recording();
        ctx.stage("a", 0.0, 0.5, "");
        ctx.progress(0.8, String::new);
        ctx.stage("b", 0.2, 1.0, "");
        ctx.progress(0.0, String::new);
        std::thread::sleep(EMIT_EVERY);
        ctx.progress(0.5, String::new);
        let fractions: Vec<f64> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Progress { fraction, .. } => Some(*fraction),
                _ => None,
            })
            .collect();
        assert!(fractions.windows(2).all(|w| w[1] >= w[0]), "{fractions:?}");
        assert!(ctx.fraction() >= 0.4);
    }

    #[test]
    fn a_warm_soc_caps_the_thread_budget() {
        let gate = Arc::new(PauseGate::default());
        let ctx = TrainContext::new(Arc::new(|_: &Event| {}), Arc::new(AtomicBool::new(false)), gate.clone(), Duration::from_secs(1), 4);
        assert_eq!(ctx.threads(), 4);
        gate.set_thread_cap(Some(1));
        assert_eq!(ctx.threads(), 1);
        gate.set_thread_cap(None);
        assert_eq!(ctx.threads(), 4);
    }

    #[test]
    fn checkpoint_reports_cancel() {
        let (ctx, _) = recording();
        assert!(ctx.checkpoint().is_ok());
        ctx.cancel_flag().store(true, Ordering::Relaxed);
        assert!(matches!(ctx.checkpoint(), Err(Cancelled)));
    }

    #[test]
    fn pause_holds_until_resumed_and_cancel_breaks_it() {
        let (ctx, events) = recording();
        let gate = ctx.gate.clone();
        gate.pause("SoC 77 °C");
        let g2 = gate.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            g2.resume();
        });
        let t0 = Instant::now();
        ctx.checkpoint().unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(250));
        t.join().unwrap();
        assert!(events.lock().unwrap().iter().any(|e| matches!(e, Event::Progress { stage, .. } if stage == "paused: SoC 77 °C")));
        gate.pause("hot");
        let flag = ctx.cancel_flag();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::Relaxed);
        });
        let t0 = Instant::now();
        assert!(matches!(ctx.checkpoint(), Err(Cancelled)));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_wait_at_the_gate_beats_the_heartbeat_it_was_given() {
        let (ctx, _) = recording();
        let beat = Arc::new(std::sync::atomic::AtomicU64::new(0));
        ctx.gate.beat_into(beat.clone());
        assert!(ctx.checkpoint().is_ok());
        assert_eq!(beat.load(Ordering::Relaxed), 0, "an open gate is not a wait");
        ctx.gate.pause("SoC 80 °C");
        let flag = ctx.cancel_flag();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(250));
            flag.store(true, Ordering::Relaxed);
        });
        assert!(matches!(ctx.checkpoint(), Err(Cancelled)));
        assert!(beat.load(Ordering::Relaxed) > 0, "waiting at a closed gate must beat");
    }
}
