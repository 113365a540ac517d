//! The command line: the binary's edge, where errors become messages and exit codes.
mod data_cmds;
mod ml_cmds;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "millwright", version, about = "Trains the four predictive-maintenance models of a machine, on the device beside it.",
    long_about = "millwright trains, per machine, a failure classifier, a remaining-useful-life regressor, an anomaly detector \
and a 24 h sensor forecaster from the machine's sensor history.\n\nA machine is a folder DATA_DIR/machines/<id>/ holding \
train/val/test .parquet or .csv files (the seed layout) or a machine.toml describing any CSV/Parquet files.\n\n\
Start with:  millwright simulate && millwright machines")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct DataDirArg {
    /// Folder holding machines/<id>/ (default: ./data)
    #[arg(long, env = "MILLWRIGHT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Write a demo fleet of simulated machines (run-to-failure lives, regimes, daily cycle, dropouts).
    Simulate(data_cmds::SimulateArgs),
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
    InspectModel {
        file: PathBuf,
    },
    /// Run the standard protocol of a shared dataset (or train and evaluate any machine).
    Eval(ml_cmds::EvalArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => data_cmds::simulate(&args),
        Command::Machines { data, json } => data_cmds::machines(&data.data_dir, json),
        Command::InspectData { machine, data } => data_cmds::inspect(&data.data_dir, &machine),
        Command::Train(args) => ml_cmds::train(&args),
        Command::Predict(args) => ml_cmds::predict(&args),
        Command::InspectModel { file } => ml_cmds::inspect_model(&file),
        Command::Eval(args) => ml_cmds::eval(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
