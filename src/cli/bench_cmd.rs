//! `millwright bench [accuracy|scaling|daemon|hostile|ingest|scoring|all]`: prints each table, or JSON with --json for scripts.
use crate::bench::{self, Case, DaemonOptions, HostileOptions, IngestOptions, ScoringOptions};
use crate::ml::TrainParams;
use anyhow::Result;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// Repeats per measurement; tables quote the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Training threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Datasets for `accuracy` (default: all four shared datasets; `nab-windows` adds NAB's 12 labelled series, `nab-traffic` its 7 traffic series forecast 24 h ahead).
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
    /// Machine sizes for `scaling`: ROWS (the demo machine's own 9 sensors) or ROWSxSENSORS.
    #[arg(long, value_delimiter = ',', default_value = "50000,10000x10,50000x10,200000x10,1000000x10,50000x30")]
    cases: Vec<String>,
    /// Training rows the tree models fit on at most (the training default; raise it to measure without thinning).
    #[arg(long, default_value_t = TrainParams::default().max_train_rows)]
    max_train_rows: usize,
    /// Also train the demo machine with the guard's hot thread budget (`guard.hot_threads`, default 1).
    #[arg(long)]
    hot: bool,
    /// Requests per second offered to the daemon.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds of load on the daemon.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// SSE clients watching one task.
    #[arg(long, default_value_t = 50)]
    sse_clients: usize,
    /// Rows of the machine trained under load.
    #[arg(long, default_value_t = 50_000)]
    daemon_rows: usize,
    /// Slowloris connections for `hostile`.
    #[arg(long, default_value_t = 1_100)]
    slow_connections: usize,
    /// Unauthenticated 8 MB body senders for `hostile`.
    #[arg(long, default_value_t = 200)]
    body_senders: usize,
    /// Machines publishing readings for `ingest`.
    #[arg(long, default_value_t = 100)]
    ingest_machines: usize,
    /// Sensors per machine for `ingest`.
    #[arg(long, default_value_t = 20)]
    ingest_sensors: usize,
    /// Readings per second per machine for `ingest`.
    #[arg(long, default_value_t = 1.0)]
    ingest_rate: f64,
    /// Rows of the machine trained (all four models) while `ingest` runs; 0 for none.
    #[arg(long, default_value_t = 0)]
    ingest_train_rows: usize,
    /// Machines with four live models each for `scoring`.
    #[arg(long, default_value_t = 100)]
    scoring_machines: usize,
    /// Rows of history of each machine for `scoring`.
    #[arg(long, default_value_t = 50_000)]
    scoring_rows: usize,
    /// Evaluations measured after every machine's data changed, for `scoring`.
    #[arg(long, default_value_t = 3)]
    scoring_rounds: usize,
    /// Also measure `scoring` while a 4-model training runs in the daemon.
    #[arg(long)]
    scoring_with_training: bool,
    /// Print JSON (one object with every table) instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq)]
enum What {
    Accuracy,
    Scaling,
    Daemon,
    /// The daemon under misbehaving clients (slowloris, body senders, idle connections, fd limit, logins).
    Hostile,
    /// Readings of many machines over MQTT through Mosquitto (`--seconds`, `--ingest-*`); not part of `all`.
    Ingest,
    /// One evaluation on the cadence over many machines with four live models each (`--scoring-*`); not part of `all`.
    Scoring,
    /// Everything but `ingest` and `scoring`.
    All,
}

