//! Worker threads that live for a whole training run and take tasks from a shared queue.
//!
//! Spawning threads per histogram pass costs ~50 µs each time and, worse, makes every pass wait until
//! each spawned thread has been scheduled at least once: on a busy core (a Pi that also serves) that
//! is a full time slice per pass. Here idle workers sleep on a condvar, the caller drains the queue
//! itself, and it only waits for tasks a worker has actually started.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::GbdtError;

struct State<T, D> {
    queue: VecDeque<(usize, T)>,
    /// Results by task index; `None` marks a task whose processing panicked.
    finished: Vec<(usize, Option<D>)>,
    shutdown: bool,
}

pub(super) struct Workers<T, D> {
    state: Mutex<State<T, D>>,
    work: Condvar,
    done: Condvar,
}

impl<T: Send, D: Send> Workers<T, D> {
    pub fn new() -> Self {
        Workers {
            state: Mutex::new(State { queue: VecDeque::new(), finished: Vec::new(), shutdown: false }),
            work: Condvar::new(),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State<T, D>>, GbdtError> {
        self.state.lock().map_err(|_| GbdtError::WorkerPanicked)
    }

    /// Body of each spawned worker: process tasks until [`Workers::shutdown`].
    pub fn worker_loop(&self, f: &(impl Fn(T) -> D + Sync)) {
        while let Some((i, task)) = self.next_task() {
            let out = catch_unwind(AssertUnwindSafe(|| f(task))).ok();
            let Ok(mut st) = self.lock() else { return };
            st.finished.push((i, out));
            drop(st);
            self.done.notify_all();
        }
    }

    fn next_task(&self) -> Option<(usize, T)> {
        let mut st = self.lock().ok()?;
        loop {
            if st.shutdown {
                return None;
            }
            if let Some(t) = st.queue.pop_front() {
                return Some(t);
            }
            st = self.work.wait(st).ok()?;
        }
    }

    /// Runs every task (the caller works too) and returns the results in task order.
    pub fn run(&self, tasks: Vec<T>, f: &impl Fn(T) -> D) -> Result<Vec<D>, GbdtError> {
        let n = tasks.len();
        {
            let mut st = self.lock()?;
            st.finished.clear();
            st.queue.extend(tasks.into_iter().enumerate());
        }
        self.work.notify_all();
        loop {
            let next = self.lock()?.queue.pop_front();
            let Some((i, task)) = next else { break };
            let out = f(task);
            self.lock()?.finished.push((i, Some(out)));
        }
        let mut st = self.lock()?;
        while st.finished.len() < n {
            st = self.done.wait(st).map_err(|_| GbdtError::WorkerPanicked)?;
        }
        let mut finished = std::mem::take(&mut st.finished);
        drop(st);
        finished.sort_unstable_by_key(|(i, _)| *i);
        finished.into_iter().map(|(_, d)| d.ok_or(GbdtError::WorkerPanicked)).collect()
    }

    pub fn shutdown(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.shutdown = true;
        }
        self.work.notify_all();
    }
}

/// Stops the workers when training leaves its scope by any path, so the scope's join cannot hang.
pub(super) struct ShutdownOnDrop<'a, T: Send, D: Send>(pub &'a Workers<T, D>);

impl<T: Send, D: Send> Drop for ShutdownOnDrop<'_, T, D> {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}
