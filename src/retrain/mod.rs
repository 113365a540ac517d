//! Retraining without anyone asking: each machine's `retrain` setting (its `machine.toml`, else the
//! configuration's default) says when, [`When::due`] decides at each fleet evaluation, and [`schedule`]
//! queues a job for all four models through the same bounded queue a person uses.
pub mod schedule;

use chrono::{DateTime, Datelike, Duration as Days, NaiveTime, TimeZone, Weekday};

/// When a machine's models are trained again.
#[derive(Clone, Debug, PartialEq)]
pub enum When {
    Off,
    /// Every day at this minute of the day, local time.
    Daily {
        minute: u32,
    },
    /// Every week on this day at this minute, local time.
    Weekly {
        day: Weekday,
        minute: u32,
    },
    /// Once the machine's data reaches this many hours past the data the live models learned from.
    AfterNewHours(f64),
    /// When the latest readings drifted far from the training data ("large" drift).
    OnDrift,
}

pub const SYNTAX: &str =
    "\"off\", \"daily@02:00\", \"weekly@sun 03:00\", \"after 24 new hours of data\" or \"on drift\" (times are the Pi's local time)";

fn hh_mm(s: &str) -> Option<u32> {
    use chrono::Timelike;
    let t = NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

impl When {
    pub fn parse(text: &str) -> Result<When, String> {
        let s = text.trim().to_ascii_lowercase();
        let bad = || format!("retrain = {text:?} is not a schedule: write {SYNTAX}");
        if s == "off" || s.is_empty() {
            return Ok(When::Off);
        }
        if s == "on drift" {
            return Ok(When::OnDrift);
        }
        if let Some(t) = s.strip_prefix("daily@") {
            return hh_mm(t).map(|minute| When::Daily { minute }).ok_or_else(bad);
        }
        if let Some(rest) = s.strip_prefix("weekly@") {
            let (day, t) = rest.trim().split_once(' ').ok_or_else(bad)?;
            let day: Weekday = day.parse().map_err(|_| bad())?;
            return hh_mm(t).map(|minute| When::Weekly { day, minute }).ok_or_else(bad);
        }
        if let Some(rest) = s.strip_prefix("after ") {
            let (n, unit) = rest.trim().split_once(' ').ok_or_else(bad)?;
            let n: f64 = n.parse().map_err(|_| bad())?;
            let unit = unit.trim();
            if !["new hours of data", "hours of new data", "new hours", "h", "hours"].contains(&unit) {
                return Err(bad());
            }
            if !(n.is_finite() && n > 0.0 && n <= 24.0 * 366.0) {
                return Err(format!("retrain = {text:?}: the hours must be more than 0 and at most a year (8784)"));
            }
            return Ok(When::AfterNewHours(n));
        }
        Err(bad())
    }

    /// Why a retrain is due now, or `None`. `last` is when the previous scheduled retrain of the machine was
    /// queued (or, before any, when the schedule was first seen: a new schedule waits for its first slot).
    pub fn due<Tz: TimeZone>(&self, now: &DateTime<Tz>, last: &DateTime<Tz>, facts: &Facts) -> Option<String> {
        match self {
            When::Off => None,
            When::Daily { minute } => {
                let slot = latest_slot(now, *minute, None)?;
                (slot > *last).then(|| format!("daily retrain at {:02}:{:02}", minute / 60, minute % 60))
            }
            When::Weekly { day, minute } => {
                let slot = latest_slot(now, *minute, Some(*day))?;
                (slot > *last).then(|| format!("weekly retrain on {day} at {:02}:{:02}", minute / 60, minute % 60))
            }
            When::AfterNewHours(n) => {
                let new = facts.new_data_hours?;
                (new >= *n).then(|| format!("{new:.1} hours of data newer than the live models (retrain after {n} h)"))
            }
            When::OnDrift => facts.large_drift.clone().map(|why| format!("large drift: {why}")),
        }
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            When::Off => write!(f, "off"),
            When::Daily { minute } => write!(f, "daily@{:02}:{:02}", minute / 60, minute % 60),
            When::Weekly { day, minute } => write!(f, "weekly@{} {:02}:{:02}", day.to_string().to_lowercase(), minute / 60, minute % 60),
            When::AfterNewHours(n) => write!(f, "after {n} new hours of data"),
            When::OnDrift => write!(f, "on drift"),
        }
    }
}

