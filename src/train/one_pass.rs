//! Adam and AdamW with burn's semantics, stepped in one pass over each parameter on flex
//! ([`crate::kernels::AdamKernel`]) and by burn's own optimizer elsewhere. The results are the
//! same numbers (tests below compare bit for bit); the optimizer state is burn's own type, so
//! checkpoints of either load into the other.

use crate::kernels::{AdamKernel, AdamRule, Scalars};
use burn::backend::Dispatch;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate, ModuleOptimizer, Optimizer,
};
use burn::prelude::*;
use burn::tensor::DType;

/// Burn's Adam or AdamW (`O`), stepped in one pass on flex and by `O` itself elsewhere.
#[derive(Clone)]
pub struct OnePass<O> {
    burn: O,
    rule: AdamRule,
}

/// Adam with an optional L2 penalty (no AMSGrad, no gradient clipping).
pub fn adam(beta_1: f32, beta_2: f32, epsilon: f32, l2: Option<f32>) -> ModuleOptimizer {
    let config = AdamConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(epsilon)
        .with_weight_decay(l2.map(WeightDecayConfig::new));
    ModuleOptimizer::from(OnePass {
        burn: config.build(),
        rule: AdamRule {
            beta_1,
            beta_2,
            epsilon,
            weight_decay: l2,
        },
    })
}

/// AdamW with decoupled weight decay `decay` (0 for none; no AMSGrad, no clipping).
pub fn adamw(beta_1: f32, beta_2: f32, epsilon: f32, decay: f32) -> ModuleOptimizer {
    let config = AdamWConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(epsilon)
        .with_weight_decay(decay);
    ModuleOptimizer::from(OnePass {
        burn: config.build(),
        rule: AdamRule {
            beta_1,
            beta_2,
            epsilon,
            weight_decay: Some(decay),
        },
    })
}

/// What sets Adam and AdamW apart for [`OnePass`]: their state's wrapping of the moments (kept
/// as burn's own types, so that optimizer files load either way) and their update.
trait Variant: Optimizer {
    fn moments<const D: usize>(state: Self::State<D>) -> AdaptiveMomentumState<D>;
    fn state<const D: usize>(moments: AdaptiveMomentumState<D>) -> Self::State<D>;
    fn scalars(rule: &AdamRule, time: usize, lr: LearningRate) -> Scalars;
}

impl Variant for Adam {
    fn moments<const D: usize>(state: AdamState<D>) -> AdaptiveMomentumState<D> {
        state.momentum
    }

    fn state<const D: usize>(momentum: AdaptiveMomentumState<D>) -> AdamState<D> {
        AdamState { momentum }
    }

    fn scalars(rule: &AdamRule, time: usize, lr: LearningRate) -> Scalars {
        rule.adam(time, lr)
    }
}

impl Variant for AdamW {
    fn moments<const D: usize>(state: AdamWState<D>) -> AdaptiveMomentumState<D> {
        state.momentum
    }

    fn state<const D: usize>(momentum: AdaptiveMomentumState<D>) -> AdamWState<D> {
        AdamWState { momentum }
    }

    fn scalars(rule: &AdamRule, time: usize, lr: LearningRate) -> Scalars {
        rule.adamw(time, lr)
    }
}

