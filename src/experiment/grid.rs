//! Grid expansion: the cartesian product of every axis, times the repeats.

use super::hyper::Change;
use super::{ArchName, Augment, ExperimentSpec, OptimizerName, ScheduleName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A struct literal of `$to` whose axis fields (the fields `TrialSpec` and [`AxisValues`] share,
/// named once here) are copied from `$from`, followed by `$to`'s other fields.
macro_rules! with_axes {
    ($from:expr, $to:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let from = &$from;
        $to {
            arch: from.arch,
            optimizer: from.optimizer,
            lr: from.lr,
            batch_size: from.batch_size,
            epochs: from.epochs,
            dropout: from.dropout,
            weight_decay: from.weight_decay,
            split: from.split,
            augment: from.augment,
            schedule: from.schedule,
            warmup_epochs: from.warmup_epochs,
            label_smoothing: from.label_smoothing,
            batch_norm: from.batch_norm,
            $($field $(: $value)?),*
        }
    }};
}

/// Everything that determines one trial's result. Two trials with equal specs train identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// Architecture.
    pub arch: ArchName,
    /// Optimizer.
    pub optimizer: OptimizerName,
    /// Learning rate.
    pub lr: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Training epochs.
    pub epochs: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw).
    pub weight_decay: f64,
    /// Train fraction of the training set.
    pub split: f64,
    /// Which repeat of its configuration this trial is (0-based).
    pub repeat: u32,
    /// The seed every random draw of the trial derives from.
    pub seed: u64,
    /// Training images used (first N), all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Test images used (first N), all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_limit: Option<usize>,
    /// Standardised pixels instead of [0, 1].
    pub normalize: bool,
    /// Hidden widths (mlp, cnn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
    /// Conv channels (cnn and convnet: two layers; resnet: one per stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
    /// Basic blocks per stage (resnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<usize>,
    /// SGD momentum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// SGD dampening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// SGD Nesterov flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// Adam(W) betas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// Adam(W) epsilon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Which configuration a searching sampler drew (0-based), so equal draws stay two trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<u64>,
    // The keys below are left out at their defaults, so trials recorded before they existed
    // keep their keys (and their results).
    /// Training-image augmentation.
    #[serde(default, skip_serializing_if = "is_default")]
    pub augment: Augment,
    /// Padding before a random crop (crop augmentations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_padding: Option<usize>,
    /// Learning-rate schedule.
    #[serde(default, skip_serializing_if = "is_default")]
    pub schedule: ScheduleName,
    /// Epochs between two reductions (step schedule only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_every: Option<usize>,
    /// Factor of each reduction (step schedule only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_gamma: Option<f64>,
    /// Epochs of linear warm-up.
    #[serde(default, skip_serializing_if = "is_default")]
    pub warmup_epochs: usize,
    /// Label smoothing of the training loss.
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
    /// Batch norm after each convolution.
    #[serde(default, skip_serializing_if = "is_default")]
    pub batch_norm: bool,
    /// Validation and test also classify each image mirrored and average the logits.
    #[serde(default, skip_serializing_if = "is_default")]
    pub eval_flip: bool,
    /// Hyperparameters that change from a later epoch on (`[schedule]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The trial keys left out of stored parameters at their defaults, with those defaults as
/// listings show them.
pub fn omitted_defaults() -> [(&'static str, serde_json::Value); 6] {
    [
        ("eval_flip", false.into()),
        ("augment", Augment::None.as_str().into()),
        ("schedule", ScheduleName::Constant.as_str().into()),
        ("warmup_epochs", 0.into()),
        ("label_smoothing", 0.0.into()),
        ("batch_norm", false.into()),
    ]
}

impl TrialSpec {
    /// A short stable fingerprint of the parameters; a sweep holds each key once.
    pub fn key(&self) -> String {
        let json = serde_json::to_string(self).expect("a trial spec always serialises");
        hex::encode(&Sha256::digest(json.as_bytes())[..8])
    }

    /// The parameters as a JSON object, keyed by their experiment-file names.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a trial spec always serialises")
    }

    /// The values of its configuration's axes.
    pub fn axis_values(&self) -> AxisValues {
        with_axes!(self, AxisValues {})
    }

    /// A one-line description of the main parameters, for progress output.
    pub fn label(&self) -> String {
        let mut label = format!(
            "{} {} lr={} batch={} dropout={} split={} seed={}",
            self.arch.as_str(),
            self.optimizer.as_str(),
            self.lr,
            self.batch_size,
            self.dropout,
            self.split,
            self.seed
        );
        let json = self.to_json();
        for (key, _) in omitted_defaults() {
            match json.get(key) {
                Some(serde_json::Value::String(text)) => label.push_str(&format!(" {key}={text}")),
                Some(value) => label.push_str(&format!(" {key}={value}")),
                None => {}
            }
        }
        label
    }

    /// A rough cost estimate (epochs x training images x relative model cost), used to start
    /// the longest trials first.
    pub fn expected_cost(&self) -> f64 {
        let per_image = match self.arch {
            ArchName::Mlp => 1.0,
            ArchName::Lenet5 => 3.0,
            ArchName::Convnet => 8.0,
            ArchName::Cnn => 25.0,
            ArchName::Resnet => 120.0,
        };
        let per_image = if self.batch_norm && self.arch != ArchName::Resnet {
            per_image * 1.3
        } else {
            per_image
        };
        let images = self.limit.unwrap_or(60_000) as f64 * self.split;
        self.epochs as f64 * images * per_image
    }
}

