//! One trial's training in progress: its model, optimizer, generators and running figures, and
//! what happens at the end of each of its epochs (evaluation, checkpoint commit, early
//! stopping). The epoch loop in the parent module advances one learner or several fused ones.

use super::checkpoint::{self, ResumeState};
use super::events::{BatchPosition, TrainEvent, TrialEnd};
use super::metrics::EpochMetrics;
use super::schedule::LrSchedule;
use super::{TrialData, TrialRun, evaluate, optim, tensors};
use crate::data::{Augmentation, gather};
use crate::error::{Error, Result};
use crate::experiment::Metric;
use crate::model::Net;
use crate::rng::{Rng, Stream};
use crate::search::Verdict;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Gradients;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// How often training reports progress within an epoch.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// One trial's training in progress.
pub(super) struct Learner<'r, 'a> {
    pub(super) run: &'r TrialRun<'a>,
    data: TrialData,
    /// `None` only while the optimizer owns it for a step.
    model: Option<Net>,
    optimizer: ModuleOptimizer,
    dropout: Rng,
    augment_rng: Rng,
    augmentation: Augmentation,
    shuffle: Rng,
    order: Vec<u32>,
    schedule: LrSchedule,
    /// Validation and test loss: plain cross-entropy, comparable across trials.
    loss_fn: CrossEntropyLoss,
    /// Training loss, with the trial's label smoothing.
    pub(super) train_loss_fn: CrossEntropyLoss,
    pub(super) state: ResumeState,
    tally: Tally,
    /// The next batch's images and labels (with its index), gathered while the current one
    /// trained.
    ahead: Option<(usize, Vec<f32>, Vec<i64>)>,
}

/// The training loss of `spec`: cross-entropy with its label smoothing.
fn train_loss(spec: &crate::experiment::TrialSpec, device: &Device) -> CrossEntropyLoss {
    CrossEntropyLossConfig::new()
        .with_smoothing((spec.label_smoothing > 0.0).then_some(spec.label_smoothing as f32))
        .init(device)
}

/// The current epoch's running figures.
struct Tally {
    start: Instant,
    reported: Instant,
    loss_sum: f64,
    correct: i64,
    seen: usize,
}

impl Tally {
    fn new() -> Self {
        Tally {
            start: Instant::now(),
            reported: Instant::now(),
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
        }
    }
}

impl<'r, 'a> Learner<'r, 'a> {
    /// Sets the trial up on `device` (with autodiff): fresh, or from its files when it resumes.
    /// `None` when the process no longer holds the trial.
    pub(super) fn start(run: &'r TrialRun<'a>, device: &Device) -> Result<Option<Self>> {
        let data = TrialData::new(run.spec, run.data)?;
        // The hyperparameters of the first epoch it trains now.
        let spec = &run
            .spec
            .at_epoch(run.resume.as_ref().map_or(1, |s| s.epoch + 1));
        let fresh = Net::new(
            spec,
            device,
            Rng::for_stream(spec.seed, Stream::Init).next_u64(),
        );
        let loss_fn = CrossEntropyLossConfig::new().init(device);
        let train_loss_fn = train_loss(spec, device);
        let augmentation = Augmentation {
            kind: spec.augment,
            padding: spec.crop_padding.unwrap_or(0),
            fill: data.table[0],
        };
        let mut shuffle = Rng::for_stream(spec.seed, Stream::Shuffle);
        let mut order = data.split.train.clone();
        let schedule = LrSchedule::new(spec, order.len().div_ceil(spec.batch_size));
        std::fs::create_dir_all(&run.dir).map_err(|e| Error::io(&run.dir, e))?;
        // A process stopped since its claim may have lost the trial: its files are the new
        // holder's.
        if run.lost.load(Ordering::Relaxed) || !(run.holds)() {
            return Ok(None);
        }
        let (model, optimizer, dropout, augment_rng, state) = match &run.resume {
            Some(state) => {
                let cannot_resume = |e| {
                    Error::Train(format!(
                        "cannot resume from {dir}: {e} (delete {dir}/state.json to train the \
                         trial from its first epoch)",
                        dir = run.dir.display()
                    ))
                };
                let model = fresh
                    .try_load_file(checkpoint::model_path(&run.dir))
                    .map_err(cannot_resume)?;
                let optimizer = optim::build(spec)
                    .load(checkpoint::optimizer_path(&run.dir))
                    .map_err(cannot_resume)?;
                // Each epoch shuffles the previous epoch's order: replay them to stand where
                // the interrupted run stood.
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
                let state = ResumeState {
                    epoch: 0,
                    dropout: 0,
                    augment: None,
                    best: None,
                    history: Vec::new(),
                    checkpoints: Vec::new(),
                    optimizer_sha256: String::new(),
                    copies: Vec::new(),
                };
                (
                    fresh,
                    optim::build(spec),
                    Rng::for_stream(spec.seed, Stream::Dropout),
                    Rng::for_stream(spec.seed, Stream::Augment),
                    state,
                )
            }
        };
        Ok(Some(Learner {
            run,
            data,
            model: Some(model),
            optimizer,
            dropout,
            augment_rng,
            augmentation,
            shuffle,
            order,
            schedule,
            loss_fn,
            train_loss_fn,
            state,
            tally: Tally::new(),
            ahead: None,
        }))
    }

