//! One measured step: wall time and the process's peak resident memory during that step alone.
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub seconds: f64,
    /// VmHWM since the step began; 0 where /proc is absent.
    pub peak_rss_bytes: u64,
}

pub struct Probe {
    start: Instant,
}

impl Probe {
    /// Resets the kernel's high-water mark to the current RSS, so the peak read at `stop` belongs to this step
    /// and not to an earlier, larger one in the same process (Linux ≥ 4.0, `clear_refs` value 5).
    pub fn start() -> Probe {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Probe { start: Instant::now() }
    }

    pub fn stop(self) -> Sample {
        Sample { seconds: self.start.elapsed().as_secs_f64(), peak_rss_bytes: crate::util::peak_rss_bytes().unwrap_or(0) }
    }
}

/// The median of repeated measurements (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// The q-quantile (0..=1) by nearest rank; NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v[rank.saturating_sub(1).min(v.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles_by_hand() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
    }

    #[test]
    fn the_probe_sees_memory_touched_during_its_step() {
        let probe = Probe::start();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let s = probe.stop();
        drop(block);
        // Other tests run in this process at the same time, so only the lower bound is certain.
        if s.peak_rss_bytes > 0 {
            assert!(s.peak_rss_bytes >= 64 << 20, "peak {} should include the 64 MB block", s.peak_rss_bytes);
        }
    }
}
