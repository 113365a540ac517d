//! `millwright replay`: the simulator's replay mode. A machine's recorded rows are published over MQTT as
//! live readings, as a gateway would, faster than recorded (see [`crate::data::simulate::replay`]), to the
//! broker and topic of the configuration the daemon reads (`[mqtt]`, `readings.mqtt_topic`).
use crate::data::simulate::replay::{ReplayPlan, ReplayRow, Stamps, plan};
use crate::util::time::{format_timestamp, now_secs};
use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The machine whose recorded rows are sent (a machine of the data folder).
    #[arg(long)]
    from: String,
    /// The machine they are sent as (default: --from). They start after its history ends.
    #[arg(long)]
    machine: Option<String>,
    #[command(flatten)]
    config: super::ConfigArg,
    #[command(flatten)]
    data: super::DataDirArg,
    /// How many times faster than recorded: 3600 sends an hour of hourly rows each second.
    #[arg(long, default_value_t = 3600.0)]
    speed: f64,
    /// Send at most this many rows (default: to the end of the life).
    #[arg(long)]
    rows: Option<usize>,
    /// Rows per message (the JSON layout; the per-sensor layout sends one value per message).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Start after this recorded time (RFC 3339 or epoch seconds) instead of the target's history end.
    #[arg(long)]
    after: Option<String>,
    /// Stamp the rows as if recorded now (the last one when it is sent) instead of with their recorded
    /// times. The target's history must then end before the first of them, and time in life jumps.
    #[arg(long)]
    now: bool,
}

/// Messages a replay may have waiting for the broker's acknowledgement.
const IN_FLIGHT: usize = 64;
/// How long the last acknowledgements may take.
const ACK_WAIT: Duration = Duration::from_secs(30);

pub fn replay(a: &ReplayArgs) -> Result<()> {
    anyhow::ensure!(a.batch >= 1, "--batch must be at least 1");
    let cfg = a.config.load()?;
    let data_dir = a.data.data_dir.clone().unwrap_or_else(|| cfg.data_dir.clone());
    let target = a.machine.clone().unwrap_or_else(|| a.from.clone());
    let source = crate::data::load_machine(&data_dir, &a.from).with_context(|| format!("reading the recorded rows of {}", a.from))?;
    let after = match &a.after {
        Some(text) => crate::util::time::parse_timestamp(text).with_context(|| format!("--after {text:?} is not a time"))?,
        None => crate::data::peek_machine(&data_dir, &target, &crate::data::Caps::default())
            .with_context(|| format!("reading where {target}'s history ends"))?
            .last_time
            .with_context(|| format!("{target} has no rows: give --after"))?,
    };
    // Whole seconds, like the recording: the first row goes out at the next one.
    let start = now_secs().ceil();
    let stamps = if a.now { Stamps::Now } else { Stamps::Recorded };
    let p = plan(&source, after, a.rows, a.speed, stamps, start).map_err(anyhow::Error::msg)?;
    let settings = crate::mqtt::Settings::from_config(&cfg.mqtt, "replay").context("the [mqtt] configuration")?;
    let topic = crate::ingest::ReadingsTopic::parse(&cfg.readings.mqtt_topic, settings.topics.base())
        .map_err(|why| anyhow::anyhow!("readings.mqtt_topic: {why}"))?;
    println!(
        "replaying {} rows of {} (recorded {} – {}{}) as {target} on {} at {}×, {:.0} s",
        p.rows.len(),
        a.from,
        format_timestamp(p.recorded_from),
        format_timestamp(p.recorded_to),
        p.rul_at_start_h.map_or(String::new(), |r| format!(", {r:.0} h before the end of the life")),
        settings.broker,
        a.speed,
        p.rows.last().map_or(0.0, |r| r.at_s),
    );
    let messages = messages(&p, &topic, &target, a.batch);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let acked = runtime.block_on(publish(&settings, start, messages))?;
    println!(
        "sent {} rows in {acked} messages, each acknowledged by the broker; the life {}",
        p.rows.len(),
        if p.to_life_end { "ended" } else { "goes on" }
    );
    Ok(())
}

/// What to publish and when (seconds after the start).
struct Outgoing {
    at_s: f64,
    topic: String,
    payload: Vec<u8>,
}

fn messages(p: &ReplayPlan, topic: &crate::ingest::ReadingsTopic, machine: &str, batch: usize) -> Vec<Outgoing> {
    if topic.per_sensor() {
        return p
            .rows
            .iter()
            .flat_map(|r| {
                r.values.iter().map(move |(s, v)| Outgoing {
                    at_s: r.at_s,
                    topic: topic.topic(machine, Some(s)),
                    payload: json!({ "ts": r.ts, "value": v }).to_string().into_bytes(),
                })
            })
            .collect();
    }
    let row = |r: &ReplayRow| {
        let mut o = serde_json::Map::new();
        o.insert("ts".into(), json!(r.ts));
        for (s, v) in &r.values {
            o.insert(s.clone(), json!(v));
        }
        Value::Object(o)
    };
    // A batch goes out when its last row is due.
    p.rows
        .chunks(batch)
        .map(|c| Outgoing {
            at_s: c.last().map_or(0.0, |r| r.at_s),
            topic: topic.topic(machine, None),
            payload: Value::Array(c.iter().map(row).collect()).to_string().into_bytes(),
        })
        .collect()
}

/// Publishes each message at its time (QoS 1); returns how many the broker acknowledged, which must be all.
async fn publish(settings: &crate::mqtt::Settings, start: f64, messages: Vec<Outgoing>) -> Result<usize> {
    let options = crate::mqtt::wire::base_v311(settings, format!("{}-replay-{}", settings.client_id, std::process::id()));
    let (client, mut events) = AsyncClient::new(options, IN_FLIGHT);
    let total = messages.len();
    let (acks_tx, mut acks) = tokio::sync::watch::channel(0usize);
    let pump = tokio::spawn(async move {
        let mut n = 0;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    n += 1;
                    acks_tx.send_replace(n);
                }
                Ok(_) => {}
                Err(e) => return Err::<(), _>(anyhow::anyhow!("MQTT: {e}")),
            }
        }
    });
    for m in messages {
        let wait = start + m.at_s - now_secs();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        // Bounded: with the connection gone nothing drains the client's queue.
        match tokio::time::timeout(ACK_WAIT, client.publish(m.topic, QoS::AtLeastOnce, false, m.payload)).await {
            Ok(sent) => sent.context("publishing a reading")?,
            Err(_) => break,
        }
        if pump.is_finished() {
            break;
        }
    }
    let done = tokio::time::timeout(ACK_WAIT, acks.wait_for(|n| *n >= total)).await.is_ok_and(|r| r.is_ok());
    let acked = *acks.borrow();
    if pump.is_finished() {
        return match pump.await {
            Ok(Err(e)) => Err(e.context(format!("{acked} of {total} messages acknowledged"))),
            _ => Err(anyhow::anyhow!("the MQTT connection ended; {acked} of {total} messages acknowledged")),
        };
    }
    anyhow::ensure!(done, "the broker acknowledged {acked} of {total} messages within {} s", ACK_WAIT.as_secs());
    let _ = client.disconnect().await;
    pump.abort();
    Ok(acked)
}
