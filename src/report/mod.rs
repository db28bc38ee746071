//! Everything printed for people or scripts: one exporter per format (aligned text, CSV, JSON,
//! markdown), the views of single trials, and the markdown sweep report with its plots.

mod csv;
mod detail;
mod front;
mod front_plot;
mod json;
mod lineage;
mod markdown;
mod measure;
mod number;
mod plot;
mod population;
mod search_plot;
mod search_report;
mod sweep_report;
mod table;

pub use detail::{MEASURED, TrialDetail, TrialDisk, class_name, compare, show};
pub use front::{FrontPoint, FrontSummary, front_section, pareto_front};
pub use front_plot::ON_FRONT;
pub use json::{listings_json, trials_json};
pub use lineage::{
    Lineage, Stretch, TrialLineage, lineage, member_lineage, population_lineages, replay_toml,
    trial_lineage,
};
pub use measure::Measure;
pub use number::{human, human_value};
pub use search_plot::{Outcome, ParamPanel};
pub use search_report::{
    HistoryPoint, ImportanceTable, importance_table, intermediate_curves, param_panels,
};
pub use search_report::{SearchInput, search_input};
pub use sweep_report::{
    AxisBreakdown, AxisGroup, ReportInput, best_per_group, ranked, trial_label, what_mattered,
    write_report,
};
pub use table::{listings_table, trials_table};

use crate::store::TrialListing;

/// A format for data printed to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON array, for scripts.
    Json,
    /// A markdown table, to paste into an issue or pull request.
    Md,
}

/// A table of text cells under a header, rendered by any exporter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Column names.
    pub header: Vec<String>,
    /// The cells, one vector per row.
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    /// Renders as `format`; JSON gives an array of objects keyed by the header.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => {
                let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
                table::render(&header, &self.rows)
            }
            Format::Csv => csv::render(self),
            Format::Md => markdown::render(self),
            Format::Json => json::render(self),
        }
    }

    /// Every field of every object as a column (in first-seen order), one row per object.
    pub fn from_objects(objects: &[serde_json::Value]) -> Rows {
        let mut header: Vec<String> = Vec::new();
        for object in objects {
            if let serde_json::Value::Object(map) = object {
                for key in map.keys() {
                    if !header.contains(key) {
                        header.push(key.clone());
                    }
                }
            }
        }
        let rows = objects
            .iter()
            .map(|object| {
                header
                    .iter()
                    .map(|key| cell(object.get(key).unwrap_or(&serde_json::Value::Null)))
                    .collect()
            })
            .collect();
        Rows { header, rows }
    }
}

/// A JSON value as a table cell: strings bare, null empty, the rest as JSON.
pub fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Stored trials in `format`: the short `ls` columns for table, CSV and markdown; every field
/// for JSON.
pub fn listings(listings: &[TrialListing], format: Format) -> String {
    match format {
        Format::Json => format!("{}\n", listings_json(listings)),
        _ => table::listing_rows(listings).render(format),
    }
}

/// Expanded (not yet run) trials in `format`, for `sweep validate`.
pub fn expanded_trials(
    sweep: &str,
    trials: &[crate::experiment::TrialSpec],
    format: Format,
) -> String {
    match format {
        Format::Table => trials_table(trials),
        Format::Json => format!("{}\n", trials_json(sweep, trials)),
        _ => {
            let objects: Vec<serde_json::Value> =
                serde_json::from_str(&trials_json(sweep, trials)).expect("our own JSON parses");
            Rows::from_objects(&objects).render(format)
        }
    }
}

