//! `/api/sweeps/NAME/analysis`: the report's computations (the "what mattered" tables, the
//! optimisation history, the intermediate values, the importance table), never a second copy
//! of them, thinned on the server so that a page's data stays small at 100,000 trials.
//!
//! Computing them reads every trial and epoch of the sweep (seconds at 100,000 trials), so
//! they are kept per sweep with the [`SweepVersion`] they were computed at, computed for every
//! sweep when the server starts, and, once a sweep changed, answered from the kept ones while
//! a background thread brings them up to date: a live page never waits for a recomputation,
//! and a running sweep is recomputed at most once at a time.

use super::views::{experiment_of, sweep_id};
use crate::error::Result;
use crate::report::{self, Outcome, SearchInput};
use crate::store::{Store, SweepVersion};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The most points a chart of a sweep is sent; more are thinned (the best ones always kept).
const MOST_POINTS: usize = 2_000;
/// The most curves the intermediate-values chart is sent.
const MOST_CURVES: usize = 200;

/// The kept analyses, by sweep name.
#[derive(Default)]
pub struct Cache {
    slots: Mutex<HashMap<String, Slot>>,
    computed: Condvar,
}

#[derive(Default)]
struct Slot {
    /// The latest analysis and the version it was computed at.
    kept: Option<(SweepVersion, Value)>,
    /// Whether a thread is computing it now.
    computing: bool,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores what a computation at `version` gave and wakes the requests waiting for it.
    fn finish(&self, name: &str, version: SweepVersion, result: &Result<Value>) {
        let mut slots = self.lock();
        let slot = slots.entry(name.to_string()).or_default();
        slot.computing = false;
        if let Ok(value) = result {
            slot.kept = Some((version, value.clone()));
        }
        self.computed.notify_all();
    }
}

/// The sweep's analysis: the kept one when the sweep has not changed since; a stale one (with
/// a refresh started in the background) when it has; computed here only when none was ever
/// kept (and then once, however many requests ask at the same time).
pub fn analysis(store: &Arc<Store>, cache: &Arc<Cache>, name: &str) -> Result<Value> {
    let version = store.sweep_version(sweep_id(store, name)?)?;
    let mut slots = cache.lock();
    loop {
        let slot = slots.entry(name.to_string()).or_default();
        match &slot.kept {
            Some((seen, value)) if *seen == version => return Ok(value.clone()),
            Some((_, value)) => {
                let stale = value.clone();
                if !slot.computing {
                    slot.computing = true;
                    let (store, cache, name) =
                        (Arc::clone(store), Arc::clone(cache), name.to_string());
                    std::thread::spawn(move || {
                        let result = compute(&store, &name);
                        cache.finish(&name, version, &result);
                    });
                }
                return Ok(stale);
            }
            None if slot.computing => {
                slots = cache
                    .computed
                    .wait(slots)
                    .unwrap_or_else(|p| p.into_inner());
            }
            None => {
                slot.computing = true;
                drop(slots);
                let result = compute(store, name);
                cache.finish(name, version, &result);
                return result;
            }
        }
    }
}

/// Computes every sweep's analysis in the background, so that the first page to ask finds
/// it ready (or waits for this computation rather than starting its own).
pub fn warm(store: Arc<Store>, cache: Arc<Cache>) {
    std::thread::spawn(move || {
        for name in store.sweep_names().unwrap_or_default() {
            if let Err(e) = analysis(&store, &cache, &name) {
                tracing::debug!("analysis of sweep {name}: {e}");
            }
        }
    });
}

/// The report's "what mattered" tables and, for a search, its history, intermediate values,
/// metric against each parameter and importance table, thinned to at most [`MOST_POINTS`]
/// points per chart.
fn compute(store: &Store, name: &str) -> Result<Value> {
    let started = std::time::Instant::now();
    let (experiment, measure) = experiment_of(store, name)?;
    // The listing and the histories are two long reads on connections of their own: side by
    // side they take the time of the longer.
    let (trials, listed, search, histories) = std::thread::scope(|scope| {
        let listing = scope.spawn(|| {
            let trials = store.list_trials(Some(name));
            (trials, started.elapsed())
        });
        let search = report::search_input(store, name);
        let histories = started.elapsed();
        let (trials, listed) = listing.join().expect("the listing thread does not panic");
        (trials, listed, search, histories)
    });
    let (trials, search) = (trials?, search?);
    let mattered = report::what_mattered(&trials, measure, search.as_ref().map(|s| &s.space));
    let search = search.as_ref().map(search_json);
    let objectives = experiment.spec.sweep.objectives();
    let front = if objectives.len() > 1 {
        let finished_s = store.result_times(sweep_id(store, name)?)?;
        Some(front_json(report::FrontSummary::of(
            &trials,
            &objectives,
            &finished_s,
        )))
    } else {
        None
    };
    tracing::debug!(
        "analysis of sweep {name}: {} trials listed in {listed:.2?}, histories read by {histories:.2?}, \
         computed by {:.2?}",
        trials.len(),
        started.elapsed()
    );
    Ok(json!({
        "metric": measure.name(),
        "higher_is_better": measure.higher_is_better(),
        "what_mattered": mattered,
        "search": search,
        "front": front,
    }))
}

