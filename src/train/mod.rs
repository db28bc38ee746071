//! Training one trial: the epoch loop, evaluation and checkpoints. It reports through
//! [`TrainEvent`]s and never touches storage.

mod awake;
mod checkpoint;
mod events;
mod learner;
mod member_copy;
mod metrics;
mod one_pass;
mod optim;
mod schedule;

pub use checkpoint::{
    ResumeState, Unresumable, dropped_kinds, file_sha256, read_resume_state, tidy_final,
    verify_checkpoint,
};
pub use events::{BatchPosition, CheckpointInfo, CheckpointKind, TrainEvent, TrialEnd};
pub use member_copy::copy_member;
pub use metrics::{Confusion, EpochMetrics, Evaluation};
pub use schedule::LrSchedule;

use crate::data::{Dataset, ImageSet, PixelScale, Split, gather};
use crate::error::{Error, Result};
use crate::experiment::{Metric, TrialSpec};
use crate::model::{Net, fused};
use crate::rng::Rng;
use crate::search::Verdict;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use learner::Learner;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Images per forward pass when evaluating: on flex, 256 evaluated the CNNs 15-25% faster than
/// 1,000 (smaller intermediates stay in cache) and halved the peak memory of the CNN's test pass.
const EVAL_BATCH: usize = 256;

/// Everything one trial needs to train.
pub struct TrialRun<'a> {
    /// Database id, carried in events.
    pub id: i64,
    /// The parameters.
    pub spec: &'a TrialSpec,
    /// The loaded data set.
    pub data: &'a Dataset,
    /// The compute device, without autodiff (it is switched on here).
    pub device: Device,
    /// The device's user-facing name.
    pub device_name: String,
    /// Compute threads the trial was given.
    pub threads: usize,
    /// Directory for this trial's checkpoints.
    pub dir: PathBuf,
    /// Metric that picks the best epoch.
    pub metric: Metric,
    /// Whether to time evaluation at batch 1 (the sweep optimises `latency_ms`).
    pub measure_latency: bool,
    /// Keep the files of every epoch that is a multiple of this (before the last) as a
    /// snapshot other members may copy (population-based training's interval).
    pub snapshot_every: Option<usize>,
    /// Set when the run should stop early.
    pub stop: &'a AtomicBool,
    /// Set when another process took this trial over: training it further would be wasted.
    pub lost: &'a AtomicBool,
    /// Asked before the trial's files are first touched and before each epoch's files are
    /// written: whether this process still holds the trial (another may have taken it over and
    /// be writing the same directory).
    pub holds: &'a (dyn Fn() -> bool + Sync),
    /// Where to continue from, when an earlier run of this trial was cut off or paused.
    pub resume: Option<ResumeState>,
    /// Asked after every committed epoch, with the metric of every epoch so far, whether the
    /// trial goes on (early stopping).
    pub judge: &'a (dyn Fn(&[f64]) -> Verdict + Sync),
}

