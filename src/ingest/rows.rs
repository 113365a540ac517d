//! Reading a body of rows and checking each against the machine: every bad row is named with its reason,
//! never dropped in silence, and never costs the good rows beside it.
use super::error::IngestError;
use super::wal::Batch;
use crate::util::time::{format_timestamp, parse_timestamp};
use serde_json::Value;

/// One row as sent: its time and its values by sensor name (`NaN` = sent as null, i.e. missing).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub ts: f64,
    pub values: Vec<(String, f64)>,
}

/// Why row `row` (0-based, in the order sent) was not accepted.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RowError {
    pub row: usize,
    pub error: String,
}

/// What a machine accepts.
#[derive(Clone, Debug)]
pub struct Rules {
    /// The machine's sensors, in the order rows are stored.
    pub sensors: Vec<String>,
    pub now: f64,
    /// How far ahead of `now` a timestamp may be (clocks on a plant drift).
    pub future_tolerance_s: f64,
    /// The newest accepted timestamp so far, if any.
    pub last_ts: Option<f64>,
    /// How far behind `last_ts` a row may be (gateways resend and reorder a little).
    pub order_tolerance_s: f64,
    /// The end of the machine's history (its files and the readings already compacted into them): a row
    /// must be later, whatever the tolerance, or it would land inside what the models read as the past.
    pub history_end: Option<f64>,
}

/// The accepted rows as one batch for the log, and the rest with their reasons.
#[derive(Clone, Debug)]
pub struct Checked {
    pub batch: Batch,
    pub errors: Vec<RowError>,
}

const TIME_KEYS: [&str; 3] = ["ts", "timestamp", "time"];

