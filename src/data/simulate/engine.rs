//! The physics of one simulated machine, in memory: a timeline of run-to-failure lives, the plant's ambient
//! temperature, operating regimes, the wear state, and from those every sensor reading.
use super::families::{Effect, Family, How, Kind, Model, SensorSpec, Shape};
use crate::util::rng::Rng;

/// 2021-01-01T00:00:00Z.
pub const START_EPOCH_S: f64 = 1_609_459_200.0;
/// Lives last 300–1,500 h: the middle of that range.
const MEAN_LIFE_H: f64 = 900.0;
/// A short history still holds this many lives, or there would be nothing to learn RUL from.
const MIN_LIVES: f64 = 8.0;
/// Temperatures in the families are given for a plant at this ambient.
const REFERENCE_AMBIENT_C: f64 = 20.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Life {
    pub start: usize,
    pub rows: usize,
    /// Index into the family's failure modes.
    pub mode: usize,
    pub initial_wear: f64,
}

impl Life {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.rows
    }
}

/// One machine's whole history; `load`, `wear` and `ambient` are the hidden truth behind the sensors.
pub struct MachineData {
    pub timestamps: Vec<f64>,
    pub rul: Vec<f64>,
    /// One column per sensor of the family, in the family's order.
    pub sensors: Vec<Vec<f64>>,
    pub lives: Vec<Life>,
    /// Added sensors (name, values), after the family's own.
    pub extra: Vec<(String, Vec<f64>)>,
    pub load: Vec<f64>,
    pub wear: Vec<f64>,
    pub ambient: Vec<f64>,
}

/// The hidden state every sensor is computed from.
struct Drivers<'a> {
    ambient: &'a [f64],
    load: &'a [f64],
    wear: &'a [f64],
    bursts: &'a [f64],
    lives: &'a [Life],
    /// Per life: how hard this particular failure hits (no two bearings fail alike).
    severity: &'a [f64],
}

pub fn generate(model: &Model, family: &Family, rows: usize, interval_s: f64, seed: u64) -> MachineData {
    let mut root = Rng::new(seed);
    let dt_h = interval_s / 3600.0;
    let timestamps: Vec<f64> = (0..rows).map(|i| START_EPOCH_S + i as f64 * interval_s).collect();
    let lives = plan_lives(&mut root.fork(1), rows, dt_h, family);
    let ambient = ambient_temperature(&mut root.fork(2), &timestamps, dt_h);
    let load = operating_load(&mut root.fork(3), &timestamps, &family.loads, dt_h);
    let wear = wear_state(&mut root.fork(4), &lives, &load, rows);
    let bursts = cavitation_bursts(&mut root.fork(5), family, &lives, &wear, &load, dt_h);
    let severity: Vec<f64> = {
        let mut r = root.fork(6);
        lives.iter().map(|_| r.range(0.8, 1.25)).collect()
    };
    let drivers = Drivers { ambient: &ambient, load: &load, wear: &wear, bursts: &bursts, lives: &lives, severity: &severity };
    let mut sensor_rng = root.fork(7);
    let mut sensors: Vec<Vec<f64>> = family
        .sensors
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            let mut r = sensor_rng.fork(k as u64);
            let spec = vary(&mut r, spec, model.rating);
            let effects = effects_on(family, spec.name);
            sensor_series(&mut r, &spec, &effects, &drivers, dt_h)
        })
        .collect();
    apply_dropouts(&mut root.fork(8), &mut sensors);
    let rul = remaining_life(&lives, dt_h, rows);
    MachineData { timestamps, rul, sensors, lives, extra: Vec::new(), load, wear, ambient }
}

/// Consecutive lives filling exactly `rows`; the machine is repaired and restarts at once after each failure.
fn plan_lives(rng: &mut Rng, rows: usize, dt_h: f64, family: &Family) -> Vec<Life> {
    let mean_rows = (MEAN_LIFE_H / dt_h).min(rows as f64 / MIN_LIVES).max(4.0);
    let mut lengths: Vec<f64> = Vec::new();
    let mut total = 0.0;
    while total < rows as f64 {
        let len = mean_rows * rng.range(1.0 / 3.0, 5.0 / 3.0);
        lengths.push(len);
        total += len;
    }
    // Drop a last life that mostly overshoots, so the stretch needed to fill `rows` exactly stays small.
    if let Some(&last) = lengths.last()
        && lengths.len() > 1
        && total - rows as f64 > last / 2.0
    {
        lengths.pop();
        total -= last;
    }
    let counts = integer_lengths(&lengths, total, rows);
    let mut start = 0;
    counts
        .into_iter()
        .map(|n| {
            let life = Life { start, rows: n, mode: pick_mode(rng, family), initial_wear: rng.range(0.0, 0.3) };
            start += n;
            life
        })
        .collect()
}

