//! What each API route answers, built from the store: sweeps, versions, table pages (paginated
//! and filtered in the database), curves, trials and comparisons. The analyses are in
//! [`super::analysis`].

use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::report::{self, Format, Measure};
use crate::search::Sampler;
use crate::store::{
    Store, SweepOverview, TrialListing, TrialQuery, field_names, parse_filter, parse_sort,
};
use crate::trial::{TrialId, TrialStatus};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The most trials a table page holds.
const MOST_PER_PAGE: usize = 500;

/// A table page's request: `page`, `per_page`, `sort`, `where`, `group`.
pub struct PageParams {
    page: usize,
    per_page: usize,
    sort: Vec<String>,
    filter: Option<String>,
    group: bool,
}

impl PageParams {
    /// Reads and checks the query string; a bad value is a 400 naming it.
    pub fn parse(query: &HashMap<String, String>) -> Result<PageParams> {
        Ok(PageParams {
            page: number_param(query, "page", 1, 1, usize::MAX)?,
            per_page: number_param(query, "per_page", 50, 1, MOST_PER_PAGE)?,
            sort: query
                .get("sort")
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            filter: query
                .get("where")
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty()),
            group: match query.get("group").map(String::as_str) {
                None | Some("" | "0" | "false" | "none") => false,
                Some("1" | "true" | "config") => true,
                Some(other) => {
                    return Err(Error::Usage(format!(
                        "group={other}: use group=config to group repeats, or leave it out"
                    )));
                }
            },
        })
    }
}

/// A whole-number query parameter between `low` and `high`, `default` when absent.
pub fn number_param(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
    low: usize,
    high: usize,
) -> Result<usize> {
    let Some(text) = query.get(name) else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(Error::Usage(format!(
            "{name}={text}: expected a whole number from {low}{}",
            if high == usize::MAX {
                " up".to_string()
            } else {
                format!(" to {high}")
            }
        ))),
    }
}

/// A sweep's stored experiment and the measure it is ranked by.
pub(super) fn experiment_of(store: &Store, name: &str) -> Result<(Experiment, Measure)> {
    let experiment = store.require_experiment(name)?;
    let measure = Measure::from(experiment.spec.sweep.metric);
    Ok((experiment, measure))
}

fn overview_json(overview: &SweepOverview, experiment: Option<&Experiment>) -> Value {
    let mut object = serde_json::to_value(overview).expect("overviews serialise");
    let total: i64 = overview.counts.values().sum();
    let settled: i64 = overview
        .counts
        .iter()
        .filter(|(status, _)| {
            status
                .parse::<TrialStatus>()
                .is_ok_and(|s| s.is_final() && s != TrialStatus::Interrupted)
        })
        .map(|(_, n)| n)
        .sum();
    if let Some(experiment) = experiment {
        let spec = &experiment.spec;
        let searched = Sampler::new(spec).is_some();
        let planned = if searched {
            (spec.sweep.trials.unwrap_or(0) as i64 * spec.sweep.repeats as i64).max(total)
        } else {
            total
        };
        let metric = spec.sweep.metric;
        let best = match Measure::from(metric) {
            m if m.higher_is_better() => overview.best_val_acc,
            _ => overview.best_val_loss,
        };
        object["sampler"] = json!(spec.sweep.sampler.as_str());
        object["pruner"] = json!(spec.prune.method.as_str());
        object["metric"] = json!(metric.name());
        object["higher_is_better"] = json!(Measure::from(metric).higher_is_better());
        object["searched"] = json!(searched);
        object["best"] = json!(best);
        object["planned"] = json!(planned);
    }
    object["trials"] = json!(total);
    object["settled"] = json!(settled);
    object
}

/// `/api/sweeps`: every sweep with its counts, best value and times.
pub fn sweeps(store: &Store) -> Result<Value> {
    let overviews = store.sweep_overviews(None)?;
    let list: Vec<Value> = overviews
        .iter()
        .map(|o| overview_json(o, o.experiment().ok().as_ref()))
        .collect();
    Ok(json!({ "sweeps": list, "db": store.location().to_string() }))
}

/// `/api/sweeps/NAME`: one sweep's summary, and the fields its table can filter and sort on.
pub fn sweep(store: &Store, name: &str) -> Result<Value> {
    let Some(overview) = store.sweep_overviews(Some(name))?.into_iter().next() else {
        return Err(store.unknown_sweep(name)?);
    };
    let mut object = overview_json(&overview, Some(&overview.experiment()?));
    object["fields"] = json!(field_names());
    object["db"] = json!(store.location().to_string());
    Ok(object)
}

pub(super) fn sweep_id(store: &Store, name: &str) -> Result<i64> {
    match store.sweep_id(name)? {
        Some(id) => Ok(id),
        None => Err(store.unknown_sweep(name)?),
    }
}

