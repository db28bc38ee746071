//! `run_sweep` in named steps: load the data, register the sweep, size the slots, start the
//! writer, train on every slot until the dispenser has nothing more, then settle the paused
//! trials and sum up.

use super::device;
use super::dispenser::{Dispenser, Next};
use super::group;
use super::holdings::Holdings;
use super::policy::ClaimPolicy;
use super::progress::{Progress, ProgressMode};
use super::register::register;
use super::slot::{Slot, slots};
use super::writer::{Holder, Message, Tidy, write_events};
use crate::data::{self, Dataset};
use crate::error::Result;
use crate::experiment::{DeviceName, Experiment, ExperimentSpec, TrialSpec};
use crate::process;
use crate::search::{Pbt, Pruner};
use crate::store::{Location, Store, StoredTrial};
use crate::train::{TrainEvent, TrialEnd};
use crate::trial::TrialStatus;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to run a sweep, beyond what the experiment file says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The results database.
    pub db: Location,
    /// Checkpoint root; `runs/` beside a SQLite database (in the working directory with
    /// PostgreSQL) when absent.
    pub runs_dir: Option<PathBuf>,
    /// Data directory overriding `[data] dir`.
    pub data_dir: Option<PathBuf>,
    /// Trials at once, overriding `[sweep] jobs`.
    pub jobs: Option<usize>,
    /// Threads per trial, overriding `[sweep] threads`.
    pub threads: Option<usize>,
    /// Devices, overriding `[sweep] devices`.
    pub devices: Option<Vec<DeviceName>>,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// Set (e.g. by Ctrl-C) to stop: no new trial starts and running ones end as interrupted.
    pub stop: Arc<AtomicBool>,
    /// Claim at most this many trials, then leave (`sweep worker --max-trials`).
    pub max_trials: Option<usize>,
    /// When nothing is claimable, keep looking (for trials other processes give up or leave
    /// behind) until nothing was for this long (`sweep worker --idle-exit`); `None`: leave at
    /// once.
    pub idle_exit: Option<Duration>,
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
    /// Trials early stopping ended for good (pruned, or paused and never promoted).
    pub pruned: usize,
    /// Times early stopping paused a trial at a rung.
    pub paused: usize,
    /// Trials stopped before their end.
    pub interrupted: usize,
    /// Trials left pending because the run was stopped first.
    pub not_started: usize,
    /// Trials left alone because another process finished or is running them.
    pub taken_elsewhere: usize,
    /// Trials continued from the last epoch an earlier, cut-off run completed.
    pub resumed: usize,
    /// Paused trials continued from their rung.
    pub promoted: usize,
    /// Whether a trial failed on a full disk, which stopped the run.
    pub disk_full: bool,
    /// Wall seconds of the run.
    pub seconds: f64,
}

impl RunSummary {
    /// Whether every trial of the grid has a final result.
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.interrupted == 0 && self.not_started == 0
    }
}

