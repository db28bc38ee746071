//! The experiment file's shape: what each TOML section holds, with its built-in defaults.

use super::axis::Axis;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole experiment file after layering defaults, the file, `SWEEP_*` variables and `--set`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// `[sweep]`: naming, seeding and parallelism.
    #[serde(default)]
    pub sweep: SweepSection,
    /// `[data]`: where the images are and how they are split.
    #[serde(default)]
    pub data: DataSection,
    /// `[grid]`: the axes whose cartesian product gives the trials.
    #[serde(default)]
    pub grid: GridSection,
    /// `[arch.*]`: options of each architecture.
    #[serde(default)]
    pub arch: ArchOptions,
    /// `[optimizer.*]`: options of each optimizer.
    #[serde(default)]
    pub optimizer: OptimizerOptions,
    /// `[prune]`: early stopping of weak trials.
    #[serde(default)]
    pub prune: PruneSection,
    /// `[schedule.*]`: options of each learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleOptions,
}

/// `[schedule.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleOptions {
    /// `[schedule.step]`.
    pub step: StepOptions,
}

/// `[schedule.step]`: PyTorch's StepLR, stepped once per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepOptions {
    /// Epochs between two reductions.
    pub every: usize,
    /// Factor of each reduction.
    pub gamma: f64,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            every: 5,
            gamma: 0.5,
        }
    }
}

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

/// `[sweep]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSection {
    /// Name of the sweep in the database; defaults to the file's stem.
    pub name: Option<String>,
    /// Base seed; repeat `r` of every configuration trains with seed `seed + r`.
    pub seed: u64,
    /// How many seeds each configuration is trained with.
    pub repeats: u32,
    /// Trials trained at once.
    pub jobs: usize,
    /// CPU threads per trial; defaults to the cores divided by `jobs`.
    pub threads: Option<usize>,
    /// The metric that picks the best epoch and the best trial.
    pub metric: Metric,
    /// Where trials run: `cpu` (burn flex), `tch-cpu` (libtorch CPU) or `cuda:N`.
    pub devices: Vec<DeviceName>,
    /// Trials sharing each GPU at once (small models leave a GPU mostly idle).
    pub trials_per_gpu: usize,
    /// How trials are chosen: every grid point, or drawn by a searching sampler.
    pub sampler: SamplerName,
    /// Configurations a searching sampler draws in all, across every process sharing the
    /// database (each runs `repeats` times).
    pub trials: Option<usize>,
    /// Which checkpoint files a trial keeps once it is final (done, diverged or pruned).
    pub keep: Keep,
    /// Seconds without a heartbeat after which another process (on another machine) takes a
    /// running trial over; the holder's later writes for it are refused.
    pub heartbeat_timeout: u64,
    /// Trials trained as one model: up to this many unfinished trials of one architecture,
    /// batch size and data split are advanced together by each slot (1: each alone).
    pub fuse: usize,
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            name: None,
            seed: 0,
            repeats: 1,
            jobs: 1,
            threads: None,
            metric: Metric::ValAcc,
            devices: vec![DeviceName::Cpu],
            trials_per_gpu: 1,
            sampler: SamplerName::Grid,
            trials: None,
            keep: Keep::Best,
            heartbeat_timeout: 60,
            fuse: 1,
        }
    }
}

/// Which checkpoints a final trial keeps. Whatever it keeps, the files only resumption needs
/// (optimizer state, resume state) go once the trial cannot run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The model of the best epoch, which `predict` uses.
    Best,
    /// The model of the last epoch.
    Last,
    /// Both.
    Both,
    /// No model file: the trial's directory goes.
    None,
}

impl Keep {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Best => "best",
            Keep::Last => "last",
            Keep::Both => "both",
            Keep::None => "none",
        }
    }

    /// Whether the best epoch's model stays.
    pub fn best(self) -> bool {
        matches!(self, Keep::Best | Keep::Both)
    }

    /// Whether the last epoch's model stays.
    pub fn last(self) -> bool {
        matches!(self, Keep::Last | Keep::Both)
    }
}

/// How a sweep chooses its trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerName {
    /// Every combination of the listed values.
    Grid,
    /// Independent random draws.
    Random,
    /// Tree-structured Parzen Estimator (Optuna's defaults).
    Tpe,
}

impl SamplerName {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerName::Grid => "grid",
            SamplerName::Random => "random",
            SamplerName::Tpe => "tpe",
        }
    }
}

/// `[prune]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneSection {
    /// Which early stopping rule, if any.
    pub method: PruneMethod,
    /// asha: the first rung; median: epochs a trial trains before it may be pruned.
    pub min_epochs: usize,
    /// asha: the top 1/reduction_factor at each rung go on.
    pub reduction_factor: usize,
    /// median: trials that must finish before pruning starts.
    pub startup_trials: usize,
}

