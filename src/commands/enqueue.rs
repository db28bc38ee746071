//! `sweep enqueue`: a configuration the user already believes in, queued for a search's next
//! draw (Optuna's `enqueue_trial`).

use super::output::note;
use crate::cli::EnqueueArgs;
use sweep::search::{Fixed, Sampler};
use sweep::store::Store;
use sweep::{Error, Result};

/// `sweep enqueue`.
pub fn enqueue(args: EnqueueArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let experiment = store.require_experiment(&args.sweep)?;
    let Some(sampler) = Sampler::new(&experiment.spec) else {
        return Err(Error::Usage(format!(
            "sweep {} is a grid: it trains every combination already; enqueue queues a \
             configuration for a search (sampler random, tpe, nsga2 or pbt)",
            args.sweep
        )));
    };
    let mut fixed = Fixed::new();
    for set in &args.set {
        let (key, value) = set.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "--set {set:?}: expected KEY=VALUE, e.g. --set grid.lr=0.003"
            ))
        })?;
        let key = key.trim();
        let name = key
            .strip_prefix("grid.")
            .or_else(|| (key == "data.split").then_some("split"))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--set {set:?}: name a grid axis as grid.NAME (grid.lr, grid.arch, ...) or \
                     the split as data.split"
                ))
            })?;
        let coordinate = sampler
            .space()
            .coordinate_of(name, value)
            .map_err(|why| Error::Usage(format!("--set {set:?}: {why}; nothing was queued")))?;
        fixed.insert(name.to_owned(), coordinate);
    }
    let sweep_id = store
        .sweep_id(&args.sweep)?
        .expect("a stored experiment has its sweep");
    store.enqueue(sweep_id, &fixed, &args.set.join(" "))?;
    let drawn = store.sweep_trials(sweep_id)?.len() / sampler.repeats().max(1);
    let budget = sampler.total_trials() / sampler.repeats().max(1);
    let waiting = store.waiting_enqueued(sweep_id)?;
    if drawn + waiting > budget {
        note!(
            "queued for sweep {}, but its budget has room for {} more draws and {waiting} \
             configurations wait: raise [sweep] trials (or the population) to draw them all",
            args.sweep,
            budget.saturating_sub(drawn)
        );
    } else {
        note!(
            "queued for sweep {} (draw {} of {budget}, after {} waiting before it): its next \
             `sweep run`, `sweep resume` or worker draws it; unset parameters are drawn as usual",
            args.sweep,
            drawn + waiting,
            waiting.saturating_sub(1)
        );
    }
    Ok(0)
}