/// How often the heartbeat of this process's running trials is refreshed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Trains every trial of `experiment` that the database does not hold as finished.
pub fn run_sweep(experiment: &Experiment, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let spec = &experiment.spec;
    let devices = options
        .devices
        .clone()
        .unwrap_or(spec.sweep.devices.clone());
    device::check(&devices)?;
    let dataset = load_data(experiment, options)?;
    let registered = register(experiment, &options.db, options.runs_dir.as_deref())?;
    let work = Work::of(registered.stored, registered.sampler.as_ref());
    let (slots, jobs, threads) = plan_slots(spec, options, &devices);
    tracing::info!(
        sweep = %experiment.name,
        trials = work.total,
        to_run = work.candidates.len() + work.to_draw,
        already_done = work.skipped,
        devices = %devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        jobs,
        threads,
        "starting"
    );
    warn_if_fused_on_cpu(spec);

    let owner = process::this_process();
    let holdings = Holdings::default();
    let stale_after = Duration::from_secs(spec.sweep.heartbeat_timeout);
    let (sender, receiver) = mpsc::channel::<Message>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = start_writer(
        registered.store,
        receiver,
        progress_for(&work, spec, options.progress),
        Holder {
            owner: owner.clone(),
            holdings: holdings.clone(),
            // Several beats per timeout, so one late beat never loses a trial.
            beat_every: (stale_after / 6).clamp(Duration::from_millis(200), HEARTBEAT_EVERY),
        },
        Tidy {
            runs_dir: registered.runs_dir.clone(),
            keep: spec.sweep.keep,
            together: spec.pbt_settings().is_some(),
        },
        in_flight.clone(),
    );
    let pruner = Pruner::new(&spec.prune, spec.sweep.metric)
        .with_objectives(&spec.sweep.objectives())
        .with_pbt(spec.pbt_settings().as_ref());
    let runs_dir = registered.runs_dir;
    let workers = slots.len().min(work.slots_needed());
    let dispenser = Mutex::new(Dispenser {
        store: Store::open(&options.db)?,
        owner,
        sweep_id: registered.sweep_id,
        candidates: work.candidates,
        next: 0,
        sampler: registered.sampler,
        pruner: pruner.clone(),
        pbt: Pbt::new(spec),
        metric: spec.sweep.metric,
        policy: ClaimPolicy::new(options.max_trials, options.idle_exit, Instant::now()),
        holdings: holdings.clone(),
        stale_after,
        attempted: HashSet::new(),
        runs_dir: &runs_dir,
        taken_elsewhere: HashSet::new(),
        resumed: 0,
        promoted: 0,
        error: None,
        labels: sender.clone(),
    });
    let ends = train_on_slots(
        &slots[..workers],
        Shared {
            dispenser: &dispenser,
            holdings: &holdings,
            pruner: &pruner,
            dataset: &dataset,
            experiment,
            runs_dir: &runs_dir,
            stop: &options.stop,
            in_flight: &in_flight,
        },
        &sender,
    );
    let dispenser = dispenser.into_inner().expect("no panics under the lock");
    drop(dispenser.labels);
    drop(sender);
    let (store, write_error, writing) = writer.join().expect("the writer thread does not panic");
    if let Some(error) = write_error.or(dispenser.error) {
        return Err(error);
    }
    let ends = reclassify_lost(ends, &holdings);
    let finalized = if pruner.waits_for_population() {
        tidy_population(&store, registered.sweep_id, &runs_dir, spec)?;
        0
    } else if pruner.pauses() && !options.stop.load(Ordering::SeqCst) {
        prune_paused(&store, registered.sweep_id, &runs_dir, spec)?
    } else {
        0
    };
    store.finish_sweep(registered.sweep_id)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "database writes took {:.3} s ({:.2}% of the run)",
        writing.as_secs_f64(),
        100.0 * writing.as_secs_f64() / seconds.max(1e-9)
    );
    let count = |status| ends.iter().filter(|e| e.status() == Some(status)).count();
    Ok(RunSummary {
        sweep: experiment.name.clone(),
        total: work.total,
        skipped: work.skipped,
        done: count(TrialStatus::Done),
        diverged: count(TrialStatus::Diverged),
        failed: count(TrialStatus::Failed),
        pruned: count(TrialStatus::Pruned) + finalized,
        paused: count(TrialStatus::Paused),
        interrupted: count(TrialStatus::Interrupted),
        not_started: dispenser.candidates.len() - dispenser.next,
        taken_elsewhere: dispenser.taken_elsewhere.len(),
        resumed: dispenser.resumed - dispenser.promoted,
        promoted: dispenser.promoted,
        disk_full: ends.iter().any(|end| {
            matches!(end, TrialEnd::Failed { message } if crate::error::is_disk_full(message))
        }),
        seconds,
    })
}

/// Finds and reads the data set the run trains on.
fn load_data(experiment: &Experiment, options: &RunOptions) -> Result<Dataset> {
    let spec = &experiment.spec;
    let data_dir = data::locate(options.data_dir.as_deref().or(spec.data.dir.as_deref()))?;
    let dataset = Dataset::load(&data_dir)?;
    tracing::info!(
        dir = %data_dir.display(),
        train = dataset.train.len(),
        test = dataset.test.len(),
        "data loaded"
    );
    Ok(dataset)
}

/// What a run has to do, from the sweep's stored trials.
struct Work {
    /// Unfinished trials, longest first.
    candidates: Vec<(i64, TrialSpec)>,
    /// Trials finished (or paused) before this run.
    skipped: usize,
    /// Of those, trials paused at a rung (a promotion may continue them).
    paused: usize,
    /// Trials in all when the sweep is complete.
    total: usize,
    /// Trials a search has yet to draw.
    to_draw: usize,
}

