//! Command-line definitions (clap derive) only; `main.rs` acts on them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use sweep::experiment::DeviceName;
use sweep::report::{Format, Measure};
use sweep::store::Location;
use sweep::train::PredictSplit;
use sweep::trial::TrialId;

/// What `sweep --version` prints: the version, burn's, and the backends compiled in (burn's and
/// tch's versions come from `Cargo.lock` through `build.rs`).
#[cfg(not(feature = "tch"))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (burn ",
    env!("SWEEP_BURN_VERSION"),
    "; backends: flex (cpu); not built with --features tch: no tch-cpu or cuda)"
);
#[cfg(feature = "tch")]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (burn ",
    env!("SWEEP_BURN_VERSION"),
    "; backends: flex (cpu), tch ",
    env!("SWEEP_TCH_VERSION"),
    " with libtorch 2.9.0 (tch-cpu, cuda:N))"
);

/// Declarative hyperparameter sweeps for image classifiers, tracked in SQLite.
#[derive(Debug, Parser)]
#[command(name = "sweep", version = VERSION, about, propagate_version = true)]
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
    /// Join a stored sweep from any machine sharing its database: claim its trials until none
    /// is left.
    Worker(WorkerArgs),
    /// Register an experiment's sweep and submit a Slurm job array of `sweep worker`s for it.
    Slurm(SlurmArgs),
    /// Queue a configuration for a search's next draw (running or not): the parameters set are
    /// taken as given, the others drawn as usual.
    Enqueue(EnqueueArgs),
    /// Check an experiment file and print its expanded trials without running them.
    Validate(ValidateArgs),
    /// List recorded trials with their parameters, status and final metrics.
    Ls(LsArgs),
    /// Everything about one trial: parameters, epochs, checkpoints, confusion matrix.
    Show(ShowArgs),
    /// The best trial, overall or per value of a parameter.
    Best(BestArgs),
    /// Trials side by side, with the differing fields marked.
    Compare(CompareArgs),
    /// All trials (or all epochs) as CSV or JSON.
    Export(ExportArgs),
    /// Classify the test (or validation) images with a trial's best checkpoint.
    Predict(PredictArgs),
    /// Write a markdown report of a sweep, with SVG learning curves beside it.
    Report(ReportArgs),
    /// Watch and compare sweeps in the browser, live: a read-only web view of the database.
    Serve(ServeArgs),
    /// Delete a sweep: its rows and its checkpoint directory (asks first unless --yes).
    Rm(RmArgs),
    /// Delete checkpoint files no row refers to, and rows whose files are gone.
    Gc(GcArgs),
    /// Print a shell completion script: `sweep completions bash > ~/.local/share/bash-completion/completions/sweep`.
    Completions(CompletionsArgs),
}

/// `sweep enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The searched sweep to queue the configuration for.
    pub sweep: String,
    /// A searched parameter and its value, e.g. `--set grid.lr=0.003 --set grid.arch=cnn`
    /// (`data.split` for the split); repeat for several.
    #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
    pub set: Vec<String>,
    #[command(flatten)]
    pub db: DbArg,
}

/// `sweep rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The sweep to delete.
    pub sweep: String,
    #[command(flatten)]
    pub db: DbArg,
    /// Delete without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// Checkpoint root, for sweeps last run before sweep recorded it (default: `runs/` beside
    /// the database).
    #[arg(long)]
    pub runs: Option<PathBuf>,
}

/// `sweep gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Print what would go, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Checkpoint root, for sweeps last run before sweep recorded it (default: `runs/` beside
    /// the database).
    #[arg(long)]
    pub runs: Option<PathBuf>,
}

/// `sweep completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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

/// `sweep worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Name of a sweep stored in the database (registered by `sweep run`).
    #[arg(long)]
    pub sweep: String,
    /// Leave after claiming this many trials.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_trials: Option<usize>,
    /// When nothing is claimable, keep looking this many seconds after the last trial here
    /// ended (for trials whose holder dies, or paused ones that qualify) before leaving; 0
    /// leaves at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, value_parser = seconds)]
    pub idle_exit: f64,
    #[command(flatten)]
    pub options: RunOptionArgs,
}

/// `sweep slurm`.
#[derive(Debug, Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Array tasks, each one `sweep worker`.
    #[arg(long, value_parser = at_least_one)]
    pub workers: usize,
    /// CPUs per task: the worker's compute threads.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub cpus_per_task: usize,
    /// GPUs per task: the worker trains on cuda:0.. of what Slurm gives it.
    #[arg(long, value_parser = at_least_one)]
    pub gpus_per_task: Option<usize>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Wall-time limit per task (Slurm's syntax, e.g. 4:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Seconds a worker keeps looking for claimable trials before it leaves.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub idle_exit: u64,
    /// Print the batch script; register nothing, submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Results database the workers share: a postgres:// URL (a SQLite file only works when
    /// every task runs on this machine).
    #[arg(long, env = "SWEEP_DB", default_value = "sweep.db")]
    pub db: Location,
    /// Directory with the IDX files, as the workers see it.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Checkpoint root for the workers; a shared file system lets a taken-over trial continue.
    #[arg(long)]
    pub runs: Option<PathBuf>,
}

