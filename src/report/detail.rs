//! Views of single trials: `sweep show` and `sweep compare`.

use super::lineage::Lineage;
use super::number::human;
use super::table::opt;
use super::{Format, Rows, cell};
use crate::data::FASHION_CLASSES;
use crate::disk::DirUsage;
use crate::store::{CheckpointRow, EpochRow, TrialListing};
use serde::Serialize;

/// Everything stored about one trial.
#[derive(Debug, Clone, Serialize)]
pub struct TrialDetail {
    /// Parameters, status and final figures.
    pub trial: TrialListing,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochRow>,
    /// Checkpoint files.
    pub checkpoints: Vec<CheckpointRow>,
    /// Test confusion counts, `[true class][predicted class]`; empty until the trial is done.
    pub confusion: Vec<Vec<i64>>,
    /// Disk taken by the trial's directory and by its sweep's, when the sweep recorded where
    /// they are.
    pub disk: Option<TrialDisk>,
    /// Population-based training members: the copies into it and its ancestry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// What a trial's checkpoint files take, and its sweep's.
#[derive(Debug, Clone, Serialize)]
pub struct TrialDisk {
    /// The trial's directory.
    pub trial: DirUsage,
    /// Its sweep's directory.
    pub sweep: DirUsage,
}

impl TrialDetail {
    /// Builds the confusion matrix from `(actual, predicted, count)` rows.
    pub fn confusion_from(rows: &[(i64, i64, i64)]) -> Vec<Vec<i64>> {
        let size = rows
            .iter()
            .map(|r| r.0.max(r.1) + 1)
            .max()
            .unwrap_or(0)
            .max(0) as usize;
        let mut matrix = vec![vec![0; size]; size];
        for &(actual, predicted, count) in rows {
            matrix[actual as usize][predicted as usize] = count;
        }
        matrix
    }

    /// Per class: (correct, total) on the test set.
    pub fn class_counts(&self) -> Vec<(i64, i64)> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(class, row)| (row[class], row.iter().sum()))
            .collect()
    }

    /// The most frequent confusions: (true class, predicted class, count), largest first.
    pub fn confused_pairs(&self, n: usize) -> Vec<(usize, usize, i64)> {
        let mut pairs: Vec<(usize, usize, i64)> = self
            .confusion
            .iter()
            .enumerate()
            .flat_map(|(a, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |(p, c)| *p != a && **c > 0)
                    .map(move |(p, c)| (a, p, *c))
            })
            .collect();
        pairs.sort_by(|x, y| y.2.cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
        pairs.truncate(n);
        pairs
    }
}

/// The name of class `index` (Fashion-MNIST's names; the index for others).
pub fn class_name(index: usize) -> String {
    FASHION_CLASSES
        .get(index)
        .map_or_else(|| index.to_string(), |n| n.to_string())
}

/// The parameters of a trial as (name, value) rows.
fn parameter_rows(trial: &TrialListing) -> Rows {
    Rows {
        header: vec!["parameter".into(), "value".into()],
        rows: trial
            .params
            .iter()
            .map(|(k, v)| vec![k.clone(), cell(v)])
            .collect(),
    }
}

/// Per-epoch metrics as rows.
pub fn epoch_rows(epochs: &[EpochRow]) -> Rows {
    Rows {
        header: [
            "epoch",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "seconds",
        ]
        .map(String::from)
        .to_vec(),
        rows: epochs
            .iter()
            .map(|e| {
                vec![
                    e.epoch.to_string(),
                    opt(e.train_loss, 4),
                    opt(e.train_acc, 4),
                    opt(e.val_loss, 4),
                    opt(e.val_acc, 4),
                    format!("{:.2}", e.seconds),
                ]
            })
            .collect(),
    }
}

/// Per-class test accuracy as rows.
pub fn class_rows(detail: &TrialDetail) -> Rows {
    Rows {
        header: ["class", "name", "correct", "total", "accuracy"]
            .map(String::from)
            .to_vec(),
        rows: detail
            .class_counts()
            .iter()
            .enumerate()
            .map(|(class, &(correct, total))| {
                vec![
                    class.to_string(),
                    class_name(class),
                    correct.to_string(),
                    total.to_string(),
                    opt((total > 0).then(|| correct as f64 / total as f64), 4),
                ]
            })
            .collect(),
    }
}

