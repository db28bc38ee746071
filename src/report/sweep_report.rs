//! `sweep report`: a markdown report of one sweep, with learning-curve SVGs beside it.

use super::detail::{TrialDetail, class_name, class_rows, confusion_rows};
use super::number::{human, human_value};
use super::plot::{Curve, learning_curves};
use super::search_report::group;
use super::search_report::{SearchInput, search_section};
use super::table::{listing_rows, opt};
use super::{Format, Measure, Rows, text_field};
use crate::disk::DirUsage;
use crate::error::{Error, Result};
use crate::experiment::Objective;
use crate::search::{Domain, Space};
use crate::store::{EpochRow, TrialListing};
use crate::trial::TrialStatus;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What a report is made from (read from the store by the caller).
pub struct ReportInput {
    /// Sweep name.
    pub sweep: String,
    /// Every trial of the sweep.
    pub trials: Vec<TrialListing>,
    /// Epoch rows of the trials that are plotted, by trial id.
    pub epochs: HashMap<i64, Vec<EpochRow>>,
    /// The best trial in full, when one is done.
    pub best: Option<TrialDetail>,
    /// The figure trials are ranked by.
    pub metric: Measure,
    /// Trials in the leaderboard and in the learning curves.
    pub top: usize,
    /// Another sweep to compare against: its name and trials.
    pub baseline: Option<(String, Vec<TrialListing>)>,
    /// The history of a searched sweep (random or TPE); `None` for a grid.
    pub search: Option<SearchInput>,
    /// What the sweep's checkpoint directory takes.
    pub disk: Option<DirUsage>,
    /// What the sweep optimises; with several, the report draws their Pareto front.
    pub objectives: Vec<Objective>,
    /// Seconds from the sweep's first epoch to each trial's latest, by trial id.
    pub finished_s: HashMap<i64, f64>,
    /// Population-based training: each member's lineage, by trial id; empty otherwise.
    pub population: Vec<(i64, super::Lineage)>,
}

/// Finished trials with a value for `metric`, best first.
pub fn ranked(trials: &[TrialListing], metric: Measure) -> Vec<&TrialListing> {
    let mut ranked: Vec<(&TrialListing, f64)> = trials
        .iter()
        .filter(|t| t.status == TrialStatus::Done)
        .filter_map(|t| metric.of(t).map(|v| (t, v)))
        .collect();
    let higher = metric.higher_is_better();
    ranked.sort_by(|a, b| {
        let order = a.1.total_cmp(&b.1);
        (if higher { order.reverse() } else { order }).then(a.0.id.cmp(&b.0.id))
    });
    ranked.into_iter().map(|(t, _)| t).collect()
}

/// The best trial of each group of trials sharing a value of `by`, in first-seen group order.
pub fn best_per_group<'a>(
    trials: &'a [TrialListing],
    metric: Measure,
    by: &str,
) -> Vec<(String, &'a TrialListing)> {
    let mut groups: Vec<(String, &TrialListing)> = Vec::new();
    for trial in ranked(trials, metric) {
        let key = text_field(trial, by);
        if !groups.iter().any(|(k, _)| *k == key) {
            groups.push((key, trial));
        }
    }
    let order: Vec<String> = trials.iter().map(|t| text_field(t, by)).collect();
    groups.sort_by_key(|(k, _)| order.iter().position(|o| o == k));
    groups
}

/// The grid axes a report breaks results down by.
const AXES: &[&str] = &[
    "arch",
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "dropout",
    "weight_decay",
    "split",
    "augment",
    "schedule",
    "warmup_epochs",
    "label_smoothing",
    "batch_norm",
    "seed",
];

/// One value of an axis, or for a drawn parameter one quantile bin of its values.
#[derive(Debug, Clone, Serialize)]
pub struct AxisGroup {
    /// The value, or the bin's rounded bounds (`0.001 – 0.0032`).
    pub label: String,
    /// Trials with it.
    pub trials: usize,
    /// Of those, done with a value for the metric.
    pub finished: usize,
    /// Their best value.
    pub best: Option<f64>,
    /// Their mean value.
    pub mean: Option<f64>,
}

/// One axis's groups, in order of value.
#[derive(Debug, Clone, Serialize)]
pub struct AxisBreakdown {
    /// The axis (parameter) name.
    pub axis: String,
    /// Whether its groups are quantile bins of a drawn parameter.
    pub binned: bool,
    /// The groups.
    pub groups: Vec<AxisGroup>,
}

