//! Command-line definitions (clap derive) only; `main.rs` acts on them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use sweep::report::Format;
use sweep::spec::DeviceName;

/// Declarative hyperparameter sweeps for image classifiers, tracked in SQLite.
#[derive(Debug, Parser)]
#[command(name = "sweep", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train every trial of an experiment file and record the results.
    Run(RunArgs),
    /// Continue a stored sweep with the spec it was last run with: finished trials are kept,
    /// unfinished ones continue from their last completed epoch.
    Resume(ResumeArgs),
    /// Check an experiment file and print its expanded trials without running them.
    Validate(ValidateArgs),
    /// List recorded trials with their parameters, status and final metrics.
    Ls(LsArgs),
}

/// Experiment file and layered overrides, shared by `run` and `validate`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Override a setting, e.g. --set grid.lr=0.01 or --set 'grid.arch=["mlp","cnn"]'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// `sweep run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    #[command(flatten)]
    pub options: RunOptionArgs,
}

/// `sweep resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Name of a sweep stored in the database.
    pub sweep: String,
    #[command(flatten)]
    pub options: RunOptionArgs,
}

/// Where and how a sweep runs, shared by `run` and `resume`.
#[derive(Debug, Args)]
pub struct RunOptionArgs {
    /// Results database (created if missing).
    #[arg(long, env = "SWEEP_DB", default_value = "sweep.db")]
    pub db: PathBuf,
    /// Trials trained at once (overrides [sweep] jobs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Compute threads per trial (overrides [sweep] threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Devices, comma-separated: cpu, tch-cpu, cuda:N (overrides [sweep] devices).
    #[arg(long, value_delimiter = ',', value_name = "DEVICE,...")]
    pub devices: Option<Vec<DeviceName>>,
    /// Directory with the IDX files (overrides [data] dir and SWEEP_DATA).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Checkpoint root (default: runs/ beside the database).
    #[arg(long)]
    pub runs: Option<PathBuf>,
}

/// `sweep validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `sweep ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Results database.
    #[arg(long, env = "SWEEP_DB", default_value = "sweep.db")]
    pub db: PathBuf,
    /// Only this sweep.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}