/// The confusion matrix as rows: true class down, predicted class across.
pub fn confusion_rows(detail: &TrialDetail) -> Rows {
    let mut header = vec!["true \\ predicted".to_string()];
    header.extend((0..detail.confusion.len()).map(|c| c.to_string()));
    Rows {
        header,
        rows: detail
            .confusion
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let mut cells = vec![format!("{class} {}", class_name(class))];
                cells.extend(row.iter().map(|c| c.to_string()));
                cells
            })
            .collect(),
    }
}

/// `sweep show`: every stored fact about one trial. Table and markdown give titled sections,
/// JSON one object, CSV the per-epoch table.
pub fn show(detail: &TrialDetail, format: Format) -> String {
    let t = &detail.trial;
    match format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(detail).expect("details serialise")
        ),
        Format::Csv => epoch_rows(&detail.epochs).render(Format::Csv),
        Format::Table | Format::Md => {
            let title = |text: &str| match format {
                Format::Md => format!("\n### {text}\n\n"),
                _ => format!("\n{text}\n"),
            };
            let mut out = match format {
                Format::Md => format!("## Trial {} of sweep {}\n\n", t.id, t.sweep),
                _ => format!("trial {} of sweep {}\n", t.id, t.sweep),
            };
            out.push_str(&format!(
                "status {}, device {}, {} threads, {} epochs in {} s\n",
                t.status,
                t.device.as_deref().unwrap_or("-"),
                t.threads.map_or("-".into(), |n| n.to_string()),
                t.epochs_done,
                opt(t.duration_s, 1)
            ));
            if let Some(fused_with) = &t.fused_with {
                out.push_str(&format!(
                    "trained fused with trials {} as one model ([sweep] fuse)\n",
                    fused_with.replace(',', ", ")
                ));
            }
            if let Some(error) = &t.error {
                out.push_str(&format!("error: {error}\n"));
            }
            out.push_str(&title("Parameters"));
            out.push_str(&parameter_rows(t).render(format));
            out.push_str(&title("Epochs"));
            out.push_str(&epoch_rows(&detail.epochs).render(format));
            if let Some(lineage) = &detail.lineage {
                out.push_str(&lineage_sections(lineage, format, &title));
            }
            if !detail.checkpoints.is_empty() {
                out.push_str(&title("Checkpoints"));
                let rows = Rows {
                    header: ["kind", "epoch", "bytes", "sha256", "path"]
                        .map(String::from)
                        .to_vec(),
                    rows: detail
                        .checkpoints
                        .iter()
                        .map(|c| {
                            vec![
                                c.kind.clone(),
                                c.epoch.to_string(),
                                c.size_bytes.to_string(),
                                c.sha256.clone(),
                                c.path.clone(),
                            ]
                        })
                        .collect(),
                };
                out.push_str(&rows.render(format));
            }
            if let Some(disk) = &detail.disk {
                out.push_str(&title("Disk"));
                let rows = Rows {
                    header: ["of", "files", "bytes", "size", "directory"]
                        .map(String::from)
                        .to_vec(),
                    rows: [
                        (format!("trial {}", t.id), &disk.trial),
                        (format!("sweep {}", t.sweep), &disk.sweep),
                    ]
                    .into_iter()
                    .map(|(of, d)| {
                        vec![
                            of,
                            d.usage.files.to_string(),
                            d.usage.bytes.to_string(),
                            crate::disk::bytes(d.usage.bytes),
                            d.dir.display().to_string(),
                        ]
                    })
                    .collect(),
                };
                out.push_str(&rows.render(format));
            }
            if !detail.confusion.is_empty() {
                out.push_str(&title(&format!(
                    "Test: loss {}, accuracy {} (best validation epoch {})",
                    opt(t.test_loss, 4),
                    opt(t.test_acc, 4),
                    t.best_epoch.map_or("-".into(), |e| e.to_string())
                )));
                out.push_str(&class_rows(detail).render(format));
                out.push_str(&title(
                    "Confusion matrix (rows: true class, columns: predicted)",
                ));
                out.push_str(&confusion_rows(detail).render(format));
            }
            out
        }
    }
}

