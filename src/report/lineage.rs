//! Population-based training's lineage of a member: the copies made into it, the members its
//! final weights passed through (its ancestry), the schedule of each explored hyperparameter
//! along that ancestry, and that schedule as an experiment that replays it.

use crate::error::{Error, Result};
use crate::experiment::{Axis, ExperimentSpec, Hyper, SamplerName, TrialSpec};
use crate::trial::{MemberCopy, TrialId};
use serde::Serialize;
use std::collections::HashMap;

/// A stretch of epochs the final weights of a member were trained through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stretch {
    /// The member that trained them.
    pub member: i64,
    /// First epoch of the stretch.
    pub first_epoch: usize,
    /// Last epoch of the stretch.
    pub last_epoch: usize,
    /// The explored hyperparameters over the stretch.
    pub params: Vec<(Hyper, f64)>,
}

/// A member's lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    /// The copies made into this member, in order.
    pub copies: Vec<MemberCopy>,
    /// The stretches its weights were trained through, first to last.
    pub ancestry: Vec<Stretch>,
    /// Each explored hyperparameter's values along the ancestry: `(first epoch, value)`.
    pub schedule: Vec<(Hyper, Vec<(usize, f64)>)>,
}

/// The lineage of `member` after `epochs` epochs, from the sweep's trials (`specs`, their
/// parameters as drawn) and every copy recorded in it; `explored` are the hyperparameters PBT
/// explores.
pub fn lineage(
    member: i64,
    epochs: usize,
    specs: &HashMap<i64, TrialSpec>,
    copies: &[(TrialId, MemberCopy)],
    explored: &[Hyper],
) -> Lineage {
    let copies_of = |trial: i64| -> Vec<MemberCopy> {
        copies
            .iter()
            .filter(|(t, _)| t.0 == trial)
            .map(|(_, c)| c.clone())
            .collect()
    };
    let mut ancestry = Vec::new();
    let (mut at, mut last) = (member, epochs);
    // Walk back: after its last copy before `last`, a member's weights are its own; before it,
    // they are the donor's.
    while last >= 1 {
        let own = copies_of(at);
        let before: Vec<MemberCopy> = own.iter().filter(|c| c.epoch < last).cloned().collect();
        let copy = before.last().cloned();
        let first = copy.as_ref().map_or(1, |c| c.epoch + 1);
        let mut spec = specs.get(&at).cloned().unwrap_or_else(|| {
            specs
                .values()
                .next()
                .cloned()
                .expect("a sweep with copies has trials")
        });
        spec.changes = MemberCopy::changes(&before);
        let spec = spec.at_epoch(first);
        ancestry.push(Stretch {
            member: at,
            first_epoch: first,
            last_epoch: last,
            params: explored.iter().map(|&h| (h, h.of(&spec))).collect(),
        });
        match copy {
            Some(c) => {
                at = c.donor;
                last = c.epoch;
            }
            None => break,
        }
    }
    ancestry.reverse();
    let schedule = explored
        .iter()
        .map(|&hyper| {
            let mut values: Vec<(usize, f64)> = Vec::new();
            for stretch in &ancestry {
                let value = stretch
                    .params
                    .iter()
                    .find(|(h, _)| *h == hyper)
                    .map_or(f64::NAN, |p| p.1);
                if values.last().is_none_or(|last| last.1 != value) {
                    values.push((stretch.first_epoch, value));
                }
            }
            (hyper, values)
        })
        .collect();
    Lineage {
        copies: copies_of(member),
        ancestry,
        schedule,
    }
}

/// An experiment that trains one trial the way member `trial`'s final weights were trained:
/// from the first member of its ancestry's parameters, with `[schedule]` changing the explored
/// hyperparameters where the ancestry did. `spec` is the sweep's experiment, `root` the
/// parameters of the ancestry's first member.
pub fn replay_experiment(
    spec: &ExperimentSpec,
    root: &TrialSpec,
    lineage: &Lineage,
    name: &str,
) -> Result<ExperimentSpec> {
    let mut replay = spec.clone();
    replay.sweep.name = Some(name.to_owned());
    replay.sweep.sampler = SamplerName::Grid;
    replay.sweep.trials = None;
    replay.sweep.repeats = 1;
    replay.sweep.seed = root.seed;
    replay.sweep.warm_start.clear();
    replay.pbt = None;
    let g = &mut replay.grid;
    g.arch = Axis::one(root.arch);
    g.optimizer = Axis::one(root.optimizer);
    g.lr = Axis::one(root.lr);
    g.batch_size = Axis::one(root.batch_size);
    g.epochs = Axis::one(root.epochs);
    g.dropout = Axis::one(root.dropout);
    g.weight_decay = Axis::one(root.weight_decay);
    g.augment = Axis::one(root.augment);
    g.schedule = Axis::one(root.schedule);
    g.warmup_epochs = Axis::one(root.warmup_epochs);
    g.label_smoothing = Axis::one(root.label_smoothing);
    if g.batch_norm.is_some() {
        g.batch_norm = Some(Axis::one(root.batch_norm));
    }
    replay.data.split = Axis::one(root.split);
    for (hyper, values) in &lineage.schedule {
        for &(epoch, value) in values {
            if value.is_nan() {
                return Err(Error::Data(format!(
                    "the lineage does not record {} from epoch {epoch}: [schedule] cannot \
                     replay it",
                    hyper.name()
                )));
            }
            if epoch == 1 {
                hyper.set_axis(&mut replay.grid, value);
            } else {
                replay.schedule.set(*hyper, epoch, value);
            }
        }
    }
    Ok(replay)
}