impl Work {
    fn of(stored: Vec<(StoredTrial, TrialSpec)>, sampler: Option<&crate::search::Sampler>) -> Work {
        let total = sampler.map_or(stored.len(), |s| s.total_trials().max(stored.len()));
        let to_draw = total - stored.len();
        let mut candidates = Vec::new();
        let (mut skipped, mut paused) = (0, 0);
        for (row, trial) in stored {
            paused += usize::from(row.status == TrialStatus::Paused);
            // Paused trials are continued by promotions only.
            if row.status.is_settled() {
                skipped += 1;
            } else {
                candidates.push((row.id.0, trial));
            }
        }
        // Longest first, so the sweep does not end with one long trial running alone.
        candidates.sort_by(|a, b| b.1.expected_cost().total_cmp(&a.1.expected_cost()));
        Work {
            candidates,
            skipped,
            paused,
            total,
            to_draw,
        }
    }

    /// Slots worth starting: no more than there are trials that could run.
    fn slots_needed(&self) -> usize {
        self.candidates.len() + self.to_draw + self.paused
    }
}

/// The worker slots for `devices`, with the jobs and threads per trial they were sized by;
/// libtorch (tch-cpu) is told its thread count here, before any of its tensors exists.
fn plan_slots(
    spec: &ExperimentSpec,
    options: &RunOptions,
    devices: &[DeviceName],
) -> (Vec<(DeviceName, usize)>, usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = options.jobs.unwrap_or(spec.sweep.jobs).max(1);
    let threads = options
        .threads
        .or(spec.sweep.threads)
        .unwrap_or((cores / jobs).max(1));
    if devices.contains(&DeviceName::TchCpu) {
        device::set_libtorch_threads(threads);
    }
    (
        slots(devices, jobs, threads, spec.sweep.trials_per_gpu),
        jobs,
        threads,
    )
}

/// Says at the start of a fused sweep on flex that fusing measured no faster there.
fn warn_if_fused_on_cpu(spec: &ExperimentSpec) {
    let fuse = spec.sweep.fuse;
    if fuse > 1 && spec.sweep.devices.contains(&DeviceName::Cpu) {
        tracing::info!(
            "fuse = {fuse} on cpu (flex): fused groups measured no faster than the same trials \
             alone on flex, in slots of one thread or several (BENCHMARKS.md, \"Fused trials\"); \
             fusing is meant for GPUs. For CPU throughput: jobs = cores, threads = 1, fuse = 1"
        );
    }
}

/// The progress display, expecting the work's trials and epochs.
fn progress_for(work: &Work, spec: &ExperimentSpec, mode: ProgressMode) -> Progress {
    let mut progress = Progress::new(
        mode,
        work.candidates
            .iter()
            .map(|(id, t)| (*id, t.label()))
            .collect(),
        work.candidates.iter().map(|(_, t)| t.epochs as u64).sum(),
    );
    progress.expect(
        work.to_draw,
        work.to_draw as u64 * spec.grid.most_epochs() as u64,
    );
    progress
}

/// Starts the thread that owns the database for events: it writes them as they arrive, beats
/// the heartbeat and tidies final trials' files.
fn start_writer(
    store: Store,
    receiver: mpsc::Receiver<Message>,
    progress: Progress,
    holder: Holder,
    tidy: Tidy,
    in_flight: Arc<AtomicUsize>,
) -> JoinHandle<(Store, Option<crate::Error>, Duration)> {
    std::thread::spawn(move || {
        write_events(store, receiver, progress, (&holder, &tidy), &in_flight)
    })
}

/// What every slot's worker thread shares.
#[derive(Clone, Copy)]
struct Shared<'a, 'd> {
    dispenser: &'a Mutex<Dispenser<'d>>,
    holdings: &'a Holdings,
    pruner: &'a Pruner,
    dataset: &'a Dataset,
    experiment: &'a Experiment,
    runs_dir: &'a std::path::Path,
    stop: &'a AtomicBool,
    /// Events sent and not yet written.
    in_flight: &'a AtomicUsize,
}