/// Where and how a sweep runs, shared by `run`, `resume` and `worker`.
#[derive(Debug, Args)]
pub struct RunOptionArgs {
    /// Results database: a SQLite file (created if missing) or a postgres:// URL.
    #[arg(long, env = "SWEEP_DB", default_value = "sweep.db")]
    pub db: Location,
    /// Trials trained at once (overrides [sweep] jobs).
    #[arg(long, short = 'j', value_parser = at_least_one)]
    pub jobs: Option<usize>,
    /// Compute threads per trial (overrides [sweep] threads).
    #[arg(long, value_parser = at_least_one)]
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

/// `--db` for commands that read results.
#[derive(Debug, Args)]
pub struct DbArg {
    /// Results database: a SQLite file or a postgres:// URL.
    #[arg(long, env = "SWEEP_DB", default_value = "sweep.db")]
    pub db: Location,
}

/// `sweep serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Address to listen on. Anything but loopback (127.0.0.1, ::1) needs --token.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub bind: std::net::SocketAddr,
    /// A secret every request must carry (header, cookie, or the printed URL's ?token=).
    #[arg(long, env = "SWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `sweep ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only this sweep.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Filter, e.g. "arch = cnn and val_acc > 0.9 and lr in (0.001, 0.003)".
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Sort by a field; -FIELD or FIELD:desc for largest first (repeatable).
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    pub sort: Vec<String>,
    /// At most N trials.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only the Pareto front: the finished trials no other matching trial of their sweep beats
    /// on every objective (`[sweep] objectives`), sorted by the first objective unless --sort.
    #[arg(long)]
    pub pareto: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `sweep show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Trial id (the `id` column of `sweep ls`).
    pub trial: TrialId,
    #[command(flatten)]
    pub db: DbArg,
    /// Output format (csv: the per-epoch table; toml: an experiment file that trains the trial
    /// again, replaying a population-based training member's hyperparameter schedule).
    #[arg(long, value_enum, default_value = "table")]
    pub format: ShowFormat,
}

/// `sweep show`'s formats: the common ones, and the trial as an experiment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    /// Titled sections for people.
    Table,
    /// The per-epoch table.
    Csv,
    /// One JSON object.
    Json,
    /// Markdown sections.
    Md,
    /// An experiment file that trains the trial again.
    Toml,
}

/// `sweep best`.
#[derive(Debug, Args)]
pub struct BestArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only this sweep.
    #[arg(long)]
    pub sweep: Option<String>,
    /// What "best" means: accuracies are better higher, losses, sizes and times lower
    /// [default: val_acc; for a sweep with several objectives, its Pareto front]
    #[arg(long, value_enum)]
    pub metric: Option<Measure>,
    /// The best trial per value of this parameter (e.g. arch, optimizer, lr).
    #[arg(long)]
    pub by: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `sweep compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Two or more trial ids.
    #[arg(num_args = 2.., required = true)]
    pub trials: Vec<TrialId>,
    #[command(flatten)]
    pub db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `sweep export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only this sweep.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// One row per trial and epoch instead of per trial.
    #[arg(long)]
    pub epochs: bool,
}

/// `sweep predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Trial id.
    pub trial: TrialId,
    #[command(flatten)]
    pub db: DbArg,
    /// Which images to classify.
    #[arg(long, value_enum, default_value = "test")]
    pub split: PredictSplit,
    /// Only the first N images of the split (default: all of them).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Which checkpoint: the best epoch's, or the last epoch's (kept with `[sweep] keep =
    /// "last"` or `"both"`).
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: CheckpointChoice,
    /// Output file: one predicted class index per line, in data-set order.
    #[arg(short, long, default_value = "predictions.txt")]
    pub output: PathBuf,
    /// Directory with the IDX files (default: as for `sweep run`).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Which checkpoint `predict` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckpointChoice {
    /// The best epoch's model.
    Best,
    /// The last epoch's model.
    Last,
}

impl CheckpointChoice {
    /// The kind recorded in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointChoice::Best => "best",
            CheckpointChoice::Last => "last",
        }
    }
}

/// `sweep report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep to report on.
    pub sweep: String,
    #[command(flatten)]
    pub db: DbArg,
    /// The markdown file; figures are written beside it.
    #[arg(short, long, default_value = "report.md")]
    pub output: PathBuf,
    /// Another sweep to compare against.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Metric that ranks trials (as for `sweep best`).
    #[arg(long, value_enum, default_value = "val_acc")]
    pub metric: Measure,
    /// Trials in the leaderboard.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// A count of 1 or more; the flag is left out for the default.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("give at least 1 (or leave the flag out for its default)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}: give a whole number, 1 or more")),
    }
}

/// A number of seconds, 0 or more.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err("give a number of seconds, 0 or more".into()),
    }
}
