//! Running a sweep: pick the trials still to do, train them on worker threads, and send every
//! event to one writer thread that owns the database.

use crate::data::{self, Dataset};
mod device;
mod dispenser;
mod group;
mod holdings;
mod progress;
mod writer;

pub use device::HAS_TCH;
pub use progress::ProgressMode;

use crate::error::{Error, Result};
use crate::experiment::{DeviceName, Experiment, ExperimentSpec, TrialSpec};
use crate::process;
use crate::search::{Pruner, Sampler, Verdict};
use crate::store::{HeldTrial, Location, Store, StoredTrial};
use crate::train::{self, TrainEvent, TrialEnd, TrialRun};
use crate::trial::TrialStatus;
use dispenser::{Dispenser, Idle, Next};
use holdings::Holdings;
use progress::Progress;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use writer::{Holder, Message, Tidy, write_events};

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

/// The checkpoint root used when none is given: `runs/` beside a SQLite file, or in the
/// working directory when the database is a server.
pub fn default_runs_dir(db: &Location) -> PathBuf {
    db.file()
        .and_then(|file| file.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("runs"))
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// A trial held by another process is taken over once its heartbeat is this old, when that
/// process's liveness cannot be checked directly (it ran on another host).
const STALE_AFTER: Duration = Duration::from_secs(DEFAULT_HEARTBEAT_TIMEOUT_S);

/// `[sweep] heartbeat_timeout` when the file does not set it.
pub const DEFAULT_HEARTBEAT_TIMEOUT_S: u64 = 60;
/// How often the heartbeat of this process's running trials is refreshed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// The sweep's trials held by a process that is alive (on this host, `/proc` tells), or whose
/// holder's heartbeat is fresh (another host): deleting the sweep under them would lose work.
pub fn live_trials(store: &Store, sweep_id: i64) -> Result<Vec<HeldTrial>> {
    Ok(store
        .held_trials(sweep_id)?
        .into_iter()
        .filter(|held| match held.owner.as_deref().map(process::is_alive) {
            Some(Some(alive)) => alive,
            _ => held
                .heartbeat_age
                .is_some_and(|age| age <= STALE_AFTER.as_secs_f64()),
        })
        .collect())
}

/// A sweep as stored, ready to run.
pub struct Registered {
    /// The open database.
    pub store: Store,
    /// The sweep's id.
    pub sweep_id: i64,
    /// Where its trials' directories are (absolute).
    pub runs_dir: PathBuf,
    /// Its sampler, for a search.
    pub sampler: Option<Sampler>,
    /// Its trials so far, with their rows.
    pub stored: Vec<(StoredTrial, TrialSpec)>,
}

/// Refuses a runs directory that cannot take files before anything is recorded: otherwise every
/// trial would train until its first checkpoint and fail there, one after another.
fn check_writable(runs_dir: &Path) -> Result<()> {
    let probe = runs_dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::create_dir_all(runs_dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot write to the runs directory {}: {e}; the trials' checkpoints go there: \
                 pass --runs DIR with a directory this process can write",
                runs_dir.display()
            ))
        })
}

