//! The bounded, sequential, persistent queue. All jobs live in memory (a few hundred at most) and every
//! change is written through to the store; state changes are flushed before anyone is told about them.
use super::job::{Job, JobRequest, JobState, ModelStatus};
use crate::store::RecordStore;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::broadcast;

#[derive(Debug, Error)]
pub enum JobError {
    #[error("the queue is full: {pending} jobs are waiting (capacity {capacity}); try again when one has started")]
    QueueFull { pending: usize, capacity: usize },
    #[error("no job {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("job record: {0}")]
    Encode(String),
    #[error("the daemon is shutting down; no new jobs")]
    ShuttingDown,
}

/// What [`JobQueue::next_within`] found.
#[derive(Debug)]
pub enum Next {
    /// This job is now STARTED; the flag asks it to stop.
    Start(Box<Job>, Arc<AtomicBool>),
    /// Nothing could start within the wait.
    Idle,
    Stopping,
}

/// How long [`JobQueue::next`] (and the runner's loop) waits before looking at the queue (and the guard's
/// verdict) again.
pub(super) const IDLE_TURN: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A waiting job, removed from the queue at once.
    RemovedPending,
    /// The running job was told to stop; it ends REVOKED within a second.
    Signalled,
    AlreadyFinished(JobState),
}

struct Inner {
    jobs: BTreeMap<u64, Job>,
    next_seq: u64,
    running: Option<(String, Arc<AtomicBool>)>,
    /// Why the resource guard stopped the running job: it then ends FAILURE with this, not REVOKED.
    abort_reason: Option<(String, String)>,
    stopping: bool,
}

pub struct JobQueue {
    inner: Mutex<Inner>,
    wake: Condvar,
    store: Arc<dyn RecordStore>,
    /// The latest record of each job whose write failed (a full disk), written again before the next write
    /// succeeds, so a job that changes no more (finished while the disk was full) is not left stale.
    unsaved: Mutex<BTreeMap<u64, Vec<u8>>>,
    capacity: usize,
    retention: usize,
    events: broadcast::Sender<Arc<Job>>,
}

/// Summary of what recovery found at start.
#[derive(Debug, Default)]
pub struct Recovery {
    pub interrupted: Vec<String>,
    pub requeued: Vec<String>,
    pub pending: usize,
}

impl JobQueue {
    /// Loads every job; a job found STARTED/PROGRESS was interrupted (restart or power loss): it is marked
    /// FAILURE and, if `requeue`, a fresh copy is queued. Nothing PENDING is lost.
    pub fn open(store: Arc<dyn RecordStore>, capacity: usize, retention: usize, requeue: bool) -> Result<(JobQueue, Recovery), JobError> {
        let mut jobs = BTreeMap::new();
        let mut skipped = 0;
        for (key, bytes) in store.scan()? {
            match serde_json::from_slice::<Job>(&bytes) {
                Ok(job) => {
                    jobs.insert(key, job);
                }
                Err(e) => {
                    // A record torn by a crash is dropped rather than blocking the daemon; it is logged.
                    tracing::warn!(key, error = %e, "dropping an unreadable job record");
                    store.remove(key)?;
                    skipped += 1;
                }
            }
        }
        let next_seq = jobs.keys().next_back().map_or(1, |k| k + 1);
        let (events, _) = broadcast::channel(256);
        let q = JobQueue {
            inner: Mutex::new(Inner { jobs, next_seq, running: None, abort_reason: None, stopping: false }),
            wake: Condvar::new(),
            store,
            unsaved: Mutex::new(BTreeMap::new()),
            capacity,
            retention,
            events,
        };
        let recovery = q.recover(requeue)?;
        if skipped > 0 {
            tracing::warn!(skipped, "job records dropped at start");
        }
        Ok((q, recovery))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recover(&self, requeue: bool) -> Result<Recovery, JobError> {
        let mut out = Recovery::default();
        let mut inner = self.lock();
        let interrupted: Vec<u64> = inner.jobs.iter().filter(|(_, j)| j.state.is_running()).map(|(k, _)| *k).collect();
        for key in interrupted {
            let Some(job) = inner.jobs.get_mut(&key) else { continue };
            job.log("interrupted by restart");
            job.finish(JobState::Failure, Some("interrupted by restart".into()));
            let copy_request = job.request.clone();
            let old_id = job.id.clone();
            let snapshot = job.clone();
            self.persist(&snapshot)?;
            out.interrupted.push(old_id.clone());
            if requeue {
                let seq = inner.next_seq;
                inner.next_seq += 1;
                let mut fresh = Job::new(uuid::Uuid::new_v4().to_string(), seq, copy_request);
                fresh.requeued_from = Some(old_id.clone());
                fresh.log(format!("queued again after job {old_id} was interrupted by a restart"));
                self.persist_new(&fresh)?;
                out.requeued.push(fresh.id.clone());
                inner.jobs.insert(seq, fresh);
            }
        }
        self.store.flush()?;
        out.pending = inner.jobs.values().filter(|j| j.state == JobState::Pending).count();
        Ok(out)
    }

    /// Writes a job that is not in the queue yet: when that fails, the caller refuses it, so nothing is kept
    /// to write again later.
    fn persist_new(&self, job: &Job) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(job).map_err(|e| JobError::Encode(e.to_string()))?;
        self.write_unsaved();
        self.store.put(job.seq, &bytes)?;
        Ok(())
    }