/// `/api/sweeps/NAME/version`: what an open page polls to learn that something changed.
pub fn version(store: &Store, name: &str) -> Result<Value> {
    let id = sweep_id(store, name)?;
    Ok(serde_json::to_value(store.sweep_version(id)?).expect("versions serialise"))
}

/// `/api/sweeps/NAME/trials`: one page of the trials table, filtered with `sweep ls --where`'s
/// language and sorted on any field; or, with `group=config`, repeats of one configuration
/// grouped as mean ± std.
pub fn trials(store: &Store, name: &str, params: &PageParams) -> Result<Value> {
    sweep_id(store, name)?;
    let filter = params.filter.as_deref().map(parse_filter).transpose()?;
    let sort = params
        .sort
        .iter()
        .map(|s| parse_sort(s))
        .collect::<Result<Vec<_>>>()?;
    let mut query = TrialQuery {
        sweep: Some(name.to_string()),
        filter,
        sort,
        limit: None,
        offset: 0,
    };
    let skip = (params.page - 1).saturating_mul(params.per_page);
    if params.group {
        let groups = group_repeats(&store.query_trials(&query)?);
        let total = groups.len();
        let page: Vec<Value> = groups
            .into_iter()
            .skip(skip)
            .take(params.per_page)
            .collect();
        return Ok(json!({
            "total": total, "page": params.page, "per_page": params.per_page,
            "grouped": true, "groups": page,
        }));
    }
    let total = store.count_trials(&query)?;
    query.limit = Some(params.per_page);
    query.offset = skip;
    let page: Vec<Value> = store
        .query_trials(&query)?
        .iter()
        .map(with_display)
        .collect();
    Ok(json!({
        "total": total, "page": params.page, "per_page": params.per_page,
        "grouped": false, "trials": page,
    }))
}

/// A listing as JSON (the fields of `sweep ls --format json`) with `display`: its parameters
/// and figures as people read them, formatted by the report's formatter.
fn with_display(listing: &TrialListing) -> Value {
    let mut object = serde_json::to_value(listing).expect("listings serialise");
    let mut display: serde_json::Map<String, Value> = listing
        .params
        .iter()
        .map(|(k, v)| (k.clone(), json!(report::human_value(v))))
        .collect();
    for figure in report::MEASURED.iter().chain(&["duration_s"]) {
        if let Some(v) = object.get(*figure) {
            display.insert((*figure).into(), json!(report::human_value(v)));
        }
    }
    object["display"] = Value::Object(display);
    object
}

/// The figures a group of repeats is summarised by.
const GROUPED_FIGURES: &[&str] = &[
    "val_acc",
    "best_val_acc",
    "val_loss",
    "test_acc",
    "test_loss",
    "duration_s",
];

/// Trials sharing every parameter but the seed and repeat, with each figure's mean and
/// (sample) standard deviation over the repeats that have it; first-seen order.
fn group_repeats(trials: &[TrialListing]) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut members: HashMap<String, Vec<&TrialListing>> = HashMap::new();
    for trial in trials {
        let mut config = trial.params.clone();
        config.remove("seed");
        config.remove("repeat");
        let key = Value::Object(config).to_string();
        if !members.contains_key(&key) {
            order.push(key.clone());
        }
        members.entry(key).or_default().push(trial);
    }
    order
        .iter()
        .map(|key| {
            let group = &members[key];
            let mut config: serde_json::Map<String, Value> =
                serde_json::from_str(key).unwrap_or_default();
            let display: serde_json::Map<String, Value> = config
                .iter()
                .map(|(k, v)| (k.clone(), json!(report::human_value(v))))
                .collect();
            config.insert("display".into(), Value::Object(display));
            config.insert(
                "ids".into(),
                json!(group.iter().map(|t| t.id).collect::<Vec<_>>()),
            );
            config.insert("repeats".into(), json!(group.len()));
            config.insert(
                "done".into(),
                json!(
                    group
                        .iter()
                        .filter(|t| t.status == TrialStatus::Done)
                        .count()
                ),
            );
            for figure in GROUPED_FIGURES {
                let values: Vec<f64> = group
                    .iter()
                    .filter_map(|t| report::numeric_field(t, figure))
                    .collect();
                let (mean, std) = mean_std(&values);
                let shown = match (mean, std) {
                    (Some(m), Some(s)) => format!("{} ± {}", report::human(m), report::human(s)),
                    (Some(m), None) => report::human(m),
                    _ => String::new(),
                };
                config.insert(
                    (*figure).into(),
                    json!({ "mean": mean, "std": std, "n": values.len(), "display": shown }),
                );
            }
            Value::Object(config)
        })
        .collect()
}

fn mean_std(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(mean), std)
}

