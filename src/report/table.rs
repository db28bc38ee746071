//! Plain-text tables with aligned columns.

use super::{Measure, Rows};
use crate::experiment::TrialSpec;
use crate::store::TrialListing;

/// Renders rows under a header, each column as wide as its widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&mut header.iter().copied());
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// A number with `digits` decimals, `-` when absent.
pub fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn param(listing: &TrialListing, key: &str) -> String {
    listing
        .params
        .get(key)
        .map_or_else(|| "-".into(), super::number::human_value)
}

/// One line per stored trial: id, parameters, status, final metrics.
pub fn listings_table(listings: &[TrialListing]) -> String {
    listing_rows(listings).render(super::Format::Table)
}

/// The short `ls` columns of stored trials.
pub fn listing_rows(listings: &[TrialListing]) -> Rows {
    let header = [
        "id",
        "sweep",
        "arch",
        "optimizer",
        "lr",
        "batch",
        "epochs",
        "dropout",
        "split",
        "seed",
        "status",
        "val_acc",
        "test_acc",
        "time_s",
    ];
    // Keys most trials leave at their default get a column only when a listed trial sets one.
    let varied: Vec<&'static str> = crate::experiment::omitted_defaults()
        .into_iter()
        .filter(|(key, default)| {
            listings
                .iter()
                .any(|l| l.params.get(*key).is_some_and(|v| v != default))
        })
        .map(|(key, _)| key)
        .collect();
    let mut header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    // Sizes and speeds get a column once a listed trial has one (multi-objective sweeps).
    let measured: Vec<(&str, Measure, usize)> = [
        ("params", Measure::Params, 0),
        ("epoch_s", Measure::EpochSeconds, 2),
        ("ms/img", Measure::LatencyMs, 3),
    ]
    .into_iter()
    .filter(|(_, m, _)| listings.iter().any(|l| m.of(l).is_some()))
    .collect();
    header.extend(measured.iter().map(|(name, _, _)| name.to_string()));
    let at = header
        .iter()
        .position(|h| h == "seed")
        .expect("seed is a column");
    for (i, key) in varied.iter().enumerate() {
        header.insert(at + i, key.to_string());
    }
    let rows: Vec<Vec<String>> = listings
        .iter()
        .map(|l| {
            let mut row = vec![
                l.id.to_string(),
                l.sweep.clone(),
                param(l, "arch"),
                param(l, "optimizer"),
                param(l, "lr"),
                param(l, "batch_size"),
                format!("{}/{}", l.epochs_done, param(l, "epochs")),
                param(l, "dropout"),
                param(l, "split"),
                param(l, "seed"),
                l.status.to_string(),
                opt(l.val_acc, 4),
                opt(l.test_acc, 4),
                opt(l.duration_s, 1),
            ];
            row.extend(measured.iter().map(|&(_, m, digits)| opt(m.of(l), digits)));
            for (i, key) in varied.iter().enumerate() {
                row.insert(at + i, param(l, key));
            }
            row
        })
        .collect();
    Rows { header, rows }
}

/// One line per expanded trial, for `sweep validate`; keys most trials leave at their default
/// (augment, schedule, batch_norm, ...) get a column when some trial sets one.
pub fn trials_table(trials: &[TrialSpec]) -> String {
    let params: Vec<serde_json::Value> = trials.iter().map(TrialSpec::to_json).collect();
    let varied: Vec<&'static str> = crate::experiment::omitted_defaults()
        .into_iter()
        .filter(|(key, _)| params.iter().any(|p| p.get(*key).is_some()))
        .map(|(key, _)| key)
        .collect();
    let mut header = vec![
        "#",
        "arch",
        "optimizer",
        "lr",
        "batch",
        "epochs",
        "dropout",
        "wd",
        "split",
    ];
    header.extend(&varied);
    header.extend(["seed", "key"]);
    let rows: Vec<Vec<String>> = trials
        .iter()
        .zip(&params)
        .enumerate()
        .map(|(i, (t, p))| {
            let mut row = vec![
                i.to_string(),
                t.arch.as_str().into(),
                t.optimizer.as_str().into(),
                t.lr.to_string(),
                t.batch_size.to_string(),
                t.epochs.to_string(),
                t.dropout.to_string(),
                t.weight_decay.to_string(),
                t.split.to_string(),
            ];
            for (key, default) in crate::experiment::omitted_defaults() {
                if varied.contains(&key) {
                    let value = p.get(key).unwrap_or(&default);
                    row.push(match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    });
                }
            }
            row.extend([t.seed.to_string(), t.key()]);
            row
        })
        .collect();
    render(&header, &rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_to_the_widest_cell() {
        let out = super::render(
            &["a", "bb"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(out, "a    bb\nxxx  y\nz    w\n");
    }
}
