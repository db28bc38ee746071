//! The commands that train: `run`, `resume`, `worker` (all three run a sweep in this process)
//! and `slurm` (submits workers that run it elsewhere).

use super::output::note;
use super::output::print;
use crate::cli::{ResumeArgs, RunArgs, RunOptionArgs, SlurmArgs, WorkerArgs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use sweep::experiment::Experiment;
use sweep::sched::{ProgressMode, RunOptions, run_sweep};
use sweep::store::Store;
use sweep::{Error, Result};

/// `sweep run`.
pub fn run(args: RunArgs, quiet: bool) -> Result<i32> {
    let experiment = Experiment::load(&args.experiment.file, &args.experiment.set)?;
    run_here(&experiment, args.options, Leave::default(), quiet)
}

/// `sweep resume`.
pub fn resume(args: ResumeArgs, quiet: bool) -> Result<i32> {
    let experiment = Store::open_existing(&args.options.db)?.require_experiment(&args.sweep)?;
    run_here(&experiment, args.options, Leave::default(), quiet)
}

/// `sweep worker`.
pub fn worker(args: WorkerArgs, quiet: bool) -> Result<i32> {
    let experiment = Store::open_existing(&args.options.db)?.require_experiment(&args.sweep)?;
    let leave = Leave {
        max_trials: args.max_trials,
        idle_exit: (args.idle_exit > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.idle_exit)),
        worker: true,
    };
    run_here(&experiment, args.options, leave, quiet)
}

/// `sweep slurm`: registers the sweep, writes the job array's script and submits it.
pub fn slurm(args: SlurmArgs) -> Result<i32> {
    let experiment = Experiment::load(&args.experiment.file, &args.experiment.set)?;
    let absolute = |path: &Path| std::path::absolute(path).map_err(|e| Error::io(path, e));
    let folder = absolute(&Path::new("slurm").join(&experiment.name))?;
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
        binary: std::env::current_exe().map_err(|e| Error::io(Path::new("sweep"), e))?,
        idle_exit: args.idle_exit,
    };
    if args.dry_run {
        return print(&job.script());
    }
    let (id, path) = sweep::slurm::launch(&experiment, &job)?;
    note!(
        "sweep {}: submitted job array {id} of {} workers ({}); logs in {}; follow with \
         `squeue -j {id}` and `sweep ls --sweep {} --db ...`",
        experiment.name,
        args.workers,
        path.display(),
        folder.display(),
        experiment.name
    );
    print(&format!("{id}\n"))
}

/// When a process stops claiming trials before the sweep is complete.
#[derive(Debug, Default)]
struct Leave {
    max_trials: Option<usize>,
    idle_exit: Option<std::time::Duration>,
    /// A worker leaves without the sweep being complete and says so without failing.
    worker: bool,
}

fn run_here(
    experiment: &Experiment,
    args: RunOptionArgs,
    leave: Leave,
    quiet: bool,
) -> Result<i32> {
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
        note!(
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
            note!(
                "{} trials were finished or being run by another sweep process on {}",
                summary.taken_elsewhere,
                args.db
            );
        }
        if summary.resumed > 0 {
            note!(
                "{} trials continued from the last epoch an earlier run completed",
                summary.resumed
            );
        }
    }
    if summary.complete() || (leave.worker && summary.failed == 0 && summary.interrupted == 0) {
        Ok(0)
    } else if summary.disk_full {
        note!("the run stopped: {}", sweep::error::DISK_FULL_FIX);
        Ok(1)
    } else {
        note!(
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
            note!("second Ctrl-C: exiting now; run the same command again to resume");
            std::process::exit(130);
        }
        note!("Ctrl-C: stopping the running trials (press again to exit at once)");
    });
    if let Err(e) = installed {
        tracing::warn!("Ctrl-C will not stop the sweep cleanly: {e}");
    }
    stop
}