/// A JSON object or an array of objects, each `{"ts": ..., "<sensor>": value, ...}`. A malformed body is
/// one error; a malformed row is that row's error.
pub fn parse_json(body: &[u8]) -> Result<Vec<Result<Row, String>>, IngestError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| IngestError::Body(format!("not JSON ({e})")))?;
    match v {
        Value::Array(items) => Ok(items.into_iter().map(row_of).collect()),
        Value::Object(_) => Ok(vec![row_of(v)]),
        other => Err(IngestError::Body(format!("a JSON {} where rows were expected", kind(&other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn row_of(v: Value) -> Result<Row, String> {
    let Value::Object(map) = v else { return Err(format!("a {} instead of an object of readings", kind(&v))) };
    let mut ts = None;
    let mut values = Vec::with_capacity(map.len());
    for (key, value) in map {
        if TIME_KEYS.contains(&key.as_str()) {
            if ts.is_some() {
                return Err(format!("more than one time field ({})", TIME_KEYS.join(", ")));
            }
            let t = match &value {
                Value::String(s) => parse_timestamp(s),
                Value::Number(n) => n.as_f64(),
                _ => None,
            };
            ts = Some(t.ok_or_else(|| format!("{key} {value} is not a time (RFC 3339 text or epoch seconds)"))?);
            continue;
        }
        let x = match &value {
            Value::Number(n) => n.as_f64(),
            Value::Null => Some(f64::NAN),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if !x.is_infinite() => values.push((key, x)),
            _ => return Err(format!("sensor {key:?} is {value}, not a number (send null for a missing reading)")),
        }
    }
    let ts = ts.ok_or_else(|| "no time field: give \"ts\" as RFC 3339 text or epoch seconds".to_string())?;
    Ok(Row { ts, values })
}

/// One value of `sensor` (the per-sensor topic layout): a bare number, or `{"ts": ..., "value": x}`. A bare
/// number is stamped `arrival_s` rounded down to the second, so the sensors a gateway sends in one burst
/// share one row.
pub fn parse_value(body: &[u8], sensor: &str, arrival_s: f64) -> Result<Vec<Result<Row, String>>, IngestError> {
    let text = std::str::from_utf8(body).map_err(|e| IngestError::Body(format!("a value that is not UTF-8 text ({e})")))?.trim();
    if let Ok(x) = text.parse::<f64>() {
        let row = if x.is_infinite() {
            Err(format!("{sensor:?} is {text}, not a number"))
        } else {
            Ok(Row { ts: arrival_s.floor(), values: vec![(sensor.to_string(), x)] })
        };
        return Ok(vec![row]);
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|_| IngestError::Body(format!("{text:.40?} is neither a number nor JSON {{\"ts\": ..., \"value\": ...}}")))?;
    let Value::Object(mut map) = v else { return Err(IngestError::Body(format!("a JSON {} where a value was expected", kind(&v)))) };
    let Some(value) = map.remove("value") else {
        return Err(IngestError::Body("a JSON object without \"value\": send {\"ts\": ..., \"value\": 1.5}".into()));
    };
    map.insert(sensor.to_string(), value);
    if !TIME_KEYS.iter().any(|k| map.contains_key(*k)) {
        map.insert("ts".into(), Value::from(arrival_s.floor()));
    }
    Ok(vec![row_of(Value::Object(map))])
}

/// CSV with a header line: one time column (`ts`, `timestamp` or `time`) and one column per sensor; an
/// empty cell is a missing reading. Comma or semicolon, whichever the header uses; no quoted commas.
pub fn parse_csv(body: &[u8]) -> Result<Vec<Result<Row, String>>, IngestError> {
    let text = std::str::from_utf8(body).map_err(|e| IngestError::Body(format!("CSV that is not UTF-8 text ({e})")))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or_else(|| IngestError::Body("an empty CSV (a header line is needed)".into()))?;
    let sep = if header.contains(';') && !header.contains(',') { ';' } else { ',' };
    let cell = |c: &str| c.trim().trim_matches('"').to_string();
    let names: Vec<String> = header.split(sep).map(cell).collect();
    let time_col = names
        .iter()
        .position(|n| TIME_KEYS.contains(&n.as_str()))
        .ok_or_else(|| IngestError::Body(format!("a CSV header without a time column ({}): {header:?}", TIME_KEYS.join(", "))))?;
    Ok(lines
        .map(|line| {
            let cells: Vec<String> = line.split(sep).map(cell).collect();
            if cells.len() != names.len() {
                return Err(format!("{} cells where the header has {}", cells.len(), names.len()));
            }
            let ts = parse_timestamp(&cells[time_col])
                .ok_or_else(|| format!("{} {:?} is not a time (RFC 3339 text or epoch seconds)", names[time_col], cells[time_col]))?;
            let mut values = Vec::with_capacity(names.len() - 1);
            for (i, (name, c)) in names.iter().zip(&cells).enumerate().filter(|(i, _)| *i != time_col) {
                let x = if c.is_empty() { Some(f64::NAN) } else { c.parse::<f64>().ok().filter(|x| !x.is_infinite()) };
                match x {
                    Some(x) => values.push((name.clone(), x)),
                    None => {
                        return Err(format!(
                            "sensor {name:?} (column {}) is {c:?}, not a number (leave the cell empty for a missing reading)",
                            i + 1
                        ));
                    }
                }
            }
            Ok(Row { ts, values })
        })
        .collect())
}

/// Keeps the rows `rules` accept, in the order sent, as one batch of `machine`.
pub fn check_rows(machine: &str, rows: Vec<Result<Row, String>>, rules: &Rules) -> Checked {
    let mut batch = Batch { machine: machine.to_string(), sensors: rules.sensors.clone(), rows: Vec::new() };
    let mut errors = Vec::new();
    let mut last = rules.last_ts;
    for (i, row) in rows.into_iter().enumerate() {
        match row.and_then(|r| check_row(r, rules, last)) {
            Ok((ts, values)) => {
                last = Some(last.map_or(ts, |l| l.max(ts)));
                batch.rows.push((ts, values));
            }
            Err(error) => errors.push(RowError { row: i, error }),
        }
    }
    Checked { batch, errors }
}

fn check_row(row: Row, rules: &Rules, last: Option<f64>) -> Result<(f64, Vec<f64>), String> {
    let ahead = row.ts - rules.now;
    if ahead > rules.future_tolerance_s {
        return Err(format!(
            "time {} is {ahead:.0} s in the future (tolerance {} s): check the sender's clock",
            format_timestamp(row.ts),
            rules.future_tolerance_s
        ));
    }
    if let Some(h) = rules.history_end
        && row.ts <= h
    {
        return Err(format!(
            "time {} is not after the machine's history, which ends at {}: only newer readings are taken in",
            format_timestamp(row.ts),
            format_timestamp(h)
        ));
    }
    if let Some(l) = last
        && row.ts < l - rules.order_tolerance_s
    {
        return Err(format!(
            "time {} is {:.0} s older than the newest reading {} (tolerance {} s): readings arrive in time order",
            format_timestamp(row.ts),
            l - row.ts,
            format_timestamp(l),
            rules.order_tolerance_s
        ));
    }
    let mut values = vec![f64::NAN; rules.sensors.len()];
    let mut any = false;
    for (name, x) in row.values {
        let Some(i) = rules.sensors.iter().position(|s| *s == name) else {
            return Err(format!("unknown sensor {name:?}; this machine has {}", list(&rules.sensors)));
        };
        any |= !x.is_nan();
        values[i] = x;
    }
    if !any {
        return Err("no sensor reading in the row".into());
    }
    Ok((row.ts, values))
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = names.iter().take(SHOWN).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            sensors: vec!["temp".into(), "vib".into()],
            now: parse_timestamp("2026-12-06T12:00:00Z").unwrap(),
            future_tolerance_s: 300.0,
            last_ts: parse_timestamp("2026-12-06T11:00:00Z"),
            order_tolerance_s: 60.0,
            history_end: None,
        }
    }

    #[test]
    fn good_rows_are_kept_in_sensor_order_and_each_bad_row_says_why() {
        let body = br#"[
            {"ts": "2026-12-06T11:00:01Z", "vib": 0.5, "temp": 40},
            {"ts": "2026-12-06T11:00:02Z", "temp": "41.5", "vib": null},
            {"ts": "2026-12-06T11:00:03Z", "temp": "hot"},
            {"ts": "2026-12-06T11:00:04Z", "pressure": 3},
            {"temp": 1},
            {"ts": "2026-12-06T13:00:00Z", "temp": 1},
            {"ts": "2026-12-06T10:00:00Z", "temp": 1},
            {"ts": "2026-12-06T10:59:30Z", "temp": 2},
            {"ts": 1796558405, "vib": null},
            7
        ]"#;
        let checked = check_rows("m1", parse_json(body).unwrap(), &rules());
        let b = &checked.batch;
        assert_eq!((b.machine.as_str(), b.sensors.clone()), ("m1", vec!["temp".to_string(), "vib".to_string()]));
        assert_eq!(b.rows.len(), 3, "{:?}", checked.errors);
        assert_eq!(b.rows[0].1, vec![40.0, 0.5]);
        assert_eq!(b.rows[1].1[0], 41.5);
        assert!(b.rows[1].1[1].is_nan());
        assert_eq!(b.rows[2].0, parse_timestamp("2026-12-06T10:59:30Z").unwrap(), "within the order tolerance");
        let why: Vec<(usize, &str)> = checked.errors.iter().map(|e| (e.row, e.error.as_str())).collect();
        let expect = [
            (2, "sensor \"temp\" is \"hot\", not a number"),
            (3, "unknown sensor \"pressure\"; this machine has \"temp\", \"vib\""),
            (4, "no time field"),
            (5, "in the future"),
            (6, "older than the newest reading"),
            (8, "no sensor reading"),
            (9, "a number instead of an object"),
        ];
        assert_eq!(why.len(), expect.len(), "{why:?}");
        for ((row, msg), (want_row, want)) in why.iter().zip(expect) {
            assert_eq!(*row, want_row);
            assert!(msg.contains(want), "row {row}: {msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_rows_is_one_clear_error() {
        for (body, want) in [(&b"{"[..], "not JSON"), (b"\"x\"", "a JSON string"), (b"3", "a JSON number")] {
            let e = parse_json(body).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("send a JSON object"), "{e}");
        }
        assert_eq!(parse_json(b"[]").unwrap().len(), 0);
    }

    #[test]
    fn csv_rows_read_like_json_rows() {
        let csv =
            b"ts;temp;vib\n2026-12-06T11:00:01Z;40;0.5\n\n2026-12-06T11:00:02Z;41.5;\n2026-12-06T11:00:03Z;hot;1\n2026-12-06T11:00:04Z;1\n";
        let checked = check_rows("m1", parse_csv(csv).unwrap(), &rules());
        assert_eq!(checked.batch.rows.len(), 2, "{:?}", checked.errors);
        assert_eq!(checked.batch.rows[0].1, vec![40.0, 0.5]);
        assert!(checked.batch.rows[1].1[1].is_nan());
        let why: Vec<(usize, &str)> = checked.errors.iter().map(|e| (e.row, e.error.as_str())).collect();
        assert_eq!(why.len(), 2);
        assert!(why[0].0 == 2 && why[0].1.contains("\"temp\" (column 2) is \"hot\""), "{why:?}");
        assert!(why[1].0 == 3 && why[1].1.contains("2 cells where the header has 3"), "{why:?}");
        for (bad, want) in [(&b""[..], "an empty CSV"), (b"temp,vib\n1,2\n", "without a time column"), (b"\xff\xfe", "not UTF-8")] {
            let e = parse_csv(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn the_order_check_follows_the_rows_of_the_same_batch() {
        let r = Rules { last_ts: None, ..rules() };
        let body = br#"[{"ts": "2026-12-06T11:30:00Z", "temp": 1}, {"ts": "2026-12-06T11:00:00Z", "temp": 2}]"#;
        let checked = check_rows("m1", parse_json(body).unwrap(), &r);
        assert_eq!((checked.batch.rows.len(), checked.errors.len()), (1, 1));
        assert_eq!(checked.errors[0].row, 1);
    }

    #[test]
    fn a_row_inside_the_machines_history_is_refused_whatever_the_tolerance() {
        let r = Rules { history_end: parse_timestamp("2026-12-06T11:00:30Z"), ..rules() };
        let body = br#"[{"ts": "2026-12-06T11:00:30Z", "temp": 1}, {"ts": "2026-12-06T11:00:31Z", "temp": 2}]"#;
        let checked = check_rows("m1", parse_json(body).unwrap(), &r);
        assert_eq!(checked.batch.rows.len(), 1);
        assert!(checked.errors[0].error.contains("not after the machine's history"), "{:?}", checked.errors);
    }

    #[test]
    fn one_value_per_message_reads_as_a_row_of_that_sensor() {
        let arrival = 1_780_000_000.7;
        let one = |body: &[u8]| parse_value(body, "temp", arrival).map(|mut r| r.remove(0));
        assert_eq!(one(b" 41.5\n").unwrap(), Ok(Row { ts: 1_780_000_000.0, values: vec![("temp".into(), 41.5)] }));
        let stamped = one(br#"{"ts": "2026-12-06T11:00:01Z", "value": 2}"#).unwrap().unwrap();
        assert_eq!((stamped.ts, stamped.values), (parse_timestamp("2026-12-06T11:00:01Z").unwrap(), vec![("temp".into(), 2.0)]));
        assert!(one(br#"{"value": "hot"}"#).unwrap().unwrap_err().contains("not a number"));
        for (bad, want) in [(&b"hot"[..], "neither a number"), (b"[1]", "a JSON array"), (br#"{"v": 1}"#, "without \"value\"")] {
            let e = one(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
