//! Running a sweep: pick the trials still to do, train them on worker threads, and send every
//! event to one writer thread that owns the database.

use crate::data::{self, Dataset};
mod device;
mod owner;
mod progress;

pub use device::HAS_TCH;
pub use progress::ProgressMode;

use crate::error::{Error, Result};
use crate::experiment::{DeviceName, Experiment, ExperimentSpec, Keep, Metric, TrialSpec};
use crate::search::{Curve, PastTrial, Pruner, Sampler, Verdict};
use crate::store::{HeldTrial, Location, Store, StoredTrial};
use crate::train::{self, ResumeState, TrainEvent, TrialEnd, TrialRun, Unresumable};
use progress::Progress;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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
    /// Wall seconds of the run.
    pub seconds: f64,
}

impl RunSummary {
    /// Whether every trial of the grid has a final result.
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.interrupted == 0 && self.not_started == 0
    }
}

/// How long a process keeps retrying a database it cannot reach (a PostgreSQL restart, a
/// network cut) before it gives up; what it owes is written once the database is back.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(600);

/// While the database is out of reach, how long training goes on without asking it again
/// whether this process still holds its trials.
const OUTAGE_RECHECK: Duration = Duration::from_secs(10);

/// Runs `op` until it succeeds, fails for another reason than an unreachable database, or the
/// database stays unreachable for [`RECONNECT_PATIENCE`]; the waits between attempts double
/// from 0.5 s to 10 s.
fn retrying<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        match op() {
            Err(e @ Error::Unreachable { .. }) if started.elapsed() < RECONNECT_PATIENCE => {
                tracing::warn!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
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
        .filter(|held| match held.owner.as_deref().map(owner::is_alive) {
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
        paused += usize::from(row.status == "paused");
        match row.status.as_str() {
            // Paused trials are continued by promotions only.
            "done" | "diverged" | "pruned" | "paused" => skipped += 1,
            _ => candidates.push((row.id, trial)),
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

    let owner = owner::this_process();
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
    });

    // Workers are plain threads, each with its own rayon pool for the trial's tensor ops: a
    // worker that was itself a rayon thread would steal further trials while it waits.
    let ends: Vec<TrialEnd> = std::thread::scope(|scope| {
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
                        let (id, trial, resume) = match next {
                            Next::Run(id, trial, resume) => (id, trial, resume),
                            Next::Wait => {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                            Next::Done => break,
                        };
                        let judge = |curve: &[f64]| {
                            if !pruner.is_active() {
                                return Verdict::Continue;
                            }
                            dispenser.lock().expect("no panics under the lock").judge(
                                id,
                                trial.epochs,
                                curve,
                            )
                        };
                        let lost = holdings.lost_flag(id);
                        let holds = || {
                            let lease = holdings.lease(id).unwrap_or_default();
                            dispenser
                                .lock()
                                .expect("no panics under the lock")
                                .still_holds(id, lease)
                        };
                        let end = slot.run(
                            (id, &trial, resume, &lost),
                            dataset,
                            experiment,
                            &emit,
                            (&judge, &holds),
                        );
                        // Whatever ended a lost trial (a clash over its files with the new
                        // holder, say) is the new holder's business now.
                        let lost = lost.load(Ordering::SeqCst)
                            || (matches!(end, TrialEnd::Failed { .. }) && !holds());
                        let end = if lost { TrialEnd::Lost } else { end };
                        dispenser
                            .lock()
                            .expect("no panics under the lock")
                            .running_here -= 1;
                        ends.push(end);
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
    let count = |status: &str| ends.iter().filter(|e| e.status() == status).count();
    Ok(RunSummary {
        sweep: experiment.name.clone(),
        total,
        skipped,
        done: count("done"),
        diverged: count("diverged"),
        failed: count("failed"),
        pruned: count("pruned") + finalized,
        paused: count("paused"),
        interrupted: count("interrupted"),
        not_started: dispenser.candidates.len() - dispenser.next,
        taken_elsewhere: dispenser.taken_elsewhere.len(),
        resumed: dispenser.resumed - dispenser.promoted,
        promoted: dispenser.promoted,
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

/// Hands trials to this process's workers, claiming each in the database first so that another
/// `sweep run` on the same database never trains the same trial.
struct Dispenser<'a> {
    store: Store,
    owner: String,
    sweep_id: i64,
    candidates: Vec<(i64, TrialSpec)>,
    next: usize,
    sampler: Option<Sampler>,
    pruner: Pruner,
    metric: Metric,
    /// Trials this process's slots are training now.
    running_here: usize,
    /// Trials this process has claimed.
    claimed_here: usize,
    /// Since when the database has been out of reach, while it is.
    outage: Option<Instant>,
    /// The leases of the trials this process holds.
    holdings: Holdings,
    /// How old a holder's heartbeat may be before its trial is taken over.
    stale_after: Duration,
    max_trials: Option<usize>,
    /// Set when this process waits for claimable trials instead of leaving.
    idle: Option<Idle>,
    /// Trials this process has run: a rescan leaves them (failed ones included) to others.
    attempted: HashSet<i64>,
    runs_dir: &'a Path,
    /// Trials found finished or held by another live process.
    taken_elsewhere: HashSet<i64>,
    resumed: usize,
    promoted: usize,
    error: Option<Error>,
    /// Names drawn trials for the progress display.
    labels: mpsc::Sender<Message>,
}

/// The trials this process holds: the lease each was claimed under, and a flag raised when
/// another process took it over.
#[derive(Debug, Clone, Default)]
struct Holdings(Arc<Mutex<HashMap<i64, Holding>>>);

/// One held trial: its lease, and whether it was lost.
type Holding = (i64, Arc<AtomicBool>);

/// Asked after each epoch whether the trial goes on (early stopping).
type Judge<'a> = &'a (dyn Fn(&[f64]) -> Verdict + Sync);

/// Asked before each epoch's files are written whether this process still holds the trial.
type StillHeld<'a> = &'a (dyn Fn() -> bool + Sync);

impl Holdings {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Holding>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a claim.
    fn take(&self, trial: i64, lease: i64) {
        self.map()
            .insert(trial, (lease, Arc::new(AtomicBool::new(false))));
    }

    /// The lease `trial` was claimed under.
    fn lease(&self, trial: i64) -> Option<i64> {
        self.map().get(&trial).map(|(lease, _)| *lease)
    }

    /// The flag training watches to stop a trial that was lost.
    fn lost_flag(&self, trial: i64) -> Arc<AtomicBool> {
        self.map().get(&trial).map_or_else(
            || Arc::new(AtomicBool::new(false)),
            |(_, lost)| lost.clone(),
        )
    }
}

/// How often a waiting worker reads the sweep's trials again.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// A process's wait for claimable trials.
struct Idle {
    /// How long nothing may be claimable before the process leaves.
    patience: Duration,
    /// Since when nothing was.
    since: Instant,
    /// When the trials were last read.
    scanned: Instant,
}

/// What a free slot does next.
// Returned once per trial and unpacked at once: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// Train this trial, continuing from the state when there is one.
    Run(i64, TrialSpec, Option<ResumeState>),
    /// Nothing now, but a running trial may yet make a paused one promotable.
    Wait,
    /// Nothing is left for this process.
    Done,
}

impl Dispenser<'_> {
    /// The next thing for a free slot: promote a paused trial that now qualifies, else take the
    /// next unfinished trial, else draw a new one while the budget lasts. `settled` says every
    /// event sent so far is in the database. A database failure ends the run's claiming (the
    /// error is kept for the end of the run).
    fn next(&mut self, settled: bool) -> Next {
        if self.error.is_some() || self.max_trials.is_some_and(|max| self.claimed_here >= max) {
            return Next::Done;
        }
        match self.claim_next(settled).and_then(|next| match next {
            Next::Done if self.idle.is_some() => self.look_again(),
            other => Ok(other),
        }) {
            Ok(Next::Run(id, trial, resume)) => {
                self.running_here += 1;
                self.claimed_here += 1;
                self.attempted.insert(id);
                self.taken_elsewhere.remove(&id);
                if let Some(idle) = &mut self.idle {
                    idle.since = Instant::now();
                }
                Next::Run(id, trial, resume)
            }
            Ok(other) => {
                self.outage = None;
                other
            }
            Err(e @ Error::Unreachable { .. }) => {
                // Training goes on; claiming resumes once the database is back.
                let since = *self.outage.get_or_insert_with(|| {
                    tracing::warn!("{e}; retrying, running trials go on");
                    Instant::now()
                });
                if since.elapsed() > RECONNECT_PATIENCE {
                    self.error = Some(e);
                    return Next::Done;
                }
                std::thread::sleep(Duration::from_millis(500));
                Next::Wait
            }
            Err(e) => {
                self.error = Some(e);
                Next::Done
            }
        }
    }

    fn claim_next(&mut self, settled: bool) -> Result<Next> {
        // Samplers and promotions decide from the history: let it include every event this
        // process has sent (with one slot, that makes a search reproducible).
        if (self.sampler.is_some() || self.pruner.pauses()) && !settled {
            return Ok(Next::Wait);
        }
        if self.pruner.pauses()
            && let Some(found) = self.promote()?
        {
            return Ok(found);
        }
        while let Some((id, trial)) = self.candidates.get(self.next).cloned() {
            self.next += 1;
            let claimed = self.store.claim_trial(
                id,
                &self.owner,
                owner::is_alive,
                self.stale_after,
                false,
            )?;
            let Some((previous, lease)) = claimed else {
                tracing::debug!(trial = id, "finished or running in another process");
                self.taken_elsewhere.insert(id);
                continue;
            };
            self.holdings.take(id, lease);
            if previous == "pending" {
                return Ok(Next::Run(id, trial, None));
            }
            // Left by a killed process, interrupted, or failed: continue after the last epoch
            // whose files are complete, else start over.
            let resume = self.resume_or_reset(id, &trial)?;
            return Ok(Next::Run(id, trial, resume));
        }
        if let Some(sampler) = &self.sampler {
            let drawn = self.store.claim_new_trial(
                self.sweep_id,
                &self.owner,
                sampler.total_trials(),
                sampler.repeats(),
                self.metric,
                |draw, past| sampler.draw(draw, past),
            )?;
            if let Some((id, trial, lease)) = drawn {
                self.holdings.take(id, lease);
                let _ = self.labels.send(Message::Label(id, trial.label()));
                tracing::debug!(trial = id, "drawn: {}", trial.label());
                // Its other repeats wait as pending trials of the sweep.
                let repeats = if sampler.repeats() > 1 {
                    self.store.sweep_trials(self.sweep_id)?
                } else {
                    Vec::new()
                };
                for (other, spec) in repeats {
                    if other.status == "pending"
                        && other.id != id
                        && !self.candidates.iter().any(|(c, _)| *c == other.id)
                    {
                        let _ = self.labels.send(Message::Label(other.id, spec.label()));
                        self.candidates.push((other.id, spec));
                    }
                }
                return Ok(Next::Run(id, trial, None));
            }
        }
        if self.pruner.pauses() && (self.running_here > 0 || !settled) {
            return Ok(Next::Wait);
        }
        Ok(Next::Done)
    }

    /// Whether this process still holds `trial` under `lease`. While the database is out of
    /// reach the answer is yes without asking (for [`OUTAGE_RECHECK`] at a time), so training
    /// goes on instead of waiting on the connection; the writes are fenced anyway.
    fn still_holds(&mut self, trial: i64, lease: i64) -> bool {
        if self
            .outage
            .is_some_and(|since| since.elapsed() < OUTAGE_RECHECK)
        {
            return true;
        }
        match self.store.holds(trial, lease) {
            Ok(held) => {
                self.outage = None;
                held
            }
            Err(e @ Error::Unreachable { .. }) => {
                tracing::warn!("{e}; training goes on");
                self.outage = Some(Instant::now());
                true
            }
            Err(e) => {
                tracing::warn!("cannot check the lease of trial {trial}: {e}");
                true
            }
        }
    }

    /// Nothing was claimable: wait, reading the sweep's unfinished trials again every
    /// [`RESCAN_EVERY`] (a holder may die, a paused trial may qualify), until nothing was
    /// claimable for the patience given; leave at once when every trial is final.
    fn look_again(&mut self) -> Result<Next> {
        let idle = self
            .idle
            .as_mut()
            .expect("called when waiting is asked for");
        if idle.since.elapsed() >= idle.patience {
            return Ok(Next::Done);
        }
        if idle.scanned.elapsed() < RESCAN_EVERY {
            return Ok(Next::Wait);
        }
        idle.scanned = Instant::now();
        let stored = self.store.sweep_trials(self.sweep_id)?;
        let budget_left = self
            .sampler
            .as_ref()
            .is_some_and(|s| stored.len() < s.total_trials());
        let unfinished: Vec<(i64, TrialSpec)> = stored
            .into_iter()
            .filter(|(row, _)| {
                !matches!(row.status.as_str(), "done" | "diverged" | "pruned")
                    && !self.attempted.contains(&row.id)
            })
            .map(|(row, spec)| (row.id, spec))
            .collect();
        if unfinished.is_empty() && !budget_left && self.running_here == 0 {
            return Ok(Next::Done);
        }
        self.candidates = unfinished;
        self.next = 0;
        Ok(Next::Wait)
    }

    /// Claims the paused trial that now qualifies best, continued from its rung.
    fn promote(&mut self) -> Result<Option<Next>> {
        let past = self.store.past_trials(self.sweep_id, self.metric)?;
        let Some(id) = self.pruner.promotion(&curves(&past)) else {
            return Ok(None);
        };
        let claimed =
            self.store
                .claim_trial(id, &self.owner, owner::is_alive, self.stale_after, true)?;
        let Some((_, lease)) = claimed else {
            return Ok(None);
        };
        self.holdings.take(id, lease);
        let trial = past
            .into_iter()
            .find(|t| t.id == id)
            .expect("the promoted trial is in the history")
            .spec;
        tracing::info!(trial = id, "promoted");
        self.promoted += 1;
        let resume = self.resume_or_reset(id, &trial)?;
        Ok(Some(Next::Run(id, trial, resume)))
    }

    fn resume_or_reset(&mut self, id: i64, trial: &TrialSpec) -> Result<Option<ResumeState>> {
        Ok(match self.resume_point(id, trial) {
            Ok(state) => {
                tracing::info!(trial = id, epoch = state.epoch, "resuming");
                self.store.rewind_trial(id)?;
                self.resumed += 1;
                Some(state)
            }
            Err(StartOver::Store(e)) => return Err(e),
            Err(why) => {
                let recorded = self.store.epochs(id)?.len();
                if recorded > 0 || !matches!(why, StartOver::Files(Unresumable::NoState)) {
                    tracing::warn!(
                        trial = id,
                        "starting over ({recorded} recorded epochs dropped): {why}"
                    );
                }
                self.store.reset_trial(id)?;
                None
            }
        })
    }

    /// The early-stopping verdict for trial `id` of `epochs` epochs after the epochs in `curve`.
    fn judge(&mut self, id: i64, epochs: usize, curve: &[f64]) -> Verdict {
        match self.store.past_trials(self.sweep_id, self.metric) {
            Ok(past) => self.pruner.judge(id, epochs, curve, &curves(&past)),
            Err(e) => {
                tracing::warn!(
                    trial = id,
                    "cannot read the sweep's history to judge it: {e}"
                );
                Verdict::Continue
            }
        }
    }
}

fn curves(past: &[PastTrial]) -> Vec<Curve> {
    past.iter()
        .map(|t| Curve {
            trial: t.id,
            status: t.status.clone(),
            values: t.values.clone(),
        })
        .collect()
}

/// The most epochs any trial of the experiment trains.
fn most_epochs(spec: &ExperimentSpec) -> usize {
    let epochs = &spec.grid.epochs;
    epochs.distribution().map_or_else(
        || epochs.values().iter().copied().max().unwrap_or(1),
        |d| d.high as usize,
    )
}

impl Dispenser<'_> {
    /// The state to continue a claimed trial from, after writing to the database whatever its
    /// files hold and the database lacks; or why it must start over.
    fn resume_point(&self, id: i64, trial: &TrialSpec) -> Result<ResumeState, StartOver> {
        let state = train::read_resume_state(&self.runs_dir.join(id.to_string()))
            .map_err(StartOver::Files)?;
        if state.epoch > trial.epochs {
            return Err(StartOver::Mismatch(format!(
                "its files are at epoch {} of a trial of {} epochs",
                state.epoch, trial.epochs
            )));
        }
        let recorded = self.store.epochs(id).map_err(StartOver::Store)?;
        if recorded.len() > state.epoch {
            return Err(StartOver::Mismatch(format!(
                "its files (epoch {}) are behind the database (epoch {})",
                state.epoch,
                recorded.len()
            )));
        }
        let agrees = recorded.iter().zip(&state.history).all(|(row, figures)| {
            row.epoch == figures.epoch as i64
                && row.train_loss == Some(figures.train_loss)
                && row.val_loss == Some(figures.val_loss)
        });
        if !agrees {
            return Err(StartOver::Mismatch(
                "its files are from another attempt than the recorded epochs".into(),
            ));
        }
        if recorded.len() < state.epoch {
            tracing::info!(
                trial = id,
                "recording epochs {}..={} from the trial's files (the run was killed before \
                 the database had them)",
                recorded.len() + 1,
                state.epoch
            );
            let lease = self.holdings.lease(id).unwrap_or_default();
            self.store
                .catch_up(
                    id,
                    lease,
                    &state.history[recorded.len()..],
                    &state.checkpoints,
                )
                .map_err(StartOver::Store)?;
        }
        Ok(state)
    }
}

/// Why a claimed trial trains from its first epoch again.
enum StartOver {
    /// Its checkpoint directory cannot be continued from.
    Files(Unresumable),
    /// Its files and its database rows disagree.
    Mismatch(String),
    /// The database could not be read or written.
    Store(Error),
}

impl std::fmt::Display for StartOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartOver::Files(why) => why.fmt(f),
            StartOver::Mismatch(why) => f.write_str(why),
            StartOver::Store(e) => write!(f, "the database failed: {e}"),
        }
    }
}

/// Where a worker runs its trials: a device, and a compute pool of `threads` threads.
struct Slot<'a> {
    device: DeviceName,
    compute: &'a std::result::Result<rayon::ThreadPool, String>,
    threads: usize,
    runs_dir: &'a std::path::Path,
    stop: &'a AtomicBool,
}