    /// The model's size, and its evaluation time per image when the sweep asks for it
    /// (measured on the validation images; it depends on the architecture and the device,
    /// not on the weights, so measuring it before training gives the pruner it early).
    pub(super) fn measured(&self) -> TrainEvent {
        let model = self.model();
        TrainEvent::Measured {
            trial: self.run.id,
            params: model.num_params() as u64,
            latency_ms: (self.run.measure_latency && !self.data.split.val.is_empty()).then(|| {
                super::latency_ms(
                    model,
                    &self.data.pool,
                    &self.data.split.val,
                    &self.data.table,
                )
            }),
        }
    }

    /// The trial's model.
    pub(super) fn model(&self) -> &Net {
        self.model
            .as_ref()
            .expect("the optimizer hands the model back")
    }

    /// The model and the generator of its dropout masks, for a training forward pass.
    pub(super) fn forward_parts(&mut self) -> (&Net, &mut Rng) {
        let model = self
            .model
            .as_ref()
            .expect("the optimizer hands the model back");
        (model, &mut self.dropout)
    }

    /// Whether the trial trains `epoch` next.
    pub(super) fn trains(&self, epoch: usize) -> bool {
        self.state.epoch + 1 == epoch && epoch <= self.run.spec.epochs
    }

    /// Starts epoch `epoch`: its hyperparameters when they change there, its order of images
    /// and fresh figures. Returns its number of batches.
    pub(super) fn begin_epoch(&mut self, epoch: usize) -> usize {
        if self.run.spec.changes_at(epoch) {
            self.change_hyperparameters(epoch);
        }
        self.shuffle.shuffle(&mut self.order);
        self.tally = Tally::new();
        self.ahead = None;
        self.order.len().div_ceil(self.run.spec.batch_size)
    }

    /// Carries the model's weights and the optimizer's state over to the hyperparameters of
    /// epoch `epoch`: exactly what resuming from the files with them would build.
    fn change_hyperparameters(&mut self, epoch: usize) {
        let spec = &self.run.spec.at_epoch(epoch);
        let model = self
            .model
            .take()
            .expect("the optimizer hands the model back");
        let device = model.devices().remove(0);
        self.model = Some(Net::new(spec, &device, 0).load_record(model.into_record()));
        let optimizer = std::mem::replace(&mut self.optimizer, optim::build(spec));
        self.optimizer = optim::build(spec).load_record(optimizer.to_record());
        self.schedule = LrSchedule::new(spec, self.order.len().div_ceil(spec.batch_size));
        self.train_loss_fn = train_loss(spec, &device);
    }

    /// Why the trial must stop now, if it must: it was lost, or the run is stopping.
    pub(super) fn interrupted(&self) -> Option<TrialEnd> {
        if self.run.lost.load(Ordering::Relaxed) {
            Some(TrialEnd::Lost)
        } else if self.run.stop.load(Ordering::Relaxed) {
            Some(TrialEnd::Interrupted)
        } else {
            None
        }
    }

    /// Batch `index` of the current epoch: its images, augmented, and labels.
    pub(super) fn batch(&mut self, index: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let (pixels, labels) = match self.ahead.take() {
            Some((ahead, pixels, labels)) if ahead == index => (pixels, labels),
            _ => self.gather(index),
        };
        tensors(&self.data.pool, pixels, labels, device)
    }

    /// Gathers the batch after batch `index`, if the epoch has one, for [`Learner::batch`] to
    /// take: called while batch `index` trains, so that its gathering is off the training
    /// thread. The augmentation draws in the same order either way.
    pub(super) fn gather_ahead(&mut self, index: usize) {
        let next = index + 1;
        if next * self.run.spec.batch_size < self.order.len() {
            let (pixels, labels) = self.gather(next);
            self.ahead = Some((next, pixels, labels));
        }
    }

    fn gather(&mut self, index: usize) -> (Vec<f32>, Vec<i64>) {
        let size = self.run.spec.batch_size;
        let chunk = &self.order[index * size..((index + 1) * size).min(self.order.len())];
        let set = &self.data.pool;
        let (mut pixels, labels) = gather(set, chunk, &self.data.table);
        self.augmentation
            .apply(&mut pixels, set.rows, set.cols, &mut self.augment_rng);
        (pixels, labels)
    }

    /// Adds a batch's figures to the epoch's; ends the trial as diverged when its loss is not
    /// finite.
    pub(super) fn record_batch(
        &mut self,
        (epoch, index): (usize, usize),
        (loss, correct, images): (f64, i64, usize),
        emit: &(dyn Fn(TrainEvent) + Sync),
    ) -> Option<TrialEnd> {
        if !loss.is_finite() {
            return Some(TrialEnd::Diverged {
                message: format!(
                    "training loss became {loss} at epoch {epoch}, batch {}",
                    index + 1
                ),
            });
        }
        let tally = &mut self.tally;
        tally.correct += correct;
        tally.loss_sum += loss * images as f64;
        tally.seen += images;
        if tally.reported.elapsed() >= PROGRESS_EVERY {
            tally.reported = Instant::now();
            emit(TrainEvent::Progress {
                trial: self.run.id,
                position: BatchPosition {
                    epoch,
                    epochs: self.run.spec.epochs,
                    batch: index + 1,
                    batches: self.order.len().div_ceil(self.run.spec.batch_size),
                    loss: tally.loss_sum / tally.seen as f64,
                    images_per_s: tally.seen as f64 / tally.start.elapsed().as_secs_f64(),
                },
            });
        }
        None
    }

