//! The commands that read the results database: ls, show, best, compare, export, predict, report.

use crate::cli::{BestArgs, CompareArgs, ExportArgs, LsArgs, PredictArgs, ReportArgs, ShowArgs};
use std::collections::HashMap;
use std::io::Write;
use sweep::disk::DirUsage;
use sweep::experiment::{Experiment, TrialSpec};
use sweep::report::{self, Format, ReportInput, Rows, TrialDetail, TrialDisk};
use sweep::search::Sampler;
use sweep::store::{Store, TrialListing, TrialQuery, parse_filter, parse_sort};
use sweep::{Error, Result};

/// Metrics that `best` and `report` rank by.
const METRICS: &[&str] = &[
    "val_acc",
    "best_val_acc",
    "test_acc",
    "train_acc",
    "val_loss",
    "test_loss",
    "train_loss",
    "duration_s",
];

/// Writes a command's output. A closed pipe (`sweep ls | head`) is not an error worth a
/// message; any other failure (a full disk under `sweep export > results.csv`) is, since the
/// output is then incomplete.
pub(crate) fn print(text: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output", e))
        }
        _ => Ok(0),
    }
}

fn check_sweep(store: &Store, sweep: Option<&str>) -> Result<()> {
    if let Some(name) = sweep
        && !store.sweep_names()?.iter().any(|n| n == name)
    {
        let known = store.sweep_names()?;
        return Err(Error::NotFound(format!(
            "no sweep named {name:?} in {}; known: {}",
            store.location(),
            if known.is_empty() {
                "none yet (run a sweep first)".into()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(())
}

fn check_metric(metric: &str) -> Result<()> {
    if METRICS.contains(&metric) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--metric {metric}: unknown metric; use one of {}",
            METRICS.join(", ")
        )))
    }
}

fn trial(store: &Store, id: i64) -> Result<TrialListing> {
    store.trial(id)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no trial {id} in {}: `sweep ls --db {}` lists the trial ids",
            store.location(),
            store.location()
        ))
    })
}

fn detail(store: &Store, id: i64) -> Result<TrialDetail> {
    let trial = trial(store, id)?;
    let disk = sweep_disk(store, &trial.sweep)?.map(|sweep| TrialDisk {
        trial: DirUsage::of(sweep.dir.join(id.to_string())),
        sweep,
    });
    Ok(TrialDetail {
        trial,
        epochs: store.epochs(id)?,
        checkpoints: store.checkpoints(id)?,
        confusion: TrialDetail::confusion_from(&store.confusion(id)?),
        disk,
    })
}

/// What a sweep's checkpoint directory takes, when its run recorded where it is.
fn sweep_disk(store: &Store, sweep: &str) -> Result<Option<DirUsage>> {
    Ok(store.sweep_runs_dir(sweep)?.map(DirUsage::of))
}