/// A trial's lineage with what replaying it needs.
#[derive(Debug, Clone)]
pub struct TrialLineage {
    /// The lineage (for a trial outside population-based training: itself alone).
    pub lineage: Lineage,
    /// Whether the trial is a population-based training member.
    pub member: bool,
    /// The parameters of the first member of its ancestry.
    pub root: TrialSpec,
    /// Its sweep's experiment.
    pub experiment: ExperimentSpec,
}

/// The lineage of stored trial `trial` (of sweep `sweep`, `epochs` epochs trained).
pub fn trial_lineage(
    store: &crate::store::Store,
    sweep: &str,
    trial: i64,
    epochs: usize,
) -> Result<TrialLineage> {
    let experiment = store.require_experiment(sweep)?.spec;
    let (sweep_id, stored) = drawn(store, sweep)?;
    let specs: HashMap<i64, TrialSpec> = stored.into_iter().collect();
    let own = specs.get(&trial).cloned().ok_or_else(|| {
        Error::NotFound(format!(
            "no trial {trial} in sweep {sweep} of {}",
            store.location()
        ))
    })?;
    let Some(pbt) = experiment.pbt_settings() else {
        let epochs = epochs.max(1);
        let lineage = Lineage {
            copies: Vec::new(),
            ancestry: vec![Stretch {
                member: trial,
                first_epoch: 1,
                last_epoch: epochs,
                params: crate::experiment::HYPERS
                    .iter()
                    .map(|&h| (h, h.of(&own)))
                    .collect(),
            }],
            schedule: crate::experiment::HYPERS
                .iter()
                .map(|&h| (h, own.schedule_of(h)))
                .collect(),
        };
        return Ok(TrialLineage {
            lineage,
            member: false,
            root: own,
            experiment,
        });
    };
    let explored = pbt.mutable(&experiment.grid.searched_names());
    let copies = store.sweep_copies(sweep_id)?;
    let lineage = lineage(trial, epochs, &specs, &copies, &explored);
    let root = lineage
        .ancestry
        .first()
        .and_then(|s| specs.get(&s.member))
        .cloned()
        .unwrap_or(own);
    Ok(TrialLineage {
        lineage,
        member: true,
        root,
        experiment,
    })
}

/// The lineage of a listed trial when it is a population-based training member. It adds to a
/// trial's page: a sweep whose stored experiment cannot be read gives none rather than an error.
pub fn member_lineage(
    store: &crate::store::Store,
    trial: &crate::store::TrialListing,
) -> Option<Lineage> {
    trial_lineage(store, &trial.sweep, trial.id, trial.epochs_done as usize)
        .ok()
        .filter(|found| found.member)
        .map(|found| found.lineage)
}

/// The replay of a trial's lineage as an experiment file.
pub fn replay_toml(sweep: &str, trial: i64, found: &TrialLineage) -> Result<String> {
    let name = format!("{sweep}-replay-{trial}");
    let replay = replay_experiment(&found.experiment, &found.root, &found.lineage, &name)?;
    let body = toml::to_string(&replay)
        .map_err(|e| Error::Data(format!("cannot write the replay experiment: {e}")))?;
    let path: Vec<String> = found
        .lineage
        .ancestry
        .iter()
        .map(|s| {
            format!(
                "trial {} (epochs {}-{})",
                s.member, s.first_epoch, s.last_epoch
            )
        })
        .collect();
    Ok(format!(
        "# Replays how trial {trial} of sweep {sweep} was trained: {}.\n# Save it as a file and \
         run it: `sweep run FILE`. With the same data it trains the same weights.\n\n{body}",
        path.join(", then ")
    ))
}

/// Every member's lineage in a population-based training sweep (by trial id, in draw order);
/// empty for other sweeps.
pub fn population_lineages(
    store: &crate::store::Store,
    sweep: &str,
) -> Result<Vec<(i64, Lineage)>> {
    let Some(experiment) = store.stored_experiment(sweep)?.map(|e| e.spec) else {
        return Ok(Vec::new());
    };
    let Some(pbt) = experiment.pbt_settings() else {
        return Ok(Vec::new());
    };
    let explored = pbt.mutable(&experiment.grid.searched_names());
    let (sweep_id, stored) = drawn(store, sweep)?;
    let specs: HashMap<i64, TrialSpec> = stored.iter().cloned().collect();
    let copies = store.sweep_copies(sweep_id)?;
    let listings = store.list_trials(Some(sweep))?;
    Ok(stored
        .iter()
        .map(|&(id, _)| {
            let epochs = listings
                .iter()
                .find(|l| l.id == id)
                .map_or(0, |l| l.epochs_done as usize);
            (id, lineage(id, epochs, &specs, &copies, &explored))
        })
        .collect())
}

/// A stored sweep's id and its trials' parameters as drawn, by trial id in draw order.
fn drawn(store: &crate::store::Store, sweep: &str) -> Result<(i64, Vec<(i64, TrialSpec)>)> {
    let sweep_id = store
        .sweep_id(sweep)?
        .ok_or_else(|| Error::NotFound(format!("no sweep {sweep} in {}", store.location())))?;
    let trials = store
        .sweep_trials(sweep_id)?
        .into_iter()
        .map(|(row, spec)| (row.id.0, spec))
        .collect();
    Ok((sweep_id, trials))
}