/// Trains `runs` (one trial, or several fused) to their ends, each with its events exactly as
/// if it trained alone; each trial's last event is its `Finished`, sent as soon as it ends.
/// Several runs must share a
/// [`crate::model::fused::fuse_key`] and a device: each batch is one forward and backward pass
/// of their models fused ([`crate::model::fused`]), after which each trial's own optimizer
/// steps its own model. A trial that ends (diverges, is pruned, lost, fails) leaves the group;
/// the others go on. Returns the ends in the order of `runs`.
pub fn run_group(runs: &[TrialRun], emit: &(dyn Fn(TrainEvent) + Sync)) -> Vec<TrialEnd> {
    let started = Instant::now();
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    for run in runs {
        emit(TrainEvent::Started {
            trial: run.id,
            device: run.device_name.clone(),
            threads: run.threads,
            fused_with: ids.iter().copied().filter(|&id| id != run.id).collect(),
        });
    }
    let mut ends = Ends {
        ends: vec![None; runs.len()],
        ids,
        started,
        emit,
    };
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let device = first.device.clone().autodiff();
    let mut learners = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let started = Learner::start(run, &device);
        if let Ok(Some(learner)) = &started {
            emit(learner.measured());
        }
        match started {
            // Resumed after its last epoch's files: only its test is missing.
            Ok(Some(learner)) if learner.state.epoch >= run.spec.epochs => {
                ends.finish(index, learner.done())
            }
            Ok(Some(learner)) => learners.push((index, learner)),
            Ok(None) => ends.finish(index, TrialEnd::Lost),
            Err(e) => ends.finish(index, failed(run, e)),
        }
    }
    let first_epoch = learners.iter().map(|(_, l)| l.state.epoch + 1).min();
    let last_epoch = learners.iter().map(|(_, l)| l.run.spec.epochs).max();
    for epoch in first_epoch.unwrap_or(1)..=last_epoch.unwrap_or(0) {
        // Members resumed from different epochs join once the group reaches theirs.
        let mut active: Vec<&mut (usize, Learner)> = learners
            .iter_mut()
            .filter(|(index, l)| !ends.over(*index) && l.trains(epoch))
            .collect();
        let batches = active
            .iter_mut()
            .map(|(_, l)| l.begin_epoch(epoch))
            .max()
            .unwrap_or(0);
        let mut train_batches = || {
            for index in 0..batches {
                active.retain(|(i, l)| match l.interrupted() {
                    Some(end) => {
                        ends.finish(*i, end);
                        false
                    }
                    None => true,
                });
                if active.is_empty() {
                    break;
                }
                for (i, end) in train_batch(&mut active, (epoch, index), &device, emit) {
                    ends.finish(i, end);
                }
                active.retain(|(i, _)| !ends.over(*i));
            }
        };
        // Other backends run their own threads, which waiting ones would slow.
        if crate::kernels::is_flex(&device) {
            awake::with_threads_awake(train_batches);
        } else {
            train_batches();
        }
        let ended: Vec<(usize, Result<Option<TrialEnd>>)> = active
            .into_par_iter()
            .with_min_len(members_per_thread(&device))
            .map(|(i, learner)| (*i, learner.end_epoch(epoch, emit)))
            .collect();
        for (i, end) in ended {
            match end {
                Ok(None) => {}
                Ok(Some(end)) => ends.finish(i, end),
                Err(e) => ends.finish(i, failed(&runs[i], e)),
            }
        }
    }
    for index in 0..runs.len() {
        if !ends.over(index) {
            // Not reached by the loop above; reported rather than left running.
            ends.finish(index, TrialEnd::Interrupted);
        }
    }
    ends.ends.into_iter().flatten().collect()
}

/// The end of a trial that met `error`. On a full disk the run also stops taking trials (each
/// would fail the same way, and a failed trial is retried only by the next run), and the message
/// says how to go on.
fn failed(run: &TrialRun, error: Error) -> TrialEnd {
    let message = error.to_string();
    if !crate::error::is_disk_full(&message) {
        return TrialEnd::Failed { message };
    }
    run.stop.store(true, Ordering::SeqCst);
    TrialEnd::Failed {
        message: format!("{message} ({})", crate::error::DISK_FULL_FIX),
    }
}

/// The ends of a group's trials, each reported the moment it is known.
struct Ends<'e> {
    ends: Vec<Option<TrialEnd>>,
    ids: Vec<i64>,
    started: Instant,
    emit: &'e (dyn Fn(TrainEvent) + Sync),
}

impl Ends<'_> {
    fn finish(&mut self, index: usize, end: TrialEnd) {
        (self.emit)(TrainEvent::Finished {
            trial: self.ids[index],
            end: end.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
        });
        self.ends[index] = Some(end);
    }

    fn over(&self, index: usize) -> bool {
        self.ends[index].is_some()
    }
}

/// How many of a group's members one of the slot's threads takes on at once for their own work
/// (batches, optimizer steps, validation and tests). On flex, one each: flex runs every
/// elementwise operation on one thread, so members stepped one after another leave the slot's
/// other threads idle. On libtorch, all of them: each of its operations already runs on all of
/// the threads, and members side by side would oversubscribe the cores.
fn members_per_thread(device: &Device) -> usize {
    if crate::kernels::is_flex(device) {
        1
    } else {
        usize::MAX
    }
}