/// `/api/sweeps/NAME/curves`: the epochs of the `top` best done trials and of every running
/// trial. With `since` (the `now` of an earlier answer), only the epochs recorded after it, so
/// a live page downloads what is new and nothing else.
pub fn curves(store: &Store, name: &str, top: usize, since: Option<&str>) -> Result<Value> {
    sweep_id(store, name)?;
    if let Some(since) = since
        && !since
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-:.+ ".contains(c))
    {
        return Err(Error::Usage(format!(
            "since={since:?}: expected a timestamp from an earlier answer's `now`"
        )));
    }
    let (_, measure) = experiment_of(store, name)?;
    let best_first = parse_sort(&format!(
        "{}{}",
        if measure.higher_is_better() { "-" } else { "" },
        measure.name()
    ))?;
    let leaders = store.query_trials(&TrialQuery {
        sweep: Some(name.to_string()),
        filter: Some(parse_filter("status = done")?),
        sort: vec![best_first],
        limit: Some(top),
        offset: 0,
    })?;
    let running = store.query_trials(&TrialQuery {
        sweep: Some(name.to_string()),
        filter: Some(parse_filter("status = running")?),
        ..TrialQuery::default()
    })?;
    let shown: Vec<Value> = leaders
        .iter()
        .map(|t| (t, "top"))
        .chain(running.iter().map(|t| (t, "running")))
        .map(|(t, why)| {
            json!({
                "id": t.id, "label": report::trial_label(t), "status": t.status, "why": why,
                "epochs": t.params.get("epochs"),
            })
        })
        .collect();
    let ids: Vec<TrialId> = leaders
        .iter()
        .chain(&running)
        .map(|t| TrialId(t.id))
        .collect();
    let epochs = store.recorded_epochs(&ids, since)?;
    let now = epochs
        .iter()
        .map(|e| e.recorded_at.as_str())
        .chain(since)
        .max()
        .map(String::from);
    Ok(json!({ "trials": shown, "epochs": epochs, "now": now }))
}

fn parse_trial_id(text: &str) -> Result<TrialId> {
    let id = text.trim().parse::<TrialId>().ok().filter(|id| id.0 > 0);
    id.ok_or_else(|| {
        Error::Usage(format!(
            "{text:?} is not a trial id: ids are whole numbers, as `sweep ls` lists them"
        ))
    })
}

fn require_trial(store: &Store, id: TrialId) -> Result<TrialListing> {
    store
        .trial(id)?
        .ok_or_else(|| Error::NotFound(format!("no trial {id} in {}", store.location())))
}

/// `/api/trials/ID`: everything about one trial, and the commands that reproduce it.
pub fn trial(store: &Store, id: &str) -> Result<Value> {
    let id = parse_trial_id(id)?;
    let listing = require_trial(store, id)?;
    let lineage = report::member_lineage(store, &listing);
    let detail = report::TrialDetail {
        epochs: store.epochs(id)?,
        checkpoints: store.checkpoints(id)?,
        confusion: report::TrialDetail::confusion_from(&store.confusion(id)?),
        disk: None,
        lineage,
        trial: listing,
    };
    let classes: Vec<Value> = detail
        .class_counts()
        .iter()
        .enumerate()
        .map(|(class, (correct, total))| {
            json!({
                "class": class, "name": report::class_name(class), "correct": correct,
                "total": total,
                "accuracy": (*total > 0).then(|| *correct as f64 / *total as f64),
            })
        })
        .collect();
    let db = store.location().to_string();
    let db_arg = if db == "sweep.db" {
        String::new()
    } else {
        format!(" --db {db}")
    };
    let mut object = serde_json::to_value(&detail).expect("details serialise");
    object["classes"] = json!(classes);
    object["holder"] = serde_json::to_value(store.trial_holder(id)?).expect("holders serialise");
    object["label"] = json!(report::trial_label(&detail.trial));
    object["commands"] = json!([
        format!("sweep show {id}{db_arg}"),
        format!("sweep predict {id}{db_arg} -o predictions.txt"),
        format!("sweep show {id}{db_arg} --format toml > replay-{id}.toml"),
    ]);
    Ok(object)
}

/// `/api/compare?ids=1,2,3`: 2 to 10 trials' fields side by side with the differing ones
/// marked (as `sweep compare --format json`), and their epochs to overlay.
pub fn compare(store: &Store, ids: &str) -> Result<Value> {
    let ids: Vec<TrialId> = ids
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_trial_id)
        .collect::<Result<_>>()?;
    if !(2..=10).contains(&ids.len()) {
        return Err(Error::Usage(format!(
            "compare takes 2 to 10 trial ids (ids=1,2,3); got {}",
            ids.len()
        )));
    }
    let trials = ids
        .iter()
        .map(|&id| require_trial(store, id))
        .collect::<Result<Vec<_>>>()?;
    let fields: Value = serde_json::from_str(&report::compare(&trials, Format::Json))
        .map_err(|e| Error::Usage(format!("comparison did not serialise: {e}")))?;
    let labels: Vec<Value> = trials
        .iter()
        .map(|t| json!({ "id": t.id, "label": report::trial_label(t), "status": t.status }))
        .collect();
    let epochs = store.recorded_epochs(&ids, None)?;
    Ok(json!({ "trials": labels, "fields": fields, "epochs": epochs }))
}
