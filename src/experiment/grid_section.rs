//! `[grid]`: every key is an axis (a value, a list, or for a search a distribution), with the
//! names the choice axes take.

use super::axis::{Axis, Distribution};
use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// How the learning rate changes over a trial (after any warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Cosine annealing to zero over the trial's steps.
    Cosine,
    /// Multiplied by `gamma` every `every` epochs.
    Step,
    /// PyTorch's OneCycleLR with its defaults, peaking at `lr`.
    Onecycle,
}

impl ScheduleName {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleName::Constant => "constant",
            ScheduleName::Cosine => "cosine",
            ScheduleName::Step => "step",
            ScheduleName::Onecycle => "onecycle",
        }
    }
}

/// Random changes to training images, drawn per image and epoch from the trial's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Augment {
    /// Images as they are.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Mirrored left to right with probability 1/2.
    #[serde(rename = "flip")]
    Flip,
    /// A 28x28 window of the image padded by `[data] crop_padding` zero pixels on each side.
    #[serde(rename = "crop")]
    Crop,
    /// Flip, then crop.
    #[serde(rename = "flip+crop")]
    FlipCrop,
}

impl Augment {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            Augment::None => "none",
            Augment::Flip => "flip",
            Augment::Crop => "crop",
            Augment::FlipCrop => "flip+crop",
        }
    }

    /// Whether images are mirrored.
    pub fn flips(self) -> bool {
        matches!(self, Augment::Flip | Augment::FlipCrop)
    }

    /// Whether images are cropped.
    pub fn crops(self) -> bool {
        matches!(self, Augment::Crop | Augment::FlipCrop)
    }
}

/// `[grid]`: every key is an axis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GridSection {
    /// Architectures.
    pub arch: Axis<ArchName>,
    /// Optimizers.
    pub optimizer: Axis<OptimizerName>,
    /// Learning rates.
    pub lr: Axis<f64>,
    /// Mini-batch sizes.
    pub batch_size: Axis<usize>,
    /// Training epochs.
    pub epochs: Axis<usize>,
    /// Dropout probabilities, applied where the architecture has dropout layers.
    pub dropout: Axis<f64>,
    /// Weight decay: an L2 penalty for sgd and adam, decoupled decay for adamw.
    pub weight_decay: Axis<f64>,
    /// Training-image augmentation.
    pub augment: Axis<Augment>,
    /// Learning-rate schedule.
    pub schedule: Axis<ScheduleName>,
    /// Epochs of linear learning-rate warm-up before the schedule.
    pub warmup_epochs: Axis<usize>,
    /// Label smoothing of the training loss, as PyTorch's CrossEntropyLoss applies it.
    pub label_smoothing: Axis<f64>,
    /// Batch norm after each convolution; absent means each architecture's default (on for
    /// resnet, off for the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_norm: Option<Axis<bool>>,
}

impl Default for GridSection {
    fn default() -> Self {
        GridSection {
            arch: Axis::one(ArchName::Mlp),
            optimizer: Axis::one(OptimizerName::Adam),
            lr: Axis::one(0.001),
            batch_size: Axis::one(64),
            epochs: Axis::one(1),
            dropout: Axis::one(0.0),
            weight_decay: Axis::one(0.0),
            augment: Axis::one(Augment::None),
            schedule: Axis::one(ScheduleName::Constant),
            warmup_epochs: Axis::one(0),
            label_smoothing: Axis::one(0.0),
            batch_norm: None,
        }
    }
}

/// The architectures `sweep` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchName {
    /// Fully connected network (seed 001, 003).
    Mlp,
    /// Two conv + two pool + three linear layers (seed 002).
    Cnn,
    /// LeNet-5 (seed 004).
    Lenet5,
    /// Two conv layers and one linear layer (seeds 000, 004).
    Convnet,
    /// A small residual network with batch norm and global average pooling.
    Resnet,
}

impl ArchName {
    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchName::Mlp => "mlp",
            ArchName::Cnn => "cnn",
            ArchName::Lenet5 => "lenet5",
            ArchName::Convnet => "convnet",
            ArchName::Resnet => "resnet",
        }
    }

    /// Whether its convolutions are followed by batch norm when `batch_norm` is not declared.
    pub fn batch_norm_by_default(self) -> bool {
        self == ArchName::Resnet
    }
}

/// The optimizers `sweep` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum.
    Sgd,
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
}

