//! Sensor and feature names as a plant engineer reads them: `overall_rms_mm_s__max_72` → "max of vibration
//! RMS over 72 h". Works on names alone, so new sensors and new feature kinds degrade to readable words
//! rather than failing.

/// Unit suffixes a sensor name ends with; dropped from the words (the unit is shown elsewhere).
const UNITS: &[&str] = &["mm_s", "m3_h", "c", "degc", "kw", "a", "v", "bar", "rpm", "hz", "pct", "kpa", "psi", "nm", "l_min", "g"];

/// Words that read better spelled out or capitalised.
fn word(w: &str) -> String {
    match w {
        "rms" => "RMS".into(),
        "temp" => "temperature".into(),
        "dp" => "differential pressure".into(),
        "pf" => "power factor".into(),
        "vib" => "vibration".into(),
        "de" => "drive-end".into(),
        "nde" => "non-drive-end".into(),
        other => other.into(),
    }
}

/// "overall_rms_mm_s" → "vibration RMS"; "bearing_temp_C" → "bearing temperature".
pub fn sensor(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let mut stem = lower.as_str();
    let mut unit = "";
    for u in UNITS {
        if let Some(s) = stem.strip_suffix(&format!("_{u}")) {
            stem = s;
            unit = u;
            break;
        }
    }
    let mut words: Vec<String> = stem.split('_').filter(|w| !w.is_empty()).map(word).collect();
    // A velocity in mm/s is a vibration reading; say so when the name does not.
    if unit == "mm_s" && !words.iter().any(|w| w.contains("vibration")) {
        words.retain(|w| w != "overall" && w != "velocity");
        words.insert(0, "vibration".into());
    }
    if words.is_empty() { name.to_string() } else { words.join(" ") }
}

/// "overall_rms_mm_s__max_72" → "max of vibration RMS over 72 h" (with hourly data); names without the
/// `<sensor>__<stat>_<window>` shape come back as sensor words.
pub fn feature(name: &str, interval_s: f64) -> String {
    let Some((sensor_name, rest)) = name.split_once("__") else { return sensor(name) };
    let (stat, window) = match rest.rsplit_once('_') {
        Some((s, w)) if w.parse::<u64>().is_ok() => (s, w.parse::<u64>().ok()),
        _ => (rest, None),
    };
    let stat = match stat {
        "std" => "spread",
        "slope" => "trend",
        "last" | "value" => "latest",
        other => other,
    };
    match window {
        Some(w) => format!("{stat} of {} over {}", sensor(sensor_name), span(w as f64 * interval_s)),
        None => format!("{stat} of {}", sensor(sensor_name)),
    }
}

/// The sensor a feature is computed from.
pub fn feature_sensor(name: &str) -> &str {
    name.split_once("__").map_or(name, |(s, _)| s)
}

/// A duration in the unit a person would use: "45 min", "72 h", "3 days".
pub fn span(secs: f64) -> String {
    if !secs.is_finite() || secs <= 0.0 {
        return "a moment".into();
    }
    let h = secs / 3600.0;
    if h < 1.0 {
        format!("{} min", (secs / 60.0).round().max(1.0))
    } else if h < 96.0 {
        format!("{} h", h.round())
    } else {
        format!("{} days", (h / 24.0).round())
    }
}

/// An age as a person says it: hours up to two days, then days ("72 h" reads as "3 days").
pub fn age(secs: f64) -> String {
    if secs.is_finite() && secs >= 48.0 * 3600.0 { format!("{} days", (secs / 86_400.0).round()) } else { span(secs) }
}

/// A data interval as a word where there is one: 3600 s → "hourly".
pub fn cadence(interval_s: f64) -> String {
    match interval_s.round() as i64 {
        60 => "every minute".into(),
        600 => "every 10 minutes".into(),
        900 => "every 15 minutes".into(),
        1800 => "every 30 minutes".into(),
        3600 => "hourly".into(),
        86_400 => "daily".into(),
        _ => format!("every {}", span(interval_s)),
    }
}

/// The closest "n in d" with d ≤ 10 to a share (0.68 → (2, 3)), for "2 in 3 alarms are false".
pub fn fraction(share: f64) -> (u32, u32) {
    let share = share.clamp(0.0, 1.0);
    let mut best = (0, 1, f64::INFINITY);
    // Denominators people use for "k in n": halves to fifths, and tenths.
    for d in [1u32, 2, 3, 4, 5, 10] {
        let n = (share * f64::from(d)).round() as u32;
        let err = (f64::from(n) / f64::from(d) - share).abs();
        if err + 1e-9 < best.2 {
            best = (n, d, err);
        }
    }
    (best.0, best.1)
}

/// Names joined for a sentence: "a", "a and b", "a, b and c".
pub fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_and_features_read_as_words() {
        assert_eq!(sensor("overall_rms_mm_s"), "vibration RMS");
        assert_eq!(sensor("bearing_temp_C"), "bearing temperature");
        assert_eq!(sensor("bearing_de_temp_C"), "bearing drive-end temperature");
        assert_eq!(sensor("discharge_pressure_bar"), "discharge pressure");
        assert_eq!(sensor("x"), "x");
        assert_eq!(feature("overall_rms_mm_s__max_72", 3600.0), "max of vibration RMS over 72 h");
        assert_eq!(feature("bearing_temp_C__slope_24", 600.0), "trend of bearing temperature over 4 h");
        assert_eq!(feature("current_A", 3600.0), "current");
        assert_eq!(feature_sensor("current_A__mean_6"), "current_A");
    }

    #[test]
    fn cadence_fraction_and_join() {
        assert_eq!(cadence(3600.0), "hourly");
        assert_eq!(cadence(7200.0), "every 2 h");
        assert_eq!(fraction(827.0 / (827.0 + 386.0)), (2, 3));
        assert_eq!(fraction(0.5), (1, 2));
        assert_eq!(join(&["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(span(41.0 * 3600.0), "41 h");
        assert_eq!(span(10.0 * 86400.0), "10 days");
        assert_eq!(age(72.0 * 3600.0), "3 days");
        assert_eq!(age(30.0 * 3600.0), "30 h");
        assert_eq!(fraction(5.0 / 7.0), (7, 10));
    }
}
