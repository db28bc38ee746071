//! JSON output: one array, one object per trial.

use super::Rows;
use crate::experiment::TrialSpec;
use crate::store::TrialListing;

/// Stored trials as a pretty JSON array.
pub fn listings_json(listings: &[TrialListing]) -> String {
    serde_json::to_string_pretty(listings).expect("listings always serialise")
}

/// Expanded (not yet run) trials as a JSON array, each with its grid position and key.
pub fn trials_json(sweep: &str, trials: &[TrialSpec]) -> String {
    let items: Vec<serde_json::Value> = trials
        .iter()
        .enumerate()
        .map(|(ordinal, trial)| {
            let mut object = serde_json::Map::new();
            object.insert("ordinal".into(), ordinal.into());
            object.insert("sweep".into(), sweep.into());
            object.insert("key".into(), trial.key().into());
            if let serde_json::Value::Object(params) = trial.to_json() {
                object.extend(params);
            }
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::to_string_pretty(&items).expect("trials always serialise")
}

/// Rows as a JSON array of objects keyed by the header; cells that are JSON numbers or booleans
/// stay numbers and booleans, empty cells become null.
pub fn render(rows: &Rows) -> String {
    let items: Vec<serde_json::Value> = rows
        .rows
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, serde_json::Value> = rows
                .header
                .iter()
                .zip(row)
                .map(|(key, cell)| {
                    let value = if cell.is_empty() {
                        serde_json::Value::Null
                    } else {
                        match serde_json::from_str::<serde_json::Value>(cell) {
                            Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                                v
                            }
                            _ => serde_json::Value::String(cell.clone()),
                        }
                    };
                    (key.clone(), value)
                })
                .collect();
            serde_json::Value::Object(object)
        })
        .collect();
    format!(
        "{}\n",
        serde_json::to_string_pretty(&items).expect("values serialise")
    )
}