    /// The model's share of `grads` (taken out of them), for [`Learner::step`].
    pub(super) fn own_grads(&self, grads: &mut Gradients) -> GradientsParams {
        GradientsParams::from_module(grads, self.model())
    }

    /// Moves the model by `grads`, at its learning rate for this batch.
    pub(super) fn step(&mut self, grads: GradientsParams, (epoch, index): (usize, usize)) {
        let model = self.model.take().expect("one step at a time");
        let lr = self.schedule.at(self.schedule.step_of(epoch, index));
        self.model = Some(self.optimizer.step(lr, model, grads));
    }

    /// Ends the epoch: validates, commits the epoch's files, reports it and asks whether the
    /// trial goes on; after its last epoch, tests it. `Some` when the trial ends here.
    pub(super) fn end_epoch(
        &mut self,
        epoch: usize,
        emit: &(dyn Fn(TrainEvent) + Sync),
    ) -> Result<Option<TrialEnd>> {
        let run = self.run;
        let tally = &self.tally;
        let train_seconds = tally.start.elapsed().as_secs_f64();
        let val = evaluate(
            self.model(),
            &self.data.pool,
            &self.data.split.val,
            &self.data.table,
            &self.loss_fn,
            run.spec.eval_flip,
        );
        let seen = tally.seen as f64;
        let metrics = EpochMetrics {
            epoch,
            train_loss: tally.loss_sum / seen,
            train_acc: tally.correct as f64 / seen,
            val_loss: val.loss,
            val_acc: val.accuracy,
            seconds: tally.start.elapsed().as_secs_f64(),
            train_seconds,
        };
        if !val.loss.is_finite() {
            emit(TrainEvent::Epoch {
                trial: run.id,
                metrics,
                checkpoints: Vec::new(),
            });
            return Ok(Some(TrialEnd::Diverged {
                message: format!("validation loss became {} at epoch {epoch}", val.loss),
            }));
        }
        let value = match run.metric {
            Metric::ValAcc => metrics.val_acc,
            Metric::ValLoss => metrics.val_loss,
        };
        let mut state = self.state.clone();
        let improved = run.metric.improves(value, state.best.map(|b| b.0));
        state.epoch = epoch;
        state.dropout = self.dropout.state();
        state.augment = Some(self.augment_rng.state());
        state.history.push(metrics);
        if improved {
            state.best = Some((value, epoch));
        }
        if run.lost.load(Ordering::Relaxed) || !(run.holds)() {
            return Ok(Some(TrialEnd::Lost));
        }
        // Files first, then the epoch's rows: the files are the log the database catches up
        // from after a kill between the two.
        self.state = checkpoint::commit_epoch(
            &run.dir,
            checkpoint::EpochCommit {
                model: self.model(),
                optimizer: &self.optimizer,
                state,
                improved,
                snapshot: run
                    .snapshot_every
                    .is_some_and(|every| epoch.is_multiple_of(every) && epoch < run.spec.epochs),
            },
        )?;
        crate::fault::kill_point("before-event", epoch);
        emit(TrainEvent::Epoch {
            trial: run.id,
            metrics,
            checkpoints: self
                .state
                .checkpoints
                .iter()
                .filter(|c| c.epoch == epoch)
                .cloned()
                .collect(),
        });
        let curve: Vec<f64> = self
            .state
            .history
            .iter()
            .map(|m| match run.metric {
                Metric::ValAcc => m.val_acc,
                Metric::ValLoss => m.val_loss,
            })
            .collect();
        let best_epoch = self.state.best.map_or(epoch, |b| b.1);
        match (run.judge)(&curve) {
            Verdict::Continue => {}
            Verdict::Prune => return Ok(Some(TrialEnd::Pruned { best_epoch })),
            Verdict::Pause => return Ok(Some(TrialEnd::Paused { best_epoch })),
        }
        Ok((epoch >= run.spec.epochs).then(|| self.done()))
    }

    /// The end of a trial whose epochs are all committed: tested on its test images.
    pub(super) fn done(&self) -> TrialEnd {
        let all_test: Vec<u32> = (0..self.data.test.len() as u32).collect();
        let test = (!all_test.is_empty()).then(|| {
            Box::new(evaluate(
                self.model(),
                &self.data.test,
                &all_test,
                &self.data.table,
                &self.loss_fn,
                self.run.spec.eval_flip,
            ))
        });
        TrialEnd::Done {
            test,
            best_epoch: self.state.best.map(|b| b.1).unwrap_or(self.run.spec.epochs),
        }
    }
}