impl<O: Variant> Optimizer for OnePass<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !one_pass(&tensor, &grad) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let moments = state.map(O::moments);
        let time = moments.as_ref().map_or(0, |m| m.time) + 1;
        let scalars = O::scalars(&self.rule, time, lr);
        let (tensor, moments) = step(tensor, grad, moments, time, scalars);
        (tensor, Some(O::state(moments)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// Whether the one-pass step applies: `f32` tensors on flex.
fn one_pass<const D: usize>(tensor: &Tensor<D>, grad: &Tensor<D>) -> bool {
    crate::kernels::is_flex(&tensor.device())
        && tensor.dtype() == DType::F32
        && grad.dtype() == DType::F32
}

/// One step through the flex kernel. The moments start at zero, which gives burn's first-step
/// values (`0 * beta + x` is `x`).
fn step<const D: usize>(
    tensor: Tensor<D>,
    grad: Tensor<D>,
    momentum: Option<AdaptiveMomentumState<D>>,
    time: usize,
    scalars: Scalars,
) -> (Tensor<D>, AdaptiveMomentumState<D>) {
    let (moment_1, moment_2) = match momentum {
        Some(state) => (state.moment_1, state.moment_2),
        None => (grad.zeros_like(), grad.zeros_like()),
    };
    let (tensor, moment_1, moment_2) = <Dispatch as AdamKernel>::adam_step(
        tensor.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        scalars,
    );
    let state = AdaptiveMomentumState {
        time,
        moment_1: Tensor::from_dispatch(moment_1),
        moment_2: Tensor::from_dispatch(moment_2),
        max_moment_2: None,
    };
    (Tensor::from_dispatch(tensor), state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    /// A layer and batches whose gradients differ step to step; `40 x 500` holds 20,500
    /// parameters, more than one of the kernel's pieces of work, so a step is shared out in pieces.
    fn layer_and_batches(inputs: usize, device: &Device) -> (Linear, Vec<Tensor<2>>) {
        device.seed(7);
        let layer = LinearConfig::new(inputs, 40).init(device);
        let batches = (0..6)
            .map(|_| Tensor::random([8, inputs], Distribution::Normal(0.0, 1.0), device))
            .collect();
        (layer, batches)
    }

    /// `layer` after `optimizer` steps over `batches` (loss: the sum of squared outputs), with
    /// a learning rate that changes every step as schedules make it; `first` is the number of
    /// the first step.
    fn train(
        mut layer: Linear,
        (batches, first): (&[Tensor<2>], usize),
        optimizer: &mut ModuleOptimizer,
    ) -> Linear {
        for (step, x) in batches.iter().enumerate().map(|(i, x)| (first + i, x)) {
            let y = layer.forward(x.clone());
            let grads = GradientsParams::from_grads((y.clone() * y).sum().backward(), &layer);
            layer = optimizer.step(0.01 / (1.0 + step as f64), layer, grads);
        }
        layer
    }

    /// Burn's optimizer and the one-pass one with the same settings.
    type Pair = (ModuleOptimizer, ModuleOptimizer);

    /// A named way of building a [`Pair`].
    type Case = (&'static str, fn() -> Pair);

    /// How many of two runs' parameter values differ at all.
    fn differing(a: &[f32], b: &[f32]) -> usize {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).filter(|(a, b)| a != b).count()
    }

    fn values(layer: &Linear) -> Vec<f32> {
        let mut values = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
        values.extend(
            layer
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        values
    }

    /// The one-pass Adam and AdamW give burn's parameters bit for bit, with and without weight
    /// decay, in a slot of two threads (pieces stepped side by side) and of one.
    #[test]
    fn one_pass_steps_equal_burns_bit_for_bit() {
        let device = Device::flex().autodiff();
        let cases: [Case; 4] = [
            ("adam", || {
                let burn = AdamConfig::new().with_epsilon(1e-8).init();
                (burn, adam(0.9, 0.999, 1e-8, None))
            }),
            ("adam l2", || {
                let burn = AdamConfig::new()
                    .with_beta_1(0.8)
                    .with_beta_2(0.99)
                    .with_epsilon(1e-6)
                    .with_weight_decay(Some(WeightDecayConfig::new(0.05)))
                    .init();
                (burn, adam(0.8, 0.99, 1e-6, Some(0.05)))
            }),
            ("adamw", || {
                let burn = AdamWConfig::new().with_epsilon(1e-8).init();
                (burn, adamw(0.9, 0.999, 1e-8, 1e-4))
            }),
            ("adamw no decay", || {
                let burn = AdamWConfig::new().with_weight_decay(0.0).init();
                (burn, adamw(0.9, 0.999, 1e-5, 0.0))
            }),
        ];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (name, optimizers) in cases {
                let (layer, batches) = layer_and_batches(500, &device);
                let (mut burn, mut one_pass) = optimizers();
                let batches = (batches.as_slice(), 0);
                let expected = values(&train(layer.clone(), batches, &mut burn));
                let got = pool.install(|| values(&train(layer.clone(), batches, &mut one_pass)));
                assert_eq!(values(&layer).len(), 20_040);
                assert_eq!(
                    differing(&values(&layer), &expected),
                    20_040,
                    "{name}: unmoved"
                );
                assert_eq!(differing(&expected, &got), 0, "{name}, {threads} threads");
            }
        }
    }

    /// Optimizer files are interchangeable: burn's Adam state saved after three steps, loaded
    /// into the one-pass Adam for three more, ends where burn's own six steps end, and the
    /// one-pass state saved and loaded into burn's Adam continues like the one-pass one.
    #[test]
    fn optimizer_state_round_trips_with_burns_adam() {
        let device = Device::flex().autodiff();
        let (layer, batches) = layer_and_batches(30, &device);
        let (first, rest) = batches.split_at(3);
        let burn = || AdamConfig::new().with_epsilon(1e-8).init();
        let one_pass = || adam(0.9, 0.999, 1e-8, None);

        let mut reference = burn();
        let expected = values(&train(layer.clone(), (&batches, 0), &mut reference));

        let mut started = burn();
        let halfway = train(layer.clone(), (first, 0), &mut started);
        let mut resumed = one_pass().load_record(started.to_record());
        let got = values(&train(halfway, (rest, 3), &mut resumed));
        assert_eq!(
            differing(&got, &expected),
            0,
            "burn's state, one-pass steps"
        );

        let mut started = one_pass();
        let halfway = train(layer.clone(), (first, 0), &mut started);
        let mut resumed = burn().load_record(started.to_record());
        let got = values(&train(halfway, (rest, 3), &mut resumed));
        assert_eq!(
            differing(&got, &expected),
            0,
            "one-pass state, burn's steps"
        );
    }

    /// A parameter the model still shares (not written in place) keeps its old values: the
    /// step works on a copy.
    #[test]
    fn a_shared_parameter_is_not_overwritten() {
        let device = Device::flex().autodiff();
        let (layer, batches) = layer_and_batches(30, &device);
        let before = values(&layer);
        let kept = layer.clone();
        let mut optimizer = adam(0.9, 0.999, 1e-8, None);
        let trained = train(layer, (&batches, 0), &mut optimizer);
        assert_eq!(values(&kept), before);
        assert_eq!(differing(&values(&trained), &before), before.len());
    }
}