/// One training batch of every active learner: the forward pass (fused when there are several),
/// each trial's loss and figures, one backward pass, each trial's optimizer step. Returns the
/// trials that diverged on it, which take no step.
fn train_batch(
    active: &mut [&mut (usize, Learner)],
    (epoch, index): (usize, usize),
    device: &Device,
    emit: &(dyn Fn(TrainEvent) + Sync),
) -> Vec<(usize, TrialEnd)> {
    let batches: Vec<(Tensor<4>, Tensor<1, Int>)> = active
        .par_iter_mut()
        .with_min_len(members_per_thread(device))
        .map(|(_, l)| l.batch(index, device))
        .collect();
    let (logits, correct): (Vec<Tensor<2>>, Vec<i64>) = if let [(_, learner)] = active {
        let (images, labels) = batches[0].clone();
        let (model, dropout) = learner.forward_parts();
        let logits = model.forward(images, Some(dropout));
        let correct = count_correct(logits.clone(), labels);
        (vec![logits], vec![correct])
    } else {
        let (nets, mut dropouts): (Vec<&Net>, Vec<&mut Rng>) =
            active.iter_mut().map(|(_, l)| l.forward_parts()).unzip();
        let images = batches.iter().map(|(images, _)| images.clone()).collect();
        let fused = fused::forward(&nets, images, &mut dropouts);
        let labels = Tensor::stack::<2>(batches.iter().map(|(_, l)| l.clone()).collect(), 0);
        let correct = fused
            .clone()
            .argmax(2)
            .squeeze_dim::<2>(2)
            .equal(labels)
            .int()
            .sum_dim(1)
            .into_data()
            .iter::<i64>()
            .collect();
        let logits = (0..nets.len())
            .map(|k| fused.clone().narrow(0, k, 1).squeeze_dim::<2>(0))
            .collect();
        (logits, correct)
    };
    let losses: Vec<Tensor<1>> = active
        .iter()
        .zip(logits)
        .zip(&batches)
        .map(|(((_, l), logits), (_, labels))| l.train_loss_fn.forward(logits, labels.clone()))
        .collect();
    let values: Vec<f64> = if losses.len() == 1 {
        vec![losses[0].clone().into_scalar::<f32>() as f64]
    } else {
        Tensor::cat(losses.clone(), 0)
            .into_data()
            .iter::<f32>()
            .map(f64::from)
            .collect()
    };
    let mut diverged = Vec::new();
    let mut total: Option<Tensor<1>> = None;
    for (k, loss) in losses.into_iter().enumerate() {
        let (i, learner) = &mut *active[k];
        let images = batches[k].1.dims()[0];
        match learner.record_batch((epoch, index), (values[k], correct[k], images), emit) {
            Some(end) => diverged.push((*i, end)),
            None => total = Some(total.map_or(loss.clone(), |t| t + loss)),
        }
    }
    if let Some(total) = total {
        let steps = |(i, _): &&mut &mut (usize, Learner)| !diverged.iter().any(|(d, _)| d == i);
        // The next batches are gathered meanwhile, on a thread the backward pass leaves idle
        // between its operations.
        let (mut grads, ()) = rayon::join(
            || total.backward(),
            || {
                active
                    .iter_mut()
                    .filter(steps)
                    .for_each(|(_, learner)| learner.gather_ahead(index));
            },
        );
        let stepping: Vec<(&mut Learner, GradientsParams)> = active
            .iter_mut()
            .filter(steps)
            .map(|(_, learner)| {
                let own = learner.own_grads(&mut grads);
                (learner, own)
            })
            .collect();
        stepping
            .into_par_iter()
            .with_min_len(members_per_thread(device))
            .for_each(|(learner, own)| learner.step(own, (epoch, index)));
    }
    diverged
}

/// The training and test sets a trial sees, after `limit`, `test_limit` and its split.
pub struct TrialData {
    /// The (possibly truncated) training set, train and validation images together.
    pub pool: ImageSet,
    /// The (possibly truncated) test set.
    pub test: ImageSet,
    /// Which pool images train and which validate.
    pub split: Split,
    /// Byte-to-input table.
    pub table: [f32; 256],
}