    /// Writes again what failed earlier, oldest job first, until a write fails.
    fn write_unsaved(&self) {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((&seq, older)) = unsaved.iter().next() {
            if self.store.put(seq, older).is_err() {
                break;
            }
            unsaved.remove(&seq);
        }
    }

    /// Writes a job the queue holds; if that fails, its latest record is written again before the next
    /// write (see `unsaved`).
    fn persist(&self, job: &Job) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(job).map_err(|e| JobError::Encode(e.to_string()))?;
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.seq);
        self.write_unsaved();
        if let Err(e) = self.store.put(job.seq, &bytes) {
            self.unsaved.lock().unwrap_or_else(|p| p.into_inner()).insert(job.seq, bytes);
            return Err(e.into());
        }
        Ok(())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.events.subscribe()
    }

    fn announce(&self, job: &Job) {
        let _ = self.events.send(Arc::new(job.clone()));
    }

    /// How many jobs may wait at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn pending_count(&self) -> usize {
        self.lock().jobs.values().filter(|j| j.state == JobState::Pending).count()
    }

    pub fn submit(&self, request: JobRequest) -> Result<Job, JobError> {
        let job = {
            let mut inner = self.lock();
            if inner.stopping {
                return Err(JobError::ShuttingDown);
            }
            let pending = inner.jobs.values().filter(|j| j.state == JobState::Pending).count();
            if pending >= self.capacity {
                return Err(JobError::QueueFull { pending, capacity: self.capacity });
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let mut job = Job::new(uuid::Uuid::new_v4().to_string(), seq, request);
            job.log(format!(
                "queued: {} for {}",
                job.request.model_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
                job.request.machine_id
            ));
            self.persist_new(&job)?;
            self.store.flush()?;
            inner.jobs.insert(seq, job.clone());
            // Announced under the lock: subscribers see a job's snapshots in the order they happened.
            self.announce(&job);
            job
        };
        self.wake.notify_all();
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().jobs.values().find(|j| j.id == id).cloned()
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Job> {
        self.lock().jobs.values().rev().cloned().collect()
    }

    /// Runs `f` over the jobs, newest first, without copying them (a job carries up to 500 log lines).
    pub fn read_newest_first<R>(&self, f: impl FnOnce(&[&Job]) -> R) -> R {
        let inner = self.lock();
        let jobs: Vec<&Job> = inner.jobs.values().rev().collect();
        f(&jobs)
    }

    /// 1-based position among waiting jobs, or None when not waiting.
    pub fn position(&self, id: &str) -> Option<usize> {
        let inner = self.lock();
        inner.jobs.values().filter(|j| j.state == JobState::Pending).position(|j| j.id == id).map(|p| p + 1)
    }

    pub fn running(&self) -> Option<Job> {
        let inner = self.lock();
        let id = inner.running.as_ref().map(|(id, _)| id.clone())?;
        inner.jobs.values().find(|j| j.id == id).cloned()
    }

    pub fn cancel(&self, id: &str) -> Result<CancelOutcome, JobError> {
        let mut inner = self.lock();
        if let Some((running_id, flag)) = &inner.running
            && running_id == id
        {
            flag.store(true, Ordering::SeqCst);
            return Ok(CancelOutcome::Signalled);
        }
        let Some(job) = inner.jobs.values_mut().find(|j| j.id == id) else { return Err(JobError::NotFound(id.into())) };
        if job.state.is_finished() {
            return Ok(CancelOutcome::AlreadyFinished(job.state));
        }
        job.log("cancelled before it started");
        job.finish(JobState::Revoked, Some("cancelled before it started".into()));
        for m in job.progress.models.values_mut() {
            m.status = ModelStatus::Revoked;
        }
        let snapshot = job.clone();
        self.persist(&snapshot)?;
        self.store.flush()?;
        self.announce(&snapshot);
        drop(inner);
        Ok(CancelOutcome::RemovedPending)
    }

    /// Stops the running job so that it ends FAILURE with `reason` (the resource guard); false if `id` is not running.
    pub fn abort(&self, id: &str, reason: String) -> bool {
        let mut inner = self.lock();
        let flag = match &inner.running {
            Some((r, f)) if r == id => f.clone(),
            _ => return false,
        };
        flag.store(true, Ordering::SeqCst);
        inner.abort_reason = Some((id.to_string(), reason));
        true
    }

    pub fn abort_reason(&self, id: &str) -> Option<String> {
        self.lock().abort_reason.as_ref().filter(|(j, _)| j == id).map(|(_, r)| r.clone())
    }

    /// Blocks until a PENDING job can start (or the queue stops); marks it STARTED, durable, and returns it
    /// with its cancel flag. `admit` may hold a job back (the resource guard): it returns a reason to wait.
    pub fn next(&self, admit: &dyn Fn(&Job) -> Option<String>) -> Option<(Job, Arc<AtomicBool>)> {
        loop {
            match self.next_within(admit, IDLE_TURN) {
                Next::Start(job, flag) => return Some((*job, flag)),
                Next::Idle => {}
                Next::Stopping => return None,
            }
        }
    }

    /// Like [`JobQueue::next`], but gives up after `max_wait` with [`Next::Idle`], so the caller's loop
    /// turns (and can show it is alive) while nothing can start.
    pub fn next_within(&self, admit: &dyn Fn(&Job) -> Option<String>, max_wait: Duration) -> Next {
        let deadline = Instant::now() + max_wait;
        let mut inner = self.lock();
        loop {
            if inner.stopping {
                return Next::Stopping;
            }
            if let Some(key) = inner.jobs.iter().find(|(_, j)| j.state == JobState::Pending).map(|(k, _)| *k) {
                let candidate = inner.jobs.get(&key).cloned();
                let hold = candidate.as_ref().and_then(admit);
                if let (Some(job), None) = (inner.jobs.get_mut(&key), &hold) {
                    job.state = JobState::Started;
                    job.waiting_reason = None;
                    job.started_at = Some(crate::util::time::format_timestamp(crate::util::time::now_secs()));
                    job.log("started");
                    let snapshot = job.clone();
                    let flag = Arc::new(AtomicBool::new(false));
                    inner.running = Some((snapshot.id.clone(), flag.clone()));
                    if let Err(e) = self.persist(&snapshot).and_then(|_| self.store.flush().map_err(JobError::from)) {
                        tracing::error!(error = %e, "could not record a job start");
                    }
                    self.announce(&snapshot);
                    drop(inner);
                    return Next::Start(Box::new(snapshot), flag);
                }
                if let (Some(job), Some(reason)) = (inner.jobs.get_mut(&key), hold)
                    && job.waiting_reason.as_deref() != Some(reason.as_str())
                {
                    job.waiting_reason = Some(reason);
                    let snapshot = job.clone();
                    self.announce(&snapshot);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Idle;
            }
            // A held job is looked at again every IDLE_TURN at most: the guard's verdict changes with the device.
            inner = match self.wake.wait_timeout(inner, left.min(IDLE_TURN)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Applies a change to a job; `durable` flushes (state changes), progress-only updates are written lazily.
    pub fn update(&self, id: &str, durable: bool, change: impl FnOnce(&mut Job)) -> Result<Job, JobError> {
        // Changed, written and announced under one lock, so two threads updating a job cannot reorder its snapshots.
        let mut inner = self.lock();
        let job = inner.jobs.values_mut().find(|j| j.id == id).ok_or_else(|| JobError::NotFound(id.into()))?;
        change(job);
        let snapshot = job.clone();
        self.persist(&snapshot)?;
        if durable {
            self.store.flush()?;
        }
        self.announce(&snapshot);
        Ok(snapshot)
    }

    /// The running job ended (in any state already written with `update`).
    pub fn release(&self, id: &str) {
        {
            let mut inner = self.lock();
            if inner.running.as_ref().is_some_and(|(r, _)| r == id) {
                inner.running = None;
                inner.abort_reason = None;
            }
        }
        if let Err(e) = self.prune() {
            tracing::warn!(error = %e, "pruning finished jobs failed");
        }
        self.wake.notify_all();
    }

    /// Keeps the `retention` newest finished jobs.
    fn prune(&self) -> Result<(), JobError> {
        let doomed: Vec<u64> = {
            let inner = self.lock();
            let finished: Vec<u64> = inner.jobs.iter().filter(|(_, j)| j.state.is_finished()).map(|(k, _)| *k).collect();
            finished.iter().take(finished.len().saturating_sub(self.retention)).copied().collect()
        };
        for key in &doomed {
            self.store.remove(*key)?;
        }
        let mut inner = self.lock();
        for key in doomed {
            inner.jobs.remove(&key);
        }
        Ok(())
    }

    /// Stops handing out jobs and asks the running one to stop; returns its id.
    pub fn stop(&self) -> Option<String> {
        let mut inner = self.lock();
        inner.stopping = true;
        let running = inner.running.as_ref().map(|(id, flag)| {
            flag.store(true, Ordering::SeqCst);
            id.clone()
        });
        drop(inner);
        self.wake.notify_all();
        running
    }

    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Puts an interrupted job back in line as a fresh copy (shutdown with cancel-and-requeue).
    pub fn requeue_copy(&self, id: &str) -> Result<Option<Job>, JobError> {
        let mut inner = self.lock();
        let Some(original) = inner.jobs.values().find(|j| j.id == id).cloned() else { return Ok(None) };
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let mut fresh = Job::new(uuid::Uuid::new_v4().to_string(), seq, original.request.clone());
        fresh.requeued_from = Some(original.id.clone());
        fresh.log(format!("queued again after job {} was interrupted by a shutdown", original.id));
        self.persist_new(&fresh)?;
        self.store.flush()?;
        inner.jobs.insert(seq, fresh.clone());
        self.announce(&fresh);
        Ok(Some(fresh))
    }

    pub fn flush(&self) -> Result<(), JobError> {
        Ok(self.store.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::{ModelType, TrainParams};
    use crate::store::SledStore;

    fn request() -> JobRequest {
        JobRequest {
            machine_id: "m1".into(),
            model_types: vec![ModelType::Anomaly],
            params: TrainParams::default(),
            origin: Default::default(),
        }
    }

    fn open(dir: &std::path::Path, capacity: usize, retention: usize) -> (JobQueue, Recovery) {
        JobQueue::open(Arc::new(SledStore::open(dir).unwrap()), capacity, retention, true).unwrap()
    }

    #[test]
    fn capacity_counts_only_waiting_jobs() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = open(d.path(), 2, 10);
        let a = q.submit(request()).unwrap();
        q.submit(request()).unwrap();
        assert!(matches!(q.submit(request()), Err(JobError::QueueFull { pending: 2, capacity: 2 })));
        let (started, _) = q.next(&|_| None).unwrap();
        assert_eq!(started.id, a.id);
        q.submit(request()).unwrap();
        assert_eq!(q.position(&a.id), None);
    }

    #[test]
    fn restart_marks_running_jobs_and_requeues_a_copy_keeping_the_pending_ones() {
        let d = tempfile::tempdir().unwrap();
        let (running, waiting) = {
            let (q, _) = open(d.path(), 5, 10);
            let a = q.submit(request()).unwrap();
            let b = q.submit(request()).unwrap();
            q.next(&|_| None).unwrap();
            (a.id, b.id)
        };
        let (q, rec) = open(d.path(), 5, 10);
        assert_eq!(rec.interrupted, vec![running.clone()]);
        assert_eq!(rec.requeued.len(), 1);
        assert_eq!(q.get(&running).unwrap().state, JobState::Failure);
        assert_eq!(q.get(&waiting).unwrap().state, JobState::Pending);
        let copy = q.get(&rec.requeued[0]).unwrap();
        assert_eq!(copy.requeued_from.as_deref(), Some(running.as_str()));
        // Submission order holds: the old waiting job runs before the requeued copy.
        assert_eq!(q.next(&|_| None).unwrap().0.id, waiting);
    }

    #[test]
    fn retention_keeps_the_newest_finished_jobs() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = open(d.path(), 50, 3);
        for _ in 0..6 {
            let j = q.submit(request()).unwrap();
            q.next(&|_| None).unwrap();
            q.update(&j.id, true, |j| j.finish(JobState::Success, None)).unwrap();
            q.release(&j.id);
        }
        assert_eq!(q.list().len(), 3);
        drop(q);
        let (q, _) = open(d.path(), 50, 3);
        assert_eq!(q.list().len(), 3, "pruned records are gone from the store too");
    }

    #[test]
    fn a_change_refused_on_a_full_disk_is_written_with_the_next_one_and_a_refused_submit_never_appears() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(d.path()).unwrap());
        let (q, _) = JobQueue::open(store.clone(), 5, 10, true).unwrap();
        let a = q.submit(request()).unwrap();
        let b = q.submit(request()).unwrap();
        q.next(&|_| None).unwrap();
        store.set_write_floor(u64::MAX);
        assert!(q.update(&a.id, true, |j| j.finish(JobState::Success, None)).is_err());
        assert!(matches!(q.submit(request()), Err(JobError::Store(crate::store::StoreError::DiskFull { .. }))));
        q.release(&a.id);
        store.set_write_floor(0);
        q.update(&b.id, true, |j| j.log("the disk has room again")).unwrap();
        drop(q);
        drop(store);
        let (q, rec) = open(d.path(), 5, 10);
        assert_eq!(q.get(&a.id).unwrap().state, JobState::Success, "a's end was written before b's change");
        assert!(rec.interrupted.is_empty(), "{rec:?}");
        assert_eq!(q.list().len(), 2, "the refused submission never appears");
    }

    #[test]
    fn next_within_returns_idle_after_its_wait_and_starts_a_job_at_once() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = open(d.path(), 5, 10);
        let t0 = std::time::Instant::now();
        assert!(matches!(q.next_within(&|_| None, Duration::from_millis(120)), Next::Idle));
        assert!(t0.elapsed() >= Duration::from_millis(100) && t0.elapsed() < Duration::from_secs(2));
        let j = q.submit(request()).unwrap();
        assert!(matches!(q.next_within(&|_| Some("held".into()), Duration::from_millis(50)), Next::Idle), "a held job does not start");
        assert!(matches!(q.next_within(&|_| None, Duration::from_secs(5)), Next::Start(s, _) if s.id == j.id));
        q.stop();
        assert!(matches!(q.next_within(&|_| None, Duration::from_secs(5)), Next::Stopping));
    }

    #[test]
    fn admission_holds_a_job_with_a_visible_reason() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = open(d.path(), 5, 10);
        let q = Arc::new(q);
        let j = q.submit(request()).unwrap();
        let allow = Arc::new(AtomicBool::new(false));
        let (q2, a2) = (q.clone(), allow.clone());
        let t = std::thread::spawn(move || {
            q2.next(&|_| if a2.load(Ordering::SeqCst) { None } else { Some("waiting for memory".into()) }).map(|(j, _)| j.id)
        });
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(q.get(&j.id).unwrap().waiting_reason.as_deref(), Some("waiting for memory"));
        allow.store(true, Ordering::SeqCst);
        assert_eq!(t.join().unwrap(), Some(j.id));
    }
}
