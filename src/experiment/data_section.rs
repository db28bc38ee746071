//! `[data]`: where the images are, how they are split, and how many are used.

use super::axis::Axis;
use super::grid_section::{NumericAxis, check_numeric_axis};
use super::problems::Problems;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Directory holding the four IDX files; see `data::locate` for the search order.
    pub dir: Option<PathBuf>,
    /// Fraction of the training set used for training, the rest validates (a grid axis).
    pub split: Axis<f64>,
    /// Use only the first `limit` training images (quick runs).
    pub limit: Option<usize>,
    /// Use only the first `test_limit` test images; 0 skips the test pass (`sweep predict` tests a
    /// chosen trial later).
    pub test_limit: Option<usize>,
    /// Standardise pixels with the training set's mean and deviation instead of scaling to [0, 1].
    pub normalize: bool,
    /// Zero pixels added on each side before a random crop (`augment = "crop"`).
    pub crop_padding: usize,
    /// Test-time augmentation: validation, test and `predict` also classify each image mirrored
    /// left to right and average the two logits.
    pub eval_flip: bool,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dir: None,
            split: Axis::one(0.9),
            limit: None,
            test_limit: None,
            normalize: false,
            crop_padding: 2,
            eval_flip: false,
        }
    }
}

impl DataSection {
    /// Checks the split axis (a distribution only when `searching`), the limit and the crop
    /// padding.
    pub(super) fn validate(&self, problems: &mut Problems, searching: bool) {
        check_numeric_axis(
            problems,
            searching,
            NumericAxis {
                key: "data.split",
                values: self.split.values().to_vec(),
                drawn: self.split.distribution(),
                integer: false,
                valid: |x| x > 0.0 && x < 1.0,
                rule: "the train fraction must be strictly between 0 and 1 (e.g. 0.8 for an \
                       80/20 split)",
            },
        );
        if let Some(limit) = self.limit {
            problems.check(
                limit >= 2,
                "data.limit",
                limit.to_string(),
                "must be at least 2 (one training and one validation image)",
            );
        }
        problems.check(
            self.crop_padding <= 14,
            "data.crop_padding",
            self.crop_padding.to_string(),
            "must be at most 14 (half the image); 2 or 4 are usual",
        );
    }
}
