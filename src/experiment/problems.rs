//! What validation found wrong in an experiment, each problem named with the layer its value
//! came from (the file, a `SWEEP_*` variable or `--set`), the key, the value and the rule.

use super::origin_of;
use crate::error::{Error, Result};
use figment::Figment;
use std::path::Path;

/// The problems found so far.
pub(super) struct Problems<'a> {
    figment: &'a Figment,
    path: &'a Path,
    found: Vec<String>,
}

impl<'a> Problems<'a> {
    /// No problem yet, for the experiment at `path` loaded as `figment`.
    pub(super) fn new(figment: &'a Figment, path: &'a Path) -> Self {
        Problems {
            figment,
            path,
            found: Vec::new(),
        }
    }

    /// Records that `key = value` breaks `rule`, unless `ok`.
    pub(super) fn check(&mut self, ok: bool, key: &str, value: String, rule: &str) {
        if !ok {
            let origin = self
                .figment
                .find_metadata(key)
                .map_or_else(|| self.path.display().to_string(), origin_of);
            self.found
                .push(format!("{origin}: {key} = {value}: {rule}"));
        }
    }

    /// Whether `key` was given by the file, a `SWEEP_*` variable or `--set`, not left at its
    /// default.
    pub(super) fn is_set(&self, key: &str) -> bool {
        self.figment
            .find_metadata(key)
            .is_some_and(|meta| !meta.name.ends_with("ExperimentSpec"))
    }

    /// Every problem in one error, or `Ok` when there is none.
    pub(super) fn into_result(self) -> Result<()> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(Error::Spec(format!(
                "invalid experiment {}:\n  {}",
                self.path.display(),
                self.found.join("\n  ")
            )))
        }
    }
}
