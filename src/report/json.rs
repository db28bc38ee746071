//! JSON output: one array, one object per trial.

use crate::spec::TrialSpec;
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
