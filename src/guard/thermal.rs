//! The pause/resume decision with hysteresis: pause at `temp_pause_c`, resume only below `temp_resume_c`, so a
//! SoC hovering at the limit does not toggle training every poll.
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub struct Paused {
    pub since: Instant,
    /// The temperature that caused it, °C.
    pub at_c: f64,
    /// What the task shows as its stage after "paused: ".
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Pause(Paused),
    Resume { after: Duration, temperature_c: Option<f64> },
}

/// The next state for a reading; `None` (no sensor) never pauses and ends a pause, since nothing could
/// ever end it otherwise.
pub fn step(paused: Option<&Paused>, reading: Option<f64>, pause_c: f64, resume_c: f64, now: Instant) -> Option<Change> {
    match (paused, reading) {
        (None, Some(t)) if t >= pause_c => Some(Change::Pause(Paused { since: now, at_c: t, reason: format!("SoC {t:.0} °C") })),
        (Some(p), Some(t)) if t < resume_c => {
            Some(Change::Resume { after: now.saturating_duration_since(p.since), temperature_c: Some(t) })
        }
        (Some(p), None) => Some(Change::Resume { after: now.saturating_duration_since(p.since), temperature_c: None }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(temps: &[Option<f64>]) -> Vec<bool> {
        let mut paused: Option<Paused> = None;
        temps
            .iter()
            .map(|&t| {
                match step(paused.as_ref(), t, 75.0, 68.0, Instant::now()) {
                    Some(Change::Pause(p)) => paused = Some(p),
                    Some(Change::Resume { .. }) => paused = None,
                    None => {}
                }
                paused.is_some()
            })
            .collect()
    }

    #[test]
    fn hysteresis_between_the_two_thresholds() {
        let temps = [60.0, 74.9, 75.0, 80.0, 70.0, 68.0, 67.9, 74.0, 76.0].map(Some);
        assert_eq!(run(&temps), [false, false, true, true, true, true, false, false, true]);
    }

    #[test]
    fn the_reason_names_the_rounded_temperature() {
        match step(None, Some(79.6), 75.0, 68.0, Instant::now()) {
            Some(Change::Pause(p)) => assert_eq!(p.reason, "SoC 80 °C"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_sensor_never_pauses_and_ends_a_pause() {
        assert_eq!(run(&[None, None]), [false, false]);
        assert_eq!(run(&[Some(90.0), None]), [true, false]);
    }
}