impl TrialData {
    /// Applies the trial's data parameters to the data set.
    pub fn new(spec: &TrialSpec, data: &Dataset) -> Result<Self> {
        let pool = match spec.limit {
            Some(n) => data.train.truncated(n),
            None => data.train.clone(),
        };
        let test = match spec.test_limit {
            Some(n) => data.test.truncated(n),
            None => data.test.clone(),
        };
        let split = Split::new(pool.len(), spec.split, spec.seed)?;
        let scale = if spec.normalize {
            PixelScale::standardizing(&pool, &split.train)
        } else {
            PixelScale::UNIT
        };
        Ok(TrialData {
            table: scale.table(),
            pool,
            test,
            split,
        })
    }
}

fn batch_tensors(
    set: &ImageSet,
    indices: &[u32],
    table: &[f32; 256],
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let (pixels, labels) = gather(set, indices, table);
    tensors(set, pixels, labels, device)
}

/// Tensors of gathered pixels and labels.
fn tensors(
    set: &ImageSet,
    pixels: Vec<f32>,
    labels: Vec<i64>,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let n = labels.len();
    let images =
        Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, set.rows, set.cols]), device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    (images, labels)
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> i64 {
    logits
        .argmax(1)
        .flatten::<1>(0, 1)
        .equal(labels)
        .int()
        .sum()
        .into_scalar::<i64>()
}

/// `model` with dropout off and no autodiff, and the device it is on.
fn for_evaluation(model: &Net) -> (Net, Device) {
    let model = model.valid();
    let device = model
        .devices()
        .into_iter()
        .next()
        .expect("a model has parameters")
        .without_autodiff();
    (model, device)
}

/// Images timed one at a time for `latency_ms`, after as many untimed ones to warm caches.
const LATENCY_IMAGES: usize = 50;

/// Milliseconds per image when `model` evaluates the images at `indices` of `set` one at a
/// time (the first ones untimed, to warm caches and allocators).
pub fn latency_ms(model: &Net, set: &ImageSet, indices: &[u32], table: &[f32; 256]) -> f64 {
    let (model, device) = for_evaluation(model);
    let images = &indices[..LATENCY_IMAGES.min(indices.len())];
    let one = |i: &u32| {
        let (image, _) = batch_tensors(set, std::slice::from_ref(i), table, &device);
        // Reading the prediction back waits for the device to finish.
        let _ = model.forward(image, None).argmax(1).into_data();
    };
    images.iter().for_each(one);
    let start = Instant::now();
    images.iter().for_each(one);
    1000.0 * start.elapsed().as_secs_f64() / images.len() as f64
}

/// Evaluates `model` on the images at `indices` of `set`, with dropout off and no autodiff.
pub fn evaluate(
    model: &Net,
    set: &ImageSet,
    indices: &[u32],
    table: &[f32; 256],
    loss_fn: &CrossEntropyLoss,
    flip: bool,
) -> Evaluation {
    let (model, device) = for_evaluation(model);
    let mut confusion = Confusion::default();
    let mut predictions = Vec::with_capacity(indices.len());
    let mut loss_sum = 0f64;
    for chunk in indices.chunks(EVAL_BATCH) {
        let (images, labels) = batch_tensors(set, chunk, table, &device);
        let logits = if flip {
            // Images are [batch, 1, rows, columns]: mirroring reverses the columns.
            let mirrored = model.forward(images.clone().flip([3]), None);
            (model.forward(images, None) + mirrored) / 2.0
        } else {
            model.forward(images, None)
        };
        loss_sum += loss_fn.forward(logits.clone(), labels).into_scalar::<f32>() as f64
            * chunk.len() as f64;
        let predicted: Vec<i64> = logits
            .argmax(1)
            .flatten::<1>(0, 1)
            .into_data()
            .iter::<i64>()
            .collect();
        for (&i, &p) in chunk.iter().zip(&predicted) {
            confusion.add(set.labels[i as usize] as usize, p as usize);
            predictions.push(p as u8);
        }
    }
    Evaluation {
        loss: loss_sum / indices.len().max(1) as f64,
        accuracy: confusion.accuracy(),
        confusion,
        predictions,
    }
}

