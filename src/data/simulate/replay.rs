//! The simulator's replay: a machine's recorded rows sent again as live readings, faster than they were
//! recorded, so the whole loop (readings in, compaction, scoring, alerts) can be watched on a life whose end
//! is known. The rows after the target machine's history are taken, to the end of the life they are in
//! (for the simulator's machines, a failure).
//!
//! Row i is sent `(tᵢ − t₀) / speed` after the start, stamped ([`Stamps`]) with its recorded time — the
//! machine's clock runs on from its history, so time in life and the daily cycle stay what the models were
//! trained on — or shifted to now: `end − (t_last − tᵢ)`, where `end` is when the last row is sent. Either
//! way the gaps stay those of the recording (a model trained on hourly rows gets hourly rows) and no stamp
//! is ever ahead of the clock that sends it.
use crate::data::Table;

/// How replayed rows are stamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamps {
    /// The recorded times.
    Recorded,
    /// Shifted so that the last row is stamped when it is sent.
    Now,
}

/// One row to send: when (seconds after the start), its stamp (epoch seconds) and its values (a missing
/// reading is left out).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayRow {
    pub at_s: f64,
    pub ts: f64,
    pub values: Vec<(String, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplayPlan {
    pub rows: Vec<ReplayRow>,
    /// The recorded times the rows come from.
    pub recorded_from: f64,
    pub recorded_to: f64,
    /// Whether the replayed rows reach the end of their life.
    pub to_life_end: bool,
    /// The remaining life at the first row (hours), when the recording has RUL.
    pub rul_at_start_h: Option<f64>,
}

/// The rows of `source` recorded after `after_s` in the life of the first of them, at most `max_rows`,
/// sent `speed` times faster than recorded from `start_s` (epoch seconds).
pub fn plan(source: &Table, after_s: f64, max_rows: Option<usize>, speed: f64, stamps: Stamps, start_s: f64) -> Result<ReplayPlan, String> {
    if !(speed.is_finite() && speed >= 1.0) {
        return Err(format!("speed {speed}: give 1 (as recorded) or more"));
    }
    let first = (0..source.n_rows())
        .filter(|&i| source.timestamps[i] > after_s)
        .min_by(|&a, &b| source.timestamps[a].total_cmp(&source.timestamps[b]))
        .ok_or_else(|| format!("no recorded row after {}", crate::util::time::format_timestamp(after_s)))?;
    let life = source.life[first];
    let end = (first..source.n_rows()).find(|&i| source.life[i] != life).unwrap_or(source.n_rows());
    let take = max_rows.map_or(end, |m| end.min(first + m.max(1)));
    let times = &source.timestamps[first..take];
    if times.windows(2).any(|w| w[1] <= w[0]) {
        return Err("the recorded rows of this life are not in time order".into());
    }
    let (t0, t_last) = (times[0], times[times.len() - 1]);
    let shift = match stamps {
        Stamps::Recorded => 0.0,
        Stamps::Now => start_s + (t_last - t0) / speed - t_last,
    };
    let rows = (first..take)
        .map(|i| {
            let t = source.timestamps[i];
            let values = source.sensors.iter().filter(|s| s.values[i].is_finite()).map(|s| (s.name.clone(), s.values[i])).collect();
            ReplayRow { at_s: (t - t0) / speed, ts: t + shift, values }
        })
        .collect();
    Ok(ReplayPlan {
        rows,
        recorded_from: t0,
        recorded_to: t_last,
        to_life_end: take == end,
        rul_at_start_h: source.rul.as_ref().map(|r| r[first]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::simulate::{FleetOptions, simulate_fleet};

    #[test]
    fn a_replay_keeps_the_recorded_gaps_never_stamps_ahead_and_ends_with_the_life() {
        let d = tempfile::tempdir().unwrap();
        simulate_fleet(&FleetOptions { out_dir: d.path().to_path_buf(), machines: 1, rows: 3_000, ..Default::default() }).unwrap();
        let id = crate::data::machine_ids(d.path()).unwrap().remove(0);
        let t = crate::data::load_machine(d.path(), &id).unwrap();
        let after = t.timestamps[1_000];
        let start = 1_800_000_000.0;
        let p = plan(&t, after, None, 3_600.0, Stamps::Now, start).unwrap();
        let first = (0..t.n_rows()).find(|&i| t.timestamps[i] > after).unwrap();
        assert_eq!(p.recorded_from, t.timestamps[first]);
        assert!(p.to_life_end);
        let life = t.life[first];
        assert_eq!(p.rows.len(), t.life.iter().skip(first).take_while(|l| **l == life).count());
        for (k, w) in p.rows.windows(2).enumerate() {
            let gap = t.timestamps[first + k + 1] - t.timestamps[first + k];
            assert!((w[1].ts - w[0].ts - gap).abs() < 1e-6 && (w[1].at_s - w[0].at_s - gap / 3_600.0).abs() < 1e-9);
        }
        assert!(p.rows.iter().all(|r| r.ts <= start + r.at_s + 1e-6), "a stamp ahead of its sending");
        assert!((p.rows.last().unwrap().ts - (start + p.rows.last().unwrap().at_s)).abs() < 1e-6);
        assert!(p.rul_at_start_h.is_some());
        // A cap ends the replay early; nothing after the recording, or a speed below 1, is refused.
        let short = plan(&t, after, Some(10), 3_600.0, Stamps::Recorded, start).unwrap();
        assert_eq!((short.rows.len(), short.to_life_end), (10, false));
        assert!(short.rows.iter().enumerate().all(|(k, r)| r.ts == t.timestamps[first + k] && r.at_s == p.rows[k].at_s));
        assert!(plan(&t, f64::MAX, None, 3_600.0, Stamps::Recorded, start).is_err());
        assert!(plan(&t, after, None, 0.5, Stamps::Recorded, start).is_err());
    }
}