/// A member's copies, ancestry and schedule as titled tables.
fn lineage_sections(lineage: &Lineage, format: Format, title: &dyn Fn(&str) -> String) -> String {
    let pairs = |params: &[(crate::experiment::Hyper, f64)]| {
        params
            .iter()
            .map(|(h, v)| format!("{}={}", h.name(), human(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = title("Copies (population-based training)");
    if lineage.copies.is_empty() {
        out.push_str("none: this member kept its own weights throughout\n");
    } else {
        out.push_str(
            &Rows {
                header: [
                    "after epoch",
                    "copied trial",
                    "its value",
                    "own value",
                    "before",
                    "after",
                ]
                .map(String::from)
                .to_vec(),
                rows: lineage
                    .copies
                    .iter()
                    .map(|c| {
                        vec![
                            c.epoch.to_string(),
                            c.donor.to_string(),
                            format!("{:.4}", c.donor_value),
                            format!("{:.4}", c.value),
                            pairs(&c.before),
                            pairs(&c.after),
                        ]
                    })
                    .collect(),
            }
            .render(format),
        );
    }
    out.push_str(&title("Ancestry of the final weights"));
    out.push_str(
        &Rows {
            header: ["epochs", "trained by trial", "hyperparameters"]
                .map(String::from)
                .to_vec(),
            rows: lineage
                .ancestry
                .iter()
                .map(|s| {
                    vec![
                        format!("{}-{}", s.first_epoch, s.last_epoch),
                        s.member.to_string(),
                        pairs(&s.params),
                    ]
                })
                .collect(),
        }
        .render(format),
    );
    out.push_str(&title(
        "Schedule (`sweep show ID --format toml` writes it as an experiment)",
    ));
    out.push_str(
        &Rows {
            header: ["hyperparameter", "from epoch: value"]
                .map(String::from)
                .to_vec(),
            rows: lineage
                .schedule
                .iter()
                .map(|(h, values)| {
                    vec![
                        h.name().to_string(),
                        values
                            .iter()
                            .map(|(e, v)| format!("{e}: {}", human(*v)))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect(),
        }
        .render(format),
    );
    out
}

/// Fields of a listing that are measured, not chosen: shown to 4 decimals in tables.
pub const MEASURED: [&str; 7] = [
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "best_val_acc",
    "test_loss",
    "test_acc",
];

/// `sweep compare`: one column per trial, one row per parameter and metric; rows whose values
/// differ are marked with `*` (table, markdown) or `"differs": true` (JSON, CSV).
pub fn compare(trials: &[TrialListing], format: Format) -> String {
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = trials
        .iter()
        .map(
            |t| match serde_json::to_value(t).expect("listings serialise") {
                serde_json::Value::Object(map) => map,
                _ => unreachable!("a listing is an object"),
            },
        )
        .collect();
    let mut fields: Vec<String> = Vec::new();
    for object in &objects {
        for key in object.keys() {
            if key != "id" && !fields.contains(key) {
                fields.push(key.clone());
            }
        }
    }
    let marked = matches!(format, Format::Table | Format::Md);
    let mut header = vec!["field".to_string()];
    header.extend(trials.iter().map(|t| format!("trial {}", t.id)));
    if !marked {
        header.push("differs".into());
    }
    let rows = fields
        .iter()
        .map(|field| {
            let raw: Vec<&serde_json::Value> = objects
                .iter()
                .map(|o| o.get(field).unwrap_or(&serde_json::Value::Null))
                .collect();
            let differs = raw.iter().any(|v| v != &raw[0]);
            // Tables round measured figures as `ls` and `show` do; CSV and JSON keep them whole.
            let values = raw.iter().map(|value| match value.as_f64() {
                Some(v) if marked && field == "duration_s" => format!("{v:.1}"),
                Some(v) if marked && MEASURED.contains(&field.as_str()) => format!("{v:.4}"),
                _ => cell(value),
            });
            let mut row = vec![if marked && differs {
                format!("* {field}")
            } else {
                field.clone()
            }];
            row.extend(values);
            if !marked {
                row.push(differs.to_string());
            }
            row
        })
        .collect();
    let mut out = Rows { header, rows }.render(format);
    if marked {
        out.push_str("(* marks the fields that differ)\n");
    }
    out
}
