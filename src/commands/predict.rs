//! `sweep predict`: classify a data split with a trial's checkpoint and write one class per line.

use super::output::note;
use super::results::trial;
use crate::cli::PredictArgs;
use sweep::experiment::{Experiment, TrialSpec};
use sweep::store::{CheckpointRow, Store, TrialListing};
use sweep::{Error, Result};

/// `sweep predict`.
pub fn predict(args: PredictArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let listing = trial(&store, args.trial)?;
    let checkpoints = store.checkpoints(args.trial)?;
    let wanted = args.checkpoint.as_str();
    // A sweep whose stored spec this version cannot read still predicts (from --data or the
    // default data directory); the reason is logged.
    let experiment = store
        .stored_experiment(&listing.sweep)
        .inspect_err(|e| tracing::warn!("{e}"))
        .ok()
        .flatten();
    let Some(chosen) = checkpoints.iter().find(|c| c.kind == wanted) else {
        return Err(Error::NotFound(no_checkpoint(
            &listing,
            wanted,
            &checkpoints,
            experiment.as_ref(),
        )));
    };
    let path = std::path::Path::new(&chosen.path);
    sweep::train::verify_checkpoint(args.trial.0, path, &chosen.sha256)?;
    let spec: TrialSpec = serde_json::from_value(serde_json::Value::Object(listing.params.clone()))
        .map_err(|e| Error::Store {
            path: args.db.db.to_string().into(),
            message: format!("trial {} has unreadable parameters: {e}", args.trial),
        })?;
    let stored_dir = experiment.and_then(|e| e.spec.data.dir);
    let dir = sweep::data::locate(args.data.as_deref().or(stored_dir.as_deref()))?;
    let dataset = sweep::data::Dataset::load(&dir)?;
    let evaluation = sweep::train::predict(&spec, path, &dataset, args.split, args.limit)?;
    let mut text = String::with_capacity(evaluation.predictions.len() * 2);
    for p in &evaluation.predictions {
        text.push_str(&p.to_string());
        text.push('\n');
    }
    std::fs::write(&args.output, text).map_err(|e| Error::io(&args.output, e))?;
    let images = evaluation.predictions.len();
    note!(
        "trial {} ({wanted} epoch {}): {images} predictions written to {}; accuracy {:.4} on \
         {images} {} images{}, loss {:.4}",
        args.trial,
        chosen.epoch,
        args.output.display(),
        evaluation.accuracy,
        args.split.as_str(),
        if args.limit.is_some_and(|n| n <= images) {
            format!(" (the first {images}: --limit)")
        } else {
            String::new()
        },
        evaluation.loss
    );
    Ok(0)
}

/// Why a trial has no checkpoint of the kind asked for, and what to do about it.
fn no_checkpoint(
    listing: &TrialListing,
    wanted: &str,
    present: &[CheckpointRow],
    experiment: Option<&Experiment>,
) -> String {
    let id = listing.id;
    if !listing.status.is_final() {
        return format!(
            "trial {id} has no {wanted} checkpoint yet (status {}): run its sweep to the end \
             first",
            listing.status
        );
    }
    let keep = experiment.map_or("best", |e| e.spec.sweep.keep.as_str());
    let other = present
        .iter()
        .map(|c| {
            format!(
                "; its {} checkpoint is kept: --checkpoint {}",
                c.kind, c.kind
            )
        })
        .collect::<String>();
    format!(
        "trial {id} kept no {wanted} checkpoint: its sweep {:?} has [sweep] keep = \"{keep}\"{other}. \
         To keep it next time, set keep = \"{wanted}\" or \"both\" under [sweep] before running a \
         sweep",
        listing.sweep
    )
}