/// Stores the sweep (or updates its spec) and, for a grid, its trials, so that any process on
/// the database can work on it: `run` does this first, `slurm` before it submits workers.
pub fn register(
    experiment: &Experiment,
    db: &Location,
    runs_root: Option<&Path>,
) -> Result<Registered> {
    let spec = &experiment.spec;
    let store = Store::open(db)?;
    let spec_json = serde_json::to_string(spec).expect("a spec always serialises");
    let spec_hash = hex::encode(Sha256::digest(spec_json.as_bytes()));
    // `--runs`, else where the sweep's earlier runs kept their files (so a run from another
    // directory, or a worker on a shared file system, continues from them), else the default.
    // Absolute, so the paths recorded for checkpoints hold from any working directory.
    let runs_dir = match runs_root {
        Some(root) => root.join(&experiment.name),
        None => match store.sweep_runs_dir(&experiment.name)? {
            Some(recorded) => recorded,
            None => default_runs_dir(db).join(&experiment.name),
        },
    };
    let runs_dir = std::path::absolute(&runs_dir).map_err(|e| Error::io(&runs_dir, e))?;
    check_writable(&runs_dir)?;
    let sweep_id = store.upsert_sweep(
        &experiment.name,
        &spec_json,
        &spec_hash,
        &experiment.path,
        &runs_dir,
    )?;
    let sampler = Sampler::new(spec);
    // A grid's trials are all known now; a search's are drawn as slots free up, and those
    // stored by earlier runs or other processes are its candidates.
    let stored: Vec<(StoredTrial, TrialSpec)> = match &sampler {
        None => {
            let trials = experiment.trials();
            let rows = store.sync_trials(sweep_id, &trials)?;
            rows.into_iter().zip(trials).collect()
        }
        Some(_) => store.sweep_trials(sweep_id)?,
    };
    Ok(Registered {
        store,
        sweep_id,
        runs_dir,
        sampler,
        stored,
    })
}

