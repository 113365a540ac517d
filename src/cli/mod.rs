//! The command line: the binary's edge, where errors become messages and exit codes.
mod bench_cmd;
mod data_cmds;
mod ml_cmds;
mod replay_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "millwright",
    version,
    about = "Trains the four predictive-maintenance models of a machine, on the device beside it.",
    long_about = "millwright trains, per machine, a failure classifier, a remaining-useful-life regressor, an anomaly detector \
and a 24 h sensor forecaster from the machine's sensor history.\n\nA machine is a folder DATA_DIR/machines/<id>/ holding \
train/val/test .parquet or .csv files (the legacy layout) or a machine.toml describing any CSV/Parquet files.\n\n\
Start with:  millwright simulate && millwright machines"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct DataDirArg {
    /// Folder holding machines/<id>/ (default: the config's data_dir — /etc/millwright/config.toml or
    /// MILLWRIGHT_DATA_DIR — else ./data)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let env: Vec<(String, String)> = std::env::vars().collect();
        Ok(crate::config::load(None, &env)?.data_dir)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write a demo fleet of simulated machines (run-to-failure lives, regimes, daily cycle, dropouts).
    Simulate(data_cmds::SimulateArgs),
    /// The simulator's replay: a machine's recorded rows published over MQTT as live readings, faster than
    /// recorded, from where the target machine's history ends to the end of that life.
    Replay(replay_cmd::ReplayArgs),
    /// List the machines in the data folder: id, family, rows, sensors, lives, labels/RUL.
    Machines {
        #[command(flatten)]
        data: DataDirArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show how a machine's data was read: layout, files, columns, ranges, missing values.
    InspectData {
        /// Machine id, or a path to a machine folder.
        machine: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Train a machine's models (all four by default) with live progress; prints metrics beside baselines.
    Train(ml_cmds::TrainArgs),
    /// Answer with every trained model of a machine for its latest data.
    Predict(ml_cmds::PredictArgs),
    /// Show a model file's header: type, version, features, data fingerprint, metrics.
    InspectModel { file: PathBuf },
    /// Run the standard protocol of a shared dataset (or train and evaluate any machine).
    Eval(ml_cmds::EvalArgs),
    /// Measure accuracy on the shared datasets, scaling with rows and sensors, and the daemon under load
    /// (the tables of BENCHMARKS.md).
    Bench(bench_cmd::BenchArgs),
    /// Run the daemon: HTTP API and job queue (creates the demo fleet when the data folder is empty).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on (overrides `listen`), e.g. 127.0.0.1:0 for any free port.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Probe a running daemon's /api/health: exit 0 when healthy, 1 otherwise.
    Healthcheck {
        #[command(flatten)]
        config: ConfigArg,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
    /// Configuration: print the commented default file, or check and show the effective one.
    Config {
        #[command(flatten)]
        config: ConfigArg,
        /// Print a commented default configuration file.
        #[arg(long)]
        print_default: bool,
    },
}

#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// Config file (default: /etc/millwright/config.toml when present, else built-in defaults);
    /// MILLWRIGHT_<KEY> environment variables override it (`__` between nested keys).
    #[arg(long, env = "MILLWRIGHT_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<crate::config::Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Ok(crate::config::load(self.config.as_deref(), &env)?)
    }
}

/// Logs to the journal, with structured fields (TASK_ID, MACHINE_ID, MODEL_TYPE, ...), when systemd connected
/// our stderr to it; plain stderr otherwise. A missing journald never stops the daemon: it falls back to stderr
/// and says so.
fn init_logging(level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MILLWRIGHT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{level},sled=warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // systemd sets JOURNAL_STREAM to the device:inode of the stream it gave us; checking it against our
    // stderr keeps a shell started from a unit (which inherits the variable) logging to its terminal.
    let under_journal = std::env::var("JOURNAL_STREAM").is_ok_and(|v| stderr_is_stream(&v));
    let journald = under_journal.then(tracing_journald::layer).transpose();
    let fallback_note = match journald {
        // No prefix: fields show as TASK_ID=…, so `journalctl -u millwright TASK_ID=<id>` finds a job's lines.
        Ok(Some(layer)) => {
            let _ = registry.with(layer.with_field_prefix(None)).try_init();
            return;
        }
        Ok(None) => None,
        Err(e) => Some(format!("journald is not reachable ({e}); logging to stderr")),
    };
    let _ =
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal())).try_init();
    if let Some(note) = fallback_note {
        tracing::warn!("{note}");
    }
}

/// Whether `JOURNAL_STREAM` ("device:inode") names the file our stderr is.
#[cfg(unix)]
fn stderr_is_stream(journal_stream: &str) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.trim().parse::<u64>(), ino.trim().parse::<u64>()) else { return false };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    std::fs::File::from(fd).metadata().is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

#[cfg(not(unix))]
fn stderr_is_stream(_: &str) -> bool {
    false
}

/// `millwright inspect-data m | head` ends when `head` does, as any Unix tool would, instead of panicking
/// about a broken pipe: Rust ignores SIGPIPE, so printing to a closed pipe failed inside `println!`. Not
/// for the daemon, the benchmarks or the health check, which write to sockets whose peers may vanish and must
/// get an error for that, not a signal.
fn end_quietly_when_stdout_closes() {
    // SAFETY: sets the default disposition of one signal, before any thread is started; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn main() -> ExitCode {
    crate::util::limit_allocator_arenas();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Bench(_) | Command::Healthcheck { .. }) {
        end_quietly_when_stdout_closes();
    }
    let result = match cli.command {
        Command::Simulate(args) => data_cmds::simulate(&args),
        Command::Replay(args) => replay_cmd::replay(&args),
        Command::Machines { data, json } => data.dir().and_then(|d| data_cmds::machines(&d, json)),
        Command::InspectData { machine, data } => data.dir().and_then(|d| data_cmds::inspect(&d, &machine)),
        Command::Train(args) => ml_cmds::train(&args),
        Command::Predict(args) => ml_cmds::predict(&args),
        Command::InspectModel { file } => ml_cmds::inspect_model(&file),
        Command::Eval(args) => ml_cmds::eval(&args),
        Command::Bench(args) => bench_cmd::bench(&args),
        Command::Serve { config, listen } => config.load().and_then(|mut cfg| {
            if let Some(l) = listen {
                cfg.listen = l;
            }
            init_logging(&cfg.log_level);
            crate::daemon::serve(cfg)
        }),
        Command::Healthcheck { config, timeout } => {
            config.load().and_then(|cfg| crate::daemon::healthcheck(&cfg, std::time::Duration::from_secs_f64(timeout.clamp(0.1, 60.0))))
        }
        Command::Config { config, print_default } => {
            if print_default {
                print!("{}", crate::config::print_default());
                Ok(())
            } else {
                config.load().and_then(|cfg| {
                    for note in cfg.deprecations() {
                        eprintln!("warning: {note}");
                    }
                    println!("{}", serde_json::to_string_pretty(&cfg.summary())?);
                    Ok(())
                })
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