/// "What mattered": for each axis with more than one value, the best and mean `metric` of the
/// done trials per value. Parameters drawn from a distribution (`space`) are grouped into the
/// quantile bins the importance table uses, not one row per drawn value.
pub fn what_mattered(
    trials: &[TrialListing],
    metric: Measure,
    space: Option<&Space>,
) -> Vec<AxisBreakdown> {
    // Each trial's score, read once: its metric when done.
    let scores: Vec<Option<f64>> = trials
        .iter()
        .map(|t| {
            (t.status == TrialStatus::Done)
                .then(|| metric.of(t))
                .flatten()
        })
        .collect();
    let better = |a: f64, b: f64| {
        if metric.higher_is_better() {
            a > b
        } else {
            a < b
        }
    };
    let summarise = |label: String, members: &[usize]| {
        let finished: Vec<f64> = members.iter().filter_map(|&i| scores[i]).collect();
        AxisGroup {
            label,
            trials: members.len(),
            finished: finished.len(),
            best: finished
                .iter()
                .copied()
                .reduce(|a, b| if better(b, a) { b } else { a }),
            mean: (!finished.is_empty())
                .then(|| finished.iter().sum::<f64>() / finished.len() as f64),
        }
    };
    const NULL: &serde_json::Value = &serde_json::Value::Null;
    let mut out = Vec::new();
    for axis in AXES {
        fn value_in<'a>(t: &'a TrialListing, axis: &str) -> &'a serde_json::Value {
            t.params.get(axis).unwrap_or(NULL)
        }
        let value_of = |t| value_in(t, axis);
        let Some(first) = trials.first().map(value_of) else {
            break;
        };
        if trials.iter().all(|t| value_of(t) == first) {
            continue;
        }
        let drawn = space.and_then(|s| {
            s.params
                .iter()
                .find(|p| p.name == *axis && matches!(p.domain, Domain::Drawn(_)))
        });
        if let Some(param) = drawn {
            let valued: Vec<(usize, f64)> = trials
                .iter()
                .enumerate()
                .filter_map(|(i, t)| Some((i, value_of(t).as_f64()?)))
                .collect();
            if valued.len() < 2 {
                continue;
            }
            let bins = group(
                param,
                valued.iter().map(|(_, v)| *v).collect(),
                valued.len(),
            );
            let groups = (0..=bins.iter().copied().max().unwrap_or(0))
                .filter_map(|bin| {
                    let members: Vec<(usize, f64)> = valued
                        .iter()
                        .zip(&bins)
                        .filter(|(_, b)| **b == bin)
                        .map(|(m, _)| *m)
                        .collect();
                    let low = members.iter().map(|m| m.1).fold(f64::INFINITY, f64::min);
                    let high = members
                        .iter()
                        .map(|m| m.1)
                        .fold(f64::NEG_INFINITY, f64::max);
                    let label = format!("{} – {}", human(low), human(high));
                    let members: Vec<usize> = members.iter().map(|m| m.0).collect();
                    (!members.is_empty()).then(|| summarise(label, &members))
                })
                .collect();
            out.push(AxisBreakdown {
                axis: axis.to_string(),
                binned: true,
                groups,
            });
            continue;
        }
        // One pass, groups in first-seen order.
        let mut order: Vec<String> = Vec::new();
        let mut labels: HashMap<String, String> = HashMap::new();
        let mut members: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, trial) in trials.iter().enumerate() {
            let value = value_of(trial);
            let key = super::cell(value);
            if !members.contains_key(&key) {
                order.push(key.clone());
                labels.insert(key.clone(), human_value(value));
            }
            members.entry(key).or_default().push(i);
        }
        let groups = order
            .iter()
            .map(|key| summarise(labels[key].clone(), &members[key]))
            .collect();
        out.push(AxisBreakdown {
            axis: axis.to_string(),
            binned: false,
            groups,
        });
    }
    out
}

/// A trial as headings and legends name it: `#4 convnet adamw lr=0.006048`.
pub fn trial_label(t: &TrialListing) -> String {
    format!(
        "#{} {} {} lr={}",
        t.id,
        text_field(t, "arch"),
        text_field(t, "optimizer"),
        t.params.get("lr").map(human_value).unwrap_or_default()
    )
}

