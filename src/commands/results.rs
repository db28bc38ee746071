//! The commands that read the results database: ls, show, best, compare, export, report.

use super::output::note;
use super::output::print;
use crate::cli::{BestArgs, CompareArgs, ExportArgs, LsArgs, ReportArgs, ShowArgs, ShowFormat};
use std::collections::HashMap;
use sweep::disk::DirUsage;
use sweep::report::{self, Format, Measure, ReportInput, Rows, TrialDetail, TrialDisk};
use sweep::store::{Store, TrialListing, TrialQuery, parse_filter, parse_sort};
use sweep::trial::TrialId;
use sweep::{Error, Result};

pub(super) fn trial(store: &Store, id: TrialId) -> Result<TrialListing> {
    store.trial(id)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no trial {id} in {}: `sweep ls --db {}` lists the trial ids",
            store.location(),
            store.location()
        ))
    })
}

fn detail(store: &Store, id: TrialId) -> Result<TrialDetail> {
    let trial = trial(store, id)?;
    let disk = sweep_disk(store, &trial.sweep)?.map(|sweep| TrialDisk {
        trial: DirUsage::of(sweep.dir.join(id.to_string())),
        sweep,
    });
    let lineage = report::member_lineage(store, &trial);
    Ok(TrialDetail {
        epochs: store.epochs(id)?,
        checkpoints: store.checkpoints(id)?,
        confusion: TrialDetail::confusion_from(&store.confusion(id)?),
        disk,
        lineage,
        trial,
    })
}

/// What a sweep's checkpoint directory takes, when its run recorded where it is.
fn sweep_disk(store: &Store, sweep: &str) -> Result<Option<DirUsage>> {
    Ok(store.sweep_runs_dir(sweep)?.map(DirUsage::of))
}

fn empty_note(store: &Store, listings: &[TrialListing], format: Format) -> bool {
    if listings.is_empty() && format == Format::Table {
        note!("no trials match in {}", store.location());
        return true;
    }
    false
}

/// `sweep ls`.
pub fn ls(args: LsArgs) -> Result<i32> {
    let filter = args.filter.as_deref().map(parse_filter).transpose()?;
    let sort = args
        .sort
        .iter()
        .map(|s| parse_sort(s))
        .collect::<Result<Vec<_>>>()?;
    let store = Store::open_existing(&args.db.db)?;
    store.require_sweep(args.sweep.as_deref())?;
    let sorted = !sort.is_empty();
    let mut listings = store.query_trials(&TrialQuery {
        sweep: args.sweep,
        filter,
        sort,
        limit: if args.pareto { None } else { args.limit },
        offset: 0,
    })?;
    if args.pareto {
        listings = fronts(&store, &listings, sorted)?;
        listings.truncate(args.limit.unwrap_or(usize::MAX));
    }
    if empty_note(&store, &listings, args.format) {
        return Ok(0);
    }
    print(&report::listings(&listings, args.format))
}

/// The Pareto front of each sweep among `listings`, sweep by sweep; each front in the order of
/// `listings` when `keep_order`, else by its first objective.
fn fronts(store: &Store, listings: &[TrialListing], keep_order: bool) -> Result<Vec<TrialListing>> {
    let mut sweeps: Vec<&str> = Vec::new();
    for listing in listings {
        if !sweeps.contains(&listing.sweep.as_str()) {
            sweeps.push(&listing.sweep);
        }
    }
    let mut on_front: Vec<TrialListing> = Vec::new();
    for sweep in sweeps {
        let objectives = store.require_experiment(sweep)?.spec.sweep.objectives();
        let members: Vec<TrialListing> = listings
            .iter()
            .filter(|l| l.sweep == sweep)
            .cloned()
            .collect();
        let front = report::pareto_front(&members, &objectives);
        if keep_order {
            let ids: Vec<i64> = front.iter().map(|t| t.id).collect();
            on_front.extend(members.iter().filter(|m| ids.contains(&m.id)).cloned());
        } else {
            on_front.extend(front.into_iter().cloned());
        }
    }
    Ok(on_front)
}

/// `sweep show`.
pub fn show(args: ShowArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let format = match args.format {
        ShowFormat::Toml => {
            let t = trial(&store, args.trial)?;
            let found = report::trial_lineage(&store, &t.sweep, t.id, t.epochs_done as usize)?;
            return print(&report::replay_toml(&t.sweep, t.id, &found)?);
        }
        ShowFormat::Table => Format::Table,
        ShowFormat::Csv => Format::Csv,
        ShowFormat::Json => Format::Json,
        ShowFormat::Md => Format::Md,
    };
    print(&report::show(&detail(&store, args.trial)?, format))
}

