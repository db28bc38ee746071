//! Putting a sweep into the database so that any process can work on it, where its trials'
//! files go, and which of its trials a live process holds.

use crate::error::{Error, Result};
use crate::experiment::{Experiment, TrialSpec};
use crate::process;
use crate::search::Sampler;
use crate::store::{HeldTrial, Location, Store, StoredTrial};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    let mut sampler = Sampler::new(spec);
    if let Some(sampler) = &mut sampler {
        warm_start(&store, experiment, sampler)?;
    }
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

/// Lends the sampler the final trials of the sweeps `[sweep] warm_start` names.
fn warm_start(store: &Store, experiment: &Experiment, sampler: &mut Sampler) -> Result<()> {
    let spec = &experiment.spec;
    for name in &spec.sweep.warm_start {
        if *name == experiment.name {
            return Err(Error::Spec(format!(
                "[sweep] warm_start names this sweep ({name}): a sweep learns from its own trials \
                 already; name earlier sweeps"
            )));
        }
        let Some(id) = store.sweep_id(name)? else {
            return Err(Error::NotFound(format!(
                "[sweep] warm_start names sweep {name}, which {} does not hold: `sweep ls --db \
                 {}` lists the sweeps there",
                store.location(),
                store.location()
            )));
        };
        let before = sampler.borrowed();
        let inside = sampler.borrow(store.past_trials(id, spec.sweep.metric)?) - before;
        if inside == 0 {
            tracing::warn!(
                "warm start: no final trial of sweep {name} lies inside this sweep's space \
                 (its fixed values or ranges differ), so it adds nothing"
            );
        } else {
            tracing::info!("warm start: {inside} final trials of sweep {name} join the history");
        }
    }
    Ok(())
}