/// Writes the report to `out` and its figures beside it; returns the figure paths.
pub fn write_report(input: &ReportInput, out: &Path) -> Result<Vec<PathBuf>> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let stem = out
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    let metric = input.metric;
    let leaders = ranked(&input.trials, metric);
    let mut md = String::new();

    let _ = writeln!(md, "# Sweep `{}`\n", input.sweep);
    let _ = writeln!(
        md,
        "Generated by sweep {} from the results database. Trials are ranked by `{metric}` ({} is better).\n",
        env!("CARGO_PKG_VERSION"),
        if metric.higher_is_better() {
            "higher"
        } else {
            "lower"
        }
    );

    // Summary.
    let count = |status| input.trials.iter().filter(|t| t.status == status).count();
    let ended = [
        TrialStatus::Done,
        TrialStatus::Diverged,
        TrialStatus::Failed,
        TrialStatus::Pruned,
        TrialStatus::Paused,
    ];
    let durations: Vec<f64> = input.trials.iter().filter_map(|t| t.duration_s).collect();
    let total_s: f64 = durations.iter().sum();
    let mut devices: Vec<String> = input
        .trials
        .iter()
        .filter_map(|t| t.device.clone())
        .collect();
    devices.sort();
    devices.dedup();
    let _ = writeln!(md, "## Summary\n");
    let summary = Rows {
        header: ["trials"]
            .into_iter()
            .chain(ended.map(TrialStatus::as_str))
            .chain([
                "unfinished",
                "training time",
                "mean per trial",
                "devices",
                "checkpoints on disk",
            ])
            .map(String::from)
            .collect(),
        rows: vec![
            [input.trials.len().to_string()]
                .into_iter()
                .chain(ended.map(|s| count(s).to_string()))
                .chain([
                    (input.trials.len() - ended.map(count).iter().sum::<usize>()).to_string(),
                    format!("{total_s:.1} s"),
                    opt(
                        (!durations.is_empty()).then(|| total_s / durations.len() as f64),
                        1,
                    ) + " s",
                    if devices.is_empty() {
                        "-".into()
                    } else {
                        devices.join(", ")
                    },
                    input.disk.as_ref().map_or("-".into(), |d| {
                        format!("{} in `{}`", d.usage, d.dir.display())
                    }),
                ])
                .collect(),
        ],
    };
    md.push_str(&summary.render(Format::Md));

    // Leaderboard.
    let _ = writeln!(md, "\n## Leaderboard\n");
    if leaders.is_empty() {
        let _ = writeln!(md, "No trial has finished yet.");
    } else {
        let top: Vec<TrialListing> = leaders
            .iter()
            .take(input.top)
            .map(|t| (*t).clone())
            .collect();
        let mut rows = listing_rows(&top);
        rows.header.insert(0, "rank".into());
        rows.header.push("best_val_acc".into());
        for (rank, (row, trial)) in rows.rows.iter_mut().zip(&top).enumerate() {
            row.insert(0, (rank + 1).to_string());
            row.push(opt(trial.best_val_acc, 4));
        }
        md.push_str(&rows.render(Format::Md));
    }

    // What mattered: one table per axis that varies.
    let _ = writeln!(md, "\n## What mattered\n");
    let _ = writeln!(
        md,
        "For each axis with more than one value: how many trials had each value, and the best and mean `{metric}` of those that finished.\n"
    );
    let breakdowns = what_mattered(
        &input.trials,
        metric,
        input.search.as_ref().map(|s| &s.space),
    );
    let any_axis = !breakdowns.is_empty();
    for breakdown in &breakdowns {
        let axis = &breakdown.axis;
        let rows = breakdown
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.label.clone(),
                    g.trials.to_string(),
                    g.finished.to_string(),
                    opt(g.best, 4),
                    opt(g.mean, 4),
                ]
            })
            .collect();
        let _ = writeln!(md, "### {axis}\n");
        if breakdown.binned {
            let _ = writeln!(
                md,
                "Drawn from a distribution: trials grouped into quantile bins of their value.\n"
            );
        }
        md.push_str(
            &Rows {
                header: vec![
                    axis.to_string(),
                    "trials".into(),
                    "finished".into(),
                    format!("best {metric}"),
                    format!("mean {metric}"),
                ],
                rows,
            }
            .render(Format::Md),
        );
        md.push('\n');
    }
    if !any_axis {
        let _ = writeln!(md, "Every axis has a single value in this sweep.\n");
    }

    // Learning curves: the top trials and the best of each architecture.
    let mut plotted: Vec<&TrialListing> = leaders.iter().take(input.top.min(5)).copied().collect();
    for (_, trial) in best_per_group(&input.trials, metric, "arch") {
        if !plotted.iter().any(|t| t.id == trial.id) {
            plotted.push(trial);
        }
    }
    let series: Vec<(String, Vec<EpochRow>)> = plotted
        .iter()
        .filter_map(|t| {
            let epochs = input.epochs.get(&t.id)?;
            Some((trial_label(t), epochs.clone()))
        })
        .collect();
    let mut figures = Vec::new();
    if !series.is_empty() {
        let _ = writeln!(md, "## Learning curves\n");
        let _ = writeln!(
            md,
            "The top {} trials and the best trial of each architecture.\n",
            input.top.min(5)
        );
        for (curve, name) in [(Curve::Loss, "loss"), (Curve::Accuracy, "accuracy")] {
            let file = format!("{stem}-{name}.svg");
            let path = dir.join(&file);
            learning_curves(&path, curve, &series)?;
            let _ = writeln!(md, "![{name} per epoch]({file})\n");
            figures.push(path);
        }
    }

    if input.objectives.len() > 1 {
        let summary = super::FrontSummary::of(&input.trials, &input.objectives, &input.finished_s);
        let (section, front_figures) = super::front_section(&input.trials, &summary, dir, &stem)?;
        md.push_str(&section);
        figures.extend(front_figures);
    }

    if !input.population.is_empty() {
        let (section, population_figures) =
            super::population::population_section(&input.population, &input.trials, dir, &stem)?;
        md.push_str(&section);
        figures.extend(population_figures);
    }

    if let Some(search) = &input.search {
        let (section, search_figures) = search_section(search, dir, &stem)?;
        md.push_str(&section);
        figures.extend(search_figures);
    }

    // The best trial in detail.
    if let Some(best) = &input.best {
        let t = &best.trial;
        let label = trial_label(t);
        let (number, rest) = label.split_once(' ').unwrap_or((&label, ""));
        let _ = writeln!(md, "## Best trial: {number} ({rest})\n");
        let _ = writeln!(
            md,
            "Validation accuracy {}, test accuracy {}, test loss {}.\n",
            opt(t.val_acc, 4),
            opt(t.test_acc, 4),
            opt(t.test_loss, 4)
        );
        if !best.confusion.is_empty() {
            let pairs = best.confused_pairs(3);
            if pairs.is_empty() {
                let _ = writeln!(
                    md,
                    "No confusions: every test image was classified correctly.\n"
                );
            } else {
                let _ = writeln!(
                    md,
                    "Most confused pairs (true class taken for predicted class):\n"
                );
                for (actual, predicted, count) in pairs {
                    let _ = writeln!(
                        md,
                        "- {} taken for {}: {count} test images",
                        class_name(actual),
                        class_name(predicted)
                    );
                }
                md.push('\n');
            }
            let _ = writeln!(md, "### Per-class test accuracy\n");
            md.push_str(&class_rows(best).render(Format::Md));
            let _ = writeln!(md, "\n### Confusion matrix\n");
            md.push_str(&confusion_rows(best).render(Format::Md));
        }
    }

    // Against a baseline sweep.
    if let Some((name, baseline)) = &input.baseline {
        let _ = writeln!(md, "\n## Against `{name}`\n");
        let theirs = ranked(baseline, metric);
        let stats = |r: &[&TrialListing], trials: &[TrialListing]| -> Vec<String> {
            let scores: Vec<f64> = r.iter().filter_map(|t| metric.of(t)).collect();
            let test = r.first().and_then(|t| t.test_acc);
            vec![
                trials.len().to_string(),
                r.len().to_string(),
                opt(scores.first().copied(), 4),
                opt(
                    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64),
                    4,
                ),
                opt(test, 4),
            ]
        };
        let ours = stats(&leaders, &input.trials);
        let base = stats(&theirs, baseline);
        let delta: Vec<String> = ours
            .iter()
            .zip(&base)
            .map(|(a, b)| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(a), Ok(b)) if a.fract() != 0.0 || b.fract() != 0.0 => format!("{:+.4}", a - b),
                (Ok(a), Ok(b)) => format!("{:+}", a - b),
                _ => "-".into(),
            })
            .collect();
        let header = [
            "sweep",
            "trials",
            "finished",
            &format!("best {metric}"),
            &format!("mean {metric}"),
            "test acc of best",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = vec![];
        for (label, values) in [
            (input.sweep.clone(), ours),
            (name.clone(), base),
            ("difference".into(), delta),
        ] {
            let mut row = vec![label];
            row.extend(values);
            rows.push(row);
        }
        md.push_str(&Rows { header, rows }.render(Format::Md));
        // Same configurations in both sweeps (equal parameters), side by side.
        let mut matched = Vec::new();
        for ours in &leaders {
            if let Some(theirs) = theirs.iter().find(|t| t.params == ours.params) {
                let (a, b) = (metric.of(ours), metric.of(theirs));
                matched.push(vec![
                    format!("#{} / #{}", ours.id, theirs.id),
                    trial_label(ours)
                        .split_once(' ')
                        .map_or_else(String::new, |(_, rest)| rest.to_string()),
                    opt(a, 4),
                    opt(b, 4),
                    match (a, b) {
                        (Some(a), Some(b)) => format!("{:+.4}", a - b),
                        _ => "-".into(),
                    },
                ]);
            }
        }
        if !matched.is_empty() {
            let _ = writeln!(md, "\nConfigurations present in both sweeps:\n");
            md.push_str(
                &Rows {
                    header: vec![
                        "trials".into(),
                        "configuration".into(),
                        input.sweep.clone(),
                        name.clone(),
                        "difference".into(),
                    ],
                    rows: matched,
                }
                .render(Format::Md),
            );
        }
    }

    std::fs::write(out, md).map_err(|e| Error::io(out, e))?;
    Ok(figures)
}