impl OptimizerName {
    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerName::Sgd => "sgd",
            OptimizerName::Adam => "adam",
            OptimizerName::Adamw => "adamw",
        }
    }
}

impl GridSection {
    /// The most epochs any trial trains, listed or drawn.
    pub fn most_epochs(&self) -> usize {
        most(&self.epochs)
    }

    /// The axes that list several values or name a distribution.
    pub fn searched_names(&self) -> Vec<&'static str> {
        fn varies<T>(axis: &Axis<T>) -> bool {
            axis.distribution().is_some() || axis.values().len() > 1
        }
        [
            ("arch", varies(&self.arch)),
            ("optimizer", varies(&self.optimizer)),
            ("lr", varies(&self.lr)),
            ("batch_size", varies(&self.batch_size)),
            ("epochs", varies(&self.epochs)),
            ("dropout", varies(&self.dropout)),
            ("weight_decay", varies(&self.weight_decay)),
            ("augment", varies(&self.augment)),
            ("schedule", varies(&self.schedule)),
            ("warmup_epochs", varies(&self.warmup_epochs)),
            ("label_smoothing", varies(&self.label_smoothing)),
            ("batch_norm", self.batch_norm.as_ref().is_some_and(varies)),
        ]
        .into_iter()
        .filter_map(|(name, varies)| varies.then_some(name))
        .collect()
    }

    /// Checks every axis (distributions only when `searching`) and the rules between axes.
    pub(super) fn validate(&self, problems: &mut Problems, searching: bool) {
        self.validate_choices(problems);
        for axis in self.numeric_axes() {
            check_numeric_axis(problems, searching, axis);
        }
        // The warm-up must leave at least one epoch of the schedule, in every combination.
        let (warmup, epochs) = (most(&self.warmup_epochs), fewest(&self.epochs));
        problems.check(
            warmup == 0 || warmup < epochs,
            "grid.warmup_epochs",
            warmup.to_string(),
            &format!(
                "the warm-up must end before the last epoch (a trial may have as few as \
                 {epochs} epochs); lower warmup_epochs or raise grid.epochs"
            ),
        );
        // Batch norm follows convolutions: mlp has none, and resnet is defined with it.
        if let Some(batch_norm) = &self.batch_norm {
            let declared = batch_norm.values();
            let archs = self.arch.values();
            problems.check(
                !(declared.contains(&true) && archs.contains(&ArchName::Mlp)),
                "grid.batch_norm",
                "true".into(),
                "mlp has no convolutions to normalise: use batch_norm with cnn, lenet5 or \
                 convnet, and put mlp in an experiment of its own",
            );
            problems.check(
                !(declared.contains(&false) && archs.contains(&ArchName::Resnet)),
                "grid.batch_norm",
                "false".into(),
                "resnet always uses batch norm: leave batch_norm out for resnet (or put resnet \
                 in an experiment of its own)",
            );
        }
    }

    /// The axes of names and flags take values or lists, never a distribution.
    fn validate_choices(&self, problems: &mut Problems) {
        let batch_norm = self.batch_norm.as_ref();
        for (key, listed, drawn) in [
            (
                "grid.arch",
                self.arch.values().len(),
                self.arch.distribution(),
            ),
            (
                "grid.optimizer",
                self.optimizer.values().len(),
                self.optimizer.distribution(),
            ),
            (
                "grid.augment",
                self.augment.values().len(),
                self.augment.distribution(),
            ),
            (
                "grid.schedule",
                self.schedule.values().len(),
                self.schedule.distribution(),
            ),
            (
                "grid.batch_norm",
                batch_norm.map_or(1, |axis| axis.values().len()),
                batch_norm.and_then(|axis| axis.distribution()),
            ),
        ] {
            problems.check(
                drawn.is_none(),
                key,
                drawn.map(|d| d.to_string()).unwrap_or_default(),
                "takes a value or a list of values (a choice), not a distribution",
            );
            problems.check(
                listed > 0 || drawn.is_some(),
                key,
                "[]".into(),
                "the grid is empty: give at least one value",
            );
        }
    }

    /// The numeric axes with the rule each value must meet.
    fn numeric_axes(&self) -> [NumericAxis<'_>; 7] {
        let whole = |axis: &Axis<usize>| axis.values().iter().map(|&v| v as f64).collect();
        [
            NumericAxis {
                key: "grid.lr",
                values: self.lr.values().to_vec(),
                drawn: self.lr.distribution(),
                integer: false,
                valid: |x| x.is_finite() && x > 0.0,
                rule: "the learning rate must be greater than 0 (e.g. 0.001)",
            },
            NumericAxis {
                key: "grid.batch_size",
                values: whole(&self.batch_size),
                drawn: self.batch_size.distribution(),
                integer: true,
                valid: |x| x >= 1.0,
                rule: "must be at least 1",
            },
            NumericAxis {
                key: "grid.epochs",
                values: whole(&self.epochs),
                drawn: self.epochs.distribution(),
                integer: true,
                valid: |x| x >= 1.0,
                rule: "must be at least 1",
            },
            NumericAxis {
                key: "grid.dropout",
                values: self.dropout.values().to_vec(),
                drawn: self.dropout.distribution(),
                integer: false,
                valid: |x| (0.0..1.0).contains(&x),
                rule: "dropout must be in [0, 1)",
            },
            NumericAxis {
                key: "grid.weight_decay",
                values: self.weight_decay.values().to_vec(),
                drawn: self.weight_decay.distribution(),
                integer: false,
                valid: |x| x.is_finite() && x >= 0.0,
                rule: "must be 0 or greater",
            },
            NumericAxis {
                key: "grid.warmup_epochs",
                values: whole(&self.warmup_epochs),
                drawn: self.warmup_epochs.distribution(),
                integer: true,
                valid: |x| x >= 0.0,
                rule: "must be 0 or more",
            },
            NumericAxis {
                key: "grid.label_smoothing",
                values: self.label_smoothing.values().to_vec(),
                drawn: self.label_smoothing.distribution(),
                integer: false,
                valid: |x| (0.0..1.0).contains(&x),
                rule: "label smoothing must be in [0, 1) (0.1 is usual)",
            },
        ]
    }
}