/// One value of every axis: what distinguishes one configuration from another.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisValues {
    /// Architecture.
    pub arch: ArchName,
    /// Optimizer.
    pub optimizer: OptimizerName,
    /// Learning rate.
    pub lr: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Training epochs.
    pub epochs: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Train fraction.
    pub split: f64,
    /// Augmentation.
    pub augment: Augment,
    /// Learning-rate schedule.
    pub schedule: ScheduleName,
    /// Warm-up epochs.
    pub warmup_epochs: usize,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Batch norm, resolved: the declared value or the architecture's default.
    pub batch_norm: bool,
}

/// The trial of configuration `values`, repeat `repeat`, with the spec's sweep-wide options.
pub fn trial(
    spec: &ExperimentSpec,
    values: &AxisValues,
    repeat: u32,
    draw: Option<u64>,
) -> TrialSpec {
    let mut trial = with_axes!(
        values,
        TrialSpec {
            repeat,
            seed: spec.sweep.seed.wrapping_add(repeat as u64),
            limit: spec.data.limit,
            test_limit: spec.data.test_limit,
            normalize: spec.data.normalize,
            hidden: None,
            channels: None,
            blocks: None,
            momentum: None,
            dampening: None,
            nesterov: None,
            betas: None,
            eps: None,
            draw,
            crop_padding: values.augment.crops().then_some(spec.data.crop_padding),
            step_every: None,
            step_gamma: None,
            changes: spec.schedule.changes(),
            eval_flip: spec.data.eval_flip,
        }
    );
    if values.schedule == ScheduleName::Step {
        trial.step_every = Some(spec.schedule.step.every);
        trial.step_gamma = Some(spec.schedule.step.gamma);
    }
    fill_options(&mut trial, spec);
    trial
}

/// Expands a validated spec: axes vary slowest-first in the order arch, optimizer, lr,
/// batch_size, epochs, dropout, weight_decay, split, augment, schedule, warmup_epochs,
/// label_smoothing, batch_norm, then repeats.
pub fn expand(spec: &ExperimentSpec) -> Vec<TrialSpec> {
    let g = &spec.grid;
    let lengths = [
        g.arch.values().len(),
        g.optimizer.values().len(),
        g.lr.values().len(),
        g.batch_size.values().len(),
        g.epochs.values().len(),
        g.dropout.values().len(),
        g.weight_decay.values().len(),
        spec.data.split.values().len(),
        g.augment.values().len(),
        g.schedule.values().len(),
        g.warmup_epochs.values().len(),
        g.label_smoothing.values().len(),
        g.batch_norm.as_ref().map_or(1, |axis| axis.values().len()),
    ];
    let combinations: usize = lengths.iter().product();
    let mut trials = Vec::with_capacity(combinations * spec.sweep.repeats as usize);
    for number in 0..combinations {
        // Mixed-radix digits of `number`, the last axis varying fastest.
        let mut digits = [0; 13];
        let mut rest = number;
        for (digit, &length) in digits.iter_mut().zip(&lengths).rev() {
            *digit = rest % length;
            rest /= length;
        }
        let [
            arch,
            optimizer,
            lr,
            batch_size,
            epochs,
            dropout,
            weight_decay,
            split,
            augment,
            schedule,
            warmup_epochs,
            label_smoothing,
            batch_norm,
        ] = digits;
        let arch = g.arch.values()[arch];
        let values = AxisValues {
            arch,
            optimizer: g.optimizer.values()[optimizer],
            lr: g.lr.values()[lr],
            batch_size: g.batch_size.values()[batch_size],
            epochs: g.epochs.values()[epochs],
            dropout: g.dropout.values()[dropout],
            weight_decay: g.weight_decay.values()[weight_decay],
            split: spec.data.split.values()[split],
            augment: g.augment.values()[augment],
            schedule: g.schedule.values()[schedule],
            warmup_epochs: g.warmup_epochs.values()[warmup_epochs],
            label_smoothing: g.label_smoothing.values()[label_smoothing],
            batch_norm: match &g.batch_norm {
                Some(axis) => axis.values()[batch_norm],
                None => arch.batch_norm_by_default(),
            },
        };
        for repeat in 0..spec.sweep.repeats {
            trials.push(trial(spec, &values, repeat, None));
        }
    }
    trials
}

/// Copies only the options of the trial's own architecture and optimizer, so editing the
/// options of another architecture leaves this trial's key (and its recorded result) intact.
fn fill_options(trial: &mut TrialSpec, spec: &ExperimentSpec) {
    match trial.arch {
        ArchName::Mlp => trial.hidden = Some(spec.arch.mlp.hidden.clone()),
        ArchName::Cnn => {
            trial.channels = Some(spec.arch.cnn.channels.to_vec());
            trial.hidden = Some(spec.arch.cnn.hidden.to_vec());
        }
        ArchName::Convnet => trial.channels = Some(spec.arch.convnet.channels.to_vec()),
        ArchName::Resnet => {
            trial.channels = Some(spec.arch.resnet.channels.clone());
            trial.blocks = Some(spec.arch.resnet.blocks);
        }
        ArchName::Lenet5 => {}
    }
    match trial.optimizer {
        OptimizerName::Sgd => {
            let sgd = &spec.optimizer.sgd;
            trial.momentum = Some(sgd.momentum);
            trial.dampening = Some(sgd.dampening);
            trial.nesterov = Some(sgd.nesterov);
        }
        OptimizerName::Adam | OptimizerName::Adamw => {
            let adam = if trial.optimizer == OptimizerName::Adam {
                &spec.optimizer.adam
            } else {
                &spec.optimizer.adamw
            };
            trial.betas = Some(adam.betas);
            trial.eps = Some(adam.eps);
        }
    }
}