/// What the fleet's last evaluation knows about a machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Hours between the end of the data the live models learned from and the end of the machine's data.
    pub new_data_hours: Option<f64>,
    /// The sensors that drifted far, when the drift is large.
    pub large_drift: Option<String>,
}

/// The latest time at `minute` of a day (on `day`, when given) that is not after `now`. A minute that does
/// not exist that day (a clock moved forward) is skipped to the previous day that has it.
fn latest_slot<Tz: TimeZone>(now: &DateTime<Tz>, minute: u32, day: Option<Weekday>) -> Option<DateTime<Tz>> {
    let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
    let tz = now.timezone();
    (0..=8).find_map(|back| {
        let date = now.date_naive() - Days::days(back);
        if day.is_some_and(|d| date.weekday() != d) {
            return None;
        }
        let at = tz.from_local_datetime(&date.and_time(time)).earliest()?;
        (at <= *now).then_some(at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn schedules_parse_print_and_refuse_what_they_cannot_mean() {
        for (text, want) in [
            ("off", When::Off),
            ("Daily@02:00", When::Daily { minute: 120 }),
            ("weekly@sun 03:30", When::Weekly { day: Weekday::Sun, minute: 210 }),
            ("after 24 new hours of data", When::AfterNewHours(24.0)),
            ("after 1.5 h", When::AfterNewHours(1.5)),
            ("on drift", When::OnDrift),
        ] {
            let w = When::parse(text).unwrap();
            assert_eq!(w, want, "{text}");
            assert_eq!(When::parse(&w.to_string()).unwrap(), w, "prints as it parses: {w}");
        }
        for bad in ["daily@25:00", "daily", "weekly@someday 03:00", "after x hours", "after 0 h", "after 5 days", "hourly"] {
            let e = When::parse(bad).unwrap_err();
            assert!(e.contains(bad) && (e.contains("daily@02:00") || e.contains("at most")), "{bad}: {e}");
        }
    }

    #[test]
    fn a_slot_is_due_once_after_it_passes_and_new_data_or_drift_when_they_reach_the_setting() {
        let none = Facts::default();
        let daily = When::Daily { minute: 120 };
        let last = at("2026-12-06T10:00:00Z");
        assert_eq!(daily.due(&at("2026-12-07T01:59:00Z"), &last, &none), None, "before the slot");
        assert!(daily.due(&at("2026-12-07T02:00:00Z"), &last, &none).is_some(), "at the slot");
        assert!(daily.due(&at("2026-12-07T09:00:00Z"), &last, &none).is_some(), "a slot missed while down is caught up");
        assert_eq!(daily.due(&at("2026-12-07T09:00:00Z"), &at("2026-12-07T02:00:30Z"), &none), None, "once per slot");
        let weekly = When::Weekly { day: Weekday::Sun, minute: 180 };
        // 2026-12-06 is a Sunday.
        assert!(weekly.due(&at("2026-12-06T03:00:00Z"), &at("2026-12-01T00:00:00Z"), &none).is_some());
        assert_eq!(weekly.due(&at("2026-12-12T23:00:00Z"), &at("2026-12-06T03:01:00Z"), &none), None, "not before next Sunday");
        assert!(weekly.due(&at("2026-12-13T03:00:00Z"), &at("2026-12-06T03:01:00Z"), &none).is_some());
        let after = When::AfterNewHours(24.0);
        assert_eq!(after.due(&last, &last, &Facts { new_data_hours: Some(23.9), large_drift: None }), None);
        assert!(after.due(&last, &last, &Facts { new_data_hours: Some(24.0), large_drift: None }).is_some());
        assert_eq!(after.due(&last, &last, &none), None, "no live models: nothing to be newer than");
        let drift = Facts { new_data_hours: None, large_drift: Some("vibration".into()) };
        assert!(When::OnDrift.due(&last, &last, &drift).unwrap().contains("vibration"));
        assert_eq!(When::OnDrift.due(&last, &last, &none), None);
    }
}