/// Scales real lengths to whole rows summing to `rows`, merging any life too short to show a trend.
fn integer_lengths(lengths: &[f64], total: f64, rows: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::with_capacity(lengths.len());
    let (mut cum, mut prev_end) = (0.0, 0usize);
    for len in lengths {
        cum += len;
        let end = ((cum / total) * rows as f64).round() as usize;
        out.push(end.min(rows) - prev_end.min(rows));
        prev_end = end;
    }
    if let Some(last) = out.last_mut() {
        *last += rows.saturating_sub(prev_end);
    }
    let mut merged: Vec<usize> = Vec::with_capacity(out.len());
    for n in out {
        match merged.last_mut() {
            Some(prev) if n < 3 => *prev += n,
            _ => merged.push(n),
        }
    }
    if merged.len() > 1 && merged[0] < 3 {
        let first = merged.remove(0);
        merged[0] += first;
    }
    merged.retain(|&n| n > 0);
    merged
}

fn pick_mode(rng: &mut Rng, family: &Family) -> usize {
    let total: f64 = family.modes.iter().map(|m| m.weight).sum();
    let mut u = rng.uniform() * total;
    for (i, m) in family.modes.iter().enumerate() {
        if u < m.weight {
            return i;
        }
        u -= m.weight;
    }
    family.modes.len().saturating_sub(1)
}

/// Plant air: a yearly swing, weather fronts lasting days, and a daily cycle whose amplitude (sunny or
/// cloudy) and timing drift from day to day. Interpolating day to day avoids steps at midnight.
fn ambient_temperature(rng: &mut Rng, timestamps: &[f64], dt_h: f64) -> Vec<f64> {
    let days = timestamps.last().map_or(1, |t| ((t - START_EPOCH_S) / 86_400.0) as usize + 2);
    let amplitude: Vec<f64> = (0..days).map(|_| rng.range(4.0, 8.0)).collect();
    let phase_h: Vec<f64> = (0..days).map(|_| rng.normal().clamp(-2.0, 2.0)).collect();
    let rho = (-dt_h / 60.0).exp();
    let mut weather = 1.5 * rng.normal();
    timestamps
        .iter()
        .map(|&t| {
            weather = rho * weather + (1.0 - rho * rho).sqrt() * 1.5 * rng.normal();
            let elapsed_d = (t - START_EPOCH_S) / 86_400.0;
            let d = (elapsed_d as usize).min(days.saturating_sub(2));
            let frac = elapsed_d - d as f64;
            let amp = lerp(amplitude[d], amplitude[d + 1], frac);
            let shift = lerp(phase_h[d], phase_h[d + 1], frac);
            let hour = t.rem_euclid(86_400.0) / 3600.0;
            // Warmest mid-afternoon, warmest in mid-July.
            let daily = amp * (std::f64::consts::TAU * (hour - 9.0 - shift) / 24.0).sin();
            let yearly = 6.0 * (std::f64::consts::TAU * (elapsed_d - 196.0) / 365.25).cos();
            17.0 + yearly + daily + weather
        })
        .collect()
}

fn lerp(a: f64, b: f64, f: f64) -> f64 {
    a + (b - a) * f
}

/// A Markov chain over the family's load levels. Production plans change mostly at shift changes
/// (06:00, 14:00, 22:00), so regimes last hours to days; nights and weekends run lighter, which gives the
/// load its own daily and weekly rhythm. Rarely demand changes mid-shift.
fn operating_load(rng: &mut Rng, timestamps: &[f64], levels: &[f64; 3], dt_h: f64) -> Vec<f64> {
    const DAY_SHIFT: [f64; 3] = [0.15, 0.4, 0.45];
    const NIGHT_SHIFT: [f64; 3] = [0.5, 0.35, 0.15];
    const WEEKEND: [f64; 3] = [0.6, 0.3, 0.1];
    let mean_dwell_h = rng.range(8.0, 48.0);
    let p_at_shift_change = 1.0 - (-8.0 / mean_dwell_h).exp();
    let p_mid_shift = 1.0 - (-dt_h / 200.0).exp();
    let rho = (-dt_h / 2.0).exp();
    let mut state = 1;
    let mut jitter = 0.0;
    let mut shift = shift_number(timestamps.first().copied().unwrap_or(0.0));
    timestamps
        .iter()
        .map(|&t| {
            let now = shift_number(t);
            let p = if now != shift { p_at_shift_change } else { p_mid_shift };
            shift = now;
            if rng.uniform() < p {
                let weights = if is_weekend(t) {
                    &WEEKEND
                } else if now % 3 == 2 {
                    &NIGHT_SHIFT
                } else {
                    &DAY_SHIFT
                };
                state = pick_weighted(rng, weights);
            }
            // Within a regime the duty still wanders a little (batch sizes, product mix).
            jitter = rho * jitter + (1.0 - rho * rho).sqrt() * 0.02 * rng.normal();
            (levels[state] + jitter).clamp(0.05, 1.05)
        })
        .collect()
}