/// Which images `predict` classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictSplit {
    /// The whole test set, whatever `test_limit` the trial was tested with.
    Test,
    /// The trial's validation images.
    Val,
}

impl PredictSplit {
    /// The name users give it.
    pub fn as_str(self) -> &'static str {
        match self {
            PredictSplit::Test => "test",
            PredictSplit::Val => "validation",
        }
    }
}

/// Loads a trial's checkpoint and classifies the chosen images with it (the first `limit` of
/// them, when given): the predictions (in data-set order) with loss, accuracy and confusion
/// against the labels.
pub fn predict(
    spec: &TrialSpec,
    checkpoint: &Path,
    dataset: &Dataset,
    split: PredictSplit,
    limit: Option<usize>,
) -> Result<Evaluation> {
    // The trial's `test_limit` kept its sweep fast; a prediction is about the model, so it sees
    // the whole test set unless told otherwise.
    let spec = &TrialSpec {
        test_limit: None,
        ..spec.clone()
    };
    let data = TrialData::new(spec, dataset)?;
    let device = Device::flex();
    let model = Net::new(spec, &device, 0)
        .try_load_file(checkpoint)
        .map_err(|e| {
            Error::Train(format!(
                "cannot load checkpoint {}: {e} (it does not fit this trial's model)",
                checkpoint.display()
            ))
        })?;
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (set, mut indices) = match split {
        PredictSplit::Test => (&data.test, (0..data.test.len() as u32).collect()),
        PredictSplit::Val => (&data.pool, data.split.val.clone()),
    };
    if let Some(n) = limit {
        indices.truncate(n);
    }
    Ok(evaluate(
        &model,
        set,
        &indices,
        &data.table,
        &loss_fn,
        spec.eval_flip,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Augment, ExperimentSpec, expand};

    /// Batches gathered ahead, while the one before trains, are the batches gathered in turn:
    /// the same images, augmented with the same draws, and the same labels.
    #[test]
    fn batches_gathered_ahead_equal_batches_gathered_in_turn() {
        let mut spec = expand(&ExperimentSpec::default()).remove(0);
        (spec.augment, spec.crop_padding, spec.batch_size) = (Augment::FlipCrop, Some(2), 7);
        let mut rng = Rng::new(4);
        let mut images = |count: usize| ImageSet {
            pixels: (0..count * 28 * 28).map(|_| rng.below(256) as u8).collect(),
            labels: (0..count).map(|k| (k % 10) as u8).collect(),
            rows: 28,
            cols: 28,
        };
        let data = Dataset {
            dir: PathBuf::new(),
            train: images(40),
            test: images(5),
        };
        let dir = tempfile::tempdir().unwrap();
        let (stop, lost) = (AtomicBool::new(false), AtomicBool::new(false));
        let run = TrialRun {
            id: 1,
            spec: &spec,
            data: &data,
            device: Device::flex(),
            device_name: "cpu".into(),
            threads: 1,
            dir: dir.path().join("trial"),
            metric: Metric::ValAcc,
            measure_latency: false,
            snapshot_every: None,
            stop: &stop,
            lost: &lost,
            holds: &|| true,
            resume: None,
            judge: &|_| Verdict::Continue,
        };
        let device = Device::flex().autodiff();
        let epoch = |ahead: bool| {
            let mut learner = Learner::start(&run, &device).unwrap().unwrap();
            let batches = learner.begin_epoch(1);
            assert!(batches > 2, "several batches, the last one short");
            (0..batches)
                .flat_map(|index| {
                    let (images, labels) = learner.batch(index, &device);
                    if ahead {
                        learner.gather_ahead(index);
                    }
                    let mut values: Vec<f32> = images.into_data().iter::<f32>().collect();
                    values.extend(labels.into_data().iter::<i64>().map(|l| l as f32));
                    values
                })
                .collect::<Vec<f32>>()
        };
        assert_eq!(epoch(true), epoch(false));
    }

    #[test]
    fn mirroring_an_image_reverses_each_of_its_rows() {
        let device = Device::flex();
        let image = Tensor::<4>::from_floats([[[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]], &device);
        let mirrored: Vec<f32> = image.flip([3]).into_data().iter::<f32>().collect();
        assert_eq!(mirrored, [2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    }
}