/// The Pareto front as the web view draws it, each series thinned to [`MOST_POINTS`] (the
/// trials on the front always kept).
fn front_json(mut summary: report::FrontSummary) -> Value {
    summary.trials = thin(&summary.trials, MOST_POINTS, |p| p.on_front);
    summary.hypervolume_by_trial = steps(&summary.hypervolume_by_trial);
    summary.hypervolume_by_time = steps(&summary.hypervolume_by_time);
    json!(summary)
}

/// A rising step curve by the points where it rises, and its last point.
fn steps(line: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = Vec::new();
    for &(x, y) in line {
        if kept.last().is_none_or(|&(_, last)| y != last) {
            kept.push((x, y));
        }
    }
    if let (Some(&end), Some(&kept_end)) = (line.last(), kept.last())
        && end != kept_end
    {
        kept.push(end);
    }
    thin(&kept, MOST_POINTS, |_| false)
}

/// Every `n`th item so that at most `most` remain, always keeping those `keep` marks.
fn thin<T: Clone>(items: &[T], most: usize, keep: impl Fn(&T) -> bool) -> Vec<T> {
    if items.len() <= most {
        return items.to_vec();
    }
    let stride = items.len().div_ceil(most);
    items
        .iter()
        .enumerate()
        .filter(|(i, item)| i % stride == 0 || keep(item))
        .map(|(_, item)| item.clone())
        .collect()
}

fn search_json(input: &SearchInput) -> Value {
    let points = input.points();
    // The running best, so that thinning never drops a point the best-so-far line steps on.
    let mut best: Option<f64> = None;
    let mut record = std::collections::HashSet::new();
    for p in points.iter().filter(|p| p.outcome == Outcome::Done) {
        if best.is_none_or(|b| input.better(p.value, b)) {
            best = Some(p.value);
            record.insert(p.id);
        }
    }
    let history = thin(&points, MOST_POINTS, |p| record.contains(&p.id));
    let curves = report::intermediate_curves(input);
    let final_value = |values: &Vec<Option<f64>>| values.iter().rev().find_map(|v| *v);
    let mut ranked: Vec<&(i64, Outcome, Vec<Option<f64>>)> = curves.iter().collect();
    ranked.sort_by(|a, b| {
        let (x, y) = (final_value(&a.2), final_value(&b.2));
        let order = x.unwrap_or(f64::NAN).total_cmp(&y.unwrap_or(f64::NAN));
        if input.better(1.0, 0.0) {
            order.reverse()
        } else {
            order
        }
    });
    // The best half of the budget, then an even sample of the rest (pruned ones included).
    let mut shown: Vec<&(i64, Outcome, Vec<Option<f64>>)> =
        ranked.iter().take(MOST_CURVES / 2).copied().collect();
    let rest: Vec<&(i64, Outcome, Vec<Option<f64>>)> =
        ranked.iter().skip(MOST_CURVES / 2).copied().collect();
    shown.extend(thin(&rest, MOST_CURVES / 2, |_| false));
    let intermediate: Vec<Value> = shown
        .iter()
        .map(|(id, outcome, values)| json!({ "id": id, "outcome": outcome, "values": values }))
        .collect();
    let panels: Vec<Value> = report::param_panels(input, &points)
        .into_iter()
        .map(|panel| {
            json!({
                "name": panel.name,
                "log": panel.log,
                "points": thin(&panel.points, MOST_POINTS, |p| record.contains(&p.3)),
            })
        })
        .collect();
    json!({
        "method": input.method,
        "metric": input.metric.name(),
        "trials": input.trials.len(),
        "results": points.len(),
        "history": history,
        "intermediate": intermediate,
        "intermediate_total": curves.len(),
        "panels": panels,
        "params": input.space.params.iter().map(|p| json!({
            "name": p.name,
            "log": matches!(&p.domain, crate::search::Domain::Drawn(d) if d.kind.is_log()),
            "choices": match &p.domain {
                crate::search::Domain::Choice(labels) => json!(labels),
                crate::search::Domain::Drawn(_) => Value::Null,
            },
        })).collect::<Vec<_>>(),
        "importance": report::importance_table(input),
    })
}