/// Eight-hour shifts counted from 1970-01-01 06:00; `% 3` gives early (0), late (1), night (2).
fn shift_number(t: f64) -> i64 {
    ((t - 6.0 * 3600.0) / (8.0 * 3600.0)).floor() as i64
}

fn is_weekend(t: f64) -> bool {
    // 1970-01-01 was a Thursday; Monday = 0.
    let weekday = ((t / 86_400.0).floor() as i64 + 3).rem_euclid(7);
    weekday >= 5
}

fn pick_weighted(rng: &mut Rng, weights: &[f64; 3]) -> usize {
    let mut u = rng.uniform() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// Wear climbs from the life's initial wear to exactly 1 at its last row. It advances with work done
/// (heavier load wears faster) and accelerates mildly as damage compounds.
fn wear_state(rng: &mut Rng, lives: &[Life], load: &[f64], rows: usize) -> Vec<f64> {
    let mut wear = vec![0.0; rows];
    for life in lives {
        let curvature = rng.range(0.3, 1.5);
        let range = life.range();
        let mut effort = Vec::with_capacity(life.rows);
        let mut cum = 0.0;
        for i in range.clone() {
            effort.push(cum);
            cum += 0.5 + 0.5 * load[i];
        }
        let span = effort.last().copied().unwrap_or(0.0);
        for (k, i) in range.enumerate() {
            let s = if span > 0.0 { effort[k] / span } else { 1.0 };
            let g = (curvature * s).exp_m1() / curvature.exp_m1();
            wear[i] = life.initial_wear + (1.0 - life.initial_wear) * g;
        }
    }
    wear
}

/// Cavitation comes in episodes of a few hours, more often as NPSH margin erodes and at high flow.
fn cavitation_bursts(rng: &mut Rng, family: &Family, lives: &[Life], wear: &[f64], load: &[f64], dt_h: f64) -> Vec<f64> {
    let mut out = vec![0.0; wear.len()];
    let p_end = 1.0 - (-dt_h / 3.0).exp();
    for life in lives {
        let bursty = family.modes.get(life.mode).is_some_and(|m| m.effects.iter().any(|e| e.shape == Shape::Bursts));
        if !bursty {
            continue;
        }
        let mut intensity = 0.0;
        for i in life.range() {
            let w = wear[i];
            if intensity > 0.0 {
                if rng.uniform() < p_end {
                    intensity = 0.0;
                }
            } else {
                let rate_per_h = (0.01 + 0.25 * w * w) * load[i] * load[i];
                if rng.uniform() < 1.0 - (-dt_h * rate_per_h).exp() {
                    intensity = rng.range(0.5, 1.5);
                }
            }
            out[i] = intensity * w;
        }
    }
    out
}

/// This machine's own sensor: a few percent off the family's reference, and sized to its rating.
fn vary(rng: &mut Rng, spec: &SensorSpec, rating: f64) -> SensorSpec {
    let mut s = *spec;
    // Synchronous speed and supply voltage are fixed by the grid; the rest varies from unit to unit.
    let spread = match s.kind {
        Kind::Speed => 0.002,
        Kind::Voltage => 0.005,
        Kind::PowerFactor => 0.01,
        _ => 0.04,
    };
    let size = if s.rated { rating } else { 1.0 };
    s.idle *= size * (1.0 + spread * rng.normal().clamp(-2.0, 2.0));
    s.full *= size * (1.0 + spread * rng.normal().clamp(-2.0, 2.0));
    s.noise *= size * rng.range(0.8, 1.2);
    s.tau_h *= rng.range(0.8, 1.25);
    s
}

/// Every effect on one sensor, per failure mode of the family.
fn effects_on(family: &Family, sensor: &str) -> Vec<Vec<Effect>> {
    family.modes.iter().map(|m| m.effects.iter().filter(|e| e.sensor == sensor).copied().collect()).collect()
}

fn sensor_series(rng: &mut Rng, spec: &SensorSpec, effects: &[Vec<Effect>], d: &Drivers<'_>, dt_h: f64) -> Vec<f64> {
    let n = d.load.len();
    let mut out = vec![0.0; n];
    let alpha = if spec.tau_h > 0.0 { 1.0 - (-dt_h / spec.tau_h).exp() } else { 1.0 };
    let mut thermal: Option<f64> = None;
    for (life_index, life) in d.lives.iter().enumerate() {
        let mode_effects = effects.get(life.mode).map_or(&[][..], Vec::as_slice);
        let severity = d.severity.get(life_index).copied().unwrap_or(1.0);
        for i in life.range() {
            let mut target = spec.idle + (spec.full - spec.idle) * d.load[i].powf(spec.load_exp);
            if spec.kind == Kind::Temperature {
                target += spec.ambient * (d.ambient[i] - REFERENCE_AMBIENT_C);
            }
            for e in mode_effects {
                let amount = e.size * severity * shape_value(e.shape, d.wear[i], d.bursts[i]);
                match e.how {
                    How::Add => target += amount,
                    How::Scale => target *= 1.0 + amount,
                }
            }
            let state = thermal.map_or(target, |prev| prev + alpha * (target - prev));
            thermal = Some(state);
            out[i] = measure(rng, spec, state);
        }
    }
    out
}

fn shape_value(shape: Shape, w: f64, burst: f64) -> f64 {
    match shape {
        Shape::Linear => w,
        Shape::Power(p) => w.powf(p),
        Shape::Late(onset) => {
            let x = ((w - onset) / (1.0 - onset)).clamp(0.0, 1.0);
            x * x * (3.0 - 2.0 * x)
        }
        Shape::Bursts => burst,
    }
}

/// The reading as the transmitter reports it: noisy, and never outside what the quantity can be.
fn measure(rng: &mut Rng, spec: &SensorSpec, truth: f64) -> f64 {
    let mut v = truth + spec.noise * rng.normal();
    if spec.kind == Kind::Vibration {
        // Broadband vibration fluctuates in proportion to its level.
        v *= 1.0 + 0.05 * rng.normal();
    }
    match spec.kind {
        Kind::Temperature => v,
        Kind::Vibration => v.max(0.02),
        Kind::PowerFactor => v.clamp(0.0, 1.0),
        Kind::Current | Kind::Voltage | Kind::Power | Kind::Pressure | Kind::Flow | Kind::Speed => v.max(0.0),
    }
}

/// Lost readings, about 0.25 % of cells: single glitches, short runs from one flaky transmitter, and
/// rarer gateway outages that blank every sensor at once.
fn apply_dropouts(rng: &mut Rng, sensors: &mut [Vec<f64>]) {
    const RUN_START: f64 = 0.0006;
    const OUTAGE_START: f64 = 0.0002;
    for column in sensors.iter_mut() {
        let mut i = 0;
        while i < column.len() {
            if rng.uniform() < RUN_START {
                let len = if rng.uniform() < 0.7 { 1 } else { 2 + rng.below(11) };
                blank(column, i, len);
                i += len;
            }
            i += 1;
        }
    }
    let rows = sensors.first().map_or(0, Vec::len);
    let mut i = 0;
    while i < rows {
        if rng.uniform() < OUTAGE_START {
            let len = 1 + rng.below(6);
            for column in sensors.iter_mut() {
                blank(column, i, len);
            }
            i += len;
        }
        i += 1;
    }
}

fn blank(column: &mut [f64], start: usize, len: usize) {
    let end = (start + len).min(column.len());
    if let Some(cells) = column.get_mut(start..end) {
        cells.fill(f64::NAN);
    }
}

/// Hours to the end of the current life, reaching exactly 0 at its last row.
fn remaining_life(lives: &[Life], dt_h: f64, rows: usize) -> Vec<f64> {
    let mut rul = vec![0.0; rows];
    for life in lives {
        for (k, i) in life.range().enumerate() {
            rul[i] = (life.rows - 1 - k) as f64 * dt_h;
        }
    }
    rul
}