impl Slot<'_> {
    fn run(
        &self,
        (id, trial, resume, lost): (i64, &TrialSpec, Option<ResumeState>, &AtomicBool),
        dataset: &Dataset,
        experiment: &Experiment,
        emit: &(dyn Fn(TrainEvent) + Sync),
        (judge, holds): (Judge, StillHeld),
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
            device: device::open(self.device),
            device_name: self.device.to_string(),
            threads: self.threads,
            dir: self.runs_dir.join(id.to_string()),
            metric: experiment.spec.sweep.metric,
            stop: self.stop,
            lost,
            holds,
            resume,
            judge,
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

/// The trial an event is about.
fn event_trial(event: &TrainEvent) -> i64 {
    match event {
        TrainEvent::Started { trial, .. }
        | TrainEvent::Epoch { trial, .. }
        | TrainEvent::Progress { trial, .. }
        | TrainEvent::Finished { trial, .. } => *trial,
    }
}

/// What the writer thread receives.
enum Message {
    /// A training event to persist and show.
    Event(TrainEvent),
    /// The label of a trial drawn after the run started, for the progress display.
    Label(i64, String),
}

/// The single writer: persists events in arrival order, feeds the progress display and keeps
/// the heartbeat of this process's trials fresh. After a write error it keeps draining (so
/// workers never block) and reports the first error at the end. `in_flight` counts events
/// sent and not yet written.
/// What a final trial keeps of its files.
struct Tidy {
    runs_dir: PathBuf,
    keep: Keep,
}

impl Tidy {
    /// Gives up the files a final trial no longer needs: rows first, so that no row ever
    /// points at a deleted file. A file that will not go is left for `sweep gc`.
    fn trial(&self, store: &Store, trial: i64) -> Result<()> {
        let dropped: Vec<&str> = train::dropped_kinds(self.keep)
            .into_iter()
            .map(|k| k.as_str())
            .collect();
        store.forget_checkpoints(trial, &dropped)?;
        let dir = self.runs_dir.join(trial.to_string());
        match train::tidy_final(&dir, self.keep) {
            Ok(freed) => tracing::debug!(trial, freed, "final trial's spare files removed"),
            Err(e) => tracing::warn!("{e} (`sweep gc` removes what is left)"),
        }
        Ok(())
    }
}

/// This process as the holder of its trials: its name, its leases, how often it beats.
struct Holder {
    owner: String,
    holdings: Holdings,
    beat_every: Duration,
}

fn write_events(
    store: Store,
    receiver: mpsc::Receiver<Message>,
    mut progress: Progress,
    (holder, tidy): (&Holder, &Tidy),
    in_flight: &AtomicUsize,
) -> (Store, Option<Error>, Duration) {
    let mut writing = Duration::ZERO;
    let mut first_error = None;
    let remember = |result: Result<()>, first_error: &mut Option<Error>| {
        if let Err(e) = result
            && first_error.is_none()
        {
            tracing::error!("{e}");
            *first_error = Some(e);
        }
    };
    let mut last_beat = Instant::now();
    loop {
        match receiver.recv_timeout(holder.beat_every.min(Duration::from_secs(1))) {
            Ok(Message::Event(event)) => {
                if first_error.is_none() {
                    let started = Instant::now();
                    let trial = event_trial(&event);
                    let lease = holder.holdings.lease(trial).unwrap_or_default();
                    let lost = holder.holdings.lost_flag(trial);
                    let mut written = if lost.load(Ordering::SeqCst) {
                        // Nothing more of a lost trial goes to the database.
                        Ok(())
                    } else {
                        // Events wait in the channel meanwhile, and training goes on.
                        retrying(|| store.apply(&event, lease))
                    };
                    if let Err(Error::LeaseLost { .. }) = &written {
                        tracing::warn!("{}; going on with other trials", written.unwrap_err());
                        lost.store(true, Ordering::SeqCst);
                        written = Ok(());
                    }
                    if let (Ok(()), TrainEvent::Finished { trial, end, .. }) = (&written, &event)
                        && !lost.load(Ordering::SeqCst)
                        && matches!(end.status(), "done" | "diverged" | "pruned")
                    {
                        written = retrying(|| tidy.trial(&store, *trial));
                    }
                    remember(written, &mut first_error);
                    writing += started.elapsed();
                }
                progress.on_event(&event);
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(Message::Label(trial, label)) => progress.name(trial, label),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        progress.tick();
        if last_beat.elapsed() >= holder.beat_every {
            last_beat = Instant::now();
            let started = Instant::now();
            match store.heartbeat(&holder.owner) {
                // Beats resume with the connection; a long outage may cost the trials.
                Err(e @ Error::Unreachable { .. }) => tracing::debug!("heartbeat: {e}"),
                other => remember(other, &mut first_error),
            }
            writing += started.elapsed();
        }
    }
    progress.finish();
    (store, first_error, writing)
}
