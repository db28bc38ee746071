//! Running a sweep: pick the trials still to do, train them on worker threads, and send every
//! event to one writer thread that owns the database.

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::spec::{Experiment, TrialSpec};
use crate::store::Store;
use crate::train::{self, ResumeState, TrainEvent, TrialEnd, TrialRun};
use burn::prelude::Device;
use sha2::{Digest, Sha256};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

/// How to run a sweep, beyond what the experiment file says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The results database.
    pub db: PathBuf,
    /// Checkpoint root; `runs/` beside the database when absent.
    pub runs_dir: Option<PathBuf>,
    /// Data directory overriding `[data] dir`.
    pub data_dir: Option<PathBuf>,
    /// Trials at once, overriding `[sweep] jobs`.
    pub jobs: Option<usize>,
    /// Threads per trial, overriding `[sweep] threads`.
    pub threads: Option<usize>,
    /// Set (e.g. by Ctrl-C) to stop: no new trial starts and running ones end as interrupted.
    pub stop: Arc<AtomicBool>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Sweep name.
    pub sweep: String,
    /// Trials in the grid.
    pub total: usize,
    /// Trials already finished before this run (kept as they were).
    pub skipped: usize,
    /// Trials this run finished.
    pub done: usize,
    /// Trials this run ended as diverged.
    pub diverged: usize,
    /// Trials this run ended as failed.
    pub failed: usize,
    /// Trials stopped before their end.
    pub interrupted: usize,
    /// Trials left pending because the run was stopped first.
    pub not_started: usize,
    /// Trials continued from the last epoch an earlier, cut-off run completed.
    pub resumed: usize,
    /// Wall seconds of the run.
    pub seconds: f64,
}

impl RunSummary {
    /// Whether every trial of the grid has a final result.
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.interrupted == 0 && self.not_started == 0
    }
}

/// The checkpoint root used when none is given: `runs/` beside the database.
pub fn default_runs_dir(db: &std::path::Path) -> PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("runs"))
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// Trains every trial of `experiment` that the database does not hold as finished.
pub fn run_sweep(experiment: &Experiment, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let spec = &experiment.spec;
    let trials = experiment.trials();
    let data_dir = data::locate(options.data_dir.as_deref().or(spec.data.dir.as_deref()))?;
    let dataset = Dataset::load(&data_dir)?;
    tracing::info!(
        dir = %data_dir.display(),
        train = dataset.train.len(),
        test = dataset.test.len(),
        "data loaded"
    );

    let store = Store::open(&options.db)?;
    let spec_json = serde_json::to_string(spec).expect("a spec always serialises");
    let spec_hash = hex::encode(Sha256::digest(spec_json.as_bytes()));
    let sweep_id =
        store.upsert_sweep(&experiment.name, &spec_json, &spec_hash, &experiment.path)?;
    let stored = store.sync_trials(sweep_id, &trials)?;

    let runs_dir = options
        .runs_dir
        .clone()
        .unwrap_or_else(|| default_runs_dir(&options.db))
        .join(&experiment.name);
    let mut pending: Vec<(i64, &TrialSpec, Option<ResumeState>)> = Vec::new();
    let mut skipped = 0;
    for (row, trial) in stored.iter().zip(&trials) {
        match row.status.as_str() {
            "done" | "diverged" => skipped += 1,
            "pending" => pending.push((row.id, trial, None)),
            status => {
                // Left running by a killed process, interrupted, or failed: continue after the
                // last epoch that both the database and the checkpoint files hold, else start over.
                let recorded = store.epochs(row.id)?;
                let resume =
                    train::read_resume_state(&runs_dir.join(row.id.to_string())).filter(|state| {
                        status != "failed"
                            && state.epoch > 0
                            && state.epoch <= trial.epochs
                            && recorded.len() == state.epoch
                            && recorded.last().map(|e| e.epoch) == Some(state.epoch as i64)
                    });
                match &resume {
                    Some(state) => {
                        tracing::info!(trial = row.id, epoch = state.epoch, "resuming");
                        store.rewind_trial(row.id)?;
                    }
                    None => store.reset_trial(row.id)?,
                }
                pending.push((row.id, trial, resume));
            }
        }
    }
    // Longest first, so the sweep does not end with one long trial running alone.
    pending.sort_by(|a, b| b.1.expected_cost().total_cmp(&a.1.expected_cost()));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = options.jobs.unwrap_or(spec.sweep.jobs).max(1);
    let threads = options
        .threads
        .or(spec.sweep.threads)
        .unwrap_or((cores / jobs).max(1));
    tracing::info!(
        sweep = %experiment.name,
        trials = trials.len(),
        to_run = pending.len(),
        already_done = skipped,
        jobs,
        threads,
        "starting"
    );

    let stop = &*options.stop;
    let (sender, receiver) = mpsc::channel::<TrainEvent>();
    let total_to_run = pending.len();
    let writer = std::thread::spawn(move || write_events(store, receiver, total_to_run));

    // Workers are plain threads, each with its own rayon pool for the trial's tensor ops: a
    // worker that was itself a rayon thread would steal further trials while it waits.
    let next = AtomicUsize::new(0);
    let ends: Vec<TrialEnd> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(pending.len()))
            .map(|_| {
                let sender = sender.clone();
                let (next, pending, dataset, runs_dir, stop) =
                    (&next, &pending, &dataset, &runs_dir, stop);
                scope.spawn(move || {
                    let emit = move |event: TrainEvent| {
                        // The writer only goes away after the workers finish.
                        let _ = sender.send(event);
                    };
                    let compute = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| format!("cannot start {threads} compute threads: {e}"));
                    let mut ends = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some((id, trial, resume)) = pending.get(index) else {
                            break;
                        };
                        let slot = Slot {
                            compute: &compute,
                            threads,
                            runs_dir,
                            stop,
                        };
                        ends.push(slot.run(*id, trial, resume.clone(), dataset, experiment, &emit));
                    }
                    ends
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("workers catch trial panics"))
            .collect()
    });
    drop(sender);
    let (store, write_error) = writer.join().expect("the writer thread does not panic");
    if let Some(error) = write_error {
        return Err(error);
    }
    store.finish_sweep(sweep_id)?;

    let count = |status: &str| ends.iter().filter(|e| e.status() == status).count();
    Ok(RunSummary {
        sweep: experiment.name.clone(),
        total: trials.len(),
        skipped,
        done: count("done"),
        diverged: count("diverged"),
        failed: count("failed"),
        interrupted: count("interrupted"),
        not_started: pending.len() - ends.len(),
        resumed: pending.iter().filter(|p| p.2.is_some()).count(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Where a worker runs its trials: a compute pool of `threads` threads on the CPU.
struct Slot<'a> {
    compute: &'a std::result::Result<rayon::ThreadPool, String>,
    threads: usize,
    runs_dir: &'a std::path::Path,
    stop: &'a AtomicBool,
}

impl Slot<'_> {
    fn run(
        &self,
        id: i64,
        trial: &TrialSpec,
        resume: Option<ResumeState>,
        dataset: &Dataset,
        experiment: &Experiment,
        emit: &(dyn Fn(TrainEvent) + Sync),
    ) -> TrialEnd {
        let started = Instant::now();
        let fail = |message: String| {
            let end = TrialEnd::Failed { message };
            emit(TrainEvent::Finished {
                trial: id,
                end: end.clone(),
                seconds: started.elapsed().as_secs_f64(),
            });
            end
        };
        let compute = match self.compute {
            Ok(pool) => pool,
            Err(message) => return fail(message.clone()),
        };
        let run = TrialRun {
            id,
            spec: trial,
            data: dataset,
            device: Device::flex(),
            device_name: "cpu".into(),
            threads: self.threads,
            dir: self.runs_dir.join(id.to_string()),
            metric: experiment.spec.sweep.metric,
            stop: self.stop,
            resume,
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            compute.install(|| train::run_trial(&run, emit))
        })) {
            Ok(end) => end,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                fail(format!("panicked: {message}"))
            }
        }
    }
}