fn empty_note(store: &Store, listings: &[TrialListing], format: Format) -> bool {
    if listings.is_empty() && format == Format::Table {
        eprintln!("no trials match in {}", store.location());
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
    check_sweep(&store, args.sweep.as_deref())?;
    let listings = store.query_trials(&TrialQuery {
        sweep: args.sweep,
        filter,
        sort,
        limit: args.limit,
    })?;
    if empty_note(&store, &listings, args.format) {
        return Ok(0);
    }
    print(&report::listings(&listings, args.format))
}

/// `sweep show`.
pub fn show(args: ShowArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    print(&report::show(&detail(&store, args.trial)?, args.format))
}

/// `sweep best`.
pub fn best(args: BestArgs) -> Result<i32> {
    check_metric(&args.metric)?;
    let store = Store::open_existing(&args.db.db)?;
    check_sweep(&store, args.sweep.as_deref())?;
    let listings = store.list_trials(args.sweep.as_deref())?;
    let chosen: Vec<TrialListing> = match &args.by {
        None => report::ranked(&listings, &args.metric)
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
            report::best_per_group(&listings, &args.metric, by)
                .into_iter()
                .map(|(_, t)| t.clone())
                .collect()
        }
    };
    if chosen.is_empty() {
        return Err(Error::NotFound(format!(
            "no finished trial with a {} in {}",
            args.metric,
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
    check_sweep(&store, args.sweep.as_deref())?;
    let listings = store.list_trials(args.sweep.as_deref())?;
    if !args.epochs {
        return print(&report::listings_flat(&listings, args.format));
    }
    let mut objects = Vec::new();
    for listing in &listings {
        for epoch in store.epochs(listing.id)? {
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

/// `sweep predict`.
pub fn predict(args: PredictArgs) -> Result<i32> {
    let store = Store::open_existing(&args.db.db)?;
    let listing = trial(&store, args.trial)?;
    let checkpoints = store.checkpoints(args.trial)?;
    let wanted = args.checkpoint.as_str();
    let Some(best) = checkpoints.iter().find(|c| c.kind == wanted) else {
        return Err(Error::NotFound(no_checkpoint(
            &store,
            &listing,
            wanted,
            &checkpoints,
        )?));
    };
    let path = std::path::Path::new(&best.path);
    let actual = sweep::train::file_sha256(path).map_err(|_| {
        Error::NotFound(format!(
            "checkpoint {} of trial {} is missing (moved with --runs?)",
            best.path, args.trial
        ))
    })?;
    if actual != best.sha256 {
        return Err(Error::Data(format!(
            "checkpoint {} does not match the sha256 recorded for it ({} recorded, {} on disk): \
             it was changed after training; re-run the trial",
            best.path, best.sha256, actual
        )));
    }
    let spec: TrialSpec = serde_json::from_value(serde_json::Value::Object(listing.params.clone()))
        .map_err(|e| Error::Store {
            path: args.db.db.to_string().into(),
            message: format!("trial {} has unreadable parameters: {e}", args.trial),
        })?;
    let stored_dir = store
        .sweep_spec(&listing.sweep)?
        .and_then(|(json, _)| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|v| v["data"]["dir"].as_str().map(std::path::PathBuf::from));
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
    eprintln!(
        "trial {} ({wanted} epoch {}): {images} predictions written to {}; accuracy {:.4} on \
         {images} {} images{}, loss {:.4}",
        args.trial,
        best.epoch,
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
    store: &Store,
    listing: &TrialListing,
    wanted: &str,
    present: &[sweep::store::CheckpointRow],
) -> Result<String> {
    let id = listing.id;
    if !sweep::disk::is_final(&listing.status) {
        return Ok(format!(
            "trial {id} has no {wanted} checkpoint yet (status {}): run its sweep to the end \
             first",
            listing.status
        ));
    }
    let keep = store
        .sweep_spec(&listing.sweep)?
        .and_then(|(json, _)| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|v| v["sweep"]["keep"].as_str().map(str::to_string))
        .unwrap_or_else(|| "best".into());
    let other = present
        .iter()
        .map(|c| {
            format!(
                "; its {} checkpoint is kept: --checkpoint {}",
                c.kind, c.kind
            )
        })
        .collect::<String>();
    Ok(format!(
        "trial {id} kept no {wanted} checkpoint: its sweep {:?} has [sweep] keep = \"{keep}\"{other}. \
         To keep it next time, set keep = \"{wanted}\" or \"both\" under [sweep] before running a \
         sweep",
        listing.sweep
    ))
}

/// A searched sweep's history for its report; `None` for a grid.
fn search_history(store: &Store, sweep: &str) -> Result<Option<report::SearchInput>> {
    let (Some((spec_json, source)), Some(sweep_id)) =
        (store.sweep_spec(sweep)?, store.sweep_id(sweep)?)
    else {
        return Ok(None);
    };
    let experiment = Experiment::from_stored(sweep, source.as_ref(), &spec_json)?;
    let Some(sampler) = Sampler::new(&experiment.spec) else {
        return Ok(None);
    };
    let spec = &experiment.spec;
    let metric = spec.sweep.metric;
    Ok(Some(report::SearchInput {
        space: sampler.space().clone(),
        metric,
        method: format!(
            "Sampler `{}` with a budget of {} configurations x {} repeats; early stopping `{}`",
            spec.sweep.sampler.as_str(),
            spec.sweep.trials.unwrap_or(0),
            spec.sweep.repeats,
            spec.prune.method.as_str()
        ),
        trials: store.past_trials(sweep_id, metric)?,
        result_s: store.result_times(sweep_id)?,
    }))
}

/// `sweep report`.
pub fn report(args: ReportArgs) -> Result<i32> {
    check_metric(&args.metric)?;
    let store = Store::open_existing(&args.db.db)?;
    check_sweep(&store, Some(&args.sweep))?;
    if let Some(baseline) = &args.baseline {
        check_sweep(&store, Some(baseline))?;
    }
    let trials = store.list_trials(Some(&args.sweep))?;
    let ranked = report::ranked(&trials, &args.metric);
    let mut plotted: Vec<i64> = ranked.iter().take(5).map(|t| t.id).collect();
    plotted.extend(
        report::best_per_group(&trials, &args.metric, "arch")
            .iter()
            .map(|(_, t)| t.id),
    );
    let mut epochs = HashMap::new();
    for id in plotted {
        epochs.insert(id, store.epochs(id)?);
    }
    let best = match ranked.first() {
        Some(t) => Some(detail(&store, t.id)?),
        None => None,
    };
    let baseline = match &args.baseline {
        Some(name) => Some((name.clone(), store.list_trials(Some(name))?)),
        None => None,
    };
    let search = search_history(&store, &args.sweep)?;
    let input = ReportInput {
        sweep: args.sweep.clone(),
        trials,
        epochs,
        best,
        metric: args.metric.clone(),
        top: args.top.max(1),
        baseline,
        search,
        disk: sweep_disk(&store, &args.sweep)?,
    };
    let figures = report::write_report(&input, &args.output)?;
    eprintln!(
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
