//! A slot's group: the trials it trains together (one, or several fused into one model) and
//! what each asks the dispenser while it trains (whether it goes on, whether it is still held).

use super::dispenser::Dispenser;
use super::holdings::Holdings;
use super::slot::{Judge, Slot, StillHeld};
use crate::data::Dataset;
use crate::experiment::{Experiment, TrialSpec};
use crate::model::fused;
use crate::search::{Pruner, Verdict};
use crate::train::{ResumeState, TrainEvent, TrialEnd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A claimed trial and where it continues from.
pub(super) type Claimed = (i64, TrialSpec, Option<ResumeState>);

/// One member's [`Judge`], made for it.
type OwnedJudge<'a> = Box<dyn Fn(&[f64]) -> Verdict + Sync + 'a>;

/// One member's [`StillHeld`], made for it.
type OwnedStillHeld<'a> = Box<dyn Fn() -> bool + Sync + 'a>;

/// One trial of a slot's group: what it trains and how it asks about itself.
pub(super) struct Member<'a> {
    pub(super) id: i64,
    pub(super) trial: TrialSpec,
    pub(super) resume: Option<ResumeState>,
    pub(super) lost: &'a AtomicBool,
    pub(super) judge: Judge<'a>,
    pub(super) holds: StillHeld<'a>,
}

/// Up to `fuse` trials to train as one model: `first`, then unfinished trials the dispenser
/// holds that fuse with it ([`crate::model::fused::fuse_key`]).
pub(super) fn fused_group(
    first: Claimed,
    fuse: usize,
    dispenser: &Mutex<Dispenser>,
) -> Vec<Claimed> {
    let mut group = vec![first];
    if fuse <= 1 {
        return group;
    }
    let Some(key) = fused::fuse_key(&group[0].1) else {
        let why = fused::unfusable(&group[0].1).unwrap_or_default();
        tracing::info!("trial {} trains alone: {why}", group[0].0);
        return group;
    };
    while group.len() < fuse {
        let more = dispenser
            .lock()
            .expect("no panics under the lock")
            .next_matching(&key, fuse);
        match more {
            Some(member) => group.push(member),
            None => break,
        }
    }
    group
}

/// Trains `group` on `slot`, each member judged and lease-checked through the dispenser; each
/// member's id and end, a failure of a trial this process no longer holds counted as lost.
pub(super) fn train(
    slot: &Slot,
    group: Vec<Claimed>,
    (dispenser, holdings, pruner): (&Mutex<Dispenser>, &Holdings, &Pruner),
    (dataset, experiment): (&Dataset, &Experiment),
    emit: &(dyn Fn(TrainEvent) + Sync),
) -> Vec<(i64, TrialEnd)> {
    let judges: Vec<OwnedJudge> = group
        .iter()
        .map(|(id, trial, _)| {
            let (id, epochs) = (*id, trial.epochs);
            Box::new(move |curve: &[f64]| {
                if !pruner.is_active() {
                    return Verdict::Continue;
                }
                dispenser
                    .lock()
                    .expect("no panics under the lock")
                    .judge(id, epochs, curve)
            }) as OwnedJudge
        })
        .collect();
    let holds: Vec<OwnedStillHeld> = group
        .iter()
        .map(|&(id, _, _)| {
            Box::new(move || {
                let lease = holdings.lease(id).unwrap_or_default();
                dispenser
                    .lock()
                    .expect("no panics under the lock")
                    .still_holds(id, lease)
            }) as OwnedStillHeld
        })
        .collect();
    let losts: Vec<_> = group
        .iter()
        .map(|(id, ..)| holdings.lost_flag(*id))
        .collect();
    let ids: Vec<i64> = group.iter().map(|(id, ..)| *id).collect();
    let members: Vec<Member> = group
        .into_iter()
        .zip(&losts)
        .zip(judges.iter().zip(&holds))
        .map(|(((id, trial, resume), lost), (judge, holds))| Member {
            id,
            trial,
            resume,
            lost,
            judge: judge.as_ref(),
            holds: holds.as_ref(),
        })
        .collect();
    let ends = slot.run(members, dataset, experiment, emit);
    ends.into_iter()
        .enumerate()
        .map(|(k, end)| {
            // Whatever ended a lost trial (a clash over its files with the new holder, say) is
            // the new holder's business now.
            let lost = losts[k].load(Ordering::SeqCst)
                || (matches!(end, TrialEnd::Failed { .. }) && !holds[k]());
            let end = if lost { TrialEnd::Lost } else { end };
            tracing::debug!(trial = ids[k], "{}", end.describe());
            dispenser
                .lock()
                .expect("no panics under the lock")
                .trial_ended();
            (ids[k], end)
        })
        .collect()
}
