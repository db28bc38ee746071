//! One Adam or AdamW step of a parameter as one flex operation.
//!
//! Why: burn's Adam is a dozen tensor operations per parameter (scale the moments, square the
//! gradient, take the root, divide, scale, subtract), and flex runs each as its own pass over
//! memory on one thread; `perf` put that at a third of an MLP's training time. Here one loop
//! reads the parameter, its gradient and both moments once and writes them back in place, on
//! the slot's threads. The arithmetic is burn's, operation for operation in `f32`
//! (`train::adam`'s tests compare bit for bit).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::optim::LearningRate;
use burn::tensor::DType;
use burn_flex::{FlexTensor, Layout};
use burn_std::Bytes;
use rayon::prelude::*;

/// Parameters per piece of work when a step is spread over threads: 4 streams of 64 KiB stay
/// within a core's L2, and smaller tensors (biases) are not worth sharing out.
const CHUNK: usize = 1 << 14;

/// The hyperparameters Adam and AdamW share.
#[derive(Clone, Copy, Debug)]
pub struct AdamRule {
    /// Decay of the first moment.
    pub beta_1: f32,
    /// Decay of the second moment.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// Adam: the L2 penalty added to the gradient. AdamW: the decoupled decay rate.
    pub weight_decay: Option<f32>,
}

impl AdamRule {
    /// Burn's `Adam` (its `AdaptiveMomentum::transform`) at step `time`.
    pub fn adam(&self, time: usize, lr: LearningRate) -> Scalars {
        let power = time as i32;
        let correction_2 = (1.0 - self.beta_2.powi(power)).sqrt();
        Scalars {
            moments: self.moments(),
            l2: self.weight_decay,
            update: Update::Adam {
                combined: correction_2 / (1.0 - self.beta_1.powi(power)),
                epsilon: self.epsilon * correction_2,
                lr: lr as f32,
            },
        }
    }

    /// Burn's `AdamW` at step `time`.
    pub fn adamw(&self, time: usize, lr: LearningRate) -> Scalars {
        let power = time as i32;
        let decay_rate = lr * self.weight_decay.unwrap_or(0.0) as f64;
        Scalars {
            moments: self.moments(),
            l2: None,
            update: Update::AdamW {
                correct_1: 1.0 - self.beta_1.powi(power),
                correct_2: 1.0 - self.beta_2.powi(power),
                epsilon: self.epsilon,
                keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
                lr: lr as f32,
            },
        }
    }

    fn moments(&self) -> Moments {
        Moments {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
        }
    }
}

/// The constants of one step, computed as burn computes them.
#[derive(Clone, Copy, Debug)]
pub struct Scalars {
    moments: Moments,
    /// Adam's L2 penalty, added to the gradient.
    l2: Option<f32>,
    update: Update,
}

/// How the gradient enters the moments: `m * beta_1 + g * factor_1`, `v * beta_2 + g * g *
/// factor_2`.
#[derive(Clone, Copy, Debug)]
struct Moments {
    beta_1: f32,
    beta_2: f32,
    /// `1 - beta_1`.
    factor_1: f32,
    /// `1 - beta_2`.
    factor_2: f32,
}

/// How the moments become the parameter's new value.
#[derive(Clone, Copy, Debug)]
enum Update {
    /// `p - (m * combined) / (sqrt(v) + epsilon) * lr`.
    Adam {
        combined: f32,
        epsilon: f32,
        lr: f32,
    },
    /// `p * keep - (m / correct_1) / (sqrt(v / correct_2) + epsilon) * lr`; `p` unscaled
    /// without decay.
    AdamW {
        correct_1: f32,
        correct_2: f32,
        epsilon: f32,
        keep: Option<f32>,
        lr: f32,
    },
}

/// One Adam or AdamW step of a parameter, as one flex operation.
#[backend_extension(Flex)]
pub trait AdamKernel: Backend {
    /// The parameter and both moments after one step with `grad`; all four have one shape.
    fn adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        scalars: Scalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamKernel for Flex {
    fn adam_step(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        scalars: Scalars,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut param, mut moment_1, mut moment_2) =
            (owned(param), owned(moment_1), owned(moment_2));
        let grad = grad.to_contiguous();
        let grad = grad.as_slice::<f32>().expect("a contiguous tensor");
        let (p, m, v) = (
            param.storage_mut::<f32>(),
            moment_1.storage_mut::<f32>(),
            moment_2.storage_mut::<f32>(),
        );
        assert!(
            p.len() == grad.len() && m.len() == grad.len() && v.len() == grad.len(),
            "adam_step: the parameter, its gradient and its moments differ in size"
        );
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| scalars.apply(p, m, v, g));
        (param, moment_1, moment_2)
    }
}

/// `tensor` with storage of its own, contiguous from offset 0, so that it can be written in
/// place: itself when it already is (a parameter or moment the optimizer holds alone), else a
/// copy.
fn owned(tensor: FlexTensor) -> FlexTensor {
    let size = tensor.layout().num_elements();
    let in_place = tensor.is_unique()
        && tensor.layout().contiguous_offsets() == Some((0, size))
        && tensor.storage::<f32>().len() == size;
    if in_place {
        return tensor;
    }
    let contiguous = tensor.to_contiguous();
    let values = contiguous.as_slice::<f32>().expect("a contiguous tensor");
    FlexTensor::new(
        Bytes::from_elems(values.to_vec()),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::F32,
    )
}

impl Scalars {
    /// The step on one run of values, in burn's order of operations. The branches sit outside
    /// the loops, so each loop is straight-line arithmetic the compiler vectorises.
    fn apply(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let Scalars {
            moments:
                Moments {
                    beta_1,
                    beta_2,
                    factor_1,
                    factor_2,
                },
            l2,
            update,
        } = *self;
        match l2 {
            Some(penalty) => {
                for (((p, m), v), &g) in p.iter().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    let g = p * penalty + g;
                    *m = *m * beta_1 + g * factor_1;
                    *v = *v * beta_2 + g * g * factor_2;
                }
            }
            None => {
                for ((m, v), &g) in m.iter_mut().zip(v.iter_mut()).zip(g) {
                    *m = *m * beta_1 + g * factor_1;
                    *v = *v * beta_2 + g * g * factor_2;
                }
            }
        }
        let values = p.iter_mut().zip(m.iter()).zip(v.iter());
        match update {
            Update::Adam {
                combined,
                epsilon,
                lr,
            } => {
                for ((p, m), v) in values {
                    *p -= (m * combined) / (v.sqrt() + epsilon) * lr;
                }
            }
            Update::AdamW {
                correct_1,
                correct_2,
                epsilon,
                keep,
                lr,
            } => {
                let delta = |m: f32, v: f32| (m / correct_1) / ((v / correct_2).sqrt() + epsilon);
                match keep {
                    Some(keep) => {
                        for ((p, m), v) in values {
                            *p = *p * keep - delta(*m, *v) * lr;
                        }
                    }
                    None => {
                        for ((p, m), v) in values {
                            *p -= delta(*m, *v) * lr;
                        }
                    }
                }
            }
        }
    }
}