/// A searched experiment's space, one line per axis, then its budget and early stopping (for
/// `sweep validate`).
pub fn search_space(
    spec: &crate::experiment::ExperimentSpec,
    space: &crate::search::Space,
) -> String {
    use crate::search::Domain;
    let mut out = String::from("axis            searched as\n");
    for param in &space.params {
        let what = match &param.domain {
            Domain::Choice(labels) => format!("choice of [{}]", labels.join(", ")),
            Domain::Drawn(d) => d.to_string(),
        };
        out.push_str(&format!("{:<15} {what}\n", param.name));
    }
    let fixed = space.values(&vec![0.0; space.params.len()]);
    let searched = |name: &str| space.params.iter().any(|p| p.name == name);
    for (name, value) in [
        ("arch", fixed.arch.as_str().to_string()),
        ("optimizer", fixed.optimizer.as_str().to_string()),
        ("lr", fixed.lr.to_string()),
        ("batch_size", fixed.batch_size.to_string()),
        ("epochs", fixed.epochs.to_string()),
        ("dropout", fixed.dropout.to_string()),
        ("weight_decay", fixed.weight_decay.to_string()),
        ("split", fixed.split.to_string()),
        ("augment", fixed.augment.as_str().to_string()),
        ("schedule", fixed.schedule.as_str().to_string()),
        ("warmup_epochs", fixed.warmup_epochs.to_string()),
        ("label_smoothing", fixed.label_smoothing.to_string()),
        ("batch_norm", fixed.batch_norm.to_string()),
    ] {
        if !searched(name) {
            out.push_str(&format!("{name:<15} fixed at {value}\n"));
        }
    }
    let s = &spec.sweep;
    if let Some(pbt) = spec.pbt_settings() {
        let explored: Vec<&str> = pbt
            .mutable(&spec.grid.searched_names())
            .iter()
            .map(|h| h.name())
            .collect();
        out.push_str(&format!(
            "\nsampler pbt, {} members x {} epochs = {} epochs, seed {}\n\
             a step every {} epochs: the bottom {} copies the top {}, exploring {} (x{} or \
             redrawn with probability {})\n",
            pbt.population,
            spec.grid.most_epochs(),
            pbt.population * spec.grid.most_epochs(),
            s.seed,
            pbt.interval,
            pbt.quantile,
            pbt.quantile,
            explored.join(", "),
            pbt.factors
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(" or x"),
            pbt.resample_probability
        ));
    } else {
        let trials = s.trials.unwrap_or(0);
        out.push_str(&format!(
            "\nsampler {}, {trials} configurations x {} repeats = {} trials, seed {}\n",
            s.sampler_label(),
            s.repeats,
            trials * s.repeats as usize,
            s.seed
        ));
    }
    let objectives: Vec<String> = s
        .objectives()
        .iter()
        .map(|o| format!("{o} ({})", if o.maximised() { "max" } else { "min" }))
        .collect();
    out.push_str(&format!("objectives: {}\n", objectives.join(", ")));
    let p = &spec.prune;
    out.push_str(&match p.method {
        crate::experiment::PruneMethod::None => "early stopping: none\n".to_string(),
        crate::experiment::PruneMethod::Median => format!(
            "early stopping: median, from epoch {} once {} trials have finished\n",
            p.min_epochs, p.startup_trials
        ),
        crate::experiment::PruneMethod::Asha => format!(
            "early stopping: asha, rungs at {} x {}^k epochs{}{}\n",
            p.min_epochs,
            p.reduction_factor,
            if p.fills_rungs() {
                format!(", none goes on before {} reach a rung", p.reduction_factor)
            } else {
                String::new()
            },
            if s.is_multi_objective() {
                ", ranked by non-dominated sorting then crowding distance"
            } else {
                ""
            }
        ),
    });
    out
}

/// Every field of every trial, one row each (for `sweep export`).
pub fn listings_flat(listings: &[TrialListing], format: Format) -> String {
    match format {
        Format::Json => format!("{}\n", listings_json(listings)),
        _ => {
            let objects: Vec<serde_json::Value> = listings
                .iter()
                .map(|l| serde_json::to_value(l).expect("listings serialise"))
                .collect();
            Rows::from_objects(&objects).render(format)
        }
    }
}

/// A listing's value for a metric or parameter name, as a number.
pub fn numeric_field(listing: &TrialListing, name: &str) -> Option<f64> {
    serde_json::to_value(listing).ok()?.get(name)?.as_f64()
}

/// A listing's value for a parameter or field name, as display text.
pub fn text_field(listing: &TrialListing, name: &str) -> String {
    serde_json::to_value(listing)
        .ok()
        .and_then(|v| v.get(name).map(cell))
        .unwrap_or_default()
}
