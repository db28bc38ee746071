//! Training one trial: the epoch loop, evaluation and checkpoints. It reports through
//! [`TrainEvent`]s and never touches storage.

mod checkpoint;
mod events;
mod metrics;
mod optim;
mod schedule;

pub use checkpoint::{
    ResumeState, Unresumable, dropped_kinds, file_sha256, read_resume_state, tidy_final,
};
pub use events::{BatchPosition, CheckpointInfo, CheckpointKind, TrainEvent, TrialEnd};
pub use metrics::{Confusion, EpochMetrics, Evaluation};
pub use schedule::LrSchedule;

use crate::data::{Augmentation, Dataset, ImageSet, PixelScale, Split, gather};
use crate::error::{Error, Result};
use crate::experiment::{Metric, TrialSpec};
use crate::model::Net;
use crate::rng::{Rng, Stream};
use crate::search::Verdict;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How often training reports progress within an epoch.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

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

/// Trains the trial to its end, sending events to `emit`; the last event is always `Finished`.
pub fn run_trial(run: &TrialRun, emit: &(dyn Fn(TrainEvent) + Sync)) -> TrialEnd {
    let started = Instant::now();
    emit(TrainEvent::Started {
        trial: run.id,
        device: run.device_name.clone(),
        threads: run.threads,
    });
    let end = train(run, emit).unwrap_or_else(|e| TrialEnd::Failed {
        message: e.to_string(),
    });
    emit(TrainEvent::Finished {
        trial: run.id,
        end: end.clone(),
        seconds: started.elapsed().as_secs_f64(),
    });
    end
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

fn train(run: &TrialRun, emit: &(dyn Fn(TrainEvent) + Sync)) -> Result<TrialEnd> {
    let spec = run.spec;
    let data = TrialData::new(spec, run.data)?;
    let device = run.device.clone().autodiff();
    let fresh = Net::new(
        spec,
        &device,
        Rng::for_stream(spec.seed, Stream::Init).next_u64(),
    );
    // Validation and test losses stay plain cross-entropy, comparable across trials.
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let train_loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((spec.label_smoothing > 0.0).then_some(spec.label_smoothing as f32))
        .init(&device);
    let augmentation = Augmentation {
        kind: spec.augment,
        padding: spec.crop_padding.unwrap_or(0),
        fill: data.table[0],
    };
    let mut shuffle = Rng::for_stream(spec.seed, Stream::Shuffle);
    let mut order = data.split.train.clone();
    let schedule = LrSchedule::new(spec, order.len().div_ceil(spec.batch_size));
    std::fs::create_dir_all(&run.dir).map_err(|e| Error::io(&run.dir, e))?;
    // A process stopped since its claim may have lost the trial: its files are the new holder's.
    if run.lost.load(Ordering::Relaxed) || !(run.holds)() {
        return Ok(TrialEnd::Lost);
    }

    let (mut model, mut optimizer, mut dropout, mut augment_rng, mut state) = match &run.resume {
        Some(state) => {
            let cannot_resume = |e| {
                Error::Train(format!(
                    "cannot resume from {dir}: {e} (delete {dir}/state.json to train the trial \
                     from its first epoch)",
                    dir = run.dir.display()
                ))
            };
            let model = fresh
                .try_load_file(checkpoint::model_path(&run.dir))
                .map_err(cannot_resume)?;
            let optimizer = optim::build(spec)
                .load(checkpoint::optimizer_path(&run.dir))
                .map_err(cannot_resume)?;
            // Each epoch shuffles the previous epoch's order: replay them to stand where the
            // interrupted run stood.
            for _ in 0..state.epoch {
                shuffle.shuffle(&mut order);
            }
            (
                model,
                optimizer,
                Rng::new(state.dropout),
                state
                    .augment
                    .map_or_else(|| Rng::for_stream(spec.seed, Stream::Augment), Rng::new),
                state.clone(),
            )
        }
        None => {
            checkpoint::clear(&run.dir)?;
            let dropout = Rng::for_stream(spec.seed, Stream::Dropout);
            let state = ResumeState {
                epoch: 0,
                dropout: 0,
                augment: None,
                best: None,
                history: Vec::new(),
                checkpoints: Vec::new(),
                optimizer_sha256: String::new(),
            };
            (
                fresh,
                optim::build(spec),
                dropout,
                Rng::for_stream(spec.seed, Stream::Augment),
                state,
            )
        }
    };
    for epoch in state.epoch + 1..=spec.epochs {
        let epoch_start = Instant::now();
        shuffle.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0usize);
        let batches = order.len().div_ceil(spec.batch_size);
        let mut reported = Instant::now();
        for (index, chunk) in order.chunks(spec.batch_size).enumerate() {
            if run.lost.load(Ordering::Relaxed) {
                return Ok(TrialEnd::Lost);
            }
            if run.stop.load(Ordering::Relaxed) {
                return Ok(TrialEnd::Interrupted);
            }
            let (images, labels) = training_batch(
                &data.pool,
                chunk,
                &data.table,
                (&augmentation, &mut augment_rng),
                &device,
            );
            let logits = model.forward(images, Some(&mut dropout));
            let loss = train_loss_fn.forward(logits.clone(), labels.clone());
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            if !loss_value.is_finite() {
                return Ok(TrialEnd::Diverged {
                    message: format!(
                        "training loss became {loss_value} at epoch {epoch}, batch {}",
                        index + 1
                    ),
                });
            }
            correct += count_correct(logits, labels);
            loss_sum += loss_value * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(schedule.at(schedule.step_of(epoch, index)), model, grads);
            seen += chunk.len();
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                emit(TrainEvent::Progress {
                    trial: run.id,
                    position: BatchPosition {
                        epoch,
                        epochs: spec.epochs,
                        batch: index + 1,
                        batches,
                        loss: loss_sum / seen as f64,
                        images_per_s: seen as f64 / epoch_start.elapsed().as_secs_f64(),
                    },
                });
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let val = evaluate(&model, &data.pool, &data.split.val, &data.table, &loss_fn);
        let seen = seen as f64;
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen,
            train_acc: correct as f64 / seen,
            val_loss: val.loss,
            val_acc: val.accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
            train_seconds,
        };
        if !val.loss.is_finite() {
            emit(TrainEvent::Epoch {
                trial: run.id,
                metrics,
                checkpoints: Vec::new(),
            });
            return Ok(TrialEnd::Diverged {
                message: format!("validation loss became {} at epoch {epoch}", val.loss),
            });
        }
        let value = match run.metric {
            Metric::ValAcc => metrics.val_acc,
            Metric::ValLoss => metrics.val_loss,
        };
        let improved = run.metric.improves(value, state.best.map(|b| b.0));
        state.epoch = epoch;
        state.dropout = dropout.state();
        state.augment = Some(augment_rng.state());
        state.history.push(metrics);
        if improved {
            state.best = Some((value, epoch));
        }
        if run.lost.load(Ordering::Relaxed) || !(run.holds)() {
            return Ok(TrialEnd::Lost);
        }
        // Files first, then the epoch's rows: the files are the log the database catches up
        // from after a kill between the two.
        state = checkpoint::commit_epoch(
            &run.dir,
            checkpoint::EpochCommit {
                model: &model,
                optimizer: &optimizer,
                state,
                improved,
            },
        )?;
        crate::fault::kill_point("before-event", epoch);
        emit(TrainEvent::Epoch {
            trial: run.id,
            metrics,
            checkpoints: state
                .checkpoints
                .iter()
                .filter(|c| c.epoch == epoch)
                .cloned()
                .collect(),
        });
        let curve: Vec<f64> = state
            .history
            .iter()
            .map(|m| match run.metric {
                Metric::ValAcc => m.val_acc,
                Metric::ValLoss => m.val_loss,
            })
            .collect();
        let best_epoch = state.best.map_or(epoch, |b| b.1);
        match (run.judge)(&curve) {
            Verdict::Continue => {}
            Verdict::Prune => return Ok(TrialEnd::Pruned { best_epoch }),
            Verdict::Pause => return Ok(TrialEnd::Paused { best_epoch }),
        }
    }
    let all_test: Vec<u32> = (0..data.test.len() as u32).collect();
    let test = (!all_test.is_empty()).then(|| {
        Box::new(evaluate(
            &model,
            &data.test,
            &all_test,
            &data.table,
            &loss_fn,
        ))
    });
    Ok(TrialEnd::Done {
        test,
        best_epoch: state.best.map(|b| b.1).unwrap_or(spec.epochs),
    })
}

/// A training batch: the images at `indices`, augmented.
fn training_batch(
    set: &ImageSet,
    indices: &[u32],
    table: &[f32; 256],
    (augmentation, rng): (&Augmentation, &mut Rng),
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let (mut pixels, labels) = gather(set, indices, table);
    augmentation.apply(&mut pixels, set.rows, set.cols, rng);
    tensors(set, pixels, labels, device)
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

/// Evaluates `model` on the images at `indices` of `set`, with dropout off and no autodiff.
pub fn evaluate(
    model: &Net,
    set: &ImageSet,
    indices: &[u32],
    table: &[f32; 256],
    loss_fn: &CrossEntropyLoss,
) -> Evaluation {
    let model = model.valid();
    let device = model
        .devices()
        .into_iter()
        .next()
        .expect("a model has parameters")
        .without_autodiff();
    let mut confusion = Confusion::default();
    let mut predictions = Vec::with_capacity(indices.len());
    let mut loss_sum = 0f64;
    for chunk in indices.chunks(EVAL_BATCH) {
        let (images, labels) = batch_tensors(set, chunk, table, &device);
        let logits = model.forward(images, None);
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
    Ok(evaluate(&model, set, &indices, &data.table, &loss_fn))
}