/// Trains every trial of `experiment` that the database does not hold as finished.
pub fn run_sweep(experiment: &Experiment, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let spec = &experiment.spec;
    let devices = options
        .devices
        .clone()
        .unwrap_or(spec.sweep.devices.clone());
    device::check(&devices)?;
    let data_dir = data::locate(options.data_dir.as_deref().or(spec.data.dir.as_deref()))?;
    let dataset = Dataset::load(&data_dir)?;
    tracing::info!(
        dir = %data_dir.display(),
        train = dataset.train.len(),
        test = dataset.test.len(),
        "data loaded"
    );

    let Registered {
        store,
        sweep_id,
        runs_dir,
        sampler,
        stored,
    } = register(experiment, &options.db, options.runs_dir.as_deref())?;
    let total = sampler
        .as_ref()
        .map_or(stored.len(), |s| s.total_trials().max(stored.len()));
    let to_draw = total - stored.len();

    let mut candidates: Vec<(i64, TrialSpec)> = Vec::new();
    let mut skipped = 0;
    let mut paused = 0;
    for (row, trial) in stored {
        paused += usize::from(row.status == TrialStatus::Paused);
        // Paused trials are continued by promotions only.
        if row.status.is_settled() {
            skipped += 1;
        } else {
            candidates.push((row.id, trial));
        }
    }
    // Longest first, so the sweep does not end with one long trial running alone.
    candidates.sort_by(|a, b| b.1.expected_cost().total_cmp(&a.1.expected_cost()));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = options.jobs.unwrap_or(spec.sweep.jobs).max(1);
    let threads = options
        .threads
        .or(spec.sweep.threads)
        .unwrap_or((cores / jobs).max(1));
    let slots = slots(&devices, jobs, threads, spec.sweep.trials_per_gpu);
    if devices.contains(&DeviceName::TchCpu) {
        device::set_libtorch_threads(threads);
    }
    tracing::info!(
        sweep = %experiment.name,
        trials = total,
        to_run = candidates.len() + to_draw,
        already_done = skipped,
        devices = %devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        jobs,
        threads,
        "starting"
    );

    let owner = process::this_process();
    let holdings = Holdings::default();
    let stale_after = Duration::from_secs(spec.sweep.heartbeat_timeout);
    let mut progress = Progress::new(
        options.progress,
        candidates.iter().map(|(id, t)| (*id, t.label())).collect(),
        candidates.iter().map(|(_, t)| t.epochs as u64).sum(),
    );
    progress.expect(to_draw, to_draw as u64 * most_epochs(spec) as u64);
    let stop = &*options.stop;
    let (sender, receiver) = mpsc::channel::<Message>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (owner, in_flight) = (owner.clone(), in_flight.clone());
        let tidy = Tidy {
            runs_dir: runs_dir.clone(),
            keep: spec.sweep.keep,
        };
        let holder = Holder {
            owner: owner.clone(),
            holdings: holdings.clone(),
            // Several beats per timeout, so one late beat never loses a trial.
            beat_every: (stale_after / 6).clamp(Duration::from_millis(200), HEARTBEAT_EVERY),
        };
        std::thread::spawn(move || {
            write_events(store, receiver, progress, (&holder, &tidy), &in_flight)
        })
    };
    let pruner = Pruner::new(&spec.prune, spec.sweep.metric);
    let fuse = spec.sweep.fuse;
    if fuse > 1 && spec.sweep.devices.contains(&DeviceName::Cpu) {
        tracing::info!(
            "fuse = {fuse} on cpu (flex): fused groups measured no faster than the same trials \
             alone on flex, in slots of one thread or several (BENCHMARKS.md, \"Fused trials\"); \
             fusing is meant for GPUs. For CPU throughput: jobs = cores, threads = 1, fuse = 1"
        );
    }
    let work = candidates.len() + to_draw + paused;
    let dispenser = Mutex::new(Dispenser {
        store: Store::open(&options.db)?,
        owner,
        sweep_id,
        candidates,
        next: 0,
        sampler,
        pruner: pruner.clone(),
        metric: spec.sweep.metric,
        running_here: 0,
        claimed_here: 0,
        outage: None,
        holdings: holdings.clone(),
        stale_after,
        max_trials: options.max_trials,
        idle: options.idle_exit.map(|patience| Idle {
            patience,
            since: Instant::now(),
            scanned: Instant::now(),
        }),
        attempted: HashSet::new(),
        runs_dir: &runs_dir,
        taken_elsewhere: HashSet::new(),
        resumed: 0,
        promoted: 0,
        error: None,
        labels: sender.clone(),
        deferred: Default::default(),
    });

    // Workers are plain threads, each with its own rayon pool for the trial's tensor ops: a
    // worker that was itself a rayon thread would steal further trials while it waits.
    let ends: Vec<(i64, TrialEnd)> = std::thread::scope(|scope| {
        let workers: Vec<_> = slots
            .iter()
            .take(work)
            .map(|&(device_name, threads)| {
                let sender = sender.clone();
                let pruner = &pruner;
                let (dispenser, dataset, runs_dir, stop) = (&dispenser, &dataset, &runs_dir, stop);
                let (in_flight, holdings) = (&in_flight, &holdings);
                scope.spawn(move || {
                    let emit = move |event: TrainEvent| {
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        // The writer only goes away after the workers finish.
                        let _ = sender.send(Message::Event(event));
                    };
                    let compute = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| format!("cannot start {threads} compute threads: {e}"));
                    let slot = Slot {
                        device: device_name,
                        compute: &compute,
                        threads,
                        runs_dir,
                        stop,
                    };
                    let mut ends = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        // Events still on their way to the database may make a paused trial
                        // promotable; decide only on what is written.
                        let settled = in_flight.load(Ordering::SeqCst) == 0;
                        let next = dispenser
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
                        let group = group::fused_group(first, fuse, dispenser);
                        ends.extend(group::train(
                            &slot,
                            group,
                            (dispenser, holdings, pruner),
                            (dataset, experiment),
                            &emit,
                        ));
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
    let dispenser = dispenser.into_inner().expect("no panics under the lock");
    drop(dispenser.labels);
    drop(sender);
    let (store, write_error, writing) = writer.join().expect("the writer thread does not panic");
    if let Some(error) = write_error.or(dispenser.error) {
        return Err(error);
    }
    // Only the writer, refused by a trial's lease, knows for sure that a trial was lost: a
    // trial can fail on its files (removed by its new holder) before that refusal arrives, and
    // while the database is out of reach the lease checks during training answer yes.
    let ends: Vec<TrialEnd> = ends
        .into_iter()
        .map(|(id, end)| {
            if holdings.lost_flag(id).load(Ordering::SeqCst) {
                TrialEnd::Lost
            } else {
                end
            }
        })
        .collect();
    // With nothing left to draw and nothing to promote, paused trials will never continue.
    let finalized = if pruner.pauses() && !stop.load(Ordering::SeqCst) {
        let pruned = store.prune_paused(sweep_id)?;
        let tidy = Tidy {
            runs_dir: runs_dir.clone(),
            keep: spec.sweep.keep,
        };
        for &id in &pruned {
            tidy.trial(&store, id)?;
        }
        pruned.len()
    } else {
        0
    };
    store.finish_sweep(sweep_id)?;

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "database writes took {:.3} s ({:.2}% of the run)",
        writing.as_secs_f64(),
        100.0 * writing.as_secs_f64() / seconds.max(1e-9)
    );
    let count = |status| ends.iter().filter(|e| e.status() == Some(status)).count();
    Ok(RunSummary {
        sweep: experiment.name.clone(),
        total,
        skipped,
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

/// The worker slots: `(device, threads)` per trial that may run at once. CPU backends get
/// `jobs` slots of `threads` threads; each GPU gets `trials_per_gpu` slots.
fn slots(
    devices: &[DeviceName],
    jobs: usize,
    threads: usize,
    trials_per_gpu: usize,
) -> Vec<(DeviceName, usize)> {
    let mut slots = Vec::new();
    for &device in devices {
        let count = if device.is_cpu() {
            jobs
        } else {
            trials_per_gpu
        };
        slots.extend(std::iter::repeat_n((device, threads), count));
    }
    slots
}

/// The most epochs any trial of the experiment trains.
fn most_epochs(spec: &ExperimentSpec) -> usize {
    let epochs = &spec.grid.epochs;
    epochs.distribution().map_or_else(
        || epochs.values().iter().copied().max().unwrap_or(1),
        |d| d.high as usize,
    )
}

/// Asked after each epoch whether the trial goes on (early stopping).
type Judge<'a> = &'a (dyn Fn(&[f64]) -> Verdict + Sync);

/// Asked before each epoch's files are written whether this process still holds the trial.
type StillHeld<'a> = &'a (dyn Fn() -> bool + Sync);

/// Where a worker runs its trials: a device, and a compute pool of `threads` threads.
struct Slot<'a> {
    device: DeviceName,
    compute: &'a std::result::Result<rayon::ThreadPool, String>,
    threads: usize,
    runs_dir: &'a std::path::Path,
    stop: &'a AtomicBool,
}

impl Slot<'_> {
    /// Trains `members` (one trial, or several fused) on this slot; their ends in order.
    fn run(
        &self,
        members: Vec<group::Member>,
        dataset: &Dataset,
        experiment: &Experiment,
        emit: &(dyn Fn(TrainEvent) + Sync),
    ) -> Vec<TrialEnd> {
        let started = Instant::now();
        let fail = |message: String| {
            let end = TrialEnd::Failed { message };
            members
                .iter()
                .map(|member| {
                    emit(TrainEvent::Finished {
                        trial: member.id,
                        end: end.clone(),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    end.clone()
                })
                .collect()
        };
        let compute = match self.compute {
            Ok(pool) => pool,
            Err(message) => return fail(message.clone()),
        };
        let runs: Vec<TrialRun> = members
            .iter()
            .map(|member| TrialRun {
                id: member.id,
                spec: &member.trial,
                data: dataset,
                device: device::open(self.device),
                device_name: self.device.to_string(),
                threads: self.threads,
                dir: self.runs_dir.join(member.id.to_string()),
                metric: experiment.spec.sweep.metric,
                stop: self.stop,
                lost: member.lost,
                holds: member.holds,
                resume: member.resume.clone(),
                judge: member.judge,
            })
            .collect();
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            compute.install(|| train::run_group(&runs, emit))
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