/// The largest value an integer axis takes, listed or drawn.
fn most(axis: &Axis<usize>) -> usize {
    axis.distribution().map_or_else(
        || axis.values().iter().copied().max().unwrap_or(0),
        |d| d.high as usize,
    )
}

/// The smallest value an integer axis takes, listed or drawn.
fn fewest(axis: &Axis<usize>) -> usize {
    axis.distribution().map_or_else(
        || axis.values().iter().copied().min().unwrap_or(0),
        |d| d.low as usize,
    )
}

/// A numeric axis as validation sees it.
pub(super) struct NumericAxis<'a> {
    /// Its key, as the error names it.
    pub(super) key: &'static str,
    /// The values listed (none for a distribution).
    pub(super) values: Vec<f64>,
    /// The distribution it is drawn from, in a search.
    pub(super) drawn: Option<&'a Distribution>,
    /// Whether it takes whole numbers.
    pub(super) integer: bool,
    /// Whether one value is allowed...
    pub(super) valid: fn(f64) -> bool,
    /// ...and the rule that says so.
    pub(super) rule: &'static str,
}

/// Checks a numeric axis: every listed value, or a distribution (allowed only when
/// `searching`) whose kind suits the axis and whose bounds both meet its rule.
pub(super) fn check_numeric_axis(problems: &mut Problems, searching: bool, axis: NumericAxis) {
    let NumericAxis {
        key,
        values,
        drawn,
        integer,
        valid,
        rule,
    } = axis;
    let Some(d) = drawn else {
        problems.check(
            !values.is_empty(),
            key,
            "[]".into(),
            "the grid is empty: give at least one value",
        );
        for x in values {
            problems.check(valid(x), key, x.to_string(), rule);
        }
        return;
    };
    let shown = format!("{{ {} = [{}, {}] }}", d.kind.as_str(), d.low, d.high);
    problems.check(
        searching,
        key,
        shown.clone(),
        "a distribution needs a searching sampler: set [sweep] sampler = \"random\" or \
         \"tpe\" (with trials = N), or list values for the grid",
    );
    if let Some(problem) = d.problem() {
        problems.check(false, key, shown, &problem);
    } else if integer && !d.kind.is_int() {
        problems.check(
            false,
            key,
            shown,
            "takes whole numbers: use int_uniform or int_log_uniform",
        );
    } else if !integer && d.kind.is_int() {
        problems.check(
            false,
            key,
            shown,
            "takes real numbers: use uniform or log_uniform",
        );
    } else {
        problems.check(
            valid(d.low) && valid(d.high),
            key,
            shown,
            &format!("both bounds: {rule}"),
        );
    }
}