/// The single writer: persists events in arrival order and logs progress. After a write error
/// it keeps draining (so workers never block) and reports the first error at the end.
fn write_events(
    store: Store,
    receiver: mpsc::Receiver<TrainEvent>,
    total: usize,
) -> (Store, Option<Error>) {
    let mut first_error = None;
    let mut finished = 0;
    for event in receiver {
        if first_error.is_none()
            && let Err(e) = store.apply(&event)
        {
            tracing::error!("{e}");
            first_error = Some(e);
        }
        log_progress(&event, &mut finished, total);
    }
    (store, first_error)
}

fn log_progress(event: &TrainEvent, finished: &mut usize, total: usize) {
    match event {
        TrainEvent::Started {
            trial,
            device,
            threads,
        } => {
            tracing::info!(trial, device = %device, threads, "trial started")
        }
        TrainEvent::Epoch { trial, metrics: m } => tracing::info!(
            trial,
            epoch = m.epoch,
            train_loss = format_args!("{:.4}", m.train_loss),
            val_loss = format_args!("{:.4}", m.val_loss),
            val_acc = format_args!("{:.4}", m.val_acc),
            seconds = format_args!("{:.1}", m.seconds),
            "epoch"
        ),
        TrainEvent::Checkpoint { .. } => {}
        TrainEvent::Finished {
            trial,
            end,
            seconds,
        } => {
            *finished += 1;
            match end {
                TrialEnd::Done { test, .. } => tracing::info!(
                    trial,
                    test_acc = format_args!("{:.4}", test.accuracy),
                    seconds = format_args!("{:.1}", seconds),
                    "trial done ({finished}/{total})"
                ),
                TrialEnd::Diverged { message } | TrialEnd::Failed { message } => {
                    tracing::warn!(
                        trial,
                        status = end.status(),
                        "{message} ({finished}/{total})"
                    )
                }
                TrialEnd::Interrupted => tracing::warn!(trial, "interrupted"),
            }
        }
    }
}