/// Runs one worker thread per slot until the dispenser has nothing more; every trial's end.
// Workers are plain threads, each with its own rayon pool for the trial's tensor ops: a worker
// that was itself a rayon thread would steal further trials while it waits.
fn train_on_slots(
    slots: &[(DeviceName, usize)],
    shared: Shared<'_, '_>,
    sender: &mpsc::Sender<Message>,
) -> Vec<(i64, TrialEnd)> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = slots
            .iter()
            .map(|&(device, threads)| {
                let sender = sender.clone();
                scope.spawn(move || work_slot(device, threads, shared, sender))
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("workers catch trial panics"))
            .collect()
    })
}

/// One slot's worker: takes trials (or fused groups) from the dispenser until none is left or
/// the run is stopped.
fn work_slot(
    device: DeviceName,
    threads: usize,
    shared: Shared<'_, '_>,
    sender: mpsc::Sender<Message>,
) -> Vec<(i64, TrialEnd)> {
    let in_flight = shared.in_flight;
    let emit = move |event: TrainEvent| {
        in_flight.fetch_add(1, Ordering::SeqCst);
        // The writer only goes away after the workers finish.
        let _ = sender.send(Message::Event(event));
    };
    crate::kernels::flush_denormals();
    let compute = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| crate::kernels::flush_denormals())
        .build()
        .map_err(|e| format!("cannot start {threads} compute threads: {e}"));
    let slot = Slot {
        device,
        compute: &compute,
        threads,
        runs_dir: shared.runs_dir,
        stop: shared.stop,
    };
    let fuse = shared.experiment.spec.sweep.fuse;
    let mut ends = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        // Events still on their way to the database may make a paused trial promotable;
        // decide only on what is written.
        let settled = in_flight.load(Ordering::SeqCst) == 0;
        let next = shared
            .dispenser
            .lock()
            .expect("no panics under the lock")
            .next(settled);
        let first = match next {
            Next::Run(id, trial, resume) => (id, trial, resume),
            Next::Wait => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Next::Done => break,
        };
        let group = group::fused_group(first, fuse, shared.dispenser);
        ends.extend(group::train(
            &slot,
            group,
            (shared.dispenser, shared.holdings, shared.pruner),
            (shared.dataset, shared.experiment),
            &emit,
        ));
    }
    ends
}

/// The trials' ends, with those the writer found lost to another process marked so. Only the
/// writer, refused by a trial's lease, knows for sure that a trial was lost: a trial can fail on
/// its files (removed by its new holder) before that refusal arrives, and while the database is
/// out of reach the lease checks during training answer yes.
fn reclassify_lost(ends: Vec<(i64, TrialEnd)>, holdings: &Holdings) -> Vec<TrialEnd> {
    ends.into_iter()
        .map(|(id, end)| {
            if holdings.lost_flag(id).load(Ordering::SeqCst) {
                TrialEnd::Lost
            } else {
                end
            }
        })
        .collect()
}

/// With nothing left to draw and nothing to promote, paused trials will never continue: they
/// end as pruned, their files tidied. Returns how many.
fn prune_paused(
    store: &Store,
    sweep_id: i64,
    runs_dir: &std::path::Path,
    spec: &ExperimentSpec,
) -> Result<usize> {
    let pruned = store.prune_paused(sweep_id)?;
    let tidy = Tidy {
        runs_dir: runs_dir.to_path_buf(),
        keep: spec.sweep.keep,
        together: false,
    };
    for &id in &pruned {
        tidy.trial(store, id)?;
    }
    Ok(pruned.len())
}

/// Once every member of a population-based training sweep is final, tidies them all (their
/// snapshots included): until then any of them may be copied from.
fn tidy_population(
    store: &Store,
    sweep_id: i64,
    runs_dir: &std::path::Path,
    spec: &ExperimentSpec,
) -> Result<()> {
    let members = store.sweep_trials(sweep_id)?;
    if !members.iter().all(|(row, _)| row.status.is_final()) {
        return Ok(());
    }
    let tidy = Tidy {
        runs_dir: runs_dir.to_path_buf(),
        keep: spec.sweep.keep,
        together: false,
    };
    for (row, _) in members {
        tidy.trial(store, row.id)?;
    }
    Ok(())
}