pub fn bench(a: &BenchArgs) -> Result<()> {
    anyhow::ensure!((1..=100).contains(&a.repeat), "--repeat must be between 1 and 100");
    anyhow::ensure!(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000.0, "--rate must be between 0 and 10000 requests/s");
    anyhow::ensure!(a.seconds.is_finite() && a.seconds > 0.0 && a.seconds <= 3_600.0, "--seconds must be between 0 and 3600");
    let threads = a.threads.unwrap_or_else(|| TrainParams::default().threads);
    anyhow::ensure!(threads >= 1, "--threads must be at least 1");
    let params = TrainParams { threads, max_train_rows: a.max_train_rows, ..TrainParams::default() };
    params.validate().map_err(anyhow::Error::msg)?;
    let dir = WorkDir::new()?;
    let work = dir.0.as_path();
    let mut json = serde_json::Map::new();
    let started = std::time::Instant::now();
    json.insert("machine".into(), machine_line().into());
    if !a.json {
        println!("millwright {} bench on {}\n", env!("CARGO_PKG_VERSION"), machine_line());
    }
    if matches!(a.what, What::Accuracy | What::All) {
        let datasets: Vec<String> =
            if a.datasets.is_empty() { bench::DATASETS.iter().map(|s| s.to_string()).collect() } else { a.datasets.clone() };
        let rows = bench::accuracy(&datasets, &params, a.repeat)?;
        section(a.json, "accuracy", &rows, &mut json, || bench::print_accuracy(&rows))?;
    }
    if matches!(a.what, What::Scaling | What::All) {
        let mut cases = a.cases.iter().map(|c| Case::parse(c, threads)).collect::<Result<Vec<_>, _>>()?;
        if a.hot {
            let hot = crate::config::Config::default().guard.hot_threads;
            cases.push(Case { threads: hot, ..Case::parse("50000", threads)? });
        }
        let rows = bench::scaling(&cases, &params, a.repeat, &work.join("scaling"))?;
        section(a.json, "scaling", &rows, &mut json, || bench::print_scaling(&rows))?;
    }
    if matches!(a.what, What::Daemon | What::All) {
        let o = DaemonOptions {
            rate: a.rate,
            seconds: a.seconds,
            sse_clients: a.sse_clients,
            rows: a.daemon_rows,
            cancels: 5,
            work_dir: work.join("daemon"),
        };
        std::fs::create_dir_all(&o.work_dir)?;
        let r = bench::daemon(&o)?;
        section(a.json, "daemon", &r, &mut json, || bench::print_daemon(&r))?;
    }
    if matches!(a.what, What::Hostile | What::All) {
        let o = HostileOptions {
            slow_connections: a.slow_connections,
            body_senders: a.body_senders,
            idle_connections: 1_000,
            login_seconds: 3.0,
            work_dir: work.join("hostile"),
        };
        std::fs::create_dir_all(&o.work_dir)?;
        let rows = bench::hostile(&o)?;
        section(a.json, "hostile", &rows, &mut json, || bench::print_hostile(&rows))?;
    }
    if a.what == What::Ingest {
        let o = IngestOptions {
            machines: a.ingest_machines,
            sensors: a.ingest_sensors,
            rate_hz: a.ingest_rate,
            seconds: a.seconds,
            train_rows: a.ingest_train_rows,
            work_dir: work.join("ingest"),
        };
        std::fs::create_dir_all(&o.work_dir)?;
        let r = bench::ingest(&o)?;
        section(a.json, "ingest", &r, &mut json, || bench::print_ingest(&r))?;
    }
    if a.what == What::Scoring {
        let o = ScoringOptions {
            machines: a.scoring_machines,
            rows: a.scoring_rows,
            rounds: a.scoring_rounds,
            with_training: a.scoring_with_training,
            work_dir: work.join("scoring"),
        };
        std::fs::create_dir_all(&o.work_dir)?;
        let r = bench::scoring(&o)?;
        section(a.json, "scoring", &r, &mut json, || bench::print_scoring(&r))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("bench took {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn section<T: serde::Serialize>(
    as_json: bool,
    name: &str,
    value: &T,
    json: &mut serde_json::Map<String, serde_json::Value>,
    print: impl FnOnce(),
) -> Result<()> {
    if as_json {
        json.insert(name.into(), serde_json::to_value(value)?);
    } else {
        println!("== {name}");
        print();
        println!();
    }
    Ok(())
}

/// CPU model, cores and architecture: a table means little without them.
fn machine_line() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores, {}", std::env::consts::ARCH)
}

/// Simulated machines and the daemon's state (hundreds of MB at 1M rows): removed even when a step fails.
struct WorkDir(std::path::PathBuf);

impl WorkDir {
    fn new() -> Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("millwright-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
