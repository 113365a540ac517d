//! The `[http]` settings in the form the server and the intake use, and the daemon-wide budget of request
//! body memory they share.
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The `[http]` settings in the form the server uses, plus the shared body budget.
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub body_memory: usize,
    pub(super) budget: Arc<Semaphore>,
}

impl HttpLimits {
    pub fn new(
        header_timeout: Duration,
        body_timeout: Duration,
        idle_timeout: Duration,
        max_connections: usize,
        body_memory: usize,
    ) -> HttpLimits {
        let body_memory = body_memory.min(Semaphore::MAX_PERMITS);
        HttpLimits {
            header_timeout,
            body_timeout,
            idle_timeout,
            max_connections,
            body_memory,
            budget: Arc::new(Semaphore::new(body_memory)),
        }
    }

    pub fn from_config(c: &crate::config::HttpConfig) -> HttpLimits {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(60));
        let mb = usize::try_from(c.body_memory_mb).unwrap_or(usize::MAX / (1 << 20)).saturating_mul(1 << 20);
        HttpLimits::new(secs(c.header_timeout_s), secs(c.body_timeout_s), secs(c.idle_timeout_s), c.max_connections, mb)
    }

    /// Bytes of the body budget not reserved right now.
    pub fn budget_free(&self) -> usize {
        self.budget.available_permits()
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&crate::config::HttpConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_budget_is_shared_and_returned() {
        let l = HttpLimits::new(Duration::from_secs(1), Duration::from_secs(1), Duration::from_secs(1), 8, 100);
        let a = l.budget.clone().acquire_many_owned(60).await.unwrap();
        assert_eq!(l.budget_free(), 40);
        assert!(l.budget.clone().try_acquire_many_owned(60).is_err(), "a second large body waits");
        drop(a);
        assert_eq!(l.budget_free(), 100);
    }
}