/// `sweep best`.
pub fn best(args: BestArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    store.require_sweep(args.sweep.as_deref())?;
    let listings = store.list_trials(args.sweep.as_deref())?;
    let multi_objective = |sweep: &str| -> Result<bool> {
        Ok(store
            .require_experiment(sweep)?
            .spec
            .sweep
            .is_multi_objective())
    };
    let single_sweep = listings
        .first()
        .map(|l| l.sweep.clone())
        .filter(|first| listings.iter().all(|l| l.sweep == *first));
    if args.metric.is_none()
        && args.by.is_none()
        && let Some(sweep) = single_sweep
        && multi_objective(&sweep)?
    {
        let front = fronts(&store, &listings, false)?;
        if front.is_empty() {
            return Err(Error::NotFound(format!(
                "no finished trial of sweep {sweep} has every objective recorded in {}",
                store.location()
            )));
        }
        return print(&report::listings(&front, args.format));
    }
    let metric = args.metric.unwrap_or(Measure::ValAcc);
    let chosen: Vec<TrialListing> = match &args.by {
        None => report::ranked(&listings, metric)
            .into_iter()
            .take(1)
            .cloned()
            .collect(),
        Some(by) => {
            let known = listings
                .first()
                .and_then(|l| serde_json::to_value(l).ok())
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default();
            if !known.is_empty() && !known.contains(by) {
                return Err(Error::Usage(format!(
                    "--by {by}: no such parameter; use one of {}",
                    known.join(", ")
                )));
            }
            report::best_per_group(&listings, metric, by)
                .into_iter()
                .map(|(_, t)| t.clone())
                .collect()
        }
    };
    if chosen.is_empty() {
        return Err(Error::NotFound(format!(
            "no finished trial with a {} in {}",
            metric,
            store.location()
        )));
    }
    print(&report::listings(&chosen, args.format))
}

/// `sweep compare`.
pub fn compare(args: CompareArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let trials = args
        .trials
        .iter()
        .map(|&id| trial(&store, id))
        .collect::<Result<Vec<_>>>()?;
    print(&report::compare(&trials, args.format))
}

/// `sweep export`.
pub fn export(args: ExportArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    store.require_sweep(args.sweep.as_deref())?;
    let listings = store.list_trials(args.sweep.as_deref())?;
    if !args.epochs {
        return print(&report::listings_flat(&listings, args.format));
    }
    let mut objects = Vec::new();
    for listing in &listings {
        for epoch in store.epochs(TrialId(listing.id))? {
            let mut object = serde_json::Map::new();
            object.insert("trial".into(), listing.id.into());
            object.insert("sweep".into(), listing.sweep.clone().into());
            object.extend(listing.params.clone());
            if let serde_json::Value::Object(e) =
                serde_json::to_value(&epoch).expect("epochs serialise")
            {
                object.extend(e);
            }
            objects.push(serde_json::Value::Object(object));
        }
    }
    match args.format {
        Format::Json => print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&objects).expect("values serialise")
        )),
        format => print(&Rows::from_objects(&objects).render(format)),
    }
}

/// `sweep report`.
pub fn report(args: ReportArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    store.require_sweep(Some(&args.sweep))?;
    if let Some(baseline) = &args.baseline {
        store.require_sweep(Some(baseline))?;
    }
    let trials = store.list_trials(Some(&args.sweep))?;
    let ranked = report::ranked(&trials, args.metric);
    let mut plotted: Vec<i64> = ranked.iter().take(5).map(|t| t.id).collect();
    plotted.extend(
        report::best_per_group(&trials, args.metric, "arch")
            .iter()
            .map(|(_, t)| t.id),
    );
    let mut epochs = HashMap::new();
    for id in plotted {
        epochs.insert(id, store.epochs(TrialId(id))?);
    }
    let best = match ranked.first() {
        Some(t) => Some(detail(&store, TrialId(t.id))?),
        None => None,
    };
    let baseline = match &args.baseline {
        Some(name) => Some((name.clone(), store.list_trials(Some(name))?)),
        None => None,
    };
    let search = report::search_input(&store, &args.sweep)?;
    let objectives = store
        .require_experiment(&args.sweep)?
        .spec
        .sweep
        .objectives();
    let finished_s = match store.sweep_id(&args.sweep)? {
        Some(id) => store.result_times(id)?,
        None => HashMap::new(),
    };
    let input = ReportInput {
        sweep: args.sweep.clone(),
        trials,
        epochs,
        best,
        metric: args.metric,
        top: args.top.max(1),
        baseline,
        search,
        disk: sweep_disk(&store, &args.sweep)?,
        objectives,
        finished_s,
        population: report::population_lineages(&store, &args.sweep)?,
    };
    let figures = report::write_report(&input, &args.output)?;
    note!(
        "report written to {}{}",
        args.output.display(),
        if figures.is_empty() {
            String::new()
        } else {
            format!(
                " with {}",
                figures
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(0)
}