impl Default for PruneSection {
    fn default() -> Self {
        PruneSection {
            method: PruneMethod::None,
            min_epochs: 1,
            reduction_factor: 3,
            startup_trials: 5,
        }
    }
}

/// Early-stopping rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// Every trial trains all its epochs.
    None,
    /// Stop a trial worse than the median of finished trials at the same epoch.
    Median,
    /// Asynchronous successive halving: pause at rungs, promote the best.
    Asha,
}

impl PruneMethod {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            PruneMethod::None => "none",
            PruneMethod::Median => "median",
            PruneMethod::Asha => "asha",
        }
    }
}

/// A device named in `[sweep] devices` or `--devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceName {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// libtorch on the CPU (needs the `tch` build).
    TchCpu,
    /// libtorch on CUDA GPU N (needs the `tch` build and that GPU).
    Cuda(usize),
}

impl DeviceName {
    /// Whether it computes on the CPU cores (and so takes CPU job slots).
    pub fn is_cpu(self) -> bool {
        !matches!(self, DeviceName::Cuda(_))
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::TchCpu => f.write_str("tch-cpu"),
            DeviceName::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceName {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceName::Cpu),
            "tch-cpu" => Ok(DeviceName::TchCpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceName::Cuda)
                .ok_or_else(|| {
                    format!("unknown device {s:?}: use cpu, tch-cpu or cuda:N (e.g. cuda:0)")
                }),
        }
    }
}

impl TryFrom<String> for DeviceName {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceName> for String {
    fn from(d: DeviceName) -> String {
        d.to_string()
    }
}

/// A metric to optimise, with its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Validation accuracy, higher is better.
    ValAcc,
    /// Validation loss, lower is better.
    ValLoss,
}

impl Metric {
    /// The column/key name of the metric.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValAcc => "val_acc",
            Metric::ValLoss => "val_loss",
        }
    }

    /// Whether `candidate` is better than `incumbent` under this metric.
    pub fn improves(self, candidate: f64, incumbent: Option<f64>) -> bool {
        match incumbent {
            None => !candidate.is_nan(),
            Some(best) => match self {
                Metric::ValAcc => candidate > best,
                Metric::ValLoss => candidate < best,
            },
        }
    }
}

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
        }
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

/// `[arch.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ArchOptions {
    /// `[arch.mlp]`.
    pub mlp: MlpOptions,
    /// `[arch.cnn]`.
    pub cnn: CnnOptions,
    /// `[arch.resnet]`.
    pub resnet: ResnetOptions,
    /// `[arch.convnet]`.
    pub convnet: ConvnetOptions,
    /// `[arch.lenet5]` has no options; the table may still be present.
    pub lenet5: NoOptions,
}

/// `[arch.mlp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpOptions {
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
}

impl Default for MlpOptions {
    fn default() -> Self {
        MlpOptions {
            hidden: vec![256, 128, 64],
        }
    }
}

/// `[arch.cnn]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnOptions {
    /// Output channels of the two conv layers.
    pub channels: [usize; 2],
    /// Widths of the two hidden linear layers.
    pub hidden: [usize; 2],
}

impl Default for CnnOptions {
    fn default() -> Self {
        CnnOptions {
            channels: [32, 64],
            hidden: [256, 128],
        }
    }
}

/// `[arch.convnet]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvnetOptions {
    /// Output channels of the two conv layers.
    pub channels: [usize; 2],
}

impl Default for ConvnetOptions {
    fn default() -> Self {
        ConvnetOptions { channels: [16, 32] }
    }
}

/// `[arch.resnet]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResnetOptions {
    /// Channels of each stage; every stage after the first halves the image size.
    pub channels: Vec<usize>,
    /// Basic blocks (two 3x3 convolutions and a shortcut) per stage.
    pub blocks: usize,
}

impl Default for ResnetOptions {
    fn default() -> Self {
        ResnetOptions {
            channels: vec![16, 32, 64],
            blocks: 2,
        }
    }
}

/// An options table that takes no keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// `[optimizer.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerOptions {
    /// `[optimizer.sgd]`.
    pub sgd: SgdOptions,
    /// `[optimizer.adam]`.
    pub adam: AdamOptions,
    /// `[optimizer.adamw]`.
    pub adamw: AdamOptions,
}

/// `[optimizer.sgd]`, PyTorch's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SgdOptions {
    /// Momentum factor; 0 is plain SGD.
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0).
    pub nesterov: bool,
}

/// `[optimizer.adam]` and `[optimizer.adamw]`, PyTorch's defaults (epsilon 1e-8, not burn's 1e-5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamOptions {
    /// Decay rates of the first and second moment estimates.
    pub betas: [f64; 2],
    /// Term added to the denominator for numerical stability.
    pub eps: f64,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            betas: [0.9, 0.999],
            eps: 1e-8,
        }
    }
}
