//! The `sweep` binary: parse the command line, call the library, map errors to exit codes.

mod cli;
mod housekeeping;
mod queries;

use clap::Parser;
use cli::{Cli, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use sweep::experiment::Experiment;
use sweep::report;
use sweep::sched::{ProgressMode, RunOptions, run_sweep};
use sweep::store::Store;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let level = if cli.quiet {
        "error"
    } else {
        ["info", "debug", "trace"][usize::from(cli.verbose.min(2))]
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,sweep={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match execute(cli.command, cli.quiet) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

fn execute(command: Command, quiet: bool) -> sweep::Result<i32> {
    match command {
        Command::Validate(args) => {
            let experiment = Experiment::load(&args.experiment.file, &args.experiment.set)?;
            // The files are looked for, not read: `run` reads them.
            if let Some(dir) = &experiment.spec.data.dir {
                sweep::data::locate(Some(dir)).map_err(|e| {
                    sweep::Error::Spec(format!("{}: [data] dir: {e}", experiment.path.display()))
                })?;
            }
            if let Some(sampler) = sweep::search::Sampler::new(&experiment.spec) {
                queries::print(&report::search_space(&experiment.spec, sampler.space()))?;
                eprintln!(
                    "{}: {} sampler, {} trials in all, valid",
                    experiment.path.display(),
                    experiment.spec.sweep.sampler.as_str(),
                    sampler.total_trials()
                );
                return Ok(0);
            }
            let trials = experiment.trials();
            queries::print(&report::expanded_trials(
                &experiment.name,
                &trials,
                args.format,
            ))?;
            eprintln!(
                "{}: {} trials, valid",
                experiment.path.display(),
                trials.len()
            );
            Ok(0)
        }
        Command::Run(args) => {
            check_counts(&args.options)?;
            let experiment = Experiment::load(&args.experiment.file, &args.experiment.set)?;
            run(&experiment, args.options, Leave::default(), quiet)
        }
        Command::Resume(args) => {
            check_counts(&args.options)?;
            let experiment = stored_experiment(&args.sweep, &args.options)?;
            run(&experiment, args.options, Leave::default(), quiet)
        }
        Command::Worker(args) => {
            check_counts(&args.options)?;
            if !(args.idle_exit.is_finite() && args.idle_exit >= 0.0) {
                return Err(sweep::Error::Usage(format!(
                    "--idle-exit {}: give a number of seconds, 0 or more",
                    args.idle_exit
                )));
            }
            if args.max_trials == Some(0) {
                return Err(sweep::Error::Usage(
                    "--max-trials 0: give at least 1 (or leave it out to claim until none is \
                     left)"
                        .into(),
                ));
            }
            let experiment = stored_experiment(&args.sweep, &args.options)?;
            let leave = Leave {
                max_trials: args.max_trials,
                idle_exit: (args.idle_exit > 0.0)
                    .then(|| std::time::Duration::from_secs_f64(args.idle_exit)),
                worker: true,
            };
            run(&experiment, args.options, leave, quiet)
        }
        Command::Slurm(args) => slurm(args),
        Command::Ls(args) => queries::ls(args),
        Command::Show(args) => queries::show(args),
        Command::Best(args) => queries::best(args),
        Command::Compare(args) => queries::compare(args),
        Command::Export(args) => queries::export(args),
        Command::Predict(args) => queries::predict(args),
        Command::Report(args) => queries::report(args),
        Command::Rm(args) => housekeeping::rm(args),
        Command::Gc(args) => housekeeping::gc(args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "sweep", &mut script);
            queries::print(&String::from_utf8_lossy(&script))
        }
    }
}

fn check_counts(args: &cli::RunOptionArgs) -> sweep::Result<()> {
    for (flag, value) in [("--jobs", args.jobs), ("--threads", args.threads)] {
        if value == Some(0) {
            return Err(sweep::Error::Usage(format!(
                "{flag} 0: give at least 1 (or leave it out to use the experiment file's value)"
            )));
        }
    }
    Ok(())
}

/// `sweep slurm`: registers the sweep, writes the job array's script and submits it.
fn slurm(args: cli::SlurmArgs) -> sweep::Result<i32> {
    if args.workers == 0 || args.cpus_per_task == 0 || args.gpus_per_task == Some(0) {
        return Err(sweep::Error::Usage(
            "--workers, --cpus-per-task and --gpus-per-task take at least 1".into(),
        ));
    }
    let experiment = Experiment::load(&args.experiment.file, &args.experiment.set)?;
    let absolute =
        |path: &std::path::Path| std::path::absolute(path).map_err(|e| sweep::Error::io(path, e));
    let folder = absolute(&std::path::Path::new("slurm").join(&experiment.name))?;
    let job = sweep::slurm::JobArray {
        sweep: experiment.name.clone(),
        db: args.db.clone(),
        workers: args.workers,
        cpus_per_task: args.cpus_per_task,
        gpus_per_task: args.gpus_per_task,
        partition: args.partition,
        time: args.time,
        data_dir: args.data.as_deref().map(absolute).transpose()?,
        runs_dir: args.runs.as_deref().map(absolute).transpose()?,
        log_dir: folder.clone(),
        binary: std::env::current_exe()
            .map_err(|e| sweep::Error::io(std::path::Path::new("sweep"), e))?,
        idle_exit: args.idle_exit,
    };
    let script = job.script();
    if args.dry_run {
        return queries::print(&script);
    }
    if let sweep::store::Location::Sqlite(path) = &args.db {
        tracing::warn!(
            "{}: a SQLite file works only when every task runs on this machine; give workers \
             on other nodes a postgres:// URL",
            path.display()
        );
    }
    let registered = sweep::sched::register(&experiment, &args.db, job.runs_dir.as_deref())?;
    drop(registered);
    std::fs::create_dir_all(&folder).map_err(|e| sweep::Error::io(&folder, e))?;
    let path = folder.join("workers.sbatch");
    let id = sweep::slurm::submit(&script, &path)?;
    eprintln!(
        "sweep {}: submitted job array {id} of {} workers ({}); logs in {}; follow with \
         `squeue -j {id}` and `sweep ls --sweep {} --db ...`",
        experiment.name,
        args.workers,
        path.display(),
        folder.display(),
        experiment.name
    );
    queries::print(&format!("{id}\n"))
}

/// The experiment a stored sweep was last run with, for `resume` and `worker`.
fn stored_experiment(sweep: &str, options: &cli::RunOptionArgs) -> sweep::Result<Experiment> {
    let store = Store::open_existing(&options.db)?;
    let Some((spec_json, source)) = store.sweep_spec(sweep)? else {
        return Err(sweep::Error::NotFound(format!(
            "no sweep named {sweep:?} in {}; known: {} (`sweep run FILE --db ...` registers one)",
            options.db,
            store.sweep_names()?.join(", ")
        )));
    };
    Experiment::from_stored(sweep, source.as_ref(), &spec_json)
}

/// When a process stops claiming trials before the sweep is complete.
#[derive(Debug, Default)]
struct Leave {
    max_trials: Option<usize>,
    idle_exit: Option<std::time::Duration>,
    /// A worker leaves without the sweep being complete and says so without failing.
    worker: bool,
}

fn run(
    experiment: &Experiment,
    args: cli::RunOptionArgs,
    leave: Leave,
    quiet: bool,
) -> sweep::Result<i32> {
    let options = RunOptions {
        db: args.db.clone(),
        runs_dir: args.runs,
        data_dir: args.data,
        jobs: args.jobs,
        threads: args.threads,
        devices: args.devices,
        progress: if quiet {
            ProgressMode::Quiet
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        },
        stop: stop_on_ctrl_c(),
        max_trials: leave.max_trials,
        idle_exit: leave.idle_exit,
    };
    let summary = run_sweep(experiment, &options)?;
    if !quiet {
        eprintln!(
            "sweep {}: {} trials, {} already done, {} done, {} diverged, {} failed, {} pruned, \
                 {} pauses, {} promotions, {} interrupted, {} not started in {:.1} s; results in \
                 {}",
            summary.sweep,
            summary.total,
            summary.skipped,
            summary.done,
            summary.diverged,
            summary.failed,
            summary.pruned,
            summary.paused,
            summary.promoted,
            summary.interrupted,
            summary.not_started,
            summary.seconds,
            args.db
        );
        if summary.taken_elsewhere > 0 {
            eprintln!(
                "{} trials were finished or being run by another sweep process on {}",
                summary.taken_elsewhere, args.db
            );
        }
        if summary.resumed > 0 {
            eprintln!(
                "{} trials continued from the last epoch an earlier run completed",
                summary.resumed
            );
        }
    }
    if summary.complete() || (leave.worker && summary.failed == 0 && summary.interrupted == 0) {
        Ok(0)
    } else if summary.disk_full {
        eprintln!("the run stopped: {}", sweep::error::DISK_FULL_FIX);
        Ok(1)
    } else {
        eprintln!(
            "not every trial finished; run the same command again to retry the rest \
                     (finished trials are kept)"
        );
        Ok(1)
    }
}

/// First Ctrl-C: ask the run to stop (running trials end as `interrupted`, nothing new starts).
/// Second: exit at once; the database stays consistent and the next run starts those trials again.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second Ctrl-C: exiting now; run the same command again to resume");
            std::process::exit(130);
        }
        eprintln!("Ctrl-C: stopping the running trials (press again to exit at once)");
    });
    if let Err(e) = installed {
        tracing::warn!("Ctrl-C will not stop the sweep cleanly: {e}");
    }
    stop
}
