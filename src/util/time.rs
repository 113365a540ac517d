//! Timestamps are carried as f64 seconds since the Unix epoch (UTC) everywhere inside millwright.
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses ISO-8601 / RFC 3339 text, `YYYY-MM-DD HH:MM:SS[.fff]`, a bare date, or epoch seconds.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros() as f64 / 1e6);
    }
    const FORMATS: [&str; 4] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"];
    for f in FORMATS {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, f) {
            return Some(dt.and_utc().timestamp_micros() as f64 / 1e6);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|dt| dt.and_utc().timestamp() as f64)
}

/// RFC 3339 text in UTC, seconds precision (what the API and reports show).
pub fn format_timestamp(secs: f64) -> String {
    if !secs.is_finite() {
        return String::from("invalid");
    }
    DateTime::<Utc>::from_timestamp_micros((secs * 1e6).round() as i64)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{secs}"))
}

pub fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_timestamp("1970-01-01T00:01:00Z"), Some(60.0));
        assert_eq!(parse_timestamp("1970-01-01 00:01:00"), Some(60.0));
        assert_eq!(parse_timestamp("2013-12-15 07:00:00.000000"), parse_timestamp("2013-12-15T07:00:00Z"));
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400.0));
        assert_eq!(parse_timestamp("3600"), Some(3600.0));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("NaN"), None);
        assert_eq!(format_timestamp(60.0), "1970-01-01T00:01:00Z");
    }
}
